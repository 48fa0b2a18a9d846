// Subscriptions (include/varve/subscription.h): a log_reader that, once caught
// up, waits for the writer through the control block's wake-up words, and the
// store of named positions (DIR/subscriptions/NAME.pos).
#include "varve/subscription.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <xxhash.h>

#include "base/coding.h"
#include "engine/control_block.h"
#include "engine/log_access.h"
#include "base/log_files.h"
#include "base/meta_file.h"
#include "engine/segment_filter.h"
#include "index/index_file.h"
#include "varve/log.h"
#include "varve/reader.h"

namespace varve {

namespace detail {

struct subscription_state {
  const event_log* log = nullptr;
  std::shared_ptr<shared_log> shared;
  log_reader reader;
  // The last segment asked whether it can hold a wanted event: once per segment.
  uint64_t checked_segment = ~uint64_t{0};
  event_filter filter;
  subscription_options opts;
  // Our own read-write mapping of DIR/varve.ctl, for the wake-up words: a
  // read-only log maps it read-only, and the writer's copy is not ours to
  // reach. Null when the file cannot be opened for writing (we poll then).
  std::unique_ptr<control_block> ctl;
  std::atomic<bool> cancelled{false};
  // Copies of the cursor for lag() from other threads.
  std::atomic<uint64_t> where{0};
  std::atomic<uint64_t> next_seq{0};
  std::optional<subscription_store> store;
  position acked = position::none();
  position saved = position::none();
};

}  // namespace detail

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Without write access to the control block a follower cannot count itself as
// parked, so it looks at the commit position this often instead.
constexpr auto kPollInterval = 1ms;
// A filter that skips many events in a row still looks at the clock and at
// cancel() this often (in events).
constexpr uint32_t kSkipCheckEvery = 4096;

inline void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Returns once the commit position passes `at` or the subscription is
// cancelled (true), or at `deadline` (false).
bool wait_for_commit(detail::subscription_state& s, uint64_t at, clock_type::time_point deadline) {
  auto moved = [&] {
    return s.reader.committed().value > at || s.cancelled.load(std::memory_order_acquire);
  };
  // now + d without overflow (kForever spins until the deadline).
  auto until = [&](std::chrono::nanoseconds d) {
    const auto now = clock_type::now();
    return d >= deadline - now ? deadline : now + d;
  };
  if (s.opts.spin.count() > 0) {
    const auto spin_end = until(s.opts.spin);
    for (uint32_t i = 1;; ++i) {
      if (moved()) return true;
      cpu_pause();
      if ((i & 15) == 0 && clock_type::now() >= spin_end) break;
    }
  }
  if (s.opts.yield.count() > 0) {
    const auto yield_end = until(s.opts.yield);
    for (;;) {
      if (moved()) return true;
      if (clock_type::now() >= yield_end) break;
      ::sched_yield();
    }
  }
  if (clock_type::now() >= deadline) return moved();
  control_block* ctl = s.ctl.get();
  if (!ctl) {
    for (;;) {
      if (moved()) return true;
      const auto now = clock_type::now();
      if (now >= deadline) return false;
      std::this_thread::sleep_for(std::min<clock_type::duration>(kPollInterval, deadline - now));
    }
  }
  ctl->register_waiter();
  bool got = false;
  for (;;) {
    // wake_seq before the last look at commit: a commit after that look bumps
    // it, and FUTEX_WAIT on the old value then returns at once.
    const uint32_t seen = ctl->wake_seq().load(std::memory_order_acquire);
    if (moved()) {
      got = true;
      break;
    }
    const auto now = clock_type::now();
    if (now >= deadline) break;
    ctl->park(seen, std::min<std::chrono::nanoseconds>(deadline - now, control_block::park_slice()));
  }
  ctl->unregister_waiter();
  return got;
}

// DIR/subscriptions/NAME.pos (FORMAT.md 6a).
constexpr char kPosMagic[8] = {'V', 'A', 'R', 'V', 'E', 'S', 'U', 'B'};
constexpr uint32_t kPosVersion = 1;
constexpr size_t kPosSize = 48;
constexpr const char* kSubscriptionsDir = "subscriptions";
constexpr const char* kPosSuffix = ".pos";

uint64_t wall_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

// --- subscription ------------------------------------------------------------

subscription::subscription() = default;
subscription::subscription(subscription&&) noexcept = default;
subscription& subscription::operator=(subscription&&) noexcept = default;
subscription::~subscription() = default;

result<subscription> subscription::open(const event_log& log, position from, event_filter filter,
                                        subscription_options options) {
  auto st = std::make_unique<detail::subscription_state>();
  std::shared_ptr<file_system> fs = log.options().fs ? log.options().fs : posix_file_system();
  std::string pos_file;
  if (!options.name.empty()) {
    if (!subscription_store::valid_name(options.name))
      return status(errc::invalid_argument,
                    "subscription name '" + options.name +
                        "': use 1 to 100 of A-Z a-z 0-9 . _ - (not starting with '.')");
    auto store = subscription_store::open(log.dir(), fs);
    if (!store) return store.error();
    auto saved = store->load(options.name);
    if (!saved) return saved.error();
    if (saved.value()) {
      from = *saved.value();
      st->saved = from;
      st->acked = from;
      pos_file = log_files::join(log_files::join(log.dir(), kSubscriptionsDir),
                                 options.name + kPosSuffix);
    }
    st->store.emplace(std::move(store.value()));
  }
  const position end = log.committed_position();
  if (from.is_none()) from = end;
  if (from > end) {
    if (!pos_file.empty())
      return status(errc::corruption, pos_file + ": position " + std::to_string(from.value) +
                                          " is past the end of the log (" +
                                          std::to_string(end.value) +
                                          "): the log lost its tail or was replaced");
    return status(errc::invalid_argument, "subscription from position " +
                                              std::to_string(from.value) +
                                              " is past the committed end of the log (" +
                                              std::to_string(end.value) + ")");
  }
  st->log = &log;
  st->reader = log.read(from);
  // A position that is not a record fails here rather than at the first
  // next(), and the first event's sequence is what lag() counts from.
  log_reader peek = st->reader;
  event_view e;
  auto got = peek.next(e);
  if (!got) {
    const std::string where = pos_file.empty() ? "subscription from position " : pos_file + ": position ";
    return status(got.error().code(), where + std::to_string(from.value) + ": " +
                                          got.error().message() + " (is it a record's position?)");
  }
  st->next_seq.store(got.value() ? e.sequence.value : log.next_sequence().value,
                     std::memory_order_relaxed);
  st->where.store(from.value, std::memory_order_relaxed);

  st->shared = detail::log_access::shared(log);
  auto ctl = control_block::open(fs, log.dir(), detail::log_access::state(log).meta.log_id,
                                 map_access::read_write);
  if (ctl) {
    st->ctl = std::move(ctl.value());
  } else if (ctl.error().code() == errc::corruption) {
    return ctl.error();
  }  // else: no write access to the control block: poll (see the header)

  st->filter = std::move(filter);
  st->opts = std::move(options);
  subscription sub;
  sub.s_ = std::move(st);
  return sub;
}

namespace {

// A deadline set on first use: a call that finds events at once never reads
// the clock.
class lazy_deadline {
 public:
  explicit lazy_deadline(std::chrono::nanoseconds timeout)
      // "Forever" (nanoseconds::max()) must not overflow the deadline.
      : timeout_(std::min<std::chrono::nanoseconds>(timeout, std::chrono::hours(24 * 365 * 50))) {}
  bool waits() const { return timeout_.count() > 0; }
  bool passed() {
    const auto now = clock_type::now();
    if (!set_) {
      at_ = now + timeout_;
      set_ = true;
    }
    return now >= at_;
  }
  clock_type::time_point at() {
    if (!set_) (void)passed();
    return at_;
  }

