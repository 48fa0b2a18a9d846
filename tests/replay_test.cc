// The partitioned replay scheduler (varve/replay.h) against the simplest
// model there is: one thread folding log_reader's events in log order. Random
// logs over many small segments, random partition and thread counts, random
// ranges, every io backend; then the ways a replay stops early (cancel, a
// projection's error, a corrupt record) and checkpoints, including a process
// SIGKILLed while it replays and checkpoints.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <optional>
#include <random>
#include <set>
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

// Keeps a busy loop from being optimised away. Atomic: partitions apply on
// several threads, and a plain (even volatile) global is a data race that
// TSan reports.
std::atomic<uint64_t> g_sink;

// Per stream: how many events, the last version, and a hash over (sequence,
// payload) in apply order, so a reordered, missing or doubled event shows.
struct stream_fold {
  uint64_t count = 0;
  stream_version last = 0;
  uint64_t hash = 0;
  bool operator==(const stream_fold&) const = default;
};

struct fold_projection {
  std::map<std::string, stream_fold> streams;
  uint64_t events = 0;
  bool filtered = false;  // a filter may leave gaps in a stream's versions

  status apply(const event_view& e) { return fold(e.stream, e.version, e.payload, e.sequence.value); }
  status fold(std::string_view stream, stream_version version, std::span<const std::byte> payload, uint64_t seq) {
    stream_fold& s = streams[std::string(stream)];
    // Inside the projection: a stream's events must come in version order.
    if (s.last != 0 && (filtered ? version <= s.last : version != s.last + 1))
      return status(errc::corruption, "stream " + std::string(stream) + ": version " +
                                          std::to_string(version) + " after " +
                                          std::to_string(s.last));
    s.last = version;
    ++s.count;
    s.hash = mix64(s.hash ^ fnv1a(payload) ^ (seq * 0x9E3779B97F4A7C15ull));
    ++events;
    return {};
  }
  void save(std::string& out) const {
    auto put = [&](uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); };
    put(events);
    put(streams.size());
    for (const auto& [k, s] : streams) {
      put(k.size());
      out += k;
      put(s.count);
      put(s.last);
      put(s.hash);
    }
  }
  status load(std::span<const std::byte> in) {
    size_t off = 0;
    auto get = [&](uint64_t& v) {
      if (in.size() - off < 8) return false;
      std::memcpy(&v, in.data() + off, 8);
      off += 8;
      return true;
    };
    uint64_t n = 0;
    streams.clear();
    if (!get(events) || !get(n)) return status(errc::corruption, "short state");
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t len = 0;
      if (!get(len) || in.size() - off < len) return status(errc::corruption, "short state");
      std::string k(reinterpret_cast<const char*>(in.data() + off), len);
      off += len;
      stream_fold s;
      if (!get(s.count) || !get(s.last) || !get(s.hash)) return status(errc::corruption, "short");
      streams[k] = s;
    }
    return {};
  }
};

// The same fold over event_refs (the replay decodes refs instead of views).
struct fold_ref_projection : fold_projection {
  status apply(const event_ref& e) { return fold(e.stream(), e.version(), e.payload(), e.sequence().value); }
};

// Folds the partitions into one map, checking each stream lives in exactly one.
template <class P>
std::map<std::string, stream_fold> merge(const std::vector<P>& parts) {
  std::map<std::string, stream_fold> all;
  for (const auto& p : parts)
    for (const auto& [k, s] : p.streams) {
      EXPECT_TRUE(all.emplace(k, s).second) << "stream " << k << " in two partitions";
    }
  return all;
}

// The model: one thread, log order, [from, to), the same filter.
std::map<std::string, stream_fold> reference(const event_log& log, position from, position to,
                                             const event_filter& f = {}) {
  fold_projection one;
  one.filtered = !f.empty();
  log_reader r = log.read(from);
  event_view v;
  while (r.where() < to) {
    auto got = r.next(v);
    EXPECT_TRUE(got.ok()) << describe(got);
    if (!got.ok() || !got.value()) break;
    if (v.position >= to) break;
    if (!f.empty() && !f.matches(v)) continue;
    EXPECT_TRUE(one.apply(v).ok());
  }
  return one.streams;
}

