// varve-replay-bench: replay throughput against worker threads (issue 4).
//
// Builds (or reuses, --dir) an ES-1 log (5 M events, 100 k aggregates, 100 B
// payloads; bench_common.h), warms the page cache, then for each io backend
// and each thread count replays it with two projections:
//   trivial   counts events and payload bytes per partition (what the reader
//             and the hand-off cost: the scheduler's own ceiling)
//   work200   ~200 ns of arithmetic per event on top (apply dominates: what
//             adding workers buys)
// Baseline in the same run: one thread folding log_reader's events (the
// plain zero-copy cursor) with the same projection. Median of --reps.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_common.h"
#include "varve/varve.h"

namespace vb = varve_bench;
using json = nlohmann::json;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "varve-replay-bench: %s\n", what.c_str());
  std::exit(1);
}

volatile uint64_t g_sink;

// Calibrated so one call costs about `ns` on this machine.
struct spin_work {
  static inline uint64_t rounds_per_ns_x1000 = 0;
  static void calibrate() {
    uint64_t n = 1 << 24, x = 1;
    const double t0 = vb::now_seconds();
    for (uint64_t i = 0; i < n; ++i) x = x * 0x9E3779B97F4A7C15ull + (x >> 29);
    const double dt = vb::now_seconds() - t0;
    g_sink = x;
    rounds_per_ns_x1000 = static_cast<uint64_t>(1000.0 * static_cast<double>(n) / (dt * 1e9));
  }
  static uint64_t run(uint64_t seed, uint64_t ns) {
    uint64_t x = seed | 1;
    const uint64_t rounds = ns * rounds_per_ns_x1000 / 1000;
    for (uint64_t i = 0; i < rounds; ++i) x = x * 0x9E3779B97F4A7C15ull + (x >> 29);
    return x;
  }
};

// The projection, over views (every field decoded ahead) ...
struct counting {
  uint64_t work_ns = 0;
  uint64_t events = 0, bytes = 0, mix = 0;
  void apply(const varve::event_view& e) {
    ++events;
    bytes += e.payload.size();
    if (work_ns) mix ^= spin_work::run(e.sequence.value, work_ns);
  }
  // --form merged: the states of consecutive ranges add up.
  void merge(counting&& later) {
    events += later.events;
    bytes += later.bytes;
    mix ^= later.mix;
  }
};
// ... and the same over event_refs (the fields it reads, read when asked):
// what the replay runs by default (--form refs).
struct counting_refs : counting {
  void apply(const varve::event_ref& e) {
    ++events;
    bytes += e.payload().size();
    if (work_ns) mix ^= spin_work::run(e.sequence().value, work_ns);
  }
  void merge(counting_refs&& later) { counting::merge(std::move(later)); }
};

