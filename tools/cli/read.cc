// `varve read DIR` (the log, or one stream, as NDJSON) and `varve tail DIR`
// (the same, then following the log live).
#include "tools/cli/common.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "varve/subscription.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace varve::tools;

struct read_args {
  std::string dir;
  std::optional<std::string> from_position;
  std::optional<std::string> limit;
  std::optional<std::string> stream;       // --stream: a named stream
  std::optional<std::string> stream_u64;   // --stream-u64: an integer stream id
  std::optional<std::string> from_version;
  bool backward = false;
  std::optional<std::string> since;
};

// `varve read --stream S`: one stream through the per-aggregate index.
int read_one_stream(const event_log& log, const read_args& a, uint64_t limit, type_names& names) {
  stream_id id;
  std::string bytes;
  if (a.stream_u64) {
    auto n = parse_u64(*a.stream_u64);
    if (!n) return usage_error("--stream-u64: \"" + *a.stream_u64 + "\" is not a non-negative integer");
    id = stream_id::from_u64(*n);
  } else {
    bytes = *a.stream;
    if (bytes.empty() || bytes.size() > kMaxStreamIdBytes)
      return usage_error("--stream: a stream id has 1 to 255 bytes");
    id = stream_id(std::string_view(bytes));
  }
  stream_version from = a.backward ? kLatestVersion : 1;
  if (a.from_version) {
    auto v = parse_u64(*a.from_version);
    if (!v) return usage_error("--from-version: \"" + *a.from_version + "\" is not a non-negative integer");
    from = *v;
  }
  auto reader = log.read_stream(id, from, a.backward ? read_direction::backward : read_direction::forward, limit);
  if (!reader) return fail(reader.error());
  ndjson_writer out(STDOUT_FILENO);
  event_view e;
  while (true) {
    auto got = reader->next(e);
    if (!got) {
      (void)out.flush();
      return fail(got.error());
    }
    if (!*got) break;
    write_event(out, e, names.json_for(e.type));
    if (!out.error().ok()) break;
  }
  if (status st = out.flush(); !st) return fail(st);
  return kExitOk;
}

int cmd_read(const read_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const bool by_stream = a.stream || a.stream_u64;
  if (a.stream && a.stream_u64) return usage_error("--stream and --stream-u64 exclude each other");
  if (by_stream && (a.from_position || a.since))
    return usage_error("--stream reads one stream by version: --from-position and --since do not apply");
  if (!by_stream && (a.from_version || a.backward))
    return usage_error("--from-version and --backward need --stream");
  if (a.since && a.from_position) return usage_error("--since and --from-position exclude each other");
  std::optional<uint64_t> since;
  if (a.since) {
    since = parse_time(*a.since);
    if (!since)
      return usage_error("--since: \"" + *a.since +
                         "\" is not a time (2026-11-22T10:00:00Z, or nanoseconds since the epoch)");
  }
  position from;
  if (auto rc = parse_flag(a.from_position, "--from-position", from.value, "a position")) return *rc;
  uint64_t limit = UINT64_MAX;
  if (auto rc = parse_flag(a.limit, "--limit", limit)) return *rc;

  auto opened = event_log::open_read_only(a.dir);
  if (!opened) return fail(opened.error());
  const event_log& log = **opened;
  type_names names(a.dir);
  if (by_stream) return read_one_stream(log, a, limit, names);
  if (since) {
    auto p = log.position_at_time(*since);
    if (!p) return fail(p.error());
    from = *p;
  }

  ndjson_writer out(STDOUT_FILENO);
  log_reader reader = log.read(from);
  event_view e;
  for (uint64_t n = 0; n < limit; ++n) {
    auto got = reader.next(e);
    if (!got) {
      (void)out.flush();
      // The first record not being one is more likely a --from-position that
      // names no record than a corrupt log: say so.
      if (n == 0 && a.from_position && from.value != 0) {
        if (got.error().code() == errc::invalid_argument)
          return usage_error("--from-position " + *a.from_position + ": " + got.error().to_string());
        std::fprintf(stderr,
                     "varve: %s\nvarve: (is --from-position %s the position of a record? "
                     "positions come from append acks and varve read)\n",
                     got.error().to_string().c_str(), a.from_position->c_str());
        return kExitError;
      }
      return fail(got.error());
    }
    if (!*got) break;
    write_event(out, e, names.json_for(e.type));
    if (!out.error().ok()) break;
  }
  if (status st = out.flush(); !st) return fail(st);
  return kExitOk;
}

struct tail_args {
  std::string dir;
  std::optional<std::string> from_position;
  std::optional<std::string> stream;
  std::optional<std::string> category;
  std::optional<std::string> name;
  std::optional<std::string> limit;
};

// SIGINT/SIGTERM: wake the parked subscription; the loop then flushes what it
// printed, saves a named position and exits 0.
subscription* g_tail_sub = nullptr;
extern "C" void on_tail_signal(int) {
  if (g_tail_sub) g_tail_sub->cancel();  // async-signal-safe
}

