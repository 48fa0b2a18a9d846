// Subscriptions: catch-up from a position to live events while a writer
// appends (threads and a second process), with no gap and no duplicate;
// filters; a slow subscriber; reading in batches (next_batch); cancel and timeouts; the wake-up words of the
// control block; named positions that survive reopening and a damaged
// position file. Must stay clean under TSan and ASan.
//
// Child processes re-execute this binary (fork + exec of /proc/self/exe), as
// in concurrency_test: the parent holds an open log with background threads.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cinttypes>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "varve/subscription.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_test;
using namespace std::chrono_literals;

constexpr uint64_t k64KiB = 64 << 10;

log_options small_options() {
  log_options o;
  o.segment_bytes = k64KiB;  // many segment rolls
  return o;
}

// Stream of event `seq`: two categories, 8 streams each.
std::string stream_of(uint64_t seq) {
  return (mix64(seq) % 3 == 0 ? "cust-" : "order-") + std::to_string(mix64(seq ^ 77) % 8);
}

// Payload: the sequence number, then filler; a reader checks what it gets.
std::vector<std::byte> payload_of(uint64_t seq) {
  std::vector<std::byte> p = payload_for(seq, 8 + mix64(seq) % 120);
  std::memcpy(p.data(), &seq, 8);
  return p;
}

// Appends `n` events in batches of 1..8 (one stream per batch, the stream of
// the batch's first sequence). Optionally sleeps `pause` between batches.
status write_events(event_log& log, uint64_t n, std::chrono::microseconds pause = 0us) {
  uint64_t seq = log.next_sequence().value;
  const uint64_t end = seq + n;
  std::vector<std::vector<std::byte>> payloads;
  std::vector<event_data> batch;
  while (seq < end) {
    const size_t count = std::min<uint64_t>(1 + mix64(seq * 31) % 8, end - seq);
    payloads.clear();
    batch.clear();
    for (size_t i = 0; i < count; ++i) payloads.push_back(payload_of(seq + i));
    for (size_t i = 0; i < count; ++i) {
      event_data d;
      d.type = uint32_t(seq + i) % 5;
      d.payload = payloads[i];
      batch.push_back(d);
    }
    const std::string s = stream_of(seq);
    auto r = log.append(stream_id(std::string_view(s)), expected_version::any(), batch);
    if (!r.ok()) return r.error();
    if (r->first_sequence.value != seq) return status(errc::invalid_argument, "sequence gap");
    seq += count;
    if (pause.count()) std::this_thread::sleep_for(pause);
  }
  return {};
}

// Reads `n` events from `sub`, checking that each is the next expected one:
// sequences contiguous from `first_seq` when `contiguous`, else in increasing
// order and accepted by `want`. `batch` > 0 reads through next_batch with
// that many views (each batch checked whole before the next call), else
// through next(). Returns "" or the first problem.
template <class Want>
std::string take(subscription& sub, uint64_t n, uint64_t first_seq, Want want,
                 std::vector<uint64_t>* seen_out = nullptr, std::chrono::microseconds slow = 0us,
                 size_t batch = 0) {
  uint64_t expect = first_seq;
  std::vector<event_view> views(std::max<size_t>(batch, 1));
  size_t have = 0, at = 0;
  for (uint64_t got_n = 0; got_n < n; ++got_n) {
    if (at == have) {
      at = have = 0;
      if (batch == 0) {
        auto got = sub.next(views[0], 20s);
        if (!got.ok()) return "after " + std::to_string(got_n) + " events: " + got.error().to_string();
        if (!*got) return "timed out after " + std::to_string(got_n) + " events";
        have = 1;
      } else {
        auto got = sub.next_batch(views, 20s);
        if (!got.ok()) return "after " + std::to_string(got_n) + " events: " + got.error().to_string();
        if (*got == 0) return "timed out after " + std::to_string(got_n) + " events";
        if (*got > batch) return "a batch larger than its span";
        have = *got;
      }
    }
    const event_view& e = views[at++];
    while (!want(expect)) ++expect;
    if (e.sequence.value != expect)
      return "event " + std::to_string(got_n) + ": sequence " + std::to_string(e.sequence.value) +
             ", expected " + std::to_string(expect);
    if (e.payload.size() < 8) return "short payload at sequence " + std::to_string(expect);
    uint64_t in_payload;
    std::memcpy(&in_payload, e.payload.data(), 8);
    const std::vector<std::byte> p = payload_of(expect);
    if (in_payload != expect || e.payload.size() != p.size() ||
        std::memcmp(e.payload.data(), p.data(), p.size()) != 0)
      return "payload differs at sequence " + std::to_string(expect);
    if (sub.where().value < e.position.value + e.record_bytes)
      return "where() is behind the event it returned";
    if (seen_out) seen_out->push_back(e.sequence.value);
    ++expect;
    if (slow.count() && got_n % 100 == 0) std::this_thread::sleep_for(slow);
  }
  if (at != have) return std::to_string(have - at) + " events returned beyond the " + std::to_string(n) + " expected";
  return {};
}

