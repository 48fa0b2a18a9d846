// Replay: rebuild state from the log on every core, keeping each stream's
// events in log order.
//
//   auto r = varve::replay(log).partitions(64).threads(8).run([](uint32_t p) {
//     return count_by_type{};          // any type with apply(const event_view&)
//   });                                // or apply(const event_ref&)
//   if (!r) ...                       // r.error: corruption, projection error, cancel
//   uint64_t n = r.reduce(uint64_t{0}, [](uint64_t a, const count_by_type& c) { ... });
//
// How it runs: the range is cut into items (with the mapping, pieces that
// start where the segment index says a record starts; with io_uring or
// pread, chunks the calling thread reads: varve/io_backend.h). The worker
// that takes an item owns it: it validates every record, routes each event
// to partition xxh3(stream id) % P, and applies the item's events group of
// partitions by group, each group once the item before has handed it on - so
// each partition sees its events in log order, one thread at a time, and no
// single thread validates or routes every record. At most 8 items are in
// flight: a slow projection holds the others back (backpressure) instead of
// buffering; no allocation per event. A damaged record stops the replay
// exactly there, whatever the thread count.
//
// A projection's apply takes an event_view (every field decoded ahead) or an
// event_ref (each field read from the record when asked, as
// log_reader::next_batch hands them out). With several threads an event
// applied after its item was passed reaches a ref projection as a ref to its
// record, not decoded again (24 instructions per event fewer for a trivial
// projection; docs/BENCHMARKS.md section 35). Either way the event was
// validated whole before it is applied, and an upcast or decrypted event
// reaches a ref projection through a ref to its view.
//
// A projection whose states add up over consecutive ranges (merge(P&&):
// counts, sums, histograms) can skip the partitions: run_merged(identity)
// folds each item into its own state on whichever worker takes it and merges
// the states in log order (see mergeable_projection, replay::run_merged).
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "varve/event.h"
#include "varve/event_filter.h"
#include "varve/export.h"
#include "varve/file_system.h"
#include "varve/io_backend.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve {

class event_log;

struct replay_progress {
  position reached;          // every wanted event below it has been applied
  position to;               // where the replay stops
  position from;
  uint64_t events_applied = 0;
  uint64_t bytes_read = 0;   // log bytes handed to the workers (or read from files)
  double seconds = 0;
};

// Stops a running replay from another thread (or from a progress callback).
class replay_cancel {
 public:
  void cancel() { flag_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return flag_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> flag_{false};
};

// Saves a replay's state and its position together, in one file, atomically:
// a crash leaves either the previous checkpoint or the new one, never state
// from one and a position from the other, so a resumed replay applies no
// event twice and skips none. These are state snapshots of projections:
// derived data. The newest `keep` generations are kept (DIR/NAME.<gen>.ckpt);
// a load takes the newest one that validates and reports (never trusts) any
// newer one that does not — with none valid, the replay starts over from its
// `from`, which is always correct, only slower.
class checkpoint_store {
 public:
  // DIR is created on the first save.
  VARVE_API checkpoint_store(std::string dir, std::string name, uint32_t keep = 2,
                   std::shared_ptr<file_system> fs = posix_file_system());

  struct loaded {
    position at;                                  // resume from here
    std::vector<std::vector<std::byte>> states;   // one per partition
    std::string file;                             // the generation used
    std::vector<status> skipped;                  // newer generations that failed validation
  };
  // The newest valid generation. not_found when there is none (`skipped`
  // then lists what failed, via the message); invalid_argument when the
  // newest valid one belongs to another log or another partition count (a
  // mistake to report, not state to rebuild silently).
  VARVE_API result<loaded> load(uint64_t log_id, uint32_t partitions,
                      std::vector<status>* skipped = nullptr) const;
  VARVE_API status save(uint64_t log_id, position at, std::span<const std::string> states) const;
  // The newest generation's path ("" when there is none).
  VARVE_API std::string path() const;
  // The position of the newest generation whose header validates (magic,
  // header checksum) and belongs to `log`, reading 48 bytes per generation,
  // not the states; nullopt when there is none. invalid_argument for a
  // checkpoint of another log.
  VARVE_API result<std::optional<position>> saved_position(const event_log& log) const;
  // Read-your-writes: waits until the newest checkpoint has reached `p` (a
  // position from an append_result's end), polling every 2 ms. true when it
  // has, false at the timeout; saved_position()'s errors. Any thread.
  VARVE_API result<bool> wait_until(const event_log& log, position p, std::chrono::nanoseconds timeout) const;
  const std::string& dir() const { return dir_; }
  const std::string& name() const { return name_; }

