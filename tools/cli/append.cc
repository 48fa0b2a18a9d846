// `varve append DIR`: NDJSON lines from stdin into the log, one ack per line
// (or the last only, or none).
#include "tools/cli/common.h"

#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <span>
#include <vector>

#include "base/record_format.h"
#include "base/segment_format.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace varve::tools;
using namespace std::chrono_literals;

// Acks wait for durability before they are written, so they are buffered by
// hand; past this much the appender stops to wait and write them out.
constexpr size_t kAckFlushBytes = 256 << 10;

enum class ack_mode : uint8_t { every, last, none };

struct append_args {
  std::string dir;
  std::string durability = "none";
  std::string on_conflict = "fail";
  std::optional<std::string> acks;
  bool quiet = false;
  bool create = false;
  bool json = false;
  std::optional<uint64_t> segment_size;
  std::optional<uint64_t> max_depth;
  std::optional<uint64_t> max_line_bytes;
};

// What one event's payload may be in `log`: a segment less its header, one
// record header and the end-of-segment marker (the stream id aside).
uint64_t max_event_bytes(const event_log& log) {
  return log.stats().segment_bytes - segment_format::kHeaderSize - record::kHeaderSize -
         record::kSegmentEndSize;
}

int cmd_append(const append_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  log_options opts = cli_log_options();
  opts.mode = a.durability == "sync"    ? durability::sync
              : a.durability == "group" ? durability::group
                                        : durability::none;
  if (a.segment_size) {
    if (!a.create) return usage_error("--segment-size only applies with --create");
    opts.segment_bytes = *a.segment_size;
  }
  const bool skip_conflicts = a.on_conflict == "skip";
  if (a.quiet && a.acks && *a.acks != "none") return usage_error("--quiet is --acks none: not with --acks " + *a.acks);
  const std::string acks_text = a.quiet ? "none" : a.acks.value_or("every");
  const ack_mode acks_mode = acks_text == "none" ? ack_mode::none
                             : acks_text == "last" ? ack_mode::last
                                                   : ack_mode::every;
  parse_limits limits;
  if (a.max_depth) {
    if (*a.max_depth < 1 || *a.max_depth > kMaxDepthLimit)
      return usage_error("--max-depth: 1 to " + std::to_string(kMaxDepthLimit));
    limits.max_depth = static_cast<unsigned>(*a.max_depth);
  }
  const uint64_t max_line = a.max_line_bytes.value_or(kDefaultMaxLineBytes);
  if (max_line == 0 || max_line > SIZE_MAX / 2) return usage_error("--max-line-bytes: from 1 byte");

  auto opened = a.create ? event_log::open_or_create(a.dir, opts) : event_log::open(a.dir, opts);
  if (!opened) {
    const status& e = opened.error();
    if (e.code() == errc::not_found || e.code() == errc::not_a_log)
      return fail_open(status(e.code(), e.message() + " (`varve create` makes a log, or pass --create)"), a.dir);
    return fail_open(e, a.dir);
  }
  event_log& log = **opened;
  auto types = type_registry::open(a.dir);
  if (!types) return fail(types.error());

  line_reader in(STDIN_FILENO, 1 << 20, max_line);
  ndjson_writer acks(STDOUT_FILENO, 1 << 20, ndjson_writer::flush_policy::manual);
  position last_end;
  bool appended = false;
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
  // At the end, and before giving up on a line: whatever the acks mode, what
  // was appended is durable as the mode promises before the exit says so, and
  // the acks of the lines before a failure still go out.
  auto settle = [&]() -> status {
    if (appended && opts.mode != durability::none) {
      if (status st = log.wait_durable(last_end); !st) return st;
    }
    return acks.flush();
  };
  auto stop = [&](uint64_t line, const std::string& msg, std::string_view code, int rc) {
    if (status st = settle(); !st) fail(st);
    return fail_line(line, msg, code, rc);
  };

  // Progress on a terminal, for long appends: not while acks share it.
  progress_line progress(1s, 250ms, acks_mode == ack_mode::none || ::isatty(STDOUT_FILENO) != 1);
  const auto started = std::chrono::steady_clock::now();
  uint64_t events_appended = 0;
  auto show_progress = [&](uint64_t lines) {
    if (!progress.due()) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    char text[160];
    std::snprintf(text, sizeof text, "varve: append: %" PRIu64 " lines, %" PRIu64 " events, %.0f events/s",
                  lines, events_appended, s > 0 ? static_cast<double>(events_appended) / s : 0.0);
    progress.show(text);
  };

  uint64_t line_no = 0;
  uint64_t skipped = 0;
  std::vector<event_data> events;
  std::vector<metadata_entry> metadata;  // the line's, in event order (spans point into it)
  // --on-conflict skip: the line is reported and left out.
  auto skip_line = [&](const std::string& msg) {
    warn(msg + " (skipped)", "wrong_expected_version", line_no);
    ++skipped;
  };
  // An appended line: counted; true when its ack is to be written now
  // (with --acks last, the previous line's ack is dropped first).
  auto acked = [&](position end) {
    last_end = end;
    appended = true;
    events_appended += events.size();
    if (acks_mode == ack_mode::last) acks.discard();
    return acks_mode != ack_mode::none;
  };
  append_request req;
  std::vector<stream_batch> batches;     // a multi-stream line
  std::vector<append_result> per_stream;
  for (;;) {
    if (in.must_read()) show_progress(line_no);
    if (acks_mode == ack_mode::every && (in.must_read() || acks.buffered() >= kAckFlushBytes)) {
      if (status st = flush_acks(); !st) return fail(st);
    }
    std::string_view line;
    auto got = in.next(line);
    if (!got) {
      if (got.error().code() != errc::too_large) {
        if (status st = settle(); !st) fail(st);
        return fail(got.error());
      }
      return stop(line_no + 1,
                  got.error().message() + " (--max-line-bytes; the largest event a segment of this log holds is " +
                      human_bytes(max_event_bytes(log)) + ")",
                  "too_large", kExitError);
    }
    if (!*got) break;
    ++line_no;
    if ((line_no & 255) == 0) show_progress(line_no);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;

    if (status st = parse_append_line(line, req, limits); !st)
      return stop(line_no, st.message(), "invalid_argument", kExitError);

    events.clear();
    metadata.clear();
    {
      // Sized before any span into it is taken.
      size_t n = 0;
      auto count = [&](const std::vector<input_event>& in) {
        for (const input_event& ev : in) n += ev.metadata.size();
      };
      if (req.is_multi) {
        for (const stream_part& p : req.parts) count(p.events);
      } else {
        count(req.events);
      }
      metadata.reserve(n);
    }
    status bad_type;
    auto add_events = [&](const std::vector<input_event>& in) {
      for (const input_event& ev : in) {
        event_data d;
        if (ev.type_id) {
          d.type = *ev.type_id;
        } else {
          auto id = types->id_for(ev.type_name);
          if (!id) {
            bad_type = id.error();
            return;
          }
          d.type = *id;
        }
        d.schema_version = ev.schema_version;
        // A version newer than DIR/types records for the type (varve types
        // --set) would reach readers that do not know it.
        if (status v = types->check_append(d.type, d.schema_version); !v) {
          bad_type = v;
          return;
        }
        d.payload = event_data::bytes(ev.payload);
        d.content = ev.content;
        d.timestamp_ns = ev.timestamp_ns;
        d.event_id = ev.event_id ? &*ev.event_id : nullptr;
        d.correlation_id = ev.correlation_id ? &*ev.correlation_id : nullptr;
        d.causation_id = ev.causation_id ? &*ev.causation_id : nullptr;
        const size_t first = metadata.size();
        for (const auto& [k, v] : ev.metadata) metadata.push_back({k, v});
        d.metadata = std::span<const metadata_entry>(metadata).subspan(first, ev.metadata.size());
        events.push_back(d);
      }
    };
    if (req.is_multi) {
      for (const stream_part& p : req.parts) add_events(p.events);
    } else {
      add_events(req.events);
    }
    if (!bad_type.ok()) return stop(line_no, bad_type.to_string(), errc_id(bad_type.code()), kExitError);

    if (req.is_multi) {
      // One atomic append over the line's streams (the events vector is
      // complete now, so the spans into it stay valid).
      batches.clear();
      size_t at = 0;
      for (const stream_part& p : req.parts) {
        batches.push_back({p.id(), p.expected, std::span<const event_data>(events).subspan(at, p.events.size())});
        at += p.events.size();
      }
      per_stream.resize(req.parts.size());
      auto m = log.append(std::span<const stream_batch>(batches), std::span<append_result>(per_stream));
      if (!m) {
        const status& err = m.error();
        if (err.code() != errc::wrong_expected_version)
          return stop(line_no, err.to_string(), errc_id(err.code()), exit_code_for(err));
        // The message names the stream, its expectation and its version.
        if (!skip_conflicts) return stop(line_no, err.message(), "wrong_expected_version", kExitConflict);
        skip_line(err.message());
        continue;
      }
      if (acked(m->end)) write_multi_ack(acks, req, *m, per_stream);
      continue;
    }
    auto r = req.is_batch ? log.append(req.id(), req.expected, std::span<const event_data>(events))
                          : log.append(req.id(), req.expected, events.front());
    if (!r) {
      const status& err = r.error();
      if (err.code() != errc::wrong_expected_version) {
        return stop(line_no, err.to_string(), errc_id(err.code()), exit_code_for(err));
      }
      std::string msg = "wrong expected version for stream " + display_stream(req) + ": expected " +
                        describe_expected(req.expected) + ", actual " + std::to_string(err.actual_version());
      // An idempotent append's clash says which event id: keep that part.
      if (const size_t at = err.message().find("its event_id"); at != std::string::npos)
        msg += "; " + err.message().substr(at);
      else if (const size_t n = err.message().find("event_ids are already"); n != std::string::npos)
        msg += "; " + err.message().substr(err.message().rfind(':', n) + 2);
      if (!skip_conflicts) return stop(line_no, msg, "wrong_expected_version", kExitConflict);
      skip_line(msg);
      continue;
    }
    if (acked(r->end)) write_ack(acks, req, *r);
  }
  if (status st = settle(); !st) return fail(st);
  if (status st = log.close(); !st) return fail(st);
  progress.clear();
  if (skipped > 0) warn(std::to_string(skipped) + " line(s) skipped on version conflicts", "skipped");
  return kExitOk;
}

}  // namespace

