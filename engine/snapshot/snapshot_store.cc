// The snapshot store (varve/snapshot.h, docs/FORMAT.md §7b).
//
// Files are appended with pwrite and read through read-only shared mappings
// (the page cache is one, so a mapping sees what pwrite wrote). pwrite rather
// than a writable mapping: no preallocation to waste on a 1 KiB state, a full
// disk is an error from write(2) rather than a SIGBUS, and a snapshot of
// hundreds of MiB is written straight from the caller's buffer. A save
// writes the body first and the header last, so a record whose header is on
// disk has its body in the page cache: a reader that finds a valid header
// (in this process through the index, in another through refresh) never sees
// a half-written body; after a power loss the body checksum catches one.
//
// Each file is mapped once at max(file_bytes, size) — beyond the end of the
// file is fine as long as nothing is read there, and only validated records
// are — and remapped larger only when a single snapshot outgrows that. Old
// mappings stay until the store is destroyed, because views point into them.
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

#include <xxhash.h>

#include "engine/log_access.h"
#include "base/meta_file.h"
#include "engine/snapshot/snapshot_format.h"
#include "varve/snapshot.h"

namespace varve {

namespace sf = snapshot_format;

namespace detail {

struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return XXH3_64bits(s.data(), s.size()); }
};

enum : uint8_t { kUnchecked = 0, kGood = 1, kBad = 2, kStale = 3 };

struct snap_entry {
  stream_version version = 0;
  uint32_t schema = 0;
  uint64_t anchor = 0;
  uint64_t anchor_ts = 0;
  uint64_t saved_ns = 0;
  const std::byte* body = nullptr;
  uint64_t body_bytes = 0;
  uint64_t body_checksum = 0;
  uint64_t file = 0;
  uint64_t offset = 0;
  std::string stream;
  bool is_integer = false;
  // Verified once, on first use, by whichever reader gets there; the outcome
  // is then read with one acquire load.
  mutable std::atomic<uint8_t> state{kUnchecked};
};

struct snap_file {
  uint64_t index = 0;
  std::string path;
  file_handle fh;
  bool header_ok = false;
  uint64_t salt = 0;
  const std::byte* base = nullptr;  // the newest mapping
  uint64_t mapped = 0;              // its length
  uint64_t size = 0;                // file size when last looked at
  uint64_t end = 0;                 // end of the last valid record (where a scan resumes)
  std::string tail_why;             // why the bytes after `end` did not validate
  bool removed = false;             // compacted away (its mappings stay: views point there)
  bool had_damage = false;          // a stretch that did not validate (compaction leaves the file be)
  std::vector<std::pair<void*, uint64_t>> maps;
};

struct snapshot_state {
  std::shared_ptr<file_system> fs;
  snapshot_options opt;
  std::string log_dir, dir;
  uint64_t log_id = 0;
  bool read_only = true;
  const event_log* log = nullptr;
  int lock_fd = -1;
  status failed;  // a failed sync: writes refused until reopened

  std::deque<snap_file> files;  // ascending index; deque: stable addresses
  snap_file* current = nullptr;  // the writer's file

  mutable std::shared_mutex mu;  // guards the maps below (entries are immutable once in)
  std::deque<snap_entry> entries;
  using by_stream =
      std::unordered_map<std::string, std::vector<snap_entry*>, string_hash, std::equal_to<>>;
  by_stream named, integer;
  mutable std::atomic<uint64_t> damaged{0};
  std::vector<status>* problems = nullptr;  // verify_snapshots collects here

  ~snapshot_state() {
    for (auto& f : files) {
      for (auto& [a, n] : f.maps) fs->unmap(a, n);
      if (f.fh.valid()) fs->close(f.fh);
    }
    if (lock_fd >= 0) ::close(lock_fd);  // releases the flock
  }

  void report(const std::string& file, uint64_t off, uint64_t bytes, const std::string& why) const {
    if (opt.observer) opt.observer->on_truncated(file, off, bytes, why);
    if (problems)
      problems->push_back(status(errc::corruption, file + " offset " + std::to_string(off) + ": " + why));
  }

  status map_to(snap_file& f, uint64_t need) {
    if (need <= f.mapped) return {};
    const uint64_t len = std::max(opt.file_bytes, need);
    auto m = fs->map(f.fh, len, map_access::read_only);
    if (!m) return m.error();
    f.maps.emplace_back(m.value(), len);
    f.base = static_cast<const std::byte*>(m.value());
    f.mapped = len;
    return {};
  }

