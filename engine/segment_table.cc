#include "engine/segment_table.h"

#include "base/log_files.h"

namespace varve {

struct retired_node {
  segment* seg;
  retired_node* next;
};

segment_table::~segment_table() {
  slots_.for_each([](segment* s) { delete s; });
  for (retired_node* n = retired_.load(); n;) {
    retired_node* next = n->next;
    delete n->seg;
    delete n;
    n = next;
  }
}

segment* segment_table::find(uint64_t index) const {
  auto* self = const_cast<segment_table*>(this);
  std::atomic<segment*>* s = self->slots_.slot(index, false);
  return s ? s->load(std::memory_order_acquire) : nullptr;
}

result<segment*> segment_table::get(uint64_t index) {
  auto got = get_lazy(index);
  if (got && got.value()->archived())
    if (status s = got.value()->ensure_all(); !s) return s;
  return got;
}

result<segment*> segment_table::get_lazy(uint64_t index) {
  std::atomic<segment*>* s = slots_.slot(index, true);
  if (!s)
    return status(errc::invalid_argument,
                  "segment index " + std::to_string(index) + " is beyond the table");
  if (segment* seg = s->load(std::memory_order_acquire)) return seg;
  segment::identity id = id_;
  id.archive_dir = archive_dir();
  auto opened = segment::open(fs_, id, index, map_access::read_only, false);
  if (!opened) return opened.error();
  segment* mine = opened.value().release();
  segment* expected = nullptr;
  if (s->compare_exchange_strong(expected, mine, std::memory_order_acq_rel)) return mine;
  delete mine;  // another thread mapped it first; nobody has seen ours
  return expected;
}

void segment_table::install(std::unique_ptr<segment> seg) {
  std::atomic<segment*>* s = slots_.slot(seg->index(), true);
  segment* old = s->exchange(seg.release(), std::memory_order_acq_rel);
  if (old) {
    auto* n = new retired_node{old, retired_.load()};
    while (!retired_.compare_exchange_weak(n->next, n)) {
    }
  }
}

void segment_table::evict(uint64_t index) {
  std::atomic<segment*>* s = slots_.slot(index, false);
  if (!s) return;
  delete s->exchange(nullptr, std::memory_order_acq_rel);
}

}  // namespace varve
