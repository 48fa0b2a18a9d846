// Aggregate snapshots (engine/snapshot/, varve/snapshot.h): load_aggregate
// equals a full fold for random histories with random snapshot points; every
// byte of a snapshot file damaged, files cut short, wrong schema, stale
// snapshots (a log recovered shorter) all fall back; a 300 MiB snapshot;
// reopen rebuilds the index; readers concurrent with saves.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <tuple>
#include <string>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

constexpr uint64_t kSeg = 64 * 1024;

// The aggregate: a running hash of every event, their count and the version
// reached. Serialized with a filler whose length varies with the version, so
// snapshots are of many sizes.
struct agg {
  uint64_t hash = 0x9E3779B97F4A7C15ull;
  uint64_t count = 0;
  uint64_t version = 0;
  bool operator==(const agg&) const = default;

  void apply(const event_view& e) {
    hash = mix64(hash ^ fnv1a(e.payload) ^ (e.version << 1) ^ e.type);
    ++count;
    version = e.version;
  }
  std::string save() const {
    std::string out(24 + (version * 37) % 300, '\x5a');
    std::memcpy(out.data(), &hash, 8);
    std::memcpy(out.data() + 8, &count, 8);
    std::memcpy(out.data() + 16, &version, 8);
    return out;
  }
  static result<agg> load(std::span<const std::byte> b) {
    if (b.size() < 24) return status(errc::corruption, "agg: too short");
    agg a;
    std::memcpy(&a.hash, b.data(), 8);
    std::memcpy(&a.count, b.data() + 8, 8);
    std::memcpy(&a.version, b.data() + 16, 8);
    return a;
  }
};

auto fold = [](agg& a, const event_view& e) { a.apply(e); };

agg full_fold(const event_log& log, const stream_key& s) {
  agg a;
  auto r = log.read_stream(s.id(), 1);
  EXPECT_TRUE(r.ok()) << describe(r);
  if (!r) return a;
  event_view v;
  for (;;) {
    auto n = r->next(v);
    EXPECT_TRUE(n.ok()) << describe(n);
    if (!n.ok() || !*n) break;
    a.apply(v);
  }
  return a;
}

result<loaded<agg>> load(const event_log& log, const snapshot_store& store, const stream_key& s,
                         uint32_t schema = 1) {
  return load_aggregate<agg>(log, store, s.id(), schema, agg::load, fold);
}

struct notes : recovery_observer {
  std::mutex mu;
  std::vector<std::string> seen;
  void on_truncated(const std::string& file, uint64_t off, uint64_t, const std::string& why) override {
    std::lock_guard<std::mutex> g(mu);
    seen.push_back(file + " @" + std::to_string(off) + ": " + why);
  }
  size_t size() {
    std::lock_guard<std::mutex> g(mu);
    return seen.size();
  }
};

std::unique_ptr<event_log> make_log(const std::string& dir) {
  log_options o;
  o.segment_bytes = kSeg;
  auto l = event_log::open_or_create(dir, o);
  EXPECT_TRUE(l.ok()) << describe(l);
  return l ? std::move(l).value() : nullptr;
}

void append_n(event_log& log, const stream_key& s, int n, std::mt19937_64& rng, size_t min_payload = 0) {
  for (int i = 0; i < n; ++i) {
    owned_event e;
    e.type = uint32_t(rng() % 4);
    e.payload = random_bytes(rng, min_payload + rng() % 200);
    auto d = e.data();
    auto r = log.append(s.id(), expected_version::any(), d);
    ASSERT_TRUE(r.ok()) << describe(r);
  }
}

status save_state(snapshot_store& store, const event_log& log, const stream_key& s,
                  stream_version at, uint32_t schema = 1) {
  // The state at `at`: a fold of the first `at` events.
  agg a;
  auto r = log.read_stream(s.id(), 1, read_direction::forward, at);
  if (!r) return r.error();
  event_view v;
  while (true) {
    auto n = r->next(v);
    if (!n) return n.error();
    if (!*n) break;
    a.apply(v);
  }
  const std::string b = a.save();
  return store.save(s.id(), at, schema, std::as_bytes(std::span(b)));
}

