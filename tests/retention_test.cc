// Retention (event_log::retain, DIR/start, FORMAT.md 1b): whole sealed
// segments leave the head of the log. Checked against a model of every
// event appended: what lies at or after the start reads back exactly, by
// every read path; what lies before it is errc::removed naming the start,
// never bytes; heads of streams whose events all went survive a reopen; an
// interrupted pass is finished by the next open; a missing start segment
// or a damaged start record is refused, naming the file.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "base/start_file.h"
#include "engine/io/power_loss_file_system.h"
#include "test_util.h"
#include "varve/admin.h"
#include "varve/replay.h"

using namespace varve;
using namespace varve_test;

namespace {

constexpr uint64_t kSeg = 64 * 1024;
constexpr uint64_t kStreams = 13;

struct model_event {
  uint64_t seq;
  std::string stream;
  stream_version version;
  uint64_t position;
  uint64_t timestamp;
};

log_options opts() {
  log_options o;
  o.segment_bytes = kSeg;
  return o;
}

std::string rr_stream(uint64_t i) { return "rr-" + std::to_string(i % kStreams); }

// Appends until segment `segments` is active: stream "early" only in the
// first segment, the rest round-robin over kStreams streams; timestamps
// rise by 1 ms from `t0`. Closes the log (so every seal and checkpoint is on disk).
std::vector<model_event> fill(const std::string& dir, uint64_t segments, uint64_t t0 = 1'000'000'000'000) {
  std::vector<model_event> m;
  auto log = event_log::open_or_create(dir, opts());
  EXPECT_TRUE(log.ok()) << describe(log);
  if (!log) return m;
  std::vector<std::byte> payload(400, std::byte{0x42});
  std::map<std::string, stream_version> versions;
  for (uint64_t i = 0; log.value()->committed_position().value / kSeg < segments; ++i) {
    const std::string s = i < 20 ? std::string("early") : rr_stream(i);
    event_data e;
    std::memcpy(payload.data(), &i, sizeof i);
    e.payload = payload;
    e.type = 7;
    e.timestamp_ns = t0 + i * 1'000'000;
    auto r = log.value()->append(stream_id(s), expected_version::any(), e);
    EXPECT_TRUE(r.ok()) << describe(r);
    if (!r) return m;
    m.push_back({r.value().first_sequence.value, s, ++versions[s], r.value().first.value, e.timestamp_ns});
  }
  EXPECT_OK(log.value()->close());
  return m;
}

// Every event from position 0 ("the beginning") on, as the reader gives them.
std::vector<model_event> read_from_start(const event_log& log) {
  std::vector<model_event> out;
  log_reader r = log.read();
  event_view v;
  while (true) {
    auto more = r.next(v);
    EXPECT_TRUE(more.ok()) << describe(more);
    if (!more || !more.value()) break;
    out.push_back({v.sequence.value, std::string(v.stream), v.version, v.position.value, v.timestamp_ns});
  }
  return out;
}

std::vector<model_event> kept(const std::vector<model_event>& m, uint64_t start) {
  std::vector<model_event> out;
  for (const model_event& e : m)
    if (e.position >= start) out.push_back(e);
  return out;
}

void expect_same(const std::vector<model_event>& got, const std::vector<model_event>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].seq, want[i].seq) << i;
    EXPECT_EQ(got[i].position, want[i].position) << i;
    EXPECT_EQ(got[i].stream, want[i].stream) << i;
    EXPECT_EQ(got[i].version, want[i].version) << i;
  }
}

