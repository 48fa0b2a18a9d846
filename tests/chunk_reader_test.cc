// chunk_reader on each of its backends (uring, mmap, pread): every event it
// hands out is the one log_reader yields at that position — sequence, stream,
// payload bytes — for whole logs and ranges that start and stop mid-log and at
// segment boundaries, chunks smaller than a record, corrupt and torn data,
// skipped segments, the max_held limit, VARVE_IO and the fallback to pread.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/chunk_reader.h"
#include "engine/io/chunk_reader_internal.h"
#include "engine/log_access.h"
#include "base/record_format.h"
#include "test_util.h"
#include "uring_test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;

constexpr uint64_t k64KiB = 64 << 10;
constexpr uint64_t kEnd = ~uint64_t{0} >> 1;  // past any committed end: clamped

struct got_event {
  uint64_t position = 0;
  uint64_t sequence = 0;
  std::string stream;
  std::string payload;
};

struct read_result {
  std::vector<got_event> events;
  status err;  // ok unless open() or next() failed
  uint64_t chunks = 0;
  uint64_t skipped = 0;
  uint64_t where = 0;
  io_backend backend = io_backend::automatic;
  std::string broken;  // a chunk that breaks the interface's promises
};

got_event copy_of(const event_view& v) {
  return {v.position.value, v.sequence.value, std::string(v.stream), std::string(as_sv(v.payload))};
}

// Reads [from, to) through a chunk_reader, checking each chunk on the way and
// releasing chunks in a random order, never holding more than max_held.
read_result read_chunks(const std::shared_ptr<detail::shared_log>& log, uint64_t from, uint64_t to,
                        const chunk_reader_options& o, uint64_t seed = 1) {
  read_result out;
  auto rd = chunk_reader::open(log, position{from}, position{to}, o);
  if (!rd) {
    out.err = rd.error();
    return out;
  }
  chunk_reader& r = *rd.value();
  out.backend = r.backend();
  std::mt19937_64 rng(seed);
  std::vector<chunk> held;
  uint64_t prev_end = 0;
  while (true) {
    chunk c;
    auto n = r.next(c);
    if (!n) {
      out.err = n.error();
      break;
    }
    if (!n.value()) break;
    ++out.chunks;
    std::ostringstream why;
    if (c.position < prev_end) why << "chunk at " << c.position << " before the last end " << prev_end;
    if (c.end <= c.position) why << "empty chunk [" << c.position << ", " << c.end << ")";
    if (c.events.empty()) why << "chunk without events at " << c.position;
    if ((c.position >> 16) != ((c.end - 1) >> 16) && log->log2() == 16)
      why << "chunk [" << c.position << ", " << c.end << ") spans segments";
    for (size_t i = 0; i < c.events.size() && why.str().empty(); ++i) {
      const uint64_t pos = c.position + c.events[i];
      event_view v;
      auto d = record::decode(c.data + c.events[i], c.end - pos, pos, true, v);
      if (d.outcome != record::decode_outcome::event) {
        why << "offset " << c.events[i] << " of chunk " << c.position << " is no event";
        break;
      }
      if (v.sequence.value != c.first_sequence + i)
        why << "sequence " << v.sequence.value << " at " << pos << " is not first_sequence + " << i;
      out.events.push_back(copy_of(v));
    }
    if (!why.str().empty() && out.broken.empty()) out.broken = why.str();
    prev_end = c.end;
    held.push_back(c);
    // Keep a random number of chunks unreleased, released in a random order.
    while (!held.empty() && (held.size() >= o.max_held || rng() % 3 == 0)) {
      size_t k = rng() % held.size();
      r.release(held[k]);
      held.erase(held.begin() + static_cast<long>(k));
    }
  }
  out.where = r.where().value;
  out.skipped = r.segments_skipped();
  for (auto& c : held) r.release(c);
  return out;
}

struct ref_result {
  std::vector<got_event> events;
  status err;
};

// What log_reader yields for [from, to).
ref_result read_reference(const std::shared_ptr<detail::shared_log>& log, uint64_t from,
                          uint64_t to) {
  ref_result out;
  log_reader r(log, position{from});
  while (true) {
    event_view v;
    auto n = r.next(v);
    if (!n) {
      out.err = n.error();
      break;
    }
    if (!n.value() || v.position.value >= to) break;
    out.events.push_back(copy_of(v));
  }
  return out;
}

testing::AssertionResult same_events(const std::vector<got_event>& got,
                                     const std::vector<got_event>& want) {
  if (got.size() != want.size())
    return testing::AssertionFailure() << "got " << got.size() << " events, want " << want.size()
                                       << (got.empty() || want.empty() ? "" : "; first got at " +
                                           std::to_string(got.front().position) + ", want at " +
                                           std::to_string(want.front().position));
  for (size_t i = 0; i < got.size(); ++i) {
    const auto& g = got[i];
    const auto& w = want[i];
    if (g.position != w.position || g.sequence != w.sequence || g.stream != w.stream ||
        g.payload != w.payload)
      return testing::AssertionFailure()
             << "event #" << i << ": got position " << g.position << " sequence " << g.sequence
             << " payload " << g.payload.size() << " B; want position " << w.position
             << " sequence " << w.sequence << " payload " << w.payload.size() << " B";
  }
  return testing::AssertionSuccess();
}

// Appends events of random sizes in random batches: mostly small, some of a
// few KiB, a few of 4-12 KiB (records crossing any small chunk).
void fill_random(event_log& log, std::mt19937_64& rng, int appends, size_t big_payload = 0) {
  for (int i = 0; i < appends; ++i) {
    const int batch = 1 + int(rng() % 4);
    std::vector<owned_event> evs(batch);
    for (auto& e : evs) {
      e.type = uint32_t(1 + rng() % 5);
      size_t n;
      switch (rng() % 20) {
        case 0: n = 4000 + rng() % 8000; break;
        case 1: case 2: n = 1000 + rng() % 2000; break;
        default: n = rng() % 300;
      }
      if (big_payload && rng() % 4 == 0) n = big_payload;
      e.payload = random_bytes(rng, n);
    }
    std::string stream = "agg-" + std::to_string(rng() % 20);
    auto data = as_data(evs);
    auto r = log.append(stream_id(stream), expected_version::any(),
                        std::span<const event_data>(data));
    ASSERT_OK(r);
  }
}

// One random log of about 40 segments of 64 KiB, shared by the tests that
// only read it (creating it takes most of a second).
struct shared_log_fixture {
  temp_dir dir;
  std::unique_ptr<event_log> log;
  std::shared_ptr<detail::shared_log> shared;
  std::vector<got_event> all;
};
shared_log_fixture* g_log = nullptr;

