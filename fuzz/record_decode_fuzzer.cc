// record_decode_fuzzer: any bytes -> record::decode, as if they sat at offset
// 64 of a segment (position 64) with the whole input as the record area.
//
// Checks, beyond "no crash, no out-of-bounds read" (ASan + UBSan):
// - every outcome's length fits in the input; an `event`'s views (stream,
//   payload, ids, metadata) lie inside [input, input + length), and its
//   metadata walks to exactly its end within the documented bounds;
// - decode never reads past `avail`: the input is also decoded from a copy at
//   an odd address, and with avail cut to the claimed length;
// - checksum verification is the only difference between verify=true and
//   verify=false: decoding a copy whose checksum the harness fixed up with
//   verify=true gives exactly what verify=false gives on the original;
// - re-encoding a decoded event with record::encode reproduces the record
//   byte for byte when it is canonical (header_size 72, the reserved byte and
//   padding zero: what encode writes); otherwise it decodes back to the same
//   event, metadata included.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/record_format.h"
#include "fuzz/fuzz_util.h"

using namespace varve;
using varve::record::decode_outcome;
using varve_fuzz::le32;
using varve_fuzz::put64;

namespace {

constexpr uint64_t kPos = 64;

std::string hex_prefix(const std::byte* p, size_t n) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n && i < 96; ++i) {
    std::snprintf(b, sizeof b, "%02x", static_cast<unsigned>(p[i]));
    s += b;
  }
  return s;
}

bool inside(const void* v, size_t n, const std::byte* lo, const std::byte* hi) {
  auto* b = static_cast<const std::byte*>(v);
  return b >= lo && b <= hi && n <= static_cast<size_t>(hi - b);
}

// Every field a decoded event exposes, with views as offsets from `base`.
bool same_event(const event_view& a, const std::byte* abase, const event_view& b,
                const std::byte* bbase) {
  auto off = [](const void* p, const std::byte* base) {
    return p ? static_cast<const std::byte*>(p) - base : -1;
  };
  auto id_eq = [&](const id128* x, const id128* y) {
    if (!x || !y) return x == y;
    return x->bytes == y->bytes;
  };
  return a.position == b.position && a.sequence == b.sequence && a.stream == b.stream &&
         a.stream_is_integer == b.stream_is_integer && a.version == b.version &&
         a.previous == b.previous && a.type == b.type && a.schema_version == b.schema_version &&
         a.timestamp_ns == b.timestamp_ns && a.content == b.content &&
         a.batch_begin == b.batch_begin && a.batch_end == b.batch_end &&
         id_eq(a.event_id, b.event_id) && id_eq(a.correlation_id, b.correlation_id) &&
         id_eq(a.causation_id, b.causation_id) && a.payload.size() == b.payload.size() &&
         (a.payload.empty() || std::memcmp(a.payload.data(), b.payload.data(), a.payload.size()) == 0) &&
         a.record_bytes == b.record_bytes && a.metadata.raw().size() == b.metadata.raw().size() &&
         (a.metadata.empty() ||
          std::memcmp(a.metadata.raw().data(), b.metadata.raw().data(), a.metadata.raw().size()) == 0) &&
         off(a.stream.data(), abase) == off(b.stream.data(), bbase);
}

