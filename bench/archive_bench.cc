// varve-archive-bench: the archive tier (issue 21.3) on a realistic JSON
// workload: the accounts demo's domain (AccountOpened / Deposited / Withdrawn
// per account stream) with the fields a bank's events carry, as JSON. The
// demo itself stores an 8-byte binary amount, which would compress far better
// than anything real, so its events are rendered as JSON here.
//
//   varve-archive-bench [--events N] [--accounts N] [--segment-bytes B]
//                       [--level L] [--histories N] [--dir PATH] [--json]
//
// Measures, on one log, in one run:
//   - the archive pass: compression ratio, and MB/s of raw segment moved;
//   - a full verified scan (log_reader) of the hot log and of the same
//     segments archived: the first scan after open (inflating every frame)
//     and a second (inflated already);
//   - whole-aggregate stream reads (one account's history), hot and
//     archived, each on a freshly opened log so an archived read pays for
//     inflating the frames it touches: median and p99 per aggregate.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "varve/varve.h"

using namespace varve;
namespace fsys = std::filesystem;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class T>
T must(result<T> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "varve-archive-bench: %s: %s\n", what, r.error().to_string().c_str());
    std::exit(1);
  }
  return std::move(r.value());
}
void must(const status& s, const char* what) {
  if (!s) {
    std::fprintf(stderr, "varve-archive-bench: %s: %s\n", what, s.to_string().c_str());
    std::exit(1);
  }
}

std::string account_id(uint64_t a) {
  char b[32];
  std::snprintf(b, sizeof b, "acct-%08" PRIu64, a);
  return b;
}

// One event of the accounts domain as JSON, deterministic in (i, account).
std::string event_json(std::mt19937_64& rng, uint64_t account, bool opening, uint64_t seq) {
  static const char* kCurrencies[] = {"EUR", "EUR", "EUR", "USD", "GBP", "CHF"};
  static const char* kChannels[] = {"sepa", "card", "atm", "instant", "standing-order"};
  static const char* kMerchants[] = {"Grocery Market", "City Transport", "Coffee Corner", "Online Books",
                                     "Energy Utility", "Telecom Provider", "Pharmacy", "Restaurant"};
  char iban[40];
  std::snprintf(iban, sizeof iban, "DE%02" PRIu64 "%018" PRIu64, rng() % 100, static_cast<uint64_t>(rng() % 1000000000000000000ull));
  char ref[40];
  std::snprintf(ref, sizeof ref, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64, rng() & 0xffffffff,
                rng() & 0xffff, rng() & 0xffff, static_cast<uint64_t>(rng() & 0xffffffffffffull));
  nlohmann::ordered_json j;
  j["account_id"] = account_id(account);
  if (opening) {
    j["owner"] = "customer-" + std::to_string(account * 7919 % 1000003);
    j["currency"] = kCurrencies[account % 6];
    j["branch"] = "branch-" + std::to_string(account % 97);
    j["opened_at"] = 1'700'000'000 + seq;
    return j.dump();
  }
  const bool deposit = rng() % 3 == 0;
  j["amount_cents"] = static_cast<int64_t>(rng() % (deposit ? 500000 : 20000));
  j["currency"] = kCurrencies[account % 6];
  j["channel"] = kChannels[rng() % 5];
  j["counterparty_iban"] = iban;
  if (!deposit) j["merchant"] = kMerchants[rng() % 8];
  j["reference"] = ref;
  j["booked_at"] = 1'700'000'000 + seq;
  return j.dump();
}

struct scan_figures {
  double seconds = 0;
  uint64_t events = 0, bytes = 0;
};

scan_figures scan(const event_log& log) {
  scan_figures f;
  log_reader r = log.read();
  event_view v;
  const double t0 = now_s();
  while (must(r.next(v), "scan")) {
    ++f.events;
    f.bytes += v.record_bytes;
  }
  f.seconds = now_s() - t0;
  return f;
}

// One account's whole history per sample, each on a freshly opened log (the
// writer's handle: its head table answers where a stream ends in O(1), as a
// long-running application's would), so an archived read pays for
// inflating the frames it touches.
std::vector<double> histories(const std::string& dir, const log_options& o, const std::vector<uint64_t>& accounts) {
  std::vector<double> us;
  log_options quiet = o;
  quiet.prepare_next_segment = false;  // no segment pre-faulted behind the timed reads
  for (uint64_t a : accounts) {
    auto log = must(event_log::open(dir, quiet), "open");
    const std::string id = account_id(a);
    const double t0 = now_s();
    stream_reader sr = must(log->read_stream(stream_id(id), 1), "read_stream");
    event_view v;
    uint64_t n = 0;
    while (must(sr.next(v), "stream next")) ++n;
    us.push_back((now_s() - t0) * 1e6);
    if (n == 0) {
      std::fprintf(stderr, "varve-archive-bench: %s has no events\n", id.c_str());
      std::exit(1);
    }
  }
  std::sort(us.begin(), us.end());
  return us;
}

