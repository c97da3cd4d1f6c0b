#pragma once
/// \file random.hpp
/// \brief Counter-based random numbers: the value at (seed, stream, index) is
/// a pure function of those three integers, so every backend and every
/// thread count draws the same numbers (what makes cross-backend comparisons
/// of randomized kernels exact up to rounding).

#include <hfisher/core/math.hpp>

#include <cstdint>

namespace hfisher {
namespace random {

KOKKOS_INLINE_FUNCTION std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Uniform in (0, 1).
KOKKOS_INLINE_FUNCTION double uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  const std::uint64_t h = splitmix64(splitmix64(seed ^ splitmix64(stream)) ^ index);
  return (double(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/// Standard normal (Box-Muller on two counter-based uniforms).
KOKKOS_INLINE_FUNCTION double normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  const double u1 = uniform(seed, stream, 2 * index);
  const double u2 = uniform(seed, stream, 2 * index + 1);
  return math::sqrt(-2.0 * math::log(u1)) * math::cos(6.283185307179586 * u2);
}

}  // namespace random
}  // namespace hfisher
