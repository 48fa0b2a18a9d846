// The columnar snapshot codec (include/varve/columnar.h). docs/FORMAT.md
// section 7c is the byte layout; in short:
//
//   header (64 B) | schema | block 0 | block 1 | ... | directory | checksum
//   block: header (64 B) | one 64 B descriptor per column | column regions,
//          each starting on a 64-byte boundary
//
// Integer columns are cut into groups of 256 values and bit-packed at the
// block's minimal width by columnar_kernels.inc, after frame-of-reference
// (value - min) or delta (difference - minimum difference) coding, whichever
// needs fewer bits. Every size and offset is checked against the file before
// it is used; the checksums are checked too, but safety never rests on them.
#include "varve/columnar.h"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "base/coding.h"
#include "engine/snapshot/columnar_kernels.h"
#include "index/index_file.h"

namespace varve::columnar {

using namespace coding;

namespace {

constexpr char kMagic[8] = {'V', 'A', 'R', 'V', 'E', 'C', 'O', 'L'};
constexpr char kBlockMagic[4] = {'V', 'C', 'B', 'K'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 64;
constexpr size_t kBlockHeader = 64;
constexpr size_t kDesc = 64;
constexpr size_t kGroup = 256;
constexpr uint32_t kMaxBlockRows = 1u << 24;
constexpr uint32_t kMaxColumns = 65535;

enum coding_kind : uint8_t { raw = 0, frame = 1, delta = 2 };

uint64_t align64(uint64_t n) { return (n + 63) & ~uint64_t{63}; }
uint64_t groups_of(uint64_t rows) { return (rows + kGroup - 1) / kGroup; }

// XXH3-64 of [0, 56) followed by [64, n): the header's and block's rule, so the
// checksum field itself (at 56) is the only byte range left out.
uint64_t split_checksum(const std::byte* p, uint64_t n) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, p, 56);
  if (n > 64) XXH3_64bits_update(st, p + 64, n - 64);
  const uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

// Bits of the integer domain a column is packed in (bytes: its u64 end offsets).
unsigned domain_bits(column_type t) { return t == column_type::u32 ? 32 : 64; }

}  // namespace

std::string_view type_name(column_type t) noexcept {
  switch (t) {
    case column_type::u32: return "u32";
    case column_type::u64: return "u64";
    case column_type::i64: return "i64";
    case column_type::f64: return "f64";
    case column_type::bytes: return "bytes";
  }
  return "unknown";
}

int schema::find(std::string_view name) const {
  for (size_t i = 0; i < cols_.size(); ++i)
    if (cols_[i].name == name) return static_cast<int>(i);
  return -1;
}

status schema::validate() const {
  if (cols_.empty() || cols_.size() > kMaxColumns)
    return status(errc::invalid_argument,
                  "a columnar schema needs 1 to 65535 columns, not " + std::to_string(cols_.size()));
  std::unordered_set<std::string_view> seen;
  for (const auto& c : cols_) {
    if (c.name.empty() || c.name.size() > 255)
      return status(errc::invalid_argument, "column name '" + c.name + "' must be 1 to 255 bytes");
    if (type_name(c.type) == "unknown")
      return status(errc::invalid_argument, "column '" + c.name + "' has an unknown type");
    if (!seen.insert(c.name).second)
      return status(errc::invalid_argument, "column name '" + c.name + "' appears twice");
  }
  return {};
}

std::string_view simd_level() noexcept { return kernels::active().name; }

// ---------------------------------------------------------------------------
// Encoder.

namespace {

// One column's rows not yet cut into a block. `head` rows at the front are
// already emitted. Compacted only when what is left is small next to what is
// gone: a slice-at-a-time producer keeps about one block staged, and a whole
// column is never moved (it is freed with the encoder).
struct stage {
  std::vector<uint32_t> u32;
  std::vector<uint64_t> u64;   // u64, i64 and f64 bit patterns, bytes lengths
  std::string data;            // bytes values, concatenated
  size_t head = 0, data_head = 0;
  size_t pending(column_type t) const {
    return (t == column_type::u32 ? u32.size() : u64.size()) - head;
  }
  void compact(column_type t, size_t block_rows) {
    const size_t left = pending(t);
    if (head < 4096 || left > head || left > 2 * size_t{block_rows}) return;
    if (t == column_type::u32) u32.erase(u32.begin(), u32.begin() + static_cast<ptrdiff_t>(head));
    else u64.erase(u64.begin(), u64.begin() + static_cast<ptrdiff_t>(head));
    if (data_head) data.erase(0, data_head);
    head = data_head = 0;
  }
};

struct int_choice {
  coding_kind kind;
  unsigned width;
  uint64_t base, step;
};

// Frame of reference needs bits for max - min; delta for the spread of the
// differences. Ties go to frame of reference: its decode has no running sum.
template <class T, class Order>
int_choice choose(const T* v, size_t n) {
  using S = std::make_signed_t<T>;
  T lo = v[0], hi = v[0];
  S dlo = 0, dhi = 0;
  if (n > 1) dlo = dhi = static_cast<S>(static_cast<T>(v[1] - v[0]));
  // One pass for both codings: the block is read from memory once.
  for (size_t i = 1; i < n; ++i) {
    lo = std::min<T>(lo, v[i], Order{});
    hi = std::max<T>(hi, v[i], Order{});
    const S d = static_cast<S>(static_cast<T>(v[i] - v[i - 1]));
    dlo = std::min(dlo, d);
    dhi = std::max(dhi, d);
  }
  const unsigned wf = static_cast<unsigned>(std::bit_width(static_cast<T>(hi - lo)));
  const unsigned wd =
      static_cast<unsigned>(std::bit_width(static_cast<T>(static_cast<T>(dhi) - static_cast<T>(dlo))));
  if (n > 1 && wd < wf) return {delta, wd, v[0], static_cast<T>(dlo)};
  return {frame, wf, lo, 0};
}

struct unsigned_less {
  template <class T>
  bool operator()(T a, T b) const { return a < b; }
};
struct signed_less {
  template <class T>
  bool operator()(T a, T b) const {
    using S = std::make_signed_t<T>;
    return static_cast<S>(a) < static_cast<S>(b);
  }
};

template <class T>
void pack_ints(const T* v, size_t n, const int_choice& c, std::byte* out) {
  const auto& k = kernels::active();
  alignas(64) T tmp[kGroup];
  const T base = static_cast<T>(c.base), step = static_cast<T>(c.step);
  for (size_t g = 0; g * kGroup < n; ++g) {
    const size_t from = g * kGroup, m = std::min(kGroup, n - from);
    if (c.kind == frame) {
      for (size_t i = 0; i < m; ++i) tmp[i] = static_cast<T>(v[from + i] - base);
    } else {
      for (size_t i = 0; i < m; ++i) {
        const size_t at = from + i;
        tmp[i] = at == 0 ? T{0} : static_cast<T>(static_cast<T>(v[at] - v[at - 1]) - step);
      }
    }
    std::fill(tmp + m, tmp + kGroup, T{0});
    if constexpr (sizeof(T) == 4) k.pack32[c.width](tmp, out + g * c.width * 32, 1);
    else k.pack64[c.width](tmp, out + g * c.width * 32, 1);
  }
}

}  // namespace

struct encoder::impl {
  columnar::schema sch;
  encoder_options opt;
  std::vector<stage> st;
  std::string out;
  std::vector<uint64_t> block_offsets;
  uint64_t rows = 0;
  status err;
  bool finished = false;
  std::vector<uint64_t> ends;  // scratch: a bytes column's end offsets

