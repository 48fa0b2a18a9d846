#include "engine/control_block.h"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <cstring>

#include "base/coding.h"
#include "base/log_files.h"
#include "varve/metrics.h"

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
  const bool made = s && size.value() < kSize;
  if (made) s = fs->allocate(fh, kSize);
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
  if (made) {
    // Crash story: the block is recovery's guard after a reboot (the durable
    // word). Its name and size must be durable before any durable word is
    // recorded in it: without this sync of the directory a power loss could
    // take a new log's varve.ctl away, and with it the guard, so recovery
    // would cut (bytes kept) acknowledged records it must refuse.
    status synced = fs->sync_range(fh, d, kSize);
    if (synced) synced = fs->sync_dir(dir);
    if (!synced) {
      fs->unmap(d, kSize);
      fs->close(fh);
      return status(synced.code(), path + ": " + synced.message());
    }
  }
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

namespace {

constexpr size_t kCleanEnd = 256, kCleanCheck = 264, kBootId = 272, kBootCheck = 288;
constexpr size_t kPoisonFrom = 320, kPoisonNs = 328, kPoisonCode = 336, kPoisonCheck = 344;

std::array<uint8_t, 16> parse_boot_id(const char* text) {
  std::array<uint8_t, 16> id{};
  int n = 0;
  for (const char* p = text; *p && n < 32; ++p) {
    int v;
    if (*p >= '0' && *p <= '9') v = *p - '0';
    else if (*p >= 'a' && *p <= 'f') v = *p - 'a' + 10;
    else if (*p >= 'A' && *p <= 'F') v = *p - 'A' + 10;
    else continue;  // the dashes of the UUID text
    id[n / 2] = static_cast<uint8_t>(id[n / 2] | (v << ((n % 2) ? 0 : 4)));
    ++n;
  }
  if (n != 32) id.fill(0);
  return id;
}

std::array<uint8_t, 16> read_boot_id() {
  if (const char* forced = std::getenv("VARVE_BOOT_ID")) return parse_boot_id(forced);
  char buf[64] = {};
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    return parse_boot_id(buf);
  }
  return {};
}

std::mutex& boot_mu() {
  static std::mutex mu;
  return mu;
}
std::array<uint8_t, 16>& boot_id_storage() {
  static std::array<uint8_t, 16> id = read_boot_id();
  return id;
}

uint64_t boot_check(uint64_t log_id, const uint8_t* boot) {
  std::byte buf[24];
  coding::put_u64(buf, log_id);
  std::memcpy(buf + 8, boot, 16);
  return XXH3_64bits(buf, sizeof buf);
}

uint64_t poison_check(uint64_t log_id, uint64_t from, uint64_t ns, uint32_t code) {
  uint64_t words[4] = {log_id, from, ns, code};
  const uint64_t h = XXH3_64bits(words, sizeof words);
  return h == 0 ? 1 : h;  // 0 means "no poison mark"
}

bool is_zero_id(const std::array<uint8_t, 16>& id) {
  for (uint8_t b : id)
    if (b) return false;
  return true;
}

}  // namespace

const std::array<uint8_t, 16>& current_boot_id() {
  std::lock_guard<std::mutex> g(boot_mu());
  return boot_id_storage();
}

void test_hooks::set_boot_id(const std::array<uint8_t, 16>& id) {
  std::lock_guard<std::mutex> g(boot_mu());
  boot_id_storage() = id;
}

void control_block::set_clean_end(uint64_t log_id, uint64_t end) {
  ref(kCleanCheck).store(clean_check(log_id, end), std::memory_order_relaxed);
  ref(kCleanEnd).store(end, std::memory_order_release);
}

status control_block::clear_clean_end(bool durable) {
  ref(kCleanEnd).store(0, std::memory_order_relaxed);
  ref(kCleanCheck).store(0, std::memory_order_relaxed);
  if (!durable) return {};
  return sync();
}

uint64_t control_block::log_id() const { return coding::get_u64(data_ + 16); }

void control_block::begin_session(uint64_t log_id, uint64_t next_sequence, uint64_t commit) {
  // Counters first, then the version word: a reader that sees version 1
  // sees this session's zeroes (a reader racing the open may mix sessions
  // for a moment; they are statistics).
  for (size_t off = kCountersBegin; off < kCountersEnd; off += 8)
    ref(off).store(0, std::memory_order_relaxed);
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  counter(ctl_counter::session_start_ns)
      .store(static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec),
             std::memory_order_relaxed);
  counter(ctl_counter::start_sequence).store(next_sequence, std::memory_order_relaxed);
  counter(ctl_counter::start_position).store(commit, std::memory_order_relaxed);
  counter(ctl_counter::version).store(1, std::memory_order_release);
  const std::array<uint8_t, 16> boot = current_boot_id();
  std::memcpy(data_ + kBootId, boot.data(), boot.size());
  ref(kBootCheck).store(boot_check(log_id, boot.data()), std::memory_order_relaxed);
  ref(kPoisonCheck).store(0, std::memory_order_relaxed);
  ref(kPoisonFrom).store(0, std::memory_order_relaxed);
  ref(kPoisonNs).store(0, std::memory_order_relaxed);
  ref32(kPoisonCode).store(0, std::memory_order_relaxed);
}

