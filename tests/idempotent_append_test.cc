// Idempotent appends (event_log::append, varve/log.h): a batch whose event
// ids already sit where the append asks to go is acknowledged again, marked
// duplicate, and nothing is written; the same ids with other content are a
// conflict; the log itself is the record, so it holds across a crash and a
// reopen. Checked against a model of the documented window.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <random>

#include "test_util.h"

namespace {

using namespace varve;
using namespace varve_test;

struct batch {
  std::vector<id128> ids;
  std::vector<std::string> payloads;
  uint32_t type = 1;
  std::vector<event_data> data() const {
    std::vector<event_data> out(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      out[i].type = type;
      out[i].payload = event_data::bytes(payloads[i]);
      out[i].event_id = &ids[i];
    }
    return out;
  }
};

batch make_batch(std::mt19937_64& rng, size_t n) {
  batch b;
  for (size_t i = 0; i < n; ++i) {
    b.ids.push_back(random_id(rng));
    b.payloads.push_back("payload-" + std::to_string(rng()));
  }
  return b;
}

result<append_result> put(event_log& log, std::string_view s, expected_version ev, const batch& b) {
  const auto d = b.data();
  return log.append(stream_id(s), ev, std::span<const event_data>(d));
}

log_options opts() {
  log_options o;
  o.segment_bytes = 64 << 10;
  return o;
}

void expect_same_ack(const append_result& dup, const append_result& orig) {
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.first, orig.first);
  EXPECT_EQ(dup.end, orig.end);
  EXPECT_EQ(dup.first_sequence, orig.first_sequence);
  EXPECT_EQ(dup.first_version, orig.first_version);
  EXPECT_EQ(dup.last_version, orig.last_version);
}

TEST(IdempotentAppend, ARetryAtTheSameExpectedVersionIsTheOriginalAckAndWritesNothing) {
  temp_dir d;
  std::mt19937_64 rng(1);
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
  const batch a = make_batch(rng, 3), b = make_batch(rng, 1);
  ASSERT_OK_AND_ASSIGN(append_result first, put(*log, "cart-1", expected_version::no_stream(), a));
  EXPECT_FALSE(first.duplicate);
  const position end = log->committed_position();
  ASSERT_OK_AND_ASSIGN(append_result again, put(*log, "cart-1", expected_version::no_stream(), a));
  expect_same_ack(again, first);
  ASSERT_OK_AND_ASSIGN(again, put(*log, "cart-1", expected_version::exact(0), a));
  expect_same_ack(again, first);
  EXPECT_EQ(log->committed_position(), end) << "a duplicate writes nothing";
  EXPECT_EQ(log->version_of(stream_id("cart-1")), 3u);

  // Any age, for an exact expected version: after more events it is still found.
  ASSERT_OK_AND_ASSIGN(append_result second, put(*log, "cart-1", expected_version::exact(3), b));
  for (int i = 0; i < 20; ++i) ASSERT_OK(put(*log, "cart-1", expected_version::any(), make_batch(rng, 1)));
  ASSERT_OK_AND_ASSIGN(again, put(*log, "cart-1", expected_version::no_stream(), a));
  expect_same_ack(again, first);
  ASSERT_OK_AND_ASSIGN(again, put(*log, "cart-1", expected_version::exact(3), b));
  expect_same_ack(again, second);

  // any / stream_exists: the stream's newest events only.
  const batch c = make_batch(rng, 2);
  ASSERT_OK_AND_ASSIGN(append_result third, put(*log, "cart-1", expected_version::any(), c));
  ASSERT_OK_AND_ASSIGN(again, put(*log, "cart-1", expected_version::any(), c));
  expect_same_ack(again, third);
  ASSERT_OK_AND_ASSIGN(again, put(*log, "cart-1", expected_version::stream_exists(), c));
  expect_same_ack(again, third);
  ASSERT_OK(put(*log, "cart-1", expected_version::any(), make_batch(rng, 1)));
  ASSERT_OK_AND_ASSIGN(append_result outside, put(*log, "cart-1", expected_version::any(), c));
  EXPECT_FALSE(outside.duplicate) << "past the window of `any`: appended again (documented)";
}

