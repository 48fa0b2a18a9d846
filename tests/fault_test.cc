// Fault injection through the file_system seam: a full disk at creation and at
// segment roll-over, failed syncs in each durability mode, and a sweep of every
// operation failing during create and open. A failure must come back as a
// clear error naming the file, must lose nothing acknowledged, and a failed
// sync must make the log refuse writes until it is reopened.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cctype>
#include <fstream>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include <gtest/gtest.h>

#include "base/log_files.h"
#include "base/segment_format.h"
#include "engine/io/fault_injection_file_system.h"
#include "test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;
using op = fault_injection_file_system::op;

constexpr uint64_t k64KiB = 64 << 10;
constexpr uint64_t kFixedClock = 1'700'000'000'000'000'000ull;

struct fault_fixture {
  std::shared_ptr<fault_injection_file_system> fs = std::make_shared<fault_injection_file_system>();
  log_options options(durability mode = durability::none, bool prepare = false) const {
    log_options o;
    o.segment_bytes = k64KiB;
    o.mode = mode;
    o.prepare_next_segment = prepare;
    o.clock = [] { return kFixedClock; };
    o.fs = fs;
    return o;
  }
};

log_options plain_options() {
  log_options o;
  o.segment_bytes = k64KiB;
  o.clock = [] { return kFixedClock; };
  return o;
}

owned_event event_of(std::mt19937_64& rng, size_t n) {
  owned_event e;
  e.type = uint32_t(rng() % 10);
  e.payload = random_bytes(rng, n);
  return e;
}

const char* op_name(op o) {
  switch (o) {
    case op::open: return "open";
    case op::allocate: return "allocate";
    case op::truncate: return "truncate";
    case op::pwrite: return "pwrite";
    case op::pread: return "pread";
    case op::datasync: return "datasync";
    case op::map: return "map";
    case op::sync_range: return "sync_range";
    case op::populate: return "populate";
    case op::rename: return "rename";
    case op::remove: return "remove";
    case op::sync_dir: return "sync_dir";
    case op::create_dir: return "create_dir";
    case op::sync_filesystem: return "sync_filesystem";
    default: return "other";
  }
}

// ---------------------------------------------------------------------------
// A full disk

TEST(NoSpace, WhileCreatingTheLogCreateFailsNamingTheFile) {
  temp_dir root;
  fault_fixture f;
  f.fs->fail_always(op::allocate, ENOSPC);
  const std::string dir = root.sub("log");
  auto r = event_log::create(dir, f.options());
  ASSERT_ERRC(r, errc::no_space);
  EXPECT_GT(f.fs->failures_injected(), 0u);
  EXPECT_NE(r.error().message().find(dir + "/"), std::string::npos)
      << "message names no file of the log: " << r.error().to_string();
}

TEST(NoSpace, AFailedCreateLeavesADirectoryThatCanBeCreatedLater) {
  temp_dir root;
  fault_fixture f;
  f.fs->fail_always(op::allocate, ENOSPC);
  const std::string dir = root.sub("log");
  ASSERT_ERRC(event_log::create(dir, f.options()), errc::no_space);
  f.fs->clear();
  // Once there is room again the same directory becomes a working log.
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open_or_create(dir, f.options()));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(1);
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                         expected_version::no_stream(), {event_of(rng, 10)}));
  EXPECT_TRUE(log_matches_model(*log, model));
}

class NoSpaceAtRollOver : public testing::TestWithParam<bool> {};

TEST_P(NoSpaceAtRollOver, AppendFailsLosesNothingAndRecoversOnceThereIsRoom) {
  const bool prepare = GetParam();
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, f.options(durability::none, prepare)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(2);
  // From now on no new segment can be allocated.
  f.fs->fail_always(op::allocate, ENOSPC);
  status failure;
  for (int i = 0; i < 1000 && failure.ok(); ++i) {
    owned_event e = event_of(rng, 400);
    stream_key s = stream_key::named("s" + std::to_string(i % 7));
    uint64_t seq_before = log->next_sequence().value;
    auto r = log->append(s.id(), expected_version::any(), e.data());
    if (r.ok()) {
      model.apply(s, {e}, *r);
      continue;
    }
    failure = r.error();
    EXPECT_EQ(log->next_sequence().value, seq_before) << "the failed append left an event behind";
  }
  ASSERT_FALSE(failure.ok()) << "500 KB went into a 64 KiB-segment log without allocating";
  EXPECT_TRUE(failure.code() == errc::no_space || failure.code() == errc::io_error)
      << failure.to_string();
  EXPECT_EQ(failure.code(), errc::no_space) << "ENOSPC should read as no_space: " << failure.to_string();
  EXPECT_NE(failure.message().find(dir + "/"), std::string::npos)
      << "message names no file: " << failure.to_string();
  // Every acknowledged event still reads back, in the same log object.
  EXPECT_TRUE(log_matches_model(*log, model));
  // Still full: still refused, still nothing lost.
  {
    owned_event e = event_of(rng, 400);
    EXPECT_FALSE(log->append("s0", expected_version::any(), e.data()).ok());
  }
  EXPECT_TRUE(log_matches_model(*log, model));

  // Room again: appends go on, across more roll-overs.
  f.fs->clear();
  for (int i = 0; i < 400; ++i)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("after"),
                                           expected_version::any(), {event_of(rng, 400)}))
        << "append " << i << " after the disk got room again";
  EXPECT_TRUE(log_matches_model(*log, model));
  ASSERT_OK(log->close());
  log.reset();
  ASSERT_OK_AND_ASSIGN(log, event_log::open(dir, plain_options()));
  EXPECT_TRUE(log_matches_model(*log, model));
}

