// What every reader of one open log shares: its segments and the control
// block through which the writer publishes how far the log is committed.
#pragma once

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>

#include "engine/control_block.h"
#include "engine/index_table.h"
#include "engine/segment_table.h"

namespace varve::detail {

struct shared_log {
  shared_log(std::shared_ptr<file_system> fs, segment::identity id, bool verify)
      : segments(fs, id), indexes(fs, id.dir, id.log_id), verify_checksums(verify) {}

  uint8_t log2() const { return segments.identity().log2_capacity; }
  uint64_t capacity() const { return uint64_t{1} << log2(); }
  // Acquire pairs with the writer's release store: every byte of every record
  // below the returned position is written and visible to this thread.
  // A read-only log opened while no writer was alive may know a later end
  // than the control block (which a power loss can leave stale): the floor.
  uint64_t committed() const {
    return std::max(ctl->commit().load(std::memory_order_acquire), commit_floor);
  }

  segment_table segments;
  index_table indexes;
  std::unique_ptr<control_block> ctl;
  bool verify_checksums;
  // Set once before the log is handed out (read-only opens only).
  uint64_t commit_floor = 0;
};

}  // namespace varve::detail
