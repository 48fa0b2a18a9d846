// What the three chunk_reader backends share: the plan of which bytes of which
// segment lie in [from, to), and the loop that validates the records of a run
// of bytes in memory. Not public API.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <functional>
#include <string>
#include <vector>

#include "engine/io/chunk_reader.h"
#include "base/coding.h"
#include "base/record_decode.h"
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
  bool frame_only = false;  // chunk_reader_options::frame_only
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

status past_end(const segment_view& sv, uint64_t off, uint64_t len);

// The record loop: validates records from segment offset `off`, with the
// segment's bytes [mem_off, mem_end) at `mem`, and calls on_event(offset)
// for each event - decoded into `v` and verified, or with
// sv.frame_only only framed (`v` untouched). on_event returns false to stop
// after that event (run_stop::full). Inlined into its callers: the replay's
// owners verify and route each event in the same pass as the walk.
// kFullView = false: `v` gets only position, sequence, stream and
// record_bytes of each event (record::decode_inline), the validation is the same.
template <bool kFullView = true, class OnEvent>
[[gnu::always_inline]] inline run_out walk_records(const segment_view& sv, const std::byte* mem,
                                                   uint64_t mem_off, uint64_t mem_end, uint64_t& off,
                                                   uint64_t target_end, sequence_check& seq,
                                                   event_view& v, OnEvent&& on_event) {
  run_out r;
  r.end = off;
  bool more = true;
  auto fail = [&](status s) {
    r.stop = run_stop::error;
    r.err = std::move(s);
    return r;
  };
  // An event that framed (and, unless frame-only, validated): the sequence
  // moves on, the caller gets it, the walk steps past it.
  // Inlined by force: called from two places, GCC kept it out of line and
  // paid ~22 instructions of register saves per event (callgrind).
  auto take = [&](uint64_t sequence, uint32_t len) __attribute__((always_inline)) {
    seq.known = true;
    seq.next = sequence + 1;
    if (r.n_events++ == 0) r.first_sequence = sequence;
    more = on_event(off);
    off += len;
    r.end = off;
  };
  // Below `inside` a record's first 16 bytes are in memory and no stop (hi,
  // target_end) is reached: a record that is all in memory there goes
  // straight to the decode, past the edge cases below, which it cannot hit
  // (~10 instructions per record fewer in the replay's walk, callgrind:
  // BENCHMARKS.md section 27). The checks it skips are the ones that only
  // the last records of a window or a segment need.
  const uint64_t inside =
      std::min({target_end, sv.is_last ? sv.hi : target_end, mem_end >= 16 ? mem_end - 16 : 0});
  while (true) {
    const uint64_t seg_left = sv.records_end - off;
    const std::byte* p = mem + (off - mem_off);
    const bool plain = !sv.frame_only && off < inside && more && coding::get_u32(p + 8) <= mem_end - off;
    if (!plain) [[unlikely]] {
      if (sv.is_last && off >= sv.hi) {
        r.stop = run_stop::limit;
        return r;
      }
      if (off >= target_end || !more) {
        r.stop = run_stop::full;
        return r;
      }
      const uint64_t have = mem_end - off;
      // More bytes can only come while memory stops short of hi.
      const bool can_grow = mem_end < sv.hi;
      if (have < 16 && have < seg_left) {
        if (!can_grow) return fail(past_end(sv, off, 0));
        r.stop = run_stop::need_more;
        r.need_len = 0;
        return r;
      }
      if (have >= 16) {
        const uint32_t len = coding::get_u32(p + 8);
        const bool plausible = len % 8 == 0 && len >= record::kSegmentEndSize && len <= seg_left;
        // An implausible length is left to decode(), which names what is wrong
        // without reading at it.
        if (plausible && len > have) {
          if (!can_grow) return fail(past_end(sv, off, len));
          r.stop = run_stop::need_more;
          r.need_len = len;
          return r;
        }
        // Framing an event: what finds the next record and keeps the log
        // dense. Everything else about it (checksum, fields) is the caller's
        // to check before use (chunk_reader_options::frame_only). Anything
        // that does not look like a well-placed event in sequence takes the
        // full decode below (checksum included), which names what is wrong.
        if (sv.frame_only && plausible && coding::get_u8(p + 12) == record::kEvent &&
            len >= record::kHeaderSize && coding::get_u64(p + 16) == sv.base + off &&
            (!seq.known || coding::get_u64(p + 24) == seq.next)) {
          take(coding::get_u64(p + 24), len);
          continue;
        }
      }
    }
    const record::decoded d = record::decode_inline<false, kFullView>(p, seg_left, sv.base + off, sv.verify, v);
    switch (d.outcome) {
      case record::decode_outcome::event:
        if (seq.known && v.sequence.value != seq.next)
          return fail(status(errc::corruption, *sv.path + " offset " + std::to_string(off) +
                                                   ": sequence " +
                                                   std::to_string(v.sequence.value) +
                                                   ", expected " + std::to_string(seq.next)));
        take(v.sequence.value, d.length);
        continue;
      case record::decode_outcome::skip:
        off += d.length;
        r.end = off;
        continue;
      case record::decode_outcome::hole:
        // A repair's hole: the events it stands for are gone, their sequence
        // numbers with them; the next event continues after them.
        if (seq.known && d.hole_first != seq.next)
          return fail(status(errc::corruption, *sv.path + " offset " + std::to_string(off) +
                                                   ": hole starts at sequence " +
                                                   std::to_string(d.hole_first) + ", expected " +
                                                   std::to_string(seq.next)));
        seq.known = true;
        seq.next = d.hole_first + d.hole_count;
        off += d.length;
        r.end = off;
        continue;
      case record::decode_outcome::segment_end:
        r.end = off + d.length;
        r.stop = run_stop::marker;
        return r;
      case record::decode_outcome::unwritten:
        return fail(status(errc::corruption, *sv.path + " offset " + std::to_string(off) +
                                                 ": committed record is missing (zero header)"));
      case record::decode_outcome::invalid:
        return fail(status(errc::corruption,
                           *sv.path + " offset " + std::to_string(off) + ": " + d.why));
    }
  }
}

