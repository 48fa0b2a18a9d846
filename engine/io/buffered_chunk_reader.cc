// The uring and pread backends of chunk_reader: the range is read as a stream
// of windows (chunk_bytes each, in file order) into buffers allocated at open,
// and each window's whole records are handed out as one chunk.
//
// A record that crosses a window's end is carried over: its first bytes are
// copied into the headroom in front of the next window's buffer (the read
// lands after the headroom), so the record is contiguous without re-reading
// anything and the reads already in flight stay useful. A record longer than
// the headroom is assembled in a buffer of its own, which is handed out as a
// chunk holding that one record.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "engine/io/chunk_reader.h"
#include "engine/io/chunk_reader_internal.h"
#include "base/segment.h"

namespace varve {
namespace {

using namespace io_detail;

// Headroom in front of each window: the largest record that is carried by a
// copy. Most records are a few hundred bytes; larger ones cost a copy of
// their own size anyway.
constexpr uint32_t kMaxHeadroom = 64 << 10;

struct aligned_free {
  void operator()(std::byte* p) const { std::free(p); }
};
using aligned_bytes = std::unique_ptr<std::byte, aligned_free>;

aligned_bytes alloc_aligned(uint64_t n) {
  return aligned_bytes(static_cast<std::byte*>(std::aligned_alloc(kPage, round_up(n, kPage))));
}

std::string errno_text(int e) { return std::strerror(e); }

class buffered_chunk_reader final : public chunk_reader {
 public:
  buffered_chunk_reader(std::shared_ptr<detail::shared_log> log, const range_plan& plan,
                        const chunk_reader_options& o, bool uring)
      : log_(std::move(log)), plan_(plan), opts_(o), uring_(uring) {}

  ~buffered_chunk_reader() override {
    if (ring_ok_) {
      // The kernel may still be writing into our buffers: wait for every read
      // before the memory and the descriptors go.
      while (reading_ > 0) {
        if (reap(true) != 0) break;
      }
      io_uring_queue_exit(&ring_);
    }
    for (auto& f : files_)
      if (f.fh.valid()) log_->segments.fs().close(f.fh);
  }

  // Allocates everything the reader will use; `uring_errno` gets the reason
  // io_uring could not be set up.
  status init(int* uring_errno) {
    chunk_ = static_cast<uint32_t>(round_up(std::max<uint32_t>(opts_.chunk_bytes, kPage), kPage));
    headroom_ = std::min(chunk_, kMaxHeadroom);
    depth_ = uring_ ? std::max<uint32_t>(opts_.depth, 1) : 1;
    // O_DIRECT reads are only through the ring: a pread of a cold segment
    // waits for the device with nothing else in flight, where the page
    // cache's read-ahead would have kept it busy (measured: 0.9-1.0 GB/s
    // direct against 0.8-1.7 buffered, one pass each). They need more in
    // flight than buffered reads, which the kernel's read-ahead already
    // deepens (BENCHMARKS 22): counted in bytes, 16 MiB, so that small
    // windows ask as much of the device as 1 MiB ones (at 64 KiB windows,
    // 16 in flight read at 0.50-0.64x of the ring's ceiling, 64 at
    // 0.95-0.99x: BENCHMARKS 25).
    direct_ok_ = uring_ && want_direct();
    const uint32_t for_bytes = std::clamp<uint32_t>((16u << 20) / chunk_, 16, 64);
    direct_depth_ = direct_ok_ ? std::max(depth_, opts_.direct_depth ? opts_.direct_depth : for_bytes) : depth_;
    const uint32_t n = opts_.max_held + direct_depth_ + 1;
    const uint64_t stride = uint64_t{headroom_} + chunk_;
    block_ = alloc_aligned(stride * n);
    carry_ = alloc_aligned(headroom_);
    if (!block_ || !carry_)
      return status(errc::io_error, "chunk_reader: cannot allocate " +
                                        std::to_string(stride * n) + " bytes of buffers");
    events_cap_ = static_cast<uint32_t>(stride / kMinEventRecord + 1);
    slots_.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      slots_[i].buf = block_.get() + stride * i;
      slots_[i].events.reset(new uint32_t[events_cap_]);
    }
    queue_.assign(n, 0);
    files_.resize(direct_depth_ + 2);
    // A held chunk's events span points into its big_buffer: never reallocate.
    // One more than can be held is all acquire_big ever needs.
    bigs_.reserve(opts_.max_held + 1);
    if (uring_) {
      unsigned entries = 2;
      while (entries < direct_depth_) entries *= 2;
      int r = io_uring_queue_init(entries, &ring_, 0);
      if (r < 0) {
        if (uring_errno) *uring_errno = -r;
        return status(errc::io_error, "io_uring_queue_init: " + errno_text(-r));
      }
      ring_ok_ = true;
      // Registered buffers save the kernel pinning the pages on every read.
      // Without CAP_IPC_LOCK they count against RLIMIT_MEMLOCK; when that is
      // too small, plain reads through the ring still do the job.
      std::vector<iovec> iov(n);
      for (uint32_t i = 0; i < n; ++i) iov[i] = {slots_[i].buf, static_cast<size_t>(stride)};
      fixed_ = io_uring_register_buffers(&ring_, iov.data(), n) == 0;
      // Registered files save the kernel looking the descriptor up (and
      // taking a reference on the file) at every read. One slot per entry of
      // files_, empty until a segment is opened into it; a kernel without
      // sparse tables (before 5.19) reads through the plain descriptors.
      files_fixed_ = io_uring_register_files_sparse(&ring_, static_cast<unsigned>(files_.size())) == 0;
    }
    // Test hook: cap every read request, so that the path taken after a short
    // read (ask for the rest) runs on every window.
    if (const char* cap = std::getenv("VARVE_IO_MAX_READ"); cap && *cap)
      max_read_ = std::max<uint32_t>(static_cast<uint32_t>(std::strtoul(cap, nullptr, 10)), 8);
    // Test hook: O_DIRECT reads ask for one byte less than a whole page, a
    // length no block device takes, so the kernel refuses them (EINVAL) as a
    // file system that accepts O_DIRECT at fcntl but not the reads would.
    if (const char* odd = std::getenv("VARVE_IO_DIRECT_ODD_LENGTH"); odd && *odd == '1') odd_direct_ = 1;
    next_plan_seg_ = plan_.first_seg;
    pos_ = plan_.from;
    return {};
  }

