// `varve index verify|rebuild`: the per-aggregate index checked against, or
// rebuilt from, the log alone.
#include <algorithm>
#include <cstring>

#include "engine/index_table.h"
#include "base/log_layout.h"
#include "base/start_file.h"
#include "base/log_files.h"
#include "base/meta_file.h"
#include "base/scan.h"
#include "engine/segment_table.h"
#include "engine/writer_lock.h"
#include "index/head_table.h"
#include "index/heads_file.h"
#include "index/index_file.h"
#include "varve/admin.h"

namespace varve {
namespace {

struct sealed_prefix {
  segment::identity id;
  uint64_t first = 0, end = 0;  // sealed segments [first, end)
  std::vector<std::string> index_names;
  // Retention removed what came before `first` (DIR/start): the sequence to
  // start from, and the heads are complete only from a checkpoint on.
  bool retained = false;
  uint64_t first_sequence = 0;
};

// The log's sealed segments are a prefix of its segment files: the first one
// without a valid footer is where the writer is (or was).
result<sealed_prefix> find_sealed(file_system& fs, segment_table& table, const std::string& dir) {
  sealed_prefix p;
  p.id = table.identity();
  // From the log's start (files below it are ones a crash kept retention
  // from removing; the next writer's open removes them), the archived
  // segments first (the table opens them from the archive).
  auto lay = log_layout::read(fs, dir, p.id.log_id);
  if (!lay) return lay.error();
  std::vector<uint64_t> segs = lay.value().all();
  p.retained = lay.value().start_segment > 0;
  p.first_sequence = lay.value().first_sequence;
  if (lay.value().archive) table.set_archive_dir(lay.value().archive->dir);
  if (segs.empty()) return p;
  p.first = p.end = segs.front();
  for (uint64_t k : segs) {
    if (k != p.end) break;
    auto seg = table.get_lazy(k);  // its footer only
    if (!seg) return seg.error();
    segment_format::footer f;
    if (!seg.value()->read_footer(f)) break;
    p.end = k + 1;
  }
  if (auto ix = fs.list_dir(log_files::join(dir, log_files::kIndexDir))) p.index_names = ix.value();
  return p;
}

struct opened_log {
  std::shared_ptr<file_system> fs = posix_file_system();
  segment_format::meta meta;
  std::unique_ptr<segment_table> table;
};

result<opened_log> open_for_index(const std::string& dir) {
  opened_log o;
  if (status s = meta_file::read(*o.fs, dir, o.meta); !s) return s;
  o.table = std::make_unique<segment_table>(o.fs, segment::identity{dir, o.meta.log2_capacity, o.meta.log_id});
  return o;
}

// Heads of every stream after each sealed segment, fed one segment at a time.
void advance_heads(const segment& seg, uint64_t& next_seq, head_table& heads, uint64_t& events) {
  segment_scan r = scan_segment(seg, next_seq, true, [&](const event_view& v) {
    heads.advance(v.stream, v.stream_is_integer, v.version, v.position.value);
  });
  next_seq = r.next_sequence;
  events += r.events;
}

// Whether every stream of `part` has the same head in `whole` (a log whose
// start retention moved: streams whose events all went are only in `whole`).
bool heads_within(const head_table& part, const head_table& whole) {
  bool same = true;
  part.for_each([&](std::string_view stream, bool, const head_table::head& h) {
    const head_table::head* o = whole.find(stream, whole.hash(stream));
    if (!o || o->version != h.version || o->last_position != h.last_position) same = false;
  });
  return same;
}

void copy_heads(const head_table& from, head_table& to) {
  to.clear();
  from.for_each([&](std::string_view stream, bool is_int, const head_table::head& h) {
    to.advance(stream, is_int, h.version, h.last_position);
  });
}

// The running timestamp maximum before the log's first segment: 0, or (the
// log's start moved by retention) what that segment's index file carries,
// which nothing left can check.
uint64_t through_before(file_system& fs, const sealed_prefix& p, const std::string& index_dir) {
  if (!p.retained || p.end == p.first) return 0;
  auto got = index_file::read(fs, log_files::join(index_dir, log_files::sidx_name(p.first)), 0);
  if (!got) return 0;
  auto v = segment_index::view::open(got.value().data(), got.value().size(), "", p.id.log_id, p.first);
  // The first time entry's running maximum: the true figure before the
  // segment when it exceeds the first event's timestamp, and otherwise one
  // that gives every entry the same value as the true one would.
  return v ? v.value().running_max_at_first_event() : 0;
}

bool same_heads(const head_table& a, const head_table& b) {
  if (a.size() != b.size()) return false;
  bool same = true;
  a.for_each([&](std::string_view stream, bool, const head_table::head& h) {
    const head_table::head* o = b.find(stream, b.hash(stream));
    if (!o || o->version != h.version || o->last_position != h.last_position) same = false;
  });
  return same;
}

}  // namespace

result<index_report> verify_index(const std::string& dir) {
  auto o = open_for_index(dir);
  if (!o) return o.error();
  file_system& fs = *o.value().fs;
  auto p = find_sealed(fs, *o.value().table, dir);
  if (!p) return p.error();
  const std::string index_dir = log_files::join(dir, log_files::kIndexDir);
  std::vector<uint64_t> cps;
  for (const std::string& n : p.value().index_names)
    if (auto i = log_files::parse_heads_name(n)) cps.push_back(*i);

  index_report rep;
  rep.sealed_segments = p.value().end - p.value().first;
  uint64_t through = through_before(fs, p.value(), index_dir), next_seq = p.value().first_sequence;
  bool partial = p.value().retained;  // heads of removed streams unknown until a checkpoint
  head_table heads;
  for (uint64_t k = p.value().first; k < p.value().end; ++k) {
    auto seg = o.value().table->get(k);
    if (!seg) return seg.error();
    auto want = segment_index::build(*seg.value(), {o.value().meta.log_id, through, segment_index::hash_kind::xxh3});
    if (!want) {
      rep.problems.push_back(want.error());
      return rep;  // the log itself is damaged: `varve verify` says where
    }
    auto v = segment_index::view::open(want.value().data(), want.value().size(), "", o.value().meta.log_id, k);
    if (v) through = v.value().max_timestamp_through();
    const std::string path = log_files::join(index_dir, log_files::sidx_name(k));
    if (!fs.exists(path)) {
      rep.problems.push_back(status(errc::not_found, path + ": segment index file is missing"));
    } else if (auto got = index_file::read(fs, path, 0); !got) {
      rep.problems.push_back(got.error());
    } else if (got.value() != want.value()) {
      auto gv = segment_index::view::open(got.value().data(), got.value().size(), path,
                                          o.value().meta.log_id, k);
      rep.problems.push_back(gv ? status(errc::corruption, path + ": differs from the index built from " +
                                                               seg.value()->path())
                                : gv.error());
    } else {
      ++rep.index_files;
      rep.index_bytes += got.value().size();
    }
    advance_heads(*seg.value(), next_seq, heads, rep.events);
    if (std::find(cps.begin(), cps.end(), k) != cps.end()) {
      ++rep.checkpoints;
      const std::string hp = log_files::join(index_dir, log_files::heads_name(k));
      head_table loaded;
      heads_file::checkpoint_info info;
      if (status s = heads_file::read(fs, hp, o.value().meta.log_id, info, loaded); !s)
        rep.problems.push_back(s);
      else if (info.last_segment != k || info.next_sequence != next_seq ||
               !(partial ? heads_within(heads, loaded) : same_heads(loaded, heads)))
        rep.problems.push_back(status(errc::corruption, hp + ": checkpoint disagrees with the log's streams"));
      else if (partial) {
        copy_heads(loaded, heads);  // from here on every stream is known
        partial = false;
      }
    }
  }
  return rep;
}

result<index_report> rebuild_index(const std::string& dir, std::function<void(uint64_t, uint64_t)> progress) {
  auto o = open_for_index(dir);
  if (!o) return o.error();
  auto lock = writer_lock::acquire(dir);
  if (!lock) return lock.error();
  file_system& fs = *o.value().fs;
  segment_table& table = *o.value().table;
  auto p = find_sealed(fs, table, dir);
  if (!p) return p.error();
  const std::string index_dir = log_files::join(dir, log_files::kIndexDir);
  if (status s = fs.create_dir(index_dir); !s) return s;

  index_report rep;
  rep.sealed_segments = p.value().end - p.value().first;
  rep.index_files = rep.sealed_segments;
  uint64_t next_seq = p.value().first_sequence;
  uint64_t through = through_before(fs, p.value(), index_dir);  // the running timestamp maximum the time index carries
  head_table heads;
  uint64_t from = p.value().first;
  if (p.value().retained) {
    // The heads of streams whose events retention removed live only in a
    // checkpoint: start from the oldest one that reads back and agrees with
    // its segment's footer (the files before it are still rebuilt).
    std::vector<uint64_t> cps;
    for (const std::string& n : p.value().index_names)
      if (auto i = log_files::parse_heads_name(n); i && *i >= p.value().first && *i < p.value().end)
        cps.push_back(*i);
    std::sort(cps.begin(), cps.end());
    bool found = false;
    for (uint64_t cp : cps) {
      heads_file::checkpoint_info info;
      head_table loaded;
      auto seg = table.get(cp);
      segment_format::footer f;
      if (!seg || !seg.value()->read_footer(f)) continue;
      if (heads_file::read(fs, log_files::join(index_dir, log_files::heads_name(cp)), o.value().meta.log_id, info,
                           loaded) &&
          info.last_segment == cp && f.first_sequence + f.event_count == info.next_sequence) {
        copy_heads(loaded, heads);
        next_seq = info.next_sequence;
        from = cp + 1;
        found = true;
        break;
      }
    }
    if (!found && p.value().end > p.value().first)
      return status(errc::corruption, index_dir + ": no usable head-table checkpoint from segment " +
                                          log_files::segment_name(p.value().first) +
                                          ", where retention started the log: the heads of streams whose "
                                          "events were all removed cannot be rebuilt from what is left");
  }
  for (uint64_t k = p.value().first; k < p.value().end; ++k) {
    if (progress) progress(k - p.value().first, rep.sealed_segments);
    auto seg = table.get(k);
    if (!seg) return seg.error();
    // What ensure_indexes(force) does, one segment at a time for progress.
    auto built = index_table::build_and_write(fs, dir, o.value().meta.log_id, *seg.value(), through);
    if (!built) return built.error();
    through = built.value();
    if (k >= from) advance_heads(*seg.value(), next_seq, heads, rep.events);
    auto sz = index_file::read(fs, log_files::join(index_dir, log_files::sidx_name(k)), 0);
    if (sz) rep.index_bytes += sz.value().size();
  }
  if (p.value().end > p.value().first) {
    const uint64_t last = p.value().end - 1;
    if (status s = heads_file::write(fs, index_dir, o.value().meta.log_id, {last, next_seq, 0}, heads); !s)
      return s;
    rep.checkpoints = 1;
  }
  // Everything else in index/ is superseded: older checkpoints, indexes of
  // segments that are not sealed, files set aside as damaged.
  for (const std::string& n : p.value().index_names) {
    auto h = log_files::parse_heads_name(n);
    auto x = log_files::parse_sidx_name(n);
    const bool keep = (h && p.value().end > 0 && *h == p.value().end - 1) ||
                      (x && *x >= p.value().first && *x < p.value().end);
    if (!keep) (void)fs.remove(log_files::join(index_dir, n));
  }
  if (status s = fs.sync_dir(index_dir); !s) return s;
  if (progress) progress(rep.sealed_segments, rep.sealed_segments);
  return rep;
}

}  // namespace varve