INSTANTIATE_TEST_SUITE_P(PrepareNextSegment, NoSpaceAtRollOver, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& i) {
                           return i.param ? "Prepared" : "NotPrepared";
                         });

// ---------------------------------------------------------------------------
// Failed syncs: the log must refuse writes until reopened (no silent retry).

void fail_syncs(fault_injection_file_system& fs) {
  fs.fail_always(op::sync_range, EIO);
  fs.fail_always(op::datasync, EIO);
  fs.fail_always(op::sync_filesystem, EIO);
}

// After a failed sync, a reopen in the same boot must not trust the page
// cache (it may show bytes the disk never got): the plain open refuses,
// naming varve.ctl's poison mark, and changes nothing. The explicit repair
// (what `varve recover` runs) writes the pages again, syncs them and opens.
// Then the acknowledged events are there; an append (to stream "s") that failed
// may be there too, but only whole and only as the next event.
void expect_reopened_log_holds(const std::string& dir, const log_model& model,
                               const std::vector<owned_event>& maybe) {
  {
    auto refused = event_log::open(dir, plain_options());
    ASSERT_ERRC(refused, errc::io_error);
    EXPECT_NE(refused.error().message().find("a sync failed"), std::string::npos)
        << refused.error().to_string();
    EXPECT_NE(refused.error().message().find("varve.ctl"), std::string::npos);
  }
  log_options repair = plain_options();
  repair.recovery = recovery_mode::point_in_time;
  { ASSERT_OK_AND_ASSIGN(auto repaired, event_log::open(dir, repair)); }
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir, plain_options()));
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  const uint64_t n = model.next_sequence();
  ASSERT_GE(all.events.size(), n) << "acknowledged events were lost";
  ASSERT_TRUE(all.events.size() == n || all.events.size() == n + maybe.size())
      << "read " << all.events.size() << " events; acknowledged " << n << ", failed batch of "
      << maybe.size();
  log_model m = model;
  m.truncate(n);
  if (all.events.size() > n) {
    // The failed append survived in full: accept it into the expectation, at
    // the place the log holds it (nothing acknowledged its position), and
    // still compare every acknowledged event before it.
    const event_view& last = all.events.back();
    append_result where;
    where.first = all.events[n].position;
    where.end = position{last.position.value + last.record_bytes};
    m.apply(stream_key::named("s"), maybe, where);
  }
  EXPECT_TRUE(log_matches_model(*log, m));
  // And the reopened log writes again.
  std::mt19937_64 rng(9);
  EXPECT_OK(log->append("reopened", expected_version::any(), event_of(rng, 5).data()));
}

TEST(FailedSync, InSyncModeFailsTheAppendAndRefusesWritesUntilReopen) {
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, f.options(durability::sync)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 10; ++i)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                           expected_version::any(), {event_of(rng, 100)}));
  fail_syncs(*f.fs);
  owned_event failed = event_of(rng, 100);
  auto r = log->append("s", expected_version::any(), failed.data());
  ASSERT_ERRC(r, errc::io_error);
  EXPECT_NE(r.error().message().find(dir), std::string::npos) << r.error().to_string();
  // The fault is gone, but the log must not trust its page cache any more.
  f.fs->clear();
  for (int i = 0; i < 3; ++i)
    EXPECT_ERRC(log->append("s", expected_version::any(), event_of(rng, 10).data()), errc::read_only);
  EXPECT_FALSE(log->flush().ok());
  (void)log->close();
  log.reset();
  ASSERT_NO_FATAL_FAILURE(expect_reopened_log_holds(dir, model, {failed}));
}

TEST(FailedSync, InSyncModeFailsABatchAppendWhole) {
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, f.options(durability::sync)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(4);
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                         expected_version::any(), {event_of(rng, 100)}));
  fail_syncs(*f.fs);
  std::vector<owned_event> batch{event_of(rng, 50), event_of(rng, 60), event_of(rng, 70)};
  std::vector<event_data> data = as_data(batch);
  ASSERT_ERRC(log->append("s", expected_version::any(), data), errc::io_error);
  EXPECT_ERRC(log->append("s", expected_version::any(), data), errc::read_only);
  (void)log->close();
  log.reset();
  ASSERT_NO_FATAL_FAILURE(expect_reopened_log_holds(dir, model, batch));
}

