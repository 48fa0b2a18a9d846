// Stream lifecycle (varve/lifecycle.h, DESIGN "Stream lifecycle", FORMAT
// 5e): delete, truncate, max_count and max_age against a model, in every
// read path (stream reads both ways, log reads, replay), in this open and in
// another (a follower with its own control-block view), across reopens;
// appends to a deleted stream refused; DIR/streams damage named by offset,
// a torn last change cut; a change under power loss at every sync it makes.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <sys/stat.h>

#include "engine/io/power_loss_file_system.h"
#include "reboot.h"
#include "test_util.h"
#include "varve/varve.h"

using namespace varve;
using namespace varve_test;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

// stream -> versions seen
using seen = std::map<std::string, std::set<uint64_t>>;

std::atomic<uint64_t> fake_now{1'000 * kSec};

log_options opts(bool fake_clock = false) {
  log_options o;
  o.segment_bytes = 64 * 1024;
  if (fake_clock) o.clock = [] { return fake_now.load(); };
  return o;
}

result<append_result> put(event_log& log, const std::string& stream) {
  const std::string p = "{\"n\":\"" + stream + "\"}";
  event_data e;
  e.type = 3;
  e.payload = event_data::bytes(p);
  return log.append(stream_id(std::string_view(stream)), expected_version::any(), e);
}

seen log_read(const event_log& log) {
  seen out;
  auto r = log.read(position{0});
  event_view v;
  for (;;) {
    auto got = r.next(v);
    EXPECT_TRUE(got.ok()) << describe(got);
    if (!got.ok() || !got.value()) break;
    out[std::string(v.stream)].insert(v.version);
  }
  return out;
}

result<std::vector<uint64_t>> stream_read(const event_log& log, const std::string& s,
                                          read_direction d = read_direction::forward, stream_version from = 1) {
  auto rs = log.read_stream(stream_id(std::string_view(s)), d == read_direction::forward ? from : kLatestVersion, d);
  if (!rs) return rs.error();
  std::vector<uint64_t> out;
  event_view v;
  for (;;) {
    auto got = rs.value().next(v);
    if (!got) return got.error();
    if (!got.value()) break;
    out.push_back(v.version);
  }
  return out;
}

struct collect {
  seen* out;
  std::mutex* mu;
  void apply(const event_view& v) {
    std::lock_guard<std::mutex> g(*mu);
    (*out)[std::string(v.stream)].insert(v.version);
  }
};

struct collect_refs {
  seen* out;
  std::mutex* mu;
  void apply(const event_ref& r) {
    std::lock_guard<std::mutex> g(*mu);
    (*out)[std::string(r.stream())].insert(r.version());
  }
};

// Over views (2 threads) and over refs (1 and 2 threads): what lifecycle
// hides is hidden from both.
seen replay_all(const event_log& log) {
  seen out;
  std::mutex mu;
  auto r = replay(log).partitions(4).threads(2).run([&](uint32_t) { return collect{&out, &mu}; });
  EXPECT_TRUE(r) << describe(r.error);
  for (uint32_t threads : {1u, 2u}) {
    seen refs;
    auto rr = replay(log).partitions(4).threads(threads).run([&](uint32_t) { return collect_refs{&refs, &mu}; });
    EXPECT_TRUE(rr) << describe(rr.error);
    EXPECT_EQ(refs, out) << "over refs, " << threads << " thread(s)";
  }
  return out;
}

std::set<uint64_t> range(uint64_t from, uint64_t to) {
  std::set<uint64_t> s;
  for (uint64_t v = from; v <= to; ++v) s.insert(v);
  return s;
}

std::vector<uint64_t> seq(uint64_t from, uint64_t to) {
  std::vector<uint64_t> s;
  if (from <= to)
    for (uint64_t v = from; v <= to; ++v) s.push_back(v);
  else
    for (uint64_t v = from; v >= to; --v) s.push_back(v);
  return s;
}

// Enough events over several segments for the sealed-segment index paths.
void fill(event_log& log, const std::vector<std::string>& streams, uint64_t each) {
  for (uint64_t i = 0; i < each; ++i)
    for (const std::string& s : streams) ASSERT_OK(put(log, s));
}

TEST(Lifecycle, DeleteHidesTheStreamEverywhereAndRefusesAppendsForGood) {
  temp_dir d;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
  fill(*log, {"alice", "bob"}, 300);  // ~4 segments: sealed ones are indexed
  ASSERT_OK_AND_ASSIGN(auto m, log->delete_stream("alice"));
  EXPECT_TRUE(m.deleted);
  ASSERT_ERRC(stream_read(*log, "alice"), errc::stream_deleted);
  ASSERT_ERRC(stream_read(*log, "alice", read_direction::backward), errc::stream_deleted);
  const seen want{{"bob", range(1, 300)}};
  EXPECT_EQ(log_read(*log), want);
  EXPECT_EQ(replay_all(*log), want);
  // Appends of every kind are refused, and count nothing.
  ASSERT_ERRC(put(*log, "alice"), errc::stream_deleted);
  event_data e;
  e.payload = event_data::bytes("x");
  ASSERT_ERRC(log->append("alice", expected_version::exact(300), e), errc::stream_deleted);
  ASSERT_ERRC(log->append("alice", expected_version::no_stream(), e), errc::stream_deleted);
  stream_batch both[2];
  both[0].stream = "bob";
  both[0].expected = expected_version::any();
  both[0].events = std::span<const event_data>(&e, 1);
  both[1].stream = "alice";
  both[1].expected = expected_version::any();
  both[1].events = std::span<const event_data>(&e, 1);
  ASSERT_ERRC(log->append(std::span<const stream_batch>(both, 2)), errc::stream_deleted);
  EXPECT_EQ(log->version_of("bob"), 300u) << "the refused unit of work wrote nothing";
  EXPECT_EQ(log->version_of("alice"), 300u) << "the version is kept: a tombstone, not a reset";
  // Other streams go on; deleting again changes nothing; no other change is taken.
  ASSERT_OK(put(*log, "bob"));
  ASSERT_OK(log->delete_stream("alice"));
  ASSERT_ERRC(log->truncate_stream("alice", 5), errc::stream_deleted);
  ASSERT_ERRC(log->set_stream_limits("alice", 3, 0), errc::stream_deleted);
  ASSERT_ERRC(log->delete_stream("nobody"), errc::not_found);
  ASSERT_OK_AND_ASSIGN(auto list, log->stream_metadata_list());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].stream, "alice");
  EXPECT_EQ(list[0].change_number, 1u);
  ASSERT_OK(log->close());

  // Kept across a reopen, by the writer and by a read-only open.
  ASSERT_OK_AND_ASSIGN(log, event_log::open(d.path(), opts()));
  ASSERT_ERRC(put(*log, "alice"), errc::stream_deleted);
  ASSERT_ERRC(stream_read(*log, "alice"), errc::stream_deleted);
  EXPECT_EQ(log_read(*log), (seen{{"bob", range(1, 301)}}));
  ASSERT_OK(log->close());
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(d.path(), opts()));
  ASSERT_ERRC(stream_read(*ro, "alice"), errc::stream_deleted);
  EXPECT_EQ(log_read(*ro), (seen{{"bob", range(1, 301)}}));
  EXPECT_EQ(replay_all(*ro), (seen{{"bob", range(1, 301)}}));
  ASSERT_ERRC(ro->delete_stream("bob"), errc::read_only);
}

