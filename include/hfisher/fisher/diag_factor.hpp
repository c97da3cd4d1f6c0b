#pragma once
/// \file diag_factor.hpp
/// \brief Kernels shared by the structures stored as a diagonal part plus
/// Gram terms, diag(d) + W W^T (low-rank, multilevel): their diagonal, the
/// diagonal part that keeps diag(F) exact, scaling, and the check that
/// d + damping can be inverted.

#include <hfisher/core/error.hpp>
#include <hfisher/core/types.hpp>

#include <cmath>

namespace hfisher {
namespace fisher {
namespace detail {

/// d + rowsum(W .* W): the diagonal of diag(d) + W W^T (a new vector).
template <class Exec, class V, class M>
V diag_plus_squares(const V& d, const M& W) {
  V o("hfisher::fisher::diag", d.extent(0));
  const int k = int(W.extent(1));
  Kokkos::parallel_for(
      "hfisher::fisher::diag_plus_squares", Kokkos::RangePolicy<Exec>(0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long i) {
        auto s = d(i);
        for (int c = 0; c < k; ++c) s += W(i, c) * W(i, c);
        o(i) = s;
      });
  return o;
}

/// d = max(d - rowsum(W .* W), 0) in place: given d = diag(F) and the Gram
/// terms W W^T kept of F, the diagonal part that keeps diag(F) exact (the
/// clamp absorbs rounding).
template <class Exec, class V, class M>
void subtract_squares_clamped(const V& d, const M& W) {
  using S = typename V::non_const_value_type;
  const int k = int(W.extent(1));
  Kokkos::parallel_for(
      "hfisher::fisher::subtract_squares", Kokkos::RangePolicy<Exec>(0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long i) {
        S t = d(i);
        for (int c = 0; c < k; ++c) t -= W(i, c) * W(i, c);
        d(i) = t > S(0) ? t : S(0);
      });
}

/// d *= alpha, W *= sqrt(alpha): diag(d) + W W^T scaled by alpha >= 0.
template <class Exec, class V, class M>
void scale_diag_and_factor(const V& d, const M& W, double alpha, const char* where) {
  hfisher::detail::require(std::isfinite(alpha) && alpha >= 0, where, "alpha = ", alpha, " (must be finite and >= 0)");
  using S = typename V::non_const_value_type;
  const S a = S(alpha), sa = S(std::sqrt(alpha));
  const int k = int(W.extent(1));
  Kokkos::parallel_for(
      "hfisher::fisher::scale_diag_and_factor", Kokkos::RangePolicy<Exec>(0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long i) {
        d(i) *= a;
        for (int c = 0; c < k; ++c) W(i, c) *= sa;
      });
}

/// Throws, naming the first bad entry, unless every d(i) + damping > 0.
template <class Exec, class V>
void require_positive_shift(const V& d, double damping, const char* where) {
  long bad = -1;
  Kokkos::parallel_reduce(
      "hfisher::fisher::check_shift", Kokkos::RangePolicy<Exec>(0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long i, long& f) {
        if (!(double(d(i)) + damping > 0)) f = i;
      },
      Kokkos::Max<long>(bad));
  hfisher::detail::require(bad < 0, where, "d(", bad, ") + damping is not positive (damping = ", damping,
                           "): the diagonal part must be positive after damping");
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
