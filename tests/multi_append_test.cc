// Multi-stream atomic appends (event_log::append of stream_batch parts): a
// unit of work over several streams is checked whole, written as one batch,
// and kept whole or not at all by recovery after a killed writer and after a
// power loss. (The model property test mixes them with every other append.)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include <cinttypes>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/power_loss_file_system.h"
#include "reboot.h"
#include "test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;

constexpr uint64_t kSegment = 64 << 10;

log_options opts(durability mode = durability::none) {
  log_options o;
  o.segment_bytes = kSegment;
  o.mode = mode;
  return o;
}

// Unit u's events: "u<u> <k>/<n>" for k = 1..n, over streams acct-(u % 5),
// acct-((u + 1) % 5), ... (n streams, one event each).
struct unit {
  std::vector<std::string> streams, bodies;
};
unit make_unit(uint64_t u, size_t n) {
  unit x;
  for (size_t k = 0; k < n; ++k) {
    x.streams.push_back("acct-" + std::to_string((u + k) % 5));
    x.bodies.push_back("u" + std::to_string(u) + " " + std::to_string(k + 1) + "/" + std::to_string(n) +
                       std::string(u % 97, '.'));
  }
  return x;
}
result<multi_append_result> put(event_log& log, const unit& x) {
  std::vector<event_data> evs(x.streams.size());
  std::vector<stream_batch> parts;
  for (size_t k = 0; k < x.streams.size(); ++k) {
    evs[k] = event_data{.type = 7, .payload = event_data::bytes(x.bodies[k])};
    parts.push_back({stream_id(std::string_view(x.streams[k])), expected_version::any(),
                     std::span<const event_data>(&evs[k], 1)});
  }
  return log.append(std::span<const stream_batch>(parts));
}

// Reads the log and checks every unit in it is whole: its n events, in
// order, one batch. Returns the units found (their numbers, ascending).
std::vector<uint64_t> whole_units(const event_log& log) {
  std::vector<uint64_t> found;
  read_outcome all = read_all(log);
  EXPECT_OK(all.error);
  size_t i = 0;
  while (i < all.events.size()) {
    const event_view& first = all.events[i];
    const std::string b0(as_sv(first.payload));
    uint64_t u = 0;
    size_t k = 0, n = 0;
    if (std::sscanf(b0.c_str(), "u%" SCNu64 " %zu/%zu", &u, &k, &n) != 3 || k != 1) {
      ADD_FAILURE() << "event #" << i << " does not start a unit: " << b0;
      return found;
    }
    EXPECT_TRUE(first.batch_begin) << "unit " << u;
    if (i + n > all.events.size()) {
      ADD_FAILURE() << "unit " << u << " is cut short: a partial unit of work is visible";
      return found;
    }
    const unit want = make_unit(u, n);
    for (size_t j = 0; j < n; ++j) {
      const event_view& v = all.events[i + j];
      EXPECT_EQ(as_sv(v.payload), want.bodies[j]) << "unit " << u << " event " << j;
      EXPECT_EQ(v.stream, want.streams[j]) << "unit " << u << " event " << j;
      EXPECT_EQ(v.batch_end, j + 1 == n) << "unit " << u << " event " << j;
    }
    found.push_back(u);
    i += n;
  }
  return found;
}

