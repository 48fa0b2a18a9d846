// The `varve` command line tool: create, append (NDJSON in), read (NDJSON out),
// verify and stat a log directory. Thin by design: it parses arguments, calls
// the library and prints; all the checking lives in the library.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tools/ndjson.h"
#include "tools/ship.h"
#include "varve/columnar.h"
#include "varve/varve.h"
#include "varve/subscription.h"

namespace {

using namespace varve;
using namespace varve::tools;

// Exit codes (also in --help):
//   0  done
//   1  the log could not be used or an input line was refused (I/O, not a log,
//      a malformed line, corruption met by read)
//   2  the command line is wrong (unknown flag, malformed number or size, a
//      value the library refuses) - and, for verify only, "not intact"
//   3  append stopped on a wrong expected_version (--on-conflict fail)
constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitCorrupt = 2;  // verify found a problem
constexpr int kExitConflict = 3;
// Acks wait for durability before they are written, so they are buffered by
// hand; past this much the appender stops to wait and write them out.
constexpr size_t kAckFlushBytes = 256 << 10;

int fail(const status& s) {
  std::fprintf(stderr, "varve: %s\n", s.to_string().c_str());
  return kExitError;
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "varve: %s\nRun with --help for usage.\n", msg.c_str());
  return kExitUsage;
}

// The library refuses bad options (a segment size that is not a power of two)
// with invalid_argument: that is the command line's fault, so exit 2.
int fail_open(const status& s) {
  if (s.code() == errc::invalid_argument) return usage_error(s.to_string());
  return fail(s);
}

// DIR checks the library would report less plainly: an empty argument is a
// usage error, a path that names a file is "not a directory".
std::optional<int> check_dir(const std::string& dir) {
  if (dir.empty()) return usage_error("DIR is empty");
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "varve: %s: not a directory\n", dir.c_str());
    return kExitError;
  }
  return std::nullopt;
}

// Digits only: strtoull would quietly accept "-1", " 5" and "5x".
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

// An optional numeric flag: leaves `out` as it is when the flag is absent;
// a value that is not a plain non-negative integer is a usage error (exit 2).
std::optional<int> parse_flag(const std::optional<std::string>& s, const char* flag, uint64_t& out,
                              const char* what = "a non-negative integer") {
  if (!s) return std::nullopt;
  auto v = parse_u64(*s);
  if (!v) return usage_error(std::string(flag) + ": \"" + *s + "\" is not " + what);
  out = *v;
  return std::nullopt;
}

// "65536", "64K", "64M", "1G", also "64MiB"/"64MB": binary multiples, since
// segment sizes are powers of two.
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

