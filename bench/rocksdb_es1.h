// RocksDB as an ES-1 event store (WORKLOAD.md): the schema, the options a
// careful user would set (each written down in rocks_setup::described, which
// the benchmarks print and put in their JSON), opening, loading one event and
// reading one aggregate back. Shared by varve-p5 and varve-bench.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/version.h>
#include <rocksdb/write_batch.h>

#include "bench_common.h"
#include "es1_check.h"

namespace varve_bench {

// ---------------------------------------------------------------------------
// RocksDB
// ---------------------------------------------------------------------------
inline constexpr size_t kRocksHeader = 28;  // aggregate u64, version u64, type u32, timestamp u64 (LE)

struct rocks_setup {
  rocksdb::DBOptions db;
  rocksdb::ColumnFamilyOptions log_cf, idx_cf, default_cf;
  std::shared_ptr<rocksdb::Cache> cache;
  std::vector<std::pair<std::string, std::string>> described;  // what we set, for the report
};

inline rocks_setup rocks_options(uint64_t cache_mb) {
  rocks_setup s;
  auto note = [&](const std::string& k, const std::string& v) { s.described.emplace_back(k, v); };
  s.cache = rocksdb::NewLRUCache(cache_mb << 20);

  s.db.create_if_missing = true;
  s.db.create_missing_column_families = true;
  s.db.max_background_jobs = 2;
  s.db.bytes_per_sync = 1 << 20;
  s.db.max_open_files = -1;
  note("DB", "create_if_missing, create_missing_column_families; max_background_jobs=2 (2 vCPUs); "
             "bytes_per_sync=1 MiB; max_open_files=-1 (all table readers kept open); WAL on, "
             "WriteOptions.sync=false");

  rocksdb::BlockBasedTableOptions log_t;
  log_t.block_cache = s.cache;
  log_t.block_size = 4096;
  log_t.format_version = 5;
  s.log_cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(log_t));
  s.log_cf.compression = rocksdb::kNoCompression;
  s.log_cf.write_buffer_size = 64ull << 20;
  s.log_cf.max_write_buffer_number = 3;
  s.log_cf.target_file_size_base = 64ull << 20;
  s.log_cf.max_bytes_for_level_base = 256ull << 20;
  s.log_cf.level_compaction_dynamic_level_bytes = true;
  note("cf log", "key = sequence (8 B big-endian), value = 28 B header (aggregate, version, type, "
                 "timestamp) + 100 B payload; block-based table, 4 KiB blocks, format_version 5, "
                 "shared LRU block cache; no compression (the payloads are random bytes); no bloom "
                 "filter (every Get hits); write_buffer_size 64 MiB x 3; target_file_size_base "
                 "64 MiB; max_bytes_for_level_base 256 MiB; level_compaction_dynamic_level_bytes");

  rocksdb::BlockBasedTableOptions idx_t;
  idx_t.block_cache = s.cache;
  idx_t.block_size = 4096;
  idx_t.format_version = 5;
  idx_t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10, false));
  idx_t.whole_key_filtering = false;
  s.idx_cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(idx_t));
  s.idx_cf.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(8));
  s.idx_cf.memtable_prefix_bloom_size_ratio = 0.1;
  s.idx_cf.compression = rocksdb::kLZ4Compression;
  s.idx_cf.write_buffer_size = 32ull << 20;
  s.idx_cf.max_write_buffer_number = 3;
  s.idx_cf.target_file_size_base = 64ull << 20;
  s.idx_cf.level_compaction_dynamic_level_bytes = true;
  note("cf idx", "key = aggregate (8 B BE) + version (8 B BE), value = sequence (8 B BE); "
                 "prefix_extractor = fixed 8 B (the aggregate); full bloom filter, 10 bits/key, on "
                 "the prefix (whole_key_filtering=false: every lookup is a prefix seek); "
                 "memtable_prefix_bloom_size_ratio 0.1; LZ4; 4 KiB blocks, same block cache; "
                 "write_buffer_size 32 MiB x 3; level_compaction_dynamic_level_bytes");
  note("block cache", "one LRU cache of " + std::to_string(cache_mb) +
                          " MiB shared by both column families (holds the whole loaded DB "
                          "at the default sizes)");
  note("reads", "ReadOptions: prefix_same_as_start=true for the idx iterator; checksums "
                "verified when a block is read from a file (RocksDB's default), not on cache hits");
  return s;
}

