// chunk_reader: choosing the backend, the plan of a range, the record loop all
// backends share, and the mmap backend. The uring and pread backends are in
// buffered_chunk_reader.cc.
#include "engine/io/chunk_reader.h"

#include <sys/mman.h>

#include <liburing.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "base/coding.h"
#include "engine/io/chunk_reader_internal.h"
#include "base/log_files.h"
#include "base/record_decode.h"
#include "base/record_format.h"
#include "base/segment.h"
#include "index/segment_index.h"

namespace varve {

const char* to_string(io_backend b) {
  switch (b) {
    case io_backend::automatic: return "auto";
    case io_backend::uring: return "uring";
    case io_backend::mmap: return "mmap";
    case io_backend::pread: return "pread";
  }
  return "?";
}

std::optional<io_backend> parse_io_backend(std::string_view s) {
  if (s == "auto") return io_backend::automatic;
  if (s == "uring") return io_backend::uring;
  if (s == "mmap") return io_backend::mmap;
  if (s == "pread") return io_backend::pread;
  return std::nullopt;
}

namespace io_detail {

bool uring_forced_unavailable() {
  const char* v = std::getenv("VARVE_IO_URING_FAIL");
  return v && v[0] == '1';
}

namespace {
std::atomic<bool> g_fallback_said{false};
}  // namespace

// Probed once: a kernel or seccomp policy does not change under a running
// process. The test hook is looked at every time, so a test can turn it on late.
int uring_probe() {
  if (uring_forced_unavailable()) return ENOSYS;
  static const int err = [] {
    io_uring ring;
    int r = io_uring_queue_init(2, &ring, 0);
    if (r < 0) return -r;
    io_uring_queue_exit(&ring);
    return 0;
  }();
  return err;
}

void say_fallback(int err) {
  // One line per process: a replay that opens a reader per partition must not
  // repeat it hundreds of times.
  if (g_fallback_said.exchange(true)) return;
  std::fprintf(stderr, "varve: io_uring unavailable (%s); reading with pread\n",
               std::strerror(err));
}

void reset_fallback_notice_for_test() { g_fallback_said.store(false); }

std::string segment_path(const detail::shared_log& log, uint64_t index) {
  return log_files::join(log.segments.identity().dir, log_files::segment_name(index));
}

result<range_plan> make_plan(detail::shared_log& log, position from, position to) {
  range_plan p;
  p.l2 = log.log2();
  const uint64_t cap = uint64_t{1} << p.l2;
  p.records_end = cap - segment_format::kFooterSize;
  if (to < from)
    return status(errc::invalid_argument, "chunk_reader: from " + std::to_string(from.value) +
                                              " is past to " + std::to_string(to.value));
  const uint64_t committed = log.committed();
  p.to_is_committed = to.value >= committed;
  p.to = p.to_is_committed ? committed : to.value;
  // Position 0 is the beginning, wherever retention left it; below the
  // start is the removed error (the segments are still mapped here, or gone).
  uint64_t f = from.value == 0 ? log.start_position() : from.value;
  if (f < log.start_position()) return log.removed_error(f);
  if (!log.segments.find(f >> p.l2)) {
    (void)log.refresh_start();  // a writer elsewhere may have moved the start (one small read per open)
    if (from.value == 0) f = log.start_position();
    if (f < log.start_position()) return log.removed_error(f);
  }
  const uint64_t seg = f >> p.l2;
  uint64_t off = f & (cap - 1);
  if (off < segment_format::kHeaderSize) {
    off = segment_format::kHeaderSize;
    f = (seg << p.l2) + off;
  }
  if (off % 8 != 0 || off >= p.records_end)
    return status(errc::invalid_argument, segment_path(log, seg) + " offset " +
                                              std::to_string(off) + ": not a record position");
  // Starting past the committed end reads nothing; where() stays at `from`.
  if (f > p.to) p.to = f;
  p.from = f;
  p.first_seg = f >> p.l2;
  p.last_seg = p.to >> p.l2;
  return p;
}

status check_header(const detail::shared_log& log, const std::byte* hdr, uint64_t index,
                    const std::string& path) {
  segment_format::header h;
  status s = segment_format::decode_header(hdr, path, h);
  if (!s) return s;
  const auto& id = log.segments.identity();
  if (h.segment_index != index || h.log2_capacity != id.log2_capacity)
    return status(errc::corruption, path + " offset 0: header names segment " +
                                        std::to_string(h.segment_index) + ", expected " +
                                        std::to_string(index));
  if (h.log_id != id.log_id)
    return status(errc::corruption, path + " offset 32: segment belongs to another log");
  return {};
}

status past_end(const segment_view& sv, uint64_t off, uint64_t len) {
  const uint64_t end_pos = sv.base + sv.hi;
  std::string what = sv.path->empty() ? std::string("segment") : *sv.path;
  what += " offset " + std::to_string(off) + ": record";
  if (len) what += " of " + std::to_string(len) + " bytes";
  if (sv.to_is_committed)
    return status(errc::corruption,
                  what + " runs past the committed end (position " + std::to_string(end_pos) + ")");
  return status(errc::invalid_argument, what + " runs past `to` (position " +
                                            std::to_string(end_pos) +
                                            "), which is not a record boundary");
}

run_out run_records(const segment_view& sv, const std::byte* mem, uint64_t mem_off,
                    uint64_t mem_end, uint64_t& off, uint64_t chunk_off, uint64_t target_end,
                    uint32_t* events, uint32_t events_cap, sequence_check& seq) {
  event_view v;  // filled by decode() per record; declared once (it is ~120 bytes)
  uint32_t n = 0;
  return walk_records(sv, mem, mem_off, mem_end, off, target_end, seq, v,
                      [&](uint64_t at) {
                        events[n++] = static_cast<uint32_t>(at - chunk_off);
                        return n < events_cap;
                      });
}

}  // namespace io_detail

// ---------------------------------------------------------------------------
// mmap: chunks are windows of the segment mappings the log already shares, so
// nothing is copied and a record larger than chunk_bytes needs nothing special
// (a chunk simply ends after it).

namespace {

using namespace io_detail;

class mmap_chunk_reader final : public chunk_reader {
 public:
  mmap_chunk_reader(std::shared_ptr<detail::shared_log> log, const range_plan& plan,
                    const chunk_reader_options& o, bool advise)
      : log_(std::move(log)), plan_(plan), opts_(o), advise_(advise), pos_(plan.from) {
    chunk_ = round_up(std::max<uint32_t>(o.chunk_bytes, kPage), kPage);
    // A chunk stops once it reaches chunk_bytes, so it holds at most that many
    // bytes of whole events plus the one that crossed the line.
    events_cap_ = chunk_ / kMinEventRecord + 2;
    slots_.resize(o.max_held);
    for (auto& s : slots_) s.events.reset(new uint32_t[events_cap_]);
    next_seg_ = plan.first_seg;
  }