// A stream id for messages: JSON-quoted so odd bytes cannot garble the line.
std::string display_stream(const append_request& req) {
  if (req.stream_is_integer) return std::to_string(req.stream_u64);
  return nlohmann::json(req.stream).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// --- create ----------------------------------------------------------------

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

// --- append ----------------------------------------------------------------

struct append_args {
  std::string dir;
  std::string durability = "none";
  std::string on_conflict = "fail";
  bool create = false;
  std::optional<std::string> segment_size;
};

int cmd_append(const append_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  log_options opts;
  opts.mode = a.durability == "sync"    ? durability::sync
              : a.durability == "group" ? durability::group
                                        : durability::none;
  if (a.segment_size) {
    if (!a.create) return usage_error("--segment-size only applies with --create");
    auto n = parse_size(*a.segment_size);
    if (!n)
      return usage_error("--segment-size: \"" + *a.segment_size +
                         "\" is not a size (bytes, or a number with a K, M or G suffix)");
    opts.segment_bytes = *n;
  }
  const bool skip_conflicts = a.on_conflict == "skip";

  auto opened = a.create ? event_log::open_or_create(a.dir, opts) : event_log::open(a.dir, opts);
  if (!opened) {
    if (opened.error().code() != errc::not_found) return fail_open(opened.error());
    std::fprintf(stderr, "varve: %s (`varve create` makes a log, or pass --create)\n",
                 opened.error().to_string().c_str());
    return kExitError;
  }
  event_log& log = **opened;
  auto types = type_registry::open(a.dir);
  if (!types) return fail(types.error());

  line_reader in(STDIN_FILENO);
  ndjson_writer acks(STDOUT_FILENO, 1 << 20, ndjson_writer::flush_policy::manual);
  position last_end;
  // An ack promises durability in modes group and sync, so the wait comes
  // first. Acks go out whenever the input runs dry (before read() can block),
  // so an interactive producer sees each ack at once while a bulk load pays
  // one wait and one write per chunk instead of per line.
  auto flush_acks = [&]() -> status {
    if (acks.buffered() == 0) return {};
    if (opts.mode != durability::none) {
      if (status st = log.wait_durable(last_end); !st) return st;
    }
    return acks.flush();
  };
  // Acks of the lines before a failure still go out before we give up.
  auto stop = [&](const std::string& msg, int code = kExitError) {
    if (status st = flush_acks(); !st) std::fprintf(stderr, "varve: %s\n", st.to_string().c_str());
    std::fprintf(stderr, "varve: %s\n", msg.c_str());
    return code;
  };

  append_request req;
  std::vector<event_data> events;
  uint64_t line_no = 0;
  uint64_t skipped = 0;
  for (;;) {
    if (in.must_read() || acks.buffered() >= kAckFlushBytes) {
      if (status st = flush_acks(); !st) return fail(st);
    }
    std::string_view line;
    auto got = in.next(line);
    if (!got) return stop(got.error().to_string());
    if (!*got) break;
    ++line_no;
    auto where = [line_no] { return "line " + std::to_string(line_no) + ": "; };
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;

    if (status st = parse_append_line(line, req); !st) return stop(where() + st.message());

    events.clear();
    for (const input_event& ev : req.events) {
      event_data d;
      if (ev.type_id) {
        d.type = *ev.type_id;
      } else {
        auto id = types->id_for(ev.type_name);
        if (!id) return stop(where() + id.error().to_string());
        d.type = *id;
      }
      d.schema_version = ev.schema_version;
      d.payload = event_data::bytes(ev.payload);
      d.content = ev.content;
      d.timestamp_ns = ev.timestamp_ns;
      d.event_id = ev.event_id ? &*ev.event_id : nullptr;
      d.correlation_id = ev.correlation_id ? &*ev.correlation_id : nullptr;
      d.causation_id = ev.causation_id ? &*ev.causation_id : nullptr;
      events.push_back(d);
    }
    auto r = req.is_batch ? log.append(req.id(), req.expected, std::span<const event_data>(events))
                          : log.append(req.id(), req.expected, events.front());
    if (!r) {
      const status& err = r.error();
      if (err.code() != errc::wrong_expected_version) return stop(where() + err.to_string());
      const std::string msg = where() + "wrong expected version for stream " + display_stream(req) +
                              ": expected " + describe_expected(req.expected) + ", actual " +
                              std::to_string(err.actual_version());
      if (!skip_conflicts) return stop(msg, kExitConflict);
      std::fprintf(stderr, "varve: %s (skipped)\n", msg.c_str());
      ++skipped;
      continue;
    }
    last_end = r->end;
    write_ack(acks, req, *r);
  }
  if (status st = flush_acks(); !st) return fail(st);
  if (status st = log.close(); !st) return fail(st);
  if (skipped > 0)
    std::fprintf(stderr, "varve: %" PRIu64 " line(s) skipped on version conflicts\n", skipped);
  return kExitOk;
}

// --- read ------------------------------------------------------------------

struct read_args {
  std::string dir;
  std::optional<std::string> from_position;
  std::optional<std::string> limit;
  std::optional<std::string> stream;       // --stream: a named stream
  std::optional<std::string> stream_u64;   // --stream-u64: an integer stream id
  std::optional<std::string> from_version;
  bool backward = false;
  std::optional<std::string> since;
};

// "2026-11-22T10:00:00Z", with optional fractional seconds and a numeric
// offset ("+01:00"), or a bare integer of nanoseconds since the epoch.
std::optional<uint64_t> parse_time(std::string_view s) {
  if (auto ns = parse_u64(s)) return ns;
  int Y, M, D, h, m, sec, n = 0;
  std::string text(s);
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 ||
      n != 19)
    return std::nullopt;
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
    return std::nullopt;
  std::string_view rest = s.substr(19);
  uint64_t frac = 0;
  if (!rest.empty() && rest[0] == '.') {
    size_t i = 1;
    uint64_t scale = 100'000'000;
    for (; i < rest.size() && rest[i] >= '0' && rest[i] <= '9'; ++i) {
      frac += static_cast<uint64_t>(rest[i] - '0') * scale;
      scale /= 10;
    }
    if (i == 1) return std::nullopt;
    rest.remove_prefix(i);
  }
  int64_t offset = 0;
  if (rest == "Z" || rest == "z") {
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    auto oh = parse_u64(rest.substr(1, 2)), om = parse_u64(rest.substr(4, 2));
    if (!oh || !om || *oh > 23 || *om > 59) return std::nullopt;
    offset = static_cast<int64_t>(*oh * 3600 + *om * 60) * (rest[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  const int64_t t = static_cast<int64_t>(::timegm(&tm)) - offset;
  if (t < 0) return std::nullopt;
  return static_cast<uint64_t>(t) * 1'000'000'000ull + frac;
}

// The JSON value printed for each type id, rendered once per id: names from
// the registry, the bare number for ids it does not know.
class type_names {
 public:
  explicit type_names(const std::string& dir) {
    auto reg = type_registry::open(dir);
    if (reg) {
      registry_.emplace(std::move(reg.value()));
    } else if (reg.error().code() != errc::not_found) {
      std::fprintf(stderr, "varve: warning: %s; printing type numbers\n",
                   reg.error().to_string().c_str());
    }
  }

  std::string_view json_for(uint32_t id) {
    if (id < kDense) {
      if (dense_.size() <= id) dense_.resize(id + 1);
      if (dense_[id].empty()) dense_[id] = render(id);
      return dense_[id];
    }
    auto [it, inserted] = sparse_.try_emplace(id);
    if (inserted) it->second = render(id);
    return it->second;
  }

 private:
  static constexpr uint32_t kDense = 4096;

  std::string render(uint32_t id) const {
    if (registry_) {
      if (auto name = registry_->name_of(id))
        return nlohmann::json(std::string(*name))
            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    return std::to_string(id);
  }

  std::optional<type_registry> registry_;
  std::vector<std::string> dense_;
  std::unordered_map<uint32_t, std::string> sparse_;
};

// `varve read --stream S`: one stream through the per-aggregate index.
int read_one_stream(const event_log& log, const read_args& a, uint64_t limit, type_names& names) {
  stream_id id;
  std::string bytes;
  if (a.stream_u64) {
    auto n = parse_u64(*a.stream_u64);
    if (!n) return usage_error("--stream-u64: \"" + *a.stream_u64 + "\" is not a non-negative integer");
    id = stream_id::from_u64(*n);
  } else {
    bytes = *a.stream;
    if (bytes.empty() || bytes.size() > kMaxStreamIdBytes)
      return usage_error("--stream: a stream id has 1 to 255 bytes");
    id = stream_id(std::string_view(bytes));
  }
  stream_version from = a.backward ? kLatestVersion : 1;
  if (a.from_version) {
    auto v = parse_u64(*a.from_version);
    if (!v) return usage_error("--from-version: \"" + *a.from_version + "\" is not a non-negative integer");
    from = *v;
  }
  auto reader = log.read_stream(id, from, a.backward ? read_direction::backward : read_direction::forward, limit);
  if (!reader) return fail(reader.error());
  ndjson_writer out(STDOUT_FILENO);
  event_view e;
  while (true) {
    auto got = reader->next(e);
    if (!got) {
      (void)out.flush();
      return fail(got.error());
    }
    if (!*got) break;
    write_event(out, e, names.json_for(e.type));
    if (!out.error().ok()) break;
  }
  if (status st = out.flush(); !st) return fail(st);
  return kExitOk;
}

int cmd_read(const read_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const bool by_stream = a.stream || a.stream_u64;
  if (a.stream && a.stream_u64) return usage_error("--stream and --stream-u64 exclude each other");
  if (by_stream && (a.from_position || a.since))
    return usage_error("--stream reads one stream by version: --from-position and --since do not apply");
  if (!by_stream && (a.from_version || a.backward))
    return usage_error("--from-version and --backward need --stream");
  if (a.since && a.from_position) return usage_error("--since and --from-position exclude each other");
  std::optional<uint64_t> since;
  if (a.since) {
    since = parse_time(*a.since);
    if (!since)
      return usage_error("--since: \"" + *a.since +
                         "\" is not a time (2026-11-22T10:00:00Z, or nanoseconds since the epoch)");
  }
  position from;
  if (auto rc = parse_flag(a.from_position, "--from-position", from.value, "a position")) return *rc;
  uint64_t limit = UINT64_MAX;
  if (auto rc = parse_flag(a.limit, "--limit", limit)) return *rc;

  auto opened = event_log::open_read_only(a.dir);
  if (!opened) return fail(opened.error());
  const event_log& log = **opened;
  type_names names(a.dir);
  if (by_stream) return read_one_stream(log, a, limit, names);
  if (since) {
    auto p = log.position_at_time(*since);
    if (!p) return fail(p.error());
    from = *p;
  }

  ndjson_writer out(STDOUT_FILENO);
  log_reader reader = log.read(from);
  event_view e;
  for (uint64_t n = 0; n < limit; ++n) {
    auto got = reader.next(e);
    if (!got) {
      (void)out.flush();
      // The first record not being one is more likely a --from-position that
      // names no record than a corrupt log: say so.
      if (n == 0 && a.from_position && from.value != 0) {
        if (got.error().code() == errc::invalid_argument)
          return usage_error("--from-position " + *a.from_position + ": " + got.error().to_string());
        std::fprintf(stderr,
                     "varve: %s\nvarve: (is --from-position %s the position of a record? "
                     "positions come from append acks and varve read)\n",
                     got.error().to_string().c_str(), a.from_position->c_str());
        return kExitError;
      }
      return fail(got.error());
    }
    if (!*got) break;
    write_event(out, e, names.json_for(e.type));
    if (!out.error().ok()) break;
  }
  if (status st = out.flush(); !st) return fail(st);
  return kExitOk;
}

// --- verify ----------------------------------------------------------------

struct verify_args {
  std::string dir;
  bool json = false;
};

int cmd_verify(const verify_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  auto last = std::chrono::steady_clock::now();
  std::function<void(uint64_t, uint64_t)> progress;
  if (tty) {
    progress = [&last](uint64_t done, uint64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last < std::chrono::milliseconds(100)) return;
      last = now;
      std::fprintf(stderr, "\rverifying: %3.0f%% (%s of %s)\x1b[K",
                   total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0,
                   human_bytes(done).c_str(), human_bytes(total).c_str());
    };
  }
  auto rep = verify_log(a.dir, progress);
  if (tty) std::fprintf(stderr, "\r\x1b[K");

  // A library that reports corruption as the call's error rather than in the
  // report still means "checked, and not intact".
  verify_report report;
  if (rep) {
    report = rep.value();
  } else if (rep.error().code() == errc::corruption) {
    report.first_problem = rep.error();
  } else {
    return fail(rep.error());
  }
  const bool intact = report.first_problem.ok();

  if (a.json) {
    nlohmann::ordered_json j;
    j["intact"] = intact;
    j["segments"] = report.segments;
    j["sealed_segments"] = report.sealed_segments;
    j["events"] = report.events;
    j["bytes"] = report.bytes;
    if (!intact) {
      j["problem"] = report.first_problem.to_string();
      j["code"] = std::string(errc_name(report.first_problem.code()));
    }
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s: %" PRIu64 " segments (%" PRIu64 " sealed), %" PRIu64
                " events, %s of records checked\n",
                intact ? "intact" : "NOT intact", report.segments, report.sealed_segments,
                report.events, human_bytes(report.bytes).c_str());
    if (!intact) std::fprintf(stderr, "varve: %s\n", report.first_problem.to_string().c_str());
  }
  return intact ? kExitOk : kExitCorrupt;
}

// --- stat ------------------------------------------------------------------

struct stat_args {
  std::string dir;
  bool json = false;
};

int cmd_stat(const stat_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto got = stat_log(a.dir);
  if (!got) return fail(got.error());
  const log_stats& s = got.value();

  if (a.json) {
    auto pos = [](position p) {
      return p.is_none() ? nlohmann::ordered_json() : nlohmann::ordered_json(p.value);
    };
    nlohmann::ordered_json j;
    j["dir"] = a.dir;
    j["segments"] = s.segments;
    j["segment_bytes"] = s.segment_bytes;
    j["events"] = s.events;
    j["streams"] = s.streams;
    j["written"] = pos(s.written);
    j["committed"] = pos(s.committed);
    j["durable"] = pos(s.durable);
    j["bytes_on_disk"] = s.bytes_on_disk;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return kExitOk;
  }

  // Positions are segment index * capacity + offset; operators think in files.
  auto pos = [&s](position p) {
    if (p.is_none()) return std::string("none");
    std::string text = std::to_string(p.value);
    if (s.segment_bytes)
      text += " (segment " + std::to_string(p.value / s.segment_bytes) + ", offset " +
              std::to_string(p.value % s.segment_bytes) + ")";
    return text;
  };
  std::printf("directory      %s\n", a.dir.c_str());
  std::printf("segments       %" PRIu64 " of %s\n", s.segments,
              human_bytes(s.segment_bytes).c_str());
  std::printf("events         %" PRIu64 "\n", s.events);
  std::printf("streams        %" PRIu64 "\n", s.streams);
  std::printf("written        %s\n", pos(s.written).c_str());
  std::printf("committed      %s\n", pos(s.committed).c_str());
  std::printf("durable        %s\n", pos(s.durable).c_str());
  std::printf("bytes on disk  %" PRIu64 " (%s)\n", s.bytes_on_disk,
              human_bytes(s.bytes_on_disk).c_str());
  return kExitOk;
}

// --- index -----------------------------------------------------------------

struct index_args {
  std::string action;
  std::string dir;
  bool json = false;
};

int cmd_index(const index_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const bool verify = a.action == "verify";
  auto rep = verify ? verify_index(a.dir) : rebuild_index(a.dir);
  if (!rep) return fail(rep.error());
  const index_report& r = rep.value();
  const bool intact = r.problems.empty();
  if (a.json) {
    nlohmann::ordered_json j;
    j["action"] = a.action;
    j["intact"] = intact;
    j["sealed_segments"] = r.sealed_segments;
    j["index_files"] = r.index_files;
    j["index_bytes"] = r.index_bytes;
    j["events"] = r.events;
    j["checkpoints"] = r.checkpoints;
    j["problems"] = nlohmann::json::array();
    for (const status& p : r.problems) j["problems"].push_back(p.to_string());
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    const double per_event = r.events ? static_cast<double>(r.index_bytes) / static_cast<double>(r.events) : 0;
    std::printf("%s: %" PRIu64 " sealed segments, %" PRIu64 " index files (%s, %.2f B/event), %" PRIu64
                " events, %" PRIu64 " head checkpoints\n",
                verify ? (intact ? "index intact" : "index NOT intact") : "index rebuilt",
                r.sealed_segments, r.index_files, human_bytes(r.index_bytes).c_str(), per_event,
                r.events, r.checkpoints);
    for (const status& p : r.problems) std::fprintf(stderr, "varve: %s\n", p.to_string().c_str());
  }
  return intact ? kExitOk : kExitCorrupt;
}

// --- replay ----------------------------------------------------------------

struct replay_args {
  std::string dir;
  std::string projection;
  std::optional<std::string> threads, partitions, from_position, to_position, until, io;
  std::vector<std::string> types, categories, streams;
  std::optional<std::string> checkpoint, checkpoint_every, top;
  bool resume = false;
  bool json = false;
};

// Opens a projection's state snapshot, checking it has the expected columns.
result<columnar::decoder> open_state(std::span<const std::byte> in, const columnar::schema& s) {
  auto dec = columnar::decoder::open(in);
  if (!dec) return dec.error();
  if (status st = dec->expect(s); !st) return st;
  return dec;
}

// The two projections the CLI offers; both can checkpoint (save/load).
struct count_by_type {
  std::vector<uint64_t> dense;                    // types below 4096
  std::unordered_map<uint32_t, uint64_t> sparse;  // the rest
  void apply(const event_view& e) {
    if (e.type < 4096) {
      if (dense.size() <= e.type) dense.resize(e.type + 1);
      ++dense[e.type];
    } else {
      ++sparse[e.type];
    }
  }
  std::map<uint32_t, uint64_t> counts() const {
    std::map<uint32_t, uint64_t> out(sparse.begin(), sparse.end());
    for (uint32_t t = 0; t < dense.size(); ++t)
      if (dense[t]) out[t] += dense[t];
    return out;
  }
  // State snapshots use the columnar codec (varve/columnar.h): checksummed
  // per block, validated before anything is trusted, and recording the
  // position the state reflects.
  static const columnar::schema& columns() {
    static const columnar::schema s({{"type", columnar::column_type::u32},
                                     {"count", columnar::column_type::u64}});
    return s;
  }
  status save(std::string& out, position at) const {
    std::vector<uint32_t> types;
    std::vector<uint64_t> ns;
    for (const auto& [t, n] : counts()) {
      types.push_back(t);
      ns.push_back(n);
    }
    columnar::encoder enc(columns());
    enc.add_u32(0, types);
    enc.add_u64(1, ns);
    return enc.finish_into(out, at);
  }
  status load(std::span<const std::byte> in) {
    auto dec = open_state(in, columns());
    if (!dec) return dec.error();
    std::vector<uint32_t> types;
    std::vector<uint64_t> ns;
    if (status st = dec->read_u32(0, types); !st) return st;
    if (status st = dec->read_u64(1, ns); !st) return st;
    if (types.size() != ns.size()) return status(errc::corruption, "count-by-type state: column lengths differ");
    for (size_t i = 0; i < types.size(); ++i) apply_count(types[i], ns[i]);
    return {};
  }
  void apply_count(uint32_t t, uint64_t n) {
    if (t < 4096) {
      if (dense.size() <= t) dense.resize(t + 1);
      dense[t] += n;
    } else {
      sparse[t] += n;
    }
  }
};

struct stream_totals {
  uint64_t events = 0, bytes = 0;
  bool is_integer = false;
};
struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct bytes_by_stream {
  std::unordered_map<std::string, stream_totals, string_hash, std::equal_to<>> streams;
  void apply(const event_view& e) {
    auto it = streams.find(e.stream);  // no allocation for a stream seen before
    if (it == streams.end()) it = streams.emplace(std::string(e.stream), stream_totals{}).first;
    it->second.events += 1;
    it->second.bytes += e.payload.size();
    it->second.is_integer = e.stream_is_integer;
  }
  static const columnar::schema& columns() {
    static const columnar::schema s({{"stream", columnar::column_type::bytes},
                                     {"integer", columnar::column_type::u32},
                                     {"events", columnar::column_type::u64},
                                     {"bytes", columnar::column_type::u64}});
    return s;
  }
  status save(std::string& out, position at) const {
    std::vector<std::string_view> ids;
    std::vector<uint32_t> ints;
    std::vector<uint64_t> events, bytes;
    for (const auto& [k, t] : streams) {
      ids.push_back(k);
      ints.push_back(t.is_integer ? 1 : 0);
      events.push_back(t.events);
      bytes.push_back(t.bytes);
    }
    columnar::encoder enc(columns());
    enc.add_bytes(0, ids);
    enc.add_u32(1, ints);
    enc.add_u64(2, events);
    enc.add_u64(3, bytes);
    return enc.finish_into(out, at);
  }
  status load(std::span<const std::byte> in) {
    auto dec = open_state(in, columns());
    if (!dec) return dec.error();
    std::vector<std::string> ids;
    std::vector<uint32_t> ints;
    std::vector<uint64_t> events, bytes;
    if (status st = dec->read_bytes(0, ids); !st) return st;
    if (status st = dec->read_u32(1, ints); !st) return st;
    if (status st = dec->read_u64(2, events); !st) return st;
    if (status st = dec->read_u64(3, bytes); !st) return st;
    streams.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i)
      streams[std::move(ids[i])] = stream_totals{events[i], bytes[i], ints[i] != 0};
    return {};
  }
};

// SIGINT/SIGTERM during a replay: stop cleanly (and checkpoint, if asked).
replay_cancel* g_replay_cancel = nullptr;
extern "C" void on_replay_signal(int) {
  if (g_replay_cancel) g_replay_cancel->cancel();
}

// "\r[#####-----]  45.2%  12.3 M events  3.4 M events/s" on a terminal;
// a plain line every few seconds otherwise (logs, pipes).
class progress_printer {
 public:
  progress_printer() : tty_(::isatty(STDERR_FILENO) == 1) {}
  void operator()(const replay_progress& p) {
    const double span = static_cast<double>(p.to.value - p.from.value);
    const double done = span > 0 ? static_cast<double>(p.reached.value - p.from.value) / span : 1.0;
    const double rate = p.seconds > 0 ? static_cast<double>(p.events_applied) / p.seconds : 0;
    if (tty_) {
      char bar[31];
      const int fill = static_cast<int>(done * 30);
      for (int i = 0; i < 30; ++i) bar[i] = i < fill ? '#' : '-';
      bar[30] = 0;
      std::fprintf(stderr, "\r[%s] %5.1f%%  %.2f M events  %.2f M events/s ", bar, 100 * done,
                   static_cast<double>(p.events_applied) / 1e6, rate / 1e6);
      dirty_ = true;
    } else if (p.seconds - last_ >= 2.0) {
      last_ = p.seconds;
      std::fprintf(stderr, "varve: replay at position %" PRIu64 " of %" PRIu64 " (%.1f%%), %" PRIu64
                           " events, %.0f events/s\n",
                   p.reached.value, p.to.value, 100 * done, p.events_applied, rate);
    }
  }
  void finish() {
    if (dirty_) std::fprintf(stderr, "\n");
  }

 private:
  bool tty_;
  bool dirty_ = false;
  double last_ = 0;
};

int cmd_replay(const replay_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  uint64_t threads = 0, partitions = 0, from = 0, to = UINT64_MAX, every = 0, top = 20;
  if (auto rc = parse_flag(a.threads, "--threads", threads)) return *rc;
  if (auto rc = parse_flag(a.partitions, "--partitions", partitions)) return *rc;
  if (auto rc = parse_flag(a.from_position, "--from-position", from)) return *rc;
  if (auto rc = parse_flag(a.to_position, "--to-position", to)) return *rc;
  if (auto rc = parse_flag(a.checkpoint_every, "--checkpoint-every", every)) return *rc;
  if (auto rc = parse_flag(a.top, "--top", top)) return *rc;
  if (a.threads && (threads == 0 || threads > 1024)) return usage_error("--threads: 1 to 1024");
  if (a.partitions && (partitions == 0 || partitions > (1u << 20)))
    return usage_error("--partitions: 1 to 1048576");
  if (a.to_position && a.until) return usage_error("--to-position and --until exclude each other");
  if ((a.resume || a.checkpoint_every) && !a.checkpoint)
    return usage_error("--resume and --checkpoint-every need --checkpoint NAME");
  if (a.checkpoint && (a.checkpoint->empty() || a.checkpoint->find('/') != std::string::npos))
    return usage_error("--checkpoint: a name, not a path (it is kept in DIR/projections/)");
  std::optional<uint64_t> until;
  if (a.until) {
    until = parse_time(*a.until);
    if (!until)
      return usage_error("--until: \"" + *a.until +
                         "\" is not a time (2026-11-22T10:00:00Z, or nanoseconds since the epoch)");
  }
  io_backend io = io_backend::automatic;
  if (a.io) {
    auto b = parse_io_backend(*a.io);
    if (!b) return usage_error("--io: \"" + *a.io + "\" is not one of auto, uring, mmap, pread");
    io = *b;
  }
  event_filter filter;
  for (const auto& t : a.types) {
    auto v = parse_u64(t);
    if (!v || *v > UINT32_MAX) return usage_error("--type: \"" + t + "\" is not an event type number");
    filter.types.push_back(static_cast<uint32_t>(*v));
  }
  filter.stream_prefixes = a.categories;
  filter.streams = a.streams;

  auto opened = event_log::open_read_only(a.dir);
  if (!opened) return fail(opened.error());
  const event_log& log = **opened;

  replay_cancel cancel;
  g_replay_cancel = &cancel;
  struct sigaction sa {};
  sa.sa_handler = on_replay_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  progress_printer progress;
  replay r(log);
  r.from(position{from}).partitions(static_cast<uint32_t>(partitions))
      .threads(static_cast<uint32_t>(threads)).io(io).filter(filter).cancel_with(cancel)
      .on_progress([&progress](const replay_progress& p) { progress(p); });
  if (a.to_position) r.to(position{to});
  if (until) r.until(*until);
  std::optional<checkpoint_store> store;
  if (a.checkpoint) {
    store.emplace(a.dir + "/projections", *a.checkpoint);
    r.checkpoint(*store, every).resume(a.resume);
  }

  auto report = [&](const detail::replay_summary& s, nlohmann::ordered_json result) {
    progress.finish();
    for (const status& w : s.warnings)
      std::fprintf(stderr, "varve: warning: skipped a damaged checkpoint: %s\n", w.to_string().c_str());
    const double rate = s.seconds > 0 ? static_cast<double>(s.events_applied) / s.seconds : 0;
    if (a.json) {
      nlohmann::ordered_json j;
      j["projection"] = a.projection;
      j["from"] = s.from.value;
      j["to"] = s.to.value;
      j["reached"] = s.reached.value;
      j["events"] = s.events_applied;
      j["events_filtered_out"] = s.events_skipped;
      j["segments_skipped"] = s.segments_skipped;
      j["bytes"] = s.bytes_read;
      j["seconds"] = s.seconds;
      j["events_per_second"] = rate;
      j["threads"] = s.threads;
      j["partitions"] = s.partitions;
      j["io"] = to_string(s.io);
      j["checkpoints"] = s.checkpoints;
      j["warnings"] = nlohmann::ordered_json::array();
      for (const status& w : s.warnings) j["warnings"].push_back(w.to_string());
      j["error"] = s.error.ok() ? nlohmann::ordered_json() : nlohmann::ordered_json(s.error.to_string());
      j["result"] = std::move(result);
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::fprintf(stderr,
                   "varve: replayed %" PRIu64 " events (%s) in %.3f s: %.0f events/s, %u threads, "
                   "%u partitions, io %s%s\n",
                   s.events_applied, human_bytes(s.bytes_read).c_str(), s.seconds, rate, s.threads,
                   s.partitions, to_string(s.io),
                   s.segments_skipped ? (", " + std::to_string(s.segments_skipped) +
                                         " segments skipped by the filter").c_str()
                                      : "");
    }
    if (s.error.ok()) return kExitOk;
    std::fprintf(stderr, "varve: replay stopped at position %" PRIu64 ": %s\n", s.reached.value,
                 s.error.to_string().c_str());
    return s.error.code() == errc::invalid_argument ? kExitUsage : kExitError;
  };

  type_names names(a.dir);
  if (a.projection == "count-by-type") {
    auto res = r.run([](uint32_t) { return count_by_type{}; });
    std::map<uint32_t, uint64_t> total;
    for (const auto& p : res.states)
      for (const auto& [t, n] : p.counts()) total[t] += n;
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const auto& [t, n] : total) {
      std::string name(names.json_for(t));
      if (!name.empty() && name[0] == '"') name = nlohmann::json::parse(name).get<std::string>();
      j[name] = n;
      if (!a.json) std::printf("%-24s %" PRIu64 "\n", name.c_str(), n);
    }
    return report(res, std::move(j));
  }
  auto res = r.run([](uint32_t) { return bytes_by_stream{}; });
  std::vector<std::pair<const std::string*, const stream_totals*>> all;
  uint64_t total_bytes = 0;
  for (const auto& p : res.states)
    for (const auto& [k, t] : p.streams) {
      all.emplace_back(&k, &t);
      total_bytes += t.bytes;
    }
  std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
    return x.second->bytes != y.second->bytes ? x.second->bytes > y.second->bytes : *x.first < *y.first;
  });
  auto show = [](const std::string& k, bool is_int) {
    if (is_int && k.size() == 8) {
      uint64_t v = 0;
      for (char c : k) v = (v << 8) | static_cast<uint8_t>(c);
      return std::to_string(v);
    }
    return k;
  };
  nlohmann::ordered_json j;
  j["streams"] = all.size();
  j["payload_bytes"] = total_bytes;
  j["top"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < all.size() && i < top; ++i) {
    nlohmann::ordered_json s;
    s["stream"] = show(*all[i].first, all[i].second->is_integer);
    s["events"] = all[i].second->events;
    s["bytes"] = all[i].second->bytes;
    j["top"].push_back(std::move(s));
    if (!a.json)
      std::printf("%-40s %12" PRIu64 " bytes %10" PRIu64 " events\n",
                  nlohmann::json(show(*all[i].first, all[i].second->is_integer))
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str(),
                  all[i].second->bytes, all[i].second->events);
  }
  if (!a.json)
    std::printf("%zu streams, %" PRIu64 " payload bytes\n", all.size(), total_bytes);
  return report(res, std::move(j));
}

