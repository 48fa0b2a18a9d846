// log_open_fuzzer: a log directory whose segment files, head-table checkpoint
// and control block come from the fuzzer, next to a valid varve.meta (64 KiB
// segments) -> verify_log, event_log::open (recovery), a full read, an append
// read back, close, and a reopen.
//
// Input layout (fuzz/log_input.h has the encoder the seed generator uses):
//   u8 flags_a, u8 flags_b, then seven sections, each a little-endian u16
//   length and that many bytes: segment 0 body, segment 0 footer, segment 1
//   body, segment 1 footer, checkpoint, control block, start record
//   (retention's DIR/start when non-empty; one of exactly 64 bytes gets its
//   magic, log id and checksum fixed up).
//   flags_a bit 0: segment 0 body is the whole file from offset 0 (raw); else
//                  it goes at offset 64 behind a valid header for segment 0
//           bit 1: segment 0 file is exactly the bytes given (else padded
//                  with zeros to 64 KiB, the footer section at its end)
//           bit 2: segment 1 exists;  bit 3, 4: as bits 0, 1 for segment 1
//           bit 5: the checkpoint file exists;  bit 6: varve.ctl exists
//           bit 7: recovery_mode::strict (else truncate_tail)
//   flags_b bit 0: fix up record positions and checksums in the bodies (walk
//                  the records by their lengths), so the checks behind the
//                  checksum are reached; a real crash never forges XXH3
//           bit 1: fix up footers' data_checksum and checksum
//           bit 2: fix up the checkpoint's log id and checksums
//           bit 3: the checkpoint is index/...001.heads (else ...000.heads)
//           bit 4: prepare_next_segment;  bits 5-6: durability none/group/sync
//           bit 7: append a batch of three (else one event)
//
// Checks: nothing crashes (ASan, UBSan, no SIGBUS); verify_log returns;
// open gives ok or a clean error (corruption, not_a_log, newer_format); when
// it opens: a full read ends or fails with errc::corruption only, the bulk
// reads and subscriptions read what next() reads (fuzz/read_paths.h), an append
// succeeds and reads back exactly (stream, versions, payloads, batch flags,
// sequence = next_sequence before the append), close succeeds, and after
// reopening the appended events are still there at the same positions.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/log_files.h"
#include "base/segment_format.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/log_input.h"
#include "fuzz/read_paths.h"
#include "varve/varve.h"

using namespace varve;
using namespace varve_fuzz;

namespace {

std::string payload_for(size_t i) {
  return "{\"fuzz\":" + std::to_string(i) + ",\"pad\":\"" + std::string(i * 7 % 40, 'x') + "\"}";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  open_input in;
  if (!parse_open_input(data, size, in)) return 0;

  static const std::string dir = scratch_root() + "/open";
  remove_tree(dir);
  const std::vector<file_image> files = build_open_files(in);
  std::filesystem::create_directories(dir + "/index");
  for (const file_image& f : files)
    FUZZ_CHECK(write_file(dir + "/" + f.name, f.bytes.data(), f.bytes.size()), "cannot write " + f.name);

  // verify reads whatever is there without modifying it: only "no crash".
  (void)verify_log(dir);

  log_options o;
  o.segment_bytes = kFuzzSegmentBytes;
  o.recovery = (in.flags_a & 0x80) ? recovery_mode::strict : recovery_mode::truncate_tail;
  o.prepare_next_segment = (in.flags_b & 0x10) != 0;
  const int mode = (in.flags_b >> 5) & 3;
  o.mode = mode == 1 ? durability::group : mode == 2 ? durability::sync : durability::none;

  auto opened = event_log::open(dir, o);
  if (!opened) {
    FUZZ_CHECK(clean_open_error(opened.error().code()), "open: " + opened.error().to_string());
    remove_tree(dir);
    return 0;
  }
  std::unique_ptr<event_log> log = std::move(opened.value());

  // A full read: every event validated, or a corruption error.
  {
    log_reader r = log->read();
    event_view v;
    uint64_t last = 0;
    for (size_t n = 0;; ++n) {
      auto more = r.next(v);
      if (!more) {
        FUZZ_CHECK(clean_read_error(more.error().code()), "read: " + more.error().to_string());
        break;
      }
      if (!more.value()) {
        FUZZ_CHECK(r.where() == log->committed_position(), "reader stopped before the commit position");
        break;
      }
      FUZZ_CHECK(v.position.value > last || n == 0, "positions do not increase");
      FUZZ_CHECK(v.position < log->committed_position(), "event past the commit position");
      last = v.position.value;
    }
  }

  // The bulk reads and the subscriptions hand out what next() hands out.
  // Their batch size (1-8 or 64) reuses flags_b bits 2-5: any size must
  // agree, so tying it to those choices loses nothing.
  {
    const size_t k = (in.flags_b >> 2) & 15;
    check_read_paths_agree(*log, k < 8 ? k + 1 : 64, "after open");
  }

  // An append, read back.
  const size_t count = (in.flags_b & 0x80) ? 3 : 1;
  std::vector<std::string> payloads;
  std::vector<event_data> events;
  for (size_t i = 0; i < count; ++i) payloads.push_back(payload_for(i));
  for (size_t i = 0; i < count; ++i)
    events.push_back({.type = 7, .payload = event_data::bytes(payloads[i]), .content = content_type::json});
  const std::string_view stream = "fuzz-append";
  const sequence seq_before = log->next_sequence();
  const stream_version version_before = log->version_of(stream);
  auto appended = log->append(stream, expected_version::any(), events);
  FUZZ_CHECK(appended.ok(), "append after recovery failed: " + appended.error().to_string());
  const append_result ar = appended.value();
  FUZZ_CHECK(ar.first_sequence == seq_before, "append got another sequence");
  FUZZ_CHECK(ar.first_version == version_before + 1 && ar.last_version == version_before + count,
             "append versions do not follow the stream's");
  auto read_back = [&](event_log& l, const char* when) {
    log_reader r = l.read(ar.first);
    event_view v;
    for (size_t i = 0; i < count; ++i) {
      auto more = r.next(v);
      FUZZ_CHECK(more.ok() && more.value(),
                 std::string(when) + ": appended event " + std::to_string(i) + " does not read back: " +
                     (more.ok() ? "end of log" : more.error().to_string()));
      FUZZ_CHECK(v.stream == stream && v.version == ar.first_version + i &&
                     v.sequence.value == ar.first_sequence.value + i && v.type == 7 &&
                     v.batch_begin == (i == 0) && v.batch_end == (i + 1 == count) &&
                     std::string_view(reinterpret_cast<const char*>(v.payload.data()), v.payload.size()) ==
                         payloads[i],
                 std::string(when) + ": appended event " + std::to_string(i) + " reads back differently");
      if (i == 0) FUZZ_CHECK(v.position == ar.first, when);
    }
    auto more = r.next(v);
    FUZZ_CHECK(more.ok() && !more.value(), std::string(when) + ": something follows the appended batch");
    FUZZ_CHECK(r.where() == ar.end, when);
  };
  read_back(*log, "after append");

  status closed = log->close();
  FUZZ_CHECK(closed.ok(), "close: " + closed.to_string());
  log.reset();

  // What was acknowledged survives a clean close and a reopen.
  auto again = event_log::open(dir, o);
  FUZZ_CHECK(again.ok(), "reopen after a clean close failed: " + again.error().to_string());
  read_back(*again.value(), "after reopen");
  FUZZ_CHECK(again.value()->version_of(stream) == ar.last_version, "stream version lost on reopen");
  again.value().reset();
  remove_tree(dir);
  return 0;
}
