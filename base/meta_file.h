// Reading and writing DIR/varve.meta (format in segment_format.h).
#pragma once

#include <string>

#include "base/segment_format.h"
#include "varve/file_system.h"

namespace varve::meta_file {

// not_found for a missing directory, not_a_log without a meta file,
// newer_format / corruption from the decoder.
status read(file_system& fs, const std::string& dir, segment_format::meta& m);
// Atomically: varve.meta.partial, datasync, rename, sync the directory.
status write(file_system& fs, const std::string& dir, const segment_format::meta& m);
// The same for any small file DIR/name: after a crash it holds the old
// bytes or the new ones, never a mix (a leftover name.partial is removed by
// the next writer's open).
status replace_file(file_system& fs, const std::string& dir, const std::string& name, const std::byte* data,
                    size_t n);

}  // namespace varve::meta_file