auto all = [](uint64_t) { return true; };

// The stream of each of the `n` events write_events appends from sequence
// `first` (its batches share the stream of their first event).
std::vector<std::string> streams_written(uint64_t first, uint64_t n) {
  std::vector<std::string> streams(n);
  for (uint64_t i = 0, s = first; i < n;) {
    const uint64_t c = std::min<uint64_t>(1 + mix64(s * 31) % 8, n - i);
    for (uint64_t k = 0; k < c; ++k) streams[i + k] = stream_of(s);
    i += c;
    s += c;
  }
  return streams;
}

// Bytes 192..199 of DIR/varve.ctl: wake_seq and waiters.
std::pair<uint32_t, uint32_t> wake_words(const std::string& dir) {
  std::vector<uint8_t> b = read_file(dir + "/varve.ctl");
  uint32_t seq, waiters;
  std::memcpy(&seq, b.data() + 192, 4);
  std::memcpy(&waiters, b.data() + 196, 4);
  return {seq, waiters};
}

// --- catch-up to live, in-process ---------------------------------------------

TEST(Subscription, CatchUpFromTheBeginningWhileAWriterAppends) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  const uint64_t before = scaled(3000), during = scaled(20000);
  ASSERT_OK(write_events(*log, before));
  ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, position{}));
  std::string problem;
  std::thread reader([&] { problem = take(sub, before + during, 0, all); });
  status w = write_events(*log, during);
  reader.join();
  ASSERT_OK(w);
  EXPECT_EQ(problem, "");
  EXPECT_GT(log->committed_position().value >> 16, 10u) << "expected many segment rolls";
  // Caught up: nothing more, and no error, within a short timeout.
  event_view e;
  ASSERT_OK_AND_ASSIGN(bool more, sub.next(e, 10ms));
  EXPECT_FALSE(more);
  EXPECT_EQ(sub.where(), log->committed_position());
  EXPECT_EQ(sub.lag().events, 0u);
  EXPECT_EQ(sub.lag().bytes, 0u);
}

TEST(Subscription, CatchUpFromTheMiddleAndFromTheEnd) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  ASSERT_OK(write_events(*log, 1000));
  // An event whose position we know, then more history after it.
  std::vector<std::byte> p = payload_of(1000);
  event_data d;
  d.payload = p;
  const std::string mid_stream = stream_of(1000);
  ASSERT_OK_AND_ASSIGN(append_result mid, log->append(stream_id(std::string_view(mid_stream)),
                                                      expected_version::any(), d));
  ASSERT_OK(write_events(*log, 999));
  ASSERT_OK_AND_ASSIGN(subscription from_mid, subscription::open(*log, mid.first));
  ASSERT_OK_AND_ASSIGN(subscription from_end, subscription::open(*log, subscription::end()));
  EXPECT_EQ(from_end.where(), log->committed_position());
  EXPECT_EQ(from_mid.lag().events, 1000u);
  const uint64_t during = scaled(10000);
  std::string p_mid, p_end;
  std::thread a([&] { p_mid = take(from_mid, 1000 + during, 1000, all); });
  std::thread b([&] { p_end = take(from_end, during, 2000, all); });
  status w = write_events(*log, during);
  a.join();
  b.join();
  ASSERT_OK(w);
  EXPECT_EQ(p_mid, "");
  EXPECT_EQ(p_end, "");
}

TEST(Subscription, PacedWriterWakesAParkedSubscriberEveryTime) {
  // The writer pauses between batches, so the subscriber parks between them
  // (no spinning at all): every wake-up must arrive, none may be lost.
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  subscription_options o;
  o.spin = 0ns;
  ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, position{}, {}, o));
  const uint64_t n = scaled(600);
  std::string problem;
  std::thread reader([&] { problem = take(sub, n, 0, all); });
  status w = write_events(*log, n, 200us);
  reader.join();
  ASSERT_OK(w);
  EXPECT_EQ(problem, "");
  EXPECT_EQ(wake_words(dir.path()).second, 0u) << "a waiter stayed registered";
}

