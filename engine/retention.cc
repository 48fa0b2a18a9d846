#include "engine/retention.h"

#include <algorithm>
#include <chrono>

#include "base/log_files.h"
#include "base/archive_file.h"
#include "base/start_file.h"

namespace varve::detail {

result<retention_result> run_retention(shared_log& sh, uint64_t sealed_end, const retention_policy& p,
                                       uint64_t now_ns, bool dry_run, recovery_observer* observer) {
  std::lock_guard<std::mutex> g(sh.retention_mu);
  if (!dry_run) sh.drop_expired_pages();
  file_system& fs = sh.segments.fs();
  const segment::identity& id = sh.segments.identity();
  const uint8_t l2 = id.log2_capacity;
  const uint64_t cap = uint64_t{1} << l2;
  const uint64_t first = sh.first_segment();
  retention_result res;
  res.first_segment = first;
  res.start = position{sh.start_position()};
  res.first_sequence = sequence{sh.first_sequence()};
  if (p.empty()) return res;

  // What the policy condemns: segments below `want`.
  uint64_t want = first;
  if (!p.before.is_none()) want = std::max(want, p.before.value >> l2);
  if (p.max_bytes) {
    // The active segment counts: the log's files are [first, sealed_end].
    const uint64_t keep = std::max<uint64_t>(1, p.max_bytes / cap);
    if (sealed_end + 1 > keep) want = std::max(want, sealed_end + 1 - keep);
  }
  if (p.max_age_ns) {
    const uint64_t cutoff = now_ns > p.max_age_ns ? now_ns - p.max_age_ns : 0;
    // The index's running maximum of timestamps through a segment: below the
    // cutoff, every event of it and of all before it is older.
    for (uint64_t k = std::max(first, want); k < sealed_end; ++k) {
      auto seg = sh.segments.get_lazy(k);  // its index only
      if (!seg) return seg.error();
      const segment_index::view* ix = sh.indexes.get(*seg.value());
      if (!ix) {
        res.held_back = seg.value()->path() + " has no stream index yet (its timestamps are not known)";
        break;
      }
      if (ix->max_timestamp_through() >= cutoff) break;
      want = k + 1;
    }
  }

  // What recovery can stand on: a head-table checkpoint at or after the new
  // start (the heads of streams whose events all go live only there), and
  // the segment it names (its footer vouches for it). So the newest
  // checkpoint's segment, and all after it, stay.
  uint64_t bound = first;
  const std::string index_dir = log_files::join(id.dir, log_files::kIndexDir);
  if (auto names = fs.list_dir(index_dir))
    for (const std::string& n : names.value())
      if (auto cp = log_files::parse_heads_name(n); cp && *cp < sealed_end) bound = std::max(bound, *cp);
  uint64_t to = std::min(want, bound);
  if (want > bound && res.held_back.empty())
    res.held_back = bound > first || want > first
                        ? log_files::segment_name(bound) +
                              " holds the newest head-table checkpoint: it and the segments after it stay"
                        : "no head-table checkpoint yet";
  if (to <= first) return res;

  auto seg = sh.segments.get_lazy(to);  // its footer only
  if (!seg) return seg.error();
  segment_format::footer f;
  if (status st = seg.value()->read_footer(f); !st) return st;
  res.segments_removed = to - first;
  res.bytes_removed = res.segments_removed * cap;
  res.events_removed = f.first_sequence - sh.first_sequence();
  res.first_segment = to;
  res.start = position{start_file::start_position(to, l2)};
  res.first_sequence = sequence{f.first_sequence};
  if (dry_run) return res;

  if (status st = start_file::write(fs, id.dir, {id.log_id, to, f.first_sequence, now_ns}); !st) return st;
  // Readers of this process stop at the start from here on, those of other
  // processes at their next slow step (the doorbell); the removed segments
  // stay mapped for the grace period (views into them stay valid).
  sh.set_start(to, f.first_sequence);
  if (sh.ctl) sh.ctl->start_hint().store(to, std::memory_order_release);
  // Archived segments (FORMAT 1c) go from the archive directory.
  auto loc = archive_file::read_location(fs, id.dir, id.log_id);
  if (!loc) return loc.error();
  for (uint64_t k = first; k < to; ++k) {
    const bool archived = loc.value() && k < loc.value()->archive_end;
    const std::string path = archived ? log_files::join(loc.value()->dir, archive_file::segment_file_name(k))
                                      : log_files::join(id.dir, log_files::segment_name(k));
    if (status st = fs.remove(path); !st && !(archived && st.code() == errc::not_found)) return st;
    (void)fs.remove(log_files::join(index_dir, log_files::sidx_name(k)));  // derived data
  }
  if (auto names = fs.list_dir(index_dir))
    for (const std::string& n : names.value())
      if (auto cp = log_files::parse_heads_name(n); cp && *cp < to)
        (void)fs.remove(log_files::join(index_dir, n));
  if (status st = fs.sync_dir(id.dir); !st) return st;
  if (loc.value() && first < loc.value()->archive_end)
    if (status st = fs.sync_dir(loc.value()->dir); !st) return st;
  if (sh.retention_grace_ns == 0) sh.drop_expired_pages();
  if (observer)
    observer->on_action({recovery_action::kind::note, id.dir, res.start.value, res.bytes_removed,
                         "retention removed segments " + log_files::segment_name(first) + " to " +
                             log_files::segment_name(to - 1) + " (" + std::to_string(res.events_removed) +
                             " events); the log now starts at position " + std::to_string(res.start.value),
                         "", 0});
  return res;
}

}  // namespace varve::detail
