// varve-p5: ES-1 phase P5 (per-aggregate reads) for varve and for RocksDB in
// the same run, on the same data, plus the index figures of the index issue:
//
//   load      the ES-1 events appended to varve (durability none, one event per
//             append, expected_version::exact(version-1)) and written to
//             RocksDB (WORKLOAD.md schema: column families `log` and `idx`,
//             one WriteBatch per event, sync=false); events/s of the append
//             loop, then the time to settle (varve: close, which drains the
//             background sealer and index writer; RocksDB: flush both column
//             families and wait for compactions), bytes on disk.
//   index     varve: bytes of DIR/index/*.sidx and *.heads over the events of
//             the segments that have a .sidx (event_count in each header);
//             RocksDB: SST bytes of the `idx` column family over E.
//   open      the loaded log (and DB) opened in a freshly exec'd process (this
//             binary, hidden subcommand --time-open-child): event_log::
//             open_read_only and event_log::open timed separately, each in its
//             own process, plus the first read_stream after it; warm page cache.
//   P5        --p5-aggregates aggregates drawn uniformly (splitmix64, seed
//             kP5Seed, not the data seed), the same list for both peers; each
//             one's events read in version order, every payload byte touched
//             (folded into an order-sensitive checksum), each aggregate timed
//             with steady_clock. varve: read_stream(agg, 1, forward).
//             RocksDB: a prefix iterator over `idx` (prefix_same_as_start)
//             collecting the sequences, then one MultiGet on `log` (sorted
//             input); a second variant does one Get per sequence. One untimed
//             warm-up pass per peer (page cache and block cache warm), then
//             --reps timed passes, peers interleaved; medians reported.
//             Every pass checks every aggregate's count, versions and checksum
//             against the generator's; any mismatch exits non-zero.
//
// See docs/BENCHMARKS.md ("P5: per-aggregate reads") for the figures.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bench_common.h"
#include "es1_check.h"
#include "rocksdb_es1.h"
#include "varve/varve.h"

namespace vb = varve_bench;
using json = nlohmann::json;

namespace {

struct config {
  uint64_t events = 5'000'000;
  uint64_t aggregates = 100'000;
  uint64_t p5_aggregates = 20'000;
  std::string dir;
  std::string peers = "varve,rocksdb";
  std::string json_file;
  int reps = 5;
  int open_reps = 5;
  bool keep = false;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t rocks_cache_mb = 2048;
  bool rocks_get_variant = true;

  bool has(const std::string& p) const {
    std::stringstream ss(peers);
    std::string item;
    while (std::getline(ss, item, ','))
      if (item == p) return true;
    return false;
  }
};

std::string g_scratch;  // removed by die() unless --keep (empty in the open child)

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "varve-p5: %s\n", what.c_str());
  if (!g_scratch.empty()) vb::remove_tree(g_scratch);
  std::exit(1);
}

// Shared with varve-bench: bench/es1_check.h (read-back checks) and
// bench/rocksdb_es1.h (the RocksDB schema, options, load and read).
using vb::agg_read;
using vb::draw_p5_aggregates;
using vb::expected_of;
using vb::expected_t;
using vb::fold;
using vb::kP5Seed;
using vb::kRocksHeader;
using vb::rocks_db;
using vb::rocks_int_property;
using vb::rocks_open;
using vb::rocks_options;
using vb::rocks_read;
using vb::rocks_scratch;
using vb::rocks_setup;
using vb::steady_ns;
using vb::touch;

// ---------------------------------------------------------------------------
// varve
// ---------------------------------------------------------------------------
varve::log_options varve_opts(const config& c) {
  varve::log_options o;
  o.segment_bytes = c.segment_bytes;
  o.mode = varve::durability::none;
  o.verify_checksums = true;
  return o;
}

