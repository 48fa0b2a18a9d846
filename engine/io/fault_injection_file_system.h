// A file_system that wraps another and fails chosen calls with a chosen errno
// (ENOSPC, EIO, ...), so tests can prove a failure gives a clear error and loses
// nothing acknowledged. Used by tests/ and the torture harness; not public API.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "varve/file_system.h"

namespace varve {

class fault_injection_file_system final : public file_system {
 public:
  enum class op : uint8_t {
    open, allocate, truncate, pwrite, pread, datasync, map, sync_range, populate,
    rename, remove, sync_dir, create_dir, sync_filesystem, kCount
  };

  explicit fault_injection_file_system(std::shared_ptr<file_system> base = posix_file_system());

  // Fails `count` calls of `o` with `err`, after letting the next `after`
  // pass; only calls on paths containing `path_part` when it is not empty
  // (calls on other paths neither fail nor count), and, for sync_range, only
  // syncs of at least `min_bytes` (a test of write-back errors in the data
  // leaves a new segment's header msync alone: its failure is a failed
  // creation, which the writer retries, not a lost write).
  void fail(op o, int err, uint64_t after = 0, uint64_t count = 1, std::string path_part = {},
            uint64_t min_bytes = 0);
  void fail_always(op o, int err, std::string path_part = {}) { fail(o, err, 0, UINT64_MAX, std::move(path_part)); }
  void clear();
  uint64_t calls(op o) const { return calls_[static_cast<size_t>(o)].load(); }
  uint64_t failures_injected() const { return injected_.load(); }

  result<file_handle> open(const std::string& path, open_mode mode) override;
  void close(file_handle& f) override { base_->close(f); }
  status allocate(const file_handle& f, uint64_t size) override;
  status truncate(const file_handle& f, uint64_t size) override;
  result<uint64_t> file_size(const file_handle& f) override { return base_->file_size(f); }
  status pwrite(const file_handle& f, uint64_t offset, const void* data, size_t n) override;
  status pread(const file_handle& f, uint64_t offset, void* data, size_t n) override;
  status datasync(const file_handle& f) override;
  result<void*> map(const file_handle& f, uint64_t size, map_access access) override;
  void unmap(void* addr, uint64_t size) override { base_->unmap(addr, size); }
  status sync_range(const file_handle& f, void* addr, uint64_t n) override;
  status populate_write(void* addr, uint64_t n) override;
  status rename(const std::string& from, const std::string& to) override;
  status remove(const std::string& path) override;
  status sync_dir(const std::string& dir) override;
  status create_dir(const std::string& dir) override;
  status sync_filesystem(const std::string& dir) override;
  bool exists(const std::string& path) override { return base_->exists(path); }
  result<std::vector<std::string>> list_dir(const std::string& dir) override {
    return base_->list_dir(dir);
  }

 private:
  // Returns the errno to fail with, or 0 to pass the call through.
  int should_fail(op o, const std::string& path = {}, uint64_t bytes = UINT64_MAX);

  struct rule {
    int err = 0;
    uint64_t after = 0;
    uint64_t count = 0;
    std::string path_part;
    uint64_t min_bytes = 0;
  };
  std::shared_ptr<file_system> base_;
  std::mutex mu_;
  std::array<rule, static_cast<size_t>(op::kCount)> rules_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(op::kCount)> calls_{};
  std::atomic<uint64_t> injected_{0};
};

}  // namespace varve
