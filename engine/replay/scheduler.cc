// The partitioned replay scheduler (varve/replay.h).
//
// W workers share a ring of K slots; worker 0 is the calling thread, which is
// also the reader (so `threads(W)` uses W threads, and W = 1 is a plain
// single-threaded loop with no hand-off at all). The reader fills slot n % K
// with chunk n of the log (validated by the chunk_reader) and, per worker,
// the list of (record offset, partition) of the events that worker must
// apply; then it publishes n+1, and applies its own lists a little behind
// (kLead chunks, so the others always have work queued). Every worker visits
// every chunk in order and applies its own list, so a partition's events
// (all on one worker) are applied in log order. A slot is refilled only once
// every worker has finished it: the ring is the backpressure, and the reader
// never holds more than K chunks. Lists are vectors that grow to the largest
// chunk once and are then reused: no allocation per event.
//
// Waiting: a worker spins briefly on the published counter, then sleeps on
// it (std::atomic::wait, a futex); the reader does the same on the slowest
// worker's done counter. Per chunk (thousands of events), not per event.
#include <immintrin.h>
#include <sched.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <thread>

#include <xxhash.h>

#include "base/coding.h"
#include "engine/io/chunk_reader.h"
#include "engine/lifecycle/stream_lifecycle.h"
#include "engine/log_access.h"
#include "base/record_decode.h"
#include "base/record_format.h"
#include "engine/segment_filter.h"
#include "varve/replay.h"

namespace varve::detail {

namespace {

using clock_type = std::chrono::steady_clock;

constexpr uint32_t kSlots = 8;
constexpr uint64_t kLead = 2;  // chunks the reader keeps queued ahead of its own applying
constexpr uint64_t kClosed = uint64_t{1} << 63;
// A short spin before sleeping on a futex: long enough to catch a chunk that
// is about to come, short enough not to steal a core from the thread that
// is producing it (machines with fewer cores than threads).
constexpr int kSpins = 128;

struct item {
  uint32_t offset;     // of the record in the chunk
  uint32_t partition;
};

struct slot {
  chunk c;
  // Where the reader stood after this chunk: past a segment-end marker this
  // is the next segment's first record, not c.end (which would name the
  // unwritten bytes after the marker), so it is a position a replay can
  // start from.
  uint64_t next = 0;
  std::vector<std::vector<item>> lists;  // per worker
};

struct alignas(64) worker_state {
  std::atomic<uint64_t> done{0};       // chunks finished
  std::atomic<uint64_t> through{0};    // every event of this worker below it is applied
  std::atomic<uint64_t> applied{0};
  std::thread thread;
  // The owning thread's own: the next chunk to apply, its count, a failure.
  uint64_t next = 0;
  uint64_t applied_local = 0;
  bool failed = false;
  event_view v;
  std::string up_buf;  // upcast payloads (the log's upcasters), reused
  std::string dec_buf;  // decrypted payloads (a log with a master key), reused
};

inline void cpu_relax() { _mm_pause(); }

// Partition of a stream: xxh3(stream) mapped onto [0, P) by multiply-shift
// (Lemire's fast range): uniform like a modulo, without a 64-bit division per
// event. Stable: the same stream lands in the same partition in every run
// with the same P.
inline uint32_t partition_of(std::string_view stream, uint32_t partitions) {
  const uint64_t h = XXH3_64bits(stream.data(), stream.size());
  return static_cast<uint32_t>((static_cast<unsigned __int128>(h) * partitions) >> 64);
}

// The stream id and type of a validated event record, read straight from its
// header (docs/FORMAT.md §3) without decoding the rest.
inline void peek(const std::byte* r, std::string_view& stream, uint32_t& type, uint8_t& flags) {
  flags = coding::get_u8(r + 13);
  const uint32_t len = coding::get_u8(r + 14);
  const uint32_t ids = record::kIdSize * (((flags & record::kFlagEventId) != 0) +
                                          ((flags & record::kFlagCorrelation) != 0) +
                                          ((flags & record::kFlagCausation) != 0));
  stream = std::string_view(reinterpret_cast<const char*>(r) + record::kHeaderSize + ids, len);
  type = coding::get_u32(r + 48);
}

class scheduler {
 public:
  scheduler(const replay_config& cfg, std::vector<replay_partition*> parts, uint32_t threads)
      : cfg_(cfg), parts_(std::move(parts)), workers_(threads) {
    owner_.resize(parts_.size());
    // Worker 0 also reads, routes and validates every event, so it owns half
    // the share of the others: partitions are dealt over a cycle in which it
    // appears once and every other worker twice (W = 2: a third and two
    // thirds). With apply ~200 ns/event that balances the two threads; a
    // trivial projection stays bound by the reader either way.
    const uint32_t cycle = threads == 1 ? 1 : 2 * threads - 1;
    for (uint32_t p = 0; p < parts_.size(); ++p) {
      const uint32_t slot = p % cycle;
      owner_[p] = slot == 0 ? 0 : 1 + (slot - 1) / 2;
    }
    for (auto& s : ring_) s.lists.resize(threads);
  }