std::vector<std::string> snap_files(const std::string& dir) {
  std::vector<std::string> out;
  if (!std::filesystem::exists(dir + "/snapshots")) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/snapshots"))
    if (e.path().extension() == ".snap") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// --- load_aggregate against a full fold -------------------------------------

// As of a version, a time or a log position: load_aggregate_at equals a fold
// of the stream's first `upto` events, with snapshots below, at and above
// `upto`; version_at / version_at_time agree with a model of positions and
// timestamps (rising timestamps here, so "as of t" is "stamped at or before t").
TEST(Snapshot, AsOfLoadsEqualAFoldOfThePrefix) {
  for (uint64_t seed = 0; seed < scaled(3); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    temp_dir d;
    std::mt19937_64 rng(100 + seed);
    std::vector<stream_key> streams;
    for (int i = 0; i < 4; ++i) streams.push_back(stream_key::named("cart-" + std::to_string(i)));
    auto log = make_log(d.path());
    ASSERT_TRUE(log);
    ASSERT_OK_AND_ASSIGN(auto store, snapshot_store::open(*log));
    struct at { uint64_t position, timestamp; };
    std::map<std::string, std::vector<at>> model;  // per stream, version - 1 -> where and when
    uint64_t t = 1'700'000'000'000'000'000ull;
    for (int step = 0; step < 600; ++step) {
      const stream_key& s = streams[rng() % streams.size()];
      owned_event e;
      e.type = uint32_t(rng() % 4);
      e.payload = random_bytes(rng, 1 + rng() % 300);
      t += 1 + rng() % 1000;  // rising, with gaps
      auto dd = e.data();
      dd.timestamp_ns = t;
      ASSERT_OK_AND_ASSIGN(append_result r, log->append(s.id(), expected_version::any(), dd));
      model[std::string(s.id().bytes())].push_back({r.first.value, t});
      if (rng() % 10 == 0) ASSERT_OK(save_state(*store, *log, s, 1 + rng() % log->version_of(s.id())));
    }
    for (const stream_key& s : streams) {
      const auto& m = model[std::string(s.id().bytes())];
      for (int k = 0; k < 20; ++k) {
        const stream_version upto = rng() % (m.size() + 2);  // 0 .. past the newest
        ASSERT_OK_AND_ASSIGN(auto got, load_aggregate_at<agg>(*log, *store, s.id(), upto, 1, agg::load, fold));
        const stream_version want_v = std::min<stream_version>(upto, m.size());
        agg want;
        ASSERT_OK_AND_ASSIGN(auto rd, log->read_stream(s.id(), 1, read_direction::forward, want_v));
        event_view v;
        for (;;) {
          ASSERT_OK_AND_ASSIGN(bool more, rd.next(v));
          if (!more) break;
          want.apply(v);
        }
        EXPECT_EQ(got.state, want) << "upto " << upto;
        EXPECT_EQ(got.version, want_v);
        if (got.used_snapshot) {
          EXPECT_LE(got.snapshot_version, want_v);
          EXPECT_EQ(got.events_applied, want_v - got.snapshot_version);
        }
        // As of a log position and as of a time.
        const uint64_t p = rng() % (log->committed_position().value + 100);
        const uint64_t before_p = std::count_if(m.begin(), m.end(), [&](const at& a) { return a.position < p; });
        ASSERT_OK_AND_ASSIGN(stream_version vp, log->version_at(s.id(), position{p}));
        EXPECT_EQ(vp, before_p) << "position " << p;
        const uint64_t when = m.empty() ? t : m[rng() % m.size()].timestamp + (rng() % 3) - 1;
        const uint64_t by_t = std::count_if(m.begin(), m.end(), [&](const at& a) { return a.timestamp <= when; });
        ASSERT_OK_AND_ASSIGN(stream_version vt, log->version_at_time(s.id(), when));
        EXPECT_EQ(vt, by_t) << "time " << when;
      }
      ASSERT_OK_AND_ASSIGN(stream_version all, log->version_at_time(s.id(), UINT64_MAX));
      EXPECT_EQ(all, m.size());
      ASSERT_OK_AND_ASSIGN(stream_version none, log->version_at_time(s.id(), 0));
      EXPECT_EQ(none, 0u);
    }
    ASSERT_OK_AND_ASSIGN(stream_version missing, log->version_at(stream_id("nope"), position{1000}));
    EXPECT_EQ(missing, 0u);
  }
}

TEST(Snapshot, RandomHistoriesEqualFullFold) {
  for (uint64_t seed = 0; seed < scaled(6); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    temp_dir d;
    std::mt19937_64 rng(seed);
    std::vector<stream_key> streams;
    for (int i = 0; i < 6; ++i)
      streams.push_back(i % 3 == 2 ? stream_key::integer(1000 + i) : stream_key::named("acct-" + std::to_string(i)));
    auto log = make_log(d.path());
    ASSERT_TRUE(log);
    snapshot_options so;
    so.file_bytes = 4096 << (seed % 3);  // small files: saves roll over often
    so.sync_each_save = seed % 2 == 0;
    auto store_r = snapshot_store::open(*log, so);
    ASSERT_OK(store_r);
    auto store = std::move(store_r).value();
    uint64_t saves = 0;
    for (int step = 0; step < 400; ++step) {
      const stream_key& s = streams[rng() % streams.size()];
      append_n(*log, s, 1 + int(rng() % 3), rng);
      const stream_version head = log->version_of(s.id());
      if (rng() % 5 == 0) {
        // Any version up to the head; sometimes in another schema.
        const stream_version at = 1 + rng() % head;
        ASSERT_OK(save_state(*store, *log, s, at, rng() % 6 == 0 ? 2 : 1));
        ++saves;
      }
      if (rng() % 50 == 0) {  // reopen both: the index is rebuilt from the files
        store.reset();
        if (rng() % 2) {
          ASSERT_OK(log->close());
          log.reset();
          log = make_log(d.path());
          ASSERT_TRUE(log);
        }
        store_r = snapshot_store::open(*log, so);
        ASSERT_OK(store_r);
        store = std::move(store_r).value();
      }
      if (rng() % 20 == 0) {
        for (const auto& k : streams) {
          auto got = load(*log, *store, k);
          ASSERT_OK(got);
          EXPECT_EQ(got->state, full_fold(*log, k));
          EXPECT_EQ(got->version, log->version_of(k.id()));
        }
      }
    }
    EXPECT_GT(saves, 40u);
    uint64_t used = 0;
    for (const auto& k : streams) {
      auto got = load(*log, *store, k);
      ASSERT_OK(got);
      EXPECT_EQ(got->state, full_fold(*log, k));
      EXPECT_EQ(got->version, log->version_of(k.id()));
      if (got->used_snapshot) {
        ++used;
        EXPECT_EQ(got->events_applied, got->version - got->snapshot_version);
        // The newest schema-1 snapshot was used (none is damaged here).
        stream_version newest = 0;
        for (const auto& i : store->list(k.id()))
          if (i.schema_version == 1) newest = std::max(newest, i.version);
        EXPECT_EQ(got->snapshot_version, newest);
      }
    }
    EXPECT_GT(used, 0u);
    EXPECT_EQ(store->damaged_count(), 0u);
  }
}

TEST(Snapshot, NoSnapshotIsAFullReplayAndMissingStreamIsEmpty) {
  temp_dir d;
  std::mt19937_64 rng(1);
  auto log = make_log(d.path());
  ASSERT_TRUE(log);
  auto store = snapshot_store::open(*log);
  ASSERT_OK(store);
  stream_key s = stream_key::named("x");
  append_n(*log, s, 30, rng);
  auto got = load(*log, **store, s);
  ASSERT_OK(got);
  EXPECT_FALSE(got->used_snapshot);
  EXPECT_EQ(got->events_applied, 30u);
  EXPECT_EQ(got->state, full_fold(*log, s));
  auto none = load(*log, **store, stream_key::named("nobody"));
  ASSERT_OK(none);
  EXPECT_EQ(none->version, 0u);
  EXPECT_EQ(none->events_applied, 0u);
  ASSERT_ERRC(store.value()->save(s.id(), 31, 1, {}), errc::invalid_argument);  // no such event
  ASSERT_ERRC(store.value()->save(s.id(), 0, 1, {}), errc::invalid_argument);
  ASSERT_OK(store.value()->save(s.id(), 30, 1, {}));  // an empty body is legal
  ASSERT_ERRC(store.value()->latest(s.id(), 29, 1), errc::not_found);
  auto v = store.value()->latest(s.id(), 30, 1);
  ASSERT_OK(v);
  EXPECT_EQ(v->bytes.size(), 0u);
}

TEST(Snapshot, WrongSchemaAndDecodeFailureFallBack) {
  temp_dir d;
  std::mt19937_64 rng(2);
  auto log = make_log(d.path());
  auto store = snapshot_store::open(*log).value();
  stream_key s = stream_key::named("order-1");
  append_n(*log, s, 20, rng);
  ASSERT_OK(save_state(*store, *log, s, 5, 1));
  ASSERT_OK(save_state(*store, *log, s, 15, 7));
  // Schema 1 wants v5; schema 7 wants v15; schema 3 has none.
  auto a = load(*log, *store, s, 1);
  ASSERT_OK(a);
  EXPECT_TRUE(a->used_snapshot);
  EXPECT_EQ(a->snapshot_version, 5u);
  EXPECT_EQ(a->state, full_fold(*log, s));
  auto b = load(*log, *store, s, 7);
  ASSERT_OK(b);
  EXPECT_EQ(b->snapshot_version, 15u);
  auto c = load(*log, *store, s, 3);
  ASSERT_OK(c);
  EXPECT_FALSE(c->used_snapshot);
  EXPECT_EQ(c->state, full_fold(*log, s));
  // A decoder that refuses v15's bytes: falls back to a full replay (no older schema-7 one).
  int calls = 0;
  auto refuse = [&](std::span<const std::byte>) -> std::optional<agg> {
    ++calls;
    return std::nullopt;
  };
  auto e = load_aggregate<agg>(*log, *store, s.id(), 7, refuse, fold);
  ASSERT_OK(e);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(e->used_snapshot);
  EXPECT_EQ(e->snapshots_skipped, 1u);
  EXPECT_EQ(e->state, full_fold(*log, s));
  // A decoder returning State directly, and a fold returning status.
  auto plain = [](std::span<const std::byte> b) { return agg::load(b).value(); };
  auto fold_st = [](agg& a, const event_view& ev) -> status {
    a.apply(ev);
    return {};
  };
  auto f = load_aggregate<agg>(*log, *store, s.id(), 1, plain, fold_st);
  ASSERT_OK(f);
  EXPECT_EQ(f->state, full_fold(*log, s));
  auto stop = [](agg&, const event_view& ev) -> status {
    return ev.version == 9 ? status(errc::cancelled, "stop") : status{};
  };
  ASSERT_ERRC((load_aggregate<agg>(*log, *store, s.id(), 1, agg::load, stop)), errc::cancelled);
}

// --- damage -------------------------------------------------------------------

// One file, stream "a" with snapshots at v2 (record A) and v4 (record B).
struct small_store {
  temp_dir d;
  std::unique_ptr<event_log> log;
  stream_key s = stream_key::named("a");
  std::string file;
  uint64_t rec_b = 0;  // offset of record B
  std::vector<std::pair<uint64_t, uint64_t>> body_padding;  // [from, to) not covered by a checksum

  void build() {
    std::mt19937_64 rng(3);
    log = make_log(d.path());
    append_n(*log, s, 6, rng);
    auto store = snapshot_store::open(*log).value();
    ASSERT_OK(save_state(*store, *log, s, 2));
    ASSERT_OK(save_state(*store, *log, s, 4));
    auto l = store->list();
    ASSERT_EQ(l.size(), 2u);
    rec_b = l[1].offset;
    for (const auto& i : l) {
      const uint64_t body = i.offset + 128;  // a 1-byte id: 128-byte header area
      body_padding.push_back({body + i.bytes, body + ((i.bytes + 63) & ~uint64_t{63})});
    }
    store.reset();
    auto f = snap_files(d.path());
    ASSERT_EQ(f.size(), 1u);
    file = f[0];
  }
  bool in_padding(uint64_t off) const {
    for (auto [a, b] : body_padding)
      if (off >= a && off < b) return true;
    return false;
  }
};

TEST(Snapshot, EveryByteOfASmallFileDamaged) {
  small_store t;
  ASSERT_NO_FATAL_FAILURE(t.build());
  const agg want = full_fold(*t.log, t.s);
  const auto original = read_file(t.file);
  ASSERT_GT(original.size(), 300u);
  for (uint64_t off = 0; off < original.size(); ++off) {
    SCOPED_TRACE("offset " + std::to_string(off));
    flip_byte(t.file, off, 0x10);
    notes n;
    snapshot_options so;
    so.observer = &n;
    auto store = snapshot_store::open_read_only(t.d.path(), so);
    ASSERT_OK(store);
    auto got = load(*t.log, **store, t.s);
    ASSERT_OK(got);
    EXPECT_EQ(got->state, want);
    EXPECT_EQ(got->version, 6u);
    // verify sees every damaged byte; a load reports what it had to look at.
    auto vr = verify_snapshots(t.d.path());
    ASSERT_OK(vr);
    const bool a_body = off >= 64 + 128 && off < t.rec_b;  // a 1-byte id: 128-byte header area
    if (t.in_padding(off)) {
      EXPECT_TRUE(vr->problems.empty());
      EXPECT_EQ(got->snapshot_version, 4u);
    } else {
      EXPECT_FALSE(vr->problems.empty()) << "verify missed damage at " << off;
      if (off < 64) {
        EXPECT_FALSE(got->used_snapshot);  // the file header: the whole file is ignored
        EXPECT_GE(n.size(), 1u);
      } else if (off < t.rec_b) {
        EXPECT_EQ(got->snapshot_version, 4u);  // A damaged: B still used
        if (!a_body) {
          EXPECT_GE(n.size(), 1u);  // A's header: seen at open; its body only if read
        }
      } else {
        EXPECT_EQ(got->snapshot_version, 2u) << "B damaged: A used";
        // B's body fails its checksum when the load reads it. B's header is
        // the file's last: a read-only store cannot tell it from a save in
        // flight, so only verify (above) and a writer's open report it.
        if (off >= t.rec_b + 128) {
          EXPECT_GE(n.size(), 1u) << "damage at " << off << " went unreported";
          EXPECT_GE(store.value()->damaged_count(), 1u);
        }
      }
    }
    flip_byte(t.file, off, 0x10);
  }
  // The writer's open cuts nothing from an intact file.
  notes n;
  snapshot_options so;
  so.observer = &n;
  ASSERT_OK(snapshot_store::open(*t.log, so));
  EXPECT_EQ(n.size(), 0u);
}

TEST(Snapshot, TruncatedFile) {
  small_store t;
  ASSERT_NO_FATAL_FAILURE(t.build());
  const agg want = full_fold(*t.log, t.s);
  const auto original = read_file(t.file);
  for (uint64_t len = 0; len < original.size(); len += 8) {
    SCOPED_TRACE("length " + std::to_string(len));
    std::filesystem::resize_file(t.file, len);
    auto store = snapshot_store::open_read_only(t.d.path());
    ASSERT_OK(store);
    auto got = load(*t.log, **store, t.s);
    ASSERT_OK(got);
    EXPECT_EQ(got->state, want);
    EXPECT_EQ(got->used_snapshot, len >= t.rec_b);
    write_at(t.file, 0, original.data(), original.size());
  }
  // A writer opening a file cut inside record B cuts the rest, reports it,
  // and appends cleanly after record A.
  std::filesystem::resize_file(t.file, t.rec_b + 100);
  notes n;
  snapshot_options so;
  so.observer = &n;
  {
    auto store = snapshot_store::open(*t.log, so).value();
    EXPECT_EQ(n.size(), 1u);
    EXPECT_EQ(std::filesystem::file_size(t.file), t.rec_b);
    ASSERT_OK(save_state(*store, *t.log, t.s, 5));
  }
  auto store = snapshot_store::open_read_only(t.d.path(), so).value();
  EXPECT_EQ(store->list().size(), 2u);
  auto got = load(*t.log, *store, t.s);
  ASSERT_OK(got);
  EXPECT_EQ(got->snapshot_version, 5u);
  EXPECT_EQ(got->state, want);
  EXPECT_EQ(n.size(), 1u);
}

TEST(Snapshot, FileOfAnotherLogIsIgnored) {
  small_store t;
  ASSERT_NO_FATAL_FAILURE(t.build());
  temp_dir other;
  std::mt19937_64 rng(4);
  auto log2 = make_log(other.path());
  append_n(*log2, t.s, 6, rng);
  std::filesystem::create_directories(other.sub("snapshots"));
  std::filesystem::copy_file(t.file, other.sub("snapshots/00000000000000000000.snap"));
  notes n;
  snapshot_options so;
  so.observer = &n;
  auto store = snapshot_store::open(*log2, so);
  ASSERT_OK(store);
  EXPECT_EQ(store.value()->list().size(), 0u);
  EXPECT_EQ(n.size(), 1u);
  auto got = load(*log2, **store, t.s);
  ASSERT_OK(got);
  EXPECT_FALSE(got->used_snapshot);
  // The writer does not write into it: its next save starts a new file.
  ASSERT_OK(save_state(**store, *log2, t.s, 6));
  EXPECT_EQ(snap_files(other.path()).size(), 2u);
  auto vr = verify_snapshots(other.path());
  ASSERT_OK(vr);
  EXPECT_EQ(vr->problems.size(), 1u);
  EXPECT_EQ(vr->snapshots, 1u);
}

TEST(Snapshot, StaleSnapshotsOfALogRecoveredShorter) {
  temp_dir d;
  std::mt19937_64 rng(5);
  const std::string crash = d.sub("crash"), live = d.sub("live");
  stream_key s = stream_key::named("acct-9");
  {
    auto log = make_log(live);
    append_n(*log, s, 5, rng);
    copy_dir(live, crash);  // what a crash here leaves: the stream at v5
    append_n(*log, s, 5, rng);
    auto store = snapshot_store::open(*log).value();
    ASSERT_OK(save_state(*store, *log, s, 3));
    ASSERT_OK(save_state(*store, *log, s, 8));
    ASSERT_OK(save_state(*store, *log, s, 10));
  }
  std::filesystem::copy(live + "/snapshots", crash + "/snapshots");
  std::filesystem::remove(crash + "/snapshots/snapshots.lock");
  auto log = make_log(crash);
  ASSERT_EQ(log->version_of(s.id()), 5u);
  notes n;
  snapshot_options so;
  so.observer = &n;
  auto store = snapshot_store::open(*log, so).value();
  // Snapshots above the stream's version are not candidates.
  auto got = load(*log, *store, s);
  ASSERT_OK(got);
  EXPECT_EQ(got->snapshot_version, 3u);
  EXPECT_EQ(got->state, full_fold(*log, s));
  // The log grows again with other events: v8 and v10 name events the log no
  // longer has (other positions or timestamps), and are refused.
  append_n(*log, s, 5, rng, 300);
  got = load(*log, *store, s);
  ASSERT_OK(got);
  EXPECT_EQ(got->snapshot_version, 3u);
  EXPECT_EQ(got->snapshots_skipped, 2u);
  EXPECT_EQ(got->state, full_fold(*log, s));
  EXPECT_EQ(n.size(), 2u);
  // Refused for good: the next load does not try them again.
  got = load(*log, *store, s);
  ASSERT_OK(got);
  EXPECT_EQ(got->snapshots_skipped, 0u);
  EXPECT_EQ(got->snapshot_version, 3u);
}

// --- size, reopen, concurrency, policy, lock ----------------------------------

TEST(Snapshot, HugeSnapshotRoundTrip) {
  if (kSanitized) GTEST_SKIP() << "300 MiB under a sanitizer is too slow for the suite";
  temp_dir d;
  std::mt19937_64 rng(6);
  auto log = make_log(d.path());
  stream_key s = stream_key::integer(77);
  append_n(*log, s, 3, rng);
  const size_t n = (300u << 20) + 13;
  std::vector<uint64_t> words((n + 7) / 8);
  for (size_t i = 0; i < words.size(); ++i) words[i] = mix64(i);
  auto body = std::as_bytes(std::span(words)).first(n);
  {
    auto store = snapshot_store::open(*log).value();
    const std::string small = "small";
    ASSERT_OK(store->save(s.id(), 2, 1, std::as_bytes(std::span(small))));
    ASSERT_OK(store->save(s.id(), 3, 1, body));
    auto v = store->latest(s.id(), kLatestVersion, 1);
    ASSERT_OK(v);
    ASSERT_EQ(v->bytes.size(), n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v->bytes.data()) % 64, 0u);
    EXPECT_EQ(std::memcmp(v->bytes.data(), body.data(), n), 0);
  }
  auto store = snapshot_store::open_read_only(d.path()).value();
  auto v = store->latest(s.id(), kLatestVersion, 1);  // checksum verified here: 300 MiB
  ASSERT_OK(v);
  ASSERT_EQ(v->bytes.size(), n);
  EXPECT_EQ(std::memcmp(v->bytes.data(), body.data(), n), 0);
  EXPECT_EQ(snap_files(d.path()).size(), 2u);  // the big one got a file of its own
  auto vr = verify_snapshots(d.path());
  ASSERT_OK(vr);
  EXPECT_TRUE(vr->problems.empty());
  EXPECT_EQ(vr->snapshots, 2u);
}

