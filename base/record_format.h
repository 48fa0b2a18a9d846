// The event record: the unit of the log. Encode/decode pair and the box
// diagram; docs/FORMAT.md is the normative description.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "varve/event.h"
#include "varve/status.h"

namespace varve::record {

//  offset size field
//  0      8    checksum       XXH3-64 (seed 0) of bytes [8, length)
//  8      4    length         whole record incl. padding; multiple of 8, >= 72
//  12     1    kind           0 = never written, 1 = event, 2 = segment end
//  13     1    flags          see kFlag*
//  14     1    stream_len     1..255 (0 only for kind 2)
//  15     1    flags2         bit 0: payload encrypted (kFlag2Encrypted); 0 before format 4
//  16     8    position       this record's logical log position
//  24     8    sequence       dense global event number
//  32     8    version        version within the stream, >= 1
//  40     8    timestamp_ns
//  48     4    event_type
//  52     2    schema_version
//  54     2    header_size    72 in format 1; readers skip bytes up to it
//  56     4    payload_len
//  60     4    metadata_len   0 = none (always 0 before format version 3)
//  64     8    prev_position  the stream's previous record, ~0 = none
//  72     16   event_id       if kFlagEventId
//  ..     16   correlation_id if kFlagCorrelation
//  ..     16   causation_id   if kFlagCausation
//  ..     stream_len   stream id bytes
//  ..     payload_len  payload
//  ..     metadata_len metadata entries: key_len u8 (>= 1), value_len u16,
//                      key, value; exactly metadata_len bytes
//  ..     0-7  zero padding to a multiple of 8
inline constexpr uint32_t kHeaderSize = 72;
inline constexpr uint32_t kIdSize = 16;

enum kind : uint8_t { kUnwritten = 0, kEvent = 1, kSegmentEnd = 2, kHole = 3 };

inline constexpr uint8_t kFlagBatchBegin = 1 << 0;
inline constexpr uint8_t kFlagBatchEnd = 1 << 1;
inline constexpr uint8_t kFlagEventId = 1 << 2;
inline constexpr uint8_t kFlagCorrelation = 1 << 3;
inline constexpr uint8_t kFlagCausation = 1 << 4;
inline constexpr uint8_t kFlagJson = 1 << 5;          // content_type::json
inline constexpr uint8_t kFlagIntegerStream = 1 << 6; // stream is a u64, 8 bytes BE
// A record kind this reader does not know may be skipped (checksum still
// verified) only when it carries this bit; otherwise it means a newer format.
inline constexpr uint8_t kFlagIgnorable = 1 << 7;
// Byte 15 (format version 4): the payload is sealed with its stream's data
// key, laid out as key slot (u32), nonce (24), ciphertext, tag (16)
// (engine/crypto/keyring.h). Any other bit is a newer format.
inline constexpr uint8_t kFlag2Encrypted = 1 << 0;
inline constexpr uint32_t kEncryptedOverhead = 4 + 24 + 16;

// The segment-end marker: written where a segment's records stop when the
// writer rolls to the next segment, so recovery and readers can tell "the log
// continues in the next segment" from "the log ends here". 24 bytes:
// checksum(8) length=24(4) kind=2(1) flags(1) 0(2) position(8).
inline constexpr uint32_t kSegmentEndSize = 24;

// Encoded size of an event's metadata (FORMAT.md 4.1a), 0 for none. Out of
// line: the append path calls it only for events that have metadata, and
// keeping its loop out of the inlined encoder keeps that encoder small.
uint64_t metadata_bytes(std::span<const metadata_entry> m);

// The append's check of an event's metadata against the bounds
// (metadata_entry in varve/event.h): errc::invalid_argument naming the entry.
status check_metadata(std::span<const metadata_entry> m);

// Writes the metadata entries at dst (metadata_bytes(m) bytes).
void encode_metadata(std::byte* dst, std::span<const metadata_entry> m);

// Whether `n` bytes at p are well-formed metadata (entries that exactly fill
// them, keys non-empty, at most kMaxMetadataEntries): what a decoder checks.
bool metadata_well_formed(const std::byte* p, uint32_t n);

// Size of an event's record on disk, given its metadata's encoded size (0:
// none). The appender's hot loop passes a constant 0 for a batch without
// metadata, so no metadata code is left in it (a call there, even on a
// branch never taken, cost ~30 instructions per append in register spills).
inline uint32_t encoded_size(size_t stream_len, const event_data& e, uint64_t meta_len) {
  uint64_t n = kHeaderSize + stream_len + e.payload.size() + meta_len;
  if (e.event_id) n += kIdSize;
  if (e.correlation_id) n += kIdSize;
  if (e.causation_id) n += kIdSize;
  n = (n + 7) & ~uint64_t{7};
  return n > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(n);  // too large: caught by caller
}
inline uint32_t encoded_size(size_t stream_len, const event_data& e) {
  return encoded_size(stream_len, e, e.metadata.empty() ? 0 : metadata_bytes(e.metadata));
}

struct header_fields {
  uint64_t position;
  uint64_t sequence;
  uint64_t version;
  uint64_t timestamp_ns;
  uint64_t prev_position;
  uint8_t flags;  // batch and integer-stream bits; id and content bits are derived
  uint8_t flags2 = 0;  // byte 15: kFlag2Encrypted
};

// Writes the record into dst (which has `size` = encoded_size(...) bytes of
// zero-or-garbage memory) and its checksum last. Returns the size.
uint32_t encode(std::byte* dst, uint32_t size, std::string_view stream, const event_data& e,
                const header_fields& h);

void encode_segment_end(std::byte* dst, uint64_t position);

// The hole record: written only by an explicit repair (`varve recover
// --mode skip-damaged`) over a range of damaged bytes, so the valid records
// after it stay readable. It says which sequence numbers the lost events had,
// so sequences stay dense across it. At least 40 bytes:
// checksum(8) length(4) kind=3(1) flags(1) 0(2) position(8) first_sequence(8)
// sequence_count(8), then zeros up to `length`. Flags bit 0: written by a
// scavenge (event_log::scavenge) over events stream lifecycle hid, not by a
// repair over damage (FORMAT 4.2a).
inline constexpr uint8_t kHoleFlagScavenged = 1 << 0;
inline constexpr uint32_t kHoleMinSize = 40;
void encode_hole(std::byte* dst, uint32_t length, uint64_t position, uint64_t first_sequence,
                 uint64_t sequence_count);

enum class decode_outcome : uint8_t {
  event,        // `out` filled
  segment_end,  // the log continues at the next segment
  unwritten,    // a zero header: nothing was ever written here
  skip,         // an ignorable record of a newer kind; `length` bytes
  hole,         // a repair's hole: `length` bytes, sequences [hole_first, +hole_count) lost
  invalid,      // failed validation; `why` says how
};

struct decoded {
  decode_outcome outcome;
  uint32_t length = 0;
  const char* why = nullptr;
  uint64_t hole_first = 0;  // hole only
  uint64_t hole_count = 0;
  bool hole_scavenged = false;  // hole only: a scavenge's (byte 13 bit 0), not a repair's
  bool encrypted = false;       // event into an event_ref only: the payload is sealed
};

// Validates and decodes the record at `p`, of which `avail` bytes are readable
// (the rest of the segment's record area). The length is checked against
// `avail` and against the header's own fields before anything else is read,
// so a lying length never sends the decoder out of bounds. `expected_position`
// is where the record should claim to be.
decoded decode(const std::byte* p, uint64_t avail, uint64_t expected_position,
               bool verify_checksum, event_view& out);

uint64_t checksum(const std::byte* record, uint32_t length);

}  // namespace varve::record