  replay_summary run(const event_log& log, position from, position to, replay_summary s);

 private:
  void process(uint32_t w);
  void work(uint32_t w);
  // Waits until every worker has finished chunk `n - 1` (all of them: n
  // chunks), applying the reader's own share on the way.
  void wait_done(uint64_t n);
  uint64_t min_done() const {
    uint64_t m = UINT64_MAX;
    for (const auto& w : workers_) m = std::min(m, w.done.load(std::memory_order_acquire));
    return m;
  }
  position reached(position fallback) const {
    uint64_t m = UINT64_MAX;
    for (const auto& w : workers_) m = std::min(m, w.through.load(std::memory_order_acquire));
    return m == UINT64_MAX ? fallback : position{m};
  }
  void fail(status st) {
    std::lock_guard<std::mutex> g(error_mu_);
    if (error_.ok()) error_ = std::move(st);
    stop_.store(true, std::memory_order_release);
  }
  void publish(uint64_t v) {
    published_.store(v, std::memory_order_release);
    published_.notify_all();
  }

  const replay_config& cfg_;
  std::vector<replay_partition*> parts_;
  std::vector<uint32_t> owner_;
  std::vector<worker_state> workers_;
  slot ring_[kSlots];
  alignas(64) std::atomic<uint64_t> published_{0};
  alignas(64) std::atomic<bool> stop_{false};
  std::mutex error_mu_;
  status error_;
  std::shared_ptr<const upcasters> up_;
  const shared_log* shared_ = nullptr;  // for opening encrypted payloads
  // Stream lifecycle's view when the replay began (null: no metadata).
  std::shared_ptr<const lifecycle_view> life_;
  uint64_t life_now_ = 0;
};

// Applies worker w's list of chunk workers_[w].next (published already).
void scheduler::process(uint32_t w) {
  worker_state& me = workers_[w];
  const slot& s = ring_[me.next % kSlots];
  if (!me.failed) {
    for (const item& it : s.lists[w]) {
      const uint64_t pos = s.c.position + it.offset;
      // Validated by the chunk reader; decode() re-checks the header's
      // bounds (cheap) but not the checksum.
      record::decoded d = record::decode_inline(s.c.data + it.offset, s.c.end - pos, pos, false, me.v);
      status st;
      if (d.outcome != record::decode_outcome::event) {
        st = status(errc::corruption, "replay: record at position " + std::to_string(pos) +
                                          " changed after validation");
      } else if (life_ && life_->hides(me.v, life_now_)) [[unlikely]] {
        continue;  // hidden by stream lifecycle: not applied
      } else if (me.v.encrypted && !(st = shared_->open_payload(me.v, me.dec_buf)).ok()) [[unlikely]] {
        // a payload that does not authenticate names its position; the replay stops there
      } else if (up_ && !me.v.forgotten && !(st = up_->apply(me.v, me.up_buf)).ok()) [[unlikely]] {
        // the upcaster's error names the event; the replay stops there
      } else {
        // A projection that throws stops the replay like one that returns
        // an error, instead of taking the process down from a worker.
        try {
          st = parts_[it.partition]->apply(me.v);
        } catch (const std::exception& ex) {
          st = status(errc::invalid_argument, std::string("projection threw: ") + ex.what());
        } catch (...) {
          st = status(errc::invalid_argument, "projection threw an exception");
        }
      }
      if (!st.ok()) {
        me.through.store(pos, std::memory_order_release);
        fail(std::move(st));
        me.failed = true;
        break;
      }
      ++me.applied_local;
    }
    if (!me.failed) me.through.store(s.next, std::memory_order_release);
  }
  me.applied.store(me.applied_local, std::memory_order_relaxed);
  me.done.store(++me.next, std::memory_order_release);
  me.done.notify_one();
}

void scheduler::work(uint32_t w) {
  worker_state& me = workers_[w];
  for (;;) {
    uint64_t p = published_.load(std::memory_order_acquire);
    for (int i = 0; (p & ~kClosed) <= me.next && !(p & kClosed) && i < kSpins; ++i) {
      cpu_relax();
      p = published_.load(std::memory_order_acquire);
    }
    if ((p & ~kClosed) <= me.next) {
      if (p & kClosed) break;
      published_.wait(p, std::memory_order_acquire);
      continue;
    }
    process(w);
  }
}

void scheduler::wait_done(uint64_t n) {
  while (workers_[0].next < n) process(0);  // the reader's own share first
  for (size_t i = 1; i < workers_.size(); ++i) {
    worker_state& w = workers_[i];
    uint64_t d = w.done.load(std::memory_order_acquire);
    for (int spin = 0; d < n && spin < kSpins; ++spin) {
      cpu_relax();
      d = w.done.load(std::memory_order_acquire);
    }
    while (d < n) {
      w.done.wait(d, std::memory_order_acquire);
      d = w.done.load(std::memory_order_acquire);
    }
  }
}

replay_summary scheduler::run(const event_log& log, position from, position to,
                              replay_summary s) {
  const auto& shared = log_access::shared(log);
  const uint64_t log_id = log_access::state(log).meta.log_id;
  // Events reach the projections upcast; routing and filters see them as
  // stored (a stream's partition never depends on its schema).
  up_ = shared->upcasters_now();
  shared_ = shared.get();
  // What stream lifecycle hides, as of the replay's start.
  if (status c = shared->check_lifecycle(); !c) {
    s.error = c;
    s.reached = from;
    return s;
  }
  life_ = shared->lifecycle();
  if (life_ && life_->empty()) life_.reset();
  if (life_) life_now_ = shared->wall_now_ns();
  const uint32_t P = static_cast<uint32_t>(parts_.size());
  const uint32_t W = static_cast<uint32_t>(workers_.size());
  const auto t0 = clock_type::now();

  chunk_reader_options o;
  o.backend = cfg_.io;
  o.chunk_bytes = cfg_.chunk_bytes;
  o.max_held = kSlots;
  const event_filter& f = cfg_.filter;
  if (!f.empty()) {
    o.skip_segment = [&shared, &f](uint64_t index) {
      return match_segment(*shared, index, f) == segment_match::none;
    };
  }
  auto rd = chunk_reader::open(shared, from, to, o);
  if (!rd) {
    s.error = rd.error();
    s.reached = from;
    return s;
  }
  chunk_reader& reader = *rd.value();
  s.io = reader.backend();

  for (uint32_t w = 0; w < W; ++w) workers_[w].through.store(from.value);
  for (uint32_t w = 1; w < W; ++w) workers_[w].thread = std::thread([this, w] { work(w); });

  uint64_t n = 0;         // chunks published
  uint64_t released = 0;  // chunks handed back to the reader
  uint64_t skipped = 0, bytes = 0, since_checkpoint = 0;
  auto last_progress = t0;
  event_view probe;  // only stream and type are filled, for the filter
  std::vector<std::string> saved(P);

  // Drains the ring (every worker idle at the end of chunk n - 1) and saves
  // every partition with the position they all reflect.
  auto checkpoint = [&](position at) -> status {
    wait_done(n);
    if (stop_.load(std::memory_order_acquire)) return {};  // a projection failed
    for (uint32_t p = 0; p < P; ++p) {
      saved[p].clear();
      status st = parts_[p]->save(saved[p], at);
      if (!st.ok()) return st;
    }
    status st = cfg_.checkpoints->save(log_id, at, saved);
    if (st.ok()) ++s.checkpoints;
    return st;
  };

  status read_error;
  for (;;) {
    if (stop_.load(std::memory_order_acquire)) break;
    if (cfg_.cancel && cfg_.cancel->cancelled()) {
      read_error = status(errc::cancelled, "replay cancelled");
      break;
    }
    if (n >= kSlots) {  // reuse the oldest slot once every worker is done with it
      wait_done(n - kSlots + 1);
      reader.release(ring_[released++ % kSlots].c);
    }
    slot& sl = ring_[n % kSlots];
    auto got = reader.next(sl.c);
    if (!got) {
      read_error = got.error();
      break;
    }
    if (!got.value()) break;
    sl.next = reader.where().value;
    for (auto& l : sl.lists) l.clear();
    for (uint32_t off : sl.c.events) {
      std::string_view stream;
      uint32_t type;
      uint8_t flags;
      peek(sl.c.data + off, stream, type, flags);
      if (!f.empty()) {
        probe.stream = stream;
        probe.type = type;
        probe.stream_is_integer = (flags & record::kFlagIntegerStream) != 0;
        if (!f.matches(probe)) {
          ++skipped;
          continue;
        }
      }
      const uint32_t p = partition_of(stream, P);
      sl.lists[owner_[p]].push_back(item{off, p});
    }
    bytes += sl.c.end - sl.c.position;
    since_checkpoint += sl.c.events.size();
    publish(++n);
    // The reader's own share, kLead chunks behind (at once when alone).
    const uint64_t lead = W > 1 ? kLead : 0;
    while (workers_[0].next + lead < n) process(0);

    if (cfg_.checkpoints && cfg_.checkpoint_every_events &&
        since_checkpoint >= cfg_.checkpoint_every_events) {
      since_checkpoint = 0;
      status st = checkpoint(position{sl.next});
      if (!st.ok()) {
        read_error = st;
        break;
      }
    }
    if (cfg_.on_progress) {
      const auto now = clock_type::now();
      if (now - last_progress >= cfg_.progress_every) {
        last_progress = now;
        replay_progress pr;
        pr.from = from;
        pr.to = to;
        pr.reached = reached(from);
        for (const auto& w : workers_) pr.events_applied += w.applied.load(std::memory_order_relaxed);
        pr.bytes_read = bytes;
        pr.seconds = std::chrono::duration<double>(now - t0).count();
        cfg_.on_progress(pr);
      }
    }
  }

  // A clean end or a cancel: let the workers finish what was handed out, so
  // every partition reflects exactly the events below the last chunk's end
  // (a consistent cut a checkpoint can record). After a projection error the
  // failed worker skips the rest; the others finish theirs.
  const bool clean = read_error.ok() && !stop_.load(std::memory_order_acquire);
  const bool cancelled = read_error.code() == errc::cancelled;
  if (cfg_.checkpoints && (clean || cancelled) && n > 0) {
    status st = checkpoint(position{ring_[(n - 1) % kSlots].next});
    if (!st.ok() && read_error.ok()) read_error = st;
  }
  wait_done(n);
  publish(n | kClosed);
  for (uint32_t w = 1; w < W; ++w) workers_[w].thread.join();
  for (; released < n; ++released) reader.release(ring_[released % kSlots].c);

  s.error = !error_.ok() ? error_ : read_error;
  s.reached = reached(from);
  if (s.error.ok()) s.reached = to;
  for (const auto& w : workers_) s.events_applied += w.applied.load(std::memory_order_relaxed);
  s.events_skipped = skipped;
  s.bytes_read = std::max(bytes, reader.bytes_read());
  s.segments_skipped = reader.segments_skipped();
  s.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (cfg_.on_progress) {
    replay_progress pr;
    pr.from = from;
    pr.to = to;
    pr.reached = s.reached;
    pr.events_applied = s.events_applied;
    pr.bytes_read = s.bytes_read;
    pr.seconds = s.seconds;
    cfg_.on_progress(pr);
  }
  return s;
}

}  // namespace

replay_summary run_replay(const event_log& log, const replay_config& cfg,
                          const std::function<replay_partition*(uint32_t)>& make) {
  replay_summary s;
  uint32_t W = cfg.threads;
  if (W == 0) W = std::max(1u, std::thread::hardware_concurrency());
  // Default: four times the partition cycle (see the scheduler), so every
  // worker's share comes out as intended.
  uint32_t P = cfg.partitions ? cfg.partitions : 4 * (W == 1 ? 1 : 2 * W - 1);
  if (P > (1u << 20)) {
    s.error = status(errc::invalid_argument, "replay: at most 1048576 partitions");
    return s;
  }
  W = std::min(W, P);
  s.partitions = P;
  s.threads = W;
  s.from = cfg.from;
  s.reached = cfg.from;
  s.io = cfg.io;

  // The end: a position (clamped to what is committed now) or a time.
  const position committed = log.committed_position();
  position to = committed;
  if (cfg.to_time) {
    auto t = log.position_at_time(cfg.until_ns);
    if (!t) {
      s.error = t.error();
      return s;
    }
    to = std::min(t.value(), committed);
  } else if (!cfg.to.is_none()) {
    to = std::min(cfg.to, committed);
  }
  s.to = to;

  std::vector<replay_partition*> parts(P);
  for (uint32_t p = 0; p < P; ++p) parts[p] = make(p);

  position from = cfg.from;
  if (cfg.resume) {
    if (!cfg.checkpoints) {
      s.error = status(errc::invalid_argument, "replay: resume() needs a checkpoint store");
      return s;
    }
    // Damaged generations are skipped (and reported): state is derived data,
    // and with no valid generation the replay starts over, which is slower
    // but never wrong.
    auto ck = cfg.checkpoints->load(log_access::state(log).meta.log_id, P, &s.warnings);
    if (ck) {
      for (uint32_t p = 0; p < P; ++p) {
        status st = parts[p]->load(ck.value().states[p]);
        if (!st.ok()) {
          s.error = status(st.code(), ck.value().file + ": partition " + std::to_string(p) +
                                          ": the projection cannot load this state (" +
                                          st.message() +
                                          "); remove the checkpoint to rebuild from the log");
          return s;
        }
      }
      from = ck.value().at;
    } else if (ck.error().code() != errc::not_found) {
      s.error = ck.error();
      return s;
    }
  }
  s.from = from;
  s.reached = from;
  if (from > to) {
    if (cfg.resume && from <= committed) {  // the checkpoint is past a `to`: nothing to do
      s.reached = from;
      return s;
    }
    s.error = status(errc::invalid_argument, "replay: from position " +
                                                 std::to_string(from.value) +
                                                 " is past the end " + std::to_string(to.value));
    return s;
  }
  scheduler sch(cfg, std::move(parts), W);
  return sch.run(log, from, to, std::move(s));
}

}  // namespace varve::detail
