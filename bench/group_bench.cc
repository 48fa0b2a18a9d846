// varve-group-bench: consumer groups (issue 22) measured across processes.
//
//   hand-off   the writer appends --events events at a steady --rate per
//              second, each stamped with CLOCK_MONOTONIC (the same clock in
//              every process) just before append(); one member of a group of
//              --partitions partitions, in another process on the log opened
//              read-only, owns every partition and stamps each event as
//              next() hands it over. The member commits once a second (each
//              commit is an fdatasync of the group file, ~10-20 ms on a
//              virtio disk: committing every 100 events at 10,000/s already
//              queued deliveries behind the disk, p50 1.9 ms). Reported:
//              p50/p99/p99.9/max of append -> delivered.
//   takeover   --takeovers times: member A joins and owns every partition,
//              member B joins and waits until the rebalance gave it its share,
//              then A is SIGKILLed; reported: the time from the kill until B
//              owns every partition (the session timeout plus at most one of
//              B's polls: leases are only taken once they expired).
//
//   varve-group-bench [--events 20000] [--rate 10000] [--partitions 8]
//                     [--session-timeout-ms 1000] [--takeovers 5] [--json FILE]
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_common.h"
#include "varve/consumer_group.h"
#include "varve/varve.h"

namespace vb = varve_bench;
using namespace varve;
using json = nlohmann::json;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "varve-group-bench: %s\n", what.c_str());
  std::exit(1);
}

using varve_bench::mono_ns;
using varve_bench::sleep_until_ns;

void write_full(int fd, const void* p, size_t n, const char* what) {
  const char* b = static_cast<const char*>(p);
  while (n) {
    const ssize_t w = ::write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die(std::string("write ") + what);
    b += w;
    n -= static_cast<size_t>(w);
  }
}

void read_full(int fd, void* p, size_t n, const std::string& what) {
  char* b = static_cast<char*>(p);
  while (n) {
    const ssize_t r = ::read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die(what + ": the member process ended early (see its error above)");
    b += r;
    n -= static_cast<size_t>(r);
  }
}

struct settings {
  uint64_t events = 20'000;
  uint64_t rate = 10'000;
  uint32_t partitions = 8;
  uint64_t session_timeout_ms = 1000;
  uint32_t takeovers = 5;
};

// ---- the member processes ---------------------------------------------------

group_options member_options(const settings& s, const std::string& name) {
  group_options o;
  o.partitions = s.partitions;
  o.session_timeout = std::chrono::milliseconds(s.session_timeout_ms);
  o.member = name;
  o.commit_every = 1'000'000'000;  // by time only
  o.commit_interval = std::chrono::milliseconds(1000);
  return o;
}

int member_main(const settings& s, const std::string& dir, const std::string& group, const std::string& role,
                int fd) {
  auto log = event_log::open_read_only(dir);
  if (!log) die(role + ": " + log.error().to_string());
  auto g = consumer_group::join(**log, group, member_options(s, role));
  if (!g) die(role + ": " + g.error().to_string());
  event_view e;
  auto owned = [&] { return g->owned_partitions().size(); };
  if (role == "handoff") {
    if (owned() != s.partitions) die("handoff: the only member does not own every partition");
    write_full(fd, "r", 1, "ready");
    std::vector<uint64_t> lat;
    lat.reserve(s.events);
    while (lat.size() < s.events) {
      auto got = g->next(e, std::chrono::seconds(30));
      if (!got) die("handoff: " + got.error().to_string());
      if (!*got) die("handoff: no event for 30 s after " + std::to_string(lat.size()));
      const uint64_t now = mono_ns();
      uint64_t sent;
      std::memcpy(&sent, e.payload.data(), 8);
      lat.push_back(now - sent);
    }
    if (auto st = g->leave(); !st) die("handoff: " + st.to_string());
    write_full(fd, lat.data(), lat.size() * sizeof(uint64_t), "latencies");
    return 0;
  }
  if (role == "victim") {
    write_full(fd, "r", 1, "ready");
    for (;;) {  // until SIGKILL; next() renews the leases
      auto got = g->next(e, std::chrono::milliseconds(5));
      if (!got) die("victim: " + got.error().to_string());
    }
  }
  if (role == "survivor") {
    const size_t share = s.partitions / 2;
    while (owned() < share) {
      auto got = g->next(e, std::chrono::milliseconds(1));
      if (!got) die("survivor: " + got.error().to_string());
    }
    write_full(fd, "b", 1, "balanced");
    while (owned() < s.partitions) {
      auto got = g->next(e, std::chrono::milliseconds(1));
      if (!got) die("survivor: " + got.error().to_string());
    }
    const uint64_t t = mono_ns();
    write_full(fd, &t, sizeof t, "takeover time");
    (void)g->leave();
    return 0;
  }
  die("unknown member role " + role);
}

// ---- the parent -------------------------------------------------------------

