// Every way of reading a log hands out the same events and stops at the same
// place: log_reader::next, log_reader::next_batch (into event_views and into
// the lazy event_refs), subscription::next and subscription::next_batch, and
// a replay on several threads (partitioned, each partition in log order, and
// merged, in log order). The bulk forms decode a window's records in their
// own loop (docs/BENCHMARKS.md sections 28-29) and a replay's workers each
// validate the items they take; on a damaged log each must still return
// exactly the events next() validates and then fail where it failed, never a
// byte more. Used by the fuzzers that damage logs and by the crash torture
// (fuzz/torture.cc).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "varve/log.h"
#include "varve/replay.h"
#include "varve/subscription.h"

namespace varve_fuzz {

// Every field of an event, bytes included, as one comparable string.
inline std::string fingerprint(const varve::event_view& v) {
  std::string s;
  auto num = [&](uint64_t x) {
    s.append(reinterpret_cast<const char*>(&x), sizeof x);
  };
  auto bytes = [&](const void* p, size_t n) {
    num(n);
    if (n) s.append(static_cast<const char*>(p), n);
  };
  auto id = [&](const varve::id128* p) {
    if (p) bytes(p->bytes.data(), p->bytes.size());
    else num(~uint64_t{0});
  };
  num(v.position.value);
  num(v.sequence.value);
  bytes(v.stream.data(), v.stream.size());
  num(v.stream_is_integer);
  num(v.version);
  num(v.previous.value);
  num(v.type);
  num(v.schema_version);
  num(v.stored_schema_version);
  num(v.timestamp_ns);
  num(static_cast<uint64_t>(v.content));
  num(v.batch_begin);
  num(v.batch_end);
  id(v.event_id);
  id(v.correlation_id);
  id(v.causation_id);
  bytes(v.payload.data(), v.payload.size());
  bytes(v.metadata.raw().data(), v.metadata.raw().size());
  num(v.record_bytes);
  num(v.encrypted);
  num(v.forgotten);
  return s;
}

// A lazy ref's fields through its accessors, one by one; its view() must
// give the same (else the fingerprint says so, and differs from next()'s).
inline std::string fingerprint(const varve::event_ref& r) {
  varve::event_view v;
  v.position = r.position();
  v.sequence = r.sequence();
  v.stream = r.stream();
  v.stream_is_integer = r.stream_is_integer();
  v.version = r.version();
  v.previous = r.previous();
  v.type = r.type();
  v.schema_version = r.schema_version();
  v.stored_schema_version = r.stored_schema_version();
  v.timestamp_ns = r.timestamp_ns();
  v.content = r.content();
  v.batch_begin = r.batch_begin();
  v.batch_end = r.batch_end();
  v.event_id = r.event_id();
  v.correlation_id = r.correlation_id();
  v.causation_id = r.causation_id();
  v.payload = r.payload();
  v.metadata = r.metadata();
  v.record_bytes = r.record_bytes();
  v.encrypted = r.encrypted();
  v.forgotten = r.forgotten();
  std::string s = fingerprint(v);
  if (s != fingerprint(r.view())) s += "<event_ref::view() differs from the accessors>";
  return s;
}

struct read_trace {
  std::vector<std::string> events;
  std::string end;                   // "end at P" or the error
  uint64_t at = 0;                   // where the reader stood when it ended or failed
  std::optional<varve::errc> error;  // set when it failed
};

// `step(views)` returns result<size_t> like next_batch (n events in views);
// `where()` the cursor. A reader says "nothing now" with 0; at the committed
// end that is the end, elsewhere (a subscription's look that found no event
// yet) it asks again, a bounded number of times.
template <class View = varve::event_view, class Step, class Where>
read_trace trace_reads(const varve::event_log& log, size_t batch, Step&& step, Where&& where) {
  read_trace t;
  std::vector<View> views(batch);
  for (int idle = 0;;) {
    auto n = step(std::span<View>(views));
    if (!n) {
      t.end = "error: " + n.error().to_string();
      t.at = where().value;
      t.error = n.error().code();
      return t;
    }
    if (n.value() == 0) {
      if (where() == log.committed_position() || ++idle > 64) {
        t.end = "end at " + std::to_string(where().value);
        t.at = where().value;
        return t;
      }
      continue;
    }
    idle = 0;
    if (n.value() > batch) {
      t.end = "a batch of " + std::to_string(n.value()) + " events in a span of " + std::to_string(batch);
      return t;
    }
    for (size_t i = 0; i < n.value(); ++i) t.events.push_back(fingerprint(views[i]));
  }
}

// "" when `got` is `want`, else what differs.
inline std::string traces_differ(const read_trace& want, const read_trace& got, const std::string& what) {
  const size_t common = std::min(want.events.size(), got.events.size());
  for (size_t i = 0; i < common; ++i)
    if (want.events[i] != got.events[i]) return what + ": event #" + std::to_string(i) + " differs from next()'s";
  if (want.events.size() != got.events.size())
    return what + ": " + std::to_string(got.events.size()) + " events where next() gave " +
           std::to_string(want.events.size()) + " (next() ended with \"" + want.end + "\", this with \"" +
           got.end + "\")";
  if (want.end != got.end)
    return what + ": ended with \"" + got.end + "\" where next() ended with \"" + want.end + "\"";
  return {};
}

// A replay's projection for the comparison: every event it applies,
// fingerprinted, in apply order. merge() appends, so run_merged's one state
// must be next()'s list itself.
struct replay_fingerprints {
  std::vector<std::string> events;
  void apply(const varve::event_view& v) { events.push_back(fingerprint(v)); }
  void merge(replay_fingerprints&& later) {
    events.insert(events.end(), std::make_move_iterator(later.events.begin()),
                  std::make_move_iterator(later.events.end()));
  }
};
// The same over the lazy event_refs (the path a ref projection takes).
struct replay_ref_fingerprints : replay_fingerprints {
  void apply(const varve::event_ref& r) { events.push_back(fingerprint(r)); }
  void merge(replay_ref_fingerprints&& later) { replay_fingerprints::merge(std::move(later)); }
};

// A fingerprint's first field is the event's position (fingerprint above).
inline uint64_t fingerprint_position(const std::string& f) {
  uint64_t p = 0;
  if (f.size() >= sizeof p) std::memcpy(&p, f.data(), sizeof p);
  return p;
}

// "" when the replay `r` (its states: a partitioned run's, or a merged run's
// one) applied only events next() handed out - each partition in log order, a
// merged state in log order whole - and ended where next() ended: at the
// committed end (reached), or failing where next() failed (reached after
// next()'s last event, not past where it stopped), with the same error
// code. A sequence break (an event or hole whose number is not the next
// one) is refused by all of them at the same record: next() and the
// subscriptions check that sequences are dense as the replay and the chunk
// reader behind pread and io_uring do.
template <class Result>
std::string replay_differs(const read_trace& want, const Result& r, bool merged, const std::string& what) {
  const read_trace& expect = want;
  if (r.error.ok() && expect.error)
    return what + ": succeeded (reached " + std::to_string(r.reached.value) + ") where next() ended with \"" +
           expect.end + "\"";
  if (!r.error.ok() && (!expect.error || r.error.code() != *expect.error))
    return what + ": failed with " + r.error.to_string() + " where next() ended with \"" + expect.end + "\"";
  // The same cut: `reached` may stand anywhere from after next()'s last
  // event to where next() stopped (a segment that cannot be read is cut at
  // its start by one, at its first record by the other).
  const uint64_t last_end =
      expect.events.empty() ? 0 : fingerprint_position(expect.events.back()) + 1;
  if (r.reached.value > expect.at || r.reached.value < last_end)
    return what + ": reached " + std::to_string(r.reached.value) + " where next() stopped at " +
           std::to_string(expect.at) + " (\"" + expect.end + "\")";
  std::vector<std::string> got;
  for (size_t p = 0; p < r.states.size(); ++p) {
    const auto& evs = r.states[p].events;
    for (size_t i = 1; i < evs.size(); ++i)
      if (fingerprint_position(evs[i]) <= fingerprint_position(evs[i - 1]))
        return what + ": partition " + std::to_string(p) + " applied the event at " +
               std::to_string(fingerprint_position(evs[i])) + " after the one at " +
               std::to_string(fingerprint_position(evs[i - 1]));
    got.insert(got.end(), evs.begin(), evs.end());
  }
  if (merged) {
    if (r.states.size() != 1) return what + ": " + std::to_string(r.states.size()) + " states, not one";
    read_trace t;
    t.events = std::move(got);
    t.end = expect.end;
    return traces_differ(expect, t, what);
  }
  // Partitions split the events by stream: the same events, once each.
  std::vector<std::string> sorted = expect.events;
  std::sort(sorted.begin(), sorted.end());
  std::sort(got.begin(), got.end());
  if (got != sorted)
    return what + ": applied " + std::to_string(got.size()) + " events where next() gave " +
           std::to_string(expect.events.size()) + ", or other events";
  return {};
}

// Replays the whole log twice on several threads, partitioned and merged,
// over views and refs in turn, through the mapping, pread or the automatic
// choice (not io_uring, which a sandbox may refuse), in small chunks so that
// even a small log is several items on several workers. `knob` picks.
inline std::string replays_disagree(const varve::event_log& log, const read_trace& want, size_t knob) {
  const uint32_t threads = 1 + uint32_t(knob % 3);
  const varve::io_backend backends[] = {varve::io_backend::automatic, varve::io_backend::mmap,
                                        varve::io_backend::pread};
  const varve::io_backend io = backends[(knob / 3) % 3];
  const uint32_t partitions = 1 + uint32_t((knob / 9) % 5);
  const uint32_t chunk = knob % 2 ? 4096 : 16384;
  const bool refs = (knob / 2) % 2;  // the partitioned run's; the merged run takes the other
  const std::string how = std::to_string(threads) + " threads, io " + varve::to_string(io) + ", chunk " +
                          std::to_string(chunk);
  auto rp = [&] { return varve::replay(log).threads(threads).io(io).chunk_bytes(chunk); };
  const std::string part = "replay::run(" + std::to_string(partitions) + " partitions, " + how;
  std::string d =
      refs ? replay_differs(want, rp().partitions(partitions).run([](uint32_t) { return replay_ref_fingerprints{}; }),
                            false, part + ", over refs)")
           : replay_differs(want, rp().partitions(partitions).run([](uint32_t) { return replay_fingerprints{}; }),
                            false, part + ", over views)");
  if (!d.empty()) return d;
  return refs ? replay_differs(want, rp().run_merged([] { return replay_fingerprints{}; }), true,
                               "replay::run_merged(" + how + ", over views)")
              : replay_differs(want, rp().run_merged([] { return replay_ref_fingerprints{}; }), true,
                               "replay::run_merged(" + how + ", over refs)");
}

// Reads the whole log six ways; `batch` (>= 1) sizes the bulk reads and picks
// the replays' threads, partitions, backend and chunk. "" when they agree,
// else the first difference.
inline std::string read_paths_disagree(const varve::event_log& log, size_t batch) {
  using namespace std::chrono_literals;
  read_trace want;
  {
    varve::log_reader r = log.read();
    want = trace_reads(
        log, 1,
        [&](std::span<varve::event_view> v) -> varve::result<size_t> {
          auto more = r.next(v[0]);
          if (!more) return more.error();
          return size_t{more.value() ? 1u : 0u};
        },
        [&] { return r.where(); });
  }
  {
    varve::log_reader r = log.read();
    const read_trace got = trace_reads(
        log, batch, [&](std::span<varve::event_view> v) { return r.next_batch(v); }, [&] { return r.where(); });
    if (auto d = traces_differ(want, got, "log_reader::next_batch(" + std::to_string(batch) + ")"); !d.empty())
      return d;
  }
  {
    varve::log_reader r = log.read();
    const read_trace got = trace_reads<varve::event_ref>(
        log, batch, [&](std::span<varve::event_ref> v) { return r.next_batch(v); }, [&] { return r.where(); });
    if (auto d = traces_differ(want, got, "log_reader::next_batch(event_ref, " + std::to_string(batch) + ")");
        !d.empty())
      return d;
  }
  if (auto d = replays_disagree(log, want, batch); !d.empty()) return d;
  auto sub = varve::subscription::open(log);
  if (!sub) {
    // Opening at the beginning reads nothing yet; it can only fail as the
    // reader fails on its first record.
    if (!clean_read_error(sub.error().code())) return "subscription::open: " + sub.error().to_string();
    return {};
  }
  {
    const read_trace got = trace_reads(
        log, 1,
        [&](std::span<varve::event_view> v) -> varve::result<size_t> {
          auto more = sub->next(v[0], 0ns);
          if (!more) return more.error();
          return size_t{more.value() ? 1u : 0u};
        },
        [&] { return sub->where(); });
    if (auto d = traces_differ(want, got, "subscription::next"); !d.empty()) return d;
  }
  auto sub2 = varve::subscription::open(log);
  if (!sub2) return "a second subscription::open failed: " + sub2.error().to_string();
  const read_trace got = trace_reads(
      log, batch, [&](std::span<varve::event_view> v) { return sub2->next_batch(v, 0ns); },
      [&] { return sub2->where(); });
  return traces_differ(want, got, "subscription::next_batch(" + std::to_string(batch) + ")");
}

// The fuzzers' form: a difference is an invariant violated.
inline void check_read_paths_agree(const varve::event_log& log, size_t batch, const std::string& when) {
  const std::string d = read_paths_disagree(log, batch);
  FUZZ_CHECK(d.empty(), when + ": " + d);
}

}  // namespace varve_fuzz
