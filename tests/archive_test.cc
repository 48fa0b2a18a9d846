// The archive tier (event_log::archive, DIR/archive, FORMAT.md 1c): whole
// sealed segments move into an archive directory as compressed, checksummed
// files. Checked against a model of every event appended: every read path
// gives back exactly the model, across the archive and the hot log, before
// and after a reopen and from a read-only handle; a stream read inflates
// only the frames it touches; a damaged archive file is an error naming it,
// never different bytes; an interrupted pass is finished by the next open;
// a power loss at any step of a pass leaves the log whole.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "base/archive_file.h"
#include "base/meta_file.h"
#include "engine/io/power_loss_file_system.h"
#include "engine/log_access.h"
#include "engine/log_state.h"
#include "test_util.h"
#include "varve/admin.h"
#include "varve/replay.h"

using namespace varve;
using namespace varve_test;

namespace {

constexpr uint64_t kSeg = 64 * 1024;
constexpr uint64_t kStreams = 11;

struct model_event {
  uint64_t seq;
  std::string stream;
  stream_version version;
  uint64_t position;
  uint64_t timestamp;
  uint64_t payload_hash;
};

log_options opts(uint64_t seg = kSeg) {
  log_options o;
  o.segment_bytes = seg;
  return o;
}

std::string stream_of(uint64_t i) { return "acct-" + std::to_string(i % kStreams); }

// A JSON payload like the accounts demo's: compressible, but not trivially.
std::string payload_of(uint64_t i) {
  std::ostringstream o;
  o << R"({"account":")" << stream_of(i) << R"(","kind":")" << (i % 3 == 0 ? "deposit" : "withdrawal")
    << R"(","amount_cents":)" << (mix64(i) % 100000) << R"(,"currency":"EUR","reference":"tx-)" << mix64(i * 7)
    << R"(","note":"monthly transfer )" << i << R"("})";
  return o.str();
}

// Appends until segment `segments` is active (or until `until` events);
// timestamps rise by 1 ms from `t0`. Closes the log.
std::vector<model_event> fill(const std::string& dir, uint64_t segments, uint64_t seg_bytes = kSeg,
                              std::vector<model_event> m = {}) {
  auto log = event_log::open_or_create(dir, opts(seg_bytes));
  EXPECT_TRUE(log.ok()) << describe(log);
  if (!log) return m;
  std::map<std::string, stream_version> versions;
  for (const model_event& e : m) versions[e.stream] = e.version;
  for (uint64_t i = m.size(); log.value()->committed_position().value / seg_bytes < segments; ++i) {
    const std::string s = stream_of(i);
    const std::string p = payload_of(i);
    event_data e;
    e.payload = event_data::bytes(p);
    e.content = content_type::json;
    e.type = 3;
    e.timestamp_ns = 1'000'000'000'000 + i * 1'000'000;
    auto r = log.value()->append(stream_id(s), expected_version::any(), e);
    EXPECT_TRUE(r.ok()) << describe(r);
    if (!r) return m;
    m.push_back({r.value().first_sequence.value, s, ++versions[s], r.value().first.value, e.timestamp_ns,
                 fnv1a(e.payload)});
  }
  EXPECT_OK(log.value()->close());
  return m;
}

model_event as_model(const event_view& v) {
  return {v.sequence.value, std::string(v.stream), v.version, v.position.value, v.timestamp_ns, fnv1a(v.payload)};
}

result<std::vector<model_event>> read_all(const event_log& log) {
  std::vector<model_event> out;
  log_reader r = log.read();
  event_view v;
  while (true) {
    auto more = r.next(v);
    if (!more) return more.error();
    if (!more.value()) break;
    out.push_back(as_model(v));
  }
  return out;
}

void expect_same(const std::vector<model_event>& got, const std::vector<model_event>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].seq, want[i].seq) << i;
    EXPECT_EQ(got[i].position, want[i].position) << i;
    EXPECT_EQ(got[i].stream, want[i].stream) << i;
    EXPECT_EQ(got[i].version, want[i].version) << i;
    EXPECT_EQ(got[i].payload_hash, want[i].payload_hash) << i;
  }
}

