// Multi-stream atomic append (event_log::append of a span of stream_batch):
// a unit of work over several aggregates, checked and written as one batch.
//
// The log already makes a batch the unit of visibility and of recovery: its
// records carry batch-begin/batch-end flags, one commit store publishes it,
// and recovery keeps a batch whole or cuts it whole (FORMAT.md 4.1, 8). Since
// format version 2 a batch may hold several streams; nothing else changes.
// Each record still chains to its own stream's previous event, so stream
// reads and the per-aggregate index see an ordinary event of that stream.
#include <algorithm>
#include <memory>
#include <vector>

#include "base/record_encode.h"
#include "engine/append_path.h"
#include "engine/lifecycle/writer_lifecycle.h"
#include "engine/crypto/writer_keys.h"
#include "engine/log_state.h"

namespace varve {

using detail::log_state;

namespace {

// What the check pass learns about one stream, used by the write pass.
struct planned {
  uint64_t hash = 0;
  head_table::head* head = nullptr;  // null: a new stream
  stream_version actual = 0;         // after pass 2: the stream's new version
  uint64_t last = ~uint64_t{0};      // after pass 2: its last record's position
};

constexpr size_t kOnStack = 32;

std::string expected_text(expected_version e) {
  switch (e.which()) {
    case expected_version::kind::no_stream: return "no stream";
    case expected_version::kind::stream_exists: return "an existing stream";
    case expected_version::kind::any: return "any version";
    default: return "version " + std::to_string(e.version());
  }
}

}  // namespace

result<multi_append_result> event_log::append(std::span<const stream_batch> batches,
                                              std::span<append_result> per_stream) {
  log_state& s = *s_;
  if (s.read_only) return status(errc::read_only, s.dir + ": log is open read-only");
  if (s.closed) return status(errc::invalid_argument, s.dir + ": log is closed");
  if (!s.write_failure.ok()) return detail::refused(s, s.write_failure);
  if (s.durable->has_failed()) [[unlikely]] {
    s.write_failure = status(errc::read_only, s.durable->failure().to_string());
    return detail::refused(s, s.write_failure);
  }
  if (!per_stream.empty() && per_stream.size() < batches.size())
    return detail::refused(s, status(errc::invalid_argument,
                                     "per_stream has " + std::to_string(per_stream.size()) +
                                         " entries for " + std::to_string(batches.size()) + " streams"));

  // Pass 1: validate, look up every head, check every expectation. Nothing
  // is written until all of them hold.
  planned on_stack[kOnStack];
  std::unique_ptr<planned[]> on_heap;
  planned* plan = on_stack;
  if (batches.size() > kOnStack) {
    on_heap = std::make_unique<planned[]>(batches.size());
    plan = on_heap.get();
  }
  uint64_t events = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    const std::string_view key = batches[i].stream.bytes();
    if (key.empty() || key.size() > kMaxStreamIdBytes)
      return detail::refused(s, status(errc::invalid_argument,
                                       "streams[" + std::to_string(i) + "]: stream id must have 1 to 255 bytes, got " +
                                           std::to_string(key.size())));
    plan[i].hash = s.heads.hash(key);
    s.heads.prefetch(plan[i].hash);  // the lookups below then overlap their cache misses
    events += batches[i].events.size();
  }
  if (events == 0)
    return detail::refused(s, status(errc::invalid_argument, "multi-stream append without any event"));
  // Each stream once: two parts for one stream would need an order between
  // their expectations that the call does not express. By bytes, as the
  // head table keys streams (an integer id is its 8 bytes). A small batch
  // compares every pair; a large one sorts by hash and compares neighbours
  // (every pair was O(n^2): a 10,000-stream batch spent ~50 M comparisons).
  auto twice = [&](size_t j, size_t i) {
    if (j > i) std::swap(i, j);
    return detail::refused(s, status(errc::invalid_argument,
                                     "stream '" + detail::stream_text(batches[i].stream) +
                                         "' appears twice in one multi-stream append (streams[" +
                                         std::to_string(j) + "] and [" + std::to_string(i) + "])"));
  };
  auto same = [&](size_t i, size_t j) {
    return plan[i].hash == plan[j].hash && batches[i].stream.bytes() == batches[j].stream.bytes();
  };
  if (batches.size() <= kOnStack) {
    for (size_t i = 0; i < batches.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (same(i, j)) return twice(j, i);
  } else {
    std::vector<uint32_t> order(batches.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
    std::sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
      return plan[x].hash != plan[y].hash ? plan[x].hash < plan[y].hash : x < y;
    });
    // Within a run of equal hashes, every pair (a collision is rare, a run short).
    for (size_t a = 0; a < order.size();) {
      size_t b = a + 1;
      while (b < order.size() && plan[order[b]].hash == plan[order[a]].hash) ++b;
      for (size_t i = a; i < b; ++i)
        for (size_t j = a; j < i; ++j)
          if (same(order[i], order[j])) return twice(order[j], order[i]);
      a = b;
    }
  }
  if (s.any_deleted) [[unlikely]]
    for (size_t i = 0; i < batches.size(); ++i)
      if (status d = detail::refuse_deleted(s, batches[i].stream, "multi-stream append"); !d)
        return detail::refused(s, status(d.code(), d.message() + " (streams[" + std::to_string(i) +
                                                       "]; nothing of the multi-stream append was written)"));
  for (size_t i = 0; i < batches.size(); ++i) {
    const std::string_view key = batches[i].stream.bytes();
    plan[i].head = s.heads.find(key, plan[i].hash);
    plan[i].actual = plan[i].head ? plan[i].head->version : 0;
    if (!batches[i].expected.accepts(plan[i].actual)) {
      status st(errc::wrong_expected_version,
                "stream '" + detail::stream_text(batches[i].stream) + "' (streams[" + std::to_string(i) + "] of " +
                    std::to_string(batches.size()) + "): expected " + expected_text(batches[i].expected) +
                    ", actual version " + std::to_string(plan[i].actual) +
                    "; nothing of the multi-stream append was written");
      st.with_actual_version(plan[i].actual);
      return detail::refused(s, st);
    }
  }

