/* VARVE_API marks what libvarve.so exports: the public classes and functions of
 * include/varve/ and the C API. Everything else is compiled with hidden
 * visibility (-fvisibility=hidden), so engine internals never become ABI.
 * Usable from C and C++ (C++ gets the standard attribute syntax, which may
 * stand beside [[nodiscard]] on a class). */
#pragma once

#if defined(__cplusplus)
#define VARVE_API [[gnu::visibility("default")]]
#elif defined(__GNUC__) || defined(__clang__)
#define VARVE_API __attribute__((visibility("default")))
#else
#define VARVE_API
#endif
