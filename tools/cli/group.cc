// `varve consume DIR --group G` (a consumer group member printing the events
// of its partitions as NDJSON) and `varve group ls|describe|reset|delete`
// (varve/consumer_group.h).
#include "tools/cli/common.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <vector>

#include <nlohmann/json.hpp>

#include "varve/consumer_group.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace varve::tools;
using namespace std::chrono_literals;

constexpr const char* kNameRule = "use 1 to 100 of A-Z a-z 0-9 . _ - (not starting with '.')";

struct consume_args {
  std::string dir;
  std::string group;
  std::optional<std::string> member;
  std::optional<uint64_t> partitions;
  std::optional<uint64_t> session_timeout;  // seconds
  std::optional<uint64_t> commit_every;
  std::optional<uint64_t> limit;
  bool from_end = false;
  time_format tf = time_format::ns;
  bool json = false;
};

consumer_group* g_consumer = nullptr;
extern "C" void on_consume_signal(int) {
  if (g_consumer) g_consumer->cancel();  // an atomic store: async-signal-safe
}

// The group's partition count is fixed at creation: another one is a
// conflict (exit 3) with what exists, not a usage error.
std::optional<int> check_partitions(const std::string& dir, const std::string& group, uint64_t want) {
  auto d = consumer_group::describe(dir, group);
  if (!d) return d.error().code() == errc::not_found ? std::nullopt : std::optional<int>(fail(d.error()));
  if (d->partitions == want) return std::nullopt;
  return fail_with(kExitConflict, "conflict",
                   d->file + ": the group has " + std::to_string(d->partitions) +
                       " partitions, fixed when it was created; --partitions " + std::to_string(want));
}

int cmd_consume(const consume_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  if (!consumer_group::valid_name(a.group)) return usage_error("--group: \"" + a.group + "\": " + kNameRule);
  group_options o;
  if (a.partitions) {
    if (*a.partitions == 0 || *a.partitions > 1024) return usage_error("--partitions: 1 to 1024");
    o.partitions = uint32_t(*a.partitions);
  }
  if (a.session_timeout) {
    if (*a.session_timeout == 0 || *a.session_timeout > 86400)
      return usage_error("--session-timeout: 1 to 86400 seconds");
    o.session_timeout = std::chrono::seconds(*a.session_timeout);
  }
  if (a.commit_every && *a.commit_every == 0) return usage_error("--commit-every: at least 1");
  if (a.member) {
    if (a.member->size() > 20) return usage_error("--member: at most 20 bytes");
    o.member = *a.member;
  } else {
    o.member = "pid-" + std::to_string(::getpid());
  }
  // The CLI acknowledges a line only once it is written to stdout, so it
  // commits by hand: an event is committed after its line went out.
  o.commit = commit_policy::manual;
  o.start = a.from_end ? group_start::end : group_start::beginning;
  const uint64_t every = a.commit_every.value_or(1);
  const uint64_t limit = a.limit.value_or(UINT64_MAX);

  auto opened = event_log::open_read_only(a.dir, cli_log_options());
  if (!opened) return fail_open(opened.error(), a.dir);
  const event_log& log = **opened;
  if (a.partitions)
    if (auto rc = check_partitions(a.dir, a.group, *a.partitions)) return *rc;
  auto g = consumer_group::join(log, a.group, o);
  if (!g) return fail(g.error(), g.error().code() == errc::locked ? kExitConflict : exit_code_for(g.error()));
  type_names names(a.dir);

  g_consumer = &g.value();
  on_stop_signals(on_consume_signal);

  ndjson_writer out(STDOUT_FILENO);
  event_view e;
  status failure;
  uint64_t n = 0;
  // Printed (maybe still buffered) and not yet acknowledged: acknowledged
  // only once their lines are out, because a rebalance (inside next())
  // commits what is acknowledged for the partitions it gives away.
  std::vector<event_view> pending;
  auto commit = [&]() -> status {
    // Lines first, then the commit: a crash between them repeats lines, never
    // loses them.
    if (status f = out.flush(); !f) return f;
    for (const event_view& p : pending)
      if (status r = g->ack(p); !r) return r;
    pending.clear();
    return g->commit();
  };
  while (n < limit) {
    auto got = g->next(e, pending.empty() ? std::chrono::nanoseconds(1s) : std::chrono::nanoseconds(0));
    if (!got) {
      if (got.error().code() != errc::cancelled) failure = got.error();
      break;
    }
    if (!*got) {
      if (status r = commit(); !r) {
        failure = r;
        break;
      }
      continue;
    }
    write_event(out, e, names.json_for(e.type), a.tf);
    if (!out.error().ok()) break;
    ++n;
    pending.push_back(e);
    if (pending.size() >= every) {
      if (status r = commit(); !r) {
        failure = r;
        break;
      }
    }
  }
  g_consumer = nullptr;
  status flushed = out.flush();
  if (flushed && failure.ok() && out.error().ok()) failure = commit();
  if (status left = g->leave(); !left && failure.ok()) failure = left;
  if (!failure.ok()) return fail_reading(failure);
  if (!flushed) return fail(flushed);
  return kExitOk;
}

