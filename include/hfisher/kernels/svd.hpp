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
  // Jacobi rotates columns: work on column-contiguous copies (each column of
  // the rotated matrix is one contiguous run), then copy out.
  const long rows = m >= n ? m : n, cols = k;  // the matrix Jacobi sees: rows x cols, rows >= cols
  BatchMatrix<T, Exec> Wc(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::Wc"), nb, cols, rows);
  BatchMatrix<T, Exec> Vc(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::Vc"), nb, cols, cols);
  Kokkos::parallel_for(
      "hfisher::svd", hfisher::detail::batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        auto Ab = hfisher::detail::entry(A, b);
        auto Wb = hfisher::detail::entry(Wc, b);
        auto Vb = hfisher::detail::entry(Vc, b);
        // A (m >= n) or A^T (m < n) as rows x cols
        const int a0 = m >= n ? Ab.stride_0() : Ab.stride_1(), a1 = m >= n ? Ab.stride_1() : Ab.stride_0();
        const int sw = detail::jacobi_svd<member, T>(t, rows, cols, Ab.data(), a0, a1, Wb.data(), 1, rows, &S(b, 0),
                                                   Vb.data(), 1, cols, jacobi_max_sweeps);
        Kokkos::single(Kokkos::PerTeam(t), [&]() { status(b) = sw < 0 ? 1 : 0; });
      });
  // copy out: m >= n: U = W, V = Vc; m < n: A^T = W S Vc^T, so U = Vc, V = W
  Kokkos::parallel_for(
      "hfisher::svd::copy_out", Kokkos::RangePolicy<Exec>(space, 0, nb), KOKKOS_LAMBDA(const int b) {
        for (int j = 0; j < cols; ++j) {
          for (int r = 0; r < rows; ++r) {
            if (m >= n) U(b, r, j) = Wc(b, j, r);
            else V(b, r, j) = Wc(b, j, r);
          }
          for (int r = 0; r < cols; ++r) {
            if (m >= n) V(b, r, j) = Vc(b, j, r);
            else U(b, r, j) = Vc(b, j, r);
          }
        }
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
