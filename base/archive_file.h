// The archive tier's files (FORMAT.md section 1c): DIR/archive, which says
// where the log's archived segments live, and one compressed file per
// archived segment in that directory.
//
// An archived segment is the sealed segment file, byte for byte, cut into
// frames of equal size, each compressed as one zstd frame on its own, with a
// table of where each frame lies and the XXH3 of its raw bytes. A reader
// decompresses only the frames it touches (a stream read of a few events
// does not inflate 64 MiB), and checks each frame against its checksum
// before any byte of it is used: a damaged archive is an error naming the
// file and the offset, never different bytes.
//
// Crash story: a pass writes each archive file durably (name.partial,
// datasync, rename, directory sync) and reads it back, then records the new
// boundary durably in DIR/archive, and only then unlinks the hot files. So
// after any crash every segment below DIR/archive's boundary has a complete,
// checked archive file; a hot file below it is one the pass had not yet
// removed (the next open removes it); an archive file at or past it is a
// leftover the next pass overwrites.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "varve/file_system.h"
#include "varve/status.h"

namespace varve::archive_file {

// --- DIR/archive: the archive's location and boundary ---
inline constexpr const char* kLocationName = "archive";
inline constexpr uint32_t kLocationVersion = 1;
inline constexpr uint32_t kLocationHeader = 64;
inline constexpr uint32_t kMaxDirBytes = 4096;

//  off size field
//  0   8    magic "VARVARCL"
//  8   4    version (1)
//  12  4    dir_len: bytes of the archive directory's path that follow the header
//  16  8    log_id (the meta file's)
//  24  8    archive_end: the segments from the log's start up to (not including)
//           this one live in the archive directory, not in DIR
//  32  8    archived_at_ns: wall clock of the pass that wrote this record
//  40  16   reserved, zero
//  56  8    checksum: XXH3-64 of the path bytes, seeded with XXH3-64 of bytes [0, 56)
//  64  dir_len  the archive directory (absolute path, no NUL)
struct location {
  uint64_t log_id = 0;
  uint64_t archive_end = 0;
  uint64_t archived_at_ns = 0;
  std::string dir;
};
std::vector<std::byte> encode_location(const location& l);
status decode_location(const std::byte* src, size_t n, const std::string& file, uint64_t log_id,
                       location& out);
// nullopt when DIR/archive does not exist (nothing was ever archived).
result<std::optional<location>> read_location(file_system& fs, const std::string& dir, uint64_t log_id);
// Atomically and durably replaces DIR/archive.
status write_location(file_system& fs, const std::string& dir, const location& l);

// --- an archived segment: <index, 20 digits>.varc in the archive directory ---
inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kHeaderSize = 64;
inline constexpr uint32_t kEntrySize = 24;
// archive_options::frame_bytes chooses; this is its default (64 KiB).
inline constexpr uint8_t kDefaultLog2Frame = 16;

//  Header, 64 bytes:
//  0   8    magic "VARVARCS"
//  8   4    version (1)
//  12  1    log2_capacity (the segment's)
//  13  1    log2_frame: frames of 2^log2_frame raw bytes, at most the capacity
//  14  2    reserved, zero
//  16  8    segment_index
//  24  8    log_id
//  32  4    frame_count = capacity >> log2_frame
//  36  4    reserved, zero
//  40  8    file_bytes: the archive file's size
//  48  8    raw_checksum: XXH3-64 of the whole raw segment
//  56  8    checksum: XXH3-64 of bytes [0, 56)
//  Frame table at 64, frame_count entries of 24 bytes, then 8 bytes of
//  XXH3-64 over the entries:
//  0   8    offset of the frame's zstd bytes in the file (0 for a zero frame)
//  8   4    compressed size; 0: the frame's raw bytes are all zero (none stored)
//  12  4    reserved, zero
//  16  8    XXH3-64 of the frame's raw bytes
//  Then the zstd frames, in frame order, back to back.
std::string segment_file_name(uint64_t index);
std::optional<uint64_t> parse_segment_file_name(std::string_view name);

// Compresses a sealed segment (its `1 << log2` bytes at `data`), writes it
// durably as DEST/<name> and reads it back: ok only when the file on disk
// inflates to exactly these bytes. Returns the file's size.
result<uint64_t> write_segment(file_system& fs, const std::string& dest, const std::byte* data, uint8_t log2,
                               uint64_t index, uint64_t log_id, int level, uint8_t log2_frame = kDefaultLog2Frame);

// The log id an archived segment file's header names, when its header
// checks (nullopt for a file that cannot be read or does not check).
std::optional<uint64_t> segment_owner(file_system& fs, const std::string& path);

// One archived segment, opened and its header and frame table checked.
// read_frame may be called from any number of threads at once.
class segment_reader {
 public:
  // corruption naming the file and offset for a header or table that does
  // not check, or that names another segment, log or capacity.
  static result<std::unique_ptr<segment_reader>> open(file_system& fs, const std::string& path, uint8_t log2,
                                                      uint64_t index, uint64_t log_id);
  ~segment_reader();
  segment_reader(const segment_reader&) = delete;
  segment_reader& operator=(const segment_reader&) = delete;

  uint64_t frame_bytes() const { return uint64_t{1} << log2_frame_; }
  uint32_t frame_count() const { return static_cast<uint32_t>(entries_.size()); }
  uint64_t file_bytes() const { return file_bytes_; }
  uint64_t raw_checksum() const { return raw_checksum_; }
  const std::string& path() const { return path_; }
  // Inflates frame i into dst (frame_bytes() bytes; a zero frame is left as
  // it is: the caller's memory must already be zero there) and checks it.
  status read_frame(uint32_t i, std::byte* dst) const;

 private:
  struct entry {
    uint64_t offset;
    uint32_t csize;
    uint64_t raw_checksum;
  };
  segment_reader(file_system& fs, file_handle f, std::string path) : fs_(fs), file_(f), path_(std::move(path)) {}
  file_system& fs_;
  file_handle file_;
  std::string path_;
  uint8_t log2_frame_ = 0;
  uint64_t file_bytes_ = 0;
  uint64_t raw_checksum_ = 0;
  std::vector<entry> entries_;
};

}  // namespace varve::archive_file
