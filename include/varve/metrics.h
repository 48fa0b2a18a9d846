// Operational counters of a log, readable from any process: the writer
// keeps them in the control block (DIR/varve.ctl, FORMAT.md section 6, words
// 1024-1535), so `varve stat`, `varve metrics` (Prometheus text) or a
// sidecar read them without the writer lock and without disturbing it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "varve/export.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve {

// Sync latency histogram: bucket i counts syncs that took less than 2^i µs
// (and at least 2^(i-1) µs); the last bucket counts everything slower.
inline constexpr int kSyncBuckets = 24;

// How far a reader (a named subscription, or one partition of a consumer
// group) is behind the log's committed end.
struct consumer_lag {
  enum class kind : uint8_t { subscription, group };
  kind what = kind::subscription;
  std::string name;            // subscription or group name
  int64_t partition = -1;      // group partition; -1 for a subscription
  position at;                 // its saved / committed position
  uint64_t lag_bytes = 0;      // committed end - at
  uint64_t lag_events = 0;     // events from `at` to the committed end
  bool lag_events_known = true;  // false when the event at `at` could not be read (see `problem`)
  std::string problem;         // why a figure is missing (a damaged file, a removed position)
};

struct log_metrics {
  // --- watermarks, now ---
  position committed;
  position durable;
  uint64_t next_sequence = 0;      // = events ever appended
  // Where the log starts (retention): its first record, and the sequence
  // of the event there (both 0 while nothing was removed).
  position start;
  uint64_t first_sequence = 0;
  // --- the writer session the counters belong to: the live one, or the last one ---
  bool writer_alive = false;
  uint64_t writer_pid = 0;         // 0 once it closed cleanly
  bool counters_present = false;   // false for a control block written before counters existed
  uint64_t session_start_ns = 0;   // CLOCK_REALTIME when the session opened the log
  uint64_t open_ns = 0;            // how long that open took (recovery included)
  // Since the session opened (counters; a new session starts them at 0).
  uint64_t append_calls = 0;       // successful append() calls (a batch counts once)
  uint64_t append_events = 0;      // events they wrote
  uint64_t append_bytes = 0;       // log bytes they took (records, padding, segment-end records)
  uint64_t append_conflicts = 0;   // refused: wrong expected version
  uint64_t append_refusals = 0;    // refused otherwise (invalid, too large, failed log)
  uint64_t rollovers = 0;
  uint64_t rollovers_that_waited = 0;   // the next segment was not prepared yet
  uint64_t longest_rollover_wait_ns = 0;
  uint64_t longest_seal_wait_ns = 0;    // the writer waited for room in the seal queue
  uint64_t segments_sealed = 0;
  uint64_t syncs = 0;              // msync / fdatasync of log data, the control block's included
  uint64_t sync_failures = 0;
  uint64_t sync_bytes = 0;         // bytes of the ranges synced (whole-file syncs count 0)
  uint64_t sync_ns_total = 0;
  uint64_t longest_sync_ns = 0;
  std::array<uint64_t, kSyncBuckets> sync_latency{};  // see kSyncBuckets
  // What recovery (at this session's open) and the background checks did,
  // by recovery_action::kind, and the bytes moved to lost+found/.
  uint64_t recovery_cut = 0;
  uint64_t recovery_set_aside = 0;
  uint64_t recovery_removed_empty = 0;
  uint64_t recovery_holes = 0;
  uint64_t recovery_rebuilt = 0;
  uint64_t recovery_notes = 0;
  uint64_t recovery_bytes_set_aside = 0;
  // --- filled by read_metrics() only ---
  uint64_t segments = 0;
  uint64_t bytes_on_disk = 0;      // every file of the directory, as allocated
  std::vector<consumer_lag> consumers;
};

struct metrics_options {
  bool consumers = true;   // read named subscriptions' and consumer groups' positions
  bool disk = true;        // list the directory for segments and bytes on disk
};

// Reads a log's metrics from another process (or this one), without the
// writer lock and changing nothing. Errors: not_found (no log), corruption
// naming the file (a control block that is not this log's). Problems with a
// single subscription or group file are reported in its consumer_lag.
VARVE_API result<log_metrics> read_metrics(const std::string& dir, const metrics_options& o = {});

class event_log;

// How many events a consumer whose saved position is `at` has yet to read:
// the log's next sequence number less that of the first event at or after
// `at` (0 at or past the committed end). One record read. Errors: the
// reader's, when the record at `at` does not validate.
VARVE_API result<uint64_t> events_behind(const event_log& log, position at);

// The Prometheus text exposition format (version 0.0.4) of `m`, every
// sample labelled log="<log_label>" (escaped as the format requires), for
// node_exporter's textfile collector or a scrape endpoint.
VARVE_API std::string prometheus_text(const log_metrics& m, std::string_view log_label);

}  // namespace varve
