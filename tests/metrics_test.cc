// Operational counters (include/varve/metrics.h): what the writer counts in
// the control block, read back through read_metrics() the way another
// process does (a read-only open, no writer lock), and the Prometheus text.
#include <regex>
#include <set>

#include "test_util.h"

namespace {

using namespace varve;
using namespace varve_test;
using namespace std::chrono_literals;

constexpr uint64_t k64KiB = 64 << 10;

log_options small_segments(durability mode = durability::none) {
  log_options o;
  o.segment_bytes = k64KiB;
  o.mode = mode;
  return o;
}

result<append_result> append_one(event_log& log, std::string_view stream, expected_version ev,
                                 size_t payload_bytes = 40, uint32_t type = 1) {
  std::string payload(payload_bytes, 'p');
  event_data e;
  e.type = type;
  e.payload = event_data::bytes(payload);
  return log.append(stream_id(stream), ev, e);
}

uint64_t bucket_sum(const log_metrics& m) {
  uint64_t n = 0;
  for (uint64_t b : m.sync_latency) n += b;
  return n;
}

TEST(Metrics, AppendsConflictsAndRefusalsAreReadFromAnotherOpenAndStartAgainWithEachSession) {
  temp_dir tmp;
  const std::string dir = tmp.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, small_segments()));
  const uint64_t start = log->committed_position().value;
  for (int i = 0; i < 10; ++i) ASSERT_OK(append_one(*log, "s" + std::to_string(i), expected_version::no_stream()));
  std::string p = "x";
  std::vector<event_data> batch(3);
  for (auto& e : batch) e.payload = event_data::bytes(p);
  for (int i = 0; i < 5; ++i) ASSERT_OK(log->append(stream_id("batch"), expected_version::any(), batch));
  // Two conflicts, one refusal of another kind.
  EXPECT_ERRC(append_one(*log, "s1", expected_version::no_stream()), errc::wrong_expected_version);
  EXPECT_ERRC(append_one(*log, "s2", expected_version::exact(7)), errc::wrong_expected_version);
  EXPECT_ERRC(log->append(stream_id("batch"), expected_version::any(), std::span<const event_data>{}),
              errc::invalid_argument);

  ASSERT_OK_AND_ASSIGN(log_metrics m, read_metrics(dir));
  EXPECT_TRUE(m.writer_alive);
  EXPECT_EQ(m.writer_pid, static_cast<uint64_t>(::getpid()));
  ASSERT_TRUE(m.counters_present);
  EXPECT_EQ(m.append_calls, 15u);
  EXPECT_EQ(m.append_events, 25u);
  EXPECT_EQ(m.next_sequence, 25u);
  EXPECT_EQ(m.committed, log->committed_position());
  EXPECT_EQ(m.append_bytes, log->committed_position().value - start);
  EXPECT_EQ(m.append_conflicts, 2u);
  EXPECT_EQ(m.append_refusals, 1u);
  EXPECT_GT(m.session_start_ns, 0u);
  EXPECT_GT(m.open_ns, 0u);
  EXPECT_GE(m.segments, 1u);
  EXPECT_GT(m.bytes_on_disk, 0u);
  // The writer's own view agrees.
  const log_metrics own = log->metrics();
  EXPECT_EQ(own.append_calls, 15u);
  EXPECT_EQ(own.append_conflicts, 2u);

  ASSERT_OK(log->close());
  log.reset();
  ASSERT_OK_AND_ASSIGN(m, read_metrics(dir));
  EXPECT_FALSE(m.writer_alive);
  EXPECT_EQ(m.writer_pid, 0u);
  EXPECT_EQ(m.append_calls, 15u) << "the last session's figures stay readable after it closed";

  // A new session starts from zero, and counts from where the log is.
  ASSERT_OK_AND_ASSIGN(log, event_log::open(dir, small_segments()));
  ASSERT_OK(append_one(*log, "s0", expected_version::exact(1)));
  ASSERT_OK_AND_ASSIGN(m, read_metrics(dir));
  EXPECT_EQ(m.append_calls, 1u);
  EXPECT_EQ(m.append_events, 1u);
  EXPECT_EQ(m.append_conflicts, 0u);
  EXPECT_EQ(m.next_sequence, 26u);
}