TEST(Snapshot, ReopenRebuildsTheIndex) {
  temp_dir d;
  std::mt19937_64 rng(7);
  auto log = make_log(d.path());
  std::vector<stream_key> ks = {stream_key::named("a"), stream_key::named("b"), stream_key::integer(5)};
  for (auto& k : ks) append_n(*log, k, 40, rng);
  snapshot_options so;
  so.file_bytes = 4096;
  std::vector<snapshot_info> before;
  {
    auto store = snapshot_store::open(*log, so).value();
    for (int i = 0; i < 60; ++i) {
      const auto& k = ks[rng() % ks.size()];
      ASSERT_OK(save_state(*store, *log, k, 1 + rng() % 40, 1 + uint32_t(rng() % 2)));
    }
    before = store->list();
  }
  EXPECT_GT(snap_files(d.path()).size(), 3u);
  auto store = snapshot_store::open(*log, so).value();
  auto after = store->list();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].stream, before[i].stream);
    EXPECT_EQ(after[i].version, before[i].version);
    EXPECT_EQ(after[i].schema_version, before[i].schema_version);
    EXPECT_EQ(after[i].file, before[i].file);
    EXPECT_EQ(after[i].offset, before[i].offset);
    EXPECT_EQ(after[i].anchor, before[i].anchor);
  }
  for (auto& k : ks) {
    auto got = load(*log, *store, k);
    ASSERT_OK(got);
    EXPECT_EQ(got->state, full_fold(*log, k));
  }
  auto vr = verify_snapshots(d.path());
  ASSERT_OK(vr);
  EXPECT_TRUE(vr->problems.empty()) << vr->problems[0].to_string();
  EXPECT_EQ(vr->snapshots, before.size());
}