// Every read path of one log against the model.
void check_reads(const event_log& log, const std::vector<model_event>& m) {
  auto all = read_all(log);
  ASSERT_OK(all);
  expect_same(all.value(), m);

  // Every stream, forward from version 1 and backward from its head.
  std::map<std::string, std::vector<model_event>> by_stream;
  for (const model_event& e : m) by_stream[e.stream].push_back(e);
  event_view v;
  for (const auto& [s, want] : by_stream) {
    auto fwd = log.read_stream(stream_id(s), 1);
    ASSERT_OK(fwd);
    std::vector<model_event> got;
    while (true) {
      auto n = fwd.value().next(v);
      ASSERT_OK(n);
      if (!n.value()) break;
      got.push_back(as_model(v));
    }
    expect_same(got, want);
    auto back = log.read_stream(stream_id(s), UINT64_MAX, read_direction::backward);
    ASSERT_OK(back);
    got.clear();
    while (true) {
      auto n = back.value().next(v);
      ASSERT_OK(n);
      if (!n.value()) break;
      got.push_back(as_model(v));
    }
    std::reverse(got.begin(), got.end());
    expect_same(got, want);
  }

  // position_of and position_at_time land in archived segments too.
  for (size_t i : {size_t{0}, m.size() / 3, m.size() - 1}) {
    auto p = log.position_of(sequence{m[i].seq});
    ASSERT_OK(p);
    EXPECT_EQ(p.value().value, m[i].position);
    auto t = log.position_at_time(m[i].timestamp);
    ASSERT_OK(t);
    EXPECT_EQ(t.value().value, m[i].position);
  }

  // Replay, every backend: exactly the model's events.
  uint64_t want_sum = 0;
  for (const model_event& e : m) want_sum += e.seq ^ e.payload_hash;
  for (io_backend b : {io_backend::mmap, io_backend::pread, io_backend::uring}) {
    auto rp = replay(log).partitions(3).threads(2).io(b).run([](uint32_t) {
      struct counter {
        uint64_t n = 0, sum = 0;
        void apply(const event_view& e) {
          ++n;
          sum += e.sequence.value ^ fnv1a(e.payload);
        }
      };
      return counter{};
    });
    ASSERT_TRUE(rp) << describe(rp.error) << " backend " << to_string(b);
    uint64_t n = 0, sum = 0;
    for (const auto& st : rp.states) {
      n += st.n;
      sum += st.sum;
    }
    EXPECT_EQ(n, m.size()) << to_string(b);
    EXPECT_EQ(sum, want_sum) << to_string(b);
  }
}

std::string archived_path(const std::string& arch, uint64_t k) {
  return arch + "/" + archive_file::segment_file_name(k);
}

// The resident bytes of [p, p + n) (mincore: the kernel may merge the
// mapping with a neighbour, so /proc/self/smaps would count both).
uint64_t resident_bytes_of(const void* p, uint64_t n) {
  std::vector<unsigned char> vec((n + 4095) / 4096);
  if (::mincore(const_cast<void*>(p), n, vec.data()) != 0) return ~uint64_t{0};
  uint64_t pages = 0;
  for (unsigned char c : vec) pages += c & 1;
  return pages * 4096;
}

// What recovery reported, one line per action.
struct notes : recovery_observer {
  std::vector<std::string> lines;
  void on_truncated(const std::string&, uint64_t, uint64_t, const std::string&) override {}
  void on_action(const recovery_action& a) override { lines.push_back(a.file + ": " + a.why); }
};

// Opens the writer, runs one pass, closes: what a `varve archive` does.
result<archive_result> archive_once(const std::string& dir, const std::string& arch, position before,
                                    uint32_t frame_bytes = 64 * 1024, uint64_t seg = kSeg) {
  auto log = event_log::open(dir, opts(seg));
  if (!log) return log.error();
  archive_options o;
  o.dir = arch;
  o.before = before;
  o.frame_bytes = frame_bytes;
  auto r = log.value()->archive(o);
  if (status c = log.value()->close(); r && !c) return c;
  return r;
}

