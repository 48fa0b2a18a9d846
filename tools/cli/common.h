// What every `varve` subcommand (tools/cli/*.cc) shares: how a subcommand
// registers itself with main.cc's table, the exit codes, error reporting
// (text or JSON), typed options with strict parsing, the event filter flags,
// progress lines, and type names for output.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>

#include "tools/ndjson.h"
#include "varve/event_filter.h"
#include "varve/options.h"
#include "varve/status.h"
#include "varve/type_registry.h"

namespace varve::cli {

// --- registration -------------------------------------------------------------

// A parsed subcommand and what runs it. The args a subcommand's options fill
// are owned by `run` (a closure over them), so registration needs no globals.
struct command {
  CLI::App* app;             // a leaf subcommand: `varve snapshot ls`, not `snapshot`
  std::function<int()> run;  // returns the exit code
};
using command_list = std::vector<command>;
// Each subcommand group defines one of these per top-level subcommand
// (add_read, add_tail, ...) and main.cc lists them.
using command_adder = void(CLI::App& app, command_list& out);
// `varve stream delete|truncate|limits|meta` (tools/cli/lifecycle.cc), added
// under the `stream` group keys.cc makes.
void add_stream_lifecycle(CLI::App& stream, command_list& out);

// --- exit codes -----------------------------------------------------------------

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;     // I/O, a refused input line, a log that cannot be used
inline constexpr int kExitUsage = 2;     // the command line, and only it
inline constexpr int kExitConflict = 3;  // a wrong expected_version
inline constexpr int kExitCorrupt = 4;   // corruption: not intact, or met while opening or reading
inline constexpr int kExitNotFound = 5;  // no such log, stream, event type, or event at that version
inline constexpr int kExitExists = 6;    // create: DIR already holds a log
// The table as --help's footer prints it (README has the same).
extern const char* const kExitCodesHelp;

// The exit code for a library error: corruption 4, not_found 5 (a missing
// file of a log that exists is corruption: see fail_reading), a wrong
// expected version 3, anything else 1.
int exit_code_for(const status& s);

// --- errors and warnings on stderr --------------------------------------------------

// With --json anywhere on the command line, errors and warnings go to stderr
// as one JSON object per line, for scripts:
//   {"error":{"code":"corruption","exit":4,"message":"...","file":"...","offset":N}}
//   {"warning":{"code":"...","message":"..."}}
// "code" is the library's errc (corruption, not_found, io_error, ...) or the
// CLI's own (usage, already_exists); "file" and "offset" when the message
// names them (the library words them "PATH offset N: why"); "line" for an
// input line of `varve append`. Without --json: "varve: MESSAGE" lines.
void set_json_errors(bool on);
bool json_errors();
// errc as an identifier for scripts ("not_found"; errc_name is for people).
std::string_view errc_id(errc c);

int fail(const status& s);                                  // exit_code_for(s)
int fail(const status& s, int exit);
// What went wrong reading events: a missing segment file is the log's damage.
int fail_reading(const status& s);
// "line N: message" for an input line.
int fail_line(uint64_t line, const std::string& message, std::string_view code, int exit);
// An error the CLI itself finds: `code` as in the JSON above.
int fail_with(int exit, std::string_view code, const std::string& message);
int usage_error(const std::string& msg);
void warn(const std::string& msg, std::string_view code = "warning", std::optional<uint64_t> line = {});

// Every recovery action (a cut, a file set aside, damage found by a
// read-only open) goes to stderr as a warning, always: a recovery must
// never be silent. Thread-safe; one for the whole process.
recovery_observer* recovery_printer();
// log_options with recovery_printer() as the observer.
log_options cli_log_options();
// The master key file (`--master-key FILE` anywhere on the command line,
// taken out before parsing; else VARVE_MASTER_KEY_FILE): cli_log_options
// loads it, and exits with a usage error naming the file when it cannot.
void set_master_key_file(std::string path);

// Opening DIR failed: an option the library refused (invalid_argument, e.g. a
// segment size) is a usage error; a directory without varve.meta is "no such
// log" (5), not a damaged one.
int fail_open(const status& s, const std::string& dir);
// DIR checks the library would report less plainly: an empty argument is a
// usage error, a path that names a file is "not a directory" (1).
std::optional<int> check_dir(const std::string& dir);

// --- typed options --------------------------------------------------------------------

// A numeric option parsed strictly (digits only: "-1", " 5", "5x", "0x10" and
// "1e3" are usage errors, which strtoull or CLI11's own conversion would let
// through), shown in --help as its type: UINT, POSITION, VERSION...
CLI::Option* add_uint(CLI::App& app, const std::string& name, std::optional<uint64_t>& out,
                      const std::string& help, const std::string& type = "UINT");
// A byte size: digits with an optional K, M or G (binary) suffix: SIZE.
CLI::Option* add_size(CLI::App& app, const std::string& name, std::optional<uint64_t>& out,
                      const std::string& help);
// A time: ISO 8601 with a zone, or integer nanoseconds since the epoch: TIME.
CLI::Option* add_time(CLI::App& app, const std::string& name, std::optional<uint64_t>& out,
                      const std::string& help);
// A duration: digits with a unit, ns, us, ms, s, m, h, d or w ("7d", "36h"): DURATION.
CLI::Option* add_duration(CLI::App& app, const std::string& name, std::optional<uint64_t>& out,
                          const std::string& help);
std::optional<uint64_t> parse_duration(std::string_view s);
// --json; `help` says what it changes for this subcommand.
void add_json_flag(CLI::App& app, bool& json, const std::string& help);
// --time-format ns|iso, for commands that print events.
void add_time_format(CLI::App& app, tools::time_format& tf);

// --upcasters FILE (varve/upcast.h's declarative form): events are printed
// upcast to their type's current version.
void add_upcasters_flag(CLI::App& app, std::string& file);
// Loads FILE, its type names resolved through DIR/types, and gives the log
// its upcasters; nothing to do for an empty FILE. On failure the exit code
// (an unreadable file, or one the parser refuses: 1, naming the entry).
std::optional<int> use_upcasters(event_log& log, const std::string& file, const std::string& dir);

// --- which events: --type, --category, --stream -------------------------------------------

struct filter_flags {
  std::vector<std::string> types;       // names (DIR/types) or numbers
  std::vector<std::string> categories;  // stream id prefixes
  std::vector<std::string> streams;     // exact stream ids
  std::vector<std::string> correlations;  // correlation ids (UUIDs)
  bool empty() const { return types.empty() && categories.empty() && streams.empty() && correlations.empty(); }
};
// The same four repeatable flags on read, tail and replay.
void add_filter_flags(CLI::App& app, filter_flags& f);
// Resolves type names through DIR/types into `out`; on failure the exit code
// (a usage error, or 5 for a type name the log has never seen).
std::optional<int> make_filter(const filter_flags& f, const std::string& dir, event_filter& out);

// --- progress on a terminal ------------------------------------------------------------------

// One line on stderr, redrawn in place, only when stderr is a terminal (never
// on a pipe or in a log file). It appears once `after` has passed (short runs
// stay quiet), is redrawn at most every `every`, and is erased by clear(), by
// the destructor, and before any error or warning is printed.
class progress_line {
 public:
  progress_line(std::chrono::milliseconds after, std::chrono::milliseconds every, bool enabled = true);
  ~progress_line();
  progress_line(const progress_line&) = delete;
  progress_line& operator=(const progress_line&) = delete;

