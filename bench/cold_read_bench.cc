// varve-cold-read: a full, validated pass over a log through chunk_reader on
// each io backend (uring, mmap, pread), from a cold page cache and warm, next
// to the disk's ceilings measured in the same run, after the same eviction:
// io_uring reads of the same bytes with O_DIRECT, `depth` in flight (the
// ratio's denominator: a ring reading cold files at the disk's pace, nothing
// validated) and O_DIRECT reads one at a time (what `dd if=SEG of=/dev/null
// bs=1M iflag=direct` does).
//
//   varve-cold-read [--gib 2] [--dir DIR] [--chunk-kib 1024] [--depth 4]
//                   [--reps 3] [--json FILE]
//
// "Cold": every segment file is fdatasync'ed, then dropped from the page cache
// with posix_fadvise(POSIX_FADV_DONTNEED) (no root needed, unlike
// drop_caches); what is still resident afterwards is measured with mincore()
// and reported. Dropping only works for pages nobody maps, so each pass opens
// the log read-only and closes it (unmapping its segments) before the next
// eviction. A host under the guest may still cache the disk: the ceiling goes
// through the same path, so compare ratios.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_common.h"
#include "engine/io/chunk_reader.h"
#include "engine/log_access.h"
#include "base/log_files.h"
#include "varve/varve.h"

namespace {

using namespace varve;
using namespace varve_bench;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "varve-cold-read: %s\n", what.c_str());
  std::exit(1);
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::vector<std::string> segment_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename());
  std::vector<std::string> out;
  for (uint64_t i : log_files::segment_indices(names))
    out.push_back(log_files::join(dir, log_files::segment_name(i)));
  return out;
}

// Writes ES-1 events (100-byte payloads, integer stream ids, 184-byte
// records) until the log holds `bytes`.
void build_log(const std::string& dir, uint64_t bytes, uint64_t segment_bytes) {
  log_options o;
  o.segment_bytes = segment_bytes;
  auto log = event_log::create(dir, o);
  if (!log) die(log.error().to_string());
  es1_stream gen(100'000);
  std::byte payload[kPayloadBytes];
  uint64_t i = 0;
  const double t0 = now_seconds();
  while (log.value()->committed_position().value < bytes) {
    uint32_t version = 0;
    const uint32_t agg = gen.next(version, payload);
    event_data e;
    e.type = version % 8;
    e.payload = std::span<const std::byte>(payload, kPayloadBytes);
    e.timestamp_ns = ++i;
    auto r = log.value()->append(stream_id::from_u64(agg), expected_version::any(), e);
    if (!r) die(r.error().to_string());
  }
  if (status s = log.value()->close(); !s) die(s.to_string());
  std::fprintf(stderr, "built %s: %" PRIu64 " events in %.1f s\n", dir.c_str(), i,
               now_seconds() - t0);
}

struct eviction {
  uint64_t file_bytes = 0;
  uint64_t resident_bytes = 0;
};

// Pages of `path` in the page cache, by mincore() on a mapping that is never touched.
uint64_t resident_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st{};
  uint64_t n = 0;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    void* p = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      const size_t pages = (st.st_size + 4095) / 4096;
      std::vector<unsigned char> v(pages);
      if (::mincore(p, st.st_size, v.data()) == 0)
        for (unsigned char c : v) n += (c & 1) ? 4096 : 0;
      ::munmap(p, st.st_size);
    }
  }
  ::close(fd);
  return n;
}

eviction evict(const std::vector<std::string>& files) {
  eviction e;
  for (const auto& f : files) {
    int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(f + ": " + std::strerror(errno));
    // Dirty pages cannot be dropped: write them back first.
    if (::fdatasync(fd) != 0) die(f + ": fdatasync: " + std::strerror(errno));
    if (int r = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); r != 0)
      die(f + ": posix_fadvise: " + std::strerror(r));
    struct stat st{};
    ::fstat(fd, &st);
    e.file_bytes += st.st_size;
    ::close(fd);
    e.resident_bytes += resident_bytes(f);
  }
  return e;
}

