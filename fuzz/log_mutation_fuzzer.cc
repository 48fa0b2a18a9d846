// log_mutation_fuzzer: structure-aware. A valid log (about 420 events over 20
// streams, atomic batches, 64 KiB segments, so several sealed segments, head
// checkpoints and an unsealed tail) is built once per process; each input
// picks one of its crash states and a list of byte-level mutations of its
// files (flip, zero, truncate, splice, duplicate, overwrite, fill, delete),
// then the damaged directory goes through verify_log, event_log::open
// (recovery_mode::torn_tail), a full read, an append, and optionally a
// close + verify + reopen. The recovery invariants are asserted, not just
// "no crash". The states were written in this process, so recovery's guard
// (README "Recovery contract") is varve.ctl's committed position; setup bit
// 6 opens "after a reboot" instead, where the guard is the durable position.
//
// Input: u8 setup, u8 append, then 8-byte ops until the input ends.
//   setup bits 0-2: base state (mod 5), see make_variants()
//         bit 3: prepare_next_segment;  bit 4: close, verify and reopen at the end
//         bit 5: durability::group (else none)
//         bit 6: open after a simulated reboot (another boot id)
//         bit 7: the bulk reads of invariant 8 take 64 events a call (else
//                1, 4, 7 or 10, from the append byte's bits 5-6)
//   append: bits 0-4: stream (mod 21; 20 = a new stream), bits 5-6: batch size - 1 (max 3)
//   op: u8 kind, u8 file, u16 offset, u16 length, u8 file2, u8 value
//       kind % 8: 0 flip (xor value, 0x80 if 0) · 1 zero range · 2 truncate
//       the file at offset · 3 splice [offset, +length) of file to file2 at
//       offset (value << 8 | low byte of length) · 4 duplicate the range right
//       after itself · 5 overwrite at offset with the next length % 33 input
//       bytes · 6 delete the file · 7 fill the range with value
//   `file` indexes the sorted list of the state's files (segments,
//   index/*.heads, varve.ctl), modulo its size; offsets are modulo the size.
//
// Invariants (any violation traps):
//  0. Nothing below the guard is ever cut: when open succeeds, every event
//     that ends at or below the guard varve.ctl gives (read before the open)
//     is read back; whatever recovery cut is in lost+found/.
//  1. open fails only with corruption / not_a_log / newer_format / io_error,
//     and only if damage lies below the guard, or a sealed segment (or a
//     segment file's size, header or existence) was damaged: damage confined
//     to the unsealed tail's records past the guard, the checkpoints and the
//     control block must always recover, with one exception: damage that
//     raised varve.ctl's committed or durable word (no checksum: it is stored
//     on every append) is refused with an error naming varve.ctl, and
//     repair_log (`varve recover`) must then recover everything below the
//     undamaged block's guard.
//  2. Every event read back validates and equals the original event with that
//     sequence number (stream, version, position, previous, type, payload,
//     batch flags): recovery keeps a prefix of the log, never invents,
//     reorders or alters an event.
//  3. Sequence numbers are contiguous from 0; versions per stream are
//     contiguous from 1 and each event's `previous` is the stream's last event.
//  4. No partial batch is visible: a full read ends outside any batch.
//  5. A full read ends exactly at the committed position and next_sequence();
//     a read error is errc::corruption, and only if a sealed segment was damaged.
//  6. Nothing before the first damaged byte is lost: every complete batch
//     that ends before it (and survived in the undamaged state) is read back.
//  7. The log accepts an append with expected_version::exact(the stream's
//     version in the recovered prefix) and reads it back at next_sequence();
//     with bit 4: close succeeds, verify_log finds nothing wrong (when the
//     damage was confined to the tail and no clean-close marker was trusted),
//     and a reopen reads the same prefix plus the appended batch.
//  8. log_reader::next_batch, subscription::next and subscription::next_batch
//     hand out exactly the events next() hands out, every field and byte, and
//     end where it ends, with the same error (fuzz/read_paths.h).
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "base/coding.h"
#include "base/log_files.h"
#include "base/meta_file.h"
#include "base/segment_format.h"
#include "engine/control_block.h"
#include "engine/recovery.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/read_paths.h"
#include "varve/varve.h"

