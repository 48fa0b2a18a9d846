#include "base/archive_file.h"

#include <xxhash.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>

#include "base/coding.h"
#include "base/log_files.h"
#include "base/meta_file.h"
#include "base/segment_format.h"

namespace varve::archive_file {

using coding::get_u32;
using coding::get_u64;
using coding::put_u32;
using coding::put_u64;

namespace {
constexpr char kLocationMagic[8] = {'V', 'A', 'R', 'V', 'A', 'R', 'C', 'L'};
constexpr char kSegmentMagic[8] = {'V', 'A', 'R', 'V', 'A', 'R', 'C', 'S'};
constexpr std::string_view kSuffix = ".varc";

// XXH3-64 of the path bytes, seeded with XXH3-64 of header bytes [0, 56).
uint64_t location_checksum(const std::byte* hdr, const std::byte* dir, size_t n) {
  return XXH3_64bits_withSeed(dir, n, XXH3_64bits(hdr, 56));
}

status bad(const std::string& file, uint64_t off, const std::string& why) {
  return {errc::corruption, file + " offset " + std::to_string(off) + ": " + why};
}

bool all_zero(const std::byte* p, size_t n) {
  // Word at a time: most of a segment past its last record is zero.
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w) return false;
  }
  for (; i < n; ++i)
    if (p[i] != std::byte{0}) return false;
  return true;
}
}  // namespace

std::vector<std::byte> encode_location(const location& l) {
  std::vector<std::byte> out(kLocationHeader + l.dir.size());
  std::byte* dst = out.data();
  std::memcpy(dst, kLocationMagic, 8);
  put_u32(dst + 8, kLocationVersion);
  put_u32(dst + 12, static_cast<uint32_t>(l.dir.size()));
  put_u64(dst + 16, l.log_id);
  put_u64(dst + 24, l.archive_end);
  put_u64(dst + 32, l.archived_at_ns);
  std::memcpy(dst + kLocationHeader, l.dir.data(), l.dir.size());
  put_u64(dst + 56, location_checksum(dst, dst + kLocationHeader, l.dir.size()));
  return out;
}

status decode_location(const std::byte* src, size_t n, const std::string& file, uint64_t log_id,
                       location& out) {
  if (n < 12 || std::memcmp(src, kLocationMagic, 8) != 0)
    return bad(file, 0, "not a varve archive record (bad magic)");
  const uint32_t version = get_u32(src + 8);
  if (version > kLocationVersion)
    return {errc::newer_format, file + ": archive record version " + std::to_string(version) +
                                    " is newer than this varve supports (" + std::to_string(kLocationVersion) + ")"};
  if (n < kLocationHeader) return bad(file, n, "archive record is cut short (" + std::to_string(n) + " bytes)");
  const uint32_t dir_len = get_u32(src + 12);
  if (dir_len == 0 || dir_len > kMaxDirBytes || n != kLocationHeader + dir_len)
    return bad(file, 12, "archive record's path length " + std::to_string(dir_len) + " does not fit its " +
                             std::to_string(n) + " bytes");
  if (get_u64(src + 56) != location_checksum(src, src + kLocationHeader, dir_len))
    return bad(file, 56, "archive record checksum mismatch");
  if (get_u64(src + 16) != log_id) return bad(file, 16, "archive record belongs to another log");
  out.log_id = log_id;
  out.archive_end = get_u64(src + 24);
  out.archived_at_ns = get_u64(src + 32);
  out.dir.assign(reinterpret_cast<const char*>(src + kLocationHeader), dir_len);
  if (out.archive_end >> (64 - segment_format::kMinLog2Capacity))
    return bad(file, 24, "archive boundary out of range");
  if (out.dir.find('\0') != std::string::npos || out.dir.front() != '/')
    return bad(file, kLocationHeader, "archive directory is not an absolute path");
  return {};
}