// --- varve group ----------------------------------------------------------------

struct group_args {
  std::string dir;
  std::string group;
  std::optional<uint64_t> to_position;
  bool to_end = false;
  bool json = false;
};

nlohmann::ordered_json describe_json(const std::string& name, const group_description& d) {
  nlohmann::ordered_json j;
  j["group"] = name;
  j["file"] = d.file;
  j["partitions"] = d.partitions;
  j["created_ns"] = d.created_ns;
  j["fell_back_to_previous_copy"] = d.fell_back;
  j["members"] = nlohmann::json::array();
  for (const auto& m : d.members) {
    nlohmann::ordered_json mj;
    mj["id"] = m.id;
    mj["name"] = m.name;
    mj["pid"] = m.pid;
    mj["alive"] = m.alive;
    mj["partitions"] = m.partitions;
    j["members"].push_back(mj);
  }
  j["slots"] = nlohmann::json::array();
  for (const auto& p : d.slots) {
    nlohmann::ordered_json pj;
    pj["partition"] = p.partition;
    pj["committed"] = p.committed.value;
    pj["lag_bytes"] = p.lag_bytes;
    pj["owner"] = p.owner_alive ? nlohmann::ordered_json(p.owner) : nlohmann::ordered_json(nullptr);
    pj["epoch"] = p.epoch;
    if (!p.retry_position.is_none()) {
      pj["retry_position"] = p.retry_position.value;
      pj["retries"] = p.retries;
    }
    j["slots"].push_back(pj);
  }
  return j;
}

// The description with lag against the log's committed end.
result<group_description> describe_with_lag(const std::string& dir, const std::string& group) {
  auto d = consumer_group::describe(dir, group);
  if (!d) return d;
  auto log = event_log::open_read_only(dir, cli_log_options());
  if (!log) return log.error();
  const uint64_t end = (*log)->committed_position().value;
  for (auto& p : d->slots) p.lag_bytes = end > p.committed.value ? end - p.committed.value : 0;
  return d;
}

int cmd_group_ls(const group_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto names = consumer_group::list(a.dir);
  if (!names) return fail_open(names.error(), a.dir);
  for (const std::string& n : *names) {
    auto d = describe_with_lag(a.dir, n);
    if (!d) return fail(d.error());
    uint64_t alive = 0, lag = 0;
    for (const auto& m : d->members) alive += m.alive;
    for (const auto& p : d->slots) lag = std::max(lag, p.lag_bytes);
    if (a.json) {
      nlohmann::ordered_json j;
      j["group"] = n;
      j["partitions"] = d->partitions;
      j["members"] = alive;
      j["max_lag_bytes"] = lag;
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("%s\t%u partitions\t%" PRIu64 " members\tmax lag %s\n", n.c_str(), d->partitions, alive,
                  human_bytes(lag).c_str());
    }
  }
  return kExitOk;
}

