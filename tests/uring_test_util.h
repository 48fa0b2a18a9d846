// For tests run on every io backend: whether the uring backend really runs
// here. Without io_uring (an old kernel, a seccomp policy) a reader asked for
// uring reads with pread instead, and a uring test would pass having tested
// pread a second time.
#pragma once

#include <cstring>
#include <string>

#include "engine/io/chunk_reader_internal.h"
#include "test_util.h"

namespace varve_test {

// "" when io_uring works in this process, else why a uring reader would not use it.
inline std::string uring_unavailable_reason() {
  const int err = varve::io_detail::uring_probe();
  if (err == 0) return {};
  return "io_uring is unavailable here (io_uring_queue_init: " + std::string(std::strerror(err)) +
         "): the uring backend would read with pread";
}

}  // namespace varve_test

// In a test (or SetUp) about `backend`: skips a uring case where io_uring is
// unavailable, or fails it under CI=true.
#define VARVE_SKIP_OR_FAIL_IN_CI_WITHOUT_URING(backend)                        \
  do {                                                                         \
    if ((backend) == ::varve::io_backend::uring) {                             \
      const std::string varve_test_no_uring_ = ::varve_test::uring_unavailable_reason(); \
      if (!varve_test_no_uring_.empty()) VARVE_SKIP_OR_FAIL_IN_CI(varve_test_no_uring_); \
    }                                                                          \
  } while (0)
