// varve-codec-bench: the columnar snapshot codec (issue 5, docs/FORMAT.md 7c).
//
// Part 1, per column type, --rows values (default 10 M, well past the caches):
//   u32 ids      sorted, gaps of 1..4               (delta, a few bits)
//   u64 random   full 64-bit random                 (incompressible: width 64)
//   i64 walk     a random walk with steps of +-1000  (delta, 11 bits)
//   f64          uniform doubles                    (stored raw)
//   bytes        names of 0..32 random letters      (packed end offsets + values)
// encode (encoder -> bytes) and decode (decoder::open, checksums included, ->
// the caller's vector) in GB/s of decoded bytes, against memcpy of the same
// decoded bytes between two warm buffers in the same run; the compression
// ratio (decoded bytes / encoded bytes). Median of --reps. Decode is also
// shown without the checksum pass (decoder_options::verify_checksums = false)
// to separate validation from decoding.
//
// Part 2, "load a projection from its snapshot vs rebuild it by replay": a log
// of --events events over --aggregates integer streams (the first
// `aggregates` events touch every aggregate once, so the state has one row
// per aggregate; the rest are uniform), 16-byte payloads (an amount and a
// score). The projection keeps five dense columns per aggregate. Times:
//   replay   varve::replay(log).threads(1).partitions(1) from position 0
//   save     encoding the state and writing the file (index_file::write)
//   load     decoder::open_file (read from the page cache) + decoding every
//            column into a fresh state
// and the ratio replay / load. Both warm (the log and the file in the page cache).
//
// Set VARVE_COLUMNAR_KERNELS=sse2 to measure the baseline kernels instead of AVX2.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_common.h"
#include "varve/columnar.h"
#include "varve/varve.h"

namespace vb = varve_bench;
using namespace varve;
using namespace varve::columnar;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "varve-codec-bench: %s\n", what.c_str());
  std::exit(1);
}

template <class F>
double median_seconds(int reps, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double t0 = vb::now_seconds();
    f();
    t.push_back(vb::now_seconds() - t0);
  }
  return vb::median(t);
}

volatile uint64_t g_sink;

struct codec_row {
  std::string name;
  double raw_bytes, encoded_bytes, enc_s, dec_s, memcpy_s, dec_nock_s = 0;
};

void print_row(const codec_row& r) {
  const double gb = r.raw_bytes / 1e9;
  std::printf("%-12s %8.1f MB  ratio %5.2fx  encode %6.2f GB/s  decode %6.2f GB/s  memcpy %6.2f GB/s  "
              "decode/memcpy %4.0f%%  (without the XXH3 pass %6.2f GB/s, %4.0f%%)\n",
              r.name.c_str(), r.raw_bytes / 1e6, r.raw_bytes / r.encoded_bytes, gb / r.enc_s, gb / r.dec_s,
              gb / r.memcpy_s, 100.0 * r.memcpy_s / r.dec_s, gb / r.dec_nock_s, 100.0 * r.memcpy_s / r.dec_nock_s);
}

// Encodes one column of `T`, decodes it back (checked equal once), and times
// memcpy of the decoded bytes.
template <class T, class Add, class Read>
codec_row run_fixed(const std::string& name, column_type t, const std::vector<T>& v, int reps, Add add,
                    Read read) {
  codec_row r{name, double(v.size() * sizeof(T)), 0, 0, 0, 0};
  const schema s({{"c", t}});
  std::string bytes;
  r.enc_s = median_seconds(reps, [&] {
    encoder enc(s);
    add(enc, v);
    bytes = enc.finish(position{1}).value();
  });
  r.encoded_bytes = double(bytes.size());
  std::vector<T> out(v.size()), dst(v.size());
  r.dec_s = median_seconds(reps, [&] {
    auto dec = decoder::open(bytes);
    if (!dec) die(dec.error().to_string());
    if (status st = read(dec.value(), out); !st.ok()) die(st.to_string());
  });
  r.dec_nock_s = median_seconds(reps, [&] {
    auto dec = decoder::open(bytes, {.verify_checksums = false});
    if (!dec) die(dec.error().to_string());
    if (status st = read(dec.value(), out); !st.ok()) die(st.to_string());
  });
  if (v.size() && std::memcmp(out.data(), v.data(), v.size() * sizeof(T)) != 0) die(name + ": round trip differs");
  r.memcpy_s = median_seconds(reps, [&] {
    std::memcpy(dst.data(), out.data(), v.size() * sizeof(T));
    g_sink = g_sink + static_cast<uint64_t>(dst[v.size() / 2]);
  });
  return r;
}

