// The RocksDB peer of varve-bench: the WORKLOAD.md schema and the options of
// bench/rocksdb_es1.h (shared with varve-p5, written down there and in every
// report). P1 and P6: one WriteBatch per event (log + idx), sync=false, WAL on.
// P2: one WriteBatch of 1,000 events, sync=true (one WAL fdatasync per batch).
// P3: one WriteBatch per event, sync=true. P4: an iterator over `log` in key
// (= global) order. P5: prefix iterator over `idx`, then MultiGet on `log`.
#pragma once

#include <string>

#include "../bench_common.h"
#include "../es1_check.h"
#include "../rocksdb_es1.h"

namespace varve_bench {

class rocksdb_peer {
 public:
  explicit rocksdb_peer(uint64_t cache_mb) : setup_(rocks_options(cache_mb)) {}
  ~rocksdb_peer() { close(); }

  const rocks_setup& setup() const { return setup_; }

  void create(const std::string& dir) {
    dir_ = dir;
    rocks_open(db_, dir, setup_);
    nosync_.sync = false;
    sync_.sync = true;
  }

  inline void append(const es1_data& d, uint64_t i) {
    batch_.Clear();
    writer_.put(batch_, db_, d, i);
    auto s = db_.db->Write(nosync_, &batch_);
    if (!s.ok()) [[unlikely]]
      fatal("rocksdb write #" + std::to_string(i) + ": " + s.ToString());
  }

  // After the load: flush both column families and wait for compactions.
  void finish_load() { rocks_settle(db_); }

  void append_batch_durable(const es1_data& d, uint64_t first, uint64_t n) {
    batch_.Clear();
    for (uint64_t i = first; i < first + n; ++i) writer_.put(batch_, db_, d, i);
    auto s = db_.db->Write(sync_, &batch_);
    if (!s.ok()) [[unlikely]]
      fatal("rocksdb write (sync) #" + std::to_string(first) + ": " + s.ToString());
  }
  void append_durable(const es1_data& d, uint64_t i) {
    batch_.Clear();
    writer_.put(batch_, db_, d, i);
    auto s = db_.db->Write(sync_, &batch_);
    if (!s.ok()) [[unlikely]]
      fatal("rocksdb write (sync) #" + std::to_string(i) + ": " + s.ToString());
  }

  template <class F>
  uint64_t scan(F&& f, uint64_t& record_bytes) {
    rocksdb::ReadOptions ro;
    std::unique_ptr<rocksdb::Iterator> it(db_.db->NewIterator(ro, db_.log()));
    uint64_t n = 0, rb = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      rocksdb::Slice v = it->value();
      if (v.size() != kRocksHeader + kPayloadBytes) [[unlikely]]
        fatal("rocksdb scan: malformed value");
      f(reinterpret_cast<const std::byte*>(v.data()) + kRocksHeader, kPayloadBytes);
      rb += it->key().size() + v.size();
      ++n;
    }
    if (!it->status().ok()) fatal("rocksdb scan: " + it->status().ToString());
    record_bytes = rb;
    return n;
  }

  agg_read read_aggregate(uint32_t agg) { return rocks_read(db_, agg, /*multiget=*/true, scratch_); }

  void close() { db_.close(); }

 private:
  rocks_setup setup_;
  std::string dir_;
  rocks_db db_;
  rocks_event_writer writer_;
  rocksdb::WriteBatch batch_;
  rocksdb::WriteOptions nosync_, sync_;
  rocks_scratch scratch_;
};

}  // namespace varve_bench
