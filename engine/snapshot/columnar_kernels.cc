// The baseline build of the bit-packing kernels, and the choice between it and
// the AVX2 build (columnar_kernels_avx2.cc: the same source under a target
// attribute, not -mavx2, so the library still runs on any x86-64 and only CPUs
// that have AVX2 take that path).
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

namespace {

table make_baseline() {
  table t{};
  base::fill_table(t);
  t.name = "sse2";
  return t;
}

table make_active() {
#if defined(__x86_64__)
  // VARVE_COLUMNAR_KERNELS=sse2 forces the baseline build, so the bench can
  // measure what AVX2 buys on the same machine.
  const char* force = std::getenv("VARVE_COLUMNAR_KERNELS");
  const bool baseline_only = force && std::strcmp(force, "sse2") == 0;
  __builtin_cpu_init();
  if (!baseline_only && __builtin_cpu_supports("avx2")) return avx2_table();
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
