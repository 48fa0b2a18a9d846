// log_reader::next_batch (include/varve/reader.h): the bulk form of next()
// must hand out exactly what next() hands out, event for event, whatever the
// batch size, across segment ends, holes, filters, stream lifecycle and a
// writer still appending; and a record that fails validation must end the
// batch before it, with the error (file and offset) on the next call and the
// cursor left on the record. The same for the lazy form (next_batch into
// event_refs): each accessor, and view(), must give next()'s field.
// Upcasters and encrypted payloads (the reader's own buffer) are checked in
// upcast_test and crypto_test.
#include <xxhash.h>

#include <array>
#include <cinttypes>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "varve/subscription.h"

namespace {

using namespace varve;
using namespace varve_test;

// What a reader handed out, field by field (the views' bytes copied).
struct got_event {
  uint64_t position, sequence, version, previous, timestamp;
  uint32_t type, record_bytes;
  uint16_t schema_version, stored_schema_version;
  std::string stream, payload, metadata, ids;
  bool batch_begin, batch_end, stream_is_integer, json, encrypted, forgotten;
  bool operator==(const got_event&) const = default;
};

std::string id_text(const id128* id) {
  return id ? std::string(reinterpret_cast<const char*>(id->bytes.data()), 16) : std::string("-");
}

got_event copy_of(const event_view& v) {
  return {v.position.value,
          v.sequence.value,
          v.version,
          v.previous.value,
          v.timestamp_ns,
          v.type,
          v.record_bytes,
          v.schema_version,
          v.stored_schema_version,
          std::string(v.stream),
          std::string(reinterpret_cast<const char*>(v.payload.data()), v.payload.size()),
          std::string(reinterpret_cast<const char*>(v.metadata.raw().data()), v.metadata.raw().size()),
          id_text(v.event_id) + "/" + id_text(v.correlation_id) + "/" + id_text(v.causation_id),
          v.batch_begin,
          v.batch_end,
          v.stream_is_integer,
          v.content == content_type::json,
          v.encrypted,
          v.forgotten};
}

// A ref's fields through its accessors, one by one; its view() must give the
// same.
got_event copy_of(const event_ref& r) {
  const auto payload = r.payload();
  const auto meta = r.metadata().raw();
  got_event g{r.position().value,
              r.sequence().value,
              r.version(),
              r.previous().value,
              r.timestamp_ns(),
              r.type(),
              r.record_bytes(),
              r.schema_version(),
              r.stored_schema_version(),
              std::string(r.stream()),
              std::string(reinterpret_cast<const char*>(payload.data()), payload.size()),
              std::string(reinterpret_cast<const char*>(meta.data()), meta.size()),
              id_text(r.event_id()) + "/" + id_text(r.correlation_id()) + "/" + id_text(r.causation_id()),
              r.batch_begin(),
              r.batch_end(),
              r.stream_is_integer(),
              r.content() == content_type::json,
              r.encrypted(),
              r.forgotten()};
  EXPECT_EQ(copy_of(r.view()), g) << "event_ref::view() at " << g.position;
  return g;
}

std::vector<got_event> read_with_next(log_reader r) {
  std::vector<got_event> out;
  event_view v;
  for (;;) {
    auto got = r.next(v);
    EXPECT_TRUE(got.ok()) << describe(got);
    if (!got.ok() || !got.value()) break;
    out.push_back(copy_of(v));
  }
  return out;
}

// Batches of `size` (0: sizes drawn from `rng`, 1..70), into event_views or,
// the lazy form, event_refs.
template <class View = event_view>
std::vector<got_event> read_with_batches(log_reader r, size_t size, std::mt19937_64& rng) {
  std::vector<got_event> out;
  std::vector<View> views(70);
  for (;;) {
    const size_t n = size ? size : 1 + rng() % 70;
    auto got = r.next_batch(std::span<View>(views.data(), n));
    EXPECT_TRUE(got.ok()) << describe(got);
    if (!got.ok() || got.value() == 0) break;
    EXPECT_LE(got.value(), n);
    for (size_t i = 0; i < got.value(); ++i) out.push_back(copy_of(views[i]));
  }
  return out;
}

// 64 KiB segments: ~300 events each, so every read crosses many segment ends.
log_options small_segments() {
  log_options o;
  o.segment_bytes = 64 << 10;
  return o;
}

std::string payload_for(std::mt19937_64& rng, int i) {
  return "e" + std::to_string(i) + std::string(rng() % 300, static_cast<char>('a' + i % 26));
}

// A log of `events` events over `streams` streams in 64 KiB segments: single
// appends and atomic batches of 2-5, some with an event id.
void fill(event_log& log, std::mt19937_64& rng, int events, int streams, const std::string& prefix = "s-") {
  for (int i = 0; i < events;) {
    const std::string s = prefix + std::to_string(rng() % streams);
    const int k = rng() % 4 == 0 ? 2 + static_cast<int>(rng() % 4) : 1;
    std::vector<std::string> payloads;
    std::vector<event_data> batch(k);
    for (int j = 0; j < k; ++j) payloads.push_back(payload_for(rng, i + j));
    std::vector<id128> ids(3 * k);  // distinct: the first event's id makes the append idempotent
    std::vector<std::array<metadata_entry, 2>> meta(k);
    for (int j = 0; j < k; ++j) {
      batch[j].type = 1 + static_cast<uint32_t>(rng() % 3);
      batch[j].schema_version = 1 + static_cast<uint16_t>(rng() % 2);
      batch[j].payload = event_data::bytes(payloads[j]);
      if (rng() % 6 == 0) batch[j].content = content_type::json;
      for (auto& id : std::span(ids).subspan(3 * j, 3))
        for (auto& b : id.bytes) b = static_cast<uint8_t>(rng());
      if (rng() % 5 == 0) batch[j].event_id = &ids[3 * j];
      if (rng() % 7 == 0) batch[j].correlation_id = &ids[3 * j + 1];
      if (rng() % 3 == 0) batch[j].causation_id = &ids[3 * j + 2];
      if (rng() % 7 == 0) {  // metadata: the records the readers decode out of line
        static constexpr std::string_view kValues[] = {"v", "vx", "vxx"};
        meta[j] = {metadata_entry{"k", kValues[rng() % 3]}, metadata_entry{"trace", "t"}};
        batch[j].metadata = std::span(meta[j]).first(1 + rng() % 2);
      }
    }
    if (rng() % 9 == 0) {
      ASSERT_OK(log.append(stream_id::from_u64(rng() % streams), expected_version::any(), batch));
    } else {
      ASSERT_OK(log.append(stream_id(s), expected_version::any(), batch));
    }
    i += k;
  }
}

TEST(ReaderBatch, HandsOutWhatNextHandsOutForEveryBatchSize) {
  for (uint64_t seed : {11u, 12u, 13u}) {
    std::printf("seed %" PRIu64 "\n", seed);
    SCOPED_TRACE("seed " + std::to_string(seed));
    temp_dir d;
    auto log = event_log::create(d.path(), small_segments()).value();
    std::mt19937_64 rng(seed);
    fill(*log, rng, 4000, 50);
    const std::vector<got_event> want = read_with_next(log->read());
    ASSERT_GE(want.size(), 4000u);
    for (size_t size : {size_t{1}, size_t{2}, size_t{7}, size_t{64}, size_t{0}}) {
      SCOPED_TRACE("batch size " + std::to_string(size));
      EXPECT_EQ(read_with_batches(log->read(), size, rng), want);
      EXPECT_EQ(read_with_batches<event_ref>(log->read(), size, rng), want) << "event_ref";
    }
    // From a position in the middle, and through a read-only handle.
    const position mid{want[want.size() / 2].position};
    EXPECT_EQ(read_with_batches(log->read(mid), 64, rng), read_with_next(log->read(mid)));
    EXPECT_EQ(read_with_batches<event_ref>(log->read(mid), 64, rng), read_with_next(log->read(mid)));
    ASSERT_OK(log->close());
    auto ro = event_log::open_read_only(d.path()).value();
    EXPECT_EQ(read_with_batches(ro->read(), 0, rng), want);
    EXPECT_EQ(read_with_batches<event_ref>(ro->read(), 0, rng), want);
  }
}

TEST(ReaderBatch, AFilteredReaderHandsOutTheSameEvents) {
  temp_dir d;
  auto log = event_log::create(d.path(), small_segments()).value();
  std::mt19937_64 rng(21);
  fill(*log, rng, 3000, 30);
  event_filter f;
  f.types = {2};
  f.stream_prefixes = {"s-1"};
  const auto want = read_with_next(log->read(position{0}, f));
  ASSERT_FALSE(want.empty());
  for (size_t size : {size_t{1}, size_t{5}, size_t{64}}) {
    EXPECT_EQ(read_with_batches(log->read(position{0}, f), size, rng), want) << "batch size " << size;
    EXPECT_EQ(read_with_batches<event_ref>(log->read(position{0}, f), size, rng), want) << "refs, batch size " << size;
  }
}

TEST(ReaderBatch, StreamLifecycleHidesTheSameEvents) {
  temp_dir d;
  auto log = event_log::create(d.path(), small_segments()).value();
  std::mt19937_64 rng(31);
  fill(*log, rng, 2000, 20);
  ASSERT_OK(log->delete_stream(stream_id("s-3")));
  ASSERT_OK(log->truncate_stream(stream_id("s-4"), 5));
  fill(*log, rng, 500, 20, "t-");  // after the metadata records
  const auto want = read_with_next(log->read());
  for (const auto& e : want) {
    EXPECT_NE(e.stream, "s-3");
    if (e.stream == "s-4") {
      EXPECT_GE(e.version, 5u);
    }
  }
  for (size_t size : {size_t{1}, size_t{9}, size_t{64}, size_t{0}}) {
    EXPECT_EQ(read_with_batches(log->read(), size, rng), want) << "batch size " << size;
    EXPECT_EQ(read_with_batches<event_ref>(log->read(), size, rng), want) << "refs, batch size " << size;
  }
}

template <class View>
void follows_the_writer() {
  temp_dir d;
  auto log = event_log::create(d.path(), small_segments()).value();
  log_reader r = log->read();
  std::array<View, 16> v;
  ASSERT_OK_AND_ASSIGN(size_t none, r.next_batch(v));
  EXPECT_EQ(none, 0u);
  EXPECT_EQ(r.next_batch(std::span<View>()).value(), 0u);  // an empty span
  std::mt19937_64 rng(41);
  uint64_t seen = 0, appended = 0;
  for (int round = 0; round < 50; ++round) {
    const int k = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < k; ++i) {
      const std::string p = payload_for(rng, static_cast<int>(appended));
      event_data e;
      e.type = 1;
      e.payload = event_data::bytes(p);
      ASSERT_OK(log->append(stream_id("s-" + std::to_string(appended % 7)), expected_version::any(), e));
      ++appended;
    }
    for (;;) {
      ASSERT_OK_AND_ASSIGN(size_t n, r.next_batch(v));
      if (n == 0) break;
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(copy_of(v[i]).sequence, seen + i) << "round " << round;
      seen += n;
    }
    EXPECT_EQ(seen, appended) << "round " << round;
  }
}

