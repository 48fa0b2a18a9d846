// `varve replay DIR --projection P`: the partitioned parallel replay
// (varve/replay.h) into one of two built-in projections, with progress,
// checkpoints and a clean stop on Ctrl-C.
#include "tools/cli/common.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <span>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "varve/columnar.h"
#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace varve::tools;

struct replay_args {
  std::string dir;
  std::string projection;
  std::optional<uint64_t> threads, partitions, from_position, to_position, until, checkpoint_every, top;
  std::optional<std::string> io, checkpoint;
  filter_flags filter;
  bool resume = false;
  bool merge = false;  // --merge: replay::run_merged, one state
  bool json = false;
  std::string upcasters;  // --upcasters FILE
};

// Opens a projection's state snapshot, checking it has the expected columns.
result<columnar::decoder> open_state(std::span<const std::byte> in, const columnar::schema& s) {
  auto dec = columnar::decoder::open(in);
  if (!dec) return dec.error();
  if (status st = dec->expect(s); !st) return st;
  return dec;
}

// The two projections the CLI offers; both can checkpoint (save/load), and
// both add up over consecutive ranges (merge: varve replay --merge).
struct count_by_type {
  std::vector<uint64_t> dense;                    // types below 4096
  std::unordered_map<uint32_t, uint64_t> sparse;  // the rest
  // Over refs: the type is the one field it reads, loaded when asked.
  void apply(const event_ref& e) {
    const uint32_t type = e.type();
    if (type < 4096) {
      if (dense.size() <= type) dense.resize(type + 1);
      ++dense[type];
    } else {
      ++sparse[type];
    }
  }
  std::map<uint32_t, uint64_t> counts() const {
    std::map<uint32_t, uint64_t> out(sparse.begin(), sparse.end());
    for (uint32_t t = 0; t < dense.size(); ++t)
      if (dense[t]) out[t] += dense[t];
    return out;
  }
  // State snapshots use the columnar codec (varve/columnar.h): checksummed
  // per block, validated before anything is trusted, and recording the
  // position the state reflects.
  static const columnar::schema& columns() {
    static const columnar::schema s({{"type", columnar::column_type::u32},
                                     {"count", columnar::column_type::u64}});
    return s;
  }
  status save(std::string& out, position at) const {
    std::vector<uint32_t> types;
    std::vector<uint64_t> ns;
    for (const auto& [t, n] : counts()) {
      types.push_back(t);
      ns.push_back(n);
    }
    columnar::encoder enc(columns());
    enc.add_u32(0, types);
    enc.add_u64(1, ns);
    return enc.finish_into(out, at);
  }
  status load(std::span<const std::byte> in) {
    auto dec = open_state(in, columns());
    if (!dec) return dec.error();
    std::vector<uint32_t> types;
    std::vector<uint64_t> ns;
    if (status st = dec->read_u32(0, types); !st) return st;
    if (status st = dec->read_u64(1, ns); !st) return st;
    if (types.size() != ns.size()) return status(errc::corruption, "count-by-type state: column lengths differ");
    for (size_t i = 0; i < types.size(); ++i) apply_count(types[i], ns[i]);
    return {};
  }
  void apply_count(uint32_t t, uint64_t n) {
    if (t < 4096) {
      if (dense.size() <= t) dense.resize(t + 1);
      dense[t] += n;
    } else {
      sparse[t] += n;
    }
  }
  void merge(count_by_type&& later) {
    if (dense.size() < later.dense.size()) dense.resize(later.dense.size());
    for (size_t t = 0; t < later.dense.size(); ++t) dense[t] += later.dense[t];
    for (const auto& [t, n] : later.sparse) sparse[t] += n;
  }
};