// The follow policies: a spinning reader (never parks) and a yielding one
// each get every event of a paced writer, never count themselves as parked
// waiters, and still honour their timeout and cancel().
TEST(Subscription, SpinningAndYieldingFollowersGetEveryEventAndNeverPark) {
  for (const char* policy : {"spin", "yield"}) {
    SCOPED_TRACE(policy);
    temp_dir dir;
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
    subscription_options o;
    if (policy == std::string("spin")) o.spin = kForever;
    else {
      o.spin = 0ns;
      o.yield = kForever;
    }
    ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, position{}, {}, o));
    const uint64_t n = scaled(300);
    std::string problem;
    std::atomic<uint32_t> most_waiters{0};
    std::atomic<bool> done{false};
    std::thread watcher([&] {
      while (!done.load()) {
        most_waiters = std::max(most_waiters.load(), wake_words(dir.path()).second);
        std::this_thread::sleep_for(1ms);
      }
    });
    std::thread reader([&] { problem = take(sub, n, 0, all); });
    status w = write_events(*log, n, 200us);
    reader.join();
    done = true;
    watcher.join();
    ASSERT_OK(w);
    EXPECT_EQ(problem, "");
    EXPECT_EQ(most_waiters.load(), 0u) << "a follower that never parks registered as a waiter";
    // Caught up: a timeout still ends the wait (kForever must not overflow it).
    event_view e;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_OK_AND_ASSIGN(bool got, sub.next(e, 30ms));
    EXPECT_FALSE(got);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms);
    std::thread t([&] { (void)sub.next(e, std::chrono::nanoseconds::max()); });
    std::this_thread::sleep_for(5ms);
    sub.cancel();
    t.join();
    EXPECT_TRUE(sub.cancelled());
  }
}

TEST(Subscription, FiltersByStreamAndByCategory) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  // A stretch of segments holding only "cust-" events, which an "order-"
  // subscription may skip whole once they are sealed and indexed.
  std::vector<std::byte> body(200);
  event_data only_cust;
  only_cust.payload = body;
  for (int i = 0; i < 2000; ++i)
    ASSERT_OK(log->append("cust-x", expected_version::any(), only_cust).to_status());
  const uint64_t base = log->next_sequence().value;
  const uint64_t during = scaled(8000);

  // What each filter must deliver: the stream of every event write_events will append.
  const std::vector<std::string> streams = streams_written(base, during);
  auto want_order = [&](uint64_t seq) {
    return seq >= base && seq - base < during && streams[seq - base].starts_with("order-");
  };
  auto want_cust3 = [&](uint64_t seq) {
    return seq >= base && seq - base < during && streams[seq - base] == "cust-3";
  };
  auto want_cust3_type2 = [&](uint64_t seq) { return want_cust3(seq) && seq % 5 == 2; };
  uint64_t n_order = 0, n_cust3 = 0, n_cust3_t2 = 0;
  for (uint64_t i = 0; i < during; ++i) {
    n_order += want_order(base + i);
    n_cust3 += want_cust3(base + i);
    n_cust3_t2 += want_cust3_type2(base + i);
  }
  ASSERT_GT(n_cust3_t2, 0u);

  event_filter by_category;
  by_category.stream_prefixes = {"order-"};
  event_filter by_stream;
  by_stream.streams = {"cust-3"};
  event_filter by_stream_and_type = by_stream;
  by_stream_and_type.types = {2};
  ASSERT_OK_AND_ASSIGN(subscription s1, subscription::open(*log, position{}, by_category));
  ASSERT_OK_AND_ASSIGN(subscription s2, subscription::open(*log, position{}, by_stream));
  ASSERT_OK_AND_ASSIGN(subscription s3, subscription::open(*log, position{}, by_stream_and_type));
  std::string p1, p2, p3;
  std::thread t1([&] { p1 = take(s1, n_order, 0, want_order); });
  std::thread t2([&] { p2 = take(s2, n_cust3, 0, want_cust3); });
  std::thread t3([&] { p3 = take(s3, n_cust3_t2, 0, want_cust3_type2); });
  status w = write_events(*log, during);
  t1.join();
  t2.join();
  t3.join();
  ASSERT_OK(w);
  EXPECT_EQ(p1, "");
  EXPECT_EQ(p2, "");
  EXPECT_EQ(p3, "");
  // Nothing more matches: each is at the end, having skipped the rest.
  for (subscription* s : {&s1, &s2, &s3}) {
    event_view e;
    ASSERT_OK_AND_ASSIGN(bool more, s->next(e, 5ms));
    EXPECT_FALSE(more);
    EXPECT_EQ(s->where(), log->committed_position());
  }

  // Later, from the beginning again: the sealed "cust-x" segments are indexed
  // by now (or not yet; either way the answer is the same).
  ASSERT_OK(log->flush());
  ASSERT_OK_AND_ASSIGN(subscription again, subscription::open(*log, position{}, by_category));
  EXPECT_EQ(take(again, n_order, 0, want_order), "");
}

