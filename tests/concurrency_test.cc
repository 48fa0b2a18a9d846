// Concurrency: readers following a live writer (every event once, in order,
// never half a batch), the single-writer lock across threads and processes,
// and a read-only log following the writer. Must stay clean under TSan.
//
// Child processes re-execute this binary (fork + exec of /proc/self/exe with
// --lock-child DIR) rather than running on after a bare fork: the parent holds
// an open log with background threads, and a forked copy of a multi-threaded
// process may only call async-signal-safe functions.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;

constexpr uint64_t k64KiB = 64 << 10;

// Small segments: these tests are about locks, not capacity.
log_options small_options() {
  log_options o;
  o.segment_bytes = k64KiB;
  return o;
}

// Exit codes of the lock child.
constexpr int kChildSawLocked = 0;
constexpr int kChildOpened = 10;
constexpr int kChildOtherError = 20;

int run_lock_child(const std::string& dir) {
  auto opened = event_log::open(dir);
  if (opened.ok()) return kChildOpened;
  if (opened.error().code() == errc::locked) return kChildSawLocked;
  std::fprintf(stderr, "lock child: %s\n", opened.error().to_string().c_str());
  return kChildOtherError;
}

// Runs `--lock-child dir` in a fresh process and returns its exit code.
int lock_child_exit_code(const std::string& dir) {
  pid_t pid = ::fork();
  if (pid == 0) {
    const char* argv[] = {"/proc/self/exe", "--lock-child", dir.c_str(), nullptr};
    ::execv("/proc/self/exe", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  if (pid < 0) return -1;
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Payloads are a function of the event's sequence number, so any reader can
// check the bytes it was handed without talking to the writer.
size_t payload_size_of(uint64_t seq) { return size_t(mix64(seq) % 300); }
std::vector<std::byte> payload_of(uint64_t seq) { return payload_for(seq, payload_size_of(seq)); }

// Appends `n` events in batches of 1..8 over 16 streams.
status write_events(event_log& log, uint64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  uint64_t seq = log.next_sequence().value;
  const uint64_t end = seq + n;
  while (seq < end) {
    size_t count = std::min<uint64_t>(1 + rng() % 8, end - seq);
    std::vector<std::vector<std::byte>> payloads;
    std::vector<event_data> batch;
    for (size_t i = 0; i < count; ++i) payloads.push_back(payload_of(seq + i));
    for (size_t i = 0; i < count; ++i) {
      event_data d;
      d.type = uint32_t(seq + i);
      d.payload = payloads[i];
      batch.push_back(d);
    }
    std::string stream = "stream-" + std::to_string(rng() % 16);
    auto r = log.append(stream_id(std::string_view(stream)), expected_version::any(), batch);
    if (!r.ok()) return r.error();
    if (r->first_sequence.value != seq) return status(errc::invalid_argument, "sequence gap");
    seq += count;
  }
  return {};
}

// A reader that follows the log until it has seen `n` events, checking order,
// payload bytes, per-stream versions and batch framing. Returns "" or the first problem.
std::string follow(log_reader reader, uint64_t n, const std::atomic<bool>& writer_done) {
  std::map<std::string, stream_version, std::less<>> versions;
  bool in_batch = false;
  uint64_t seen = 0;
  while (seen < n) {
    event_view v;
    auto got = reader.next(v);
    if (!got.ok()) return "reader error after " + std::to_string(seen) + ": " + got.error().to_string();
    if (!*got) {
      // End of what is committed now: a batch is published whole or not at all.
      if (in_batch) return "end of data inside a batch at sequence " + std::to_string(seen);
      if (writer_done.load(std::memory_order_acquire)) {
        // One more look: the last commit may have landed after our read.
        got = reader.next(v);
        if (!got.ok() || !*got)
          return "writer finished but reader saw only " + std::to_string(seen) + " events";
      } else {
        std::this_thread::yield();
        continue;
      }
    }
    if (v.sequence.value != seen)
      return "sequence " + std::to_string(v.sequence.value) + " want " + std::to_string(seen);
    if (v.batch_begin == in_batch)
      return "batch framing broken at sequence " + std::to_string(seen);
    in_batch = !v.batch_end;
    stream_version& sv = versions[std::string(v.stream)];
    if (v.version != sv + 1)
      return "stream version " + std::to_string(v.version) + " want " + std::to_string(sv + 1);
    sv = v.version;
    std::vector<std::byte> want = payload_of(seen);
    if (v.payload.size() != want.size() ||
        (want.size() && std::memcmp(v.payload.data(), want.data(), want.size()) != 0))
      return "payload differs at sequence " + std::to_string(seen);
    if (v.type != uint32_t(seen)) return "type differs at sequence " + std::to_string(seen);
    if (reader.committed().value < v.position.value + v.record_bytes)
      return "handed out an event past the committed position";
    ++seen;
  }
  return {};
}

// A follower in another process: opens the log read-only and follows the
// writer through the shared control block until it has seen `n` events.
int run_follow_child(const std::string& dir, uint64_t n) {
  auto opened = event_log::open_read_only(dir, small_options());
  if (!opened.ok()) {
    std::fprintf(stderr, "follow child: %s\n", opened.error().to_string().c_str());
    return 2;
  }
  auto log = std::move(opened).value();
  // Only a safety net against a hung writer: the parent decides pass or fail.
  std::atomic<bool> gave_up{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 1200 && !gave_up.load(); ++i) ::usleep(100'000);
    gave_up.store(true);
  });
  std::string problem = follow(log->read(), n, gave_up);
  gave_up.store(true);
  watchdog.join();
  if (!problem.empty()) {
    std::fprintf(stderr, "follow child: %s\n", problem.c_str());
    return 1;
  }
  return 0;
}

TEST(Concurrency, FourFollowingReadersSeeEveryEventOnceInOrderAndNeverHalfABatch) {
  temp_dir dir;
  log_options o;
  o.segment_bytes = k64KiB;  // many roll-overs under the readers' feet
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
  const uint64_t n = scaled(20000);
  std::atomic<bool> writer_done{false};
  std::vector<std::string> problems(4);
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i)
    readers.emplace_back([&, i] { problems[i] = follow(log->read(), n, writer_done); });
  status w = write_events(*log, n, 1);
  writer_done.store(true, std::memory_order_release);
  for (auto& t : readers) t.join();
  ASSERT_OK(w);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(problems[i], "") << "reader " << i;
  EXPECT_EQ(log->next_sequence().value, n);
}

TEST(Concurrency, ReadersStartedWhileTheWriterRunsSeeEverythingFromTheStart) {
  temp_dir dir;
  log_options o;
  o.segment_bytes = k64KiB;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
  const uint64_t n = scaled(8000);
  std::atomic<bool> writer_done{false};
  status w;
  std::thread writer([&] {
    w = write_events(*log, n, 2);
    writer_done.store(true, std::memory_order_release);
  });
  // Readers are created from another thread while appends run.
  std::vector<std::string> problems(3);
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i)
    readers.emplace_back([&, i] { problems[i] = follow(log->read(), n, writer_done); });
  writer.join();
  for (auto& t : readers) t.join();
  ASSERT_OK(w);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(problems[i], "") << "reader " << i;
}

