// varve-bench: the ES-1 workload (/work/shared/WORKLOAD.md), phases P1-P7,
// side by side against its peers, from one command, on the same data (seed 42)
// in one run:
//
//   varve        durability none (all phases; P2/P3 made durable with flush())
//   varve-group  durability group (P2, P3: wait_durable)
//   varve-sync   durability sync (P3)
//   rocksdb      the real RocksDB (Debian's librocksdb-dev), schema and options
//                as in bench/rocksdb_es1.h (built only when RocksDB is found)
//   writelog     the Kafka-style log: buffered write(2), fdatasync per durable
//                batch, sequential read(2) scan (bench/peers/writelog.h)
//   ceiling      memcpy of varve's record stream into a pre-faulted buffer (P1),
//                a sequential read of that buffer (P4) and a verified one
//                (XXH3 of every record, bench/ceiling_verified.cc: P4.verified_*),
//                write(4 KiB)+fdatasync (P3)
//   kafka        the real Apache Kafka broker (tools/kafka/broker, one KRaft
//                node on loopback, started per rep unless --kafka-brokers) through
//                librdkafka (bench/peers/kafka.h; built when librdkafka is found)
//
// Each peer runs in a freshly exec'd child process (this binary, hidden
// --child PEER), one after the other, so its peak RSS is its own and it
// starts with none of another peer's memory; each child generates the ES-1
// data itself (deterministic), loads and reads its own store under DIR/PEER,
// checks what it read back (count and XXH3 of all payloads in order for every
// store it wrote; P5: every aggregate's versions 1..n in order with the right
// payload checksum), prints its figures as JSON on stdout and exits non-zero on
// any mismatch, which fails the run. With --reps N every peer runs N times,
// peers interleaved, and the table shows medians.
//
// Phases, in each child: P1 load E events (not durable) into a fresh store,
// settle (varve: close + reopen; RocksDB: flush + wait for compactions;
// writelog: write out the buffer), bytes on disk; P4 one untimed verifying scan
// (warms the page cache), then --p4-scans timed scans touching every payload
// byte (median); P5 an untimed verifying pass, then --p5-reps timed passes over
// --p5-aggregates aggregates (median); P6 --p6-events appends into a fresh
// store, each timed with steady_clock; P3 --p3-events durable single appends
// into a fresh store; P2 --p2-events appends in durable batches of --p2-batch
// into a fresh store; P7 (varve, kafka) --p7-events appends paced at --p7-rate
// per second into a fresh store while a reader in another process (this binary,
// hidden --p7-follower) follows it and stamps each event as it sees it; P8
// (varve) consumer groups, measured by the sibling varve-group-bench: the
// hand-off from append to a group member in another process (--p7-events at
// --p7-rate, as P7) and the takeover of a SIGKILLed member's partitions; P9
// (varve) replay of the ES-1 log on 1, 2, ... threads (--p9-threads), warm,
// by the sibling varve-replay-bench; P10 (varve) cold reads (--p10-gib GiB,
// evicted from the page cache) through the chunk reader and the replay,
// against a raw io_uring O_DIRECT read of the same files, by the sibling
// varve-cold-read. See docs/BENCHMARKS.md ("Side by side").
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "ceilings.h"
#include "es1_check.h"
#include "peers/varve.h"
#include "peers/writelog.h"
#ifdef VARVE_BENCH_WITH_ROCKSDB
#include "peers/rocksdb.h"
#endif
#ifdef VARVE_BENCH_WITH_KAFKA
#include "peers/kafka.h"
#endif

namespace vb = varve_bench;
using json = nlohmann::json;

namespace {

// ---------------------------------------------------------------------------
// Configuration.
// ---------------------------------------------------------------------------
const std::vector<std::string> kAllPhases = {"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P10"};

struct config {
  uint64_t events = 5'000'000;
  uint64_t aggregates = 100'000;
  uint64_t p2_events = 0;  // 0 = events
  uint64_t p2_batch = 1000;
  uint64_t p3_events = 2000;
  uint64_t p5_aggregates = 20'000;
  uint64_t writelog_p5_aggregates = 3;
  uint64_t p6_events = 1'000'000;
  uint64_t p7_events = 100'000;
  uint64_t p7_rate = 10'000;
  std::string p7_follow = "park,spin";  // varve's follow policies measured in P7
  int p7_follower_cpu = -1;             // >= 0: the follower on this CPU alone (run_p7)
  int p4_scans = 3;
  int p5_reps = 3;
  int reps = 1;
  std::string dir;
  std::string peers;  // default: every peer that can run
  std::string skip_peers;
  std::string phases = "P1,P2,P3,P4,P5,P6,P7,P8,P9,P10";
  std::string p9_threads = "1,2";  // replay worker counts (P9)
  double p10_gib = 2;              // size of P10's cold log
  std::string json_file;
  bool keep = false;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t rocks_cache_mb = 2048;
  uint64_t writelog_buffer = 64 << 10;
  uint64_t warm_memory_mb = 0;  // touched and freed before each peer's P1 (see --warm-memory-mb)
  std::string kafka_brokers;  // HOST:PORT of a running broker; "" = start one per rep
  std::string kafka_data_dir; // that broker's log.dirs, when known (bytes on disk)
  std::string kafka_script;   // tools/kafka/broker

