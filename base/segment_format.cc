#include "base/segment_format.h"

#include <xxhash.h>

#include <cstring>

#include "base/coding.h"

namespace varve::segment_format {

using namespace varve::coding;

static constexpr char kSegMagic[8] = {'V', 'A', 'R', 'V', 'E', 'S', 'E', 'G'};
static constexpr char kEndMagic[8] = {'V', 'A', 'R', 'V', 'E', 'E', 'N', 'D'};
static constexpr char kLogMagic[8] = {'V', 'A', 'R', 'V', 'E', 'L', 'O', 'G'};

static uint64_t sum56(const std::byte* p) { return XXH3_64bits(p, 56); }

bool is_zero(const std::byte* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != std::byte{0}) return false;
  return true;
}

void encode_header(std::byte* dst, const header& h) {
  std::memset(dst, 0, kHeaderSize);
  std::memcpy(dst, kSegMagic, 8);
  put_u32(dst + 8, kFormatVersion);
  put_u8(dst + 12, h.log2_capacity);
  put_u64(dst + 16, h.segment_index);
  put_u64(dst + 24, h.segment_index << h.log2_capacity);
  put_u64(dst + 32, h.log_id);
  put_u64(dst + 56, sum56(dst));
}

status decode_header(const std::byte* src, const std::string& file, header& out) {
  if (is_zero(src, kHeaderSize))
    return {errc::corruption, file + " offset 0: segment header was never written"};
  if (std::memcmp(src, kSegMagic, 8) != 0)
    return {errc::not_a_log, file + " offset 0: not a varve segment (bad magic)"};
  const uint32_t version = get_u32(src + 8);
  if (version > kFormatVersion)
    return {errc::newer_format, file + ": segment format version " + std::to_string(version) +
                                    " is newer than this varve (" +
                                    std::to_string(kFormatVersion) + ")"};
  if (get_u64(src + 56) != sum56(src))
    return {errc::corruption, file + " offset 0: segment header checksum mismatch"};
  out.log2_capacity = get_u8(src + 12);
  out.segment_index = get_u64(src + 16);
  out.log_id = get_u64(src + 32);
  if (out.log2_capacity < kMinLog2Capacity || out.log2_capacity > kMaxLog2Capacity ||
      get_u64(src + 24) != (out.segment_index << out.log2_capacity))
    return {errc::corruption, file + " offset 0: segment header fields are inconsistent"};
  return {};
}

void encode_footer(std::byte* dst, const footer& f) {
  std::memcpy(dst, kEndMagic, 8);
  put_u64(dst + 8, f.segment_index);
  put_u64(dst + 16, f.data_end);
  put_u64(dst + 24, f.event_count);
  put_u64(dst + 32, f.first_sequence);
  put_u64(dst + 40, f.last_position);
  put_u64(dst + 48, f.data_checksum);
  put_u64(dst + 56, sum56(dst));
}

status decode_footer(const std::byte* src, const std::string& file, uint64_t file_offset,
                     footer& out) {
  if (is_zero(src, kFooterSize)) return {errc::not_found, file + ": segment is not sealed"};
  const std::string where = file + " offset " + std::to_string(file_offset);
  if (std::memcmp(src, kEndMagic, 8) != 0)
    return {errc::corruption, where + ": segment footer has a bad magic"};
  if (get_u64(src + 56) != sum56(src))
    return {errc::corruption, where + ": segment footer checksum mismatch"};
  out.segment_index = get_u64(src + 8);
  out.data_end = get_u64(src + 16);
  out.event_count = get_u64(src + 24);
  out.first_sequence = get_u64(src + 32);
  out.last_position = get_u64(src + 40);
  out.data_checksum = get_u64(src + 48);
  return {};
}

void encode_meta(std::byte* dst, const meta& m) {
  std::memset(dst, 0, kMetaSize);
  std::memcpy(dst, kLogMagic, 8);
  put_u32(dst + 8, kFormatVersion);
  put_u8(dst + 12, m.log2_capacity);
  put_u64(dst + 16, m.log_id);
  put_u64(dst + 24, m.created_ns);
  put_u64(dst + 56, sum56(dst));
}

status decode_meta(const std::byte* src, size_t n, const std::string& file, meta& out) {
  if (n < 12 || std::memcmp(src, kLogMagic, 8) != 0)
    return {errc::not_a_log, file + ": not a varve log (bad magic)"};
  const uint32_t version = get_u32(src + 8);
  if (version > kFormatVersion)
    return {errc::newer_format, file + ": log format version " + std::to_string(version) +
                                    " is newer than this varve supports (" +
                                    std::to_string(kFormatVersion) + ")"};
  if (n < kMetaSize) return {errc::corruption, file + ": meta file is truncated"};
  if (get_u64(src + 56) != sum56(src))
    return {errc::corruption, file + " offset 56: meta checksum mismatch"};
  out.log2_capacity = get_u8(src + 12);
  out.log_id = get_u64(src + 16);
  out.created_ns = get_u64(src + 24);
  if (out.log2_capacity < kMinLog2Capacity || out.log2_capacity > kMaxLog2Capacity)
    return {errc::corruption, file + " offset 12: segment capacity out of range"};
  return {};
}

}  // namespace varve::segment_format