TEST(Subscription, ASlowSubscriberFallsBehindAndCatchesUp) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, position{}));
  const uint64_t n = scaled(20000);
  std::atomic<uint64_t> max_lag{0};
  std::atomic<bool> done{false};
  std::thread monitor([&] {  // lag() from another thread, while next() runs
    while (!done.load()) {
      const uint64_t l = sub.lag().events;
      if (l > max_lag.load()) max_lag.store(l);
      std::this_thread::sleep_for(200us);
    }
  });
  std::string problem;
  std::thread reader([&] { problem = take(sub, n, 0, all, nullptr, 500us); });
  status w = write_events(*log, n);
  reader.join();
  done.store(true);
  monitor.join();
  ASSERT_OK(w);
  EXPECT_EQ(problem, "");
  EXPECT_GT(max_lag.load(), 0u) << "the subscriber never fell behind";
  EXPECT_EQ(sub.lag().events, 0u);
}

// --- next_batch ------------------------------------------------------------------

// Subscriptions reading in batches of 1, 7 and 64 views, and one filtered by
// category, each from the beginning while the writer appends over many
// segment rolls: every event once, in order, payloads intact; then each is at
// the committed end.
TEST(Subscription, BatchesDeliverEveryEventInOrderWhileAWriterAppends) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  const uint64_t before = scaled(3000), during = scaled(20000);
  // Two calls of write_events: each starts its own batches.
  std::vector<std::string> streams = streams_written(0, before);
  for (std::string& st : streams_written(before, during)) streams.push_back(std::move(st));
  auto want_order = [&](uint64_t seq) { return seq < streams.size() && streams[seq].starts_with("order-"); };
  uint64_t n_order = 0;
  for (uint64_t i = 0; i < streams.size(); ++i) n_order += want_order(i);
  ASSERT_OK(write_events(*log, before));
  event_filter by_category;
  by_category.stream_prefixes = {"order-"};
  const size_t sizes[] = {1, 7, 64};
  std::vector<subscription> subs;
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_OK_AND_ASSIGN(subscription s, subscription::open(*log, position{}, i == 3 ? by_category : event_filter{}));
    subs.push_back(std::move(s));
  }
  std::vector<std::string> problems(4);
  std::vector<std::thread> readers;
  for (size_t i = 0; i < 3; ++i)
    readers.emplace_back([&, i] { problems[i] = take(subs[i], before + during, 0, all, nullptr, 0us, sizes[i]); });
  readers.emplace_back([&] { problems[3] = take(subs[3], n_order, 0, want_order, nullptr, 0us, 64); });
  status w = write_events(*log, during);
  for (auto& t : readers) t.join();
  ASSERT_OK(w);
  EXPECT_GT(log->committed_position().value >> 16, 10u) << "expected many segment rolls";
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(problems[i], "") << "subscription " << i;
    std::array<event_view, 8> v;
    ASSERT_OK_AND_ASSIGN(size_t more, subs[i].next_batch(v, 5ms));
    EXPECT_EQ(more, 0u) << "subscription " << i;
    EXPECT_EQ(subs[i].where(), log->committed_position()) << "subscription " << i;
    EXPECT_EQ(subs[i].lag().events, 0u) << "subscription " << i;
  }
}

