#include "index/heads_file.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/coding.h"
#include "base/log_files.h"
#include "index/index_file.h"

namespace varve::heads_file {

using namespace varve::coding;
static constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'H', 'D', 'S'};

status write(file_system& fs, const std::string& index_dir, uint64_t log_id,
             const checkpoint_info& info, const head_table& table) {
  std::vector<std::byte> buf(64);
  uint64_t entries = 0;
  table.for_each([&](std::string_view stream, bool integer, const head_table::head& h) {
    if (h.version == 0) return;
    size_t at = buf.size();
    buf.resize(at + align8(18 + stream.size()));
    std::byte* p = buf.data() + at;
    put_u64(p, h.version);
    put_u64(p + 8, h.last_position);
    put_u8(p + 16, static_cast<uint8_t>(stream.size()));
    put_u8(p + 17, integer ? 1 : 0);
    std::memcpy(p + 18, stream.data(), stream.size());
    ++entries;
  });
  std::byte* h = buf.data();
  std::memcpy(h, kMagic, 8);
  put_u32(h + 8, 1);
  put_u64(h + 16, log_id);
  put_u64(h + 24, info.last_segment);
  put_u64(h + 32, info.next_sequence);
  put_u64(h + 40, entries);
  put_u64(h + 48, XXH3_64bits(buf.data() + 64, buf.size() - 64));
  put_u64(h + 56, XXH3_64bits(h, 56));

  return index_file::write(fs, index_dir, log_files::heads_name(info.last_segment), buf);
}

status read(file_system& fs, const std::string& path, uint64_t log_id, checkpoint_info& info,
            head_table& table) {
  auto got = index_file::read(fs, path, 64);
  if (!got) return got.error();
  const std::vector<std::byte>& buf = got.value();
  const std::byte* h = buf.data();
  if (std::memcmp(h, kMagic, 8) != 0 || get_u32(h + 8) != 1 || get_u64(h + 56) != XXH3_64bits(h, 56))
    return {errc::corruption, path + " offset 0: bad checkpoint header"};
  if (get_u64(h + 16) != log_id) return {errc::corruption, path + ": checkpoint of another log"};
  if (get_u64(h + 48) != XXH3_64bits(buf.data() + 64, buf.size() - 64))
    return {errc::corruption, path + " offset 64: checkpoint body checksum mismatch"};
  info.last_segment = get_u64(h + 24);
  info.next_sequence = get_u64(h + 32);
  info.entries = get_u64(h + 40);
  table.clear();
  // Bounded by the file's size, so a lying count cannot force a huge table.
  table.reserve(std::min<uint64_t>(info.entries, buf.size() / 24));
  size_t off = 64;
  for (uint64_t i = 0; i < info.entries; ++i) {
    if (off + 18 > buf.size()) return {errc::corruption, path + " offset " + std::to_string(off) + ": entry runs past the end"};
    const std::byte* p = buf.data() + off;
    uint8_t len = get_u8(p + 16);
    if (len == 0 || off + align8(18 + len) > buf.size())
      return {errc::corruption, path + " offset " + std::to_string(off) + ": bad entry"};
    std::string_view stream(reinterpret_cast<const char*>(p + 18), len);
    head_table::head* e = table.find_or_insert(stream, get_u8(p + 17) & 1);
    e->version = get_u64(p);
    e->last_position = get_u64(p + 8);
    off += align8(18 + len);
  }
  if (off != buf.size()) return {errc::corruption, path + ": trailing bytes after the entries"};
  return {};
}

}  // namespace varve::heads_file
