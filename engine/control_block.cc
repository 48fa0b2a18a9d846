#include "engine/control_block.h"

#include <unistd.h>

#include <xxhash.h>

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

static uint64_t clean_check(uint64_t log_id, uint64_t end) {
  uint64_t words[2] = {log_id, end};
  return XXH3_64bits(words, sizeof words);
}

void control_block::set_clean_end(uint64_t log_id, uint64_t end) {
  ref(264).store(clean_check(log_id, end), std::memory_order_relaxed);
  ref(256).store(end, std::memory_order_release);
}

status control_block::clear_clean_end(bool durable) {
  ref(256).store(0, std::memory_order_relaxed);
  ref(264).store(0, std::memory_order_relaxed);
  if (!durable) return {};
  return fs_->sync_range(file_, data_, kSize);
}

uint64_t control_block::read_clean_end(file_system& fs, const std::string& dir, uint64_t log_id) {
  auto f = fs.open(log_files::join(dir, log_files::kControlName), file_system::open_mode::read_only);
  if (!f) return 0;
  file_handle fh = f.value();
  std::byte buf[16];
  auto size = fs.file_size(fh);
  status s = size && size.value() >= kSize ? fs.pread(fh, 256, buf, sizeof buf)
                                           : status(errc::corruption, "short");
  fs.close(fh);
  if (!s) return 0;
  const uint64_t end = coding::get_u64(buf);
  return end != 0 && coding::get_u64(buf + 8) == clean_check(log_id, end) ? end : 0;
}

control_block::~control_block() {
  fs_->unmap(data_, kSize);
  fs_->close(file_);
}

}  // namespace varve
