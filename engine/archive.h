// The archive tier: whole sealed segments move into an archive directory as
// compressed files (docs/DESIGN.md "Archive tier", FORMAT.md 1c). Not public
// API: event_log::archive is.
#pragma once

#include "engine/shared_log.h"
#include "varve/log.h"
#include "varve/options.h"

namespace varve::detail {

// One pass over a writer's log. `sealed_end`: segments below it are sealed.
// Serialised with retention (shared_log::retention_mu): both move the log's
// files. Crash story: every archive file is written durably and read back
// (it must inflate to the segment's bytes), then DIR/archive records the new
// boundary durably, then the segment files leave DIR. A crash before the
// record leaves the log as it was (a leftover archive file is overwritten by
// the next pass); after it, the next open removes the hot files below the
// boundary. Processes that have a segment mapped keep reading their mapping.
result<archive_result> run_archive(shared_log& sh, uint64_t sealed_end, const archive_options& o, uint64_t now_ns,
                                   bool dry_run);

// The archive directory as the log records it: absolute and normalised.
result<std::string> archive_dir_path(const std::string& dir);

}  // namespace varve::detail
