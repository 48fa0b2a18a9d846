// The tamper-evident chain (log_options::tamper_evident_chain, FORMAT.md 5b):
// BLAKE2b against reference digests; the chain recomputed by hand from the
// documented layout; an edit whose XXH3 checksums are fixed up (so that
// verify_log passes) caught by verify_chain; reopening, catching up after a
// lost entry, a torn tail, a chain started on an existing log.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/blake2b.h"
#include "base/coding.h"
#include "base/meta_file.h"
#include "base/record_format.h"
#include "base/segment_format.h"
#include "test_util.h"
#include "varve/admin.h"

using namespace varve;
using namespace varve_test;

namespace {

constexpr uint64_t kSeg = 64 * 1024;

std::string hex(const uint8_t* p, size_t n) {
  static const char* k = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += k[p[i] >> 4];
    s += k[p[i] & 15];
  }
  return s;
}

std::string b2(std::string_view data, size_t out, size_t split = 0) {
  blake2b h(out);
  h.update(data.data(), split);
  h.update(data.data() + split, data.size() - split);
  uint8_t d[64];
  h.final(d);
  return hex(d, out);
}

// Appends until `n` segments are sealed (the active one is n), then closes.
void fill(const std::string& dir, uint64_t segments, bool chain, uint64_t* events = nullptr) {
  log_options o;
  o.segment_bytes = kSeg;
  o.tamper_evident_chain = chain;
  auto log = event_log::open_or_create(dir, o);
  ASSERT_OK(log);
  std::vector<std::byte> payload(500, std::byte{0x5a});
  uint64_t i = 0;
  while (log.value()->committed_position().value / kSeg < segments) {
    event_data e;
    e.payload = payload;
    std::memcpy(payload.data(), &i, sizeof i);
    ASSERT_OK(log.value()->append(stream_id::from_u64(i % 13), expected_version::any(), e));
    ++i;
  }
  if (events) *events += i;
  ASSERT_OK(log.value()->close());
}

uint64_t log_id_of(const std::string& dir) {
  segment_format::meta m;
  EXPECT_OK(meta_file::read(*posix_file_system(), dir, m));
  return m.log_id;
}

// The chain as FORMAT.md 5b defines it, from the segment files alone.
std::string chain_by_hand(const std::string& dir, uint64_t first, uint64_t last) {
  const uint64_t id = log_id_of(dir);
  uint8_t prev[32] = {};
  for (uint64_t k = first; k <= last; ++k) {
    const std::vector<uint8_t> file = read_file(segment_path(dir, k));
    blake2b h(32);
    h.update("varve-chain-1", 13);
    uint8_t ints[16];
    coding::put_u64(ints, id);
    coding::put_u64(ints + 8, k);
    h.update(ints, 16);
    h.update(prev, 32);
    h.update(file.data(), file.size());
    h.final(prev);
  }
  return hex(prev, 32);
}

}  // namespace