TEST(Lifecycle, TruncateHidesTheVersionsBelowInEveryReadAndOnlyMovesForward) {
  temp_dir d;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
  fill(*log, {"s", "t"}, 200);
  ASSERT_OK(log->truncate_stream("s", 151));
  EXPECT_EQ(stream_read(*log, "s").value(), seq(151, 200));
  EXPECT_EQ(stream_read(*log, "s", read_direction::forward, 20).value(), seq(151, 200)) << "from below the floor";
  EXPECT_EQ(stream_read(*log, "s", read_direction::forward, 170).value(), seq(170, 200));
  EXPECT_EQ(stream_read(*log, "s", read_direction::backward).value(), seq(200, 151));
  const seen want{{"s", range(151, 200)}, {"t", range(1, 200)}};
  EXPECT_EQ(log_read(*log), want);
  EXPECT_EQ(replay_all(*log), want);
  // Bounds: not past the end + 1, never backward; equal changes nothing.
  ASSERT_ERRC(log->truncate_stream("s", 202), errc::invalid_argument);
  ASSERT_ERRC(log->truncate_stream("s", 100), errc::invalid_argument);
  ASSERT_ERRC(log->truncate_stream("nobody", 1), errc::not_found);
  ASSERT_OK(log->truncate_stream("s", 151));
  ASSERT_EQ(log->stream_metadata_list().value().size(), 1u);
  // Everything hidden; the stream goes on from its version.
  ASSERT_OK(log->truncate_stream("s", 201));
  EXPECT_EQ(stream_read(*log, "s").value(), std::vector<uint64_t>{});
  ASSERT_OK(put(*log, "s"));
  EXPECT_EQ(stream_read(*log, "s").value(), seq(201, 201));
  EXPECT_EQ(stream_read(*log, "s", read_direction::backward).value(), seq(201, 201));
  ASSERT_OK(log->close());
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(d.path(), opts()));
  EXPECT_EQ(stream_read(*ro, "s").value(), seq(201, 201));
  EXPECT_EQ(ro->stream_metadata_of("s").value().truncate_before, 201u);
  EXPECT_EQ(log_read(*ro), (seen{{"s", range(201, 201)}, {"t", range(1, 200)}}));
}

