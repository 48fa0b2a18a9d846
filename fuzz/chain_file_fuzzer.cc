// chain_file_fuzzer: bytes -> a tamper-evident chain file -> chain::read.
//
// Input: byte 0 is a control byte, the rest is the file.
//   bit 0: fix up the header's and every whole entry's XXH3 before writing
//          the file, so the parser behind them is reached (the fuzzer cannot
//          forge XXH3)
//   bit 1: read with the log id the file claims (else a fixed other one,
//          which must be rejected)
// Checks: read returns ok, corruption or newer_format, never anything else,
// never a crash or an out-of-bounds read (the file is read into an
// exact-size buffer); a foreign log id never loads; entries that load follow
// each other and end where the next append goes; writing them back with
// chain::create and chain::append and reading that gives the same entries.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/chain.h"
#include "fuzz/fuzz_util.h"
#include "varve/file_system.h"

using namespace varve;

namespace {
constexpr uint64_t kOtherLogId = 0x0123456789abcdefull;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t ctl = data[0];
  std::vector<std::byte> file(reinterpret_cast<const std::byte*>(data + 1),
                              reinterpret_cast<const std::byte*>(data + size));
  if ((ctl & 1) && file.size() >= chain::kHeaderSize) {
    varve_fuzz::put64(file.data() + 56, XXH3_64bits(file.data(), 56));
    for (size_t at = chain::kHeaderSize; at + chain::kEntrySize <= file.size(); at += chain::kEntrySize)
      varve_fuzz::put64(file.data() + at + 56, XXH3_64bits(file.data() + at, 56));
  }
  const uint64_t claimed = file.size() >= 24 ? varve_fuzz::le64(file.data() + 16) : 0;
  const uint64_t log_id = (ctl & 2) ? claimed : kOtherLogId;

  static const std::string dir = varve_fuzz::scratch_root() + "/chain";
  static const bool made = [] {
    std::filesystem::create_directories(dir + "/in");
    std::filesystem::create_directories(dir + "/rewrite");
    return true;
  }();
  (void)made;
  const std::string path = dir + "/in/" + chain::kFileName;
  FUZZ_CHECK(varve_fuzz::write_file(path, file.data(), file.size()), "cannot write " + path);

  file_system& fs = *posix_file_system();
  auto got = chain::read(fs, dir + "/in", log_id);
  FUZZ_CHECK(got.ok() || got.error().code() == errc::corruption || got.error().code() == errc::newer_format,
             "chain::read gave " + got.error().to_string());
  if (!got.ok()) return 0;
  FUZZ_CHECK(log_id == claimed, "accepted the chain of another log");
  const chain::contents& c = got.value();
  FUZZ_CHECK(c.end == chain::kHeaderSize + c.entries.size() * chain::kEntrySize, "end is not after the entries");
  FUZZ_CHECK(c.end <= file.size(), "end past the file");
  for (size_t i = 1; i < c.entries.size(); ++i)
    FUZZ_CHECK(c.entries[i].segment_index == c.entries[i - 1].segment_index + 1, "entries do not follow each other");

  // Write back and read again: the same entries.
  const std::string rewrite = dir + "/rewrite";
  (void)fs.remove(rewrite + "/" + chain::kFileName);
  status st = chain::create(fs, rewrite, log_id);
  FUZZ_CHECK(st.ok(), "chain::create failed: " + st.to_string());
  uint64_t at = chain::kHeaderSize;
  for (const chain::entry& e : c.entries) {
    st = chain::append(fs, rewrite, at, e);
    FUZZ_CHECK(st.ok(), "chain::append failed: " + st.to_string());
    at += chain::kEntrySize;
  }
  auto again = chain::read(fs, rewrite, log_id);
  FUZZ_CHECK(again.ok(), "re-reading a written chain failed: " + again.error().to_string());
  FUZZ_CHECK(!again.value().torn_tail && again.value().entries.size() == c.entries.size(),
             "rewritten chain differs in length");
  for (size_t i = 0; i < c.entries.size(); ++i)
    FUZZ_CHECK(again.value().entries[i].segment_index == c.entries[i].segment_index &&
                   again.value().entries[i].hash == c.entries[i].hash,
               "rewritten entry " + std::to_string(i) + " differs");
  return 0;
}
