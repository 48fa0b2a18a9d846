#include "base/segment.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

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

result<std::unique_ptr<segment>> segment::open(std::shared_ptr<file_system> fs,
                                               const identity& id, uint64_t index,
                                               map_access access) {
  const uint64_t cap = uint64_t{1} << id.log2_capacity;
  const std::string path = log_files::join(id.dir, log_files::segment_name(index));
  auto f = fs->open(path, access == map_access::read_write ? file_system::open_mode::read_write
                                                           : file_system::open_mode::read_only);
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

void segment::release_file() {
  if (access_ != map_access::read_only || !file_.valid()) return;
  fs_->close(file_);
  file_.fd = -1;
}

status segment::drop_file_pages() {
  void* p = ::mmap(data_, capacity_, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return status(errc::io_error, path() + ": mmap of zero pages over a removed segment: " + std::strerror(errno));
  if (file_.valid()) fs_->close(file_);
  file_.fd = -1;
  access_ = map_access::read_only;
  return {};
}

segment::~segment() {
  fs_->unmap(data_, capacity_);
  fs_->close(file_);
}

status segment::read_footer(segment_format::footer& out) const {
  const uint64_t off = capacity_ - segment_format::kFooterSize;
  status s = segment_format::decode_footer(data_ + off, path(), off, out);
  if (s && (out.segment_index != index_ || out.data_end < segment_format::kHeaderSize ||
            out.data_end > off - 24))
    return {errc::corruption, path() + " offset " + std::to_string(off) +
                                  ": footer fields are inconsistent with the segment"};
  return s;
}

}  // namespace varve
