// The tamper-evident chain of sealed segments (docs/FORMAT.md 5b; DESIGN.md
// "Tamper evidence"). XXH3 detects accidents, not edits: anyone can rewrite a
// record and its checksum. Here each sealed segment gets a BLAKE2b-256 digest
// of its whole file chained to the previous segment's digest, in DIR/chain;
// the newest digest (the head, printed by `varve stat` and `varve verify
// --chain`) commits to every byte of every chained segment, so a copy of it
// kept elsewhere exposes any later edit.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/segment.h"
#include "varve/file_system.h"
#include "varve/status.h"

namespace varve::chain {

inline constexpr const char* kFileName = "chain";
inline constexpr size_t kHeaderSize = 64;
inline constexpr size_t kEntrySize = 64;
using digest = std::array<uint8_t, 32>;

struct entry {
  uint64_t segment_index = 0;
  digest hash{};
};

// BLAKE2b-256("varve-chain-1" || log_id || segment index || previous digest
// || the segment file's `capacity` bytes), integers little-endian. The first
// entry of a chain has an all-zero previous digest.
digest compute(const segment& seg, uint64_t log_id, const digest& previous);

struct contents {
  std::vector<entry> entries;
  uint64_t end = kHeaderSize;  // where the next entry goes
  bool torn_tail = false;      // a last entry that is not whole (a crash while appending)
};

// Reads DIR/chain: not_found without one; corruption (file and offset) for a
// damaged header or entry before the last, an entry of another log, or
// entries that do not follow each other. A torn last entry (short or failing
// its checksum) is reported in torn_tail and left out: it is recomputed.
result<contents> read(file_system& fs, const std::string& dir, uint64_t log_id);
// Creates an empty DIR/chain (header only), durably, if there is none.
status create(file_system& fs, const std::string& dir, uint64_t log_id);
// Writes `e` at offset `at` of DIR/chain and syncs it.
status append(file_system& fs, const std::string& dir, uint64_t at, const entry& e);

std::string to_hex(const digest& d);

}  // namespace varve::chain
