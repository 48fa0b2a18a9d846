// Merged replays (replay::run_merged) against one thread reading the log in
// order. The projection under test keeps every event it applied, in apply
// order, and merges by appending: merging out of order, twice, or an item
// past a cut shows as a wrong list, not only as a wrong count. Every io
// backend, 1-4 threads, random ranges and chunk sizes, a damaged record
// anywhere, a sequence gap where pieces meet, a projection's error, a failing
// merge, a filter, and checkpoints.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "replay_log_util.h"
#include "test_util.h"
#include "uring_test_util.h"
#include "varve/replay.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;
using namespace varve_test::replay_logs;

// One applied event: its sequence and a digest of its stream, type and payload.
struct seen {
  uint64_t sequence = 0, digest = 0;
  bool operator==(const seen&) const = default;
};
std::ostream& operator<<(std::ostream& os, const seen& s) { return os << "#" << s.sequence; }

uint64_t digest(std::string_view stream, uint32_t type, std::span<const std::byte> payload) {
  return mix64(fnv1a(std::as_bytes(std::span(stream.data(), stream.size()))) ^ fnv1a(payload) ^ type);
}

struct trace {
  std::vector<seen> events;
  uint64_t fail_at = UINT64_MAX;  // the sequence whose apply fails
  bool fail_merge = false;        // merging a state with this sequence in it fails
  uint64_t merge_fail_seq = UINT64_MAX;

  status apply(const event_view& e) {
    if (e.sequence.value == fail_at) return status(errc::invalid_argument, "cannot apply event");
    events.push_back({e.sequence.value, digest(e.stream, e.type, e.payload)});
    return {};
  }
  status merge(trace&& later) {
    for (const seen& s : later.events)
      if (s.sequence == merge_fail_seq) return status(errc::invalid_argument, "cannot merge");
    events.insert(events.end(), later.events.begin(), later.events.end());
    return {};
  }
  void save(std::string& out) const {
    out.append(reinterpret_cast<const char*>(events.data()), events.size() * sizeof(seen));
  }
  status load(std::span<const std::byte> in) {
    if (in.size() % sizeof(seen)) return status(errc::corruption, "trace state: bad length");
    events.resize(in.size() / sizeof(seen));
    std::memcpy(events.data(), in.data(), in.size());
    return {};
  }
};
// The same over event_refs.
struct ref_trace : trace {
  status apply(const event_ref& e) {
    if (e.sequence().value == fail_at) return status(errc::invalid_argument, "cannot apply event");
    events.push_back({e.sequence().value, digest(e.stream(), e.type(), e.payload())});
    return {};
  }
  status merge(ref_trace&& later) { return trace::merge(std::move(later)); }
};

// The model: one thread, log order, [from, to), the same filter.
std::vector<seen> reference(const event_log& log, position from, position to, const event_filter& f = {}) {
  std::vector<seen> out;
  log_reader r = log.read(from);
  event_view v;
  while (r.where() < to) {
    auto got = r.next(v);
    EXPECT_TRUE(got.ok()) << describe(got);
    if (!got.ok() || !got.value() || v.position >= to) break;
    if (!f.empty() && !f.matches(v)) continue;
    out.push_back({v.sequence.value, digest(v.stream, v.type, v.payload)});
  }
  return out;
}

struct merged_run : detail::replay_summary {
  std::vector<seen> events;
  size_t states = 0;
  explicit operator bool() const { return error.ok(); }
};
template <class P>
merged_run run_as(replay& rp, const P& proto) {
  auto r = rp.run_merged([&proto] { return proto; });
  merged_run out;
  static_cast<detail::replay_summary&>(out) = r;
  out.states = r.states.size();
  if (!r.states.empty()) out.events = r.states[0].events;
  return out;
}
merged_run run_merged(replay rp, bool refs, uint64_t fail_at = UINT64_MAX, uint64_t merge_fail = UINT64_MAX) {
  trace t;
  t.fail_at = fail_at;
  t.merge_fail_seq = merge_fail;
  if (!refs) return run_as(rp, t);
  ref_trace rt;
  static_cast<trace&>(rt) = t;
  return run_as(rp, rt);
}

class MergedReplay : public backend_test {};