// A replay of the fold over views or over refs: what it said, and the
// partitions' states merged.
struct fold_run : detail::replay_summary {
  std::map<std::string, stream_fold> merged;
  uint64_t folded = 0;  // the partitions' event counts, summed
  uint32_t states = 0;
  explicit operator bool() const { return error.ok(); }
};
template <class P>
fold_run folded(replay& rp, bool filtered) {
  auto r = rp.run([filtered](uint32_t) {
    P p;
    p.filtered = filtered;
    return p;
  });
  fold_run out;
  static_cast<detail::replay_summary&>(out) = r;
  out.merged = merge(r.states);
  out.folded = r.reduce(uint64_t{0}, [](uint64_t a, const fold_projection& p) { return a + p.events; });
  out.states = static_cast<uint32_t>(r.states.size());
  return out;
}
fold_run run_fold(replay rp, bool refs, bool filtered = false) {
  return refs ? folded<fold_ref_projection>(rp, filtered) : folded<fold_projection>(rp, filtered);
}

class ReplayBackends : public backend_test {};

TEST_P(ReplayBackends, MatchesSingleThreadedFold) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    temp_dir d;
    fill_log(d.path(), seed, 2500);
    auto log = open_ro(d.path());
    ASSERT_TRUE(log);
    const auto pos = record_positions(*log);
    std::mt19937_64 rng(seed * 7);
    for (int round = 0; round < 4; ++round) {
      const uint32_t P = std::array<uint32_t, 6>{1, 2, 3, 7, 16, 64}[rng() % 6];
      const uint32_t W = 1 + rng() % 4;
      const uint32_t chunk = std::array<uint32_t, 3>{4096, 64 * 1024, 1 << 20}[rng() % 3];
      position from{}, to = log->committed_position();
      if (round % 2 == 1) {
        from = pos[rng() % pos.size()];
        to = pos[pos.size() / 2 + rng() % (pos.size() / 2)];
        if (to < from) std::swap(from, to);
      }
      SCOPED_TRACE("P=" + std::to_string(P) + " W=" + std::to_string(W) +
                   " chunk=" + std::to_string(chunk) + " from=" + std::to_string(from.value) +
                   " to=" + std::to_string(to.value));
      const auto want = reference(*log, from, to);
      uint64_t n = 0;
      for (const auto& [k, s] : want) n += s.count;
      for (bool refs : {false, true}) {
        SCOPED_TRACE(refs ? "over refs" : "over views");
        const fold_run r = run_fold(
            replay(*log).from(from).to(to).partitions(P).threads(W).io(GetParam()).chunk_bytes(chunk), refs);
        ASSERT_TRUE(r) << describe(r.error);
        EXPECT_EQ(r.io, GetParam());
        EXPECT_EQ(r.reached, to);
        EXPECT_EQ(r.states, P);
        EXPECT_EQ(r.merged, want);
        EXPECT_EQ(r.events_applied, n);
        EXPECT_EQ(r.folded, n);
      }
    }
  }
}

