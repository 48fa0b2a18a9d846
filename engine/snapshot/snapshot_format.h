// The bytes of DIR/snapshots/<file>.snap (docs/FORMAT.md §7b): a 64-byte
// file header, then snapshot records, each starting 64-byte aligned, so a
// body in the read-only mapping is 64-byte aligned for SIMD decoders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace varve::snapshot_format {

inline constexpr uint32_t kVersion = 1;
inline constexpr uint64_t kFileHeader = 64;
inline constexpr uint64_t kAlign = 64;
inline constexpr uint64_t kFixed = 88;  // record header before the stream id
inline constexpr const char* kDirName = "snapshots";
inline constexpr const char* kLockName = "snapshots.lock";

inline constexpr uint64_t align64(uint64_t n) { return (n + 63) & ~uint64_t{63}; }
// Header area of a record: the fixed fields and the stream id, padded to 64.
inline constexpr uint64_t header_bytes(uint64_t stream_len) { return align64(kFixed + stream_len); }

struct file_header {
  uint64_t file_index = 0;
  uint64_t salt = 0;      // random per file; every record repeats it
  uint64_t log_id = 0;
  uint64_t created_ns = 0;
};
void encode_file_header(std::byte* dst, const file_header& h);
// ok, or corruption / newer_format naming `path` and the offset.
struct decode_outcome {
  bool ok = false;
  bool newer = false;
  std::string why;
};
decode_outcome decode_file_header(const std::byte* src, file_header& out);

struct record_header {
  uint64_t offset = 0;         // the record's own offset in its file
  uint64_t salt = 0;
  uint64_t version = 0;
  uint64_t body_bytes = 0;
  uint64_t body_checksum = 0;
  uint64_t saved_ns = 0;
  uint64_t anchor = 0;         // log position of the stream's event `version`
  uint64_t anchor_timestamp = 0;  // and that event's timestamp (tells two histories apart)
  uint32_t schema_version = 0;
  uint8_t stream_len = 0;
  uint8_t flags = 0;           // bit 0: integer stream id
  std::string_view stream;
};
// Writes the header area (header_bytes(stream.size()) bytes, padding zeroed).
void encode_record_header(std::byte* dst, const record_header& h);

// Validates the record header at `off` of a file of `size` bytes (mapped at
// `base`): magic, its own offset, the file's salt, field ranges, the header
// checksum, and that the body lies inside the file. Never reads past `size`.
// Fills `out` (stream views into the mapping) or says why not.
bool decode_record_header(const std::byte* base, uint64_t size, uint64_t off, uint64_t salt,
                          record_header& out, std::string& why);

// 16 zero bytes where a record would start: nothing was written there (or the
// save in progress has not written its header yet: it is written last).
bool unwritten_at(const std::byte* base, uint64_t size, uint64_t off);

std::string file_name(uint64_t index);               // 20 digits + ".snap"
bool parse_file_name(std::string_view name, uint64_t& index);

}  // namespace varve::snapshot_format
