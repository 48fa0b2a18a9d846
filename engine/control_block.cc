#include "engine/control_block.h"

#include <unistd.h>

#include <cstring>

#include "engine/coding.h"
#include "engine/log_files.h"

namespace varve {

static constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'C', 'T', 'L'};

result<std::unique_ptr<control_block>> control_block::create(std::shared_ptr<file_system> fs,
                                                             const std::string& dir,
                                                             uint64_t log_id) {
  const std::string path = log_files::join(dir, log_files::kControlName);
  auto f = fs->open(path, file_system::open_mode::create_or_open);
  if (!f) return f.error();
  file_handle fh = f.value();
  // A follower may have it mapped: never shrink it (that would SIGBUS them).
  auto size = fs->file_size(fh);
  status s = size ? status{} : size.error();
  if (s && size.value() < kSize) s = fs->allocate(fh, kSize);
  if (!s) {
    fs->close(fh);
    return s;
  }
  auto m = fs->map(fh, kSize, map_access::read_write);
  if (!m) {
    fs->close(fh);
    return m.error();
  }
  auto* d = static_cast<std::byte*>(m.value());
  std::memcpy(d, kMagic, 8);
  coding::put_u32(d + 8, 1);
  coding::put_u64(d + 16, log_id);
  auto cb = std::unique_ptr<control_block>(new control_block(std::move(fs), fh, d));
  cb->writer_pid().store(static_cast<uint64_t>(::getpid()));
  return cb;
}

result<std::unique_ptr<control_block>> control_block::open(std::shared_ptr<file_system> fs,
                                                           const std::string& dir,
                                                           uint64_t log_id) {
  const std::string path = log_files::join(dir, log_files::kControlName);
  auto f = fs->open(path, file_system::open_mode::read_only);
  if (!f) return f.error();
  file_handle fh = f.value();
  auto size = fs->file_size(fh);
  if (!size || size.value() < kSize) {
    fs->close(fh);
    return status(errc::corruption, path + ": control block is truncated");
  }
  auto m = fs->map(fh, kSize, map_access::read_only);
  if (!m) {
    fs->close(fh);
    return m.error();
  }
  auto* d = static_cast<std::byte*>(m.value());
  if (std::memcmp(d, kMagic, 8) != 0 || coding::get_u64(d + 16) != log_id) {
    fs->unmap(d, kSize);
    fs->close(fh);
    return status(errc::corruption, path + " offset 0: control block does not belong to this log");
  }
  return std::unique_ptr<control_block>(new control_block(std::move(fs), fh, d));
}

control_block::~control_block() {
  fs_->unmap(data_, kSize);
  fs_->close(file_);
}

}  // namespace varve
