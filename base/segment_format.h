// The segment file's header (first 64 bytes) and footer (last 64 bytes, only
// on a sealed segment), and the log's meta file. Encode/decode pairs; the
// normative description is docs/FORMAT.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/coding.h"
#include "varve/status.h"

namespace varve::segment_format {

// 2: a batch may hold several streams (the multi-stream append). 3: an event
// record may carry metadata (its metadata_len word, once reserved, is set).
// An older reader would take either for damage, so it must refuse the log as
// newer instead: segments and meta files written since carry 3. Older files
// are read as before (their batches hold one stream each, their records no
// metadata). 4: an event record's byte 15 (once reserved) may say its payload
// is encrypted (crypto-shredding); an older reader would hand the ciphertext
// out as the payload.
inline constexpr uint32_t kFormatVersion = 4;
inline constexpr uint32_t kHeaderSize = 64;
// The first version whose batches may hold several streams.
inline constexpr uint32_t kMultiStreamVersion = 2;
// The first version whose records may carry metadata.
inline constexpr uint32_t kMetadataVersion = 3;
// The first version whose records may have an encrypted payload.
inline constexpr uint32_t kEncryptionVersion = 4;
// The format version a (validated) segment header states.
inline uint32_t version_of(const std::byte* header) { return coding::get_u32(header + 8); }
inline constexpr uint32_t kFooterSize = 64;
inline constexpr uint32_t kMinLog2Capacity = 16;  // 64 KiB
inline constexpr uint32_t kMaxLog2Capacity = 30;  // 1 GiB

//  Segment header, offset 0 of every .seg file:
//  0  8  magic "VARVESEG"
//  8  4  format_version (3; 2 before metadata, 1 before multi-stream batches)
//  12 1  log2_capacity
//  13 3  reserved (0)
//  16 8  segment_index
//  24 8  base_position  = segment_index << log2_capacity
//  32 8  log_id         (the meta file's; a segment of another log is rejected)
//  40 16 reserved (0)
//  56 8  checksum       XXH3-64 of bytes [0, 56)
struct header {
  uint8_t log2_capacity = 0;
  uint64_t segment_index = 0;
  uint64_t log_id = 0;
};
void encode_header(std::byte* dst, const header& h);
// `file` names the file in errors. Distinguishes an all-zero header (never
// written), not-a-segment, newer format and corruption.
status decode_header(const std::byte* src, const std::string& file, header& out);
bool is_zero(const std::byte* p, size_t n);

//  Footer, the last 64 bytes of a sealed segment (zero until sealed):
//  0  8  magic "VARVEEND"
//  8  8  segment_index
//  16 8  data_end        offset of the segment-end record (end of events)
//  24 8  event_count
//  32 8  first_sequence  (of the first event; = next sequence if none)
//  40 8  last_position   (of the last event; ~0 if none)
//  48 8  data_checksum   XXH3-64 of bytes [64, data_end + 24)
//  56 8  checksum        XXH3-64 of bytes [0, 56)
struct footer {
  uint64_t segment_index = 0;
  uint64_t data_end = 0;
  uint64_t event_count = 0;
  uint64_t first_sequence = 0;
  uint64_t last_position = ~uint64_t{0};
  uint64_t data_checksum = 0;
};
void encode_footer(std::byte* dst, const footer& f);
// Returns ok and fills `out` for a valid footer; not_found for an all-zero one
// (unsealed); corruption otherwise.
status decode_footer(const std::byte* src, const std::string& file, uint64_t file_offset,
                     footer& out);

//  Meta file DIR/varve.meta, 64 bytes, written once at creation (atomically):
//  0  8  magic "VARVELOG"
//  8  4  format_version (3 for logs made since metadata; 2 since multi-stream batches; 1 before)   checked before the checksum: a newer layout may differ
//  12 1  log2_segment_capacity
//  13 3  reserved (0)
//  16 8  log_id (random)
//  24 8  created_ns
//  32 24 reserved (0)
//  56 8  checksum XXH3-64 of bytes [0, 56)
inline constexpr uint32_t kMetaSize = 64;
struct meta {
  uint8_t log2_capacity = 26;
  uint64_t log_id = 0;
  uint64_t created_ns = 0;
};
void encode_meta(std::byte* dst, const meta& m);
status decode_meta(const std::byte* src, size_t n, const std::string& file, meta& out);

}  // namespace varve::segment_format