  // Indexes the valid records of `f` in [f.end, f.size), headers only; a
  // damaged stretch is reported and skipped by looking for the next record
  // that validates (64-byte steps: records are 64-aligned). Stops at 16 zero
  // bytes where a record would start: nothing (yet) written there.
  // Returns the entries found, for the caller to publish.
  std::vector<snap_entry*> scan(snap_file& f) {
    std::vector<snap_entry*> found;
    uint64_t off = f.end;
    bool in_damage = false;
    uint64_t damage_from = 0;
    auto end_damage = [&](uint64_t at, const std::string& why) {
      if (in_damage) report(f.path, damage_from, at - damage_from, why);
      in_damage = false;
    };
    std::string first_why;
    while (off < f.size) {
      if (!in_damage && sf::unwritten_at(f.base, f.size, off)) {
        // Only verify says so: a live save may be in flight right here.
        if (problems)
          report(f.path, off, f.size - off,
                 "bytes after the last snapshot (an unfinished save: cut when the store is next "
                 "opened for writing)");
        break;
      }
      sf::record_header h;
      std::string why;
      if (sf::decode_record_header(f.base, f.size, off, f.salt, h, why)) {
        end_damage(off, first_why + "; skipped to the next valid snapshot");
        auto& e = entries.emplace_back();
        e.version = h.version;
        e.schema = h.schema_version;
        e.anchor = h.anchor;
  e.anchor_ts = h.anchor_timestamp;
        e.anchor_ts = h.anchor_timestamp;
        e.saved_ns = h.saved_ns;
        e.body = f.base + off + sf::header_bytes(h.stream_len);
        e.body_bytes = h.body_bytes;
        e.body_checksum = h.body_checksum;
        e.file = f.index;
        e.offset = off;
        e.stream.assign(h.stream);
        e.is_integer = h.flags & 1;
        found.push_back(&e);
        off += sf::header_bytes(h.stream_len) + sf::align64(h.body_bytes);
        f.end = off;
        continue;
      }
      if (!in_damage) {
        in_damage = true;
        f.had_damage = true;
        damage_from = off;
        first_why = why;
        damaged.fetch_add(1, std::memory_order_relaxed);
      }
      off += sf::kAlign;
    }
    if (in_damage) {
      // Nothing valid after the damage. A read-only store cannot tell a save in
      // flight (body written, header not yet) from damage, so says nothing and
      // looks again at the next refresh; the writer cuts it at open and
      // reports the cut (verify reports it as it is).
      f.tail_why = first_why;
      if (problems) report(f.path, damage_from, f.size - damage_from, first_why);
      else damaged.fetch_sub(1, std::memory_order_relaxed);
    }
    return found;
  }

  void publish(const std::vector<snap_entry*>& found) {
    std::unique_lock g(mu);
    for (snap_entry* e : found) {
      auto& list = (e->is_integer ? integer : named)[e->stream];
      // Version order; among equal versions the later save comes later.
      auto at = std::upper_bound(list.begin(), list.end(), e->version,
                                 [](uint64_t v, const snap_entry* x) { return v < x->version; });
      list.insert(at, e);
    }
  }

  // Opens and indexes one file (not yet known). `writer_last`: the writer's
  // newest file, where an unfinished save is cut and a file never initialised
  // is removed. A file with a zero header is not added.
  status add_file(uint64_t index, bool writer_last) {
    const std::string path = dir + "/" + sf::file_name(index);
    auto h = fs->open(path, writer_last ? file_system::open_mode::read_write
                                        : file_system::open_mode::read_only);
    if (!h) return h.error();
    auto size = fs->file_size(h.value());
    if (!size) {
      file_handle fh = h.value();
      fs->close(fh);
      return size.error();
    }
    auto& f = files.emplace_back();
    f.index = index;
    f.path = path;
    f.fh = h.value();
    f.size = size.value();
    std::byte hdr[sf::kFileHeader] = {};
    if (f.size >= sf::kFileHeader) {
      if (status s = fs->pread(f.fh, 0, hdr, sizeof hdr); !s) return s;
    }
    bool zero = true;
    for (std::byte b : hdr) zero = zero && b == std::byte{0};
    if (zero) {
      // Created but never initialised: a crash while rolling (the writer
      // removes it), or a writer creating it right now (a reader looks again
      // at its next refresh rather than writing the file off).
      fs->close(f.fh);
      files.pop_back();
      return writer_last ? fs->remove(path) : status{};
    }
    sf::file_header fh;
    auto d = f.size >= sf::kFileHeader ? sf::decode_file_header(hdr, fh)
                                       : sf::decode_outcome{false, false, "offset 0: file shorter than its header"};
    if (d.ok && fh.file_index != index) {
      d.ok = false;
      d.why = "offset 16: header names file " + std::to_string(fh.file_index);
    }
    if (d.ok && fh.log_id != log_id) {
      d.ok = false;
      d.why = "offset 32: the file belongs to another log";
    }
    if (!d.ok) {
      damaged.fetch_add(1, std::memory_order_relaxed);
      report(path, 0, f.size, d.why + "; the file is ignored");
      return {};
    }
    f.header_ok = true;
    f.salt = fh.salt;
    f.end = sf::kFileHeader;
    if (status s = map_to(f, f.size); !s) return s;
    publish(scan(f));
    if (writer_last && f.size > f.end) {
      // An unfinished save (or damage past the last valid snapshot): cut it,
      // so the next save starts on clean bytes.
      report(path, f.end, f.size - f.end,
             "unfinished snapshot save cut" + (f.tail_why.empty() ? std::string() : " (" + f.tail_why + ")"));
      if (status s = fs->truncate(f.fh, f.end); !s) return s;
      if (status s = fs->datasync(f.fh); !s) return s;
      f.size = f.end;
    }
    return {};
  }

