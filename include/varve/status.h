// Errors as values: a status (code + message naming file and offset) and result<T>.
// Nothing on varve's hot path throws; every fallible call returns one of these.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "varve/export.h"

namespace varve {

enum class errc : uint8_t {
  ok = 0,
  wrong_expected_version,  // optimistic concurrency check failed; nothing written
  corruption,              // bytes on disk failed validation (file and offset in message)
  io_error,                // a system call failed (errno text in message)
  no_space,                // ENOSPC: the disk is full; nothing acknowledged was lost
  not_found,               // a directory, file, stream or position does not exist
  invalid_argument,        // the caller passed something varve cannot accept
  not_a_log,               // the directory or file is not a varve log
  newer_format,            // written by a newer varve; refusing to guess
  locked,                  // another writer (thread or process) holds the log
  read_only,               // opened read-only, or writes refused after a failed sync
  too_large,               // an event or batch cannot fit in one segment
  cancelled,
  already_exists,          // create() of a log where one already is
  removed,                 // the position or version was removed by retention (the message says where the log starts)
  stream_deleted,          // the stream was deleted (tombstoned): not readable, no appends
};

VARVE_API std::string_view errc_name(errc c) noexcept;

// A cheap-to-return outcome. ok() carries no allocation; errors carry a message.
class [[nodiscard]] VARVE_API status {
 public:
  status() noexcept = default;
  status(errc code, std::string message);

  static status ok_status() noexcept { return {}; }

  bool ok() const noexcept { return code_ == errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  errc code() const noexcept { return code_; }
  // "corruption: /data/0000000003.seg offset 4096: record checksum mismatch"
  std::string to_string() const;
  const std::string& message() const noexcept;

  // For wrong_expected_version: the stream's actual version (0 = no stream).
  uint64_t actual_version() const noexcept { return actual_version_; }
  status& with_actual_version(uint64_t v) noexcept {
    actual_version_ = v;
    return *this;
  }

 private:
  errc code_ = errc::ok;
  uint64_t actual_version_ = 0;
  std::shared_ptr<const std::string> message_;  // null when ok
};

// result<T>: a value or a non-ok status.
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}  // NOLINT(implicit)
  result(status s) : v_(std::move(s)) {}     // NOLINT(implicit); must not be ok
  result(errc code, std::string msg) : v_(status(code, std::move(msg))) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return value(); }
  const status& error() const { return std::get<1>(v_); }
  status to_status() const { return ok() ? status{} : error(); }

 private:
  std::variant<T, status> v_;
};

}  // namespace varve