// --- tail ------------------------------------------------------------------

struct tail_args {
  std::string dir;
  std::optional<std::string> from_position;
  std::optional<std::string> stream;
  std::optional<std::string> category;
  std::optional<std::string> name;
  std::optional<std::string> limit;
};

// SIGINT/SIGTERM: wake the parked subscription; the loop then flushes what it
// printed, saves a named position and exits 0.
subscription* g_tail_sub = nullptr;
extern "C" void on_tail_signal(int) {
  if (g_tail_sub) g_tail_sub->cancel();  // async-signal-safe
}

int cmd_tail(const tail_args& a) {
  using namespace std::chrono_literals;
  if (auto rc = check_dir(a.dir)) return *rc;
  if (a.stream && a.category) return usage_error("--stream and --category exclude each other");
  position from = subscription::end();
  if (auto rc = parse_flag(a.from_position, "--from-position", from.value, "a position")) return *rc;
  uint64_t limit = UINT64_MAX;
  if (auto rc = parse_flag(a.limit, "--limit", limit)) return *rc;
  event_filter filter;
  if (a.stream) {
    if (a.stream->empty() || a.stream->size() > kMaxStreamIdBytes)
      return usage_error("--stream: a stream id has 1 to 255 bytes");
    filter.streams.push_back(*a.stream);
  }
  if (a.category) {
    if (a.category->empty()) return usage_error("--category: the prefix is empty");
    filter.stream_prefixes.push_back(*a.category);
  }
  subscription_options opts;
  if (a.name) {
    if (!subscription_store::valid_name(*a.name))
      return usage_error("--name: \"" + *a.name + "\": use 1 to 100 of A-Z a-z 0-9 . _ - (not starting with '.')");
    opts.name = *a.name;
  }

  auto opened = event_log::open_read_only(a.dir);
  if (!opened) return fail(opened.error());
  const event_log& log = **opened;
  auto sub = subscription::open(log, from, std::move(filter), opts);
  if (!sub) {
    if (sub.error().code() == errc::invalid_argument && a.from_position)
      return usage_error("--from-position " + *a.from_position + ": " + sub.error().to_string());
    return fail(sub.error());
  }
  type_names names(a.dir);

  g_tail_sub = &sub.value();
  struct sigaction sa {};
  sa.sa_handler = on_tail_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  // A named tail saves its position after output is written (so a crash
  // repeats lines rather than losing them), at most about once a second
  // while events flow (each save is an fsync), and at exit.
  auto last_save = std::chrono::steady_clock::now();
  auto save = [&](bool now) -> status {
    if (!a.name) return {};
    if (!now && std::chrono::steady_clock::now() - last_save < 1s) return {};
    last_save = std::chrono::steady_clock::now();
    if (status r = sub->ack(sub->where()); !r) return r;
    return sub->commit();
  };

  ndjson_writer out(STDOUT_FILENO);
  event_view e;
  status failure;
  uint64_t n = 0;
  while (n < limit) {
    // Output waits only while events keep coming: caught up, it goes out.
    auto got = sub->next(e, out.buffered() ? 0ns : std::chrono::nanoseconds(1s));
    if (!got) {
      if (got.error().code() != errc::cancelled) failure = got.error();
      break;
    }
    if (!*got) {
      if (status f = out.flush(); !f) break;
      if (status r = save(false); !r) {
        failure = r;
        break;
      }
      continue;
    }
    write_event(out, e, names.json_for(e.type));
    if (!out.error().ok()) break;
    ++n;
  }
  g_tail_sub = nullptr;
  status flushed = out.flush();
  if (flushed && failure.ok()) {
    if (status r = save(true); !r) failure = r;
  }
  if (!failure.ok()) return fail(failure);
  if (!flushed) return fail(flushed);
  return kExitOk;
}