TEST(Metrics, RollOversAndSealsAreCountedAndAgreeWithStats) {
  temp_dir tmp;
  const std::string dir = tmp.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, small_segments()));
  for (int i = 0; i < 600; ++i) ASSERT_OK(append_one(*log, "s", expected_version::any(), 1000));
  const log_stats st = log->stats();
  const log_metrics live = log->metrics();
  EXPECT_EQ(live.rollovers, st.rollovers);
  EXPECT_EQ(live.rollovers, st.segments - 1);
  EXPECT_GE(live.rollovers, 8u);
  EXPECT_EQ(live.rollovers_that_waited, st.rollovers_that_waited);
  EXPECT_LE(live.rollovers_that_waited, live.rollovers);
  ASSERT_OK(log->close());  // drains the seal queue
  ASSERT_OK_AND_ASSIGN(log_metrics m, read_metrics(dir));
  EXPECT_EQ(m.rollovers, live.rollovers);
  EXPECT_EQ(m.segments_sealed, live.rollovers) << "every segment the writer left is sealed by close";
  // Each seal syncs its segment (mode none included), through the counted gate.
  EXPECT_GE(m.syncs, m.segments_sealed);
  EXPECT_EQ(bucket_sum(m), m.syncs);
}

TEST(Metrics, GroupCommitSyncsFillTheLatencyHistogram) {
  temp_dir tmp;
  const std::string dir = tmp.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, small_segments(durability::group)));
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(append_result r, append_one(*log, "s", expected_version::any()));
    ASSERT_OK(log->wait_durable(r.end));
  }
  ASSERT_OK_AND_ASSIGN(log_metrics m, read_metrics(dir));
  EXPECT_GE(m.syncs, 1u);
  EXPECT_EQ(m.sync_failures, 0u);
  EXPECT_EQ(bucket_sum(m), m.syncs);
  EXPECT_GE(m.sync_bytes, m.append_bytes) << "every appended byte was synced once at least";
  EXPECT_GE(m.sync_ns_total, m.longest_sync_ns);
  EXPECT_GT(m.longest_sync_ns, 0u);
  // The bucket of the longest sync is the highest non-empty one.
  int top = -1;
  for (int i = 0; i < kSyncBuckets; ++i)
    if (m.sync_latency[i]) top = i;
  ASSERT_GE(top, 0);
  const uint64_t us = m.longest_sync_ns / 1000;
  EXPECT_EQ(top, std::min<int>(static_cast<int>(std::bit_width(us)), kSyncBuckets - 1));
}

TEST(Metrics, RecoveryActionsAtOpenAreCountedWithTheBytesKeptInLostAndFound) {
  temp_dir tmp;
  const std::string dir = tmp.sub("log");
  uint64_t end = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, small_segments()));
    for (int i = 0; i < 5; ++i) ASSERT_OK(append_one(*log, "s", expected_version::any()));
    end = log->committed_position().value;
    ASSERT_OK(log->close());
  }
  // Garbage just past the acknowledged end: a torn write, which recovery cuts
  // (the bytes go to lost+found/ first).
  const uint8_t g[16] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 0x30, 0, 0, 0, 1, 3, 1, 0};
  ASSERT_NO_FATAL_FAILURE(
      write_at(segment_path(dir, segment_of(position{end}, k64KiB)), offset_in_segment(position{end}, k64KiB), g, sizeof g));
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir, small_segments()));
  ASSERT_OK_AND_ASSIGN(log_metrics m, read_metrics(dir));
  EXPECT_GE(m.recovery_cut, 1u);
  EXPECT_GE(m.recovery_bytes_set_aside, sizeof g);
  EXPECT_TRUE(fs::exists(dir + "/lost+found"));
  EXPECT_EQ(m.append_events, 0u);
}