// The read paths of one log, against the model, after retention moved the
// start to `start` (first_sequence `seq`).
void check_reads(event_log& log, const std::vector<model_event>& m, uint64_t start, uint64_t seq) {
  const auto want = kept(m, start);
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(want.front().position, start);
  EXPECT_EQ(want.front().seq, seq);
  expect_same(read_from_start(log), want);

  // Below the start: the removed error, naming the start.
  log_reader below = log.read(position{m.front().position});
  event_view v;
  auto r = below.next(v);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), errc::removed) << describe(r);
  EXPECT_NE(r.error().message().find("starts at position " + std::to_string(start)), std::string::npos)
      << r.error().message();

  // position_of and position_at_time.
  auto p0 = log.position_of(sequence{0});
  EXPECT_EQ(code_of(p0), errc::removed) << describe(p0);
  auto ps = log.position_of(sequence{seq});
  ASSERT_OK(ps);
  EXPECT_EQ(ps.value().value, start);
  auto pt = log.position_at_time(0);
  ASSERT_OK(pt);
  EXPECT_EQ(pt.value().value, start);
  auto pt2 = log.position_at_time(want[want.size() / 2].timestamp);
  ASSERT_OK(pt2);
  EXPECT_EQ(pt2.value().value, want[want.size() / 2].position);

  // A stream whose first versions went: from version 1 the removed error,
  // saying which version to read from; from that version on, exact.
  const std::string s = rr_stream(3);
  stream_version first_kept = 0, last = 0;
  for (const model_event& e : m)
    if (e.stream == s) {
      last = e.version;
      if (!first_kept && e.position >= start) first_kept = e.version;
    }
  ASSERT_GT(first_kept, 1u);
  auto whole = log.read_stream(stream_id(s), 1);
  if (whole) {  // the error may come at init (the walk down) or at the first next()
    auto n = whole.value().next(v);
    ASSERT_FALSE(n.ok());
    EXPECT_EQ(n.error().code(), errc::removed);
  } else {
    EXPECT_EQ(whole.error().code(), errc::removed) << describe(whole);
    EXPECT_NE(whole.error().message().find("read from version " + std::to_string(first_kept)), std::string::npos)
        << whole.error().message();
  }
  auto rest = log.read_stream(stream_id(s), first_kept);
  ASSERT_OK(rest);
  stream_version expect = first_kept;
  while (true) {
    auto n = rest.value().next(v);
    ASSERT_OK(n);
    if (!n.value()) break;
    EXPECT_EQ(v.version, expect++);
  }
  EXPECT_EQ(expect, last + 1);
  // Backward from the head: the retained versions, then the removed error.
  auto back = log.read_stream(stream_id(s), UINT64_MAX, read_direction::backward);
  ASSERT_OK(back);
  stream_version down = last;
  status end;
  while (true) {
    auto n = back.value().next(v);
    if (!n) {
      end = n.error();
      break;
    }
    ASSERT_TRUE(n.value());
    EXPECT_EQ(v.version, down--);
  }
  EXPECT_EQ(end.code(), errc::removed) << describe(end);
  EXPECT_EQ(down + 1, first_kept);

  // The head of a stream whose events all went is still known.
  EXPECT_EQ(log.version_of(stream_id("early")), 20u);

  // Replay from the beginning, every backend: exactly the retained events.
  for (io_backend b : {io_backend::mmap, io_backend::pread, io_backend::uring}) {
    auto rp = replay(log).partitions(3).threads(2).io(b).run([](uint32_t) {
      struct counter {
        uint64_t n = 0, seq_sum = 0;
        void apply(const event_view& e) {
          ++n;
          seq_sum += e.sequence.value;
        }
      };
      return counter{};
    });
    ASSERT_TRUE(rp) << describe(rp.error) << " backend " << to_string(b);
    uint64_t n = 0, sum = 0, want_sum = 0;
    for (const auto& st : rp.states) {
      n += st.n;
      sum += st.seq_sum;
    }
    for (const model_event& e : want) want_sum += e.seq;
    EXPECT_EQ(n, want.size()) << to_string(b);
    EXPECT_EQ(sum, want_sum) << to_string(b);
    // From a removed position: the removed error.
    auto bad = replay(log).from(position{m.front().position}).io(b).run([](uint32_t) {
      struct nothing {
        void apply(const event_view&) {}
      };
      return nothing{};
    });
    EXPECT_EQ(bad.error.code(), errc::removed) << describe(bad.error) << " backend " << to_string(b);
  }
}