void build_log(const std::string& dir, uint64_t events, uint64_t aggregates, uint64_t seg) {
  varve::log_options o;
  o.segment_bytes = seg;
  auto log = varve::event_log::create(dir, o);
  if (!log) die("create " + dir + ": " + log.error().to_string());
  vb::es1_stream gen(aggregates);
  std::byte payload[vb::kPayloadBytes];
  for (uint64_t i = 0; i < events; ++i) {
    uint32_t version = 0;
    const uint32_t agg = gen.next(version, payload);
    varve::event_data e;
    e.type = version % 8;
    e.payload = std::span<const std::byte>(payload, vb::kPayloadBytes);
    e.timestamp_ns = i + 1;
    auto r = log.value()->append(varve::stream_id::from_u64(agg), varve::expected_version::any(), e);
    if (!r) die("append: " + r.error().to_string());
  }
  if (auto st = log.value()->close(); !st) die("close: " + st.to_string());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"varve-replay-bench: replay throughput vs worker threads (ES-1 log)"};
  uint64_t events = 5'000'000, aggregates = 100'000, seg = 64ull << 20;
  std::string dir, json_out;
  std::vector<uint32_t> threads{1, 2};
  std::vector<std::string> backends{"mmap", "uring", "pread"};
  uint64_t work_ns = 200;
  uint32_t chunk_bytes = 1u << 20;
  int reps = 3;
  bool keep = false;
  std::string form = "refs";
  app.add_option("--events", events, "Events in the log (ES-1 E)");
  app.add_option("--form", form,
                 "How the projection is replayed: refs (event_ref), views (event_view), both partitioned by "
                 "stream; merged (event_ref, replay::run_merged: no partitions, item states merged in order)")
      ->check(CLI::IsMember({"refs", "views", "merged"}));
  app.add_option("--aggregates", aggregates, "Aggregates (ES-1 A)");
  app.add_option("--segment-bytes", seg, "Segment capacity");
  app.add_option("--dir", dir, "Reuse (or build) the log here instead of a scratch directory");
  app.add_option("--threads", threads, "Worker counts to measure")->delimiter(',');
  app.add_option("--io", backends, "Backends to measure (mmap, uring, pread)")->delimiter(',');
  app.add_option("--work-ns", work_ns, "Work per event of the heavy projection, ns (0: trivial only)");
  app.add_option("--chunk-bytes", chunk_bytes, "Replay chunk size (the scheduler's unit of work)");
  app.add_option("--reps", reps, "Repetitions (median reported)");
  app.add_option("--json", json_out, "Write the figures here");
  app.add_flag("--keep", keep, "Keep the scratch log");
  CLI11_PARSE(app, argc, argv);

  bool scratch = false;
  if (dir.empty()) {
    dir = vb::make_scratch_dir(vb::scratch_root(), "varve-replay");
    scratch = true;
  }
  if (!varve::event_log::open_read_only(dir).ok()) {
    std::fprintf(stderr, "building %" PRIu64 " events in %s ...\n", events, dir.c_str());
    build_log(dir, events, aggregates, seg);
  }
  auto opened = varve::event_log::open_read_only(dir);
  if (!opened) die(opened.error().to_string());
  const varve::event_log& log = *opened.value();
  spin_work::calibrate();

  // The baseline: one thread, log_reader, same projections. Also warms the cache.
  auto single = [&](uint64_t ns) {
    counting c{ns};
    varve::log_reader r = log.read();
    varve::event_view v;
    const double t0 = vb::now_seconds();
    while (true) {
      auto got = r.next(v);
      if (!got) die(got.error().to_string());
      if (!got.value()) break;
      c.apply(v);
    }
    const double dt = vb::now_seconds() - t0;
    g_sink = c.mix;
    return std::pair<double, uint64_t>(static_cast<double>(c.events) / dt, c.events);
  };
  const uint64_t total = single(0).second;

  json out;
  out["machine"] = {{"cpu", vb::cpu_model()}, {"cores", vb::online_cores()},
                    {"kernel", vb::kernel_release()}, {"date", vb::utc_now_iso()}};
  out["events"] = total;
  out["work_ns"] = work_ns;
  out["form"] = form;
  std::printf("%-9s %-8s %-7s %14s %10s\n", "work", "io", "threads", "events/s", "vs 1 thr");
  for (uint64_t ns : {uint64_t{0}, work_ns}) {
    if (ns == 0 && work_ns == 0 && out.contains("runs")) break;  // --work-ns 0: trivial once
    const char* name = ns ? "work200" : "trivial";
    std::vector<double> base;
    for (int i = 0; i < reps; ++i) base.push_back(single(ns).first);
    const double b = vb::median(base);
    std::printf("%-9s %-8s %-7s %14.0f %10s\n", name, "reader", "1", b, "-");
    out["runs"].push_back({{"projection", name}, {"io", "log_reader"}, {"threads", 1},
                           {"events_per_s", b}});
    for (const auto& io_name : backends) {
      auto io = varve::parse_io_backend(io_name);
      if (!io) die("--io " + io_name);
      double one = 0;
      for (uint32_t w : threads) {
        std::vector<double> rates;
        for (int i = 0; i < reps; ++i) {
          auto run = [&](auto proto) {
            auto rp = varve::replay(log).threads(w).io(*io).chunk_bytes(chunk_bytes);
            auto r = form == "merged" ? rp.run_merged([ns, proto] { auto c = proto; c.work_ns = ns; return c; })
                                      : rp.run([ns, proto](uint32_t) { auto c = proto; c.work_ns = ns; return c; });
            if (!r) die("replay: " + r.error.to_string());
            return std::pair<uint64_t, double>(
                r.reduce(uint64_t{0}, [](uint64_t a, const counting& c) { return a + c.events; }), r.seconds);
          };
          const auto [n, seconds] = form == "views" ? run(counting{}) : run(counting_refs{});
          if (n != total) die("replay applied " + std::to_string(n) + " of " + std::to_string(total));
          rates.push_back(static_cast<double>(n) / seconds);
        }
        const double m = vb::median(rates);
        if (w == threads.front()) one = m;
        std::printf("%-9s %-8s %-7u %14.0f %9.2fx\n", name, io_name.c_str(), w, m, m / one);
        out["runs"].push_back({{"projection", name}, {"io", io_name}, {"threads", w},
                               {"events_per_s", m}, {"speedup", m / one}});
      }
    }
  }
  if (!json_out.empty()) {
    FILE* f = std::fopen(json_out.c_str(), "w");
    if (!f) die("cannot write " + json_out);
    std::fprintf(f, "%s\n", out.dump(2).c_str());
    std::fclose(f);
  }
  if (scratch && !keep) vb::remove_tree(dir);
  return 0;
}
