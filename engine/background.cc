#include "engine/background.h"

#include <sys/resource.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>

#include "engine/flusher.h"
#include "engine/index_table.h"
#include "base/log_files.h"
#include "base/scan.h"
#include "engine/segment_table.h"
#include "index/heads_file.h"

namespace varve {

background::background(config c) : c_(std::move(c)) {
  prepare_thread_ = std::thread([this] { run_prepare(); });
  seal_thread_ = std::thread([this] { run_seal(); });
}

background::~background() {
  closing_.store(true);
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  prepare_thread_.join();
  seal_thread_.join();
  // A prepared segment nobody used: remove it so the directory holds only the log.
  if (prepared_) {
    std::string path = prepared_->path();
    prepared_.reset();
    (void)c_.fs->remove(path);
  }
}

void background::prepare(uint64_t index) {
  if (!c_.prepare_next) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (prepared_ && prepared_->index() == index) return;
    want_prepare_ = index;
  }
  cv_.notify_all();
}

result<std::unique_ptr<segment>> background::take_segment(uint64_t index) {
  std::unique_ptr<segment> got;
  {
    std::unique_lock<std::mutex> lk(mu_);
    // Waiting here is the only place the writer may block on the kernel: when
    // the helper has fallen behind (or was never asked).
    cv_.wait(lk, [&] { return !preparing_; });
    if (prepared_ && prepared_->index() == index) got = std::move(prepared_);
    if (!got && prepare_error_index_ == index) {
      // Report the helper's failure once; the synchronous retry below may succeed.
      prepare_error_index_ = ~uint64_t{0};
      prepare_error_ = {};
    }
    if (want_prepare_ == index) want_prepare_ = ~uint64_t{0};
  }
  if (!got) {
    auto made = segment::create(c_.fs, c_.id, index, segment::prefault::for_write);
    if (!made) return made.error();
    // The new file's name must survive a power loss before records in it do,
    // in every mode: flush() in mode none syncs records, not names.
    if (status s = c_.fs->sync_dir(c_.id.dir); !s) return s;
    got = std::move(made.value());
  }
  prepare(index + 1);
  return got;
}

void background::seal(const seal_job& job) {
  {
    std::unique_lock<std::mutex> lk(mu_);
    // Backpressure: each segment waiting for its seal keeps its writable
    // mapping and descriptor, and is not yet durable in mode none. A sealer
    // this far behind (a disk slower than the appends, on tiny segments) makes
    // the writer wait here rather than let both grow without bound.
    if (seals_.size() >= kMaxPendingSeals) {
      const auto t0 = std::chrono::steady_clock::now();
      cv_.wait(lk, [&] { return seals_.size() < kMaxPendingSeals || stop_; });
      const auto waited = std::chrono::steady_clock::now() - t0;
      const uint64_t ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count());
      if (ns > longest_seal_wait_ns_.load(std::memory_order_relaxed))
        longest_seal_wait_ns_.store(ns, std::memory_order_relaxed);
    }
    seals_.push_back(job);
  }
  cv_.notify_all();
}

void background::index_sealed(uint64_t end) {
  {
    std::lock_guard<std::mutex> g(mu_);
    index_pass_end_ = end;
  }
  cv_.notify_all();
}

status background::drain() {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return seals_.empty() && index_pass_end_ == 0 && !busy_sealing_; });
  return seal_error_;
}

status background::write_footer(file_system& fs, segment& seg, segment_format::footer f,
                                durability_tracker* gate) {
  if (gate) return gate->gated([&] { return write_footer(fs, seg, f, nullptr); });
  f.data_checksum =
      XXH3_64bits(seg.data() + segment_format::kHeaderSize,
                  f.data_end + record::kSegmentEndSize - segment_format::kHeaderSize);
  // Crash story: a valid footer makes recovery take the segment as sealed and
  // insist that its records match. So the records it covers must be durable
  // before the footer can reach the disk (the kernel may write the footer's
  // page back at any moment once it is in the mapping, in every mode):
  // otherwise a power loss can keep the footer and lose the records, and the
  // log no longer opens.
  if (status s = fs.sync_range(seg.file(), seg.data(), f.data_end + record::kSegmentEndSize); !s)
    return s;
  std::byte* at = seg.data() + seg.capacity() - segment_format::kFooterSize;
  segment_format::encode_footer(at, f);
  // Crash story: a footer torn by a power loss fails its checksum, and
  // recovery rescans the segment as if it were unsealed. Nothing is lost.
  // Synced in every mode: recovery takes every segment before the newest
  // sealed one as sealed, so footers must reach the disk in segment order.
  return fs.sync_range(seg.file(), at, segment_format::kFooterSize);
}

