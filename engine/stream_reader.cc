#include "varve/stream_reader.h"

#include "base/coding.h"
#include "base/record_decode.h"
#include "base/record_format.h"
#include "engine/lifecycle/stream_lifecycle.h"
#include "engine/shared_log.h"

namespace varve {

namespace {

// How many records ahead a forward read starts loading. Each record access
// is a cache and TLB miss (~150-400 ns here); decoding one takes ~50 ns, so
// many must be in flight. Measured on ES-1 P5 (50 events per aggregate): 8
// ahead 41.9 k aggregates/s, 24 ahead 59.5 k, 64 ahead 55.8 k.
constexpr uint64_t kPrefetchAhead = 24;

status bad_chain(const segment& seg, uint64_t off, const std::string& why) {
  return status(errc::corruption, seg.path() + " offset " + std::to_string(off) + ": " + why);
}

// An archived segment (FORMAT 1c) is inflated only where a stream read
// touches it: the frame(s) of this record. Its length word is read once
// its first bytes are there; decode then checks it like any other. Hot
// segments return at once.
status ensure_record(const segment& seg, uint64_t off) {
  if (!seg.archived()) [[likely]] return {};
  if (off >= seg.records_end()) return {};
  if (status s = seg.ensure(off, 16); !s) return s;
  const uint64_t len = coding::get_u32(seg.data() + off + 8);
  return seg.ensure(off, std::min<uint64_t>(std::max<uint64_t>(len, 16), seg.records_end() - off));
}

}  // namespace

status stream_reader::init(std::shared_ptr<detail::shared_log> log, std::string stream,
                           stream_version head_version, uint64_t head_position,
                           stream_version from, read_direction dir, uint64_t max_count, bool hide) {
  log_ = std::move(log);
  log_->check_start();
  up_ = log_->upcasters_now();
  stream_ = std::move(stream);
  dir_ = dir;
  head_version_ = head_version;
  remaining_ = max_count;
  walk_pos_ = head_position;
  walk_version_ = head_version;
  if (hide) {
    // Stream lifecycle: a deleted stream is an error (not an empty one: the
    // caller may be about to act on "no events"); truncation and max_count
    // raise the floor the walk stops at; max_age is applied per event.
    if (status s = log_->check_lifecycle(); !s) return s;
    if (auto life = log_->lifecycle(); life && !life->empty())
      if (const stream_metadata* m = life->find(stream_)) {
        if (m->deleted)
          return status(errc::stream_deleted, log_->segments.identity().dir + ": stream '" +
                                                  detail::stream_text_of(stream_) + "' was deleted");
        floor_ = std::max<stream_version>(1, m->truncate_before);
        if (m->max_count != 0 && head_version > m->max_count)
          floor_ = std::max<stream_version>(floor_, head_version - m->max_count + 1);
        max_age_ns_ = m->max_age_ns;
        if (max_age_ns_) now_ns_ = log_->wall_now_ns();
      }
  }
  if (head_version == 0 || max_count == 0 || floor_ > head_version) {
    remaining_ = 0;
    return {};
  }
  if (dir == read_direction::forward) {
    next_version_ = std::max(from == 0 ? 1 : from, floor_);
    if (next_version_ > head_version) {
      remaining_ = 0;
      return {};
    }
    // Down to the run holding `from`; next() then climbs back up the runs.
    while (walk_version_ >= next_version_)
      if (status s = descend(); !s) return s;
    run_ = runs_.size() - 1;
    for (uint64_t v = next_version_; v < next_version_ + kPrefetchAhead && v <= head_version; ++v)
      prefetch(v);
    return {};
  }
  next_version_ = std::min(from, head_version);
  if (next_version_ < floor_) {
    remaining_ = 0;
    return {};
  }
  // Runs above the starting version are passed over, keeping one at a time.
  while (true) {
    runs_.clear();
    positions_.clear();
    if (status s = descend(); !s) return s;
    if (runs_.back().first_version <= next_version_) break;
  }
  run_ = 0;
  return {};
}

status stream_reader::descend() {
  const uint8_t l2 = log_->log2();
  const uint64_t mask = (uint64_t{1} << l2) - 1;
  const uint64_t seg_index = walk_pos_ >> l2;
  auto got = log_->segment_for_read(seg_index, walk_pos_, /*lazy=*/true);
  if (!got) {
    // Positions rise with versions: retention took this one and all before it.
    if (got.error().code() == errc::removed)
      return status(errc::removed, got.error().message() + "; it held version " + std::to_string(walk_version_) +
                                       " of the stream, and retention took versions 1 to " +
                                       std::to_string(walk_version_) + ": read from version " +
                                       std::to_string(walk_version_ + 1) + " on (after a snapshot)");
    return got.error();
  }
  const segment& seg = *got.value();

  if (const segment_index::view* ix = log_->indexes.get(seg)) {
    segment_index::stream_run r;
    // The index must agree with the back-chain where they meet (the run's
    // newest event is the one we came from); otherwise it is not used.
    if (ix->find(stream_, r) && r.first_version + r.count - 1 == walk_version_ &&
        r.offsets[r.count - 1] == (walk_pos_ & mask) &&
        (r.first_version == 1 ? r.prev_position == ~uint64_t{0}
                              : r.prev_position < seg.base_position())) {
      // The offsets are read when the run is reached (or prefetched from):
      // start loading them now, while the walk goes on down.
      __builtin_prefetch(r.offsets);
      runs_.push_back({seg_index, r.first_version, r.count, r.offsets, 0});
      walk_version_ = r.first_version - 1;
      walk_pos_ = r.prev_position;
      return {};
    }
  }

  // The back-chain, within this segment: each record names its predecessor.
  const size_t at = positions_.size();
  const uint64_t stop = dir_ == read_direction::forward ? next_version_ : floor_;
  uint32_t count = 0;
  while (walk_version_ >= stop && walk_version_ > 0 && (walk_pos_ >> l2) == seg_index) {
    const uint64_t off = walk_pos_ & mask;
    if (off < segment_format::kHeaderSize || off % 8 != 0 || off >= seg.records_end())
      return bad_chain(seg, off, "back-chain points outside the record area");
    if (status e = ensure_record(seg, off); !e) return e;
    event_view v;
    record::decoded d = record::decode_inline(seg.data() + off, seg.records_end() - off, walk_pos_,
                                       log_->verify_checksums, v);
    if (d.outcome != record::decode_outcome::event)
      return bad_chain(seg, off, std::string("back-chain record: ") +
                                     (d.why ? d.why : "not an event record"));
    if (v.stream != stream_ || v.version != walk_version_)
      return bad_chain(seg, off, "back-chain leads to another stream or version");
    positions_.push_back(walk_pos_);
    ++count;
    --walk_version_;
    // Only where the walk goes on: below the floor the link may lead into
    // what a scavenge removed, or nowhere (a head rebuilt from DIR/streams).
    if (walk_version_ >= stop && walk_version_ > 0 && (v.previous.is_none() || v.previous.value >= walk_pos_))
      return bad_chain(seg, off, "back-chain does not lead backward");
    walk_pos_ = v.previous.value;
  }
  runs_.push_back({seg_index, walk_version_ + 1, count, nullptr, at});
  return {};
}

uint64_t stream_reader::position_of(const run& r, uint64_t version) const {
  const uint64_t i = version - r.first_version;
  if (r.offsets) return (r.segment << log_->log2()) | r.offsets[i];
  return positions_[r.explicit_at + (r.count - 1 - i)];
}

void stream_reader::prefetch(uint64_t version) const {
  // The run holding `version`: the current one or one further up (runs are
  // newest first; with a few events per segment, 8 ahead is several runs up).
  for (size_t i = run_ + 1; i-- > 0;) {
    const run& r = runs_[i];
    if (version >= r.first_version + r.count) continue;
    if (version < r.first_version) return;
    const segment* seg = log_->segments.find(r.segment);
    if (!seg || seg->archived()) return;  // archived: its frames may not be there yet
    const std::byte* p = seg->data() + (position_of(r, version) & (log_->capacity() - 1));
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
    __builtin_prefetch(p + 128);
    return;
  }
}

result<bool> stream_reader::next(event_view& out) {
  for (;;) {
    result<bool> r = next_stored(out);
    if (!r || !r.value() || max_age_ns_ == 0) [[likely]] return r;
    // max_age: an event older than the limit is hidden, by its own
    // timestamp (the rule log-wide reads apply too).
    if (out.timestamp_ns + max_age_ns_ >= now_ns_) return r;
    ++remaining_;  // not handed out
  }
}

result<bool> stream_reader::next_stored(event_view& out) {
  if (remaining_ == 0 || !log_) return false;
  const run* r = nullptr;
  if (dir_ == read_direction::forward) {
    while (true) {
      r = &runs_[run_];
      if (next_version_ < r->first_version + r->count) break;
      if (run_ == 0 || next_version_ > head_version_) return false;
      --run_;
    }
  } else {
    if (next_version_ < floor_) return false;
    if (next_version_ < runs_.back().first_version) {
      runs_.clear();
      positions_.clear();
      if (status s = descend(); !s) return s;
    }
    r = &runs_.back();
  }
  const uint64_t pos = position_of(*r, next_version_);
  auto got = log_->segment_for_read(r->segment, pos, /*lazy=*/true);
  if (!got) return got.error();
  const segment& seg = *got.value();
  const uint64_t off = pos & (log_->capacity() - 1);
  if (off < segment_format::kHeaderSize || off % 8 != 0 || off >= seg.records_end())
    return bad_chain(seg, off, "stream index points outside the record area");
  if (status e = ensure_record(seg, off); !e) return e;
  record::decoded d =
      record::decode_inline(seg.data() + off, seg.records_end() - off, pos, log_->verify_checksums, out);
  if (d.outcome != record::decode_outcome::event)
    return bad_chain(seg, off, std::string("stream record: ") + (d.why ? d.why : "not an event record"));
  if (out.stream != stream_ || out.version != next_version_)
    return bad_chain(seg, off, "stream index leads to another stream or version");
  // Upcast before moving on: a step that fails leaves the reader on this
  // version, like a record that fails validation.
  if (out.encrypted && !raw_) [[unlikely]]
    if (status u = log_->open_payload(out, dec_buf_); !u) return u;
  if (up_ && !out.forgotten) [[unlikely]]
    if (status u = up_->apply(out, up_buf_); !u) return u;
  if (dir_ == read_direction::forward) {
    ++next_version_;
    prefetch(next_version_ + kPrefetchAhead - 1);
  } else {
    --next_version_;
  }
  --remaining_;
  return true;
}

}  // namespace varve