// --- retention: compact() -----------------------------------------------------

// One save as the model sees it.
struct saved_snap {
  stream_key stream;
  stream_version version;
  uint32_t schema;
  uint64_t seq;  // save order
};

// Random saves over several streams and schemas into small files, then
// compact(): every snapshot among each stream's newest K (one of identical
// copies) is still there and loads; whatever else is listed lives in the
// writer's file; fewer files; a reopened store and verify agree; readers
// load concurrently with the compaction.
TEST(Snapshot, CompactionKeepsTheNewestKOfEachStreamAgainstAModel) {
  for (uint64_t seed = 0; seed < scaled(4); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    temp_dir d;
    std::mt19937_64 rng(100 + seed);
    auto log = make_log(d.path());
    std::vector<stream_key> ks = {stream_key::named("a"), stream_key::named("order-long-name-0001"),
                                  stream_key::integer(5), stream_key::integer(77)};
    for (auto& k : ks) append_n(*log, k, 60, rng);
    snapshot_options so;
    so.file_bytes = 4096;
    so.sync_each_save = seed % 2 == 0;
    auto store = snapshot_store::open(*log, so).value();
    std::vector<saved_snap> saves;
    for (int i = 0; i < 150; ++i) {
      const auto& k = ks[rng() % ks.size()];
      const stream_version v = 1 + rng() % 60;
      const uint32_t schema = 1 + uint32_t(rng() % 2);
      ASSERT_OK(save_state(*store, *log, k, v, schema));
      saves.push_back({k, v, schema, uint64_t(i)});
    }
    const size_t files_before = snap_files(d.path()).size();
    uint64_t writers_file = 0;  // the file saves went to when compact() began (never compacted)
    for (auto& i : store->list()) writers_file = std::max(writers_file, i.file);
    const uint32_t K = 1 + uint32_t(seed % 3);
    // The model's keep set: per stream, newest by (version, save order),
    // identical (same version and schema: the same state) counted once.
    std::set<std::tuple<std::string, stream_version, uint32_t>> kept;
    for (auto& k : ks) {
      std::vector<saved_snap> mine;
      for (auto& sv : saves)
        if (sv.stream == k) mine.push_back(sv);
      std::stable_sort(mine.begin(), mine.end(),
                       [](const saved_snap& a, const saved_snap& b) { return a.version < b.version; });
      uint32_t n = 0;
      for (auto it = mine.rbegin(); it != mine.rend() && n < K; ++it)
        if (kept.insert({k.bytes, it->version, it->schema}).second) ++n;
    }
    // Readers load through the compaction.
    std::atomic<bool> done{false};
    std::thread reader([&] {
      while (!done.load(std::memory_order_acquire))
        for (auto& k : ks)
          for (uint32_t schema : {1u, 2u})
            if (auto v = store->latest(k.id(), kLatestVersion, schema)) {
              auto a = agg::load(v->bytes);
              ASSERT_OK(a);
              ASSERT_EQ(a->version, v->version);
            }
    });
    snapshot_compact_options co;
    co.keep_per_stream = K;
    co.min_dead_fraction = seed % 2 == 0 ? 0.0 : 0.5;
    auto rep = store->compact(co);
    done.store(true, std::memory_order_release);
    reader.join();
    ASSERT_OK(rep);
    EXPECT_GT(rep->files_removed, 0u);
    EXPECT_GT(rep->snapshots_dropped, 0u);
    EXPECT_LT(snap_files(d.path()).size(), files_before);
    auto check = [&](snapshot_store& st) {
      const auto listed = st.list();
      std::set<std::tuple<std::string, stream_version, uint32_t>> seen;
      for (auto& i : listed) {
        const auto key = std::make_tuple(i.stream, i.version, i.schema_version);
        if (!kept.count(key)) {
          EXPECT_GE(i.file, writers_file) << "a dropped snapshot left in a full file";
        }
        seen.insert(key);
      }
      for (auto& key : kept) EXPECT_TRUE(seen.count(key)) << "kept snapshot lost: version " << std::get<1>(key);
      // Each kept snapshot loads and equals a fold up to its version.
      for (auto& [stream, version, schema] : kept) {
        const stream_key k = stream.size() == 8 && (stream == stream_key::integer(5).bytes ||
                                                     stream == stream_key::integer(77).bytes)
                                 ? stream_key{stream, true}
                                 : stream_key::named(stream);
        auto v = st.latest(k.id(), version, schema);
        ASSERT_OK(v);
        EXPECT_EQ(v->version, version);
        auto got = load_aggregate_at<agg>(*log, st, k.id(), version, schema, agg::load, fold);
        ASSERT_OK(got);
        EXPECT_TRUE(got->used_snapshot);
        EXPECT_EQ(got->snapshot_version, version);
      }
    };
    check(*store);
    store.reset();
    auto reopened = snapshot_store::open(*log, so).value();
    check(*reopened);
    auto vr = verify_snapshots(d.path());
    ASSERT_OK(vr);
    EXPECT_TRUE(vr->problems.empty()) << vr->problems[0].to_string();
    // A second compaction with the same K finds little or nothing to do and loses nothing.
    auto again = reopened->compact(co);
    ASSERT_OK(again);
    check(*reopened);
  }
}