TEST(Retention, BeforeAPositionEveryReadPathAndReopen) {
  temp_dir d;
  const auto m = fill(d.path(), 8);
  ASSERT_FALSE(HasFailure());
  // Segments wholly before an event in segment 5: 0 to 4.
  uint64_t target = 0;
  for (const model_event& e : m)
    if (e.position / kSeg == 5) {
      target = e.position;
      break;
    }
  uint64_t start = 0, seq = 0;
  {
    auto log = event_log::open(d.path(), opts());
    ASSERT_OK(log);
    retention_policy p;
    p.before = position{target};
    auto dry = log.value()->retain(p, true);
    ASSERT_OK(dry);
    EXPECT_EQ(dry.value().segments_removed, 5u);
    EXPECT_TRUE(fs::exists(segment_path(d.path(), 0)));  // a dry run changes nothing
    EXPECT_FALSE(fs::exists(d.sub("start")));
    auto r = log.value()->retain(p);
    ASSERT_OK(r);
    EXPECT_EQ(r.value().segments_removed, 5u);
    EXPECT_EQ(r.value().bytes_removed, 5 * kSeg);
    EXPECT_EQ(r.value().first_segment, 5u);
    start = r.value().start.value;
    seq = r.value().first_sequence.value;
    EXPECT_EQ(start, 5 * kSeg + 64);
    EXPECT_EQ(r.value().events_removed, seq);
    for (uint64_t k = 0; k < 5; ++k) EXPECT_FALSE(fs::exists(segment_path(d.path(), k))) << k;
    EXPECT_TRUE(fs::exists(segment_path(d.path(), 5)));
    EXPECT_EQ(log.value()->stats().start.value, start);
    check_reads(*log.value(), m, start, seq);
    // Retaining again with the same policy removes nothing more.
    auto again = log.value()->retain(p);
    ASSERT_OK(again);
    EXPECT_EQ(again.value().segments_removed, 0u);
    EXPECT_EQ(again.value().start.value, start);
    // Appends go on; the versions of a stream whose events all went go on too.
    event_data e;
    e.payload = event_data::bytes("after");
    auto a = log.value()->append(stream_id("early"), expected_version::exact(20), e);
    ASSERT_OK(a);
    EXPECT_EQ(a.value().first_version, 21u);
    EXPECT_OK(log.value()->close());
  }
  // Reopened (writer, then read-only): the same start, the same reads.
  std::vector<model_event> m2 = m;
  {
    auto log = event_log::open(d.path(), opts());
    ASSERT_OK(log);
    EXPECT_EQ(log.value()->stats().start.value, start);
    EXPECT_EQ(log.value()->version_of(stream_id("early")), 21u);
    event_data e;
    e.payload = event_data::bytes("x");
    auto refused = log.value()->append(stream_id("early"), expected_version::no_stream(), e);
    EXPECT_EQ(code_of(refused), errc::wrong_expected_version) << describe(refused);
    EXPECT_OK(log.value()->close());
  }
  {
    auto ro = event_log::open_read_only(d.path(), opts());
    ASSERT_OK(ro);
    auto all = read_from_start(*ro.value());
    ASSERT_FALSE(all.empty());
    EXPECT_EQ(all.front().position, start);
    EXPECT_EQ(all.front().seq, seq);
    EXPECT_EQ(all.size(), kept(m, start).size() + 1);
  }
  auto v = verify_log(d.path());
  ASSERT_OK(v);
  EXPECT_OK(v.value().first_problem);
  auto st = stat_log(d.path());
  ASSERT_OK(st);
  EXPECT_EQ(st.value().start.value, start);
  EXPECT_EQ(st.value().segments, 4u);  // 5, 6, 7, 8
  // The derived files checked and rebuilt from what is left: the heads of
  // the stream whose events all went come from the checkpoint past the start.
  auto iv = verify_index(d.path());
  ASSERT_OK(iv);
  EXPECT_TRUE(iv.value().problems.empty()) << describe(iv.value().problems.front());
  ASSERT_OK(rebuild_index(d.path()));
  auto iv2 = verify_index(d.path());
  ASSERT_OK(iv2);
  EXPECT_TRUE(iv2.value().problems.empty()) << describe(iv2.value().problems.front());
  auto again = event_log::open(d.path(), opts());
  ASSERT_OK(again);
  EXPECT_EQ(again.value()->version_of(stream_id("early")), 21u);
}

