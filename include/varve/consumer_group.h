// Consumer groups: competing consumers of one log, in any processes of one
// host, with partitions, leases, durable per-partition positions, failover
// and a dead-letter stream. The group's state is DIR/groups/NAME.group
// (docs/FORMAT.md section 6b; docs/DESIGN.md "Consumer groups").
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "varve/event.h"
#include "varve/export.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve {

class event_log;

namespace detail {
struct group_state;
}

// When a member's acknowledgements become durable (written to the group file
// and fdatasynced).
enum class commit_policy : uint8_t {
  // next() acknowledges the event it returned before (asking for the next one
  // means the last one is processed) and commits every `commit_every` events
  // (1 = after each event) and at least every `commit_interval`.
  automatic,
  // Only ack()/nack() acknowledge and only commit() commits (leave() and the
  // destructor also commit what was acknowledged).
  manual,
};

// Where a new group starts reading; ignored when the group file exists.
enum class group_start : uint8_t { beginning, end };

struct group_options {
  // Fixed when the group is created (stored in the group file); joining an
  // existing group with another non-zero count fails with invalid_argument
  // naming the file and both counts. 0 = whatever the group has (creating:
  // 8). At most 1024.
  uint32_t partitions = 0;
  // A member that has not renewed its leases for this long (killed, stopped,
  // hung) is dead: its partitions go to live members, from their committed
  // positions. Renewed by next() and heartbeat() every session_timeout / 4.
  std::chrono::milliseconds session_timeout{10'000};
  // Shown by describe() and `varve group describe`; at most 20 bytes kept.
  std::string member;
  commit_policy commit = commit_policy::automatic;
  uint32_t commit_every = 1;
  std::chrono::milliseconds commit_interval{1000};
  group_start start = group_start::beginning;
  // nack(): deliveries of one event before it goes to the dead-letter stream.
  uint32_t max_retries = 3;
};

// One partition as the group file has it.
struct group_partition_info {
  uint32_t partition = 0;
  position committed;           // every event of the partition before it is processed
  uint64_t owner = 0;           // member id holding the lease (0 = none)
  bool owner_alive = false;     // the lease has not expired
  uint64_t epoch = 0;           // bumped at every change of owner
  position retry_position = position::none();  // an event being retried after nack()
  uint32_t retries = 0;
  uint64_t lag_bytes = 0;       // log's committed end - committed (filled when a log is at hand)
  uint64_t lag_events = 0;      // events of the log from committed to its end (idem)
};

struct group_member_info {
  uint64_t id = 0;
  std::string name;
  uint32_t pid = 0;
  bool alive = false;
  uint32_t partitions = 0;      // leases it holds
};

struct group_description {
  std::string file;             // DIR/groups/NAME.group
  uint32_t partitions = 0;
  uint64_t created_ns = 0;
  std::vector<group_member_info> members;       // live and expired ones still listed
  std::vector<group_partition_info> slots;
  // True when a partition's newest copy failed its checksum and the previous
  // copy was used (a write torn by a crash; see FORMAT.md 6b).
  bool fell_back = false;
};

// A dead letter of a group: an entry of `$dlq-GROUP` (see nack()) and the
// event that failed, read back at its position and checked against the
// entry (position, stream, type). Views valid while the log is open.
struct dead_letter {
  stream_version version = 0;   // the entry's version in $dlq-GROUP
  event_view entry;             // its payload: the JSON nack() wrote (error, attempts, ...)
  event_view original;          // the event that failed, as the group delivered it
};

// A member of a consumer group.
//
// - Partition of an event: XXH3-64 (seed 0) of its stream id bytes, modulo the
//   group's partition count; so every event of a stream goes to one member at
//   a time and a stream's events are delivered in log order.
// - Delivery is at least once. After a member fails (crash, kill, a stop
//   longer than session_timeout) its partitions are redelivered from their
//   last committed positions: duplicates only then, only since that commit.
//   A handler that stores its own state gets exactly once by storing the
//   event's position with its state in one transaction and skipping events at
//   or before it (the projection checkpoint pattern, docs/DESIGN.md).
// - Rebalance: live members split the partitions, quota P/n, the first P%n
//   members (by id) one more; a member keeps what it holds up to its quota,
//   gives up the rest (committing first) on its next heartbeat, and takes free
//   or expired partitions up to its quota. A join moves about P/n partitions.
// - Used by one thread at a time, except cancel() (any thread, signal-safe)
//   and describe() / wait_until() (any thread: they read the group file
//   through a descriptor of their own).
//   The log must outlive the member; views are valid while the log is open.
// - Writable file system needed: the member writes DIR/groups/NAME.group.
class VARVE_API consumer_group {
 public:
  // Joins (creating the group on first use) over a read-only or writable log.
  // nack() beyond max_retries needs the second overload (it appends the dead
  // letter); through this one it fails with read_only.
  // Errors: invalid_argument (name, options, partition count mismatch),
  // corruption naming file and offset for a damaged group file, locked when
  // the group's 64 member slots are all taken by live members.
  static result<consumer_group> join(const event_log& log, std::string_view group,
                                     group_options options = {});
  // Same, able to append dead letters to `$dlq-GROUP`. Appends happen in
  // nack(): do not append to `log` from another thread meanwhile.
  static result<consumer_group> join(event_log& log, std::string_view group,
                                     group_options options = {});