struct pass {
  double seconds = 0;
  double cpu = 0;
  uint64_t events = 0;
  uint64_t bytes_read = 0;
  std::string describe;
};

// Times body(log, pass) with the log opened read-only (checksums verified)
// and closed again: open to close, wall and CPU.
template <class Body>
pass timed_pass(const std::string& dir, Body&& body) {
  pass p;
  const double c0 = cpu_seconds();
  const double t0 = now_seconds();
  {
    log_options o;
    o.verify_checksums = true;
    auto log = event_log::open_read_only(dir, o);
    if (!log) die(log.error().to_string());
    body(*log.value(), p);
  }
  p.seconds = now_seconds() - t0;
  p.cpu = cpu_seconds() - c0;
  return p;
}

// One validated pass over the whole log through chunk_reader.
pass read_pass(const std::string& dir, io_backend b, uint32_t chunk_bytes, uint32_t depth,
               chunk_reader_options::direct_reads direct) {
  return timed_pass(dir, [&](const event_log& log, pass& p) {
    chunk_reader_options ro;
    ro.backend = b;
    ro.chunk_bytes = chunk_bytes;
    ro.depth = depth;
    ro.direct = direct;
    auto rd = chunk_reader::open(detail::log_access::shared(log), position{0}, position{~uint64_t{0}}, ro);
    if (!rd) die(rd.error().to_string());
    chunk c;
    while (true) {
      auto n = rd.value()->next(c);
      if (!n) die(n.error().to_string());
      if (!n.value()) break;
      p.events += c.events.size();
      rd.value()->release(c);
    }
    p.bytes_read = rd.value()->bytes_read();
    p.describe = rd.value()->describe();
  });
}

// One replay of the whole log (count by type: a trivial projection) on
// `threads` workers through backend `b`.
pass replay_pass(const std::string& dir, io_backend b, uint32_t chunk_bytes, uint32_t threads) {
  struct count_by_type {
    uint64_t n[8] = {};
    void apply(const event_view& e) { ++n[e.type & 7]; }
  };
  return timed_pass(dir, [&](const event_log& log, pass& p) {
    auto r = replay(log).io(b).threads(threads).chunk_bytes(chunk_bytes).run(
        [](uint32_t) { return count_by_type{}; });
    if (!r) die("replay: " + r.error.to_string());
    p.events = r.events_applied;
    p.bytes_read = r.bytes_read;
    p.describe = std::string(to_string(r.io)) + ", " + std::to_string(r.threads) + " threads";
  });
}

// The disk's ceiling: O_DIRECT reads of `chunk` bytes, one at a time, over
// the bytes the readers read (each segment whole; the last one up to the
// committed end, rounded to a page), like dd bs=1M iflag=direct.
pass direct_pass(const std::vector<std::string>& files, uint64_t last_bytes, uint32_t chunk) {
  pass p;
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, chunk) != 0) die("posix_memalign");
  const double c0 = cpu_seconds();
  const double t0 = now_seconds();
  for (size_t i = 0; i < files.size(); ++i) {
    int fd = ::open(files[i].c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) die(files[i] + ": O_DIRECT: " + std::strerror(errno));
    struct stat st{};
    ::fstat(fd, &st);
    uint64_t end = i + 1 == files.size() ? (last_bytes + 4095) / 4096 * 4096 : st.st_size;
    for (uint64_t off = 0; off < end;) {
      ssize_t n = ::pread(fd, buf, std::min<uint64_t>(chunk, end - off), off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) die(files[i] + ": read: " + std::strerror(errno));
      off += n;
      p.bytes_read += n;
    }
    ::close(fd);
  }
  p.seconds = now_seconds() - t0;
  p.cpu = cpu_seconds() - c0;
  std::free(buf);
  return p;
}

