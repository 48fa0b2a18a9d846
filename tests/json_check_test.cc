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

namespace {

using varve::tools::check_json;
using varve::tools::is_valid_json;
using varve::tools::json_verdict;
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
