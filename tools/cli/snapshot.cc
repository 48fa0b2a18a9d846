// `varve snapshot verify|ls|save DIR`: aggregate snapshots in DIR/snapshots
// (varve/snapshot.h).
#include "tools/cli/common.h"

#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <span>

#include <nlohmann/json.hpp>

#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace varve::tools;

struct snapshot_args {
  std::string dir;
  std::optional<std::string> stream;
  std::optional<uint64_t> stream_u64, version, schema, keep;
  double min_dead = 0.5;
  bool json = false;
};

// --stream S | --stream-u64 N into an id, and how messages show it.
std::optional<int> snapshot_stream(const snapshot_args& a, std::optional<stream_id>& id, std::string& shown) {
  if (a.stream && a.stream_u64) return usage_error("--stream and --stream-u64 exclude each other");
  if (a.stream_u64) {
    id = stream_id::from_u64(*a.stream_u64);
    shown = std::to_string(*a.stream_u64);
  } else if (a.stream) {
    if (a.stream->empty() || a.stream->size() > kMaxStreamIdBytes)
      return usage_error("--stream: a stream id has 1 to 255 bytes");
    id = stream_id(std::string_view(*a.stream));  // a.stream outlives the id
    shown = json_text(*a.stream);
  }
  return std::nullopt;
}

int cmd_snapshot_verify(const snapshot_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto rep = verify_snapshots(a.dir);
  if (!rep) return fail_open(rep.error(), a.dir);
  const auto& r = rep.value();
  const bool intact = r.problems.empty();
  if (a.json) {
    nlohmann::ordered_json j;
    j["intact"] = intact;
    j["files"] = r.files;
    j["snapshots"] = r.snapshots;
    j["bytes"] = r.bytes;
    j["problems"] = nlohmann::json::array();
    for (const status& p : r.problems) j["problems"].push_back(p.to_string());
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s: %" PRIu64 " files, %" PRIu64 " snapshots, %s of snapshot bodies checked\n",
                intact ? "snapshots intact" : "snapshots NOT intact", r.files, r.snapshots,
                human_bytes(r.bytes).c_str());
  }
  for (size_t i = 0; i + 1 < r.problems.size(); ++i) fail(r.problems[i], kExitCorrupt);
  return intact ? kExitOk : fail(r.problems.back(), kExitCorrupt);
}

int cmd_snapshot_ls(const snapshot_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  std::string shown;
  std::optional<stream_id> id;
  if (auto rc = snapshot_stream(a, id, shown)) return *rc;
  auto store = snapshot_store::open_read_only(a.dir);
  if (!store) return fail_open(store.error(), a.dir);
  if (!a.json)
    std::printf("%-24s %10s %7s %12s %22s %s\n", "stream", "version", "schema", "bytes", "file", "offset");
  for (const snapshot_info& i : store.value()->list(id)) {
    std::string name = i.stream_is_integer
                           ? std::to_string(i.stream_as_u64())
                           : nlohmann::json(i.stream).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (a.json) {
      nlohmann::ordered_json j;
      j["stream"] = i.stream_is_integer ? nlohmann::ordered_json(i.stream_as_u64())
                                        : nlohmann::ordered_json::parse(name);
      j["version"] = i.version;
      j["schema_version"] = i.schema_version;
      j["bytes"] = i.bytes;
      j["anchor"] = i.anchor.value;
      j["saved_ns"] = i.saved_ns;
      j["file"] = i.file;
      j["offset"] = i.offset;
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("%-24s %10" PRIu64 " %7u %12" PRIu64 " %22" PRIu64 " %" PRIu64 "\n", name.c_str(), i.version,
                  i.schema_version, i.bytes, i.file, i.offset);
    }
  }
  return kExitOk;
}

// Restores (or plants, for tests) a snapshot: the bytes come from stdin.
int cmd_snapshot_save(const snapshot_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  std::string shown;
  std::optional<stream_id> id;
  if (auto rc = snapshot_stream(a, id, shown)) return *rc;
  if (!id) return usage_error("snapshot save needs --stream or --stream-u64");
  const uint64_t v = a.version.value_or(0);
  if (v == 0) return usage_error("--version: a stream version from 1");
  const uint64_t schema = a.schema.value_or(1);
  if (schema > UINT32_MAX) return usage_error("--schema: \"" + std::to_string(schema) + "\" is not a u32");
  std::string body;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(status(errc::io_error, std::string("stdin: ") + std::strerror(errno)));
    if (n == 0) break;
    body.append(buf, static_cast<size_t>(n));
  }
  auto log = event_log::open_read_only(a.dir, cli_log_options());
  if (!log) return fail_open(log.error(), a.dir);
  // The library refuses this too (invalid_argument); it is "not found", not
  // a malformed command line.
  if (const stream_version have = log.value()->version_of(*id); have < v)
    return fail_with(kExitNotFound, "not_found",
                     have == 0 ? "stream " + shown + " not found in " + a.dir
                               : "stream " + shown + " has no event at version " + std::to_string(v) +
                                     " (it is at version " + std::to_string(have) + ")");
  auto store = snapshot_store::open(*log.value());
  if (!store) return fail(store.error());
  status s = store.value()->save(*id, v, static_cast<uint32_t>(schema), std::as_bytes(std::span(body)));
  if (!s) return s.code() == errc::invalid_argument ? usage_error(s.to_string()) : fail(s);
  if (a.json) {
    nlohmann::ordered_json j;
    j["saved_bytes"] = body.size();
    j["version"] = v;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("saved %zu bytes at version %" PRIu64 "\n", body.size(), v);
  }
  return kExitOk;
}