TEST(Retention, ByteAndAgeLimitsHeldBackByTheNewestCheckpoint) {
  temp_dir d;
  const uint64_t t0 = 1'000'000'000'000;
  const auto m = fill(d.path(), 10, t0);
  ASSERT_FALSE(HasFailure());
  auto log = event_log::open(d.path(), opts());
  ASSERT_OK(log);
  // At most 6 segments' worth of files: 0 to 4 go (5..10 stay: 6 files).
  retention_policy by_size;
  by_size.max_bytes = 6 * kSeg + kSeg / 2;
  auto r = log.value()->retain(by_size);
  ASSERT_OK(r);
  EXPECT_EQ(r.value().first_segment, 5u);
  EXPECT_TRUE(r.value().held_back.empty()) << r.value().held_back;
  // By age: segments whose newest event is older than the event at the start
  // of segment 7 (its timestamp minus one ms): 5 and 6 go.
  uint64_t t7 = 0;
  for (const model_event& e : m)
    if (e.position / kSeg == 7) {
      t7 = e.timestamp;
      break;
    }
  const uint64_t now = m.back().timestamp + 1;
  retention_policy by_age;
  by_age.max_age_ns = now - (t7 - 1);
  // The log's clock is the wall clock; the events' times are in 1970: give
  // an age measured from now such that the same cut results.
  const uint64_t wall = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                  std::chrono::system_clock::now().time_since_epoch())
                                                  .count());
  by_age.max_age_ns = wall - (t7 - 1);
  auto a = log.value()->retain(by_age);
  ASSERT_OK(a);
  EXPECT_EQ(a.value().first_segment, 7u);
  check_reads(*log.value(), m, a.value().start.value, a.value().first_sequence.value);
  // Everything before the end: held back at the newest checkpoint (the last
  // sealed segment stays, so its checkpoint can rebuild the heads).
  retention_policy all;
  all.before = log.value()->committed_position();
  auto h = log.value()->retain(all);
  ASSERT_OK(h);
  EXPECT_EQ(h.value().first_segment, 9u);
  EXPECT_FALSE(h.value().held_back.empty());
  EXPECT_NE(h.value().held_back.find("checkpoint"), std::string::npos) << h.value().held_back;
  EXPECT_OK(log.value()->close());
  auto again = event_log::open(d.path(), opts());
  ASSERT_OK(again);
  EXPECT_EQ(again.value()->version_of(stream_id("early")), 20u);
  EXPECT_EQ(read_from_start(*again.value()).size(), kept(m, h.value().start.value).size());
}

TEST(Retention, AnInterruptedPassIsFinishedByTheNextOpen) {
  temp_dir d;
  const auto m = fill(d.path(), 6);
  ASSERT_FALSE(HasFailure());
  // The crash came after DIR/start was durable, before any file went.
  uint64_t seq3 = 0;
  for (const model_event& e : m)
    if (e.position / kSeg == 3) {
      seq3 = e.seq;
      break;
    }
  {
    std::ifstream f(d.sub("varve.meta"), std::ios::binary);
    std::vector<char> b((std::istreambuf_iterator<char>(f)), {});
    ASSERT_GE(b.size(), 24u);
    uint64_t log_id;
    std::memcpy(&log_id, b.data() + 16, 8);
    ASSERT_OK(start_file::write(*posix_file_system(), d.path(), {log_id, 3, seq3, 1}));
  }
  // Readers already honour it (read-only: the files below are ignored).
  {
    auto ro = event_log::open_read_only(d.path());
    ASSERT_OK(ro);
    auto all = read_from_start(*ro.value());
    ASSERT_FALSE(all.empty());
    EXPECT_EQ(all.front().seq, seq3);
    auto v = verify_log(d.path());
    ASSERT_OK(v);
    EXPECT_OK(v.value().first_problem);
  }
  struct seen : recovery_observer {
    std::vector<std::string> whys;
    void on_truncated(const std::string&, uint64_t, uint64_t, const std::string&) override {}
    void on_action(const recovery_action& a) override { whys.push_back(a.file + ": " + a.why); }
  } obs;
  log_options o = opts();
  o.observer = &obs;
  auto log = event_log::open(d.path(), o);
  ASSERT_OK(log);
  for (uint64_t k = 0; k < 3; ++k) EXPECT_FALSE(fs::exists(segment_path(d.path(), k))) << k;
  size_t reported = 0;
  for (const std::string& w : obs.whys) reported += w.find("below the log's start") != std::string::npos;
  EXPECT_EQ(reported, 3u);
  check_reads(*log.value(), m, 3 * kSeg + 64, seq3);
}