TEST(FailedSync, InNoneModeFailsFlushAndRefusesLaterAppends) {
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, f.options(durability::none)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 10; ++i)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                           expected_version::any(), {event_of(rng, 100)}));
  fail_syncs(*f.fs);
  auto fs_status = log->flush();
  ASSERT_ERRC(fs_status, errc::io_error);
  EXPECT_NE(fs_status.message().find(dir), std::string::npos) << fs_status.to_string();
  f.fs->clear();
  EXPECT_ERRC(log->append("s", expected_version::any(), event_of(rng, 10).data()), errc::read_only);
  EXPECT_FALSE(log->wait_durable(log->committed_position()).ok());
  // Reads still work: what is acknowledged is still acknowledged.
  EXPECT_TRUE(log_matches_model(*log, model));
  (void)log->close();
  log.reset();
  ASSERT_NO_FATAL_FAILURE(expect_reopened_log_holds(dir, model, {}));
}

TEST(FailedSync, AFailedSyncWhileSealingASegmentRefusesLaterAppends) {
  // The sealer msyncs a full segment's records, then its footer, on its own
  // thread. If that fails, the kernel may have dropped those pages: the log
  // must stop acknowledging, not carry on until some later flush.
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, f.options(durability::none, true)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(6);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // segment 1 prepared
  fail_syncs(*f.fs);
  // Fill segment 0 and roll into segment 1: the seal of 0 fails in the
  // background. (Should the prepared segment not be ready yet, the roll-over
  // itself fails on the header's msync: refused too.)
  status refused;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::vector<owned_event> failed;
  while (refused.ok() && std::chrono::steady_clock::now() < deadline) {
    owned_event e = event_of(rng, log->committed_position().value < k64KiB ? 500 : 10);
    failed = {e};
    auto r = log->append("s", expected_version::any(), e.data());
    if (r.ok()) {
      model.apply(stream_key::named("s"), {e}, *r);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else {
      refused = r.error();
    }
  }
  ASSERT_FALSE(refused.ok()) << "appends still acknowledged after the sealer's sync failed";
  EXPECT_TRUE(refused.code() == errc::read_only || refused.code() == errc::io_error) << refused.to_string();
  EXPECT_NE(refused.message().find(dir), std::string::npos) << refused.to_string();
  f.fs->clear();
  EXPECT_FALSE(log->flush().ok());
  (void)log->close();
  log.reset();
  ASSERT_NO_FATAL_FAILURE(expect_reopened_log_holds(dir, model, failed));
}

// Derived files (segment index files, head-table checkpoints) that cannot be
// written cost speed, never an event: appends go on, the failure is reported,
// reads stay right, and the next open writes what is missing.
struct locked_notes : recovery_observer {
  std::mutex mu;
  std::vector<std::string> seen;
  void on_truncated(const std::string& file, uint64_t, uint64_t, const std::string& why) override {
    std::lock_guard<std::mutex> g(mu);
    seen.push_back(file + ": " + why);
  }
  bool any(const std::string& text) {
    std::lock_guard<std::mutex> g(mu);
    for (const auto& n : seen)
      if (n.find(text) != std::string::npos) return true;
    return false;
  }
};

TEST(NoSpace, WhileWritingIndexFilesAppendsGoOnAndTheNextOpenWritesThem) {
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  locked_notes notes;
  log_options o = f.options(durability::none, true);
  o.observer = &notes;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, o));
  // Index files and checkpoints are written with pwrite (only theirs fail
  // here: a segment's blocks are allocated before it is used).
  f.fs->fail_always(op::pwrite, ENOSPC, "/index/");
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(12);
  for (int i = 0; i < 600; ++i)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s" + std::to_string(i % 7)),
                                           expected_version::any(), {event_of(rng, 300)}));
  ASSERT_GE(log->committed_position().value, 3 * k64KiB) << "the test wants several sealed segments";
  ASSERT_OK(log->close());  // drains the sealer: every index write has been tried
  log.reset();
  EXPECT_TRUE(notes.any("segment index not written")) << "a failed index write was not reported";
  EXPECT_TRUE(notes.any("checkpoint not written")) << "a failed checkpoint write was not reported";
  f.fs->clear();
  {
    // Reads are right without the files (the back-chain), and a writer's
    // open writes the missing index files in the background.
    o.observer = nullptr;
    ASSERT_OK_AND_ASSIGN(auto again, event_log::open(dir, o));
    EXPECT_TRUE(log_matches_model(*again, model));
    for (int s = 0; s < 7; ++s) {
      auto r = again->read_stream(stream_key::named("s" + std::to_string(s)).id());
      ASSERT_OK(r);
      event_view v;
      uint64_t n = 0;
      while (true) {
        auto more = r->next(v);
        ASSERT_OK(more);
        if (!*more) break;
        ASSERT_EQ(v.version, ++n);
      }
      EXPECT_EQ(n, model.version_of(stream_key::named("s" + std::to_string(s))));
    }
    ASSERT_OK(again->close());
  }
  auto ix = verify_index(dir);
  ASSERT_OK(ix);
  for (const auto& p : ix->problems)
    EXPECT_EQ(p.to_string().find(".sidx"), std::string::npos) << "after reopen: " << p.to_string();
}

