// The AVX2 build of the bit-packing kernels: columnar_kernels.inc compiled
// under a target attribute (not -mavx2 for the file, so nothing else here
// assumes AVX2). Its own translation unit because the two builds of ~200
// unrolled kernels each are the slowest file to compile (minutes under a
// sanitizer): split, they compile in parallel.
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "engine/snapshot/columnar_kernels.h"

#if defined(__x86_64__)

// The vector helpers are always inlined, so their 32-byte vector ABI (which
// differs with and without AVX) never crosses a call.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace varve::columnar::kernels {

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif
namespace avx2 {
#include "engine/snapshot/columnar_kernels.inc"
}  // namespace avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// Outside the target region: called by active() only once the CPU said AVX2.
table avx2_table() {
  table t{};
  avx2::fill_table(t);
  t.name = "avx2";
  return t;
}

}  // namespace varve::columnar::kernels

#endif
