#include "index/segment_index.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <vector>
#include <unordered_set>

#include "base/coding.h"
#include "base/scan.h"
#include "base/segment.h"

namespace varve::segment_index {

namespace {

constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'S', 'I', 'X'};
constexpr size_t kSlotSize = 16;
constexpr size_t kEntryFixed = 32;
constexpr size_t kTimeEntry = 16;

uint64_t pad8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

// The correlation filter's hashing (segment_index.h): one XXH3 per id, the
// bits from its halves (double hashing).
uint64_t correlation_hash(const id128& id) { return XXH3_64bits(id.bytes.data(), id.bytes.size()); }
uint64_t correlation_bit(uint64_t h, uint64_t i) {
  const uint64_t h1 = h & 0xffffffffu, h2 = (h >> 32) | 1;
  return h1 + i * h2;
}

// Bytes of the summary section for the given list sizes (each bounded by its
// cap before this is called, so nothing overflows).
uint64_t summary_size(uint64_t types, uint64_t categories, uint64_t category_bytes) {
  return pad8(4 * types) + pad8(4 * categories + category_bytes);
}

// The streams of one segment while it is indexed: open addressing on the
// stream's XXH3, one cache line per slot holding what each event updates
// (its stream's count and first version), so an event costs one (prefetched)
// miss. Streams of up to 16 bytes (integer ids among them) are compared in
// the slot; longer ones against their first occurrence in the segment.
class stream_map {
 public:
  struct alignas(64) slot {
    uint64_t hash;
    uint64_t first_version;
    uint32_t count;
    uint32_t idx;
    uint32_t len;  // stream bytes; kEmpty marks a free slot
    char key[16];
  };
  static constexpr uint32_t kEmpty = ~uint32_t{0};

  stream_map() { resize(kInitialSlots); }
  void prefetch(uint64_t h) const { __builtin_prefetch(&slots_[h & mask_], 1); }
  template <class Streams>
  slot& find_or_insert(uint64_t h, std::string_view stream, const Streams& streams, bool& fresh) {
    for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
      slot& s = slots_[i];
      if (s.len == kEmpty) {
        if (2 * (used_ + 1) > slots_.size()) {  // keep the load at most one half
          grow();
          return find_or_insert(h, stream, streams, fresh);
        }
        ++used_;
        s.hash = h;
        s.len = static_cast<uint32_t>(stream.size());
        s.count = 0;
        if (stream.size() <= sizeof s.key) std::memcpy(s.key, stream.data(), stream.size());
        fresh = true;
        return s;
      }
      if (s.hash == h && s.len == stream.size() &&
          (stream.size() <= sizeof s.key ? std::memcmp(s.key, stream.data(), stream.size()) == 0
                                         : streams[s.idx].stream == stream)) {
        fresh = false;
        return s;
      }
    }
  }
  template <class F>
  void for_each(F&& f) const {
    for (const slot& s : slots_)
      if (s.len != kEmpty) f(s);
  }

 private:
  static constexpr size_t kInitialSlots = 1 << 12;
  void resize(size_t n) {
    slots_.assign(n, slot{});
    for (slot& s : slots_) s.len = kEmpty;
    mask_ = n - 1;
    used_ = 0;
  }
  void grow() {
    std::vector<slot> old;
    old.swap(slots_);
    resize(old.size() * 2);
    for (const slot& s : old) {
      if (s.len == kEmpty) continue;
      uint64_t i = s.hash & mask_;
      while (slots_[i].len != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
      ++used_;
    }
  }
  std::vector<slot> slots_;
  uint64_t mask_ = 0;
  size_t used_ = 0;
};

}  // namespace

std::string_view category_of(std::string_view stream, bool integer) {
  if (integer) return {};
  const size_t dash = stream.find('-');
  return dash == std::string_view::npos ? std::string_view{} : stream.substr(0, dash + 1);
}