TEST(Lifecycle, MaxCountKeepsTheNewestInStreamReadsAndMaxAgeHidesByTimestamp) {
  temp_dir d;
  fake_now = 1'000 * kSec;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts(true)));
  for (int i = 0; i < 100; ++i) {
    fake_now += kSec;  // event v of "old" at 1000 + v seconds
    ASSERT_OK(put(*log, "old"));
    ASSERT_OK(put(*log, "counted"));
  }
  ASSERT_OK(log->set_stream_limits("counted", 10, 0));
  EXPECT_EQ(stream_read(*log, "counted").value(), seq(91, 100));
  EXPECT_EQ(stream_read(*log, "counted", read_direction::backward).value(), seq(100, 91));
  ASSERT_OK(put(*log, "counted"));
  EXPECT_EQ(stream_read(*log, "counted").value(), seq(92, 101)) << "the window moves with the stream";
  // Log reads do not apply max_count (documented).
  EXPECT_EQ(log_read(*log)["counted"], range(1, 101));

  // Now 1100 s; keep 30 s: versions 70.. are at 1070.. and stay.
  ASSERT_OK(log->set_stream_limits("old", 0, 30 * kSec));
  EXPECT_EQ(stream_read(*log, "old").value(), seq(70, 100));
  EXPECT_EQ(stream_read(*log, "old", read_direction::backward).value(), seq(100, 70));
  EXPECT_EQ(log_read(*log)["old"], range(70, 100));
  EXPECT_EQ(replay_all(*log)["old"], range(70, 100));
  fake_now += 20 * kSec;  // time alone moves the limit: 1120 s
  EXPECT_EQ(stream_read(*log, "old").value(), seq(90, 100));
  EXPECT_EQ(log_read(*log)["old"], range(90, 100));
  // Limits replaced, then lifted: everything is back (nothing was scavenged).
  ASSERT_OK(log->set_stream_limits("old", 5, 0));
  EXPECT_EQ(stream_read(*log, "old").value(), seq(96, 100));
  EXPECT_EQ(log_read(*log)["old"], range(1, 100));
  ASSERT_OK(log->set_stream_limits("old", 0, 0));
  EXPECT_EQ(stream_read(*log, "old").value(), seq(1, 100));
  ASSERT_OK_AND_ASSIGN(auto list, log->stream_metadata_list());
  ASSERT_EQ(list.size(), 1u) << "a stream whose metadata is cleared has no entry";
  EXPECT_EQ(list[0].stream, "counted");
  // Limits on a stream that does not exist yet apply from its first event.
  ASSERT_OK(log->set_stream_limits("future", 2, 0));
  for (int i = 0; i < 5; ++i) ASSERT_OK(put(*log, "future"));
  EXPECT_EQ(stream_read(*log, "future").value(), seq(4, 5));
}

// A follower (its own open: another process's view, through the control
// block's doorbell and its own read of DIR/streams) sees each change at its
// readers' next slow step, and new readers see it at once.
TEST(Lifecycle, AnotherOpenSeesEachChangeAtItsNextStep) {
  temp_dir d;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
  fill(*log, {"a", "b"}, 50);
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(d.path(), opts()));
  EXPECT_EQ(log_read(*ro), (seen{{"a", range(1, 50)}, {"b", range(1, 50)}}));
  auto follower = ro->read(position{0});
  event_view v;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(follower.next(v).value());
  ASSERT_FALSE(follower.next(v).value());
  ASSERT_OK(log->delete_stream("a"));
  ASSERT_OK(log->truncate_stream("b", 41));
  EXPECT_EQ(log_read(*ro), (seen{{"b", range(41, 50)}}));
  ASSERT_ERRC(stream_read(*ro, "a"), errc::stream_deleted);
  EXPECT_EQ(stream_read(*ro, "b").value(), seq(41, 50));
  EXPECT_TRUE(ro->stream_metadata_of("a").value().deleted);
  // The follower, at the end, takes the new view with its next step.
  fill(*log, {"a_not", "b"}, 1);
  ASSERT_ERRC(put(*log, "a"), errc::stream_deleted);
  std::vector<std::string> got;
  for (;;) {
    auto r = follower.next(v);
    ASSERT_OK(r);
    if (!r.value()) break;
    got.push_back(std::string(v.stream) + "@" + std::to_string(v.version));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"a_not@1", "b@51"}));
}

