// Where a log's segments are: the one reading of DIR/start (retention),
// DIR/archive (the archive tier) and the directory's segment files that
// recovery, the read-only open, the admin commands, index rebuilds and
// repair share.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/archive_file.h"
#include "base/start_file.h"
#include "varve/file_system.h"
#include "varve/status.h"

namespace varve::log_layout {

struct layout {
  // DIR/start (segment 0, sequence 0 without one).
  uint64_t start_segment = 0;
  uint64_t first_sequence = 0;
  // DIR/archive, when the log has one.
  std::optional<archive_file::location> archive;
  // The first segment whose file lives in DIR: the start, or the archive's
  // boundary when that lies past it.
  uint64_t hot_first = 0;
  // The segment files in DIR from hot_first on, ascending.
  std::vector<uint64_t> hot;
  // Files in DIR below the start: a retention pass a crash interrupted
  // had decided to remove them (no part of the log).
  std::vector<uint64_t> below_start;
  // Files in DIR in [start, archive boundary): an archive pass a crash
  // interrupted had archived them, durably, before removing them.
  std::vector<uint64_t> archived_hot;
  // Archive files just below the start (newest first): a retention pass a
  // crash interrupted had decided to remove them. Found by walking down
  // from the start while the files are there: O(what is left), never a
  // listing of the archive.
  std::vector<uint64_t> archived_below_start;

  uint64_t archive_end() const { return archive ? archive->archive_end : 0; }
  std::string archive_dir() const { return archive ? archive->dir : std::string(); }
  // Every segment of the log that should exist: the archived ones from the
  // start, then the hot files (which may still have holes: callers judge).
  std::vector<uint64_t> all() const;
};

// `names`: DIR's listing. A damaged DIR/start or DIR/archive is an error
// naming the file.
result<layout> read(file_system& fs, const std::string& dir, uint64_t log_id, const std::vector<std::string>& names);
result<layout> read(file_system& fs, const std::string& dir, uint64_t log_id);

}  // namespace varve::log_layout