// Validates records from segment offset `off`, with the segment's bytes
// [mem_off, mem_end) at `mem`, recording each event's offset from `chunk_off`
// in `events`. Never reads a byte outside [off, mem_end) and never trusts a
// length before decode() has bounded it by the segment.
run_out run_records(const segment_view& sv, const std::byte* mem, uint64_t mem_off,
                    uint64_t mem_end, uint64_t& off, uint64_t chunk_off, uint64_t target_end,
                    uint32_t* events, uint32_t events_cap, sequence_check& seq);

// Parallel walks (the replay scheduler, mmap): [from, to) cut into pieces
// that each start on a record boundary known without walking the records
// before it: a segment's first record, or an offset the sealed segment's
// index samples (every kTimeStride-th event). Several threads can then walk
// pieces at once, each in the mapping. A piece never spans segments.
struct piece {
  uint64_t segment = 0;
  uint64_t from = 0, to = 0;  // positions
  // Where a reader stands after it: `to`, or past the last piece of a
  // segment the next segment's first record (what chunk_reader::where says).
  uint64_t next = 0;
  // `to` is an index sample: the records must end exactly there (they
  // always do unless the index and the records disagree: damage).
  bool exact_end = false;
  bool to_is_committed = false;  // `to` is the committed end
};
// Pieces of about `target_bytes`; segments `skip_segment` rules out are left
// out and counted. A segment without a usable index (the active one) is one
// piece, unless `cut_unindexed`: then it is cut where a serial walk that
// frames its records finds them (worth it only when several workers share
// the pieces).
result<std::vector<piece>> plan_pieces(detail::shared_log& log, position from, position to,
                                       uint64_t target_bytes,
                                       const std::function<bool(uint64_t)>& skip_segment,
                                       uint64_t& segments_skipped, bool cut_unindexed = false);