TEST(MultiAppend, AConflictNamesTheStreamAndItsVersionAndWritesNothing) {
  temp_dir d;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
  const std::string a = "a", b = "b";
  event_data e{.type = 1, .payload = event_data::bytes("x")};
  ASSERT_OK(log->append(stream_id("a"), expected_version::no_stream(), e));
  std::vector<event_data> two = {e, e};
  stream_batch parts[] = {{stream_id("a"), expected_version::exact(1), two},
                          {stream_id("b"), expected_version::exact(3), two}};
  const position before = log->committed_position();
  auto r = log->append(parts);
  ASSERT_ERRC(r, errc::wrong_expected_version);
  EXPECT_EQ(r.error().actual_version(), 0u);
  EXPECT_NE(r.error().message().find("'b'"), std::string::npos) << r.error().to_string();
  EXPECT_EQ(log->committed_position(), before);
  EXPECT_EQ(log->version_of(stream_id("a")), 1u);
  // Fixed, it goes through as one batch: a's 2 and 3, then b's 1 and 2.
  parts[1].expected = expected_version::no_stream();
  append_result acks[2];
  ASSERT_OK_AND_ASSIGN(multi_append_result m, log->append(parts, acks));
  EXPECT_EQ(m.events, 4u);
  EXPECT_EQ(acks[0].first_version, 2u);
  EXPECT_EQ(acks[0].last_version, 3u);
  EXPECT_EQ(acks[1].first_version, 1u);
  EXPECT_EQ(acks[1].last_version, 2u);
  EXPECT_EQ(acks[0].first, m.first);
  EXPECT_EQ(acks[1].end, m.end);
  // A stream twice, no events at all, too few acknowledgement slots: refused.
  stream_batch twice[] = {{stream_id("a"), expected_version::any(), two},
                          {stream_id("a"), expected_version::any(), two}};
  EXPECT_ERRC(log->append(twice), errc::invalid_argument);
  // The same in a batch of many streams (checked by sorting, not pairwise),
  // the two far apart; nothing written.
  {
    std::vector<std::string> names;
    for (int i = 0; i < 500; ++i) names.push_back("many-" + std::to_string(i));
    names[417] = names[3];
    std::vector<stream_batch> many;
    for (const std::string& n : names) many.push_back({stream_id(std::string_view(n)), expected_version::any(), two});
    const position at = log->committed_position();
    auto dup = log->append(many);
    ASSERT_ERRC(dup, errc::invalid_argument);
    EXPECT_NE(dup.error().message().find("streams[3] and [417]"), std::string::npos) << dup.error().to_string();
    EXPECT_EQ(log->committed_position(), at);
  }
  stream_batch none[] = {{stream_id("a"), expected_version::exact(3), {}}};
  EXPECT_ERRC(log->append(none), errc::invalid_argument);
  append_result one[1];
  EXPECT_ERRC(log->append(parts, one), errc::invalid_argument);
  // A check-only part: its stream must be at the version, and gets nothing.
  stream_batch check[] = {{stream_id("a"), expected_version::exact(3), {}},
                          {stream_id("c"), expected_version::no_stream(), two}};
  ASSERT_OK_AND_ASSIGN(m, log->append(check, acks));
  EXPECT_EQ(acks[0].first, acks[0].end);
  EXPECT_EQ(acks[0].last_version, 3u);
  check[0].expected = expected_version::exact(2);
  check[1].expected = expected_version::exact(2);
  auto stale = log->append(check);
  ASSERT_ERRC(stale, errc::wrong_expected_version);
  EXPECT_EQ(stale.error().actual_version(), 3u);
  EXPECT_EQ(log->next_sequence().value, 7u);
}

// Every stream of a unit reads back through its own index, after a reopen,
// while the log reader sees one batch per unit.
TEST(MultiAppend, EachStreamReadsItsOwnEventsThroughTheIndex) {
  temp_dir d;
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
    for (uint64_t u = 0; u < 300; ++u) ASSERT_OK(put(*log, make_unit(u, 1 + u % 4)));
    ASSERT_OK(log->close());
  }
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(d.path(), opts()));
  const std::vector<uint64_t> units = whole_units(*log);
  ASSERT_EQ(units.size(), 300u);
  std::map<std::string, std::vector<std::string>> by_stream;
  for (uint64_t u = 0; u < 300; ++u) {
    const unit x = make_unit(u, 1 + u % 4);
    for (size_t k = 0; k < x.streams.size(); ++k) by_stream[x.streams[k]].push_back(x.bodies[k]);
  }
  for (const auto& [s, bodies] : by_stream) {
    SCOPED_TRACE(s);
    EXPECT_EQ(log->version_of(stream_id(std::string_view(s))), bodies.size());
    ASSERT_OK_AND_ASSIGN(auto r, log->read_stream(stream_id(std::string_view(s)), 1, read_direction::forward));
    event_view v;
    size_t n = 0;
    for (;;) {
      ASSERT_OK_AND_ASSIGN(bool more, r.next(v));
      if (!more) break;
      ASSERT_LT(n, bodies.size());
      EXPECT_EQ(as_sv(v.payload), bodies[n]);
      EXPECT_EQ(v.version, n + 1);
      ++n;
    }
    EXPECT_EQ(n, bodies.size());
  }
  ASSERT_OK(log->close());
  log.reset();
  ASSERT_OK_AND_ASSIGN(verify_report rep, verify_log(d.path()));
  EXPECT_OK(rep.first_problem);
}

// A writer killed (SIGKILL) while it appends units of work: every unit it
// acknowledged is there, and every unit in the log is whole.
TEST(MultiAppend, AKilledWriterLeavesEveryUnitWholeOrAbsent) {
  for (uint64_t seed = 1; seed <= scaled(6); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    temp_dir d;
    { ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts())); }
    int pipefd[2];
    ASSERT_EQ(::pipe(pipefd), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(pipefd[0]);
      auto log = event_log::open(d.path(), opts());
      if (!log) ::_exit(2);
      for (uint64_t u = 0;; ++u) {
        if (!put(**log, make_unit(u, 1 + (u * seed) % 5))) ::_exit(3);
        if (::write(pipefd[1], &u, sizeof u) != sizeof u) ::_exit(4);
      }
    }
    ::close(pipefd[1]);
    std::mt19937_64 rng(seed);
    ::usleep(static_cast<useconds_t>(2000 + rng() % 30000));
    ::kill(pid, SIGKILL);
    uint64_t u = 0, acked = 0;
    bool any = false;
    while (::read(pipefd[0], &u, sizeof u) == sizeof u) {
      acked = u;
      any = true;
    }
    ::close(pipefd[0]);
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(st)) << "the writer was to be killed, status " << st;
    ASSERT_OK_AND_ASSIGN(auto log, event_log::open(d.path(), opts()));
    const std::vector<uint64_t> units = whole_units(*log);
    // Units in order from 0, with no gap, up to at least the last acknowledged.
    for (size_t i = 0; i < units.size(); ++i) ASSERT_EQ(units[i], i);
    if (any) {
      EXPECT_GT(units.size(), acked) << "acknowledged unit " << acked << " is missing";
    }
    std::printf("seed %" PRIu64 ": %zu units whole after the kill\n", seed, units.size());
  }
}

