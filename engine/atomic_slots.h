// A growable array of atomic pointers that readers index without a lock while
// it grows: two levels (chunks of 4096 slots, allocated once each, never
// moved), so a slot's address is stable for the table's life. Used for the
// segments of a log and for their index files.
#pragma once

#include <atomic>
#include <cstdint>

namespace varve {

template <class T>
class atomic_slots {
 public:
  atomic_slots() = default;
  ~atomic_slots() {
    for (auto& c : chunks_) delete[] c.load();
  }
  atomic_slots(const atomic_slots&) = delete;
  atomic_slots& operator=(const atomic_slots&) = delete;

  // Null when `index` is beyond the table, or absent and !create.
  std::atomic<T*>* slot(uint64_t index, bool create) {
    const uint64_t c = index >> kChunkBits;
    if (c >= kChunks) return nullptr;
    std::atomic<T*>* chunk = chunks_[c].load(std::memory_order_acquire);
    if (!chunk) {
      if (!create) return nullptr;
      // Allocation happens once per 4096 slots, never per append.
      auto* fresh = new std::atomic<T*>[kChunkSize]();
      if (chunks_[c].compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel)) {
        chunk = fresh;
      } else {
        delete[] fresh;
      }
    }
    return &chunk[index & (kChunkSize - 1)];
  }
  // Calls f(T*) for every non-null slot (destruction of the owner).
  template <class F>
  void for_each(F&& f) {
    for (auto& c : chunks_) {
      std::atomic<T*>* chunk = c.load();
      if (!chunk) continue;
      for (uint64_t i = 0; i < kChunkSize; ++i)
        if (T* p = chunk[i].load()) f(p);
    }
  }

 private:
  static constexpr uint64_t kChunkBits = 12;
  static constexpr uint64_t kChunkSize = uint64_t{1} << kChunkBits;
  static constexpr uint64_t kChunks = 4096;  // 16 M slots
  std::atomic<std::atomic<T*>*> chunks_[kChunks] = {};
};

}  // namespace varve
