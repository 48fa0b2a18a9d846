// event_log: opening, the appender's hot path, roll-over and close.
#include <time.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <random>

#include "base/log_files.h"
#include "engine/log_access.h"
#include "engine/append_path.h"
#include "engine/chain.h"
#include "engine/lifecycle/writer_lifecycle.h"
#include "engine/crypto/writer_keys.h"
#include "engine/log_state.h"
#include "base/meta_file.h"
#include "engine/recovery.h"
#include "engine/archive.h"
#include "engine/retention.h"
#include "base/archive_file.h"
#include "base/start_file.h"
#include "base/record_encode.h"
#include "index/heads_file.h"

namespace varve {

using detail::log_state;

uint64_t log_state::now_ns() const {
  if (opts.clock) return opts.clock();
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);  // vDSO: no system call
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

result<int> log2_of(uint64_t bytes) {
  if (bytes == 0 || (bytes & (bytes - 1)) != 0)
    return status(errc::invalid_argument,
                  "segment size " + std::to_string(bytes) + " is not a power of two");
  int l = 0;
  while ((uint64_t{1} << l) < bytes) ++l;
  if (l < static_cast<int>(segment_format::kMinLog2Capacity) ||
      l > static_cast<int>(segment_format::kMaxLog2Capacity))
    return status(errc::invalid_argument, "segment size " + std::to_string(bytes) +
                                              " is outside 64 KiB .. 1 GiB");
  return l;
}

std::unique_ptr<log_state> new_state(const std::string& dir, const log_options& o) {
  auto s = std::make_unique<log_state>();
  s->dir = dir;
  s->opts = o;
  s->fs = o.fs ? o.fs : posix_file_system();
  s->observer = o.observer;
  return s;
}

uint64_t steady_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void make_shared_log(log_state& s) {
  s.shared = std::make_shared<detail::shared_log>(
      s.fs, segment::identity{s.dir, s.meta.log2_capacity, s.meta.log_id, {}, !s.read_only && s.opts.mode != durability::none},
      s.opts.verify_checksums);
  s.shared->set_upcasters(s.opts.upcasters);
  s.shared->clock = s.opts.clock;
  s.shared->retention_grace_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(s.opts.retention_grace).count());
}

// Before anything is opened: a chain with a gap would fail reads later.
status check_upcasters(const log_options& o) {
  if (!o.upcasters) return {};
  return o.upcasters->validate();
}

}  // namespace

namespace detail {

namespace {
constexpr ctl_counter kind_counter[6] = {ctl_counter::recovery_cut,           ctl_counter::recovery_set_aside,
                                        ctl_counter::recovery_removed_empty, ctl_counter::recovery_hole,
                                        ctl_counter::recovery_rebuilt,       ctl_counter::recovery_note};
}

void counting_observer::attach(control_block* ctl) {
  for (size_t k = 0; k < 6; ++k) ctl->add(kind_counter[k], early_[k]);
  ctl->add(ctl_counter::recovery_bytes, early_[6]);
  ctl_ = ctl;
}

void counting_observer::count(recovery_action::kind k, uint64_t bytes_kept) {
  const size_t i = std::min<size_t>(static_cast<size_t>(k), 5);
  if (ctl_) {
    ctl_->add(kind_counter[i]);
    if (bytes_kept) ctl_->add(ctl_counter::recovery_bytes, bytes_kept);
  } else {
    ++early_[i];
    early_[6] += bytes_kept;
  }
}

void counting_observer::on_truncated(const std::string& file, uint64_t offset, uint64_t bytes,
                                     const std::string& why) {
  count(recovery_action::kind::note, 0);
  if (user_) user_->on_truncated(file, offset, bytes, why);
}

void counting_observer::on_action(const recovery_action& a) {
  count(a.what, a.kept_at.empty() ? 0 : a.bytes);
  if (user_) user_->on_action(a);
}

}  // namespace detail

event_log::event_log(std::unique_ptr<log_state> s) : s_(std::move(s)) {}

event_log::~event_log() { (void)close(); }

result<std::unique_ptr<event_log>> event_log::create(const std::string& dir,
                                                     const log_options& options) {
  if (status u = check_upcasters(options); !u) return u;
  auto l2 = log2_of(options.segment_bytes);
  if (!l2) return l2.error();
  auto s = new_state(dir, options);
  file_system& fs = *s->fs;
  if (status r = fs.create_dir(dir); !r) return r;
  auto lock = writer_lock::acquire(dir);
  if (!lock) return lock.error();
  // Checked under the lock: two creates racing on one directory would
  // otherwise both see no log and the second would overwrite the first's meta.
  if (fs.exists(log_files::join(dir, log_files::kMetaName)))
    return status(errc::already_exists, dir + ": already holds a varve log");
  std::random_device rd;
  s->meta.log2_capacity = static_cast<uint8_t>(l2.value());
  s->meta.log_id = (uint64_t{rd()} << 32) ^ rd() ^ s->now_ns();
  s->meta.created_ns = s->now_ns();
  if (status r = meta_file::write(fs, dir, s->meta); !r) return r;
  // Keep the lock from creation through open: no other writer can slip in.
  s->lock = std::move(lock.value());
  return open_locked(std::move(s));
}

result<std::unique_ptr<event_log>> event_log::open_or_create(const std::string& dir,
                                                             const log_options& options) {
  file_system& fs = options.fs ? *options.fs : *posix_file_system();
  if (fs.exists(log_files::join(dir, log_files::kMetaName))) return open(dir, options);
  return create(dir, options);
}

result<std::unique_ptr<event_log>> event_log::open(const std::string& dir,
                                                   const log_options& options) {
  if (status u = check_upcasters(options); !u) return u;
  auto s = new_state(dir, options);
  if (status r = meta_file::read(*s->fs, dir, s->meta); !r) return r;
  auto lock = writer_lock::acquire(dir);
  if (!lock) return lock.error();
  s->lock = std::move(lock.value());
  return open_locked(std::move(s));
}

