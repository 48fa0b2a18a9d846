// DIR/groups/NAME.group (docs/FORMAT.md section 6b): the bytes of a consumer
// group's state, their decoder (fuzzed: fuzz/group_file_fuzzer.cc), and the
// file with its OFD byte-range locks.
//
//   offset 0            header, 64 B
//   offset 64           64 member slots, each a pair of 64 B copies
//   offset 8256 + 256p  partition p: commit pair (2 x 64 B), lease pair (2 x 64 B)
//
// Every slot is a pair of copies; a write goes to the copy the current one is
// not (copy = gen % 2) with gen + 1, so a write torn by a crash leaves the
// previous copy intact and the reader falls back to it. An all-zero copy was
// never written; any other copy must pass its checksum to be used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "varve/status.h"

namespace varve::group_file {

inline constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'G', 'R', 'P'};
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kHeaderSize = 64;
inline constexpr size_t kCopySize = 64;
inline constexpr uint32_t kMaxMembers = 64;
inline constexpr uint32_t kMaxPartitions = 1024;
inline constexpr uint32_t kDefaultPartitions = 8;
inline constexpr size_t kMembersOffset = kHeaderSize;
inline constexpr size_t kMemberSlotSize = 2 * kCopySize;
inline constexpr size_t kPartitionsOffset = kMembersOffset + kMaxMembers * kMemberSlotSize;
inline constexpr size_t kPartitionSlotSize = 4 * kCopySize;  // commit pair, lease pair
inline constexpr size_t kMemberNameBytes = 20;
static_assert(kPartitionsOffset == 8256);

constexpr size_t file_size(uint32_t partitions) {
  return kPartitionsOffset + size_t{partitions} * kPartitionSlotSize;
}
constexpr size_t member_offset(uint32_t slot) { return kMembersOffset + slot * kMemberSlotSize; }
constexpr size_t commit_offset(uint32_t p) { return kPartitionsOffset + p * kPartitionSlotSize; }
constexpr size_t lease_offset(uint32_t p) { return commit_offset(p) + 2 * kCopySize; }

struct header {
  uint32_t partitions = 0;
  uint64_t log_id = 0;
  uint64_t created_ns = 0;
};

struct member {
  uint64_t gen = 0;  // 0: never written (a free slot)
  uint64_t id = 0;   // 0: free (left)
  uint64_t expiry_ns = 0;  // CLOCK_BOOTTIME
  uint64_t boot = 0;       // which boot expiry_ns belongs to
  uint32_t pid = 0;
  std::string name;
};

struct commit {
  uint64_t gen = 0;
  uint64_t position = 0;
  uint64_t committed_ns = 0;  // CLOCK_REALTIME, for operators
  uint64_t retry_position = UINT64_MAX;
  uint32_t retries = 0;
  uint64_t member = 0;        // who wrote it, for operators
};

struct lease {
  uint64_t gen = 0;
  uint64_t owner = 0;
  uint64_t expiry_ns = 0;  // CLOCK_BOOTTIME
  uint64_t boot = 0;
  uint64_t epoch = 0;
};

struct partition {
  commit c;
  lease l;
};

// A decoded file. `fell_back`: some slot's newer copy failed its checksum
// and the older one was used.
struct image {
  header h;
  std::vector<member> members;  // kMaxMembers
  std::vector<partition> parts;
  bool fell_back = false;
};

void encode_header(const header& h, std::byte out[kHeaderSize]);
void encode_member(const member& m, std::byte out[kCopySize]);
void encode_commit(const commit& c, std::byte out[kCopySize]);
void encode_lease(const lease& l, std::byte out[kCopySize]);

// The whole file: header, every slot. corruption naming `path` and the
// offset of what failed; newer_format for a newer version; a file of
// another log_id (when expected_log_id != 0) is corruption.
result<image> decode(std::span<const std::byte> bytes, const std::string& path, uint64_t expected_log_id);

// One partition's 256 bytes (commit pair, lease pair) at file offset `off`.
status decode_partition(const std::byte* slot, size_t off, const std::string& path, uint32_t p,
                        partition& out, bool& fell_back);

// The file of a fresh group: header, every commit at `start` (gen 1).
std::vector<std::byte> fresh(const header& h, uint64_t start);

// The group file, open read-write (or read-only), with OFD locks (per open
// file description: they exclude threads of one process too, and closing
// another descriptor of the file does not drop them; the kernel drops them
// when the process dies, so a SIGKILLed member never wedges the group).
class file {
 public:
  file() = default;
  file(file&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  file& operator=(file&& o) noexcept;
  ~file();

  // Opens DIR/groups/NAME.group, creating it (atomically: a full file is
  // linked into place, so nobody sees a half-written one) when `create`.
  static result<file> open(const std::string& path, bool writable);
  static result<file> create_or_open(const std::string& dir, const std::string& path,
                                     const std::vector<std::byte>& bytes);

  // Blocks until the range is locked (len 0: to the end of the file).
  status lock(bool exclusive, uint64_t start = 0, uint64_t len = 0);
  void unlock(uint64_t start = 0, uint64_t len = 0);
  result<image> read(uint64_t expected_log_id) const;
  // One partition, read under that partition's range lock.
  result<partition> read_partition(uint32_t p) const;
  // One copy of a slot, which `gen` picks (gen % 2).
  status write_copy(uint64_t slot_offset, uint64_t gen, const std::byte bytes[kCopySize]);
  status sync();
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// RAII for file::lock.
class lock_guard {
 public:
  lock_guard(file& f, uint64_t start, uint64_t len) : f_(f), start_(start), len_(len) {}
  status acquire(bool exclusive) {
    status s = f_.lock(exclusive, start_, len_);
    held_ = s.ok();
    return s;
  }
  ~lock_guard() {
    if (held_) f_.unlock(start_, len_);
  }

 private:
  file& f_;
  uint64_t start_, len_;
  bool held_ = false;
};

}  // namespace varve::group_file