TEST(Subscription, NextBatchTimesOutOnAnIdleLogAndIsCancelled) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  ASSERT_OK(write_events(*log, 10));
  ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, subscription::end()));
  std::array<event_view, 16> v;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(size_t n, sub.next_batch(v, 20ms));
  EXPECT_EQ(n, 0u);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
  ASSERT_OK_AND_ASSIGN(n, sub.next_batch(v));  // timeout 0: a poll
  EXPECT_EQ(n, 0u);
  ASSERT_OK_AND_ASSIGN(n, sub.next_batch(std::span<event_view>()));
  EXPECT_EQ(n, 0u);
  // What lands while it waits comes at once, in one call (one append of 3).
  std::thread writer([&] {
    std::this_thread::sleep_for(20ms);
    std::vector<std::byte> p(16);
    std::vector<event_data> three(3);
    for (auto& d : three) d.payload = p;
    (void)log->append("late", expected_version::any(), three);
  });
  ASSERT_OK_AND_ASSIGN(n, sub.next_batch(v, 20s));
  writer.join();
  EXPECT_GE(n, 1u);
  while (n < 3) {  // the three may be committed in one step or seen before the last lands
    ASSERT_OK_AND_ASSIGN(size_t more, sub.next_batch(std::span(v).subspan(n), 20s));
    ASSERT_GT(more, 0u);
    n += more;
  }
  EXPECT_EQ(n, 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(v[i].stream, "late");

  result<size_t> parked = size_t{0};
  std::thread t([&] { parked = sub.next_batch(v, std::chrono::nanoseconds::max()); });
  for (int i = 0; i < 2000 && wake_words(dir.path()).second == 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(wake_words(dir.path()).second, 1u);
  sub.cancel();
  t.join();
  EXPECT_ERRC(parked, errc::cancelled);
  EXPECT_ERRC(sub.next_batch(v), errc::cancelled);
}

// A damaged record in a sealed segment (not the first: open() reads that one
// and says so): batches return every event before it,
// then the error names the segment file and offset, again on the next call,
// and where() stays on the record.
TEST(Subscription, NextBatchEndsBeforeADamagedRecord) {
  temp_dir dir;
  std::vector<std::pair<uint64_t, uint32_t>> records;  // position, record bytes
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
    ASSERT_OK(write_events(*log, 1500));
    log_reader r = log->read();
    event_view e;
    while (r.next(e).value()) records.emplace_back(e.position.value, e.record_bytes);
    ASSERT_OK(log->close());
  }
  ASSERT_EQ(records.size(), 1500u);
  // The last record of a sealed segment (the active one is validated at open).
  size_t last_sealed = records.size() - 1;
  while (records[last_sealed].first / k64KiB == records.back().first / k64KiB) --last_sealed;
  for (const size_t victim : {size_t{1}, size_t{63}, size_t{64}, size_t{700}, last_sealed}) {
    const auto [pos, bytes] = records[victim];
    char name[32];
    std::snprintf(name, sizeof name, "%020" PRIu64 ".seg", pos / k64KiB);
    const std::string file = dir.path() + "/" + name;
    const uint64_t at = pos % k64KiB + bytes - 9;  // payload or padding: under the checksum
    flip_byte(file, at);
    {
      ASSERT_OK_AND_ASSIGN(auto log, event_log::open_read_only(dir.path()));
      ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, position{}));
      std::array<event_view, 64> v;
      size_t before = 0;
      status err;
      for (;;) {
        auto got = sub.next_batch(v, 1ms);
        if (!got.ok()) {
          err = got.error();
          break;
        }
        ASSERT_GT(*got, 0u) << "the damaged record at " << pos << " was read past";
        for (size_t i = 0; i < *got; ++i) ASSERT_EQ(v[i].sequence.value, before + i);
        before += *got;
      }
      EXPECT_EQ(before, victim);
      EXPECT_EQ(err.code(), errc::corruption) << describe(err);
      EXPECT_NE(err.message().find(name), std::string::npos) << describe(err);
      EXPECT_NE(err.message().find("offset " + std::to_string(pos % k64KiB)), std::string::npos)
          << describe(err);
      EXPECT_EQ(sub.where().value, pos);
      EXPECT_ERRC(sub.next_batch(v), errc::corruption);
      EXPECT_EQ(sub.where().value, pos);
    }
    flip_byte(file, at);  // undone: the next victim is the only damage
  }
}

// --- waiting: timeouts, cancel, the control block's words -----------------------

TEST(Subscription, TimeoutOnAnIdleLogAndCancelWakesAParkedNext) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  ASSERT_OK(write_events(*log, 10));
  ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, subscription::end()));
  event_view e;
  ASSERT_OK_AND_ASSIGN(bool got, sub.next(e, 20ms));
  EXPECT_FALSE(got);
  ASSERT_OK_AND_ASSIGN(got, sub.next(e));  // timeout 0: a poll
  EXPECT_FALSE(got);

  std::atomic<bool> returned{false};
  result<bool> parked_result = false;
  std::thread t([&] {
    parked_result = sub.next(e, std::chrono::nanoseconds::max());  // "forever"
    returned.store(true);
  });
  // Parked: it counts itself in `waiters` (visible in the file, as to any process).
  for (int i = 0; i < 2000 && wake_words(dir.path()).second == 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(wake_words(dir.path()).second, 1u);
  EXPECT_FALSE(returned.load());
  const uint32_t seq_before = wake_words(dir.path()).first;
  sub.cancel();
  t.join();
  EXPECT_ERRC(parked_result, errc::cancelled);
  EXPECT_TRUE(sub.cancelled());
  EXPECT_NE(wake_words(dir.path()).first, seq_before);
  EXPECT_EQ(wake_words(dir.path()).second, 0u);
  EXPECT_ERRC(sub.next(e), errc::cancelled);
}

