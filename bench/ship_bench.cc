// varve-ship-bench: `varve ship` throughput (events/s from a varve log into
// Kafka) against producing the same events straight from memory with
// librdkafka, in the same run, against the same broker (issue 9).
//
//   A  ship     the real CLI, `varve ship LOG --brokers B --topic T
//               --from-beginning --stop-at-end --json`, timed from fork/exec to
//               exit (process start, opening the log, init_transactions, the
//               resume-point scan of the empty topic, every commit, exit).
//   B  memory   the same E records (same key, value, headers, timestamps,
//               partitioner) built from the ES-1 arrays in memory, produced by
//               a producer configured exactly as tools/ship.cc configures its
//               own (transactional.id, idempotence, acks=all, linger.ms=5,
//               timeouts, murmur2_random) and closing transactions by the same
//               rule (an atomic append's end once 10,000 events or 500 ms are
//               reached); timed from rd_kafka_new to rd_kafka_destroy.
//   C  memory, no transactions (--no-plain to skip): B's records and settings
//               without transactional.id: a plain idempotent producer, one
//               flush at the end. B/C is what the transactions cost.
//   A0, B0     A and B again on a log of the first event alone: the fixed cost
//               of starting (exec, open, init_transactions, ship's resume-point
//               scan, librdkafka's first produce to a topic, one commit, exit),
//               so that the per-event rates beyond it can be told apart.
// A/B is what reading and following the log costs on top of Kafka. Also
// reported: the log side alone (an in-process subscription over the log, with
// and without building ship's headers), each run's client and broker CPU, and
// B's time blocked in commit_transaction. Before the reps, --warmup-events go
// through B's producer untimed (a fresh broker JVM is slow for its first
// seconds and creates __transaction_state on first use).
//
// Every topic is consumed afterwards (read_committed) and must hold exactly E
// records, the XXH3 of all values in partition order must equal the digest of
// the ES-1 payloads (one partition; with several, the sum of the per-record
// XXH3s), every aggregate's versions must come 1, 2, 3... and the digest of
// the whole records (key, value, every header) must be the same in A, B and C:
// a run that did not deliver everything, or B producing anything other than
// what ship produces, fails the benchmark.
//
// The log: E ES-1 events (bench_common.h: seed 42, 100-byte payloads, aggregates
// uniform; integer stream ids, type = version % 8, timestamp = i + 1 ns, one
// event per append, as bench/peers/varve.h writes them), closed; or --log DIR
// (built there if absent, else checked to hold exactly these events). Before
// the runs the log is read once, untimed: to check it and to learn each event's
// position (assigned by the log, carried in the varve.position header; the
// only value of B's records that is not in the ES-1 arrays). That read also
// leaves the log in the page cache, so A reads it warm.
//
// The broker: tools/kafka/broker start into the scratch directory (stopped at
// the end, also on error), unless --brokers HOST:PORT. Topics are created per
// run and rep (librdkafka's admin API; --partitions N, default 1) and deleted
// once verified. Exit 0; 2 when no broker can be had (the reason); 1 on any
// other failure (what failed).
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <CLI/CLI.hpp>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_common.h"
#include "base/meta_file.h"
#include "es1_check.h"
#include "peers/varve.h"
#include "varve/varve.h"

namespace vb = varve_bench;
using json = nlohmann::json;

