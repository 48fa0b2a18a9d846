// Columnar snapshots of projection state: millions of rows saved and loaded at
// memory speed, with the log position the state reflects, so a replay can load
// the newest valid snapshot and apply only the events after it.
//
//   columnar::schema s({{"id", column_type::u64}, {"balance", column_type::f64},
//                       {"name", column_type::bytes}});
//   columnar::encoder enc(s);                  // rows are cut into blocks (64 Ki rows)
//   enc.add_u64(0, ids); enc.add_f64(1, balances); enc.add_bytes(2, names);
//   std::string bytes = enc.finish(position, /*schema_version=*/1).value();
//
//   auto dec = columnar::decoder::open(bytes); // header, schema, every block's XXH3
//   if (!dec) ...                              // corruption names the offset
//   std::vector<uint64_t> ids; dec->read_u64(0, ids);
//
// As a replay projection's checkpoint (varve/replay.h):
//
//   status save(std::string& out, position at) const {
//     columnar::encoder enc(kSchema);
//     enc.add_u64(0, ids); enc.add_i64(1, balances);
//     return enc.finish_into(out, at, kStateVersion);
//   }
//   status load(std::span<const std::byte> in) {
//     auto dec = columnar::decoder::open(in);
//     if (!dec) return dec.error();
//     if (status s = dec->expect(kSchema); !s.ok()) return s;
//     if (status s = dec->read_u64(0, ids); !s.ok()) return s;
//     return dec->read_i64(1, balances);
//   }
//
// The layout (docs/FORMAT.md section 7c): a header with the schema, blocks of
// rows in which every column is contiguous and 64-byte aligned, integer
// columns frame-of-reference or delta coded and bit-packed at the block's
// minimal width, f64 stored raw (readable in place), bytes as packed end
// offsets plus the concatenated values. The decoder checks everything before
// it hands out a value; after open() succeeds, reads cannot see bad bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "varve/export.h"
#include "varve/file_system.h"
#include "varve/status.h"
#include "varve/types.h"

namespace varve::columnar {

enum class column_type : uint8_t { u32 = 1, u64 = 2, i64 = 3, f64 = 4, bytes = 5 };
VARVE_API std::string_view type_name(column_type t) noexcept;

struct column {
  std::string name;  // 1 to 255 bytes
  column_type type;
  bool operator==(const column&) const = default;
};

class VARVE_API schema {
 public:
  schema() = default;
  schema(std::vector<column> cols) : cols_(std::move(cols)) {}  // NOLINT(implicit)
  const std::vector<column>& columns() const { return cols_; }
  size_t size() const { return cols_.size(); }
  const column& operator[](size_t i) const { return cols_[i]; }
  // The index of a column by name, or -1.
  int find(std::string_view name) const;
  // Names unique and 1..255 bytes, 1..65535 columns, known types.
  status validate() const;
  bool operator==(const schema&) const = default;

 private:
  std::vector<column> cols_;
};

struct encoder_options {
  uint32_t block_rows = 64 * 1024;  // 1 .. 16 Mi; the last block may be shorter
};

// Collects columns (whole, or in pieces: each add appends to that column) and
// emits a block as soon as every column holds block_rows rows, so feeding the
// columns a slice at a time keeps memory to about one block per column.
// Errors (a wrong type, columns of unequal length at finish) are remembered
// and returned by finish().
class encoder {
 public:
  VARVE_API explicit encoder(schema s, encoder_options o = {});
  VARVE_API ~encoder();
  VARVE_API encoder(encoder&&) noexcept;
  VARVE_API encoder& operator=(encoder&&) noexcept;

  VARVE_API void add_u32(uint32_t col, std::span<const uint32_t> v);
  VARVE_API void add_u64(uint32_t col, std::span<const uint64_t> v);
  VARVE_API void add_i64(uint32_t col, std::span<const int64_t> v);
  VARVE_API void add_f64(uint32_t col, std::span<const double> v);
  VARVE_API void add_bytes(uint32_t col, std::span<const std::string> v);
  VARVE_API void add_bytes(uint32_t col, std::span<const std::string_view> v);
  // One value at a time (row-wise producers).
  VARVE_API void add_bytes(uint32_t col, std::string_view v);

