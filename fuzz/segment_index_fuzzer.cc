// segment_index_fuzzer: bytes -> a segment index file (index/<seg>.sidx) ->
// segment_index::view::open, then lookups and time searches on what it accepts.
//
// Input: byte 0 is a control byte, the rest is the file.
//   bit 0: fix up both checksums before opening, so the parser behind them is
//          reached (the fuzzer cannot forge XXH3; a real file has right ones)
//   bit 1: open with the log id and segment index the file claims (else other
//          ones, which must be rejected)
// Checks: open returns ok, corruption or newer_format, never anything else;
// with a foreign identity it never succeeds; on a file it accepts, find() of
// any probe (chunks of the input, and the streams named in its own entries)
// returns runs whose offsets lie inside the file, time_scan_range never
// reads outside it, and the summary (types, categories, flags) reads only
// inside the file, its lists strictly ascending, and match_segment answers
// any filter without a stray read (ASan catches any: the file is an
// exact-size heap buffer), the correlation filter included.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "engine/segment_filter.h"
#include "fuzz/fuzz_util.h"
#include "index/segment_index.h"

using namespace varve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t ctl = data[0];
  // An exact-size heap copy, 8-byte aligned like a mapping.
  std::vector<uint64_t> storage((size - 1 + 7) / 8 + 1);
  auto* file = reinterpret_cast<std::byte*>(storage.data());
  const size_t n = size - 1;
  std::memcpy(file, data + 1, n);
  if ((ctl & 1) && n >= segment_index::kHeaderSize) {
    varve_fuzz::put64(file + 96, XXH3_64bits(file + 128, n - 128));
    varve_fuzz::put64(file + 120, XXH3_64bits(file, 120));
  }
  const uint64_t claimed_log = n >= 24 ? varve_fuzz::le64(file + 16) : 0;
  const uint64_t claimed_seg = n >= 32 ? varve_fuzz::le64(file + 24) : 0;
  const uint64_t log_id = (ctl & 2) ? claimed_log : claimed_log + 1;
  const uint64_t seg = (ctl & 2) ? claimed_seg : claimed_seg;

  auto v = segment_index::view::open(file, n, "fuzz.sidx", log_id, seg);
  if (!v) {
    const errc c = v.error().code();
    FUZZ_CHECK(c == errc::corruption || c == errc::newer_format,
               "view::open gave " + v.error().to_string());
    return 0;
  }
  FUZZ_CHECK(log_id == claimed_log, "accepted an index file of another log");

  const std::byte* lo = file;
  const std::byte* hi = file + n;
  auto check_run = [&](const segment_index::stream_run& r) {
    const auto* first = reinterpret_cast<const std::byte*>(r.offsets);
    FUZZ_CHECK(r.count > 0 && first >= lo && first + 4 * uint64_t{r.count} <= hi,
               "a run points outside the file");
    uint64_t sum = 0;
    for (uint32_t i = 0; i < r.count; ++i) sum += r.offsets[i];  // touched: ASan checks
    (void)sum;
  };
  // Probes: chunks of the raw input of every length 1..16 from a few places.
  for (size_t at = 0; at + 1 < n && at < 512; at += 37)
    for (size_t len = 1; len <= 16 && at + len <= n; len += 5) {
      segment_index::stream_run r;
      if (v.value().find(std::string_view(reinterpret_cast<const char*>(file + at), len), r))
        check_run(r);
    }
  // Time searches: from and to must be offsets a segment could hold.
  for (uint64_t t : {uint64_t{0}, uint64_t{1}, claimed_log, ~uint64_t{0}, v.value().max_timestamp_through()}) {
    uint32_t from = 0, to = 0;
    v.value().time_scan_range(t, from, to);
    (void)from;
    (void)to;
  }
  // The summary: the lists open accepted are in order, inside the file, and
  // every lookup (types, categories, prefixes cut from the input) stays there.
  const segment_index::view& ix = v.value();
  const auto types = ix.types();
  FUZZ_CHECK(types.empty() || (reinterpret_cast<const std::byte*>(types.data()) >= lo &&
                               reinterpret_cast<const std::byte*>(types.data() + types.size()) <= hi),
             "summary types outside the file");
  for (size_t i = 1; i < types.size(); ++i) FUZZ_CHECK(types[i - 1] < types[i], "types out of order");
  FUZZ_CHECK(!(ix.summary_flags() & segment_index::kAnyType) || types.empty(), "any-type with a list");
  std::string_view prev;
  for (uint64_t i = 0; i < ix.category_count(); ++i) {
    const std::string_view c = ix.category(i);
    FUZZ_CHECK(!c.empty() && reinterpret_cast<const std::byte*>(c.data()) >= lo &&
                   reinterpret_cast<const std::byte*>(c.data() + c.size()) <= hi,
               "a category outside the file");
    FUZZ_CHECK(c.find('-') == c.size() - 1, "a category not ending at its only '-'");
    FUZZ_CHECK(i == 0 || prev < c, "categories out of order");
    FUZZ_CHECK(ix.has_category(c) && ix.lower_bound_category(c) == i, "a listed category not found");
    prev = c;
  }
  for (uint32_t t : types) FUZZ_CHECK(ix.may_hold_type(t), "a listed type not found");
  for (size_t at = 0; at + 1 < n && at < 256; at += 29) {
    event_filter f;
    f.types = {static_cast<uint32_t>(file[at]), types.empty() ? 0u : types[at % types.size()]};
    const std::string chunk(reinterpret_cast<const char*>(file + at), std::min<size_t>(n - at, 1 + at % 12));
    f.stream_prefixes = {chunk};
    (void)match_segment(ix, f);
    f.types.clear();
    f.streams = {chunk};
    (void)match_segment(ix, f);
    (void)ix.has_category(chunk);
    (void)ix.lower_bound_category(chunk);
    // The correlation filter: any 16 bytes of the input as an id (its bits
    // are read only inside the file).
    id128 id;
    for (size_t i = 0; i < 16; ++i) id.bytes[i] = at + i < n ? static_cast<uint8_t>(file[at + i]) : 0;
    (void)ix.may_hold_correlation(id);
    f.correlation_ids = {id};
    (void)match_segment(ix, f);
  }
  return 0;
}
