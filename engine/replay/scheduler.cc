// The partitioned replay scheduler (varve/replay.h).
//
// The range is cut into items, in log order, and every item is owned, start
// to end, by the worker that takes it (a shared cursor): it frames the
// item's records, verifies and decodes each event (checksum included:
// record::decode_inline), applies the filter, hashes the stream to its
// partition, and keeps the event in its group's list (an 8-byte offset);
// then it applies the lists group by group. Partition p belongs to group
// p % G, and a group is ready for item n once the owner of item n - 1 has
// applied all of that group's events and handed it on (the group's `next`
// becomes n). With one thread every group is ready and an event is applied
// the moment it is verified; with more, an event applied at once would keep
// its group busy until the item's end and make the next owner wait for all
// of it (a heavy projection fell to 1.05x on 2 threads that way). So each partition - hence each stream - sees its events in log
// order, one thread at a time; no worker owns a partition (a hot stream
// makes each item's owner wait for that one group while it applies the
// others); and the bytes are framed, verified and applied by the core that
// already has them in cache.
//
// Where items come from:
//   pieces  (mmap) the owner frames its item itself: items start on record
//           boundaries known without walking the records before them - a
//           segment's first record, or a sealed segment's index samples
//           (chunk_reader_internal.h, plan_pieces). Nothing is serial; where
//           two pieces meet, the later one's owner checks that sequences
//           join densely before it applies anything.
//   chunks  (uring, pread: one reader, buffers reused) the calling thread
//           (worker 0) frames chunks with the chunk reader in frame-only mode
//           (lengths, kinds, positions, sequences: a few ns per record) and
//           publishes them in a ring; the framing is the one serial step.
//
// Backpressure: an item is taken only while it is fewer than K items ahead
// of the slowest group, and a worker owns at most kMaxOwned at once, so the
// lists of pointers (and with chunks the buffers) are bounded. Lists are
// vectors reused across items: no allocation per event. A worker with
// nothing to do spins briefly on an epoch counter that every hand-on bumps,
// then sleeps on it (a futex, woken only when someone sleeps): per item, not
// per event. One thread (W = 1) finds every group ready: one pass, each
// event decoded once.
//
// Merged replays (replay::run_merged, W > 1): one group, no partitions. The
// owner folds every event of its item, in the pass, into the state of the
// item's ring slot, and "applying the group" is merging that state into the
// result (parts_[0]) at the item's turn, so states are merged in item order.
//
// The cut on corruption stays exact: a record of item n that fails framing
// or validation at X ends item n's events there and sets the limit to n + 1
// before any group is handed on past n; a group reaches item n + 1 only
// through item n. Every partition holds exactly the events below X - what
// one reader validating every record first would have given.
#include <immintrin.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <thread>

#include "base/record_decode.h"  // first: the inline xxhash (XXH_INLINE_ALL)
#include "base/record_format.h"
#include "engine/io/chunk_reader.h"
#include "engine/io/chunk_reader_internal.h"
#include "engine/lifecycle/stream_lifecycle.h"
#include "engine/log_access.h"
#include "engine/segment_filter.h"
#include "varve/replay.h"