result<std::unique_ptr<event_log>> detail::log_access::open_locked(
    const std::string& dir, const log_options& o, std::unique_ptr<writer_lock> lock) {
  if (status u = check_upcasters(o); !u) return u;
  auto s = new_state(dir, o);
  if (status r = meta_file::read(*s->fs, dir, s->meta); !r) return r;
  s->lock = std::move(lock);
  return event_log::open_locked(std::move(s));
}

result<std::unique_ptr<event_log>> event_log::open_locked(std::unique_ptr<log_state> s) {
  const std::string dir = s->dir;
  const uint64_t open_started = steady_ns();
  s->counting = std::make_unique<detail::counting_observer>(s->opts.observer);
  s->observer = s->counting.get();
  make_shared_log(*s);
  // A writer without the log's master key (or with another) is refused
  // before recovery touches anything.
  if (status k = detail::open_keys(*s); !k) return k;
  if (status r = detail::recover(*s); !r) return r;
  s->shared->set_start(s->first_segment, s->first_sequence);

  // What earlier sessions wrote may still be dirty in the page cache (mode
  // none leaves it there). Modes group and sync promise durability, so they
  // sync exactly the files that can hold such pages - the unsealed tail -
  // now; mode none promises nothing until flush(), which does the same then.
  // Sealed segments are durable already (sealing syncs them in every mode),
  // and what recovery itself changed it synced as it went.
  const uint64_t end = s->active->base_position() + s->write_off;
  const bool sync_now = s->opts.mode != durability::none;
  const uint64_t dirty_first = std::min(s->tail_segment, s->active->index());
  const uint64_t dirty_last = s->active->index();
  if (sync_now) {
    for (uint64_t k = dirty_first; k <= dirty_last; ++k)
      if (segment* seg = s->shared->segments.find(k); seg && seg->writable())
        if (status r = durability_tracker::sync_below(*seg, end); !r) return r;
  }
  auto ctl = control_block::create(s->fs, dir, s->meta.log_id);
  if (!ctl) return ctl.error();
  s->shared->ctl = std::move(ctl.value());
  s->shared->ctl->begin_session(s->meta.log_id, s->next_seq, end);
  s->shared->ctl->start_hint().store(s->first_segment, std::memory_order_release);
  if (status l = detail::open_lifecycle(*s); !l) return l;
  s->counting->attach(s->shared->ctl.get());
  if (status r = s->shared->ctl->clear_clean_end(sync_now); !r) return r;
  s->shared->ctl->next_sequence().store(s->next_seq, std::memory_order_relaxed);
  s->shared->ctl->commit().store(end, std::memory_order_release);
  s->written.store(end, std::memory_order_relaxed);
  s->session_start = end;
  // Durable at open, in mode none: what the last session recorded (recovery
  // never cuts below it), and every sealed segment.
  uint64_t durable_at_open = (dirty_first << s->meta.log2_capacity) + segment_format::kHeaderSize;
  if (s->ctl_at_open.valid) durable_at_open = std::max(durable_at_open, s->ctl_at_open.durable);
  durable_at_open = std::min(durable_at_open, end);
  s->durable = std::make_unique<durability_tracker>(
      *s->shared, durability_tracker::config{end, durable_at_open, dirty_first, dirty_last, sync_now});
  s->durable->start(s->opts.mode, s->opts.group_commit_interval, s->opts.group_commit_bytes);

  if (s->opts.tamper_evident_chain)
    if (status st = chain::create(*s->fs, s->dir, s->meta.log_id); !st) return st;
  const bool has_chain = s->fs->exists(log_files::join(s->dir, chain::kFileName));
  s->bg = std::make_unique<background>(background::config{
      s->fs, s->shared->segments.identity(), &s->shared->segments, s->opts.mode,
      s->opts.prepare_next_segment ? std::max<uint32_t>(1, s->opts.prepare_ahead) : 0u, s->observer,
      s->checkpointed_segment, &s->shared->first_segment_, &s->shared->indexes, s->durable.get(),
      s->shared->ctl.get(), has_chain, s->shared.get(), s->opts.retention, s->opts.retention_interval,
      [st = s.get()] { return st->now_ns(); }, s->active->index()});
  s->shared->indexes.set_observer(s->observer);
  s->shared->indexes.set_sealed_end(s->active->index());
  // Index files of sealed segments: checked, and rebuilt where missing or
  // damaged, in the background before any new seal.
  if (s->active->index() > s->first_segment) s->bg->index_sealed(s->active->index());
  // Sealed segments the newest checkpoint does not cover get one in the background.
  if (s->active->index() > s->first_segment &&
      (s->checkpointed_segment == ~uint64_t{0} || s->checkpointed_segment + 1 < s->active->index())) {
    // get, not find: an archived segment is inflated whole for the checkpoint's scan.
    if (auto got = s->shared->segments.get(s->active->index() - 1))
      s->bg->seal({got.value(), {}, true});
  }
  s->bg->start_preparing(s->active->index() + 1);
  if (s->opts.expected_streams) s->heads.reserve(s->opts.expected_streams);
  // A growing head table's page work goes to the preparer thread (close()
  // takes it back before that thread stops).
  s->heads.set_runner([bg = s->bg.get()](std::function<void()> task) { bg->run_later(std::move(task)); });
  detail::start_key_runner(*s);
  s->shared->ctl->counter(ctl_counter::open_ns).store(steady_ns() - open_started, std::memory_order_relaxed);
  return std::unique_ptr<event_log>(new event_log(std::move(s)));
}

