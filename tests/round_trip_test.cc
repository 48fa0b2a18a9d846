// Round trips through the public API: every field of an event comes back as
// it went in, across segment roll-over and close/reopen; limits and the
// optimistic-concurrency check refuse what they must and write nothing then.
#include <time.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;

constexpr uint64_t k64KiB = 64 << 10;
constexpr uint64_t kFixedClock = 1'700'000'000'123'456'789ull;

log_options options_with(uint64_t segment_bytes, bool fixed_clock = true) {
  log_options o;
  o.segment_bytes = segment_bytes;
  if (fixed_clock) o.clock = [] { return kFixedClock; };
  return o;
}

owned_event simple_event(std::mt19937_64& rng, size_t payload_bytes, uint32_t type = 7) {
  owned_event e;
  e.type = type;
  e.payload = random_bytes(rng, payload_bytes);
  return e;
}

uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

// ---------------------------------------------------------------------------
// Fields

TEST(RoundTrip, EveryFieldOfOneEventReadsBackExactly) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  std::mt19937_64 rng(1);
  owned_event e;
  e.type = 0xDEADBEEF;
  e.schema_version = 0xFFFF;
  e.content = content_type::json;
  e.timestamp_ns = 1234567890123456789ull;
  std::string json = R"({"order":"o-1","qty":3})";
  e.payload.assign(reinterpret_cast<const std::byte*>(json.data()),
                   reinterpret_cast<const std::byte*>(json.data() + json.size()));
  e.event_id = random_id(rng);
  e.correlation_id = random_id(rng);
  e.causation_id = random_id(rng);
  stream_key s = stream_key::named("order-1");

  ASSERT_OK_AND_ASSIGN(auto r, log->append(s.id(), expected_version::no_stream(), e.data()));
  EXPECT_EQ(r.first_sequence.value, 0u);
  EXPECT_EQ(r.first_version, 1u);
  EXPECT_EQ(r.last_version, 1u);

  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  ASSERT_EQ(all.events.size(), 1u);
  const event_view& v = all.events[0];
  EXPECT_EQ(v.position, r.first);
  EXPECT_EQ(v.position.value + v.record_bytes, r.end.value);
  EXPECT_EQ(v.sequence.value, 0u);
  EXPECT_EQ(v.stream, "order-1");
  EXPECT_FALSE(v.stream_is_integer);
  EXPECT_EQ(v.version, 1u);
  EXPECT_TRUE(v.previous.is_none()) << v.previous.value;
  EXPECT_EQ(v.type, 0xDEADBEEFu);
  EXPECT_EQ(v.schema_version, 0xFFFF);
  EXPECT_EQ(v.timestamp_ns, 1234567890123456789ull);
  EXPECT_EQ(v.content, content_type::json);
  // A single-event append is an atomic append of one: it opens and closes its batch.
  EXPECT_TRUE(v.batch_begin);
  EXPECT_TRUE(v.batch_end);
  ASSERT_NE(v.event_id, nullptr);
  ASSERT_NE(v.correlation_id, nullptr);
  ASSERT_NE(v.causation_id, nullptr);
  EXPECT_EQ(*v.event_id, *e.event_id);
  EXPECT_EQ(*v.correlation_id, *e.correlation_id);
  EXPECT_EQ(*v.causation_id, *e.causation_id);
  EXPECT_EQ(as_sv(v.payload), json);
  EXPECT_EQ(v.record_bytes, record_bytes_for(e, s.bytes.size()));
}

TEST(RoundTrip, DefaultedTimestampComesFromTheConfiguredClock) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(2);
  owned_event given = simple_event(rng, 10);
  given.timestamp_ns = 5;
  ASSERT_NO_FATAL_FAILURE(
      append_checked(*log, model, stream_key::named("a"), expected_version::any(), {simple_event(rng, 10)}));
  ASSERT_NO_FATAL_FAILURE(
      append_checked(*log, model, stream_key::named("a"), expected_version::any(), {given}));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(RoundTrip, DefaultedTimestampUsesTheRealtimeClockWhenNoClockIsSet) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB, false)));
  std::mt19937_64 rng(3);
  owned_event e = simple_event(rng, 10);
  uint64_t before = realtime_ns();
  ASSERT_OK(log->append("s", expected_version::any(), e.data()));
  uint64_t after = realtime_ns();
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  ASSERT_EQ(all.events.size(), 1u);
  EXPECT_GE(all.events[0].timestamp_ns, before);
  EXPECT_LE(all.events[0].timestamp_ns, after);
}