struct stream_totals {
  uint64_t events = 0, bytes = 0;
  bool is_integer = false;
};
struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct bytes_by_stream {
  std::unordered_map<std::string, stream_totals, string_hash, std::equal_to<>> streams;
  void apply(const event_ref& e) {
    const std::string_view stream = e.stream();
    auto it = streams.find(stream);  // no allocation for a stream seen before
    if (it == streams.end()) it = streams.emplace(std::string(stream), stream_totals{}).first;
    it->second.events += 1;
    it->second.bytes += e.payload().size();
    it->second.is_integer = e.stream_is_integer();
  }
  static const columnar::schema& columns() {
    static const columnar::schema s({{"stream", columnar::column_type::bytes},
                                     {"integer", columnar::column_type::u32},
                                     {"events", columnar::column_type::u64},
                                     {"bytes", columnar::column_type::u64}});
    return s;
  }
  status save(std::string& out, position at) const {
    std::vector<std::string_view> ids;
    std::vector<uint32_t> ints;
    std::vector<uint64_t> events, bytes;
    for (const auto& [k, t] : streams) {
      ids.push_back(k);
      ints.push_back(t.is_integer ? 1 : 0);
      events.push_back(t.events);
      bytes.push_back(t.bytes);
    }
    columnar::encoder enc(columns());
    enc.add_bytes(0, ids);
    enc.add_u32(1, ints);
    enc.add_u64(2, events);
    enc.add_u64(3, bytes);
    return enc.finish_into(out, at);
  }
  status load(std::span<const std::byte> in) {
    auto dec = open_state(in, columns());
    if (!dec) return dec.error();
    std::vector<std::string> ids;
    std::vector<uint32_t> ints;
    std::vector<uint64_t> events, bytes;
    if (status st = dec->read_bytes(0, ids); !st) return st;
    if (status st = dec->read_u32(1, ints); !st) return st;
    if (status st = dec->read_u64(2, events); !st) return st;
    if (status st = dec->read_u64(3, bytes); !st) return st;
    streams.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i)
      streams[std::move(ids[i])] = stream_totals{events[i], bytes[i], ints[i] != 0};
    return {};
  }
  void merge(bytes_by_stream&& later) {
    for (auto& [k, t] : later.streams) {
      auto [it, fresh] = streams.try_emplace(k, t);
      if (fresh) continue;
      it->second.events += t.events;
      it->second.bytes += t.bytes;
      it->second.is_integer = t.is_integer;
    }
  }
};

// SIGINT/SIGTERM during a replay: stop cleanly (and checkpoint, if asked).
replay_cancel* g_replay_cancel = nullptr;
extern "C" void on_replay_signal(int) {
  if (g_replay_cancel) g_replay_cancel->cancel();
}

// "\r[#####-----]  45.2%  12.3 M events  3.4 M events/s" on a terminal;
// a plain line every few seconds otherwise (logs, pipes).
class progress_printer {
 public:
  progress_printer() : tty_(::isatty(STDERR_FILENO) == 1) {}
  void operator()(const replay_progress& p) {
    const double span = static_cast<double>(p.to.value - p.from.value);
    const double done = span > 0 ? static_cast<double>(p.reached.value - p.from.value) / span : 1.0;
    const double rate = p.seconds > 0 ? static_cast<double>(p.events_applied) / p.seconds : 0;
    if (tty_) {
      char bar[31];
      const int fill = static_cast<int>(done * 30);
      for (int i = 0; i < 30; ++i) bar[i] = i < fill ? '#' : '-';
      bar[30] = 0;
      std::fprintf(stderr, "\r[%s] %5.1f%%  %.2f M events  %.2f M events/s ", bar, 100 * done,
                   static_cast<double>(p.events_applied) / 1e6, rate / 1e6);
      dirty_ = true;
    } else if (p.seconds - last_ >= 2.0) {
      last_ = p.seconds;
      std::fprintf(stderr, "varve: replay at position %" PRIu64 " of %" PRIu64 " (%.1f%%), %" PRIu64
                           " events, %.0f events/s\n",
                   p.reached.value, p.to.value, 100 * done, p.events_applied, rate);
    }
  }
  void finish() {
    if (dirty_) std::fprintf(stderr, "\n");
  }

 private:
  bool tty_;
  bool dirty_ = false;
  double last_ = 0;
};

