#include "base/segment.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "base/archive_file.h"
#include "base/log_files.h"

namespace varve {

result<std::unique_ptr<segment>> segment::create(std::shared_ptr<file_system> fs,
                                                 const identity& id, uint64_t index,
                                                 prefault pf) {
  const uint64_t cap = uint64_t{1} << id.log2_capacity;
  const std::string path = log_files::join(id.dir, log_files::segment_name(index));
  auto f = fs->open(path, file_system::open_mode::create_new);
  if (!f) return f.error();
  file_handle fh = f.value();
  auto fail = [&](status s) -> result<std::unique_ptr<segment>> {
    fs->close(fh);
    (void)fs->remove(path);  // never leave a half-made segment behind to confuse recovery
    return s;
  };
  if (status s = fs->allocate(fh, cap); !s) return fail(s);
  auto m = fs->map(fh, cap, map_access::read_write);
  if (!m) return fail(m.error());
  auto* data = static_cast<std::byte*>(m.value());
  // MADV_RANDOM: no read-around on a fault, hence page-sized folios for
  // these (fresh, unwritten) pages; a hint, so its failure changes nothing.
  if (id.page_folios) (void)::madvise(data, cap, MADV_RANDOM);
  segment_format::encode_header(data, {id.log2_capacity, index, id.log_id});
  // Crash story: the header is durable before the segment is used, so after
  // a power loss only the newest segment file can lack a valid header (it
  // was being created), and recovery can tell it from damage.
  if (status s = fs->sync_range(fh, data, segment_format::kHeaderSize); !s) {
    fs->unmap(data, cap);
    return fail(s);
  }
  if (pf == prefault::for_write) {
    for (uint64_t off = 0; off < cap; off += kPrefaultSlice) {
      if (status s = fs->populate_write(data + off, std::min(kPrefaultSlice, cap - off)); !s) {
        fs->unmap(data, cap);
        return fail(status(s.code(), path + ": pre-faulting the segment: " + s.message()));
      }
    }
  }
  return std::unique_ptr<segment>(
      new segment(std::move(fs), fh, data, cap, index, map_access::read_write));
}

struct segment::archive_state {
  std::unique_ptr<archive_file::segment_reader> reader;
  std::mutex mu;                                  // one thread inflates a frame
  std::unique_ptr<std::atomic<uint8_t>[]> ready;  // per frame: inflated and checked
  std::atomic<uint32_t> missing{0};               // frames not yet ready
};

segment::segment(std::shared_ptr<file_system> fs, file_handle f, std::byte* data, uint64_t capacity,
                 uint64_t index, map_access access)
    : fs_(std::move(fs)), file_(std::move(f)), data_(data), capacity_(capacity), index_(index), access_(access) {}

result<std::unique_ptr<segment>> segment::open(std::shared_ptr<file_system> fs,
                                               const identity& id, uint64_t index,
                                               map_access access, bool whole) {
  const uint64_t cap = uint64_t{1} << id.log2_capacity;
  const std::string path = log_files::join(id.dir, log_files::segment_name(index));
  auto f = fs->open(path, access == map_access::read_write ? file_system::open_mode::read_write
                                                           : file_system::open_mode::read_only);
  // Gone from DIR: an archived segment reads from the archive (which says
  // whether it holds it: a segment nobody archived is still "missing").
  if (!f && f.error().code() == errc::not_found && access == map_access::read_only && !id.archive_dir.empty()) {
    const std::string apath = log_files::join(id.archive_dir, archive_file::segment_file_name(index));
    if (fs->exists(apath)) return open_archived(std::move(fs), id, index, id.archive_dir, whole);
  }
  if (!f) return f.error();
  file_handle fh = f.value();
  auto size = fs->file_size(fh);
  if (!size) {
    fs->close(fh);
    return size.error();
  }
  if (size.value() != cap) {
    fs->close(fh);
    // Mapping past EOF would SIGBUS on access: refuse instead.
    return status(errc::corruption, path + ": segment is " + std::to_string(size.value()) +
                                        " bytes, expected " + std::to_string(cap));
  }
  auto m = fs->map(fh, cap, access);
  if (!m) {
    fs->close(fh);
    return m.error();
  }
  auto* data = static_cast<std::byte*>(m.value());
  // A read-only segment never syncs: the mapping keeps the file, and the
  // descriptor would only count against the process's limit.
  if (access == map_access::read_only) {
    fs->close(fh);
    fh.fd = -1;
  }
  segment_format::header h;
  status s = segment_format::decode_header(data, path, h);
  if (s && (h.segment_index != index || h.log2_capacity != id.log2_capacity))
    s = status(errc::corruption, path + " offset 0: header names segment " +
                                     std::to_string(h.segment_index) + ", expected " +
                                     std::to_string(index));
  if (s && h.log_id != id.log_id)
    s = status(errc::corruption, path + " offset 32: segment belongs to another log");
  if (!s) {
    fs->unmap(data, cap);
    fs->close(fh);
    return s;
  }
  return std::unique_ptr<segment>(new segment(std::move(fs), fh, data, cap, index, access));
}

status segment::make_read_only() {
  if (access_ == map_access::read_only) return {};
  if (status s = fs_->remap_read_only(file_, data_, capacity_); !s) return s;
  access_ = map_access::read_only;
  return {};
}

void segment::drop_written(uint64_t from, uint64_t to) {
  if (access_ != map_access::read_write) return;
  // Whole pages only: the page holding `to` may still take the next record.
  // MADV_DONTNEED on a shared file mapping unmaps; it never discards data.
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t first = (from + page - 1) & ~(page - 1), end = std::min(to, capacity_) & ~(page - 1);
  if (end > first) (void)::madvise(data_ + first, end - first, MADV_DONTNEED);
}

void segment::release_file() {
  if (access_ != map_access::read_only || !file_.valid()) return;
  fs_->close(file_);
  file_.fd = -1;
}

status segment::drop_file_pages() {
  // An archived segment retention removed: no frame is inflated into it from
  // here on (its memory becomes read-only zeros).
  std::unique_lock<std::mutex> g;
  if (arc_) {
    g = std::unique_lock<std::mutex>(arc_->mu);
    for (uint32_t i = 0; i < arc_->reader->frame_count(); ++i) arc_->ready[i].store(1, std::memory_order_release);
    arc_->missing.store(0, std::memory_order_release);
  }
  void* p = ::mmap(data_, capacity_, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return status(errc::io_error, path() + ": mmap of zero pages over a removed segment: " + std::strerror(errno));
  if (file_.valid()) fs_->close(file_);
  file_.fd = -1;
  access_ = map_access::read_only;
  return {};
}

result<std::unique_ptr<segment>> segment::open_archived(std::shared_ptr<file_system> fs, const identity& id,
                                                        uint64_t index, const std::string& archive_dir,
                                                        bool whole) {
  const uint64_t cap = uint64_t{1} << id.log2_capacity;
  const std::string apath = log_files::join(archive_dir, archive_file::segment_file_name(index));
  auto r = archive_file::segment_reader::open(*fs, apath, id.log2_capacity, index, id.log_id);
  if (!r) return r.error();
  // Anonymous, zero until a frame is inflated into it: zero never
  // validates as a record, and untouched frames cost no memory.
  void* p = ::mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return status(errc::io_error, apath + ": mapping memory for the archived segment: " + std::strerror(errno));
  std::unique_ptr<segment> seg(new segment(std::move(fs), file_handle{-1, apath}, static_cast<std::byte*>(p), cap,
                                           index, map_access::read_only));
  auto st = std::make_unique<archive_state>();
  const uint32_t n = r.value()->frame_count();
  st->ready = std::make_unique<std::atomic<uint8_t>[]>(n);
  for (uint32_t i = 0; i < n; ++i) st->ready[i].store(0, std::memory_order_relaxed);
  st->missing.store(n, std::memory_order_relaxed);
  st->reader = std::move(r.value());
  seg->arc_ = std::move(st);
  // The header must be this segment's, as for a hot file.
  if (status s = seg->ensure(0, segment_format::kHeaderSize); !s) return s;
  segment_format::header h;
  status s = segment_format::decode_header(seg->data_, apath, h);
  if (s && (h.segment_index != index || h.log2_capacity != id.log2_capacity || h.log_id != id.log_id))
    s = status(errc::corruption, apath + ": the archived bytes hold the header of another segment or log");
  if (!s) return s;
  if (whole)
    if (status a = seg->ensure_all(); !a) return a;
  return seg;
}

status segment::fill(uint64_t off, uint64_t n) const {
  archive_state& a = *arc_;
  if (a.missing.load(std::memory_order_acquire) == 0) return {};
  if (off >= capacity_) return {};
  n = std::min(n, capacity_ - off);
  if (n == 0) return {};
  const uint64_t fb = a.reader->frame_bytes();
  const uint64_t first = off / fb, last = (off + n - 1) / fb;
  for (uint64_t i = first; i <= last; ++i) {
    if (a.ready[i].load(std::memory_order_acquire)) continue;
    std::lock_guard<std::mutex> g(a.mu);
    if (a.ready[i].load(std::memory_order_relaxed)) continue;
    if (status s = a.reader->read_frame(static_cast<uint32_t>(i), data_ + i * fb); !s) return s;
    // Release: a thread that sees the flag sees the frame's bytes.
    a.ready[i].store(1, std::memory_order_release);
    a.missing.fetch_sub(1, std::memory_order_acq_rel);
  }
  return {};
}

segment::~segment() {
  if (arc_) {
    ::munmap(data_, capacity_);
    return;
  }
  fs_->unmap(data_, capacity_);
  fs_->close(file_);
}

status segment::read_footer(segment_format::footer& out) const {
  const uint64_t off = capacity_ - segment_format::kFooterSize;
  if (status a = ensure(off, segment_format::kFooterSize); !a) return a;
  status s = segment_format::decode_footer(data_ + off, path(), off, out);
  if (s && (out.segment_index != index_ || out.data_end < segment_format::kHeaderSize ||
            out.data_end > off - 24))
    return {errc::corruption, path() + " offset " + std::to_string(off) +
                                  ": footer fields are inconsistent with the segment"};
  return s;
}

}  // namespace varve
