// The segment index files of one open log (index/<segment>.sidx), mapped on
// first use, validated before they are trusted, and cached lock-free like the
// segments themselves. Also the one routine that builds a missing or bad
// index file (the background thread and `varve index rebuild` share it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/atomic_slots.h"
#include "base/segment.h"
#include "index/segment_index.h"
#include "varve/options.h"

namespace varve {

class segment_table;

class index_table {
 public:
  index_table(std::shared_ptr<file_system> fs, std::string dir, uint64_t log_id)
      : fs_(std::move(fs)), dir_(std::move(dir)), log_id_(log_id) {}
  ~index_table();
  index_table(const index_table&) = delete;
  index_table& operator=(const index_table&) = delete;

  // Told once per damaged index file a reader finds (set before readers run).
  void set_observer(recovery_observer* o) { observer_ = o; }
  // In the writer's process: segments below `end` are sealed and their
  // footers written (release; the sealer raises it after each seal). A reader
  // reads no footer at or above it, so it never races the sealer writing
  // one. Read-only logs leave it unbounded: their mapping is their own.
  void set_sealed_end(uint64_t end) {
    uint64_t cur = sealed_end_.load(std::memory_order_relaxed);
    while ((cur == UINT64_MAX || cur < end) &&
           !sealed_end_.compare_exchange_weak(cur, end, std::memory_order_release)) {
    }
  }

  // The validated index of sealed segment `seg`, or null when there is no
  // usable one: not written yet (checked again after a short while), missing,
  // or damaged (reported once; readers then walk the back-chain instead).
  const segment_index::view* get(const segment& seg);

  // Segments whose index file a reader found damaged, for the writer's
  // background thread to rebuild (then forget() lets readers load it again).
  std::vector<uint64_t> take_damaged();
  void forget(uint64_t segment_index);

  enum class state : uint8_t { valid, missing, damaged };
  // Checks an index file on disk, bypassing the cache: its header, size and
  // identity (the body's checksum is checked when a reader maps it).
  static state check(file_system& fs, const std::string& dir, uint64_t log_id, const segment& seg,
                     uint64_t& max_timestamp_through, status& why);
  // Builds the index of sealed segment `seg` and writes it atomically.
  // Returns its max_timestamp_through.
  static result<uint64_t> build_and_write(file_system& fs, const std::string& dir,
                                          uint64_t log_id, const segment& seg,
                                          uint64_t max_timestamp_through_previous);

 private:
  struct loaded;
  loaded* load(const segment& seg, uint64_t now_ns);

  std::shared_ptr<file_system> fs_;
  std::string dir_;
  uint64_t log_id_;
  recovery_observer* observer_ = nullptr;
  std::atomic<uint64_t> sealed_end_{UINT64_MAX};
  atomic_slots<loaded> slots_;
  std::atomic<loaded*> retired_{nullptr};
  std::mutex damaged_mu_;
  std::vector<uint64_t> damaged_;
};

// Makes every sealed segment in [first, end) carry a valid index file,
// rebuilding (in order, so each knows its predecessor's timestamps) the ones
// missing or damaged. Damaged ones are reported to `observer`. Returns the
// running timestamp maximum through segment end - 1 (0 for an empty range).
// `cancel`, when set, stops the pass between two segments (errc::cancelled).
result<uint64_t> ensure_indexes(file_system& fs, segment_table& table, uint64_t first,
                                uint64_t end, recovery_observer* observer, bool force,
                                const std::atomic<bool>* cancel = nullptr);

}  // namespace varve
