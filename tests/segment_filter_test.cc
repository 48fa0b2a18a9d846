// Event filters and the per-segment summary they are answered from
// (index/<segment>.sidx, FORMAT.md 5a): match_segment may say `none` only when
// a scan of the segment would find no matching event (soundness, checked
// against a brute-force scan of random logs), it says `none` wherever the
// summary allows (precision, against a model of the summary), and anything it
// cannot trust (no index, a damaged, stale or version-1 one, the tail, a list
// past its cap) is `maybe` until the writer rebuilds the file.
#include <xxhash.h>

#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "base/coding.h"
#include "engine/log_access.h"
#include "base/log_files.h"
#include "engine/segment_filter.h"
#include "engine/shared_log.h"
#include "index/segment_index.h"
#include "test_util.h"
#include "varve/admin.h"
#include "varve/event_filter.h"

using namespace varve;
using namespace varve_test;

namespace {

constexpr uint64_t kSeg = 64 * 1024;

struct notes : recovery_observer {
  std::mutex mu;
  std::vector<std::string> seen;
  void on_truncated(const std::string& file, uint64_t, uint64_t, const std::string& why) override {
    std::lock_guard<std::mutex> g(mu);
    seen.push_back(file + ": " + why);
  }
  bool any(std::string_view needle) {
    std::lock_guard<std::mutex> g(mu);
    for (const auto& s : seen)
      if (s.find(needle) != std::string::npos) return true;
    return false;
  }
};

// A stream to append to: its raw bytes, and whether it is an integer id.
struct stream_spec {
  std::string bytes;
  bool integer = false;
};

stream_spec int_stream(uint64_t v) {
  stream_spec s;
  s.integer = true;
  for (int i = 0; i < 8; ++i) s.bytes.push_back(static_cast<char>(v >> (56 - 8 * i)));
  return s;
}

result<append_result> append_one(event_log& log, const stream_spec& s, uint32_t type,
                                  std::span<const std::byte> payload, int count = 1) {
  std::vector<event_data> evs(count);
  for (auto& e : evs) {
    e.type = type;
    e.payload = payload;
  }
  const stream_id id = s.integer ? stream_id::from_u64([&] {
    uint64_t v = 0;
    for (char c : s.bytes) v = (v << 8) | static_cast<uint8_t>(c);
    return v;
  }())
                                 : stream_id(std::string_view(s.bytes));
  return log.append(id, expected_version::any(), evs);
}

// Every committed event, bucketed by segment.
std::map<uint64_t, std::vector<event_view>> events_by_segment(const event_log& log, uint64_t seg_bytes) {
  std::map<uint64_t, std::vector<event_view>> out;
  read_outcome all = read_all(log);
  EXPECT_OK(all.error);
  for (const event_view& v : all.events) out[v.position.value / seg_bytes].push_back(v);
  return out;
}

// The summary's answer, from the segment's events: what match_segment must
// say when no list is over its cap.
segment_match model_match(const std::vector<event_view>& evs, const event_filter& f) {
  if (f.empty()) return segment_match::maybe;
  std::set<uint32_t> types;
  std::set<std::string> categories, streams;
  bool uncategorised = false, integers = false;
  for (const event_view& e : evs) {
    types.insert(e.type);
    streams.insert(std::string(e.stream));
    const std::string_view c = segment_index::category_of(e.stream, e.stream_is_integer);
    if (e.stream_is_integer) integers = true;
    else if (c.empty()) uncategorised = true;
    else categories.insert(std::string(c));
  }
  if (!f.types.empty()) {
    bool any = false;
    for (uint32_t t : f.types) any |= types.count(t) > 0;
    if (!any) return segment_match::none;
  }
  if (f.streams.empty() && f.stream_prefixes.empty()) return segment_match::maybe;
  for (const auto& s : f.streams)
    if (streams.count(s)) return segment_match::maybe;
  for (const auto& p : f.stream_prefixes) {
    if (p.empty() || (integers && p.size() <= 8)) return segment_match::maybe;
    const size_t dash = p.find('-');
    if (dash != std::string::npos) {
      if (categories.count(p.substr(0, dash + 1))) return segment_match::maybe;
    } else {
      if (uncategorised) return segment_match::maybe;
      for (const auto& c : categories)
        if (std::string_view(c).starts_with(p)) return segment_match::maybe;
    }
  }
  return segment_match::none;
}

const char* name(segment_match m) { return m == segment_match::none ? "none" : "maybe"; }

std::string describe(const event_filter& f) {
  std::string s = "types{";
  for (uint32_t t : f.types) s += std::to_string(t) + ",";
  s += "} streams{";
  for (const auto& x : f.streams) s += hex(std::as_bytes(std::span(x))) + ",";
  s += "} prefixes{";
  for (const auto& x : f.stream_prefixes) s += hex(std::as_bytes(std::span(x))) + ",";
  return s + "}";
}

std::string sidx(const std::string& dir, uint64_t k) {
  return dir + "/" + log_files::kIndexDir + "/" + log_files::sidx_name(k);
}

// The bytes the version-1 code wrote for the same segment: the v2 file
// without its summary, version 1, reserved header bytes zero.
std::vector<uint8_t> as_version_1(std::vector<uint8_t> v2) {
  const uint32_t types = coding::get_u32(reinterpret_cast<const std::byte*>(v2.data() + 104));
  const uint32_t cats = coding::get_u32(reinterpret_cast<const std::byte*>(v2.data() + 108));
  const uint32_t cat_bytes = coding::get_u32(reinterpret_cast<const std::byte*>(v2.data() + 112));
  auto pad8 = [](uint64_t n) { return (n + 7) & ~uint64_t{7}; };
  v2.resize(v2.size() - pad8(4 * uint64_t{types}) - pad8(4 * uint64_t{cats} + cat_bytes));
  auto* p = reinterpret_cast<std::byte*>(v2.data());
  coding::put_u32(p + 8, 1);
  std::memset(p + 104, 0, 16);
  coding::put_u64(p + 96, XXH3_64bits(p + 128, v2.size() - 128));
  coding::put_u64(p + 120, XXH3_64bits(p, 120));
  return v2;
}

// Rewrites both checksums of an index file held in memory (after surgery).
void fix_checksums(std::vector<uint8_t>& b) {
  auto* p = reinterpret_cast<std::byte*>(b.data());
  coding::put_u64(p + 96, XXH3_64bits(p + 128, b.size() - 128));
  coding::put_u64(p + 120, XXH3_64bits(p, 120));
}

void write_file(const std::string& path, const std::vector<uint8_t>& b) {
  fs::resize_file(path, 0);
  write_at(path, 0, b.data(), b.size());
  fs::resize_file(path, b.size());
}

// ---------------------------------------------------------------------------

TEST(EventFilter, Matches) {
  event_view e;
  e.stream = "order-12";
  e.type = 7;
  event_filter f;
  EXPECT_TRUE(f.empty());
  EXPECT_TRUE(f.matches(e));
  f.types = {3, 7};
  EXPECT_TRUE(f.matches(e));
  f.types = {3};
  EXPECT_FALSE(f.matches(e));
  f.types = {};
  f.stream_prefixes = {"order-"};
  EXPECT_TRUE(f.matches(e));
  f.stream_prefixes = {"ord"};
  EXPECT_TRUE(f.matches(e));
  f.stream_prefixes = {"order-12"};  // an exact id is a prefix of itself
  EXPECT_TRUE(f.matches(e));
  f.stream_prefixes = {"order-123", "user-"};
  EXPECT_FALSE(f.matches(e));
  f.stream_prefixes = {""};
  EXPECT_TRUE(f.matches(e));
  // Exact ids and prefixes: either one passes.
  f.stream_prefixes = {"user-"};
  f.streams = {"order-1"};
  EXPECT_FALSE(f.matches(e));
  f.streams = {"order-1", "order-12"};
  EXPECT_TRUE(f.matches(e));
  f.stream_prefixes = {};
  EXPECT_TRUE(f.matches(e));
  // Type and stream must both pass.
  f.types = {8};
  EXPECT_FALSE(f.matches(e));
  f.types = {8, 7};
  EXPECT_TRUE(f.matches(e));
  // Integer ids: by their 8 big-endian bytes.
  const stream_spec n = int_stream(0x0102030405060708ull);
  event_view i;
  i.stream = n.bytes;
  i.stream_is_integer = true;
  event_filter g;
  g.stream_prefixes = {std::string("\x01\x02", 2)};
  EXPECT_TRUE(g.matches(i));
  g.stream_prefixes = {std::string("\x02", 1)};
  EXPECT_FALSE(g.matches(i));
  g.streams = {n.bytes};
  EXPECT_TRUE(g.matches(i));
}

TEST(SegmentSummary, Categories) {
  EXPECT_EQ(segment_index::category_of("order-123", false), "order-");
  EXPECT_EQ(segment_index::category_of("a-b-c", false), "a-");
  EXPECT_EQ(segment_index::category_of("-x", false), "-");
  EXPECT_EQ(segment_index::category_of("order", false), "");
  EXPECT_EQ(segment_index::category_of("ab-c", true), "");
}

// ---------------------------------------------------------------------------
// Random logs, random filters.

struct random_log {
  temp_dir d;
  std::string dir;
  std::vector<stream_spec> known;  // every stream written
  uint64_t segments = 0;           // segment files (the last is the tail)