TEST(RoundTrip, IdsRoundTripInEveryCombinationOfPresentAndAbsent) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(4);
  for (int mask = 0; mask < 8; ++mask) {
    owned_event e = simple_event(rng, 5 + mask);
    if (mask & 1) e.event_id = random_id(rng);
    if (mask & 2) e.correlation_id = random_id(rng);
    if (mask & 4) e.causation_id = random_id(rng);
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("ids"),
                                           expected_version::any(), {e}));
  }
  // And the same inside one batch, where each record carries its own set.
  std::vector<owned_event> batch;
  for (int mask = 7; mask >= 0; --mask) {
    owned_event e = simple_event(rng, 3);
    if (mask & 1) e.event_id = random_id(rng);
    if (mask & 2) e.correlation_id = random_id(rng);
    if (mask & 4) e.causation_id = random_id(rng);
    batch.push_back(e);
  }
  ASSERT_NO_FATAL_FAILURE(
      append_checked(*log, model, stream_key::named("ids"), expected_version::exact(8), batch));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(RoundTrip, StreamIdsOfEveryLengthFrom1To255BytesRoundTrip) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(1 << 20)));
  log_model model(1 << 20, kFixedClock);
  std::mt19937_64 rng(5);
  for (size_t len = 1; len <= kMaxStreamIdBytes; ++len) {
    // Arbitrary bytes, NUL and 0xFF included: a stream id is bytes, not a C string.
    std::string id(len, '\0');
    for (size_t i = 0; i < len; ++i) id[i] = static_cast<char>((len * 31 + i * 7) & 0xFF);
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named(id),
                                           expected_version::no_stream(), {simple_event(rng, len % 17)}));
  }
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(RoundTrip, IntegerStreamIdsRoundTripAndAreFlaggedAsIntegers) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(6);
  const uint64_t ids[] = {0, 1, 255, 256, 0x0102030405060708ull, UINT64_MAX};
  for (uint64_t id : ids)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::integer(id),
                                           expected_version::no_stream(), {simple_event(rng, 9)}));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::integer(256),
                                         expected_version::exact(1), {simple_event(rng, 9)}));
  EXPECT_TRUE(log_matches_model(*log, model));
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  ASSERT_EQ(all.events.size(), std::size(ids) + 1);
  for (size_t i = 0; i < std::size(ids); ++i) {
    EXPECT_TRUE(all.events[i].stream_is_integer);
    EXPECT_EQ(all.events[i].stream_as_u64(), ids[i]);
    EXPECT_EQ(all.events[i].stream.size(), 8u);
  }
  EXPECT_EQ(log->version_of(stream_id::from_u64(256)), 2u);
  EXPECT_EQ(log->version_of(stream_id::from_u64(257)), 0u);
}

TEST(RoundTrip, PayloadsFromEmptyToSeveralMiBRoundTrip) {
  temp_dir dir;
  const uint64_t seg = 8 << 20;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(seg)));
  log_model model(seg, kFixedClock);
  std::mt19937_64 rng(7);
  const size_t sizes[] = {0, 1, 7, 8, 9, 63, 64, 65, 4095, 4096, 4097, 65536, (1 << 20) + 3, (3 << 20) + 5};
  for (size_t n : sizes)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("blob"),
                                           expected_version::any(), {simple_event(rng, n)}));
  EXPECT_TRUE(log_matches_model(*log, model));
  ASSERT_OK(log->close());
  ASSERT_OK_AND_ASSIGN(log, event_log::open(dir.path(), options_with(seg)));
  EXPECT_TRUE(log_matches_model(*log, model));
}

