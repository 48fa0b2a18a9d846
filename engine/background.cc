#include "engine/background.h"
#include "engine/chain.h"

#include <sys/resource.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>

#include "engine/flusher.h"
#include "engine/index_table.h"
#include "engine/retention.h"
#include "base/log_files.h"
#include "base/scan.h"
#include "engine/segment_table.h"
#include "index/heads_file.h"

namespace varve {

background::background(config c) : c_(std::move(c)) {
  if (c_.prepare_ahead > kMaxAhead) c_.prepare_ahead = kMaxAhead;
  prepare_thread_ = std::thread([this] { run_prepare(); });
  seal_thread_ = std::thread([this] { run_seal(); });
}

background::~background() {
  closing_.store(true);
  stop_.store(true);
  prepare_thread_.join();
  seal_thread_.join();
  run_tasks();  // those queued after the preparer's last look
  // Prepared segments nobody used: removed, so the directory holds only the
  // log (a crash leaves them instead, and recovery removes them: they hold
  // nothing past their header).
  // Newest first: a power loss keeps a prefix of these unlinks, and the
  // files left must stay contiguous with the log (no hole).
  std::vector<std::unique_ptr<segment>> unused;
  for (auto& slot : ready_)
    if (segment* seg = slot.exchange(nullptr)) unused.emplace_back(seg);
  std::sort(unused.begin(), unused.end(), [](const auto& a, const auto& b) { return a->index() > b->index(); });
  for (auto& seg : unused) {
    const std::string path = seg->path();
    seg.reset();
    (void)c_.fs->remove(path);
  }
}

void background::note_wait(ctl_counter longest, std::chrono::steady_clock::time_point since) {
  const uint64_t ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - since).count());
  c_.ctl->raise_to(longest, ns);
}

std::chrono::milliseconds background::idle_sleep(std::chrono::steady_clock::time_point last_work) const {
  using namespace std::chrono_literals;
  return std::chrono::steady_clock::now() - last_work < 200ms ? 1ms : 20ms;
}

void background::start_preparing(uint64_t next) {
  writer_at_.store(next - 1, std::memory_order_seq_cst);
  made_upto_.store(next - 1, std::memory_order_relaxed);
  next_to_prepare_.store(next, std::memory_order_relaxed);
  prepare_upto_.store(next + c_.prepare_ahead, std::memory_order_release);
}