// --- snapshot --------------------------------------------------------------

struct snapshot_args {
  std::string dir;
  std::optional<std::string> stream, stream_u64, version, schema;
  bool json = false;
};

// --stream S | --stream-u64 N into an id; `bytes` owns a string id's bytes.
std::optional<int> snapshot_stream(const snapshot_args& a, std::string& bytes, std::optional<stream_id>& id) {
  if (a.stream && a.stream_u64) return usage_error("--stream and --stream-u64 exclude each other");
  if (a.stream_u64) {
    auto n = parse_u64(*a.stream_u64);
    if (!n) return usage_error("--stream-u64: \"" + *a.stream_u64 + "\" is not a non-negative integer");
    id = stream_id::from_u64(*n);
  } else if (a.stream) {
    bytes = *a.stream;
    if (bytes.empty() || bytes.size() > kMaxStreamIdBytes)
      return usage_error("--stream: a stream id has 1 to 255 bytes");
    id = stream_id(std::string_view(bytes));
  }
  return std::nullopt;
}

int cmd_snapshot_verify(const snapshot_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  auto rep = verify_snapshots(a.dir);
  if (!rep) return fail(rep.error());
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
    for (const status& p : r.problems) std::fprintf(stderr, "varve: %s\n", p.to_string().c_str());
  }
  return intact ? kExitOk : kExitCorrupt;
}

