// varve-es1-core: the ES-1 workload's single-process phases for varve
// (P1 append, P4 scan, P6 per-append latency) together with the ceilings they
// are judged against, measured in the same run on the same data:
//
//   ceiling.memcpy   the same record stream (same record size, same payload
//                    bytes, a plain header) memcpy'd into a pre-faulted
//                    anonymous buffer: the same byte count varve wrote (P1)
//   ceiling.bare     the DESIGN.md bare loop: the same records memcpy'd into a
//                    MAP_SHARED mapping of a fallocate'd file pre-faulted with
//                    MADV_POPULATE_WRITE, each hashed with XXH3, then a release
//                    store of the end position (what any checksummed mmap log
//                    must do at least; no index, no version check)
//   ceiling.seqread  read every byte of the memcpy buffer (sum of u64s) (P4)
//   P6.bare          the bare loop's records timed one by one like P6 (the
//                    latency floor of this machine and timer)
//
// See docs/BENCHMARKS.md for the data generator and how to read the figures.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <x86intrin.h>
#include <xxhash.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "ceilings.h"
#include "varve/varve.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace vb = varve_bench;
using json = nlohmann::json;

namespace {

struct config {
  uint64_t events = 5'000'000;
  uint64_t aggregates = 100'000;
  uint64_t p6_events = 1'000'000;
  std::string dir;
  std::string phases = "P1,P4,P6";
  std::string json_file;
  int reps = 1;
  int p4_scans = 3;
  bool ceilings = true;
  bool clock_timestamps = false;
  bool keep = false;
  std::string timer = "steady";
  uint64_t segment_bytes = 64ull << 20;
  bool chain = false;  // log_options::tamper_evident_chain: the sealer hashes each segment
  bool encrypt = false;  // log_options::master_key: every payload sealed with its stream's key
  // Stream lifecycle metadata on two streams outside ES-1's (one deleted, one
  // limited) before anything is appended: every append pays the tombstone
  // check and every event read the visibility check (varve/lifecycle.h).
  bool lifecycle = false;

  bool has(const std::string& p) const {
    std::stringstream ss(phases);
    std::string item;
    while (std::getline(ss, item, ','))
      if (item == p) return true;
    return false;
  }
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "varve-es1-core: %s\n", what.c_str());
  std::exit(1);
}

using varve_bench::figures;

varve::log_options log_opts(const config& c) {
  varve::log_options o;
  o.segment_bytes = c.segment_bytes;
  o.mode = varve::durability::none;
  o.verify_checksums = true;
  o.tamper_evident_chain = c.chain;
  if (c.encrypt) {
    // One key for the whole run, so the probe, P1 and P4 logs all use it.
    static const varve::master_key key = varve::generate_master_key();
    o.master_key = key;
  }
  return o;
}