int cmd_group_describe(const group_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  if (!consumer_group::valid_name(a.group)) return usage_error("GROUP: \"" + a.group + "\": " + kNameRule);
  auto d = describe_with_lag(a.dir, a.group);
  if (!d) return fail(d.error());
  if (a.json) {
    std::printf("%s\n", describe_json(a.group, *d).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return kExitOk;
  }
  std::printf("group %s: %u partitions (%s)%s\n", a.group.c_str(), d->partitions, d->file.c_str(),
              d->fell_back ? " [a torn slot copy was passed over]" : "");
  std::printf("members:\n");
  for (const auto& m : d->members)
    std::printf("  %016" PRIx64 "  %-20s pid %-7u %s  %u partitions\n", m.id, m.name.c_str(), m.pid,
                m.alive ? "alive  " : "expired", m.partitions);
  std::printf("partition  committed        lag        owner\n");
  for (const auto& p : d->slots) {
    char owner[32] = "-";
    if (p.owner_alive) std::snprintf(owner, sizeof owner, "%016" PRIx64, p.owner);
    std::printf("%9u  %-15" PRIu64 "  %-9s  %s", p.partition, p.committed.value, human_bytes(p.lag_bytes).c_str(),
                owner);
    if (!p.retry_position.is_none()) std::printf("  retrying %" PRIu64 " (%u tries)", p.retry_position.value, p.retries);
    std::printf("\n");
  }
  return kExitOk;
}

int locked_is_conflict(const status& s) { return fail(s, s.code() == errc::locked ? kExitConflict : exit_code_for(s)); }

int cmd_group_reset(const group_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  if (!consumer_group::valid_name(a.group)) return usage_error("GROUP: \"" + a.group + "\": " + kNameRule);
  if (a.to_end && a.to_position) return usage_error("--to-end and --to-position exclude each other");
  auto log = event_log::open_read_only(a.dir, cli_log_options());
  if (!log) return fail_open(log.error(), a.dir);
  const position to = a.to_end ? position::none() : position{a.to_position.value_or(0)};
  status s = consumer_group::reset(**log, a.group, to);
  if (!s) {
    if (s.code() == errc::invalid_argument) return usage_error("--to-position: " + s.message());
    return locked_is_conflict(s);
  }
  return kExitOk;
}

int cmd_group_delete(const group_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  if (!consumer_group::valid_name(a.group)) return usage_error("GROUP: \"" + a.group + "\": " + kNameRule);
  if (status s = consumer_group::remove(a.dir, a.group); !s) return locked_is_conflict(s);
  return kExitOk;
}

}  // namespace

void add_consume(CLI::App& app, command_list& out) {
  auto a = std::make_shared<consume_args>();
  auto* c = app.add_subcommand(
      "consume", "Join consumer group G and print the events of its partitions as NDJSON, committing "
                 "after each line (or --commit-every N); SIGTERM / Ctrl-C leave the group (exit 0)");
  c->add_option("DIR", a->dir, "Log directory")->required();
  c->add_option("--group", a->group, "The group (DIR/groups/G.group, created on first use)")
      ->required()
      ->type_name("G");
  c->add_option("--member", a->member, "A name for this member in `varve group describe`")->type_name("M");
  add_uint(*c, "--partitions", a->partitions,
           "Partitions of a new group (default 8); for an existing one it must match (else exit 3)", "P");
  add_uint(*c, "--session-timeout", a->session_timeout,
           "Seconds without a heartbeat after which a member's partitions go to others (default 10)",
           "SECONDS");
  add_uint(*c, "--commit-every", a->commit_every, "Commit after every N lines (default 1)", "N");
  add_uint(*c, "--limit", a->limit, "Stop (and leave) after N events");
  c->add_flag("--from-end", a->from_end, "A new group starts at the log's end (default: its beginning)");
  add_time_format(*c, a->tf);
  add_json_flag(*c, a->json, "Events are NDJSON already");
  out.push_back({c, [a] { return cmd_consume(*a); }});
}

void add_group(CLI::App& app, command_list& out) {
  auto a = std::make_shared<group_args>();
  auto* g = app.add_subcommand("group", "Consumer groups (DIR/groups): ls, describe, reset, delete");
  g->require_subcommand(1);
  auto* ls = g->add_subcommand("ls", "List groups: partitions, live members, largest lag");
  ls->add_option("DIR", a->dir, "Log directory")->required();
  add_json_flag(*ls, a->json, "One JSON object per group");
  out.push_back({ls, [a] { return cmd_group_ls(*a); }});
  auto* d = g->add_subcommand("describe", "Members, partitions, committed positions, owners and lag");
  d->add_option("DIR", a->dir, "Log directory")->required();
  d->add_option("GROUP", a->group, "The group")->required();
  add_json_flag(*d, a->json, "One JSON object");
  out.push_back({d, [a] { return cmd_group_describe(*a); }});
  auto* r = g->add_subcommand(
      "reset", "Set every partition's committed position (default: the beginning); exit 3 while a member is alive");
  r->add_option("DIR", a->dir, "Log directory")->required();
  r->add_option("GROUP", a->group, "The group")->required();
  add_uint(*r, "--to-position", a->to_position, "A record position", "POSITION");
  r->add_flag("--to-end", a->to_end, "The log's committed end");
  add_json_flag(*r, a->json, "Errors as JSON");
  out.push_back({r, [a] { return cmd_group_reset(*a); }});
  auto* del = g->add_subcommand("delete", "Remove the group's file; exit 3 while a member is alive");
  del->add_option("DIR", a->dir, "Log directory")->required();
  del->add_option("GROUP", a->group, "The group")->required();
  add_json_flag(*del, a->json, "Errors as JSON");
  out.push_back({del, [a] { return cmd_group_delete(*a); }});
}

}  // namespace varve::cli