TEST(Metrics, SubscriptionAndGroupLagsInBytesAndEvents) {
  temp_dir tmp;
  const std::string dir = tmp.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, small_segments()));
  std::vector<append_result> acks;
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK_AND_ASSIGN(append_result r, append_one(*log, "s" + std::to_string(i % 10), expected_version::any()));
    acks.push_back(r);
  }
  ASSERT_OK_AND_ASSIGN(auto store, subscription_store::open(dir));
  ASSERT_OK(store.save("forty", acks[39].end));  // events 0..39 processed
  ASSERT_OK(store.save("done", acks.back().end));

  {
    group_options go;
    go.partitions = 4;
    go.commit = commit_policy::manual;
    ASSERT_OK_AND_ASSIGN(auto member, consumer_group::join(*log, "g", go));
    event_view v;
    for (int n = 0; n < 100; ++n) {
      ASSERT_OK_AND_ASSIGN(bool got, member.next(v, 5s));
      ASSERT_TRUE(got);
      ASSERT_OK(member.ack(v));
    }
    ASSERT_OK(member.commit());
    ASSERT_OK(member.leave());
  }
  for (int i = 0; i < 5; ++i) ASSERT_OK(append_one(*log, "late", expected_version::any()));
  const uint64_t committed = log->committed_position().value;

  ASSERT_OK_AND_ASSIGN(log_metrics m, read_metrics(dir));
  std::map<std::string, consumer_lag> subs;
  uint64_t group_events = 0, group_bytes_max = 0;
  int partitions = 0;
  for (const consumer_lag& c : m.consumers) {
    EXPECT_TRUE(c.problem.empty()) << c.name << ": " << c.problem;
    if (c.what == consumer_lag::kind::subscription) {
      subs[c.name] = c;
    } else {
      EXPECT_EQ(c.name, "g");
      ++partitions;
      group_events += c.lag_events;
      group_bytes_max = std::max(group_bytes_max, c.lag_bytes);
    }
  }
  ASSERT_EQ(subs.size(), 2u);
  EXPECT_EQ(subs["forty"].lag_events, 65u);
  EXPECT_EQ(subs["forty"].lag_bytes, committed - acks[39].end.value);
  EXPECT_EQ(subs["done"].lag_events, 5u);
  EXPECT_EQ(subs["done"].lag_bytes, committed - acks.back().end.value);
  EXPECT_EQ(partitions, 4);
  // "late" hashes to one partition: its lag holds the 5 events; each other
  // partition's committed position is behind only events of other partitions.
  EXPECT_GE(group_events, 5u);
  EXPECT_GT(group_bytes_max, 0u);

  const std::string text = prometheus_text(m, dir);
  EXPECT_NE(text.find("varve_subscription_lag_events{log=\"" + dir + "\",subscription=\"forty\"} 65\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("varve_group_lag_bytes{log=\"" + dir + "\",group=\"g\",partition=\"0\"}"),
            std::string::npos);
}

// events_behind (the one helper behind every lag in events): from each
// event's position, the events from it to the end; none at or past the end.
TEST(Metrics, EventsBehindCountsFromAnyPositionToTheEnd) {
  temp_dir d;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), small_segments()));
  std::vector<position> at;
  for (int i = 0; i < 300; ++i) {
    std::string body(1 + i % 500, 'e');
    ASSERT_OK_AND_ASSIGN(append_result r, log->append(stream_id("s" + std::to_string(i % 7)), expected_version::any(),
                                                      event_data{.type = 1, .payload = event_data::bytes(body)}));
    at.push_back(r.first);
  }
  for (size_t i = 0; i < at.size(); i += 37) {
    ASSERT_OK_AND_ASSIGN(uint64_t n, events_behind(*log, at[i]));
    EXPECT_EQ(n, at.size() - i) << "from event " << i;
  }
  EXPECT_EQ(events_behind(*log, position{}).value(), 300u);
  EXPECT_EQ(events_behind(*log, log->committed_position()).value(), 0u);
  EXPECT_EQ(events_behind(*log, position{log->committed_position().value + 4096}).value(), 0u);
  EXPECT_EQ(events_behind(*log, position::none()).value(), 0u);
}

