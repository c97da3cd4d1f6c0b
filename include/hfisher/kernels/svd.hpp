#pragma once
/// \file svd.hpp
/// \brief Batched thin SVD by one-sided Jacobi: A_b = U_b diag(S_b) V_b^T.

#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/impl/jacobi.hpp>

namespace hfisher {
namespace kernels {

/// Largest number of Jacobi sweeps before svd/syev report non-convergence.
constexpr int jacobi_max_sweeps = 40;

/// Batched thin SVD. A: (batch, m, n), unchanged; with k = min(m, n):
/// U: (batch, m, k), S: (batch, k) descending, V: (batch, n, k).
/// Columns of U (or V when m < n) that belong to zero singular values are
/// zero. Throws if an entry does not converge in jacobi_max_sweeps sweeps.
template <class Exec, class AV, class UV, class SV, class VV>
void svd(const Exec& space, const AV& A, const UV& U, const SV& S, const VV& V) {
  constexpr const char* where = "hfisher::kernels::svd";
  static_assert(AV::rank == 3 && UV::rank == 3 && SV::rank == 2 && VV::rank == 3, "svd: argument ranks");
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2), k = m < n ? m : n;
  hfisher::detail::check_batch(U.extent(0), nb, where, "U");
  hfisher::detail::check_batch(S.extent(0), nb, where, "S");
  hfisher::detail::check_batch(V.extent(0), nb, where, "V");
  hfisher::detail::check_extent(U.extent(1), m, where, "U", "rows");
  hfisher::detail::check_extent(U.extent(2), k, where, "U", "columns");
  hfisher::detail::check_extent(S.extent(1), k, where, "S", "length");
  hfisher::detail::check_extent(V.extent(1), n, where, "V", "rows");
  hfisher::detail::check_extent(V.extent(2), k, where, "V", "columns");
  hfisher::detail::check_finite3(space, A, where, "A");
  if (nb == 0 || k == 0) return;
  using member = typename ExecTraits<Exec>::member_type;
  using T = typename UV::non_const_value_type;
  Kokkos::View<int*, typename Exec::memory_space> status("hfisher::svd::status", nb);
  Kokkos::parallel_for(
      "hfisher::svd", hfisher::detail::batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        auto Ab = hfisher::detail::entry(A, b);
        auto Ub = hfisher::detail::entry(U, b);
        auto Vb = hfisher::detail::entry(V, b);
        int sw;
        if (m >= n) {
          sw = impl::jacobi_svd<member, T>(t, m, n, Ab.data(), Ab.stride_0(), Ab.stride_1(), Ub.data(),
                                           Ub.stride_0(), Ub.stride_1(), &S(b, 0), Vb.data(), Vb.stride_0(),
                                           Vb.stride_1(), jacobi_max_sweeps);
        } else {  // A^T = V S U^T
          sw = impl::jacobi_svd<member, T>(t, n, m, Ab.data(), Ab.stride_1(), Ab.stride_0(), Vb.data(),
                                           Vb.stride_0(), Vb.stride_1(), &S(b, 0), Ub.data(), Ub.stride_0(),
                                           Ub.stride_1(), jacobi_max_sweeps);
        }
        Kokkos::single(Kokkos::PerTeam(t), [&]() { status(b) = sw < 0 ? 1 : 0; });
      });
  const long bad = hfisher::detail::first_failure(space, status);
  hfisher::detail::require(bad < 0, where, "one-sided Jacobi did not converge in ", jacobi_max_sweeps,
                           " sweeps at batch entry ", bad);
}

template <class AV, class UV, class SV, class VV>
void svd(const AV& A, const UV& U, const SV& S, const VV& V) {
  svd(typename AV::execution_space(), A, U, S, V);
}

}  // namespace kernels
}  // namespace hfisher