TEST(Retention, AMissingStartSegmentOrADamagedStartRecordIsRefused) {
  temp_dir d;
  const auto m = fill(d.path(), 6);
  ASSERT_FALSE(HasFailure());
  {
    auto log = event_log::open(d.path(), opts());
    ASSERT_OK(log);
    retention_policy p;
    p.before = position{3 * kSeg + 64};
    auto r = log.value()->retain(p);
    ASSERT_OK(r);
    ASSERT_EQ(r.value().first_segment, 3u);
    EXPECT_OK(log.value()->close());
  }
  // The start record damaged: refused, naming it; nothing changed.
  flip_byte(d.sub("start"), 30);
  {
    auto log = event_log::open(d.path(), opts());
    ASSERT_FALSE(log.ok());
    EXPECT_EQ(log.error().code(), errc::corruption);
    EXPECT_NE(log.error().message().find("start offset 56"), std::string::npos) << log.error().message();
    auto ro = event_log::open_read_only(d.path());
    EXPECT_EQ(code_of(ro), errc::corruption) << describe(ro);
  }
  flip_byte(d.sub("start"), 30);  // back
  // The start segment missing: refused, naming it.
  fs::rename(segment_path(d.path(), 3), d.sub("aside"));
  {
    auto log = event_log::open(d.path(), opts());
    ASSERT_FALSE(log.ok());
    EXPECT_EQ(log.error().code(), errc::corruption);
    EXPECT_NE(log.error().message().find(segment_file_name(3)), std::string::npos) << log.error().message();
    EXPECT_TRUE(fs::exists(segment_path(d.path(), 4)));
    auto v = verify_log(d.path());
    ASSERT_OK(v);
    EXPECT_EQ(v.value().first_problem.code(), errc::corruption);
  }
  fs::rename(d.sub("aside"), segment_path(d.path(), 3));
  {
    auto log = event_log::open(d.path(), opts());
    ASSERT_OK(log);
  }
  // `varve recover` of a healthy retained log finds nothing to do (it checks
  // the sealed segments from the start, against its sequence).
  for (recovery_mode mode : {recovery_mode::point_in_time, recovery_mode::skip_damaged}) {
    repair_options ro;
    ro.mode = mode;
    auto rep = repair_log(d.path(), ro);
    ASSERT_OK(rep);
    EXPECT_FALSE(rep.value().damaged);
    EXPECT_EQ(rep.value().events_after, kept(m, 3 * kSeg + 64).size());
  }
  // A damaged start record: the repair rebuilds it from the oldest segment
  // file (sealed: its footer has the sequence), keeping the damaged bytes.
  flip_byte(d.sub("start"), 30);
  repair_options dry;
  dry.dry_run = true;
  auto planned = repair_log(d.path(), dry);
  ASSERT_OK(planned);
  EXPECT_TRUE(planned.value().damaged);
  auto rep = repair_log(d.path(), {});
  ASSERT_OK(rep);
  bool rebuilt = false;
  for (const recovery_action& a : rep.value().actions)
    rebuilt |= a.what == recovery_action::kind::rebuilt && a.file == d.sub("start") && !a.kept_at.empty();
  EXPECT_TRUE(rebuilt);
  EXPECT_TRUE(fs::exists(d.sub("lost+found/start.at-00000000000000000000")));
  auto log = event_log::open(d.path(), opts());
  ASSERT_OK(log);
  EXPECT_EQ(log.value()->stats().start.value, 3 * kSeg + 64);
  EXPECT_EQ(read_from_start(*log.value()).size(), kept(m, 3 * kSeg + 64).size());
  EXPECT_EQ(log.value()->version_of(stream_id("early")), 20u);
}

