// The in-memory head table: stream id -> (current version, position of its
// latest event). Answers the expected-version check of every append in O(1).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
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

  // initial_slots: a power of two. The default, 16,384 (512 KiB, faulted in
  // at once), holds ~13,000 streams before the first growth: a new log's
  // first growths come while its helper thread is busy creating segments.
  explicit head_table(hash_fn h = &default_hash, size_t initial_slots = 16384);

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
  // Null when the stream is absent. Never moves or frees a slot, so the
  // pointers it returns stay valid until the next insert() or tick().
  head* find(std::string_view stream, uint64_t h) {
    const uint64_t want = stream.size() <= 8 ? pack(stream) : h;
    if (head* r = probe(slots_, mask_, stream, want, h)) return r;
    // While the table grows, streams not yet moved are still in the old one.
    if (old_) [[unlikely]] return probe_old(stream, want, h);
    return nullptr;
  }
  const head* find(std::string_view stream, uint64_t h) const {
    return const_cast<head_table*>(this)->find(stream, h);
  }
  // Inserts an absent stream (version 0). May allocate: only for new streams.
  // Moves heads (a step of growth): every pointer from find() is invalid after.
  head* insert(std::string_view stream, uint64_t h, bool integer_id);
  // One step of growth when the table is growing, nothing otherwise. The
  // writer calls it after each append, once it has stored into the heads it
  // found: like insert(), it invalidates them.
  void tick() {
    if (growing_) [[unlikely]] step();
  }
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
    tick();
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
    // Growing: the old table's slots not moved yet hold the other streams.
    if (old_)
      for (size_t i = moved_; i <= old_mask_; ++i) {
        const slot& s = old_[i];
        if (s.key_len) f(key_of(s), s.integer != 0, s.h);
      }
  }
  size_t memory_bytes() const {
    return (mask_ + 1 + (old_ ? old_mask_ + 1 : 0) + (next_ ? next_n_ : 0)) * sizeof(slot) + arena_.capacity();
  }
  // True while a growth is under way (tests, metrics).
  bool growing() const { return growing_; }
  // Where a growth's page work goes: mapping and faulting in the next table,
  // unmapping the old one (~80 us per MiB each on the hosts of
  // docs/BENCHMARKS.md, and mmap/munmap take the address space's lock for
  // writing). Given a runner (the writer's: its background preparer thread,
  // which must run each task exactly once, in the order given, shutdown
  // included), the table hands all of it over and its steps only look
  // whether the new table is ready; without one (the default) each step
  // faults in one page and the old table is unmapped in 64 KiB pieces.
  // Nothing waits for the runner: a table it is still making when the owner
  // gives up on it (or changes runner) it unmaps itself.
  using runner = std::function<void(std::function<void()>)>;
  void set_runner(runner r);
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
  // The id's bytes (1-8 of them), zero-padded, as one word. Every append
  // looks its stream up: a memcpy of a run-time length is a library call, so
  // the bytes come in with fixed-size loads (two overlapping ones; the bytes
  // both cover are the same, so OR-ing them is exact).
  static uint64_t pack(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    if (n == 8) return load64(p);
    if (n >= 4) return uint64_t{load32(p)} | (uint64_t{load32(p + n - 4)} << (8 * (n - 4)));
    if (n == 0) return 0;
    return uint64_t{p[0]} | (uint64_t{p[n / 2]} << (8 * (n / 2))) | (uint64_t{p[n - 1]} << (8 * (n - 1)));
  }
  static uint64_t load64(const unsigned char* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  static uint32_t load32(const unsigned char* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  // Bytes of a longer id against the arena's copy: ids of 9-16 bytes (most
  // names) in two overlapping 8-byte compares instead of a memcmp call.
  static bool same_bytes(const char* a, const char* b, size_t n) {
    if (n <= 16) {
      const auto* x = reinterpret_cast<const unsigned char*>(a);
      const auto* y = reinterpret_cast<const unsigned char*>(b);
      return load64(x) == load64(y) && load64(x + n - 8) == load64(y + n - 8);
    }
    return std::memcmp(a, b, n) == 0;
  }
  // A stored stream's hash: kept in the slot for ids longer than 8 bytes.
  uint64_t slot_hash(const slot& s) const { return s.key_len <= 8 ? hash(key_of(s)) : s.key; }
  std::string_view key_of(const slot& s) const {
    if (s.key_len <= 8) return std::string_view(reinterpret_cast<const char*>(&s.key), s.key_len);
    return std::string_view(arena_.data() + s.key_off, s.key_len);
  }
  // `want`: pack(stream) for ids of up to 8 bytes, else the hash.
  bool holds(const slot& s, std::string_view stream, uint64_t want) const {
    return s.key == want && s.key_len == stream.size() &&
           (stream.size() <= 8 || same_bytes(arena_.data() + s.key_off, stream.data(), stream.size()));
  }
  head* probe(slot* slots, size_t mask, std::string_view stream, uint64_t want, uint64_t h) const {
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      slot& s = slots[i];
      if (s.key_len == 0) return nullptr;
      if (holds(s, stream, want)) return &s.h;
    }
  }
  // The old table while its slots move: those below moved_ are gone (their
  // pages unmapped as the move passes them). A stream still there sits at
  // or after moved_, and the slots from its probe start (or from moved_)
  // up to it are untouched, so the probe starts at max(home, moved_) and a
  // wrap past the end continues at moved_: a stream that wrapped below
  // moved_ has moved already.
  head* probe_old(std::string_view stream, uint64_t want, uint64_t h) const {
    const size_t first = std::max<size_t>(h & old_mask_, moved_);
    for (size_t i = first;;) {
      slot& s = old_[i];
      if (s.key_len == 0) return nullptr;
      if (holds(s, stream, want)) return &s.h;
      i = i == old_mask_ ? moved_ : i + 1;
      if (i == first) return nullptr;  // every slot left is full: looked at them all
    }
  }
  // Growth in steps. A table that doubles and rehashes at once stalls its
  // caller for a time proportional to the streams it holds (0.3-0.9 ms at
  // 50,000 streams on the hosts of docs/BENCHMARKS.md, ~100x that at
  // millions): the writer's longest append. So a table at 80 % load maps one
  // twice its size (zero pages, nothing touched), and each later insert() or
  // tick() does a bounded step. Phase 1: the new table is faulted in (by the
  // runner, the step only looks; without one, one page per step). Phase 2:
  // the new table is the current one, and each step moves kMoveSlots slots
  // of the old one into it; lookups look in the old table for streams not
  // moved yet. The runner has until the hard limit (95 % load), which
  // finishes a growth at once; self-stepped, both phases end long before.
  static constexpr size_t kMoveSlots = 16;
  static constexpr size_t kGrowPercent = 80;   // a growth begins
  static constexpr size_t kLimitPercent = 95;  // a growth is finished at once
  void step();
  void begin_growth();
  void finish_growth();  // completes a growth under way at once
  void move_slot(const slot& s);
  void move_slot(const slot& s, uint64_t h);  // h: its hash
  void grow();
  void rehash(size_t n);  // n: a power of two that holds every entry
  // Slots live in anonymous mappings (zero pages until first touched). Bulk
  // tables (the initial one, reserve()) are faulted in at once and may use
  // huge pages: lookups are random by nature, and a 4 KiB page per probe
  // would cost a TLB miss each. Tables grown in steps stay on small pages: a
  // huge page would be zeroed (and, with the kernel's defrag=madvise,
  // compacted for) inside one step.
  static slot* allocate_slots(size_t n, bool populate);
  // Faults [p, p + bytes) in for writing, on huge pages from 2 MiB.
  static void fault_in(slot* p, size_t bytes);
  static void populate(slot* p, size_t bytes);  // the same on the pages there are
  static void free_slots(slot* p, size_t n);
  void reset_slots(size_t n);

  hash_fn hash_;
  size_t initial_slots_;
  slot* slots_ = nullptr;
  std::vector<char> arena_;
  size_t size_ = 0;
  size_t mask_ = 0;
  bool growing_ = false;
  // Phase 1: the next table (next_n_ slots). Made by the runner: job_ until
  // taken. Made here: next_, of which touched_ bytes are faulted in so far.
  struct table_job {
    std::atomic<int> state{0};  // kPending, then kReady (the runner) or kAbandoned (the table)
    slot* table = nullptr;      // the runner's, published by kReady
  };
  static constexpr int kPending = 0, kReady = 1, kAbandoned = 2;
  std::shared_ptr<table_job> job_;
  slot* next_ = nullptr;
  size_t next_n_ = 0;
  size_t touched_ = 0;
  runner runner_;
  // Takes the runner's table once ready (true); with `force`, a table still
  // pending is abandoned to the runner and next_ mapped here instead.
  bool take_job(bool force);
  void drop_growth();  // frees every table but the current one
  // Phase 2: the old table; its slots below moved_ are in the current one,
  // and its first unmapped_ bytes are unmapped (unmapping 1 MiB takes ~80 us
  // on those hosts, so it goes in 64 KiB pieces too).
  slot* old_ = nullptr;
  size_t old_mask_ = 0;
  size_t moved_ = 0;
  size_t unmapped_ = 0;
  void free_old();
};

}  // namespace varve