 private:
  std::vector<std::pair<uint64_t, std::string>> generations() const;  // newest first
  std::string dir_, name_;
  uint32_t keep_;
  std::shared_ptr<file_system> fs_;
};

// A projection written against event_ref (see above).
template <class P>
concept ref_projection = requires(P& p, const event_ref& e) { p.apply(e); };

// A projection whose state over a range can be put together from the states
// of its pieces: after a.merge(std::move(b)), `a` holds the state of a's
// events followed by b's. Associative, not necessarily commutative (merges
// come in log order). Counts, sums, histograms, last-value-wins maps, sets.
// replay::run_merged replays such a projection with no partitions: each
// worker folds whole items into fresh states, merged in log order.
template <class P>
concept mergeable_projection = requires(P& a, P&& b) { a.merge(std::move(b)); };

namespace detail {

// One partition's projection behind a virtual call (the scheduler is not a
// template; the adapter below is).
struct replay_partition {
  virtual ~replay_partition() = default;
  // false (with `err` set) when the projection failed. Not a returned
  // status: constructing, testing and destroying one per event was a third
  // of what a trivial projection's call cost (BENCHMARKS.md section 27).
  // Both forms work for every projection: the scheduler calls the form it
  // holds the event in (a ref only for a deferred event of several workers,
  // and only when `takes_refs`); the adapter hands a view to a ref
  // projection as a ref to that view (three stores, no decode).
  virtual bool apply(const event_view& e, status& err) = 0;
  virtual bool apply(const event_ref& e, status& err) = 0;
  bool takes_refs = false;  // the projection's apply takes event_ref
  // `at`: the position the state reflects (a projection that encodes its
  // state in a self-describing format, e.g. varve/columnar.h, may record it).
  virtual status save(std::string& out, position at) const = 0;
  virtual status load(std::span<const std::byte> in) = 0;
  // Merged replays (replay::run_merged) only: another instance holding the
  // identity state; back to the identity state; the state of a later range
  // folded into this one. A projection that cannot merge has no fresh().
  virtual std::unique_ptr<replay_partition> fresh() const { return nullptr; }
  virtual status reset() { return status(errc::invalid_argument, "this projection has no merge()"); }
  virtual status merge_from(replay_partition&) {
    return status(errc::invalid_argument, "this projection has no merge()");
  }
};

struct replay_config {
  position from;
  position to = position::none();   // none = the committed end at start
  bool to_time = false;
  uint64_t until_ns = 0;             // with to_time: state as of this time
  uint32_t partitions = 0;           // 0 = 4 x threads
  uint32_t threads = 0;              // 0 = the hardware threads (the caller is one of them)
  event_filter filter;
  io_backend io = io_backend::automatic;
  uint32_t chunk_bytes = 1u << 20;
  std::function<void(const replay_progress&)> on_progress;
  std::chrono::milliseconds progress_every{200};
  const replay_cancel* cancel = nullptr;
  const checkpoint_store* checkpoints = nullptr;
  bool resume = false;
  uint64_t checkpoint_every_events = 0;  // 0 = only at the end
  bool merged = false;                   // replay::run_merged: one state, no partitions
};

struct replay_summary {
  status error;
  position from, reached, to;
  uint64_t events_applied = 0;
  uint64_t events_skipped = 0;    // read but not wanted by the filter
  uint64_t bytes_read = 0;
  uint64_t segments_skipped = 0;  // sealed segments the filter let the reader skip
  uint64_t checkpoints = 0;
  std::vector<status> warnings;   // e.g. a damaged checkpoint generation that was skipped
  uint32_t partitions = 0, threads = 0;
  io_backend io = io_backend::automatic;
  double seconds = 0;
};

VARVE_API replay_summary run_replay(const event_log& log, const replay_config& cfg,
                          const std::function<replay_partition*(uint32_t)>& make);

// save(std::string&) or save(std::string&, position), and load(bytes).
template <class P>
concept saves_with_position = requires(const P& cp, std::string& out, position at) {
  { cp.save(out, at) };
};
template <class P>
concept checkpointable = requires(const P& cp, P& p, std::string& out,
                                  std::span<const std::byte> in) {
  { p.load(in) };
} && (saves_with_position<P> || requires(const P& cp, std::string& out) { { cp.save(out) }; });

template <class P>
struct alignas(64) partition_adapter final : replay_partition {
  explicit partition_adapter(P&& p) : state(std::move(p)) { takes_refs = ref_projection<P>; }
  bool apply(const event_view& e, status& err) override {
    if constexpr (ref_projection<P>) return call(event_ref(e), err);
    else return call(e, err);
  }
  bool apply(const event_ref& e, status& err) override {
    if constexpr (ref_projection<P>) {
      return call(e, err);
    } else {
      const event_view v = e.view();
      return call(v, err);
    }
  }
  template <class E>
  bool call(const E& e, status& err) {
    if constexpr (std::is_same_v<decltype(state.apply(e)), status>) {
      status st = state.apply(e);
      if (st.ok()) [[likely]]
        return true;
      err = std::move(st);
      return false;
    } else {
      state.apply(e);
      return true;
    }
  }
  status save(std::string& out, position at) const override {
    if constexpr (checkpointable<P> && saves_with_position<P>) {
      if constexpr (std::is_same_v<decltype(state.save(out, at)), status>) return state.save(out, at);
      else { state.save(out, at); return {}; }
    } else if constexpr (checkpointable<P>) {
      (void)at;
      if constexpr (std::is_same_v<decltype(state.save(out)), status>) return state.save(out);
      else { state.save(out); return {}; }
    } else {
      (void)at;
      return status(errc::invalid_argument, "this projection has no save()/load()");
    }
  }
  status load(std::span<const std::byte> in) override {
    if constexpr (checkpointable<P>) {
      if constexpr (std::is_same_v<decltype(state.load(in)), status>) return state.load(in);
      else { state.load(in); return {}; }
    } else {
      return status(errc::invalid_argument, "this projection has no save()/load()");
    }
  }
  std::unique_ptr<replay_partition> fresh() const override {
    if constexpr (mergeable_projection<P>) {
      if (!identity) return nullptr;
      auto a = std::make_unique<partition_adapter<P>>(identity());
      a->identity = identity;
      return a;
    } else {
      return nullptr;
    }
  }
  status reset() override {
    if constexpr (mergeable_projection<P>) {
      state = identity();
      return {};
    } else {
      return replay_partition::reset();
    }
  }
  status merge_from(replay_partition& later) override {
    if constexpr (mergeable_projection<P>) {
      P& l = static_cast<partition_adapter<P>&>(later).state;
      if constexpr (std::is_same_v<decltype(state.merge(std::move(l))), status>) {
        return state.merge(std::move(l));
      } else {
        state.merge(std::move(l));
        return {};
      }
    } else {
      return replay_partition::merge_from(later);
    }
  }
  P state;
  std::function<P()> identity;  // merged replays: a state of no events
};

}  // namespace detail

// The outcome of a replay: per-partition states, how far it got, and why it
// stopped if it did not reach its end. A projection error or a cancel stops
// the replay cleanly: `reached` is then the position below which every wanted
// event was applied, in every partition (some partitions may have gone
// further; resume from `reached` only together with a checkpoint).
template <class P>
struct replay_result : detail::replay_summary {
  std::vector<P> states;  // index = partition