  bool check(uint32_t col, column_type want, const char* call) {
    if (!err.ok()) return false;
    if (finished) {
      err = status(errc::invalid_argument, std::string(call) + " after finish()");
      return false;
    }
    if (col >= sch.size()) {
      err = status(errc::invalid_argument, std::string(call) + ": no column " + std::to_string(col));
      return false;
    }
    if (sch[col].type != want) {
      err = status(errc::invalid_argument,
                   std::string(call) + ": column '" + sch[col].name + "' is " +
                       std::string(type_name(sch[col].type)));
      return false;
    }
    return true;
  }

  size_t ready() const {
    size_t n = std::numeric_limits<size_t>::max();
    for (size_t c = 0; c < sch.size(); ++c) n = std::min(n, st[c].pending(sch[c].type));
    return n;
  }

  void pump() {
    const size_t n = ready();
    if (n < opt.block_rows || !err.ok()) return;
    // Room for the blocks about to go out at their raw size (a bound for
    // packed columns, give or take padding): growing the output by doubling
    // instead copies it again and faults in twice the pages.
    size_t row_bytes = 0, value_bytes = 0;
    for (size_t c = 0; c < sch.size(); ++c) {
      row_bytes += sch[c].type == column_type::u32 ? 4 : 8;
      if (sch[c].type == column_type::bytes) value_bytes += st[c].data.size() - st[c].data_head;
    }
    const size_t blocks = n / opt.block_rows;
    out.reserve(out.size() + blocks * (opt.block_rows * row_bytes + 64 * (sch.size() + 1) * 3) + value_bytes);
    while (err.ok() && ready() >= opt.block_rows) emit(opt.block_rows);
  }

  // The header and schema go first; finish() fills in what it only knows then.
  void start() {
    out.assign(kHeader, '\0');
    for (const auto& c : sch.columns()) {
      out.push_back(static_cast<char>(c.type));
      out.push_back(static_cast<char>(c.name.size()));
      out += c.name;
    }
    out.resize(align64(out.size()), '\0');
  }