using namespace varve;
using namespace varve_fuzz;
namespace fsys = std::filesystem;

namespace {

constexpr uint64_t kSegBytes = 64 * 1024;
constexpr int kLog2 = 16;
constexpr int kStringStreams = 15;
constexpr int kIntStreams = 5;
constexpr int kStreams = kStringStreams + kIntStreams;

struct original_event {
  uint64_t position, previous, version, end;
  std::string stream;
  bool is_int;
  uint32_t type;
  std::string payload;
  bool begin, end_flag;
};

struct file_entry {
  std::string name;
  std::vector<std::byte> bytes;
  bool is_segment = false;
  uint64_t seg_index = 0;
  bool tail = false;  // unsealed (after the last valid footer)
};

struct variant {
  std::vector<file_entry> files;   // sorted by name
  uint64_t survivors = 0;          // events an undamaged open reads back
  bool clean_marker = false;       // the control block holds a valid clean-close marker
};

struct world {
  std::vector<original_event> events;
  std::vector<std::string> stream_names;  // index -> raw stream bytes
  std::vector<bool> stream_is_int;
  std::vector<variant> variants;
  std::string work;
};

std::string stream_key(int i) {
  if (i < kStringStreams) return "account-" + std::to_string(i);
  const uint64_t id = 1000 + static_cast<uint64_t>(i);
  std::string s(8, '\0');
  for (int b = 0; b < 8; ++b) s[b] = static_cast<char>(id >> (56 - 8 * b));
  return s;
}
stream_id stream_of(const world& w, size_t i) {
  if (w.stream_is_int[i]) return stream_id::from_u64(1000 + i);
  return stream_id(std::string_view(w.stream_names[i]));
}

std::string payload_text(std::mt19937_64& rng, size_t n) {
  static const char kAlpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s = "{\"v\":\"";
  for (size_t i = 0; i < n; ++i) s.push_back(kAlpha[rng() % 36]);
  s += "\"}";
  return s;
}

void load_dir(const std::string& dir, variant& v) {
  v.files.clear();
  for (const auto& e : fsys::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string rel = fsys::relative(e.path(), dir).string();
    if (rel == log_files::kMetaName || rel == log_files::kLockName) continue;
    file_entry f;
    f.name = rel;
    read_file(e.path().string(), f.bytes);
    if (auto k = log_files::parse_segment_name(rel)) {
      f.is_segment = true;
      f.seg_index = *k;
    }
    v.files.push_back(std::move(f));
  }
  std::sort(v.files.begin(), v.files.end(), [](auto& a, auto& b) { return a.name < b.name; });
  // The tail: segments after the newest one with a valid footer.
  uint64_t last_sealed = ~uint64_t{0};
  for (const file_entry& f : v.files) {
    if (!f.is_segment || f.bytes.size() != kSegBytes) continue;
    segment_format::footer ft;
    if (segment_format::decode_footer(f.bytes.data() + kSegBytes - 64, f.name, 0, ft).ok() &&
        ft.segment_index == f.seg_index)
      last_sealed = f.seg_index;
  }
  for (file_entry& f : v.files)
    if (f.is_segment) f.tail = last_sealed == ~uint64_t{0} || f.seg_index > last_sealed;
}

void write_variant(const variant& v, const std::string& meta_src, const std::string& dir) {
  remove_tree(dir);
  fsys::create_directories(dir + "/index");
  fsys::copy_file(meta_src, dir + "/" + log_files::kMetaName);
  for (const file_entry& f : v.files) write_file(dir + "/" + f.name, f.bytes.data(), f.bytes.size());
}

file_entry* find_file(variant& v, const std::string& name) {
  for (file_entry& f : v.files)
    if (f.name == name) return &f;
  return nullptr;
}

// Reads the whole log, checking invariants 2-5 against the original events.
// Returns the number of events read and whether the read reached the end.
struct read_outcome {
  uint64_t events = 0;
  bool complete = false;
  std::string error;
};

// Events from sequence `originals` on were appended after recovery: they are
// checked for continuity and framing, not against the original log.
read_outcome read_all(const world& w, event_log& log, const char* when, uint64_t originals) {
  read_outcome out;
  log_reader r = log.read();
  event_view v;
  std::map<std::string, std::pair<uint64_t, uint64_t>> heads;  // stream -> (version, last position)
  bool in_batch = false;
  for (;;) {
    auto more = r.next(v);
    if (!more) {
      FUZZ_CHECK(clean_read_error(more.error().code()),
                 std::string(when) + ": read failed with " + more.error().to_string());
      out.error = more.error().to_string();
      return out;
    }
    if (!more.value()) break;
    const uint64_t seq = out.events;
    const std::string ctx = std::string(when) + ": event #" + std::to_string(seq) + " at " +
                            std::to_string(v.position.value);
    FUZZ_CHECK(v.sequence.value == seq, ctx + ": sequence " + std::to_string(v.sequence.value));
    if (seq < originals) {
      FUZZ_CHECK(seq < w.events.size(), ctx + ": more events than were ever written");
      const original_event& o = w.events[seq];
      const std::string_view payload(reinterpret_cast<const char*>(v.payload.data()), v.payload.size());
      FUZZ_CHECK(v.position.value == o.position && v.stream == o.stream && v.stream_is_integer == o.is_int &&
                     v.version == o.version && v.previous.value == o.previous && v.type == o.type &&
                     payload == o.payload && v.batch_begin == o.begin && v.batch_end == o.end_flag,
                 ctx + ": differs from the event written with that sequence number");
    }
    auto& h = heads[std::string(v.stream)];
    FUZZ_CHECK(v.version == h.first + 1, ctx + ": stream version not contiguous");
    FUZZ_CHECK(v.previous.value == (h.first ? h.second : ~uint64_t{0}), ctx + ": back-chain broken");
    h = {v.version, v.position.value};
    FUZZ_CHECK(v.batch_begin != in_batch, ctx + ": batch framing broken");
    in_batch = !v.batch_end;
    ++out.events;
  }
  out.complete = true;
  FUZZ_CHECK(!in_batch, std::string(when) + ": the log ends inside a batch (partial batch visible)");
  FUZZ_CHECK(r.where() == log.committed_position(), std::string(when) + ": read ended before the commit position");
  FUZZ_CHECK(log.next_sequence().value == out.events,
             std::string(when) + ": next_sequence " + std::to_string(log.next_sequence().value) +
                 " but " + std::to_string(out.events) + " events read");
  return out;
}

world& setup() {
  static world* w = [] {
    auto* wp = new world;
    world& w = *wp;
    const std::string root = scratch_root() + "/mutation";
    const std::string base = root + "/base";
    w.work = root + "/work";
    remove_tree(root);
    fsys::create_directories(root);
    for (int i = 0; i < kStreams; ++i) {
      w.stream_names.push_back(stream_key(i));
      w.stream_is_int.push_back(i >= kStringStreams);
    }

    // 1. The log. Deterministic: fixed seed, fixed clock.
    {
      log_options o;
      o.segment_bytes = kSegBytes;
      uint64_t tick = 1795435200000000000ull;
      o.clock = [&tick] { return tick += 1000; };
      auto made = event_log::create(base, o);
      FUZZ_CHECK(made.ok(), "setup: create: " + made.error().to_string());
      auto& log = *made.value();
      std::mt19937_64 rng(20261123);
      std::vector<uint64_t> version(kStreams, 0);
      const id128 cid{{0xc0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}};
      size_t written = 0;
      while (written < 420) {
        const size_t s = rng() % kStreams;
        const size_t n = rng() % 4 == 0 ? 1 + rng() % 5 : 1;
        std::vector<std::string> texts;
        for (size_t i = 0; i < n; ++i) texts.push_back(payload_text(rng, 20 + rng() % 1400));
        std::vector<event_data> batch;
        for (size_t i = 0; i < n; ++i) {
          event_data e{.type = static_cast<uint32_t>(1 + rng() % 9),
                       .payload = event_data::bytes(texts[i]),
                       .content = content_type::json};
          if (rng() % 5 == 0) e.correlation_id = &cid;
          batch.push_back(e);
        }
        if (rng() % 5 == 0) {
          // A multi-stream unit of work: the batch split over s and s + 1.
          const size_t t = (s + 1) % kStreams;
          const size_t k = n / 2;
          const std::span<const event_data> all(batch);
          stream_batch parts[] = {{stream_of(w, s), expected_version::exact(version[s]), all.subspan(k)},
                                  {stream_of(w, t), expected_version::exact(version[t]), all.first(k)}};
          auto r = log.append(parts);
          FUZZ_CHECK(r.ok(), "setup: multi-stream append: " + r.error().to_string());
          version[s] += n - k;
          version[t] += k;
        } else {
          auto r = log.append(stream_of(w, s), expected_version::exact(version[s]), batch);
          FUZZ_CHECK(r.ok(), "setup: append: " + r.error().to_string());
          version[s] += n;
        }
        written += n;
      }
      FUZZ_CHECK(log.close().ok(), "setup: close");
    }

    // 2. The events as written, read back from an untouched copy.
    {
      auto ro = event_log::open_read_only(base);
      FUZZ_CHECK(ro.ok(), "setup: open_read_only: " + ro.error().to_string());
      log_reader r = ro.value()->read();
      event_view v;
      while (true) {
        auto more = r.next(v);
        FUZZ_CHECK(more.ok(), "setup: read: " + more.error().to_string());
        if (!more.value()) break;
        w.events.push_back({v.position.value, v.previous.value, v.version,
                            v.position.value + v.record_bytes, std::string(v.stream),
                            v.stream_is_integer, v.type,
                            std::string(reinterpret_cast<const char*>(v.payload.data()), v.payload.size()),
                            v.batch_begin, v.batch_end});
      }
    }

    // 3. Crash states of that log:
    //   0 as closed (clean-close marker valid)
    //   1 crashed: the marker cleared
    //   2 crashed before the last full segment was sealed: its footer and
    //     checkpoint are gone
    //   3 crashed after pre-creating the next segment (header only)
    //   4 crashed right after a roll-over: the last segment file does not
    //     exist yet, the one before ends with a segment-end record, unsealed
    const std::string meta = base + "/" + log_files::kMetaName;
    variant v0;
    load_dir(base, v0);
    w.variants.push_back(v0);
    variant v1 = v0;
    if (file_entry* ctl = find_file(v1, log_files::kControlName))
      std::fill(ctl->bytes.begin() + 256, ctl->bytes.begin() + 272, std::byte{0});
    w.variants.push_back(v1);
    uint64_t last_seg = 0;
    for (const file_entry& f : v0.files)
      if (f.is_segment) last_seg = std::max(last_seg, f.seg_index);
    FUZZ_CHECK(last_seg >= 3, "setup: the base log should span several segments");
    variant v2 = v1;
    {
      file_entry* sealed = find_file(v2, log_files::segment_name(last_seg - 1));
      FUZZ_CHECK(sealed != nullptr, "setup");
      std::fill(sealed->bytes.end() - 64, sealed->bytes.end(), std::byte{0});
      const std::string cp = std::string(log_files::kIndexDir) + "/" + log_files::heads_name(last_seg - 1);
      std::erase_if(v2.files, [&](const file_entry& f) { return f.name == cp; });
    }
    w.variants.push_back(v2);
    variant v3 = v1;
    {
      file_entry f;
      f.name = log_files::segment_name(last_seg + 1);
      f.bytes.assign(kSegBytes, std::byte{0});
      std::vector<std::byte> m;
      read_file(meta, m);
      segment_format::meta mt;
      FUZZ_CHECK(segment_format::decode_meta(m.data(), m.size(), meta, mt).ok(), "setup: meta");
      segment_format::encode_header(f.bytes.data(), {mt.log2_capacity, last_seg + 1, mt.log_id});
      f.is_segment = true;
      f.seg_index = last_seg + 1;
      v3.files.push_back(std::move(f));
      std::sort(v3.files.begin(), v3.files.end(), [](auto& a, auto& b) { return a.name < b.name; });
    }
    w.variants.push_back(v3);
    variant v4 = v2;
    std::erase_if(v4.files, [&](const file_entry& f) { return f.name == log_files::segment_name(last_seg); });
    {
      // At that moment varve.ctl had committed no more than what the
      // segment before holds (a crash cannot have acknowledged the rest).
      uint64_t end = 0;
      for (const original_event& e : w.events)
        if ((e.position >> kLog2) < last_seg) end = std::max(end, e.end);
      if (file_entry* ctl = find_file(v4, log_files::kControlName)) {
        uint64_t durable;
        std::memcpy(&durable, ctl->bytes.data() + 128, 8);
        durable = std::min(durable, end);
        std::memcpy(ctl->bytes.data() + 64, &end, 8);
        std::memcpy(ctl->bytes.data() + 128, &durable, 8);
      }
    }
    w.variants.push_back(v4);

    // Re-derive the tail of each state from its bytes, and learn how many
    // events an undamaged recovery of it keeps (a self-test of the harness).
    for (size_t i = 0; i < w.variants.size(); ++i) {
      variant& v = w.variants[i];
      const std::string d = root + "/variant" + std::to_string(i);
      write_variant(v, meta, d);
      load_dir(d, v);
      v.clean_marker = i == 0;
      auto opened = event_log::open(d);
      FUZZ_CHECK(opened.ok(), "setup: state " + std::to_string(i) + " does not open: " + opened.error().to_string());
      read_outcome r = read_all(w, *opened.value(), "setup", w.events.size());
      FUZZ_CHECK(r.complete, "setup: state " + std::to_string(i) + " does not read: " + r.error);
      v.survivors = r.events;
      opened.value().reset();
      remove_tree(d);
    }
    FUZZ_CHECK(w.variants[0].survivors == w.events.size() && w.variants[1].survivors == w.events.size() &&
                   w.variants[2].survivors == w.events.size() && w.variants[3].survivors == w.events.size(),
               "setup: a crash state lost events");
    if (std::getenv("VARVE_FUZZ_VERBOSE")) {
      std::fprintf(stderr, "log_mutation_fuzzer: %zu events\n", w.events.size());
      for (size_t i = 0; i < w.variants.size(); ++i) {
        std::fprintf(stderr, "  state %zu (survivors %lu):", i, static_cast<unsigned long>(w.variants[i].survivors));
        for (size_t j = 0; j < w.variants[i].files.size(); ++j) {
          const file_entry& f = w.variants[i].files[j];
          std::fprintf(stderr, " [%zu]%s%s", j, f.name.c_str(), f.tail ? "(tail)" : "");
        }
        std::fprintf(stderr, "\n");
      }
    }
    // Keep the meta file next to the states.
    fsys::copy_file(meta, root + "/" + log_files::kMetaName);
    remove_tree(base);
    return wp;
  }();
  return *w;
}

// With VARVE_FUZZ_VERBOSE set, how often each path was taken is printed at
// exit: a harness whose strong checks never run would pass vacuously.
struct path_stats {
  uint64_t inputs = 0, open_failed = 0, opened = 0, strong = 0, ctl_repaired = 0, full_read = 0, read_failed = 0,
           lost_events = 0, reopened = 0;
  ~path_stats() {
    if (!std::getenv("VARVE_FUZZ_VERBOSE") || !inputs) return;
    std::fprintf(stderr,
                 "log_mutation_fuzzer paths: %lu inputs, open failed %lu, opened %lu (damage confined to "
                 "the tail %lu), repairs of a raised varve.ctl %lu, full reads %lu, read errors %lu, "
                 "recoveries that cut events %lu, reopens %lu\n",
                 (unsigned long)inputs, (unsigned long)open_failed, (unsigned long)opened, (unsigned long)strong,
                 (unsigned long)ctl_repaired,
                 (unsigned long)full_read, (unsigned long)read_failed, (unsigned long)lost_events,
                 (unsigned long)reopened);
  }
} g_stats;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  world& w = setup();
  ++g_stats.inputs;
  input_cursor in{data, size};
  const uint8_t setup_bits = in.u8();
  const uint8_t append_bits = in.u8();
  const size_t vi = (setup_bits & 7) % w.variants.size();
  variant v = w.variants[vi];  // a copy to damage