namespace {

constexpr const char* kProg = "varve-ship-bench";

// What fatal() cleans up: the broker we started, a child still running, the
// scratch directory.
struct cleanup_state {
  std::string broker_script;
  std::string broker_dir;  // non-empty while a broker we started may run
  std::string scratch;     // removed unless keep
  bool keep = false;
  pid_t child = -1;
};
cleanup_state g_clean;
volatile sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

void stop_broker() {
  if (g_clean.broker_dir.empty()) return;
  const std::string dir = g_clean.broker_dir;
  g_clean.broker_dir.clear();
  pid_t pid = fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 1);
    execl("/bin/bash", "bash", g_clean.broker_script.c_str(), "stop", dir.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  if (pid > 0) {
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      std::fprintf(stderr, "%s: could not stop the broker in %s (tools/kafka/broker stop %s)\n", kProg,
                   dir.c_str(), dir.c_str());
  }
}

void cleanup() {
  if (g_clean.child > 0) {
    kill(g_clean.child, SIGKILL);
    waitpid(g_clean.child, nullptr, 0);
    g_clean.child = -1;
  }
  stop_broker();
  if (!g_clean.scratch.empty()) {
    if (g_clean.keep)
      std::fprintf(stderr, "%s: kept %s\n", kProg, g_clean.scratch.c_str());
    else
      vb::remove_tree(g_clean.scratch);
    g_clean.scratch.clear();
  }
}

[[noreturn]] void exit_with(int code, const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", kProg, what.c_str());
  std::fflush(stdout);
  cleanup();
  std::exit(code);
}
[[noreturn]] void unavailable(const std::string& what) { exit_with(2, "no broker: " + what); }
void check_stop() {
  if (g_stop) exit_with(1, "interrupted");
}

// ---------------------------------------------------------------------------
// Child processes (the broker script, the CLI).
// ---------------------------------------------------------------------------
struct child_result {
  int rc = -1;           // exit status; 128 + signal when killed
  bool timed_out = false;
  double seconds = 0;    // fork to exit
  double cpu_s = 0;      // its user + system CPU
  std::string out;       // stdout
};

double cpu_seconds(const rusage& ru) {
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}
double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return cpu_seconds(ru);
}
// User + system CPU of the broker we started (its JVM), or -1.
pid_t g_broker_pid = -1;
double broker_cpu_seconds() {
  if (g_broker_pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(g_broker_pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto p = all.rfind(')');
  if (p == std::string::npos) return -1;
  std::istringstream f(all.substr(p + 2));
  std::string field;
  unsigned long long ut = 0, st = 0;
  for (int k = 3; k <= 15 && (f >> field); ++k) {  // fields 14 and 15: utime, stime
    if (k == 14) ut = std::stoull(field);
    if (k == 15) st = std::stoull(field);
  }
  return static_cast<double>(ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Runs argv (argv[0] a path) with stdout captured and stderr into
// `stderr_path`; kills it after `timeout_s` (SIGTERM, then SIGKILL after 10 s).
child_result run_child(const std::vector<std::string>& argv, const std::string& stderr_path, double timeout_s) {
  child_result r;
  int fds[2];
  if (pipe(fds) != 0) exit_with(1, std::string("pipe: ") + std::strerror(errno));
  const double t0 = vb::now_seconds();
  pid_t pid = fork();
  if (pid < 0) exit_with(1, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err >= 0) {
      dup2(err, 2);
      close(err);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  g_clean.child = pid;
  close(fds[1]);
  bool term_sent = false, kill_sent = false;
  double term_at = 0;
  char buf[4096];
  for (bool open = true; open;) {
    pollfd p{fds[0], POLLIN, 0};
    int n = ::poll(&p, 1, 100);
    if (n > 0) {
      ssize_t k = read(fds[0], buf, sizeof buf);
      if (k > 0)
        r.out.append(buf, static_cast<size_t>(k));
      else if (k == 0 || errno != EINTR)
        open = false;
    }
    const double now = vb::now_seconds();
    if ((g_stop || now - t0 > timeout_s) && !term_sent) {
      r.timed_out = !g_stop;
      kill(pid, SIGTERM);
      term_sent = true;
      term_at = now;
    } else if (term_sent && !kill_sent && now - term_at > 10) {
      kill(pid, SIGKILL);
      kill_sent = true;
    }
  }
  close(fds[0]);
  int st = 0;
  rusage ru{};
  while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR) {
  }
  r.seconds = vb::now_seconds() - t0;
  r.cpu_s = cpu_seconds(ru);
  g_clean.child = -1;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string tail_of_file(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string s;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) s += all[i] + "\n";
  return s;
}

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  auto p = t.rfind('\n');
  return p == std::string::npos ? t : t.substr(p + 1);
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// ---------------------------------------------------------------------------
// librdkafka plumbing. The log and error callbacks are the ones tools/ship.cc
// installs (keep the last line, for messages).
// ---------------------------------------------------------------------------
struct kafka_log {
  char last[512] = {};
};
std::string g_kafka_debug;  // --kafka-debug: librdkafka's debug contexts for B and C, logged to stderr
extern "C" void bench_kafka_log(const rd_kafka_t* rk, int, const char* fac, const char* buf) {
  auto* l = static_cast<kafka_log*>(rd_kafka_opaque(rk));
  if (l) std::snprintf(l->last, sizeof l->last, "%s", buf);
  if (!g_kafka_debug.empty())
    std::fprintf(stderr, "%.6f %s %s: %s\n", vb::now_seconds(), rd_kafka_name(rk), fac, buf);
}
extern "C" void bench_kafka_error(rd_kafka_t*, int, const char* reason, void* opaque) {
  auto* l = static_cast<kafka_log*>(opaque);
  if (l) std::snprintf(l->last, sizeof l->last, "%s", reason);
}

struct kafka_deleter {
  void operator()(rd_kafka_t* k) const { rd_kafka_destroy(k); }
};
using kafka_ptr = std::unique_ptr<rd_kafka_t, kafka_deleter>;

std::string take(rd_kafka_error_t* e) {
  std::string s = rd_kafka_error_string(e);
  rd_kafka_error_destroy(e);
  return s;
}

using conf_list = std::vector<std::pair<std::string, std::string>>;

// The configuration of tools/ship.cc's producer (shipper::base_conf and
// shipper::connect), key for key: keep the two in step.
conf_list ship_producer_conf(const std::string& brokers, const std::string& txn_id) {
  conf_list c{{"bootstrap.servers", brokers}};
  if (!txn_id.empty()) c.push_back({"transactional.id", txn_id});
  c.push_back({"enable.idempotence", "true"});
  c.push_back({"acks", "all"});
  c.push_back({"linger.ms", "5"});
  if (!txn_id.empty()) c.push_back({"transaction.timeout.ms", "60000"});
  c.push_back({"message.timeout.ms", "60000"});
  c.push_back({"partitioner", "murmur2_random"});
  return c;
}
conf_list memory_producer_conf(const std::string& brokers, const std::string& txn_id) {
  conf_list c = ship_producer_conf(brokers, txn_id);
  if (!g_kafka_debug.empty()) c.push_back({"debug", g_kafka_debug});
  return c;
}
// tools/ship.cc's transaction rule: close at an atomic append's end once this
// many events (its --max-transaction-events default) or this age is reached.
constexpr uint64_t kShipTransactionEvents = 10000;
constexpr auto kShipTransactionAge = std::chrono::milliseconds(500);

kafka_ptr make_client(rd_kafka_type_t type, const conf_list& kv, kafka_log* log, const std::string& what) {
  char err[512];
  rd_kafka_conf_t* c = rd_kafka_conf_new();
  rd_kafka_conf_set_opaque(c, log);
  rd_kafka_conf_set_log_cb(c, bench_kafka_log);
  rd_kafka_conf_set_error_cb(c, bench_kafka_error);
  for (const auto& [k, v] : kv)
    if (rd_kafka_conf_set(c, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(c);
      exit_with(1, what + ": " + k + "=" + v + ": " + err);
    }
  rd_kafka_t* rk = rd_kafka_new(type, c, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(c);
    exit_with(1, what + ": rd_kafka_new: " + err);
  }
  return kafka_ptr(rk);
}

// Waits for an admin result event on `q`.
rd_kafka_event_t* wait_admin(rd_kafka_queue_t* q, rd_kafka_event_type_t type, const std::string& what) {
  for (int i = 0; i < 600; ++i) {
    rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 100);
    if (!ev) {
      check_stop();
      continue;
    }
    if (rd_kafka_event_type(ev) == type) return ev;
    rd_kafka_event_destroy(ev);
  }
  exit_with(1, what + ": no answer from the broker within 60 s");
}

// Exit 2 unless the brokers answer a metadata request within 30 s.
void probe_brokers(const std::string& brokers) {
  kafka_log klog;
  kafka_ptr rk = make_client(RD_KAFKA_PRODUCER, {{"bootstrap.servers", brokers}}, &klog, "--brokers");
  const double t0 = vb::now_seconds();
  for (;;) {
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk.get(), 0, nullptr, &md, 5000);
    const bool ok = !e && md && md->broker_cnt > 0;
    if (md) rd_kafka_metadata_destroy(md);
    if (ok) return;
    check_stop();
    if (vb::now_seconds() - t0 > 30)
      unavailable("Kafka at " + brokers + " does not answer within 30 s (" + rd_kafka_err2str(e) +
                  (klog.last[0] ? std::string("; ") + klog.last : "") + ")");
    usleep(200000);
  }
}

void create_topic(const std::string& brokers, const std::string& name, int partitions) {
  kafka_log klog;
  kafka_ptr rk = make_client(RD_KAFKA_PRODUCER, {{"bootstrap.servers", brokers}}, &klog, "admin client");
  char err[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(name.c_str(), partitions, 1, err, sizeof err);
  if (!nt) exit_with(1, "topic " + name + ": " + err);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk.get());
  rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opts, 30000, err, sizeof err);
  rd_kafka_CreateTopics(rk.get(), &nt, 1, opts, q);
  rd_kafka_event_t* ev = wait_admin(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, "creating topic " + name);
  std::string failure;
  if (rd_kafka_event_error(ev)) {
    failure = rd_kafka_event_error_string(ev);
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t** res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; ++i)
      if (rd_kafka_topic_result_error(res[i]))
        failure = rd_kafka_err2str(rd_kafka_topic_result_error(res[i])) + std::string(": ") +
                  (rd_kafka_topic_result_error_string(res[i]) ? rd_kafka_topic_result_error_string(res[i]) : "");
  }
  rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(q);
  if (!failure.empty()) exit_with(1, "creating topic " + name + " at " + brokers + ": " + failure);

  // Until the metadata shows it with a leader for every partition (ship
  // refuses a topic it cannot see).
  for (int i = 0; i < 300; ++i) {
    check_stop();
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk.get(), name.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk.get(), 0, t, &md, 5000);
    rd_kafka_topic_destroy(t);
    bool ready = false;
    if (!e && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt == partitions) {
      ready = true;
      for (int p = 0; p < md->topics[0].partition_cnt; ++p)
        if (md->topics[0].partitions[p].err || md->topics[0].partitions[p].leader < 0) ready = false;
    }
    if (md) rd_kafka_metadata_destroy(md);
    if (ready) return;
    usleep(100000);
  }
  exit_with(1, "topic " + name + " created at " + brokers + " but its partitions have no leader after 30 s");
}

