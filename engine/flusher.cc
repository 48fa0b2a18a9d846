#include "engine/flusher.h"

#include <unistd.h>

#include <algorithm>

#include "base/segment_format.h"

namespace varve {

durability_tracker::durability_tracker(detail::shared_log& log, const config& c)
    : log_(log), cfg_(c), durable_(c.history_synced ? c.end_at_open : c.durable_at_open) {
  log_.ctl->durable().store(durable_.load(std::memory_order_relaxed), std::memory_order_release);
}

durability_tracker::~durability_tracker() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
}

void durability_tracker::start(durability mode, std::chrono::microseconds interval,
                               uint64_t wake_bytes) {
  if (mode == durability::none) {
    recorder_only_ = true;  // the thread starts on the first flush (request_record)
    return;
  }
  group_ = mode == durability::group;
  interval_ = interval;
  wake_bytes_ = wake_bytes ? wake_bytes : 1;
  thread_ = std::thread([this] { run(); });
}

void durability_tracker::request_record() {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (stop_ || record_wanted_) return;
    record_wanted_ = true;
    if (!thread_.joinable()) {
      thread_ = std::thread([this] { run(); });
      return;
    }
  }
  cv_.notify_one();
}

status durability_tracker::failure() const {
  std::lock_guard<std::mutex> g(mu_);
  return failed_;
}

status durability_tracker::fail_locked(const status& why) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (failed_.ok()) {
      failed_ = status(why.code() == errc::no_space ? errc::no_space : errc::io_error,
                       why.message() + " (the log refuses writes until it is reopened)");
      failed_flag_.store(true, std::memory_order_release);
      // Crash story: the kernel may already have dropped the pages that
      // failed, while the page cache still shows them; a reopen in this
      // boot would take them for durable. The mark makes it refuse instead.
      log_.ctl->set_poison(log_.ctl->log_id(), durable_.load(std::memory_order_relaxed), why.code());
    }
  }
  done_cv_.notify_all();
  return failure();
}

status durability_tracker::timed(uint64_t bytes, const std::function<status()>& sync) {
  const auto t0 = std::chrono::steady_clock::now();
  status s = sync();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0);
  log_.ctl->note_sync(static_cast<uint64_t>(ns.count()), bytes, s.ok());
  return s;
}

status durability_tracker::gated(const std::function<status()>& sync, uint64_t bytes) {
  std::lock_guard<std::mutex> gate(sync_mu_);
  if (has_failed()) return failure();
  status s = timed(bytes, sync);
  if (!s) return fail_locked(s);
  return {};
}

status durability_tracker::sync_committed(segment& seg, uint64_t from, uint64_t to) {
  // Everything below `to` is committed and never written again: the whole
  // pages of it leave the writer's mapping before the sync, so the write-back
  // finds no writable entry to protect (each one an interrupt to the other
  // CPUs running this process otherwise). From the page holding `from`: its
  // first bytes were synced before and are as immutable.
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  seg.drop_written(from & ~(page - 1), to);
  return seg.fs().sync_range(seg.file(), seg.data() + from, to - from);
}

status durability_tracker::sync_below(segment& seg, uint64_t end) {
  const uint64_t base = seg.index() * seg.capacity();
  if (end >= base + seg.capacity()) return seg.fs().datasync(seg.file());
  // The segment `end` falls in: its pages after `end` were pre-faulted for
  // writing, so they are dirty zeros in the page cache. Syncing the file
  // would write all of them (64 MiB) and write-protect every one, and the
  // writer would then fault on each page again. Only the committed bytes
  // need to be durable: past them the file reads as zeros whatever happens.
  return sync_committed(seg, 0, std::max<uint64_t>(end, base + segment_format::kHeaderSize) - base);
}

status durability_tracker::sync_history_locked() {
  if (cfg_.history_synced) return {};
  // Crash story: until this returns, a power loss may lose pages an earlier
  // session (mode none) left dirty in the tail; nothing past durable_at_open
  // was reported durable. Exactly the files that may hold them are synced
  // (never a syncfs, which would flush every other program's data too).
  for (uint64_t k = cfg_.dirty_first; k <= cfg_.dirty_last; ++k) {
    segment* seg = log_.segments.find(k);
    if (!seg || !seg->writable()) continue;
    if (status s = timed(0, [&] { return sync_below(*seg, cfg_.end_at_open); }); !s) return fail_locked(s);
  }
  cfg_.history_synced = true;
  if (durable_.load(std::memory_order_relaxed) < cfg_.end_at_open) {
    durable_.store(cfg_.end_at_open, std::memory_order_release);
    log_.ctl->durable().store(cfg_.end_at_open, std::memory_order_release);
  }
  return {};
}

