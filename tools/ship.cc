// `varve ship DIR --brokers HOST:PORT --topic T`: a subscription (catch up,
// then live) whose events go to Kafka, exactly once.
//
// How exactly-once holds without any state of our own:
// - One transactional producer per (log, topic): transactional.id is derived
//   from the log's id and the topic, so a restarted shipper fences the old one
//   and init_transactions() aborts whatever transaction it left open.
// - Events go out in log order, in Kafka transactions that end only after an
//   event carrying "batch end": an atomic varve append is never split, and it
//   becomes visible to read_committed consumers all at once.
// - Every record carries its varve position (header varve.position). Committed
//   transactions are a prefix of the log, so the highest position among the
//   committed records of all partitions is the last event shipped: a restart
//   reads the tail of each partition (read_committed) and resumes just after.
//   Kafka is the checkpoint; there is nothing to keep in step with it.
// - Any error the transaction cannot survive (broker restart mid-commit, a
//   fenced or fatal producer) drops the producer and starts over from what
//   Kafka holds, so nothing is lost or doubled whatever failed where.
// The shipper opens the log read-only: a slow or stopped broker only makes it
// fall behind (lag), it never blocks the writer.
// A silent network (a broker frozen, a connection whose packets vanish) is
// noticed after socket.timeout.ms (10 s, not librdkafka's 60 s): the request
// fails, the connection is dropped and the idempotent producer resends the
// same batch on a new one, well within the transaction's 60 s. Calls that wait
// on the brokers wait in slices of a second, so Ctrl-C is heard within
// seconds whatever the network does (tests/kafka_netfault_test.sh).
#include "tools/ship.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/meta_file.h"
#include "tools/cli/common.h"
#include "tools/ndjson.h"
#include "varve/varve.h"
#include "varve/subscription.h"

#ifdef VARVE_HAVE_KAFKA
#include <librdkafka/rdkafka.h>
#endif

namespace varve::tools {

CLI::App* add_ship_command(CLI::App& app, ship_args& a) {
  auto* sh = app.add_subcommand(
      "ship", "Follow the log (catch up, then live) and produce every committed event to a Kafka "
              "topic, exactly once across restarts (resumes from what the topic holds); "
              "Ctrl-C / SIGTERM stops it (exit 0)");
  sh->add_option("DIR", a.dir, "Log directory")->required();
  sh->add_option("--brokers", a.brokers, "Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]")->required();
  sh->add_option("--topic", a.topic, "The topic (must exist)")->required();
  sh->add_flag("--from-beginning", a.from_beginning,
               "When the topic holds nothing of this log yet, start at the log's beginning "
               "(default: its end, new events only)");
  sh->add_flag("--json", a.json, "Progress as NDJSON on stdout, one line a second");
  sh->add_flag("--stop-at-end", a.stop_at_end, "Exit 0 once everything committed has been shipped");
  sh->add_option("--connect-timeout", a.connect_timeout_s,
                 "Seconds to wait for the brokers at start before giving up (default 30)");
  sh->add_option("--max-transaction-events", a.max_transaction_events,
                 "Close a Kafka transaction after about this many events (default 10000; an "
                 "atomic append is never split)")
      ->check(CLI::Range(1u, 10000000u));
  return sh;
}

#ifndef VARVE_HAVE_KAFKA

int cmd_ship(const ship_args&) {
  std::fprintf(stderr, "varve: ship: this varve was built without librdkafka (install librdkafka-dev and rebuild)\n");
  return 1;
}

#else

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

using cli::kExitError;
using cli::kExitOk;

// librdkafka calls that wait on the brokers wait this long at a time, then
// look at g_ship_stop and call again (they resume where they were).
constexpr int kSliceMs = 1000;
// After Ctrl-C / SIGTERM, how long an open transaction may still take to
// commit (at a batch boundary) or abort. Past that it is left open: the next
// shipper's init_transactions() aborts it (the broker does after
// transaction.timeout.ms otherwise) and ships its events again, so stopping
// while the brokers are away loses nothing and doubles nothing.
constexpr auto kStopGrace = 2s;

subscription* g_ship_sub = nullptr;
volatile sig_atomic_t g_ship_stop = 0;
extern "C" void on_ship_signal(int) {
  g_ship_stop = 1;
  if (g_ship_sub) g_ship_sub->cancel();  // async-signal-safe
}

// librdkafka's own log lines ("Connect to ... failed") would flood stderr
// while a broker is down; the last one is kept for our messages instead.
struct kafka_log {
  char last[512] = {};
};
extern "C" void on_kafka_log(const rd_kafka_t* rk, int, const char*, const char* buf) {
  auto* l = static_cast<kafka_log*>(rd_kafka_opaque(rk));
  if (l) std::snprintf(l->last, sizeof l->last, "%s", buf);
}
extern "C" void on_kafka_error(rd_kafka_t* rk, int, const char* reason, void* opaque) {
  (void)rk;
  auto* l = static_cast<kafka_log*>(opaque);
  if (l) std::snprintf(l->last, sizeof l->last, "%s", reason);
}

struct conf_deleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct kafka_deleter {
  void operator()(rd_kafka_t* k) const { rd_kafka_destroy(k); }
};
using kafka_ptr = std::unique_ptr<rd_kafka_t, kafka_deleter>;

std::string take(rd_kafka_error_t* e) {
  std::string s = rd_kafka_error_string(e);
  rd_kafka_error_destroy(e);
  return s;
}

// A failure of a session with the brokers: `fatal_now` ends the command (bad
// input, a topic that does not exist, another log's events in the topic),
// anything else is retried with a fresh producer.
struct ship_error {
  std::string message;
  bool fatal_now = false;
};

class shipper {
 public:
  shipper(const ship_args& a, const event_log& log, uint64_t log_id)
      : a_(a), log_(log), log_id_(log_id) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016" PRIx64, log_id_);
    log_hex_ = hex;
    txn_id_ = "varve-ship-" + log_hex_ + "-" + a_.topic;
    tty_ = ::isatty(STDERR_FILENO) == 1;
  }