// Power loss (the simulated file system): after a cut at random moments,
// every unit acknowledged as durable is there, and every unit is whole.
TEST(MultiAppend, APowerLossLeavesEveryUnitWholeOrAbsent) {
  for (uint64_t seed = 1; seed <= scaled(30); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " (power-loss image)");
    temp_dir root;
    auto pfs = std::make_shared<power_loss_file_system>();
    const std::string dir = root.sub("log");
    std::mt19937_64 rng(seed);
    log_options o = opts(seed % 2 ? durability::group : durability::none);
    o.fs = pfs;
    o.prepare_next_segment = rng() % 2;
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, o));
    const uint64_t n_units = 50 + rng() % 400;
    uint64_t durable_units = 0;
    for (uint64_t u = 0; u < n_units; ++u) {
      ASSERT_OK_AND_ASSIGN(multi_append_result m, put(*log, make_unit(u, 1 + rng() % 5)));
      if (rng() % 16 == 0) {
        ASSERT_OK(o.mode == durability::group ? log->wait_durable(m.end) : log->flush());
        durable_units = u + 1;
      }
    }
    const std::string image = root.sub("image");
    power_loss_file_system::crash_report rep;
    ASSERT_OK(pfs->crash(dir, image, seed, &rep));
    ASSERT_OK(log->close());
    log.reset();
    simulated_reboot reboot(seed);
    log_options ro = opts();
    ASSERT_OK_AND_ASSIGN(auto img, event_log::open(image, ro));
    const std::vector<uint64_t> units = whole_units(*img);
    for (size_t i = 0; i < units.size(); ++i) ASSERT_EQ(units[i], i) << rep.to_string();
    EXPECT_GE(units.size(), durable_units) << "units acknowledged durable were lost: " << rep.to_string();
  }
}

// A log made before format version 2 (meta and segments say 1) is read as
// before and takes multi-stream appends; the segments made since say 2, so a
// varve that knows only version 1 refuses them as newer instead of taking a
// multi-stream batch for damage.
TEST(MultiAppend, AVersionOneLogIsReadAndItsNewSegmentsSayVersionTwo) {
  temp_dir d;
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
    event_data e{.type = 1, .payload = event_data::bytes("old")};
    for (int i = 0; i < 10; ++i) ASSERT_OK(log->append(stream_id("old"), expected_version::any(), e));
    ASSERT_OK(log->close());
  }
  // Rewrite the version words as version 1 wrote them (with their checksums).
  ASSERT_NO_FATAL_FAILURE(set_format_version(d.path() + "/varve.meta", 1));
  const auto before = list_segments(d.path());
  for (const auto& s : before) ASSERT_NO_FATAL_FAILURE(set_format_version(s, 1));
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::open(d.path(), opts()));
    EXPECT_EQ(log->version_of(stream_id("old")), 10u);
    for (uint64_t u = 0; u < 400; ++u) ASSERT_OK(put(*log, make_unit(u, 3)));
    ASSERT_OK(log->close());
  }
  // Every batch of several streams lies in a segment that says version 2.
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open_read_only(d.path(), opts()));
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  ASSERT_EQ(all.events.size(), 10u + 1200u);
  size_t mixed = 0;
  for (size_t i = 0; i < all.events.size();) {
    size_t j = i;
    bool several = false;
    while (!all.events[j].batch_end) several |= all.events[++j].stream != all.events[i].stream;
    if (several) {
      ++mixed;
      const std::string seg = segment_path(d.path(), segment_of(all.events[i].position, kSegment));
      uint32_t v = 0;
      std::vector<uint8_t> h = read_file(seg);
      std::memcpy(&v, h.data() + 8, 4);
      ASSERT_GE(v, 2u) << seg << " holds a multi-stream batch at " << all.events[i].position.value;
    }
    i = j + 1;
  }
  EXPECT_EQ(mixed, 400u);
  log.reset();
  ASSERT_OK_AND_ASSIGN(verify_report rep, verify_log(d.path()));
  EXPECT_OK(rep.first_problem);
  EXPECT_EQ(rep.events, 10u + 1200u);
}

}  // namespace
