// ndjson_fuzzer: the `varve append` input path. Any bytes -> line_reader ->
// parse_append_line -> an append request or a clean error; and the output
// side it must agree with (`varve read A | varve append B` copies a log).
//
// Checks:
// - line_reader splits the input exactly like a reference splitter ("\n",
//   "\r\n", a last line without a terminator counts), whatever its chunk size;
//   with a line bound, it gives the same lines up to the first longer one,
//   then errc::too_large for good, never holding more than the bound + a chunk;
// - with a small --max-depth, an accepted event's data keeps it, and what is
//   accepted is accepted the same with the default bound (nesting is checked
//   before nlohmann's recursive dump() can see a deep line);
// - parse_append_line returns ok or invalid_argument with a message, never
//   throws (an exception escaping is a crash here);
// - an accepted request is well formed: 1..255-byte string stream id, one
//   event unless it is a batch (a multi-stream line: its parts, each checked
//   so, and an ack naming every stream), each event has a type, a JSON payload is
//   compact JSON that dumps back to itself, a binary payload survives base64;
// - write_ack and write_event render valid JSON (whatever bytes a stream id
//   holds), and the line write_event renders for an accepted event parses back
//   (parse_append_line) to the same stream, type, payload, ids, timestamp
//   (printed as nanoseconds and as ISO 8601) and schema version;
// - ndjson_writer::str turns any bytes into a valid JSON string, and gives
//   back exactly the bytes when they are valid UTF-8 (nlohmann is the oracle);
// - the JSON validator `varve read` splices payloads by (tools/json_check.h)
//   accepts exactly what nlohmann::json::accept does, on the whole input and on
//   each line (differential), and write_event of any bytes claimed to be JSON
//   renders one valid line.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/record_format.h"
#include "fuzz/fuzz_util.h"
#include "tools/base64.h"
#include "tools/json_check.h"
#include "tools/ndjson.h"

using namespace varve;
using namespace varve::tools;
using json = nlohmann::ordered_json;

namespace {

int memfd(const char* name) {
  int fd = ::memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) {
    std::perror("memfd_create");
    std::abort();
  }
  return fd;
}

void reset(int fd) {
  FUZZ_CHECK(::ftruncate(fd, 0) == 0, "ftruncate");
  FUZZ_CHECK(::lseek(fd, 0, SEEK_SET) == 0, "lseek");
}

std::string contents(int fd) {
  off_t n = ::lseek(fd, 0, SEEK_CUR);
  std::string s(static_cast<size_t>(n), '\0');
  if (n > 0) FUZZ_CHECK(::pread(fd, s.data(), s.size(), 0) == n, "pread");
  return s;
}

// What line_reader promises, written the obvious way.
std::vector<std::string> reference_lines(std::string_view in) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b < in.size()) {
    size_t nl = in.find('\n', b);
    size_t e = nl == std::string_view::npos ? in.size() : nl;
    std::string_view line = in.substr(b, e - b);
    if (line.ends_with('\r')) line.remove_suffix(1);
    out.emplace_back(line);
    b = nl == std::string_view::npos ? in.size() : nl + 1;
  }
  return out;
}

// line_reader with a bound: the reference's lines up to the first longer one.
void check_bounded_lines(int fd, size_t chunk, size_t max_line, const std::vector<std::string>& want) {
  FUZZ_CHECK(::lseek(fd, 0, SEEK_SET) == 0, "lseek");
  line_reader r(fd, chunk, max_line);
  std::string_view line;
  for (const std::string& w : want) {
    auto more = r.next(line);
    if (w.size() > max_line) {
      FUZZ_CHECK(!more.ok() && more.error().code() == errc::too_large,
                 "a " + std::to_string(w.size()) + "-byte line passed a bound of " + std::to_string(max_line));
      FUZZ_CHECK(r.capacity() <= std::max(chunk, max_line + 2 + chunk),
                 "buffered " + std::to_string(r.capacity()) + " bytes for a bound of " + std::to_string(max_line));
      FUZZ_CHECK(!r.next(line).ok(), "line_reader went on after a line over its bound");
      return;
    }
    FUZZ_CHECK(more.ok() && more.value() && line == w, "bounded line_reader splits differently");
  }
  auto more = r.next(line);
  FUZZ_CHECK(more.ok() && !more.value(), "bounded line_reader does not end with the input");
}

