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
  return encode_inline(dst, size, stream, e, h,
                       e.metadata.empty() ? 0 : static_cast<uint32_t>(metadata_bytes(e.metadata)));
}

decoded decode_with_metadata(const std::byte* p, uint64_t avail, uint64_t expected_position,
                             bool verify_checksum, event_view& out) {
  return decode_inline<true>(p, avail, expected_position, verify_checksum, out);
}

decoded decode_with_metadata(const std::byte* p, uint64_t avail, uint64_t expected_position,
                             bool verify_checksum, event_ref& out) {
  event_view v;
  decoded d = decode_inline<true>(p, avail, expected_position, verify_checksum, v);
  if (d.outcome == decode_outcome::event) {
    varve::detail::event_ref_access::of_record(out, p, v);
    d.encrypted = v.encrypted;
  }
  return d;
}

// event_ref (include/varve/event.h) reads fields from records by these.
namespace rl = varve::detail::ref_layout;
static_assert(rl::kSequence == 24 && rl::kVersion == 32 && rl::kTimestamp == 40 && rl::kType == 48 &&
              rl::kSchema == 52 && rl::kPrevious == 64 && rl::kFlags == 13 && rl::kIdSize == kIdSize);
static_assert(rl::kBatchBegin == kFlagBatchBegin && rl::kBatchEnd == kFlagBatchEnd && rl::kEventId == kFlagEventId &&
              rl::kCorrelation == kFlagCorrelation && rl::kCausation == kFlagCausation && rl::kJson == kFlagJson &&
              rl::kIntegerStream == kFlagIntegerStream);

uint64_t metadata_bytes(std::span<const metadata_entry> m) {
  uint64_t n = 0;
  for (const metadata_entry& e : m) n += 3 + e.key.size() + e.value.size();
  return n;
}

status check_metadata(std::span<const metadata_entry> m) {
  if (m.size() > kMaxMetadataEntries)
    return status(errc::invalid_argument, "an event holds at most " + std::to_string(kMaxMetadataEntries) +
                                              " metadata entries, got " + std::to_string(m.size()));
  for (size_t i = 0; i < m.size(); ++i) {
    const metadata_entry& e = m[i];
    auto bad = [&](const std::string& why) {
      return status(errc::invalid_argument, "metadata[" + std::to_string(i) + "]: " + why);
    };
    if (e.key.empty() || e.key.size() > 255) return bad("a key has 1 to 255 bytes, got " + std::to_string(e.key.size()));
    if (e.value.size() > UINT16_MAX)
      return bad("the value of '" + std::string(e.key) + "' is longer than 65535 bytes");
    if (e.key.substr(0, 6) == "varve.")
      return bad("key '" + std::string(e.key) + "': keys starting with \"varve.\" are reserved");
    for (size_t j = 0; j < i; ++j)
      if (m[j].key == e.key) return bad("key '" + std::string(e.key) + "' appears twice");
  }
  const uint64_t n = metadata_bytes(m);
  if (n > kMaxMetadataBytes)
    return status(errc::invalid_argument, "metadata of " + std::to_string(n) + " encoded bytes is over the " +
                                              std::to_string(kMaxMetadataBytes) + "-byte bound");
  return {};
}

void encode_metadata(std::byte* dst, std::span<const metadata_entry> m) {
  for (const metadata_entry& e : m) {
    put_u8(dst, static_cast<uint8_t>(e.key.size()));
    put_u16(dst + 1, static_cast<uint16_t>(e.value.size()));
    std::memcpy(dst + 3, e.key.data(), e.key.size());
    if (!e.value.empty()) std::memcpy(dst + 3 + e.key.size(), e.value.data(), e.value.size());
    dst += 3 + e.key.size() + e.value.size();
  }
}

bool metadata_well_formed(const std::byte* p, uint32_t n) {
  uint32_t at = 0;
  size_t count = 0;
  while (at < n) {
    if (n - at < 3 || ++count > kMaxMetadataEntries) return false;
    const uint32_t k = get_u8(p + at);
    const uint32_t v = get_u16(p + at + 1);
    if (k == 0 || n - at - 3 < k + v) return false;
    at += 3 + k + v;
  }
  return true;
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