  status load_dir(bool writer) {
    if (!fs->exists(dir)) return {};
    auto names = fs->list_dir(dir);
    if (!names) return names.error();
    std::vector<uint64_t> idx;
    for (const auto& n : names.value()) {
      uint64_t i;
      if (sf::parse_file_name(n, i)) idx.push_back(i);
    }
    std::sort(idx.begin(), idx.end());
    for (size_t k = 0; k < idx.size(); ++k)
      if (status s = add_file(idx[k], writer && k + 1 == idx.size()); !s) return s;
    if (writer && !files.empty() && files.back().header_ok &&
        files.back().size < opt.file_bytes)
      current = &files.back();
    return {};
  }

  status roll() {
    const uint64_t index = files.empty() ? 0 : files.back().index + 1;
    const std::string path = dir + "/" + sf::file_name(index);
    auto h = fs->open(path, file_system::open_mode::create_new);
    if (!h) return h.error();
    file_handle fh = h.value();
    std::byte hdr[sf::kFileHeader];
    std::random_device rd;
    sf::file_header fhdr{index, (uint64_t{rd()} << 32) ^ rd() ^ static_cast<uint64_t>(now_ns()),
                         log_id, now_ns()};
    sf::encode_file_header(hdr, fhdr);
    status s = fs->pwrite(fh, 0, hdr, sizeof hdr);
    if (s) s = fs->datasync(fh);
    if (s) s = fs->sync_dir(dir);
    if (!s) {
      fs->close(fh);
      (void)fs->remove(path);
      return s;
    }
    auto& f = files.emplace_back();
    f.index = index;
    f.path = path;
    f.fh = fh;
    f.header_ok = true;
    f.salt = fhdr.salt;
    f.size = f.end = sf::kFileHeader;
    if (status m = map_to(f, f.size); !m) return m;
    current = &f;
    return {};
  }

  // Appends one record to the writer's file (body and padding first, header
  // last: see the top of this file), rolling to a new file first when it
  // would not fit. `h` carries every field but offset and salt. Returns the
  // new entry, known good (we wrote its bytes), not yet published; `rolled`
  // is set when a file was closed on the way.
  result<snap_entry*> append_record(sf::record_header h, std::span<const std::byte> body, bool& rolled) {
    const uint64_t hdr_len = sf::header_bytes(h.stream.size());
    const uint64_t rec_len = hdr_len + sf::align64(body.size());
    if (!current || (current->end > sf::kFileHeader && current->end + rec_len > opt.file_bytes)) {
      if (current) {
        // A file is closed durable: compaction removes files only after the
        // copies it made are on disk, and those may sit in this one.
        if (status d = fs->datasync(current->fh); !d) {
          failed = d;
          return d;
        }
      }
      if (status s = roll(); !s) return s;
      rolled = true;
    }
    auto& f = *current;
    const uint64_t off = f.end;
    h.offset = off;
    h.salt = f.salt;
    std::byte hdr[sf::header_bytes(kMaxStreamIdBytes)];
    sf::encode_record_header(hdr, h);
    status s;
    if (!body.empty()) s = fs->pwrite(f.fh, off + hdr_len, body.data(), body.size());
    if (s && sf::align64(body.size()) != body.size()) {
      const std::byte zeros[sf::kAlign] = {};
      s = fs->pwrite(f.fh, off + hdr_len + body.size(), zeros, sf::align64(body.size()) - body.size());
    }
    if (s) s = fs->pwrite(f.fh, off, hdr, hdr_len);
    if (!s) return s;  // nothing indexed; the next save writes over these bytes
    if (status m = map_to(f, off + rec_len); !m) return m;
    f.size = f.end = off + rec_len;
    auto& e = entries.emplace_back();  // deque: no reader holds an iterator
    e.version = h.version;
    e.schema = h.schema_version;
    e.anchor = h.anchor;
    e.anchor_ts = h.anchor_timestamp;
    e.saved_ns = h.saved_ns;
    e.body = f.base + off + hdr_len;
    e.body_bytes = body.size();
    e.body_checksum = h.body_checksum;
    e.file = f.index;
    e.offset = off;
    e.stream.assign(h.stream);
    e.is_integer = h.flags & 1;
    // We wrote these bytes ourselves: no need to hash them again on first load.
    e.state.store(kGood, std::memory_order_relaxed);
    return &e;
  }