TEST_P(ReplayBackends, CorruptRecordStopsAtAConsistentCut) {
  temp_dir d;
  fill_log(d.path(), 11, 2000);
  uint64_t bad_pos = 0;
  {
    auto log = open_ro(d.path());
    const auto pos = record_positions(*log);
    bad_pos = pos[pos.size() / 2].value;
  }
  const uint64_t seg = bad_pos / kSegmentBytes;
  flip_byte(segment_path(d.path(), seg), bad_pos % kSegmentBytes + 40);  // its timestamp
  auto log = open_ro(d.path());
  auto r = replay(*log).partitions(8).threads(3).io(GetParam()).chunk_bytes(8192)
               .run([](uint32_t) { return fold_projection{}; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error.code(), errc::corruption) << describe(r.error);
  EXPECT_NE(r.error.message().find(segment_file_name(seg)), std::string::npos) << r.error.message();
  EXPECT_NE(r.error.message().find(std::to_string(bad_pos % kSegmentBytes)), std::string::npos)
      << r.error.message();
  EXPECT_LE(r.reached.value, bad_pos);
  // Every partition applied exactly the events below `reached`: nothing
  // unvalidated, nothing past the cut.
  EXPECT_EQ(merge(r.states), reference(*log, {}, r.reached));
}

// Whatever byte of whatever record is damaged - a checksum, a length, a
// position, a payload byte, the first record of a piece the segment index
// cut - every thread count stops exactly at that record: the error names it,
// `reached` is its position, and every partition holds exactly the events
// below it (workers verify the events they take, so this is the check that
// no worker applies past a record another worker found bad).
TEST_P(ReplayBackends, ADamagedRecordAnywhereIsTheExactCut) {
  temp_dir d;
  fill_log(d.path(), 31, 2500);
  const record_spans spans = spans_of(d.path());
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 8; ++trial) {
    temp_dir c;
    copy_dir(d.path(), c.path());
    // Trials 0-3: a segment's 65th event (an index sample: a piece's first
    // record when pieces are small); the rest anywhere.
    const damage dmg = damage_a_record(c.path(), spans, rng, trial < 4);
    const uint64_t bad = dmg.record, at = dmg.offset;
    auto log = open_ro(c.path());
    ASSERT_TRUE(log);
    const auto want = reference(*log, {}, position{bad});
    for (uint32_t W : {1u, 2u, 3u}) {
      const uint32_t chunk = rng() % 2 ? 4096 : (1u << 20);
      SCOPED_TRACE("trial " + std::to_string(trial) + ": byte " + std::to_string(at) +
                   " of the record at " + std::to_string(bad) + ", W=" + std::to_string(W) +
                   " chunk=" + std::to_string(chunk));
      for (bool refs : {false, true}) {
        SCOPED_TRACE(refs ? "over refs" : "over views");
        const fold_run r = run_fold(replay(*log).partitions(7).threads(W).io(GetParam()).chunk_bytes(chunk), refs);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error.code(), errc::corruption) << describe(r.error);
        EXPECT_NE(r.error.message().find(segment_file_name(bad / kSegmentBytes)), std::string::npos)
            << r.error.message();
        EXPECT_EQ(r.reached.value, bad);
        EXPECT_EQ(r.merged, want);
      }
    }
  }
}

// A record that checks out on its own but breaks the dense sequence, where
// two pieces meet (a sealed segment's index sample): the owner of the later
// piece cannot see it inside its piece, so the join check must, before
// anything of that piece is applied; chunk readers see it in their walk.
TEST_P(ReplayBackends, ASequenceGapWherePiecesMeetIsTheCut) {
  temp_dir d;
  fill_log(d.path(), 41, 2500);
  std::vector<position> pos;
  {
    auto log = open_ro(d.path());
    pos = record_positions(*log);
  }
  // The 65th event of segment 5 (an index sample) skips a sequence number.
  const size_t k = index_sample(pos, 5);
  ASSERT_LT(k, pos.size());
  const uint64_t bad = pos[k].value;
  const uint64_t seq = skip_a_sequence(d.path(), bad);
  auto log = open_ro(d.path());
  ASSERT_TRUE(log);
  const auto want = reference(*log, {}, position{bad});
  for (uint32_t W : {1u, 2u, 3u})
    for (uint32_t chunk : {4096u, 1u << 20}) {
      SCOPED_TRACE("W=" + std::to_string(W) + " chunk=" + std::to_string(chunk));
      for (bool refs : {false, true}) {
        SCOPED_TRACE(refs ? "over refs" : "over views");
        const fold_run r = run_fold(replay(*log).partitions(5).threads(W).io(GetParam()).chunk_bytes(chunk), refs);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error.code(), errc::corruption) << describe(r.error);
        EXPECT_NE(r.error.message().find("sequence " + std::to_string(seq)), std::string::npos)
            << r.error.message();
        EXPECT_EQ(r.reached.value, bad);
        EXPECT_EQ(r.merged, want);
      }
    }
}

