// event_log: an append-only, checksummed, memory-mapped log of domain events,
// one per directory. The single entry point of the library.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "varve/event.h"
#include "varve/export.h"
#include "varve/lifecycle.h"
#include "varve/metrics.h"
#include "varve/options.h"
#include "varve/reader.h"
#include "varve/stream_reader.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve {

namespace detail {
struct log_state;
struct log_access;
}

// What an append acknowledges. `end` is the log position just past the batch:
// wait_durable(end) returns once the batch survives a power loss.
struct append_result {
  position first;               // position of the first event of the batch
  position end;                 // one past the last event's record
  sequence first_sequence;      // global sequence number of the first event
  stream_version first_version = 0;
  stream_version last_version = 0;
  // Idempotent appends: the events, by their event_ids, were already in the
  // stream at the place this append names; nothing was written and the
  // fields above are those of the events already there (see append()).
  bool duplicate = false;
};

// One stream's part of a multi-stream append (event_log::append of a span of
// these): its expected version and its events (none: a check of the version
// only, writing nothing for that stream).
struct stream_batch {
  stream_id stream;
  expected_version expected = expected_version::any();
  std::span<const event_data> events;
};

// What a multi-stream append acknowledges: the log range of the whole unit
// of work (one batch in the log: one commit, one recovery unit).
struct multi_append_result {
  position first;             // the first event's record
  position end;               // one past the last event's record
  sequence first_sequence;    // the first event's; the rest follow in call order
  uint64_t events = 0;
};

// What a retention pass removed (or, dry run, would remove).
struct retention_result {
  uint64_t segments_removed = 0;
  uint64_t bytes_removed = 0;
  uint64_t events_removed = 0;
  uint64_t first_segment = 0;   // the log's oldest segment afterwards
  position start;               // where the log starts afterwards (0: nothing removed, ever)
  sequence first_sequence;      // the sequence of the first event from there
  // When the policy asked for more than could go: why it stopped there
  // (the newest head-table checkpoint, a segment without an index, ...).
  std::string held_back;
};

// What an archive pass moved (or, dry run, would move).
struct archive_result {
  uint64_t segments_archived = 0;
  uint64_t raw_bytes = 0;        // of the segment files that left the log's directory
  uint64_t archived_bytes = 0;   // of the compressed files that hold them (0 on a dry run)
  // Segments from the log's start up to this one live in the archive.
  uint64_t archive_end = 0;
  std::string dir;               // the archive directory (absolute)
};

// Point-in-time figures for `varve stat` and monitoring.
struct log_stats {
  uint64_t segments = 0;
  uint64_t segment_bytes = 0;
  uint64_t events = 0;          // = next sequence number
  uint64_t streams = 0;
  position written;             // bytes encoded into the mapping
  position committed;           // visible to readers
  position durable;             // survives power loss
  uint64_t bytes_on_disk = 0;   // stats(): segment files; stat_log(): every file of the directory
  // The writer's waits on its background helpers since open (0 on a
  // read-only log). A roll-over waits only when the next segment is not yet
  // prepared (prepare_ahead too small for the append rate, or a slow disk);
  // a seal waits only when the sealer is that many segments behind (the
  // descriptor budget: RLIMIT_NOFILE / 16, 4 to 64), i.e. the disk is slower
  // than the appends for longer than a burst.
  uint64_t rollovers = 0;
  uint64_t rollovers_that_waited = 0;
  uint64_t longest_rollover_wait_ns = 0;
  uint64_t longest_seal_wait_ns = 0;
  // Where the log starts (retention): its first record's position (0 when
  // nothing was ever removed) and the sequence of the event there.
  position start;
  sequence first_sequence;
  // The archive tier (stat_log() only): where archived segments live ("" when
  // the log has none), how many of the log's segments are there, and the
  // bytes its files take.
  std::string archive_dir;
  uint64_t archived_segments = 0;
  uint64_t archive_bytes_on_disk = 0;
};

