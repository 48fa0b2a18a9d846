// `varve types DIR`: the event types a log knows (DIR/types), with their
// current schema versions; --set NAME=VERSION records one.
#include "tools/cli/common.h"

#include <cinttypes>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/log_files.h"
#include "engine/writer_lock.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

struct types_args {
  std::string dir;
  std::vector<std::string> set;  // NAME=VERSION
  bool json = false;
};

int cmd_types(const types_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  if (!posix_file_system()->exists(log_files::join(a.dir, log_files::kMetaName)))
    return fail_with(kExitNotFound, "not_found", a.dir + " holds no varve log");
  std::vector<std::pair<std::string, uint16_t>> sets;
  for (const std::string& s : a.set) {
    const size_t eq = s.rfind('=');
    auto v = eq == std::string::npos ? std::nullopt : parse_u64(std::string_view(s).substr(eq + 1));
    if (eq == 0 || !v || *v == 0 || *v > UINT16_MAX)
      return usage_error("--set " + json_text(s) + ": expected NAME=VERSION, VERSION 1..65535");
    sets.emplace_back(s.substr(0, eq), static_cast<uint16_t>(*v));
  }
  // A writer keeps its own copy of the registry and rewrites the file when
  // it meets a new type name: a version recorded meanwhile would be lost.
  // So versions are recorded only while no writer holds the log.
  std::unique_ptr<writer_lock> lock;
  if (!sets.empty()) {
    auto l = writer_lock::acquire(a.dir);
    if (!l) return fail(l.error());
    lock = std::move(l.value());
  }
  auto reg = type_registry::open(a.dir);
  if (!reg) return fail(reg.error());
  for (const auto& [name, version] : sets)
    if (status s = reg->set_current_version(name, version); !s) return fail(s);
  lock.reset();
  for (const type_registry::entry& e : reg->list()) {
    if (a.json) {
      nlohmann::ordered_json j;
      j["id"] = e.id;
      j["name"] = e.name;
      if (e.current_version) j["current_version"] = e.current_version;
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else if (e.current_version) {
      std::printf("%" PRIu32 "\t%s\tversion %u\n", e.id, e.name.c_str(), unsigned{e.current_version});
    } else {
      std::printf("%" PRIu32 "\t%s\n", e.id, e.name.c_str());
    }
  }
  return kExitOk;
}

}  // namespace

void add_types(CLI::App& app, command_list& out) {
  auto a = std::make_shared<types_args>();
  auto* c = app.add_subcommand(
      "types", "List the event types of DIR (DIR/types) with their current schema versions; --set records one");
  c->add_option("DIR", a->dir, "Log directory")->required();
  c->add_option("--set", a->set,
                "NAME=VERSION: record the type's current schema version (registering the name if new); "
                "versions never go down, and `varve append` refuses events newer than it. Needs the "
                "writer lock: exit 1 while a writer holds the log")
      ->type_name("NAME=VERSION");
  add_json_flag(*c, a->json, "One object per type: {\"id\",\"name\",\"current_version\"}");
  out.push_back({c, [a] { return cmd_types(*a); }});
}

}  // namespace varve::cli