// ---------------------------------------------------------------------------
// Segments

TEST(Segments, RollOverKeepsEveryEventAcrossThousandsOf64KiBSegmentAppends) {
  temp_dir dir;
  log_options o = options_with(k64KiB);
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(8);
  const int n = 3000;
  for (int i = 0; i < n; ++i) {
    stream_key s = stream_key::named("s-" + std::to_string(i % 37));
    std::vector<owned_event> evs;
    size_t count = (i % 10 == 0) ? 1 + rng() % 6 : 1;
    for (size_t k = 0; k < count; ++k) evs.push_back(simple_event(rng, rng() % 400, uint32_t(i)));
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::any(), evs));
  }
  EXPECT_TRUE(log_matches_model(*log, model));

  // The events span many segments, each a whole 64 KiB file.
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  uint64_t last_segment = segment_of(all.events.back().position, k64KiB);
  EXPECT_GE(last_segment, 5u);
  log_stats st = log->stats();
  EXPECT_EQ(st.segment_bytes, k64KiB);
  EXPECT_GE(st.segments, last_segment + 1);
  EXPECT_EQ(st.events, model.next_sequence());
  EXPECT_EQ(st.streams, model.versions().size());
  std::vector<std::string> files = list_segments(dir.path());
  ASSERT_GE(files.size(), last_segment + 1);
  for (uint64_t i = 0; i <= last_segment; ++i) {
    EXPECT_EQ(files[i], segment_path(dir.path(), i));
    EXPECT_EQ(fs::file_size(files[i]), k64KiB) << files[i];
  }

  ASSERT_OK(log->close());
  ASSERT_OK_AND_ASSIGN(log, event_log::open(dir.path(), o));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(Segments, BatchThatDoesNotFitTheRestOfASegmentMovesWholeToTheNext) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(9);
  // Fill most of segment 0, then append a batch bigger than what is left.
  for (int i = 0; i < 50; ++i)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("fill"),
                                           expected_version::any(), {simple_event(rng, 1000)}));
  std::vector<owned_event> batch;
  for (int i = 0; i < 20; ++i) batch.push_back(simple_event(rng, 1000));
  ASSERT_NO_FATAL_FAILURE(
      append_checked(*log, model, stream_key::named("batch"), expected_version::no_stream(), batch));
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  ASSERT_EQ(all.events.size(), 70u);
  uint64_t first_seg = segment_of(all.events[50].position, k64KiB);
  for (size_t i = 50; i < 70; ++i)
    EXPECT_EQ(segment_of(all.events[i].position, k64KiB), first_seg) << "batch spans segments";
  EXPECT_EQ(first_seg, 1u);
  EXPECT_TRUE(log_matches_model(*log, model));
}

// ---------------------------------------------------------------------------
// Reopen

TEST(Reopen, CloseAndReopenKeepsEverythingAndContinuesNumbering) {
  temp_dir dir;
  log_options o = options_with(k64KiB);
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(10);
  position end_before_close;
  for (int round = 0; round < 4; ++round) {
    auto opened = round == 0 ? event_log::create(dir.path(), o) : event_log::open(dir.path(), o);
    ASSERT_OK(opened);
    auto log = std::move(opened).value();
    ASSERT_TRUE(log_matches_model(*log, model)) << "after reopen " << round;
    if (round > 0) {
      EXPECT_GE(log->committed_position().value, end_before_close.value);
    }
    for (int i = 0; i < 300; ++i) {
      stream_key s = stream_key::named("r-" + std::to_string(rng() % 9));
      ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(model.version_of(s)),
                                             {simple_event(rng, rng() % 300)}));
    }
    // Positions after a reopen continue past everything written before it.
    if (round > 0) {
      read_outcome all = read_all(*log);
      ASSERT_OK(all.error);
      EXPECT_GE(all.events[model.next_sequence() - 300].position.value, end_before_close.value);
    }
    end_before_close = log->committed_position();
    ASSERT_OK(log->close());
  }
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir.path(), o));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(Reopen, DestroyingTheLogWithoutCloseKeepsEverything) {
  temp_dir dir;
  log_options o = options_with(k64KiB);
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(11);
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
    for (int i = 0; i < 200; ++i)
      ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("d"), expected_version::any(),
                                             {simple_event(rng, rng() % 500)}));
  }
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir.path(), o));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(Reopen, OpenOrCreateCreatesOnceThenOpens) {
  temp_dir dir;
  log_options o = options_with(k64KiB);
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(12);
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::open_or_create(dir.sub("new"), o));
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("x"),
                                           expected_version::no_stream(), {simple_event(rng, 4)}));
  }
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open_or_create(dir.sub("new"), o));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(Reopen, CreateRefusesADirectoryThatAlreadyHoldsALog) {
  temp_dir dir;
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
    std::mt19937_64 rng(13);
    ASSERT_OK(log->append("x", expected_version::any(), simple_event(rng, 3).data()));
  }
  auto again = event_log::create(dir.path(), options_with(k64KiB));
  EXPECT_FALSE(again.ok());
  // And the refused create destroyed nothing.
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir.path(), options_with(k64KiB)));
  EXPECT_EQ(log->next_sequence().value, 1u);
}