  // True when show() would draw now: callers build the text only then.
  bool due();
  void show(const std::string& text);
  void clear();

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point next_;
  std::chrono::milliseconds every_;
};
bool stderr_is_terminal();
// SIGINT and SIGTERM call `handler` (which only sets a flag or cancels:
// async-signal-safe work), without SA_RESTART, so a blocked read returns.
void on_stop_signals(void (*handler)(int));

// --- parsing and printing -------------------------------------------------------------------------

// Digits only: strtoull would quietly accept "-1", " 5" and "5x".
std::optional<uint64_t> parse_u64(std::string_view s);
// "65536", "64K", "64M", "1G", also "64MiB"/"64MB": binary multiples, since
// segment sizes are powers of two.
std::optional<uint64_t> parse_size(std::string_view s);
// ISO 8601 with a zone (tools/time_text.h), or integer nanoseconds.
std::optional<uint64_t> parse_time(std::string_view s);

std::string human_bytes(uint64_t b);
std::string json_text(const std::string& s);  // a JSON string, bad UTF-8 replaced
// A stream id for messages: JSON-quoted so odd bytes cannot garble the line.
std::string display_stream(const tools::append_request& req);

// The JSON value printed for each type id, rendered once per id: names from
// the registry, the bare number for ids it does not know. A long-running
// reader (tail, a consumer group) meets types registered after it started:
// an id the registry does not know makes it read the registry again (the
// CLI's append registers a name before it appends an event of it), and an
// id still without a name is looked up again at most once a second, so a
// log of numeric type ids does not read the registry file per event.
class type_names {
 public:
  explicit type_names(const std::string& dir);
  std::string_view json_for(uint32_t id);

 private:
  struct entry {
    std::string text;  // empty: not rendered yet
    bool named = false;
    std::chrono::steady_clock::time_point checked;
  };
  static constexpr uint32_t kDense = 4096;
  static constexpr std::chrono::seconds kRecheckUnnamed{1};
  void look_up(uint32_t id, entry& e);

  std::string dir_;
  std::optional<type_registry> registry_;
  std::vector<entry> dense_;
  std::unordered_map<uint32_t, entry> sparse_;
};

}  // namespace varve::cli
