#include <algorithm>

#include "base/record_decode.h"
#include "engine/lifecycle/stream_lifecycle.h"
#include "engine/segment_filter.h"
#include "engine/shared_log.h"
#include "varve/reader.h"

namespace varve {

log_reader::log_reader(std::shared_ptr<detail::shared_log> log, position from)
    : log_(std::move(log)), pos_(from), verify_(log_ && log_->verify_checksums) {
  if (log_) up_ = log_->upcasters_now();
}

log_reader::log_reader(std::shared_ptr<detail::shared_log> log, position from, event_filter filter)
    : log_reader(std::move(log), from) {
  if (!filter.empty()) filter_ = std::make_shared<const event_filter>(std::move(filter));
}

position log_reader::committed() const { return position{log_ ? log_->committed() : 0}; }

// The scan loop's per-record work is here: one inlined decode (framing, the
// checksum, the fields) of a record known to be committed and mapped. The
// commit position, the segment table and the alignment checks are paid once
// per window, in next_slow, not once per record.
result<bool> log_reader::next(event_view& out) {
  for (;;) {
    if (pos_.value < limit_) [[likely]] {
      const uint64_t off = pos_.value - seg_base_;
      const record::decoded d =
          record::decode_inline(seg_data_ + off, seg_records_end_ - off, pos_.value, verify_, out);
      // An event out of sequence is not this path's: next_slow decodes it
      // again and names it.
      if (d.outcome == record::decode_outcome::event && out.sequence.value == seq_next_) [[likely]] {
        pos_.value += d.length;
        ++seq_next_;
        if (!filter_ || filter_->matches(out)) [[likely]] {
          // Stream lifecycle: the view's bit filter inline, so an event of a
          // stream without metadata never takes the out-of-line call.
          if (up_ || out.encrypted || (life_on_ && life_on_->maybe(out.stream))) [[unlikely]] {
            result<bool> f = finish(out);
            if (f && !f.value()) continue;  // hidden by stream lifecycle
            return f;
          }
          return true;
        }
        continue;
      }
    }
    result<bool> r = next_slow(out);
    if (!r || !r.value()) return r;
    if (!filter_ || filter_->matches(out)) {
      if (!(up_ || out.encrypted || life_on_)) return r;
      result<bool> f = finish(out);
      if (f && !f.value()) continue;
      return f;
    }
  }
}

// next()'s loop with the cursor in locals and no return per event: the
// window's records are decoded straight into the caller's views. Anything
// else (a window's end, a segment end, a hole, an error, an encrypted
// payload, stream lifecycle, upcasters) takes next(), the one place that
// decides it. finish() hands a payload out of the reader's one buffer, so
// an event that may have one ends its batch.
result<size_t> log_reader::next_batch(std::span<event_view> out) {
  const size_t cap = out.size();
  size_t n = 0;
  while (n < cap) {
    if (!up_) {
      // The views cannot alias the cursor: it is stored back once, where
      // the run of plain records ends.
      uint64_t pos = pos_.value;
      const uint64_t limit = limit_, base = seg_base_, records_end = seg_records_end_;
      const std::byte* const data = seg_data_;
      const bool verify = verify_;
      const detail::lifecycle_view* const life = life_on_;  // not reloaded after each view's stores
      uint64_t seq = seq_next_;  // known inside the window
      while (n < cap && pos < limit) {
        event_view& v = out[n];
        const uint64_t off = pos - base;
        const record::decoded d = record::decode_inline(data + off, records_end - off, pos, verify, v);
        if (d.outcome != record::decode_outcome::event || v.sequence.value != seq || v.encrypted ||
            (life && life->maybe(v.stream))) [[unlikely]]
          break;
        pos += d.length;
        ++seq;
        if (!filter_ || filter_->matches(v)) [[likely]] ++n;
      }
      pos_.value = pos;
      seq_next_ = seq;
      if (n == cap) break;
    }
    result<bool> r = next(out[n]);
    if (!r) {
      if (n == 0) return r.error();
      break;  // the events before it now; the error on the next call, the cursor on its record
    }
    if (!r.value()) break;
    ++n;
    if (up_ || out[n - 1].encrypted) break;  // its payload may be in the reader's buffer
  }
  return n;
}

// next_batch above with refs: a window's plain records validated straight
// into the caller's refs (no filter: the filter reads an event_view, so a
// filtered reader takes next() for each event). Anything else takes next()
// into the reader's own view; an event whose views point into the window's
// record becomes a ref to that record, one upcast or decrypted is handed
// out through the view and ends the batch.
result<size_t> log_reader::next_batch(std::span<event_ref> out) {
  const size_t cap = out.size();
  size_t n = 0;
  while (n < cap) {
    if (!up_ && !filter_) {
      uint64_t pos = pos_.value;
      const uint64_t limit = limit_, base = seg_base_, records_end = seg_records_end_;
      const std::byte* const data = seg_data_;
      const bool verify = verify_;
      const detail::lifecycle_view* const life = life_on_;
      uint64_t seq = seq_next_;  // known inside the window
      while (n < cap && pos < limit) {
        event_ref& r = out[n];
        const uint64_t off = pos - base;
        const record::decoded d = record::decode_inline(data + off, records_end - off, pos, verify, r);
        // The sequence straight from the record (validated above), not
        // through the ref's accessor.
        if (d.outcome != record::decode_outcome::event ||
            coding::get_u64(data + off + detail::ref_layout::kSequence) != seq || d.encrypted ||
            (life && life->maybe(r.stream()))) [[unlikely]]
          break;
        pos += d.length;
        ++seq;
        ++n;
      }
      pos_.value = pos;
      seq_next_ = seq;
      if (n == cap) break;
    }
    result<bool> r = next(ref_view_);
    if (!r) {
      if (n == 0) return r.error();
      break;
    }
    if (!r.value()) break;
    // Upcasting raises the schema version at every step, so an event it left
    // alone is still the record's; one it changed, or one decrypted, is in
    // the reader's buffers.
    if (ref_view_.encrypted || ref_view_.schema_version != ref_view_.stored_schema_version) {
      detail::event_ref_access::of_view(out[n++], &ref_view_);
      break;
    }
    // next() decoded it from the window's segment (the fast path's or the
    // one next_slow just set up).
    detail::event_ref_access::of_record(out[n++], seg_data_ + (ref_view_.position.value - seg_base_), ref_view_);
  }
  return n;
}

status log_reader::refresh_lifecycle() {
  if (status s = log_->check_lifecycle(); !s) return s;
  const uint64_t gen = log_->lifecycle_generation();
  if (gen != life_gen_) {
    life_gen_ = gen;
    life_ = log_->lifecycle();
    life_on_ = life_ && !life_->empty() ? life_.get() : nullptr;
  }
  if (life_on_) life_now_ns_ = log_->wall_now_ns();
  return {};
}

// Filters see the event as stored (the segment indexes that let a filtered
// reader skip segments know only that); the caller sees it decrypted and upcast.
// Cold and out of line: inlined, its status and shared_ptr code cost next()
// ~20 instructions per event in register spills even with no upcasters.
[[gnu::cold, gnu::noinline]] result<bool> log_reader::finish(event_view& out) {
  if (life_on_ && life_on_->hides(out, life_now_ns_)) return false;
  // An encrypted payload is opened first (upcasters see plaintext); a
  // forgotten event is handed out as stored, its payload empty.
  status s;
  if (out.encrypted) s = log_->open_payload(out, dec_buf_);
  if (s && up_ && !out.forgotten) s = up_->apply(out, up_buf_);
  if (!s) {
    pos_ = out.position;
    limit_ = 0;
    seq_next_ = out.sequence.value;  // the next call meets this event again, in sequence
    return s;
  }
  return true;
}

// An event or a hole whose sequence is not the one after what the reader
// read before it (within a segment or across the segments it read one after
// the other): a record rewritten with a valid checksum, or segments out of
// place. Refused where it is, as the chunk reader and the replay refuse it;
// the cursor stays on it.
[[gnu::cold, gnu::noinline]] status log_reader::out_of_sequence(const void* seg, uint64_t off, uint64_t found) const {
  const segment& sg = *static_cast<const segment*>(seg);
  return status(errc::corruption, sg.path() + " offset " + std::to_string(off) + ": sequence " +
                                      std::to_string(found) + ", expected " + std::to_string(seq_next_));
}

result<bool> log_reader::next_slow(event_view& out) {
  if (!log_) return status(errc::invalid_argument, "reader is not attached to a log");
  limit_ = 0;
  const uint64_t commit = log_->committed();
  const uint8_t l2 = log_->log2();
  const uint64_t mask = (uint64_t{1} << l2) - 1;
  // Position 0 is "the beginning": once retention removed segments, that is
  // where the log now starts (readers in other processes learn it from the
  // doorbell in check_start, or when they meet the missing file, below).
  log_->check_start();  // the start a writer elsewhere moved; removed pages past their grace
  if (status st = refresh_lifecycle(); !st) return st;  // what stream lifecycle hides now
  const bool from_beginning = pos_.value == 0;
  if (from_beginning) pos_.value = log_->start_position();
  while (pos_.value < commit) {
    const uint64_t index = pos_.value >> l2;
    uint64_t off = pos_.value & mask;
    if (off < segment_format::kHeaderSize) {
      off = segment_format::kHeaderSize;
      pos_.value = (index << l2) + off;
      continue;
    }
    // Retention's removed segments stay mapped in this process for a grace
    // period (then read as zeros): the start is checked first, once per slow
    // step (a segment's end, the committed end), never per record.
    if (index < log_->first_segment()) [[unlikely]] {
      if (from_beginning && seg_index_ == ~uint64_t{0}) {
        pos_.value = log_->start_position();
        continue;
      }
      return log_->removed_error(pos_.value);
    }
    if (index != seg_index_) {
      // A filtered reader entering a sealed segment whose index rules the
      // filter out skips it whole (match_segment answers `maybe` for
      // anything it cannot prove, the tail included).
      if (filter_ && match_segment(*log_, index, *filter_) == segment_match::none) {
        pos_.value = ((index + 1) << l2) + segment_format::kHeaderSize;
        seq_known_ = false;  // the numbers it skipped are not read
        continue;
      }
      auto seg = log_->segment_for_read(index, pos_.value);
      if (!seg) {
        // The start moved while this reader, asked for the beginning, had
        // read nothing yet: the beginning is where it is now.
        if (from_beginning && seg_index_ == ~uint64_t{0} && seg.error().code() == errc::removed) continue;
        return seg.error();
      }
      seg_ = seg.value();
      seg_index_ = index;
    }
    const segment& sg = *static_cast<const segment*>(seg_);
    if (off % 8 != 0 || off >= sg.records_end())
      return status(errc::invalid_argument, sg.path() + " offset " + std::to_string(off) +
                                                ": not a record position");
    record::decoded d = record::decode_inline(sg.data() + off, sg.records_end() - off, pos_.value,
                                              verify_, out);
    switch (d.outcome) {
      case record::decode_outcome::event:
        if (seq_known_ && out.sequence.value != seq_next_) return out_of_sequence(&sg, off, out.sequence.value);
        seq_known_ = true;
        seq_next_ = out.sequence.value + 1;
        pos_.value += d.length;
        // The window for the fast path: the rest of this segment that is
        // committed, from an aligned record boundary.
        seg_data_ = sg.data();
        seg_base_ = sg.base_position();
        seg_records_end_ = sg.records_end();
        limit_ = std::min(commit, seg_base_ + seg_records_end_);
        return true;
      case record::decode_outcome::segment_end:
        pos_.value = ((index + 1) << l2) + segment_format::kHeaderSize;
        continue;
      case record::decode_outcome::hole:  // events a repair or a scavenge removed: their numbers with them
        if (seq_known_ && d.hole_first != seq_next_) return out_of_sequence(&sg, off, d.hole_first);
        seq_known_ = true;
        seq_next_ = d.hole_first + d.hole_count;
        pos_.value += d.length;
        continue;
      case record::decode_outcome::skip:
        pos_.value += d.length;
        continue;
      case record::decode_outcome::unwritten:
        return status(errc::corruption, sg.path() + " offset " + std::to_string(off) +
                                            ": committed record is missing (zero header)");
      case record::decode_outcome::invalid:
        return status(errc::corruption,
                      sg.path() + " offset " + std::to_string(off) + ": " + d.why);
    }
  }
  return false;
}

}  // namespace varve
