#include "tools/cli/common.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <mutex>

#include <nlohmann/json.hpp>

#include "base/log_files.h"
#include "tools/time_text.h"
#include "varve/upcast.h"

namespace varve::cli {

const char* const kExitCodesHelp =
    "Exit codes: 0 done; 1 error (I/O, a refused input line, a log that cannot be used); "
    "2 usage (a malformed command line, and only that); 3 conflict (append met a wrong "
    "expected_version); 4 corruption (verify or index verify found the log not intact, or a "
    "read or an open met damage); 5 not found (no such log, stream, event type, or event at "
    "that version, a position retention removed, or a deleted stream); 6 already exists (create on a log). With --json, errors are JSON objects "
    "on stderr: {\"error\":{\"code\":...,\"exit\":...,\"message\":...,\"file\":...,\"offset\":...}}.";

namespace {

bool g_json_errors = false;
progress_line* g_progress = nullptr;  // the one on screen, erased before errors

using ojson = nlohmann::ordered_json;

}  // namespace

std::string_view errc_id(errc c) {
  switch (c) {
    case errc::ok: return "ok";
    case errc::wrong_expected_version: return "wrong_expected_version";
    case errc::corruption: return "corruption";
    case errc::io_error: return "io_error";
    case errc::no_space: return "no_space";
    case errc::not_found: return "not_found";
    case errc::invalid_argument: return "invalid_argument";
    case errc::not_a_log: return "not_a_log";
    case errc::newer_format: return "newer_format";
    case errc::locked: return "locked";
    case errc::read_only: return "read_only";
    case errc::too_large: return "too_large";
    case errc::cancelled: return "cancelled";
    case errc::already_exists: return "already_exists";
    case errc::removed: return "removed";
    case errc::stream_deleted: return "stream_deleted";
  }
  return "error";
}

namespace {

// The library words what it blames as "PATH offset N: why" or "PATH: why".
// Read conservatively: the part before the first ": " is a path only when it
// holds a '/' and no space (the CLI's own messages never look like that).
void locate(std::string_view msg, ojson& j) {
  const size_t colon = msg.find(": ");
  if (colon == std::string_view::npos) return;
  std::string_view head = msg.substr(0, colon);
  constexpr std::string_view kOffset = " offset ";
  std::optional<uint64_t> offset;
  if (const size_t at = head.rfind(kOffset); at != std::string_view::npos) {
    offset = parse_u64(head.substr(at + kOffset.size()));
    if (offset) head = head.substr(0, at);
  }
  if (head.empty() || head.find('/') == std::string_view::npos || head.find(' ') != std::string_view::npos)
    return;
  j["file"] = std::string(head);
  if (offset) j["offset"] = *offset;
}

void print(std::string_view kind, int exit, std::string_view code, const std::string& message,
           std::optional<uint64_t> line, const std::string& text) {
  if (g_progress) g_progress->clear();
  if (!g_json_errors) {
    std::fprintf(stderr, "varve: %s\n", text.c_str());
    return;
  }
  ojson body;
  body["code"] = std::string(code);
  if (kind == "error") body["exit"] = exit;
  body["message"] = message;
  locate(message, body);
  if (line) body["line"] = *line;
  ojson j;
  j[std::string(kind)] = std::move(body);
  std::fprintf(stderr, "%s\n", j.dump(-1, ' ', false, ojson::error_handler_t::replace).c_str());
}

std::optional<uint64_t> parse_size_text(std::string_view s) { return parse_size(s); }

CLI::Option* add_strict(CLI::App& app, const std::string& name, std::optional<uint64_t>& out,
                        const std::string& help, const std::string& type,
                        std::optional<uint64_t> (*parse)(std::string_view), std::string what) {
  CLI::Option* opt = app.add_option(
      name,
      [&out, parse](const CLI::results_t& r) {
        out = parse(r.back());
        return out.has_value();
      },
      help);
  opt->type_name(type);
  // Runs before the callback, so a bad value is a usage error naming the flag:
  // `--limit: "5x" is not a non-negative integer`.
  opt->check(CLI::Validator(
      [parse, what](std::string& s) -> std::string {
        return parse(s) ? std::string() : "\"" + s + "\" is not " + what;
      },
      "", type));
  return opt;
}

}  // namespace

// --- exit codes and errors -----------------------------------------------------

int exit_code_for(const status& s) {
  switch (s.code()) {
    case errc::ok: return kExitOk;
    case errc::wrong_expected_version: return kExitConflict;
    case errc::corruption: return kExitCorrupt;
    case errc::not_found: return kExitNotFound;
    case errc::removed: return kExitNotFound;
    case errc::stream_deleted: return kExitNotFound;
    case errc::already_exists: return kExitExists;
    default: return kExitError;
  }
}

void set_json_errors(bool on) { g_json_errors = on; }
bool json_errors() { return g_json_errors; }

int fail(const status& s) { return fail(s, exit_code_for(s)); }

int fail(const status& s, int exit) {
  print("error", exit, errc_id(s.code()), s.message(), std::nullopt, s.to_string());
  return exit;
}

int fail_reading(const status& s) {
  return fail(s, s.code() == errc::not_found ? kExitCorrupt : exit_code_for(s));
}

int fail_line(uint64_t line, const std::string& message, std::string_view code, int exit) {
  print("error", exit, code, message, line, "line " + std::to_string(line) + ": " + message);
  return exit;
}

int fail_with(int exit, std::string_view code, const std::string& message) {
  print("error", exit, code, message, std::nullopt, message);
  return exit;
}

int usage_error(const std::string& msg) {
  print("error", kExitUsage, "usage", msg, std::nullopt, msg + "\nRun with --help for usage.");
  return kExitUsage;
}

void warn(const std::string& msg, std::string_view code, std::optional<uint64_t> line) {
  print("warning", 0, code, msg, line,
        line ? "line " + std::to_string(*line) + ": " + msg : (code == "warning" ? "warning: " + msg : msg));
}

namespace {

struct printing_observer final : recovery_observer {
  std::mutex mu;
  void on_truncated(const std::string& file, uint64_t offset, uint64_t bytes, const std::string& why) override {
    on_action({recovery_action::kind::note, file, offset, bytes, why, "", 0});
  }
  void on_action(const recovery_action& a) override {
    std::string text = a.file + " offset " + std::to_string(a.offset) + ": " + a.why;
    if (a.bytes) text += " (" + std::to_string(a.bytes) + " bytes)";
    if (!a.kept_at.empty()) text += "; bytes kept in " + a.kept_at;
    std::lock_guard<std::mutex> g(mu);
    warn(text, "recovery");
  }
};

}  // namespace

recovery_observer* recovery_printer() {
  static printing_observer o;
  return &o;
}

namespace {
std::string g_master_key_file;
}

void set_master_key_file(std::string path) { g_master_key_file = std::move(path); }

log_options cli_log_options() {
  log_options o;
  o.observer = recovery_printer();
  // Crypto-shredding: --master-key FILE, or VARVE_MASTER_KEY_FILE.
  std::string path = g_master_key_file;
  if (path.empty())
    if (const char* e = std::getenv("VARVE_MASTER_KEY_FILE"); e && *e) path = e;
  if (!path.empty()) {
    auto k = load_master_key(path);
    if (!k) std::exit(fail(k.error(), kExitUsage));
    o.master_key = k.value();
  }
  return o;
}

int fail_open(const status& s, const std::string& dir) {
  if (s.code() == errc::invalid_argument) return usage_error(s.to_string());
  if (s.code() == errc::not_a_log) {
    struct stat st;
    if (::stat(log_files::join(dir, log_files::kMetaName).c_str(), &st) != 0)
      return fail(s, kExitNotFound);
  }
  return fail(s);
}

std::optional<int> check_dir(const std::string& dir) {
  if (dir.empty()) return usage_error("DIR is empty");
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    return fail_with(kExitError, "not_a_directory", dir + ": not a directory");
  return std::nullopt;
}

// --- typed options -----------------------------------------------------------------

CLI::Option* add_uint(CLI::App& app, const std::string& name, std::optional<uint64_t>& out,
                      const std::string& help, const std::string& type) {
  return add_strict(app, name, out, help, type, parse_u64,
                    type == "POSITION" ? "a position" : "a non-negative integer");
}

CLI::Option* add_size(CLI::App& app, const std::string& name, std::optional<uint64_t>& out,
                      const std::string& help) {
  return add_strict(app, name, out, help, "SIZE", parse_size_text,
                    "a size (bytes, or a number with a K, M or G suffix)");
}

CLI::Option* add_time(CLI::App& app, const std::string& name, std::optional<uint64_t>& out,
                      const std::string& help) {
  return add_strict(app, name, out, help, "TIME", parse_time,
                    "a time (2026-11-22T10:00:00Z, or nanoseconds since the epoch)");
}

CLI::Option* add_duration(CLI::App& app, const std::string& name, std::optional<uint64_t>& out,
                          const std::string& help) {
  return add_strict(app, name, out, help, "DURATION", parse_duration,
                    "a duration (a number with a unit: ns, us, ms, s, m, h, d or w)");
}

std::optional<uint64_t> parse_duration(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  if (digits == 0 || digits > 19) return std::nullopt;
  const auto n = parse_u64(s.substr(0, digits));
  if (!n) return std::nullopt;
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000ull}, {"m", 60000000000ull},
      {"h", 3600000000000ull}, {"d", 86400000000000ull}, {"w", 604800000000000ull}};
  for (const auto& [unit, ns] : kUnits)
    if (s.substr(digits) == unit) {
      if (*n > UINT64_MAX / ns) return std::nullopt;
      return *n * ns;
    }
  return std::nullopt;
}