struct rocks_db {
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // default, log, idx
  rocksdb::ColumnFamilyHandle* log() const { return handles[1]; }
  rocksdb::ColumnFamilyHandle* idx() const { return handles[2]; }
  ~rocks_db() { close(); }
  void close() {
    if (!db) return;
    for (auto* h : handles) (void)db->DestroyColumnFamilyHandle(h);
    handles.clear();
    if (auto st = db->Close(); !st.ok()) std::fprintf(stderr, "note: rocksdb close: %s\n", st.ToString().c_str());
    delete db;
    db = nullptr;
  }
};

inline void rocks_open(rocks_db& r, const std::string& path, const rocks_setup& s) {
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, s.default_cf}, {"log", s.log_cf}, {"idx", s.idx_cf}};
  auto st = rocksdb::DB::Open(s.db, path, cfs, &r.handles, &r.db);
  if (!st.ok()) fatal("rocksdb open " + path + ": " + st.ToString());
}

inline uint64_t rocks_int_property(const rocks_db& r, rocksdb::ColumnFamilyHandle* cf, const std::string& name) {
  uint64_t v = 0;
  if (!r.db->GetIntProperty(cf, name, &v)) return 0;
  return v;
}

// Reusable buffers for the RocksDB read path.
struct rocks_scratch {
  std::vector<uint64_t> seqs;
  std::vector<char> keybuf;
  std::vector<rocksdb::Slice> keys;
  std::vector<rocksdb::PinnableSlice> values;
  std::vector<rocksdb::Status> statuses;
  rocksdb::PinnableSlice one;
};

inline void fold_rocks_value(agg_read& out, const rocksdb::Slice& v, uint32_t agg, uint64_t expect_version) {
  if (v.size() != kRocksHeader + kPayloadBytes) [[unlikely]] {
    out.in_order = false;
    return;
  }
  uint64_t a, ver;
  std::memcpy(&a, v.data(), 8);
  std::memcpy(&ver, v.data() + 8, 8);
  out.in_order &= a == agg && ver == expect_version;
  out.checksum = fold(out.checksum, touch(v.data() + kRocksHeader, kPayloadBytes));
  ++out.count;
}

