// A projection checkpoint: every partition's state and the log position it
// reflects, in one file written atomically (index_file::write: a .partial,
// datasync, rename, directory sync), one file per generation
// (NAME.<20-digit generation>.ckpt). docs/FORMAT.md §7a is the byte layout:
//
//  0   8  magic "VARVECKP"
//  8   4  format_version (1)
//  12  4  partitions
//  16  8  log_id
//  24  8  position          the replay resumes here
//  32  8  body_bytes        size of the partition area that follows
//  40  8  header_checksum   XXH3-64 of bytes [0, 40)
//  48  .. per partition: size u64, state bytes, zero padding to 8
//  end 8  body_checksum     XXH3-64 of the partition area
#include <algorithm>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstring>

#include <xxhash.h>

#include "base/coding.h"
#include "engine/log_access.h"
#include "engine/log_state.h"
#include "index/index_file.h"
#include "varve/replay.h"

namespace varve {

using namespace coding;

namespace {
constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'C', 'K', 'P'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 48;

uint64_t pad8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }
}  // namespace

checkpoint_store::checkpoint_store(std::string dir, std::string name, uint32_t keep,
                                   std::shared_ptr<file_system> fs)
    : dir_(std::move(dir)), name_(std::move(name)), keep_(std::max<uint32_t>(keep, 1)),
      fs_(std::move(fs)) {}

