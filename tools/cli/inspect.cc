// `varve verify`, `varve stat` and `varve index verify|rebuild`: checks and
// figures over a log directory, all computed by the library (varve/admin.h).
#include "tools/cli/common.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <functional>

#include <nlohmann/json.hpp>

#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace std::chrono_literals;
using ojson = nlohmann::ordered_json;

void print_json(const ojson& j) {
  std::printf("%s\n", j.dump(-1, ' ', false, ojson::error_handler_t::replace).c_str());
}

// A verify that reports corruption as the call's error rather than in the
// report still means "checked, and not intact"; anything else could not check.
result<verify_report> checked(result<verify_report> rep) {
  if (rep || rep.error().code() != errc::corruption) return rep;
  verify_report r;
  r.first_problem = rep.error();
  return r;
}

// "segment 4" or "segments 4-5".
std::string segment_range(uint64_t first, uint64_t count) {
  if (count == 1) return "segment " + std::to_string(first);
  return "segments " + std::to_string(first) + "-" + std::to_string(first + count - 1);
}

// --- verify ------------------------------------------------------------------

struct verify_args {
  std::string dir;
  bool json = false;
};

int cmd_verify(const verify_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  progress_line progress(100ms, 100ms);
  auto rep = checked(verify_log(a.dir, [&progress](uint64_t done, uint64_t total) {
    if (!progress.due()) return;
    char text[96];
    std::snprintf(text, sizeof text, "verifying: %3.0f%% (%s of %s)",
                  total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0,
                  human_bytes(done).c_str(), human_bytes(total).c_str());
    progress.show(text);
  }));
  progress.clear();
  if (!rep) return fail_open(rep.error(), a.dir);
  const verify_report& report = rep.value();
  const bool intact = report.first_problem.ok();

  if (a.json) {
    ojson j;
    j["intact"] = intact;
    j["segments"] = report.segments;
    j["sealed_segments"] = report.sealed_segments;
    j["events"] = report.events;
    j["bytes"] = report.bytes;
    if (!intact) {
      j["problem"] = report.first_problem.to_string();
      j["code"] = std::string(errc_name(report.first_problem.code()));
    }
    print_json(j);
  } else {
    std::printf("%s: %" PRIu64 " segments (%" PRIu64 " sealed), %" PRIu64 " events, %s of records checked\n",
                intact ? "intact" : "NOT intact", report.segments, report.sealed_segments, report.events,
                human_bytes(report.bytes).c_str());
  }
  return intact ? kExitOk : fail(report.first_problem, kExitCorrupt);
}

// --- stat ------------------------------------------------------------------

struct stat_args {
  std::string dir;
  bool json = false;
};

int cmd_stat(const stat_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto got = stat_log(a.dir);
  if (!got) return fail_open(got.error(), a.dir);
  const log_stats& s = got.value();
  // The figures come from the control block and the file listing; whether
  // the files hold what they claim is checked where damage shows first and
  // cheaply: every segment file's size, and the unsealed tail's records.
  auto tail = checked(verify_log(a.dir, {}, verify_scope::unsealed_tail));
  if (!tail) return fail(tail.error());
  const verify_report& t = tail.value();
  const bool intact = t.first_problem.ok();
  const uint64_t tail_segments = t.segments - t.sealed_segments;

  if (a.json) {
    auto pos = [](position p) { return p.is_none() ? ojson() : ojson(p.value); };
    ojson j;
    j["dir"] = a.dir;
    j["segments"] = s.segments;
    j["segment_bytes"] = s.segment_bytes;
    j["events"] = s.events;
    j["streams"] = s.streams;
    j["written"] = pos(s.written);
    j["committed"] = pos(s.committed);
    j["durable"] = pos(s.durable);
    j["bytes_on_disk"] = s.bytes_on_disk;
    j["intact"] = intact;  // as far as the tail check sees: `varve verify` reads everything
    j["tail_events_checked"] = t.events;
    if (!intact) j["problem"] = t.first_problem.to_string();
    print_json(j);
    return intact ? kExitOk : fail(t.first_problem, kExitCorrupt);
  }

  // Positions are segment index * capacity + offset; operators think in files.
  auto pos = [&s](position p) {
    if (p.is_none()) return std::string("none");
    std::string text = std::to_string(p.value);
    if (s.segment_bytes)
      text += " (segment " + std::to_string(p.value / s.segment_bytes) + ", offset " +
              std::to_string(p.value % s.segment_bytes) + ")";
    return text;
  };
  std::printf("directory      %s\n", a.dir.c_str());
  std::printf("segments       %" PRIu64 " of %s\n", s.segments, human_bytes(s.segment_bytes).c_str());
  std::printf("events         %" PRIu64 "\n", s.events);
  std::printf("streams        %" PRIu64 "\n", s.streams);
  std::printf("written        %s\n", pos(s.written).c_str());
  std::printf("committed      %s\n", pos(s.committed).c_str());
  std::printf("durable        %s\n", pos(s.durable).c_str());
  std::printf("bytes on disk  %" PRIu64 " (%s, every file of the directory)\n", s.bytes_on_disk,
              human_bytes(s.bytes_on_disk).c_str());
  if (intact)
    std::printf("checked        segment file sizes, and the unsealed tail (%s, %" PRIu64
                " events): intact; `varve verify` reads everything\n",
                tail_segments ? segment_range(t.first_checked, tail_segments).c_str() : "none", t.events);
  else
    std::printf("checked        NOT intact (see below; `varve verify` reads everything)\n");
  return intact ? kExitOk : fail(t.first_problem, kExitCorrupt);
}