TEST_P(MergedReplay, MatchesTheLogInOrder) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    temp_dir d;
    fill_log(d.path(), seed, 2500);
    auto log = open_ro(d.path());
    ASSERT_TRUE(log);
    const auto pos = record_positions(*log);
    std::mt19937_64 rng(seed * 13);
    for (int round = 0; round < 6; ++round) {
      const uint32_t W = 1 + round % 4;
      const uint32_t chunk = std::array<uint32_t, 3>{4096, 64 * 1024, 1 << 20}[rng() % 3];
      position from{}, to = log->committed_position();
      if (round % 2 == 1) {
        from = pos[rng() % pos.size()];
        to = pos[pos.size() / 2 + rng() % (pos.size() / 2)];
        if (to < from) std::swap(from, to);
      }
      SCOPED_TRACE("W=" + std::to_string(W) + " chunk=" + std::to_string(chunk) +
                   " from=" + std::to_string(from.value) + " to=" + std::to_string(to.value));
      const auto want = reference(*log, from, to);
      for (bool refs : {false, true}) {
        SCOPED_TRACE(refs ? "over refs" : "over views");
        const merged_run r =
            run_merged(replay(*log).from(from).to(to).threads(W).io(GetParam()).chunk_bytes(chunk), refs);
        ASSERT_TRUE(r) << describe(r.error);
        EXPECT_EQ(r.io, GetParam());
        EXPECT_EQ(r.reached, to);
        EXPECT_EQ(r.states, 1u);
        EXPECT_EQ(r.partitions, 1u);
        EXPECT_EQ(r.threads, W);
        EXPECT_EQ(r.events, want);
        EXPECT_EQ(r.events_applied, want.size());
      }
    }
  }
}

// A damaged byte anywhere in any record (a piece's first record included):
// the merged state holds exactly the events before it, on every thread
// count - items after the cut were folded by other workers but never merged.
TEST_P(MergedReplay, ADamagedRecordAnywhereIsTheExactCut) {
  temp_dir d;
  fill_log(d.path(), 31, 2500);
  const record_spans spans = spans_of(d.path());
  std::mt19937_64 rng(17);
  for (int trial = 0; trial < 8; ++trial) {
    temp_dir c;
    copy_dir(d.path(), c.path());
    const damage dmg = damage_a_record(c.path(), spans, rng, trial < 3);  // 0-2: a piece's first record
    const uint64_t bad = dmg.record, at = dmg.offset;
    auto log = open_ro(c.path());
    ASSERT_TRUE(log);
    const auto want = reference(*log, {}, position{bad});
    for (uint32_t W : {1u, 2u, 3u, 4u}) {
      const uint32_t chunk = rng() % 2 ? 4096 : (1u << 20);
      SCOPED_TRACE("trial " + std::to_string(trial) + ": byte " + std::to_string(at) + " of the record at " +
                   std::to_string(bad) + ", W=" + std::to_string(W) + " chunk=" + std::to_string(chunk));
      const merged_run r = run_merged(replay(*log).threads(W).io(GetParam()).chunk_bytes(chunk), trial % 2);
      ASSERT_FALSE(r);
      EXPECT_EQ(r.error.code(), errc::corruption) << describe(r.error);
      EXPECT_NE(r.error.message().find(segment_file_name(bad / kSegmentBytes)), std::string::npos)
          << r.error.message();
      EXPECT_EQ(r.reached.value, bad);
      EXPECT_EQ(r.events, want);
      EXPECT_EQ(r.events_applied, want.size());
    }
  }
}

// A record that checks out alone but skips a sequence number, where two
// pieces meet: the later piece's state is not merged.
TEST_P(MergedReplay, ASequenceGapWherePiecesMeetIsTheCut) {
  temp_dir d;
  fill_log(d.path(), 41, 2500);
  const record_spans spans = spans_of(d.path());
  const size_t k = index_sample(spans.pos, 5);
  ASSERT_LT(k, spans.pos.size());
  const uint64_t bad = spans.pos[k].value;
  const uint64_t seq = skip_a_sequence(d.path(), bad);
  auto log = open_ro(d.path());
  ASSERT_TRUE(log);
  const auto want = reference(*log, {}, position{bad});
  for (uint32_t W : {2u, 3u})
    for (uint32_t chunk : {4096u, 1u << 20}) {
      SCOPED_TRACE("W=" + std::to_string(W) + " chunk=" + std::to_string(chunk));
      const merged_run r = run_merged(replay(*log).threads(W).io(GetParam()).chunk_bytes(chunk), false);
      ASSERT_FALSE(r);
      EXPECT_EQ(r.error.code(), errc::corruption) << describe(r.error);
      EXPECT_NE(r.error.message().find("sequence " + std::to_string(seq)), std::string::npos) << r.error.message();
      EXPECT_EQ(r.reached.value, bad);
      EXPECT_EQ(r.events, want);
    }
}