namespace {

// Advances `table` through one segment's events. The lookups are random, one
// cache miss each; hashing a few events ahead and prefetching their slots lets
// those misses overlap instead of queueing one after another.
segment_scan apply_segment(const segment& seg, uint64_t first_sequence, bool verify,
                           head_table& table) {
  struct pending {
    std::string_view stream;
    uint64_t hash, version, position;
    bool integer;
  };
  constexpr size_t kAhead = 16;
  pending ring[kAhead];
  size_t n = 0;
  auto apply = [&](const pending& p) {
    head_table::head* h = table.find(p.stream, p.hash);
    if (!h) h = table.insert(p.stream, p.hash, p.integer);
    h->version = p.version;
    h->last_position = p.position;
  };
  segment_scan r = scan_segment(seg, first_sequence, verify, [&](const event_view& v) {
    pending& slot = ring[n % kAhead];
    if (n >= kAhead) apply(slot);
    slot = {v.stream, table.hash(v.stream), v.version, v.position.value, v.stream_is_integer};
    table.prefetch(slot.hash);
    ++n;
  });
  // Views point into the mapping, which stays valid: drain in order.
  for (size_t i = n > kAhead ? n - kAhead : 0; i < n; ++i) apply(ring[i % kAhead]);
  return r;
}

}  // namespace

status background::checkpoint(segment& sealed, bool write_file) {
  const std::string index_dir = log_files::join(c_.id.dir, log_files::kIndexDir);
  if (!shadow_) {
    shadow_ = std::make_unique<head_table>();
    shadow_next_sequence_ = 0;
    uint64_t start = 0;
    if (c_.checkpointed_segment != ~uint64_t{0}) {
      heads_file::checkpoint_info info;
      status s = heads_file::read(
          *c_.fs, log_files::join(index_dir, log_files::heads_name(c_.checkpointed_segment)),
          c_.id.log_id, info, *shadow_);
      if (s) {
        start = info.last_segment + 1;
        shadow_next_sequence_ = info.next_sequence;
      } else {
        shadow_->clear();
      }
    }
    // Catch up on sealed segments the newest checkpoint does not cover.
    for (uint64_t i = start; i < sealed.index(); ++i) {
      auto seg = c_.table->get(i);
      if (!seg) return seg.error();
      segment_scan r = apply_segment(*seg.value(), shadow_next_sequence_, true, *shadow_);
      shadow_next_sequence_ = r.next_sequence;
    }
  }
  // The writer in this process just wrote these bytes and they are still in
  // memory: re-verifying every checksum here would double the hashing work.
  segment_scan r = apply_segment(sealed, shadow_next_sequence_, false, *shadow_);
  shadow_next_sequence_ = r.next_sequence;
  // More seals are queued: the next one's checkpoint supersedes this one, so
  // only the shadow table moves (open replays the sealed segments after the
  // newest checkpoint either way).
  if (!write_file) return {};
  if (status s = c_.fs->create_dir(index_dir); !s) return s;
  heads_file::checkpoint_info info{sealed.index(), shadow_next_sequence_, 0};
  if (status s = heads_file::write(*c_.fs, index_dir, c_.id.log_id, info, *shadow_); !s) return s;
  // Keep the newest two checkpoints; older ones are superseded (derived data,
  // so removing them loses nothing). Coalesced seals leave gaps in the
  // numbering, hence the one before the previous is remembered, not computed.
  if (previous_checkpoint_ != ~uint64_t{0})
    (void)c_.fs->remove(log_files::join(index_dir, log_files::heads_name(previous_checkpoint_)));
  else if (sealed.index() >= 2)
    (void)c_.fs->remove(log_files::join(index_dir, log_files::heads_name(sealed.index() - 2)));
  previous_checkpoint_ = c_.checkpointed_segment;
  c_.checkpointed_segment = sealed.index();
  return {};
}

status background::index_segment(const segment& sealed) {
  const uint64_t k = sealed.index();
  if (indexed_segment_ != ~uint64_t{0} && indexed_segment_ >= k) return {};
  if (k > c_.first_segment && indexed_segment_ + 1 != k) {
    // The predecessor's running timestamp maximum is not at hand: check (and
    // where needed rebuild) every index before this one.
    auto r = ensure_indexes(*c_.fs, *c_.table, c_.first_segment, k, c_.observer, false, &closing_);
    if (!r) return r.error();
    indexed_through_ = r.value();
  }
  if (k == c_.first_segment) indexed_through_ = 0;
  auto built = index_table::build_and_write(*c_.fs, c_.id.dir, c_.id.log_id, sealed, indexed_through_);
  if (!built) return built.error();
  indexed_through_ = built.value();
  indexed_segment_ = k;
  return {};
}

