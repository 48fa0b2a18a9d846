#include "index/head_table.h"

#include <xxhash.h>

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace varve {

uint64_t head_table::default_hash(std::string_view s) { return XXH3_64bits(s.data(), s.size()); }

static constexpr size_t kHugePage = size_t{2} << 20;
static constexpr size_t kPage = 4096;

head_table::slot* head_table::allocate_slots(size_t n, bool populate) {
  const size_t bytes = n * sizeof(slot);
  // Anonymous memory reads as zero (an empty slot) without a memset.
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (bytes < kHugePage) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags | (populate ? MAP_POPULATE : 0), -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return static_cast<slot*>(p);
  }
  // Huge pages need 2 MiB alignment: map one more, trim both ends (bytes is
  // a power of two of at least 2 MiB, so the rest is whole huge pages).
  void* raw = ::mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto r = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t a = (r + kHugePage - 1) & ~(kHugePage - 1);
  if (a > r) ::munmap(raw, a - r);
  if (const uintptr_t tail = r + bytes + kHugePage - (a + bytes); tail) ::munmap(reinterpret_cast<void*>(a + bytes), tail);
  auto* p = reinterpret_cast<slot*>(a);
  if (populate) fault_in(p, bytes);
  return p;
}

void head_table::fault_in(slot* p, size_t bytes) {
  if (bytes >= kHugePage) (void)::madvise(p, bytes, MADV_HUGEPAGE);  // a hint; fine if refused
  populate(p, bytes);
}

void head_table::populate(slot* p, size_t bytes) {
  // MADV_POPULATE_WRITE (Linux 5.14); else a write per page (a read would
  // map the shared zero page and fault again at the first insert). The
  // memory is the caller's alone until it hands the table over.
#ifdef MADV_POPULATE_WRITE
  if (::madvise(p, bytes, MADV_POPULATE_WRITE) == 0) return;
#endif
  auto* c = reinterpret_cast<volatile char*>(p);
  for (size_t off = 0; off < bytes; off += kPage) c[off] = 0;
}

void head_table::free_slots(slot* p, size_t n) {
  if (p) ::munmap(p, n * sizeof(slot));
}

void head_table::reset_slots(size_t n) {
  drop_growth();
  free_slots(slots_, mask_ + 1);
  slots_ = allocate_slots(n, true);
  mask_ = n - 1;
}

head_table::head_table(hash_fn h, size_t initial_slots) : hash_(h), initial_slots_(initial_slots) {
  reset_slots(initial_slots_);
}

head_table::~head_table() {
  drop_growth();
  free_slots(slots_, mask_ + 1);
}

void head_table::drop_growth() {
  if (job_) {
    // Abandoned, the runner unmaps its table itself; made already, it is ours.
    int pending = kPending;
    if (!job_->state.compare_exchange_strong(pending, kAbandoned, std::memory_order_acq_rel))
      free_slots(job_->table, next_n_);
    job_.reset();
  }
  free_slots(next_, next_n_);
  next_ = nullptr;
  free_old();
  growing_ = false;
}

void head_table::free_old() {
  if (!old_) return;
  const size_t bytes = (old_mask_ + 1) * sizeof(slot);
  if (unmapped_ < bytes) ::munmap(reinterpret_cast<char*>(old_) + unmapped_, bytes - unmapped_);
  old_ = nullptr;
}

void head_table::reserve(size_t streams) {
  size_t n = initial_slots_;
  while (n * kGrowPercent < streams * 100) n *= 2;  // no growth up to `streams`
  finish_growth();
  if (n <= mask_ + 1) return;
  if (size_ == 0)
    reset_slots(n);
  else
    rehash(n);
}

void head_table::clear() {
  reset_slots(initial_slots_);
  arena_.clear();
  size_ = 0;
}

