// Aggregate snapshots: a store of serialized aggregate states beside the log
// (DIR/snapshots/, docs/FORMAT.md §7b), and load_aggregate(), which rebuilds
// an aggregate from its newest usable snapshot plus only the events after it.
//
// Snapshots are derived data. A snapshot that is missing, fails its checksum,
// was taken from another history (the log was recovered shorter and grew
// again), is newer than the stream, or carries another schema version is
// never used: load_aggregate falls back to an older snapshot, or to replaying
// the stream from its first event, and says so in its result.
#pragma once

#include <atomic>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "varve/event.h"
#include "varve/export.h"
#include "varve/log.h"
#include "varve/options.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve {

struct snapshot_options {
  // A file is closed to new snapshots once it reaches this size; a snapshot
  // larger than this gets a file of its own (there is no cap on its size).
  uint64_t file_bytes = 64ull << 20;
  // save() returns once the snapshot is durable (fdatasync). Off: it is in
  // the page cache (survives a crash of the process, not a power loss) until
  // flush().
  bool sync_each_save = true;
  // Told about every snapshot found damaged (checksum, framing, a file of
  // another log) and every unfinished save cut at open. Thread-safe, not owned.
  recovery_observer* observer = nullptr;
  std::shared_ptr<file_system> fs = nullptr;  // null = posix_file_system()
  // Retention: 0 (the default) keeps every snapshot. N > 0: each time a file
  // fills up, compact() runs with keep_per_stream = N (see there), so the
  // store holds about N snapshots per stream plus one file's worth of recent
  // saves. Loads at an older version (load_aggregate_at) then start from an
  // older kept snapshot, or fold from version 1.
  uint32_t keep_per_stream = 0;
};

// What compact() keeps and what it may rewrite.
struct snapshot_compact_options {
  // The newest snapshots of each stream that stay (>= 1). Among identical
  // copies of one snapshot (left by a crash during an earlier compaction)
  // one counts; stale ones never count and are dropped. A file holding a
  // snapshot that fails its checksum is never removed (varve snapshot verify
  // names it); its other snapshots count as usual.
  uint32_t keep_per_stream = 3;
  // A full file is rewritten (its kept snapshots copied to the newest file,
  // then the file removed) once at least this share of its record bytes is
  // dropped; 0 rewrites every file with anything to drop, 1 only files with
  // nothing left to keep.
  double min_dead_fraction = 0.5;
};

struct snapshot_compact_report {
  uint64_t files_removed = 0;
  uint64_t snapshots_dropped = 0;  // superseded (beyond keep_per_stream), in removed files
  uint64_t snapshots_copied = 0;   // kept, moved out of removed files
  uint64_t stale_dropped = 0;      // of another history (load_aggregate found their anchor gone), in removed files
  uint64_t bytes_reclaimed = 0;    // file bytes removed minus bytes copied
};

// What snapshot_store::forget did.
struct snapshot_forget_report {
  uint64_t snapshots_deleted = 0;      // out of the index, and (but for the next) off the disk
  uint64_t files_rewritten = 0;        // files removed once their other snapshots were copied
  uint64_t left_in_damaged_files = 0;  // in a file with damaged stretches, which is never removed
};

// A validated snapshot, in place in the store's read-only mapping: `bytes`
// stays valid while the snapshot_store is open. `bytes` starts 64-byte aligned.
struct snapshot_view {
  stream_version version = 0;      // the stream's version the state reflects
  uint32_t schema_version = 0;     // the user's format of `bytes`
  position anchor;                 // log position of the stream's event `version`
  uint64_t anchor_timestamp_ns = 0;  // that event's timestamp
  uint64_t saved_ns = 0;           // CLOCK_REALTIME at save
  std::span<const std::byte> bytes;
  uint64_t file = 0;               // snapshots/<file>.snap
  uint64_t offset = 0;             // of the record in that file
  const void* entry = nullptr;     // the store's own handle (mark_stale)
};