INSTANTIATE_TEST_SUITE_P(Io, MergedReplay, testing::Values(io_backend::uring, io_backend::mmap, io_backend::pread),
                         [](const auto& info) { return std::string(to_string(info.param)); });

class MergedReplayTest : public testing::Test {
 protected:
  void SetUp() override {
    fill_log(d_.path(), 21, 3000);
    log_ = open_ro(d_.path());
    ASSERT_TRUE(log_);
    pos_ = record_positions(*log_);
  }
  temp_dir d_;
  std::unique_ptr<event_log> log_;
  std::vector<position> pos_;
};

// A projection's error stops the merged state at that event: everything
// before it, nothing after, and `reached` is the event.
TEST_F(MergedReplayTest, ProjectionErrorIsTheCut) {
  const uint64_t k = 1234;
  const auto want = reference(*log_, {}, pos_[k]);
  for (uint32_t W : {1u, 2u, 3u})
    for (bool refs : {false, true}) {
      SCOPED_TRACE("W=" + std::to_string(W) + (refs ? " over refs" : " over views"));
      const merged_run r = run_merged(replay(*log_).threads(W).chunk_bytes(4096), refs, k);
      ASSERT_FALSE(r);
      EXPECT_EQ(r.error.message(), "cannot apply event");
      EXPECT_EQ(r.reached, pos_[k]);
      EXPECT_EQ(r.events, want);
    }
}

// A merge that fails: the replay stops with its error, at the start of the
// item that could not be merged at best, and says so.
TEST_F(MergedReplayTest, AFailingMergeStopsTheReplay) {
  const uint64_t k = 2000;
  const merged_run r = run_merged(replay(*log_).threads(2).chunk_bytes(4096), false, UINT64_MAX, k);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error.message(), "cannot merge");
  EXPECT_LE(r.reached, pos_[k]);
  EXPECT_GT(r.reached.value, 0u);
  // Every event below `reached` is in the state, in order.
  const auto below = reference(*log_, {}, r.reached);
  ASSERT_GE(r.events.size(), below.size());
  EXPECT_TRUE(std::equal(below.begin(), below.end(), r.events.begin()));
}

