// varve-torture: a crash-recovery torture harness.
//
// A child process (this binary re-executed with --child) opens a log and
// appends single events and atomic batches (payloads 0 B .. 64 KiB, many
// streams, right and deliberately wrong expected versions, a random
// durability mode) and reports every acknowledgement through a pipe. The
// parent SIGKILLs it at a random moment -- during open/recovery, mid-append,
// just after a segment roll-over (while the background thread writes the
// footer and the head-table checkpoint), around a close/reopen -- then reopens
// the log itself (running recovery) and checks, with a full scan:
//
//   1. every acknowledged event is present, byte for byte, where it was
//      acknowledged (position, sequence, stream, version, batch framing);
//   2. every event in the log, acknowledged or not, is one the child really
//      built (all fields regenerate from the log's salt and the sequence);
//   3. no partial batch is visible, and since the last acknowledgement at
//      most one further batch (the append in flight) survived;
//   4. sequences are dense, every stream's versions are contiguous from 1 and
//      its back-chain (`previous`) links its events;
//   5. the index answers match the scan: version_of(stream) equals the last
//      version the scan saw, for every stream (0 for streams never seen),
//      in the recovered writer and in a read-only follower; stats agree;
//   6. the log accepts appends again (and refuses a wrong expected version),
//      closes cleanly, and verify_log finds it intact;
//   7. recovery after a SIGKILL may cut a torn tail, drop a segment file
//      whose header was never written or rescan a torn footer, but never
//      rejects a head-table checkpoint or sets a segment holding records
//      aside; opening a cleanly closed log repairs nothing at all.
//
// In a quarter of the iterations a second child opens the crashed log
// before the parent does, so that recovery itself (of a torn tail) is
// killed too; the acknowledgements of both children count.
//
// The child checks its side too: each append's outcome (ok,
// wrong_expected_version with the right actual version, too_large) is
// predicted from its own model, and after every open its index must agree
// with the versions the parent last verified.
//
// Usage: varve-torture [--seconds S] [--iterations N] [--seed X|random] [--dir D]
//                      [--keep] [--snapshot] [--json FILE] [--verbose]
// Runs until S seconds or N iterations, whichever ends first (neither: 60 s).
// D (default: a fresh mkdtemp under $TMPDIR or /tmp) must be absent, empty
// or left by an earlier run; the harness owns D/log-N, D/model.bin and
// D/crashed-snapshot. A fresh log (new segment size, streams, payload mix)
// is started every 10-30 iterations or past 256 MiB; the previous one is
// deleted. --keep keeps the last log. Exit status: 0 when every invariant
// held, 1 on a violation (the seed, iteration, configuration and log
// directory are printed; the directory is kept) or when the run checked
// nothing (no iteration, no acknowledged event, no event verified), 2 on a
// usage or environment error. docs/RELIABILITY.md has more.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>

#include "fuzz/read_paths.h"
#include "varve/varve.h"

namespace {

using namespace varve;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

constexpr uint32_t kMaxBatch = 20;
constexpr uint64_t kMaxPayload = 64 << 10;
constexpr uint64_t kRecordHeader = 72;  // docs/FORMAT.md 4.1
constexpr uint64_t kSegmentOverhead = 64 + 64 + 24;  // header, footer, segment-end record
constexpr uint64_t kLogCapBytes = 256ull << 20;      // start a fresh log past this
constexpr uint64_t kFixedTimestampBase = 1'700'000'000'000'000'000ull;

// ---------------------------------------------------------------------------
// Deterministic generation. Every field of an event follows from the log's
// salt and the event's global sequence number; only the payload size is the
// child's free choice (and the record says what it is). So the parent can
// regenerate and check every event in the log, acknowledged or not.

constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

struct rng {
  uint64_t s;
  explicit rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    s += 0x9e3779b97f4a7c15ull;
    return mix64(s);
  }
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }  // inclusive
  bool chance(uint64_t per_mille) { return below(1000) < per_mille; }
  double unit() { return double(next() >> 11) * (1.0 / double(uint64_t{1} << 53)); }
};

void fill_payload(uint64_t key, std::byte* out, size_t n) {
  uint64_t s = key;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s += 0x9e3779b97f4a7c15ull;
    const uint64_t w = mix64(s);
    std::memcpy(out + i, &w, 8);
  }
  if (i < n) {
    s += 0x9e3779b97f4a7c15ull;
    const uint64_t w = mix64(s);
    std::memcpy(out + i, &w, n - i);
  }
}

uint64_t hash_bytes(uint64_t h, std::span<const std::byte> b) {
  h = mix64(h ^ b.size());
  size_t i = 0;
  for (; i + 8 <= b.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, b.data() + i, 8);
    h = mix64(h ^ w) + i;
  }
  if (i < b.size()) {
    uint64_t w = 0;
    std::memcpy(&w, b.data() + i, b.size() - i);
    h = mix64(h ^ w ^ 0xabcdef);
  }
  return h;
}

struct fields {
  uint32_t type = 0;
  uint16_t schema = 1;
  uint64_t timestamp = 0;  // 0: the log's clock
  content_type content = content_type::binary;
  bool has_id[3] = {};
  id128 ids[3];
  uint64_t payload_key = 0;
  uint32_t id_count() const { return uint32_t(has_id[0]) + has_id[1] + has_id[2]; }
};

fields fields_for(uint64_t salt, uint64_t seq) {
  const uint64_t k = mix64(salt ^ mix64(seq * 0x2545f4914f6cdd1dull + 17));
  fields f;
  f.type = uint32_t(1 + k % 1000);
  f.schema = uint16_t(1 + (k >> 10) % 4);
  f.timestamp = (k >> 12) % 4 == 0 ? 0 : kFixedTimestampBase + seq;
  f.content = (k >> 14) % 3 == 0 ? content_type::json : content_type::binary;
  for (int i = 0; i < 3; ++i) {
    f.has_id[i] = (k >> (16 + 2 * i)) % 3 == 0;
    uint64_t a = mix64(k + 101 + i), b = mix64(a);
    std::memcpy(f.ids[i].bytes.data(), &a, 8);
    std::memcpy(f.ids[i].bytes.data() + 8, &b, 8);
  }
  f.payload_key = mix64(k ^ 0x9a7104d);
  return f;
}

uint64_t record_bytes(uint64_t stream_len, uint32_t ids, uint64_t payload) {
  return (kRecordHeader + 16ull * ids + stream_len + payload + 7) & ~uint64_t{7};
}

// The streams of one log: integer ids (8 big-endian bytes, top byte 0) and
// byte-string ids ("s<k>." + letters, 4 to 255 bytes). The two kinds can
// never share bytes.
struct universe {
  uint64_t salt = 0;
  std::vector<std::string> bytes;
  std::vector<bool> integer;
  std::vector<uint64_t> int_value;
  std::unordered_map<std::string, uint32_t> index_of;

  universe(uint64_t s, uint32_t n) : salt(s) {
    bytes.resize(n);
    integer.resize(n);
    int_value.resize(n);
    for (uint32_t k = 0; k < n; ++k) {
      const uint64_t h = mix64(salt ^ (uint64_t{k} * 0x9e3779b97f4a7c15ull + 3));
      if (h % 5 == 0) {
        const uint64_t v = (uint64_t{k} << 24) | (h >> 40);
        integer[k] = true;
        int_value[k] = v;
        std::string b(8, '\0');
        for (int i = 0; i < 8; ++i) b[i] = char(v >> (56 - 8 * i));
        bytes[k] = b;
      } else {
        std::string b = "s" + std::to_string(k) + ".";
        const size_t want = (h >> 8) % 100 < 90 ? 4 + (h >> 16) % 29 : 4 + (h >> 16) % 252;
        uint64_t x = h;
        while (b.size() < want) {
          x = mix64(x);
          b.push_back(char('a' + x % 26));
        }
        bytes[k] = b;
      }
      index_of.emplace(bytes[k], k);
    }
  }
  uint32_t size() const { return uint32_t(bytes.size()); }
  stream_id id(uint32_t k) const {
    return integer[k] ? stream_id::from_u64(int_value[k]) : stream_id(std::string_view(bytes[k]));
  }
};

// Event buffers for one append: views into them are handed to the log.
struct batch_builder {
  std::array<fields, kMaxBatch> f;
  std::array<std::vector<std::byte>, kMaxBatch> payload;
  std::array<event_data, kMaxBatch> data;

