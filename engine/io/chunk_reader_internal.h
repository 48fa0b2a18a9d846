// What the three chunk_reader backends share: the plan of which bytes of which
// segment lie in [from, to), and the loop that validates the records of a run
// of bytes in memory. Not public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/io/chunk_reader.h"
#include "base/segment_format.h"
#include "engine/shared_log.h"

namespace varve::io_detail {

// Every event record is at least align8(72 + 1) bytes, so a run of n bytes
// holds at most n / 80 events: the size of the offset arrays allocated at open.
inline constexpr uint32_t kMinEventRecord = 80;
inline constexpr uint32_t kPage = 4096;

inline uint64_t round_up(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

// Which bytes of each segment [from, to) covers. Segment s holds positions
// [s << l2, (s + 1) << l2); its records are read in [lo(s), hi(s)).
struct range_plan {
  uint8_t l2 = 0;
  uint64_t records_end = 0;  // capacity - footer
  uint64_t from = 0;         // moved past a segment header to the first record
  uint64_t to = 0;           // clamped to the committed end
  uint64_t first_seg = 0;
  uint64_t last_seg = 0;     // the segment holding `to`; may contribute nothing
  bool to_is_committed = false;  // `to` was clamped: a record crossing it is corruption

  uint64_t base(uint64_t s) const { return s << l2; }
  uint64_t lo(uint64_t s) const {
    return s == first_seg ? (from & ((uint64_t{1} << l2) - 1)) : segment_format::kHeaderSize;
  }
  uint64_t hi(uint64_t s) const {
    return s == last_seg ? (to & ((uint64_t{1} << l2) - 1)) : records_end;
  }
  bool empty(uint64_t s) const { return s > last_seg || lo(s) >= hi(s); }
  // skip_segment is only offered segments whose every record lies in range.
  bool whole(uint64_t s) const { return from <= base(s) + segment_format::kHeaderSize && to >= base(s + 1); }
  // Where reading resumes once segment s is done (its marker or its skip).
  uint64_t after(uint64_t s) const {
    for (uint64_t n = s + 1; n <= last_seg; ++n)
      if (!empty(n)) return base(n) + lo(n);
    return to;
  }
};

// Validates [from, to) against the log and clamps `to`; the first error a
// caller can get from open().
result<range_plan> make_plan(detail::shared_log& log, position from, position to);

std::string segment_path(const detail::shared_log& log, uint64_t index);

// One segment as the record loop sees it.
struct segment_view {
  const std::string* path = nullptr;  // for messages
  uint64_t base = 0;                  // position of offset 0
  uint64_t records_end = 0;
  uint64_t hi = 0;                    // stop here (to's offset in the last segment)
  bool is_last = false;               // hi is `to`, not the end of the record area
  bool to_is_committed = false;
  bool verify = true;
};

// Dense sequences within a segment, and across segments read one after the other.
struct sequence_check {
  bool known = false;
  uint64_t next = 0;
};

enum class run_stop : uint8_t {
  need_more,  // the record at `off` is not all in memory; need_len its length (0 = unknown)
  marker,     // a segment-end record at `off`; `off` is left on it
  limit,      // reached `hi` of the last segment
  full,       // reached target_end, or the offsets array is full
  error,      // `err` says what and where; `off` is left on the record
};

struct run_out {
  run_stop stop = run_stop::full;
  uint32_t need_len = 0;
  uint32_t n_events = 0;
  uint64_t first_sequence = 0;
  uint64_t end = 0;  // segment offset one past the last record validated (incl. a marker)
  status err;
};

// Validates records from segment offset `off`, with the segment's bytes
// [mem_off, mem_end) at `mem`, recording each event's offset from `chunk_off`
// in `events`. Never reads a byte outside [off, mem_end) and never trusts a
// length before decode() has bounded it by the segment.
run_out run_records(const segment_view& sv, const std::byte* mem, uint64_t mem_off,
                    uint64_t mem_end, uint64_t& off, uint64_t chunk_off, uint64_t target_end,
                    uint32_t* events, uint32_t events_cap, sequence_check& seq);

// Checks the 64 header bytes of segment `index` as read from its file.
status check_header(const detail::shared_log& log, const std::byte* hdr, uint64_t index,
                    const std::string& path);

// Tells about a fallback once per process.
void say_fallback(int err);

// Backends (their own files).
result<std::unique_ptr<chunk_reader>> open_mmap(std::shared_ptr<detail::shared_log> log,
                                                const range_plan& plan,
                                                const chunk_reader_options& o);
// uring: false = pread. Fails with errc::io_error only when io_uring cannot be
// set up (the caller then falls back to pread).
result<std::unique_ptr<chunk_reader>> open_buffered(std::shared_ptr<detail::shared_log> log,
                                                    const range_plan& plan,
                                                    const chunk_reader_options& o, bool uring,
                                                    int* uring_errno);

// Test hook: VARVE_IO_URING_FAIL=1 makes io_uring look unavailable (ENOSYS).
bool uring_forced_unavailable();
// 0 when an io_uring ring can be set up in this process, else the errno that
// makes `automatic` and `uring` fall back to pread (ENOSYS under the hook).
// Tests ask it to tell a real uring run from a silent fallback.
int uring_probe();
// Test hook: the "said once" flag of say_fallback, so a test can see the line.
void reset_fallback_notice_for_test();

}  // namespace varve::io_detail