  explicit operator bool() const { return error.ok(); }
  template <class R, class F>
  R reduce(R init, F&& f) const {
    for (const P& s : states) init = f(std::move(init), s);
    return init;
  }
};

class replay {
 public:
  explicit replay(const event_log& log) : log_(&log) {}

  replay& from(position p) { c_.from = p; return *this; }
  // Stop before `p` (default: the end committed when run() starts).
  replay& to(position p) { c_.to = p; c_.to_time = false; return *this; }
  // State as of a time: stop at the first event whose timestamp reaches `ns`
  // (event_log::position_at_time).
  replay& until(uint64_t ns) { c_.to_time = true; c_.until_ns = ns; return *this; }
  replay& partitions(uint32_t p) { c_.partitions = p; return *this; }
  replay& threads(uint32_t w) { c_.threads = w; return *this; }
  // Only events the filter wants reach the projections; sealed segments whose
  // summary shows none of them are not read at all.
  replay& filter(event_filter f) { c_.filter = std::move(f); return *this; }
  replay& io(io_backend b) { c_.io = b; return *this; }
  // The unit of work: the size of a read (io_uring, pread); with the mapping,
  // items of about half of it. Smaller gives more items to share out on a
  // short range, larger costs less per item.
  replay& chunk_bytes(uint32_t n) { c_.chunk_bytes = n; return *this; }
  replay& on_progress(std::function<void(const replay_progress&)> f,
                      std::chrono::milliseconds every = std::chrono::milliseconds(200)) {
    c_.on_progress = std::move(f);
    c_.progress_every = every;
    return *this;
  }
  replay& cancel_with(const replay_cancel& c) { c_.cancel = &c; return *this; }
  // Projections with checkpoints (P has save(std::string&) — or
  // save(std::string&, position) — and load(std::span<const std::byte>)): saves every partition's state and the
  // position they reflect together, every `every_events` events (at a point
  // where all partitions have applied exactly the events below it) and at the
  // end. With resume(), run() first loads the newest checkpoint (if any) and
  // continues from its position.
  replay& checkpoint(const checkpoint_store& store, uint64_t every_events = 0) {
    c_.checkpoints = &store;
    c_.checkpoint_every_events = every_events;
    return *this;
  }
  replay& resume(bool yes = true) { c_.resume = yes; return *this; }

