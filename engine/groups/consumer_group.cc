// consumer_group (include/varve/consumer_group.h): a member's cursor over the
// log (one subscription, rewound when it takes over a partition behind it),
// its leases and commits in DIR/groups/NAME.group (group_file.h), and the
// dead-letter path.
#include "varve/consumer_group.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

#include <xxhash.h>

#include "base/log_files.h"
#include "base/meta_file.h"
#include "engine/groups/group_file.h"
#include "engine/log_access.h"
#include "engine/log_state.h"
#include "varve/log.h"
#include "varve/subscription.h"
#include "varve/type_registry.h"

namespace varve {

namespace detail {

struct group_part {
  bool owned = false;
  uint64_t epoch = 0;
  uint64_t committed = 0;      // as the file has it (our last write or the takeover's read)
  uint64_t acked = 0;          // every event of the partition before it is processed
  uint64_t next = 0;           // deliver events of the partition at or after it
  uint64_t delivered_end = 0;  // end of the last delivered event
  uint64_t retry_position = UINT64_MAX;
  uint32_t retries = 0;
  bool retry_dirty = false;    // retries changed since the last write
};

struct group_state {
  const event_log* log = nullptr;
  event_log* writable = nullptr;
  std::string name;
  std::string groups_dir;
  group_file::file f;
  uint64_t log_id = 0;
  uint32_t partitions = 0;
  group_options opts;
  uint64_t member_id = 0;
  uint32_t slot = 0;
  uint64_t boot = 0;
  std::string dlq_stream;
  std::vector<group_part> parts;
  std::optional<subscription> sub;
  // Every event before it has been handled: delivered, or passed over (a
  // partition not ours, one delivered before, the dead letters). Not the
  // subscription's where(): an event read but not yet handed out (next()
  // renewing the lease between the two) is not handled, and a partition
  // given away then must not be committed past it.
  uint64_t scanned = 0;
  std::chrono::steady_clock::time_point last_heartbeat;
  std::chrono::steady_clock::time_point last_commit;
  // automatic policy: the event next() returned last, acknowledged by the next call.
  bool have_prev = false;
  uint32_t prev_part = 0;
  uint64_t prev_end = 0;
  uint32_t uncommitted = 0;
  std::atomic<bool> cancelled{false};
  bool left = false;
};

}  // namespace detail

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;
using detail::group_part;
using detail::group_state;

constexpr const char* kGroupsDir = "groups";
constexpr const char* kGroupSuffix = ".group";
// next() waits in slices this long, so cancel() (a flag) is seen quickly.
constexpr auto kSlice = 50ms;

// Leases are in CLOCK_BOOTTIME: one clock for every process of the host,
// never stepped by NTP or settimeofday (a CLOCK_REALTIME step would expire
// every lease at once, or keep a dead member's for hours), and it counts
// time suspended. It restarts at boot, so each lease also records the boot
// it belongs to; one from another boot is expired.
uint64_t boot_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

uint64_t wall_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

uint64_t this_boot() {
  static const uint64_t id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string s;
    std::getline(in, s);
    const uint64_t h = XXH3_64bits(s.data(), s.size());
    return h ? h : 1;
  }();
  return id;
}

uint64_t random_id() {
  std::random_device rd;
  for (;;) {
    const uint64_t v = (uint64_t(rd()) << 32) ^ rd() ^ (uint64_t(::getpid()) << 17) ^ boot_ns();
    if (v != 0) return v;
  }
}

std::string group_path(const std::string& groups_dir, std::string_view group) {
  return log_files::join(groups_dir, std::string(group) + kGroupSuffix);
}

bool member_alive(const group_file::member& m, uint64_t boot, uint64_t now) {
  return m.id != 0 && m.boot == boot && m.expiry_ns > now;
}

