#pragma once
/// \file syev.hpp
/// \brief Batched symmetric eigendecomposition: Householder tridiagonal
/// reduction + implicit QL (O(n^3), the default above 5 x 5) or cyclic
/// two-sided Jacobi (small blocks, high relative accuracy).

#include <hfisher/kernels/impl/tridiagonal.hpp>
#include <hfisher/kernels/svd.hpp>

namespace hfisher {
namespace kernels {

/// Algorithm of syev. Auto: Jacobi up to syev_jacobi_max_n, Tridiagonal above.
enum class SyevMethod { Auto, Jacobi, Tridiagonal };

/// Largest n for which SyevMethod::Auto picks Jacobi (timed against QL on
/// random symmetric blocks, 2 threads: Jacobi 1.2-1.3x faster up to 4,
/// equal at 6, QL 1.7-1.9x faster at 8 and 4.4-4.6x at 32; docs/benchmarks.md).
constexpr int syev_jacobi_max_n = 5;

/// Largest number of QL steps per eigenvalue before syev reports
/// non-convergence (the iteration usually needs 1 to 3).
constexpr int tridiagonal_max_steps = 60;

/// Batched symmetric eigendecomposition A_b = V_b diag(W_b) V_b^T.
/// A: (batch, n, n) symmetric (checked to 100 eps max|A_b|), unchanged;
/// W: (batch, n) ascending; V: (batch, n, n) orthonormal columns.
/// Tridiagonal: eigenvalues to O(eps |A|_2) absolute accuracy, O(n^3) with
/// O(n) team barriers; Jacobi: small eigenvalues to high relative accuracy,
/// ~10 sweeps of n^2/2 rotations. On host spaces a batch smaller than the
/// thread count gets teams of several threads (a K-FAC factor is a batch of 1).
template <class Exec, class AV, class WV, class VV>
void syev(const Exec& space, const AV& A, const WV& W, const VV& V, SyevMethod method = SyevMethod::Auto) {
  constexpr const char* where = "hfisher::kernels::syev";
  static_assert(AV::rank == 3 && WV::rank == 2 && VV::rank == 3, "syev: argument ranks");
  const long nb = A.extent(0), n = A.extent(1);
  hfisher::detail::require(A.extent(1) == A.extent(2), where, "A must be square per entry, got ", A.extent(1), "x",
                           A.extent(2));
  hfisher::detail::check_batch(W.extent(0), nb, where, "W");
  hfisher::detail::check_batch(V.extent(0), nb, where, "V");
  hfisher::detail::check_extent(W.extent(1), n, where, "W", "length");
  hfisher::detail::check_extent(V.extent(1), n, where, "V", "rows");
  hfisher::detail::check_extent(V.extent(2), n, where, "V", "columns");
  hfisher::detail::check_finite3(space, A, where, "A");
  if (nb == 0 || n == 0) return;
  using T = typename VV::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  Kokkos::View<int*, typename Exec::memory_space> status("hfisher::syev::status", nb);
  Kokkos::parallel_for(
      "hfisher::syev::symmetry", Kokkos::RangePolicy<Exec>(space, 0, nb), KOKKOS_LAMBDA(const int b) {
        T amax = T(0), dmax = T(0);
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < n; ++j) {
            amax = math::max(amax, math::abs(A(b, i, j)));
            dmax = math::max(dmax, math::abs(A(b, i, j) - A(b, j, i)));
          }
        status(b) = dmax > T(100) * math::limits<T>::eps() * amax ? 1 : 0;
      });
  long bad = hfisher::detail::first_failure(space, status);
  hfisher::detail::require(bad < 0, where, "A is not symmetric at batch entry ", bad);
  BatchMatrix<T, Exec> Wk(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::syev::work"), nb, n, n);
  Kokkos::deep_copy(space, Wk, A);
  if (method == SyevMethod::Tridiagonal || (method == SyevMethod::Auto && n > syev_jacobi_max_n)) {
    // host teams form Q blocked (GEMMs) where V has unit column stride
    const bool blocked_q = ExecTraits<Exec>::on_host && V.stride_2() == 1 && n >= 64;
    const long lw = detail::tridiagonal_syev_work(n, blocked_q);
    const int liw = 2 * detail::ql_batch_steps + 2;
    BatchVector<T, Exec> work(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::syev::ql_work"), nb, lw);
    Kokkos::View<int**, Kokkos::LayoutRight, typename Exec::memory_space> iwork(
        Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::syev::ql_iwork"), nb, liw);
    Kokkos::parallel_for(
        "hfisher::syev::tridiagonal", hfisher::detail::wide_batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
          const int b = t.league_rank();
          auto Wb = hfisher::detail::entry(Wk, b);
          auto Vb = hfisher::detail::entry(V, b);
          const int st = detail::tridiagonal_syev<member, T>(t, n, Wb.data(), Wb.stride_0(), Wb.stride_1(), &W(b, 0),
                                                             Vb.data(), Vb.stride_0(), Vb.stride_1(), &work(b, 0),
                                                             &iwork(b, 0), tridiagonal_max_steps, blocked_q);
          t.team_barrier();
          detail::sort_with_columns(t, n, &W(b, 0), false, Vb.data(), n, Vb.stride_0(), Vb.stride_1(), (T*)nullptr, 0,
                                    0, 0);
          Kokkos::single(Kokkos::PerTeam(t), [&]() { status(b) = st < 0 ? 1 : 0; });
        });
    bad = hfisher::detail::first_failure(space, status);
    hfisher::detail::require(bad < 0, where, "the QL iteration did not converge in ", tridiagonal_max_steps,
                             " steps for an eigenvalue at batch entry ", bad);
    return;
  }
  Kokkos::parallel_for(
      "hfisher::syev", hfisher::detail::batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        auto Wb = hfisher::detail::entry(Wk, b);
        auto Vb = hfisher::detail::entry(V, b);
        const int sw = detail::jacobi_syev<member, T>(t, n, Wb.data(), Wb.stride_0(), Wb.stride_1(), &W(b, 0),
                                                      Vb.data(), Vb.stride_0(), Vb.stride_1(), jacobi_max_sweeps);
        Kokkos::single(Kokkos::PerTeam(t), [&]() { status(b) = sw < 0 ? 1 : 0; });
      });
  bad = hfisher::detail::first_failure(space, status);
  hfisher::detail::require(bad < 0, where, "Jacobi did not converge in ", jacobi_max_sweeps, " sweeps at batch entry ",
                           bad);
}

template <class AV, class WV, class VV>
void syev(const AV& A, const WV& W, const VV& V) {
  syev(typename AV::execution_space(), A, W, V);
}

}  // namespace kernels
}  // namespace hfisher
