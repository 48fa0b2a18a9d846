// Events going in (event_data: what the caller appends) and coming out
// (event_view: a zero-copy view of a validated record in the log's mapping).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
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

// Metadata: a small key/value map per event, stored in its record
// (docs/FORMAT.md 4.1a) and returned by every read. Keys are 1..255 bytes,
// distinct within an event, and may not start with "varve." (varve ship puts
// its own Kafka headers there); values 0..65535 bytes; an event holds at most
// kMaxMetadataEntries entries and kMaxMetadataBytes encoded bytes (3 per entry
// plus the keys and values). Bytes are opaque to the library; the CLI and
// `varve ship` deal in UTF-8 text.
struct metadata_entry {
  std::string_view key;
  std::string_view value;
};
inline constexpr size_t kMaxMetadataEntries = 64;
inline constexpr size_t kMaxMetadataBytes = 4096;

// The metadata of an event read from the log (event_view::metadata): the
// record's validated encoding, walked in stored order.
class metadata_view {
 public:
  metadata_view() = default;
  explicit metadata_view(std::span<const std::byte> raw) : raw_(raw) {}
  bool empty() const { return raw_.empty(); }
  std::span<const std::byte> raw() const { return raw_; }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = metadata_entry;
    using difference_type = std::ptrdiff_t;
    using reference = metadata_entry;
    using pointer = void;
    iterator() = default;
    explicit iterator(const std::byte* p) : p_(p) {}
    metadata_entry operator*() const {
      const auto* c = reinterpret_cast<const char*>(p_);
      const size_t k = static_cast<uint8_t>(c[0]);
      const size_t v = static_cast<size_t>(static_cast<uint8_t>(c[1])) |
                       (static_cast<size_t>(static_cast<uint8_t>(c[2])) << 8);
      return {std::string_view(c + 3, k), std::string_view(c + 3 + k, v)};
    }
    iterator& operator++() {
      const metadata_entry e = **this;
      p_ += 3 + e.key.size() + e.value.size();
      return *this;
    }
    iterator operator++(int) {
      iterator t = *this;
      ++*this;
      return t;
    }
    bool operator==(const iterator& o) const { return p_ == o.p_; }

   private:
    const std::byte* p_ = nullptr;
  };
  iterator begin() const { return iterator(raw_.data()); }
  iterator end() const { return iterator(raw_.data() + raw_.size()); }
  // The value of `key`, if the event has it.
  std::optional<std::string_view> find(std::string_view key) const {
    for (metadata_entry e : *this)
      if (e.key == key) return e.value;
    return std::nullopt;
  }
  size_t size() const {
    size_t n = 0;
    for (auto it = begin(); it != end(); ++it) ++n;
    return n;
  }

 private:
  std::span<const std::byte> raw_;
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
  // Optional key/value pairs (see metadata_entry for the bounds); empty: none.
  std::span<const metadata_entry> metadata = {};

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
  varve::metadata_view metadata;   // empty when the event has none
  uint32_t record_bytes = 0;       // size of the record on disk, padding included
  // The record's payload is encrypted with its stream's data key
  // (varve/crypto.h). Readers of a log opened with its master key hand the
  // payload out decrypted (this stays true); such an event whose key was
  // destroyed (event_log::forget) comes with `forgotten` set and an empty
  // payload. Nothing else of the event is encrypted.
  bool encrypted = false;
  bool forgotten = false;

  uint64_t stream_as_u64() const {
    uint64_t v = 0;
    for (char c : stream) v = (v << 8) | static_cast<uint8_t>(c);
    return v;
  }
};

}  // namespace varve
