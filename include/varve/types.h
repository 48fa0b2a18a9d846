// Strong types for the numbers a log deals in, so a position is never mixed
// up with a version or a sequence number.
#pragma once

#include <compare>
#include <cstdint>
#include <limits>

namespace varve {

// A byte offset in the logical log: segment index = value >> log2(segment capacity),
// offset in that segment = the low bits. Seeks are O(1). Positions of records are
// 8-byte aligned and strictly increasing; the end of the log is the position one past
// the last committed record.
struct position {
  uint64_t value = 0;
  constexpr auto operator<=>(const position&) const = default;
  static constexpr position none() { return {std::numeric_limits<uint64_t>::max()}; }
  constexpr bool is_none() const { return value == std::numeric_limits<uint64_t>::max(); }
};

// A dense, gap-free global event number starting at 0: friendlier than positions for
// lag metrics ("12 events behind").
struct sequence {
  uint64_t value = 0;
  constexpr auto operator<=>(const sequence&) const = default;
};

// Version of an event within its stream: the first event of a stream is version 1.
// A stream that does not exist is at version 0.
using stream_version = uint64_t;
// "The newest version", for reading a stream backward from its end.
inline constexpr stream_version kLatestVersion = std::numeric_limits<uint64_t>::max();

// The optimistic-concurrency check of an append.
class expected_version {
 public:
  enum class kind : uint8_t { any, no_stream, stream_exists, exact };
  static constexpr expected_version any() { return {kind::any, 0}; }
  static constexpr expected_version no_stream() { return {kind::no_stream, 0}; }
  static constexpr expected_version stream_exists() { return {kind::stream_exists, 0}; }
  static constexpr expected_version exact(stream_version v) { return {kind::exact, v}; }

  constexpr kind which() const { return kind_; }
  constexpr stream_version version() const { return version_; }
  // True when a stream currently at `actual` (0 = absent) satisfies this expectation.
  constexpr bool accepts(stream_version actual) const {
    switch (kind_) {
      case kind::any: return true;
      case kind::no_stream: return actual == 0;
      case kind::stream_exists: return actual != 0;
      case kind::exact: return actual == version_;
    }
    return false;
  }

 private:
  constexpr expected_version(kind k, stream_version v) : kind_(k), version_(v) {}
  kind kind_;
  stream_version version_;
};

enum class durability : uint8_t {
  none,   // page cache only: survives a process crash, not a power loss
  group,  // a flusher thread makes committed data durable in batches
  sync,   // each append returns once its events are durable
};

}  // namespace varve
