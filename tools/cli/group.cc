// `varve consume DIR --group G` (a consumer group member printing the events
// of its partitions as NDJSON) and `varve group ls|describe|reset|delete|
// dead-letters|replay` (varve/consumer_group.h).
#include "tools/cli/common.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/json_check.h"
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
  std::string upcasters;  // --upcasters FILE
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
  if (auto rc = use_upcasters(**opened, a.upcasters, a.dir)) return *rc;
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
    pj["lag_events"] = p.lag_events;
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
  for (auto& p : d->slots) {
    p.lag_bytes = end > p.committed.value ? end - p.committed.value : 0;
    if (p.lag_bytes == 0) continue;
    auto behind = events_behind(**log, p.committed);
    if (!behind) return behind.error();
    p.lag_events = *behind;
  }
  return d;
}

int cmd_group_ls(const group_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto names = consumer_group::list(a.dir);
  if (!names) return fail_open(names.error(), a.dir);
  for (const std::string& n : *names) {
    auto d = describe_with_lag(a.dir, n);
    if (!d) return fail(d.error());
    uint64_t alive = 0, lag = 0, lag_events = 0;
    for (const auto& m : d->members) alive += m.alive;
    for (const auto& p : d->slots) {
      lag = std::max(lag, p.lag_bytes);
      lag_events += p.lag_events;  // partitions hold disjoint events
    }
    if (a.json) {
      nlohmann::ordered_json j;
      j["group"] = n;
      j["partitions"] = d->partitions;
      j["members"] = alive;
      j["max_lag_bytes"] = lag;
      j["lag_events"] = lag_events;
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("%s\t%u partitions\t%" PRIu64 " members\tlag %" PRIu64 " events\tmax lag %s\n", n.c_str(),
                  d->partitions, alive, lag_events, human_bytes(lag).c_str());
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
  std::printf("partition  committed        lag                    owner\n");
  for (const auto& p : d->slots) {
    char owner[32] = "-";
    if (p.owner_alive) std::snprintf(owner, sizeof owner, "%016" PRIx64, p.owner);
    const std::string lag = std::to_string(p.lag_events) + " ev, " + human_bytes(p.lag_bytes);
    std::printf("%9u  %-15" PRIu64 "  %-21s  %s", p.partition, p.committed.value, lag.c_str(), owner);
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

// --- dead letters -----------------------------------------------------------------

struct dlq_args {
  std::string dir;
  std::string group;
  std::optional<uint64_t> from_version;
  std::optional<uint64_t> limit;
  std::optional<std::string> name;  // replay: a named subscription keeping the replay's progress
  time_format tf = time_format::ns;
  bool json = false;
};

// `dead-letters` lists them; `replay` prints the events that failed again, in
// `varve consume`'s format plus "dead_letter" (the entry nack() wrote) and
// "dead_letter_version", for a fixed handler to process. The log does not
// change: the events stay where they are, and with --name the replay's
// progress is kept like a named tail's, after each line written.
int cmd_dead_letters(const dlq_args& a, bool replay) {
  if (auto rc = check_dir(a.dir)) return *rc;
  if (!consumer_group::valid_name(a.group)) return usage_error("GROUP: \"" + a.group + "\": " + kNameRule);
  if (a.name && !subscription_store::valid_name(*a.name)) return usage_error("--name: \"" + *a.name + "\": " + kNameRule);
  if (a.from_version && *a.from_version == 0) return usage_error("--from-version: versions start at 1");
  if (auto d = consumer_group::describe(a.dir, a.group); !d) return fail(d.error());  // no such group: exit 5
  auto opened = event_log::open_read_only(a.dir, cli_log_options());
  if (!opened) return fail_open(opened.error(), a.dir);
  const event_log& log = **opened;
  std::optional<subscription_store> store;
  position done{0};  // replay --name: entries before this were replayed
  if (replay && a.name) {
    auto st = subscription_store::open(a.dir);
    if (!st) return fail(st.error());
    store = std::move(st.value());
    auto p = store->load(*a.name);
    if (!p) return fail(p.error());
    if (p.value() && !a.from_version) done = *p.value();
  }
  auto letters = consumer_group::dead_letters(log, a.group, a.from_version.value_or(1),
                                              done.value ? UINT64_MAX : a.limit.value_or(UINT64_MAX));
  if (!letters) return fail_reading(letters.error());
  type_names names(a.dir);
  ndjson_writer out(STDOUT_FILENO);
  uint64_t n = 0;
  for (const dead_letter& d : *letters) {
    if (d.entry.position.value < done.value) continue;
    if (a.limit && n >= *a.limit) break;
    const std::string_view entry(reinterpret_cast<const char*>(d.entry.payload.data()), d.entry.payload.size());
    // nack() wrote it; spliced verbatim only once it checks as JSON.
    const bool entry_ok = is_valid_json(entry) && entry.find('\n') == std::string_view::npos;
    if (replay) {
      std::string extra = ",\"dead_letter_version\":" + std::to_string(d.version);
      if (entry_ok) extra += ",\"dead_letter\":" + std::string(entry);
      write_event(out, d.original, names.json_for(d.original.type), a.tf, extra);
    } else if (a.json) {
      std::string line = "{\"dead_letter_version\":" + std::to_string(d.version) +
                         ",\"dead_letter_position\":" + std::to_string(d.entry.position.value);
      if (entry_ok) line += ",\"dead_letter\":" + std::string(entry);
      line += "}";
      out.raw(line);
      out.end_line();
    } else {
      nlohmann::json j = entry_ok ? nlohmann::json::parse(entry, nullptr, false) : nlohmann::json();
      const std::string err = j.is_object() && j.contains("error") && j["error"].is_string() ? j["error"].get<std::string>() : "?";
      const uint64_t attempts = j.is_object() && j.contains("attempts") && j["attempts"].is_number_unsigned() ? j["attempts"].get<uint64_t>() : 0;
      char head[160];
      std::snprintf(head, sizeof head, "%-6" PRIu64 " position %-12" PRIu64 " type %-8u attempts %-3" PRIu64 " stream ",
                    d.version, d.original.position.value, d.original.type, attempts);
      out.raw(head);
      out.raw(std::string(d.original.stream_is_integer ? std::to_string(d.original.stream_as_u64()) : std::string(d.original.stream)));
      out.raw("  error: " + err);
      out.end_line();
    }
    if (!out.error().ok()) break;
    ++n;
    if (store) {
      // The line first, then the progress: a crash repeats a line, never skips one.
      if (status f = out.flush(); !f) return fail(f);
      if (status s = store->save(*a.name, position{d.entry.position.value + d.entry.record_bytes}); !s) return fail(s);
    }
  }
  if (status f = out.flush(); !f) return fail(f);
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
  add_upcasters_flag(*c, a->upcasters);
  out.push_back({c, [a] { return cmd_consume(*a); }});
}

void add_group(CLI::App& app, command_list& out) {
  auto a = std::make_shared<group_args>();
  auto* g = app.add_subcommand("group", "Consumer groups (DIR/groups): ls, describe, reset, delete, dead-letters, replay");
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

  // dead-letters and replay: the same selection of dead letters.
  auto dlq_command = [&](const char* name, const char* help, std::shared_ptr<dlq_args> q) {
    auto* c = g->add_subcommand(name, help);
    c->add_option("DIR", q->dir, "Log directory")->required();
    c->add_option("GROUP", q->group, "The group")->required();
    add_uint(*c, "--from-version", q->from_version, "The first dead letter (its version in $dlq-GROUP)", "VERSION");
    add_uint(*c, "--limit", q->limit, "At most N");
    return c;
  };
  auto q = std::make_shared<dlq_args>();
  auto* dl = dlq_command("dead-letters",
                         "List the group's dead letters ($dlq-GROUP): version, the event's position, type, "
                         "stream, attempts and error",
                         q);
  add_json_flag(*dl, q->json, "One JSON object per dead letter");
  out.push_back({dl, [q] { return cmd_dead_letters(*q, false); }});
  auto q2 = std::make_shared<dlq_args>();
  auto* rp = dlq_command("replay",
                         "Print the events that went to the dead-letter stream again, as `varve consume` does "
                         "(with \"dead_letter\": the error, attempts), for a fixed handler; the log is unchanged",
                         q2);
  rp->add_option("--name", q2->name,
                 "Keep the replay's progress in this named subscription (after each line written): a "
                 "second replay with the same name prints only dead letters written since")
      ->type_name("NAME");
  add_time_format(*rp, q2->tf);
  add_json_flag(*rp, q2->json, "Events are NDJSON already");
  out.push_back({rp, [q2] { return cmd_dead_letters(*q2, true); }});
}

}  // namespace varve::cli