  result<bool> next(chunk& out) override {
    if (!pending_.ok()) return pending_;
    if (held_ >= opts_.max_held)
      return status(errc::invalid_argument,
                    "chunk_reader: " + std::to_string(held_) +
                        " chunks are held (max_held); release one before asking for more");
    while (true) {
      if (cur_ < 0) {
        auto got = enter_window();
        if (!got) return pending_ = got.error();
        if (!got.value()) return false;
        // An oversize record completed: it goes out on its own, and the rest
        // of its last window (if any) stays current for the next call.
        if (big_ready_ >= 0) return hand_out_big(out);
        if (cur_ < 0) continue;
      }
      window& w = slots_[cur_];
      const uint64_t start = off_;
      run_out r = run_records(sv_, mem_, mem_off_, mem_end_, off_, start, UINT64_MAX,
                              w.events.get(), events_cap_, seq_);
      switch (r.stop) {
        case run_stop::need_more: {
          const uint64_t partial = mem_end_ - off_;
          const std::byte* p = mem_ + (off_ - mem_off_);
          if (r.need_len > headroom_) {
            const int b = acquire_big(r.need_len);
            if (b < 0) {
              pending_ = status(errc::io_error, "chunk_reader: cannot allocate " +
                                                    std::to_string(r.need_len) +
                                                    " bytes for a record");
              break;
            }
            std::memcpy(bigs_[b].buf.get(), p, partial);
            big_ = b;
            big_have_ = partial;
            big_need_ = r.need_len;
            big_off_ = off_;
          } else if (partial > 0) {
            std::memcpy(carry_.get(), p, partial);
            carry_len_ = static_cast<uint32_t>(partial);
            carry_off_ = off_;
          }
          pos_ = sv_.base + off_;
          break;
        }
        case run_stop::marker:
        case run_stop::limit:
          seg_done_ = true;
          pos_ = plan_.after(dec_seg_);
          break;
        case run_stop::full:  // cannot happen: events_cap_ covers the whole buffer
          pending_ = status(errc::corruption, *sv_.path + " offset " + std::to_string(off_) +
                                                  ": more records than fit in a chunk");
          break;
        case run_stop::error:
          pos_ = sv_.base + off_;
          pending_ = r.err;
          break;
      }
      const int s = cur_;
      cur_ = -1;
      if (r.n_events == 0) {
        slots_[s].state = window::free;
        if (!pending_.ok()) return pending_;
        continue;
      }
      slots_[s].state = window::held;
      ++held_;
      out.data = mem_ + (start - mem_off_);
      out.position = sv_.base + start;
      out.end = sv_.base + r.end;
      out.events = std::span<const uint32_t>(slots_[s].events.get(), r.n_events);
      out.first_sequence = r.first_sequence;
      out.slot = static_cast<uint32_t>(s);
      return true;
    }
  }

