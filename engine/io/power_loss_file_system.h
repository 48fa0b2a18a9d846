// A file_system that simulates power loss. It wraps another one (POSIX by
// default) and keeps, beside every file, a copy-on-sync shadow: the bytes and
// the directory entries a power loss at this instant would be guaranteed to
// leave. crash() then writes, into another directory, one state a real power
// loss could leave: the durable bytes, plus a random choice of what the
// kernel might have written back on its own. Used by tests/power_loss_test.cc;
// not public API. docs/RELIABILITY.md ("Power loss") describes the model.
//
// The model:
//  - File data is durable per 4 KiB page. datasync(f) makes all of f durable;
//    sync_range(f, addr, n) (msync) makes the pages of [addr, addr + n) of a
//    mapping durable; sync_filesystem makes everything durable. pwrite and
//    stores into a shared mapping make nothing durable.
//  - Metadata (file creation, size changes by allocate/truncate, rename,
//    unlink, mkdir) goes through an ordered journal, like ext4's: an entry
//    becomes durable when the directory it touches is synced (sync_dir),
//    when the file it resizes is synced (datasync, sync_range), or at
//    sync_filesystem. A crash keeps every durable entry plus a random prefix
//    of the ones that are not, so a file created or renamed in a directory
//    that was never synced may be missing or have its old name, and a file
//    whose new size was never synced may have its old size.
//  - A crash keeps each dirty page (live content differs from the durable
//    copy) old, new, or torn at 512-byte sectors (each sector old or new:
//    sector writes are atomic). A page that never held durable data may
//    also come back as garbage, whole or in some sectors.
//  - Files that existed before this object first saw them (opened or listed)
//    count as durable as they were then.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "varve/file_system.h"

namespace varve {

class power_loss_file_system final : public file_system {
 public:
  // Probabilities for each dirty page at a crash (the rest: kept old).
  struct crash_options {
    double page_new = 0.35;      // the live page was written back whole
    double page_torn = 0.25;     // some sectors new, some old
    double page_garbage = 0.10;  // never-durable pages only: garbage (whole or some sectors)
  };
  // What one crash() did.
  struct crash_report {
    uint64_t files = 0;
    uint64_t dirty_pages = 0, pages_new = 0, pages_torn = 0, pages_garbage = 0, pages_old = 0;
    uint64_t journal_pending = 0, journal_applied = 0;  // metadata entries not durable / kept anyway
    uint64_t files_resized = 0;  // files whose crash size differs from their live size
    std::string to_string() const;
  };

  explicit power_loss_file_system(std::shared_ptr<file_system> base = posix_file_system());
  ~power_loss_file_system() override;

  // Writes into `target` (created; must not exist or be empty) the state of
  // the tree under `root` that a power loss now could leave, drawn from `seed`.
  // Safe to call while other threads use this file system: it sees one instant.
  status crash(const std::string& root, const std::string& target, uint64_t seed,
               crash_report* report = nullptr);
  status crash(const std::string& root, const std::string& target, uint64_t seed,
               const crash_options& o, crash_report* report = nullptr);

  // Called after each successful mutating operation (outside the lock), with
  // the operation's name ("create", "allocate", "truncate", "pwrite",
  // "datasync", "sync_range", "rename", "remove", "sync_dir",
  // "sync_filesystem", "create_dir") and path: lets a test crash right after,
  // say, a checkpoint's rename. The hook may call crash().
  void set_hook(std::function<void(const char* op, const std::string& path)> hook);

  // Counters, for tests that want to see the model at work.
  uint64_t syncs() const;
  uint64_t durable_bytes() const;

  result<file_handle> open(const std::string& path, open_mode mode) override;
  void close(file_handle& f) override;
  status allocate(const file_handle& f, uint64_t size) override;
  status truncate(const file_handle& f, uint64_t size) override;
  result<uint64_t> file_size(const file_handle& f) override { return base_->file_size(f); }
  status pwrite(const file_handle& f, uint64_t offset, const void* data, size_t n) override;
  status pread(const file_handle& f, uint64_t offset, void* data, size_t n) override {
    return base_->pread(f, offset, data, n);
  }
  status datasync(const file_handle& f) override;
  result<void*> map(const file_handle& f, uint64_t size, map_access access) override;
  void unmap(void* addr, uint64_t size) override;
  status sync_range(const file_handle& f, void* addr, uint64_t n) override;
  status populate_write(void* addr, uint64_t n) override { return base_->populate_write(addr, n); }
  status rename(const std::string& from, const std::string& to) override;
  status remove(const std::string& path) override;
  status sync_dir(const std::string& dir) override;
  status sync_filesystem(const std::string& dir) override;
  status create_dir(const std::string& dir) override;
  bool exists(const std::string& path) override { return base_->exists(path); }
  result<std::vector<std::string>> list_dir(const std::string& dir) override;

 private:
  static constexpr uint64_t kPage = 4096;
  static constexpr uint64_t kSector = 512;

  struct file {
    std::string durable;          // durable bytes; its size is the durable size
    std::set<uint64_t> ever_durable_pages;  // pages that held durable data at some point
    std::string live_path;        // where the live content is now ("" once unlinked)
    std::vector<int> fds;         // open descriptors (live content after an unlink)
  };
  // One metadata change, in journal order.
  struct entry {
    enum kind : uint8_t { link, unlink, rename, resize, mkdir } k;
    std::string path;   // link/unlink/mkdir: the name; rename: the old name; resize: unused
    std::string to;     // rename: the new name
    std::string dir;    // link/unlink/rename/mkdir: the directory whose sync makes it durable
    uint64_t id = 0;    // link/resize: the file
    uint64_t size = 0;  // resize
  };
  // The durable namespace: path -> file id (0 for a directory), and each file's durable size.
  struct ns_state {
    std::map<std::string, uint64_t> names;
    std::map<uint64_t, uint64_t> sizes;
  };

  static std::string parent_of(const std::string& path);
  static void apply(ns_state& s, const entry& e);
  uint64_t adopt_locked(const std::string& path, int fd);
  void make_durable_locked(uint64_t id, uint64_t from, uint64_t to, int fd);
  void commit_matching_locked(const std::function<bool(const entry&)>& pred);
  void after(const char* op, const std::string& path);
  std::string live_content_locked(uint64_t id) const;

  std::shared_ptr<file_system> base_;
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, file> files_;
  std::map<std::string, uint64_t> live_;  // live path -> id, files only
  std::set<std::string> live_dirs_;
  std::map<int, uint64_t> fd_id_;
  std::map<uintptr_t, std::pair<uint64_t, uint64_t>> maps_;  // addr -> (id, size)
  ns_state durable_;
  std::vector<entry> journal_;  // not yet durable, in order
  uint64_t syncs_ = 0;
  std::function<void(const char*, const std::string&)> hook_;
};

}  // namespace varve