  static uint64_t now_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  }

  // The newest candidate at or below `below` in `schema` not known bad.
  snap_entry* find(stream_id stream, stream_version below, uint32_t schema) const {
    std::shared_lock g(mu);
    const auto& m = stream.is_integer() ? integer : named;
    auto it = m.find(stream.bytes());
    if (it == m.end()) return nullptr;
    const auto& list = it->second;
    auto at = std::upper_bound(list.begin(), list.end(), below,
                               [](uint64_t v, const snap_entry* x) { return v < x->version; });
    while (at != list.begin()) {
      snap_entry* e = *--at;
      if (e->schema != schema) continue;
      const uint8_t st = e->state.load(std::memory_order_acquire);
      if (st == kBad || st == kStale) continue;
      return e;
    }
    return nullptr;
  }
};

}  // namespace detail

using detail::snap_entry;

snapshot_store::snapshot_store(std::unique_ptr<detail::snapshot_state> s) : s_(std::move(s)) {}
snapshot_store::~snapshot_store() = default;

result<std::unique_ptr<snapshot_store>> snapshot_store::open(const event_log& log,
                                                             const snapshot_options& options) {
  if (options.file_bytes < 4096)
    return status(errc::invalid_argument, "snapshot file_bytes must be at least 4096");
  auto st = std::make_unique<detail::snapshot_state>();
  st->fs = options.fs ? options.fs : (log.options().fs ? log.options().fs : posix_file_system());
  st->opt = options;
  st->log_dir = log.dir();
  st->dir = log.dir() + "/" + sf::kDirName;
  st->log_id = detail::log_access::state(log).meta.log_id;
  st->read_only = false;
  st->log = &log;
  if (!st->fs->exists(st->dir))
    if (status s = st->fs->create_dir(st->dir); !s) return s;
  const std::string lock = st->dir + "/" + sf::kLockName;
  st->lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (st->lock_fd < 0)
    return status(errc::io_error, lock + ": open: " + std::strerror(errno));
  // flock, not a POSIX record lock: it belongs to the open file description,
  // so it also keeps out a second store in this process.
  if (::flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0)
    return status(errno == EWOULDBLOCK ? errc::locked : errc::io_error,
                  lock + ": another snapshot store holds the lock" +
                      (errno == EWOULDBLOCK ? std::string() : std::string(": ") + std::strerror(errno)));
  if (status s = st->load_dir(true); !s) return s;
  // Crypto-shredding: the snapshots of streams forgotten since they were
  // saved go now (a crash between the log's forget and the store's is
  // finished here; a store that was not open at the forget catches up).
  auto forgotten = log.forgotten();
  if (!forgotten) return forgotten.error();
  std::unique_ptr<snapshot_store> store(new snapshot_store(std::move(st)));
  for (const forgotten_stream& f : forgotten.value()) {
    uint64_t v = 0;
    for (char ch : f.stream) v = (v << 8) | static_cast<uint8_t>(ch);
    const stream_id id = f.stream_is_integer && f.stream.size() == 8 ? stream_id::from_u64(v)
                                                                      : stream_id(std::string_view(f.stream));
    if (auto r = store->forget(id, f.time_ns); !r) return r.error();
  }
  return store;
}

result<std::unique_ptr<snapshot_store>> snapshot_store::open_read_only(
    const std::string& log_dir, const snapshot_options& options) {
  auto st = std::make_unique<detail::snapshot_state>();
  st->fs = options.fs ? options.fs : posix_file_system();
  st->opt = options;
  st->log_dir = log_dir;
  st->dir = log_dir + "/" + sf::kDirName;
  segment_format::meta m;
  if (status s = meta_file::read(*st->fs, log_dir, m); !s) return s;
  st->log_id = m.log_id;
  if (status s = st->load_dir(false); !s) return s;
  return std::unique_ptr<snapshot_store>(new snapshot_store(std::move(st)));
}

