// Stream lifecycle on the command line (varve/lifecycle.h):
//   varve stream delete DIR STREAM            a tombstone
//   varve stream truncate DIR STREAM --before V
//   varve stream limits DIR STREAM [--max-count N] [--max-age D]
//   varve stream meta DIR [STREAM]            what is set (all streams without STREAM)
//   varve scavenge DIR [--dry-run]            gives the hidden events' space back
#include <cinttypes>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "tools/cli/common.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

struct stream_args {
  std::string dir;
  std::string stream;
  bool integer = false;
  bool json = false;
  std::optional<uint64_t> before, max_count, max_age;
};

result<stream_id> parse_stream(const stream_args& a) {
  if (!a.integer) {
    if (a.stream.empty() || a.stream.size() > kMaxStreamIdBytes)
      return status(errc::invalid_argument, "STREAM: a stream id has 1 to 255 bytes");
    return stream_id(std::string_view(a.stream));
  }
  char* end = nullptr;
  errno = 0;
  const uint64_t v = std::strtoull(a.stream.c_str(), &end, 10);
  if (a.stream.empty() || *end || errno)
    return status(errc::invalid_argument, "--int: STREAM must be a decimal u64, got '" + a.stream + "'");
  return stream_id::from_u64(v);
}

nlohmann::ordered_json to_json(const stream_metadata& m) {
  nlohmann::ordered_json j;
  j["deleted"] = m.deleted;
  j["truncate_before"] = m.truncate_before;
  j["max_count"] = m.max_count;
  j["max_age_ns"] = m.max_age_ns;
  return j;
}

std::string to_text(const stream_metadata& m) {
  if (!m.any()) return "no metadata";
  if (m.deleted) return "deleted";
  std::string s;
  auto add = [&](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
  if (m.truncate_before > 1) add("truncated before version " + std::to_string(m.truncate_before));
  if (m.max_count) add("max-count " + std::to_string(m.max_count));
  if (m.max_age_ns) add("max-age " + std::to_string(m.max_age_ns / 1'000'000'000ull) + " s");
  return s;
}

enum class op { del, truncate, limits };

int cmd_change(const stream_args& a, op what) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto id = parse_stream(a);
  if (!id) return usage_error(id.error().message());
  if (what == op::limits && !a.max_count && !a.max_age)
    return usage_error("stream limits: give --max-count N and/or --max-age DURATION (0 lifts a limit)");
  auto log = event_log::open(a.dir, cli_log_options());
  if (!log) return fail_open(log.error(), a.dir);
  result<stream_metadata> r = stream_metadata{};
  switch (what) {
    case op::del: r = (*log)->delete_stream(*id); break;
    case op::truncate: r = (*log)->truncate_stream(*id, *a.before); break;
    case op::limits: {
      auto now = (*log)->stream_metadata_of(*id);
      if (!now) {
        r = now.error();
        break;
      }
      // A limit not given keeps its value.
      r = (*log)->set_stream_limits(*id, a.max_count.value_or(now->max_count), a.max_age.value_or(now->max_age_ns));
      break;
    }
  }
  status closed = (*log)->close();
  if (!r) return fail(r.error());
  if (!closed) return fail(closed);
  if (a.json) {
    nlohmann::ordered_json j;
    j["dir"] = a.dir;
    j["stream"] = a.stream;
    j["metadata"] = to_json(r.value());
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("stream '%s': %s\n", a.stream.c_str(), to_text(r.value()).c_str());
  }
  return kExitOk;
}

int cmd_meta(const stream_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto log = event_log::open_read_only(a.dir, cli_log_options());
  if (!log) return fail_open(log.error(), a.dir);
  if (!a.stream.empty()) {
    auto id = parse_stream(a);
    if (!id) return usage_error(id.error().message());
    auto m = (*log)->stream_metadata_of(*id);
    if (!m) return fail(m.error());
    if (a.json) {
      nlohmann::ordered_json j;
      j["stream"] = a.stream;
      j["version"] = (*log)->version_of(*id);
      j["metadata"] = to_json(m.value());
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("stream '%s' (version %" PRIu64 "): %s\n", a.stream.c_str(), (*log)->version_of(*id),
                  to_text(m.value()).c_str());
    }
    return kExitOk;
  }
  auto list = (*log)->stream_metadata_list();
  if (!list) return fail(list.error());
  for (const stream_metadata_entry& e : list.value()) {
    std::string name = e.stream;
    if (e.stream_is_integer && e.stream.size() == 8) {
      uint64_t v = 0;
      for (char c : e.stream) v = (v << 8) | static_cast<uint8_t>(c);
      name = std::to_string(v);
    }
    if (a.json) {
      nlohmann::ordered_json j;
      j["stream"] = name;
      j["integer"] = e.stream_is_integer;
      j["metadata"] = to_json(e.metadata);
      j["changed_ns"] = e.changed_ns;
      j["change_number"] = e.change_number;
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("%s\t%s\n", name.c_str(), to_text(e.metadata).c_str());
    }
  }
  return kExitOk;
}

struct scavenge_args {
  std::string dir;
  bool dry_run = false;
  bool json = false;
};

int cmd_scavenge(const scavenge_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto log = event_log::open(a.dir, cli_log_options());
  if (!log) return fail_open(log.error(), a.dir);
  auto r = (*log)->scavenge(a.dry_run);
  status closed = (*log)->close();
  if (!r) return fail(r.error());
  if (!closed) return fail(closed);
  const scavenge_result& x = r.value();
  if (a.json) {
    nlohmann::ordered_json j;
    j["dir"] = a.dir;
    j["dry_run"] = a.dry_run;
    j["segments_examined"] = x.segments_examined;
    j["segments_rewritten"] = x.segments_rewritten;
    j["events_removed"] = x.events_removed;
    j["bytes_freed"] = x.bytes_freed;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s%" PRIu64 " hidden event(s) in %" PRIu64 " of %" PRIu64 " sealed segment(s)%s; %" PRIu64
                " bytes of disk freed\n",
                a.dry_run ? "would remove " : "removed ", x.events_removed, x.segments_rewritten,
                x.segments_examined, a.dry_run ? " (dry run: nothing changed)" : "", x.bytes_freed);
  }
  return kExitOk;
}

}  // namespace

