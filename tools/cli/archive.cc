// `varve archive DIR --to DEST`: the archive tier on demand (docs/DESIGN.md
// "Archive tier", FORMAT.md 1c).
#include "tools/cli/common.h"

#include <cinttypes>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "varve/varve.h"

namespace varve::cli {
namespace {

struct archive_args {
  std::string dir;
  std::string to;
  std::optional<uint64_t> before;
  int level = 3;
  std::optional<uint64_t> frame_bytes;
  bool dry_run = false;
  bool json = false;
};

int cmd_archive(const archive_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  if (a.level < 1 || a.level > 19) return usage_error("--level must be 1..19");
  archive_options o;
  o.dir = a.to;
  o.level = a.level;
  if (a.before) o.before = position{*a.before};
  if (a.frame_bytes) {
    if (*a.frame_bytes < 4096 || *a.frame_bytes > (1u << 30) || (*a.frame_bytes & (*a.frame_bytes - 1)) != 0)
      return usage_error("--frame-bytes must be a power of two from 4K");
    o.frame_bytes = static_cast<uint32_t>(*a.frame_bytes);
  }
  // The writer's lock: archiving moves segment files out of DIR, which only
  // the writer may do (errc::locked while another process writes).
  auto log = event_log::open(a.dir, cli_log_options());
  if (!log) return fail_open(log.error(), a.dir);
  auto r = (*log)->archive(o, a.dry_run);
  status closed = (*log)->close();
  if (!r) return fail(r.error());
  if (!closed) return fail(closed);
  const archive_result& x = r.value();
  if (a.json) {
    nlohmann::ordered_json j;
    j["dir"] = a.dir;
    j["archive_dir"] = x.dir;
    j["dry_run"] = a.dry_run;
    j["segments_archived"] = x.segments_archived;
    j["raw_bytes"] = x.raw_bytes;
    j["archived_bytes"] = x.archived_bytes;
    j["archive_end"] = x.archive_end;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return kExitOk;
  }
  if (a.dry_run) {
    std::printf("would archive %" PRIu64 " segment(s), %s, to %s\n", x.segments_archived,
                human_bytes(x.raw_bytes).c_str(), x.dir.c_str());
  } else {
    std::printf("archived %" PRIu64 " segment(s), %s in %s (%.1fx)\n", x.segments_archived,
                human_bytes(x.raw_bytes).c_str(), human_bytes(x.archived_bytes).c_str(),
                x.archived_bytes ? static_cast<double>(x.raw_bytes) / static_cast<double>(x.archived_bytes) : 0.0);
  }
  std::printf("segments below %" PRIu64 " %s in %s\n", x.archive_end, a.dry_run ? "would live" : "live",
              x.dir.c_str());
  return kExitOk;
}

}  // namespace

void add_archive(CLI::App& app, command_list& out) {
  auto a = std::make_shared<archive_args>();
  auto* c = app.add_subcommand(
      "archive", "Move whole sealed segments out of the log's directory into an archive directory as "
                 "compressed, checksummed files; every read keeps reaching them there");
  c->add_option("DIR", a->dir, "Log directory")->required();
  c->add_option("--to", a->to, "The archive directory (created if missing; a log has one)")->required();
  add_uint(*c, "--before", a->before, "Archive the sealed segments that lie wholly before this position "
                                      "(default: every sealed segment)", "POSITION");
  c->add_option("--level", a->level, "zstd compression level, 1..19")->default_val(3);
  add_size(*c, "--frame-bytes", a->frame_bytes,
           "Bytes of segment per compressed frame, a power of two from 4K (default 64K): smaller makes "
           "reads of one aggregate cheaper, larger compresses a little better");
  c->add_flag("--dry-run", a->dry_run, "Say what would be archived; change nothing");
  add_json_flag(*c, a->json,
                "Print {\"archive_dir\":D,\"segments_archived\":N,\"raw_bytes\":N,\"archived_bytes\":N,"
                "\"archive_end\":N}");
  out.push_back({c, [a] { return cmd_archive(*a); }});
}

}  // namespace varve::cli
