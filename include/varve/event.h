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

namespace detail {
struct event_ref_access;
// Where event_ref finds a field in a record (docs/FORMAT.md 4.1): the record
// format's own offsets, checked against it at compile time in
// base/record_format.cc.
namespace ref_layout {
inline constexpr uint32_t kSequence = 24, kVersion = 32, kTimestamp = 40, kType = 48, kSchema = 52,
                          kPrevious = 64, kFlags = 13, kIdSize = 16;
inline constexpr uint8_t kBatchBegin = 1 << 0, kBatchEnd = 1 << 1, kEventId = 1 << 2, kCorrelation = 1 << 3,
                         kCausation = 1 << 4, kJson = 1 << 5, kIntegerStream = 1 << 6;
}  // namespace ref_layout
}  // namespace detail

// A validated event read in bulk (log_reader::next_batch(std::span<event_ref>)):
// event_view's fields, each read from the record when asked rather than all
// of them decoded into the view ahead. A scan that wants the payload and a
// field or two stores a quarter of what an event_view takes (docs/BENCHMARKS.md
// section 31). The record was validated whole (framing, checksum, every field)
// before the reader handed the reference out; the lengths that bound the
// stream, payload and metadata views were taken then, so bytes that change in
// the mapping afterwards can never send a view outside its record. Valid as
// long as an event_view from the same reader would be. view() gives every
// field at once.
class event_ref {
 public:
  event_ref() = default;
  // A ref that hands out `v`'s fields, which must outlive it: how an event
  // that exists only as a view (upcast, decrypted, or built by a test) reaches
  // code written against refs, e.g. a replay projection taking event_ref.
  explicit event_ref(const event_view& v) : view_(&v), position_(v.position.value), record_bytes_(v.record_bytes) {}

  varve::position position() const { return varve::position{position_}; }
  uint32_t record_bytes() const { return record_bytes_; }
  std::span<const std::byte> payload() const {
    if (view_) [[unlikely]]
      return view_->payload;
    return {rec_ + payload_off_, payload_len_};
  }
  std::string_view stream() const {
    if (view_) [[unlikely]]
      return view_->stream;
    return {reinterpret_cast<const char*>(rec_) + stream_off_, stream_len_};
  }
  varve::sequence sequence() const { return view_ ? view_->sequence : varve::sequence{load<uint64_t>(detail::ref_layout::kSequence)}; }
  stream_version version() const { return view_ ? view_->version : load<uint64_t>(detail::ref_layout::kVersion); }
  varve::position previous() const {
    return view_ ? view_->previous : varve::position{load<uint64_t>(detail::ref_layout::kPrevious)};
  }
  uint64_t timestamp_ns() const { return view_ ? view_->timestamp_ns : load<uint64_t>(detail::ref_layout::kTimestamp); }
  uint32_t type() const { return view_ ? view_->type : load<uint32_t>(detail::ref_layout::kType); }
  uint16_t schema_version() const { return view_ ? view_->schema_version : load<uint16_t>(detail::ref_layout::kSchema); }
  uint16_t stored_schema_version() const {
    return view_ ? view_->stored_schema_version : load<uint16_t>(detail::ref_layout::kSchema);
  }
  content_type content() const {
    if (view_) return view_->content;
    return (flags_ & detail::ref_layout::kJson) ? content_type::json : content_type::binary;
  }
  bool stream_is_integer() const { return view_ ? view_->stream_is_integer : (flags_ & detail::ref_layout::kIntegerStream) != 0; }
  bool batch_begin() const { return view_ ? view_->batch_begin : (flags_ & detail::ref_layout::kBatchBegin) != 0; }
  bool batch_end() const { return view_ ? view_->batch_end : (flags_ & detail::ref_layout::kBatchEnd) != 0; }
  const id128* event_id() const { return view_ ? view_->event_id : id(detail::ref_layout::kEventId); }
  const id128* correlation_id() const { return view_ ? view_->correlation_id : id(detail::ref_layout::kCorrelation); }
  const id128* causation_id() const { return view_ ? view_->causation_id : id(detail::ref_layout::kCausation); }
  varve::metadata_view metadata() const {
    if (view_) return view_->metadata;
    return varve::metadata_view(std::span<const std::byte>(rec_ + payload_off_ + payload_len_, meta_len_));
  }
  // As event_view's: a reference to a record is never to an encrypted one
  // (the reader hands those out decrypted, through its own view).
  bool encrypted() const { return view_ && view_->encrypted; }
  bool forgotten() const { return view_ && view_->forgotten; }
  uint64_t stream_as_u64() const {
    uint64_t v = 0;
    for (char c : stream()) v = (v << 8) | static_cast<uint8_t>(c);
    return v;
  }

  // Every field, as next() would have handed the event out.
  event_view view() const {
    if (view_) return *view_;
    event_view v;
    v.position = position();
    v.sequence = sequence();
    v.stream = stream();
    v.stream_is_integer = stream_is_integer();
    v.version = version();
    v.previous = previous();
    v.type = type();
    v.schema_version = v.stored_schema_version = schema_version();
    v.timestamp_ns = timestamp_ns();
    v.content = content();
    v.batch_begin = batch_begin();
    v.batch_end = batch_end();
    v.event_id = event_id();
    v.correlation_id = correlation_id();
    v.causation_id = causation_id();
    v.payload = payload();
    v.metadata = metadata();
    v.record_bytes = record_bytes_;
    return v;
  }

 private:
  friend struct detail::event_ref_access;
  template <class T>
  T load(uint32_t at) const {
    T x;
    std::memcpy(&x, rec_ + at, sizeof x);  // little-endian, as base/coding.h asserts
    return x;
  }
  // The ids lie right before the stream id, in the order of their flag bits.
  const id128* id(uint8_t bit) const {
    using namespace detail::ref_layout;
    if (!(flags_ & bit)) return nullptr;
    const uint8_t present = flags_ & (kEventId | kCorrelation | kCausation);
    const uint32_t after = static_cast<uint32_t>(__builtin_popcount(present & ~((bit << 1) - 1)));
    return reinterpret_cast<const id128*>(rec_ + stream_off_ - kIdSize * (after + 1));
  }

  const std::byte* rec_ = nullptr;     // the record in the mapping (null with view_)
  const event_view* view_ = nullptr;   // or the reader's own view: upcast or decrypted
  uint64_t position_ = 0;
  uint32_t record_bytes_ = 0;
  uint32_t stream_off_ = 0;            // from rec_; the ids lie just before
  uint32_t payload_off_ = 0;           // from rec_; the metadata follows the payload
  uint32_t payload_len_ = 0;
  uint32_t meta_len_ = 0;
  uint8_t stream_len_ = 0;
  uint8_t flags_ = 0;                  // the record's byte 13, as validated
  // The record's byte 15, as validated: the replay sends a ref to an
  // encrypted record to be decrypted before its projection sees it (the
  // readers never hand one out). In what was padding: still 48 bytes.
  uint8_t flags2_ = 0;
};

}  // namespace varve
