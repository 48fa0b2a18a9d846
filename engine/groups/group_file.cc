// The consumer group file: encoding (FORMAT.md 6b) and its locked I/O.
#include "engine/groups/group_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include <xxhash.h>

#include "base/coding.h"

namespace varve::group_file {

namespace {

std::string errno_text(const std::string& what, const std::string& path, int err) {
  return path + ": " + what + ": " + std::strerror(err);
}

bool all_zero(const std::byte* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != std::byte{0}) return false;
  return true;
}

void seal(std::byte* out) { coding::put_u64(out + 56, XXH3_64bits(out, 56)); }
bool sealed(const std::byte* p) { return coding::get_u64(p + 56) == XXH3_64bits(p, 56); }

std::string at(const std::string& path, size_t off) { return path + " offset " + std::to_string(off); }

// Picks the copy of a pair to use: the valid one with the higher gen. Sets
// `which` to -1 when both copies are all zero (never written).
status pick(const std::byte* pair, size_t off, const std::string& path, const char* what, int& which,
            bool& fell_back) {
  bool valid[2], zero[2];
  for (int i = 0; i < 2; ++i) {
    const std::byte* c = pair + i * kCopySize;
    zero[i] = all_zero(c, kCopySize);
    // gen 0 is never written: a zero gen that passes the checksum is forged.
    valid[i] = !zero[i] && sealed(c) && coding::get_u64(c) != 0 && coding::get_u64(c) % 2 == uint64_t(i);
  }
  if (!valid[0] && !valid[1]) {
    if (zero[0] && zero[1]) {
      which = -1;
      return {};
    }
    const size_t bad = zero[0] ? off + kCopySize : off;
    return status(errc::corruption, at(path, bad) + ": " + what +
                                        ": no copy passes its checksum (both copies damaged)");
  }
  if (valid[0] && valid[1]) {
    which = coding::get_u64(pair) > coding::get_u64(pair + kCopySize) ? 0 : 1;
    return {};
  }
  which = valid[0] ? 0 : 1;
  // The other copy holds bytes that fail: a write torn by a crash (the newer
  // one), or damage to the older one. Either way this copy is the newest
  // that was completely written.
  if (!zero[1 - which]) fell_back = true;
  return {};
}

}  // namespace

void encode_header(const header& h, std::byte out[kHeaderSize]) {
  std::memset(out, 0, kHeaderSize);
  std::memcpy(out, kMagic, 8);
  coding::put_u32(out + 8, kVersion);
  coding::put_u32(out + 12, h.partitions);
  coding::put_u64(out + 16, h.log_id);
  coding::put_u64(out + 24, h.created_ns);
  coding::put_u32(out + 32, kMaxMembers);
  seal(out);
}

void encode_member(const member& m, std::byte out[kCopySize]) {
  std::memset(out, 0, kCopySize);
  coding::put_u64(out, m.gen);
  coding::put_u64(out + 8, m.id);
  coding::put_u64(out + 16, m.expiry_ns);
  coding::put_u64(out + 24, m.boot);
  coding::put_u32(out + 32, m.pid);
  std::memcpy(out + 36, m.name.data(), std::min(m.name.size(), kMemberNameBytes));
  seal(out);
}

void encode_commit(const commit& c, std::byte out[kCopySize]) {
  std::memset(out, 0, kCopySize);
  coding::put_u64(out, c.gen);
  coding::put_u64(out + 8, c.position);
  coding::put_u64(out + 16, c.committed_ns);
  coding::put_u64(out + 24, c.retry_position);
  coding::put_u32(out + 32, c.retries);
  coding::put_u64(out + 40, c.member);
  seal(out);
}

void encode_lease(const lease& l, std::byte out[kCopySize]) {
  std::memset(out, 0, kCopySize);
  coding::put_u64(out, l.gen);
  coding::put_u64(out + 8, l.owner);
  coding::put_u64(out + 16, l.expiry_ns);
  coding::put_u64(out + 24, l.boot);
  coding::put_u64(out + 32, l.epoch);
  seal(out);
}