result<std::unique_ptr<event_log>> event_log::open_read_only(const std::string& dir,
                                                             const log_options& options) {
  if (status u = check_upcasters(options); !u) return u;
  auto s = new_state(dir, options);
  if (status r = meta_file::read(*s->fs, dir, s->meta); !r) return r;
  s->read_only = true;
  make_shared_log(*s);
  // Where retention left the start (a damaged record: readers would not
  // know where the log begins, so the open fails, naming the file).
  auto start = start_file::read(*s->fs, dir, s->meta.log_id);
  if (!start) return start.error();
  if (start.value()) s->shared->set_start(start.value()->first_segment, start.value()->first_sequence);
  // Where the archive tier keeps the oldest segments (a damaged record: the
  // same, readers would not find them).
  auto arch = archive_file::read_location(*s->fs, dir, s->meta.log_id);
  if (!arch) return arch.error();
  if (arch.value()) s->shared->segments.set_archive_dir(arch.value()->dir);
  if (status k = detail::open_keys(*s); !k) return k;
  // Read first, while it is what the last writer left: with no writer alive
  // the control block may be stale (a power loss) and the log's true end is
  // found by reading the tail, O(tail), changing nothing.
  const bool writer_alive = writer_lock::is_held(dir);
  const ctl_state st = writer_alive ? ctl_state{} : control_block::read_state(*s->fs, dir, s->meta.log_id);
  auto ctl = control_block::open(s->fs, dir, s->meta.log_id);
  if (!ctl) return ctl.error();
  s->shared->ctl = std::move(ctl.value());
  s->shared->indexes.set_observer(s->opts.observer);
  if (status l = detail::open_lifecycle(*s); !l) return l;
  if (!writer_alive) {
    auto found = detail::find_log_end(*s->fs, s->shared->segments, dir, s->meta.log_id,
                                      s->meta.log2_capacity, st);
    if (!found) {
      // A segment that cannot even be mapped: readers reach it and fail there.
      s->damage = found.error();
    } else {
      s->damage = found.value().damage;
      s->first_segment = found.value().first_segment;
      s->shared->stale_commit = s->shared->ctl->commit().load(std::memory_order_acquire);
      s->shared->found_end = found.value().end;
      if (!found.value().torn.empty() && s->opts.observer)
        s->opts.observer->on_action({recovery_action::kind::note, dir, 0, 0,
                                     "torn tail (the next writer's open cuts it, keeping the bytes): " +
                                         found.value().torn,
                                     "", 0});
    }
    if (!s->damage.ok() && s->opts.observer)
      s->opts.observer->on_action({recovery_action::kind::note, dir, 0, 0,
                                   "damage below the acknowledged end (readers stop there with an "
                                   "error): " + s->damage.message(), "", 0});
  }
  return std::unique_ptr<event_log>(new event_log(std::move(s)));
}

namespace detail {

status roll(log_state& s, uint64_t needed) {
  const uint64_t next_index = s.active->index() + 1;
  // Get the next segment first: if that fails (disk full), nothing has been
  // written and the current segment is untouched.
  auto next = s.bg->take_segment(next_index);
  if (!next) return next.error();
  segment* old = s.active;
  // Crash story: the segment-end record tells recovery the log continues in
  // the next file. It is committed together with the first batch there.
  record::encode_segment_end(old->data() + s.write_off, old->base_position() + s.write_off);
  s.bg->seal({old,
              {old->index(), s.write_off, s.seg_events, s.seg_first_seq, s.seg_last_pos, 0},
              false});
  s.active = next.value().get();
  s.shared->segments.install(std::move(next.value()));
  s.shared->ctl->add(ctl_counter::rollovers);
  s.write_off = segment_format::kHeaderSize;
  s.seg_events = 0;
  s.seg_first_seq = s.next_seq;
  s.seg_last_pos = ~uint64_t{0};
  (void)needed;
  return {};
}

[[gnu::cold, gnu::noinline]] status check_extras(const log_state& s, std::span<const event_data> events) {
  // Schema versions newer than the upcasters know would be handed out as
  // they are, to readers that expect the current one.
  if (const upcasters* up = s.opts.upcasters.get())
    for (const event_data& e : events)
      if (status u = up->check_append(e.type, e.schema_version); !u) return u;
  for (size_t i = 0; i < events.size(); ++i)
    if (!events[i].metadata.empty())
      if (status m = record::check_metadata(events[i].metadata); !m)
        return events.size() == 1 ? m : status(m.code(), "event " + std::to_string(i) + ": " + m.message());
  return {};
}

[[gnu::cold, gnu::noinline]] status roll_to_version(log_state& s, uint64_t needed, uint32_t version) {
  // Segments prepared ahead by an older varve's session cannot exist in this
  // process, but a log's tail can: a few rolls at most reach one of ours.
  for (int k = 0; segment_format::version_of(s.active->data()) < version; ++k) {
    if (k == 8)
      return status(errc::invalid_argument, s.dir + ": no segment of format version " + std::to_string(version) +
                                                " to write into");
    if (status r = roll(s, needed); !r) return r;
  }
  return {};
}

// A refused append: counted (conflicts apart), off the hot path.
[[gnu::cold, gnu::noinline]] status refused(log_state& s, status why) {
  s.shared->ctl->bump_single_writer(why.code() == errc::wrong_expected_version ? ctl_counter::append_conflicts
                                                                             : ctl_counter::append_refusals);
  return why;
}

}  // namespace detail

namespace {

// Idempotent appends (event_log::append): what already sits at versions
// [from, from + n) of the stream, compared with the batch by event_id and
// content. Writer thread; reads through the per-aggregate index.
struct prior_append {
  enum class verdict { none, all, clash } what = verdict::none;
  append_result original;  // what = all
  std::string why;         // what = clash
};

bool same_id(const id128* a, const id128* b) { return a && b && *a == *b; }

// A retry carries the same entries in the same order: compare encodings.
bool same_metadata(const metadata_view& stored, std::span<const metadata_entry> m) {
  if (stored.raw().size() != record::metadata_bytes(m)) return false;
  if (m.empty()) return true;  // (memcmp of an empty view's null pointer is undefined)
  std::string enc(stored.raw().size(), '\0');
  record::encode_metadata(reinterpret_cast<std::byte*>(enc.data()), m);
  return std::memcmp(enc.data(), stored.raw().data(), enc.size()) == 0;
}

// 8-4-4-4-12 hex, as `varve read` prints ids.
std::string uuid_text(const id128& id) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += hex[id.bytes[i] >> 4];
    out += hex[id.bytes[i] & 15];
  }
  return out;
}