  explicit random_log(uint64_t seed) {
    dir = d.sub("log");
    std::mt19937_64 rng(seed);
    log_options o;
    o.segment_bytes = kSeg;
    auto log = event_log::create(dir, o);
    EXPECT_OK(log);
    if (!log) return;
    std::vector<std::byte> payload(64);
    std::vector<int> kinds;
    std::vector<uint32_t> types;
    const int events = 6000 + int(rng() % 4000);
    for (int i = 0, next_phase = 0; i < events;) {
      if (i >= next_phase) {
        next_phase = i + 250;
        // A phase: a few kinds of stream id and a few types, so segments differ.
        kinds.clear();
        for (int k = 0; k < 8; ++k)
          if (rng() % 3 == 0) kinds.push_back(k);
        if (kinds.empty()) kinds.push_back(int(rng() % 8));
        types.clear();
        for (int t = 0, n = 1 + int(rng() % 3); t < n; ++t) types.push_back(1 + uint32_t(rng() % 30));
      }
      const int kind = kinds[rng() % kinds.size()];
      const uint64_t n = rng() % 20;
      stream_spec s;
      switch (kind) {
        case 0: s.bytes = "order-" + std::to_string(n); break;
        case 1: s.bytes = "user-" + std::to_string(n); break;
        case 2: s.bytes = "ord-" + std::to_string(n); break;
        case 3: s.bytes = "a-b-" + std::to_string(n); break;
        case 4: s.bytes = "order" + std::to_string(n); break;  // no '-': uncategorised
        case 5: s.bytes = "-" + std::to_string(n); break;
        case 6: s = int_stream(n); break;
        default: s = int_stream(0x2d2d2d2d00000000ull | n); break;  // "----" bytes
      }
      const int count = 1 + int(rng() % 3);
      auto r = append_one(*log.value(), s, types[rng() % types.size()],
                          std::span(payload).first(rng() % payload.size()), count);
      EXPECT_OK(r);
      if (!r) return;
      known.push_back(s);
      i += count;
    }
    EXPECT_OK(log.value()->close());
    segments = list_segments(dir).size();
  }
};

event_filter random_filter(std::mt19937_64& rng, const std::vector<stream_spec>& known) {
  static const char* const kPrefixes[] = {"order-", "ord", "or", "o", "user-", "us", "ord-", "a-",
                                          "a-b-", "a", "-", "order", "order1", "zz", "zz-", "-1",
                                          "user-1", "order-1", "a-c-", "u"};
  event_filter f;
  if (rng() % 3 != 0)
    for (int i = 0, n = 1 + int(rng() % 3); i < n; ++i) f.types.push_back(1 + uint32_t(rng() % 34));
  if (rng() % 2 == 0)
    for (int i = 0, n = 1 + int(rng() % 2); i < n; ++i) {
      if (rng() % 3 == 0) f.streams.push_back("nobody-" + std::to_string(rng() % 5));
      else f.streams.push_back(known[rng() % known.size()].bytes);
    }
  if (rng() % 2 == 0)
    for (int i = 0, n = 1 + int(rng() % 2); i < n; ++i) {
      switch (rng() % 5) {
        case 0: {  // a prefix of a real id, integer ones included
          const std::string& b = known[rng() % known.size()].bytes;
          f.stream_prefixes.push_back(b.substr(0, 1 + rng() % b.size()));
          break;
        }
        case 1:
          f.stream_prefixes.push_back(rng() % 8 == 0 ? std::string() : std::string(1 + rng() % 9, '\0'));
          break;
        default: f.stream_prefixes.push_back(kPrefixes[rng() % std::size(kPrefixes)]); break;
      }
    }
  return f;
}

class SegmentFilterProperty : public testing::TestWithParam<int> {};

TEST_P(SegmentFilterProperty, NoneIsSoundAndAsPreciseAsTheSummary) {
  random_log rl(GetParam());
  ASSERT_FALSE(HasFailure());
  ASSERT_GE(rl.segments, 5u);
  log_options o;
  o.segment_bytes = kSeg;
  auto ro = event_log::open_read_only(rl.dir, o);
  ASSERT_OK(ro);
  detail::shared_log& sh = *detail::log_access::shared(*ro.value());
  auto by_seg = events_by_segment(*ro.value(), kSeg);
  const uint64_t tail = rl.segments - 1;
  std::mt19937_64 rng(GetParam() * 7919);
  uint64_t nones = 0, checks = 0;
  for (int round = 0; round < int(scaled(300)); ++round) {
    const event_filter f = random_filter(rng, rl.known);
    for (uint64_t k = 0; k < rl.segments + 1; ++k) {  // one past the end too
      const segment_match got = match_segment(sh, k, f);
      const auto& evs = by_seg[k];
      bool found = false;
      for (const event_view& e : evs) found |= f.matches(e);
      ++checks;
      if (got == segment_match::none) {
        ++nones;
        ASSERT_FALSE(found) << "segment " << k << " said none but holds a match; " << describe(f);
      }
      if (k >= tail) {
        ASSERT_EQ(got, segment_match::maybe) << "unsealed segment " << k;
        continue;
      }
      // No list is over its cap in these logs: the answer is exactly the summary's.
      ASSERT_STREQ(name(got), name(model_match(evs, f))) << "segment " << k << "; " << describe(f);
    }
  }
  // The filters are chosen so that skipping happens, not only "maybe".
  EXPECT_GT(nones, checks / 20) << nones << " of " << checks;
  EXPECT_LT(nones, checks) << nones << " of " << checks;
}

INSTANTIATE_TEST_SUITE_P(Seeds, SegmentFilterProperty, testing::Range(1, 6));

// ---------------------------------------------------------------------------
// A rare type: one event in segment 17 of 50 sealed ones.

struct rare_log {
  temp_dir d;
  std::string dir;
  static constexpr uint64_t kRareSegment = 17, kSealed = 50;
  explicit rare_log() {
    dir = d.sub("log");
    log_options o;
    o.segment_bytes = kSeg;
    auto log = event_log::create(dir, o);
    EXPECT_OK(log);
    if (!log) return;
    std::vector<std::byte> payload(48);
    bool rare_done = false;
    for (uint64_t i = 0;; ++i) {
      stream_spec s{"order-" + std::to_string(i % 40), false};
      auto r = append_one(*log.value(), s, 1 + uint32_t(i % 5), payload);
      EXPECT_OK(r);
      if (!r) return;
      const uint64_t seg = r.value().first.value / kSeg;
      if (seg == kRareSegment && !rare_done) {
        auto x = append_one(*log.value(), {"rare-1", false}, 999, payload);
        EXPECT_OK(x);
        EXPECT_EQ(x.value().first.value / kSeg, kRareSegment);
        rare_done = true;
      }
      if (seg == kSealed) break;
    }
    EXPECT_OK(log.value()->close());
  }
};

std::vector<segment_match> matches_of(const std::string& dir, const event_filter& f,
                                      recovery_observer* obs = nullptr) {
  log_options o;
  o.segment_bytes = kSeg;
  o.observer = obs;
  auto ro = event_log::open_read_only(dir, o);
  EXPECT_OK(ro);
  std::vector<segment_match> out;
  if (!ro) return out;
  detail::shared_log& sh = *detail::log_access::shared(*ro.value());
  for (uint64_t k = 0; k < rare_log::kSealed; ++k) out.push_back(match_segment(sh, k, f));
  return out;
}

size_t count(const std::vector<segment_match>& m, segment_match want) {
  return static_cast<size_t>(std::count(m.begin(), m.end(), want));
}

TEST(SegmentFilter, ARareTypeIsFoundInOneSegmentOfFifty) {
  rare_log rl;
  ASSERT_FALSE(HasFailure());
  for (const event_filter& f : {event_filter{{999}, {}, {}, {}}, event_filter{{}, {"rare-"}, {}, {}},
                                event_filter{{}, {"ra"}, {}, {}}, event_filter{{}, {}, {"rare-1"}, {}},
                                event_filter{{999, 12345}, {"rare-", "zz-"}, {"nobody"}, {}}}) {
    const auto m = matches_of(rl.dir, f);
    ASSERT_EQ(m.size(), rare_log::kSealed);
    EXPECT_EQ(count(m, segment_match::none), rare_log::kSealed - 1) << describe(f);
    EXPECT_EQ(m[rare_log::kRareSegment], segment_match::maybe) << describe(f);
  }
  // A wanted type with an unwanted stream (and the reverse) matches nothing.
  EXPECT_EQ(count(matches_of(rl.dir, {{999}, {"order-"}, {}, {}}), segment_match::none), rare_log::kSealed - 1);
  EXPECT_EQ(count(matches_of(rl.dir, {{1}, {"rare-"}, {}, {}}), segment_match::none), rare_log::kSealed - 1);
  // Common types and categories are everywhere; an empty filter wants all.
  EXPECT_EQ(count(matches_of(rl.dir, {{3}, {}, {}, {}}), segment_match::maybe), rare_log::kSealed);
  EXPECT_EQ(count(matches_of(rl.dir, {{}, {"order-"}, {}, {}}), segment_match::maybe), rare_log::kSealed);
  EXPECT_EQ(count(matches_of(rl.dir, {}), segment_match::maybe), rare_log::kSealed);
  // Nothing wanted exists at all.
  EXPECT_EQ(count(matches_of(rl.dir, {{77}, {}, {}, {}}), segment_match::none), rare_log::kSealed);
  EXPECT_EQ(count(matches_of(rl.dir, {{}, {"user-", "orders", "o-"}, {"order-40"}, {}}), segment_match::none),
            rare_log::kSealed);
}

TEST(SegmentFilter, TheWritersSealedSegmentsAnswerAndItsTailIsMaybe) {
  rare_log rl;
  ASSERT_FALSE(HasFailure());
  log_options o;
  o.segment_bytes = kSeg;
  auto w = event_log::open(rl.dir, o);
  ASSERT_OK(w);
  detail::shared_log& sh = *detail::log_access::shared(*w.value());
  const event_filter f{{999}, {}, {}, {}};
  uint64_t nones = 0;
  for (uint64_t k = 0; k < rare_log::kSealed; ++k) nones += match_segment(sh, k, f) == segment_match::none;
  EXPECT_EQ(nones, rare_log::kSealed - 1);
  EXPECT_EQ(match_segment(sh, rare_log::kSealed, f), segment_match::maybe);
  EXPECT_EQ(match_segment(sh, rare_log::kSealed + 1, f), segment_match::maybe);
  // Segments sealed by this writer answer once their index is written
  // (closing drains the sealer; a read-only open then sees them).
  std::vector<std::byte> payload(48);
  for (uint64_t i = 0;; ++i) {
    auto r = append_one(*w.value(), {"order-1", false}, 1, payload);
    ASSERT_OK(r);
    if (r.value().first.value / kSeg == rare_log::kSealed + 3) break;
  }
  ASSERT_OK(w.value()->close());
  w.value().reset();
  auto ro = event_log::open_read_only(rl.dir, o);
  ASSERT_OK(ro);
  detail::shared_log& rsh = *detail::log_access::shared(*ro.value());
  for (uint64_t k = rare_log::kSealed; k < rare_log::kSealed + 3; ++k)
    EXPECT_EQ(match_segment(rsh, k, f), segment_match::none) << k;
  EXPECT_EQ(match_segment(rsh, rare_log::kSealed + 3, f), segment_match::maybe);
}

// ---------------------------------------------------------------------------
// Correlation ids (issue 19.7): each sealed segment's index holds a Bloom
// filter of them, so a filtered read of one correlation id reads the segments
// that may hold it, never misses one that does.

id128 id_of(uint64_t k) {
  id128 id;
  for (int i = 0; i < 8; ++i) id.bytes[i] = static_cast<uint8_t>(k >> (8 * i));
  id.bytes[15] = 0x5a;
  return id;
}

TEST(CorrelationFilter, AFilteredReadFindsEveryEventOfAnIdAndSkipsSegmentsWithout) {
  temp_dir d;
  const std::string dir = d.sub("log");
  log_options o;
  o.segment_bytes = kSeg;
  std::mt19937_64 rng(1907);
  // Commands: each a correlation id with 1-4 events over 1-2 streams; about
  // a fifth of the events carry none. Ids 0..: one id per command.
  std::map<uint64_t, std::vector<uint64_t>> by_id;  // id -> sequences
  uint64_t commands = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, o));
    std::vector<std::byte> payload(60);
    for (;;) {
      const bool has = rng() % 5 != 0;
      const id128 cid = id_of(commands);
      const int n = 1 + int(rng() % 4);
      std::vector<event_data> evs(n);
      for (auto& e : evs) {
        e.type = 1 + uint32_t(rng() % 3);
        e.payload = payload;
        e.correlation_id = has ? &cid : nullptr;
      }
      const std::string s = "cart-" + std::to_string(rng() % 50);
      ASSERT_OK_AND_ASSIGN(append_result r, log->append(stream_id(std::string_view(s)), expected_version::any(), evs));
      if (has)
        for (int i = 0; i < n; ++i) by_id[commands].push_back(r.first_sequence.value + i);
      ++commands;
      if (r.first.value / kSeg >= 30) break;
    }
    ASSERT_OK(log->close());  // the sealer has indexed every sealed segment
  }
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(dir, o));
  detail::shared_log& sh = *detail::log_access::shared(*ro);
  auto by_seg = events_by_segment(*ro, kSeg);
  uint64_t skipped = 0, sealed_checks = 0, false_maybes = 0;
  for (uint64_t c = 0; c < commands; c += 1 + rng() % 7) {
    event_filter f;
    f.correlation_ids.push_back(id_of(c));
    // Soundness and precision per sealed segment.
    for (uint64_t k = 0; k < 30; ++k) {
      bool holds = false;
      for (const event_view& e : by_seg[k]) holds |= f.matches(e);
      const segment_match m = match_segment(sh, k, f);
      if (holds) {
        ASSERT_EQ(m, segment_match::maybe) << "segment " << k << " holds id " << c;
      }
      ++sealed_checks;
      skipped += m == segment_match::none;
      false_maybes += !holds && m == segment_match::maybe;
    }
    // The filtered reader returns exactly the id's events, in log order.
    log_reader r = ro->read(position{}, f);
    std::vector<uint64_t> got;
    event_view v;
    for (;;) {
      ASSERT_OK_AND_ASSIGN(bool more, r.next(v));
      if (!more) break;
      ASSERT_TRUE(v.correlation_id && *v.correlation_id == id_of(c));
      got.push_back(v.sequence.value);
    }
    EXPECT_EQ(got, by_id[c]) << "correlation id " << c;
  }
  // An id that no event carries: every sealed segment is skipped (up to the
  // filter's false positives), the tail is read.
  event_filter nobody;
  nobody.correlation_ids.push_back(id_of(1u << 30));
  uint64_t nones = 0;
  for (uint64_t k = 0; k < 30; ++k) nones += match_segment(sh, k, nobody) == segment_match::none;
  EXPECT_GE(nones, 29u);
  log_reader r = ro->read(position{}, nobody);
  event_view v;
  ASSERT_OK_AND_ASSIGN(bool more, r.next(v));
  EXPECT_FALSE(more);
  // The Bloom filters are sized for about 1 % false "maybe".
  EXPECT_GT(skipped, sealed_checks * 9 / 10) << skipped << " of " << sealed_checks;
  EXPECT_LT(false_maybes, sealed_checks / 30) << false_maybes << " of " << sealed_checks;
}

