// `varve verify`, `varve stat` and `varve index verify|rebuild`: checks and
// figures over a log directory, all computed by the library (varve/admin.h).
#include "tools/cli/common.h"

#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <functional>

#include <nlohmann/json.hpp>

#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace varve::tools;

struct verify_args {
  std::string dir;
  bool json = false;
};

int cmd_verify(const verify_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  auto last = std::chrono::steady_clock::now();
  std::function<void(uint64_t, uint64_t)> progress;
  if (tty) {
    progress = [&last](uint64_t done, uint64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last < std::chrono::milliseconds(100)) return;
      last = now;
      std::fprintf(stderr, "\rverifying: %3.0f%% (%s of %s)\x1b[K",
                   total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0,
                   human_bytes(done).c_str(), human_bytes(total).c_str());
    };
  }
  auto rep = verify_log(a.dir, progress);
  if (tty) std::fprintf(stderr, "\r\x1b[K");

  // A library that reports corruption as the call's error rather than in the
  // report still means "checked, and not intact".
  verify_report report;
  if (rep) {
    report = rep.value();
  } else if (rep.error().code() == errc::corruption) {
    report.first_problem = rep.error();
  } else {
    return fail(rep.error());
  }
  const bool intact = report.first_problem.ok();

  if (a.json) {
    nlohmann::ordered_json j;
    j["intact"] = intact;
    j["segments"] = report.segments;
    j["sealed_segments"] = report.sealed_segments;
    j["events"] = report.events;
    j["bytes"] = report.bytes;
    if (!intact) {
      j["problem"] = report.first_problem.to_string();
      j["code"] = std::string(errc_name(report.first_problem.code()));
    }
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s: %" PRIu64 " segments (%" PRIu64 " sealed), %" PRIu64
                " events, %s of records checked\n",
                intact ? "intact" : "NOT intact", report.segments, report.sealed_segments,
                report.events, human_bytes(report.bytes).c_str());
    if (!intact) std::fprintf(stderr, "varve: %s\n", report.first_problem.to_string().c_str());
  }
  return intact ? kExitOk : kExitCorrupt;
}

// --- stat ------------------------------------------------------------------

struct stat_args {
  std::string dir;
  bool json = false;
};

int cmd_stat(const stat_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto got = stat_log(a.dir);
  if (!got) return fail(got.error());
  const log_stats& s = got.value();

  if (a.json) {
    auto pos = [](position p) {
      return p.is_none() ? nlohmann::ordered_json() : nlohmann::ordered_json(p.value);
    };
    nlohmann::ordered_json j;
    j["dir"] = a.dir;
    j["segments"] = s.segments;
    j["segment_bytes"] = s.segment_bytes;
    j["events"] = s.events;
    j["streams"] = s.streams;
    j["written"] = pos(s.written);
    j["committed"] = pos(s.committed);
    j["durable"] = pos(s.durable);
    j["bytes_on_disk"] = s.bytes_on_disk;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return kExitOk;
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
  std::printf("segments       %" PRIu64 " of %s\n", s.segments,
              human_bytes(s.segment_bytes).c_str());
  std::printf("events         %" PRIu64 "\n", s.events);
  std::printf("streams        %" PRIu64 "\n", s.streams);
  std::printf("written        %s\n", pos(s.written).c_str());
  std::printf("committed      %s\n", pos(s.committed).c_str());
  std::printf("durable        %s\n", pos(s.durable).c_str());
  std::printf("bytes on disk  %" PRIu64 " (%s)\n", s.bytes_on_disk,
              human_bytes(s.bytes_on_disk).c_str());
  return kExitOk;
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
  auto rep = verify ? verify_index(a.dir) : rebuild_index(a.dir);
  if (!rep) return fail(rep.error());
  const index_report& r = rep.value();
  const bool intact = r.problems.empty();
  if (a.json) {
    nlohmann::ordered_json j;
    j["action"] = a.action;
    j["intact"] = intact;
    j["sealed_segments"] = r.sealed_segments;
    j["index_files"] = r.index_files;
    j["index_bytes"] = r.index_bytes;
    j["events"] = r.events;
    j["checkpoints"] = r.checkpoints;
    j["problems"] = nlohmann::json::array();
    for (const status& p : r.problems) j["problems"].push_back(p.to_string());
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    const double per_event = r.events ? static_cast<double>(r.index_bytes) / static_cast<double>(r.events) : 0;
    std::printf("%s: %" PRIu64 " sealed segments, %" PRIu64 " index files (%s, %.2f B/event), %" PRIu64
                " events, %" PRIu64 " head checkpoints\n",
                verify ? (intact ? "index intact" : "index NOT intact") : "index rebuilt",
                r.sealed_segments, r.index_files, human_bytes(r.index_bytes).c_str(), per_event,
                r.events, r.checkpoints);
    for (const status& p : r.problems) std::fprintf(stderr, "varve: %s\n", p.to_string().c_str());
  }
  return intact ? kExitOk : kExitCorrupt;
}

}  // namespace

void add_verify(CLI::App& app, command_list& out) {
  auto a = std::make_shared<verify_args>();
  auto* vf = app.add_subcommand("verify", "Check every record and footer; exit 2 if not intact");
  vf->add_option("DIR", a->dir, "Log directory")->required();
  vf->add_flag("--json", a->json, "Print the report as JSON");
  out.push_back({vf, [a] { return cmd_verify(*a); }});
}

void add_stat(CLI::App& app, command_list& out) {
  auto a = std::make_shared<stat_args>();
  auto* st = app.add_subcommand("stat", "Print segment, event and position figures");
  st->add_option("DIR", a->dir, "Log directory")->required();
  st->add_flag("--json", a->json, "Print as JSON");
  out.push_back({st, [a] { return cmd_stat(*a); }});
}

void add_index(CLI::App& app, command_list& out) {
  auto a = std::make_shared<index_args>();
  auto* ix = app.add_subcommand("index", "The per-aggregate index: verify it against the log, or rebuild it");
  ix->add_option("ACTION", a->action, "verify | rebuild")
      ->required()
      ->check(CLI::IsMember({"verify", "rebuild"}));
  ix->add_option("DIR", a->dir, "Log directory")->required();
  ix->add_flag("--json", a->json, "Print the report as JSON");
  out.push_back({ix, [a] { return cmd_index(*a); }});
}

}  // namespace varve::cli