head_table::head* head_table::insert(std::string_view stream, uint64_t h, bool integer_id) {
  step();
  // The hard limit: reached only when the runner is that late (self-stepped
  // growths end long before, see step()).
  if ((size_ + 1) * 100 > (mask_ + 1) * kLimitPercent) [[unlikely]] {
    finish_growth();
    if ((size_ + 1) * 100 > (mask_ + 1) * kLimitPercent) grow();
  }
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

void head_table::move_slot(const slot& s) { move_slot(s, slot_hash(s)); }

void head_table::move_slot(const slot& s, uint64_t h) {
  size_t i = h & mask_;
  while (slots_[i].key_len != 0) i = (i + 1) & mask_;
  slots_[i] = s;
}

void head_table::begin_growth() {
  next_n_ = (mask_ + 1) * 2;
  touched_ = 0;
  growing_ = true;
  if (!runner_) {
    next_ = allocate_slots(next_n_, false);
    return;
  }
  // The runner maps the new table and faults it in: even the mmap stays off
  // this thread (it takes the address space's lock for writing, and waits
  // there while another thread's populate holds it: 1-3 ms measured).
  job_ = std::make_shared<table_job>();
  runner_([job = job_, n = next_n_] {
    slot* p = allocate_slots(n, false);
    // 4 KiB pages: a huge-page hint here had the kernel compact memory
    // under the address space's lock, and the writer's next page fault
    // waited behind it (a 50 ms append in P6). Bulk tables keep the hint.
    populate(p, n * sizeof(slot));
    job->table = p;
    int pending = kPending;
    if (!job->state.compare_exchange_strong(pending, kReady, std::memory_order_acq_rel))
      free_slots(p, n);  // abandoned by the table meanwhile
  });
}

bool head_table::take_job(bool force) {
  int st = job_->state.load(std::memory_order_acquire);
  if (st == kPending && force) {
    // Late: the steps map and fault in the table themselves from now on.
    if (job_->state.compare_exchange_strong(st, kAbandoned, std::memory_order_acq_rel)) {
      job_.reset();
      next_ = allocate_slots(next_n_, false);
      return true;
    }
  }
  if (st != kReady) return false;
  next_ = job_->table;
  touched_ = next_n_ * sizeof(slot);  // all in
  job_.reset();
  return true;
}

void head_table::set_runner(runner r) {
  // A table the runner is still making is left to it (it unmaps what it
  // made once it sees it abandoned): nothing here waits for the runner.
  if (job_) (void)take_job(true);
  runner_ = std::move(r);
}

void head_table::step() {
  if (job_) {
    // Phase 1 with a runner: a step only looks. It has until the hard limit
    // (15 % of the slots: ~20,000 inserts at 131,072 slots); the old table
    // fills on meanwhile, which costs a new stream's lookup a longer probe
    // (~50 slots at 90 %) but no page fault. (Faulting the rest in a page
    // per step once the runner was late put ~2,000 faults of 2-3 us each
    // into P6's p99.9.)
    if (!take_job(false)) return;
  }
  if (next_) {
    // Phase 1 without one: a page of the next table faulted in per step (a
    // write: a read would map the shared zero page and fault again at the
    // first insert).
    const size_t bytes = next_n_ * sizeof(slot);
    if (touched_ < bytes) {
      reinterpret_cast<volatile char*>(next_)[touched_] = 0;
      touched_ += kPage;
    }
    if (touched_ < bytes) return;
    old_ = slots_;
    old_mask_ = mask_;
    moved_ = 0;
    unmapped_ = 0;
    slots_ = next_;
    mask_ = next_n_ - 1;
    next_ = nullptr;
    return;
  }
  if (old_) {
    // Phase 2: the old table's slots move in order; find() looks there for
    // the ones not moved yet, so moving a slot never hides a stream.
    // Their new homes are random: prefetched first, so the cache misses of
    // a step overlap instead of queueing (a step costs about one miss).
    const size_t first = moved_, end = std::min(moved_ + kMoveSlots, old_mask_ + 1);
    uint64_t hashes[kMoveSlots];
    for (size_t j = first; j < end; ++j) {
      const slot& o = old_[j];
      if (!o.key_len) continue;
      hashes[j - first] = slot_hash(o);
      prefetch(hashes[j - first]);
    }
    for (; moved_ < end; ++moved_)
      if (old_[moved_].key_len) move_slot(old_[moved_], hashes[moved_ - first]);
    if (moved_ > old_mask_) {
      if (runner_) {
        runner_([p = old_, bytes = (old_mask_ + 1) * sizeof(slot)] { ::munmap(p, bytes); });
        old_ = nullptr;
      } else {
        free_old();
      }
      growing_ = false;
      return;
    }
    if (runner_) return;  // the old table goes whole, off this thread, at the end
    constexpr size_t kUnmapPiece = 64 << 10;
    const size_t done = moved_ * sizeof(slot) / kUnmapPiece * kUnmapPiece;
    if (done > unmapped_) {
      ::munmap(reinterpret_cast<char*>(old_) + unmapped_, done - unmapped_);
      unmapped_ = done;
    }
    return;
  }
  // Self-stepped, phase 1 takes (mask_ + 1) / 64 steps and phase 2
  // (mask_ + 1) / 16: the old table stops below kGrowPercent + 1/64 of its
  // slots, and the new one, twice as large, stays below half that plus 1/32.
  if (size_ * 100 >= (mask_ + 1) * kGrowPercent) begin_growth();
}

void head_table::finish_growth() {
  if (job_) (void)take_job(true);
  while (growing_) step();
}

void head_table::grow() { rehash((mask_ + 1) * 2); }

void head_table::rehash(size_t n) {
  finish_growth();
  slot* old = slots_;
  const size_t old_n = mask_ + 1;
  slots_ = allocate_slots(n, true);
  mask_ = n - 1;
  for (size_t j = 0; j < old_n; ++j)
    if (old[j].key_len) move_slot(old[j]);
  free_slots(old, old_n);
}

}  // namespace varve