TEST(CorrelationFilter, ASegmentWithoutCorrelationIdsHasNoFilterAndRulesOutEveryId) {
  rare_log rl;  // no event carries a correlation id
  ASSERT_FALSE(HasFailure());
  const auto good = read_file(sidx(rl.dir, 3));
  EXPECT_EQ(good[117], 0) << "no filter bytes for a segment without correlation ids";
  event_filter f;
  f.correlation_ids.push_back(id_of(7));
  EXPECT_EQ(count(matches_of(rl.dir, f), segment_match::none), rare_log::kSealed);
  // Combined with a type that is there: still none (both must hold).
  f.types.push_back(1);
  EXPECT_EQ(count(matches_of(rl.dir, f), segment_match::none), rare_log::kSealed);
}

// ---------------------------------------------------------------------------
// Index files that cannot be trusted: never `none`, and rebuilt.

TEST(SegmentFilter, MissingDamagedOrStaleIndexSaysMaybeAndIsRebuilt) {
  rare_log rl;
  ASSERT_FALSE(HasFailure());
  const event_filter f{{999}, {}, {}, {}};
  const std::string ix5 = sidx(rl.dir, 5), ix6 = sidx(rl.dir, 6), ix7 = sidx(rl.dir, 7);
  const auto orig5 = read_file(ix5), orig6 = read_file(ix6), orig7 = read_file(ix7);
  // 5: missing. 6: a flipped byte in the summary (the last type listed).
  // 7: a summary whose types are out of order, with both checksums right.
  fs::remove(ix5);
  flip_byte(ix6, orig6.size() - 8, 0x01);
  {
    auto b = orig7;
    const auto* p = reinterpret_cast<const std::byte*>(b.data());
    const uint32_t types = coding::get_u32(p + 104);
    ASSERT_GE(types, 2u);
    const size_t cats_and_names = ((4 * size_t{coding::get_u32(p + 108)} + coding::get_u32(p + 112)) + 7) & ~size_t{7};
    const size_t at = b.size() - cats_and_names - ((4 * size_t{types} + 7) & ~size_t{7});
    std::swap_ranges(b.begin() + at, b.begin() + at + 4, b.begin() + at + 4);
    fix_checksums(b);
    write_file(ix7, b);
  }
  notes seen;
  auto m = matches_of(rl.dir, f, &seen);
  EXPECT_EQ(m[5], segment_match::maybe);
  EXPECT_EQ(m[6], segment_match::maybe);
  EXPECT_EQ(m[7], segment_match::maybe);
  EXPECT_EQ(count(m, segment_match::none), rare_log::kSealed - 4);
  EXPECT_TRUE(seen.any("not strictly ascending")) << "the bad order is named";
  EXPECT_TRUE(seen.any(log_files::sidx_name(6)));
  // verify names both problems; the writer rebuilds all three.
  auto rep = verify_index(rl.dir);
  ASSERT_OK(rep);
  EXPECT_EQ(rep.value().problems.size(), 3u);
  {
    log_options o;
    o.segment_bytes = kSeg;
    auto w = event_log::open(rl.dir, o);
    ASSERT_OK(w);
    // The header-only check at open finds 5; 6 and 7 (body damage) are found
    // by a reader mapping them, and rebuilt when the writer closes.
    detail::shared_log& sh = *detail::log_access::shared(*w.value());
    EXPECT_EQ(match_segment(sh, 6, f), segment_match::maybe);
    EXPECT_EQ(match_segment(sh, 7, f), segment_match::maybe);
    ASSERT_OK(w.value()->close());
  }
  EXPECT_EQ(read_file(ix5), orig5);
  EXPECT_EQ(read_file(ix6), orig6);
  EXPECT_EQ(read_file(ix7), orig7);
  EXPECT_EQ(count(matches_of(rl.dir, f), segment_match::none), rare_log::kSealed - 1);
}

