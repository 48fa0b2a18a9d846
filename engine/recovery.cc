// Recovery on open. The crash story in one paragraph: the writer only ever
// appends, records carry their own position and checksum, a batch's last
// record carries the batch-end flag, and a segment the writer left carries a
// segment-end record before the writer writes anything in the next one. So
// after any crash the valid log is a prefix: sealed segments (valid footer)
// are taken as they are; the unsealed tail is scanned from its first record,
// and the first record that fails validation, or the first incomplete batch,
// ends the log. Everything after that point was never acknowledged as
// durable and never visible as committed in a way that survived: it is cut.
#include <algorithm>

#include "engine/background.h"
#include "engine/control_block.h"
#include "base/log_files.h"
#include "engine/log_state.h"
#include "base/scan.h"
#include "index/heads_file.h"

namespace varve::detail {
namespace {

void note(log_state& s, const std::string& file, uint64_t off, uint64_t bytes,
          const std::string& why) {
  if (s.opts.observer) s.opts.observer->on_truncated(file, off, bytes, why);
}

// Zeroes every non-zero byte of [from, to) in the mapping, page by page, so
// that stale bytes past a cut can never be mistaken for records later. Pages
// that are already zero are left clean (no writeback).
uint64_t zero_from(std::byte* data, uint64_t from, uint64_t to, uint64_t& last_changed) {
  uint64_t changed = 0;
  constexpr uint64_t kPage = 4096;
  for (uint64_t p = from; p < to;) {
    uint64_t end = std::min(to, (p / kPage + 1) * kPage);
    if (!segment_format::is_zero(data + p, end - p)) {
      std::fill(data + p, data + end, std::byte{0});
      changed += end - p;
      last_changed = end;
    }
    p = end;
  }
  return changed;
}

bool any_nonzero(const std::byte* data, uint64_t from, uint64_t to) {
  return !segment_format::is_zero(data + from, to - from);
}

}  // namespace

status recover(log_state& s) {
  file_system& fs = *s.fs;
  const std::string index_dir = log_files::join(s.dir, log_files::kIndexDir);
  const segment::identity& id = s.shared->segments.identity();
  segment_table& table = s.shared->segments;
  const bool strict = s.opts.recovery == recovery_mode::strict;
  const uint64_t clean_end = control_block::read_clean_end(fs, s.dir, id.log_id);

  // Leftovers of atomic writes that never reached their rename.
  auto names = fs.list_dir(s.dir);
  if (!names) return names.error();
  for (const std::string& n : names.value())
    if (n.ends_with(log_files::kPartialSuffix)) (void)fs.remove(log_files::join(s.dir, n));
  std::vector<uint64_t> segs = log_files::segment_indices(names.value());

  // A segment file whose header was never written is a roll-over or
  // pre-creation that died half way: it holds nothing.
  while (!segs.empty()) {
    const std::string path = log_files::join(s.dir, log_files::segment_name(segs.back()));
    auto f = fs.open(path, file_system::open_mode::read_only);
    if (!f) return f.error();
    file_handle fh = f.value();
    std::byte hdr[segment_format::kHeaderSize] = {};
    auto size = fs.file_size(fh);
    status rs = size && size.value() >= sizeof hdr ? fs.pread(fh, 0, hdr, sizeof hdr) : status{};
    fs.close(fh);
    if (!rs) return rs;
    if (!segment_format::is_zero(hdr, sizeof hdr)) {
      // A header that is there but does not decode, on the newest segment
      // file: a power loss while that file was being created (headers are
      // made durable before a segment is used, so it holds nothing that
      // was acknowledged). Set it aside, keeping the bytes.
      segment_format::header h;
      status hs = segment_format::decode_header(hdr, path, h);
      if (hs || strict || segs.size() < 2 ||
          (hs.code() != errc::corruption && hs.code() != errc::not_a_log))
        break;
      note(s, path, 0, 0, "newest segment file set aside: " + hs.message());
      if (status r = fs.rename(path, path + log_files::kDamagedSuffix); !r) return r;
      segs.pop_back();
      continue;
    }
    if (strict) return {errc::corruption, path + " offset 0: segment header was never written"};
    note(s, path, 0, 0, "removed a segment file whose header was never written");
    if (status r = fs.remove(path); !r) return r;
    segs.pop_back();
  }

  if (segs.empty()) {
    auto made = segment::create(s.fs, id, 0, segment::prefault::for_write);
    if (!made) return made.error();
    s.active = made.value().get();
    table.install(std::move(made.value()));
    s.first_segment = 0;
    s.write_off = segment_format::kHeaderSize;
    s.next_seq = 0;
    s.seg_first_seq = 0;
    return {};
  }
  for (size_t i = 1; i < segs.size(); ++i)
    if (segs[i] != segs[0] + i)
      return {errc::corruption,
              log_files::join(s.dir, log_files::segment_name(segs[0] + i)) +
                  ": segment file is missing (the log has a hole)"};
  s.first_segment = segs.front();
  const uint64_t last = segs.back();

  // Find the first unsealed segment, walking back from the newest: open time
  // depends on the unsealed tail only, never on how many segments are sealed.
  uint64_t first_unsealed = s.first_segment;
  for (uint64_t k = last + 1; k-- > s.first_segment;) {
    auto opened = segment::open(s.fs, id, k, map_access::read_write);
    if (!opened) return opened.error();
    segment* seg = opened.value().get();
    table.install(std::move(opened.value()));
    segment_format::footer f;
    status fs_status = seg->read_footer(f);
    if (fs_status) {
      first_unsealed = k + 1;
      break;
    }
    if (fs_status.code() != errc::not_found)
      note(s, seg->path(), seg->records_end(), segment_format::kFooterSize,
           "damaged footer ignored; rescanning the segment: " + fs_status.message());
  }

  // The head table: newest usable checkpoint, then the sealed segments after it.
  uint64_t next_seq = 0;
  uint64_t replay_from = s.first_segment;
  if (auto idx_names = fs.list_dir(index_dir)) {
    std::vector<uint64_t> cps;
    for (const std::string& n : idx_names.value()) {
      if (n.ends_with(log_files::kPartialSuffix)) (void)fs.remove(log_files::join(index_dir, n));
      if (auto i = log_files::parse_heads_name(n)) cps.push_back(*i);
    }
    std::sort(cps.rbegin(), cps.rend());
    for (uint64_t cp : cps) {
      if (cp + 1 > first_unsealed || cp < s.first_segment) continue;  // covers unsealed data
      const std::string path = log_files::join(index_dir, log_files::heads_name(cp));
      heads_file::checkpoint_info info;
      status r = heads_file::read(fs, path, id.log_id, info, s.heads);
      if (r && info.last_segment == cp) {
        // Cross-check against the footer: a checkpoint that disagrees is not trusted.
        auto seg = table.get(cp);
        segment_format::footer f;
        if (seg && seg.value()->read_footer(f) &&
            f.first_sequence + f.event_count == info.next_sequence) {
          next_seq = info.next_sequence;
          replay_from = cp + 1;
          s.checkpointed_segment = cp;
          break;
        }
        r = status(errc::corruption, path + ": checkpoint disagrees with the segment footer");
      }
      s.heads.clear();
      note(s, path, 0, 0, "head-table checkpoint rejected, renamed aside: " + r.message());
      (void)fs.rename(path, path + log_files::kDamagedSuffix);
    }
  }
  for (uint64_t k = replay_from; k < first_unsealed; ++k) {
    auto seg = table.get(k);
    if (!seg) return seg.error();
    segment_format::footer f;
    if (status r = seg.value()->read_footer(f); !r) return r;
    segment_scan r = scan_segment(*seg.value(), next_seq, true, [&](const event_view& v) {
      s.heads.advance(v.stream, v.stream_is_integer, v.version, v.position.value);
    });
    if (!r.ended_by_marker || r.good_end != f.data_end)
      return {errc::corruption, seg.value()->path() + " offset " +
                                    std::to_string(r.problem_offset) + ": sealed segment is damaged: " +
                                    (r.problem.empty() ? "records disagree with the footer" : r.problem)};
    next_seq = r.next_sequence;
  }

  // Scan the unsealed tail. In strict mode nothing is modified until the
  // whole tail has been judged clean.
  struct pending_seal {
    segment* seg;
    segment_format::footer f;
  };
  std::vector<pending_seal> seals;
  uint64_t k = first_unsealed;
  segment* end_seg = nullptr;
  segment_scan end_scan;
  for (; k <= last; ++k) {
    segment* seg = table.find(k);
    segment_scan r = scan_segment(*seg, next_seq, true, [&](const event_view& v) {
      s.heads.advance(v.stream, v.stream_is_integer, v.version, v.position.value);
    });
    next_seq = r.next_sequence;
    if (r.ended_by_marker && k < last) {
      seals.push_back({seg, {k, r.good_end, r.events, r.first_sequence, r.last_position, 0}});
      continue;
    }
    if (r.ended_by_marker) {
      // The writer left this segment but died before writing in the next:
      // seal it and start a new one.
      seals.push_back({seg, {k, r.good_end, r.events, r.first_sequence, r.last_position, 0}});
      break;
    }
    end_seg = seg;
    end_scan = r;
    break;
  }

  if (end_seg) {
    // Everything past the cut: the rest of this segment, and later segments.
    // After a clean close that ended exactly here, nothing was ever written
    // past this point, and the page-by-page zero check (a read of up to a
    // whole segment) can be skipped.
    const uint64_t cut = end_scan.good_end;
    const bool clean_close = !strict && end_scan.problem.empty() && end_scan.clean_zero_end &&
                             clean_end == end_seg->base_position() + cut;
    const bool dirty = !clean_close && any_nonzero(end_seg->data(), cut, end_seg->capacity());
    if (dirty && strict)
      return {errc::corruption, end_seg->path() + " offset " +
                                    std::to_string(end_scan.problem.empty() ? cut : end_scan.problem_offset) +
                                    ": " + (end_scan.problem.empty() ? "bytes after the end of the log" : end_scan.problem)};
    for (uint64_t j = end_seg->index() + 1; j <= last; ++j) {
      segment* later = table.find(j);
      if (strict && any_nonzero(later->data(), segment_format::kHeaderSize, later->capacity()))
        return {errc::corruption, later->path() + ": segment follows the end of the log"};
    }
    if (dirty) {
      uint64_t last_changed = cut;
      uint64_t n = zero_from(end_seg->data(), cut, end_seg->capacity(), last_changed);
      // Crash story: the zeroing must be durable before anything new is
      // appended here. Otherwise a power loss could bring back records past
      // the cut that would validate after new records of the same size.
      if (status r = fs.sync_range(end_seg->file(), end_seg->data() + cut, last_changed - cut); !r)
        return r;
      note(s, end_seg->path(), cut, n,
           end_scan.problem.empty() ? "cut non-zero bytes after the last record"
                                    : "cut the tail at offset " + std::to_string(end_scan.problem_offset) +
                                          ": " + end_scan.problem);
    }
    for (uint64_t j = end_seg->index() + 1; j <= last; ++j) {
      segment* later = table.find(j);
      const std::string path = later->path();
      // A pre-created segment the writer never reached: its first record slot
      // is zero (the writer always begins a segment there).
      const bool empty = !any_nonzero(later->data(), segment_format::kHeaderSize,
                                      segment_format::kHeaderSize + 16);
      // Unmapping is deferred to table destruction; the file can go now.
      if (empty) {
        if (status r = fs.remove(path); !r) return r;
      } else {
        note(s, path, 0, later->capacity(), "segment after the end of the log renamed aside");
        if (status r = fs.rename(path, path + log_files::kDamagedSuffix); !r) return r;
      }
    }
  }

  for (pending_seal& p : seals)
    if (status r = background::write_footer(fs, *p.seg, p.f, s.opts.mode); !r) return r;

  if (end_seg) {
    s.active = end_seg;
    s.write_off = end_scan.good_end;
    s.seg_events = end_scan.events;
    s.seg_first_seq = end_scan.first_sequence;
    s.seg_last_pos = end_scan.last_position;
  } else {
    // The last segment ended with a segment-end record: continue in a new one.
    auto made = segment::create(s.fs, id, last + 1, segment::prefault::for_write);
    if (!made) return made.error();
    s.active = made.value().get();
    table.install(std::move(made.value()));
    s.write_off = segment_format::kHeaderSize;
    s.seg_events = 0;
    s.seg_first_seq = next_seq;
    s.seg_last_pos = ~uint64_t{0};
  }
  s.next_seq = next_seq;
  return {};
}

}  // namespace varve::detail