// A file holding a snapshot whose body fails its checksum is never removed
// (its bytes are evidence); the damage is reported; compact refuses nonsense.
TEST(Snapshot, CompactionLeavesAFileWithADamagedSnapshotAsItIs) {
  temp_dir d;
  std::mt19937_64 rng(21);
  auto log = make_log(d.path());
  stream_key s = stream_key::named("a");
  append_n(*log, s, 40, rng);
  notes n;
  snapshot_options so;
  so.file_bytes = 4096;
  so.observer = &n;
  {
    auto store = snapshot_store::open(*log, so).value();
    for (stream_version v = 1; v <= 40; ++v) ASSERT_OK(save_state(*store, *log, s, v));
    EXPECT_ERRC(store->compact({0, 0.5}), errc::invalid_argument);
    EXPECT_ERRC(store->compact({1, 1.5}), errc::invalid_argument);
  }
  const auto files = snap_files(d.path());
  ASSERT_GE(files.size(), 4u);
  // Damage the body of the last snapshot of the newest full file (the one
  // that stays among a stream's kept ones when K is large enough).
  auto store = snapshot_store::open(*log, so).value();
  auto listed = store->list(s.id());
  const uint64_t victim_file = listed[listed.size() / 2].file;
  snapshot_info last_of_file;
  for (auto& i : listed)
    if (i.file == victim_file) last_of_file = i;
  store.reset();
  flip_byte(files[victim_file], last_of_file.offset + 128 + 1, 0x40);
  store = snapshot_store::open(*log, so).value();
  snapshot_compact_options co;
  co.keep_per_stream = 40;  // everything is kept: only the damage matters
  co.min_dead_fraction = 0.0;
  ASSERT_OK(store->compact(co));
  co.keep_per_stream = 1;  // everything but the newest goes, except the damaged file
  auto rep = store->compact(co);
  ASSERT_OK(rep);
  EXPECT_GT(rep->files_removed, 0u);
  EXPECT_TRUE(std::filesystem::exists(files[victim_file]));
  bool reported = false;
  for (auto& m : n.seen) reported = reported || m.find("checksum mismatch") != std::string::npos;
  EXPECT_TRUE(reported);
  auto got = load(*log, *store, s);
  ASSERT_OK(got);
  EXPECT_EQ(got->state, full_fold(*log, s));
}