  void release(const chunk& c) override {
    if (c.slot < slots_.size()) {
      if (slots_[c.slot].state == window::held) {
        slots_[c.slot].state = window::free;
        --held_;
      }
      return;
    }
    const size_t b = c.slot - slots_.size();
    if (b < bigs_.size() && bigs_[b].held) {
      bigs_[b].held = false;
      --held_;
    }
  }

  io_backend backend() const override { return uring_ ? io_backend::uring : io_backend::pread; }
  position where() const override { return position{pos_}; }
  uint64_t bytes_read() const override { return bytes_read_; }
  uint64_t segments_skipped() const override { return skipped_; }
  std::string describe() const override {
    std::string s = uring_ ? "uring" : "pread";
    s += ": " + std::to_string(slots_.size()) + " buffers of " +
         std::to_string((headroom_ + chunk_) >> 10) + " KiB";
    if (uring_) s += fixed_ ? " (registered)" : " (not registered: RLIMIT_MEMLOCK?)";
    if (uring_) s += files_fixed_ ? ", files registered" : ", files not registered";
    s += ", depth " + std::to_string(depth_);
    if (direct_segments_ > 0)
      s += ", O_DIRECT for " + std::to_string(direct_segments_) + " cold segments (depth " +
           std::to_string(direct_depth_) + ")";
    if (direct_refused_ > 0)
      s += ", O_DIRECT refused at read for " + std::to_string(direct_refused_) +
           " segments (read buffered)";
    return s;
  }

 private:
  struct window {
    enum state_t : uint8_t { free, reading, ready, failed, current, held };
    std::byte* buf = nullptr;  // headroom_ bytes, then the read's chunk_ bytes
    std::unique_ptr<uint32_t[]> events;
    state_t state = free;
    uint64_t seg = 0;
    uint64_t off = 0;  // file offset of buf + headroom_
    uint32_t len = 0;
    uint32_t done = 0;
    int file = -1;
    bool new_segment = false;
    bool asked_direct = false;  // the read in flight was asked with O_DIRECT
    uint64_t skipped_before = 0;
    status err;
  };
  struct seg_file {
    file_handle fh;
    std::string path;
    uint32_t refs = 0;  // the planner's, and one per read not yet complete
    bool direct = false;  // read with O_DIRECT (page-aligned offsets and lengths)
    bool fixed = false;   // in the ring's file table, at this entry's index
  };
  struct big_buffer {
    aligned_bytes buf;
    uint64_t size = 0;
    uint32_t event = 0;
    bool held = false;
  };

  // ---- the planner: which window comes next, in file order ----

  void unref(int f) {
    if (--files_[f].refs != 0) return;
    if (files_[f].fixed) {
      // The ring's table holds the file open too: empty the slot, so a
      // segment the reader is done with (one retention may remove) is not
      // kept open until the reader goes. Nothing is in flight on it.
      int none = -1;
      (void)io_uring_register_files_update(&ring_, static_cast<unsigned>(f), &none, 1);
      files_[f].fixed = false;
    }
    log_->segments.fs().close(files_[f].fh);
  }

  // Whether cold segments of this range may be read with O_DIRECT
  // (chunk_reader_options::direct).
  bool want_direct() const {
    using dr = chunk_reader_options::direct_reads;
    dr d = opts_.direct;
    if (d == dr::automatic) {
      const char* env = std::getenv("VARVE_IO_DIRECT");
      if (env && std::string_view(env) == "1") d = dr::cold;
      if (env && std::string_view(env) == "0") d = dr::never;
    }
    if (d != dr::automatic) return d == dr::cold;
    return plan_.to - plan_.from > mem_available() / 2;
  }

