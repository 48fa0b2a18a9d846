// Which events a replay or a subscription wants. An empty filter wants all.
// Sealed segments whose summary (index/<segment>.sidx) shows none of the
// wanted events are skipped without reading their records.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "varve/event.h"
#include "varve/export.h"

namespace varve {

struct VARVE_API event_filter {
  // Event types wanted; empty = every type.
  std::vector<uint32_t> types;
  // Streams wanted, by id prefix: "order-" wants every stream whose id starts
  // with "order-" (a category); an exact id is a prefix of itself. Empty =
  // every stream. Integer stream ids match a prefix of their 8 big-endian bytes.
  std::vector<std::string> stream_prefixes;
  // Exact stream ids wanted (raw bytes; stream_id::bytes()); empty = every stream.
  // When both stream lists are given an event matches either.
  std::vector<std::string> streams;
  // Correlation ids wanted; empty = any (and events without one). Sealed
  // segments whose correlation filter rules every one of them out are skipped.
  std::vector<id128> correlation_ids;

  bool empty() const {
    return types.empty() && stream_prefixes.empty() && streams.empty() && correlation_ids.empty();
  }
  // True when the event passes: its type is wanted (or types is empty), its
  // correlation id is wanted (or correlation_ids is empty) and its stream is
  // wanted (or both stream lists are empty).
  bool matches(const event_view& e) const;
};

}  // namespace varve