std::unique_ptr<varve::event_log> create_log(const std::string& dir, const config& c) {
  auto r = varve::event_log::create(dir, log_opts(c));
  if (!r) die("create " + dir + ": " + r.error().to_string());
  if (c.lifecycle) {
    varve::event_data e;
    e.payload = varve::event_data::bytes("x");
    if (auto a = r.value()->append("lifecycle-deleted", varve::expected_version::any(), e); !a)
      die("lifecycle: " + a.error().to_string());
    if (auto d = r.value()->delete_stream("lifecycle-deleted"); !d) die("lifecycle: " + d.error().to_string());
    if (auto l = r.value()->set_stream_limits("lifecycle-limited", 10, 3600'000'000'000ull); !l)
      die("lifecycle: " + l.error().to_string());
  }
  return std::move(r.value());
}

// Appends events [0, n) of the ES-1 stream, one per append call; returns seconds.
double append_all(varve::event_log& log, const vb::es1_data& d, uint64_t n, bool clock_ts) {
  const uint32_t* agg = d.aggregate.data();
  const uint32_t* ver = d.version.data();
  varve::event_data ev;
  double t0 = vb::now_seconds();
  for (uint64_t i = 0; i < n; ++i) {
    ev.type = ver[i] % 8;
    ev.payload = {d.payload_of(i), vb::kPayloadBytes};
    ev.timestamp_ns = clock_ts ? 0 : i + 1;
    auto r = log.append(varve::stream_id::from_u64(agg[i]), varve::expected_version::exact(ver[i] - 1), ev);
    if (!r) [[unlikely]]
      die("append #" + std::to_string(i) + ": " + r.error().to_string());
  }
  return vb::now_seconds() - t0;
}

// The record size varve uses for one ES-1 event (all ES-1 records have the same
// size: 8-byte integer stream id, 100-byte payload, no optional ids).
uint32_t probe_record_bytes(const std::string& root, const vb::es1_data& d, const config& c) {
  std::string dir = vb::make_scratch_dir(root, "varve-es1-probe");
  uint32_t bytes = 0;
  {
    auto log = create_log(dir + "/log", c);
    append_all(*log, d, 1, c.clock_timestamps);
    auto reader = log->read();
    varve::event_view v;
    auto r = reader.next(v);
    if (!r || !r.value()) die("probe: could not read back the first record");
    bytes = v.record_bytes;
    (void)log->close();
  }
  vb::remove_tree(dir);
  return bytes;
}

// The ceilings' record stream and buffer: bench/ceilings.h (shared with varve-bench).
using vb::ceiling_writer;
using vb::map_anonymous_prefaulted;

struct file_mapping {
  int fd = -1;
  std::string path;
  void* addr = nullptr;
  uint64_t bytes = 0;
  file_mapping(const std::string& p, uint64_t n) : path(p), bytes((n + 4095) & ~uint64_t{4095}) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open " + path + ": " + strerror(errno));
    if (int e = posix_fallocate(fd, 0, static_cast<off_t>(bytes)); e != 0) die("fallocate " + path + ": " + strerror(e));
    addr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) die("mmap " + path + ": " + strerror(errno));
    if (madvise(addr, bytes, MADV_POPULATE_WRITE) != 0)
      std::fprintf(stderr, "note: MADV_POPULATE_WRITE failed (%s); touching pages instead\n", strerror(errno));
    for (uint64_t o = 0; o < bytes; o += 4096) static_cast<volatile char*>(addr)[o] = 0;
  }
  ~file_mapping() {
    munmap(addr, bytes);
    ::close(fd);
    ::unlink(path.c_str());
  }
};

// --- per-operation timers ---
struct tsc_timer {
  double ns_per_tick = 0;
  static inline uint64_t start() {
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
  }
  static inline uint64_t stop() {
    unsigned aux;
    uint64_t t = __rdtscp(&aux);
    _mm_lfence();
    return t;
  }
  void calibrate() {
    double s0 = vb::now_seconds();
    uint64_t c0 = __rdtsc();
    while (vb::now_seconds() - s0 < 0.2) {
    }
    double s1 = vb::now_seconds();
    uint64_t c1 = __rdtsc();
    ns_per_tick = (s1 - s0) * 1e9 / static_cast<double>(c1 - c0);
  }
};

inline uint64_t steady_ns() {
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

// Times `op(i)` for i in [0, n) one by one; returns latencies in ns, in call
// order when `keep_order`, else sorted.
template <class Op>
std::vector<double> time_each(uint64_t n, const std::string& timer, const tsc_timer& tsc, Op&& op,
                              bool keep_order = false) {
  std::vector<uint64_t> raw(n, 1);  // pre-touched
  if (timer == "rdtsc") {
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t a = tsc_timer::start();
      op(i);
      raw[i] = tsc_timer::stop() - a;
    }
  } else {
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t a = steady_ns();
      op(i);
      raw[i] = steady_ns() - a;
    }
  }
  std::vector<double> ns(n);
  double scale = timer == "rdtsc" ? tsc.ns_per_tick : 1.0;
  for (uint64_t i = 0; i < n; ++i) ns[i] = static_cast<double>(raw[i]) * scale;
  if (!keep_order) std::sort(ns.begin(), ns.end());
  return ns;
}

