// DIR/start: where the log begins once retention has removed its oldest
// segments (FORMAT.md section 1b). Absent = the log begins at segment 0.
//
// Crash story: retention writes this record durably (start.partial,
// datasync, rename, directory sync) before it unlinks a single segment file,
// so after any crash the record names a first segment that still exists,
// and every file below it is one retention had already decided to remove.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "varve/file_system.h"
#include "varve/status.h"

namespace varve::start_file {

inline constexpr const char* kName = "start";
inline constexpr uint32_t kSize = 64;
inline constexpr uint32_t kVersion = 1;

//  off size field
//  0   8    magic "VARVSTRT"
//  8   4    version (1)
//  12  4    reserved, zero
//  16  8    log_id (the meta file's)
//  24  8    first_segment: the oldest segment of the log
//  32  8    first_sequence: the sequence number of the first event in it
//  40  8    removed_at_ns: wall clock when retention wrote this record
//  48  8    reserved, zero
//  56  8    checksum: XXH3-64 of bytes [0, 56)
struct record {
  uint64_t log_id = 0;
  uint64_t first_segment = 0;
  uint64_t first_sequence = 0;
  uint64_t removed_at_ns = 0;
};

void encode(std::byte* dst, const record& r);
// corruption (file and offset named) for a record that does not decode or
// belongs to another log; newer_format for a later version.
status decode(const std::byte* src, size_t n, const std::string& file, uint64_t log_id, record& out);

// nullopt when DIR/start does not exist (the log begins at segment 0).
result<std::optional<record>> read(file_system& fs, const std::string& dir, uint64_t log_id);
// Atomically and durably replaces DIR/start.
status write(file_system& fs, const std::string& dir, const record& r);

// The log position of the first record of segment `first_segment` (0 when
// nothing was removed: position 0 is "the beginning").
uint64_t start_position(uint64_t first_segment, uint8_t log2);

}  // namespace varve::start_file
