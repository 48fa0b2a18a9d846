// What every reader of one open log shares: its segments and the control
// block through which the writer publishes how far the log is committed.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/control_block.h"
#include "engine/index_table.h"
#include "engine/segment_table.h"
#include "varve/upcast.h"

namespace varve::detail {

class keyring;         // engine/crypto/keyring.h
class lifecycle_view;  // engine/lifecycle/stream_lifecycle.h

struct shared_log {
  shared_log(std::shared_ptr<file_system> fs, segment::identity id, bool verify)
      : segments(fs, id), indexes(fs, id.dir, id.log_id), verify_checksums(verify), fs_(std::move(fs)) {}

  uint8_t log2() const { return segments.identity().log2_capacity; }
  uint64_t capacity() const { return uint64_t{1} << log2(); }
  // Acquire pairs with the writer's release store: every byte of every record
  // below the returned position is written and visible to this thread.
  // A read-only log opened while no writer was alive found the log's end by
  // reading the tail: the control block's word may be stale (a power loss
  // can leave it behind or ahead of the data). That end holds until the word
  // changes, i.e. until a writer opens the log again.
  uint64_t committed() const {
    const uint64_t c = ctl->commit().load(std::memory_order_acquire);
    return c == stale_commit ? found_end : c;
  }

  // --- where the log starts (retention: engine/retention.cc, FORMAT 1b) ---
  // The oldest segment that is part of the log. Only grows. The writer sets
  // it (after DIR/start is durable, before any file goes); readers in other
  // processes learn it from DIR/start, at their next slow step after the
  // writer rang the doorbell (control block) or when they meet a missing file.
  uint64_t first_segment() const { return first_segment_.load(std::memory_order_acquire); }
  uint64_t first_sequence() const { return first_sequence_.load(std::memory_order_acquire); }
  // The position of the log's first record (0 when nothing was removed).
  uint64_t start_position() const;
  void set_start(uint64_t first_segment, uint64_t first_sequence);
  // Re-reads DIR/start (a writer elsewhere may have moved the start).
  status refresh_start();
  // Once per reader's slow step: when the writer's doorbell in the control
  // block moved past this process's start, re-reads DIR/start; and drops
  // the pages of removed segments whose grace period is over (so a
  // long-lived reader process does not hold their disk space).
  void check_start() {
    if (ctl) [[likely]] {
      const uint64_t hint = ctl->start_hint().load(std::memory_order_acquire);
      if (hint > first_segment() && hint != hint_seen_.load(std::memory_order_relaxed)) [[unlikely]]
        refresh_from_hint(hint);
    }
    // Within a grace period only: one clock read per slow step, no lock
    // until a drop is due (spinning followers poll through here).
    if (drop_due_ns_.load(std::memory_order_relaxed) != kNoDrop) [[unlikely]]
      drop_expired_pages_if_due();
  }
  // Drops the pages of removed segments whose grace is over (segment::drop_file_pages).
  void drop_expired_pages();
  // errc::removed: "position P was removed by retention: the log starts at S".
  status removed_error(uint64_t position) const;
  // Segment `index`, for a read at `position` inside it: the removed error
  // when retention took it (checked before the table, which keeps removed
  // segments mapped while views into them may live), and when its file is
  // missing because a writer elsewhere removed it since.
  // An archived segment comes back readable whole, or with `lazy` its frames
  // left for the caller's segment::ensure (a stream read). A file gone
  // since the log was opened because a pass elsewhere archived it is found
  // in the archive (DIR/archive re-read).
  result<segment*> segment_for_read(uint64_t index, uint64_t position, bool lazy = false);
  // Re-reads DIR/archive; true when that gave the segment table an archive
  // directory it did not have.
  bool refresh_archive();
  // The error for a segment file that could not be opened: `err` itself, or
  // the removed error when DIR/start (re-read) says retention took it.
  status explain_missing(uint64_t index, uint64_t position, status err);

