// Recovery on open. The crash story in one paragraph: the writer only ever
// appends, records carry their own position and checksum, a batch's last
// record carries the batch-end flag, and a segment the writer left carries a
// segment-end record before the writer writes anything in the next one. So
// after a crash the valid log is a prefix: sealed segments (valid footer)
// are taken as they are; the unsealed tail is scanned from its first record.
//
// What a crash can tear is bounded, and varve.ctl says how far: within the
// boot that wrote it, the page cache survived, so everything below the
// committed position is intact and at most the batch in flight is torn;
// after a reboot, everything below the recorded durable position reached
// the disk. Below that guard a record that fails its checks is damage: the
// writer refuses to open and changes nothing. Above it the log ends at the
// first record that fails; what follows is copied into lost+found/ before it
// is zeroed, and reported. Nothing is ever cut silently or deleted.
#include "engine/recovery.h"

#include <algorithm>
#include <functional>

#include "base/coding.h"
#include "base/log_files.h"
#include "base/scan.h"
#include "base/log_layout.h"
#include "base/start_file.h"
#include "engine/background.h"
#include "engine/log_state.h"
#include "engine/lost_found.h"
#include "engine/segment_table.h"
#include "index/heads_file.h"

namespace varve::detail {

recovery_guard guard_from(const ctl_state& ctl, const std::string& ctl_path) {
  recovery_guard g;
  if (!ctl.valid) {
    g.what = "no position (" + (ctl.why.empty() ? ctl_path + ": missing" : ctl.why) + ")";
    return g;
  }
  if (ctl.same_boot) {
    g.position = ctl.commit;
    g.what = "the committed position " + std::to_string(ctl.commit) + " that " + ctl_path +
             " recorded in this boot";
  } else {
    g.position = ctl.durable;
    g.what = "the durable position " + std::to_string(ctl.durable) + " that " + ctl_path +
             " recorded";
  }
  return g;
}

uint64_t find_valid_record(const std::byte* data, uint64_t records_end, uint64_t base, uint64_t from,
                           uint64_t to) {
  to = std::min(to, records_end);
  for (uint64_t off = coding::align8(from); off + record::kSegmentEndSize <= to; off += 8) {
    const std::byte* p = data + off;
    // Every record names its own position: most offsets fail this one load.
    if (coding::get_u64(p + 16) != base + off) continue;
    event_view v;
    const record::decoded d = record::decode(p, records_end - off, base + off, true, v);
    if (d.outcome == record::decode_outcome::event || d.outcome == record::decode_outcome::segment_end ||
        d.outcome == record::decode_outcome::hole)
      return off;
  }
  return to;
}

uint64_t find_valid_record(const segment& seg, uint64_t from, uint64_t to) {
  return find_valid_record(seg.data(), seg.records_end(), seg.base_position(), from, to);
}

result<bool> file_holds_records(file_system& fs, const std::string& path, uint64_t index, uint8_t log2) {
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  file_handle fh = f.value();
  auto size = fs.file_size(fh);
  if (!size) {
    fs.close(fh);
    return size.error();
  }
  const uint64_t cap = uint64_t{1} << log2;
  const uint64_t n = std::min(size.value(), cap);
  if (n <= segment_format::kHeaderSize) {
    fs.close(fh);
    return false;
  }
  auto m = fs.map(fh, n, map_access::read_only);
  fs.close(fh);
  if (!m) return m.error();
  const auto* data = static_cast<const std::byte*>(m.value());
  const uint64_t records_end = std::min(n, cap - segment_format::kFooterSize);
  const bool found = find_valid_record(data, records_end, index << log2, segment_format::kHeaderSize,
                                       records_end) < records_end;
  fs.unmap(m.value(), n);
  return found;
}

uint64_t count_valid_records(const segment& seg, uint64_t from, uint64_t to) {
  uint64_t n = 0;
  for (uint64_t off = from; off < to;) {
    const uint64_t at = find_valid_record(seg, off, to);
    if (at >= to) break;
    event_view v;
    const record::decoded d =
        record::decode(seg.data() + at, seg.records_end() - at, seg.base_position() + at, true, v);
    if (d.outcome == record::decode_outcome::event) ++n;
    off = at + d.length;
  }
  return n;
}

uint64_t nonzero_end(const std::byte* data, uint64_t from, uint64_t to) {
  constexpr uint64_t kBlock = 4096;
  uint64_t hi = to;
  while (hi > from) {
    const uint64_t lo = std::max(from, hi > kBlock ? (hi - 1) / kBlock * kBlock : 0);
    if (!segment_format::is_zero(data + lo, hi - lo)) {
      for (uint64_t i = hi; i > lo; --i)
        if (data[i - 1] != std::byte{0}) return std::min(to, coding::align8(i));
    }
    hi = lo;
  }
  return from;
}

result<bool> file_is_zero_from(file_system& fs, const std::string& path, uint64_t from) {
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  file_handle fh = f.value();
  auto size = fs.file_size(fh);
  if (!size) {
    fs.close(fh);
    return size.error();
  }
  std::vector<std::byte> buf(1 << 20);
  bool zero = true;
  for (uint64_t off = from; zero && off < size.value();) {
    const uint64_t n = std::min<uint64_t>(buf.size(), size.value() - off);
    if (status s = fs.pread(fh, off, buf.data(), n); !s) {
      fs.close(fh);
      return s;
    }
    zero = segment_format::is_zero(buf.data(), n);
    off += n;
  }
  fs.close(fh);
  return zero;
}

reporter make_reporter(recovery_observer* observer, lost_found& lf) {
  return [observer, &lf](recovery_action a) {
    std::string line = a.file + " offset " + std::to_string(a.offset) + ": " + a.why;
    if (a.bytes) line += " (" + std::to_string(a.bytes) + " bytes";
    if (a.bytes && a.events) line += ", " + std::to_string(a.events) + " records that validated";
    if (a.bytes) line += ")";
    if (!a.kept_at.empty()) line += "; kept in " + a.kept_at;
    if (a.what != recovery_action::kind::note && a.what != recovery_action::kind::removed_empty)
      lf.note(line);
    if (observer) observer->on_action(a);
  };
}

namespace {

bool is_repair(recovery_mode m) {
  return m == recovery_mode::point_in_time || m == recovery_mode::skip_damaged;
}

std::string refusal_tail() {
  return "; nothing was changed (read-only opens still read up to it). `varve recover DIR` "
         "shows and repairs it, keeping every byte it takes out in DIR/lost+found/";
}

}  // namespace

// Writes the header a segment file must have (it is fully determined by the
// log and the file's index), after keeping the old bytes.
status rebuild_header(file_system& fs, const segment::identity& id, uint64_t index,
                      const std::string& path, lost_found& lf, reporter& report) {
  auto f = fs.open(path, file_system::open_mode::read_write);
  if (!f) return f.error();
  file_handle fh = f.value();
  std::byte old[segment_format::kHeaderSize];
  status s = fs.pread(fh, 0, old, sizeof old);
  result<std::string> kept = s ? lf.keep_bytes(path, 0, old, sizeof old) : result<std::string>(s);
  if (!kept) {
    fs.close(fh);
    return kept.error();
  }
  std::byte hdr[segment_format::kHeaderSize];
  segment_format::encode_header(hdr, {id.log2_capacity, index, id.log_id});
  s = fs.pwrite(fh, 0, hdr, sizeof hdr);
  if (s) s = fs.datasync(fh);
  fs.close(fh);
  if (!s) return s;
  report({recovery_action::kind::rebuilt, path, 0, sizeof hdr, "segment header rebuilt", kept.value(), 0});
  return {};
}

// Replaces [from, to) of the segment with a hole record standing for the
// events [first_seq, first_seq + count), after keeping the bytes. The caller
// checked that a valid batch starts at `to`.
status make_hole(file_system& fs, segment& seg, uint64_t from, uint64_t to, uint64_t first_seq,
                 uint64_t count, const std::string& why, lost_found& lf, reporter& report) {
  const uint64_t events = count_valid_records(seg, from, to);
  auto kept = lf.keep_bytes(seg.path(), from, seg.data() + from, to - from);
  if (!kept) return kept.error();
  record::encode_hole(seg.data() + from, static_cast<uint32_t>(to - from), seg.base_position() + from,
                      first_seq, count);
  if (status s = fs.sync_range(seg.file(), seg.data() + from, to - from); !s) return s;
  report({recovery_action::kind::hole, seg.path(), from, to - from,
          why + ": replaced by a hole standing for " + std::to_string(count) + " event(s) from sequence " +
              std::to_string(first_seq),
          kept.value(), events});
  return {};
}

// In a segment whose scan stopped at `r`, the start of the first batch after
// the damage that continues the log: a valid event record that begins a batch,
// with a sequence number not below the one expected. `records_end` when none.
uint64_t find_continuation(const segment& seg, const segment_scan& r, uint64_t limit) {
  const uint64_t end = std::min(limit, seg.records_end());
  for (uint64_t off = r.problem_offset + 8; off < end;) {
    const uint64_t at = find_valid_record(seg, off, end);
    if (at >= end) break;
    event_view v;
    const record::decoded d =
        record::decode(seg.data() + at, end - at, seg.base_position() + at, true, v);
    if (d.outcome == record::decode_outcome::event && v.batch_begin &&
        v.sequence.value >= r.next_sequence)
      return at;
    off = at + 8;
  }
  return end;
}

// The sequence number of the record at `off` (an event, checked by the caller).
uint64_t sequence_at(const segment& seg, uint64_t off) {
  return coding::get_u64(seg.data() + off + 24);
}

status recover(log_state& s) {
  file_system& fs = *s.fs;
  const std::string index_dir = log_files::join(s.dir, log_files::kIndexDir);
  const std::string ctl_path = log_files::join(s.dir, log_files::kControlName);
  const segment::identity& id = s.shared->segments.identity();
  segment_table& table = s.shared->segments;
  const recovery_mode mode = s.opts.recovery;
  const bool strict = mode == recovery_mode::strict;
  const bool repair = is_repair(mode);
  const uint8_t l2 = id.log2_capacity;
  lost_found lf(fs, s.dir);
  reporter report = make_reporter(s.observer, lf);

  const ctl_state ctl = control_block::read_state(fs, s.dir, id.log_id);
  s.ctl_at_open = ctl;
  recovery_guard guard = guard_from(ctl, ctl_path);
  // A sync failed in this boot: the page cache may hold bytes the disk never
  // got, and they look perfectly valid. Do not trust them unless told to.
  if (ctl.valid && ctl.poisoned && ctl.same_boot) {
    if (!repair)
      return {errc::io_error,
              ctl_path + ": a sync failed in this boot (" + std::string(errc_name(ctl.poison_code)) +
                  ") and the disk may lack what the page cache shows from position " +
                  std::to_string(ctl.poison_from) + " on; refusing to open for writing. "
                  "`varve recover DIR` writes those pages again, syncs them and checks the log"};
    // Write the pages again from what the page cache holds and sync them: if
    // that succeeds, disk and cache agree again. Below poison_from the data
    // was durable; above it, recovery judges what the disk now holds.
    auto names = fs.list_dir(s.dir);
    if (!names) return names.error();
    const uint64_t from_seg = ctl.poison_from >> l2;
    for (uint64_t k : log_files::segment_indices(names.value())) {
      if (k < from_seg) continue;
      const std::string path = log_files::join(s.dir, log_files::segment_name(k));
      auto f = fs.open(path, file_system::open_mode::read_write);
      if (!f) return f.error();
      file_handle fh = f.value();
      auto size = fs.file_size(fh);
      status st = size ? status{} : size.error();
      const uint64_t start = k == from_seg ? (ctl.poison_from & ((uint64_t{1} << l2) - 1)) / 4096 * 4096 : 0;
      std::vector<std::byte> buf(1 << 20);
      for (uint64_t off = start; st && off < size.value();) {
        const uint64_t n = std::min<uint64_t>(buf.size(), size.value() - off);
        st = fs.pread(fh, off, buf.data(), n);
        if (st && !segment_format::is_zero(buf.data(), n)) st = fs.pwrite(fh, off, buf.data(), n);
        off += n;
      }
      if (st) st = fs.datasync(fh);
      fs.close(fh);
      if (!st) return st;
    }
    guard.position = ctl.poison_from;
    guard.what = "the position " + std::to_string(ctl.poison_from) + " durable before the failed sync";
    report({recovery_action::kind::rebuilt, s.dir, ctl.poison_from, 0,
            "pages after a failed sync written again from the page cache and synced", "", 0});
  } else if (ctl.valid && ctl.poisoned) {
    report({recovery_action::kind::note, ctl_path, 0, 0,
            "a sync failed before the last reboot; the log is judged by what the disk holds", "", 0});
  }

  // Changes that clean up after a crash (leftover temporary files, trailing
  // files that never held an event, rejected checkpoints) wait here until
  // the log has been judged: an open that refuses must leave the directory
  // exactly as it found it, for the operator and for `varve recover`.
  std::vector<std::function<status()>> deferred;
  auto apply_deferred = [&]() -> status {
    for (auto& f : deferred)
      if (status r = f(); !r) return r;
    deferred.clear();
    return {};
  };

  // Leftovers of atomic writes that never reached their rename: never log data.
  auto names = fs.list_dir(s.dir);
  if (!names) return names.error();
  for (const std::string& n : names.value())
    if (n.ends_with(log_files::kPartialSuffix))
      deferred.push_back([&fs, path = log_files::join(s.dir, n)] {
        (void)fs.remove(path);
        return status{};
      });
  // Where the log starts (retention, FORMAT 1b) and where its oldest
  // segments live (the archive tier, FORMAT 1c).
  auto lay = log_layout::read(fs, s.dir, id.log_id, names.value());
  if (!lay) return {lay.error().code(), lay.error().message() + refusal_tail()};
  const uint64_t start_seg = lay.value().start_segment;
  const uint64_t hot_first = lay.value().hot_first;
  s.first_sequence = lay.value().first_sequence;
  std::vector<uint64_t> segs = lay.value().hot;
  if (lay.value().archive) table.set_archive_dir(lay.value().archive->dir);
  // Files below the start are ones a retention pass had decided to remove,
  // durably, before a crash stopped it: removing them finishes that pass
  // (they are no part of the log).
  if (!lay.value().below_start.empty())
    deferred.push_back([&fs, &report, &s, &index_dir, below = lay.value().below_start] {
      for (uint64_t k : below) {
        const std::string path = log_files::join(s.dir, log_files::segment_name(k));
        if (status r = fs.remove(path); !r) return r;
        (void)fs.remove(log_files::join(index_dir, log_files::sidx_name(k)));
        report({recovery_action::kind::note, path, 0, 0,
                "removed a segment below the log's start (a retention pass a crash interrupted)", "", 0});
      }
      return fs.sync_dir(s.dir);
    });
  // Archive files below the start: the same, for a pass over archived segments.
  if (!lay.value().archived_below_start.empty())
    deferred.push_back([&fs, &report, adir = lay.value().archive->dir, below = lay.value().archived_below_start] {
      for (uint64_t k : below) {
        const std::string path = log_files::join(adir, archive_file::segment_file_name(k));
        if (status r = fs.remove(path); !r) return r;
        report({recovery_action::kind::note, path, 0, 0,
                "removed an archived segment below the log's start (a retention pass a crash interrupted)", "", 0});
      }
      return fs.sync_dir(adir);
    });
  // Files below the archive's boundary: an archive pass had written and
  // checked their archive files, and recorded the boundary, before a crash
  // stopped it from removing them. Removed only where the archive file is
  // there (one it lacks stays the segment's home: reads open it first).
  if (!lay.value().archived_hot.empty()) {
    const std::string adir = lay.value().archive->dir;
    std::vector<uint64_t> go;
    for (uint64_t k : lay.value().archived_hot) {
      if (fs.exists(log_files::join(adir, archive_file::segment_file_name(k))))
        go.push_back(k);
      else
        report({recovery_action::kind::note, log_files::join(adir, archive_file::segment_file_name(k)), 0, 0,
                "archived segment file is missing; " + log_files::segment_name(k) + " in the log's directory "
                "stays its copy", "", 0});
    }
    if (!go.empty())
      deferred.push_back([&fs, &report, &s, go] {
        for (uint64_t k : go) {
          const std::string path = log_files::join(s.dir, log_files::segment_name(k));
          if (status r = fs.remove(path); !r) return r;
          report({recovery_action::kind::note, path, 0, 0,
                  "removed a segment file the archive holds (an archive pass a crash interrupted)", "", 0});
        }
        return fs.sync_dir(s.dir);
      });
  }
  // The archive must be reachable (a volume not mounted): its first and
  // last segments are looked for, not every one (open stays O(1) in the
  // number of archived segments).
  if (hot_first > start_seg) {
    const std::string adir = lay.value().archive->dir;
    for (uint64_t k : {start_seg, hot_first - 1}) {
      const std::string ap = log_files::join(adir, archive_file::segment_file_name(k));
      if (!fs.exists(ap) && !fs.exists(log_files::join(s.dir, log_files::segment_name(k))))
        return {errc::corruption, ap + ": archived segment file is missing (the log's segments " +
                                      std::to_string(start_seg) + " to " + std::to_string(hot_first - 1) +
                                      " live in " + adir + ", " + archive_file::kLocationName +
                                      "); is the archive's volume mounted?" + refusal_tail()};
    }
  }

  // The newest segment files. Segments are created (and pre-faulted) ahead
  // of the writer, up to prepare_ahead of them, and a crash can come while
  // one is being made, or leave ones the writer never reached. A header is
  // made durable before a segment is used, so a trailing file that holds
  // nothing past its header - whether its header is valid, zero, does not
  // decode, or the file is short - never held an event. Past the first
  // segment after the last one holding anything, such files are removed (or,
  // with a header that does not decode, moved into lost+found/), newest
  // first; that first one, when its header is valid, may be where the writer
  // had just rolled to and stays for the tail scan to judge. A file whose
  // header is not valid but which holds anything else is damage.
  const uint64_t cap = uint64_t{1} << l2;
  bool removed_trailing = false;
  struct trailing_file {
    std::string path;
    bool valid_header, zero_header, full, all_zero;
    status why;
  };
  std::vector<trailing_file> empties;  // newest first
  while (empties.size() < segs.size()) {
    const uint64_t k = segs[segs.size() - 1 - empties.size()];
    const std::string path = log_files::join(s.dir, log_files::segment_name(k));
    auto f = fs.open(path, file_system::open_mode::read_only);
    if (!f) return f.error();
    file_handle fh = f.value();
    std::byte hdr[segment_format::kHeaderSize + 16] = {};
    auto size = fs.file_size(fh);
    status rs = size && size.value() >= sizeof hdr ? fs.pread(fh, 0, hdr, sizeof hdr) : status{};
    fs.close(fh);
    if (!rs) return rs;
    segment_format::header h;
    status hs = segment_format::decode_header(hdr, path, h);
    if (hs.code() == errc::newer_format) return hs;
    const bool full = size && size.value() == cap;
    if (hs && full && !segment_format::is_zero(hdr + segment_format::kHeaderSize, 16)) break;  // in use
    auto empty = file_is_zero_from(fs, path, segment_format::kHeaderSize);
    if (!empty) return empty.error();
    const bool zero_hdr = segment_format::is_zero(hdr, segment_format::kHeaderSize);
    // Not all zero: garbage a power loss left in pages that were never
    // written, or records. Only records make it part of the log.
    bool records = false;
    if (!empty.value()) {
      auto holds = file_holds_records(fs, path, k, l2);
      if (!holds) return holds.error();
      records = holds.value();
    }
    if (records) {
      if (hs && full) break;  // the tail scan judges what is there
      if (repair && full && empties.empty()) {
        if (status r = rebuild_header(fs, id, k, path, lf, report); !r) return r;
        break;
      }
      return {errc::corruption, path + " offset 0: segment header " +
                                    (!full ? "of a file of " + std::to_string(size ? size.value() : 0) + " bytes"
                                     : zero_hdr ? std::string("is zero")
                                                : "does not decode (" + hs.message() + ")") +
                                    " but the segment holds records" + refusal_tail()};
    }
    if (strict && !hs) return {errc::corruption, path + " offset 0: segment header was never written"};
    empties.push_back({path, hs.ok(), zero_hdr, full, empty.value(), hs});
  }
  // The oldest of them, with a valid header, may be the writer's next (or a
  // fresh log's first) segment: kept, the tail scan decides.
  size_t drop = empties.size();
  if (drop > 0 && empties.back().valid_header && empties.back().full && empties.back().all_zero) --drop;
  for (size_t i = 0; i < drop; ++i) {
    deferred.push_back([&fs, &lf, &report, t = empties[i]]() -> status {
      if (t.all_zero && (t.valid_header || t.zero_header || !t.full)) {
        if (status r = fs.remove(t.path); !r) return r;
        report({recovery_action::kind::removed_empty, t.path, 0, 0,
                t.valid_header
                    ? "removed a segment file created ahead that the writer never reached (it held nothing)"
                    : "removed a segment file whose creation a crash interrupted (it held nothing)",
                "", 0});
      } else {
        auto kept = lf.keep_file(t.path);
        if (!kept) return kept.error();
        report({recovery_action::kind::set_aside, t.path, 0, 0,
                t.valid_header ? "segment file created ahead set aside: it holds no record, only bytes a "
                                 "power loss left"
                               : "newest segment file set aside: its header does not decode (" +
                                     t.why.message() + ") and it holds no record",
                kept.value(), 0});
      }
      return {};
    });
    segs.pop_back();
    removed_trailing = true;
  }
  if (removed_trailing) deferred.push_back([&fs, &s] { return fs.sync_dir(s.dir); });

  if (!ctl.valid && !segs.empty())
    report({recovery_action::kind::note, ctl_path, 0, 0,
            "no usable control block (" + ctl.why + "): recovery cannot tell acknowledged records "
            "from torn ones; whatever it cuts is kept in lost+found/", "", 0});

  // The log starts at segment 0, or where DIR/start says (its files in DIR
  // where DIR/archive's boundary says): a missing first file is a missing
  // start, whatever the mode.
  if ((!segs.empty() && segs.front() != hot_first) || (segs.empty() && hot_first > 0))
    return {errc::corruption, log_files::join(s.dir, log_files::segment_name(hot_first)) +
                                  ": segment file is missing: the log starts there" +
                                  (hot_first > start_seg ? std::string(" (after the archived segments, ") +
                                                               archive_file::kLocationName + ")"
                                   : start_seg > 0 ? std::string(" (") + start_file::kName + ")"
                                                   : std::string()) +
                                  (segs.empty() ? std::string(", but no segment file is left")
                                                : ", but its first file is " + log_files::segment_name(segs.front())) +
                                  "; restore the missing file(s) from a backup" };
  for (size_t i = 1; i < segs.size(); ++i) {
    if (segs[i] == segs[0] + i) continue;
    const std::string missing = log_files::join(s.dir, log_files::segment_name(segs[0] + i));
    if (mode != recovery_mode::point_in_time)
      return {errc::corruption, missing + ": segment file is missing (the log has a hole)" + refusal_tail()};
    // Point in time: the log ends before the hole; what follows goes aside
    // (newest first, so a crash part way leaves no new hole).
    if (status r = apply_deferred(); !r) return r;
    for (size_t j = segs.size(); j-- > i;) {
      const std::string path = log_files::join(s.dir, log_files::segment_name(segs[j]));
      auto kept = lf.keep_file(path);
      if (!kept) return kept.error();
      report({recovery_action::kind::set_aside, path, 0, 0,
              "segment after a missing one (" + missing + ") set aside", kept.value(), 0});
    }
    segs.resize(i);
    break;
  }

  if (segs.empty()) {
    if (guard.position > segment_format::kHeaderSize && !repair)
      return {errc::corruption, log_files::join(s.dir, log_files::segment_name(0)) +
                                    ": no segment file holds the log, but it reaches " + guard.what +
                                    refusal_tail()};
    if (status r = apply_deferred(); !r) return r;
    auto made = segment::create(s.fs, id, 0, segment::prefault::for_write);
    if (!made) return made.error();
    if (status r = fs.sync_dir(s.dir); !r) return r;
    s.active = made.value().get();
    table.install(std::move(made.value()));
    s.first_segment = 0;
    s.tail_segment = 0;
    s.write_off = segment_format::kHeaderSize;
    s.next_seq = 0;
    s.seg_first_seq = 0;
    return {};
  }
  s.first_segment = start_seg;
  const uint64_t last = segs.back();
  // The segment that holds the last acknowledged byte. A guard right at the
  // start of a segment's records (a roll-over with nothing written after it)
  // needs only the segment before, which ends with its segment-end record.
  const uint64_t guard_seg =
      guard.position <= segment_format::kHeaderSize ? 0
      : (guard.position & (cap - 1)) == segment_format::kHeaderSize ? (guard.position >> l2) - 1
                                                                     : (guard.position - 1) >> l2;
  if (guard.position > segment_format::kHeaderSize && guard_seg > last && !repair) {
    // More than one file past the newest: files were removed, or the word in
    // varve.ctl is damaged (it has no checksum; it is stored on every append).
    // Either way acknowledged events may be gone: refuse, and say both.
    const std::string far =
        guard_seg > last + 1 ? " (" + std::to_string(guard_seg - last) + " segments past the newest file " +
                                   log_files::segment_name(last) + ": segment files were removed, or " +
                                   log_files::kControlName + " is damaged)"
                             : "";
    return {errc::corruption, log_files::join(s.dir, log_files::segment_name(guard_seg)) +
                                  ": segment file is missing, but " + guard.what + " lies in it" + far +
                                  refusal_tail()};
  }

  // Find the first unsealed segment, walking back from the newest: open time
  // depends on the unsealed tail only, never on how many segments are sealed.
  // Archived segments are sealed: the walk stops at the first hot file.
  uint64_t first_unsealed = hot_first;
  for (uint64_t k = last + 1; k-- > hot_first;) {
    auto opened = segment::open(s.fs, id, k, map_access::read_write);
    if (!opened) {
      if (opened.error().code() == errc::corruption)
        return {errc::corruption, opened.error().message() + refusal_tail()};
      return opened.error();
    }
    segment* seg = opened.value().get();
    table.install(std::move(opened.value()));
    segment_format::footer f;
    status fs_status = seg->read_footer(f);
    if (fs_status) {
      first_unsealed = k + 1;
      break;
    }
    if (fs_status.code() != errc::not_found)
      report({recovery_action::kind::note, seg->path(), seg->records_end(), segment_format::kFooterSize,
              "damaged footer ignored; rescanning the segment: " + fs_status.message(), "", 0});
  }
  s.tail_segment = std::min(first_unsealed, last);

  // The head table: newest usable checkpoint, then the sealed segments after it.
  uint64_t next_seq = s.first_sequence;
  uint64_t replay_from = s.first_segment;
  if (auto idx_names = fs.list_dir(index_dir)) {
    std::vector<uint64_t> cps;
    for (const std::string& n : idx_names.value()) {
      if (n.ends_with(log_files::kPartialSuffix))
        deferred.push_back([&fs, path = log_files::join(index_dir, n)] {
          (void)fs.remove(path);
          return status{};
        });
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
        auto seg = table.get_lazy(cp);  // its footer only (an archived one is not inflated whole)
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
      // Derived data: renamed aside, rebuilt from the log.
      deferred.push_back([&fs, &report, path, why = r.message()] {
        (void)fs.rename(path, path + log_files::kDamagedSuffix);
        report({recovery_action::kind::set_aside, path, 0, 0,
                "head-table checkpoint rejected, renamed aside: " + why, path + log_files::kDamagedSuffix, 0});
        return status{};
      });
    }
  }
  if (start_seg > 0 && replay_from == start_seg)
    return {errc::corruption, index_dir + ": no usable head-table checkpoint at or after segment " +
                                  log_files::segment_name(start_seg) + ", where retention started the log: the "
                                  "heads of streams whose events were all removed cannot be rebuilt from what "
                                  "is left" + refusal_tail()};
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
                                    (r.problem.empty() ? "records disagree with the footer" : r.problem) +
                                    refusal_tail()};
    next_seq = r.next_sequence;
  }

  // Scan the unsealed tail. Nothing is modified until the tail is judged.
  struct pending_seal {
    segment* seg;
    segment_format::footer f;
  };
  std::vector<pending_seal> seals;
  segment* end_seg = nullptr;
  segment_scan end_scan;
  for (uint64_t k = first_unsealed; k <= last; ++k) {
    segment* seg = table.find(k);
    const uint64_t seq_in = next_seq;
    segment_scan r;
    while (true) {
      r = scan_segment(*seg, seq_in, true, [&](const event_view& v) {
        s.heads.advance(v.stream, v.stream_is_integer, v.version, v.position.value);
      });
      // skip_damaged: a damaged range followed by a valid batch that
      // continues the log becomes a hole; then the segment is scanned again
      // (re-applying the same heads is harmless).
      if (mode != recovery_mode::skip_damaged || r.problem.empty()) break;
      const uint64_t to = find_continuation(*seg, r, seg->records_end());
      if (to >= seg->records_end() || to - r.good_end < record::kHoleMinSize) break;
      if (status st = make_hole(fs, *seg, r.good_end, to, r.next_sequence,
                                sequence_at(*seg, to) - r.next_sequence, r.problem, lf, report);
          !st)
        return st;
    }
    next_seq = r.next_sequence;
    if (r.ended_by_marker) {
      // A segment the writer left (it began the next one); the last one was
      // left just before a crash: sealed now, the log goes on in a new file.
      seals.push_back({seg, {k, r.good_end, r.events + r.lost_events, r.first_sequence, r.last_position, 0}});
      if (k < last) continue;
      break;
    }
    end_seg = seg;
    end_scan = r;
    break;
  }

  if (end_seg) {
    const uint64_t base = end_seg->base_position();
    const uint64_t cut = end_scan.good_end;
    const uint64_t end_pos = base + cut;
    const bool damaged = !end_scan.problem.empty();
    const uint64_t problem_off = damaged ? end_scan.problem_offset : cut;
    if (guard.position > end_pos && !repair) {
      if (damaged)
        return {errc::corruption,
                end_seg->path() + " offset " + std::to_string(problem_off) + ": " + end_scan.problem +
                    ", before " + guard.what + ": damage, not a torn write" + refusal_tail()};
      return {errc::corruption, end_seg->path() + " offset " + std::to_string(cut) +
                                    ": the log ends here, before " + guard.what +
                                    ": acknowledged events are missing" + refusal_tail()};
    }
    // Past the guard. After a clean close in this boot that ended exactly
    // here, nothing was written past this point: skip reading the rest.
    const bool clean_close = !strict && !damaged && end_scan.clean_zero_end && ctl.same_boot &&
                             ctl.clean_end == end_pos;
    // Up to the end of the file: a footer area that holds anything in an
    // unsealed segment is garbage too (a power loss can leave it).
    const uint64_t dirty_end =
        clean_close ? cut : nonzero_end(end_seg->data(), cut, end_seg->capacity());
    // Within one boot a crash tears at most the batch in flight: a valid
    // record after the damage means something else wrote here.
    if (ctl.same_boot && mode == recovery_mode::torn_tail && dirty_end > cut) {
      const uint64_t after = find_valid_record(*end_seg, problem_off + 8, dirty_end);
      if (after < std::min(dirty_end, end_seg->records_end()))
        return {errc::corruption,
                end_seg->path() + " offset " + std::to_string(after) + ": a valid record follows " +
                    (damaged ? "the damaged one at offset " + std::to_string(problem_off) + " (" +
                                   end_scan.problem + ")"
                             : "the end of the log at offset " + std::to_string(cut)) +
                    "; within one boot a crash cannot leave that" + refusal_tail()};
    }
    if (strict && dirty_end > cut)
      return {errc::corruption, end_seg->path() + " offset " + std::to_string(problem_off) + ": " +
                                    (damaged ? end_scan.problem : "bytes after the end of the log")};
    std::vector<segment*> later;
    for (uint64_t j = end_seg->index() + 1; j <= last; ++j) later.push_back(table.find(j));
    std::vector<bool> later_empty;
    for (segment* seg : later) {
      const bool empty = segment_format::is_zero(seg->data() + segment_format::kHeaderSize,
                                                 seg->capacity() - segment_format::kHeaderSize);
      if (strict && !empty)
        return {errc::corruption, seg->path() + ": segment follows the end of the log"};
      if (!empty && ctl.same_boot && mode == recovery_mode::torn_tail &&
          find_valid_record(*seg, segment_format::kHeaderSize, seg->records_end()) < seg->records_end())
        return {errc::corruption, seg->path() + ": holds valid records, but the log ends in " +
                                      end_seg->path() + " at offset " + std::to_string(cut) +
                                      "; within one boot a crash cannot leave that" + refusal_tail()};
      later_empty.push_back(empty);
    }

    // Judged: from here on recovery changes the directory.
    if (status r = apply_deferred(); !r) return r;
    if (dirty_end > cut) {
      // Crash story: the copy is durable before a byte is zeroed, and the
      // zeroing is durable before anything new is appended here (else a
      // power loss could bring back records past the cut that would
      // validate after new records of the same size).
      const uint64_t events = count_valid_records(*end_seg, cut, std::min(dirty_end, end_seg->records_end()));
      auto kept = lf.keep_bytes(end_seg->path(), cut, end_seg->data() + cut, dirty_end - cut);
      if (!kept) return kept.error();
      std::fill(end_seg->data() + cut, end_seg->data() + dirty_end, std::byte{0});
      if (status r = fs.sync_range(end_seg->file(), end_seg->data() + cut, dirty_end - cut); !r) return r;
      report({recovery_action::kind::cut, end_seg->path(), cut, dirty_end - cut,
              damaged ? "cut the log at offset " + std::to_string(cut) + ": " + end_scan.problem +
                            " at offset " + std::to_string(problem_off)
                      : "cut non-zero bytes after the last record",
              kept.value(), events});
    }
    // Newest first: a crash part way leaves the files that remain
    // contiguous (removing the oldest first would leave a hole, which the
    // next open would rightly refuse).
    for (size_t i = later.size(); i-- > 0;) {
      const std::string path = later[i]->path();
      const uint64_t index = later[i]->index();
      table.evict(index);  // unmapped and closed first: the file can then go
      if (later_empty[i]) {
        if (status r = fs.remove(path); !r) return r;
        report({recovery_action::kind::removed_empty, path, 0, 0,
                "removed a pre-created segment file the writer never reached (it held nothing)", "", 0});
      } else {
        auto kept = lf.keep_file(path);
        if (!kept) return kept.error();
        report({recovery_action::kind::set_aside, path, 0, 0, "segment after the end of the log set aside",
                kept.value(), 0});
      }
    }
    if (!later.empty())
      if (status r = fs.sync_dir(s.dir); !r) return r;
  }

  for (pending_seal& p : seals)
    if (status r = background::write_footer(fs, *p.seg, p.f, nullptr); !r) return r;

  if (end_seg) {
    s.active = end_seg;
    s.write_off = end_scan.good_end;
    s.seg_events = end_scan.events + end_scan.lost_events;
    s.seg_first_seq = end_scan.first_sequence;
    s.seg_last_pos = end_scan.last_position;
  } else {
    // The last segment ended with a segment-end record: continue in a new one.
    if (guard.position > ((last + 1) << l2) + segment_format::kHeaderSize && !repair)
      return {errc::corruption, log_files::join(s.dir, log_files::segment_name(last + 1)) +
                                    ": segment file is missing, but " + guard.what + " lies in it" +
                                    refusal_tail()};
    if (status r = apply_deferred(); !r) return r;
    auto made = segment::create(s.fs, id, last + 1, segment::prefault::for_write);
    if (!made) return made.error();
    if (status r = fs.sync_dir(s.dir); !r) return r;
    s.active = made.value().get();
    table.install(std::move(made.value()));
    s.write_off = segment_format::kHeaderSize;
    s.seg_events = 0;
    s.seg_first_seq = next_seq;
    s.seg_last_pos = ~uint64_t{0};
  }
  s.next_seq = next_seq;
  return apply_deferred();
}