  std::byte* at(size_t off) { return reinterpret_cast<std::byte*>(out.data()) + off; }

  template <class T>
  void put_ints(size_t desc, const T* v, size_t n, const int_choice& c) {
    const size_t off = align64(out.size());
    const size_t len = groups_of(n) * c.width * 32;
    out.resize(off + len, '\0');
    pack_ints<T>(v, n, c, at(off));
    std::byte* d = at(desc);
    put_u8(d, c.kind);
    put_u8(d + 1, static_cast<uint8_t>(c.width));
    put_u64(d + 8, c.base);
    put_u64(d + 16, c.step);
    put_u64(d + 24, off - block_offsets.back());
    put_u64(d + 32, len);
  }

  void emit(size_t n) {
    const size_t start_off = out.size();  // 64-aligned: everything before is padded
    block_offsets.push_back(start_off);
    const size_t cols = sch.size();
    out.resize(start_off + kBlockHeader + kDesc * cols, '\0');
    for (size_t c = 0; c < cols; ++c) {
      stage& s = st[c];
      const size_t desc = start_off + kBlockHeader + kDesc * c;
      switch (sch[c].type) {
        case column_type::u32: {
          const uint32_t* v = s.u32.data() + s.head;
          put_ints<uint32_t>(desc, v, n, choose<uint32_t, unsigned_less>(v, n));
          break;
        }
        case column_type::u64: {
          const uint64_t* v = s.u64.data() + s.head;
          put_ints<uint64_t>(desc, v, n, choose<uint64_t, unsigned_less>(v, n));
          break;
        }
        case column_type::i64: {
          const uint64_t* v = s.u64.data() + s.head;
          put_ints<uint64_t>(desc, v, n, choose<uint64_t, signed_less>(v, n));
          break;
        }
        case column_type::f64: {
          const size_t off = align64(out.size());
          out.resize(off + n * 8, '\0');
          std::memcpy(at(off), s.u64.data() + s.head, n * 8);
          std::byte* d = at(desc);
          put_u8(d, raw);
          put_u8(d + 1, 64);
          put_u64(d + 24, off - start_off);
          put_u64(d + 32, n * 8);
          break;
        }
        case column_type::bytes: {
          ends.resize(n);
          uint64_t total = 0;
          for (size_t i = 0; i < n; ++i) ends[i] = total += s.u64[s.head + i];
          put_ints<uint64_t>(desc, ends.data(), n, choose<uint64_t, unsigned_less>(ends.data(), n));
          const size_t off = align64(out.size());
          out.resize(off + total, '\0');
          if (total) std::memcpy(at(off), s.data.data() + s.data_head, total);
          put_u64(at(desc) + 40, off - start_off);
          put_u64(at(desc) + 48, total);
          s.data_head += total;
          break;
        }
      }
      s.head += n;
      s.compact(sch[c].type, opt.block_rows);
    }
    out.resize(align64(out.size()), '\0');
    std::byte* h = at(start_off);
    const uint64_t bytes = out.size() - start_off;
    std::memcpy(h, kBlockMagic, 4);
    put_u32(h + 4, static_cast<uint32_t>(n));
    put_u64(h + 8, block_offsets.size() - 1);
    put_u64(h + 16, rows);
    put_u64(h + 24, bytes);
    put_u64(h + 56, split_checksum(h, bytes));
    rows += n;
  }
};

encoder::encoder(columnar::schema s, encoder_options o) : p_(std::make_unique<impl>()) {
  p_->sch = std::move(s);
  p_->opt = o;
  p_->err = p_->sch.validate();
  if (p_->err.ok() && (o.block_rows == 0 || o.block_rows > kMaxBlockRows))
    p_->err = status(errc::invalid_argument,
                     "block_rows must be 1 .. 16777216, not " + std::to_string(o.block_rows));
  p_->st.resize(p_->sch.size());
  if (p_->err.ok()) p_->start();
}
encoder::~encoder() = default;
encoder::encoder(encoder&&) noexcept = default;
encoder& encoder::operator=(encoder&&) noexcept = default;

void encoder::add_u32(uint32_t col, std::span<const uint32_t> v) {
  if (!p_->check(col, column_type::u32, "add_u32")) return;
  p_->st[col].u32.insert(p_->st[col].u32.end(), v.begin(), v.end());
  p_->pump();
}
void encoder::add_u64(uint32_t col, std::span<const uint64_t> v) {
  if (!p_->check(col, column_type::u64, "add_u64")) return;
  p_->st[col].u64.insert(p_->st[col].u64.end(), v.begin(), v.end());
  p_->pump();
}
void encoder::add_i64(uint32_t col, std::span<const int64_t> v) {
  if (!p_->check(col, column_type::i64, "add_i64")) return;
  auto& d = p_->st[col].u64;
  const size_t old = d.size();
  d.resize(old + v.size());
  if (!v.empty()) std::memcpy(d.data() + old, v.data(), v.size() * 8);
  p_->pump();
}
void encoder::add_f64(uint32_t col, std::span<const double> v) {
  if (!p_->check(col, column_type::f64, "add_f64")) return;
  auto& d = p_->st[col].u64;
  const size_t old = d.size();
  d.resize(old + v.size());
  if (!v.empty()) std::memcpy(d.data() + old, v.data(), v.size() * 8);  // bit patterns, NaNs kept
  p_->pump();
}
void encoder::add_bytes(uint32_t col, std::span<const std::string> v) {
  if (!p_->check(col, column_type::bytes, "add_bytes")) return;
  for (const auto& s : v) {
    p_->st[col].u64.push_back(s.size());
    p_->st[col].data += s;
  }
  p_->pump();
}
void encoder::add_bytes(uint32_t col, std::span<const std::string_view> v) {
  if (!p_->check(col, column_type::bytes, "add_bytes")) return;
  for (const auto& s : v) {
    p_->st[col].u64.push_back(s.size());
    p_->st[col].data += s;
  }
  p_->pump();
}
void encoder::add_bytes(uint32_t col, std::string_view v) { add_bytes(col, std::span(&v, 1)); }

result<std::string> encoder::finish(position at, uint32_t schema_version) {
  impl& m = *p_;
  if (!m.err.ok()) return m.err;
  if (m.finished) return status(errc::invalid_argument, "finish() called twice");
  const size_t cols = m.sch.size();
  size_t lo = std::numeric_limits<size_t>::max(), hi = 0;
  for (size_t c = 0; c < cols; ++c) {
    lo = std::min(lo, m.st[c].pending(m.sch[c].type));
    hi = std::max(hi, m.st[c].pending(m.sch[c].type));
  }
  if (lo != hi)
    return status(errc::invalid_argument,
                  "columns have unequal lengths (" + std::to_string(m.rows + lo) + " to " +
                      std::to_string(m.rows + hi) + " rows)");
  if (lo) m.emit(lo);
  m.finished = true;
  const uint64_t dir = m.out.size();
  m.out.resize(dir + 8 * m.block_offsets.size() + 8, '\0');
  for (size_t b = 0; b < m.block_offsets.size(); ++b) put_u64(m.at(dir + 8 * b), m.block_offsets[b]);
  put_u64(m.at(dir + 8 * m.block_offsets.size()), XXH3_64bits(m.at(dir), 8 * m.block_offsets.size()));
  std::byte* h = m.at(0);
  uint32_t schema_bytes = 0;
  for (const auto& c : m.sch.columns()) schema_bytes += 2 + static_cast<uint32_t>(c.name.size());
  std::memcpy(h, kMagic, 8);
  put_u32(h + 8, kVersion);
  put_u32(h + 12, schema_version);
  put_u64(h + 16, at.value);
  put_u64(h + 24, m.rows);
  put_u32(h + 32, static_cast<uint32_t>(cols));
  put_u32(h + 36, m.opt.block_rows);
  put_u64(h + 40, dir);
  put_u32(h + 48, schema_bytes);
  put_u64(h + 56, split_checksum(h, align64(kHeader + schema_bytes)));
  m.st.clear();
  return std::move(m.out);
}

status encoder::finish_into(std::string& out, position at, uint32_t schema_version) {
  auto r = finish(at, schema_version);
  if (!r) return r.error();
  out = std::move(r.value());
  return {};
}

status encoder::write_file(file_system& fs, const std::string& dir, const std::string& name,
                           position at, uint32_t schema_version) {
  auto bytes = finish(at, schema_version);
  if (!bytes) return bytes.error();
  const auto& s = bytes.value();
  return index_file::write(fs, dir, name,
                           std::span(reinterpret_cast<const std::byte*>(s.data()), s.size()));
}

// ---------------------------------------------------------------------------
// Decoder.

namespace {

struct col_desc {
  uint8_t kind = 0, width = 0;
  uint64_t base = 0, step = 0;
  uint64_t off = 0, len = 0;          // absolute offsets into the snapshot
  uint64_t data_off = 0, data_len = 0;
};

}  // namespace

struct decoder::impl {
  std::string name;                 // for messages: the path, or "columnar snapshot"
  std::vector<std::byte> owned;     // open_file's copy
  const std::byte* p = nullptr;
  uint64_t size = 0;
  columnar::schema sch;
  uint32_t schema_version = 0, block_rows = 0;
  uint64_t at = 0, rows = 0, blocks = 0;
  std::vector<col_desc> desc;  // blocks x columns

