// accounts_demo: event sourcing with varve, end to end. Each bank account is a
// stream; AccountOpened, Deposited and Withdrawn events are appended with
// optimistic concurrency checks, folded back into balances, and survive a reopen.
//
//   accounts_demo [--events N] [--accounts N] [--dir PATH]
//
// PATH (default ./varve-data/accounts, parents created) gets a fresh log on
// every run, replacing the previous run's; a non-empty directory that is not a
// varve log is refused.

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "varve/varve.h"

namespace {

// The payload of every event: a tiny struct copied in as bytes. The log does
// not care what the bytes are; a real application might use JSON or protobuf.
struct amount_payload {
  int64_t cents;
};

struct event_types {
  uint32_t opened, deposited, withdrawn;
};

// A demo has nothing better to do with an error than to say so and stop.
void check(const varve::status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "accounts_demo: %s: %s\n", what, s.to_string().c_str());
    std::exit(1);
  }
}
template <class T>
T check(varve::result<T> r, const char* what) {
  check(r.to_status(), what);
  return std::move(r.value());
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The read model: replay every event of the log into per-account balances.
std::vector<int64_t> fold_balances(const varve::event_log& log, const event_types& t,
                                   uint64_t accounts, uint64_t& events_read) {
  std::vector<int64_t> balances(accounts, 0);
  varve::log_reader reader = log.read();
  varve::event_view e;
  events_read = 0;
  while (check(reader.next(e), "read")) {
    amount_payload p{};
    std::memcpy(&p, e.payload.data(), std::min(sizeof p, e.payload.size()));
    if (e.type == t.deposited) balances[e.stream_as_u64()] += p.cents;
    if (e.type == t.withdrawn) balances[e.stream_as_u64()] -= p.cents;
    ++events_read;
  }
  return balances;
}

// The same read model rebuilt on every core: accounts are hashed onto
// partitions, each applied by one thread in log order; the partitions'
// balances are then summed (each account lives in exactly one).
struct balance_projection {
  const event_types* t;
  std::vector<int64_t> balances;
  void apply(const varve::event_view& e) {
    amount_payload p{};
    std::memcpy(&p, e.payload.data(), std::min(sizeof p, e.payload.size()));
    if (e.type == t->deposited) balances[e.stream_as_u64()] += p.cents;
    if (e.type == t->withdrawn) balances[e.stream_as_u64()] -= p.cents;
  }
};

std::vector<int64_t> replay_balances(const varve::event_log& log, const event_types& t,
                                     uint64_t accounts, uint64_t& events_read, unsigned& threads) {
  threads = std::max(2u, std::thread::hardware_concurrency());
  auto r = varve::replay(log).threads(threads).run([&](uint32_t) {
    return balance_projection{&t, std::vector<int64_t>(accounts, 0)};
  });
  check(r.error, "replay");
  events_read = r.events_applied;
  return r.reduce(std::vector<int64_t>(accounts, 0), [](std::vector<int64_t> sum,
                                                         const balance_projection& p) {
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += p.balances[i];
    return sum;
  });
}

// One account's history, through the per-aggregate index: only its own
// events are read, however long the log.
void print_history(const varve::event_log& log, const event_types& t, uint64_t account) {
  std::printf("history of account %" PRIu64 " (read_stream):\n", account);
  varve::stream_reader reader =
      check(log.read_stream(varve::stream_id::from_u64(account)), "read_stream");
  varve::event_view e;
  int64_t balance = 0;
  uint64_t seen = 0;
  constexpr uint64_t kShown = 8;
  while (check(reader.next(e), "read")) {
    amount_payload p{};
    std::memcpy(&p, e.payload.data(), std::min(sizeof p, e.payload.size()));
    const char* name = e.type == t.opened      ? "AccountOpened"
                       : e.type == t.deposited ? "Deposited"
                                               : "Withdrawn";
    const int64_t delta = e.type == t.withdrawn ? -p.cents : e.type == t.deposited ? p.cents : 0;
    balance += delta;
    if (++seen <= kShown)
      std::printf("  v%-3" PRIu64 " %-14s %+10.2f  balance %10.2f\n", e.version, name,
                  delta / 100.0, balance / 100.0);
  }
  if (seen > kShown)
    std::printf("  ... %" PRIu64 " more, final balance %.2f\n", seen - kShown, balance / 100.0);
}

uint64_t parse_count(const char* flag, const char* text) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (text[0] < '0' || text[0] > '9' || *end != '\0') {
    std::fprintf(stderr, "accounts_demo: %s wants a number, not \"%s\"\n", flag, text);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t n_events = 3'000'000;
  uint64_t n_accounts = 100'000;
  std::string dir = "./varve-data/accounts";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--events" && i + 1 < argc) n_events = parse_count("--events", argv[++i]);
    else if (arg == "--accounts" && i + 1 < argc) n_accounts = parse_count("--accounts", argv[++i]);
    else if (arg == "--dir" && i + 1 < argc) dir = argv[++i];
    else {
      std::fprintf(stderr, "usage: accounts_demo [--events N] [--accounts N] [--dir PATH]\n");
      return 2;
    }
  }
  if (n_accounts == 0 || n_events < n_accounts) {
    std::fprintf(stderr, "accounts_demo: need --events >= --accounts >= 1\n");
    return 2;
  }

  // Start from nothing so every run does (and measures) the same work: a
  // second run replaces the log the first one left. Only a log is replaced
  // (its varve.meta says so); any other non-empty directory is refused, so a
  // mistyped --dir cannot wipe someone's files. The parents are created, as
  // event_log::create makes only the last directory of the path.
  {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path path(dir);
    if (fs::exists(path / "varve.meta", ec)) {
      fs::remove_all(path, ec);
      if (ec) {
        std::fprintf(stderr, "accounts_demo: removing the previous run's log %s: %s\n", dir.c_str(),
                     ec.message().c_str());
        return 1;
      }
    } else if (fs::exists(path, ec) && !fs::is_empty(path, ec)) {
      std::fprintf(stderr, "accounts_demo: %s is not empty and holds no varve log; give --dir a new "
                   "or empty directory\n", dir.c_str());
      return 1;
    }
    if (path.has_parent_path()) {
      fs::create_directories(path.parent_path(), ec);
      if (ec) {
        std::fprintf(stderr, "accounts_demo: creating %s: %s\n", path.parent_path().c_str(),
                     ec.message().c_str());
        return 1;
      }
    }
  }
  varve::log_options options;
  options.mode = varve::durability::none;  // page cache: survives a crash, not a power loss
  auto log = check(varve::event_log::create(dir, options), "create");
  auto registry = check(varve::type_registry::open(dir), "open type registry");
  const event_types t{check(registry.id_for("AccountOpened"), "register type"),
                      check(registry.id_for("Deposited"), "register type"),
                      check(registry.id_for("Withdrawn"), "register type")};

  // --- Write side: each command checks the account's state, then appends.
  std::vector<int64_t> balances(n_accounts, 0);  // what the command handlers know
  auto append = [&](uint64_t account, varve::expected_version expected, uint32_t type,
                    int64_t cents) {
    const amount_payload p{cents};
    varve::event_data e;
    e.type = type;
    e.payload = std::as_bytes(std::span(&p, 1));
    return log->append(varve::stream_id::from_u64(account), expected, e);
  };

  std::printf("appending %" PRIu64 " events over %" PRIu64 " accounts to %s\n", n_events,
              n_accounts, dir.c_str());
  auto start = std::chrono::steady_clock::now();
  for (uint64_t a = 0; a < n_accounts; ++a)
    check(append(a, varve::expected_version::no_stream(), t.opened, 0), "open account");
  std::mt19937_64 rng(42);
  for (uint64_t i = n_accounts; i < n_events; ++i) {
    const uint64_t a = rng() % n_accounts;
    const int64_t cents = 100 + static_cast<int64_t>(rng() % 10'000);
    if (rng() % 3 == 0 && balances[a] >= cents) {
      // A withdrawal must not overdraw. Decide on the version we looked at; if
      // another writer got in first, the log refuses and nothing is written.
      const auto seen = log->version_of(varve::stream_id::from_u64(a));
      check(append(a, varve::expected_version::exact(seen), t.withdrawn, cents), "withdraw");
      balances[a] -= cents;
    } else {
      check(append(a, varve::expected_version::stream_exists(), t.deposited, cents), "deposit");
      balances[a] += cents;
    }
  }
  const double append_s = seconds_since(start);
  std::printf("  append: %.2f s, %.0f events/s (durability none)\n", append_s, n_events / append_s);

  // What a stale command sees: the account moved on after it read the version.
  const uint64_t demo = n_accounts / 2;
  const auto stale = log->version_of(varve::stream_id::from_u64(demo));
  check(append(demo, varve::expected_version::any(), t.deposited, 500), "deposit");
  balances[demo] += 500;
  auto refused = append(demo, varve::expected_version::exact(stale), t.withdrawn, 100);
  if (!refused.ok() && refused.error().code() == varve::errc::wrong_expected_version)
    std::printf("  a withdraw decided at version %" PRIu64 " was refused: account %" PRIu64
                " is at version %" PRIu64 "\n",
                stale, demo, refused.error().actual_version());

  // --- Read side: fold the whole log into balances; they must agree.
  uint64_t events_read = 0;
  start = std::chrono::steady_clock::now();
  std::vector<int64_t> folded = fold_balances(*log, t, n_accounts, events_read);
  const double read_s = seconds_since(start);
  std::printf("  read:   %.2f s, %.0f events/s, balances %s\n", read_s, events_read / read_s,
              folded == balances ? "match" : "DO NOT MATCH");
  if (folded != balances) return 1;
  unsigned threads = 0;
  start = std::chrono::steady_clock::now();
  std::vector<int64_t> replayed = replay_balances(*log, t, n_accounts, events_read, threads);
  const double replay_s = seconds_since(start);
  std::printf("  replay: %.2f s, %.0f events/s on %u threads, balances %s\n", replay_s,
              events_read / replay_s, threads, replayed == balances ? "match" : "DO NOT MATCH");
  if (replayed != balances) return 1;
  print_history(*log, t, demo);

  // --- Close and reopen: recovery checks the unsealed tail and finds it whole.
  check(log->close(), "close");
  log.reset();
  start = std::chrono::steady_clock::now();
  log = check(varve::event_log::open(dir, options), "reopen");
  const double reopen_ms = seconds_since(start) * 1000;
  folded = fold_balances(*log, t, n_accounts, events_read);
  std::printf("reopened in %.1f ms: %" PRIu64 " events, balances %s\n", reopen_ms, events_read,
              folded == balances ? "still match" : "DO NOT MATCH");
  const varve::log_stats stats = log->stats();
  std::printf("log: %" PRIu64 " segments, %" PRIu64 " streams, %.1f MiB on disk\n", stats.segments,
              stats.streams, stats.bytes_on_disk / 1048576.0);
  check(log->close(), "close");
  return folded == balances ? 0 : 1;
}