void delete_topics(const std::string& brokers, const std::vector<std::string>& names) {
  if (names.empty()) return;
  kafka_log klog;
  kafka_ptr rk = make_client(RD_KAFKA_PRODUCER, {{"bootstrap.servers", brokers}}, &klog, "admin client");
  std::vector<rd_kafka_DeleteTopic_t*> dt;
  for (const auto& n : names) dt.push_back(rd_kafka_DeleteTopic_new(n.c_str()));
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk.get());
  rd_kafka_DeleteTopics(rk.get(), dt.data(), dt.size(), nullptr, q);
  rd_kafka_event_t* ev = wait_admin(q, RD_KAFKA_EVENT_DELETETOPICS_RESULT, "deleting topics");
  if (rd_kafka_event_error(ev))
    std::fprintf(stderr, "%s: deleting the topics: %s (left in place)\n", kProg, rd_kafka_event_error_string(ev));
  rd_kafka_event_destroy(ev);
  for (auto* d : dt) rd_kafka_DeleteTopic_destroy(d);
  rd_kafka_queue_destroy(q);
}

// ---------------------------------------------------------------------------
// The data: ES-1 in memory, and the log.
// ---------------------------------------------------------------------------
struct log_facts {
  std::string log_hex;               // varve.log header (the meta file's log id)
  std::vector<uint64_t> positions;   // per event, assigned by the log
};

void build_log(const std::string& dir, const vb::es1_data& d) {
  vb::varve_peer peer(varve::durability::none, 64ull << 20);
  peer.create(dir);
  for (uint64_t i = 0; i < d.events; ++i) {
    peer.append(d, i);
    if ((i & 0xffff) == 0) check_stop();
  }
  peer.close();
}

// Reads the log once (untimed): it must hold exactly the ES-1 events as
// build_log writes them; returns their positions and the log's id.
log_facts read_log_facts(const std::string& dir, const vb::es1_data& d) {
  log_facts f;
  varve::segment_format::meta m;
  if (varve::status s = varve::meta_file::read(*varve::posix_file_system(), dir, m); !s)
    exit_with(1, "reading the log's meta file: " + s.to_string());
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016" PRIx64, m.log_id);
  f.log_hex = hex;
  auto log = varve::event_log::open_read_only(dir);
  if (!log) exit_with(1, "opening " + dir + ": " + log.error().to_string());
  f.positions.reserve(d.events);
  varve::log_reader reader = (*log)->read();
  varve::event_view v;
  for (uint64_t i = 0;; ++i) {
    auto r = reader.next(v);
    if (!r) exit_with(1, dir + ": reading event " + std::to_string(i) + ": " + r.error().to_string());
    if (!r.value()) {
      if (i != d.events)
        exit_with(1, dir + " holds " + std::to_string(i) + " events, not " + std::to_string(d.events) +
                         " (--log: a log this benchmark built with the same --events and --aggregates)");
      break;
    }
    const bool same = i < d.events && v.stream_is_integer && v.stream_as_u64() == d.aggregate[i] &&
                      v.version == d.version[i] && v.type == d.version[i] % 8 && v.schema_version == 1 &&
                      v.timestamp_ns == i + 1 && v.content == varve::content_type::binary &&
                      v.batch_end && !v.event_id && !v.correlation_id && !v.causation_id &&
                      v.payload.size() == vb::kPayloadBytes &&
                      std::memcmp(v.payload.data(), d.payload_of(i), vb::kPayloadBytes) == 0;
    if (!same)
      exit_with(1, dir + ": event " + std::to_string(i) +
                       " is not the ES-1 event this benchmark expects (--log: a log it built with the same "
                       "--events and --aggregates)");
    f.positions.push_back(v.position.value);
    if ((i & 0xffff) == 0) check_stop();
  }
  // ship adds a varve.type_name header for a named type; ES-1 names none.
  if (auto reg = varve::type_registry::open(dir))
    for (uint32_t t = 0; t < 8; ++t)
      if (reg->name_of(t)) exit_with(1, dir + ": event type " + std::to_string(t) + " has a name; ES-1 has none");
  return f;
}

// What ship does with the log, without Kafka: a subscription from the
// beginning (every record read and its checksum verified) until it is caught
// up, touching what ship hands to librdkafka (key, payload) and formatting the
// same header numbers. In this process, on the warm page cache.
volatile uint64_t g_read_sink = 0;
struct read_pass {
  double read_s = 0;     // subscription, next() to the end
  double headers_s = 0;  // the same plus building ship's headers (rd_kafka_headers_*) per event
};
read_pass time_read_pass(const std::string& dir, const std::string& log_hex, uint64_t events) {
  read_pass r;
  auto log = varve::event_log::open_read_only(dir);
  if (!log) exit_with(1, "opening " + dir + ": " + log.error().to_string());
  for (int with_headers = 0; with_headers < 2; ++with_headers) {
    const double t0 = vb::now_seconds();
    auto sub = varve::subscription::open(**log, varve::position{});
    if (!sub) exit_with(1, "subscription on " + dir + ": " + sub.error().to_string());
    varve::event_view e;
    uint64_t n = 0, sink = 0;
    for (;;) {
      auto got = sub->next(e, std::chrono::nanoseconds(0));
      if (!got) exit_with(1, "read pass: " + got.error().to_string());
      if (!got.value()) break;
      sink += static_cast<unsigned char>(e.stream[7]) + static_cast<unsigned char>(e.payload[0]);
      if (with_headers) {
        rd_kafka_headers_t* h = rd_kafka_headers_new(10);
        char num[32];
        auto add_u64 = [&](const char* name, uint64_t v) {
          int k = std::snprintf(num, sizeof num, "%" PRIu64, v);
          rd_kafka_header_add(h, name, -1, num, k);
        };
        rd_kafka_header_add(h, "varve.log", -1, log_hex.data(), static_cast<ssize_t>(log_hex.size()));
        add_u64("varve.position", e.position.value);
        add_u64("varve.version", e.version);
        add_u64("varve.type", e.type);
        add_u64("varve.schema", e.schema_version);
        add_u64("varve.timestamp", e.timestamp_ns);
        rd_kafka_header_add(h, "varve.stream_u64", -1, "1", 1);
        rd_kafka_headers_destroy(h);
      }
      ++n;
    }
    (with_headers ? r.headers_s : r.read_s) = vb::now_seconds() - t0;
    if (n != events) exit_with(1, "read pass: " + std::to_string(n) + " events, not " + std::to_string(events));
    g_read_sink = g_read_sink + sink;
  }
  return r;
}

