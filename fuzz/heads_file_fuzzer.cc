// heads_file_fuzzer: bytes -> a head-table checkpoint file -> heads_file::read.
//
// Input: byte 0 is a control byte, the rest is the file.
//   bit 0: fix up both checksums (header and body) before writing the file,
//          so the parser behind them is reached (a real file always has
//          right checksums; the fuzzer cannot forge XXH3)
//   bit 1: read with the log id the file claims (else a fixed other one,
//          which must be rejected)
// Checks: read returns ok or errc::corruption, never anything else, never a
// crash or an out-of-bounds read (the file is read into an exact-size buffer);
// with a foreign log id it never succeeds; when it succeeds, writing the table
// back with heads_file::write and reading that gives the same table and info
// (streams with version 0 are not written, by design).
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "base/log_files.h"
#include "fuzz/fuzz_util.h"
#include "index/head_table.h"
#include "index/heads_file.h"
#include "varve/file_system.h"

using namespace varve;

namespace {

constexpr uint64_t kOtherLogId = 0x0123456789abcdefull;

using table_map = std::map<std::string, std::tuple<uint64_t, uint64_t, bool>>;

table_map snapshot(const head_table& t, bool skip_version0) {
  table_map m;
  t.for_each([&](std::string_view s, bool integer, const head_table::head& h) {
    if (skip_version0 && h.version == 0) return;
    m[std::string(s)] = {h.version, h.last_position, integer};
  });
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t ctl = data[0];
  std::vector<std::byte> file(reinterpret_cast<const std::byte*>(data + 1),
                              reinterpret_cast<const std::byte*>(data + size));
  if ((ctl & 1) && file.size() >= 64) {
    varve_fuzz::put64(file.data() + 48, XXH3_64bits(file.data() + 64, file.size() - 64));
    varve_fuzz::put64(file.data() + 56, XXH3_64bits(file.data(), 56));
  }
  const uint64_t claimed = file.size() >= 24 ? varve_fuzz::le64(file.data() + 16) : 0;
  const uint64_t log_id = (ctl & 2) ? claimed : kOtherLogId;

  static const std::string dir = varve_fuzz::scratch_root() + "/heads";
  static const bool made = [] {
    std::filesystem::create_directories(dir + "/index");
    std::filesystem::create_directories(dir + "/rewrite");
    return true;
  }();
  (void)made;
  const std::string path = dir + "/index/" + log_files::heads_name(7);
  FUZZ_CHECK(varve_fuzz::write_file(path, file.data(), file.size()), "cannot write " + path);

  file_system& fs = *posix_file_system();
  heads_file::checkpoint_info info;
  head_table table;
  status st = heads_file::read(fs, path, log_id, info, table);
  FUZZ_CHECK(st.ok() || st.code() == errc::corruption,
             "heads_file::read gave " + st.to_string());
  if (!st.ok()) return 0;
  FUZZ_CHECK(log_id == claimed, "accepted a checkpoint of another log");

  // Re-write and re-read: the same table (minus version-0 entries, which
  // write drops: a stream at version 0 does not exist).
  const table_map before = snapshot(table, true);
  const std::string rewrite_dir = dir + "/rewrite";
  st = heads_file::write(fs, rewrite_dir, log_id, info, table);
  FUZZ_CHECK(st.ok(), "heads_file::write failed: " + st.to_string());
  heads_file::checkpoint_info info2;
  head_table table2;
  const std::string path2 = rewrite_dir + "/" + log_files::heads_name(info.last_segment);
  st = heads_file::read(fs, path2, log_id, info2, table2);
  FUZZ_CHECK(st.ok(), "re-reading a written checkpoint failed: " + st.to_string());
  FUZZ_CHECK(info2.last_segment == info.last_segment && info2.next_sequence == info.next_sequence,
             "checkpoint info changed on rewrite");
  FUZZ_CHECK(info2.entries == before.size(),
             "rewritten entry count " + std::to_string(info2.entries) + " != " +
                 std::to_string(before.size()));
  FUZZ_CHECK(snapshot(table2, false) == before, "rewritten table differs");
  varve_fuzz::remove_tree(path2);
  return 0;
}