// The ceiling for cold reads through the ring (issue 17): io_uring reads of
// `chunk` bytes, O_DIRECT, `depth` of them in flight, into registered
// buffers from registered files, over the same bytes; nothing is looked at.
// What a reader of cold segments could reach if validating cost nothing.
pass uring_direct_pass(const std::vector<std::string>& files, uint64_t last_bytes, uint32_t chunk,
                       uint32_t depth) {
  pass p;
  depth = std::max<uint32_t>(depth, 1);
  void* mem = nullptr;
  if (posix_memalign(&mem, 4096, uint64_t{chunk} * depth) != 0) die("posix_memalign");
  auto* base = static_cast<std::byte*>(mem);
  io_uring ring{};
  unsigned entries = 2;
  while (entries < depth) entries *= 2;
  if (int r = io_uring_queue_init(entries, &ring, 0); r < 0) die(std::string("io_uring_queue_init: ") + std::strerror(-r));
  std::vector<iovec> iov(depth);
  for (uint32_t i = 0; i < depth; ++i) iov[i] = {base + uint64_t{chunk} * i, chunk};
  const bool fixed = io_uring_register_buffers(&ring, iov.data(), depth) == 0;
  const double c0 = cpu_seconds();
  const double t0 = now_seconds();
  // The reads in file order: (fd, offset, length), one file open at a time
  // would stall the queue at each file's end, so every file is opened first.
  std::vector<int> fds;
  std::vector<uint64_t> ends;
  for (size_t i = 0; i < files.size(); ++i) {
    int fd = ::open(files[i].c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) die(files[i] + ": O_DIRECT: " + std::strerror(errno));
    struct stat st{};
    ::fstat(fd, &st);
    fds.push_back(fd);
    ends.push_back(i + 1 == files.size() ? (last_bytes + 4095) / 4096 * 4096 : st.st_size);
  }
  // Reads then name a slot of the ring's file table, not a descriptor.
  const bool fixed_files = io_uring_register_files(&ring, fds.data(), static_cast<unsigned>(fds.size())) == 0;
  // Each buffer's read: a short one (never seen on a regular file, but
  // possible) is asked again for its rest.
  struct read_state {
    int fd = -1;
    uint64_t at = 0;
    uint32_t want = 0, done = 0;
  };
  std::vector<read_state> rs(depth);
  uint32_t inflight = 0;
  auto issue = [&](uint32_t b) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    std::byte* dst = static_cast<std::byte*>(iov[b].iov_base) + rs[b].done;
    const uint32_t n = rs[b].want - rs[b].done;
    if (fixed)
      io_uring_prep_read_fixed(sqe, rs[b].fd, dst, n, rs[b].at + rs[b].done, static_cast<int>(b));
    else
      io_uring_prep_read(sqe, rs[b].fd, dst, n, rs[b].at + rs[b].done);
    if (fixed_files) io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
    io_uring_sqe_set_data64(sqe, b);
    ++inflight;
  };
  std::vector<uint32_t> free_bufs;
  for (uint32_t i = 0; i < depth; ++i) free_bufs.push_back(i);
  size_t file = 0;
  uint64_t off = 0;
  while (true) {
    while (!free_bufs.empty() && file < files.size()) {
      if (off >= ends[file]) {
        ++file;
        off = 0;
        continue;
      }
      const uint32_t b = free_bufs.back();
      free_bufs.pop_back();
      rs[b] = {fixed_files ? static_cast<int>(file) : fds[file], off, static_cast<uint32_t>(std::min<uint64_t>(chunk, ends[file] - off)), 0};
      issue(b);
      off += rs[b].want;
    }
    if (inflight == 0) break;
    io_uring_submit(&ring);
    io_uring_cqe* cqe = nullptr;
    if (int r = io_uring_wait_cqe(&ring, &cqe); r < 0) {
      if (r == -EINTR) continue;
      die(std::string("io_uring_wait_cqe: ") + std::strerror(-r));
    }
    const uint32_t b = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
    const int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    --inflight;
    if (res <= 0) die(std::string("io_uring O_DIRECT read: ") + (res < 0 ? std::strerror(-res) : "end of file"));
    p.bytes_read += static_cast<uint64_t>(res);
    rs[b].done += static_cast<uint32_t>(res);
    if (rs[b].done < rs[b].want)
      issue(b);
    else
      free_bufs.push_back(b);
  }
  for (int fd : fds) ::close(fd);
  p.seconds = now_seconds() - t0;
  p.cpu = cpu_seconds() - c0;
  io_uring_queue_exit(&ring);
  std::free(mem);
  return p;
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

}  // namespace

