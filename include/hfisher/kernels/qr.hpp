#pragma once
/// \file qr.hpp
/// \brief Batched Householder QR, QR with column pivoting (rank-revealing)
/// and formation of the thin Q.
///
/// Conventions are LAPACK's (dgeqrf / dgeqp3 / dorgqr): on return A holds R
/// on and above the diagonal and the Householder vectors below it,
/// H_i = I - tau_i v_i v_i^T. The factorization is a team kernel of ours
/// rather than KokkosBatched's QR, because KokkosBatched 3.4.1's SerialQR
/// iterates over rows and so only handles m <= n blocks.

#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/impl/householder.hpp>

namespace hfisher {
namespace kernels {
namespace detail {

/// Whether the host's blocked one-thread-per-entry forms apply: teams of one
/// thread, unit column stride, more than one panel of columns, 64 rows, and
/// at least min_cols columns or 8 times as many rows as columns. Forming Q
/// blocked pays from 64 rows; the blocked factorization of a square block
/// only from about 128 columns, because its 16-column panels stay level 2,
/// but of a tall one (the low-rank factors the H-matrix builds recompress)
/// already at 80 columns (docs/benchmarks.md).
template <class Exec>
bool blocked_qr(long m, long cols, bool unit_stride, long min_cols) {
  if constexpr (ExecTraits<Exec>::on_host)
    return hfisher::detail::host_team_size() <= 1 && unit_stride && cols > detail::qr_panel &&
           (cols >= min_cols || m >= 8 * cols) && m >= 64;
  else
    return false;
}

/// Runs f(member, work) once per batch entry with qr_blocked_work(m, n)
/// scalars of workspace: per-team scratch (reused between launches) where
/// it fits Kokkos' limit, else one buffer per entry.
template <class T, class Exec, class F>
void with_qr_work(const Exec& space, const char* name, long nb, long m, long n, const F& f) {
  using member = typename ExecTraits<Exec>::member_type;
  const long ws = detail::qr_blocked_work(int(m), int(n));
  const size_t bytes = size_t(ws) * sizeof(T);
  auto pol = hfisher::detail::batch_policy(space, int(nb));
  const bool scratch = bytes <= size_t(decltype(pol)::scratch_size_max(1));
  BatchVector<T, Exec> big(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::qr::work"),
                           scratch ? 0 : nb, scratch ? 0 : ws);
  if (scratch) pol.set_scratch_size(1, Kokkos::PerTeam(bytes));
  Kokkos::parallel_for(
      name, pol, KOKKOS_LAMBDA(const member& t) {
        T* w = scratch ? static_cast<T*>(t.team_scratch(1).get_shmem(bytes)) : &big(t.league_rank(), 0);
        f(t, w);
      });
}

}  // namespace detail

namespace detail {

/// qr without its checks (for kernels that checked, or made, their input).
template <class Exec, class AV, class TV>
void qr_nocheck(const Exec& space, const AV& A, const TV& tau) {
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2);
  using member = typename ExecTraits<Exec>::member_type;
  using T = typename AV::non_const_value_type;
  if (nb == 0) return;
  if constexpr (ExecTraits<Exec>::on_host) {
    if (detail::blocked_qr<Exec>(m, n, A.stride_2() == 1, 128)) {
      detail::with_qr_work<T>(
          space, "hfisher::qr::blocked", nb, m, n, KOKKOS_LAMBDA(const member& t, T* w) {
            const int b = t.league_rank();
            auto Ab = hfisher::detail::entry(A, b);
            detail::householder_qr_blocked<member, T>(t, m, n, Ab.data(), Ab.stride_0(), &tau(b, 0), w);
          });
      return;
    }
  }
  BatchVector<T, Exec> rowbuf(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::qr::rowbuf"), nb,
                              n > 0 ? n : 1);
  Kokkos::parallel_for(
      "hfisher::qr", hfisher::detail::batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        auto Ab = hfisher::detail::entry(A, b);
        detail::householder_qr<member, T>(t, m, n, Ab.data(), Ab.stride_0(), Ab.stride_1(), &tau(b, 0), nullptr,
                                          nullptr, &rowbuf(b, 0));
      });
}

}  // namespace detail