// One stream takes most events: its group makes every item's owner wait,
// and the result is still the single-threaded fold, in version order.
TEST_P(ReplayBackends, AHotStreamKeepsItsOrder) {
  temp_dir d;
  {
    log_options o;
    o.segment_bytes = kSegmentBytes;
    auto log = event_log::create(d.path(), o);
    ASSERT_TRUE(log.ok()) << describe(log);
    std::mt19937_64 rng(9);
    for (int i = 0; i < 6000; ++i) {
      const std::string s = rng() % 100 < 85 ? "hot" : "cold-" + std::to_string(rng() % 40);
      owned_event e;
      e.type = uint32_t(rng() % 4);
      e.payload = random_bytes(rng, rng() % 200);
      std::vector<owned_event> one{e};
      auto data = as_data(one);
      ASSERT_TRUE(log.value()->append(stream_id(s), expected_version::any(), data).ok());
    }
    ASSERT_TRUE(log.value()->close().ok());
  }
  auto log = open_ro(d.path());
  ASSERT_TRUE(log);
  const auto want = reference(*log, {}, log->committed_position());
  for (uint32_t W : {2u, 4u})
    for (bool refs : {false, true}) {
      const fold_run r = run_fold(replay(*log).partitions(16).threads(W).io(GetParam()).chunk_bytes(4096), refs);
      ASSERT_TRUE(r) << describe(r.error);
      EXPECT_EQ(r.merged, want) << (refs ? "over refs" : "over views");
      EXPECT_EQ(r.events_applied, 6000u);
    }
}

INSTANTIATE_TEST_SUITE_P(Io, ReplayBackends,
                         testing::Values(io_backend::uring, io_backend::mmap, io_backend::pread),
                         [](const auto& info) { return std::string(to_string(info.param)); });

class ReplayTest : public testing::Test {
 protected:
  void SetUp() override {
    fill_log(d_.path(), 21, 3000);
    log_ = open_ro(d_.path());
    ASSERT_TRUE(log_);
  }
  temp_dir d_;
  std::unique_ptr<event_log> log_;
};

TEST_F(ReplayTest, StateAsOfATime) {
  const auto pos = record_positions(*log_);
  for (uint64_t k : {uint64_t{0}, uint64_t{1}, uint64_t{777}, uint64_t{2000}, pos.size() - 1,
                     pos.size() + 50}) {
    const uint64_t t = kT0 + 1000 * (k + 1);  // the fake clock stamps event k with this
    auto at = log_->position_at_time(t);
    ASSERT_TRUE(at.ok());
    auto r = replay(*log_).until(t).partitions(5).threads(2).run([](uint32_t) {
      return fold_projection{};
    });
    ASSERT_TRUE(r) << describe(r.error);
    EXPECT_EQ(r.to, at.value());
    const auto want = reference(*log_, {}, at.value());
    uint64_t n = 0;
    for (const auto& [key, s] : want) n += s.count;
    EXPECT_EQ(r.events_applied, n);
    EXPECT_EQ(merge(r.states), want);
  }
}

TEST_F(ReplayTest, FilterSkipsSegmentsWithoutTheWantedEvents) {
  event_filter rare;
  rare.types = {99};
  auto r = replay(*log_).filter(rare).partitions(4).threads(2).run([](uint32_t) {
    return fold_projection{{}, 0, true};
  });
  ASSERT_TRUE(r) << describe(r.error);
  const auto want = reference(*log_, {}, log_->committed_position(), rare);
  EXPECT_EQ(merge(r.states), want);
  EXPECT_GT(r.events_applied, 0u);
  // Type 99 sits in a few segments of the second half only.
  EXPECT_GT(r.segments_skipped, 10u);
  // Over refs (the filter sees views; the projection refs to them), 1 and 2 threads.
  for (uint32_t W : {1u, 2u}) {
    const fold_run f = run_fold(replay(*log_).filter(rare).partitions(4).threads(W), true, true);
    ASSERT_TRUE(f) << describe(f.error);
    EXPECT_EQ(f.merged, want) << W;
    EXPECT_EQ(f.events_applied, r.events_applied);
  }

  event_filter cat;
  cat.stream_prefixes = {"cart-"};
  cat.types = {1, 2, 3};
  auto c = replay(*log_).filter(cat).partitions(3).threads(2).run([](uint32_t) {
    return fold_projection{{}, 0, true};
  });
  ASSERT_TRUE(c) << describe(c.error);
  EXPECT_EQ(merge(c.states), reference(*log_, {}, log_->committed_position(), cat));
  for (const auto& p : c.states)
    for (const auto& [k, s] : p.streams) EXPECT_EQ(k.rfind("cart-", 0), 0u) << k;
}

