// Upcasters (varve/upcast.h): every read path hands events out at their
// type's current schema version while the stored bytes stay as written;
// appends newer than the current version are refused; the declarative JSON
// form, the small JSON document under it, and the types file's versions.
// The property test compares every reader against a model of the chains.
#include <cinttypes>
#include <map>
#include <mutex>
#include <random>

#include "engine/upcast/json_doc.h"
#include "test_util.h"

namespace {

using namespace varve;
using namespace varve_test;
namespace json = varve::detail::json;

std::string slurp(const std::string& path) {
  const std::vector<uint8_t> b = read_file(path);
  return std::string(b.begin(), b.end());
}

void put_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string text_of(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// ---------------------------------------------------------------------------
// The JSON document.

TEST(UpcastJson, WritesWhatItParsesCompactlyKeepingOrderAndNumbers) {
  const std::pair<const char*, const char*> cases[] = {
      {R"( {"b": 1, "a": [true, false, null, -0.5e+3, 12.50]} )", R"({"b":1,"a":[true,false,null,-0.5e+3,12.50]})"},
      {R"("a\"b\\c\/d\b\f\n\r\t\u0001\u00e9\ud83d\ude00")", "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\\u0001\xc3\xa9\xf0\x9f\x98\x80\""},
      {"[]", "[]"},
      {"{}", "{}"},
      {"0", "0"},
      {"\"\xe2\x82\xac\"", "\"\xe2\x82\xac\""},
      {R"({"":{"x":[{}]}})", R"({"":{"x":[{}]}})"},
  };
  for (const auto& [in, want] : cases) {
    auto v = json::parse(in);
    ASSERT_TRUE(v.ok()) << in << ": " << describe(v);
    std::string out;
    json::write(v.value(), out);
    EXPECT_EQ(out, want) << in;
    auto again = json::parse(out);
    ASSERT_TRUE(again.ok());
    std::string out2;
    json::write(again.value(), out2);
    EXPECT_EQ(out2, out);
  }
}

TEST(UpcastJson, RefusesWhatIsNotStrictJsonSayingWhere) {
  const char* bad[] = {"", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "-", "1e",
                       "+1", "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"",
                       "\"\x01\"", "\"\xc3\"", "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "[1] 2", "{\"a\":1,\"a\":2}",
                       "NaN", "[\"a\" \"b\"]"};
  for (const char* b : bad) {
    auto v = json::parse(b);
    EXPECT_FALSE(v.ok()) << "accepted: " << b;
    if (!v.ok()) {
      EXPECT_EQ(v.error().code(), errc::invalid_argument);
      EXPECT_NE(v.error().message().find("offset "), std::string::npos) << v.error().message();
    }
  }
  std::string deep(200, '[');
  deep += std::string(200, ']');
  EXPECT_FALSE(json::parse(deep, 128).ok());
  EXPECT_TRUE(json::parse(deep, 256).ok());
}

TEST(UpcastJson, FieldPathsAreKeysOrJsonPointers) {
  auto k = json::parse_field("a/b");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->tokens, std::vector<std::string>{"a/b"});
  auto p = json::parse_field("/a~1b/c~0d/");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tokens, (std::vector<std::string>{"a/b", "c~d", ""}));
  EXPECT_FALSE(json::parse_field("").ok());
  EXPECT_FALSE(json::parse_field("/a~2").ok());
  EXPECT_FALSE(json::parse_field("/a~").ok());
}

// ---------------------------------------------------------------------------
// The declarative form.

struct registry_dir {
  temp_dir dir;
  type_registry reg;
  registry_dir() : reg(type_registry::open(dir.path()).value()) {}
};

// Runs the set's chain on a payload through the same entry point readers use.
result<event_view> run(const upcasters& u, uint32_t type, uint16_t version, const std::string& payload,
                       std::string& scratch) {
  event_view e;
  e.type = type;
  e.schema_version = version;
  e.stored_schema_version = version;
  e.position = position{4096};
  e.content = content_type::json;
  e.payload = event_data::bytes(payload);
  if (status s = u.apply(e, scratch); !s) return s;
  return e;
}

