// One segment file: preallocated to its full capacity, mapped whole. Created
// (and pre-faulted) ahead of need by the background thread; mapped lazily by
// readers. Immutable once sealed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "base/segment_format.h"
#include "varve/file_system.h"
#include "varve/status.h"

namespace varve {

class segment {
 public:
  struct identity {
    std::string dir;
    uint8_t log2_capacity;
    uint64_t log_id;
    // The log's archive directory (DIR/archive), empty when it has none:
    // open() falls back to the archived copy of a segment whose file has
    // left DIR.
    std::string archive_dir = {};
    // The writer syncs its segments batch by batch (modes group and sync):
    // segments it creates are backed by page-sized page cache folios. With
    // the kernel's large folios, a sync that ends inside one writes it whole
    // and write-protects all of its pages, and the writer then faults on each
    // page of it again (~11 faults per 1,000-event batch); page-sized ones
    // pre-fault 3x slower, which only a writer that never syncs would notice.
    bool page_folios = false;
  };
  enum class prefault : uint8_t { no, for_write };
  // Pre-faulting runs in slices of this size, so the mapping lock is never
  // held long (another thread's mmap or munmap waits for at most one slice).
  static constexpr uint64_t kPrefaultSlice = 4ull << 20;

  // Creates DIR/<index>.seg: allocate every byte (ENOSPC fails here, never as a
  // SIGBUS later), map read-write, write the header, optionally fault every
  // page in for writing. On failure the partial file is removed.
  static result<std::unique_ptr<segment>> create(std::shared_ptr<file_system> fs,
                                                 const identity& id, uint64_t index,
                                                 prefault pf);
  // Maps an existing segment, checking its size and header. A read-only
  // open of a segment whose file is gone from DIR but archived (the log has
  // an archive directory) opens the archived copy instead: `whole` inflates
  // all of it now; otherwise frames are inflated as ensure() asks for them.
  static result<std::unique_ptr<segment>> open(std::shared_ptr<file_system> fs,
                                               const identity& id, uint64_t index,
                                               map_access access, bool whole = true);
  // The archived copy of segment `index` in `archive_dir` (archive tier).
  static result<std::unique_ptr<segment>> open_archived(std::shared_ptr<file_system> fs,
                                                        const identity& id, uint64_t index,
                                                        const std::string& archive_dir, bool whole);
  ~segment();
  segment(const segment&) = delete;
  segment& operator=(const segment&) = delete;

  std::byte* data() const { return data_; }
  uint64_t capacity() const { return capacity_; }
  uint64_t index() const { return index_; }
  uint64_t base_position() const { return index_ * capacity_; }
  // Records live in [kHeaderSize, records_end()); the footer after.
  uint64_t records_end() const { return capacity_ - segment_format::kFooterSize; }
  const std::string& path() const { return file_.path; }
  const file_handle& file() const { return file_; }
  file_system& fs() const { return *fs_; }
  bool writable() const { return access_ == map_access::read_write; }

  // Once the writer has left the segment: the writable mapping becomes a
  // read-only one at the same address (views stay valid). Write-back then
  // has no writable page table entries to write-protect, so syncing the
  // segment sends no TLB-shootdown interrupts to the writer's CPU. The
  // descriptor stays (for fdatasync) until release_file(). Only the thread
  // that syncs the log's data (under its sync gate) may call these.
  status make_read_only();
  // The writer will never write bytes [from, to) of this segment again
  // (committed records are immutable): the writable mapping drops its page
  // table entries for the whole pages inside the range. The pages stay in
  // the page cache, dirty ones dirty; a read through these addresses faults
  // them back in. Why: a sync's write-back must otherwise write-protect every
  // writable entry it finds, each one a TLB-shootdown interrupt to every CPU
  // running a thread of this process (DESIGN.md "Durability"). A hint: its
  // failure changes nothing.
  void drop_written(uint64_t from, uint64_t to);
  // Closes the descriptor of a read-only segment that is durable whole, so a
  // long log holds no descriptor per segment.
  void release_file();
  // Retention, once its grace period is over (the file is unlinked and no
  // reader may still be inside the segment): the file's pages are swapped for
  // anonymous zero pages at the same address and the descriptor is closed, so
  // the file's blocks return to the file system. A stale pointer then reads
  // zeros, which never validate as a record, rather than faulting.
  status drop_file_pages();

  // ok + footer when sealed; not_found when unsealed; corruption otherwise.
  status read_footer(segment_format::footer& out) const;

  // --- archived segments (base/archive_file.h) ---
  // Its bytes come from the archive: an anonymous mapping filled frame by
  // frame, each frame checked against its checksum before it is marked
  // there. Hot segments answer these at once.
  bool archived() const { return arc_ != nullptr; }
  // Makes [off, off + n) of the segment readable; an error names the
  // archive file and offset of a frame that does not check (its bytes stay
  // zero, which never validates as a record).
  status ensure(uint64_t off, uint64_t n) const {
    if (!arc_) [[likely]] return {};
    return fill(off, n);
  }
  status ensure_all() const { return ensure(0, capacity_); }

 private:
  struct archive_state;
  segment(std::shared_ptr<file_system> fs, file_handle f, std::byte* data, uint64_t capacity,
          uint64_t index, map_access access);
  status fill(uint64_t off, uint64_t n) const;
  std::unique_ptr<archive_state> arc_;
  std::shared_ptr<file_system> fs_;
  file_handle file_;
  std::byte* data_;
  uint64_t capacity_;
  uint64_t index_;
  map_access access_;
};

}  // namespace varve
