// Operator functions behind the CLI: verify and stat a log directory. The CLI
// only parses arguments and prints; all checking lives here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "varve/export.h"
#include "varve/log.h"
#include "varve/status.h"

namespace varve {

struct verify_report {
  uint64_t segments = 0;
  uint64_t sealed_segments = 0;
  uint64_t events = 0;
  uint64_t bytes = 0;          // record bytes checked
  uint64_t holes = 0;          // repair holes (varve recover --mode skip-damaged) crossed
  uint64_t lost_events = 0;    // events those holes stand for
  status first_problem;        // ok when intact; otherwise file and offset
};

// Checks every record of every segment (checksums, positions, sequence
// continuity, batch framing) and every footer, without modifying anything and
// without the writer lock. `progress(bytes_done, bytes_total)` is called now
// and then when set.
VARVE_API result<verify_report> verify_log(const std::string& dir,
                                 std::function<void(uint64_t, uint64_t)> progress = {});

VARVE_API result<log_stats> stat_log(const std::string& dir);

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
VARVE_API result<index_report> verify_index(const std::string& dir);
// Rewrites the index from the log alone: every sealed segment's index file,
// and one head-table checkpoint (the newest sealed segment). Takes the writer
// lock (errc::locked while a writer has the log open); never touches events.
VARVE_API result<index_report> rebuild_index(const std::string& dir);

}  // namespace varve
