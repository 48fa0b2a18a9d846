// NDJSON plumbing for the varve CLI: parsing `varve append` input lines into
// append requests, reading stdin line by line, and a buffered writer that
// renders events and acks by hand so bulk export never goes through a JSON DOM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tools/json_check.h"
#include "varve/event.h"
#include "varve/log.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve::tools {

// Canonical 8-4-4-4-12 hex text (either case) only: ids are compared bytewise,
// so guessing at other spellings would silently mint different ids.
std::optional<id128> parse_uuid(std::string_view text);
// Lower-case canonical form, exactly 36 characters.
void format_uuid(const id128& id, char* out);
inline constexpr size_t kUuidChars = 36;

// ---------------------------------------------------------------------------
// Input: one line of `varve append`.

struct input_event {
  std::string type_name;             // set when "type" was a name
  std::optional<uint32_t> type_id;   // set when "type" was a raw number
  uint16_t schema_version = 1;
  std::string payload;               // compact JSON text, or decoded binary
  content_type content = content_type::json;
  uint64_t timestamp_ns = 0;         // 0 = the log's clock
  std::optional<id128> event_id;
  std::optional<id128> correlation_id;
  std::optional<id128> causation_id;
  // "metadata": {"key": "value", ...}, in the line's order (string values).
  std::vector<std::pair<std::string, std::string>> metadata;
};

// One stream's events of a line, with its expectation.
struct stream_part {
  std::string stream;                // string ids (when !stream_is_integer)
  uint64_t stream_u64 = 0;           // integer ids
  bool stream_is_integer = false;
  expected_version expected = expected_version::any();
  std::vector<input_event> events;   // a plain line: exactly one; a part of a
                                     // multi-stream line: any number (0: a check)

  stream_id id() const {
    return stream_is_integer ? stream_id::from_u64(stream_u64)
                             : stream_id(std::string_view(stream));
  }
};

struct append_request : stream_part {
  bool is_batch = false;             // the line used "events": [...]
  // The line used "streams": [{"stream":..,"expected_version":..,"events":[..]},..]:
  // one atomic multi-stream append; the fields above are unused.
  bool is_multi = false;
  std::vector<stream_part> parts;
};

// How deep an event's "data" may nest arrays and objects (`varve append
// --max-depth`): [] is 1, a scalar 0. The default is what `varve read`
// splices back verbatim (kMaxJsonDepth); kJsonDepthLimit is the most allowed.
inline constexpr unsigned kDefaultMaxDepth = kMaxJsonDepth;
// How long one input line may be (`varve append --max-line-bytes`). Parsing a
// line costs about five times its size in memory (the line, the parsed DOM,
// the compact payload, the event), so 16 MiB bounds that near 80 MiB; larger
// events need the option raised (up to what a segment holds).
inline constexpr size_t kDefaultMaxLineBytes = size_t{16} << 20;

// The most --max-depth may be: the validator's ceiling (kJsonDepthLimit) less
// the levels around "data" (a batch line's object, "events", the event).
inline constexpr unsigned kMaxDepthLimit = 4000;

struct parse_limits {
  unsigned max_depth = kDefaultMaxDepth;  // more than kMaxDepthLimit counts as that
};

// Parses one line (without its terminator) into `out`. Failures are
// invalid_argument whose message() says what is wrong, e.g. `missing "type"`
// or `events[2]: "event_id" is not a UUID ...`; the caller adds the line number.
// Any bytes are safe to give it: nesting is bounded before anything recurses.
status parse_append_line(std::string_view line, append_request& out, const parse_limits& limits = {});

// "3", "any", "no_stream", "stream_exists": how an expectation reads in messages.
std::string describe_expected(expected_version e);

// Reads a file descriptor in big chunks and hands out lines in place.
class line_reader {
 public:
  // A line longer than `max_line` bytes (its terminator aside) is an error,
  // found before more than max_line + chunk + 2 bytes are buffered.
  explicit line_reader(int fd, size_t chunk = 1 << 20, size_t max_line = SIZE_MAX);