TEST(SegmentFilter, AVersion1LogKeepsWorkingAndItsIndexFilesAreRebuilt) {
  rare_log rl;
  ASSERT_FALSE(HasFailure());
  std::vector<std::vector<uint8_t>> v2;
  for (uint64_t k = 0; k < rare_log::kSealed; ++k) {
    v2.push_back(read_file(sidx(rl.dir, k)));
    write_file(sidx(rl.dir, k), as_version_1(v2.back()));
  }
  const event_filter f{{999}, {}, {}, {}};
  // What the old code wrote for segment 0 is still readable as such: a v1
  // file is refused as stale (corruption), never as a newer format.
  {
    const auto b = read_file(sidx(rl.dir, 0));
    auto v = segment_index::view::open(reinterpret_cast<const std::byte*>(b.data()), b.size(), "t",
                                       coding::get_u64(reinterpret_cast<const std::byte*>(b.data() + 16)), 0);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.error().code(), errc::corruption);
    EXPECT_NE(v.error().to_string().find("older"), std::string::npos) << v.error().to_string();
  }
  notes seen;
  auto m = matches_of(rl.dir, f, &seen);
  EXPECT_EQ(count(m, segment_match::maybe), rare_log::kSealed);
  auto rep = verify_index(rl.dir);
  ASSERT_OK(rep);
  EXPECT_EQ(rep.value().problems.size(), rare_log::kSealed);
  // Reads are unaffected (the back-chain stands in for the index).
  log_options o;
  o.segment_bytes = kSeg;
  {
    auto ro = event_log::open_read_only(rl.dir, o);
    ASSERT_OK(ro);
    auto r = ro.value()->read_stream("rare-1");
    ASSERT_OK(r);
    event_view v;
    auto more = r.value().next(v);
    ASSERT_OK(more);
    ASSERT_TRUE(*more);
    EXPECT_EQ(v.type, 999u);
  }
  // A writer's open rebuilds every one of them, in order.
  {
    notes rebuilt;
    o.observer = &rebuilt;
    auto w = event_log::open(rl.dir, o);
    ASSERT_OK(w);
    ASSERT_OK(w.value()->close());
    EXPECT_TRUE(rebuilt.any("rebuilt"));
  }
  for (uint64_t k = 0; k < rare_log::kSealed; ++k) EXPECT_EQ(read_file(sidx(rl.dir, k)), v2[k]) << k;
  EXPECT_EQ(count(matches_of(rl.dir, f), segment_match::none), rare_log::kSealed - 1);
  rep = verify_index(rl.dir);
  ASSERT_OK(rep);
  EXPECT_TRUE(rep.value().problems.empty());
  // `varve index rebuild` gives the same bytes.
  for (uint64_t k = 0; k < rare_log::kSealed; ++k) write_file(sidx(rl.dir, k), as_version_1(v2[k]));
  ASSERT_OK(rebuild_index(rl.dir));
  for (uint64_t k = 0; k < rare_log::kSealed; ++k) EXPECT_EQ(read_file(sidx(rl.dir, k)), v2[k]) << k;
}

