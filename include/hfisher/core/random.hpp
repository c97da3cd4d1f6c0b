#pragma once
/// \file random.hpp
/// \brief Counter-based random numbers: the value at (seed, stream, index) is
/// a pure function of those three integers, so every backend and every
/// thread count draws the same numbers (what makes cross-backend comparisons
/// of randomized kernels exact up to rounding). The host-side helpers below
/// (uniform_below, shuffle) replace the standard library's distributions,
/// whose algorithms differ between libstdc++, libc++ and MSVC, so a seed
/// gives the same weights, shuffles and streams with any of them.

#include <hfisher/core/math.hpp>

#include <cstdint>
#include <utility>

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

/// An integer uniform in [0, n) from a 64-bit generator (std::mt19937_64),
/// n >= 1: the draw is rejected and repeated while it falls in the last,
/// incomplete multiple of n. Unlike std::uniform_int_distribution, whose
/// algorithm each standard library chooses, this gives the same integers
/// with libstdc++, libc++ and MSVC (the engine's output is standardized).
template <class Engine>
std::uint64_t uniform_below(Engine& g, std::uint64_t n) {
  static_assert(Engine::min() == 0 && Engine::max() == ~std::uint64_t(0), "uniform_below needs a 64-bit engine");
  const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n + 1) % n;  // largest accepted draw
  for (;;) {
    const std::uint64_t x = g();
    if (x <= limit) return x % n;
  }
}

/// Fisher-Yates shuffle of [first, last) with uniform_below: the same order
/// with every standard library (std::shuffle's algorithm is the library's).
template <class It, class Engine>
void shuffle(It first, It last, Engine& g) {
  const auto n = std::uint64_t(last - first);
  for (std::uint64_t i = n; i > 1; --i) {
    const std::uint64_t j = uniform_below(g, i);
    using std::swap;
    swap(first[i - 1], first[j]);
  }
}

/// The first k steps of that shuffle from the front: [first, first + k)
/// becomes a uniform draw of k distinct elements of [first, last), in
/// random order, with k draws of the engine (k <= last - first).
template <class It, class Engine>
void partial_shuffle(It first, It last, std::uint64_t k, Engine& g) {
  const auto n = std::uint64_t(last - first);
  for (std::uint64_t i = 0; i < k && i < n; ++i) {
    const std::uint64_t j = i + uniform_below(g, n - i);
    using std::swap;
    swap(first[i], first[j]);
  }
}

/// Streams of the counter-based generator that initialize a model's
/// weights (random::normal(seed, init_stream + layer, row * inputs + column)).
constexpr std::uint64_t init_stream = 0x494e4954ULL;  // "INIT"

}  // namespace random
}  // namespace hfisher
