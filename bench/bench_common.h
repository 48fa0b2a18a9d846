// Shared helpers for varve's benchmarks: the ES-1 data generator (so every
// benchmark and every peer sees the same sequence), machine facts for the
// reports, percentiles, and scratch directories.
#pragma once

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace varve_bench {

// ---------------------------------------------------------------------------
// ES-1 data.
//
// The PRNG is splitmix64 seeded with 42 (fully specified, unlike
// std::uniform_int_distribution, so another language or peer can reproduce it).
// For event i = 0, 1, ..., E-1, in order:
//   a         = next()                    one draw
//   aggregate = (a * A) >> 64             (128-bit product: uniform in [0, A))
//   payload   = the little-endian bytes of 13 further draws, first 100 kept
//   version   = ++counter[aggregate]      (the aggregate's next version, from 1)
//   type      = version % 8
//   timestamp = i + 1                     (a counter; see --clock-timestamps)
// Stream id: the aggregate number as an integer stream id (stream_id::from_u64).
// ---------------------------------------------------------------------------
struct splitmix64 {
  uint64_t state;
  explicit splitmix64(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

inline constexpr uint64_t kSeed = 42;
inline constexpr size_t kPayloadBytes = 100;

struct es1_data {
  uint64_t events = 0;
  uint64_t aggregates = 0;
  std::vector<uint32_t> aggregate;  // per event
  std::vector<uint32_t> version;    // per event, 1-based
  std::vector<std::byte> payload;   // events * 100 bytes, event i at i*100
  const std::byte* payload_of(uint64_t i) const { return payload.data() + i * kPayloadBytes; }
};

// Draws the ES-1 events one at a time (for logs too large to pre-generate).
class es1_stream {
 public:
  explicit es1_stream(uint64_t aggregates) : aggregates_(aggregates), counter_(aggregates, 0), rng_(kSeed) {}
  // Fills `payload` (kPayloadBytes) and returns the event's aggregate; `version` gets its version.
  uint32_t next(uint32_t& version, std::byte* payload) {
    uint64_t a = rng_.next();
    auto agg = static_cast<uint32_t>((static_cast<unsigned __int128>(a) * aggregates_) >> 64);
    version = ++counter_[agg];
    std::byte buf[13 * 8];
    for (int k = 0; k < 13; ++k) {
      uint64_t x = rng_.next();
      std::memcpy(buf + 8 * k, &x, 8);  // x86-64: little-endian
    }
    std::memcpy(payload, buf, kPayloadBytes);
    return agg;
  }

 private:
  uint64_t aggregates_;
  std::vector<uint32_t> counter_;
  splitmix64 rng_;
};

// Generates all E events up front (about E * 108 bytes: 540 MB for 5 M events)
// so that no PRNG work lands inside a timed loop.
inline es1_data generate_es1(uint64_t events, uint64_t aggregates) {
  es1_data d;
  d.events = events;
  d.aggregates = aggregates;
  d.aggregate.resize(events);
  d.version.resize(events);
  d.payload.resize(events * kPayloadBytes);
  es1_stream gen(aggregates);
  for (uint64_t i = 0; i < events; ++i)
    d.aggregate[i] = gen.next(d.version[i], d.payload.data() + i * kPayloadBytes);
  return d;
}

// ---------------------------------------------------------------------------
// Statistics.
// ---------------------------------------------------------------------------
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Nearest-rank percentile of a sorted vector, p in [0, 100].
template <class T>
T percentile_sorted(const std::vector<T>& sorted, double p) {
  if (sorted.empty()) return T{};
  double rank = p / 100.0 * static_cast<double>(sorted.size());
  size_t idx = rank <= 1 ? 0 : static_cast<size_t>(std::ceil(rank)) - 1;
  if (idx >= sorted.size()) idx = sorted.size() - 1;
  return sorted[idx];
}

// CLOCK_MONOTONIC in ns, and an absolute sleep on it (EINTR resumed): paced
// producers in the latency benchmarks.
inline uint64_t mono_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline void sleep_until_ns(uint64_t t) {
  timespec ts{static_cast<time_t>(t / 1'000'000'000), static_cast<long>(t % 1'000'000'000)};
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------------------
// Machine facts.
// ---------------------------------------------------------------------------
inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) return line.substr(p + 2);
    }
  }
  return "unknown";
}

inline long online_cores() { return sysconf(_SC_NPROCESSORS_ONLN); }

inline std::string kernel_release() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return std::string(u.sysname) + " " + u.release;
}

inline std::string filesystem_type(const std::string& path) {
  struct statfs s{};
  if (statfs(path.c_str(), &s) != 0) return "unknown";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(s.f_type));
      return buf;
    }
  }
}

inline std::string utc_now_iso() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Peak resident set size of this process, bytes.
inline uint64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

// Allocated bytes (st_blocks * 512) of every regular file under `dir`.
inline uint64_t bytes_on_disk(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st{};
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode))
      total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

// ---------------------------------------------------------------------------
// Scratch directories: under $VARVE_BENCH_DIR if set, else /tmp.
// ---------------------------------------------------------------------------
inline std::string scratch_root() {
  const char* env = std::getenv("VARVE_BENCH_DIR");
  return env && *env ? env : "/tmp";
}

inline std::string make_scratch_dir(const std::string& root, const std::string& prefix) {
  std::string tmpl = root + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    std::perror(("mkdtemp " + tmpl).c_str());
    std::exit(2);
  }
  return buf.data();
}

inline void remove_tree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// Figures collected over repetitions: name -> values (one per rep).
struct figures {
  std::map<std::string, std::vector<double>> v;
  std::map<std::string, std::string> unit;
  void add(const std::string& name, double value, const std::string& u) {
    v[name].push_back(value);
    unit[name] = u;
  }
  double med(const std::string& name) const {
    auto it = v.find(name);
    return it == v.end() ? 0 : median(it->second);
  }
  bool has(const std::string& name) const { return v.count(name) != 0; }
};

// Runs `argv` (argv[0] = the program, looked up in PATH when it has no '/')
// in a fresh process and returns its exit status (-1: it could not be
// started or did not exit); `out` gets what it printed on stdout, its stderr
// goes to ours.
inline int run_status(const std::vector<std::string>& argv, std::string& out) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  out.clear();
  char buf[256];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// run_status for "cold process" timings (a benchmark re-executes itself with
// a hidden subcommand): what it printed, or nullopt when it did not exit 0
// (`out` then holds its output, for the error message).
inline std::optional<std::string> run_capture(const std::vector<std::string>& argv, std::string& out) {
  if (run_status(argv, out) != 0) return std::nullopt;
  return out;
}

}  // namespace varve_bench