void add_json_flag(CLI::App& app, bool& json, const std::string& help) {
  app.add_flag("--json", json, help + "; errors as JSON objects on stderr");
}

void add_upcasters_flag(CLI::App& app, std::string& file) {
  app.add_option("--upcasters", file,
                 "Upcast events to their type's current schema version with the steps in this JSON file "
                 "(docs/DESIGN.md \"Upcasters\"); stored_schema_version says what the log holds")
      ->type_name("FILE");
}

std::optional<int> use_upcasters(event_log& log, const std::string& file, const std::string& dir) {
  if (file.empty()) return std::nullopt;
  auto reg = type_registry::open(dir);
  if (!reg && reg.error().code() != errc::not_found) return fail(reg.error());
  const type_registry names = reg ? std::move(reg.value()) : type_registry{};
  auto up = upcasters::load(file, &names);
  if (!up) return fail(up.error(), up.error().code() == errc::not_found ? kExitNotFound : kExitError);
  if (status s = log.set_upcasters(std::make_shared<const upcasters>(std::move(up.value()))); !s)
    return fail(s, kExitError);
  return std::nullopt;
}

void add_time_format(CLI::App& app, tools::time_format& tf) {
  app.add_option_function<std::string>(
         "--time-format",
         [&tf](const std::string& v) { tf = v == "iso" ? tools::time_format::iso : tools::time_format::ns; },
         "\"timestamp\" as ns (integer nanoseconds since the epoch, the default) or iso "
         "(\"2026-11-22T10:00:00.123456789Z\"); append takes either")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"ns", "iso"}));
}