TEST(Archive, EveryReadPathAcrossTheArchiveBeforeAndAfterReopen) {
  temp_dir d;
  const std::string dir = d.sub("log"), arch = d.sub("cold/archive");
  auto m = fill(dir, 6);
  ASSERT_FALSE(HasFailure());
  {
    auto log = event_log::open(dir, opts());
    ASSERT_OK(log);
    archive_options o;
    o.dir = arch;
    o.before = position{4 * kSeg + 64};
    auto dry = log.value()->archive(o, true);
    ASSERT_OK(dry);
    EXPECT_EQ(dry.value().segments_archived, 4u);
    EXPECT_EQ(dry.value().archived_bytes, 0u);
    EXPECT_TRUE(fs::exists(segment_path(dir, 0)));
    EXPECT_FALSE(fs::exists(arch));
    auto r = log.value()->archive(o);
    ASSERT_OK(r);
    EXPECT_EQ(r.value().segments_archived, 4u);
    EXPECT_EQ(r.value().raw_bytes, 4 * kSeg);
    EXPECT_EQ(r.value().archive_end, 4u);
    EXPECT_EQ(r.value().dir, fs::absolute(arch).lexically_normal().string());
    // JSON of this kind compresses well; the figure itself is in BENCHMARKS.
    EXPECT_LT(r.value().archived_bytes * 3, r.value().raw_bytes) << r.value().archived_bytes;
    for (uint64_t k = 0; k < 4; ++k) {
      EXPECT_FALSE(fs::exists(segment_path(dir, k))) << k;
      EXPECT_TRUE(fs::exists(archived_path(arch, k))) << k;
      // The stream indexes stay hot: stream reads find positions without the archive.
      EXPECT_TRUE(fs::exists(dir + "/index/" + segment_file_name(k).substr(0, 20) + ".sidx")) << k;
    }
    // The writer's own handle reads on (its mappings of the moved files,
    // and the archive for what it had not mapped), and appends on.
    check_reads(*log.value(), m);
    ASSERT_OK(log.value()->close());
  }
  // A fresh writer, and a read-only handle: everything through the archive.
  {
    auto ro = event_log::open_read_only(dir);
    ASSERT_OK(ro);
    check_reads(*ro.value(), m);
  }
  m = fill(dir, 8, kSeg, m);
  ASSERT_FALSE(HasFailure());
  {
    auto log = event_log::open(dir, opts());
    ASSERT_OK(log);
    check_reads(*log.value(), m);
    // A second pass takes every sealed segment since; a third has nothing left.
    archive_options o;
    o.dir = arch;
    auto r = log.value()->archive(o);
    ASSERT_OK(r);
    EXPECT_EQ(r.value().archive_end, 8u);
    EXPECT_EQ(r.value().segments_archived, 4u);
    auto again = log.value()->archive(o);
    ASSERT_OK(again);
    EXPECT_EQ(again.value().segments_archived, 0u);
    // A log has one archive.
    archive_options other;
    other.dir = d.sub("elsewhere");
    EXPECT_ERRC(log.value()->archive(other), errc::invalid_argument);
    // Another log pointed at this archive directory is refused, and this
    // log's archive is left as it was.
    const std::string other_log = d.sub("other");
    fill(other_log, 3);
    const auto before_bytes = read_file(archived_path(arch, 0));
    auto theirs = archive_once(other_log, arch, position::none());
    EXPECT_EQ(code_of(theirs), errc::invalid_argument) << describe(theirs);
    if (!theirs) {
      EXPECT_NE(theirs.error().message().find("belongs to another log"), std::string::npos);
    }
    EXPECT_EQ(read_file(archived_path(arch, 0)), before_bytes);
    archive_options own;
    own.dir = dir;
    EXPECT_ERRC(log.value()->archive(own), errc::invalid_argument);
    archive_options bad_level = o;
    bad_level.level = 40;
    EXPECT_ERRC(log.value()->archive(bad_level), errc::invalid_argument);
    ASSERT_OK(log.value()->close());
  }
  auto ro = event_log::open_read_only(dir);
  ASSERT_OK(ro);
  check_reads(*ro.value(), m);
  EXPECT_ERRC(ro.value()->archive({arch}), errc::read_only);
  // verify, index verify and stat cover the archive.
  auto v = verify_log(dir);
  ASSERT_OK(v);
  EXPECT_OK(v.value().first_problem);
  EXPECT_EQ(v.value().events, m.size());
  auto ix = verify_index(dir);
  ASSERT_OK(ix);
  EXPECT_TRUE(ix.value().problems.empty()) << describe(ix.value().problems.front());
  EXPECT_EQ(ix.value().sealed_segments, 8u);
  auto st = stat_log(dir);
  ASSERT_OK(st);
  EXPECT_EQ(st.value().archived_segments, 8u);
  EXPECT_EQ(st.value().segments, 9u);
  EXPECT_EQ(st.value().archive_dir, fs::absolute(arch).lexically_normal().string());
  EXPECT_GT(st.value().archive_bytes_on_disk, 0u);
}

