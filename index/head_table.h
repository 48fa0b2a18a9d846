// The in-memory head table: stream id -> (current version, position of its
// latest event). Answers the expected-version check of every append in O(1).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace varve {

// Open addressing (linear probing) over 32-byte slots; stream bytes live in
// an arena, so a lookup of an existing stream never allocates. Collisions of
// the 64-bit hash are resolved by comparing the bytes, so any hash function is
// correct (tests plug in a deliberately weak one). Memory: ~46 B per stream at
// the 0.7 load limit, plus the stream id bytes. Single-threaded: owned by the
// writer (or by the background checkpointer for its own copy).
class head_table {
 public:
  using hash_fn = uint64_t (*)(std::string_view);
  static uint64_t default_hash(std::string_view s);

  struct head {
    uint64_t version = 0;         // 0 = no events
    uint64_t last_position = ~uint64_t{0};
  };

  explicit head_table(hash_fn h = &default_hash);

  uint64_t hash(std::string_view s) const { return hash_(s); }
  // Null when the stream is absent.
  head* find(std::string_view stream, uint64_t h);
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
  size_t size() const { return size_; }
  void clear();
  // Calls f(stream bytes, integer_id, head) for every stream, in slot order.
  template <class F>
  void for_each(F&& f) const {
    for (const slot& s : slots_)
      if (s.key_len) f(std::string_view(arena_.data() + s.key_off, s.key_len), s.integer != 0, s.h);
  }
  size_t memory_bytes() const { return slots_.capacity() * sizeof(slot) + arena_.capacity(); }

 private:
  struct slot {
    uint64_t hash;
    head h;
    uint32_t key_off;
    uint8_t key_len;  // 0 = empty slot (stream ids have 1..255 bytes)
    uint8_t integer;
  };
  static_assert(sizeof(slot) == 32);
  void grow();

  hash_fn hash_;
  std::vector<slot> slots_;
  std::vector<char> arena_;
  size_t size_ = 0;
  size_t mask_ = 0;
};

}  // namespace varve