TEST(UpcastDeclarative, RenamesAddsDropsAndRenamesTheType) {
  registry_dir r;
  const uint32_t placed = r.reg.id_for("OrderPlaced").value();
  const uint32_t submitted = r.reg.id_for("OrderSubmitted").value();
  const char* file = R"({"upcasters": [
      {"type": "OrderPlaced", "from": 1, "drop": ["legacy", "/meta/old"],
       "rename": {"amount": "total", "/meta/by": "/meta/author"},
       "add": {"currency": "EUR", "/meta/source": "v1", "total": 0}},
      {"type": "OrderPlaced", "from": 2, "rename_type": "OrderSubmitted"},
      {"type": "OrderSubmitted", "current": 4},
      {"type": "OrderSubmitted", "from": 3, "rename": {"total": "/amounts/gross"}}
  ]})";
  auto u = upcasters::parse(file, &r.reg, "test.json");
  ASSERT_TRUE(u.ok()) << describe(u);
  EXPECT_EQ(u->current(placed), 3);
  EXPECT_EQ(u->current(submitted), 4);
  std::string scratch;
  auto e = run(*u, placed, 1,
               R"({"id":7,"amount":12.50,"legacy":true,"meta":{"by":"ann","old":1},"note":"a\u00e9"})", scratch);
  ASSERT_TRUE(e.ok()) << describe(e);
  // 1 -> 2 (the fields), 2 -> 3 (the type: OrderSubmitted at 3), 3 -> 4.
  EXPECT_EQ(e->type, submitted);
  EXPECT_EQ(e->schema_version, 4);
  EXPECT_EQ(e->stored_schema_version, 1);
  EXPECT_EQ(text_of(e->payload),
            "{\"id\":7,\"meta\":{\"author\":\"ann\",\"source\":\"v1\"},\"note\":\"a\xc3\xa9\",\"currency\":\"EUR\","
            "\"amounts\":{\"gross\":12.50}}");
  // A payload without the fields: add fills them in, the rest is left alone.
  auto f = run(*u, placed, 2, R"({"total":3})", scratch);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(text_of(f->payload), R"({"amounts":{"gross":3}})");
  EXPECT_EQ(f->schema_version, 4);
  // Current already: untouched, the view still points where it pointed.
  const std::string cur = R"({"x":1})";
  auto g = run(*u, submitted, 4, cur, scratch);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->payload.data(), reinterpret_cast<const std::byte*>(cur.data()));
  // Not JSON, and a rename onto a field that exists: errors naming the event.
  auto h = run(*u, placed, 1, "not json", scratch);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message().find("position 4096"), std::string::npos) << h.error().message();
  EXPECT_NE(h.error().message().find("version 1 to 2"), std::string::npos) << h.error().message();
  auto i = run(*u, submitted, 3, R"({"total":1,"amounts":{"gross":2}})", scratch);
  ASSERT_FALSE(i.ok());
  EXPECT_NE(i.error().message().find("already has it"), std::string::npos) << i.error().message();
  auto j = run(*u, placed, 1, R"({"meta":5})", scratch);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.error().message().find("no object"), std::string::npos) << j.error().message();
}