  // Builds events seq0.. with the given payload sizes; returns the hash of the payloads.
  uint64_t build(uint64_t salt, uint64_t seq0, const uint32_t* sizes, uint32_t count) {
    uint64_t h = 0;
    for (uint32_t i = 0; i < count; ++i) {
      f[i] = fields_for(salt, seq0 + i);
      payload[i].resize(sizes[i]);
      fill_payload(f[i].payload_key, payload[i].data(), sizes[i]);
      event_data& e = data[i];
      e = event_data{};
      e.type = f[i].type;
      e.schema_version = f[i].schema;
      e.payload = std::span<const std::byte>(payload[i].data(), payload[i].size());
      e.content = f[i].content;
      e.timestamp_ns = f[i].timestamp;
      e.event_id = f[i].has_id[0] ? &f[i].ids[0] : nullptr;
      e.correlation_id = f[i].has_id[1] ? &f[i].ids[1] : nullptr;
      e.causation_id = f[i].has_id[2] ? &f[i].ids[2] : nullptr;
      h = hash_bytes(h, e.payload);
    }
    return h;
  }
  uint64_t bytes_for(uint64_t stream_len, uint32_t count) const {
    uint64_t t = 0;
    for (uint32_t i = 0; i < count; ++i)
      t += record_bytes(stream_len, f[i].id_count(), payload[i].size());
    return t;
  }
};

// Payload sizes, skewed towards small: 5% empty, 35% up to 64 B, 30% up to
// 512 B, 20% up to 4 KiB, 8% up to 32 KiB, 2% up to 64 KiB. A log's profile
// shifts the mix: 0 mixed, 1 small only (<= 512 B), 2 heavy.
uint32_t draw_size(rng& r, int profile) {
  uint64_t x = r.below(1000);
  if (profile == 1) x = x * 700 / 1000;
  if (profile == 2) x = 400 + x * 600 / 1000;
  if (x < 50) return 0;
  if (x < 400) return uint32_t(r.between(1, 64));
  if (x < 700) return uint32_t(r.between(65, 512));
  if (x < 900) return uint32_t(r.between(513, 4096));
  if (x < 980) return uint32_t(r.between(4097, 32768));
  return uint32_t(r.between(32769, kMaxPayload));
}

// ---------------------------------------------------------------------------
// The pipe protocol: fixed-size messages, each written with one write(2) of
// less than PIPE_BUF bytes, so they arrive whole and in order, and every one
// written before the SIGKILL is still read by the parent.

enum msg_kind : uint32_t {
  m_started = 1,   // exec'd, about to open
  m_ready,         // opened: seq = next sequence, end = committed, micros = open time
  m_ack,           // an append returned ok
  m_refused,       // an append was refused as predicted: version = errc
  m_closing,       // about to close() for a close/reopen cycle
  m_reopened,      // reopened: micros = close + open time
  m_idle,          // byte budget spent: nothing more will be appended
  m_fail,          // an invariant failed in the child (details on stderr)
  m_note,          // the recovery observer said something (details on stderr)
};

struct msg {
  uint32_t kind = 0;
  uint32_t count = 0;
  uint64_t seq = 0;
  uint64_t stream = 0;
  uint64_t version = 0;
  uint64_t first = 0;
  uint64_t end = 0;
  uint64_t hash = 0;
  uint64_t micros = 0;
  uint32_t sizes[kMaxBatch] = {};
};
static_assert(sizeof(msg) <= PIPE_BUF);

// ---------------------------------------------------------------------------
// The model file: the versions the parent last verified, for the child to
// compare its recovered index with.

struct model_file {
  uint64_t salt = 0;
  uint64_t next_sequence = 0;
  std::vector<uint64_t> versions;

  bool write(const std::string& path) const {
    std::ofstream o(path + ".tmp", std::ios::binary | std::ios::trunc);
    const uint64_t n = versions.size();
    o.write(reinterpret_cast<const char*>(&salt), 8);
    o.write(reinterpret_cast<const char*>(&next_sequence), 8);
    o.write(reinterpret_cast<const char*>(&n), 8);
    o.write(reinterpret_cast<const char*>(versions.data()), std::streamsize(8 * n));
    o.close();
    if (!o) return false;
    return ::rename((path + ".tmp").c_str(), path.c_str()) == 0;
  }
  bool read(const std::string& path) {
    std::ifstream i(path, std::ios::binary);
    uint64_t n = 0;
    i.read(reinterpret_cast<char*>(&salt), 8);
    i.read(reinterpret_cast<char*>(&next_sequence), 8);
    i.read(reinterpret_cast<char*>(&n), 8);
    if (!i || n > (1u << 24)) return false;
    versions.resize(n);
    i.read(reinterpret_cast<char*>(versions.data()), std::streamsize(8 * n));
    return bool(i);
  }
};

const char* mode_name(durability m) {
  switch (m) {
    case durability::none: return "none";
    case durability::group: return "group";
    case durability::sync: return "sync";
  }
  return "?";
}

uint64_t micros_since(steady::time_point t0) {
  return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - t0).count());
}

// ---------------------------------------------------------------------------
// The child.

struct child_config {
  std::string dir;
  int fd = -1;
  uint64_t salt = 0;
  uint32_t streams = 1;
  uint64_t segment_bytes = 64 << 10;
  durability mode = durability::none;
  bool prepare = true;
  uint64_t seed = 0;
  uint64_t budget = 0;           // record bytes this child may append
  uint64_t reopen_per_mille = 0; // chance of a close/reopen cycle before an append, in 1/1000
  int profile = 0;
  bool crashed = false;           // opens a crashed log: its recovery may cut a torn tail
  std::string model;
};

class child {
 public:
  explicit child(child_config c) : c_(std::move(c)), u_(c_.salt, c_.streams), r_(c_.seed) {}

  int run() {
    send({.kind = m_started});
    expect_cuts_ = c_.crashed;
    if (!open_log(&ready_micros_)) return 3;
    expect_cuts_ = false;
    if (!check_against_model()) return 4;
    send({.kind = m_ready, .seq = next_seq_, .end = log_->committed_position().value,
          .micros = ready_micros_});
    uint64_t spent = 0;
    for (;;) {
      if (spent >= c_.budget) {
        send({.kind = m_idle});
        for (;;) ::pause();
      }
      if (r_.chance(c_.reopen_per_mille) && !reopen()) return 5;
      uint64_t bytes = 0;
      if (!append_one(&bytes)) return 6;
      spent += bytes;
      // Now and then the other durability calls, so kills land in them too.
      if (r_.chance(3)) {
        if (status s = log_->flush(); !s) return fail("flush: " + s.to_string());
      }
    }
  }

 private:
  // A child normally opens a log the parent (or the child itself) closed
  // cleanly, so recovery has nothing to cut and the background thread has
  // no reason to fail a checkpoint: anything said then is reported.
  struct observer : recovery_observer {
    child* self;
    void on_truncated(const std::string& file, uint64_t offset, uint64_t bytes,
                      const std::string& why) override {
      // Opening a crashed log, recovery may cut a torn tail, drop an
      // uninitialised segment file or rescan a torn footer -- not more.
      if (self->expect_cuts_ && why.find("checkpoint rejected") == std::string::npos &&
          why.find("renamed aside") == std::string::npos && why.find("not written") == std::string::npos)
        return;
      std::fprintf(stderr, "torture child: recovery/background note (crashed log: %d): %s offset %" PRIu64
                   " (%" PRIu64 " bytes): %s\n", int(self->expect_cuts_), file.c_str(), offset, bytes, why.c_str());
      std::fflush(stderr);
      self->send({.kind = m_note});
    }
  };

  void send(const msg& m) {
    // A short write cannot happen below PIPE_BUF; EINTR is retried.
    while (::write(c_.fd, &m, sizeof m) < 0 && errno == EINTR) {
    }
  }
  int fail(const std::string& what) {
    std::fprintf(stderr, "torture child: FAILED: %s\n", what.c_str());
    std::fflush(stderr);
    send({.kind = m_fail});
    return 7;
  }
  bool bad(const std::string& what) {
    fail(what);
    return false;
  }

  log_options options(durability mode) {
    log_options o;
    o.segment_bytes = c_.segment_bytes;
    o.mode = mode;
    o.prepare_next_segment = c_.prepare;
    o.group_commit_interval = std::chrono::microseconds(r_.chance(500) ? 1000 : r_.between(50, 5000));
    o.group_commit_bytes = r_.chance(500) ? (1u << 20) : r_.between(4096, 4u << 20);
    obs_.self = this;
    o.observer = &obs_;
    return o;
  }

  bool open_log(uint64_t* micros) {
    const auto t0 = steady::now();
    auto opened = event_log::open_or_create(c_.dir, options(c_.mode));
    if (!opened) {
      fail("open_or_create(" + c_.dir + "): " + opened.error().to_string());
      return false;
    }
    log_ = std::move(opened).value();
    *micros = micros_since(t0);
    next_seq_ = log_->next_sequence().value;
    versions_.assign(u_.size(), 0);
    for (uint32_t k = 0; k < u_.size(); ++k) versions_[k] = log_->version_of(u_.id(k));
    return true;
  }