void control_block::set_poison(uint64_t log_id, uint64_t from, errc code) {
  if (ref(kPoisonCheck).load(std::memory_order_relaxed) != 0) return;  // the first failure counts
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  const uint64_t ns = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  ref(kPoisonFrom).store(from, std::memory_order_relaxed);
  ref(kPoisonNs).store(ns, std::memory_order_relaxed);
  ref32(kPoisonCode).store(static_cast<uint32_t>(code), std::memory_order_relaxed);
  ref(kPoisonCheck).store(poison_check(log_id, from, ns, static_cast<uint32_t>(code)),
                          std::memory_order_release);
  // Crash story: the mark matters for a reopen within this boot, which reads
  // it from the page cache whether or not this sync reaches the disk (the
  // disk is failing). After a reboot the page cache is gone and recovery
  // judges what the disk holds on its own.
  (void)sync();
}

status control_block::sync() { return fs_->sync_range(file_, data_, kSize); }

void control_block::note_sync(uint64_t ns, uint64_t bytes, bool ok) {
  add(ctl_counter::syncs);
  if (!ok) add(ctl_counter::sync_failures);
  add(ctl_counter::sync_bytes, bytes);
  add(ctl_counter::sync_ns_total, ns);
  raise_to(ctl_counter::longest_sync_ns, ns);
  // Bucket i: below 2^i µs. bit_width(us) is the smallest i with us < 2^i.
  const uint64_t us = ns / 1000;
  const size_t i = std::min<size_t>(static_cast<size_t>(std::bit_width(us)), kSyncBuckets - 1);
  add(static_cast<ctl_counter>(static_cast<size_t>(ctl_counter::sync_bucket0) + 8 * i));
}

void control_block::read_counters(uint64_t (&out)[(kCountersEnd - kCountersBegin) / 8]) const {
  for (size_t i = 0; i < std::size(out); ++i)
    out[i] = ref(kCountersBegin + 8 * i).load(std::memory_order_relaxed);
}

ctl_state control_block::read_state(file_system& fs, const std::string& dir, uint64_t log_id) {
  ctl_state st;
  const std::string path = log_files::join(dir, log_files::kControlName);
  auto f = fs.open(path, file_system::open_mode::read_only);
  if (!f) {
    st.why = f.error().message();
    return st;
  }
  file_handle fh = f.value();
  std::byte buf[512];
  auto size = fs.file_size(fh);
  status s = size && size.value() >= kSize ? fs.pread(fh, 0, buf, sizeof buf)
                                           : status(errc::corruption, "shorter than 4096 bytes");
  fs.close(fh);
  if (!s) {
    st.why = path + ": " + s.message();
    return st;
  }
  st.present = true;
  if (std::memcmp(buf, kMagic, 8) != 0 || coding::get_u64(buf + 16) != log_id) {
    st.why = path + " offset 0: not this log's control block";
    return st;
  }
  st.writer_pid = coding::get_u64(buf + 24);
  st.commit = coding::get_u64(buf + 64);
  st.next_sequence = coding::get_u64(buf + 72);
  st.durable = coding::get_u64(buf + 128);
  // A durable watermark past the committed one cannot have been written
  // (durable only moves up to what is committed): the words are garbage.
  if (st.durable > st.commit) {
    st.why = path + " offset 128: durable position " + std::to_string(st.durable) +
             " is past the committed position " + std::to_string(st.commit);
    return st;
  }
  st.valid = true;
  const uint64_t end = coding::get_u64(buf + kCleanEnd);
  if (end != 0 && coding::get_u64(buf + kCleanCheck) == clean_check(log_id, end)) st.clean_end = end;
  std::array<uint8_t, 16> boot;
  std::memcpy(boot.data(), buf + kBootId, 16);
  const std::array<uint8_t, 16> now = current_boot_id();
  st.same_boot = !is_zero_id(now) && boot == now &&
                 coding::get_u64(buf + kBootCheck) == boot_check(log_id, boot.data());
  const uint64_t pc = coding::get_u64(buf + kPoisonCheck);
  if (pc != 0) {
    st.poison_from = coding::get_u64(buf + kPoisonFrom);
    st.poison_ns = coding::get_u64(buf + kPoisonNs);
    const uint32_t code = coding::get_u32(buf + kPoisonCode);
    st.poisoned = pc == poison_check(log_id, st.poison_from, st.poison_ns, code);
    st.poison_code = static_cast<errc>(code);
  }
  return st;
}

control_block::~control_block() {
  fs_->unmap(data_, kSize);
  fs_->close(file_);
}

}  // namespace varve
