// `varve read DIR` (the log, one stream, or the events a filter wants, as
// NDJSON) and `varve tail DIR` (the same, then following the log live).
#include "tools/cli/common.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "varve/subscription.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace varve::tools;
using namespace std::chrono_literals;

struct read_args {
  std::string dir;
  std::optional<uint64_t> from_position;
  std::optional<uint64_t> limit;
  std::optional<uint64_t> stream_u64;   // --stream-u64: an integer stream id
  std::optional<uint64_t> from_version;
  std::optional<uint64_t> to_version;  // with one --stream: stop after this version
  std::optional<uint64_t> since;
  std::optional<uint64_t> until;       // stop before the first event past this time
  bool backward = false;
  filter_flags filter;
  time_format tf = time_format::ns;
  bool json = false;
  std::string upcasters;  // --upcasters FILE
};

// "stream X not found": exit 5, before anything is printed. An existing
// stream with nothing in the range asked for is not an error.
std::optional<int> check_stream_exists(const event_log& log, const stream_id& id, const std::string& shown,
                                       const std::string& dir) {
  if (log.version_of(id) != 0) return std::nullopt;
  return fail_with(kExitNotFound, "not_found", "stream " + shown + " not found in " + dir);
}

// `varve read --stream S`: one stream through the per-aggregate index; --type
// still filters.
int read_one_stream(const event_log& log, const read_args& a, const event_filter& filter, type_names& names) {
  stream_id id;
  std::string shown;
  if (a.stream_u64) {
    id = stream_id::from_u64(*a.stream_u64);
    shown = std::to_string(*a.stream_u64);
  } else {
    id = stream_id(std::string_view(a.filter.streams.front()));
    shown = json_text(a.filter.streams.front());
  }
  if (auto rc = check_stream_exists(log, id, shown, a.dir)) return *rc;
  uint64_t limit = a.limit.value_or(UINT64_MAX);
  stream_version from = a.backward ? kLatestVersion : 1;
  if (a.from_version) from = *a.from_version;
  // As of a version or a time: the stream's events up to that version.
  std::optional<stream_version> upto = a.to_version;
  if (a.until) {
    auto v = log.version_at_time(id, *a.until);
    if (!v) return fail(v.error());
    upto = *v;
  }
  uint64_t count = UINT64_MAX;
  if (upto) {
    if (*upto < from) return kExitOk;  // nothing in the range
    count = *upto - from + 1;
  }
  // With a type filter the limit counts what is printed, not what is read.
  auto reader = log.read_stream(id, from, a.backward ? read_direction::backward : read_direction::forward,
                                filter.types.empty() && filter.correlation_ids.empty() ? std::min(limit, count)
                                                                                        : count);
  if (!reader) return fail(reader.error());
  ndjson_writer out(STDOUT_FILENO);
  event_view e;
  for (uint64_t n = 0; n < limit;) {
    auto got = reader->next(e);
    if (!got) {
      (void)out.flush();
      return fail_reading(got.error());
    }
    if (!*got) break;
    if (!filter.matches(e)) continue;  // the type and correlation flags (the stream is this one)
    write_event(out, e, names.json_for(e.type), a.tf);
    if (!out.error().ok()) break;
    ++n;
  }
  if (status st = out.flush(); !st) return fail(st);
  return kExitOk;
}