void add_latency(figures& f, const std::string& prefix, const std::vector<double>& ns) {
  f.add(prefix + ".p50_ns", vb::percentile_sorted(ns, 50), "ns");
  f.add(prefix + ".p99_ns", vb::percentile_sorted(ns, 99), "ns");
  f.add(prefix + ".p99.9_ns", vb::percentile_sorted(ns, 99.9), "ns");
  f.add(prefix + ".p99.99_ns", vb::percentile_sorted(ns, 99.99), "ns");
  f.add(prefix + ".max_ns", ns.empty() ? 0 : ns.back(), "ns");
  double sum = 0;
  for (double x : ns) sum += x;
  f.add(prefix + ".mean_ns", ns.empty() ? 0 : sum / static_cast<double>(ns.size()), "ns");
}

// Reads every byte of [p, p+n): a sum of its 8-byte words and tail bytes (the
// same kind of work as the sequential-read ceiling's sum of u64s).
inline uint64_t touch(const std::byte* p, size_t n) {
  uint64_t sum = 0;
  size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    uint64_t w;
    std::memcpy(&w, p + k, 8);
    sum += w;
  }
  for (; k < n; ++k) sum += static_cast<uint8_t>(p[k]);
  return sum;
}

// Scans the whole log with one reader, touching every payload byte.
struct scan_result {
  uint64_t events = 0, record_bytes = 0, payload_bytes = 0, checksum = 0;
  double seconds = 0;
};

scan_result scan(const varve::event_log& log) {
  scan_result s;
  varve::log_reader reader = log.read();
  varve::event_view v;
  uint64_t sum = 0;
  double t0 = vb::now_seconds();
  for (;;) {
    auto r = reader.next(v);
    if (!r) [[unlikely]]
      die("scan: " + r.error().to_string());
    if (!r.value()) break;
    sum += touch(v.payload.data(), v.payload.size());
    s.payload_bytes += v.payload.size();
    s.record_bytes += v.record_bytes;
    ++s.events;
  }
  s.seconds = vb::now_seconds() - t0;
  s.checksum = sum;
  return s;
}

uint64_t expected_payload_sum(const vb::es1_data& d, uint64_t n) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; ++i) sum += touch(d.payload_of(i), vb::kPayloadBytes);
  return sum;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void settle() { ::sync(); }  // untimed: no writeback competes with the next phase

