// Durability: making committed bytes survive a power loss. One mechanism for
// all three modes: sync_until() msyncs the committed range not yet durable
// and advances the durable watermark. Mode group runs it on a thread at an
// interval; mode sync runs it inside each append; mode none on request.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "engine/shared_log.h"
#include "varve/options.h"

namespace varve {

class durability_tracker {
 public:
  // `history_synced` false: bytes below `end_at_open` (earlier sessions'
  // pages) may still be dirty; the first sync makes them durable with one
  // syncfs, and until then the published durable position is 0.
  durability_tracker(detail::shared_log& log, std::string dir, uint64_t end_at_open,
                     bool history_synced);
  ~durability_tracker();

  // Starts the group-commit thread.
  void start_group(std::chrono::microseconds interval, uint64_t wake_bytes);
  // Makes everything below `target` (<= committed) durable. Thread-safe.
  // After a failed sync every call fails: the pages that failed may already
  // be dropped by the kernel, so carrying on could acknowledge lost data.
  status sync_until(uint64_t target);
  // Blocks until durable >= target (group mode: nudges the thread).
  status wait(uint64_t target);
  // Cheap hint from the appender: committed moved on (group mode).
  void notify_committed(uint64_t committed) {
    if (group_ && committed - durable_.load(std::memory_order_relaxed) >= wake_bytes_ &&
        !nudged_.exchange(true, std::memory_order_acq_rel))
      cv_.notify_one();
  }
  uint64_t durable() const { return durable_.load(std::memory_order_acquire); }
  // A sync that failed elsewhere (the sealer's msync of a segment it seals):
  // from now on every sync, wait and append fails, as if it had failed here.
  void poison(const status& why);
  status failure() const;
  // Lock-free check for the appender's hot path.
  bool has_failed() const { return failed_flag_.load(std::memory_order_acquire); }

 private:
  void run_group();

  detail::shared_log& log_;
  std::atomic<uint64_t> durable_;
  mutable std::mutex mu_;          // serializes syncs; guards failed_
  std::condition_variable cv_;     // nudges the group thread
  std::condition_variable done_cv_;  // durable advanced (or failed)
  status failed_;
  std::string dir_;
  bool history_synced_;
  bool group_ = false;
  bool stop_ = false;
  std::atomic<bool> nudged_{false};
  std::atomic<bool> failed_flag_{false};
  uint64_t wake_bytes_ = 0;
  std::chrono::microseconds interval_{1000};
  std::thread thread_;
};

}  // namespace varve