class ChunkReader : public testing::TestWithParam<io_backend> {
 public:
  static void SetUpTestSuite() {
    g_log = new shared_log_fixture;
    log_options o;
    o.segment_bytes = k64KiB;
    auto l = event_log::create(g_log->dir.path(), o);
    ASSERT_OK(l);
    g_log->log = std::move(l.value());
    std::mt19937_64 rng(42);
    fill_random(*g_log->log, rng, 1000);
    // Closed and reopened read-only: no background thread may still be
    // writing index files while a test copies the directory.
    ASSERT_OK(g_log->log->close());
    g_log->log.reset();
    auto ro = event_log::open_read_only(g_log->dir.path());
    ASSERT_OK(ro);
    g_log->log = std::move(ro.value());
    g_log->shared = detail::log_access::shared(*g_log->log);
    auto ref = read_reference(g_log->shared, 0, kEnd);
    ASSERT_OK(ref.err);
    g_log->all = std::move(ref.events);
    ASSERT_GT(g_log->all.back().position >> 16, 25u) << "the log should span many segments";
  }
  static void TearDownTestSuite() {
    delete g_log;
    g_log = nullptr;
  }
  void SetUp() override { VARVE_SKIP_OR_FAIL_IN_CI_WITHOUT_URING(GetParam()); }

 protected:
  chunk_reader_options opts(uint32_t chunk = 1u << 20, uint32_t depth = 4, uint32_t held = 8) {
    chunk_reader_options o;
    o.backend = GetParam();
    o.chunk_bytes = chunk;
    o.depth = depth;
    o.max_held = held;
    return o;
  }
  const std::shared_ptr<detail::shared_log>& log() { return g_log->shared; }
};

// A copy of the shared log to damage, opened without recovery (what a reader
// of the damaged directory sees).
struct damaged_copy {
  temp_dir dir;
  std::unique_ptr<event_log> log;
  std::shared_ptr<detail::shared_log> shared;
  void open() {
    auto l = event_log::open_read_only(dir.path());
    ASSERT_OK(l);
    log = std::move(l.value());
    shared = detail::log_access::shared(*log);
  }
};

TEST_P(ChunkReader, WholeLogEqualsLogReaderForEveryChunkSize) {
  const auto& all = g_log->all;
  for (uint32_t chunk : {1u << 20, 4096u, 12288u, 70000u}) {
    for (uint32_t depth : {1u, 4u}) {
      SCOPED_TRACE("chunk " + std::to_string(chunk) + " depth " + std::to_string(depth));
      read_result r = read_chunks(log(), 0, kEnd, opts(chunk, depth), chunk + depth);
      ASSERT_OK(r.err);
      EXPECT_EQ(r.backend, GetParam());
      EXPECT_EQ(r.broken, "");
      EXPECT_TRUE(same_events(r.events, all));
      EXPECT_EQ(r.where, log()->committed());
      EXPECT_GT(r.chunks, 0u);
    }
  }
}

TEST_P(ChunkReader, ShortReadsAreCompleted) {
  // Every read request is capped (a test hook), so each window arrives in
  // many short reads, resubmitted for the rest. mmap reads nothing.
  ::setenv("VARVE_IO_MAX_READ", "1000", 1);
  read_result r = read_chunks(log(), 0, kEnd, opts(65536, 3));
  ::unsetenv("VARVE_IO_MAX_READ");
  ASSERT_OK(r.err);
  EXPECT_EQ(r.broken, "");
  EXPECT_TRUE(same_events(r.events, g_log->all));
}

TEST_P(ChunkReader, RangesMidLogAndAtSegmentBoundariesEqualLogReader) {
  const auto& all = g_log->all;
  const uint64_t committed = log()->committed();
  const uint64_t last_seg = committed >> 16;
  std::mt19937_64 rng(7);
  std::vector<std::pair<uint64_t, uint64_t>> ranges = {
      {0, 0},
      {64, 64},
      {0, 3 << 16},                     // ends at a segment's first byte
      {3 << 16, 7 << 16},               // starts at a segment's first byte (moved to 64)
      {(3 << 16) + 64, (7 << 16) + 64},  // first records of segments
      {5 << 16, kEnd},
      {last_seg << 16, kEnd},           // the unsealed tail alone
      {committed, kEnd},                // nothing
  };
  for (int i = 0; i < 12; ++i) {
    size_t a = rng() % all.size(), b = rng() % all.size();
    if (a > b) std::swap(a, b);
    ranges.emplace_back(all[a].position, all[b].position);
    // `to` one past a record is a record boundary too.
    ranges.emplace_back(all[a].position, b + 1 < all.size() ? all[b + 1].position : kEnd);
    const uint64_t s = rng() % (last_seg + 1), t = s + rng() % 4;
    ranges.emplace_back(all[a].position, t << 16);
    ranges.emplace_back(s << 16, all[b].position);
  }
  for (size_t k = 0; k < ranges.size(); ++k) {
    auto [from, to] = ranges[k];
    if (from > to) std::swap(from, to);
    SCOPED_TRACE("[" + std::to_string(from) + ", " + std::to_string(to) + ")");
    // log_reader's events in range: a fresh log_reader for the first few, the
    // slice of its whole-log read for the rest (the same thing, cheaper).
    ref_result want;
    if (k < 10) {
      want = read_reference(log(), from, to);
      ASSERT_OK(want.err);
    } else {
      for (const auto& e : all)
        if (e.position >= from && e.position < to) want.events.push_back(e);
    }
    for (uint32_t chunk : {1u << 20, 4096u}) {
      read_result r = read_chunks(log(), from, to, opts(chunk, 2), from ^ to);
      ASSERT_OK(r.err);
      EXPECT_EQ(r.broken, "");
      EXPECT_TRUE(same_events(r.events, want.events));
      for (const auto& e : r.events) ASSERT_LT(e.position, to);
      // where() ends at `to` (clamped), or at `from` when that lies past it.
      const uint64_t f = (from & 0xFFFF) < 64 ? (from & ~uint64_t{0xFFFF}) + 64 : from;
      EXPECT_EQ(r.where, std::max(std::min(to, committed), f));
    }
  }
}

TEST_P(ChunkReader, ToInsideARecordHandsOutThePrefixThenFails) {
  const auto& all = g_log->all;
  const got_event& e = all[all.size() / 2];
  const uint64_t to = e.position + 8;
  read_result r = read_chunks(log(), 0, to, opts(16384, 2));
  ASSERT_ERRC(r.err, errc::invalid_argument);
  EXPECT_NE(r.err.message().find("offset " + std::to_string(e.position & 0xFFFF)),
            std::string::npos)
      << r.err.message();
  EXPECT_TRUE(same_events(r.events, read_reference(log(), 0, e.position).events));
}