  // The recovered index must agree with what the parent verified by a scan.
  bool check_against_model() {
    model_file m;
    if (c_.model.empty() || !fs::exists(c_.model)) return true;
    if (!m.read(c_.model) || m.salt != c_.salt || m.versions.size() != u_.size()) {
      fail("cannot read the model file " + c_.model);
      return false;
    }
    if (m.next_sequence != next_seq_) {
      fail("after open, next_sequence " + std::to_string(next_seq_) +
           " but the parent verified " + std::to_string(m.next_sequence) + " events");
      return false;
    }
    for (uint32_t k = 0; k < u_.size(); ++k)
      if (versions_[k] != m.versions[k]) {
        fail("after open, version_of(stream #" + std::to_string(k) + ") = " +
             std::to_string(versions_[k]) + " but the parent's scan says " +
             std::to_string(m.versions[k]));
        return false;
      }
    return true;
  }

  // A clean close and reopen (possibly in another durability mode): the
  // reopened index must equal this child's own model.
  bool reopen() {
    send({.kind = m_closing});
    const auto t0 = steady::now();
    if (status s = log_->close(); !s) {
      fail("close: " + s.to_string());
      return false;
    }
    log_.reset();
    const std::vector<uint64_t> mine = versions_;
    const uint64_t my_seq = next_seq_;
    c_.mode = durability(r_.below(3));
    uint64_t open_us = 0;
    if (!open_log(&open_us)) return false;
    if (next_seq_ != my_seq) {
      fail("after close/reopen, next_sequence " + std::to_string(next_seq_) + " want " +
           std::to_string(my_seq));
      return false;
    }
    for (uint32_t k = 0; k < u_.size(); ++k)
      if (versions_[k] != mine[k]) {
        fail("after close/reopen, version_of(stream #" + std::to_string(k) + ") = " +
             std::to_string(versions_[k]) + " want " + std::to_string(mine[k]));
        return false;
      }
    send({.kind = m_reopened, .micros = micros_since(t0)});
    return true;
  }

  uint32_t pick_stream() {
    const uint32_t n = u_.size();
    if (n > 8 && r_.chance(500)) return uint32_t(r_.below(8));  // a few hot streams
    return uint32_t(r_.below(n));
  }

  bool append_one(uint64_t* bytes_out) {
    const uint32_t k = pick_stream();
    const std::string& key = u_.bytes[k];
    const uint64_t v = versions_[k];
    const uint64_t room = c_.segment_bytes - kSegmentOverhead;

    // Sizes: single events 60%, batches of 2..20 (skewed small) 40%.
    uint32_t count = 1;
    if (r_.chance(400)) count = r_.chance(700) ? uint32_t(r_.between(2, 5)) : uint32_t(r_.between(6, kMaxBatch));
    uint32_t sizes[kMaxBatch];
    const bool too_large_on_purpose = r_.chance(15);
    if (too_large_on_purpose) {
      // A batch that fits in no segment: 20 events near 64 KiB, or (in a
      // 64 KiB segment) a single 64 KiB event.
      count = c_.segment_bytes <= (64u << 10) && r_.chance(500) ? 1 : kMaxBatch;
      for (uint32_t i = 0; i < count; ++i) sizes[i] = uint32_t(r_.between(kMaxPayload - 4096, kMaxPayload));
    } else {
      for (uint32_t i = 0; i < count; ++i) sizes[i] = draw_size(r_, c_.profile);
    }
    uint64_t h = b_.build(c_.salt, next_seq_, sizes, count);
    uint64_t total = b_.bytes_for(key.size(), count);
    if (!too_large_on_purpose && total > room) {
      // Keep the batch within a segment: halve the largest payload until it fits.
      while (total > room) {
        uint32_t* big = std::max_element(sizes, sizes + count);
        *big /= 2;
        total = 0;
        for (uint32_t i = 0; i < count; ++i)
          total += record_bytes(key.size(), b_.f[i].id_count(), sizes[i]);
      }
      h = b_.build(c_.salt, next_seq_, sizes, count);
      total = b_.bytes_for(key.size(), count);
    }

    // Expected version: right most of the time, deliberately wrong 12%.
    expected_version exp = expected_version::exact(v);
    const uint64_t pick = r_.below(100);
    if (pick < 55) {
      exp = expected_version::exact(v);
    } else if (pick < 70) {
      exp = expected_version::any();
    } else if (pick < 88) {
      exp = v == 0 ? expected_version::no_stream() : expected_version::stream_exists();
    } else {
      switch (r_.below(3)) {
        case 0: exp = expected_version::exact(v + 1 + r_.below(5)); break;
        case 1: exp = v > 0 ? expected_version::exact(v - 1 - r_.below(v)) : expected_version::stream_exists(); break;
        default: exp = v == 0 ? expected_version::stream_exists() : expected_version::no_stream(); break;
      }
    }
    errc want = errc::ok;
    if (!exp.accepts(v)) want = errc::wrong_expected_version;
    else if (total > room) want = errc::too_large;

    const uint64_t committed_before = log_->committed_position().value;
    const stream_id id = u_.id(k);
    result<append_result> r =
        count == 1 && r_.chance(500)
            ? log_->append(id, exp, b_.data[0])
            : log_->append(id, exp, std::span<const event_data>(b_.data.data(), count));
    const errc got = r ? errc::ok : r.error().code();
    const std::string what = "append of " + std::to_string(count) + " events (" +
                             std::to_string(total) + " record bytes) to stream #" +
                             std::to_string(k) + " at version " + std::to_string(v);
    if (got != want)
      return bad(what + ": got " + (r ? std::string("ok") : r.error().to_string()) + ", want " +
                  std::string(errc_name(want)));
    if (!r) {
      if (got == errc::wrong_expected_version && r.error().actual_version() != v)
        return bad(what + ": refusal names actual version " +
                    std::to_string(r.error().actual_version()));
      if (log_->next_sequence().value != next_seq_ ||
          log_->committed_position().value != committed_before || log_->version_of(id) != v)
        return bad(what + ": a refused append changed the log");
      send({.kind = m_refused, .stream = k, .version = uint64_t(got)});
      *bytes_out = 0;
      return true;
    }
    const append_result& a = r.value();
    if (a.first_sequence.value != next_seq_ || a.first_version != v + 1 ||
        a.last_version != v + count || a.end.value <= a.first.value ||
        a.first.value < committed_before || log_->committed_position().value < a.end.value ||
        a.first.value % 8 != 0)
      return bad(what + ": append_result disagrees (first_sequence " +
                  std::to_string(a.first_sequence.value) + ", versions " +
                  std::to_string(a.first_version) + ".." + std::to_string(a.last_version) +
                  ", positions " + std::to_string(a.first.value) + ".." +
                  std::to_string(a.end.value) + ")");
    if (a.end.value - a.first.value != total)
      return bad(what + ": batch occupies " + std::to_string(a.end.value - a.first.value) +
                  " bytes, want " + std::to_string(total));
    msg m{.kind = m_ack, .count = count, .seq = next_seq_, .stream = k, .version = v + 1,
          .first = a.first.value, .end = a.end.value, .hash = h};
    std::memcpy(m.sizes, sizes, sizeof(uint32_t) * count);
    versions_[k] = v + count;
    next_seq_ += count;
    // Acknowledged: the append returned. Only now may the parent count on it.
    send(m);
    if (c_.mode == durability::group && r_.chance(20)) {
      if (status s = log_->wait_durable(a.end); !s) return bad("wait_durable: " + s.to_string());
    }
    *bytes_out = total;
    return true;
  }

  child_config c_;
  universe u_;
  rng r_;
  observer obs_;
  std::unique_ptr<event_log> log_;
  std::vector<uint64_t> versions_;
  uint64_t next_seq_ = 0;
  uint64_t ready_micros_ = 0;
  std::atomic<bool> expect_cuts_{false};  // read by the background thread's reports
  batch_builder b_;
};

int child_main(int argc, char** argv) {
  child_config c;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    const size_t eq = a.find('=');
    if (eq == std::string_view::npos) return 2;
    const std::string k(a.substr(0, eq)), v(a.substr(eq + 1));
    const uint64_t n = std::strtoull(v.c_str(), nullptr, 10);
    if (k == "dir") c.dir = v;
    else if (k == "fd") c.fd = int(n);
    else if (k == "salt") c.salt = n;
    else if (k == "streams") c.streams = uint32_t(n);
    else if (k == "segment") c.segment_bytes = n;
    else if (k == "mode") c.mode = durability(n);
    else if (k == "prepare") c.prepare = n != 0;
    else if (k == "seed") c.seed = n;
    else if (k == "budget") c.budget = n;
    else if (k == "reopen") c.reopen_per_mille = n;
    else if (k == "profile") c.profile = int(n);
    else if (k == "model") c.model = v;
    else if (k == "crashed") c.crashed = n != 0;
    else return 2;
  }
  if (c.dir.empty() || c.fd < 0 || c.streams == 0) return 2;
  child ch(std::move(c));
  return ch.run();
}