/// Batched Householder QR in place. A: (batch, m, n); tau: (batch, min(m, n)).
template <class Exec, class AV, class TV>
void qr(const Exec& space, const AV& A, const TV& tau) {
  constexpr const char* where = "hfisher::kernels::qr";
  static_assert(AV::rank == 3 && TV::rank == 2, "qr: A must be (batch, m, n), tau (batch, min(m, n))");
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2);
  hfisher::detail::check_batch(tau.extent(0), nb, where, "tau");
  hfisher::detail::check_extent(tau.extent(1), m < n ? m : n, where, "tau", "length");
  hfisher::detail::check_finite3(space, A, where, "A");
  detail::qr_nocheck(space, A, tau);
}

/// Forms the thin Q (batch, m, q), q <= m, from the output of qr or cpqr:
/// the first q columns of H_0 ... H_{k-1}.
template <class Exec, class AV, class TV, class QV>
void qr_form_q(const Exec& space, const AV& A, const TV& tau, const QV& Q) {
  constexpr const char* where = "hfisher::kernels::qr_form_q";
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2);
  hfisher::detail::check_batch(tau.extent(0), nb, where, "tau");
  hfisher::detail::check_batch(Q.extent(0), nb, where, "Q");
  hfisher::detail::check_extent(Q.extent(1), m, where, "Q", "rows");
  hfisher::detail::require(long(Q.extent(2)) <= m, where, "Q has ", Q.extent(2), " columns, more than m = ", m);
  using member = typename ExecTraits<Exec>::member_type;
  using T = typename QV::non_const_value_type;
  const int q = Q.extent(2);
  const int kr = q < long(tau.extent(1)) ? q : int(tau.extent(1));
  (void)n;
  if (nb == 0) return;
  if constexpr (ExecTraits<Exec>::on_host) {
    if (detail::blocked_qr<Exec>(m, kr, Q.stride_2() == 1, 0)) {
      detail::with_qr_work<T>(
          space, "hfisher::qr_form_q::blocked", nb, m, q, KOKKOS_LAMBDA(const member& t, T* w) {
            const int b = t.league_rank();
            auto Ab = hfisher::detail::entry(A, b);
            auto Qb = hfisher::detail::entry(Q, b);
            detail::form_q_blocked<T>(int(m), q, kr, Ab.data(), Ab.stride_0(), Ab.stride_1(), &tau(b, 0), Qb.data(),
                                      Qb.stride_0(), w);
          });
      return;
    }
  }
  BatchVector<T, Exec> rowbuf(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::qr_form_q::rowbuf"), nb,
                              q > 0 ? q : 1);
  Kokkos::parallel_for(
      "hfisher::qr_form_q", hfisher::detail::batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        auto Ab = hfisher::detail::entry(A, b);
        auto Qb = hfisher::detail::entry(Q, b);
        detail::form_q<member, T>(t, m, q, kr, Ab.data(), Ab.stride_0(), Ab.stride_1(), &tau(b, 0), Qb.data(),
                                  Qb.stride_0(), Qb.stride_1(), &rowbuf(b, 0));
      });
}

