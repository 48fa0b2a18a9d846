// A projection checkpoint: every partition's state and the log position it
// reflects, in one file written atomically (index_file::write: a .partial,
// datasync, rename, directory sync). docs/FORMAT.md §8 is the byte layout:
//
//  0   8  magic "VARVECKP"
//  8   4  format_version (1)
//  12  4  partitions
//  16  8  log_id
//  24  8  position          the replay resumes here
//  32  8  body_bytes        size of the partition area that follows
//  40  8  header_checksum   XXH3-64 of bytes [0, 40)
//  48  .. per partition: size u64, state bytes, zero padding to 8
//  end 8  body_checksum     XXH3-64 of the partition area
#include <cstring>

#include <xxhash.h>

#include "engine/coding.h"
#include "index/index_file.h"
#include "varve/replay.h"

namespace varve {

using namespace coding;

namespace {
constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'C', 'K', 'P'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 48;

uint64_t pad8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }
}  // namespace

checkpoint_store::checkpoint_store(std::string dir, std::string name,
                                   std::shared_ptr<file_system> fs)
    : dir_(std::move(dir)), name_(std::move(name)), fs_(std::move(fs)) {}

std::string checkpoint_store::path() const { return dir_ + "/" + name_ + ".ckpt"; }

status checkpoint_store::save(uint64_t log_id, position at,
                              std::span<const std::string> states) const {
  if (name_.empty() || name_.find('/') != std::string::npos)
    return status(errc::invalid_argument, "checkpoint name '" + name_ + "' must be a file name");
  uint64_t body = 0;
  for (const auto& s : states) body += 8 + pad8(s.size());
  std::vector<std::byte> buf(kHeader + body + 8);
  std::byte* p = buf.data();
  std::memcpy(p, kMagic, 8);
  put_u32(p + 8, kVersion);
  put_u32(p + 12, static_cast<uint32_t>(states.size()));
  put_u64(p + 16, log_id);
  put_u64(p + 24, at.value);
  put_u64(p + 32, body);
  put_u64(p + 40, XXH3_64bits(p, 40));
  std::byte* q = p + kHeader;
  for (const auto& s : states) {
    put_u64(q, s.size());
    if (!s.empty()) std::memcpy(q + 8, s.data(), s.size());
    q += 8 + pad8(s.size());
  }
  put_u64(q, XXH3_64bits(p + kHeader, body));
  if (!fs_->exists(dir_)) {
    status st = fs_->create_dir(dir_);
    if (!st.ok()) return st;
  }
  return index_file::write(*fs_, dir_, name_ + ".ckpt", buf);
}

result<checkpoint_store::loaded> checkpoint_store::load(uint64_t log_id,
                                                        uint32_t partitions) const {
  const std::string file = path();
  if (!fs_->exists(file)) return status(errc::not_found, file + ": no checkpoint yet");
  auto bytes = index_file::read(*fs_, file, kHeader + 8);
  if (!bytes) return bytes.error();
  const std::byte* p = bytes.value().data();
  const uint64_t size = bytes.value().size();
  auto bad = [&](uint64_t off, const std::string& why) {
    return status(errc::corruption, file + " offset " + std::to_string(off) + ": " + why);
  };
  if (std::memcmp(p, kMagic, 8) != 0) return bad(0, "not a varve checkpoint (bad magic)");
  if (get_u64(p + 40) != XXH3_64bits(p, 40)) return bad(40, "header checksum mismatch");
  if (get_u32(p + 8) != kVersion)
    return status(errc::newer_format, file + ": checkpoint format " +
                                          std::to_string(get_u32(p + 8)) + " is not 1");
  const uint64_t body = get_u64(p + 32);
  if (body > size || kHeader + body + 8 != size)
    return bad(32, "body size " + std::to_string(body) + " does not match the file size " +
                       std::to_string(size));
  if (get_u64(p + kHeader + body) != XXH3_64bits(p + kHeader, body))
    return bad(kHeader + body, "body checksum mismatch");
  if (get_u64(p + 16) != log_id)
    return status(errc::invalid_argument, file + ": checkpoint belongs to another log");
  const uint32_t parts = get_u32(p + 12);
  if (parts != partitions)
    return status(errc::invalid_argument, file + ": checkpoint has " + std::to_string(parts) +
                                              " partitions, this replay " +
                                              std::to_string(partitions));
  loaded out;
  out.at = position{get_u64(p + 24)};
  out.states.resize(parts);
  uint64_t off = kHeader;
  const uint64_t end = kHeader + body;
  for (uint32_t i = 0; i < parts; ++i) {
    if (end - off < 8) return bad(off, "partition " + std::to_string(i) + " is cut short");
    const uint64_t n = get_u64(p + off);
    if (n > end - off - 8 || pad8(n) > end - off - 8)
      return bad(off, "partition " + std::to_string(i) + " size " + std::to_string(n) +
                          " runs past the body");
    out.states[i].assign(p + off + 8, p + off + 8 + n);
    off += 8 + pad8(n);
  }
  if (off != end) return bad(off, "bytes after the last partition");
  return out;
}

}  // namespace varve
