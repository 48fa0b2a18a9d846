// The Prometheus text exposition format of a log's metrics (`varve metrics`).
// Names follow Prometheus' conventions: base units (seconds, bytes), a
// _total suffix on counters, one HELP and TYPE line per family.
#include <cinttypes>
#include <cstdio>
#include <string>

#include "varve/metrics.h"

namespace varve {
namespace {

// Label values escape backslash, double quote and line feed (the format's rule).
std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string seconds(uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(ns) / 1e9);
  return buf;
}

// A timestamp keeps every digit (%g would round it to 10 s).
std::string unix_seconds(uint64_t ns) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%" PRIu64 ".%09" PRIu64, ns / 1'000'000'000, ns % 1'000'000'000);
  return buf;
}

class writer {
 public:
  explicit writer(std::string_view log_label) : base_("log=\"" + escape_label(log_label) + "\"") {}

  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // `labels`: extra labels, already escaped, with a leading comma.
  void sample(std::string_view name, const std::string& value, const std::string& labels = {}) {
    out_ += name;
    out_ += '{';
    out_ += base_;
    out_ += labels;
    out_ += "} ";
    out_ += value;
    out_ += '\n';
  }
  void sample(std::string_view name, uint64_t value, const std::string& labels = {}) {
    sample(name, std::to_string(value), labels);
  }
  // A family with one sample.
  void one(const char* name, const char* type, const char* help, uint64_t value) {
    family(name, type, help);
    sample(name, value);
  }
  void one_seconds(const char* name, const char* type, const char* help, uint64_t ns) {
    family(name, type, help);
    sample(name, seconds(ns));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string base_;
  std::string out_;
};

}  // namespace