TEST(Archive, AStreamReadInflatesOnlyTheFramesItTouches) {
  temp_dir d;
  const std::string dir = d.sub("log"), arch = d.sub("archive");
  constexpr uint64_t kBig = 4ull << 20;  // 16 frames of 256 KiB
  const auto m = fill(dir, 2, kBig);
  ASSERT_FALSE(HasFailure());
  auto r = archive_once(dir, arch, position::none(), 64 * 1024, kBig);
  ASSERT_OK(r);
  ASSERT_EQ(r.value().archive_end, 2u);
  auto ro = event_log::open_read_only(dir);
  ASSERT_OK(ro);
  // One version of a stream, in the middle of segment 0.
  const model_event* pick = nullptr;
  for (const model_event& e : m)
    if (e.position > kBig / 2) {
      pick = &e;
      break;
    }
  ASSERT_NE(pick, nullptr);
  auto sr = ro.value()->read_stream(stream_id(pick->stream), pick->version, read_direction::forward, 1);
  ASSERT_OK(sr);
  event_view v;
  auto n = sr.value().next(v);
  ASSERT_OK(n);
  ASSERT_TRUE(n.value());
  EXPECT_EQ(v.position.value, pick->position);
  EXPECT_EQ(fnv1a(v.payload), pick->payload_hash);
  const segment* seg = detail::log_access::state(*ro.value()).shared->segments.find(0);
  ASSERT_NE(seg, nullptr);
  ASSERT_TRUE(seg->archived());
  // The walk down the stream's runs reads the indexes (hot), then the
  // header's and this record's frames: a small part of the segment.
  const uint64_t touched = resident_bytes_of(seg->data(), kBig);
  EXPECT_LE(touched, 3 * (uint64_t{1} << archive_file::kDefaultLog2Frame)) << touched;
  // A scan inflates it all.
  auto all = read_all(*ro.value());
  ASSERT_OK(all);
  expect_same(all.value(), m);
  EXPECT_GT(resident_bytes_of(seg->data(), kBig), kBig / 2);
}

