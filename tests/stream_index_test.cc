// The per-aggregate index: read_stream (forward, backward, bounded) and
// position_at_time against a model, over many sealed segments and reopens;
// with index files present, missing, and damaged at every byte; hash
// collisions resolved by the bytes; version checks on the append path.
#include <algorithm>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/index_table.h"
#include "base/log_files.h"
#include "base/segment.h"
#include "index/segment_index.h"
#include "test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;

constexpr uint64_t kSeg = 64 * 1024;

stream_key stream_number(int i) {
  if (i % 7 == 0) return stream_key::integer(500 + uint64_t(i));
  return stream_key::named("order-" + std::to_string(i));
}

owned_event small_event(std::mt19937_64& rng, uint64_t ts) {
  owned_event e;
  e.type = uint32_t(rng() % 5);
  e.timestamp_ns = ts;
  e.payload = random_bytes(rng, rng() % 10 == 0 ? 2000 + rng() % 3000 : rng() % 120);
  return e;
}

// Records observer notes so tests can assert what was reported. Called from
// readers and from the writer's background thread at once: locked.
struct notes : recovery_observer {
  std::mutex mu;
  std::vector<std::string> seen;
  void on_truncated(const std::string& file, uint64_t, uint64_t, const std::string& why) override {
    std::lock_guard<std::mutex> g(mu);
    seen.push_back(file + ": " + why);
  }
};

// The model's events of one stream, version order.
std::vector<const model_event*> stream_events(const log_model& m, const stream_key& s) {
  std::vector<const model_event*> out;
  for (const auto& e : m.events())
    if (e.stream == s) out.push_back(&e);
  return out;
}

// Reads `s` through read_stream and compares with the model, every field.
testing::AssertionResult stream_matches(const event_log& log, const log_model& m,
                                        const stream_key& s, stream_version from,
                                        read_direction dir, uint64_t max_count) {
  const auto want_all = stream_events(m, s);
  std::vector<const model_event*> want;
  const uint64_t n = want_all.size();
  if (dir == read_direction::forward) {
    for (uint64_t v = std::max<uint64_t>(from, 1); v <= n && want.size() < max_count; ++v)
      want.push_back(want_all[v - 1]);
  } else {
    for (uint64_t v = std::min<uint64_t>(from, n); v >= 1 && want.size() < max_count; --v)
      want.push_back(want_all[v - 1]);
  }
  auto r = log.read_stream(s.id(), from, dir, max_count);
  if (!r) return testing::AssertionFailure() << "read_stream: " << r.error().to_string();
  if (r->stream_version_at_start() != n)
    return testing::AssertionFailure() << "version at start " << r->stream_version_at_start()
                                       << ", model " << n;
  size_t i = 0;
  event_view v;
  while (true) {
    auto more = r->next(v);
    if (!more) return testing::AssertionFailure() << "next: " << more.error().to_string();
    if (!*more) break;
    if (i >= want.size())
      return testing::AssertionFailure() << "extra event version " << v.version;
    auto ok = event_matches(v, *want[i], m.segment_bytes());
    if (!ok) return ok << " (event " << i << " of the read)";
    ++i;
  }
  if (i != want.size())
    return testing::AssertionFailure() << "read " << i << " events, want " << want.size()
                                       << " (from " << from << ", max " << max_count << ")";
  return testing::AssertionSuccess();
}

void check_random_reads(const event_log& log, const log_model& m, std::mt19937_64& rng,
                        int streams, int reads) {
  for (int k = 0; k < reads; ++k) {
    const stream_key s = stream_number(int(rng() % (streams + 1)));  // one never written
    const uint64_t n = m.version_of(s);
    const read_direction dir = rng() % 2 ? read_direction::forward : read_direction::backward;
    stream_version from;
    switch (rng() % 4) {
      case 0: from = dir == read_direction::forward ? 1 : kLatestVersion; break;
      case 1: from = n + 1 + rng() % 3; break;
      default: from = n ? 1 + rng() % n : 0; break;
    }
    const uint64_t max = rng() % 3 == 0 ? 1 + rng() % 5 : UINT64_MAX;
    ASSERT_TRUE(stream_matches(log, m, s, from, dir, max))
        << "stream " << hex(std::as_bytes(std::span(s.bytes))) << " dir " << int(dir);
  }
}

