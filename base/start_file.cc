#include "base/start_file.h"

#include <xxhash.h>

#include <cstring>

#include "base/coding.h"
#include "base/log_files.h"
#include "base/meta_file.h"
#include "base/segment_format.h"

namespace varve::start_file {

using coding::get_u32;
using coding::get_u64;
using coding::put_u32;
using coding::put_u64;

namespace {
constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'S', 'T', 'R', 'T'};
}

void encode(std::byte* dst, const record& r) {
  std::memset(dst, 0, kSize);
  std::memcpy(dst, kMagic, 8);
  put_u32(dst + 8, kVersion);
  put_u64(dst + 16, r.log_id);
  put_u64(dst + 24, r.first_segment);
  put_u64(dst + 32, r.first_sequence);
  put_u64(dst + 40, r.removed_at_ns);
  put_u64(dst + 56, XXH3_64bits(dst, 56));
}

status decode(const std::byte* src, size_t n, const std::string& file, uint64_t log_id, record& out) {
  if (n < 12 || std::memcmp(src, kMagic, 8) != 0)
    return {errc::corruption, file + " offset 0: not a varve start record (bad magic)"};
  const uint32_t version = get_u32(src + 8);
  if (version > kVersion)
    return {errc::newer_format, file + ": start record version " + std::to_string(version) +
                                    " is newer than this varve supports (" + std::to_string(kVersion) + ")"};
  if (n != kSize)
    return {errc::corruption, file + ": start record has " + std::to_string(n) + " bytes, expected " +
                                  std::to_string(kSize)};
  if (get_u64(src + 56) != XXH3_64bits(src, 56))
    return {errc::corruption, file + " offset 56: start record checksum mismatch"};
  if (get_u64(src + 16) != log_id)
    return {errc::corruption, file + " offset 16: start record belongs to another log"};
  out.log_id = log_id;
  out.first_segment = get_u64(src + 24);
  out.first_sequence = get_u64(src + 32);
  out.removed_at_ns = get_u64(src + 40);
  // A segment index has at most 64 - 16 bits (positions are u64, segments
  // at least 64 KiB): a larger one is damage, not a log.
  if (out.first_segment >> (64 - segment_format::kMinLog2Capacity))
    return {errc::corruption, file + " offset 24: first segment out of range"};
  return {};
}

result<std::optional<record>> read(file_system& fs, const std::string& dir, uint64_t log_id) {
  const std::string path = log_files::join(dir, kName);
  if (!fs.exists(path)) return std::optional<record>{};
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  file_handle fh = f.value();
  std::byte buf[kSize + 1] = {};
  auto size = fs.file_size(fh);
  const size_t n = size ? static_cast<size_t>(std::min<uint64_t>(size.value(), sizeof buf)) : 0;
  status s = size ? (n ? fs.pread(fh, 0, buf, n) : status{}) : size.error();
  fs.close(fh);
  if (!s) return s;
  record r;
  if (status d = decode(buf, n, path, log_id, r); !d) return d;
  return std::optional<record>{r};
}

status write(file_system& fs, const std::string& dir, const record& r) {
  std::byte buf[kSize];
  encode(buf, r);
  return meta_file::replace_file(fs, dir, kName, buf, sizeof buf);
}

uint64_t start_position(uint64_t first_segment, uint8_t log2) {
  return first_segment == 0 ? 0 : (first_segment << log2) + segment_format::kHeaderSize;
}

}  // namespace varve::start_file