// DIR/streams: damage before the last change is an error naming the file and
// offset (nothing hidden is shown instead); a torn last change (never
// acknowledged) is left out, and the next change follows the last whole one.
TEST(Lifecycle, ADamagedJournalIsRefusedByOffsetAndATornLastChangeIsCut) {
  temp_dir d;
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
    fill(*log, {"a", "b", "c"}, 10);
    ASSERT_OK(log->delete_stream("a"));
    ASSERT_OK(log->truncate_stream("b", 5));
    ASSERT_OK(log->close());
  }
  const std::string path = d.path() + "/streams";
  const auto size = std::filesystem::file_size(path);
  ASSERT_EQ(size, 64u + 2 * 80u);  // header, two entries of 72 + a 1-byte id
  // Torn: the second change half there.
  std::filesystem::resize_file(path, size - 30);
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::open(d.path(), opts()));
    EXPECT_EQ(stream_read(*log, "b").value(), seq(1, 10)) << "the torn change is not applied";
    ASSERT_ERRC(stream_read(*log, "a"), errc::stream_deleted);
    ASSERT_OK(log->truncate_stream("c", 3));
    ASSERT_OK(log->close());
  }
  EXPECT_EQ(std::filesystem::file_size(path), 64u + 2 * 80u) << "the torn bytes were replaced";
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(d.path(), opts()));
  EXPECT_EQ(stream_read(*ro, "c").value(), seq(3, 10));
  ro.reset();
  // Damage in the first (not last) entry: refused, by offset, by every open.
  flip_byte(path, 64 + 30);
  auto bad = event_log::open(d.path(), opts());
  ASSERT_ERRC(bad, errc::corruption);
  EXPECT_NE(bad.error().message().find("streams offset 64"), std::string::npos) << bad.error().message();
  ASSERT_ERRC(event_log::open_read_only(d.path(), opts()), errc::corruption);
  flip_byte(path, 64 + 30);
  // The header, too.
  flip_byte(path, 3);
  ASSERT_ERRC(event_log::open(d.path(), opts()), errc::corruption);
}

// Power loss during a change, at every write and sync it makes (the log's
// flush, the journal's creation, the entry, its sync): every crashed copy
// opens with the change wholly there or wholly absent, and once the call
// returned, there. Mode none: the truncation's flush makes the versions it
// names durable first, so no copy has the floor above its stream's end.
TEST(Lifecycle, AChangeUnderPowerLossIsWhollyThereOrAbsent) {
  temp_dir root;
  const std::string dir = root.path() + "/log";
  auto fs = std::make_shared<power_loss_file_system>();
  log_options o = opts();
  o.fs = fs;
  o.mode = durability::none;
  ASSERT_OK(fs->create_dir(dir));
  ASSERT_OK(fs->sync_dir(root.path()));
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, o));
  fill(*log, {"a", "b"}, 40);
  ASSERT_OK(log->flush());
  fill(*log, {"a", "b"}, 20);  // not durable yet: the change's flush makes it so
  std::atomic<bool> changing{false};
  std::vector<std::string> copies;
  uint64_t seed = 7000;
  std::mutex hook_mu;
  fs->set_hook([&](const char*, const std::string&) {
    if (!changing.load()) return;
    std::lock_guard<std::mutex> g(hook_mu);
    for (int i = 0; i < 2; ++i) {
      const std::string out = root.path() + "/c" + std::to_string(copies.size());
      ASSERT_OK(fs->crash(dir, out, seed++));
      copies.push_back(out);
    }
  });
  changing = true;
  ASSERT_OK(log->truncate_stream("a", 55));
  ASSERT_OK(log->delete_stream("b"));
  std::unique_lock<std::mutex> held(hook_mu);
  changing = false;
  const size_t during = copies.size();
  ASSERT_OK(fs->crash(dir, root.path() + "/after", seed++));
  held.unlock();
  ASSERT_GE(during, 6u);
  std::printf("lifecycle under power loss: %zu crashed copies, seeds 7000..%llu\n", during,
              static_cast<unsigned long long>(seed - 1));
  size_t none = 0, truncated = 0, both = 0;
  auto check = [&](const std::string& c, bool must_be_done) {
    ASSERT_OK_AND_ASSIGN(auto l, event_log::open(c, opts()));
    const uint64_t av = l->version_of("a");
    ASSERT_GE(av, 40u) << c;
    ASSERT_OK_AND_ASSIGN(auto meta_a, l->stream_metadata_of("a"));
    ASSERT_OK_AND_ASSIGN(auto meta_b, l->stream_metadata_of("b"));
    if (meta_a.truncate_before == 55) {
      ASSERT_EQ(av, 60u) << c << ": the truncation is durable but the events it names are not";
      EXPECT_EQ(stream_read(*l, "a").value(), seq(55, 60)) << c;
    } else {
      ASSERT_EQ(meta_a.truncate_before, 0u) << c;
      ASSERT_FALSE(meta_b.deleted) << c << ": the delete came after the truncation";
    }
    if (meta_b.deleted) {
      ASSERT_ERRC(stream_read(*l, "b"), errc::stream_deleted);
      ASSERT_ERRC(put(*l, "b"), errc::stream_deleted);
    } else {
      EXPECT_EQ(stream_read(*l, "b").value().size(), l->version_of("b")) << c;
    }
    if (must_be_done) {
      ASSERT_EQ(meta_a.truncate_before, 55u) << c;
      ASSERT_TRUE(meta_b.deleted) << c;
    }
    (meta_b.deleted ? both : meta_a.truncate_before ? truncated : none) += 1;
  };
  // Each image is what the disk held when the power went: opened after a
  // (simulated) reboot, so recovery does not take varve.ctl's committed
  // position, which only a process crash keeps, for acknowledged data.
  for (size_t i = 0; i < copies.size(); ++i) {
    simulated_reboot reboot(7000 + i);
    check(copies[i], false);
  }
  simulated_reboot reboot(6999);
  check(root.path() + "/after", true);
  std::printf("  neither %zu, truncated only %zu, both %zu\n", none, truncated, both);
  EXPECT_GT(none + truncated, 0u);
}

}  // namespace