  status bad(uint64_t off, const std::string& why) const {
    return status(errc::corruption, name + " offset " + std::to_string(off) + ": " + why);
  }
  uint64_t rows_in(uint64_t b) const {
    return b + 1 < blocks ? block_rows : rows - (blocks - 1) * uint64_t{block_rows};
  }

  status parse(bool verify);
  status parse_block(uint64_t b, uint64_t off, uint64_t bytes, bool verify);
  status check_column(uint32_t col, column_type want, const char* call) const {
    if (col >= sch.size())
      return status(errc::invalid_argument,
                    std::string(call) + ": " + name + " has no column " + std::to_string(col));
    if (sch[col].type != want)
      return status(errc::invalid_argument, std::string(call) + ": column '" + sch[col].name +
                                                "' of " + name + " is " +
                                                std::string(type_name(sch[col].type)));
    return {};
  }
  template <class T>
  void unpack(const col_desc& d, uint64_t n, T* out) const;
  status ends_of(uint32_t col, uint64_t b, std::vector<uint64_t>& ends) const;
};

status decoder::impl::parse(bool verify) {
  if (size < kHeader) return bad(0, "too short for a columnar snapshot (" + std::to_string(size) + " bytes)");
  if (std::memcmp(p, kMagic, 8) != 0) return bad(0, "not a varve columnar snapshot (bad magic)");
  // The version before the checksum: a newer layout may checksum differently.
  if (get_u32(p + 8) != kVersion)
    return status(errc::newer_format, name + ": columnar format " + std::to_string(get_u32(p + 8)) +
                                          " is not 1");
  const uint32_t schema_bytes = get_u32(p + 48);
  if (align64(kHeader + schema_bytes) > size)
    return bad(48, "schema size " + std::to_string(schema_bytes) + " runs past the end");
  // The checksum covers the schema's padding too: no byte of the file is unchecked.
  if (verify && get_u64(p + 56) != split_checksum(p, align64(kHeader + schema_bytes)))
    return bad(56, "header checksum mismatch");
  if (get_u32(p + 52) != 0) return bad(52, "reserved bytes are not zero");
  schema_version = get_u32(p + 12);
  at = get_u64(p + 16);
  rows = get_u64(p + 24);
  const uint32_t cols = get_u32(p + 32);
  block_rows = get_u32(p + 36);
  const uint64_t dir = get_u64(p + 40);
  if (cols == 0 || cols > kMaxColumns) return bad(32, std::to_string(cols) + " columns");
  if (block_rows == 0 || block_rows > kMaxBlockRows)
    return bad(36, "block_rows " + std::to_string(block_rows));

  std::vector<column> cs;
  cs.reserve(cols);
  uint64_t off = kHeader;
  const uint64_t schema_end = kHeader + schema_bytes;
  for (uint32_t c = 0; c < cols; ++c) {
    if (schema_end - off < 2) return bad(off, "schema cut short at column " + std::to_string(c));
    const auto type = static_cast<column_type>(get_u8(p + off));
    const uint8_t len = get_u8(p + off + 1);
    if (type_name(type) == "unknown")
      return bad(off, "column " + std::to_string(c) + " has unknown type " +
                          std::to_string(static_cast<unsigned>(type)));
    if (len == 0 || schema_end - off - 2 < len)
      return bad(off + 1, "column " + std::to_string(c) + " name length " + std::to_string(len));
    cs.push_back({std::string(reinterpret_cast<const char*>(p + off + 2), len), type});
    off += 2 + len;
  }
  if (off != schema_end) return bad(off, "bytes after the last column of the schema");
  sch = columnar::schema(std::move(cs));
  if (status s = sch.validate(); !s.ok()) return bad(kHeader, s.message());

  const uint64_t data_start = align64(schema_end);
  blocks = rows / block_rows + (rows % block_rows != 0);
  if (dir < data_start || dir % 64 != 0 || dir > size)
    return bad(40, "directory offset " + std::to_string(dir) + " is not in the file");
  const uint64_t tail = size - dir;
  if (tail < 8 || tail % 8 != 0 || (tail - 8) / 8 != blocks)
    return bad(40, std::to_string(rows) + " rows make " + std::to_string(blocks) +
                       " blocks, but the file has " + std::to_string(size - dir) +
                       " bytes after the directory offset");
  if (verify && get_u64(p + dir + 8 * blocks) != XXH3_64bits(p + dir, 8 * blocks))
    return bad(dir + 8 * blocks, "directory checksum mismatch");
  if (blocks == 0 && dir != data_start) return bad(40, "an empty snapshot with bytes in its block area");
  // Every block holds at least its header and descriptors: bounds the
  // allocation below by the file's size, whatever the header claims.
  if (blocks > (dir - data_start) / (kBlockHeader + kDesc * cols))
    return bad(24, std::to_string(blocks) + " blocks of " + std::to_string(cols) +
                       " columns cannot fit in " + std::to_string(dir - data_start) + " bytes");
  desc.resize(blocks * cols);
  uint64_t expect = data_start;
  for (uint64_t b = 0; b < blocks; ++b) {
    const uint64_t bo = get_u64(p + dir + 8 * b);
    if (bo != expect)
      return bad(dir + 8 * b, "block " + std::to_string(b) + " at " + std::to_string(bo) +
                                  ", expected " + std::to_string(expect));
    if (dir - bo < kBlockHeader) return bad(bo, "block " + std::to_string(b) + " runs into the directory");
    const uint64_t bytes = get_u64(p + bo + 24);
    if (bytes > dir - bo || bytes % 64 != 0 || bytes < kBlockHeader + kDesc * cols)
      return bad(bo + 24, "block " + std::to_string(b) + " size " + std::to_string(bytes));
    if (status s = parse_block(b, bo, bytes, verify); !s.ok()) return s;
    expect = bo + bytes;
  }
  if (expect != dir) return bad(expect, "bytes between the last block and the directory");
  return {};
}

status decoder::impl::parse_block(uint64_t b, uint64_t bo, uint64_t bytes, bool verify) {
  const std::byte* h = p + bo;
  const std::string which = "block " + std::to_string(b);
  if (std::memcmp(h, kBlockMagic, 4) != 0) return bad(bo, which + ": bad magic");
  if (verify && get_u64(h + 56) != split_checksum(h, bytes)) return bad(bo + 56, which + ": checksum mismatch");
  const uint64_t n = rows_in(b);
  if (get_u32(h + 4) != n)
    return bad(bo + 4, which + " holds " + std::to_string(get_u32(h + 4)) + " rows, expected " +
                           std::to_string(n));
  if (get_u64(h + 8) != b) return bad(bo + 8, which + ": index " + std::to_string(get_u64(h + 8)));
  if (get_u64(h + 16) != b * block_rows) return bad(bo + 16, which + ": first row " + std::to_string(get_u64(h + 16)));
  for (size_t i = 32; i < 56; ++i)
    if (h[i] != std::byte{0}) return bad(bo + i, which + ": reserved bytes are not zero");
  const uint64_t body = kBlockHeader + kDesc * sch.size();
  // A region [o, o + len) relative to the block: aligned, after the
  // descriptors, inside the block (no overflow: o and len are each checked).
  auto region_ok = [&](uint64_t o, uint64_t len) {
    return o % 64 == 0 && o >= body && o <= bytes && len <= bytes - o;
  };
  for (size_t c = 0; c < sch.size(); ++c) {
    const uint64_t doff = bo + kBlockHeader + kDesc * c;
    const std::byte* d = p + doff;
    const std::string col = which + " column '" + sch[c].name + "'";
    col_desc x;
    x.kind = get_u8(d);
    x.width = get_u8(d + 1);
    x.base = get_u64(d + 8);
    x.step = get_u64(d + 16);
    const uint64_t o = get_u64(d + 24), len = get_u64(d + 32);
    const uint64_t dao = get_u64(d + 40), dal = get_u64(d + 48);
    for (size_t i : {2, 3, 4, 5, 6, 7, 56, 57, 58, 59, 60, 61, 62, 63})
      if (d[i] != std::byte{0}) return bad(doff + i, col + ": reserved bytes are not zero");
    const column_type t = sch[c].type;
    if (t == column_type::f64) {
      if (x.kind != raw || x.width != 64 || x.base || x.step)
        return bad(doff, col + ": an f64 column must be stored raw");
      if (len != n * 8) return bad(doff + 32, col + ": length " + std::to_string(len));
    } else {
      const unsigned bits = domain_bits(t);
      if (x.kind != frame && x.kind != delta)
        return bad(doff, col + ": unknown coding " + std::to_string(x.kind));
      if (x.width > bits) return bad(doff + 1, col + ": width " + std::to_string(x.width));
      if (bits == 32 && ((x.base >> 32) || (x.step >> 32)))
        return bad(doff + 8, col + ": reference wider than the column");
      if (x.kind == frame && x.step) return bad(doff + 16, col + ": step in a frame-of-reference column");
      if (len != groups_of(n) * x.width * 32) return bad(doff + 32, col + ": length " + std::to_string(len));
    }
    if (!region_ok(o, len)) return bad(doff + 24, col + ": region at " + std::to_string(o) + " outside the block");
    if (t == column_type::bytes) {
      if (!region_ok(dao, dal))
        return bad(doff + 40, col + ": values at " + std::to_string(dao) + " outside the block");
    } else if (dao || dal) {
      return bad(doff + 40, col + ": value area on a column that is not bytes");
    }
    x.off = bo + o;
    x.data_off = bo + dao;
    x.data_len = dal;
    x.len = len;
    desc[b * sch.size() + c] = x;
  }
  return {};
}

template <class T>
void decoder::impl::unpack(const col_desc& d, uint64_t n, T* out) const {
  const auto& k = kernels::active();
  const bool is_delta = d.kind == delta;
  auto fn = [&] {
    if constexpr (sizeof(T) == 4) return k.unpack32[d.width];
    else return k.unpack64[d.width];
  }();
  const T add = static_cast<T>(is_delta ? d.step : d.base);
  const T first = static_cast<T>(d.base);
  const uint64_t full = n / kGroup, tail = n % kGroup;
  fn(p + d.off, out, full, add, first, is_delta);
  if (tail) {
    alignas(64) T tmp[kGroup];
    // Delta: carry the running sum on (the kernel starts it at first - add).
    const T carry = full && is_delta ? static_cast<T>(out[full * kGroup - 1] + add) : first;
    fn(p + d.off + full * d.width * 32, tmp, 1, add, carry, is_delta);
    std::memcpy(out + full * kGroup, tmp, tail * sizeof(T));
  }
}

status decoder::impl::ends_of(uint32_t col, uint64_t b, std::vector<uint64_t>& ends) const {
  const col_desc& d = desc[b * sch.size() + col];
  const uint64_t n = rows_in(b);
  ends.resize(n);
  unpack<uint64_t>(d, n, ends.data());
  uint64_t prev = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (ends[i] < prev || ends[i] > d.data_len)
      return bad(d.off, "block " + std::to_string(b) + " column '" + sch[col].name + "': value " +
                            std::to_string(i) + " ends at " + std::to_string(ends[i]) + " of " +
                            std::to_string(d.data_len));
    prev = ends[i];
  }
  if (prev != d.data_len)
    return bad(d.off, "block " + std::to_string(b) + " column '" + sch[col].name + "': values end at " +
                          std::to_string(prev) + ", not at " + std::to_string(d.data_len));
  return {};
}

