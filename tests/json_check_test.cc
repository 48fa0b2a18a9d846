// The JSON validator `varve read` runs before splicing a payload into its
// output (tools/json_check.h): fixed cases for each rule, a differential run
// against nlohmann::json::accept on random and mutated documents, and the
// fallback to "data_base64" in write_event.
#include "tools/json_check.h"

#include <sys/mman.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tools/ndjson.h"
#include "tools/time_text.h"

namespace {

using varve::tools::check_json;
using varve::tools::is_valid_json;
using varve::tools::json_verdict;
using varve::tools::kJsonDepthLimit;
using varve::tools::kMaxJsonDepth;
using namespace std::string_literals;

int scale() {
  const char* s = std::getenv("VARVE_TEST_SCALE");
  return s && std::atoi(s) > 0 ? std::atoi(s) : 1;
}

TEST(JsonCheck, AcceptsValidDocuments) {
  const std::vector<std::string> valid = {
      "0", "-0", "7", "-12", "1.5", "1.5e10", "1E+2", "-1.0e-2", "0.000", "0e0", "1e-400",
      "1.7976931348623157e308", "-1.7976931348623157e308", "123456789012345678901234567890",
      "true", "false", "null", "\"\"", "\"x\"", "\"\\u00e9\"", "\"\\uD83D\\uDE00\"",
      "\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"", "\"\\u0000\"", "\"caf\xc3\xa9\"", "\"\xf0\x9f\x98\x80\"",
      "\"\xef\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"", "\"\x7f\"", "[]", "{}", " [1, 2 ,3 ] ",
      "\t\r\n{\"a\" : {\"b\":[true,false,null]}}\n", "[[],{},[{}]]", "{\"\":0}",
      "{\"a\":1,\"a\":2}",  // duplicate keys: allowed by the grammar
      "\"a long string that crosses the sixteen-byte blocks of the fast path \\n and back\"",
  };
  for (const std::string& s : valid) {
    EXPECT_EQ(check_json(s), json_verdict::valid) << s;
    EXPECT_TRUE(nlohmann::json::accept(s)) << "the test case itself: " << s;
  }
}

TEST(JsonCheck, RefusesInvalidDocuments) {
  const std::vector<std::string> invalid = {
      "", " ", "01", "-01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "0x10", "1.e5", "NaN",
      "Infinity", "-Infinity", "1e400", "-1e400", std::string("1") + std::string(400, '0'), "0.1e310",
      "[1,]", "{\"a\":1,}", "[,1]", "[1 2]", "{\"a\"}", "{\"a\":}", "{1:2}", "{\"a\" 1}",
      "{'a':1}", "'a'", "[1", "{\"a\":1", "]", "}", "[}", "{]", "\"abc", "\"abc\\\"",
      "tru", "nul", "fals", "truex", "nulll", "true false", "[1] [2]", "1 2", "\"a\"\"b\"",
      "// c\n1", "/* c */ 1", "\xef\xbb\xbf{}",  // no byte-order mark
      "\xc3\xa9", "[\xc3\xa9]",                // non-ASCII outside strings
      "\"\x01\"", "\"a\tb\"", "\"a\nb\"", "\"\x1f\"", "[1,\x01 2]", "\"\\x\"", "\"\\u12\"",
      "\"\\u12G4\"", "\"\\U0041\"", "\"\\'\"", "\"\\",
      "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\ud800x\"", "\"\\udc00\\ud800\"",
      "\"\\ud800\\ud800\"",
      "\"\xff\"", "\"\xc0\x80\"", "\"\xc1\xbf\"", "\"\xe0\x80\x80\"", "\"\xed\xa0\x80\"",
      "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xc3\"", "\"\xe2\x82\"", "\"\x80\"",
      "\"caf\xc3\"", std::string("\"a\0b\"", 5), std::string("1\0", 2),
  };
  for (const std::string& s : invalid) {
    EXPECT_EQ(check_json(s), json_verdict::invalid) << nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  }
}

TEST(JsonCheck, BoundsNestingWithoutRecursing) {
  auto nested = [](size_t depth, char open, char close) {
    return std::string(depth, open) + std::string(depth, close);
  };
  EXPECT_EQ(check_json(nested(kMaxJsonDepth, '[', ']')), json_verdict::valid);
  EXPECT_EQ(check_json(nested(kMaxJsonDepth + 1, '[', ']')), json_verdict::too_deep);
  std::string objects;
  for (unsigned i = 0; i < kMaxJsonDepth; ++i) objects += "{\"k\":";
  objects += '1';
  objects.append(kMaxJsonDepth, '}');
  EXPECT_EQ(check_json(objects), json_verdict::valid);
  EXPECT_EQ(check_json(std::string("[") + objects + "]"), json_verdict::too_deep);
  // Far past any stack a recursive parser could afford: refused, not a crash.
  EXPECT_EQ(check_json(std::string(10'000'000, '[')), json_verdict::too_deep);
  EXPECT_EQ(check_json(nested(3, '[', ']'), 2), json_verdict::too_deep);
  EXPECT_EQ(check_json(nested(2, '[', ']'), 2), json_verdict::valid);
  // Objects and arrays interleaved across the 64-level words of the stack.
  std::string mixed, closing;
  for (unsigned i = 0; i < 300; ++i) {
    if (i % 3 == 0) mixed += "{\"k\":", closing = "}" + closing;
    else mixed += "[", closing = "]" + closing;
  }
  EXPECT_EQ(check_json(mixed + "0" + closing), json_verdict::valid);
  closing[150] = closing[150] == ']' ? '}' : ']';
  EXPECT_EQ(check_json(mixed + "0" + closing), json_verdict::invalid);
  // A level reopened as the other kind forgets what it was (the stack is not
  // zeroed up front): 100 objects deep, then 100 arrays deep at the same levels.
  std::string objects100, arrays100;
  for (unsigned i = 0; i < 100; ++i) objects100 += "{\"k\":";
  objects100 += "0" + std::string(100, '}');
  arrays100 = std::string(100, '[') + "1,2" + std::string(100, ']');
  EXPECT_EQ(check_json("[" + objects100 + "," + arrays100 + "]", 128), json_verdict::valid);
  EXPECT_EQ(check_json("[" + arrays100 + "," + objects100 + "]", 128), json_verdict::valid);
}

TEST(JsonCheck, DepthCanBeRaisedToTheLimitAndNoFurther) {
  auto nested = [](size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_EQ(check_json(nested(kJsonDepthLimit), kJsonDepthLimit), json_verdict::valid);
  EXPECT_EQ(check_json(nested(kJsonDepthLimit + 1), kJsonDepthLimit), json_verdict::too_deep);
  // Asking for more than the limit gets the limit.
  EXPECT_EQ(check_json(nested(kJsonDepthLimit + 1), UINT32_MAX), json_verdict::too_deep);
  EXPECT_EQ(check_json(nested(1000), 999), json_verdict::too_deep);
  EXPECT_EQ(check_json(nested(1000), 1000), json_verdict::valid);
}

// What the validator is meant to agree with. Two nlohmann quirks set aside:
// it skips a UTF-8 byte-order mark (which a document spliced into a line must
// not carry), and it takes a NUL byte outside a string for the end of input
// (accepting "1\0garbage"); no JSON text holds a raw NUL.
bool oracle(const std::string& s) {
  if (s.starts_with("\xef\xbb\xbf") || s.find('\0') != std::string::npos) return false;
  return nlohmann::json::accept(s);
}

class random_json {
 public:
  explicit random_json(uint64_t seed) : rng_(seed) {}

  std::string document() {
    std::string out;
    value(out, 0);
    return out;
  }

  // A document with a few random edits from bytes that matter to JSON.
  std::string mutated() {
    static const std::string alphabet =
        "{}[]:,\"\\/ \t\r\n0123456789+-.eEtrufalsn\x01\x1f\x7f\x80\xbf\xc0\xc3\xa9\xe2\xed\xa0\xf0\xf4\xff"s;
    std::string s = document();
    const int edits = 1 + pick(3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = s.empty() ? 0 : pick(s.size());
      const char c = alphabet[pick(alphabet.size())];
      switch (pick(4)) {
        case 0: s.insert(s.begin() + at, c); break;
        case 1: if (!s.empty()) s.erase(at, 1); break;
        case 2: if (!s.empty()) s[at] = c; break;
        default: {  // repeat a slice
          const std::string slice = s.substr(at, pick(8));
          s.insert(at, slice);
        }
      }
    }
    return s;
  }

 private:
  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  void ws(std::string& out) {
    static const char* spaces[] = {"", "", "", " ", "\n", "\t", "\r\n ", "  "};
    out += spaces[pick(8)];
  }

  void number(std::string& out) {
    if (pick(2)) out += '-';
    if (pick(4) == 0) out += '0';
    else out += std::to_string(1 + pick(999999)).substr(0, 1 + pick(6));
    if (pick(2)) out += '.';
      out += std::to_string(pick(100000));
    if (pick(3) == 0) {
      out += "eE"[pick(2)];
      if (pick(2)) out += "+-"[pick(2)];
      out += std::to_string(pick(pick(4) == 0 ? 400 : 20));
    }
  }

  void string(std::string& out) {
    static const std::vector<std::string> pieces = {
        "a", "Z", " ", "\\\"", "\\\\", "\\/", "\\b", "\\n", "\\t", "\\u0041", "\\u00e9", "\\uD83D\\uDE00",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "hello world, a longer run of text", "\x7f",
    };
    out += '"';
    for (size_t n = pick(8); n > 0; --n) out += pieces[pick(pieces.size())];
    out += '"';
  }

  void value(std::string& out, int depth) {
    ws(out);
    const size_t kind = depth > 6 ? pick(4) : pick(6);
    switch (kind) {
      case 0: number(out); break;
      case 1: string(out); break;
      case 2: out += std::vector<const char*>{"true", "false", "null"}[pick(3)]; break;
      case 3: number(out); break;
      case 4: {
        out += '[';
        const size_t n = pick(5);
        if (n == 0) ws(out);
        for (size_t i = 0; i < n; ++i) {
          if (i) out += ',';
          value(out, depth + 1);
        }
        out += ']';
        break;
      }
      default: {
        out += '{';
        const size_t n = pick(5);
        if (n == 0) ws(out);
        for (size_t i = 0; i < n; ++i) {
          if (i) out += ',';
          ws(out);
          string(out);
          ws(out);
          out += ':';
          value(out, depth + 1);
        }
        out += '}';
      }
    }
    ws(out);
  }

  std::mt19937_64 rng_;
};

TEST(JsonCheck, AgreesWithNlohmannOnRandomDocuments) {
  random_json gen(20240601);
  size_t valid = 0, total = 0;
  for (int i = 0; i < 20000 * scale(); ++i) {
    const std::string doc = gen.document();
    ASSERT_EQ(is_valid_json(doc), oracle(doc)) << doc;
    valid += oracle(doc);
    ++total;
  }
  // Most generated documents are valid (the rest hold an exponent past a double).
  EXPECT_GT(valid, total * 8 / 10);
}

TEST(JsonCheck, AgreesWithNlohmannOnMutatedDocuments) {
  random_json gen(42);
  size_t disagreements = 0, valid = 0;
  const int n = 100000 * scale();
  for (int i = 0; i < n; ++i) {
    const std::string doc = gen.mutated();
    const json_verdict v = check_json(doc);
    ASSERT_NE(v, json_verdict::too_deep);
    const bool want = oracle(doc);
    valid += want;
    if ((v == json_verdict::valid) != want && ++disagreements <= 10)
      ADD_FAILURE() << "validator says " << (v == json_verdict::valid) << ", nlohmann " << want
                    << ": " << nlohmann::json(doc).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  }
  EXPECT_EQ(disagreements, 0u);
  // Both outcomes well represented, or the comparison says little.
  EXPECT_GT(valid, static_cast<size_t>(n) / 10);
  EXPECT_LT(valid, static_cast<size_t>(n) * 9 / 10);
}

TEST(JsonCheck, AgreesWithNlohmannOnRandomBytes) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000 * scale(); ++i) {
    static const std::string alphabet = "[]{}:,\" 01-.e\\tu\x80\xc3\xa9\0"s;
    std::string s(rng() % 12, ' ');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    ASSERT_EQ(is_valid_json(s), oracle(s)) << nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  }
}