// ---------------------------------------------------------------------------
// Caps: past them a list is dropped and its flag answers "maybe".

struct capped_log {
  temp_dir d;
  std::string dir;
  static constexpr uint64_t kBigSeg = 1 << 20;
  // Segment 0 gets the given streams and types; then one more segment starts
  // so that segment 0 is sealed.
  capped_log(const std::vector<stream_spec>& streams, const std::vector<uint32_t>& types) {
    dir = d.sub("log");
    log_options o;
    o.segment_bytes = kBigSeg;
    auto log = event_log::create(dir, o);
    EXPECT_OK(log);
    if (!log) return;
    const size_t n = std::max(streams.size(), types.size());
    for (size_t i = 0; i < n; ++i) {
      auto r = append_one(*log.value(), streams[i % streams.size()], types[i % types.size()], {});
      EXPECT_OK(r);
      if (!r) return;
      EXPECT_EQ(r.value().first.value / kBigSeg, 0u);
    }
    // One event too big for what is left of segment 0 (it holds at least one
    // event) but not for an empty segment: segment 0 is sealed, holding only
    // what the test put there.
    std::vector<std::byte> payload(kBigSeg - 300);
    auto big = append_one(*log.value(), {"filler", false}, 1, payload);
    EXPECT_OK(big);
    if (big) {
      EXPECT_EQ(big.value().first.value / kBigSeg, 1u);
    }
    EXPECT_OK(log.value()->close());
  }
  segment_match match(const event_filter& f, uint8_t* flags = nullptr) {
    log_options o;
    o.segment_bytes = kBigSeg;
    auto ro = event_log::open_read_only(dir, o);
    EXPECT_OK(ro);
    if (!ro) return segment_match::maybe;
    detail::shared_log& sh = *detail::log_access::shared(*ro.value());
    auto seg = sh.segments.get(0);
    EXPECT_OK(seg);
    const segment_index::view* ix = sh.indexes.get(*seg.value());
    EXPECT_NE(ix, nullptr);
    if (flags && ix) *flags = ix->summary_flags();
    return match_segment(sh, 0, f);
  }
};

