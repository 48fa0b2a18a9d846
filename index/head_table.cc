#include "index/head_table.h"

#include <xxhash.h>

#include <cstring>

namespace varve {

uint64_t head_table::default_hash(std::string_view s) { return XXH3_64bits(s.data(), s.size()); }

head_table::head_table(hash_fn h) : hash_(h) {
  slots_.assign(1024, slot{});
  mask_ = slots_.size() - 1;
}

void head_table::clear() {
  slots_.assign(1024, slot{});
  mask_ = slots_.size() - 1;
  arena_.clear();
  size_ = 0;
}

head_table::head* head_table::find(std::string_view stream, uint64_t h) {
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    slot& s = slots_[i];
    if (s.key_len == 0) return nullptr;
    if (s.hash == h && s.key_len == stream.size() &&
        std::memcmp(arena_.data() + s.key_off, stream.data(), stream.size()) == 0)
      return &s.h;
  }
}

head_table::head* head_table::insert(std::string_view stream, uint64_t h, bool integer_id) {
  if ((size_ + 1) * 10 > slots_.size() * 7) grow();
  size_t i = h & mask_;
  while (slots_[i].key_len != 0) i = (i + 1) & mask_;
  slot& s = slots_[i];
  s.hash = h;
  s.h = head{};
  s.key_off = static_cast<uint32_t>(arena_.size());
  s.key_len = static_cast<uint8_t>(stream.size());
  s.integer = integer_id ? 1 : 0;
  arena_.insert(arena_.end(), stream.begin(), stream.end());
  ++size_;
  return &s.h;
}

void head_table::grow() {
  std::vector<slot> old;
  old.swap(slots_);
  slots_.assign(old.size() * 2, slot{});
  mask_ = slots_.size() - 1;
  for (const slot& s : old) {
    if (!s.key_len) continue;
    size_t i = s.hash & mask_;
    while (slots_[i].key_len != 0) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

}  // namespace varve
