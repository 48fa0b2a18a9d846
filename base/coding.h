// Explicit little-endian encoding of fixed-width integers (never a raw struct on
// disk). Precondition: the destination/source has room for the width.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace varve::coding {

static_assert(std::endian::native == std::endian::little,
              "varve's codecs memcpy integers: port put/get for big-endian hosts");

inline void put_u8(void* p, uint8_t v) { std::memcpy(p, &v, 1); }
inline void put_u16(void* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void put_u32(void* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void put_u64(void* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint8_t get_u8(const void* p) { uint8_t v; std::memcpy(&v, p, 1); return v; }
inline uint16_t get_u16(const void* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t get_u32(const void* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t get_u64(const void* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

inline constexpr uint64_t align8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

}  // namespace varve::coding
