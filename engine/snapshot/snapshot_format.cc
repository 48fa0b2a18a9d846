#include "engine/snapshot/snapshot_format.h"

#include <cstdio>
#include <cstring>

#include <xxhash.h>

#include "base/coding.h"

namespace varve::snapshot_format {

using namespace coding;

namespace {
constexpr char kFileMagic[8] = {'V', 'A', 'R', 'V', 'E', 'S', 'N', 'F'};
constexpr char kRecordMagic[8] = {'V', 'A', 'R', 'V', 'E', 'S', 'N', 'P'};
}  // namespace

void encode_file_header(std::byte* p, const file_header& h) {
  std::memset(p, 0, kFileHeader);
  std::memcpy(p, kFileMagic, 8);
  put_u32(p + 8, kVersion);
  put_u64(p + 16, h.file_index);
  put_u64(p + 24, h.salt);
  put_u64(p + 32, h.log_id);
  put_u64(p + 40, h.created_ns);
  put_u64(p + 56, XXH3_64bits(p, 56));
}

decode_outcome decode_file_header(const std::byte* p, file_header& out) {
  decode_outcome o;
  if (std::memcmp(p, kFileMagic, 8) != 0) {
    o.why = "offset 0: not a snapshot file (bad magic)";
    return o;
  }
  // The version before the checksum: a newer writer may checksum differently.
  if (get_u32(p + 8) != kVersion) {
    o.newer = true;
    o.why = "offset 8: snapshot file format " + std::to_string(get_u32(p + 8)) + " is not 1";
    return o;
  }
  if (get_u64(p + 56) != XXH3_64bits(p, 56)) {
    o.why = "offset 56: file header checksum mismatch";
    return o;
  }
  out.file_index = get_u64(p + 16);
  out.salt = get_u64(p + 24);
  out.log_id = get_u64(p + 32);
  out.created_ns = get_u64(p + 40);
  o.ok = true;
  return o;
}

void encode_record_header(std::byte* p, const record_header& h) {
  const uint64_t n = header_bytes(h.stream.size());
  std::memset(p, 0, n);
  std::memcpy(p, kRecordMagic, 8);
  put_u64(p + 16, h.offset);
  put_u64(p + 24, h.salt);
  put_u64(p + 32, h.version);
  put_u64(p + 40, h.body_bytes);
  put_u64(p + 48, h.body_checksum);
  put_u64(p + 56, h.saved_ns);
  put_u64(p + 64, h.anchor);
  put_u64(p + 72, h.anchor_timestamp);
  put_u32(p + 80, h.schema_version);
  put_u8(p + 84, static_cast<uint8_t>(h.stream.size()));
  put_u8(p + 85, h.flags);
  std::memcpy(p + kFixed, h.stream.data(), h.stream.size());
  put_u64(p + 8, XXH3_64bits(p + 16, n - 16));
}

bool unwritten_at(const std::byte* base, uint64_t size, uint64_t off) {
  const uint64_t n = size - off < 16 ? size - off : 16;
  for (uint64_t i = 0; i < n; ++i)
    if (base[off + i] != std::byte{0}) return false;
  return true;
}

bool decode_record_header(const std::byte* base, uint64_t size, uint64_t off, uint64_t salt,
                          record_header& out, std::string& why) {
  if (off > size || size - off < header_bytes(1)) {
    why = "a record header is cut short by the end of the file";
    return false;
  }
  const std::byte* p = base + off;
  if (std::memcmp(p, kRecordMagic, 8) != 0) {
    why = "bad record magic";
    return false;
  }
  if (get_u64(p + 16) != off) {
    why = "the record names offset " + std::to_string(get_u64(p + 16)) + " (misplaced bytes)";
    return false;
  }
  if (get_u64(p + 24) != salt) {
    why = "the record belongs to another file (salt mismatch)";
    return false;
  }
  const uint8_t len = get_u8(p + 84);
  if (len == 0) {
    why = "stream id length 0";
    return false;
  }
  const uint64_t n = header_bytes(len);
  if (size - off < n) {
    why = "a record header is cut short by the end of the file";
    return false;
  }
  if (get_u64(p + 8) != XXH3_64bits(p + 16, n - 16)) {
    why = "record header checksum mismatch";
    return false;
  }
  out.offset = off;
  out.salt = salt;
  out.version = get_u64(p + 32);
  out.body_bytes = get_u64(p + 40);
  out.body_checksum = get_u64(p + 48);
  out.saved_ns = get_u64(p + 56);
  out.anchor = get_u64(p + 64);
  out.anchor_timestamp = get_u64(p + 72);
  out.schema_version = get_u32(p + 80);
  out.stream_len = len;
  out.flags = get_u8(p + 85);
  out.stream = std::string_view(reinterpret_cast<const char*>(p + kFixed), len);
  if (out.version == 0) {
    why = "version 0";
    return false;
  }
  if ((out.flags & ~1u) != 0 || get_u16(p + 86) != 0) {
    why = "unknown flags";
    return false;
  }
  if ((out.flags & 1) && len != 8) {
    why = "an integer stream id that is not 8 bytes";
    return false;
  }
  // Compared without overflow: body_bytes is unvalidated.
  const uint64_t room = size - off - n;
  if (out.body_bytes > room || align64(out.body_bytes) > room) {
    why = "body of " + std::to_string(out.body_bytes) + " bytes runs past the end of the file";
    return false;
  }
  return true;
}

std::string file_name(uint64_t index) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%020llu.snap", static_cast<unsigned long long>(index));
  return buf;
}

bool parse_file_name(std::string_view name, uint64_t& index) {
  if (name.size() != 25 || name.substr(20) != ".snap") return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 20; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  index = v;
  return true;
}

}  // namespace varve::snapshot_format