// --- write_event: splice only what validates --------------------------------

std::string render(const std::string& payload, varve::content_type content) {
  const int fd = ::memfd_create("json-check-test", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  {
    varve::tools::ndjson_writer w(fd, 1 << 16, varve::tools::ndjson_writer::flush_policy::manual);
    varve::event_view e;
    e.stream = "s";
    e.version = 1;
    e.type = 1;
    e.content = content;
    e.payload = varve::event_data::bytes(payload);
    varve::tools::write_event(w, e, "1");
    EXPECT_TRUE(w.flush().ok());
  }
  std::string out(static_cast<size_t>(::lseek(fd, 0, SEEK_CUR)), '\0');
  EXPECT_EQ(::pread(fd, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
  ::close(fd);
  return out;
}

TEST(WriteEvent, SplicesValidJsonAndEncodesTheRest) {
  using varve::content_type;
  const std::vector<std::string> claimed_json = {
      "{\"a\":1}", "not json", "{\"a\":1,}", "\"\xff\"", "\"\\ud800\"", "1e400", "",
      std::string(601, '[') + std::string(601, ']'), "{\"a\":\n1}", "\xef\xbb\xbf{}",
  };
  for (const std::string& p : claimed_json) {
    const std::string line = render(p, content_type::json);
    ASSERT_TRUE(line.ends_with("\n") && line.find('\n') == line.size() - 1) << line;
    ASSERT_TRUE(nlohmann::json::accept(line)) << "not valid JSON: " << line;
    const auto j = nlohmann::json::parse(line);
    if (is_valid_json(p) && p.find('\n') == std::string::npos) {
      EXPECT_EQ(j["data"], nlohmann::json::parse(p)) << line;
      EXPECT_FALSE(j.contains("data_base64"));
    } else {
      EXPECT_TRUE(j.contains("data_base64")) << line;
      EXPECT_FALSE(j.contains("data")) << line;
    }
  }
  EXPECT_TRUE(nlohmann::json::parse(render("{\"a\":1}", content_type::json)).contains("data"));
  EXPECT_TRUE(nlohmann::json::parse(render("{\"a\":1}", content_type::binary)).contains("data_base64"));
}

}  // namespace

// --- the bounds `varve append` puts on a line (tools/ndjson.h) ---------------

namespace {

using varve::errc;
using varve::status;
using varve::tools::append_request;
using varve::tools::kDefaultMaxDepth;
using varve::tools::kMaxDepthLimit;
using varve::tools::line_reader;
using varve::tools::parse_append_line;
using varve::tools::parse_limits;

std::string arrays(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }
std::string objects(size_t depth) {
  std::string s;
  for (size_t i = 0; i < depth; ++i) s += "{\"k\":";
  return s + "0" + std::string(depth, '}');
}
std::string single(const std::string& data) { return R"({"stream":"a","type":"E","data":)" + data + "}"; }
std::string batch(const std::string& data) {
  return R"({"stream":"a","events":[{"type":"E","data":1},{"type":"E","data":)" + data + "}]}";
}

status parse(const std::string& line, unsigned max_depth = kDefaultMaxDepth) {
  append_request req;
  return parse_append_line(line, req, parse_limits{max_depth});
}

// Issue 15.9: data nesting 100,000 arrays killed `varve append` with SIGSEGV
// (nlohmann's serializer recursing once per level while making the payload).
TEST(AppendLineBounds, DataNested100000DeepIsRefusedNotACrash) {
  for (const std::string& data : {arrays(100'000), objects(100'000), std::string(100'000, '[')}) {
    for (const std::string& line : {single(data), batch(data)}) {
      status st = parse(line);
      EXPECT_EQ(st.code(), errc::invalid_argument);
      EXPECT_NE(st.message().find("deeper than --max-depth 512 allows"), std::string::npos) << st.message();
    }
  }
  // Deep anywhere else on the line: refused the same way, whatever the key.
  for (const std::string& line : {R"({"stream":"a","type":)" + arrays(100'000) + R"(,"data":1})",
                                  R"({"stream":"a","type":"E","data":1,"x":)" + objects(100'000) + "}",
                                  R"({"stream":)" + arrays(100'000) + "}", arrays(100'000)}) {
    status st = parse(line);
    EXPECT_EQ(st.code(), errc::invalid_argument);
    EXPECT_NE(st.message().find("deeper than --max-depth"), std::string::npos) << st.message();
  }
}

TEST(AppendLineBounds, DataMayNestExactlyMaxDepth) {
  for (unsigned max : {1u, 2u, 3u, 63u, 64u, 65u, kDefaultMaxDepth, kMaxDepthLimit}) {
    for (auto make : {arrays, objects}) {
      for (auto wrap : {single, batch}) {
        append_request req;
        status st = parse_append_line(wrap(make(max)), req, parse_limits{max});
        ASSERT_TRUE(st.ok()) << "depth " << max << ": " << st.to_string();
        EXPECT_EQ(req.events.back().payload, nlohmann::json::parse(make(max)).dump());
        st = parse(wrap(make(max + 1)), max);
        EXPECT_EQ(st.code(), errc::invalid_argument) << "depth " << max + 1;
        EXPECT_NE(st.message().find("deeper than --max-depth " + std::to_string(max)), std::string::npos)
            << st.message();
      }
    }
  }
  // Past the ceiling a bound counts as the ceiling.
  EXPECT_EQ(parse(single(arrays(kMaxDepthLimit + 1)), UINT32_MAX).code(), errc::invalid_argument);
  // Scalars have depth 0; the bound is about containers only.
  EXPECT_TRUE(parse(single("\"" + std::string(1000, '[') + "\""), 1).ok());
}

TEST(AppendLineBounds, KeepsWhatWasAcceptedBefore) {
  // nlohmann skips a UTF-8 byte-order mark (a file's first line may carry
  // one); the depth pre-check must not turn that into a refusal.
  EXPECT_TRUE(parse("\xef\xbb\xbf" + single("{\"a\":[1,2]}")).ok());
  EXPECT_EQ(parse(single("[1,]")).message().rfind("not valid JSON", 0), 0u) << parse(single("[1,]")).message();
}

// A file holding `text`, read back from the start.
int file_with(const std::string& text) {
  const int fd = ::memfd_create("line-reader-test", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pwrite(fd, text.data(), text.size(), 0), static_cast<ssize_t>(text.size()));
  return fd;
}

TEST(LineReaderBounds, RefusesALongLineWithoutBufferingIt) {
  constexpr size_t kMax = 1000;
  for (size_t chunk : {size_t{2}, size_t{64}, size_t{4096}, size_t{1} << 20}) {
    const std::string exact(kMax, 'x');
    const std::string text = "short\n" + exact + "\r\n" + exact + "\n" + std::string(50 * kMax, 'y') +
                             "\n" + "after\n";
    const int fd = file_with(text);
    line_reader r(fd, chunk, kMax);
    std::string_view line;
    for (const std::string& want : {std::string("short"), exact, exact}) {
      auto got = r.next(line);
      ASSERT_TRUE(got.ok() && got.value()) << "chunk " << chunk;
      EXPECT_EQ(line, want);
    }
    auto got = r.next(line);
    ASSERT_FALSE(got.ok()) << "chunk " << chunk << ": a " << line.size() << "-byte line came through";
    EXPECT_EQ(got.error().code(), errc::too_large);
    EXPECT_NE(got.error().message().find("longer than 1000 bytes"), std::string::npos);
    // Never more than the bound, its "\r\n" and one chunk (or the first chunk).
    EXPECT_LE(r.capacity(), std::max(chunk, kMax + 2 + chunk)) << "chunk " << chunk;
    // Done: the rest of the long line is not handed out as a line of its own.
    got = r.next(line);
    EXPECT_FALSE(got.ok());
    ::close(fd);
  }
}

TEST(LineReaderBounds, ALastLineWithoutNewlineCountsToo) {
  for (const std::string& text : {std::string(11, 'z'), std::string(11, 'z') + "\r", "ok\n" + std::string(11, 'z')}) {
    const int fd = file_with(text);
    line_reader r(fd, 4, 10);
    std::string_view line;
    auto got = r.next(line);
    if (got.ok() && got.value() && line == "ok") got = r.next(line);
    EXPECT_FALSE(got.ok()) << text;
    ::close(fd);
  }
  const int fd = file_with(std::string(10, 'z') + "\r");
  line_reader r(fd, 4, 10);
  std::string_view line;
  auto got = r.next(line);
  ASSERT_TRUE(got.ok() && got.value());
  EXPECT_EQ(line, std::string(10, 'z'));
  ::close(fd);
}

}  // namespace

// --- timestamps as text (tools/time_text.h) ----------------------------------

namespace {

using varve::tools::format_iso8601;
using varve::tools::kIso8601Chars;
using varve::tools::parse_iso8601;

std::string iso(uint64_t ns) {
  char out[kIso8601Chars];
  format_iso8601(ns, out);
  return std::string(out, sizeof out);
}

TEST(TimeText, ParsesZonesAndFractions) {
  EXPECT_EQ(parse_iso8601("1970-01-01T00:00:00Z"), 0u);
  EXPECT_EQ(parse_iso8601("2026-11-22T10:00:00Z"), 1795341600000000000u);
  EXPECT_EQ(parse_iso8601("2026-11-22T10:00:00.123Z"), 1795341600123000000u);
  EXPECT_EQ(parse_iso8601("2026-11-22T11:00:00.123+01:00"), 1795341600123000000u);
  EXPECT_EQ(parse_iso8601("2026-11-22T04:30:00.000000001-05:30"), 1795341600000000001u);
  EXPECT_EQ(parse_iso8601("2026-11-22t10:00:00.1234567891z"), 1795341600123456789u);  // past 9 digits: dropped
  EXPECT_EQ(parse_iso8601("2554-07-21T23:34:33.709551615Z"), UINT64_MAX);
  for (const char* bad : {"", "2026-11-22", "2026-11-22T10:00:00", "2026-11-22T10:00:00.Z",
                          "2026-11-22 10:00:00Z", " 2026-11-22T10:00:00Z", "2026-11-22T10:00:00Zjunk",
                          "2026-13-01T00:00:00Z", "2026-11-22T24:00:00Z", "2026-11-22T10:00:00+1:00",
                          "2026-11-22T10:00:00+01", "1969-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00",
                          "2554-07-21T23:34:33.709551616Z", "9999-12-31T23:59:59Z", "+026-11-22T10:00:00Z"})
    EXPECT_FALSE(parse_iso8601(bad).has_value()) << bad;
}

TEST(TimeText, FormatsFixedWidthUtcThatParsesBackExactly) {
  EXPECT_EQ(iso(0), "1970-01-01T00:00:00.000000000Z");
  EXPECT_EQ(iso(1795341600123000000u), "2026-11-22T10:00:00.123000000Z");
  EXPECT_EQ(iso(UINT64_MAX), "2554-07-21T23:34:33.709551615Z");
  std::mt19937_64 rng(11);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t ns = rng();
    ASSERT_EQ(parse_iso8601(iso(ns)), ns) << iso(ns);
  }
}

}  // namespace