TEST(ReaderBatch, FollowsTheWriterAndReturnsZeroAtTheCommittedEnd) {
  follows_the_writer<event_view>();
  follows_the_writer<event_ref>();
}

// Each event of the log is damaged in turn (one byte of its payload, the
// checksum no longer matching): reading in batches returns every event
// before it, then the error naming the segment file and offset, again on the
// next call, with the cursor on the damaged record.
template <class View>
void damaged_record_ends_the_batch() {
  temp_dir d;
  std::vector<got_event> all;
  {
    auto log = event_log::create(d.path(), small_segments()).value();
    std::mt19937_64 rng(51);
    fill(*log, rng, 700, 10);
    all = read_with_next(log->read());
    ASSERT_OK(log->close());
  }
  const uint64_t seg_bytes = small_segments().segment_bytes;
  std::mt19937_64 rng(52);
  for (size_t victim = 0; victim < all.size(); victim += 1 + rng() % 23) {
    const got_event& bad = all[victim];
    const uint64_t seg = bad.position / seg_bytes, off = bad.position % seg_bytes;
    char name[32];
    std::snprintf(name, sizeof name, "%020" PRIu64 ".seg", seg);
    const std::string file = d.path() + "/" + name;
    const uint64_t at = off + bad.record_bytes - 9;  // inside the payload or padding: covered by the checksum
    flip_byte(file, at);
    {
      auto log = event_log::open_read_only(d.path()).value();
      log_reader r = log->read();
      std::array<View, 64> v;
      size_t before = 0;
      status err;
      for (;;) {
        auto got = r.next_batch(v);
        if (!got.ok()) {
          err = got.error();
          break;
        }
        ASSERT_GT(got.value(), 0u) << "the damaged record at " << bad.position << " was read past";
        for (size_t i = 0; i < got.value(); ++i) ASSERT_EQ(copy_of(v[i]), all[before + i]);
        before += got.value();
      }
      EXPECT_EQ(before, victim);
      EXPECT_EQ(err.code(), errc::corruption) << describe(err);
      EXPECT_NE(err.message().find(name), std::string::npos) << describe(err);
      EXPECT_NE(err.message().find("offset " + std::to_string(off)), std::string::npos) << describe(err);
      EXPECT_EQ(r.where().value, bad.position);
      EXPECT_ERRC(r.next_batch(v), errc::corruption);
      EXPECT_EQ(r.where().value, bad.position);
    }
    flip_byte(file, at);  // undone: the next victim is the only damage
  }
}

