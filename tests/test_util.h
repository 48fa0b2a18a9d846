// Shared helpers for varve's tests: temporary directories, deterministic
// payloads, byte-level file surgery, and an in-memory model of a log that a
// full read is compared against field by field.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <xxhash.h>

#include "varve/varve.h"

namespace varve_test {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Status helpers and assertion macros.

inline std::string describe(const varve::status& s) { return s.ok() ? "ok" : s.to_string(); }
template <class T>
std::string describe(const varve::result<T>& r) {
  return r.ok() ? "ok" : r.error().to_string();
}
template <class T>
varve::errc code_of(const varve::result<T>& r) {
  return r.ok() ? varve::errc::ok : r.error().code();
}
inline varve::errc code_of(const varve::status& s) { return s.code(); }

inline std::string errc_text(varve::errc c) { return std::string(varve::errc_name(c)); }

#define VARVE_TEST_CONCAT_INNER(a, b) a##b
#define VARVE_TEST_CONCAT(a, b) VARVE_TEST_CONCAT_INNER(a, b)

#define ASSERT_OK(expr)                                             \
  do {                                                              \
    const auto& varve_test_s_ = (expr);                             \
    ASSERT_TRUE(varve_test_s_.ok()) << ::varve_test::describe(varve_test_s_); \
  } while (0)

#define EXPECT_OK(expr)                                             \
  do {                                                              \
    const auto& varve_test_s_ = (expr);                             \
    EXPECT_TRUE(varve_test_s_.ok()) << ::varve_test::describe(varve_test_s_); \
  } while (0)

// Asserts `expr` (a status or result) failed with `code`.
#define ASSERT_ERRC(expr, code)                                                   \
  do {                                                                            \
    const auto& varve_test_s_ = (expr);                                           \
    ASSERT_EQ(::varve_test::errc_text(::varve_test::code_of(varve_test_s_)),      \
              ::varve_test::errc_text(code))                                      \
        << ::varve_test::describe(varve_test_s_);                                 \
  } while (0)
#define EXPECT_ERRC(expr, code)                                                   \
  do {                                                                            \
    const auto& varve_test_s_ = (expr);                                           \
    EXPECT_EQ(::varve_test::errc_text(::varve_test::code_of(varve_test_s_)),      \
              ::varve_test::errc_text(code))                                      \
        << ::varve_test::describe(varve_test_s_);                                 \
  } while (0)

#define ASSERT_OK_AND_ASSIGN_IMPL(r, lhs, expr) \
  auto r = (expr);                              \
  ASSERT_TRUE(r.ok()) << ::varve_test::describe(r); \
  lhs = std::move(r).value()
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(VARVE_TEST_CONCAT(varve_test_r_, __LINE__), lhs, expr)

// ---------------------------------------------------------------------------
// Skipping, and why CI must not.

// CI=true (or 1) in the environment, as .ci/run exports it. Kept in step with
// varve_in_ci in tests/ci_skip.sh, its shell twin.
inline bool in_ci() {
  const char* v = std::getenv("CI");
  return v && (std::string_view(v) == "true" || std::string_view(v) == "1");
}

// For a test that cannot run here because something outside the code is
// missing (a permission, a kernel feature, a tool): skips with the reason on a
// developer's machine, but fails with it under CI=true, where a skip would let
// CI pass without ever having run the test. Returns from the calling function
// (a test body or SetUp) either way.
#define VARVE_SKIP_OR_FAIL_IN_CI(reason)                                        \
  do {                                                                          \
    const std::string varve_test_why_ = (reason);                               \
    if (::varve_test::in_ci()) FAIL() << "CI=true, so this is not skipped: " << varve_test_why_; \
    GTEST_SKIP() << varve_test_why_;                                            \
  } while (0)

// ---------------------------------------------------------------------------
// Scale: VARVE_TEST_SCALE=N multiplies iteration counts for long runs.

inline uint64_t test_scale() {
  const char* s = std::getenv("VARVE_TEST_SCALE");
  if (!s || !*s) return 1;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  return v == 0 ? 1 : v;
}
inline uint64_t scaled(uint64_t n) { return n * test_scale(); }

// Sampling: VARVE_TEST_SAMPLE=N makes the exhaustive tests (a damaged byte at
// every offset, a crash image for every seed, every hash of a list) visit one
// case in N. .ci/run sets it for its sanitizer stages only: their builds run
// 3-10x slower, and the plain build of the same CI run (readme-test) has just
// visited every case, while ASan or TSan finds a bad access or a race on any
// case that reaches the code. The default, 1, visits every case. Said once on
// stderr, so a log shows what a run covered.
inline uint64_t sample_stride() {
  static const uint64_t stride = [] {
    const char* s = std::getenv("VARVE_TEST_SAMPLE");
    uint64_t v = 1;
    if (s && *s) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(s, &end, 10);
      if (n > 1 && end && *end == '\0') v = n;
    }
    if (v > 1)
      std::fprintf(stderr, "VARVE_TEST_SAMPLE=%llu: exhaustive tests visit one case in %llu\n",
                   static_cast<unsigned long long>(v), static_cast<unsigned long long>(v));
    return v;
  }();
  return stride;
}
// How many of n cases a sampled run visits (never fewer than one).
inline uint64_t sampled(uint64_t n) { return std::max<uint64_t>(1, n / sample_stride()); }
// Whether case i of a list is visited.
inline bool sampled_case(uint64_t i) { return i % sample_stride() == 0; }