uint64_t hash(hash_kind k, std::string_view stream) {
  // The weak hash sends every stream whose first byte matches to the same
  // slot chain: tests use it to prove collisions are resolved by the bytes.
  if (k == hash_kind::weak) return stream.empty() ? 0 : static_cast<uint8_t>(stream[0]) & 3;
  return XXH3_64bits(stream.data(), stream.size());
}

result<std::vector<std::byte>> build(const segment& seg, const build_input& in) {
  segment_format::footer f;
  if (status s = seg.read_footer(f); !s)
    return status(s.code() == errc::not_found ? errc::invalid_argument : s.code(),
                  seg.path() + ": cannot index a segment that is not sealed: " + s.message());
  struct acc {
    std::string_view stream;
    bool integer;
    uint64_t first_version, prev_position;
    uint32_t count;
    uint64_t postings_index;
  };
  std::vector<acc> streams;
  // The footer's count is checked against the scan below, not trusted for
  // sizing: a damaged one must not ask for a huge allocation.
  const uint64_t most = seg.capacity() / (record::kHeaderSize + 8);
  const uint64_t expect = std::min(f.event_count, most);
  stream_map ids;
  std::vector<std::pair<uint32_t, uint32_t>> events;  // (stream, record offset)
  events.reserve(expect);
  std::vector<std::pair<uint64_t, uint32_t>> times;
  uint64_t max_ts = in.max_timestamp_through_previous;
  uint64_t gap_offset = 0;
  bool gap = false;
  // Summary. Type ids are small numbers in practice (a registry counts them
  // from 1): a bitmap answers "seen?" for those without hashing on the
  // per-event path; the rare large id goes to a set.
  constexpr uint32_t kSmallTypes = 1 << 16;
  std::vector<uint64_t> small_types(kSmallTypes / 64);
  std::unordered_set<uint32_t> large_types;
  uint64_t distinct_types = 0;
  uint8_t flags = 0;
  std::unordered_set<std::string_view> categories;
  std::unordered_set<uint64_t> correlations;  // XXH3 of each distinct correlation id
  const uint64_t base = seg.base_position();
  auto apply = [&](const event_view& v, uint64_t h) {
    bool fresh = false;
    stream_map::slot& sl = ids.find_or_insert(h, v.stream, streams, fresh);
    if (fresh) {
      sl.idx = static_cast<uint32_t>(streams.size());
      sl.first_version = v.version;
      streams.push_back({v.stream, v.stream_is_integer, v.version, v.previous.value, 0, 0});
      const std::string_view c = category_of(v.stream, v.stream_is_integer);
      if (v.stream_is_integer) flags |= kIntegerIds;
      else if (c.empty()) flags |= kUncategorised;
      else if (!(flags & kAnyCategory)) categories.insert(c);
      if (categories.size() > kMaxCategories) flags |= kAnyCategory, categories.clear();
    }
    if (!(flags & kAnyType)) {
      bool fresh_type;
      if (v.type < kSmallTypes) {
        uint64_t& w = small_types[v.type / 64];
        const uint64_t bit = uint64_t{1} << (v.type % 64);
        fresh_type = !(w & bit);
        w |= bit;
      } else {
        fresh_type = large_types.insert(v.type).second;
      }
      if (fresh_type && ++distinct_types > kMaxSummaryTypes) flags |= kAnyType;
    }
    if (v.correlation_id) correlations.insert(correlation_hash(*v.correlation_id));
    const uint32_t off = static_cast<uint32_t>(v.position.value - base);
    if (sl.first_version + sl.count != v.version && !gap) gap = true, gap_offset = off;
    ++sl.count;
    if (v.timestamp_ns > max_ts) max_ts = v.timestamp_ns;
    if (events.size() % kTimeStride == 0) times.push_back({max_ts, off});
    events.push_back({sl.idx, off});
  };
  // Each event's stream is looked up in a table far larger than the caches,
  // one miss per event: hashing kAhead events ahead and prefetching their
  // slots lets the misses overlap (the sealer indexes every segment, so this
  // is CPU the writer's machine pays once per event). Events are applied in
  // log order; the views point into the mapping, which outlives the scan.
  constexpr size_t kAhead = 16;
  struct pending {
    event_view v;
    uint64_t h;
  };
  pending ring[kAhead];
  size_t n = 0;
  segment_scan r = scan_segment(seg, f.first_sequence, true, [&](const event_view& v) {
    pending& p = ring[n % kAhead];
    if (n >= kAhead) apply(p.v, p.h);
    p.v = v;
    p.h = XXH3_64bits(v.stream.data(), v.stream.size());
    ids.prefetch(p.h);
    ++n;
  });
  for (size_t i = n > kAhead ? n - kAhead : 0; i < n; ++i) apply(ring[i % kAhead].v, ring[i % kAhead].h);
  ids.for_each([&](const stream_map::slot& sl) { streams[sl.idx].count = sl.count; });
  // Holes (a repair's, or a scavenge's: FORMAT 4.2a) stand for events that
  // are gone; the footer counts them. The entries assume each stream's
  // versions here are consecutive, which the gap check below holds to: a
  // scavenge removes a prefix of each stream, a repair's hole may not.
  if (!r.ended_by_marker || r.good_end != f.data_end || r.events + r.lost_events != f.event_count)
    return status(errc::corruption,
                  seg.path() + " offset " + std::to_string(r.problem_offset) +
                      ": sealed segment cannot be indexed: " +
                      (r.problem.empty() ? "records disagree with the footer" : r.problem));
  if (gap)
    return status(errc::corruption, seg.path() + " offset " + std::to_string(gap_offset) +
                                        ": a stream's versions are not contiguous");

  uint64_t slot_count = 2;
  while (slot_count < 2 * streams.size()) slot_count <<= 1;
  uint64_t entries_bytes = 0;
  uint64_t next_posting = 0;
  std::vector<uint64_t> entry_off(streams.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    entry_off[i] = entries_bytes;
    entries_bytes += kEntryFixed + pad8(streams[i].stream.size());
    streams[i].postings_index = next_posting;
    next_posting += streams[i].count;
  }
  const uint64_t slots_at = kHeaderSize;
  const uint64_t entries_at = slots_at + slot_count * kSlotSize;
  const uint64_t postings_at = entries_at + entries_bytes;
  const uint64_t time_at = postings_at + pad8(events.size() * 4);
  std::vector<uint32_t> type_list;
  if (!(flags & kAnyType)) {
    type_list.reserve(distinct_types);
    for (uint32_t w = 0; w < small_types.size(); ++w)
      for (uint64_t bits = small_types[w]; bits; bits &= bits - 1)
        type_list.push_back(w * 64 + static_cast<uint32_t>(__builtin_ctzll(bits)));
    const size_t small_end = type_list.size();
    type_list.insert(type_list.end(), large_types.begin(), large_types.end());
    std::sort(type_list.begin() + small_end, type_list.end());  // all above the small ones
  }
  std::vector<std::string_view> category_list(categories.begin(), categories.end());
  std::sort(category_list.begin(), category_list.end());
  uint64_t category_bytes = 0;
  for (std::string_view c : category_list) category_bytes += c.size();
  if (category_bytes > kMaxCategoryBytes) {
    flags |= kAnyCategory;
    category_list.clear();
    category_bytes = 0;
  }
  const uint64_t summary_at = time_at + times.size() * kTimeEntry;
  const uint64_t filter_at = summary_at + summary_size(type_list.size(), category_list.size(), category_bytes);
  uint8_t correlation_log2 = 0;
  if (!correlations.empty()) {
    correlation_log2 = kMinCorrelationLog2;
    while (correlation_log2 < kMaxCorrelationLog2 && (uint64_t{1} << correlation_log2) < 10 * correlations.size())
      ++correlation_log2;
  }
  const uint64_t total = filter_at + (correlation_log2 ? (uint64_t{1} << correlation_log2) / 8 : 0);
  std::vector<std::byte> out(total);
  std::byte* p = out.data();

  const uint64_t mask = slot_count - 1;
  for (size_t i = 0; i < streams.size(); ++i) {
    const acc& a = streams[i];
    const uint64_t h = hash(in.hash, a.stream);
    for (uint64_t s = h & mask;; s = (s + 1) & mask) {
      std::byte* slot = p + slots_at + s * kSlotSize;
      if (coding::get_u64(slot + 8) != 0) continue;
      coding::put_u64(slot, h);
      coding::put_u64(slot + 8, entry_off[i] + 1);
      break;
    }
    std::byte* e = p + entries_at + entry_off[i];
    coding::put_u64(e, a.first_version);
    coding::put_u64(e + 8, a.prev_position);
    coding::put_u64(e + 16, a.postings_index);
    coding::put_u32(e + 24, a.count);
    e[28] = static_cast<std::byte>(a.stream.size());
    e[29] = static_cast<std::byte>(a.integer ? 1 : 0);
    std::memcpy(e + kEntryFixed, a.stream.data(), a.stream.size());
  }
  // Counting sort by stream: each stream's offsets land together, in log
  // (= version) order.
  std::vector<uint64_t> cursor(streams.size());
  for (size_t i = 0; i < streams.size(); ++i) cursor[i] = streams[i].postings_index;
  for (const auto& [sid, off] : events) coding::put_u32(p + postings_at + 4 * cursor[sid]++, off);
  for (size_t i = 0; i < times.size(); ++i) {
    coding::put_u64(p + time_at + i * kTimeEntry, times[i].first);
    coding::put_u32(p + time_at + i * kTimeEntry + 8, times[i].second);
  }
  for (size_t i = 0; i < type_list.size(); ++i) coding::put_u32(p + summary_at + 4 * i, type_list[i]);
  {
    std::byte* ends = p + summary_at + pad8(4 * type_list.size());
    char* names = reinterpret_cast<char*>(ends + 4 * category_list.size());
    uint32_t end = 0;
    for (size_t i = 0; i < category_list.size(); ++i) {
      std::memcpy(names + end, category_list[i].data(), category_list[i].size());
      end += static_cast<uint32_t>(category_list[i].size());
      coding::put_u32(ends + 4 * i, end);
    }
  }

  if (correlation_log2) {
    const uint64_t mask = (uint64_t{1} << correlation_log2) - 1;
    for (uint64_t h : correlations)
      for (uint64_t i = 0; i < kCorrelationHashes; ++i) {
        const uint64_t b = correlation_bit(h, i) & mask;
        p[filter_at + b / 8] |= static_cast<std::byte>(1u << (b % 8));
      }
  }

  std::memcpy(p, kMagic, 8);
  coding::put_u32(p + 8, kFormatVersion);
  p[12] = static_cast<std::byte>(in.hash);
  coding::put_u64(p + 16, in.log_id);
  coding::put_u64(p + 24, seg.index());
  coding::put_u64(p + 32, f.first_sequence);
  coding::put_u64(p + 40, events.size());
  coding::put_u64(p + 48, streams.size());
  coding::put_u64(p + 56, slot_count);
  coding::put_u64(p + 64, entries_bytes);
  coding::put_u64(p + 72, times.size());
  coding::put_u64(p + 80, max_ts);
  coding::put_u64(p + 88, f.data_checksum);
  coding::put_u32(p + 104, static_cast<uint32_t>(type_list.size()));
  coding::put_u32(p + 108, static_cast<uint32_t>(category_list.size()));
  coding::put_u32(p + 112, static_cast<uint32_t>(category_bytes));
  p[116] = static_cast<std::byte>(flags);
  p[117] = static_cast<std::byte>(correlation_log2);
  p[118] = static_cast<std::byte>(correlation_log2 ? kCorrelationHashes : 0);
  coding::put_u64(p + 96, XXH3_64bits(p + kHeaderSize, total - kHeaderSize));
  coding::put_u64(p + 120, XXH3_64bits(p, 120));
  return out;
}

