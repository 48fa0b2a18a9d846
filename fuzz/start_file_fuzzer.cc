// start_file_fuzzer: bytes -> DIR/start (retention's start record) -> decode.
//
// Input: byte 0 is a control byte, the rest is the file.
//   bit 0: fix up the XXH3 at offset 56 first, so the checks behind it are
//          reached (the fuzzer cannot forge XXH3)
//   bit 1: decode with the log id the file claims (else a fixed other one,
//          which must be rejected)
// Checks: decode returns ok, corruption or newer_format, never anything else,
// never a crash or an out-of-bounds read (an exact-size buffer); a foreign
// log id never loads; a record that loads encodes back to the same bytes.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/coding.h"
#include "base/start_file.h"

using namespace varve;

namespace {
constexpr uint64_t kOtherLogId = 0x0123456789abcdefull;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t ctl = data[0];
  std::vector<std::byte> file(reinterpret_cast<const std::byte*>(data + 1),
                              reinterpret_cast<const std::byte*>(data + size));
  if ((ctl & 1) && file.size() >= start_file::kSize)
    coding::put_u64(file.data() + 56, XXH3_64bits(file.data(), 56));
  const uint64_t claimed = file.size() >= 24 ? coding::get_u64(file.data() + 16) : 0;
  const uint64_t log_id = (ctl & 2) ? claimed : kOtherLogId;
  start_file::record r;
  const status s = start_file::decode(file.data(), file.size(), "start", log_id, r);
  if (!s.ok() && s.code() != errc::corruption && s.code() != errc::newer_format) std::abort();
  if (!s.ok()) return 0;
  if (log_id != claimed) std::abort();  // a foreign record loaded
  std::byte again[start_file::kSize];
  start_file::encode(again, r);
  // Reserved fields are not kept: compare what the decoder gives meaning to.
  start_file::record back;
  if (!start_file::decode(again, sizeof again, "start", log_id, back).ok()) std::abort();
  if (back.first_segment != r.first_segment || back.first_sequence != r.first_sequence ||
      back.removed_at_ns != r.removed_at_ns || back.log_id != r.log_id)
    std::abort();
  return 0;
}