[[gnu::cold, gnu::noinline]] result<prior_append> find_prior_append(const event_log& log, stream_id stream,
                                                                   stream_version head, stream_version from,
                                                                   std::span<const event_data> events) {
  prior_append out;
  if (from == 0 || head < from) return out;
  auto rs = log.read_stream(stream, from, read_direction::forward, events.size());
  if (!rs) return rs.error();
  stream_reader& r = rs.value();
  r.without_upcasting();  // what the log holds is what a retry must match
  size_t ids_there = 0, same = 0;
  event_view e;
  for (size_t i = 0; i < events.size(); ++i) {
    auto got = r.next(e);
    if (!got) return got.error();
    if (!got.value()) break;  // the stream ends before the batch would
    const event_data& d = events[i];
    if (!same_id(d.event_id, e.event_id)) continue;
    ++ids_there;
    const bool content = e.type == d.type && e.schema_version == d.schema_version && e.content == d.content &&
                         e.payload.size() == d.payload.size() &&
                         std::equal(e.payload.begin(), e.payload.end(), d.payload.begin()) &&
                         (!d.correlation_id ? !e.correlation_id : same_id(d.correlation_id, e.correlation_id)) &&
                         (!d.causation_id ? !e.causation_id : same_id(d.causation_id, e.causation_id)) &&
                         same_metadata(e.metadata, d.metadata);
    if (!content && out.why.empty())
      out.why = "its event_id " + uuid_text(*d.event_id) + " is already at version " + std::to_string(e.version) +
                " with other content";
    if (content) ++same;
    if (i == 0) {
      out.original.first = e.position;
      out.original.first_sequence = e.sequence;
      out.original.first_version = e.version;
    }
    out.original.end = position{e.position.value + e.record_bytes};
    out.original.last_version = e.version;
  }
  if (ids_there == 0) return out;
  if (same == events.size()) {
    out.what = prior_append::verdict::all;
    out.original.duplicate = true;
    return out;
  }
  out.what = prior_append::verdict::clash;
  if (out.why.empty())
    out.why = std::to_string(ids_there) + " of its " + std::to_string(events.size()) +
              " event_ids are already there, not all";
  return out;
}

// The batch's event ids at the place the append names: the original ack (a
// duplicate), a refusal (some ids there with other content), or nullopt
// (not there: the append goes on, or fails as a plain conflict).
[[gnu::cold, gnu::noinline]] std::optional<result<append_result>> idempotent_retry(
    const event_log& log, log_state& s, stream_id stream, expected_version expected, stream_version actual,
    std::span<const event_data> events) {
  stream_version from = 0;  // where the batch would already be
  if (expected.which() == expected_version::kind::exact) from = expected.version() + 1;
  else if (expected.which() == expected_version::kind::no_stream) from = 1;
  else if (actual >= events.size()) from = actual - events.size() + 1;
  auto prior = find_prior_append(log, stream, actual, from, events);
  if (!prior) return refused(s, prior.error());
  if (prior->what == prior_append::verdict::all) return prior->original;
  if (prior->what == prior_append::verdict::none) return std::nullopt;
  status st(errc::wrong_expected_version, "stream '" + detail::stream_text(stream) + "': " + prior->why +
                                              " (idempotent append: nothing written), actual version " +
                                              std::to_string(actual));
  st.with_actual_version(actual);
  return refused(s, st);
}

}  // namespace