// --- index -----------------------------------------------------------------

struct index_args {
  std::string action;
  std::string dir;
  bool json = false;
};

int cmd_index(const index_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const bool verify = a.action == "verify";
  progress_line progress(0ms, 100ms);
  auto rep = verify ? verify_index(a.dir) : rebuild_index(a.dir, [&progress](uint64_t done, uint64_t total) {
    if (!progress.due()) return;
    progress.show("varve: index rebuild: segment " + std::to_string(done) + " of " + std::to_string(total));
  });
  progress.clear();
  if (!rep) return fail_open(rep.error(), a.dir);
  const index_report& r = rep.value();
  // The index covers sealed segments only (a segment's index file is written
  // when it is sealed); the tail after them is checked and reported apart.
  auto tail = checked(verify_log(a.dir, {}, verify_scope::unsealed_tail));
  if (!tail) return fail(tail.error());
  const verify_report& t = tail.value();
  std::vector<status> problems = r.problems;
  if (!t.first_problem.ok()) problems.push_back(t.first_problem);
  const bool intact = problems.empty();
  const uint64_t tail_segments = t.segments - t.sealed_segments;
  const uint64_t first_sealed = t.first_checked - std::min(t.first_checked, r.sealed_segments);

  if (a.json) {
    ojson j;
    j["action"] = a.action;
    j["intact"] = intact;
    j["sealed_segments"] = r.sealed_segments;
    j["first_sealed_segment"] = r.sealed_segments ? ojson(first_sealed) : ojson();
    j["index_files"] = r.index_files;
    j["index_bytes"] = r.index_bytes;
    j["events"] = r.events;
    j["checkpoints"] = r.checkpoints;
    ojson tj;
    tj["first_segment"] = tail_segments ? ojson(t.first_checked) : ojson();
    tj["segments"] = tail_segments;
    tj["events"] = t.events;
    tj["indexed"] = false;
    j["tail"] = std::move(tj);
    j["problems"] = ojson::array();
    for (const status& p : problems) j["problems"].push_back(p.to_string());
    print_json(j);
  } else {
    const double per_event = r.events ? static_cast<double>(r.index_bytes) / static_cast<double>(r.events) : 0;
    const char* verdict = verify ? (intact ? "index intact" : "index NOT intact") : "index rebuilt";
    if (r.sealed_segments == 0)
      std::printf("%s: no sealed segment yet, so no index files or head checkpoints\n", verdict);
    else
      std::printf("%s: the sealed %s: %" PRIu64 " index files (%s, %.2f B/event) over %" PRIu64
                  " events, %" PRIu64 " head checkpoints\n",
                  verdict, segment_range(first_sealed, r.sealed_segments).c_str(), r.index_files,
                  human_bytes(r.index_bytes).c_str(), per_event, r.events, r.checkpoints);
    if (tail_segments)
      std::printf("tail: %" PRIu64 " events in %s, not indexed yet (indexed at seal)\n", t.events,
                  segment_range(t.first_checked, tail_segments).c_str());
  }
  for (size_t i = 0; i + 1 < problems.size(); ++i) fail(problems[i], kExitCorrupt);
  return intact ? kExitOk : fail(problems.back(), kExitCorrupt);
}

}  // namespace

void add_verify(CLI::App& app, command_list& out) {
  auto a = std::make_shared<verify_args>();
  auto* vf = app.add_subcommand("verify", "Check every record and footer; exit 4 if not intact");
  vf->add_option("DIR", a->dir, "Log directory")->required();
  add_json_flag(*vf, a->json, "Print the report as JSON");
  out.push_back({vf, [a] { return cmd_verify(*a); }});
}

void add_stat(CLI::App& app, command_list& out) {
  auto a = std::make_shared<stat_args>();
  auto* st = app.add_subcommand(
      "stat", "Print segment, event, position and disk figures, after a cheap check (segment file "
              "sizes, the unsealed tail's records); exit 4 if that finds damage");
  st->add_option("DIR", a->dir, "Log directory")->required();
  add_json_flag(*st, a->json, "Print as JSON");
  out.push_back({st, [a] { return cmd_stat(*a); }});
}

void add_index(CLI::App& app, command_list& out) {
  auto a = std::make_shared<index_args>();
  auto* ix = app.add_subcommand(
      "index", "The per-aggregate index of the sealed segments (their index files and head "
               "checkpoints): verify it against the log, or rebuild it; the unsealed tail is "
               "reported apart (indexed when sealed). Exit 4 if not intact");
  ix->add_option("ACTION", a->action, "verify | rebuild")
      ->required()
      ->check(CLI::IsMember({"verify", "rebuild"}));
  ix->add_option("DIR", a->dir, "Log directory")->required();
  add_json_flag(*ix, a->json, "Print the report as JSON");
  out.push_back({ix, [a] { return cmd_index(*a); }});
}

}  // namespace varve::cli