size_t count_files(const std::string& dir, const char* suffix) {
  size_t n = 0;
  if (!fs::exists(dir + "/index")) return 0;
  for (const auto& e : fs::directory_iterator(dir + "/index"))
    if (e.path().filename().string().ends_with(suffix)) ++n;
  return n;
}

class StreamIndexModel : public testing::TestWithParam<int> {};

TEST_P(StreamIndexModel, ReadsMatchTheModelAcrossSegmentsAndReopens) {
  std::mt19937_64 rng(GetParam());
  temp_dir d;
  const std::string dir = d.sub("log");
  log_options o;
  o.segment_bytes = kSeg;
  log_model m(kSeg);
  constexpr int kStreams = 30;
  uint64_t ts = 1'700'000'000'000'000'000ull;
  auto log = event_log::create(dir, o);
  ASSERT_OK(log);
  const int rounds = 4;
  for (int round = 0; round < rounds; ++round) {
    const int appends = 300 + int(rng() % 600);
    for (int i = 0; i < appends; ++i) {
      const stream_key s = stream_number(int(rng() % kStreams));
      std::vector<owned_event> evs;
      const int n = rng() % 4 == 0 ? 2 + int(rng() % 4) : 1;
      for (int j = 0; j < n; ++j) evs.push_back(small_event(rng, ts += 1000 + rng() % 5000));
      const stream_version actual = m.version_of(s);
      expected_version exp = rng() % 8 == 0 ? expected_version::exact(actual + 1)
                             : rng() % 2   ? expected_version::exact(actual)
                                           : expected_version::any();
      append_checked(*log.value(), m, s, exp, evs);
      if (HasFailure()) return;
    }
    check_random_reads(*log.value(), m, rng, kStreams, 60);
    ASSERT_OK(log.value()->close());
    log.value().reset();
    // Closing drains the sealer: every sealed segment has its index file.
    EXPECT_EQ(count_files(dir, ".sidx"), list_segments(dir).size() - 1);
    log = event_log::open(dir, o);
    ASSERT_OK(log);
    check_random_reads(*log.value(), m, rng, kStreams, 60);
  }
  // The same answers with no index files at all (the back-chain alone), from
  // a read-only follower.
  ASSERT_OK(log.value()->close());
  log.value().reset();
  fs::remove_all(dir + "/index");
  auto ro = event_log::open_read_only(dir, o);
  ASSERT_OK(ro);
  check_random_reads(*ro.value(), m, rng, kStreams, 80);
  // And a writer rebuilds them on open.
  {
    auto w = event_log::open(dir, o);
    ASSERT_OK(w);
    ASSERT_OK(w.value()->close());
  }
  EXPECT_EQ(count_files(dir, ".sidx"), list_segments(dir).size() - 1);
}

INSTANTIATE_TEST_SUITE_P(Seeds, StreamIndexModel, testing::Range(1, 7));