// Thread safety and ownership:
// - One writer per directory, enforced across threads and processes by a file
//   lock: a second open() for writing fails with errc::locked.
// - append(), flush(), close(), version_of(), stream_exists() and stats() are
//   called from one thread at a time (the writer's: they use its head table).
//   The position getters, wait_durable(), read() and any number of log_readers
//   may be used from any thread, concurrently with the writer, without locks.
//   On a read-only log, version_of() and stats() first catch its own head
//   table up with what has been committed (from the newest checkpoint).
// - Three watermarks: written <= committed <= end of log; durable <= committed.
//   An append's events become visible to readers together (committed with one
//   release store, mirrored to the control block for other processes).
// - Views handed out by readers stay valid until the event_log is destroyed.
//
// Durability contract (see README): in mode none an acknowledged append
// survives a crash of this process (it is in the page cache) but not a power
// loss; in mode group it survives a power loss once durable_position() has
// passed its `end` (wait_durable blocks for that); in mode sync append returns
// only once it is durable.
class event_log {
 public:
  // Creates an empty log in `dir` (created if absent; must not already hold a log).
  VARVE_API static result<std::unique_ptr<event_log>> create(const std::string& dir,
                                                   const log_options& options = {});
  // Opens an existing log for writing, running recovery on its unsealed tail.
  VARVE_API static result<std::unique_ptr<event_log>> open(const std::string& dir,
                                                 const log_options& options = {});
  VARVE_API static result<std::unique_ptr<event_log>> open_or_create(const std::string& dir,
                                                           const log_options& options = {});
  // Opens a log for reading only, without the writer lock and without recovery:
  // follows what the writer (in this or another process) commits, through the
  // shared control block. Appends fail with errc::read_only.
  VARVE_API static result<std::unique_ptr<event_log>> open_read_only(const std::string& dir,
                                                           const log_options& options = {});

  VARVE_API ~event_log();
  event_log(const event_log&) = delete;
  event_log& operator=(const event_log&) = delete;

  // Appends one event to `stream` if the stream's version satisfies `expected`.
  // No allocation, lock or system call in durability::none (except at segment
  // roll-over, once per segment). On a version mismatch returns
  // errc::wrong_expected_version with actual_version() set; nothing is written.
  VARVE_API result<append_result> append(stream_id stream, expected_version expected,
                               const event_data& event);
  // Appends events atomically: all become visible together and survive
  // recovery together, or none does. The whole batch must fit in one segment.
  VARVE_API result<append_result> append(stream_id stream, expected_version expected,
                               std::span<const event_data> events);
  //
  // Idempotent appends (a client retrying after a timeout cannot tell whether
  // its first try landed): when the batch's first event carries an event_id,
  // the events already at the place the append names are compared with it,
  // by event_id, type, schema version, content type, payload and the
  // correlation and causation ids (not the timestamp). The place: versions
  // v+1.. for expected_version::exact(v), 1.. for no_stream, and for any and
  // stream_exists the stream's newest events (as many as the batch). If every
  // event is there, the result is the original acknowledgement with
  // `duplicate` set and nothing is written; if some ids are there with other
  // content, or only some of them, it is errc::wrong_expected_version saying
  // which id; if none is, the append proceeds (or, with exact/no_stream,
  // fails as a plain conflict). The window: any age for exact and no_stream
  // (a read through the per-aggregate index), the last batch for any and
  // stream_exists; an id elsewhere in the stream is not looked for. No
  // memory, and across restarts, since the log itself is the record. Appends
  // without event ids pay one test.


  // A unit of work over several streams: every stream's expected version is
  // checked first, and either all the events are appended, as one batch in
  // the log (readers see them together, recovery keeps all or none of them,
  // in every durability mode), or nothing is. Events are written in call
  // order, stream by stream. On a conflict: errc::wrong_expected_version
  // naming the first stream that failed, with actual_version() set. A stream
  // may appear once per call (errc::invalid_argument otherwise); a stream
  // with no events is a version check only; the call needs one event at
  // least, and the whole unit must fit in one segment. `per_stream`, when not
  // empty (at least batches.size() entries), gets each stream's
  // acknowledgement (first/end of its own events, first and last version;
  // for a check-only stream first == end and the versions are its current
  // one). Event ids are not looked up for duplicates here (see the
  // single-stream append for idempotent retries). No allocation for up to
  // 32 streams.
  VARVE_API result<multi_append_result> append(std::span<const stream_batch> batches,
                                               std::span<append_result> per_stream = {});

  // Blocks until everything up to `p` is durable (flushes it itself in modes
  // none and sync). Fails if a sync failed: the log then refuses writes.
  VARVE_API status wait_durable(position p);
  // Makes everything committed so far durable.
  VARVE_API status flush();
  // Seals nothing, syncs per the durability mode, stops background threads and
  // releases the writer lock. Also done by the destructor (errors then ignored).
  VARVE_API status close();

  VARVE_API position written_position() const;
  VARVE_API position committed_position() const;
  VARVE_API position durable_position() const;
  VARVE_API sequence next_sequence() const;

