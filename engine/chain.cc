#include "engine/chain.h"

#include <xxhash.h>

#include <cstring>

#include "base/blake2b.h"
#include "base/coding.h"
#include "base/log_files.h"
#include "index/index_file.h"

namespace varve::chain {
namespace {

constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'C', 'H', 'N'};
constexpr uint32_t kVersion = 1;
constexpr char kDomain[] = "varve-chain-1";

std::string path_of(const std::string& dir) { return log_files::join(dir, kFileName); }

}  // namespace

digest compute(const segment& seg, uint64_t log_id, const digest& previous) {
  blake2b h(32);
  h.update(kDomain, sizeof kDomain - 1);
  uint8_t ints[16];
  coding::put_u64(ints, log_id);
  coding::put_u64(ints + 8, seg.index());
  h.update(ints, sizeof ints);
  h.update(previous.data(), previous.size());
  h.update(seg.data(), seg.capacity());
  digest out;
  h.final(out.data());
  return out;
}

result<contents> read(file_system& fs, const std::string& dir, uint64_t log_id) {
  const std::string path = path_of(dir);
  if (!fs.exists(path)) return status(errc::not_found, path + ": no chain (the log was not created with one)");
  auto got = index_file::read(fs, path, 0);
  if (!got) return got.error();
  const std::vector<std::byte>& b = got.value();
  if (b.size() < kHeaderSize)
    return status(errc::corruption, path + " offset 0: truncated header (" + std::to_string(b.size()) + " bytes)");
  const std::byte* h = b.data();
  if (std::memcmp(h, kMagic, 8) != 0 || coding::get_u64(h + 56) != XXH3_64bits(h, 56))
    return status(errc::corruption, path + " offset 0: bad chain header");
  if (coding::get_u32(h + 8) > kVersion)
    return status(errc::newer_format, path + ": chain format " + std::to_string(coding::get_u32(h + 8)) +
                                          " is newer than this varve reads (" + std::to_string(kVersion) + ")");
  if (coding::get_u64(h + 16) != log_id) return status(errc::corruption, path + ": the chain of another log");
  contents c;
  uint64_t at = kHeaderSize;
  for (; at + kEntrySize <= b.size(); at += kEntrySize) {
    const std::byte* e = b.data() + at;
    if (coding::get_u64(e + 56) != XXH3_64bits(e, 56)) {
      if (at + kEntrySize == b.size()) {  // the last one: an append a crash cut short
        c.torn_tail = true;
        break;
      }
      return status(errc::corruption, path + " offset " + std::to_string(at) + ": chain entry checksum mismatch");
    }
    entry en;
    en.segment_index = coding::get_u64(e);
    std::memcpy(en.hash.data(), e + 16, en.hash.size());
    if (!c.entries.empty() && en.segment_index != c.entries.back().segment_index + 1)
      return status(errc::corruption, path + " offset " + std::to_string(at) + ": entry for segment " +
                                          std::to_string(en.segment_index) + " does not follow segment " +
                                          std::to_string(c.entries.back().segment_index));
    c.entries.push_back(en);
  }
  if (!c.torn_tail && at < b.size()) c.torn_tail = true;  // a partial entry at the end
  c.end = kHeaderSize + c.entries.size() * kEntrySize;
  return c;
}

status create(file_system& fs, const std::string& dir, uint64_t log_id) {
  if (fs.exists(path_of(dir))) return {};
  std::byte h[kHeaderSize] = {};
  std::memcpy(h, kMagic, 8);
  coding::put_u32(h + 8, kVersion);
  coding::put_u64(h + 16, log_id);
  coding::put_u64(h + 56, XXH3_64bits(h, 56));
  return index_file::write(fs, dir, kFileName, std::span<const std::byte>(h, kHeaderSize));
}

status append(file_system& fs, const std::string& dir, uint64_t at, const entry& en) {
  std::byte e[kEntrySize] = {};
  coding::put_u64(e, en.segment_index);
  std::memcpy(e + 16, en.hash.data(), en.hash.size());
  coding::put_u64(e + 56, XXH3_64bits(e, 56));
  auto f = fs.open(path_of(dir), file_system::open_mode::read_write);
  if (!f) return f.error();
  file_handle fh = f.value();
  status s = fs.pwrite(fh, at, e, kEntrySize);
  if (s) s = fs.datasync(fh);
  fs.close(fh);
  return s;
}

std::string to_hex(const digest& d) {
  static const char* k = "0123456789abcdef";
  std::string s;
  for (uint8_t b : d) {
    s += k[b >> 4];
    s += k[b & 15];
  }
  return s;
}

}  // namespace varve::chain