// What an upcast writes must parse back (the next step parses it, and so do
// readers): a pointer deeper than 64 levels is refused with the file, and a
// rename that moves a deep field under a deep path with the event. The fuzzer
// found a 350-level rename target whose output no reader could parse.
TEST(UpcastDeclarative, NothingItWritesNestsPastWhatParses) {
  std::string deep_path;
  for (int i = 0; i < 65; ++i) deep_path += "/k";
  auto refused = upcasters::parse(
      R"({"upcasters": [{"type": 2, "from": 1, "rename": {"a": ")" + deep_path + R"("}}]})", nullptr, "t.json");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), errc::invalid_argument);
  EXPECT_NE(refused.error().message().find("deeper than 64"), std::string::npos) << refused.error().message();

  std::string path;
  for (int i = 0; i < 64; ++i) path += "/k";
  auto u = upcasters::parse(R"({"upcasters": [{"type": 2, "from": 1, "rename": {"a": ")" + path + R"("}}]})",
                            nullptr, "t.json");
  ASSERT_TRUE(u.ok()) << describe(u);
  std::string scratch;
  // A shallow field under the 64-level path: 65 levels, written and parsed back.
  auto ok = run(*u, 2, 1, R"({"a":1})", scratch);
  ASSERT_TRUE(ok.ok()) << describe(ok);
  EXPECT_EQ(ok->schema_version, 2);
  // A field 80 levels deep moved under it: 144 levels, past parse's 128.
  std::string deep = "1";
  for (int i = 0; i < 80; ++i) deep = "[" + deep + "]";
  auto too_deep = run(*u, 2, 1, R"({"a":)" + deep + "}", scratch);
  ASSERT_FALSE(too_deep.ok());
  EXPECT_EQ(too_deep.error().code(), errc::invalid_argument);
  EXPECT_NE(too_deep.error().message().find("position 4096"), std::string::npos) << too_deep.error().message();
  EXPECT_NE(too_deep.error().message().find("deeper than 128"), std::string::npos) << too_deep.error().message();
}

TEST(UpcastDeclarative, RefusesBadFilesNamingTheEntry) {
  registry_dir r;
  (void)r.reg.id_for("A");
  (void)r.reg.id_for("B");
  const std::pair<const char*, const char*> bad[] = {
      {R"({"upcasters": {}})", "expected an object"},
      {R"({"upcasters": [], "x": 1})", "expected an object"},
      {R"([1])", "expected an object"},
      {R"({"upcasters": [1]})", "upcasters[0]: not an object"},
      {R"({"upcasters": [{"from": 1}]})", "upcasters[0]: has no \"type\""},
      {R"({"upcasters": [{"type": "Nope", "from": 1}]})", "not a registered type"},
      {R"({"upcasters": [{"type": "A"}]})", "needs \"from\""},
      {R"({"upcasters": [{"type": "A", "from": 0}]})", "\"from\" must be"},
      {R"({"upcasters": [{"type": "A", "from": 1.0}]})", "\"from\" must be"},
      {R"({"upcasters": [{"type": "A", "from": 65535}]})", "\"from\" must be"},
      {R"({"upcasters": [{"type": "A", "from": 1, "current": 2}]})", "both"},
      {R"({"upcasters": [{"type": "A", "from": 1, "renam": {}}]})", "unknown key \"renam\""},
      {R"({"upcasters": [{"type": "A", "from": 1, "drop": "x"}]})", "\"drop\" must be"},
      {R"({"upcasters": [{"type": "A", "from": 1, "rename": {"a": 1}}]})", "must be a string"},
      {R"({"upcasters": [{"type": "A", "from": 1, "add": []}]})", "\"add\" must be"},
      {R"({"upcasters": [{"type": "A", "from": 1, "drop": ["/a~9"]}]})", "~0 or ~1"},
      {R"({"upcasters": [{"type": "A", "from": 1, "rename_type": "Nope"}]})", "not a registered type"},
      {R"({"upcasters": [{"type": "A", "from": 1}, {"type": "A", "from": 1}]})", "upcasters[1]: type 1 already has"},
      {R"({"upcasters": [{"type": "A", "from": 1}, {"type": "A", "from": 3}]})", "none from version 2"},
      {R"({"upcasters": [{"type": "A", "from": 3}, {"type": "A", "current": 2}]})", "below version 4"},
      {R"({"upcasters": [{"type": 0, "from": 1}]})", "\"type\" must be 1.."},
      {R"({"upcasters": [ )", "test.json: offset"},
  };
  for (const auto& [text, want] : bad) {
    auto u = upcasters::parse(text, &r.reg, "test.json");
    ASSERT_FALSE(u.ok()) << "accepted: " << text;
    EXPECT_EQ(u.error().code(), errc::invalid_argument) << text;
    EXPECT_NE(u.error().message().find(want), std::string::npos) << text << " -> " << u.error().message();
  }
  // Numbers work without a registry; names do not.
  EXPECT_TRUE(upcasters::parse(R"({"upcasters": [{"type": 5, "from": 1}]})", nullptr).ok());
  auto named = upcasters::parse(R"({"upcasters": [{"type": "A", "from": 1}]})", nullptr);
  ASSERT_FALSE(named.ok());
  EXPECT_NE(named.error().message().find("types file"), std::string::npos);
  auto missing = upcasters::load(r.dir.sub("absent.json"), &r.reg);
  EXPECT_EQ(missing.error().code(), errc::not_found);
}

