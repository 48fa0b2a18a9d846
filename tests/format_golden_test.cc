// Pins docs/FORMAT.md to the code: the worked example's hex dumps are parsed
// from the document and compared byte for byte with what the encoder writes,
// and the decoder must read them back.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/record_decode.h"  // decode_validated (inline xxhash)
#include "base/record_format.h"

#ifndef VARVE_SOURCE_DIR
#error "VARVE_SOURCE_DIR must point at the repository"
#endif

namespace varve {
namespace {

std::vector<std::byte> golden(const std::string& name) {
  std::ifstream in(VARVE_SOURCE_DIR "/docs/FORMAT.md");
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


// The replay decodes a deferred event twice: fully (checksum included) when
// its item is passed, then with record::decode_validated when its group is
// applied. The second decode must give the same view for every kind of
// record, and bytes changed in between (no checksum then) must never give a
// view outside the record.
bool same_view(const event_view& a, const event_view& b) {
  return a.position == b.position && a.sequence == b.sequence && a.stream == b.stream &&
         a.stream.data() == b.stream.data() && a.stream_is_integer == b.stream_is_integer &&
         a.version == b.version && a.previous == b.previous && a.type == b.type &&
         a.schema_version == b.schema_version && a.stored_schema_version == b.stored_schema_version &&
         a.timestamp_ns == b.timestamp_ns && a.content == b.content && a.batch_begin == b.batch_begin &&
         a.batch_end == b.batch_end && a.event_id == b.event_id && a.correlation_id == b.correlation_id &&
         a.causation_id == b.causation_id && a.payload.data() == b.payload.data() &&
         a.payload.size() == b.payload.size() && a.metadata.raw().data() == b.metadata.raw().data() &&
         a.metadata.raw().size() == b.metadata.raw().size() && a.record_bytes == b.record_bytes &&
         a.encrypted == b.encrypted && a.forgotten == b.forgotten;
}

// Every view of `v` lies inside [lo, hi).
bool views_inside(const event_view& v, const std::byte* lo, const std::byte* hi) {
  auto in = [&](const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    return n == 0 || (b >= lo && b + n <= hi);
  };
  return in(v.stream.data(), v.stream.size()) && in(v.payload.data(), v.payload.size()) &&
         in(v.metadata.raw().data(), v.metadata.raw().size()) &&
         (!v.event_id || in(v.event_id, 16)) && (!v.correlation_id || in(v.correlation_id, 16)) &&
         (!v.causation_id || in(v.causation_id, 16));
}

std::vector<std::vector<std::byte>> records_of_every_shape() {
  std::vector<std::vector<std::byte>> out;
  id128 a, b, c;
  for (int i = 0; i < 16; ++i) {
    a.bytes[i] = static_cast<uint8_t>(i);
    b.bytes[i] = static_cast<uint8_t>(0x40 + i);
    c.bytes[i] = static_cast<uint8_t>(0x80 + i);
  }
  const metadata_entry meta[] = {{"user", "ann"}, {"trace", "t-1"}};
  const std::string payload(60, 'p');
  for (int shape = 0; shape < 64; ++shape) {
    event_data e;
    e.type = 7 + shape;
    e.schema_version = static_cast<uint16_t>(1 + shape % 3);
    e.payload = event_data::bytes(payload);
    e.event_id = (shape & 1) ? &a : nullptr;
    e.correlation_id = (shape & 2) ? &b : nullptr;
    e.causation_id = (shape & 4) ? &c : nullptr;
    e.content = (shape & 8) ? content_type::json : content_type::binary;
    if (shape & 16) e.metadata = meta;
    const bool integer = shape & 32;
    const std::string stream = integer ? std::string("\0\0\0\0\0\0\0\x2a", 8) : std::string("order-17");
    const uint32_t n = record::encoded_size(stream.size(), e);
    std::vector<std::byte> rec(n);
    record::header_fields h{4096, 99, 3, 1795435200000000000ull, 1024,
                            static_cast<uint8_t>((integer ? record::kFlagIntegerStream : 0) |
                                                 (shape % 3 == 0 ? record::kFlagBatchBegin : 0) |
                                                 (shape % 5 == 0 ? record::kFlagBatchEnd : 0)),
                            static_cast<uint8_t>(shape % 7 == 0 ? record::kFlag2Encrypted : 0)};
    if (record::encode(rec.data(), n, stream, e, h) != n) ADD_FAILURE() << "encode, shape " << shape;
    out.push_back(std::move(rec));
  }
  return out;
}

TEST(RecordDecode, DecodingAValidatedRecordAgainGivesTheSameViewForEveryShape) {
  for (const auto& rec : records_of_every_shape()) {
    event_view first, again;
    ASSERT_EQ(record::decode(rec.data(), rec.size(), 4096, true, first).outcome, record::decode_outcome::event);
    again.forgotten = true;  // stale fields of the reader's view must not survive
    again.metadata = metadata_view(std::span<const std::byte>(rec.data(), 4));
    const record::decoded d = record::decode_validated(rec.data(), rec.size(), 4096, again);
    ASSERT_EQ(d.outcome, record::decode_outcome::event);
    EXPECT_EQ(d.length, rec.size());
    EXPECT_TRUE(same_view(first, again)) << "type " << first.type;
    // Into a ref (a replay projection over refs): the same fields when
    // asked; an encrypted record says so (it is decrypted into a view
    // before a projection sees it), the ref itself never claims it.
    event_ref r;
    const record::decoded dr = record::decode_validated(rec.data(), rec.size(), 4096, r);
    ASSERT_EQ(dr.outcome, record::decode_outcome::event);
    EXPECT_EQ(dr.length, rec.size());
    EXPECT_EQ(detail::event_ref_access::encrypted_record(r), first.encrypted) << "type " << first.type;
    event_view want = first;
    want.encrypted = false;
    event_view got = r.view();
    // No metadata: the ref's view is empty where the record's metadata
    // would start, the decoded view's empty with no address.
    if (got.metadata.raw().empty() && want.metadata.raw().empty()) got.metadata = want.metadata;
    EXPECT_TRUE(same_view(want, got)) << "type " << first.type;
  }
}

TEST(RecordDecode, BytesChangedAfterValidationNeverGiveAViewOutsideTheRecord) {
  uint64_t events = 0, refused = 0;
  for (const auto& rec : records_of_every_shape()) {
    for (size_t i = 0; i < rec.size(); ++i) {
      for (uint8_t mask : {0x01, 0x10, 0x80, 0xff}) {
        std::vector<std::byte> bad = rec;
        bad[i] ^= std::byte{mask};
        // Also cut short: what the decoder is told is there bounds it.
        for (size_t avail : {bad.size(), bad.size() - 8, size_t{70}}) {
          event_view v;
          const record::decoded d = record::decode_validated(bad.data(), avail, 4096, v);
          if (d.outcome != record::decode_outcome::event) {
            ++refused;
            continue;
          }
          ++events;
          EXPECT_LE(d.length, avail) << "byte " << i << " mask " << int(mask);
          EXPECT_TRUE(views_inside(v, bad.data(), bad.data() + avail))
              << "byte " << i << " mask " << int(mask) << " avail " << avail;
        }
        for (size_t avail : {bad.size(), bad.size() - 8, size_t{70}}) {
          event_ref r;
          const record::decoded d = record::decode_validated(bad.data(), avail, 4096, r);
          if (d.outcome != record::decode_outcome::event) continue;
          EXPECT_LE(d.length, avail) << "ref: byte " << i << " mask " << int(mask);
          EXPECT_TRUE(views_inside(r.view(), bad.data(), bad.data() + avail))
              << "ref: byte " << i << " mask " << int(mask) << " avail " << avail;
        }
      }
    }
  }
  // Both happen: a changed payload byte still decodes (no checksum), a
  // changed length past what is there does not.
  EXPECT_GT(events, 0u);
  EXPECT_GT(refused, 0u);
}

// The record checksum is XXH3-64 of bytes [8, length) (FORMAT.md); the
// readers and the writer compute it with an inlined copy of xxhash's 129..240
// byte path (record::xxh3_129to240): it must equal the library's hash at
// every length, around every boundary of xxhash's length dispatch.
TEST(RecordDecode, TheInlinedChecksumIsXXH3AtEveryLength) {
  std::vector<std::byte> buf(8 + 600);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int round = 0; round < 4; ++round) {
    for (auto& b : buf) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      b = static_cast<std::byte>(round == 3 ? 0xff : x);
    }
    for (uint32_t len = 8; len <= buf.size(); ++len)
      ASSERT_EQ(record::checksum_inline(buf.data(), len), XXH3_64bits(buf.data() + 8, len - 8))
          << "length " << len << " round " << round;
  }
}

// The encoder writes every byte of a record whatever the memory held before
// (a torn tail's garbage, a recycled page): padding included, for every
// stream length (the 8..16-byte path too), payload length and set of ids.
TEST(RecordEncode, WhatTheMemoryHeldNeverShowsThroughAnyByteOfTheRecord) {
  id128 a;
  for (int i = 0; i < 16; ++i) a.bytes[i] = static_cast<uint8_t>(0x11 * i);
  const std::string names(255, 'n');
  const std::string body(40, 'b');
  for (size_t sl : {1, 2, 7, 8, 9, 12, 15, 16, 17, 23, 24, 31, 200, 255}) {
    for (size_t pl = 0; pl <= 17; ++pl) {
      for (bool ids : {false, true}) {
        event_data e;
        e.type = 5;
        e.payload = event_data::bytes(std::string_view(body).substr(0, pl));
        if (ids) e.event_id = e.causation_id = &a;
        std::string stream = names.substr(0, sl);
        for (size_t i = 0; i < sl; ++i) stream[i] = static_cast<char>('a' + i % 26);
        const uint32_t n = record::encoded_size(sl, e);
        std::vector<std::byte> clean(n), dirty(n, std::byte{0xab});
        const record::header_fields h{4096, 3, 2, 77, 64, 0};
        ASSERT_EQ(record::encode(clean.data(), n, stream, e, h), n);
        ASSERT_EQ(record::encode(dirty.data(), n, stream, e, h), n);
        ASSERT_EQ(clean, dirty) << "stream " << sl << " payload " << pl << " ids " << ids;
        event_view v;
        ASSERT_EQ(record::decode(dirty.data(), n, 4096, true, v).outcome, record::decode_outcome::event);
        EXPECT_EQ(v.stream, stream);
        EXPECT_EQ(v.payload.size(), pl);
      }
    }
  }
}

}  // namespace
}  // namespace varve
