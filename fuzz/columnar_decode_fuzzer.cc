// columnar_decode_fuzzer: any bytes -> columnar::decoder (docs/FORMAT.md 7c).
//
// The checksums would stop almost every mutation at the header, so the input
// is opened twice: as given (checksums verified), and with verify_checksums
// off, where only the structural checks stand between the bytes and the
// kernels. Checks, beyond "no crash, no out-of-bounds read" (ASan + UBSan):
// - open fails only with corruption or newer_format;
// - anything that opens with checksums also opens without, with the same shape;
// - on any accepted input every column reads (bytes columns may still report
//   corruption: their offsets are checked at read time) and gives rows()
//   values; reading a block into a span gives the same values as the column;
// - the input from an odd address behaves the same (no aligned-load assumption);
// - a snapshot that opens with checksums re-encodes from its values to one that
//   decodes to the same values (bit for bit for f64).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "varve/columnar.h"

using namespace varve;
using namespace varve::columnar;

namespace {

struct values {
  std::vector<std::vector<uint32_t>> u32;
  std::vector<std::vector<uint64_t>> u64;
  std::vector<std::vector<int64_t>> i64;
  std::vector<std::vector<double>> f64;
  std::vector<std::vector<std::string>> bytes;
  std::vector<bool> ok;
};

values read_all(const decoder& d) {
  values v;
  const size_t n = d.schema().size();
  v.u32.resize(n);
  v.u64.resize(n);
  v.i64.resize(n);
  v.f64.resize(n);
  v.bytes.resize(n);
  v.ok.resize(n);
  for (uint32_t c = 0; c < n; ++c) {
    status s;
    size_t got = 0;
    switch (d.schema()[c].type) {
      case column_type::u32: s = d.read_u32(c, v.u32[c]); got = v.u32[c].size(); break;
      case column_type::u64: s = d.read_u64(c, v.u64[c]); got = v.u64[c].size(); break;
      case column_type::i64: s = d.read_i64(c, v.i64[c]); got = v.i64[c].size(); break;
      case column_type::f64: s = d.read_f64(c, v.f64[c]); got = v.f64[c].size(); break;
      case column_type::bytes: s = d.read_bytes(c, v.bytes[c]); got = v.bytes[c].size(); break;
    }
    v.ok[c] = s.ok();
    if (d.schema()[c].type == column_type::bytes) {
      FUZZ_CHECK(s.ok() || s.code() == errc::corruption, s.to_string());
    } else {
      FUZZ_CHECK(s.ok(), "a fixed-width column failed after open: " + s.to_string());
    }
    if (s.ok()) FUZZ_CHECK(got == d.rows(), "column " + std::to_string(c) + " gave " + std::to_string(got));
  }
  // Block reads agree with whole-column reads.
  for (uint32_t c = 0; c < n; ++c) {
    uint64_t row = 0;
    for (uint64_t b = 0; b < d.blocks(); ++b) {
      const uint64_t k = d.rows_in_block(b);
      if (d.schema()[c].type == column_type::u64) {
        std::vector<uint64_t> part(k);
        FUZZ_CHECK(d.read_u64(c, b, part).ok(), "block read");
        FUZZ_CHECK(std::memcmp(part.data(), v.u64[c].data() + row, k * 8) == 0, "block read differs");
      } else if (d.schema()[c].type == column_type::u32) {
        std::vector<uint32_t> part(k);
        FUZZ_CHECK(d.read_u32(c, b, part).ok(), "block read");
        FUZZ_CHECK(std::memcmp(part.data(), v.u32[c].data() + row, k * 4) == 0, "block read differs");
      }
      row += k;
    }
  }
  return v;
}

bool same(const values& a, const values& b) {
  if (a.ok != b.ok || a.u32 != b.u32 || a.u64 != b.u64 || a.i64 != b.i64 || a.bytes != b.bytes) return false;
  for (size_t c = 0; c < a.f64.size(); ++c)
    if (a.f64[c].size() != b.f64[c].size() ||
        (!a.f64[c].empty() && std::memcmp(a.f64[c].data(), b.f64[c].data(), a.f64[c].size() * 8) != 0))
      return false;
  return true;
}

void check_reencode(const decoder& d, const values& v) {
  for (bool ok : v.ok)
    if (!ok) return;
  encoder enc(d.schema(), {.block_rows = d.block_rows()});
  for (uint32_t c = 0; c < d.schema().size(); ++c) switch (d.schema()[c].type) {
      case column_type::u32: enc.add_u32(c, v.u32[c]); break;
      case column_type::u64: enc.add_u64(c, v.u64[c]); break;
      case column_type::i64: enc.add_i64(c, v.i64[c]); break;
      case column_type::f64: enc.add_f64(c, v.f64[c]); break;
      case column_type::bytes: enc.add_bytes(c, v.bytes[c]); break;
    }
  auto bytes = enc.finish(d.at(), d.schema_version());
  FUZZ_CHECK(bytes.ok(), bytes.to_status().to_string());
  auto again = decoder::open(bytes.value());
  FUZZ_CHECK(again.ok(), "re-encoded snapshot does not open: " + again.to_status().to_string());
  FUZZ_CHECK(again->rows() == d.rows() && again->at() == d.at() &&
                 again->schema_version() == d.schema_version() && again->schema() == d.schema(),
             "re-encoded header differs");
  FUZZ_CHECK(same(read_all(again.value()), v), "re-encoded snapshot decodes to other values");
}

bool clean_open_error(errc c) { return c == errc::corruption || c == errc::newer_format; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);

  auto checked = decoder::open(in);
  if (!checked.ok()) FUZZ_CHECK(clean_open_error(checked.error().code()), checked.error().to_string());
  auto raw = decoder::open(in, {.verify_checksums = false});
  if (!raw.ok()) {
    FUZZ_CHECK(clean_open_error(raw.error().code()), raw.error().to_string());
    FUZZ_CHECK(!checked.ok(), "opens with checksums, not without");
    return 0;
  }
  // A constant column packs to nothing, so a few bytes can honestly claim
  // millions of rows: read only what fits the fuzzer's memory limit.
  if (raw->rows() * raw->schema().size() > (uint64_t{1} << 20)) return 0;
  const values v = read_all(raw.value());

  // From an odd address: the same outcome.
  {
    std::vector<std::byte> shifted(size + 1);
    if (size) std::memcpy(shifted.data() + 1, data, size);
    auto odd = decoder::open(std::span(shifted.data() + 1, size), {.verify_checksums = false});
    FUZZ_CHECK(odd.ok(), "opens aligned, not at an odd address");
    FUZZ_CHECK(same(read_all(odd.value()), v), "values depend on the buffer's address");
  }

  if (checked.ok()) {
    FUZZ_CHECK(checked->rows() == raw->rows() && checked->blocks() == raw->blocks(), "shape differs");
    check_reencode(checked.value(), v);
  }
  return 0;
}
