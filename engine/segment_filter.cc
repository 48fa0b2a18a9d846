#include "engine/segment_filter.h"

#include <algorithm>

#include "engine/shared_log.h"
#include "index/segment_index.h"

namespace varve {

namespace {

// Can some stream id in the segment start with `p`? Ids are either integers
// (8 bytes, any of them, never categorised), names without '-' (only a flag
// says they exist), or names whose category (through the first '-') is listed.
bool prefix_may_match(const segment_index::view& ix, std::string_view p) {
  const uint8_t flags = ix.summary_flags();
  if (p.empty()) return true;
  if ((flags & segment_index::kIntegerIds) && p.size() <= 8) return true;
  if (flags & segment_index::kAnyCategory) return true;
  const size_t dash = p.find('-');
  if (dash != std::string_view::npos) {
    // An id starting with p has its first '-' where p does: same category.
    // A name without '-' cannot start with p.
    return ix.has_category(p.substr(0, dash + 1));
  }
  // p has no '-': it starts a categorised id exactly when it starts that id's
  // category (the category's only '-' is its last byte, past p).
  if (flags & segment_index::kUncategorised) return true;
  const uint64_t i = ix.lower_bound_category(p);
  return i < ix.category_count() && ix.category(i).starts_with(p);
}

}  // namespace

segment_match match_segment(const segment_index::view& ix, const event_filter& f) {
  // Each list the filter sets must have a member the segment may hold.
  if (!f.types.empty() &&
      std::none_of(f.types.begin(), f.types.end(), [&](uint32_t t) { return ix.may_hold_type(t); }))
    return segment_match::none;
  if (!f.correlation_ids.empty() &&
      std::none_of(f.correlation_ids.begin(), f.correlation_ids.end(),
                   [&](const id128& id) { return ix.may_hold_correlation(id); }))
    return segment_match::none;
  if (f.streams.empty() && f.stream_prefixes.empty()) return segment_match::maybe;
  // The stream slots list every stream of the segment: an exact id is
  // answered for certain.
  segment_index::stream_run run;
  for (const std::string& s : f.streams)
    if (ix.find(s, run)) return segment_match::maybe;
  for (const std::string& p : f.stream_prefixes)
    if (prefix_may_match(ix, p)) return segment_match::maybe;
  return segment_match::none;
}

segment_match match_segment(detail::shared_log& log, uint64_t segment_index, const event_filter& f) {
  if (f.empty()) return segment_match::maybe;
  // Only segments wholly below the committed end: the tail (and anything past
  // it) is being written, and has no index to ask.
  if (log.ctl) {
    const uint64_t commit = log.committed();
    if (commit == 0 || segment_index >= ((commit - 1) >> log.log2())) return segment_match::maybe;
  }
  // Its index only: a filtered reader skipping an archived segment never inflates it.
  auto seg = log.segments.get_lazy(segment_index);
  if (!seg) return segment_match::maybe;
  // Null below the sealed end too when the index is missing, damaged, stale
  // or of an older version (the writer rebuilds those).
  const segment_index::view* ix = log.indexes.get(*seg.value());
  if (!ix) return segment_match::maybe;
  return match_segment(*ix, f);
}

}  // namespace varve
