// The single-writer guarantee: one appender per log directory, across threads
// and processes (Boost.Interprocess file lock on DIR/varve.lock).
#pragma once

#include <memory>
#include <string>

#include "varve/status.h"

namespace varve {

// Held for the life of a writable event_log. POSIX record locks (which
// Boost's file_lock uses) are per process, so a process-wide registry adds the
// in-process exclusion; the lock file is never opened while this process
// holds the lock, because closing any descriptor of it would drop it.
class writer_lock {
 public:
  static result<std::unique_ptr<writer_lock>> acquire(const std::string& dir);
  // Whether a writer (this process or another) holds the log now, without
  // taking the lock (a reader must never make a writer's open fail). A
  // writer may start right after this says no.
  static bool is_held(const std::string& dir);
  ~writer_lock();
  writer_lock(const writer_lock&) = delete;
  writer_lock& operator=(const writer_lock&) = delete;

 private:
  struct impl;
  explicit writer_lock(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

}  // namespace varve