int main(int argc, char** argv) {
  double gib = 2;
  std::string dir;
  bool keep = false;
  uint32_t chunk_kib = 1024;
  uint32_t depth = 4;
  int reps = 3;
  uint64_t segment_mib = 64;
  std::string json_file;
  std::string backends_arg = "uring,mmap,pread";
  CLI::App app{"varve-cold-read: chunk_reader from a cold and a warm page cache, per io backend, against O_DIRECT reads of the same bytes"};
  app.add_option("--gib", gib, "log size to build, GiB")->capture_default_str();
  app.add_option("--dir", dir, "log directory: reused if it holds a log, else built there (kept)");
  app.add_flag("--keep", keep, "keep the scratch log");
  app.add_option("--chunk-kib", chunk_kib, "chunk_reader chunk_bytes, and the ceiling's read size, KiB")->capture_default_str();
  app.add_option("--depth", depth, "chunk_reader depth")->capture_default_str();
  app.add_option("--reps", reps, "repetitions (median reported)")->capture_default_str();
  app.add_option("--segment-mib", segment_mib, "segment size when building")->capture_default_str();
  app.add_option("--backends", backends_arg, "comma-separated: uring,mmap,pread")->capture_default_str();
  std::vector<uint32_t> replay_threads{1, 2};
  std::vector<uint32_t> ceiling_depths{4, 16, 64};
  app.add_option("--ceiling-depths", ceiling_depths,
                 "io_uring O_DIRECT ceiling: reads in flight to try; the best median is the ceiling")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--replay-threads", replay_threads,
                 "cold replays through io_uring (count by type), one per worker count (0: none)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--json", json_file, "write the figures as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  std::erase(replay_threads, 0u);
  if (ceiling_depths.empty()) die("--ceiling-depths: at least one depth");

  std::vector<io_backend> backends;
  for (size_t p = 0; p <= backends_arg.size();) {
    size_t q = backends_arg.find(',', p);
    if (q == std::string::npos) q = backends_arg.size();
    auto b = parse_io_backend(backends_arg.substr(p, q - p));
    if (!b || *b == io_backend::automatic) die("unknown backend in --backends: " + backends_arg);
    backends.push_back(*b);
    p = q + 1;
  }

  // The passes, each timed cold then warm: every backend as it reads by
  // default (uring: O_DIRECT for cold segments only when the range is larger
  // than half the available memory), uring with O_DIRECT for every cold full
  // segment ("uring direct"), and replays through the ring both ways (replay
  // has no option for it: the environment's VARVE_IO_DIRECT=1 asks).
  using dr = chunk_reader_options::direct_reads;
  struct row {
    std::string name;
    std::function<pass()> run;
  };
  std::vector<row> rows;
  for (io_backend b : backends) {
    rows.push_back({to_string(b), [&, b] { return read_pass(dir, b, chunk_kib << 10, depth, dr::automatic); }});
    if (b == io_backend::uring)
      rows.push_back({"uring direct", [&, b] { return read_pass(dir, b, chunk_kib << 10, depth, dr::cold); }});
  }
  for (uint32_t t : replay_threads)
    for (bool direct : {false, true})
      rows.push_back({"replay uring " + std::to_string(t) + "t" + (direct ? " direct" : ""), [&, t, direct] {
                        if (direct) ::setenv("VARVE_IO_DIRECT", "1", 1);
                        pass p = replay_pass(dir, io_backend::uring, chunk_kib << 10, t);
                        if (direct) ::unsetenv("VARVE_IO_DIRECT");
                        return p;
                      }});

  bool scratch = dir.empty();
  if (scratch) dir = make_scratch_dir(scratch_root(), "varve-cold-read");
  if (!std::filesystem::exists(dir + "/varve.meta"))
    build_log(dir, static_cast<uint64_t>(gib * (1ull << 30)), segment_mib << 20);
  else
    std::fprintf(stderr, "reusing %s\n", dir.c_str());

  if (reps <= 0) return 0;  // --reps 0: build (or check) the log only

  const auto files = segment_files(dir);
  if (files.empty()) die(dir + ": no segment files");
  uint64_t committed = 0, capacity = 0;
  {
    auto log = event_log::open_read_only(dir);
    if (!log) die(log.error().to_string());
    committed = log.value()->committed_position().value;
    capacity = detail::log_access::shared(*log.value())->capacity();
  }
  const uint64_t last_bytes = committed & (capacity - 1);
  const uint64_t bytes = (files.size() - 1) * capacity + (last_bytes + 4095) / 4096 * 4096;
  const uint32_t chunk = chunk_kib << 10;

  std::map<std::string, std::vector<double>> cold_mbs, warm_mbs, cold_cpu, warm_cpu;
  std::map<uint32_t, std::vector<double>> ceiling_mbs;  // by depth
  std::vector<double> dd_mbs, resident_frac;
  std::map<std::string, std::string> described;
  uint64_t events = 0;
  std::fprintf(stderr, "%zu segment files, %.2f GiB to read; load %s\n", files.size(),
               bytes / double(1ull << 30), load_average().c_str());
  for (int rep = 0; rep < reps; ++rep) {
    for (const row& rw : rows) {
      eviction ev = evict(files);
      resident_frac.push_back(double(ev.resident_bytes) / ev.file_bytes);
      pass c = rw.run();
      pass w = rw.run();
      if (events == 0) events = c.events;
      if (c.events != events || w.events != events)
        die(rw.name + " read " + std::to_string(c.events) + " events, expected " + std::to_string(events));
      cold_mbs[rw.name].push_back(bytes / 1e6 / c.seconds);
      warm_mbs[rw.name].push_back(bytes / 1e6 / w.seconds);
      cold_cpu[rw.name].push_back(c.cpu / c.seconds);
      warm_cpu[rw.name].push_back(w.cpu / w.seconds);
      described[rw.name] = c.describe;
      std::fprintf(stderr, "rep %d %-22s cold %7.1f MB/s (cpu %3.0f%%)  warm %7.1f MB/s  [%s; resident before %.2f%%]\n",
                   rep, rw.name.c_str(), bytes / 1e6 / c.seconds, 100 * c.cpu / c.seconds,
                   bytes / 1e6 / w.seconds, c.describe.c_str(), 100.0 * ev.resident_bytes / ev.file_bytes);
    }
    eviction ev = evict(files);
    resident_frac.push_back(double(ev.resident_bytes) / ev.file_bytes);
    pass d = direct_pass(files, last_bytes, chunk);
    dd_mbs.push_back(bytes / 1e6 / d.seconds);
    std::fprintf(stderr, "rep %d O_DIRECT one at a time %7.1f MB/s\n", rep, bytes / 1e6 / d.seconds);
    for (uint32_t cd : ceiling_depths) {
      ev = evict(files);
      resident_frac.push_back(double(ev.resident_bytes) / ev.file_bytes);
      pass u = uring_direct_pass(files, last_bytes, chunk, cd);
      if (u.bytes_read != bytes) die("the io_uring ceiling read " + std::to_string(u.bytes_read) + " bytes");
      ceiling_mbs[cd].push_back(bytes / 1e6 / u.seconds);
      std::fprintf(stderr, "rep %d io_uring O_DIRECT depth %u %7.1f MB/s\n", rep, cd, bytes / 1e6 / u.seconds);
    }
  }

  // The ceiling: the ring at its best depth (median of each depth's passes).
  double ceiling = 0;
  uint32_t ceiling_depth = 0;
  for (uint32_t cd : ceiling_depths)
    if (median(ceiling_mbs[cd]) > ceiling) {
      ceiling = median(ceiling_mbs[cd]);
      ceiling_depth = cd;
    }
  std::printf("varve-cold-read: %.2f GiB (%zu segments of %" PRIu64 " MiB, %" PRIu64
              " events), chunk %u KiB, depth %u, median of %d; %s, %ld cores, %s, %s\n",
              bytes / double(1ull << 30), files.size(), capacity >> 20, events, chunk_kib, depth,
              reps, cpu_model().c_str(), online_cores(), kernel_release().c_str(),
              filesystem_type(dir).c_str());
  std::printf("%-22s %10s %9s %10s %9s %9s\n", "backend", "cold MB/s", "cold cpu", "warm MB/s",
              "warm cpu", "/ceiling");
  for (uint32_t cd : ceiling_depths)
    std::printf("%-22s %10.1f %9s %10s %9s %9.2f%s\n", ("io_uring O_DIRECT d" + std::to_string(cd)).c_str(),
                median(ceiling_mbs[cd]), "", "", "", median(ceiling_mbs[cd]) / ceiling,
                cd == ceiling_depth ? "  <- ceiling" : "");
  std::printf("%-22s %10.1f %9s %10s %9s %9.2f\n", "O_DIRECT (dd)", median(dd_mbs), "", "", "", median(dd_mbs) / ceiling);
  nlohmann::json j;
  j["bytes"] = bytes;
  j["segments"] = files.size();
  j["segment_bytes"] = capacity;
  j["events"] = events;
  j["chunk_kib"] = chunk_kib;
  j["depth"] = depth;
  j["reps"] = reps;
  j["ceiling_mb_s"] = ceiling;  // io_uring, O_DIRECT, at its best depth
  j["ceiling_depth"] = ceiling_depth;
  for (uint32_t cd : ceiling_depths) j["ceiling_by_depth"][std::to_string(cd)] = ceiling_mbs[cd];
  j["dd_mb_s"] = median(dd_mbs);  // O_DIRECT preads one at a time
  j["max_resident_after_eviction"] = *std::max_element(resident_frac.begin(), resident_frac.end());
  j["machine"] = {{"cpu", cpu_model()}, {"cores", online_cores()}, {"kernel", kernel_release()},
                  {"filesystem", filesystem_type(dir)}, {"date", utc_now_iso()},
                  {"load", load_average()}};
  for (const row& rw : rows) {
    const std::string& n = rw.name;
    const double c = median(cold_mbs[n]), w = median(warm_mbs[n]);
    std::printf("%-22s %10.1f %8.0f%% %10.1f %8.0f%% %9.2f\n", n.c_str(), c,
                100 * median(cold_cpu[n]), w, 100 * median(warm_cpu[n]), c / ceiling);
    j["backends"][n] = {{"cold_mb_s", c},          {"warm_mb_s", w},
                        {"cold_cpu", median(cold_cpu[n])}, {"warm_cpu", median(warm_cpu[n])},
                        {"cold_over_ceiling", c / ceiling}, {"cold_runs", cold_mbs[n]},
                        {"warm_runs", warm_mbs[n]},   {"reader", described[n]}};
  }
  std::printf("page cache after eviction: at most %.2f%% of the files resident; load %s\n",
              100 * *std::max_element(resident_frac.begin(), resident_frac.end()),
              load_average().c_str());
  if (!json_file.empty()) {
    std::ofstream out(json_file);
    out << j.dump(2) << "\n";
  }
  if (scratch && !keep) remove_tree(dir);
  return 0;
}
