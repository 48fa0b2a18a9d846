#include "engine/lifecycle/stream_lifecycle.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "base/coding.h"
#include "base/log_files.h"
#include "index/index_file.h"

namespace varve::detail {

namespace {

constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'S', 'T', 'M'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kHeader = 64;
constexpr uint64_t kEntryFixed = 64;  // before the stream id
constexpr uint8_t kDeleted = 1 << 0;
constexpr uint8_t kInteger = 1 << 1;

uint32_t entry_length(size_t stream_len) {
  return static_cast<uint32_t>(coding::align8(kEntryFixed + stream_len) + 8);
}

}  // namespace

std::vector<std::byte> encode_lifecycle_header(uint64_t log_id) {
  std::vector<std::byte> h(kHeader);
  std::memcpy(h.data(), kMagic, 8);
  coding::put_u32(h.data() + 8, kVersion);
  coding::put_u64(h.data() + 16, log_id);
  coding::put_u64(h.data() + 56, XXH3_64bits(h.data(), 56));
  return h;
}

std::vector<std::byte> encode_lifecycle_entry(std::string_view stream, bool integer, const stream_metadata& meta,
                                              uint64_t change_number, uint64_t time_ns, uint64_t log_end) {
  const uint32_t len = entry_length(stream.size());
  std::vector<std::byte> e(len);
  coding::put_u32(e.data(), len);
  coding::put_u8(e.data() + 4, static_cast<uint8_t>((meta.deleted ? kDeleted : 0) | (integer ? kInteger : 0)));
  coding::put_u8(e.data() + 5, static_cast<uint8_t>(stream.size()));
  coding::put_u64(e.data() + 8, change_number);
  coding::put_u64(e.data() + 16, time_ns);
  coding::put_u64(e.data() + 24, meta.truncate_before);
  coding::put_u64(e.data() + 32, meta.max_count);
  coding::put_u64(e.data() + 40, meta.max_age_ns);
  coding::put_u64(e.data() + 48, log_end);
  std::memcpy(e.data() + kEntryFixed, stream.data(), stream.size());
  coding::put_u64(e.data() + len - 8, XXH3_64bits(e.data(), len - 8));
  return e;
}

uint64_t lifecycle_view::hash(std::string_view stream) { return XXH3_64bits(stream.data(), stream.size()); }

const stream_metadata* lifecycle_view::find_slow(std::string_view stream) const {
  const uint64_t h = hash(stream);
  auto it = std::lower_bound(items_.begin(), items_.end(), h, [](const item& i, uint64_t v) { return i.hash < v; });
  for (; it != items_.end() && it->hash == h; ++it)
    if (it->entry.stream == stream) return &it->entry.metadata;
  return nullptr;
}

void lifecycle_view::build_filter() {
  uint64_t bits = 64;
  while (bits < 16 * items_.size()) bits <<= 1;
  bloom_.assign(bits / 64, 0);
  bloom_mask_ = bits - 1;
  for (const item& i : items_) {
    const uint64_t h = quick_hash(i.entry.stream) & bloom_mask_;
    bloom_[h >> 6] |= uint64_t{1} << (h & 63);
  }
}

result<std::shared_ptr<const lifecycle_view>> lifecycle_view::load(file_system& fs, const std::string& dir,
                                                                   uint64_t log_id) {
  auto v = std::make_shared<lifecycle_view>();
  const std::string path = log_files::join(dir, kStreamsFileName);
  if (!fs.exists(path)) return std::shared_ptr<const lifecycle_view>(std::move(v));
  auto got = index_file::read(fs, path, 0);
  if (!got) return got.error();
  const std::vector<std::byte>& b = got.value();
  if (b.size() < kHeader || std::memcmp(b.data(), kMagic, 8) != 0 ||
      coding::get_u64(b.data() + 56) != XXH3_64bits(b.data(), 56))
    return status(errc::corruption, path + " offset 0: bad stream metadata journal header");
  if (coding::get_u32(b.data() + 8) > kVersion)
    return status(errc::newer_format, path + ": stream metadata journal format " +
                                          std::to_string(coding::get_u32(b.data() + 8)) +
                                          " is newer than this varve reads (" + std::to_string(kVersion) + ")");
  if (coding::get_u64(b.data() + 16) != log_id)
    return status(errc::corruption, path + ": the stream metadata journal of another log");
  // The last change per stream wins; the map keeps where each stream is.
  std::unordered_map<std::string, size_t> at_of;
  std::vector<item> items;
  uint64_t at = kHeader;
  while (at < b.size()) {
    const std::byte* e = b.data() + at;
    const uint64_t left = b.size() - at;
    const uint32_t len = left >= 8 ? coding::get_u32(e) : 0;
    const uint8_t slen = left >= 8 ? coding::get_u8(e + 5) : 0;
    const bool sane = left >= kEntryFixed + 8 && slen >= 1 && len == entry_length(slen) && len <= left &&
                      (coding::get_u8(e + 4) & ~(kDeleted | kInteger)) == 0 &&
                      coding::get_u64(e + len - 8) == XXH3_64bits(e, len - 8);
    if (!sane) {
      // A change a crash cut short is the last thing in the file: its
      // claimed extent reaches the end, or what is left is zeros. It was
      // never acknowledged (a change returns after the sync).
      const bool reaches_end = left < 8 || (len >= kEntryFixed + 8 && len % 8 == 0 && len >= left);
      const bool zeros = std::all_of(e, b.data() + b.size(), [](std::byte x) { return x == std::byte{0}; });
      if (reaches_end || zeros) break;
      return status(errc::corruption, path + " offset " + std::to_string(at) + ": damaged stream metadata entry");
    }
    const uint64_t number = coding::get_u64(e + 8);
    if (number != v->last_change_ + 1)
      return status(errc::corruption, path + " offset " + std::to_string(at) + ": change number " +
                                          std::to_string(number) + " out of order (expected " +
                                          std::to_string(v->last_change_ + 1) + ")");
    stream_metadata_entry en;
    en.stream.assign(reinterpret_cast<const char*>(e + kEntryFixed), slen);
    en.stream_is_integer = (coding::get_u8(e + 4) & kInteger) != 0;
    en.metadata.deleted = (coding::get_u8(e + 4) & kDeleted) != 0;
    en.metadata.truncate_before = coding::get_u64(e + 24);
    en.metadata.max_count = coding::get_u64(e + 32);
    en.metadata.max_age_ns = coding::get_u64(e + 40);
    en.changed_ns = coding::get_u64(e + 16);
    en.change_number = number;
    v->last_change_ = number;
    auto [it, fresh] = at_of.try_emplace(en.stream, items.size());
    if (fresh) items.push_back({hash(en.stream), std::move(en)});
    else items[it->second].entry = std::move(en);
    at += len;
  }
  // A stream whose metadata was cleared again (nothing left) needs no entry.
  for (item& i : items)
    if (i.entry.metadata.any()) {
      v->deleted_ += i.entry.metadata.deleted ? 1 : 0;
      v->items_.push_back(std::move(i));
    }
  std::sort(v->items_.begin(), v->items_.end(), [](const item& a, const item& b) { return a.hash < b.hash; });
  v->build_filter();
  v->journal_end_ = at;
  return std::shared_ptr<const lifecycle_view>(std::move(v));
}

result<std::shared_ptr<const lifecycle_view>> lifecycle_journal::change(std::string_view stream, bool integer,
                                                                        const stream_metadata& meta,
                                                                        uint64_t log_end, uint64_t now_ns) {
  const std::string path = log_files::join(dir_, kStreamsFileName);
  if (!fs_->exists(path)) {
    const std::vector<std::byte> h = encode_lifecycle_header(log_id_);
    if (status s = index_file::write(*fs_, dir_, kStreamsFileName, h); !s) return s;
  }
  // The view this writer holds is what the file says up to journal_end()
  // (read at open, then extended by this writer alone): past it lies at
  // most a torn change, never acknowledged, which this one replaces.
  const uint64_t end = view_->journal_end() == 0 ? kHeader : view_->journal_end();
  const std::vector<std::byte> e =
      encode_lifecycle_entry(stream, integer, meta, view_->last_change() + 1, now_ns, log_end);
  auto f = fs_->open(path, file_system::open_mode::read_write);
  if (!f) return f.error();
  file_handle fh = f.value();
  status s;
  auto size = fs_->file_size(fh);
  if (!size) s = size.error();
  if (s && size.value() > end) s = fs_->truncate(fh, end);
  if (s) s = fs_->pwrite(fh, end, e.data(), e.size());
  if (s) s = fs_->datasync(fh);
  fs_->close(fh);
  if (!s) return status(s.code(), path + ": stream metadata change not recorded: " + s.message());
  // The new view, from the file: what readers in other processes will read.
  auto v = lifecycle_view::load(*fs_, dir_, log_id_);
  if (!v) return v.error();
  if (v.value()->last_change() != view_->last_change() + 1)
    return status(errc::io_error, path + ": the change just synced does not read back");
  view_ = v.value();
  return view_;
}

}  // namespace varve::detail