TEST_P(ChunkReader, FromMustBeARecordPosition) {
  EXPECT_ERRC(chunk_reader::open(log(), position{(2 << 16) + 100}, position{kEnd}, opts()),
              errc::invalid_argument);
  EXPECT_ERRC(chunk_reader::open(log(), position{(2 << 16) + k64KiB - 32}, position{kEnd}, opts()),
              errc::invalid_argument);
  EXPECT_ERRC(chunk_reader::open(log(), position{5 << 16}, position{4 << 16}, opts()),
              errc::invalid_argument);
  chunk_reader_options o = opts();
  o.max_held = 0;
  EXPECT_ERRC(chunk_reader::open(log(), position{0}, position{kEnd}, o), errc::invalid_argument);
}

TEST_P(ChunkReader, RecordsLargerThanAChunk) {
  // 20 KiB records among small ones, read in 4 KiB chunks: each large record
  // spans several reads and comes out whole.
  temp_dir dir;
  log_options lo;
  lo.segment_bytes = k64KiB;
  ASSERT_OK_AND_ASSIGN(auto l, event_log::create(dir.path(), lo));
  std::mt19937_64 rng(3);
  fill_random(*l, rng, 120, 20 << 10);
  auto shared = detail::log_access::shared(*l);
  ref_result want = read_reference(shared, 0, kEnd);
  ASSERT_OK(want.err);
  size_t big = 0;
  for (const auto& e : want.events) big += e.payload.size() == (20 << 10);
  ASSERT_GT(big, 20u);
  for (uint32_t held : {1u, 2u, 8u}) {
    for (uint32_t depth : {1u, 3u}) {
      SCOPED_TRACE("max_held " + std::to_string(held) + " depth " + std::to_string(depth));
      read_result r = read_chunks(shared, 0, kEnd, opts(4096, depth, held), held * 10 + depth);
      ASSERT_OK(r.err);
      EXPECT_EQ(r.broken, "");
      EXPECT_TRUE(same_events(r.events, want.events));
    }
  }
  // And starting on a large record, in the middle of a segment.
  for (const auto& e : want.events) {
    if (e.payload.size() != (20 << 10) || (e.position & 0xFFFF) < 8192) continue;
    read_result r = read_chunks(shared, e.position, kEnd, opts(4096, 2, 2));
    ASSERT_OK(r.err);
    EXPECT_TRUE(same_events(r.events, read_reference(shared, e.position, kEnd).events));
    break;
  }
}

TEST_P(ChunkReader, CorruptRecordInASealedSegment) {
  damaged_copy c;
  copy_dir(g_log->dir.path(), c.dir.path());
  // A byte inside an event of segment 6 (sealed): its checksum fails.
  const got_event* victim = nullptr;
  for (const auto& e : g_log->all)
    if ((e.position >> 16) == 6 && (e.position & 0xFFFF) > 20000) {
      victim = &e;
      break;
    }
  ASSERT_NE(victim, nullptr);
  flip_byte(segment_path(c.dir.path(), 6), (victim->position & 0xFFFF) + 40, 0x01);
  c.open();
  ref_result want = read_reference(c.shared, 0, kEnd);
  ASSERT_ERRC(want.err, errc::corruption);
  for (uint32_t chunk : {1u << 20, 4096u}) {
    read_result r = read_chunks(c.shared, 0, kEnd, opts(chunk, 3));
    ASSERT_ERRC(r.err, errc::corruption);
    // The same words as log_reader: the segment file and the record's offset.
    EXPECT_EQ(r.err.message(), want.err.message());
    EXPECT_NE(r.err.message().find(segment_file_name(6)), std::string::npos);
    EXPECT_TRUE(same_events(r.events, want.events));
    EXPECT_EQ(r.where, victim->position);
  }
  // The error stays: the reader never skips past a record it could not validate.
  auto rd = chunk_reader::open(c.shared, position{victim->position}, position{kEnd}, opts());
  ASSERT_OK(rd);
  chunk ch;
  EXPECT_ERRC(rd.value()->next(ch), errc::corruption);
  EXPECT_ERRC(rd.value()->next(ch), errc::corruption);
}

// Pieces (the replay's parallel walks): cut where the sealed segments' index
// samples say a record starts, they cover the range with no gap and no
// overlap, and walking each one yields exactly log_reader's events.
std::vector<got_event> walk_pieces(detail::shared_log& log, const std::vector<io_detail::piece>& pieces,
                                   status& err, uint64_t& bad) {
  std::vector<got_event> out;
  for (const auto& pc : pieces) {
    io_detail::piece_framer fr;
    err = fr.start(log, pc);
    if (!err.ok()) return out;
    event_view v;
    while (true) {
      auto got = fr.next(4096, v, [&](uint64_t pos) {
        EXPECT_EQ(v.position.value, pos);
        out.push_back(copy_of(v));
        return true;
      });
      if (!got) {
        err = got.error();
        bad = fr.bad();
        return out;
      }
      if (!got.value()) break;
    }
  }
  err = {};
  return out;
}

