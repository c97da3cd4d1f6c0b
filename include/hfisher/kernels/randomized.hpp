#pragma once
/// \file randomized.hpp
/// \brief Batched adaptive randomized range finder and randomized SVD
/// (Halko, Martinsson & Tropp, SIAM Review 2011, Alg. 4.2 in blocked form).
///
/// For each batch entry A (m x n) the finder grows an orthonormal Q in blocks
/// of `block` Gaussian samples Y = A Omega, projected against the current Q.
/// The projected samples of the next block give the a-posteriori estimate
///   est = 10 sqrt(2/pi) max_i |(I - Q Q^T) A omega_i|,
/// which bounds |(I - Q Q^T) A|_2 with probability >= 1 - 10^-block. It stops
/// when est <= tol |A|_F / sqrt(min(m, n)) (which is <= tol |A|_2), or when Q
/// has max_rank columns. Gaussian samples are counter-based (seed, batch entry,
/// index), so every backend draws the same ones.

#include <hfisher/core/random.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/svd.hpp>

#include <cstdint>

namespace hfisher {
namespace kernels {

/// Options of the randomized range finder.
struct RangeFinderOptions {
  int block = 8;            ///< Gaussian samples per step (also the failure exponent)
  std::uint64_t seed = 42;  ///< seed of the counter-based generator
};

namespace detail {

template <class Member, class T>
KOKKOS_INLINE_FUNCTION T team_dot(const Member& t, int m, const T* x, int sx, const T* y, int sy) {
  T s = T(0);
  Kokkos::parallel_reduce(
      Kokkos::TeamThreadRange(t, 0, m), [&](const int r, T& v) { v += x[r * sx] * y[r * sy]; }, s);
  return s;
}

/// Adaptive range finder on one entry. Q: m x kmax (zeroed beyond the
/// returned rank); Om: n x bs, Y: m x bs, C: kmax x bs workspaces.
template <class Exec, class Member, class AV, class QV, class WV>
KOKKOS_INLINE_FUNCTION int range_finder_entry(const Member& t, const AV& A, const QV& Q, const WV& Om, const WV& Y,
                                              const WV& C, typename QV::non_const_value_type tol, std::uint64_t seed,
                                              int stream, typename QV::non_const_value_type* est_out) {
  using T = typename QV::non_const_value_type;
  using mem = typename Exec::memory_space;
  const int m = A.extent(0), n = A.extent(1), kmax = Q.extent(1), bs = Om.extent(1);
  T fro = T(0);
  Kokkos::parallel_reduce(
      Kokkos::TeamThreadRange(t, 0, m),
      [&](const int i, T& s) {
        for (int j = 0; j < n; ++j) s += A(i, j) * A(i, j);
      },
      fro);
  fro = math::sqrt(fro);
  const int mn = m < n ? m : n;
  const T target = tol * fro / math::sqrt(T(mn > 0 ? mn : 1));
  const T accept = T(10) * math::limits<T>::eps() * fro;
  const T factor = T(7.978845608028654);  // 10 sqrt(2/pi)
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int i) {
    for (int j = 0; j < kmax; ++j) Q(i, j) = T(0);
  });
  t.team_barrier();
  int k = 0;
  T est = T(0);
  for (std::uint64_t it = 0;; ++it) {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int j) {
      for (int c = 0; c < bs; ++c) Om(j, c) = T(random::normal(seed, std::uint64_t(stream), (it * n + j) * bs + c));
    });
    t.team_barrier();
    gemm_entry<Exec>(t, Op::NoTrans, Op::NoTrans, T(1), A, Om, T(0), Y);
    t.team_barrier();
    if (k > 0) {
      auto Qk = hfisher::detail::strided<mem>(Q.data(), m, k, int(Q.stride_0()), int(Q.stride_1()));
      auto Ck = hfisher::detail::strided<mem>(C.data(), k, bs, int(C.stride_0()), int(C.stride_1()));
      for (int pass = 0; pass < 2; ++pass) {
        gemm_entry<Exec>(t, Op::Trans, Op::NoTrans, T(1), Qk, Y, T(0), Ck);
        t.team_barrier();
        gemm_entry<Exec>(t, Op::NoTrans, Op::NoTrans, T(-1), Qk, Ck, T(1), Y);
        t.team_barrier();
      }
    }
    T ymax = T(0);
    for (int c = 0; c < bs; ++c) {
      const T nc = math::sqrt(team_dot(t, m, &Y(0, c), int(Y.stride_0()), &Y(0, c), int(Y.stride_0())));
      ymax = math::max(ymax, nc);
    }
    est = factor * ymax;
    if (!(est > target) || k == kmax) break;
    int accepted = 0;
    for (int c = 0; c < bs && k < kmax; ++c) {
      T* y = &Y(0, c);
      const int ys = Y.stride_0();
      for (int pass = 0; pass < 2; ++pass)
        for (int j = 0; j < k; ++j) {
          const T d = team_dot(t, m, &Q(0, j), int(Q.stride_0()), y, ys);
          t.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int r) { y[r * ys] -= d * Q(r, j); });
          t.team_barrier();
        }
      const T nrm = math::sqrt(team_dot(t, m, y, ys, y, ys));
      t.team_barrier();
      if (nrm > accept) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int r) { Q(r, k) = y[r * ys] / nrm; });
        t.team_barrier();
        ++k;
        ++accepted;
      }
    }
    if (accepted == 0) break;
  }
  *est_out = est;
  return k;
}

}  // namespace detail

