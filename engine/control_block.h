// The control block DIR/varve.ctl: a small shared mapping through which the
// writer publishes its watermarks to readers in any process.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "varve/file_system.h"
#include "varve/status.h"

namespace varve {

//  4096 bytes; every watermark on its own cache line:
//  0   8  magic "VARVECTL"
//  8   4  format_version (1)
//  12  4  reserved
//  16  8  log_id
//  24  8  writer_pid (0 when no writer has it open)
//  64  8  commit_position   end of what readers may read (release store)
//  72  8  next_sequence     sequence number the next event will get
//  128 8  durable_position  end of what survives a power loss
//  192 4  wake_seq          reserved for follower wake-ups
//  196 4  waiters           reserved
//  256 8  clean_end         end of the log at the last clean close (0 = none)
//  264 8  clean_check       XXH3-64 of (log_id, clean_end): a torn or stale word fails it
// It is derived state: rewritten by the writer after recovery, never trusted
// for recovery itself (it may be stale after a crash).
class control_block {
 public:
  static constexpr uint64_t kSize = 4096;
  // Writer: creates or overwrites the file and maps it read-write.
  static result<std::unique_ptr<control_block>> create(std::shared_ptr<file_system> fs,
                                                       const std::string& dir, uint64_t log_id);
  // Follower: maps the existing file read-only and checks it belongs to log_id.
  static result<std::unique_ptr<control_block>> open(std::shared_ptr<file_system> fs,
                                                     const std::string& dir, uint64_t log_id);
  ~control_block();

  std::atomic_ref<uint64_t> commit() const { return ref(64); }
  std::atomic_ref<uint64_t> next_sequence() const { return ref(72); }
  std::atomic_ref<uint64_t> durable() const { return ref(128); }
  std::atomic_ref<uint64_t> writer_pid() const { return ref(24); }

  // The clean-close marker: lets the next open skip checking that the rest of
  // the active segment is zero. Only a hint; a mismatch means "check".
  void set_clean_end(uint64_t log_id, uint64_t end);
  // Clears the marker and, when `durable`, syncs the page: a stale marker
  // must never survive a power loss once new records may follow it.
  status clear_clean_end(bool durable);
  // Reads the marker from DIR/varve.ctl without mapping it; 0 when absent.
  static uint64_t read_clean_end(file_system& fs, const std::string& dir, uint64_t log_id);

 private:
  control_block(std::shared_ptr<file_system> fs, file_handle f, std::byte* data)
      : fs_(std::move(fs)), file_(std::move(f)), data_(data) {}
  std::atomic_ref<uint64_t> ref(size_t off) const {
    return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(data_ + off));
  }
  std::shared_ptr<file_system> fs_;
  file_handle file_;
  std::byte* data_;
};

}  // namespace varve