result<view> view::open(const std::byte* data, size_t size, const std::string& file,
                        uint64_t log_id, uint64_t segment_index, bool verify_body) {
  auto bad = [&](uint64_t off, const std::string& why) {
    return status(errc::corruption, file + " offset " + std::to_string(off) + ": " + why);
  };
  if (size < kHeaderSize) return bad(0, "index file is " + std::to_string(size) + " bytes, shorter than its header");
  if (std::memcmp(data, kMagic, 8) != 0) return bad(0, "not a segment index file (bad magic)");
  // Version 1 predates the summary, version 2 the correlation filter: a
  // filter could not use them, so they are treated as stale (derived data;
  // the writer rebuilds them at its next open).
  if (coding::get_u32(data + 8) < kFormatVersion)
    return bad(8, "segment index format version " + std::to_string(coding::get_u32(data + 8)) +
                      " is older than " + std::to_string(kFormatVersion) + " (stale, rebuilt)");
  if (coding::get_u32(data + 8) != kFormatVersion)
    return status(errc::newer_format, file + ": segment index format version " +
                                          std::to_string(coding::get_u32(data + 8)) +
                                          " is not supported");
  if (coding::get_u64(data + 120) != XXH3_64bits(data, 120)) return bad(120, "header checksum mismatch");
  view v;
  header& h = v.h_;
  h.hash = static_cast<uint8_t>(data[12]);
  h.log_id = coding::get_u64(data + 16);
  h.segment_index = coding::get_u64(data + 24);
  h.first_sequence = coding::get_u64(data + 32);
  h.event_count = coding::get_u64(data + 40);
  h.stream_count = coding::get_u64(data + 48);
  h.slot_count = coding::get_u64(data + 56);
  h.entries_bytes = coding::get_u64(data + 64);
  h.time_count = coding::get_u64(data + 72);
  h.max_ts_through = coding::get_u64(data + 80);
  h.data_checksum = coding::get_u64(data + 88);
  h.type_count = coding::get_u32(data + 104);
  h.category_count = coding::get_u32(data + 108);
  h.category_bytes = coding::get_u32(data + 112);
  h.summary_flags = static_cast<uint8_t>(data[116]);
  h.correlation_log2 = static_cast<uint8_t>(data[117]);
  h.correlation_hashes = static_cast<uint8_t>(data[118]);
  if (h.hash > 1) return bad(12, "unknown hash kind");
  if ((h.summary_flags & ~kKnownSummaryFlags) != 0 || data[119] != std::byte{0})
    return bad(116, "unknown summary flags");
  if (h.correlation_log2 == 0 ? h.correlation_hashes != 0
                              : (h.correlation_log2 < kMinCorrelationLog2 || h.correlation_log2 > kMaxCorrelationLog2 ||
                                 h.correlation_hashes == 0 || h.correlation_hashes > kMaxCorrelationHashes))
    return bad(117, "correlation filter size is invalid");
  // Caps first: they bound the summary's size arithmetic below.
  if (h.type_count > kMaxSummaryTypes || h.category_count > kMaxCategories ||
      h.category_bytes > kMaxCategoryBytes || h.category_bytes < h.category_count ||
      h.category_bytes > 255 * uint64_t{h.category_count} ||
      ((h.summary_flags & kAnyType) && h.type_count != 0) ||
      ((h.summary_flags & kAnyCategory) && h.category_count != 0))
    return bad(104, "summary sizes are inconsistent");
  if (h.log_id != log_id) return bad(16, "index file belongs to another log");
  if (h.segment_index != segment_index) return bad(24, "index file is for segment " + std::to_string(h.segment_index));
  // Sizes: each checked against the file before any arithmetic can overflow.
  // Entries are padded to 8 bytes, which keeps the postings (u32), the time
  // index and the summary lists after them aligned: a file that says
  // otherwise would have them read through misaligned pointers.
  const uint64_t limit = size;
  if (h.slot_count < 2 || (h.slot_count & (h.slot_count - 1)) != 0 || h.slot_count > limit / kSlotSize ||
      h.stream_count > h.slot_count / 2 || h.entries_bytes > limit || h.entries_bytes % 8 != 0 ||
      h.event_count > limit / 4 ||
      h.time_count > limit / kTimeEntry || h.stream_count > h.event_count)
    return bad(40, "index sizes are inconsistent");
  const uint64_t entries_at = kHeaderSize + h.slot_count * kSlotSize;
  const uint64_t postings_at = entries_at + h.entries_bytes;
  const uint64_t time_at = postings_at + pad8(h.event_count * 4);
  const uint64_t summary_at = time_at + h.time_count * kTimeEntry;  // <= 2 x limit: no overflow
  const uint64_t filter_at = summary_at + summary_size(h.type_count, h.category_count, h.category_bytes);
  const uint64_t filter_bytes = h.correlation_log2 ? (uint64_t{1} << h.correlation_log2) / 8 : 0;
  if (time_at > limit || summary_at > limit || filter_at + filter_bytes != size)
    return bad(40, "index sizes disagree with the file size " + std::to_string(size));
  if (verify_body && coding::get_u64(data + 96) != XXH3_64bits(data + kHeaderSize, size - kHeaderSize))
    return bad(kHeaderSize, "index body checksum mismatch");
  if (!verify_body) return v;  // header figures only: find() answers nothing
  // The summary's lists are binary-searched: their order and bounds are
  // checked here, once, so a lookup never trusts a byte it has not seen.
  const std::byte* types = data + summary_at;
  for (uint64_t i = 1; i < h.type_count; ++i)
    if (coding::get_u32(types + 4 * i) <= coding::get_u32(types + 4 * (i - 1)))
      return bad(summary_at + 4 * i, "summary types are not strictly ascending");
  for (uint64_t i = 4 * h.type_count; i < pad8(4 * h.type_count); ++i)
    if (types[i] != std::byte{0}) return bad(summary_at + i, "summary padding is not zero");
  const uint64_t ends_at = summary_at + pad8(4 * h.type_count);
  const uint64_t names_at = ends_at + 4 * uint64_t{h.category_count};
  std::string_view prev;
  for (uint64_t i = 0, begin = 0; i < h.category_count; ++i) {
    const uint64_t end = coding::get_u32(data + ends_at + 4 * i);
    if (end <= begin || end > h.category_bytes || end - begin > 255)
      return bad(ends_at + 4 * i, "summary category bounds are invalid");
    std::string_view c(reinterpret_cast<const char*>(data + names_at + begin), end - begin);
    if (c.find('-') != c.size() - 1)
      return bad(names_at + begin, "summary category does not end at its only '-'");
    if (i > 0 && c <= prev) return bad(names_at + begin, "summary categories are not strictly ascending");
    if (i + 1 == h.category_count && end != h.category_bytes)
      return bad(ends_at + 4 * i, "summary category bytes disagree with the header");
    prev = c;
    begin = end;
  }
  for (uint64_t i = names_at + h.category_bytes; i < filter_at; ++i)
    if (data[i] != std::byte{0}) return bad(i, "summary padding is not zero");
  v.data_ = data;
  v.size_ = size;
  v.slots_ = data + kHeaderSize;
  v.entries_ = data + entries_at;
  v.postings_ = reinterpret_cast<const uint32_t*>(data + postings_at);
  v.time_ = data + time_at;
  v.types_ = reinterpret_cast<const uint32_t*>(types);
  v.category_ends_ = data + ends_at;
  v.category_names_ = reinterpret_cast<const char*>(data + names_at);
  v.correlation_bits_ = data + filter_at;
  return v;
}

