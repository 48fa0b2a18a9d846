// What every `varve` subcommand (tools/cli/*.cc) shares: how a subcommand
// registers itself with main.cc's table, the exit codes, error reporting, the
// strict parsing of numbers, sizes and times, and type names for output.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>

#include "tools/ndjson.h"
#include "varve/status.h"
#include "varve/type_registry.h"

namespace varve::cli {

// A parsed subcommand and what runs it. The args a subcommand's options fill
// are owned by `run` (a closure over them), so registration needs no globals.
struct command {
  CLI::App* app;             // a leaf subcommand: `varve snapshot ls`, not `snapshot`
  std::function<int()> run;  // the exit code
};
using command_list = std::vector<command>;
// Each subcommand group defines one of these per top-level subcommand
// (add_read, add_tail, ...) and main.cc lists them.
using command_adder = void(CLI::App& app, command_list& out);

// Exit codes (also in --help):
//   0  done
//   1  the log could not be used or an input line was refused (I/O, not a log,
//      a malformed line, corruption met by read)
//   2  the command line is wrong (unknown flag, malformed number or size, a
//      value the library refuses) - and, for verify only, "not intact"
//   3  append stopped on a wrong expected_version (--on-conflict fail)
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitCorrupt = 2;  // verify found a problem
inline constexpr int kExitConflict = 3;

int fail(const status& s);
int usage_error(const std::string& msg);
// The library refuses bad options (a segment size that is not a power of two)
// with invalid_argument: that is the command line's fault, so exit 2.
int fail_open(const status& s);
// DIR checks the library would report less plainly: an empty argument is a
// usage error, a path that names a file is "not a directory".
std::optional<int> check_dir(const std::string& dir);

// Digits only: strtoull would quietly accept "-1", " 5" and "5x".
std::optional<uint64_t> parse_u64(std::string_view s);
// An optional numeric flag: leaves `out` as it is when the flag is absent;
// a value that is not a plain non-negative integer is a usage error (exit 2).
std::optional<int> parse_flag(const std::optional<std::string>& s, const char* flag, uint64_t& out,
                              const char* what = "a non-negative integer");
// "65536", "64K", "64M", "1G", also "64MiB"/"64MB": binary multiples, since
// segment sizes are powers of two.
std::optional<uint64_t> parse_size(std::string_view s);
// "2026-11-22T10:00:00Z", with optional fractional seconds and a numeric
// offset ("+01:00"), or a bare integer of nanoseconds since the epoch.
std::optional<uint64_t> parse_time(std::string_view s);

std::string human_bytes(uint64_t b);
// A stream id for messages: JSON-quoted so odd bytes cannot garble the line.
std::string display_stream(const tools::append_request& req);

// The JSON value printed for each type id, rendered once per id: names from
// the registry, the bare number for ids it does not know.
class type_names {
 public:
  explicit type_names(const std::string& dir);
  std::string_view json_for(uint32_t id);

 private:
  static constexpr uint32_t kDense = 4096;
  std::string render(uint32_t id) const;

  std::optional<type_registry> registry_;
  std::vector<std::string> dense_;
  std::unordered_map<uint32_t, std::string> sparse_;
};

}  // namespace varve::cli