TEST(IdempotentAppend, TheSameIdsWithOtherContentOrOnlySomeOfThemAreAConflictNamingTheId) {
  temp_dir d;
  std::mt19937_64 rng(2);
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
  const batch a = make_batch(rng, 2);
  ASSERT_OK(put(*log, "order-7", expected_version::no_stream(), a));
  const position end = log->committed_position();

  batch other = a;
  other.payloads[1] = "something else";
  auto r = put(*log, "order-7", expected_version::no_stream(), other);
  ASSERT_ERRC(r, errc::wrong_expected_version);
  EXPECT_EQ(r.error().actual_version(), 2u);
  EXPECT_NE(r.error().message().find("is already at version 2 with other content"), std::string::npos)
      << r.error().message();

  batch typed = a;
  typed.type = 9;
  ASSERT_ERRC(put(*log, "order-7", expected_version::exact(0), typed), errc::wrong_expected_version);

  batch half = a;
  half.ids[1] = random_id(rng);
  r = put(*log, "order-7", expected_version::no_stream(), half);
  ASSERT_ERRC(r, errc::wrong_expected_version);
  EXPECT_NE(r.error().message().find("1 of its 2 event_ids"), std::string::npos) << r.error().message();

  // New ids at a taken place: a plain conflict.
  r = put(*log, "order-7", expected_version::no_stream(), make_batch(rng, 2));
  ASSERT_ERRC(r, errc::wrong_expected_version);
  EXPECT_EQ(r.error().message().find("event_id"), std::string::npos) << r.error().message();
  EXPECT_EQ(log->committed_position(), end) << "nothing written by any of them";
}

TEST(IdempotentAppend, WithoutIdsARetryIsAConflictOrASecondAppendAsBefore) {
  temp_dir d;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
  event_data e;
  e.payload = event_data::bytes("x");
  ASSERT_OK(log->append(stream_id("s"), expected_version::no_stream(), e));
  ASSERT_ERRC(log->append(stream_id("s"), expected_version::no_stream(), e), errc::wrong_expected_version);
  ASSERT_OK_AND_ASSIGN(append_result r, log->append(stream_id("s"), expected_version::any(), e));
  EXPECT_FALSE(r.duplicate);
  EXPECT_EQ(log->version_of(stream_id("s")), 2u);
}

// A writer killed after its acknowledgements (SIGKILL: no close) and a new
// writer after recovery: every retry is recognised, nothing is written twice.
TEST(IdempotentAppend, RetriesAfterAKilledWriterAndRecoveryAreDuplicates) {
  temp_dir d;
  std::mt19937_64 rng(3);
  std::vector<batch> batches;
  for (int i = 0; i < 200; ++i) batches.push_back(make_batch(rng, 1 + i % 3));
  { ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts())); }
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(pipefd[0]);
    auto log = event_log::open(d.path(), opts());
    if (!log) ::_exit(2);
    for (size_t i = 0; i < batches.size(); ++i) {
      const std::string s = "acct-" + std::to_string(i % 7);
      auto r = put(**log, s, expected_version::any(), batches[i]);
      if (!r) ::_exit(3);
      append_result a = *r;
      if (::write(pipefd[1], &a, sizeof a) != sizeof a) ::_exit(4);
    }
    ::raise(SIGKILL);
  }
  ::close(pipefd[1]);
  std::vector<append_result> acks;
  append_result a;
  while (::read(pipefd[0], &a, sizeof a) == sizeof a) acks.push_back(a);
  ::close(pipefd[0]);
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(st)) << "the writer was to be killed, status " << st;
  ASSERT_EQ(acks.size(), batches.size());

  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(d.path(), opts()));
  const position end = log->committed_position();
  for (size_t i = 0; i < batches.size(); ++i) {
    const std::string s = "acct-" + std::to_string(i % 7);
    // The exact version it was appended at: found at any age.
    ASSERT_OK_AND_ASSIGN(append_result again,
                         put(*log, s, expected_version::exact(acks[i].first_version - 1), batches[i]));
    expect_same_ack(again, acks[i]);
  }
  EXPECT_EQ(log->committed_position(), end);
}

