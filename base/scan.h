// Walking the records of one segment: the single loop recovery, verify, the
// checkpointer and readers' validation agree on.
#pragma once

#include <cstdint>
#include <string>

#include "base/record_format.h"
#include "base/segment.h"

namespace varve {

// The outcome of scanning one segment's records from kHeaderSize.
struct segment_scan {
  // Offset just past the last complete batch (where a cut would go).
  uint64_t good_end = segment_format::kHeaderSize;
  bool ended_by_marker = false;  // a valid segment-end record at good_end
  bool clean_zero_end = false;   // unwritten (zero) at good_end
  uint64_t events = 0;           // in complete batches
  uint64_t first_sequence = 0;
  uint64_t next_sequence = 0;
  uint64_t last_position = ~uint64_t{0};
  uint64_t holes = 0;            // repair holes crossed
  uint64_t lost_events = 0;      // sequence numbers those holes stand for
  uint64_t scavenged_events = 0; // of which a scavenge's holes (hidden events removed, not lost)
  std::string problem;           // why the scan stopped, if not cleanly
  uint64_t problem_offset = 0;
};

// Calls on_event(view) for each event of each *complete* batch, in order,
// after the batch's last record validated; events of an incomplete batch are
// never passed. Sequence numbers must continue from `first_sequence`. The
// scan starts at offset `from` (a record boundary; the first record by default).
template <class F>
segment_scan scan_segment(const segment& seg, uint64_t first_sequence, bool verify, F&& on_event,
                          uint64_t from = segment_format::kHeaderSize);

}  // namespace varve

#include "base/scan_inl.h"