bool view::may_hold_type(uint32_t type) const {
  if (summary_flags() & kAnyType) return true;
  const std::span<const uint32_t> t = types();
  return std::binary_search(t.begin(), t.end(), type);
}

bool view::may_hold_correlation(const id128& id) const {
  if (!data_) return true;
  if (h_.correlation_log2 == 0) return false;  // no event here carries one
  const uint64_t h = correlation_hash(id);
  const uint64_t mask = (uint64_t{1} << h_.correlation_log2) - 1;
  for (uint64_t i = 0; i < h_.correlation_hashes; ++i) {
    const uint64_t b = correlation_bit(h, i) & mask;
    if (!(static_cast<uint8_t>(correlation_bits_[b / 8]) & (1u << (b % 8)))) return false;
  }
  return true;
}

std::string_view view::category(uint64_t i) const {
  if (i >= category_count()) return {};
  const uint32_t begin = i == 0 ? 0 : coding::get_u32(category_ends_ + 4 * (i - 1));
  const uint32_t end = coding::get_u32(category_ends_ + 4 * i);
  return {category_names_ + begin, end - begin};
}

uint64_t view::lower_bound_category(std::string_view prefix) const {
  uint64_t lo = 0, hi = category_count();
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (category(mid) < prefix) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

bool view::has_category(std::string_view c) const {
  const uint64_t i = lower_bound_category(c);
  return i < category_count() && category(i) == c;
}

bool view::find(std::string_view stream, stream_run& out) const {
  if (!data_) return false;
  const uint64_t hv = hash(static_cast<hash_kind>(h_.hash), stream);
  const uint64_t mask = h_.slot_count - 1;
  uint64_t s = hv & mask;
  for (uint64_t probes = 0; probes < h_.slot_count; ++probes, s = (s + 1) & mask) {
    const std::byte* slot = slots_ + s * kSlotSize;
    const uint64_t eoff = coding::get_u64(slot + 8);
    if (eoff == 0) return false;
    if (coding::get_u64(slot) != hv) continue;
    const uint64_t off = eoff - 1;
    if (off > h_.entries_bytes || h_.entries_bytes - off < kEntryFixed) return false;
    const std::byte* e = entries_ + off;
    const size_t len = static_cast<uint8_t>(e[28]);
    if (len != stream.size() || h_.entries_bytes - off - kEntryFixed < len) continue;
    if (std::memcmp(e + kEntryFixed, stream.data(), len) != 0) continue;
    const uint64_t pi = coding::get_u64(e + 16);
    const uint32_t count = coding::get_u32(e + 24);
    if (count == 0 || pi > h_.event_count || h_.event_count - pi < count) return false;
    out.first_version = coding::get_u64(e);
    out.prev_position = coding::get_u64(e + 8);
    out.count = count;
    out.offsets = postings_ + pi;
    return true;
  }
  return false;
}

void view::time_scan_range(uint64_t t, uint32_t& from, uint32_t& to) const {
  from = 0;
  to = 0;
  if (h_.time_count == 0) return;
  auto ts = [&](uint64_t i) { return coding::get_u64(time_ + i * kTimeEntry); };
  auto off = [&](uint64_t i) { return coding::get_u32(time_ + i * kTimeEntry + 8); };
  uint64_t lo = 0, hi = h_.time_count;  // first entry whose running max reaches t
  while (lo < hi) {
    uint64_t mid = (lo + hi) / 2;
    if (ts(mid) >= t) hi = mid;
    else lo = mid + 1;
  }
  if (lo == 0) {
    from = off(0);
    to = h_.time_count > 1 ? off(1) : 0;
  } else {
    from = off(lo - 1);
    to = lo < h_.time_count ? off(lo) + 1 : 0;
  }
}

uint64_t view::running_max_at_first_event() const {
  return h_.time_count ? coding::get_u64(time_) : h_.max_ts_through;
}

uint32_t view::stride_offset(uint64_t k) const {
  if (k >= h_.time_count) return 0;
  return coding::get_u32(time_ + k * kTimeEntry + 8);
}

}  // namespace varve::segment_index
