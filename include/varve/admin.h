// Operator functions behind the CLI: verify and stat a log directory. The CLI
// only parses arguments and prints; all checking lives here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "varve/log.h"
#include "varve/status.h"

namespace varve {

// What verify_log reads.
enum class verify_scope : uint8_t {
  // Every record of every segment, and every footer.
  whole_log,
  // Cheap enough for `varve stat` and `varve index verify`: that no segment
  // file is missing or of the wrong size, then every record of the segments
  // after the last one with a footer (the unsealed tail, where a crash or a
  // truncation shows). Sealed segments' records are not read.
  unsealed_tail,
};

struct verify_report {
  uint64_t segments = 0;
  uint64_t sealed_segments = 0;
  uint64_t events = 0;         // in the segments whose records were checked
  uint64_t bytes = 0;          // record bytes checked
  uint64_t first_checked = 0;  // the first segment whose records were checked
  status first_problem;        // ok when intact; otherwise file and offset
};

// Checks every record of every segment in `scope` (checksums, positions,
// sequence continuity, batch framing) and every footer, without modifying
// anything and without the writer lock. `progress(bytes_done, bytes_total)`
// is called now and then when set.
result<verify_report> verify_log(const std::string& dir,
                                 std::function<void(uint64_t, uint64_t)> progress = {},
                                 verify_scope scope = verify_scope::whole_log);

// Figures only (no check: see verify_scope::unsealed_tail); bytes_on_disk
// counts every file under `dir` (index, snapshots, subscriptions, projections,
// control block...), as allocated on disk.
result<log_stats> stat_log(const std::string& dir);

// The per-aggregate index of a log (index/*.sidx and the newest head-table
// checkpoints), compared with or rebuilt from the log alone.
struct index_report {
  uint64_t sealed_segments = 0;
  uint64_t index_files = 0;     // verify: found valid; rebuild: written
  uint64_t index_bytes = 0;     // of the segment index files
  uint64_t events = 0;          // in sealed segments
  uint64_t checkpoints = 0;     // head-table checkpoints checked or written
  std::vector<status> problems; // verify: each names a file; empty = intact
};

// Rebuilds every segment index file in memory from the sealed segments and
// compares it byte for byte with the file on disk, and each head-table
// checkpoint with the heads a scan gives. Reads only; no lock.
result<index_report> verify_index(const std::string& dir);
// Rewrites the index from the log alone: every sealed segment's index file,
// and one head-table checkpoint (the newest sealed segment). Takes the writer
// lock (errc::locked while a writer has the log open); never touches events.
// `progress(segments_done, segments_total)` is called before each segment.
result<index_report> rebuild_index(const std::string& dir,
                                   std::function<void(uint64_t, uint64_t)> progress = {});

}  // namespace varve