int cmd_replay(const replay_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  const uint64_t threads = a.threads.value_or(0), partitions = a.partitions.value_or(0);
  const uint64_t from = a.from_position.value_or(0), every = a.checkpoint_every.value_or(0);
  const uint64_t top = a.top.value_or(20);
  if (a.threads && (threads == 0 || threads > 1024)) return usage_error("--threads: 1 to 1024");
  if (a.partitions && (partitions == 0 || partitions > (1u << 20)))
    return usage_error("--partitions: 1 to 1048576");
  if (a.to_position && a.until) return usage_error("--to-position and --until exclude each other");
  if (a.merge && a.partitions) return usage_error("--merge replays one state: no --partitions");
  if ((a.resume || a.checkpoint_every) && !a.checkpoint)
    return usage_error("--resume and --checkpoint-every need --checkpoint NAME");
  if (a.checkpoint && (a.checkpoint->empty() || a.checkpoint->find('/') != std::string::npos))
    return usage_error("--checkpoint: a name, not a path (it is kept in DIR/projections/)");
  io_backend io = io_backend::automatic;
  if (a.io) {
    auto b = parse_io_backend(*a.io);
    if (!b) return usage_error("--io: \"" + *a.io + "\" is not one of auto, uring, mmap, pread");
    io = *b;
  }

  auto opened = event_log::open_read_only(a.dir, cli_log_options());
  if (!opened) return fail_open(opened.error(), a.dir);
  if (auto rc = use_upcasters(**opened, a.upcasters, a.dir)) return *rc;
  const event_log& log = **opened;
  event_filter filter;
  if (auto rc = make_filter(a.filter, a.dir, filter)) return *rc;

  replay_cancel cancel;
  g_replay_cancel = &cancel;
  on_stop_signals(on_replay_signal);

  progress_printer progress;
  replay r(log);
  r.from(position{from}).partitions(static_cast<uint32_t>(partitions))
      .threads(static_cast<uint32_t>(threads)).io(io).filter(filter).cancel_with(cancel)
      .on_progress([&progress](const replay_progress& p) { progress(p); });
  if (a.to_position) r.to(position{*a.to_position});
  if (a.until) r.until(*a.until);
  std::optional<checkpoint_store> store;
  if (a.checkpoint) {
    store.emplace(a.dir + "/projections", *a.checkpoint);
    r.checkpoint(*store, every).resume(a.resume);
  }

  auto report = [&](const detail::replay_summary& s, nlohmann::ordered_json result) {
    progress.finish();
    for (const status& w : s.warnings)
      warn("skipped a damaged checkpoint: " + w.to_string());
    const double rate = s.seconds > 0 ? static_cast<double>(s.events_applied) / s.seconds : 0;
    if (a.json) {
      nlohmann::ordered_json j;
      j["projection"] = a.projection;
      j["from"] = s.from.value;
      j["to"] = s.to.value;
      j["reached"] = s.reached.value;
      j["events"] = s.events_applied;
      j["events_filtered_out"] = s.events_skipped;
      j["segments_skipped"] = s.segments_skipped;
      j["bytes"] = s.bytes_read;
      j["seconds"] = s.seconds;
      j["events_per_second"] = rate;
      j["threads"] = s.threads;
      j["partitions"] = s.partitions;
      j["io"] = to_string(s.io);
      j["checkpoints"] = s.checkpoints;
      j["warnings"] = nlohmann::ordered_json::array();
      for (const status& w : s.warnings) j["warnings"].push_back(w.to_string());
      j["error"] = s.error.ok() ? nlohmann::ordered_json() : nlohmann::ordered_json(s.error.to_string());
      j["result"] = std::move(result);
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::fprintf(stderr,
                   "varve: replayed %" PRIu64 " events (%s) in %.3f s: %.0f events/s, %u threads, "
                   "%u partitions, io %s%s\n",
                   s.events_applied, human_bytes(s.bytes_read).c_str(), s.seconds, rate, s.threads,
                   s.partitions, to_string(s.io),
                   s.segments_skipped ? (", " + std::to_string(s.segments_skipped) +
                                         " segments skipped by the filter").c_str()
                                      : "");
    }
    if (s.error.ok()) return kExitOk;
    // A position that names no record is the command line's; damage met on
    // the way is the log's (a missing segment file included).
    const status stopped(s.error.code(), "replay stopped at position " + std::to_string(s.reached.value) +
                                             ": " + s.error.to_string());
    if (s.error.code() == errc::invalid_argument) return usage_error(stopped.message());
    return fail_reading(stopped);
  };

  type_names names(a.dir);
  if (a.projection == "count-by-type") {
    auto res = a.merge ? r.run_merged([] { return count_by_type{}; }) : r.run([](uint32_t) { return count_by_type{}; });
    std::map<uint32_t, uint64_t> total;
    for (const auto& p : res.states)
      for (const auto& [t, n] : p.counts()) total[t] += n;
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const auto& [t, n] : total) {
      std::string name(names.json_for(t));
      if (!name.empty() && name[0] == '"') name = nlohmann::json::parse(name).get<std::string>();
      j[name] = n;
      if (!a.json) std::printf("%-24s %" PRIu64 "\n", name.c_str(), n);
    }
    return report(res, std::move(j));
  }
  auto res = a.merge ? r.run_merged([] { return bytes_by_stream{}; }) : r.run([](uint32_t) { return bytes_by_stream{}; });
  std::vector<std::pair<const std::string*, const stream_totals*>> all;
  uint64_t total_bytes = 0;
  for (const auto& p : res.states)
    for (const auto& [k, t] : p.streams) {
      all.emplace_back(&k, &t);
      total_bytes += t.bytes;
    }
  std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
    return x.second->bytes != y.second->bytes ? x.second->bytes > y.second->bytes : *x.first < *y.first;
  });
  auto show = [](const std::string& k, bool is_int) {
    if (is_int && k.size() == 8) {
      uint64_t v = 0;
      for (char c : k) v = (v << 8) | static_cast<uint8_t>(c);
      return std::to_string(v);
    }
    return k;
  };
  nlohmann::ordered_json j;
  j["streams"] = all.size();
  j["payload_bytes"] = total_bytes;
  j["top"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < all.size() && i < top; ++i) {
    nlohmann::ordered_json s;
    s["stream"] = show(*all[i].first, all[i].second->is_integer);
    s["events"] = all[i].second->events;
    s["bytes"] = all[i].second->bytes;
    j["top"].push_back(std::move(s));
    if (!a.json)
      std::printf("%-40s %12" PRIu64 " bytes %10" PRIu64 " events\n",
                  nlohmann::json(show(*all[i].first, all[i].second->is_integer))
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str(),
                  all[i].second->bytes, all[i].second->events);
  }
  if (!a.json)
    std::printf("%zu streams, %" PRIu64 " payload bytes\n", all.size(), total_bytes);
  return report(res, std::move(j));
}

}  // namespace