namespace {

// Every visible event, as a log read gives it: position, sequence, stream,
// version, payload.
struct full_event {
  uint64_t position, sequence, version;
  std::string stream, payload;
  bool operator==(const full_event&) const = default;
};

std::vector<full_event> everything(const event_log& log) {
  std::vector<full_event> out;
  auto r = log.read(position{0});
  event_view v;
  for (;;) {
    auto got = r.next(v);
    EXPECT_TRUE(got.ok()) << describe(got);
    if (!got.ok() || !got.value()) break;
    out.push_back({v.position.value, v.sequence.value, v.version, std::string(v.stream),
                   std::string(reinterpret_cast<const char*>(v.payload.data()), v.payload.size())});
  }
  return out;
}

uint64_t blocks_in(const std::string& dir) {
  uint64_t b = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().filename().string().find(".seg") == std::string::npos) continue;
    struct stat st {};
    if (::stat(e.path().c_str(), &st) == 0) b += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return b;
}

bool segments_contain(const std::string& dir, const std::string& needle) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    const std::string b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (b.find(needle) != std::string::npos) return true;
  }
  return false;
}

result<append_result> put_sized(event_log& log, const std::string& stream, size_t bytes, const std::string& mark) {
  std::string p = mark;
  p.resize(bytes, '.');
  event_data e;
  e.type = 4;
  e.payload = event_data::bytes(p);
  return log.append(stream_id(std::string_view(stream)), expected_version::any(), e);
}