int cmd_snapshot_ls(const snapshot_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  std::string bytes;
  std::optional<stream_id> id;
  if (auto rc = snapshot_stream(a, bytes, id)) return *rc;
  auto store = snapshot_store::open_read_only(a.dir);
  if (!store) return fail(store.error());
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
  std::string bytes;
  std::optional<stream_id> id;
  if (auto rc = snapshot_stream(a, bytes, id)) return *rc;
  if (!id) return usage_error("snapshot save needs --stream or --stream-u64");
  auto v = parse_u64(a.version.value_or(""));
  if (!v || *v == 0) return usage_error("--version: a stream version from 1");
  uint64_t schema = 1;
  if (a.schema) {
    auto n = parse_u64(*a.schema);
    if (!n || *n > UINT32_MAX) return usage_error("--schema: \"" + *a.schema + "\" is not a u32");
    schema = *n;
  }
  std::string body;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(status(errc::io_error, std::string("stdin: ") + std::strerror(errno)));
    if (n == 0) break;
    body.append(buf, static_cast<size_t>(n));
  }
  auto log = event_log::open_read_only(a.dir);
  if (!log) return fail(log.error());
  auto store = snapshot_store::open(*log.value());
  if (!store) return fail(store.error());
  status s = store.value()->save(*id, *v, static_cast<uint32_t>(schema), std::as_bytes(std::span(body)));
  if (!s) return s.code() == errc::invalid_argument ? usage_error(s.to_string()) : fail(s);
  std::printf("saved %zu bytes at version %" PRIu64 "\n", body.size(), *v);
  return kExitOk;
}

