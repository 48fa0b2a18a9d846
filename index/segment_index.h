// The per-segment stream index, DIR/index/<segment>.sidx: written once when a
// segment is sealed, immutable, mmapped by readers. For every stream with
// events in the segment it gives the run of versions there, each event's
// offset (so a stream read jumps straight to its records), and the stream's
// last record before the segment (so a reader hops to the previous segment
// that holds the stream without touching the ones that do not). A sparse time
// index rides along, and a summary (the event types and stream categories the
// segment holds) lets a filtered replay skip segments without reading them.
// Derived data: rebuilt from the segment whenever it is missing, fails
// validation or is of an older version; docs/FORMAT.md describes every byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include "varve/event.h"
#include "varve/status.h"

namespace varve {
class segment;
}

namespace varve::segment_index {

//  Header, 128 bytes:
//  0   8  magic "VARVESIX"
//  8   4  format_version (3; 1 had no summary, 2 no correlation filter: both rebuilt)
//  12  1  hash_kind (0: XXH3-64 of the stream id; 1: weak, tests only)
//  13  3  reserved (0)
//  16  8  log_id
//  24  8  segment_index
//  32  8  first_sequence        of the segment's first event
//  40  8  event_count
//  48  8  stream_count
//  56  8  slot_count            power of two, >= 2 x stream_count
//  64  8  entries_bytes         size of the entry area
//  72  8  time_count            entries of the time index
//  80  8  max_timestamp_through max event timestamp of this segment and all before it
//  88  8  data_checksum         the segment footer's, ties the index to those bytes
//  96  8  body_checksum         XXH3-64 of bytes [128, file end)
//  104 4  type_count            summary: distinct event types listed
//  108 4  category_count        summary: distinct stream categories listed
//  112 4  category_bytes        summary: bytes of the category names
//  116 1  summary_flags         kAnyType | kAnyCategory | kUncategorised | kIntegerIds
//  117 1  correlation_log2      correlation filter of 2^n bits; 0: no event of the
//                               segment carries a correlation id (no filter)
//  118 1  correlation_hashes    bits set per id (1..16; 0 when correlation_log2 is 0)
//  119 1  reserved (0)
//  120 8  checksum              XXH3-64 of bytes [0, 120)
//  Body: slots (slot_count x 16: hash u64, entry offset + 1 u64, 0 = empty;
//  linear probing), entries (each: first_version u64, prev_position u64,
//  postings_index u64, count u32, stream_len u8, flags u8 (bit 0 integer id),
//  2 reserved, stream bytes zero-padded to 8), postings (event_count x u32:
//  record offsets in the segment, grouped by stream in version order, padded
//  to 8 bytes), time index (time_count x 16: running max timestamp u64 as of
//  the event, its offset u32, 4 reserved; one entry per kTimeStride events),
//  summary (types: type_count x u32 strictly ascending, padded to 8; then
//  category_count x u32 end offsets into the names, the names' bytes
//  (category_bytes), padded to 8; names strictly ascending bytewise), then
//  the correlation filter (2^correlation_log2 / 8 bytes, a Bloom filter of the
//  segment's correlation ids: see correlation_bits).
inline constexpr uint32_t kFormatVersion = 3;
inline constexpr size_t kHeaderSize = 128;
inline constexpr uint64_t kTimeStride = 64;

// A stream's category: its id up to and including the first '-' ("order-123"
// -> "order-"). Empty for an id without '-' (and for integer ids, whatever
// their bytes: they are numbers, not names).
std::string_view category_of(std::string_view stream, bool integer);

// Summary flags (header byte 116). The lists are capped so a segment of
// random ids cannot make its index huge; past a cap the list is dropped and a
// flag says "anything may be here", which a filter reads as "maybe".
inline constexpr uint8_t kAnyType = 1;        // too many types: the list is empty
inline constexpr uint8_t kAnyCategory = 2;    // too many categories: the list is empty
inline constexpr uint8_t kUncategorised = 4;  // some string id has no '-'
inline constexpr uint8_t kIntegerIds = 8;     // some stream id is an integer
inline constexpr uint8_t kKnownSummaryFlags = 15;
inline constexpr size_t kMaxSummaryTypes = 4096;
inline constexpr size_t kMaxCategories = 1024;
inline constexpr size_t kMaxCategoryBytes = 64 * 1024;

// The correlation filter: a Bloom filter of every correlation id in the
// segment, about 10 bits per distinct id (7 bits set each: under 1 % false
// "maybe"), from 64 bits up to 2^26 (8 MiB; a segment holds fewer ids than
// that fits well). Bit i of id x, for i < hashes: (h1 + i * h2) mod 2^log2,
// where h = XXH3-64 of the id's 16 bytes, h1 = its low 32 bits and h2 its
// high 32 bits with the lowest bit set. Bit b is bit (b % 8) of byte b / 8.
inline constexpr uint8_t kMinCorrelationLog2 = 6;
inline constexpr uint8_t kMaxCorrelationLog2 = 26;
inline constexpr uint8_t kCorrelationHashes = 7;
inline constexpr uint8_t kMaxCorrelationHashes = 16;

enum class hash_kind : uint8_t { xxh3 = 0, weak = 1 };
uint64_t hash(hash_kind k, std::string_view stream);

struct build_input {
  uint64_t log_id = 0;
  uint64_t max_timestamp_through_previous = 0;  // the previous segment's figure
  hash_kind hash = hash_kind::xxh3;
};

// Scans a sealed segment (verifying every record against its footer) and
// returns the file's bytes.
result<std::vector<std::byte>> build(const segment& seg, const build_input& in);

struct stream_run {
  uint64_t first_version = 0;
  uint64_t prev_position = ~uint64_t{0};
  uint32_t count = 0;
  const uint32_t* offsets = nullptr;  // `count` record offsets, version order
};

// A validated, read-only view of an index file's bytes (mapped or in memory).
class view {
 public:
  // Checks magic, version, checksums, identity and every size before anything
  // is trusted; `file` names it in errors. `verify_body` = false checks the
  // header only (a cheap check of many files at open; never for lookups).
  static result<view> open(const std::byte* data, size_t size, const std::string& file,
                           uint64_t log_id, uint64_t segment_index, bool verify_body = true);