// ---------------------------------------------------------------------------
// The types file's versions.

TEST(TypeRegistryVersions, PersistNeverGoDownAndKeepTheOldFormatUntilUsed) {
  temp_dir d;
  {
    auto reg = type_registry::open(d.path()).value();
    ASSERT_EQ(reg.id_for("A").value(), 1u);
    ASSERT_EQ(reg.id_for("B").value(), 2u);
  }
  EXPECT_EQ(slurp(d.sub("types")), "1 A\n2 B\n");  // format 1 while no version is recorded
  {
    auto reg = type_registry::open(d.path()).value();
    EXPECT_EQ(reg.current_version(1), 0);
    EXPECT_OK(reg.check_append(1, 60000));
    EXPECT_OK(reg.set_current_version("B", 3));
    EXPECT_OK(reg.set_current_version("C with spaces", 2));
    EXPECT_ERRC(reg.set_current_version("B", 2), errc::invalid_argument);
    EXPECT_OK(reg.set_current_version("B", 3));
  }
  EXPECT_EQ(slurp(d.sub("types")), "#varve-types 2\n1 0 A\n2 3 B\n3 2 C with spaces\n");
  auto reg = type_registry::open(d.path()).value();
  EXPECT_EQ(reg.current_version(2), 3);
  EXPECT_EQ(reg.current_version(3), 2);
  EXPECT_EQ(reg.find("C with spaces"), std::optional<uint32_t>(3));
  EXPECT_OK(reg.check_append(2, 3));
  auto newer = reg.check_append(2, 4);
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.message().find("'B' at schema version 4"), std::string::npos) << newer.message();
  // A registry's versions count in upcasters::parse.
  auto u = upcasters::parse(R"({"upcasters": [{"type": "A", "from": 1}]})", &reg);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->current(1), 2);
  EXPECT_EQ(u->current(2), 3);
  EXPECT_ERRC(u->check_append(2, 4), errc::invalid_argument);
  // A newer format, and damage, are refused naming the file.
  put_file(d.sub("types"), "#varve-types 3\n1 A\n");
  EXPECT_ERRC(type_registry::open(d.path()), errc::newer_format);
  put_file(d.sub("types"), "#varve-types 2\n1 A\n");
  auto bad = type_registry::open(d.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), errc::corruption);
  EXPECT_NE(bad.error().message().find("offset 15 (line 2)"), std::string::npos) << bad.error().message();
  put_file(d.sub("types"), "1 A\n1 B\n");
  EXPECT_ERRC(type_registry::open(d.path()), errc::corruption);
}

// ---------------------------------------------------------------------------
// Every read path, against a model.

// The model's chains, written independently of the set below:
//   type 1: 1 -> 2 appends "+2", 2 -> 3 appends "+3" (current 3)
//   type 2: 1 -> 2 becomes type 3, payload wrapped in "R(...)"
//   type 3: current 2 (declared), no steps of its own
//   type 4: unknown to the set (any version, never changed)
struct expected_view {
  uint32_t type;
  uint16_t version;
  std::string payload;
};
expected_view model_upcast(uint32_t type, uint16_t v, std::string p) {
  if (type == 1) {
    for (; v < 3; ++v) p += "+" + std::to_string(v + 1);
  } else if (type == 2 && v == 1) {
    type = 3;
    v = 2;
    p = "R(" + p + ")";
  }
  return {type, v, p};
}

