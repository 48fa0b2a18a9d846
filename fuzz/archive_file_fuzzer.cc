// archive_file_fuzzer: bytes -> the archive tier's files (FORMAT.md 1c):
// DIR/archive (the location record) and an archived segment (.varc).
//
// Input: byte 0 is a control byte, the rest is the file.
//   bit 0: 0 = a location record, 1 = an archived segment
//   bit 1: fix up the checksums first (the location's at 56; a segment's
//          header checksum at 56 and its frame table's), so the checks
//          behind them are reached (the fuzzer cannot forge XXH3)
//   bit 2: open with the log id (and, for a segment, the index and
//          capacity) the file claims, else fixed other ones, which must be
//          rejected
// Checks: every call returns ok, corruption or newer_format, never anything
// else, never a crash or an out-of-bounds read; a foreign log never loads;
// a location that loads encodes back to the same bytes; a frame that
// inflates is exactly what its checksum vouches for, and one that does not
// leaves its buffer zero.
#include <unistd.h>
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/archive_file.h"
#include "base/coding.h"
#include "fuzz/fuzz_util.h"

using namespace varve;

namespace {
constexpr uint64_t kOtherLogId = 0x0123456789abcdefull;

bool allowed(const status& s) {
  return s.ok() || s.code() == errc::corruption || s.code() == errc::newer_format;
}

void location(std::vector<std::byte>& file, uint8_t ctl) {
  if ((ctl & 2) && file.size() >= archive_file::kLocationHeader)
    coding::put_u64(file.data() + 56,
                    XXH3_64bits_withSeed(file.data() + archive_file::kLocationHeader,
                                         file.size() - archive_file::kLocationHeader, XXH3_64bits(file.data(), 56)));
  const uint64_t claimed = file.size() >= 24 ? coding::get_u64(file.data() + 16) : 0;
  const uint64_t log_id = (ctl & 4) ? claimed : kOtherLogId;
  archive_file::location l;
  const status s = archive_file::decode_location(file.data(), file.size(), "archive", log_id, l);
  if (!allowed(s)) std::abort();
  if (!s.ok()) return;
  if (log_id != claimed) std::abort();  // a foreign record loaded
  const std::vector<std::byte> again = archive_file::encode_location(l);
  archive_file::location back;
  if (!archive_file::decode_location(again.data(), again.size(), "archive", log_id, back).ok()) std::abort();
  if (back.archive_end != l.archive_end || back.dir != l.dir || back.archived_at_ns != l.archived_at_ns)
    std::abort();
}

void segment_file(std::vector<std::byte>& file, uint8_t ctl) {
  const size_t hdr = archive_file::kHeaderSize;
  if ((ctl & 2) && file.size() >= hdr) {
    // The file size the header states, and the table's checksum where the
    // table fits, then the header's.
    coding::put_u64(file.data() + 40, file.size());
    const uint64_t count = coding::get_u32(file.data() + 32);
    const uint64_t table = count * archive_file::kEntrySize;
    if (count < (1u << 20) && hdr + table + 8 <= file.size())
      coding::put_u64(file.data() + hdr + table, XXH3_64bits(file.data() + hdr, table));
    coding::put_u64(file.data() + 56, XXH3_64bits(file.data(), 56));
  }
  const bool claim = (ctl & 4) && file.size() >= hdr;
  const uint8_t log2 = claim ? static_cast<uint8_t>(file[12]) : 16;
  const uint64_t index = claim ? coding::get_u64(file.data() + 16) : 7;
  const uint64_t log_id = claim ? coding::get_u64(file.data() + 24) : kOtherLogId;
  if (log2 < 16 || log2 > 20) return;  // frames up to 1 MiB: enough, and fast
  const std::string path = varve_fuzz::scratch_root() + "/archive-" + std::to_string(::getpid()) + ".varc";
  if (!varve_fuzz::write_file(path, file.data(), file.size())) std::abort();
  auto fs = posix_file_system();
  auto r = archive_file::segment_reader::open(*fs, path, log2, index, log_id);
  if (!allowed(r.ok() ? status{} : r.error())) std::abort();
  if (!r) return;
  if (!claim || log_id != coding::get_u64(file.data() + 24)) std::abort();  // a foreign segment loaded
  std::vector<std::byte> buf(r.value()->frame_bytes());
  for (uint32_t i = 0; i < r.value()->frame_count() && i < 64; ++i) {
    std::memset(buf.data(), 0, buf.size());
    const status s = r.value()->read_frame(i, buf.data());
    if (!allowed(s)) {
      std::fprintf(stderr, "%s\n", s.to_string().c_str());
      std::abort();
    }
    if (s.ok()) {
      const uint64_t want = coding::get_u64(file.data() + hdr + uint64_t{i} * archive_file::kEntrySize + 16);
      if (XXH3_64bits(buf.data(), buf.size()) != want) std::abort();  // bytes its checksum does not vouch for
    } else {
      for (std::byte b : buf)
        if (b != std::byte{0}) std::abort();  // half-inflated bytes left for a reader
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t ctl = data[0];
  std::vector<std::byte> file(reinterpret_cast<const std::byte*>(data + 1),
                              reinterpret_cast<const std::byte*>(data + size));
  if (ctl & 1)
    segment_file(file, ctl);
  else
    location(file, ctl);
  return 0;
}