TEST(Concurrency, PositionGettersMayBeReadFromAnyThreadWhileTheWriterAppends) {
  // log.h: the position getters (and next_sequence) may be called from any
  // thread concurrently with the writer; version_of() and stats() may not.
  temp_dir dir;
  log_options o;
  o.segment_bytes = k64KiB;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
  const uint64_t n = scaled(5000);
  std::atomic<bool> done{false};
  // A loaded machine may not schedule the observer until the writer is done,
  // and it would then have watched nothing: the writer waits for its first
  // look, and at half way for a look at the log mid-run.
  std::atomic<bool> looked{false}, looked_mid_run{false}, observer_stopped{false};
  std::string problem;
  std::thread observer([&] {
    position last_committed, last_written;
    uint64_t last_seq = 0;
    while (!done.load(std::memory_order_acquire) && problem.empty()) {
      const position durable = log->durable_position();
      const position committed = log->committed_position();
      const position written = log->written_position();
      const uint64_t seq = log->next_sequence().value;
      if (committed < last_committed) problem = "committed_position went backwards";
      if (written < last_written) problem = "written_position went backwards";
      if (seq < last_seq) problem = "next_sequence went backwards";
      if (durable > committed) problem = "durable_position passed committed_position";
      last_committed = committed;
      last_written = written;
      last_seq = seq;
      looked.store(true, std::memory_order_release);
      if (seq > 0 && seq < n) looked_mid_run.store(true, std::memory_order_release);
    }
    observer_stopped.store(true, std::memory_order_release);
  });
  auto wait_for = [&](const std::atomic<bool>& flag) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!flag.load(std::memory_order_acquire) && !observer_stopped.load(std::memory_order_acquire) &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
  };
  wait_for(looked);
  std::mt19937_64 rng(3);
  status w;
  for (uint64_t i = 0; i < n && w.ok(); ++i) {
    if (i == n / 2) wait_for(looked_mid_run);
    std::vector<std::byte> p = random_bytes(rng, rng() % 200);
    event_data d;
    d.payload = p;
    w = log->append("single", expected_version::exact(i), d).to_status();
  }
  done.store(true, std::memory_order_release);
  observer.join();
  ASSERT_OK(w);
  EXPECT_EQ(problem, "");
  EXPECT_TRUE(looked_mid_run.load()) << "the observer never saw the log while the writer appended";
  EXPECT_EQ(log->version_of("single"), n);
}

// ---------------------------------------------------------------------------
// The writer lock