  int run();

 private:
  std::optional<ship_error> connect(clock_type::time_point deadline);
  std::optional<ship_error> find_resume_point(std::optional<position>& last_shipped);
  std::optional<ship_error> ship_from(std::optional<position> last_shipped, bool& done);
  std::optional<ship_error> produce(const event_view& e);
  std::optional<ship_error> ship_forgets();
  std::optional<ship_error> finish_transaction(bool commit);
  rd_kafka_conf_t* base_conf(char* err, size_t errn, bool& ok);
  void progress(bool force);
  bool stop_grace_over();
  std::optional<std::string_view> type_name(uint32_t id);

  const ship_args& a_;
  const event_log& log_;
  uint64_t log_id_;
  std::string log_hex_;
  std::string txn_id_;
  bool tty_ = false;
  kafka_log klog_;
  kafka_ptr producer_;
  // progress
  uint64_t shipped_ = 0;
  position shipped_to_{};
  std::optional<subscription> sub_;
  clock_type::time_point started_ = clock_type::now();
  clock_type::time_point last_progress_ = clock_type::now();
  uint64_t shipped_at_last_progress_ = 0;
  bool progress_dirty_ = false;
  // Type names (DIR/types) for the varve.type_name header. A writer saves a
  // new name before the first event of that type, so one re-read after
  // meeting an unknown id is conclusive: ids still unnamed stay numbers.
  std::optional<type_registry> types_;
  std::set<uint32_t> unnamed_;
  std::optional<clock_type::time_point> stop_seen_;  // when this thread first saw g_ship_stop
  // Crypto-shredding: the forgets (DIR/forgotten) tombstoned so far in this
  // run. A new run tombstones them all again: at least once, which a
  // tombstone tolerates (it only says "nothing for this key").
  uint64_t forgets_sent_ = 0;
  clock_type::time_point forgets_checked_{};
};

bool shipper::stop_grace_over() {
  if (!g_ship_stop) return false;
  const auto now = clock_type::now();
  if (!stop_seen_) stop_seen_ = now;
  return now - *stop_seen_ >= kStopGrace;
}

std::optional<std::string_view> shipper::type_name(uint32_t id) {
  if (types_)
    if (auto n = types_->name_of(id)) return n;
  if (unnamed_.count(id)) return std::nullopt;
  if (auto reg = type_registry::open(a_.dir)) types_.emplace(std::move(reg.value()));
  auto n = types_ ? types_->name_of(id) : std::nullopt;
  if (!n) unnamed_.insert(id);
  return n;
}

