// Retention: whole sealed segments leave the head of the log (docs/DESIGN.md
// "Retention", FORMAT.md 1b). Not public API: event_log::retain is.
#pragma once

#include "engine/shared_log.h"
#include "varve/log.h"
#include "varve/options.h"

namespace varve::detail {

// One pass over a writer's log. `sealed_end`: segments below it are sealed
// (the writer's active segment index). Serialised by shared_log::retention_mu.
// Crash story: DIR/start is written durably first, then the start is
// published to readers of this process, then the files go (segments, their
// stream indexes, checkpoints below the start); a crash anywhere leaves a
// start record naming an existing segment, and the next open removes what
// is left below it.
// Every pass first drops the pages of segments removed at least the grace
// period ago (shared_log::drop_expired_pages), so their disk space returns.
result<retention_result> run_retention(shared_log& sh, uint64_t sealed_end, const retention_policy& p,
                                       uint64_t now_ns, bool dry_run, recovery_observer* observer);

}  // namespace varve::detail