TEST_P(ChunkReader, PiecesCoverTheRangeAndWalkLikeLogReader) {
  const auto& all = g_log->all;
  std::mt19937_64 rng(7);
  for (int round = 0; round < 12; ++round) {
    uint64_t from = 0, to = kEnd;
    if (round % 3 == 1) {
      from = all[rng() % all.size()].position;
      to = all[rng() % all.size()].position;
      if (to < from) std::swap(from, to);
    } else if (round % 3 == 2) {
      from = (uint64_t{3 + rng() % 10} << 16);  // a segment's start
    }
    const uint64_t target = std::array<uint64_t, 4>{1, 2048, 20000, 1u << 20}[round % 4];
    // Every other round also cuts the active segment (no index) by framing it.
    const bool cut = round % 2 == 1;
    SCOPED_TRACE("from " + std::to_string(from) + " to " + std::to_string(to) + " target " +
                 std::to_string(target) + (cut ? " cut_unindexed" : ""));
    uint64_t skipped = 0;
    auto pl = io_detail::plan_pieces(*log(), position{from}, position{to}, target, {}, skipped, cut);
    ASSERT_OK(pl);
    const auto& pieces = pl.value();
    ASSERT_FALSE(pieces.empty());
    size_t exact = 0;
    for (size_t i = 0; i < pieces.size(); ++i) {
      const auto& pc = pieces[i];
      EXPECT_LT(pc.from, pc.to);
      EXPECT_EQ(pc.from >> 16, pc.segment);
      if (i > 0) {
        EXPECT_EQ(pieces[i - 1].next, pc.from) << "piece " << i;
      }
      if (pc.exact_end) {
        ++exact;
        EXPECT_EQ(pc.next, pc.to);
        // An index sample: an event starts there.
        EXPECT_TRUE(std::any_of(all.begin(), all.end(),
                                [&](const got_event& e) { return e.position == pc.to; }))
            << "piece " << i << " ends at " << pc.to << ", where no event starts";
      }
    }
    // Segments of 64 KiB hold a few hundred events here: their index samples
    // (every 64th event) cut them.
    if (target <= 2048 && round % 3 != 1) {
      EXPECT_GT(exact, 10u) << "the index cut too few pieces";
    }
    if (target >= (1u << 20)) {
      EXPECT_EQ(exact, 0u);
    }
    // The range's last segment (the index is not used there; the active
    // segment has none): one piece, unless cut by framing. Records of up to
    // tens of KiB here, so fewer cuts than bytes / target.
    const uint64_t last_seg = pieces.back().segment;
    const auto in_last = std::count_if(pieces.begin(), pieces.end(),
                                       [&](const io_detail::piece& pc) { return pc.segment == last_seg; });
    const uint64_t last_from = std::max<uint64_t>(from, last_seg << 16);
    const uint64_t last_bytes = std::min<uint64_t>(log()->committed(), to) - last_from;
    if (!cut || last_bytes <= 2 * target) {
      EXPECT_EQ(in_last, 1) << "segment " << last_seg;
    } else if (target <= 2048) {
      EXPECT_GT(in_last, 1) << "segment " << last_seg << ", " << last_bytes << " bytes";
    }
    status err;
    uint64_t bad = 0;
    auto got = walk_pieces(*log(), pieces, err, bad);
    ASSERT_OK(err);
    auto want = read_reference(log(), from, to);
    ASSERT_OK(want.err);
    EXPECT_TRUE(same_events(got, want.events));
  }
}

// Plans pieces of the damaged copy `c` (2 KiB; `cut_unindexed` as the
// replay with several workers asks) and walks them: the walk must stop at
// `victim` with log_reader's error, after log_reader's events.
void expect_piece_walk_names(damaged_copy& c, const got_event& victim, bool cut_unindexed) {
  ref_result want = read_reference(c.shared, 0, kEnd);
  ASSERT_ERRC(want.err, errc::corruption);
  uint64_t skipped = 0;
  auto pl = io_detail::plan_pieces(*c.shared, position{0}, position{kEnd}, 2048, {}, skipped, cut_unindexed);
  ASSERT_OK(pl);
  status err;
  uint64_t bad = 0;
  auto got = walk_pieces(*c.shared, pl.value(), err, bad);
  ASSERT_ERRC(err, errc::corruption);
  EXPECT_EQ(err.message(), want.err.message());
  EXPECT_EQ(bad, victim.position);
  EXPECT_TRUE(same_events(got, want.events));
}

// Cuts found by framing the active segment: damage there (a field the
// checksum covers, or the length that framing follows) is named exactly as
// log_reader names it, whichever piece holds it.
TEST_P(ChunkReader, APieceWalkOfTheActiveSegmentCutByFramingNamesDamageExactly) {
  const uint64_t last_seg = g_log->all.back().position >> 16;
  std::vector<const got_event*> in_last;
  for (const auto& e : g_log->all)
    if ((e.position >> 16) == last_seg) in_last.push_back(&e);
  ASSERT_GT(in_last.size(), 20u);
  for (const uint32_t field : {40u, 8u}) {  // the version; the length
    for (const size_t at : {in_last.size() / 3, in_last.size() * 3 / 4}) {
      SCOPED_TRACE("byte " + std::to_string(field) + " of event " + std::to_string(at));
      damaged_copy c;
      copy_dir(g_log->dir.path(), c.dir.path());
      const got_event* victim = in_last[at];
      flip_byte(segment_path(c.dir.path(), last_seg), (victim->position & 0xFFFF) + field, 0x10);
      c.open();
      expect_piece_walk_names(c, *victim, true);
    }
  }
}

TEST_P(ChunkReader, APieceWalkStopsAtACorruptRecordAndNamesIt) {
  damaged_copy c;
  copy_dir(g_log->dir.path(), c.dir.path());
  std::mt19937_64 rng(11);
  std::vector<const got_event*> in6;
  for (const auto& e : g_log->all)
    if ((e.position >> 16) == 6) in6.push_back(&e);
  ASSERT_GT(in6.size(), 10u);
  const got_event* victim = in6[in6.size() / 2];
  flip_byte(segment_path(c.dir.path(), 6), (victim->position & 0xFFFF) + 40, 0x01);
  c.open();
  expect_piece_walk_names(c, *victim, false);
}

TEST_P(ChunkReader, ZeroedOrTornTailBelowTheCommittedEnd) {
  const auto& all = g_log->all;
  const got_event& last = all.back();
  const got_event& before = all[all.size() - 3];
  ASSERT_EQ(before.position >> 16, last.position >> 16) << "want three events in the tail";
  const uint64_t seg = last.position >> 16;
  for (bool zero : {true, false}) {
    SCOPED_TRACE(zero ? "zeroed" : "torn");
    damaged_copy c;
    copy_dir(g_log->dir.path(), c.dir.path());
    const uint64_t off = before.position & 0xFFFF;
    if (zero) {
      zero_range(segment_path(c.dir.path(), seg), off, (last.position & 0xFFFF) + 80 - off);
    } else {
      std::mt19937_64 rng(9);
      auto junk = random_bytes(rng, 200);
      write_at(segment_path(c.dir.path(), seg), off, junk.data(), junk.size());
    }
    c.open();
    ref_result want = read_reference(c.shared, 0, kEnd);
    ASSERT_ERRC(want.err, errc::corruption);
    read_result r = read_chunks(c.shared, 0, kEnd, opts(8192, 2));
    ASSERT_ERRC(r.err, errc::corruption);
    EXPECT_EQ(r.err.message(), want.err.message());
    EXPECT_NE(r.err.message().find(segment_file_name(seg) + " offset " + std::to_string(off)),
              std::string::npos)
        << r.err.message();
    EXPECT_TRUE(same_events(r.events, want.events));
    EXPECT_EQ(r.events.size(), all.size() - 3);
  }
}