// ---------------------------------------------------------------------------
// The parent.

enum strategy : int { s_open, s_uniform, s_rollover, s_acks, s_reopen, kStrategies };
const char* strategy_name(int s) {
  static const char* names[] = {"open", "uniform", "rollover", "acks", "reopen"};
  return names[s];
}

struct ack_rec {
  uint64_t first_seq, first_pos, end_pos, first_version, hash;
  uint32_t stream, count;
  uint32_t sizes_at;  // into log_state::sizes
};

// What one child of an iteration contributed: acks [acks_begin, acks_end) of the log's list.
struct child_run {
  bool ready = false;
  uint64_t ready_seq = 0;  // next sequence after the child's open (its recovery)
  size_t acks_begin = 0, acks_end = 0;
};

struct log_state {
  uint32_t number = 0;
  std::string dir;
  uint64_t segment_bytes = 0;
  int log2 = 0;
  std::unique_ptr<universe> u;
  int profile = 0;
  uint32_t iterations_left = 0;
  std::vector<ack_rec> acks;  // every acknowledged append on this log, in sequence order
  std::vector<uint32_t> sizes;
  model_file verified;        // as of the last verification
  uint64_t end_position = 0;  // committed end at the last verification
  uint64_t open_micros_est = 2000, reopen_micros_est = 2000, recovery_micros_est = 5000;
  bool created = false;       // a log exists in dir (varve.meta)
};

struct totals {
  uint64_t iterations = 0, kills = 0, logs = 0;
  uint64_t events_acked = 0, events_verified = 0, bytes_acked = 0, bytes_verified = 0;
  uint64_t appends_acked = 0, refused_version = 0, refused_too_large = 0;
  uint64_t unacked_batches_survived = 0, recoveries_with_cuts = 0, child_notes = 0;
  uint64_t killed_before_ready = 0, reopen_cycles = 0, parent_appends = 0;
  uint64_t read_path_checks = 0;  // verifications that also read the log every way (fuzz/read_paths.h)
  uint64_t by_mode_children[3] = {}, by_mode_events[3] = {};
  uint64_t by_strategy[kStrategies] = {};
  uint64_t failures = 0;
};

struct run_config {
  double seconds = 0;
  uint64_t iterations = 0;
  uint64_t seed = 0;
  std::string dir;
  bool keep = false, snapshot = false, verbose = false;
  bool made_dir = false;  // mkdtemp'd or created here: removed at the end
  std::string json;
};

// The names the harness owns inside its working directory.
bool harness_owned(const std::string& name) {
  return name.starts_with("log-") || name == "model.bin" || name == "model.bin.tmp" ||
         name == "crashed-snapshot";
}

struct parent_observer : recovery_observer {
  std::vector<std::string> notes;
  void on_truncated(const std::string& file, uint64_t offset, uint64_t bytes,
                    const std::string& why) override {
    notes.push_back(file + " offset " + std::to_string(offset) + " (" + std::to_string(bytes) +
                    " bytes): " + why);
  }
};

class failure_error {
 public:
  std::string what;
};

class parent {
 public:
  explicit parent(run_config c) : c_(std::move(c)), master_(c_.seed) {}

  int run() {
    const auto t0 = steady::now();
    const auto deadline = t0 + std::chrono::duration_cast<steady::duration>(
                                   std::chrono::duration<double>(c_.seconds));
    std::string failure;
    for (uint64_t it = 0; c_.iterations == 0 || it < c_.iterations; ++it) {
      if (c_.seconds > 0 && steady::now() >= deadline) break;
      it_ = it;
      failure = iteration();
      ++t_.iterations;
      if (!failure.empty()) break;
      if ((it + 1) % 100 == 0)
        std::printf("torture: %" PRIu64 " iterations, %" PRIu64 " events verified, %.0f s\n",
                    it + 1, t_.events_verified,
                    std::chrono::duration<double>(steady::now() - t0).count());
      std::fflush(stdout);
    }
    const double elapsed = std::chrono::duration<double>(steady::now() - t0).count();
    // A run that checked nothing must not pass: a deadline reached before the
    // first iteration, children that never got to acknowledge an append, or a
    // parent that never verified an event are a broken harness (or machine),
    // not a clean log.
    std::string no_progress;
    if (failure.empty()) {
      if (t_.iterations == 0)
        no_progress = "no iteration completed";
      else if (t_.events_acked == 0)
        no_progress = "no child acknowledged an event, so nothing was checked against an acknowledgement";
      else if (t_.events_verified == 0)
        no_progress = "no event was verified";
    }
    if (!no_progress.empty()) {
      ++t_.failures;
      std::fflush(stdout);
      std::fprintf(stderr, "torture: FAILURE: the run checked nothing: %s (%" PRIu64
                   " iterations in %.1f s, seed %" PRIu64 ")\n",
                   no_progress.c_str(), t_.iterations, elapsed, c_.seed);
      failure = no_progress;
    } else if (!failure.empty()) {
      ++t_.failures;
      std::fflush(stdout);
      std::fprintf(stderr,
                   "torture: FAILURE at iteration %" PRIu64 " (seed %" PRIu64 ", log #%u)\n"
                   "  %s\n  config: %s\n  log directory (kept): %s\n"
                   "  reproduce: varve-torture --seed %" PRIu64 " --iterations %" PRIu64
                   " --snapshot --keep   (kill timing varies between runs; the seed fixes the"
                   " configuration of every iteration)\n",
                   it_, c_.seed, log_.number, failure.c_str(), config_line_.c_str(),
                   log_.dir.c_str(), c_.seed, it_ + 1);
    }
    std::printf("torture: %" PRIu64 " iterations, %" PRIu64 " kills, %" PRIu64
                " events verified (%" PRIu64 " logs also read every way, replays included), %" PRIu64
                " failures (%.0f s, seed %" PRIu64 ")\n",
                t_.iterations, t_.kills, t_.events_verified, t_.read_path_checks, t_.failures, elapsed, c_.seed);
    if (!c_.json.empty()) write_json(elapsed);
    if (failure.empty() && !c_.keep) {
      // Only what the harness made: its log, model and snapshot, and the
      // directory itself when it made it.
      std::error_code ec;
      if (!log_.dir.empty()) fs::remove_all(log_.dir, ec);
      fs::remove(model_path(), ec);
      fs::remove(model_path() + ".tmp", ec);
      fs::remove_all(c_.dir + "/crashed-snapshot", ec);
      if (c_.made_dir) fs::remove(c_.dir, ec);
    } else {
      std::printf("torture: kept %s\n", c_.dir.c_str());
    }
    return failure.empty() ? 0 : 1;
  }

 private:
  // --- one log -----------------------------------------------------------
  void new_log() {
    // The previous log has been verified: remove it (--keep keeps the last one only).
    if (!log_.dir.empty()) {
      std::error_code ec;
      fs::remove_all(log_.dir, ec);
    }
    log_ = log_state{};
    log_.number = uint32_t(t_.logs++);
    log_.dir = c_.dir + "/log-" + std::to_string(log_.number);
    log_.log2 = int(master_.between(16, 20));
    log_.segment_bytes = uint64_t{1} << log_.log2;
    const uint64_t x = master_.below(100);
    const uint32_t streams = x < 10 ? 1 : x < 30 ? uint32_t(master_.between(2, 16))
                            : x < 80 ? uint32_t(master_.between(17, 500))
                                     : uint32_t(master_.between(501, 5000));
    log_.u = std::make_unique<universe>(master_.next(), streams);
    log_.profile = int(master_.below(3));
    log_.iterations_left = uint32_t(master_.between(10, 30));
    log_.verified.salt = log_.u->salt;
    log_.verified.versions.assign(streams, 0);
  }

  std::string model_path() const { return c_.dir + "/model.bin"; }

  // --- one iteration -----------------------------------------------------
  // What one child does and when it dies, all drawn from the master seed.
  struct child_plan {
    durability mode = durability::none;
    bool prepare = true;
    bool after_crash = false;  // opens the crashed log (recovery runs in the child)
    int strat = s_uniform;
    uint64_t seed = 0, budget = 0, reopen = 0;
    double open_fraction = 0, reopen_fraction = 0;
    uint64_t uniform_us = 0, rollovers = 1, after_roll_us = 0, ack_target = 1, closings = 1;
  };
  struct child_outcome {
    std::vector<msg> msgs;
    bool ready = false;
    uint64_t ready_seq = 0;
  };

