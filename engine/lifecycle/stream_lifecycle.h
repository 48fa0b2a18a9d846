// Stream lifecycle (varve/lifecycle.h): DIR/streams, the journal of
// per-stream metadata changes (FORMAT 5e), and the immutable view of it
// that readers share. docs/DESIGN.md "Stream lifecycle".
//
// Readers take the current view at their slow steps (a segment's end, the
// committed end, a stream read's start), never per event; an event is then
// checked only when the log has any metadata at all.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "varve/event.h"
#include "varve/file_system.h"
#include "varve/lifecycle.h"
#include "varve/status.h"

namespace varve::detail {

inline constexpr const char* kStreamsFileName = "streams";

// A stream id for a message when only its bytes are known: as text, or an
// 8-byte id that is not text as the integer it holds.
inline std::string stream_text_of(std::string_view b) {
  bool text = true;
  for (char c : b) text &= static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
  if (text || b.size() != 8) return std::string(b);
  uint64_t v = 0;
  for (char c : b) v = (v << 8) | static_cast<uint8_t>(c);
  return std::to_string(v);
}

// Every stream with metadata, sorted by the hash of its id; never changed
// once published (a change publishes a new view).
class lifecycle_view {
 public:
  struct item {
    uint64_t hash = 0;
    stream_metadata_entry entry;
  };

  static uint64_t hash(std::string_view stream);
  const stream_metadata* find(std::string_view stream) const {
    return items_.empty() ? nullptr : find_slow(stream);
  }
  bool empty() const { return items_.empty(); }
  // The journal's valid end when this view was read (cross-process hint).
  uint64_t journal_end() const { return journal_end_; }
  uint64_t last_change() const { return last_change_; }
  uint64_t deleted_streams() const { return deleted_; }
  const std::vector<item>& items() const { return items_; }

  // A filter in front of find() for the per-event check: one bit per
  // (cheap) hash of every stream with metadata, ~16 bits per stream, so a
  // stream without metadata is ruled out by one load in ~94 % of cases
  // (XXH3 and a binary search cost the scan ~10 ns an event otherwise:
  // BENCHMARKS 19). The hash mixes the id's length and its first and last 8
  // bytes (all of an id of up to 16 bytes): a collision only lets an event
  // through to find().
  static uint64_t quick_hash(std::string_view s) {
    uint64_t x = 0;
    if (s.size() <= 8) {
      std::memcpy(&x, s.data(), s.size());
    } else {
      uint64_t last;
      std::memcpy(&x, s.data(), 8);
      std::memcpy(&last, s.data() + s.size() - 8, 8);
      x ^= (last << 29) | (last >> 35);
    }
    x ^= uint64_t{s.size()} << 56;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
  }
  bool maybe(std::string_view s) const {
    const uint64_t h = quick_hash(s) & bloom_mask_;
    return (bloom_[h >> 6] >> (h & 63)) & 1;
  }
  // The rule of log-wide reads (DESIGN "Stream lifecycle"): deleted, below
  // truncate_before, or older than max_age at `now_ns`. max_count is not
  // applied here (it needs the stream's newest version).
  bool hides(const event_view& ev, uint64_t now_ns) const {
    if (!maybe(ev.stream)) return false;  // most events: one mix and one bit
    const stream_metadata* m = find(ev.stream);
    if (!m) return false;
    return m->deleted || ev.version < m->truncate_before ||
           (m->max_age_ns != 0 && ev.timestamp_ns + m->max_age_ns < now_ns);
  }

  // Reads DIR/streams (absent: an empty view). A torn last entry (a change a
  // crash cut short, never acknowledged) is left out; any other damage is
  // errc::corruption naming the file and offset.
  static result<std::shared_ptr<const lifecycle_view>> load(file_system& fs, const std::string& dir,
                                                            uint64_t log_id);

 private:
  const stream_metadata* find_slow(std::string_view stream) const;
  void build_filter();
  std::vector<uint64_t> bloom_{0};
  uint64_t bloom_mask_ = 63;
  std::vector<item> items_;
  uint64_t journal_end_ = 0;
  uint64_t last_change_ = 0;
  uint64_t deleted_ = 0;
};

// The writer's side: appends a change durably, then publishes the view.
class lifecycle_journal {
 public:
  lifecycle_journal(std::shared_ptr<file_system> fs, std::string dir, uint64_t log_id,
                    std::shared_ptr<const lifecycle_view> view)
      : fs_(std::move(fs)), dir_(std::move(dir)), log_id_(log_id), view_(std::move(view)) {}

  const std::shared_ptr<const lifecycle_view>& view() const { return view_; }
  // Records `meta` as `stream`'s metadata (creating DIR/streams first when
  // absent; a torn entry after the last whole one is cut), synced; returns
  // the new view. `log_end`: the log's committed end, recorded with it.
  result<std::shared_ptr<const lifecycle_view>> change(std::string_view stream, bool integer,
                                                       const stream_metadata& meta, uint64_t log_end,
                                                       uint64_t now_ns);

 private:
  std::shared_ptr<file_system> fs_;
  std::string dir_;
  uint64_t log_id_;
  std::shared_ptr<const lifecycle_view> view_;
};

// The entry's bytes (FORMAT 5e), for the journal and the fuzzer's seeds.
std::vector<std::byte> encode_lifecycle_entry(std::string_view stream, bool integer, const stream_metadata& meta,
                                              uint64_t change_number, uint64_t time_ns, uint64_t log_end);
std::vector<std::byte> encode_lifecycle_header(uint64_t log_id);

}  // namespace varve::detail