  segment_table segments;
  index_table indexes;
  std::unique_ptr<control_block> ctl;
  bool verify_checksums;
  // The log's upcasters (event_log::set_upcasters): each reader takes them
  // once, when it is made; the flag keeps that free for a log without any.
  std::shared_ptr<const upcasters> upcasters_now() const {
    if (!has_upcasters.load(std::memory_order_acquire)) return nullptr;
    std::lock_guard<std::mutex> g(upcast_mu);
    return upcast;
  }
  void set_upcasters(std::shared_ptr<const upcasters> u) {
    std::lock_guard<std::mutex> g(upcast_mu);
    has_upcasters.store(u != nullptr, std::memory_order_release);
    upcast = std::move(u);
  }
  mutable std::mutex upcast_mu;
  std::shared_ptr<const upcasters> upcast;
  std::atomic<bool> has_upcasters{false};

  // Crypto-shredding: the log's data keys (log_options::master_key), set
  // before the log is handed out; null when the log was opened without a
  // master key. Every reader opens an encrypted payload through here
  // before upcasting.
  std::shared_ptr<keyring> keys;
  status open_payload(event_view& ev, std::string& buf) const;

  // --- stream lifecycle (engine/lifecycle/, varve/lifecycle.h) ---
  // The metadata view readers apply. Readers keep a copy and look at the
  // generation at their slow steps; it moves each time a view is published.
  std::shared_ptr<const lifecycle_view> lifecycle() const {
    std::lock_guard<std::mutex> g(life_mu_);
    return life_;
  }
  uint64_t lifecycle_generation() const { return life_gen_.load(std::memory_order_acquire); }
  void set_lifecycle(std::shared_ptr<const lifecycle_view> v);
  // At a reader's slow step: when the writer's doorbell (control block) says
  // DIR/streams changed since this process read it, re-reads it. A damaged
  // file is the error (a reader must not show what it may hide).
  status check_lifecycle() {
    if (!ctl || life_is_writer) [[likely]] return {};
    const uint64_t hint = ctl->lifecycle_hint().load(std::memory_order_acquire);
    if (hint == life_hint_seen_.load(std::memory_order_relaxed)) [[likely]] return {};
    return refresh_lifecycle(hint);
  }
  bool life_is_writer = false;  // this process's writer publishes views itself
  // max_age's "now": log_options::clock when set (tests), else CLOCK_REALTIME.
  std::function<uint64_t()> clock;
  uint64_t wall_now_ns() const;

  std::atomic<uint64_t> first_segment_{0};
  std::mutex retention_mu;  // one retention pass at a time
  // How long a removed segment stays mapped (log_options::retention_grace).
  uint64_t retention_grace_ns = 60'000'000'000ull;

 private:
  void refresh_from_hint(uint64_t hint);
  status refresh_lifecycle(uint64_t hint);
  std::shared_ptr<file_system> fs_;
  mutable std::mutex life_mu_;
  std::shared_ptr<const lifecycle_view> life_;
  std::atomic<uint64_t> life_gen_{0};
  std::atomic<uint64_t> life_hint_seen_{0};
  void drop_expired_pages_if_due();
  static constexpr uint64_t kNoDrop = ~uint64_t{0};
  std::atomic<uint64_t> hint_seen_{0};
  // Segments below `below` left the log at `at_ns` (steady clock): their
  // pages are dropped once the grace period is over. Registered by
  // set_start, in the writer's process and in readers' alike.
  struct removed_range {
    uint64_t below;
    uint64_t at_ns;
  };
  std::mutex drop_mu_;  // guards the two below
  std::vector<removed_range> awaiting_drop_;
  uint64_t dropped_below_ = 0;
  std::atomic<uint64_t> drop_due_ns_{kNoDrop};  // when the oldest waiting range's grace ends

 public:
  std::atomic<uint64_t> first_sequence_{0};

  // Set once before the log is handed out (read-only opens only).
  uint64_t stale_commit = UINT64_MAX;  // the control block's word when the tail was read
  uint64_t found_end = 0;
};

}  // namespace varve::detail