rd_kafka_conf_t* shipper::base_conf(char* err, size_t errn, bool& ok) {
  rd_kafka_conf_t* c = rd_kafka_conf_new();
  rd_kafka_conf_set_opaque(c, &klog_);
  rd_kafka_conf_set_log_cb(c, on_kafka_log);
  rd_kafka_conf_set_error_cb(c, on_kafka_error);
  ok = rd_kafka_conf_set(c, "bootstrap.servers", a_.brokers.c_str(), err, errn) == RD_KAFKA_CONF_OK;
  // A request unanswered for 10 s drops its connection (librdkafka: 60 s).
  // A connection that went silent (a lost NAT entry, a broker host gone
  // without a reset, a frozen broker) would otherwise stall shipping for a
  // minute per connection, past the 60 s transaction timeout, so the broker
  // would abort the transaction and the session start over. A broker that is
  // only slow costs a reconnect and a resend, which the idempotent producer
  // deduplicates.
  if (ok) ok = rd_kafka_conf_set(c, "socket.timeout.ms", "10000", err, errn) == RD_KAFKA_CONF_OK;
  // Reconnect attempts back off up to 1 s apart, as Java clients do, not
  // librdkafka's 10 s: its backoff only resets after 10 s without an attempt,
  // so a second blip soon after a first one kept shipping away ~10 s after the
  // brokers were back. One connect a second to a broker that is down is nothing.
  if (ok) ok = rd_kafka_conf_set(c, "reconnect.backoff.max.ms", "1000", err, errn) == RD_KAFKA_CONF_OK;
  return c;
}