// ---------------------------------------------------------------------------
// Temporary directories.

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it
// when the object goes away (set VARVE_KEEP_TEST_DIRS=1 to keep it for a post mortem).
class temp_dir {
 public:
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/varve-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) {
      ADD_FAILURE() << "mkdtemp(" << tmpl << "): " << std::strerror(errno);
      return;
    }
    path_ = buf.data();
  }
  ~temp_dir() {
    if (path_.empty()) return;
    const char* keep = std::getenv("VARVE_KEEP_TEST_DIRS");
    if (keep && *keep == '1') return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const { return path_; }
  // A path inside this directory (not created).
  std::string sub(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------
// Files of a log directory and byte surgery on them.

inline std::string segment_file_name(uint64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020llu.seg", static_cast<unsigned long long>(index));
  return buf;
}
inline std::string segment_path(const std::string& dir, uint64_t index) {
  return dir + "/" + segment_file_name(index);
}

// Segment files of a log, in order.
inline std::vector<std::string> list_segments(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.size() == 24 && name.ends_with(".seg")) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline uint64_t log2_exact(uint64_t v) {
  uint64_t n = 0;
  while ((uint64_t{1} << n) < v) ++n;
  return n;
}
inline uint64_t segment_of(varve::position p, uint64_t segment_bytes) {
  return p.value >> log2_exact(segment_bytes);
}
inline uint64_t offset_in_segment(varve::position p, uint64_t segment_bytes) {
  return p.value & (segment_bytes - 1);
}

// Copies a directory tree (a log, possibly still open: this is then what a
// crash of the writer at this instant would leave behind, because the
// mapping is shared with the page cache).
// The writer's background threads may rename or remove a file between the
// listing and its copy (an index file's temporary name, say): the copy is
// then started again, as a crash a moment later would have left the tree.
inline void copy_dir(const std::string& from, const std::string& to) {
  std::error_code ec;
  for (int attempt = 0; attempt < 50; ++attempt) {
    ec.clear();
    fs::remove_all(to, ec);
    fs::copy(from, to, fs::copy_options::recursive, ec);
    if (ec != std::errc::no_such_file_or_directory) break;
  }
  ASSERT_FALSE(ec) << "copy " << from << " -> " << to << ": " << ec.message();
}

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Overwrites bytes in place (the file keeps its size unless writing past the end).
inline void write_at(const std::string& path, uint64_t offset, const void* data, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
  ::close(fd);
  ASSERT_EQ(w, static_cast<ssize_t>(n)) << path;
}

// Rewrites the format version word of a segment or meta file (offset 8) as
// an older varve wrote it, with the header checksum (offset 56) to match.
inline void set_format_version(const std::string& path, uint32_t v) {
  std::vector<uint8_t> h = read_file(path);
  ASSERT_GE(h.size(), 64u) << path;
  std::memcpy(h.data() + 8, &v, 4);
  const uint64_t sum = XXH3_64bits(h.data(), 56);
  write_at(path, 8, &v, 4);
  write_at(path, 56, &sum, 8);
}

inline void zero_range(const std::string& path, uint64_t offset, uint64_t n) {
  std::vector<uint8_t> zeros(n, 0);
  write_at(path, offset, zeros.data(), zeros.size());
}

inline uint8_t byte_at(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDONLY);
  uint8_t b = 0;
  if (fd >= 0) {
    if (::pread(fd, &b, 1, static_cast<off_t>(offset)) != 1) ADD_FAILURE() << path << " short read";
    ::close(fd);
  }
  return b;
}

inline void flip_byte(const std::string& path, uint64_t offset, uint8_t mask = 0xFF) {
  uint8_t b = byte_at(path, offset) ^ mask;
  write_at(path, offset, &b, 1);
}

// ---------------------------------------------------------------------------
// Deterministic data.

inline uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// `n` pseudo-random bytes that depend only on `seed`, so a checker can
// regenerate the payload an event was appended with.
inline std::vector<std::byte> payload_for(uint64_t seed, size_t n) {
  std::vector<std::byte> out(n);
  uint64_t s = mix64(seed);
  for (size_t i = 0; i < n; ++i) {
    if (i % 8 == 0) s = mix64(s + i);
    out[i] = static_cast<std::byte>(s >> (8 * (i % 8)));
  }
  return out;
}

inline std::vector<std::byte> random_bytes(std::mt19937_64& rng, size_t n) {
  return payload_for(rng(), n);
}

inline uint64_t fnv1a(std::span<const std::byte> bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (std::byte b : bytes) h = (h ^ static_cast<uint8_t>(b)) * 0x100000001b3ull;
  return h;
}

inline varve::id128 random_id(std::mt19937_64& rng) {
  varve::id128 id;
  for (auto& b : id.bytes) b = static_cast<uint8_t>(rng());
  if (id.is_zero()) id.bytes[0] = 1;
  return id;
}

inline std::string hex(std::span<const std::byte> b, size_t max = 32) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < b.size() && i < max; ++i) {
    s += digits[static_cast<uint8_t>(b[i]) >> 4];
    s += digits[static_cast<uint8_t>(b[i]) & 15];
  }
  if (b.size() > max) s += "...";
  return s;
}

