#include "engine/shared_log.h"

#include "base/start_file.h"

namespace varve::detail {

uint64_t shared_log::start_position() const { return start_file::start_position(first_segment(), log2()); }

void shared_log::set_start(uint64_t first_segment, uint64_t first_sequence) {
  // Sequence first: a reader that sees the new segment sees its sequence.
  uint64_t s = first_sequence_.load(std::memory_order_relaxed);
  while (s < first_sequence && !first_sequence_.compare_exchange_weak(s, first_sequence)) {
  }
  uint64_t f = first_segment_.load(std::memory_order_relaxed);
  while (f < first_segment && !first_segment_.compare_exchange_weak(f, first_segment)) {
  }
}

status shared_log::refresh_start() {
  auto r = start_file::read(segments.fs(), segments.identity().dir, segments.identity().log_id);
  if (!r) return r.error();
  if (r.value()) set_start(r.value()->first_segment, r.value()->first_sequence);
  return {};
}

status shared_log::removed_error(uint64_t position) const {
  const std::string& dir = segments.identity().dir;
  return status(errc::removed, dir + ": position " + std::to_string(position) +
                                   " was removed by retention: the log now starts at position " +
                                   std::to_string(start_position()) + " (sequence " +
                                   std::to_string(first_sequence()) + ", " + dir + "/" + start_file::kName + ")");
}

status shared_log::explain_missing(uint64_t index, uint64_t position, status err) {
  if (index < first_segment()) return removed_error(position);
  if (err.code() != errc::not_found) return err;
  (void)refresh_start();  // the original error stands if the record cannot be read
  return index < first_segment() ? removed_error(position) : err;
}

result<segment*> shared_log::segment_for_read(uint64_t index, uint64_t position) {
  if (index < first_segment()) return removed_error(position);
  auto got = segments.get(index);
  if (!got) return explain_missing(index, position, got.error());
  return got;
}

}  // namespace varve::detail