// Waits (10 s at most) until the sealer has sealed every segment below the
// active one: a scavenge's pass ends at the first segment without a footer.
void wait_sealed(event_log& log) {
  const uint64_t active = log.committed_position().value / (64 * 1024);
  for (int i = 0; i < 1000; ++i) {
    auto r = log.scavenge(true);
    ASSERT_OK(r);
    if (r.value().segments_examined >= active) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL() << "the sealer did not seal segments below " << active << " in 10 s";
}

// A log where "gone" has long runs of big events (whole 4 KiB blocks to give
// back) between "keep"'s, "t" 300 small ones, "old" 50 stamped long ago; every
// "gone" event is in a sealed segment.
void scavenge_fixture(event_log& log) {
  for (int i = 0; i < 400; ++i) {
    ASSERT_OK(put_sized(log, "gone", 900, "GONE-PAYLOAD"));
    if (i % 20 == 0) ASSERT_OK(put_sized(log, "keep", 100, "keep"));
    if (i % 8 == 0) ASSERT_OK(put_sized(log, "old", 60, "old"));
  }
  fake_now += 3600 * kSec;
  for (int i = 0; i < 300; ++i) {
    ASSERT_OK(put_sized(log, "t", 80, "t"));
    ASSERT_OK(put_sized(log, "keep", 300, "keep"));
  }
}

TEST(Lifecycle, ScavengeGivesBackHiddenEventsSpaceAndKeepsEveryVisibleEventWhereItWas) {
  temp_dir d;
  fake_now = 1'000 * kSec;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts(true)));
  scavenge_fixture(*log);
  ASSERT_OK(log->delete_stream("gone"));
  ASSERT_OK(log->truncate_stream("t", 201));
  ASSERT_OK(log->set_stream_limits("old", 0, 60 * kSec));  // all of "old" is an hour old
  ASSERT_OK(log->flush());
  ASSERT_NO_FATAL_FAILURE(wait_sealed(*log));
  const std::vector<full_event> before = everything(*log);
  const auto keep_before = stream_read(*log, "keep").value();
  const uint64_t blocks_before = blocks_in(d.path());

  ASSERT_OK_AND_ASSIGN(auto dry, log->scavenge(true));
  EXPECT_GT(dry.events_removed, 0u);
  EXPECT_EQ(dry.bytes_freed, 0u);
  EXPECT_EQ(blocks_in(d.path()), blocks_before) << "a dry run changes nothing";
  ASSERT_OK_AND_ASSIGN(auto res, log->scavenge());
  std::printf("scavenge: %llu segments examined, %llu rewritten, %llu events removed, %llu bytes freed\n",
              (unsigned long long)res.segments_examined, (unsigned long long)res.segments_rewritten,
              (unsigned long long)res.events_removed, (unsigned long long)res.bytes_freed);
  EXPECT_EQ(res.events_removed, dry.events_removed);
  EXPECT_EQ(res.events_removed, 400u + 200u + 50u) << "every hidden event lies in a sealed segment";
  EXPECT_GT(res.bytes_freed, 200u * 1024) << "400 runs of ~900-byte events free most of their blocks";
  EXPECT_FALSE(segments_contain(d.path(), "GONE-PAYLOAD")) << "a deleted stream's bytes are gone from the disk";
  // A second pass in this process reads the files as they are now: nothing left.
  ASSERT_OK_AND_ASSIGN(auto twice, log->scavenge());
  EXPECT_EQ(twice.events_removed, 0u);
  EXPECT_EQ(twice.segments_rewritten, 0u);
  // This process reads what it read (it keeps the old files mapped).
  EXPECT_EQ(everything(*log), before);
  // The floors were recorded: limits lifted, nothing scavenged comes back.
  EXPECT_EQ(log->stream_metadata_of("t").value().truncate_before, 201u);
  EXPECT_EQ(log->stream_metadata_of("old").value().truncate_before, 51u);
  ASSERT_OK(log->set_stream_limits("old", 0, 0));
  ASSERT_OK(log->close());

  // Reopened (the new files), and read-only: the same events at the same
  // positions and sequences; stream reads through the rebuilt indexes.
  ASSERT_OK_AND_ASSIGN(log, event_log::open(d.path(), opts(true)));
  EXPECT_EQ(everything(*log), before);
  EXPECT_EQ(stream_read(*log, "keep").value(), keep_before);
  EXPECT_EQ(stream_read(*log, "t").value(), seq(201, 300));
  EXPECT_EQ(stream_read(*log, "t", read_direction::backward).value(), seq(300, 201));
  EXPECT_EQ(stream_read(*log, "old").value(), std::vector<uint64_t>{});
  EXPECT_LT(blocks_in(d.path()), blocks_before);
  ASSERT_OK_AND_ASSIGN(auto again, log->scavenge());
  EXPECT_EQ(again.events_removed, 0u) << "nothing left to remove";
  // The streams go on from their versions.
  ASSERT_OK(put_sized(*log, "old", 10, "old"));
  EXPECT_EQ(log->version_of("old"), 51u);
  EXPECT_EQ(stream_read(*log, "old").value(), seq(51, 51));
  ASSERT_OK(log->close());
  ASSERT_OK_AND_ASSIGN(auto v, verify_log(d.path()));
  EXPECT_TRUE(v.first_problem.ok()) << v.first_problem.to_string();
  EXPECT_EQ(v.scavenged_events, res.events_removed);
  EXPECT_EQ(v.lost_events, res.events_removed) << "no repair hole";

  // Without head checkpoints the heads are rebuilt from the log, which no
  // longer holds "old"'s first 50: DIR/streams' floor keeps its version.
  for (const auto& e : std::filesystem::directory_iterator(d.path() + "/index"))
    if (e.path().extension() == ".heads") std::filesystem::remove(e.path());
  ASSERT_OK_AND_ASSIGN(log, event_log::open(d.path(), opts(true)));
  EXPECT_EQ(log->version_of("old"), 51u);
  ASSERT_OK(put_sized(*log, "old", 10, "old"));
  EXPECT_EQ(stream_read(*log, "old").value(), seq(51, 52));
  ASSERT_ERRC(put_sized(*log, "gone", 10, "x"), errc::stream_deleted);
}

TEST(Lifecycle, ScavengeRefusesAChainedLogAndRemovesOnlyWholeBatchesAndPrefixes) {
  {
    temp_dir d;
    log_options o = opts();
    o.tamper_evident_chain = true;
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), o));
    fill(*log, {"a"}, 500);
    ASSERT_OK(log->delete_stream("a"));
    ASSERT_ERRC(log->scavenge(), errc::invalid_argument);
  }
  temp_dir d;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
  // A multi-stream batch holding a hidden and a visible event stays whole.
  event_data e;
  e.payload = event_data::bytes("both");
  stream_batch both[2];
  both[0].stream = "x";
  both[0].expected = expected_version::any();
  both[0].events = std::span<const event_data>(&e, 1);
  both[1].stream = "y";
  both[1].expected = expected_version::any();
  both[1].events = std::span<const event_data>(&e, 1);
  ASSERT_OK(put(*log, "x"));                                   // x@1, alone: goes
  ASSERT_OK(log->append(std::span<const stream_batch>(both, 2)));  // x@2 with y@1: stays
  ASSERT_OK(put(*log, "x"));                                   // x@3: after a kept one
  fill(*log, {"filler"}, 1500);
  ASSERT_OK(log->truncate_stream("x", 4));
  ASSERT_OK(log->flush());
  ASSERT_NO_FATAL_FAILURE(wait_sealed(*log));
  ASSERT_OK_AND_ASSIGN(auto res, log->scavenge());
  EXPECT_EQ(res.events_removed, 1u) << "x@2 shares a batch with visible y@1; x@3 follows it";
  EXPECT_EQ(log->stream_metadata_of("x").value().truncate_before, 4u);
  ASSERT_OK(log->close());
  ASSERT_OK_AND_ASSIGN(log, event_log::open(d.path(), opts()));
  EXPECT_EQ(stream_read(*log, "y").value(), seq(1, 1));
  EXPECT_EQ(stream_read(*log, "x").value(), std::vector<uint64_t>{});
  ASSERT_OK_AND_ASSIGN(auto v, verify_log(d.path()));
  EXPECT_TRUE(v.first_problem.ok()) << v.first_problem.to_string();
  EXPECT_EQ(v.scavenged_events, 1u);
}