TEST(SegmentFilter, FiveThousandTypesMeanAnyType) {
  std::vector<uint32_t> types;
  for (uint32_t t = 1; t <= 5000; ++t) types.push_back(t * 3);
  capped_log c({{"order-1", false}}, types);
  ASSERT_FALSE(HasFailure());
  uint8_t flags = 0;
  EXPECT_EQ(c.match({{1}, {}, {}, {}}, &flags), segment_match::maybe);  // never written, but not listed
  EXPECT_EQ(flags & segment_index::kAnyType, segment_index::kAnyType);
  // The stream side still answers.
  EXPECT_EQ(c.match({{1}, {"user-"}, {}, {}}), segment_match::none);
  // Exactly at the cap the list is kept.
  capped_log at({{"order-1", false}}, std::vector<uint32_t>(types.begin(), types.begin() + 4096));
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(at.match({{1}, {}, {}, {}}, &flags), segment_match::none);
  EXPECT_EQ(flags & segment_index::kAnyType, 0);
  EXPECT_EQ(at.match({{3 * 4096}, {}, {}, {}}), segment_match::maybe);
  EXPECT_EQ(at.match({{3 * 4097}, {}, {}, {}}), segment_match::none);
}

TEST(SegmentFilter, LargeTypeIdsAreListedInOrder) {
  // Ids past the builder's bitmap of small ones take its other path.
  capped_log c({{"order-1", false}}, {0xFFFFFFFEu, 5, 70000, 65535, 65536, 0, 70000, 5});
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(c.match({{70000}, {}, {}, {}}), segment_match::maybe);
  EXPECT_EQ(c.match({{0}, {}, {}, {}}), segment_match::maybe);
  EXPECT_EQ(c.match({{0xFFFFFFFEu}, {}, {}, {}}), segment_match::maybe);
  EXPECT_EQ(c.match({{70001, 65534, 0xFFFFFFFFu, 1}, {}, {}, {}}), segment_match::none);
  const auto b = read_file(sidx(c.dir, 0));
  auto v = segment_index::view::open(reinterpret_cast<const std::byte*>(b.data()), b.size(), "t",
                                     coding::get_u64(reinterpret_cast<const std::byte*>(b.data() + 16)), 0);
  ASSERT_OK(v);
  const auto t = v.value().types();
  EXPECT_EQ(std::vector<uint32_t>(t.begin(), t.end()),
            (std::vector<uint32_t>{0, 5, 65535, 65536, 70000, 0xFFFFFFFEu}));
  // Over the cap with large ids too.
  std::vector<uint32_t> many;
  for (uint32_t i = 0; i < 4097; ++i) many.push_back(i % 2 ? 100000 + i : i);
  capped_log m({{"order-1", false}}, many);
  ASSERT_FALSE(HasFailure());
  uint8_t flags = 0;
  EXPECT_EQ(m.match({{99999}, {}, {}, {}}, &flags), segment_match::maybe);
  EXPECT_EQ(flags & segment_index::kAnyType, segment_index::kAnyType);
}