TEST_F(MergedReplayTest, AProjectionThatThrowsStopsCleanly) {
  struct thrower {
    uint64_t n = 0;
    void apply(const event_view& e) {
      if (e.sequence.value == 900) throw std::runtime_error("boom");
      ++n;
    }
    void merge(thrower&& later) { n += later.n; }
  };
  for (uint32_t W : {1u, 2u}) {
    auto r = replay(*log_).threads(W).chunk_bytes(4096).run_merged([] { return thrower{}; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error.message(), "projection threw: boom");
    EXPECT_EQ(r.reached, pos_[900]);
    ASSERT_EQ(r.states.size(), 1u);
    EXPECT_EQ(r.states[0].n, 900u);
  }
}

// identity() throwing when an item is taken: the replay stops there, with
// the items before it merged and nothing of that item or later ones.
TEST_F(MergedReplayTest, AnIdentityThatThrowsStopsCleanly) {
  std::atomic<int> calls{0};
  auto r = replay(*log_).threads(2).chunk_bytes(4096).run_merged([&] {
    // 1 the result, 8 the ring slots' states, then one per item taken.
    if (++calls == 14) throw std::runtime_error("no state");
    return trace{};
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error.message(), "projection threw: no state");
  EXPECT_GT(r.reached.value, 0u);
  EXPECT_LT(r.reached, log_->committed_position());
  ASSERT_EQ(r.states.size(), 1u);
  EXPECT_EQ(r.states[0].events, reference(*log_, {}, r.reached));
}

TEST_F(MergedReplayTest, FilterSkipsEventsAndSegments) {
  event_filter rare;
  rare.types = {99};
  const auto want = reference(*log_, {}, log_->committed_position(), rare);
  ASSERT_GT(want.size(), 0u);
  for (uint32_t W : {1u, 2u, 3u}) {
    const merged_run r = run_merged(replay(*log_).filter(rare).threads(W).chunk_bytes(4096), W == 2);
    ASSERT_TRUE(r) << describe(r.error);
    EXPECT_EQ(r.events, want);
    EXPECT_EQ(r.events_applied, want.size());
    EXPECT_GT(r.segments_skipped, 0u);
  }
}

// Checkpoints hold the one merged state; a resume goes on from it and
// applies every event once.
TEST_F(MergedReplayTest, CheckpointThenResume) {
  const auto all = reference(*log_, {}, log_->committed_position());
  checkpoint_store store(d_.sub("proj"), "trace");
  const position half = pos_[pos_.size() / 2];
  auto first = replay(*log_).to(half).threads(2).chunk_bytes(4096).checkpoint(store, 500).run_merged(
      [] { return trace{}; });
  ASSERT_TRUE(first) << describe(first.error);
  EXPECT_GE(first.checkpoints, 2u);
  auto ck = store.load(0, 1);
  EXPECT_EQ(ck.error().code(), errc::invalid_argument);  // another log's id is refused
  auto second = replay(*log_).threads(3).chunk_bytes(4096).checkpoint(store).resume().run_merged(
      [] { return trace{}; });
  ASSERT_TRUE(second) << describe(second.error);
  EXPECT_EQ(second.from, half);
  ASSERT_EQ(second.states.size(), 1u);
  EXPECT_EQ(second.states[0].events, all);
  EXPECT_EQ(second.events_applied, all.size() - reference(*log_, {}, half).size());
  // A partitioned replay cannot take the merged state for its partitions.
  struct partitioned : trace {};
  auto other = replay(*log_).partitions(4).checkpoint(store).resume().run([](uint32_t) { return partitioned{}; });
  EXPECT_EQ(other.error.code(), errc::invalid_argument) << describe(other.error);
}

// A trace that cancels its replay when it applies event 500.
struct cancelling : trace {
  replay_cancel* cancel = nullptr;
  status apply(const event_view& e) {
    if (e.sequence.value == 500) cancel->cancel();
    return trace::apply(e);
  }
  void merge(cancelling&& later) { (void)trace::merge(std::move(later)); }
};

// A cancel (here from inside the projection, at event 500) stops at a
// consistent cut: the state holds exactly the events below `reached`.
TEST_F(MergedReplayTest, CancelStopsAtAConsistentCut) {
  for (uint32_t W : {1u, 2u, 3u}) {
    replay_cancel cancel;
    cancelling proto;
    proto.cancel = &cancel;
    auto r = replay(*log_).threads(W).chunk_bytes(4096).cancel_with(cancel).run_merged([&] { return proto; });
    ASSERT_EQ(r.error.code(), errc::cancelled) << describe(r.error);
    EXPECT_GT(r.reached, pos_[500]);
    EXPECT_LT(r.reached, log_->committed_position());
    ASSERT_EQ(r.states.size(), 1u);
    EXPECT_EQ(r.states[0].events, reference(*log_, {}, r.reached));
    EXPECT_EQ(r.events_applied, r.states[0].events.size());
  }
}

// A cancel stops every worker's taking, not only the calling thread's: here
// the calling thread stalls between its steps once the cancel is set (in the
// progress callback, which it runs; on a busy machine it may simply not run
// for a while), and the other workers must not take and finish the rest of
// the range meanwhile (they did, seen in CI under load: the replay said
// "cancelled" having read everything). Partitioned and merged.
TEST_F(MergedReplayTest, ACancelStopsEveryWorkerWhileTheCallerIsBusy) {
  for (bool merged : {false, true}) {
    for (uint32_t W : {2u, 3u}) {
      SCOPED_TRACE(std::string(merged ? "merged" : "partitioned") + ", W=" + std::to_string(W));
      replay_cancel cancel;
      cancelling proto;
      proto.cancel = &cancel;
      bool stalled = false;
      auto rp = replay(*log_).threads(W).io(io_backend::mmap).chunk_bytes(4096).cancel_with(cancel).on_progress(
          [&](const replay_progress&) {
            if (cancel.cancelled() && !stalled) {
              stalled = true;
              std::this_thread::sleep_for(std::chrono::milliseconds(300));
            }
          },
          std::chrono::milliseconds(0));
      std::vector<seen> got;
      detail::replay_summary r;
      if (merged) {
        auto m = rp.run_merged([&] { return proto; });
        r = m;
        if (!m.states.empty()) got = m.states[0].events;
      } else {
        auto p = rp.partitions(4).run([&](uint32_t) { return proto; });
        r = p;
        for (const auto& st : p.states) got.insert(got.end(), st.events.begin(), st.events.end());
        std::sort(got.begin(), got.end(), [](const seen& a, const seen& b) { return a.sequence < b.sequence; });
      }
      ASSERT_EQ(r.error.code(), errc::cancelled) << describe(r.error);
      EXPECT_GT(r.reached, pos_[500]);
      // The items in flight when the cancel came are finished (at most a
      // ring of them, a few KiB each), nothing past them.
      EXPECT_LT(r.reached, pos_[pos_.size() / 2]);
      EXPECT_EQ(got, reference(*log_, {}, r.reached));
    }
  }
}

}  // namespace
