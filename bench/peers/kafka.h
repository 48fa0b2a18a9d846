// The Apache Kafka peer of varve-bench (WORKLOAD.md "Peers"): the real broker
// (tools/kafka/broker: Kafka 4.x, one KRaft node on loopback) through the
// client librdkafka. Every store is a fresh topic with one partition (so a
// global order exists); message key = the aggregate id (8 bytes), value = the
// same 140-byte checksummed record as the write(2) log peer (writelog.h), so a
// scan verifies every record like varve's readers do.
//
// Producer (the settings a Kafka user tunes for throughput; docs/BENCHMARKS.md
// says the same): enable.idempotence=true (acks=all, ordered retries),
// linger.ms=5, batch.size=1,000,000 B, batch.num.messages=100,000,
// compression none (the payloads are random), a 1 GiB client queue. Delivery
// reports are served every 1,024 produce() calls. An append counts as done
// when its delivery report says the broker holds it (acks=all from the
// broker's memory, like varve's mode none): P1's time runs to the last report.
// Durable phases get their durability from the topic: flush.messages = the P2
// batch for the "p2" store and 1 for the "p3" store, so the broker fsyncs the
// partition before it acknowledges (UnifiedLog.append flushes once that many
// messages are unflushed, before the produce response).
//
// Scans (P4) are a consumer assigned to partition 0 from the first offset
// (one per store, re-assigned for each scan), taking what its queue holds
// (up to 4,096 messages at a time) until the high watermark; P5 has no
// per-key read in Kafka, so one aggregate's read is such a scan keeping the
// aggregate's records. P7 (latency): a producer with linger.ms=0 (what a
// latency-minded user sets) in the benchmark's process and a consumer in
// another process (kafka_p7_follow) that stamps each message as it arrives.
//
// For experiments: VARVE_BENCH_KAFKA_CONF="key=value,..." adds librdkafka
// settings to every client, VARVE_BENCH_KAFKA_DEBUG its debug contexts.
#pragma once

#include <librdkafka/rdkafka.h>
#include <unistd.h>
#include <xxhash.h>

#include <cinttypes>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../bench_common.h"
#include "../es1_check.h"
#include "writelog.h"  // log_record, read_aggregate_by_scan

namespace varve_bench {

namespace kafka_detail {

inline rd_kafka_conf_t* make_conf(const std::string& brokers,
                                  const std::vector<std::pair<std::string, std::string>>& kv) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  auto set = [&](const std::string& k, const std::string& v) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
      fatal("kafka: " + k + "=" + v + ": " + err);
  };
  set("bootstrap.servers", brokers);
  // Bounded waits: a broker that went away fails the benchmark instead of
  // hanging it.
  set("socket.timeout.ms", "30000");
  for (auto& [k, v] : kv) set(k, v);
  if (const char* dbg = std::getenv("VARVE_BENCH_KAFKA_DEBUG")) set("debug", dbg);  // e.g. "fetch,broker"
  // Experiments: VARVE_BENCH_KAFKA_CONF="key=value,key=value" on every client.
  if (const char* extra = std::getenv("VARVE_BENCH_KAFKA_CONF")) {
    std::string all = extra;
    for (size_t at = 0; at < all.size();) {
      size_t end = all.find(',', at);
      if (end == std::string::npos) end = all.size();
      const std::string kv = all.substr(at, end - at);
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) fatal("VARVE_BENCH_KAFKA_CONF: '" + kv + "' is not key=value");
      set(kv.substr(0, eq), kv.substr(eq + 1));
      at = end + 1;
    }
  }
  return conf;
}

inline rd_kafka_t* make_client(rd_kafka_type_t type, rd_kafka_conf_t* conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) fatal(std::string("kafka: rd_kafka_new: ") + err);  // conf is still ours then
  return rk;
}

// Waits for one admin result on q; "" or the error.
inline std::string admin_result(rd_kafka_queue_t* q, bool create) {
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 60'000);
  if (!ev) return "no answer within 60 s";
  std::string why;
  if (rd_kafka_event_error(ev)) {
    why = rd_kafka_event_error_string(ev);
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t** tr =
        create ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n)
               : rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
    if (n == 1 && rd_kafka_topic_result_error(tr[0]))
      why = std::string(rd_kafka_err2str(rd_kafka_topic_result_error(tr[0]))) + ": " +
            (rd_kafka_topic_result_error_string(tr[0]) ? rd_kafka_topic_result_error_string(tr[0]) : "");
  }
  rd_kafka_event_destroy(ev);
  return why;
}