// Creates the transactional producer and waits for init_transactions(), which
// also fences a previous shipper of this log and topic and aborts what it had
// left open: only then does the topic's committed tail stop moving.
std::optional<ship_error> shipper::connect(clock_type::time_point deadline) {
  producer_.reset();
  char err[512];
  bool ok = false;
  std::unique_ptr<rd_kafka_conf_t, conf_deleter> c(base_conf(err, sizeof err, ok));
  auto set = [&](const char* k, const std::string& v) {
    if (ok && rd_kafka_conf_set(c.get(), k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) ok = false;
  };
  set("transactional.id", txn_id_);
  set("enable.idempotence", "true");
  set("acks", "all");
  set("linger.ms", "5");
  set("transaction.timeout.ms", "60000");
  set("message.timeout.ms", "60000");
  // Stream ids are keys: one aggregate's events stay in one partition, in order.
  set("partitioner", "murmur2_random");
  if (!ok) return ship_error{std::string("--brokers: ") + err, true};
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, c.get(), err, sizeof err);
  if (!rk) return ship_error{std::string("cannot create a Kafka producer: ") + err, true};
  c.release();  // owned by rk now
  producer_.reset(rk);

  for (;;) {
    rd_kafka_error_t* e = rd_kafka_init_transactions(producer_.get(), kSliceMs);
    if (!e) {
      // Learn the topic's partitions now: a first produce to a topic the
      // producer has not seen waits for librdkafka's one-second topic scan
      // before it asks (measured: ~1 s at every start and reconnect).
      // Best effort: on failure the first produce asks, as before.
      rd_kafka_topic_t* t = rd_kafka_topic_new(producer_.get(), a_.topic.c_str(), nullptr);
      const rd_kafka_metadata_t* md = nullptr;
      if (t && rd_kafka_metadata(producer_.get(), 0, t, &md, kSliceMs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
      if (t) rd_kafka_topic_destroy(t);
      return std::nullopt;
    }
    const bool retriable = rd_kafka_error_is_retriable(e);
    std::string msg = take(e);
    if (!retriable) return ship_error{"Kafka at " + a_.brokers + ": init_transactions: " + msg};
    if (g_ship_stop) return ship_error{"stopped", true};
    if (clock_type::now() >= deadline) {
      std::string why = klog_.last[0] ? klog_.last : msg;
      return ship_error{"could not reach Kafka at " + a_.brokers + " within " +
                            std::to_string(a_.connect_timeout_s) + " s (" + why + ")",
                        true};
    }
  }
}

// The highest varve position among the committed records of the topic: read
// the tail of every partition with read_committed, widening the window
// backwards where a tail holds only aborted transactions (each killed shipper
// leaves one behind) until a committed record or the partition's start.
std::optional<ship_error> shipper::find_resume_point(std::optional<position>& last_shipped) {
  last_shipped.reset();
  char err[512];
  bool ok = false;
  std::unique_ptr<rd_kafka_conf_t, conf_deleter> c(base_conf(err, sizeof err, ok));
  auto set = [&](const char* k, const char* v) {
    if (ok && rd_kafka_conf_set(c.get(), k, v, err, sizeof err) != RD_KAFKA_CONF_OK) ok = false;
  };
  set("group.id", ("varve-ship-scan-" + log_hex_).c_str());
  set("isolation.level", "read_committed");
  set("enable.auto.commit", "false");
  set("enable.partition.eof", "true");
  set("allow.auto.create.topics", "false");
  if (!ok) return ship_error{std::string("consumer configuration: ") + err, true};
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_CONSUMER, c.get(), err, sizeof err);
  if (!raw) return ship_error{std::string("cannot create a Kafka consumer: ") + err, true};
  c.release();
  kafka_ptr rk(raw);
  rd_kafka_poll_set_consumer(rk.get());
  // A request that waits on the brokers: up to 10 s, in slices, so that a
  // stop is heard.
  auto sliced = [](auto call) {
    const auto until = clock_type::now() + 10s;
    for (;;) {
      const rd_kafka_resp_err_t e = call(kSliceMs);
      if (e != RD_KAFKA_RESP_ERR__TIMED_OUT || g_ship_stop || clock_type::now() >= until) return e;
    }
  };

  // The partitions; a topic that does not exist is the caller's mistake.
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk.get(), a_.topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t merr = sliced([&](int ms) { return rd_kafka_metadata(rk.get(), 0, t, &md, ms); });
  rd_kafka_topic_destroy(t);
  if (g_ship_stop) {
    if (!merr) rd_kafka_metadata_destroy(md);
    return ship_error{"stopped", true};
  }
  if (merr) return ship_error{"Kafka at " + a_.brokers + ": metadata: " + rd_kafka_err2str(merr)};
  int partitions = 0;
  rd_kafka_resp_err_t terr = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (md->topic_cnt == 1) {
    partitions = md->topics[0].partition_cnt;
    terr = md->topics[0].err;
  }
  rd_kafka_metadata_destroy(md);
  if (terr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || (terr == 0 && partitions == 0))
    return ship_error{"topic \"" + a_.topic + "\" does not exist at " + a_.brokers +
                          " (create it first; topics are not auto-created)",
                      true};
  if (terr) return ship_error{"topic \"" + a_.topic + "\" at " + a_.brokers + ": " + rd_kafka_err2str(terr)};

  struct part {
    int64_t low = 0, high = 0, from = 0, scanned_from = 0;
    bool eof = false, found = false;
  };
  std::vector<part> ps(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_resp_err_t e = sliced([&](int ms) {
      return rd_kafka_query_watermark_offsets(rk.get(), a_.topic.c_str(), p, &ps[p].low, &ps[p].high, ms);
    });
    if (g_ship_stop) return ship_error{"stopped", true};
    if (e) return ship_error{"Kafka at " + a_.brokers + ": offsets of " + a_.topic + "/" +
                             std::to_string(p) + ": " + rd_kafka_err2str(e)};
    ps[p].scanned_from = ps[p].high;
  }
  int64_t window = 256;
  for (;;) {
    // This round: partitions with nothing committed seen yet and more to see.
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
    int pending = 0;
    for (int p = 0; p < partitions; ++p) {
      part& x = ps[p];
      if (x.found || x.scanned_from <= x.low) continue;
      x.from = std::max(x.low, x.scanned_from - window);
      x.eof = false;
      rd_kafka_topic_partition_list_add(list, a_.topic.c_str(), p)->offset = x.from;
      ++pending;
    }
    if (pending == 0) {
      rd_kafka_topic_partition_list_destroy(list);
      break;
    }
    rd_kafka_resp_err_t ae = rd_kafka_assign(rk.get(), list);
    rd_kafka_topic_partition_list_destroy(list);
    if (ae) return ship_error{std::string("assign: ") + rd_kafka_err2str(ae)};
    const auto until = clock_type::now() + 30s;
    while (pending > 0) {
      if (clock_type::now() > until)
        return ship_error{"Kafka at " + a_.brokers + ": reading the tail of " + a_.topic + " timed out"};
      if (g_ship_stop) return ship_error{"stopped", true};
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 500);
      if (!m) continue;
      const int p = m->partition;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (p >= 0 && p < partitions && !ps[p].eof) {
          ps[p].eof = true;
          --pending;
        }
        rd_kafka_message_destroy(m);
        continue;
      }
      if (m->err) {
        std::string msg = rd_kafka_message_errstr(m);
        rd_kafka_message_destroy(m);
        return ship_error{"Kafka at " + a_.brokers + ": reading " + a_.topic + ": " + msg};
      }
      part& x = ps[p];
      if (m->offset >= x.scanned_from) {  // seen in an earlier, narrower round
        if (!x.eof) {
          x.eof = true;
          --pending;
        }
        rd_kafka_message_destroy(m);
        continue;
      }
      rd_kafka_headers_t* h = nullptr;
      const void* v = nullptr;
      size_t n = 0;
      std::string pos_text, log_text;
      if (rd_kafka_message_headers(m, &h) == 0) {
        if (rd_kafka_header_get_last(h, "varve.position", &v, &n) == 0 && v)
          pos_text.assign(static_cast<const char*>(v), n);
        if (rd_kafka_header_get_last(h, "varve.log", &v, &n) == 0 && v)
          log_text.assign(static_cast<const char*>(v), n);
      }
      const int64_t off = m->offset;
      rd_kafka_message_destroy(m);
      if (log_text != log_hex_)
        return ship_error{"topic \"" + a_.topic + "\" at " + a_.brokers + " holds a record (partition " +
                              std::to_string(p) + ", offset " + std::to_string(off) +
                              ") that is not from this log (varve.log \"" + log_text + "\", this log is " +
                              log_hex_ + "): ship each log to its own topic",
                          true};
      char* end = nullptr;
      errno = 0;
      const uint64_t pv = std::strtoull(pos_text.c_str(), &end, 10);
      if (pos_text.empty() || errno || *end)
        return ship_error{"topic \"" + a_.topic + "\": partition " + std::to_string(p) + " offset " +
                              std::to_string(off) + " has no valid varve.position header",
                          true};
      x.found = true;
      if (!last_shipped || pv > last_shipped->value) last_shipped = position{pv};
    }
    for (auto& x : ps) x.scanned_from = x.found ? x.scanned_from : x.from;
    window *= 8;
  }
  rd_kafka_assign(rk.get(), nullptr);
  rd_kafka_consumer_close(rk.get());
  return std::nullopt;
}