decoder::decoder(std::unique_ptr<impl> p) : p_(std::move(p)) {}
decoder::~decoder() = default;
decoder::decoder(decoder&&) noexcept = default;
decoder& decoder::operator=(decoder&&) noexcept = default;

result<decoder> decoder::open(std::span<const std::byte> bytes, decoder_options o) {
  auto m = std::make_unique<impl>();
  m->name = "columnar snapshot";
  m->p = bytes.data();
  m->size = bytes.size();
  if (status s = m->parse(o.verify_checksums); !s.ok()) return s;
  return decoder(std::move(m));
}

result<decoder> decoder::open(std::string_view bytes, decoder_options o) {
  return open(std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()), o);
}

result<decoder> decoder::open_file(file_system& fs, const std::string& path, decoder_options o) {
  auto bytes = index_file::read(fs, path, 0);
  if (!bytes) return bytes.error();
  auto m = std::make_unique<impl>();
  m->name = path;
  m->owned = std::move(bytes.value());
  m->p = m->owned.data();
  m->size = m->owned.size();
  if (status s = m->parse(o.verify_checksums); !s.ok()) return s;
  return decoder(std::move(m));
}

const schema& decoder::schema() const { return p_->sch; }
uint32_t decoder::schema_version() const { return p_->schema_version; }
position decoder::at() const { return position{p_->at}; }
uint64_t decoder::rows() const { return p_->rows; }
uint32_t decoder::block_rows() const { return p_->block_rows; }
uint64_t decoder::blocks() const { return p_->blocks; }
uint64_t decoder::rows_in_block(uint64_t b) const { return b < p_->blocks ? p_->rows_in(b) : 0; }

