// varve-sub-latency: how long an appended event takes to reach a live
// subscription (append -> next() returns it), in-process and cross-process.
//
// Each event carries CLOCK_MONOTONIC (steady_clock on Linux: the same clock
// in every process) read just before append(); the subscriber reads the clock
// when next() hands the event over. Cases:
//   paced         the writer appends --rate events/s (one per append), so the
//                 subscriber has caught up and waits between events (spins
//                 --spin-us, then parks on the futex): the realistic case
//   back-to-back  the writer appends --events as fast as it can; latency is
//                 then mostly queueing behind earlier events
// each with the subscriber in a thread of the writer's process ("in-process")
// and in a freshly exec'd process that opened the log read-only
// ("cross-process"). The writer's own append() cost is reported too, with and
// without a parked subscriber (the futex wake it pays).
//
//   varve-sub-latency [--rate 10000] [--events 50000] [--spin-us 20] [--json]
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"
#include "varve/subscription.h"
#include "varve/varve.h"

namespace vb = varve_bench;
using namespace varve;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "varve-sub-latency: %s\n", what.c_str());
  std::exit(1);
}

using varve_bench::mono_ns;
using varve_bench::sleep_until_ns;

struct percentiles {
  double p50 = 0, p99 = 0, p999 = 0, max = 0;
  uint64_t n = 0;
};

percentiles summarize(std::vector<uint64_t> v) {
  percentiles p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1));
    return static_cast<double>(v[i]) / 1000.0;  // us
  };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.max = static_cast<double>(v.back()) / 1000.0;
  p.n = v.size();
  return p;
}

// The subscriber's side: takes `n` events, returns their latencies (ns).
std::vector<uint64_t> subscribe_and_measure(const event_log& log, position from, uint64_t n,
                                            std::chrono::nanoseconds spin, int ready_fd,
                                            std::atomic<bool>* ready_flag) {
  subscription_options o;
  o.spin = spin;
  auto sub = subscription::open(log, from, {}, o);
  if (!sub) die(sub.error().to_string());
  std::vector<uint64_t> lat;
  lat.reserve(n);
  if (ready_fd >= 0 && ::write(ready_fd, "r", 1) != 1) die("ready pipe");
  if (ready_flag) ready_flag->store(true);
  event_view e;
  while (lat.size() < n) {
    auto got = sub->next(e, std::chrono::seconds(30));
    if (!got) die(got.error().to_string());
    if (!*got) die("no event for 30 s");
    const uint64_t now = mono_ns();
    uint64_t sent;
    std::memcpy(&sent, e.payload.data(), 8);
    lat.push_back(now - sent);
  }
  return lat;
}

