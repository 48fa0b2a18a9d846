// verify and stat: the operator functions behind `varve verify` / `varve stat`.
// They read without the writer lock and never modify anything.
#include "varve/admin.h"

#include "engine/chain.h"

#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <filesystem>

#include "base/log_files.h"
#include "base/meta_file.h"
#include "base/scan.h"
#include "base/segment_format.h"
#include "base/log_layout.h"
#include "engine/writer_lock.h"
#include "base/start_file.h"
#include "engine/log_access.h"
#include "engine/log_state.h"
#include "varve/consumer_group.h"
#include "varve/metrics.h"
#include "varve/subscription.h"

namespace varve {
namespace {

// Where the log starts (DIR/start; segment 0 and sequence 0 without one).
result<start_file::record> log_start(file_system& fs, const std::string& dir) {
  segment_format::meta m;
  if (status s = meta_file::read(fs, dir, m); !s) return s;
  auto r = start_file::read(fs, dir, m.log_id);
  if (!r) return r.error();
  return r.value() ? *r.value() : start_file::record{m.log_id, 0, 0, 0};
}

// The log's segments: from its start on, the archived ones (FORMAT 1c)
// first (files below the start are ones a crash kept retention from
// removing; the next writer's open removes them). With `archive_dir`, where
// the archived ones are ("" when none are).
result<std::vector<uint64_t>> list_segments(file_system& fs, const std::string& dir,
                                            std::string* archive_dir = nullptr) {
  segment_format::meta m;
  if (status s = meta_file::read(fs, dir, m); !s) return s;
  auto lay = log_layout::read(fs, dir, m.log_id);
  if (!lay) return lay.error();
  if (archive_dir) *archive_dir = lay.value().archive_dir();
  return lay.value().all();
}

// Checks one sealed segment's records against its footer.
std::string footer_mismatch(const segment& seg, const segment_scan& r,
                            const segment_format::footer& f, uint64_t first_seq) {
  if (!r.ended_by_marker || r.good_end != f.data_end) return "records end where the footer does not say";
  // A footer counts sequence numbers: events, and those a repair's holes stand for.
  if (r.events + r.lost_events != f.event_count) return "event count disagrees with the footer";
  if (f.first_sequence != first_seq) return "first sequence disagrees with the footer";
  if (r.last_position != f.last_position) return "last position disagrees with the footer";
  const uint64_t n = f.data_end + record::kSegmentEndSize - segment_format::kHeaderSize;
  if (XXH3_64bits(seg.data() + segment_format::kHeaderSize, n) != f.data_checksum)
    return "data checksum disagrees with the footer";
  return {};
}

// Segment files are preallocated to the log's capacity: any other size is a
// truncated (or foreign) file, found without mapping it.
status check_segment_size(file_system& fs, const std::string& path, uint64_t cap) {
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  auto size = fs.file_size(f.value());
  fs.close(f.value());
  if (!size) return size.error();
  if (size.value() != cap)
    return status(errc::corruption, path + ": segment is " + std::to_string(size.value()) +
                                        " bytes, expected " + std::to_string(cap));
  return {};
}

// Allocated bytes of every file under `dir` (what `du` says), lstat'ing each:
// a file vanishing meanwhile (the sealer renames index files) only drops out.
uint64_t allocated_bytes(const std::string& dir) {
  namespace fsys = std::filesystem;
  uint64_t total = 0;
  std::error_code ec;
  for (fsys::recursive_directory_iterator it(dir, fsys::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

}  // namespace

namespace {

result<chain_report> chain_of(const std::string& dir, bool recompute,
                              const std::function<void(uint64_t, uint64_t)>& progress) {
  auto fs = posix_file_system();
  segment_format::meta m;
  if (status s = meta_file::read(*fs, dir, m); !s) return s;
  auto got = chain::read(*fs, dir, m.log_id);
  if (!got) return got.error();
  const chain::contents& c = got.value();
  chain_report rep;
  rep.entries = c.entries.size();
  rep.torn_tail = c.torn_tail;
  if (!c.entries.empty()) {
    rep.first_segment = c.entries.front().segment_index;
    rep.last_segment = c.entries.back().segment_index;
    rep.head = chain::to_hex(c.entries.back().hash);
  }
  segment::identity id{dir, m.log2_capacity, m.log_id};
  auto segs = list_segments(*fs, dir, &id.archive_dir);
  if (!segs) return segs.error();
  for (uint64_t k : segs.value()) {
    if (!c.entries.empty() && k <= rep.last_segment) continue;
    auto seg = segment::open(fs, id, k, map_access::read_only);
    if (!seg) continue;  // verify_log reports segment damage
    segment_format::footer f;
    if (seg.value()->read_footer(f)) ++rep.sealed_after;
  }
  if (!recompute) return rep;
  auto begin = log_start(*fs, dir);
  if (!begin) return begin.error();
  chain::digest prev{};
  for (size_t i = 0; i < c.entries.size(); ++i) {
    const chain::entry& e = c.entries[i];
    if (progress) progress(i, c.entries.size());
    // Retention removed this segment: its entry is the anchor the next one
    // chains from (the head still commits to it; nothing is left to rehash).
    if (e.segment_index < begin.value().first_segment) {
      prev = e.hash;
      continue;
    }
    const std::string path = log_files::join(dir, log_files::segment_name(e.segment_index));
    auto seg = segment::open(fs, id, e.segment_index, map_access::read_only);
    if (!seg) {
      rep.first_problem = status(errc::corruption, path + ": chained segment cannot be read: " +
                                                       seg.error().to_string());
      return rep;
    }
    const chain::digest d = chain::compute(*seg.value(), m.log_id, prev);
    if (d != e.hash) {
      rep.first_problem = status(
          errc::corruption, path + ": does not hash to chain entry " + std::to_string(i) + " (" +
                                log_files::join(dir, chain::kFileName) + " offset " +
                                std::to_string(chain::kHeaderSize + i * chain::kEntrySize) +
                                "): the segment, or a segment before it, was changed after it was sealed");
      return rep;
    }
    prev = d;
  }
  if (progress) progress(c.entries.size(), c.entries.size());
  return rep;
}

}  // namespace

result<chain_report> verify_chain(const std::string& dir, std::function<void(uint64_t, uint64_t)> progress) {
  return chain_of(dir, true, progress);
}

result<chain_report> read_chain(const std::string& dir) { return chain_of(dir, false, {}); }

result<verify_report> verify_log(const std::string& dir,
                                 std::function<void(uint64_t, uint64_t)> progress, verify_scope scope) {
  auto fs = posix_file_system();
  segment_format::meta m;
  if (status s = meta_file::read(*fs, dir, m); !s) return s;
  // Opened read-only only to learn how far a live writer has committed: bytes
  // past that may be a record being written right now, not damage.
  // With no writer alive, the read-only open also judged the tail against
  // the end varve.ctl recorded as acknowledged (it may have found damage).
  auto live = event_log::open_read_only(dir);
  const uint64_t commit = live ? live.value()->committed_position().value : UINT64_MAX;
  const bool writer_alive = live && writer_lock::is_held(dir);
  segment::identity id{dir, m.log2_capacity, m.log_id};
  auto segs = list_segments(*fs, dir, &id.archive_dir);
  if (!segs) return segs.error();
  const uint64_t cap = uint64_t{1} << m.log2_capacity;

  verify_report rep;
  rep.segments = segs.value().size();
  const uint64_t total = rep.segments * cap;
  auto log_begin = log_start(*fs, dir);
  if (!log_begin) return log_begin.error();
  const uint64_t start_seg = log_begin.value().first_segment;
  uint64_t next_seq = log_begin.value().first_sequence;
  auto problem = [&](std::string text) {
    rep.first_problem = status(errc::corruption, std::move(text));
    return rep;
  };
  if (live && !detail::log_access::state(*live.value()).damage.ok()) {
    rep.first_problem = detail::log_access::state(*live.value()).damage;
    return rep;
  }
  if (!segs.value().empty() && segs.value().front() != start_seg)
    return problem(log_files::join(dir, log_files::segment_name(start_seg)) +
                   ": segment file is missing: the log starts there");
  uint64_t end_pos = 0;
  size_t start = 0;
  if (scope == verify_scope::unsealed_tail) {
    // Every file is there and whole; the tail starts after the last segment
    // with a footer, and continues its sequence numbers.
    for (size_t i = 0; i < segs.value().size(); ++i) {
      const uint64_t k = segs.value()[i];
      if (i > 0 && k != segs.value()[i - 1] + 1)
        return problem(log_files::join(dir, log_files::segment_name(segs.value()[i - 1] + 1)) +
                       ": segment file is missing");
      const std::string path = log_files::join(dir, log_files::segment_name(k));
      if (!id.archive_dir.empty() && !fs->exists(path)) continue;  // archived: its file is checked when opened
      if (status st = check_segment_size(*fs, path, cap); !st) {
        if (st.code() != errc::corruption) return st;
        rep.first_problem = st;
        return rep;
      }
    }
    for (size_t i = segs.value().size(); i-- > 0;) {
      auto opened = segment::open(fs, id, segs.value()[i], map_access::read_only);
      if (!opened) return opened.error();
      segment_format::footer f;
      if (opened.value()->read_footer(f)) {
        start = i + 1;
        rep.sealed_segments = i + 1;  // a footer is written only once all before it have one
        next_seq = f.first_sequence + f.event_count;
        break;
      }
    }
  }
  if (start > 0) end_pos = ((segs.value()[start - 1] + 1) << m.log2_capacity) + segment_format::kHeaderSize;
  rep.first_checked = start < segs.value().size() ? segs.value()[start]
                                                   : (segs.value().empty() ? 0 : segs.value().back() + 1);
  for (size_t i = start; i < segs.value().size(); ++i) {
    const uint64_t k = segs.value()[i];
    // A live writer makes segments ahead of its commit position, each a file
    // of zeros until its header is written a moment later: nothing there was
    // acknowledged, so it is not judged (it was reported as damage when
    // caught mid-creation). Without a writer, such a file is still reported.
    if (writer_alive && (k << m.log2_capacity) > commit) break;
    if (i > 0 && k != segs.value()[i - 1] + 1)
      return problem(log_files::join(dir, log_files::segment_name(segs.value()[i - 1] + 1)) +
                     ": segment file is missing");
    auto opened = segment::open(fs, id, k, map_access::read_only);
    if (!opened) {
      rep.first_problem = opened.error();
      return rep;
    }
    const segment& seg = *opened.value();
    segment_format::footer f;
    status fst = seg.read_footer(f);
    if (!fst.ok() && fst.code() != errc::not_found) {
      rep.first_problem = fst;
      return rep;
    }
    segment_scan r = scan_segment(seg, next_seq, true, [&](const event_view& v) {
      rep.bytes += v.record_bytes;
    });
    rep.events += r.events;
    rep.holes += r.holes;
    rep.lost_events += r.lost_events;
    rep.scavenged_events += r.scavenged_events;
    const uint64_t base = seg.base_position();
    end_pos = r.ended_by_marker ? base + seg.capacity() + segment_format::kHeaderSize : base + r.good_end;
    if (!r.problem.empty() && base + r.problem_offset < commit)
      return problem(seg.path() + " offset " + std::to_string(r.problem_offset) + ": " + r.problem);
    if (fst.ok()) {
      ++rep.sealed_segments;
      if (std::string why = footer_mismatch(seg, r, f, next_seq); !why.empty())
        return problem(seg.path() + " offset " + std::to_string(seg.records_end()) + ": " + why);
    } else if (r.clean_zero_end && base + r.good_end < commit) {
      return problem(seg.path() + " offset " + std::to_string(r.good_end) +
                     ": the log ends before its committed position");
    } else if (r.clean_zero_end && r.good_end < seg.records_end() &&
               !segment_format::is_zero(seg.data() + r.good_end, seg.records_end() - r.good_end) &&
               !live) {
      return problem(seg.path() + " offset " + std::to_string(r.good_end) +
                     ": non-zero bytes after the last record");
    }
    next_seq = r.next_sequence;
    if (progress) progress((i + 1) * cap, total);
  }
  if (commit != UINT64_MAX && end_pos < commit)
    return problem(log_files::join(dir, log_files::segment_name(commit == 0 ? 0 : (commit - 1) / cap)) +
                   ": the log ends at position " + std::to_string(end_pos) +
                   ", before its committed position " + std::to_string(commit) +
                   " (a segment file is missing or short)");
  return rep;
}

result<log_stats> stat_log(const std::string& dir) {
  auto log = event_log::open_read_only(dir);
  if (!log) return log.error();
  log_stats st = log.value()->stats();
  auto fs = posix_file_system();
  segment_format::meta m;
  if (status s = meta_file::read(*fs, dir, m); !s) return s;
  auto lay = log_layout::read(*fs, dir, m.log_id);
  if (!lay) return lay.error();
  st.segments = lay.value().all().size();
  st.bytes_on_disk = allocated_bytes(dir);
  if (lay.value().archive) {
    st.archive_dir = lay.value().archive->dir;
    st.archived_segments = lay.value().hot_first - lay.value().start_segment;
    st.archive_bytes_on_disk = allocated_bytes(st.archive_dir);
  }
  return st;
}

namespace {

// Fills in how far behind the log's end a reader saved at `at` is.
consumer_lag lag_of(const event_log& log, const log_metrics& m, consumer_lag c) {
  if (c.at.is_none() || c.at.value >= m.committed.value) {
    if (!c.at.is_none() && c.at.value > m.committed.value)
      c.problem = "saved position " + std::to_string(c.at.value) + " is past the log's committed end " +
                  std::to_string(m.committed.value);
    return c;
  }
  c.lag_bytes = m.committed.value - c.at.value;
  auto behind = events_behind(log, c.at);
  if (!behind) {
    c.lag_events_known = false;
    c.problem = behind.error().to_string();
  } else {
    // The figures of one moment: never more than the metrics' own count.
    c.lag_events = std::min(behind.value(), m.next_sequence);
  }
  return c;
}

}  // namespace

result<uint64_t> events_behind(const event_log& log, position at) {
  const position end = log.committed_position();
  if (at.is_none() || at.value >= end.value) return uint64_t{0};
  const uint64_t events = log.next_sequence().value;
  // The sequence number of the next event it would read.
  log_reader r = log.read(at);
  r.without_upcasting();  // only its sequence number is wanted
  event_view v;
  auto more = r.next(v);
  if (!more) return more.error();
  if (!more.value()) return uint64_t{0};
  return events - std::min(events, v.sequence.value);
}

result<log_metrics> read_metrics(const std::string& dir, const metrics_options& o) {
  auto log = event_log::open_read_only(dir);
  if (!log) return log.error();
  log_metrics m = log.value()->metrics();
  if (o.disk) {
    auto segs = list_segments(*posix_file_system(), dir);
    if (!segs) return segs.error();
    m.segments = segs.value().size();
    m.bytes_on_disk = allocated_bytes(dir);
  }
  if (!o.consumers) return m;
  // A damaged subscription or group file is that reader's problem, reported
  // in its entry: the log's own figures are still worth having.
  if (auto store = subscription_store::open(dir)) {
    if (auto names = store.value().names()) {
      for (const std::string& n : names.value()) {
        consumer_lag c;
        c.what = consumer_lag::kind::subscription;
        c.name = n;
        auto p = store.value().load(n);
        if (!p) {
          c.lag_events_known = false;
          c.problem = p.error().to_string();
          m.consumers.push_back(std::move(c));
          continue;
        }
        c.at = p.value().value_or(position{0});
        m.consumers.push_back(lag_of(*log.value(), m, std::move(c)));
      }
    }
  }
  if (auto groups = consumer_group::list(dir)) {
    for (const std::string& g : groups.value()) {
      auto d = consumer_group::describe(dir, g);
      if (!d) {
        consumer_lag c;
        c.what = consumer_lag::kind::group;
        c.name = g;
        c.lag_events_known = false;
        c.problem = d.error().to_string();
        m.consumers.push_back(std::move(c));
        continue;
      }
      for (const group_partition_info& slot : d.value().slots) {
        consumer_lag c;
        c.what = consumer_lag::kind::group;
        c.name = g;
        c.partition = slot.partition;
        c.at = slot.committed;
        m.consumers.push_back(lag_of(*log.value(), m, std::move(c)));
      }
    }
  }
  return m;
}

}  // namespace varve