  // MemAvailable from /proc/meminfo (what the page cache could hold without
  // swapping); "unlimited" when it cannot be read, so nothing goes direct.
  static uint64_t mem_available() {
    std::FILE* f = std::fopen("/proc/meminfo", "r");
    if (!f) return UINT64_MAX;
    char line[256];
    uint64_t kb = 0;
    bool found = false;
    while (!found && std::fgets(line, sizeof line, f))
      found = std::sscanf(line, "MemAvailable: %" SCNu64 " kB", &kb) == 1;
    std::fclose(f);
    return found ? kb * 1024 : UINT64_MAX;
  }

  // Cold, sealed segments are read with O_DIRECT: no copy out of the page
  // cache, no page-cache pages to allocate, and the reads in flight go to the
  // device as they are (measured, BENCHMARKS 22: the chunk reader ran 1.5-1.8x
  // faster on a cold log, at about half the CPU). Only segments that
  // precede the range's last one: they are full, nobody writes them any
  // more (a dirty page still in the cache is written back by the kernel
  // before an O_DIRECT read of it, so the bytes are the same either way).
  // Not for a segment mostly in the page cache (copying it from there is
  // cheaper than reading the disk), nor where the file system refuses
  // O_DIRECT (tmpfs): those read buffered.
  bool use_direct(uint64_t s, const file_handle& fh, uint64_t from, uint64_t to) {
    if (!direct_ok_ || s >= plan_.last_seg || to <= from) return false;
    if (max_read_ != UINT32_MAX && max_read_ % kPage != 0) return false;  // the test hook's odd caps
    // 16 probes spread over the range, in a mapping of the file never
    // touched (as resident_fraction does for the whole range).
    file_system& fs = log_->segments.fs();
    const uint64_t cap = uint64_t{1} << plan_.l2;
    auto m = fs.map(fh, cap, map_access::read_only);
    if (!m) return false;
    constexpr uint64_t kProbes = 16;
    const uint64_t len = round_up(to, kPage) - from;
    uint64_t probed = 0, resident = 0;
    for (uint64_t k = 0; k < kProbes; ++k) {
      const uint64_t a = (from + len / kProbes * k) & ~uint64_t{kPage - 1};
      const uint64_t n = std::min<uint64_t>(kProbeBytes, from + len - a);
      if (n == 0) continue;
      resident += resident_pages(static_cast<std::byte*>(m.value()) + a, n);
      probed += (n + kPage - 1) / kPage;
    }
    fs.unmap(m.value(), cap);
    if (probed == 0 || resident * 2 >= probed) return false;
    const int fl = ::fcntl(fh.fd, F_GETFL);
    return fl >= 0 && ::fcntl(fh.fd, F_SETFL, fl | O_DIRECT) == 0;
  }

  status open_segment(uint64_t s) {
    int f = -1;
    for (size_t i = 0; i < files_.size(); ++i)
      if (!files_[i].fh.valid()) {
        f = static_cast<int>(i);
        break;
      }
    if (f < 0) return status(errc::io_error, "chunk_reader: too many segment files open");
    std::string path = segment_path(*log_, s);
    auto fh = log_->segments.fs().open(path, file_system::open_mode::read_only);
    if (!fh) return fh.error();
    file_system& fs = log_->segments.fs();
    auto size = fs.file_size(fh.value());
    const uint64_t cap = uint64_t{1} << plan_.l2;
    status st;
    if (!size) st = size.error();
    else if (size.value() != cap)
      st = status(errc::corruption, path + ": segment is " + std::to_string(size.value()) +
                                        " bytes, expected " + std::to_string(cap));
    plan_off_ = plan_.lo(s) & ~uint64_t{kPage - 1};
    if (st && plan_off_ != 0) {
      // The windows will not cover the header: check it on its own.
      std::byte hdr[segment_format::kHeaderSize];
      st = fs.pread(fh.value(), 0, hdr, sizeof hdr);
      if (st) st = check_header(*log_, hdr, s, path);
    }
    if (!st) {
      file_handle h = fh.value();
      fs.close(h);
      return st;
    }
    const bool direct = use_direct(s, fh.value(), plan_off_, plan_.hi(s));
    if (direct) ++direct_segments_;
    last_direct_ = direct;
    if (uring_ && !direct) {
      // Measured (varve-cold-read, docs/BENCHMARKS.md): buffered reads through
      // the ring, depth 4 x 1 MiB, ran cold at 0.4-0.7x of plain pread, which
      // the kernel's sequential read-ahead (8 MiB here) keeps fed. Asking for
      // the segment's range up front gives the ring's reads the same head
      // start; it only starts I/O and returns.
      (void)::posix_fadvise(fh.value().fd, static_cast<off_t>(plan_off_),
                            static_cast<off_t>(plan_.hi(s) - plan_off_), POSIX_FADV_WILLNEED);
    }
    files_[f].fh = fh.value();
    files_[f].path = std::move(path);
    files_[f].refs = 1;
    files_[f].direct = direct;
    // One system call per segment opened: each read then names the slot.
    // Where the update fails, this file is read through its descriptor.
    int fd = fh.value().fd;
    files_[f].fixed =
        files_fixed_ && io_uring_register_files_update(&ring_, static_cast<unsigned>(f), &fd, 1) == 1;
    plan_file_ = f;
    plan_seg_ = s;
    plan_hi_ = plan_.hi(s);
    plan_first_ = true;
    return {};
  }

