// The checker of tests/kafka_ship_test.sh: reads a topic that `varve ship`
// filled (read_committed, every partition from its start) and compares it
// with the log it came from:
//   - every event of the log is in the topic exactly once (by varve.position);
//   - key = stream id, value = payload, byte for byte, and every header
//     (version, type and its name, schema, timestamp, ids, log id) matches the event;
//   - the event's metadata entries are headers of their names, and a record
//     has no other headers outside varve.*;
//   - within each partition, each stream's versions follow 1, 2, 3, ...
//     (one aggregate's events in one partition, in order);
//   - crypto-shredding (--master-key FILE for a log that seals payloads): an
//     event the log now reads as forgotten is in the topic either as a
//     tombstone (null value, header varve.forgotten) or, shipped before the
//     forget, followed in its partition by the forget's tombstone record
//     (header varve.forget, the stream as key, a null value).
// Usage: kafka_consume BROKERS TOPIC LOGDIR [--wait SECONDS] [--master-key FILE]
// Waits up to SECONDS (default 60) for the topic to hold as many events as the
// log has when the checker starts. Prints "ok: ..." and exits 0, or prints the
// first problems and exits 1.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/meta_file.h"
#include "tools/ndjson.h"
#include "varve/varve.h"

using namespace varve;

namespace {

int problems = 0;
void problem(const std::string& s) {
  if (++problems <= 20) std::fprintf(stderr, "kafka_consume: %s\n", s.c_str());
}

std::string header(rd_kafka_headers_t* h, const char* name, bool& present) {
  const void* v = nullptr;
  size_t n = 0;
  present = h && rd_kafka_header_get_last(h, name, &v, &n) == 0;
  return present && v ? std::string(static_cast<const char*>(v), n) : std::string();
}

std::string uuid_text(const id128* id) {
  if (!id) return {};
  char t[36];
  tools::format_uuid(*id, t);
  return std::string(t, 36);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: kafka_consume BROKERS TOPIC LOGDIR [--wait SECONDS]\n");
    return 2;
  }
  const std::string brokers = argv[1], topic = argv[2], dir = argv[3];
  int wait_s = 60;
  log_options lo;
  for (int i = 4; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--wait") == 0) {
      wait_s = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--master-key") == 0) {
      auto k = load_master_key(argv[i + 1]);
      if (!k) {
        std::fprintf(stderr, "kafka_consume: %s\n", k.error().to_string().c_str());
        return 2;
      }
      lo.master_key = k.value();
    }
  }

  auto log = event_log::open_read_only(dir, lo);
  if (!log) {
    std::fprintf(stderr, "kafka_consume: %s\n", log.error().to_string().c_str());
    return 1;
  }
  segment_format::meta m;
  if (status s = meta_file::read(*posix_file_system(), dir, m); !s) {
    std::fprintf(stderr, "kafka_consume: %s\n", s.to_string().c_str());
    return 1;
  }
  std::optional<type_registry> types;
  if (auto reg = type_registry::open(dir)) types.emplace(std::move(reg.value()));
  char log_hex[17];
  std::snprintf(log_hex, sizeof log_hex, "%016" PRIx64, m.log_id);

  // The log as it is now: position -> event.
  std::unordered_map<uint64_t, event_view> events;
  // The payloads, copied: a decrypted one lives in the reader's buffer only
  // until its next event.
  std::unordered_map<uint64_t, std::string> payloads;
  {
    log_reader r = (*log)->read();
    event_view e;
    for (;;) {
      auto got = r.next(e);
      if (!got) {
        std::fprintf(stderr, "kafka_consume: %s\n", got.error().to_string().c_str());
        return 1;
      }
      if (!*got) break;
      events.emplace(e.position.value, e);
      payloads.emplace(e.position.value,
                       std::string(reinterpret_cast<const char*>(e.payload.data()), e.payload.size()));
    }
  }

  char err[512];
  rd_kafka_conf_t* c = rd_kafka_conf_new();
  auto set = [&](const char* k, const char* v) {
    if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "kafka_consume: %s\n", err);
      std::exit(1);
    }
  };
  set("bootstrap.servers", brokers.c_str());
  set("group.id", "varve-kafka-consume");
  set("isolation.level", "read_committed");
  set("enable.auto.commit", "false");
  set("auto.offset.reset", "earliest");
  set("enable.partition.eof", "true");
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
  if (!rk) {
    std::fprintf(stderr, "kafka_consume: %s\n", err);
    return 1;
  }
  rd_kafka_poll_set_consumer(rk);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  if (rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000); e || md->topic_cnt != 1 ||
                                                                        md->topics[0].err) {
    std::fprintf(stderr, "kafka_consume: metadata of %s at %s failed\n", topic.c_str(), brokers.c_str());
    return 1;
  }
  const int partitions = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);

  std::unordered_map<uint64_t, int> seen;  // position -> times
  // (partition, stream) -> last version seen
  std::map<std::pair<int, std::string>, uint64_t> last_version;
  std::map<std::string, int> partition_of;
  uint64_t records = 0, in_log = 0, tombstones = 0;
  // Crypto-shredding: (partition, stream) -> the highest offset of a forget's
  // tombstone; events shipped in clear before their stream was forgotten.
  std::map<std::pair<int, std::string>, int64_t> forget_at;
  struct shipped_clear {
    int partition;
    std::string stream;
    int64_t offset;
    std::string where;
  };
  std::vector<shipped_clear> before_forget;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
  // Read on to the end of every partition even once all are seen: a
  // duplicate may come after.
  std::vector<bool> at_eof(partitions, false);
  int eofs = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (in_log == events.size() && eofs == partitions) break;
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, 200);
    if (!msg) continue;
    if (msg->partition >= 0 && msg->partition < partitions) {
      const bool eof = msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
      if (eof != at_eof[msg->partition]) eofs += eof ? 1 : -1;
      at_eof[msg->partition] = eof;
    }
    if (msg->err) {
      if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        std::fprintf(stderr, "kafka_consume: %s\n", rd_kafka_message_errstr(msg));
      rd_kafka_message_destroy(msg);
      continue;
    }
    ++records;
    rd_kafka_headers_t* h = nullptr;
    rd_kafka_message_headers(msg, &h);
    bool has = false;
    const std::string where =
        "partition " + std::to_string(msg->partition) + " offset " + std::to_string(msg->offset);
    const std::string pos_text = header(h, "varve.position", has);
    const uint64_t pos = std::strtoull(pos_text.c_str(), nullptr, 10);
    if (header(h, "varve.log", has) != log_hex) problem(where + ": varve.log is not " + log_hex);
    bool is_forget = false;
    header(h, "varve.forget", is_forget);
    if (is_forget) {
      // A forget's tombstone: not an event (its position is the resume point's).
      ++tombstones;
      if (msg->payload != nullptr) problem(where + ": a forget's record with a value (a tombstone has none)");
      std::string key(static_cast<const char*>(msg->key), msg->key_len);
      int64_t& at = forget_at[{msg->partition, key}];
      at = std::max(at, msg->offset);
      rd_kafka_message_destroy(msg);
      continue;
    }
    auto it = events.find(pos);
    if (!has || it == events.end()) {
      // Events appended after the checker started are fine; they are not checked.
      if (pos_text.empty()) problem(where + ": no varve.position");
      rd_kafka_message_destroy(msg);
      continue;
    }
    const event_view& e = it->second;
    if (++seen[pos] == 1) ++in_log;
    else problem(where + ": position " + pos_text + " a second time");
    std::string key(static_cast<const char*>(msg->key), msg->key_len);
    if (key != e.stream) problem(where + ": key is not the stream id");
    const std::string& payload = payloads[pos];
    bool forgotten_header = false;
    header(h, "varve.forgotten", forgotten_header);
    if (e.forgotten) {
      if (msg->payload == nullptr) {
        if (!forgotten_header) problem(where + ": a forgotten event's tombstone without varve.forgotten");
      } else {
        before_forget.push_back({msg->partition, key, msg->offset, where});
      }
    } else {
      if (forgotten_header) problem(where + ": varve.forgotten on an event the log reads whole");
      if (msg->len != payload.size() || (msg->len && std::memcmp(msg->payload, payload.data(), msg->len) != 0))
        problem(where + ": value differs from the payload at position " + pos_text);
    }
    auto check = [&](const char* name, const std::string& want) {
      bool present = false;
      std::string got = header(h, name, present);
      if (want.empty() ? present : got != want)
        problem(where + ": header " + name + " is \"" + got + "\", want \"" + want + "\"");
    };
    check("varve.version", std::to_string(e.version));
    check("varve.type", std::to_string(e.type));
    {
      auto name = types ? types->name_of(e.type) : std::nullopt;
      check("varve.type_name", name ? std::string(*name) : std::string());
    }
    check("varve.schema", std::to_string(e.schema_version));
    check("varve.timestamp", std::to_string(e.timestamp_ns));
    check("varve.event_id", uuid_text(e.event_id));
    check("varve.correlation_id", uuid_text(e.correlation_id));
    check("varve.causation_id", uuid_text(e.causation_id));
    size_t user_headers = 0;
    for (size_t i = 0;; ++i) {
      const char* name = nullptr;
      const void* v = nullptr;
      size_t n = 0;
      if (!h || rd_kafka_header_get_all(h, i, &name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (std::strncmp(name, "varve.", 6) != 0) ++user_headers;
    }
    if (user_headers != e.metadata.size())
      problem(where + ": " + std::to_string(user_headers) + " headers outside varve.*, the event has " +
              std::to_string(e.metadata.size()) + " metadata entries");
    for (const metadata_entry m : e.metadata) check(std::string(m.key).c_str(), std::string(m.value));
    auto [pit, fresh] = partition_of.emplace(key, msg->partition);
    if (!fresh && pit->second != msg->partition) problem(where + ": stream in two partitions");
    uint64_t& lv = last_version[{msg->partition, key}];
    if (e.version != lv + 1)
      problem(where + ": stream version " + std::to_string(e.version) + " after " + std::to_string(lv));
    lv = e.version;
    rd_kafka_message_destroy(msg);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  for (const shipped_clear& c : before_forget) {
    auto f = forget_at.find({c.partition, c.stream});
    if (f == forget_at.end() || f->second < c.offset)
      problem(c.where + ": shipped in clear, its stream since forgotten, and no tombstone after it");
  }
  if (in_log < events.size())
    problem("the topic holds " + std::to_string(in_log) + " of the log's " + std::to_string(events.size()) +
            " events after " + std::to_string(wait_s) + " s");
  if (problems) {
    std::fprintf(stderr, "kafka_consume: %d problem(s)\n", problems);
    return 1;
  }
  std::printf("ok: %zu events once each, %zu streams, %d partitions, %" PRIu64 " records read, %" PRIu64
              " forget tombstones\n",
              events.size(), partition_of.size(), partitions, records, tombstones);
  return 0;
}
