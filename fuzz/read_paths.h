// Every way of reading a log hands out the same events and stops at the same
// place: log_reader::next, log_reader::next_batch (into event_views and into
// the lazy event_refs), subscription::next and subscription::next_batch. The bulk forms decode a window's records in their
// own loop (docs/BENCHMARKS.md sections 28-29); on a damaged log each must
// still return exactly the events next() validates and then the same error,
// never a byte more. Used by the fuzzers that damage logs and by the crash
// torture (fuzz/torture.cc).
#pragma once

#include <chrono>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "varve/log.h"
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
  std::string end;  // "end at P" or the error
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
      return t;
    }
    if (n.value() == 0) {
      if (where() == log.committed_position() || ++idle > 64) {
        t.end = "end at " + std::to_string(where().value);
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

// Reads the whole log five ways; `batch` (>= 1) sizes the bulk reads. ""
// when they agree, else the first difference.
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
