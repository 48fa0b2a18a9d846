// `varve create DIR`: an empty log.
#include "tools/cli/common.h"

#include <cstdio>

#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace varve::tools;

struct create_args {
  std::string dir;
  std::optional<std::string> segment_size;
};

int cmd_create(const create_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  log_options opts;
  if (a.segment_size) {
    auto n = parse_size(*a.segment_size);
    if (!n)
      return usage_error("--segment-size: \"" + *a.segment_size +
                         "\" is not a size (bytes, or a number with a K, M or G suffix)");
    opts.segment_bytes = *n;
  }
  auto log = event_log::create(a.dir, opts);
  if (!log) return fail_open(log.error());
  if (status st = (*log)->close(); !st) return fail(st);
  std::printf("created %s (segments of %s)\n", a.dir.c_str(),
              human_bytes(opts.segment_bytes).c_str());
  return kExitOk;
}

}  // namespace

void add_create(CLI::App& app, command_list& out) {
  auto a = std::make_shared<create_args>();
  auto* c = app.add_subcommand("create", "Create an empty log in DIR");
  c->add_option("DIR", a->dir, "Log directory (created if absent)")->required();
  c->add_option("--segment-size", a->segment_size,
                "Segment capacity: a power of two from 64K to 1G (suffixes K, M, G); default 64M");
  out.push_back({c, [a] { return cmd_create(*a); }});
}

}  // namespace varve::cli
