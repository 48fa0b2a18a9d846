// Scavenge (event_log::scavenge; docs/DESIGN.md "Stream lifecycle"): gives
// back the disk space of events stream lifecycle hides, by rewriting sealed
// segments without them.
//
// The position rule: positions never change. A removed run of records
// becomes one hole record (FORMAT 4.2a, flag "scavenged") of the same
// length, standing for their sequence numbers; the run's bytes after the
// hole's 40-byte header are never written in the new file, so its whole
// 4 KiB blocks are not allocated (a sparse file) and read as zeros.
// Everything else is copied byte for byte; only the footer's checksum is
// new. So no reader, index entry, checkpoint, subscription position or
// snapshot needs remapping.
//
// What goes: whole batches whose every event is hidden, and for each stream
// only a prefix of its versions (once a kept event of a stream is met, its
// later events stay even if hidden: max_age by timestamp need not be a
// prefix). Before any file changes, DIR/streams records for each stream
// the floor below which its events may be gone (a truncation), so no read,
// after any crash, walks into what was removed.
//
// Crash safety: each segment's new image is written to <segment>.scavenge,
// synced, read back and checked, then renamed over the segment (atomic) and
// the directory synced. A crash leaves the old file or the new one, both
// whole; a leftover .scavenge file is removed by the next writer's open.
#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "base/coding.h"
#include "base/log_files.h"
#include "base/record_format.h"
#include "base/scan.h"
#include "base/segment_format.h"
#include "engine/chain.h"
#include "engine/index_table.h"
#include "engine/lifecycle/stream_lifecycle.h"
#include "engine/lifecycle/writer_lifecycle.h"
#include "engine/log_state.h"

namespace varve::detail {

namespace {

constexpr const char* kScavengeSuffix = ".scavenge";

struct removed_run {
  uint64_t off = 0;
  uint64_t len = 0;
  uint64_t first_seq = 0;
  uint64_t count = 0;
};

struct segment_plan {
  uint64_t index = 0;
  segment_format::footer footer;
  std::vector<removed_run> runs;
  uint64_t events = 0;
  uint64_t last_kept = ~uint64_t{0};
  std::unique_ptr<segment> file;  // the file as it is on disk now (see pass 1)
};

uint64_t blocks_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

const std::byte* zeros() {
  static const std::vector<std::byte> z(1 << 16);
  return z.data();
}

void hash_zeros(XXH3_state_t* st, uint64_t n) {
  while (n) {
    const uint64_t k = std::min<uint64_t>(n, 1 << 16);
    XXH3_64bits_update(st, zeros(), k);
    n -= k;
  }
}

// A hole record's 40-byte header for `r` at `position` (its checksum covers
// the header's bytes [8, 40) and the zeros after, up to its length).
void hole_header(std::byte* h, const removed_run& r, uint64_t position) {
  std::memset(h, 0, record::kHoleMinSize);
  coding::put_u32(h + 8, static_cast<uint32_t>(r.len));
  coding::put_u8(h + 12, record::kHole);
  coding::put_u8(h + 13, record::kHoleFlagScavenged);
  coding::put_u64(h + 16, position);
  coding::put_u64(h + 24, r.first_seq);
  coding::put_u64(h + 32, r.count);
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, h + 8, record::kHoleMinSize - 8);
  hash_zeros(st, r.len - record::kHoleMinSize);
  coding::put_u64(h, XXH3_64bits_digest(st));
  XXH3_freeState(st);
}

// Writes `seg` without `p.runs` to <segment>.scavenge, checks it, renames it
// over the segment.
status rewrite(file_system& fs, const std::string& dir, const segment& seg, const segment_plan& p) {
  const std::string path = seg.path();
  const std::string tmp = path + kScavengeSuffix;
  (void)fs.remove(tmp);
  auto f = fs.open(tmp, file_system::open_mode::create_new);
  if (!f) return f.error();
  file_handle fh = f.value();
  const uint64_t end = p.footer.data_end + record::kSegmentEndSize;
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  auto copy = [&](uint64_t from, uint64_t to) -> status {
    if (to <= from) return {};
    const uint64_t h = std::max<uint64_t>(from, segment_format::kHeaderSize);  // the footer's range
    if (to > h) XXH3_64bits_update(st, seg.data() + h, to - h);
    return fs.pwrite(fh, from, seg.data() + from, to - from);
  };
  status s = fs.truncate(fh, seg.capacity());  // sparse: what is not written reads as zeros
  uint64_t at = 0;
  for (const removed_run& r : p.runs) {
    if (!s) break;
    s = copy(at, r.off);
    if (!s) break;
    std::byte h[record::kHoleMinSize];
    hole_header(h, r, seg.base_position() + r.off);
    XXH3_64bits_update(st, h, sizeof h);
    hash_zeros(st, r.len - sizeof h);
    s = fs.pwrite(fh, r.off, h, sizeof h);
    at = r.off + r.len;
  }
  if (s) s = copy(at, end);
  segment_format::footer nf = p.footer;
  nf.data_checksum = XXH3_64bits_digest(st);
  nf.last_position = p.last_kept;  // the newest event left (none: ~0), as a scan of the new file finds it
  XXH3_freeState(st);
  std::byte foot[segment_format::kFooterSize];
  segment_format::encode_footer(foot, nf);
  if (s) s = fs.pwrite(fh, seg.capacity() - segment_format::kFooterSize, foot, sizeof foot);
  if (s) s = fs.datasync(fh);
  // Read back: the new file's records hash to its footer (what verify and
  // recovery will check), before it replaces anything.
  if (s) {
    XXH3_state_t* rb = XXH3_createState();
    XXH3_64bits_reset(rb);
    std::vector<std::byte> buf(1 << 20);
    for (uint64_t o = segment_format::kHeaderSize; s && o < end;) {
      const uint64_t n = std::min<uint64_t>(buf.size(), end - o);
      s = fs.pread(fh, o, buf.data(), n);
      XXH3_64bits_update(rb, buf.data(), n);
      o += n;
    }
    if (s && XXH3_64bits_digest(rb) != nf.data_checksum)
      s = status(errc::io_error, tmp + ": the rewritten segment does not read back as written");
    XXH3_freeState(rb);
  }
  fs.close(fh);
  if (s) s = fs.rename(tmp, path);
  if (s) s = fs.sync_dir(dir);
  if (!s) {
    (void)fs.remove(tmp);
    return status(s.code(), path + ": scavenge left the segment as it was: " + s.message());
  }
  return {};
}

}  // namespace