// One snapshot as listed (varve snapshot ls): the header only, body unread.
struct snapshot_info {
  std::string stream;              // raw id bytes
  bool stream_is_integer = false;
  stream_version version = 0;
  uint32_t schema_version = 0;
  position anchor;
  uint64_t saved_ns = 0;
  uint64_t bytes = 0;
  uint64_t file = 0;
  uint64_t offset = 0;
  uint64_t stream_as_u64() const {
    uint64_t v = 0;
    for (char c : stream) v = (v << 8) | static_cast<uint8_t>(c);
    return v;
  }
};

struct snapshot_verify_report {
  uint64_t files = 0;
  uint64_t snapshots = 0;          // records whose header and body both check
  uint64_t bytes = 0;              // body bytes checked
  std::vector<status> problems;    // each names file and offset; empty = intact
};

namespace detail {
struct snapshot_state;
}

// Thread safety: one writable store per log directory across processes (a
// lock on DIR/snapshots/snapshots.lock; a second one gets errc::locked);
// read-only stores need no lock. On one store, save() and flush() are called
// from one thread at a time; latest(), list() and load_aggregate() from any
// number of threads at once, concurrently with save(). save() looks up the
// event it anchors to with read_stream, so it runs on a thread where that is
// allowed (the log's writer thread, or any thread of a read-only log).
//
// The read path: a shared (reader) lock around one hash probe of the
// in-memory index, no allocation, no system call. A snapshot's body checksum
// is verified on its first access through latest() and the outcome cached, so
// later loads of it cost no hashing; a snapshot found damaged is reported once
// and skipped for good.
class snapshot_store {
 public:
  // The writable store of an open log (read-only or writable: snapshots can be
  // taken by a process that only reads the log). Creates DIR/snapshots/ if
  // needed, rebuilds the index from the record headers (bodies are not read),
  // and cuts an unfinished save at the end of the newest file.
  VARVE_API static result<std::unique_ptr<snapshot_store>> open(const event_log& log,
                                                      const snapshot_options& options = {});
  // A read-only store of the log in `log_dir`: no lock, no change to any file.
  // Sees snapshots saved later only after refresh().
  VARVE_API static result<std::unique_ptr<snapshot_store>> open_read_only(const std::string& log_dir,
                                                                const snapshot_options& options = {});
  VARVE_API ~snapshot_store();
  snapshot_store(const snapshot_store&) = delete;
  snapshot_store& operator=(const snapshot_store&) = delete;

  // Saves `bytes` as the state of `stream` at `version` (an event the stream
  // has now), in the user's format `schema_version`. Appends one record; never
  // rewrites one. The same version may be saved again: the newest save wins.
  VARVE_API status save(stream_id stream, stream_version version, uint32_t schema_version,
              std::span<const std::byte> bytes);
  // Makes every save so far durable (with sync_each_save off).
  VARVE_API status flush();

  // The newest snapshot of `stream` at or below `at_or_below` in
  // `schema_version` whose checksums verify; errc::not_found if none. Damaged
  // ones are reported to the observer and skipped. Does not look at the log:
  // load_aggregate checks the anchor.
  VARVE_API result<snapshot_view> latest(stream_id stream, stream_version at_or_below,
                               uint32_t schema_version) const;

  // Every indexed snapshot (of one stream when `stream` is given), by stream
  // then version. Headers only.
  VARVE_API std::vector<snapshot_info> list(std::optional<stream_id> stream = std::nullopt) const;