/// Batched adaptive randomized range finder.
/// A: (batch, m, n); Q: (batch, m, max_rank) receives orthonormal columns
/// (zero beyond the entry's rank); rank: (batch) int; est: (batch) the
/// a-posteriori estimate of |(I - Q Q^T) A|_2 (see the file comment).
/// tol in (0, 1); 1 <= max_rank <= min(m, n).
template <class Exec, class AV, class QV, class RV, class EV>
void range_finder(const Exec& space, const AV& A, double tol, const QV& Q, const RV& rank, const EV& est,
                  const RangeFinderOptions& opts = {}) {
  constexpr const char* where = "hfisher::kernels::range_finder";
  static_assert(AV::rank == 3 && QV::rank == 3 && RV::rank == 1 && EV::rank == 1, "range_finder: argument ranks");
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2), kmax = Q.extent(2);
  hfisher::detail::check_tol(tol, where);
  hfisher::detail::require(opts.block >= 1 && opts.block <= 64, where, "block must be in [1, 64], got ", opts.block);
  hfisher::detail::check_batch(Q.extent(0), nb, where, "Q");
  hfisher::detail::check_extent(Q.extent(1), m, where, "Q", "rows");
  hfisher::detail::require(kmax >= 1 && kmax <= (m < n ? m : n), where, "max_rank (columns of Q) = ", kmax,
                           " must lie in [1, min(m, n) = ", m < n ? m : n, "]");
  hfisher::detail::check_batch(rank.extent(0), nb, where, "rank");
  hfisher::detail::check_batch(est.extent(0), nb, where, "est");
  hfisher::detail::check_finite3(space, A, where, "A");
  if (nb == 0) return;
  using T = typename QV::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  const int bs = opts.block;
  BatchMatrix<T, Exec> Om(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::rf::Om"), nb, n, bs);
  BatchMatrix<T, Exec> Y(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::rf::Y"), nb, m, bs);
  BatchMatrix<T, Exec> C(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::rf::C"), nb, kmax, bs);
  const T ttol = T(tol);
  const std::uint64_t seed = opts.seed;
  Kokkos::parallel_for(
      "hfisher::range_finder", hfisher::detail::batch_policy(space, nb), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        T e = T(0);
        const int r = detail::range_finder_entry<Exec>(t, hfisher::detail::entry(A, b), hfisher::detail::entry(Q, b),
                                                       hfisher::detail::entry(Om, b), hfisher::detail::entry(Y, b),
                                                       hfisher::detail::entry(C, b), ttol, seed, b, &e);
        Kokkos::single(Kokkos::PerTeam(t), [&]() {
          rank(b) = r;
          est(b) = e;
        });
      });
}

/// Batched randomized SVD with adaptive rank: A_b ~ U_b diag(S_b) V_b^T.
/// U: (batch, m, max_rank), S: (batch, max_rank), V: (batch, n, max_rank);
/// rank(b) keeps the singular values > tol * S_b(0) (and at most what the
/// range finder found); columns beyond rank(b) are zero. With probability
/// >= 1 - 10^-block, |A_b - U_b S_b V_b^T|_2 <= 2 tol |A_b|_2 unless the
/// max_rank cap was hit (then rank(b) == max_rank).
template <class Exec, class AV, class UV, class SV, class VV, class RV>
void rsvd(const Exec& space, const AV& A, double tol, const UV& U, const SV& S, const VV& V, const RV& rank,
          const RangeFinderOptions& opts = {}) {
  constexpr const char* where = "hfisher::kernels::rsvd";
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2), kmax = U.extent(2);
  hfisher::detail::check_batch(U.extent(0), nb, where, "U");
  hfisher::detail::check_extent(U.extent(1), m, where, "U", "rows");
  hfisher::detail::check_batch(S.extent(0), nb, where, "S");
  hfisher::detail::check_extent(S.extent(1), kmax, where, "S", "length");
  hfisher::detail::check_batch(V.extent(0), nb, where, "V");
  hfisher::detail::check_extent(V.extent(1), n, where, "V", "rows");
  hfisher::detail::check_extent(V.extent(2), kmax, where, "V", "columns");
  hfisher::detail::check_batch(rank.extent(0), nb, where, "rank");
  using T = typename UV::non_const_value_type;
  BatchMatrix<T, Exec> Q(Kokkos::view_alloc(space, "hfisher::rsvd::Q"), nb, m, kmax);
  BatchScalar<T, Exec> est(Kokkos::view_alloc(space, "hfisher::rsvd::est"), nb);
  range_finder(space, A, tol, Q, rank, est, opts);
  // only the largest rank found matters: the SVD is of size kr, not kmax
  int kr = 0;
  Kokkos::parallel_reduce(
      "hfisher::rsvd::max_rank", Kokkos::RangePolicy<Exec>(space, 0, nb),
      KOKKOS_LAMBDA(const int b, int& v) { v = rank(b) > v ? int(rank(b)) : v; }, Kokkos::Max<int>(kr));
  Kokkos::deep_copy(space, U, T(0));
  Kokkos::deep_copy(space, S, T(0));
  Kokkos::deep_copy(space, V, T(0));
  if (kr > 0) {
    const auto c = Kokkos::make_pair(0, kr);
    auto Qk = Kokkos::subview(Q, Kokkos::ALL(), Kokkos::ALL(), c);
    // B = Q^T A (kr x n) = Wb S V^T  ->  U = Q Wb
    BatchMatrix<T, Exec> B(Kokkos::view_alloc(space, "hfisher::rsvd::B"), nb, kr, n);
    detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, T(1), Qk, A, T(0), B);
    BatchMatrix<T, Exec> Wb(Kokkos::view_alloc(space, "hfisher::rsvd::W"), nb, kr, kr);
    svd(space, B, Wb, Kokkos::subview(S, Kokkos::ALL(), c), Kokkos::subview(V, Kokkos::ALL(), Kokkos::ALL(), c));
    detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, T(1), Qk, Wb, T(0),
                         Kokkos::subview(U, Kokkos::ALL(), Kokkos::ALL(), c));
  }
  const T ttol = T(tol);
  Kokkos::parallel_for(
      "hfisher::rsvd::truncate", Kokkos::RangePolicy<Exec>(space, 0, nb), KOKKOS_LAMBDA(const int b) {
        int r = 0;
        const int rf = rank(b);
        while (r < rf && r < kmax && S(b, r) > ttol * S(b, 0)) ++r;
        rank(b) = r;
        for (int j = r; j < kmax; ++j) {
          S(b, j) = T(0);
          for (int i = 0; i < m; ++i) U(b, i, j) = T(0);
          for (int i = 0; i < n; ++i) V(b, i, j) = T(0);
        }
      });
}

}  // namespace kernels
}  // namespace hfisher