std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) die("readlink /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

struct child {
  pid_t pid = -1;
  int fd = -1;  // read end of the member's pipe
};

child spawn(const settings& s, const std::string& dir, const std::string& group, const std::string& role) {
  int p[2];
  if (::pipe(p) != 0) die("pipe");
  std::vector<std::string> args = {self_exe(),
                                   "--member-dir", dir,
                                   "--member-group", group,
                                   "--member-role", role,
                                   "--member-fd", std::to_string(p[1]),
                                   "--events", std::to_string(s.events),
                                   "--partitions", std::to_string(s.partitions),
                                   "--session-timeout-ms", std::to_string(s.session_timeout_ms)};
  const pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::close(p[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(p[1]);
  return {pid, p[0]};
}

void reap(child& c, bool must_succeed, const std::string& what) {
  int st = 0;
  ::waitpid(c.pid, &st, 0);
  ::close(c.fd);
  if (must_succeed && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) die(what + ": the member process failed");
}

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return vb::percentile_sorted(v, p);
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  std::string json_path, member_dir, member_group, member_role;
  int member_fd = -1;
  CLI::App app{"varve-group-bench: consumer-group hand-off latency and takeover time, across processes"};
  app.add_option("--events", s.events, "events appended in the hand-off case")->capture_default_str();
  app.add_option("--rate", s.rate, "their steady rate (events/s)")->capture_default_str();
  app.add_option("--partitions", s.partitions, "partitions of each group")->capture_default_str();
  app.add_option("--session-timeout-ms", s.session_timeout_ms, "the members' session timeout")
      ->capture_default_str();
  app.add_option("--takeovers", s.takeovers, "takeovers timed")->capture_default_str();
  app.add_option("--json", json_path, "write the figures here");
  app.add_option("--member-dir", member_dir)->group("");  // internal: a member process
  app.add_option("--member-group", member_group)->group("");
  app.add_option("--member-role", member_role)->group("");
  app.add_option("--member-fd", member_fd)->group("");
  CLI11_PARSE(app, argc, argv);
  if (s.events == 0 || s.rate == 0 || s.partitions < 2 || s.partitions > 1024 || s.session_timeout_ms == 0 ||
      s.takeovers == 0)
    die("--events, --rate, --takeovers and --session-timeout-ms must be > 0, --partitions 2..1024");
  if (!member_role.empty()) return member_main(s, member_dir, member_group, member_role, member_fd);

  const std::string root = vb::make_scratch_dir(vb::scratch_root(), "varve-group-bench");
  const std::string dir = root + "/log";
  auto log = event_log::create(dir, log_options{});
  if (!log) die(log.error().to_string());
  json out = {{"settings",
               {{"events", s.events},
                {"rate", s.rate},
                {"partitions", s.partitions},
                {"session_timeout_ms", s.session_timeout_ms},
                {"takeovers", s.takeovers},
                {"commit_every", "time only"},
                {"commit_interval_ms", 1000}}}};

  // Hand-off.
  {
    child m = spawn(s, dir, "handoff", "handoff");
    char r;
    read_full(m.fd, &r, 1, "hand-off");
    std::vector<std::byte> payload(100);
    event_data d;
    d.type = 1;
    d.payload = payload;
    const uint64_t start = mono_ns() + 1'000'000;
    for (uint64_t i = 0; i < s.events; ++i) {
      sleep_until_ns(start + i * 1'000'000'000ull / s.rate);
      const uint64_t t0 = mono_ns();
      std::memcpy(payload.data(), &t0, 8);
      auto a = (*log)->append(stream_id::from_u64(i % 1000), expected_version::any(), d);
      if (!a) die(a.error().to_string());
    }
    std::vector<uint64_t> lat(s.events);
    read_full(m.fd, lat.data(), lat.size() * sizeof(uint64_t), "hand-off latencies");
    reap(m, true, "hand-off");
    std::vector<double> us;
    for (uint64_t x : lat) us.push_back(static_cast<double>(x) / 1e3);
    out["handoff_us"] = {{"p50", pct(us, 50)}, {"p99", pct(us, 99)}, {"p99.9", pct(us, 99.9)},
                         {"max", pct(us, 100)}};
    std::printf("hand-off (append -> delivered to a group member in another process), %llu events at %llu/s:\n"
                "  p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n",
                static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.rate),
                pct(us, 50), pct(us, 99), pct(us, 99.9), pct(us, 100));
  }

  // Takeover.
  std::vector<double> ms;
  for (uint32_t k = 0; k < s.takeovers; ++k) {
    const std::string group = "takeover-" + std::to_string(k);
    child a = spawn(s, dir, group, "victim");
    char r;
    read_full(a.fd, &r, 1, "takeover: member A");
    child b = spawn(s, dir, group, "survivor");
    read_full(b.fd, &r, 1, "takeover: member B's share");
    const uint64_t t0 = mono_ns();
    ::kill(a.pid, SIGKILL);
    uint64_t t1 = 0;
    read_full(b.fd, &t1, sizeof t1, "takeover: member B");
    reap(a, false, "takeover");
    reap(b, true, "takeover");
    ms.push_back(static_cast<double>(t1 - t0) / 1e6);
  }
  out["takeover_ms"] = {{"median", pct(ms, 50)}, {"min", pct(ms, 0)}, {"max", pct(ms, 100)}, {"each", ms}};
  std::printf("takeover (SIGKILL of the member holding half the partitions -> the survivor owns all %u), "
              "session timeout %llu ms, %u runs:\n  median %.0f ms  min %.0f ms  max %.0f ms\n",
              s.partitions, static_cast<unsigned long long>(s.session_timeout_ms), s.takeovers, pct(ms, 50),
              pct(ms, 0), pct(ms, 100));
  // A takeover can never beat the session timeout (leases are taken only once
  // expired); one far past it means a member failed to notice.
  for (double x : ms)
    if (x < 0.7 * static_cast<double>(s.session_timeout_ms) || x > 3.0 * static_cast<double>(s.session_timeout_ms))
      die("a takeover took " + std::to_string(x) + " ms with a session timeout of " +
          std::to_string(s.session_timeout_ms) + " ms");

  (void)(*log)->close();
  vb::remove_tree(root);
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << out.dump(2) << "\n";
    if (!f) die("cannot write " + json_path);
  }
  return 0;
}