  bool has(const std::string& p) const {
    std::stringstream ss(phases);
    std::string item;
    while (std::getline(ss, item, ','))
      if (item == p) return true;
    return false;
  }
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string g_cleanup;  // removed by die() (the run's root, or the child's store)
std::string g_broker_script, g_broker_dir;  // a broker this process started, stopped by die()

void stop_broker() {
  if (g_broker_dir.empty()) return;
  std::string out;
  if (vb::run_status({"bash", g_broker_script, "stop", g_broker_dir}, out) != 0)
    std::fprintf(stderr, "varve-bench: could not stop the Kafka broker in %s\n", g_broker_dir.c_str());
  vb::remove_tree(g_broker_dir);
  g_broker_dir.clear();
}

[[noreturn]] void die(const std::string& what, int code = 1) {
  std::fprintf(stderr, "varve-bench: %s\n", what.c_str());
  stop_broker();
  if (!g_cleanup.empty()) vb::remove_tree(g_cleanup);
  std::exit(code);
}

// Starts a broker in `dir` through tools/kafka/broker: its bootstrap address,
// or the exit status (2: Java, Maven or Kafka's jars are missing) with the
// script's reason already on stderr.
int start_broker(const std::string& script, const std::string& dir, std::string& addr) {
  std::string out;
  const int rc = vb::run_status({"bash", script, "start", dir}, out);
  if (rc != 0) return rc;
  g_broker_script = script;
  g_broker_dir = dir;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  addr = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  if (addr.empty()) die("tools/kafka/broker start printed no address");
  return 0;
}

// ---------------------------------------------------------------------------
// The peers: name, the phases each one runs, whether this build has it.
// A new peer is one row here and one child runner below.
// ---------------------------------------------------------------------------
struct peer_info {
  std::string name;
  std::set<std::string> phases;
  bool available;
  std::string why_not;
};

const std::vector<peer_info>& peer_table() {
  static const std::vector<peer_info> t = {
      {"varve", {"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P10"}, true, ""},
      {"varve-group", {"P2", "P3"}, true, ""},
      {"varve-sync", {"P3"}, true, ""},
#ifdef VARVE_BENCH_WITH_ROCKSDB
      {"rocksdb", {"P1", "P2", "P3", "P4", "P5", "P6"}, true, ""},
#else
      {"rocksdb", {"P1", "P2", "P3", "P4", "P5", "P6"}, false, "built without RocksDB (install librocksdb-dev)"},
#endif
      {"writelog", {"P1", "P2", "P3", "P4", "P5", "P6"}, true, ""},
#ifdef VARVE_BENCH_WITH_KAFKA
      {"kafka", {"P1", "P2", "P3", "P4", "P5", "P6", "P7"}, true, ""},
#else
      {"kafka", {"P1", "P2", "P3", "P4", "P5", "P6", "P7"}, false, "built without librdkafka (install librdkafka-dev)"},
#endif
      {"ceiling", {"P1", "P3", "P4"}, true, ""},
  };
  return t;
}

const peer_info* find_peer(const std::string& name) {
  for (auto& p : peer_table())
    if (p.name == name) return &p;
  return nullptr;
}

// ---------------------------------------------------------------------------
// Child side: figures of one peer.
// ---------------------------------------------------------------------------
struct child_out {
  json figures = json::object();
  json units = json::object();
  json verify = json::object();
  json info = json::object();
  void add(const std::string& k, double v, const std::string& unit) {
    figures[k] = v;
    units[k] = unit;
  }
};

// XXH3-64 of the payloads of events [0, n) in order (what a full scan must see).
uint64_t expected_digest(const vb::es1_data& d, uint64_t n) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  for (uint64_t i = 0; i < n; ++i) XXH3_64bits_update(st, d.payload_of(i), vb::kPayloadBytes);
  uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

std::string hex(uint64_t v) {
  char b[20];
  std::snprintf(b, sizeof b, "%016" PRIx64, v);
  return b;
}

// A full verifying scan of a store that should hold events [0, n): count and
// XXH3 of every payload in order. Dies on a mismatch; records the check.
template <class P>
void verify_store(P& p, const vb::es1_data& d, uint64_t n, const std::string& what, child_out& out) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  uint64_t rb = 0;
  const uint64_t got = p.scan([&](const std::byte* payload, size_t len) { XXH3_64bits_update(st, payload, len); }, rb);
  const uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  const uint64_t want = expected_digest(d, n);
  out.verify[what] = {{"events", got}, {"expected_events", n}, {"xxh3", hex(h)}, {"expected_xxh3", hex(want)},
                      {"ok", got == n && h == want}};
  if (got != n || h != want)
    die(what + ": read back " + std::to_string(got) + " events with payload XXH3 " + hex(h) + ", wrote " +
        std::to_string(n) + " with " + hex(want));
}

std::vector<double> cdf_grid() {  // percentiles 0, then 1 - 10^-k for k = 0.05 .. 6, then 100
  std::vector<double> g = {0};
  for (int k = 1; k <= 120; ++k) g.push_back(100.0 * (1.0 - std::pow(10.0, -k / 20.0)));
  g.push_back(100);
  return g;
}

void add_latency(child_out& out, const std::string& prefix, std::vector<double>& v, double scale,
                 const std::string& unit, bool with_cdf) {
  std::sort(v.begin(), v.end());
  for (auto [name, p] : std::initializer_list<std::pair<const char*, double>>{
           {"p50", 50}, {"p99", 99}, {"p99.9", 99.9}, {"p99.99", 99.99}})
    out.add(prefix + "." + name + "_" + unit, vb::percentile_sorted(v, p) * scale, unit);
  out.add(prefix + ".max_" + unit, v.back() * scale, unit);
  double sum = 0;
  for (double x : v) sum += x;
  out.add(prefix + ".mean_" + unit, sum / static_cast<double>(v.size()) * scale, unit);
  if (with_cdf) {
    json pct = json::array(), val = json::array();
    for (double p : cdf_grid()) {
      pct.push_back(p);
      val.push_back(p == 0 ? v.front() * scale : vb::percentile_sorted(v, p) * scale);
    }
    out.info[prefix + ".cdf"] = {{"percentile", pct}, {unit, val}};
  }
}

uint64_t vm_hwm_bytes() {  // peak RSS so far, from /proc/self/status
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  return 0;
}

std::string self_exe();
void run_p8(const config& c, const std::string& dir, child_out& out);
void run_p9(const config& c, const std::string& dir, child_out& out);
void run_p10(const config& c, const std::string& dir, child_out& out);

void read_fully(int fd, void* buf, size_t want, const std::string& what) {
  auto* b = static_cast<char*>(buf);
  size_t got = 0;
  while (got < want) {
    const ssize_t r = ::read(fd, b + got, want - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die(what + ": cut short after " + std::to_string(got) + " of " + std::to_string(want) + " bytes");
    got += static_cast<size_t>(r);
  }
}

// P7: the store's reader runs in another process (this binary, --p7-follower),
// started on the fresh, empty store; once it says it is following (a byte on
// a pipe) and has had 20 ms to park, --p7-events events are appended at a
// steady --p7-rate per second, each stamped (steady_ns: CLOCK_MONOTONIC, one
// clock for every process here; in the event's timestamp) just before the
// append call. The reader stamps each event as it
// is handed over and sends the differences back through a second pipe.
// `policy` is varve's follow policy (subscription_options): "park" (the
// default: spin 20 us, then park on the futex), "yield" (spin 20 us, yield for
// up to 10 ms, then park) or "spin" (never park); its figures are P7.* for
// park and P7.<policy>.* for the others.
template <class P>
void run_p7(const std::string& peer, const config& c, const vb::es1_data& d, const std::string& sdir, P& p,
            child_out& out, const std::string& policy = "park") {
  const uint64_t n = c.p7_events;
  const std::string prefix = policy == "park" ? "P7" : "P7." + policy;
  // --p7-follower-cpu: a follower with a core of its own, as a latency-critical
  // deployment runs a spinning one. This process keeps off that CPU while it
  // writes: set before the store opens, so the log's helper threads (made at
  // open) inherit it; restored at the end.
  cpu_set_t saved;
  CPU_ZERO(&saved);
  const bool pinned = c.p7_follower_cpu >= 0;
  if (pinned) {
    if (::sched_getaffinity(0, sizeof saved, &saved) != 0) die("sched_getaffinity: " + std::string(strerror(errno)));
    cpu_set_t others = saved;
    CPU_CLR(c.p7_follower_cpu, &others);
    if (!CPU_ISSET(c.p7_follower_cpu, &saved) || CPU_COUNT(&others) == 0)
      die("--p7-follower-cpu " + std::to_string(c.p7_follower_cpu) +
          ": not one of this process's CPUs, or the only one");
    if (::sched_setaffinity(0, sizeof others, &others) != 0) die("sched_setaffinity: " + std::string(strerror(errno)));
  }
  p.create(sdir);
  int ready[2], result[2];
  if (::pipe(ready) != 0 || ::pipe(result) != 0) die("pipe: " + std::string(strerror(errno)));
  std::vector<std::string> args = {self_exe(), "--p7-follower", peer, "--p7-events", std::to_string(n),
                                   "--p7-fds", std::to_string(ready[1]) + "," + std::to_string(result[1]),
                                   "--p7-policy", policy, "--p7-follower-cpu", std::to_string(c.p7_follower_cpu)};
  if constexpr (requires { p.topic(); }) {
    args.insert(args.end(), {"--p7-store", p.topic(), "--kafka-brokers", p.brokers()});
  } else {
    args.insert(args.end(), {"--p7-store", sdir});
  }
  const pid_t pid = ::fork();
  if (pid < 0) die("fork: " + std::string(strerror(errno)));
  if (pid == 0) {
    ::close(ready[0]);
    ::close(result[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(ready[1]);
  ::close(result[1]);
  char byte;
  read_fully(ready[0], &byte, 1, peer + " P7: the follower did not start");
  ::usleep(20'000);  // let it catch up and park
  const uint64_t start = vb::steady_ns() + 1'000'000;
  const uint64_t step = 1'000'000'000ull / c.p7_rate;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t at = start + i * step;
    const timespec ts{static_cast<time_t>(at / 1'000'000'000), static_cast<long>(at % 1'000'000'000)};
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
    p.append_stamped(d, i, vb::steady_ns());
  }
  if constexpr (requires { p.wait_acknowledged(); }) p.wait_acknowledged();
  std::vector<uint64_t> lat(n);
  read_fully(result[0], lat.data(), n * sizeof(uint64_t), peer + " P7: the follower's latencies");
  int st = 0;
  ::waitpid(pid, &st, 0);
  ::close(ready[0]);
  ::close(result[0]);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) die(peer + " P7: the follower failed");
  verify_store(p, d, n, "P7 store", out);
  p.close();
  if (pinned && ::sched_setaffinity(0, sizeof saved, &saved) != 0)
    die("sched_setaffinity: " + std::string(strerror(errno)));
  if (!c.keep) vb::remove_tree(sdir);
  if (const char* dump = std::getenv("VARVE_BENCH_P7_DUMP")) {  // one latency (ns) per line, in append order
    std::ofstream f(dump);
    for (uint64_t x : lat) f << x << "\n";
  }
  std::vector<double> v(lat.begin(), lat.end());
  add_latency(out, prefix, v, 1e-3, "us", true);
  out.info["P7.rate_per_s"] = c.p7_rate;
  out.info["P7.follower_cpu"] = c.p7_follower_cpu;
  std::fprintf(stderr, "  %s: %s p50 %.1f us, p99 %.1f us\n", peer.c_str(), prefix.c_str(),
               out.figures[prefix + ".p50_us"].get<double>(), out.figures[prefix + ".p99_us"].get<double>());
}

// The reader side of P7 (its own process). Writes the latencies (ns, u64 each)
// to out_fd.
int p7_follower_main(const config& c, const std::string& peer, const std::string& store, const std::string& fds,
                     const std::string& policy) {
  int ready_fd = -1, out_fd = -1;
  if (std::sscanf(fds.c_str(), "%d,%d", &ready_fd, &out_fd) != 2) die("--p7-fds: " + fds);
  const uint64_t n = c.p7_events;
  std::vector<uint64_t> lat;
  if (c.p7_follower_cpu >= 0) {  // before anything starts a thread
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(c.p7_follower_cpu, &one);
    if (::sched_setaffinity(0, sizeof one, &one) != 0) die("P7 follower: sched_setaffinity: " + std::string(strerror(errno)));
  }
  if (peer == "varve") {
    auto log = varve::event_log::open_read_only(store);
    if (!log) die("P7 follower: " + log.error().to_string());
    varve::subscription_options so;
    if (policy == "spin") so.spin = varve::kForever;
    if (policy == "yield") so.yield = std::chrono::milliseconds(10);
    auto sub = varve::subscription::open(**log, varve::position{}, {}, so);
    if (!sub) die("P7 follower: " + sub.error().to_string());
    lat.reserve(n);
    if (::write(ready_fd, "r", 1) != 1) die("P7 follower: ready pipe");
    varve::event_view e;
    while (lat.size() < n) {
      auto got = sub->next(e, std::chrono::seconds(60));
      if (!got) die("P7 follower: " + got.error().to_string());
      if (!*got) die("P7 follower: no event for 60 s after " + std::to_string(lat.size()));
      lat.push_back(vb::steady_ns() - e.timestamp_ns);
    }
#ifdef VARVE_BENCH_WITH_KAFKA
  } else if (peer == "kafka") {
    lat = vb::kafka_p7_follow(c.kafka_brokers, store, n, ready_fd);
#endif
  } else {
    die("P7 follower: no reader for peer " + peer);
  }
  const char* b = reinterpret_cast<const char*>(lat.data());
  size_t left = lat.size() * sizeof(uint64_t);
  while (left) {
    const ssize_t w = ::write(out_fd, b, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return 1;
    b += w;
    left -= static_cast<size_t>(w);
  }
  return 0;
}

// Writes every page of `mb` MiB of anonymous memory, then frees it. On a
// virtual machine whose free pages are handed back to the host (virtio-balloon
// free page reporting, as on Firecracker guests), the first touch of such a
// page costs a host fault: ~3 us per 4 KiB, 0.3-0.6 GB/s, paid by whichever
// peer allocates fresh memory (a varve segment, the write(2) log's page
// cache). Memory freed here is reused first for ~2 s (until the kernel
// reports it), so the P1 that follows measures the store, not the host.
void warm_memory(uint64_t mb) {
  if (mb == 0) return;
  const size_t n = static_cast<size_t>(mb) << 20;
  void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("--warm-memory-mb: cannot map " + std::to_string(mb) + " MiB");
  const long page = ::sysconf(_SC_PAGESIZE);
  for (size_t i = 0; i < n; i += static_cast<size_t>(page)) static_cast<volatile char*>(p)[i] = 1;
  ::munmap(p, n);
}

// Runs the phases for a store-backed peer. make() returns a fresh peer object.
template <class Make>
void run_store_peer(const std::string& peer, const peer_info& pi, const config& c, const vb::es1_data& d,
                    const std::string& dir, Make&& make, child_out& out) {
  auto want = [&](const char* ph) { return c.has(ph) && pi.phases.count(ph); };
  const uint64_t E = c.events;

  // ---- P1 (and the load P4 and P5 read) ----
  if (want("P1") || want("P4") || want("P5")) {
    ::sync();
    warm_memory(c.warm_memory_mb);
    auto p = make();
    const std::string sdir = dir + "/load";
    p->create(sdir);
    const uint64_t t0 = vb::steady_ns();
    for (uint64_t i = 0; i < E; ++i) p->append(d, i);
    // A Kafka append is done when the broker acknowledges it, not when
    // produce() queues it: P1's time runs to the last acknowledgement.
    if constexpr (requires { p->wait_acknowledged(); }) p->wait_acknowledged();
    const uint64_t t1 = vb::steady_ns();
    if constexpr (requires { p->load_figures(); })
      if (want("P1"))
        for (auto& [name, value] : p->load_figures())
          out.add("P1." + name, value, name.ends_with("_us") ? "us" : "count");
    p->finish_load();
    const uint64_t t2 = vb::steady_ns();
    const double secs = static_cast<double>(t1 - t0) / 1e9;
    if (want("P1")) {
      out.add("P1.events_per_s", static_cast<double>(E) / secs, "events/s");
      out.add("P1.payload_MB_per_s", static_cast<double>(E * vb::kPayloadBytes) / secs / 1e6, "MB/s");
      out.add("P1.ns_per_event", secs * 1e9 / static_cast<double>(E), "ns");
    }
    out.add("load.settle_s", static_cast<double>(t2 - t1) / 1e9, "s");
    // Once: a reopened varve log may pre-allocate its next segment later.
    double disk = static_cast<double>(vb::bytes_on_disk(sdir));
    if constexpr (requires { p->disk_bytes(); }) disk = static_cast<double>(p->disk_bytes());  // in the broker
    if (disk > 0) {  // a Kafka broker we did not start: its disk is not ours to see
      out.add("disk.bytes", disk, "B");
      out.add("disk.bytes_per_event", disk / static_cast<double>(E), "B");
    }
    std::fprintf(stderr, "  %s: P1 %.2f M events/s, settled in %.2f s\n", peer.c_str(), E / secs / 1e6,
                 static_cast<double>(t2 - t1) / 1e9);

    // ---- P4 ----
    verify_store(*p, d, E, "P1/P4 store", out);  // untimed; also warms the page cache
    if (want("P4")) {
      std::vector<double> eps, pgbs, sgbs;
      uint64_t sum = 0;
      for (int k = 0; k < c.p4_scans; ++k) {
        uint64_t rb = 0;
        const uint64_t a = vb::steady_ns();
        const uint64_t n = p->scan([&](const std::byte* payload, size_t len) { sum += vb::touch(payload, len); }, rb);
        const double s = static_cast<double>(vb::steady_ns() - a) / 1e9;
        if (n != E) die(peer + " P4: scan returned " + std::to_string(n) + " events");
        eps.push_back(static_cast<double>(n) / s);
        pgbs.push_back(static_cast<double>(n * vb::kPayloadBytes) / s / 1e9);
        sgbs.push_back(static_cast<double>(rb) / s / 1e9);
      }
      asm volatile("" ::"r"(sum));
      out.add("P4.events_per_s", vb::median(eps), "events/s");
      out.add("P4.payload_GB_per_s", vb::median(pgbs), "GB/s");
      out.add("P4.record_GB_per_s", vb::median(sgbs), "GB/s");
      // Peers whose scan checks every record's XXH3: comparable with the
      // ceiling's verified read of the same bytes.
      if (peer == "varve" || peer == "writelog") {
        out.add("P4.verified_record_GB_per_s", vb::median(sgbs), "GB/s");
        out.add("P4.verified_events_per_s", vb::median(eps), "events/s");
        // The same figure against the ceiling that also consumes payloads.
        out.add("P4.verified_consumed_record_GB_per_s", vb::median(sgbs), "GB/s");
      }
      std::fprintf(stderr, "  %s: P4 %.2f M events/s\n", peer.c_str(), vb::median(eps) / 1e6);
    }

    // ---- P5 ----
    if (want("P5")) {
      const vb::expected_t exp = vb::expected_of(d);
      std::vector<uint32_t> list = vb::draw_p5_aggregates(c.p5_aggregates, c.aggregates);
      if ((peer == "writelog" || peer == "kafka") && list.size() > c.writelog_p5_aggregates)
        list.resize(c.writelog_p5_aggregates);  // no per-aggregate read: each one is a full scan
      std::vector<double> aps, eps, p50, p99, p999;
      uint64_t mismatches = 0, events = 0;
      std::vector<double> lat(list.size());
      for (int rep = -1; rep < c.p5_reps; ++rep) {  // rep -1: untimed warm-up
        events = 0;
        const uint64_t t0 = vb::steady_ns();
        for (size_t i = 0; i < list.size(); ++i) {
          const uint64_t a = vb::steady_ns();
          vb::agg_read r = p->read_aggregate(list[i]);
          lat[i] = static_cast<double>(vb::steady_ns() - a);
          events += r.count;
          const uint32_t g = list[i];
          if (r.count != exp.count[g] || r.checksum != exp.checksum[g] || !r.in_order) {
            if (mismatches < 10)
              std::fprintf(stderr, "MISMATCH %s aggregate %u: %" PRIu64 " events (expected %u), order %s\n",
                           peer.c_str(), g, r.count, exp.count[g], r.in_order ? "ok" : "WRONG");
            ++mismatches;
          }
        }
        const double secs = static_cast<double>(vb::steady_ns() - t0) / 1e9;
        if (rep < 0) continue;
        aps.push_back(static_cast<double>(list.size()) / secs);
        eps.push_back(static_cast<double>(events) / secs);
        std::vector<double> s = lat;
        std::sort(s.begin(), s.end());
        p50.push_back(vb::percentile_sorted(s, 50) / 1e3);
        p99.push_back(vb::percentile_sorted(s, 99) / 1e3);
        p999.push_back(vb::percentile_sorted(s, 99.9) / 1e3);
      }
      out.verify["P5"] = {{"aggregates_per_pass", list.size()}, {"passes", c.p5_reps + 1},
                          {"events_per_pass", events}, {"mismatches", mismatches}, {"ok", mismatches == 0}};
      if (mismatches) die(peer + " P5: " + std::to_string(mismatches) + " aggregate reads did not match");
      out.add("P5.aggregates_per_s", vb::median(aps), "aggregates/s");
      out.add("P5.events_per_s", vb::median(eps), "events/s");
      out.add("P5.p50_us", vb::median(p50), "us");
      out.add("P5.p99_us", vb::median(p99), "us");
      out.add("P5.p99.9_us", vb::median(p999), "us");
      out.info["P5.aggregates_read"] = list.size();
      std::fprintf(stderr, "  %s: P5 %.1f k aggregates/s\n", peer.c_str(), vb::median(aps) / 1e3);
    }
    p->close();
    if (!c.keep) vb::remove_tree(sdir);
  }

  // ---- P6 ----
  if (want("P6")) {
    const uint64_t n = c.p6_events;
    std::vector<uint64_t> raw(1'000'000, 1);
    for (auto& r : raw) {  // timer overhead: an empty timed region
      const uint64_t a = vb::steady_ns();
      asm volatile("");
      r = vb::steady_ns() - a;
    }
    std::sort(raw.begin(), raw.end());
    out.add("P6.timer_p50_ns", static_cast<double>(raw[raw.size() / 2]), "ns");
    ::sync();
    auto p = make();
    const std::string sdir = dir + "/p6";
    p->create(sdir);
    raw.assign(n, 1);  // pre-touched
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t a = vb::steady_ns();
      p->append(d, i);
      raw[i] = vb::steady_ns() - a;
    }
    verify_store(*p, d, n, "P6 store", out);
    p->close();
    if (!c.keep) vb::remove_tree(sdir);
    std::vector<double> ns(raw.begin(), raw.end());
    add_latency(out, "P6", ns, 1.0, "ns", true);
    std::fprintf(stderr, "  %s: P6 p99.9 %.0f ns\n", peer.c_str(), out.figures["P6.p99.9_ns"].get<double>());
  }

  // ---- P3 ----
  if (want("P3")) {
    const uint64_t n = c.p3_events;
    ::sync();
    auto p = make();
    const std::string sdir = dir + "/p3";
    p->create(sdir);
    std::vector<double> lat(n);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t a = vb::steady_ns();
      p->append_durable(d, i);
      lat[i] = static_cast<double>(vb::steady_ns() - a);
    }
    verify_store(*p, d, n, "P3 store", out);
    p->close();
    if (!c.keep) vb::remove_tree(sdir);
    add_latency(out, "P3", lat, 1e-3, "us", false);
    std::fprintf(stderr, "  %s: P3 p50 %.1f us\n", peer.c_str(), out.figures["P3.p50_us"].get<double>());
  }

  // ---- P2 ----
  if (want("P2")) {
    const uint64_t n = c.p2_events, b = c.p2_batch;
    ::sync();
    auto p = make();
    const std::string sdir = dir + "/p2";
    p->create(sdir);
    const uint64_t t0 = vb::steady_ns();
    for (uint64_t i = 0; i < n; i += b) p->append_batch_durable(d, i, std::min(b, n - i));
    const double secs = static_cast<double>(vb::steady_ns() - t0) / 1e9;
    out.add("P2.events_per_s", static_cast<double>(n) / secs, "events/s");
    out.add("P2.batches_per_s", static_cast<double>((n + b - 1) / b) / secs, "batches/s");
    verify_store(*p, d, n, "P2 store", out);
    p->close();
    if (!c.keep) vb::remove_tree(sdir);
    std::fprintf(stderr, "  %s: P2 %.2f M events/s\n", peer.c_str(), n / secs / 1e6);
  }

  // ---- P7 (the peers whose events carry the writer's stamp) ----
  using peer_t = std::remove_reference_t<decltype(*make())>;
  if constexpr (requires(peer_t& q) { q.append_stamped(d, 0, 0); }) {
    if (want("P7")) {
      std::vector<std::string> policies = {"park"};
      if (peer == "varve") policies = split(c.p7_follow);
      for (const std::string& policy : policies) {
        auto p = make();
        run_p7(peer, c, d, dir + "/p7", *p, out, policy);
      }
    }
  }
  if (peer == "varve" && want("P8")) {
    run_p8(c, dir + "/p8", out);
    if (!c.keep) vb::remove_tree(dir + "/p8");
  }
  if (peer == "varve" && want("P9")) {
    run_p9(c, dir + "/p9", out);
    if (!c.keep) vb::remove_tree(dir + "/p9");
  }
  if (peer == "varve" && want("P10")) {
    run_p10(c, dir + "/p10", out);
    if (!c.keep) vb::remove_tree(dir + "/p10");
  }
}

// Runs a sibling benchmark (built beside this binary) with `args`, its
// output into our log, and returns the JSON it wrote to `json_path`; any
// failure ends the run, naming the phase.
json run_sibling(const std::string& phase, const std::string& name, std::vector<std::string> args,
                 const std::string& json_path) {
  const std::string exe = std::filesystem::path(self_exe()).parent_path() / name;
  args.insert(args.begin(), exe);
  const pid_t pid = ::fork();
  if (pid < 0) die("fork: " + std::string(strerror(errno)));
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::dup2(STDERR_FILENO, STDOUT_FILENO);  // its table goes to the log, not into ours
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "%s: %s\n", exe.c_str(), strerror(errno));
    ::_exit(127);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    die(phase + ": " + exe + " failed (is it built? cmake --build ... --target " + name + ")");
  try {
    return json::parse(std::ifstream(json_path));
  } catch (const std::exception& e) {
    die(phase + ": " + json_path + ": " + e.what());
  }
}

// A label fit for a figure's name: "replay uring 1t direct" -> "replay_uring_1t_direct".
std::string figure_name(std::string s) {
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

void p9_figures(const json& j, const std::string& prefix, child_out& out);

// P9: replay of an ES-1 log of E events, warm, by varve-replay-bench (its
// median of 3 per point): log_reader alone on one thread (the baseline with
// no partitions), then replay() with the automatic backend on each of
// --p9-threads worker counts, a trivial projection (count by type) and one
// that spins 200 ns per event. Figures P9.<projection>_<W>t_events_per_s and
// P9.<projection>_speedup_<W>t (against the first worker count). Twice: the
// projections partitioned by stream (replay::run, over event_refs), then the
// same projections merged (replay::run_merged: P9.merged_<projection>_...).
void run_p9(const config& c, const std::string& dir, child_out& out) {
  std::filesystem::create_directories(dir);
  for (const std::string form : {"refs", "merged"}) {
    const std::string prefix = form == "merged" ? "merged_" : "";
    const std::string json_path = dir + "/p9-" + form + ".json";
    json j = run_sibling("P9", "varve-replay-bench",
                         {"--events", std::to_string(c.events), "--aggregates", std::to_string(c.aggregates),
                          "--segment-bytes", std::to_string(c.segment_bytes), "--dir", dir + "/log", "--threads",
                          c.p9_threads, "--io", "auto", "--work-ns", "200", "--reps", "3", "--form", form,
                          "--json", json_path},
                         json_path);
    p9_figures(j, prefix, out);
  }
  std::fprintf(stderr, "  varve: P9 replay trivial %.2f M events/s on 1 thread, merged %.2f M on 1, %.2f M on 2\n",
               out.figures.value("P9.trivial_1t_events_per_s", 0.0) / 1e6,
               out.figures.value("P9.merged_trivial_1t_events_per_s", 0.0) / 1e6,
               out.figures.value("P9.merged_trivial_2t_events_per_s", 0.0) / 1e6);
}

void p9_figures(const json& j, const std::string& prefix, child_out& out) {
  std::map<std::string, std::map<uint32_t, double>> rate;  // projection -> workers -> events/s
  for (const json& r : j.at("runs")) {
    const std::string proj = prefix + r.at("projection").get<std::string>();
    const double eps = r.at("events_per_s").get<double>();
    if (r.at("io") == "log_reader") {
      out.add("P9." + proj + "_reader_events_per_s", eps, "events/s");
      continue;
    }
    const uint32_t w = r.at("threads").get<uint32_t>();
    rate[proj][w] = eps;
    out.add("P9." + proj + "_" + std::to_string(w) + "t_events_per_s", eps, "events/s");
  }
  // Speedups against one worker (the targets' base), when 1 was measured.
  for (const auto& [proj, by_w] : rate) {
    auto one = by_w.find(1);
    if (one == by_w.end()) continue;
    for (const auto& [w, eps] : by_w)
      out.add("P9." + proj + "_speedup_" + std::to_string(w) + "t", eps / one->second, "x");
  }
}

// P10: cold reads, by varve-cold-read: a log of --p10-gib GiB, evicted from
// the page cache before every pass; the ceiling is io_uring O_DIRECT reads of
// the same files at the best of depths 4, 16, 64 (nothing validated); then
// the chunk reader (io_uring, buffered and with O_DIRECT) and replay() with
// io_uring on 1 and 2 workers (buffered and direct). Figures
// P10.ceiling_MB_per_s, P10.<reader>_MB_per_s, P10.<reader>_over_ceiling.
void run_p10(const config& c, const std::string& dir, child_out& out) {
  std::filesystem::create_directories(dir);
  const std::string json_path = dir + "/p10.json";
  char gib[32];
  std::snprintf(gib, sizeof gib, "%g", c.p10_gib);
  json j = run_sibling("P10", "varve-cold-read",
                       {"--gib", gib, "--dir", dir + "/log", "--segment-mib", std::to_string(c.segment_bytes >> 20),
                        "--backends", "uring", "--replay-threads", "1,2", "--reps", "3", "--json", json_path},
                       json_path);
  out.add("P10.ceiling_MB_per_s", j.at("ceiling_mb_s").get<double>(), "MB/s");
  out.add("P10.dd_MB_per_s", j.at("dd_mb_s").get<double>(), "MB/s");
  out.info["P10.ceiling_depth"] = j.at("ceiling_depth");
  out.info["P10.bytes"] = j.at("bytes");
  for (const auto& [name, b] : j.at("backends").items()) {
    out.add("P10." + figure_name(name) + "_MB_per_s", b.at("cold_mb_s").get<double>(), "MB/s");
    out.add("P10." + figure_name(name) + "_over_ceiling", b.at("cold_over_ceiling").get<double>(), "x");
  }
  std::fprintf(stderr, "  varve: P10 cold: ceiling %.0f MB/s, replay (1 worker) %.0f MB/s\n",
               j.at("ceiling_mb_s").get<double>(), out.figures.value("P10.replay_uring_1t_MB_per_s", 0.0));
}

// P8: consumer groups, by varve-group-bench (built beside this binary): its
// JSON's figures become P8.*. Hand-off at P7's size and pace; 3 takeovers
// with a 1 s session timeout.
void run_p8(const config& c, const std::string& dir, child_out& out) {
  const std::string json_path = dir + "/p8.json";
  std::filesystem::create_directories(dir);
  json j = run_sibling("P8", "varve-group-bench",
                       {"--events", std::to_string(c.p7_events), "--rate", std::to_string(c.p7_rate),
                        "--partitions", "8", "--session-timeout-ms", "1000", "--takeovers", "3", "--json", json_path},
                       json_path);
  for (const char* q : {"p50", "p99", "p99.9", "max"})
    out.add(std::string("P8.handoff_") + q + "_us", j.at("handoff_us").at(q).get<double>(), "us");
  out.add("P8.takeover_ms", j.at("takeover_ms").at("median").get<double>(), "ms");
  out.info["P8.session_timeout_ms"] = 1000;
  out.info["P8.partitions"] = 8;
  std::fprintf(stderr, "  varve: P8 hand-off p50 %.1f us, takeover %.0f ms (session timeout 1000 ms)\n",
               out.figures["P8.handoff_p50_us"].get<double>(), out.figures["P8.takeover_ms"].get<double>());
}

// The ceilings (WORKLOAD.md): memcpy of varve's record stream into a
// pre-faulted anonymous buffer (P1); a sequential read of every 8-byte word of
// that buffer (P4); write(4 KiB)+fdatasync alone on the same disk (P3), both
// appending to a fresh file and overwriting a preallocated, written one.
void run_ceiling(const config& c, const vb::es1_data& d, const std::string& dir, child_out& out) {
  const uint64_t E = c.events;
  std::filesystem::create_directories(dir);
  uint32_t record_bytes;
  {
    vb::varve_peer probe(varve::durability::none, c.segment_bytes);
    probe.create(dir + "/probe");
    probe.append(d, 0);
    record_bytes = probe.first_record_bytes();
    probe.close();
    vb::remove_tree(dir + "/probe");
  }
  out.info["record_bytes"] = record_bytes;
  if (c.has("P1") || c.has("P4")) {
    const uint64_t bytes = E * record_bytes;
    vb::ceiling_writer cw(record_bytes);
    auto* buf = static_cast<std::byte*>(vb::map_anonymous_prefaulted(bytes));
    const uint64_t t0 = vb::steady_ns();
    for (uint64_t i = 0; i < E; ++i) cw.write(buf + i * record_bytes, d, i);
    const double secs = static_cast<double>(vb::steady_ns() - t0) / 1e9;
    asm volatile("" ::"r"(buf) : "memory");
    // Check: the copied payloads are the generator's.
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    for (uint64_t i = 0; i < E; ++i) XXH3_64bits_update(st, buf + i * record_bytes + cw.header_bytes, vb::kPayloadBytes);
    const uint64_t h = XXH3_64bits_digest(st), want = expected_digest(d, E);
    XXH3_freeState(st);
    out.verify["memcpy buffer"] = {{"events", E}, {"xxh3", hex(h)}, {"expected_xxh3", hex(want)}, {"ok", h == want}};
    if (h != want) die("ceiling: the memcpy buffer's payloads differ from the generator's");
    if (c.has("P1")) {
      out.add("P1.events_per_s", static_cast<double>(E) / secs, "events/s");
      out.add("P1.payload_MB_per_s", static_cast<double>(E * vb::kPayloadBytes) / secs / 1e6, "MB/s");
      out.add("P1.ns_per_event", secs * 1e9 / static_cast<double>(E), "ns");
    }
    if (c.has("P4")) {
      const auto* w = reinterpret_cast<const uint64_t*>(buf);
      const uint64_t words = bytes / 8;
      std::vector<double> gbs;
      for (int k = 0; k < c.p4_scans; ++k) {
        uint64_t sum = 0;
        const uint64_t a = vb::steady_ns();
        for (uint64_t i = 0; i < words; ++i) sum += w[i];
        const double s = static_cast<double>(vb::steady_ns() - a) / 1e9;
        asm volatile("" ::"r"(sum));
        gbs.push_back(static_cast<double>(words * 8) / s / 1e9);
      }
      out.add("P4.record_GB_per_s", vb::median(gbs), "GB/s");
      out.add("P4.events_per_s", vb::median(gbs) * 1e9 / record_bytes, "events/s");
      out.add("P4.payload_GB_per_s", vb::median(gbs) * vb::kPayloadBytes / record_bytes, "GB/s");
      // The verified-read ceiling: the same bytes, each record's XXH3 taken.
      std::vector<double> vgbs;
      uint64_t mismatches = 0;
      for (int k = 0; k < c.p4_scans; ++k) {
        const uint64_t a = vb::steady_ns();
        mismatches += vb::verified_scan(buf, E, record_bytes);
        const double s = static_cast<double>(vb::steady_ns() - a) / 1e9;
        vgbs.push_back(static_cast<double>(bytes) / s / 1e9);
      }
      // The ceiling's records leave the checksum slot zero: every one differs.
      if (mismatches != E * static_cast<uint64_t>(c.p4_scans)) die("ceiling: verified scan miscounted");
      out.add("P4.verified_record_GB_per_s", vb::median(vgbs), "GB/s");
      out.add("P4.verified_events_per_s", vb::median(vgbs) * 1e9 / record_bytes, "events/s");
      // And with P4's consumer (the peers' scans hand each payload to it).
      std::vector<double> cgbs;
      uint64_t payload_sum = 0;
      for (int k = 0; k < c.p4_scans; ++k) {
        const uint64_t a = vb::steady_ns();
        mismatches += vb::verified_scan_consumed(buf, E, record_bytes, vb::kPayloadBytes, payload_sum);
        const double s = static_cast<double>(vb::steady_ns() - a) / 1e9;
        cgbs.push_back(static_cast<double>(bytes) / s / 1e9);
      }
      asm volatile("" ::"r"(payload_sum));
      if (mismatches != 2 * E * static_cast<uint64_t>(c.p4_scans)) die("ceiling: verified scan miscounted");
      out.add("P4.verified_consumed_record_GB_per_s", vb::median(cgbs), "GB/s");
    }
    munmap(buf, bytes);
  }
  if (c.has("P3")) {
    std::vector<std::byte> page(4096);
    std::memcpy(page.data(), d.payload_of(0), vb::kPayloadBytes);
    for (int variant = 0; variant < 2; ++variant) {  // 0: append to a fresh file; 1: overwrite in place
      const std::string path = dir + (variant ? "/overwrite.dat" : "/append.dat");
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) die("open " + path + ": " + strerror(errno));
      const uint64_t n = c.p3_events;
      if (variant) {  // a written, synced file: each fdatasync then carries data only
        for (uint64_t i = 0; i < n; ++i)
          if (::pwrite(fd, page.data(), 4096, static_cast<off_t>(i * 4096)) != 4096) die("pwrite: " + std::string(strerror(errno)));
        if (::fsync(fd) != 0) die("fsync: " + std::string(strerror(errno)));
      }
      ::sync();
      std::vector<double> lat(n);
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t a = vb::steady_ns();
        if (::pwrite(fd, page.data(), 4096, static_cast<off_t>(i * 4096)) != 4096) die("pwrite: " + std::string(strerror(errno)));
        if (::fdatasync(fd) != 0) die("fdatasync: " + std::string(strerror(errno)));
        lat[i] = static_cast<double>(vb::steady_ns() - a);
      }
      ::close(fd);
      ::unlink(path.c_str());
      add_latency(out, variant ? "P3.overwrite" : "P3", lat, 1e-3, "us", false);
    }
    std::fprintf(stderr, "  ceiling: P3 write+fdatasync p50 %.1f us (overwrite %.1f us)\n",
                 out.figures["P3.p50_us"].get<double>(), out.figures["P3.overwrite.p50_us"].get<double>());
  }
}

int child_main(const config& c, const std::string& peer, const std::string& dir) {
  const peer_info* pi = find_peer(peer);
  if (!pi || !pi->available) die("no peer " + peer);
  g_cleanup = c.keep ? "" : dir;
  std::filesystem::create_directories(dir);
  std::fprintf(stderr, "[%s] generating %" PRIu64 " events over %" PRIu64 " aggregates (seed %" PRIu64 ")\n",
               peer.c_str(), c.events, c.aggregates, vb::kSeed);
  const vb::es1_data d = vb::generate_es1(c.events, c.aggregates);
  const uint64_t data_rss = vm_hwm_bytes();
  child_out out;
  if (peer == "varve") {
    run_store_peer(peer, *pi, c, d, dir,
                   [&] { return std::make_unique<vb::varve_peer>(varve::durability::none, c.segment_bytes); }, out);
  } else if (peer == "varve-group") {
    run_store_peer(peer, *pi, c, d, dir,
                   [&] { return std::make_unique<vb::varve_peer>(varve::durability::group, c.segment_bytes); }, out);
  } else if (peer == "varve-sync") {
    run_store_peer(peer, *pi, c, d, dir,
                   [&] { return std::make_unique<vb::varve_peer>(varve::durability::sync, c.segment_bytes); }, out);
  } else if (peer == "writelog") {
    run_store_peer(peer, *pi, c, d, dir, [&] { return std::make_unique<vb::writelog_peer>(c.writelog_buffer); }, out);
#ifdef VARVE_BENCH_WITH_ROCKSDB
  } else if (peer == "rocksdb") {
    run_store_peer(peer, *pi, c, d, dir, [&] { return std::make_unique<vb::rocksdb_peer>(c.rocks_cache_mb); }, out);
    out.info["rocksdb_version"] = vb::rocks_version();
#endif
#ifdef VARVE_BENCH_WITH_KAFKA
  } else if (peer == "kafka") {
    if (c.kafka_brokers.empty()) die("kafka: no --kafka-brokers");
    run_store_peer(peer, *pi, c, d, dir,
                   [&] { return std::make_unique<vb::kafka_peer>(c.kafka_brokers, c.kafka_data_dir, c.p2_batch); },
                   out);
    out.info["librdkafka_version"] = rd_kafka_version_str();
    out.info["brokers"] = c.kafka_brokers;
#endif
  } else if (peer == "ceiling") {
    run_ceiling(c, d, dir, out);
  } else {
    die("no child runner for peer " + peer);
  }
  json j;
  j["peer"] = peer;
  j["figures"] = out.figures;
  j["units"] = out.units;
  j["verify"] = out.verify;
  j["info"] = out.info;
  j["peak_rss_bytes"] = vb::peak_rss_bytes();
  j["data_rss_bytes"] = data_rss;
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  if (!c.keep) vb::remove_tree(dir);
  return 0;
}

// ---------------------------------------------------------------------------
// Parent side.
// ---------------------------------------------------------------------------
std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) die("readlink /proc/self/exe");
  buf[n] = 0;
  return buf;
}

