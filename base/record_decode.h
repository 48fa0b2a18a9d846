// record::decode inline, for the loops that decode every record of a scan
// (log_reader, the segment scan): no call, no length dispatch into the shared
// xxhash, and the compiler sees the caller's constants. record::decode is this
// function out of line. Include only from .cc files (xxhash.h header-only mode).
#pragma once

#include <type_traits>

#include "base/record_encode.h"

namespace varve::record {

namespace detail {
inline decoded invalid(const char* why) { return {decode_outcome::invalid, 0, why}; }

// How many of the three ids (flags bits 2-4) a record carries, from a table
// of nibbles in one constant (popcount of 0..7), not three tests and adds
// (~18 instructions per record in callgrind: BENCHMARKS.md section 26).
static_assert(kFlagEventId == 1 << 2 && kFlagCorrelation == 1 << 3 && kFlagCausation == 1 << 4);
inline uint32_t id_bytes(uint8_t flags) { return kIdSize * ((0x32212110u >> (((flags >> 2) & 7u) * 4)) & 0xFu); }

// The fields of an event record whose header fields were checked (by
// decode_inline, or before it by decode_validated's bounds): everything but
// the metadata. Returns where the payload starts.
[[gnu::always_inline]] inline const std::byte* fill_view(const std::byte* p, uint64_t position, uint8_t flags,
                                                         uint8_t flags2, uint16_t header_size,
                                                         uint8_t stream_len, uint32_t payload_len,
                                                         uint32_t ids, uint32_t length, event_view& out) {
  using namespace varve::coding;
  out.position = varve::position{position};
  out.sequence = sequence{get_u64(p + 24)};
  out.version = get_u64(p + 32);
  out.timestamp_ns = get_u64(p + 40);
  out.type = get_u32(p + 48);
  out.schema_version = get_u16(p + 52);
  out.stored_schema_version = out.schema_version;
  out.previous = varve::position{get_u64(p + 64)};
  out.content = (flags & kFlagJson) ? content_type::json : content_type::binary;
  out.batch_begin = flags & kFlagBatchBegin;
  out.batch_end = flags & kFlagBatchEnd;
  out.stream_is_integer = flags & kFlagIntegerStream;
  out.encrypted = flags2 & kFlag2Encrypted;
  out.forgotten = false;
  const std::byte* q = p + header_size;
  if (ids == 0) [[likely]] {
    // Most logs carry no ids: one test instead of three walks of `q`.
    out.event_id = out.correlation_id = out.causation_id = nullptr;
  } else {
    auto take_id = [&](uint8_t bit) -> const id128* {
      if (!(flags & bit)) return nullptr;
      auto* id = reinterpret_cast<const id128*>(q);  // id128 is 16 plain bytes, align 1
      q += kIdSize;
      return id;
    };
    out.event_id = take_id(kFlagEventId);
    out.correlation_id = take_id(kFlagCorrelation);
    out.causation_id = take_id(kFlagCausation);
  }
  out.stream = std::string_view(reinterpret_cast<const char*>(q), stream_len);
  q += stream_len;
  out.payload = std::span<const std::byte>(q, payload_len);
  out.record_bytes = length;
  return q;
}
// decode_inline for a record that is not an event (its kind byte says so),
// at least 16 bytes available: a zero header, a segment end, a hole, a kind
// of a newer varve. Out of line: a few per segment.
[[gnu::noinline, gnu::cold]] inline decoded decode_not_event(const std::byte* p, uint64_t avail,
                                                             uint64_t expected_position) {
  using namespace varve::coding;
  const uint64_t sum = get_u64(p);
  const uint32_t length = get_u32(p + 8);
  const uint8_t kind = get_u8(p + 12);
  if (sum == 0 && length == 0 && kind == kUnwritten) return {decode_outcome::unwritten};

  // Structural checks on the length come before anything that trusts it.
  if (length % 8 != 0 || length < kSegmentEndSize) return invalid("bad record length");
  if (length > avail) return invalid("record length runs past the segment");

  if (kind == kSegmentEnd) {
    if (length != kSegmentEndSize) return invalid("bad segment-end length");
    if (get_u64(p + 16) != expected_position) return invalid("segment-end position mismatch");
    if (checksum_inline(p, length) != sum) return invalid("segment-end checksum mismatch");
    return {decode_outcome::segment_end, length};
  }
  if (kind == kHole) {
    if (length < kHoleMinSize) return invalid("bad hole length");
    if (get_u64(p + 16) != expected_position) return invalid("hole position mismatch");
    if (checksum_inline(p, length) != sum) return invalid("hole checksum mismatch");
    decoded d{decode_outcome::hole, length};
    d.hole_first = get_u64(p + 24);
    d.hole_count = get_u64(p + 32);
    d.hole_scavenged = (get_u8(p + 13) & kHoleFlagScavenged) != 0;
    return d;
  }
  if ((get_u8(p + 13) & kFlagIgnorable) && checksum_inline(p, length) == sum)
    return {decode_outcome::skip, length};
  return invalid("unknown record kind (written by a newer varve?)");
}

}  // namespace detail

}  // namespace varve::record