std::vector<std::pair<uint64_t, std::string>> checkpoint_store::generations() const {
  std::vector<std::pair<uint64_t, std::string>> out;
  if (!fs_->exists(dir_)) return out;
  auto names = fs_->list_dir(dir_);
  if (!names) return out;
  const std::string prefix = name_ + ".";
  for (const auto& n : names.value()) {
    // NAME.<20 digits>.ckpt; anything else (a .partial, another name) is not ours.
    if (n.size() != prefix.size() + 20 + 5 || n.compare(0, prefix.size(), prefix) != 0 ||
        n.compare(n.size() - 5, 5, ".ckpt") != 0)
      continue;
    uint64_t g = 0;
    bool digits = true;
    for (size_t i = prefix.size(); i < prefix.size() + 20; ++i) {
      if (n[i] < '0' || n[i] > '9') { digits = false; break; }
      g = g * 10 + static_cast<uint64_t>(n[i] - '0');
    }
    if (digits) out.emplace_back(g, dir_ + "/" + n);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

std::string checkpoint_store::path() const {
  auto g = generations();
  return g.empty() ? std::string() : g.front().second;
}

status checkpoint_store::save(uint64_t log_id, position at,
                              std::span<const std::string> states) const {
  if (name_.empty() || name_.find('/') != std::string::npos)
    return status(errc::invalid_argument, "checkpoint name '" + name_ + "' must be a file name");
  uint64_t body = 0;
  for (const auto& s : states) body += 8 + pad8(s.size());
  std::vector<std::byte> buf(kHeader + body + 8);
  std::byte* p = buf.data();
  std::memcpy(p, kMagic, 8);
  put_u32(p + 8, kVersion);
  put_u32(p + 12, static_cast<uint32_t>(states.size()));
  put_u64(p + 16, log_id);
  put_u64(p + 24, at.value);
  put_u64(p + 32, body);
  put_u64(p + 40, XXH3_64bits(p, 40));
  std::byte* q = p + kHeader;
  for (const auto& s : states) {
    put_u64(q, s.size());
    if (!s.empty()) std::memcpy(q + 8, s.data(), s.size());
    q += 8 + pad8(s.size());
  }
  put_u64(q, XXH3_64bits(p + kHeader, body));
  if (!fs_->exists(dir_)) {
    status st = fs_->create_dir(dir_);
    if (!st.ok()) return st;
  }
  const auto gens = generations();
  const uint64_t next = gens.empty() ? 1 : gens.front().first + 1;
  char file[64];
  std::snprintf(file, sizeof file, ".%020llu.ckpt", static_cast<unsigned long long>(next));
  status st = index_file::write(*fs_, dir_, name_ + file, buf);
  if (!st.ok()) return st;
  // Older generations go only once the new one is durable; failing to remove
  // one costs disk space, not correctness.
  for (size_t i = keep_ - 1; i < gens.size(); ++i) (void)fs_->remove(gens[i].second);
  return {};
}

result<std::optional<position>> checkpoint_store::saved_position(const event_log& log) const {
  const uint64_t log_id = detail::log_access::state(log).meta.log_id;
  for (const auto& [gen, file] : generations()) {
    auto f = fs_->open(file, file_system::open_mode::read_only);
    if (!f) {
      if (f.error().code() == errc::not_found) continue;  // removed by a newer save meanwhile
      return f.error();
    }
    std::byte h[kHeader];
    const status r = fs_->pread(f.value(), 0, h, kHeader);
    fs_->close(f.value());
    // A short or damaged header: an older generation may still say more.
    if (!r || std::memcmp(h, kMagic, 8) != 0 || get_u64(h + 40) != XXH3_64bits(h, 40)) continue;
    if (get_u64(h + 16) != log_id)
      return status(errc::invalid_argument, file + ": checkpoint belongs to another log");
    return std::optional<position>(position{get_u64(h + 24)});
  }
  return std::optional<position>();
}

result<bool> checkpoint_store::wait_until(const event_log& log, position p, std::chrono::nanoseconds timeout) const {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + timeout;
  while (true) {
    auto at = saved_position(log);
    if (!at) return at.error();
    if (at.value() && at.value()->value >= p.value) return true;
    const auto now = clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<clock::duration>(deadline - now, std::chrono::milliseconds(2)));
  }
}

namespace {
// Validates one generation's bytes; errors name the file and offset.
result<checkpoint_store::loaded> parse(const std::string& file, const std::vector<std::byte>& bytes,
                                       uint64_t log_id, uint32_t partitions) {
  using loaded = checkpoint_store::loaded;
  const std::byte* p = bytes.data();
  const uint64_t size = bytes.size();
  auto bad = [&](uint64_t off, const std::string& why) {
    return status(errc::corruption, file + " offset " + std::to_string(off) + ": " + why);
  };
  if (size < kHeader + 8) return bad(0, "file of " + std::to_string(size) + " bytes is too short");
  if (std::memcmp(p, kMagic, 8) != 0) return bad(0, "not a varve checkpoint (bad magic)");
  if (get_u64(p + 40) != XXH3_64bits(p, 40)) return bad(40, "header checksum mismatch");
  if (get_u32(p + 8) != kVersion)
    return status(errc::newer_format, file + ": checkpoint format " +
                                          std::to_string(get_u32(p + 8)) + " is not 1");
  const uint64_t body = get_u64(p + 32);
  if (body > size || kHeader + body + 8 != size)
    return bad(32, "body size " + std::to_string(body) + " does not match the file size " +
                       std::to_string(size));
  if (get_u64(p + kHeader + body) != XXH3_64bits(p + kHeader, body))
    return bad(kHeader + body, "body checksum mismatch");
  if (get_u64(p + 16) != log_id)
    return status(errc::invalid_argument, file + ": checkpoint belongs to another log");
  const uint32_t parts = get_u32(p + 12);
  if (parts != partitions)
    return status(errc::invalid_argument, file + ": checkpoint has " + std::to_string(parts) +
                                              " partitions, this replay " +
                                              std::to_string(partitions));
  loaded out;
  out.file = file;
  out.at = position{get_u64(p + 24)};
  out.states.resize(parts);
  uint64_t off = kHeader;
  const uint64_t end = kHeader + body;
  for (uint32_t i = 0; i < parts; ++i) {
    if (end - off < 8) return bad(off, "partition " + std::to_string(i) + " is cut short");
    const uint64_t n = get_u64(p + off);
    if (n > end - off - 8 || pad8(n) > end - off - 8)
      return bad(off, "partition " + std::to_string(i) + " size " + std::to_string(n) +
                          " runs past the body");
    out.states[i].assign(p + off + 8, p + off + 8 + n);
    off += 8 + pad8(n);
  }
  if (off != end) return bad(off, "bytes after the last partition");
  return out;
}
}  // namespace

result<checkpoint_store::loaded> checkpoint_store::load(uint64_t log_id, uint32_t partitions,
                                                        std::vector<status>* skipped) const {
  std::vector<status> problems;
  for (const auto& [gen, file] : generations()) {
    auto bytes = index_file::read(*fs_, file, 0);
    result<loaded> got = bytes ? parse(file, bytes.value(), log_id, partitions)
                               : result<loaded>(bytes.error());
    if (got) {
      got.value().skipped = problems;
      if (skipped) *skipped = std::move(problems);
      return got;
    }
    // Someone else's checkpoint is a mistake to report, not damage to route around.
    if (got.error().code() == errc::invalid_argument) return got.error();
    problems.push_back(got.error());
  }
  std::string msg = dir_ + "/" + name_ + ": no valid checkpoint";
  for (const auto& p : problems) msg += "; " + p.to_string();
  if (skipped) *skipped = std::move(problems);
  return status(errc::not_found, msg);
}

}  // namespace varve