  // The encoded snapshot. `at`: the log position the state reflects (every
  // event below it applied, none at or after it); `schema_version`: the
  // caller's own version of its state layout, returned by the decoder.
  VARVE_API result<std::string> finish(position at, uint32_t schema_version = 0);
  // The same into `out` (replacing what it held): a projection's
  // save(std::string& out, position at) is `return enc.finish_into(out, at);`.
  VARVE_API status finish_into(std::string& out, position at, uint32_t schema_version = 0);
  // finish(), then DIR/NAME written atomically (NAME.partial, datasync,
  // rename, directory sync): a crash leaves the old file or the new one.
  VARVE_API status write_file(file_system& fs, const std::string& dir, const std::string& name,
                    position at, uint32_t schema_version = 0);

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

struct decoder_options {
  // Fuzzing and forensics only: skip the XXH3 checks (the structural checks
  // still run, so bad bytes still cannot crash a read).
  bool verify_checksums = true;
};

// Reads an encoded snapshot in place: the bytes must outlive the decoder
// (open_file keeps its own copy). Views handed out point into them.
class decoder {
 public:
  VARVE_API static result<decoder> open(std::span<const std::byte> bytes, decoder_options o = {});
  VARVE_API static result<decoder> open(std::string_view bytes, decoder_options o = {});
  // Reads the whole file; errors name the path.
  VARVE_API static result<decoder> open_file(file_system& fs, const std::string& path,
                                   decoder_options o = {});
  VARVE_API ~decoder();
  VARVE_API decoder(decoder&&) noexcept;
  VARVE_API decoder& operator=(decoder&&) noexcept;

  VARVE_API const columnar::schema& schema() const;
  VARVE_API uint32_t schema_version() const;
  VARVE_API position at() const;  // the log position the state reflects
  VARVE_API uint64_t rows() const;
  VARVE_API uint32_t block_rows() const;
  VARVE_API uint64_t blocks() const;
  VARVE_API uint64_t rows_in_block(uint64_t block) const;

  // invalid_argument unless this snapshot's schema is exactly `want`.
  VARVE_API status expect(const columnar::schema& want) const;

  // A whole column into `out` (resized to rows()). invalid_argument when the
  // column does not exist or has another type; corruption for a bytes
  // column whose offsets do not add up (the only thing open() leaves to the
  // read, since it would cost a decode).
  VARVE_API status read_u32(uint32_t col, std::vector<uint32_t>& out) const;
  VARVE_API status read_u64(uint32_t col, std::vector<uint64_t>& out) const;
  VARVE_API status read_i64(uint32_t col, std::vector<int64_t>& out) const;
  VARVE_API status read_f64(uint32_t col, std::vector<double>& out) const;
  VARVE_API status read_bytes(uint32_t col, std::vector<std::string>& out) const;
  // Views into the snapshot's bytes (no copy of the values).
  VARVE_API status read_bytes(uint32_t col, std::vector<std::string_view>& out) const;

  // One block into a caller's span of exactly rows_in_block(block) values
  // (parallel or streaming loads).
  VARVE_API status read_u32(uint32_t col, uint64_t block, std::span<uint32_t> out) const;
  VARVE_API status read_u64(uint32_t col, uint64_t block, std::span<uint64_t> out) const;
  VARVE_API status read_i64(uint32_t col, uint64_t block, std::span<int64_t> out) const;
  // f64 in place, no copy: invalid_argument when the snapshot's bytes are not
  // 8-byte aligned in memory (then read_f64 copies instead).
  VARVE_API result<std::span<const double>> view_f64(uint32_t col, uint64_t block) const;

 private:
  struct impl;
  explicit decoder(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
};

// Which integer unpacking routine this CPU runs ("avx2" or "sse2"), for reports.
VARVE_API std::string_view simd_level() noexcept;

}  // namespace varve::columnar