  // Apply the mutations, tracking what they touched.
  bool strong = true;  // damage confined to the tail's records, checkpoints, control block
  bool sealed_damage = false;
  uint64_t first_damage = ~uint64_t{0};  // logical position of the first damaged segment byte
  auto touch = [&](file_entry& f, uint64_t off, bool in_place) {
    if (!f.is_segment) return;
    first_damage = std::min(first_damage, (f.seg_index << kLog2) + off);
    if (!f.tail) sealed_damage = true;
    if (!f.tail || !in_place || off < 64) strong = false;
  };
  int ops = 0;
  while (!in.empty() && ops++ < 64) {
    const uint8_t kind = in.u8() % 8;
    const uint8_t fsel = in.u8();
    const uint16_t off16 = in.u16();
    const uint16_t len16 = in.u16();
    const uint8_t fsel2 = in.u8();
    const uint8_t value = in.u8();
    if (v.files.empty()) break;
    file_entry& f = v.files[fsel % v.files.size()];
    std::vector<std::byte>& b = f.bytes;
    if (b.empty() && kind != 6) continue;
    const size_t off = b.empty() ? 0 : off16 % b.size();
    const size_t len = std::min<size_t>(len16, b.size() - off);
    switch (kind) {
      case 0:
        b[off] ^= std::byte{value ? value : uint8_t{0x80}};
        touch(f, off, true);
        break;
      case 1:
        if (!len) break;
        std::fill(b.begin() + off, b.begin() + off + len, std::byte{0});
        touch(f, off, true);
        break;
      case 2:
        b.resize(off);
        touch(f, off, false);
        break;
      case 3: {
        file_entry& g = v.files[fsel2 % v.files.size()];
        if (g.bytes.empty() || !len) break;
        const size_t dst = (static_cast<size_t>(value) << 8 | (len16 & 0xff)) % g.bytes.size();
        const size_t n = std::min(len, g.bytes.size() - dst);
        std::vector<std::byte> tmp(b.begin() + off, b.begin() + off + n);
        std::copy(tmp.begin(), tmp.end(), g.bytes.begin() + dst);
        touch(g, dst, true);
        break;
      }
      case 4: {
        const size_t dst = off + len;
        if (!len || dst >= b.size()) break;
        const size_t n = std::min(len, b.size() - dst);
        std::vector<std::byte> tmp(b.begin() + off, b.begin() + off + n);
        std::copy(tmp.begin(), tmp.end(), b.begin() + dst);
        touch(f, dst, true);
        break;
      }
      case 5: {
        std::string_view lit = in.bytes(len16 % 33);
        const size_t n = std::min(lit.size(), b.size() - off);
        if (!n) break;
        std::memcpy(b.data() + off, lit.data(), n);
        touch(f, off, true);
        break;
      }
      case 6:
        touch(f, 0, false);
        if (f.is_segment) sealed_damage = true;  // a missing file is never "tail only"
        b.clear();
        f.name.clear();  // deleted
        break;
      case 7:
        if (!len) break;
        std::fill(b.begin() + off, b.begin() + off + len, std::byte{value});
        touch(f, off, true);
        break;
    }
    std::erase_if(v.files, [](const file_entry& e) { return e.name.empty(); });
  }

