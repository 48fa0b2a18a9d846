// The one seam all of varve's file I/O goes through (like leveldb's Env): the
// POSIX backend by default, a fault-injecting one for tests and torture runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "varve/export.h"
#include "varve/status.h"

namespace varve {

// An open file descriptor owned by the caller (closed by file_system::close).
struct file_handle {
  int fd = -1;
  std::string path;
  bool valid() const { return fd >= 0; }
};

enum class map_access : uint8_t { read_only, read_write };

// Every method returns a status naming the path (and offset where relevant) on
// failure. Implementations must be thread-safe.
class VARVE_API file_system {
 public:
  virtual ~file_system() = default;

  enum class open_mode : uint8_t { read_only, read_write, create_new, create_or_open };
  virtual result<file_handle> open(const std::string& path, open_mode mode) = 0;
  virtual void close(file_handle& f) = 0;
  // Really allocate [0, size): a full disk fails here, not as a SIGBUS later.
  virtual status allocate(const file_handle& f, uint64_t size) = 0;
  virtual status truncate(const file_handle& f, uint64_t size) = 0;
  virtual result<uint64_t> file_size(const file_handle& f) = 0;
  virtual status pwrite(const file_handle& f, uint64_t offset, const void* data, size_t n) = 0;
  // Reads exactly n bytes or fails (a short file is an error naming the offset).
  virtual status pread(const file_handle& f, uint64_t offset, void* data, size_t n) = 0;
  virtual status datasync(const file_handle& f) = 0;
  virtual result<void*> map(const file_handle& f, uint64_t size, map_access access) = 0;
  virtual void unmap(void* addr, uint64_t size) = 0;
  // Replaces the writable shared mapping [addr, addr + size) of `f` by a
  // read-only one at the same address, atomically (views into it stay
  // valid); afterwards the descriptor may be closed. The default does it
  // with mmap(MAP_FIXED) on f.fd.
  virtual status remap_read_only(const file_handle& f, void* addr, uint64_t size);
  // Make [addr, addr+n) of a shared mapping durable (msync MS_SYNC). `f` names the file.
  virtual status sync_range(const file_handle& f, void* addr, uint64_t n) = 0;
  // Fault every page of a writable mapping in for writing (MADV_POPULATE_WRITE),
  // so the appender never takes a page fault. Best effort where unsupported.
  virtual status populate_write(void* addr, uint64_t n) = 0;
  virtual status rename(const std::string& from, const std::string& to) = 0;
  virtual status remove(const std::string& path) = 0;
  virtual status sync_dir(const std::string& dir) = 0;
  // Makes every dirty page of the filesystem holding `dir` durable (syncfs):
  // one call whose cost follows the dirty data, not the number of files.
  virtual status sync_filesystem(const std::string& dir) = 0;
  virtual status create_dir(const std::string& dir) = 0;
  virtual bool exists(const std::string& path) = 0;
  virtual result<std::vector<std::string>> list_dir(const std::string& dir) = 0;
};

// The real thing. Shared and stateless.
VARVE_API std::shared_ptr<file_system> posix_file_system();

}  // namespace varve