TEST(StreamIndex, BoundedReadsOfALongStreamTouchFewRecords) {
  temp_dir d;
  log_options o;
  o.segment_bytes = kSeg;
  auto log = event_log::create(d.sub("log"), o);
  ASSERT_OK(log);
  std::vector<std::byte> payload(40);
  const uint64_t n = scaled(20000);
  for (uint64_t i = 1; i <= n; ++i) {
    event_data e;
    e.payload = payload;
    e.timestamp_ns = 1000 * i;
    ASSERT_OK(log.value()->append("long", expected_version::exact(i - 1), e));
    event_data other = e;
    ASSERT_OK(log.value()->append(stream_id::from_u64(i % 97), expected_version::any(), other));
  }
  ASSERT_OK(log.value()->close());
  log.value().reset();
  auto ro = event_log::open_read_only(d.sub("log"), o);
  ASSERT_OK(ro);
  std::mt19937_64 rng(7);
  for (int k = 0; k < 200; ++k) {
    const uint64_t from = 1 + rng() % n;
    for (read_direction dir : {read_direction::forward, read_direction::backward}) {
      auto r = ro.value()->read_stream("long", from, dir, 5);
      ASSERT_OK(r);
      event_view v;
      uint64_t want = from, got = 0;
      while (true) {
        auto more = r->next(v);
        ASSERT_OK(more);
        if (!*more) break;
        ASSERT_EQ(v.version, want);
        ASSERT_EQ(v.timestamp_ns, 1000 * want);
        want = dir == read_direction::forward ? want + 1 : want - 1;
        ++got;
      }
      const uint64_t avail = dir == read_direction::forward ? n - from + 1 : from;
      EXPECT_EQ(got, std::min<uint64_t>(5, avail));
    }
  }
  // Time: every timestamp maps to its event (both streams carry 1000 * i;
  // "long" is appended first).
  for (int k = 0; k < 200; ++k) {
    const uint64_t i = 1 + rng() % n;
    auto p = ro.value()->position_at_time(1000 * i - (rng() % 2 ? 0 : 999));
    ASSERT_OK(p);
    auto r = ro.value()->read(*p);
    event_view v;
    auto more = r.next(v);
    ASSERT_OK(more);
    ASSERT_TRUE(*more);
    EXPECT_EQ(v.stream, "long");
    EXPECT_EQ(v.version, i);
  }
  auto end = ro.value()->position_at_time(1000 * n + 1);
  ASSERT_OK(end);
  EXPECT_EQ(end->value, ro.value()->committed_position().value);
  auto start = ro.value()->position_at_time(0);
  ASSERT_OK(start);
  auto r0 = ro.value()->read(*start);
  event_view v0;
  auto first = r0.next(v0);
  ASSERT_OK(first);
  ASSERT_TRUE(*first);
  EXPECT_EQ(v0.sequence.value, 0u);
}

TEST(StreamIndex, TimeLookupFollowsTheRunningMaximum) {
  // Timestamps that go back and forth: the answer is the first event at which
  // the running maximum reaches t, checked against a brute-force scan.
  temp_dir d;
  log_options o;
  o.segment_bytes = kSeg;
  auto log = event_log::create(d.sub("log"), o);
  ASSERT_OK(log);
  std::mt19937_64 rng(11);
  std::vector<uint64_t> ts;
  std::vector<std::byte> payload(100);
  for (int i = 0; i < 5000; ++i) {
    event_data e;
    e.payload = payload;
    e.timestamp_ns = 1'000'000 + i * 1000 + (rng() % 50000) - 25000 + 1;
    ts.push_back(e.timestamp_ns);
    ASSERT_OK(log.value()->append(stream_id::from_u64(i % 13), expected_version::any(), e));
  }
  ASSERT_OK(log.value()->close());
  log.value().reset();
  auto ro = event_log::open_read_only(d.sub("log"), o);
  ASSERT_OK(ro);
  auto all = read_all(*ro.value());
  ASSERT_OK(all.error);
  for (int k = 0; k < 300; ++k) {
    const uint64_t t = 900'000 + rng() % 5'200'000;
    uint64_t run = 0;
    size_t want = all.events.size();
    for (size_t i = 0; i < all.events.size(); ++i) {
      run = std::max(run, all.events[i].timestamp_ns);
      if (run >= t) {
        want = i;
        break;
      }
    }
    auto p = ro.value()->position_at_time(t);
    ASSERT_OK(p);
    if (want == all.events.size())
      EXPECT_EQ(p->value, ro.value()->committed_position().value);
    else
      EXPECT_EQ(p->value, all.events[want].position.value) << "t " << t << " want event " << want;
  }
}

// A log of several sealed segments and its model, for the damage tests.
struct built_log {
  temp_dir d;
  std::string dir;
  log_model m{kSeg};
  int streams = 25;
  built_log() {
    dir = d.sub("log");
    log_options o;
    o.segment_bytes = kSeg;
    auto log = event_log::create(dir, o);
    EXPECT_OK(log);
    std::mt19937_64 rng(3);
    for (int i = 0; i < 900; ++i) {
      std::vector<owned_event> evs{small_event(rng, 1'000'000 + i)};
      append_checked(*log.value(), m, stream_number(int(rng() % streams)), expected_version::any(), evs);
    }
    EXPECT_OK(log.value()->close());
  }
};