result<std::unique_ptr<segment>> background::take_segment(uint64_t index) {
  // The writer leaves segment index - 1 (the sealer will remap it): first
  // make sure the preparer is not faulting in a slice of it (or of one
  // before it), and will not start one. Waits at most one slice, and only
  // when the writer overtook the pre-faulting.
  writer_at_.store(index, std::memory_order_seq_cst);
  if (populating_.load(std::memory_order_seq_cst) < index) {
    const auto t0 = std::chrono::steady_clock::now();
    while (populating_.load(std::memory_order_seq_cst) < index) std::this_thread::yield();
    note_wait(ctl_counter::longest_rollover_wait_ns, t0);
  }
  std::atomic<segment*>& slot = ready_[index % kMaxAhead];
  std::unique_ptr<segment> got;
  if (c_.prepare_ahead > 0) {
    segment* s = slot.exchange(nullptr, std::memory_order_acq_rel);
    if (s && s->index() == index) got.reset(s);
    else if (s) slot.store(s, std::memory_order_release);  // not ours (cannot happen): leave it
  }
  if (!got) {
    // The preparer is behind. If it has not started this segment, the writer
    // makes it now; if it has, the writer waits for it (the only place the
    // writer may wait on the kernel, and only when the helper fell behind).
    const auto t0 = std::chrono::steady_clock::now();
    c_.ctl->add(ctl_counter::rollovers_waited);
    bool mine = c_.prepare_ahead == 0;
    for (uint64_t cur = next_to_prepare_.load(std::memory_order_acquire); !mine && cur <= index;)
      mine = next_to_prepare_.compare_exchange_weak(cur, index + 1, std::memory_order_acq_rel);
    if (!mine) {
      // The preparer marks the index it works on before claiming it, and
      // publishes the segment before unmarking it: so once the mark is gone,
      // a second look at the slot is final (if still empty, its attempt
      // failed: made here instead).
      auto take = [&]() -> bool {
        segment* s = slot.exchange(nullptr, std::memory_order_acq_rel);
        if (s && s->index() == index) {
          got.reset(s);
          return true;
        }
        if (s) slot.store(s, std::memory_order_release);
        return false;
      };
      while (!take()) {
        if (preparing_index_.load(std::memory_order_acquire) != index) {
          (void)take();
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
    if (!got) {
      // Not pre-faulted: the writer takes the page faults as it writes,
      // rather than waiting for all of them here.
      auto made = segment::create(c_.fs, c_.id, index, segment::prefault::no);
      if (!made) {
        note_wait(ctl_counter::longest_rollover_wait_ns, t0);
        return made.error();
      }
      // The new file's name must survive a power loss before records in it do,
      // in every mode: flush() in mode none syncs records, not names.
      if (status s = c_.fs->sync_dir(c_.id.dir); !s) return s;
      got = std::move(made.value());
      uint64_t m = made_upto_.load(std::memory_order_relaxed);
      while (m < index && !made_upto_.compare_exchange_weak(m, index, std::memory_order_acq_rel)) {
      }
    }
    note_wait(ctl_counter::longest_rollover_wait_ns, t0);
  }
  // One release store: the preparer sees it at its next look.
  prepare_upto_.store(index + 1 + c_.prepare_ahead, std::memory_order_release);
  return got;
}

void background::run_later(std::function<void()> task) {
  std::lock_guard<std::mutex> g(tasks_mu_);
  tasks_.push_back(std::move(task));
  has_tasks_.store(true, std::memory_order_release);
  tasks_cv_.notify_one();
}

bool background::run_tasks() {
  if (!has_tasks_.load(std::memory_order_acquire)) return false;
  std::vector<std::function<void()>> now;
  {
    std::lock_guard<std::mutex> g(tasks_mu_);
    now.swap(tasks_);
    has_tasks_.store(false, std::memory_order_relaxed);
  }
  for (auto& t : now) t();
  return !now.empty();
}

void background::run_prepare() {
  auto last_work = std::chrono::steady_clock::now();
  while (!stop_.load(std::memory_order_acquire)) {
    if (run_tasks()) last_work = std::chrono::steady_clock::now();
    uint64_t i = next_to_prepare_.load(std::memory_order_acquire);
    bool claimed = false;
    // Strictly in order: segment i is begun only once i - 1 exists with its
    // name synced (made here, or by the writer itself), so a power loss keeps
    // a prefix of the created files, never a hole among them.
    if (c_.prepare_ahead > 0 && i < prepare_upto_.load(std::memory_order_acquire) &&
        made_upto_.load(std::memory_order_acquire) + 1 >= i &&
        ready_[i % kMaxAhead].load(std::memory_order_acquire) == nullptr) {
      preparing_index_.store(i, std::memory_order_release);  // before the claim (take_segment)
      claimed = next_to_prepare_.compare_exchange_strong(i, i + 1, std::memory_order_acq_rel);
      if (!claimed) preparing_index_.store(~uint64_t{0}, std::memory_order_release);
    }
    if (!claimed) {
      if (populate_one_slice()) {
        last_work = std::chrono::steady_clock::now();
        continue;
      }
      // Asleep until the next look, or until a task comes.
      std::unique_lock<std::mutex> g(tasks_mu_);
      tasks_cv_.wait_for(g, idle_sleep(last_work), [&] { return has_tasks_.load(std::memory_order_relaxed); });
      continue;
    }
    last_work = std::chrono::steady_clock::now();
    // Published once it exists; its pages are faulted in afterwards
    // (populate_one_slice), so a writer faster than the kernel can fault
    // pages in never waits for a whole segment's worth.
    auto made = segment::create(c_.fs, c_.id, i, segment::prefault::no);
    status dir_synced;
    if (made) dir_synced = c_.fs->sync_dir(c_.id.dir);  // as in take_segment
    if (made && dir_synced) {
      made_upto_.store(i, std::memory_order_release);
      populate_queue_.push_back({made.value().get(), 0});
      ready_[i % kMaxAhead].store(made.value().release(), std::memory_order_release);
      preparing_index_.store(~uint64_t{0}, std::memory_order_release);  // after publishing
      continue;
    }
    // Left to the writer's own attempt, which reports the error (a full disk
    // fails there, before any byte of the append is written).
    if (made) {
      const std::string path = made.value()->path();
      made.value().reset();
      (void)c_.fs->remove(path);
    }
    {
      std::lock_guard<std::mutex> g(error_mu_);
      prepare_error_ = made ? dir_synced : made.error();
    }
    preparing_index_.store(~uint64_t{0}, std::memory_order_release);
    // Do not hammer a full disk: the writer retries at its roll-over anyway.
    for (int k = 0; k < 100 && !stop_.load(std::memory_order_acquire); ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

bool background::populate_one_slice() {
  while (!populate_queue_.empty()) {
    to_populate& p = populate_queue_.front();
    const uint64_t index = p.seg->index();
    populating_.store(index, std::memory_order_seq_cst);
    if (writer_at_.load(std::memory_order_seq_cst) >= index || p.off >= p.seg->capacity()) {
      // The writer is in it (it takes its own faults) or has left it: done.
      populating_.store(kNone, std::memory_order_release);
      populate_queue_.erase(populate_queue_.begin());
      continue;
    }
    const uint64_t n = std::min(kPopulateSlice, p.seg->capacity() - p.off);
    // Best effort: a failure here (memory pressure) leaves the faults to the
    // writer; fallocate already reserved the blocks, so nothing is lost.
    const status s = c_.fs->populate_write(p.seg->data() + p.off, n);
    populating_.store(kNone, std::memory_order_release);
    p.off = s ? p.off + n : p.seg->capacity();
    return true;
  }
  return false;
}

size_t background::max_pending_seals() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return kSealRing;
  return std::clamp<size_t>(static_cast<size_t>(rl.rlim_cur / 16), 4, kSealRing);
}

void background::seal(const seal_job& job) {
  const uint64_t tail = ring_tail_.load(std::memory_order_relaxed);
  // Backpressure: each segment waiting for its seal keeps its writable
  // mapping and descriptor, and is not yet durable in mode none. A sealer
  // this far behind (a disk slower than the appends, on tiny segments) makes
  // the writer wait here rather than let both grow without bound.
  if (tail - ring_head_.load(std::memory_order_acquire) >= max_pending_) {
    const auto t0 = std::chrono::steady_clock::now();
    while (tail - ring_head_.load(std::memory_order_acquire) >= max_pending_)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    note_wait(ctl_counter::longest_seal_wait_ns, t0);
  }
  ring_[tail % kSealRing] = job;
  ring_tail_.store(tail + 1, std::memory_order_release);
}

void background::index_sealed(uint64_t end) {
  std::lock_guard<std::mutex> g(mu_);
  index_pass_end_ = end;
}

status background::drain() {
  while (true) {
    {
      std::lock_guard<std::mutex> g(mu_);
      // The ring first: the sealer marks itself busy before it takes a job,
      // so an empty ring read here makes a job in progress visible below.
      const bool empty =
          ring_head_.load(std::memory_order_acquire) == ring_tail_.load(std::memory_order_acquire);
      if (empty && index_pass_end_ == 0 && !busy_.load(std::memory_order_acquire)) return seal_error_;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

status background::write_footer(file_system& fs, segment& seg, segment_format::footer f,
                                durability_tracker* gate) {
  if (gate) return gate->gated([&] { return write_footer(fs, seg, f, nullptr); },
                                    f.data_end - std::min<uint64_t>(f.data_end, segment_format::kHeaderSize));
  f.data_checksum =
      XXH3_64bits(seg.data() + segment_format::kHeaderSize,
                  f.data_end + record::kSegmentEndSize - segment_format::kHeaderSize);
  // The writer has left this segment: its writable mapping goes first, so
  // the write-back below finds no writable page table entry to protect and
  // sends the writer's CPU no TLB-shootdown interrupt (an msync through the
  // writable mapping cost the writer its tail latency and half its
  // throughput; DESIGN.md "Sealing").
  if (status s = seg.make_read_only(); !s) return s;
  // Crash story: a valid footer makes recovery take the segment as sealed and
  // insist that its records match. So the records it covers are durable
  // before the footer is written at all.
  if (status s = fs.datasync(seg.file()); !s) return s;
  std::byte footer[segment_format::kFooterSize];
  segment_format::encode_footer(footer, f);
  if (status s = fs.pwrite(seg.file(), seg.capacity() - segment_format::kFooterSize, footer, sizeof footer); !s)
    return s;
  // Crash story: a footer torn by a power loss fails its checksum, and
  // recovery rescans the segment as if it were unsealed. Nothing is lost.
  // Synced in every mode: recovery takes every segment before the newest
  // sealed one as sealed, so footers must reach the disk in segment order.
  return fs.datasync(seg.file());
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
    table.tick();  // a growing table moves on while no stream is new
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
  if (k > c_.first_segment->load(std::memory_order_acquire) && indexed_segment_ + 1 != k) {
    // The predecessor's running timestamp maximum is not at hand: check (and
    // where needed rebuild) every index before this one.
    auto r = ensure_indexes(*c_.fs, *c_.table, c_.first_segment->load(std::memory_order_acquire), k, c_.observer, false, &closing_);
    if (!r) return r.error();
    indexed_through_ = r.value();
  }
  if (k == c_.first_segment->load(std::memory_order_acquire)) indexed_through_ = 0;
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
    if (k > c_.first_segment->load(std::memory_order_acquire)) {
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

void background::maybe_retain(bool after_seal) {
  if (!c_.shared || c_.retention.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  if (!after_seal && now - last_retention_ < c_.retention_interval) return;
  last_retention_ = now;
  auto r = detail::run_retention(*c_.shared, std::max(sealed_end_, c_.sealed_end), c_.retention, c_.clock(),
                                 false, c_.observer);
  if (!r && c_.observer)
    c_.observer->on_truncated(c_.id.dir, 0, 0, "retention pass failed (retried later): " + r.error().to_string());
}

status background::do_seal(const seal_job& job, bool more_queued) {
  if (!job.footer_written) {
    // A failure is recorded by the gate (the log refuses writes from then on).
    if (status s = write_footer(*c_.fs, *job.seg, job.footer, c_.durable); !s) return s;
    c_.ctl->add(ctl_counter::segments_sealed);
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
  if (c_.chain) {
    if (status s = extend_chain(job.seg->index()); !s && c_.observer && s.code() != errc::cancelled)
      c_.observer->on_truncated(job.seg->path(), 0, 0, "chain entry not written: " + s.to_string());
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

status background::extend_chain(uint64_t sealed) {
  if (!chain_loaded_) {
    auto got = chain::read(*c_.fs, c_.id.dir, c_.id.log_id);
    if (!got) return got.error();
    chain_loaded_ = true;
    chain_end_ = got.value().end;
    chain_has_entries_ = !got.value().entries.empty();
    if (chain_has_entries_) {
      chain_last_ = got.value().entries.back().segment_index;
      chain_prev_ = got.value().entries.back().hash;
    }
  }
  if (chain_has_entries_ && chain_last_ >= sealed) return {};  // chained before (a reopen's reseal)
  // A new chain starts at this seal; an existing one first catches up on the
  // segments a crash sealed without their entry (sealed, so immutable).
  for (uint64_t k = chain_has_entries_ ? chain_last_ + 1 : sealed; k <= sealed; ++k) {
    if (closing_.load(std::memory_order_relaxed) && k < sealed) return status(errc::cancelled, "closing");
    auto seg = c_.table->get(k);
    if (!seg) return seg.error();
    const chain::digest d = chain::compute(*seg.value(), c_.id.log_id, chain_has_entries_ ? chain_prev_ : chain::digest{});
    if (status s = chain::append(*c_.fs, c_.id.dir, chain_end_, {k, d}); !s) {
      chain_loaded_ = false;  // re-read the file next time
      return s;
    }
    chain_end_ += chain::kEntrySize;
    chain_has_entries_ = true;
    chain_last_ = k;
    chain_prev_ = d;
  }
  return {};
}

void background::run_seal() {
  // Checkpoints are derived data: on a small machine they must not take a
  // core from the writer or from the preparer the writer may wait for.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  auto last_work = std::chrono::steady_clock::now();
  while (true) {
    uint64_t pass_end = 0;
    {
      std::lock_guard<std::mutex> g(mu_);
      pass_end = index_pass_end_;
      if (pass_end) busy_.store(true, std::memory_order_release);
    }
    if (pass_end) {
      auto r = ensure_indexes(*c_.fs, *c_.table, c_.first_segment->load(std::memory_order_acquire), pass_end, c_.observer, false, &closing_);
      if (r && pass_end > c_.first_segment->load(std::memory_order_acquire)) {
        indexed_segment_ = pass_end - 1;
        indexed_through_ = r.value();
      } else if (!r && c_.observer && r.error().code() != errc::cancelled) {
        c_.observer->on_truncated(c_.id.dir, 0, 0, "segment indexes not checked: " + r.error().to_string());
      }
      std::lock_guard<std::mutex> g(mu_);
      index_pass_end_ = 0;
      busy_.store(false, std::memory_order_release);
      last_work = std::chrono::steady_clock::now();
      continue;
    }
    const uint64_t head = ring_head_.load(std::memory_order_relaxed);
    const uint64_t tail = ring_tail_.load(std::memory_order_acquire);
    if (head == tail) {
      if (stop_.load(std::memory_order_acquire)) {
        rebuild_damaged_indexes();  // what readers found since the last seal
        break;
      }
      maybe_retain(false);  // time limits move on while no seal comes
      std::this_thread::sleep_for(idle_sleep(last_work));
      continue;
    }
    busy_.store(true, std::memory_order_release);
    const seal_job job = ring_[head % kSealRing];
    // The slot is free again once the job is copied out.
    ring_head_.store(head + 1, std::memory_order_release);
    status s = do_seal(job, head + 1 != tail);
    rebuild_damaged_indexes();
    if (s) sealed_end_ = std::max(sealed_end_, job.seg->index() + 1);
    maybe_retain(head + 1 == tail);  // after the last seal queued
    {
      std::lock_guard<std::mutex> g(mu_);
      if (!s && seal_error_.ok()) seal_error_ = s;
      busy_.store(false, std::memory_order_release);
    }
    last_work = std::chrono::steady_clock::now();
  }
}

}  // namespace varve