// With keep_per_stream set, retention runs as files fill: the store stays
// bounded however many snapshots are taken.
TEST(Snapshot, RetentionKeepsTheStoreBounded) {
  temp_dir d;
  std::mt19937_64 rng(22);
  auto log = make_log(d.path());
  stream_key s = stream_key::named("hot"), t = stream_key::integer(9);
  append_n(*log, s, 200, rng);
  append_n(*log, t, 10, rng);
  snapshot_options so;
  so.file_bytes = 4096;
  so.keep_per_stream = 2;
  auto store = snapshot_store::open(*log, so).value();
  ASSERT_OK(save_state(*store, *log, t, 10));  // a cold stream's only snapshot survives every compaction
  size_t most = 0;
  for (stream_version v = 1; v <= 200; ++v) {
    ASSERT_OK(save_state(*store, *log, s, v));
    most = std::max(most, snap_files(d.path()).size());
  }
  EXPECT_LE(most, 4u);
  EXPECT_LE(store->list(s.id()).size(), 2u + 4096 / 128);
  auto got = load(*log, *store, s);
  ASSERT_OK(got);
  EXPECT_EQ(got->snapshot_version, 200u);
  auto cold = store->latest(t.id(), kLatestVersion, 1);
  ASSERT_OK(cold);
  EXPECT_EQ(cold->version, 10u);
}