status decoder::expect(const columnar::schema& want) const {
  if (p_->sch == want) return {};
  std::string have, w;
  for (const auto& c : p_->sch.columns()) have += " " + c.name + ":" + std::string(type_name(c.type));
  for (const auto& c : want.columns()) w += " " + c.name + ":" + std::string(type_name(c.type));
  return status(errc::invalid_argument, p_->name + " has columns" + have + "; expected" + w);
}

namespace {
template <class T>
status block_span_check(const decoder& d, uint64_t block, size_t got) {
  if (block >= d.blocks())
    return status(errc::invalid_argument, "block " + std::to_string(block) + " of " + std::to_string(d.blocks()));
  if (got != d.rows_in_block(block))
    return status(errc::invalid_argument, "block " + std::to_string(block) + " holds " +
                                              std::to_string(d.rows_in_block(block)) + " rows, span has " +
                                              std::to_string(got));
  return {};
}
}  // namespace

status decoder::read_u32(uint32_t col, uint64_t block, std::span<uint32_t> out) const {
  if (status s = p_->check_column(col, column_type::u32, "read_u32"); !s.ok()) return s;
  if (status s = block_span_check<uint32_t>(*this, block, out.size()); !s.ok()) return s;
  p_->unpack<uint32_t>(p_->desc[block * p_->sch.size() + col], out.size(), out.data());
  return {};
}
status decoder::read_u64(uint32_t col, uint64_t block, std::span<uint64_t> out) const {
  if (status s = p_->check_column(col, column_type::u64, "read_u64"); !s.ok()) return s;
  if (status s = block_span_check<uint64_t>(*this, block, out.size()); !s.ok()) return s;
  p_->unpack<uint64_t>(p_->desc[block * p_->sch.size() + col], out.size(), out.data());
  return {};
}
status decoder::read_i64(uint32_t col, uint64_t block, std::span<int64_t> out) const {
  if (status s = p_->check_column(col, column_type::i64, "read_i64"); !s.ok()) return s;
  if (status s = block_span_check<int64_t>(*this, block, out.size()); !s.ok()) return s;
  // int64_t and uint64_t may alias: the codec works on the bit patterns.
  p_->unpack<uint64_t>(p_->desc[block * p_->sch.size() + col], out.size(),
                       reinterpret_cast<uint64_t*>(out.data()));
  return {};
}