TEST_P(ChunkReader, SkippedSegmentsAreNotReadAndSequencesJump) {
  const auto& all = g_log->all;
  const uint64_t last_seg = log()->committed() >> 16;
  for (uint64_t from_seg : {0u, 2u}) {
    std::vector<uint64_t> asked;
    chunk_reader_options o = opts(1u << 20, 3);
    o.skip_segment = [&](uint64_t s) {
      asked.push_back(s);
      return s % 3 == 1;
    };
    const uint64_t from = from_seg << 16;
    const uint64_t to = ((last_seg - 2) << 16) + 64;  // the first record of a segment
    read_result r = read_chunks(log(), from, to, o);
    ASSERT_OK(r.err);
    EXPECT_EQ(r.broken, "");
    std::vector<got_event> want;
    for (const auto& e : all)
      if (e.position >= from && e.position < to && (e.position >> 16) % 3 != 1)
        want.push_back(e);
    EXPECT_TRUE(same_events(r.events, want));
    // Asked once for each segment wholly in range, in order, before reading it.
    std::vector<uint64_t> whole;
    for (uint64_t s = from_seg; s < last_seg - 2; ++s) whole.push_back(s);
    EXPECT_EQ(asked, whole);
    uint64_t skipped = 0;
    for (uint64_t s : whole) skipped += s % 3 == 1;
    EXPECT_EQ(r.skipped, skipped);
    EXPECT_EQ(r.where, to);
    if (GetParam() != io_backend::mmap) {
      // A skipped segment costs no read.
      auto rd = chunk_reader::open(log(), position{0}, position{kEnd}, o);
      ASSERT_OK(rd);
      uint64_t events = 0;
      chunk ch;
      while (true) {
        auto n = rd.value()->next(ch);
        ASSERT_OK(n);
        if (!n.value()) break;
        events += ch.events.size();
        rd.value()->release(ch);
      }
      EXPECT_LT(rd.value()->bytes_read(), (last_seg + 1) * k64KiB * 3 / 4);
      EXPECT_GT(events, 0u);
    }
  }
}

TEST_P(ChunkReader, MaxHeldIsEnforced) {
  auto rd = chunk_reader::open(log(), position{0}, position{kEnd}, opts(4096, 2, 2));
  ASSERT_OK(rd);
  chunk_reader& r = *rd.value();
  chunk a, b, c;
  ASSERT_OK(r.next(a));
  ASSERT_OK(r.next(b));
  const std::string a_bytes(reinterpret_cast<const char*>(a.data), a.end - a.position);
  EXPECT_ERRC(r.next(c), errc::invalid_argument);
  EXPECT_ERRC(r.next(c), errc::invalid_argument);
  r.release(b);
  r.release(b);  // a second release of the same chunk changes nothing
  ASSERT_OK(r.next(c));
  EXPECT_GE(c.position, b.end);
  EXPECT_ERRC(r.next(b), errc::invalid_argument);
  // A held chunk's bytes stay put while others are read.
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(a.data), a.end - a.position), a_bytes);
  r.release(a);
  r.release(c);
  uint64_t n = 0;
  while (true) {
    chunk x;
    auto got = r.next(x);
    ASSERT_OK(got);
    if (!got.value()) break;
    n += x.events.size();
    r.release(x);
  }
  EXPECT_GT(n, 0u);
}

TEST_P(ChunkReader, StopsAtTheEndCommittedWhenOpened) {
  temp_dir dir;
  log_options lo;
  lo.segment_bytes = k64KiB;
  ASSERT_OK_AND_ASSIGN(auto l, event_log::create(dir.path(), lo));
  std::mt19937_64 rng(5);
  fill_random(*l, rng, 100);
  auto shared = detail::log_access::shared(*l);
  const uint64_t end = shared->committed();
  ref_result want = read_reference(shared, 0, end);
  auto rd = chunk_reader::open(shared, position{0}, position{kEnd}, opts(4096, 2, 2));
  ASSERT_OK(rd);
  fill_random(*l, rng, 100);  // the writer goes on; the reader stops where it was told
  std::vector<got_event> got;
  chunk ch;
  while (true) {
    auto n = rd.value()->next(ch);
    ASSERT_OK(n);
    if (!n.value()) break;
    for (uint32_t off : ch.events) {
      event_view v;
      ASSERT_EQ(record::decode(ch.data + off, ch.end - ch.position - off, ch.position + off, true, v)
                    .outcome,
                record::decode_outcome::event);
      got.push_back(copy_of(v));
    }
    rd.value()->release(ch);
  }
  EXPECT_TRUE(same_events(got, want.events));
  EXPECT_EQ(rd.value()->where().value, end);
}

// Sets an environment variable for one scope.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~scoped_env() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST_P(ChunkReader, VarveIoChoosesTheBackend) {
  EXPECT_EQ(parse_io_backend(to_string(GetParam())), GetParam());
  {
    scoped_env env("VARVE_IO", to_string(GetParam()));
    auto b = resolve_io_backend(io_backend::automatic);
    ASSERT_OK(b);
    EXPECT_EQ(b.value(), GetParam());
    chunk_reader_options o = opts(65536, 2);
    o.backend = io_backend::automatic;
    read_result r = read_chunks(log(), 0, kEnd, o);
    ASSERT_OK(r.err);
    EXPECT_EQ(r.backend, GetParam());
    EXPECT_TRUE(same_events(r.events, g_log->all));
    // An explicit choice is not overridden.
    auto explicit_pread = resolve_io_backend(io_backend::pread);
    ASSERT_OK(explicit_pread);
    EXPECT_EQ(explicit_pread.value(), io_backend::pread);
  }
  {
    scoped_env env("VARVE_IO", "io_uring");
    auto b = resolve_io_backend(io_backend::automatic);
    ASSERT_ERRC(b, errc::invalid_argument);
    EXPECT_NE(b.error().message().find("VARVE_IO=io_uring"), std::string::npos);
    chunk_reader_options o = opts();
    o.backend = io_backend::automatic;
    EXPECT_ERRC(chunk_reader::open(log(), position{0}, position{kEnd}, o), errc::invalid_argument);
  }
  {
    scoped_env env("VARVE_IO", "auto");
    scoped_env fail("VARVE_IO_URING_FAIL", nullptr);
    auto b = resolve_io_backend(io_backend::automatic);
    ASSERT_OK(b);
    // The auto choice is io_uring wherever it works, and only there pread.
    const std::string no_uring = uring_unavailable_reason();
    EXPECT_EQ(b.value(), no_uring.empty() ? io_backend::uring : io_backend::pread) << no_uring;
  }
  EXPECT_FALSE(parse_io_backend("URING").has_value());
  EXPECT_FALSE(parse_io_backend("").has_value());
}

