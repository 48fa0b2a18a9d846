// streams_file_fuzzer: bytes -> DIR/streams (stream lifecycle's journal,
// FORMAT.md 5e) -> lifecycle_view::load, then a writer's change on top.
//
// Input: byte 0 is a control byte, the rest is the file.
//   bit 0: fix up the header's XXH3 and that of every entry its own length
//          field frames, so the parser behind them is reached (the fuzzer
//          cannot forge XXH3)
//   bit 1: load with the log id the file claims (else a fixed other one,
//          which must be refused)
//   bit 2: then record a change through lifecycle_journal (a copy's torn
//          tail is cut, the entry appended, synced, read back)
// Checks: load returns ok, corruption or newer_format, never anything else,
// never a crash or an out-of-bounds read; a foreign log id never loads; a
// view that loads has every stream once, 1..255 bytes, with some metadata,
// sorted by hash, found by find() and let through by the filter; its change numbers are at most the
// last; a change on top of it loads back as the next number with exactly the
// metadata given, every other stream's unchanged.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/coding.h"
#include "engine/lifecycle/stream_lifecycle.h"
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
  if (ctl & 1) {
    if (file.size() >= 64) varve_fuzz::put64(file.data() + 56, XXH3_64bits(file.data(), 56));
    for (size_t at = 64; at + 72 <= file.size();) {
      const uint32_t len = coding::get_u32(file.data() + at);
      if (len < 72 || len % 8 || len > file.size() - at) break;
      varve_fuzz::put64(file.data() + at + len - 8, XXH3_64bits(file.data() + at, len - 8));
      at += len;
    }
  }
  const uint64_t claimed = file.size() >= 24 ? coding::get_u64(file.data() + 16) : 0;
  const uint64_t log_id = (ctl & 2) ? claimed : kOtherLogId;

  static const std::string dir = varve_fuzz::scratch_root() + "/streams";
  static const bool made = [] {
    std::filesystem::create_directories(dir);
    return true;
  }();
  (void)made;
  FUZZ_CHECK(varve_fuzz::write_file(dir + "/streams", file.data(), file.size()), "cannot write streams");
  auto fs = posix_file_system();
  auto v = detail::lifecycle_view::load(*fs, dir, log_id);
  FUZZ_CHECK(v.ok() || v.error().code() == errc::corruption || v.error().code() == errc::newer_format,
             "load gave " + v.error().to_string());
  if (!v.ok()) return 0;
  FUZZ_CHECK(log_id == claimed, "the journal of another log loaded");
  const detail::lifecycle_view& view = *v.value();
  FUZZ_CHECK(view.journal_end() >= 64 && view.journal_end() <= file.size(), "journal end outside the file");
  std::map<std::string, stream_metadata> model;
  uint64_t prev_hash = 0;
  for (const auto& i : view.items()) {
    const stream_metadata_entry& e = i.entry;
    FUZZ_CHECK(!e.stream.empty() && e.stream.size() <= 255, "stream id size");
    FUZZ_CHECK(e.metadata.any(), "an entry without metadata is kept");
    FUZZ_CHECK(e.change_number >= 1 && e.change_number <= view.last_change(), "change number out of range");
    FUZZ_CHECK(i.hash >= prev_hash, "items not sorted by hash");
    prev_hash = i.hash;
    FUZZ_CHECK(model.emplace(e.stream, e.metadata).second, "a stream twice");
    const stream_metadata* f = view.find(e.stream);
    FUZZ_CHECK(f && *f == e.metadata, "find() does not give the stream's metadata");
    FUZZ_CHECK(view.maybe(e.stream), "the filter rules out a stream with metadata");
  }

  if (!(ctl & 4)) return 0;
  // A writer's change on top: the next number, exactly what was given.
  const std::string stream = model.empty() ? std::string("fuzz") : model.begin()->first;
  stream_metadata next;
  next.truncate_before = size;
  next.max_count = data[size - 1];
  detail::lifecycle_journal j(fs, dir, log_id, v.value());
  auto after = j.change(stream, false, next, 0, 1);
  FUZZ_CHECK(after.ok(), "a change on a loaded journal failed: " + after.error().to_string());
  FUZZ_CHECK(after.value()->last_change() == view.last_change() + 1, "the change is not the next number");
  const stream_metadata* got = after.value()->find(stream);
  FUZZ_CHECK(got && *got == next, "the change does not read back");
  for (const auto& [s, m] : model) {
    if (s == stream) continue;
    const stream_metadata* o = after.value()->find(s);
    FUZZ_CHECK(o && *o == m, "another stream's metadata changed");
  }
  return 0;
}
