#include "engine/io/fault_injection_file_system.h"

#include <cerrno>
#include <cstring>

namespace varve {

fault_injection_file_system::fault_injection_file_system(std::shared_ptr<file_system> base)
    : base_(std::move(base)) {}

void fault_injection_file_system::fail(op o, int err, uint64_t after, uint64_t count, std::string path_part,
                                       uint64_t min_bytes) {
  std::lock_guard<std::mutex> g(mu_);
  rules_[static_cast<size_t>(o)] = rule{err, after, count, std::move(path_part), min_bytes};
}

void fault_injection_file_system::clear() {
  std::lock_guard<std::mutex> g(mu_);
  rules_.fill(rule{});
}

int fault_injection_file_system::should_fail(op o, const std::string& path, uint64_t bytes) {
  calls_[static_cast<size_t>(o)].fetch_add(1);
  std::lock_guard<std::mutex> g(mu_);
  rule& r = rules_[static_cast<size_t>(o)];
  if (r.count == 0) return 0;
  if (!r.path_part.empty() && path.find(r.path_part) == std::string::npos) return 0;
  if (bytes < r.min_bytes) return 0;
  if (r.after > 0) {
    --r.after;
    return 0;
  }
  if (r.count != UINT64_MAX) --r.count;
  injected_.fetch_add(1);
  return r.err;
}

static status injected(int err, const char* what, const std::string& path) {
  errc code = err == ENOSPC ? errc::no_space : errc::io_error;
  return {code, path + ": " + what + ": " + std::strerror(err) + " (injected)"};
}

result<file_handle> fault_injection_file_system::open(const std::string& path, open_mode mode) {
  if (int e = should_fail(op::open, path)) return injected(e, "open", path);
  return base_->open(path, mode);
}
status fault_injection_file_system::allocate(const file_handle& f, uint64_t size) {
  if (int e = should_fail(op::allocate, f.path)) return injected(e, "fallocate", f.path);
  return base_->allocate(f, size);
}
status fault_injection_file_system::truncate(const file_handle& f, uint64_t size) {
  if (int e = should_fail(op::truncate, f.path)) return injected(e, "ftruncate", f.path);
  return base_->truncate(f, size);
}
status fault_injection_file_system::pwrite(const file_handle& f, uint64_t off, const void* d,
                                           size_t n) {
  if (int e = should_fail(op::pwrite, f.path)) return injected(e, "write", f.path);
  return base_->pwrite(f, off, d, n);
}
status fault_injection_file_system::pread(const file_handle& f, uint64_t off, void* d, size_t n) {
  if (int e = should_fail(op::pread, f.path)) return injected(e, "read", f.path);
  return base_->pread(f, off, d, n);
}
status fault_injection_file_system::datasync(const file_handle& f) {
  if (int e = should_fail(op::datasync, f.path)) return injected(e, "fdatasync", f.path);
  return base_->datasync(f);
}
result<void*> fault_injection_file_system::map(const file_handle& f, uint64_t size,
                                               map_access access) {
  if (int e = should_fail(op::map, f.path)) return injected(e, "mmap", f.path);
  return base_->map(f, size, access);
}
status fault_injection_file_system::sync_range(const file_handle& f, void* addr, uint64_t n) {
  if (int e = should_fail(op::sync_range, f.path, n)) return injected(e, "msync", f.path);
  return base_->sync_range(f, addr, n);
}
status fault_injection_file_system::populate_write(void* addr, uint64_t n) {
  if (int e = should_fail(op::populate)) return injected(e, "madvise", "<mapping>");
  return base_->populate_write(addr, n);
}
status fault_injection_file_system::rename(const std::string& from, const std::string& to) {
  if (int e = should_fail(op::rename, from)) return injected(e, "rename", from);
  return base_->rename(from, to);
}
status fault_injection_file_system::remove(const std::string& path) {
  if (int e = should_fail(op::remove, path)) return injected(e, "unlink", path);
  return base_->remove(path);
}
status fault_injection_file_system::sync_dir(const std::string& dir) {
  if (int e = should_fail(op::sync_dir, dir)) return injected(e, "fsync directory", dir);
  return base_->sync_dir(dir);
}
status fault_injection_file_system::sync_filesystem(const std::string& dir) {
  if (int e = should_fail(op::sync_filesystem)) return injected(e, "syncfs", dir + "/");
  return base_->sync_filesystem(dir);
}
status fault_injection_file_system::create_dir(const std::string& dir) {
  if (int e = should_fail(op::create_dir, dir)) return injected(e, "mkdir", dir);
  return base_->create_dir(dir);
}

}  // namespace varve