namespace {

// One body for both append() overloads: N = 1 for the single event (most
// appends), where the batch loops, the batch flags and the size sums fold
// into straight-line code, and dynamic_extent for a batch.
template <size_t N>
[[gnu::always_inline]] inline result<append_result> append_events(const event_log& self, log_state& s,
                                                                  stream_id stream, expected_version expected,
                                                                  std::span<const event_data, N> events) {
  if (s.read_only) return status(errc::read_only, s.dir + ": log is open read-only");
  // Not counted: after close() another writer may own the counters.
  if (s.closed) return status(errc::invalid_argument, s.dir + ": log is closed");
  if (!s.write_failure.ok()) return refused(s, s.write_failure);
  if (s.durable->has_failed()) [[unlikely]] {
    s.write_failure = status(errc::read_only, s.durable->failure().to_string());
    return refused(s, s.write_failure);
  }
  const std::string_view key = stream.bytes();
  if (key.empty() || key.size() > kMaxStreamIdBytes)
    return refused(s, status(errc::invalid_argument,
                             "stream id must have 1 to 255 bytes, got " + std::to_string(key.size())));
  if (events.empty()) return refused(s, status(errc::invalid_argument, "append of an empty batch"));
  if (s.any_deleted) [[unlikely]]
    if (status d = detail::refuse_deleted(s, stream, "append"); !d) return refused(s, d);

  const uint64_t h = s.heads.hash(key);
  head_table::head* head = s.heads.find(key, h);
  const stream_version actual = head ? head->version : 0;
  // Idempotency (see append() in log.h): a batch with event ids may already
  // be where it asks to go. Looked for on a conflict, and when the
  // expectation (any, stream_exists) cannot say where the batch goes; out of
  // line, so appends at an exact version without ids pay nothing more.
  if (!expected.accepts(actual)) [[unlikely]] {
    if (events[0].event_id != nullptr && head)
      if (auto r = idempotent_retry(self, s, stream, expected, actual, events)) return std::move(*r);
    std::string want;
    switch (expected.which()) {
      case expected_version::kind::no_stream: want = "no stream"; break;
      case expected_version::kind::stream_exists: want = "an existing stream"; break;
      default: want = "version " + std::to_string(expected.version()); break;
    }
    status st(errc::wrong_expected_version, "stream '" + detail::stream_text(stream) + "': expected " +
                                                want + ", actual version " +
                                                std::to_string(actual));
    st.with_actual_version(actual);
    return refused(s, st);
  }
  if ((expected.which() == expected_version::kind::any ||
       expected.which() == expected_version::kind::stream_exists) &&
      events[0].event_id != nullptr && head) [[unlikely]] {
    if (auto r = idempotent_retry(self, s, stream, expected, actual, events)) return std::move(*r);
  }

  // A log with a master key writes each payload sealed with its stream's key
  // (the events from here on are the sealed copies).
  if (s.encrypting) [[unlikely]] {
    std::span<const event_data> sealed = events;
    if (status x = detail::seal_payloads(s, key, head ? head->last_position : ~uint64_t{0}, sealed); !x)
      return refused(s, x);
    events = std::span<const event_data, N>(sealed.data(), sealed.size());
  }

  // Sizes first: a batch that cannot fit anywhere is refused before any byte is written.
  const uint64_t room = s.active->records_end() - segment_format::kHeaderSize - record::kSegmentEndSize;
  uint64_t total = 0;
  bool metadata = false;
  for (const event_data& e : events) {
    if (e.payload.size() > room) [[unlikely]]
      return refused(s, status(errc::too_large, "event of " + std::to_string(e.payload.size()) +
                                                    " bytes cannot fit in a segment of " +
                                                    std::to_string(s.capacity()) + " bytes"));
    metadata |= !e.metadata.empty();
    total += record::encoded_size(key.size(), e, 0);
  }
  // Out of line, so an append with neither pays one test.
  if (metadata || s.opts.upcasters) [[unlikely]] {
    if (status x = detail::check_extras(s, events); !x) return refused(s, x);
    if (metadata) {
      total = 0;
      for (const event_data& e : events) total += record::encoded_size(key.size(), e);
    }
  }
  if (total > room) [[unlikely]]
    return refused(s, status(errc::too_large, "batch of " + std::to_string(total) +
                                                  " bytes cannot fit in one segment of " +
                                                  std::to_string(s.capacity()) + " bytes"));
  if (s.write_off + total + record::kSegmentEndSize > s.active->records_end()) [[unlikely]] {
    if (status r = roll(s, total); !r) return refused(s, r);
  }
  if (metadata && segment_format::version_of(s.active->data()) < segment_format::kMetadataVersion) [[unlikely]]
    if (status r = roll_to_version(s, total, segment_format::kMetadataVersion); !r) return refused(s, r);
  if (s.encrypting && segment_format::version_of(s.active->data()) < segment_format::kEncryptionVersion) [[unlikely]]
    if (status r = roll_to_version(s, total, segment_format::kEncryptionVersion); !r) return refused(s, r);

  const bool single = events.size() == 1;
  const uint8_t int_flag = stream.is_integer() ? record::kFlagIntegerStream : 0;
  const uint8_t flags2 = s.encrypting ? record::kFlag2Encrypted : 0;
  // The clock is read only when an event brings no timestamp of its own.
  uint64_t now = 0;
  for (const event_data& e : events)
    if (e.timestamp_ns == 0) {
      now = s.now_ns();
      break;
    }
  const uint64_t base = s.active->base_position();
  std::byte* data = s.active->data();
  uint64_t prev = head ? head->last_position : ~uint64_t{0};
  stream_version v = actual;
  append_result out;
  out.first = position{base + s.write_off};
  out.first_sequence = sequence{s.next_seq};
  out.first_version = actual + 1;
  // Two instances of the loop: without metadata (a constant 0, so none of
  // its code is in the hot one) and with.
  auto write_all = [&]<bool kMetadata>() {
    for (size_t i = 0; i < events.size(); ++i) {
      const event_data& e = events[i];
      uint32_t meta_len = 0;
      if constexpr (kMetadata)
        meta_len = e.metadata.empty() ? 0 : static_cast<uint32_t>(record::metadata_bytes(e.metadata));
      // One event without metadata: its size is the batch's, summed above
      // (not recomputed: the calls between make the compiler reload e).
      const uint32_t size = N == 1 && !kMetadata ? static_cast<uint32_t>(total)
                                                 : record::encoded_size(key.size(), e, meta_len);
      const uint64_t pos = base + s.write_off;
      uint8_t flags = int_flag;
      if (single || i == 0) flags |= record::kFlagBatchBegin;
      if (single || i + 1 == events.size()) flags |= record::kFlagBatchEnd;
      record::encode_inline(data + s.write_off, size, key, e,
                            {pos, s.next_seq, ++v, e.timestamp_ns ? e.timestamp_ns : now, prev, flags, flags2}, meta_len);
      prev = pos;
      s.write_off += size;
      ++s.next_seq;
    }
  };
  if (metadata) [[unlikely]]
    write_all.template operator()<true>();
  else
    write_all.template operator()<false>();
  if (!head) head = s.heads.insert(key, h, stream.is_integer());
  head->version = v;
  head->last_position = prev;
  s.heads.tick();  // a growing head table moves a few slots (head is stale from here)
  s.seg_events += events.size();
  s.seg_last_pos = prev;

  const uint64_t end = base + s.write_off;
  out.end = position{end};
  out.last_version = v;
  if (status r = detail::commit_batch(s, end); !r) [[unlikely]]
    return r;
  return out;
}

}  // namespace

result<append_result> event_log::append(stream_id stream, expected_version expected,
                                        const event_data& event) {
  return append_events(*this, *s_, stream, expected, std::span<const event_data, 1>(&event, 1));
}

result<append_result> event_log::append(stream_id stream, expected_version expected,
                                        std::span<const event_data> events) {
  return append_events(*this, *s_, stream, expected, events);
}

