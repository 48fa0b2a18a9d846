#include "engine/segment_table.h"

#include "engine/log_files.h"

namespace varve {

struct retired_node {
  segment* seg;
  retired_node* next;
};

segment_table::~segment_table() {
  for (auto& c : chunks_) {
    std::atomic<segment*>* chunk = c.load();
    if (!chunk) continue;
    for (uint64_t i = 0; i < kChunkSize; ++i) delete chunk[i].load();
    delete[] chunk;
  }
  for (retired_node* n = retired_.load(); n;) {
    retired_node* next = n->next;
    delete n->seg;
    delete n;
    n = next;
  }
}

std::atomic<segment*>* segment_table::slot(uint64_t index, bool create) {
  const uint64_t c = index >> kChunkBits;
  if (c >= kChunks) return nullptr;
  std::atomic<segment*>* chunk = chunks_[c].load(std::memory_order_acquire);
  if (!chunk) {
    if (!create) return nullptr;
    // Allocation happens once per 4096 segments, never per append.
    auto* fresh = new std::atomic<segment*>[kChunkSize]();
    if (chunks_[c].compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel)) {
      chunk = fresh;
    } else {
      delete[] fresh;
    }
  }
  return &chunk[index & (kChunkSize - 1)];
}

segment* segment_table::find(uint64_t index) const {
  auto* self = const_cast<segment_table*>(this);
  std::atomic<segment*>* s = self->slot(index, false);
  return s ? s->load(std::memory_order_acquire) : nullptr;
}

result<segment*> segment_table::get(uint64_t index) {
  std::atomic<segment*>* s = slot(index, true);
  if (!s)
    return status(errc::invalid_argument,
                  "segment index " + std::to_string(index) + " is beyond the table");
  if (segment* seg = s->load(std::memory_order_acquire)) return seg;
  auto opened = segment::open(fs_, id_, index, map_access::read_only);
  if (!opened) return opened.error();
  segment* mine = opened.value().release();
  segment* expected = nullptr;
  if (s->compare_exchange_strong(expected, mine, std::memory_order_acq_rel)) return mine;
  delete mine;  // another thread mapped it first; nobody has seen ours
  return expected;
}

void segment_table::install(std::unique_ptr<segment> seg) {
  std::atomic<segment*>* s = slot(seg->index(), true);
  segment* old = s->exchange(seg.release(), std::memory_order_acq_rel);
  if (old) {
    auto* n = new retired_node{old, retired_.load()};
    while (!retired_.compare_exchange_weak(n->next, n)) {
    }
  }
}

}  // namespace varve
