// Crypto-shredding on the command line (varve/crypto.h): `varve keygen FILE`
// makes a master key; `varve stream forget DIR STREAM` destroys a stream's
// data keys, so its payloads read back as forgotten everywhere.
#include <cinttypes>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "tools/cli/common.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

int cmd_keygen(const std::string& path) {
  if (status s = save_master_key(path, generate_master_key()); !s)
    return fail(s, s.code() == errc::already_exists ? kExitExists : kExitError);
  std::printf("wrote a new master key to %s (mode 0600): keep a copy apart from the log; "
              "without it nothing encrypted can be read\n",
              path.c_str());
  return kExitOk;
}

struct forget_args {
  std::string dir;
  std::string stream;
  bool integer = false;
  bool json = false;
};

int cmd_forget(const forget_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  uint64_t as_int = 0;
  if (a.integer) {
    char* end = nullptr;
    errno = 0;
    as_int = std::strtoull(a.stream.c_str(), &end, 10);
    if (a.stream.empty() || *end || errno) return usage_error("--int: STREAM must be a decimal u64, got '" + a.stream + "'");
  }
  const stream_id id = a.integer ? stream_id::from_u64(as_int) : stream_id(std::string_view(a.stream));
  auto log = event_log::open(a.dir, cli_log_options());
  if (!log) return fail_open(log.error(), a.dir);
  auto r = (*log)->forget(id);
  // Then the stream's snapshots (a store's open also finishes what a crash
  // between the two left: DIR/forgotten names the stream).
  result<snapshot_forget_report> snaps = snapshot_forget_report{};
  if (r) {
    auto store = snapshot_store::open(**log);
    if (!store) snaps = store.error();
    else snaps = (*store)->forget(id);
  }
  status closed = (*log)->close();
  if (!r) return fail(r.error(), r.error().code() == errc::not_found ? kExitNotFound : exit_code_for(r.error()));
  if (!snaps) return fail(snaps.error());
  if (!closed) return fail(closed);
  const forget_result& f = r.value();
  if (a.json) {
    nlohmann::ordered_json j;
    j["dir"] = a.dir;
    j["stream"] = a.stream;
    j["forget_sequence"] = f.forget_sequence;
    j["keys_destroyed"] = f.keys_destroyed;
    j["events_forgotten"] = f.events_forgotten;
    j["plain_events"] = f.plain_events;
    j["snapshots_deleted"] = snaps.value().snapshots_deleted;
    j["snapshots_left_in_damaged_files"] = snaps.value().left_in_damaged_files;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("forgot stream '%s': %" PRIu64 " data key(s) destroyed, %" PRIu64 " event(s) now read as forgotten\n",
                a.stream.c_str(), f.keys_destroyed, f.events_forgotten);
    std::printf("snapshots of it deleted: %" PRIu64 "\n", snaps.value().snapshots_deleted);
  }
  if (snaps.value().left_in_damaged_files)
    warn(std::to_string(snaps.value().left_in_damaged_files) +
             " snapshot(s) of the stream stay in damaged snapshot files (never removed: varve snapshot verify "
             "names them; remove those files by hand once they have been looked at)",
         "forget");
  if (f.plain_events)
    warn("stream '" + a.stream + "' has " + std::to_string(f.plain_events) +
             " event(s) appended before the log had a master key: stored in clear, still readable",
         "forget");
  return kExitOk;
}

}  // namespace

void add_keygen(CLI::App& app, command_list& out) {
  auto path = std::make_shared<std::string>();
  auto* c = app.add_subcommand("keygen", "Write a new master key (64 hex digits, mode 0600) for "
                                         "`varve create DIR --master-key FILE` (crypto-shredding)");
  c->add_option("FILE", *path, "Key file to create (never overwritten)")->required();
  out.push_back({c, [path] { return cmd_keygen(*path); }});
}

void add_stream(CLI::App& app, command_list& out) {
  auto* c = app.add_subcommand("stream", "Per-stream operations on a log");
  c->require_subcommand(1);
  auto a = std::make_shared<forget_args>();
  auto* f = c->add_subcommand(
      "forget", "Crypto-shredding: destroy STREAM's data keys (needs --master-key FILE); its events stay, "
                "their payloads read back as forgotten in every read");
  f->add_option("DIR", a->dir, "Log directory")->required();
  f->add_option("STREAM", a->stream, "Stream id")->required();
  f->add_flag("--int", a->integer, "STREAM is an integer id (decimal)");
  add_json_flag(*f, a->json, "Print the outcome as one JSON object");
  out.push_back({f, [a] { return cmd_forget(*a); }});
  add_stream_lifecycle(*c, out);  // delete, truncate, limits, meta (tools/cli/lifecycle.cc)
}

}  // namespace varve::cli
