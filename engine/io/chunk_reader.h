// chunk_reader: reads a range of the log in large chunks, in log order, and
// validates every record in them (bounds, checksum, position, sequence) before
// handing a chunk out. The source of the replay scheduler (engine/replay/).
//
// One thread uses a reader. A chunk's bytes stay valid until it is released;
// the reader holds at most `max_held` unreleased chunks (the caller releases
// in any order; next() fails with errc::invalid_argument if it would exceed
// that). Chunks never span segments; a record never spans chunks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "varve/io_backend.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve::detail {
struct shared_log;
}

namespace varve {

struct chunk_reader_options {
  io_backend backend = io_backend::automatic;
  uint32_t chunk_bytes = 1u << 20;  // size of one read (uring/pread); rounded to 4 KiB
  uint32_t depth = 4;               // reads in flight (uring) / read ahead (mmap: madvise)
  uint32_t max_held = 8;            // chunks the caller may hold unreleased at once
  // Asked once per segment before any of its bytes is read: true = the reader
  // skips the whole segment (e.g. its summary shows no event a filter wants).
  // Only called for segments that lie wholly inside [from, to).
  std::function<bool(uint64_t segment_index)> skip_segment;
  // Frame only: event records are checked for what finding the next record
  // needs (length, kind, bounds, their own position, dense sequences) but
  // their checksums and other fields are NOT verified: the caller must run
  // each listed event through record::decode_inline with the checksum before
  // using a byte of it. The replay scheduler does, on its workers, so that
  // the one thread that walks the log is not the one that hashes every byte
  // (docs/DESIGN.md, "Replay"). Segment-end markers, holes and ignorable
  // records are still validated whole.
  bool frame_only = false;
  // uring: which segments are read with O_DIRECT (buffered_chunk_reader.cc,
  // use_direct). `cold`: every segment that is full (not the range's last)
  // and mostly not in the page cache. `automatic`: the same, but only when
  // the range is larger than half of the memory available for the page
  // cache (MemAvailable): a range that fits stays cached for the next
  // reader, one that does not would only evict what others use. The
  // environment's VARVE_IO_DIRECT=1 / 0 makes `automatic` mean `cold` / `never`.
  enum class direct_reads : uint8_t { automatic, cold, never };
  direct_reads direct = direct_reads::automatic;
  // Reads in flight (uring) while reading O_DIRECT. 0: 16 MiB in flight
  // (16 x 1 MiB windows), as 16 - 64 reads of the chunk size: measured
  // (BENCHMARKS 22, 25), the device needs about that much asked of it at once.
  uint32_t direct_depth = 0;
};

struct chunk {
  const std::byte* data = nullptr;  // the first byte of the chunk
  uint64_t position = 0;            // log position of data[0]
  uint64_t end = 0;                 // log position one past the chunk's last record
  // Offsets (from data) of the chunk's event records, in order; segment-end
  // markers and ignorable records are validated but not listed. With
  // frame_only, listed events are framed, not yet validated.
  std::span<const uint32_t> events;
  uint64_t first_sequence = 0;      // sequence of events[0] (if any)
  uint32_t slot = 0;                // which buffer; pass the chunk back to release()
};

class chunk_reader {
 public:
  // Reads [from, to): `from` a record position (or a segment's start), `to` at
  // most the committed position when called (a position past it is clamped).
  static result<std::unique_ptr<chunk_reader>> open(std::shared_ptr<detail::shared_log> log,
                                                    position from, position to,
                                                    const chunk_reader_options& options = {});
  virtual ~chunk_reader() = default;

  // The next chunk: true and `out` filled; false once `to` is reached. A record
  // that fails validation: the records before it come out first, then the next
  // call returns errc::corruption naming the segment file and offset.
  virtual result<bool> next(chunk& out) = 0;
  virtual void release(const chunk& c) = 0;

  // The backend really in use (automatic resolved; a fallback reported).
  virtual io_backend backend() const = 0;
  // Where the next chunk starts (or `to`): the position reached.
  virtual position where() const = 0;
  // Bytes read from files so far (0 for mmap) and segments skipped.
  virtual uint64_t bytes_read() const = 0;
  virtual uint64_t segments_skipped() const = 0;
  // One line for logs and benchmarks: backend, buffers, depth.
  virtual std::string describe() const { return to_string(backend()); }
};

// The backend `automatic` resolves to in this process: VARVE_IO if set (an
// unknown value is an error), else uring if io_uring_queue_init works here,
// else pread — said once on stderr.
result<io_backend> resolve_io_backend(io_backend requested);

}  // namespace varve