namespace detail {

/// Rows per chunk of a TSQR of m x n blocks: the smallest halving of m that
/// stays >= max(4 n, 256) (a chunk of that size is factored in cache, and
/// the stacked R's have at most a quarter of m's rows); m itself where m
/// cannot be halved that far (no TSQR).
inline int tsqr_rows(long m, long n) {
  const long bmin = 4 * n > 256 ? 4 * n : 256;
  long rows = m;
  while (rows % 2 == 0 && rows / 2 >= bmin) rows /= 2;
  return int(rows);
}

/// First stage of a TSQR (tall-skinny QR) of every entry of A (batch, m, n),
/// contiguous and overwritten, m = c * rows, rows >= n: the batch * c chunks
/// of `rows` rows are factored as one batch, in cache and in parallel across
/// all chunks; Ql (batch * c, rows, n) gets their Q's and S (batch, c n, n)
/// their R's stacked (zero below each diagonal), so that A = diag(Ql) S per
/// entry. Any QR of S = Qs R, pivoted or not, then gives A = (diag(Ql) Qs) R,
/// the Q formed by tsqr_form_q: the QR of a whole tall block would stream it
/// from memory once per column, one core per block.
template <class Exec, class T>
void tsqr_stack(const Exec& space, const BatchMatrix<T, Exec>& A, int rows, const BatchMatrix<T, Exec>& Ql,
                const BatchMatrix<T, Exec>& S) {
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2), nc = nb * (m / rows);
  const BatchMatrix<T, Exec> Ab(A.data(), nc, rows, n);  // the chunks, in order
  BatchVector<T, Exec> tau(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::tsqr::tau"), nc, n);
  qr_nocheck(space, Ab, tau);
  const BatchMatrix<T, Exec> Sb(S.data(), nc, n, n);
  Kokkos::parallel_for(
      "hfisher::tsqr::stack", Kokkos::RangePolicy<Exec>(space, 0, nc), KOKKOS_LAMBDA(const int e) {
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < n; ++j) Sb(e, i, j) = j >= i ? Ab(e, i, j) : T(0);
      });
  qr_form_q(space, Ab, tau, Ql);
}

/// Q (batch, m, n) = diag(Ql) Qs per entry: Ql (batch * c, rows, n) from
/// tsqr_stack, Qs (batch, c n, n) the Q of the stacked R's; one batched GEMM.
template <class Exec, class T>
void tsqr_form_q(const Exec& space, const BatchMatrix<T, Exec>& Ql, const BatchMatrix<T, Exec>& Qs,
                 const BatchMatrix<T, Exec>& Q) {
  const long nc = Ql.extent(0), rows = Ql.extent(1), n = Ql.extent(2);
  gemm_nocheck(space, Op::NoTrans, Op::NoTrans, T(1), Ql, BatchMatrix<T, Exec>(Qs.data(), nc, n, n), T(0),
               BatchMatrix<T, Exec>(Q.data(), nc, rows, n));
}

/// Thin QR of W (batch, m, n), overwritten: W = Q (batch, m, k) R (batch, k,
/// n), k = min(m, n). No checks: for kernels whose W is their own finite
/// copy (qr_thin, svd). (TSQR, as the HODLR factorization uses it, was no
/// faster here: the blocked QR and Q already run at GEMM speed.)
template <class Exec, class WV, class QV, class RV>
void qr_thin_inplace(const Exec& space, const WV& W, const QV& Q, const RV& R) {
  const long nb = W.extent(0), m = W.extent(1), n = W.extent(2), k = m < n ? m : n;
  using T = typename QV::non_const_value_type;
  BatchVector<T, Exec> tau(Kokkos::view_alloc(space, "hfisher::qr_thin::tau"), nb, k);
  qr_nocheck(space, W, tau);
  qr_form_q(space, W, tau, Q);
  Kokkos::parallel_for(
      "hfisher::qr_thin::R", Kokkos::RangePolicy<Exec>(space, 0, nb), KOKKOS_LAMBDA(const int b) {
        for (int i = 0; i < k; ++i)
          for (int j = 0; j < n; ++j) R(b, i, j) = j >= i ? W(b, i, j) : T(0);
      });
}

/// Thin QR of a copy of A (no checks: for kernels that checked A).
template <class Exec, class AV, class QV, class RV>
void qr_thin_copy(const Exec& space, const AV& A, const QV& Q, const RV& R) {
  using T = typename QV::non_const_value_type;
  BatchMatrix<T, Exec> W(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::qr_thin::W"), A.extent(0),
                         A.extent(1), A.extent(2));
  Kokkos::deep_copy(space, W, A);
  qr_thin_inplace(space, W, Q, R);
}

}  // namespace detail