inline agg_read varve_read(const varve::event_log& log, uint32_t agg) {
  agg_read out;
  auto r = log.read_stream(varve::stream_id::from_u64(agg), 1, varve::read_direction::forward);
  if (!r) [[unlikely]]
    die("read_stream(" + std::to_string(agg) + "): " + r.error().to_string());
  varve::event_view v;
  for (;;) {
    auto m = r->next(v);
    if (!m) [[unlikely]]
      die("read_stream(" + std::to_string(agg) + ").next: " + m.error().to_string());
    if (!m.value()) break;
    out.in_order &= v.version == out.count + 1;
    out.checksum = fold(out.checksum, touch(v.payload.data(), v.payload.size()));
    ++out.count;
  }
  return out;
}

// Sizes of DIR/index/*.sidx and *.heads, and the events their segments hold
// (event_count at offset 40 of each .sidx header, FORMAT.md 5a).
struct index_sizes {
  uint64_t sidx_files = 0, sidx_bytes = 0, heads_files = 0, heads_bytes = 0, indexed_events = 0;
};

index_sizes measure_index(const std::string& log_dir) {
  index_sizes s;
  std::error_code ec;
  if (!std::filesystem::exists(log_dir + "/index")) return s;  // no sealed segment yet
  for (auto& e : std::filesystem::directory_iterator(log_dir + "/index", ec)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    const uint64_t size = e.file_size();
    if (name.size() > 5 && name.ends_with(".sidx")) {
      ++s.sidx_files;
      s.sidx_bytes += size;
      int fd = ::open(e.path().c_str(), O_RDONLY);
      uint64_t count = 0;
      if (fd < 0 || ::pread(fd, &count, 8, 40) != 8) die("cannot read the header of " + e.path().string());
      ::close(fd);
      s.indexed_events += count;
    } else if (name.size() > 6 && name.ends_with(".heads")) {
      ++s.heads_files;
      s.heads_bytes += size;
    }
  }
  if (ec) die("cannot list " + log_dir + "/index: " + ec.message());
  return s;
}

// ---------------------------------------------------------------------------
// Open timing in a fresh process: `varve-p5 --time-open-child KIND DIR AGG CACHE_MB SEGMENT_BYTES`
// with KIND varve-ro | varve-rw | rocksdb. Prints "open_ns N first_read_ns M events K".
// ---------------------------------------------------------------------------
int time_open_child(int argc, char** argv) {
  if (argc != 7) return 64;
  const std::string kind = argv[2], dir = argv[3];
  const auto agg = static_cast<uint32_t>(std::strtoull(argv[4], nullptr, 10));
  const uint64_t cache_mb = std::strtoull(argv[5], nullptr, 10);
  config c;
  c.segment_bytes = std::strtoull(argv[6], nullptr, 10);
  uint64_t open_ns = 0, read_ns = 0, n = 0;
  if (kind == "varve-ro" || kind == "varve-rw") {
    uint64_t t0 = steady_ns();
    auto r = kind == "varve-ro" ? varve::event_log::open_read_only(dir, varve_opts(c))
                                : varve::event_log::open(dir, varve_opts(c));
    uint64_t t1 = steady_ns();
    if (!r) die("open " + dir + ": " + r.error().to_string());
    open_ns = t1 - t0;
    uint64_t t2 = steady_ns();
    agg_read a = varve_read(*r.value(), agg);
    read_ns = steady_ns() - t2;
    n = a.count;
    if (kind == "varve-rw")
      if (auto st = r.value()->close(); !st.ok()) die("close: " + st.to_string());
  } else if (kind == "rocksdb") {
    rocks_setup s = rocks_options(cache_mb);
    s.db.create_if_missing = false;
    rocks_db db;
    uint64_t t0 = steady_ns();
    rocks_open(db, dir, s);
    open_ns = steady_ns() - t0;
    rocks_scratch scratch;
    uint64_t t2 = steady_ns();
    agg_read a = rocks_read(db, agg, true, scratch);
    read_ns = steady_ns() - t2;
    n = a.count;
  } else {
    return 64;
  }
  std::printf("open_ns %" PRIu64 " first_read_ns %" PRIu64 " events %" PRIu64 "\n", open_ns, read_ns, n);
  return 0;
}