// ---------------------------------------------------------------------------
// Runs B and C: the records of tools/ship.cc's shipper::produce, from memory.
// ---------------------------------------------------------------------------
struct memory_run {
  double seconds = 0;       // rd_kafka_new .. rd_kafka_destroy
  double init_seconds = 0;  // rd_kafka_new .. init_transactions done (B)
  double cpu_s = 0;         // this process's CPU over the run (producer threads included)
  double commit_s = 0;      // blocked in commit_transaction (delivering the rest, then EndTxn) (B)
  double first_txn_s = 0;   // begin_transaction .. commit of the first transaction (B)
  uint64_t transactions = 0;
};

// One record, as shipper::produce builds it for an ES-1 event.
void produce_one(rd_kafka_t* rk, const std::string& topic, const vb::es1_data& d, const log_facts& f, uint64_t i,
                 const std::string& brokers) {
  rd_kafka_headers_t* h = rd_kafka_headers_new(10);
  char num[32];
  auto add_u64 = [&](const char* name, uint64_t v) {
    int n = std::snprintf(num, sizeof num, "%" PRIu64, v);
    rd_kafka_header_add(h, name, -1, num, n);
  };
  const uint32_t version = d.version[i];
  const uint64_t timestamp_ns = i + 1;
  rd_kafka_header_add(h, "varve.log", -1, f.log_hex.data(), static_cast<ssize_t>(f.log_hex.size()));
  add_u64("varve.position", f.positions[i]);
  add_u64("varve.version", version);
  add_u64("varve.type", version % 8);
  add_u64("varve.schema", 1);
  add_u64("varve.timestamp", timestamp_ns);
  rd_kafka_header_add(h, "varve.stream_u64", -1, "1", 1);
  char key[8];
  vb::put_be64(key, d.aggregate[i]);
  for (;;) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key, 8),
        RD_KAFKA_V_VALUE(const_cast<std::byte*>(d.payload_of(i)), vb::kPayloadBytes), RD_KAFKA_V_MSGFLAGS(0),
        RD_KAFKA_V_TIMESTAMP(static_cast<int64_t>(timestamp_ns / 1000000)), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 50);
      continue;
    }
    rd_kafka_headers_destroy(h);
    exit_with(1, "memory run: produce to " + topic + " at " + brokers + ": " + rd_kafka_err2str(err));
  }
}