// Power loss at every write and sync a scavenge makes: every crashed copy
// opens and reads exactly the visible events it read before, at the same
// positions, and verifies.
TEST(Lifecycle, ScavengeUnderPowerLossKeepsEveryVisibleEvent) {
  temp_dir root;
  const std::string dir = root.path() + "/log";
  auto fs = std::make_shared<power_loss_file_system>();
  fake_now = 1'000 * kSec;
  log_options o = opts(true);
  o.fs = fs;
  o.mode = durability::sync;
  ASSERT_OK(fs->create_dir(dir));
  ASSERT_OK(fs->sync_dir(root.path()));
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, o));
  scavenge_fixture(*log);
  ASSERT_OK(log->delete_stream("gone"));
  ASSERT_OK(log->truncate_stream("t", 201));
  ASSERT_OK(log->set_stream_limits("old", 0, 60 * kSec));
  ASSERT_NO_FATAL_FAILURE(wait_sealed(*log));
  const std::vector<full_event> before = everything(*log);
  std::atomic<bool> scavenging{false};
  std::vector<std::string> copies;
  uint64_t seed = 9000;
  std::mutex hook_mu;
  uint64_t pwrites = 0;
  fs->set_hook([&](const char* op, const std::string&) {
    if (!scavenging.load()) return;
    std::lock_guard<std::mutex> g(hook_mu);
    // A run of pwrites into a .scavenge file changes nothing durable until
    // its datasync: one image in 8 of them (every other call gets one).
    if (std::strcmp(op, "pwrite") == 0 && pwrites++ % 8 != 0) return;
    const std::string out = root.path() + "/c" + std::to_string(copies.size());
    ASSERT_OK(fs->crash(dir, out, seed++));
    copies.push_back(out);
  });
  scavenging = true;
  ASSERT_OK_AND_ASSIGN(auto res, log->scavenge());
  std::unique_lock<std::mutex> held(hook_mu);
  scavenging = false;
  held.unlock();
  ASSERT_GT(res.segments_rewritten, 1u);
  ASSERT_GE(copies.size(), 5 * res.segments_rewritten);  // at least create, truncate, datasync, rename, sync_dir
  std::printf("scavenge under power loss: %zu crashed copies, seeds 9000..%llu\n", copies.size(),
              static_cast<unsigned long long>(seed - 1));
  ASSERT_OK(log->close());
  for (const std::string& c : copies) {
    SCOPED_TRACE(c);
    simulated_reboot reboot(seed++);  // a power loss: the page cache went too
    {
      ASSERT_OK_AND_ASSIGN(auto l, event_log::open(c, opts(true)));
      ASSERT_EQ(everything(*l), before);
      ASSERT_EQ(stream_read(*l, "t").value(), seq(201, 300));
      for (const auto& e : std::filesystem::directory_iterator(c))
        ASSERT_EQ(e.path().string().find(".scavenge"), std::string::npos) << "a leftover stays";
    }
    ASSERT_OK_AND_ASSIGN(auto v, verify_log(c));
    ASSERT_TRUE(v.first_problem.ok()) << v.first_problem.to_string();
  }
}

}  // namespace