TEST(Snapshot, ConcurrentReadersWhileSaving) {
  temp_dir d;
  std::mt19937_64 rng(8);
  auto log = make_log(d.path());
  stream_key s = stream_key::named("hot");
  append_n(*log, s, 160, rng);
  snapshot_options so;
  so.file_bytes = 16384;
  so.sync_each_save = false;
  auto store = snapshot_store::open(*log, so).value();
  auto ro = snapshot_store::open_read_only(d.path(), so).value();
  std::atomic<bool> done{false};
  std::atomic<uint64_t> reads{0};
  auto reader = [&] {
    uint64_t last = 0;
    while (!done.load(std::memory_order_acquire)) {
      auto v = store->latest(s.id(), kLatestVersion, 1);
      if (v) {
        auto a = agg::load(v->bytes);
        ASSERT_OK(a);
        EXPECT_EQ(a->version, v->version);
        EXPECT_GE(v->version, last);
        last = v->version;
        reads.fetch_add(1, std::memory_order_relaxed);
      }
      (void)store->list(s.id());
    }
  };
  std::thread r1(reader), r2(reader);
  // The read-only store follows through refresh() on its own thread.
  std::thread r3([&] {
    while (!done.load(std::memory_order_acquire)) {
      ASSERT_OK(ro->refresh());
      if (auto v = ro->latest(s.id(), kLatestVersion, 1)) {
        auto a = agg::load(v->bytes);
        ASSERT_OK(a);
        EXPECT_EQ(a->version, v->version);
      }
    }
  });
  // One snapshot first, and the saves go on only once a reader has loaded
  // it: on a loaded 2-core host the saves (no sync) could all finish before
  // either reader ran (CI saw reads == 0 once), and then nothing was read
  // while saving.
  ASSERT_OK(save_state(*store, *log, s, 1));
  for (int i = 0; i < 10000 && reads.load(std::memory_order_relaxed) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const uint64_t before_saves = reads.load();
  for (stream_version v = 2; v <= 160; v += 1 + rng() % 2) ASSERT_OK(save_state(*store, *log, s, v));
  ASSERT_OK(store->flush());
  done.store(true, std::memory_order_release);
  r1.join();
  r2.join();
  r3.join();
  EXPECT_GT(before_saves, 0u);
  EXPECT_GT(reads.load(), 0u);
  ASSERT_OK(ro->refresh());
  EXPECT_EQ(ro->list().size(), store->list().size());
  EXPECT_EQ(ro->damaged_count(), 0u);
}

TEST(Snapshot, PolicyEveryNEvents) {
  temp_dir d;
  std::mt19937_64 rng(9);
  auto log = make_log(d.path());
  auto store = snapshot_store::open(*log).value();
  stream_key s = stream_key::named("p");
  snapshot_policy every{10};
  EXPECT_FALSE(every.due(0, 9));
  EXPECT_TRUE(every.due(9, 10));
  EXPECT_TRUE(every.due(8, 12));
  EXPECT_FALSE(every.due(10, 19));
  EXPECT_FALSE(snapshot_policy{0}.due(0, 100));
  agg state;
  int saved = 0;
  for (int i = 0; i < 20; ++i) {
    // Load, decide, append a batch of 1-4, fold it, maybe snapshot.
    auto cur = load(*log, *store, s);
    ASSERT_OK(cur);
    EXPECT_EQ(cur->state, state);
    const stream_version before = cur->version;
    append_n(*log, s, 1 + int(rng() % 4), rng);
    state = full_fold(*log, s);
    auto r = every.maybe_snapshot(*store, s.id(), before, state.version, 1, [&] { return state.save(); });
    ASSERT_OK(r);
    saved += *r;
    EXPECT_EQ(*r, every.due(before, state.version));
  }
  EXPECT_EQ(size_t(saved), store->list().size());
  EXPECT_GE(saved, 3);
}

// By cost: a load whose fold of the events past the last snapshot took
// max_fold_time or longer saves the state it loaded, and the next load
// starts there; a cheap fold saves nothing; off (0) never saves.
TEST(Snapshot, PolicyByFoldTime) {
  temp_dir d;
  std::mt19937_64 rng(10);
  auto log = make_log(d.path());
  auto store = snapshot_store::open(*log).value();
  stream_key s = stream_key::named("slow");
  append_n(*log, s, 30, rng);
  const agg want = full_fold(*log, s);
  snapshot_policy by_time{0};
  by_time.max_fold_time = std::chrono::milliseconds(5);
  // A fold that costs 0.5 ms an event: 30 events are 15 ms, past the bound.
  auto slow_fold = [](agg& a, const event_view& e) {
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    a.apply(e);
  };
  auto slow = load_aggregate<agg>(*log, *store, s.id(), 1, agg::load, slow_fold);
  ASSERT_OK(slow);
  EXPECT_EQ(slow->state, want);
  EXPECT_EQ(slow->events_applied, 30u);
  EXPECT_GE(slow->fold_ns, 15'000'000u);
  EXPECT_FALSE(snapshot_policy{0}.due_after_load(*slow)) << "off by default";
  ASSERT_OK_AND_ASSIGN(bool saved, by_time.maybe_snapshot_after_load(*store, s.id(), *slow, 1,
                                                                    [](const agg& a) { return a.save(); }));
  EXPECT_TRUE(saved);
  // The next load starts at the snapshot: nothing to fold, nothing to save.
  auto next = load(*log, *store, s);
  ASSERT_OK(next);
  EXPECT_TRUE(next->used_snapshot);
  EXPECT_EQ(next->snapshot_version, 30u);
  EXPECT_EQ(next->events_applied, 0u);
  EXPECT_EQ(next->state, want);
  EXPECT_FALSE(by_time.due_after_load(*next));
  // Two more events, folded well under a generous bound (sanitizers and a
  // loaded machine included): no snapshot.
  append_n(*log, s, 2, rng);
  auto fast = load(*log, *store, s);
  ASSERT_OK(fast);
  EXPECT_EQ(fast->events_applied, 2u);
  snapshot_policy generous{0};
  generous.max_fold_time = std::chrono::seconds(2);
  EXPECT_LT(fast->fold_ns, 2'000'000'000u);
  ASSERT_OK_AND_ASSIGN(saved, generous.maybe_snapshot_after_load(*store, s.id(), *fast, 1,
                                                                 [](const agg& a) { return a.save(); }));
  EXPECT_FALSE(saved);
  EXPECT_EQ(store->list().size(), 1u);
}

TEST(Snapshot, OneWriterAtATime) {
  temp_dir d;
  auto log = make_log(d.path());
  auto a = snapshot_store::open(*log);
  ASSERT_OK(a);
  ASSERT_ERRC(snapshot_store::open(*log), errc::locked);
  auto ro = snapshot_store::open_read_only(d.path());
  ASSERT_OK(ro);
  ASSERT_ERRC(ro.value()->save(stream_id("x"), 1, 1, {}), errc::read_only);
  a.value().reset();
  ASSERT_OK(snapshot_store::open(*log));
}

}  // namespace
