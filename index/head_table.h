// The in-memory head table: stream id -> (current version, position of its
// latest event). Answers the expected-version check of every append in O(1).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace varve {

// Open addressing (linear probing) over 32-byte slots on huge pages; ids of
// up to 8 bytes live in the slot, longer ones in an arena, so a lookup of an
// existing stream never allocates and usually touches one cache line.
// Collisions of the 64-bit hash are resolved by comparing the bytes, so any
// hash function is correct (tests plug in a deliberately weak one). Memory:
// 32 B / 0.8 load = 40-80 B per stream (the table doubles), plus the id's bytes
// when longer than 8. Single-threaded: owned by the writer (or by the
// background checkpointer for its own copy).
class head_table {
 public:
  using hash_fn = uint64_t (*)(std::string_view);
  static uint64_t default_hash(std::string_view s);

  struct head {
    uint64_t version = 0;         // 0 = no events
    uint64_t last_position = ~uint64_t{0};
  };

  explicit head_table(hash_fn h = &default_hash);

  uint64_t hash(std::string_view s) const {
    // The common 8-byte (integer) id gets an inlined mixer instead of a call.
    if (hash_ == &default_hash && s.size() == 8) {
      uint64_t x;
      std::memcpy(&x, s.data(), 8);
      x ^= x >> 33;
      x *= 0xff51afd7ed558ccdull;
      x ^= x >> 33;
      x *= 0xc4ceb9fe1a85ec53ull;
      return x ^ (x >> 33);
    }
    return hash_(s);
  }
  // Null when the stream is absent.
  head* find(std::string_view stream, uint64_t h) {
    const uint64_t want = stream.size() <= 8 ? pack(stream) : h;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      slot& s = slots_[i];
      if (s.key_len == 0) return nullptr;
      if (s.key == want && s.key_len == stream.size() &&
          (stream.size() <= 8 ||
           std::memcmp(arena_.data() + s.key_off, stream.data(), stream.size()) == 0))
        return &s.h;
    }
  }
  const head* find(std::string_view stream, uint64_t h) const {
    return const_cast<head_table*>(this)->find(stream, h);
  }
  // Inserts an absent stream (version 0). May allocate: only for new streams.
  head* insert(std::string_view stream, uint64_t h, bool integer_id);
  head* find_or_insert(std::string_view stream, bool integer_id) {
    uint64_t h = hash(stream);
    head* e = find(stream, h);
    return e ? e : insert(stream, h, integer_id);
  }
  // Starts loading the slot a lookup of hash `h` will probe first, so a
  // caller with many lookups to do can overlap their cache misses.
  void prefetch(uint64_t h) const { __builtin_prefetch(&slots_[h & mask_], 1, 1); }
  // Records that `stream`'s newest event is `version` at `position`.
  void advance(std::string_view stream, bool integer_id, uint64_t version, uint64_t position) {
    head* e = find_or_insert(stream, integer_id);
    e->version = version;
    e->last_position = position;
  }
  size_t size() const { return size_; }
  void clear();
  // Sizes the table for `streams` entries at once (loading a checkpoint, or
  // the writer's expected_streams at open), instead of doubling and
  // rehashing its way there while appending. Never shrinks.
  void reserve(size_t streams);
  // Calls f(stream bytes, integer_id, head) for every stream, in slot order.
  template <class F>
  void for_each(F&& f) const {
    for (size_t i = 0; i <= mask_; ++i) {
      const slot& s = slots_[i];
      if (s.key_len) f(key_of(s), s.integer != 0, s.h);
    }
  }
  size_t memory_bytes() const { return (mask_ + 1) * sizeof(slot) + arena_.capacity(); }
  ~head_table();
  head_table(const head_table&) = delete;
  head_table& operator=(const head_table&) = delete;

 private:
  // Ids of up to 8 bytes (integer ids, short names) live in the slot itself,
  // so a lookup touches one cache line; longer ones keep their hash here and
  // their bytes in the arena.
  struct slot {
    uint64_t key;     // the id's bytes, zero-padded, if key_len <= 8; else its hash
    head h;
    uint32_t key_off; // arena offset when key_len > 8
    uint8_t key_len;  // 0 = empty slot (stream ids have 1..255 bytes)
    uint8_t integer;
  };
  static_assert(sizeof(slot) == 32);
  static uint64_t pack(std::string_view s) {
    uint64_t k = 0;
    std::memcpy(&k, s.data(), s.size());
    return k;
  }
  std::string_view key_of(const slot& s) const {
    if (s.key_len <= 8) return std::string_view(reinterpret_cast<const char*>(&s.key), s.key_len);
    return std::string_view(arena_.data() + s.key_off, s.key_len);
  }
  void grow();
  void rehash(size_t n);  // n: a power of two that holds every entry
  // Slots live in memory the kernel may back with huge pages: lookups are
  // random by nature, and a 4 KiB page per probe would cost a TLB miss each.
  static slot* allocate_slots(size_t n);
  static void free_slots(slot* p, size_t n);
  void reset_slots(size_t n);

  hash_fn hash_;
  slot* slots_ = nullptr;
  std::vector<char> arena_;
  size_t size_ = 0;
  size_t mask_ = 0;
};

}  // namespace varve