struct open_sample {
  double open_ms = 0, first_read_us = 0;
  uint64_t events = 0;
};

std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) die("readlink /proc/self/exe");
  buf[n] = 0;
  return buf;
}

open_sample open_in_fresh_process(const std::string& self, const std::string& kind, const std::string& dir,
                                  uint32_t agg, const config& c) {
  std::string out;
  if (!vb::run_capture({self, "--time-open-child", kind, dir, std::to_string(agg),
                        std::to_string(c.rocks_cache_mb), std::to_string(c.segment_bytes)},
                       out))
    die("--time-open-child " + kind + " failed: " + out);
  uint64_t open_ns = 0, read_ns = 0;
  open_sample s;
  if (std::sscanf(out.c_str(), "open_ns %" SCNu64 " first_read_ns %" SCNu64 " events %" SCNu64, &open_ns, &read_ns,
                  &s.events) != 3)
    die("cannot parse the open child's output: " + out);
  s.open_ms = static_cast<double>(open_ns) / 1e6;
  s.first_read_us = static_cast<double>(read_ns) / 1e3;
  return s;
}

// ---------------------------------------------------------------------------
// Figures.
// ---------------------------------------------------------------------------
using varve_bench::figures;

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// One timed P5 pass: per-aggregate latencies (ns) and correctness.
template <class Read>
void p5_pass(const std::string& peer, const std::vector<uint32_t>& list, const expected_t& exp, Read&& read,
             figures* f, uint64_t& mismatches) {
  std::vector<double> lat(list.size());
  std::vector<agg_read> got(list.size());
  rusage ru0{}, ru1{};
  getrusage(RUSAGE_THREAD, &ru0);
  const double cpu0 = thread_cpu_seconds();
  const uint64_t t0 = steady_ns();
  for (size_t i = 0; i < list.size(); ++i) {
    const uint64_t a = steady_ns();
    got[i] = read(list[i]);
    lat[i] = static_cast<double>(steady_ns() - a);
  }
  const double secs = static_cast<double>(steady_ns() - t0) / 1e9;
  const double cpu = thread_cpu_seconds() - cpu0;
  getrusage(RUSAGE_THREAD, &ru1);
  uint64_t events = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    const uint32_t agg = list[i];
    events += got[i].count;
    if (got[i].count != exp.count[agg] || got[i].checksum != exp.checksum[agg] || !got[i].in_order) {
      if (mismatches < 10)
        std::fprintf(stderr,
                     "MISMATCH %s aggregate %u: %" PRIu64 " events (expected %u), checksum %016" PRIx64
                     " (expected %016" PRIx64 "), order %s\n",
                     peer.c_str(), agg, got[i].count, exp.count[agg], got[i].checksum, exp.checksum[agg],
                     got[i].in_order ? "ok" : "WRONG");
      ++mismatches;
    }
  }
  if (!f) return;
  std::sort(lat.begin(), lat.end());
  double sum = 0;
  for (double x : lat) sum += x;
  const std::string p = "P5." + peer;
  f->add(p + ".aggregates_per_s", static_cast<double>(list.size()) / secs, "/s");
  f->add(p + ".events_per_s", static_cast<double>(events) / secs, "/s");
  f->add(p + ".p50_us", vb::percentile_sorted(lat, 50) / 1e3, "us");
  f->add(p + ".p99_us", vb::percentile_sorted(lat, 99) / 1e3, "us");
  f->add(p + ".p99.9_us", vb::percentile_sorted(lat, 99.9) / 1e3, "us");
  f->add(p + ".max_us", lat.back() / 1e3, "us");
  f->add(p + ".mean_us", sum / static_cast<double>(lat.size()) / 1e3, "us");
  f->add(p + ".ns_per_event", sum / static_cast<double>(events), "ns");
  // The machine is shared: the reading thread's own CPU time per aggregate, and
  // how often it was preempted (involuntary context switches) during the pass.
  f->add(p + ".cpu_us_per_aggregate", cpu * 1e6 / static_cast<double>(list.size()), "us");
  f->add(p + ".preemptions", static_cast<double>(ru1.ru_nivcsw - ru0.ru_nivcsw), "count");
}