std::optional<ship_error> shipper::produce(const event_view& e) {
  rd_kafka_headers_t* h = rd_kafka_headers_new(12);
  char num[32];
  auto add_u64 = [&](const char* name, uint64_t v) {
    int n = std::snprintf(num, sizeof num, "%" PRIu64, v);
    rd_kafka_header_add(h, name, -1, num, n);
  };
  auto add_id = [&](const char* name, const id128* id) {
    if (!id) return;
    char text[37];
    format_uuid(*id, text);
    rd_kafka_header_add(h, name, -1, text, 36);
  };
  rd_kafka_header_add(h, "varve.log", -1, log_hex_.data(), static_cast<ssize_t>(log_hex_.size()));
  add_u64("varve.position", e.position.value);
  add_u64("varve.version", e.version);
  add_u64("varve.type", e.type);
  if (auto name = type_name(e.type))
    rd_kafka_header_add(h, "varve.type_name", -1, name->data(), static_cast<ssize_t>(name->size()));
  add_u64("varve.schema", e.schema_version);
  add_u64("varve.timestamp", e.timestamp_ns);
  add_id("varve.event_id", e.event_id);
  add_id("varve.correlation_id", e.correlation_id);
  add_id("varve.causation_id", e.causation_id);
  if (e.content == content_type::json) rd_kafka_header_add(h, "varve.content", -1, "json", 4);
  // Crypto-shredding: an event of a forgotten stream goes out with a null
  // value, a Kafka tombstone for its key.
  if (e.forgotten) rd_kafka_header_add(h, "varve.forgotten", -1, "1", 1);
  if (e.stream_is_integer) rd_kafka_header_add(h, "varve.stream_u64", -1, "1", 1);
  // The event's metadata as headers of their own names (the append reserves
  // "varve." for the headers above, so they cannot collide).
  for (const metadata_entry m : e.metadata)
    rd_kafka_header_add(h, m.key.data(), static_cast<ssize_t>(m.key.size()), m.value.data(),
                        static_cast<ssize_t>(m.value.size()));

  // The payload is not copied when it lives in the log's mapping, which
  // stays open longer than the producer. A decrypted or upcast one lives in
  // the reader's buffer, which its next event overwrites: copied.
  const bool in_mapping = !e.encrypted && e.schema_version == e.stored_schema_version;
  for (;;) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_TOPIC(a_.topic.c_str()),
        RD_KAFKA_V_KEY(e.stream.data(), e.stream.size()),
        RD_KAFKA_V_VALUE(e.forgotten ? nullptr : const_cast<std::byte*>(e.payload.data()),
                         e.forgotten ? 0 : e.payload.size()),
        RD_KAFKA_V_MSGFLAGS(in_mapping ? 0 : RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_TIMESTAMP(static_cast<int64_t>(e.timestamp_ns / 1000000)),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;  // h is the message's now
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !g_ship_stop) {
      rd_kafka_poll(producer_.get(), 50);
      continue;
    }
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {  // the brokers are away and we are asked to stop
      rd_kafka_headers_destroy(h);
      return ship_error{"stopped", true};
    }
    rd_kafka_headers_destroy(h);
    return ship_error{"Kafka at " + a_.brokers + ": produce: " + rd_kafka_err2str(err)};
  }
}

