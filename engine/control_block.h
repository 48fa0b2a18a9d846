// The control block DIR/varve.ctl: a small shared mapping through which the
// writer publishes its watermarks to readers in any process.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "varve/file_system.h"
#include "varve/metrics.h"
#include "varve/status.h"

namespace varve {

//  4096 bytes; every watermark on its own cache line:
//  0   8  magic "VARVECTL"
//  8   4  format_version (1)
//  12  4  reserved
//  16  8  log_id
//  24  8  writer_pid (0 when no writer has it open)
//  64  8  commit_position   end of what readers may read (release store)
//  72  8  next_sequence     sequence number the next event will get
//  128 8  durable_position  end of what survives a power loss
//  192 4  wake_seq          bumped by the writer when it wakes parked followers
//  196 4  waiters           how many followers are (about to be) parked on wake_seq
//  256 8  clean_end         end of the log at the last clean close (0 = none)
//  264 8  clean_check       XXH3-64 of (log_id, clean_end): a torn or stale word fails it
//  272 16 boot_id           the boot (kernel boot_id) of the writer session that wrote it
//  288 8  boot_check        XXH3-64 of (log_id, boot_id)
//  320 8  poison_from       a sync failed: bytes from here on may be missing on disk
//  328 8  poison_ns         when (CLOCK_REALTIME)
//  336 4  poison_code       the errc of the failure
//  344 8  poison_check      XXH3-64 of (log_id, poison_from, poison_ns, poison_code); 0 = none
//  1024..1535 the session's counters (ctl_counter below; FORMAT.md section 6),
//             zeroed by begin_session: operators' figures, never read by recovery
// Everything recovery reads lies in the first 512-byte sector, which a power
// loss writes whole or not at all. Recovery reads it before the writer
// rewrites it (read_state): within the boot that wrote it, the page cache
// holds every byte the writer stored, so `commit` bounds what was
// acknowledged; after a reboot only `durable` does (FORMAT.md section 6).
//
// Wake-up protocol (followers in this or other processes; FORMAT.md section 6).
// Both words are u32 futex words on one cache line, used through shared
// (not FUTEX_PRIVATE) futexes: the file is MAP_SHARED, so every process's
// mapping names the same page and the kernel keys the futex by file and
// offset.
//   writer, after the release store of commit_position (notify_commit):
//     compiler barrier; [full fence only where membarrier is unavailable];
//     if (waiters != 0) { wake_seq += 1; FUTEX_WAKE(wake_seq, all) }
//   follower, when the commit position has not moved past what it has read:
//     spin a little re-reading commit_position, then
//     waiters += 1; heavy barrier (membarrier GLOBAL_EXPEDITED, else a fence);
//     loop { s = wake_seq; if commit moved or cancelled: break;
//            FUTEX_WAIT(wake_seq, s, slice) }   // slice: 100 ms, 1 ms without membarrier
//     waiters -= 1 (never below 0)
// Why no wake-up is lost: the writer stores commit then loads waiters; the
// follower stores waiters then loads commit. That store-then-load pair on each
// side needs a StoreLoad barrier, or each can miss the other's store (x86's
// store buffer allows it). A fence on every append would stall the writer
// until its record stores drain, so the writer's side is only a compiler
// barrier and the follower pays instead: membarrier(GLOBAL_EXPEDITED) runs a
// full barrier on every running thread of the processes that registered
// (every writer does at open), before the follower reads commit again. If the
// writer saw waiters == 0, its commit store is visible to that re-read; if it
// saw the follower, it bumps wake_seq after the commit, so the follower either
// sees the new wake_seq (FUTEX_WAIT returns at once) or is woken. The price:
// each park interrupts the writer's CPU if a writer thread is running then
// (an IPI, about a microsecond), and parks happen only after the spin, when
// the writer has been quiet for a while. Where
// membarrier is missing (old kernel, seccomp), the writer fences each append
// and a follower parks in 1 ms slices, so a miss costs at most that.
// A follower killed while parked leaves `waiters` raised; the writer then
// wakes nobody on every commit, and after kStaleWakes such commits in a row
// resets it to 0 (a follower registering at that instant loses at most one
// slice).
// The writer session's counters (byte offsets into varve.ctl). Grouped by
// who writes them, each group on cache lines of its own: the appender's line
// is written on every append, so nothing a reader polls shares it.
enum class ctl_counter : uint16_t {
  version = 1024,            // u64: 1 once begin_session zeroed the counters
  session_start_ns = 1032,
  start_sequence = 1040,     // next_sequence and commit at the session's open:
  start_position = 1048,     //   events and bytes appended are the distance from them
  open_ns = 1056,
  recovery_cut = 1064,       // recovery_action kinds, in enum order
  recovery_set_aside = 1072,
  recovery_removed_empty = 1080,
  recovery_hole = 1088,
  recovery_rebuilt = 1096,
  recovery_note = 1104,
  recovery_bytes = 1112,
  append_calls = 1152,       // the appender's line
  append_conflicts = 1160,
  append_refusals = 1168,
  rollovers = 1216,          // roll-over and seal (writer and sealer)
  rollovers_waited = 1224,
  longest_rollover_wait_ns = 1232,
  longest_seal_wait_ns = 1240,
  segments_sealed = 1248,
  syncs = 1280,              // syncs, all through the durability gate
  sync_failures = 1288,
  sync_bytes = 1296,
  sync_ns_total = 1304,
  longest_sync_ns = 1312,
  sync_bucket0 = 1320,       // kSyncBuckets u64, to 1512
};
inline constexpr size_t kCountersBegin = 1024, kCountersEnd = 1536;
static_assert(static_cast<size_t>(ctl_counter::sync_bucket0) + 8 * kSyncBuckets <= kCountersEnd);

// What the last writer session left in varve.ctl, read without mapping it.
struct ctl_state {
  bool present = false;    // the file exists with its full size
  bool valid = false;      // magic, log_id and the watermarks are plausible
  std::string why;         // why not valid (for reports)
  bool same_boot = false;  // written during this boot (boot_id matches and checks)
  uint64_t writer_pid = 0;
  uint64_t commit = 0;
  uint64_t next_sequence = 0;
  uint64_t durable = 0;
  uint64_t clean_end = 0;  // 0 unless the marker checks
  bool poisoned = false;   // a sync failed in that session (poison words check)
  uint64_t poison_from = 0;
  uint64_t poison_ns = 0;
  errc poison_code = errc::ok;
};

// This boot's identity (/proc/sys/kernel/random/boot_id), all zero when
// unknown (then no session ever counts as "this boot"). VARVE_BOOT_ID in the
// environment overrides it: power-loss tests open a crash image "after a
// reboot" in the same process; never set it in production.
const std::array<uint8_t, 16>& current_boot_id();
namespace test_hooks {
// Replaces current_boot_id() for this process (a simulated reboot).
void set_boot_id(const std::array<uint8_t, 16>& id);
}

class control_block {
 public:
  static constexpr uint64_t kSize = 4096;
  // Writer: creates or overwrites the file and maps it read-write.
  static result<std::unique_ptr<control_block>> create(std::shared_ptr<file_system> fs,
                                                       const std::string& dir, uint64_t log_id);
  // Follower: maps the existing file (read-only unless `access` says otherwise:
  // parking needs to write `waiters`) and checks it belongs to log_id.
  static result<std::unique_ptr<control_block>> open(std::shared_ptr<file_system> fs,
                                                     const std::string& dir, uint64_t log_id,
                                                     map_access access = map_access::read_only);
  ~control_block();