TEST_P(ChunkReader, FallsBackToPreadAndSaysSoOnce) {
  scoped_env env("VARVE_IO", nullptr);
  scoped_env fail("VARVE_IO_URING_FAIL", "1");
  io_detail::reset_fallback_notice_for_test();
  testing::internal::CaptureStderr();
  // The backend this test is about, then io_uring twice: all readers work.
  // (`automatic` reads this resident log through the mapping; for a cold
  // range it is what resolve_io_backend says, checked below.)
  std::vector<io_backend> backends;
  for (io_backend b : {GetParam(), io_backend::uring, io_backend::uring}) {
    chunk_reader_options o = opts(65536, 2);
    o.backend = b;
    read_result r = read_chunks(log(), 0, kEnd, o);
    EXPECT_OK(r.err);
    EXPECT_TRUE(same_events(r.events, g_log->all));
    backends.push_back(r.backend);
  }
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(backends[0], GetParam() == io_backend::uring ? io_backend::pread : GetParam());
  EXPECT_EQ(backends[1], io_backend::pread);
  EXPECT_EQ(backends[2], io_backend::pread);
  EXPECT_EQ(said, "varve: io_uring unavailable (" + std::string(std::strerror(ENOSYS)) +
                      "); reading with pread\n");
  auto cold = resolve_io_backend(io_backend::automatic);
  ASSERT_OK(cold);
  EXPECT_EQ(cold.value(), io_backend::pread);
}

// A log of 64 KiB segments with `appends` random batches, closed; returns
// how many segment files it has.
uint64_t make_small_log(const std::string& dir, uint64_t seed, int appends) {
  log_options lo;
  lo.segment_bytes = k64KiB;
  auto l = event_log::create(dir, lo);
  EXPECT_OK(l);
  if (!l) return 0;
  std::mt19937_64 rng(seed);
  fill_random(*l.value(), rng, appends);
  const uint64_t segments = (l.value()->committed_position().value >> 16) + 1;
  EXPECT_OK(l.value()->close());
  return segments;
}

