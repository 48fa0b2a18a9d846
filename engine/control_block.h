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
//  192 4  wake_seq          bumped on commit when a follower asks for wake-ups
//  196 4  waiters           followers parked on wake_seq
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