  std::atomic_ref<uint64_t> commit() const { return ref(64); }
  std::atomic_ref<uint64_t> next_sequence() const { return ref(72); }
  std::atomic_ref<uint64_t> durable() const { return ref(128); }
  std::atomic_ref<uint64_t> writer_pid() const { return ref(24); }
  std::atomic_ref<uint32_t> wake_seq() const { return ref32(192); }
  std::atomic_ref<uint32_t> waiters() const { return ref32(196); }
  // Retention's doorbell: the writer stores the log's first segment here
  // after DIR/start is durable. Readers in other processes re-read DIR/start
  // when it changes (it is a hint: DIR/start, checksummed, is the truth).
  std::atomic_ref<uint64_t> start_hint() const { return ref(352); }
  // Stream lifecycle's doorbell: the valid end of DIR/streams, stored by the
  // writer at open and after each change is durable. Readers in other
  // processes re-read DIR/streams when it differs from what they read.
  std::atomic_ref<uint64_t> lifecycle_hint() const { return ref(360); }

  // --- counters (ctl_counter): written by the writer session only ---
  std::atomic_ref<uint64_t> counter(ctl_counter c) const { return ref(static_cast<size_t>(c)); }
  // From any thread of the writer process.
  void add(ctl_counter c, uint64_t n = 1) { counter(c).fetch_add(n, std::memory_order_relaxed); }
  void raise_to(ctl_counter c, uint64_t v) {
    auto r = counter(c);
    uint64_t cur = r.load(std::memory_order_relaxed);
    while (v > cur && !r.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
  }
  // The appender's own counters: one thread writes them, so a plain
  // load and store (no locked instruction on the hot path).
  void bump_single_writer(ctl_counter c) {
    auto r = counter(c);
    r.store(r.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // A sync of `bytes` took `ns` (ok or failed): count, sum, maximum, histogram.
  void note_sync(uint64_t ns, uint64_t bytes, bool ok);
  // Copies the counters out (a reader's view; each word read atomically).
  void read_counters(uint64_t (&out)[(kCountersEnd - kCountersBegin) / 8]) const;

  // Writer, right after publishing a commit. When nobody waits: one load.
  void notify_commit() {
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the load stays after the store
    if (writer_fences_) [[unlikely]]
      std::atomic_thread_fence(std::memory_order_seq_cst);
    if (waiters().load(std::memory_order_relaxed) != 0) [[unlikely]] wake_parked();
  }

  // Follower side (needs a read-write mapping). register_waiter() before the
  // last look at the commit position, unregister_waiter() once done waiting.
  bool writable() const { return writable_; }
  void register_waiter();
  void unregister_waiter();
  // Sleeps until wake_seq differs from `seen`, a wake, or `timeout`.
  void park(uint32_t seen, std::chrono::nanoseconds timeout) const;
  // Wakes every parked follower (cancel, shutdown): they re-check and carry on.
  void wake_all();
  // The longest single park: a lost wake-up (or a writer that died) costs at most this.
  static std::chrono::nanoseconds park_slice();

  // The clean-close marker: lets the next open skip checking that the rest of
  // the active segment is zero. Only a hint; a mismatch means "check".
  void set_clean_end(uint64_t log_id, uint64_t end);
  // Clears the marker and, when `durable`, syncs the page: a stale marker
  // must never survive a power loss once new records may follow it.
  status clear_clean_end(bool durable);
  // Reads what the last writer session left, without mapping the file.
  static ctl_state read_state(file_system& fs, const std::string& dir, uint64_t log_id);

  // Writer, at open: stamps this boot's id, clears any poison mark, zeroes
  // the counters and records where the session starts.
  void begin_session(uint64_t log_id, uint64_t next_sequence, uint64_t commit);
  // A sync failed: from `from` on the disk may lack what the page cache
  // holds, and a reopen in this boot must not trust those pages. Written
  // into the page cache at once (a reopen in this boot reads it there) and
  // synced as well as the failing disk allows.
  void set_poison(uint64_t log_id, uint64_t from, errc code);
  // msync of the whole control block: records the durable watermark on disk.
  status sync();
  uint64_t log_id() const;

 private:
  control_block(std::shared_ptr<file_system> fs, file_handle f, std::byte* data, bool writable)
      : fs_(std::move(fs)), file_(std::move(f)), data_(data), writable_(writable) {}
  std::atomic_ref<uint64_t> ref(size_t off) const {
    return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(data_ + off));
  }
  std::atomic_ref<uint32_t> ref32(size_t off) const {
    return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(data_ + off));
  }
  void wake_parked();  // the writer's slow path, which also heals a stale count
  static constexpr uint32_t kStaleWakes = 1024;
  std::shared_ptr<file_system> fs_;
  file_handle file_;
  std::byte* data_;
  bool writable_;
  bool writer_fences_ = false;  // membarrier is unavailable: fence every commit
  uint32_t idle_wakes_ = 0;     // writer: consecutive wakes that found nobody parked
};

}  // namespace varve
