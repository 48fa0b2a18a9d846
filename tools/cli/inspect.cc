// `varve verify`, `varve stat`, `varve metrics` and `varve index
// verify|rebuild`: checks and figures over a log directory, all computed by
// the library (varve/admin.h, varve/metrics.h).
#include "tools/cli/common.h"

#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
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
  bool chain = false;
};

// `varve verify --chain`: every chained segment hashed again and compared.
int cmd_verify_chain(const verify_args& a) {
  progress_line progress(100ms, 100ms);
  auto rep = verify_chain(a.dir, [&progress](uint64_t done, uint64_t total) {
    if (!progress.due()) return;
    char text[96];
    std::snprintf(text, sizeof text, "hashing: segment %" PRIu64 " of %" PRIu64, done, total);
    progress.show(text);
  });
  progress.clear();
  if (!rep && rep.error().code() == errc::corruption) return fail(rep.error(), kExitCorrupt);
  if (!rep) return fail_open(rep.error(), a.dir);
  const chain_report& r = rep.value();
  const bool intact = r.first_problem.ok();
  if (a.json) {
    ojson j;
    j["intact"] = intact;
    j["entries"] = r.entries;
    j["first_segment"] = r.entries ? ojson(r.first_segment) : ojson();
    j["last_segment"] = r.entries ? ojson(r.last_segment) : ojson();
    j["head"] = r.entries ? ojson(r.head) : ojson();
    j["sealed_after"] = r.sealed_after;
    if (!intact) j["problem"] = r.first_problem.to_string();
    print_json(j);
  } else if (intact) {
    std::string line = "chain intact: " + std::to_string(r.entries) + " segments hashed";
    if (r.entries) line += " (" + segment_range(r.first_segment, r.entries) + ")";
    if (r.sealed_after) line += ", " + std::to_string(r.sealed_after) + " sealed after it not chained yet";
    std::printf("%s\n", line.c_str());
    if (r.entries) std::printf("head %s (segment %" PRIu64 ")\n", r.head.c_str(), r.last_segment);
  } else {
    std::printf("chain NOT intact\n");
  }
  return intact ? kExitOk : fail(r.first_problem, kExitCorrupt);
}