int run(int argc, char** argv) {
  CLI::App app{"varve: create, feed, export and check a varve event log", "varve"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "varve 0.1.0");
  app.footer(
      "Exit codes: 0 done; 1 the log could not be used or an input line was refused; "
      "2 a malformed command line (and for verify: the log is not intact); "
      "3 append stopped on a wrong expected_version.");

  create_args create;
  auto* c = app.add_subcommand("create", "Create an empty log in DIR");
  c->add_option("DIR", create.dir, "Log directory (created if absent)")->required();
  c->add_option("--segment-size", create.segment_size,
                "Segment capacity: a power of two from 64K to 1G (suffixes K, M, G); default 64M");

  append_args append;
  auto* ap = app.add_subcommand(
      "append",
      "Append NDJSON events from stdin, one per line: {\"stream\":..,\"type\":..,\"data\":..} "
      "(optional: expected_version, schema_version, event_id, correlation_id, causation_id, "
      "timestamp, data_base64), or a batch "
      "{\"stream\":..,\"expected_version\":..,\"events\":[..]}. "
      "Prints one ack per line.");
  ap->add_option("DIR", append.dir, "Log directory")->required();
  ap->add_option("--durability", append.durability,
                 "none | group | sync (acks wait for durability)")
      ->check(CLI::IsMember({"none", "group", "sync"}));
  ap->add_option("--on-conflict", append.on_conflict,
                 "On a wrong expected_version: fail (stop there, exit 3) or skip the line "
                 "(reported on stderr, exit 0)")
      ->check(CLI::IsMember({"fail", "skip"}));
  ap->add_flag("--create", append.create, "Create the log if DIR holds none");
  ap->add_option("--segment-size", append.segment_size,
                 "Segment capacity when --create creates the log");

  read_args read;
  auto* rd = app.add_subcommand("read", "Print events as NDJSON");
  rd->add_option("DIR", read.dir, "Log directory")->required();
  rd->add_option("--from-position", read.from_position, "Start at this record position");
  rd->add_option("--since", read.since,
                 "Start at the first event at or after this time (2026-11-22T10:00:00Z, or ns "
                 "since the epoch), through the time index");
  rd->add_option("--limit", read.limit, "Print at most N events");
  rd->add_option("--stream", read.stream, "Read only this stream, in version order");
  rd->add_option("--stream-u64", read.stream_u64, "Read only this integer stream id");
  rd->add_option("--from-version", read.from_version,
                 "With --stream: start at this version (default 1; backward: the newest)");
  rd->add_flag("--backward", read.backward, "With --stream: newest first");

  index_args index;
  auto* ix = app.add_subcommand("index", "The per-aggregate index: verify it against the log, or rebuild it");
  ix->add_option("ACTION", index.action, "verify | rebuild")
      ->required()
      ->check(CLI::IsMember({"verify", "rebuild"}));
  ix->add_option("DIR", index.dir, "Log directory")->required();
  ix->add_flag("--json", index.json, "Print the report as JSON");

  verify_args verify;
  auto* vf = app.add_subcommand("verify", "Check every record and footer; exit 2 if not intact");
  vf->add_option("DIR", verify.dir, "Log directory")->required();
  vf->add_flag("--json", verify.json, "Print the report as JSON");

  stat_args stat;
  auto* st = app.add_subcommand("stat", "Print segment, event and position figures");
  st->add_option("DIR", stat.dir, "Log directory")->required();
  st->add_flag("--json", stat.json, "Print as JSON");

  tail_args tail;
  auto* tl = app.add_subcommand(
      "tail", "Print events as NDJSON (like read) and keep following the log live until "
              "Ctrl-C / SIGTERM (exit 0) or --limit");
  tl->add_option("DIR", tail.dir, "Log directory")->required();
  tl->add_option("--from-position", tail.from_position,
                 "Start at this record position (0 = the beginning; default: the end, live "
                 "events only)");
  tl->add_option("--stream", tail.stream, "Only this stream");
  tl->add_option("--category", tail.category, "Only streams whose id starts with this prefix, e.g. order-");
  tl->add_option("--name", tail.name,
                 "A named subscription: resume where the last run with this name stopped "
                 "(DIR/subscriptions/NAME.pos), and save the position as it goes");
  tl->add_option("--limit", tail.limit, "Stop after N events");

  ship_args ship_a;
  auto* sh = add_ship_command(app, ship_a);

  replay_args replay_a;
  auto* rp = app.add_subcommand(
      "replay", "Rebuild a projection from the log on several threads (read-only; works beside a live writer)");
  rp->add_option("DIR", replay_a.dir, "Log directory")->required();
  rp->add_option("--projection", replay_a.projection, "count-by-type | bytes-by-stream")
      ->required()
      ->check(CLI::IsMember({"count-by-type", "bytes-by-stream"}));
  rp->add_option("--threads", replay_a.threads, "Threads, the calling one included (default: all cores)");
  rp->add_option("--partitions", replay_a.partitions,
                 "Partitions (streams are hashed onto them; default 4 x threads)");
  rp->add_option("--from-position", replay_a.from_position, "Start at this record position");
  rp->add_option("--to-position", replay_a.to_position, "Stop before this position");
  rp->add_option("--until", replay_a.until,
                 "State as of a time: stop at the first event at or after it "
                 "(2026-11-22T10:00:00Z, or ns since the epoch)");
  rp->add_option("--io", replay_a.io, "auto | uring | mmap | pread (default: VARVE_IO, else auto)");
  rp->add_option("--type", replay_a.types, "Only events of this type number (repeatable)");
  rp->add_option("--category", replay_a.categories,
                 "Only streams whose id starts with this prefix, e.g. order- (repeatable)");
  rp->add_option("--stream", replay_a.streams, "Only this stream (repeatable)");
  rp->add_option("--checkpoint,--snapshot", replay_a.checkpoint,
                 "Save the projection's state with its position (a state snapshot) in "
                 "DIR/projections/NAME.<generation>.ckpt; the newest 2 are kept");
  rp->add_option("--checkpoint-every,--snapshot-every", replay_a.checkpoint_every,
                 "With --checkpoint: also every N events (default: only at the end or on Ctrl-C)");
  rp->add_flag("--resume,--from-snapshot", replay_a.resume,
               "With --checkpoint: continue from the newest valid state snapshot (a damaged "
               "one is reported and skipped)");
  rp->add_option("--top", replay_a.top, "bytes-by-stream: how many streams to list (default 20)");
  rp->add_flag("--json", replay_a.json, "Print the figures and the result as one JSON object");

  snapshot_args snap_a;
  auto* sn = app.add_subcommand("snapshot", "Aggregate snapshots (DIR/snapshots): verify, ls, save");
  sn->require_subcommand(1);
  auto* snv = sn->add_subcommand("verify", "Check every snapshot's header and body; exit 2 if not intact");
  snv->add_option("DIR", snap_a.dir, "Log directory")->required();
  snv->add_flag("--json", snap_a.json, "Print the report as JSON");
  auto* snl = sn->add_subcommand("ls", "List snapshots: stream, version, schema, size, file, offset");
  snl->add_option("DIR", snap_a.dir, "Log directory")->required();
  snl->add_option("--stream", snap_a.stream, "Only this stream");
  snl->add_option("--stream-u64", snap_a.stream_u64, "Only this integer stream id");
  snl->add_flag("--json", snap_a.json, "One JSON object per snapshot");
  auto* sns = sn->add_subcommand("save", "Save stdin's bytes as a snapshot of a stream at a version");
  sns->add_option("DIR", snap_a.dir, "Log directory")->required();
  sns->add_option("--stream", snap_a.stream, "The stream");
  sns->add_option("--stream-u64", snap_a.stream_u64, "An integer stream id");
  sns->add_option("--version", snap_a.version, "The stream version the bytes reflect")->required();
  sns->add_option("--schema", snap_a.schema, "The bytes' schema version (default 1)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    return usage_error(e.what());
  }

  if (*c) return cmd_create(create);
  if (*ap) return cmd_append(append);
  if (*rd) return cmd_read(read);
  if (*vf) return cmd_verify(verify);
  if (*st) return cmd_stat(stat);
  if (*ix) return cmd_index(index);
  if (*rp) return cmd_replay(replay_a);
  if (*tl) return cmd_tail(tail);
  if (*sh) return cmd_ship(ship_a);
  if (*snv) return cmd_snapshot_verify(snap_a);
  if (*snl) return cmd_snapshot_ls(snap_a);
  if (*sns) return cmd_snapshot_save(snap_a);
  return usage_error("no command given");
}

}  // namespace

int main(int argc, char** argv) {
  // The library returns errors as values; anything thrown here is a bug or
  // out-of-memory, and still deserves one line rather than std::terminate.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "varve: internal error: %s\n", e.what());
    return kExitError;
  }
}