int cmd_read(const read_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const bool by_stream = a.stream_u64 || (a.filter.streams.size() == 1 && a.filter.categories.empty());
  if (a.stream_u64 && !a.filter.streams.empty()) return usage_error("--stream and --stream-u64 exclude each other");
  if (a.stream_u64 && !a.filter.categories.empty())
    return usage_error("--stream-u64 reads one stream: --category does not apply");
  if (!a.filter.streams.empty() && (a.from_position || a.since))
    return usage_error("--stream reads one stream by version: --from-position and --since do not apply");
  if (!by_stream && (a.from_version || a.backward))
    return usage_error("--from-version and --backward need one --stream (and no --category)");
  if (a.since && a.from_position) return usage_error("--since and --from-position exclude each other");
  if (a.to_version && !by_stream) return usage_error("--to-version needs one --stream (and no --category)");
  if (a.to_version && a.until) return usage_error("--to-version and --until exclude each other");
  if (a.backward && (a.to_version || a.until))
    return usage_error("--to-version and --until read forward: with --backward, start at --from-version");
  position from;
  if (a.from_position) from.value = *a.from_position;
  const uint64_t limit = a.limit.value_or(UINT64_MAX);

  auto opened = event_log::open_read_only(a.dir, cli_log_options());
  if (!opened) return fail_open(opened.error(), a.dir);
  if (auto rc = use_upcasters(**opened, a.upcasters, a.dir)) return *rc;
  const event_log& log = **opened;
  event_filter filter;
  if (auto rc = make_filter(a.filter, a.dir, filter)) return *rc;
  type_names names(a.dir);
  if (by_stream) return read_one_stream(log, a, filter, names);
  for (const std::string& s : a.filter.streams)
    if (auto rc = check_stream_exists(log, stream_id(std::string_view(s)), json_text(s), a.dir)) return *rc;
  if (a.since) {
    auto p = log.position_at_time(*a.since);
    if (!p) return fail(p.error());
    from = *p;
  }
  // --until T: the log as of T, up to the first event past it (the time index).
  position end = position::none();
  if (a.until) {
    if (*a.until != UINT64_MAX) {
      auto p = log.position_at_time(*a.until + 1);
      if (!p) return fail(p.error());
      end = *p;
    }
  }

  ndjson_writer out(STDOUT_FILENO);
  // The filtered reader hands out only what the filter wants, and skips the
  // sealed segments whose index rules it out.
  log_reader reader = log.read(from, filter);
  event_view e;
  bool first = true;
  for (uint64_t n = 0; n < limit;) {
    auto got = reader.next(e);
    if (!got) {
      (void)out.flush();
      // The first record not being one is more likely a --from-position that
      // names no record than a corrupt log: say so (and do not claim
      // corruption with exit 4).
      if (first && a.from_position && from.value != 0 && got.error().code() != errc::removed) {
        const std::string where = "--from-position " + std::to_string(*a.from_position);
        if (got.error().code() == errc::invalid_argument) return usage_error(where + ": " + got.error().to_string());
        return fail(status(got.error().code(),
                           got.error().message() + " (is " + where +
                               " the position of a record? positions come from append acks and varve read)"),
                    kExitError);
      }
      return fail_reading(got.error());
    }
    if (!*got) break;
    first = false;
    if (!end.is_none() && e.position >= end) break;
    write_event(out, e, names.json_for(e.type), a.tf);
    if (!out.error().ok()) break;
    ++n;
  }
  if (status st = out.flush(); !st) return fail(st);
  return kExitOk;
}

// --- tail ------------------------------------------------------------------

struct tail_args {
  std::string dir;
  std::optional<uint64_t> from_position;
  std::optional<uint64_t> limit;
  std::optional<std::string> name;
  filter_flags filter;
  time_format tf = time_format::ns;
  bool json = false;
  std::string upcasters;  // --upcasters FILE
};

// SIGINT/SIGTERM: wake the parked subscription; the loop then flushes what it
// printed, saves a named position and exits 0.
subscription* g_tail_sub = nullptr;
extern "C" void on_tail_signal(int) {
  if (g_tail_sub) g_tail_sub->cancel();  // async-signal-safe
}

