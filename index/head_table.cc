#include "index/head_table.h"

#include <xxhash.h>

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

namespace varve {

uint64_t head_table::default_hash(std::string_view s) { return XXH3_64bits(s.data(), s.size()); }

static constexpr size_t kHugePage = size_t{2} << 20;

head_table::slot* head_table::allocate_slots(size_t n) {
  const size_t bytes = n * sizeof(slot);
  void* p = nullptr;
  if (bytes >= kHugePage) {
    p = std::aligned_alloc(kHugePage, (bytes + kHugePage - 1) / kHugePage * kHugePage);
    if (p) (void)::madvise(p, bytes, MADV_HUGEPAGE);  // a hint; fine if refused
  }
  if (!p) p = std::malloc(bytes);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return static_cast<slot*>(p);
}

void head_table::free_slots(slot* p, size_t) { std::free(p); }

void head_table::reset_slots(size_t n) {
  free_slots(slots_, mask_ + 1);
  slots_ = allocate_slots(n);
  mask_ = n - 1;
}

head_table::head_table(hash_fn h) : hash_(h) { reset_slots(1024); }

head_table::~head_table() { free_slots(slots_, mask_ + 1); }

void head_table::reserve(size_t streams) {
  size_t n = 1024;
  while (n * 4 < streams * 5) n *= 2;
  if (n <= mask_ + 1) return;
  if (size_ == 0)
    reset_slots(n);
  else
    rehash(n);
}

void head_table::clear() {
  reset_slots(1024);
  arena_.clear();
  size_ = 0;
}

head_table::head* head_table::insert(std::string_view stream, uint64_t h, bool integer_id) {
  if ((size_ + 1) * 5 > (mask_ + 1) * 4) grow();
  size_t i = h & mask_;
  while (slots_[i].key_len != 0) i = (i + 1) & mask_;
  slot& s = slots_[i];
  s.h = head{};
  s.key_len = static_cast<uint8_t>(stream.size());
  s.integer = integer_id ? 1 : 0;
  if (stream.size() <= 8) {
    s.key = pack(stream);
    s.key_off = 0;
  } else {
    s.key = h;
    s.key_off = static_cast<uint32_t>(arena_.size());
    arena_.insert(arena_.end(), stream.begin(), stream.end());
  }
  ++size_;
  return &s.h;
}

void head_table::grow() { rehash((mask_ + 1) * 2); }

void head_table::rehash(size_t n) {
  slot* old = slots_;
  const size_t old_n = mask_ + 1;
  slots_ = allocate_slots(n);
  mask_ = n - 1;
  for (size_t j = 0; j < old_n; ++j) {
    const slot& s = old[j];
    if (!s.key_len) continue;
    const uint64_t h = s.key_len <= 8 ? hash(key_of(s)) : s.key;
    size_t i = h & mask_;
    while (slots_[i].key_len != 0) i = (i + 1) & mask_;
    slots_[i] = s;
  }
  free_slots(old, old_n);
}

}  // namespace varve
