// How engine/ parts built on top of an open log (replay, subscriptions) reach
// its internals without widening event_log's public surface.
#pragma once

#include "engine/log_state.h"
#include "varve/log.h"

namespace varve::detail {

struct log_access {
  static const log_state& state(const event_log& log) { return *log.s_; }
  static const std::shared_ptr<shared_log>& shared(const event_log& log) { return log.s_->shared; }
  // Opens for writing with a writer lock the caller already holds (repair
  // keeps it from its first change to the end).
  static result<std::unique_ptr<event_log>> open_locked(const std::string& dir, const log_options& o,
                                                        std::unique_ptr<writer_lock> lock);
};

}  // namespace varve::detail
