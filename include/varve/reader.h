// log_reader: a zero-copy cursor over committed events in global order.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "varve/event.h"
#include "varve/event_filter.h"
#include "varve/export.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve {

class upcasters;
namespace detail {
struct shared_log;
class lifecycle_view;
}

// Reads committed events in log order, in place, validating each record
// (bounds, checksum) before handing out a view. Never takes a lock and never
// blocks the writer; any number may run concurrently in any threads. A reader
// is used by one thread at a time. Views stay valid while the log is open.
class log_reader {
 public:
  log_reader() = default;
  explicit log_reader(std::shared_ptr<detail::shared_log> log, position from);
  // Hands out only the events `filter` wants, skipping the sealed segments
  // whose index proves they hold none (event_log::read(from, filter)).
  log_reader(std::shared_ptr<detail::shared_log> log, position from, event_filter filter);

  // Fills `out` with the next committed event and returns true; returns false
  // at the end of what is committed now (not an error: call again to follow the
  // writer); returns errc::corruption naming file and offset for a record that
  // fails validation (the cursor stays put).
  VARVE_API result<bool> next(event_view& out);

  // The bulk form of next(): fills out[0, n) with the events next() would
  // hand out and returns n: at least 1 where next() would return an event, 0
  // where it would return false (the end of what is committed now; call again
  // to follow the writer). Each event is validated exactly as
  // next() validates it; a scan saves the call and its cursor bookkeeping per
  // event (docs/BENCHMARKS.md section 28). A record that fails validation
  // ends the batch before it: the events before it are returned, and the
  // next call returns the error (the cursor stays on that record). The views
  // stay valid like next()'s, with one exception: an event whose payload the
  // reader may have upcast or decrypted (into its own buffer, valid until the
  // reader's next call) is the last of its batch. An empty span returns 0.
  VARVE_API result<size_t> next_batch(std::span<event_view> out);

  // The lazy bulk form: the same events, each handed out as an event_ref
  // whose fields are read from its record when asked (include/varve/event.h),
  // for scans that want the payload and a field or two (about a quarter of
  // the stores per event: docs/BENCHMARKS.md section 31). Validation, the
  // errors, the cursor and the return value are next_batch's above. A
  // filtered reader, and an event whose payload the reader upcast or
  // decrypted, go through next() (such an event, handed out from the
  // reader's own view, is the last of its batch; its ref is valid until the
  // reader's next call).
  VARVE_API result<size_t> next_batch(std::span<event_ref> out);

  // Hands events out as stored, not upcast (the log's upcasters are ignored
  // by this reader from now on). An encrypted payload is still decrypted.
  void without_upcasting() { up_.reset(); }
  // Position of the next record this reader will return (or the end of log).
  position where() const { return pos_; }
  void seek(position p) {
    pos_ = p;
    limit_ = 0;  // the next call checks the new position
    seq_known_ = false;  // and takes the sequence there as it finds it
  }
  // The committed end of the log as this reader sees it now (acquire load).
  VARVE_API position committed() const;

 private:
  result<bool> next_slow(event_view& out);
  // The error for a record at `off` of segment `seg` whose sequence (an
  // event's, a hole's first) is `found`, not seq_next_.
  status out_of_sequence(const void* seg, uint64_t off, uint64_t found) const;
  // Hides, decrypts and upcasts `out`: false when stream lifecycle hides
  // it (the caller moves on); on failure the cursor stays on its record.
  result<bool> finish(event_view& out);
  // Takes the log's current stream-lifecycle view (at slow steps).
  status refresh_lifecycle();

  std::shared_ptr<detail::shared_log> log_;
  position pos_;
  bool verify_ = true;
  std::shared_ptr<const event_filter> filter_;  // null: every event
  // The segment the cursor is in, so a scan looks the table up once per
  // segment rather than once per record.
  const void* seg_ = nullptr;
  uint64_t seg_index_ = ~uint64_t{0};
  // The fast path's window: records at positions [pos_, limit_) are committed
  // and lie in the mapping seg_data_ (the segment at seg_base_), so next()
  // decodes them without loading the commit position or checking the
  // segment again. limit_ = 0: no window (next_slow decides).
  const std::byte* seg_data_ = nullptr;
  uint64_t seg_base_ = 0;
  uint64_t seg_records_end_ = 0;
  uint64_t limit_ = 0;
  // The sequence the next event must carry (FORMAT.md: dense, no gaps; a
  // hole stands for the numbers it removed), known once the reader has read
  // an event or a hole since it was placed. Inside the window it is always
  // known: next_slow opens a window only on an event.
  uint64_t seq_next_ = 0;
  bool seq_known_ = false;
  // The log's upcasters when the reader was made (null: none), and the
  // buffer upcast payloads are handed out from. After the fields next()
  // touches on every event, which then share cache lines.
  std::shared_ptr<const upcasters> up_;
  std::string up_buf_;
  std::string dec_buf_;  // a decrypted payload (a log with a master key)
  event_view ref_view_;  // next_batch(event_ref)'s event decoded through next()
  // Stream lifecycle (varve/lifecycle.h): the view this reader applies,
  // taken at slow steps; life_on_ is set only when it holds any metadata,
  // so a log without any pays one test per event.
  std::shared_ptr<const detail::lifecycle_view> life_;
  const detail::lifecycle_view* life_on_ = nullptr;
  uint64_t life_gen_ = ~uint64_t{0};
  uint64_t life_now_ns_ = 0;  // max_age's "now", taken with the view
};

}  // namespace varve