TEST(SegmentFilter, TooManyCategoriesMeanAnyCategory) {
  std::vector<stream_spec> many;
  for (int i = 0; i < 1100; ++i) many.push_back({"c" + std::to_string(i) + "-x", false});
  capped_log c(many, {5});
  ASSERT_FALSE(HasFailure());
  uint8_t flags = 0;
  EXPECT_EQ(c.match({{}, {"zz-"}, {}, {}}, &flags), segment_match::maybe);
  EXPECT_EQ(flags & segment_index::kAnyCategory, segment_index::kAnyCategory);
  EXPECT_EQ(c.match({{}, {}, {"c7-y"}, {}}), segment_match::none);  // exact ids: from the slots
  EXPECT_EQ(c.match({{6}, {"zz-"}, {}, {}}), segment_match::none);   // the type side still answers
  // Few categories but long ones: over 64 KiB of names.
  std::vector<stream_spec> longs;
  for (int i = 0; i < 300; ++i) longs.push_back({std::to_string(i) + std::string(240, 'q') + "-1", false});
  capped_log l(longs, {5});
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(l.match({{}, {"zz-"}, {}, {}}, &flags), segment_match::maybe);
  EXPECT_EQ(flags & segment_index::kAnyCategory, segment_index::kAnyCategory);
  // Under both caps: listed.
  many.resize(1024);
  capped_log ok(many, {5});
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(ok.match({{}, {"zz-"}, {}, {}}, &flags), segment_match::none);
  EXPECT_EQ(flags & segment_index::kAnyCategory, 0);
  EXPECT_EQ(ok.match({{}, {"c1023-"}, {}, {}}), segment_match::maybe);
  EXPECT_EQ(ok.match({{}, {"c1024-"}, {}, {}}), segment_match::none);
  EXPECT_EQ(ok.match({{}, {"c10"}, {}, {}}), segment_match::maybe);
  EXPECT_EQ(ok.match({{}, {"d"}, {}, {}}), segment_match::none);
}

TEST(SegmentFilter, UncategorisedAndIntegerIdsAreFlagged) {
  capped_log plain({{"order", false}, {"user-1", false}}, {5});
  ASSERT_FALSE(HasFailure());
  uint8_t flags = 0;
  EXPECT_EQ(plain.match({{}, {"ord"}, {}, {}}, &flags), segment_match::maybe);  // "order" may start with it
  EXPECT_EQ(flags, segment_index::kUncategorised);
  EXPECT_EQ(plain.match({{}, {"order-"}, {}, {}}), segment_match::none);  // "order" has no '-'
  EXPECT_EQ(plain.match({{}, {"user"}, {}, {}}), segment_match::maybe);
  EXPECT_EQ(plain.match({{}, {"user-2"}, {}, {}}), segment_match::maybe);  // category only: maybe
  EXPECT_EQ(plain.match({{}, {}, {"user-2"}, {}}), segment_match::none);   // exact: certain
  capped_log ints({int_stream(0x2d41000000000000ull), {"user-1", false}}, {5});
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(ints.match({{}, {"x-"}, {}, {}}, &flags), segment_match::maybe);  // an integer's bytes may
  EXPECT_EQ(flags, segment_index::kIntegerIds);
  EXPECT_EQ(ints.match({{}, {"-A"}, {}, {}}), segment_match::maybe);
  EXPECT_EQ(ints.match({{}, {"123456789-"}, {}, {}}), segment_match::none);  // longer than 8 bytes
  EXPECT_EQ(ints.match({{}, {"q"}, {}, {}}), segment_match::maybe);
}

