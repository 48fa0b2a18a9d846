// BLAKE2b (RFC 7693), unkeyed, 1..64-byte digests: the cryptographic hash of
// the tamper-evident segment chain (engine/chain.cc, FORMAT.md 5b). Written
// here from the RFC rather than taken from a crypto library: the chain needs
// this one function, and it is checked against the RFC's and Python
// hashlib's digests (tests/chain_test.cc).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace varve {

class blake2b {
 public:
  explicit blake2b(size_t digest_bytes = 32);
  void update(const void* data, size_t n);
  // Writes digest_bytes bytes; the object is spent afterwards.
  void final(uint8_t* out);

 private:
  void compress(bool last);
  std::array<uint64_t, 8> h_{};
  std::array<uint8_t, 128> buf_{};
  uint64_t t_[2] = {0, 0};  // bytes hashed so far (128-bit counter)
  size_t fill_ = 0;         // bytes waiting in buf_
  size_t out_len_;
};

}  // namespace varve