TEST(Archive, ThreadsInflatingTheSameFramesAtOnceAllReadTheModel) {
  temp_dir d;
  const std::string dir = d.sub("log"), arch = d.sub("archive");
  const auto m = fill(dir, 4);
  ASSERT_FALSE(HasFailure());
  ASSERT_OK(archive_once(dir, arch, position::none(), 4096));  // many frames: many chances to race on one
  std::map<std::string, std::vector<model_event>> by_stream;
  for (const model_event& e : m) by_stream[e.stream].push_back(e);
  for (int round = 0; round < 3; ++round) {
    auto ro = event_log::open_read_only(dir);
    ASSERT_OK(ro);
    const event_log& log = *ro.value();
    // read_stream looks the head up like version_of (one thread at a time);
    // the readers it returns may then be used from any thread.
    std::vector<std::string> names;
    for (const auto& kv : by_stream) names.push_back(kv.first);
    std::vector<std::vector<std::pair<std::string, stream_reader>>> readers(4);
    for (int t : {1, 3}) {
      std::vector<std::string> order = names;
      if (t == 3) std::reverse(order.begin(), order.end());  // another order per thread
      for (const std::string& s : order) {
        auto sr = log.read_stream(stream_id(s), 1);
        ASSERT_OK(sr);
        readers[t].emplace_back(s, std::move(sr.value()));
      }
    }
    std::vector<std::thread> threads;
    std::vector<std::string> errors(4);
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        if (t % 2 == 0) {  // whole-log scans (inflate everything)
          auto all = read_all(log);
          if (!all) errors[t] = all.error().to_string();
          else if (all.value().size() != m.size()) errors[t] = "scan: wrong count";
          else
            for (size_t i = 0; i < m.size(); ++i)
              if (all.value()[i].payload_hash != m[i].payload_hash) errors[t] = "scan: wrong payload";
          return;
        }
        // stream reads (inflate frame by frame)
        for (auto& [s, sr] : readers[t]) {
          event_view v;
          size_t i = 0;
          while (true) {
            auto n = sr.next(v);
            if (!n) {
              errors[t] = n.error().to_string();
              return;
            }
            if (!n.value()) break;
            if (i >= by_stream.at(s).size() || fnv1a(v.payload) != by_stream.at(s)[i].payload_hash) {
              errors[t] = "stream " + s + ": wrong event at " + std::to_string(i);
              return;
            }
            ++i;
          }
          if (i != by_stream.at(s).size()) errors[t] = "stream " + s + ": wrong count";
        }
      });
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) EXPECT_EQ(errors[t], "") << "thread " << t << " round " << round;
  }
}

TEST(Archive, ADamagedArchiveFileIsAnErrorNamingItNeverOtherBytes) {
  temp_dir d;
  const std::string dir = d.sub("log"), arch = d.sub("archive");
  const auto m = fill(dir, 2);
  ASSERT_FALSE(HasFailure());
  ASSERT_OK(archive_once(dir, arch, position{kSeg + 64}));
  const std::string file = archived_path(arch, 0);
  const std::vector<uint8_t> good = read_file(file);
  ASSERT_GT(good.size(), archive_file::kHeaderSize);
  // Every byte, flipped: reading the whole log either fails naming the
  // archive file or (a bit zstd does not need) gives back exactly the
  // model. Never other events.
  size_t detected = 0, flipped = 0;
  for (uint64_t off = 0; off < good.size(); off += sample_stride(), ++flipped) {
    SCOPED_TRACE("byte " + std::to_string(off) + " of " + file);
    flip_byte(file, off, 0x10);
    auto ro = event_log::open_read_only(dir);
    result<std::vector<model_event>> all = ro ? read_all(*ro.value()) : result<std::vector<model_event>>(ro.error());
    if (!all) {
      ++detected;
      EXPECT_NE(all.error().message().find(file), std::string::npos) << all.error().message();
      EXPECT_TRUE(all.error().code() == errc::corruption || all.error().code() == errc::newer_format)
          << describe(all.error());
    } else {
      expect_same(all.value(), m);
    }
    flip_byte(file, off, 0x10);
    if (HasFailure()) break;
  }
  // The header, the table and the frame are all checked: almost all flips show.
  EXPECT_GT(detected * 100, flipped * 95) << detected << " of " << flipped;
  // A short file, and a missing one.
  fs::resize_file(file, good.size() - 1);
  {
    auto ro = event_log::open_read_only(dir);
    ASSERT_OK(ro);
    auto all = read_all(*ro.value());
    ASSERT_FALSE(all.ok());
    EXPECT_NE(all.error().message().find(file), std::string::npos) << all.error().message();
  }
  fs::remove(file);
  auto w = event_log::open(dir, opts());
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code(), errc::corruption);
  EXPECT_NE(w.error().message().find(file), std::string::npos) << w.error().message();
  EXPECT_NE(w.error().message().find("mounted"), std::string::npos) << w.error().message();
}

