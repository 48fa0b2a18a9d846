// Shared helpers for varve's libFuzzer targets (fuzz/*_fuzzer.cc): checks
// that trap with a message, a scratch directory on tmpfs, and whole-file I/O.
// Not part of the library; never linked into anything but the fuzzers and the
// seed generator.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "varve/status.h"

namespace varve_fuzz {

// What a read of a damaged log may fail with: the reader's contract
// (include/varve/reader.h, README) is errc::corruption naming file and offset.
inline bool clean_read_error(varve::errc c) { return c == varve::errc::corruption || c == varve::errc::not_a_log || c == varve::errc::newer_format || c == varve::errc::not_found; }

// What open may fail with when files of the log are damaged.
inline bool clean_open_error(varve::errc c) {
  return c == varve::errc::corruption || c == varve::errc::not_a_log || c == varve::errc::newer_format || c == varve::errc::not_found;
}

// A violated invariant: say which, then trap so libFuzzer records the input
// as a crash (an abort() would do the same; a trap cannot be caught).
[[noreturn]] inline void fail(const char* file, int line, const char* what, const std::string& detail) {
  std::fprintf(stderr, "\n==varve-fuzz== INVARIANT VIOLATED at %s:%d: %s\n  %s\n", file, line, what,
               detail.c_str());
  std::fflush(stderr);
  __builtin_trap();
}

#define FUZZ_CHECK(cond, detail)                                         \
  do {                                                                   \
    if (!(cond)) ::varve_fuzz::fail(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)

// Little-endian loads/stores for harness-side surgery.
inline uint64_t le64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t le32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void put64(std::byte* p, uint64_t v) { std::memcpy(p, &v, 8); }

// Consumes an input front to back; reads past the end give zeros, so every
// input decodes to something.
struct input_cursor {
  const uint8_t* p;
  size_t n;
  uint8_t u8() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  uint32_t u32() { return static_cast<uint32_t>(u16()) | (static_cast<uint32_t>(u16()) << 16); }
  // Up to `max` bytes, fewer at the end of the input.
  std::string_view bytes(size_t want) {
    size_t k = want < n ? want : n;
    std::string_view s(reinterpret_cast<const char*>(p), k);
    p += k;
    n -= k;
    return s;
  }
  bool empty() const { return n == 0; }
};

// Where fuzzers put their scratch directories: tmpfs when it is writable (a
// fuzzer creates and deletes a directory per input), else the temp dir.
inline std::string scratch_root() {
  static const std::string root = [] {
    std::string base = "/dev/shm";
    if (::access(base.c_str(), W_OK) != 0) base = std::filesystem::temp_directory_path().string();
    std::string tmpl = base + "/varve-fuzz-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    std::string made(buf.data());
    // Removed when the fuzzer exits normally (a crash leaves it for inspection).
    static struct cleanup {
      std::string dir;
      ~cleanup() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
    } c{made};
    return made;
  }();
  return root;
}

inline void remove_tree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

inline bool write_file(const std::string& path, const void* data, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd, p + done, n - done);
    if (w <= 0) {
      ::close(fd);
      return false;
    }
    done += static_cast<size_t>(w);
  }
  ::close(fd);
  return true;
}

inline bool read_file(const std::string& path, std::vector<std::byte>& out) {
  out.clear();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return false;
  }
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t r = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  out.resize(done);
  return true;
}

// Copies every regular file of `from` (and of its index/ subdirectory) to `to`.
inline void copy_log_dir(const std::string& from, const std::string& to) {
  namespace fs = std::filesystem;
  fs::create_directories(to);
  for (const auto& e : fs::recursive_directory_iterator(from)) {
    const fs::path rel = fs::relative(e.path(), from);
    if (e.is_directory()) {
      fs::create_directories(fs::path(to) / rel);
    } else if (e.is_regular_file()) {
      fs::copy_file(e.path(), fs::path(to) / rel, fs::copy_options::overwrite_existing);
    }
  }
}

}  // namespace varve_fuzz
