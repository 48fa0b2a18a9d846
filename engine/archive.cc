#include "engine/archive.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "base/archive_file.h"
#include "base/log_files.h"

namespace varve::detail {

result<std::string> archive_dir_path(const std::string& dir) {
  if (dir.empty()) return status(errc::invalid_argument, "archive: no archive directory given");
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(dir, ec);
  if (ec) return status(errc::invalid_argument, dir + ": " + ec.message());
  std::string s = p.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

result<archive_result> run_archive(shared_log& sh, uint64_t sealed_end, const archive_options& o, uint64_t now_ns,
                                   bool dry_run) {
  std::lock_guard<std::mutex> g(sh.retention_mu);
  file_system& fs = sh.segments.fs();
  const segment::identity& id = sh.segments.identity();
  const uint8_t l2 = id.log2_capacity;
  const uint64_t cap = uint64_t{1} << l2;
  if (o.level < 1 || o.level > 19)
    return status(errc::invalid_argument, "archive: compression level " + std::to_string(o.level) +
                                              " is outside 1..19");
  if (o.frame_bytes < 4096 || (o.frame_bytes & (o.frame_bytes - 1)) != 0)
    return status(errc::invalid_argument, "archive: frame_bytes " + std::to_string(o.frame_bytes) +
                                              " is not a power of two of at least 4096");
  const uint8_t log2_frame =
      static_cast<uint8_t>(std::min<unsigned>(l2, static_cast<unsigned>(__builtin_ctz(o.frame_bytes))));
  auto dest = archive_dir_path(o.dir);
  if (!dest) return dest.error();
  auto log_dir = archive_dir_path(id.dir);
  if (log_dir && dest.value() == log_dir.value())
    return status(errc::invalid_argument, "archive: the archive directory cannot be the log's own (" + id.dir + ")");
  auto loc = archive_file::read_location(fs, id.dir, id.log_id);
  if (!loc) return loc.error();
  if (loc.value() && loc.value()->dir != dest.value())
    return status(errc::invalid_argument, "archive: " + id.dir + " is archived to " + loc.value()->dir +
                                              ", not " + dest.value() + " (a log has one archive)");
  archive_result res;
  res.dir = dest.value();
  const uint64_t from = std::max(sh.first_segment(), loc.value() ? loc.value()->archive_end : 0);
  uint64_t to = sealed_end;
  if (!o.before.is_none()) to = std::min(to, o.before.value >> l2);
  res.archive_end = std::max(from, loc.value() ? loc.value()->archive_end : 0);
  // Only what is sealed, and so immutable, is archived: the sealer may not
  // have finished the newest full segments yet (no footer).
  for (uint64_t k = from; k < to; ++k) {
    auto seg = sh.segments.get_lazy(k);  // its footer only
    if (!seg) return seg.error();
    segment_format::footer f;
    status st = seg.value()->read_footer(f);
    if (st.code() == errc::not_found) {
      to = k;
      break;
    }
    if (!st) return st;
  }
  if (to <= from) return res;
  res.segments_archived = to - from;
  res.raw_bytes = res.segments_archived * cap;
  res.archive_end = to;
  if (dry_run) return res;

  // The archive directory and any parents missing, each made durable in
  // its parent (a power loss must not take away a directory whose files
  // DIR/archive vouches for).
  if (!fs.exists(dest.value())) {
    std::vector<std::string> missing;
    for (std::filesystem::path p = dest.value(); !p.empty() && !fs.exists(p.string()); p = p.parent_path()) {
      missing.push_back(p.string());
      if (p == p.parent_path()) break;
    }
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      if (status st = fs.create_dir(*it); !st) return st;
      if (status st = fs.sync_dir(std::filesystem::path(*it).parent_path().string()); !st) return st;
    }
  }
  for (uint64_t k = from; k < to; ++k) {
    // A file already there is a leftover of this log's own interrupted pass
    // (overwritten), unless it is another log's: two logs pointed at one
    // directory would otherwise overwrite each other's history.
    const std::string there = log_files::join(dest.value(), archive_file::segment_file_name(k));
    if (fs.exists(there))
      if (auto owner = archive_file::segment_owner(fs, there); owner && *owner != id.log_id)
        return status(errc::invalid_argument, "archive: " + there + " belongs to another log: " + dest.value() +
                                                  " is that log's archive; give this log a directory of its own");
    auto seg = sh.segments.get(k);
    if (!seg) return seg.error();
    auto n = archive_file::write_segment(fs, dest.value(), seg.value()->data(), l2, k, id.log_id, o.level,
                                         log2_frame);
    if (!n) return n.error();
    res.archived_bytes += n.value();
  }
  if (status st = archive_file::write_location(fs, id.dir, {id.log_id, to, now_ns, dest.value()}); !st) return st;
  // From here the archive is the segments' home: this process's readers
  // find a file that is gone there; those of other processes re-read
  // DIR/archive when they meet a missing file (shared_log::segment_for_read).
  sh.segments.set_archive_dir(dest.value());
  for (uint64_t k = from; k < to; ++k)
    if (status st = fs.remove(log_files::join(id.dir, log_files::segment_name(k))); !st) return st;
  if (status st = fs.sync_dir(id.dir); !st) return st;
  return res;
}

}  // namespace varve::detail