namespace varve::detail {
// Fills an event_ref (include/varve/event.h), whose fields are private: the
// decoders below, and the reader's refs to events it decoded into a view.
struct event_ref_access {
  [[gnu::always_inline]] static void fill(event_ref& r, const std::byte* rec, uint64_t position, uint32_t length,
                                          uint32_t stream_off, uint8_t stream_len, uint32_t payload_len,
                                          uint32_t meta_len, uint8_t flags, uint8_t flags2 = 0) {
    r.rec_ = rec;
    r.view_ = nullptr;
    r.position_ = position;
    r.record_bytes_ = length;
    r.stream_off_ = stream_off;
    r.payload_off_ = stream_off + stream_len;
    r.payload_len_ = payload_len;
    r.meta_len_ = meta_len;
    r.stream_len_ = stream_len;
    r.flags_ = flags;
    r.flags2_ = flags2;
  }
  // The record is encrypted (a ref from decode_inline or decode_validated).
  static bool encrypted_record(const event_ref& r) { return (r.flags2_ & record::kFlag2Encrypted) != 0; }
  static const std::byte* record(const event_ref& r) { return r.rec_; }
  // A ref to the event `v`, which a reader validated from the record at
  // `rec` and whose views point into it (not upcast, not decrypted): the
  // bounds are the view's, the flags rebuilt from its fields.
  static void of_record(event_ref& r, const std::byte* rec, const event_view& v) {
    using namespace varve::record;
    const uint8_t flags = (v.batch_begin ? kFlagBatchBegin : 0) | (v.batch_end ? kFlagBatchEnd : 0) |
                          (v.event_id ? kFlagEventId : 0) | (v.correlation_id ? kFlagCorrelation : 0) |
                          (v.causation_id ? kFlagCausation : 0) |
                          (v.content == content_type::json ? kFlagJson : 0) |
                          (v.stream_is_integer ? kFlagIntegerStream : 0);
    fill(r, rec, v.position.value, v.record_bytes, static_cast<uint32_t>(reinterpret_cast<const std::byte*>(v.stream.data()) - rec),
         static_cast<uint8_t>(v.stream.size()), static_cast<uint32_t>(v.payload.size()),
         static_cast<uint32_t>(v.metadata.raw().size()), flags, v.encrypted ? record::kFlag2Encrypted : 0);
  }
  // A ref that hands out `v` (the reader's own view: upcast or decrypted).
  static void of_view(event_ref& r, const event_view* v) { r = event_ref(*v); }
};
}  // namespace varve::detail

