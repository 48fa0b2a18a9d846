// Crash test: a child process appends events and batches and acknowledges each
// append through a pipe; the parent SIGKILLs it at a random moment, reopens the
// log (running recovery) and checks that every acknowledged event is there byte
// for byte, that no batch is half there, and that versions stay contiguous;
// then it appends more itself. Repeated so that crashes pile up on one log.
//
// The child is this binary re-executed (--crash-child ...), so it starts as a
// clean single-threaded process whatever the parent or a sanitizer runtime
// was doing at fork time.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;

constexpr int kStreams = 20;
constexpr uint64_t kChildMaxEvents = 40000;  // bounds the disk used per crash

struct ack {
  enum kind_t : uint64_t { ready = 1, appended = 2, failed = 3 };
  uint64_t kind = 0;
  uint64_t first_seq = 0;
  uint64_t count = 0;
  uint64_t stream = 0;
  uint64_t first_version = 0;
  uint64_t payload_hash = 0;  // FNV-1a over the batch's payloads, in order
};
static_assert(sizeof(ack) <= PIPE_BUF, "acks must be written atomically");

std::string stream_name(uint64_t i) { return "crash-stream-" + std::to_string(i); }

// Everything about an event follows from its global sequence number, so the
// parent can regenerate what the killed child appended.
size_t payload_size(uint64_t seq) {
  uint64_t h = mix64(seq ^ 0x5eed);
  return h % 50 == 0 ? 3000 + h % 5000 : h % 400;
}
owned_event crash_event(uint64_t seq) {
  owned_event e;
  e.type = uint32_t(seq % 97);
  e.schema_version = uint16_t(1 + seq % 3);
  e.timestamp_ns = 1'000'000'000'000'000'000ull + seq;
  e.content = seq % 5 == 0 ? content_type::json : content_type::binary;
  e.payload = payload_for(0xC4A54 + seq, payload_size(seq));
  if (seq % 3 == 0) {
    id128 id;
    uint64_t a = mix64(seq), b = mix64(a);
    std::memcpy(id.bytes.data(), &a, 8);
    std::memcpy(id.bytes.data() + 8, &b, 8);
    e.event_id = id;
  }
  return e;
}

uint64_t batch_hash(uint64_t first_seq, uint64_t count) {
  uint64_t h = 0;
  for (uint64_t s = first_seq; s < first_seq + count; ++s) h = mix64(h ^ fnv1a(crash_event(s).payload));
  return h;
}

log_options crash_options(uint64_t segment_bytes, bool prepare) {
  log_options o;
  o.segment_bytes = segment_bytes;
  o.mode = durability::none;
  o.prepare_next_segment = prepare;
  return o;
}

// Appends one append's worth of events (1 to 6) to a random stream, expecting
// its current version.
result<append_result> append_next(event_log& log, std::mt19937_64& rng, uint64_t* stream_out,
                                  uint64_t* count_out) {
  const uint64_t stream = rng() % kStreams;
  const uint64_t count = rng() % 4 == 0 ? 2 + rng() % 5 : 1;
  const uint64_t seq = log.next_sequence().value;
  std::vector<owned_event> evs;
  for (uint64_t i = 0; i < count; ++i) evs.push_back(crash_event(seq + i));
  std::vector<event_data> data = as_data(evs);
  const std::string name = stream_name(stream);
  const stream_id id{std::string_view(name)};
  *stream_out = stream;
  *count_out = count;
  return log.append(id, expected_version::exact(log.version_of(id)), data);
}

bool write_ack(int fd, const ack& a) {
  return ::write(fd, &a, sizeof a) == static_cast<ssize_t>(sizeof a);
}

// The child: open, say ready, append and acknowledge until killed.
int run_crash_child(const std::string& dir, int fd, uint64_t seed, uint64_t segment_bytes,
                    bool prepare) {
  auto opened = event_log::open_or_create(dir, crash_options(segment_bytes, prepare));
  if (!opened.ok()) {
    std::fprintf(stderr, "crash child: open: %s\n", opened.error().to_string().c_str());
    write_ack(fd, {ack::failed, 0, 0, 0, 0, 0});
    return 3;
  }
  auto log = std::move(opened).value();
  write_ack(fd, {ack::ready, log->next_sequence().value, 0, 0, 0, 0});
  std::mt19937_64 rng(seed);
  for (uint64_t n = 0; n < kChildMaxEvents;) {
    uint64_t stream = 0, count = 0;
    auto r = append_next(*log, rng, &stream, &count);
    if (!r.ok()) {
      std::fprintf(stderr, "crash child: append: %s\n", r.error().to_string().c_str());
      write_ack(fd, {ack::failed, 0, 0, 0, 0, 0});
      return 4;
    }
    // Acknowledged: the append returned. Only now may the parent count on it.
    write_ack(fd, {ack::appended, r->first_sequence.value, count, stream, r->first_version,
                   batch_hash(r->first_sequence.value, count)});
    n += count;
  }
  for (;;) ::pause();
}