status event_log::wait_durable(position p) {
  log_state& s = *s_;
  if (s.read_only) return {errc::read_only, s.dir + ": log is open read-only"};
  uint64_t target = std::min(p.value, s.shared->committed());
  status r = s.durable->wait(target);
  if (!r) s.write_failure = status(errc::read_only, r.to_string());
  return r;
}

status event_log::flush() {
  log_state& s = *s_;
  if (s.read_only) return {};
  status r = s.durable->sync_until(s.shared->committed());
  // Mode none records the durable watermark on disk within 100 ms, off this
  // thread: a second sync per flush (varve.ctl) had doubled P2's syncs.
  if (r && s.opts.mode == durability::none) s.durable->request_record();
  if (!r) s.write_failure = status(errc::read_only, r.to_string());
  return r;
}

status event_log::close() {
  if (!s_ || s_->closed) return {};
  log_state& s = *s_;
  s.closed = true;
  if (s.read_only) return {};
  status r = s.bg->drain();
  s.heads.set_runner({});
  detail::stop_key_runner(s);
  s.bg.reset();
  // Durability per mode: group and sync make everything durable on close;
  // none leaves it to the page cache (a process exit loses nothing).
  if (s.opts.mode != durability::none && s.write_failure.ok()) {
    status f = s.durable->sync_until(s.shared->committed());
    if (r.ok()) r = f;
  }
  s.durable.reset();
  // Only a clean close leaves the marker; a close after a failure does not.
  if (r.ok() && s.write_failure.ok())
    s.shared->ctl->set_clean_end(s.meta.log_id, s.shared->committed());
  s.shared->ctl->writer_pid().store(0, std::memory_order_relaxed);
  s.lock.reset();
  return r;
}

position event_log::written_position() const {
  return s_->read_only ? committed_position()
                       : position{s_->written.load(std::memory_order_relaxed)};
}
position event_log::committed_position() const { return position{s_->shared->committed()}; }
position event_log::durable_position() const {
  return position{s_->shared->ctl->durable().load(std::memory_order_acquire)};
}
sequence event_log::next_sequence() const {
  return sequence{s_->shared->ctl->next_sequence().load(std::memory_order_acquire)};
}

namespace {

// A read-only log has no writer's head table: it keeps its own, seeded from
// the newest checkpoint and advanced through what has been committed since.
void follow_heads(log_state& s) {
  if (!s.follower_heads_loaded) {
    s.follower_heads_loaded = true;
    const std::string index_dir = log_files::join(s.dir, log_files::kIndexDir);
    auto names = s.fs->list_dir(index_dir);
    std::vector<uint64_t> cps;
    if (names)
      for (const std::string& n : names.value())
        if (auto i = log_files::parse_heads_name(n)) cps.push_back(*i);
    std::sort(cps.rbegin(), cps.rend());
    for (uint64_t cp : cps) {
      heads_file::checkpoint_info info;
      if (heads_file::read(*s.fs, log_files::join(index_dir, log_files::heads_name(cp)),
                           s.meta.log_id, info, s.heads)) {
        s.follower_pos = (cp + 1) << s.meta.log2_capacity;
        break;
      }
      s.heads.clear();
    }
  }
  log_reader r(s.shared, position{s.follower_pos});
  r.without_upcasting();  // the heads need positions and versions only
  event_view v;
  while (true) {
    auto more = r.next(v);
    if (!more || !more.value()) break;  // a damaged record stops the catch-up there
    s.heads.advance(v.stream, v.stream_is_integer, v.version, v.position.value);
  }
  s.follower_pos = r.where().value;
}

// The stream's head as the writer (or a follower, caught up) sees it now.
const head_table::head* find_head(log_state& s, std::string_view key) {
  if (s.read_only) follow_heads(s);
  return s.heads.find(key, s.heads.hash(key));
}

}  // namespace

stream_version event_log::version_of(stream_id stream) const {
  const head_table::head* h = find_head(*s_, stream.bytes());
  return h ? h->version : 0;
}

result<stream_reader> event_log::read_stream(stream_id stream, stream_version from,
                                             read_direction direction, uint64_t max_count) const {
  const std::string_view key = stream.bytes();
  if (key.empty() || key.size() > kMaxStreamIdBytes)
    return status(errc::invalid_argument,
                  "stream id must have 1 to 255 bytes, got " + std::to_string(key.size()));
  const head_table::head* h = find_head(*s_, key);
  stream_reader r;
  if (status st = r.init(s_->shared, std::string(key), h ? h->version : 0,
                         h ? h->last_position : ~uint64_t{0}, from, direction, max_count);
      !st)
    return st;
  return r;
}

result<position> event_log::position_at_time(uint64_t t) const {
  detail::shared_log& sh = *s_->shared;
  const uint64_t commit = sh.committed();
  const uint8_t l2 = sh.log2();
  if (commit == 0) return position{0};
  const uint64_t last = (commit - 1) >> l2;  // the segment holding the newest record
  // The running maximum of timestamps only grows along the log, so the
  // sealed segments' index files can be binary-searched on it.
  uint64_t lo = std::min(sh.first_segment(), last), hi = last;
  bool indexed = true;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    auto seg = sh.segments.get_lazy(mid);  // its index only (an archived one stays uninflated)
    if (!seg) return seg.error();
    const segment_index::view* ix = sh.indexes.get(*seg.value());
    if (!ix) {
      indexed = false;  // scan from the lowest segment not known to be below t
      break;
    }
    if (ix->max_timestamp_through() >= t) hi = mid;
    else lo = mid + 1;
  }
  uint64_t from = (lo << l2) + segment_format::kHeaderSize;
  if (indexed && lo < last) {
    auto seg = sh.segments.get_lazy(lo);  // its index only
    if (!seg) return seg.error();
    if (const segment_index::view* ix = sh.indexes.get(*seg.value())) {
      uint32_t at = 0, to = 0;
      ix->time_scan_range(t, at, to);
      if (at >= segment_format::kHeaderSize) from = (lo << l2) + at;
    }
  }
  log_reader r(s_->shared, position{from});
  r.without_upcasting();  // timestamps only
  event_view v;
  while (true) {
    auto more = r.next(v);
    if (!more) return more.error();
    if (!more.value()) return r.where();
    if (v.timestamp_ns >= t) return v.position;
  }
}