status durability_tracker::sync_until(uint64_t target) {
  {
    std::lock_guard<std::mutex> gate(sync_mu_);
    if (has_failed()) return failure();
    if (status s = sync_history_locked(); !s) return s;
    uint64_t pos = durable_.load(std::memory_order_relaxed);
    const uint64_t cap = log_.capacity();
    // Sync segment by segment, oldest first: a power loss can then never keep
    // a later segment's bytes durable while an earlier one's are not, and
    // recovery's "the log is a prefix" holds.
    while (pos < target) {
      const uint64_t index = pos / cap;
      const uint64_t seg_end = (index + 1) * cap;
      const uint64_t upto = std::min(target, seg_end);
      segment* seg = log_.segments.find(index);
      if (!seg)
        return fail_locked(status(errc::io_error, "durability: segment " + std::to_string(index) +
                                                      " is not mapped"));
      if (!seg->writable()) {
        // At or past the durable position, only the sealer makes a segment
        // of the writer's read-only, and it does so under this gate right
        // before syncing the whole file (a failure there poisoned the log):
        // the segment is durable whole.
        pos = seg_end;
        durable_.store(pos, std::memory_order_release);
        log_.ctl->durable().store(pos, std::memory_order_release);
        continue;
      }
      const uint64_t off = pos - index * cap;
      // Crash story: msync(MS_SYNC) returns once the pages of [off, upto) and
      // the file metadata needed to read them (extent conversion of the
      // fallocated blocks) are on stable storage. If we die before it returns,
      // recovery finds a prefix of these bytes (torn pages fail their checksum
      // and are cut, above the durable position varve.ctl recorded) and none
      // of the records in it was reported durable.
      if (status s = timed(upto - pos, [&] { return sync_committed(*seg, off, upto - index * cap); }); !s)
        return fail_locked(s);
      // Once one segment is fully durable the next range starts at its records.
      pos = upto == seg_end ? seg_end : upto;
      durable_.store(pos, std::memory_order_release);
      log_.ctl->durable().store(pos, std::memory_order_release);
    }
  }
  done_cv_.notify_all();
  return {};
}

void durability_tracker::sealed(segment& seg) {
  {
    std::lock_guard<std::mutex> gate(sync_mu_);
    if (has_failed()) return;
    const uint64_t cap = log_.capacity();
    const uint64_t index = seg.index();
    const uint64_t d = durable_.load(std::memory_order_relaxed);
    const uint64_t next = (index + 1) * cap + segment_format::kHeaderSize;
    if (d >= index * cap && d < next) {
      durable_.store(next, std::memory_order_release);
      log_.ctl->durable().store(next, std::memory_order_release);
    }
    // Durable whole, and below the durable position: no sync needs its
    // descriptor again.
    if (durable_.load(std::memory_order_relaxed) >= next) seg.release_file();
  }
  done_cv_.notify_all();
}

status durability_tracker::record_durable() {
  std::lock_guard<std::mutex> gate(sync_mu_);
  if (has_failed()) return failure();
  const uint64_t d = durable_.load(std::memory_order_relaxed);
  if (d == recorded_) return {};
  // Crash story: the word on disk only ever lags the data it describes (it
  // is stored after the data's sync returned), so after a reboot recovery's
  // guard is at most what really is durable; the lag only means a damaged
  // record just below the true durable end is cut (bytes kept) rather than
  // refused.
  if (status s = timed(control_block::kSize, [&] { return log_.ctl->sync(); }); !s) return fail_locked(s);
  recorded_ = d;
  return {};
}

status durability_tracker::wait(uint64_t target) {
  if (durable_.load(std::memory_order_acquire) >= target) return failure();
  // The caller runs the sync itself (group mode too) rather than nudging the
  // flusher thread and sleeping until it is done: that hand-off cost two
  // wake-ups per wait, more than the msync of a small batch. It syncs all
  // that is committed, not just its own target: callers queued behind it on
  // the gate then find theirs covered and return at once (group commit).
  return sync_until(std::max(target, log_.committed()));
}

void durability_tracker::run() {
  auto last_record = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    if (recorder_only_) {
      // Mode none: one sync of varve.ctl per kRecordInterval at most, however
      // often the application flushes. The word on disk lags the durable
      // position by at most that (as in the other modes); it never leads.
      cv_.wait(lk, [&] { return stop_ || record_wanted_; });
      if (stop_) break;
      cv_.wait_until(lk, last_record + kRecordInterval, [&] { return stop_; });
      if (stop_) break;
      record_wanted_ = false;
      lk.unlock();
      (void)record_durable();
      lk.lock();
      last_record = std::chrono::steady_clock::now();
      continue;
    }
    const auto wait_for = group_ ? std::chrono::duration_cast<std::chrono::microseconds>(interval_)
                                 : std::chrono::duration_cast<std::chrono::microseconds>(kRecordInterval);
    cv_.wait_for(lk, wait_for, [&] { return stop_ || nudged_.load(std::memory_order_acquire); });
    nudged_.store(false, std::memory_order_release);
    if (stop_) break;
    if (group_ && failed_.ok() && log_.committed() > durable_.load(std::memory_order_relaxed)) {
      const uint64_t target = log_.committed();
      lk.unlock();
      (void)sync_until(target);  // records its own failure
      lk.lock();
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_record >= kRecordInterval && failed_.ok()) {
      lk.unlock();
      (void)record_durable();
      lk.lock();
      last_record = now;
    }
  }
  lk.unlock();
  // Last flush on close: what was committed before close() is made durable.
  if (group_) (void)sync_until(log_.committed());
  (void)record_durable();
}
}  // namespace varve