// Reads whole acks from `fd` until EOF, until `deadline` (if set), or until
// `out` holds at least `enough` acks (if not 0).
void read_acks(int fd, std::vector<ack>& out, std::string& buf,
               std::optional<std::chrono::steady_clock::time_point> deadline, bool* eof,
               size_t enough = 0) {
  for (;;) {
    if (enough != 0 && out.size() >= enough) return;
    int timeout_ms = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      timeout_ms = int(left.count());
    }
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n == 0) return;
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    char tmp[4096];
    ssize_t got = ::read(fd, tmp, sizeof tmp);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      *eof = true;
      return;
    }
    buf.append(tmp, size_t(got));
    while (buf.size() >= sizeof(ack)) {
      ack a;
      std::memcpy(&a, buf.data(), sizeof a);
      buf.erase(0, sizeof a);
      out.push_back(a);
    }
  }
}

// Checks the whole log: contiguous sequences, every event as generated, whole
// batches, contiguous versions per stream; returns the per-stream versions.
testing::AssertionResult log_is_consistent(const event_log& log,
                                           std::map<std::string, stream_version>* versions) {
  read_outcome all = read_all(log);
  if (!all.error.ok()) return testing::AssertionFailure() << "reader: " << all.error.to_string();
  bool in_batch = false;
  versions->clear();
  const uint64_t segment_bytes = log.stats().segment_bytes;
  for (size_t i = 0; i < all.events.size(); ++i) {
    const event_view& v = all.events[i];
    if (v.sequence.value != i)
      return testing::AssertionFailure() << "sequence " << v.sequence.value << " at index " << i;
    if (v.batch_begin == in_batch)
      return testing::AssertionFailure() << "batch framing broken at sequence " << i;
    in_batch = !v.batch_end;
    stream_version& sv = (*versions)[std::string(v.stream)];
    if (v.version != sv + 1)
      return testing::AssertionFailure() << "version " << v.version << " want " << sv + 1
                                         << " at sequence " << i;
    sv = v.version;
    model_event want;
    want.stream = stream_key::named(std::string(v.stream));  // the stream is checked against acks
    want.event = crash_event(i);
    want.version = v.version;
    want.sequence = i;
    want.batch_begin = v.batch_begin;
    want.batch_end = v.batch_end;
    want.expected_timestamp = want.event.timestamp_ns;
    auto m = event_matches(v, want, segment_bytes);
    if (!m) return m;
  }
  if (in_batch) return testing::AssertionFailure() << "the log ends inside a batch";
  if (log.next_sequence().value != all.events.size())
    return testing::AssertionFailure() << "next_sequence " << log.next_sequence().value << " but "
                                       << all.events.size() << " events read";
  for (const auto& [name, v] : *versions)
    if (log.version_of(stream_id(std::string_view(name))) != v)
      return testing::AssertionFailure() << "version_of(" << name << ") != " << v;
  return testing::AssertionSuccess();
}

// `checked`, when given, grows by the number of acknowledged events compared.
testing::AssertionResult acks_are_present(const event_log& log, const std::vector<ack>& acks,
                                          uint64_t* checked = nullptr) {
  read_outcome all = read_all(log);
  if (!all.error.ok()) return testing::AssertionFailure() << "reader: " << all.error.to_string();
  for (const ack& a : acks) {
    if (a.kind != ack::appended) continue;
    if (a.first_seq + a.count > all.events.size())
      return testing::AssertionFailure() << "acknowledged events " << a.first_seq << ".."
                                         << a.first_seq + a.count - 1 << " lost; log holds "
                                         << all.events.size();
    if (a.payload_hash != batch_hash(a.first_seq, a.count))
      return testing::AssertionFailure() << "ack hash mismatch (test bug) at " << a.first_seq;
    for (uint64_t j = 0; j < a.count; ++j) {
      const event_view& v = all.events[a.first_seq + j];
      if (v.stream != stream_name(a.stream) || v.version != a.first_version + j)
        return testing::AssertionFailure() << "acknowledged event " << a.first_seq + j
                                           << " has stream/version " << v.stream << "/" << v.version;
      if (v.batch_begin != (j == 0) || v.batch_end != (j + 1 == a.count))
        return testing::AssertionFailure() << "acknowledged batch at " << a.first_seq
                                           << " is framed differently";
    }
    if (checked) *checked += a.count;
  }
  return testing::AssertionSuccess();
}

struct child_run {
  std::vector<ack> acks;
  int exit_signal = 0;
};

