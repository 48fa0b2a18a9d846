// DIR/lost+found: where recovery and `varve recover` keep every byte they
// take out of the log, before they change anything. Nothing varve removes
// from a log is ever deleted; it is copied (or moved) here, durably, first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "varve/file_system.h"
#include "varve/status.h"

namespace varve::detail {

class lost_found {
 public:
  lost_found(file_system& fs, std::string log_dir);

  // Copies `n` bytes that sat at `offset` of `file` into
  // lost+found/<file name>.at-<offset, 20 digits>, and makes the copy and its
  // name durable (write .partial, datasync, rename, sync lost+found/ and, the
  // first time, the log directory). Only then may the caller zero the
  // originals. Returns the copy's path. An existing copy of the same range
  // from an earlier attempt is replaced (it held the same bytes).
  result<std::string> keep_bytes(const std::string& file, uint64_t offset, const std::byte* data,
                                 uint64_t n);
  // Moves a whole file of the log into lost+found/ under its own name (a
  // numbered suffix if that name is taken), durably: rename, then sync both
  // directories. Returns the new path.
  result<std::string> keep_file(const std::string& path);
  // Appends one line to lost+found/REPORT (a human-readable journal of every
  // action, with the time) and syncs it. Best effort: the bytes are safe
  // whether or not the note is.
  void note(const std::string& line);

  const std::string& dir() const { return dir_; }

 private:
  status ensure_dir();

  file_system& fs_;
  std::string log_dir_;
  std::string dir_;
  bool ready_ = false;
};

}  // namespace varve::detail