codec_row run_bytes(const std::vector<std::string>& v, int reps) {
  uint64_t total = 0;
  for (const auto& s : v) total += s.size();
  // Decoded: the values and an 8-byte offset each (what a caller needs to use them).
  codec_row r{"bytes", double(total + 8 * v.size()), 0, 0, 0, 0};
  const schema s({{"c", column_type::bytes}});
  std::string bytes;
  r.enc_s = median_seconds(reps, [&] {
    encoder enc(s);
    enc.add_bytes(0, v);
    bytes = enc.finish(position{1}).value();
  });
  r.encoded_bytes = double(bytes.size());
  std::vector<std::string_view> out;
  out.reserve(v.size());
  r.dec_s = median_seconds(reps, [&] {
    auto dec = decoder::open(bytes);
    if (!dec) die(dec.error().to_string());
    if (status st = dec->read_bytes(0, out); !st.ok()) die(st.to_string());
  });
  r.dec_nock_s = median_seconds(reps, [&] {
    auto dec = decoder::open(bytes, {.verify_checksums = false});
    if (!dec) die(dec.error().to_string());
    if (status st = dec->read_bytes(0, out); !st.ok()) die(st.to_string());
  });
  if (!std::equal(out.begin(), out.end(), v.begin(), v.end())) die("bytes: round trip differs");
  std::vector<char> src(total + 8 * v.size(), 'x'), dst(src.size());
  r.memcpy_s = median_seconds(reps, [&] {
    std::memcpy(dst.data(), src.data(), src.size());
    g_sink = g_sink + static_cast<uint64_t>(dst[src.size() / 2]);
  });
  return r;
}

// ---------------------------------------------------------------------------
// Part 2: the projection.

struct agg_state {
  std::vector<uint32_t> events;
  std::vector<uint64_t> version;
  std::vector<int64_t> balance;
  std::vector<double> score;
  std::vector<uint64_t> last_ns;
  explicit agg_state(uint64_t n = 0) : events(n), version(n), balance(n), score(n), last_ns(n) {}
  void apply(const event_view& e) {
    const uint64_t id = e.stream_as_u64();
    if (id >= events.size()) return;
    int64_t amount;
    double s;
    std::memcpy(&amount, e.payload.data(), 8);
    std::memcpy(&s, e.payload.data() + 8, 8);
    ++events[id];
    version[id] = e.version;
    balance[id] += amount;
    score[id] = 0.9 * score[id] + 0.1 * s;
    last_ns[id] = e.timestamp_ns;
  }
  bool operator==(const agg_state& o) const {
    return events == o.events && version == o.version && balance == o.balance && last_ns == o.last_ns &&
           std::memcmp(score.data(), o.score.data(), score.size() * 8) == 0;
  }
};

const schema kState({{"id", column_type::u64},
                     {"events", column_type::u32},
                     {"version", column_type::u64},
                     {"balance", column_type::i64},
                     {"score", column_type::f64},
                     {"last_ns", column_type::u64}});

