// Whether a sealed segment can hold an event an event_filter wants, answered
// from its index file's summary (FORMAT.md 5a) without reading its records.
// Replay and subscriptions ask once per segment and skip the ones that
// cannot; the answer errs only towards reading: anything not known for
// certain (no index yet, a damaged or stale one, the unsealed tail, a list
// past its cap) is `maybe`.
#pragma once

#include <cstdint>

#include "varve/event_filter.h"

namespace varve::detail {
struct shared_log;
}

namespace varve {

namespace segment_index {
class view;
}

enum class segment_match { none, maybe };

// `none` only when segment `segment_index` is sealed and its valid index
// proves no event in it passes `f`. Cheap: one lookup in an index the log has
// usually mapped already, then binary searches; never touches the segment's
// records (the footer is read once, when the index is first mapped).
segment_match match_segment(detail::shared_log& log, uint64_t segment_index, const event_filter& f);

// The same decision on an index already at hand (tests, tools).
segment_match match_segment(const segment_index::view& ix, const event_filter& f);

}  // namespace varve
