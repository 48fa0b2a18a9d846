// Stream lifecycle, the writer's side (engine/lifecycle/writer_lifecycle.cc).
#pragma once

#include <string>

#include "varve/event.h"
#include "varve/file_system.h"
#include "varve/status.h"

namespace varve::detail {

struct log_state;

// At open (writer and read-only alike): reads DIR/streams and publishes its
// view; the writer also keeps the journal to append changes to and rings
// the doorbell with the file's end.
status open_lifecycle(log_state& s);

// The append paths' check, called only while some stream is deleted
// (log_state::any_deleted): errc::stream_deleted for a deleted stream.
status refuse_deleted(const log_state& s, const stream_id& stream, const char* what);

// What a writer-thread operation (a lifecycle change, a scavenge, a forget)
// checks first: the log is writable, open, and has not refused writes.
status check_writer_op(const log_state& s);

// The writer's open: removes <segment>.scavenge files an interrupted
// scavenge left (the segment itself is whole, old or new).
status remove_scavenge_leftovers(file_system& fs, const std::string& dir);

}  // namespace varve::detail
