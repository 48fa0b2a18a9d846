// The writer's helper threads: creates the next segments before they are
// needed and faults their pages in while the writer has not reached them,
// seals full segments (footer) and writes head-table checkpoints, so the
// appender never waits on the kernel in steady state.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/segment.h"
#include "base/segment_format.h"
#include "engine/control_block.h"
#include "index/head_table.h"
#include "varve/options.h"

namespace varve::detail {
struct shared_log;
}

namespace varve {

class segment_table;
class index_table;
class durability_tracker;

struct seal_job {
  segment* seg;  // owned by the segment table; stays mapped
  segment_format::footer footer;  // all but data_checksum
  bool footer_written = false;    // recovery sealed it already: checkpoint only
};

// The writer never takes a lock, waits or makes a system call here in the
// steady state, roll-over included: prepared segments wait in a small ring of
// atomic slots (the writer takes one with an exchange), sealed segments go to
// the sealer through a single-producer ring (one release store), and neither
// helper is ever signalled: each polls its ring, every millisecond while the
// log is busy and every 20 ms once it has been idle for a while. The writer
// waits only when a helper has fallen behind (the preparer has not finished
// the next segment, or max_pending_seals() segments wait for their seal); the
// longest such waits are kept for the benchmarks.
class background {
 public:
  struct config {
    std::shared_ptr<file_system> fs;
    segment::identity id;
    segment_table* table;
    durability mode;
    // Segments created ahead of the writer, and pre-faulted while they are
    // still ahead of it (0: the writer creates each one itself at roll-over).
    uint32_t prepare_ahead;
    recovery_observer* observer;
    uint64_t checkpointed_segment;  // newest heads checkpoint on disk (~0 = none)
    // The log's oldest segment (shared_log::first_segment_: retention moves it).
    const std::atomic<uint64_t>* first_segment;
    index_table* indexes;           // readers report damaged index files here
    // The log's sync gate: the sealer's syncs of a segment run through it
    // one at a time with the flusher's, and a failure stops the log from
    // acknowledging writes (flusher.h).
    durability_tracker* durable;
    // Where the roll-over and seal counters go (ctl_counter).
    control_block* ctl;
    // The log has a tamper-evident chain (DIR/chain, engine/chain.h): each
    // seal appends its segment's digest.
    bool chain = false;
    // Retention applied after each seal and every retention_interval while
    // idle (engine/retention.cc); an empty policy: none. Segments below
    // sealed_end are sealed when the log opens.
    detail::shared_log* shared = nullptr;
    retention_policy retention;
    std::chrono::milliseconds retention_interval{10000};
    std::function<uint64_t()> clock;  // event time (ns since the epoch), for max_age
    uint64_t sealed_end = 0;
  };
  explicit background(config c);
  ~background();  // finishes queued seals, then stops; removes unused prepared segments

  // Starts preparing segments from `next` on (the one after the active one).
  void start_preparing(uint64_t next);
  // Called by the writer at roll-over: segment `index`, prepared ahead (an
  // atomic exchange), or waited for when the preparer is making it, or
  // created now when nobody had started it.
  result<std::unique_ptr<segment>> take_segment(uint64_t index);
  // Queues the seal (records durable, footer) and checkpoint of a segment the
  // writer left. Waits only while max_pending_seals() are queued.
  void seal(const seal_job& job);
  // Checks (and rebuilds where missing or damaged) the segment index files of
  // sealed segments [first_segment, end), before any later seal.
  void index_sealed(uint64_t end);
  // Waits until every queued seal is done; returns the first error, if any.
  status drain();
  // Runs `task` on the preparer thread, before its own work, waking it when
  // idle (the writer's head table hands it the page work of a growth:
  // index/head_table.h). Each task runs exactly once, in the order given:
  // those left at shutdown run in the destructor. Takes a lock: for rare
  // work, never per append. (A thread of its own for these answered sooner
  // but cost the writer more in preemptions on two vCPUs: DESIGN.md "Head
  // table".)
  void run_later(std::function<void()> task);
  // Seals: makes the records durable, then writes and syncs the footer,
  // through `gate` when given (recovery, before the log has one, passes none).
  // Afterwards the segment's mapping is read-only.
  static status write_footer(file_system& fs, segment& seg, segment_format::footer f,
                             durability_tracker* gate);

  // Segments that may wait for their seal before a roll-over waits: as many
  // as the descriptor budget allows (each keeps its descriptor and writable
  // mapping until sealed), RLIMIT_NOFILE / 16, between 4 and kSealRing. A
  // burst of appends faster than the disk (mode none's P1: 14 segments of
  // 64 MiB in a few seconds, sealed at the disk's pace) then never waits;
  // a sustained one waits for the disk, as a write(2) log's writer does once
  // the kernel's dirty limit is reached.
  static constexpr size_t kSealRing = 64;
  static size_t max_pending_seals();
  static constexpr uint32_t kMaxAhead = 8;