void add_append(CLI::App& app, command_list& out) {
  auto a = std::make_shared<append_args>();
  auto* ap = app.add_subcommand(
      "append",
      "Append NDJSON events from stdin, one per line (see below); prints one ack per line");
  ap->add_option("DIR", a->dir, "Log directory")->required();
  ap->add_option("--durability", a->durability,
                 "none | group | sync (acks, and exit 0, wait for durability)")
      ->check(CLI::IsMember({"none", "group", "sync"}));
  ap->add_option("--on-conflict", a->on_conflict,
                 "On a wrong expected_version: fail (stop there, exit 3) or skip the line "
                 "(reported on stderr, exit 0)")
      ->check(CLI::IsMember({"fail", "skip"}));
  ap->add_option("--acks", a->acks,
                 "every (one ack per line, the default) | last (only the last line's, at the end) | none")
      ->check(CLI::IsMember({"every", "last", "none"}));
  ap->add_flag("--quiet,-q", a->quiet, "The same as --acks none");
  ap->add_flag("--create", a->create, "Create the log if DIR holds none");
  add_size(*ap, "--segment-size", a->segment_size, "Segment capacity when --create creates the log");
  add_uint(*ap, "--max-depth", a->max_depth,
           "Refuse a line whose data nests arrays/objects deeper than this (default 512, what "
           "`varve read` gives back as JSON; at most 4000)");
  add_size(*ap, "--max-line-bytes", a->max_line_bytes,
           "Refuse a line longer than this, before reading the rest of it (default 16M: parsing "
           "takes about 5x a line in memory); raise it for larger events, up to what a segment holds");
  add_json_flag(*ap, a->json, "Acks are JSON already");
  ap->footer(
      "Input, one JSON object per line:\n"
      "  {\"stream\":S,\"type\":T,\"data\":D}  S a string of 1-255 bytes or a non-negative integer; T an "
      "event type name (added to DIR/types on first use) or number; D any JSON, or \"data_base64\" "
      "for bytes.\n"
      "  Optional: \"expected_version\": a number N (the stream must be at version N), \"any\" (no "
      "check, the default), \"no_stream\" (the stream must not exist yet) or \"stream_exists\" (it "
      "must); \"schema_version\" (0-65535, default 1); \"timestamp\": nanoseconds since the epoch or "
      "ISO 8601 with a zone (\"2026-11-22T10:00:00.123Z\", \"...+01:00\"; default: now); "
      "\"event_id\", \"correlation_id\", \"causation_id\": UUIDs.\n"
      "  An atomic batch: {\"stream\":S,\"expected_version\":E,\"events\":[{\"type\":T,\"data\":D},...]}.\n"
      "  An atomic unit of work over several streams (all or nothing; each stream's expected_version is "
      "checked first, a stream with \"events\":[] is a check only): "
      "{\"streams\":[{\"stream\":S,\"expected_version\":E,\"events\":[...]},...]}; its ack is "
      "{\"streams\":[<one ack per stream>],\"position\":P,\"end\":E}.\n"
      "Each line appended is acknowledged on stdout with "
      "{\"stream\":S,\"first_version\":N,\"last_version\":M,\"position\":P}. A refused line stops the "
      "append (exit 1, or 3 for a conflict) naming it; the lines before it stay appended and acked. "
      "On a terminal, a progress line (lines, events/s) shows on stderr during long appends, unless "
      "acks go to the same terminal.");
  out.push_back({ap, [a] { return cmd_append(*a); }});
}

}  // namespace varve::cli