void check_views(const record::decoded& d, const event_view& ev, const std::byte* p, size_t size) {
  FUZZ_CHECK(d.length <= size, "length " + std::to_string(d.length) + " > avail " + std::to_string(size));
  if (d.outcome != decode_outcome::event) return;
  const std::byte* end = p + d.length;
  FUZZ_CHECK(ev.record_bytes == d.length, hex_prefix(p, size));
  FUZZ_CHECK(ev.position.value == kPos, hex_prefix(p, size));
  FUZZ_CHECK(ev.version >= 1, hex_prefix(p, size));
  FUZZ_CHECK(!ev.stream.empty() && inside(ev.stream.data(), ev.stream.size(), p, end),
             "stream view outside the record: " + hex_prefix(p, size));
  FUZZ_CHECK(inside(ev.payload.data(), ev.payload.size(), p, end),
             "payload view outside the record: " + hex_prefix(p, size));
  for (const id128* id : {ev.event_id, ev.correlation_id, ev.causation_id})
    if (id) FUZZ_CHECK(inside(id, sizeof(id128), p, end), "id view outside the record: " + hex_prefix(p, size));
  // Views come in the documented order: ids, stream, payload, metadata, padding.
  FUZZ_CHECK(reinterpret_cast<const std::byte*>(ev.stream.data()) + ev.stream.size() ==
                 ev.payload.data(),
             hex_prefix(p, size));
  const std::byte* tail = ev.payload.data() + ev.payload.size();
  if (!ev.metadata.empty()) {
    FUZZ_CHECK(ev.metadata.raw().data() == tail && ev.metadata.raw().size() <= kMaxMetadataBytes,
               "metadata not right after the payload: " + hex_prefix(p, size));
    tail += ev.metadata.raw().size();
    size_t n = 0, bytes = 0;
    for (metadata_entry m : ev.metadata) {
      FUZZ_CHECK(!m.key.empty() && m.key.size() <= 255 && m.value.size() <= UINT16_MAX, hex_prefix(p, size));
      FUZZ_CHECK(inside(m.key.data(), m.key.size(), p, end) && inside(m.value.data(), m.value.size(), p, end),
                 "metadata entry outside the record: " + hex_prefix(p, size));
      bytes += 3 + m.key.size() + m.value.size();
      ++n;
    }
    FUZZ_CHECK(bytes == ev.metadata.raw().size() && n <= kMaxMetadataEntries,
               "metadata entries do not fill it exactly: " + hex_prefix(p, size));
  }
  FUZZ_CHECK(tail <= end && end - tail < 8, "more than 7 bytes of padding: " + hex_prefix(p, size));
}