  bool extras = s.opts.upcasters != nullptr;
  for (const stream_batch& b : batches)
    for (const event_data& e : b.events) extras |= !e.metadata.empty();
  if (extras) [[unlikely]]
    for (size_t i = 0; i < batches.size(); ++i)
      if (status x = detail::check_extras(s, batches[i].events); !x)
        return detail::refused(s, status(x.code(), "streams[" + std::to_string(i) + "] " + x.message()));

  // A log with a master key: each stream's payloads sealed with its key.
  if (s.encrypting) [[unlikely]] {
    std::vector<uint64_t> last(batches.size());
    for (size_t i = 0; i < batches.size(); ++i) last[i] = plan[i].head ? plan[i].head->last_position : ~uint64_t{0};
    if (status x = detail::seal_batches(s, batches, last.data()); !x) return detail::refused(s, x);
  }

  // Sizes: the unit is one batch, and a batch never spans segments.
  const uint64_t room = s.active->records_end() - segment_format::kHeaderSize - record::kSegmentEndSize;
  uint64_t total = 0;
  for (const stream_batch& b : batches)
    for (const event_data& e : b.events) total += record::encoded_size(b.stream.bytes().size(), e);
  if (total > room)
    return detail::refused(s, status(errc::too_large, "multi-stream append of " + std::to_string(total) +
                                                          " bytes cannot fit in one segment of " +
                                                          std::to_string(s.capacity()) + " bytes"));
  if (s.write_off + total + record::kSegmentEndSize > s.active->records_end()) {
    if (status r = detail::roll(s, total); !r) return detail::refused(s, r);
  }
  // A segment made by an older varve never gets a batch it would take for
  // damage: several streams (version 2), metadata (version 3).
  size_t writing = 0;
  bool metadata = false;
  for (const stream_batch& b : batches) {
    writing += !b.events.empty();
    for (const event_data& e : b.events) metadata |= !e.metadata.empty();
  }
  const uint32_t need = s.encrypting ? segment_format::kEncryptionVersion
                       : metadata     ? segment_format::kMetadataVersion
                       : writing > 1  ? segment_format::kMultiStreamVersion
                                      : 1;
  if (segment_format::version_of(s.active->data()) < need)
    if (status r = detail::roll_to_version(s, total, need); !r) return detail::refused(s, r);

  // Pass 2: write every record; nothing below can fail.
  uint64_t now = 0;
  for (const stream_batch& b : batches)
    for (const event_data& e : b.events)
      if (e.timestamp_ns == 0 && now == 0) now = s.now_ns();
  const uint64_t base = s.active->base_position();
  std::byte* data = s.active->data();
  multi_append_result out;
  out.first = position{base + s.write_off};
  out.first_sequence = sequence{s.next_seq};
  out.events = events;
  uint64_t written = 0;
  uint64_t last_pos = ~uint64_t{0};
  for (size_t i = 0; i < batches.size(); ++i) {
    const stream_batch& b = batches[i];
    const std::string_view key = b.stream.bytes();
    const uint8_t int_flag = b.stream.is_integer() ? record::kFlagIntegerStream : 0;
    uint64_t prev = plan[i].head ? plan[i].head->last_position : ~uint64_t{0};
    stream_version v = plan[i].actual;
    append_result ack;
    ack.first = position{base + s.write_off};
    ack.first_sequence = sequence{s.next_seq};
    ack.first_version = b.events.empty() ? v : v + 1;
    for (const event_data& e : b.events) {
      const uint32_t meta_len = e.metadata.empty() ? 0 : static_cast<uint32_t>(record::metadata_bytes(e.metadata));
      const uint32_t size = record::encoded_size(key.size(), e, meta_len);
      const uint64_t pos = base + s.write_off;
      uint8_t flags = int_flag;
      if (written == 0) flags |= record::kFlagBatchBegin;
      if (++written == events) flags |= record::kFlagBatchEnd;
      record::encode_inline(data + s.write_off, size, key, e,
                            {pos, s.next_seq, ++v, e.timestamp_ns ? e.timestamp_ns : now, prev, flags,
                             s.encrypting ? record::kFlag2Encrypted : uint8_t{0}},
                            meta_len);
      prev = pos;
      last_pos = pos;
      s.write_off += size;
      ++s.next_seq;
    }
    ack.end = position{base + s.write_off};
    ack.last_version = v;
    if (!per_stream.empty()) per_stream[i] = ack;
    plan[i].actual = v;
    plan[i].last = prev;
    // Existing heads now (their pointers stay valid until an insert).
    if (plan[i].head && !b.events.empty()) {
      plan[i].head->version = v;
      plan[i].head->last_position = prev;
    }
  }
  // New streams last: an insert may grow the table and move every head.
  for (size_t i = 0; i < batches.size(); ++i) {
    const stream_batch& b = batches[i];
    if (plan[i].head || b.events.empty()) continue;
    head_table::head* h = s.heads.insert(b.stream.bytes(), plan[i].hash, b.stream.is_integer());
    h->version = plan[i].actual;
    h->last_position = plan[i].last;
  }
  s.heads.tick();  // a growing head table moves a few slots
  s.seg_events += events;
  s.seg_last_pos = last_pos;

  out.end = position{base + s.write_off};
  if (status r = detail::commit_batch(s, out.end.value); !r) [[unlikely]]
    return r;
  return out;
}

}  // namespace varve
