// Recovery's shared pieces: the guard (how far varve.ctl says the log was
// acknowledged), the byte-level helpers that look past a damaged record, and
// the read-only judgement of a log's true end that read-only opens, verify
// and stat use when no writer is alive. The writer's recovery itself is
// recover() in log_state.h; repair_log() (admin.h) builds on the same pieces.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/scan.h"
#include "base/segment.h"
#include "engine/control_block.h"
#include "varve/options.h"
#include "varve/status.h"

namespace varve {
class segment_table;
}

namespace varve::detail {

// Below `position`, every record was acknowledged: a record that fails there
// is damage, never a torn write.
struct recovery_guard {
  uint64_t position = 0;
  std::string what;  // for messages: "the committed position 4096 (varve.ctl, this boot)"
};
recovery_guard guard_from(const ctl_state& ctl, const std::string& ctl_path);

// The first 8-aligned offset in [from, to) of `seg` where a record (event,
// segment end or hole) validates, with its own position and checksum; `to`
// when there is none. Costs a few loads per offset (the position is checked
// before the checksum).
uint64_t find_valid_record(const segment& seg, uint64_t from, uint64_t to);
// Records that validate in [from, to), hopping over each one found.
uint64_t find_valid_record(const std::byte* data, uint64_t records_end, uint64_t base, uint64_t from,
                           uint64_t to);
uint64_t count_valid_records(const segment& seg, uint64_t from, uint64_t to);
// Whether any record of segment `index` validates anywhere in the file at
// `path` (its header aside, which may be what is damaged).
result<bool> file_holds_records(file_system& fs, const std::string& path, uint64_t index, uint8_t log2);
// Just past the last non-zero byte of [from, to), rounded up to 8; `from` if
// all are zero.
uint64_t nonzero_end(const std::byte* data, uint64_t from, uint64_t to);
// Whether bytes [from, size) of the file at `path` are all zero (read with
// pread, in slices: for files whose header cannot be trusted to map them).
result<bool> file_is_zero_from(file_system& fs, const std::string& path, uint64_t from);

class lost_found;

// How recovery and repair tell the observer (and lost+found/REPORT) what they did.
using reporter = std::function<void(recovery_action)>;
reporter make_reporter(recovery_observer* observer, lost_found& lf);

// Replaces [from, to) of a writable segment with a hole record standing for
// the events [first_seq, first_seq + count), after copying the bytes into
// lost+found/ (durably); then syncs it. to - from >= record::kHoleMinSize.
status make_hole(file_system& fs, segment& seg, uint64_t from, uint64_t to, uint64_t first_seq,
                 uint64_t count, const std::string& why, lost_found& lf, reporter& report);
// In a segment whose scan stopped at a damaged record, the start of the first
// batch after it (below `limit`) that continues the log: a valid event record
// beginning a batch, with a sequence number not below the expected one.
// `limit` (or the record area's end) when there is none.
uint64_t find_continuation(const segment& seg, const segment_scan& r, uint64_t limit);
uint64_t sequence_at(const segment& seg, uint64_t off);
// Writes the header segment `index` must have (it is fully determined by the
// log and the index), after keeping the old bytes in lost+found/.
status rebuild_header(file_system& fs, const segment::identity& id, uint64_t index,
                      const std::string& path, lost_found& lf, reporter& report);

// Where the log really ends, judged without changing anything (read-only
// opens, verify, stat when no writer holds the lock). `end` is the position
// just past the last complete batch; when damage lies below the guard,
// `damage` says where and `end` is the guard (readers then meet the damaged
// record and report it, rather than see a shorter log).
struct log_end {
  uint64_t end = 0;
  uint64_t first_segment = 0;
  status damage;        // not ok: damage below the guard (or a missing segment)
  std::string torn;     // damage above the guard: what a writer's open would cut
};
result<log_end> find_log_end(file_system& fs, segment_table& table, const std::string& dir,
                             uint64_t log_id, uint8_t log2, const ctl_state& ctl);

}  // namespace varve::detail
