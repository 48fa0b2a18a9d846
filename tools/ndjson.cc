#include "tools/ndjson.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <nlohmann/json.hpp>

#include "tools/base64.h"
#include "tools/json_check.h"
#include "tools/time_text.h"

namespace varve::tools {
namespace {

// ordered_json keeps the payload's keys in the order they were written, so
// `varve read` gives back what was appended (whitespace aside).
using json = nlohmann::ordered_json;

status bad(std::string msg) { return status(errc::invalid_argument, std::move(msg)); }

std::string json_quote(std::string_view key) { return json(std::string(key)).dump(); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Keys that `varve read` prints but `append` has no use for: accepting them
// lets `varve read A | varve append B` copy a log.
bool is_read_only_key(std::string_view key) {
  return key == "position" || key == "sequence" || key == "version" || key == "stored_schema_version";
}

status parse_uint(const json& v, std::string_view key, uint64_t max, uint64_t& out) {
  if (!v.is_number_unsigned() || v.get<uint64_t>() > max) {
    const std::string range = max == UINT64_MAX ? "a non-negative integer"
                                                : "an integer from 0 to " + std::to_string(max);
    return bad(json_quote(key) + " must be " + range + ", not " + v.dump());
  }
  out = v.get<uint64_t>();
  return {};
}

status parse_id(const json& v, std::string_view key, std::optional<id128>& out) {
  std::optional<id128> id;
  if (v.is_string()) id = parse_uuid(v.get_ref<const std::string&>());
  if (!id)
    return bad(json_quote(key) + " must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), not " +
               v.dump());
  out = id;
  return {};
}

status parse_expected(const json& v, expected_version& out) {
  if (v.is_number_unsigned()) {
    out = expected_version::exact(v.get<uint64_t>());
    return {};
  }
  const std::string* s = v.is_string() ? &v.get_ref<const std::string&>() : nullptr;
  if (s && *s == "any") {
    out = expected_version::any();
    return {};
  }
  if (s && *s == "no_stream") {
    out = expected_version::no_stream();
    return {};
  }
  if (s && *s == "stream_exists") {
    out = expected_version::stream_exists();
    return {};
  }
  return bad(
      "\"expected_version\" must be a version number or \"any\", \"no_stream\", "
      "\"stream_exists\", not " +
      v.dump());
}

std::string too_deep(std::string_view what, unsigned max_depth) {
  return std::string(what) + " arrays/objects deeper than --max-depth " + std::to_string(max_depth) +
         " allows";
}

// The per-event fields, shared by a single-event line and each element of a
// batch's "events". `top_level` says the caller handles "stream" and
// "expected_version" itself. `data_depth`, when set, is a bound the line as a
// whole did not show "data" to keep.
status parse_event(const json& obj, input_event& ev, bool top_level,
                   std::optional<unsigned> data_depth) {
  bool have_type = false;
  bool have_data = false;
  bool have_base64 = false;
  for (const auto& [key, v] : obj.items()) {
    status st;
    uint64_t n = 0;
    if (key == "type") {
      have_type = true;
      if (v.is_string() && !v.get_ref<const std::string&>().empty()) {
        ev.type_name = v.get_ref<const std::string&>();
      } else if (v.is_number_unsigned() && v.get<uint64_t>() <= UINT32_MAX) {
        ev.type_id = v.get<uint32_t>();
      } else {
        return bad("\"type\" must be a type name or a number, not " + v.dump());
      }
    } else if (key == "data") {
      have_data = true;
      ev.payload = v.dump();
      ev.content = content_type::json;
      if (data_depth && check_json(ev.payload, *data_depth) == json_verdict::too_deep)
        return bad(too_deep("\"data\" nests", *data_depth));
    } else if (key == "data_base64") {
      have_base64 = true;
      if (!v.is_string()) return bad("\"data_base64\" must be a string, not " + v.dump());
      auto decoded = base64_decode(v.get_ref<const std::string&>());
      if (!decoded) return bad("\"data_base64\": " + decoded.error().message());
      ev.payload = std::move(decoded.value());
      ev.content = content_type::binary;
    } else if (key == "schema_version") {
      if (!(st = parse_uint(v, key, UINT16_MAX, n))) return st;
      ev.schema_version = static_cast<uint16_t>(n);
    } else if (key == "timestamp") {
      // Nanoseconds since the epoch, as `varve read` prints them, or the
      // ISO 8601 text `--since` takes and `read --time-format iso` prints.
      std::optional<uint64_t> t;
      if (v.is_number_unsigned()) t = v.get<uint64_t>();
      else if (v.is_string()) t = parse_iso8601(v.get_ref<const std::string&>());
      if (!t)
        return bad("\"timestamp\" must be nanoseconds since the epoch or an ISO 8601 time with a zone "
                   "(\"2026-11-22T10:00:00.123Z\", \"...+01:00\"), not " + v.dump());
      ev.timestamp_ns = *t;
    } else if (key == "event_id") {
      if (!(st = parse_id(v, key, ev.event_id))) return st;
    } else if (key == "correlation_id") {
      if (!(st = parse_id(v, key, ev.correlation_id))) return st;
    } else if (key == "causation_id") {
      if (!(st = parse_id(v, key, ev.causation_id))) return st;
    } else if (key == "metadata") {
      // Bounds (entries, key and value sizes, reserved keys) are the
      // library's to check, at append: one rule for every caller.
      if (!v.is_object()) return bad("\"metadata\" must be an object of strings, not " + v.dump());
      for (const auto& [mk, mv] : v.items()) {
        if (!mv.is_string())
          return bad("\"metadata\": the value of " + json_quote(mk) + " must be a string, not " + mv.dump());
        ev.metadata.emplace_back(mk, mv.get_ref<const std::string&>());
      }
    } else if (key == "stream" || key == "expected_version") {
      if (!top_level) return bad(json_quote(key) + " belongs on the batch line, not in its events");
    } else if (!is_read_only_key(key)) {
      return bad("unknown key " + json_quote(key));
    }
  }
  if (!have_type) return bad("missing \"type\"");
  if (have_data && have_base64) return bad("both \"data\" and \"data_base64\"; give one");
  if (!have_data && !have_base64) return bad("missing \"data\" (or \"data_base64\")");
  return {};
}

// nlohmann's messages start with "[json.exception.parse_error.101] parse error
// at line 1, "; the line is ours to name, so keep only the column and the why.
std::string parse_error_text(const char* what) {
  std::string_view s = what;
  if (auto p = s.find("] "); p != std::string_view::npos) s.remove_prefix(p + 2);
  constexpr std::string_view kAtLine = "parse error at line 1, ";
  if (s.starts_with(kAtLine)) s.remove_prefix(kAtLine.size());
  return std::string(s);
}

// Levels above an event's "data": the line's object, a batch's "events"
// array and the event's object; a multi-stream line adds "streams" and the
// stream's object.
constexpr unsigned kEnvelopeDepth = 5;
static_assert(kMaxDepthLimit + kEnvelopeDepth <= kJsonDepthLimit);

// "stream" and "expected_version" of a plain line or of one part of a
// multi-stream line.
status parse_stream_and_expected(const json& j, stream_part& out) {
  auto it = j.find("stream");
  if (it == j.end()) return bad("missing \"stream\"");
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    if (s.empty() || s.size() > kMaxStreamIdBytes)
      return bad("\"stream\" must be 1 to " + std::to_string(kMaxStreamIdBytes) + " bytes, not " +
                 std::to_string(s.size()));
    out.stream = s;
  } else if (it->is_number_unsigned()) {
    out.stream_is_integer = true;
    out.stream_u64 = it->get<uint64_t>();
  } else {
    return bad("\"stream\" must be a string or a non-negative integer, not " + it->dump());
  }
  if (it = j.find("expected_version"); it != j.end()) {
    if (status st = parse_expected(*it, out.expected); !st) return st;
  }
  return {};
}

// {"streams":[{"stream":S,"expected_version":E,"events":[..]},..]}: one
// atomic append over several streams (a part with no events is a check).
status parse_multi(const json& j, const json& streams, append_request& out,
                   std::optional<unsigned> data_depth) {
  out.is_multi = true;
  for (const auto& [key, v] : j.items()) {
    if (key != "streams" && !is_read_only_key(key))
      return bad(json_quote(key) +
                 " is not allowed on a multi-stream line (it takes \"streams\"; each stream carries "
                 "\"stream\", \"expected_version\" and \"events\")");
  }
  if (!streams.is_array() || streams.empty())
    return bad("\"streams\" must be a non-empty array of {\"stream\",\"expected_version\",\"events\"}");
  size_t i = 0;
  for (const auto& p : streams) {
    const std::string where = "streams[" + std::to_string(i++) + "]: ";
    if (!p.is_object()) return bad(where + "not a JSON object");
    out.parts.emplace_back();
    stream_part& part = out.parts.back();
    for (const auto& [key, v] : p.items())
      if (key != "stream" && key != "expected_version" && key != "events")
        return bad(where + json_quote(key) + " is not allowed (a stream takes \"stream\", "
                           "\"expected_version\" and \"events\")");
    if (status st = parse_stream_and_expected(p, part); !st) return bad(where + st.message());
    auto ev = p.find("events");
    if (ev == p.end() || !ev->is_array())
      return bad(where + "\"events\" must be an array of events (empty: a version check only)");
    size_t k = 0;
    for (const auto& e : *ev) {
      const std::string at = where + "events[" + std::to_string(k++) + "]: ";
      if (!e.is_object()) return bad(at + "not a JSON object");
      part.events.emplace_back();
      if (status st = parse_event(e, part.events.back(), /*top_level=*/false, data_depth); !st)
        return bad(at + st.message());
    }
  }
  return {};
}

status parse_line(std::string_view line, append_request& out, const parse_limits& limits) {
  // nlohmann takes a NUL byte for the end of input and would accept
  // `{...}\0anything`; no JSON text holds a raw NUL (in a string it must be
  // escaped), so such a line is refused before it gets there.
  if (const void* nul = std::memchr(line.data(), '\0', line.size()))
    return bad("not valid JSON: a NUL byte at column " +
               std::to_string(static_cast<const char*>(nul) - line.data() + 1));
  // nlohmann parses and frees without recursing, but dump() (the payload, the
  // values quoted in messages) recurses once per level: data nested 100,000
  // deep overflowed the stack. The validator never recurses, so it bounds the
  // line before nlohmann sees it. Depth max+1 holds any line whose data keeps
  // the bound; a deeper line is refused past max+3, and in between each
  // event's data is measured once dumped (safe at that depth).
  const unsigned max_depth = std::min(limits.max_depth, kMaxDepthLimit);
  std::string_view body = line;
  if (body.starts_with("\xef\xbb\xbf")) body.remove_prefix(3);  // nlohmann skips a BOM
  json_verdict verdict = check_json(body, max_depth + 1);
  std::optional<unsigned> data_depth;
  if (verdict == json_verdict::too_deep) {
    verdict = check_json(body, max_depth + kEnvelopeDepth);
    if (verdict == json_verdict::too_deep) return bad(too_deep("the line nests", max_depth));
    data_depth = max_depth;
  }
  json j;
  try {
    j = json::parse(line.data(), line.data() + line.size());
  } catch (const json::parse_error& e) {
    return bad("not valid JSON: " + parse_error_text(e.what()));
  }
  // The two agree (the ndjson fuzzer checks it); were they ever not to, the
  // depth bound above would not hold for what nlohmann accepted.
  if (verdict != json_verdict::valid) return bad("not valid JSON");
  if (!j.is_object()) return bad("not a JSON object");

  auto it = j.find("streams");
  if (it != j.end()) return parse_multi(j, *it, out, data_depth);
  if (status st = parse_stream_and_expected(j, out); !st) return st;

  it = j.find("events");
  if (it == j.end()) {
    out.events.emplace_back();
    return parse_event(j, out.events.back(), /*top_level=*/true, data_depth);
  }

  out.is_batch = true;
  for (const auto& [key, v] : j.items()) {
    if (key != "stream" && key != "expected_version" && key != "events" && !is_read_only_key(key))
      return bad(json_quote(key) +
                 " is not allowed on a batch line (it takes \"stream\", \"expected_version\" "
                 "and \"events\"; each event carries its own fields)");
  }
  if (!it->is_array() || it->empty()) return bad("\"events\" must be a non-empty array of events");
  size_t i = 0;
  for (const auto& e : *it) {
    const std::string where = "events[" + std::to_string(i++) + "]: ";
    if (!e.is_object()) return bad(where + "not a JSON object");
    out.events.emplace_back();
    if (status st = parse_event(e, out.events.back(), /*top_level=*/false, data_depth); !st)
      return bad(where + st.message());
  }
  return {};
}

constexpr char kHex[] = "0123456789abcdef";

void write_stream(ndjson_writer& w, std::string_view bytes, bool is_integer) {
  if (is_integer && bytes.size() == 8) {
    uint64_t v = 0;
    for (char c : bytes) v = (v << 8) | static_cast<uint8_t>(c);
    w.u64(v);
  } else {
    w.str(bytes);
  }
}

}  // namespace

std::optional<id128> parse_uuid(std::string_view text) {
  if (text.size() != kUuidChars) return std::nullopt;
  id128 id;
  size_t b = 0;
  for (size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    const int hi = hex_value(text[i]);
    const int lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[b++] = static_cast<uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return id;
}

void format_uuid(const id128& id, char* out) {
  for (size_t i = 0; i < id.bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *out++ = '-';
    *out++ = kHex[id.bytes[i] >> 4];
    *out++ = kHex[id.bytes[i] & 15];
  }
}

status parse_append_line(std::string_view line, append_request& out, const parse_limits& limits) {
  out.stream.clear();
  out.stream_u64 = 0;
  out.stream_is_integer = false;
  out.expected = expected_version::any();
  out.is_batch = false;
  out.events.clear();
  out.is_multi = false;
  out.parts.clear();
  // Type errors from the DOM (a value of an unexpected kind slipping past a
  // check) must still be a rejected line, never an escaped exception.
  try {
    return parse_line(line, out, limits);
  } catch (const json::exception& e) {
    return bad(parse_error_text(e.what()));
  }
}

std::string describe_expected(expected_version e) {
  switch (e.which()) {
    case expected_version::kind::any: return "any";
    case expected_version::kind::no_stream: return "no_stream";
    case expected_version::kind::stream_exists: return "stream_exists";
    case expected_version::kind::exact: return std::to_string(e.version());
  }
  return "?";
}

// --- line_reader -----------------------------------------------------------

line_reader::line_reader(int fd, size_t chunk, size_t max_line)
    : fd_(fd), chunk_(chunk), max_line_(max_line), buf_(chunk) {}

status line_reader::too_long() {
  failed_ = status(errc::too_large, "longer than " + std::to_string(max_line_) + " bytes");
  return failed_;
}

// The line [from, stop), stop being its '\n' or the end of input, less a "\r".
result<bool> line_reader::hand_out(std::string_view& line, size_t from, size_t stop) {
  line = std::string_view(buf_.data() + from, stop - from);
  if (line.ends_with('\r')) line.remove_suffix(1);
  if (line.size() > max_line_) return too_long();
  return true;
}

result<bool> line_reader::next(std::string_view& line) {
  if (!failed_.ok()) return failed_;
  size_t scan = begin_;  // bytes before this hold no '\n'
  for (;;) {
    const char* base = buf_.data();
    if (const void* nl = std::memchr(base + scan, '\n', end_ - scan)) {
      const size_t stop = static_cast<const char*>(nl) - base;
      const size_t from = begin_;
      begin_ = stop + 1;
      return hand_out(line, from, stop);
    }
    if (eof_) {
      if (begin_ == end_) return false;
      const size_t from = begin_;
      begin_ = end_;
      return hand_out(line, from, end_);
    }
    // No end of line yet. Past max_line + 1 bytes (the last may be the "\r"
    // of a "\r\n") nothing that follows can make the line short enough: say
    // so now rather than buffer the rest of it (a 200 MB line once took
    // 950 MB of memory by the time it was refused).
    const size_t partial = end_ - begin_;
    if (partial > max_line_ && partial - max_line_ > 1) return too_long();
    // Keep the partial line, make room behind it (doubling for long lines,
    // but never past the longest allowed line, its "\r\n" and one chunk).
    std::memmove(buf_.data(), buf_.data() + begin_, partial);
    end_ = partial;
    begin_ = 0;
    scan = end_;
    if (buf_.size() - end_ < std::max<size_t>(chunk_ / 2, 1)) {
      const size_t cap = max_line_ > SIZE_MAX - chunk_ - 2 ? SIZE_MAX : max_line_ + 2 + chunk_;
      buf_.resize(std::max(buf_.size(), std::min(buf_.size() * 2, cap)));
    }
    const ssize_t n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
    if (n < 0) {
      if (errno == EINTR) continue;
      return status(errc::io_error, std::string("reading input: ") + std::strerror(errno));
    }
    if (n == 0) eof_ = true;
    end_ += static_cast<size_t>(n);
  }
}

bool line_reader::must_read() const {
  return !eof_ && std::memchr(buf_.data() + begin_, '\n', end_ - begin_) == nullptr;
}

// --- ndjson_writer ---------------------------------------------------------

ndjson_writer::ndjson_writer(int fd, size_t capacity, flush_policy policy)
    : fd_(fd), capacity_(capacity), policy_(policy) {
  buf_.reserve(capacity + capacity / 4);
}

// A manual writer holds output that must wait for something (acks wait for
// durability): whatever is still buffered when it is destroyed was never
// released by its owner, so it is dropped, never written. Flushing it here
// printed acks of events whose sync had just failed (issue 15: the CLI in
// group mode acknowledged events that a power cut then lost).
ndjson_writer::~ndjson_writer() {
  if (policy_ == flush_policy::automatic) (void)flush();
}

void ndjson_writer::discard() { buf_.clear(); }

status ndjson_writer::flush() {
  if (!error_.ok()) {
    buf_.clear();
    return error_;
  }
  size_t done = 0;
  while (done < buf_.size()) {
    const ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = status(errc::io_error, std::string("writing output: ") + std::strerror(errno));
      break;
    }
    done += static_cast<size_t>(n);
  }
  buf_.clear();
  return error_;
}

void ndjson_writer::str(std::string_view s) {
  buf_.push_back('"');
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t run = 0;  // start of the bytes that go out unchanged
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (const size_t len = utf8_sequence_length(p + i, n - i)) {
        i += len;
        continue;
      }
    }
    buf_.append(s.data() + run, i - run);
    switch (c) {
      case '"': buf_.append("\\\""); break;
      case '\\': buf_.append("\\\\"); break;
      case '\n': buf_.append("\\n"); break;
      case '\r': buf_.append("\\r"); break;
      case '\t': buf_.append("\\t"); break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        buf_.append(esc, sizeof esc);
      }
    }
    run = ++i;
  }
  buf_.append(s.data() + run, n - run);
  buf_.push_back('"');
}