  const std::string root = scratch_root() + "/mutation";
  write_variant(v, root + "/" + log_files::kMetaName, w.work);

  // verify_log on the damaged directory: must not crash; no other promise.
  (void)verify_log(w.work);

  // A reboot, when asked: recovery then trusts only the durable position.
  struct boot_guard {
    std::array<uint8_t, 16> saved = current_boot_id();
    explicit boot_guard(bool reboot, uint64_t salt) {
      if (!reboot) return;
      std::array<uint8_t, 16> id;
      for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>((salt >> (i % 8)) | 1);
      test_hooks::set_boot_id(id);
    }
    ~boot_guard() { test_hooks::set_boot_id(saved); }
  } boot(setup_bits & 0x40, size + 7);
  uint64_t log_id = 0;
  {
    segment_format::meta m;
    if (meta_file::read(*posix_file_system(), w.work, m)) log_id = m.log_id;
  }
  const ctl_state ctl = control_block::read_state(*posix_file_system(), w.work, log_id);
  uint64_t guard = detail::guard_from(ctl, "varve.ctl").position;

  log_options o;
  o.segment_bytes = kSegBytes;
  o.recovery = recovery_mode::torn_tail;
  o.prepare_next_segment = (setup_bits & 0x08) != 0;
  o.mode = (setup_bits & 0x20) ? durability::group : durability::none;
  // Damage that raised varve.ctl's position words past what the undamaged
  // block held. Those words are stored on every append and carry no checksum,
  // so recovery cannot tell a raised word from acknowledged events that are
  // missing: it must refuse, naming varve.ctl, and the explicit repair must
  // then bring the log back without losing anything below the true guard.
  uint64_t true_guard = guard;
  {
    const file_entry* before = nullptr;
    for (const file_entry& f : w.variants[vi].files)
      if (f.name == log_files::kControlName) before = &f;
    if (before && before->bytes.size() >= 136)
      true_guard = coding::get_u64(before->bytes.data() + ((setup_bits & 0x40) ? 128 : 64));
  }
  const bool guard_raised = guard > true_guard;
  auto opened = event_log::open(w.work, o);
  // (Damage below the true guard is refused whatever the block says.)
  if (!opened && guard_raised && first_damage >= true_guard) {
    FUZZ_CHECK(!strong || (opened.error().code() == errc::corruption &&
                           opened.error().message().find(log_files::kControlName) != std::string::npos),
               "a raised position in varve.ctl was refused without naming it: " + opened.error().to_string());
    auto repaired = repair_log(w.work);
    FUZZ_CHECK(repaired.ok() || !strong,
               "repair after a raised varve.ctl position failed: " + repaired.error().to_string());
    if (repaired.ok()) {
      ++g_stats.ctl_repaired;
      opened = event_log::open(w.work, o);
      FUZZ_CHECK(opened.ok() || !strong, "open after repairing a raised varve.ctl position failed: " +
                                             opened.error().to_string());
      guard = true_guard;  // what the repair must keep
    }
  }
  if (!opened) {
    FUZZ_CHECK(clean_open_error(opened.error().code()), "open failed uncleanly: " + opened.error().to_string());
    ++g_stats.open_failed;
    FUZZ_CHECK(!strong || first_damage < guard ||
                   (opened.error().code() == errc::io_error && ctl.poisoned),
               "open failed although only the unsealed tail past the guard (" + std::to_string(guard) +
                   "), checkpoints or control block were damaged: " + opened.error().to_string());
    remove_tree(w.work);
    return 0;
  }
  std::unique_ptr<event_log> log = std::move(opened.value());