  // Sets `line` to the next line, without "\n" or "\r\n"; a last line without
  // a terminator counts. Returns false at end of input. `line` stays valid
  // until the next call. A line over max_line: errc::too_large (the reader is
  // then done: it does not look for the line's end).
  result<bool> next(std::string_view& line);
  // True when next() has no complete line buffered and must read(), which may
  // block: the moment to flush anything the other end is waiting for.
  bool must_read() const;
  // Bytes of buffer held: what the bound above is about.
  size_t capacity() const { return buf_.size(); }

 private:
  result<bool> hand_out(std::string_view& line, size_t from, size_t stop);
  status too_long();

  int fd_;
  size_t chunk_;
  size_t max_line_;
  std::vector<char> buf_;
  size_t begin_ = 0;  // start of unconsumed bytes
  size_t end_ = 0;    // end of valid bytes
  bool eof_ = false;
  status failed_;     // a line was too long: every later call says so
};

// ---------------------------------------------------------------------------
// Output.

// Appends JSON to an in-memory buffer and writes it to `fd` in big chunks. The
// first write error is latched (later output is dropped) and reported by
// error() and flush(), so hot loops need not check every call.
class ndjson_writer {
 public:
  // automatic: end_line() writes out once `capacity` bytes are buffered.
  // manual: only flush() writes, for output that must wait for something
  // (acks wait for durability).
  enum class flush_policy : uint8_t { automatic, manual };

  explicit ndjson_writer(int fd, size_t capacity = 1 << 20,
                         flush_policy policy = flush_policy::automatic);
  // automatic: flushes, ignoring errors (call flush() to see them); manual:
  // drops what is buffered, which its owner never released.
  ~ndjson_writer();
  ndjson_writer(const ndjson_writer&) = delete;
  ndjson_writer& operator=(const ndjson_writer&) = delete;

  void raw(std::string_view s) { buf_.append(s); }
  void raw(char c) { buf_.push_back(c); }
  // A quoted, escaped JSON string. Bytes that are not valid UTF-8 come out as
  // \u00XX so the output stays valid JSON whatever a stream id holds.
  void str(std::string_view s);
  void u64(uint64_t v);
  void uuid(const id128& id);
  void base64(std::span<const std::byte> bytes);  // quoted
  void end_line() {
    buf_.push_back('\n');
    if (policy_ == flush_policy::automatic && buf_.size() >= capacity_) (void)flush();
  }

  size_t buffered() const { return buf_.size(); }
  // Drops what is buffered and not written yet (`append --acks last` keeps
  // only the newest ack).
  void discard();
  status flush();
  const status& error() const { return error_; }

 private:
  int fd_;
  size_t capacity_;
  flush_policy policy_;
  std::string buf_;
  status error_;
};

// How "timestamp" is printed: integer nanoseconds since the epoch (what
// scripts have always parsed), or ISO 8601 text in UTC with nine fractional
// digits (tools/time_text.h). `varve append` takes either back exactly.
enum class time_format : uint8_t { ns, iso };

// One event of `varve read`. `type_json` is the already rendered JSON value of
// "type" (a quoted name, or the number when the registry has no name).
// `extra`: more members, already rendered, with a leading comma (or empty).
void write_event(ndjson_writer& w, const event_view& e, std::string_view type_json,
                 time_format tf = time_format::ns, std::string_view extra = {});

// The ack `varve append` prints for each line.
void write_ack(ndjson_writer& w, const append_request& req, const append_result& r);
// A multi-stream line's ack: {"streams":[<each stream's ack>],"position":P,"end":E}.
void write_multi_ack(ndjson_writer& w, const append_request& req, const multi_append_result& r,
                     std::span<const append_result> per_stream);

}  // namespace varve::tools