status snapshot_store::save(stream_id stream, stream_version version, uint32_t schema_version,
                            std::span<const std::byte> bytes) {
  auto& st = *s_;
  if (st.read_only) return status(errc::read_only, st.dir + ": snapshot store opened read-only");
  if (!st.failed.ok()) return status(errc::read_only, st.dir + ": writes refused after: " + st.failed.to_string());
  const std::string_view id = stream.bytes();
  if (id.empty() || id.size() > kMaxStreamIdBytes)
    return status(errc::invalid_argument, "stream id must be 1 to 255 bytes");
  if (version == 0) return status(errc::invalid_argument, "snapshot version must be >= 1");
  // The anchor: where the event this state reflects sits in the log, so a
  // load can tell this history from another one that reached the same version.
  auto rs = st.log->read_stream(stream, version, read_direction::forward, 1);
  if (!rs) return rs.error();
  rs->without_upcasting();  // the anchor is a position
  event_view ev;
  auto got = rs->next(ev);
  if (!got) return got.error();
  if (!got.value() || ev.version != version)
    return status(errc::invalid_argument, "stream has no event at version " + std::to_string(version) +
                                              " (it is at " + std::to_string(rs->stream_version_at_start()) + ")");

  sf::record_header h;
  h.version = version;
  h.body_bytes = bytes.size();
  h.body_checksum = XXH3_64bits(bytes.data(), bytes.size());
  h.saved_ns = detail::snapshot_state::now_ns();
  h.anchor = ev.position.value;
  h.anchor_timestamp = ev.timestamp_ns;
  h.schema_version = schema_version;
  h.flags = stream.is_integer() ? 1 : 0;
  h.stream = id;
  bool rolled = false;
  auto e = st.append_record(h, bytes, rolled);
  if (!e) return e.error();
  if (st.opt.sync_each_save) {
    if (status d = st.fs->datasync(st.current->fh); !d) {
      st.failed = d;
      return d;
    }
  }
  st.publish({e.value()});
  if (rolled && st.opt.keep_per_stream > 0) {
    // Retention is housekeeping of derived data: a failure is reported, and
    // the save (already durable) stands.
    snapshot_compact_options co;
    co.keep_per_stream = st.opt.keep_per_stream;
    if (auto c = compact(co); !c)
      st.report(st.dir, 0, 0, "snapshot retention (keep " + std::to_string(co.keep_per_stream) +
                                  " per stream) did not run: " + c.error().to_string());
  }
  return {};
}

status snapshot_store::flush() {
  auto& st = *s_;
  if (st.read_only || !st.current) return {};
  if (status d = st.fs->datasync(st.current->fh); !d) {
    st.failed = d;
    return d;
  }
  return {};
}

result<snapshot_view> snapshot_store::latest(stream_id stream, stream_version at_or_below,
                                             uint32_t schema_version) const {
  const auto& st = *s_;
  // Each pass either returns or marks one entry bad, so this ends.
  for (;;) {
    snap_entry* e = st.find(stream, at_or_below, schema_version);
    if (!e) return status(errc::not_found, "no usable snapshot");
    uint8_t state = e->state.load(std::memory_order_acquire);
    if (state == detail::kUnchecked) {
      // Hashed outside the index lock: a body may be hundreds of MiB.
      const bool good = XXH3_64bits(e->body, e->body_bytes) == e->body_checksum;
      uint8_t expect = detail::kUnchecked;
      const uint8_t want = good ? detail::kGood : detail::kBad;
      if (e->state.compare_exchange_strong(expect, want, std::memory_order_acq_rel) && !good) {
        st.damaged.fetch_add(1, std::memory_order_relaxed);
        st.report(st.dir + "/" + sf::file_name(e->file), e->offset,
                  sf::header_bytes(e->stream.size()) + sf::align64(e->body_bytes),
                  "snapshot body checksum mismatch (stream version " + std::to_string(e->version) +
                      "); an older snapshot is used");
      }
      state = e->state.load(std::memory_order_acquire);
    }
    if (state != detail::kGood) continue;
    snapshot_view v;
    v.version = e->version;
    v.schema_version = e->schema;
    v.anchor = position{e->anchor};
    v.anchor_timestamp_ns = e->anchor_ts;
    v.saved_ns = e->saved_ns;
    v.bytes = std::span<const std::byte>(e->body, e->body_bytes);
    v.file = e->file;
    v.offset = e->offset;
    v.entry = e;
    return v;
  }
}

void snapshot_store::mark_stale(const snapshot_view& v, const std::string& why) const {
  auto* e = static_cast<const snap_entry*>(v.entry);
  if (!e) return;
  uint8_t expect = detail::kGood;
  if (e->state.compare_exchange_strong(expect, detail::kStale, std::memory_order_acq_rel)) {
    s_->damaged.fetch_add(1, std::memory_order_relaxed);
    s_->report(s_->dir + "/" + sf::file_name(e->file), e->offset, 0,
               "snapshot of stream version " + std::to_string(e->version) + " not used: " + why);
  }
}

