// The POSIX backend of the file_system seam.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "varve/file_system.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace varve {
namespace {

status from_errno(int err, const std::string& what, const std::string& path,
                  int64_t offset = -1) {
  std::string msg = path;
  if (offset >= 0) msg += " offset " + std::to_string(offset);
  msg += ": " + what + ": " + std::strerror(err);
  errc code = errc::io_error;
  if (err == ENOSPC || err == EDQUOT) code = errc::no_space;
  else if (err == ENOENT) code = errc::not_found;
  else if (err == EROFS || err == EACCES || err == EPERM) code = errc::read_only;
  return {code, std::move(msg)};
}

// Runs op(fd) on an O_DIRECTORY descriptor of `dir`; errors name `shown`.
template <class Op>
status with_dir_fd(const std::string& dir, const char* what, const std::string& shown, Op op) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return from_errno(errno, "open directory", dir);
  int r = op(fd);
  int err = errno;
  ::close(fd);
  if (r != 0) return from_errno(err, what, shown);
  return {};
}

class posix_fs final : public file_system {
 public:
  result<file_handle> open(const std::string& path, open_mode mode) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case open_mode::read_only: flags |= O_RDONLY; break;
      case open_mode::read_write: flags |= O_RDWR; break;
      case open_mode::create_new: flags |= O_RDWR | O_CREAT | O_EXCL; break;
      case open_mode::create_or_open: flags |= O_RDWR | O_CREAT; break;
    }
    int fd;
    do fd = ::open(path.c_str(), flags, 0644);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return from_errno(errno, "open", path);
    return file_handle{fd, path};
  }
  void close(file_handle& f) override {
    if (f.fd >= 0) ::close(f.fd);
    f.fd = -1;
  }
  status allocate(const file_handle& f, uint64_t size) override {
    // posix_fallocate returns the error rather than setting errno. It allocates
    // real blocks (never a sparse file): ENOSPC surfaces here, not as SIGBUS.
    int r;
    do r = ::posix_fallocate(f.fd, 0, static_cast<off_t>(size));
    while (r == EINTR);
    if (r != 0) return from_errno(r, "fallocate " + std::to_string(size) + " bytes", f.path);
    return {};
  }
  status truncate(const file_handle& f, uint64_t size) override {
    if (::ftruncate(f.fd, static_cast<off_t>(size)) != 0)
      return from_errno(errno, "ftruncate", f.path, static_cast<int64_t>(size));
    return {};
  }
  result<uint64_t> file_size(const file_handle& f) override {
    struct stat st;
    if (::fstat(f.fd, &st) != 0) return from_errno(errno, "fstat", f.path);
    return static_cast<uint64_t>(st.st_size);
  }
  status pwrite(const file_handle& f, uint64_t offset, const void* data, size_t n) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::pwrite(f.fd, p, n, static_cast<off_t>(offset));
      if (w < 0) {
        if (errno == EINTR) continue;
        return from_errno(errno, "write", f.path, static_cast<int64_t>(offset));
      }
      p += w;
      n -= static_cast<size_t>(w);
      offset += static_cast<uint64_t>(w);
    }
    return {};
  }
  status pread(const file_handle& f, uint64_t offset, void* data, size_t n) override {
    char* p = static_cast<char*>(data);
    while (n > 0) {
      ssize_t r = ::pread(f.fd, p, n, static_cast<off_t>(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        return from_errno(errno, "read", f.path, static_cast<int64_t>(offset));
      }
      if (r == 0)
        return {errc::corruption,
                f.path + " offset " + std::to_string(offset) + ": file is shorter than expected"};
      p += r;
      n -= static_cast<size_t>(r);
      offset += static_cast<uint64_t>(r);
    }
    return {};
  }
  status datasync(const file_handle& f) override {
    if (::fdatasync(f.fd) != 0) return from_errno(errno, "fdatasync", f.path);
    return {};
  }
  result<void*> map(const file_handle& f, uint64_t size, map_access access) override {
    int prot = access == map_access::read_write ? PROT_READ | PROT_WRITE : PROT_READ;
    void* p = ::mmap(nullptr, size, prot, MAP_SHARED, f.fd, 0);
    if (p == MAP_FAILED) return from_errno(errno, "mmap", f.path);
    return p;
  }
  void unmap(void* addr, uint64_t size) override { ::munmap(addr, size); }
  status sync_range(const file_handle& f, void* addr, uint64_t n) override {
    // msync needs a page-aligned start.
    auto a = reinterpret_cast<uintptr_t>(addr);
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    uintptr_t start = a & ~(page - 1);
    if (::msync(reinterpret_cast<void*>(start), n + (a - start), MS_SYNC) != 0)
      return from_errno(errno, "msync", f.path);
    return {};
  }
  status populate_write(void* addr, uint64_t n) override {
    if (::madvise(addr, n, MADV_POPULATE_WRITE) == 0) return {};
    if (errno == EINVAL) {
      // Kernel older than 5.14: touch one byte per page for writing instead.
      // The pages are fresh zeros, so writing a zero changes nothing.
      auto* p = static_cast<volatile char*>(addr);
      const long page = ::sysconf(_SC_PAGESIZE);
      for (uint64_t i = 0; i < n; i += static_cast<uint64_t>(page)) p[i] = p[i];
      return {};
    }
    // EFAULT/ENOMEM here would mean the backing blocks are gone; report it.
    return from_errno(errno, "madvise(MADV_POPULATE_WRITE)", "<mapping>");
  }
  status rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return from_errno(errno, "rename to " + to, from);
    return {};
  }
  status remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return from_errno(errno, "unlink", path);
    return {};
  }
  status sync_dir(const std::string& dir) override {
    return with_dir_fd(dir, "fsync directory", dir, [](int fd) { return ::fsync(fd); });
  }
  status sync_filesystem(const std::string& dir) override {
    return with_dir_fd(dir, "syncfs of the filesystem holding it", dir + "/",
                       [](int fd) { return ::syncfs(fd); });
  }
  status create_dir(const std::string& dir) override {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return from_errno(errno, "mkdir", dir);
    return {};
  }
  bool exists(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }
  result<std::vector<std::string>> list_dir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return from_errno(errno, "opendir", dir);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n != "." && n != "..") names.emplace_back(n);
    }
    ::closedir(d);
    return names;
  }
};

}  // namespace

status file_system::remap_read_only(const file_handle& f, void* addr, uint64_t size) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer models an mmap as a write of the whole range, so the swap
  // below would be reported as a race with every reader of these addresses
  // (though both mappings show the same file pages). Under TSan the range is
  // made read-only in place instead: the same protection, with the IPIs the
  // swap avoids, which do not matter there.
  (void)f;
  if (::mprotect(addr, size, PROT_READ) != 0) return from_errno(errno, "mprotect (read-only)", f.path);
  return {};
#else
  // MAP_FIXED over the old mapping: the kernel swaps it under its mmap lock,
  // so a reader touching these addresses meanwhile sees one or the other,
  // both showing the same file pages.
  void* p = ::mmap(addr, size, PROT_READ, MAP_SHARED | MAP_FIXED, f.fd, 0);
  if (p == MAP_FAILED) return from_errno(errno, "mmap (read-only remap)", f.path);
  return {};
#endif
}

std::shared_ptr<file_system> posix_file_system() {
  static std::shared_ptr<file_system> fs = std::make_shared<posix_fs>();
  return fs;
}

}  // namespace varve
