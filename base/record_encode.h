// The appender's copy of record::encode and the record checksum, inline:
// the writer's hot path (engine/event_log.cc) encodes every event through
// here with XXH3 specialised for record-sized inputs, no call through the
// shared library's length dispatch. Same bytes as record::encode (which is
// this function, out of line); docs/FORMAT.md is the normative description.
// Include only from .cc files: it compiles xxhash.h in its header-only mode.
#pragma once

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

#include "base/coding.h"
#include "base/record_format.h"

namespace varve::record {

// XXH3-64 (seed 0, the default secret) of 129..240 bytes: the same steps as
// xxhash's XXH3_len_129to240_64b (0.8), which xxhash keeps out of line
// (XXH_NO_INLINE) behind its length dispatch. Records of 137..248 bytes (an
// ES-1 event is 184) hash here, inside checksum_inline: one call, no
// dispatch (~20 instructions fewer per record, BENCHMARKS.md section 26).
// checksum_inline itself stays out of line where GCC leaves it: forced
// inline into the decode loops it cost them ~80 instructions per record
// in register spills (log_reader::next 317 -> 394, callgrind).
// tests/format_golden_test.cc compares it with XXH3_64bits at every length.
[[gnu::always_inline]] inline uint64_t xxh3_129to240(const std::byte* p, size_t len) {
  const auto* in = reinterpret_cast<const xxh_u8*>(p);
  const xxh_u8* secret = XXH3_kSecret;
  xxh_u64 acc = len * XXH_PRIME64_1;
  for (int i = 0; i < 8; ++i) acc += XXH3_mix16B(in + 16 * i, secret + 16 * i, 0);
  acc = XXH3_avalanche(acc);
  const int rounds = static_cast<int>(len / 16);
  for (int i = 8; i < rounds; ++i) acc += XXH3_mix16B(in + 16 * i, secret + 16 * (i - 8) + 3, 0);
  acc += XXH3_mix16B(in + len - 16, secret + XXH3_SECRET_SIZE_MIN - 17, 0);
  return XXH3_avalanche(acc);
}

inline uint64_t checksum_inline(const std::byte* rec, uint32_t length) {
  const size_t n = length - 8;
  if (n > 128 && n <= 240) return xxh3_129to240(rec + 8, n);
  return XXH3_64bits(rec + 8, n);
}

// meta_len: metadata_bytes(e.metadata), which the caller has (0: none).
// Always inlined: in the single-event append GCC's own estimate kept it out
// of line, a call and its argument passing per event (566 -> 538
// instructions per append: BENCHMARKS.md section 27).
[[gnu::always_inline]] inline uint32_t encode_inline(std::byte* dst, uint32_t size, std::string_view stream,
                                                     const event_data& e, const header_fields& h,
                                                     uint32_t meta_len) {
  uint8_t flags = h.flags;
  if (e.event_id) flags |= kFlagEventId;
  if (e.correlation_id) flags |= kFlagCorrelation;
  if (e.causation_id) flags |= kFlagCausation;
  if (e.content == content_type::json) flags |= kFlagJson;

  coding::put_u32(dst + 8, size);
  coding::put_u8(dst + 12, kEvent);
  coding::put_u8(dst + 13, flags);
  coding::put_u8(dst + 14, static_cast<uint8_t>(stream.size()));
  coding::put_u8(dst + 15, h.flags2);
  coding::put_u64(dst + 16, h.position);
  coding::put_u64(dst + 24, h.sequence);
  coding::put_u64(dst + 32, h.version);
  coding::put_u64(dst + 40, h.timestamp_ns);
  coding::put_u32(dst + 48, e.type);
  coding::put_u16(dst + 52, e.schema_version);
  coding::put_u16(dst + 54, kHeaderSize);
  coding::put_u32(dst + 56, static_cast<uint32_t>(e.payload.size()));
  coding::put_u32(dst + 60, meta_len);
  coding::put_u64(dst + 64, h.prev_position);
  // Padding must be zero: it is covered by the checksum, and the mapping may
  // hold garbage where a torn tail was cut (recovery zeroes it, but be exact).
  // It is under 8 bytes at the end of a record of at least 80: one store
  // ahead of the body (which overwrites what of it is not padding) instead
  // of a memset call per event.
  static_assert(kHeaderSize % 8 == 0);
  coding::put_u64(dst + size - 8, 0);
  std::byte* p = dst + kHeaderSize;
  for (const id128* id : {e.event_id, e.correlation_id, e.causation_id}) {
    if (id) {
      std::memcpy(p, id->bytes.data(), kIdSize);
      p += kIdSize;
    }
  }
  if (stream.size() >= 8 && stream.size() <= 16) {
    // Integer ids and short names: two (overlapping) 8-byte moves, no call.
    coding::put_u64(p, coding::get_u64(stream.data()));
    coding::put_u64(p + stream.size() - 8, coding::get_u64(stream.data() + stream.size() - 8));
  } else {
    std::memcpy(p, stream.data(), stream.size());
  }
  p += stream.size();
  if (!e.payload.empty()) std::memcpy(p, e.payload.data(), e.payload.size());
  p += e.payload.size();
  if (meta_len) [[unlikely]] {
    encode_metadata(p, e.metadata);
    p += meta_len;
  }
  // A size larger than the fields need (encoded_size never gives one): the
  // rest of the gap is zeroed too.
  if (p < dst + size - 8) [[unlikely]] std::memset(p, 0, static_cast<size_t>(dst + size - 8 - p));
  // The checksum goes last: until it is right, recovery treats the record as torn.
  coding::put_u64(dst, checksum_inline(dst, size));
  return size;
}

}  // namespace varve::record
