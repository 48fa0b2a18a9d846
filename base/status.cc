#include "varve/status.h"

namespace varve {

std::string_view errc_name(errc c) noexcept {
  switch (c) {
    case errc::ok: return "ok";
    case errc::wrong_expected_version: return "wrong expected version";
    case errc::corruption: return "corruption";
    case errc::io_error: return "I/O error";
    case errc::no_space: return "no space";
    case errc::not_found: return "not found";
    case errc::invalid_argument: return "invalid argument";
    case errc::not_a_log: return "not a varve log";
    case errc::newer_format: return "newer format";
    case errc::locked: return "locked";
    case errc::read_only: return "read only";
    case errc::too_large: return "too large";
    case errc::cancelled: return "cancelled";
    case errc::already_exists: return "already exists";
    case errc::removed: return "removed by retention";
    case errc::stream_deleted: return "stream deleted";
  }
  return "unknown";
}

status::status(errc code, std::string message)
    : code_(code), message_(std::make_shared<const std::string>(std::move(message))) {}

const std::string& status::message() const noexcept {
  static const std::string empty;
  return message_ ? *message_ : empty;
}

std::string status::to_string() const {
  if (ok()) return "ok";
  std::string s(errc_name(code_));
  if (message_ && !message_->empty()) {
    s += ": ";
    s += *message_;
  }
  return s;
}

}  // namespace varve
