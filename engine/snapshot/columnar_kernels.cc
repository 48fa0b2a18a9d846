// Both builds of the bit-packing kernels. The AVX2 copy is the same source
// compiled under a target attribute (not -mavx2 for the file), so the library
// still runs on any x86-64 and only CPUs that have AVX2 take that path.
#include "engine/snapshot/columnar_kernels.h"

#include <array>
#include <cstdlib>
#include <cstring>
#include <utility>

// The vector helpers are always inlined, so their 32-byte vector ABI (which
// differs with and without AVX) never crosses a call.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace varve::columnar::kernels {

namespace base {
#include "engine/snapshot/columnar_kernels.inc"
}  // namespace base

#if defined(__x86_64__)
#define VARVE_COLUMNAR_AVX2 1
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
#endif

namespace {

#define VARVE_FILL_TABLE(NS, t)                                                      \
  do {                                                                               \
    auto u32 = NS::unpack_table<uint32_t>(std::make_integer_sequence<unsigned, 33>{}); \
    auto u64 = NS::unpack_table<uint64_t>(std::make_integer_sequence<unsigned, 65>{}); \
    auto p32 = NS::pack_table<uint32_t>(std::make_integer_sequence<unsigned, 33>{});   \
    auto p64 = NS::pack_table<uint64_t>(std::make_integer_sequence<unsigned, 65>{});   \
    for (unsigned w = 0; w < 33; ++w) {                                              \
      (t).unpack32[w] = u32[w];                                                      \
      (t).pack32[w] = p32[w];                                                        \
    }                                                                                \
    for (unsigned w = 0; w < 65; ++w) {                                              \
      (t).unpack64[w] = u64[w];                                                      \
      (t).pack64[w] = p64[w];                                                        \
    }                                                                                \
  } while (0)

table make_baseline() {
  table t{};
  VARVE_FILL_TABLE(base, t);
  t.name = "sse2";
  return t;
}

table make_active() {
#if VARVE_COLUMNAR_AVX2
  // VARVE_COLUMNAR_KERNELS=sse2 forces the baseline build, so the bench can
  // measure what AVX2 buys on the same machine.
  const char* force = std::getenv("VARVE_COLUMNAR_KERNELS");
  const bool baseline_only = force && std::strcmp(force, "sse2") == 0;
  __builtin_cpu_init();
  if (!baseline_only && __builtin_cpu_supports("avx2")) {
    table t{};
    VARVE_FILL_TABLE(avx2, t);
    t.name = "avx2";
    return t;
  }
#endif
  return make_baseline();
}

}  // namespace

const table& baseline() {
  static const table t = make_baseline();
  return t;
}

const table& active() {
  static const table t = make_active();
  return t;
}

}  // namespace varve::columnar::kernels