namespace varve::detail {

namespace {

using clock_type = std::chrono::steady_clock;

constexpr uint32_t kSlots = 8;  // items in flight, at most
constexpr uint64_t kNone = UINT64_MAX;
// Items a worker owns at once: while the groups of one wait for the item
// before it, it can take the next.
constexpr size_t kMaxOwned = 2;
// An owner walks its piece a window at a time (the walk's pages are asked
// for ahead of it per window).
constexpr uint64_t kWindowBytes = 1u << 20;
// A short spin before sleeping on a futex: long enough to catch work that is
// about to come, short enough not to steal a core from the thread that is
// producing it (machines with fewer cores than threads).
constexpr int kSpins = 128;

// An event applied after its item was passed: its verified bytes stay where
// they are (the mapping, or a chunk held in the ring) until then, found from
// the item's base (segments are at most 1 GiB: 32 bits of offset). 8 bytes:
// the lists are written and read once per event.
struct deferred {
  uint32_t offset;     // from the item's `data`
  uint32_t partition;
};

// What every owner of a later item may need to know of item n (ring slot n % K).
struct slot {
  chunk c;            // with chunks: the buffer, held until every group passed it
  uint64_t next = 0;  // where a reader stands after the item (a resumable position)
  // Sequences the item's records carry, for the density check where two
  // pieces meet (stored before any group is handed on): the first record's,
  // if it is an event, and the one after its last record (event or hole).
  bool starts_with_event = false, sequence_known = false;
  uint64_t first_sequence = 0, next_sequence = 0;
};

// Only the owner of item `next` touches a group (its partitions included),
// and it hands the group on by storing next + 1.
struct alignas(64) group_state {
  std::atomic<uint64_t> next{0};      // the next item to apply
  std::atomic<uint64_t> through{0};   // every event of the group below it is applied
  bool failed = false;                // a projection failed: the rest is skipped
};

struct owned_item {
  uint64_t n = 0;
  // Where its deferred events are: data[offset] is at position + offset,
  // and no record runs past `end`.
  const std::byte* data = nullptr;
  uint64_t position = 0, end = 0;
  uint64_t cut = 0;                    // the group's `through` once handed on
  std::vector<uint32_t> pending;       // groups not handed on yet
  std::vector<uint8_t> ready;          // per group: applied as they came
  std::vector<std::vector<deferred>> later;  // per group: the rest
  bool joined = false;                 // the sequence join with item n - 1 was checked
  // Merged replays: the item's own state (its ring slot's), where it failed
  // (a projection's error ends the item there), and the events it applied.
  replay_partition* inst = nullptr;
  group_state* gs = nullptr;
  uint64_t applied = 0;
};

struct alignas(64) worker_state {
  std::atomic<uint64_t> applied{0};
  std::atomic<uint64_t> skipped{0};
  uint64_t applied_local = 0;
  uint64_t skipped_local = 0;
  // The items it owns: owned[0, owned_n), in item order. Fixed slots, so
  // their vectors keep their capacity.
  std::array<owned_item, kMaxOwned> owned;
  size_t owned_n = 0;
  io_detail::piece_framer framer;  // the piece it is walking
  std::thread thread;
  event_view v;
  event_ref r;          // the event, with a projection that takes refs (refs_)
  std::string up_buf;   // upcast payloads (the log's upcasters), reused
  std::string dec_buf;  // decrypted payloads (a log with a master key), reused
  status err;           // what the last projection that failed said
};

inline void cpu_relax() { _mm_pause(); }

// Partition of a stream: xxh3(stream) mapped onto [0, P) by multiply-shift
// (Lemire's fast range): uniform like a modulo, without a 64-bit division per
// event. Stable: the same stream lands in the same partition in every run
// with the same P.
// Stream ids of up to 16 bytes (integer ids: 8) take XXH3's short path
// inline, the same function XXH3_64bits dispatches to (same hash): the
// call and its length dispatch were ~5 % of a trivial replay on one thread.
[[gnu::always_inline]] inline uint32_t partition_of(std::string_view stream, uint32_t partitions) {
  const uint64_t h =
      stream.size() <= 16
          ? XXH3_len_0to16_64b(reinterpret_cast<const xxh_u8*>(stream.data()), stream.size(), XXH3_kSecret, 0)
          : XXH3_64bits(stream.data(), stream.size());
  return static_cast<uint32_t>((static_cast<unsigned __int128>(h) * partitions) >> 64);
}

class scheduler {
 public:
  scheduler(const replay_config& cfg, std::vector<replay_partition*> parts, uint32_t threads)
      : cfg_(cfg), parts_(std::move(parts)), workers_(threads) {
    const uint32_t P = static_cast<uint32_t>(parts_.size());
    // Enough groups that a hot one leaves the others plenty to share; few
    // enough that handing each on once per item stays cheap. Merged: one
    // group, the merged state, handed on item by item as each is merged.
    fused_ = threads == 1;
    merge_ = cfg.merged && !fused_;
    one_part_ = P == 1;
    G_ = fused_ || merge_ ? 1 : std::min(P, 8 * threads);
    groups_ = std::make_unique<group_state[]>(G_);
    group_of_.resize(P);  // p % G, without a division per event
    for (uint32_t p = 0; p < P; ++p) group_of_[p] = p % G_;
    for (auto& w : workers_)
      for (auto& o : w.owned) {
        o.pending.reserve(G_);
        o.ready.resize(G_);
        o.later.resize(G_);
      }
  }

  replay_summary run(const event_log& log, position from, position to, replay_summary s);