  // Drops superseded snapshots: keeps the newest keep_per_stream of each
  // stream and removes full files once enough of them is superseded, copying
  // what they still keep into the newest file first. Snapshots are derived
  // data (the log rebuilds any state), but nothing kept is ever lost: every
  // copy is verified against its checksum before it is written, and durable
  // (fdatasync) before the file it came from is removed, so a crash leaves at
  // worst two identical copies (the next compaction drops one). Views handed
  // out earlier stay valid (the old mappings are kept until the store goes).
  // Writable stores only; same thread rules as save().
  VARVE_API result<snapshot_compact_report> compact(const snapshot_compact_options& options = {});
  // Crypto-shredding (event_log::forget): deletes every snapshot of
  // `stream` saved at or before `saved_up_to_ns` (CLOCK_REALTIME; default
  // all). They leave the index at once (no load returns one), and each file
  // holding one is removed once its other snapshots are copied to the
  // newest file and synced, the writer's own file included (it is closed
  // and a new one begun). A file with damaged stretches is never removed
  // (its bytes are evidence): what it holds is counted in
  // left_in_damaged_files. A writable store also does this at open for the
  // streams the log's DIR/forgotten names, for the snapshots saved before
  // each forget, so a crash between the two forgets is finished then. Same
  // thread rules as save().
  VARVE_API result<snapshot_forget_report> forget(stream_id stream, uint64_t saved_up_to_ns = UINT64_MAX);

  // A read-only store: indexes what the writer saved since open/refresh.
  VARVE_API status refresh();

  // Snapshots found unusable so far (checksum, framing, anchor): for monitoring.
  VARVE_API uint64_t damaged_count() const;
  // Called by load_aggregate when a snapshot's anchor disagrees with the log
  // (a snapshot of another history): reported once, then skipped like damage.
  VARVE_API void mark_stale(const snapshot_view& v, const std::string& why) const;

  VARVE_API const std::string& dir() const;  // DIR/snapshots
  VARVE_API bool is_read_only() const;

 private:
  explicit snapshot_store(std::unique_ptr<detail::snapshot_state> s);
  std::unique_ptr<detail::snapshot_state> s_;
};

// Reads every snapshot file of the log in `log_dir` and checks every header
// and body (varve snapshot verify). Reads only; no lock.
VARVE_API result<snapshot_verify_report> verify_snapshots(const std::string& log_dir);

// What load_aggregate rebuilt.
template <class State>
struct loaded {
  State state{};
  stream_version version = 0;            // the stream's version the state reflects
  bool used_snapshot = false;
  stream_version snapshot_version = 0;   // when used_snapshot
  uint64_t events_applied = 0;           // events folded after the snapshot (or from 1)
  uint32_t snapshots_skipped = 0;        // newer candidates refused (anchor, decode)
  // Wall time spent reading and folding the events after the snapshot (or
  // from version 1): what the next load will pay again unless a snapshot is
  // taken now (snapshot_policy::max_fold_time).
  uint64_t fold_ns = 0;
};

namespace detail {
// from_snapshot may return State, std::optional<State> or result<State>.
template <class State, class R>
bool take_state(R&& r, State& out) {
  using T = std::remove_cvref_t<R>;
  if constexpr (std::is_same_v<T, State>) {
    out = std::forward<R>(r);
    return true;
  } else if constexpr (std::is_same_v<T, std::optional<State>>) {
    if (!r) return false;
    out = std::move(*r);
    return true;
  } else {
    static_assert(std::is_same_v<T, result<State>>,
                  "from_snapshot must return State, std::optional<State> or result<State>");
    if (!r.ok()) return false;
    out = std::move(r).value();
    return true;
  }
}
// fold may return void or status (a non-ok status stops the load).
template <class Fold, class State>
status fold_one(Fold& fold, State& s, const event_view& e) {
  if constexpr (std::is_void_v<std::invoke_result_t<Fold&, State&, const event_view&>>) {
    fold(s, e);
    return {};
  } else {
    return fold(s, e);
  }
}
}  // namespace detail

