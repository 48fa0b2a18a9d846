#include "engine/flusher.h"

namespace varve {

durability_tracker::durability_tracker(detail::shared_log& log, std::string dir,
                                       uint64_t end_at_open, bool history_synced)
    : log_(log), durable_(end_at_open), dir_(std::move(dir)), history_synced_(history_synced) {
  log_.ctl->durable().store(history_synced ? end_at_open : 0, std::memory_order_release);
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

void durability_tracker::start_group(std::chrono::microseconds interval, uint64_t wake_bytes) {
  group_ = true;
  interval_ = interval;
  wake_bytes_ = wake_bytes ? wake_bytes : 1;
  thread_ = std::thread([this] { run_group(); });
}

status durability_tracker::failure() const {
  std::lock_guard<std::mutex> g(mu_);
  return failed_;
}

void durability_tracker::poison(const status& why) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!failed_.ok()) return;
    failed_ = status(why.code() == errc::no_space ? errc::no_space : errc::io_error,
                     why.message() + " (the log refuses writes until it is reopened)");
    failed_flag_.store(true, std::memory_order_release);
  }
  done_cv_.notify_all();
}

status durability_tracker::sync_until(uint64_t target) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!failed_.ok()) return failed_;
  if (!history_synced_) {
    // Crash story: until this returns, a power loss may lose pages an
    // earlier session (mode none) left dirty; nothing was reported durable.
    if (status s = log_.segments.fs().sync_filesystem(dir_); !s) {
      failed_ = status(s.code() == errc::no_space ? errc::no_space : errc::io_error,
                       s.message() + " (the log refuses writes until it is reopened)");
      failed_flag_.store(true, std::memory_order_release);
      lk.unlock();
      done_cv_.notify_all();
      return failed_;
    }
    history_synced_ = true;
    log_.ctl->durable().store(durable_.load(std::memory_order_relaxed), std::memory_order_release);
  }
  uint64_t from = durable_.load(std::memory_order_relaxed);
  if (target <= from) return {};
  const uint64_t cap = log_.capacity();
  // Sync segment by segment, oldest first: a power loss can then never keep
  // a later segment's bytes durable while an earlier one's are not, and
  // recovery's "the log is a prefix" holds.
  for (uint64_t pos = from; pos < target;) {
    const uint64_t index = pos / cap;
    const uint64_t seg_end = (index + 1) * cap;
    const uint64_t upto = std::min(target, seg_end);
    segment* seg = log_.segments.find(index);
    if (!seg || !seg->writable()) {
      failed_ = status(errc::io_error, "durability: segment " + std::to_string(index) +
                                           " is not mapped for writing");
      break;
    }
    const uint64_t off = pos - index * cap;
    // Crash story: msync(MS_SYNC) returns once the pages of [off, upto) and
    // the file metadata needed to read them (extent conversion of the
    // fallocated blocks) are on stable storage. If we die before it returns,
    // recovery finds a prefix of these bytes (torn pages fail their checksum
    // and are cut) and none of the records in it was reported durable.
    status s = seg->fs().sync_range(seg->file(), seg->data() + off, upto - pos);
    if (!s) {
      failed_ = status(s.code() == errc::no_space ? errc::no_space : errc::io_error,
                       s.message() + " (the log refuses writes until it is reopened)");
      break;
    }
    // Once one segment is fully durable the next range starts at its records.
    pos = upto == seg_end ? seg_end : upto;
    durable_.store(pos, std::memory_order_release);
    log_.ctl->durable().store(pos, std::memory_order_release);
  }
  status r = failed_;
  if (!r.ok()) failed_flag_.store(true, std::memory_order_release);
  lk.unlock();
  done_cv_.notify_all();
  return r;
}

status durability_tracker::wait(uint64_t target) {
  if (!group_) return sync_until(target);
  std::unique_lock<std::mutex> lk(mu_);
  while (durable_.load(std::memory_order_acquire) < target && failed_.ok()) {
    nudged_.store(true, std::memory_order_release);
    cv_.notify_one();
    done_cv_.wait_for(lk, interval_);
  }
  return failed_;
}

void durability_tracker::run_group() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, interval_, [&] { return stop_ || nudged_.load(std::memory_order_acquire); });
    nudged_.store(false, std::memory_order_release);
    const uint64_t target = log_.committed();
    if (target <= durable_.load(std::memory_order_relaxed) || !failed_.ok()) continue;
    lk.unlock();
    (void)sync_until(target);  // records its own failure
    lk.lock();
  }
  lk.unlock();
  // Last flush on close: what was committed before close() is made durable.
  (void)sync_until(log_.committed());
}

}  // namespace varve