std::shared_ptr<const upcasters> model_set() {
  upcasters u;
  auto plus = [](upcast_event& e) {
    e.payload += "+" + std::to_string(e.schema_version + 1);
    return status{};
  };
  EXPECT_OK(u.add(1, 2, plus));
  EXPECT_OK(u.add(1, 1, plus));
  EXPECT_OK(u.add(2, 1, [](upcast_event& e) {
    EXPECT_EQ(e.schema_version, 1);
    e.type = 3;
    e.payload = "R(" + e.payload + ")";
    return status{};
  }));
  EXPECT_OK(u.set_current(3, 2));
  return std::make_shared<const upcasters>(std::move(u));
}

struct stored_event {
  std::string stream;
  uint32_t type;
  uint16_t version;
  std::string payload;
  uint64_t position;
};

void expect_upcast(const event_view& e, const stored_event& s, const char* where) {
  const expected_view want = model_upcast(s.type, s.version, s.payload);
  EXPECT_EQ(e.position.value, s.position) << where;
  EXPECT_EQ(e.type, want.type) << where << " at " << s.position;
  EXPECT_EQ(e.schema_version, want.version) << where << " at " << s.position;
  EXPECT_EQ(e.stored_schema_version, s.version) << where << " at " << s.position;
  EXPECT_EQ(text_of(e.payload), want.payload) << where << " at " << s.position;
}

