// Events going in (event_data: what the caller appends) and coming out
// (event_view: a zero-copy view of a validated record in the log's mapping).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "varve/types.h"

namespace varve {

// A 16-byte identifier (event id, correlation id, causation id), e.g. a UUID.
struct id128 {
  std::array<uint8_t, 16> bytes{};
  auto operator<=>(const id128&) const = default;
  bool is_zero() const {
    for (uint8_t b : bytes)
      if (b) return false;
    return true;
  }
};

// How the payload bytes should be interpreted by tools (varve read prints JSON
// payloads inline, anything else as base64).
enum class content_type : uint8_t { binary = 0, json = 1 };

// Stream (aggregate) ids are byte strings of 1 to 255 bytes. An integer id is
// encoded as 8 big-endian bytes (so integer ids sort numerically) and flagged so
// tools print it as a number.
inline constexpr size_t kMaxStreamIdBytes = 255;

class stream_id {
 public:
  stream_id() = default;
  // A byte-string id such as "order-123". Not owned: the bytes must outlive the call.
  constexpr stream_id(std::string_view name) : bytes_(name) {}  // NOLINT(implicit)
  constexpr stream_id(const char* name) : bytes_(name) {}       // NOLINT(implicit)
  // An integer id; the encoded bytes live inside this object.
  static stream_id from_u64(uint64_t id) {
    stream_id s;
    for (int i = 0; i < 8; ++i) s.int_buf_[i] = static_cast<char>(id >> (56 - 8 * i));
    s.is_int_ = true;
    return s;
  }
  stream_id(const stream_id& o) { *this = o; }
  stream_id& operator=(const stream_id& o) {
    is_int_ = o.is_int_;
    std::memcpy(int_buf_, o.int_buf_, 8);
    bytes_ = is_int_ ? std::string_view(int_buf_, 8) : o.bytes_;
    return *this;
  }
  std::string_view bytes() const { return is_int_ ? std::string_view(int_buf_, 8) : bytes_; }
  bool is_integer() const { return is_int_; }

 private:
  std::string_view bytes_;
  char int_buf_[8] = {};
  bool is_int_ = false;
};

// One event to append. Views only: the bytes must stay valid for the duration of
// the append call (they are copied into the log).
struct event_data {
  uint32_t type = 0;             // user-defined event type (see type_registry for names)
  uint16_t schema_version = 1;   // for upcasters
  std::span<const std::byte> payload;
  content_type content = content_type::binary;
  uint64_t timestamp_ns = 0;     // 0 = the log's clock (CLOCK_REALTIME) at append
  const id128* event_id = nullptr;        // optional; null = absent
  const id128* correlation_id = nullptr;  // optional
  const id128* causation_id = nullptr;    // optional

  static std::span<const std::byte> bytes(std::string_view s) {
    return std::as_bytes(std::span<const char>(s.data(), s.size()));
  }
};

// A validated event, read in place from the log's mapping. The views stay valid
// while the event_log (or read-only log) it came from stays open.
struct event_view {
  varve::position position;        // where the record starts in the logical log
  varve::sequence sequence;        // dense global event number
  std::string_view stream;         // raw stream id bytes
  bool stream_is_integer = false;  // stream holds 8 big-endian bytes of a u64
  stream_version version = 0;      // 1-based version within the stream
  varve::position previous;        // the stream's previous record (back-chain), or none
  uint32_t type = 0;
  uint16_t schema_version = 0;
  // The version the record holds. Equal to schema_version unless the log has
  // upcasters (varve/upcast.h) that raised it: then type, schema_version,
  // content and payload are the upcast event's, the payload pointing into the
  // reader's own buffer (valid until that reader's next call) rather than
  // into the mapping.
  uint16_t stored_schema_version = 0;
  uint64_t timestamp_ns = 0;
  content_type content = content_type::binary;
  bool batch_begin = false;        // first event of an atomic append
  bool batch_end = false;          // last event of an atomic append
  const id128* event_id = nullptr;        // null when absent (points into the mapping)
  const id128* correlation_id = nullptr;
  const id128* causation_id = nullptr;
  std::span<const std::byte> payload;
  uint32_t record_bytes = 0;       // size of the record on disk, padding included

  uint64_t stream_as_u64() const {
    uint64_t v = 0;
    for (char c : stream) v = (v << 8) | static_cast<uint8_t>(c);
    return v;
  }
};

}  // namespace varve
