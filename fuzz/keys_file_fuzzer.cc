// keys_file_fuzzer: bytes -> DIR/keys and DIR/forgotten (crypto-shredding,
// FORMAT.md 5c, 5d) -> keyring::open, open_payload, read_journal and a
// writer's finish_forgets.
//
// Input: byte 0 is a control byte, bytes 1-2 (u16 LE) how many of the rest
// are the keys file; what follows them is the journal.
//   bit 0: fix up the keys header's and every whole entry's XXH3, the
//          journal header's, and each journal record's that its own length
//          field frames, so the parsers behind them are reached (the fuzzer
//          cannot forge XXH3)
//   bit 1: give the keys header the key check of the fixed master key for
//          the log id it claims (a header with any other check must be
//          refused as another key's)
//   bit 2: open as the writer (finish_forgets then writes destroyed
//          entries into a copy)
// Checks: every call returns ok or a clean error (corruption, newer_format,
// invalid_argument for a wrong key, not_found), never a crash or a read out
// of bounds; a payload the fuzzer made up never decrypts (AEAD): it reads as
// forgotten or corruption; journal records that load are numbered 1, 2, ...
// with 1..255-byte stream ids; finish_forgets leaves every slot the journal
// names (inside the file) destroyed, so a second call does nothing.
#include <sodium.h>
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/coding.h"
#include "engine/crypto/keyring.h"
#include "fuzz/fuzz_util.h"
#include "varve/file_system.h"

using namespace varve;

namespace {

master_key fixed_key() {
  master_key k;
  k.bytes.fill(0x42);
  return k;
}

bool clean(errc c) {
  return c == errc::corruption || c == errc::newer_format || c == errc::invalid_argument || c == errc::not_found;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t ctl = data[0];
  const size_t split = std::min<size_t>(size - 3, size_t{data[1]} | (size_t{data[2]} << 8));
  std::vector<std::byte> keys(reinterpret_cast<const std::byte*>(data + 3),
                              reinterpret_cast<const std::byte*>(data + 3 + split));
  std::vector<std::byte> journal(reinterpret_cast<const std::byte*>(data + 3 + split),
                                 reinterpret_cast<const std::byte*>(data + size));
  const uint64_t log_id = keys.size() >= 24 ? varve_fuzz::le64(keys.data() + 16) : 0;
  const master_key mk = fixed_key();
  // The header's key check for the fixed key, as keyring.cc computes it.
  uint8_t check[32];
  {
    uint8_t in[18 + 8];
    std::memcpy(in, "varve-keys-check-1", 18);
    coding::put_u64(in + 18, log_id);
    if (sodium_init() < 0) return 0;
    crypto_generichash(check, 32, in, sizeof in, mk.bytes.data(), 32);
  }
  if ((ctl & 2) && keys.size() >= 128) std::memcpy(keys.data() + 24, check, 32);
  const bool right_key = keys.size() >= 128 && std::memcmp(keys.data() + 24, check, 32) == 0;
  if (ctl & 1) {
    for (size_t at = 0; at + 128 <= keys.size(); at += 128)
      varve_fuzz::put64(keys.data() + at + 120, XXH3_64bits(keys.data() + at, 120));
    if (journal.size() >= 64) varve_fuzz::put64(journal.data() + 56, XXH3_64bits(journal.data(), 56));
    for (size_t at = 64; at + 40 <= journal.size();) {
      const uint32_t len = coding::get_u32(journal.data() + at);
      if (len < 40 || len % 8 || len > journal.size() - at) break;
      varve_fuzz::put64(journal.data() + at + len - 8, XXH3_64bits(journal.data() + at, len - 8));
      at += len;
    }
  }

  static const std::string dir = varve_fuzz::scratch_root() + "/keys";
  static const bool made = [] {
    std::filesystem::create_directories(dir);
    return true;
  }();
  (void)made;
  FUZZ_CHECK(varve_fuzz::write_file(dir + "/keys", keys.data(), keys.size()), "cannot write keys");
  FUZZ_CHECK(varve_fuzz::write_file(dir + "/forgotten", journal.data(), journal.size()), "cannot write journal");

  auto fs = posix_file_system();
  auto j = detail::keyring::read_journal(*fs, dir, log_id);
  FUZZ_CHECK(j.ok() || clean(j.error().code()), "read_journal gave " + j.error().to_string());
  if (j.ok())
    for (size_t i = 0; i < j.value().size(); ++i) {
      FUZZ_CHECK(j.value()[i].forget_sequence == i + 1, "journal records not numbered 1, 2, ...");
      FUZZ_CHECK(!j.value()[i].stream.empty() && j.value()[i].stream.size() <= 255, "journal stream id size");
    }

  const bool writer = ctl & 4;
  auto k = detail::keyring::open(fs, dir, log_id, mk, writer, false);
  FUZZ_CHECK(k.ok() || clean(k.error().code()), "keyring::open gave " + k.error().to_string());
  if (!k.ok()) return 0;
  FUZZ_CHECK(right_key, "a keys file whose key check is not the fixed key's opened with it");
  detail::keyring& ring = *k.value();

  // Made-up sealed payloads naming slots 0..9: never plaintext.
  std::vector<std::byte> payload(detail::kSealOverhead + 16);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = std::byte(data[(i * 7) % size]);
  std::string buf;
  for (uint32_t slot = 0; slot < 10; ++slot) {
    coding::put_u32(payload.data(), slot);
    event_view ev;
    ev.stream = "s";
    ev.encrypted = true;
    ev.payload = payload;
    status s = ring.open_payload(ev, buf);
    FUZZ_CHECK(s.ok() ? ev.forgotten : s.code() == errc::corruption,
               "a made-up payload for slot " + std::to_string(slot) + ": " + s.to_string());
  }

  if (writer && j.ok()) {
    auto done = ring.finish_forgets();
    FUZZ_CHECK(done.ok() || clean(done.error().code()), "finish_forgets gave " + done.error().to_string());
    if (done.ok()) {
      auto again = ring.finish_forgets();
      FUZZ_CHECK(again.ok() && again.value() == 0, "a second finish_forgets had work left");
    }
  }
  return 0;
}