std::vector<snapshot_info> snapshot_store::list(std::optional<stream_id> stream) const {
  const auto& st = *s_;
  std::vector<snapshot_info> out;
  std::shared_lock g(st.mu);
  auto add = [&](const std::vector<snap_entry*>& list) {
    for (const snap_entry* e : list) {
      snapshot_info i;
      i.stream = e->stream;
      i.stream_is_integer = e->is_integer;
      i.version = e->version;
      i.schema_version = e->schema;
      i.anchor = position{e->anchor};
      i.saved_ns = e->saved_ns;
      i.bytes = e->body_bytes;
      i.file = e->file;
      i.offset = e->offset;
      out.push_back(std::move(i));
    }
  };
  if (stream) {
    const auto& m = stream->is_integer() ? st.integer : st.named;
    if (auto it = m.find(stream->bytes()); it != m.end()) add(it->second);
    return out;
  }
  for (const auto* m : {&st.named, &st.integer})
    for (const auto& [k, list] : *m) add(list);
  std::sort(out.begin(), out.end(), [](const snapshot_info& a, const snapshot_info& b) {
    if (a.stream_is_integer != b.stream_is_integer) return !a.stream_is_integer;
    if (a.stream != b.stream) return a.stream < b.stream;
    if (a.version != b.version) return a.version < b.version;
    return std::make_pair(a.file, a.offset) < std::make_pair(b.file, b.offset);
  });
  return out;
}

namespace {

// compact() and forget(): `drop` (when set) names entries that go whatever
// keep_per_stream says, and every file holding one is rewritten without it,
// the writer's own file included (closed durable first, a new one begun).
result<snapshot_compact_report> compact_impl(detail::snapshot_state& st, const snapshot_compact_options& options,
                                             const std::function<bool(const snap_entry&)>& drop,
                                             uint64_t* dropped_left = nullptr);

}  // namespace

result<snapshot_compact_report> snapshot_store::compact(const snapshot_compact_options& options) {
  return compact_impl(*s_, options, {});
}

result<snapshot_forget_report> snapshot_store::forget(stream_id stream, uint64_t saved_up_to_ns) {
  auto& st = *s_;
  if (st.read_only) return status(errc::read_only, st.dir + ": snapshot store opened read-only");
  const std::string id(stream.bytes());
  const bool is_int = stream.is_integer();
  snapshot_forget_report rep;
  auto drop = [&](const snap_entry& e) {
    return e.is_integer == is_int && e.stream == id && e.saved_ns <= saved_up_to_ns;
  };
  // Out of the index first: no load hands one out from here on.
  {
    std::unique_lock g(st.mu);
    auto& m = is_int ? st.integer : st.named;
    if (auto it = m.find(id); it != m.end()) {
      auto& list = it->second;
      const size_t before = list.size();
      list.erase(std::remove_if(list.begin(), list.end(), [&](const snap_entry* e) { return drop(*e); }),
                 list.end());
      rep.snapshots_deleted = before - list.size();
      if (list.empty()) m.erase(it);
    }
  }
  if (rep.snapshots_deleted == 0) return rep;
  snapshot_compact_options o;
  o.keep_per_stream = UINT32_MAX;  // nothing else goes
  o.min_dead_fraction = 1;
  auto c = compact_impl(st, o, drop, &rep.left_in_damaged_files);
  if (!c) return c.error();
  rep.files_rewritten = c.value().files_removed;
  return rep;
}