TEST(Retention, ReadersInThisAndOtherProcessesMeetTheNewStart) {
  temp_dir d;
  const auto m = fill(d.path(), 6);
  ASSERT_FALSE(HasFailure());
  auto log = event_log::open(d.path(), opts());
  ASSERT_OK(log);
  // A follower (read-only handle: another process's view) and a reader of
  // the writer's own log, both part way through segment 1.
  auto ro = event_log::open_read_only(d.path());
  ASSERT_OK(ro);
  uint64_t in1 = 0;
  for (const model_event& e : m)
    if (e.position / kSeg == 1) {
      in1 = e.position;
      break;
    }
  log_reader mine = log.value()->read(position{in1});
  log_reader theirs = ro.value()->read(position{in1});
  event_view v;
  ASSERT_OK(mine.next(v));
  ASSERT_OK(theirs.next(v));
  retention_policy p;
  p.before = position{4 * kSeg + 64};
  auto r = log.value()->retain(p);
  ASSERT_OK(r);
  ASSERT_EQ(r.value().first_segment, 4u);
  // Both finish segment 1 (mapped before it went: the bytes stay valid),
  // then meet the removed error at segment 2, never garbage.
  for (log_reader* rd : {&mine, &theirs}) {
    status end;
    while (true) {
      auto more = rd->next(v);
      if (!more) {
        end = more.error();
        break;
      }
      ASSERT_TRUE(more.value());
      EXPECT_EQ(v.position.value / kSeg, 1u);
    }
    EXPECT_EQ(end.code(), errc::removed) << describe(end);
    EXPECT_NE(end.message().find("starts at position " + std::to_string(r.value().start.value)), std::string::npos);
  }
  // A new reader from the beginning on the old read-only handle starts at
  // the new start once it meets the missing file.
  auto all = read_from_start(*ro.value());
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front().position, r.value().start.value);
  // A stream read on the old handle that needs a removed version.
  auto sr = ro.value()->read_stream(stream_id(rr_stream(5)), 1);
  if (sr) {
    auto n = sr.value().next(v);
    EXPECT_EQ(code_of(n), errc::removed) << describe(n);
  } else {
    EXPECT_EQ(sr.error().code(), errc::removed) << describe(sr);
  }
}

TEST(Retention, ReadOnlyLogsCannotRetainAndAnEmptyPolicyRemovesNothing) {
  temp_dir d;
  fill(d.path(), 3);
  ASSERT_FALSE(HasFailure());
  auto ro = event_log::open_read_only(d.path());
  ASSERT_OK(ro);
  retention_policy p;
  p.before = position{UINT64_MAX - 1};
  EXPECT_EQ(code_of(ro.value()->retain(p)), errc::read_only);
  auto log = event_log::open(d.path(), opts());
  ASSERT_OK(log);
  auto r = log.value()->retain(retention_policy{});
  ASSERT_OK(r);
  EXPECT_EQ(r.value().segments_removed, 0u);
  EXPECT_EQ(r.value().start.value, 0u);
  EXPECT_FALSE(fs::exists(d.sub("start")));
}

// Mappings of this process onto files of `dir` that were unlinked: the
// disk space they hold has not returned.
size_t deleted_mappings(const std::string& dir) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  size_t n = 0;
  while (std::getline(maps, line))
    if (line.find(dir + "/") != std::string::npos && line.find(".seg (deleted)") != std::string::npos) ++n;
  return n;
}