TEST(Reopen, SegmentSizeIsFixedAtCreation) {
  temp_dir dir;
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  }
  // Opening with the default (64 MiB) options must use the log's own 64 KiB.
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir.path()));
  EXPECT_EQ(log->stats().segment_bytes, k64KiB);
}

// ---------------------------------------------------------------------------
// Limits and arguments

TEST(Limits, SegmentSizeMustBeAPowerOfTwoOfAtLeast64KiB) {
  temp_dir dir;
  EXPECT_ERRC(event_log::create(dir.sub("a"), options_with(32 << 10)), errc::invalid_argument);
  EXPECT_ERRC(event_log::create(dir.sub("b"), options_with(100000)), errc::invalid_argument);
  EXPECT_ERRC(event_log::create(dir.sub("c"), options_with(0)), errc::invalid_argument);
  EXPECT_OK(event_log::create(dir.sub("d"), options_with(k64KiB)));
}

TEST(Limits, EventTooLargeForASegmentIsRefusedAndNothingIsWritten) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(14);
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("big"),
                                         expected_version::any(), {simple_event(rng, 100)}));
  // append_checked predicts too_large and checks the log is untouched.
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("big"),
                                         expected_version::any(), {simple_event(rng, k64KiB)}));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("big"),
                                         expected_version::any(), {simple_event(rng, 10 << 20)}));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("big"),
                                         expected_version::any(), {simple_event(rng, 100)}));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(Limits, BatchTooLargeForASegmentIsRefusedWhole) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(15);
  std::vector<owned_event> batch;
  for (int i = 0; i < 5; ++i) batch.push_back(simple_event(rng, 20000));  // each fits, all do not
  ASSERT_NO_FATAL_FAILURE(
      append_checked(*log, model, stream_key::named("b"), expected_version::any(), batch));
  EXPECT_EQ(log->version_of("b"), 0u);
  batch.resize(2);
  ASSERT_NO_FATAL_FAILURE(
      append_checked(*log, model, stream_key::named("b"), expected_version::any(), batch));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(Limits, LargestEventThatFitsAnEmptySegmentIsAccepted) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(16);
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                         expected_version::any(), {simple_event(rng, 10)}));
  // 72 + 1 (stream) + payload == the whole record area of a segment (less the
  // 24 bytes kept for the segment-end record, docs/FORMAT.md section 10); it
  // must roll over to a fresh segment and fit there exactly.
  size_t payload = segment_record_capacity(k64KiB) - 72 - 1;
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                         expected_version::any(), {simple_event(rng, payload)}));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                         expected_version::any(), {simple_event(rng, payload + 8)}));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                         expected_version::any(), {simple_event(rng, 10)}));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(Limits, StreamIdOfZeroBytesIsAnInvalidArgument) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  std::mt19937_64 rng(17);
  owned_event e = simple_event(rng, 3);
  EXPECT_ERRC(log->append(stream_id(std::string_view()), expected_version::any(), e.data()),
              errc::invalid_argument);
  std::vector<event_data> batch{e.data(), e.data()};
  EXPECT_ERRC(log->append(stream_id(""), expected_version::any(), batch), errc::invalid_argument);
  EXPECT_EQ(log->next_sequence().value, 0u);
}

