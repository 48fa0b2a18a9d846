// The writer's side of crypto-shredding (engine/crypto/writer_keys.cc).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "varve/log.h"

namespace varve::detail {

struct log_state;

// Opens DIR/keys when the log has a master key (creating it for a writer
// given a key), finishes forgets a crash interrupted, and refuses a writer
// without the key of a log that has DIR/keys, or with another key. Early
// in open, before recovery changes anything.
status open_keys(log_state& s);
// Hands the making of key batches to the preparer thread (once it runs),
// and takes it back (close(), before that thread stops).
void start_key_runner(log_state& s);
void stop_key_runner(log_state& s);

// Replaces `events` (one stream's batch) by copies whose payloads are
// sealed with the stream's data key, in the writer's scratch. Cold: only a
// log with a master key calls it.
[[gnu::cold]] status seal_payloads(log_state& s, std::string_view stream, uint64_t last_position,
                                   std::span<const event_data>& events);
// The same for a multi-stream append; last_positions[i]: batches[i]'s
// stream's last record (~0: none).
[[gnu::cold]] status seal_batches(log_state& s, std::span<const stream_batch>& batches,
                                  const uint64_t* last_positions);

}  // namespace varve::detail