void add_scavenge(CLI::App& app, command_list& out) {
  auto a = std::make_shared<scavenge_args>();
  auto* c = app.add_subcommand("scavenge", "Give back the disk space of events stream lifecycle hides (deleted, "
                                           "truncated, past max-count or max-age): sealed segments rewritten with "
                                           "holes in their place; positions unchanged");
  c->add_option("DIR", a->dir, "Log directory")->required();
  c->add_flag("--dry-run", a->dry_run, "Count what would go; change nothing");
  add_json_flag(*c, a->json, "Print the outcome as one JSON object");
  out.push_back({c, [a] { return cmd_scavenge(*a); }});
}

void add_stream_lifecycle(CLI::App& stream, command_list& out) {
  auto add = [&](const char* name, const char* help, op what) {
    auto a = std::make_shared<stream_args>();
    auto* c = stream.add_subcommand(name, help);
    c->add_option("DIR", a->dir, "Log directory")->required();
    c->add_option("STREAM", a->stream, "Stream id")->required();
    c->add_flag("--int", a->integer, "STREAM is an integer id (decimal)");
    if (what == op::truncate) add_uint(*c, "--before", a->before, "Hide the versions below this one", "VERSION")->required();
    if (what == op::limits) {
      add_uint(*c, "--max-count", a->max_count, "Keep the newest N events visible in stream reads (0: no limit)");
      add_duration(*c, "--max-age", a->max_age, "Hide events older than this (0: no limit)");
    }
    add_json_flag(*c, a->json, "Print the stream's metadata after the change as one JSON object");
    out.push_back({c, [a, what] { return cmd_change(*a, what); }});
  };
  add("delete", "Delete (tombstone) STREAM: hidden from every read, appends refused for good; the space comes back "
                "by retention or `varve scavenge`",
      op::del);
  add("truncate", "Hide STREAM's versions below --before (only moves forward)", op::truncate);
  add("limits", "Set STREAM's --max-count and/or --max-age (a limit not given keeps its value)", op::limits);
  auto a = std::make_shared<stream_args>();
  auto* m = stream.add_subcommand("meta", "Print STREAM's lifecycle metadata, or every stream that has some");
  m->add_option("DIR", a->dir, "Log directory")->required();
  m->add_option("STREAM", a->stream, "Stream id (all streams with metadata when left out)");
  m->add_flag("--int", a->integer, "STREAM is an integer id (decimal)");
  add_json_flag(*m, a->json, "One JSON object per stream");
  out.push_back({m, [a] { return cmd_meta(*a); }});
}

}  // namespace varve::cli
