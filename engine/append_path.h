// The writer's append path, shared by the single-stream append
// (engine/event_log.cc) and the multi-stream one (engine/multi_append.cc).
#pragma once

#include <cstdint>
#include <string>

#include "engine/log_state.h"

namespace varve::detail {

// Moves the writer to the next segment (prepared by the background thread):
// the segment-end record in the old one, the old one queued for sealing.
// Fails, writing nothing, when the next segment cannot be had (disk full).
status roll(log_state& s, uint64_t needed);
// A refused append: counted in varve.ctl (conflicts apart from the rest).
status refused(log_state& s, status why);
// What an append checks only when a log has upcasters or an event has
// metadata: versions newer than the upcasters' current ones, metadata
// bounds. Out of line and cold: the common append pays one test.
status check_extras(const log_state& s, std::span<const event_data> events);
// A batch that needs a newer segment format than the active segment says
// (a multi-stream batch: 2; metadata: 3) starts the next segment, which this
// varve makes at its own version: a varve that knows only the older format
// refuses that segment as newer instead of taking the batch for damage. The
// active segment is older only in a log an older varve wrote or prepared.
// Cold: it rolls at most a few times, once per log upgrade.
status roll_to_version(log_state& s, uint64_t needed, uint32_t version);

// A stream as messages name it: its bytes, or an integer id in decimal
// (its 8 raw bytes would put NULs in the text).
inline std::string stream_text(const stream_id& s) {
  if (!s.is_integer()) return std::string(s.bytes());
  uint64_t v = 0;
  for (char c : s.bytes()) v = (v << 8) | static_cast<uint8_t>(c);
  return std::to_string(v);
}

// Publishes a batch the writer has just written up to `end` (one release
// store makes it visible to readers in this and other processes, through the
// shared control block), wakes parked followers, and applies the durability
// mode. Fails (counted as a refusal) only when mode sync's sync fails.
[[gnu::always_inline]] inline status commit_batch(log_state& s, uint64_t end) {
  s.written.store(end, std::memory_order_relaxed);
  control_block& ctl = *s.shared->ctl;
  ctl.next_sequence().store(s.next_seq, std::memory_order_relaxed);
  ctl.commit().store(end, std::memory_order_release);
  ctl.notify_commit();
  if (s.opts.mode == durability::sync) {
    if (status r = s.durable->sync_until(end); !r) [[unlikely]] {
      // This append is committed but its durability is unknown: say so, and
      // refuse every later write until the log is reopened and recovered.
      s.write_failure = status(errc::read_only, r.to_string());
      return refused(s, r);
    }
  } else if (s.opts.mode == durability::group) {
    s.durable->notify_committed(end);
  }
  ctl.bump_single_writer(ctl_counter::append_calls);
  return {};
}

}  // namespace varve::detail