TEST(Limits, StreamIdOf256BytesIsAnInvalidArgumentAnd255IsFine) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  std::mt19937_64 rng(18);
  owned_event e = simple_event(rng, 3);
  std::string too_long(256, 'x');
  EXPECT_ERRC(log->append(stream_id(std::string_view(too_long)), expected_version::any(), e.data()),
              errc::invalid_argument);
  EXPECT_EQ(log->next_sequence().value, 0u);
  std::string longest(255, 'x');
  EXPECT_OK(log->append(stream_id(std::string_view(longest)), expected_version::any(), e.data()));
}

TEST(Limits, EmptyBatchWritesNothing) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  auto r = log->append("s", expected_version::any(), std::span<const event_data>());
  // Either refused or a no-op; never an event, never a stream.
  if (!r.ok()) EXPECT_ERRC(r, errc::invalid_argument);
  EXPECT_EQ(log->next_sequence().value, 0u);
  EXPECT_FALSE(log->stream_exists("s"));
}

// ---------------------------------------------------------------------------
// Versions and expected versions

TEST(Versions, VersionOfAndStreamExistsFollowAppends) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  std::mt19937_64 rng(19);
  owned_event e = simple_event(rng, 3);
  EXPECT_EQ(log->version_of("a"), 0u);
  EXPECT_FALSE(log->stream_exists("a"));
  ASSERT_OK(log->append("a", expected_version::any(), e.data()));
  ASSERT_OK(log->append("a", expected_version::any(), e.data()));
  ASSERT_OK(log->append("b", expected_version::any(), e.data()));
  EXPECT_EQ(log->version_of("a"), 2u);
  EXPECT_EQ(log->version_of("b"), 1u);
  EXPECT_TRUE(log->stream_exists("a"));
  EXPECT_FALSE(log->stream_exists("c"));
  // Prefixes and extensions are other streams.
  EXPECT_EQ(log->version_of("aa"), 0u);
  EXPECT_EQ(log->version_of(stream_id(std::string_view("a\0", 2))), 0u);
}

TEST(ExpectedVersion, AnyAppendsWhetherOrNotTheStreamExists) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(20);
  for (int i = 0; i < 3; ++i)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                           expected_version::any(), {simple_event(rng, 3)}));
  EXPECT_EQ(log->version_of("s"), 3u);
}