status decode_partition(const std::byte* slot, size_t off, const std::string& path, uint32_t p,
                        partition& part, bool& fell_back) {
  int which;
  if (status s = pick(slot, off, path, "partition commit", which, fell_back); !s) return s;
  // A group file is created with every commit written: none at all is damage.
  if (which < 0)
    return status(errc::corruption, at(path, off) + ": partition " + std::to_string(p) +
                                        ": commit slot is empty (zeroed)");
  const std::byte* c = slot + which * kCopySize;
  part.c.gen = coding::get_u64(c);
  part.c.position = coding::get_u64(c + 8);
  part.c.committed_ns = coding::get_u64(c + 16);
  part.c.retry_position = coding::get_u64(c + 24);
  part.c.retries = coding::get_u32(c + 32);
  part.c.member = coding::get_u64(c + 40);
  const size_t loff = off + 2 * kCopySize;
  if (status s = pick(slot + 2 * kCopySize, loff, path, "partition lease", which, fell_back); !s) return s;
  part.l = lease{};
  if (which < 0) return {};  // never owned
  c = slot + 2 * kCopySize + which * kCopySize;
  part.l.gen = coding::get_u64(c);
  part.l.owner = coding::get_u64(c + 8);
  part.l.expiry_ns = coding::get_u64(c + 16);
  part.l.boot = coding::get_u64(c + 24);
  part.l.epoch = coding::get_u64(c + 32);
  return {};
}

result<image> decode(std::span<const std::byte> bytes, const std::string& path, uint64_t expected_log_id) {
  const std::byte* d = bytes.data();
  if (bytes.size() < kHeaderSize || std::memcmp(d, kMagic, 8) != 0)
    return status(errc::corruption, at(path, 0) + ": not a consumer group file (magic)");
  // The version before the checksum: a newer layout may checksum differently.
  if (const uint32_t v = coding::get_u32(d + 8); v != kVersion)
    return status(v > kVersion ? errc::newer_format : errc::corruption,
                  at(path, 8) + ": group file format version " + std::to_string(v));
  if (!sealed(d)) return status(errc::corruption, at(path, 56) + ": header checksum mismatch");
  image img;
  img.h.partitions = coding::get_u32(d + 12);
  img.h.log_id = coding::get_u64(d + 16);
  img.h.created_ns = coding::get_u64(d + 24);
  if (img.h.partitions == 0 || img.h.partitions > kMaxPartitions)
    return status(errc::corruption, at(path, 12) + ": partition count " + std::to_string(img.h.partitions) +
                                        " (1 to " + std::to_string(kMaxPartitions) + ")");
  if (coding::get_u32(d + 32) != kMaxMembers)
    return status(errc::corruption, at(path, 32) + ": member slot count " +
                                        std::to_string(coding::get_u32(d + 32)));
  if (expected_log_id != 0 && img.h.log_id != expected_log_id)
    return status(errc::corruption, at(path, 16) + ": belongs to another log (log_id differs)");
  if (bytes.size() != file_size(img.h.partitions))
    return status(errc::corruption, path + ": " + std::to_string(bytes.size()) + " bytes, a group of " +
                                        std::to_string(img.h.partitions) + " partitions has " +
                                        std::to_string(file_size(img.h.partitions)));
  img.members.resize(kMaxMembers);
  for (uint32_t i = 0; i < kMaxMembers; ++i) {
    const size_t off = member_offset(i);
    int which;
    if (status s = pick(d + off, off, path, "member slot", which, img.fell_back); !s) return s;
    if (which < 0) continue;
    const std::byte* c = d + off + which * kCopySize;
    member& m = img.members[i];
    m.gen = coding::get_u64(c);
    m.id = coding::get_u64(c + 8);
    m.expiry_ns = coding::get_u64(c + 16);
    m.boot = coding::get_u64(c + 24);
    m.pid = coding::get_u32(c + 32);
    const char* name = reinterpret_cast<const char*>(c + 36);
    m.name.assign(name, strnlen(name, kMemberNameBytes));
  }
  img.parts.resize(img.h.partitions);
  for (uint32_t p = 0; p < img.h.partitions; ++p) {
    const size_t off = commit_offset(p);
    if (status s = decode_partition(d + off, off, path, p, img.parts[p], img.fell_back); !s) return s;
  }
  return img;
}

std::vector<std::byte> fresh(const header& h, uint64_t start) {
  std::vector<std::byte> out(file_size(h.partitions));
  encode_header(h, out.data());
  commit c;
  c.gen = 1;
  c.position = start;
  c.committed_ns = h.created_ns;
  for (uint32_t p = 0; p < h.partitions; ++p) encode_commit(c, out.data() + commit_offset(p) + kCopySize);
  return out;
}

// --- file ---------------------------------------------------------------------