// Crypto-shredding: for each forget in DIR/forgotten not yet sent by this
// run, a Kafka tombstone (the stream as key, a null value) in a transaction
// of its own, so a compacted topic drops the stream's earlier records,
// shipped in clear before the forget. Each carries varve.position = the last
// event shipped (the resume point stays what it was) and varve.forget = the
// forget's number. Only once something was shipped: before that the topic
// holds nothing of this log to erase (and the stream's events, shipped from
// now on, go out as tombstones themselves).
std::optional<ship_error> shipper::ship_forgets() {
  forgets_checked_ = clock_type::now();
  if (shipped_to_.value == 0 && shipped_ == 0) return std::nullopt;
  auto fl = log_.forgotten();
  if (!fl) return ship_error{fl.error().to_string(), true};
  if (fl.value().empty() || fl.value().back().forget_sequence <= forgets_sent_) return std::nullopt;
  if (rd_kafka_error_t* be = rd_kafka_begin_transaction(producer_.get()))
    return ship_error{"Kafka at " + a_.brokers + ": begin_transaction: " + take(be)};
  char num[32];
  for (const forgotten_stream& f : fl.value()) {
    if (f.forget_sequence <= forgets_sent_) continue;
    rd_kafka_headers_t* h = rd_kafka_headers_new(6);
    rd_kafka_header_add(h, "varve.log", -1, log_hex_.data(), static_cast<ssize_t>(log_hex_.size()));
    int n = std::snprintf(num, sizeof num, "%" PRIu64, shipped_to_.value);
    rd_kafka_header_add(h, "varve.position", -1, num, n);
    n = std::snprintf(num, sizeof num, "%" PRIu64, f.forget_sequence);
    rd_kafka_header_add(h, "varve.forget", -1, num, n);
    rd_kafka_header_add(h, "varve.forgotten", -1, "1", 1);
    if (f.stream_is_integer) rd_kafka_header_add(h, "varve.stream_u64", -1, "1", 1);
    for (;;) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          producer_.get(), RD_KAFKA_V_TOPIC(a_.topic.c_str()), RD_KAFKA_V_KEY(f.stream.data(), f.stream.size()),
          RD_KAFKA_V_VALUE(nullptr, 0), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_TIMESTAMP(static_cast<int64_t>(f.time_ns / 1000000)), RD_KAFKA_V_HEADERS(h),
          RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !g_ship_stop) {
        rd_kafka_poll(producer_.get(), 50);
        continue;
      }
      rd_kafka_headers_destroy(h);
      (void)finish_transaction(false);
      return ship_error{"Kafka at " + a_.brokers + ": produce (tombstone): " + rd_kafka_err2str(err)};
    }
  }
  if (auto err = finish_transaction(true)) return err;
  forgets_sent_ = fl.value().back().forget_sequence;
  return std::nullopt;
}

// Commit (or abort) the open transaction. Retriable errors (a broker
// restarting, a timed-out slice) are retried for as long as it takes; anything
// else ends the session and the caller starts over from what Kafka holds.
// The calls are sliced (each one resumes the last, as librdkafka allows after
// a retriable timeout) so that a stop is heard while the brokers are away:
// commit_transaction(-1) waited out the whole transaction timeout (60 s) on a
// frozen broker, or longer, before it looked at Ctrl-C.
std::optional<ship_error> shipper::finish_transaction(bool commit) {
  for (;;) {
    rd_kafka_error_t* e = commit ? rd_kafka_commit_transaction(producer_.get(), kSliceMs)
                                 : rd_kafka_abort_transaction(producer_.get(), kSliceMs);
    if (!e) return std::nullopt;
    if (rd_kafka_error_is_retriable(e)) {
      rd_kafka_error_destroy(e);
      // Stopped while the broker is away: leave the transaction open; the
      // next run's init_transactions() aborts it and resumes before it.
      if (stop_grace_over()) return ship_error{"stopped", true};
      continue;
    }
    if (commit && rd_kafka_error_txn_requires_abort(e)) {
      std::string msg = take(e);
      (void)finish_transaction(false);  // best effort: the next session aborts it anyway
      return ship_error{"Kafka at " + a_.brokers + ": transaction aborted: " + msg};
    }
    return ship_error{std::string("Kafka at ") + a_.brokers + ": " + (commit ? "commit" : "abort") +
                      ": " + take(e)};
  }
}