// A topic with one partition and the given topic configs; returns once the
// partition has a leader (so the first produce does not wait on metadata).
inline void create_topic(rd_kafka_t* rk, const std::string& name,
                         const std::vector<std::pair<std::string, std::string>>& configs) {
  char err[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(name.c_str(), 1, 1, err, sizeof err);
  if (!nt) fatal("kafka: topic " + name + ": " + err);
  for (auto& [k, v] : configs)
    if (rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str()) != RD_KAFKA_RESP_ERR_NO_ERROR)
      fatal("kafka: topic config " + k + "=" + v);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  const std::string why = admin_result(q, true);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  if (!why.empty()) fatal("kafka: create topic " + name + ": " + why);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, name.c_str(), nullptr);
  for (int tries = 0;; ++tries) {
    const rd_kafka_metadata_t* md = nullptr;
    bool ready = false;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ready = md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt == 1 &&
              md->topics[0].partitions[0].leader >= 0 && !md->topics[0].partitions[0].err;
      rd_kafka_metadata_destroy(md);
    }
    if (ready) break;
    if (tries >= 300) fatal("kafka: topic " + name + " has no leader after 30 s");
    ::usleep(100'000);
  }
  rd_kafka_topic_destroy(rkt);
}

inline void delete_topic(rd_kafka_t* rk, const std::string& name) {
  rd_kafka_DeleteTopic_t* dt = rd_kafka_DeleteTopic_new(name.c_str());
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_DeleteTopics(rk, &dt, 1, nullptr, q);
  const std::string why = admin_result(q, false);
  rd_kafka_queue_destroy(q);
  rd_kafka_DeleteTopic_destroy(dt);
  if (!why.empty()) std::fprintf(stderr, "varve-bench: kafka: delete topic %s: %s\n", name.c_str(), why.c_str());
}

// A consumer assigned to partition 0 of `topic` at `offset`, polled in
// batches. enable.partition.eof: the caller learns that it has caught up.
class partition_consumer {
 public:
  partition_consumer(const std::string& brokers, const std::string& topic, int64_t offset, bool eof_events,
                     const std::vector<std::pair<std::string, std::string>>& extra = {})
      : topic_(topic) {
    std::vector<std::pair<std::string, std::string>> kv = {
        {"group.id", "varve-bench"},  // required by the API; nothing is committed
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", eof_events ? "true" : "false"},
        {"fetch.max.bytes", "52428800"},
        {"max.partition.fetch.bytes", "8388608"},
        {"queued.min.messages", "1000000"},
        // Caught up, a fetch waits this long at the broker for new data (it
        // returns at once when data comes); it also bounds how long closing
        // the consumer waits for that fetch.
        {"fetch.wait.max.ms", "100"},
    };
    for (auto& e : extra) kv.push_back(e);
    rk_ = make_client(RD_KAFKA_CONSUMER, make_conf(brokers, kv));
    rd_kafka_poll_set_consumer(rk_);
    q_ = rd_kafka_queue_get_consumer(rk_);
    seek(offset);
  }
  // (Re)assigns the partition at `offset`: what was fetched for an earlier
  // assignment is dropped by the client (its ops carry an older version).
  void seek(int64_t offset) {
    rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic_.c_str(), 0)->offset = offset;
    const rd_kafka_resp_err_t e = rd_kafka_assign(rk_, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e) fatal("kafka: assign " + topic_ + "/0: " + rd_kafka_err2str(e));
  }
  ~partition_consumer() {
    rd_kafka_queue_destroy(q_);
    rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
  }
  partition_consumer(const partition_consumer&) = delete;
  partition_consumer& operator=(const partition_consumer&) = delete;

  // f(message) for each message that is there (up to 4,096), or else for
  // the first one to come within timeout_ms; errors other than partition EOF
  // are fatal. Returns the messages handed over (EOF events included).
  // (rd_kafka_consume_batch_queue with a timeout waits for a full batch or
  // the whole timeout: it is only asked for what is already queued.)
  template <class F>
  size_t poll(int timeout_ms, F&& f) {
    ssize_t n = rd_kafka_consume_batch_queue(q_, 0, batch_, kBatch);
    if (n < 0) fatal(std::string("kafka: consume: ") + rd_kafka_err2str(rd_kafka_last_error()));
    if (n == 0) {
      batch_[0] = rd_kafka_consume_queue(q_, timeout_ms);
      n = batch_[0] ? 1 : 0;
    }
    for (ssize_t i = 0; i < n; ++i) {
      rd_kafka_message_t* m = batch_[i];
      if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        const std::string why = rd_kafka_message_errstr(m);
        for (ssize_t k = i; k < n; ++k) rd_kafka_message_destroy(batch_[k]);
        fatal("kafka: consume: " + why);
      }
      f(m);
      rd_kafka_message_destroy(m);
    }
    return static_cast<size_t>(n);
  }

 private:
  static constexpr size_t kBatch = 4096;
  std::string topic_;
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_queue_t* q_ = nullptr;
  rd_kafka_message_t* batch_[kBatch];
};

}  // namespace kafka_detail