TEST(Metrics, ADamagedSubscriptionFileIsReportedNotFatal) {
  temp_dir tmp;
  const std::string dir = tmp.sub("log");
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir, small_segments()));
  ASSERT_OK_AND_ASSIGN(append_result r, append_one(*log, "s", expected_version::any()));
  ASSERT_OK_AND_ASSIGN(auto store, subscription_store::open(dir));
  ASSERT_OK(store.save("bad", r.end));
  for (const auto& e : fs::directory_iterator(dir + "/subscriptions")) flip_byte(e.path().string(), 3);
  ASSERT_OK_AND_ASSIGN(log_metrics m, read_metrics(dir));
  ASSERT_EQ(m.consumers.size(), 1u);
  EXPECT_FALSE(m.consumers[0].problem.empty());
  EXPECT_FALSE(m.consumers[0].lag_events_known);
  const std::string text = prometheus_text(m, "x");
  EXPECT_NE(text.find("varve_consumer_unreadable{log=\"x\",subscription=\"bad\"} 1\n"), std::string::npos) << text;
}

// Every line is a comment (HELP/TYPE) or a sample of a declared family;
// histogram buckets are cumulative and end with +Inf == _count; label
// values are escaped as the text format requires.
TEST(Metrics, PrometheusTextFollowsTheExpositionFormat) {
  log_metrics m;
  m.writer_alive = true;
  m.counters_present = true;
  m.committed = position{4096};
  m.syncs = 7;
  m.sync_latency[0] = 1;
  m.sync_latency[5] = 4;
  m.sync_latency[kSyncBuckets - 1] = 2;
  m.sync_ns_total = 12'000'000'000;
  m.segments = 3;
  m.bytes_on_disk = 1 << 20;
  consumer_lag c;
  c.name = "sub";
  c.at = position{100};
  c.lag_bytes = 3996;
  c.lag_events = 9;
  m.consumers.push_back(c);
  const std::string label = "/data/a\"b\\c\nd";
  const std::string text = prometheus_text(m, label);
  const std::string escaped = "/data/a\\\"b\\\\c\\nd";
  EXPECT_NE(text.find("varve_writer_up{log=\"" + escaped + "\"} 1\n"), std::string::npos) << text;

  const std::regex sample_re(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*)\} (\S+)$)");
  const std::regex type_re(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  std::vector<std::pair<std::string, double>> buckets;
  double count = -1;
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    std::smatch mt;
    if (line.rfind("# HELP ", 0) == 0) {
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (std::regex_match(line, mt, type_re)) {
      EXPECT_TRUE(types.emplace(mt[1], mt[2]).second) << "family declared twice: " << line;
      EXPECT_TRUE(helped.count(mt[1])) << "TYPE before HELP: " << line;
      continue;
    }
    ASSERT_TRUE(std::regex_match(line, mt, sample_re)) << "not a sample line: " << line;
    ++samples;
    std::string name = mt[1];
    const std::string value = mt[3];
    double v = 0;
    ASSERT_NO_THROW(v = std::stod(value)) << line;
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!types.count(family) && name.size() > std::strlen(suffix) &&
          name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        family = name.substr(0, name.size() - std::strlen(suffix));
    ASSERT_TRUE(types.count(family)) << "sample of an undeclared family: " << line;
    if (types[family] == "counter") {
      EXPECT_TRUE(name.size() > 6 && name.ends_with("_total")) << line;
    }
    if (name == "varve_sync_duration_seconds_bucket") {
      const std::string labels = mt[2];
      const auto le = labels.find("le=\"");
      ASSERT_NE(le, std::string::npos);
      buckets.emplace_back(labels.substr(le + 4, labels.find('"', le + 4) - le - 4), v);
    }
    if (name == "varve_sync_duration_seconds_count") count = v;
  }
  EXPECT_GT(samples, 20);
  ASSERT_EQ(buckets.size(), static_cast<size_t>(kSyncBuckets));
  double last_le = 0, last = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    EXPECT_GE(buckets[i].second, last) << "buckets must be cumulative";
    last = buckets[i].second;
    if (i + 1 < buckets.size()) {
      const double le = std::stod(buckets[i].first);
      EXPECT_GT(le, last_le);
      last_le = le;
    }
  }
  EXPECT_EQ(buckets.back().first, "+Inf");
  EXPECT_EQ(buckets.back().second, 7);
  EXPECT_EQ(count, 7);
  EXPECT_EQ(buckets[0].second, 1) << "le=1e-06 holds the syncs under 1 us";
  EXPECT_EQ(buckets[5].second, 5);
  EXPECT_NE(text.find("varve_sync_duration_seconds_sum{log=\"" + escaped + "\"} 12\n"), std::string::npos);
}

}  // namespace