std::vector<std::string> child_args(const config& c) {
  auto u = [](uint64_t v) { return std::to_string(v); };
  return {"--events", u(c.events), "--aggregates", u(c.aggregates), "--p2-events", u(c.p2_events),
          "--p2-batch", u(c.p2_batch), "--p3-events", u(c.p3_events), "--p5-aggregates", u(c.p5_aggregates),
          "--writelog-p5-aggregates", u(c.writelog_p5_aggregates), "--p6-events", u(c.p6_events),
          "--p4-scans", std::to_string(c.p4_scans), "--p5-reps", std::to_string(c.p5_reps),
          "--phases", c.phases, "--segment-bytes", u(c.segment_bytes), "--rocks-cache-mb", u(c.rocks_cache_mb),
          "--writelog-buffer", u(c.writelog_buffer), "--p7-events", u(c.p7_events), "--p7-rate", u(c.p7_rate), "--p7-follow", c.p7_follow,
          "--p7-follower-cpu", std::to_string(c.p7_follower_cpu),
          "--warm-memory-mb", u(c.warm_memory_mb), "--p9-threads", c.p9_threads, "--p10-gib", std::to_string(c.p10_gib)};
}

double load_average() {
  double l[3] = {0, 0, 0};
  return getloadavg(l, 3) > 0 ? l[0] : -1;
}

