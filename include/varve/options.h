// Options for creating and opening a log: plain structs, no long parameter lists.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "varve/file_system.h"
#include "varve/types.h"

namespace varve {

// How recovery treats bytes that fail validation in the unsealed tail.
enum class recovery_mode : uint8_t {
  // Cut the tail at the first record that fails validation (a torn or partial
  // write), zero what follows, and continue appending there. The default: a
  // crash can only tear the tail.
  truncate_tail,
  // Refuse to open if the tail holds anything past the last valid record other
  // than zeros; nothing is modified. For forensics before a repair.
  strict,
};

// Told about every range recovery or verify skips or cuts, so nothing is lost
// silently; also about derived files (checkpoints, index files) found damaged
// and rebuilt. Called from the opening thread, the writer's background thread
// and reader threads, possibly at once: implementations must be thread-safe.
struct recovery_observer {
  virtual ~recovery_observer() = default;
  virtual void on_truncated(const std::string& file, uint64_t offset, uint64_t bytes,
                            const std::string& why) = 0;
};

struct log_options {
  // Segment capacity, a power of two between 64 KiB and 1 GiB, fixed at creation.
  uint64_t segment_bytes = 64ull << 20;
  durability mode = durability::none;
  // group mode: the flusher wakes at least this often, and sooner when
  // group_commit_bytes of committed data are waiting.
  std::chrono::microseconds group_commit_interval{1000};
  uint64_t group_commit_bytes = 1 << 20;
  recovery_mode recovery = recovery_mode::truncate_tail;
  recovery_observer* observer = nullptr;  // not owned
  // Pre-create and pre-fault the next segment in the background (recommended).
  bool prepare_next_segment = true;
  // Verify each record's checksum as readers yield it.
  bool verify_checksums = true;
  std::shared_ptr<file_system> fs = nullptr;  // null = posix_file_system()
  // Clock for event timestamps when the caller gives none (ns since the epoch).
  std::function<uint64_t()> clock = nullptr;  // null = CLOCK_REALTIME
};

}  // namespace varve