 private:
  void run_prepare();
  bool run_tasks();  // preparer thread; true if it ran any
  std::mutex tasks_mu_;
  std::vector<std::function<void()>> tasks_;  // guarded by tasks_mu_
  std::condition_variable tasks_cv_;          // wakes an idle preparer for a task
  std::atomic<bool> has_tasks_{false};
  void run_seal();
  status do_seal(const seal_job& job, bool more_queued);
  // Appends the chain entries up to segment `sealed` (those a crash left out
  // first); derived from sealed bytes, so a failure is reported and retried
  // at the next seal.
  status extend_chain(uint64_t sealed);
  status checkpoint(segment& sealed, bool write_file);
  status index_segment(const segment& sealed);
  void rebuild_damaged_indexes();
  // One retention pass when the policy is set and `after_seal` or the
  // interval has passed since the last one (sealer thread).
  void maybe_retain(bool after_seal);
  std::chrono::steady_clock::time_point last_retention_{};
  uint64_t sealed_end_ = 0;
  void note_wait(ctl_counter longest, std::chrono::steady_clock::time_point since);
  // How long a helper sleeps when it finds nothing to do.
  std::chrono::milliseconds idle_sleep(std::chrono::steady_clock::time_point last_work) const;

  config c_;
  // The chain as this thread last wrote it (sealer thread only).
  bool chain_loaded_ = false;
  bool chain_has_entries_ = false;
  uint64_t chain_end_ = 0;
  uint64_t chain_last_ = 0;
  std::array<uint8_t, 32> chain_prev_{};
  std::atomic<bool> stop_{false};
  std::atomic<bool> closing_{false};  // an index pass over a large log stops early

  // --- preparation: segment i waits in ready_[i % kMaxAhead] ---
  std::array<std::atomic<segment*>, kMaxAhead> ready_{};
  std::atomic<uint64_t> next_to_prepare_{0};  // claimed by CAS (preparer, or the writer)
  std::atomic<uint64_t> prepare_upto_{0};     // the preparer makes indices below this
  std::atomic<uint64_t> preparing_index_{~uint64_t{0}};  // the one the preparer is making now
  std::atomic<uint64_t> made_upto_{0};  // every segment up to this one exists, its name synced
  std::mutex error_mu_;
  status prepare_error_;
  // Pre-faulting after hand-over: a segment is published as soon as it exists
  // (header durable), then the preparer faults its pages in, a slice at a
  // time, for as long as it is still ahead of the writer. A handshake keeps
  // it off a segment the writer has left (the sealer remaps that one): the
  // writer stores writer_at_ then reads populating_, the preparer stores
  // populating_ then reads writer_at_ (both sequentially consistent), so one
  // of them sees the other.
  static constexpr uint64_t kNone = ~uint64_t{0};
  static constexpr uint64_t kPopulateSlice = 1ull << 20;  // bounds the writer's wait in that handshake
  std::atomic<uint64_t> writer_at_{0};      // the writer's current segment
  std::atomic<uint64_t> populating_{kNone};  // the segment the preparer faults a slice of now
  struct to_populate {
    segment* seg;
    uint64_t off;
  };
  std::vector<to_populate> populate_queue_;  // preparer thread only; index order
  bool populate_one_slice();

  // --- sealing: a single-producer, single-consumer ring ---
  std::array<seal_job, kSealRing> ring_{};
  const size_t max_pending_ = max_pending_seals();
  std::atomic<uint64_t> ring_head_{0};  // next job the sealer takes
  std::atomic<uint64_t> ring_tail_{0};  // next slot the producer fills
  std::atomic<bool> busy_{false};       // the sealer is working on a job or an index pass
  std::mutex mu_;                       // index_pass_end_, seal_error_
  uint64_t index_pass_end_ = 0;         // > 0: index_sealed() asked for a pass
  status seal_error_;

  // The checkpointer's own head table, advanced one sealed segment at a time.
  std::unique_ptr<head_table> shadow_;
  uint64_t shadow_next_sequence_ = 0;
  uint64_t previous_checkpoint_ = ~uint64_t{0};  // the older of the two kept
  // Segment index files: the newest one written or checked, and its running
  // timestamp maximum (the next one continues it).
  uint64_t indexed_segment_ = ~uint64_t{0};
  uint64_t indexed_through_ = 0;

  std::thread prepare_thread_;
  std::thread seal_thread_;
};

}  // namespace varve
