// Durability: making committed bytes survive a power loss. One mechanism for
// all three modes: sync_until() msyncs the committed range not yet durable
// and advances the durable watermark. Mode group runs it on a thread at an
// interval; mode sync runs it inside each append; mode none on request.
//
// Every sync of the log's data goes through one gate (this object's
// sync_mutex): the flusher's, the sealer's (records and footer of a segment
// it seals) and the control block's. The kernel reports a write-back error to
// one sync only, so two threads syncing the same file must not race: the
// gate runs them one at a time, and a failure is recorded (failed, and the
// poison mark in varve.ctl) before the next one may start, so no thread can
// publish a durable position over pages another thread was told are lost.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "engine/shared_log.h"
#include "varve/options.h"

namespace varve {

class durability_tracker {
 public:
  struct config {
    uint64_t end_at_open = 0;      // committed end after recovery
    uint64_t durable_at_open = 0;  // known durable then (<= end_at_open)
    // Segments [dirty_first, dirty_last] may hold pages earlier sessions left
    // dirty (mode none); until the first sync has synced them, nothing past
    // durable_at_open is reported durable.
    uint64_t dirty_first = 0, dirty_last = 0;
    bool history_synced = false;
  };
  durability_tracker(detail::shared_log& log, const config& c);
  // Makes the bytes of `seg` below log position `end` durable: the whole file
  // when `end` is past it, else only its committed bytes (open and the first
  // sync use this for what earlier sessions may have left dirty).
  static status sync_below(segment& seg, uint64_t end);
  ~durability_tracker();

  // Starts the thread: mode group syncs every `interval` (or when
  // `wake_bytes` wait); modes group and sync also record the durable
  // watermark in varve.ctl on disk every kRecordInterval (so a recovery
  // after a reboot knows it). Mode none records it at each flush.
  void start(durability mode, std::chrono::microseconds interval, uint64_t wake_bytes);
  // Makes everything below `target` (<= committed) durable. Thread-safe.
  // After a failed sync every call fails: the pages that failed may already
  // be dropped by the kernel, so carrying on could acknowledge lost data.
  status sync_until(uint64_t target);
  // Returns once durable >= target: runs the sync itself (through the gate).
  status wait(uint64_t target);
  // Cheap hint from the appender: committed moved on (group mode).
  void notify_committed(uint64_t committed) {
    if (group_ && committed - durable_.load(std::memory_order_relaxed) >= wake_bytes_ &&
        !nudged_.exchange(true, std::memory_order_acq_rel))
      cv_.notify_one();
  }
  uint64_t durable() const { return durable_.load(std::memory_order_acquire); }
  // Runs `sync` (a sync of the log's files) through the gate; a failure is
  // recorded before any other sync may run, and after a failure `sync` is
  // not run at all. The sealer's syncs come here.
  // `bytes`: how much it syncs, for the counters (0: a whole file).
  status gated(const std::function<status()>& sync, uint64_t bytes = 0);
  // The sealer made `seg` durable whole (records, then footer): if
  // everything before it was durable, the watermark moves past it (so in
  // mode none the durable position follows the sealed segments), and no sync
  // needs its writable mapping any more: it becomes read-only and its
  // descriptor is closed.
  void sealed(segment& seg);
  // Writes the durable watermark to disk (msync of varve.ctl), through the gate.
  status record_durable();
  // Mode none's flush(): asks for the watermark to be recorded within
  // kRecordInterval, by a thread started on the first request, instead of a
  // second sync on the caller's path. (A log that never flushes never starts it.)
  void request_record();
  status failure() const;
  // Lock-free check for the appender's hot path.
  bool has_failed() const { return failed_flag_.load(std::memory_order_acquire); }

  static constexpr std::chrono::milliseconds kRecordInterval{100};

 private:
  // Syncs bytes [from, to) of `seg` (offsets in it), all committed, after
  // taking the whole pages below `to` out of the writer's mapping.
  static status sync_committed(segment& seg, uint64_t from, uint64_t to);
  void run();
  // Records a failed sync: every later sync, wait and append fails, and the
  // control block carries the poison mark (sync_mu_ held).
  status fail_locked(const status& why);
  status sync_history_locked();
  // Runs one sync and counts it (ctl_counter: syncs, latency histogram).
  status timed(uint64_t bytes, const std::function<status()>& sync);

  detail::shared_log& log_;
  config cfg_;
  std::atomic<uint64_t> durable_;
  std::mutex sync_mu_;               // the gate: one sync of the log's data at a time
  mutable std::mutex mu_;            // guards failed_, stop_; waits
  std::condition_variable cv_;       // nudges the thread
  std::condition_variable done_cv_;  // durable advanced (or failed)
  status failed_;
  bool group_ = false;
  bool recorder_only_ = false;       // mode none: the thread only records the watermark
  bool record_wanted_ = false;       // mode none: a flush moved durable since the last record (mu_)
  bool stop_ = false;
  std::atomic<bool> nudged_{false};
  std::atomic<bool> failed_flag_{false};
  uint64_t wake_bytes_ = 0;
  uint64_t recorded_ = 0;            // the durable watermark last synced in varve.ctl (sync_mu_)
  std::chrono::microseconds interval_{1000};
  std::thread thread_;
};

}  // namespace varve