void background::rebuild_damaged_indexes() {
  if (!c_.indexes) return;
  for (uint64_t k : c_.indexes->take_damaged()) {
    auto seg = c_.table->get(k);
    if (!seg) continue;
    uint64_t through = 0;
    status why;
    if (k > c_.first_segment) {
      auto prev = c_.table->get(k - 1);
      if (!prev || index_table::check(*c_.fs, c_.id.dir, c_.id.log_id, *prev.value(), through,
                                      why) != index_table::state::valid)
        continue;  // the next open's pass rebuilds both, in order
    }
    auto built = index_table::build_and_write(*c_.fs, c_.id.dir, c_.id.log_id, *seg.value(), through);
    if (c_.observer)
      c_.observer->on_truncated(seg.value()->path(), 0, 0,
                                built ? "damaged segment index rebuilt"
                                      : "damaged segment index not rebuilt: " + built.error().to_string());
    if (built) c_.indexes->forget(k);
  }
}

status background::do_seal(const seal_job& job, bool more_queued) {
  if (!job.footer_written) {
    // A failure is recorded by the gate (the log refuses writes from then on).
    if (status s = write_footer(*c_.fs, *job.seg, job.footer, c_.durable); !s) return s;
    if (c_.durable) {
      c_.durable->sealed(*job.seg);
      // Recorded on disk too (mode none has no thread doing it): after a
      // reboot recovery then knows this segment was durable.
      (void)c_.durable->record_durable();
    }
  }
  // Index files and checkpoints are derived data: failing to write one costs
  // a slower read or a longer scan at the next open, never an event. Say so
  // and carry on.
  if (c_.indexes) c_.indexes->set_sealed_end(job.seg->index() + 1);
  if (status s = index_segment(*job.seg); !s) {
    indexed_segment_ = ~uint64_t{0};
    if (c_.observer && s.code() != errc::cancelled)
      c_.observer->on_truncated(job.seg->path(), 0, 0, "segment index not written: " + s.to_string());
  }
  if (c_.checkpointed_segment != ~uint64_t{0} && job.seg->index() <= c_.checkpointed_segment)
    return {};  // already covered by a checkpoint on disk
  if (status s = checkpoint(*job.seg, !more_queued); !s) {
    shadow_.reset();
    if (c_.observer)
      c_.observer->on_truncated(job.seg->path(), 0, 0,
                                "head-table checkpoint not written: " + s.to_string());
  }
  return {};
}

void background::run_seal() {
  // Checkpoints are derived data: on a small machine they must not take a
  // core from the writer or from the preparer the writer may wait for.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stop_ || !seals_.empty() || index_pass_end_ != 0; });
    if (index_pass_end_ != 0) {
      const uint64_t end = index_pass_end_;
      busy_sealing_ = true;
      lk.unlock();
      auto r = ensure_indexes(*c_.fs, *c_.table, c_.first_segment, end, c_.observer, false,
                              &closing_);
      if (r && end > c_.first_segment) {
        indexed_segment_ = end - 1;
        indexed_through_ = r.value();
      } else if (!r && c_.observer && r.error().code() != errc::cancelled) {
        c_.observer->on_truncated(c_.id.dir, 0, 0, "segment indexes not checked: " + r.error().to_string());
      }
      lk.lock();
      busy_sealing_ = false;
      index_pass_end_ = 0;
      cv_.notify_all();
      continue;
    }
    if (seals_.empty()) {  // stop_, and every queued seal is done
      lk.unlock();
      rebuild_damaged_indexes();  // what readers found since the last seal
      break;
    }
    seal_job job = seals_.front();
    seals_.pop_front();
    const bool more = !seals_.empty();
    busy_sealing_ = true;
    cv_.notify_all();  // a writer waiting for room in the queue
    lk.unlock();
    status s = do_seal(job, more);
    rebuild_damaged_indexes();
    lk.lock();
    busy_sealing_ = false;
    if (!s && seal_error_.ok()) seal_error_ = s;
    cv_.notify_all();
  }
}

void background::run_prepare() {
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    cv_.wait(lk, [&] {
      return stop_ ||
             (want_prepare_ != ~uint64_t{0} && !prepared_ && prepare_error_index_ != want_prepare_);
    });
    if (stop_) break;
    uint64_t index = want_prepare_;
    preparing_ = true;
    lk.unlock();
    auto made = segment::create(c_.fs, c_.id, index, segment::prefault::for_write);
    status dir_synced;
    if (made) dir_synced = c_.fs->sync_dir(c_.id.dir);  // as in take_segment
    lk.lock();
    preparing_ = false;
    if (made && dir_synced) {
      prepared_ = std::move(made.value());
    } else {
      // Leave it to the writer's synchronous attempt, which reports the error.
      prepare_error_ = made ? dir_synced : made.error();
      prepare_error_index_ = index;
      if (made) {
        std::string path = made.value()->path();
        made.value().reset();
        (void)c_.fs->remove(path);
      }
    }
    if (want_prepare_ == index) want_prepare_ = ~uint64_t{0};
    cv_.notify_all();
  }
}

}  // namespace varve