// What ship does right after init_transactions (tools/ship.cc, connect()):
// learn the topic's partitions before the first produce, which would
// otherwise wait for librdkafka's one-second topic scan.
void learn_topic(rd_kafka_t* rk, const std::string& topic) {
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  if (t && rd_kafka_metadata(rk, 0, t, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_metadata_destroy(md);
  if (t) rd_kafka_topic_destroy(t);
}

memory_run run_memory(const std::string& brokers, const std::string& topic, const vb::es1_data& d,
                      const log_facts& f, bool transactional, uint64_t txn_events, uint64_t limit = ~0ull) {
  const uint64_t count = std::min(limit, d.events);
  using clk = std::chrono::steady_clock;
  memory_run r;
  const std::string what = transactional ? "memory run (transactional)" : "memory run (idempotent)";
  kafka_log klog;
  const double cpu0 = self_cpu_seconds();
  const double t0 = vb::now_seconds();
  {
    // shipper's transactional.id: "varve-ship-" + log id + "-" + topic.
    kafka_ptr rk = make_client(RD_KAFKA_PRODUCER,
                               memory_producer_conf(brokers, transactional ? "varve-ship-" + f.log_hex + "-" + topic : ""),
                               &klog, what);
    if (transactional) {
      for (int tries = 0;; ++tries) {
        rd_kafka_error_t* e = rd_kafka_init_transactions(rk.get(), 5000);
        if (!e) break;
        const bool retriable = rd_kafka_error_is_retriable(e);
        std::string msg = take(e);
        if (!retriable || tries >= 12) exit_with(1, what + ": init_transactions at " + brokers + ": " + msg);
        check_stop();
      }
      learn_topic(rk.get(), topic);
      r.init_seconds = vb::now_seconds() - t0;
      for (uint64_t i = 0; i < count;) {
        check_stop();
        rd_kafka_poll(rk.get(), 0);
        if (rd_kafka_error_t* e = rd_kafka_begin_transaction(rk.get()))
          exit_with(1, what + ": begin_transaction: " + take(e));
        uint64_t n = 0;
        const auto opened_at = clk::now();
        const double txn0 = vb::now_seconds();
        for (;;) {
          produce_one(rk.get(), topic, d, f, i, brokers);
          ++n;
          ++i;
          // Every ES-1 append is one event, so every event ends one.
          if (n >= txn_events || clk::now() - opened_at > kShipTransactionAge) break;
          if (i == count) break;
        }
        const double c0 = vb::now_seconds();
        if (rd_kafka_error_t* e = rd_kafka_commit_transaction(rk.get(), -1))
          exit_with(1, what + ": commit_transaction at " + brokers + ": " + take(e));
        r.commit_s += vb::now_seconds() - c0;
        if (r.transactions == 0) r.first_txn_s = vb::now_seconds() - txn0;
        ++r.transactions;
      }
    } else {
      learn_topic(rk.get(), topic);
      for (uint64_t i = 0; i < count; ++i) {
        if ((i & 0x3fff) == 0) {
          check_stop();
          rd_kafka_poll(rk.get(), 0);
        }
        produce_one(rk.get(), topic, d, f, i, brokers);
      }
      rd_kafka_resp_err_t e = rd_kafka_flush(rk.get(), 120000);
      if (e) exit_with(1, what + ": flush at " + brokers + ": " + rd_kafka_err2str(e) + " (" + klog.last + ")");
      // Delivery failures come back as errors through the error callback;
      // verification below is what decides.
    }
  }  // rd_kafka_destroy, as ship's exit does
  r.seconds = vb::now_seconds() - t0;
  r.cpu_s = self_cpu_seconds() - cpu0;
  return r;
}

// ---------------------------------------------------------------------------
// Verification: consume a topic (read_committed) from the beginning.
// ---------------------------------------------------------------------------
struct topic_digest {
  uint64_t records = 0;
  uint64_t values_xxh3 = 0;              // one partition: XXH3 of all values in order; else the sum below
  uint64_t values_sum = 0;               // sum of XXH3(value) per record
  std::vector<uint64_t> record_digests;  // per partition: XXH3 over key, value and headers of each record
};

topic_digest consume_topic(const std::string& brokers, const std::string& topic, int partitions,
                           const vb::es1_data& d, double idle_timeout_s) {
  kafka_log klog;
  kafka_ptr rk = make_client(RD_KAFKA_CONSUMER,
                             {{"bootstrap.servers", brokers},
                              {"group.id", "varve-ship-bench-verify"},
                              {"isolation.level", "read_committed"},
                              {"enable.auto.commit", "false"},
                              {"enable.partition.eof", "true"},
                              {"allow.auto.create.topics", "false"}},
                             &klog, "verifying consumer");
  rd_kafka_poll_set_consumer(rk.get());
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_resp_err_t ae = rd_kafka_assign(rk.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  if (ae) exit_with(1, "verifying " + topic + ": assign: " + rd_kafka_err2str(ae));

  struct part_state {
    XXH3_state_t* values = XXH3_createState();
    XXH3_state_t* records = XXH3_createState();
    bool eof = false;
  };
  std::vector<part_state> ps(partitions);
  for (auto& p : ps) {
    XXH3_64bits_reset(p.values);
    XXH3_64bits_reset(p.records);
  }
  std::vector<uint32_t> last_version(d.aggregates, 0);
  topic_digest out;
  double last_progress = vb::now_seconds();
  auto fail = [&](const std::string& why) {
    for (auto& p : ps) {
      XXH3_freeState(p.values);
      XXH3_freeState(p.records);
    }
    exit_with(1, "verifying topic " + topic + ": " + why);
  };
  for (;;) {
    check_stop();
    const bool all_eof = std::all_of(ps.begin(), ps.end(), [](const part_state& p) { return p.eof; });
    if (all_eof && out.records == d.events) break;
    if (vb::now_seconds() - last_progress > idle_timeout_s)
      fail("it holds " + std::to_string(out.records) + " committed records, not " + std::to_string(d.events) +
           " (nothing more came for " + std::to_string(static_cast<int>(idle_timeout_s)) + " s)" +
           (klog.last[0] ? std::string("; last client message: ") + klog.last : ""));
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 200);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      // At the last stable offset; the markers of the last transactions may
      // still be on their way (then more comes and eof clears below).
      if (m->partition >= 0 && m->partition < partitions) ps[m->partition].eof = true;
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->err) {
      std::string msg = rd_kafka_message_errstr(m);
      rd_kafka_message_destroy(m);
      fail(msg);
    }
    last_progress = vb::now_seconds();
    part_state& p = ps[m->partition];
    p.eof = false;
    if (++out.records > d.events) {
      rd_kafka_message_destroy(m);
      fail("it holds more than " + std::to_string(d.events) + " records (duplicates)");
    }
    XXH3_64bits_update(p.values, m->payload, m->len);
    out.values_sum += XXH3_64bits(m->payload, m->len);
    const uint64_t klen = m->key_len, vlen = m->len;
    XXH3_64bits_update(p.records, &klen, sizeof klen);
    if (m->key_len) XXH3_64bits_update(p.records, m->key, m->key_len);
    XXH3_64bits_update(p.records, &vlen, sizeof vlen);
    if (m->len) XXH3_64bits_update(p.records, m->payload, m->len);
    rd_kafka_headers_t* h = nullptr;
    std::string version_text;
    if (rd_kafka_message_headers(m, &h) == 0) {
      const char* name = nullptr;
      const void* val = nullptr;
      size_t size = 0;
      for (size_t idx = 0; rd_kafka_header_get_all(h, idx, &name, &val, &size) == 0; ++idx) {
        XXH3_64bits_update(p.records, name, std::strlen(name) + 1);
        const uint64_t sz = size;
        XXH3_64bits_update(p.records, &sz, sizeof sz);
        if (size) XXH3_64bits_update(p.records, val, size);
        if (std::strcmp(name, "varve.version") == 0 && val) version_text.assign(static_cast<const char*>(val), size);
      }
    }
    // Each aggregate's versions 1, 2, 3... (its events in order, once each).
    const uint64_t agg = m->key_len == 8 ? vb::get_be64(static_cast<const char*>(m->key)) : ~0ull;
    const uint64_t version = std::strtoull(version_text.c_str(), nullptr, 10);
    const int64_t off = m->offset;
    const int part = m->partition;
    rd_kafka_message_destroy(m);
    if (agg >= d.aggregates)
      fail("partition " + std::to_string(part) + " offset " + std::to_string(off) + ": key is not an ES-1 aggregate");
    if (version != last_version[agg] + 1)
      fail("aggregate " + std::to_string(agg) + ": version " + std::to_string(version) + " after " +
           std::to_string(last_version[agg]) + " (partition " + std::to_string(part) + " offset " +
           std::to_string(off) + ")");
    last_version[agg] = static_cast<uint32_t>(version);
  }
  rd_kafka_assign(rk.get(), nullptr);
  rd_kafka_consumer_close(rk.get());
  for (auto& p : ps) {
    out.record_digests.push_back(XXH3_64bits_digest(p.records));
    if (partitions == 1) out.values_xxh3 = XXH3_64bits_digest(p.values);
    XXH3_freeState(p.values);
    XXH3_freeState(p.records);
  }
  if (partitions != 1) out.values_xxh3 = out.values_sum;
  return out;
}

std::string hex64(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016" PRIx64, v);
  return b;
}

// A transactional warm-up (one record, its own transactional.id and topic),
// untimed: the broker's first transactional producer creates
// __transaction_state, which no timed run should pay for. Also tells whether
// the broker answers at all (exit 2 when not).
void warm_up(const std::string& brokers, const std::string& topic) {
  kafka_log klog;
  kafka_ptr rk = make_client(RD_KAFKA_PRODUCER, ship_producer_conf(brokers, "varve-ship-bench-warmup"), &klog,
                             "warm-up producer");
  const double t0 = vb::now_seconds();
  for (;;) {
    rd_kafka_error_t* e = rd_kafka_init_transactions(rk.get(), 5000);
    if (!e) break;
    const bool retriable = rd_kafka_error_is_retriable(e);
    std::string msg = take(e);
    check_stop();
    if (!retriable || vb::now_seconds() - t0 > 60)
      unavailable("Kafka at " + brokers + " does not answer (init_transactions: " + msg +
                  (klog.last[0] ? std::string("; ") + klog.last : "") + ")");
  }
  if (rd_kafka_error_t* e = rd_kafka_begin_transaction(rk.get())) exit_with(1, "warm-up: " + take(e));
  rd_kafka_resp_err_t err = rd_kafka_producev(rk.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                                              RD_KAFKA_V_VALUE(const_cast<char*>("warm"), 4),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (err) exit_with(1, std::string("warm-up: produce: ") + rd_kafka_err2str(err));
  if (rd_kafka_error_t* e = rd_kafka_commit_transaction(rk.get(), 60000)) exit_with(1, "warm-up: commit: " + take(e));
}

std::string exe_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  auto s = p.rfind('/');
  return s == std::string::npos ? "." : p.substr(0, s);
}

bool is_executable(const std::string& p) { return !p.empty() && access(p.c_str(), X_OK) == 0; }

}  // namespace

namespace varve_bench {
[[noreturn]] void fatal(const std::string& what) { exit_with(1, what); }
}  // namespace varve_bench