TEST(Upcast, EveryReadPathHandsOutTheCurrentVersionAndTheLogKeepsTheStoredOne) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::printf("seed %" PRIu64 "\n", seed);
    temp_dir d;
    log_options o;
    o.segment_bytes = 64 << 10;
    o.upcasters = model_set();
    auto log = event_log::create(d.path(), o).value();
    std::mt19937_64 rng(seed);
    std::vector<stored_event> model;
    std::map<std::string, std::vector<size_t>> by_stream;
    const uint16_t max_version[] = {0, 3, 1, 2, 9};
    for (int i = 0; i < 3000; ++i) {
      const std::string stream = "s-" + std::to_string(rng() % 40);
      const uint32_t type = 1 + static_cast<uint32_t>(rng() % 4);
      const uint16_t version = static_cast<uint16_t>(1 + rng() % max_version[type]);
      const std::string payload = "p" + std::to_string(i) + std::string(rng() % 200, 'x');
      event_data e;
      e.type = type;
      e.schema_version = version;
      e.payload = event_data::bytes(payload);
      auto r = log->append(stream_id(stream), expected_version::any(), e);
      ASSERT_TRUE(r.ok()) << describe(r);
      by_stream[stream].push_back(model.size());
      model.push_back({stream, type, version, payload, r->first.value});
    }
    // Appends newer than the current versions are refused, writing nothing.
    const position end = log->committed_position();
    event_data newer;
    newer.type = 1;
    newer.schema_version = 4;
    newer.payload = event_data::bytes("x");
    auto refused = log->append(stream_id("s-0"), expected_version::any(), newer);
    ASSERT_ERRC(refused, errc::invalid_argument);
    EXPECT_NE(refused.error().message().find("newer than its current version 3"), std::string::npos);
    newer.type = 3;
    newer.schema_version = 3;
    ASSERT_ERRC(log->append(stream_id("s-0"), expected_version::any(), newer), errc::invalid_argument);
    EXPECT_EQ(log->committed_position(), end);

    // The log in order, also filtered (filters see the stored type).
    {
      log_reader r = log->read();
      event_view e;
      size_t i = 0;
      while (r.next(e).value()) expect_upcast(e, model.at(i++), "log_reader");
      EXPECT_EQ(i, model.size());
      event_filter f;
      f.types = {2};
      log_reader fr = log->read(position{}, f);
      size_t n = 0;
      for (size_t k = 0; fr.next(e).value();) {
        while (model.at(k).type != 2) ++k;
        expect_upcast(e, model.at(k++), "filtered log_reader");
        ++n;
      }
      EXPECT_GT(n, 0u);
    }
    // The same through next_batch: an upcast payload is in the reader's
    // buffer, so its event ends the batch; every view of a batch is checked
    // before the next call. Without upcasting, batches hold plain views.
    for (bool upcast : {true, false}) {
      for (size_t size : {size_t{1}, size_t{8}, size_t{64}}) {
        log_reader r = log->read();
        if (!upcast) r.without_upcasting();
        std::vector<event_view> views(size);
        size_t i = 0, batches = 0;
        for (;;) {
          auto got = r.next_batch(views);
          ASSERT_TRUE(got.ok()) << describe(got);
          if (got.value() == 0) break;
          ++batches;
          for (size_t k = 0; k < got.value(); ++k) {
            const stored_event& s = model.at(i++);
            if (upcast) {
              expect_upcast(views[k], s, "next_batch");
            } else {
              EXPECT_EQ(views[k].schema_version, s.version);
              EXPECT_EQ(text_of(views[k].payload), s.payload);
            }
          }
        }
        EXPECT_EQ(i, model.size()) << "batch size " << size;
        if (!upcast && size == 64) {
          EXPECT_LT(batches, model.size() / 8) << "plain views come in full batches";
        }
        // The lazy form: an upcast event through the reader's view, the last
        // of its batch; one left as stored a ref to its record.
        r = log->read();
        if (!upcast) r.without_upcasting();
        std::vector<event_ref> refs(size);
        i = 0;
        batches = 0;
        for (;;) {
          auto got = r.next_batch(refs);
          ASSERT_TRUE(got.ok()) << describe(got);
          if (got.value() == 0) break;
          ++batches;
          for (size_t k = 0; k < got.value(); ++k) {
            const stored_event& s = model.at(i++);
            const event_view v = refs[k].view();
            EXPECT_EQ(refs[k].type(), v.type);
            EXPECT_EQ(refs[k].schema_version(), v.schema_version);
            EXPECT_EQ(text_of(refs[k].payload()), text_of(v.payload));
            if (upcast) {
              expect_upcast(v, s, "next_batch(event_ref)");
              if (v.schema_version != v.stored_schema_version) {
                EXPECT_EQ(k + 1, got.value()) << "an upcast event inside a batch of refs";
              }
            } else {
              EXPECT_EQ(v.schema_version, s.version);
              EXPECT_EQ(text_of(v.payload), s.payload);
            }
          }
        }
        EXPECT_EQ(i, model.size()) << "refs, batch size " << size;
        if (!upcast && size == 64) {
          EXPECT_LT(batches, model.size() / 8) << "refs come in full batches";
        }
      }
    }
    // Without upcasting: the bytes as written.
    {
      log_reader r = log->read();
      r.without_upcasting();
      event_view e;
      size_t i = 0;
      while (r.next(e).value()) {
        const stored_event& s = model.at(i++);
        EXPECT_EQ(e.type, s.type);
        EXPECT_EQ(e.schema_version, s.version);
        EXPECT_EQ(text_of(e.payload), s.payload);
      }
      EXPECT_EQ(i, model.size());
    }
    // Each stream, both ways.
    for (const auto& [stream, idx] : by_stream) {
      auto fw = log->read_stream(stream_id(stream)).value();
      event_view e;
      size_t i = 0;
      while (fw.next(e).value()) expect_upcast(e, model[idx.at(i++)], "stream_reader");
      EXPECT_EQ(i, idx.size());
      auto bw = log->read_stream(stream_id(stream), kLatestVersion, read_direction::backward).value();
      while (bw.next(e).value()) expect_upcast(e, model[idx.at(--i)], "backward stream_reader");
      EXPECT_EQ(i, 0u);
    }
    // A subscription.
    {
      auto sub = subscription::open(*log, position{}).value();
      event_view e;
      size_t i = 0;
      while (i < model.size() && sub.next(e, std::chrono::milliseconds(100)).value())
        expect_upcast(e, model.at(i++), "subscription");
      EXPECT_EQ(i, model.size());
    }
    // A replay on several threads: each stream's events, upcast, in order.
    {
      struct collect {
        std::map<std::string, std::vector<std::tuple<uint32_t, uint16_t, uint16_t, std::string>>> seen;
        void apply(const event_view& e) {
          seen[std::string(e.stream)].emplace_back(e.type, e.schema_version, e.stored_schema_version,
                                                   text_of(e.payload));
        }
      };
      auto r = replay(*log).partitions(8).threads(3).run([](uint32_t) { return collect{}; });
      ASSERT_OK(r.error);
      std::map<std::string, std::vector<std::tuple<uint32_t, uint16_t, uint16_t, std::string>>> all;
      for (const collect& c : r.states)
        for (const auto& [s, v] : c.seen) all[s] = v;
      ASSERT_EQ(all.size(), by_stream.size());
      // Over event_refs, 1 and 3 threads: the upcast events reach them
      // through refs to the upcast views.
      struct collect_refs {
        std::map<std::string, std::vector<std::tuple<uint32_t, uint16_t, uint16_t, std::string>>> seen;
        void apply(const event_ref& e) {
          seen[std::string(e.stream())].emplace_back(e.type(), e.schema_version(), e.stored_schema_version(),
                                                     text_of(e.payload()));
        }
      };
      for (uint32_t threads : {1u, 3u}) {
        auto rr = replay(*log).partitions(8).threads(threads).run([](uint32_t) { return collect_refs{}; });
        ASSERT_OK(rr.error);
        std::map<std::string, std::vector<std::tuple<uint32_t, uint16_t, uint16_t, std::string>>> over_refs;
        for (const collect_refs& c : rr.states)
          for (const auto& [s, v] : c.seen) over_refs[s] = v;
        EXPECT_EQ(over_refs, all) << threads << " thread(s)";
      }
      for (const auto& [stream, idx] : by_stream) {
        const auto& got = all[stream];
        ASSERT_EQ(got.size(), idx.size()) << stream;
        for (size_t k = 0; k < idx.size(); ++k) {
          const stored_event& s = model[idx[k]];
          const expected_view want = model_upcast(s.type, s.version, s.payload);
          EXPECT_EQ(got[k], std::make_tuple(want.type, want.version, s.version, want.payload)) << stream << " " << k;
        }
      }
    }
    // load_aggregate folds the upcast events.
    {
      auto store = snapshot_store::open(*log).value();
      const std::string stream = by_stream.begin()->first;
      auto l = load_aggregate<std::string>(
          *log, *store, stream_id(stream), 1, [](std::span<const std::byte>) { return std::optional<std::string>(); },
          [](std::string& st, const event_view& e) { st += text_of(e.payload) + ";"; });
      ASSERT_TRUE(l.ok()) << describe(l);
      std::string want;
      for (size_t k : by_stream.begin()->second) {
        const stored_event& s = model[k];
        want += model_upcast(s.type, s.version, s.payload).payload + ";";
      }
      EXPECT_EQ(l->state, want);
    }
    // Reopened read-only without upcasters: the stored events; set later:
    // readers made after the call upcast, one made before does not.
    {
      auto ro = event_log::open_read_only(d.path()).value();
      log_reader before = ro->read();
      ASSERT_OK(ro->set_upcasters(model_set()));
      log_reader after = ro->read();
      event_view a, b;
      size_t i = 0;
      while (before.next(a).value()) {
        ASSERT_TRUE(after.next(b).value());
        const stored_event& s = model.at(i++);
        EXPECT_EQ(text_of(a.payload), s.payload);
        expect_upcast(b, s, "after set_upcasters");
      }
      EXPECT_EQ(i, model.size());
    }
  }
}

