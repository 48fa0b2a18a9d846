// Google Benchmark micro-benchmarks of varve's hot paths.
//
//   BM_AppendOne       one event per append (100-byte payload, integer stream ids,
//                      durability none, 64 MiB segments), a steady stream over
//                      100,000 streams that all exist before timing starts, each
//                      append checked with expected_version::exact
//                      (arg: 0 = caller gives a counter timestamp, 1 = the log's clock)
//   BM_AppendBatch10   one append of 10 events to one stream (same streams)
//   BM_AppendMulti3    one multi-stream append: 3 streams, one event each (same streams)
//   BM_ReaderNext      log_reader::next() over a warm 1 M-event log
//                      (arg: 1 = checksums verified, the default; 0 = not)
//   BM_ReaderNextBatch the same scan through log_reader::next_batch, 64 views
//                      at a time (same arg)
//   BM_ReaderNextRefs  the same through the lazy next_batch, 64 event_refs
//   BM_SubscriptionCatchUp a subscription reading the warm log's history,
//                      checksums verified (arg: 0 = next(), 64 = next_batch of 64)
//   BM_CReaderNext     the same scan through the C API, the log opened read-only
//                      (arg: 0 = varve_reader_next, 64 = varve_reader_next_batch)
//   BM_VersionOf       event_log::version_of (head-table lookup), 100,000 streams
//   BM_ReadStream      read_stream + next() over one whole aggregate (~10 events
//                      spread over the warm log's segments), random aggregates;
//                      items = events, plus aggregates/s
//   BM_PositionAtTime  event_log::position_at_time for random timestamps
//   BM_XXH3            XXH3_64bits of a 180-byte record
//   BM_RecordEncode    record::encode of one ES-1 event (8-byte integer stream
//                      id, 100-byte payload: a 184-byte record, checksum included)
//   BM_RecordDecode    record::decode of such records, walking a 1 MiB buffer of
//                      them (arg: 1 = checksum verified, 0 = not)
//   BM_HeadLookup      head_table::find (hash + probe) of random existing
//                      streams among 100,000 (the append path's version check)
//   BM_IndexBuild      segment_index::build of the warm log's first sealed
//                      segment (64 MiB, ~360,000 events over ~97,000
//                      streams): what the sealer spends indexing a segment
//   BM_IndexLookup     segment_index::view::find of random streams in one sealed
//                      segment's .sidx of the warm log (the per-segment hop of a
//                      stream read)
//
// Scratch logs go under $VARVE_BENCH_DIR (default /tmp) and are removed.
#include <benchmark/benchmark.h>
#include <xxhash.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "bench_common.h"
#include "../base/record_format.h"
#include "base/log_files.h"
#include "base/segment.h"  // private headers, by path: the hot pieces themselves
#include "../index/head_table.h"
#include "../index/segment_index.h"
#include "varve/varve.h"
#include "varve/varve_c.h"

namespace vb = varve_bench;

namespace {

constexpr uint32_t kStreams = 100'000;
constexpr size_t kCycle = 1 << 20;  // pre-drawn stream choices, reused cyclically
constexpr size_t kPool = 4096;      // distinct payloads, reused cyclically

// Pre-drawn stream ids (uniform over kStreams) and a pool of pseudo-random
// payloads, so that no PRNG work is timed.
struct inputs {
  std::vector<uint32_t> stream;
  std::vector<std::byte> payload;
  inputs() : stream(kCycle), payload(kPool * vb::kPayloadBytes) {
    vb::splitmix64 rng(vb::kSeed);
    for (auto& s : stream)
      s = static_cast<uint32_t>((static_cast<unsigned __int128>(rng.next()) * kStreams) >> 64);
    for (size_t i = 0; i < payload.size(); i += 8) {
      uint64_t x = rng.next();
      std::memcpy(payload.data() + i, &x, std::min<size_t>(8, payload.size() - i));
    }
  }
  std::span<const std::byte> payload_of(size_t i) const {
    return {payload.data() + (i % kPool) * vb::kPayloadBytes, vb::kPayloadBytes};
  }
};

const inputs& in() {
  static const inputs x;
  return x;
}

varve::log_options bench_options() {
  varve::log_options o;
  o.segment_bytes = 64ull << 20;
  o.mode = varve::durability::none;
  return o;
}

// A fresh log in a scratch directory, removed when this goes away.
struct scratch_log {
  std::string dir;
  std::unique_ptr<varve::event_log> log;
  std::vector<uint64_t> version;  // per stream, what the caller believes