  // Fills `w` with the next window; false when there is none (or the plan
  // failed: plan_err_).
  bool plan_next(window& w) {
    while (!plan_done_) {
      if (plan_file_ < 0) {
        if (next_plan_seg_ > plan_.last_seg) {
          plan_done_ = true;
          break;
        }
        const uint64_t s = next_plan_seg_++;
        if (plan_.empty(s)) continue;
        if (plan_.whole(s) && opts_.skip_segment && opts_.skip_segment(s)) {
          ++skipped_;
          ++skipped_pending_;
          continue;
        }
        if (status st = s < log_->first_segment() ? log_->removed_error(plan_.base(s) + plan_.lo(s))
                                                  : open_segment(s);
            !st) {
          plan_err_ = log_->explain_missing(s, plan_.base(s) + plan_.lo(s), st);
          plan_done_ = true;
          break;
        }
      }
      if (plan_off_ >= plan_hi_) {
        unref(plan_file_);
        plan_file_ = -1;
        continue;
      }
      w.seg = plan_seg_;
      w.off = plan_off_;
      w.len = static_cast<uint32_t>(std::min<uint64_t>(chunk_, plan_hi_ - plan_off_));
      w.done = 0;
      w.file = plan_file_;
      w.new_segment = plan_first_;
      w.skipped_before = skipped_pending_;
      skipped_pending_ = 0;
      plan_first_ = false;
      ++files_[plan_file_].refs;
      plan_off_ += w.len;
      return true;
    }
    return false;
  }

  // ---- reads ----

  // What a window's read asks for: its bytes, rounded up to whole pages for
  // O_DIRECT (the buffer has room: chunk_ is a page multiple, and a sealed
  // segment's file runs to its capacity).
  uint32_t ask(const window& w) const {
    return files_[w.file].direct ? static_cast<uint32_t>(round_up(w.len, kPage)) - odd_direct_ : w.len;
  }

  // A file system that took F_SETFL O_DIRECT but refuses the reads (EINVAL:
  // an alignment it wants and we do not give): the file is read buffered from
  // here on, and so is every segment after it. false when O_DIRECT cannot be
  // switched off again (the read then fails as an I/O error).
  bool stop_direct(int f) {
    seg_file& sf = files_[f];
    const int fl = ::fcntl(sf.fh.fd, F_GETFL);
    if (fl < 0 || ::fcntl(sf.fh.fd, F_SETFL, fl & ~O_DIRECT) != 0) return false;
    sf.direct = false;
    direct_ok_ = false;
    if (f == plan_file_) last_direct_ = false;
    ++direct_refused_;
    return true;
  }

  void prep(uint32_t i) {
    window& w = slots_[i];
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    // The ring has room for depth_ entries and at most depth_ reads are in
    // flight, so a slot is always free; submitting what is queued frees one
    // if the kernel has not yet taken them.
    while (!sqe) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    std::byte* dst = w.buf + headroom_ + w.done;
    const seg_file& f = files_[w.file];
    const int fd = f.fixed ? w.file : f.fh.fd;
    const uint32_t n = std::min(ask(w) - w.done, max_read_);
    if (fixed_)
      io_uring_prep_read_fixed(sqe, fd, dst, n, w.off + w.done, static_cast<int>(i));
    else
      io_uring_prep_read(sqe, fd, dst, n, w.off + w.done);
    if (f.fixed) io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
    w.asked_direct = f.direct;
    io_uring_sqe_set_data64(sqe, i);
  }