int main(int argc, char** argv) {
  uint64_t events = 1'000'000, aggregates = 100'000;
  unsigned reps = 1;
  int partitions = 1;
  std::string log_dir, brokers, cli, broker_script, json_out, scratch_root = vb::scratch_root();
  uint64_t txn_events = kShipTransactionEvents;
  bool plain = true, keep = false, keep_topics = false;
  uint64_t warmup_events = 500'000;
  double timeout_s = 600;

  CLI::App app{"varve-ship-bench: `varve ship` (log -> Kafka) against producing the same events from memory"};
  app.add_option("--events", events, "Events in the log (ES-1 E)")->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  app.add_option("--aggregates", aggregates, "Aggregates (ES-1 A)")->check(CLI::Range(uint64_t{1}, uint64_t{1} << 31));
  app.add_option("--log", log_dir, "Use (or build, when absent) the ES-1 log here; kept afterwards");
  app.add_option("--brokers", brokers, "Use this Kafka (HOST:PORT) instead of starting one with tools/kafka/broker");
  app.add_option("--partitions", partitions, "Partitions of each topic")->check(CLI::Range(1, 1024));
  app.add_option("--reps", reps, "Repetitions (A and B interleaved; medians reported)")->check(CLI::Range(1u, 100u));
  app.add_option("--cli", cli, "The varve CLI to run for A (default: the build's varve)");
  app.add_option("--broker-script", broker_script, "tools/kafka/broker (default: the source tree's)");
  app.add_option("--max-transaction-events", txn_events,
                 "Events per Kafka transaction, passed to ship and used by B (ship's default 10000)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10000000}));
  app.add_flag("!--no-plain", plain, "Skip run C (memory, idempotent producer without transactions)");
  app.add_option("--warmup-events", warmup_events,
                 "Untimed: produce this many of the events (B's way) before the reps, so that no timed run "
                 "meets a cold broker JVM (0: none)");
  app.add_option("--kafka-debug", g_kafka_debug,
                 "librdkafka debug contexts (e.g. eos,msg) for B and C's producers, logged to stderr");
  app.add_option("--timeout", timeout_s, "Seconds a run (or verifying one topic) may take before it fails");
  app.add_option("--json", json_out, "Write the figures here");
  app.add_option("--dir", scratch_root, "Scratch directories go here (default $VARVE_BENCH_DIR or /tmp)");
  app.add_flag("--keep", keep, "Keep the scratch directory (log, broker data and logs, ship's output)");
  app.add_flag("--keep-topics", keep_topics, "Do not delete the topics after verifying them");
  CLI11_PARSE(app, argc, argv);

  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (cli.empty()) {
#ifdef VARVE_SHIP_BENCH_CLI
    if (is_executable(VARVE_SHIP_BENCH_CLI)) cli = VARVE_SHIP_BENCH_CLI;
#endif
    for (const char* rel : {"/varve", "/../varve"})
      if (cli.empty() && is_executable(exe_dir() + rel)) cli = exe_dir() + rel;
    if (cli.empty()) exit_with(1, "the varve CLI was not found next to this binary; name it with --cli");
  } else if (!is_executable(cli)) {
    exit_with(1, "--cli " + cli + ": not an executable");
  }
  if (broker_script.empty()) {
#ifdef VARVE_SHIP_BENCH_BROKER
    broker_script = VARVE_SHIP_BENCH_BROKER;
#endif
  }
  if (brokers.empty() && (broker_script.empty() || access(broker_script.c_str(), R_OK) != 0))
    exit_with(1, "tools/kafka/broker not found (" + broker_script + "); name it with --broker-script or give --brokers");

  const std::string load_start = load_average();
  g_clean.keep = keep;
  g_clean.broker_script = broker_script;
  g_clean.scratch = vb::make_scratch_dir(scratch_root, "varve-ship-bench");
  const std::string work = g_clean.scratch;

  // The data, and the log.
  std::printf("varve-ship-bench: E=%" PRIu64 " A=%" PRIu64 " partitions=%d reps=%u cli=%s\n", events, aggregates,
              partitions, reps, cli.c_str());
  std::fflush(stdout);
  vb::es1_data d = vb::generate_es1(events, aggregates);
  if (log_dir.empty()) log_dir = work + "/log";
  std::error_code ec;
  if (!std::filesystem::exists(log_dir + "/varve.meta", ec)) {
    const double t0 = vb::now_seconds();
    build_log(log_dir, d);
    std::printf("built the log %s: %.1f s\n", log_dir.c_str(), vb::now_seconds() - t0);
  }
  const log_facts facts = read_log_facts(log_dir, d);
  const uint64_t log_bytes = vb::bytes_on_disk(log_dir);
  std::printf("log %s: %" PRIu64 " events, %.1f MB on disk, log id %s\n", log_dir.c_str(), events, log_bytes / 1e6,
              facts.log_hex.c_str());

  // The broker.
  std::string broker_dir;
  if (brokers.empty()) {
    broker_dir = work + "/kafka";
    g_clean.broker_dir = broker_dir;  // stop it on any exit from here on
    std::filesystem::create_directories(broker_dir, ec);
    const double t0 = vb::now_seconds();
    child_result b = run_child({"/bin/bash", broker_script, "start", broker_dir}, work + "/broker-start.err", 300);
    if (b.rc == 2) {
      g_clean.broker_dir.clear();
      unavailable(last_line(tail_of_file(work + "/broker-start.err", 1)));
    }
    if (b.rc != 0)
      exit_with(1, "tools/kafka/broker start failed (exit " + std::to_string(b.rc) + "):\n" +
                       tail_of_file(work + "/broker-start.err", 8));
    brokers = last_line(b.out);
    {
      std::ifstream pf(broker_dir + "/broker.pid");
      long pid = 0;
      if (pf >> pid) g_broker_pid = static_cast<pid_t>(pid);
    }
    std::printf("broker at %s (%s), started in %.1f s\n", brokers.c_str(), broker_dir.c_str(), vb::now_seconds() - t0);
  } else {
    std::printf("broker at %s (given)\n", brokers.c_str());
  }
  std::fflush(stdout);
  const std::string stamp = std::to_string(getpid()) + "-" + std::to_string(static_cast<long>(std::time(nullptr)));
  {
    probe_brokers(brokers);
    const std::string wt = "varve-ship-bench-warmup-" + stamp;
    create_topic(brokers, wt, 1);
    warm_up(brokers, wt);
    if (warmup_events) {
      // Its own topic and log id-derived transactional.id, as B does.
      const std::string wl = wt + "-load";
      create_topic(brokers, wl, partitions);
      memory_run w = run_memory(brokers, wl, d, facts, true, txn_events, warmup_events);
      std::printf("warm-up: %" PRIu64 " events in %.2f s (untimed)\n", std::min(warmup_events, events), w.seconds);
      if (!keep_topics) delete_topics(brokers, {wl});
    }
    if (!keep_topics) delete_topics(brokers, {wt});
  }

  // What a topic must hold, from memory: the full log's events and, for the
  // fixed costs (A0, B0), a log of the first event alone.
  struct dataset {
    const vb::es1_data* d = nullptr;
    const log_facts* f = nullptr;
    std::string log_dir;
    uint64_t expect_values = 0;
    std::vector<uint64_t> ref_records;  // per partition, from the first verified topic
    std::string ref_from;
  };
  auto expected_values = [&](const vb::es1_data& x) {
    if (partitions == 1) return XXH3_64bits(x.payload.data(), x.payload.size());
    uint64_t sum = 0;
    for (uint64_t i = 0; i < x.events; ++i) sum += XXH3_64bits(x.payload_of(i), vb::kPayloadBytes);
    return sum;
  };
  dataset full{&d, &facts, log_dir, expected_values(d), {}, {}};
  vb::es1_data d1 = vb::generate_es1(1, aggregates);
  const std::string log1_dir = work + "/log-1";
  build_log(log1_dir, d1);
  const log_facts facts1 = read_log_facts(log1_dir, d1);
  dataset one{&d1, &facts1, log1_dir, expected_values(d1), {}, {}};

  struct run_figs {
    std::vector<double> seconds, rate, mbps, own_rate, init_s, verify_s, cpu_s, broker_cpu_s, commit_s, first_txn_s;
    std::vector<uint64_t> transactions;
  };
  run_figs fa, fb, fc, fa0, fb0;
  json reps_json = json::array();
  const double payload_mb = static_cast<double>(events) * vb::kPayloadBytes / 1e6;

  auto verify = [&](const std::string& topic, const std::string& run, run_figs& fg, dataset& ds) {
    const double t0 = vb::now_seconds();
    topic_digest g = consume_topic(brokers, topic, partitions, *ds.d, std::min(timeout_s, 60.0));
    fg.verify_s.push_back(vb::now_seconds() - t0);
    if (g.values_xxh3 != ds.expect_values)
      exit_with(1, "run " + run + ", topic " + topic + ": the values' digest is " + hex64(g.values_xxh3) +
                       ", the ES-1 payloads' is " + hex64(ds.expect_values) + " (values differ or are out of order)");
    if (ds.ref_records.empty()) {
      ds.ref_records = g.record_digests;
      ds.ref_from = run;
    } else if (g.record_digests != ds.ref_records) {
      exit_with(1, "run " + run + ", topic " + topic + ": its records (keys, values, headers) differ from run " +
                       ds.ref_from + "'s");
    }
    if (!keep_topics) delete_topics(brokers, {topic});
  };

  auto run_ship = [&](unsigned rep, json& rj, dataset& ds, const std::string& tag, run_figs& fg) {
    const uint64_t n = ds.d->events;
    const std::string topic = "varve-ship-bench-" + stamp + "-r" + std::to_string(rep) + "-" + tag;
    create_topic(brokers, topic, partitions);
    const std::string err_path = work + "/ship-r" + std::to_string(rep) + "-" + tag + ".err";
    std::vector<std::string> args{cli, "ship", ds.log_dir, "--brokers", brokers, "--topic", topic,
                                  "--from-beginning", "--stop-at-end", "--json"};
    if (txn_events != kShipTransactionEvents) {
      args.push_back("--max-transaction-events");
      args.push_back(std::to_string(txn_events));
    }
    const double bcpu0 = broker_cpu_seconds();
    child_result r = run_child(args, err_path, timeout_s);
    const double bcpu = bcpu0 < 0 ? -1 : broker_cpu_seconds() - bcpu0;
    check_stop();
    if (r.timed_out)
      exit_with(1, "run " + tag + " (varve ship) took more than " + std::to_string(timeout_s) + " s:\n" +
                       tail_of_file(err_path, 8));
    if (r.rc != 0)
      exit_with(1, "run " + tag + ": varve ship exited " + std::to_string(r.rc) + ":\n" + tail_of_file(err_path, 8));
    // Its last progress line: shipped and seconds since it started shipping.
    double own = 0;
    uint64_t shipped = 0;
    try {
      json last = json::parse(last_line(r.out));
      shipped = last.value("shipped", uint64_t{0});
      const double sec = last.value("seconds", 0.0);
      own = sec > 0 ? static_cast<double>(shipped) / sec : 0;
    } catch (const std::exception& e) {
      exit_with(1, "run " + tag + ": cannot read varve ship's last --json line (" + last_line(r.out) + "): " + e.what());
    }
    if (shipped != n)
      exit_with(1, "run " + tag + ": varve ship says it shipped " + std::to_string(shipped) + " events, not " +
                       std::to_string(n));
    fg.seconds.push_back(r.seconds);
    fg.rate.push_back(n / r.seconds);
    fg.mbps.push_back(static_cast<double>(n) * vb::kPayloadBytes / 1e6 / r.seconds);
    fg.own_rate.push_back(own);
    fg.cpu_s.push_back(r.cpu_s);
    fg.broker_cpu_s.push_back(bcpu);
    verify(topic, tag, fg, ds);
    rj[tag + "_ship"] = {{"events", n}, {"seconds", r.seconds}, {"events_per_s", n / r.seconds},
                         {"cli_own_events_per_s", own}, {"client_cpu_seconds", r.cpu_s},
                         {"broker_cpu_seconds", bcpu}, {"verify_seconds", fg.verify_s.back()}};
    std::printf("  rep %u  %-2s %-31s %6.2f s  %9s events/s  cpu %.2f s, broker %.2f s  verified\n", rep,
                tag.c_str(), n == 1 ? "varve ship, 1 event" : "varve ship",
                r.seconds, n == 1 ? "-" : std::to_string(static_cast<long>(n / r.seconds)).c_str(), r.cpu_s, bcpu);
    std::fflush(stdout);
  };

  auto run_mem = [&](unsigned rep, bool transactional, json& rj, dataset& ds, const std::string& tag,
                     run_figs& fg) {
    const uint64_t n = ds.d->events;
    const std::string topic = "varve-ship-bench-" + stamp + "-r" + std::to_string(rep) + "-" + tag;
    create_topic(brokers, topic, partitions);
    const double bcpu0 = broker_cpu_seconds();
    memory_run m = run_memory(brokers, topic, *ds.d, *ds.f, transactional, txn_events);
    const double bcpu = bcpu0 < 0 ? -1 : broker_cpu_seconds() - bcpu0;
    fg.cpu_s.push_back(m.cpu_s);
    fg.broker_cpu_s.push_back(bcpu);
    fg.seconds.push_back(m.seconds);
    fg.rate.push_back(n / m.seconds);
    fg.mbps.push_back(static_cast<double>(n) * vb::kPayloadBytes / 1e6 / m.seconds);
    fg.init_s.push_back(m.init_seconds);
    fg.commit_s.push_back(m.commit_s);
    fg.first_txn_s.push_back(m.first_txn_s);
    fg.transactions.push_back(m.transactions);
    verify(topic, tag, fg, ds);
    rj[tag + (transactional ? "_memory_txn" : "_memory_idempotent")] = {
        {"events", n},
        {"seconds", m.seconds},
        {"events_per_s", n / m.seconds},
        {"init_seconds", m.init_seconds},
        {"transactions", m.transactions},
        {"commit_seconds", m.commit_s},
        {"first_transaction_seconds", m.first_txn_s},
        {"client_cpu_seconds", m.cpu_s},
        {"broker_cpu_seconds", bcpu},
        {"verify_seconds", fg.verify_s.back()}};
    std::printf("  rep %u  %-2s %-31s %6.2f s  %9s events/s  cpu %.2f s, broker %.2f s%s  verified\n", rep,
                tag.c_str(),
                n == 1 ? "memory, transactions, 1 event"
                       : (transactional ? "memory, transactions" : "memory, idempotent"),
                m.seconds, n == 1 ? "-" : std::to_string(static_cast<long>(n / m.seconds)).c_str(), m.cpu_s, bcpu,
                transactional && n > 1 ? ("  (" + std::to_string(m.transactions) + " transactions)").c_str() : "");
    std::fflush(stdout);
  };

  // The log side of ship alone (no Kafka), for the explanation.
  const read_pass rp = time_read_pass(log_dir, facts.log_hex, events);
  std::printf("log read alone (subscription from the beginning, no Kafka): %.3f s, %.0f events/s; "
              "with ship's headers built: %.3f s, %.0f events/s\n",
              rp.read_s, events / rp.read_s, rp.headers_s, events / rp.headers_s);
  std::fflush(stdout);

  for (unsigned rep = 1; rep <= reps; ++rep) {
    json rj = {{"rep", rep}, {"load_before", load_average()}};
    // A and B alternate which goes first, so neither always meets a fresher broker.
    if (rep % 2 == 1) {
      run_ship(rep, rj, full, "A", fa);
      run_mem(rep, true, rj, full, "B", fb);
    } else {
      run_mem(rep, true, rj, full, "B", fb);
      run_ship(rep, rj, full, "A", fa);
    }
    if (plain) run_mem(rep, false, rj, full, "C", fc);
    // The fixed costs: the same with a log of one event.
    run_ship(rep, rj, one, "A0", fa0);
    run_mem(rep, true, rj, one, "B0", fb0);
    reps_json.push_back(rj);
  }
  const std::string load_end = load_average();

  // The report.
  const double ra = vb::median(fa.rate), rb = vb::median(fb.rate), rc = plain ? vb::median(fc.rate) : 0;
  std::printf("\n%s, E = %" PRIu64 " events (%.0f MB of payload), %d partition%s, median of %u rep%s\n",
              vb::utc_now_iso().c_str(), events, payload_mb, partitions, partitions == 1 ? "" : "s", reps,
              reps == 1 ? "" : "s");
  std::printf("load average: %s at start, %s at end; %s, %ld cores, %s\n\n", load_start.c_str(), load_end.c_str(),
              vb::cpu_model().c_str(), vb::online_cores(), vb::kernel_release().c_str());
  std::printf("| run | seconds | events/s | payload MB/s | client CPU s | broker CPU s | per rep (events/s) |\n"
              "|---|---:|---:|---:|---:|---:|---|\n");
  auto row = [&](const char* name, const run_figs& fg) {
    std::string per;
    for (double r : fg.rate) per += (per.empty() ? "" : ", ") + std::to_string(static_cast<long>(r));
    std::printf("| %s | %.2f | %.0f | %.1f | %.2f | %.2f | %s |\n", name, vb::median(fg.seconds),
                vb::median(fg.rate), vb::median(fg.mbps), vb::median(fg.cpu_s), vb::median(fg.broker_cpu_s),
                per.c_str());
  };
  row("A  varve ship (CLI, exec to exit)", fa);
  row("B  memory, ship's producer (transactions)", fb);
  if (plain) row("C  memory, idempotent, no transactions", fc);
  std::printf("\nratio ship/memory (A/B): %.2f", ra / rb);
  if (plain) std::printf("   transactions (B/C): %.2f   ship/plain (A/C): %.2f", rb / rc, ra / rc);
  std::printf("\nship's own rate (its last --json line, shipped / seconds since it started): %.0f events/s\n",
              vb::median(fa.own_rate));
  std::printf("B: init_transactions %.2f s; %" PRIu64 " transactions per run, %.2f s blocked in "
              "commit_transaction, the first transaction %.2f s (medians)\n",
              vb::median(fb.init_s), fb.transactions.empty() ? 0 : fb.transactions.front(), vb::median(fb.commit_s),
              vb::median(fb.first_txn_s));
  std::printf("log read alone: %.0f events/s (%.3f s); with ship's headers built: %.0f events/s (%.3f s)\n",
              events / rp.read_s, rp.read_s, events / rp.headers_s, rp.headers_s);
  // Fixed costs (a log of one event: exec, open, init_transactions, the
  // resume-point scan, the first produce to a topic, one commit, exit) and
  // what each further event costs.
  const double a0 = vb::median(fa0.seconds), b0 = vb::median(fb0.seconds);
  const double ma = events > 1 ? (events - 1) / (vb::median(fa.seconds) - a0) : 0;
  const double mb = events > 1 ? (events - 1) / (vb::median(fb.seconds) - b0) : 0;
  std::printf("fixed cost (one event): A0 ship %.2f s, B0 memory %.2f s", a0, b0);
  if (ma > 0 && mb > 0)
    std::printf("; beyond it: A %.0f events/s, B %.0f events/s, ratio %.2f", ma, mb, ma / mb);
  std::printf("\n");

  if (!json_out.empty()) {
    auto block = [&](const run_figs& fg) {
      return json{{"seconds_median", vb::median(fg.seconds)}, {"events_per_s_median", vb::median(fg.rate)},
                  {"payload_mb_per_s_median", vb::median(fg.mbps)}, {"events_per_s", fg.rate},
                  {"seconds", fg.seconds}, {"client_cpu_seconds", fg.cpu_s},
                  {"broker_cpu_seconds", fg.broker_cpu_s}};
    };
    json j = {{"benchmark", "varve-ship-bench"},
              {"date", vb::utc_now_iso()},
              {"machine",
               {{"cpu", vb::cpu_model()}, {"cores", vb::online_cores()}, {"kernel", vb::kernel_release()},
                {"fs", vb::filesystem_type(log_dir)}}},
              {"load_start", load_start},
              {"load_end", load_end},
              {"events", events},
              {"aggregates", aggregates},
              {"payload_bytes", vb::kPayloadBytes},
              {"partitions", partitions},
              {"reps", reps},
              {"brokers", brokers},
              {"transaction_events", txn_events},
              {"producer_conf", ship_producer_conf(brokers, "varve-ship-<log id>-<topic>")},
              {"A_ship", block(fa)},
              {"B_memory_txn", block(fb)},
              {"B_commit_seconds", fb.commit_s},
              {"B_first_transaction_seconds", fb.first_txn_s},
              {"ratio_ship_over_memory", ra / rb},
              {"ship_own_events_per_s_median", vb::median(fa.own_rate)},
              {"A0_ship_one_event", block(fa0)},
              {"B0_memory_one_event", block(fb0)},
              {"A_events_per_s_beyond_fixed", ma},
              {"B_events_per_s_beyond_fixed", mb},
              {"log_read_alone_seconds", rp.read_s},
              {"log_read_with_headers_seconds", rp.headers_s},
              {"per_rep", reps_json}};
    if (plain) {
      j["C_memory_idempotent"] = block(fc);
      j["ratio_txn_over_plain"] = rb / rc;
    }
    std::ofstream o(json_out);
    o << j.dump(2) << "\n";
    if (!o) exit_with(1, "writing " + json_out);
  }
  cleanup();
  return 0;
}
