// varve-restart: how long event_log::open takes against the size of the log,
// after a clean close and after a writer was SIGKILLed mid-append.
//
// For each size (default 1, 10 and 50 million ES-1 events: 100-byte payloads,
// 100,000 streams) a log is built, closed, then:
//   clean.inproc  open() timed in this process, after a clean close
//   clean.cold    open() timed inside a freshly exec'd process (this binary
//                 with --time-open DIR), after a clean close
//   crash.inproc  a forked child opens the log and appends in a loop; it is
//                 SIGKILLed at a random moment while appending; then open()
//                 (which runs recovery on the unsealed tail) is timed here
//   crash.cold    the same, with the open timed in a freshly exec'd process
// Each is repeated --reps times; the table shows the median (and min/max).
// The page cache stays warm (nothing is dropped: the machine is shared).
// Design goal: flat with log size (recovery scans only the unsealed tail).
#include <fcntl.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "varve/varve.h"

namespace vb = varve_bench;
using json = nlohmann::json;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "varve-restart: %s\n", what.c_str());
  std::exit(1);
}

uint64_t steady_ns() {
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

varve::log_options opts(uint64_t segment_bytes) {
  varve::log_options o;
  o.segment_bytes = segment_bytes;
  o.mode = varve::durability::none;
  return o;
}

struct open_sample {
  double open_ms = 0;
  uint64_t events = 0;
  uint64_t committed = 0;
  uint64_t segments = 0;
};

// --time-open mode: open, report, close. One line on stdout.
int time_open_mode(const std::string& dir) {
  uint64_t t0 = steady_ns();
  auto r = varve::event_log::open(dir, opts(64ull << 20));
  uint64_t t1 = steady_ns();
  if (!r) {
    std::fprintf(stderr, "open %s: %s\n", dir.c_str(), r.error().to_string().c_str());
    return 1;
  }
  auto st = r.value()->stats();
  std::printf("open_ns %" PRIu64 " events %" PRIu64 " committed %" PRIu64 " segments %" PRIu64 "\n", t1 - t0,
              st.events, st.committed.value, st.segments);
  std::fflush(stdout);
  (void)r.value()->close();
  return 0;
}

open_sample open_inproc(const std::string& dir) {
  uint64_t t0 = steady_ns();
  auto r = varve::event_log::open(dir, opts(64ull << 20));
  uint64_t t1 = steady_ns();
  if (!r) die("open " + dir + ": " + r.error().to_string());
  auto st = r.value()->stats();
  open_sample s{static_cast<double>(t1 - t0) / 1e6, st.events, st.committed.value, st.segments};
  if (auto c = r.value()->close(); !c.ok()) die("close: " + c.to_string());
  return s;
}

open_sample open_cold(const std::string& self, const std::string& dir) {
  std::string out;
  if (!vb::run_capture({self, "--time-open", dir}, out)) die("--time-open child failed: " + out);
  open_sample s;
  uint64_t ns = 0;
  if (std::sscanf(out.c_str(), "open_ns %" SCNu64 " events %" SCNu64 " committed %" SCNu64 " segments %" SCNu64, &ns,
                  &s.events, &s.committed, &s.segments) != 4)
    die("cannot parse --time-open output: " + out);
  s.open_ms = static_cast<double>(ns) / 1e6;
  return s;
}

// Forks a writer that opens `dir` and appends until it is SIGKILLed, at a random
// moment after it has acknowledged `min_appends` appends. Returns the number of
// events the log held when the child reported ready (all acknowledged).
uint64_t crash_a_writer(const std::string& dir, uint64_t aggregates, uint64_t seed, uint64_t min_appends,
                        std::mt19937_64& delay_rng) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(fds[0]);
    auto r = varve::event_log::open(dir, opts(64ull << 20));
    if (!r) {
      std::fprintf(stderr, "crash child: open: %s\n", r.error().to_string().c_str());
      _exit(2);
    }
    auto& log = *r.value();
    vb::splitmix64 rng(seed);
    std::byte payload[vb::kPayloadBytes];
    for (auto& b : payload) b = static_cast<std::byte>(rng.next());
    varve::event_data ev;
    ev.payload = {payload, sizeof payload};
    uint64_t acknowledged_at_ready = 0;
    for (uint64_t i = 0; i < 200'000'000; ++i) {
      auto agg = static_cast<uint64_t>((static_cast<unsigned __int128>(rng.next()) * aggregates) >> 64);
      auto s = varve::stream_id::from_u64(agg);
      varve::stream_version v = log.version_of(s);
      ev.type = static_cast<uint32_t>((v + 1) % 8);
      ev.timestamp_ns = i + 1;
      payload[0] = static_cast<std::byte>(i);
      auto a = log.append(s, varve::expected_version::exact(v), ev);
      if (!a) {
        std::fprintf(stderr, "crash child: append: %s\n", a.error().to_string().c_str());
        _exit(3);
      }
      if (i + 1 == min_appends) {
        acknowledged_at_ready = log.stats().events;
        if (write(fds[1], &acknowledged_at_ready, 8) != 8) _exit(4);
      }
    }
    _exit(5);  // never killed: the parent reports it
  }
  close(fds[1]);
  uint64_t events_at_ready = 0;
  if (read(fds[0], &events_at_ready, 8) != 8) {
    int st = 0;
    waitpid(pid, &st, 0);
    die("crash child died before it was ready (status " + std::to_string(st) + ")");
  }
  // A random moment in the next 0.2 - 2 ms: the child is appending all the time.
  std::uniform_int_distribution<int> us(200, 2000);
  usleep(static_cast<useconds_t>(us(delay_rng)));
  kill(pid, SIGKILL);
  int st = 0;
  waitpid(pid, &st, 0);
  close(fds[0]);
  if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
    die("crash child was not killed by SIGKILL (status " + std::to_string(st) + ")");
  return events_at_ready;
}