status remove_scavenge_leftovers(file_system& fs, const std::string& dir) {
  auto names = fs.list_dir(dir);
  if (!names) return names.error();
  for (const std::string& n : names.value())
    if (n.ends_with(kScavengeSuffix))
      if (status s = fs.remove(log_files::join(dir, n)); !s) return s;
  return {};
}

}  // namespace varve::detail

namespace varve {

result<scavenge_result> event_log::scavenge(bool dry_run) {
  detail::log_state& s = *s_;
  if (status w = detail::check_writer_op(s); !w) return w;
  if (s.fs->exists(log_files::join(s.dir, chain::kFileName)))
    return status(errc::invalid_argument,
                  s.dir + ": the log has a tamper-evident chain, which commits to every byte of every sealed "
                          "segment: a scavenge would break it, so hidden events stay on disk (retention removes "
                          "whole segments from the head, which the chain allows)");
  scavenge_result res;
  const std::shared_ptr<const detail::lifecycle_view> view = s.life->view();
  if (view->empty()) return res;
  detail::shared_log& sh = *s.shared;
  std::lock_guard<std::mutex> g(sh.retention_mu);  // no retention or archive pass meanwhile
  const uint64_t now = s.now_ns();

  // Pass 1, reading only: what goes, segment by segment, oldest first.
  struct stream_state {
    bool kept_seen = false;
    bool integer = false;
    uint64_t floor = 0;  // 1 + the newest version removed
  };
  std::unordered_map<std::string, stream_state> streams;
  std::vector<detail::segment_plan> plans;
  const uint64_t to = s.active->index();
  for (uint64_t k = sh.first_segment(); k < to; ++k) {
    auto lazy = sh.segments.get_lazy(k);
    if (!lazy) return lazy.error();
    segment_format::footer f;
    status fst = lazy.value()->read_footer(f);
    if (fst.code() == errc::not_found) break;  // the sealer has not finished it: the pass ends here
    if (!fst) return fst;
    if (lazy.value()->archived()) continue;  // compressed in the archive: not rewritten
    ++res.segments_examined;
    // The file as it is on disk, mapped for this pass: the segment table's
    // mapping may be of a file an earlier scavenge in this process replaced
    // (its readers keep it), which still holds what went.
    auto fresh = segment::open(s.fs, sh.segments.identity(), k, map_access::read_only);
    if (!fresh) return fresh.error();
    if (status rf = fresh.value()->read_footer(f); !rf) return rf;
    const segment& seg = *fresh.value();
    struct rec {
      uint64_t off, len, seq, timestamp;
      std::string_view stream;
      bool integer;
      bool remove;
      uint64_t version;
    };
    std::vector<rec> recs;
    size_t batch_start = 0;
    // Decides the batch [batch_start, recs.size()): removed whole or kept whole.
    auto close_batch = [&] {
      bool all = true;
      for (size_t i = batch_start; i < recs.size() && all; ++i) {
        const rec& r = recs[i];
        const stream_metadata* m = view->find(r.stream);
        if (!m) {
          all = false;
          break;
        }
        auto it = streams.find(std::string(r.stream));
        if (it != streams.end() && it->second.kept_seen) {
          all = false;
          break;
        }
        const head_table::head* h = s.heads.find(r.stream, s.heads.hash(r.stream));
        const uint64_t head_version = h ? h->version : 0;
        all = m->deleted || r.version < m->truncate_before ||
              (m->max_count != 0 && r.version + m->max_count <= head_version);
        if (!all && m->max_age_ns != 0) all = r.timestamp + m->max_age_ns < now;
      }
      for (size_t i = batch_start; i < recs.size(); ++i) {
        rec& r = recs[i];
        r.remove = all;
        if (!view->find(r.stream)) continue;
        stream_state& ss = streams[std::string(r.stream)];
        ss.integer = r.integer;
        if (all) ss.floor = std::max(ss.floor, r.version + 1);
        else ss.kept_seen = true;
      }
      batch_start = recs.size();
    };
    segment_scan sc = scan_segment(seg, f.first_sequence, true, [&](const event_view& v) {
      if (v.batch_begin && batch_start != recs.size()) close_batch();
      const uint64_t off = v.position.value - seg.base_position();
      recs.push_back({off, coding::get_u32(seg.data() + off + 8), v.sequence.value, v.timestamp_ns, v.stream,
                      v.stream_is_integer, false, v.version});
      if (v.batch_end) close_batch();
    });
    if (batch_start != recs.size()) close_batch();
    if (!sc.ended_by_marker || sc.good_end != f.data_end)
      return status(errc::corruption, seg.path() + " offset " + std::to_string(sc.problem_offset) +
                                          ": sealed segment is damaged, not scavenged: " +
                                          (sc.problem.empty() ? "records disagree with the footer" : sc.problem));
    detail::segment_plan p;
    p.index = k;
    p.footer = f;
    p.file = std::move(fresh.value());
    for (const rec& r : recs) {
      if (!r.remove) {
        p.last_kept = seg.base_position() + r.off;
        continue;
      }
      ++p.events;
      // Adjacent removed records make one run (a kept record or an existing
      // hole between them starts another).
      if (!p.runs.empty() && p.runs.back().off + p.runs.back().len == r.off &&
          p.runs.back().first_seq + p.runs.back().count == r.seq) {
        p.runs.back().len += r.len;
        ++p.runs.back().count;
      } else {
        p.runs.push_back({r.off, r.len, r.seq, 1});
      }
    }
    if (p.events) {
      res.events_removed += p.events;
      plans.push_back(std::move(p));
    }
  }
  res.segments_rewritten = plans.size();
  if (dry_run || plans.empty()) return res;

  // Pass 2: the floors first, durable (no read may walk into what goes).
  for (const auto& [stream, ss] : streams) {
    if (ss.floor == 0) continue;
    const stream_metadata* m = view->find(stream);
    if (!m || m->deleted || m->truncate_before >= ss.floor) continue;
    stream_metadata next = *m;
    next.truncate_before = ss.floor;
    if (status f = flush(); !f) return f;
    auto v = s.life->change(stream, ss.integer, next, sh.committed(), now);
    if (!v) return v.error();
    sh.set_lifecycle(v.value());
    sh.ctl->lifecycle_hint().store(v.value()->journal_end(), std::memory_order_release);
  }

  // Pass 3: each segment rewritten, then its index file for the new bytes.
  for (const detail::segment_plan& p : plans) {
    const std::string path = p.file->path();
    const uint64_t before = detail::blocks_of(path);
    if (status st = detail::rewrite(*s.fs, s.dir, *p.file, p); !st) return st;
    const uint64_t after = detail::blocks_of(path);
    if (before > after) res.bytes_freed += before - after;
    // The index file is tied to the footer's checksum: rebuilt for the new
    // file (this process keeps the old file mapped, with its old index).
    uint64_t through = 0;
    status why;
    bool have_through = p.index == sh.first_segment();
    if (!have_through) {
      auto prev = sh.segments.get_lazy(p.index - 1);
      have_through = prev && index_table::check(*s.fs, s.dir, s.meta.log_id, *prev.value(), through, why) ==
                                 index_table::state::valid;
    }
    if (have_through) {
      auto fresh = segment::open(s.fs, sh.segments.identity(), p.index, map_access::read_only);
      if (fresh) (void)index_table::build_and_write(*s.fs, s.dir, s.meta.log_id, *fresh.value(), through);
    }
  }
  return res;
}

}  // namespace varve