// ---------------------------------------------------------------------------
// The summary's own validation, on a built file in memory.

TEST(SegmentSummary, OpenRejectsEveryInconsistentSummary) {
  rare_log rl;
  ASSERT_FALSE(HasFailure());
  const auto good = read_file(sidx(rl.dir, rare_log::kRareSegment));
  const uint64_t log_id = coding::get_u64(reinterpret_cast<const std::byte*>(good.data() + 16));
  auto open = [&](const std::vector<uint8_t>& b) {
    return segment_index::view::open(reinterpret_cast<const std::byte*>(b.data()), b.size(), "t.sidx",
                                     log_id, rare_log::kRareSegment);
  };
  {
    auto v = open(good);
    ASSERT_OK(v);
    EXPECT_EQ(v.value().summary_flags(), 0);
    ASSERT_EQ(v.value().types().size(), 6u);  // 1..5 and 999
    EXPECT_EQ(v.value().types()[5], 999u);
    ASSERT_EQ(v.value().category_count(), 2u);
    EXPECT_EQ(v.value().category(0), "order-");
    EXPECT_EQ(v.value().category(1), "rare-");
    EXPECT_EQ(v.value().category(2), "");
    EXPECT_TRUE(v.value().has_category("rare-"));
    EXPECT_FALSE(v.value().has_category("rare"));
    // A header-only view claims nothing.
    auto h = segment_index::view::open(reinterpret_cast<const std::byte*>(good.data()), good.size(), "t",
                                       log_id, rare_log::kRareSegment, false);
    ASSERT_OK(h);
    EXPECT_TRUE(h.value().may_hold_type(12345));
    EXPECT_EQ(match_segment(h.value(), {{12345}, {}, {}, {}}), segment_match::maybe);
  }
  // Each mutation, with checksums fixed, is refused as corruption.
  auto mutated = [&](auto&& change) {
    auto b = good;
    change(b);
    fix_checksums(b);
    auto v = open(b);
    EXPECT_FALSE(v.ok());
    if (!v.ok()) {
      EXPECT_EQ(v.error().code(), errc::corruption) << v.error().to_string();
    }
  };
  auto u32 = [](std::vector<uint8_t>& b, size_t at, uint32_t x) {
    coding::put_u32(reinterpret_cast<std::byte*>(b.data() + at), x);
  };
  mutated([&](auto& b) { b[116] = 0x10; });                     // unknown flag
  mutated([&](auto& b) { b[118] = 1; });                        // reserved
  mutated([&](auto& b) { b[116] = segment_index::kAnyType; });  // any type, yet a list
  mutated([&](auto& b) { u32(b, 104, 7); });                    // sizes disagree with the file
  mutated([&](auto& b) { u32(b, 104, 5000); });                 // over the cap
  mutated([&](auto& b) { u32(b, 112, 0); });                    // names shorter than their count
  const size_t summary_at = good.size() - 24 - (8 + 11 + 5);    // types 24 B; ends 8 B + names 11 B, padded
  mutated([&](auto& b) { u32(b, summary_at + 20, 3); });        // types out of order
  mutated([&](auto& b) { u32(b, summary_at + 24, 7); });        // a category past the names
  mutated([&](auto& b) { u32(b, summary_at + 24, 0); });        // an empty category
  mutated([&](auto& b) { b[summary_at + 32] = 's'; });          // "srder-" sorts after "rare-"
  mutated([&](auto& b) { b[summary_at + 32 + 5] = 'x'; });      // no trailing '-'
  mutated([&](auto& b) { b[summary_at + 32 + 1] = '-'; });      // two '-'
  mutated([&](auto& b) { b.back() = 1; });                      // padding
  mutated([&](auto& b) { u32(b, 8, 1); });                      // version 1: stale
  mutated([&](auto& b) { u32(b, 8, 2); });                      // version 2 (no correlation filter): stale
  mutated([&](auto& b) { b[117] = 6; });                        // a filter the file has no bytes for
  mutated([&](auto& b) {                                        // a filter of too few bits
    b[117] = 3;
    b[118] = 7;
    b.resize(b.size() + 1);
  });
  mutated([&](auto& b) {                                        // 64 bits, no hashes
    b[117] = 6;
    b.resize(b.size() + 8);
  });
  mutated([&](auto& b) { b[119] = 1; });                        // reserved
  {  // A filter of 64 bits with its bytes: accepted, and it answers from them.
    auto b = good;
    b[117] = 6;
    b[118] = 7;
    b.resize(b.size() + 8);
    fix_checksums(b);
    auto v = open(b);
    ASSERT_OK(v);
    EXPECT_FALSE(v.value().may_hold_correlation(id_of(1)));  // all bits clear
    std::fill(b.end() - 8, b.end(), 0xff);
    fix_checksums(b);
    auto w = open(b);
    ASSERT_OK(w);
    EXPECT_TRUE(w.value().may_hold_correlation(id_of(1)));  // all bits set
  }
}

}  // namespace
