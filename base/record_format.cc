#include "base/record_format.h"

// The checksum of every record written and read: compiled into this file
// (xxhash.h's header-only mode, same algorithm and values as libxxhash) so it
// inlines into encode/decode and specialises for record-sized inputs instead
// of a call through the shared library's length dispatch.
#include "base/record_decode.h"

#include <cstring>

#include "base/coding.h"

namespace varve::record {

using namespace varve::coding;

static_assert(kHeaderSize % 8 == 0 && kSegmentEndSize % 8 == 0);

uint64_t checksum(const std::byte* rec, uint32_t length) { return checksum_inline(rec, length); }

uint32_t encode(std::byte* dst, uint32_t size, std::string_view stream, const event_data& e,
                const header_fields& h) {
  return encode_inline(dst, size, stream, e, h);
}

void encode_segment_end(std::byte* dst, uint64_t position) {
  put_u32(dst + 8, kSegmentEndSize);
  put_u8(dst + 12, kSegmentEnd);
  put_u8(dst + 13, 0);
  put_u16(dst + 14, 0);
  put_u64(dst + 16, position);
  put_u64(dst, checksum(dst, kSegmentEndSize));
}

void encode_hole(std::byte* dst, uint32_t length, uint64_t position, uint64_t first_sequence,
                 uint64_t sequence_count) {
  std::memset(dst + 8, 0, length - 8);
  put_u32(dst + 8, length);
  put_u8(dst + 12, kHole);
  put_u64(dst + 16, position);
  put_u64(dst + 24, first_sequence);
  put_u64(dst + 32, sequence_count);
  put_u64(dst, checksum(dst, length));
}

decoded decode(const std::byte* p, uint64_t avail, uint64_t expected_position,
               bool verify_checksum, event_view& out) {
  return decode_inline(p, avail, expected_position, verify_checksum, out);
}

}  // namespace varve::record