  // Current version of a stream (0 if it does not exist). O(1) expected.
  VARVE_API stream_version version_of(stream_id stream) const;
  bool stream_exists(stream_id stream) const { return version_of(stream) != 0; }

  // A cursor over committed events from `from` (position{} = the beginning).
  VARVE_API log_reader read(position from = {}) const;
  // Only the events `filter` wants. Sealed segments whose index summary
  // (types, categories, streams, the correlation filter) rules the filter
  // out are skipped without reading their records: finding one correlation
  // id, type or category reads the segments that may hold it, not the log.
  VARVE_API log_reader read(position from, event_filter filter) const;

  // One stream's events from version `from`: forward (from, from+1, ...) or
  // backward (from, from-1, ..., 1; kLatestVersion = the newest), at most
  // `max_count` of them. Called like version_of() (it looks up the stream's
  // head); the returned reader may then be used from any thread.
  VARVE_API result<stream_reader> read_stream(stream_id stream, stream_version from = 1,
                                    read_direction direction = read_direction::forward,
                                    uint64_t max_count = UINT64_MAX) const;

  // The position of the first event whose timestamp is at or after `t` (ns
  // since the epoch), for "state as of t" (read up to it) and "since t" (read
  // from it). Timestamps need not be monotonic: like Kafka's time index, the
  // answer is the first event at which the running maximum of timestamps
  // reaches t, which is the first event at or after t whenever timestamps
  // rise with the log. The committed end of the log when no event reaches t.
  // O(log segments) through the segment index files, plus a scan of at most
  // 64 events (in the unsealed tail: of up to one segment).
  VARVE_API result<position> position_at_time(uint64_t t) const;
  // The position of the event with sequence number `s` (for callers that
  // number events by their sequence, as an application's notification ids
  // do); the committed end of the log for s == next_sequence().
  // errc::not_found for a sequence past that, or one a repair's hole stands
  // for (the error names the hole). O(log segments) through the sealed
  // segments' footers and index files, plus a scan of at most 64 events (in
  // the unsealed tail: of up to one segment). Any thread.
  VARVE_API result<position> position_of(sequence s) const;

  // As-of questions (event sourcing's "what did this aggregate look like
  // then"), called like version_of():
  // - version_at: the stream's version just before log position `p` (how
  //   many of its events lie at positions < p; 0 when none). A binary search
  //   over the per-aggregate index: O(log versions) seeks, no scan.
  // - version_at_time: its version as of time `t` (ns since the epoch): its
  //   events before position_at_time(t + 1), i.e. before the first event at
  //   which the running maximum of timestamps passes t (every event stamped
  //   at or before t when timestamps rise with the log).
  // Read the state then with read_stream(stream, 1, forward, version) or
  // load_aggregate_at (varve/snapshot.h).
  VARVE_API result<stream_version> version_at(stream_id stream, position p) const;
  VARVE_API result<stream_version> version_at_time(stream_id stream, uint64_t t) const;

