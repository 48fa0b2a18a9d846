// The logs the replay tests run over (replay_test, replay_merged_test): a
// random log over many small segments, and the positions of its records.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "varve/varve.h"

namespace varve_test::replay_logs {

using namespace varve;

constexpr uint64_t kSegmentBytes = 64 * 1024;
constexpr uint64_t kT0 = 1'700'000'000'000'000'000ull;

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

}  // namespace varve_test::replay_logs