void add_replay(CLI::App& app, command_list& out) {
  auto a = std::make_shared<replay_args>();
  auto* rp = app.add_subcommand(
      "replay", "Rebuild a projection from the log on several threads (read-only; works beside a live writer)");
  rp->add_option("DIR", a->dir, "Log directory")->required();
  rp->add_option("--projection", a->projection, "count-by-type | bytes-by-stream")
      ->required()
      ->check(CLI::IsMember({"count-by-type", "bytes-by-stream"}));
  add_uint(*rp, "--threads", a->threads, "Threads, the calling one included (default: all cores)");
  add_uint(*rp, "--partitions", a->partitions, "Partitions (streams are hashed onto them; default 4 x threads)");
  add_uint(*rp, "--from-position", a->from_position, "Start at this record position", "POSITION");
  add_uint(*rp, "--to-position", a->to_position, "Stop before this position", "POSITION");
  add_time(*rp, "--until", a->until,
           "State as of a time: stop at the first event at or after it (2026-11-22T10:00:00Z, or ns "
           "since the epoch)");
  rp->add_option("--io", a->io, "auto | uring | mmap | pread (default: VARVE_IO, else auto)")->type_name("IO");
  add_filter_flags(*rp, a->filter);
  rp->add_option("--checkpoint,--snapshot", a->checkpoint,
                 "Save the projection's state with its position (a state snapshot) in "
                 "DIR/projections/NAME.<generation>.ckpt; the newest 2 are kept");
  add_uint(*rp, "--checkpoint-every,--snapshot-every", a->checkpoint_every,
           "With --checkpoint: also every N events (default: only at the end or on Ctrl-C)");
  rp->add_flag("--resume,--from-snapshot", a->resume,
               "With --checkpoint: continue from the newest valid state snapshot (a damaged "
               "one is reported and skipped)");
  rp->add_flag("--merge", a->merge,
               "Fold whole ranges on each thread and merge their states in log order instead of partitioning "
               "by stream (both projections add up; faster on several threads; checkpoints hold one state)");
  add_uint(*rp, "--top", a->top, "bytes-by-stream: how many streams to list (default 20)");
  add_json_flag(*rp, a->json, "Print the figures and the result as one JSON object");
  add_upcasters_flag(*rp, a->upcasters);
  out.push_back({rp, [a] { return cmd_replay(*a); }});
}

}  // namespace varve::cli