// Retention: keep the newest K snapshots of each stream (snapshot_store::compact).
int cmd_snapshot_compact(const snapshot_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const uint64_t keep = a.keep.value_or(0);
  if (keep == 0 || keep > UINT32_MAX) return usage_error("--keep: at least 1 snapshot per stream");
  if (!(a.min_dead >= 0 && a.min_dead <= 1)) return usage_error("--min-dead: a fraction from 0 to 1");
  auto log = event_log::open_read_only(a.dir, cli_log_options());
  if (!log) return fail_open(log.error(), a.dir);
  auto store = snapshot_store::open(*log.value());
  if (!store) return fail(store.error());
  snapshot_compact_options co;
  co.keep_per_stream = static_cast<uint32_t>(keep);
  co.min_dead_fraction = a.min_dead;
  auto rep = store.value()->compact(co);
  if (!rep) return fail(rep.error());
  const auto& r = rep.value();
  if (a.json) {
    nlohmann::ordered_json j;
    j["files_removed"] = r.files_removed;
    j["snapshots_dropped"] = r.snapshots_dropped;
    j["stale_dropped"] = r.stale_dropped;
    j["snapshots_copied"] = r.snapshots_copied;
    j["bytes_reclaimed"] = r.bytes_reclaimed;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%" PRIu64 " files removed, %" PRIu64 " snapshots dropped (%" PRIu64 " stale), %" PRIu64
                " copied, %s reclaimed\n",
                r.files_removed, r.snapshots_dropped + r.stale_dropped, r.stale_dropped, r.snapshots_copied,
                human_bytes(r.bytes_reclaimed).c_str());
  }
  return kExitOk;
}

}  // namespace

void add_snapshot(CLI::App& app, command_list& out) {
  // One args struct for the three actions: CLI11 fills only the parsed one's.
  auto a = std::make_shared<snapshot_args>();
  auto* sn = app.add_subcommand("snapshot", "Aggregate snapshots (DIR/snapshots): verify, ls, save, compact");
  sn->require_subcommand(1);
  auto* snv = sn->add_subcommand("verify", "Check every snapshot's header and body; exit 4 if not intact");
  snv->add_option("DIR", a->dir, "Log directory")->required();
  add_json_flag(*snv, a->json, "Print the report as JSON");
  out.push_back({snv, [a] { return cmd_snapshot_verify(*a); }});
  auto* snl = sn->add_subcommand("ls", "List snapshots: stream, version, schema, size, file, offset");
  snl->add_option("DIR", a->dir, "Log directory")->required();
  snl->add_option("--stream", a->stream, "Only this stream")->type_name("STREAM");
  add_uint(*snl, "--stream-u64", a->stream_u64, "Only this integer stream id");
  add_json_flag(*snl, a->json, "One JSON object per snapshot");
  out.push_back({snl, [a] { return cmd_snapshot_ls(*a); }});
  auto* sns = sn->add_subcommand(
      "save", "Save stdin's bytes as a snapshot of a stream at a version (exit 5 if the stream has no "
              "event at that version)");
  sns->add_option("DIR", a->dir, "Log directory")->required();
  sns->add_option("--stream", a->stream, "The stream")->type_name("STREAM");
  add_uint(*sns, "--stream-u64", a->stream_u64, "An integer stream id");
  add_uint(*sns, "--version", a->version, "The stream version the bytes reflect", "VERSION")->required();
  add_uint(*sns, "--schema", a->schema, "The bytes' schema version (default 1)");
  add_json_flag(*sns, a->json, "Print {\"saved_bytes\":N,\"version\":V}");
  out.push_back({sns, [a] { return cmd_snapshot_save(*a); }});
  auto* snc = sn->add_subcommand(
      "compact", "Keep the newest K snapshots of each stream: full files with enough superseded snapshots are "
                 "removed, what they still keep copied first (a file with a damaged snapshot stays)");
  snc->add_option("DIR", a->dir, "Log directory")->required();
  add_uint(*snc, "--keep", a->keep, "Snapshots kept per stream (at least 1)", "K")->required();
  snc->add_option("--min-dead", a->min_dead,
                  "Rewrite a full file once this share of its bytes is superseded (0 to 1, default 0.5)")
      ->type_name("FRACTION");
  add_json_flag(*snc, a->json, "Print the report as JSON");
  out.push_back({snc, [a] { return cmd_snapshot_compact(*a); }});
}

}  // namespace varve::cli
