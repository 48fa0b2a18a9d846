// The private state behind event_log (the writer's cursor, head table,
// helpers). Not public API.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "engine/background.h"
#include "engine/control_block.h"
#include "engine/flusher.h"
#include "engine/lifecycle/stream_lifecycle.h"
#include "base/segment_format.h"
#include "engine/shared_log.h"
#include "engine/writer_lock.h"
#include "index/head_table.h"
#include "varve/log.h"

namespace varve::detail {

// The writer's observer: counts every action by kind into the control
// block's counters (`varve stat`, `varve metrics`) and passes it on to the
// user's observer. Recovery runs before this session's control block is
// mapped (a refused open must change nothing), so it counts in memory until
// attach(), which the opening thread calls before any background thread
// starts.
class counting_observer final : public recovery_observer {
 public:
  explicit counting_observer(recovery_observer* user) : user_(user) {}
  void attach(control_block* ctl);
  void on_truncated(const std::string& file, uint64_t offset, uint64_t bytes,
                    const std::string& why) override;
  void on_action(const recovery_action& a) override;

 private:
  void count(recovery_action::kind k, uint64_t bytes_kept);
  recovery_observer* user_;
  control_block* ctl_ = nullptr;
  uint64_t early_[7] = {};  // per kind, then bytes kept; before attach()
};

struct log_state {
  std::string dir;
  log_options opts;
  // What the engine reports to: the user's opts.observer, or (writer) a
  // counting_observer in front of it.
  recovery_observer* observer = nullptr;
  std::unique_ptr<counting_observer> counting;
  std::shared_ptr<file_system> fs;
  segment_format::meta meta;
  std::shared_ptr<shared_log> shared;
  std::unique_ptr<writer_lock> lock;  // null when read-only
  bool read_only = false;

  // --- the writer's cursor (writer thread only) ---
  head_table heads;
  segment* active = nullptr;
  uint64_t write_off = 0;        // next record's offset in `active`
  // The written watermark, for other threads (relaxed: it is a statistic).
  std::atomic<uint64_t> written{0};
  uint64_t next_seq = 0;
  uint64_t first_segment = 0;
  uint64_t first_sequence = 0;  // of the first event in first_segment (retention's start)
  // Footer figures of the active segment, kept as we go.
  uint64_t seg_events = 0;
  uint64_t seg_first_seq = 0;
  uint64_t seg_last_pos = ~uint64_t{0};
  uint64_t checkpointed_segment = ~uint64_t{0};
  // What the previous writer session left in varve.ctl (read by recovery
  // before this session rewrites it), and the first segment recovery found
  // unsealed: earlier sessions may have left dirty pages from there on.
  ctl_state ctl_at_open;
  uint64_t tail_segment = 0;
  status write_failure;  // sticky: a failed roll-over sync, a failed durability sync

  // Read-only logs opened with no writer alive: damage found below the end
  // the last writer acknowledged (readers meet it; stat and verify report it).
  status damage;

  // Read-only logs: a head table of their own, advanced on demand.
  bool follower_heads_loaded = false;
  uint64_t follower_pos = 0;

  // Crypto-shredding (engine/crypto/writer_keys.cc): the writer seals
  // payloads (shared->keys is set); the sealed copies of the batch being
  // appended live here, grown to the largest batch and reused.
  bool encrypting = false;
  uint64_t session_start = 0;  // the log's end when this session opened it: records past it are its own
  std::vector<event_data> sealed_events;
  std::vector<std::byte> sealed_bytes;
  std::vector<stream_batch> sealed_batches;

  // Stream lifecycle (engine/lifecycle/): the writer's journal of changes;
  // any_deleted lets the append paths skip the tombstone check (one test)
  // while no stream is deleted.
  std::unique_ptr<lifecycle_journal> life;
  bool any_deleted = false;

  std::unique_ptr<background> bg;
  std::unique_ptr<durability_tracker> durable;
  bool closed = false;

  uint64_t capacity() const { return uint64_t{1} << meta.log2_capacity; }
  uint64_t now_ns() const;
};

// Recovery (recovery.cc): finds the tail, judges it against the guard
// varve.ctl recorded, refuses damage or cuts what a crash tore (keeping the
// bytes in lost+found/), rebuilds the head table from the newest checkpoint
// plus the segments after it, and leaves the writer's cursor at the end.
status recover(log_state& s);

}  // namespace varve::detail