void run_once(const config& c, const vb::es1_data& d, uint32_t record_bytes, const tsc_timer& tsc,
              figures& f, json& run_json, uint64_t payload_sum) {
  const std::string root = vb::make_scratch_dir(c.dir, "varve-es1");
  const std::string log_dir = root + "/log";
  const uint64_t E = c.events;
  const uint64_t stream_bytes = E * record_bytes;  // what the ceilings copy
  ceiling_writer cw(record_bytes);

  std::unique_ptr<varve::event_log> log;
  if (c.has("P1") || c.has("P4")) {
    settle();
    log = create_log(log_dir, c);
    const double thread_cpu0 = thread_cpu_seconds(), proc_cpu0 = process_cpu_seconds();
    double secs = append_all(*log, d, E, c.clock_timestamps);
    const double thread_cpu = thread_cpu_seconds() - thread_cpu0, proc_cpu = process_cpu_seconds() - proc_cpu0;
    auto st = log->stats();
    if (c.has("P1")) {
      // CPU time is less sensitive than wall time to other tenants of a shared machine:
      // the writer thread's own, and the whole process's (background threads included).
      f.add("P1.writer_cpu_ns_per_event", thread_cpu * 1e9 / static_cast<double>(E), "ns");
      f.add("P1.process_cpu_ns_per_event", proc_cpu * 1e9 / static_cast<double>(E), "ns");
      f.add("P1.events_per_s", static_cast<double>(E) / secs, "events/s");
      f.add("P1.payload_MB_per_s", static_cast<double>(E * vb::kPayloadBytes) / secs / 1e6, "MB/s");
      f.add("P1.record_MB_per_s", static_cast<double>(stream_bytes) / secs / 1e6, "MB/s");
      f.add("P1.ns_per_event", secs * 1e9 / static_cast<double>(E), "ns");
    }
    run_json["log"] = {{"events", st.events},
                       {"streams", st.streams},
                       {"segments", st.segments},
                       {"committed_position", st.committed.value},
                       {"stats_bytes_on_disk", st.bytes_on_disk},
                       {"du_bytes_on_disk", vb::bytes_on_disk(log_dir)}};
    if (st.events != E + (c.lifecycle ? 1 : 0))  // --lifecycle: the deleted stream's one event
      die("stats().events = " + std::to_string(st.events) + ", expected " + std::to_string(E));
  }

  // Ceilings for P1 and P4, on the same records.
  void* buf = nullptr;
  if (c.ceilings && (c.has("P1") || c.has("P4"))) {
    settle();
    buf = map_anonymous_prefaulted(stream_bytes);
    auto* dst = static_cast<std::byte*>(buf);
    double t0 = vb::now_seconds();
    for (uint64_t i = 0; i < E; ++i) cw.write(dst + i * record_bytes, d, i);
    double secs = vb::now_seconds() - t0;
    asm volatile("" ::"r"(dst) : "memory");
    f.add("ceiling.memcpy.events_per_s", static_cast<double>(E) / secs, "events/s");
    f.add("ceiling.memcpy.record_MB_per_s", static_cast<double>(stream_bytes) / secs / 1e6, "MB/s");

    {
      file_mapping fm(root + "/bare.dat", stream_bytes);
      auto* out = static_cast<std::byte*>(fm.addr);
      std::atomic<uint64_t> committed{0};
      double b0 = vb::now_seconds();
      for (uint64_t i = 0; i < E; ++i) {
        std::byte* rec = out + i * record_bytes;
        cw.write(rec, d, i);
        uint64_t h = XXH3_64bits(rec + 8, record_bytes - 8);
        std::memcpy(rec, &h, 8);
        committed.store((i + 1) * record_bytes, std::memory_order_release);
      }
      double bsecs = vb::now_seconds() - b0;
      f.add("ceiling.bare.events_per_s", static_cast<double>(E) / bsecs, "events/s");
      f.add("ceiling.bare.record_MB_per_s", static_cast<double>(stream_bytes) / bsecs / 1e6, "MB/s");
    }
  }

  if (c.has("P4")) {
    settle();
    // Warm the page cache and the reader's mapping once (untimed), then time scans.
    scan_result warmup = scan(*log);
    if (warmup.events != E) die("scan returned " + std::to_string(warmup.events) + " events, expected " + std::to_string(E));
    if (warmup.checksum != payload_sum) die("scan: payload byte sum differs from the data appended");
    if (warmup.record_bytes != stream_bytes)
      std::fprintf(stderr, "note: record bytes %" PRIu64 " != %" PRIu64 " (E x probe size)\n",
                   warmup.record_bytes, stream_bytes);
    std::vector<double> eps, rgbs, pgbs;
    for (int k = 0; k < c.p4_scans; ++k) {
      scan_result s = scan(*log);
      eps.push_back(static_cast<double>(s.events) / s.seconds);
      rgbs.push_back(static_cast<double>(s.record_bytes) / s.seconds / 1e9);
      pgbs.push_back(static_cast<double>(s.payload_bytes) / s.seconds / 1e9);
    }
    f.add("P4.events_per_s", vb::median(eps), "events/s");
    f.add("P4.record_GB_per_s", vb::median(rgbs), "GB/s");
    f.add("P4.payload_GB_per_s", vb::median(pgbs), "GB/s");

    // A second instance opened read-only (fresh mappings on a warm page cache),
    // as a reader in another process would see it; first scan only.
    auto ro = varve::event_log::open_read_only(log_dir, log_opts(c));
    if (!ro) {
      std::fprintf(stderr, "note: open_read_only failed: %s\n", ro.error().to_string().c_str());
    } else {
      scan_result s = scan(*ro.value());
      if (s.events == E) {
        f.add("P4.read_only_first_scan.events_per_s", static_cast<double>(s.events) / s.seconds, "events/s");
        f.add("P4.read_only_first_scan.record_GB_per_s", static_cast<double>(s.record_bytes) / s.seconds / 1e9, "GB/s");
      } else {
        std::fprintf(stderr, "note: read-only scan saw %" PRIu64 " events\n", s.events);
      }
    }

    if (buf) {
      const auto* w = static_cast<const uint64_t*>(buf);
      const uint64_t words = stream_bytes / 8;
      std::vector<double> gbs;
      for (int k = 0; k < c.p4_scans; ++k) {
        uint64_t sum = 0;
        double t0 = vb::now_seconds();
        for (uint64_t i = 0; i < words; ++i) sum += w[i];
        double secs = vb::now_seconds() - t0;
        asm volatile("" ::"r"(sum));
        gbs.push_back(static_cast<double>(words * 8) / secs / 1e9);
      }
      f.add("ceiling.seqread.GB_per_s", vb::median(gbs), "GB/s");
      f.add("ceiling.seqread.events_per_s", vb::median(gbs) * 1e9 / record_bytes, "events/s");
    }
  }
  if (buf) munmap(buf, stream_bytes);
  if (log) {
    if (auto s = log->close(); !s.ok()) die("close: " + s.to_string());
    log.reset();
  }

  if (c.has("P6")) {
    const uint64_t n = std::min(c.p6_events, d.events);
    // Timer overhead: an empty timed region.
    auto empty = time_each(1'000'000, c.timer, tsc, [](uint64_t) { asm volatile(""); });
    f.add("P6.timer_overhead.p50_ns", vb::percentile_sorted(empty, 50), "ns");

    settle();
    auto l6 = create_log(root + "/log-p6", c);
    const uint32_t* agg = d.aggregate.data();
    const uint32_t* ver = d.version.data();
    varve::event_data ev;
    bool failed = false;
    auto lat = time_each(n, c.timer, tsc, [&](uint64_t i) {
      ev.type = ver[i] % 8;
      ev.payload = {d.payload_of(i), vb::kPayloadBytes};
      ev.timestamp_ns = c.clock_timestamps ? 0 : i + 1;
      auto r = l6->append(varve::stream_id::from_u64(agg[i]), varve::expected_version::exact(ver[i] - 1), ev);
      failed |= !r.ok();
    }, /*keep_order=*/true);
    if (failed) die("P6: an append failed");
    // Split by segment: the log's first segment (made when the log is created)
    // and the later ones (made ahead by the background thread). Read back
    // untimed: event i of the log is append i.
    std::vector<double> first_seg, later_segs;
    {
      const int l2 = __builtin_ctzll(c.segment_bytes);
      auto reader = l6->read();
      varve::event_view v;
      uint64_t i = 0;
      for (; i < n; ++i) {
        auto r = reader.next(v);
        if (!r || !r.value()) break;
        ((v.position.value >> l2) == 0 ? first_seg : later_segs).push_back(lat[i]);
      }
      if (i != n) die("P6: read back fewer events than appended");
    }
    std::sort(lat.begin(), lat.end());
    add_latency(f, "P6", lat);
    std::sort(first_seg.begin(), first_seg.end());
    std::sort(later_segs.begin(), later_segs.end());
    if (!first_seg.empty()) add_latency(f, "P6.first_segment", first_seg);
    if (!later_segs.empty()) add_latency(f, "P6.later_segments", later_segs);
    (void)l6->close();
    l6.reset();

    if (c.ceilings) {
      settle();
      file_mapping fm(root + "/bare-p6.dat", n * record_bytes);
      auto* out = static_cast<std::byte*>(fm.addr);
      std::atomic<uint64_t> committed{0};
      auto bare = time_each(n, c.timer, tsc, [&](uint64_t i) {
        std::byte* rec = out + i * record_bytes;
        cw.write(rec, d, i);
        uint64_t h = XXH3_64bits(rec + 8, record_bytes - 8);
        std::memcpy(rec, &h, 8);
        committed.store((i + 1) * record_bytes, std::memory_order_release);
      });
      add_latency(f, "P6.bare", bare);
    }
  }

  if (!c.keep) vb::remove_tree(root);
  else std::fprintf(stderr, "kept %s\n", root.c_str());
}

