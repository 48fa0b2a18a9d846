#include "engine/control_block.h"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include <climits>
#include <cstring>

#include "base/coding.h"
#include "base/log_files.h"

namespace varve {

static constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'C', 'T', 'L'};

namespace {

long membarrier(int cmd) { return ::syscall(SYS_membarrier, cmd, 0, 0); }

// Followers can make every registered writer thread pass a full barrier.
bool membarrier_available() {
  static const bool ok = [] {
    const long q = membarrier(MEMBARRIER_CMD_QUERY);
    return q >= 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
           (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
  }();
  return ok;
}

// Registration lasts as long as the process: once is enough for every log.
bool register_writer_process() {
  static const bool ok =
      membarrier_available() && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
  return ok;
}

long futex(uint32_t* word, int op, uint32_t val, const timespec* timeout) {
  // Shared futexes (no FUTEX_PRIVATE_FLAG): the word lives in a MAP_SHARED file
  // mapping that other processes map at other addresses.
  return ::syscall(SYS_futex, word, op, val, timeout, nullptr, 0);
}

}  // namespace

result<std::unique_ptr<control_block>> control_block::create(std::shared_ptr<file_system> fs,
                                                             const std::string& dir,
                                                             uint64_t log_id) {
  const std::string path = log_files::join(dir, log_files::kControlName);
  auto f = fs->open(path, file_system::open_mode::create_or_open);
  if (!f) return f.error();
  file_handle fh = f.value();
  // A follower may have it mapped: never shrink it (that would SIGBUS them).
  auto size = fs->file_size(fh);
  status s = size ? status{} : size.error();
  if (s && size.value() < kSize) s = fs->allocate(fh, kSize);
  if (!s) {
    fs->close(fh);
    return s;
  }
  auto m = fs->map(fh, kSize, map_access::read_write);
  if (!m) {
    fs->close(fh);
    return m.error();
  }
  auto* d = static_cast<std::byte*>(m.value());
  std::memcpy(d, kMagic, 8);
  coding::put_u32(d + 8, 1);
  coding::put_u64(d + 16, log_id);
  auto cb = std::unique_ptr<control_block>(new control_block(std::move(fs), fh, d, true));
  cb->writer_fences_ = !register_writer_process();
  cb->writer_pid().store(static_cast<uint64_t>(::getpid()));
  return cb;
}

result<std::unique_ptr<control_block>> control_block::open(std::shared_ptr<file_system> fs,
                                                           const std::string& dir,
                                                           uint64_t log_id, map_access access) {
  const std::string path = log_files::join(dir, log_files::kControlName);
  const bool rw = access == map_access::read_write;
  auto f = fs->open(path, rw ? file_system::open_mode::read_write : file_system::open_mode::read_only);
  if (!f) return f.error();
  file_handle fh = f.value();
  auto size = fs->file_size(fh);
  if (!size || size.value() < kSize) {
    fs->close(fh);
    return status(errc::corruption, path + ": control block is truncated");
  }
  auto m = fs->map(fh, kSize, access);
  if (!m) {
    fs->close(fh);
    return m.error();
  }
  auto* d = static_cast<std::byte*>(m.value());
  if (std::memcmp(d, kMagic, 8) != 0 || coding::get_u64(d + 16) != log_id) {
    fs->unmap(d, kSize);
    fs->close(fh);
    return status(errc::corruption, path + " offset 0: control block does not belong to this log");
  }
  return std::unique_ptr<control_block>(new control_block(std::move(fs), fh, d, rw));
}

void control_block::register_waiter() {
  waiters().fetch_add(1, std::memory_order_seq_cst);
  // The StoreLoad barrier the writer does not pay (see the header): after
  // this, either the writer's next look at `waiters` sees us, or its latest
  // commit store is visible to our next look at commit_position.
  if (!membarrier_available() || membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0)
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

void control_block::unregister_waiter() {
  // Never below zero: the writer may have reset a count it took for stale.
  uint32_t v = waiters().load(std::memory_order_relaxed);
  while (v != 0 && !waiters().compare_exchange_weak(v, v - 1, std::memory_order_relaxed)) {
  }
}

void control_block::park(uint32_t seen, std::chrono::nanoseconds timeout) const {
  if (timeout.count() <= 0) return;
  timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // EAGAIN (the word already moved), EINTR and ETIMEDOUT all mean "look again".
  (void)futex(reinterpret_cast<uint32_t*>(data_ + 192), FUTEX_WAIT, seen, &ts);
}

void control_block::wake_all() {
  wake_seq().fetch_add(1, std::memory_order_release);
  (void)futex(reinterpret_cast<uint32_t*>(data_ + 192), FUTEX_WAKE, INT_MAX, nullptr);
}

void control_block::wake_parked() {
  wake_seq().fetch_add(1, std::memory_order_release);
  const long woken = futex(reinterpret_cast<uint32_t*>(data_ + 192), FUTEX_WAKE, INT_MAX, nullptr);
  if (woken > 0) {
    idle_wakes_ = 0;
  } else if (++idle_wakes_ >= kStaleWakes) {
    // Nobody parked through this many commits: the count belongs to followers
    // that died while parked. A live one re-registers at its next wait.
    waiters().store(0, std::memory_order_relaxed);
    idle_wakes_ = 0;
  }
}

std::chrono::nanoseconds control_block::park_slice() {
  using namespace std::chrono_literals;
  return membarrier_available() ? std::chrono::nanoseconds(100ms) : std::chrono::nanoseconds(1ms);
}

static uint64_t clean_check(uint64_t log_id, uint64_t end) {
  uint64_t words[2] = {log_id, end};
  return XXH3_64bits(words, sizeof words);
}

void control_block::set_clean_end(uint64_t log_id, uint64_t end) {
  ref(264).store(clean_check(log_id, end), std::memory_order_relaxed);
  ref(256).store(end, std::memory_order_release);
}

status control_block::clear_clean_end(bool durable) {
  ref(256).store(0, std::memory_order_relaxed);
  ref(264).store(0, std::memory_order_relaxed);
  if (!durable) return {};
  return fs_->sync_range(file_, data_, kSize);
}

uint64_t control_block::read_clean_end(file_system& fs, const std::string& dir, uint64_t log_id) {
  auto f = fs.open(log_files::join(dir, log_files::kControlName), file_system::open_mode::read_only);
  if (!f) return 0;
  file_handle fh = f.value();
  std::byte buf[16];
  auto size = fs.file_size(fh);
  status s = size && size.value() >= kSize ? fs.pread(fh, 256, buf, sizeof buf)
                                           : status(errc::corruption, "short");
  fs.close(fh);
  if (!s) return 0;
  const uint64_t end = coding::get_u64(buf);
  return end != 0 && coding::get_u64(buf + 8) == clean_check(log_id, end) ? end : 0;
}

control_block::~control_block() {
  fs_->unmap(data_, kSize);
  fs_->close(file_);
}

}  // namespace varve