// Starts a child on `dir`, lets it append for `delay`, SIGKILLs it and collects its acks.
void run_child_and_kill(const std::string& dir, uint64_t seed, uint64_t segment_bytes, bool prepare,
                        std::chrono::microseconds delay, child_run* out) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string fd = std::to_string(fds[1]), s = std::to_string(seed),
                seg = std::to_string(segment_bytes), prep = prepare ? "1" : "0";
    const char* argv[] = {"/proc/self/exe", "--crash-child", dir.c_str(), fd.c_str(),
                          s.c_str(), seg.c_str(), prep.c_str(), nullptr};
    ::execv("/proc/self/exe", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string buf;
  bool eof = false;
  // Wait (generously) for the child to have opened the log: recovery runs there.
  auto ready_by = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  read_acks(fds[0], out->acks, buf, ready_by, &eof, 1);
  bool ready = !out->acks.empty() && out->acks[0].kind == ack::ready;
  if (ready) read_acks(fds[0], out->acks, buf, std::chrono::steady_clock::now() + delay, &eof);
  ::kill(pid, SIGKILL);
  while (!eof) read_acks(fds[0], out->acks, buf, std::nullopt, &eof);
  ::close(fds[0]);
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(ready) << "the child never opened the log (exit status " << st << ")";
  for (const ack& a : out->acks) ASSERT_NE(a.kind, uint64_t{ack::failed}) << "the child failed; see stderr";
  out->exit_signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

TEST(Crash, KilledWriterLosesNoAcknowledgedEventAndNoBatchIsHalfThere) {
  const uint64_t iterations = scaled(30);
  const uint64_t logs = 3;  // crashes pile up on one log, then start another
  temp_dir root;
  std::mt19937_64 rng(20240601);
  uint64_t total_acked = 0, total_recovered = 0, crashes_with_acks = 0;
  for (uint64_t it = 0; it < iterations; ++it) {
    const uint64_t log_no = it * logs / iterations;
    const std::string dir = root.sub("log-" + std::to_string(log_no));
    const uint64_t segment_bytes = log_no % 2 == 0 ? (64 << 10) : (1 << 20);
    const bool prepare = it % 3 != 2;
    SCOPED_TRACE("iteration " + std::to_string(it) + " on " + dir);

    child_run run;
    const auto delay = std::chrono::microseconds(rng() % 50'001);
    ASSERT_NO_FATAL_FAILURE(run_child_and_kill(dir, rng(), segment_bytes, prepare, delay, &run));
    // The child appends until killed: any other end is a crash of its own.
    ASSERT_EQ(run.exit_signal, SIGKILL) << "the child was not ended by our SIGKILL";

    // Recover and check.
    ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir, crash_options(segment_bytes, prepare)));
    std::map<std::string, stream_version> versions;
    ASSERT_TRUE(log_is_consistent(*log, &versions));
    uint64_t checked = 0;
    ASSERT_TRUE(acks_are_present(*log, run.acks, &checked));
    if (checked > 0) ++crashes_with_acks;
    for (const ack& a : run.acks)
      if (a.kind == ack::appended) total_acked += a.count;
    total_recovered += log->next_sequence().value - run.acks[0].first_seq;

    // The recovered log takes appends, and they survive a clean reopen.
    std::mt19937_64 parent_rng(it);
    std::vector<ack> mine;
    for (int i = 0; i < 10; ++i) {
      uint64_t stream = 0, count = 0;
      auto r = append_next(*log, parent_rng, &stream, &count);
      ASSERT_OK(r);
      mine.push_back({ack::appended, r->first_sequence.value, count, stream, r->first_version,
                      batch_hash(r->first_sequence.value, count)});
    }
    ASSERT_OK(log->close());
    log.reset();
    ASSERT_OK_AND_ASSIGN(log, event_log::open(dir, crash_options(segment_bytes, prepare)));
    ASSERT_TRUE(log_is_consistent(*log, &versions));
    ASSERT_TRUE(acks_are_present(*log, run.acks));
    ASSERT_TRUE(acks_are_present(*log, mine));
  }
  std::printf("crash test: %llu events acknowledged and found after recovery, %llu recovered,"
              " %llu of %llu crashes after acknowledgements\n",
              static_cast<unsigned long long>(total_acked),
              static_cast<unsigned long long>(total_recovered),
              static_cast<unsigned long long>(crashes_with_acks),
              static_cast<unsigned long long>(iterations));
  EXPECT_GE(total_recovered, total_acked);
  // Children that were killed before acknowledging anything leave nothing to
  // check: the test would pass on a log that loses every acknowledged event.
  // Kills come 0-50 ms after the child is ready, and it acknowledges an append
  // every few microseconds, so most crashes must have acknowledgements behind them.
  EXPECT_GE(crashes_with_acks * 2, iterations)
      << "only " << crashes_with_acks << " of " << iterations
      << " crashes came after the child had acknowledged an append";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 7 && std::string(argv[1]) == "--crash-child")
    return run_crash_child(argv[2], std::atoi(argv[3]), std::strtoull(argv[4], nullptr, 10),
                           std::strtoull(argv[5], nullptr, 10), argv[6][0] == '1');
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