  VARVE_API log_stats stats() const;
  // Retention: removes whole sealed segments from the head of the log
  // (retention_policy, varve/options.h). Crash-safe: DIR/start records the new
  // start durably before any file goes, and the next open finishes a pass a
  // crash interrupted. Afterwards reads below the start are errc::removed
  // naming where the log starts; position 0 means the start. Writer thread
  // (not concurrently with an append); read-only logs get errc::read_only.
  // dry_run: says what would go and changes nothing.
  VARVE_API result<retention_result> retain(const retention_policy& policy, bool dry_run = false);
  // Archive tier: moves whole sealed segments, oldest first, into
  // options.dir as compressed files (archive_options, varve/options.h).
  // Crash-safe: each archive file is durable and read back before DIR/archive
  // records the new boundary, and only then does the segment file leave the
  // directory; the next open finishes a pass a crash interrupted. Every read
  // (log, stream, replay, snapshot, verify) reaches archived events as
  // before; a stream read inflates only the frames it touches. Only sealed
  // segments move: one the background sealer has not finished yet (just
  // filled) ends the pass and waits for the next. Writer thread; read-only
  // logs get errc::read_only.
  VARVE_API result<archive_result> archive(const archive_options& options, bool dry_run = false);
  // Crypto-shredding (varve/crypto.h; the log must have a master key):
  // destroys every data key of `stream`, durably and crash-safely (DIR/
  // forgotten records the forget and its keys first; the next open finishes
  // one a crash interrupted). When it returns, every read of the stream's
  // encrypted events, in this process and in others, hands them out with
  // event_view::forgotten set and an empty payload. Later appends to the
  // stream get a new key. A stream that does not exist is errc::not_found;
  // one whose events were all appended in clear (before the log had a
  // master key) is errc::invalid_argument: nothing could be erased.
  // Snapshots are separate: snapshot_store::forget deletes the stream's
  // (`varve stream forget` does both). Writer thread, not concurrently with
  // an append; read-only logs get errc::read_only.
  VARVE_API result<forget_result> forget(stream_id stream);
  // Stream lifecycle (varve/lifecycle.h; docs/DESIGN.md "Stream
  // lifecycle"). Each change is checked, the log is made durable up to its
  // committed end, the change is recorded in DIR/streams and synced, and
  // then every read hides what it covers: in this process at once (readers
  // already running at their next segment or the committed end), in other
  // processes at their next such step. The events stay on disk until
  // retention removes their segments or scavenge() rewrites them. Each
  // returns the stream's metadata after the change; a change that changes
  // nothing writes nothing. Writer thread, not concurrently with an append;
  // read-only logs get errc::read_only; a deleted stream takes no more
  // changes (errc::stream_deleted).
  //
  // delete_stream: a tombstone. Reads of the stream are errc::stream_deleted,
  // its events leave log reads, replay, subscriptions and `varve ship`, and
  // appends to it are refused with errc::stream_deleted, for good. A stream
  // with no events is errc::not_found.
  VARVE_API result<stream_metadata> delete_stream(stream_id stream);
  // Hides versions below `before` (at most the stream's version + 1: all of
  // them; the stream goes on from its version). Only moves forward.
  VARVE_API result<stream_metadata> truncate_stream(stream_id stream, stream_version before);
  // Replaces the stream's limits (0: none): keep the newest `max_count`
  // events (stream reads and scavenge; log-wide reads cannot know a
  // stream's newest version per event), hide events older than
  // `max_age_ns` (every read). The stream need not exist yet.
  VARVE_API result<stream_metadata> set_stream_limits(stream_id stream, uint64_t max_count, uint64_t max_age_ns);
  // The stream's metadata (all zero: none). Any log, read-only too.
  VARVE_API result<stream_metadata> stream_metadata_of(stream_id stream) const;
  // Every stream with metadata, in the order of their last change.
  VARVE_API result<std::vector<stream_metadata_entry>> stream_metadata_list() const;

  // Gives back the disk space of hidden events: rewrites each sealed
  // segment (not the archived ones) that holds whole batches of them, each
  // removed run becoming a hole record of the same length, mostly unallocated
  // (a sparse file). Positions, sequences and every other byte stay as they
  // were. Before any file changes, DIR/streams records for each stream the
  // version below which its events may be gone (a truncation; limits that
  // hid them can no longer bring them back). Crash-safe: each segment is
  // rewritten to a new file, synced and checked, then renamed over the old
  // one. The space returns once no process maps the old file (this one keeps
  // it until it closes). A log with a tamper-evident chain is refused
  // (errc::invalid_argument): the chain commits to every sealed byte.
  // dry_run: counts what would go and changes nothing (bytes_freed 0).
  // Writer thread, not concurrently with an append.
  VARVE_API result<scavenge_result> scavenge(bool dry_run = false);

  // The streams forgotten so far, oldest first (DIR/forgotten; empty for a
  // log without a master key). Any log, read-only too; no key needed.
  VARVE_API result<std::vector<forgotten_stream>> forgotten() const;
  // Whether the log encrypts payloads (it has DIR/keys).
  VARVE_API bool encrypted() const;
  // The writer session's counters from the control block (this session's
  // for a writer; the live or last writer's for a read-only log), and the
  // watermarks. Any thread. read_metrics() adds consumer lags and disk use.
  VARVE_API log_metrics metrics() const;
  VARVE_API const std::string& dir() const;
  VARVE_API const log_options& options() const;
  // Replaces the log's upcasters (log_options::upcasters; null removes
  // them): readers, stream reads, subscriptions and replays made after the
  // call upcast with them, and appends are checked against their current
  // versions. An incomplete chain is errc::invalid_argument and changes
  // nothing. Writer thread, not concurrently with an append (any thread of
  // a read-only log).
  VARVE_API status set_upcasters(std::shared_ptr<const upcasters> u);
  VARVE_API bool is_read_only() const;

 private:
  friend struct detail::log_access;  // engine/ parts built on a log (replay, subscriptions)
  explicit event_log(std::unique_ptr<detail::log_state> s);
  static result<std::unique_ptr<event_log>> open_locked(std::unique_ptr<detail::log_state> s);
  std::unique_ptr<detail::log_state> s_;
};

}  // namespace varve
