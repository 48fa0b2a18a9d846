// Whole-file I/O for the index directory's derived files (head-table
// checkpoints, segment indexes): written atomically, read whole.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "varve/file_system.h"
#include "varve/status.h"

namespace varve::index_file {

// Writes DIR/NAME atomically: NAME.partial, datasync, rename, sync the
// directory. Crash story: until the rename, open ignores (and removes) the
// .partial; after it, the bytes are durable. On failure nothing is left.
status write(file_system& fs, const std::string& dir, const std::string& name,
             std::span<const std::byte> bytes);
// Reads a whole file; `min_size` bytes at least, else errc::corruption.
result<std::vector<std::byte>> read(file_system& fs, const std::string& path, size_t min_size);

}  // namespace varve::index_file