status decoder::read_u32(uint32_t col, std::vector<uint32_t>& out) const {
  if (status s = p_->check_column(col, column_type::u32, "read_u32"); !s.ok()) return s;
  out.resize(p_->rows);
  for (uint64_t b = 0; b < p_->blocks; ++b)
    p_->unpack<uint32_t>(p_->desc[b * p_->sch.size() + col], p_->rows_in(b), out.data() + b * p_->block_rows);
  return {};
}
status decoder::read_u64(uint32_t col, std::vector<uint64_t>& out) const {
  if (status s = p_->check_column(col, column_type::u64, "read_u64"); !s.ok()) return s;
  out.resize(p_->rows);
  for (uint64_t b = 0; b < p_->blocks; ++b)
    p_->unpack<uint64_t>(p_->desc[b * p_->sch.size() + col], p_->rows_in(b), out.data() + b * p_->block_rows);
  return {};
}
status decoder::read_i64(uint32_t col, std::vector<int64_t>& out) const {
  if (status s = p_->check_column(col, column_type::i64, "read_i64"); !s.ok()) return s;
  out.resize(p_->rows);
  for (uint64_t b = 0; b < p_->blocks; ++b)
    p_->unpack<uint64_t>(p_->desc[b * p_->sch.size() + col], p_->rows_in(b),
                         reinterpret_cast<uint64_t*>(out.data() + b * p_->block_rows));
  return {};
}
status decoder::read_f64(uint32_t col, std::vector<double>& out) const {
  if (status s = p_->check_column(col, column_type::f64, "read_f64"); !s.ok()) return s;
  out.resize(p_->rows);
  for (uint64_t b = 0; b < p_->blocks; ++b) {
    const col_desc& d = p_->desc[b * p_->sch.size() + col];
    if (d.len) std::memcpy(out.data() + b * p_->block_rows, p_->p + d.off, d.len);
  }
  return {};
}