int cmd_tail(const tail_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const position from = a.from_position ? position{*a.from_position} : subscription::end();
  const uint64_t limit = a.limit.value_or(UINT64_MAX);
  subscription_options opts;
  if (a.name) {
    if (!subscription_store::valid_name(*a.name))
      return usage_error("--name: \"" + *a.name + "\": use 1 to 100 of A-Z a-z 0-9 . _ - (not starting with '.')");
    opts.name = *a.name;
  }

  auto opened = event_log::open_read_only(a.dir, cli_log_options());
  if (!opened) return fail_open(opened.error(), a.dir);
  if (auto rc = use_upcasters(**opened, a.upcasters, a.dir)) return *rc;
  const event_log& log = **opened;
  event_filter filter;
  if (auto rc = make_filter(a.filter, a.dir, filter)) return *rc;
  auto sub = subscription::open(log, from, std::move(filter), opts);
  if (!sub) {
    if (sub.error().code() == errc::invalid_argument && a.from_position)
      return usage_error("--from-position " + std::to_string(*a.from_position) + ": " + sub.error().to_string());
    return fail(sub.error());
  }
  type_names names(a.dir);

  g_tail_sub = &sub.value();
  on_stop_signals(on_tail_signal);

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
    write_event(out, e, names.json_for(e.type), a.tf);
    if (!out.error().ok()) break;
    ++n;
  }
  g_tail_sub = nullptr;
  status flushed = out.flush();
  if (flushed && failure.ok()) {
    if (status r = save(true); !r) failure = r;
  }
  if (!failure.ok()) return fail_reading(failure);
  if (!flushed) return fail(flushed);
  return kExitOk;
}

}  // namespace

void add_read(CLI::App& app, command_list& out) {
  auto a = std::make_shared<read_args>();
  auto* rd = app.add_subcommand(
      "read", "Print events as NDJSON: the whole log in log order, or one --stream in version order");
  rd->add_option("DIR", a->dir, "Log directory")->required();
  add_uint(*rd, "--from-position", a->from_position, "Start at this record position", "POSITION");
  add_time(*rd, "--since", a->since,
           "Start at the first event at or after this time (2026-11-22T10:00:00Z, or ns since the "
           "epoch), through the time index");
  add_uint(*rd, "--limit", a->limit, "Print at most N events");
  add_filter_flags(*rd, a->filter);
  add_uint(*rd, "--stream-u64", a->stream_u64, "Read only this integer stream id");
  add_uint(*rd, "--from-version", a->from_version,
           "With one --stream: start at this version (default 1; backward: the newest)", "VERSION");
  rd->add_flag("--backward", a->backward, "With one --stream: newest first");
  add_uint(*rd, "--to-version", a->to_version,
           "With one --stream: stop after this version (the aggregate as of that version)", "VERSION");
  add_time(*rd, "--until", a->until,
           "Stop before the first event past this time: the log, or one --stream, as of then");
  add_time_format(*rd, a->tf);
  add_json_flag(*rd, a->json, "Events are NDJSON already");
  add_upcasters_flag(*rd, a->upcasters);
  rd->footer(
      "One --stream (alone, or with --type) reads that stream through the per-aggregate index; a "
      "stream that does not exist is exit 5. Otherwise the filters pick events from the log in "
      "log order.");
  out.push_back({rd, [a] { return cmd_read(*a); }});
}

void add_tail(CLI::App& app, command_list& out) {
  auto a = std::make_shared<tail_args>();
  auto* tl = app.add_subcommand(
      "tail", "Print events as NDJSON (like read) and keep following the log live until "
              "Ctrl-C / SIGTERM (exit 0) or --limit");
  tl->add_option("DIR", a->dir, "Log directory")->required();
  add_uint(*tl, "--from-position", a->from_position,
           "Start at this record position (0 = the beginning; default: the end, live events only)",
           "POSITION");
  add_filter_flags(*tl, a->filter);
  tl->add_option("--name", a->name,
                 "A named subscription: resume where the last run with this name stopped "
                 "(DIR/subscriptions/NAME.pos), and save the position as it goes");
  add_uint(*tl, "--limit", a->limit, "Stop after N events");
  add_time_format(*tl, a->tf);
  add_json_flag(*tl, a->json, "Events are NDJSON already");
  add_upcasters_flag(*tl, a->upcasters);
  out.push_back({tl, [a] { return cmd_tail(*a); }});
}

}  // namespace varve::cli