  consumer_group();
  consumer_group(consumer_group&&) noexcept;
  consumer_group& operator=(consumer_group&&) noexcept;
  // Leaves like leave(), errors ignored, except that with the automatic
  // policy the last event next() returned is not acknowledged (the
  // destructor may run while a handler unwinds): it is delivered again.
  ~consumer_group();

  // The next event of a partition this member owns: true; false when none
  // came within `timeout`. Renews the leases and rebalances when due (so call
  // it at least every session_timeout / 4, or call heartbeat()). Skips the
  // group's own `$dlq-GROUP` stream. errc::cancelled after cancel().
  result<bool> next(event_view& out, std::chrono::nanoseconds timeout = std::chrono::nanoseconds(0));

  // `e` and every earlier event of its partition are processed (cumulative,
  // as Kafka's offsets). In memory; commit() makes it durable. Ignored for an
  // event not delivered under this member's current lease of its partition.
  status ack(const event_view& e);
  // Writes every partition's newest acknowledgement and fdatasyncs the group
  // file. A partition lost meanwhile (the lease expired and another member
  // took it) is dropped, not written: its new owner redelivers.
  status commit();
  // Handling `e` failed: it is delivered again next (up to max_retries
  // deliveries in all, counted in the group file), then appended to
  // `$dlq-GROUP` as JSON {"group","partition","position","sequence","stream",
  // "type","attempts","error"} and acknowledged, and the partition moves on.
  status nack(const event_view& e, std::string_view error);

  // Renews leases and rebalances now (next() does it when due).
  status heartbeat();
  // Commits, gives up every partition and the member slot. Idempotent. With
  // the automatic policy the last event next() returned counts as processed.
  status leave();
  // Makes next() return errc::cancelled, from any thread or a signal handler.
  void cancel();

  std::vector<uint32_t> owned_partitions() const;
  uint64_t member_id() const;
  uint32_t partitions() const;
  const std::string& file() const;
  result<group_description> describe() const;

  // Waits until every partition of the group has committed `p` (a position
  // from an append_result's end): read-your-writes for a request handler.
  // true when it has, false at the timeout.
  result<bool> wait_until(position p, std::chrono::nanoseconds timeout) const;

  // --- for tools: the group files of a log directory ---
  static bool valid_name(std::string_view group);
  static result<std::vector<std::string>> list(const std::string& log_dir);
  static result<group_description> describe(const std::string& log_dir, std::string_view group);
  // Sets every partition's committed position to `to` (none = the log's
  // committed end, read from `log`). errc::locked while a member is alive.
  static status reset(const event_log& log, std::string_view group, position to);
  // Removes the group file. errc::locked while a member is alive.
  static status remove(const std::string& log_dir, std::string_view group);
  // The group's dead letters from version `from` of `$dlq-GROUP` on, at most
  // `max` of them, in the order they were written: for an operator to look
  // at (`varve group dead-letters`) or to feed the events that failed to a
  // fixed handler again (`varve group replay`). Reads only. corruption naming
  // the entry when an entry is not one nack() wrote or the event at its
  // position is not the one it names.
  static result<std::vector<dead_letter>> dead_letters(const event_log& log, std::string_view group,
                                                       stream_version from = 1, uint64_t max = UINT64_MAX);

 private:
  status leave_impl(bool ack_last);
  static result<consumer_group> join_impl(const event_log& log, event_log* writable,
                                          std::string_view group, group_options options);
  std::unique_ptr<detail::group_state> s_;
};

// The partition of a stream id (its raw bytes) in a group of `partitions`.
VARVE_API uint32_t group_partition_of(std::string_view stream, uint32_t partitions);

}  // namespace varve