std::vector<uint64_t> live_members(const group_file::image& img, uint64_t boot, uint64_t now) {
  std::vector<uint64_t> ids;
  for (const auto& m : img.members)
    if (member_alive(m, boot, now)) ids.push_back(m.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

bool lease_alive(const group_file::lease& l, const std::vector<uint64_t>& live, uint64_t boot, uint64_t now) {
  return l.owner != 0 && l.boot == boot && l.expiry_ns > now &&
         std::binary_search(live.begin(), live.end(), l.owner);
}

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x80) {
          // Not UTF-8 checked: anything outside ASCII is escaped byte by byte
          // as \u00XX, so the payload is always valid JSON.
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

status ensure_dir(const std::string& log_dir, const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) return {};
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return status(errno == EROFS || errno == EACCES ? errc::read_only : errc::io_error,
                  dir + ": mkdir: " + std::strerror(errno));
  // The directory's entry must be durable before a file in it can be.
  if (const int fd = ::open(log_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  return {};
}

result<uint64_t> log_id_of(const std::string& log_dir) {
  segment_format::meta meta;
  if (status r = meta_file::read(*posix_file_system(), log_dir, meta); !r) return r;
  return meta.log_id;
}

// What a commit of partition p writes: the newest acknowledgement, or, with
// nothing delivered and unacknowledged, how far the member has handled the
// log (every event of p before it was delivered and acknowledged).
uint64_t commit_value(const group_state& s, const group_part& ps) {
  if (ps.delivered_end > ps.acked) return ps.acked;
  const uint64_t handled = s.sub ? s.scanned : ps.acked;
  return std::max(ps.acked, handled);
}

// The subscription restarts at the lowest position any owned partition still
// needs (a takeover can need events behind the cursor); none without one.
status reposition(group_state& s) {
  uint64_t low = UINT64_MAX;
  for (const group_part& ps : s.parts)
    if (ps.owned) low = std::min(low, ps.next);
  if (low == UINT64_MAX) {
    s.sub.reset();
    return {};
  }
  if (s.sub && s.sub->where().value <= low) return {};
  auto sub = subscription::open(*s.log, position{low});
  if (!sub) {
    return status(sub.error().code() == errc::invalid_argument ? errc::corruption : sub.error().code(),
                  s.f.path() + ": a committed position (" + std::to_string(low) +
                      ") cannot be read: " + sub.error().message());
  }
  s.sub.emplace(std::move(sub.value()));
  s.scanned = low;
  return {};
}

// Writes partition p's commit copy (caller holds a lock covering it and has
// checked the lease). Not synced here.
status write_commit(group_state& s, uint32_t p, const group_file::commit& current, uint64_t value) {
  group_part& ps = s.parts[p];
  group_file::commit c;
  c.gen = current.gen + 1;
  c.position = value;
  c.committed_ns = wall_ns();
  c.retry_position = ps.retry_position;
  c.retries = ps.retries;
  c.member = s.member_id;
  std::byte buf[group_file::kCopySize];
  group_file::encode_commit(c, buf);
  if (status r = s.f.write_copy(group_file::commit_offset(p), c.gen, buf); !r) return r;
  ps.committed = value;
  ps.retry_dirty = false;
  return {};
}

status write_lease(group_state& s, uint32_t p, const group_file::lease& current, uint64_t owner,
                   uint64_t expiry, uint64_t epoch) {
  group_file::lease l;
  l.gen = current.gen + 1;
  l.owner = owner;
  l.expiry_ns = expiry;
  l.boot = s.boot;
  l.epoch = epoch;
  std::byte buf[group_file::kCopySize];
  group_file::encode_lease(l, buf);
  return s.f.write_copy(group_file::lease_offset(p), l.gen, buf);
}

status write_member(group_state& s, uint32_t slot, uint64_t current_gen, uint64_t id, uint64_t expiry) {
  group_file::member m;
  m.gen = current_gen + 1;
  m.id = id;
  m.expiry_ns = expiry;
  m.boot = s.boot;
  m.pid = uint32_t(::getpid());
  m.name = id ? s.opts.member : std::string();
  std::byte buf[group_file::kCopySize];
  group_file::encode_member(m, buf);
  return s.f.write_copy(group_file::member_offset(slot), m.gen, buf);
}

// Renews this member and its leases, gives up partitions beyond its quota
// and takes free or expired ones up to it. One critical section under the
// whole-file lock; the sync (only when a commit was written) after it.
status do_heartbeat(group_state& s) {
  const uint64_t timeout = uint64_t(std::chrono::nanoseconds(s.opts.session_timeout).count());
  bool wrote_commit = false;
  {
    group_file::lock_guard lock(s.f, 0, 0);
    if (status r = lock.acquire(true); !r) return r;
    auto img = s.f.read(s.log_id);
    if (!img) return img.error();
    const uint64_t now = boot_ns();
    // Our slot, unless a joiner reused it after we expired: then another.
    if (img->members[s.slot].id != s.member_id) {
      bool found = false;
      for (uint32_t i = 0; i < group_file::kMaxMembers && !found; ++i) {
        if (!member_alive(img->members[i], s.boot, now)) {
          s.slot = i;
          found = true;
        }
      }
      if (!found)
        return status(errc::locked, s.f.path() + ": all " + std::to_string(group_file::kMaxMembers) +
                                        " member slots are taken by live members");
    }
    if (status r = write_member(s, s.slot, img->members[s.slot].gen, s.member_id, now + timeout); !r) return r;
    img->members[s.slot].id = s.member_id;
    img->members[s.slot].boot = s.boot;
    img->members[s.slot].expiry_ns = now + timeout;
    const std::vector<uint64_t> live = live_members(*img, s.boot, now);
    const uint32_t n = uint32_t(live.size());
    const uint32_t rank = uint32_t(std::lower_bound(live.begin(), live.end(), s.member_id) - live.begin());
    const uint32_t quota = s.partitions / n + (rank < s.partitions % n ? 1 : 0);

    std::vector<uint32_t> mine;
    for (uint32_t p = 0; p < s.partitions; ++p) {
      group_part& ps = s.parts[p];
      if (!ps.owned) continue;
      const auto& l = img->parts[p].l;
      if (l.owner != s.member_id || l.epoch != ps.epoch) {
        ps.owned = false;  // taken over while we were expired: its new owner redelivers
        continue;
      }
      mine.push_back(p);
    }
    // Surplus goes first (committed, so its next owner starts where we are).
    while (mine.size() > quota) {
      const uint32_t p = mine.back();
      mine.pop_back();
      group_part& ps = s.parts[p];
      const uint64_t v = commit_value(s, ps);
      if (v > ps.committed || ps.retry_dirty) {
        if (status r = write_commit(s, p, img->parts[p].c, v); !r) return r;
        wrote_commit = true;
      }
      if (status r = write_lease(s, p, img->parts[p].l, 0, 0, ps.epoch); !r) return r;
      ps.owned = false;
      if (s.have_prev && s.prev_part == p) s.have_prev = false;
    }
    for (uint32_t p : mine)
      if (status r = write_lease(s, p, img->parts[p].l, s.member_id, now + timeout, s.parts[p].epoch); !r)
        return r;
    // Free and expired partitions, looked for from a point that differs per
    // member so that joiners do not all reach for partition 0.
    const uint32_t start = n ? uint32_t(uint64_t(rank) * s.partitions / n) : 0;
    for (uint32_t k = 0; k < s.partitions && mine.size() < quota; ++k) {
      const uint32_t p = (start + k) % s.partitions;
      group_part& ps = s.parts[p];
      if (ps.owned) continue;
      const auto& part = img->parts[p];
      if (lease_alive(part.l, live, s.boot, now)) continue;
      const uint64_t epoch = part.l.epoch + 1;
      if (status r = write_lease(s, p, part.l, s.member_id, now + timeout, epoch); !r) return r;
      ps = group_part{};
      ps.owned = true;
      ps.epoch = epoch;
      ps.committed = ps.acked = ps.next = ps.delivered_end = part.c.position;
      ps.retry_position = part.c.retry_position;
      ps.retries = part.c.retries;
      mine.push_back(p);
    }
  }
  s.last_heartbeat = steady::now();
  if (wrote_commit)
    if (status r = s.f.sync(); !r) return r;
  return reposition(s);
}

// Writes the commits that moved, each under its partition's range lock and
// only while the lease is still ours; one fdatasync for all.
status do_commit(group_state& s) {
  bool wrote = false;
  for (uint32_t p = 0; p < s.partitions; ++p) {
    group_part& ps = s.parts[p];
    if (!ps.owned) continue;
    const uint64_t v = commit_value(s, ps);
    if (v <= ps.committed && !ps.retry_dirty) continue;
    group_file::lock_guard lock(s.f, group_file::commit_offset(p), group_file::kPartitionSlotSize);
    if (status r = lock.acquire(true); !r) return r;
    auto part = s.f.read_partition(p);
    if (!part) return part.error();
    if (part->l.owner != s.member_id || part->l.epoch != ps.epoch) {
      // Fenced: another member took the partition while ours expired; writing
      // would move its position under it.
      ps.owned = false;
      if (s.have_prev && s.prev_part == p) s.have_prev = false;
      continue;
    }
    if (status r = write_commit(s, p, part->c, v); !r) return r;
    wrote = true;
  }
  s.uncommitted = 0;
  s.last_commit = steady::now();
  // Crash story: a process crash after the writes keeps them (page cache); a
  // power loss before this sync may tear a copy, and the reader then uses
  // the previous commit: those events are delivered again.
  if (wrote) return s.f.sync();
  return {};
}

void ack_internal(group_state& s, uint32_t p, uint64_t end) {
  group_part& ps = s.parts[p];
  if (ps.owned && end > ps.acked) ps.acked = end;
  if (ps.retry_position != UINT64_MAX && ps.retry_position < end) {
    ps.retry_position = UINT64_MAX;
    ps.retries = 0;
    ps.retry_dirty = true;
  }
}

std::chrono::nanoseconds heartbeat_every(const group_state& s) { return s.opts.session_timeout / 4; }

}  // namespace

uint32_t group_partition_of(std::string_view stream, uint32_t partitions) {
  if (partitions == 0) return 0;
  return uint32_t(XXH3_64bits(stream.data(), stream.size()) % partitions);
}

consumer_group::consumer_group() = default;
consumer_group::consumer_group(consumer_group&&) noexcept = default;
consumer_group& consumer_group::operator=(consumer_group&& o) noexcept {
  if (this != &o) {
    if (s_) (void)leave_impl(false);
    s_ = std::move(o.s_);
  }
  return *this;
}
// Not leave(): a member destroyed while its handler unwinds (an exception)
// must not count the event it was handling as processed.
consumer_group::~consumer_group() {
  if (s_) (void)leave_impl(false);
}

bool consumer_group::valid_name(std::string_view group) { return subscription_store::valid_name(group); }

result<consumer_group> consumer_group::join(const event_log& log, std::string_view group, group_options options) {
  return join_impl(log, nullptr, group, std::move(options));
}

result<consumer_group> consumer_group::join(event_log& log, std::string_view group, group_options options) {
  return join_impl(log, &log, group, std::move(options));
}

result<consumer_group> consumer_group::join_impl(const event_log& log, event_log* writable, std::string_view group,
                                                 group_options options) {
  if (!valid_name(group))
    return status(errc::invalid_argument, "group name '" + std::string(group) +
                                              "': use 1 to 100 of A-Z a-z 0-9 . _ - (not starting with '.')");
  if (options.partitions > group_file::kMaxPartitions)
    return status(errc::invalid_argument, "group " + std::string(group) + ": " +
                                              std::to_string(options.partitions) + " partitions (at most " +
                                              std::to_string(group_file::kMaxPartitions) + ")");
  if (options.session_timeout < 100ms)
    return status(errc::invalid_argument, "group " + std::string(group) + ": session_timeout below 100 ms");
  if (options.commit_every == 0) options.commit_every = 1;
  if (options.max_retries == 0) options.max_retries = 1;
  if (options.member.size() > group_file::kMemberNameBytes) options.member.resize(group_file::kMemberNameBytes);

  auto st = std::make_unique<group_state>();
  st->log = &log;
  st->writable = writable;
  st->name = std::string(group);
  st->opts = std::move(options);
  st->log_id = detail::log_access::state(log).meta.log_id;
  st->boot = this_boot();
  st->member_id = random_id();
  st->dlq_stream = "$dlq-" + st->name;
  st->groups_dir = log_files::join(log.dir(), kGroupsDir);
  if (status r = ensure_dir(log.dir(), st->groups_dir); !r) return r;
  const std::string path = group_path(st->groups_dir, group);
  group_file::header h;
  h.partitions = st->opts.partitions ? st->opts.partitions : group_file::kDefaultPartitions;
  h.log_id = st->log_id;
  h.created_ns = wall_ns();
  const uint64_t start = st->opts.start == group_start::end ? log.committed_position().value : 0;
  auto f = group_file::file::create_or_open(st->groups_dir, path, group_file::fresh(h, start));
  if (!f) return f.error();
  st->f = std::move(f.value());
  {
    group_file::lock_guard lock(st->f, 0, 0);
    if (status r = lock.acquire(true); !r) return r;
    auto img = st->f.read(st->log_id);
    if (!img) return img.error();
    if (st->opts.partitions != 0 && img->h.partitions != st->opts.partitions)
      return status(errc::invalid_argument,
                    path + ": the group has " + std::to_string(img->h.partitions) +
                        " partitions, fixed when it was created; asked for " +
                        std::to_string(st->opts.partitions));
    st->partitions = img->h.partitions;
    const uint64_t now = boot_ns();
    bool found = false;
    for (uint32_t i = 0; i < group_file::kMaxMembers && !found; ++i) {
      if (!member_alive(img->members[i], st->boot, now)) {
        st->slot = i;
        found = true;
      }
    }
    if (!found)
      return status(errc::locked, path + ": all " + std::to_string(group_file::kMaxMembers) +
                                      " member slots are taken by live members");
    // Registered here; do_heartbeat renews it and takes partitions.
    const uint64_t timeout = uint64_t(std::chrono::nanoseconds(st->opts.session_timeout).count());
    if (status r = write_member(*st, st->slot, img->members[st->slot].gen, st->member_id, now + timeout); !r)
      return r;
  }
  st->parts.resize(st->partitions);
  st->last_commit = steady::now();
  if (status r = do_heartbeat(*st); !r) return r;
  consumer_group g;
  g.s_ = std::move(st);
  return g;
}

result<bool> consumer_group::next(event_view& out, std::chrono::nanoseconds timeout) {
  if (!s_ || s_->left) return status(errc::invalid_argument, "consumer group member is not joined");
  group_state& s = *s_;
  timeout = std::min<std::chrono::nanoseconds>(timeout, std::chrono::hours(24 * 365 * 50));
  const auto deadline = steady::now() + timeout;
  if (s.opts.commit == commit_policy::automatic) {
    if (s.have_prev) {
      ack_internal(s, s.prev_part, s.prev_end);
      s.have_prev = false;
      ++s.uncommitted;
    }
    if (s.uncommitted > 0 &&
        (s.uncommitted >= s.opts.commit_every || steady::now() - s.last_commit >= s.opts.commit_interval))
      if (status r = do_commit(s); !r) return r;
  }
  for (;;) {
    if (s.cancelled.load(std::memory_order_acquire))
      return status(errc::cancelled, s.f.path() + ": consumer group member cancelled");
    auto now = steady::now();
    if (now - s.last_heartbeat >= heartbeat_every(s)) {
      // Idle partitions' positions follow the cursor, so wait_until() and lag
      // see them caught up; at most once per heartbeat.
      if (s.opts.commit == commit_policy::automatic)
        if (status r = do_commit(s); !r) return r;
      if (status r = do_heartbeat(s); !r) return r;
      now = steady::now();
    }
    const auto hb_due = s.last_heartbeat + heartbeat_every(s);
    auto slice = std::min<steady::duration>({deadline - now, hb_due - now, steady::duration(kSlice)});
    if (slice < steady::duration::zero()) slice = steady::duration::zero();
    if (!s.sub) {
      if (now >= deadline) return false;
      std::this_thread::sleep_for(slice);
      continue;
    }
    event_view e;
    auto got = s.sub->next(e, slice);
    if (!got) return got.error();
    if (!*got) {
      s.scanned = s.sub->where().value;  // caught up: everything read was handled
      if (steady::now() >= deadline) return false;
      continue;
    }
    const uint64_t end = e.position.value + e.record_bytes;
    if (e.stream == s.dlq_stream) {
      s.scanned = end;
      continue;
    }
    const uint32_t p = group_partition_of(e.stream, s.partitions);
    if (!s.parts[p].owned || e.position.value < s.parts[p].next) {
      s.scanned = end;
      continue;
    }
    // A wait that overran the heartbeat (the process was stopped, or the
    // machine starved it) may have outlived the lease: renew first, and
    // deliver only what is still ours.
    if (steady::now() - s.last_heartbeat >= heartbeat_every(s)) {
      if (status r = do_heartbeat(s); !r) return r;
      if (!s.parts[p].owned || e.position.value < s.parts[p].next) continue;
    }
    group_part& ps = s.parts[p];
    // Unless the heartbeat just moved the cursor back (a takeover), which
    // then handles everything from there again.
    if (s.sub && s.sub->where().value == end) s.scanned = end;
    ps.next = end;
    ps.delivered_end = std::max(ps.delivered_end, end);
    if (s.opts.commit == commit_policy::automatic) {
      s.have_prev = true;
      s.prev_part = p;
      s.prev_end = end;
    }
    out = e;
    return true;
  }
}

status consumer_group::ack(const event_view& e) {
  if (!s_ || s_->left) return status(errc::invalid_argument, "consumer group member is not joined");
  const uint32_t p = group_partition_of(e.stream, s_->partitions);
  const uint64_t end = e.position.value + e.record_bytes;
  // Not delivered under the current lease (the partition changed hands since,
  // or it was never delivered): acknowledging it could skip events, so the
  // ack is dropped; the partition's owner delivers it (again).
  if (!s_->parts[p].owned || end > s_->parts[p].next) return {};
  ack_internal(*s_, p, end);
  if (s_->have_prev && s_->prev_part == p && s_->prev_end <= end) s_->have_prev = false;
  return {};
}

status consumer_group::commit() {
  if (!s_ || s_->left) return status(errc::invalid_argument, "consumer group member is not joined");
  return do_commit(*s_);
}

status consumer_group::nack(const event_view& e, std::string_view error) {
  if (!s_ || s_->left) return status(errc::invalid_argument, "consumer group member is not joined");
  group_state& s = *s_;
  const uint32_t p = group_partition_of(e.stream, s.partitions);
  group_part& ps = s.parts[p];
  if (!ps.owned) return {};  // lost meanwhile: its new owner delivers it again
  if (s.have_prev && s.prev_part == p) s.have_prev = false;
  if (ps.retry_position != e.position.value) {
    ps.retry_position = e.position.value;
    ps.retries = 0;
  }
  ++ps.retries;
  ps.retry_dirty = true;
  if (ps.retries < s.opts.max_retries) {
    // Delivered again next: the cursor goes back to it; events of other
    // partitions in between are not delivered twice (their `next` is past).
    ps.next = std::min(ps.next, e.position.value);
    if (s.sub && s.sub->where().value > e.position.value) s.sub.reset();
    if (status r = reposition(s); !r) return r;
    return do_commit(s);  // the count survives a crash of this member
  }
  if (!s.writable || s.writable->is_read_only())
    return status(errc::read_only, s.f.path() + ": event at position " + std::to_string(e.position.value) +
                                       " failed " + std::to_string(ps.retries) +
                                       " times; the dead-letter stream " + s.dlq_stream +
                                       " needs a writable log (this member joined a read-only one)");
  std::string json = "{\"group\":";
  json_string(json, s.name);
  json += ",\"partition\":" + std::to_string(p) + ",\"position\":" + std::to_string(e.position.value) +
          ",\"sequence\":" + std::to_string(e.sequence.value) + ",\"stream\":";
  json_string(json, e.stream);
  json += ",\"stream_is_integer\":" + std::string(e.stream_is_integer ? "true" : "false") +
          ",\"type\":" + std::to_string(e.type) + ",\"attempts\":" + std::to_string(ps.retries) + ",\"error\":";
  json_string(json, error);
  json += "}";
  uint32_t type = 0;
  if (auto reg = type_registry::open(s.log->dir()); reg)
    if (auto id = reg->id_for("varve.dead_letter"); id) type = *id;
  event_data d;
  d.type = type;
  d.payload = event_data::bytes(json);
  d.content = content_type::json;
  auto r = s.writable->append(stream_id(std::string_view(s.dlq_stream)), expected_version::any(), d);
  if (!r) return r.error();
  ack_internal(s, p, e.position.value + e.record_bytes);
  ps.next = std::max(ps.next, e.position.value + e.record_bytes);
  return do_commit(s);
}

status consumer_group::heartbeat() {
  if (!s_ || s_->left) return status(errc::invalid_argument, "consumer group member is not joined");
  return do_heartbeat(*s_);
}

status consumer_group::leave() { return leave_impl(true); }

status consumer_group::leave_impl(bool ack_last) {
  if (!s_ || s_->left) return {};
  group_state& s = *s_;
  s.left = true;
  if (ack_last && s.opts.commit == commit_policy::automatic && s.have_prev) {
    ack_internal(s, s.prev_part, s.prev_end);
    s.have_prev = false;
  }
  bool wrote = false;
  {
    group_file::lock_guard lock(s.f, 0, 0);
    if (status r = lock.acquire(true); !r) return r;
    auto img = s.f.read(s.log_id);
    if (!img) return img.error();
    for (uint32_t p = 0; p < s.partitions; ++p) {
      group_part& ps = s.parts[p];
      if (!ps.owned) continue;
      const auto& part = img->parts[p];
      ps.owned = false;
      if (part.l.owner != s.member_id || part.l.epoch != ps.epoch) continue;
      const uint64_t v = commit_value(s, ps);
      if (v > ps.committed || ps.retry_dirty) {
        if (status r = write_commit(s, p, part.c, v); !r) return r;
        wrote = true;
      }
      if (status r = write_lease(s, p, part.l, 0, 0, ps.epoch); !r) return r;
    }
    if (img->members[s.slot].id == s.member_id)
      if (status r = write_member(s, s.slot, img->members[s.slot].gen, 0, 0); !r) return r;
  }
  s.sub.reset();
  // Leases and the member slot need no sync (a power loss ends every lease
  // anyway); the commits do.
  if (wrote) return s.f.sync();
  return {};
}

void consumer_group::cancel() {
  if (s_) s_->cancelled.store(true, std::memory_order_release);
}

std::vector<uint32_t> consumer_group::owned_partitions() const {
  std::vector<uint32_t> out;
  if (!s_) return out;
  for (uint32_t p = 0; p < s_->partitions; ++p)
    if (s_->parts[p].owned) out.push_back(p);
  return out;
}

uint64_t consumer_group::member_id() const { return s_ ? s_->member_id : 0; }
uint32_t consumer_group::partitions() const { return s_ ? s_->partitions : 0; }
const std::string& consumer_group::file() const {
  static const std::string none;
  return s_ ? s_->f.path() : none;
}

namespace {

group_description describe_image(const group_file::image& img, const std::string& path, uint64_t log_end) {
  group_description d;
  d.file = path;
  d.partitions = img.h.partitions;
  d.created_ns = img.h.created_ns;
  d.fell_back = img.fell_back;
  const uint64_t boot = this_boot(), now = boot_ns();
  const std::vector<uint64_t> live = live_members(img, boot, now);
  for (const auto& m : img.members) {
    if (m.id == 0) continue;
    group_member_info mi;
    mi.id = m.id;
    mi.name = m.name;
    mi.pid = m.pid;
    mi.alive = member_alive(m, boot, now);
    d.members.push_back(mi);
  }
  for (uint32_t p = 0; p < img.h.partitions; ++p) {
    const auto& part = img.parts[p];
    group_partition_info pi;
    pi.partition = p;
    pi.committed = position{part.c.position};
    pi.owner = part.l.owner;
    pi.owner_alive = lease_alive(part.l, live, boot, now);
    pi.epoch = part.l.epoch;
    pi.retry_position = position{part.c.retry_position};
    pi.retries = part.c.retries;
    pi.lag_bytes = log_end > part.c.position ? log_end - part.c.position : 0;
    if (pi.owner_alive)
      for (auto& m : d.members)
        if (m.id == pi.owner) ++m.partitions;
    d.slots.push_back(pi);
  }
  return d;
}

result<group_file::image> read_locked(group_file::file& f, uint64_t log_id) {
  group_file::lock_guard lock(f, 0, 0);
  if (status r = lock.acquire(false); !r) return r;
  return f.read(log_id);
}

}  // namespace

// describe() and wait_until() read through a descriptor of their own: OFD
// locks belong to the open file description, so a shared lock taken through
// the member's own one from another thread would convert (and its unlock
// release) a heartbeat's exclusive lock.
result<group_description> consumer_group::describe() const {
  if (!s_) return status(errc::invalid_argument, "consumer group member is not joined");
  auto f = group_file::file::open(s_->f.path(), false);
  if (!f) return f.error();
  auto img = read_locked(*f, s_->log_id);
  if (!img) return img.error();
  return describe_image(*img, s_->f.path(), s_->log->committed_position().value);
}

result<bool> consumer_group::wait_until(position p, std::chrono::nanoseconds timeout) const {
  if (!s_) return status(errc::invalid_argument, "consumer group member is not joined");
  timeout = std::min<std::chrono::nanoseconds>(timeout, std::chrono::hours(24 * 365 * 50));
  const auto deadline = steady::now() + timeout;
  auto f = group_file::file::open(s_->f.path(), false);
  if (!f) return f.error();
  for (;;) {
    auto img = read_locked(*f, s_->log_id);
    if (!img) return img.error();
    bool all = true;
    for (const auto& part : img->parts) all = all && part.c.position >= p.value;
    if (all) return true;
    const auto now = steady::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<steady::duration>(deadline - now, 2ms));
  }
}

result<std::vector<std::string>> consumer_group::list(const std::string& log_dir) {
  if (auto id = log_id_of(log_dir); !id) return id.error();
  std::vector<std::string> out;
  const std::string dir = log_files::join(log_dir, kGroupsDir);
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return out;
    return status(errc::io_error, dir + ": opendir: " + std::strerror(errno));
  }
  const std::string_view suffix = kGroupSuffix;
  while (dirent* ent = ::readdir(d)) {
    std::string_view n = ent->d_name;
    if (!n.ends_with(suffix)) continue;
    n.remove_suffix(suffix.size());
    if (valid_name(n)) out.emplace_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

result<group_description> consumer_group::describe(const std::string& log_dir, std::string_view group) {
  if (!valid_name(group)) return status(errc::invalid_argument, "group name '" + std::string(group) + "' is not valid");
  auto id = log_id_of(log_dir);
  if (!id) return id.error();
  const std::string path = group_path(log_files::join(log_dir, kGroupsDir), group);
  auto f = group_file::file::open(path, false);
  if (!f) return f.error();
  auto img = read_locked(*f, *id);
  if (!img) return img.error();
  return describe_image(*img, path, 0);
}

namespace {

// The whole-file lock, with no live member; for reset and remove.
status lock_idle(group_file::file& f, uint64_t log_id, group_file::image& img) {
  if (status r = f.lock(true); !r) return r;
  auto got = f.read(log_id);
  if (!got) {
    f.unlock();
    return got.error();
  }
  img = std::move(got.value());
  const uint64_t boot = this_boot(), now = boot_ns();
  for (const auto& m : img.members) {
    if (member_alive(m, boot, now)) {
      f.unlock();
      return status(errc::locked, f.path() + ": member " + std::to_string(m.id) +
                                      (m.name.empty() ? std::string() : " (" + m.name + ")") + " pid " +
                                      std::to_string(m.pid) + " is alive; stop the group's consumers first");
    }
  }
  return {};
}

}  // namespace

status consumer_group::reset(const event_log& log, std::string_view group, position to) {
  if (!valid_name(group)) return status(errc::invalid_argument, "group name '" + std::string(group) + "' is not valid");
  const uint64_t end = log.committed_position().value;
  if (to.is_none()) to = position{end};
  if (to.value > end)
    return status(errc::invalid_argument, "position " + std::to_string(to.value) +
                                              " is past the committed end of the log (" + std::to_string(end) + ")");
  if (to.value != end) {
    // Must be a record's position: the members restart there.
    log_reader r = log.read(to);
    r.without_upcasting();  // is a record there: nothing more
    event_view e;
    if (auto got = r.next(e); !got)
      return status(errc::invalid_argument, "position " + std::to_string(to.value) + ": " + got.error().message());
  }
  const uint64_t log_id = detail::log_access::state(log).meta.log_id;
  const std::string path = group_path(log_files::join(log.dir(), kGroupsDir), group);
  auto f = group_file::file::open(path, true);
  if (!f) return f.error();
  group_file::image img;
  if (status r = lock_idle(*f, log_id, img); !r) return r;
  status out;
  for (uint32_t p = 0; p < img.h.partitions && out.ok(); ++p) {
    group_file::commit c;
    c.gen = img.parts[p].c.gen + 1;
    c.position = to.value;
    c.committed_ns = wall_ns();
    std::byte buf[group_file::kCopySize];
    group_file::encode_commit(c, buf);
    out = f->write_copy(group_file::commit_offset(p), c.gen, buf);
  }
  f->unlock();
  if (!out) return out;
  return f->sync();
}

status consumer_group::remove(const std::string& log_dir, std::string_view group) {
  if (!valid_name(group)) return status(errc::invalid_argument, "group name '" + std::string(group) + "' is not valid");
  auto id = log_id_of(log_dir);
  if (!id) return id.error();
  const std::string dir = log_files::join(log_dir, kGroupsDir);
  const std::string path = group_path(dir, group);
  auto f = group_file::file::open(path, true);
  if (!f) return f.error();
  group_file::image img;
  // A damaged file may be removed too: that is how an operator starts over.
  status locked = lock_idle(*f, *id, img);
  if (!locked && locked.code() != errc::corruption) return locked;
  if (::unlink(path.c_str()) != 0) return status(errc::io_error, path + ": unlink: " + std::strerror(errno));
  if (locked) f->unlock();
  if (const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  return {};
}

}  // namespace varve