  // Hands every prepared read to the kernel: a read that is prepared but not
  // submitted would be waited for forever.
  void submit() {
    while (io_uring_sq_ready(&ring_) > 0) {
      int r = io_uring_submit(&ring_);
      if (r > 0 || r == -EINTR || r == -EAGAIN) continue;
      if (r == -EBUSY) {  // completions to reap first
        reap(false);
        continue;
      }
      // The ring itself failed: the reads it holds fail, in order, as I/O errors.
      fail_queued(r < 0 ? -r : EIO);
      return;
    }
  }

  void fail_queued(int e) {
    for (uint32_t k = 0; k < qn_; ++k) {
      window& w = slots_[queue_[(qh_ + k) % queue_.size()]];
      if (w.state == window::reading) finish(w, status(errc::io_error, read_error(w, e)));
    }
  }

  std::string read_error(const window& w, int e) const {
    return files_[w.file].path + " offset " + std::to_string(w.off + w.done) + ": read: " +
           errno_text(e);
  }

  void finish(window& w, status err) {
    if (w.state == window::reading && uring_) --reading_;
    w.err = std::move(err);
    w.state = w.err.ok() ? window::ready : window::failed;
    unref(w.file);
  }

  // Takes one completion (waiting for it when `wait`); 0 or a -errno from the ring.
  int reap(bool wait) {
    io_uring_cqe* cqe = nullptr;
    int r = wait ? io_uring_wait_cqe(&ring_, &cqe) : io_uring_peek_cqe(&ring_, &cqe);
    if (r == -EINTR || r == -EAGAIN) return 0;
    if (r < 0) return r;
    const uint32_t i = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    window& w = slots_[i];
    if (res == -EINTR || res == -EAGAIN) {
      prep(i);
      submit();
    } else if (res == -EINVAL && w.asked_direct && (!files_[w.file].direct || stop_direct(w.file))) {
      // Asked again, buffered. The file's other direct reads in flight come
      // back here too, find it buffered already, and are asked again once each.
      prep(i);
      submit();
    } else if (res < 0) {
      finish(w, status(errc::io_error, read_error(w, -res)));
    } else if (res == 0) {
      finish(w, status(errc::corruption, files_[w.file].path + " offset " +
                                             std::to_string(w.off + w.done) +
                                             ": the file ends here (it was truncated?)"));
    } else {
      w.done += static_cast<uint32_t>(res);
      bytes_read_ += static_cast<uint64_t>(res);
      if (w.done < w.len) {  // a short read: ask for the rest
        prep(i);
        submit();
      } else {
        finish(w, {});
      }
    }
    return 0;
  }

  void read_sync(window& w) {
    const int fd = files_[w.file].fh.fd;
    while (w.done < w.len) {
      ssize_t n = ::pread(fd, w.buf + headroom_ + w.done, std::min(ask(w) - w.done, max_read_),
                          static_cast<off_t>(w.off + w.done));
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        finish(w, status(errc::io_error, read_error(w, errno)));
        return;
      }
      if (n == 0) {
        finish(w, status(errc::corruption, files_[w.file].path + " offset " +
                                               std::to_string(w.off + w.done) +
                                               ": the file ends here (it was truncated?)"));
        return;
      }
      w.done += static_cast<uint32_t>(n);
      bytes_read_ += static_cast<uint64_t>(n);
    }
    finish(w, {});
  }

  // Starts reads until depth_ windows are ahead of the decoder.
  void top_up() {
    // The depth of the file the next window comes from (the last one opened).
    while (qn_ < (last_direct_ ? direct_depth_ : depth_) && !plan_done_) {
      int free_slot = -1;
      for (size_t i = 0; i < slots_.size(); ++i)
        if (slots_[i].state == window::free) {
          free_slot = static_cast<int>(i);
          break;
        }
      if (free_slot < 0) break;
      window& w = slots_[free_slot];
      if (!plan_next(w)) break;
      w.err = {};
      w.state = window::reading;
      queue_[(qh_ + qn_) % queue_.size()] = static_cast<uint32_t>(free_slot);
      ++qn_;
      if (uring_) {
        ++reading_;
        prep(static_cast<uint32_t>(free_slot));
      }
    }
    if (uring_) submit();
  }