  result<bool> next(chunk& out) override {
    if (!pending_.ok()) return pending_;
    if (held_ >= slots_.size())
      return status(errc::invalid_argument,
                    "chunk_reader: " + std::to_string(held_) +
                        " chunks are held (max_held); release one before asking for more");
    while (true) {
      if (!seg_) {
        if (next_seg_ > plan_.last_seg) {
          pos_ = plan_.to;
          return false;
        }
        const uint64_t s = next_seg_++;
        if (plan_.empty(s)) continue;
        if (plan_.whole(s) && opts_.skip_segment && opts_.skip_segment(s)) {
          ++skipped_;
          seq_.known = false;
          pos_ = plan_.after(s);
          continue;
        }
        auto sg = log_->segment_for_read(s, std::max(pos_, plan_.base(s)));
        if (!sg) return pending_ = sg.error();
        if (s != last_read_ + 1) seq_.known = false;
        last_read_ = s;
        seg_ = sg.value();
        seg_index_ = s;
        off_ = plan_.lo(s);
        advised_ = off_ & ~uint64_t{kPage - 1};
        sv_ = segment_view{&seg_->path(), plan_.base(s),      plan_.records_end, plan_.hi(s),
                           s == plan_.last_seg, plan_.to_is_committed, log_->verify_checksums,
                           opts_.frame_only};
      }
      advise();
      uint32_t slot = 0;
      while (slots_[slot].held) ++slot;  // held_ < max_held: one is free
      const uint64_t start = off_;
      const std::byte* mem = seg_->data();
      run_out r = run_records(sv_, mem, 0, sv_.hi, off_, start, start + chunk_,
                              slots_[slot].events.get(), events_cap_, seq_);
      const uint64_t end = r.end;
      switch (r.stop) {
        case run_stop::full:
        case run_stop::need_more:  // cannot happen: all of [lo, hi) is in memory
          pos_ = sv_.base + off_;
          break;
        case run_stop::marker:
        case run_stop::limit:
          seg_ = nullptr;
          pos_ = plan_.after(seg_index_);
          break;
        case run_stop::error:
          pos_ = sv_.base + off_;
          // A segment retention removed (and, after its grace, dropped the
          // pages of) while this reader was inside: that, not damage.
          pending_ = seg_index_ < log_->first_segment() ? log_->removed_error(pos_) : r.err;
          break;
      }
      if (r.n_events == 0) {
        if (!pending_.ok()) return pending_;
        continue;
      }
      slots_[slot].held = true;
      ++held_;
      // The mapping outlives the chunk: segments stay mapped while the log,
      // which this reader keeps alive, exists (a segment retention removes,
      // for log_options::retention_grace after the removal).
      out.data = mem + start;
      out.position = sv_.base + start;
      out.end = sv_.base + end;
      out.events = std::span<const uint32_t>(slots_[slot].events.get(), r.n_events);
      out.first_sequence = r.first_sequence;
      out.slot = slot;
      return true;
    }
  }

