// The Kafka-style log peer of varve-bench (WORKLOAD.md "Peers"): records
// appended to one file with buffered write(2) calls (a user-space buffer of
// --writelog-buffer bytes, 64 KiB by default, written out when the next record
// does not fit), fdatasync per durable batch, a sequential read(2) scan. The
// mechanism a Kafka broker uses for one partition, without the broker.
//
// Record, 140 bytes for ES-1 (little-endian):
//   0   8  checksum   XXH3-64 of bytes [8, length)
//   8   4  length
//   12  4  type
//   16  8  aggregate
//   24  8  version
//   32  8  timestamp  (the ES-1 counter i + 1)
//   40  .  payload
// A scan verifies every record's checksum, like varve's readers. There is no
// per-aggregate index: reading one aggregate is a scan of the whole file.
#pragma once

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../bench_common.h"
#include "../es1_check.h"

namespace varve_bench {

// The record above; the Kafka peer (kafka.h) sends the same bytes as its
// message values.
struct log_record {
  static constexpr uint32_t kHeader = 40;
  static constexpr uint32_t kRecord = kHeader + kPayloadBytes;

  static inline void encode(std::byte* r, const es1_data& d, uint64_t i, uint64_t ts) {
    const uint32_t len = kRecord, type = d.version[i] % 8;
    const uint64_t agg = d.aggregate[i], ver = d.version[i];
    std::memcpy(r + 8, &len, 4);
    std::memcpy(r + 12, &type, 4);
    std::memcpy(r + 16, &agg, 8);
    std::memcpy(r + 24, &ver, 8);
    std::memcpy(r + 32, &ts, 8);
    std::memcpy(r + kHeader, d.payload_of(i), kPayloadBytes);
    const uint64_t sum = XXH3_64bits(r + 8, kRecord - 8);
    std::memcpy(r, &sum, 8);
  }
  // A whole record of `bytes` bytes whose checksum holds.
  static inline bool valid(const std::byte* r, size_t bytes) {
    if (bytes != kRecord) return false;
    uint64_t sum;
    uint32_t len;
    std::memcpy(&sum, r, 8);
    std::memcpy(&len, r + 8, 4);
    return len == kRecord && XXH3_64bits(r + 8, kRecord - 8) == sum;
  }
};

// One aggregate read by a peer without a per-aggregate index: a scan of the
// whole store (scan_raw), keeping the aggregate's records.
template <class P>
agg_read read_aggregate_by_scan(P& p, uint32_t agg) {
  agg_read out;
  uint64_t rb = 0;
  p.scan_raw([&](const std::byte* rec, const std::byte* payload, size_t n) {
    uint64_t a, ver;
    std::memcpy(&a, rec + 16, 8);
    if (a != agg) return;
    std::memcpy(&ver, rec + 24, 8);
    out.in_order &= ver == out.count + 1;
    out.checksum = fold(out.checksum, touch(payload, n));
    ++out.count;
  }, rb);
  return out;
}

class writelog_peer {
 public:
  static constexpr uint32_t kHeader = log_record::kHeader;
  static constexpr uint32_t kRecord = log_record::kRecord;

  explicit writelog_peer(size_t buffer_bytes) : buf_(buffer_bytes < kRecord ? kRecord : buffer_bytes) {}
  ~writelog_peer() { close(); }

  void create(const std::string& dir) {
    std::filesystem::create_directories(dir);
    path_ = dir + "/00000000000000000000.log";
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fatal("open " + path_ + ": " + strerror(errno));
    used_ = 0;
    file_bytes_ = 0;
  }

  // One event into the buffer; write(2) when the buffer is full.
  inline void append(const es1_data& d, uint64_t i) {
    if (used_ + kRecord > buf_.size()) [[unlikely]]
      write_out();
    log_record::encode(buf_.data() + used_, d, i, i + 1);
    used_ += kRecord;
  }
  // Writes out the buffer (the end of a load: everything handed to the kernel).
  void finish_load() { write_out(); }

  void append_batch_durable(const es1_data& d, uint64_t first, uint64_t n) {
    for (uint64_t i = first; i < first + n; ++i) append(d, i);
    sync();
  }
  void append_durable(const es1_data& d, uint64_t i) {
    append(d, i);
    sync();
  }

  // f(payload, bytes) for every record in file order, checksums verified.
  // Returns the records read; record_bytes gets their bytes.
  template <class F>
  uint64_t scan(F&& f, uint64_t& record_bytes) {
    return scan_raw([&](const std::byte*, const std::byte* p, size_t n) { f(p, n); }, record_bytes);
  }

  // g(record, payload, bytes) for every record in file order, checksums verified.
  template <class G>
  uint64_t scan_raw(G&& f, uint64_t& record_bytes) {
    write_out();
    constexpr size_t kChunk = 1 << 20;
    if (rbuf_.size() < kChunk + kRecord) rbuf_.resize(kChunk + kRecord);
    (void)posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint64_t off = 0, n = 0;
    size_t have = 0;  // bytes carried over from the previous chunk
    record_bytes = 0;
    for (;;) {
      ssize_t got = ::pread(fd_, rbuf_.data() + have, kChunk, static_cast<off_t>(off));
      if (got < 0) fatal("read " + path_ + ": " + strerror(errno));
      if (got == 0) break;
      off += static_cast<uint64_t>(got);
      have += static_cast<size_t>(got);
      size_t p = 0;
      while (have - p >= kRecord) {
        const std::byte* r = rbuf_.data() + p;
        if (!log_record::valid(r, kRecord)) [[unlikely]]
          fatal("writelog: bad record at offset " + std::to_string(off - have + p));
        f(r, r + kHeader, kPayloadBytes);
        p += kRecord;
        ++n;
      }
      std::memmove(rbuf_.data(), rbuf_.data() + p, have - p);
      have -= p;
    }
    if (have != 0) fatal("writelog: " + std::to_string(have) + " trailing bytes");
    record_bytes = n * kRecord;
    return n;
  }

  // One aggregate: a scan of the whole file.
  agg_read read_aggregate(uint32_t agg) { return read_aggregate_by_scan(*this, agg); }

  void close() {
    if (fd_ < 0) return;
    write_out();
    ::close(fd_);
    fd_ = -1;
  }

 private:
  void write_out() {
    size_t done = 0;
    while (done < used_) {
      ssize_t w = ::write(fd_, buf_.data() + done, used_ - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        fatal("write " + path_ + ": " + strerror(errno));
      }
      done += static_cast<size_t>(w);
    }
    file_bytes_ += used_;
    used_ = 0;
  }
  void sync() {
    write_out();
    if (::fdatasync(fd_) != 0) fatal("fdatasync " + path_ + ": " + strerror(errno));
  }

  std::vector<std::byte> buf_, rbuf_;
  size_t used_ = 0;
  uint64_t file_bytes_ = 0;
  int fd_ = -1;
  std::string path_;
};

}  // namespace varve_bench