TEST(StreamIndex, DamagedIndexFileIsDetectedAtEveryByteAndRebuilt) {
  built_log b;
  const std::string ix = b.dir + "/index/" + log_files::sidx_name(1);
  ASSERT_TRUE(fs::exists(ix));
  const std::vector<uint8_t> original = read_file(ix);
  std::mt19937_64 rng(5);
  log_options o;
  o.segment_bytes = kSeg;
  const size_t step = (original.size() > 4000 ? 3 : 1) * sample_stride();
  for (size_t off = 0; off < original.size(); off += step) {
    flip_byte(ix, off, uint8_t(1u << (rng() % 8)));
    notes seen;
    o.observer = &seen;
    auto ro = event_log::open_read_only(b.dir, o);
    ASSERT_OK(ro);
    for (int s = 0; s < b.streams; ++s) {
      const stream_key k = stream_number(s);
      ASSERT_TRUE(stream_matches(*ro.value(), b.m, k, 1, read_direction::forward, UINT64_MAX))
          << "byte " << off;
      ASSERT_TRUE(stream_matches(*ro.value(), b.m, k, kLatestVersion, read_direction::backward, 3))
          << "byte " << off;
    }
    // Damage is reported (unless no read touched segment 1's index).
    bool reported = false;
    for (const auto& n : seen.seen) reported |= n.find(".sidx") != std::string::npos;
    EXPECT_TRUE(reported) << "byte " << off << " damaged without a report";
    write_at(ix, 0, original.data(), original.size());
  }
  // A damaged header is found by the writer's open (and rebuilt in the
  // background); a damaged body by the first read that maps the file, and
  // rebuilt by the writer's background thread (at the next seal or close).
  for (size_t off : {size_t{20}, original.size() / 2}) {
    flip_byte(ix, off);
    notes seen;
    o.observer = &seen;
    {
      auto w = event_log::open(b.dir, o);
      ASSERT_OK(w);
      for (int s = 0; s < b.streams; ++s)
        ASSERT_TRUE(stream_matches(*w.value(), b.m, stream_number(s), 1, read_direction::forward,
                                   UINT64_MAX));
      ASSERT_OK(w.value()->close());
    }
    EXPECT_EQ(read_file(ix), original) << "byte " << off;
    bool rebuilt = false;
    for (const auto& n : seen.seen) rebuilt |= n.find("rebuilt") != std::string::npos;
    EXPECT_TRUE(rebuilt) << "byte " << off;
  }
}

TEST(StreamIndex, TruncatedOrForeignIndexFilesAreNotTrusted) {
  built_log b;
  const std::string ix = b.dir + "/index/" + log_files::sidx_name(0);
  const std::vector<uint8_t> original = read_file(ix);
  log_options o;
  o.segment_bytes = kSeg;
  for (size_t len : {size_t{0}, size_t{10}, size_t{127}, size_t{128}, original.size() - 8}) {
    fs::resize_file(ix, len);
    auto ro = event_log::open_read_only(b.dir, o);
    ASSERT_OK(ro);
    for (int s = 0; s < b.streams; ++s)
      ASSERT_TRUE(stream_matches(*ro.value(), b.m, stream_number(s), 1, read_direction::forward, UINT64_MAX));
    write_at(ix, 0, original.data(), original.size());
  }
  // Segment 1's index under segment 0's name: valid bytes, wrong segment.
  fs::copy_file(b.dir + "/index/" + log_files::sidx_name(1), ix, fs::copy_options::overwrite_existing);
  auto ro = event_log::open_read_only(b.dir, o);
  ASSERT_OK(ro);
  for (int s = 0; s < b.streams; ++s)
    ASSERT_TRUE(stream_matches(*ro.value(), b.m, stream_number(s), 1, read_direction::forward, UINT64_MAX));
}