double build_log(const std::string& dir, uint64_t events, uint64_t aggregates, uint64_t segment_bytes) {
  auto r = varve::event_log::create(dir, opts(segment_bytes));
  if (!r) die("create " + dir + ": " + r.error().to_string());
  auto& log = *r.value();
  vb::es1_stream gen(aggregates);
  std::byte payload[vb::kPayloadBytes];
  varve::event_data ev;
  ev.payload = {payload, sizeof payload};
  double t0 = vb::now_seconds();
  for (uint64_t i = 0; i < events; ++i) {
    uint32_t version = 0;
    uint32_t agg = gen.next(version, payload);
    ev.type = version % 8;
    ev.timestamp_ns = i + 1;
    auto a = log.append(varve::stream_id::from_u64(agg), varve::expected_version::exact(version - 1), ev);
    if (!a) die("build append #" + std::to_string(i) + ": " + a.error().to_string());
  }
  double secs = vb::now_seconds() - t0;
  if (auto c = log.close(); !c.ok()) die("close after build: " + c.to_string());
  return secs;
}

std::vector<uint64_t> parse_sizes(const std::string& s) {
  std::vector<uint64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoull(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string time_open_dir, root = vb::scratch_root(), sizes_arg = "1000000,10000000,50000000", json_file;
  uint64_t aggregates = 100'000, segment_bytes = 64ull << 20;
  int reps = 7;
  bool keep = false, no_cold = false;
  CLI::App app{"varve-restart: event_log::open time against log size, after a clean close and after SIGKILL"};
  app.add_option("--time-open", time_open_dir, "(internal) open DIR, print the time, exit");
  app.add_option("--sizes", sizes_arg, "log sizes in events, comma-separated")->capture_default_str();
  app.add_option("--aggregates", aggregates, "streams")->capture_default_str();
  app.add_option("--reps", reps, "repetitions of each measurement (median reported)")->capture_default_str();
  app.add_option("--dir", root, "scratch directory root")->capture_default_str();
  app.add_option("--segment-bytes", segment_bytes, "segment capacity")->capture_default_str();
  app.add_option("--json", json_file, "write the figures as JSON to this file");
  app.add_flag("--no-cold", no_cold, "skip the fresh-process measurements");
  app.add_flag("--keep", keep, "keep the logs");
  CLI11_PARSE(app, argc, argv);
  if (!time_open_dir.empty()) return time_open_mode(time_open_dir);

  std::string self = "/proc/self/exe";
  {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) self.assign(buf, static_cast<size_t>(n));
  }

  std::vector<uint64_t> sizes = parse_sizes(sizes_arg);
  std::vector<std::string> notes;
  // Disk space: about 200 bytes per event, plus a segment of slack; scale down if short.
  struct statvfs sv{};
  if (statvfs(root.c_str(), &sv) == 0) {
    uint64_t avail = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
    for (auto& n : sizes) {
      uint64_t need = n * 200 + 4 * segment_bytes;
      if (need > avail * 8 / 10) {
        uint64_t scaled = (avail * 8 / 10 - 4 * segment_bytes) / 200;
        char buf[256];
        std::snprintf(buf, sizeof buf, "size %" PRIu64 " needs ~%.1f GB but %.1f GB are free: scaled to %" PRIu64,
                      n, need / 1e9, avail / 1e9, scaled);
        notes.push_back(buf);
        std::fprintf(stderr, "note: %s\n", buf);
        n = scaled;
      }
    }
  }

  std::mt19937_64 delay_rng(vb::kSeed);
  json results = json::array();
  struct row {
    uint64_t size;
    std::map<std::string, std::vector<double>> ms;
    std::map<std::string, std::vector<double>> tail_kib;
    std::map<std::string, uint64_t> events_max;
    double build_s;
    uint64_t disk;
    uint64_t segments;
  };
  std::vector<row> rows;
  uint64_t lost = 0;

  for (uint64_t n : sizes) {
    const std::string base = vb::make_scratch_dir(root, "varve-restart");
    const std::string dir = base + "/log";
    std::fprintf(stderr, "building %" PRIu64 " events in %s...\n", n, dir.c_str());
    row rw{};
    rw.size = n;
    rw.build_s = build_log(dir, n, aggregates, segment_bytes);
    rw.disk = vb::bytes_on_disk(dir);
    ::sync();  // untimed: let writeback finish so it does not compete with the opens
    auto note = [&](const std::string& key, const open_sample& s) {
      rw.ms[key].push_back(s.open_ms);
      rw.tail_kib[key].push_back(static_cast<double>(s.committed & (segment_bytes - 1)) / 1024.0);
      rw.events_max[key] = std::max(rw.events_max[key], s.events);
      rw.segments = std::max(rw.segments, s.segments);
    };
    // Clean close.
    (void)open_inproc(dir);  // the first open after the build: not counted
    for (int r = 0; r < reps; ++r) note("clean.inproc", open_inproc(dir));
    if (!no_cold)
      for (int r = 0; r < reps; ++r) note("clean.cold", open_cold(self, dir));
    // SIGKILL of a writer mid-append.
    for (int pass = 0; pass < (no_cold ? 1 : 2); ++pass) {
      const std::string key = pass == 0 ? "crash.inproc" : "crash.cold";
      for (int r = 0; r < reps; ++r) {
        uint64_t acked = crash_a_writer(dir, aggregates, vb::kSeed + 1000 * pass + r, 20'000, delay_rng);
        open_sample s = pass == 0 ? open_inproc(dir) : open_cold(self, dir);
        if (s.events < acked) {
          ++lost;
          std::fprintf(stderr, "PROBLEM: after SIGKILL the log holds %" PRIu64 " events; %" PRIu64
                               " were acknowledged before the kill\n", s.events, acked);
        }
        note(key, s);
      }
    }
    json jr;
    jr["events_built"] = n;
    jr["build_seconds"] = rw.build_s;
    jr["bytes_on_disk"] = rw.disk;
    jr["segments"] = rw.segments;
    for (auto& [k, v] : rw.ms) {
      jr[k] = {{"open_ms", v},
               {"median_ms", vb::median(v)},
               {"tail_KiB", rw.tail_kib[k]},
               {"events_max", rw.events_max[k]}};
    }
    results.push_back(jr);
    rows.push_back(rw);
    if (!keep) vb::remove_tree(base);
    else std::fprintf(stderr, "kept %s\n", base.c_str());
  }

  std::printf("varve-restart  A=%" PRIu64 " segment=%" PRIu64 " MiB reps=%d\n", aggregates, segment_bytes >> 20, reps);
  std::printf("machine: %s, %ld cores, %s, %s on %s\n", vb::cpu_model().c_str(), vb::online_cores(),
              vb::kernel_release().c_str(), vb::filesystem_type(root).c_str(), root.c_str());
  for (auto& nt : notes) std::printf("note: %s\n", nt.c_str());
  std::printf("%12s %9s %9s %-14s %10s %10s %10s %12s\n", "events", "GB disk", "segments", "open after",
              "median ms", "min ms", "max ms", "median tail");
  for (auto& rw : rows) {
    for (auto& [k, v] : rw.ms) {
      auto mm = std::minmax_element(v.begin(), v.end());
      std::printf("%12" PRIu64 " %9.2f %9" PRIu64 " %-14s %10.3f %10.3f %10.3f %8.0f KiB\n", rw.size, rw.disk / 1e9,
                  rw.segments, k.c_str(), vb::median(v), *mm.first, *mm.second, vb::median(rw.tail_kib[k]));
    }
  }
  if (lost) std::printf("PROBLEM: %" PRIu64 " recoveries lost acknowledged events (see stderr)\n", lost);

  if (!json_file.empty()) {
    json j;
    j["benchmark"] = "varve-restart";
    j["date"] = vb::utc_now_iso();
    j["machine"] = {{"cpu", vb::cpu_model()},
                    {"cores", vb::online_cores()},
                    {"kernel", vb::kernel_release()},
                    {"filesystem", vb::filesystem_type(root)}};
    j["config"] = {{"aggregates", aggregates}, {"segment_bytes", segment_bytes}, {"reps", reps}};
    j["notes"] = notes;
    j["sizes"] = results;
    j["recoveries_that_lost_acknowledged_events"] = lost;
    j["peak_rss_bytes"] = vb::peak_rss_bytes();
    std::ofstream out(json_file);
    out << j.dump(2) << "\n";
  }
  return lost ? 3 : 0;
}
