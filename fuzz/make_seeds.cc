// varve-fuzz-seeds: writes the seed corpora of every fuzz target from real
// logs made with the library, so seeds start past the checksums and magics.
//
//   ./build-fuzz/fuzz/varve-fuzz-seeds fuzz/corpus
//
// writes fuzz/corpus/<target>/<name> (deterministic: fixed clock, fixed log
// id, fixed RNG seed; rerunning rewrites the same bytes).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "base/coding.h"
#include "base/log_files.h"
#include "base/record_format.h"
#include "base/segment_format.h"
#include "engine/groups/group_file.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/log_input.h"
#include "varve/varve.h"

using namespace varve;
using namespace varve_fuzz;
namespace fsys = std::filesystem;

namespace {

std::string g_out;
std::string g_tmp;

void die(const std::string& what) {
  std::fprintf(stderr, "varve-fuzz-seeds: %s\n", what.c_str());
  std::exit(1);
}

void seed(const std::string& target, const std::string& name, const void* data, size_t n) {
  const std::string dir = g_out + "/" + target;
  fsys::create_directories(dir);
  if (!write_file(dir + "/" + name, data, n)) die("cannot write " + dir + "/" + name);
}
void seed(const std::string& target, const std::string& name, const std::string& s) {
  seed(target, name, s.data(), s.size());
}
void seed(const std::string& target, const std::string& name, const std::vector<std::byte>& b) {
  seed(target, name, b.data(), b.size());
}

log_options fixed_options() {
  log_options o;
  o.segment_bytes = kFuzzSegmentBytes;
  o.prepare_next_segment = false;
  auto tick = std::make_shared<uint64_t>(1795435200000000000ull);
  o.clock = [tick] { return *tick += 1000; };
  return o;
}

// A fresh log with the fuzzers' fixed log id: varve.meta alone, then open
// (recovery creates segment 0).
std::unique_ptr<event_log> fresh_log(const std::string& dir) {
  remove_tree(dir);
  fsys::create_directories(dir);
  auto meta = fuzz_meta_bytes();
  write_file(dir + "/" + log_files::kMetaName, meta.data(), meta.size());
  auto l = event_log::open(dir, fixed_options());
  if (!l) die("open " + dir + ": " + l.error().to_string());
  return std::move(l.value());
}

std::unique_ptr<event_log> reopen(const std::string& dir) {
  auto l = event_log::open(dir, fixed_options());
  if (!l) die("reopen " + dir + ": " + l.error().to_string());
  return std::move(l.value());
}

void append(event_log& log, const std::string& stream, const std::vector<std::string>& payloads,
            const id128* corr = nullptr) {
  std::vector<event_data> evs;
  for (const std::string& p : payloads) {
    event_data e{.type = 3, .payload = event_data::bytes(p), .content = content_type::json};
    e.correlation_id = corr;
    evs.push_back(e);
  }
  auto r = log.append(std::string_view(stream), expected_version::any(), evs);
  if (!r) die("append: " + r.error().to_string());
}

std::vector<std::byte> file(const std::string& path) {
  std::vector<std::byte> b;
  if (!read_file(path, b)) b.clear();
  return b;
}

std::string seg_path(const std::string& dir, uint64_t k) {
  return dir + "/" + log_files::segment_name(k);
}

// The used part of a segment's record area: [64, last non-zero byte].
std::string body_of(const std::vector<std::byte>& seg) {
  if (seg.size() != kFuzzSegmentBytes) return {};
  size_t end = kFuzzSegmentBytes - 64;
  while (end > 64 && seg[end - 1] == std::byte{0}) --end;
  return std::string(reinterpret_cast<const char*>(seg.data() + 64), end - 64);
}
std::string footer_of(const std::vector<std::byte>& seg) {
  if (seg.size() != kFuzzSegmentBytes) return {};
  const std::byte* f = seg.data() + kFuzzSegmentBytes - 64;
  if (segment_format::is_zero(f, 64)) return {};
  return std::string(reinterpret_cast<const char*>(f), 64);
}
std::string str(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Captures a log directory (segments 0 and 1, checkpoint 0 or 1, control
// block) as a log_open_fuzzer input with the given flags.
std::string capture(const std::string& dir, uint8_t flags_a, uint8_t flags_b) {
  static std::vector<std::string> keep;  // the views below point into these
  keep.clear();
  keep.reserve(8);
  open_input in;
  in.flags_a = flags_a;
  in.flags_b = flags_b;
  for (int k = 0; k < 2; ++k) {
    auto seg = file(seg_path(dir, k));
    if (seg.empty()) continue;
    if (k == 1) in.flags_a |= 0x04;
    keep.push_back(body_of(seg));
    in.seg_body[k] = keep.back();
    keep.push_back(footer_of(seg));
    in.seg_footer[k] = keep.back();
  }
  for (int cp : {1, 0}) {
    auto h = file(dir + "/index/" + log_files::heads_name(cp));
    if (h.empty()) continue;
    in.flags_a |= 0x20;
    if (cp == 1) in.flags_b |= 0x08;
    keep.push_back(str(h));
    in.heads = keep.back();
    break;
  }
  auto ctl = file(dir + "/" + log_files::kControlName);
  if (!ctl.empty() && (flags_a & 0x40)) {
    keep.push_back(str(ctl));
    in.ctl = keep.back();
  } else {
    in.flags_a &= ~0x40;
  }
  return encode_open_input(in);
}

// Puts a segment-end record at the end of segment 0's records (the log must
// be closed), as a writer does at roll-over: the next open seals segment 0.
void end_segment0(const std::string& dir) {
  auto seg = file(seg_path(dir, 0));
  uint64_t off = 64;
  while (off + 16 <= kFuzzSegmentBytes - 64) {
    const uint32_t len = le32(seg.data() + off + 8);
    if (len == 0) break;
    off += len;
  }
  record::encode_segment_end(seg.data() + off, off);
  write_file(seg_path(dir, 0), seg.data(), seg.size());
}

// ---------------------------------------------------------------------------

void log_open_seeds() {
  const std::string d = g_tmp + "/open";
  const id128 corr{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};
  {
    auto log = fresh_log(d);
    log.reset();
    seed("log_open", "empty-log", capture(d, 0x40, 0x00));
    seed("log_open", "empty-log-no-ctl", capture(d, 0x00, 0x00));
  }
  {
    auto log = fresh_log(d);
    append(*log, "order-1", {"{\"sku\":\"A1\"}"});
    append(*log, "order-2", {"{\"sku\":\"B2\",\"qty\":3}", "{\"paid\":true}", "{\"shipped\":1}"}, &corr);
    append(*log, "order-1", {"{\"sku\":\"A1\",\"cancel\":1}"});
    log.reset();
    seed("log_open", "one-segment-clean", capture(d, 0x40, 0x00));
    seed("log_open", "one-segment-crashed", capture(d, 0x00, 0x00));
    seed("log_open", "one-segment-fixups", capture(d, 0x40, 0x07));
    seed("log_open", "one-segment-strict", capture(d, 0xc0, 0x00));
    seed("log_open", "one-segment-group-batch", capture(d, 0x40, 0xb0));
    // A torn tail: the last record's second half is gone.
    auto seg = file(seg_path(d, 0));
    std::string body = body_of(seg);
    {
      open_input in;
      parse_open_input(reinterpret_cast<const uint8_t*>(""), 0, in);
      std::string torn = body.substr(0, body.size() - 40);
      in.seg_body[0] = torn;
      seed("log_open", "torn-tail", encode_open_input(in));
      std::string garbage = body + std::string(64, '\x5a');
      in.seg_body[0] = garbage;
      seed("log_open", "garbage-after-tail", encode_open_input(in));
      in.flags_b = 0x01;
      seed("log_open", "garbage-after-tail-fixups", encode_open_input(in));
    }
  }
  {
    // Two segments: segment 0 sealed (by recovery, after a crash right
    // after its segment-end record), a checkpoint for it, segment 1 active.
    auto log = fresh_log(d);
    append(*log, "acct-1", {"{\"open\":1}"});
    append(*log, "acct-2", {"{\"open\":2}", "{\"deposit\":10}"});
    log.reset();
    end_segment0(d);
    seed("log_open", "segment-end-no-next", capture(d, 0x40, 0x00));
    log = reopen(d);
    append(*log, "acct-1", {"{\"deposit\":5}"});
    append(*log, "acct-3", {"{\"open\":3}", "{\"deposit\":7}", "{\"withdraw\":1}"}, &corr);
    log.reset();
    seed("log_open", "two-segments-clean", capture(d, 0x40, 0x00));
    seed("log_open", "two-segments-crashed", capture(d, 0x00, 0x00));
    seed("log_open", "two-segments-fixups", capture(d, 0x40, 0x07));
    seed("log_open", "two-segments-sync-prepare", capture(d, 0x40, 0x50));
  }
  {
    // A batch cut short by a crash: its last record never validated.
    auto log = fresh_log(d);
    append(*log, "s", {"{\"a\":1}"});
    append(*log, "s", {"{\"b\":1}", "{\"b\":2}", "{\"b\":3}"});
    log.reset();
    auto seg = file(seg_path(d, 0));
    std::string body = body_of(seg);
    open_input in;
    parse_open_input(reinterpret_cast<const uint8_t*>(""), 0, in);
    // Zero the checksum of the last record (the batch's end).
    uint64_t off = 64, last = 64;
    while (off + 16 <= kFuzzSegmentBytes - 64 && le32(seg.data() + off + 8) != 0) {
      last = off;
      off += le32(seg.data() + off + 8);
    }
    std::memset(body.data() + (last - 64), 0, 8);
    in.seg_body[0] = body;
    seed("log_open", "incomplete-batch", encode_open_input(in));
  }
}

void record_seeds() {
  const std::string d = g_tmp + "/records";
  auto log = fresh_log(d);
  const id128 a{{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf}};
  const id128 b{{0xb0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}};
  std::string big(700, 'q');
  std::string bin = std::string("\x00\x01\x02\xff\xfe", 5);
  {
    event_data e{.type = 1, .payload = event_data::bytes("{\"sku\":\"A1\"}"), .content = content_type::json};
    (void)log->append("order-1", expected_version::any(), e);
  }
  {
    event_data e{.type = 2, .schema_version = 3, .payload = event_data::bytes(bin)};
    e.correlation_id = &a;
    (void)log->append("order-1", expected_version::any(), e);
  }
  {
    event_data e{.type = 9, .payload = event_data::bytes("")};
    e.event_id = &a;
    e.correlation_id = &b;
    e.causation_id = &a;
    (void)log->append(stream_id::from_u64(42), expected_version::any(), e);
  }
  {
    // Metadata (format version 3): after the payload, metadata_len at 60.
    const metadata_entry m[] = {{"user", "ann"}, {"trace", std::string_view("\x00\xff", 2)}, {"k", ""}};
    event_data e{.type = 5, .payload = event_data::bytes("{\"x\":1}"), .content = content_type::json};
    e.metadata = m;
    (void)log->append("order-2", expected_version::any(), e);
  }
  {
    std::vector<event_data> batch;
    for (int i = 0; i < 3; ++i)
      batch.push_back({.type = 4, .payload = event_data::bytes(i == 1 ? std::string_view(big) : "{}"),
                       .content = content_type::json});
    const std::string longest(255, 's');
    (void)log->append(std::string_view(longest), expected_version::any(), batch);
  }
  log.reset();
  auto seg = file(seg_path(d, 0));
  uint64_t off = 64;
  int n = 0;
  std::vector<std::byte> last;
  while (off + 16 <= kFuzzSegmentBytes - 64) {
    const uint32_t len = le32(seg.data() + off + 8);
    if (len == 0) break;
    std::vector<std::byte> rec(seg.begin() + off, seg.begin() + off + len);
    put64(rec.data() + 16, 64);  // as if at position 64
    put64(rec.data(), record::checksum(rec.data(), len));
    seed("record_decode", "event-" + std::to_string(n++), rec);
    last = rec;
    off += len;
  }
  // The same event with zeros after it (a record followed by free space).
  std::vector<std::byte> tail = last;
  tail.resize(tail.size() + 48);
  seed("record_decode", "event-then-zeros", tail);
  // The segment-end record, and an all-zero (unwritten) slot.
  std::vector<std::byte> end(24);
  record::encode_segment_end(end.data(), 64);
  seed("record_decode", "segment-end", end);
  seed("record_decode", "unwritten", std::vector<std::byte>(32));
  // A record of an unknown kind flagged ignorable, with a valid checksum.
  std::vector<std::byte> skip(40);
  coding::put_u32(skip.data() + 8, 40);
  coding::put_u8(skip.data() + 12, 7);
  coding::put_u8(skip.data() + 13, record::kFlagIgnorable);
  coding::put_u64(skip.data() + 16, 64);
  put64(skip.data(), record::checksum(skip.data(), 40));
  seed("record_decode", "ignorable-kind", skip);
  // An event with a longer header (a newer writer's extra field).
  {
    std::vector<std::byte> rec(96);
    coding::put_u32(rec.data() + 8, 96);
    coding::put_u8(rec.data() + 12, record::kEvent);
    coding::put_u8(rec.data() + 13, record::kFlagBatchBegin | record::kFlagBatchEnd);
    coding::put_u8(rec.data() + 14, 3);
    coding::put_u64(rec.data() + 16, 64);
    coding::put_u64(rec.data() + 32, 1);
    coding::put_u16(rec.data() + 54, 80);
    coding::put_u32(rec.data() + 56, 5);
    coding::put_u64(rec.data() + 64, ~uint64_t{0});
    std::memcpy(rec.data() + 80, "abchello", 8);
    put64(rec.data(), record::checksum(rec.data(), 96));
    seed("record_decode", "longer-header", rec);
  }
}

void heads_seeds() {
  const std::string d = g_tmp + "/heads";
  auto log = fresh_log(d);
  append(*log, "acct-1", {"{\"open\":1}"});
  (void)log->append(stream_id::from_u64(7), expected_version::any(),
                    event_data{.type = 1, .payload = event_data::bytes("{}"), .content = content_type::json});
  append(*log, std::string(40, 'L'), {"{\"long\":1}", "{\"long\":2}"});
  log.reset();
  end_segment0(d);
  log = reopen(d);  // seals segment 0 and checkpoints it in the background
  log.reset();
  auto h = file(d + "/index/" + log_files::heads_name(0));
  if (h.empty()) die("no checkpoint was written");
  std::string with_id = std::string(1, '\x02') + str(h);
  std::string fixups = std::string(1, '\x03') + str(h);
  std::string foreign = std::string(1, '\x00') + str(h);
  seed("heads_file", "three-streams", with_id);
  seed("heads_file", "three-streams-fixups", fixups);
  seed("heads_file", "three-streams-foreign-log", foreign);
  // An empty table (a checkpoint after a segment with no events).
  std::vector<std::byte> empty(64);
  std::memcpy(empty.data(), "VARVEHDS", 8);
  coding::put_u32(empty.data() + 8, 1);
  coding::put_u64(empty.data() + 16, kFuzzLogId);
  coding::put_u64(empty.data() + 48, XXH3_64bits(empty.data() + 64, 0));
  coding::put_u64(empty.data() + 56, XXH3_64bits(empty.data(), 56));
  seed("heads_file", "empty-table", std::string(1, '\x02') + str(empty));
}

// A consumer group file (FORMAT.md 6b) of 4 partitions: one member, one
// lease, one partition committed twice (both copies in use); and the same
// with the newer commit copy torn (the decoder falls back to the older).
void group_seeds() {
  namespace gf = group_file;
  gf::header h;
  h.partitions = 4;
  h.log_id = kFuzzLogId;
  h.created_ns = 1795435200000000000ull;
  std::vector<std::byte> f = gf::fresh(h, 64);
  gf::member m;
  m.gen = 1;
  m.id = 0x1111222233334444ull;
  m.expiry_ns = 5'000'000'000ull;
  m.boot = 77;
  m.pid = 4242;
  m.name = "worker-1";
  gf::encode_member(m, f.data() + gf::member_offset(0) + gf::kCopySize);
  gf::lease l;
  l.gen = 1;
  l.owner = m.id;
  l.expiry_ns = m.expiry_ns;
  l.boot = 77;
  l.epoch = 1;
  gf::encode_lease(l, f.data() + gf::lease_offset(0) + gf::kCopySize);
  gf::commit c;
  c.gen = 2;
  c.position = 4096;
  c.committed_ns = h.created_ns + 1000;
  c.retry_position = 4096;
  c.retries = 2;
  c.member = m.id;
  gf::encode_commit(c, f.data() + gf::commit_offset(1));
  seed("group_file", "four-partitions", std::string(1, '\x02') + str(f));
  seed("group_file", "four-partitions-fixups", std::string(1, '\x03') + str(f));
  seed("group_file", "four-partitions-foreign-log", std::string(1, '\x00') + str(f));
  f[gf::commit_offset(1) + 9] ^= std::byte{0xff};
  seed("group_file", "four-partitions-torn-commit", std::string(1, '\x02') + str(f));
}

void ndjson_seeds() {
  const char* lines[] = {
      R"({"stream":"order-1","type":"OrderPlaced","data":{"sku":"A1","qty":2},"expected_version":3})",
      R"({"stream":"order-1","expected_version":"no_stream","events":[{"type":"A","data":{"x":1}},{"type":2,"data_base64":"AAEC/w=="}]})",
      R"({"stream":42,"type":7,"data":[1,2.5,-3e10,null,true,"\u00e9\ud83d\ude00"],"schema_version":2,"timestamp":1795435200000000000})",
      R"({"stream":"s","type":"T","data_base64":"","event_id":"0123abcd-4567-89ab-cdef-0123456789AB","correlation_id":"00000000-0000-0000-0000-000000000000","causation_id":"ffffffff-ffff-ffff-ffff-ffffffffffff"})",
      R"({"position":64,"sequence":0,"stream":"order-1","version":1,"type":"OrderPlaced","schema_version":1,"timestamp":1,"data":{"sku":"A1"}})",
      R"({"stream":"x","expected_version":"stream_exists","type":"T","data":"text"})",
      R"({"stream":"x","expected_version":"any","type":"T","data":{},"data_base64":"AA=="})",
      R"({"stream":"","type":"T","data":1})",
      R"({"stream":"x","events":[]})",
      R"({"stream":"x","events":[{"type":"A","data":1,"stream":"y"}]})",
      R"({"stream":"x","type":"T","data":1,"bogus":true})",
      R"([1,2,3])",
      R"({"stream":"x","type":"T","data":{"nested":{"deep":[{"a":"\n\"\\"}]}}})",
  };
  std::string all;
  int i = 0;
  for (const char* l : lines) {
    seed("ndjson", "line-" + std::to_string(i++), std::string(l) + "\n");
    all += l;
    all += (i % 2) ? "\r\n" : "\n";
  }
  seed("ndjson", "many-lines", all);
  seed("ndjson", "no-final-newline", std::string(lines[0]) + "\n" + lines[2]);
  seed("ndjson", "stream-bytes", std::string("{\"stream\":\"\xc3\xa9\\u0000\\ud800x\",\"type\":1,\"data\":0}\n\xff\xfe\x80 raw\n"));
  // Issue 15.9: nesting far past --max-depth (data nested 100,000 deep once
  // overflowed the stack), at each place a line can nest, closed or not; and
  // lines long enough to cross every bound the fuzzer tries.
  auto nest = [](const char* open, size_t depth, const char* close) {
    std::string s;
    for (size_t i = 0; i < depth; ++i) s += open;
    for (size_t i = 0; close && i < depth; ++i) s += close;
    return s;
  };
  const std::string head = lines[0];
  seed("ndjson", "deep-data-arrays", head + "\n{\"stream\":\"d\",\"type\":\"T\",\"data\":" + nest("[", 3000, "]") + "}\n");
  seed("ndjson", "deep-data-objects", "{\"stream\":\"d\",\"type\":\"T\",\"data\":" + nest("{\"k\":", 700, nullptr) + "1" + std::string(700, '}') + "}\n");
  seed("ndjson", "deep-batch", "{\"stream\":\"d\",\"events\":[{\"type\":\"T\",\"data\":" + nest("[", 513, "]") + "}]}\n");
  seed("ndjson", "deep-unclosed", "{\"stream\":\"d\",\"type\":" + nest("[{\"a\":", 700, nullptr) + "\n" + head + "\n");
  seed("ndjson", "deep-just-fits", "{\"stream\":\"d\",\"type\":\"T\",\"data\":" + nest("[", 5, "]") + "}\n" + "{\"stream\":\"d\",\"type\":\"T\",\"data\":" + nest("[", 6, "]") + "}\n");
  seed("ndjson", "long-line", head + "\n{\"stream\":\"l\",\"type\":\"T\",\"data\":\"" + std::string(5000, 'x') + "\"}\r\n" + head + "\n");
  seed("ndjson", "long-last-line", head + "\n" + std::string(3000, ' ') + head);
  // "timestamp" as ISO 8601: a zone, fractions, the last and first
  // nanoseconds 64 bits hold, and what is refused (no zone, before 1970).
  std::string iso;
  for (const char* t : {"2026-11-22T10:00:00.123Z", "2026-11-22T10:00:00+01:00", "2026-11-22t10:00:00.123456789-05:30",
                        "2554-07-21T23:34:33.709551615Z", "2554-07-21T23:34:33.709551616Z",
                        "1970-01-01T00:00:00Z", "2026-11-22T10:00:00", "1969-12-31T23:59:59Z"})
    iso += std::string("{\"stream\":\"t\",\"type\":\"T\",\"data\":1,\"timestamp\":\"") + t + "\"}\n";
  seed("ndjson", "iso-timestamps", iso);
}