TEST(StreamIndex, CollisionsAreResolvedByTheStreamBytes) {
  // Build segment 0's index with a hash that maps every stream to one of four
  // values: each lookup walks a long probe chain of colliding hashes.
  built_log b;
  auto fsys = posix_file_system();
  // The log id, from the valid index file's header.
  const std::vector<uint8_t> good = read_file(b.dir + "/index/" + log_files::sidx_name(0));
  uint64_t log_id;
  std::memcpy(&log_id, good.data() + 16, 8);
  auto seg = segment::open(fsys, {b.dir, uint8_t(log2_exact(kSeg)), log_id}, 0, map_access::read_only);
  ASSERT_OK(seg);
  for (auto kind : {segment_index::hash_kind::weak, segment_index::hash_kind::xxh3}) {
    auto bytes = segment_index::build(*seg.value(), {log_id, 0, kind});
    ASSERT_OK(bytes);
    auto v = segment_index::view::open(bytes->data(), bytes->size(), "t", log_id, 0);
    ASSERT_OK(v);
    // Every stream's run agrees with the model's events in segment 0.
    for (int s = 0; s <= b.streams; ++s) {
      const stream_key k = stream_number(s);
      std::vector<const model_event*> in_seg;
      for (const model_event* e : stream_events(b.m, k))
        if (e->known_position ? e->known_position->value < kSeg : false) in_seg.push_back(e);
      segment_index::stream_run r;
      const bool found = v->find(k.bytes, r);
      ASSERT_EQ(found, !in_seg.empty()) << s;
      if (!found) continue;
      ASSERT_EQ(r.count, in_seg.size());
      EXPECT_EQ(r.first_version, in_seg.front()->version);
      for (size_t i = 0; i < in_seg.size(); ++i)
        EXPECT_EQ(r.offsets[i], in_seg[i]->known_position->value);
    }
    // A stream id sharing a colliding hash and a prefix is still absent.
    segment_index::stream_run r;
    EXPECT_FALSE(v->find("order-1x", r));
    EXPECT_FALSE(v->find(std::string(255, 'o'), r));
  }
}

TEST(StreamIndex, ThousandsOfStreamsOfEveryLengthInOneSegmentAreIndexedExactly) {
  // Enough distinct streams in one segment that the builder's table grows
  // several times, with integer ids, short names compared in its slots, and
  // long names sharing their first 16 bytes (compared against the segment).
  temp_dir d;
  const std::string dir = d.sub("log");
  constexpr uint64_t kBigSeg = 1 << 20;
  log_options o;
  o.segment_bytes = kBigSeg;
  constexpr int kMany = 6000;
  auto name = [](int i) -> std::string {
    if (i % 3 == 1) return "s-" + std::to_string(i);
    return "account-0000000000-" + std::to_string(i);  // 16-byte common prefix
  };
  std::vector<std::vector<uint64_t>> positions(kMany);  // each stream's records, version order
  {
    auto log = event_log::create(dir, o);
    ASSERT_OK(log);
    std::vector<std::byte> p(12);
    event_data e;
    e.payload = p;
    for (int round = 0; round < 3; ++round)
      for (int i = 0; i < kMany; ++i) {
        std::memcpy(p.data(), &i, sizeof i);
        const std::string n = name(i);
        auto r = i % 3 == 0 ? log.value()->append(stream_id::from_u64(uint64_t(i)), expected_version::exact(uint64_t(round)), e)
                            : log.value()->append(stream_id(std::string_view(n)), expected_version::exact(uint64_t(round)), e);
        ASSERT_OK(r);
        positions[size_t(i)].push_back(r->first.value);
      }
    ASSERT_OK(log.value()->close());
  }
  ASSERT_GE(list_segments(dir).size(), 2u);
  const std::vector<uint8_t> good = read_file(dir + "/index/" + log_files::sidx_name(0));
  uint64_t log_id;
  std::memcpy(&log_id, good.data() + 16, 8);
  auto seg = segment::open(posix_file_system(), {dir, uint8_t(log2_exact(kBigSeg)), log_id}, 0, map_access::read_only);
  ASSERT_OK(seg);
  auto bytes = segment_index::build(*seg.value(), {log_id, 0, segment_index::hash_kind::xxh3});
  ASSERT_OK(bytes);
  // What the sealer wrote is what a fresh build gives.
  ASSERT_EQ(bytes->size(), good.size());
  EXPECT_TRUE(std::memcmp(bytes->data(), good.data(), good.size()) == 0);
  auto v = segment_index::view::open(bytes->data(), bytes->size(), "t", log_id, 0);
  ASSERT_OK(v);
  size_t streams_in_segment = 0;
  for (int i = 0; i < kMany; ++i) {
    std::vector<uint64_t> in_seg;
    for (uint64_t pos : positions[size_t(i)])
      if (pos < kBigSeg) in_seg.push_back(pos);
    const stream_id id = i % 3 == 0 ? stream_id::from_u64(uint64_t(i)) : stream_id(std::string_view());
    const std::string n = name(i);
    segment_index::stream_run r;
    const bool found = v->find(i % 3 == 0 ? id.bytes() : std::string_view(n), r);
    ASSERT_EQ(found, !in_seg.empty()) << i;
    if (!found) continue;
    ++streams_in_segment;
    ASSERT_EQ(r.count, in_seg.size()) << i;
    EXPECT_EQ(r.first_version, 1u) << i;
    for (size_t k = 0; k < in_seg.size(); ++k) EXPECT_EQ(r.offsets[k], in_seg[k]) << i;
  }
  EXPECT_EQ(v->stream_count(), streams_in_segment);
  EXPECT_GT(streams_in_segment, 4096u);  // past the builder's first table size, twice over its load
  // Names that share a long prefix and a length with an indexed one are absent.
  segment_index::stream_run r;
  EXPECT_FALSE(v->find("account-0000000000-9999999", r));
  EXPECT_FALSE(v->find("account-0000000000-2x", r));
}