namespace {

result<snapshot_compact_report> compact_impl(detail::snapshot_state& st, const snapshot_compact_options& options,
                                             const std::function<bool(const snap_entry&)>& drop,
                                             uint64_t* dropped_left) {
  if (st.read_only) return status(errc::read_only, st.dir + ": snapshot store opened read-only");
  if (!st.failed.ok()) return status(errc::read_only, st.dir + ": writes refused after: " + st.failed.to_string());
  if (options.keep_per_stream == 0)
    return status(errc::invalid_argument, "compact: keep_per_stream must be at least 1");
  if (!(options.min_dead_fraction >= 0 && options.min_dead_fraction <= 1))
    return status(errc::invalid_argument, "compact: min_dead_fraction must be in [0, 1]");
  snapshot_compact_report rep;
  auto record_bytes = [](const snap_entry* e) {
    return sf::header_bytes(e->stream.size()) + sf::align64(e->body_bytes);
  };
  // Files that must go (they hold an entry `drop` names). The writer's own
  // file is closed durable and a new one begun, so it can go too.
  std::unordered_set<uint64_t> must_go;
  if (drop) {
    for (const auto& e : st.entries)
      if (drop(e)) must_go.insert(e.file);
    if (st.current && must_go.count(st.current->index)) {
      if (status d = st.fs->datasync(st.current->fh); !d) {
        st.failed = d;
        return d;
      }
      if (status r = st.roll(); !r) return r;
    }
  }
  // Which entries stay: per stream, the newest keep_per_stream that are not
  // known bad or stale, one of each set of identical copies. Only this
  // thread adds or removes entries, so the lists can be read without the lock.
  std::unordered_map<const snap_entry*, bool> keep;  // entry -> kept
  for (const auto* m : {&st.named, &st.integer})
    for (const auto& [k, list] : *m) {
      std::vector<const snap_entry*> kept;
      for (auto it = list.rbegin(); it != list.rend(); ++it) {
        const snap_entry* e = *it;
        const uint8_t state = e->state.load(std::memory_order_acquire);
        bool stays = state != detail::kBad && state != detail::kStale && kept.size() < options.keep_per_stream;
        if (drop && drop(*e)) stays = false;
        for (const snap_entry* x : kept)
          if (stays && x->version == e->version && x->schema == e->schema && x->anchor == e->anchor &&
              x->body_checksum == e->body_checksum && x->body_bytes == e->body_bytes)
            stays = false;  // a second copy of a kept snapshot
        if (stays) kept.push_back(e);
        keep[e] = stays;
      }
    }
  // Which files go: full ones (not the writer's) with enough dropped bytes.
  std::unordered_map<uint64_t, std::pair<uint64_t, uint64_t>> usage;  // file -> (record bytes, dropped bytes)
  for (const auto& [e, stays] : keep) {
    auto& u = usage[e->file];
    u.first += record_bytes(e);
    if (!stays) u.second += record_bytes(e);
  }
  std::vector<detail::snap_file*> victims;
  for (auto& f : st.files) {
    // A file we could not read, or one with damaged stretches, stays as it is:
    // its bytes are evidence (varve snapshot verify names them), not ours to drop.
    if (&f == st.current || f.removed || !f.header_ok || f.had_damage) continue;
    const auto u = usage.count(f.index) ? usage[f.index] : std::pair<uint64_t, uint64_t>{0, 0};
    const bool nothing_kept = u.first == u.second;
    if (must_go.count(f.index) || nothing_kept || (u.second > 0 && static_cast<double>(u.second) >=
                                             options.min_dead_fraction * static_cast<double>(u.first)))
      victims.push_back(&f);
  }
  // Every snapshot of a file about to go is hashed: a kept one is copied only
  // if its body checks (the copy keeps the original checksum, so damage would
  // surface later anyway, but not where it happened), and a file holding a
  // damaged one, kept or not, found now or by an earlier load, is left as it
  // is: its bytes are evidence.
  for (auto& e : st.entries) {
    auto v = std::find_if(victims.begin(), victims.end(),
                          [&](const detail::snap_file* f) { return f->index == e.file; });
    if (v == victims.end() || !keep.count(&e)) continue;
    uint8_t state = e.state.load(std::memory_order_acquire);
    // Hashed again even when an earlier load found it good: the bytes may
    // have changed since.
    if (state != detail::kBad && XXH3_64bits(e.body, e.body_bytes) != e.body_checksum) {
      if (e.state.compare_exchange_strong(state, detail::kBad)) {
        st.damaged.fetch_add(1, std::memory_order_relaxed);
        st.report(st.dir + "/" + sf::file_name(e.file), e.offset, record_bytes(&e),
                  "snapshot body checksum mismatch (stream version " + std::to_string(e.version) +
                      "); the file is kept as it is");
      }
      state = detail::kBad;
    }
    if (state == detail::kBad) {
      (*v)->had_damage = true;
      victims.erase(v);
    }
  }
  if (dropped_left) {
    // What `drop` named but stays on disk: in a file left as evidence.
    *dropped_left = 0;
    for (const auto& e : st.entries) {
      if (!drop(e)) continue;
      const bool going = std::any_of(victims.begin(), victims.end(),
                                     [&](const detail::snap_file* f) { return f->index == e.file; });
      const bool gone = std::any_of(st.files.begin(), st.files.end(),
                                    [&](const detail::snap_file& f) { return f.index == e.file && f.removed; });
      if (!going && !gone) ++*dropped_left;
    }
  }
  if (victims.empty()) return rep;
  std::unordered_map<uint64_t, detail::snap_file*> victim_of;
  for (auto* f : victims) victim_of[f->index] = f;
  // Their entries in save order (file, then offset), so copies keep it.
  std::vector<snap_entry*> moving;
  for (auto& e : st.entries)
    if (victim_of.count(e.file) && keep.count(&e)) moving.push_back(&e);
  std::sort(moving.begin(), moving.end(), [](const snap_entry* a, const snap_entry* b) {
    return std::make_pair(a->file, a->offset) < std::make_pair(b->file, b->offset);
  });
  std::vector<snap_entry*> copies;
  bool wrote = false;
  for (snap_entry* e : moving) {
    if (!keep[e]) {
      if (e->state.load(std::memory_order_acquire) == detail::kStale) ++rep.stale_dropped;
      else ++rep.snapshots_dropped;
      continue;
    }
    sf::record_header h;
    h.version = e->version;
    h.body_bytes = e->body_bytes;
    h.body_checksum = e->body_checksum;
    h.saved_ns = e->saved_ns;
    h.anchor = e->anchor;
    h.anchor_timestamp = e->anchor_ts;
    h.schema_version = e->schema;
    h.flags = e->is_integer ? 1 : 0;
    h.stream = e->stream;
    bool rolled = false;
    auto c = st.append_record(h, std::span<const std::byte>(e->body, e->body_bytes), rolled);
    if (!c) return c.error();  // the originals stay; copies made so far are harmless duplicates
    copies.push_back(c.value());
    wrote = true;
    ++rep.snapshots_copied;
  }
  // The copies are durable before any original goes (files left earlier by a
  // roll were synced as they closed).
  if (wrote) {
    if (status d = st.fs->datasync(st.current->fh); !d) {
      st.failed = d;
      return d;
    }
  }
  st.publish(copies);
  {
    std::unique_lock g(st.mu);
    for (auto* m : {&st.named, &st.integer})
      for (auto it = m->begin(); it != m->end();) {
        auto& list = it->second;
        list.erase(std::remove_if(list.begin(), list.end(),
                                  [&](const snap_entry* e) { return victim_of.count(e->file) > 0; }),
                   list.end());
        it = list.empty() ? m->erase(it) : std::next(it);
      }
  }
  uint64_t removed_bytes = 0;
  status first_error;
  for (auto* f : victims) {
    if (status r = st.fs->remove(f->path); !r) {
      if (first_error.ok()) first_error = r;
      continue;  // still on disk: the next open indexes it again (duplicates are harmless)
    }
    f->removed = true;
    removed_bytes += f->size;
    ++rep.files_removed;
    if (f->fh.valid()) st.fs->close(f->fh);
  }
  if (status d = st.fs->sync_dir(st.dir); !d && first_error.ok()) first_error = d;
  if (!first_error.ok()) return first_error;
  uint64_t copied_bytes = 0;
  for (const snap_entry* c : copies) copied_bytes += record_bytes(c);
  rep.bytes_reclaimed = removed_bytes > copied_bytes ? removed_bytes - copied_bytes : 0;
  return rep;
}

}  // namespace