int cmd_tail(const tail_args& a) {
  using namespace std::chrono_literals;
  if (auto rc = check_dir(a.dir)) return *rc;
  if (a.stream && a.category) return usage_error("--stream and --category exclude each other");
  position from = subscription::end();
  if (auto rc = parse_flag(a.from_position, "--from-position", from.value, "a position")) return *rc;
  uint64_t limit = UINT64_MAX;
  if (auto rc = parse_flag(a.limit, "--limit", limit)) return *rc;
  event_filter filter;
  if (a.stream) {
    if (a.stream->empty() || a.stream->size() > kMaxStreamIdBytes)
      return usage_error("--stream: a stream id has 1 to 255 bytes");
    filter.streams.push_back(*a.stream);
  }
  if (a.category) {
    if (a.category->empty()) return usage_error("--category: the prefix is empty");
    filter.stream_prefixes.push_back(*a.category);
  }
  subscription_options opts;
  if (a.name) {
    if (!subscription_store::valid_name(*a.name))
      return usage_error("--name: \"" + *a.name + "\": use 1 to 100 of A-Z a-z 0-9 . _ - (not starting with '.')");
    opts.name = *a.name;
  }

  auto opened = event_log::open_read_only(a.dir);
  if (!opened) return fail(opened.error());
  const event_log& log = **opened;
  auto sub = subscription::open(log, from, std::move(filter), opts);
  if (!sub) {
    if (sub.error().code() == errc::invalid_argument && a.from_position)
      return usage_error("--from-position " + *a.from_position + ": " + sub.error().to_string());
    return fail(sub.error());
  }
  type_names names(a.dir);

  g_tail_sub = &sub.value();
  struct sigaction sa {};
  sa.sa_handler = on_tail_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  // A named tail saves its position after output is written (so a crash
  // repeats lines rather than losing them), at most about once a second
  // while events flow (each save is an fsync), and at exit.
  auto last_save = std::chrono::steady_clock::now();
  auto save = [&](bool now) -> status {
    if (!a.name) return {};
    if (!now && std::chrono::steady_clock::now() - last_save < 1s) return {};
    last_save = std::chrono::steady_clock::now();
    if (status r = sub->ack(sub->where()); !r) return r;
    return sub->commit();
  };

  ndjson_writer out(STDOUT_FILENO);
  event_view e;
  status failure;
  uint64_t n = 0;
  while (n < limit) {
    // Output waits only while events keep coming: caught up, it goes out.
    auto got = sub->next(e, out.buffered() ? 0ns : std::chrono::nanoseconds(1s));
    if (!got) {
      if (got.error().code() != errc::cancelled) failure = got.error();
      break;
    }
    if (!*got) {
      if (status f = out.flush(); !f) break;
      if (status r = save(false); !r) {
        failure = r;
        break;
      }
      continue;
    }
    write_event(out, e, names.json_for(e.type));
    if (!out.error().ok()) break;
    ++n;
  }
  g_tail_sub = nullptr;
  status flushed = out.flush();
  if (flushed && failure.ok()) {
    if (status r = save(true); !r) failure = r;
  }
  if (!failure.ok()) return fail(failure);
  if (!flushed) return fail(flushed);
  return kExitOk;
}

}  // namespace

void add_read(CLI::App& app, command_list& out) {
  auto a = std::make_shared<read_args>();
  auto* rd = app.add_subcommand("read", "Print events as NDJSON");
  rd->add_option("DIR", a->dir, "Log directory")->required();
  rd->add_option("--from-position", a->from_position, "Start at this record position");
  rd->add_option("--since", a->since,
                 "Start at the first event at or after this time (2026-11-22T10:00:00Z, or ns "
                 "since the epoch), through the time index");
  rd->add_option("--limit", a->limit, "Print at most N events");
  rd->add_option("--stream", a->stream, "Read only this stream, in version order");
  rd->add_option("--stream-u64", a->stream_u64, "Read only this integer stream id");
  rd->add_option("--from-version", a->from_version,
                 "With --stream: start at this version (default 1; backward: the newest)");
  rd->add_flag("--backward", a->backward, "With --stream: newest first");
  out.push_back({rd, [a] { return cmd_read(*a); }});
}

void add_tail(CLI::App& app, command_list& out) {
  auto a = std::make_shared<tail_args>();
  auto* tl = app.add_subcommand(
      "tail", "Print events as NDJSON (like read) and keep following the log live until "
              "Ctrl-C / SIGTERM (exit 0) or --limit");
  tl->add_option("DIR", a->dir, "Log directory")->required();
  tl->add_option("--from-position", a->from_position,
                 "Start at this record position (0 = the beginning; default: the end, live "
                 "events only)");
  tl->add_option("--stream", a->stream, "Only this stream");
  tl->add_option("--category", a->category, "Only streams whose id starts with this prefix, e.g. order-");
  tl->add_option("--name", a->name,
                 "A named subscription: resume where the last run with this name stopped "
                 "(DIR/subscriptions/NAME.pos), and save the position as it goes");
  tl->add_option("--limit", a->limit, "Stop after N events");
  out.push_back({tl, [a] { return cmd_tail(*a); }});
}

}  // namespace varve::cli