TEST(Chain, Blake2bMatchesReferenceDigests) {
  // RFC 7693 appendix A ("abc", 64 bytes), and Python hashlib's blake2b for
  // the 32-byte digests, split across update calls at odd places.
  EXPECT_EQ(b2("abc", 64),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
            "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923");
  EXPECT_EQ(b2("", 32), "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  EXPECT_EQ(b2("abc", 32, 1), "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
  std::string big;
  for (int k = 0; k < 1000; ++k)
    for (int i = 0; i < 256; ++i) big += static_cast<char>(i);
  for (size_t split : {size_t{0}, size_t{1}, size_t{127}, size_t{128}, size_t{129}, size_t{1000}, big.size()})
    EXPECT_EQ(b2(big, 32, split), "5d074c3f889bcba3b3a253496ee73cba18832b6d3c67d2b739dc202c78ed2581")
        << "split at " << split;
}

TEST(Chain, EverySealedSegmentIsChainedAndTheHeadMatchesTheFormat) {
  temp_dir d;
  const std::string dir = d.sub("log");
  fill(dir, 5, true);
  auto rep = verify_chain(dir);
  ASSERT_OK(rep);
  EXPECT_TRUE(rep->first_problem.ok()) << rep->first_problem.to_string();
  EXPECT_EQ(rep->first_segment, 0u);
  EXPECT_GE(rep->last_segment, 4u);
  EXPECT_EQ(rep->entries, rep->last_segment + 1);
  EXPECT_EQ(rep->sealed_after, 0u);
  EXPECT_EQ(rep->head, chain_by_hand(dir, 0, rep->last_segment));
  auto recorded = read_chain(dir);
  ASSERT_OK(recorded);
  EXPECT_EQ(recorded->head, rep->head);
  // A log without a chain: not_found, named.
  fill(d.sub("plain"), 1, false);
  auto none = verify_chain(d.sub("plain"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), errc::not_found);
}

TEST(Chain, AnEditWithItsChecksumsFixedUpIsCaught) {
  temp_dir d;
  const std::string dir = d.sub("log");
  fill(dir, 4, true);
  // Rewrite a payload byte of the first record of segment 1, then its record
  // checksum and the footer's data checksum, as a forger would.
  const std::string seg = segment_path(dir, 1);
  std::vector<uint8_t> f = read_file(seg);
  const uint64_t rec = segment_format::kHeaderSize;
  const uint32_t len = coding::get_u32(f.data() + rec + 8);
  ASSERT_GT(len, 200u);
  f[rec + len - 40] ^= 0x01;
  coding::put_u64(f.data() + rec, record::checksum(reinterpret_cast<const std::byte*>(f.data() + rec), len));
  segment_format::footer ft;
  const uint64_t foot = kSeg - segment_format::kFooterSize;
  ASSERT_OK(segment_format::decode_footer(reinterpret_cast<const std::byte*>(f.data() + foot), seg, foot, ft));
  ft.data_checksum = XXH3_64bits(f.data() + segment_format::kHeaderSize,
                                 ft.data_end + record::kSegmentEndSize - segment_format::kHeaderSize);
  segment_format::encode_footer(reinterpret_cast<std::byte*>(f.data() + foot), ft);
  write_at(seg, 0, f.data(), f.size());
  // The checksums are happy...
  auto v = verify_log(dir);
  ASSERT_OK(v);
  EXPECT_TRUE(v->first_problem.ok()) << v->first_problem.to_string();
  // ...the chain is not, and says which segment.
  auto rep = verify_chain(dir);
  ASSERT_OK(rep);
  ASSERT_FALSE(rep->first_problem.ok());
  EXPECT_EQ(rep->first_problem.code(), errc::corruption);
  EXPECT_NE(rep->first_problem.message().find(segment_file_name(1)), std::string::npos)
      << rep->first_problem.message();
}

TEST(Chain, ReopensExtendItAndALostEntryIsRecomputed) {
  temp_dir d;
  const std::string dir = d.sub("log");
  fill(dir, 3, true);
  auto first = read_chain(dir);
  ASSERT_OK(first);
  // A crash between a seal and its chain entry: the entry is missing.
  const std::string path = dir + "/chain";
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 64);
  auto cut = read_chain(dir);
  ASSERT_OK(cut);
  EXPECT_EQ(cut->entries + 1, first->entries);
  EXPECT_EQ(cut->sealed_after, 1u);
  // Reopened without the option: the log keeps its chain, catches up.
  fill(dir, 6, false);
  auto rep = verify_chain(dir);
  ASSERT_OK(rep);
  EXPECT_TRUE(rep->first_problem.ok()) << rep->first_problem.to_string();
  EXPECT_GE(rep->last_segment, 5u);
  EXPECT_EQ(rep->entries, rep->last_segment + 1);
  EXPECT_EQ(rep->head, chain_by_hand(dir, 0, rep->last_segment));
}

TEST(Chain, ATornLastEntryIsRewrittenAndADamagedEarlierOneRefused) {
  temp_dir d;
  const std::string dir = d.sub("log");
  fill(dir, 3, true);
  const std::string path = dir + "/chain";
  {
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << std::string(30, 'x');  // half an entry
  }
  auto torn = read_chain(dir);
  ASSERT_OK(torn);
  EXPECT_TRUE(torn->torn_tail);
  fill(dir, 5, true);
  auto rep = verify_chain(dir);
  ASSERT_OK(rep);
  EXPECT_TRUE(rep->first_problem.ok()) << rep->first_problem.to_string();
  EXPECT_FALSE(rep->torn_tail);
  EXPECT_EQ(rep->head, chain_by_hand(dir, 0, rep->last_segment));
  // A damaged entry before the last is corruption, named with its offset.
  // Flipped, not overwritten: the digest byte may already hold any value
  // (it depends on the random log id), and writing what is there changes nothing.
  flip_byte(path, 64 + 20);
  auto bad = verify_chain(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), errc::corruption);
  EXPECT_NE(bad.error().message().find("offset 64"), std::string::npos) << bad.error().message();
}

TEST(Chain, StartedOnAnExistingLogItCoversWhatIsSealedFromThen) {
  temp_dir d;
  const std::string dir = d.sub("log");
  fill(dir, 3, false);
  fill(dir, 6, true);
  auto rep = verify_chain(dir);
  ASSERT_OK(rep);
  EXPECT_TRUE(rep->first_problem.ok()) << rep->first_problem.to_string();
  EXPECT_GE(rep->first_segment, 2u);  // the reopen may seal segment 2 again first
  EXPECT_LE(rep->first_segment, 3u);
  EXPECT_GE(rep->last_segment, 5u);
  EXPECT_EQ(rep->head, chain_by_hand(dir, rep->first_segment, rep->last_segment));
}