TEST(Archive, AnInterruptedPassIsFinishedByTheNextOpenAndADamagedRecordRefused) {
  temp_dir d;
  const std::string dir = d.sub("log"), arch = d.sub("archive");
  const auto m = fill(dir, 4);
  ASSERT_FALSE(HasFailure());
  // Keep segment 1's file, as a crash after DIR/archive but before the
  // unlink would have.
  fs::copy_file(segment_path(dir, 1), d.sub("keep.seg"));
  ASSERT_OK(archive_once(dir, arch, position{2 * kSeg + 64}));
  fs::copy_file(d.sub("keep.seg"), segment_path(dir, 1));
  notes obs;
  log_options o = opts();
  o.observer = &obs;
  {
    auto log = event_log::open(dir, o);
    ASSERT_OK(log);
    EXPECT_FALSE(fs::exists(segment_path(dir, 1)));
    bool said = false;
    for (const std::string& l : obs.lines) said |= l.find("the archive holds") != std::string::npos;
    EXPECT_TRUE(said);
    check_reads(*log.value(), m);
    ASSERT_OK(log.value()->close());
  }
  // A damaged DIR/archive: refused by every open, naming it.
  const std::string rec = dir + "/archive";
  flip_byte(rec, 30);
  auto w = event_log::open(dir, opts());
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message().find(rec), std::string::npos) << w.error().message();
  auto ro = event_log::open_read_only(dir);
  ASSERT_FALSE(ro.ok());
  EXPECT_NE(ro.error().message().find(rec), std::string::npos) << ro.error().message();
  flip_byte(rec, 30);
  ASSERT_OK(event_log::open_read_only(dir));
}

TEST(Archive, RetentionRemovesArchivedSegmentsFromTheArchive) {
  temp_dir d;
  const std::string dir = d.sub("log"), arch = d.sub("archive");
  const auto m = fill(dir, 6);
  ASSERT_FALSE(HasFailure());
  auto log = event_log::open(dir, opts());
  ASSERT_OK(log);
  archive_options o;
  o.dir = arch;
  o.before = position{4 * kSeg + 64};
  ASSERT_OK(log.value()->archive(o));
  retention_policy p;
  p.before = position{2 * kSeg + 64};
  auto r = log.value()->retain(p);
  ASSERT_OK(r);
  EXPECT_EQ(r.value().first_segment, 2u);
  EXPECT_FALSE(fs::exists(archived_path(arch, 0)));
  EXPECT_FALSE(fs::exists(archived_path(arch, 1)));
  EXPECT_TRUE(fs::exists(archived_path(arch, 2)));
  ASSERT_OK(log.value()->close());
  std::vector<model_event> rest;
  for (const model_event& e : m)
    if (e.position >= r.value().start.value) rest.push_back(e);
  auto ro = event_log::open_read_only(dir);
  ASSERT_OK(ro);
  auto all = read_all(*ro.value());
  ASSERT_OK(all);
  expect_same(all.value(), rest);
  auto v = verify_log(dir);
  ASSERT_OK(v);
  EXPECT_OK(v.value().first_problem);
  // A crash part way through such a pass leaves archive files below the
  // start: the next open removes them, saying so.
  fs::copy_file(archived_path(arch, 2), d.sub("keep.varc"));
  {
    retention_policy p2;
    p2.before = position{3 * kSeg + 64};
    auto w = event_log::open(dir, opts());
    ASSERT_OK(w);
    auto r2 = w.value()->retain(p2);
    ASSERT_OK(r2);
    ASSERT_EQ(r2.value().first_segment, 3u);
    ASSERT_OK(w.value()->close());
  }
  EXPECT_FALSE(fs::exists(archived_path(arch, 2)));
  fs::copy_file(d.sub("keep.varc"), archived_path(arch, 2));
  notes obs;
  {
    log_options o2 = opts();
    o2.observer = &obs;
    auto w = event_log::open(dir, o2);
    ASSERT_OK(w);
    ASSERT_OK(w.value()->close());
  }
  EXPECT_FALSE(fs::exists(archived_path(arch, 2)));
  bool said = false;
  for (const std::string& l : obs.lines) said |= l.find("archived segment below the log's start") != std::string::npos;
  EXPECT_TRUE(said);
  auto after = event_log::open_read_only(dir);
  ASSERT_OK(after);
  auto left = read_all(*after.value());
  ASSERT_OK(left);
  ASSERT_FALSE(left.value().empty());
  EXPECT_EQ(left.value().front().position, 3 * kSeg + 64);
  EXPECT_EQ(left.value().back().seq, m.back().seq);
}

