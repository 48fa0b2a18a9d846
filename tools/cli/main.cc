// The `varve` command line tool: create, append (NDJSON in), read (NDJSON
// out), verify and stat a log directory, and more. Thin by design: it parses
// arguments, calls the library and prints; all the checking lives in the
// library. Each subcommand lives in tools/cli/<group>.cc and registers itself
// through an add_<name> function listed below.
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "tools/cli/common.h"

namespace varve::cli {

// A new subcommand: a file defining add_<name> (see common.h), its name in
// this list, and the file in CMakeLists.txt's varve_cli. The order is --help's.
command_adder add_create, add_append, add_read, add_verify, add_stat, add_metrics, add_index, add_tail, add_ship,
    add_replay, add_snapshot, add_recover, add_consume, add_group, add_types, add_retain, add_archive,
    add_keygen, add_stream, add_scavenge;

namespace {

int run(int argc, char** argv) {
  CLI::App app{"varve: create, feed, export and check a varve event log", "varve"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "varve 0.1.0");
  app.footer(std::string(kExitCodesHelp) +
             "\nvarve runs on Linux only (5.14 or newer: MADV_POPULATE_WRITE; futex, membarrier; "
             "io_uring where allowed, else pread/mmap).\n"
             "--master-key FILE (or VARVE_MASTER_KEY_FILE) goes with any command on a log that encrypts payloads "
             "(varve create --master-key FILE; varve keygen FILE makes one).");
  // Errors as JSON from the first one on, a malformed command line included:
  // the flag is looked for before CLI11 parses (every subcommand takes it).
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--json") set_json_errors(true);
  // --master-key FILE goes with every command that opens a log (crypto-
  // shredding): taken out here, so each subcommand need not declare it.
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view v = argv[i];
    if (i > 0 && v == "--master-key") {
      if (i + 1 >= argc) return usage_error("--master-key needs a FILE");
      set_master_key_file(argv[++i]);
      continue;
    }
    if (i > 0 && v.starts_with("--master-key=")) {
      set_master_key_file(std::string(v.substr(13)));
      continue;
    }
    args.push_back(argv[i]);
  }
  argc = static_cast<int>(args.size());
  argv = args.data();

  command_list commands;
  for (command_adder* add : {add_create, add_append, add_read, add_index, add_verify, add_stat, add_metrics, add_tail,
                             add_ship, add_replay, add_snapshot, add_recover, add_consume, add_group, add_types, add_retain, add_archive,
                             add_scavenge, add_keygen, add_stream})
    add(app, commands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    return usage_error(e.what());
  }
  for (const command& c : commands)
    if (c.app->parsed()) return c.run();
  return usage_error("no command given");
}

}  // namespace
}  // namespace varve::cli

int main(int argc, char** argv) {
  // The library returns errors as values; anything thrown here is a bug or
  // out-of-memory, and still deserves one line rather than std::terminate.
  try {
    return varve::cli::run(argc, argv);
  } catch (const std::exception& e) {
    return varve::cli::fail_with(varve::cli::kExitError, "internal", std::string("internal error: ") + e.what());
  }
}