 private:
  // Takes the next item and makes its pass; false when there is none to take.
  bool try_take(worker_state& me);
  // Which groups take the item's events as they come (true if any, and the
  // sequence join is then checked in the pass). Merged: the item's state,
  // reset.
  bool begin_groups(owned_item& o);
  // Merged: item o's state into the merged one (group gs), in item order.
  void merge_item(owned_item& o, group_state& gs);
  // A projection's call that is not an apply (reset, merge): an exception is
  // an error, as in call_projection.
  template <class F>
  static status guarded(F&& f) {
    try {
      return f();
    } catch (const std::exception& ex) {
      return status(errc::invalid_argument, std::string("projection threw: ") + ex.what());
    } catch (...) {
      return status(errc::invalid_argument, "projection threw an exception");
    }
  }
  // Chunks: verifies and decodes each framed event, and routes it.
  void pass(worker_state& me, owned_item& o, const std::byte* data, uint64_t position,
            uint64_t end, std::span<const uint32_t> events);
  // The pass only routes events (none is applied in it: several workers)
  // and no filter looks at them: the view needs only what routing reads.
  bool light_pass() const { return !fused_ && !merge_ && !filter_; }
  // One verified event, decoded in me.v (only its routing fields when
  // light_pass()): filtered, hashed to its partition, applied now if its
  // group is ready, else listed for later.
  [[gnu::always_inline]] void route(worker_state& me, owned_item& o, uint64_t pos) {
    if (filter_ && !filter_->matches(me.v)) {
      ++me.skipped_local;
      return;
    }
    if (merge_) {
      // Merged: every event of the item into the item's own state.
      if (!apply_now(me, *o.gs, o.inst, pos)) [[unlikely]]
        cut_at(o.n);  // merged up to the failed event, nothing after
      return;
    }
    // One partition (a merged replay on one thread): no stream to hash.
    const uint32_t part = one_part_ ? 0 : partition_of(me.v.stream, static_cast<uint32_t>(parts_.size()));
    const uint32_t g = group_of_[part];
    if (o.ready[g]) {
      (void)apply_now(me, groups_[g], parts_[part], pos);
    } else {
      o.later[g].push_back(deferred{static_cast<uint32_t>(pos - o.position), part});
    }
  }
  // Applies and hands on every group of the worker's items that the item
  // before has handed on; false when none was.
  bool hand_on(worker_state& me);
  // The sequence join of item n with item n - 1 (complete: some group was
  // handed on to n); false after failing the replay at the join.
  bool check_join(owned_item& o);
  // Applies one event now; false when it failed the group. Inlined, with a
  // path for the common event (no lifecycle, upcasters or encryption):
  // ~35 instructions per event fewer than going through apply_slow
  // (callgrind, BENCHMARKS.md section 26).
  [[gnu::always_inline]] bool apply_now(worker_state& me, group_state& gs, replay_partition* p, uint64_t pos) {
    if (gs.failed) return false;
    if (!plain_ || me.v.encrypted) [[unlikely]] return apply_slow(me, gs, p, pos);
    if (!call_projection(p, me.v, me.err)) [[unlikely]] return fail_group(gs, std::move(me.err), pos);
    ++me.applied_local;
    return true;
  }
  // The same with stream lifecycle (an event it hides is not applied), a
  // payload to decrypt and upcasters to run first.
  bool apply_slow(worker_state& me, group_state& gs, replay_partition* p, uint64_t pos);
  // The event in me.r, applied now: the same, with an encrypted record
  // decoded into me.v first (to be decrypted there).
  [[gnu::always_inline]] bool apply_ref_now(worker_state& me, group_state& gs, replay_partition* p, uint64_t pos) {
    if (gs.failed) return false;
    if (event_ref_access::encrypted_record(me.r)) [[unlikely]] return apply_ref_slow(me, gs, p, pos);
    if (!call_projection(p, me.r, me.err)) [[unlikely]] return fail_group(gs, std::move(me.err), pos);
    ++me.applied_local;
    return true;
  }
  bool apply_ref_slow(worker_state& me, group_state& gs, replay_partition* p, uint64_t pos);
  // The projection's apply; one that throws stops the replay like one that
  // returns an error, instead of taking the process down from a worker.
  // false with `err` set when it failed.
  template <class E>
  [[gnu::always_inline]] bool call_projection(replay_partition* p, const E& v, status& err) {
    try {
      return p->apply(v, err);
    } catch (const std::exception& ex) {
      err = status(errc::invalid_argument, std::string("projection threw: ") + ex.what());
    } catch (...) {
      err = status(errc::invalid_argument, "projection threw an exception");
    }
    return false;
  }
  // A projection (or a payload) failed at `pos`: the group stops there.
  bool fail_group(group_state& gs, status st, uint64_t pos);
  bool step(worker_state& me) {
    const bool handed = hand_on(me);
    return try_take(me) || handed;
  }
  // Runs tasks on the calling thread until every item below n has been
  // taken, passed and handed on by every group (or stopped at the cut).
  void drain(uint64_t n);
  uint64_t min_next() const {
    uint64_t m = kNone;
    for (uint32_t g = 0; g < G_; ++g) m = std::min(m, groups_[g].next.load(std::memory_order_acquire));
    return m;
  }
  position reached(position fallback) const {
    uint64_t m = kNone;
    for (uint32_t g = 0; g < G_; ++g) m = std::min(m, groups_[g].through.load(std::memory_order_acquire));
    return m == kNone ? fallback : position{m};
  }
  // Records the error at the lowest position (workers find them in any order).
  void fail(status st, uint64_t at) {
    std::lock_guard<std::mutex> g(error_mu_);
    if (error_.ok() || at < error_at_) {
      error_ = std::move(st);
      error_at_ = at;
    }
    stop_.store(true, std::memory_order_release);
  }
  // Item n ends at a bad record: nothing of a later item is applied.
  void cut_at(uint64_t n) {
    uint64_t lim = limit_.load(std::memory_order_relaxed);
    while (n + 1 < lim && !limit_.compare_exchange_weak(lim, n + 1, std::memory_order_acq_rel)) {
    }
  }
  void wake() {
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) != 0) epoch_.notify_all();
  }
  // Waits for the epoch to move past `seen`: a short spin, then a futex.
  void idle(uint32_t seen) {
    for (int i = 0; i < kSpins; ++i) {
      if (epoch_.load(std::memory_order_acquire) != seen) return;
      cpu_relax();
    }
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    if (epoch_.load(std::memory_order_seq_cst) == seen) epoch_.wait(seen, std::memory_order_acquire);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }
  void work(uint32_t w);