// Writes back and drops every segment file from the page cache, where the
// file system lets us (tmpfs keeps everything resident).
void evict_segments(const std::string& dir, uint64_t segments) {
  for (uint64_t s = 0; s < segments; ++s) {
    int fd = ::open(segment_path(dir, s).c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// What the page cache holds of a range, measured independently of the
// library: the test maps each segment file itself and asks mincore.
double resident_share(const std::string& dir, uint64_t segments) {
  uint64_t pages = 0, in = 0;
  for (uint64_t s = 0; s < segments; ++s) {
    const std::string path = segment_path(dir, s);
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) continue;
    void* m = ::mmap(nullptr, k64KiB, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) continue;
    unsigned char vec[k64KiB / 4096];
    if (::mincore(m, k64KiB, vec) == 0)
      for (unsigned char v : vec) {
        ++pages;
        in += v & 1;
      }
    ::munmap(m, k64KiB);
  }
  return pages ? double(in) / double(pages) : 0;
}

TEST_P(ChunkReader, AutomaticTakesTheMappingForResidentDataAndTheRingForCold) {
  scoped_env env("VARVE_IO", nullptr);
  temp_dir d;
  const uint64_t segments = make_small_log(d.path(), 3, 300);
  ASSERT_GT(segments, 0u);
  // Out of the page cache (where tmpfs keeps it, the mapping is right).
  evict_segments(d.path(), segments);
  auto l = event_log::open_read_only(d.path());
  ASSERT_OK(l);
  auto shared = detail::log_access::shared(*l.value());
  const double before = resident_share(d.path(), segments);
  chunk_reader_options o = opts();
  o.backend = io_backend::automatic;
  read_result r = read_chunks(shared, 0, kEnd, o);
  ASSERT_OK(r.err);
  const std::string no_uring = uring_unavailable_reason();
  const io_backend cold = no_uring.empty() ? io_backend::uring : io_backend::pread;
  if (before < 0.5) {
    EXPECT_EQ(r.backend, cold) << "resident share " << before;
  }
  if (before >= 0.95) {
    EXPECT_EQ(r.backend, io_backend::mmap) << "resident share " << before;
  }
  // Now it has all been read: resident, and read through the mapping.
  const double after = resident_share(d.path(), segments);
  ASSERT_GE(after, 0.95);
  read_result again = read_chunks(shared, 0, kEnd, o);
  ASSERT_OK(again.err);
  EXPECT_EQ(again.backend, io_backend::mmap);
  EXPECT_TRUE(same_events(again.events, r.events));
  // An explicit backend is taken as given, warm or not.
  o.backend = GetParam();
  read_result forced = read_chunks(shared, 0, kEnd, o);
  ASSERT_OK(forced.err);
  EXPECT_EQ(forced.backend, GetParam());
}

TEST_P(ChunkReader, DescribesItself) {
  auto rd = chunk_reader::open(log(), position{0}, position{kEnd}, opts());
  ASSERT_OK(rd);
  EXPECT_EQ(rd.value()->describe().rfind(to_string(GetParam()), 0), 0u) << rd.value()->describe();
}

// O_DIRECT reads of cold, full segments (the uring backend): the same events
// as log_reader, the same errors, and the page cache left as it was.
class ChunkReaderDirect : public testing::Test {
 protected:
  void SetUp() override {
    VARVE_SKIP_OR_FAIL_IN_CI_WITHOUT_URING(io_backend::uring);
    segments = make_small_log(dir.path(), 5, 400);
    ASSERT_GT(segments, 12u);
    direct_works = supports_direct(segment_path(dir.path(), 0));
  }
  void evict(const std::string& d) { evict_segments(d, segments); }
  // The log, evicted from the page cache, then opened read-only.
  struct opened {
    std::unique_ptr<event_log> log;
    std::shared_ptr<detail::shared_log> shared;
  };
  opened open_cold() {
    evict(dir.path());
    auto l = event_log::open_read_only(dir.path());
    EXPECT_OK(l);
    if (!l) return {};
    opened o{std::move(l.value()), nullptr};
    o.shared = detail::log_access::shared(*o.log);
    return o;
  }
  static bool supports_direct(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
    if (fd < 0) return false;
    void* buf = nullptr;
    bool ok = posix_memalign(&buf, 4096, 4096) == 0 && ::pread(fd, buf, 4096, 0) == 4096;
    std::free(buf);
    ::close(fd);
    return ok;
  }
  static chunk_reader_options direct_opts(uint32_t chunk = 1u << 20) {
    chunk_reader_options o;
    o.backend = io_backend::uring;
    o.chunk_bytes = chunk;
    o.direct = chunk_reader_options::direct_reads::cold;
    return o;
  }
  // How many segments the reader said it read with O_DIRECT (0: none).
  static uint64_t direct_count(const std::string& described) {
    const std::string key = "O_DIRECT for ";
    const size_t at = described.find(key);
    return at == std::string::npos ? 0 : std::stoull(described.substr(at + key.size()));
  }
  struct direct_read {
    read_result r;
    std::string described;
  };
  direct_read read_direct(const std::shared_ptr<detail::shared_log>& log, uint64_t from, uint64_t to,
                          const chunk_reader_options& o) {
    direct_read out;
    auto rd = chunk_reader::open(log, position{from}, position{to}, o);
    if (!rd) {
      out.r.err = rd.error();
      return out;
    }
    chunk c;
    while (true) {
      auto n = rd.value()->next(c);
      if (!n) {
        out.r.err = n.error();
        break;
      }
      if (!n.value()) break;
      for (uint32_t off : c.events) {
        event_view v;
        const uint64_t pos = c.position + off;
        auto d = record::decode(c.data + off, c.end - pos, pos, true, v);
        if (d.outcome != record::decode_outcome::event) {
          out.r.broken = "no event at " + std::to_string(pos);
          break;
        }
        out.r.events.push_back(copy_of(v));
      }
      rd.value()->release(c);
    }
    out.r.where = rd.value()->where().value;
    out.described = rd.value()->describe();
    return out;
  }

  temp_dir dir;
  uint64_t segments = 0;
  bool direct_works = false;
};

TEST_F(ChunkReaderDirect, ColdFullSegmentsAreReadDirectAndEqualLogReader) {
  evict(dir.path());
  auto l = event_log::open_read_only(dir.path());
  ASSERT_OK(l);
  auto shared = detail::log_access::shared(*l.value());
  const double before = resident_share(dir.path(), segments);
  // Whole log, and ranges that start and stop mid-segment (not on a page).
  struct range {
    uint64_t from, to;
  };
  std::vector<got_event> all;
  for (uint32_t chunk : {1u << 20, 4096u, 70000u}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    direct_read d = read_direct(shared, 0, kEnd, direct_opts(chunk));
    ASSERT_OK(d.r.err);
    EXPECT_EQ(d.r.broken, "");
    if (direct_works && before < 0.5) {
      // Every full segment but those the open itself read (recovery reads
      // the active one, the last), and never the last one.
      EXPECT_GE(direct_count(d.described), segments / 2) << d.described;
      EXPECT_LT(direct_count(d.described), segments) << d.described;
      EXPECT_LT(resident_share(dir.path(), segments), 0.5)
          << "O_DIRECT reads fill no page cache; " << d.described;
    } else {
      EXPECT_EQ(direct_count(d.described), 0u) << d.described;
    }
    if (all.empty()) all = d.r.events;
    EXPECT_TRUE(same_events(d.r.events, all));
    EXPECT_EQ(d.r.where, shared->committed());
  }
  ref_result want = read_reference(shared, 0, kEnd);
  ASSERT_OK(want.err);
  EXPECT_TRUE(same_events(all, want.events));
  // Mid-segment ranges, cold again.
  l.value().reset();
  shared.reset();
  opened cold = open_cold();
  ASSERT_TRUE(cold.shared);
  auto& shared2 = cold.shared;
  const uint64_t from = want.events[want.events.size() / 5].position;
  const uint64_t to = want.events[want.events.size() * 3 / 4].position;
  ASSERT_NE(from % 4096, 0u) << "pick a start off the page";
  direct_read mid = read_direct(shared2, from, to, direct_opts(12288));
  ASSERT_OK(mid.r.err);
  std::vector<got_event> want_mid;
  for (const auto& e : want.events)
    if (e.position >= from && e.position < to) want_mid.push_back(e);
  EXPECT_TRUE(same_events(mid.r.events, want_mid));
  if (direct_works && before < 0.5) {
    EXPECT_GT(direct_count(mid.described), 0u) << mid.described;
  }
}

TEST_F(ChunkReaderDirect, ResidentSegmentsAndTheAutomaticPolicyReadThroughTheCache) {
  evict(dir.path());
  // Segment 4 read whole: resident, so copied from the cache, not read direct.
  {
    int fd = ::open(segment_path(dir.path(), 4).c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    std::vector<char> buf(k64KiB);
    ASSERT_EQ(::pread(fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(buf.size()));
    ::close(fd);
  }
  auto l = event_log::open_read_only(dir.path());
  ASSERT_OK(l);
  auto shared = detail::log_access::shared(*l.value());
  const double before = resident_share(dir.path(), segments);
  direct_read cold = read_direct(shared, 0, kEnd, direct_opts());
  ASSERT_OK(cold.r.err);
  const uint64_t n_cold = direct_count(cold.described);
  if (direct_works && before < 0.5) {
    EXPECT_GT(n_cold, 0u) << cold.described;
    EXPECT_LE(n_cold, segments - 2) << "segment 4 is resident: " << cold.described;
  }
  // The default policy: a range far below half the available memory stays
  // in the page cache (the next reader of it finds it there).
  scoped_env env("VARVE_IO_DIRECT", nullptr);
  chunk_reader_options a = direct_opts();
  a.direct = chunk_reader_options::direct_reads::automatic;
  direct_read automatic = read_direct(shared, 0, kEnd, a);
  ASSERT_OK(automatic.r.err);
  EXPECT_EQ(direct_count(automatic.described), 0u) << automatic.described;
  EXPECT_TRUE(same_events(automatic.r.events, cold.r.events));
  // VARVE_IO_DIRECT=1 makes automatic read cold segments direct, =0 never.
  l.value().reset();
  shared.reset();
  opened again = open_cold();
  ASSERT_TRUE(again.shared);
  auto& shared2 = again.shared;
  {
    scoped_env off("VARVE_IO_DIRECT", "0");
    direct_read never = read_direct(shared2, 0, kEnd, a);
    ASSERT_OK(never.r.err);
    EXPECT_EQ(direct_count(never.described), 0u) << never.described;
  }
  evict(dir.path());
  {
    scoped_env on("VARVE_IO_DIRECT", "1");
    direct_read forced = read_direct(shared2, 0, kEnd, a);
    ASSERT_OK(forced.r.err);
    if (direct_works && resident_share(dir.path(), segments) < 0.5) {
      EXPECT_GT(direct_count(forced.described), 0u) << forced.described;
    }
    EXPECT_TRUE(same_events(forced.r.events, cold.r.events));
  }
}

TEST_F(ChunkReaderDirect, ACorruptRecordReadDirectIsNamedLikeLogReader) {
  std::vector<got_event> all;
  {
    auto l = event_log::open_read_only(dir.path());
    ASSERT_OK(l);
    ref_result ref = read_reference(detail::log_access::shared(*l.value()), 0, kEnd);
    ASSERT_OK(ref.err);
    all = std::move(ref.events);
  }
  const got_event* victim = nullptr;
  for (const auto& e : all)
    if ((e.position >> 16) == 6 && (e.position & 0xFFFF) > 20000) {
      victim = &e;
      break;
    }
  ASSERT_NE(victim, nullptr);
  flip_byte(segment_path(dir.path(), 6), (victim->position & 0xFFFF) + 40, 0x01);
  evict(dir.path());
  auto l = event_log::open_read_only(dir.path());
  ASSERT_OK(l);
  auto shared = detail::log_access::shared(*l.value());
  direct_read d = read_direct(shared, 0, kEnd, direct_opts());
  ASSERT_ERRC(d.r.err, errc::corruption);
  if (direct_works) {
    EXPECT_GT(direct_count(d.described), 0u) << d.described;
  }
  ref_result want = read_reference(shared, 0, kEnd);
  ASSERT_ERRC(want.err, errc::corruption);
  EXPECT_EQ(d.r.err.message(), want.err.message());
  EXPECT_NE(d.r.err.message().find(segment_file_name(6)), std::string::npos);
  EXPECT_TRUE(same_events(d.r.events, want.events));
  EXPECT_EQ(d.r.where, victim->position);
}

INSTANTIATE_TEST_SUITE_P(Backends, ChunkReader,
                         testing::Values(io_backend::uring, io_backend::mmap, io_backend::pread),
                         [](const testing::TestParamInfo<io_backend>& i) {
                           return std::string(to_string(i.param));
                         });

}  // namespace

// The kernel may refuse O_DIRECT reads of a file it let us switch to O_DIRECT
// (a file system wanting an alignment we do not give). The test hook makes
// every direct read ask for a length no block device takes, so the kernel
// really refuses it: the reader must read those segments buffered instead,
// hand out the same events and say so, never fail the range.
TEST_F(ChunkReaderDirect, ReadsTheKernelRefusesAreAskedAgainBuffered) {
  ref_result want;
  {
    // Through the mapping, in an instance of its own: mapped pages would
    // stay resident through the evictions below.
    auto l = event_log::open_read_only(dir.path());
    ASSERT_OK(l);
    want = read_reference(detail::log_access::shared(*l.value()), 0, kEnd);
    ASSERT_OK(want.err);
  }
  auto cold = open_cold();
  ASSERT_TRUE(cold.shared);
  const double before = resident_share(dir.path(), segments);
  scoped_env odd("VARVE_IO_DIRECT_ODD_LENGTH", "1");
  for (uint32_t chunk : {1u << 20, 12288u}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    evict(dir.path());
    chunk_reader_options o = direct_opts(chunk);
    o.direct_depth = 16;  // so that small windows open a few segments ahead, not all
    direct_read d = read_direct(cold.shared, 0, kEnd, o);
    ASSERT_OK(d.r.err);
    EXPECT_EQ(d.r.broken, "");
    EXPECT_TRUE(same_events(d.r.events, want.events));
    EXPECT_EQ(d.r.where, cold.shared->committed());
    const std::string key = "O_DIRECT refused at read for ";
    const size_t at = d.described.find(key);
    if (direct_works && before < 0.5) {
      // Every segment opened direct (those the planner opened before the
      // first refusal came back: with 1 MiB windows, one per 64 KiB segment,
      // 16 reads ahead reach most of them) was refused; with windows of a
      // few pages the refusal comes back within the first segments, and
      // the rest are read buffered from the start.
      ASSERT_NE(at, std::string::npos) << d.described;
      EXPECT_EQ(std::stoull(d.described.substr(at + key.size())), direct_count(d.described)) << d.described;
      if (chunk < (1u << 16)) {
        EXPECT_LT(direct_count(d.described), segments / 2) << d.described;
      }
    } else {
      EXPECT_EQ(at, std::string::npos) << d.described;
    }
  }
}

// The paths of the files in this process's io_uring file tables, as the
// kernel lists them in each ring's fdinfo ("UserFiles:" then one line per
// slot); nullopt when no ring lists its table.
std::optional<std::string> ring_files() {
  std::optional<std::string> all;
  for (int fd = 0; fd < 4096; ++fd) {
    char link[64] = {0};
    const std::string p = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(p.c_str(), link, sizeof link - 1);
    if (n <= 0 || std::string_view(link, static_cast<size_t>(n)) != "anon_inode:[io_uring]") continue;
    std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t at = text.find("UserFiles:");
    if (at == std::string::npos) continue;
    const size_t end = text.find("UserBufs:", at);
    all = all.value_or("") + text.substr(at, end == std::string::npos ? std::string::npos : end - at);
  }
  return all;
}

TEST_F(ChunkReaderDirect, RingReadsRegisteredFilesAndLetsEachGoWhenItsSegmentIsRead) {
  auto cold = open_cold();
  ASSERT_TRUE(cold.shared);
  chunk_reader_options o;
  o.backend = io_backend::uring;
  o.chunk_bytes = 16384;  // several windows per 64 KiB segment
  o.depth = 2;
  auto rd = chunk_reader::open(cold.shared, position{0}, position{kEnd}, o);
  ASSERT_OK(rd);
  ASSERT_NE(rd.value()->describe().find("files registered"), std::string::npos) << rd.value()->describe();
  std::vector<got_event> got;
  chunk c;
  for (bool first = true;; first = false) {
    auto n = rd.value()->next(c);
    ASSERT_OK(n);
    if (!n.value()) break;
    if (first) {
      // Reading segment 0: its file is in the ring's table.
      std::optional<std::string> during = ring_files();
      ASSERT_TRUE(during.has_value()) << "no io_uring fdinfo lists its files";
      EXPECT_NE(during->find(segment_file_name(0)), std::string::npos) << *during;
    }
    for (uint32_t off : c.events) {
      event_view v;
      const uint64_t pos = c.position + off;
      ASSERT_EQ(record::decode(c.data + off, c.end - pos, pos, true, v).outcome, record::decode_outcome::event);
      got.push_back(copy_of(v));
    }
    rd.value()->release(c);
  }
  // The range is read, the reader still open: no segment is held by the ring.
  std::optional<std::string> after = ring_files();
  ASSERT_TRUE(after.has_value());
  for (uint64_t s = 0; s < segments; ++s)
    EXPECT_EQ(after->find(segment_file_name(s)), std::string::npos) << *after;
  ref_result want = read_reference(cold.shared, 0, kEnd);
  ASSERT_OK(want.err);
  EXPECT_TRUE(same_events(got, want.events));
}
