// Subscriptions: a cursor that reads a log's history from a position and then
// follows the writer live, with no gap and no duplicate between the two (it
// is one cursor over one log: "history" is simply what was committed before
// it caught up). Works in the writer's process and in any other process that
// opened the log with event_log::open_read_only.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "varve/event.h"
#include "varve/event_filter.h"
#include "varve/export.h"
#include "varve/file_system.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve {

class event_log;

namespace detail {
struct subscription_state;
}

// The follow policy: what next() does once it has caught up with the writer,
// in three stages. It spins (re-reads the commit position with a CPU pause
// between looks) for `spin`, then yields the CPU between looks (sched_yield)
// for `yield`, then parks on a futex in the shared control block until the
// writer wakes it. An event that lands while it spins is delivered in well
// under a microsecond; while it yields, within a scheduler round (a few
// microseconds when the core is free); once parked, in the time a futex wake
// takes (tens of microseconds, more when the core has gone idle).
//   latency-critical reader on a core of its own: spin = kForever
//   shared cores, low latency:                    spin = 20us, yield = 2ms
//   the default, cheap on CPU:                    spin = 20us, yield = 0
inline constexpr std::chrono::nanoseconds kForever = std::chrono::nanoseconds::max();

struct subscription_options {
  // Spin this long before yielding or parking. 0 = no spinning at all;
  // kForever = never park (busy-waits a core while there is nothing to read).
  std::chrono::nanoseconds spin = std::chrono::microseconds(20);
  // Then yield between looks this long before parking (kForever = never park).
  std::chrono::nanoseconds yield = std::chrono::nanoseconds(0);
  // A named subscription: its position is kept in DIR/subscriptions/NAME.pos.
  // When that file exists the subscription resumes there and `from` is
  // ignored; commit() writes it. Names: 1 to 100 of [A-Za-z0-9._-], not
  // starting with '.'. One consumer per name (nothing locks it).
  std::string name;
};

// How far a subscription is behind the writer. A monitoring figure: exact once
// the subscription has read an event, an estimate before that.
struct subscription_lag {
  uint64_t events = 0;  // committed events not yet read (filtered ones included)
  uint64_t bytes = 0;   // position distance to the committed end (counts the
                        // unused end of each segment it spans)
};

// A cursor over committed events in log order, from a position, then live.
//
// - next() returns history as fast as a log_reader, then waits for the
//   writer: it spins briefly, then parks on a futex in the shared control
//   block; the writer wakes parked followers with one futex call per commit
//   (and pays one load per commit when nobody is parked). No thread of ours
//   busy-waits a core.
// - A subscription never buffers: a slow consumer simply falls behind and
//   catches up later (lag()); the log keeps every event, nothing is dropped.
// - Used by one thread at a time, except cancel() and lag(), which any thread
//   may call at any time. Views stay valid while the event_log is open; the
//   log must outlive the subscription.
// - Cross-process: parking needs write access to DIR/varve.ctl (to count
//   itself as a waiter). Where the file can only be read, the subscription
//   polls the commit position every millisecond instead (latency <= ~1 ms).
//
// Named subscriptions and delivery guarantees: ack(p) records that every
// event before p has been processed; commit() makes the newest ack durable
// (atomic file replace + fsync, a few milliseconds: call it per batch, not per
// event). After a crash the subscription resumes at the last committed ack,
// so events processed after it are delivered again: at-least-once. Make
// handlers idempotent (e.g. remember the last event's position or sequence
// applied) for effectively-once.
class VARVE_API subscription {
 public:
  // "The committed end when the subscription opens": live events only.
  static constexpr position end() { return position::none(); }

  // Opens a subscription on `log` starting at `from` (a record position from an
  // append result or an event_view, position{} for the beginning, or end()).
  // Errors: invalid_argument for a position past the committed end; the
  // reader's invalid_argument or corruption for one that is not a record's;
  // for a named one, corruption naming DIR/subscriptions/NAME.pos when that
  // file is damaged, belongs to another log or points past the end.
  static result<subscription> open(const event_log& log, position from = {},
                                   event_filter filter = {}, subscription_options options = {});

  subscription();
  subscription(subscription&&) noexcept;
  subscription& operator=(subscription&&) noexcept;
  ~subscription();

  // Fills `out` with the next matching event: true. Waits up to `timeout` for
  // one once caught up; false when none came (call again to keep following).
  // errc::cancelled after cancel(); errc::corruption naming file and offset
  // for a record that fails validation (the cursor stays on it).
  result<bool> next(event_view& out, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(0));

  // The bulk form of next(), for a consumer catching up on history: fills
  // out[0, n) with the next matching events in order and returns n >= 1, or
  // 0 when none came within `timeout` (as next() returns false). Each event
  // is validated as next() validates it (log_reader::next_batch); an event
  // whose payload was upcast or decrypted into the reader's buffer is the
  // last of its batch, and a damaged record ends the batch before it, its
  // error coming on the next call. Returns whatever it found as soon as it
  // has one event: n may be below out.size() while more is committed. An
  // empty span returns 0.
  result<size_t> next_batch(std::span<event_view> out,
                            std::chrono::nanoseconds timeout = std::chrono::nanoseconds(0));

  // Where the next read starts: the position just past the last event read or
  // skipped by the filter. Resuming a new subscription here continues exactly.
  position where() const;
  subscription_lag lag() const;

  // Makes a parked or future next() return errc::cancelled, from any thread.
  // Async-signal-safe (atomic stores and one futex call), so a SIGINT handler
  // may call it.
  void cancel();
  bool cancelled() const;

  // Named subscriptions (see above). ack() is in memory and cheap; commit()
  // persists the newest ack if it moved. Both fail with invalid_argument on
  // an unnamed subscription.
  status ack(position resume_at);
  status ack(const event_view& processed) {
    return ack(position{processed.position.value + processed.record_bytes});
  }
  status commit();
  const std::string& name() const;

 private:
  std::unique_ptr<detail::subscription_state> s_;
};

// The named positions of one log directory: DIR/subscriptions/NAME.pos, 48
// bytes each (FORMAT.md 6a), replaced atomically and fsynced, checksummed and
// tied to the log's id. subscription does this for itself; this is for tools
// and for consumers that keep positions by hand.
class subscription_store {
 public:
  VARVE_API static result<subscription_store> open(const std::string& log_dir,
                                         std::shared_ptr<file_system> fs = nullptr);

  // The saved position, or nullopt when NAME was never saved. corruption
  // naming the file when it fails its checks.
  VARVE_API result<std::optional<position>> load(std::string_view name) const;
  VARVE_API status save(std::string_view name, position p);
  VARVE_API status remove(std::string_view name);
  VARVE_API result<std::vector<std::string>> names() const;

  VARVE_API static bool valid_name(std::string_view name);

  // Read-your-writes: waits until NAME's saved position has reached `p` (a
  // position from an append_result's end), polling the file every 2 ms.
  // true when it has, false at the timeout; load()'s errors.
  VARVE_API result<bool> wait_until(std::string_view name, position p,
                                    std::chrono::nanoseconds timeout) const;

 private:
  subscription_store(std::string dir, std::string log_dir, uint64_t log_id,
                     std::shared_ptr<file_system> fs)
      : dir_(std::move(dir)), log_dir_(std::move(log_dir)), log_id_(log_id), fs_(std::move(fs)) {}
  std::string path_of(std::string_view name) const;
  std::string dir_;      // DIR/subscriptions
  std::string log_dir_;
  uint64_t log_id_ = 0;
  std::shared_ptr<file_system> fs_;
  bool dir_made_ = false;
};

}  // namespace varve