  const replay_config& cfg_;
  std::vector<replay_partition*> parts_;
  std::vector<worker_state> workers_;
  bool fused_ = false;  // one thread: every event applied in the pass
  // Merged (replay::run_merged, several threads): every event applied in the
  // pass, into its item's state; the states merged into parts_[0] in order.
  bool merge_ = false;
  bool one_part_ = false;
  std::vector<std::unique_ptr<replay_partition>> inst_;  // per ring slot
  std::unique_ptr<group_state[]> item_gs_;                // per ring slot
  std::atomic<uint64_t> merged_events_{0};
  uint32_t G_ = 1;
  std::unique_ptr<group_state[]> groups_;
  std::vector<uint32_t> group_of_;  // partition -> group
  slot ring_[kSlots];
  // Items: pieces framed by their owners (mmap), or chunks framed by worker 0.
  bool pieces_mode_ = false;
  bool advise_pieces_ = true;  // read-ahead hints while walking pieces (not resident)
  std::vector<io_detail::piece> pieces_;
  alignas(64) std::atomic<uint64_t> available_{0};  // items that may be taken
  alignas(64) std::atomic<uint64_t> taken_{0};      // the next item to take
  alignas(64) std::atomic<uint64_t> passed_{0};     // items whose pass is done
  alignas(64) std::atomic<uint64_t> limit_{kNone};  // no group applies an item from here
  std::atomic<bool> hold_{false};                   // take nothing (a checkpoint drains)
  std::atomic<uint64_t> events_seen_{0};            // framed events of taken items
  alignas(64) std::atomic<uint32_t> epoch_{0};
  std::atomic<uint32_t> sleepers_{0};
  alignas(64) std::atomic<bool> stop_{false};
  std::atomic<bool> closed_{false};
  std::mutex error_mu_;
  status error_;
  uint64_t error_at_ = 0;
  bool verify_ = true;
  uint8_t l2_ = 0;
  shared_log* log_ = nullptr;
  const event_filter* filter_ = nullptr;  // null: every event
  std::shared_ptr<const upcasters> up_;
  // Stream lifecycle's view when the replay began (null: no metadata).
  std::shared_ptr<const lifecycle_view> life_;
  uint64_t life_now_ = 0;
  // Neither lifecycle nor upcasters apply: an event goes to its projection
  // as decoded (unless encrypted, a per-record flag).
  bool plain_ = true;
  // plain_, and the projections take event_refs: the deferred events of
  // several workers are applied as refs to their records (decode_validated
  // into a ref: the bounds checked, no field decoded). Events applied in the
  // pass stay views, handed on as refs to them: on this host a walk that
  // decoded refs ran 7 % slower on one thread than one decoding views, for 8 %
  // fewer instructions (BENCHMARKS.md section 35).
  bool refs_ = false;
};

bool scheduler::try_take(worker_state& me) {
  if (me.owned_n == kMaxOwned || hold_.load(std::memory_order_acquire)) return false;
  // A cancel stops the taking on every worker at once. The calling thread
  // notices it only between its own steps (it may be deep in an item, or not
  // running at all on a busy machine), and meanwhile the others would take
  // and finish every piece: a cancelled replay that still read the whole
  // range. With chunks the calling thread is the reader and stops framing
  // at its next step; the chunks it framed are finished whoever takes them.
  if (pieces_mode_ && cfg_.cancel && cfg_.cancel->cancelled()) return false;
  uint64_t n = taken_.load(std::memory_order_relaxed);
  do {
    // Item n reuses slot n % K: the item K - 1 before it must be handed on
    // by every group, and the one before that too (its owner's join check
    // reads it).
    if (n >= available_.load(std::memory_order_acquire) || n + 1 >= min_next() + kSlots) return false;
  } while (!taken_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel));
  owned_item& o = me.owned[me.owned_n++];
  o.n = n;
  o.joined = false;
  o.pending.clear();
  for (uint32_t g = 0; g < G_; ++g) o.pending.push_back(g);
  slot& sl = ring_[n % kSlots];
  const uint64_t applied_before = me.applied_local;
  if (pieces_mode_) {
    const io_detail::piece& pc = pieces_[n];
    sl.next = pc.next;
    sl.starts_with_event = sl.sequence_known = false;
    o.cut = pc.next;
    io_detail::piece_framer& fr = me.framer;
    o.position = pc.from;
    o.end = pc.to;
    o.data = nullptr;
    // The groups first, whether or not the piece can be read: the item is
    // handed on either way (cut at its start when it cannot), and must not
    // carry the lists, the state or the data of the owned slot's last item
    // (a merged replay merged through a null state when it did: found by the
    // fuzzers reading damaged logs through replays).
    const bool any_ready = begin_groups(o);
    if (status st = fr.start(*log_, pc, advise_pieces_); !st.ok()) {
      o.cut = pc.from;
      cut_at(n);
      fail(std::move(st), pc.from);
    } else {
      // One pass: the walk validates each record (checksum included) and
      // hands the decoded event straight to route(). The sequence join with
      // the item before is checked at the first event, before anything of
      // this item is applied.
      o.data = fr.data_at(pc.from);
      uint64_t seen = 0;
      bool joined_ok = true;
      auto on_event = [&](uint64_t pos) __attribute__((always_inline)) {
        if (seen++ == 0) {
          sl.starts_with_event = pos == pc.from;
          sl.first_sequence = me.v.sequence.value;
          if (any_ready && !check_join(o)) return joined_ok = false;
        }
        route(me, o, pos);
        return true;
      };
      while (joined_ok) {
        // With several workers and no filter an event is only routed here
        // (its group applies it later, decoded again): the walk validates
        // it whole but fills only what routing reads.
        auto got = light_pass() ? fr.template next<false>(kWindowBytes, me.v, on_event)
                                : fr.next(kWindowBytes, me.v, on_event);
        if (!got) {
          // The events before the bad record are applied; nothing after it.
          o.cut = fr.bad();
          cut_at(n);
          fail(got.error(), fr.bad());
          break;
        }
        if (!got.value()) break;
      }
      sl.sequence_known = fr.sequence_known();
      sl.next_sequence = fr.next_sequence();
      events_seen_.fetch_add(seen, std::memory_order_relaxed);
    }
  } else {
    o.cut = sl.next;
    o.data = sl.c.data;
    o.position = sl.c.position;
    o.end = sl.c.end;
    begin_groups(o);  // chunks are read one after the other: no join to check
    pass(me, o, sl.c.data, sl.c.position, sl.c.end, sl.c.events);
  }
  o.applied = me.applied_local - applied_before;
  me.skipped.store(me.skipped_local, std::memory_order_relaxed);
  me.applied.store(me.applied_local, std::memory_order_relaxed);
  passed_.fetch_add(1, std::memory_order_acq_rel);
  hand_on(me);  // with one thread: this item, at once
  return true;
}

