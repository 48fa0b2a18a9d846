// load_aggregate (issue 5): many aggregates, each a snapshot of its state plus
// a few events after it, loaded in random order; against one aggregate of
// 10,000 events with no snapshot (and the same one with a snapshot 8 events
// from its head). Also: save throughput and the store's open time (the index
// rebuilt from record headers). Everything is warm in the page cache.
//
//   varve-snapshot-bench [--aggregates 100000] [--after 8] [--state-bytes 1024]
//                        [--long-events 10000] [--dir /tmp/varve-snapbench]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "varve/varve.h"

using namespace varve;

namespace {

uint64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// An aggregate of `state_bytes` (a pricing book, say): decoding a snapshot is
// a copy of it, an event updates one slot and a running total.
struct state {
  std::vector<uint64_t> slots;
  uint64_t total = 0;
};

struct figures {
  double p50, p99, p999, max, mean;
};
figures percentiles(std::vector<uint64_t>& ns) {
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) { return double(ns[std::min(ns.size() - 1, size_t(q * double(ns.size())))]) / 1000.0; };
  double sum = 0;
  for (auto v : ns) sum += double(v);
  return {at(0.5), at(0.99), at(0.999), double(ns.back()) / 1000.0, sum / double(ns.size()) / 1000.0};
}
void print(const char* what, std::vector<uint64_t>& ns) {
  auto f = percentiles(ns);
  std::printf("%-44s n=%-7zu p50 %8.2f us  p99 %8.2f us  p99.9 %8.2f us  max %9.2f us  mean %8.2f us\n",
              what, ns.size(), f.p50, f.p99, f.p999, f.max, f.mean);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"load_aggregate: snapshot + N events vs a full replay"};
  uint64_t aggregates = 100000, after = 8, state_bytes = 1024, long_events = 10000, loads = 200000;
  std::string dir = "/tmp/varve-snapbench";
  app.add_option("--aggregates", aggregates);
  app.add_option("--after", after, "events after each snapshot");
  app.add_option("--state-bytes", state_bytes);
  app.add_option("--long-events", long_events, "events of the contrast aggregate");
  app.add_option("--loads", loads, "timed loads of the many aggregates");
  app.add_option("--dir", dir);
  CLI11_PARSE(app, argc, argv);
  std::filesystem::remove_all(dir);

  auto logr = event_log::create(dir);
  if (!logr) return std::fprintf(stderr, "%s\n", logr.error().to_string().c_str()), 1;
  auto& log = *logr.value();
  snapshot_options so;
  so.sync_each_save = false;  // one flush at the end; the figure is for loads
  auto storer = snapshot_store::open(log, so);
  if (!storer) return std::fprintf(stderr, "%s\n", storer.error().to_string().c_str()), 1;
  auto& store = *storer.value();

  const size_t words = state_bytes / 8;
  auto decode = [words](std::span<const std::byte> b) -> std::optional<state> {
    if (b.size() != words * 8 + 8) return std::nullopt;
    state s;
    s.slots.resize(words);
    std::memcpy(s.slots.data(), b.data(), words * 8);
    std::memcpy(&s.total, b.data() + words * 8, 8);
    return s;
  };
  auto fold = [](state& s, const event_view& e) {
    uint64_t v;
    std::memcpy(&v, e.payload.data(), 8);
    if (!s.slots.empty()) s.slots[v % s.slots.size()] += v;
    s.total += v;
  };
  std::vector<std::byte> snap(words * 8 + 8, std::byte{1});
  char payload[64] = {};
  event_data ev{.type = 1, .payload = std::as_bytes(std::span(payload))};

  // Round 1: each aggregate's first event and its snapshot; then `after`
  // rounds, so an aggregate's events are spread along the log as in life.
  const uint64_t t0 = now_ns();
  for (uint64_t a = 0; a < aggregates; ++a) {
    std::memcpy(payload, &a, 8);
    auto r = log.append(stream_id::from_u64(a), expected_version::any(), ev);
    if (!r) return std::fprintf(stderr, "%s\n", r.error().to_string().c_str()), 1;
  }
  const uint64_t t1 = now_ns();
  for (uint64_t a = 0; a < aggregates; ++a) {
    if (status s = store.save(stream_id::from_u64(a), 1, 1, snap); !s)
      return std::fprintf(stderr, "%s\n", s.to_string().c_str()), 1;
  }
  const uint64_t t2 = now_ns();
  if (status s = store.flush(); !s) return std::fprintf(stderr, "%s\n", s.to_string().c_str()), 1;
  const uint64_t t3 = now_ns();
  for (uint64_t round = 0; round < after; ++round)
    for (uint64_t a = 0; a < aggregates; ++a) {
      uint64_t v = a * 31 + round;
      std::memcpy(payload, &v, 8);
      if (auto r = log.append(stream_id::from_u64(a), expected_version::any(), ev); !r)
        return std::fprintf(stderr, "%s\n", r.error().to_string().c_str()), 1;
    }
  // The contrast aggregate.
  const stream_id big("long-aggregate");
  for (uint64_t i = 0; i < long_events; ++i) {
    std::memcpy(payload, &i, 8);
    if (auto r = log.append(big, expected_version::any(), ev); !r)
      return std::fprintf(stderr, "%s\n", r.error().to_string().c_str()), 1;
  }
  if (status s = log.flush(); !s) return std::fprintf(stderr, "%s\n", s.to_string().c_str()), 1;
  std::printf("log: %" PRIu64 " events, %" PRIu64 " segments; %" PRIu64 " snapshots of %zu B "
              "saved at %.0f k/s (page cache; flush %.1f ms); first-round appends %.1f M/s\n",
              log.next_sequence().value, log.stats().segments, aggregates, snap.size(),
              double(aggregates) / (double(t2 - t1) / 1e9) / 1e3, double(t3 - t2) / 1e6,
              double(aggregates) / (double(t1 - t0) / 1e9) / 1e6);

  // Reopen the store: the index is rebuilt from the record headers.
  storer.value().reset();
  const uint64_t o0 = now_ns();
  auto reopened = snapshot_store::open(log, so);
  const uint64_t o1 = now_ns();
  if (!reopened) return std::fprintf(stderr, "%s\n", reopened.error().to_string().c_str()), 1;
  auto& st = *reopened.value();
  std::printf("store open (index of %" PRIu64 " snapshots rebuilt from headers): %.1f ms\n", aggregates,
              double(o1 - o0) / 1e6);

  std::mt19937_64 rng(42);
  uint64_t sink = 0;
  auto run = [&](const char* what, auto&& one, uint64_t n) {
    std::vector<uint64_t> ns;
    ns.reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t a = now_ns();
      sink += one();
      ns.push_back(now_ns() - a);
    }
    print(what, ns);
  };

  // First touch of every snapshot verifies its checksum: do one pass untimed,
  // then time loads of random aggregates (warm; checksums cached as verified).
  auto load_one = [&](uint64_t a) -> uint64_t {
    auto r = load_aggregate<state>(log, st, stream_id::from_u64(a), 1, decode, fold);
    if (!r || !r->used_snapshot || r->events_applied != after) {
      std::fprintf(stderr, "load of %" PRIu64 " failed or used no snapshot\n", a);
      std::exit(1);
    }
    return r->state.total;
  };
  {
    std::vector<uint64_t> ns;
    ns.reserve(aggregates);
    for (uint64_t a = 0; a < aggregates; ++a) {
      const uint64_t t = now_ns();
      sink += load_one(a);
      ns.push_back(now_ns() - t);
    }
    char what[96];
    std::snprintf(what, sizeof what, "first load (verifies checksum), +%" PRIu64 " ev", after);
    print(what, ns);
  }
  char what[96];
  std::snprintf(what, sizeof what, "load_aggregate snapshot + %" PRIu64 " events", after);
  run(what, [&] { return load_one(rng() % aggregates); }, loads);

  // The contrast: 10,000 events, no snapshot; then the same with a snapshot.
  auto full = [&]() -> uint64_t {
    auto r = load_aggregate<state>(log, st, big, 9, decode, fold, state{std::vector<uint64_t>(words), 0});
    if (!r || r->used_snapshot || r->events_applied != long_events) std::exit(1);
    return r->state.total;
  };
  std::snprintf(what, sizeof what, "no snapshot, %" PRIu64 " events", long_events);
  run(what, full, 200);
  if (long_events > after) {
    if (status s = st.save(big, long_events - after, 1, snap); !s)
      return std::fprintf(stderr, "%s\n", s.to_string().c_str()), 1;
    auto near = [&]() -> uint64_t {
      auto r = load_aggregate<state>(log, st, big, 1, decode, fold);
      if (!r || !r->used_snapshot || r->events_applied != after) std::exit(1);
      return r->state.total;
    };
    std::snprintf(what, sizeof what, "same, snapshot %" PRIu64 " events from head", after);
    run(what, near, 20000);
  }
  std::printf("(sink %" PRIu64 ")\n", sink);
  reopened.value().reset();
  logr.value().reset();
  std::filesystem::remove_all(dir);
  return 0;
}