// A follower that may only read DIR/varve.ctl (another user's log, a
// read-only mount): every other call goes to the real file system.
class ctl_read_only_fs : public file_system {
 public:
  result<varve::file_handle> open(const std::string& path, open_mode mode) override {
    if (mode != open_mode::read_only && path.ends_with("varve.ctl"))
      return status(errc::io_error, "open " + path + ": Permission denied (test)");
    return base_->open(path, mode);
  }
  void close(varve::file_handle& f) override { base_->close(f); }
  status allocate(const varve::file_handle& f, uint64_t n) override { return base_->allocate(f, n); }
  status truncate(const varve::file_handle& f, uint64_t n) override { return base_->truncate(f, n); }
  result<uint64_t> file_size(const varve::file_handle& f) override { return base_->file_size(f); }
  status pwrite(const varve::file_handle& f, uint64_t o, const void* d, size_t n) override {
    return base_->pwrite(f, o, d, n);
  }
  status pread(const varve::file_handle& f, uint64_t o, void* d, size_t n) override {
    return base_->pread(f, o, d, n);
  }
  status datasync(const varve::file_handle& f) override { return base_->datasync(f); }
  result<void*> map(const varve::file_handle& f, uint64_t n, map_access a) override { return base_->map(f, n, a); }
  void unmap(void* a, uint64_t n) override { base_->unmap(a, n); }
  status sync_range(const varve::file_handle& f, void* a, uint64_t n) override { return base_->sync_range(f, a, n); }
  status populate_write(void* a, uint64_t n) override { return base_->populate_write(a, n); }
  status rename(const std::string& a, const std::string& b) override { return base_->rename(a, b); }
  status remove(const std::string& p) override { return base_->remove(p); }
  status sync_dir(const std::string& d) override { return base_->sync_dir(d); }
  status sync_filesystem(const std::string& d) override { return base_->sync_filesystem(d); }
  status create_dir(const std::string& d) override { return base_->create_dir(d); }
  bool exists(const std::string& p) override { return base_->exists(p); }
  result<std::vector<std::string>> list_dir(const std::string& d) override { return base_->list_dir(d); }

 private:
  std::shared_ptr<file_system> base_ = posix_file_system();
};

TEST(Subscription, WithoutWriteAccessToTheControlBlockItPollsAndMissesNothing) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  log_options ro_opts;
  ro_opts.fs = std::make_shared<ctl_read_only_fs>();
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(dir.path(), ro_opts));
  subscription_options o;
  o.spin = 0ns;
  ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*ro, position{}, {}, o));
  event_view e;
  ASSERT_OK_AND_ASSIGN(bool got, sub.next(e, 30ms));
  EXPECT_FALSE(got);
  EXPECT_EQ(wake_words(dir.path()).second, 0u) << "a polling follower does not count as parked";
  const uint64_t n = scaled(300);
  std::string problem;
  std::thread reader([&] { problem = take(sub, n, 0, all); });
  status w = write_events(*log, n, 300us);
  reader.join();
  ASSERT_OK(w);
  EXPECT_EQ(problem, "");
}

TEST(Subscription, WriterClearsAWaiterCountLeftByADeadFollower) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  // A follower killed while parked never takes itself off the count.
  uint32_t stale = 3;
  write_at(dir.path() + "/varve.ctl", 196, &stale, 4);
  ASSERT_EQ(wake_words(dir.path()).second, 3u);
  event_data d;
  for (int i = 0; i < 1100; ++i) ASSERT_OK(log->append("s", expected_version::any(), d).to_status());
  EXPECT_EQ(wake_words(dir.path()).second, 0u);
  // And a live subscriber after that is still woken.
  ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, subscription::end()));
  std::thread t([&] {
    std::this_thread::sleep_for(30ms);
    (void)log->append("s", expected_version::any(), d);
  });
  event_view e;
  ASSERT_OK_AND_ASSIGN(bool got, sub.next(e, 30s));
  t.join();
  EXPECT_TRUE(got);
}

TEST(Subscription, BadStartPositions) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  ASSERT_OK(write_events(*log, 10));
  const position end = log->committed_position();
  EXPECT_ERRC(subscription::open(*log, position{end.value + 8}), errc::invalid_argument);
  EXPECT_FALSE(subscription::open(*log, position{64 + 8}).ok()) << "inside the first record";
  EXPECT_FALSE(subscription::open(*log, position{64 + 3}).ok()) << "not even aligned";
  ASSERT_OK_AND_ASSIGN(subscription at_end, subscription::open(*log, end));
  subscription unopened;
  event_view e;
  EXPECT_ERRC(unopened.next(e), errc::invalid_argument);
}

