// Read-back checks shared by the ES-1 benchmarks (varve-p5, varve-bench): what
// the generator says each aggregate holds, the order-sensitive payload
// checksum every peer's read is folded into, and the P5 aggregate draw.
// Errors go to varve_bench::fatal, which each program defines (it prints,
// removes its scratch directory and exits non-zero).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.h"

namespace varve_bench {

[[noreturn]] void fatal(const std::string& what);  // defined by each benchmark program

inline constexpr uint64_t kP5Seed = 0x5EED'0005;  // the P5 aggregate draw; the data uses kSeed (42)

// libstdc++'s steady_clock is CLOCK_MONOTONIC: one clock for every process
// on the machine, so a stamp taken in one process can be compared in another
// (varve-bench's P7).
inline uint64_t steady_ns() {
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

// Reads every byte of [p, p+n): the sum of its 8-byte words and tail bytes.
inline uint64_t touch(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t sum = 0;
  size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    uint64_t w;
    std::memcpy(&w, p + k, 8);
    sum += w;
  }
  for (; k < n; ++k) sum += p[k];
  return sum;
}

// Order-sensitive fold of one event's payload sum into an aggregate's checksum.
inline uint64_t fold(uint64_t acc, uint64_t payload_sum) { return (acc ^ payload_sum) * 0x100000001B3ull + 1; }

inline void put_be64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (56 - 8 * i));
}
inline uint64_t get_be64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// ---------------------------------------------------------------------------
// What the generator says each aggregate holds.
// ---------------------------------------------------------------------------
struct expected_t {
  std::vector<uint32_t> count;     // events per aggregate (= its last version)
  std::vector<uint64_t> checksum;  // fold of its payload sums in version order
};

inline expected_t expected_of(const es1_data& d) {
  expected_t e;
  e.count.assign(d.aggregates, 0);
  e.checksum.assign(d.aggregates, 0);
  for (uint64_t i = 0; i < d.events; ++i) {
    uint32_t a = d.aggregate[i];
    if (d.version[i] != e.count[a] + 1) fatal("generator: versions out of order");
    e.count[a] = d.version[i];
    e.checksum[a] = fold(e.checksum[a], touch(d.payload_of(i), kPayloadBytes));
  }
  return e;
}

inline std::vector<uint32_t> draw_p5_aggregates(uint64_t n, uint64_t aggregates) {
  splitmix64 rng(kP5Seed);
  std::vector<uint32_t> out(n);
  for (auto& a : out) a = static_cast<uint32_t>((static_cast<unsigned __int128>(rng.next()) * aggregates) >> 64);
  return out;
}

// One aggregate's read, as a peer returns it.
struct agg_read {
  uint64_t count = 0;
  uint64_t checksum = 0;
  bool in_order = true;  // versions 1, 2, ... and the right aggregate
};

}  // namespace varve_bench