TEST(Upcast, AFailingStepStopsTheReaderOnThatEventAndAGapIsRefusedUpFront) {
  temp_dir d;
  auto log = event_log::create(d.path()).value();
  for (int i = 0; i < 5; ++i) {
    event_data e;
    e.type = 1;
    e.schema_version = 1;
    const std::string p = "e" + std::to_string(i);
    e.payload = event_data::bytes(p);
    ASSERT_OK(log->append(stream_id("s"), expected_version::any(), e));
  }
  upcasters u;
  ASSERT_OK(u.add(1, 1, [](upcast_event& e) {
    if (e.payload == "e2") return status(errc::invalid_argument, "cannot read e2");
    if (e.payload == "e3") throw std::runtime_error("boom");
    e.payload += "!";
    return status{};
  }));
  ASSERT_OK(log->set_upcasters(std::make_shared<const upcasters>(std::move(u))));
  log_reader r = log->read();
  event_view e;
  ASSERT_TRUE(r.next(e).value());
  EXPECT_EQ(text_of(e.payload), "e0!");
  ASSERT_TRUE(r.next(e).value());
  const position stuck = r.where();
  for (int k = 0; k < 2; ++k) {
    auto bad = r.next(e);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.error().message().find("position " + std::to_string(stuck.value)), std::string::npos)
        << bad.error().message();
    EXPECT_NE(bad.error().message().find("cannot read e2"), std::string::npos);
    EXPECT_EQ(r.where(), stuck);
  }
  auto sr = log->read_stream(stream_id("s"), 4).value();
  auto thrown = sr.next(e);
  ASSERT_FALSE(thrown.ok());
  EXPECT_NE(thrown.error().message().find("boom"), std::string::npos);

  // A chain with a gap: refused when handed over, the old set kept.
  upcasters gap;
  ASSERT_OK(gap.add(1, 1, [](upcast_event&) { return status{}; }));
  ASSERT_OK(gap.add(1, 3, [](upcast_event&) { return status{}; }));
  EXPECT_ERRC(log->set_upcasters(std::make_shared<const upcasters>(std::move(gap))), errc::invalid_argument);
  log_options o;
  upcasters gap2;
  ASSERT_OK(gap2.add(7, 2, [](upcast_event&) { return status{}; }));
  ASSERT_OK(gap2.add(7, 4, [](upcast_event&) { return status{}; }));
  o.upcasters = std::make_shared<const upcasters>(std::move(gap2));
  ASSERT_OK(log->close());
  EXPECT_ERRC(event_log::open(d.path(), o), errc::invalid_argument);
  EXPECT_ERRC(event_log::open_read_only(d.path(), o), errc::invalid_argument);
  // Bad registrations.
  upcasters v;
  EXPECT_ERRC(v.add(1, 0, [](upcast_event&) { return status{}; }), errc::invalid_argument);
  EXPECT_ERRC(v.add(1 << 21, 1, [](upcast_event&) { return status{}; }), errc::invalid_argument);
  EXPECT_ERRC(v.add(1, 1, nullptr), errc::invalid_argument);
  EXPECT_ERRC(v.set_current(1, 0), errc::invalid_argument);
}

TEST(Upcast, AMultiStreamAppendNewerThanCurrentWritesNothing) {
  temp_dir d;
  log_options o;
  o.upcasters = model_set();
  auto log = event_log::create(d.path(), o).value();
  event_data ok, newer;
  ok.type = 1;
  ok.schema_version = 3;
  ok.payload = event_data::bytes("a");
  newer = ok;
  newer.type = 3;
  newer.schema_version = 7;
  const stream_batch batches[] = {{stream_id("a"), expected_version::any(), std::span<const event_data>(&ok, 1)},
                                  {stream_id("b"), expected_version::any(), std::span<const event_data>(&newer, 1)}};
  std::vector<append_result> acks(2);
  EXPECT_ERRC(log->append(std::span<const stream_batch>(batches), std::span<append_result>(acks)),
              errc::invalid_argument);
  EXPECT_EQ(log->version_of(stream_id("a")), 0u);
}

}  // namespace