struct peer_result {
  vb::figures f;
  json last;  // the last rep's child JSON (verify, info, CDF)
  std::vector<double> peak_rss, disk;
};

std::string human(double v, const std::string& unit) {
  char buf[64];
  if (unit == "events/s" || unit == "aggregates/s" || unit == "batches/s") {
    if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2f M/s", v / 1e6);
    else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1f k/s", v / 1e3);
    else std::snprintf(buf, sizeof buf, "%.1f /s", v);
  } else if (unit == "ns") {
    std::snprintf(buf, sizeof buf, "%.0f ns", v);
  } else if (unit == "us") {
    std::snprintf(buf, sizeof buf, v < 100 ? "%.1f us" : "%.0f us", v);
  } else if (unit == "B") {
    if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", v / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1f B", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f %s", v, unit.c_str());
  }
  return buf;
}

// The targets of the benchmark issue, as ratios.
struct target {
  std::string phase, figure, varve, peer;
  bool peer_over_varve;  // ratio = peer/varve (latencies: "N x lower") instead of varve/peer
  std::string op;        // ">=" or "<="
  double bound;
  std::string what;
};

const std::vector<target>& targets() {
  static const std::vector<target> t = {
      {"P1", "P1.events_per_s", "varve", "rocksdb", false, ">=", 20, "P1 varve >= 20x RocksDB"},
      {"P1", "P1.events_per_s", "varve", "writelog", false, ">=", 2, "P1 varve >= 2x write(2) log"},
      {"P1", "P1.events_per_s", "varve", "ceiling", false, ">=", 1.0 / 3, "P1 varve within 3x of memcpy"},
      {"P2", "P2.events_per_s", "varve", "writelog", false, ">=", 1, "P2 varve (none + flush) >= 1x write(2) log"},
      {"P2", "P2.events_per_s", "varve", "rocksdb", false, ">=", 2, "P2 varve (none + flush) >= 2x RocksDB"},
      {"P2", "P2.events_per_s", "varve-group", "writelog", false, ">=", 1, "P2 varve-group >= 1x write(2) log"},
      {"P2", "P2.events_per_s", "varve-group", "rocksdb", false, ">=", 2, "P2 varve-group >= 2x RocksDB"},
      {"P3", "P3.p50_us", "varve", "ceiling", false, "<=", 1.2, "P3 varve (append + flush) p50 <= 1.2x write+fdatasync"},
      {"P3", "P3.p50_us", "varve-group", "ceiling", false, "<=", 1.2, "P3 varve-group p50 <= 1.2x write+fdatasync"},
      {"P3", "P3.p50_us", "varve-sync", "ceiling", false, "<=", 1.2, "P3 varve-sync p50 <= 1.2x write+fdatasync"},
      {"P4", "P4.events_per_s", "varve", "rocksdb", false, ">=", 5, "P4 varve >= 5x RocksDB"},
      {"P4", "P4.record_GB_per_s", "varve", "ceiling", false, ">=", 0.5, "P4 varve >= 50% of seq-read ceiling (record bytes)"},
      {"P4", "P4.verified_record_GB_per_s", "varve", "ceiling", false, ">=", 0.75,
       "P4 varve >= 75% of read+XXH3 ceiling (record bytes)"},
      {"P4", "P4.verified_events_per_s", "varve", "writelog", false, ">=", 1.3,
       "P4 varve >= 1.3x write(2) log's verified scan"},
      // Informational: the ceiling above does not consume the payloads, P4's
      // scans do (every peer's); this one does both.
      {"P4", "P4.verified_consumed_record_GB_per_s", "varve", "ceiling", false, "", 0,
       "P4 varve / read+XXH3+P4's payload consumer (record bytes)"},
      {"P5", "P5.aggregates_per_s", "varve", "rocksdb", false, ">=", 5, "P5 varve >= 5x RocksDB"},
      {"P6", "P6.p99.9_ns", "varve", "rocksdb", true, ">=", 10, "P6 RocksDB p99.9 >= 10x varve's"},
      // Informational (no target): the write(2) log where the issue sets none.
      {"P5", "P5.aggregates_per_s", "varve", "writelog", false, "", 0, "P5 varve / write(2) log (full scans)"},
      {"P6", "P6.p99.9_ns", "varve", "writelog", true, "", 0, "P6 write(2) log p99.9 / varve's"},
      {"P3", "P3.p50_us", "varve", "rocksdb", false, "", 0, "P3 varve p50 / RocksDB p50"},
      {"P3", "P3.p50_us", "varve", "writelog", false, "", 0, "P3 varve p50 / write(2) log p50"},
      // The real Kafka broker (issue 9 asks for the ratios, sets no targets).
      // Throughput: varve/Kafka; latency: Kafka's / varve's ("x lower").
      {"P1", "P1.events_per_s", "varve", "kafka", false, "", 0, "P1 varve / Kafka"},
      {"P2", "P2.events_per_s", "varve", "kafka", false, "", 0, "P2 varve (none + flush) / Kafka (flush.messages)"},
      {"P2", "P2.events_per_s", "varve-group", "kafka", false, "", 0, "P2 varve-group / Kafka (flush.messages)"},
      {"P3", "P3.p50_us", "varve", "kafka", true, "", 0, "P3 Kafka p50 / varve (append + flush) p50"},
      {"P3", "P3.p50_us", "varve-sync", "kafka", true, "", 0, "P3 Kafka p50 / varve-sync p50"},
      {"P4", "P4.events_per_s", "varve", "kafka", false, "", 0, "P4 varve / Kafka consumer"},
      {"P5", "P5.aggregates_per_s", "varve", "kafka", false, "", 0, "P5 varve / Kafka (a partition scan each)"},
      {"P6", "P6.p50_ns", "varve", "kafka", true, "", 0, "P6 Kafka produce() p50 / varve append p50"},
      {"P6", "P6.p99.9_ns", "varve", "kafka", true, "", 0, "P6 Kafka produce() p99.9 / varve append p99.9"},
      {"P7", "P7.p50_us", "varve", "kafka", true, "", 0, "P7 Kafka p50 / varve subscription p50"},
      {"P7", "P7.p99_us", "varve", "kafka", true, "", 0, "P7 Kafka p99 / varve subscription p99"},
      {"P7", "P7.p99.9_us", "varve", "kafka", true, "", 0, "P7 Kafka p99.9 / varve subscription p99.9"},
  };
  return t;
}

}  // namespace

