// Property test: random sequences of appends (single events, batches and
// multi-stream units of work, right and wrong expected versions, payloads of
// every size, small segments) and
// random close/reopen points, checked against an in-memory model after every
// reopen and at the end. Each seed is its own test, so a failure names it.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;

constexpr uint64_t kFixedClock = 1'650'000'000'000'000'000ull;
constexpr int kStreams = 50;

stream_key stream_number(int i) {
  // A few integer ids among the named ones (8 raw bytes of a different shape).
  if (i % 10 == 0) return stream_key::integer(1000 + uint64_t(i));
  return stream_key::named("aggregate-" + std::to_string(i));
}

size_t random_payload_size(std::mt19937_64& rng) {
  switch (rng() % 10) {
    case 0: return 0;
    case 1: return rng() % 8;
    case 2: return 4000 + rng() % 12000;  // a few of these per segment
    default: return rng() % 300;
  }
}

owned_event random_event(std::mt19937_64& rng) {
  owned_event e;
  e.type = uint32_t(rng() % 20);
  e.schema_version = uint16_t(1 + rng() % 3);
  e.content = rng() % 4 == 0 ? content_type::json : content_type::binary;
  e.timestamp_ns = rng() % 3 == 0 ? 0 : 1'600'000'000'000'000'000ull + rng() % 1'000'000'000'000ull;
  if (rng() % 2) e.event_id = random_id(rng);
  if (rng() % 3 == 0) e.correlation_id = random_id(rng);
  if (rng() % 4 == 0) e.causation_id = random_id(rng);
  e.payload = random_bytes(rng, random_payload_size(rng));
  return e;
}

// An expectation for a stream now at `actual`: right about two thirds of the time.
expected_version random_expectation(std::mt19937_64& rng, stream_version actual) {
  switch (rng() % 9) {
    case 0: return expected_version::any();
    case 1: return expected_version::no_stream();
    case 2: return expected_version::stream_exists();
    case 3: return expected_version::exact(actual + 1 + rng() % 3);  // ahead
    case 4: return expected_version::exact(actual > 0 ? rng() % actual : 5);  // behind
    default: return expected_version::exact(actual);
  }
}

class ModelProperty : public testing::TestWithParam<int> {};

TEST_P(ModelProperty, RandomAppendsAndReopensReadBackExactlyAsTheModelSays) {
  const int seed = GetParam();
  std::mt19937_64 rng(0xC0FFEE + seed);
  temp_dir dir;
  // Mostly 64 KiB segments to force frequent roll-over.
  const uint64_t segment_bytes = seed % 4 == 3 ? (1 << 20) : (64 << 10);
  log_options o;
  o.segment_bytes = segment_bytes;
  o.clock = [] { return kFixedClock; };
  o.prepare_next_segment = seed % 2 == 0;
  // Durability changes when bytes reach the disk, never what reads back.
  o.mode = seed % 5 == 1 ? durability::group : seed % 5 == 2 ? durability::sync : durability::none;
  log_model model(segment_bytes, kFixedClock);

  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
  const int ops = int(scaled(400));
  int reopens = 0;
  int multi_written = 0, multi_refused = 0;
  for (int op = 0; op < ops; ++op) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " op " + std::to_string(op));
    const stream_key s = stream_number(int(rng() % kStreams));
    const uint64_t roll = rng() % 100;
    if (roll < 2) {
      // Close (or just drop) and reopen: everything acknowledged must be there.
      if (rng() % 2)
        ASSERT_OK(log->close());
      log.reset();
      ASSERT_OK_AND_ASSIGN(log, event_log::open(dir.path(), o));
      ++reopens;
      ASSERT_TRUE(log_matches_model(*log, model)) << "after reopen " << reopens;
      continue;
    }
    std::vector<owned_event> evs;
    if (roll < 4) {
      // A batch too large for any segment: refused whole.
      for (int i = 0; i < 4; ++i) {
        owned_event e = random_event(rng);
        e.payload = random_bytes(rng, segment_bytes / 3);
        evs.push_back(std::move(e));
      }
      ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s, expected_version::any(), evs));
      continue;
    }
    if (roll < 14) {
      // A multi-stream unit of work: 1-4 streams (now and then one twice, or
      // with no events at all), each with its own expectation.
      std::vector<log_model::part> parts;
      const size_t k = 1 + rng() % 4;
      uint64_t records = 0;
      for (size_t i = 0; i < k; ++i) {
        log_model::part p;
        p.stream = i == 0 ? s : stream_number(int(rng() % kStreams));
        p.expected = rng() % 3 ? expected_version::exact(model.version_of(p.stream))
                               : random_expectation(rng, model.version_of(p.stream));
        const size_t n = rng() % 5 == 0 ? 0 : 1 + rng() % 3;
        for (size_t j = 0; j < n; ++j) {
          owned_event e = random_event(rng);
          const uint64_t r = record_bytes_for(e, p.stream.bytes.size());
          if (records + r > segment_record_capacity(segment_bytes)) break;
          records += r;
          p.events.push_back(std::move(e));
        }
        parts.push_back(std::move(p));
      }
      const uint64_t before = model.next_sequence();
      ASSERT_NO_FATAL_FAILURE(append_multi_checked(*log, model, parts));
      (model.next_sequence() > before ? multi_written : multi_refused) += 1;
      continue;
    }
    const size_t n = roll < 30 ? 2 + rng() % 7 : 1;
    uint64_t records = 0;
    for (size_t i = 0; i < n; ++i) {
      owned_event e = random_event(rng);
      // Keep ordinary batches within a segment: which check wins when a batch
      // is both too large and expects the wrong version is not specified.
      uint64_t r = record_bytes_for(e, s.bytes.size());
      if (records + r > segment_record_capacity(segment_bytes)) break;
      records += r;
      evs.push_back(std::move(e));
    }
    const append_form form = rng() % 8 == 0 ? append_form::batch : append_form::natural;
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, s,
                                           random_expectation(rng, model.version_of(s)), evs, form));
    if (rng() % 50 == 0) ASSERT_OK(log->flush());
    if (op % 100 == 99) {
      ASSERT_TRUE(log_matches_model(*log, model));
    }
  }
  ASSERT_TRUE(log_matches_model(*log, model));
  // Both outcomes of the multi-stream append were exercised.
  EXPECT_GT(multi_written, 0);
  EXPECT_GT(multi_refused, 0);
  std::printf("seed %d: %d multi-stream appends written, %d refused\n", seed, multi_written, multi_refused);
  ASSERT_OK(log->close());
  log.reset();
  ASSERT_OK_AND_ASSIGN(log, event_log::open(dir.path(), o));
  EXPECT_TRUE(log_matches_model(*log, model));
  ASSERT_OK(log->close());
  log.reset();
  // verify agrees, and a read-only open sees the same log.
  ASSERT_OK_AND_ASSIGN(verify_report rep, verify_log(dir.path()));
  EXPECT_OK(rep.first_problem);
  EXPECT_EQ(rep.events, model.next_sequence());
  ASSERT_OK_AND_ASSIGN(log_stats st, stat_log(dir.path()));
  EXPECT_EQ(st.events, model.next_sequence());
  EXPECT_EQ(st.segment_bytes, segment_bytes);
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(dir.path(), o));
  EXPECT_TRUE(log_matches_model(*ro, model));
}

INSTANTIATE_TEST_SUITE_P(Seeds, ModelProperty, testing::Range(0, 40));

}  // namespace