TEST_F(ReplayTest, CancelStopsAtAConsistentCut) {
  replay_cancel cancel;
  int calls = 0;
  auto r = replay(*log_).partitions(6).threads(2).chunk_bytes(4096)
               .on_progress([&](const replay_progress&) {
                 if (++calls == 3) cancel.cancel();
               }, std::chrono::milliseconds(0))
               .cancel_with(cancel)
               .run([](uint32_t) { return fold_projection{}; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error.code(), errc::cancelled);
  EXPECT_GT(r.reached.value, 0u);
  EXPECT_LT(r.reached, log_->committed_position());
  EXPECT_EQ(merge(r.states), reference(*log_, {}, r.reached));
}

// Records the sequences it applied; fails on one chosen event.
struct failing_projection {
  uint64_t fail_at;
  std::vector<uint64_t> seqs;
  status apply(const event_view& e) {
    if (e.sequence.value == fail_at) return status(errc::invalid_argument, "cannot apply event");
    seqs.push_back(e.sequence.value);
    return {};
  }
};

// One thread applies each event in the pass that verifies it, several apply
// them later from their groups' lists: both paths report the error.
TEST_F(ReplayTest, ProjectionErrorStopsTheReplayAndSaysWhere) {
  const auto pos = record_positions(*log_);
  const uint64_t k = 1234;
  for (uint32_t threads : {1u, 3u}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    auto r = replay(*log_).partitions(8).threads(threads).chunk_bytes(4096).run([&](uint32_t) {
      return failing_projection{k, {}};
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error.code(), errc::invalid_argument);
    EXPECT_EQ(r.error.message(), "cannot apply event");
    EXPECT_LE(r.reached, pos[k]);
    std::set<uint64_t> applied;
    for (const auto& p : r.states) {
      EXPECT_TRUE(std::is_sorted(p.seqs.begin(), p.seqs.end()));
      applied.insert(p.seqs.begin(), p.seqs.end());
    }
    EXPECT_EQ(applied.count(k), 0u);
    for (uint64_t i = 0; i < pos.size() && pos[i] < r.reached; ++i)
      EXPECT_EQ(applied.count(i), 1u) << "event " << i << " below reached was not applied";
  }
}

TEST_F(ReplayTest, ProjectionThatThrowsStopsTheReplayCleanly) {
  struct thrower {
    status apply(const event_view& e) {
      if (e.sequence.value == 900) throw std::runtime_error("boom");
      return {};
    }
  };
  // A projection without a status (void apply) that throws, too.
  struct void_thrower {
    uint64_t n = 0;
    void apply(const event_view& e) {
      if (e.sequence.value == 900) throw 7;
      ++n;
    }
  };
  for (uint32_t threads : {1u, 2u}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    auto r = replay(*log_).partitions(4).threads(threads).run([](uint32_t) { return thrower{}; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error.message(), "projection threw: boom");
    EXPECT_LT(r.reached, log_->committed_position());
    auto v = replay(*log_).partitions(4).threads(threads).run([](uint32_t) { return void_thrower{}; });
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error.message(), "projection threw an exception");
    EXPECT_LT(v.reached, log_->committed_position());
    // One thread applies in log order: exactly the events before it (other
    // groups of several threads may have gone further; reached says where
    // every group is complete).
    uint64_t applied = 0;
    for (const auto& p : v.states) applied += p.n;
    if (threads == 1) {
      EXPECT_EQ(applied, 900u);
    }
  }
}

TEST_F(ReplayTest, CheckpointThenResumeAppliesEveryEventOnce) {
  // The cancel comes from the calling thread's 4th progress report. On a
  // loaded machine the other worker can take every item before that (the
  // replay then ends uncancelled, which is not what is tested here): then
  // the first replay runs again, into a fresh store.
  std::optional<checkpoint_store> store_slot;
  replay_result<fold_projection> first;
  for (int attempt = 0; attempt < 20; ++attempt) {
    store_slot.emplace(d_.sub("proj" + std::to_string(attempt)), "folds");
    replay_cancel cancel;
    int calls = 0;
    first = replay(*log_).partitions(5).threads(2).chunk_bytes(4096)
                .checkpoint(*store_slot, 300)
                .on_progress([&](const replay_progress&) {
                  if (++calls == 4) cancel.cancel();
                }, std::chrono::milliseconds(0))
                .cancel_with(cancel)
                .run([](uint32_t) { return fold_projection{}; });
    if (first.error.code() != errc::ok) break;
  }
  checkpoint_store& store = *store_slot;
  ASSERT_EQ(first.error.code(), errc::cancelled);
  EXPECT_GE(first.checkpoints, 1u);
  // The cancel saved a checkpoint at the cut it stopped at.
  auto ck = store.load(0, 5);
  ASSERT_EQ(ck.error().code(), errc::invalid_argument);  // another log's id is refused

  auto second = replay(*log_).partitions(5).threads(3).checkpoint(store).resume().run(
      [](uint32_t) { return fold_projection{}; });
  ASSERT_TRUE(second) << describe(second.error);
  EXPECT_EQ(second.from, first.reached);
  EXPECT_EQ(merge(second.states), reference(*log_, {}, log_->committed_position()));

  // Nothing left: a resume applies nothing and changes nothing.
  auto third = replay(*log_).partitions(5).threads(2).checkpoint(store).resume().run(
      [](uint32_t) { return fold_projection{}; });
  ASSERT_TRUE(third) << describe(third.error);
  EXPECT_EQ(third.events_applied, 0u);
  EXPECT_EQ(merge(third.states), reference(*log_, {}, log_->committed_position()));

  // Another partition count cannot reuse it.
  auto other = replay(*log_).partitions(4).checkpoint(store).resume().run(
      [](uint32_t) { return fold_projection{}; });
  EXPECT_EQ(other.error.code(), errc::invalid_argument) << describe(other.error);
}

// Read-your-writes on a projection's checkpoint: wait_until returns once a
// replay saved a checkpoint at or past the position, false at the timeout.
TEST_F(ReplayTest, WaitUntilReturnsOnceACheckpointHasPassedThePosition) {
  checkpoint_store store(d_.sub("proj"), "folds");
  const position end = log_->committed_position();
  ASSERT_OK_AND_ASSIGN(auto none, store.saved_position(*log_));
  EXPECT_FALSE(none.has_value());
  ASSERT_OK_AND_ASSIGN(bool early, store.wait_until(*log_, end, std::chrono::milliseconds(20)));
  EXPECT_FALSE(early) << "no checkpoint yet";

  std::thread projector([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto r = replay(*log_).partitions(3).threads(1).checkpoint(store, 500).run(
        [](uint32_t) { return fold_projection{}; });
    EXPECT_TRUE(r) << describe(r.error);
  });
  auto waited = store.wait_until(*log_, end, std::chrono::seconds(30));
  projector.join();
  ASSERT_OK(waited);
  EXPECT_TRUE(waited.value());
  ASSERT_OK_AND_ASSIGN(auto at, store.saved_position(*log_));
  ASSERT_TRUE(at.has_value());
  EXPECT_EQ(*at, end);

  // A damaged newest header: the older generation still answers, never the damaged one.
  const std::string newest = store.path();
  flip_byte(newest, 24);  // the position word: the header checksum fails
  ASSERT_OK_AND_ASSIGN(auto older, store.saved_position(*log_));
  ASSERT_TRUE(older.has_value());
  EXPECT_LT(older->value, end.value);
  ASSERT_OK_AND_ASSIGN(bool past, store.wait_until(*log_, end, std::chrono::milliseconds(20)));
  EXPECT_FALSE(past);
}

// A damaged generation is reported (file and offset) and skipped: the
// replay resumes from the older one, or from scratch when none is valid —
// never from state it cannot trust.
TEST_F(ReplayTest, DamagedCheckpointIsSkippedAndNamed) {
  const auto pos = record_positions(*log_);
  const std::string ck_dir = d_.sub("proj");
  checkpoint_store store(ck_dir, "folds");
  auto a = replay(*log_).to(pos[1000]).partitions(3).threads(2).checkpoint(store).run(
      [](uint32_t) { return fold_projection{}; });
  ASSERT_TRUE(a) << describe(a.error);
  auto b = replay(*log_).to(pos[2000]).partitions(3).threads(2).checkpoint(store).resume().run(
      [](uint32_t) { return fold_projection{}; });
  ASSERT_TRUE(b) << describe(b.error);
  const std::string newest = store.path();
  ASSERT_NE(newest.find("folds.00000000000000000002.ckpt"), std::string::npos) << newest;
  const auto want = reference(*log_, {}, log_->committed_position());
  const auto bytes = read_file(newest);
  for (uint64_t off = 0; off < bytes.size(); off += 1 + off / 6) {
    temp_dir copy;
    std::filesystem::copy(ck_dir, copy.path());
    checkpoint_store damaged(copy.path(), "folds");
    const std::string victim = damaged.path();
    flip_byte(victim, off, 0x10);
    auto r = replay(*log_).partitions(3).threads(2).checkpoint(damaged).resume().run(
        [](uint32_t) { return fold_projection{}; });
    ASSERT_TRUE(r) << "flip at " << off << ": " << describe(r.error);
    EXPECT_EQ(r.from, pos[1000]) << "flip at " << off << " went unnoticed";
    ASSERT_EQ(r.warnings.size(), 1u);
    EXPECT_NE(r.warnings[0].message().find(victim), std::string::npos) << r.warnings[0].message();
    EXPECT_EQ(merge(r.states), want);
  }
  // Both generations damaged: from scratch, both named.
  temp_dir copy;
  std::filesystem::copy(ck_dir, copy.path());
  for (const auto& e : std::filesystem::directory_iterator(copy.path())) flip_byte(e.path(), 60);
  checkpoint_store both(copy.path(), "folds");
  auto r = replay(*log_).partitions(3).threads(2).checkpoint(both).resume().run(
      [](uint32_t) { return fold_projection{}; });
  ASSERT_TRUE(r) << describe(r.error);
  EXPECT_EQ(r.from, position{});
  EXPECT_EQ(r.warnings.size(), 2u);
  EXPECT_EQ(merge(r.states), want);
  // Only `keep` (2) generations stay on disk.
  auto c = replay(*log_).partitions(3).threads(2).checkpoint(store).resume().run(
      [](uint32_t) { return fold_projection{}; });
  ASSERT_TRUE(c);
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(ck_dir)) ++files;
  EXPECT_EQ(files, 2u);
}

TEST_F(ReplayTest, RangeArguments) {
  auto all = replay(*log_).partitions(2).threads(1).run([](uint32_t) { return fold_projection{}; });
  ASSERT_TRUE(all);
  auto empty = replay(*log_).from(log_->committed_position()).run([](uint32_t) {
    return fold_projection{};
  });
  ASSERT_TRUE(empty) << describe(empty.error);
  EXPECT_EQ(empty.events_applied, 0u);
  const auto pos = record_positions(*log_);
  auto backwards = replay(*log_).from(pos[100]).to(pos[10]).run([](uint32_t) {
    return fold_projection{};
  });
  EXPECT_EQ(backwards.error.code(), errc::invalid_argument);
  // A projection without save/load cannot checkpoint: said, not ignored.
  checkpoint_store store(d_.sub("proj"), "seqs");
  auto nosave = replay(*log_).checkpoint(store).run([](uint32_t) {
    return failing_projection{~uint64_t{0}, {}};
  });
  EXPECT_EQ(nosave.error.code(), errc::invalid_argument) << describe(nosave.error);
}

// A replay that checkpoints as it goes is SIGKILLed at random moments, then
// resumed from its checkpoint; at the end every event was applied exactly
// once (the per-stream counts and hashes equal the single-threaded fold).
// The kill lands anywhere: inside apply, between two partitions' save(), in
// the middle of writing the checkpoint file, after it.
TEST_F(ReplayTest, KilledWhileCheckpointingLosesNothingAndRepeatsNothing) {
  const std::string dir = d_.path();
  const std::string ck_dir = d_.sub("proj");
  auto child_run = [&] {
    auto log = event_log::open_read_only(dir, {});
    if (!log.ok()) _exit(3);
    checkpoint_store store(ck_dir, "killed");
    struct slow : fold_projection {
      status apply(const event_view& e) {
        uint64_t x = e.sequence.value;
        for (int i = 0; i < 20000; ++i) x = mix64(x);
        g_sink.store(x, std::memory_order_relaxed);
        return fold_projection::apply(e);
      }
    };
    auto r = replay(*log.value()).partitions(6).threads(2).chunk_bytes(4096)
                 .checkpoint(store, 150).resume()
                 .run([](uint32_t) { return slow{}; });
    if (!r) std::fprintf(stderr, "child: %s\n", r.error.to_string().c_str());
    _exit(r ? 0 : 4);
  };
  std::mt19937_64 rng(5);
  checkpoint_store store(ck_dir, "killed");
  // Only a SIGKILL that ended a child after it had saved a checkpoint in that
  // run counts: kill() also succeeds on a child that already exited (a
  // zombie), and a child killed before its first save leaves nothing for the
  // next one to resume from. Without such a kill the test checks nothing of
  // what its name says.
  int killed = 0, killed_after_a_save = 0;
  for (int round = 0; round < 12; ++round) {
    log_.reset();  // no log (and no background thread) open across fork()
    const std::string newest_before = store.path();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) child_run();
    int st = 0;
    bool reaped = false;
    if (round % 2 == 0) {
      // Any moment: opening, replaying, inside the first save.
      std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 40000));
    } else {
      // A moment after this child's first save, however slow a sanitizer or
      // a loaded machine makes it (fixed delays alone once let every kill of a
      // run land before any save).
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (store.path() == newest_before && std::chrono::steady_clock::now() < deadline) {
        const pid_t w = waitpid(pid, &st, WNOHANG);
        ASSERT_GE(w, 0);
        if (w == pid) {
          reaped = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (!reaped) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    }
    if (!reaped) {
      ::kill(pid, SIGKILL);
      ASSERT_EQ(waitpid(pid, &st, 0), pid);
    }
    if (WIFSIGNALED(st)) {
      ASSERT_EQ(WTERMSIG(st), SIGKILL) << "the child died of signal " << WTERMSIG(st) << " by itself";
      ++killed;
      if (store.path() != newest_before) ++killed_after_a_save;
    } else {
      ASSERT_TRUE(WIFEXITED(st));
      ASSERT_EQ(WEXITSTATUS(st), 0) << "child failed";
    }
  }
  EXPECT_GT(killed_after_a_save, 0) << killed << " children were killed, none after a checkpoint of its own";
  log_ = open_ro(dir);
  auto last = replay(*log_).partitions(6).threads(2).checkpoint(store).resume().run(
      [](uint32_t) { return fold_projection{}; });
  ASSERT_TRUE(last) << describe(last.error);
  EXPECT_EQ(merge(last.states), reference(*log_, {}, log_->committed_position()));
}

}  // namespace