result<std::optional<location>> read_location(file_system& fs, const std::string& dir, uint64_t log_id) {
  const std::string path = log_files::join(dir, kLocationName);
  if (!fs.exists(path)) return std::optional<location>{};
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  file_handle fh = f.value();
  auto size = fs.file_size(fh);
  std::vector<std::byte> buf;
  status s = size ? status{} : size.error();
  if (s) {
    buf.resize(static_cast<size_t>(std::min<uint64_t>(size.value(), kLocationHeader + kMaxDirBytes + 1)));
    if (!buf.empty()) s = fs.pread(fh, 0, buf.data(), buf.size());
  }
  fs.close(fh);
  if (!s) return s;
  location l;
  if (status d = decode_location(buf.data(), buf.size(), path, log_id, l); !d) return d;
  return std::optional<location>{std::move(l)};
}

status write_location(file_system& fs, const std::string& dir, const location& l) {
  if (l.dir.empty() || l.dir.size() > kMaxDirBytes || l.dir.front() != '/')
    return {errc::invalid_argument, "archive directory must be an absolute path of at most " +
                                        std::to_string(kMaxDirBytes) + " bytes: " + l.dir};
  const std::vector<std::byte> buf = encode_location(l);
  return meta_file::replace_file(fs, dir, kLocationName, buf.data(), buf.size());
}

std::string segment_file_name(uint64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(index));
  return std::string(buf) + std::string(kSuffix);
}