int cmd_verify(const verify_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  if (a.chain) return cmd_verify_chain(a);
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

// The writer session's counters, as `stat --json` and `metrics --json` print them.
ojson session_json(const log_metrics& m) {
  ojson j;
  j["writer_alive"] = m.writer_alive;
  j["writer_pid"] = m.writer_pid ? ojson(m.writer_pid) : ojson();
  if (!m.counters_present) return j;
  j["session_start_ns"] = m.session_start_ns;
  j["open_ns"] = m.open_ns;
  j["append_calls"] = m.append_calls;
  j["append_events"] = m.append_events;
  j["append_bytes"] = m.append_bytes;
  j["append_conflicts"] = m.append_conflicts;
  j["append_refusals"] = m.append_refusals;
  j["rollovers"] = m.rollovers;
  j["rollovers_that_waited"] = m.rollovers_that_waited;
  j["longest_rollover_wait_ns"] = m.longest_rollover_wait_ns;
  j["longest_seal_wait_ns"] = m.longest_seal_wait_ns;
  j["segments_sealed"] = m.segments_sealed;
  j["syncs"] = m.syncs;
  j["sync_failures"] = m.sync_failures;
  j["sync_bytes"] = m.sync_bytes;
  j["sync_ns_total"] = m.sync_ns_total;
  j["longest_sync_ns"] = m.longest_sync_ns;
  // Bucket i: syncs below 2^i µs (and at least 2^(i-1)); the last one: slower.
  j["sync_latency_log2_us"] = m.sync_latency;
  ojson r;
  r["cut"] = m.recovery_cut;
  r["set_aside"] = m.recovery_set_aside;
  r["removed_empty"] = m.recovery_removed_empty;
  r["hole"] = m.recovery_holes;
  r["rebuilt"] = m.recovery_rebuilt;
  r["note"] = m.recovery_notes;
  r["bytes_set_aside"] = m.recovery_bytes_set_aside;
  j["recovery"] = std::move(r);
  return j;
}

// A duration for people: ns, µs, ms or s with three figures.
std::string human_ns(uint64_t ns) {
  char buf[32];
  if (ns < 1000) std::snprintf(buf, sizeof buf, "%" PRIu64 " ns", ns);
  else if (ns < 1'000'000) std::snprintf(buf, sizeof buf, "%.3g us", static_cast<double>(ns) / 1e3);
  else if (ns < 1'000'000'000) std::snprintf(buf, sizeof buf, "%.3g ms", static_cast<double>(ns) / 1e6);
  else std::snprintf(buf, sizeof buf, "%.3g s", static_cast<double>(ns) / 1e9);
  return buf;
}

// The upper bound of the histogram bucket holding the q-quantile (an upper
// estimate: the bucket's bound), 0 when there were no syncs.
uint64_t sync_quantile_bound_ns(const log_metrics& m, double q) {
  if (m.syncs == 0) return 0;
  const auto want = static_cast<uint64_t>(q * static_cast<double>(m.syncs) + 0.999999);
  uint64_t seen = 0;
  for (int i = 0; i < kSyncBuckets; ++i) {
    seen += m.sync_latency[i];
    if (seen >= want) return i + 1 == kSyncBuckets ? m.longest_sync_ns : (uint64_t{1} << i) * 1000;
  }
  return m.longest_sync_ns;
}

void print_session(const log_metrics& m) {
  if (m.writer_alive)
    std::printf("writer         pid %" PRIu64 ", open\n", m.writer_pid);
  else
    std::printf("writer         none (figures below are the last session's)\n");
  if (!m.counters_present) {
    std::printf("session        no counters (written by an older varve)\n");
    return;
  }
  std::printf("session        %" PRIu64 " appends, %" PRIu64 " events, %s; refused: %" PRIu64
              " wrong expected version, %" PRIu64 " other; open took %s\n",
              m.append_calls, m.append_events, human_bytes(m.append_bytes).c_str(), m.append_conflicts,
              m.append_refusals, human_ns(m.open_ns).c_str());
  std::printf("roll-overs     %" PRIu64 " (%" PRIu64 " waited, longest %s); %" PRIu64
              " segments sealed, longest seal-queue wait %s\n",
              m.rollovers, m.rollovers_that_waited, human_ns(m.longest_rollover_wait_ns).c_str(),
              m.segments_sealed, human_ns(m.longest_seal_wait_ns).c_str());
  std::printf("syncs          %" PRIu64 " (%" PRIu64 " failed), %s; p50 <= %s, p99 <= %s, longest %s\n",
              m.syncs, m.sync_failures, human_bytes(m.sync_bytes).c_str(),
              human_ns(sync_quantile_bound_ns(m, 0.5)).c_str(),
              human_ns(sync_quantile_bound_ns(m, 0.99)).c_str(), human_ns(m.longest_sync_ns).c_str());
  std::printf("recovery       %" PRIu64 " cut, %" PRIu64 " set aside, %" PRIu64 " empty removed, %" PRIu64
              " holes, %" PRIu64 " rebuilt, %" PRIu64 " notes; %s kept in lost+found/\n",
              m.recovery_cut, m.recovery_set_aside, m.recovery_removed_empty, m.recovery_holes,
              m.recovery_rebuilt, m.recovery_notes, human_bytes(m.recovery_bytes_set_aside).c_str());
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
  auto metrics = read_metrics(a.dir, {.consumers = false, .disk = false});
  if (!metrics) return fail_open(metrics.error(), a.dir);
  // The chain's head as recorded (hashing nothing; `varve verify --chain` does).
  std::optional<chain_report> chain;
  if (auto c = read_chain(a.dir)) chain = c.value();
  else if (c.error().code() != errc::not_found) return fail(c.error(), kExitCorrupt);

  // Crypto-shredding: whether payloads are sealed, and how many streams
  // were forgotten (DIR/forgotten; no key needed).
  bool encrypted = false;
  uint64_t forgotten = 0;
  // Stream lifecycle: streams deleted, and streams with other metadata
  // (DIR/streams; a damaged file is corruption, as readers would meet it).
  uint64_t deleted_streams = 0, limited_streams = 0;
  if (auto ro = event_log::open_read_only(a.dir, log_options{})) {
    if (ro.value()->encrypted()) {
      encrypted = true;
      auto fl = ro.value()->forgotten();
      if (!fl) return fail(fl.error(), kExitCorrupt);
      forgotten = fl.value().size();
    }
    auto ml = ro.value()->stream_metadata_list();
    if (!ml) return fail(ml.error(), kExitCorrupt);
    for (const stream_metadata_entry& e : ml.value()) (e.metadata.deleted ? deleted_streams : limited_streams) += 1;
  }

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
    j["start_position"] = s.start.value;  // where the log starts (0: retention never removed anything)
    j["first_sequence"] = s.first_sequence.value;
    j["chain_head"] = chain && chain->entries ? ojson(chain->head) : ojson();
    j["encrypted"] = encrypted;
    j["forgotten_streams"] = forgotten;
    j["deleted_streams"] = deleted_streams;
    j["truncated_or_limited_streams"] = limited_streams;
    if (s.archive_dir.empty()) {
      j["archive"] = ojson();
    } else {
      ojson ar;
      ar["dir"] = s.archive_dir;
      ar["segments"] = s.archived_segments;
      ar["bytes_on_disk"] = s.archive_bytes_on_disk;
      j["archive"] = ar;
    }
    j["intact"] = intact;  // as far as the tail check sees: `varve verify` reads everything
    j["tail_events_checked"] = t.events;
    if (!intact) j["problem"] = t.first_problem.to_string();
    j["session"] = session_json(metrics.value());
    if (chain) {
      ojson c;
      c["entries"] = chain->entries;
      c["last_segment"] = chain->entries ? ojson(chain->last_segment) : ojson();
      c["head"] = chain->entries ? ojson(chain->head) : ojson();
      j["chain"] = c;
    }
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
  if (s.start.value)
    std::printf("start          %s, sequence %" PRIu64 " (retention removed what came before)\n",
                pos(s.start).c_str(), s.first_sequence.value);
  std::printf("streams        %" PRIu64 "\n", s.streams);
  if (encrypted)
    std::printf("encryption     per-stream keys (DIR/keys); %" PRIu64 " stream(s) forgotten\n", forgotten);
  if (deleted_streams + limited_streams)
    std::printf("lifecycle      %" PRIu64 " stream(s) deleted, %" PRIu64
                " truncated or limited (DIR/streams; `varve stream meta`)\n",
                deleted_streams, limited_streams);
  std::printf("written        %s\n", pos(s.written).c_str());
  std::printf("committed      %s\n", pos(s.committed).c_str());
  std::printf("durable        %s\n", pos(s.durable).c_str());
  std::printf("bytes on disk  %" PRIu64 " (%s, every file of the directory)\n", s.bytes_on_disk,
              human_bytes(s.bytes_on_disk).c_str());
  if (!s.archive_dir.empty())
    std::printf("archive        %s: %" PRIu64 " segment(s) in %s\n", s.archive_dir.c_str(), s.archived_segments,
                human_bytes(s.archive_bytes_on_disk).c_str());
  if (intact)
    std::printf("checked        segment file sizes, and the unsealed tail (%s, %" PRIu64
                " events): intact; `varve verify` reads everything\n",
                tail_segments ? segment_range(t.first_checked, tail_segments).c_str() : "none", t.events);
  else
    std::printf("checked        NOT intact (see below; `varve verify` reads everything)\n");
  if (chain && chain->entries)
    std::printf("chain head     %s (segment %" PRIu64 ", %" PRIu64 " segments chained)\n", chain->head.c_str(),
                chain->last_segment, chain->entries);
  else if (chain)
    std::printf("chain head     none yet (no segment sealed since the chain began)\n");
  print_session(metrics.value());
  return intact ? kExitOk : fail(t.first_problem, kExitCorrupt);
}

// --- metrics ---------------------------------------------------------------

struct metrics_args {
  std::string dir;
  std::string output;  // a file, replaced atomically; empty: stdout
  std::string label;   // the log="" label; empty: the absolute directory
  bool json = false;
  bool consumers = true;
};

int cmd_metrics(const metrics_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto got = read_metrics(a.dir, {.consumers = a.consumers, .disk = true});
  if (!got) return fail_open(got.error(), a.dir);
  const log_metrics& m = got.value();
  std::string text;
  if (a.json) {
    ojson j;
    j["dir"] = a.dir;
    j["committed"] = m.committed.value;
    j["durable"] = m.durable.value;
    j["events"] = m.next_sequence;
    j["segments"] = m.segments;
    j["bytes_on_disk"] = m.bytes_on_disk;
    j["session"] = session_json(m);
    j["consumers"] = ojson::array();
    for (const consumer_lag& c : m.consumers) {
      ojson cj;
      cj["kind"] = c.what == consumer_lag::kind::subscription ? "subscription" : "group";
      cj["name"] = c.name;
      if (c.partition >= 0) cj["partition"] = c.partition;
      cj["position"] = c.at.is_none() ? ojson() : ojson(c.at.value);
      cj["lag_bytes"] = c.lag_bytes;
      cj["lag_events"] = c.lag_events_known ? ojson(c.lag_events) : ojson();
      if (!c.problem.empty()) cj["problem"] = c.problem;
      j["consumers"].push_back(std::move(cj));
    }
    text = j.dump(-1, ' ', false, ojson::error_handler_t::replace) + "\n";
  } else {
    std::error_code ec;
    const std::string label =
        !a.label.empty() ? a.label : std::filesystem::absolute(a.dir, ec).lexically_normal().string();
    text = prometheus_text(m, label.empty() ? a.dir : label);
  }
  if (a.output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return std::fflush(stdout) == 0 ? kExitOk : fail_with(kExitError, "io_error", "stdout: write failed");
  }
  // node_exporter's textfile collector may read the file at any moment: write
  // a temporary file beside it and rename it over, so it never sees half.
  const std::string tmp = a.output + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return fail_with(kExitError, "io_error", tmp + ": " + std::strerror(errno));
  const bool wrote = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const bool closed = std::fclose(f) == 0;
  if (!wrote || !closed || std::rename(tmp.c_str(), a.output.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    return fail_with(kExitError, "io_error", a.output + ": " + why);
  }
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
  vf->add_flag("--chain", a->chain,
               "Check the tamper-evident chain instead: hash every chained segment again and print "
               "the head (exit 4 if a segment does not match)");
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

void add_metrics(CLI::App& app, command_list& out) {
  auto a = std::make_shared<metrics_args>();
  auto* mc = app.add_subcommand(
      "metrics",
      "Print the log's counters (appends, roll-overs, syncs and their latency histogram, recovery "
      "actions) and every named subscription's and consumer group's lag, in the Prometheus text "
      "format (node_exporter's textfile collector, a scrape sidecar); reads without the writer lock");
  mc->add_option("DIR", a->dir, "Log directory")->required();
  mc->add_option("-o,--output", a->output,
                 "Write to this file instead of stdout, replacing it atomically (a .prom file of the "
                 "textfile collector's directory)");
  mc->add_option("--label", a->label, "Value of the log=\"...\" label (default: the absolute directory)");
  mc->add_flag("!--no-consumers", a->consumers, "Leave out subscription and group lags");
  add_json_flag(*mc, a->json, "Print as one JSON object instead");
  out.push_back({mc, [a] { return cmd_metrics(*a); }});
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