namespace {

// A sum of the versions folded, and how many: a state that shows whether any
// event was left out.
struct sum_state {
  uint64_t sum = 0, count = 0;
};

std::vector<std::byte> bytes_of(const sum_state& s) {
  std::vector<std::byte> b(16);
  std::memcpy(b.data(), &s.sum, 8);
  std::memcpy(b.data() + 8, &s.count, 8);
  return b;
}

result<loaded<sum_state>> load_sum(const event_log& log, const snapshot_store& store, const char* stream) {
  return load_aggregate<sum_state>(
      log, store, stream, 1,
      [](std::span<const std::byte> b) -> result<sum_state> {
        sum_state s;
        if (b.size() != 16) return status(errc::corruption, "bad state");
        std::memcpy(&s.sum, b.data(), 8);
        std::memcpy(&s.count, b.data() + 8, 8);
        return s;
      },
      [](sum_state& s, const event_view& e) {
        s.sum += e.version;
        ++s.count;
      });
}

// load_aggregate on a truncated stream: a snapshot at the floor - 1 or above
// brings the whole state forward (and is not taken for stale when its own
// event is hidden); with none, errc::removed, never a state folded from the
// visible events alone.
TEST(Lifecycle, LoadAggregateUsesASnapshotCoveringTheTruncationOrRefuses) {
  temp_dir d;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
  fill(*log, {"acc", "bare"}, 100);
  ASSERT_OK_AND_ASSIGN(auto store, snapshot_store::open(*log));
  ASSERT_OK(store->save("acc", 60, 1, bytes_of({60 * 61 / 2, 60})));
  const sum_state whole{100 * 101 / 2, 100};
  ASSERT_OK(log->truncate_stream("acc", 61));  // the snapshot's own event is hidden now
  ASSERT_OK_AND_ASSIGN(auto l, load_sum(*log, *store, "acc"));
  EXPECT_TRUE(l.used_snapshot);
  EXPECT_EQ(l.snapshot_version, 60u);
  EXPECT_EQ(l.version, 100u);
  EXPECT_EQ(l.events_applied, 40u);
  EXPECT_EQ(l.state.sum, whole.sum);
  EXPECT_EQ(l.state.count, whole.count);
  EXPECT_EQ(l.snapshots_skipped, 0u) << "not taken for stale";
  // Past the snapshot: versions 61..79 are gone from its state's way.
  ASSERT_OK(log->truncate_stream("acc", 80));
  ASSERT_ERRC(load_sum(*log, *store, "acc"), errc::removed);
  // A snapshot at or past the floor: the usual path, anchor checked.
  ASSERT_OK(store->save("acc", 90, 1, bytes_of({90 * 91 / 2, 90})));
  ASSERT_OK_AND_ASSIGN(l, load_sum(*log, *store, "acc"));
  EXPECT_EQ(l.snapshot_version, 90u);
  EXPECT_EQ(l.state.sum, whole.sum);
  // No snapshot at all: refused, not a partial fold.
  ASSERT_OK(log->truncate_stream("bare", 50));
  ASSERT_ERRC(load_sum(*log, *store, "bare"), errc::removed);
  // Deleted: the stream's error.
  ASSERT_OK(log->delete_stream("acc"));
  ASSERT_ERRC(load_sum(*log, *store, "acc"), errc::stream_deleted);
}

}  // namespace