TEST(FailedSync, InGroupModeFailsWaitDurableAndRefusesLaterAppends) {
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, f.options(durability::group)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(6);
  for (int i = 0; i < 10; ++i)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                           expected_version::any(), {event_of(rng, 100)}));
  ASSERT_OK(log->wait_durable(log->committed_position()));
  fail_syncs(*f.fs);
  // Acknowledged (in memory) but never durable.
  owned_event e = event_of(rng, 100);
  ASSERT_OK_AND_ASSIGN(auto r, log->append("s", expected_version::any(), e.data()));
  model.apply(stream_key::named("s"), {e}, r);
  ASSERT_ERRC(log->wait_durable(r.end), errc::io_error);
  EXPECT_LT(log->durable_position(), r.end);
  f.fs->clear();
  EXPECT_ERRC(log->append("s", expected_version::any(), event_of(rng, 10).data()), errc::read_only);
  (void)log->close();
  log.reset();
  // Mode group acknowledges from memory: the process did not crash, so the
  // acknowledged event is in the page cache and must be there.
  ASSERT_NO_FATAL_FAILURE(expect_reopened_log_holds(dir, model, {}));
}

TEST(FailedSync, ReopeningAfterAFailedSyncRestoresWrites) {
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(7);
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, f.options(durability::sync)));
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                           expected_version::any(), {event_of(rng, 100)}));
    fail_syncs(*f.fs);
    ASSERT_FALSE(log->append("s", expected_version::any(), event_of(rng, 10).data()).ok());
    f.fs->clear();
  }
  ASSERT_ERRC(event_log::open(dir, f.options(durability::sync)), errc::io_error);
  log_options repair = f.options(durability::sync);
  repair.recovery = recovery_mode::point_in_time;
  { ASSERT_OK_AND_ASSIGN(auto repaired, event_log::open(dir, repair)); }
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir, f.options(durability::sync)));
  // Whatever happened to the failed append, the stream's version tells us where we are.
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  ASSERT_GE(all.events.size(), 1u);
  EXPECT_OK(log->append("s", expected_version::exact(log->version_of("s")), event_of(rng, 10).data()));
  EXPECT_EQ(log->next_sequence().value, all.events.size() + 1);
}

// The kernel reports a write-back error to one sync only. The sealer (syncing
// the segment it seals) and the group flusher (syncing the committed tail)
// sync the same files from two threads: whichever one meets the error, the
// other must not go on to publish a durable position afterwards. One
// injected failure of the Nth sync, wherever it lands, must freeze the
// durable position for good and poison the log (a reopen in this boot refuses).
TEST(FailedSync, AWriteBackErrorSeenByEitherSyncingThreadFreezesTheDurablePosition) {
  for (uint64_t nth : {3u, 9u, 17u, 26u, 40u}) {
    SCOPED_TRACE("the sync that fails: #" + std::to_string(nth + 1));
    temp_dir root;
    fault_fixture f;
    const std::string dir = root.sub("log");
    log_options o = f.options(durability::group, true);
    o.group_commit_interval = std::chrono::microseconds(200);
    std::mt19937_64 rng(nth);
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, o));
    // Data syncs only: a prepared segment's header msync that fails is a
    // failed creation (the writer makes that segment itself), not a lost
    // write, so it neither fails nor counts. Which thread meets the nth data
    // sync (the flusher or a caller of wait_durable) depends on timing.
    f.fs->fail(op::sync_range, EIO, nth, 1, {}, segment_format::kHeaderSize + 1);
    bool failed = false;
    for (int i = 0; i < 20000 && !failed; ++i) {
      const std::string stream = "s" + std::to_string(i % 7);
      auto r = log->append(std::string_view(stream), expected_version::any(), event_of(rng, 200).data());
      if (!r.ok()) {
        failed = true;
        break;
      }
      if (i % 16 == 0 && !log->wait_durable(r->end).ok()) failed = true;
    }
    ASSERT_TRUE(failed) << "the injected failure never surfaced";
    ASSERT_EQ(f.fs->failures_injected(), 1u);
    const uint64_t frozen = log->durable_position().value;
    // Later syncs would succeed (the fault fired once), as they do after a
    // real write-back error: nothing may use that to report more as durable.
    for (int i = 0; i < 20; ++i) {
      EXPECT_FALSE(log->append("late", expected_version::any(), event_of(rng, 10).data()).ok());
      EXPECT_FALSE(log->wait_durable(log->committed_position()).ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_EQ(log->durable_position().value, frozen) << "the durable position moved after a failed sync";
    (void)log->close();
    log.reset();
    ASSERT_ERRC(event_log::open(dir, plain_options()), errc::io_error);
  }
}

