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
               int level, int N, double tol, const Batch& U, const Batch& V, const IntView& rank, const IntView& open,
               const Used& used) {
  using T = typename Batch::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  using mem = typename Exec::memory_space;
  const int m = N >> level, pairs = 1 << (level - 1), kmax = U.extent(1);
  const T ttol = T(tol);
  // host: each team thread takes chunks of `chunk` contiguous entries and runs
  // the q loops outside (axpy form, vectorized); device: one entry per thread
  constexpr bool host = ExecTraits<Exec>::on_host;
  constexpr int chunk = host ? 256 : 1;
  const int nchunks = (m + chunk - 1) / chunk;
  // wide teams only where a block's per-step work dwarfs a team barrier
  const auto policy = (host && m >= 4096) ? hfisher::detail::wide_batch_policy(space, pairs)
                                          : hfisher::detail::batch_policy(space, pairs);
  // per block, pass (0: row, 1: column) and team thread (host; one slot on a
  // device): the partial inner products of the new residual with the earlier
  // cross vectors (slots q < k), its squared norm (slot kmax), its largest
  // magnitude and that entry's signed value (kmax + 1, kmax + 2) and index
  const int nparts = host ? policy.team_size() : 1;
  Kokkos::View<T****, Kokkos::LayoutRight, mem> part(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::aca::partials"), pairs, 2, nparts, kmax + 3);
  Kokkos::View<int***, Kokkos::LayoutRight, mem> ploc(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::aca::partial_loc"), pairs, 2, nparts);
  Kokkos::parallel_for(
      "hfisher::aca", policy, KOKKOS_LAMBDA(const member& t) {
        const int p = t.league_rank();
        const int r0 = 2 * p * m, c0 = (2 * p + 1) * m;
        auto entry = [&](int i, int j) -> T {
          const int gi = perm(r0 + i), gj = perm(c0 + j);
          return (gi >= 0 && gj >= 0) ? T(fn(gi, gj)) : T(0);
        };
        // One pass over a residual row (side 0) or column (side 1):
        //   out(k, :) = fn row/col piv - sum_{q<k} coefs(q, piv) basis(q, :)
        // with, per team thread, the partials of basis(q, :) . out(k, :), of
        // |out(k, :)|^2 and of the entry of largest magnitude (among unused
        // rows on side 1), and srow (if any) scaled by sinv on the way. On
        // the host the inner products of a chunk reread basis rows it has
        // just streamed (from L2), so the cross vectors leave memory once per
        // step instead of twice, and a wide team meets twice per step rather
        // than once per inner product.
        auto pass = [&](const Batch& out, const Batch& basis, const Batch& coefs, int k, int piv, int side, T* srow,
                        T sinv) {
          const bool row = side == 0;
          if (host) {
            const int tr = t.team_rank();
            T* d = &part(p, side, tr, 0);
            for (int q = 0; q < k; ++q) d[q] = T(0);
            T ss = T(0), best = T(-1), sval = T(0);
            int loc = -1;
            Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, nchunks), [&](const int c) {
              const int j0 = c * chunk, j1 = j0 + chunk < m ? j0 + chunk : m;
              T* o = &out(p, k, 0);
              for (int j = j0; j < j1; ++j) o[j] = row ? entry(piv, j) : entry(j, piv);
              for (int q = 0; q < k; ++q) {
                const T a = coefs(p, q, piv);
                const T* b = &basis(p, q, 0);
                for (int j = j0; j < j1; ++j) o[j] -= a * b[j];
              }
              // 8 independent partial sums (one running sum is a chain of
              // dependent adds, latency-bound and never vectorized)
              constexpr int lanes = 8;
              for (int q = 0; q < k; ++q) {
                const T* b = &basis(p, q, 0);
                T acc[lanes];
                for (int v = 0; v < lanes; ++v) acc[v] = T(0);
                int j = j0;
                for (; j + lanes <= j1; j += lanes)
                  for (int v = 0; v < lanes; ++v) acc[v] += b[j + v] * o[j + v];
                for (; j < j1; ++j) acc[0] += b[j] * o[j];
                T s = T(0);
                for (int v = 0; v < lanes; ++v) s += acc[v];
                d[q] += s;
              }
              for (int j = j0; j < j1; ++j) {
                ss += o[j] * o[j];
                const T a = math::abs(o[j]);
                if (a > best && (row || !used(p, j))) {
                  best = a;
                  loc = j;
                  sval = o[j];
                }
              }
              if (srow != nullptr)
                for (int j = j0; j < j1; ++j) srow[j] *= sinv;
            });
            d[kmax] = ss;
            d[kmax + 1] = best;
            d[kmax + 2] = sval;
            ploc(p, side, tr) = loc;
            return;
          }
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int j) {
            T o = row ? entry(piv, j) : entry(j, piv);
            for (int q = 0; q < k; ++q) o -= coefs(p, q, piv) * basis(p, q, j);
            out(p, k, j) = o;
            if (srow != nullptr) srow[j] *= sinv;
          });
          t.team_barrier();
          for (int q = 0; q < k; ++q) {
            T s = T(0);
            Kokkos::parallel_reduce(
                Kokkos::TeamThreadRange(t, 0, m), [&](const int j, T& v) { v += basis(p, q, j) * out(p, k, j); }, s);
            Kokkos::single(Kokkos::PerTeam(t), [&]() { part(p, side, 0, q) = s; });
          }
          using reducer = Kokkos::MaxLoc<T, int>;
          typename reducer::value_type best;
          T ss = T(0);
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, 0, m),
              [&](const int j, typename reducer::value_type& v) {
                const T a = math::abs(out(p, k, j));
                if (!row && used(p, j)) return;
                if (a > v.val || (a == v.val && j < v.loc)) {
                  v.val = a;
                  v.loc = j;
                }
              },
              reducer(best));
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, 0, m), [&](const int j, T& v) { v += out(p, k, j) * out(p, k, j); }, ss);
          Kokkos::single(Kokkos::PerTeam(t), [&]() {
            const bool found = best.loc >= 0 && best.loc < m;
            part(p, side, 0, kmax) = ss;
            part(p, side, 0, kmax + 1) = found ? best.val : T(-1);
            part(p, side, 0, kmax + 2) = found ? out(p, k, best.loc) : T(0);
            ploc(p, side, 0) = found ? best.loc : -1;
          });
        };
        // the team's largest magnitude of a pass (lowest index on ties), the
        // same on every thread: every thread sums the partials in one order
        auto argmax = [&](int side, T& best, T& sval) {
          int loc = -1;
          best = T(-1);
          sval = T(0);
          for (int r = 0; r < nparts; ++r) {
            const T b = part(p, side, r, kmax + 1);
            const int l = ploc(p, side, r);
            if (l >= 0 && (b > best || (b == best && l < loc))) {
              best = b;
              loc = l;
              sval = part(p, side, r, kmax + 2);
            }
          }
          return loc;
        };
        auto total = [&](int side, int slot) {
          T s = T(0);
          for (int r = 0; r < nparts; ++r) s += part(p, side, r, slot);
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
        while (k < kmax && istar < m) {
          // residual row istar -> V(k, :)
          pass(V, V, U, k, istar, 0, nullptr, T(1));
          t.team_barrier();
          T vbest, pivot;
          const int jstar = argmax(0, vbest, pivot);
          const T sv = total(0, kmax);
          Kokkos::single(Kokkos::PerTeam(t), [&]() { used(p, istar) = 1; });
          t.team_barrier();
          if (!(vbest > tiny)) {  // zero residual row: try the next unused row
            while (istar < m && used(p, istar)) ++istar;
            continue;
          }
          const T inv = T(1) / pivot;
          // residual column jstar -> U(k, :); V(k, :) scaled by 1 / pivot
          pass(U, U, V, k, jstar, 1, &V(p, k, 0), inv);
          t.team_barrier();
          // |S_k+1|_F^2 = |S_k|^2 + 2 sum_q (u_q . u)(v_q . v) + |u|^2 |v|^2
          T cross = T(0);
          for (int q = 0; q < k; ++q) cross += total(1, q) * total(0, q);
          cross *= inv;
          const T uu = total(1, kmax), vv = sv * inv * inv;
          T ubest, uval;
          const int inext = argmax(1, ubest, uval);
          norm2 += T(2) * cross + uu * vv;
          ++k;
          t.team_barrier();  // every thread has read the partials the next pass overwrites
          if (math::sqrt(uu) * math::sqrt(vv) <= ttol * math::sqrt(math::abs(norm2))) {
            converged = true;
            break;
          }
          // next row: largest entry of the new column among unused rows
          if (inext >= 0 && inext < m && !used(p, inext)) {
            istar = inext;
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
      "hfisher::aca_zero_tail", Kokkos::MDRangePolicy<Exec, Kokkos::Rank<2>>(space, {0, 0}, {long(pairs), long(nr)}),
      KOKKOS_LAMBDA(const int p, const int q) {
        if (q < rank(p)) return;
        for (int i = 0; i < m; ++i) U(p, q, i) = V(p, q, i) = 0;
      });
}

}  // namespace detail
}  // namespace hfisher