TEST(Locking, SecondOpenInTheSameProcessIsLocked) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  EXPECT_ERRC(event_log::open(dir.path()), errc::locked);
  EXPECT_ERRC(event_log::open_or_create(dir.path()), errc::locked);
  EXPECT_FALSE(event_log::create(dir.path()).ok());
  // The refused opens did not disturb the writer.
  std::vector<std::byte> p(10);
  event_data d;
  d.payload = p;
  ASSERT_OK(log->append("s", expected_version::any(), d));
  ASSERT_OK(log->close());
  log.reset();
  ASSERT_OK_AND_ASSIGN(auto again, event_log::open(dir.path(), small_options()));
  EXPECT_EQ(again->next_sequence().value, 1u);
}

TEST(Locking, SecondOpenFromAnotherThreadIsLocked) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  errc got = errc::ok;
  std::thread t([&] { got = code_of(event_log::open(dir.path(), small_options())); });
  t.join();
  EXPECT_EQ(errc_text(got), errc_text(errc::locked));
}

TEST(Locking, DestroyingTheLogWithoutCloseReleasesTheLock) {
  temp_dir dir;
  { ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options())); }  // destructor only
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir.path(), small_options()));
  EXPECT_FALSE(log->is_read_only());
}

TEST(Locking, ChildProcessIsLockedOutWhileTheParentHoldsTheLog) {
  temp_dir dir;
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
    EXPECT_EQ(lock_child_exit_code(dir.path()), kChildSawLocked);
    ASSERT_OK(log->close());
  }
  EXPECT_EQ(lock_child_exit_code(dir.path()), kChildOpened);
  // And the child's close released it again for us.
  EXPECT_OK(event_log::open(dir.path(), small_options()));
}

// POSIX record locks belong to the process and vanish when *any* descriptor
// of the file is closed: an open that fails with `locked`, or a read-only log
// coming and going, must not drop the writer's lock that way.
TEST(Locking, ARefusedSecondOpenDoesNotReleaseTheWritersLock) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  ASSERT_EQ(lock_child_exit_code(dir.path()), kChildSawLocked);
  EXPECT_ERRC(event_log::open(dir.path()), errc::locked);
  EXPECT_EQ(lock_child_exit_code(dir.path()), kChildSawLocked)
      << "another process could open the log for writing while this one holds it";
}

TEST(Locking, AReadOnlyLogComingAndGoingDoesNotReleaseTheWritersLock) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  {
    auto ro = event_log::open_read_only(dir.path());
    EXPECT_OK(ro);
  }
  EXPECT_EQ(lock_child_exit_code(dir.path()), kChildSawLocked)
      << "another process could open the log for writing while this one holds it";
  EXPECT_ERRC(event_log::open(dir.path()), errc::locked);
}

// ---------------------------------------------------------------------------
// Read-only logs

TEST(ReadOnlyFollower, ReadOnlyLogInTheSameProcessFollowsTheWritersCommits) {
  temp_dir dir;
  log_options o;
  o.segment_bytes = k64KiB;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), o));
  // Some events before the follower opens, the rest while it follows.
  ASSERT_OK(write_events(*log, 500, 4));
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(dir.path(), o));
  EXPECT_TRUE(ro->is_read_only());
  const uint64_t n = 500 + scaled(6000);
  std::atomic<bool> writer_done{false};
  std::vector<std::string> problems(2);
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i)
    readers.emplace_back([&, i] { problems[i] = follow(ro->read(), n, writer_done); });
  status w = write_events(*log, n - 500, 5);
  writer_done.store(true, std::memory_order_release);
  for (auto& t : readers) t.join();
  ASSERT_OK(w);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(problems[i], "") << "read-only reader " << i;
  EXPECT_EQ(ro->committed_position(), log->committed_position());
  EXPECT_ERRC(ro->append("x", expected_version::any(), event_data{}), errc::read_only);
}

TEST(ReadOnlyFollower, ReadOnlyLogInAnotherProcessFollowsTheWritersCommits) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  const uint64_t n = scaled(5000);
  ASSERT_OK(write_events(*log, 300, 6));  // some before the follower starts
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string count = std::to_string(n);
    const char* argv[] = {"/proc/self/exe", "--follow-child", dir.path().c_str(), count.c_str(), nullptr};
    ::execv("/proc/self/exe", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  status w = write_events(*log, n - 300, 7);
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_OK(w);
  ASSERT_TRUE(WIFEXITED(st)) << "follower died with signal " << WTERMSIG(st);
  EXPECT_EQ(WEXITSTATUS(st), 0) << "the follower process saw something wrong (see its stderr)";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--lock-child") return run_lock_child(argv[2]);
  if (argc == 4 && std::string(argv[1]) == "--follow-child")
    return run_follow_child(argv[2], std::strtoull(argv[3], nullptr, 10));
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
