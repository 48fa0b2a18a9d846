// The logs the replay tests run over (replay_test, replay_merged_test): a
// random log over many small segments, and the positions of its records.
#pragma once

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "uring_test_util.h"
#include "varve/varve.h"

namespace varve_test::replay_logs {

using namespace varve;

constexpr uint64_t kSegmentBytes = 64 * 1024;
constexpr uint64_t kT0 = 1'700'000'000'000'000'000ull;

// A test run once per io backend (uring: skipped without it, failed in CI).
class backend_test : public testing::TestWithParam<io_backend> {
 protected:
  void SetUp() override { VARVE_SKIP_OR_FAIL_IN_CI_WITHOUT_URING(GetParam()); }
};

inline std::vector<position> record_positions(const event_log& log) {
  std::vector<position> out;
  log_reader r = log.read();
  event_view v;
  while (true) {
    auto got = r.next(v);
    if (!got.ok() || !got.value()) break;
    out.push_back(v.position);
  }
  return out;
}

// A random log: named streams in a few categories, integer ids, batches,
// payloads from empty to larger than a 4 KiB chunk, a rare type (99) in a few
// places only, timestamps rising with the log.
inline void fill_log(const std::string& dir, uint64_t seed, int events) {
  std::mt19937_64 rng(seed);
  log_options o;
  o.segment_bytes = kSegmentBytes;
  auto clock_now = std::make_shared<uint64_t>(kT0);
  o.clock = [clock_now] { return *clock_now += 1000; };
  auto log = event_log::create(dir, o);
  ASSERT_TRUE(log.ok()) << describe(log);
  std::vector<stream_key> streams;
  const char* cats[] = {"order-", "account-", "cart-", "nocat"};
  for (int i = 0; i < 60; ++i) {
    if (i % 12 == 0) streams.push_back(stream_key::integer(5000 + i));
    else streams.push_back(stream_key::named(std::string(cats[i % 4]) + std::to_string(i)));
  }
  int written = 0;
  while (written < events) {
    const stream_key& s = streams[rng() % streams.size()];
    const int n = rng() % 6 == 0 ? 1 + int(rng() % 5) : 1;
    std::vector<owned_event> batch(n);
    for (auto& e : batch) {
      e.type = uint32_t(rng() % 8);
      if (written > events / 2 && rng() % 997 == 0) e.type = 99;
      size_t len = rng() % 20 == 0 ? 5000 + rng() % 15000 : rng() % 300;
      e.payload = random_bytes(rng, len);
      if (rng() % 3 == 0) e.event_id = random_id(rng);
    }
    auto data = as_data(batch);
    auto r = log.value()->append(s.id(), expected_version::any(), data);
    ASSERT_TRUE(r.ok()) << describe(r);
    written += n;
  }
  ASSERT_TRUE(log.value()->close().ok());
}

inline std::unique_ptr<event_log> open_ro(const std::string& dir) {
  log_options o;
  auto log = event_log::open_read_only(dir, o);
  EXPECT_TRUE(log.ok()) << describe(log);
  return log.ok() ? std::move(log.value()) : nullptr;
}

// Every event record of the log in DIR: positions and lengths, in log order.
struct record_spans {
  std::vector<position> pos;
  std::vector<uint32_t> lens;
};
inline record_spans spans_of(const std::string& dir) {
  record_spans out;
  auto log = open_ro(dir);
  if (!log) return out;
  log_reader rd = log->read();
  event_view v;
  while (true) {
    auto got = rd.next(v);
    EXPECT_TRUE(got.ok()) << describe(got);
    if (!got.ok() || !got.value()) break;
    out.pos.push_back(v.position);
    out.lens.push_back(v.record_bytes);
  }
  return out;
}

// The index in `pos` of segment `seg`'s 65th event: an index sample, so the
// first record of a piece when pieces are small; pos.size() if none.
inline size_t index_sample(const std::vector<position>& pos, uint64_t seg) {
  size_t i = 0, in_seg = 0;
  for (; i < pos.size(); ++i)
    if (pos[i].value / kSegmentBytes == seg && in_seg++ == 64) break;
  return i;
}

// One bit of one record flipped (in DIR): a random record, or with
// `at_sample` the index sample of a random segment among 2-21. The record's
// position and the file offset of the flipped byte.
struct damage {
  uint64_t record = 0, offset = 0;
};
inline damage damage_a_record(const std::string& dir, const record_spans& r, std::mt19937_64& rng,
                              bool at_sample) {
  size_t k = rng() % r.pos.size();
  if (at_sample) {
    const size_t i = index_sample(r.pos, 2 + rng() % 20);
    if (i < r.pos.size()) k = i;
  }
  damage d;
  d.record = r.pos[k].value;
  d.offset = d.record % kSegmentBytes + rng() % r.lens[k];
  flip_byte(segment_path(dir, d.record / kSegmentBytes), d.offset, uint8_t(1u << (rng() % 8)));
  return d;
}

// The record at position `at` (in DIR) made to skip one sequence number,
// its checksum made to match: it checks out alone but breaks the dense
// sequence. The sequence it now carries.
inline uint64_t skip_a_sequence(const std::string& dir, uint64_t at) {
  const std::string file = segment_path(dir, at / kSegmentBytes);
  const uint64_t off = at % kSegmentBytes;
  std::vector<uint8_t> seg = read_file(file);
  uint32_t len;
  std::memcpy(&len, seg.data() + off + 8, 4);
  uint64_t seq;
  std::memcpy(&seq, seg.data() + off + 24, 8);
  ++seq;
  std::memcpy(seg.data() + off + 24, &seq, 8);
  const uint64_t sum = XXH3_64bits(seg.data() + off + 8, len - 8);
  write_at(file, off + 24, &seq, 8);
  write_at(file, off, &sum, 8);
  return seq;
}

}  // namespace varve_test::replay_logs