  // Invariants 2-5.
  read_outcome r = read_all(w, *log, "after recovery", w.events.size());
  // Invariant 8: the bulk reads and the subscriptions agree with next().
  const size_t read_batch = (setup_bits & 0x80) ? 64 : 1 + ((append_bits >> 5) & 3) * 3;
  check_read_paths_agree(*log, read_batch, "after recovery");
  ++g_stats.opened;
  g_stats.strong += strong;
  g_stats.full_read += r.complete;
  g_stats.read_failed += !r.complete;
  g_stats.lost_events += r.complete && r.events < v.survivors;
  if (!r.complete)
    FUZZ_CHECK(sealed_damage, "read failed although no sealed segment was damaged: " + r.error);
  const uint64_t recovered = log->next_sequence().value;
  FUZZ_CHECK(recovered <= w.events.size(), "recovery invented events");

  // Invariant 0: nothing at or below the guard was cut.
  if (r.complete) {
    uint64_t below = 0;
    for (size_t i = 0; i < w.events.size() && i < v.survivors; ++i)
      if (w.events[i].end <= guard && w.events[i].end_flag) below = i + 1;
    FUZZ_CHECK(r.events >= below, "recovery cut " + std::to_string(below - r.events) +
                                      " events below the guard " + std::to_string(guard));
  }

