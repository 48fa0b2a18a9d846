#include "varve/event_filter.h"

#include <algorithm>

namespace varve {

// Linear searches: a filter names a handful of types and streams, and at that
// size a scan beats hashing or a binary search on the per-event path.
bool event_filter::matches(const event_view& e) const {
  if (!types.empty() && std::find(types.begin(), types.end(), e.type) == types.end()) return false;
  if (!correlation_ids.empty() &&
      (!e.correlation_id ||
       std::find(correlation_ids.begin(), correlation_ids.end(), *e.correlation_id) == correlation_ids.end()))
    return false;
  if (streams.empty() && stream_prefixes.empty()) return true;
  for (const std::string& s : streams)
    if (e.stream == s) return true;
  for (const std::string& p : stream_prefixes)
    if (e.stream.starts_with(p)) return true;
  return false;
}

}  // namespace varve