result<log_end> find_log_end(file_system& fs, segment_table& table, const std::string& dir,
                             uint64_t log_id, uint8_t log2, const ctl_state& ctl) {
  (void)log_id;
  log_end out;
  const recovery_guard guard = guard_from(ctl, log_files::join(dir, log_files::kControlName));
  auto names = fs.list_dir(dir);
  if (!names) return names.error();
  // Below DIR/start: files a retention pass had removed when a crash came;
  // below DIR/archive's boundary: ones an archive pass had (reads go to
  // the archive; segment_table::get opens the archived copy).
  auto lay = log_layout::read(fs, dir, log_id, names.value());
  if (!lay) return lay.error();
  const uint64_t start_seg = lay.value().hot_first;
  if (lay.value().archive) table.set_archive_dir(lay.value().archive->dir);
  std::vector<uint64_t> segs = lay.value().hot;
  // Trailing files that hold nothing past their header (created ahead, or
  // being created when a crash came) are no part of the log, as the writer's
  // recovery judges them; a file that holds something but does not map is
  // the damage the error names.
  while (!segs.empty()) {
    auto got = table.get(segs.back());
    if (got && !segment_format::is_zero(got.value()->data() + segment_format::kHeaderSize, 16)) break;
    const std::string path = log_files::join(dir, log_files::segment_name(segs.back()));
    auto empty = file_is_zero_from(fs, path, segment_format::kHeaderSize);
    if (!empty) return empty.error();
    if (!empty.value()) {
      auto holds = file_holds_records(fs, path, segs.back(), log2);
      if (!holds) return holds.error();
      if (holds.value()) {
        if (!got) return got.error();
        break;
      }
    }
    segs.pop_back();
  }
  if (segs.empty()) {
    out.end = guard.position;
    if (guard.position > segment_format::kHeaderSize)
      out.damage = status(errc::corruption, log_files::join(dir, log_files::segment_name(0)) +
                                                ": no segment file holds the log, but it reaches " + guard.what);
    return out;
  }
  out.first_segment = lay.value().start_segment;
  if (segs.front() != start_seg)
    out.damage = status(errc::corruption, log_files::join(dir, log_files::segment_name(start_seg)) +
                                              ": segment file is missing: the log starts there");
  for (size_t i = 1; i < segs.size() && out.damage.ok(); ++i)
    if (segs[i] != segs[0] + i)
      out.damage = status(errc::corruption, log_files::join(dir, log_files::segment_name(segs[0] + i)) +
                                                ": segment file is missing (the log has a hole)");
  const uint64_t last = segs.back();
  uint64_t first_unsealed = segs.front();
  for (uint64_t k = last + 1; k-- > segs.front();) {
    auto seg = table.get(k);
    if (!seg) return seg.error();
    segment_format::footer f;
    if (seg.value()->read_footer(f)) {
      first_unsealed = k + 1;
      break;
    }
  }
  // The sequence the tail starts with comes from the sealed segment before it.
  uint64_t next_seq = lay.value().first_sequence;
  if (first_unsealed > lay.value().start_segment) {
    auto seg = table.get_lazy(first_unsealed - 1);  // its footer only
    if (!seg) return seg.error();
    segment_format::footer f;
    if (status st = seg.value()->read_footer(f); !st) return st;
    next_seq = f.first_sequence + f.event_count;
  }
  out.end = (std::min(first_unsealed, last + 1) << log2) + segment_format::kHeaderSize;
  for (uint64_t k = first_unsealed; k <= last; ++k) {
    auto seg = table.get(k);
    if (!seg) return seg.error();
    segment_scan r = scan_segment(*seg.value(), next_seq, true, [](const event_view&) {});
    next_seq = r.next_sequence;
    out.end = seg.value()->base_position() + r.good_end;
    if (r.ended_by_marker) {
      out.end = ((k + 1) << log2) + segment_format::kHeaderSize;
      continue;
    }
    if (!r.problem.empty()) out.torn = seg.value()->path() + " offset " + std::to_string(r.problem_offset) + ": " + r.problem;
    break;
  }
  if (guard.position > out.end) {
    if (out.damage.ok())
      out.damage = status(errc::corruption, out.torn.empty()
                                                ? "the log ends at position " + std::to_string(out.end) +
                                                      ", before " + guard.what
                                                : out.torn + ", before " + guard.what);
    out.end = guard.position;
    out.torn.clear();
  }
  return out;
}

}  // namespace varve::detail