// The aggregate's events: prefix iterator over idx, then MultiGet (or one Get
// per sequence) on log.
inline agg_read rocks_read(const rocks_db& r, uint32_t agg, bool multiget, rocks_scratch& s) {
  agg_read out;
  char start[16];
  put_be64(start, agg);
  put_be64(start + 8, 1);
  rocksdb::ReadOptions ro;
  ro.prefix_same_as_start = true;
  s.seqs.clear();
  {
    std::unique_ptr<rocksdb::Iterator> it(r.db->NewIterator(ro, r.idx()));
    uint64_t want = 1;
    for (it->Seek(rocksdb::Slice(start, 16)); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key(), v = it->value();
      if (k.size() != 16 || v.size() != 8) [[unlikely]]
        fatal("rocksdb idx: malformed entry");
      out.in_order &= get_be64(k.data()) == agg && get_be64(k.data() + 8) == want++;
      s.seqs.push_back(get_be64(v.data()));
    }
    if (!it->status().ok()) [[unlikely]]
      fatal("rocksdb idx iterator: " + it->status().ToString());
  }
  const size_t n = s.seqs.size();
  rocksdb::ReadOptions lo;
  if (multiget) {
    if (s.keybuf.size() < n * 8) s.keybuf.resize(n * 8);
    if (s.values.size() < n) {
      s.values.resize(n);
      s.statuses.resize(n);
    }
    s.keys.resize(n);
    for (size_t i = 0; i < n; ++i) {
      put_be64(s.keybuf.data() + 8 * i, s.seqs[i]);
      s.keys[i] = rocksdb::Slice(s.keybuf.data() + 8 * i, 8);
    }
    r.db->MultiGet(lo, r.log(), n, s.keys.data(), s.values.data(), s.statuses.data(), /*sorted_input=*/true);
    for (size_t i = 0; i < n; ++i) {
      if (!s.statuses[i].ok()) [[unlikely]]
        fatal("rocksdb MultiGet: " + s.statuses[i].ToString());
      fold_rocks_value(out, s.values[i], agg, i + 1);
      s.values[i].Reset();
    }
  } else {
    char key[8];
    for (size_t i = 0; i < n; ++i) {
      put_be64(key, s.seqs[i]);
      s.one.Reset();
      auto st = r.db->Get(lo, r.log(), rocksdb::Slice(key, 8), &s.one);
      if (!st.ok()) [[unlikely]]
        fatal("rocksdb Get: " + st.ToString());
      fold_rocks_value(out, s.one, agg, i + 1);
    }
    s.one.Reset();
  }
  return out;
}

// The `log` value of ES-1 event i: aggregate u64, version u64, type u32,
// timestamp u64 (little-endian; the timestamp is the counter i + 1), payload.
inline void rocks_encode_event(char* value, const es1_data& d, uint64_t i) {
  const uint64_t agg = d.aggregate[i], ver = d.version[i], ts = i + 1;
  const uint32_t type = d.version[i] % 8;
  std::memcpy(value, &agg, 8);
  std::memcpy(value + 8, &ver, 8);
  std::memcpy(value + 16, &type, 4);
  std::memcpy(value + 20, &ts, 8);
  std::memcpy(value + kRocksHeader, d.payload_of(i), kPayloadBytes);
}

// Adds ES-1 event i to `batch`: `log` seq -> record and `idx` aggregate+version -> seq.
struct rocks_event_writer {
  char seqkey[8], idxkey[16], seqval[8];
  char value[kRocksHeader + kPayloadBytes];
  void put(rocksdb::WriteBatch& batch, const rocks_db& db, const es1_data& d, uint64_t i) {
    rocks_encode_event(value, d, i);
    put_be64(seqkey, i);
    put_be64(idxkey, d.aggregate[i]);
    put_be64(idxkey + 8, d.version[i]);
    put_be64(seqval, i);
    batch.Put(db.log(), rocksdb::Slice(seqkey, 8), rocksdb::Slice(value, sizeof value));
    batch.Put(db.idx(), rocksdb::Slice(idxkey, 16), rocksdb::Slice(seqval, 8));
  }
};

// Flushes both column families and waits until no compaction is pending or
// running (RocksDB 7.8 has no WaitForCompact).
inline void rocks_settle(const rocks_db& db) {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  if (auto s = db.db->Flush(fo, {db.log(), db.idx()}); !s.ok()) fatal("rocksdb flush: " + s.ToString());
  for (;;) {
    uint64_t busy = rocks_int_property(db, db.log(), "rocksdb.compaction-pending") +
                    rocks_int_property(db, db.idx(), "rocksdb.compaction-pending") +
                    rocks_int_property(db, db.log(), "rocksdb.num-running-compactions") +
                    rocks_int_property(db, db.log(), "rocksdb.num-running-flushes");
    if (busy == 0) break;
    usleep(20'000);
  }
}

inline std::string rocks_version() {
  return std::to_string(ROCKSDB_MAJOR) + "." + std::to_string(ROCKSDB_MINOR) + "." + std::to_string(ROCKSDB_PATCH);
}

}  // namespace varve_bench
