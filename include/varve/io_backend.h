// How sequential readers (replay, `varve replay`, verify of cold data) get the
// bytes of the log: io_uring for cold data, the mapping for warm data, pread as
// the fallback that works everywhere.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "varve/export.h"

namespace varve {

enum class io_backend : uint8_t {
  automatic,  // VARVE_IO if set; else the mapping for a range that is in the page cache
              // (mincore), io_uring for a cold one, falling back to pread (said once)
  uring,      // large reads into registered buffers, several in flight (liburing);
              // O_DIRECT for cold segments of a range larger than half the
              // available memory (VARVE_IO_DIRECT=1|0 forces it on|off)
  mmap,       // the segment mappings, read in place (zero copy; best when warm)
  pread,      // large pread(2) calls into a few buffers
};

VARVE_API const char* to_string(io_backend b);
// "uring" | "mmap" | "pread" | "auto"; nullopt for anything else.
VARVE_API std::optional<io_backend> parse_io_backend(std::string_view s);

}  // namespace varve