TEST(ExpectedVersion, NoStreamAcceptsOnlyAStreamThatDoesNotExist) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(21);
  stream_key s = stream_key::named("s");
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::no_stream(), {simple_event(rng, 3)}));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::no_stream(), {simple_event(rng, 3)}));
  auto r = log->append(s.id(), expected_version::no_stream(), simple_event(rng, 3).data());
  ASSERT_ERRC(r, errc::wrong_expected_version);
  EXPECT_EQ(r.error().actual_version(), 1u);
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(ExpectedVersion, StreamExistsAcceptsOnlyAnExistingStream) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(22);
  stream_key s = stream_key::named("s");
  auto r = log->append(s.id(), expected_version::stream_exists(), simple_event(rng, 3).data());
  ASSERT_ERRC(r, errc::wrong_expected_version);
  EXPECT_EQ(r.error().actual_version(), 0u);
  EXPECT_FALSE(log->stream_exists(s.id()));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::any(), {simple_event(rng, 3)}));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::stream_exists(), {simple_event(rng, 3)}));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(ExpectedVersion, ExactAcceptsOnlyTheCurrentVersion) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(23);
  stream_key s = stream_key::named("s");
  // exact(0) means "the stream does not exist yet".
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(0), {simple_event(rng, 3)}));
  for (stream_version v = 1; v < 5; ++v) {
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(v + 1), {simple_event(rng, 3)}));
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(v - 1), {simple_event(rng, 3)}));
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(v), {simple_event(rng, 3)}));
  }
  EXPECT_EQ(log->version_of(s.id()), 5u);
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(ExpectedVersion, WrongVersionReportsTheActualVersionWritesNothingAndLeavesTheLogUsable) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(24);
  stream_key s = stream_key::named("acct-9");
  for (int i = 0; i < 4; ++i)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::any(), {simple_event(rng, 8)}));
  const position committed = log->committed_position();
  const position written = log->written_position();
  auto r = log->append(s.id(), expected_version::exact(2), simple_event(rng, 8).data());
  ASSERT_ERRC(r, errc::wrong_expected_version);
  EXPECT_EQ(r.error().actual_version(), 4u);
  EXPECT_EQ(log->committed_position(), committed);
  EXPECT_EQ(log->written_position(), written);
  std::vector<owned_event> batch{simple_event(rng, 8), simple_event(rng, 8)};
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(3), batch));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(4), batch));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("other"),
                                         expected_version::no_stream(), batch));
  EXPECT_TRUE(log_matches_model(*log, model));
  ASSERT_OK(log->close());
  ASSERT_OK_AND_ASSIGN(log, event_log::open(dir.path(), options_with(k64KiB)));
  EXPECT_TRUE(log_matches_model(*log, model));
}

// ---------------------------------------------------------------------------
// Batches

TEST(Batch, VersionsAreConsecutiveAndTheFlagsFrameTheBatch) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(25);
  stream_key s = stream_key::named("cart");
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::any(), {simple_event(rng, 5)}));
  std::vector<owned_event> batch;
  for (int i = 0; i < 6; ++i) batch.push_back(simple_event(rng, 10 * i, 100 + i));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(1), batch));
  // A batch of one through the span overload is also framed.
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(7),
                                         {simple_event(rng, 5)}, append_form::batch));
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  ASSERT_EQ(all.events.size(), 8u);
  for (size_t i = 1; i <= 6; ++i) {
    EXPECT_EQ(all.events[i].version, i + 1);
    EXPECT_EQ(all.events[i].sequence.value, i);
    EXPECT_EQ(all.events[i].batch_begin, i == 1);
    EXPECT_EQ(all.events[i].batch_end, i == 6);
    EXPECT_EQ(all.events[i].previous, all.events[i - 1].position);
  }
  EXPECT_TRUE(all.events[7].batch_begin && all.events[7].batch_end);
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST(Batch, ConflictRefusesTheWholeBatch) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(26);
  stream_key s = stream_key::named("cart");
  std::vector<owned_event> batch;
  for (int i = 0; i < 4; ++i) batch.push_back(simple_event(rng, 30));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::no_stream(), batch));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::no_stream(), batch));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(3), batch));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::exact(4), batch));
  EXPECT_EQ(log->version_of(s.id()), 8u);
  EXPECT_TRUE(log_matches_model(*log, model));
}

// ---------------------------------------------------------------------------
// Readers and watermarks

TEST(Reader, StartsAtAGivenPositionAndReportsWhereItIs) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  std::mt19937_64 rng(27);
  for (int i = 0; i < 500; ++i)
    ASSERT_OK(log->append("s", expected_version::any(), simple_event(rng, rng() % 300).data()));
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  ASSERT_EQ(all.events.size(), 500u);
  for (size_t k : {size_t{0}, size_t{1}, size_t{250}, size_t{499}}) {
    log_reader r = log->read(all.events[k].position);
    EXPECT_EQ(r.where(), all.events[k].position);
    event_view v;
    ASSERT_OK_AND_ASSIGN(bool got, r.next(v));
    ASSERT_TRUE(got);
    EXPECT_EQ(v.sequence.value, k);
    if (k + 1 < all.events.size()) {
      EXPECT_EQ(r.where(), all.events[k + 1].position);
    }
  }
  log_reader r = log->read();
  r.seek(all.events[300].position);
  event_view v;
  ASSERT_OK_AND_ASSIGN(bool got, r.next(v));
  ASSERT_TRUE(got);
  EXPECT_EQ(v.sequence.value, 300u);
  // At the end: no event, no error, and the reader follows later appends.
  log_reader tail = log->read(log->committed_position());
  ASSERT_OK_AND_ASSIGN(bool more, tail.next(v));
  EXPECT_FALSE(more);
  EXPECT_EQ(tail.committed(), log->committed_position());
  ASSERT_OK(log->append("s", expected_version::any(), simple_event(rng, 3).data()));
  ASSERT_OK_AND_ASSIGN(more, tail.next(v));
  EXPECT_TRUE(more);
  EXPECT_EQ(v.sequence.value, 500u);
}

