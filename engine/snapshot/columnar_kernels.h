// The columnar codec's bit-packing kernels (columnar_kernels.inc), compiled
// for the baseline ISA and for AVX2; active() picks once per process.
#pragma once

#include <cstddef>
#include <cstdint>

namespace varve::columnar::kernels {

template <class T>
using unpack_fn = void (*)(const std::byte* in, T* out, size_t groups, T add, T first, bool delta);
template <class T>
using pack_fn = void (*)(const T* in, std::byte* out, size_t groups);

struct table {
  // [width]
  unpack_fn<uint32_t> unpack32[33];
  unpack_fn<uint64_t> unpack64[65];
  pack_fn<uint32_t> pack32[33];
  pack_fn<uint64_t> pack64[65];
  const char* name;
};

const table& active();
const table& baseline();  // for tests and the bench: the other path, same layout

#if defined(__x86_64__)
// The AVX2 build's table (columnar_kernels_avx2.cc, its own translation unit
// so that the two builds compile in parallel). Only for a CPU with AVX2.
table avx2_table();
#endif

}  // namespace varve::columnar::kernels