void ndjson_writer::u64(uint64_t v) {
  char tmp[24];
  const auto r = std::to_chars(tmp, tmp + sizeof tmp, v);
  buf_.append(tmp, r.ptr);
}

void ndjson_writer::uuid(const id128& id) {
  char tmp[kUuidChars + 2];
  tmp[0] = '"';
  format_uuid(id, tmp + 1);
  tmp[kUuidChars + 1] = '"';
  buf_.append(tmp, sizeof tmp);
}

void ndjson_writer::base64(std::span<const std::byte> bytes) {
  buf_.push_back('"');
  base64_encode_to(bytes, buf_);
  buf_.push_back('"');
}

void write_event(ndjson_writer& w, const event_view& e, std::string_view type_json, time_format tf,
                 std::string_view extra) {
  w.raw("{\"position\":");
  w.u64(e.position.value);
  w.raw(",\"sequence\":");
  w.u64(e.sequence.value);
  w.raw(",\"stream\":");
  write_stream(w, e.stream, e.stream_is_integer);
  w.raw(",\"version\":");
  w.u64(e.version);
  w.raw(",\"type\":");
  w.raw(type_json);
  w.raw(",\"schema_version\":");
  w.u64(e.schema_version);
  // Only for an upcast event: what the log itself holds.
  if (e.stored_schema_version != 0 && e.stored_schema_version != e.schema_version) {
    w.raw(",\"stored_schema_version\":");
    w.u64(e.stored_schema_version);
  }
  w.raw(",\"timestamp\":");
  if (tf == time_format::iso) {
    char text[kIso8601Chars + 2];
    text[0] = '"';
    format_iso8601(e.timestamp_ns, text + 1);
    text[kIso8601Chars + 1] = '"';
    w.raw(std::string_view(text, sizeof text));
  } else {
    w.u64(e.timestamp_ns);
  }
  if (e.event_id) w.raw(",\"event_id\":"), w.uuid(*e.event_id);
  if (e.correlation_id) w.raw(",\"correlation_id\":"), w.uuid(*e.correlation_id);
  if (e.causation_id) w.raw(",\"causation_id\":"), w.uuid(*e.causation_id);
  if (!e.metadata.empty()) {
    w.raw(",\"metadata\":{");
    bool first = true;
    for (const metadata_entry m : e.metadata) {
      if (!first) w.raw(',');
      first = false;
      w.str(m.key);
      w.raw(':');
      w.str(m.value);
    }
    w.raw('}');
  }
  // A JSON payload splices in verbatim only once the validator has accepted
  // it: the content type is the writer's claim, and a payload appended through
  // the API that is not JSON (or not UTF-8) would otherwise corrupt the line.
  // A raw newline (pretty-printed JSON from another writer) would break the
  // one-event-per-line framing. Anything else takes the lossless route.
  const std::string_view text(reinterpret_cast<const char*>(e.payload.data()), e.payload.size());
  // (Two memchr passes: find_first_of would call memchr once per byte.)
  if (e.forgotten) {
    // Crypto-shredding: the stream's key is destroyed; the event stays.
    w.raw(",\"forgotten\":true");
  } else if (e.content == content_type::json && !text.empty() &&
      std::memchr(text.data(), '\n', text.size()) == nullptr &&
      std::memchr(text.data(), '\r', text.size()) == nullptr && is_valid_json(text)) {
    w.raw(",\"data\":");
    w.raw(text);
  } else {
    w.raw(",\"data_base64\":");
    w.base64(e.payload);
  }
  if (!extra.empty()) w.raw(extra);
  w.raw('}');
  w.end_line();
}