// Images of a crash hold the archive under the image's own root: DIR/archive
// is pointed there, as an operator restoring both volumes would mount them.
void repoint_archive(const std::string& image_log, const std::string& image_arch) {
  segment_format::meta meta;
  auto fs = posix_file_system();
  ASSERT_OK(meta_file::read(*fs, image_log, meta));
  auto loc = archive_file::read_location(*fs, image_log, meta.log_id);
  ASSERT_OK(loc);
  if (!loc.value()) return;
  archive_file::location l = *loc.value();
  l.dir = fs::absolute(image_arch).lexically_normal().string();
  ASSERT_OK(archive_file::write_location(*fs, image_log, l));
}

TEST(Archive, PowerLossAtEveryStepOfAPass) {
  temp_dir d;
  const std::string root = d.sub("root");
  const std::string dir = root + "/log", arch = root + "/archive";
  fs::create_directories(root);
  const auto m = fill(dir, 4);
  ASSERT_FALSE(HasFailure());
  auto pfs = std::make_shared<power_loss_file_system>();
  log_options o = opts();
  o.fs = pfs;
  auto log = event_log::open(dir, o);
  ASSERT_OK(log);
  std::vector<std::pair<std::string, std::string>> images;
  constexpr int kSeedsPerStep = 2;
  std::mutex images_mu;
  pfs->set_hook([&](const char* op, const std::string& path) {
    std::lock_guard<std::mutex> g(images_mu);
    for (int s = 0; s < kSeedsPerStep; ++s) {
      const std::string image = d.sub("image-" + std::to_string(images.size()));
      const uint64_t seed = 7000 + images.size();
      status st = pfs->crash(root, image, seed);
      EXPECT_TRUE(st.ok()) << describe(st);
      images.push_back({image, std::string(op) + " " + path + " seed " + std::to_string(seed)});
    }
  });
  archive_options ao;
  ao.dir = arch;
  ao.before = position{3 * kSeg + 64};
  auto r = log.value()->archive(ao);
  pfs->set_hook(nullptr);
  ASSERT_OK(r);
  ASSERT_EQ(r.value().archive_end, 3u);
  ASSERT_OK(log.value()->close());
  // Each archive file's write, sync, rename, directory sync; the record's; the removals.
  ASSERT_GE(images.size(), 20u * kSeedsPerStep);
  size_t archived = 0;
  for (const auto& [image, step] : images) {
    SCOPED_TRACE("power lost after " + step + " (" + image + ")");
    repoint_archive(image + "/log", image + "/archive");
    auto reopened = event_log::open(image + "/log", opts());
    ASSERT_OK(reopened);
    auto all = read_all(*reopened.value());
    ASSERT_OK(all);
    expect_same(all.value(), m);
    ASSERT_OK(reopened.value()->close());
    auto st = stat_log(image + "/log");
    ASSERT_OK(st);
    archived += st.value().archived_segments == 3;
    // After the open, every segment has exactly one home.
    for (uint64_t k = 0; k < 3; ++k)
      EXPECT_NE(fs::exists(segment_path(image + "/log", k)), st.value().archived_segments == 3) << k;
    auto v = verify_log(image + "/log");
    ASSERT_OK(v);
    EXPECT_OK(v.value().first_problem);
    if (HasFailure()) break;
  }
  EXPECT_GT(archived, 0u);
  EXPECT_LT(archived, images.size());
}

}  // namespace
