#include "engine/shared_log.h"

#include <time.h>

#include <chrono>

#include "base/archive_file.h"
#include "engine/crypto/keyring.h"
#include "engine/lifecycle/stream_lifecycle.h"
#include "base/start_file.h"

namespace varve::detail {

uint64_t shared_log::start_position() const { return start_file::start_position(first_segment(), log2()); }

namespace {
uint64_t steady_now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}
}  // namespace

void shared_log::set_start(uint64_t first_segment, uint64_t first_sequence) {
  // Sequence first: a reader that sees the new segment sees its sequence.
  uint64_t s = first_sequence_.load(std::memory_order_relaxed);
  while (s < first_sequence && !first_sequence_.compare_exchange_weak(s, first_sequence)) {
  }
  uint64_t f = first_segment_.load(std::memory_order_relaxed);
  while (f < first_segment && !first_segment_.compare_exchange_weak(f, first_segment)) {
  }
  if (f >= first_segment) return;  // not moved by this call
  // What this process mapped below the new start goes after the grace period.
  std::lock_guard<std::mutex> g(drop_mu_);
  const uint64_t now = steady_now_ns();
  awaiting_drop_.push_back({first_segment, now});
  if (awaiting_drop_.size() == 1) drop_due_ns_.store(now + retention_grace_ns, std::memory_order_relaxed);
}

void shared_log::drop_expired_pages_if_due() {
  if (steady_now_ns() < drop_due_ns_.load(std::memory_order_relaxed)) return;
  drop_expired_pages();
}

void shared_log::drop_expired_pages() {
  std::lock_guard<std::mutex> g(drop_mu_);
  const uint64_t now = steady_now_ns();
  while (!awaiting_drop_.empty() && now - awaiting_drop_.front().at_ns >= retention_grace_ns) {
    const uint64_t below = awaiting_drop_.front().below;
    for (uint64_t k = dropped_below_; k < below; ++k)
      if (segment* seg = segments.find(k)) (void)seg->drop_file_pages();  // failing: the space returns at close
    dropped_below_ = std::max(dropped_below_, below);
    awaiting_drop_.erase(awaiting_drop_.begin());
  }
  drop_due_ns_.store(awaiting_drop_.empty() ? kNoDrop : awaiting_drop_.front().at_ns + retention_grace_ns,
                     std::memory_order_relaxed);
}

void shared_log::refresh_from_hint(uint64_t hint) {
  hint_seen_.store(hint, std::memory_order_relaxed);
  (void)refresh_start();  // unreadable: the next missing file says so
}

status shared_log::refresh_start() {
  auto r = start_file::read(segments.fs(), segments.identity().dir, segments.identity().log_id);
  if (!r) return r.error();
  if (r.value()) set_start(r.value()->first_segment, r.value()->first_sequence);
  return {};
}

status shared_log::removed_error(uint64_t position) const {
  const std::string& dir = segments.identity().dir;
  return status(errc::removed, dir + ": position " + std::to_string(position) +
                                   " was removed by retention: the log now starts at position " +
                                   std::to_string(start_position()) + " (sequence " +
                                   std::to_string(first_sequence()) + ", " + dir + "/" + start_file::kName + ")");
}

status shared_log::explain_missing(uint64_t index, uint64_t position, status err) {
  if (index < first_segment()) return removed_error(position);
  if (err.code() != errc::not_found) return err;
  (void)refresh_start();  // the original error stands if the record cannot be read
  return index < first_segment() ? removed_error(position) : err;
}

result<segment*> shared_log::segment_for_read(uint64_t index, uint64_t position, bool lazy) {
  if (index < first_segment()) return removed_error(position);
  auto got = lazy ? segments.get_lazy(index) : segments.get(index);
  if (!got && got.error().code() == errc::not_found && refresh_archive())
    got = lazy ? segments.get_lazy(index) : segments.get(index);
  if (!got) return explain_missing(index, position, got.error());
  return got;
}

bool shared_log::refresh_archive() {
  const segment::identity& id = segments.identity();
  auto loc = archive_file::read_location(segments.fs(), id.dir, id.log_id);
  if (!loc || !loc.value() || loc.value()->dir == segments.archive_dir()) return false;
  segments.set_archive_dir(loc.value()->dir);
  return true;
}

status shared_log::open_payload(event_view& ev, std::string& buf) const {
  if (!keys) [[unlikely]]
    return status(errc::invalid_argument, segments.identity().dir + ": the event at position " +
                                              std::to_string(ev.position.value) +
                                              " is encrypted: the log needs its master key to read it");
  return keys->open_payload(ev, buf);
}

uint64_t shared_log::wall_now_ns() const {
  if (clock) return clock();
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void shared_log::set_lifecycle(std::shared_ptr<const lifecycle_view> v) {
  std::lock_guard<std::mutex> g(life_mu_);
  life_hint_seen_.store(v ? v->journal_end() : 0, std::memory_order_relaxed);
  life_ = std::move(v);
  life_gen_.fetch_add(1, std::memory_order_acq_rel);
}

status shared_log::refresh_lifecycle(uint64_t hint) {
  auto v = lifecycle_view::load(*fs_, segments.identity().dir, segments.identity().log_id);
  if (!v) return v.error();
  std::lock_guard<std::mutex> g(life_mu_);
  // The doorbell this read answered: a later change rings it again.
  life_hint_seen_.store(hint, std::memory_order_relaxed);
  if (!life_ || life_->last_change() != v.value()->last_change()) {
    life_ = std::move(v.value());
    life_gen_.fetch_add(1, std::memory_order_acq_rel);
  }
  return {};
}

}  // namespace varve::detail