std::vector<std::string> read_lines(int fd, size_t chunk) {
  FUZZ_CHECK(::lseek(fd, 0, SEEK_SET) == 0, "lseek");
  line_reader r(fd, chunk);
  std::vector<std::string> out;
  std::string_view line;
  for (;;) {
    auto more = r.next(line);
    FUZZ_CHECK(more.ok(), "line_reader failed: " + more.error().to_string());
    if (!more.value()) break;
    out.emplace_back(line);
    FUZZ_CHECK(out.size() < (1u << 20), "line_reader does not end");
  }
  return out;
}

bool valid_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

json parse_rendered(const std::string& text, const std::string& what) {
  FUZZ_CHECK(!text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1,
             what + " is not one line: " + text);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    varve_fuzz::fail(__FILE__, __LINE__, (what + " is not valid JSON").c_str(), text + " / " + e.what());
  }
}

void check_str(int out_fd, const std::string& bytes) {
  reset(out_fd);
  {
    ndjson_writer w(out_fd, 1 << 16, ndjson_writer::flush_policy::manual);
    w.str(bytes);
    w.end_line();
    FUZZ_CHECK(w.flush().ok(), "flush");
  }
  json j = parse_rendered(contents(out_fd), "ndjson_writer::str output");
  FUZZ_CHECK(j.is_string(), "str() did not render a string");
  if (valid_utf8(bytes))
    FUZZ_CHECK(j.get_ref<const std::string&>() == bytes, "str() changed valid UTF-8: " + bytes);
}

void check_event_roundtrip(int out_fd, const stream_part& req, const input_event& ev) {
  // The event as `varve read` would print it after appending it.
  event_view v;
  v.position = position{64};
  v.sequence = sequence{0};
  const stream_id id = req.id();
  v.stream = id.bytes();
  v.stream_is_integer = req.stream_is_integer;
  v.version = 1;
  v.type = ev.type_id.value_or(1);
  v.schema_version = ev.schema_version;
  v.timestamp_ns = ev.timestamp_ns;
  v.content = ev.content;
  v.batch_begin = v.batch_end = true;
  v.event_id = ev.event_id ? &*ev.event_id : nullptr;
  v.correlation_id = ev.correlation_id ? &*ev.correlation_id : nullptr;
  v.causation_id = ev.causation_id ? &*ev.causation_id : nullptr;
  v.payload = event_data::bytes(ev.payload);
  // Metadata the append would accept is stored (FORMAT.md 4.1a) and printed.
  std::vector<metadata_entry> entries;
  for (const auto& [k, val] : ev.metadata) entries.push_back({k, val});
  std::vector<std::byte> raw(record::metadata_bytes(entries));
  const bool storable = record::check_metadata(entries).ok();
  if (storable) {
    record::encode_metadata(raw.data(), entries);
    v.metadata = metadata_view(raw);
  }
  const std::string type_json = ev.type_id ? std::to_string(*ev.type_id) : json(ev.type_name).dump();

  for (time_format tf : {time_format::ns, time_format::iso}) {
    reset(out_fd);
    {
      ndjson_writer w(out_fd, 1 << 16, ndjson_writer::flush_policy::manual);
      write_event(w, v, type_json, tf);
      FUZZ_CHECK(w.flush().ok(), "flush");
    }
    std::string line = contents(out_fd);
    (void)parse_rendered(line, "write_event output");
    line.pop_back();
    append_request back;
    status st = parse_append_line(line, back);
    FUZZ_CHECK(st.ok(), "varve read's line does not parse as varve append input: " + st.message() + "\n  " + line);
    FUZZ_CHECK(back.stream_is_integer == req.stream_is_integer && back.stream == req.stream &&
                   back.stream_u64 == req.stream_u64,
               "stream changed through read -> append: " + line);
    FUZZ_CHECK(!back.is_batch && back.events.size() == 1, line);
    const input_event& b = back.events[0];
    FUZZ_CHECK(b.type_name == ev.type_name && b.type_id == ev.type_id, "type changed: " + line);
    FUZZ_CHECK(b.schema_version == ev.schema_version && b.timestamp_ns == ev.timestamp_ns, line);
    FUZZ_CHECK(b.event_id == ev.event_id && b.correlation_id == ev.correlation_id &&
                   b.causation_id == ev.causation_id,
               "ids changed: " + line);
    FUZZ_CHECK(b.payload == ev.payload, "payload changed through read -> append: " + line);
    FUZZ_CHECK(!storable || b.metadata == ev.metadata, "metadata changed through read -> append: " + line);
    // An empty or multi-line payload goes out as base64 and comes back binary.
    FUZZ_CHECK(b.content == ev.content || (ev.content == content_type::json && ev.payload.empty()),
               "content type changed: " + line);
  }
}