void mutation_seeds() {
  // setup byte, append byte, then 8-byte ops: kind, file, off16, len16, file2, value.
  auto op = [](uint8_t kind, uint8_t f, uint16_t off, uint16_t len, uint8_t f2, uint8_t val) {
    std::string s;
    s.push_back(static_cast<char>(kind));
    s.push_back(static_cast<char>(f));
    s.push_back(static_cast<char>(off & 0xff));
    s.push_back(static_cast<char>(off >> 8));
    s.push_back(static_cast<char>(len & 0xff));
    s.push_back(static_cast<char>(len >> 8));
    s.push_back(static_cast<char>(f2));
    s.push_back(static_cast<char>(val));
    return s;
  };
  for (int v = 0; v < 5; ++v) {
    const std::string head{static_cast<char>(v | 0x10), static_cast<char>(v * 7 + 0x20)};
    seed("log_mutation", "state" + std::to_string(v) + "-undamaged", head);
    // The files of each state sort as: segments 0..N, index/..., varve.ctl.
    // File 5 or 6 is the tail in most states; offsets are modulo the size.
    seed("log_mutation", "state" + std::to_string(v) + "-flip-tail", head + op(0, 5, 3000, 0, 0, 0x10));
    seed("log_mutation", "state" + std::to_string(v) + "-zero-tail", head + op(1, 5, 20000, 4096, 0, 0));
    seed("log_mutation", "state" + std::to_string(v) + "-splice", head + op(3, 2, 512, 900, 5, 0x30));
    seed("log_mutation", "state" + std::to_string(v) + "-dup", head + op(4, 5, 64, 300, 0, 0));
    seed("log_mutation", "state" + std::to_string(v) + "-sealed-flip", head + op(0, 1, 9000, 0, 0, 0x01));
    seed("log_mutation", "state" + std::to_string(v) + "-heads-ctl",
         head + op(0, 7, 70, 0, 0, 0x40) + op(7, 9, 256, 16, 0, 0xff));
  }
  seed("log_mutation", "truncate-last", std::string("\x11\x05", 2) + op(2, 6, 40000, 0, 0, 0));
  seed("log_mutation", "delete-last", std::string("\x11\x05", 2) + op(6, 6, 0, 0, 0, 0));
  seed("log_mutation", "zero-header", std::string("\x13\x05", 2) + op(1, 6, 0, 64, 0, 0));
  seed("log_mutation", "literal", std::string("\x12\x25", 2) + op(5, 5, 100, 8, 0, 0) + std::string("\x18\0\0\0\x02\0\0\0", 8));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR   (e.g. fuzz/corpus)\n", argv[0]);
    return 2;
  }
  g_out = argv[1];
  g_tmp = scratch_root() + "/seeds";
  log_open_seeds();
  record_seeds();
  heads_seeds();
  group_seeds();
  ndjson_seeds();
  mutation_seeds();
  std::printf("seeds written under %s\n", g_out.c_str());
  return 0;
}