void shipper::progress(bool force) {
  const auto now = clock_type::now();
  const double since = std::chrono::duration<double>(now - last_progress_).count();
  const double interval = a_.json || tty_ ? 1.0 : 5.0;
  if (!force && since < interval) return;
  const double rate = since > 0 ? static_cast<double>(shipped_ - shipped_at_last_progress_) / since : 0;
  last_progress_ = now;
  shipped_at_last_progress_ = shipped_;
  subscription_lag lag = sub_ ? sub_->lag() : subscription_lag{};
  if (a_.json) {
    std::printf("{\"position\":%" PRIu64 ",\"shipped\":%" PRIu64 ",\"lag_events\":%" PRIu64
                ",\"lag_bytes\":%" PRIu64 ",\"events_per_s\":%.0f,\"seconds\":%.1f}\n",
                shipped_to_.value, shipped_, lag.events, lag.bytes, rate,
                std::chrono::duration<double>(now - started_).count());
    std::fflush(stdout);
  } else if (tty_) {
    std::fprintf(stderr, "\rshipped %" PRIu64 " to position %" PRIu64 "  lag %" PRIu64 " events %" PRIu64
                         " bytes  %.0f events/s   ",
                 shipped_, shipped_to_.value, lag.events, lag.bytes, rate);
    progress_dirty_ = true;
  } else {
    std::fprintf(stderr, "varve: ship: %" PRIu64 " events shipped, at position %" PRIu64 ", lag %" PRIu64
                         " events / %" PRIu64 " bytes, %.0f events/s\n",
                 shipped_, shipped_to_.value, lag.events, lag.bytes, rate);
  }
}

// Ships from just after `last_shipped` (or from the beginning / the end when
// the topic holds nothing of this log) until stopped or a session error.
std::optional<ship_error> shipper::ship_from(std::optional<position> last_shipped, bool& done) {
  position from = last_shipped ? *last_shipped : (a_.from_beginning ? position{} : subscription::end());
  if (!last_shipped && shipped_to_.value > 0) from = shipped_to_;  // cannot happen: Kafka holds it
  sub_.reset();
  g_ship_sub = nullptr;
  auto opened = subscription::open(log_, from);
  if (!opened)
    return ship_error{"cannot resume " + a_.dir + " at position " + std::to_string(from.value) +
                          " (the last one the topic holds): " + opened.error().to_string(),
                      true};
  sub_.emplace(std::move(opened.value()));
  g_ship_sub = &*sub_;
  if (g_ship_stop) sub_->cancel();
  event_view e;
  if (last_shipped) {
    // The resume point is the last shipped event itself: skip it.
    auto got = sub_->next(e, 0ns);
    if (!got) {
      if (got.error().code() == errc::cancelled) {
        done = true;
        return std::nullopt;
      }
      return ship_error{got.error().to_string(), true};
    }
    if (!*got || e.position != *last_shipped)
      return ship_error{a_.dir + ": position " + std::to_string(last_shipped->value) +
                            " (the last one in topic " + a_.topic + ") is not an event of this log",
                        true};
    shipped_to_ = e.position;
  }
  if (auto err = ship_forgets()) return err;

  for (;;) {
    // Wait for the first event of a transaction without one open: an idle
    // shipper holds no transaction (which would time out on the broker).
    auto got = sub_->next(e, a_.stop_at_end ? 200ms : 1s);
    progress(false);
    if (!got) {
      if (got.error().code() == errc::cancelled) {
        done = true;
        return std::nullopt;
      }
      return ship_error{got.error().to_string(), true};
    }
    rd_kafka_poll(producer_.get(), 0);
    if (!*got) {
      // Idle: forgets made since (at most once a second).
      if (a_.stop_at_end || clock_type::now() - forgets_checked_ >= 1s)
        if (auto err = ship_forgets()) return err;
      if (a_.stop_at_end) {
        done = true;
        return std::nullopt;
      }
      continue;
    }
    if (rd_kafka_error_t* be = rd_kafka_begin_transaction(producer_.get()))
      return ship_error{"Kafka at " + a_.brokers + ": begin_transaction: " + take(be)};
    uint64_t n = 0;
    position last{};
    const auto opened_at = clock_type::now();
    bool cancelled = false;
    for (;;) {
      if (auto err = produce(e)) {
        (void)finish_transaction(false);
        return err;
      }
      ++n;
      last = e.position;
      // Close the transaction only where an atomic append ends, once it is
      // big or old enough, or when the log has nothing more right now.
      const bool boundary = e.batch_end;
      if (boundary && (n >= a_.max_transaction_events || clock_type::now() - opened_at > 500ms)) break;
      got = sub_->next(e, boundary ? 0ns : std::chrono::nanoseconds(5s));
      if (!got) {
        if (got.error().code() == errc::cancelled) {
          cancelled = true;
          if (boundary) break;
          // The rest of this atomic append will not come: abort it, the
          // next run ships it whole.
          (void)finish_transaction(false);
          done = true;
          return std::nullopt;
        }
        (void)finish_transaction(false);
        return ship_error{got.error().to_string(), true};
      }
      if (!*got) {
        if (boundary) break;
        continue;  // a batch is committed whole, so this cannot last
      }
    }
    if (auto err = finish_transaction(true)) return err;
    shipped_ += n;
    shipped_to_ = last;
    if (cancelled) {
      done = true;
      return std::nullopt;
    }
  }
}

