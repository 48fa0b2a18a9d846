// The input format of log_open_fuzzer (see the comment at the top of
// log_open_fuzzer.cc): decoding it into the files of a log directory, and
// encoding a real directory into it (fuzz/make_seeds.cc builds the seed
// corpus with that). Every input decodes to some directory.
#pragma once

#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/log_files.h"
#include "base/record_format.h"
#include "base/segment_format.h"
#include "fuzz/fuzz_util.h"

namespace varve_fuzz {

inline constexpr uint64_t kFuzzSegmentBytes = 64 * 1024;
inline constexpr uint8_t kFuzzLog2 = 16;
// Fixed, so that seeds (which carry it in segment headers, checkpoints and the
// control block) stay valid across runs: "VARVEFZZ".
inline constexpr uint64_t kFuzzLogId = 0x5a5a464556524156ull;

inline std::vector<std::byte> fuzz_meta_bytes() {
  std::vector<std::byte> m(varve::segment_format::kMetaSize);
  varve::segment_format::encode_meta(m.data(), {kFuzzLog2, kFuzzLogId, 1795435200000000000ull});
  return m;
}

struct open_input {
  uint8_t flags_a = 0;
  uint8_t flags_b = 0;
  std::string_view seg_body[2];
  std::string_view seg_footer[2];
  std::string_view heads;
  std::string_view ctl;
  std::string_view start;  // DIR/start when non-empty (inputs made before it end earlier: none)
};

inline bool parse_open_input(const uint8_t* data, size_t size, open_input& in) {
  input_cursor c{data, size};
  in.flags_a = c.u8();
  in.flags_b = c.u8();
  std::string_view* sections[] = {&in.seg_body[0], &in.seg_footer[0], &in.seg_body[1],
                                  &in.seg_footer[1], &in.heads, &in.ctl, &in.start};
  for (std::string_view* s : sections) *s = c.bytes(c.u16());
  return true;
}

inline void append_section(std::string& out, std::string_view s) {
  const size_t n = s.size() > 0xffff ? 0xffff : s.size();
  out.push_back(static_cast<char>(n & 0xff));
  out.push_back(static_cast<char>(n >> 8));
  out.append(s.data(), n);
}

inline std::string encode_open_input(const open_input& in) {
  std::string out;
  out.push_back(static_cast<char>(in.flags_a));
  out.push_back(static_cast<char>(in.flags_b));
  append_section(out, in.seg_body[0]);
  append_section(out, in.seg_footer[0]);
  append_section(out, in.seg_body[1]);
  append_section(out, in.seg_footer[1]);
  append_section(out, in.heads);
  append_section(out, in.ctl);
  append_section(out, in.start);
  return out;
}

struct file_image {
  std::string name;  // relative to the log directory
  std::vector<std::byte> bytes;
};

// Rewrites each record's position and checksum, walking the records by their
// own lengths from offset 64 until a zero slot or an impossible length.
inline void fix_records(std::vector<std::byte>& seg, uint64_t index) {
  if (seg.size() != kFuzzSegmentBytes) return;
  const uint64_t end = kFuzzSegmentBytes - varve::segment_format::kFooterSize;
  uint64_t off = varve::segment_format::kHeaderSize;
  while (off + 16 <= end) {
    std::byte* p = seg.data() + off;
    const uint32_t len = le32(p + 8);
    if (len == 0 || len % 8 != 0 || len < 24 || len > end - off) break;
    put64(p + 16, (index << kFuzzLog2) + off);
    put64(p, varve::record::checksum(p, len));
    off += len;
  }
}

inline void fix_footer(std::vector<std::byte>& seg) {
  if (seg.size() != kFuzzSegmentBytes) return;
  std::byte* f = seg.data() + kFuzzSegmentBytes - varve::segment_format::kFooterSize;
  if (varve::segment_format::is_zero(f, varve::segment_format::kFooterSize)) return;
  const uint64_t data_end = le64(f + 16);
  if (data_end >= 64 && data_end <= kFuzzSegmentBytes - 64 - 24)
    put64(f + 48, XXH3_64bits(seg.data() + 64, data_end + 24 - 64));
  put64(f + 56, XXH3_64bits(f, 56));
}

inline std::vector<std::byte> build_segment(const open_input& in, int k) {
  const bool raw = in.flags_a & (k == 0 ? 0x01 : 0x08);
  const bool exact = in.flags_a & (k == 0 ? 0x02 : 0x10);
  std::string_view body = in.seg_body[k];
  std::vector<std::byte> seg;
  if (exact) {
    if (!raw) {
      seg.resize(64);
      varve::segment_format::encode_header(seg.data(), {kFuzzLog2, static_cast<uint64_t>(k), kFuzzLogId});
    }
    const auto* b = reinterpret_cast<const std::byte*>(body.data());
    seg.insert(seg.end(), b, b + body.size());
    return seg;
  }
  seg.assign(kFuzzSegmentBytes, std::byte{0});
  const size_t at = raw ? 0 : 64;
  if (!raw)
    varve::segment_format::encode_header(seg.data(), {kFuzzLog2, static_cast<uint64_t>(k), kFuzzLogId});
  const size_t n = std::min(body.size(), kFuzzSegmentBytes - at);
  if (n) std::memcpy(seg.data() + at, body.data(), n);
  std::string_view footer = in.seg_footer[k];
  if (!footer.empty()) {
    const size_t m = std::min<size_t>(footer.size(), 64);
    std::memcpy(seg.data() + kFuzzSegmentBytes - 64, footer.data(), m);
  }
  if (in.flags_b & 0x01) fix_records(seg, static_cast<uint64_t>(k));
  if (in.flags_b & 0x02) fix_footer(seg);
  return seg;
}

inline std::vector<file_image> build_open_files(const open_input& in) {
  std::vector<file_image> files;
  files.push_back({varve::log_files::kMetaName, fuzz_meta_bytes()});
  files.push_back({varve::log_files::segment_name(0), build_segment(in, 0)});
  if (in.flags_a & 0x04) files.push_back({varve::log_files::segment_name(1), build_segment(in, 1)});
  if (in.flags_a & 0x20) {
    std::vector<std::byte> h(reinterpret_cast<const std::byte*>(in.heads.data()),
                             reinterpret_cast<const std::byte*>(in.heads.data() + in.heads.size()));
    if ((in.flags_b & 0x04) && h.size() >= 64) {
      put64(h.data() + 16, kFuzzLogId);
      put64(h.data() + 48, XXH3_64bits(h.data() + 64, h.size() - 64));
      put64(h.data() + 56, XXH3_64bits(h.data(), 56));
    }
    files.push_back({std::string(varve::log_files::kIndexDir) + "/" +
                         varve::log_files::heads_name((in.flags_b & 0x08) ? 1 : 0),
                     std::move(h)});
  }
  if (!in.start.empty()) {
    // Retention's start record. One of exactly 64 bytes gets its log id and
    // XXH3 fixed up, so recovery's use of its fields is reached.
    std::vector<std::byte> st(reinterpret_cast<const std::byte*>(in.start.data()),
                              reinterpret_cast<const std::byte*>(in.start.data() + in.start.size()));
    if (st.size() == 64) {
      std::memcpy(st.data(), "VARVSTRT", 8);
      put64(st.data() + 16, kFuzzLogId);
      put64(st.data() + 56, XXH3_64bits(st.data(), 56));
    }
    files.push_back({"start", std::move(st)});
  }
  if (in.flags_a & 0x40) {
    files.push_back({varve::log_files::kControlName,
                     std::vector<std::byte>(reinterpret_cast<const std::byte*>(in.ctl.data()),
                                            reinterpret_cast<const std::byte*>(in.ctl.data() + in.ctl.size()))});
  }
  return files;
}

}  // namespace varve_fuzz
