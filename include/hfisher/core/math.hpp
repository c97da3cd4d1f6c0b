#pragma once
/// \file math.hpp
/// \brief Scalar math usable on host and device (float and double), and the
/// numeric constants the kernels use. Global C math functions are used because
/// they are available in CUDA device code and on the host alike.

#include <Kokkos_Core.hpp>
#include <cfloat>
#include <cmath>

namespace hfisher {
namespace math {

KOKKOS_INLINE_FUNCTION double sqrt(double x) { return ::sqrt(x); }
KOKKOS_INLINE_FUNCTION float sqrt(float x) { return ::sqrtf(x); }
KOKKOS_INLINE_FUNCTION double abs(double x) { return ::fabs(x); }
KOKKOS_INLINE_FUNCTION float abs(float x) { return ::fabsf(x); }
KOKKOS_INLINE_FUNCTION double log(double x) { return ::log(x); }
KOKKOS_INLINE_FUNCTION float log(float x) { return ::logf(x); }
KOKKOS_INLINE_FUNCTION double exp(double x) { return ::exp(x); }
KOKKOS_INLINE_FUNCTION float exp(float x) { return ::expf(x); }
KOKKOS_INLINE_FUNCTION double tanh(double x) { return ::tanh(x); }
KOKKOS_INLINE_FUNCTION float tanh(float x) { return ::tanhf(x); }
KOKKOS_INLINE_FUNCTION double erf(double x) { return ::erf(x); }
KOKKOS_INLINE_FUNCTION float erf(float x) { return ::erff(x); }
KOKKOS_INLINE_FUNCTION double cos(double x) { return ::cos(x); }
KOKKOS_INLINE_FUNCTION float cos(float x) { return ::cosf(x); }
KOKKOS_INLINE_FUNCTION double hypot(double x, double y) { return ::hypot(x, y); }
KOKKOS_INLINE_FUNCTION float hypot(float x, float y) { return ::hypotf(x, y); }
KOKKOS_INLINE_FUNCTION bool isfinite(double x) { return x - x == 0.0; }
KOKKOS_INLINE_FUNCTION bool isfinite(float x) { return x - x == 0.0f; }
template <class T>
KOKKOS_INLINE_FUNCTION T max(T a, T b) {
  return a < b ? b : a;
}
template <class T>
KOKKOS_INLINE_FUNCTION T min(T a, T b) {
  return a < b ? a : b;
}
template <class T>
KOKKOS_INLINE_FUNCTION T sign(T a, T b) {
  return b < T(0) ? -abs(a) : abs(a);
}

/// Machine epsilon (unit round-off times two), as LAPACK's dlamch('E')*2.
template <class T>
struct limits;
template <>
struct limits<double> {
  KOKKOS_INLINE_FUNCTION static constexpr double eps() { return DBL_EPSILON; }
  KOKKOS_INLINE_FUNCTION static constexpr double tiny() { return DBL_MIN; }
};
template <>
struct limits<float> {
  KOKKOS_INLINE_FUNCTION static constexpr float eps() { return FLT_EPSILON; }
  KOKKOS_INLINE_FUNCTION static constexpr float tiny() { return FLT_MIN; }
};

}  // namespace math
}  // namespace hfisher