  // Invariant 6: complete batches before the first damaged byte survive.
  if (r.complete) {
    uint64_t must = 0;
    for (size_t i = 0; i < w.events.size() && i < v.survivors; ++i) {
      if (w.events[i].end > first_damage) break;
      if (w.events[i].end_flag) must = i + 1;
    }
    FUZZ_CHECK(r.events >= must, "lost " + std::to_string(must - r.events) +
                                     " events that lie before the first damaged byte (read " +
                                     std::to_string(r.events) + ", expected at least " +
                                     std::to_string(must) + ")");
  }

  // Invariant 7: an append at the recovered end, with the stream's version
  // as the recovered prefix has it.
  const size_t si = (append_bits & 31) % (kStreams + 1);
  const size_t count = 1 + std::min(2, (append_bits >> 5) & 3);
  std::string new_stream = "fresh-stream";
  const stream_id sid = si < kStreams ? stream_of(w, si) : stream_id(std::string_view(new_stream));
  const std::string key(sid.bytes());
  uint64_t expect_version = 0;
  uint64_t expect_prev = ~uint64_t{0};
  for (uint64_t i = 0; i < recovered; ++i)
    if (w.events[i].stream == key) {
      expect_version = w.events[i].version;
      expect_prev = w.events[i].position;
    }
  FUZZ_CHECK(log->version_of(sid) == expect_version,
             "version_of after recovery is " + std::to_string(log->version_of(sid)) + ", the recovered prefix says " +
                 std::to_string(expect_version));
  std::vector<std::string> texts;
  std::vector<event_data> batch;
  for (size_t i = 0; i < count; ++i) texts.push_back("{\"after\":" + std::to_string(i) + "}");
  for (size_t i = 0; i < count; ++i)
    batch.push_back({.type = 99, .payload = event_data::bytes(texts[i]), .content = content_type::json});
  auto appended = log->append(sid, expected_version::exact(expect_version), batch);
  FUZZ_CHECK(appended.ok(), "append after recovery failed: " + appended.error().to_string());
  const append_result ar = appended.value();
  FUZZ_CHECK(ar.first_sequence.value == recovered && ar.first_version == expect_version + 1,
             "the append did not continue the recovered log");
  auto check_appended = [&](log_reader& rd, const char* when) {
    event_view ev;
    uint64_t prev = expect_prev;
    for (size_t i = 0; i < count; ++i) {
      auto more = rd.next(ev);
      FUZZ_CHECK(more.ok() && more.value(), std::string(when) + ": appended event does not read back: " +
                                                (more.ok() ? "end of log" : more.error().to_string()));
      const std::string_view p(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size());
      FUZZ_CHECK(ev.stream == key && ev.version == expect_version + 1 + i &&
                     ev.sequence.value == recovered + i && ev.previous.value == prev && p == texts[i] &&
                     ev.batch_begin == (i == 0) && ev.batch_end == (i + 1 == count),
                 std::string(when) + ": appended event reads back differently");
      prev = ev.position.value;
    }
    auto more = rd.next(ev);
    FUZZ_CHECK(more.ok() && !more.value(), std::string(when) + ": something follows the appended batch");
  };
  {
    log_reader rd = log->read(ar.first);
    check_appended(rd, "after append");
  }