  void release(const chunk& c) override {
    if (c.slot < slots_.size() && slots_[c.slot].held) {
      slots_[c.slot].held = false;
      --held_;
    }
  }

  io_backend backend() const override { return io_backend::mmap; }
  position where() const override { return position{pos_}; }
  uint64_t bytes_read() const override { return 0; }
  uint64_t segments_skipped() const override { return skipped_; }

 private:
  struct slot {
    std::unique_ptr<uint32_t[]> events;
    bool held = false;
  };

  // Asks the kernel to start reading the next `depth` chunks of the mapping
  // while this one is validated. Not MADV_SEQUENTIAL: the mapping is shared
  // with the writer and every other reader of the log, and that advice would
  // make the kernel drop pages behind us that a stream read may want next.
  void advise() {
    if (!advise_) return;
    const uint64_t want =
        std::min<uint64_t>(sv_.hi, off_ + uint64_t{chunk_} * std::max<uint32_t>(opts_.depth, 1));
    if (want <= advised_) return;
    const uint64_t from = advised_;
    const uint64_t to = round_up(want, kPage);
    (void)::madvise(seg_->data() + from, to - from, MADV_WILLNEED);  // advice only
    advised_ = to;
  }

  std::shared_ptr<detail::shared_log> log_;
  range_plan plan_;
  chunk_reader_options opts_;
  uint32_t chunk_ = 0;
  uint32_t events_cap_ = 0;
  std::vector<slot> slots_;
  size_t held_ = 0;
  uint64_t next_seg_ = 0;
  uint64_t last_read_ = ~uint64_t{0} - 1;  // +1 never equals a real index first
  const segment* seg_ = nullptr;
  uint64_t seg_index_ = ~uint64_t{0};
  uint64_t off_ = 0;
  uint64_t advised_ = 0;
  bool advise_ = true;  // false: the range is resident, read-ahead would only walk the cache
  segment_view sv_;
  sequence_check seq_;
  uint64_t pos_ = 0;
  uint64_t skipped_ = 0;
  status pending_;
};

}  // namespace

namespace io_detail {
result<std::vector<piece>> plan_pieces(detail::shared_log& log, position from, position to,
                                       uint64_t target_bytes,
                                       const std::function<bool(uint64_t)>& skip_segment,
                                       uint64_t& segments_skipped, bool cut_unindexed) {
  auto pl = make_plan(log, from, to);
  if (!pl) return pl.error();
  const range_plan& plan = pl.value();
  std::vector<piece> out;
  const uint64_t stride_bytes = std::max<uint64_t>(target_bytes, 1);
  for (uint64_t s = plan.first_seg; s <= plan.last_seg; ++s) {
    if (plan.empty(s)) continue;
    if (plan.whole(s) && skip_segment && skip_segment(s)) {
      ++segments_skipped;
      continue;
    }
    const uint64_t base = plan.base(s), lo = plan.lo(s), hi = plan.hi(s);
    const bool last = s == plan.last_seg;
    uint64_t start = lo;
    // A sealed segment's index samples every kTimeStride-th event's offset:
    // cut there, about every target_bytes. The index is validated against
    // the segment's footer before it is used, and each cut is checked when
    // the piece before it is framed (it must end exactly there).
    bool indexed = false;
    if (!last && hi - lo > stride_bytes) {
      auto seg = log.segments.get_lazy(s);
      if (seg) {
        if (const segment_index::view* ix = log.indexes.get(*seg.value())) {
          indexed = true;
          for (uint64_t k = 1;; ++k) {
            const uint32_t off = ix->stride_offset(k);
            if (off < segment_format::kHeaderSize) break;  // fewer events than that
            if (off % 8 != 0 || off >= hi) break;
            if (off <= start || off - start < stride_bytes) continue;
            out.push_back(piece{s, base + start, base + off, base + off, true, false});
            start = off;
          }
        }
      }
    }
    if (!indexed && cut_unindexed && hi - lo > 2 * stride_bytes) {
      // No samples (the active segment has no index yet; a sealed one's may
      // be missing or damaged): find record boundaries by framing the
      // records, serially, before any worker starts (~12 ns a record, against
      // a whole segment walked by one worker while the others wait). Framed
      // only: where a record does not frame, the cuts stop and the rest is
      // one piece, whose owner names what is wrong; every cut is checked by
      // the piece before it (exact_end), as an index sample is.
      auto sg = log.segment_for_read(s, base + lo);
      if (sg) {
        const std::string path = segment_path(log, s);
        const uint64_t records_end = (uint64_t{1} << log.log2()) - segment_format::kFooterSize;
        const segment_view sv{&path, base, records_end, hi, true, false, false, true};
        sequence_check seq;
        event_view v;
        uint64_t off = lo;
        (void)walk_records(sv, sg.value()->data(), 0, hi, off, hi, seq, v, [&](uint64_t at) {
          if (at > start && at - start >= stride_bytes) {
            out.push_back(piece{s, base + start, base + at, base + at, true, false});
            start = at;
          }
          return true;
        });
      }
    }
    out.push_back(piece{s, base + start, base + hi, last ? plan.to : plan.after(s), false,
                        last && plan.to_is_committed});
  }
  return out;
}

status piece_framer::start(detail::shared_log& log, const piece& p, bool advise) {
  log_ = &log;
  advise_ = advise;
  const uint8_t l2 = log.log2();
  segment_ = p.segment;
  base_ = p.segment << l2;
  records_end_ = (uint64_t{1} << l2) - segment_format::kFooterSize;
  off_ = p.from - base_;
  hi_ = p.to - base_;
  advised_ = off_ & ~uint64_t{kPage - 1};
  exact_end_ = p.exact_end;
  to_is_committed_ = p.to_is_committed;
  verify_ = log.verify_checksums;
  done_ = seq_known_ = false;
  seq_next_ = 0;
  bad_ = p.from;
  path_ = segment_path(log, p.segment);
  auto sg = log.segment_for_read(p.segment, p.from);
  if (!sg) return sg.error();
  mem_ = sg.value()->data();
  return {};
}

void piece_framer::advise(uint64_t target) {
  if (!advise_) return;
  // The pages ahead of the walk asked for, 2 MiB at a time (advice only: it
  // matters for cold data, and costs a page-cache walk even for warm data).
  constexpr uint64_t kAdvise = 2u << 20;
  const uint64_t end = round_up(hi_, kPage);
  const uint64_t want = std::min(end, round_up(target + kAdvise, kPage));
  if (want > advised_ && (advised_ < target + kAdvise / 2 || want == end)) {
    (void)::madvise(const_cast<std::byte*>(mem_) + advised_, want - advised_, MADV_WILLNEED);
    advised_ = want;
  }
}

result<bool> piece_framer::finish(const run_out& r) {
  switch (r.stop) {
    case run_stop::full:
      if (off_ < hi_) return true;
      [[fallthrough]];
    case run_stop::limit:
    case run_stop::marker:
    case run_stop::need_more:  // cannot happen: all of the piece is in memory
      done_ = true;
      if (exact_end_ && r.end != hi_) {
        bad_ = base_ + r.end;
        return status(errc::corruption, path_ + " offset " + std::to_string(r.end) +
                                            ": the records end here, the segment index says at " +
                                            std::to_string(hi_) + " (index and records disagree)");
      }
      return true;
    case run_stop::error:
      break;
  }
  done_ = true;
  bad_ = base_ + off_;
  if (segment_ < log_->first_segment()) return log_->removed_error(bad_);
  if (exact_end_ && r.err.code() == errc::invalid_argument)
    return status(errc::corruption, path_ + " offset " + std::to_string(off_) +
                                        ": the record crosses offset " + std::to_string(hi_) +
                                        ", where the segment index says one starts (index and "
                                        "records disagree)");
  return r.err;
}

uint64_t resident_pages(const void* p, uint64_t len) {
  unsigned char vec[kProbeBytes / kPage];
  len = std::min(len, kProbeBytes);
  if (::mincore(const_cast<void*>(p), len, vec) != 0) return 0;
  uint64_t n = 0;
  for (uint64_t i = 0; i < (len + kPage - 1) / kPage; ++i) n += vec[i] & 1;
  return n;
}

double resident_fraction(detail::shared_log& log, const range_plan& plan) {
  if (plan.to <= plan.from) return 1.0;
  constexpr uint64_t kProbes = 64;
  // Each probed segment's file mapped here, untouched, for mincore: the
  // log's own mapping would be no good for a segment not opened yet (opening
  // one reads its header, and the kernel's read-around of that fault warms
  // the pages next to it).
  file_system& fs = log.segments.fs();
  const uint64_t cap = uint64_t{1} << plan.l2;
  uint64_t probed = 0, resident = 0;
  uint64_t mapped_seg = ~uint64_t{0};
  file_handle f;
  void* m = nullptr;
  auto drop = [&] {
    if (m) fs.unmap(m, cap);
    if (f.fd >= 0) fs.close(f);
    m = nullptr;
    f = file_handle{};
  };
  for (uint64_t k = 0; k < kProbes; ++k) {
    const uint64_t pos = plan.from + (plan.to - plan.from) / kProbes * k;
    const uint64_t s = pos >> plan.l2;
    const uint64_t off = pos & (cap - 1);
    if (plan.empty(s) || off < plan.lo(s) || off >= plan.hi(s)) continue;
    const uint64_t a = off & ~uint64_t{kPage - 1};
    const uint64_t len = std::min<uint64_t>(kProbeBytes, round_up(plan.hi(s), kPage) - a);
    probed += len / kPage;
    if (s != mapped_seg) {
      drop();
      mapped_seg = s;
      // A segment with no file in DIR (archived) counts as cold.
      auto opened = fs.open(segment_path(log, s), file_system::open_mode::read_only);
      if (!opened) continue;
      f = std::move(opened.value());
      auto mp = fs.map(f, cap, map_access::read_only);
      if (!mp) continue;
      m = mp.value();
    }
    if (m) resident += resident_pages(static_cast<std::byte*>(m) + a, len);
  }
  drop();
  return probed == 0 ? 1.0 : static_cast<double>(resident) / static_cast<double>(probed);
}

result<io_backend> choose_backend(detail::shared_log& log, const range_plan& plan,
                                  io_backend requested, bool* resident) {
  auto b = resolve_io_backend(requested);
  if (!b) return b;
  // Only the automatic choice looks at residency: an explicit backend, or
  // VARVE_IO naming one, is taken as given.
  const char* env = std::getenv("VARVE_IO");
  const bool forced = requested != io_backend::automatic ||
                      (env && *env && parse_io_backend(env) != io_backend::automatic);
  if (resident) *resident = false;
  if (!forced && b.value() != io_backend::mmap) {
    if (resident_fraction(log, plan) < 0.9) return b;
    if (resident) *resident = true;
    return io_backend::mmap;
  }
  if (b.value() == io_backend::mmap && resident) *resident = resident_fraction(log, plan) >= 0.9;
  return b;
}

result<std::unique_ptr<chunk_reader>> open_mmap(std::shared_ptr<detail::shared_log> log,
                                                const range_plan& plan,
                                                const chunk_reader_options& o, bool advise) {
  return std::unique_ptr<chunk_reader>(new mmap_chunk_reader(std::move(log), plan, o, advise));
}
}  // namespace io_detail

result<io_backend> resolve_io_backend(io_backend requested) {
  if (requested == io_backend::automatic) {
    if (const char* env = std::getenv("VARVE_IO"); env && *env) {
      auto b = parse_io_backend(env);
      if (!b)
        return status(errc::invalid_argument, std::string("VARVE_IO=") + env +
                                                  ": expected uring, mmap, pread or auto");
      requested = *b;
    }
  }
  if (requested == io_backend::automatic || requested == io_backend::uring) {
    if (int err = io_detail::uring_probe(); err != 0) {
      io_detail::say_fallback(err);
      return io_backend::pread;
    }
    return io_backend::uring;
  }
  return requested;
}

result<std::unique_ptr<chunk_reader>> chunk_reader::open(std::shared_ptr<detail::shared_log> log,
                                                         position from, position to,
                                                         const chunk_reader_options& options) {
  if (!log) return status(errc::invalid_argument, "chunk_reader: no log");
  if (options.max_held == 0)
    return status(errc::invalid_argument, "chunk_reader: max_held must be at least 1");
  if (options.chunk_bytes > (1u << 30))
    return status(errc::invalid_argument, "chunk_reader: chunk_bytes " +
                                              std::to_string(options.chunk_bytes) +
                                              " is over 1 GiB");
  auto plan = io_detail::make_plan(*log, from, to);
  if (!plan) return plan.error();
  bool resident = false;
  auto b = io_detail::choose_backend(*log, plan.value(), options.backend, &resident);
  if (!b) return b.error();
  // The buffered backends read segment files; archived segments (FORMAT 1c)
  // have none in DIR, and are read inflated, through the mapping path
  // (which also names a file that is simply missing).
  if (b.value() != io_backend::mmap &&
      !log->segments.fs().exists(io_detail::segment_path(*log, plan.value().first_seg)))
    b = io_backend::mmap;
  switch (b.value()) {
    case io_backend::mmap: return io_detail::open_mmap(std::move(log), plan.value(), options, !resident);
    case io_backend::uring: {
      int err = 0;
      auto r = io_detail::open_buffered(log, plan.value(), options, true, &err);
      if (r || err == 0) return r;
      // The probe's ring worked but this one did not (memory, limits): still
      // read, with pread, and say so.
      io_detail::say_fallback(err);
      return io_detail::open_buffered(std::move(log), plan.value(), options, false, nullptr);
    }
    default:
      return io_detail::open_buffered(std::move(log), plan.value(), options, false, nullptr);
  }
}

}  // namespace varve