  uint64_t segment_index() const { return h_.segment_index; }
  uint64_t event_count() const { return h_.event_count; }
  uint64_t stream_count() const { return h_.stream_count; }
  uint64_t first_sequence() const { return h_.first_sequence; }
  uint64_t max_timestamp_through() const { return h_.max_ts_through; }
  uint64_t data_checksum() const { return h_.data_checksum; }

  // The stream's run in this segment; false when the segment holds none of
  // its events. Bounds-checked: a run never points outside the file.
  bool find(std::string_view stream, stream_run& out) const;
  // Offset of the record to start a forward scan for the first event whose
  // timestamp reaches `t` (running max), and the offset the scan may stop
  // at (0 = segment end). Only meaningful when max_timestamp_through >= t.
  void time_scan_range(uint64_t t, uint32_t& from, uint32_t& to) const;
  // The offset of the segment's event number k * kTimeStride (counted from
  // its first event), or 0 when the segment has fewer events than that: the
  // time index samples every kTimeStride-th event, so it doubles as a
  // sequence index (event_log::position_of).
  uint32_t stride_offset(uint64_t k) const;
  // The running timestamp maximum as of the segment's first event (its time
  // entry 0); max_timestamp_through() for a segment without events. What the
  // index carried over from the segments before (retention: `varve index
  // verify` of a log whose first segments are gone starts from it).
  uint64_t running_max_at_first_event() const;
  // Entry count per stream, for `varve index verify` and stats.
  size_t bytes() const { return size_; }

  // The summary. Only with a verified body (open validated its order and
  // bounds); a header-only view answers "anything may be here".
  uint8_t summary_flags() const { return data_ ? h_.summary_flags : kAnyType | kAnyCategory | kUncategorised | kIntegerIds; }
  // False only when the type list is complete and lacks `type`.
  bool may_hold_type(uint32_t type) const;
  // The listed types (empty under kAnyType), ascending.
  std::span<const uint32_t> types() const { return {types_, data_ ? h_.type_count : 0}; }
  uint64_t category_count() const { return data_ ? h_.category_count : 0; }
  std::string_view category(uint64_t i) const;
  // Whether `category` (ending in '-') is listed; the first listed category
  // not below `prefix` (category_count() if none).
  bool has_category(std::string_view category) const;
  uint64_t lower_bound_category(std::string_view prefix) const;
  // False only when the filter proves no event of the segment carries this
  // correlation id (a false "true" is possible, a false "false" is not).
  bool may_hold_correlation(const id128& id) const;

 private:
  struct header {
    uint8_t hash = 0;
    uint8_t summary_flags = 0;
    uint8_t correlation_log2 = 0, correlation_hashes = 0;
    uint32_t type_count = 0, category_count = 0, category_bytes = 0;
    uint64_t log_id, segment_index, first_sequence, event_count, stream_count, slot_count,
        entries_bytes, time_count, max_ts_through, data_checksum;
  };
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
  header h_{};
  const std::byte* slots_ = nullptr;
  const std::byte* entries_ = nullptr;
  const uint32_t* postings_ = nullptr;
  const std::byte* time_ = nullptr;
  const uint32_t* types_ = nullptr;
  const std::byte* category_ends_ = nullptr;  // category_count x u32
  const char* category_names_ = nullptr;
  const std::byte* correlation_bits_ = nullptr;  // 2^correlation_log2 bits
};

}  // namespace varve::segment_index