TEST(Retention, TheBackgroundPolicyRemovesAsTheLogGrowsAndTheSpaceReturnsAfterTheGrace) {
  temp_dir d;
  log_options o = opts();
  o.retention.max_bytes = 3 * kSeg;
  o.retention_interval = std::chrono::milliseconds(5);
  o.retention_grace = std::chrono::milliseconds(0);
  auto log = event_log::create(d.path(), o);
  ASSERT_OK(log);
  std::vector<std::byte> payload(400, std::byte{0x17});
  event_data e;
  e.payload = payload;
  uint64_t n = 0;
  // A reader inside segment 0 from the start: it must end with the removed
  // error (never a zero page taken for damage, never garbage).
  log_reader early = log.value()->read();
  while (log.value()->committed_position().value / kSeg < 12) {
    ASSERT_OK(log.value()->append(stream_id::from_u64(n % 5), expected_version::any(), e));
    ++n;
  }
  event_view v;
  ASSERT_OK(early.next(v));
  // The sealer applies the policy after each seal: wait for it to catch up
  // (the start moves before the files go: wait for both).
  for (int i = 0; i < 500 && (log.value()->stats().start.value / kSeg < 9 || deleted_mappings(d.path()) > 0 ||
                              list_segments(d.path()).size() > 6);
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const log_stats st = log.value()->stats();
  EXPECT_GE(st.start.value / kSeg, 9u) << "start " << st.start.value;
  EXPECT_LE(list_segments(d.path()).size(), 4u + 2u);  // 3 segments' worth, the active one, prepared ones
  EXPECT_EQ(deleted_mappings(d.path()), 0u);  // grace 0: every removed segment's pages dropped
  // To ThreadSanitizer the mmap of zero pages over the segment is a write,
  // and the reader below reads those pages: the kernel swaps pages
  // atomically and zeros never validate (the point of the design), but TSan
  // cannot see that. A pass of our own (a dry run) takes the retention mutex
  // the sealer dropped the pages under, ordering the two for it.
  ASSERT_OK(log.value()->retain(o.retention, true));
  status end;
  while (true) {
    auto more = early.next(v);
    if (!more) {
      end = more.error();
      break;
    }
    ASSERT_TRUE(more.value());
  }
  EXPECT_EQ(end.code(), errc::removed) << describe(end);
  auto all = read_from_start(*log.value());
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front().position, log.value()->stats().start.value);
  EXPECT_EQ(all.back().seq + 1, n);
  EXPECT_OK(log.value()->close());
}

TEST(Retention, AReaderProcessLearnsTheStartFromTheDoorbellAndLetsGoOfTheSpace) {
  temp_dir d;
  const auto m = fill(d.path(), 6);
  ASSERT_FALSE(HasFailure());
  log_options o = opts();
  o.retention_grace = std::chrono::milliseconds(0);
  auto log = event_log::open(d.path(), o);
  ASSERT_OK(log);
  // A follower (another process's view) that has read everything: it maps
  // every segment.
  auto ro = event_log::open_read_only(d.path(), o);
  ASSERT_OK(ro);
  log_reader tail = ro.value()->read();
  event_view v;
  uint64_t n = 0;
  while (true) {
    auto more = tail.next(v);
    ASSERT_OK(more);
    if (!more.value()) break;
    ++n;
  }
  ASSERT_EQ(n, m.size());
  retention_policy p;
  p.before = position{4 * kSeg + 64};
  auto r = log.value()->retain(p);
  ASSERT_OK(r);
  ASSERT_EQ(r.value().first_segment, 4u);
  // The writer let go of its pages at once (grace 0); the follower still
  // holds segments 0-3 until it takes a step.
  EXPECT_EQ(deleted_mappings(d.path()), 4u);
  // Its tailing reader, at the end, takes a slow step: the doorbell in the
  // control block tells it the start moved; it re-reads DIR/start and drops
  // the removed segments' pages.
  auto more = tail.next(v);
  ASSERT_OK(more);
  EXPECT_FALSE(more.value());
  EXPECT_EQ(ro.value()->stats().start.value, r.value().start.value);
  EXPECT_EQ(deleted_mappings(d.path()), 0u);
  // A new reader from the beginning starts at the start, without meeting
  // a missing file first.
  auto all = read_from_start(*ro.value());
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front().position, r.value().start.value);
}