[[noreturn]] void varve_bench::fatal(const std::string& what) { die(what); }

int main(int argc, char** argv) {
  config c;
  std::string child_peer, child_dir, p7_follower, p7_store, p7_fds, p7_policy = "park";
  std::vector<std::string> available;
  for (auto& p : peer_table())
    if (p.available) available.push_back(p.name);
  std::string all_available;
  for (auto& p : available) all_available += (all_available.empty() ? "" : ",") + p;

  CLI::App app{"varve-bench: the ES-1 workload, phases P1-P7, varve against RocksDB, Apache Kafka and a write(2) "
               "log, with ceilings"};
  app.add_option("--events", c.events, "E: events loaded (P1, P4, P5)")->capture_default_str();
  app.add_option("--aggregates", c.aggregates, "A: aggregates (streams)")->capture_default_str();
  app.add_option("--p2-events", c.p2_events, "events appended in durable batches in P2 (0 = E)")->capture_default_str();
  app.add_option("--p2-batch", c.p2_batch, "events per durable batch in P2")->capture_default_str();
  app.add_option("--p3-events", c.p3_events, "durable single appends in P3")->capture_default_str();
  app.add_option("--p5-aggregates", c.p5_aggregates, "aggregates read per P5 pass (seed 0x5EED0005)")->capture_default_str();
  app.add_option("--writelog-p5-aggregates", c.writelog_p5_aggregates,
                 "aggregates the write(2) log and Kafka read per P5 pass (each one is a full scan)")
      ->capture_default_str();
  app.add_option("--p6-events", c.p6_events, "appends timed one by one in P6")->capture_default_str();
  app.add_option("--p7-events", c.p7_events, "events appended in P7 while another process follows")
      ->capture_default_str();
  app.add_option("--p7-rate", c.p7_rate, "P7's steady append rate (events/s)")->capture_default_str();
  app.add_option("--p7-follow", c.p7_follow,
                 "varve's follow policies in P7, comma-separated, from park (figures P7.*), yield (P7.yield.*) "
                 "and spin (P7.spin.*)")
      ->capture_default_str();
  app.add_option("--p7-follower-cpu", c.p7_follower_cpu,
                 "P7: run the follower on this CPU, and keep the writer's process (its helper threads too) "
                 "off it while it appends (-1: no pinning)")
      ->capture_default_str();
  app.add_option("--p7-policy", p7_policy)->group("");  // internal: the follower's policy
  app.add_option("--p4-scans", c.p4_scans, "timed scans in P4 (median)")->capture_default_str();
  app.add_option("--p5-reps", c.p5_reps, "timed P5 passes (median)")->capture_default_str();
  app.add_option("--reps", c.reps, "run every peer this many times, interleaved; the table shows medians")
      ->capture_default_str();
  app.add_option("--peers", c.peers,
                 "comma-separated, from: " + all_available + " (default: all of them that can run; kafka needs "
                 "Java and Maven, or --kafka-brokers)")
      ->default_str(all_available);
  app.add_option("--skip-peers", c.skip_peers, "comma-separated peers left out of the default set");
  app.add_option("--phases", c.phases, "comma-separated, from P1,P2,P3,P4,P5,P6,P7,P8,P9,P10")->capture_default_str();
  app.add_option("--p9-threads", c.p9_threads, "P9: replay worker counts, comma-separated (speedups are against 1)")
      ->capture_default_str();
  app.add_option("--p10-gib", c.p10_gib, "P10: size of the cold log, GiB")->capture_default_str();
  app.add_option("--dir", c.dir, "data root, one directory per peer (default: a fresh directory under "
                                 "$VARVE_BENCH_DIR or /tmp, removed at exit unless --keep)");
  app.add_option("--json", c.json_file, "write the figures as JSON to this file");
  app.add_option("--segment-bytes", c.segment_bytes, "varve segment capacity")->capture_default_str();
  app.add_option("--rocks-cache-mb", c.rocks_cache_mb, "RocksDB block cache (MiB)")->capture_default_str();
  app.add_option("--writelog-buffer", c.writelog_buffer, "the write(2) log's user-space buffer (bytes)")
      ->capture_default_str();
  app.add_option("--warm-memory-mb", c.warm_memory_mb,
                 "before each peer's P1, write and free this much anonymous memory (on a VM that hands free "
                 "pages back to its host, fresh memory costs a host fault per page; see BENCHMARKS.md)")
      ->capture_default_str();
  app.add_flag("--keep", c.keep, "keep the data directories");
  app.add_option("--kafka-brokers", c.kafka_brokers,
                 "HOST:PORT of a running Kafka broker to use (default: start one per rep with tools/kafka/broker)");
  app.add_option("--kafka-data-dir", c.kafka_data_dir, "that broker's log.dirs, to report bytes on disk");
#ifdef VARVE_SOURCE_DIR
  c.kafka_script = VARVE_SOURCE_DIR "/tools/kafka/broker";
#endif
  app.add_option("--kafka-broker-script", c.kafka_script, "tools/kafka/broker")->capture_default_str();
  app.add_option("--p7-follower", p7_follower)->group("");  // internal: P7's reader
  app.add_option("--p7-store", p7_store)->group("");
  app.add_option("--p7-fds", p7_fds)->group("");
  app.add_option("--child", child_peer)->group("");  // internal: run one peer
  app.add_option("--child-dir", child_dir)->group("");
  CLI11_PARSE(app, argc, argv);

  if (c.events == 0 || c.aggregates == 0 || c.aggregates > UINT32_MAX || c.p2_batch == 0 || c.p3_events == 0 ||
      c.p5_aggregates == 0 || c.p6_events == 0 || c.p7_events == 0 || c.p7_rate == 0 || c.p7_rate > 1'000'000'000 ||
      c.p4_scans < 1 || c.p5_reps < 1 || c.reps < 1)
    die("sizes must be positive");
  if (c.p7_follower_cpu < -1 || c.p7_follower_cpu >= CPU_SETSIZE)
    die("--p7-follower-cpu " + std::to_string(c.p7_follower_cpu) + ": a CPU number, or -1 for no pinning");
  if (c.p2_events == 0) c.p2_events = c.events;
  c.p2_events = std::min(c.p2_events, c.events);
  c.p3_events = std::min(c.p3_events, c.events);
  c.p6_events = std::min(c.p6_events, c.events);
  c.p7_events = std::min(c.p7_events, c.events);
  for (auto& p : split(c.phases))
    if (std::find(kAllPhases.begin(), kAllPhases.end(), p) == kAllPhases.end())
      die("unknown phase " + p + " (known: P1,P2,P3,P4,P5,P6,P7)");

  if (!p7_follower.empty()) return p7_follower_main(c, p7_follower, p7_store, p7_fds, p7_policy);
  if (!child_peer.empty()) return child_main(c, child_peer, child_dir);

  const bool default_peers = c.peers.empty();
  std::vector<std::string> peers = default_peers ? available : split(c.peers);
  for (auto& p : split(c.skip_peers)) {
    if (!find_peer(p)) die("unknown peer " + p + " in --skip-peers (known: " + all_available + ")");
    peers.erase(std::remove(peers.begin(), peers.end(), p), peers.end());
  }
  if (peers.empty()) die("no peers left to run");
  for (auto& p : peers) {
    const peer_info* pi = find_peer(p);
    if (!pi) die("unknown peer " + p + " (known: " + all_available + ")");
    if (!pi->available) die("peer " + p + " cannot run: " + pi->why_not);
  }
  // Kafka with a broker of our own: that its start works is known only by
  // starting one. By default a broker that cannot be had (no Java or Maven:
  // the script exits 2) leaves Kafka out, said once; asked for by name, it is
  // an error.
  const bool own_broker = c.kafka_brokers.empty();
  if (std::find(peers.begin(), peers.end(), "kafka") != peers.end() && own_broker) {
    if (c.kafka_script.empty() || !std::filesystem::exists(c.kafka_script))
      die("kafka: no broker script (--kafka-broker-script tools/kafka/broker, or --kafka-brokers HOST:PORT)");
  }

  // The data root.
  std::string root;
  bool made_root = false;
  if (c.dir.empty()) {
    root = vb::make_scratch_dir(vb::scratch_root(), "varve-bench");
    made_root = true;
  } else {
    root = c.dir;
    std::filesystem::create_directories(root);
  }
  if (!c.keep && made_root) g_cleanup = root;

  const std::string self = self_exe();
  std::map<std::string, peer_result> res;
  const double load0 = load_average();
  const std::string date = vb::utc_now_iso();
  bool skipped_kafka = false;
  for (int rep = 0; rep < c.reps; ++rep) {
    for (auto& p : peers) {
      if (p == "kafka" && skipped_kafka) continue;
      const std::string pdir = root + "/" + p;
      vb::remove_tree(pdir);
      std::fprintf(stderr, "rep %d/%d: %s\n", rep + 1, c.reps, p.c_str());
      std::vector<std::string> argv = {self, "--child", p, "--child-dir", pdir};
      for (auto& a : child_args(c)) argv.push_back(a);
      if (c.keep) argv.push_back("--keep");
      if (p == "kafka") {
        std::string addr = c.kafka_brokers, data = c.kafka_data_dir;
        if (own_broker) {  // a fresh broker per rep, running only while Kafka is measured
          const std::string bdir = root + "/kafka-broker";
          vb::remove_tree(bdir);
          const int rc = start_broker(c.kafka_script, bdir, addr);
          if (rc == 2 && default_peers && rep == 0) {
            std::fprintf(stderr, "varve-bench: leaving Kafka out (the line above says why; --kafka-brokers "
                                 "HOST:PORT uses a running broker)\n");
            skipped_kafka = true;
            continue;
          }
          if (rc == 2)  // exit 2 as well, so that a test can skip
            die("kafka: no broker can be had here (the line above says why; --kafka-brokers HOST:PORT uses a "
                "running one)", 2);
          if (rc != 0) die("kafka: tools/kafka/broker start failed (exit " + std::to_string(rc) + ")");
          data = bdir + "/data";
          std::fprintf(stderr, "rep %d/%d: kafka broker at %s\n", rep + 1, c.reps, addr.c_str());
        }
        argv.insert(argv.end(), {"--kafka-brokers", addr});
        if (!data.empty()) argv.insert(argv.end(), {"--kafka-data-dir", data});
      }
      std::string out;
      const bool ok = vb::run_capture(argv, out).has_value();
      if (p == "kafka") stop_broker();
      if (!ok) die("peer " + p + " failed (rep " + std::to_string(rep + 1) + ")");
      json j;
      try {
        j = json::parse(out);
      } catch (const std::exception& e) {
        die("peer " + p + ": cannot parse its output: " + e.what());
      }
      auto& r = res[p];
      for (auto& [k, v] : j["figures"].items()) r.f.add(k, v.get<double>(), j["units"][k].get<std::string>());
      r.peak_rss.push_back(j["peak_rss_bytes"].get<double>());
      r.last = j;
      if (!c.keep) vb::remove_tree(pdir);
    }
  }
  const double load1 = load_average();
  if (skipped_kafka) peers.erase(std::find(peers.begin(), peers.end(), "kafka"));

  // ---- table ----
  std::printf("varve-bench  ES-1  E=%" PRIu64 " A=%" PRIu64 " seed=%" PRIu64 "  P2 %" PRIu64 " events in batches of %"
              PRIu64 "  P3 %" PRIu64 "  P5 %" PRIu64 " aggregates (writelog %" PRIu64 ")  P6 %" PRIu64
              "  P7 %" PRIu64 " at %" PRIu64 "/s  reps=%d (medians)\n",
              c.events, c.aggregates, vb::kSeed, c.p2_events, c.p2_batch, c.p3_events, c.p5_aggregates,
              std::min(c.writelog_p5_aggregates, c.p5_aggregates), c.p6_events, c.p7_events, c.p7_rate, c.reps);
  std::printf("machine: %s, %ld cores, %s, %s on %s; load average %.2f before, %.2f after; %s\n",
              vb::cpu_model().c_str(), vb::online_cores(), vb::kernel_release().c_str(),
              vb::filesystem_type(root).c_str(), root.c_str(), load0, load1, date.c_str());
  if (c.warm_memory_mb)
    std::printf("memory: %" PRIu64 " MiB written and freed before each peer's P1 (--warm-memory-mb)\n",
                c.warm_memory_mb);
  std::set<std::string> keys;
  for (auto& [p, r] : res)
    for (auto& [k, v] : r.f.v) keys.insert(k);
  std::printf("\n%-24s", "figure (median)");
  for (auto& p : peers) std::printf(" %13s", p.c_str());
  std::printf("\n");
  for (auto& k : keys) {
    if (k.find("timer") != std::string::npos) continue;
    std::printf("%-24s", k.c_str());
    for (auto& p : peers) {
      auto& r = res[p];
      std::printf(" %13s", r.f.has(k) ? human(r.f.med(k), r.f.unit[k]).c_str() : "-");
    }
    std::printf("\n");
  }
  std::printf("%-24s", "peak RSS");
  for (auto& p : peers) std::printf(" %13s", human(vb::median(res[p].peak_rss), "B").c_str());
  std::printf("\n");
  std::printf("%-24s", "  of which ES-1 data");  // the generator's arrays, the same in every child
  for (auto& p : peers) std::printf(" %13s", human(res[p].last["data_rss_bytes"].get<double>(), "B").c_str());
  std::printf("\n");

  // ---- ratios against the targets ----
  json ratios = json::array();
  std::printf("\n%-58s %10s %10s %8s\n", "ratio (of medians)", "measured", "target", "met");
  for (auto& t : targets()) {
    if (!res.count(t.varve) || !res.count(t.peer)) continue;
    auto& rv = res[t.varve];
    auto& rp = res[t.peer];
    if (!rv.f.has(t.figure) || !rp.f.has(t.figure)) continue;
    const double a = rv.f.med(t.figure), b = rp.f.med(t.figure);
    const double ratio = t.peer_over_varve ? b / a : a / b;
    const bool has_target = !t.op.empty();
    const bool met = !has_target || (t.op == ">=" ? ratio >= t.bound : ratio <= t.bound);
    char tb[32] = "-";
    if (has_target) std::snprintf(tb, sizeof tb, "%s %.2f", t.op.c_str(), t.bound);
    std::printf("%-58s %9.2fx %10s %8s\n", t.what.c_str(), ratio, tb, has_target ? (met ? "yes" : "NO") : "");
    json e = {{"phase", t.phase}, {"figure", t.figure}, {"varve", t.varve}, {"peer", t.peer},
              {"varve_value", a}, {"peer_value", b}, {"ratio", ratio},
              {"ratio_is", t.peer_over_varve ? "peer/varve" : "varve/peer"}, {"what", t.what}};
    if (has_target) {
      e["target"] = tb;
      e["met"] = met;
    }
    ratios.push_back(e);
  }
  // Targets on varve's own figures, not ratios to a peer (P6's latency,
  // issue 17's replay and cold reads).
  struct self_target {
    std::string phase, figure, op;
    double bound;
    std::string what;
  };
  const std::vector<self_target> self_targets = {
      {"P6", "P6.p99.9_ns", "<=", 1000, "P6 varve p99.9 <= 1 us"},
      {"P9", "P9.trivial_speedup_2t", ">=", 1.8, "P9 replay (trivial) on 2 threads >= 1.8x one thread"},
      {"P9", "P9.trivial_1t_events_per_s", ">=", 40e6, "P9 replay (trivial) on 1 thread >= 40 M events/s"},
      {"P9", "P9.work200_speedup_2t", "", 0, "P9 replay (200 ns/event) on 2 threads / one thread"},
      {"P9", "P9.merged_trivial_speedup_2t", ">=", 1.8, "P9 merged replay (trivial, run_merged) on 2 threads >= 1.8x one thread"},
      {"P9", "P9.merged_trivial_2t_events_per_s", "", 0, "P9 merged replay (trivial) on 2 threads, events/s"},
      {"P9", "P9.merged_work200_speedup_2t", "", 0, "P9 merged replay (200 ns/event) on 2 threads / one thread"},
      {"P9", "P9.work200_speedup_16t", ">=", 12, "P9 replay (200 ns/event) on 16 threads >= 12x one thread"},
      {"P9", "P9.trivial_16t_events_per_s", ">=", 100e6, "P9 replay (trivial) on 16 threads >= 100 M events/s"},
      {"P10", "P10.replay_uring_1t_over_ceiling", ">=", 0.9, "P10 cold replay (io_uring, 1 worker) >= 90% of ceiling"},
      {"P10", "P10.replay_uring_1t_direct_over_ceiling", "", 0, "P10 cold replay, O_DIRECT (1 worker) / ceiling"},
      {"P10", "P10.replay_uring_2t_over_ceiling", "", 0, "P10 cold replay (io_uring, 2 workers) / ceiling"},
      {"P10", "P10.uring_direct_over_ceiling", "", 0, "P10 cold chunk reader, O_DIRECT / ceiling"},
  };
  for (const auto& t : self_targets) {
    if (!res.count("varve") || !res["varve"].f.has(t.figure)) continue;
    const double v = res["varve"].f.med(t.figure);
    const bool has_target = !t.op.empty();
    const bool met = !has_target || (t.op == ">=" ? v >= t.bound : v <= t.bound);
    const bool rate = t.figure.find("_per_s") != std::string::npos;
    const bool ns = t.figure.size() > 3 && t.figure.compare(t.figure.size() - 3, 3, "_ns") == 0;
    char tb[32] = "-", mv[32];
    if (has_target)
      std::snprintf(tb, sizeof tb, rate ? "%s %.0f M" : ns ? "%s %.0f ns" : "%s %.2f", t.op.c_str(),
                    rate ? t.bound / 1e6 : t.bound);
    std::snprintf(mv, sizeof mv, rate ? "%.2f M" : ns ? "%.0f ns" : "%.2fx", rate ? v / 1e6 : v);
    std::printf("%-58s %10s %10s %8s\n", t.what.c_str(), mv, tb, has_target ? (met ? "yes" : "NO") : "");
    json e = {{"phase", t.phase}, {"figure", t.figure}, {"varve", "varve"}, {"varve_value", v}, {"what", t.what}};
    if (has_target) {
      e["target"] = tb;
      e["met"] = met;
    }
    ratios.push_back(e);
  }
  std::printf("every peer read back what it wrote: ok (count and XXH3 of all payloads per store; P5 per aggregate)\n");

  // ---- JSON ----
  if (!c.json_file.empty()) {
    json j;
    j["benchmark"] = "varve-bench";
    j["workload"] = "ES-1";
    j["date"] = date;
    j["machine"] = {{"cpu", vb::cpu_model()},
                    {"cores", vb::online_cores()},
                    {"kernel", vb::kernel_release()},
                    {"filesystem", vb::filesystem_type(root)},
                    {"load_average_before", load0},
                    {"load_average_after", load1}};
    j["config"] = {{"events", c.events},
                   {"aggregates", c.aggregates},
                   {"seed", vb::kSeed},
                   {"p2_events", c.p2_events},
                   {"p2_batch", c.p2_batch},
                   {"p3_events", c.p3_events},
                   {"p5_aggregates", c.p5_aggregates},
                   {"p5_seed", vb::kP5Seed},
                   {"writelog_p5_aggregates", std::min(c.writelog_p5_aggregates, c.p5_aggregates)},
                   {"p6_events", c.p6_events},
                   {"p7_events", c.p7_events},
                   {"p7_rate", c.p7_rate},
                   {"p7_follow", c.p7_follow},
                   {"p7_follower_cpu", c.p7_follower_cpu},
                   {"p9_threads", c.p9_threads},
                   {"p10_gib", c.p10_gib},
                   {"p4_scans", c.p4_scans},
                   {"p5_reps", c.p5_reps},
                   {"reps", c.reps},
                   {"phases", c.phases},
                   {"peers", peers},
                   {"segment_bytes", c.segment_bytes},
                   {"rocks_cache_mb", c.rocks_cache_mb},
                   {"writelog_buffer", c.writelog_buffer},
                   {"warm_memory_mb", c.warm_memory_mb},
                   {"timer", "std::chrono::steady_clock"},
                   {"process", "each peer in a freshly exec'd child process, peers interleaved per rep"}};
#ifdef VARVE_BENCH_WITH_ROCKSDB
    {
      vb::rocks_setup rs = vb::rocks_options(c.rocks_cache_mb);
      json opts = json::object();
      for (auto& [k, v] : rs.described) opts[k] = v;
      opts["writes"] = "P1/P6: one WriteBatch (log + idx) per event, WriteOptions.sync=false; P2: one WriteBatch of "
                       "p2_batch events, sync=true; P3: one WriteBatch per event, sync=true";
      opts["scan"] = "P4: an iterator over cf log from the first key, default ReadOptions";
      j["rocksdb_options"] = opts;
      j["rocksdb_version"] = vb::rocks_version();
    }
#endif
#ifdef VARVE_BENCH_WITH_KAFKA
    if (res.count("kafka")) {
      j["kafka_options"] = {
          {"broker", own_broker ? "tools/kafka/broker: Kafka (version in tools/kafka/pom.xml), one KRaft node on "
                                  "127.0.0.1, a fresh one per rep"
                                : "--kafka-brokers " + c.kafka_brokers},
          {"client", std::string("librdkafka ") + rd_kafka_version_str()},
          {"topic", "one per store, 1 partition, replication 1; P2: flush.messages=p2_batch; P3: flush.messages=1"},
          {"producer", "enable.idempotence=true, acks=all, linger.ms=5 (P3, P7: 0), batch.size=1000000, "
                       "batch.num.messages=100000, compression.type=none, queue.buffering.max.messages=2000000, "
                       "queue.buffering.max.kbytes=1048576; RD_KAFKA_MSG_F_COPY; delivery reports served every "
                       "1024 produce() calls"},
          {"message", "key = aggregate (8 bytes), value = a 140-byte record with an XXH3 checksum (as writelog)"},
          {"appends", "P1: produce() all, timed to the last delivery report; P2: p2_batch produce() then flush(); "
                      "P3: produce() then flush(); P6: produce() timed alone"},
          {"consumer", "assign partition 0 from the beginning, rd_kafka_consume_batch_queue of 4096, "
                       "fetch.max.bytes=52428800, max.partition.fetch.bytes=8388608, queued.min.messages=1000000; "
                       "P7: fetch.wait.max.ms=100, in another process"},
          {"p5", "no per-key read: each aggregate is a scan of the partition"}};
    }
#endif
    json pj = json::object();
    for (auto& p : peers) {
      auto& r = res[p];
      json med = json::object(), units = json::object(), all = json::object();
      for (auto& [k, vals] : r.f.v) {
        med[k] = vb::median(vals);
        units[k] = r.f.unit[k];
        all[k] = vals;
      }
      pj[p] = {{"figures", med},
               {"units", units},
               {"values", all},
               {"peak_rss_bytes", vb::median(r.peak_rss)},
               {"data_rss_bytes", r.last["data_rss_bytes"]},
               {"bytes_on_disk", r.f.has("disk.bytes") ? json(r.f.med("disk.bytes")) : json(nullptr)},
               {"verify", r.last["verify"]},
               {"info", r.last["info"]}};
    }
    j["peers"] = pj;
    j["ratios"] = ratios;
    std::ofstream out(c.json_file);
    out << j.dump(2) << "\n";
    if (!out) die("could not write " + c.json_file);
  }

  if (made_root && !c.keep) vb::remove_tree(root);
  else if (c.keep) std::fprintf(stderr, "kept %s\n", root.c_str());
  return 0;
}