std::string human(double v, const std::string& unit) {
  char buf[64];
  if (unit == "/s") {
    if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2f M/s", v / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1f k/s", v / 1e3);
  } else if (unit == "us") {
    std::snprintf(buf, sizeof buf, "%.1f us", v);
  } else if (unit == "ms") {
    std::snprintf(buf, sizeof buf, "%.2f ms", v);
  } else if (unit == "ns") {
    std::snprintf(buf, sizeof buf, "%.0f ns", v);
  } else if (unit == "B") {
    std::snprintf(buf, sizeof buf, "%.1f MB", v / 1e6);
  } else if (unit == "count") {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (unit == "B/event") {
    std::snprintf(buf, sizeof buf, "%.2f B", v);
  } else if (unit == "s") {
    std::snprintf(buf, sizeof buf, "%.2f s", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f %s", v, unit.c_str());
  }
  return buf;
}

}  // namespace

[[noreturn]] void varve_bench::fatal(const std::string& what) { die(what); }

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--time-open-child") == 0) return time_open_child(argc, argv);

  config c;
  c.dir = vb::scratch_root();
  CLI::App app{"varve-p5: ES-1 P5 (per-aggregate reads) for varve and RocksDB, with load, index size and open time"};
  app.add_option("--events", c.events, "E: events to load")->capture_default_str();
  app.add_option("--aggregates", c.aggregates, "A: aggregates (streams)")->capture_default_str();
  app.add_option("--p5-aggregates", c.p5_aggregates, "aggregates read per P5 pass (drawn with seed 0x5EED0005)")
      ->capture_default_str();
  app.add_option("--dir", c.dir, "scratch root (a fresh subdirectory is made, removed at the end)")
      ->capture_default_str();
  app.add_option("--peers", c.peers, "comma-separated: varve,rocksdb")->capture_default_str();
  app.add_option("--reps", c.reps, "timed P5 passes per peer (the table shows medians)")->capture_default_str();
  app.add_option("--open-reps", c.open_reps, "fresh-process opens per kind (median)")->capture_default_str();
  app.add_option("--json", c.json_file, "write the figures as JSON to this file");
  app.add_option("--segment-bytes", c.segment_bytes, "varve segment capacity")->capture_default_str();
  app.add_option("--rocks-cache-mb", c.rocks_cache_mb, "RocksDB block cache (MiB)")->capture_default_str();
  app.add_flag("!--no-rocks-get", c.rocks_get_variant, "skip the RocksDB one-Get-per-event variant");
  app.add_flag("--keep", c.keep, "keep the scratch directory");
  CLI11_PARSE(app, argc, argv);
  if (c.events == 0 || c.aggregates == 0 || c.aggregates > UINT32_MAX || c.p5_aggregates == 0 || c.reps < 1)
    die("bad sizes");
  const bool do_varve = c.has("varve"), do_rocks = c.has("rocksdb");
  if (!do_varve && !do_rocks) die("--peers names neither varve nor rocksdb");

  std::fprintf(stderr, "generating %" PRIu64 " events over %" PRIu64 " aggregates (seed %" PRIu64 ")...\n", c.events,
               c.aggregates, vb::kSeed);
  const vb::es1_data d = vb::generate_es1(c.events, c.aggregates);
  const expected_t exp = expected_of(d);
  const std::vector<uint32_t> list = draw_p5_aggregates(c.p5_aggregates, c.aggregates);
  uint64_t list_events = 0;
  for (uint32_t a : list) list_events += exp.count[a];
  const double mean_events = static_cast<double>(list_events) / static_cast<double>(list.size());

  const std::string root = vb::make_scratch_dir(c.dir, "varve-p5");
  if (!c.keep) g_scratch = root;
  const std::string vdir = root + "/varve", rdir = root + "/rocksdb";
  const std::string self = self_exe();
  figures f;
  json info;
  rocks_setup rs = rocks_options(c.rocks_cache_mb);

  // ---- load: varve ----
  if (do_varve) {
    ::sync();
    auto lr = varve::event_log::create(vdir, varve_opts(c));
    if (!lr) die("create " + vdir + ": " + lr.error().to_string());
    auto log = std::move(lr.value());
    varve::event_data ev;
    const uint64_t t0 = steady_ns();
    for (uint64_t i = 0; i < c.events; ++i) {
      ev.type = d.version[i] % 8;
      ev.payload = {d.payload_of(i), vb::kPayloadBytes};
      ev.timestamp_ns = i + 1;
      auto r = log->append(varve::stream_id::from_u64(d.aggregate[i]),
                           varve::expected_version::exact(d.version[i] - 1), ev);
      if (!r) [[unlikely]]
        die("varve append #" + std::to_string(i) + ": " + r.error().to_string());
    }
    const uint64_t t1 = steady_ns();
    auto st = log->stats();
    if (auto s = log->close(); !s.ok()) die("varve close: " + s.to_string());
    const uint64_t t2 = steady_ns();
    log.reset();
    if (st.events != c.events) die("varve stats().events = " + std::to_string(st.events));
    f.add("load.varve.events_per_s", static_cast<double>(c.events) / (static_cast<double>(t1 - t0) / 1e9), "/s");
    f.add("load.varve.settle_s", static_cast<double>(t2 - t1) / 1e9, "s");
    f.add("disk.varve.bytes", static_cast<double>(vb::bytes_on_disk(vdir)), "B");
    index_sizes ix = measure_index(vdir);
    info["varve"] = {{"segments", st.segments},        {"committed_position", st.committed.value},
                     {"sidx_files", ix.sidx_files},    {"sidx_bytes", ix.sidx_bytes},
                     {"heads_files", ix.heads_files},  {"heads_bytes", ix.heads_bytes},
                     {"indexed_events", ix.indexed_events}};
    if (ix.indexed_events > 0) {
      f.add("index.varve.sidx_bytes_per_event",
            static_cast<double>(ix.sidx_bytes) / static_cast<double>(ix.indexed_events), "B/event");
      f.add("index.varve.bytes_per_event",
            static_cast<double>(ix.sidx_bytes + ix.heads_bytes) / static_cast<double>(ix.indexed_events), "B/event");
    }
    std::fprintf(stderr, "varve loaded: %.2f M events/s; %" PRIu64 " of %" PRIu64 " events in %" PRIu64
                 " indexed segments\n", f.v["load.varve.events_per_s"].back() / 1e6, ix.indexed_events, c.events,
                 ix.sidx_files);
  }

  // ---- load: RocksDB ----
  if (do_rocks) {
    ::sync();
    rocks_db db;
    rocks_open(db, rdir, rs);
    rocksdb::WriteOptions wo;
    wo.sync = false;
    rocksdb::WriteBatch batch;
    vb::rocks_event_writer writer;
    const uint64_t t0 = steady_ns();
    for (uint64_t i = 0; i < c.events; ++i) {
      batch.Clear();
      writer.put(batch, db, d, i);
      auto s = db.db->Write(wo, &batch);
      if (!s.ok()) [[unlikely]]
        die("rocksdb write #" + std::to_string(i) + ": " + s.ToString());
    }
    const uint64_t t1 = steady_ns();
    vb::rocks_settle(db);  // flush both column families, wait for compactions
    const uint64_t t2 = steady_ns();
    f.add("load.rocksdb.events_per_s", static_cast<double>(c.events) / (static_cast<double>(t1 - t0) / 1e9), "/s");
    f.add("load.rocksdb.settle_s", static_cast<double>(t2 - t1) / 1e9, "s");
    const uint64_t idx_sst = rocks_int_property(db, db.idx(), "rocksdb.total-sst-files-size");
    const uint64_t log_sst = rocks_int_property(db, db.log(), "rocksdb.total-sst-files-size");
    f.add("index.rocksdb.idx_sst_bytes_per_event", static_cast<double>(idx_sst) / static_cast<double>(c.events), "B/event");
    std::string levels_log, levels_idx;
    db.db->GetProperty(db.log(), "rocksdb.levelstats", &levels_log);
    db.db->GetProperty(db.idx(), "rocksdb.levelstats", &levels_idx);
    info["rocksdb"] = {{"version", std::to_string(ROCKSDB_MAJOR) + "." + std::to_string(ROCKSDB_MINOR) + "." +
                                       std::to_string(ROCKSDB_PATCH)},
                       {"log_sst_bytes", log_sst},
                       {"idx_sst_bytes", idx_sst},
                       {"levelstats_log", levels_log},
                       {"levelstats_idx", levels_idx}};
    db.close();
    f.add("disk.rocksdb.bytes", static_cast<double>(vb::bytes_on_disk(rdir)), "B");
    std::fprintf(stderr, "rocksdb loaded: %.2f M events/s, settled in %.1f s\n",
                 f.v["load.rocksdb.events_per_s"].back() / 1e6, f.v["load.rocksdb.settle_s"].back());
  }

  // ---- open in a fresh process (warm page cache), kinds interleaved ----
  ::sync();
  {
    const uint32_t probe = list.front();
    std::vector<std::string> kinds;
    if (do_varve) kinds = {"varve-ro", "varve-rw"};
    if (do_rocks) kinds.push_back("rocksdb");
    for (int k = 0; k < c.open_reps; ++k)
      for (auto& kind : kinds) {
        open_sample s = open_in_fresh_process(self, kind, kind == "rocksdb" ? rdir : vdir, probe, c);
        if (s.events != exp.count[probe]) die("open child " + kind + " read the wrong number of events");
        f.add("open." + kind + ".open_ms", s.open_ms, "ms");
        f.add("open." + kind + ".first_read_us", s.first_read_us, "us");
      }
  }

  // ---- P5 ----
  std::unique_ptr<varve::event_log> vlog;
  if (do_varve) {
    auto r = varve::event_log::open(vdir, varve_opts(c));
    if (!r) die("open " + vdir + ": " + r.error().to_string());
    vlog = std::move(r.value());
  }
  rocks_db rdb;
  if (do_rocks) {
    rs.db.create_if_missing = false;
    rocks_open(rdb, rdir, rs);
  }
  rocks_scratch scratch;
  auto vread = [&](uint32_t a) { return varve_read(*vlog, a); };
  auto rmulti = [&](uint32_t a) { return rocks_read(rdb, a, true, scratch); };
  auto rget = [&](uint32_t a) { return rocks_read(rdb, a, false, scratch); };
  uint64_t mismatches = 0;
  // Untimed warm-up (checks correctness too): page cache, block cache, mappings.
  if (do_varve) p5_pass("varve", list, exp, vread, nullptr, mismatches);
  if (do_rocks) p5_pass("rocksdb", list, exp, rmulti, nullptr, mismatches);
  for (int rep = 0; rep < c.reps; ++rep) {
    if (do_varve) p5_pass("varve", list, exp, vread, &f, mismatches);
    if (do_rocks) {
      p5_pass("rocksdb", list, exp, rmulti, &f, mismatches);
      if (c.rocks_get_variant) p5_pass("rocksdb_get", list, exp, rget, &f, mismatches);
    }
    if (do_varve && do_rocks) {  // per-rep ratio (steadier than a ratio of medians on a noisy machine)
      auto last = [&](const std::string& k) { return f.v.at(k).back(); };
      f.add("ratio.P5_aggregates_per_s", last("P5.varve.aggregates_per_s") / last("P5.rocksdb.aggregates_per_s"), "x");
      f.add("ratio.P5_p99", last("P5.varve.p99_us") / last("P5.rocksdb.p99_us"), "x");
    }
    std::fprintf(stderr, "P5 rep %d/%d done\n", rep + 1, c.reps);
  }
  if (vlog) {
    if (auto s = vlog->close(); !s.ok()) die("varve close: " + s.to_string());
    vlog.reset();
  }
  rdb.close();

  // ---- report ----
  const uint64_t rss = vb::peak_rss_bytes();
  std::printf("varve-p5  E=%" PRIu64 " A=%" PRIu64 "  P5: %" PRIu64 " aggregates (seed 0x%" PRIx64
              "), %.1f events/aggregate (mean)  reps=%d  open reps=%d\n",
              c.events, c.aggregates, c.p5_aggregates, kP5Seed, mean_events, c.reps, c.open_reps);
  std::printf("machine: %s, %ld cores, %s, %s on %s; RocksDB %d.%d.%d; page cache and block cache warm\n",
              vb::cpu_model().c_str(), vb::online_cores(), vb::kernel_release().c_str(),
              vb::filesystem_type(c.dir).c_str(), c.dir.c_str(), ROCKSDB_MAJOR, ROCKSDB_MINOR, ROCKSDB_PATCH);
  std::printf("correctness: %s (every aggregate of every pass: count, versions and payload checksum "
              "against the generator)\n", mismatches ? "MISMATCH" : "ok");

  auto cell = [&](const std::string& k) { return f.has(k) ? human(f.med(k), f.unit[k]) : std::string("-"); };
  auto ratio = [&](const std::string& a, const std::string& b, bool lower_is_better) {
    if (!f.has(a) || !f.has(b) || f.med(b) == 0 || f.unit[a] == "count") return std::string("-");
    char buf[32];
    double r = lower_is_better ? f.med(b) / f.med(a) : f.med(a) / f.med(b);
    std::snprintf(buf, sizeof buf, "%.2fx", r);
    return std::string(buf);
  };
  std::printf("\n%-34s %14s %14s %14s %16s\n", "figure (median)", "varve", "RocksDB", "RocksDB Get", "varve/RocksDB");
  struct row {
    const char* name;
    std::string key;  // with {} for the peer
    bool lower_is_better;
  };
  const row rows[] = {
      {"P5 aggregates/s", "P5.{}.aggregates_per_s", false}, {"P5 events/s", "P5.{}.events_per_s", false},
      {"P5 p50 per aggregate", "P5.{}.p50_us", true},      {"P5 p99 per aggregate", "P5.{}.p99_us", true},
      {"P5 p99.9 per aggregate", "P5.{}.p99.9_us", true},  {"P5 max per aggregate", "P5.{}.max_us", true},
      {"P5 mean per aggregate", "P5.{}.mean_us", true},    {"P5 ns per event", "P5.{}.ns_per_event", true},
      {"P5 thread CPU per aggregate", "P5.{}.cpu_us_per_aggregate", true},
      {"P5 preemptions per pass", "P5.{}.preemptions", true},
  };
  auto sub = [](std::string k, const std::string& peer) { return k.replace(k.find("{}"), 2, peer); };
  for (auto& r : rows)
    std::printf("%-34s %14s %14s %14s %16s\n", r.name, cell(sub(r.key, "varve")).c_str(),
                cell(sub(r.key, "rocksdb")).c_str(), cell(sub(r.key, "rocksdb_get")).c_str(),
                ratio(sub(r.key, "varve"), sub(r.key, "rocksdb"), r.lower_is_better).c_str());
  std::printf("%-34s %14s %14s %14s %16s\n", "load events/s (1 event per call)", cell("load.varve.events_per_s").c_str(),
              cell("load.rocksdb.events_per_s").c_str(), "",
              ratio("load.varve.events_per_s", "load.rocksdb.events_per_s", false).c_str());
  std::printf("%-34s %14s %14s\n", "settle after load", cell("load.varve.settle_s").c_str(),
              cell("load.rocksdb.settle_s").c_str());
  std::printf("%-34s %14s %14s %14s %16s\n", "bytes on disk", cell("disk.varve.bytes").c_str(),
              cell("disk.rocksdb.bytes").c_str(), "", ratio("disk.varve.bytes", "disk.rocksdb.bytes", true).c_str());
  std::printf("%-34s %14s %14s\n", "index bytes/event (sidx+heads | idx SST)",
              cell("index.varve.bytes_per_event").c_str(), cell("index.rocksdb.idx_sst_bytes_per_event").c_str());
  std::printf("%-34s %14s\n", "  of which sidx bytes/event", cell("index.varve.sidx_bytes_per_event").c_str());
  std::printf("%-34s %14s %14s\n", "open, fresh process (ro | DB::Open)", cell("open.varve-ro.open_ms").c_str(),
              cell("open.rocksdb.open_ms").c_str());
  std::printf("%-34s %14s\n", "open, fresh process (writer)", cell("open.varve-rw.open_ms").c_str());
  std::printf("%-34s %14s %14s\n", "first aggregate read after open (ro)", cell("open.varve-ro.first_read_us").c_str(),
              cell("open.rocksdb.first_read_us").c_str());
  std::printf("%-34s %14s\n", "first aggregate read after open (writer)", cell("open.varve-rw.first_read_us").c_str());
  if (f.has("ratio.P5_aggregates_per_s"))
    std::printf("per-rep ratio varve/RocksDB aggregates/s: median %.2fx (min %.2fx, max %.2fx)\n",
                f.med("ratio.P5_aggregates_per_s"),
                *std::min_element(f.v["ratio.P5_aggregates_per_s"].begin(), f.v["ratio.P5_aggregates_per_s"].end()),
                *std::max_element(f.v["ratio.P5_aggregates_per_s"].begin(), f.v["ratio.P5_aggregates_per_s"].end()));
  if (do_rocks) {
    std::printf("RocksDB options:\n");
    for (auto& [k, v] : rs.described) std::printf("  %-12s %s\n", k.c_str(), v.c_str());
  }
  std::printf("peak RSS: %.1f MiB\n", static_cast<double>(rss) / (1 << 20));

  if (!c.json_file.empty()) {
    json j;
    j["benchmark"] = "varve-p5";
    j["date"] = vb::utc_now_iso();
    j["machine"] = {{"cpu", vb::cpu_model()},
                    {"cores", vb::online_cores()},
                    {"kernel", vb::kernel_release()},
                    {"filesystem", vb::filesystem_type(c.dir)}};
    j["config"] = {{"events", c.events},
                   {"aggregates", c.aggregates},
                   {"p5_aggregates", c.p5_aggregates},
                   {"p5_seed", kP5Seed},
                   {"data_seed", vb::kSeed},
                   {"peers", c.peers},
                   {"reps", c.reps},
                   {"open_reps", c.open_reps},
                   {"segment_bytes", c.segment_bytes},
                   {"rocks_cache_mb", c.rocks_cache_mb},
                   {"cache", "page cache and RocksDB block cache warm (one untimed pass per peer first)"},
                   {"rocksdb_read", "prefix iterator on idx, then MultiGet on log (sorted_input); "
                                    "rocksdb_get: one Get per sequence"}};
    json opts = json::object();
    for (auto& [k, v] : rs.described) opts[k] = v;
    j["rocksdb_options"] = opts;
    j["mean_events_per_aggregate"] = mean_events;
    json med, units, all;
    for (auto& [k, vals] : f.v) {
      med[k] = vb::median(vals);
      units[k] = f.unit[k];
      all[k] = vals;
    }
    j["median"] = med;
    j["units"] = units;
    j["values"] = all;
    j["info"] = info;
    j["mismatches"] = mismatches;
    j["peak_rss_bytes"] = rss;
    std::ofstream out(c.json_file);
    out << j.dump(2) << "\n";
    if (!out) die("could not write " + c.json_file);
  }

  if (!c.keep) vb::remove_tree(root);
  else std::fprintf(stderr, "kept %s\n", root.c_str());
  if (mismatches) {
    std::fprintf(stderr, "varve-p5: %" PRIu64 " aggregate reads did not match the generator\n", mismatches);
    return 1;
  }
  return 0;
}
