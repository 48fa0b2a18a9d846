// `varve append DIR`: NDJSON lines from stdin into the log, one ack per line.
#include "tools/cli/common.h"

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <span>
#include <vector>

#include "base/record_format.h"
#include "base/segment_format.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace varve::tools;

// Acks wait for durability before they are written, so they are buffered by
// hand; past this much the appender stops to wait and write them out.
constexpr size_t kAckFlushBytes = 256 << 10;

struct append_args {
  std::string dir;
  std::string durability = "none";
  std::string on_conflict = "fail";
  bool create = false;
  std::optional<std::string> segment_size;
  std::optional<std::string> max_depth;
  std::optional<std::string> max_line_bytes;
};

// What one event's payload may be in `log`: a segment less its header, one
// record header and the end-of-segment marker (the stream id aside).
uint64_t max_event_bytes(const event_log& log) {
  return log.stats().segment_bytes - segment_format::kHeaderSize - record::kHeaderSize -
         record::kSegmentEndSize;
}

int cmd_append(const append_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  log_options opts;
  opts.mode = a.durability == "sync"    ? durability::sync
              : a.durability == "group" ? durability::group
                                        : durability::none;
  if (a.segment_size) {
    if (!a.create) return usage_error("--segment-size only applies with --create");
    auto n = parse_size(*a.segment_size);
    if (!n)
      return usage_error("--segment-size: \"" + *a.segment_size +
                         "\" is not a size (bytes, or a number with a K, M or G suffix)");
    opts.segment_bytes = *n;
  }
  const bool skip_conflicts = a.on_conflict == "skip";
  parse_limits limits;
  uint64_t depth = limits.max_depth;
  if (auto rc = parse_flag(a.max_depth, "--max-depth", depth)) return *rc;
  if (depth < 1 || depth > kMaxDepthLimit)
    return usage_error("--max-depth: 1 to " + std::to_string(kMaxDepthLimit));
  limits.max_depth = static_cast<unsigned>(depth);
  uint64_t max_line = kDefaultMaxLineBytes;
  if (a.max_line_bytes) {
    auto n = parse_size(*a.max_line_bytes);
    if (!n || *n == 0 || *n > SIZE_MAX / 2)
      return usage_error("--max-line-bytes: \"" + *a.max_line_bytes +
                         "\" is not a size (bytes, or a number with a K, M or G suffix)");
    max_line = *n;
  }

  auto opened = a.create ? event_log::open_or_create(a.dir, opts) : event_log::open(a.dir, opts);
  if (!opened) {
    if (opened.error().code() != errc::not_found) return fail_open(opened.error());
    std::fprintf(stderr, "varve: %s (`varve create` makes a log, or pass --create)\n",
                 opened.error().to_string().c_str());
    return kExitError;
  }
  event_log& log = **opened;
  auto types = type_registry::open(a.dir);
  if (!types) return fail(types.error());

  line_reader in(STDIN_FILENO, 1 << 20, max_line);
  ndjson_writer acks(STDOUT_FILENO, 1 << 20, ndjson_writer::flush_policy::manual);
  position last_end;
  // An ack promises durability in modes group and sync, so the wait comes
  // first. Acks go out whenever the input runs dry (before read() can block),
  // so an interactive producer sees each ack at once while a bulk load pays
  // one wait and one write per chunk instead of per line.
  auto flush_acks = [&]() -> status {
    if (acks.buffered() == 0) return {};
    if (opts.mode != durability::none) {
      if (status st = log.wait_durable(last_end); !st) return st;
    }
    return acks.flush();
  };
  // Acks of the lines before a failure still go out before we give up.
  auto stop = [&](const std::string& msg, int code = kExitError) {
    if (status st = flush_acks(); !st) std::fprintf(stderr, "varve: %s\n", st.to_string().c_str());
    std::fprintf(stderr, "varve: %s\n", msg.c_str());
    return code;
  };

  append_request req;
  std::vector<event_data> events;
  uint64_t line_no = 0;
  uint64_t skipped = 0;
  for (;;) {
    if (in.must_read() || acks.buffered() >= kAckFlushBytes) {
      if (status st = flush_acks(); !st) return fail(st);
    }
    std::string_view line;
    auto got = in.next(line);
    if (!got) {
      if (got.error().code() != errc::too_large) return stop(got.error().to_string());
      return stop("line " + std::to_string(line_no + 1) + ": " + got.error().message() +
                  " (--max-line-bytes; the largest event a segment of this log holds is " +
                  human_bytes(max_event_bytes(log)) + ")");
    }
    if (!*got) break;
    ++line_no;
    auto where = [line_no] { return "line " + std::to_string(line_no) + ": "; };
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;

    if (status st = parse_append_line(line, req, limits); !st) return stop(where() + st.message());

    events.clear();
    for (const input_event& ev : req.events) {
      event_data d;
      if (ev.type_id) {
        d.type = *ev.type_id;
      } else {
        auto id = types->id_for(ev.type_name);
        if (!id) return stop(where() + id.error().to_string());
        d.type = *id;
      }
      d.schema_version = ev.schema_version;
      d.payload = event_data::bytes(ev.payload);
      d.content = ev.content;
      d.timestamp_ns = ev.timestamp_ns;
      d.event_id = ev.event_id ? &*ev.event_id : nullptr;
      d.correlation_id = ev.correlation_id ? &*ev.correlation_id : nullptr;
      d.causation_id = ev.causation_id ? &*ev.causation_id : nullptr;
      events.push_back(d);
    }
    auto r = req.is_batch ? log.append(req.id(), req.expected, std::span<const event_data>(events))
                          : log.append(req.id(), req.expected, events.front());
    if (!r) {
      const status& err = r.error();
      if (err.code() != errc::wrong_expected_version) return stop(where() + err.to_string());
      const std::string msg = where() + "wrong expected version for stream " + display_stream(req) +
                              ": expected " + describe_expected(req.expected) + ", actual " +
                              std::to_string(err.actual_version());
      if (!skip_conflicts) return stop(msg, kExitConflict);
      std::fprintf(stderr, "varve: %s (skipped)\n", msg.c_str());
      ++skipped;
      continue;
    }
    last_end = r->end;
    write_ack(acks, req, *r);
  }
  if (status st = flush_acks(); !st) return fail(st);
  if (status st = log.close(); !st) return fail(st);
  if (skipped > 0)
    std::fprintf(stderr, "varve: %" PRIu64 " line(s) skipped on version conflicts\n", skipped);
  return kExitOk;
}

}  // namespace