void build_log(const std::string& dir, uint64_t events, uint64_t aggregates) {
  log_options o;
  o.segment_bytes = 256ull << 20;
  auto log = event_log::create(dir, o);
  if (!log) die("create " + dir + ": " + log.error().to_string());
  vb::splitmix64 rng(vb::kSeed);
  std::byte payload[16];
  for (uint64_t i = 0; i < events; ++i) {
    const uint64_t a = rng.next();
    const uint64_t agg = i < aggregates ? i : static_cast<uint64_t>((static_cast<unsigned __int128>(a) * aggregates) >> 64);
    const int64_t amount = static_cast<int64_t>(a % 2001) - 1000;
    const double score = static_cast<double>(a >> 11) * 0x1p-53;
    std::memcpy(payload, &amount, 8);
    std::memcpy(payload + 8, &score, 8);
    event_data e;
    e.type = 1;
    e.payload = std::span<const std::byte>(payload, 16);
    e.timestamp_ns = i + 1;
    auto r = log.value()->append(stream_id::from_u64(agg), expected_version::any(), e);
    if (!r) die("append: " + r.error().to_string());
  }
  if (auto st = log.value()->close(); !st) die("close: " + st.to_string());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"varve-codec-bench: columnar snapshot codec and snapshot load vs replay"};
  uint64_t rows = 10'000'000, events = 12'000'000, aggregates = 10'000'000;
  int reps = 5;
  bool skip_codec = false, skip_state = false;
  std::string root = vb::scratch_root();
  app.add_option("--rows", rows, "Values per column type (part 1)");
  app.add_option("--reps", reps, "Repetitions (median)");
  app.add_option("--events", events, "Events in the log (part 2)");
  app.add_option("--aggregates", aggregates, "Aggregates = state rows (part 2)");
  app.add_flag("--skip-codec", skip_codec, "Only part 2");
  app.add_flag("--skip-state", skip_state, "Only part 1");
  CLI11_PARSE(app, argc, argv);
  if (aggregates == 0 || events < aggregates) die("--events must be at least --aggregates (> 0)");

  std::printf("varve-codec-bench  %s  %s, %ld cores, %s, kernels %s\n", vb::utc_now_iso().c_str(),
              vb::cpu_model().c_str(), vb::online_cores(), vb::kernel_release().c_str(),
              std::string(simd_level()).c_str());

  if (!skip_codec) {
    std::mt19937_64 rng(vb::kSeed);
    std::vector<uint32_t> ids(rows);
    uint32_t acc = 0;
    for (auto& x : ids) x = acc += 1 + static_cast<uint32_t>(rng() % 4);
    std::vector<uint64_t> rnd(rows);
    for (auto& x : rnd) x = rng();
    std::vector<int64_t> walk(rows);
    int64_t w = 0;
    for (auto& x : walk) x = w += static_cast<int64_t>(rng() % 2001) - 1000;
    std::vector<double> dbl(rows);
    for (auto& x : dbl) x = static_cast<double>(rng() >> 11) * 0x1p-53 * 1e6;
    std::vector<std::string> names(rows);
    for (auto& s : names) {
      s.resize(rng() % 33);
      for (auto& c : s) c = static_cast<char>('a' + rng() % 26);
    }
    std::printf("\ncodec, %" PRIu64 " rows per column, median of %d (GB/s of decoded bytes)\n", rows, reps);
    print_row(run_fixed<uint32_t>("u32 ids", column_type::u32, ids, reps,
                                  [](encoder& e, const std::vector<uint32_t>& v) { e.add_u32(0, v); },
                                  [](const decoder& d, std::vector<uint32_t>& o) { return d.read_u32(0, o); }));
    print_row(run_fixed<uint64_t>("u64 random", column_type::u64, rnd, reps,
                                  [](encoder& e, const std::vector<uint64_t>& v) { e.add_u64(0, v); },
                                  [](const decoder& d, std::vector<uint64_t>& o) { return d.read_u64(0, o); }));
    print_row(run_fixed<int64_t>("i64 walk", column_type::i64, walk, reps,
                                 [](encoder& e, const std::vector<int64_t>& v) { e.add_i64(0, v); },
                                 [](const decoder& d, std::vector<int64_t>& o) { return d.read_i64(0, o); }));
    print_row(run_fixed<double>("f64", column_type::f64, dbl, reps,
                                [](encoder& e, const std::vector<double>& v) { e.add_f64(0, v); },
                                [](const decoder& d, std::vector<double>& o) { return d.read_f64(0, o); }));
    print_row(run_bytes(names, reps));
  }

  if (!skip_state) {
    const std::string dir = vb::make_scratch_dir(root, "varve-codec-bench");
    const std::string logdir = dir + "/log";
    std::printf("\nstate: %" PRIu64 " events over %" PRIu64 " aggregates (one row each)\n", events, aggregates);
    double t0 = vb::now_seconds();
    build_log(logdir, events, aggregates);
    std::printf("  log built in %.1f s (%.0f MB on disk)\n", vb::now_seconds() - t0,
                vb::bytes_on_disk(logdir) / 1e6);
    auto log = event_log::open(logdir);
    if (!log) die("open: " + log.error().to_string());
    // Warm the page cache with one replay first (both sides are timed warm).
    std::vector<double> replay_s;
    agg_state state;
    position reached;
    for (int r = 0; r < std::max(2, std::min(reps, 3)); ++r) {
      t0 = vb::now_seconds();
      auto res = replay(**log).threads(1).partitions(1).run([&](uint32_t) { return agg_state(aggregates); });
      const double dt = vb::now_seconds() - t0;
      if (!res) die("replay: " + res.error.to_string());
      if (r > 0) replay_s.push_back(dt);
      reached = res.reached;
      state = std::move(res.states[0]);
    }
    const double replay_t = vb::median(replay_s);

    auto fs = posix_file_system();
    std::vector<double> save_s;
    uint64_t file_bytes = 0;
    for (int r = 0; r < reps; ++r) {
      t0 = vb::now_seconds();
      encoder enc(kState);
      std::vector<uint64_t> ids(aggregates);
      for (uint64_t i = 0; i < aggregates; ++i) ids[i] = i;
      enc.add_u64(0, ids);
      enc.add_u32(1, state.events);
      enc.add_u64(2, state.version);
      enc.add_i64(3, state.balance);
      enc.add_f64(4, state.score);
      enc.add_u64(5, state.last_ns);
      if (status st = enc.write_file(*fs, dir, "state.col", reached, 1); !st.ok()) die(st.to_string());
      save_s.push_back(vb::now_seconds() - t0);
    }
    file_bytes = std::filesystem::file_size(dir + "/state.col");

    std::vector<double> load_s, decode_s;
    for (int r = 0; r < reps; ++r) {
      t0 = vb::now_seconds();
      auto dec = decoder::open_file(*fs, dir + "/state.col");
      if (!dec) die(dec.error().to_string());
      const double t1 = vb::now_seconds();
      if (status st = dec->expect(kState); !st.ok()) die(st.to_string());
      agg_state loaded;
      std::vector<uint64_t> ids;
      if (!dec->read_u64(0, ids).ok() || !dec->read_u32(1, loaded.events).ok() ||
          !dec->read_u64(2, loaded.version).ok() || !dec->read_i64(3, loaded.balance).ok() ||
          !dec->read_f64(4, loaded.score).ok() || !dec->read_u64(5, loaded.last_ns).ok())
        die("decode failed");
      const double t2 = vb::now_seconds();
      load_s.push_back(t2 - t0);
      decode_s.push_back(t2 - t1);
      if (r == 0 && (!(loaded == state) || dec->at() != reached)) die("loaded state differs from the replayed one");
    }
    // The same decode into vectors that are already sized and faulted in: the
    // codec alone, without the kernel's page faults (fresh memory costs both
    // sides alike: the replay's projection allocates its vectors too).
    std::vector<double> warm_s;
    {
      agg_state warm(aggregates);
      std::vector<uint64_t> ids(aggregates);
      for (int r = 0; r < reps; ++r) {
        t0 = vb::now_seconds();
        auto dec = decoder::open_file(*fs, dir + "/state.col");
        if (!dec || !dec->read_u64(0, ids).ok() || !dec->read_u32(1, warm.events).ok() ||
            !dec->read_u64(2, warm.version).ok() || !dec->read_i64(3, warm.balance).ok() ||
            !dec->read_f64(4, warm.score).ok() || !dec->read_u64(5, warm.last_ns).ok())
          die("decode failed");
        warm_s.push_back(vb::now_seconds() - t0);
      }
    }
    const double load_t = vb::median(load_s);
    const double raw = double(aggregates) * (8 + 4 + 8 + 8 + 8 + 8);
    std::printf("  replay (1 thread, warm)        %8.3f s  (%.2f M events/s)\n", replay_t, events / replay_t / 1e6);
    std::printf("  save snapshot (encode + write) %8.3f s  file %.1f MB, state %.1f MB in memory (%.2fx)\n",
                vb::median(save_s), file_bytes / 1e6, raw / 1e6, raw / file_bytes);
    std::printf("  load snapshot (read + decode)  %8.3f s  (decode alone %.3f s, %.2f GB/s)\n", load_t,
                vb::median(decode_s), raw / vb::median(decode_s) / 1e9);
    std::printf("  load into warm vectors         %8.3f s  (%.2f GB/s of state)\n", vb::median(warm_s),
                raw / vb::median(warm_s) / 1e9);
    std::printf("  replay / load                  %8.1fx  (warm vectors: %.1fx)\n", replay_t / load_t,
                replay_t / vb::median(warm_s));
    log->reset();
    vb::remove_tree(dir);
  }
  return 0;
}