void check_events(int out_fd, const stream_part& req, const std::string& where);

void check_ack_stream(const json& ack, const stream_part& req, const std::string& where) {
  if (req.stream_is_integer)
    FUZZ_CHECK(ack["stream"].is_number_unsigned() && ack["stream"].get<uint64_t>() == req.stream_u64, where);
  else
    FUZZ_CHECK(ack["stream"].is_string() && ack["stream"].get<std::string>() == req.stream,
               "ack does not name the stream: " + where);
}

void check_request(int out_fd, const append_request& req, std::string_view line) {
  const std::string where(line.substr(0, 200));
  if (req.is_multi) {
    // A multi-stream line: its parts, each checked as a stream with its
    // events (none is a version check), and one ack naming every stream.
    FUZZ_CHECK(!req.parts.empty() && req.events.empty() && !req.is_batch, where);
    for (const stream_part& p : req.parts) {
      if (!p.stream_is_integer)
        FUZZ_CHECK(!p.stream.empty() && p.stream.size() <= kMaxStreamIdBytes, where);
      check_events(out_fd, p, where);
    }
    reset(out_fd);
    {
      ndjson_writer w(out_fd, 1 << 16, ndjson_writer::flush_policy::manual);
      std::vector<append_result> acks(req.parts.size());
      multi_append_result m;
      m.first = position{64};
      m.end = position{128};
      write_multi_ack(w, req, m, acks);
      FUZZ_CHECK(w.flush().ok(), "flush");
    }
    json ack = parse_rendered(contents(out_fd), "write_multi_ack output");
    FUZZ_CHECK(ack["streams"].is_array() && ack["streams"].size() == req.parts.size(), where);
    for (size_t i = 0; i < req.parts.size(); ++i) check_ack_stream(ack["streams"][i], req.parts[i], where);
    return;
  }
  FUZZ_CHECK(!req.events.empty(), where);
  FUZZ_CHECK(req.is_batch || req.events.size() == 1, where);
  if (!req.stream_is_integer)
    FUZZ_CHECK(!req.stream.empty() && req.stream.size() <= kMaxStreamIdBytes, where);
  check_events(out_fd, req, where);
  // The ack names the stream as the request did.
  reset(out_fd);
  {
    ndjson_writer w(out_fd, 1 << 16, ndjson_writer::flush_policy::manual);
    append_result r;
    r.first = position{64};
    r.first_version = 1;
    r.last_version = req.events.size();
    write_ack(w, req, r);
    FUZZ_CHECK(w.flush().ok(), "flush");
  }
  json ack = parse_rendered(contents(out_fd), "write_ack output");
  check_ack_stream(ack, req, where);
}

void check_events(int out_fd, const stream_part& req, const std::string& where) {
  for (const input_event& ev : req.events) {
    FUZZ_CHECK(ev.type_name.empty() != !ev.type_id.has_value(), "exactly one of type name / id: " + where);
    if (ev.content == content_type::json) {
      json j;
      try {
        j = json::parse(ev.payload);
      } catch (const json::exception& e) {
        varve_fuzz::fail(__FILE__, __LINE__, "JSON payload does not parse", ev.payload + " / " + e.what());
      }
      FUZZ_CHECK(j.dump() == ev.payload, "JSON payload is not its own compact dump: " + ev.payload);
    } else {
      auto b64 = base64_encode(event_data::bytes(ev.payload));
      auto dec = base64_decode(b64);
      FUZZ_CHECK(dec.ok() && dec.value() == ev.payload, "base64 round trip: " + where);
    }
    check_event_roundtrip(out_fd, req, ev);
  }
}