  child_plan draw_plan(bool after_crash) {
    child_plan p;
    p.after_crash = after_crash;
    p.mode = durability(master_.below(3));
    p.prepare = !master_.chance(200);
    const uint64_t spos = master_.below(100);
    p.strat = spos < 12 ? s_open : spos < 50 ? s_uniform : spos < 75 ? s_rollover
              : spos < 90 ? s_acks : s_reopen;
    if (after_crash && master_.chance(700)) p.strat = s_open;  // mostly: kill it inside recovery
    p.seed = master_.next();
    const uint64_t remaining = kLogCapBytes + (16u << 20) - std::min(log_.end_position, kLogCapBytes);
    p.budget = std::min<uint64_t>(remaining, master_.between(1u << 20, 32u << 20));
    p.reopen = p.strat == s_reopen ? master_.between(5, 50) : (master_.chance(100) ? 1 : 0);
    p.open_fraction = master_.unit() * 1.3;
    p.uniform_us = master_.below(100'001);
    p.rollovers = master_.between(1, 3);
    p.after_roll_us = master_.chance(300) ? 0 : master_.below(3001);
    p.ack_target = uint64_t(std::exp(master_.unit() * std::log(5000.0)));
    p.closings = master_.between(1, 3);
    p.reopen_fraction = master_.unit() * 1.2;
    return p;
  }

  std::string describe(const child_plan& p) const {
    char line[256];
    std::snprintf(line, sizeof line,
                  "%schild mode %s prepare %d budget %" PRIu64 " reopen %" PRIu64
                  "/1000 seed %" PRIu64 " kill at %s",
                  p.after_crash ? "second " : "", mode_name(p.mode), int(p.prepare), p.budget,
                  p.reopen, p.seed, strategy_name(p.strat));
    return line;
  }

  std::string iteration() {
    if (log_.dir.empty() || log_.iterations_left == 0 || log_.end_position > kLogCapBytes)
      new_log();
    --log_.iterations_left;
    std::vector<child_plan> plans{draw_plan(false)};
    if (master_.chance(250)) plans.push_back(draw_plan(true));
    const durability parent_mode = durability(master_.below(3));
    const uint64_t parent_seed = master_.next();

    config_line_ = "log #" + std::to_string(log_.number) + " segment " +
                   std::to_string(log_.segment_bytes) + " streams " + std::to_string(log_.u->size()) +
                   " profile " + std::to_string(log_.profile);
    for (const child_plan& p : plans) config_line_ += "; " + describe(p);
    config_line_ += std::string("; parent mode ") + mode_name(parent_mode);
    if (c_.verbose) std::printf("iteration %" PRIu64 ": %s\n", it_, config_line_.c_str());

    // The parent's verified model goes to the (first) child.
    if (log_.created) {
      if (!log_.verified.write(model_path())) return "cannot write " + model_path();
    } else {
      std::error_code ec;
      fs::remove(model_path(), ec);
    }

    const uint64_t iteration_start = log_.verified.next_sequence;
    const size_t first_new_ack = log_.acks.size();
    std::vector<child_run> runs;
    for (const child_plan& p : plans) {
      child_outcome out;
      if (std::string e = run_child(p, &out); !e.empty()) return e;
      ++t_.kills;
      ++t_.by_mode_children[int(p.mode)];
      ++t_.by_strategy[p.strat];
      child_run run{out.ready, out.ready_seq, log_.acks.size(), 0};
      for (const msg& m : out.msgs) {
        if (m.kind == m_ready) log_.created = true;
        if (m.kind == m_refused) {
          if (errc(m.version) == errc::wrong_expected_version) ++t_.refused_version;
          else ++t_.refused_too_large;
        }
        if (m.kind != m_ack) continue;
        ack_rec a{m.seq, m.first, m.end, m.version, m.hash, uint32_t(m.stream), m.count,
                  uint32_t(log_.sizes.size())};
        log_.sizes.insert(log_.sizes.end(), m.sizes, m.sizes + m.count);
        log_.acks.push_back(a);
        ++t_.appends_acked;
        t_.events_acked += m.count;
        t_.by_mode_events[int(p.mode)] += m.count;
        for (uint32_t j = 0; j < m.count; ++j) t_.bytes_acked += m.sizes[j];
      }
      run.acks_end = log_.acks.size();
      if (!out.ready) ++t_.killed_before_ready;
      runs.push_back(run);
    }

    // The crashed directory, before recovery touches it.
    if (c_.snapshot) {
      std::error_code ec;
      const std::string snap = c_.dir + "/crashed-snapshot";
      fs::remove_all(snap, ec);
      if (fs::exists(log_.dir)) fs::copy(log_.dir, snap, fs::copy_options::recursive, ec);
    }

    // Did a child get as far as creating the log? Without varve.meta the
    // directory is not a log yet (create died before its rename), and
    // nothing can have been acknowledged.
    const bool has_meta = fs::exists(log_.dir + "/varve.meta");
    if (!has_meta) {
      if (log_.created || first_new_ack != log_.acks.size())
        return "varve.meta is missing from a log that was created";
      return {};
    }
    log_.created = true;
    return verify_and_extend(parent_mode, parent_seed, iteration_start, runs);
  }

  // Spawns a child for `p`, watches its messages, SIGKILLs it at the planned
  // moment and collects everything it wrote. Returns an error text on a failure.
  std::string run_child(const child_plan& p, child_outcome* out) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
    const int wfd = ::fcntl(fds[1], F_DUPFD, 100);  // without O_CLOEXEC: the child keeps it
    ::close(fds[1]);
    std::vector<std::string> args = {
        "/proc/self/exe", "--child",
        "dir=" + log_.dir, "fd=" + std::to_string(wfd),
        "salt=" + std::to_string(log_.u->salt), "streams=" + std::to_string(log_.u->size()),
        "segment=" + std::to_string(log_.segment_bytes), "mode=" + std::to_string(int(p.mode)),
        "prepare=" + std::to_string(int(p.prepare)), "seed=" + std::to_string(p.seed),
        "budget=" + std::to_string(p.budget), "reopen=" + std::to_string(p.reopen),
        "profile=" + std::to_string(log_.profile),
        "crashed=" + std::to_string(int(p.after_crash)),
        "model=" + (p.after_crash ? std::string() : model_path())};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return std::string("fork: ") + std::strerror(errno);
    if (pid == 0) {
      ::execv("/proc/self/exe", argv.data());
      ::_exit(127);
    }
    ::close(wfd);
    rfd_ = fds[0];
    buf_.clear();
    msgs_.clear();
    eof_ = false;

    // Watch the acks and pick the moment.
    std::string err;
    bool ready = false, idle = false;
    uint64_t acks_seen = 0, rolls_seen = 0, closings_seen = 0;
    uint64_t last_seg = ~uint64_t{0};
    std::optional<steady::time_point> kill_at;
    const uint64_t open_est = p.after_crash ? log_.recovery_micros_est : log_.open_micros_est;
    steady::time_point ready_at{}, last_progress = steady::now();
    size_t seen = 0;
    for (;;) {
      const auto now = steady::now();
      if (kill_at && now >= *kill_at) break;
      if (eof_ || idle) break;
      if (ready && now - ready_at > std::chrono::seconds(5)) break;
      if (now - last_progress > std::chrono::seconds(120)) {
        err = "the child made no progress for 120 s (hung in " +
              std::string(ready ? "append" : "open") + ")";
        break;
      }
      if (!read_msgs(kill_at.value_or(now + std::chrono::milliseconds(50)))) break;
      for (; seen < msgs_.size(); ++seen) {
        const msg& m = msgs_[seen];
        last_progress = steady::now();
        switch (m.kind) {
          case m_started:
            if (p.strat == s_open)
              kill_at = steady::now() + std::chrono::microseconds(uint64_t(p.open_fraction * double(open_est)));
            break;
          case m_ready:
            ready = true;
            ready_at = steady::now();
            last_seg = m.end >> log_.log2;
            if (p.strat == s_uniform) kill_at = ready_at + std::chrono::microseconds(p.uniform_us);
            break;
          case m_ack: {
            ++acks_seen;
            const uint64_t seg = m.first >> log_.log2;
            if (last_seg != ~uint64_t{0} && seg != last_seg) {
              ++rolls_seen;
              if (p.strat == s_rollover && rolls_seen == p.rollovers && !kill_at)
                kill_at = steady::now() + std::chrono::microseconds(p.after_roll_us);
            }
            last_seg = (m.end - 1) >> log_.log2;
            if (p.strat == s_acks && acks_seen >= p.ack_target && !kill_at) kill_at = steady::now();
            break;
          }
          case m_closing:
            ++closings_seen;
            if (p.strat == s_reopen && closings_seen == p.closings && !kill_at)
              kill_at = steady::now() + std::chrono::microseconds(
                                            uint64_t(p.reopen_fraction * double(log_.reopen_micros_est)));
            break;
          case m_reopened:
            log_.reopen_micros_est = std::max<uint64_t>(200, m.micros);
            break;
          case m_idle: idle = true; break;
          default: break;
        }
      }
    }
    ::kill(pid, SIGKILL);
    while (!eof_) read_msgs(std::nullopt);
    ::close(rfd_);
    rfd_ = -1;
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    out->msgs = std::move(msgs_);
    msgs_.clear();
    // Judge by everything the child wrote, including what was still in the
    // pipe at the kill (a child may open and append a few batches between the
    // last look and the SIGKILL).
    for (const msg& m : out->msgs) {
      if (m.kind == m_ready && !out->ready) {
        out->ready = true;
        out->ready_seq = m.seq;
        (p.after_crash ? log_.recovery_micros_est : log_.open_micros_est) = std::max<uint64_t>(200, m.micros);
      }
      if (m.kind == m_reopened) ++t_.reopen_cycles;
      if (m.kind == m_note) ++t_.child_notes;
    }
    if (!err.empty()) return err;
    for (const msg& m : out->msgs) {
      if (m.kind == m_fail) return "the child reported a failure (see its message above); " + child_exit(st);
      if (m.kind == m_note)
        return "the child's recovery or background thread reported a problem (see its message above)";
    }
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) return "the child died on its own: " + child_exit(st);
    return {};
  }

  static std::string child_exit(int st) {
    if (WIFSIGNALED(st)) return "killed by signal " + std::to_string(WTERMSIG(st)) + " (" + strsignal(WTERMSIG(st)) + ")";
    if (WIFEXITED(st)) return "exit status " + std::to_string(WEXITSTATUS(st));
    return "status " + std::to_string(st);
  }

  // Reads whole messages until `until` (or until EOF when nullopt). False on EOF.
  bool read_msgs(std::optional<steady::time_point> until) {
    for (;;) {
      int timeout = -1;
      if (until) {
        const auto left = std::chrono::duration_cast<std::chrono::microseconds>(*until - steady::now()).count();
        if (left <= 0) return true;
        timeout = int((left + 999) / 1000);
      }
      pollfd p{rfd_, POLLIN, 0};
      const int n = ::poll(&p, 1, timeout);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return true;
      char tmp[1 << 16];
      const ssize_t got = ::read(rfd_, tmp, sizeof tmp);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        eof_ = true;
        return false;
      }
      buf_.append(tmp, size_t(got));
      size_t off = 0;
      while (buf_.size() - off >= sizeof(msg)) {
        msg m;
        std::memcpy(&m, buf_.data() + off, sizeof m);
        msgs_.push_back(m);
        off += sizeof m;
      }
      buf_.erase(0, off);
      if (until) return true;  // let the caller react at once
    }
  }

  // --- verification ------------------------------------------------------
  log_options parent_options(durability mode, parent_observer* obs) const {
    log_options o;
    o.segment_bytes = log_.segment_bytes;
    o.mode = mode;
    o.observer = obs;
    return o;
  }

  std::string verify_and_extend(durability mode, uint64_t parent_seed, uint64_t iteration_start,
                                const std::vector<child_run>& runs) {
    parent_observer obs;
    auto opened = event_log::open(log_.dir, parent_options(mode, &obs));
    if (!opened) return "reopen after the kill failed: " + opened.error().to_string();
    std::unique_ptr<event_log> log = std::move(opened).value();
    for (const std::string& n : obs.notes) {
      if (c_.verbose) std::printf("  recovery: %s\n", n.c_str());
      // After a process crash the page cache is intact: recovery may cut a
      // torn tail, drop an uninitialised segment file or rescan a torn
      // footer, but it has no reason to reject a checkpoint (written by
      // rename) or to set aside a segment holding records.
      if (n.find("checkpoint rejected") != std::string::npos ||
          n.find("renamed aside") != std::string::npos)
        return "recovery after a process crash: " + n;
    }
    if (!obs.notes.empty()) ++t_.recoveries_with_cuts;

    const universe& u = *log_.u;
    const uint64_t N = u.size();
    std::vector<uint64_t> ver(N, 0), last_pos(N, position::none().value);
    std::vector<std::byte> scratch;

    // Each child's acknowledged appends follow each other with no gap. What a
    // child appended without acknowledging -- at most the one append in
    // flight when it was killed -- lies between its last ack and the next
    // child's recovered start, or at the end of the log.
    std::vector<std::pair<uint64_t, uint64_t>> gaps;  // [from, to): at most one batch each
    uint64_t acked_end = iteration_start;
    for (const child_run& run : runs) {
      if (!run.ready) continue;
      if (run.ready_seq < acked_end || run.ready_seq > acked_end + kMaxBatch)
        return "a child recovered " + std::to_string(run.ready_seq) + " events; the previous one had " +
               std::to_string(acked_end) + " acknowledged (at most one batch may lie between)";
      gaps.push_back({acked_end, run.ready_seq});
      acked_end = run.ready_seq;
      for (size_t i = run.acks_begin; i < run.acks_end; ++i) {
        const ack_rec& a = log_.acks[i];
        if (a.first_seq != acked_end)
          return "acks out of order: a child acknowledged sequence " + std::to_string(a.first_seq) +
                 " after " + std::to_string(acked_end);
        acked_end = a.first_seq + a.count;
      }
    }
    gaps.push_back({acked_end, ~uint64_t{0}});
    std::vector<uint64_t> begins;  // sequences of batch starts since the iteration began

    log_reader reader = log->read();
    event_view v;
    uint64_t seq = 0, prev_end = 0, bytes = 0;
    bool in_batch = false;
    uint32_t batch_stream = 0;
    size_t ai = 0;            // next ack to match
    uint64_t ai_hash = 0;
    const uint64_t seg_mask = log_.segment_bytes - 1;
    auto at = [&](const std::string& what) {
      return "event #" + std::to_string(seq) + " (position " + std::to_string(v.position.value) +
             "): " + what;
    };
    for (;;) {
      auto more = reader.next(v);
      if (!more) return "reader failed after " + std::to_string(seq) + " events: " + more.error().to_string();
      if (!more.value()) break;
      // Shape.
      if (v.sequence.value != seq) return at("sequence " + std::to_string(v.sequence.value));
      if (v.position.value % 8 != 0) return at("not 8-aligned");
      const uint64_t off = v.position.value & seg_mask;
      if (off < 64 || off + v.record_bytes > log_.segment_bytes - 64 - 24)
        return at("record overlaps a segment header or footer");
      if (seq == 0 ? v.position.value != 64
                   : v.position.value != prev_end &&
                         !(off == 64 && (v.position.value >> log_.log2) ==
                                            ((prev_end - 1) >> log_.log2) + 1))
        return at("does not follow the previous record (ending at " + std::to_string(prev_end) + ")");
      // Stream and versions.
      auto found = u.index_of.find(std::string(v.stream));
      if (found == u.index_of.end()) return at("unknown stream");
      const uint32_t k = found->second;
      if (v.stream_is_integer != bool(u.integer[k])) return at("stream_is_integer flag differs");
      if (v.version != ver[k] + 1)
        return at("stream #" + std::to_string(k) + " version " + std::to_string(v.version) +
                  " after " + std::to_string(ver[k]) + " (versions not contiguous)");
      if (v.previous.value != last_pos[k])
        return at("previous " + std::to_string(v.previous.value) + " want " + std::to_string(last_pos[k]));
      // Batches.
      if (v.batch_begin == in_batch) return at(in_batch ? "batch begins inside a batch" : "event outside a batch");
      if (in_batch && k != batch_stream) return at("batch changes stream");
      if (v.batch_begin) {
        batch_stream = k;
        if (seq >= iteration_start) begins.push_back(seq);
      }
      if (!v.batch_begin && ((v.position.value >> log_.log2) != ((prev_end - 1) >> log_.log2)))
        return at("batch spans segments");
      in_batch = !v.batch_end;
      // Content, regenerated from the salt and the sequence.
      const fields f = fields_for(u.salt, seq);
      if (v.type != f.type || v.schema_version != f.schema || v.content != f.content)
        return at("type/schema/content differ from what the child built");
      if (f.timestamp ? v.timestamp_ns != f.timestamp : v.timestamp_ns == 0)
        return at("timestamp " + std::to_string(v.timestamp_ns));
      const id128* got_ids[3] = {v.event_id, v.correlation_id, v.causation_id};
      for (int i = 0; i < 3; ++i) {
        if (bool(got_ids[i]) != f.has_id[i]) return at("id presence differs");
        if (got_ids[i] && *got_ids[i] != f.ids[i]) return at("id bytes differ");
      }
      scratch.resize(v.payload.size());
      fill_payload(f.payload_key, scratch.data(), scratch.size());
      if (!v.payload.empty() && std::memcmp(scratch.data(), v.payload.data(), v.payload.size()) != 0)
        return at("payload bytes differ (" + std::to_string(v.payload.size()) + " bytes)");
      if (v.record_bytes != record_bytes(v.stream.size(), f.id_count(), v.payload.size()))
        return at("record_bytes " + std::to_string(v.record_bytes));
      // Acknowledgements.
      if (ai < log_.acks.size() && seq >= log_.acks[ai].first_seq) {
        const ack_rec& a = log_.acks[ai];
        const uint64_t j = seq - a.first_seq;
        if (j == 0) {
          ai_hash = 0;
          if (v.position.value != a.first_pos) return at("acknowledged at position " + std::to_string(a.first_pos));
        }
        if (k != a.stream || v.version != a.first_version + j || v.batch_begin != (j == 0) ||
            v.batch_end != (j + 1 == a.count) || v.payload.size() != log_.sizes[a.sizes_at + j])
          return at("differs from its acknowledgement (stream #" + std::to_string(a.stream) + " v" +
                    std::to_string(a.first_version + j) + ", event " + std::to_string(j + 1) + "/" +
                    std::to_string(a.count) + ", " + std::to_string(log_.sizes[a.sizes_at + j]) +
                    " bytes)");
        ai_hash = hash_bytes(ai_hash, v.payload);
        if (j + 1 == a.count) {
          if (v.position.value + v.record_bytes != a.end_pos) return at("batch end differs from append_result.end");
          if (ai_hash != a.hash) return at("acknowledged payload hash differs");
          ++ai;
        }
      }
      ver[k] = v.version;
      last_pos[k] = v.position.value;
      prev_end = v.position.value + v.record_bytes;
      bytes += v.payload.size();
      ++seq;
    }
    if (in_batch) return "the log ends inside a batch (event #" + std::to_string(seq) + ")";
    if (ai < log_.acks.size()) {
      const ack_rec& a = log_.acks[ai];
      return "acknowledged events lost: batch of " + std::to_string(a.count) + " at sequence " +
             std::to_string(a.first_seq) + " (position " + std::to_string(a.first_pos) +
             ", stream #" + std::to_string(a.stream) + " v" + std::to_string(a.first_version) +
             ") is not in the recovered log, which holds " + std::to_string(seq) + " events";
    }
    if (seq < log_.verified.next_sequence)
      return "the log lost verified events: " + std::to_string(seq) + " < " +
             std::to_string(log_.verified.next_sequence);
    if (seq < acked_end) return "acknowledged events lost (log holds " + std::to_string(seq) + ")";
    for (const auto& [from, to] : gaps) {
      const auto n = std::count_if(begins.begin(), begins.end(),
                                   [&](uint64_t b) { return b >= from && b < to; });
      if (n > 1)
        return std::to_string(n) + " unacknowledged batches survived from sequence " +
               std::to_string(from) + "; at most the one append in flight may";
      if (n == 1 && to != ~uint64_t{0} && std::find(begins.begin(), begins.end(), from) == begins.end())
        return "an unacknowledged batch does not start where the acknowledged ones end (" +
               std::to_string(from) + ")";
      t_.unacked_batches_survived += uint64_t(n);
    }

    // Index answers against the scan.
    const position end = reader.where();
    if (log->next_sequence().value != seq)
      return "next_sequence " + std::to_string(log->next_sequence().value) + " but the scan read " +
             std::to_string(seq);
    if (log->committed_position() != end)
      return "committed_position " + std::to_string(log->committed_position().value) +
             " but the scan ended at " + std::to_string(end.value);
    uint64_t live = 0;
    for (uint32_t k = 0; k < N; ++k) {
      if (ver[k]) ++live;
      const uint64_t got = log->version_of(u.id(k));
      if (got != ver[k])
        return "index: version_of(stream #" + std::to_string(k) + ") = " + std::to_string(got) +
               " but the scan's last version is " + std::to_string(ver[k]);
    }
    const log_stats st = log->stats();
    if (st.events != seq || st.streams != live || st.committed != end)
      return "stats disagree with the scan: events " + std::to_string(st.events) + " streams " +
             std::to_string(st.streams) + " (scan: " + std::to_string(seq) + ", " +
             std::to_string(live) + ")";
    // The bulk reads and the subscriptions read what the scan above read
    // (fuzz/read_paths.h): one verification in eight, picked by the seed
    // (each full read builds every event's fields as a string).
    if (parent_seed % 8 == 0) {
      const size_t batch = 1 + (parent_seed >> 3) % 80;
      if (std::string d = varve_fuzz::read_paths_disagree(*log, batch); !d.empty()) return "read paths: " + d;
      ++t_.read_path_checks;
    }
    // A read-only follower's index (newest checkpoint + catch-up) agrees too.
    {
      auto ro = event_log::open_read_only(log_.dir);
      if (!ro) return "open_read_only: " + ro.error().to_string();
      if (ro.value()->next_sequence().value != seq)
        return "read-only next_sequence " + std::to_string(ro.value()->next_sequence().value);
      for (uint32_t k = 0; k < N; ++k) {
        const uint64_t got = ro.value()->version_of(u.id(k));
        if (got != ver[k])
          return "read-only index: version_of(stream #" + std::to_string(k) + ") = " +
                 std::to_string(got) + " but the scan's last version is " + std::to_string(ver[k]);
      }
    }
    // Stream reads (segment index files where the sealer wrote them, the
    // back-chain elsewhere) agree with the scan, from the writer and from a
    // read-only follower: backward from the head, and forward over the end.
    {
      rng sr(parent_seed ^ 0x5eed);
      auto ro = event_log::open_read_only(log_.dir);
      if (!ro) return "open_read_only: " + ro.error().to_string();
      for (int probe = 0; probe < 24 && N > 0; ++probe) {
        const uint32_t k = uint32_t(sr.between(0, N - 1));
        for (const event_log* l : {log.get(), ro.value().get()}) {
          const char* who = l == log.get() ? "read_stream" : "read-only read_stream";
          const uint64_t want = std::min<uint64_t>(ver[k], 40);
          auto back = l->read_stream(u.id(k), kLatestVersion, read_direction::backward, 40);
          if (!back) return std::string(who) + ": " + back.error().to_string();
          event_view e;
          uint64_t n = 0, expect_pos = last_pos[k];
          for (;;) {
            auto more = back->next(e);
            if (!more) return std::string(who) + " (stream #" + std::to_string(k) + "): " + more.error().to_string();
            if (!more.value()) break;
            if (e.version != ver[k] - n || e.position.value != expect_pos)
              return std::string(who) + " (stream #" + std::to_string(k) + ") backward gave v" +
                     std::to_string(e.version) + " at " + std::to_string(e.position.value) +
                     ", the scan says v" + std::to_string(ver[k] - n) + " at " + std::to_string(expect_pos);
            expect_pos = e.previous.value;
            ++n;
          }
          if (n != want) return std::string(who) + " (stream #" + std::to_string(k) + ") backward read " +
                                std::to_string(n) + " events, want " + std::to_string(want);
          const uint64_t from = ver[k] > 5 ? ver[k] - 5 : 1;
          auto fwd = l->read_stream(u.id(k), from);
          if (!fwd) return std::string(who) + ": " + fwd.error().to_string();
          n = 0;
          for (;;) {
            auto more = fwd->next(e);
            if (!more) return std::string(who) + " (stream #" + std::to_string(k) + "): " + more.error().to_string();
            if (!more.value()) break;
            if (e.version != from + n) return std::string(who) + " forward: version " + std::to_string(e.version);
            ++n;
          }
          if (n != (ver[k] ? ver[k] - from + 1 : 0))
            return std::string(who) + " (stream #" + std::to_string(k) + ") forward read " + std::to_string(n) + " events";
        }
      }
    }
    t_.events_verified += seq;
    t_.bytes_verified += bytes;

    // The log accepts appends again: a few batches with the right expected
    // version, one with a wrong one, read back through the same reader.
    rng pr(parent_seed);
    batch_builder b;
    const int appends = int(pr.between(1, 4));
    for (int i = 0; i < appends; ++i) {
      const uint32_t k = uint32_t(pr.below(N));
      const uint32_t count = uint32_t(pr.between(1, 5));
      uint32_t sizes[kMaxBatch];
      for (uint32_t j = 0; j < count; ++j) sizes[j] = uint32_t(pr.below(2000));
      const uint64_t h = b.build(u.salt, seq, sizes, count);
      const std::string name = "parent append to stream #" + std::to_string(k);
      if (i == 0) {
        auto bad = log->append(u.id(k), expected_version::exact(ver[k] + 7),
                               std::span<const event_data>(b.data.data(), count));
        if (bad || bad.error().code() != errc::wrong_expected_version ||
            bad.error().actual_version() != ver[k])
          return name + " with a wrong expected version: " +
                 (bad ? std::string("accepted") : bad.error().to_string());
      }
      auto r = log->append(u.id(k), expected_version::exact(ver[k]),
                           std::span<const event_data>(b.data.data(), count));
      if (!r) return name + ": " + r.error().to_string();
      if (r->first_sequence.value != seq || r->first_version != ver[k] + 1)
        return name + ": append_result disagrees";
      ack_rec a{seq, r->first.value, r->end.value, ver[k] + 1, h, k, count, uint32_t(log_.sizes.size())};
      log_.sizes.insert(log_.sizes.end(), sizes, sizes + count);
      log_.acks.push_back(a);
      for (uint32_t j = 0; j < count; ++j) {
        auto more = reader.next(v);
        if (!more || !more.value()) return name + ": the reader does not see it";
        if (v.sequence.value != seq + j || v.version != ver[k] + 1 + j || v.stream != u.bytes[k] ||
            v.payload.size() != sizes[j] ||
            (sizes[j] && std::memcmp(v.payload.data(), b.payload[j].data(), sizes[j]) != 0))
          return name + ": read back differently";
      }
      ver[k] += count;
      seq += count;
      t_.parent_appends += count;
    }
    log_.end_position = log->committed_position().value;
    if (status s = log->close(); !s) return "close after verification: " + s.to_string();
    log.reset();

    // A clean close leaves a log that verify_log (the CLI's `varve verify`) finds intact.
    auto rep = verify_log(log_.dir);
    if (!rep) return "verify_log: " + rep.error().to_string();
    if (!rep->first_problem.ok()) return "verify_log: " + rep->first_problem.to_string();
    if (rep->events != seq)
      return "verify_log counts " + std::to_string(rep->events) + " events, want " + std::to_string(seq);
    // ... and whose per-aggregate index (every sealed segment's index file,
    // the head checkpoints) equals one rebuilt from the log alone. Costly on a
    // large log: every eighth iteration.
    if (parent_seed % 8 == 0) {
      auto ix = verify_index(log_.dir);
      if (!ix) return "verify_index: " + ix.error().to_string();
      if (!ix->problems.empty()) return "verify_index: " + ix->problems.front().to_string();
    }

    if (c_.verbose) {
      uint64_t unacked = 0;
      for (const auto& [from, to] : gaps)
        unacked += uint64_t(std::count_if(begins.begin(), begins.end(),
                                          [&](uint64_t b) { return b >= from && b < to; }));
      std::printf("  ok: %zu acks this iteration, %" PRIu64 " unacknowledged batch(es) survived,"
                  " %zu recovery note(s); log holds %" PRIu64 " events (%" PRIu64 " before)\n",
                  log_.acks.size() - (runs.empty() ? log_.acks.size() : runs.front().acks_begin) -
                      size_t(appends),
                  unacked, obs.notes.size(), seq, iteration_start);
    }
    log_.verified.next_sequence = seq;
    log_.verified.versions = ver;
    return {};
  }

  void write_json(double elapsed) {
    FILE* f = std::fopen(c_.json.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "torture: cannot write %s\n", c_.json.c_str());
      return;
    }
    std::fprintf(f, "{\n  \"seed\": %" PRIu64 ",\n  \"seconds\": %.1f,\n", c_.seed, elapsed);
    std::fprintf(f,
                 "  \"iterations\": %" PRIu64 ",\n  \"kills\": %" PRIu64 ",\n  \"logs\": %" PRIu64
                 ",\n  \"failures\": %" PRIu64 ",\n",
                 t_.iterations, t_.kills, t_.logs, t_.failures);
    std::fprintf(f,
                 "  \"appends_acknowledged\": %" PRIu64 ",\n  \"events_acknowledged\": %" PRIu64
                 ",\n  \"payload_bytes_acknowledged\": %" PRIu64 ",\n  \"events_verified\": %" PRIu64
                 ",\n  \"payload_bytes_verified\": %" PRIu64 ",\n",
                 t_.appends_acked, t_.events_acked, t_.bytes_acked, t_.events_verified, t_.bytes_verified);
    std::fprintf(f,
                 "  \"refused_wrong_expected_version\": %" PRIu64 ",\n  \"refused_too_large\": %" PRIu64
                 ",\n  \"unacknowledged_batches_survived\": %" PRIu64
                 ",\n  \"recoveries_that_cut\": %" PRIu64 ",\n  \"killed_before_ready\": %" PRIu64
                 ",\n  \"close_reopen_cycles\": %" PRIu64 ",\n  \"parent_appended_events\": %" PRIu64
                 ",\n  \"read_path_checks\": %" PRIu64 ",\n",
                 t_.refused_version, t_.refused_too_large, t_.unacked_batches_survived,
                 t_.recoveries_with_cuts, t_.killed_before_ready, t_.reopen_cycles, t_.parent_appends,
                 t_.read_path_checks);
    std::fprintf(f, "  \"by_mode\": {");
    for (int m = 0; m < 3; ++m)
      std::fprintf(f, "%s\"%s\": {\"children\": %" PRIu64 ", \"events_acknowledged\": %" PRIu64 "}",
                   m ? ", " : "", mode_name(durability(m)), t_.by_mode_children[m], t_.by_mode_events[m]);
    std::fprintf(f, "},\n  \"kills_by_moment\": {");  // one per child
    for (int s = 0; s < kStrategies; ++s)
      std::fprintf(f, "%s\"%s\": %" PRIu64, s ? ", " : "", strategy_name(s), t_.by_strategy[s]);
    std::fprintf(f, "}\n}\n");
    std::fclose(f);
  }

  run_config c_;
  rng master_;
  log_state log_;
  totals t_;
  uint64_t it_ = 0;
  std::string config_line_;
  int rfd_ = -1;
  std::string buf_;
  std::vector<msg> msgs_;
  bool eof_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "--child") return child_main(argc, argv);

  run_config c;
  std::string seed_text;
  CLI::App app{"varve-torture: SIGKILL a writer at random moments, recover, check every invariant",
               "varve-torture"};
  app.add_option("--seconds", c.seconds, "stop after this many seconds (whichever of --seconds and --iterations ends first)");
  app.add_option("--iterations", c.iterations, "stop after this many kill/recover iterations");
  app.add_option("--seed", seed_text, "master seed, or \"random\" (the default: from the clock); always printed");
  app.add_option("--dir", c.dir, "working directory (default: a fresh mkdtemp under $TMPDIR or /tmp)");
  app.add_flag("--keep", c.keep, "keep the working directory at the end");
  app.add_flag("--snapshot", c.snapshot, "copy each crashed log before recovery (to DIR/crashed-snapshot)");
  app.add_option("--json", c.json, "write the figures to this file as JSON");
  app.add_flag("-v,--verbose", c.verbose, "print every iteration's configuration and recovery notes");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (c.seconds <= 0 && c.iterations == 0) c.seconds = 60;
  if (seed_text.empty() || seed_text == "random") {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    c.seed = mix64(uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec) + uint64_t(::getpid()));
  } else {
    // "random" exists so that a caller with a fixed default (CTest's
    // torture_short, through VARVE_TORTURE_SEED) can still ask for a fresh one.
    char* end = nullptr;
    errno = 0;
    c.seed = std::strtoull(seed_text.c_str(), &end, 10);
    if (seed_text[0] < '0' || seed_text[0] > '9' || *end != '\0' || errno == ERANGE) {
      std::fprintf(stderr, "torture: --seed %s: want a number or \"random\"\n", seed_text.c_str());
      return 2;
    }
  }
  if (c.dir.empty()) {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/varve-torture-XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      std::fprintf(stderr, "torture: mkdtemp(%s): %s\n", tmpl.c_str(), std::strerror(errno));
      return 2;
    }
    c.dir = tmpl;
    c.made_dir = true;
  } else {
    // A scratch directory: absent, empty, or left by an earlier run (its
    // log-N directories are replaced). Anything else is refused rather than
    // deleted.
    std::error_code ec;
    c.made_dir = !fs::exists(c.dir);
    fs::create_directories(c.dir, ec);
    if (ec) {
      std::fprintf(stderr, "torture: %s: %s\n", c.dir.c_str(), ec.message().c_str());
      return 2;
    }
    for (const auto& e : fs::directory_iterator(c.dir, ec))
      if (!harness_owned(e.path().filename().string())) {
        std::fprintf(stderr, "torture: %s holds %s: give --dir an empty or absent directory\n",
                     c.dir.c_str(), e.path().filename().c_str());
        return 2;
      }
    for (const auto& e : fs::directory_iterator(c.dir, ec)) fs::remove_all(e.path(), ec);
  }
  // A child killed while the parent writes to the pipe must not kill the parent.
  ::signal(SIGPIPE, SIG_IGN);
  std::printf("torture: seed %" PRIu64 ", dir %s\n", c.seed, c.dir.c_str());
  std::fflush(stdout);
  parent p(std::move(c));
  return p.run();
}