 private:
  std::chrono::nanoseconds timeout_;
  bool set_ = false;
  clock_type::time_point at_;
};

// With a filter, a sealed segment whose index shows no wanted event is skipped
// whole (asked once per segment): true when the cursor moved past it. lag()'s
// event count is then an estimate until the next event read.
bool skip_unwanted_segment(detail::subscription_state& s) {
  if (s.filter.empty()) return false;
  const uint8_t l2 = s.shared->log2();
  const uint64_t index = s.reader.where().value >> l2;
  if (index == s.checked_segment) return false;
  s.checked_segment = index;
  if (match_segment(*s.shared, index, s.filter) != segment_match::none) return false;
  s.reader.seek(position{(index + 1) << l2});
  s.where.store(s.reader.where().value, std::memory_order_relaxed);
  return true;
}

}  // namespace

result<bool> subscription::next(event_view& out, std::chrono::nanoseconds timeout) {
  if (!s_) return status(errc::invalid_argument, "subscription is not open");
  detail::subscription_state& s = *s_;
  lazy_deadline deadline(timeout);
  uint32_t skipped = 0;
  for (;;) {
    if (s.cancelled.load(std::memory_order_acquire))
      return status(errc::cancelled, s.log->dir() + ": subscription cancelled");
    if (skip_unwanted_segment(s)) continue;
    auto got = s.reader.next(out);
    if (!got) return got.error();
    const uint64_t at = s.reader.where().value;
    s.where.store(at, std::memory_order_relaxed);
    if (got.value()) {
      s.next_seq.store(out.sequence.value + 1, std::memory_order_relaxed);
      if (s.filter.matches(out)) return true;
      if (++skipped % kSkipCheckEvery == 0 && deadline.passed()) return false;
      continue;
    }
    if (!deadline.waits() || deadline.passed()) return false;
    if (!wait_for_commit(s, at, deadline.at())) return false;
  }
}

// next() a batch at a time: one log_reader::next_batch per look (its rules
// for upcast or decrypted payloads and damaged records hold here too), the
// filter applied by moving the wanted views to the front. Returns as soon as
// one look found a wanted event, so a view is never overwritten by a second
// look before the caller sees it.
result<size_t> subscription::next_batch(std::span<event_view> out, std::chrono::nanoseconds timeout) {
  if (!s_) return status(errc::invalid_argument, "subscription is not open");
  if (out.empty()) return size_t{0};
  detail::subscription_state& s = *s_;
  lazy_deadline deadline(timeout);
  uint64_t skipped = 0;
  for (;;) {
    if (s.cancelled.load(std::memory_order_acquire))
      return status(errc::cancelled, s.log->dir() + ": subscription cancelled");
    if (skip_unwanted_segment(s)) continue;
    auto got = s.reader.next_batch(out);
    if (!got) return got.error();
    const size_t read = got.value();
    const uint64_t at = s.reader.where().value;
    s.where.store(at, std::memory_order_relaxed);
    if (read > 0) {
      s.next_seq.store(out[read - 1].sequence.value + 1, std::memory_order_relaxed);
      size_t wanted = read;
      if (!s.filter.empty()) {
        wanted = 0;
        for (size_t i = 0; i < read; ++i)
          if (s.filter.matches(out[i])) {
            if (wanted != i) out[wanted] = out[i];
            ++wanted;
          }
      }
      if (wanted > 0) return wanted;
      skipped += read;
      if (skipped >= kSkipCheckEvery) {
        skipped = 0;
        if (deadline.passed()) return size_t{0};
      }
      continue;
    }
    if (!deadline.waits() || deadline.passed()) return size_t{0};
    if (!wait_for_commit(s, at, deadline.at())) return size_t{0};
  }
}

position subscription::where() const {
  return s_ ? position{s_->where.load(std::memory_order_relaxed)} : position{};
}

subscription_lag subscription::lag() const {
  if (!s_) return {};
  const uint64_t end = s_->log->committed_position().value;
  const uint64_t next = s_->log->next_sequence().value;
  const uint64_t at = s_->where.load(std::memory_order_relaxed);
  const uint64_t seq = s_->next_seq.load(std::memory_order_relaxed);
  return {next > seq ? next - seq : 0, end > at ? end - at : 0};
}

void subscription::cancel() {
  if (!s_) return;
  s_->cancelled.store(true, std::memory_order_release);
  // Wakes every follower parked on this log; the others just look again.
  if (s_->ctl) s_->ctl->wake_all();
}

bool subscription::cancelled() const {
  return s_ && s_->cancelled.load(std::memory_order_acquire);
}

status subscription::ack(position resume_at) {
  if (!s_ || !s_->store) return status(errc::invalid_argument, "ack on an unnamed subscription");
  if (resume_at.value > s_->where.load(std::memory_order_relaxed))
    return status(errc::invalid_argument, "ack of position " + std::to_string(resume_at.value) +
                                              ", which the subscription has not read yet");
  s_->acked = resume_at;
  return {};
}

status subscription::commit() {
  if (!s_ || !s_->store) return status(errc::invalid_argument, "commit on an unnamed subscription");
  if (s_->acked.is_none() || s_->acked == s_->saved) return {};
  if (status r = s_->store->save(s_->opts.name, s_->acked); !r) return r;
  s_->saved = s_->acked;
  return {};
}

const std::string& subscription::name() const {
  static const std::string none;
  return s_ ? s_->opts.name : none;
}

// --- subscription_store --------------------------------------------------------

result<subscription_store> subscription_store::open(const std::string& log_dir,
                                                    std::shared_ptr<file_system> fs) {
  if (!fs) fs = posix_file_system();
  segment_format::meta meta;
  if (status r = meta_file::read(*fs, log_dir, meta); !r) return r;
  return subscription_store(log_files::join(log_dir, kSubscriptionsDir), log_dir, meta.log_id,
                            std::move(fs));
}

bool subscription_store::valid_name(std::string_view name) {
  if (name.empty() || name.size() > 100 || name[0] == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string subscription_store::path_of(std::string_view name) const {
  return log_files::join(dir_, std::string(name) + kPosSuffix);
}

result<std::optional<position>> subscription_store::load(std::string_view name) const {
  if (!valid_name(name))
    return status(errc::invalid_argument, "subscription name '" + std::string(name) + "' is not valid");
  const std::string path = path_of(name);
  if (!fs_->exists(path)) return std::optional<position>{};
  auto bytes = index_file::read(*fs_, path, kPosSize);
  if (!bytes) return bytes.error();
  const std::byte* d = bytes->data();
  if (bytes->size() != kPosSize)
    return status(errc::corruption, path + ": " + std::to_string(bytes->size()) +
                                        " bytes, a subscription position file has " +
                                        std::to_string(kPosSize));
  if (std::memcmp(d, kPosMagic, 8) != 0)
    return status(errc::corruption, path + " offset 0: not a subscription position file");
  if (coding::get_u64(d + 40) != XXH3_64bits(d, 40))
    return status(errc::corruption, path + " offset 40: checksum mismatch");
  if (const uint32_t v = coding::get_u32(d + 8); v != kPosVersion)
    return status(v > kPosVersion ? errc::newer_format : errc::corruption,
                  path + " offset 8: format version " + std::to_string(v));
  if (coding::get_u64(d + 16) != log_id_)
    return status(errc::corruption, path + " offset 16: belongs to another log (log_id differs)");
  return std::optional<position>{position{coding::get_u64(d + 24)}};
}

status subscription_store::save(std::string_view name, position p) {
  if (!valid_name(name))
    return status(errc::invalid_argument, "subscription name '" + std::string(name) + "' is not valid");
  if (!dir_made_) {
    // The directory's own entry must be durable before a file in it can be.
    if (!fs_->exists(dir_)) {
      if (status r = fs_->create_dir(dir_); !r) return r;
      if (status r = fs_->sync_dir(log_dir_); !r) return r;
    }
    dir_made_ = true;
  }
  std::byte buf[kPosSize] = {};
  std::memcpy(buf, kPosMagic, 8);
  coding::put_u32(buf + 8, kPosVersion);
  coding::put_u64(buf + 16, log_id_);
  coding::put_u64(buf + 24, p.value);
  coding::put_u64(buf + 32, wall_ns());
  coding::put_u64(buf + 40, XXH3_64bits(buf, 40));
  return index_file::write(*fs_, dir_, std::string(name) + kPosSuffix, buf);
}

status subscription_store::remove(std::string_view name) {
  if (!valid_name(name))
    return status(errc::invalid_argument, "subscription name '" + std::string(name) + "' is not valid");
  const std::string path = path_of(name);
  if (!fs_->exists(path)) return status(errc::not_found, path + ": no such subscription");
  if (status r = fs_->remove(path); !r) return r;
  return fs_->sync_dir(dir_);
}

result<std::vector<std::string>> subscription_store::names() const {
  std::vector<std::string> out;
  if (!fs_->exists(dir_)) return out;
  auto list = fs_->list_dir(dir_);
  if (!list) return list.error();
  const std::string_view suffix = kPosSuffix;
  for (const std::string& n : list.value()) {
    std::string_view v = n;
    if (!v.ends_with(suffix)) continue;
    v.remove_suffix(suffix.size());
    if (valid_name(v)) out.emplace_back(v);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace varve
