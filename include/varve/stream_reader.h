// stream_reader: one aggregate's events in version order, forward or
// backward, zero-copy, through the per-aggregate index.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "varve/event.h"
#include "varve/export.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve {

class upcasters;
namespace detail {
struct shared_log;
}

enum class read_direction : uint8_t { forward, backward };

// Obtained from event_log::read_stream. Sees the stream as it stood when the
// read began (events appended later are not returned). How it finds them:
// from the stream's newest event it hops back one segment at a time through
// the segment index files (index/<segment>.sidx), which give each stream's
// run of versions and record offsets in a sealed segment; in the unsealed
// tail (or where an index file is missing or damaged) it follows the
// records' back-chain. Every record it returns is validated (bounds,
// checksum, stream id, version) before the view is handed out.
// Cost: O(segments spanned + events returned); no scan of the log.
// Used by one thread at a time; any thread, concurrently with the writer.
class stream_reader {
 public:
  stream_reader() = default;

  // Fills `out` with the next event; false once the requested range is done;
  // errc::corruption naming file and offset for a record that fails validation.
  VARVE_API result<bool> next(event_view& out);

  // Hands events out as stored, not upcast (the log's upcasters are ignored
  // by this reader from now on). An encrypted payload is still decrypted.
  void without_upcasting() { up_.reset(); }
  // The stream's version when the read began (0: the stream does not exist).
  stream_version stream_version_at_start() const { return head_version_; }

 private:
  friend class event_log;
  struct run {
    uint64_t segment;
    uint64_t first_version;
    uint32_t count;
    const uint32_t* offsets;  // from an index file, or null: positions_ from `explicit_at`
    size_t explicit_at;
  };
  // `hide`: apply the stream's lifecycle metadata (varve/lifecycle.h); off
  // for the engine's own walks (forget, version_at) that need every record.
  status init(std::shared_ptr<detail::shared_log> log, std::string stream,
              stream_version head_version, uint64_t head_position, stream_version from,
              read_direction dir, uint64_t max_count, bool hide = true);
  // Adds the run of the segment holding version walk_version_ (at walk_pos_).
  status descend();
  // next() without max_age's skipping.
  result<bool> next_stored(event_view& out);
  uint64_t position_of(const run& r, uint64_t version) const;
  // Starts loading the record of `version` (forward reads: the records are
  // independent, so their cache misses can overlap instead of queueing).
  void prefetch(uint64_t version) const;

  std::shared_ptr<detail::shared_log> log_;
  std::string stream_;
  read_direction dir_ = read_direction::forward;
  stream_version head_version_ = 0;
  uint64_t remaining_ = 0;
  uint64_t next_version_ = 0;  // the version next() returns next
  // The walk down the stream: its newest event not yet covered by a run.
  uint64_t walk_pos_ = ~uint64_t{0};
  uint64_t walk_version_ = 0;
  std::vector<run> runs_;
  std::vector<uint64_t> positions_;  // back-chain runs, newest first
  size_t run_ = 0;                   // the run next() reads from
  // The log's upcasters when the read began (null: none) and the buffer
  // upcast payloads are handed out from.
  std::shared_ptr<const upcasters> up_;
  std::string up_buf_;
  std::string dec_buf_;  // a decrypted payload (a log with a master key)
  bool raw_ = false;     // event_log::forget: payloads as stored, sealed or not
  // Stream lifecycle: versions below floor_ are hidden (the walk never goes
  // below it), and events older than max_age_cutoff_ns_ are skipped.
  stream_version floor_ = 1;
  uint64_t max_age_ns_ = 0;
  uint64_t now_ns_ = 0;
};

}  // namespace varve