// Differential: the validator against nlohmann, less two nlohmann quirks (it
// skips a byte-order mark, and takes a NUL outside a string for the end of
// input) and the validator's depth bound.
void check_validator(int out_fd, std::string_view text) {
  const json_verdict v = check_json(text);
  if (v != json_verdict::too_deep) {
    const bool want = !text.starts_with("\xef\xbb\xbf") && text.find('\0') == std::string_view::npos &&
                      json::accept(text.begin(), text.end());
    FUZZ_CHECK((v == json_verdict::valid) == want,
               std::string("json_check says ") + (v == json_verdict::valid ? "valid" : "invalid") +
                   ", nlohmann the opposite: " +
                   json(std::string(text.substr(0, 200))).dump(-1, ' ', true, json::error_handler_t::replace));
  }
  // Whatever a payload claimed to be JSON holds, varve read's line is valid.
  event_view e;
  e.stream = "s";
  e.version = 1;
  e.content = content_type::json;
  e.payload = event_data::bytes(text);
  reset(out_fd);
  {
    ndjson_writer w(out_fd, 1 << 16, ndjson_writer::flush_policy::manual);
    write_event(w, e, "1");
    FUZZ_CHECK(w.flush().ok(), "flush");
  }
  (void)parse_rendered(contents(out_fd), "write_event output for a payload claimed to be JSON");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int in_fd = memfd("varve-fuzz-in");
  static const int out_fd = memfd("varve-fuzz-out");
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // 1. Line splitting: a tiny chunk (the buffer-growth paths) and the CLI's.
  reset(in_fd);
  if (size) FUZZ_CHECK(::pwrite(in_fd, data, size, 0) == static_cast<ssize_t>(size), "pwrite");
  const std::vector<std::string> want = reference_lines(text);
  uint32_t mix = 0;
  for (size_t i = 0; i < size; ++i) mix = mix * 31 + data[i];
  const size_t chunk = 2 + mix % 47;
  for (size_t c : {chunk, size_t{1} << 20}) {
    std::vector<std::string> got = read_lines(in_fd, c);
    if (got != want) {
      size_t i = 0;
      while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
      auto show = [](const std::vector<std::string>& v, size_t i) {
        return i < v.size() ? json(v[i].substr(0, 80)).dump(-1, ' ', false, json::error_handler_t::replace)
                            : std::string("(none)");
      };
      varve_fuzz::fail(__FILE__, __LINE__, "line_reader splits differently from the reference",
                       "chunk " + std::to_string(c) + ": " + std::to_string(got.size()) + " lines, expected " +
                           std::to_string(want.size()) + "; line " + std::to_string(i) + " is " + show(got, i) +
                           ", expected " + show(want, i));
    }
  }

  check_bounded_lines(in_fd, chunk, 1 + mix % 97, want);

  // 2. Each line through the parser, and back out; and again with a small
  //    depth bound.
  append_request req, shallow;
  const unsigned max_depth = 1 + (mix >> 8) % 6;
  for (const std::string& line : want) {
    status st = parse_append_line(line, req);
    status small = parse_append_line(line, shallow, parse_limits{max_depth});
    if (!small.ok()) {
      FUZZ_CHECK(small.code() == errc::invalid_argument && !small.message().empty(), small.to_string());
    } else {
      FUZZ_CHECK(st.ok(), "accepted under --max-depth " + std::to_string(max_depth) + " but not by default");
      for (const input_event& ev : shallow.events)
        if (ev.content == content_type::json)
          FUZZ_CHECK(check_json(ev.payload, max_depth) != json_verdict::too_deep,
                     "data deeper than --max-depth " + std::to_string(max_depth) + " accepted: " + ev.payload);
    }
    if (!st.ok()) {
      FUZZ_CHECK(st.code() == errc::invalid_argument, st.to_string());
      FUZZ_CHECK(!st.message().empty(), "error without a message");
      continue;
    }
    check_request(out_fd, req, line);
  }

  // 3. The string escaper on raw bytes.
  check_str(out_fd, std::string(text.substr(0, 512)));

  // 4. The JSON validator, on the whole input and on each line.
  check_validator(out_fd, text);
  for (const std::string& line : want) check_validator(out_fd, line);
  return 0;
}