/// Thin QR without touching A: A (batch, m, n) = Q (batch, m, k) R (batch, k, n),
/// k = min(m, n), R upper triangular.
template <class Exec, class AV, class QV, class RV>
void qr_thin(const Exec& space, const AV& A, const QV& Q, const RV& R) {
  constexpr const char* where = "hfisher::kernels::qr_thin";
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2), k = m < n ? m : n;
  hfisher::detail::check_batch(Q.extent(0), nb, where, "Q");
  hfisher::detail::check_batch(R.extent(0), nb, where, "R");
  hfisher::detail::check_extent(Q.extent(1), m, where, "Q", "rows");
  hfisher::detail::check_extent(Q.extent(2), k, where, "Q", "columns");
  hfisher::detail::check_extent(R.extent(1), k, where, "R", "rows");
  hfisher::detail::check_extent(R.extent(2), n, where, "R", "columns");
  hfisher::detail::check_finite3(space, A, where, "A");
  detail::qr_thin_copy(space, A, Q, R);
}

namespace detail {

/// cpqr without its argument checks (for other kernels that checked their
/// own input, e.g. svd on a copy of A).
template <class Exec, class AV, class TV, class PV, class RV>
void cpqr_nocheck(const Exec& space, const AV& A, const TV& tau, const PV& perm, const RV& rank, double tol) {
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2), k = m < n ? m : n;
  using member = typename ExecTraits<Exec>::member_type;
  using T = typename AV::non_const_value_type;
  if (nb == 0) return;
  BatchVector<T, Exec> work(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::cpqr::work"), nb,
                            3 * n + 1);
  const T ttol = T(tol);
  Kokkos::parallel_for(
      "hfisher::cpqr", hfisher::detail::batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        auto Ab = hfisher::detail::entry(A, b);
        const int s0 = Ab.stride_0(), s1 = Ab.stride_1();
        householder_qr<member, T>(t, m, n, Ab.data(), s0, s1, &tau(b, 0), &perm(b, 0), &work(b, 0), &work(b, 2 * n));
        Kokkos::single(Kokkos::PerTeam(t), [&]() {
          int r = 0;
          if (k > 0) {
            const T r00 = math::abs(Ab(0, 0));
            while (r < k && math::abs(Ab(r, r)) > ttol * r00) ++r;
          }
          rank(b) = r;
        });
      });
}

}  // namespace detail

/// Batched QR with column pivoting, in place: A(:, perm) = Q R.
/// A: (batch, m, n); tau: (batch, min(m, n)); perm: (batch, n) int, perm(b, j)
/// the original index of pivoted column j; rank: (batch) int, the numerical
/// rank: the number of leading diagonal entries with |R_ii| > tol * |R_00|.
/// tol in (0, 1).
template <class Exec, class AV, class TV, class PV, class RV>
void cpqr(const Exec& space, const AV& A, const TV& tau, const PV& perm, const RV& rank, double tol) {
  constexpr const char* where = "hfisher::kernels::cpqr";
  static_assert(AV::rank == 3 && TV::rank == 2 && PV::rank == 2 && RV::rank == 1, "cpqr: argument ranks");
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2), k = m < n ? m : n;
  hfisher::detail::check_tol(tol, where);
  hfisher::detail::check_batch(tau.extent(0), nb, where, "tau");
  hfisher::detail::check_extent(tau.extent(1), k, where, "tau", "length");
  hfisher::detail::check_batch(perm.extent(0), nb, where, "perm");
  hfisher::detail::check_extent(perm.extent(1), n, where, "perm", "length");
  hfisher::detail::check_batch(rank.extent(0), nb, where, "rank");
  hfisher::detail::check_finite3(space, A, where, "A");
  detail::cpqr_nocheck(space, A, tau, perm, rank, tol);
}

}  // namespace kernels
}  // namespace hfisher
