// consumer_group::dead_letters: reads `$dlq-GROUP` back, each entry with the
// event it names, checked (include/varve/consumer_group.h).
#include <charconv>
#include <optional>
#include <string>

#include "varve/consumer_group.h"
#include "varve/log.h"

namespace varve {
namespace {

// The unsigned integer value of `"key"` at the top level of a JSON object
// nack() wrote (or one a person wrote by hand, with spaces). Inside a JSON
// string every '"' is escaped, so a quote that follows '{' or ',' (spaces
// aside) opens a key: text within the error message never passes for one.
std::optional<uint64_t> top_level_u64(std::string_view json, std::string_view key) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  const std::string quoted = "\"" + std::string(key) + "\"";
  for (size_t at = json.find(quoted); at != std::string_view::npos; at = json.find(quoted, at + 1)) {
    size_t b = at;
    while (b > 0 && is_space(json[b - 1])) --b;
    if (b == 0 || (json[b - 1] != '{' && json[b - 1] != ',')) continue;
    size_t v = at + quoted.size();
    while (v < json.size() && is_space(json[v])) ++v;
    if (v == json.size() || json[v] != ':') continue;
    ++v;
    while (v < json.size() && is_space(json[v])) ++v;
    uint64_t out = 0;
    auto [p, ec] = std::from_chars(json.data() + v, json.data() + json.size(), out);
    if (ec != std::errc() || p == json.data() + v) return std::nullopt;
    return out;
  }
  return std::nullopt;
}

}  // namespace

result<std::vector<dead_letter>> consumer_group::dead_letters(const event_log& log, std::string_view group,
                                                              stream_version from, uint64_t max) {
  if (!valid_name(group)) return status(errc::invalid_argument, "invalid group name \"" + std::string(group) + "\"");
  const std::string dlq = "$dlq-" + std::string(group);
  std::vector<dead_letter> out;
  auto rd = log.read_stream(stream_id(std::string_view(dlq)), std::max<stream_version>(from, 1),
                            read_direction::forward, max);
  if (!rd) return rd.error();
  dead_letter d;
  while (true) {
    auto more = rd.value().next(d.entry);
    if (!more) return more.error();
    if (!more.value()) break;
    d.version = d.entry.version;
    const std::string_view json(reinterpret_cast<const char*>(d.entry.payload.data()), d.entry.payload.size());
    auto bad = [&](const std::string& why) {
      return status(errc::corruption, log.dir() + ": dead letter " + dlq + " version " +
                                          std::to_string(d.version) + " (position " +
                                          std::to_string(d.entry.position.value) + "): " + why);
    };
    const auto pos = top_level_u64(json, "position");
    const auto type = top_level_u64(json, "type");
    if (!pos || !type) return bad("not a dead letter: no \"position\" or \"type\"");
    if (*pos >= d.entry.position.value) return bad("names position " + std::to_string(*pos) + ", not before itself");
    log_reader r = log.read(position{*pos});
    auto got = r.next(d.original);
    if (!got) return bad("reading position " + std::to_string(*pos) + ": " + got.error().message());
    if (!got.value() || d.original.position.value != *pos)
      return bad("no event starts at position " + std::to_string(*pos));
    if (d.original.type != *type) return bad("the event at position " + std::to_string(*pos) + " has another type");
    // Position, type and sequence number together pin the event down (the
    // stream is a JSON string in the entry: not worth unescaping for this).
    if (const auto seq = top_level_u64(json, "sequence"); seq && *seq != d.original.sequence.value)
      return bad("the event at position " + std::to_string(*pos) + " has another sequence number");
    out.push_back(d);
  }
  return out;
}

}  // namespace varve
