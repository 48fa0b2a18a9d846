// The segments of one open log, by index: installed by the writer, or mapped
// lazily (read-only) by readers on first touch. Lock-free for readers.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "engine/atomic_slots.h"
#include "base/segment.h"

namespace varve {

// Two-level table of atomic slots so it can grow while readers look up, without
// a lock and without moving slots. A segment, once in the table, stays mapped
// until the table is destroyed: views into it stay valid that long.
class segment_table {
 public:
  segment_table(std::shared_ptr<file_system> fs, segment::identity id)
      : fs_(std::move(fs)), id_(std::move(id)) {}
  ~segment_table();
  segment_table(const segment_table&) = delete;
  segment_table& operator=(const segment_table&) = delete;

  // The segment, mapping it read-only from its file if nobody has yet. An
  // archived one comes back readable whole (inflated, checked).
  result<segment*> get(uint64_t index);
  // The same, but an archived segment's frames are left for the caller to
  // ensure() before it reads them (a stream read touches a few records).
  result<segment*> get_lazy(uint64_t index);
  // Only if already present (never maps).
  segment* find(uint64_t index) const;
  // Installs a segment the writer created or opened read-write. Replaces (and
  // keeps alive until destruction) any read-only mapping a reader made first.
  void install(std::unique_ptr<segment> s);
  // Unmaps and closes a segment and empties its slot. Only while nobody else
  // can hold a view of it: recovery, before the log is handed out.
  void evict(uint64_t index);

  // The identity's dir, capacity and log id never change; its archive
  // directory is this table's own (set when the log gains an archive).
  const segment::identity& identity() const { return id_; }
  void set_archive_dir(std::string dir) {
    std::lock_guard<std::mutex> g(archive_mu_);
    archive_dir_ = std::move(dir);
  }
  std::string archive_dir() const {
    std::lock_guard<std::mutex> g(archive_mu_);
    return archive_dir_;
  }
  file_system& fs() const { return *fs_; }
  const std::shared_ptr<file_system>& fs_ptr() const { return fs_; }

 private:

  std::shared_ptr<file_system> fs_;
  segment::identity id_;
  atomic_slots<segment> slots_;
  mutable std::mutex archive_mu_;
  std::string archive_dir_;
  // Replaced mappings, freed at destruction (a reader may still hold views).
  std::atomic<struct retired_node*> retired_{nullptr};
};

}  // namespace varve
