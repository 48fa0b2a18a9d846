// `varve create DIR`: an empty log.
#include "tools/cli/common.h"

#include <sys/stat.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/log_files.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

struct create_args {
  std::string dir;
  std::optional<uint64_t> segment_size;
  bool json = false;
  bool chain = false;
};

int cmd_create(const create_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  log_options opts = cli_log_options();
  if (a.segment_size) opts.segment_bytes = *a.segment_size;
  opts.tamper_evident_chain = a.chain;
  auto log = event_log::create(a.dir, opts);
  if (!log) return fail_open(log.error(), a.dir);
  if (status s = (*log)->close(); !s) return fail(s);
  if (a.json) {
    nlohmann::ordered_json j;
    j["created"] = a.dir;
    j["segment_bytes"] = opts.segment_bytes;
    j["chain"] = a.chain;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("created %s (segments of %s)\n", a.dir.c_str(), human_bytes(opts.segment_bytes).c_str());
  }
  return kExitOk;
}

}  // namespace

void add_create(CLI::App& app, command_list& out) {
  auto a = std::make_shared<create_args>();
  auto* c = app.add_subcommand("create", "Create an empty log in DIR (exit 6 if DIR already holds one)");
  c->add_option("DIR", a->dir, "Log directory (created if absent)")->required();
  add_size(*c, "--segment-size", a->segment_size,
           "Segment capacity: a power of two from 64K to 1G (suffixes K, M, G); default 64M");
  c->add_flag("--chain", a->chain,
              "Keep a tamper-evident chain: each sealed segment's BLAKE2b-256 digest, chained to the "
              "previous one (`varve verify --chain` checks it, `varve stat` prints its head)");
  add_json_flag(*c, a->json, "Print {\"created\":DIR,\"segment_bytes\":N,\"chain\":B}");
  out.push_back({c, [a] { return cmd_create(*a); }});
}

}  // namespace varve::cli