std::string prometheus_text(const log_metrics& m, std::string_view log_label) {
  writer w(log_label);
  w.one("varve_writer_up", "gauge", "1 while a writer has the log open.", m.writer_alive ? 1 : 0);
  w.one("varve_committed_position_bytes", "gauge", "End of what readers may read (log position).",
        m.committed.value);
  w.one("varve_durable_position_bytes", "gauge", "End of what survives a power loss (log position).",
        m.durable.value);
  w.one("varve_events", "gauge", "Events in the log (the next sequence number).", m.next_sequence);
  w.one("varve_start_position_bytes", "gauge", "Where the log starts (retention removed what lies before).",
        m.start.value);
  w.one("varve_first_sequence", "gauge", "The sequence number of the log's first event (retention).",
        m.first_sequence);
  if (m.segments || m.bytes_on_disk) {
    w.one("varve_segments", "gauge", "Segment files.", m.segments);
    w.one("varve_disk_bytes", "gauge", "Bytes allocated on disk by every file of the log directory.",
          m.bytes_on_disk);
  }
  if (m.counters_present) {
    // Counters of the writer session (the live one, or the last one): a new
    // session starts them at 0, which Prometheus' rate() takes for a reset.
    w.family("varve_session_start_timestamp_seconds", "gauge",
             "When the writer session the counters belong to opened the log (Unix time).");
    w.sample("varve_session_start_timestamp_seconds", unix_seconds(m.session_start_ns));
    w.one_seconds("varve_open_duration_seconds", "gauge",
                  "How long that session's open took, recovery included.", m.open_ns);
    w.one("varve_appends_total", "counter", "Successful append calls (a batch counts once).", m.append_calls);
    w.one("varve_appended_events_total", "counter", "Events appended.", m.append_events);
    w.one("varve_appended_bytes_total", "counter", "Log bytes appended (records, padding, segment ends).",
          m.append_bytes);
    w.family("varve_append_refusals_total", "counter", "Appends refused, by reason.");
    w.sample("varve_append_refusals_total", m.append_conflicts, ",reason=\"wrong_expected_version\"");
    w.sample("varve_append_refusals_total", m.append_refusals, ",reason=\"other\"");
    w.one("varve_rollovers_total", "counter", "Segment roll-overs.", m.rollovers);
    w.one("varve_rollovers_waited_total", "counter",
          "Roll-overs that waited for the next segment to be prepared.", m.rollovers_that_waited);
    w.one_seconds("varve_rollover_wait_max_seconds", "gauge", "Longest wait of a roll-over.",
                  m.longest_rollover_wait_ns);
    w.one_seconds("varve_seal_wait_max_seconds", "gauge",
                  "Longest wait of the writer for room in the seal queue.", m.longest_seal_wait_ns);
    w.one("varve_segments_sealed_total", "counter", "Segments sealed (records and footer durable).",
          m.segments_sealed);

    w.family("varve_sync_duration_seconds", "histogram",
             "Syncs of log data and of the control block (msync, fdatasync), by duration.");
    uint64_t cumulative = 0;
    for (int i = 0; i < kSyncBuckets; ++i) {
      cumulative += m.sync_latency[i];
      if (i + 1 == kSyncBuckets) break;  // the last bucket is +Inf
      w.sample("varve_sync_duration_seconds_bucket", cumulative,
               ",le=\"" + seconds((uint64_t{1} << i) * 1000) + "\"");
    }
    w.sample("varve_sync_duration_seconds_bucket", cumulative, ",le=\"+Inf\"");
    w.sample("varve_sync_duration_seconds_sum", seconds(m.sync_ns_total));
    w.sample("varve_sync_duration_seconds_count", m.syncs);
    w.one("varve_sync_failures_total", "counter", "Syncs that failed (the log then refuses writes).",
          m.sync_failures);
    w.one("varve_synced_bytes_total", "counter", "Bytes of the ranges synced (whole-file syncs not counted).",
          m.sync_bytes);
    w.one_seconds("varve_sync_max_seconds", "gauge", "Longest sync.", m.longest_sync_ns);

    w.family("varve_recovery_actions_total", "counter",
             "What recovery and the background checks did since the session opened, by kind.");
    const std::pair<const char*, uint64_t> kinds[] = {
        {"cut", m.recovery_cut},         {"set_aside", m.recovery_set_aside},
        {"removed_empty", m.recovery_removed_empty}, {"hole", m.recovery_holes},
        {"rebuilt", m.recovery_rebuilt}, {"note", m.recovery_notes}};
    for (const auto& [kind, n] : kinds) w.sample("varve_recovery_actions_total", n, ",kind=\"" + std::string(kind) + "\"");
    w.one("varve_recovery_set_aside_bytes_total", "counter", "Bytes recovery moved into lost+found/.",
          m.recovery_bytes_set_aside);
  }

  bool any_sub = false, any_group = false;
  for (const consumer_lag& c : m.consumers)
    (c.what == consumer_lag::kind::subscription ? any_sub : any_group) = true;
  auto labels = [](const consumer_lag& c) {
    if (c.what == consumer_lag::kind::subscription) return ",subscription=\"" + escape_label(c.name) + "\"";
    return ",group=\"" + escape_label(c.name) + "\",partition=\"" + std::to_string(c.partition) + "\"";
  };
  auto lags = [&](consumer_lag::kind k, const char* bytes_name, const char* events_name, const char* what) {
    w.family(bytes_name, "gauge", (std::string("Bytes from the ") + what + " position to the committed end.").c_str());
    for (const consumer_lag& c : m.consumers)
      if (c.what == k && c.problem.empty()) w.sample(bytes_name, c.lag_bytes, labels(c));
    w.family(events_name, "gauge", (std::string("Events from the ") + what + " position to the committed end.").c_str());
    for (const consumer_lag& c : m.consumers)
      if (c.what == k && c.lag_events_known && c.problem.empty()) w.sample(events_name, c.lag_events, labels(c));
  };
  if (any_sub) lags(consumer_lag::kind::subscription, "varve_subscription_lag_bytes", "varve_subscription_lag_events", "saved");
  if (any_group) lags(consumer_lag::kind::group, "varve_group_lag_bytes", "varve_group_lag_events", "committed");
  // A reader whose figures could not be read is shown, not left out silently.
  bool any_problem = false;
  for (const consumer_lag& c : m.consumers) any_problem |= !c.problem.empty();
  if (any_problem) {
    w.family("varve_consumer_unreadable", "gauge",
             "1 for a subscription or group whose position could not be read or is past the log's end.");
    for (const consumer_lag& c : m.consumers)
      if (!c.problem.empty()) w.sample("varve_consumer_unreadable", 1, labels(c));
  }
  return w.take();
}

}  // namespace varve