  // The next window in file order, its bytes read: -1 at the end.
  result<int> fetch() {
    top_up();
    if (qn_ == 0) {
      if (!plan_err_.ok()) return plan_err_;
      return -1;
    }
    const uint32_t i = queue_[qh_];
    window& w = slots_[i];
    if (uring_) {
      while (w.state == window::reading) {
        if (int r = reap(true); r != 0) fail_queued(-r);
      }
    } else if (w.state == window::reading) {
      read_sync(w);
    }
    qh_ = (qh_ + 1) % queue_.size();
    --qn_;
    // Keep depth_ reads going while the caller works on this one.
    top_up();
    if (w.state == window::failed) {
      w.state = window::free;
      return w.err;
    }
    return static_cast<int>(i);
  }

  // ---- the decoder ----

  // Makes the next window current (cur_), or completes an oversize record
  // (big_ready_). false at the end of the range.
  result<bool> enter_window() {
    while (true) {
      auto f = fetch();
      if (!f) return f.error();
      const int i = f.value();
      if (i < 0) {
        if (carry_len_ > 0 || big_ >= 0)  // run_records reports a record crossing hi first
          return status(errc::corruption, *sv_.path + " offset " + std::to_string(off_) +
                                              ": record is cut short by the end of the range");
        pos_ = plan_.to;
        return false;
      }
      window& w = slots_[i];
      if (w.new_segment) {
        if (carry_len_ > 0 || big_ >= 0) {
          w.state = window::free;
          return status(errc::corruption, *sv_.path + " offset " + std::to_string(off_) +
                                              ": record is cut short by the end of the segment");
        }
        if (w.skipped_before > 0 || w.seg != dec_seg_ + 1) seq_.known = false;
        dec_seg_ = w.seg;
        seg_done_ = false;
        dec_path_ = segment_path(*log_, w.seg);  // its file entry may already serve a later segment
        sv_ = segment_view{&dec_path_,          plan_.base(w.seg),       plan_.records_end,
                           plan_.hi(w.seg),     w.seg == plan_.last_seg, plan_.to_is_committed,
                           log_->verify_checksums, opts_.frame_only};
        if (w.off == 0) {
          if (status st = check_header(*log_, w.buf + headroom_, w.seg, dec_path_); !st) {
            w.state = window::free;
            return st;
          }
        }
        off_ = plan_.lo(w.seg);
      } else if (w.seg != dec_seg_ || seg_done_) {
        // What follows a segment-end record in its segment is never looked at.
        w.state = window::free;
        continue;
      }
      w.state = window::current;
      cur_ = i;
      const std::byte* data = w.buf + headroom_;
      if (big_ >= 0) {
        big_buffer& b = bigs_[big_];
        const uint64_t n = std::min<uint64_t>(big_need_ - big_have_, w.len);
        std::memcpy(b.buf.get() + big_have_, data, n);
        big_have_ += n;
        if (big_have_ < big_need_) {
          w.state = window::free;
          cur_ = -1;
          continue;
        }
        // The record is whole: validate it in its own buffer; the rest of
        // this window stays current for the next call.
        mem_ = data;
        mem_off_ = w.off;
        mem_end_ = w.off + w.len;
        off_ = big_off_ + big_need_;
        if (off_ >= mem_end_) {
          w.state = window::free;
          cur_ = -1;
        }
        const int bi = big_;
        big_ = -1;
        uint64_t boff = big_off_;
        run_out r = run_records(sv_, b.buf.get(), big_off_, big_off_ + big_need_, boff, big_off_,
                                UINT64_MAX, &b.event, 1, seq_);
        if (r.stop == run_stop::error) {
          pos_ = sv_.base + big_off_;
          return r.err;
        }
        if (r.stop == run_stop::marker) {  // 24 bytes: never this large; keep the rule anyway
          seg_done_ = true;
          if (cur_ >= 0) slots_[cur_].state = window::free;
          cur_ = -1;
        }
        pos_ = seg_done_ ? plan_.after(dec_seg_) : sv_.base + off_;
        if (r.n_events == 0) {  // an ignorable record of a newer kind
          if (cur_ < 0) continue;
          return true;
        }
        big_ready_ = bi;
        big_first_seq_ = r.first_sequence;
        big_pos_ = sv_.base + big_off_;
        big_end_ = sv_.base + r.end;
        return true;
      }
      if (carry_len_ > 0) {
        // The headroom in front of the read takes the record's first bytes.
        std::byte* dst = w.buf + headroom_ - carry_len_;
        std::memcpy(dst, carry_.get(), carry_len_);
        mem_ = dst;
        mem_off_ = carry_off_;
        off_ = carry_off_;
        carry_len_ = 0;
      } else {
        mem_ = data;
        mem_off_ = w.off;
      }
      mem_end_ = w.off + w.len;
      return true;
    }
  }