// --- named subscriptions ---------------------------------------------------------

TEST(NamedSubscription, PositionSurvivesReopenAndDeliveryIsAtLeastOnce) {
  temp_dir dir;
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
    ASSERT_OK(write_events(*log, 100));
  }
  subscription_options o;
  o.name = "projector-1";
  {
    ASSERT_OK_AND_ASSIGN(auto log, event_log::open_read_only(dir.path()));
    ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, position{}, {}, o));
    EXPECT_EQ(sub.name(), "projector-1");
    event_view e;
    for (int i = 0; i < 30; ++i) {
      ASSERT_OK_AND_ASSIGN(bool got, sub.next(e));
      ASSERT_TRUE(got);
      if (i == 19) {
        ASSERT_OK(sub.ack(e));
        ASSERT_OK(sub.commit());
      }
    }
    ASSERT_OK(sub.ack(e));  // 30 processed, but never committed: a "crash" now
    EXPECT_ERRC(sub.ack(position{sub.where().value + 8}), errc::invalid_argument);
  }
  ASSERT_OK_AND_ASSIGN(auto log, event_log::open(dir.path(), small_options()));
  // Resumes after event 19 (sequence 20), whatever `from` says: events 20..29
  // come again (at-least-once).
  ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*log, subscription::end(), {}, o));
  EXPECT_EQ(take(sub, 80, 20, all), "");
  ASSERT_OK(sub.ack(sub.where()));
  ASSERT_OK(sub.commit());
  ASSERT_OK_AND_ASSIGN(subscription_store store, subscription_store::open(dir.path()));
  ASSERT_OK_AND_ASSIGN(auto saved, store.load("projector-1"));
  ASSERT_TRUE(saved.has_value());
  EXPECT_EQ(*saved, log->committed_position());
  ASSERT_OK_AND_ASSIGN(auto names, store.names());
  EXPECT_EQ(names, std::vector<std::string>{"projector-1"});
  ASSERT_OK_AND_ASSIGN(auto absent, store.load("nobody"));
  EXPECT_FALSE(absent.has_value());

  // A live event after the saved end reaches a resumed subscriber.
  ASSERT_OK_AND_ASSIGN(subscription again, subscription::open(*log, position{}, {}, o));
  ASSERT_OK(write_events(*log, 5));
  EXPECT_EQ(take(again, 5, 100, all), "");

  // An unnamed subscription has nothing to commit.
  ASSERT_OK_AND_ASSIGN(subscription plain, subscription::open(*log));
  EXPECT_ERRC(plain.commit(), errc::invalid_argument);
  ASSERT_OK(store.remove("projector-1"));
  ASSERT_OK_AND_ASSIGN(names, store.names());
  EXPECT_TRUE(names.empty());
}

TEST(NamedSubscription, DamagedOrForeignPositionFileIsAClearError) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  ASSERT_OK(write_events(*log, 50));
  ASSERT_OK_AND_ASSIGN(subscription_store store, subscription_store::open(dir.path()));
  ASSERT_OK(store.save("p", position{64}));
  const std::string file = dir.path() + "/subscriptions/p.pos";
  ASSERT_EQ(read_file(file).size(), 48u);
  subscription_options o;
  o.name = "p";
  ASSERT_OK(subscription::open(*log, position{}, {}, o).to_status());

  flip_byte(file, 25);  // the position
  auto r = subscription::open(*log, position{}, {}, o);
  EXPECT_ERRC(r, errc::corruption);
  EXPECT_NE(r.error().to_string().find("subscriptions/p.pos"), std::string::npos) << r.error().to_string();

  ASSERT_OK(store.save("p", position{64}));
  ASSERT_OK(subscription::open(*log, position{}, {}, o).to_status());
  { std::ofstream(file, std::ios::app) << "x"; }  // a wrong size
  EXPECT_ERRC(subscription::open(*log, position{}, {}, o), errc::corruption);

  // Another log's file.
  temp_dir other;
  {
    ASSERT_OK_AND_ASSIGN(auto l2, event_log::create(other.path(), small_options()));
    ASSERT_OK_AND_ASSIGN(subscription_store s2, subscription_store::open(other.path()));
    ASSERT_OK(s2.save("p", position{64}));
  }
  fs::copy_file(other.path() + "/subscriptions/p.pos", file, fs::copy_options::overwrite_existing);
  r = subscription::open(*log, position{}, {}, o);
  EXPECT_ERRC(r, errc::corruption);
  EXPECT_NE(r.error().to_string().find("another log"), std::string::npos) << r.error().to_string();

  // A position past the end of the log (the log lost its tail).
  ASSERT_OK(store.save("p", position{log->committed_position().value + 4096}));
  r = subscription::open(*log, position{}, {}, o);
  EXPECT_ERRC(r, errc::corruption);
  EXPECT_NE(r.error().to_string().find("p.pos"), std::string::npos);

  o.name = "../escape";
  EXPECT_ERRC(subscription::open(*log, position{}, {}, o), errc::invalid_argument);
  o.name = ".hidden";
  EXPECT_ERRC(subscription::open(*log, position{}, {}, o), errc::invalid_argument);
  EXPECT_ERRC(store.save("a/b", position{64}), errc::invalid_argument);
}