  // factory(partition) returns a projection (by value): anything with
  // apply(const event_view&) or apply(const event_ref&) (the latter taken
  // when it has both) returning void or varve::status.
  template <class Factory>
  auto run(Factory&& factory) {
    using P = std::decay_t<std::invoke_result_t<Factory&, uint32_t>>;
    static_assert(ref_projection<P> || requires(P p, const event_view& e) { p.apply(e); },
                  "a projection needs apply(const varve::event_view&) or apply(const varve::event_ref&)");
    std::vector<std::unique_ptr<detail::partition_adapter<P>>> parts;
    auto make = [&](uint32_t p) -> detail::replay_partition* {
      parts.push_back(std::make_unique<detail::partition_adapter<P>>(factory(p)));
      return parts.back().get();
    };
    replay_result<P> r;
    static_cast<detail::replay_summary&>(r) = detail::run_replay(*log_, c_, make);
    r.states.reserve(parts.size());
    for (auto& a : parts) r.states.push_back(std::move(a->state));
    return r;
  }

  // A mergeable projection (see mergeable_projection) over the whole range,
  // without partitions: each worker takes the next item and folds all of its
  // events into a fresh state (identity()), and the items' states are merged
  // in log order as they finish. Nothing is routed or applied twice, so a
  // projection whose events need not be split by stream scales like
  // independent replays (docs/BENCHMARKS.md section 36). The result has one
  // state (states[0]; partitions() is ignored, checkpoints hold one state).
  // Each item (about half of chunk_bytes) starts from identity() and is
  // merged once: a state much larger than an item's events (a dense array
  // over every aggregate) pays its size per item - keep it sparse, or use
  // run(). identity() is called on the worker threads, up to once per item; a
  // damaged record, a projection's error or a cancel stop the replay at the
  // same exact cut as run().
  template <class Identity>
  auto run_merged(Identity&& identity) {
    using P = std::decay_t<std::invoke_result_t<Identity&>>;
    static_assert(mergeable_projection<P>, "run_merged needs a projection with merge(P&&)");
    static_assert(ref_projection<P> || requires(P p, const event_view& e) { p.apply(e); },
                  "a projection needs apply(const varve::event_view&) or apply(const varve::event_ref&)");
    std::unique_ptr<detail::partition_adapter<P>> acc;
    std::function<P()> id = [&identity]() -> P { return identity(); };
    auto make = [&](uint32_t) -> detail::replay_partition* {
      acc = std::make_unique<detail::partition_adapter<P>>(identity());
      acc->identity = id;
      return acc.get();
    };
    detail::replay_config c = c_;
    c.merged = true;
    replay_result<P> r;
    static_cast<detail::replay_summary&>(r) = detail::run_replay(*log_, c, make);
    if (acc) r.states.push_back(std::move(acc->state));
    return r;
  }

 private:
  const event_log* log_;
  detail::replay_config c_;
};

}  // namespace varve
