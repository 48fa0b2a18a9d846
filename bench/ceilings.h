// The ES-1 ceilings' record stream (WORKLOAD.md "Peers and ceilings"): the
// same records varve writes (same size, same payload bytes, the header fields
// at the offsets varve's format 1 uses) copied into a pre-faulted anonymous
// buffer. Shared by varve-es1-core and varve-bench.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.h"

namespace varve_bench {

[[noreturn]] void fatal(const std::string& what);  // defined by each benchmark program

// --- the plain record a ceiling writes: R bytes = header (R - 100) + payload ---
struct ceiling_writer {
  uint32_t record_bytes;
  uint32_t header_bytes;
  std::vector<std::byte> header_template;
  explicit ceiling_writer(uint32_t r) : record_bytes(r), header_bytes(r - kPayloadBytes),
                                        header_template(header_bytes, std::byte{0}) {}

  // Fields at the offsets varve's format 1 uses (base/record_format.h); the
  // checksum slot [0, 8) is left to the bare loop.
  inline void write(std::byte* dst, const es1_data& d, uint64_t i) const {
    std::memcpy(dst, header_template.data(), header_bytes);
    if (header_bytes >= 80) {
      uint32_t len = record_bytes;
      uint64_t pos = i * record_bytes;
      uint64_t version = d.version[i];
      uint64_t ts = i + 1;
      uint32_t type = d.version[i] % 8;
      uint64_t stream = __builtin_bswap64(d.aggregate[i]);
      std::memcpy(dst + 8, &len, 4);
      std::memcpy(dst + 16, &pos, 8);
      std::memcpy(dst + 24, &i, 8);
      std::memcpy(dst + 32, &version, 8);
      std::memcpy(dst + 40, &ts, 8);
      std::memcpy(dst + 48, &type, 4);
      std::memcpy(dst + 72, &stream, 8);
    }
    std::memcpy(dst + header_bytes, d.payload_of(i), kPayloadBytes);
  }
};

// The verified-read ceiling: XXH3 of bytes [8, R) of each of `records`
// records of `record_bytes` at `buf` (bench/ceiling_verified.cc). Returns how
// many checksums did not match the record's first 8 bytes.
uint64_t verified_scan(const std::byte* buf, uint64_t records, uint32_t record_bytes);
// The same, also doing what P4's consumer does with each payload in every
// peer's scan (es1_check.h touch(): the sum of its 8-byte words, then its
// tail bytes) over the record's last `payload_bytes` (a run-time length, as
// the peers' consumers get it): the ceiling of P4 as P4 measures the peers.
uint64_t verified_scan_consumed(const std::byte* buf, uint64_t records, uint32_t record_bytes,
                                uint32_t payload_bytes, uint64_t& payload_sum);

inline void* map_anonymous_prefaulted(uint64_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) fatal("mmap anonymous: " + std::string(strerror(errno)));
  std::memset(p, 1, bytes);  // every page faulted in for writing
  return p;
}

}  // namespace varve_bench
