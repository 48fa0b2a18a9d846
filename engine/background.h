// The writer's helper threads: create and pre-faults the next segment before
// it is needed, seals full segments (footer) and writes head-table checkpoints,
// so the appender never waits on the kernel in steady state.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "base/segment.h"
#include "base/segment_format.h"
#include "index/head_table.h"
#include "varve/options.h"

namespace varve {

class segment_table;
class index_table;
class durability_tracker;

struct seal_job {
  segment* seg;  // owned by the segment table; stays mapped
  segment_format::footer footer;  // all but data_checksum
  bool footer_written = false;    // recovery sealed it already: checkpoint only
};

class background {
 public:
  struct config {
    std::shared_ptr<file_system> fs;
    segment::identity id;
    segment_table* table;
    durability mode;
    bool prepare_next;
    recovery_observer* observer;
    uint64_t checkpointed_segment;  // newest heads checkpoint on disk (~0 = none)
    uint64_t first_segment;         // the log's oldest segment
    index_table* indexes;           // readers report damaged index files here
    // The log's sync gate: the sealer's syncs of a segment run through it
    // one at a time with the flusher's, and a failure stops the log from
    // acknowledging writes (flusher.h).
    durability_tracker* durable;
  };
  explicit background(config c);
  ~background();  // finishes queued seals, then stops

  // Called by the writer at roll-over: the prepared segment `index`, waiting
  // for it if it is being made, or creating it now. Schedules index + 1.
  result<std::unique_ptr<segment>> take_segment(uint64_t index);
  // Asks for `index` to be made ahead of time.
  void prepare(uint64_t index);
  // Queues the footer write and checkpoint of a segment the writer left.
  void seal(const seal_job& job);
  // Checks (and rebuilds where missing or damaged) the segment index files of
  // sealed segments [first_segment, end), before any later seal.
  void index_sealed(uint64_t end);
  // Waits until every queued seal is done; returns the first error, if any.
  status drain();
  // The longest a roll-over waited for room in the seal queue (ns).
  uint64_t longest_seal_wait_ns() const { return longest_seal_wait_ns_.load(std::memory_order_relaxed); }
  // Segments that may wait for their seal before a roll-over waits.
  static constexpr size_t kMaxPendingSeals = 8;
  // Seals: makes the records durable, then writes and syncs the footer,
  // through `gate` when given (recovery, before the log has one, passes none).
  static status write_footer(file_system& fs, segment& seg, segment_format::footer f,
                             durability_tracker* gate);

 private:
  void run_prepare();
  void run_seal();
  status do_seal(const seal_job& job, bool more_queued);
  status checkpoint(segment& sealed, bool write_file);
  status index_segment(const segment& sealed);
  void rebuild_damaged_indexes();

  config c_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<seal_job> seals_;
  uint64_t want_prepare_ = ~uint64_t{0};
  bool preparing_ = false;
  std::unique_ptr<segment> prepared_;
  status prepare_error_;
  uint64_t prepare_error_index_ = ~uint64_t{0};
  bool busy_sealing_ = false;
  status seal_error_;
  bool stop_ = false;
  // The checkpointer's own head table, advanced one sealed segment at a time.
  std::unique_ptr<head_table> shadow_;
  uint64_t shadow_next_sequence_ = 0;
  uint64_t previous_checkpoint_ = ~uint64_t{0};  // the older of the two kept
  // Segment index files: the newest one written or checked, and its running
  // timestamp maximum (the next one continues it).
  uint64_t indexed_segment_ = ~uint64_t{0};
  uint64_t indexed_through_ = 0;
  uint64_t index_pass_end_ = 0;  // > 0: index_sealed() asked for a pass
  // Destruction without drain(): an index pass over a large log stops early
  // (the next open finishes it).
  std::atomic<bool> closing_{false};
  std::atomic<uint64_t> longest_seal_wait_ns_{0};
  // Two threads, so a long checkpoint never delays the next segment's
  // preparation (which the writer may be waiting for).
  std::thread prepare_thread_;
  std::thread seal_thread_;
};

}  // namespace varve