  if (setup_bits & 0x10) {
    ++g_stats.reopened;
    FUZZ_CHECK(log->close().ok(), "close after recovery and append failed");
    log.reset();
    auto rep = verify_log(w.work);
    FUZZ_CHECK(rep.ok(), "verify_log after recovery: " + rep.error().to_string());
    if (strong && !v.clean_marker)
      FUZZ_CHECK(rep.value().first_problem.ok(),
                 "verify_log finds a problem in a recovered log: " + rep.value().first_problem.to_string());
    auto again = event_log::open(w.work, o);
    FUZZ_CHECK(again.ok() || sealed_damage, "reopen failed: " + again.error().to_string());
    if (again.ok()) {
      read_outcome r2 = read_all(w, *again.value(), "after reopen", recovered);
      check_read_paths_agree(*again.value(), read_batch, "after reopen");
      if (r2.complete)
        FUZZ_CHECK(r2.events == recovered + count, "reopen reads " + std::to_string(r2.events) +
                                                       " events, expected " + std::to_string(recovered + count));
      else
        FUZZ_CHECK(sealed_damage, "read after reopen failed: " + r2.error);
      log_reader rd = again.value()->read(ar.first);
      check_appended(rd, "after reopen");
    }
  }
  log.reset();
  remove_tree(w.work);
  return 0;
}