status snapshot_store::refresh() {
  auto& st = *s_;
  if (!st.read_only) return {};
  if (!st.fs->exists(st.dir)) return {};
  auto names = st.fs->list_dir(st.dir);
  if (!names) return names.error();
  std::vector<uint64_t> idx;
  for (const auto& n : names.value()) {
    uint64_t i;
    if (sf::parse_file_name(n, i)) idx.push_back(i);
  }
  std::sort(idx.begin(), idx.end());
  for (uint64_t i : idx) {
    auto known = std::find_if(st.files.begin(), st.files.end(),
                              [i](const detail::snap_file& f) { return f.index == i; });
    if (known == st.files.end()) {
      if (!st.files.empty() && i < st.files.back().index) continue;  // appeared out of order: ignore
      if (status s = st.add_file(i, false); !s) return s;
      continue;
    }
    if (!known->header_ok) continue;
    auto size = st.fs->file_size(known->fh);
    if (!size) return size.error();
    known->size = size.value();
    // At or below where we stopped: nothing new (a writer's open may have cut
    // an unfinished save; what we indexed lies below that cut).
    if (known->size <= known->end) continue;
    if (status s = st.map_to(*known, known->size); !s) return s;
    st.publish(st.scan(*known));
  }
  return {};
}

uint64_t snapshot_store::damaged_count() const { return s_->damaged.load(std::memory_order_relaxed); }
const std::string& snapshot_store::dir() const { return s_->dir; }
bool snapshot_store::is_read_only() const { return s_->read_only; }

result<snapshot_verify_report> verify_snapshots(const std::string& log_dir) {
  snapshot_verify_report rep;
  auto st = std::make_unique<detail::snapshot_state>();
  st->fs = posix_file_system();
  st->log_dir = log_dir;
  st->dir = log_dir + "/" + sf::kDirName;
  st->problems = &rep.problems;
  segment_format::meta m;
  if (status s = meta_file::read(*st->fs, log_dir, m); !s) return s;
  st->log_id = m.log_id;
  if (status s = st->load_dir(false); !s) return s;
  rep.files = st->files.size();
  for (const auto& e : st->entries) {
    if (XXH3_64bits(e.body, e.body_bytes) != e.body_checksum) {
      rep.problems.push_back(status(errc::corruption, st->dir + "/" + sf::file_name(e.file) + " offset " +
                                                          std::to_string(e.offset) +
                                                          ": snapshot body checksum mismatch"));
      continue;
    }
    ++rep.snapshots;
    rep.bytes += e.body_bytes;
  }
  std::sort(rep.problems.begin(), rep.problems.end(),
            [](const status& a, const status& b) { return a.message() < b.message(); });
  return rep;
}

}  // namespace varve