// Against a model of the documented window: random new batches and retries
// of earlier ones, under every kind of expected version.
TEST(IdempotentAppend, ModelOfTheWindow) {
  for (uint64_t seed = 0; seed < scaled(4); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    temp_dir d;
    std::mt19937_64 rng(40 + seed);
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(d.path(), opts()));
    struct sent {
      std::string stream;
      batch b;
      append_result ack;
    };
    std::vector<sent> done;
    uint64_t dups = 0, conflicts = 0, clashes = 0;
    std::map<std::string, std::vector<id128>> model;  // stream -> event ids by version - 1
    auto kind_of = [&](uint64_t r) {
      switch (r % 4) {
        case 0: return expected_version::any();
        case 1: return expected_version::stream_exists();
        case 2: return expected_version::no_stream();
        default: return expected_version::exact(0);  // set below
      }
    };
    for (int step = 0; step < 400; ++step) {
      const bool retry = !done.empty() && rng() % 3 == 0;
      const sent* prior = retry ? &done[rng() % done.size()] : nullptr;
      const std::string s = retry ? prior->stream : "s" + std::to_string(rng() % 4);
      const batch b = retry ? prior->b : make_batch(rng, 1 + rng() % 3);
      std::vector<id128>& ids = model[s];
      expected_version ev = kind_of(rng());
      if (ev.which() == expected_version::kind::exact)
        ev = expected_version::exact(retry ? prior->ack.first_version - 1 : ids.size());
      // The model: where the batch would be, and is it there?
      const uint64_t actual = ids.size();
      uint64_t from = 0;
      if (ev.which() == expected_version::kind::exact) from = ev.accepts(actual) ? 0 : ev.version() + 1;
      else if (ev.which() == expected_version::kind::no_stream) from = 1;
      else if (actual >= b.ids.size()) from = actual - b.ids.size() + 1;
      size_t there = 0;
      if (from && actual)
        for (size_t i = 0; i < b.ids.size() && from - 1 + i < actual; ++i) there += ids[from - 1 + i] == b.ids[i];
      auto r = put(*log, s, ev, b);
      if (there == b.ids.size()) {
        ASSERT_OK(r);
        EXPECT_TRUE(r->duplicate) << "step " << step;
        ++dups;
      } else if (there > 0 || !ev.accepts(actual)) {
        ASSERT_ERRC(r, errc::wrong_expected_version);
        ++(there > 0 ? clashes : conflicts);
      } else {
        ASSERT_OK(r);
        EXPECT_FALSE(r->duplicate);
        for (const id128& id : b.ids) ids.push_back(id);
        done.push_back({s, b, *r});
      }
    }
    // Every outcome happened often enough to be checked.
    EXPECT_GT(dups, 20u);
    EXPECT_GT(conflicts, 20u);
    EXPECT_GT(done.size(), 100u);
    (void)clashes;  // partial overlaps are rare with random retries; the test above makes them
    // The log holds exactly the model's events.
    for (const auto& [s, ids] : model) {
      ASSERT_OK_AND_ASSIGN(auto rd, log->read_stream(stream_id(std::string_view(s))));
      event_view v;
      size_t i = 0;
      for (;; ++i) {
        ASSERT_OK_AND_ASSIGN(bool more, rd.next(v));
        if (!more) break;
        ASSERT_LT(i, ids.size());
        ASSERT_NE(v.event_id, nullptr);
        EXPECT_EQ(*v.event_id, ids[i]);
      }
      EXPECT_EQ(i, ids.size());
    }
  }
}

}  // namespace