file& file::operator=(file&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

file::~file() {
  if (fd_ >= 0) ::close(fd_);
}

result<file> file::open(const std::string& path, bool writable) {
  const int fd = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return status(err == ENOENT ? errc::not_found : errc::io_error, errno_text("open", path, err));
  }
  file f;
  f.fd_ = fd;
  f.path_ = path;
  return f;
}

result<file> file::create_or_open(const std::string& dir, const std::string& path,
                                  const std::vector<std::byte>& bytes) {
  if (auto f = open(path, true); f || f.error().code() != errc::not_found) return f;
  // Crash story: the whole file is written and synced under a name of our
  // own, then link()ed into place, which fails if another process created
  // the group meanwhile (we then use theirs). A crash leaves at most a
  // NAME.group.<pid>.partial, which nothing reads. The directory is synced
  // so the new name survives a power loss.
  const std::string tmp = path + "." + std::to_string(::getpid()) + ".partial";
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return status(errc::io_error, errno_text("create", tmp, errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, off_t(done));
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return status(err == ENOSPC ? errc::no_space : errc::io_error, errno_text("write", tmp, err));
    }
    done += size_t(n);
  }
  if (::fdatasync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return status(errc::io_error, errno_text("fdatasync", tmp, err));
  }
  ::close(fd);
  const int linked = ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (linked != 0 && err != EEXIST) return status(errc::io_error, errno_text("link", path, err));
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    const int r = ::fsync(dfd);
    const int serr = errno;
    ::close(dfd);
    if (r != 0) return status(errc::io_error, errno_text("fsync", dir, serr));
  }
  return open(path, true);
}

status file::lock(bool exclusive, uint64_t start, uint64_t len) {
  struct flock fl {};
  fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = off_t(start);
  fl.l_len = off_t(len);
  while (::fcntl(fd_, F_OFD_SETLKW, &fl) != 0) {
    if (errno == EINTR) continue;
    return status(errc::io_error, errno_text("fcntl(F_OFD_SETLKW)", path_, errno));
  }
  return {};
}

void file::unlock(uint64_t start, uint64_t len) {
  struct flock fl {};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = off_t(start);
  fl.l_len = off_t(len);
  (void)::fcntl(fd_, F_OFD_SETLK, &fl);
}

result<image> file::read(uint64_t expected_log_id) const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return status(errc::io_error, errno_text("fstat", path_, errno));
  // Bounded before allocating: the size is checked against the header anyway.
  if (st.st_size > off_t(file_size(kMaxPartitions)))
    return status(errc::corruption, path_ + ": " + std::to_string(st.st_size) +
                                        " bytes, larger than any group file");
  std::vector<std::byte> buf(size_t(st.st_size));
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = ::pread(fd_, buf.data() + done, buf.size() - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return status(errc::io_error, errno_text("read", path_, errno));
    if (n == 0) break;
    done += size_t(n);
  }
  buf.resize(done);
  return decode(buf, path_, expected_log_id);
}

result<partition> file::read_partition(uint32_t p) const {
  std::byte buf[kPartitionSlotSize];
  const off_t off = off_t(commit_offset(p));
  const ssize_t n = ::pread(fd_, buf, sizeof buf, off);
  if (n < 0) return status(errc::io_error, errno_text("read", path_, errno));
  if (n != ssize_t(sizeof buf))
    return status(errc::corruption, at(path_, size_t(off) + size_t(n)) + ": partition " +
                                        std::to_string(p) + " cut short (file truncated)");
  partition part;
  bool fell_back = false;
  if (status s = decode_partition(buf, size_t(off), path_, p, part, fell_back); !s) return s;
  return part;
}

status file::write_copy(uint64_t slot_offset, uint64_t gen, const std::byte bytes[kCopySize]) {
  const off_t off = off_t(slot_offset + (gen % 2) * kCopySize);
  const ssize_t n = ::pwrite(fd_, bytes, kCopySize, off);
  if (n != ssize_t(kCopySize)) {
    const int err = n < 0 ? errno : EIO;
    return status(err == ENOSPC ? errc::no_space : errc::io_error,
                  errno_text("write at offset " + std::to_string(off), path_, err));
  }
  return {};
}

status file::sync() {
  // What this makes durable: every copy written so far (commits, leases,
  // member slots). A power loss before it leaves, per slot, either the new
  // copy or (torn, failing its checksum) the previous one: positions go back
  // to an older commit, and events since are delivered again.
  if (::fdatasync(fd_) != 0) return status(errc::io_error, errno_text("fdatasync", path_, errno));
  return {};
}

}  // namespace varve::group_file