// The writer's side: appends `n` events (paced at `rate`/s, 0 = back to back),
// each stamped just before append(); returns each append()'s duration (ns).
std::vector<uint64_t> write_stamped(event_log& log, uint64_t n, uint64_t rate) {
  std::vector<std::byte> payload(100);
  event_data d;
  d.type = 1;
  d.payload = payload;
  std::vector<uint64_t> cost;
  cost.reserve(n);
  const uint64_t start = mono_ns() + 1'000'000;
  for (uint64_t i = 0; i < n; ++i) {
    if (rate) sleep_until_ns(start + i * 1'000'000'000ull / rate);
    const uint64_t t0 = mono_ns();
    std::memcpy(payload.data(), &t0, 8);
    auto r = log.append(stream_id::from_u64(i % 1000), expected_version::any(), d);
    cost.push_back(mono_ns() - t0);
    if (!r) die(r.error().to_string());
  }
  return cost;
}

struct case_result {
  std::string name;
  percentiles latency;
  percentiles append_cost;
};

case_result run_in_process(const std::string& dir, uint64_t n, uint64_t rate,
                           std::chrono::nanoseconds spin) {
  vb::remove_tree(dir);
  log_options lo;
  auto log = event_log::create(dir, lo);
  if (!log) die(log.error().to_string());
  std::atomic<bool> ready{false};
  std::vector<uint64_t> lat;
  const position from = (*log)->committed_position();
  std::thread sub([&] { lat = subscribe_and_measure(**log, from, n, spin, -1, &ready); });
  while (!ready.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it park
  std::vector<uint64_t> cost = write_stamped(**log, n, rate);
  sub.join();
  return {std::string(rate ? "paced" : "back-to-back") + ", in-process", summarize(lat),
          summarize(cost)};
}

case_result run_cross_process(const std::string& self, const std::string& dir, uint64_t n,
                              uint64_t rate, std::chrono::nanoseconds spin) {
  vb::remove_tree(dir);
  log_options lo;
  auto log = event_log::create(dir, lo);
  if (!log) die(log.error().to_string());
  int ready[2], result[2];
  if (::pipe(ready) != 0 || ::pipe(result) != 0) die("pipe");
  const std::string from = std::to_string((*log)->committed_position().value);
  const std::string count = std::to_string(n);
  const std::string spin_ns = std::to_string(spin.count());
  const std::string rfd = std::to_string(ready[1]), ofd = std::to_string(result[1]);
  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::close(ready[0]);
    ::close(result[0]);
    const char* argv[] = {self.c_str(), "--follower", dir.c_str(), from.c_str(), count.c_str(),
                          spin_ns.c_str(), rfd.c_str(), ofd.c_str(), nullptr};
    ::execv(self.c_str(), const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(ready[1]);
  ::close(result[1]);
  char c;
  if (::read(ready[0], &c, 1) != 1) die("the follower did not start");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it park
  std::vector<uint64_t> cost = write_stamped(**log, n, rate);
  std::vector<uint64_t> lat(n);
  size_t want = n * sizeof(uint64_t), got = 0;
  auto* buf = reinterpret_cast<char*>(lat.data());
  while (got < want) {
    ssize_t r = ::read(result[0], buf + got, want - got);
    if (r <= 0) die("the follower's results were cut short");
    got += static_cast<size_t>(r);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ::close(ready[0]);
  ::close(result[0]);
  return {std::string(rate ? "paced" : "back-to-back") + ", cross-process", summarize(lat),
          summarize(cost)};
}

int follower_main(char** argv) {
  const std::string dir = argv[2];
  const position from{std::strtoull(argv[3], nullptr, 10)};
  const uint64_t n = std::strtoull(argv[4], nullptr, 10);
  const std::chrono::nanoseconds spin(std::strtoll(argv[5], nullptr, 10));
  const int ready_fd = std::atoi(argv[6]), out_fd = std::atoi(argv[7]);
  auto log = event_log::open_read_only(dir);
  if (!log) die(log.error().to_string());
  std::vector<uint64_t> lat = subscribe_and_measure(**log, from, n, spin, ready_fd, nullptr);
  const char* p = reinterpret_cast<const char*>(lat.data());
  size_t left = lat.size() * sizeof(uint64_t);
  while (left) {
    ssize_t w = ::write(out_fd, p, left);
    if (w <= 0) return 1;
    p += w;
    left -= static_cast<size_t>(w);
  }
  return 0;
}

// The writer alone, paced: what append() costs when nobody is subscribed.
case_result run_no_subscriber(const std::string& dir, uint64_t n, uint64_t rate) {
  vb::remove_tree(dir);
  auto log = event_log::create(dir, log_options{});
  if (!log) die(log.error().to_string());
  return {"paced, no subscriber", {}, summarize(write_stamped(**log, n, rate))};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 8 && std::string(argv[1]) == "--follower") return follower_main(argv);
  CLI::App app{"varve-sub-latency: append -> subscription delivery latency"};
  uint64_t rate = 10000, events = 50000;
  double spin_us = 20;
  bool json = false;
  app.add_option("--rate", rate, "Paced cases: events per second (default 10000)");
  app.add_option("--events", events, "Events per case (default 50000)");
  app.add_option("--spin-us", spin_us, "Subscriber spin before parking, microseconds (default 20)");
  app.add_flag("--json", json, "One JSON object per case");
  CLI11_PARSE(app, argc, argv);

  char self[4096];
  const ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) die("readlink /proc/self/exe");
  self[len] = 0;
  const std::string root = vb::make_scratch_dir(vb::scratch_root(), "varve-sub-latency");
  const std::string dir = root + "/log";
  const auto spin = std::chrono::nanoseconds(static_cast<int64_t>(spin_us * 1000));

  double load[3] = {0, 0, 0};
  ::getloadavg(load, 3);
  std::printf("# varve-sub-latency  %s  %s, %ld cores, %s  load %.2f %.2f %.2f\n",
              vb::utc_now_iso().c_str(), vb::cpu_model().c_str(), vb::online_cores(),
              vb::kernel_release().c_str(), load[0], load[1], load[2]);
  std::printf("# %" PRIu64 " events per case, paced at %" PRIu64 "/s, spin %.0f us, 100-byte payloads\n",
              events, rate, spin_us);
  std::vector<case_result> results;
  results.push_back(run_no_subscriber(dir, events, rate));
  results.push_back(run_in_process(dir, events, rate, spin));
  results.push_back(run_cross_process(self, dir, events, rate, spin));
  results.push_back(run_in_process(dir, events, 0, spin));
  results.push_back(run_cross_process(self, dir, events, 0, spin));
  vb::remove_tree(root);

  std::printf("%-30s %10s %10s %10s %10s | %12s %12s\n", "case", "p50 us", "p99 us", "p99.9 us",
              "max us", "append p50", "append p99");
  for (const case_result& r : results) {
    if (json) {
      std::printf(
          "{\"case\":\"%s\",\"latency_us\":{\"p50\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f,\"n\":%" PRIu64
          "},\"append_us\":{\"p50\":%.3f,\"p99\":%.3f}}\n",
          r.name.c_str(), r.latency.p50, r.latency.p99, r.latency.p999, r.latency.max, r.latency.n,
          r.append_cost.p50, r.append_cost.p99);
      continue;
    }
    if (r.latency.n)
      std::printf("%-30s %10.1f %10.1f %10.1f %10.1f | %10.3f us %10.3f us\n", r.name.c_str(), r.latency.p50,
                  r.latency.p99, r.latency.p999, r.latency.max, r.append_cost.p50, r.append_cost.p99);
    else
      std::printf("%-30s %10s %10s %10s %10s | %10.3f us %10.3f us\n", r.name.c_str(), "-", "-", "-", "-",
                  r.append_cost.p50, r.append_cost.p99);
  }
  return 0;
}
