// A real full disk: the test mounts a small tmpfs (8 MiB; it must run as root
// and be allowed to mount, else it is skipped with the reason, or fails with
// it under CI=true), fills it by
// appending, and checks that the append that does not fit fails with a clear
// error (errc::no_space, naming a file of the log), that nothing crashes (no
// SIGBUS: segments are fallocated before they are mapped), that every
// acknowledged event is still there (in the same log object and after a
// reopen), and that appends resume once space is freed.
//
// The "refuse writes after a failed sync" half of the contract is covered by
// fault_test.cc (FailedSync.*: sync, group and none modes), because a real
// full disk does not fail msync on tmpfs or on ext4 with fallocated blocks.
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;

constexpr uint64_t kSegment = 256 << 10;
constexpr uint64_t kFixedClock = 1'700'000'000'000'000'000ull;

// An 8 MiB tmpfs mounted for one test, or the reason there is none.
class small_fs {
 public:
  small_fs() {
    if (::geteuid() != 0) {
      why_ = "not root: cannot mount a small filesystem";
      return;
    }
    if (mount_point_.path().empty()) {
      why_ = "no temporary directory";
      return;
    }
    if (::mount("tmpfs", mount_point_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                "size=8m,mode=0700") != 0) {
      why_ = std::string("mount -t tmpfs -o size=8m: ") + std::strerror(errno) +
             " (needs CAP_SYS_ADMIN, e.g. not inside an unprivileged container)";
      return;
    }
    mounted_ = true;
  }
  ~small_fs() {
    if (mounted_) ::umount2(mount_point_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }
  std::string sub(const std::string& name) const { return mount_point_.sub(name); }

 private:
  temp_dir mount_point_;
  bool mounted_ = false;
  std::string why_;
};

// Writes `bytes` of filler (really allocated) at `path`.
void fill(const std::string& path, uint64_t bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  int r = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  ::close(fd);
  ASSERT_EQ(r, 0) << "filler " << path << ": " << std::strerror(r);
}

owned_event event_of(std::mt19937_64& rng) {
  owned_event e;
  e.type = uint32_t(rng() % 10);
  e.payload = random_bytes(rng, 200 + rng() % 3000);
  return e;
}

class DiskFull : public testing::TestWithParam<std::tuple<durability, bool>> {};

TEST_P(DiskFull, AppendFailsClearlyLosesNothingAndResumesWhenSpaceIsFreed) {
  const auto [mode, prepare] = GetParam();
  small_fs fs;
  if (!fs.mounted()) VARVE_SKIP_OR_FAIL_IN_CI(fs.why());
  // A filler to delete later, so that freeing space is a real unlink.
  ASSERT_NO_FATAL_FAILURE(fill(fs.sub("filler"), 2 << 20));
  const std::string dir = fs.sub("log");
  log_options o;
  o.segment_bytes = kSegment;
  o.mode = mode;
  o.prepare_next_segment = prepare;
  o.clock = [] { return kFixedClock; };
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, o));
  log_model model(kSegment, kFixedClock);
  std::mt19937_64 rng(42 + int(mode));

  // Fill the disk: 6 MiB are left, the log gets at most about 24 segments.
  status failure;
  for (int i = 0; i < 20000 && failure.ok(); ++i) {
    std::vector<owned_event> batch{event_of(rng)};
    if (i % 5 == 0) batch.push_back(event_of(rng));
    stream_key s = stream_key::named("acct-" + std::to_string(i % 13));
    const uint64_t seq = log->next_sequence().value;
    std::vector<event_data> data = as_data(batch);
    auto r = log->append(s.id(), expected_version::any(), data);
    if (r.ok()) {
      model.apply(s, batch, *r);
      continue;
    }
    failure = r.error();
    EXPECT_EQ(log->next_sequence().value, seq) << "the failed append left events behind";
  }
  ASSERT_FALSE(failure.ok()) << "an 8 MiB filesystem never filled up";
  EXPECT_EQ(failure.code(), errc::no_space) << failure.to_string();
  EXPECT_NE(failure.message().find(dir + "/"), std::string::npos)
      << "the error names no file of the log: " << failure.to_string();
  EXPECT_GT(model.next_sequence(), 100u);
  EXPECT_TRUE(log_matches_model(*log, model)) << "acknowledged events unreadable while full";

  // Still full: what fits in the current segment goes in, the next roll-over
  // is refused the same way, and nothing is lost.
  for (int refused = 0, i = 0; refused < 3; ++i) {
    ASSERT_LT(i, 1000) << "appends kept succeeding on a full disk";
    owned_event e = event_of(rng);
    auto r = log->append("acct-0", expected_version::any(), e.data());
    if (r.ok()) {
      model.apply(stream_key::named("acct-0"), {e}, *r);
      continue;
    }
    EXPECT_EQ(r.error().code(), errc::no_space) << r.error().to_string();
    ++refused;
  }
  EXPECT_TRUE(log_matches_model(*log, model));
  if (mode != durability::none) {
    EXPECT_OK(log->flush());  // what was acknowledged can still be made durable
  }

  // Free space: appends resume in the same log object, across roll-overs.
  ASSERT_EQ(::unlink(fs.sub("filler").c_str()), 0);
  for (int i = 0; i < 300; ++i)
    ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("after"),
                                           expected_version::any(), {event_of(rng)}))
        << "append " << i << " after space was freed";
  EXPECT_TRUE(log_matches_model(*log, model));
  ASSERT_OK(log->close());
  log.reset();

  // Reopen: everything is there, the log verifies, and it appends again.
  ASSERT_OK_AND_ASSIGN(log, event_log::open(dir, o));
  EXPECT_TRUE(log_matches_model(*log, model));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("after"),
                                         expected_version::any(), {event_of(rng)}));
  ASSERT_OK(log->close());
  log.reset();
  ASSERT_OK_AND_ASSIGN(auto report, verify_log(dir));
  EXPECT_OK(report.first_problem);
  EXPECT_EQ(report.events, model.next_sequence());
}