// A long log must not cost a descriptor per segment: sealed segments drop
// theirs once durable, readers map segments and close them. A child with a
// limit of 48 descriptors writes, rolls over 100 times, reads, reopens.
TEST(Resources, ALongLogRollsReadsAndReopensWithin48Descriptors) {
  temp_dir root;
  const std::string dir = root.sub("log");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit lim{48, 48};
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(3);
    auto fail = [](const std::string& what) {
      std::fprintf(stderr, "child: %s\n", what.c_str());
      // Which descriptors are open, for the report.
      std::error_code ec;
      for (const auto& e : fs::directory_iterator("/proc/self/fd", ec))
        std::fprintf(stderr, "  fd %s -> %s\n", e.path().filename().c_str(),
                     fs::read_symlink(e.path(), ec).c_str());
      ::_exit(1);
    };
    log_options o = plain_options();
    o.prepare_next_segment = true;
    std::mt19937_64 rng(5);
    uint64_t appended = 0;
    {
      auto log = event_log::create(dir, o);
      if (!log) fail(log.error().to_string());
      while ((*log)->committed_position().value < 101 * k64KiB) {
        auto r = (*log)->append("s", expected_version::any(), event_of(rng, 300).data());
        if (!r) fail("append " + std::to_string(appended) + ": " + r.error().to_string());
        ++appended;
      }
      read_outcome all = read_all(**log);
      if (!all.error.ok() || all.events.size() != appended) fail("read: " + describe(all.error));
      if (status st = (*log)->close(); !st) fail(st.to_string());
    }
    auto again = event_log::open(dir, o);
    if (!again) fail("reopen: " + again.error().to_string());
    read_outcome all = read_all(**again);
    if (!all.error.ok() || all.events.size() != appended) fail("read after reopen: " + describe(all.error));
    auto ro = event_log::open_read_only(dir, o);
    if (!ro) fail("read-only open: " + ro.error().to_string());
    read_outcome ro_all = read_all(**ro);
    if (!ro_all.error.ok() || ro_all.events.size() != appended) fail("read-only read: " + describe(ro_all.error));
    ::_exit(0);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st)) << "the child died by signal " << (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  ASSERT_EQ(WEXITSTATUS(st), 0) << "the child failed (see its stderr)";
}

// ---------------------------------------------------------------------------
// The engine's use of the seam itself

// Passes everything to the POSIX backend and checks that every sync_range
// stays inside a live mapping of the file it names: msync of a range that
// runs past the mapping fails with ENOMEM when the neighbouring addresses are
// unmapped, and silently syncs unrelated memory when they happen to be mapped.
class range_checking_file_system final : public file_system {
 public:
  std::string problems() const {
    std::lock_guard<std::mutex> g(mu_);
    return problems_;
  }
  uint64_t syncs() const { return syncs_.load(); }

  result<varve::file_handle> open(const std::string& path, open_mode mode) override { return base_->open(path, mode); }
  void close(varve::file_handle& f) override { base_->close(f); }
  status allocate(const varve::file_handle& f, uint64_t size) override { return base_->allocate(f, size); }
  status truncate(const varve::file_handle& f, uint64_t size) override { return base_->truncate(f, size); }
  result<uint64_t> file_size(const varve::file_handle& f) override { return base_->file_size(f); }
  status pwrite(const varve::file_handle& f, uint64_t off, const void* d, size_t n) override { return base_->pwrite(f, off, d, n); }
  status pread(const varve::file_handle& f, uint64_t off, void* d, size_t n) override { return base_->pread(f, off, d, n); }
  status datasync(const varve::file_handle& f) override { return base_->datasync(f); }
  result<void*> map(const varve::file_handle& f, uint64_t size, map_access access) override {
    auto r = base_->map(f, size, access);
    if (r.ok()) {
      std::lock_guard<std::mutex> g(mu_);
      maps_[reinterpret_cast<uintptr_t>(r.value())] = {size, f.path};
    }
    return r;
  }
  void unmap(void* addr, uint64_t size) override {
    {
      std::lock_guard<std::mutex> g(mu_);
      maps_.erase(reinterpret_cast<uintptr_t>(addr));
    }
    base_->unmap(addr, size);
  }
  status sync_range(const varve::file_handle& f, void* addr, uint64_t n) override {
    ++syncs_;
    {
      std::lock_guard<std::mutex> g(mu_);
      const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
      auto it = maps_.upper_bound(a);
      bool inside = false;
      if (it != maps_.begin()) {
        --it;
        inside = a >= it->first && a + n <= it->first + it->second.first && it->second.second == f.path;
      }
      if (!inside && problems_.size() < 2000)
        problems_ += "sync_range(" + f.path + ", +" + std::to_string(n) +
                     " bytes) is not inside a mapping of that file\n";
    }
    return base_->sync_range(f, addr, n);
  }
  status populate_write(void* addr, uint64_t n) override { return base_->populate_write(addr, n); }
  status rename(const std::string& a, const std::string& b) override { return base_->rename(a, b); }
  status remove(const std::string& p) override { return base_->remove(p); }
  status sync_dir(const std::string& d) override { return base_->sync_dir(d); }
  status sync_filesystem(const std::string& d) override {
    ++syncs_;
    return base_->sync_filesystem(d);
  }
  status create_dir(const std::string& d) override { return base_->create_dir(d); }
  bool exists(const std::string& p) override { return base_->exists(p); }
  result<std::vector<std::string>> list_dir(const std::string& d) override { return base_->list_dir(d); }

