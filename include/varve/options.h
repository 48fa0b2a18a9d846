// Options for creating and opening a log: plain structs, no long parameter lists.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "varve/crypto.h"
#include "varve/export.h"
#include "varve/file_system.h"
#include "varve/types.h"

namespace varve {

class upcasters;

// How opening a log for writing treats records that fail their checks. The
// contract (README, docs/RELIABILITY.md): recovery never cuts or zeroes an
// event that was acknowledged. varve.ctl records how far that goes: the
// committed position, within the boot that wrote it (the page cache still
// holds every byte the writer stored, so a process crash tears nothing); the
// durable position, after a reboot (a power loss may tear or drop only what
// was never made durable). That position is the log's *guard*.
enum class recovery_mode : uint8_t {
  // The default. Past the guard, a power loss (or a crash mid-append) may
  // leave a torn record, holes, or garbage: the log is cut at the first
  // record that fails, every cut byte is first copied into DIR/lost+found/,
  // and the cut is reported. At or below the guard a record that fails is
  // corruption: the open fails with errc::corruption naming the file, the
  // offset and what failed, and nothing on disk changes (read-only opens
  // still read up to the damage). So is a valid record after a damaged one
  // within one boot, a missing segment file, or a log that ends before the
  // guard. `varve recover` (repair_log) then repairs it explicitly.
  torn_tail,
  truncate_tail = torn_tail,  // the name before the guard existed
  // Refuse any damage, a torn tail included; modify nothing. For forensics.
  strict,
  // Explicit repairs, for an operator who has read what recovery refused
  // (they also apply at or below the guard). Every byte taken out is kept in
  // DIR/lost+found/ first and reported.
  // point_in_time: the log ends just before the first damage; everything
  // after it (later segments too) is set aside. A consistent prefix.
  point_in_time,
  // skip_damaged: a damaged range is replaced by a hole record (FORMAT.md
  // 4.4) and the valid records after it are kept; the events in the range are
  // lost (their bytes are in lost+found). Reads of a stream whose events sat
  // there stop with errc::corruption at the hole.
  skip_damaged,
};

// One thing recovery, verify or repair did or found, for the operator.
struct recovery_action {
  enum class kind : uint8_t {
    cut,            // bytes past the end of the log taken out (kept in lost+found first)
    set_aside,      // a whole file moved into lost+found (or renamed .damaged, derived files)
    removed_empty,  // a segment file that held nothing (zero past its header) removed
    hole,           // skip_damaged: a damaged range replaced by a hole record
    rebuilt,        // a header, footer, index or checkpoint written anew
    note,           // anything else the operator should know
  };
  kind what = kind::note;
  std::string file;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  std::string why;
  std::string kept_at;  // where the bytes are now (lost+found), if anywhere
  uint64_t events = 0;  // records that validated among the bytes taken out (best effort)
};

// Told about every range recovery or verify skips or cuts, so nothing is lost
// silently; also about derived files (checkpoints, index files) found damaged
// and rebuilt. Called from the opening thread, the writer's background thread
// and reader threads, possibly at once: implementations must be thread-safe.
struct VARVE_API recovery_observer {
  virtual ~recovery_observer() = default;
  virtual void on_truncated(const std::string& file, uint64_t offset, uint64_t bytes,
                            const std::string& why) = 0;
  // The structured form of the same report; by default it is passed on to
  // on_truncated with the lost+found path in the text.
  virtual void on_action(const recovery_action& a) {
    on_truncated(a.file, a.offset, a.bytes,
                 a.kept_at.empty() ? a.why : a.why + " (bytes kept in " + a.kept_at + ")");
  }
};

// Retention (event_log::retain, `varve retain`):
// whole sealed segments leave the head of the log, oldest first. Each limit
// that is set removes the segments it condemns (any one suffices, as with
// Kafka's retention.ms and retention.bytes); what is removed is bounded by
// what recovery can stand on: the newest head-table checkpoint's segment and
// everything after it always stay (docs/DESIGN.md "Retention").
struct retention_policy {
  // Segments whose newest event is older than this (by the events' own
  // timestamps, ns): 0 = no age limit.
  uint64_t max_age_ns = 0;
  // The oldest segments go until the log's segment files take at most this
  // many bytes: 0 = no size limit.
  uint64_t max_bytes = 0;
  // Segments that lie wholly before this position (e.g. one every consumer
  // has passed): none = no position limit.
  position before = position::none();
  bool empty() const { return max_age_ns == 0 && max_bytes == 0 && before.is_none(); }
};

// The archive tier (event_log::archive, `varve archive`): whole sealed
// segments move out of the log's directory into an archive directory (for
// instance on cheaper storage) as zstd-compressed, checksummed files, and
// every read keeps reaching them there (docs/DESIGN.md "Archive tier",
// FORMAT.md 1c).
struct archive_options {
  // Where the archived segments go; created if missing. A log has one
  // archive: once it has archived anything, this must name the same place.
  std::string dir;
  // Archive the sealed segments that lie wholly before this position: none
  // = every sealed segment.
  position before = position::none();
  // zstd's compression level (1..19; 3 is zstd's default).
  int level = 3;
  // Bytes of segment per independently compressed frame: a power of two
  // from 4 KiB to the segment's size. A stream read inflates the frames its
  // events lie in, so smaller frames make scattered reads cheaper, larger
  // ones compress a little better (docs/BENCHMARKS.md, "Archive tier").
  uint32_t frame_bytes = 64 * 1024;
};

struct log_options {
  // Segment capacity, a power of two between 64 KiB and 1 GiB, fixed at creation.
  uint64_t segment_bytes = 64ull << 20;
  durability mode = durability::none;
  // group mode: the flusher wakes at least this often, and sooner when
  // group_commit_bytes of committed data are waiting.
  std::chrono::microseconds group_commit_interval{1000};
  uint64_t group_commit_bytes = 1 << 20;
  recovery_mode recovery = recovery_mode::torn_tail;
  recovery_observer* observer = nullptr;  // not owned
  // Pre-create and pre-fault segments in the background (recommended): the
  // writer then takes the next one at roll-over with one atomic exchange.
  bool prepare_next_segment = true;
  // How many segments are kept ready ahead of the writer (1..8). Two cover a
  // writer filling segments faster than one can be pre-faulted now and then.
  uint32_t prepare_ahead = 2;
  // How many streams the writer expects to hold: its head table is sized for
  // them at open (faulted in, on huge pages where the kernel allows). 0 =
  // grow as needed: the table then doubles in small steps spread over later
  // appends, its pages faulted in by the background thread (4 KiB pages), so
  // no append pauses for a time proportional to the streams held. A hint:
  // past it the table grows the same way.
  uint64_t expected_streams = 0;
  // Verify each record's checksum as readers yield it.
  bool verify_checksums = true;
  // Tamper evidence (docs/DESIGN.md): keep DIR/chain, a BLAKE2b-256 digest of
  // each sealed segment chained to the previous one, appended by the sealer
  // (about 100 ms of its CPU per 64 MiB segment). Set once, a log keeps its
  // chain: every later open extends it, with or without this flag. A chain
  // started on an existing log covers the segments sealed from then on.
  // verify_chain (varve/admin.h) checks it and gives the head to anchor.
  bool tamper_evident_chain = false;
  // Retention applied by the writer's background thread, after each seal
  // and every retention_interval while no seal comes (docs/DESIGN.md
  // "Retention"); empty = the log only grows (event_log::retain still
  // removes on demand).
  retention_policy retention;
  std::chrono::milliseconds retention_interval{10000};
  // How long a removed segment stays mapped in the writer's process: views
  // handed out before the removal, and readers inside the segment, stay
  // valid that long (a reader moving on then gets errc::removed); after it
  // the pages are dropped at the next pass and the disk space returns.
  // Closing the log returns it in any case. A read-only log (another
  // process) learns of a pass at its readers' next step and drops what it
  // mapped after its own grace period.
  std::chrono::milliseconds retention_grace{60000};
  // Per-stream encryption for crypto-shredding (varve/crypto.h): with a
  // key, every payload appended is encrypted with its stream's data key,
  // and readers decrypt. Giving a key to a log without DIR/keys turns
  // encryption on (events appended before stay in clear). A log with
  // DIR/keys refuses a writer without its key, and any open with another
  // key (errc::invalid_argument); a read-only log opened without it reads
  // every encrypted event as errc::invalid_argument ("needs the master key")
  // while tools that only check bytes (verify, index, stat) work as usual.
  std::optional<varve::master_key> master_key;
  std::shared_ptr<file_system> fs = nullptr;  // null = posix_file_system()
  // Clock for event timestamps when the caller gives none (ns since the epoch).
  std::function<uint64_t()> clock = nullptr;  // null = CLOCK_REALTIME
  // Schema evolution (varve/upcast.h): every reader of the log hands events
  // out upcast to their type's current version, and appends at a version
  // newer than a type's current one are refused. Checked at open (an
  // incomplete chain is errc::invalid_argument). event_log::set_upcasters
  // replaces them later.
  std::shared_ptr<const varve::upcasters> upcasters = nullptr;
};

}  // namespace varve