TEST(DiskFull, ReopeningAFullDiskWorksAndAppendsFailClearly) {
  small_fs fs;
  if (!fs.mounted()) VARVE_SKIP_OR_FAIL_IN_CI(fs.why());
  const std::string dir = fs.sub("log");
  log_options o;
  o.segment_bytes = kSegment;
  o.clock = [] { return kFixedClock; };
  log_model model(kSegment, kFixedClock);
  std::mt19937_64 rng(7);
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, o));
    for (int i = 0; i < 200; ++i)
      ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                             expected_version::any(), {event_of(rng)}));
    ASSERT_OK(log->close());
  }
  // Take every byte that is left.
  {
    int fd = ::open(fs.sub("filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    uint64_t got = 0;
    for (uint64_t chunk = 4 << 20; chunk >= 4096; chunk /= 2)
      while (::posix_fallocate(fd, static_cast<off_t>(got), static_cast<off_t>(chunk)) == 0) got += chunk;
    ::close(fd);
  }
  // Opening needs no new space when the tail segment has room; when it does
  // (a new segment, the control block), it must fail cleanly, not crash.
  auto opened = event_log::open(dir, o);
  if (!opened.ok()) {
    EXPECT_EQ(opened.error().code(), errc::no_space) << opened.error().to_string();
  } else {
    auto log = std::move(opened).value();
    EXPECT_TRUE(log_matches_model(*log, model));
    status failure;
    for (int i = 0; i < 2000 && failure.ok(); ++i) {
      owned_event e = event_of(rng);
      auto r = log->append("s", expected_version::any(), e.data());
      if (r.ok())
        model.apply(stream_key::named("s"), {e}, *r);
      else
        failure = r.error();
    }
    EXPECT_EQ(failure.code(), errc::no_space) << failure.to_string();
    EXPECT_TRUE(log_matches_model(*log, model));
    (void)log->close();
  }
  ASSERT_EQ(::unlink(fs.sub("filler").c_str()), 0);
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir, o));
  EXPECT_TRUE(log_matches_model(*log, model));
  ASSERT_NO_FATAL_FAILURE(append_checked(*log, model, stream_key::named("s"),
                                         expected_version::any(), {event_of(rng)}));
}

INSTANTIATE_TEST_SUITE_P(
    Modes, DiskFull,
    testing::Combine(testing::Values(durability::none, durability::group, durability::sync),
                     testing::Bool()),
    [](const testing::TestParamInfo<std::tuple<durability, bool>>& i) {
      const durability m = std::get<0>(i.param);
      return std::string(m == durability::none ? "none" : m == durability::group ? "group" : "sync") +
             (std::get<1>(i.param) ? "Prepared" : "NotPrepared");
    });

}  // namespace
