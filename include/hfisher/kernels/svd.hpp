#pragma once
/// \file svd.hpp
/// \brief Batched thin SVD A_b = U_b diag(S_b) V_b^T: bidiagonalization and
/// bidiagonal QR, or QR-preconditioned one-sided Jacobi for small blocks.

#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/impl/bidiagonal.hpp>
#include <hfisher/kernels/impl/jacobi.hpp>
#include <hfisher/kernels/qr.hpp>

namespace hfisher {
namespace kernels {

/// Largest number of Jacobi sweeps before svd/syev report non-convergence.
constexpr int jacobi_max_sweeps = 40;

namespace detail {

/// Out(b, perm(b, i), j) = Wc(b, j, i): the right singular vectors P W of
/// the preconditioned SVD, W's column j stored as Wc(b, j, :).
template <class Exec, class WV, class PV, class OV>
void svd_permuted_rows(const Exec& space, const WV& Wc, const PV& perm, const OV& Out) {
  const long nb = Wc.extent(0), cols = Wc.extent(1);
  Kokkos::parallel_for(
      "hfisher::svd::copy_out", Kokkos::RangePolicy<Exec>(space, 0, nb * cols), KOKKOS_LAMBDA(const long e) {
        const int b = e / cols, i = e % cols;
        const int row = perm(b, i);
        for (int j = 0; j < cols; ++j) Out(b, row, j) = Wc(b, j, i);
      });
}

/// Out(b, r, j) = Xt(b, j, r) for the first Xt.extent(1) columns of Out.
template <class Exec, class XV, class OV>
void copy_transposed(const Exec& space, const XV& Xt, const OV& Out) {
  const long nb = Xt.extent(0), cols = Xt.extent(1), rows = Xt.extent(2);
  Kokkos::parallel_for(
      "hfisher::svd::copy_out", Kokkos::RangePolicy<Exec>(space, 0, nb * rows), KOKKOS_LAMBDA(const long e) {
        const int b = e / rows, r = e % rows;
        for (int j = 0; j < cols; ++j) Out(b, r, j) = Xt(b, j, r);
      });
}

}  // namespace detail

/// Algorithm of svd. Auto: Jacobi up to svd_jacobi_max_n columns (rows when
/// m < n), Bidiagonal above.
enum class SvdMethod { Auto, Jacobi, Bidiagonal };

/// Largest min(m, n) for which SvdMethod::Auto picks Jacobi.
constexpr int svd_jacobi_max_n = 10;

/// Largest number of bidiagonal QR steps per singular value before svd
/// reports non-convergence (the iteration usually needs 2 or 3).
constexpr int bidiagonal_max_steps = 60;

namespace detail {

/// Per batch entry of A, the power of 2 that brings its largest |entry|
/// into [1/2, 2) (pow2_scale): svd works on the scaled copy, so no sum of
/// squares in its QR, bidiagonalization or rotations falls into denormals
/// (entries of 1e-20 in float) or overflows, and scales S back.
template <class T, class Exec, class AV>
BatchScalar<T, Exec> entry_scales(const Exec& space, const AV& A) {
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2);
  using member = typename ExecTraits<Exec>::member_type;
  BatchScalar<T, Exec> sc(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::scale"), nb);
  Kokkos::parallel_for(
      "hfisher::svd::scale", hfisher::detail::batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        T amax = T(0);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(t, 0L, m * n),
            [&](const long e, T& v) { v = math::max(v, T(math::abs(A(b, e / n, e % n)))); }, Kokkos::Max<T>(amax));
        Kokkos::single(Kokkos::PerTeam(t), [&]() { sc(b) = pow2_scale(amax); });
      });
  return sc;
}

/// op(A) scaled by sc (per batch entry) as a new (batch, rows, cols) matrix
/// with rows >= cols: A, or A^T when A has fewer rows than columns.
template <class T, class Exec, class AV>
BatchMatrix<T, Exec> tall_copy(const Exec& space, const AV& A, const BatchScalar<T, Exec>& sc) {
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2);
  const long rows = m >= n ? m : n, cols = m >= n ? n : m;
  BatchMatrix<T, Exec> Ap(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::opA"), nb, rows, cols);
  Kokkos::parallel_for(
      "hfisher::svd::copy_in", Kokkos::RangePolicy<Exec>(space, 0, nb * rows), KOKKOS_LAMBDA(const long e) {
        const int b = e / rows, r = e % rows;
        const T f = sc(b);
        for (int c = 0; c < cols; ++c) Ap(b, r, c) = f * (m >= n ? T(A(b, r, c)) : T(A(b, c, r)));
      });
  return Ap;
}

/// S(b, :) /= sc(b): the singular values of A from those of its scaled copy.
template <class T, class Exec, class SV>
void unscale_values(const Exec& space, const SV& S, const BatchScalar<T, Exec>& sc) {
  const long nb = S.extent(0), k = S.extent(1);
  Kokkos::parallel_for(
      "hfisher::svd::unscale", Kokkos::RangePolicy<Exec>(space, 0, nb * k), KOKKOS_LAMBDA(const long e) {
        const int b = e / k, j = e % k;
        S(b, j) /= sc(b);
      });
}

/// svd's QR-preconditioned one-sided Jacobi (its arguments checked).
template <class Exec, class AV, class UV, class SV, class VV, class WV>
void svd_jacobi(const Exec& space, const AV& A, const UV& U, const SV& S, const VV& V, const WV& sweeps) {
  constexpr const char* where = "hfisher::kernels::svd";
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2), k = m < n ? m : n;
  using member = typename ExecTraits<Exec>::member_type;
  using T = typename UV::non_const_value_type;
  using mem = typename Exec::memory_space;
  const long rows = m >= n ? m : n, cols = k;  // op(A): rows x cols, rows >= cols
  // op(A) P = Q R
  const auto sc = entry_scales<T>(space, A);
  const auto Ap = tall_copy<T>(space, A, sc);
  BatchVector<T, Exec> tau(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::tau"), nb, cols);
  Kokkos::View<int**, Kokkos::LayoutRight, mem> perm(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::perm"), nb, cols);
  Kokkos::View<int*, mem> qr_rank(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::qr_rank"), nb);
  cpqr_nocheck(space, Ap, tau, perm, qr_rank, 0.5);
  BatchMatrix<T, Exec> Q(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::Q"), nb, rows, cols);
  qr_form_q(space, Ap, tau, Q);
  // Jacobi rotates columns: R^T with each column (a row of R) contiguous;
  // the rotated copy is made in place (jacobi_svd's U is its A)
  BatchMatrix<T, Exec> Wc(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::Wc"), nb, cols, cols);
  BatchMatrix<T, Exec> Zc(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::Zc"), nb, cols, cols);
  Kokkos::parallel_for(
      "hfisher::svd::r_rows", Kokkos::RangePolicy<Exec>(space, 0, nb * cols), KOKKOS_LAMBDA(const long e) {
        const int b = e / cols, j = e % cols;
        for (int r = 0; r < cols; ++r) Wc(b, j, r) = r >= j ? Ap(b, j, r) : T(0);
      });
  Kokkos::View<int*, mem> status("hfisher::svd::status", nb);
  Kokkos::parallel_for(
      "hfisher::svd", hfisher::detail::batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        T* w = &Wc(b, 0, 0);
        const int sw = jacobi_svd<member, T>(t, cols, cols, w, 1, cols, w, 1, cols, &S(b, 0), &Zc(b, 0, 0), 1, cols,
                                             jacobi_max_sweeps);
        Kokkos::single(Kokkos::PerTeam(t), [&]() {
          status(b) = sw < 0 ? 1 : 0;
          if (sweeps.extent(0) > 0) sweeps(b) = sw;
        });
      });
  // R^T = W S Z^T, so op(A) = Q R P^T = (Q Z) S (P W)^T; Z's column j is Zc(b, j, :)
  if (m >= n) {
    gemm_nocheck(space, Op::NoTrans, Op::Trans, T(1), Q, Zc, T(0), U);
    svd_permuted_rows(space, Wc, perm, V);
  } else {
    gemm_nocheck(space, Op::NoTrans, Op::Trans, T(1), Q, Zc, T(0), V);
    svd_permuted_rows(space, Wc, perm, U);
  }
  unscale_values(space, S, sc);
  const long bad = hfisher::detail::first_failure(space, status);
  hfisher::detail::require(bad < 0, where, "one-sided Jacobi did not converge in ", jacobi_max_sweeps,
                           " sweeps at batch entry ", bad);
}

/// svd by bidiagonalization and bidiagonal QR (its arguments checked). A
/// tall op(A) (at least twice as many rows as columns) is first reduced by
/// Householder QR, op(A) = Q R, and the square R bidiagonalized, so that
/// the reflectors and rotations work on cols x cols blocks and Q enters by
/// one GEMM at the end.
template <class Exec, class AV, class UV, class SV, class VV, class WV>
void svd_bidiagonal(const Exec& space, const AV& A, const UV& U, const SV& S, const VV& V, const WV& sweeps) {
  constexpr const char* where = "hfisher::kernels::svd";
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2), k = m < n ? m : n;
  using member = typename ExecTraits<Exec>::member_type;
  using T = typename UV::non_const_value_type;
  using mem = typename Exec::memory_space;
  const long rows = m >= n ? m : n, cols = k;  // op(A): rows x cols, rows >= cols
  const auto sc = entry_scales<T>(space, A);
  const auto Ap = tall_copy<T>(space, A, sc);
  const bool qr_first = rows >= 2 * cols;
  const long mb = qr_first ? cols : rows;  // rows of the block that is bidiagonalized
  BatchMatrix<T, Exec> Q, R;
  if (qr_first) {
    Q = BatchMatrix<T, Exec>(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::Q"), nb, rows, cols);
    R = BatchMatrix<T, Exec>(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::R"), nb, cols, cols);
    qr_thin_inplace(space, Ap, Q, R);  // Ap is svd's own copy, checked finite
  }
  const BatchMatrix<T, Exec> X = qr_first ? R : Ap;
  BatchMatrix<T, Exec> Ut(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::Ut"), nb, cols, mb);
  BatchMatrix<T, Exec> Vt(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::Vt"), nb, cols, cols);
  BatchVector<T, Exec> work(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::work"), nb,
                            bidiagonal_svd_work(int(mb), int(cols)));
  Kokkos::View<int**, Kokkos::LayoutRight, mem> iwork(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::svd::iwork"), nb,
      bidiagonal_svd_iwork(int(cols)));
  Kokkos::View<int*, mem> status("hfisher::svd::status", nb);
  Kokkos::parallel_for(
      "hfisher::svd::bidiagonal", hfisher::detail::wide_batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        auto Xb = hfisher::detail::entry(X, b);
        const int st =
            bidiagonal_svd<member, T>(t, int(mb), int(cols), Xb.data(), Xb.stride_0(), Xb.stride_1(), &S(b, 0),
                                      &Ut(b, 0, 0), &Vt(b, 0, 0), &work(b, 0), &iwork(b, 0), bidiagonal_max_steps);
        Kokkos::single(Kokkos::PerTeam(t), [&]() {
          status(b) = st < 0 ? 1 : 0;
          if (sweeps.extent(0) > 0) sweeps(b) = st;
        });
      });
  // op(A) = Uo S Vo^T: Uo = Q Ut^T (or Ut^T), Vo = Vt^T; A = op(A) or its transpose
  if (m >= n) {
    if (qr_first)
      gemm_nocheck(space, Op::NoTrans, Op::Trans, T(1), Q, Ut, T(0), U);
    else
      copy_transposed(space, Ut, U);
    copy_transposed(space, Vt, V);
  } else {
    if (qr_first)
      gemm_nocheck(space, Op::NoTrans, Op::Trans, T(1), Q, Ut, T(0), V);
    else
      copy_transposed(space, Ut, V);
    copy_transposed(space, Vt, U);
  }
  unscale_values(space, S, sc);
  const long bad = hfisher::detail::first_failure(space, status);
  hfisher::detail::require(bad < 0, where, "the bidiagonal QR iteration did not converge in ", bidiagonal_max_steps,
                           " steps for a singular value at batch entry ", bad);
}

}  // namespace detail

/// Batched thin SVD. A: (batch, m, n), unchanged; with k = min(m, n):
/// U: (batch, m, k), S: (batch, k) descending, V: (batch, n, k).
///
/// Bidiagonal (the default for k > svd_jacobi_max_n): Householder
/// bidiagonalization and the implicitly shifted bidiagonal QR iteration,
/// singular values to O(eps |A|_2) absolute accuracy, both factors
/// orthonormal; a tall op(A) (op(A) = A, or A^T when m < n) is reduced by
/// QR first.
///
/// Jacobi (the default up to svd_jacobi_max_n): QR-preconditioned one-sided
/// Jacobi (Drmac and Veselic): op(A) P = Q R by Householder QR with column
/// pivoting, then one-sided Jacobi on the k x k matrix R^T =
/// W diag(S) Z^T, whose columns (the rows of the pivoted R) are graded and
/// nearly orthogonal, so the sweeps converge in a few passes where Jacobi
/// on A itself can need dozens (the 500 x 500 core of a truncation of
/// graded factors did not converge in 40). Then op(A) = (Q Z) diag(S)
/// (P W)^T. Small singular values to high relative accuracy. Columns of V
/// (of U when m < n) that belong to zero singular values are zero; the
/// other side is orthonormal.
///
/// Throws if an entry does not converge (jacobi_max_sweeps sweeps, or
/// bidiagonal_max_steps QR steps for one value). With `sweeps` (batch int,
/// or empty): the Jacobi sweeps, or the bidiagonal QR steps, each entry took.
template <class Exec, class AV, class UV, class SV, class VV, class WV>
void svd(const Exec& space, const AV& A, const UV& U, const SV& S, const VV& V, const WV& sweeps,
         SvdMethod method = SvdMethod::Auto) {
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
  static_assert(WV::rank == 1, "svd: sweeps must be rank-1 (batch)");
  if (sweeps.extent(0) > 0) hfisher::detail::check_batch(sweeps.extent(0), nb, where, "sweeps");
  hfisher::detail::check_finite3(space, A, where, "A");
  if (nb == 0 || k == 0) return;
  if (method == SvdMethod::Jacobi || (method == SvdMethod::Auto && k <= svd_jacobi_max_n)) {
    detail::svd_jacobi(space, A, U, S, V, sweeps);
  } else {
    detail::svd_bidiagonal(space, A, U, S, V, sweeps);
  }
}

template <class Exec, class AV, class UV, class SV, class VV>
void svd(const Exec& space, const AV& A, const UV& U, const SV& S, const VV& V, SvdMethod method = SvdMethod::Auto) {
  svd(space, A, U, S, V, Kokkos::View<int*, typename Exec::memory_space>(), method);
}

template <class AV, class UV, class SV, class VV>
void svd(const AV& A, const UV& U, const SV& S, const VV& V) {
  svd(typename AV::execution_space(), A, U, S, V);
}

}  // namespace kernels
}  // namespace hfisher