// ---------------------------------------------------------------------------
// Events the test owns, and their event_data views.

// A stream id the test owns (stream_id itself does not own byte-string ids).
struct stream_key {
  std::string bytes;        // raw bytes as stored in the log
  bool is_integer = false;

  static stream_key named(std::string name) { return {std::move(name), false}; }
  static stream_key integer(uint64_t v) {
    stream_key k;
    k.is_integer = true;
    for (int i = 0; i < 8; ++i) k.bytes.push_back(static_cast<char>(v >> (56 - 8 * i)));
    return k;
  }
  uint64_t as_u64() const {
    uint64_t v = 0;
    for (char c : bytes) v = (v << 8) | static_cast<uint8_t>(c);
    return v;
  }
  varve::stream_id id() const {
    return is_integer ? varve::stream_id::from_u64(as_u64()) : varve::stream_id(std::string_view(bytes));
  }
  bool operator<(const stream_key& o) const { return bytes < o.bytes; }
  bool operator==(const stream_key& o) const = default;
};

struct owned_event {
  uint32_t type = 0;
  uint16_t schema_version = 1;
  std::vector<std::byte> payload;
  varve::content_type content = varve::content_type::binary;
  uint64_t timestamp_ns = 0;  // 0 = the log's clock
  std::optional<varve::id128> event_id, correlation_id, causation_id;

  // A view into this object: keep it alive (and unmoved) while the view is used.
  varve::event_data data() const {
    varve::event_data d;
    d.type = type;
    d.schema_version = schema_version;
    d.payload = payload;
    d.content = content;
    d.timestamp_ns = timestamp_ns;
    d.event_id = event_id ? &*event_id : nullptr;
    d.correlation_id = correlation_id ? &*correlation_id : nullptr;
    d.causation_id = causation_id ? &*causation_id : nullptr;
    return d;
  }
  size_t id_count() const {
    return (event_id ? 1 : 0) + (correlation_id ? 1 : 0) + (causation_id ? 1 : 0);
  }
};

inline std::vector<varve::event_data> as_data(const std::vector<owned_event>& events) {
  std::vector<varve::event_data> out;
  out.reserve(events.size());
  for (const auto& e : events) out.push_back(e.data());
  return out;
}

// The documented record size: 72 bytes of fixed header, 16 per id present,
// the stream id and the payload, padded to a multiple of 8.
inline uint64_t record_bytes_for(const owned_event& e, size_t stream_bytes) {
  uint64_t n = 72 + 16 * e.id_count() + stream_bytes + e.payload.size();
  return (n + 7) & ~uint64_t{7};
}