 private:
  std::shared_ptr<file_system> base_ = posix_file_system();
  mutable std::mutex mu_;
  std::map<uintptr_t, std::pair<uint64_t, std::string>> maps_;
  std::string problems_;
  std::atomic<uint64_t> syncs_{0};
};

TEST(Seam, EverySyncStaysInsideTheMappingOfItsSegment) {
  for (durability mode : {durability::none, durability::group, durability::sync}) {
    SCOPED_TRACE("durability mode " + std::to_string(int(mode)));
    temp_dir root;
    auto fsys = std::make_shared<range_checking_file_system>();
    log_options o = plain_options();
    o.fs = fsys;
    o.mode = mode;
    const std::string dir = root.sub("log");
    std::mt19937_64 rng(12);
    for (int session = 0; session < 2; ++session) {
      auto opened = session == 0 ? event_log::create(dir, o) : event_log::open(dir, o);
      ASSERT_OK(opened);
      auto log = std::move(opened).value();
      // Several roll-overs, with flushes inside later segments.
      status failed;
      for (int i = 0; i < 800 && failed.ok(); ++i) {
        failed = log->append("s", expected_version::any(), event_of(rng, 300).data()).to_status();
        if (failed.ok() && i % 150 == 149) failed = log->flush();
      }
      if (failed.ok()) failed = log->close();
      EXPECT_OK(failed);
      if (!failed.ok()) break;
    }
    EXPECT_GT(fsys->syncs(), 0u);
    EXPECT_EQ(fsys->problems(), "");
  }
}

// ---------------------------------------------------------------------------
// Prefaulting

TEST(Prefault, AFailedPrefaultIsIgnoredOrReportedNamingTheSegmentAndLosesNothing) {
  // populate_write is where a backend reports that a fresh segment's blocks
  // are not there; whether the engine ignores that or refuses the segment, it
  // must name the file and keep every acknowledged event.
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, f.options(durability::none, true)));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(8);
  f.fs->fail_always(op::populate, EIO);
  status failure;
  for (int i = 0; i < 600 && failure.ok(); ++i) {  // several roll-overs
    // The preparer faults a segment in only while the writer has not reached
    // it: give it the time to, now and then.
    if (i % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    owned_event e = event_of(rng, 500);
    auto r = log->append("s", expected_version::any(), e.data());
    if (r.ok())
      model.apply(stream_key::named("s"), {e}, *r);
    else
      failure = r.error();
  }
  // Else the engine never prefaulted, and this test tested nothing.
  EXPECT_GT(f.fs->failures_injected(), 0u) << "no populate_write was called";
  if (!failure.ok()) {
    EXPECT_NE(failure.message().find(dir + "/"), std::string::npos)
        << "message names no file: " << failure.to_string();
  }
  EXPECT_TRUE(log_matches_model(*log, model));
  f.fs->clear();
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                         expected_version::any(), {event_of(rng, 500)}));
  EXPECT_TRUE(log_matches_model(*log, model));
}

// What this process maps of segment `k` of the log in `dir`, from
// /proc/self/smaps: resident (page table entries) and dirty KiB.
struct mapped_kb {
  uint64_t rss = 0, dirty = 0;
};
mapped_kb mapped_of_segment(const std::string& dir, uint64_t k) {
  const std::string path = dir + "/" + log_files::segment_name(k);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in = false;
  mapped_kb m;
  while (std::getline(smaps, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find(' ') != std::string::npos &&
        line.find('-') < line.find(' '))
      in = line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
    else if (in && line.rfind("Rss:", 0) == 0)
      m.rss += std::stoull(line.substr(4));
    else if (in && (line.rfind("Shared_Dirty:", 0) == 0 || line.rfind("Private_Dirty:", 0) == 0))
      m.dirty += std::stoull(line.substr(line.find(':') + 1));
  }
  return m;
}