namespace {
void write_stream_ack(ndjson_writer& w, const stream_part& req, const append_result& r) {
  w.raw("{\"stream\":");
  if (req.stream_is_integer)
    w.u64(req.stream_u64);
  else
    w.str(req.stream);
  w.raw(",\"first_version\":");
  w.u64(r.first_version);
  w.raw(",\"last_version\":");
  w.u64(r.last_version);
  w.raw(",\"position\":");
  w.u64(r.first.value);
  // An idempotent retry: the events were already there; nothing was written.
  if (r.duplicate) w.raw(",\"duplicate\":true");
  w.raw('}');
}
}  // namespace

void write_multi_ack(ndjson_writer& w, const append_request& req, const multi_append_result& r,
                     std::span<const append_result> per_stream) {
  w.raw("{\"streams\":[");
  for (size_t i = 0; i < req.parts.size(); ++i) {
    if (i) w.raw(',');
    write_stream_ack(w, req.parts[i], per_stream[i]);
  }
  w.raw("],\"position\":");
  w.u64(r.first.value);
  w.raw(",\"end\":");
  w.u64(r.end.value);
  w.raw('}');
  w.end_line();
}

void write_ack(ndjson_writer& w, const append_request& req, const append_result& r) {
  write_stream_ack(w, req, r);
  w.end_line();
}

}  // namespace varve::tools