TEST(ReaderBatch, ADamagedRecordEndsTheBatchBeforeItAndTheErrorComesNext) {
  damaged_record_ends_the_batch<event_view>();
  damaged_record_ends_the_batch<event_ref>();
}

// Rewrites the sequence number (record offset 24, FORMAT.md) of the record at
// `off` of `file` to `seq` and the record's checksum (offset 0: XXH3 of bytes
// 8 to its end) to match: a record changed on purpose or by a tool, which
// no checksum catches.
void reseal_sequence(const std::string& file, uint64_t off, uint32_t record_bytes, uint64_t seq) {
  write_at(file, off + 24, &seq, 8);
  std::vector<uint8_t> all = read_file(file);
  ASSERT_LE(off + record_bytes, all.size());
  const uint64_t sum = XXH3_64bits(all.data() + off + 8, record_bytes - 8);
  write_at(file, off, &sum, 8);
}

// Reads with `how` (0: next(), 1: next_batch into views, 2: into refs) until
// the end or an error: the events, and the error.
std::pair<std::vector<got_event>, status> read_until_error(log_reader& r, int how) {
  std::vector<got_event> out;
  std::array<event_view, 37> v;
  std::array<event_ref, 37> refs;
  for (;;) {
    result<size_t> got = size_t{0};
    if (how == 0) {
      auto one = r.next(v[0]);
      if (one.ok()) got = size_t{one.value()};
      else got = one.error();
    } else {
      got = how == 1 ? r.next_batch(v) : r.next_batch(refs);
    }
    if (!got.ok()) return {out, got.error()};
    if (got.value() == 0) return {out, status{}};
    for (size_t i = 0; i < got.value(); ++i) out.push_back(how == 2 ? copy_of(refs[i]) : copy_of(v[i]));
  }
}