result<position> event_log::position_of(sequence s) const {
  detail::shared_log& sh = *s_->shared;
  const uint64_t commit = sh.committed();
  const uint8_t l2 = sh.log2();
  const uint64_t next = next_sequence().value;
  if (s.value > next)
    return status(errc::not_found, s_->dir + ": no event has sequence " + std::to_string(s.value) +
                                       ": the log holds " + std::to_string(next));
  if (s.value < sh.first_sequence())
    return status(errc::removed, s_->dir + ": sequence " +
                                     std::to_string(s.value) + " was removed by retention: the log now starts at sequence " +
                                     std::to_string(sh.first_sequence()) + " (position " +
                                     std::to_string(sh.start_position()) + ")");
  const uint64_t first_seg = sh.first_segment();
  const uint64_t last = commit == 0 ? first_seg : std::max(first_seg, (commit - 1) >> l2);
  // The first event of segment i, read (and verified) where the segment's
  // records begin; false when the log has none from there on.
  auto first_event = [&](uint64_t i, event_view& v) -> result<bool> {
    log_reader r(s_->shared, position{(i << l2) + segment_format::kHeaderSize});
    r.without_upcasting();  // sequences and positions only
    return r.next(v);
  };
  // Sequences rise along the log: find the last segment whose first event
  // is at or below s. Invariant: segment lo's is (or lo is the first).
  uint64_t lo = first_seg, hi = last;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo + 1) / 2;
    event_view v;
    auto got = first_event(mid, v);
    if (!got) return got.error();
    if (got.value() && v.sequence.value <= s.value) lo = mid;
    else hi = mid - 1;
  }
  uint64_t from = commit == 0 ? 0 : (lo << l2) + segment_format::kHeaderSize;
  // A sealed segment's index samples every kTimeStride-th event: start at
  // the sample at or below s (when no repair's hole makes the count lie).
  if (lo < last) {
    auto seg = sh.segments.get_lazy(lo);  // its index only
    if (!seg) return seg.error();
    if (const segment_index::view* ix = sh.indexes.get(*seg.value());
        ix && s.value >= ix->first_sequence()) {
      const uint64_t k = (s.value - ix->first_sequence()) / segment_index::kTimeStride;
      if (const uint32_t off = ix->stride_offset(k); off >= segment_format::kHeaderSize) {
        log_reader probe(s_->shared, position{(lo << l2) + off});
        probe.without_upcasting();
        event_view v;
        auto got = probe.next(v);
        if (!got) return got.error();
        if (got.value() && v.sequence.value <= s.value) from = v.position.value;
      }
    }
  }
  log_reader r(s_->shared, position{from});
  r.without_upcasting();
  event_view v;
  uint64_t after_last = ~uint64_t{0};  // the sequence after the last event read (none yet)
  while (true) {
    auto more = r.next(v);
    if (!more) return more.error();
    if (!more.value()) {
      // The end of what is committed: s is the next sequence (the end of the
      // log) when the last event read precedes it, or when the control block
      // says so; keep reading only while the writer commits more (a stale
      // control block on a read-only log must not make this spin).
      if (after_last == s.value || s.value >= next_sequence().value) return r.where();
      if (sh.committed() > r.where().value) continue;
      break;
    }
    after_last = v.sequence.value + 1;
    if (v.sequence.value == s.value) return v.position;
    if (v.sequence.value > s.value) break;
  }
  return status(errc::not_found, s_->dir + ": no event has sequence " + std::to_string(s.value) +
                                     " (a repair's hole stands for it, or the committed log ends before it)");
}