// The reader decodes inside a window of records it knows are committed
// (engine/log_reader.cc): appends that land after the window was taken, seeks
// backwards and forwards, and roll-overs must all be seen exactly as a
// reader without a window would see them. Random interleaving, fixed seed.
TEST(Reader, FollowsAppendsAndSeeksAcrossSegmentsExactlyInAnyInterleaving) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    temp_dir dir;
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
    std::mt19937_64 rng(seed);
    std::vector<position> at;  // at[k]: position of event k
    log_reader r = log->read();
    uint64_t next = 0;  // the sequence r must return next
    for (int step = 0; step < 3000; ++step) {
      const uint64_t what = rng() % 10;
      if (what < 4) {  // append a batch of 1-3 events of 0-2000 bytes
        std::vector<event_data> batch;
        std::vector<owned_event> keep;
        const size_t n = 1 + rng() % 3;
        for (size_t i = 0; i < n; ++i) keep.push_back(simple_event(rng, rng() % 2000));
        for (owned_event& e : keep) batch.push_back(e.data());
        const std::string name = "s" + std::to_string(rng() % 4);
        ASSERT_OK_AND_ASSIGN(append_result a, log->append(stream_id(std::string_view(name)),
                                                          expected_version::any(), batch));
        ASSERT_EQ(a.first_sequence.value, at.size());
        log_reader probe = log->read(a.first);
        for (size_t i = 0; i < n; ++i) {
          event_view v;
          ASSERT_OK_AND_ASSIGN(bool got, probe.next(v));
          ASSERT_TRUE(got);
          at.push_back(v.position);
        }
      } else if (what < 9) {  // read a few
        const int k = 1 + static_cast<int>(rng() % 8);
        for (int i = 0; i < k; ++i) {
          event_view v;
          ASSERT_OK_AND_ASSIGN(bool got, r.next(v));
          ASSERT_EQ(got, next < at.size()) << "step " << step;
          if (!got) {
            EXPECT_EQ(r.where(), log->committed_position());
            break;
          }
          ASSERT_EQ(v.sequence.value, next) << "step " << step;
          ASSERT_EQ(v.position, at[next]);
          ++next;
          // where() may name a segment-end record just before the next event.
          ASSERT_LE(r.where().value, (next < at.size() ? at[next] : log->committed_position()).value);
        }
      } else if (!at.empty()) {  // seek to any event, or to the end
        next = rng() % (at.size() + 1);
        r.seek(next < at.size() ? at[next] : log->committed_position());
      }
    }
    EXPECT_GT(at.back().value >> 16, 3u) << "the test should cross several segments";
  }
}

TEST(Watermarks, WrittenCommittedAndDurableAreOrderedAndFlushCatchesUp) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), options_with(k64KiB)));
  std::mt19937_64 rng(28);
  position end;
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK_AND_ASSIGN(auto r, log->append("s", expected_version::any(), simple_event(rng, 50).data()));
    end = r.end;
    EXPECT_LE(log->durable_position(), log->committed_position());
    EXPECT_LE(log->committed_position(), log->written_position());
    EXPECT_GE(log->committed_position(), r.end);
  }
  ASSERT_OK(log->flush());
  EXPECT_GE(log->durable_position(), end);
  ASSERT_OK(log->wait_durable(end));
  EXPECT_EQ(log->stats().events, 100u);
}