void add_append(CLI::App& app, command_list& out) {
  auto a = std::make_shared<append_args>();
  auto* ap = app.add_subcommand(
      "append",
      "Append NDJSON events from stdin, one per line: {\"stream\":..,\"type\":..,\"data\":..} "
      "(optional: expected_version, schema_version, event_id, correlation_id, causation_id, "
      "timestamp, data_base64), or a batch "
      "{\"stream\":..,\"expected_version\":..,\"events\":[..]}. "
      "Prints one ack per line.");
  ap->add_option("DIR", a->dir, "Log directory")->required();
  ap->add_option("--durability", a->durability,
                 "none | group | sync (acks wait for durability)")
      ->check(CLI::IsMember({"none", "group", "sync"}));
  ap->add_option("--on-conflict", a->on_conflict,
                 "On a wrong expected_version: fail (stop there, exit 3) or skip the line "
                 "(reported on stderr, exit 0)")
      ->check(CLI::IsMember({"fail", "skip"}));
  ap->add_flag("--create", a->create, "Create the log if DIR holds none");
  ap->add_option("--segment-size", a->segment_size,
                 "Segment capacity when --create creates the log");
  ap->add_option("--max-depth", a->max_depth,
                 "Refuse a line whose data nests arrays/objects deeper than this (default 512, "
                 "what `varve read` gives back as JSON; at most 4000)");
  ap->add_option("--max-line-bytes", a->max_line_bytes,
                 "Refuse a line longer than this, before reading the rest of it (default 16M: "
                 "parsing takes about 5x a line in memory). Raise it for larger events, up to "
                 "what a segment holds (suffixes K, M, G)");
  out.push_back({ap, [a] { return cmd_append(*a); }});
}

}  // namespace varve::cli