// FORMAT.md: sequences are dense, a hole standing for the numbers it
// removed. An event whose sequence is not the one after the record before
// it, under a valid checksum, is refused by every way of reading the log as
// the chunk reader and the replay refuse it: the events before it, then
// corruption naming the file, the offset and both numbers, again on the next
// call, the cursor on it. Inside a segment and at a segment's first record
// (the numbers run on across segments).
TEST(ReaderBatch, AnEventOutOfSequenceUnderAValidChecksumIsRefused) {
  temp_dir d;
  std::vector<got_event> all;
  {
    auto log = event_log::create(d.path(), small_segments()).value();
    std::mt19937_64 rng(53);
    fill(*log, rng, 700, 10);
    all = read_with_next(log->read());
    ASSERT_OK(log->close());
  }
  const uint64_t seg_bytes = small_segments().segment_bytes;
  // Victims: some inside segments, every segment's first event, the last.
  std::vector<size_t> victims;
  for (size_t i = 1; i < all.size(); ++i)
    if (i % 41 == 0 || all[i].position / seg_bytes != all[i - 1].position / seg_bytes || i + 1 == all.size())
      victims.push_back(i);
  ASSERT_GE(victims.size(), 8u);
  for (size_t victim : victims) {
    const got_event& bad = all[victim];
    const uint64_t seg = bad.position / seg_bytes, off = bad.position % seg_bytes;
    char name[32];
    std::snprintf(name, sizeof name, "%020" PRIu64 ".seg", seg);
    const std::string file = d.path() + "/" + name;
    // One number back (a duplicate) or far ahead (a gap), in turn.
    const uint64_t wrong = victim % 2 ? bad.sequence - 1 : bad.sequence + 1000;
    reseal_sequence(file, off, bad.record_bytes, wrong);
    auto log = event_log::open_read_only(d.path()).value();
    for (int how = 0; how < 3; ++how) {
      SCOPED_TRACE("victim " + std::to_string(victim) + ", read " + std::to_string(how));
      log_reader r = log->read();
      auto [got, err] = read_until_error(r, how);
      ASSERT_EQ(got.size(), victim);
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], all[i]);
      EXPECT_EQ(err.code(), errc::corruption) << describe(err);
      EXPECT_NE(err.message().find(name), std::string::npos) << describe(err);
      EXPECT_NE(err.message().find("offset " + std::to_string(off) + ": sequence " + std::to_string(wrong) +
                                   ", expected " + std::to_string(bad.sequence)),
                std::string::npos)
          << describe(err);
      EXPECT_EQ(r.where().value, bad.position);
      auto again = read_until_error(r, how);
      EXPECT_TRUE(again.first.empty());
      EXPECT_EQ(again.second.code(), errc::corruption);
      EXPECT_EQ(r.where().value, bad.position);
    }
    // A reader placed on it takes its number as it finds it; the next
    // event, in order after the true number, is then the one refused.
    if (victim + 1 < all.size()) {
      log_reader r = log->read(position{bad.position});
      auto [got, err] = read_until_error(r, 1);
      ASSERT_EQ(got.size(), 1u);
      EXPECT_EQ(got[0].sequence, wrong);
      EXPECT_EQ(err.code(), errc::corruption) << describe(err);
      EXPECT_EQ(r.where().value, all[victim + 1].position);
    }
    // The subscription reads through the same reader.
    auto sub = subscription::open(*log, position{}).value();
    std::array<event_view, 50> v;
    size_t before = 0;
    status err;
    for (;;) {
      auto got = sub.next_batch(v, std::chrono::milliseconds(0));
      if (!got.ok()) {
        err = got.error();
        break;
      }
      if (got.value() == 0) break;
      before += got.value();
    }
    EXPECT_EQ(before, victim);
    EXPECT_EQ(err.code(), errc::corruption) << describe(err);
    log.reset();
    reseal_sequence(file, off, bad.record_bytes, bad.sequence);  // undone: the next victim is the only damage
  }
}

}  // namespace