// --- filters ---------------------------------------------------------------------------

void add_filter_flags(CLI::App& app, filter_flags& f) {
  app.add_option("--type", f.types, "Only events of this type: a name from DIR/types or a number (repeatable)")
      ->type_name("TYPE");
  app.add_option("--category", f.categories,
                 "Only streams whose id starts with this prefix, e.g. order- (repeatable; with "
                 "--stream, an event matches either)")
      ->type_name("PREFIX");
  app.add_option("--stream", f.streams, "Only this stream (repeatable)")->type_name("STREAM");
  app.add_option("--correlation", f.correlations,
                 "Only events with this correlation id, a UUID (repeatable); sealed segments whose "
                 "index rules it out are not read")
      ->type_name("UUID");
}

std::optional<int> make_filter(const filter_flags& f, const std::string& dir, event_filter& out) {
  out = event_filter{};
  std::optional<type_registry> names;
  for (const std::string& t : f.types) {
    if (t.empty()) return usage_error("--type: empty");
    if (auto n = parse_u64(t)) {
      if (*n > UINT32_MAX) return usage_error("--type: \"" + t + "\" is not an event type number");
      out.types.push_back(static_cast<uint32_t>(*n));
      continue;
    }
    if (!names) {
      auto reg = type_registry::open(dir);
      if (!reg && reg.error().code() != errc::not_found) return fail(reg.error());
      names.emplace(reg ? std::move(reg.value()) : type_registry{});
    }
    auto id = names->find(t);
    if (!id)
      return fail_with(kExitNotFound, "not_found",
                       "--type " + json_text(t) + ": no event type of that name in " + dir + "/types");
    out.types.push_back(*id);
  }
  for (const std::string& c : f.categories) {
    if (c.empty()) return usage_error("--category: the prefix is empty");
    out.stream_prefixes.push_back(c);
  }
  for (const std::string& s : f.streams) {
    if (s.empty() || s.size() > kMaxStreamIdBytes) return usage_error("--stream: a stream id has 1 to 255 bytes");
    out.streams.push_back(s);
  }
  for (const std::string& c : f.correlations) {
    auto id = tools::parse_uuid(c);
    if (!id) return usage_error("--correlation: " + json_text(c) + " is not a UUID");
    out.correlation_ids.push_back(*id);
  }
  return std::nullopt;
}

