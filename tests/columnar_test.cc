// The columnar snapshot codec (include/varve/columnar.h, docs/FORMAT.md 7c):
// round trips of every column type with random and edge values (NaN payloads
// compared bit for bit), empty and single-row snapshots, every size around the
// group (256) and block boundaries, both kernel builds against each other, and
// every byte of a small snapshot damaged: always an error, never a crash or a
// wrong value.
#include <bit>
#include <cmath>
#include <limits>
#include <random>

#include "engine/snapshot/columnar_kernels.h"
#include "test_util.h"
#include "varve/columnar.h"

using namespace varve;
using namespace varve::columnar;

namespace {

constexpr uint32_t kBlock = 512;  // small blocks: many boundaries for few rows

// Sizes around the group size, the block size, and two blocks.
std::vector<size_t> boundary_sizes(uint32_t block) {
  std::vector<size_t> v = {0, 1, 2, 3, 255, 256, 257, 511, 513};
  for (size_t base : {size_t{block}, size_t{2} * block, size_t{3} * block})
    for (int d = -2; d <= 2; ++d) v.push_back(base + d);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

struct table_data {
  std::vector<uint32_t> a;
  std::vector<uint64_t> b;
  std::vector<int64_t> c;
  std::vector<double> d;
  std::vector<std::string> e;
};

const schema kSchema({{"a", column_type::u32},
                      {"b", column_type::u64},
                      {"c", column_type::i64},
                      {"d", column_type::f64},
                      {"e", column_type::bytes}});

// Shapes that push each coding: sorted (delta), random (wide frame), constant
// (width 0), small steps around a large base, extremes (full width).
enum class shape { random, sorted, constant, small_steps, extremes };

table_data make(size_t n, shape s, std::mt19937_64& rng) {
  table_data t;
  uint64_t acc = rng();
  for (size_t i = 0; i < n; ++i) {
    uint64_t x = rng();
    switch (s) {
      case shape::random: break;
      case shape::sorted: x = acc += rng() % 7; break;
      case shape::constant: x = acc; break;
      case shape::small_steps: x = acc += static_cast<uint64_t>(static_cast<int64_t>(rng() % 9) - 4); break;
      case shape::extremes: x = (rng() & 1) ? ~uint64_t{0} : 0; break;
    }
    t.a.push_back(static_cast<uint32_t>(x));
    t.b.push_back(x);
    t.c.push_back(static_cast<int64_t>(x));
    t.d.push_back(std::bit_cast<double>(x));  // any bit pattern: NaNs with payloads too
    std::string str(rng() % (s == shape::constant ? 1 : 40), '\0');
    for (auto& ch : str) ch = static_cast<char>(rng());
    t.e.push_back(std::move(str));
  }
  return t;
}

std::string encode(const table_data& t, uint32_t block, uint64_t pos = 4242, uint32_t ver = 7) {
  encoder enc(kSchema, {.block_rows = block});
  enc.add_u32(0, t.a);
  enc.add_u64(1, t.b);
  enc.add_i64(2, t.c);
  enc.add_f64(3, t.d);
  enc.add_bytes(4, t.e);
  auto r = enc.finish(position{pos}, ver);
  EXPECT_TRUE(r.ok()) << varve_test::describe(r);
  return r.ok() ? r.value() : std::string();
}

// Decodes and compares every value; doubles bit for bit.
void expect_same(const std::string& bytes, const table_data& t, const std::string& what) {
  SCOPED_TRACE(what);
  auto dec = decoder::open(bytes);
  ASSERT_OK(dec);
  EXPECT_EQ(dec->rows(), t.a.size());
  EXPECT_EQ(dec->at().value, 4242u);
  EXPECT_EQ(dec->schema_version(), 7u);
  EXPECT_OK(dec->expect(kSchema));
  std::vector<uint32_t> a;
  std::vector<uint64_t> b;
  std::vector<int64_t> c;
  std::vector<double> d;
  std::vector<std::string> e;
  ASSERT_OK(dec->read_u32(0, a));
  ASSERT_OK(dec->read_u64(1, b));
  ASSERT_OK(dec->read_i64(2, c));
  ASSERT_OK(dec->read_f64(3, d));
  ASSERT_OK(dec->read_bytes(4, e));
  EXPECT_TRUE(a == t.a);
  EXPECT_TRUE(b == t.b);
  EXPECT_TRUE(c == t.c);
  ASSERT_EQ(d.size(), t.d.size());
  EXPECT_TRUE(d.empty() || std::memcmp(d.data(), t.d.data(), d.size() * 8) == 0);
  EXPECT_TRUE(e == t.e);
  // Block by block into caller spans: the same values.
  uint64_t row = 0;
  for (uint64_t blk = 0; blk < dec->blocks(); ++blk) {
    const uint64_t n = dec->rows_in_block(blk);
    std::vector<uint64_t> part(n);
    ASSERT_OK(dec->read_u64(1, blk, part));
    EXPECT_TRUE(std::equal(part.begin(), part.end(), t.b.begin() + static_cast<ptrdiff_t>(row)));
    auto view = dec->view_f64(3, blk);
    ASSERT_OK(view);
    EXPECT_EQ(view->size(), n);
    EXPECT_TRUE(n == 0 || std::memcmp(view->data(), t.d.data() + row, n * 8) == 0);
    row += n;
  }
  EXPECT_EQ(row, t.a.size());
}

TEST(Columnar, EveryTypeEveryShapeAroundTheBoundaries) {
  std::mt19937_64 rng(1);
  for (shape s : {shape::random, shape::sorted, shape::constant, shape::small_steps, shape::extremes})
    for (size_t n : boundary_sizes(kBlock)) {
      table_data t = make(n, s, rng);
      expect_same(encode(t, kBlock), t, "shape " + std::to_string(int(s)) + " rows " + std::to_string(n));
    }
}

TEST(Columnar, BlockSizesThatAreNotMultiplesOfAGroup) {
  std::mt19937_64 rng(2);
  for (uint32_t block : {1u, 3u, 255u, 257u, 1000u})
    for (size_t n : {size_t{0}, size_t{1}, size_t{block} - 1, size_t{block}, size_t{block} + 1, size_t{3} * block + 7}) {
      table_data t = make(n, shape::small_steps, rng);
      expect_same(encode(t, block), t, "block " + std::to_string(block) + " rows " + std::to_string(n));
    }
}

TEST(Columnar, DefaultBlockSizeLargeColumn) {
  std::mt19937_64 rng(3);
  table_data t = make(65536 * 2 + 300, shape::sorted, rng);
  std::string bytes = encode(t, encoder_options{}.block_rows);
  expect_same(bytes, t, "default blocks");
  auto dec = decoder::open(bytes);
  ASSERT_OK(dec);
  EXPECT_EQ(dec->blocks(), 3u);
}

TEST(Columnar, EdgeValues) {
  table_data t;
  const uint32_t u32s[] = {0, 1, 0x7fffffff, 0x80000000u, 0xfffffffeu, 0xffffffffu};
  const uint64_t u64s[] = {0, 1, uint64_t{1} << 63, ~uint64_t{0}, ~uint64_t{0} - 1, 0x7fffffffffffffff};
  const int64_t i64s[] = {0, -1, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 1,
                          std::numeric_limits<int64_t>::min() + 1};
  const uint64_t f64bits[] = {
      0x7ff8000000000000,  // quiet NaN
      0x7ff0000000000001,  // signalling NaN, payload 1
      0xfff8dead0000beef,  // negative NaN with a payload
      0x8000000000000000,  // -0.0
      0x7ff0000000000000,  // +inf
      0x0000000000000001,  // smallest denormal
  };
  for (int rep = 0; rep < 100; ++rep)
    for (int i = 0; i < 6; ++i) {
      t.a.push_back(u32s[(i + rep) % 6]);
      t.b.push_back(u64s[(i * 5 + rep) % 6]);
      t.c.push_back(i64s[(i + 2 * rep) % 6]);
      t.d.push_back(std::bit_cast<double>(f64bits[(i + rep) % 6]));
      t.e.push_back(i % 2 ? std::string("\0\xff\0", 3) : std::string());
    }
  for (uint32_t block : {1u, 7u, 256u, 600u, 65536u}) expect_same(encode(t, block), t, "edges");
  // Monotone runs that wrap: delta coding works mod 2^B.
  table_data w;
  for (uint64_t i = 0; i < 700; ++i) {
    w.a.push_back(0xffffff00u + static_cast<uint32_t>(i));
    w.b.push_back(~uint64_t{0} - 300 + i);
    w.c.push_back(static_cast<int64_t>(uint64_t{0x7fffffffffffffff} - 350 + i));  // wraps to negative
    w.d.push_back(static_cast<double>(i));
    w.e.emplace_back(i % 300, 'x');
  }
  expect_same(encode(w, kBlock), w, "wrapping");
}

TEST(Columnar, PiecewiseFeedingGivesTheSameBytes) {
  std::mt19937_64 rng(4);
  // Enough rows that the staged columns are compacted along the way.
  table_data t = make(20 * kBlock + 77, shape::random, rng);
  const std::string whole = encode(t, kBlock);
  encoder enc(kSchema, {.block_rows = kBlock});
  // Each column in different slice sizes, interleaved: blocks go out as soon
  // as every column has a block's worth.
  size_t at[5] = {};
  const size_t step[5] = {1, 100, 333, 7, 512};
  const size_t n = t.a.size();
  while (at[0] < n || at[1] < n || at[2] < n || at[3] < n || at[4] < n) {
    for (int c = 0; c < 5; ++c) {
      const size_t k = std::min(step[c], n - at[c]);
      if (k == 0) continue;
      switch (c) {
        case 0: enc.add_u32(0, std::span(t.a).subspan(at[c], k)); break;
        case 1: enc.add_u64(1, std::span(t.b).subspan(at[c], k)); break;
        case 2: enc.add_i64(2, std::span(t.c).subspan(at[c], k)); break;
        case 3: enc.add_f64(3, std::span(t.d).subspan(at[c], k)); break;
        case 4:
          for (size_t i = 0; i < k; ++i) enc.add_bytes(4, std::string_view(t.e[at[c] + i]));
          break;
      }
      at[c] += k;
    }
  }
  std::string out = "replaced";
  ASSERT_OK(enc.finish_into(out, position{4242}, 7));
  EXPECT_TRUE(out == whole);
  EXPECT_ERRC(enc.finish(position{4242}), errc::invalid_argument);  // once only
}

TEST(Columnar, CodingIsChosenPerBlock) {
  // Sorted ids pack to a few bits; the snapshot is far smaller than the raw values.
  std::vector<uint64_t> ids(100000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = 1'000'000'000'000 + 3 * i;
  encoder enc(schema({{"id", column_type::u64}}));
  enc.add_u64(0, ids);
  auto r = enc.finish(position{1});
  ASSERT_OK(r);
  EXPECT_LT(r->size(), ids.size());  // under a byte per row
  auto dec = decoder::open(r.value());
  ASSERT_OK(dec);
  std::vector<uint64_t> back;
  ASSERT_OK(dec->read_u64(0, back));
  EXPECT_TRUE(back == ids);
}

TEST(Columnar, CallerErrorsAreValues) {
  EXPECT_ERRC(encoder(schema(std::vector<column>{})).finish(position{0}), errc::invalid_argument);
  EXPECT_ERRC(encoder(schema({{"x", column_type::u32}, {"x", column_type::u64}})).finish(position{0}),
              errc::invalid_argument);
  EXPECT_ERRC(encoder(schema({{"", column_type::u32}})).finish(position{0}), errc::invalid_argument);
  EXPECT_ERRC(encoder(schema({{"x", column_type::u32}}), {.block_rows = 0}).finish(position{0}),
              errc::invalid_argument);
  {
    encoder enc(schema({{"x", column_type::u32}}));
    const uint64_t v[] = {1};
    enc.add_u64(0, v);  // wrong type
    EXPECT_ERRC(enc.finish(position{0}), errc::invalid_argument);
  }
  {
    encoder enc(schema({{"x", column_type::u32}, {"y", column_type::u32}}));
    const uint32_t v[] = {1, 2};
    enc.add_u32(0, v);
    enc.add_u32(1, std::span(v, 1));
    EXPECT_ERRC(enc.finish(position{0}), errc::invalid_argument);  // unequal lengths
  }
  std::mt19937_64 rng(5);
  const std::string bytes = encode(make(10, shape::random, rng), kBlock);
  auto dec = decoder::open(bytes);
  ASSERT_OK(dec);
  std::vector<uint64_t> u;
  EXPECT_ERRC(dec->read_u64(0, u), errc::invalid_argument);  // column 0 is u32
  EXPECT_ERRC(dec->read_u64(9, u), errc::invalid_argument);
  std::vector<uint64_t> wrong(3);
  EXPECT_ERRC(dec->read_u64(1, 0, wrong), errc::invalid_argument);
  EXPECT_ERRC(dec->expect(schema({{"a", column_type::u32}})), errc::invalid_argument);
  EXPECT_EQ(dec->schema().find("e"), 4);
}

TEST(Columnar, NewerFormatIsNotCorruption) {
  std::mt19937_64 rng(6);
  std::string bytes = encode(make(5, shape::random, rng), kBlock);
  bytes[8] = 2;
  EXPECT_ERRC(decoder::open(bytes), errc::newer_format);
}

TEST(Columnar, FileRoundTrip) {
  varve_test::temp_dir dir;
  std::mt19937_64 rng(7);
  table_data t = make(1500, shape::sorted, rng);
  encoder enc(kSchema, {.block_rows = kBlock});
  enc.add_u32(0, t.a);
  enc.add_u64(1, t.b);
  enc.add_i64(2, t.c);
  enc.add_f64(3, t.d);
  enc.add_bytes(4, t.e);
  auto fs = posix_file_system();
  ASSERT_OK(enc.write_file(*fs, dir.path(), "state.col", position{4242}, 7));
  auto dec = decoder::open_file(*fs, dir.sub("state.col"));
  ASSERT_OK(dec);
  std::vector<std::string> e;
  ASSERT_OK(dec->read_bytes(4, e));
  EXPECT_TRUE(e == t.e);
  std::ifstream in(dir.sub("state.col"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  expect_same(bytes, t, "file");
  // A damaged file names its path and the offset.
  bytes[bytes.size() / 2] ^= 0x40;
  { std::ofstream(dir.sub("bad.col"), std::ios::binary) << bytes; }
  auto bad = decoder::open_file(*fs, dir.sub("bad.col"));
  ASSERT_ERRC(bad, errc::corruption);
  EXPECT_NE(bad.error().message().find("bad.col offset "), std::string::npos) << bad.error().message();
}

// Reads every column; with checksums verified, any damage must have been
// refused by open() already, so reads then must give the original values.
void read_all(const decoder& dec, const table_data* want) {
  std::vector<uint32_t> a;
  std::vector<uint64_t> b;
  std::vector<int64_t> c;
  std::vector<double> d;
  std::vector<std::string_view> e;
  for (uint32_t col = 0; col < dec.schema().size(); ++col) {
    status s;
    switch (dec.schema()[col].type) {
      case column_type::u32: s = dec.read_u32(col, a); break;
      case column_type::u64: s = dec.read_u64(col, b); break;
      case column_type::i64: s = dec.read_i64(col, c); break;
      case column_type::f64: s = dec.read_f64(col, d); break;
      case column_type::bytes: s = dec.read_bytes(col, e); break;
    }
    if (!s.ok()) {
      EXPECT_TRUE(s.code() == errc::corruption || s.code() == errc::invalid_argument);
    }
  }
  if (want) {
    EXPECT_TRUE(a == want->a && b == want->b && c == want->c);
    EXPECT_TRUE(d.size() == want->d.size() && (d.empty() || !std::memcmp(d.data(), want->d.data(), d.size() * 8)));
    EXPECT_TRUE(std::equal(e.begin(), e.end(), want->e.begin(), want->e.end()));
  }
}

TEST(Columnar, EveryDamagedByteIsRefused) {
  std::mt19937_64 rng(8);
  table_data t = make(300, shape::small_steps, rng);  // blocks of 128: 3 blocks, tail groups
  const std::string good = encode(t, 128);
  ASSERT_GT(good.size(), 1000u);
  for (size_t i = 0; i < good.size(); ++i)
    for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ flip);
      auto dec = decoder::open(bad);
      if (dec.ok()) {
        ADD_FAILURE() << "byte " << i << " ^ " << int(flip) << " was accepted";
        read_all(dec.value(), &t);
      } else {
        const errc c = dec.error().code();
        EXPECT_TRUE(c == errc::corruption || (i >= 8 && i < 12 && c == errc::newer_format))
            << i << ": " << dec.error().to_string();
      }
      // Without checksums only the structural checks stand: no crash, no
      // read outside the buffer (ASan), errors are values.
      auto raw = decoder::open(bad, {.verify_checksums = false});
      if (raw.ok()) read_all(raw.value(), nullptr);
    }
  // Every truncation and an extension.
  for (size_t n = 0; n < good.size(); ++n) {
    ASSERT_FALSE(decoder::open(std::string_view(good).substr(0, n)).ok()) << n;
    auto raw = decoder::open(std::string_view(good).substr(0, n), {.verify_checksums = false});
    if (raw.ok()) read_all(raw.value(), nullptr);
  }
  EXPECT_ERRC(decoder::open(good + std::string(8, '\0')), errc::corruption);
}

TEST(Columnar, BothKernelBuildsAgree) {
  namespace k = varve::columnar::kernels;
  const auto& a = k::active();
  const auto& b = k::baseline();
  std::mt19937_64 rng(9);
  std::vector<uint32_t> in32(512), out32a(512), out32b(512);
  std::vector<uint64_t> in64(512), out64a(512), out64b(512);
  std::vector<std::byte> pa(64 * 64), pb(64 * 64);
  for (unsigned w = 0; w <= 64; ++w) {
    const uint64_t mask = w == 64 ? ~uint64_t{0} : (uint64_t{1} << w) - 1;
    for (auto& x : in64) x = rng() & mask;
    a.pack64[w](in64.data(), pa.data(), 2);
    b.pack64[w](in64.data(), pb.data(), 2);
    ASSERT_EQ(0, std::memcmp(pa.data(), pb.data(), w * 64)) << w;
    for (bool delta : {false, true}) {
      a.unpack64[w](pa.data(), out64a.data(), 2, 5, 11, delta);
      b.unpack64[w](pa.data(), out64b.data(), 2, 5, 11, delta);
      ASSERT_TRUE(out64a == out64b) << w;
      if (!delta) {
        for (size_t i = 0; i < 512; ++i) ASSERT_EQ(out64a[i], in64[i] + 5) << w << " " << i;
      }
    }
    if (w > 32) continue;
    for (auto& x : in32) x = static_cast<uint32_t>(rng() & mask);
    a.pack32[w](in32.data(), pa.data(), 2);
    b.pack32[w](in32.data(), pb.data(), 2);
    ASSERT_EQ(0, std::memcmp(pa.data(), pb.data(), w * 64)) << w;
    for (bool delta : {false, true}) {
      a.unpack32[w](pa.data(), out32a.data(), 2, 3, 9, delta);
      b.unpack32[w](pa.data(), out32b.data(), 2, 3, 9, delta);
      ASSERT_TRUE(out32a == out32b) << w;
      if (!delta) {
        for (size_t i = 0; i < 512; ++i) ASSERT_EQ(out32a[i], in32[i] + 3) << w << " " << i;
      }
    }
  }
  std::printf("columnar kernels in use: %s\n", a.name);
}

}  // namespace
