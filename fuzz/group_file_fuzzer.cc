// group_file_fuzzer: bytes -> a consumer group file -> group_file::decode.
//
// Input: byte 0 is a control byte, the rest is the file.
//   bit 0: fix up the checksums (the header's and every copy that is not all
//          zero) before decoding, so the parser behind them is reached (the
//          fuzzer cannot forge XXH3)
//   bit 1: decode with the log id the file claims (else a fixed other one,
//          which must be rejected)
// Checks: decode returns ok, corruption or newer_format, never anything else,
// never a crash or an out-of-bounds read (the file is an exact-size buffer);
// with a foreign log id it never succeeds; when it succeeds the image is
// whole (64 members, one entry per partition) and writing it back (each slot
// as one copy, at gen % 2) decodes to the same image.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/coding.h"
#include "engine/groups/group_file.h"

using namespace varve;
namespace gf = varve::group_file;

namespace {

constexpr uint64_t kOtherLogId = 0x0123456789abcdefull;

void fix_checksums(std::vector<std::byte>& f) {
  if (f.size() >= gf::kHeaderSize) coding::put_u64(f.data() + 56, XXH3_64bits(f.data(), 56));
  for (size_t off = gf::kHeaderSize; off + gf::kCopySize <= f.size(); off += gf::kCopySize) {
    std::byte* c = f.data() + off;
    bool zero = true;
    for (size_t i = 0; i < gf::kCopySize && zero; ++i) zero = c[i] == std::byte{0};
    if (!zero) coding::put_u64(c + 56, XXH3_64bits(c, 56));
  }
}

bool same(const gf::image& a, const gf::image& b) {
  if (a.h.partitions != b.h.partitions || a.h.log_id != b.h.log_id || a.h.created_ns != b.h.created_ns)
    return false;
  for (size_t i = 0; i < a.members.size(); ++i) {
    const auto &x = a.members[i], &y = b.members[i];
    if (x.gen != y.gen || x.id != y.id || x.expiry_ns != y.expiry_ns || x.boot != y.boot || x.pid != y.pid ||
        x.name != y.name)
      return false;
  }
  for (size_t p = 0; p < a.parts.size(); ++p) {
    const auto &x = a.parts[p], &y = b.parts[p];
    if (x.c.gen != y.c.gen || x.c.position != y.c.position || x.c.committed_ns != y.c.committed_ns ||
        x.c.retry_position != y.c.retry_position || x.c.retries != y.c.retries || x.c.member != y.c.member)
      return false;
    if (x.l.gen != y.l.gen || x.l.owner != y.l.owner || x.l.expiry_ns != y.l.expiry_ns || x.l.boot != y.l.boot ||
        x.l.epoch != y.l.epoch)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t control = data[0];
  std::vector<std::byte> file(size - 1);
  if (size > 1) std::memcpy(file.data(), data + 1, size - 1);
  if (control & 1) fix_checksums(file);
  const uint64_t claimed = file.size() >= 24 ? coding::get_u64(file.data() + 16) : 0;
  const uint64_t expect = (control & 2) ? claimed : kOtherLogId;
  auto img = gf::decode(file, "fuzz.group", expect);
  if (!img.ok()) {
    const errc c = img.error().code();
    if (c != errc::corruption && c != errc::newer_format) std::abort();
    return 0;
  }
  // decode() with expected id 0 skips the check: only a real id must match.
  if (expect != 0 && img->h.log_id != expect) std::abort();
  if (img->members.size() != gf::kMaxMembers || img->parts.size() != img->h.partitions) std::abort();

  // Written back, one copy per slot, it decodes to the same image.
  std::vector<std::byte> again(gf::file_size(img->h.partitions));
  gf::encode_header(img->h, again.data());
  for (uint32_t i = 0; i < gf::kMaxMembers; ++i) {
    const auto& m = img->members[i];
    if (m.gen == 0) continue;
    gf::encode_member(m, again.data() + gf::member_offset(i) + (m.gen % 2) * gf::kCopySize);
  }
  for (uint32_t p = 0; p < img->h.partitions; ++p) {
    const auto& part = img->parts[p];
    gf::encode_commit(part.c, again.data() + gf::commit_offset(p) + (part.c.gen % 2) * gf::kCopySize);
    if (part.l.gen != 0)
      gf::encode_lease(part.l, again.data() + gf::lease_offset(p) + (part.l.gen % 2) * gf::kCopySize);
  }
  auto img2 = gf::decode(again, "fuzz.group", expect);
  if (!img2.ok() || img2->fell_back || !same(*img, *img2)) std::abort();
  return 0;
}
