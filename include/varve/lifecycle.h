// Stream lifecycle: deleting (tombstoning) a stream, truncating it before a
// version, and per-stream limits on how many events and how old, in the way
// EventStoreDB's stream metadata does. docs/DESIGN.md "Stream lifecycle" has
// the design and the visibility rule, docs/FORMAT.md 5e the bytes of
// DIR/streams, where every change is recorded durably before it is
// acknowledged.
//
// What a change does: the events it covers are hidden from reads at once
// (stream reads, log reads and so subscriptions, consumer groups and
// `varve ship`, replay) and stay on disk until the space comes back: when
// retention removes their segments, or when event_log::scavenge rewrites a
// sealed segment without them.
#pragma once

#include <cstdint>
#include <string>

#include "varve/types.h"

namespace varve {

struct stream_metadata {
  // A tombstone: every event of the stream is hidden and appends to it are
  // refused (errc::stream_deleted), for good (the stream cannot be created
  // again under its id).
  bool deleted = false;
  // Versions below this one are hidden (0 and 1: none). Only moves forward.
  stream_version truncate_before = 0;
  // Only the newest `max_count` events are visible (0: no limit). Stream
  // reads apply it; log-wide reads do not (they would need the stream's
  // newest version for every event), and scavenge removes what it hides.
  uint64_t max_count = 0;
  // Events whose timestamp is more than this many nanoseconds before now are
  // hidden (0: no limit), in every read, by each event's own timestamp.
  uint64_t max_age_ns = 0;

  bool any() const { return deleted || truncate_before > 1 || max_count != 0 || max_age_ns != 0; }
  friend bool operator==(const stream_metadata&, const stream_metadata&) = default;
};

// One stream's entry in DIR/streams (event_log::stream_metadata_list).
struct stream_metadata_entry {
  std::string stream;  // raw id bytes
  bool stream_is_integer = false;
  stream_metadata metadata;
  uint64_t changed_ns = 0;      // CLOCK_REALTIME of its last change
  uint64_t change_number = 0;   // that change's number in DIR/streams (1, 2, ...)
};

// What a scavenge did (event_log::scavenge).
struct scavenge_result {
  uint64_t segments_examined = 0;
  uint64_t segments_rewritten = 0;
  uint64_t events_removed = 0;     // hidden events whose bytes are gone
  uint64_t bytes_freed = 0;        // disk blocks given back (st_blocks before - after)
};

}  // namespace varve