TEST(Retention, ViewsStayValidThroughTheGracePeriod) {
  temp_dir d;
  const auto m = fill(d.path(), 5);
  ASSERT_FALSE(HasFailure());
  auto log = event_log::open(d.path(), opts());  // default grace: a minute
  ASSERT_OK(log);
  log_reader r = log.value()->read();
  event_view v;
  ASSERT_OK(r.next(v));
  const std::byte* payload = v.payload.data();
  std::vector<std::byte> copy(v.payload.begin(), v.payload.end());
  retention_policy p;
  p.before = position{3 * kSeg + 64};
  ASSERT_OK(log.value()->retain(p));
  EXPECT_GE(deleted_mappings(d.path()), 1u);  // still mapped: the view is valid
  EXPECT_EQ(std::memcmp(payload, copy.data(), copy.size()), 0);
}

}  // namespace

// Power loss at every file-system step of a retention pass (and, for each,
// several random write-back states): the log opens, starts at the old start
// or the new one and nowhere else, reads back exactly the model's suffix
// from there, keeps the heads of streams whose events all went, and
// verifies. Seeds are fixed and printed on failure.
TEST(Retention, PowerLossAtEveryStepOfAPass) {
  temp_dir d;
  const std::string dir = d.sub("log");
  const auto m = fill(dir, 6);
  ASSERT_FALSE(HasFailure());
  auto pfs = std::make_shared<power_loss_file_system>();
  log_options o = opts();
  o.fs = pfs;
  auto log = event_log::open(dir, o);
  ASSERT_OK(log);
  std::vector<std::pair<std::string, std::string>> images;  // (image dir, the step it follows)
  constexpr int kSeedsPerStep = 3;
  std::mutex images_mu;  // the hook runs on the writer's and the background's threads
  pfs->set_hook([&](const char* op, const std::string& path) {
    std::lock_guard<std::mutex> g(images_mu);
    for (int s = 0; s < kSeedsPerStep; ++s) {
      const std::string image = d.sub("image-" + std::to_string(images.size()));
      const uint64_t seed = 1000 + images.size();
      status st = pfs->crash(dir, image, seed);
      EXPECT_TRUE(st.ok()) << describe(st);
      images.push_back({image, std::string(op) + " " + path + " seed " + std::to_string(seed)});
    }
  });
  retention_policy p;
  p.before = position{4 * kSeg + 64};
  auto r = log.value()->retain(p);
  pfs->set_hook(nullptr);
  ASSERT_OK(r);
  ASSERT_EQ(r.value().first_segment, 4u);
  const uint64_t new_start = r.value().start.value;
  ASSERT_GE(images.size(), 6u * kSeedsPerStep);  // the record's write, sync, rename, dir sync; removals
  size_t at_new = 0;
  for (const auto& [image, step] : images) {
    SCOPED_TRACE("power lost after " + step + " (" + image + ")");
    // The writer's open first: it finishes what the crash interrupted (the
    // pass, and the background's preparation of segments ahead).
    auto reopened = event_log::open(image, opts());
    ASSERT_OK(reopened);
    auto all = read_from_start(*reopened.value());
    ASSERT_FALSE(all.empty());
    const uint64_t start = all.front().position;
    EXPECT_TRUE(start == m.front().position || start == new_start) << start;
    at_new += start == new_start;
    expect_same(all, kept(m, start));
    EXPECT_EQ(reopened.value()->version_of(stream_id("early")), 20u);
    // After the open, nothing below the start is left on disk.
    for (uint64_t k = 0; k < start / kSeg; ++k) EXPECT_FALSE(fs::exists(segment_path(image, k))) << k;
    ASSERT_OK(reopened.value()->close());
    auto v = verify_log(image);
    ASSERT_OK(v);
    EXPECT_OK(v.value().first_problem);
  }
  EXPECT_GT(at_new, 0u);
  EXPECT_LT(at_new, images.size());
}