TEST(Watermarks, FlushAfterSeveralRollOversMakesEverythingDurable) {
  // In mode none nothing is synced until flush: the first flush then covers
  // segments that were sealed (and perhaps remapped) since.
  for (bool prepare : {false, true}) {
    SCOPED_TRACE(prepare ? "prepared segments" : "segments made on demand");
    temp_dir dir;
    log_options o = options_with(k64KiB);
    o.prepare_next_segment = prepare;
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
    std::mt19937_64 rng(32);
    while (log->committed_position().value < 5 * k64KiB)
      ASSERT_OK(log->append("s", expected_version::any(), simple_event(rng, 300).data()));
    ASSERT_OK(log->flush());
    EXPECT_EQ(log->durable_position(), log->committed_position());
    ASSERT_OK(log->append("s", expected_version::any(), simple_event(rng, 300).data()));
  }
}

TEST(Watermarks, SyncModeAppendsAreDurableWhenAcknowledged) {
  temp_dir dir;
  log_options o = options_with(k64KiB);
  o.mode = durability::sync;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
  std::mt19937_64 rng(29);
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(auto r, log->append("s", expected_version::any(), simple_event(rng, 50).data()));
    EXPECT_GE(log->durable_position(), r.end);
  }
}

TEST(Watermarks, GroupModeWaitDurableReturnsOnceTheAppendIsDurable) {
  temp_dir dir;
  log_options o = options_with(k64KiB);
  o.mode = durability::group;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
  std::mt19937_64 rng(30);
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(auto r, log->append("s", expected_version::any(), simple_event(rng, 50).data()));
    ASSERT_OK(log->wait_durable(r.end));
    EXPECT_GE(log->durable_position(), r.end);
  }
}

TEST(ReadOnlyLog, RefusesAppendsAndReadsWhatIsThere) {
  temp_dir dir;
  log_options o = options_with(k64KiB);
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(31);
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
    for (int i = 0; i < 50; ++i)
      ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                             expected_version::any(), {simple_event(rng, 40)}));
  }
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(dir.path(), o));
  EXPECT_TRUE(ro->is_read_only());
  EXPECT_ERRC(ro->append("s", expected_version::any(), simple_event(rng, 3).data()), errc::read_only);
  EXPECT_TRUE(log_matches_model(*ro, model));
}

}  // namespace

namespace {

using namespace varve;
using namespace varve_test;

TEST(TypeRegistry, NamesGetDenseIdsFromOneThatPersist) {
  temp_dir dir;
  { ASSERT_OK(event_log::create(dir.path(), options_with(k64KiB))); }
  {
    ASSERT_OK_AND_ASSIGN(type_registry reg, type_registry::open(dir.path()));
    EXPECT_EQ(reg.find("OrderPlaced"), std::nullopt);
    ASSERT_OK_AND_ASSIGN(uint32_t placed, reg.id_for("OrderPlaced"));
    ASSERT_OK_AND_ASSIGN(uint32_t shipped, reg.id_for("OrderShipped"));
    ASSERT_OK_AND_ASSIGN(uint32_t again, reg.id_for("OrderPlaced"));
    EXPECT_EQ(placed, 1u);
    EXPECT_EQ(shipped, 2u);
    EXPECT_EQ(again, 1u);
    EXPECT_EQ(reg.name_of(2), std::optional<std::string_view>("OrderShipped"));
    EXPECT_EQ(reg.name_of(3), std::nullopt);
  }
  ASSERT_OK_AND_ASSIGN(type_registry reg, type_registry::open(dir.path()));
  EXPECT_EQ(reg.find("OrderPlaced"), std::optional<uint32_t>(1));
  EXPECT_EQ(reg.find("OrderShipped"), std::optional<uint32_t>(2));
  ASSERT_OK_AND_ASSIGN(uint32_t next, reg.id_for("OrderCancelled"));
  EXPECT_EQ(next, 3u);
  EXPECT_FALSE(fs::exists(dir.path() + "/types.partial"));
}

}  // namespace