void check_reencode(const std::byte* p, const event_view& ev, bool checksum_valid) {
  const uint32_t length = ev.record_bytes;
  event_data e;
  e.type = ev.type;
  e.schema_version = ev.schema_version;
  e.payload = ev.payload;
  e.content = ev.content;
  e.timestamp_ns = ev.timestamp_ns;
  e.event_id = ev.event_id;
  e.correlation_id = ev.correlation_id;
  e.causation_id = ev.causation_id;
  // Entries as stored (a decoded record's may repeat keys or use the
  // reserved prefix: encode writes what it is given, the append checks).
  std::vector<metadata_entry> meta(ev.metadata.begin(), ev.metadata.end());
  e.metadata = meta;
  const uint8_t flags = static_cast<uint8_t>(p[13]);
  const uint32_t size = record::encoded_size(ev.stream.size(), e);
  FUZZ_CHECK(size <= length, "re-encoded record larger than the original");
  std::vector<std::byte> out(size, std::byte{0xA5});
  record::header_fields h{ev.position.value, ev.sequence.value, ev.version, ev.timestamp_ns,
                          ev.previous.value, flags};
  FUZZ_CHECK(record::encode(out.data(), size, ev.stream, e, h) == size, "encode returned another size");

  uint16_t header_size;
  std::memcpy(&header_size, p + 54, 2);
  bool canonical = header_size == record::kHeaderSize && p[15] == std::byte{0};
  const std::byte* pad = ev.payload.data() + ev.payload.size() + ev.metadata.raw().size();
  for (const std::byte* q = pad; q < p + length; ++q)
    if (*q != std::byte{0}) canonical = false;
  if (canonical) {
    FUZZ_CHECK(size == length, "canonical record re-encodes to another length");
    // The checksum is reproduced only when the input's was right.
    const size_t from = checksum_valid ? 0 : 8;
    FUZZ_CHECK(std::memcmp(out.data() + from, p + from, length - from) == 0,
               "re-encoding does not reproduce the record: " + hex_prefix(p, length));
  }
  // Canonical or not, the re-encoded record decodes to the same event.
  event_view again;
  record::decoded d2 = record::decode(out.data(), out.size(), kPos, true, again);
  FUZZ_CHECK(d2.outcome == decode_outcome::event && d2.length == size,
             std::string("re-encoded record does not decode: ") + (d2.why ? d2.why : ""));
  event_view want = ev;
  want.record_bytes = size;
  // Offsets of the stream differ when the original had a longer header.
  FUZZ_CHECK(again.stream == want.stream && again.version == want.version &&
                 again.sequence == want.sequence && again.previous == want.previous &&
                 again.type == want.type && again.schema_version == want.schema_version &&
                 again.timestamp_ns == want.timestamp_ns && again.content == want.content &&
                 again.batch_begin == want.batch_begin && again.batch_end == want.batch_end &&
                 again.stream_is_integer == want.stream_is_integer &&
                 again.payload.size() == want.payload.size() &&
                 (want.payload.empty() ||
                  std::memcmp(again.payload.data(), want.payload.data(), want.payload.size()) == 0) &&
                 (again.event_id != nullptr) == (want.event_id != nullptr) &&
                 (again.correlation_id != nullptr) == (want.correlation_id != nullptr) &&
                 (again.causation_id != nullptr) == (want.causation_id != nullptr) &&
                 again.metadata.raw().size() == want.metadata.raw().size() &&
                 (want.metadata.empty() || std::memcmp(again.metadata.raw().data(), want.metadata.raw().data(),
                                                       want.metadata.raw().size()) == 0),
             "re-encoded record decodes to a different event: " + hex_prefix(p, length));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto* p = reinterpret_cast<const std::byte*>(data);

  // 1. As given, without and with checksum verification.
  event_view raw;
  const record::decoded d_raw = record::decode(p, size, kPos, false, raw);
  check_views(d_raw, raw, p, size);
  event_view checked;
  const record::decoded d_chk = record::decode(p, size, kPos, true, checked);
  check_views(d_chk, checked, p, size);
  if (d_chk.outcome == decode_outcome::event) {
    // Verification can only turn an event into invalid, never change it.
    FUZZ_CHECK(d_raw.outcome == decode_outcome::event && same_event(raw, p, checked, p),
               hex_prefix(p, size));
  }
  if (d_raw.outcome != decode_outcome::event) {
    // verify_checksum only concerns events (other kinds are always checked).
    FUZZ_CHECK(d_chk.outcome == d_raw.outcome && d_chk.length == d_raw.length, hex_prefix(p, size));
  } else {
    FUZZ_CHECK(d_chk.outcome == decode_outcome::event || d_chk.outcome == decode_outcome::invalid,
               hex_prefix(p, size));
  }

  // 2. From an odd address (alignment), with exactly `size` bytes readable.
  {
    std::vector<std::byte> shifted(size + 1);
    if (size) std::memcpy(shifted.data() + 1, p, size);
    event_view ev;
    const record::decoded d = record::decode(shifted.data() + 1, size, kPos, true, ev);
    FUZZ_CHECK(d.outcome == d_chk.outcome && d.length == d_chk.length, hex_prefix(p, size));
    if (d.outcome == decode_outcome::event)
      FUZZ_CHECK(same_event(ev, shifted.data() + 1, checked, p), hex_prefix(p, size));
  }

  // 3. Only the claimed length readable: the decoder must not need more.
  if (d_raw.length > 0 && d_raw.length < size) {
    std::vector<std::byte> exact(p, p + d_raw.length);
    event_view ev;
    const record::decoded d = record::decode(exact.data(), exact.size(), kPos, false, ev);
    FUZZ_CHECK(d.outcome == d_raw.outcome && d.length == d_raw.length, hex_prefix(p, size));
  }

  // 4. With the checksum fixed up (when the length is plausible), so the
  // checks behind it are reached: verify=true must then agree with verify=false.
  if (size >= 24) {
    const uint32_t len = le32(p + 8);
    if (len % 8 == 0 && len >= 24 && len <= size) {
      std::vector<std::byte> fixed(p, p + size);
      put64(fixed.data(), record::checksum(fixed.data(), len));
      event_view ev;
      const record::decoded d = record::decode(fixed.data(), fixed.size(), kPos, true, ev);
      check_views(d, ev, fixed.data(), fixed.size());
      if (static_cast<uint8_t>(p[12]) == record::kEvent) {
        FUZZ_CHECK(d.outcome == d_raw.outcome && d.length == d_raw.length,
                   "verify=false and a fixed checksum disagree: " + hex_prefix(p, size));
        if (d.outcome == decode_outcome::event) {
          FUZZ_CHECK(same_event(ev, fixed.data(), raw, p), hex_prefix(p, size));
          check_reencode(fixed.data(), ev, true);
        }
      } else if (static_cast<uint8_t>(p[12]) == record::kSegmentEnd && d.outcome != decode_outcome::invalid) {
        FUZZ_CHECK(d.outcome == decode_outcome::segment_end && d.length == 24, hex_prefix(p, size));
      }
    }
  }
  if (d_chk.outcome == decode_outcome::event) check_reencode(p, checked, true);
  else if (d_raw.outcome == decode_outcome::event) check_reencode(p, raw, false);
  return 0;
}