void scheduler::pass(worker_state& me, owned_item& o, const std::byte* data, uint64_t position,
                     uint64_t end, std::span<const uint32_t> events) {
  for (uint32_t off : events) {
    const uint64_t pos = position + off;
    const std::byte* p = data + off;
    // The checksum and every field, here, once: the framing only found it.
    const record::decoded d = light_pass() ? record::decode_inline<false, false>(p, end - pos, pos, verify_, me.v)
                                           : record::decode_inline(p, end - pos, pos, verify_, me.v);
    if (d.outcome != record::decode_outcome::event) [[unlikely]] {
      const uint64_t mask = (uint64_t{1} << l2_) - 1;
      if (pos < o.cut) o.cut = pos;
      cut_at(o.n);
      fail(status(errc::corruption, io_detail::segment_path(*log_, pos >> l2_) + " offset " +
                                        std::to_string(pos & mask) + ": " +
                                        (d.why ? d.why : "not an event record")),
           pos);
      break;
    }
    route(me, o, pos);
  }
}

bool scheduler::begin_groups(owned_item& o) {
  if (merge_) {
    // The slot's state is free: item n - K was merged before n was taken.
    o.inst = inst_[o.n % kSlots].get();
    o.gs = &item_gs_[o.n % kSlots];
    o.gs->failed = false;
    if (status st = guarded([&] { return o.inst->reset(); }); !st.ok()) {
      cut_at(o.n);
      fail_group(*o.gs, std::move(st), o.position);
    }
    return false;  // the join is checked when the item is merged
  }
  // Groups the item before has handed on already take the events as they
  // come; the others get a list. Decided once per item: a group must not
  // take some events now while earlier ones wait in its list.
  bool any_ready = false;
  for (uint32_t g = 0; g < G_; ++g) {
    o.later[g].clear();
    // Only with one thread: light_pass() relies on no event being applied
    // in the pass when there are several.
    o.ready[g] = fused_ && groups_[g].next.load(std::memory_order_acquire) == o.n;
    any_ready |= o.ready[g] != 0;
  }
  return any_ready;
}

bool scheduler::check_join(owned_item& o) {
  if (o.joined || o.n == 0) return o.joined = true;
  const slot& prev = ring_[(o.n - 1) % kSlots];
  const slot& cur = ring_[o.n % kSlots];
  o.joined = true;
  // Only pieces that follow each other (in a segment, or a segment's last
  // and the next one's first) must join densely: a segment the filter
  // skipped resets the check, as in the chunk reader, and so does a piece
  // that starts with a repair's hole.
  if (!pieces_mode_ || prev.next != pieces_[o.n].from || !prev.sequence_known ||
      !cur.starts_with_event || prev.next_sequence == cur.first_sequence)
    return true;
  const uint64_t at = pieces_[o.n].from;
  const uint64_t mask = (uint64_t{1} << l2_) - 1;
  cut_at(o.n - 1);
  o.cut = at;
  fail(status(errc::corruption, io_detail::segment_path(*log_, at >> l2_) + " offset " +
                                    std::to_string(at & mask) + ": sequence " +
                                    std::to_string(cur.first_sequence) + ", expected " +
                                    std::to_string(prev.next_sequence)),
       at);
  return false;
}

bool scheduler::apply_slow(worker_state& me, group_state& gs, replay_partition* p, uint64_t pos) {
  if (life_ && life_->hides(me.v, life_now_)) return true;  // hidden: not applied
  status st;
  // A payload that does not authenticate names its position; an upcaster's
  // error names the event.
  if (me.v.encrypted) st = log_->open_payload(me.v, me.dec_buf);
  if (st.ok() && up_ && !me.v.forgotten) st = up_->apply(me.v, me.up_buf);
  if (st.ok()) (void)call_projection(p, me.v, st);  // false leaves st saying why
  if (!st.ok()) return fail_group(gs, std::move(st), pos);
  ++me.applied_local;
  return true;
}