// Walks a piece as the mmap chunk reader does, every record validated (the
// checksum too), a window at a time, handing each event to the caller
// decoded: one pass over the bytes. The mapping outlives the caller's use of
// the records' bytes (segments stay mapped while the log is open).
class piece_framer {
 public:
  // Maps the piece's segment (errors name it). `advise`: ask the kernel
  // for the pages ahead of the walk (for a range not in the page cache).
  status start(detail::shared_log& log, const piece& p, bool advise = true);
  // Walks about `bytes` more: on_event(position) for each event, decoded
  // into `v`, false to stop after it. True while more
  // of the piece remains, false once it is done. A record that fails validation: the events
  // before it have been handed out, the result is the error naming the
  // segment file and offset, and bad() is its position.
  // kFullView = false: only the fields walk_records<false> fills.
  template <bool kFullView = true, class OnEvent>
  result<bool> next(uint64_t bytes, event_view& v, OnEvent&& on_event) {
    if (done_) return false;
    const uint64_t start = off_;
    const uint64_t target = std::min(hi_, start + std::max<uint64_t>(bytes, kPage));
    advise(target);
    segment_view sv{&path_, base_, records_end_, hi_, true, to_is_committed_, verify_, false};
    sequence_check seq{seq_known_, seq_next_};
    run_out r = walk_records<kFullView>(sv, mem_, 0, hi_, off_, target, seq, v,
                             [&](uint64_t at) __attribute__((always_inline)) { return on_event(base_ + at); });
    seq_known_ = seq.known;
    seq_next_ = seq.next;
    return finish(r);
  }
  uint64_t bad() const { return bad_; }
  // The byte at `position` (in the piece's segment mapping).
  const std::byte* data_at(uint64_t position) const { return mem_ + (position - base_); }
  // The sequence after the records walked so far (events and holes), when
  // there were any: for the density check where two pieces meet.
  bool sequence_known() const { return seq_known_; }
  uint64_t next_sequence() const { return seq_next_; }

 private:
  void advise(uint64_t target);
  result<bool> finish(const run_out& r);

  detail::shared_log* log_ = nullptr;
  const std::byte* mem_ = nullptr;
  std::string path_;
  uint64_t base_ = 0, records_end_ = 0, off_ = 0, hi_ = 0, advised_ = 0, bad_ = 0;
  uint64_t segment_ = 0;
  bool exact_end_ = false, to_is_committed_ = false, verify_ = true, advise_ = true;
  bool done_ = false, seq_known_ = false;
  uint64_t seq_next_ = 0;
};

// Pages of [p, p + len) in the page cache, by mincore on a mapping never
// touched (p page-aligned, len at most kProbeBytes); 0 when mincore fails.
constexpr uint64_t kProbeBytes = 64 * 1024;
uint64_t resident_pages(const void* p, uint64_t len);

// The share of [plan.from, plan.to)'s pages in the page cache, from mincore
// of up to 64 probes of 64 KiB spread over the range (archived segments
// count as cold); 1 for an empty range.
double resident_fraction(detail::shared_log& log, const range_plan& plan);
// What `automatic` means for a sequential read of `plan` (requested is
// automatic and VARVE_IO unset): the mapping when at least 90 % of the range
// is resident (no copy, nothing to wait for), else io_uring (pread where it
// is unavailable). Anything else resolves as resolve_io_backend says.
// `resident` (when given) says whether the chosen mapping reads a range at
// least 90 % resident (probed for a mapping asked for by name too): such a
// walk asks for no read-ahead (MADV_WILLNEED walks the page cache for pages
// that are all there).
result<io_backend> choose_backend(detail::shared_log& log, const range_plan& plan,
                                  io_backend requested, bool* resident = nullptr);

// Checks the 64 header bytes of segment `index` as read from its file.
status check_header(const detail::shared_log& log, const std::byte* hdr, uint64_t index,
                    const std::string& path);

// Tells about a fallback once per process.
void say_fallback(int err);

// Backends (their own files).
// advise: read-ahead hints as the walk goes (false for a resident range).
result<std::unique_ptr<chunk_reader>> open_mmap(std::shared_ptr<detail::shared_log> log,
                                                const range_plan& plan,
                                                const chunk_reader_options& o, bool advise);
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