  explicit scratch_log(benchmark::State& state, const varve::log_options& o = bench_options()) {
    dir = vb::make_scratch_dir(vb::scratch_root(), "varve-micro");
    auto r = varve::event_log::create(dir + "/log", o);
    if (!r) {
      state.SkipWithError(("create: " + r.error().to_string()).c_str());
      return;
    }
    log = std::move(r.value());
  }
  // One event in each of the kStreams streams, so the timed loop sees a
  // steady state (no stream creation).
  bool populate(benchmark::State& state) {
    version.assign(kStreams, 0);
    varve::event_data ev;
    for (uint32_t s = 0; s < kStreams; ++s) {
      ev.type = 1;
      ev.payload = in().payload_of(s);
      ev.timestamp_ns = s + 1;
      auto r = log->append(varve::stream_id::from_u64(s), varve::expected_version::no_stream(), ev);
      if (!r) {
        state.SkipWithError(("populate: " + r.error().to_string()).c_str());
        return false;
      }
      version[s] = 1;
    }
    return true;
  }
  ~scratch_log() {
    if (log) (void)log->close();
    log.reset();
    vb::remove_tree(dir);
  }
};

void BM_AppendOne(benchmark::State& state) {
  const bool log_clock = state.range(0) != 0;
  scratch_log sl(state);
  if (!sl.log || !sl.populate(state)) return;
  const auto& input = in();
  varve::event_log& log = *sl.log;
  uint64_t* version = sl.version.data();
  varve::event_data ev;
  uint64_t i = 0;
  for (auto _ : state) {
    uint32_t s = input.stream[i & (kCycle - 1)];
    uint64_t v = version[s];
    ev.type = static_cast<uint32_t>((v + 1) % 8);
    ev.payload = input.payload_of(i);
    ev.timestamp_ns = log_clock ? 0 : i + 1;
    auto r = log.append(varve::stream_id::from_u64(s), varve::expected_version::exact(v), ev);
    if (!r) [[unlikely]] {
      state.SkipWithError(("append: " + r.error().to_string()).c_str());
      break;
    }
    version[s] = v + 1;
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(i));
  state.SetBytesProcessed(static_cast<int64_t>(i * vb::kPayloadBytes));  // payload bytes
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
  state.counters["ns/event"] = benchmark::Counter(static_cast<double>(i),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  auto st = log.stats();
  state.counters["log_bytes/event"] =
      i ? static_cast<double>(st.committed.value) / static_cast<double>(st.events) : 0;
}
BENCHMARK(BM_AppendOne)->ArgName("log_clock")->Arg(0)->Arg(1)->UseRealTime();

void BM_AppendBatch10(benchmark::State& state) {
  constexpr size_t kBatch = 10;
  scratch_log sl(state);
  if (!sl.log || !sl.populate(state)) return;
  const auto& input = in();
  varve::event_log& log = *sl.log;
  uint64_t* version = sl.version.data();
  std::array<varve::event_data, kBatch> evs{};
  uint64_t i = 0, events = 0;
  for (auto _ : state) {
    uint32_t s = input.stream[i & (kCycle - 1)];
    uint64_t v = version[s];
    for (size_t k = 0; k < kBatch; ++k) {
      evs[k].type = static_cast<uint32_t>((v + 1 + k) % 8);
      evs[k].payload = input.payload_of(events + k);
      evs[k].timestamp_ns = events + k + 1;
    }
    auto r = log.append(varve::stream_id::from_u64(s), varve::expected_version::exact(v),
                        std::span<const varve::event_data>(evs));
    if (!r) [[unlikely]] {
      state.SkipWithError(("append: " + r.error().to_string()).c_str());
      break;
    }
    version[s] = v + kBatch;
    events += kBatch;
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.SetBytesProcessed(static_cast<int64_t>(events * vb::kPayloadBytes));
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
  state.counters["batches/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AppendBatch10)->UseRealTime();

// A unit of work over 3 streams, one event each (the multi-stream append),
// against 3 single appends of the same events (BM_AppendOne): the price of
// atomicity across aggregates.
void BM_AppendMulti3(benchmark::State& state) {
  constexpr size_t kParts = 3;
  scratch_log sl(state);
  if (!sl.log || !sl.populate(state)) return;
  const auto& input = in();
  varve::event_log& log = *sl.log;
  uint64_t* version = sl.version.data();
  std::array<varve::event_data, kParts> evs{};
  std::array<varve::stream_batch, kParts> parts{};
  uint64_t i = 0, events = 0;
  for (auto _ : state) {
    uint32_t s[kParts];
    for (size_t k = 0; k < kParts; ++k) {
      // Three distinct streams: consecutive entries of the cycle, nudged apart on a repeat.
      s[k] = input.stream[(i * kParts + k) & (kCycle - 1)];
      for (size_t j = 0; j < k; ++j)
        if (s[k] == s[j]) s[k] = (s[k] + 1 + static_cast<uint32_t>(j)) % kStreams;
    }
    for (size_t k = 0; k < kParts; ++k) {
      const uint64_t v = version[s[k]];
      evs[k].type = static_cast<uint32_t>((v + 1) % 8);
      evs[k].payload = input.payload_of(events + k);
      evs[k].timestamp_ns = events + k + 1;
      parts[k] = {varve::stream_id::from_u64(s[k]), varve::expected_version::exact(v),
                  std::span<const varve::event_data>(&evs[k], 1)};
    }
    auto r = log.append(std::span<const varve::stream_batch>(parts));
    if (!r) [[unlikely]] {
      state.SkipWithError(("append: " + r.error().to_string()).c_str());
      break;
    }
    for (size_t k = 0; k < kParts; ++k) ++version[s[k]];
    events += kParts;
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
  state.counters["units/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
  state.counters["ns/event"] = benchmark::Counter(static_cast<double>(events),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_AppendMulti3)->UseRealTime();

// One warm 1 M-event log shared by the read benchmarks, reopened when the
// checksum option changes; removed at exit.
struct warm_log {
  static constexpr uint64_t kEvents = 1'000'000;
  std::string dir;
  std::unique_ptr<varve::event_log> log;
  bool verify = true;
  std::string error;

  warm_log() {
    dir = vb::make_scratch_dir(vb::scratch_root(), "varve-micro-warm");
    auto o = bench_options();
    auto r = varve::event_log::create(dir + "/log", o);
    if (!r) {
      error = "create: " + r.error().to_string();
      return;
    }
    log = std::move(r.value());
    std::vector<uint64_t> version(kStreams, 0);
    varve::event_data ev;
    const auto& input = in();
    for (uint64_t i = 0; i < kEvents; ++i) {
      uint32_t s = input.stream[i & (kCycle - 1)];
      ev.type = static_cast<uint32_t>((version[s] + 1) % 8);
      ev.payload = input.payload_of(i);
      ev.timestamp_ns = i + 1;
      auto a = log->append(varve::stream_id::from_u64(s), varve::expected_version::exact(version[s]), ev);
      if (!a) {
        error = "append: " + a.error().to_string();
        return;
      }
      ++version[s];
    }
  }
  // Close and reopen: the sealer has then written every sealed segment's
  // index file, as a long-running writer would have.
  bool settle() {
    if (!log) return false;
    verify = !verify;
    return set_verify(!verify);
  }
  bool set_verify(bool v) {
    if (!log) return false;
    if (v == verify) return true;
    (void)log->close();
    log.reset();
    auto o = bench_options();
    o.verify_checksums = v;
    auto r = varve::event_log::open(dir + "/log", o);
    if (!r) {
      error = "reopen: " + r.error().to_string();
      return false;
    }
    log = std::move(r.value());
    verify = v;
    return true;
  }
  ~warm_log() {
    if (log) (void)log->close();
    log.reset();
    vb::remove_tree(dir);
  }
};

warm_log& warm() {
  static warm_log w;
  return w;
}

void BM_ReaderNext(benchmark::State& state) {
  auto& w = warm();
  if (!w.set_verify(state.range(0) != 0)) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  varve::log_reader reader = w.log->read();
  varve::event_view v;
  uint64_t events = 0, bytes = 0;
  for (auto _ : state) {
    auto r = reader.next(v);
    if (!r) [[unlikely]] {
      state.SkipWithError(("next: " + r.error().to_string()).c_str());
      break;
    }
    if (!r.value()) [[unlikely]] {  // end of log: start over
      if (reader.where() == varve::position{}) {
        state.SkipWithError("the warm log reads as empty");
        break;
      }
      reader.seek(varve::position{});
      continue;
    }
    benchmark::DoNotOptimize(v.payload.data());
    ++events;
    bytes += v.record_bytes;
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));  // record bytes
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ReaderNext)->ArgName("verify")->Arg(1)->Arg(0)->UseRealTime();

// What a scan reads of each event: its payload and the record's size.
const std::byte* payload_of(const varve::event_view& v) { return v.payload.data(); }
const std::byte* payload_of(const varve::event_ref& r) { return r.payload().data(); }
uint32_t record_bytes_of(const varve::event_view& v) { return v.record_bytes; }
uint32_t record_bytes_of(const varve::event_ref& r) { return r.record_bytes(); }

// The same scan through next_batch, 64 at a time (one iteration: one batch;
// items = events), into event_views or into the lazy event_refs.
template <class View>
void reader_batches(benchmark::State& state) {
  auto& w = warm();
  if (!w.set_verify(state.range(0) != 0)) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  varve::log_reader reader = w.log->read();
  std::array<View, 64> v;
  uint64_t events = 0, bytes = 0;
  for (auto _ : state) {
    auto r = reader.next_batch(v);
    if (!r) [[unlikely]] {
      state.SkipWithError(("next_batch: " + r.error().to_string()).c_str());
      break;
    }
    if (r.value() == 0) [[unlikely]] {  // end of log: start over
      if (reader.where() == varve::position{}) {
        state.SkipWithError("the warm log reads as empty");
        break;
      }
      reader.seek(varve::position{});
      continue;
    }
    for (size_t i = 0; i < r.value(); ++i) {
      benchmark::DoNotOptimize(payload_of(v[i]));
      bytes += record_bytes_of(v[i]);
    }
    events += r.value();
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));  // record bytes
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
void BM_ReaderNextBatch(benchmark::State& state) { reader_batches<varve::event_view>(state); }
BENCHMARK(BM_ReaderNextBatch)->ArgName("verify")->Arg(1)->Arg(0)->UseRealTime();
void BM_ReaderNextRefs(benchmark::State& state) { reader_batches<varve::event_ref>(state); }
BENCHMARK(BM_ReaderNextRefs)->ArgName("verify")->Arg(1)->Arg(0)->UseRealTime();

// A subscription catching up on the warm log's history (checksums verified):
// one next() per iteration (arg 0), or one next_batch of 64 views (arg 64);
// items = events. At the end of the log a new subscription starts over.
void BM_SubscriptionCatchUp(benchmark::State& state) {
  auto& w = warm();
  if (!w.set_verify(true)) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  const size_t batch = static_cast<size_t>(state.range(0));
  auto open = [&] { return varve::subscription::open(*w.log, varve::position{}); };
  auto sub = open();
  std::array<varve::event_view, 64> v;
  uint64_t events = 0;
  for (auto _ : state) {
    if (!sub) [[unlikely]] {
      state.SkipWithError(("subscription: " + sub.error().to_string()).c_str());
      break;
    }
    size_t got = 0;
    if (batch == 0) {
      auto r = sub->next(v[0]);
      if (r && r.value()) got = 1;
      else if (!r) sub = r.error();
    } else {
      auto r = sub->next_batch(std::span(v).first(batch));
      if (r) got = r.value();
      else sub = r.error();
    }
    for (size_t i = 0; i < got; ++i) benchmark::DoNotOptimize(v[i].payload.data());
    events += got;
    if (got == 0 && sub) sub = open();  // the end of the history
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SubscriptionCatchUp)->ArgName("batch")->Arg(0)->Arg(64)->UseRealTime();

// The same scan through the C API (varve_c.h), the warm log opened read-only
// by it: one varve_reader_next per iteration (arg 0), or one
// varve_reader_next_batch of 64 (arg 64); checksums verified; items = events.
void BM_CReaderNext(benchmark::State& state) {
  auto& w = warm();
  if (!w.set_verify(true)) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  varve_error err;
  varve_log* log = nullptr;
  if (varve_log_open_read_only((w.dir + "/log").c_str(), nullptr, &log, &err) != VARVE_OK) {
    state.SkipWithError((std::string("varve_log_open_read_only: ") + err.message).c_str());
    return;
  }
  varve_reader* rd = nullptr;
  if (varve_reader_open(log, 0, &rd, &err) != VARVE_OK) {
    state.SkipWithError((std::string("varve_reader_open: ") + err.message).c_str());
    (void)varve_log_close(log, nullptr);
    return;
  }
  const size_t batch = static_cast<size_t>(state.range(0));
  std::array<varve_event, 64> ev;
  uint64_t events = 0;
  for (auto _ : state) {
    size_t got = 0;
    varve_errc c;
    if (batch == 0) {
      bool one = false;
      c = varve_reader_next(rd, ev.data(), &one, &err);
      got = one;
    } else {
      c = varve_reader_next_batch(rd, ev.data(), batch, &got, &err);
    }
    if (c != VARVE_OK) [[unlikely]] {
      state.SkipWithError((std::string("next: ") + err.message).c_str());
      break;
    }
    for (size_t i = 0; i < got; ++i) benchmark::DoNotOptimize(ev[i].payload);
    events += got;
    if (got == 0) (void)varve_reader_seek(rd, 0, &err);  // the end: start over
  }
  varve_reader_free(rd);
  (void)varve_log_close(log, nullptr);
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CReaderNext)->ArgName("batch")->Arg(0)->Arg(64)->UseRealTime();

void BM_VersionOf(benchmark::State& state) {
  auto& w = warm();
  if (!w.log) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  const auto& input = in();
  uint64_t i = 0, sum = 0;
  for (auto _ : state) {
    sum += w.log->version_of(varve::stream_id::from_u64(input.stream[i & (kCycle - 1)]));
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(i));
}
BENCHMARK(BM_VersionOf)->UseRealTime();

void BM_ReadStream(benchmark::State& state) {
  auto& w = warm();
  if (!w.set_verify(true) || !w.settle()) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  const auto& input = in();
  uint64_t i = 0, events = 0;
  varve::event_view v;
  for (auto _ : state) {
    auto r = w.log->read_stream(varve::stream_id::from_u64(input.stream[(i * 7919) & (kCycle - 1)]));
    if (!r) [[unlikely]] {
      state.SkipWithError(("read_stream: " + r.error().to_string()).c_str());
      break;
    }
    while (true) {
      auto more = r->next(v);
      if (!more || !more.value()) break;
      benchmark::DoNotOptimize(v.payload.data());
      ++events;
    }
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.counters["aggregates/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
  state.counters["events/aggregate"] = static_cast<double>(events) / static_cast<double>(i ? i : 1);
}
BENCHMARK(BM_ReadStream)->UseRealTime();

void BM_PositionAtTime(benchmark::State& state) {
  auto& w = warm();
  if (!w.log) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  const auto& input = in();
  uint64_t i = 0, sum = 0;
  for (auto _ : state) {
    // The warm log's timestamps are 1..kEvents.
    auto p = w.log->position_at_time(1 + (uint64_t{input.stream[i & (kCycle - 1)]} * 10) % warm_log::kEvents);
    if (!p) [[unlikely]] {
      state.SkipWithError(("position_at_time: " + p.error().to_string()).c_str());
      break;
    }
    sum += p->value;
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(i));
}
BENCHMARK(BM_PositionAtTime)->UseRealTime();

void BM_XXH3(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<std::byte> buf(n);
  std::memcpy(buf.data(), in().payload.data(), n);
  for (auto _ : state) {
    benchmark::DoNotOptimize(buf.data());
    benchmark::DoNotOptimize(XXH3_64bits(buf.data(), n));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
  state.counters["hashes/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_XXH3)->ArgName("bytes")->Arg(180);

// One ES-1 record's inputs: stream i's 8-byte big-endian id and payload i.
struct record_input {
  varve::stream_id stream;
  varve::event_data ev;
  varve::record::header_fields h{};
  uint32_t size;
  explicit record_input(uint64_t i) : stream(varve::stream_id::from_u64(in().stream[i & (kCycle - 1)])) {
    ev.type = static_cast<uint32_t>(i % 8);
    ev.payload = in().payload_of(i);
    ev.timestamp_ns = i + 1;
    size = varve::record::encoded_size(stream.bytes().size(), ev);
  }
  void fields(uint64_t i, uint64_t position) {
    h.position = position;
    h.sequence = i;
    h.version = i / 8 + 1;
    h.timestamp_ns = i + 1;
    h.prev_position = ~uint64_t{0};
    h.flags = varve::record::kFlagIntegerStream | varve::record::kFlagBatchBegin | varve::record::kFlagBatchEnd;
  }
};

void BM_RecordEncode(benchmark::State& state) {
  record_input r(0);
  std::vector<std::byte> buf(1 << 20);
  const uint64_t per_buf = buf.size() / r.size;
  uint64_t i = 0, bytes = 0;
  for (auto _ : state) {
    r.fields(i, (i % per_buf) * r.size);
    r.ev.payload = in().payload_of(i);
    bytes += varve::record::encode(buf.data() + (i % per_buf) * r.size, r.size, r.stream.bytes(), r.ev, r.h);
    ++i;
  }
  benchmark::DoNotOptimize(buf.data());
  state.SetItemsProcessed(static_cast<int64_t>(i));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));  // record bytes
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
  state.counters["record_bytes"] = r.size;
}
BENCHMARK(BM_RecordEncode)->UseRealTime();

void BM_RecordDecode(benchmark::State& state) {
  const bool verify = state.range(0) != 0;
  record_input r(0);
  std::vector<std::byte> buf(1 << 20);
  const uint64_t n = buf.size() / r.size;
  for (uint64_t i = 0; i < n; ++i) {
    record_input e(i);
    e.fields(i, i * e.size);
    varve::record::encode(buf.data() + i * e.size, e.size, e.stream.bytes(), e.ev, e.h);
  }
  varve::event_view v;
  uint64_t i = 0, bytes = 0, sum = 0;
  for (auto _ : state) {
    const uint64_t k = i % n;
    auto d = varve::record::decode(buf.data() + k * r.size, buf.size() - k * r.size, k * r.size, verify, v);
    if (d.outcome != varve::record::decode_outcome::event) [[unlikely]] {
      state.SkipWithError(d.why ? d.why : "decode failed");
      break;
    }
    sum += v.version;
    bytes += d.length;
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(i));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));  // record bytes
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RecordDecode)->ArgName("verify")->Arg(1)->Arg(0)->UseRealTime();

void BM_HeadLookup(benchmark::State& state) {
  varve::head_table t;
  std::vector<varve::stream_id> ids;
  ids.reserve(kStreams);
  for (uint32_t s = 0; s < kStreams; ++s) ids.push_back(varve::stream_id::from_u64(s));
  for (uint32_t s = 0; s < kStreams; ++s) t.advance(ids[s].bytes(), true, s + 1, s);
  const auto& input = in();
  uint64_t i = 0, sum = 0;
  for (auto _ : state) {
    const std::string_view key = ids[input.stream[i & (kCycle - 1)]].bytes();
    const varve::head_table::head* h = t.find(key, t.hash(key));
    if (!h) [[unlikely]] {
      state.SkipWithError("a stream is missing from the head table");
      break;
    }
    sum += h->version;
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(i));
  state.counters["lookups/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_HeadLookup)->UseRealTime();

void BM_IndexLookup(benchmark::State& state) {
  auto& w = warm();
  if (!w.set_verify(true) || !w.settle()) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  // The first sealed segment's index file, read into memory.
  std::string file;
  for (auto& e : std::filesystem::directory_iterator(w.dir + "/log/index"))
    if (e.path().extension() == ".sidx" && (file.empty() || e.path().string() < file)) file = e.path().string();
  if (file.empty()) {
    state.SkipWithError("the warm log has no .sidx file");
    return;
  }
  std::ifstream f(file, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(raw.size());
  std::memcpy(bytes.data(), raw.data(), raw.size());
  uint64_t log_id = 0, seg = 0;
  std::memcpy(&log_id, bytes.data() + 16, 8);
  std::memcpy(&seg, bytes.data() + 24, 8);
  auto v = varve::segment_index::view::open(bytes.data(), bytes.size(), file, log_id, seg);
  if (!v) {
    state.SkipWithError(("open .sidx: " + v.error().to_string()).c_str());
    return;
  }
  std::vector<varve::stream_id> ids;
  ids.reserve(kStreams);
  for (uint32_t s = 0; s < kStreams; ++s) ids.push_back(varve::stream_id::from_u64(s));
  const auto& input = in();
  uint64_t i = 0, found = 0, sum = 0;
  varve::segment_index::stream_run run;
  for (auto _ : state) {
    if (v->find(ids[input.stream[(i * 7919) & (kCycle - 1)]].bytes(), run)) {
      ++found;
      sum += run.count;
    }
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(i));
  state.counters["lookups/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
  state.counters["hit_fraction"] = i ? static_cast<double>(found) / static_cast<double>(i) : 0;
  state.counters["streams_in_segment"] = static_cast<double>(v->stream_count());
}
BENCHMARK(BM_IndexLookup)->UseRealTime();

void BM_IndexBuild(benchmark::State& state) {
  auto& w = warm();
  if (!w.set_verify(true) || !w.settle()) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  auto fs = varve::posix_file_system();
  // The log's identity, from the first segment's header.
  const std::string dir = w.dir + "/log";
  std::byte head[varve::segment_format::kHeaderSize];
  {
    std::ifstream f(dir + "/" + varve::log_files::segment_name(0), std::ios::binary);
    f.read(reinterpret_cast<char*>(head), sizeof head);
  }
  varve::segment_format::header h;
  if (auto st = varve::segment_format::decode_header(head, "segment 0", h); !st) {
    state.SkipWithError(st.to_string().c_str());
    return;
  }
  auto seg = varve::segment::open(fs, {dir, h.log2_capacity, h.log_id}, 0, varve::map_access::read_only);
  if (!seg) {
    state.SkipWithError(("open segment 0: " + seg.error().to_string()).c_str());
    return;
  }
  varve::segment_index::build_input bi;
  bi.log_id = h.log_id;
  uint64_t events = 0, bytes = 0;
  for (auto _ : state) {
    auto b = varve::segment_index::build(*seg.value(), bi);
    if (!b) {
      state.SkipWithError(("build: " + b.error().to_string()).c_str());
      break;
    }
    bytes = b.value().size();
    varve::segment_format::footer f;
    (void)seg.value()->read_footer(f);
    events += f.event_count;
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.counters["index_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_IndexBuild)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