bool scheduler::apply_ref_slow(worker_state& me, group_state& gs, replay_partition* p, uint64_t pos) {
  // Validated when the ref was made: decoded again for the payload's key.
  const std::byte* rec = event_ref_access::record(me.r);
  const record::decoded d = record::decode_inline(rec, me.r.record_bytes(), pos, false, me.v);
  if (d.outcome != record::decode_outcome::event) [[unlikely]]
    return fail_group(gs, status(errc::corruption, "replay: record at position " + std::to_string(pos) +
                                                       " changed after validation"),
                      pos);
  return apply_slow(me, gs, p, pos);
}

void scheduler::merge_item(owned_item& o, group_state& gs) {
  if (gs.failed) return;  // a merge failed: the merged state is not trusted
  // An item that applied nothing (filtered out, or its reset failed: then
  // its state is not the identity) has nothing to merge.
  if (o.applied != 0) {
    if (status st = guarded([&] { return parts_[0]->merge_from(*o.inst); }); !st.ok()) {
      // What the merged state holds is unknown: the items before this one
      // were merged, so the replay reached this item's start at best.
      fail(std::move(st), o.position);
      gs.failed = true;
      return;
    }
  }
  merged_events_.fetch_add(o.applied, std::memory_order_relaxed);
  if (o.gs->failed) {
    // The item stopped at its projection's error (limit n + 1 was set then).
    gs.through.store(o.gs->through.load(std::memory_order_relaxed), std::memory_order_release);
    gs.failed = true;
  } else {
    gs.through.store(o.cut, std::memory_order_release);
  }
}

bool scheduler::fail_group(group_state& gs, status st, uint64_t pos) {
  gs.through.store(pos, std::memory_order_release);
  fail(std::move(st), pos);
  gs.failed = true;
  return false;
}

bool scheduler::hand_on(worker_state& me) {
  bool progress = false;
  size_t kept = 0;
  for (size_t i = 0; i < me.owned_n; ++i) {
    owned_item& o = me.owned[i];
    // Past a cut nothing is applied: the item is let go.
    if (o.n < limit_.load(std::memory_order_acquire)) {
      size_t k = 0;
      for (uint32_t g : o.pending) {
        group_state& gs = groups_[g];
        if (gs.next.load(std::memory_order_acquire) != o.n) {
          o.pending[k++] = g;
          continue;
        }
        if (!o.joined && !check_join(o)) break;  // the join failed: let the item go
        if (merge_) {
          merge_item(o, gs);
          gs.next.store(o.n + 1, std::memory_order_release);
          wake();
          progress = true;
          continue;
        }
        // Its events of this item that waited: in log order, verified when
        // the item was passed, decoded again here (their fields only).
        // A projection over refs gets a ref to the record: its views'
        // bounds checked again, nothing decoded.
        const auto& list = o.later[g];
        const bool as_ref = refs_;
        for (size_t j = 0; j < list.size() && !gs.failed; ++j) {
          if (j + 4 < list.size()) __builtin_prefetch(o.data + list[j + 4].offset);
          const deferred& e = list[j];
          const uint64_t pos = o.position + e.offset;
          const record::decoded d = as_ref ? record::decode_validated(o.data + e.offset, o.end - pos, pos, me.r)
                                           : record::decode_validated(o.data + e.offset, o.end - pos, pos, me.v);
          if (d.outcome != record::decode_outcome::event) [[unlikely]] {
            gs.through.store(pos, std::memory_order_release);
            fail(status(errc::corruption, "replay: record at position " + std::to_string(pos) +
                                              " changed after validation"),
                 pos);
            gs.failed = true;
            break;
          }
          if (as_ref) apply_ref_now(me, gs, parts_[e.partition], pos);
          else apply_now(me, gs, parts_[e.partition], pos);
        }
        if (!gs.failed) gs.through.store(o.cut, std::memory_order_release);
        gs.next.store(o.n + 1, std::memory_order_release);
        wake();  // the owner of item n + 1 may be waiting for just this group
        progress = true;
      }
      o.pending.resize(k);
      if (!o.pending.empty() && o.n < limit_.load(std::memory_order_acquire)) {
        if (kept != i) std::swap(me.owned[kept], o);
        ++kept;
        continue;
      }
    }
    progress = true;
  }
  me.owned_n = kept;
  me.applied.store(me.applied_local, std::memory_order_relaxed);
  if (progress) wake();
  return progress;
}

void scheduler::work(uint32_t w) {
  worker_state& me = workers_[w];
  for (;;) {
    const uint32_t seen = epoch_.load(std::memory_order_seq_cst);
    if (step(me)) continue;
    if (closed_.load(std::memory_order_acquire) && me.owned_n == 0) break;
    idle(seen);
  }
}

void scheduler::drain(uint64_t n) {
  worker_state& me = workers_[0];
  for (;;) {
    const uint32_t seen = epoch_.load(std::memory_order_seq_cst);
    const uint64_t lim = limit_.load(std::memory_order_acquire);
    const uint64_t want = std::min(n, lim);
    if (taken_.load(std::memory_order_acquire) >= want &&
        passed_.load(std::memory_order_acquire) >= taken_.load(std::memory_order_acquire) &&
        min_next() >= want)
      return;
    if (!step(me)) idle(seen);
  }
}

