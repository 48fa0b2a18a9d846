// repair_log (`varve recover`): the explicit repair of a log that recovery
// refused. It does what recovery will not do on its own - cut or hole damage
// below the acknowledged end, sealed segments included - and nothing
// silently: every byte it takes out goes into DIR/lost+found/ first, every
// action is reported, and the report says what was kept and what was lost.
//
// Shape: (1) a read-only pass over the sealed segments (their records against
// their footers), (2) the changes that pass calls for in sealed segments,
// (3) a writer's open in the repair mode, which handles the unsealed tail,
// missing files, damaged headers and a poisoned control block the same way
// recovery would, only allowed to repair; (4) a verify of the result.
#include <algorithm>
#include <mutex>

#include "base/log_files.h"
#include "base/meta_file.h"
#include "base/scan.h"
#include "base/archive_file.h"
#include "base/start_file.h"
#include "engine/background.h"
#include "engine/control_block.h"
#include "engine/log_access.h"
#include "engine/lost_found.h"
#include "engine/recovery.h"
#include "engine/segment_table.h"
#include "engine/writer_lock.h"
#include "varve/admin.h"

namespace varve {
namespace {

using detail::reporter;

// Collects every action for the report and passes it on.
struct collector final : recovery_observer {
  recovery_observer* next = nullptr;
  repair_report* rep = nullptr;
  std::mutex mu;
  void on_truncated(const std::string& file, uint64_t offset, uint64_t bytes,
                    const std::string& why) override {
    on_action({recovery_action::kind::note, file, offset, bytes, why, "", 0});
  }
  void on_action(const recovery_action& a) override {
    std::lock_guard<std::mutex> g(mu);
    rep->actions.push_back(a);
    if (a.what != recovery_action::kind::note) rep->damaged = true;
    rep->records_set_aside += a.events;
    if (next) next->on_action(a);
  }
};

// A damaged range of a sealed segment and what skip_damaged puts there.
struct hole_plan {
  uint64_t from, to;             // offsets in the segment
  uint64_t first_seq, count;     // the sequence numbers it stands for
  std::string why;
};

// The holes that make a damaged sealed segment scan again: each damaged
// range runs to the next batch that continues the log, or to where the
// footer says the records end (the segment-end record is then rewritten).
result<std::vector<hole_plan>> plan_holes(const segment& seg, const segment_format::footer& f) {
  std::vector<hole_plan> holes;
  uint64_t off = segment_format::kHeaderSize;
  uint64_t seq = f.first_sequence;
  const uint64_t end_seq = f.first_sequence + f.event_count;
  while (true) {
    segment_scan r = scan_segment(seg, seq, true, [](const event_view&) {}, off);
    if (r.ended_by_marker && r.good_end == f.data_end && r.next_sequence == end_seq) break;
    hole_plan h;
    h.from = r.good_end;
    h.first_seq = r.next_sequence;
    h.why = r.problem.empty() ? "records end where the footer does not say" : r.problem;
    if (!r.problem.empty()) {
      const uint64_t to = detail::find_continuation(seg, r, f.data_end);
      if (to < f.data_end) {
        h.to = to;
        h.count = detail::sequence_at(seg, to) - h.first_seq;
        holes.push_back(h);
        off = to;
        seq = h.first_seq + h.count;
        continue;
      }
    }
    h.to = f.data_end;
    if (end_seq < h.first_seq || h.to < h.from)
      return status(errc::corruption, seg.path() + " offset " + std::to_string(h.from) +
                                          ": the footer contradicts the records before the damage; "
                                          "repair this segment point-in-time");
    h.count = end_seq - h.first_seq;
    if (h.to > h.from) holes.push_back(h);
    break;
  }
  for (const hole_plan& h : holes)
    if (h.to - h.from < record::kHoleMinSize)
      return status(errc::corruption, seg.path() + " offset " + std::to_string(h.from) +
                                          ": a damaged range of " + std::to_string(h.to - h.from) +
                                          " bytes is too short for a hole record; repair point-in-time");
  return holes;
}

// Derived files that describe segments from `first` on: renamed .damaged so
// the writer's open rebuilds them from the repaired log.
void set_derived_aside(file_system& fs, const std::string& dir, uint64_t first, bool all_heads_after,
                       reporter& report) {
  const std::string index_dir = log_files::join(dir, log_files::kIndexDir);
  auto names = fs.list_dir(index_dir);
  if (!names) return;
  for (const std::string& n : names.value()) {
    const auto heads = log_files::parse_heads_name(n);
    const auto sidx = log_files::parse_sidx_name(n);
    const bool stale = (heads && *heads >= first && all_heads_after) || (sidx && *sidx >= first);
    if (!stale) continue;
    const std::string path = log_files::join(index_dir, n);
    if (fs.rename(path, path + log_files::kDamagedSuffix))
      report({recovery_action::kind::set_aside, path, 0, 0,
              "derived index file describes repaired segments: renamed aside (rebuilt from the log)",
              path + log_files::kDamagedSuffix, 0});
  }
}

}  // namespace

result<repair_report> repair_log(const std::string& dir, const repair_options& o) {
  if (o.mode != recovery_mode::point_in_time && o.mode != recovery_mode::skip_damaged)
    return status(errc::invalid_argument, "repair_log: the mode must be point_in_time or skip_damaged");
  auto fs = posix_file_system();
  segment_format::meta meta;
  if (status s = meta_file::read(*fs, dir, meta); !s) return s;
  segment::identity id{dir, meta.log2_capacity, meta.log_id};
  repair_report rep;
  collector col;
  col.next = o.observer;
  col.rep = &rep;
  detail::lost_found lf(*fs, dir);
  reporter report = o.dry_run ? reporter([&col](recovery_action a) { col.on_action(a); })
                              : detail::make_reporter(&col, lf);

  const ctl_state ctl = control_block::read_state(*fs, dir, meta.log_id);
  const detail::recovery_guard guard =
      detail::guard_from(ctl, log_files::join(dir, log_files::kControlName));
  rep.end_before = position{guard.position};

  std::unique_ptr<writer_lock> lock;
  if (o.dry_run) {
    if (writer_lock::is_held(dir))
      return status(errc::locked, dir + ": a writer has the log open; close it before a repair");
  } else {
    auto l = writer_lock::acquire(dir);
    if (!l) return l.error();
    lock = std::move(l.value());
  }

  // (0) Where the log starts (retention, DIR/start). The sealed segments are
  // checked from there, against its sequence. A record that does not decode
  // is rebuilt from the oldest segment file left (sealed: its footer gives
  // the sequence), after the damaged file is kept in lost+found/: files below
  // the true start that a crash left only make the log longer, never lose
  // an event.
  auto names = fs->list_dir(dir);
  if (!names) return names.error();
  std::vector<uint64_t> segs = log_files::segment_indices(names.value());
  uint64_t start_seg = 0, start_seq = 0;
  {
    auto start = start_file::read(*fs, dir, meta.log_id);
    if (start && start.value()) {
      start_seg = start.value()->first_segment;
      start_seq = start.value()->first_sequence;
    } else if (!start) {
      if (start.error().code() != errc::corruption || segs.empty()) return start.error();
      segment_table probe(fs, id);
      auto oldest = probe.get(segs.front());
      segment_format::footer f;
      if (!oldest || !oldest.value()->read_footer(f))
        return status(errc::corruption, start.error().message() + "; it cannot be rebuilt: the oldest segment file, " +
                                            log_files::segment_name(segs.front()) + ", is not sealed");
      start_seg = segs.front();
      start_seq = f.first_sequence;
      const std::string path = log_files::join(dir, start_file::kName);
      if (o.dry_run) {
        report({recovery_action::kind::note, path, 0, start_file::kSize,
                "would rebuild the start record (segment " + std::to_string(start_seg) + ", sequence " +
                    std::to_string(start_seq) + "): " + start.error().message(),
                "", 0});
        rep.damaged = true;
      } else {
        // Copied aside first, then replaced atomically: a crash in between
        // leaves the damaged record, and the repair can simply run again.
        std::vector<std::byte> old(4096);
        size_t n = 0;
        if (auto f = fs->open(path, file_system::open_mode::read_only)) {
          auto size = fs->file_size(f.value());
          n = size ? static_cast<size_t>(std::min<uint64_t>(size.value(), old.size())) : 0;
          status rs = n ? fs->pread(f.value(), 0, old.data(), n) : status{};
          fs->close(f.value());
          if (!rs) return rs;
        }
        auto kept = lf.keep_bytes(path, 0, old.data(), n);
        if (!kept) return kept.error();
        if (status s = start_file::write(*fs, dir, {meta.log_id, start_seg, start_seq, 0}); !s) return s;
        report({recovery_action::kind::rebuilt, path, 0, start_file::kSize,
                "start record rebuilt from the oldest segment file (" + log_files::segment_name(start_seg) +
                    ", sequence " + std::to_string(start_seq) + "): " + start.error().message(),
                kept.value(), 0});
      }
    }
  }
  std::erase_if(segs, [&](uint64_t k) { return k < start_seg; });
  // The archive tier's segments (FORMAT 1c) are checked like the rest, read
  // from their archive files; a damaged one is reported, not rewritten (an
  // archive file is repaired by restoring it, or by archiving again from a
  // copy of the segment).
  {
    auto loc = archive_file::read_location(*fs, dir, meta.log_id);
    if (!loc) return loc.error();
    if (loc.value() && loc.value()->archive_end > start_seg) {
      id.archive_dir = loc.value()->dir;
      std::erase_if(segs, [&](uint64_t k) { return k < loc.value()->archive_end; });
      std::vector<uint64_t> all;
      for (uint64_t k = start_seg; k < loc.value()->archive_end; ++k) all.push_back(k);
      segs.insert(segs.begin(), all.begin(), all.end());
    }
  }

  // (1) The sealed segments: records against footers, read-only.
  const uint64_t cap = uint64_t{1} << meta.log2_capacity;
  struct damaged_segment {
    uint64_t index;
    segment_format::footer f;
    uint64_t offset;
    std::string why;
  };
  std::vector<damaged_segment> damaged;
  {
    segment_table table(fs, id);
    uint64_t next_seq = start_seq;
    bool counting = true;
    for (size_t i = 0; i < segs.size() && (i == 0 || segs[i] == segs[i - 1] + 1); ++i) {
      const uint64_t k = segs[i];
      auto seg = table.get(k);
      if (!seg && (seg.error().code() == errc::corruption || seg.error().code() == errc::not_a_log) &&
          i + 1 < segs.size()) {
        // A header is fully determined by the log and the file's index: a
        // damaged one (of a segment that is not the newest) is rewritten.
        const std::string path = log_files::join(dir, log_files::segment_name(k));
        if (o.dry_run) {
          report({recovery_action::kind::note, path, 0, segment_format::kHeaderSize,
                  "would rebuild the segment header: " + seg.error().message(), "", 0});
          rep.damaged = true;
          break;
        }
        if (status s = detail::rebuild_header(*fs, id, k, path, lf, report); !s) return s;
        seg = table.get(k);
      }
      if (!seg) break;  // the newest file: the writer's open judges it
      segment_format::footer f;
      if (!seg.value()->read_footer(f)) break;  // the unsealed tail starts here
      segment_scan r = scan_segment(*seg.value(), next_seq, true, [](const event_view&) {});
      const bool ok = r.ended_by_marker && r.good_end == f.data_end &&
                      r.events + r.lost_events == f.event_count && f.first_sequence == next_seq;
      if (counting) rep.events_before += r.events;
      if (o.progress) o.progress((i + 1) * cap, segs.size() * cap);
      if (ok) {
        next_seq = r.next_sequence;
        continue;
      }
      counting = false;
      const uint64_t off = r.problem.empty() ? r.good_end : r.problem_offset;
      const std::string why = r.problem.empty() ? "records disagree with the footer" : r.problem;
      damaged.push_back({k, f, off, why});
      report({recovery_action::kind::note, seg.value()->path(), off, 0, "damaged sealed segment: " + why, "", 0});
      if (o.mode == recovery_mode::point_in_time) break;
      next_seq = f.first_sequence + f.event_count;  // the footer says where the next one continues
    }
    if (o.dry_run) {
      // The tail, judged as a read-only open would.
      auto end = detail::find_log_end(*fs, table, dir, meta.log_id, meta.log2_capacity, ctl);
      if (!end) {
        report({recovery_action::kind::note, dir, 0, 0, "tail: " + end.error().to_string(), "", 0});
        rep.damaged = true;
      } else {
        if (!end.value().damage.ok()) {
          report({recovery_action::kind::note, dir, 0, 0,
                  "tail: " + end.value().damage.message() +
                      (o.mode == recovery_mode::point_in_time
                           ? ": the log would end before it, the rest kept in lost+found/"
                           : ": damaged batches followed by valid ones would become holes, the rest cut; "
                             "all bytes kept in lost+found/"),
                  "", 0});
          rep.damaged = true;
        }
        if (!end.value().torn.empty())
          report({recovery_action::kind::note, dir, 0, 0,
                  "tail: a torn write past the acknowledged end would be cut (bytes kept): " + end.value().torn,
                  "", 0});
      }
      if (ctl.valid && ctl.poisoned && ctl.same_boot) {
        report({recovery_action::kind::note, log_files::join(dir, log_files::kControlName), 0, 0,
                "a sync failed in this boot: the pages after position " + std::to_string(ctl.poison_from) +
                    " would be written again from the page cache and synced",
                "", 0});
        rep.damaged = true;
      }
      for (const damaged_segment& d : damaged) {
        if (o.mode == recovery_mode::point_in_time) {
          report({recovery_action::kind::note, log_files::join(dir, log_files::segment_name(d.index)), d.offset, 0,
                  "would end the log here: the rest of this segment and every later segment file "
                  "would go to lost+found/",
                  "", 0});
        } else {
          auto seg = table.get(d.index);
          if (!seg) continue;
          auto holes = plan_holes(*seg.value(), d.f);
          if (!holes) {
            report({recovery_action::kind::note, seg.value()->path(), d.offset, 0, holes.error().message(), "", 0});
            continue;
          }
          for (const hole_plan& h : holes.value())
            report({recovery_action::kind::note, seg.value()->path(), h.from, h.to - h.from,
                    "would become a hole standing for " + std::to_string(h.count) + " event(s): " + h.why, "", 0});
        }
      }
      rep.damaged |= !damaged.empty();
      return rep;
    }
  }

  // (2) Changes in sealed segments.
  if (!damaged.empty() && o.mode == recovery_mode::point_in_time) {
    const damaged_segment& d = damaged.front();
    // Newest first: a crash part way leaves the remaining files contiguous.
    for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
      const uint64_t k = *it;
      if (k <= d.index) continue;
      const std::string path = log_files::join(dir, log_files::segment_name(k));
      auto kept = lf.keep_file(path);
      if (!kept) return kept.error();
      report({recovery_action::kind::set_aside, path, 0, 0, "segment after the repaired point set aside",
              kept.value(), 0});
    }
    // Unseal the damaged segment: the writer's open then scans it as the
    // tail and ends the log before the damage (keeping the bytes).
    auto seg = segment::open(fs, id, d.index, map_access::read_write);
    if (!seg) return seg.error();
    std::byte* foot = seg.value()->data() + cap - segment_format::kFooterSize;
    auto kept = lf.keep_bytes(seg.value()->path(), cap - segment_format::kFooterSize, foot,
                              segment_format::kFooterSize);
    if (!kept) return kept.error();
    std::fill(foot, foot + segment_format::kFooterSize, std::byte{0});
    if (status s = fs->sync_range(seg.value()->file(), foot, segment_format::kFooterSize); !s) return s;
    report({recovery_action::kind::cut, seg.value()->path(), cap - segment_format::kFooterSize,
            segment_format::kFooterSize, "footer of the damaged segment removed: the log ends in it",
            kept.value(), 0});
    set_derived_aside(*fs, dir, d.index, true, report);
  }
  if (!damaged.empty() && o.mode == recovery_mode::skip_damaged) {
    for (const damaged_segment& d : damaged) {
      auto seg = segment::open(fs, id, d.index, map_access::read_write);
      if (!seg) return seg.error();
      auto holes = plan_holes(*seg.value(), d.f);
      if (!holes) return holes.error();
      for (const hole_plan& h : holes.value()) {
        if (status s = detail::make_hole(*fs, *seg.value(), h.from, h.to, h.first_seq, h.count, h.why, lf, report);
            !s)
          return s;
        rep.lost_events += h.count;
      }
      // The records now end where the footer said; its marker may have been
      // in the damage.
      record::encode_segment_end(seg.value()->data() + d.f.data_end, seg.value()->base_position() + d.f.data_end);
      segment_scan r = scan_segment(*seg.value(), d.f.first_sequence, true, [](const event_view&) {});
      if (!r.ended_by_marker || r.good_end != d.f.data_end)
        return status(errc::corruption, seg.value()->path() + " offset " + std::to_string(r.problem_offset) +
                                            ": still damaged after the holes: " + r.problem);
      segment_format::footer nf = d.f;
      nf.last_position = r.last_position;
      if (status s = background::write_footer(*fs, *seg.value(), nf, nullptr); !s) return s;
      report({recovery_action::kind::rebuilt, seg.value()->path(), cap - segment_format::kFooterSize,
              segment_format::kFooterSize, "footer rewritten over the repaired records", "", 0});
      set_derived_aside(*fs, dir, d.index, true, report);
    }
  }

  // (3) The tail, missing files, headers, a poisoned control block.
  log_options lo;
  lo.recovery = o.mode;
  lo.observer = &col;
  lo.prepare_next_segment = false;
  {
    auto opened = detail::log_access::open_locked(dir, lo, std::move(lock));
    if (!opened) return opened.error();
    rep.end_after = opened.value()->committed_position();
    if (status s = opened.value()->close(); !s) return s;
  }
  // (4) The repaired log, checked whole.
  auto v = verify_log(dir);
  if (!v) return v.error();
  if (!v.value().first_problem.ok())
    return status(errc::corruption, "still damaged after the repair: " + v.value().first_problem.message());
  rep.events_after = v.value().events;
  rep.lost_events = v.value().lost_events;
  return rep;
}

}  // namespace varve
