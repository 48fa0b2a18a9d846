// Pins docs/FORMAT.md to the code: the worked example's hex dumps are parsed
// from the document and compared byte for byte with what the encoder writes,
// and the decoder must read them back.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/record_format.h"

#ifndef VARVE_SOURCE_DIR
#error "VARVE_SOURCE_DIR must point at the repository"
#endif

namespace varve {
namespace {

std::vector<std::byte> golden(const std::string& name) {
  std::ifstream in(std::string(VARVE_SOURCE_DIR) + "/docs/FORMAT.md");
  std::string line;
  std::vector<std::byte> out;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == "```golden:" + name) {
      inside = true;
      continue;
    }
    if (inside && line.rfind("```", 0) == 0) break;
    if (!inside) continue;
    std::istringstream hex(line.substr(line.find(':') + 1));
    std::string b;
    while (hex >> b) out.push_back(static_cast<std::byte>(std::stoul(b, nullptr, 16)));
  }
  return out;
}

TEST(FormatGolden, RecordAMatchesTheDocument) {
  std::string payload = "{\"sku\":\"A1\"}";
  event_data e;
  e.type = 1;
  e.payload = event_data::bytes(payload);
  e.content = content_type::json;
  const uint32_t n = record::encoded_size(7, e);
  std::vector<std::byte> buf(n);
  record::encode(buf.data(), n, "order-1", e,
                 {64, 0, 1, 1795435200000000000ull, ~0ull,
                  record::kFlagBatchBegin | record::kFlagBatchEnd});
  ASSERT_EQ(golden("A"), buf);
  event_view v;
  auto d = record::decode(buf.data(), buf.size(), 64, true, v);
  ASSERT_EQ(d.outcome, record::decode_outcome::event);
  EXPECT_EQ(v.stream, "order-1");
  EXPECT_EQ(v.version, 1u);
  EXPECT_TRUE(v.previous.is_none());
}

TEST(FormatGolden, SegmentEndRecordMatchesTheDocument) {
  std::vector<std::byte> buf(record::kSegmentEndSize);
  record::encode_segment_end(buf.data(), 65400);
  ASSERT_EQ(golden("B"), buf);
}

TEST(FormatGolden, RecordCWithCorrelationIdMatchesTheDocument) {
  id128 corr;
  for (int i = 0; i < 16; ++i) corr.bytes[i] = static_cast<uint8_t>(0xa0 + i);
  std::string payload = "\x01\x02\x03";
  event_data e;
  e.type = 2;
  e.schema_version = 3;
  e.payload = event_data::bytes(payload);
  e.correlation_id = &corr;
  const uint32_t n = record::encoded_size(7, e);
  std::vector<std::byte> buf(n);
  record::encode(buf.data(), n, "order-1", e,
                 {65536 + 64, 1, 2, 1795435200000001000ull, 64,
                  record::kFlagBatchBegin | record::kFlagBatchEnd});
  ASSERT_EQ(golden("C"), buf);
  event_view v;
  auto d = record::decode(buf.data(), buf.size(), 65536 + 64, true, v);
  ASSERT_EQ(d.outcome, record::decode_outcome::event);
  ASSERT_NE(v.correlation_id, nullptr);
  EXPECT_EQ(*v.correlation_id, corr);
  EXPECT_EQ(v.previous.value, 64u);
}

// Every single-byte change of a valid record is caught by the decoder.
TEST(FormatGolden, DecoderRejectsEveryFlippedByteOfRecordC) {
  std::vector<std::byte> rec = golden("C");
  for (size_t i = 0; i < rec.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      std::vector<std::byte> bad = rec;
      bad[i] ^= std::byte{mask};
      event_view v;
      auto d = record::decode(bad.data(), bad.size(), 65536 + 64, true, v);
      EXPECT_NE(d.outcome, record::decode_outcome::event) << "byte " << i << " mask " << int(mask);
    }
  }
}

// A lying length never makes the decoder read past what it was given.
TEST(FormatGolden, DecoderBoundsEveryTruncation) {
  std::vector<std::byte> rec = golden("A");
  for (size_t n = 0; n < rec.size(); ++n) {
    std::vector<std::byte> cut(rec.begin(), rec.begin() + static_cast<long>(n));
    event_view v;
    auto d = record::decode(cut.data(), cut.size(), 64, true, v);
    EXPECT_NE(d.outcome, record::decode_outcome::event) << "length " << n;
  }
}

}  // namespace
}  // namespace varve
