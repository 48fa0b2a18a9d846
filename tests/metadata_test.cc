// Event metadata (event_data::metadata, event_view::metadata, FORMAT.md
// 4.1a): a small key/value map per event, stored in the record and returned
// by every read, against a model; the bounds refused at append, writing
// nothing; a log of an older format takes metadata only in segments that say
// version 3; malformed metadata under a valid checksum is damage; a SIGKILLed
// writer loses no acknowledged metadata.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cinttypes>
#include <map>
#include <random>

#include "base/record_format.h"
#include "base/segment_format.h"
#include "test_util.h"

namespace {

using namespace varve;
using namespace varve_test;

using entries = std::vector<std::pair<std::string, std::string>>;

entries random_metadata(std::mt19937_64& rng) {
  entries out;
  const size_t n = rng() % 3 == 0 ? 0 : rng() % 6;
  for (size_t i = 0; i < n; ++i) {
    std::string key = "k" + std::to_string(i) + std::string(rng() % 20, 'a' + static_cast<char>(rng() % 26));
    std::string value(rng() % 100, '\0');
    for (char& c : value) c = static_cast<char>(rng());  // any bytes
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

std::vector<metadata_entry> view_of(const entries& m) {
  std::vector<metadata_entry> out;
  for (const auto& [k, v] : m) out.push_back({k, v});
  return out;
}

entries read_back(const event_view& e) {
  entries out;
  for (metadata_entry m : e.metadata) out.emplace_back(std::string(m.key), std::string(m.value));
  return out;
}

log_options small() {
  log_options o;
  o.segment_bytes = 64 << 10;
  return o;
}

TEST(Metadata, EveryReadReturnsWhatWasAppendedInSingleBatchAndMultiStreamAppends) {
  for (uint64_t seed : {11u, 12u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::printf("seed %" PRIu64 "\n", seed);
    temp_dir d;
    std::mt19937_64 rng(seed);
    std::vector<std::pair<std::string, entries>> model;  // by sequence: stream, metadata
    {
      auto log = event_log::create(d.path(), small()).value();
      for (int round = 0; round < 600; ++round) {
        const int kind = static_cast<int>(rng() % 3);
        const size_t n = 1 + rng() % 4;
        std::vector<entries> metas(n);
        std::vector<std::vector<metadata_entry>> views(n);
        std::vector<event_data> evs(n);
        std::vector<std::string> streams(n);
        for (size_t i = 0; i < n; ++i) {
          metas[i] = random_metadata(rng);
          views[i] = view_of(metas[i]);
          evs[i].type = 1;
          evs[i].payload = event_data::bytes("payload");
          evs[i].metadata = views[i];
          streams[i] = "s-" + std::to_string(rng() % 30);
        }
        if (kind == 0) {
          for (size_t i = 0; i < n; ++i) {
            ASSERT_OK(log->append(stream_id(streams[i]), expected_version::any(), evs[i]));
            model.emplace_back(streams[i], metas[i]);
          }
        } else if (kind == 1) {
          ASSERT_OK(log->append(stream_id(streams[0]), expected_version::any(), std::span<const event_data>(evs)));
          for (size_t i = 0; i < n; ++i) model.emplace_back(streams[0], metas[i]);
        } else {
          // One event per distinct stream, in one unit.
          std::vector<stream_batch> batches;
          std::map<std::string, bool> seen;
          for (size_t i = 0; i < n; ++i) {
            if (seen[streams[i]]) continue;
            seen[streams[i]] = true;
            batches.push_back({stream_id(streams[i]), expected_version::any(), std::span<const event_data>(&evs[i], 1)});
            model.emplace_back(streams[i], metas[i]);
          }
          std::vector<append_result> acks(batches.size());
          ASSERT_OK(log->append(std::span<const stream_batch>(batches), std::span<append_result>(acks)));
        }
      }
      ASSERT_OK(log->close());
    }
    // Reopened (recovery scans the tail): the log, each stream, a replay.
    auto log = event_log::open(d.path(), small()).value();
    ASSERT_GE(list_segments(d.path()).size(), 3u);
    {
      log_reader r = log->read();
      event_view e;
      size_t i = 0;
      while (r.next(e).value()) {
        ASSERT_LT(i, model.size());
        EXPECT_EQ(std::string(e.stream), model[i].first);
        EXPECT_EQ(read_back(e), model[i].second) << "sequence " << i;
        EXPECT_EQ(e.metadata.size(), model[i].second.size());
        for (const auto& [k, v] : model[i].second) EXPECT_EQ(e.metadata.find(k), std::optional<std::string_view>(v));
        EXPECT_FALSE(e.metadata.find("absent").has_value());
        ++i;
      }
      EXPECT_EQ(i, model.size());
    }
    std::map<std::string, std::vector<entries>> by_stream;
    for (const auto& [s, m] : model) by_stream[s].push_back(m);
    for (const auto& [s, ms] : by_stream) {
      auto rd = log->read_stream(stream_id(s)).value();
      event_view e;
      size_t i = 0;
      while (rd.next(e).value()) EXPECT_EQ(read_back(e), ms.at(i++)) << s;
      EXPECT_EQ(i, ms.size());
    }
    struct collect {
      std::map<std::string, std::vector<entries>> seen;
      void apply(const event_view& e) { seen[std::string(e.stream)].push_back(read_back(e)); }
    };
    auto rp = replay(*log).partitions(4).threads(2).run([](uint32_t) { return collect{}; });
    ASSERT_OK(rp.error);
    std::map<std::string, std::vector<entries>> replayed;
    for (const collect& c : rp.states)
      for (const auto& [s, v] : c.seen) replayed[s] = v;
    EXPECT_EQ(replayed, by_stream);
    // Over event_refs (the metadata read through the ref), 1 and 2 threads.
    struct collect_refs {
      std::map<std::string, std::vector<entries>> seen;
      void apply(const event_ref& e) { seen[std::string(e.stream())].push_back(read_back(e.view())); }
    };
    for (uint32_t threads : {1u, 2u}) {
      auto rr = replay(*log).partitions(4).threads(threads).run([](uint32_t) { return collect_refs{}; });
      ASSERT_OK(rr.error);
      std::map<std::string, std::vector<entries>> over_refs;
      for (const collect_refs& c : rr.states)
        for (const auto& [s, v] : c.seen) over_refs[s] = v;
      EXPECT_EQ(over_refs, by_stream) << threads << " thread(s)";
    }
    ASSERT_OK_AND_ASSIGN(verify_report rep, verify_log(d.path()));
    EXPECT_OK(rep.first_problem);
  }
}

TEST(Metadata, BoundsAreRefusedNamingTheEntryAndNothingIsWritten) {
  temp_dir d;
  auto log = event_log::create(d.path(), small()).value();
  const std::string big_value(65536, 'v'), long_key(256, 'k');
  const std::string fill(1400, 'f');
  std::vector<metadata_entry> too_many;
  std::vector<std::string> keys;
  for (int i = 0; i < 65; ++i) keys.push_back("k" + std::to_string(i));
  for (const auto& k : keys) too_many.push_back({k, ""});
  const std::vector<std::pair<std::vector<metadata_entry>, std::string>> bad = {
      {{{"", "x"}}, "metadata[0]: a key has 1 to 255 bytes"},
      {{{"a", "1"}, {long_key, "x"}}, "metadata[1]: a key has 1 to 255 bytes, got 256"},
      {{{"a", big_value}}, "longer than 65535"},
      {{{"a", "1"}, {"b", "2"}, {"a", "3"}}, "metadata[2]: key 'a' appears twice"},
      {{{"varve.type", "x"}}, "reserved"},
      {too_many, "at most 64 metadata entries"},
      {{{"a", fill}, {"b", fill}, {"c", fill}}, "over the 4096-byte bound"},
  };
  for (const auto& [m, want] : bad) {
    event_data e;
    e.type = 1;
    e.payload = event_data::bytes("x");
    e.metadata = m;
    auto r = log->append(stream_id("s"), expected_version::any(), e);
    ASSERT_ERRC(r, errc::invalid_argument);
    EXPECT_NE(r.error().message().find(want), std::string::npos) << r.error().message();
    // In a batch after a good event, and in a multi-stream unit: nothing.
    event_data good;
    good.type = 1;
    good.payload = event_data::bytes("ok");
    const event_data two[] = {good, e};
    EXPECT_ERRC(log->append(stream_id("s"), expected_version::any(), std::span<const event_data>(two)),
                errc::invalid_argument);
    const stream_batch units[] = {{stream_id("a"), expected_version::any(), std::span<const event_data>(&good, 1)},
                                  {stream_id("b"), expected_version::any(), std::span<const event_data>(&e, 1)}};
    std::vector<append_result> acks(2);
    auto u = log->append(std::span<const stream_batch>(units), std::span<append_result>(acks));
    ASSERT_ERRC(u, errc::invalid_argument);
    EXPECT_NE(u.error().message().find("streams[1] "), std::string::npos) << u.error().message();
  }
  EXPECT_EQ(log->committed_position().value, 64u);
  // The bound itself is fine: 4096 encoded bytes exactly.
  const std::string v(4096 - 3 - 1, 'v');
  const metadata_entry edge[] = {{"k", v}};
  event_data e;
  e.type = 1;
  e.metadata = edge;
  ASSERT_OK(log->append(stream_id("s"), expected_version::any(), e));
  event_view back;
  log_reader r = log->read();
  ASSERT_TRUE(r.next(back).value());
  EXPECT_EQ(back.metadata.find("k"), std::optional<std::string_view>(v));
}

TEST(Metadata, MalformedMetadataUnderAValidChecksumIsDamage) {
  const metadata_entry m[] = {{"user", "ann"}, {"k", ""}};
  event_data e;
  e.type = 3;
  e.payload = event_data::bytes("body");
  e.metadata = m;
  const uint32_t size = record::encoded_size(1, e);
  std::vector<std::byte> rec(size);
  record::header_fields h{4096, 0, 1, 5, ~uint64_t{0}, record::kFlagBatchBegin | record::kFlagBatchEnd};
  ASSERT_EQ(record::encode(rec.data(), size, "s", e, h), size);
  event_view v;
  ASSERT_EQ(record::decode(rec.data(), rec.size(), 4096, true, v).outcome, record::decode_outcome::event);
  EXPECT_EQ(read_back(v), (entries{{"user", "ann"}, {"k", ""}}));
  // Where the metadata starts: after the header, the stream id and the payload.
  const size_t at = record::kHeaderSize + 1 + 4;
  auto mutate_and_reseal = [&](size_t off, uint8_t b) {
    std::vector<std::byte> bad = rec;
    bad[off] = std::byte{b};
    const uint64_t sum = XXH3_64bits(bad.data() + 8, bad.size() - 8);
    std::memcpy(bad.data(), &sum, 8);
    event_view out;
    return record::decode(bad.data(), bad.size(), 4096, true, out);
  };
  for (auto [off, b] : std::vector<std::pair<size_t, uint8_t>>{{at, 0},          // empty key
                                                                {at, 200},        // key past the end
                                                                {at + 1, 0xff},   // value past the end
                                                                {at + 10, 2}}) {  // second entry's key too long
    record::decoded d = mutate_and_reseal(off, b);
    EXPECT_EQ(d.outcome, record::decode_outcome::invalid) << off;
    EXPECT_STREQ(d.why, "malformed metadata") << off;
  }
  // A metadata_len that disagrees with the record's length.
  std::vector<std::byte> bad = rec;
  const uint32_t len = 1000;
  std::memcpy(bad.data() + 60, &len, 4);
  const uint64_t sum = XXH3_64bits(bad.data() + 8, bad.size() - 8);
  std::memcpy(bad.data(), &sum, 8);
  event_view out;
  EXPECT_EQ(record::decode(bad.data(), bad.size(), 4096, true, out).outcome, record::decode_outcome::invalid);
}

TEST(Metadata, AnOlderLogTakesMetadataOnlyInSegmentsThatSayVersionThree) {
  temp_dir d;
  {
    auto log = event_log::create(d.path(), small()).value();
    event_data e{.type = 1, .payload = event_data::bytes("old")};
    for (int i = 0; i < 10; ++i) ASSERT_OK(log->append(stream_id("old"), expected_version::any(), e));
    ASSERT_OK(log->close());
  }
  // What a version 2 varve wrote: meta and segments say 2.
  ASSERT_NO_FATAL_FAILURE(set_format_version(d.path() + "/varve.meta", 2));
  for (const auto& s : list_segments(d.path())) ASSERT_NO_FATAL_FAILURE(set_format_version(s, 2));
  const metadata_entry m[] = {{"who", "me"}};
  {
    auto log = event_log::open(d.path(), small()).value();
    event_data plain{.type = 1, .payload = event_data::bytes("plain")};
    ASSERT_OK(log->append(stream_id("old"), expected_version::any(), plain));  // fits the old segment
    event_data e{.type = 1, .payload = event_data::bytes("new")};
    e.metadata = m;
    ASSERT_OK_AND_ASSIGN(append_result r, log->append(stream_id("new"), expected_version::any(), e));
    EXPECT_EQ(r.first.value >> 16, 1u) << "metadata went into the version 2 segment";
    ASSERT_OK(log->close());
  }
  const auto segs = list_segments(d.path());
  ASSERT_EQ(segs.size(), 2u);
  uint32_t v0 = 0, v1 = 0;
  std::memcpy(&v0, read_file(segs[0]).data() + 8, 4);
  std::memcpy(&v1, read_file(segs[1]).data() + 8, 4);
  EXPECT_EQ(v0, 2u);
  EXPECT_EQ(v1, segment_format::kFormatVersion);  // this varve's own version (3 or later)
  auto log = event_log::open_read_only(d.path()).value();
  read_outcome all = read_all(*log);
  ASSERT_OK(all.error);
  ASSERT_EQ(all.events.size(), 12u);
  ASSERT_OK_AND_ASSIGN(verify_report rep, verify_log(d.path()));
  EXPECT_OK(rep.first_problem);
}

TEST(Metadata, ARetryWithOtherMetadataIsAConflictAndWithTheSameADuplicate) {
  temp_dir d;
  auto log = event_log::create(d.path(), small()).value();
  std::mt19937_64 rng(5);
  const id128 id = random_id(rng);
  const metadata_entry m1[] = {{"a", "1"}}, m2[] = {{"a", "2"}};
  event_data e{.type = 1, .payload = event_data::bytes("x"), .event_id = &id};
  e.metadata = m1;
  ASSERT_OK(log->append(stream_id("s"), expected_version::no_stream(), e));
  ASSERT_OK_AND_ASSIGN(append_result dup, log->append(stream_id("s"), expected_version::no_stream(), e));
  EXPECT_TRUE(dup.duplicate);
  e.metadata = m2;
  EXPECT_ERRC(log->append(stream_id("s"), expected_version::no_stream(), e), errc::wrong_expected_version);
  e.metadata = {};
  EXPECT_ERRC(log->append(stream_id("s"), expected_version::no_stream(), e), errc::wrong_expected_version);
  EXPECT_EQ(log->version_of(stream_id("s")), 1u);
}

// A writer killed at a random moment: every event it had acknowledged (in
// mode none, committed is acknowledged) comes back with its metadata.
TEST(Metadata, AKilledWriterLosesNoAcknowledgedMetadata) {
  for (int round = 0; round < 3; ++round) {
    temp_dir d;
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto log = event_log::create(d.path(), small());
      if (!log) ::_exit(2);
      for (uint64_t i = 0;; ++i) {
        const std::string v = "value-" + std::to_string(i);
        const std::string tenant = "t" + std::to_string(i % 7);
        const metadata_entry m[] = {{"seq", v}, {"tenant", tenant}};
        event_data e{.type = 1, .payload = event_data::bytes(v)};
        e.metadata = m;
        if (!(*log)->append(stream_id("s-" + std::to_string(i % 5)), expected_version::any(), e)) ::_exit(3);
        if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(4);
      }
    }
    ::close(fds[1]);
    ::usleep(100'000 + 50'000 * round);
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    uint64_t acked = 0, x = 0;
    bool any = false;
    while (::read(fds[0], &x, sizeof x) == sizeof x) acked = x, any = true;
    ::close(fds[0]);
    ASSERT_TRUE(any) << "the writer acknowledged nothing";
    auto log = event_log::open(d.path(), small()).value();
    log_reader r = log->read();
    event_view e;
    uint64_t i = 0;
    while (r.next(e).value()) {
      const std::string v = "value-" + std::to_string(i);
      ASSERT_EQ(read_back(e), (entries{{"seq", v}, {"tenant", "t" + std::to_string(i % 7)}})) << i;
      ++i;
    }
    EXPECT_GT(i, acked) << "acknowledged events were lost";
  }
}

}  // namespace