class kafka_peer {
 public:
  static constexpr uint32_t kHeader = log_record::kHeader;
  static constexpr uint32_t kRecord = log_record::kRecord;

  // brokers: HOST:PORT; data_dir: the broker's log.dirs when known (bytes on
  // disk), else ""; p2_batch: flush.messages of the "p2" store.
  kafka_peer(std::string brokers, std::string data_dir, uint64_t p2_batch)
      : brokers_(std::move(brokers)), data_dir_(std::move(data_dir)), p2_batch_(p2_batch) {}
  ~kafka_peer() { close(); }

  // A fresh topic named after the store's directory (the directory itself
  // stays empty: the data lives in the broker). The store's name picks the
  // durable topics ("p2", "p3") and the latency-tuned producer ("p3", "p7").
  void create(const std::string& dir) {
    std::filesystem::create_directories(dir);
    const std::string store = std::filesystem::path(dir).filename().string();
    static int serial = 0;
    topic_ = "es1-" + store + "-" + std::to_string(::getpid()) + "-" + std::to_string(serial++);
    std::vector<std::pair<std::string, std::string>> topic_conf;
    if (store == "p2") topic_conf.push_back({"flush.messages", std::to_string(p2_batch_)});
    if (store == "p3") topic_conf.push_back({"flush.messages", "1"});
    std::vector<std::pair<std::string, std::string>> kv = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", store == "p3" || store == "p7" ? "0" : "5"},
        {"batch.size", "1000000"},
        {"batch.num.messages", "100000"},
        {"compression.type", "none"},
        {"queue.buffering.max.messages", "2000000"},
        {"queue.buffering.max.kbytes", "1048576"},
        {"message.timeout.ms", "120000"},
    };
    rd_kafka_conf_t* conf = kafka_detail::make_conf(brokers_, kv);
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, &kafka_peer::on_delivery);
    rk_ = kafka_detail::make_client(RD_KAFKA_PRODUCER, conf);
    kafka_detail::create_topic(rk_, topic_, topic_conf);
    rkt_ = rd_kafka_topic_new(rk_, topic_.c_str(), nullptr);
    produced_ = delivered_ = 0;
    failed_ = 0;
  }
  const std::string& topic() const { return topic_; }
  const std::string& brokers() const { return brokers_; }

  // produce() of one event (copied into the client's queue). The timestamp
  // field carries i + 1, like the write(2) log's.
  inline void append(const es1_data& d, uint64_t i) { append_stamped(d, i, i + 1); }
  inline void append_stamped(const es1_data& d, uint64_t i, uint64_t ts) {
    log_record::encode(rec_, d, i, ts);
    const uint64_t key = d.aggregate[i];
    while (rd_kafka_produce(rkt_, 0, RD_KAFKA_MSG_F_COPY, rec_, kRecord, &key, sizeof key, nullptr) != 0) {
      const rd_kafka_resp_err_t e = rd_kafka_last_error();
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) fatal("kafka: produce to " + topic_ + ": " + rd_kafka_err2str(e));
      rd_kafka_poll(rk_, 1);  // the queue is full: serve delivery reports, wait a little
    }
    if ((++produced_ & 1023) == 0) rd_kafka_poll(rk_, 0);
  }
  // Every produced message acknowledged by the broker (its delivery report).
  void wait_acknowledged() {
    const rd_kafka_resp_err_t e = rd_kafka_flush(rk_, 300'000);
    if (e) fatal("kafka: flush " + topic_ + ": " + rd_kafka_err2str(e));
    rd_kafka_poll(rk_, 0);
    if (failed_) fatal("kafka: " + std::to_string(failed_) + " messages to " + topic_ + " failed: " + first_error_);
    if (delivered_ != produced_)
      fatal("kafka: " + std::to_string(delivered_) + " of " + std::to_string(produced_) + " messages to " + topic_ +
            " acknowledged");
  }
  void finish_load() { wait_acknowledged(); }

  void append_batch_durable(const es1_data& d, uint64_t first, uint64_t n) {
    for (uint64_t i = first; i < first + n; ++i) append(d, i);
    wait_acknowledged();
  }
  void append_durable(const es1_data& d, uint64_t i) {
    append(d, i);
    wait_acknowledged();
  }

  template <class F>
  uint64_t scan(F&& f, uint64_t& record_bytes) {
    return scan_raw([&](const std::byte*, const std::byte* p, size_t n) { f(p, n); }, record_bytes);
  }

  // g(record, payload, bytes) for every message of the partition in offset
  // order, from a fresh consumer, up to the high watermark; every record's
  // checksum verified and the offsets dense from 0.
  template <class G>
  uint64_t scan_raw(G&& g, uint64_t& record_bytes) {
    wait_acknowledged();
    int64_t lo = 0, hi = 0;
    const rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk_, topic_.c_str(), 0, &lo, &hi, 30'000);
    if (e) fatal("kafka: watermarks of " + topic_ + ": " + rd_kafka_err2str(e));
    uint64_t n = 0;
    record_bytes = 0;
    if (hi <= 0) return 0;
    // One consumer for the store's scans, sent back to the first offset for
    // each: what a reader that re-reads does (a fresh one per scan would add
    // its connection set-up and, when closed, its pending long-poll fetch).
    if (!cons_) cons_ = std::make_unique<kafka_detail::partition_consumer>(brokers_, topic_, 0, false);
    else cons_->seek(0);
    auto& cons = *cons_;
    const uint64_t deadline = steady_ns() + 120'000'000'000ull;
    while (n < static_cast<uint64_t>(hi)) {
      cons.poll(1000, [&](rd_kafka_message_t* m) {
        if (m->err) return;
        if (m->offset != static_cast<int64_t>(n))
          fatal("kafka: " + topic_ + ": offset " + std::to_string(m->offset) + " where " + std::to_string(n) +
                " was expected");
        const auto* r = static_cast<const std::byte*>(m->payload);
        if (!log_record::valid(r, m->len)) [[unlikely]]
          fatal("kafka: " + topic_ + ": bad record at offset " + std::to_string(m->offset));
        g(r, r + kHeader, kPayloadBytes);
        record_bytes += m->len + m->key_len;
        ++n;
      });
      if (steady_ns() > deadline)
        fatal("kafka: " + topic_ + ": scan stuck at offset " + std::to_string(n) + " of " + std::to_string(hi));
    }
    return n;
  }

  // No per-key read in Kafka: a scan of the partition.
  agg_read read_aggregate(uint32_t agg) { return read_aggregate_by_scan(*this, agg); }

  // The partition's files in the broker's log.dirs (after the load).
  uint64_t disk_bytes() const {
    if (data_dir_.empty()) return 0;
    return bytes_on_disk(data_dir_ + "/" + topic_ + "-0");
  }

  void close() {
    if (!rk_) return;
    wait_acknowledged();
    cons_.reset();
    rd_kafka_topic_destroy(rkt_);
    kafka_detail::delete_topic(rk_, topic_);  // the broker's disk, not ours
    rd_kafka_destroy(rk_);
    rk_ = nullptr;
    rkt_ = nullptr;
  }

 private:
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<kafka_peer*>(opaque);
    if (m->err) {
      if (self->failed_++ == 0) self->first_error_ = rd_kafka_err2str(m->err);
    } else {
      ++self->delivered_;
    }
  }

  std::string brokers_, data_dir_, topic_;
  uint64_t p2_batch_;
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_topic_t* rkt_ = nullptr;
  std::unique_ptr<kafka_detail::partition_consumer> cons_;
  uint64_t produced_ = 0, delivered_ = 0, failed_ = 0;
  std::string first_error_;
  std::byte rec_[kRecord];
};