result<stream_version> event_log::version_at(stream_id stream, position p) const {
  const std::string_view key = stream.bytes();
  if (key.empty() || key.size() > kMaxStreamIdBytes)
    return status(errc::invalid_argument,
                  "stream id must have 1 to 255 bytes, got " + std::to_string(key.size()));
  const head_table::head* h = find_head(*s_, key);
  if (!h) return stream_version{0};
  if (h->last_position < p.value) return h->version;
  // Positions rise with versions: find the last version whose event lies
  // before p. Invariant: every version <= lo is before p, every one > hi is not.
  stream_version lo = 0, hi = h->version - 1;
  const stream_version newest = h->version;
  const uint64_t newest_pos = h->last_position;
  while (lo < hi) {
    const stream_version mid = lo + (hi - lo + 1) / 2;
    stream_reader r;
    if (status st = r.init(s_->shared, std::string(key), newest, newest_pos, mid, read_direction::forward, 1,
                           /*hide=*/false);
        !st)
      return st;
    r.without_upcasting();  // only its position is wanted
    event_view e;
    auto got = r.next(e);
    if (!got) return got.error();
    if (!got.value())
      return status(errc::corruption, s_->dir + ": stream '" + detail::stream_text(stream) + "' has no event at version " +
                                          std::to_string(mid) + " below its head " + std::to_string(newest));
    if (e.position < p) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

result<stream_version> event_log::version_at_time(stream_id stream, uint64_t t) const {
  if (t == UINT64_MAX) return version_at(stream, position{UINT64_MAX});
  auto p = position_at_time(t + 1);
  if (!p) return p.error();
  return version_at(stream, p.value());
}

log_reader event_log::read(position from) const { return log_reader(s_->shared, from); }
log_reader event_log::read(position from, event_filter filter) const {
  return log_reader(s_->shared, from, std::move(filter));
}

log_stats event_log::stats() const {
  const log_state& s = *s_;
  log_stats st;
  st.segment_bytes = s.capacity();
  st.committed = committed_position();
  st.durable = durable_position();
  st.written = written_position();
  st.events = next_sequence().value;
  if (s.read_only) follow_heads(const_cast<log_state&>(s));
  st.streams = s.heads.size();
  const uint64_t end_index = (st.committed.value == 0 ? 0 : (st.committed.value - 1) >> s.meta.log2_capacity);
  st.start = position{s.shared->start_position()};
  st.first_sequence = sequence{s.shared->first_sequence()};
  st.segments = end_index - std::min(end_index, s.shared->first_segment()) + 1;
  st.bytes_on_disk = st.segments * s.capacity();
  if (!s.read_only) {
    const control_block& ctl = *s.shared->ctl;
    auto get = [&ctl](ctl_counter c) { return ctl.counter(c).load(std::memory_order_relaxed); };
    st.rollovers = get(ctl_counter::rollovers);
    st.rollovers_that_waited = get(ctl_counter::rollovers_waited);
    st.longest_rollover_wait_ns = get(ctl_counter::longest_rollover_wait_ns);
    st.longest_seal_wait_ns = get(ctl_counter::longest_seal_wait_ns);
  }
  return st;
}

result<retention_result> event_log::retain(const retention_policy& policy, bool dry_run) {
  log_state& s = *s_;
  if (s.read_only) return status(errc::read_only, s.dir + ": log is open read-only; retention needs the writer");
  if (s.closed) return status(errc::invalid_argument, s.dir + ": log is closed");
  // The caller has the result: the observer hears of passes only from the
  // background policy, where nobody else would.
  auto r = detail::run_retention(*s.shared, s.active->index(), policy, s.now_ns(), dry_run, nullptr);
  if (r && !dry_run) s.first_segment = r.value().first_segment;
  return r;
}

result<archive_result> event_log::archive(const archive_options& options, bool dry_run) {
  log_state& s = *s_;
  if (s.read_only) return status(errc::read_only, s.dir + ": log is open read-only; archiving needs the writer");
  if (s.closed) return status(errc::invalid_argument, s.dir + ": log is closed");
  return detail::run_archive(*s.shared, s.active->index(), options, s.now_ns(), dry_run);
}

log_metrics event_log::metrics() const {
  const control_block& ctl = *s_->shared->ctl;
  log_metrics m;
  m.committed = committed_position();
  m.durable = durable_position();
  m.next_sequence = next_sequence().value;
  s_->shared->check_start();  // a read-only log: what a writer elsewhere removed
  m.start = position{s_->shared->start_position()};
  m.first_sequence = s_->shared->first_sequence();
  m.writer_alive = !s_->read_only ? !s_->closed : writer_lock::is_held(s_->dir);
  m.writer_pid = ctl.writer_pid().load(std::memory_order_relaxed);
  uint64_t c[(kCountersEnd - kCountersBegin) / 8];
  ctl.read_counters(c);
  auto get = [&c](ctl_counter k) { return c[(static_cast<size_t>(k) - kCountersBegin) / 8]; };
  m.counters_present = get(ctl_counter::version) == 1;
  if (!m.counters_present) return m;
  m.session_start_ns = get(ctl_counter::session_start_ns);
  m.open_ns = get(ctl_counter::open_ns);
  // Events and bytes appended are the distance the watermarks moved since
  // the session began: nothing on the hot path counts them.
  m.append_calls = get(ctl_counter::append_calls);
  m.append_events = m.next_sequence - std::min(m.next_sequence, get(ctl_counter::start_sequence));
  m.append_bytes = m.committed.value - std::min(m.committed.value, get(ctl_counter::start_position));
  m.append_conflicts = get(ctl_counter::append_conflicts);
  m.append_refusals = get(ctl_counter::append_refusals);
  m.rollovers = get(ctl_counter::rollovers);
  m.rollovers_that_waited = get(ctl_counter::rollovers_waited);
  m.longest_rollover_wait_ns = get(ctl_counter::longest_rollover_wait_ns);
  m.longest_seal_wait_ns = get(ctl_counter::longest_seal_wait_ns);
  m.segments_sealed = get(ctl_counter::segments_sealed);
  m.syncs = get(ctl_counter::syncs);
  m.sync_failures = get(ctl_counter::sync_failures);
  m.sync_bytes = get(ctl_counter::sync_bytes);
  m.sync_ns_total = get(ctl_counter::sync_ns_total);
  m.longest_sync_ns = get(ctl_counter::longest_sync_ns);
  for (int i = 0; i < kSyncBuckets; ++i)
    m.sync_latency[i] = get(static_cast<ctl_counter>(static_cast<size_t>(ctl_counter::sync_bucket0) + 8 * i));
  m.recovery_cut = get(ctl_counter::recovery_cut);
  m.recovery_set_aside = get(ctl_counter::recovery_set_aside);
  m.recovery_removed_empty = get(ctl_counter::recovery_removed_empty);
  m.recovery_holes = get(ctl_counter::recovery_hole);
  m.recovery_rebuilt = get(ctl_counter::recovery_rebuilt);
  m.recovery_notes = get(ctl_counter::recovery_note);
  m.recovery_bytes_set_aside = get(ctl_counter::recovery_bytes);
  return m;
}

const std::string& event_log::dir() const { return s_->dir; }
const log_options& event_log::options() const { return s_->opts; }

status event_log::set_upcasters(std::shared_ptr<const upcasters> u) {
  log_state& s = *s_;
  if (s.closed) return status(errc::invalid_argument, s.dir + ": log is closed");
  if (u)
    if (status v = u->validate(); !v) return v;
  s.opts.upcasters = u;
  s.shared->set_upcasters(std::move(u));
  return {};
}
bool event_log::is_read_only() const { return s_->read_only; }

}  // namespace varve