// One aggregate as of version `upto` (0 = none: `initial` is returned; a
// version past the newest means the newest): the newest usable snapshot of
// `stream` in `schema_version` at or below `upto`, then only the events after
// it up to `upto`, read through the per-aggregate index; with no usable
// snapshot, every event from version 1 folded into `initial`. A snapshot is
// used only if the log still holds the event it was taken at, at the same
// position with the same timestamp (so a snapshot of a history the log no
// longer has is refused) and from_snapshot accepts its bytes; otherwise the
// next older one is tried. The result equals a fold of versions 1..upto
// whenever from_snapshot(save's bytes) equals the state saved. For "as of a
// time" or "as of a log position", get `upto` from event_log::version_at_time
// or version_at.
//
// Called on a thread where log.read_stream is allowed (see event_log).
// Errors: only the log's (a record that fails validation, I/O) and the fold's.
template <class State, class FromSnapshot, class Fold>
result<loaded<State>> load_aggregate_at(const event_log& log, const snapshot_store& store,
                                        stream_id stream, stream_version upto, uint32_t schema_version,
                                        FromSnapshot&& from_snapshot, Fold&& fold, State initial = {}) {
  loaded<State> out;
  const stream_version newest = log.version_of(stream);
  upto = std::min(upto, newest);
  stream_version below = upto;
  event_view ev;
  // Stream lifecycle (varve/lifecycle.h): versions below the stream's floor
  // (a truncation, max_count) are hidden. A snapshot at floor - 1 or later
  // still brings the state forward (one below the floor is taken without its
  // anchor check: the floor was recorded once the log was durable past it);
  // with none, the hidden events' part of the state is gone: errc::removed,
  // never a state folded from the visible events alone.
  auto meta = log.stream_metadata_of(stream);
  if (!meta) return meta.error();
  stream_version floor = std::max<stream_version>(1, meta.value().truncate_before);
  if (meta.value().max_count != 0 && newest > meta.value().max_count)
    floor = std::max<stream_version>(floor, newest - meta.value().max_count + 1);
  auto hidden_error = [&](stream_version have) {
    return status(errc::removed, "stream '" + std::string(stream.bytes()) + "' hides its versions below " +
                                     std::to_string(floor) + " (truncated or limited) and " +
                                     (have ? "its newest snapshot at or below " + std::to_string(upto) +
                                                 " is at version " + std::to_string(have)
                                           : std::string("has no snapshot")) +
                                     ": the state cannot be rebuilt (save a snapshot before truncating)");
  };
  // Folds the reader's events (at most up to `upto`) into out.state.
  auto fold_rest = [&](stream_reader& rs) -> status {
    const auto t0 = std::chrono::steady_clock::now();
    struct timer {  // on every way out
      loaded<State>& o;
      std::chrono::steady_clock::time_point t0;
      ~timer() {
        o.fold_ns = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
      }
    } t{out, t0};
    for (;;) {
      auto more = rs.next(ev);
      if (!more) return more.error();
      if (!more.value()) return {};
      if (status st = detail::fold_one(fold, out.state, ev); !st) return st;
      out.version = ev.version;
      ++out.events_applied;
    }
  };
  while (below > 0) {
    auto snap = store.latest(stream, below, schema_version);
    if (!snap) {
      if (snap.error().code() == errc::not_found) break;
      return snap.error();
    }
    const snapshot_view& sv = snap.value();
    // Its own event hidden by the floor: taken without the anchor check, if
    // nothing between it and the first visible event is hidden too.
    const bool anchor_hidden = sv.version < floor;
    if (anchor_hidden && sv.version < upto && sv.version + 1 < floor) return hidden_error(sv.version);
    std::optional<stream_reader> rs;
    if (!anchor_hidden) {
      // Start at the snapshot's own event: its position must be the anchor.
      auto r = log.read_stream(stream, sv.version, read_direction::forward, upto - sv.version + 1);
      if (!r) return r.error();
      rs.emplace(std::move(r.value()));
      auto first = rs->next(ev);
      if (!first) return first.error();
      if (!first.value() || ev.version != sv.version || ev.position != sv.anchor ||
          ev.timestamp_ns != sv.anchor_timestamp_ns) {
        store.mark_stale(sv, first.value() ? "the log's event at this version is another one (the "
                                             "log was recovered shorter and grew again?)"
                                           : "the stream has no event at this version");
        ++out.snapshots_skipped;
        below = sv.version - 1;
        continue;
      }
    }
    if (!detail::take_state(from_snapshot(sv.bytes), out.state)) {
      ++out.snapshots_skipped;
      below = sv.version - 1;
      continue;
    }
    out.used_snapshot = true;
    out.snapshot_version = out.version = sv.version;
    if (anchor_hidden) {
      if (upto == sv.version) return out;
      auto r = log.read_stream(stream, floor, read_direction::forward, upto - sv.version);
      if (!r) return r.error();
      rs.emplace(std::move(r.value()));
    }
    if (status st = fold_rest(*rs); !st) return st;
    return out;
  }
  out.state = std::move(initial);
  if (upto == 0) return out;
  if (floor > 1) return hidden_error(0);
  auto rs = log.read_stream(stream, 1, read_direction::forward, upto);
  if (!rs) return rs.error();
  if (status st = fold_rest(*rs); !st) return st;
  return out;
}