// A log of 4 MiB segments with a fixed clock, in `mode`.
log_options small_segments(durability mode) {
  log_options o;
  o.mode = mode;
  o.segment_bytes = 4 << 20;
  o.clock = [] { return kFixedClock; };
  return o;
}

TEST(Prefault, SegmentsAheadOfTheWriterAreFaultedInBeforeItGetsThere) {
  // The preparer publishes a segment as soon as it exists, then faults its
  // pages in while the writer is still elsewhere: after a pause in segment 0,
  // segments 1 and 2 are in the page cache, and the writer then rolls through
  // them losing nothing.
  temp_dir root;
  const std::string dir = root.sub("log");
  log_options o;
  o.segment_bytes = 4 << 20;
  o.prepare_next_segment = true;
  o.prepare_ahead = 2;
  o.clock = [] { return kFixedClock; };
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, o));
  log_model model(o.segment_bytes, kFixedClock);
  std::mt19937_64 rng(9);
  ASSERT_NO_FATAL_FAILURE(
      append_checked(*log, model, stream_key::named("s"), expected_version::any(), {event_of(rng, 100)}));
  // How much of segment k this process has mapped (its page table entries:
  // what pre-faulting makes; the page cache alone may hold a file's pages
  // after a readahead).
  auto resident_fraction = [&](uint64_t k) -> double {
    return static_cast<double>(mapped_of_segment(dir, k).rss * 1024) / static_cast<double>(o.segment_bytes);
  };
  double r1 = 0, r2 = 0;
  for (int i = 0; i < 500 && (r1 < 1 || r2 < 1); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    r1 = resident_fraction(1);
    r2 = resident_fraction(2);
  }
  EXPECT_GE(r1, 1.0) << "segment 1 not faulted in ahead of the writer";
  EXPECT_GE(r2, 1.0) << "segment 2 not faulted in ahead of the writer";
  for (int i = 0; i < 40; ++i) {
    std::vector<owned_event> batch;
    for (int j = 0; j < 100; ++j) batch.push_back(event_of(rng, 3000));
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"), expected_version::any(), batch));
  }
  EXPECT_GE(log->stats().rollovers, 2u);
  EXPECT_TRUE(log_matches_model(*log, model));
  ASSERT_OK(log->close());
}

// A new log of 4 MiB segments in the parameter's mode (segment 0 pre-faulted
// at create), with the model of what it holds.
class DurableBatches : public testing::TestWithParam<durability> {
 protected:
  void SetUp() override {
    dir_ = root_.sub("log");
    o_ = small_segments(GetParam());
    auto made = event_log::create(dir_, o_);
    ASSERT_OK(made.to_status());
    log_ = std::move(made.value());
  }
  // Every event reads back from this log, then from a reopen.
  void expect_all_read_back() {
    EXPECT_TRUE(log_matches_model(*log_, model_));
    ASSERT_OK(log_->close());
    ASSERT_OK_AND_ASSIGN(auto again, event_log::open(dir_, o_));
    EXPECT_TRUE(log_matches_model(*again, model_));
  }
  void make_durable() {
    if (GetParam() == durability::none) ASSERT_OK(log_->flush());
    if (GetParam() == durability::group) ASSERT_OK(log_->wait_durable(log_->committed_position()));
  }
  temp_dir root_;
  std::string dir_;
  log_options o_;
  std::unique_ptr<event_log> log_;
  log_model model_{4 << 20, kFixedClock};
};

TEST_P(DurableBatches, SyncedPagesLeaveTheWritersMappingAndKeepTheirBytes) {
  // A sync takes the whole pages below the durable position out of the
  // writer's mapping first (the write-back then has no writable entry to
  // protect, and sends no interrupt per page to the other CPUs). The bytes
  // stay in the page cache: every event reads back, in this process and
  // after a reopen.
  std::mt19937_64 rng(11);
  ASSERT_GE(mapped_of_segment(dir_, 0).rss, 4096u - 64) << "segment 0 is pre-faulted at create";
  uint64_t end = 0;
  for (int b = 0; b < 10; ++b) {
    std::vector<owned_event> batch;
    for (int j = 0; j < 40; ++j) batch.push_back(event_of(rng, 200 + 37 * j));
    ASSERT_NO_FATAL_FAILURE(append_checked(*log_, model_, stream_key::named("s" + std::to_string(b % 3)),
                                           expected_version::any(), batch));
    end = log_->committed_position().value;
    ASSERT_NO_FATAL_FAILURE(make_durable());
  }
  ASSERT_GT(end, 300u << 10);
  const mapped_kb after = mapped_of_segment(dir_, 0);
  // Whole pages below the end are unmapped; the page holding it (and, with
  // the kernel's large folios in mode none, a folio's worth) may remain.
  EXPECT_LE(after.rss * 1024, o_.segment_bytes - end + (64u << 10))
      << "rss " << after.rss << " KiB with " << end << " bytes durable";
  expect_all_read_back();
}