// Largest total of record bytes one segment can hold (docs/FORMAT.md): a
// 64-byte header before the records, 64 bytes kept for the footer and 24 for
// the segment-end record the writer leaves when it rolls over.
constexpr uint64_t kSegmentHeaderBytes = 64;
constexpr uint64_t kSegmentFooterBytes = 64;
constexpr uint64_t kSegmentEndRecordBytes = 24;
inline uint64_t segment_record_capacity(uint64_t segment_bytes) {
  return segment_bytes - kSegmentHeaderBytes - kSegmentFooterBytes - kSegmentEndRecordBytes;
}

// ---------------------------------------------------------------------------
// Reading.

struct read_outcome {
  std::vector<varve::event_view> events;
  varve::status error;  // ok unless the reader returned an error
};

// Everything committed now, from `from`, stopping at the first error.
inline read_outcome read_all(const varve::event_log& log, varve::position from = {}) {
  read_outcome out;
  varve::log_reader r = log.read(from);
  for (;;) {
    varve::event_view v;
    auto n = r.next(v);
    if (!n.ok()) {
      out.error = n.error();
      break;
    }
    if (!*n) break;
    out.events.push_back(v);
  }
  return out;
}

inline std::string_view as_sv(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// ---------------------------------------------------------------------------
// The model: what a full read of the log must return.

struct model_event {
  stream_key stream;
  owned_event event;
  varve::stream_version version = 0;
  uint64_t sequence = 0;
  bool batch_begin = false;
  bool batch_end = false;
  std::optional<varve::position> known_position;  // first event of an append
  std::optional<varve::position> known_end;       // last event of an append: record end
  std::optional<uint64_t> expected_timestamp;     // unknown when the real clock stamped it
};

class log_model {
 public:
  explicit log_model(uint64_t segment_bytes, std::optional<uint64_t> clock_value = std::nullopt)
      : segment_bytes_(segment_bytes), clock_value_(clock_value) {}

  varve::stream_version version_of(const stream_key& s) const {
    auto it = versions_.find(s);
    return it == versions_.end() ? 0 : it->second;
  }
  uint64_t next_sequence() const { return events_.size(); }
  const std::vector<model_event>& events() const { return events_; }
  const std::map<stream_key, varve::stream_version>& versions() const { return versions_; }
  uint64_t segment_bytes() const { return segment_bytes_; }

  // The outcome the log must give for an append of `n_events` events with
  // `records` record bytes in total, to `s` expecting `exp`.
  varve::errc predict(const stream_key& s, varve::expected_version exp,
                      uint64_t records) const {
    if (records > segment_record_capacity(segment_bytes_)) return varve::errc::too_large;
    if (!exp.accepts(version_of(s))) return varve::errc::wrong_expected_version;
    return varve::errc::ok;
  }

  // Records an acknowledged append.
  void apply(const stream_key& s, const std::vector<owned_event>& evs,
             const varve::append_result& r) {
    varve::stream_version& v = versions_[s];
    for (size_t i = 0; i < evs.size(); ++i) {
      model_event m;
      m.stream = s;
      m.event = evs[i];
      m.version = ++v;
      m.sequence = events_.size();
      m.batch_begin = i == 0;
      m.batch_end = i + 1 == evs.size();
      if (i == 0) m.known_position = r.first;
      if (i + 1 == evs.size()) m.known_end = r.end;
      if (evs[i].timestamp_ns != 0)
        m.expected_timestamp = evs[i].timestamp_ns;
      else
        m.expected_timestamp = clock_value_;
      events_.push_back(std::move(m));
    }
  }

  // Records an acknowledged multi-stream append: one batch over the parts,
  // in call order (a part with no events is a version check only).
  struct part {
    stream_key stream;
    varve::expected_version expected = varve::expected_version::any();
    std::vector<owned_event> events;
  };
  void apply_multi(const std::vector<part>& parts, const varve::multi_append_result& r) {
    size_t total = 0, k = 0;
    for (const part& p : parts) total += p.events.size();
    for (const part& p : parts) {
      varve::stream_version& v = versions_[p.stream];
      for (const owned_event& e : p.events) {
        model_event m;
        m.stream = p.stream;
        m.event = e;
        m.version = ++v;
        m.sequence = events_.size();
        m.batch_begin = k == 0;
        m.batch_end = k + 1 == total;
        if (k == 0) m.known_position = r.first;
        if (k + 1 == total) m.known_end = r.end;
        m.expected_timestamp = e.timestamp_ns != 0 ? std::optional<uint64_t>(e.timestamp_ns) : clock_value_;
        events_.push_back(std::move(m));
        ++k;
      }
    }
  }
  // The outcome the log must give for a multi-stream append (the order of
  // the checks is the documented one: no event, a stream twice, a conflict
  // in call order, too large).
  varve::errc predict_multi(const std::vector<part>& parts) const {
    uint64_t records = 0, events = 0;
    for (const part& p : parts) {
      events += p.events.size();
      for (const owned_event& e : p.events) records += record_bytes_for(e, p.stream.bytes.size());
    }
    if (events == 0) return varve::errc::invalid_argument;
    for (size_t i = 0; i < parts.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (parts[i].stream.bytes == parts[j].stream.bytes) return varve::errc::invalid_argument;
    for (const part& p : parts)
      if (!p.expected.accepts(version_of(p.stream))) return varve::errc::wrong_expected_version;
    if (records > segment_record_capacity(segment_bytes_)) return varve::errc::too_large;
    return varve::errc::ok;
  }

  // Forgets everything from sequence `n` on (what a crash may lose).
  void truncate(uint64_t n) {
    events_.resize(n);
    versions_.clear();
    for (const auto& e : events_) versions_[e.stream] = e.version;
  }

 private:
  uint64_t segment_bytes_;
  std::optional<uint64_t> clock_value_;
  std::vector<model_event> events_;
  std::map<stream_key, varve::stream_version> versions_;
};

// Compares one event read back against the model, every field.
inline testing::AssertionResult event_matches(const varve::event_view& got, const model_event& want,
                                              uint64_t segment_bytes) {
  std::ostringstream why;
  auto id_eq = [&](const char* name, const varve::id128* g, const std::optional<varve::id128>& w) {
    if (!g && !w) return;
    if (!g || !w) {
      why << name << (g ? " present, want absent; " : " absent, want present; ");
      return;
    }
    if (*g != *w) why << name << " differs; ";
  };
  if (got.sequence.value != want.sequence)
    why << "sequence " << got.sequence.value << " want " << want.sequence << "; ";
  if (got.stream != want.stream.bytes) why << "stream differs; ";
  if (got.stream_is_integer != want.stream.is_integer)
    why << "stream_is_integer " << got.stream_is_integer << " want " << want.stream.is_integer << "; ";
  if (got.version != want.version) why << "version " << got.version << " want " << want.version << "; ";
  if (got.type != want.event.type) why << "type " << got.type << " want " << want.event.type << "; ";
  if (got.schema_version != want.event.schema_version)
    why << "schema_version " << got.schema_version << " want " << want.event.schema_version << "; ";
  if (want.expected_timestamp && got.timestamp_ns != *want.expected_timestamp)
    why << "timestamp " << got.timestamp_ns << " want " << *want.expected_timestamp << "; ";
  if (!want.expected_timestamp && got.timestamp_ns == 0) why << "defaulted timestamp is 0; ";
  if (got.content != want.event.content) why << "content type differs; ";
  if (got.batch_begin != want.batch_begin)
    why << "batch_begin " << got.batch_begin << " want " << want.batch_begin << "; ";
  if (got.batch_end != want.batch_end)
    why << "batch_end " << got.batch_end << " want " << want.batch_end << "; ";
  id_eq("event_id", got.event_id, want.event.event_id);
  id_eq("correlation_id", got.correlation_id, want.event.correlation_id);
  id_eq("causation_id", got.causation_id, want.event.causation_id);
  if (got.payload.size() != want.event.payload.size()) {
    why << "payload size " << got.payload.size() << " want " << want.event.payload.size() << "; ";
  } else if (got.payload.size() &&
             std::memcmp(got.payload.data(), want.event.payload.data(), got.payload.size()) != 0) {
    why << "payload bytes differ: got " << hex(got.payload) << " want " << hex(want.event.payload)
        << "; ";
  }
  uint64_t want_bytes = record_bytes_for(want.event, want.stream.bytes.size());
  if (got.record_bytes != want_bytes)
    why << "record_bytes " << got.record_bytes << " want " << want_bytes << "; ";
  if (want.known_position && got.position != *want.known_position)
    why << "position " << got.position.value << " want " << want.known_position->value << "; ";
  if (want.known_end && got.position.value + got.record_bytes != want.known_end->value)
    why << "record end " << got.position.value + got.record_bytes << " want append_result.end "
        << want.known_end->value << "; ";
  if (got.position.value % 8 != 0) why << "position " << got.position.value << " not 8-aligned; ";
  uint64_t off = offset_in_segment(got.position, segment_bytes);
  if (off < kSegmentHeaderBytes ||
      off + got.record_bytes > segment_bytes - kSegmentFooterBytes - kSegmentEndRecordBytes)
    why << "record [" << off << ", +" << got.record_bytes
        << ") overlaps the segment header or footer; ";
  std::string w = why.str();
  if (w.empty()) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "event #" << want.sequence << " (position "
                                     << got.position.value << "): " << w;
}

// A full read of `log` equals `model`, byte for byte, and the per-stream
// back-chain (`previous`) and positions are consistent.
inline testing::AssertionResult log_matches_model(const varve::event_log& log,
                                                  const log_model& model) {
  read_outcome all = read_all(log);
  if (!all.error.ok())
    return testing::AssertionFailure()
           << "reader failed after " << all.events.size() << " events: " << all.error.to_string();
  const auto& want = model.events();
  if (all.events.size() != want.size())
    return testing::AssertionFailure() << "read " << all.events.size() << " events, model has "
                                       << want.size();
  std::map<std::string, varve::position> last_pos;
  uint64_t prev_end = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const varve::event_view& g = all.events[i];
    auto r = event_matches(g, want[i], model.segment_bytes());
    if (!r) return r;
    // Records follow each other with no gaps; a roll-over continues at the
    // first record of the next segment.
    if (i == 0) {
      if (g.position.value != kSegmentHeaderBytes)
        return testing::AssertionFailure() << "first event at " << g.position.value;
    } else {
      const uint64_t seg = model.segment_bytes();
      const bool same = segment_of(g.position, seg) == segment_of(varve::position{prev_end - 1}, seg);
      const uint64_t next_start =
          (segment_of(varve::position{prev_end - 1}, seg) + 1) * seg + kSegmentHeaderBytes;
      if (same ? g.position.value != prev_end : g.position.value != next_start)
        return testing::AssertionFailure() << "event #" << i << " at " << g.position.value
                                           << " does not follow the previous record ending at "
                                           << prev_end;
    }
    prev_end = g.position.value + g.record_bytes;
    auto it = last_pos.find(want[i].stream.bytes);
    varve::position want_prev = it == last_pos.end() ? varve::position::none() : it->second;
    if (g.previous != want_prev)
      return testing::AssertionFailure() << "event #" << i << " previous=" << g.previous.value
                                         << " want " << want_prev.value;
    last_pos[want[i].stream.bytes] = g.position;
  }
  if (log.next_sequence().value != want.size())
    return testing::AssertionFailure() << "next_sequence " << log.next_sequence().value
                                       << " want " << want.size();
  for (const auto& [key, v] : model.versions()) {
    varve::stream_version got = log.version_of(key.id());
    if (got != v)
      return testing::AssertionFailure()
             << "version_of(" << hex(std::as_bytes(std::span(key.bytes))) << ") = " << got
             << " want " << v;
  }
  return testing::AssertionSuccess();
}


// ---------------------------------------------------------------------------
// Appending against the model.

enum class append_form : uint8_t { natural, batch };

// Appends `evs` to `s` expecting `exp`; the outcome must be what the model
// predicts (ok, wrong_expected_version with the right actual version, or
// too_large), a refused append must leave the log untouched, and an
// acknowledged one is recorded in the model. `natural` uses the single-event
// overload for one event.
inline void append_checked(varve::event_log& log, log_model& model, const stream_key& s,
                           varve::expected_version exp, const std::vector<owned_event>& evs,
                           append_form form = append_form::natural) {
  uint64_t records = 0;
  for (const auto& e : evs) records += record_bytes_for(e, s.bytes.size());
  const varve::errc want = model.predict(s, exp, records);
  const varve::sequence seq_before = log.next_sequence();
  const varve::position committed_before = log.committed_position();
  const varve::stream_version version_before = model.version_of(s);
  std::vector<varve::event_data> data = as_data(evs);
  varve::result<varve::append_result> r =
      (evs.size() == 1 && form == append_form::natural)
          ? log.append(s.id(), exp, data[0])
          : log.append(s.id(), exp, std::span<const varve::event_data>(data));
  ASSERT_ERRC(r, want);
  if (r.ok()) {
    EXPECT_EQ(r->first_sequence.value, model.next_sequence());
    EXPECT_EQ(r->first_version, version_before + 1);
    EXPECT_EQ(r->last_version, version_before + evs.size());
    EXPECT_GT(r->end.value, r->first.value);
    EXPECT_GE(r->first.value, committed_before.value);
    EXPECT_EQ(log.next_sequence().value, seq_before.value + evs.size());
    EXPECT_GE(log.committed_position().value, r->end.value);
    EXPECT_EQ(log.version_of(s.id()), version_before + evs.size());
    model.apply(s, evs, *r);
    return;
  }
  if (want == varve::errc::wrong_expected_version) {
    EXPECT_EQ(r.error().actual_version(), version_before) << describe(r);
  }
  EXPECT_EQ(log.next_sequence().value, seq_before.value) << "a refused append changed the log";
  EXPECT_EQ(log.committed_position().value, committed_before.value)
      << "a refused append changed the log";
  EXPECT_EQ(log.version_of(s.id()), version_before) << "a refused append changed the stream";
}

// A multi-stream append, checked against the model like append_checked:
// the outcome it predicts, each stream's acknowledgement, and a refused one
// leaves the log untouched.
inline void append_multi_checked(varve::event_log& log, log_model& model,
                                 const std::vector<log_model::part>& parts) {
  const varve::errc want = model.predict_multi(parts);
  const varve::sequence seq_before = log.next_sequence();
  const varve::position committed_before = log.committed_position();
  std::vector<std::vector<varve::event_data>> data;
  std::vector<varve::stream_batch> batches;
  data.reserve(parts.size());
  for (const auto& p : parts) data.push_back(as_data(p.events));
  for (size_t i = 0; i < parts.size(); ++i)
    batches.push_back({parts[i].stream.id(), parts[i].expected, data[i]});
  std::vector<varve::append_result> acks(parts.size());
  auto r = log.append(std::span<const varve::stream_batch>(batches), std::span<varve::append_result>(acks));
  ASSERT_ERRC(r, want);
  if (r.ok()) {
    uint64_t events = 0;
    varve::position at = r->first;
    for (size_t i = 0; i < parts.size(); ++i) {
      const varve::stream_version before = model.version_of(parts[i].stream);
      const size_t n = parts[i].events.size();
      EXPECT_EQ(acks[i].first.value, at.value) << "streams[" << i << "]";
      EXPECT_EQ(acks[i].first_sequence.value, seq_before.value + events) << "streams[" << i << "]";
      EXPECT_EQ(acks[i].first_version, n ? before + 1 : before) << "streams[" << i << "]";
      EXPECT_EQ(acks[i].last_version, before + n) << "streams[" << i << "]";
      EXPECT_EQ(log.version_of(parts[i].stream.id()), before + n) << "streams[" << i << "]";
      at = acks[i].end;
      events += n;
    }
    EXPECT_EQ(at.value, r->end.value);
    EXPECT_EQ(r->events, events);
    EXPECT_EQ(r->first_sequence.value, seq_before.value);
    EXPECT_EQ(log.next_sequence().value, seq_before.value + events);
    EXPECT_EQ(log.committed_position().value, r->end.value);
    model.apply_multi(parts, *r);
    return;
  }
  if (want == varve::errc::wrong_expected_version) {
    for (const auto& p : parts)
      if (!p.expected.accepts(model.version_of(p.stream))) {
        EXPECT_EQ(r.error().actual_version(), model.version_of(p.stream)) << describe(r);
        const std::string named = p.stream.is_integer ? std::to_string(p.stream.as_u64()) : p.stream.bytes;
        EXPECT_NE(r.error().message().find("'" + named + "'"), std::string::npos)
            << "the conflict does not name the stream: " << describe(r);
        break;
      }
  }
  EXPECT_EQ(log.next_sequence().value, seq_before.value) << "a refused multi-stream append changed the log";
  EXPECT_EQ(log.committed_position().value, committed_before.value)
      << "a refused multi-stream append changed the log";
  for (const auto& p : parts)
    EXPECT_EQ(log.version_of(p.stream.id()), model.version_of(p.stream)) << "a refused append changed a stream";
}

}  // namespace varve_test
