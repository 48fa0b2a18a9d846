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
  uint64_t holes = 0;          // repair holes (varve recover --mode skip-damaged) crossed
  uint64_t lost_events = 0;    // events those holes stand for
  uint64_t scavenged_events = 0;  // of which removed by event_log::scavenge (hidden, not lost)
  uint64_t first_checked = 0;  // the first segment whose records were checked
  status first_problem;        // ok when intact; otherwise file and offset
};

// Checks every record of every segment in `scope` (checksums, positions,
// sequence continuity, batch framing) and every footer, without modifying
// anything and without the writer lock. With a writer alive, it checks up to
// the writer's commit position: segments past it (made ahead, possibly still
// being created) hold nothing acknowledged. `progress(bytes_done,
// bytes_total)` is called now and then when set.
VARVE_API result<verify_report> verify_log(const std::string& dir,
                                 std::function<void(uint64_t, uint64_t)> progress = {},
                                 verify_scope scope = verify_scope::whole_log);

// The tamper-evident chain (log_options::tamper_evident_chain; FORMAT.md 5b).
struct chain_report {
  uint64_t entries = 0;
  uint64_t first_segment = 0;  // the chained range, when entries > 0
  uint64_t last_segment = 0;
  std::string head;            // the newest entry's digest, hex ("" when none): anchor it elsewhere
  uint64_t sealed_after = 0;   // sealed segments after the last entry, not chained yet
  bool torn_tail = false;      // a last entry a crash cut short (the sealer rewrites it)
  // verify_chain: the first entry its segment does not hash to (an edit,
  // however its XXH3 checksums were fixed up), or a chained segment whose
  // file is gone; ok otherwise.
  status first_problem;
};
// Recomputes every entry from the segment files (each chained segment is
// read whole: BLAKE2b at ~650 MB/s on one core) without the writer lock and
// without modifying anything. errc::not_found when the log has no chain.
VARVE_API result<chain_report> verify_chain(const std::string& dir,
                                            std::function<void(uint64_t, uint64_t)> progress = {});
// The chain's figures and head as recorded, hashing nothing (for `varve stat`).
VARVE_API result<chain_report> read_chain(const std::string& dir);

// Figures only (no check: see verify_scope::unsealed_tail); bytes_on_disk
// counts every file under `dir` (index, snapshots, subscriptions, projections,
// control block...), as allocated on disk.
VARVE_API result<log_stats> stat_log(const std::string& dir);

// Explicit repair of a log that recovery refused (`varve recover`). Takes the
// writer lock (errc::locked while a writer has the log open). Every byte it
// takes out of the log is first copied (or moved) into DIR/lost+found/,
// durably, and every action is reported; derived files (index, checkpoints)
// it invalidates are renamed .damaged and rebuilt.
struct repair_options {
  // point_in_time: the log ends just before the first damage, wherever it is
  // (a sealed segment included); everything after goes to lost+found/.
  // skip_damaged: each damaged range becomes a hole record and the valid
  // records after it stay (see recovery_mode). Other modes: invalid_argument.
  recovery_mode mode = recovery_mode::point_in_time;
  // Report what would be done, change nothing (takes no lock either).
  bool dry_run = false;
  recovery_observer* observer = nullptr;  // told every action as it happens
  std::function<void(uint64_t, uint64_t)> progress;  // (bytes checked, bytes in all)
};

struct repair_report {
  std::vector<recovery_action> actions;  // done, or (dry run) found and planned
  uint64_t events_before = 0;     // events readable in order before the first damage
  uint64_t events_after = 0;      // events in the log after the repair (dry run: 0)
  uint64_t records_set_aside = 0; // records that validated among the bytes taken out
  uint64_t lost_events = 0;       // events repair holes stand for (skip_damaged)
  position end_before;            // the end varve.ctl recorded as acknowledged
  position end_after;             // the log's end after the repair (dry run: 0)
  bool damaged = false;           // anything needed repairing
};
VARVE_API result<repair_report> repair_log(const std::string& dir, const repair_options& options = {});

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
// `progress(segments_done, segments_total)` is called before each segment.
VARVE_API result<index_report> rebuild_index(const std::string& dir,
                                   std::function<void(uint64_t, uint64_t)> progress = {});

}  // namespace varve