std::string human(double v, const std::string& unit) {
  char buf[64];
  if (unit == "events/s") {
    std::snprintf(buf, sizeof buf, "%.2f M/s", v / 1e6);
  } else if (unit == "ns") {
    std::snprintf(buf, sizeof buf, "%.0f ns", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f %s", v, unit.c_str());
  }
  return buf;
}

}  // namespace

[[noreturn]] void varve_bench::fatal(const std::string& what) { die(what); }

int main(int argc, char** argv) {
  config c;
  c.dir = vb::scratch_root();
  CLI::App app{"varve-es1-core: ES-1 phases P1, P4, P6 for varve, with memcpy / sequential-read ceilings"};
  app.add_option("--events", c.events, "E: events to append (P1, P4)")->capture_default_str();
  app.add_option("--aggregates", c.aggregates, "A: aggregates (streams)")->capture_default_str();
  app.add_option("--p6-events", c.p6_events, "appends timed one by one in P6")->capture_default_str();
  app.add_option("--dir", c.dir, "scratch directory root (a fresh subdirectory is made and removed)")
      ->capture_default_str();
  app.add_option("--phases", c.phases, "comma-separated: P1,P4,P6")->capture_default_str();
  app.add_option("--json", c.json_file, "write the figures as JSON to this file");
  app.add_option("--reps", c.reps, "repeat all phases this many times; the table shows medians")
      ->capture_default_str();
  app.add_option("--p4-scans", c.p4_scans, "timed scans per repetition (median)")->capture_default_str();
  app.add_option("--timer", c.timer, "P6 timer: steady (std::chrono::steady_clock) or rdtsc")
      ->check(CLI::IsMember({"steady", "rdtsc"}))
      ->capture_default_str();
  app.add_option("--segment-bytes", c.segment_bytes, "segment capacity")->capture_default_str();
  app.add_flag("--clock-timestamps", c.clock_timestamps,
               "let the log stamp each event (CLOCK_REALTIME) instead of a caller counter");
  app.add_flag("!--no-ceilings", c.ceilings, "skip the memcpy / bare-loop / sequential-read ceilings");
  app.add_flag("--keep", c.keep, "keep the scratch directories");
  app.add_flag("--chain", c.chain, "keep a tamper-evident chain (the sealer hashes every segment)");
  app.add_flag("--lifecycle", c.lifecycle,
               "delete one stream and limit another (outside ES-1's) before appending: appends and reads "
               "pay stream lifecycle's checks");
  app.add_flag("--encrypt", c.encrypt,
               "crypto-shredding on: each payload sealed with its stream's key (P4 decrypts; the ceilings "
               "move the same, larger records)");
  CLI11_PARSE(app, argc, argv);
  if (c.events == 0 || c.aggregates == 0 || c.aggregates > UINT32_MAX) die("bad --events/--aggregates");

  const uint64_t gen_events = std::max(c.events, c.has("P6") ? c.p6_events : 0);
  std::fprintf(stderr, "generating %" PRIu64 " events over %" PRIu64 " aggregates (seed %" PRIu64 ")...\n",
               gen_events, c.aggregates, vb::kSeed);
  vb::es1_data d = vb::generate_es1(gen_events, c.aggregates);
  const uint64_t payload_sum = expected_payload_sum(d, c.events);
  const uint32_t record_bytes = probe_record_bytes(c.dir, d, c);
  tsc_timer tsc;
  if (c.timer == "rdtsc") tsc.calibrate();

  figures f;
  json runs = json::array();
  for (int rep = 0; rep < c.reps; ++rep) {
    json rj;
    run_once(c, d, record_bytes, tsc, f, rj, payload_sum);
    // Ratios against the ceilings of the same repetition (the machine is shared:
    // a ratio within one repetition is steadier than a ratio of medians).
    auto last = [&](const char* k) { return f.v.at(k).back(); };
    if (f.has("P1.events_per_s") && f.has("ceiling.memcpy.events_per_s")) {
      f.add("ratio.P1_vs_memcpy_pct", 100 * last("P1.events_per_s") / last("ceiling.memcpy.events_per_s"), "%");
      f.add("ratio.P1_vs_bare_pct", 100 * last("P1.events_per_s") / last("ceiling.bare.events_per_s"), "%");
    }
    if (f.has("P4.record_GB_per_s") && f.has("ceiling.seqread.GB_per_s"))
      f.add("ratio.P4_vs_seqread_pct", 100 * last("P4.record_GB_per_s") / last("ceiling.seqread.GB_per_s"), "%");
    json figs;
    for (auto& [k, vals] : f.v) figs[k] = vals.back();
    rj["figures"] = figs;
    runs.push_back(rj);
    std::fprintf(stderr, "rep %d/%d done\n", rep + 1, c.reps);
  }

  // Ratios of the medians (the per-repetition ratios are figures "ratio.*").
  std::map<std::string, double> ratio;
  if (f.has("P1.events_per_s") && f.has("ceiling.memcpy.events_per_s"))
    ratio["P1 / ceiling.memcpy (ratio of medians)"] = f.med("P1.events_per_s") / f.med("ceiling.memcpy.events_per_s");
  if (f.has("P1.events_per_s") && f.has("ceiling.bare.events_per_s"))
    ratio["P1 / ceiling.bare (ratio of medians)"] = f.med("P1.events_per_s") / f.med("ceiling.bare.events_per_s");
  if (f.has("P4.record_GB_per_s") && f.has("ceiling.seqread.GB_per_s"))
    ratio["P4 / ceiling.seqread (ratio of medians)"] = f.med("P4.record_GB_per_s") / f.med("ceiling.seqread.GB_per_s");

  const uint64_t rss = vb::peak_rss_bytes();
  std::printf("varve-es1-core  E=%" PRIu64 " A=%" PRIu64 " record=%u B  reps=%d  timer=%s  timestamps=%s\n",
              c.events, c.aggregates, record_bytes, c.reps, c.timer.c_str(),
              c.clock_timestamps ? "log clock" : "counter");
  std::printf("machine: %s, %ld cores, %s, %s on %s\n", vb::cpu_model().c_str(), vb::online_cores(),
              vb::kernel_release().c_str(), vb::filesystem_type(c.dir).c_str(), c.dir.c_str());
  std::printf("%-44s %16s %16s %16s\n", "figure", "median", "min", "max");
  for (auto& [k, vals] : f.v) {
    auto mm = std::minmax_element(vals.begin(), vals.end());
    std::printf("%-44s %16s %16s %16s\n", k.c_str(), human(vb::median(vals), f.unit[k]).c_str(),
                human(*mm.first, f.unit[k]).c_str(), human(*mm.second, f.unit[k]).c_str());
  }
  for (auto& [k, r] : ratio) std::printf("%-44s %15.1f%%\n", k.c_str(), r * 100);
  if (f.has("P6.p50_ns") && f.has("P6.timer_overhead.p50_ns"))
    std::printf("(P6 latencies include the timer; its own p50 is %.0f ns)\n", f.med("P6.timer_overhead.p50_ns"));
  std::printf("peak RSS: %.1f MiB\n", static_cast<double>(rss) / (1 << 20));

  if (!c.json_file.empty()) {
    json j;
    j["benchmark"] = "varve-es1-core";
    j["date"] = vb::utc_now_iso();
    j["machine"] = {{"cpu", vb::cpu_model()},
                    {"cores", vb::online_cores()},
                    {"kernel", vb::kernel_release()},
                    {"filesystem", vb::filesystem_type(c.dir)}};
    j["config"] = {{"events", c.events},           {"aggregates", c.aggregates},
                   {"p6_events", c.p6_events},     {"phases", c.phases},
                   {"reps", c.reps},               {"p4_scans", c.p4_scans},
                   {"timer", c.timer},             {"segment_bytes", c.segment_bytes},
                   {"record_bytes", record_bytes}, {"seed", vb::kSeed},
                   {"timestamps", c.clock_timestamps ? "log clock" : "counter"},
                   {"payloads", "pre-generated, 100 distinct bytes per event"}};
    json med, units;
    for (auto& [k, vals] : f.v) {
      med[k] = vb::median(vals);
      units[k] = f.unit[k];
    }
    j["median"] = med;
    j["units"] = units;
    j["ratios"] = ratio;
    j["runs"] = runs;
    j["peak_rss_bytes"] = rss;
    if (!runs.empty() && runs.back().contains("log")) j["bytes_on_disk"] = runs.back()["log"]["du_bytes_on_disk"];
    std::ofstream out(c.json_file);
    out << j.dump(2) << "\n";
    if (!out) die("could not write " + c.json_file);
  }
  return 0;
}