// --- progress ---------------------------------------------------------------------------

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

progress_line::progress_line(std::chrono::milliseconds after, std::chrono::milliseconds every, bool enabled)
    : enabled_(enabled && stderr_is_terminal()),
      next_(std::chrono::steady_clock::now() + after),
      every_(every) {
  if (enabled_) g_progress = this;
}

progress_line::~progress_line() {
  clear();
  if (g_progress == this) g_progress = nullptr;
}

bool progress_line::due() { return enabled_ && std::chrono::steady_clock::now() >= next_; }

void progress_line::show(const std::string& text) {
  if (!enabled_) return;
  std::fprintf(stderr, "\r%s\x1b[K", text.c_str());
  drawn_ = true;
  next_ = std::chrono::steady_clock::now() + every_;
}

void progress_line::clear() {
  if (!drawn_) return;
  std::fprintf(stderr, "\r\x1b[K");
  drawn_ = false;
}

// --- parsing and printing ------------------------------------------------------------------

std::optional<uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::optional<uint64_t> parse_size(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  auto n = parse_u64(s.substr(0, digits));
  if (!n) return std::nullopt;
  std::string_view suffix = s.substr(digits);
  if (suffix.empty()) return n;
  int shift = 0;
  switch (suffix[0]) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: return std::nullopt;
  }
  suffix.remove_prefix(1);
  if (!suffix.empty() && suffix != "B" && suffix != "iB") return std::nullopt;
  if (*n > (UINT64_MAX >> shift)) return std::nullopt;
  return *n << shift;
}

std::optional<uint64_t> parse_time(std::string_view s) {
  if (auto ns = parse_u64(s)) return ns;
  return tools::parse_iso8601(s);
}

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  if (v == static_cast<double>(static_cast<uint64_t>(v)))
    std::snprintf(buf, sizeof buf, "%" PRIu64 " %s", static_cast<uint64_t>(v), units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string json_text(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string display_stream(const tools::append_request& req) {
  if (req.stream_is_integer) return std::to_string(req.stream_u64);
  return json_text(req.stream);
}

// --- type_names --------------------------------------------------------------

type_names::type_names(const std::string& dir) : dir_(dir) {
  auto reg = type_registry::open(dir);
  if (reg) {
    registry_.emplace(std::move(reg.value()));
  } else if (reg.error().code() != errc::not_found) {
    warn(reg.error().to_string() + "; printing type numbers");
  }
}

std::string_view type_names::json_for(uint32_t id) {
  entry* e;
  if (id < kDense) {
    if (dense_.size() <= id) dense_.resize(id + 1);
    e = &dense_[id];
  } else {
    e = &sparse_[id];
  }
  if (e->text.empty() ||
      (!e->named && std::chrono::steady_clock::now() - e->checked >= kRecheckUnnamed))
    look_up(id, *e);
  return e->text;
}

void type_names::look_up(uint32_t id, entry& e) {
  auto name = registry_ ? registry_->name_of(id) : std::nullopt;
  if (!name) {
    // Perhaps registered since the registry was read. A registry that cannot
    // be read now keeps the one read before (its names are still right).
    if (auto reg = type_registry::open(dir_)) {
      registry_.emplace(std::move(reg.value()));
      name = registry_->name_of(id);
    }
  }
  e.named = name.has_value();
  e.text = name ? json_text(std::string(*name)) : std::to_string(id);
  e.checked = std::chrono::steady_clock::now();
}

void on_stop_signals(void (*handler)(int)) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace varve::cli