int shipper::run() {
  struct sigaction sa {};
  sa.sa_handler = on_ship_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  bool first = true;
  for (;;) {
    // At start the wait for the brokers is bounded (a wrong address is an
    // error); once shipping, a broker that goes away is waited for.
    const auto deadline = first ? clock_type::now() + std::chrono::seconds(a_.connect_timeout_s)
                                : clock_type::time_point::max();
    std::optional<ship_error> err = connect(deadline);
    std::optional<position> last_shipped;
    if (!err) err = find_resume_point(last_shipped);
    if (!err && first && !a_.json) {
      std::fprintf(stderr, "varve: ship: %s -> %s at %s, %s\n", a_.dir.c_str(), a_.topic.c_str(),
                   a_.brokers.c_str(),
                   last_shipped ? ("resuming after position " + std::to_string(last_shipped->value)).c_str()
                                : (a_.from_beginning ? "from the beginning" : "from the end (new events)"));
    }
    bool done = false;
    if (!err) {
      first = false;
      err = ship_from(last_shipped, done);
    }
    if (done || g_ship_stop) break;
    if (err && (err->fatal_now || first)) {
      if (progress_dirty_) std::fprintf(stderr, "\n");
      g_ship_sub = nullptr;
      std::fprintf(stderr, "varve: ship: %s\n", err->message.c_str());
      return kExitError;
    }
    if (err) {
      if (progress_dirty_) std::fprintf(stderr, "\n");
      progress_dirty_ = false;
      std::fprintf(stderr, "varve: ship: %s; starting over from what the topic holds\n", err->message.c_str());
      producer_.reset();
      std::this_thread::sleep_for(1s);
    }
  }
  g_ship_sub = nullptr;
  progress(true);
  if (progress_dirty_) std::fprintf(stderr, "\n");
  // No flush: every transaction that ended was committed (which flushes) or
  // aborted; what an open one holds is the next shipper's to abort and ship.
  return kExitOk;
}

}  // namespace

int cmd_ship(const ship_args& a) {
  if (a.brokers.empty()) return cli::usage_error("--brokers is empty");
  if (a.topic.empty()) return cli::usage_error("--topic is empty");
  auto opened = event_log::open_read_only(a.dir, cli::cli_log_options());
  if (!opened) return cli::fail_open(opened.error(), a.dir);
  // The log's id names the producer (fencing) and tags every record.
  segment_format::meta m;
  if (status s = meta_file::read(*posix_file_system(), a.dir, m); !s) return cli::fail_open(s, a.dir);
  shipper s(a, **opened, m.log_id);
  return s.run();
}

#endif  // VARVE_HAVE_KAFKA

}  // namespace varve::tools

// The `varve ship` entry of tools/cli/main.cc's table.
namespace varve::cli {

void add_ship(CLI::App& app, command_list& out) {
  auto a = std::make_shared<tools::ship_args>();
  CLI::App* sh = tools::add_ship_command(app, *a);
  out.push_back({sh, [a] { return tools::cmd_ship(*a); }});
}

}  // namespace varve::cli