namespace varve::record {

// An event record with metadata, decoded out of line (record_format.cc):
// decode_inline hands such records here, so the metadata's validation (a
// loop and a call) is not in the scan loops that inline it; with it inline
// the readers paid ~25 instructions more per event in register spills.
decoded decode_with_metadata(const std::byte* p, uint64_t avail, uint64_t expected_position,
                             bool verify_checksum, event_view& out);
// The same for the lazy readers' event_ref (`encrypted` set as decode_inline sets it).
decoded decode_with_metadata(const std::byte* p, uint64_t avail, uint64_t expected_position,
                             bool verify_checksum, event_ref& out);

// Always inlined: the scan loops depend on it (the compiler's own estimate
// stops inlining it as it grows). kMetadata = false is the readers' form: a
// record with metadata goes to decode_with_metadata, which is kMetadata = true.
// kFullView = false validates exactly as much (checksum and every field) but
// fills only the view's position, sequence, stream and record_bytes: the
// replay's pass with several workers, which only routes an event and decodes
// it again when its group applies it (46 instructions fewer per event on 2
// workers, callgrind: BENCHMARKS.md section 26).
//
// Out = event_ref is the lazy readers' form (log_reader::next_batch of
// event_refs): the same checks, then only what bounds the ref's views is
// stored; an encrypted record comes back with `encrypted` set (its reader
// hands it out through a view of its own, decrypted).
template <bool kMetadata = false, bool kFullView = true, class Out = event_view>
[[gnu::always_inline]] inline decoded decode_inline(const std::byte* p, uint64_t avail, uint64_t expected_position,
                                                    bool verify_checksum, Out& out) {
  static_assert(std::is_same_v<Out, event_view> || (std::is_same_v<Out, event_ref> && !kMetadata && kFullView));
  using namespace varve::coding;
  using detail::invalid;
  if (avail < 16) {
    for (uint64_t i = 0; i < avail; ++i)
      if (p[i] != std::byte{0}) return invalid("bytes after the last record slot");
    return {decode_outcome::unwritten};
  }
  const uint32_t length = get_u32(p + 8);
  // An event first: the other kinds (a zero header, a segment end, a hole, a
  // newer kind) are a few per segment, decided out of line with the same
  // checks in the same order. 8 -> 4 tests per event record.
  if (get_u8(p + 12) != kEvent) [[unlikely]]
    return detail::decode_not_event(p, avail, expected_position);
  // Structural checks on the length come before anything that trusts it
  // (the messages, and their order, as for every kind).
  if (length % 8 != 0 || length < kHeaderSize || length > avail) [[unlikely]] {
    if (length % 8 != 0 || length < kSegmentEndSize) return invalid("bad record length");
    if (length > avail) return invalid("record length runs past the segment");
    return invalid("event record shorter than its header");
  }
  // The checksum before the fields: across its call only p, length and the
  // caller's cursor stay live, not the fields, which are loaded after it
  // (from L1: the hash just read them). 317 -> 308 instructions per event in
  // log_reader::next (callgrind, BENCHMARKS.md section 28). A record failing
  // several checks now names its checksum; every check still runs before a
  // field is handed out.
  if (verify_checksum && checksum_inline(p, length) != get_u64(p)) return invalid("record checksum mismatch");
  const uint8_t flags = get_u8(p + 13);
  const uint8_t stream_len = get_u8(p + 14);
  const uint16_t header_size = get_u16(p + 54);
  const uint32_t payload_len = get_u32(p + 56);
  if (stream_len == 0) return invalid("empty stream id");
  if (header_size < kHeaderSize || header_size % 8 != 0 || header_size > length)
    return invalid("bad header size");
  const uint32_t ids = detail::id_bytes(flags);
  // The readers' form leaves metadata_len out of the field checks (a record
  // with metadata goes to decode_with_metadata below): a load and a call in
  // the scan loop's common path cost P4 ~20% on this host (21.6-24 against
  // 27.8-28.6 M events/s); taken only for such records, none (27.5-28.3).
  // docs/BENCHMARKS.md section 12.
  const uint32_t meta_len = kMetadata ? get_u32(p + 60) : 0;
  const uint64_t body = uint64_t{header_size} + ids + stream_len + payload_len + meta_len;
  if (align8(body) != length) [[unlikely]] {
    if constexpr (!kMetadata)
      if (get_u32(p + 60) != 0) return decode_with_metadata(p, avail, expected_position, false, out);
    return invalid("record length disagrees with its fields");
  }
  if (get_u64(p + 16) != expected_position) return invalid("record position mismatch");
  if constexpr (!kMetadata) {
    // Metadata short enough to fit in what would be padding leaves the
    // length check above satisfied: caught here, after the checksum.
    if (get_u32(p + 60) != 0) [[unlikely]]
      return decode_with_metadata(p, avail, expected_position, false, out);
  }
  const uint64_t version = get_u64(p + 32);
  if (version == 0) return invalid("stream version 0");
  const uint8_t flags2 = get_u8(p + 15);
  if (flags2 & ~kFlag2Encrypted) [[unlikely]]
    return invalid("unknown record flags (written by a newer varve?)");
  if ((flags2 & kFlag2Encrypted) && payload_len < kEncryptedOverhead) [[unlikely]]
    return invalid("encrypted payload shorter than its nonce and tag");

  if constexpr (std::is_same_v<Out, event_ref>) {
    varve::detail::event_ref_access::fill(out, p, expected_position, length, header_size + ids, stream_len,
                                          payload_len, 0, flags, flags2);
    decoded d{decode_outcome::event, length};
    d.encrypted = (flags2 & kFlag2Encrypted) != 0;
    return d;
  } else if constexpr (!kMetadata && !kFullView) {
    out.position = position{expected_position};
    out.sequence = sequence{get_u64(p + 24)};
    out.stream = std::string_view(reinterpret_cast<const char*>(p + header_size + ids), stream_len);
    out.record_bytes = length;
    return {decode_outcome::event, length};
  } else {
    const std::byte* q = detail::fill_view(p, expected_position, flags, flags2, header_size, stream_len,
                                           payload_len, ids, length, out);
    if constexpr (kMetadata) {
      q += payload_len;
      if (meta_len > kMaxMetadataBytes || !metadata_well_formed(q, meta_len)) return invalid("malformed metadata");
      out.metadata = metadata_view(std::span<const std::byte>(q, meta_len));
    } else {
      out.metadata = metadata_view();
    }
    return {decode_outcome::event, length};
  }
}

// Decodes again an event record that decode_inline accepted at `position`
// before (the replay's deferred events: verified in the owner's pass,
// applied later from the same bytes). Only its fields, without the checksum
// and the checks that a first decode needs (the group's turn at an event,
// the apply included, 237 -> 158 instructions, callgrind); the bounds that keep every view inside [p, p + avail) are checked
// again, so bytes changed since cannot send a view elsewhere. Anything
// unusual (metadata, encryption or newer flags, a record that no longer looks
// like the one validated) takes decode_inline, which names what is wrong.
// Out = event_ref (a replay projection that takes refs): the same bounds,
// and nothing decoded (BENCHMARKS.md section 35).
template <class Out>
[[gnu::always_inline]] inline decoded decode_validated(const std::byte* p, uint64_t avail, uint64_t position,
                                                       Out& out) {
  static_assert(std::is_same_v<Out, event_view> || std::is_same_v<Out, event_ref>);
  using namespace varve::coding;
  if (avail >= kHeaderSize) [[likely]] {
    const uint32_t length = get_u32(p + 8);
    const uint8_t flags = get_u8(p + 13);
    const uint8_t stream_len = get_u8(p + 14);
    const uint8_t flags2 = get_u8(p + 15);
    const uint16_t header_size = get_u16(p + 54);
    const uint32_t payload_len = get_u32(p + 56);
    const uint32_t ids = detail::id_bytes(flags);
    if (get_u8(p + 12) == kEvent && flags2 == 0 && get_u32(p + 60) == 0 && length <= avail &&
        header_size >= kHeaderSize && uint64_t{header_size} + ids + stream_len + payload_len <= length &&
        get_u64(p + 16) == position) [[likely]] {
      if constexpr (std::is_same_v<Out, event_ref>) {
        varve::detail::event_ref_access::fill(out, p, position, length, header_size + ids, stream_len, payload_len,
                                              0, flags);
      } else {
        detail::fill_view(p, position, flags, flags2, header_size, stream_len, payload_len, ids, length, out);
        out.metadata = metadata_view();
      }
      return {decode_outcome::event, length};
    }
  }
  return decode_inline<false, true, Out>(p, avail, position, false, out);
}

}  // namespace varve::record
