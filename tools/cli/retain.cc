// `varve retain DIR`: retention on demand (docs/DESIGN.md "Retention").
#include "tools/cli/common.h"

#include <cinttypes>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "varve/varve.h"

namespace varve::cli {
namespace {

struct retain_args {
  std::string dir;
  std::optional<uint64_t> max_age;
  std::optional<uint64_t> max_bytes;
  std::optional<uint64_t> before;
  bool dry_run = false;
  bool json = false;
};

int cmd_retain(const retain_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  if (!a.max_age && !a.max_bytes && !a.before)
    return usage_error("retain: say what goes: --max-age, --max-bytes or --before");
  retention_policy p;
  if (a.max_age) {
    if (*a.max_age == 0) return usage_error("--max-age must be more than 0");
    p.max_age_ns = *a.max_age;
  }
  if (a.max_bytes) {
    if (*a.max_bytes == 0) return usage_error("--max-bytes must be more than 0");
    p.max_bytes = *a.max_bytes;
  }
  if (a.before) p.before = position{*a.before};
  // The writer's lock: retention moves the start and removes files, which
  // only the writer may do (errc::locked while another process writes).
  auto log = event_log::open(a.dir, cli_log_options());
  if (!log) return fail_open(log.error(), a.dir);
  auto r = (*log)->retain(p, a.dry_run);
  status closed = (*log)->close();
  if (!r) return fail(r.error());
  if (!closed) return fail(closed);
  const retention_result& x = r.value();
  if (a.json) {
    nlohmann::ordered_json j;
    j["dir"] = a.dir;
    j["dry_run"] = a.dry_run;
    j["segments_removed"] = x.segments_removed;
    j["bytes_removed"] = x.bytes_removed;
    j["events_removed"] = x.events_removed;
    j["first_segment"] = x.first_segment;
    j["start_position"] = x.start.value;
    j["first_sequence"] = x.first_sequence.value;
    j["held_back"] = x.held_back.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(x.held_back);
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return kExitOk;
  }
  std::printf("%s %" PRIu64 " segment(s), %s, %" PRIu64 " event(s)\n", a.dry_run ? "would remove" : "removed",
              x.segments_removed, human_bytes(x.bytes_removed).c_str(), x.events_removed);
  std::printf("the log %s at position %" PRIu64 " (segment %" PRIu64 ", sequence %" PRIu64 ")\n",
              a.dry_run ? "would start" : "starts", x.start.value, x.first_segment, x.first_sequence.value);
  if (!x.held_back.empty()) std::printf("held back: %s\n", x.held_back.c_str());
  return kExitOk;
}

}  // namespace

void add_retain(CLI::App& app, command_list& out) {
  auto a = std::make_shared<retain_args>();
  auto* c = app.add_subcommand(
      "retain", "Remove whole sealed segments from the head of the log (retention); reads below the new "
                "start then fail with 'removed by retention', naming where the log starts");
  c->add_option("DIR", a->dir, "Log directory")->required();
  add_duration(*c, "--max-age", a->max_age, "Remove segments whose newest event is older than this (7d, 36h, ...)");
  add_size(*c, "--max-bytes", a->max_bytes, "Remove the oldest segments until the log's segments take at most SIZE");
  add_uint(*c, "--before", a->before, "Remove the segments that lie wholly before this position", "POSITION");
  c->add_flag("--dry-run", a->dry_run, "Say what would be removed; change nothing");
  add_json_flag(*c, a->json,
                "Print {\"segments_removed\":N,\"bytes_removed\":N,\"events_removed\":N,\"first_segment\":N,"
                "\"start_position\":P,\"first_sequence\":S,\"held_back\":WHY|null}");
  out.push_back({c, [a] { return cmd_retain(*a); }});
}

}  // namespace varve::cli