std::optional<uint64_t> parse_segment_file_name(std::string_view n) {
  if (n.size() != 20 + kSuffix.size() || !n.ends_with(kSuffix)) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 0; i < 20; ++i) {
    if (n[i] < '0' || n[i] > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(n[i] - '0');
    if (v > (~uint64_t{0} - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

result<uint64_t> write_segment(file_system& fs, const std::string& dest, const std::byte* data, uint8_t log2,
                               uint64_t index, uint64_t log_id, int level, uint8_t log2_frame) {
  if (log2_frame > log2) log2_frame = log2;
  const uint64_t cap = uint64_t{1} << log2;
  const uint64_t frame = uint64_t{1} << log2_frame;
  const uint32_t count = static_cast<uint32_t>(cap >> log2_frame);
  const uint64_t table_end = kHeaderSize + uint64_t{count} * kEntrySize + 8;
  std::vector<std::byte> out(table_end);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (!cctx) return status(errc::io_error, "zstd: out of memory for a compression context");
  (void)ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  const size_t bound = ZSTD_compressBound(frame);
  std::vector<std::byte> tmp(bound);
  for (uint32_t i = 0; i < count; ++i) {
    const std::byte* raw = data + uint64_t{i} * frame;
    std::byte* e = out.data() + kHeaderSize + uint64_t{i} * kEntrySize;
    put_u64(e + 16, XXH3_64bits(raw, frame));
    if (all_zero(raw, frame)) continue;  // offset 0, size 0: nothing stored
    const size_t n = ZSTD_compress2(cctx, tmp.data(), tmp.size(), raw, frame);
    if (ZSTD_isError(n)) {
      ZSTD_freeCCtx(cctx);
      return status(errc::io_error, "zstd: compressing frame " + std::to_string(i) + " of segment " +
                                        std::to_string(index) + ": " + ZSTD_getErrorName(n));
    }
    put_u64(e, out.size());
    put_u32(e + 8, static_cast<uint32_t>(n));
    out.insert(out.end(), tmp.begin(), tmp.begin() + static_cast<std::ptrdiff_t>(n));
  }
  ZSTD_freeCCtx(cctx);
  std::byte* h = out.data();
  std::memcpy(h, kSegmentMagic, 8);
  put_u32(h + 8, kVersion);
  h[12] = static_cast<std::byte>(log2);
  h[13] = static_cast<std::byte>(log2_frame);
  put_u64(h + 16, index);
  put_u64(h + 24, log_id);
  put_u32(h + 32, count);
  put_u64(h + 40, out.size());
  put_u64(h + 48, XXH3_64bits(data, cap));
  put_u64(h + 56, XXH3_64bits(h, 56));
  const uint64_t table_bytes = uint64_t{count} * kEntrySize;
  put_u64(h + kHeaderSize + table_bytes, XXH3_64bits(h + kHeaderSize, table_bytes));

  const std::string name = segment_file_name(index);
  if (status s = meta_file::replace_file(fs, dest, name, out.data(), out.size()); !s) return s;
  // Read back what the disk holds, through the reader every later read
  // uses: the hot copy goes only once this inflates to the same bytes.
  const std::string path = log_files::join(dest, name);
  auto r = segment_reader::open(fs, path, log2, index, log_id);
  if (!r) return r.error();
  std::vector<std::byte> back(frame);
  for (uint32_t i = 0; i < count; ++i) {
    std::memset(back.data(), 0, frame);
    if (status s = r.value()->read_frame(i, back.data()); !s) return s;
    if (std::memcmp(back.data(), data + uint64_t{i} * frame, frame) != 0)
      return status(errc::io_error, path + ": frame " + std::to_string(i) +
                                        " read back differs from the segment it was made from");
  }
  return uint64_t{out.size()};
}

std::optional<uint64_t> segment_owner(file_system& fs, const std::string& path) {
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return std::nullopt;
  file_handle fh = f.value();
  std::byte h[kHeaderSize];
  auto size = fs.file_size(fh);
  const bool read = size && size.value() >= kHeaderSize && fs.pread(fh, 0, h, sizeof h).ok();
  fs.close(fh);
  if (!read || std::memcmp(h, kSegmentMagic, 8) != 0 || get_u64(h + 56) != XXH3_64bits(h, 56)) return std::nullopt;
  return get_u64(h + 24);
}

result<std::unique_ptr<segment_reader>> segment_reader::open(file_system& fs, const std::string& path,
                                                             uint8_t log2, uint64_t index, uint64_t log_id) {
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  std::unique_ptr<segment_reader> r(new segment_reader(fs, f.value(), path));
  auto size = fs.file_size(r->file_);
  if (!size) return size.error();
  if (size.value() < kHeaderSize) return bad(path, size.value(), "archived segment is cut short");
  std::byte h[kHeaderSize];
  if (status s = fs.pread(r->file_, 0, h, sizeof h); !s) return s;
  if (std::memcmp(h, kSegmentMagic, 8) != 0) return bad(path, 0, "not a varve archived segment (bad magic)");
  if (get_u32(h + 8) > kVersion)
    return status(errc::newer_format, path + ": archived segment version " + std::to_string(get_u32(h + 8)) +
                                          " is newer than this varve supports (" + std::to_string(kVersion) + ")");
  if (get_u64(h + 56) != XXH3_64bits(h, 56)) return bad(path, 56, "archived segment header checksum mismatch");
  const uint8_t l2 = static_cast<uint8_t>(h[12]);
  const uint8_t lf = static_cast<uint8_t>(h[13]);
  if (l2 != log2 || get_u64(h + 16) != index)
    return bad(path, 12, "archive holds segment " + std::to_string(get_u64(h + 16)) + " of capacity 2^" +
                             std::to_string(l2) + ", expected segment " + std::to_string(index) + " of 2^" +
                             std::to_string(log2));
  if (get_u64(h + 24) != log_id) return bad(path, 24, "archived segment belongs to another log");
  const uint32_t count = get_u32(h + 32);
  if (lf < 12 || lf > l2 || count != (uint64_t{1} << (l2 - lf)))
    return bad(path, 13, "archived segment's frame size 2^" + std::to_string(lf) + " and count " +
                             std::to_string(count) + " do not fit its capacity");
  r->file_bytes_ = get_u64(h + 40);
  if (r->file_bytes_ != size.value())
    return bad(path, size.value(), "archived segment is " + std::to_string(size.value()) + " bytes, its header says " +
                                       std::to_string(r->file_bytes_));
  r->log2_frame_ = lf;
  r->raw_checksum_ = get_u64(h + 48);
  const uint64_t table_bytes = uint64_t{count} * kEntrySize;
  if (kHeaderSize + table_bytes + 8 > r->file_bytes_) return bad(path, kHeaderSize, "frame table is cut short");
  std::vector<std::byte> t(table_bytes + 8);
  if (status s = fs.pread(r->file_, kHeaderSize, t.data(), t.size()); !s) return s;
  if (get_u64(t.data() + table_bytes) != XXH3_64bits(t.data(), table_bytes))
    return bad(path, kHeaderSize + table_bytes, "frame table checksum mismatch");
  const uint64_t data_start = kHeaderSize + table_bytes + 8;
  const uint64_t max_c = ZSTD_compressBound(uint64_t{1} << lf);
  r->entries_.resize(count);
  for (uint32_t i = 0; i < count; ++i) {
    const std::byte* e = t.data() + uint64_t{i} * kEntrySize;
    entry& x = r->entries_[i];
    x.offset = get_u64(e);
    x.csize = get_u32(e + 8);
    x.raw_checksum = get_u64(e + 16);
    if (x.csize == 0 ? x.offset != 0
                     : x.offset < data_start || x.csize > max_c || x.offset > r->file_bytes_ ||
                           x.csize > r->file_bytes_ - x.offset)  // no wrap past 2^64
      return bad(path, kHeaderSize + uint64_t{i} * kEntrySize,
                 "frame " + std::to_string(i) + " lies outside the file (offset " + std::to_string(x.offset) +
                     ", " + std::to_string(x.csize) + " bytes)");
  }
  return r;
}

segment_reader::~segment_reader() { fs_.close(file_); }

status segment_reader::read_frame(uint32_t i, std::byte* dst) const {
  if (i >= entries_.size()) return {errc::invalid_argument, path_ + ": no frame " + std::to_string(i)};
  const entry& e = entries_[i];
  const uint64_t frame = frame_bytes();
  if (e.csize == 0) {
    // Stored as nothing: all zero. The table's checksum vouches for the
    // entry; the raw checksum must be that of a zero frame.
    static thread_local std::vector<std::byte> zeros;
    static thread_local uint64_t zeros_sum = 0;
    if (zeros.size() != frame) {
      zeros.assign(frame, std::byte{0});
      zeros_sum = XXH3_64bits(zeros.data(), frame);
    }
    if (e.raw_checksum != zeros_sum)
      return bad(path_, kHeaderSize + uint64_t{i} * kEntrySize, "frame " + std::to_string(i) +
                                                                   " is stored as zero but its checksum is not a zero frame's");
    return {};
  }
  // One decompression context and one buffer per thread, reused: a fresh
  // context per frame (ZSTD_decompress) cost a third of a scan's time.
  struct dctx_holder {
    ZSTD_DCtx* p = ZSTD_createDCtx();
    ~dctx_holder() { ZSTD_freeDCtx(p); }
  };
  static thread_local dctx_holder dctx;
  static thread_local std::vector<std::byte> c;
  if (!dctx.p) return {errc::io_error, path_ + ": zstd: out of memory for a decompression context"};
  c.resize(e.csize);
  if (status s = fs_.pread(file_, e.offset, c.data(), c.size()); !s) return s;
  const size_t n = ZSTD_decompressDCtx(dctx.p, dst, frame, c.data(), c.size());
  // Whatever a failed frame left in dst goes back to zero (which never
  // validates as a record): no reader may meet half-inflated bytes.
  auto fail = [&](status s) {
    std::memset(dst, 0, frame);
    return s;
  };
  if (ZSTD_isError(n))
    return fail(bad(path_, e.offset, "frame " + std::to_string(i) + " does not decompress (" + ZSTD_getErrorName(n) + ")"));
  if (n != frame)
    return fail(bad(path_, e.offset, "frame " + std::to_string(i) + " decompresses to " + std::to_string(n) +
                                         " bytes, expected " + std::to_string(frame)));
  if (XXH3_64bits(dst, frame) != e.raw_checksum)
    return fail(bad(path_, e.offset, "frame " + std::to_string(i) + " checksum mismatch"));
  return {};
}

}  // namespace varve::archive_file