result<std::span<const double>> decoder::view_f64(uint32_t col, uint64_t block) const {
  if (status s = p_->check_column(col, column_type::f64, "view_f64"); !s.ok()) return s;
  if (block >= p_->blocks)
    return status(errc::invalid_argument, "block " + std::to_string(block) + " of " + std::to_string(p_->blocks));
  const col_desc& d = p_->desc[block * p_->sch.size() + col];
  if (reinterpret_cast<uintptr_t>(p_->p + d.off) % alignof(double) != 0)
    return status(errc::invalid_argument, p_->name + ": bytes not 8-byte aligned in memory; use read_f64");
  return std::span(reinterpret_cast<const double*>(p_->p + d.off), d.len / 8);
}

status decoder::read_bytes(uint32_t col, std::vector<std::string_view>& out) const {
  if (status s = p_->check_column(col, column_type::bytes, "read_bytes"); !s.ok()) return s;
  out.clear();
  out.reserve(p_->rows);
  std::vector<uint64_t> ends;
  for (uint64_t b = 0; b < p_->blocks; ++b) {
    if (status s = p_->ends_of(col, b, ends); !s.ok()) return s;
    const char* data = reinterpret_cast<const char*>(p_->p + p_->desc[b * p_->sch.size() + col].data_off);
    uint64_t prev = 0;
    for (uint64_t e : ends) {
      out.emplace_back(data + prev, e - prev);
      prev = e;
    }
  }
  return {};
}

status decoder::read_bytes(uint32_t col, std::vector<std::string>& out) const {
  std::vector<std::string_view> v;
  if (status s = read_bytes(col, v); !s.ok()) return s;
  out.assign(v.begin(), v.end());
  return {};
}

}  // namespace varve::columnar
