#pragma once
/// \file aca.hpp
/// \brief Batched adaptive cross approximation (ACA with partial pivoting,
/// Bebendorf 2000) of the off-diagonal blocks of one tree level from an
/// entry function: O(m k) entries and O(m k^2) work per m x m block, so a
/// kernel matrix is compressed without ever being formed. One team per
/// block; the result is recompressed (QR + SVD of the core) afterwards.

#include <hfisher/core/math.hpp>
#include <hfisher/core/types.hpp>

namespace hfisher {
namespace hmatrix_impl {

/// Builds B ~ U V^T for every sibling pair p of `level`, B(i, j) =
/// fn(perm(row i of node 2p), perm(col j of node 2p+1)) (0 on padding).
/// U, V: (pairs, m, kmax) outputs (zero beyond rank(p)); used: (pairs, m)
/// int workspace. Stops when |u_k| |v_k| <= tol |U V^T|_F.
template <class Exec, class EntryFn, class Batch, class IntView, class Used>
void aca_level(const Exec& space, const EntryFn& fn, const Kokkos::View<int*, typename Exec::memory_space>& perm,
               int level, int N, double tol, const Batch& U, const Batch& V, const IntView& rank, const Used& used) {
  using T = typename Batch::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  const int m = N >> level, pairs = 1 << (level - 1), kmax = U.extent(2);
  const T ttol = T(tol);
  Kokkos::parallel_for(
      "hfisher::aca", hfisher::detail::batch_policy(space, pairs), KOKKOS_LAMBDA(const member& t) {
        const int p = t.league_rank();
        const int r0 = 2 * p * m, c0 = (2 * p + 1) * m;
        auto entry = [&](int i, int j) -> T {
          const int gi = perm(r0 + i), gj = perm(c0 + j);
          return (gi >= 0 && gj >= 0) ? T(fn(gi, gj)) : T(0);
        };
        Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int i) {
          used(p, i) = perm(r0 + i) < 0 ? 1 : 0;  // padded rows are zero rows
          for (int c = 0; c < kmax; ++c) U(p, i, c) = V(p, i, c) = T(0);
        });
        t.team_barrier();
        int istar = 0;
        while (istar < m && used(p, istar)) ++istar;
        int k = 0;
        T norm2 = T(0);
        const T tiny = T(100) * math::limits<T>::tiny();
        while (k < kmax && istar < m) {
          // residual row istar -> V(:, k)
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int j) {
            T s = entry(istar, j);
            for (int q = 0; q < k; ++q) s -= U(p, istar, q) * V(p, j, q);
            V(p, j, k) = s;
          });
          t.team_barrier();
          using reducer = Kokkos::MaxLoc<T, int>;
          typename reducer::value_type best;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, 0, m),
              [&](const int j, typename reducer::value_type& v) {
                const T a = math::abs(V(p, j, k));
                if (a > v.val || (a == v.val && j < v.loc)) {
                  v.val = a;
                  v.loc = j;
                }
              },
              reducer(best));
          Kokkos::single(Kokkos::PerTeam(t), [&]() { used(p, istar) = 1; });
          t.team_barrier();
          if (!(best.val > tiny)) {  // zero residual row: try the next unused row
            Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int j) { V(p, j, k) = T(0); });
            t.team_barrier();
            while (istar < m && used(p, istar)) ++istar;
            continue;
          }
          const int jstar = best.loc;
          const T piv = V(p, jstar, k);
          t.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int j) { V(p, j, k) /= piv; });
          // residual column jstar -> U(:, k)
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int i) {
            T s = entry(i, jstar);
            for (int q = 0; q < k; ++q) s -= U(p, i, q) * V(p, jstar, q);
            U(p, i, k) = s;
          });
          t.team_barrier();
          // |S_k+1|_F^2 = |S_k|^2 + 2 sum_q (u_q . u)(v_q . v) + |u|^2 |v|^2
          T uu = T(0), vv = T(0), cross = T(0);
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, 0, m),
              [&](const int i, T& s) { s += U(p, i, k) * U(p, i, k); }, uu);
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, 0, m),
              [&](const int i, T& s) { s += V(p, i, k) * V(p, i, k); }, vv);
          for (int q = 0; q < k; ++q) {
            T a = T(0), b = T(0);
            Kokkos::parallel_reduce(
                Kokkos::TeamThreadRange(t, 0, m), [&](const int i, T& s) { s += U(p, i, q) * U(p, i, k); }, a);
            Kokkos::parallel_reduce(
                Kokkos::TeamThreadRange(t, 0, m), [&](const int i, T& s) { s += V(p, i, q) * V(p, i, k); }, b);
            cross += a * b;
          }
          norm2 += T(2) * cross + uu * vv;
          ++k;
          if (math::sqrt(uu) * math::sqrt(vv) <= ttol * math::sqrt(math::abs(norm2))) break;
          // next row: largest entry of the new column among unused rows
          typename reducer::value_type nb;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, 0, m),
              [&](const int i, typename reducer::value_type& v) {
                if (used(p, i)) return;
                const T a = math::abs(U(p, i, k - 1));
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
        Kokkos::single(Kokkos::PerTeam(t), [&]() { rank(p) = k; });
      });
}

}  // namespace hmatrix_impl
}  // namespace hfisher
