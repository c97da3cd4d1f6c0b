#pragma once
/// \file aca.hpp
/// \brief Batched adaptive cross approximation (ACA with partial pivoting,
/// Bebendorf 2000) of the off-diagonal blocks of one tree level from an
/// entry function: O(m k) entries and O(m k^2) work per m x m block, so a
/// kernel matrix is compressed without ever being formed. One team per
/// block (on the host, a level with fewer large blocks than threads gets
/// wider teams); the result is recompressed (QR + SVD of the core)
/// afterwards.
///
/// The cross vectors are stored one per row, (pairs, kmax, m): every update
/// of a residual row or column and every inner product of the norm update
/// then reads contiguous memory (unit stride across the threads of a team on
/// a GPU, vectorizable axpy chunks on the host).

#include <hfisher/core/math.hpp>
#include <hfisher/core/types.hpp>

namespace hfisher {
namespace detail {

/// Builds B ~ sum_q U(p, q, :) V(p, q, :)^T for every sibling pair p of
/// `level`, B(i, j) = fn(perm(row i of node 2p), perm(col j of node 2p+1))
/// (0 on padding). U, V: (pairs, kmax, m) outputs; rows q >= rank(p) are
/// left unwritten. used: (pairs, m) int workspace. Stops when
/// |u_k| |v_k| <= tol |U V^T|_F; open(p) = 1 where block p stopped at kmax
/// terms before that (a larger kmax is needed), else 0.
template <class Exec, class EntryFn, class Batch, class IntView, class Used>
void aca_level(const Exec& space, const EntryFn& fn, const Kokkos::View<int*, typename Exec::memory_space>& perm,
               int level, int N, double tol, const Batch& U, const Batch& V, const IntView& rank,
               const IntView& open, const Used& used) {
  using T = typename Batch::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  const int m = N >> level, pairs = 1 << (level - 1), kmax = U.extent(1);
  const T ttol = T(tol);
  // host: each team thread takes chunks of `chunk` contiguous entries and runs
  // the q loop outside (axpy form, vectorized); device: one entry per thread
  constexpr bool host = ExecTraits<Exec>::on_host;
  constexpr int chunk = host ? 256 : 1;
  const int nchunks = (m + chunk - 1) / chunk;
  // wide teams only where a block's per-step work dwarfs a team barrier
  const auto policy = (host && m >= 4096) ? hfisher::detail::wide_batch_policy(space, pairs)
                                          : hfisher::detail::batch_policy(space, pairs);
  Kokkos::parallel_for(
      "hfisher::aca", policy, KOKKOS_LAMBDA(const member& t) {
        const int p = t.league_rank();
        const int r0 = 2 * p * m, c0 = (2 * p + 1) * m;
        auto entry = [&](int i, int j) -> T {
          const int gi = perm(r0 + i), gj = perm(c0 + j);
          return (gi >= 0 && gj >= 0) ? T(fn(gi, gj)) : T(0);
        };
        // out(k, :) = fn row/col - sum_q coef(q) * basis(q, :), over chunks
        auto residual = [&](const Batch& out, const Batch& basis, const Batch& coefs, int k, int piv, bool row) {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, nchunks), [&](const int c) {
            const int j0 = c * chunk, j1 = j0 + chunk < m ? j0 + chunk : m;
            T* o = &out(p, k, 0);
            for (int j = j0; j < j1; ++j) o[j] = row ? entry(piv, j) : entry(j, piv);
            for (int q = 0; q < k; ++q) {
              const T a = coefs(p, q, piv);
              const T* b = &basis(p, q, 0);
              for (int j = j0; j < j1; ++j) o[j] -= a * b[j];
            }
          });
        };
        auto dot = [&](const Batch& A, int qa, const Batch& B, int qb) {
          T s = T(0);
          const T* a = &A(p, qa, 0);
          const T* b = &B(p, qb, 0);
          if (host && t.team_size() == 1) {
            // one thread: 8 independent partial sums (a single running sum is
            // a chain of dependent adds, latency-bound and never vectorized)
            constexpr int lanes = 8;
            T acc[lanes];
            for (int v = 0; v < lanes; ++v) acc[v] = T(0);
            int i = 0;
            for (; i + lanes <= m; i += lanes)
              for (int v = 0; v < lanes; ++v) acc[v] += a[i + v] * b[i + v];
            for (; i < m; ++i) acc[0] += a[i] * b[i];
            for (int v = 0; v < lanes; ++v) s += acc[v];
            return s;
          }
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, 0, m), [&](const int i, T& v) { v += a[i] * b[i]; }, s);
          return s;
        };
        Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int i) {
          used(p, i) = perm(r0 + i) < 0 ? 1 : 0;  // padded rows are zero rows
        });
        t.team_barrier();
        int istar = 0;
        while (istar < m && used(p, istar)) ++istar;
        int k = 0;
        bool converged = false;
        T norm2 = T(0);
        const T tiny = T(100) * math::limits<T>::tiny();
        using reducer = Kokkos::MaxLoc<T, int>;
        while (k < kmax && istar < m) {
          // residual row istar -> V(k, :)
          residual(V, V, U, k, istar, true);
          t.team_barrier();
          typename reducer::value_type best;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, 0, m),
              [&](const int j, typename reducer::value_type& v) {
                const T a = math::abs(V(p, k, j));
                if (a > v.val || (a == v.val && j < v.loc)) {
                  v.val = a;
                  v.loc = j;
                }
              },
              reducer(best));
          Kokkos::single(Kokkos::PerTeam(t), [&]() { used(p, istar) = 1; });
          t.team_barrier();
          if (!(best.val > tiny)) {  // zero residual row: try the next unused row
            while (istar < m && used(p, istar)) ++istar;
            continue;
          }
          const int jstar = best.loc;
          const T inv = T(1) / V(p, k, jstar);
          t.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int j) { V(p, k, j) *= inv; });
          // residual column jstar -> U(k, :)
          residual(U, U, V, k, jstar, false);
          t.team_barrier();
          // |S_k+1|_F^2 = |S_k|^2 + 2 sum_q (u_q . u)(v_q . v) + |u|^2 |v|^2
          const T uu = dot(U, k, U, k), vv = dot(V, k, V, k);
          T cross = T(0);
          for (int q = 0; q < k; ++q) cross += dot(U, q, U, k) * dot(V, q, V, k);
          norm2 += T(2) * cross + uu * vv;
          ++k;
          if (math::sqrt(uu) * math::sqrt(vv) <= ttol * math::sqrt(math::abs(norm2))) {
            converged = true;
            break;
          }
          // next row: largest entry of the new column among unused rows
          typename reducer::value_type nb;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, 0, m),
              [&](const int i, typename reducer::value_type& v) {
                if (used(p, i)) return;
                const T a = math::abs(U(p, k - 1, i));
                if (a > v.val || (a == v.val && i < v.loc)) {
                  v.val = a;
                  v.loc = i;
                }
              },
              reducer(nb));
          t.team_barrier();
          if (nb.loc >= 0 && nb.loc < m && !used(p, nb.loc)) {
            istar = nb.loc;
          } else {
            while (istar < m && used(p, istar)) ++istar;
          }
        }
        // every row used: the cross approximation is exact
        while (istar < m && used(p, istar)) ++istar;
        const int unresolved = (!converged && k == kmax && istar < m) ? 1 : 0;
        Kokkos::single(Kokkos::PerTeam(t), [&]() {
          rank(p) = k;
          open(p) = unresolved;
        });
      });
}

/// Rows [rank(p), nr) of every block of U, V (pairs, kmax, m) set to zero,
/// so the first nr rows hold each block's factors zero-padded to nr.
template <class Exec, class Batch, class IntView>
void aca_zero_tail(const Exec& space, const Batch& U, const Batch& V, const IntView& rank, int nr) {
  const int pairs = U.extent(0), m = U.extent(2);
  Kokkos::parallel_for(
      "hfisher::aca_zero_tail",
      Kokkos::MDRangePolicy<Exec, Kokkos::Rank<2>>(space, {0, 0}, {long(pairs), long(nr)}),
      KOKKOS_LAMBDA(const int p, const int q) {
        if (q < rank(p)) return;
        for (int i = 0; i < m; ++i) U(p, q, i) = V(p, q, i) = 0;
      });
}

}  // namespace detail
}  // namespace hfisher