replay_summary scheduler::run(const event_log& log, position from, position to,
                              replay_summary s) {
  const auto& shared = log_access::shared(log);
  const uint64_t log_id = log_access::state(log).meta.log_id;
  l2_ = log_access::state(log).meta.log2_capacity;
  verify_ = shared->verify_checksums;
  log_ = shared.get();
  // Events reach the projections upcast; routing and filters see them as
  // stored (a stream's partition never depends on its schema).
  up_ = shared->upcasters_now();
  // What stream lifecycle hides, as of the replay's start.
  if (status c = shared->check_lifecycle(); !c) {
    s.error = c;
    s.reached = from;
    return s;
  }
  life_ = shared->lifecycle();
  if (life_ && life_->empty()) life_.reset();
  if (life_) life_now_ = shared->wall_now_ns();
  plain_ = !life_ && !up_;
  refs_ = plain_ && parts_.front()->takes_refs;
  if (merge_) {
    // One state per ring slot: an item is taken only once the item K before
    // it is merged, so its slot's state is free again.
    item_gs_ = std::make_unique<group_state[]>(kSlots);
    for (uint32_t i = 0; i < kSlots; ++i) {
      std::unique_ptr<replay_partition> f;
      status st = guarded([&] {
        f = parts_.front()->fresh();
        return f ? status() : status(errc::invalid_argument, "replay: a merged replay needs a projection with merge()");
      });
      if (!st.ok()) {
        s.error = std::move(st);
        s.reached = from;
        return s;
      }
      inst_.push_back(std::move(f));
    }
  }
  const uint32_t P = static_cast<uint32_t>(parts_.size());
  const uint32_t W = static_cast<uint32_t>(workers_.size());
  const auto t0 = clock_type::now();

  const event_filter& f = cfg_.filter;
  std::function<bool(uint64_t)> skip;
  if (!f.empty()) {
    filter_ = &f;
    skip = [&shared, &f](uint64_t index) {
      return match_segment(*shared, index, f) == segment_match::none;
    };
  }
  std::unique_ptr<chunk_reader> reader;
  uint64_t pieces_skipped = 0;
  // Which backend: `automatic` takes the mapping for a range that is in the
  // page cache (pieces, nothing serial, no copy) and io_uring for one that
  // is not (reads in flight while records are verified).
  bool resident = false;
  auto io = [&]() -> result<io_backend> {
    auto plan = io_detail::make_plan(*shared, from, to);
    if (!plan) return plan.error();
    return io_detail::choose_backend(*shared, plan.value(), cfg_.io, &resident);
  }();
  if (!io) {
    s.error = io.error();
    s.reached = from;
    return s;
  }
  if (io.value() == io_backend::mmap) {
    pieces_mode_ = true;
    // A resident range needs no read-ahead: MADV_WILLNEED would walk the
    // page cache for every 2 MiB, finding each page there (~7 % of a
    // trivial replay's time on one thread, BENCHMARKS 22).
    advise_pieces_ = !resident;
    // Pieces of half a chunk: big enough that taking one costs little
    // (~1 us), small enough that every worker has several per segment and
    // that an item's deferred events are still in cache when applied.
    // With more than one worker, the active segment (no index) is cut too:
    // else it is one piece, and a log inside one segment one worker's work
    // (BENCHMARKS 25: 200 ns/event on 2 workers 0.84x against 1.70x).
    auto pl = io_detail::plan_pieces(*shared, from, to, std::max<uint32_t>(cfg_.chunk_bytes / 2, 1),
                                     skip, pieces_skipped, W > 1);
    if (!pl) {
      s.error = pl.error();
      s.reached = from;
      return s;
    }
    pieces_ = std::move(pl.value());
    s.io = io_backend::mmap;
    available_.store(pieces_.size(), std::memory_order_release);
  } else {
    chunk_reader_options o;
    o.backend = io.value();
    o.chunk_bytes = cfg_.chunk_bytes;
    o.max_held = kSlots;
    o.frame_only = true;  // each event is verified by its item's owner
    o.skip_segment = skip;
    auto rd = chunk_reader::open(shared, from, to, o);
    if (!rd) {
      s.error = rd.error();
      s.reached = from;
      return s;
    }
    reader = std::move(rd.value());
    s.io = reader->backend();
  }

  for (uint32_t g = 0; g < G_; ++g) groups_[g].through.store(from.value);
  for (uint32_t w = 1; w < W; ++w) workers_[w].thread = std::thread([this, w] { work(w); });

  worker_state& me = workers_[0];
  uint64_t framed = 0;    // chunks framed and published (chunks)
  uint64_t released = 0;  // chunks handed back to the reader
  uint64_t bytes = 0, checkpoint_at = cfg_.checkpoint_every_events;
  auto last_progress = t0;
  std::vector<std::string> saved(P);

  // The items that end the run (or precede a checkpoint): with pieces, no
  // more is taken and those taken are finished; with chunks, every chunk
  // framed (the reader has stopped framing).
  auto stop_taking = [&]() -> uint64_t {
    if (!pieces_mode_) return framed;
    hold_.store(true, std::memory_order_seq_cst);
    return taken_.load(std::memory_order_seq_cst);
  };
  // Drains the items (every group has applied them) and saves every
  // partition with the position they all reflect; taking resumes after it
  // unless this is the end.
  auto checkpoint = [&](bool at_end) -> status {
    const uint64_t n = stop_taking();
    drain(n);
    status st;
    if (!stop_.load(std::memory_order_acquire) && n > 0) {  // else a projection failed
      const position at{ring_[(n - 1) % kSlots].next};
      for (uint32_t p = 0; p < P && st.ok(); ++p) {
        saved[p].clear();
        st = parts_[p]->save(saved[p], at);
      }
      if (st.ok()) st = cfg_.checkpoints->save(log_id, at, saved);
      if (st.ok()) ++s.checkpoints;
    }
    if (!at_end) {
      hold_.store(false, std::memory_order_release);
      wake();
    }
    return st;
  };

  status read_error;
  for (;;) {
    if (stop_.load(std::memory_order_acquire)) break;
    if (cfg_.cancel && cfg_.cancel->cancelled()) {
      read_error = status(errc::cancelled, "replay cancelled");
      break;
    }
    const uint32_t seen = epoch_.load(std::memory_order_seq_cst);
    if (pieces_mode_) {
      if (taken_.load(std::memory_order_acquire) >= pieces_.size()) break;
      if (!step(me)) idle(seen);
    } else {
      // Hand back the chunks every group has applied.
      for (const uint64_t done = min_next(); released < std::min(done, framed); ++released)
        reader->release(ring_[released % kSlots].c);
      if (framed - released >= kSlots) {  // the ring is full: work instead
        if (!step(me)) idle(seen);
        continue;
      }
      slot& sl = ring_[framed % kSlots];
      auto got = reader->next(sl.c);
      if (!got) {
        read_error = got.error();
        break;
      }
      if (!got.value()) break;
      sl.next = reader->where().value;
      bytes += sl.c.end - sl.c.position;
      events_seen_.fetch_add(sl.c.events.size(), std::memory_order_relaxed);
      available_.store(++framed, std::memory_order_release);
      wake();
      // Alone, the calling thread passes and applies each chunk at once;
      // otherwise it frames until the ring is full, then works beside the
      // others (taking one chunk after each framed one would leave it
      // nothing: the other workers take a chunk the moment it is framed).
      if (fused_) {
        step(me);
      } else if (me.owned_n != 0) {
        // Its own items' groups, between chunks: another owner may be
        // waiting for one of them.
        hand_on(me);
      }
    }

    if (cfg_.checkpoints && checkpoint_at &&
        events_seen_.load(std::memory_order_relaxed) >= checkpoint_at) {
      checkpoint_at = events_seen_.load(std::memory_order_relaxed) + cfg_.checkpoint_every_events;
      status st = checkpoint(false);
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

  // A clean end or a cancel: nothing more is taken, and the items taken are
  // finished, so every partition reflects exactly the events below the last
  // one's end (a consistent cut a checkpoint can record). After a projection
  // error the failed group skips the rest; the others finish theirs. After
  // a bad record nothing past it is applied.
  const bool clean = read_error.ok() && !stop_.load(std::memory_order_acquire);
  const bool cancelled = read_error.code() == errc::cancelled;
  const uint64_t end_n = stop_taking();
  if (cfg_.checkpoints && (clean || cancelled) && end_n > 0) {
    status st = checkpoint(true);
    if (!st.ok() && read_error.ok()) read_error = st;
  }
  drain(end_n);
  closed_.store(true, std::memory_order_release);
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  epoch_.notify_all();
  for (uint32_t w = 1; w < W; ++w) workers_[w].thread.join();
  if (reader)
    for (; released < framed; ++released) reader->release(ring_[released % kSlots].c);

  s.error = !error_.ok() ? error_ : read_error;
  const uint64_t taken = taken_.load();
  s.reached = reached(from);
  if (s.error.ok()) s.reached = to;
  for (const auto& w : workers_) {
    s.events_applied += w.applied.load(std::memory_order_relaxed);
    s.events_skipped += w.skipped.load(std::memory_order_relaxed);
  }
  // Merged: the events in the merged state (an item past a cut was folded
  // but never merged).
  if (merge_) s.events_applied = merged_events_.load(std::memory_order_relaxed);
  if (pieces_mode_) {
    for (uint64_t i = 0; i < taken && i < pieces_.size(); ++i) bytes += pieces_[i].to - pieces_[i].from;
    s.bytes_read = bytes;
    s.segments_skipped = pieces_skipped;
  } else {
    s.bytes_read = std::max(bytes, reader->bytes_read());
    s.segments_skipped = reader->segments_skipped();
  }
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
  // Default: as before workers shared partitions dynamically (it was four
  // times a cycle that gave the reading thread half a share), kept so that a
  // checkpoint saved with the default partition count still resumes.
  uint32_t P = cfg.partitions ? cfg.partitions : 4 * (W == 1 ? 1 : 2 * W - 1);
  if (cfg.merged) P = 1;  // one state, merged from the items' states
  if (P > (1u << 20)) {
    s.error = status(errc::invalid_argument, "replay: at most 1048576 partitions");
    return s;
  }
  if (!cfg.merged) W = std::min(W, P);
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