// One aggregate in one call, at its newest version: load_aggregate_at(...,
// log.version_of(stream), ...).
template <class State, class FromSnapshot, class Fold>
result<loaded<State>> load_aggregate(const event_log& log, const snapshot_store& store,
                                     stream_id stream, uint32_t schema_version,
                                     FromSnapshot&& from_snapshot, Fold&& fold,
                                     State initial = {}) {
  return load_aggregate_at<State>(log, store, stream, kLatestVersion, schema_version,
                                  std::forward<FromSnapshot>(from_snapshot), std::forward<Fold>(fold),
                                  std::move(initial));
}

// When to take a snapshot. By count: after an append that moved the stream
// from `before` to `after`, serialize() is called (and its bytes saved at
// `after`) when a multiple of N lies in (before, after] (maybe_snapshot). By
// cost: after a load whose reading and folding of the events past the last
// snapshot took max_fold_time or longer, the state just loaded is saved at
// its version (maybe_snapshot_after_load), so the next load starts there.
// The two combine: a stream with cheap events is snapshotted by count, one
// whose fold is slow (big events, expensive handlers) as soon as it hurts.
struct snapshot_policy {
  uint64_t every_n_events = 100;  // 0: never
  // 0: off. The event-sourcing literature's rule of thumb is about 10 ms.
  std::chrono::nanoseconds max_fold_time{0};

  template <class State>
  bool due_after_load(const loaded<State>& l) const {
    return max_fold_time.count() > 0 && l.events_applied > 0 &&
           l.fold_ns >= static_cast<uint64_t>(max_fold_time.count());
  }
  // serialize: (const State&) -> a contiguous container of bytes or chars.
  // Returns whether a snapshot was saved (at l.version).
  template <class State, class Serialize>
  result<bool> maybe_snapshot_after_load(snapshot_store& store, stream_id stream, const loaded<State>& l,
                                         uint32_t schema_version, Serialize&& serialize) const {
    if (!due_after_load(l)) return false;
    const auto bytes = serialize(l.state);
    if (status s = store.save(stream, l.version, schema_version, std::as_bytes(std::span(bytes))); !s)
      return s;
    return true;
  }

  bool due(stream_version before, stream_version after) const {
    return every_n_events != 0 && after > before && after / every_n_events > before / every_n_events;
  }
  // serialize: () -> a contiguous container of bytes or chars (std::string,
  // std::vector<std::byte>, ...). Returns whether a snapshot was saved.
  template <class Serialize>
  result<bool> maybe_snapshot(snapshot_store& store, stream_id stream, stream_version before,
                              stream_version after, uint32_t schema_version,
                              Serialize&& serialize) const {
    if (!due(before, after)) return false;
    const auto bytes = serialize();
    if (status s = store.save(stream, after, schema_version, std::as_bytes(std::span(bytes))); !s)
      return s;
    return true;
  }
};

}  // namespace varve