// P7's reader, in its own process: a consumer of partition 0 of `topic` from
// the beginning. Once it has fetched (the partition's EOF event) it writes one
// byte to ready_fd; then it stamps each of `n` messages as it is handed over
// and returns (seen - the timestamp field written just before produce()).
inline std::vector<uint64_t> kafka_p7_follow(const std::string& brokers, const std::string& topic, uint64_t n,
                                             int ready_fd) {
  kafka_detail::partition_consumer cons(brokers, topic, RD_KAFKA_OFFSET_BEGINNING, true,
                                        {{"fetch.error.backoff.ms", "10"}});
  std::vector<uint64_t> lat;
  lat.reserve(n);
  bool ready = false;
  uint64_t last_progress = steady_ns();
  while (lat.size() < n) {
    const size_t got = cons.poll(100, [&](rd_kafka_message_t* m) {
      const uint64_t now = steady_ns();
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (!ready && ::write(ready_fd, "r", 1) != 1) fatal("kafka P7 follower: ready pipe");
        ready = true;
        return;
      }
      if (m->len != kafka_peer::kRecord) fatal("kafka P7 follower: a message of " + std::to_string(m->len) + " bytes");
      uint64_t sent;
      std::memcpy(&sent, static_cast<const std::byte*>(m->payload) + 32, 8);
      lat.push_back(now - sent);
    });
    const uint64_t now = steady_ns();
    if (got) last_progress = now;
    if (now - last_progress > 60'000'000'000ull)
      fatal("kafka P7 follower: nothing for 60 s after " + std::to_string(lat.size()) + " messages");
  }
  return lat;
}

}  // namespace varve_bench