// --- another process ----------------------------------------------------------------

constexpr int kChildOk = 0;
constexpr int kChildProblem = 1;

// Follower: opens the log read-only, subscribes from the beginning, takes `n`.
int run_follow_child(const std::string& dir, uint64_t n) {
  auto log = event_log::open_read_only(dir);
  if (!log.ok()) {
    std::fprintf(stderr, "follow child: %s\n", log.error().to_string().c_str());
    return kChildProblem;
  }
  subscription_options o;
  o.spin = 0ns;  // park between events: the cross-process futex path
  auto sub = subscription::open(**log, position{}, {}, o);
  if (!sub.ok()) {
    std::fprintf(stderr, "follow child: %s\n", sub.error().to_string().c_str());
    return kChildProblem;
  }
  std::string problem = take(*sub, n, 0, all);
  if (!problem.empty()) {
    std::fprintf(stderr, "follow child: %s\n", problem.c_str());
    return kChildProblem;
  }
  return kChildOk;
}

// Writer: opens the log, appends `n` events, some paced so a follower parks.
int run_write_child(const std::string& dir, uint64_t n) {
  auto log = event_log::open(dir, small_options());
  if (!log.ok()) {
    std::fprintf(stderr, "write child: %s\n", log.error().to_string().c_str());
    return kChildProblem;
  }
  status s = write_events(**log, n / 2, 100us);
  if (s) s = write_events(**log, n - n / 2);
  if (!s) {
    std::fprintf(stderr, "write child: %s\n", s.to_string().c_str());
    return kChildProblem;
  }
  return kChildOk;
}

pid_t spawn(const char* role, const std::string& dir, uint64_t n) {
  pid_t pid = ::fork();
  if (pid == 0) {
    const std::string count = std::to_string(n);
    const char* argv[] = {"/proc/self/exe", role, dir.c_str(), count.c_str(), nullptr};
    ::execv("/proc/self/exe", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  return pid;
}

int wait_child(pid_t pid) {
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(CrossProcess, ReadOnlyFollowerInAnotherProcessCatchesUpAndFollows) {
  temp_dir dir;
  ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options()));
  const uint64_t before = 500, during = scaled(8000);
  ASSERT_OK(write_events(*log, before));
  pid_t pid = spawn("--follow-child", dir.path(), before + during);
  ASSERT_GT(pid, 0);
  status w = write_events(*log, during / 2, 100us);  // paced: the follower parks
  if (w) w = write_events(*log, during - during / 2);
  const int rc = wait_child(pid);
  ASSERT_OK(w);
  EXPECT_EQ(rc, kChildOk) << "the follower process saw something wrong (see its stderr)";
}

TEST(CrossProcess, WriterInAnotherProcessWakesAFollowerHere) {
  temp_dir dir;
  { ASSERT_OK_AND_ASSIGN(auto log, event_log::create(dir.path(), small_options())); }
  ASSERT_OK_AND_ASSIGN(auto ro, event_log::open_read_only(dir.path()));
  subscription_options o;
  o.spin = 0ns;
  ASSERT_OK_AND_ASSIGN(subscription sub, subscription::open(*ro, position{}, {}, o));
  const uint64_t n = scaled(6000);
  pid_t pid = spawn("--write-child", dir.path(), n);
  ASSERT_GT(pid, 0);
  const std::string problem = take(sub, n, 0, all);
  EXPECT_EQ(wait_child(pid), kChildOk);
  EXPECT_EQ(problem, "");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--follow-child")
    return run_follow_child(argv[2], std::strtoull(argv[3], nullptr, 10));
  if (argc == 4 && std::string(argv[1]) == "--write-child")
    return run_write_child(argv[2], std::strtoull(argv[3], nullptr, 10));
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