  int acquire_big(uint64_t len) {
    int pick = -1;
    for (size_t i = 0; i < bigs_.size(); ++i) {
      if (bigs_[i].held) continue;
      if (bigs_[i].size >= len) return static_cast<int>(i);
      pick = static_cast<int>(i);
    }
    if (pick < 0) {
      bigs_.emplace_back();
      pick = static_cast<int>(bigs_.size() - 1);
    }
    big_buffer& b = bigs_[pick];
    b.buf = alloc_aligned(len);
    b.size = b.buf ? round_up(len, kPage) : 0;
    return b.buf ? pick : -1;
  }

  result<bool> hand_out_big(chunk& out) {
    big_buffer& b = bigs_[big_ready_];
    b.held = true;
    ++held_;
    out.data = b.buf.get();
    out.position = big_pos_;
    out.end = big_end_;
    out.events = std::span<const uint32_t>(&b.event, 1);
    out.first_sequence = big_first_seq_;
    out.slot = static_cast<uint32_t>(slots_.size() + big_ready_);
    big_ready_ = -1;
    return true;
  }

  std::shared_ptr<detail::shared_log> log_;
  range_plan plan_;
  chunk_reader_options opts_;
  bool uring_;

  uint32_t chunk_ = 0;
  uint32_t headroom_ = 0;
  uint32_t depth_ = 1;
  uint32_t events_cap_ = 0;
  uint32_t max_read_ = UINT32_MAX;
  aligned_bytes block_;
  aligned_bytes carry_;
  std::vector<window> slots_;
  std::vector<uint32_t> queue_;  // windows in file order, a ring of slots_.size()
  uint32_t qh_ = 0, qn_ = 0;
  std::vector<seg_file> files_;
  std::vector<big_buffer> bigs_;
  size_t held_ = 0;

  io_uring ring_{};
  bool ring_ok_ = false;
  bool fixed_ = false;
  bool files_fixed_ = false;  // the ring has a file table (files_.size() slots)
  uint32_t reading_ = 0;

  // planner
  uint64_t next_plan_seg_ = 0;
  int plan_file_ = -1;
  uint64_t plan_seg_ = 0;
  uint64_t plan_off_ = 0;
  uint64_t plan_hi_ = 0;
  bool plan_first_ = false;
  bool plan_done_ = false;
  uint64_t skipped_pending_ = 0;
  status plan_err_;

  // decoder
  int cur_ = -1;
  const std::byte* mem_ = nullptr;  // segment offset mem_off_ is at mem_
  uint64_t mem_off_ = 0, mem_end_ = 0;
  uint64_t off_ = 0;
  uint64_t dec_seg_ = ~uint64_t{0} - 1;
  bool seg_done_ = false;
  std::string dec_path_;
  segment_view sv_;
  sequence_check seq_;
  uint32_t carry_len_ = 0;
  uint64_t carry_off_ = 0;
  int big_ = -1;  // being assembled
  uint64_t big_have_ = 0, big_need_ = 0, big_off_ = 0;
  int big_ready_ = -1;  // assembled, to hand out
  uint64_t big_first_seq_ = 0, big_pos_ = 0, big_end_ = 0;

  uint64_t pos_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t direct_segments_ = 0;  // segments opened for O_DIRECT reads
  bool direct_ok_ = false;        // uring, and want_direct()
  bool last_direct_ = false;      // the segment opened last reads with O_DIRECT
  uint32_t direct_depth_ = 1;     // reads in flight while reading such a segment
  uint64_t direct_refused_ = 0;   // files whose O_DIRECT reads the file system refused
  uint32_t odd_direct_ = 0;       // test hook: VARVE_IO_DIRECT_ODD_LENGTH
  uint64_t skipped_ = 0;
  status pending_;
};

}  // namespace

namespace io_detail {
result<std::unique_ptr<chunk_reader>> open_buffered(std::shared_ptr<detail::shared_log> log,
                                                    const range_plan& plan,
                                                    const chunk_reader_options& o, bool uring,
                                                    int* uring_errno) {
  auto r = std::make_unique<buffered_chunk_reader>(std::move(log), plan, o, uring);
  if (status s = r->init(uring_errno); !s) return s;
  return std::unique_ptr<chunk_reader>(std::move(r));
}
}  // namespace io_detail

}  // namespace varve