double pct(const std::vector<double>& v, double p) {
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"varve-archive-bench: the archive tier on the accounts domain's JSON events"};
  uint64_t events = 2'000'000, accounts = 20'000, segment_bytes = 64ull << 20, samples = 200;
  int level = 3;
  uint32_t frame_bytes = 64 * 1024;
  std::string dir = "/tmp/varve-archive-bench";
  bool json = false;
  app.add_option("--events", events, "Events to append");
  app.add_option("--accounts", accounts, "Account streams");
  app.add_option("--segment-bytes", segment_bytes, "Segment capacity");
  app.add_option("--level", level, "zstd level");
  app.add_option("--frame-bytes", frame_bytes, "Bytes of segment per compressed frame");
  app.add_option("--histories", samples, "Account histories read, hot and archived");
  app.add_option("--dir", dir, "Scratch directory (replaced)");
  app.add_flag("--json", json, "Print one JSON object");
  CLI11_PARSE(app, argc, argv);

  fsys::remove_all(dir);
  fsys::create_directories(dir);
  const std::string log_dir = dir + "/log", arch = dir + "/archive";
  log_options o;
  o.segment_bytes = segment_bytes;
  {
    auto log = must(event_log::create(log_dir, o), "create");
    std::mt19937_64 rng(42);
    std::vector<bool> opened(accounts);
    for (uint64_t i = 0; i < events; ++i) {
      const uint64_t a = rng() % accounts;
      const std::string p = event_json(rng, a, !opened[a], i);
      const bool opening = !opened[a];
      opened[a] = true;
      event_data e;
      e.type = opening ? 1 : 2;
      e.content = content_type::json;
      e.payload = event_data::bytes(p);
      must(log->append(stream_id(account_id(a)), expected_version::any(), e), "append");
    }
    must(log->close(), "close");
  }
  std::mt19937_64 pick(7);
  std::vector<uint64_t> sample;
  for (uint64_t i = 0; i < samples; ++i) sample.push_back(pick() % accounts);

  nlohmann::ordered_json out;
  out["events"] = events;
  out["accounts"] = accounts;
  out["segment_bytes"] = segment_bytes;
  out["level"] = level;
  out["frame_bytes"] = frame_bytes;
  // The hot log: a scan after open (page cache warm: it was just written).
  {
    auto log = must(event_log::open_read_only(log_dir), "open");
    scan_figures f = scan(*log);
    out["hot_scan_ev_s"] = f.events / f.seconds;
    out["hot_scan_gb_s"] = f.bytes / f.seconds / 1e9;
    out["record_bytes"] = f.bytes;
  }
  const auto hot = histories(log_dir, o, sample);
  out["hot_history_us_p50"] = pct(hot, 0.5);
  out["hot_history_us_p99"] = pct(hot, 0.99);

  {
    auto log = must(event_log::open(log_dir, o), "open writer");
    archive_options ao;
    ao.dir = arch;
    ao.level = level;
    ao.frame_bytes = frame_bytes;
    const double t0 = now_s();
    archive_result r = must(log->archive(ao), "archive");
    const double t = now_s() - t0;
    must(log->close(), "close");
    out["segments_archived"] = r.segments_archived;
    out["raw_bytes"] = r.raw_bytes;
    out["archived_bytes"] = r.archived_bytes;
    out["ratio"] = static_cast<double>(r.raw_bytes) / static_cast<double>(r.archived_bytes);
    out["archive_seconds"] = t;
    out["archive_mb_s"] = r.raw_bytes / t / 1e6;
  }
  {
    auto log = must(event_log::open_read_only(log_dir), "open archived");
    scan_figures first = scan(*log);
    scan_figures second = scan(*log);
    out["archived_first_scan_ev_s"] = first.events / first.seconds;
    out["archived_first_scan_gb_s"] = first.bytes / first.seconds / 1e9;
    out["archived_second_scan_ev_s"] = second.events / second.seconds;
    out["archived_second_scan_gb_s"] = second.bytes / second.seconds / 1e9;
  }
  const auto cold = histories(log_dir, o, sample);
  out["archived_history_us_p50"] = pct(cold, 0.5);
  out["archived_history_us_p99"] = pct(cold, 0.99);
  fsys::remove_all(dir);

  if (json) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("%" PRIu64 " events over %" PRIu64 " accounts, %.1f MB of records; zstd level %d, frames of %u bytes\n",
              events, accounts, out["record_bytes"].get<double>() / 1e6, level, frame_bytes);
  std::printf("archive: %" PRIu64 " segments, %.1f MB -> %.1f MB (%.2fx), %.2f s (%.0f MB/s of segment)\n",
              out["segments_archived"].get<uint64_t>(), out["raw_bytes"].get<double>() / 1e6,
              out["archived_bytes"].get<double>() / 1e6, out["ratio"].get<double>(),
              out["archive_seconds"].get<double>(), out["archive_mb_s"].get<double>());
  std::printf("scan, hot:               %.2f M ev/s, %.2f GB/s\n", out["hot_scan_ev_s"].get<double>() / 1e6,
              out["hot_scan_gb_s"].get<double>());
  std::printf("scan, archived (first):  %.2f M ev/s, %.2f GB/s\n",
              out["archived_first_scan_ev_s"].get<double>() / 1e6, out["archived_first_scan_gb_s"].get<double>());
  std::printf("scan, archived (again):  %.2f M ev/s, %.2f GB/s\n",
              out["archived_second_scan_ev_s"].get<double>() / 1e6, out["archived_second_scan_gb_s"].get<double>());
  std::printf("one account's history, fresh handle: hot p50 %.1f us p99 %.1f us; archived p50 %.1f us p99 %.1f us\n",
              pct(hot, 0.5), pct(hot, 0.99), pct(cold, 0.5), pct(cold, 0.99));
  return 0;
}