TEST(StreamIndex, ExpectedVersionKindsOnTheAppendPath) {
  temp_dir d;
  auto log = event_log::create(d.sub("log"));
  ASSERT_OK(log);
  std::vector<std::byte> p(8);
  event_data e;
  e.payload = p;
  event_log& l = *log.value();
  EXPECT_ERRC(l.append("a", expected_version::stream_exists(), e), errc::wrong_expected_version);
  EXPECT_OK(l.append("a", expected_version::no_stream(), e));
  auto r = l.append("a", expected_version::no_stream(), e);
  ASSERT_ERRC(r, errc::wrong_expected_version);
  EXPECT_EQ(r.error().actual_version(), 1u);
  EXPECT_OK(l.append("a", expected_version::stream_exists(), e));
  r = l.append("a", expected_version::exact(5), e);
  ASSERT_ERRC(r, errc::wrong_expected_version);
  EXPECT_EQ(r.error().actual_version(), 2u);
  EXPECT_OK(l.append("a", expected_version::exact(2), e));
  EXPECT_EQ(l.version_of("a"), 3u);
  EXPECT_TRUE(l.stream_exists("a"));
  EXPECT_FALSE(l.stream_exists("b"));
  auto rs = l.read_stream("b");
  ASSERT_OK(rs);
  event_view v;
  auto none = rs->next(v);
  ASSERT_OK(none);
  EXPECT_FALSE(*none);
  const std::string too_long(256, 'x');
  EXPECT_ERRC(l.read_stream(std::string_view(too_long)), errc::invalid_argument);
}

}  // namespace