TEST_P(DurableBatches, TheFirstSyncLeavesThePreFaultedPagesAfterTheEndAlone) {
  // The first sync of a session (mode none: the first flush; group and sync:
  // open) makes durable what earlier sessions may have left dirty. In the
  // segment holding the end that is its committed bytes only: syncing the
  // whole file would also write back the pre-faulted zeros after them (64 MiB
  // by default) and write-protect every one of those pages, and the writer
  // would then fault on each page again.
  std::mt19937_64 rng(12);
  ASSERT_NO_FATAL_FAILURE(
      append_checked(*log_, model_, stream_key::named("a"), expected_version::any(), {event_of(rng, 5000)}));
  ASSERT_NO_FATAL_FAILURE(make_durable());
  // Pre-faulted at create: every page was dirty. Those after the end stay so
  // (all but a large folio's worth around the end).
  const mapped_kb m = mapped_of_segment(dir_, 0);
  EXPECT_GE(m.dirty, 2048u) << "dirty " << m.dirty << " KiB of the 4 MiB segment after the first sync";
  expect_all_read_back();
}

INSTANTIATE_TEST_SUITE_P(EveryMode, DurableBatches,
                         testing::Values(durability::none, durability::group, durability::sync),
                         [](const testing::TestParamInfo<durability>& i) {
                           return std::string(i.param == durability::none    ? "none"
                                              : i.param == durability::group ? "group"
                                                                             : "sync");
                         });

// ---------------------------------------------------------------------------
// Every operation failing during create and during open.

class EveryOperationFails : public testing::TestWithParam<op> {};

TEST_P(EveryOperationFails, DuringCreateTheCreateFailsCleanlyAndTheDirectoryRecovers) {
  const op o = GetParam();
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  f.fs->fail_always(o, EIO);
  {
    auto r = event_log::create(dir, f.options());
    const bool injected = f.fs->failures_injected() > 0;
    if (r.ok()) {
      // Only a best-effort operation may fail without failing create.
      EXPECT_TRUE(!injected || o == op::populate || o == op::remove)
          << "create succeeded although " << op_name(o) << " failed";
    } else {
      EXPECT_TRUE(injected) << "create failed without an injected fault: " << r.error().to_string();
      EXPECT_NE(r.error().message().find(dir), std::string::npos) << r.error().to_string();
    }
  }
  f.fs->clear();
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open_or_create(dir, f.options()));
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(10);
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                         expected_version::no_stream(), {event_of(rng, 10)}));
  EXPECT_TRUE(log_matches_model(*log, model));
}

TEST_P(EveryOperationFails, DuringOpenTheOpenFailsCleanlyAndNothingIsLost) {
  const op o = GetParam();
  temp_dir root;
  fault_fixture f;
  const std::string dir = root.sub("log");
  log_model model(k64KiB, kFixedClock);
  std::mt19937_64 rng(11);
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, f.options()));
    for (int i = 0; i < 300; ++i)  // a sealed segment and an unsealed tail
      ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s" + std::to_string(i % 3)),
                                             expected_version::any(), {event_of(rng, 300)}));
  }
  f.fs->fail_always(o, EIO);
  {
    auto r = event_log::open(dir, f.options());
    const bool injected = f.fs->failures_injected() > 0;
    if (r.ok()) {
      EXPECT_TRUE(!injected || o == op::populate || o == op::remove)
          << "open succeeded although " << op_name(o) << " failed";
      EXPECT_TRUE(log_matches_model(**r, model));
    } else {
      EXPECT_TRUE(injected) << "open failed without an injected fault: " << r.error().to_string();
      EXPECT_NE(r.error().message().find(dir), std::string::npos) << r.error().to_string();
    }
  }
  f.fs->clear();
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir, f.options()));
  EXPECT_TRUE(log_matches_model(*log, model));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s0"),
                                         expected_version::any(), {event_of(rng, 10)}));
}

INSTANTIATE_TEST_SUITE_P(Ops, EveryOperationFails,
                         testing::Values(op::open, op::allocate, op::truncate, op::pwrite, op::pread,
                                         op::datasync, op::map, op::sync_range, op::populate,
                                         op::rename, op::remove, op::sync_dir, op::create_dir,
                                         op::sync_filesystem),
                         [](const testing::TestParamInfo<op>& i) { return std::string(op_name(i.param)); });

}  // namespace
