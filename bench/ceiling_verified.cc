// The verified-read ceiling (issue 17): read every record of the ceiling's
// buffer and XXH3 its bytes [8, R), as a verified scan must, with nothing
// else: no framing checks, no fields, no cursor. XXH3 is compiled inline here
// (header-only mode), as varve's reader compiles it, so the ceiling is not
// slowed by the shared library's call and length dispatch. Its own file: the
// peers in varve_bench.cc keep libxxhash's out-of-line XXH3.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstddef>
#include <cstdint>

#include "ceilings.h"
#include "es1_check.h"

namespace varve_bench {

uint64_t verified_scan(const std::byte* buf, uint64_t records, uint32_t record_bytes) {
  uint64_t acc = 0;
  for (uint64_t i = 0; i < records; ++i) {
    const std::byte* r = buf + i * record_bytes;
    uint64_t stored;
    __builtin_memcpy(&stored, r, 8);
    // A "mismatch" count the caller must consume: the loop cannot be dropped.
    acc += XXH3_64bits(r + 8, record_bytes - 8) != stored;
  }
  return acc;
}

uint64_t verified_scan_consumed(const std::byte* buf, uint64_t records, uint32_t record_bytes,
                                uint32_t payload_bytes, uint64_t& payload_sum) {
  uint64_t acc = 0, sum = 0;
  for (uint64_t i = 0; i < records; ++i) {
    const std::byte* r = buf + i * record_bytes;
    uint64_t stored;
    __builtin_memcpy(&stored, r, 8);
    acc += XXH3_64bits(r + 8, record_bytes - 8) != stored;
    // What every peer's P4 consumer does with each payload it is handed.
    sum += touch(r + record_bytes - payload_bytes, payload_bytes);
  }
  payload_sum += sum;
  return acc;
}

}  // namespace varve_bench
