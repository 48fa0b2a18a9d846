// Head-table checkpoints, DIR/index/<last segment>.heads: the head table as it
// stands at the end of a sealed segment, so open loads it instead of scanning
// the whole log. Derived data: any mismatch means rebuild, never trust.
#pragma once

#include <cstdint>
#include <string>

#include "index/head_table.h"
#include "varve/file_system.h"
#include "varve/status.h"

namespace varve::heads_file {

//  Header, 64 bytes:
//  0  8  magic "VARVEHDS"
//  8  4  format_version (1)
//  12 4  reserved
//  16 8  log_id
//  24 8  last_segment     the checkpoint covers segments [0, last_segment]
//  32 8  next_sequence    sequence after the last event of last_segment
//  40 8  entry_count
//  48 8  body_checksum    XXH3-64 of the entries
//  56 8  checksum         XXH3-64 of bytes [0, 56)
//  Entries, each 8-byte aligned:
//  0  8  version
//  8  8  last_position
//  16 1  stream_len (1..255)
//  17 1  flags (bit 0: integer stream id)
//  18 .. stream bytes, zero padding to a multiple of 8
struct checkpoint_info {
  uint64_t last_segment = 0;
  uint64_t next_sequence = 0;
  uint64_t entries = 0;
};

// Writes atomically: NAME.partial, datasync, rename, sync the directory.
status write(file_system& fs, const std::string& index_dir, uint64_t log_id,
             const checkpoint_info& info, const head_table& table);
// Loads and validates; a corrupt file gives errc::corruption naming it.
status read(file_system& fs, const std::string& path, uint64_t log_id, checkpoint_info& info,
            head_table& table);

}  // namespace varve::heads_file