namespace {

TEST(IndexAdmin, VerifyFindsEachDamagedFileAndRebuildRestoresTheIndex) {
  built_log b;
  auto clean = verify_index(b.dir);
  ASSERT_OK(clean);
  EXPECT_TRUE(clean->problems.empty()) << clean->problems.front().to_string();
  const uint64_t sealed = list_segments(b.dir).size() - 1;
  EXPECT_EQ(clean->sealed_segments, sealed);
  EXPECT_EQ(clean->index_files, sealed);
  EXPECT_GE(clean->checkpoints, 1u);

  const std::string ix0 = b.dir + "/index/" + log_files::sidx_name(0);
  const std::string ix1 = b.dir + "/index/" + log_files::sidx_name(1);
  const std::vector<uint8_t> original0 = read_file(ix0);
  flip_byte(ix0, original0.size() - 3);
  fs::remove(ix1);
  std::string heads;
  for (const auto& e : fs::directory_iterator(b.dir + "/index"))
    if (e.path().extension() == ".heads") heads = e.path().string();
  ASSERT_FALSE(heads.empty());
  flip_byte(heads, 70);
  auto bad = verify_index(b.dir);
  ASSERT_OK(bad);
  ASSERT_EQ(bad->problems.size(), 3u);
  std::string all;
  for (const auto& p : bad->problems) all += p.to_string() + "\n";
  EXPECT_NE(all.find(log_files::sidx_name(0)), std::string::npos) << all;
  EXPECT_NE(all.find(log_files::sidx_name(1)), std::string::npos) << all;
  EXPECT_NE(all.find(fs::path(heads).filename().string()), std::string::npos) << all;

  {
    // Not while a writer has the log.
    auto w = event_log::open(b.dir);
    ASSERT_OK(w);
    EXPECT_ERRC(rebuild_index(b.dir), errc::locked);
  }
  // Progress (a line on the operator's terminal): before each segment, then done.
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  auto rebuilt = rebuild_index(b.dir, [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); });
  ASSERT_OK(rebuilt);
  EXPECT_EQ(rebuilt->index_files, sealed);
  ASSERT_EQ(progress.size(), sealed + 1);
  for (uint64_t i = 0; i <= sealed; ++i) EXPECT_EQ(progress[i], std::make_pair(i, uint64_t{sealed}));
  EXPECT_EQ(read_file(ix0), original0);
  auto again = verify_index(b.dir);
  ASSERT_OK(again);
  EXPECT_TRUE(again->problems.empty()) << again->problems.front().to_string();
  log_options o;
  o.segment_bytes = kSeg;
  auto ro = event_log::open_read_only(b.dir, o);
  ASSERT_OK(ro);
  for (int s = 0; s <= b.streams; ++s)
    ASSERT_TRUE(stream_matches(*ro.value(), b.m, stream_number(s), 1, read_direction::forward, UINT64_MAX));
  auto w = event_log::open(b.dir, o);  // and the writer opens from the rebuilt checkpoint
  ASSERT_OK(w);
  for (int s = 0; s <= b.streams; ++s) EXPECT_EQ(w.value()->version_of(stream_number(s).id()), b.m.version_of(stream_number(s)));
}

}  // namespace

namespace {

TEST(StreamIndex, AStreamOfAMillionEventsBesideAStreamOfOne) {
  temp_dir d;
  log_options o;
  o.segment_bytes = 1 << 20;
  auto log = event_log::create(d.sub("log"), o);
  ASSERT_OK(log);
  event_log& l = *log.value();
  std::vector<std::byte> payload(16);
  constexpr uint64_t kMillion = 1'000'000;
  for (uint64_t i = 1; i <= kMillion; ++i) {
    std::memcpy(payload.data(), &i, 8);
    event_data e;
    e.payload = payload;
    ASSERT_OK(l.append(stream_id::from_u64(1), expected_version::exact(i - 1), e));
    if (i == kMillion / 2) ASSERT_OK(l.append("single", expected_version::no_stream(), e));
  }
  auto one = l.read_stream("single");
  ASSERT_OK(one);
  event_view v;
  auto got = one->next(v);
  ASSERT_OK(got);
  ASSERT_TRUE(*got);
  EXPECT_EQ(v.version, 1u);
  got = one->next(v);
  ASSERT_OK(got);
  EXPECT_FALSE(*got);
  ASSERT_OK(l.close());
  log.value().reset();
  auto ro = event_log::open_read_only(d.sub("log"), o);
  ASSERT_OK(ro);
  // The whole stream, in order, every payload checked.
  auto all = ro.value()->read_stream(stream_id::from_u64(1));
  ASSERT_OK(all);
  uint64_t n = 0;
  while (true) {
    auto more = all->next(v);
    ASSERT_OK(more);
    if (!*more) break;
    ++n;
    uint64_t x;
    std::memcpy(&x, v.payload.data(), 8);
    ASSERT_EQ(v.version, n);
    ASSERT_EQ(x, n);
  }
  EXPECT_EQ(n, kMillion);
  // Short reads anywhere in it, both directions.
  std::mt19937_64 rng(9);
  for (int k = 0; k < 100; ++k) {
    const uint64_t from = 1 + rng() % kMillion;
    auto fwd = ro.value()->read_stream(stream_id::from_u64(1), from, read_direction::forward, 3);
    ASSERT_OK(fwd);
    for (uint64_t j = 0; j < 3 && from + j <= kMillion; ++j) {
      auto more = fwd->next(v);
      ASSERT_OK(more);
      ASSERT_TRUE(*more);
      ASSERT_EQ(v.version, from + j);
    }
    auto back = ro.value()->read_stream(stream_id::from_u64(1), from, read_direction::backward, 3);
    ASSERT_OK(back);
    for (uint64_t j = 0; j < 3 && from > j; ++j) {
      auto more = back->next(v);
      ASSERT_OK(more);
      ASSERT_TRUE(*more);
      ASSERT_EQ(v.version, from - j);
    }
  }
}

}  // namespace

