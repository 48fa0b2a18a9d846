// The head table under a deliberately weak hash: every stream lands on one of
// four probe chains, so lookups, inserts, growth and iteration must all tell
// streams apart by their bytes. Checked against std::map.
#include <map>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "index/head_table.h"

namespace {

using varve::head_table;

uint64_t weak_hash(std::string_view s) { return s.empty() ? 0 : static_cast<uint8_t>(s.back()) & 3; }

std::string stream_name(std::mt19937_64& rng, int i) {
  switch (rng() % 4) {
    case 0: {  // 8 raw bytes, like an integer id
      std::string b(8, '\0');
      for (int k = 0; k < 8; ++k) b[k] = static_cast<char>((uint64_t(i) * 0x9E3779B97F4A7C15ull) >> (8 * k));
      return b;
    }
    case 1: return "s" + std::to_string(i);                       // short, in the slot
    case 2: return std::string(200, 'x') + std::to_string(i);     // long, in the arena
    default: return "order-" + std::to_string(i) + "-suffix";     // shares prefixes
  }
}

TEST(HeadTable, AWeakHashStillTellsStreamsApart) {
  head_table t(&weak_hash);
  std::map<std::string, std::pair<uint64_t, uint64_t>> model;
  std::mt19937_64 rng(17);
  std::vector<std::string> names;
  for (int i = 0; i < 3000; ++i) names.push_back(stream_name(rng, i));
  for (int step = 0; step < 20000; ++step) {
    const std::string& s = names[rng() % names.size()];
    auto& m = model[s];
    m.first += 1;
    m.second = uint64_t(step) * 8;
    t.advance(s, s.size() == 8, m.first, m.second);
  }
  ASSERT_EQ(t.size(), model.size());
  for (const auto& [s, m] : model) {
    const head_table::head* h = t.find(s, t.hash(s));
    ASSERT_NE(h, nullptr) << s.size();
    EXPECT_EQ(h->version, m.first);
    EXPECT_EQ(h->last_position, m.second);
  }
  // Absent ids that collide with present ones, and prefixes of present ones.
  for (const char* absent : {"s", "s1x", "order-1-suffi", "zzzzzzzz", ""}) {
    if (model.count(absent)) continue;
    EXPECT_EQ(t.find(absent, t.hash(absent)), nullptr) << absent;
  }
  size_t seen = 0;
  t.for_each([&](std::string_view s, bool, const head_table::head& h) {
    ++seen;
    auto it = model.find(std::string(s));
    ASSERT_NE(it, model.end());
    EXPECT_EQ(h.version, it->second.first);
  });
  EXPECT_EQ(seen, model.size());
  t.clear();
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.find(names[0], t.hash(names[0])), nullptr);
}

}  // namespace

// reserve() on a table that already holds streams (the writer's
// expected_streams, applied after recovery rebuilt the table) keeps every
// entry, and later inserts up to the reservation never grow the table.
TEST(HeadTable, ReserveOnAFilledTableKeepsEveryStreamAndStopsGrowth) {
  std::mt19937_64 rng(5);
  head_table t;
  std::map<std::string, uint64_t> model;
  for (int i = 0; i < 3000; ++i) {
    std::string s = stream_name(rng, i);
    t.advance(s, false, uint64_t(i) + 1, uint64_t(i) * 8);
    model[s] = uint64_t(i) + 1;
  }
  t.reserve(100'000);
  const size_t reserved_bytes = t.memory_bytes();
  ASSERT_GE(reserved_bytes, size_t{100'000} * 32);
  for (auto& [s, v] : model) {
    const head_table::head* h = t.find(s, t.hash(s));
    ASSERT_NE(h, nullptr) << s;
    EXPECT_EQ(h->version, v);
  }
  for (int i = 3000; i < 90'000; ++i) t.find_or_insert("n" + std::to_string(i), false);
  EXPECT_EQ(t.size(), model.size() + 87'000);
  // The new ids are short (kept in the slot): no slot array grew, no rehash.
  EXPECT_EQ(t.memory_bytes(), reserved_bytes);
  t.reserve(10);  // never shrinks
  EXPECT_EQ(t.size(), model.size() + 87'000);
}