TEST(StreamIndex, PositionOfASequenceOverSealedSegmentsAndTheTail) {
  // position_of against the positions the appends returned: across many
  // sealed (indexed) segments, in the unsealed tail, from the writer and from
  // a read-only log; the end of the log for next_sequence, not_found past it.
  temp_dir d;
  log_options o;
  o.segment_bytes = kSeg;
  auto log = event_log::create(d.sub("log"), o);
  ASSERT_OK(log);
  std::mt19937_64 rng(23);
  std::vector<uint64_t> pos;  // by sequence
  const uint64_t n = scaled(12000);
  std::vector<std::byte> payload(200);
  for (uint64_t i = 0; i < n; ++i) {
    event_data e[3];
    const size_t k = 1 + rng() % 3;  // batches too: sequences follow call order
    for (size_t j = 0; j < k; ++j) e[j].payload = std::span(payload).first(rng() % 200);
    auto r = log.value()->append(stream_id::from_u64(rng() % 50), expected_version::any(),
                                 std::span<const event_data>(e, k));
    ASSERT_OK(r);
    auto rd = log.value()->read(r->first);
    for (size_t j = 0; j < k; ++j) {
      event_view v;
      auto more = rd.next(v);
      ASSERT_OK(more);
      ASSERT_TRUE(*more);
      ASSERT_EQ(v.sequence.value, pos.size());
      pos.push_back(v.position.value);
    }
  }
  auto check = [&](const event_log& l) {
    for (int k = 0; k < 400; ++k) {
      const uint64_t s = k < 5 ? uint64_t(k) : k < 10 ? pos.size() - 1 - (k - 5) : rng() % pos.size();
      auto p = l.position_of(sequence{s});
      ASSERT_OK(p);
      ASSERT_EQ(p->value, pos[s]) << "sequence " << s;
    }
    auto end = l.position_of(sequence{pos.size()});
    ASSERT_OK(end);
    EXPECT_EQ(end->value, l.committed_position().value);
    auto past = l.position_of(sequence{pos.size() + 1});
    ASSERT_FALSE(past.ok());
    EXPECT_EQ(past.error().code(), errc::not_found);
  };
  check(*log.value());
  ASSERT_OK(log.value()->close());
  log.value().reset();
  auto ro = event_log::open_read_only(d.sub("log"), o);
  ASSERT_OK(ro);
  check(*ro.value());
  // An empty log: sequence 0 is its end.
  auto empty = event_log::create(d.sub("empty"), o);
  ASSERT_OK(empty);
  auto p0 = empty.value()->position_of(sequence{0});
  ASSERT_OK(p0);
  EXPECT_EQ(p0->value, empty.value()->committed_position().value);
}
