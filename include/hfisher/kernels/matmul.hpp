#pragma once
/// \file matmul.hpp
/// \brief One large GEMM, C = alpha op(A) op(B) + beta C, on 2-D views: the
/// output is cut into tiles and each tile is one batch entry of the same
/// team-level kernel as the batched GEMM (gemm.hpp), so a single product runs
/// in parallel on every backend with no second code path.

#include <hfisher/core/error.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/kernels/gemm.hpp>

namespace hfisher {
namespace kernels {

namespace detail {
template <class Exec, class AV, class BV, class CV>
void matmul_nocheck(const Exec& space, Op ta, Op tb, typename CV::non_const_value_type alpha, const AV& A, const BV& B,
                    typename CV::non_const_value_type beta, const CV& C) {
  using S = typename CV::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  const int m = C.extent(0), n = C.extent(1);
  if (m == 0 || n == 0) return;
  const int k = ta == Op::NoTrans ? A.extent(1) : A.extent(0);
  const int tile = ExecTraits<Exec>::on_host ? 96 : 64;
  const int kc =
      ExecTraits<Exec>::on_host ? 256 : 1 << 30;  // device: one panel (shared memory is the kernel's business)
  // tiles of at most tile x tile; on the host of equal size up to the
  // register block (6 rows, 16 columns), so that the threads' contiguous
  // shares of the tiles carry equal work (with fixed 96 x 96 tiles, a
  // 100 x 785 product gave one thread nine 96-row tiles and the other nine
  // of 4 rows)
  auto even = [](int len, int cap, int grain) {
    const int parts = (len + cap - 1) / cap, per = (len + parts - 1) / parts;
    return (per + grain - 1) / grain * grain;
  };
  const int bm = ExecTraits<Exec>::on_host ? even(m, tile, 6) : tile;
  const int bn = ExecTraits<Exec>::on_host ? even(n, tile, 16) : tile;
  const int tm = (m + bm - 1) / bm, tn = (n + bn - 1) / bn;
  Kokkos::parallel_for(
      "hfisher::matmul", hfisher::detail::batch_policy(space, tm * tn), KOKKOS_LAMBDA(const member& t) {
        const int i0 = (t.league_rank() / tn) * bm, j0 = (t.league_rank() % tn) * bn;
        const int i1 = i0 + bm < m ? i0 + bm : m, j1 = j0 + bn < n ? j0 + bn : n;
        const Kokkos::pair<int, int> ri(i0, i1), rj(j0, j1);
        auto Cs = Kokkos::subview(C, ri, rj);
        if (k == 0) {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, i1 - i0), [&](const int i) {
            for (int j = 0; j < j1 - j0; ++j) Cs(i, j) = beta == S(0) ? S(0) : beta * Cs(i, j);
          });
          return;
        }
        // the inner dimension in panels of kc: a tile's A and B panels stay
        // in cache (a full-length k of 2048 would make them 1.5 MB each)
        for (int k0 = 0; k0 < k; k0 += kc) {
          const Kokkos::pair<int, int> rk(k0, k0 + kc < k ? k0 + kc : k);
          auto As = ta == Op::NoTrans ? Kokkos::subview(A, ri, rk) : Kokkos::subview(A, rk, ri);
          auto Bs = tb == Op::NoTrans ? Kokkos::subview(B, rk, rj) : Kokkos::subview(B, rj, rk);
          if (k0 > 0) t.team_barrier();
          gemm_entry<Exec>(t, ta, tb, S(alpha), As, Bs, k0 == 0 ? S(beta) : S(1), Cs);
        }
      });
}
}  // namespace detail

/// C (m, n) = alpha op(A) op(B) + beta C for rank-2 views; throws on
/// mismatched shapes.
template <class Exec, class AV, class BV, class CV>
void matmul(const Exec& space, Op ta, Op tb, typename CV::non_const_value_type alpha, const AV& A, const BV& B,
            typename CV::non_const_value_type beta, const CV& C) {
  static_assert(AV::rank == 2 && BV::rank == 2 && CV::rank == 2, "hfisher::kernels::matmul: rank-2 views");
  const long m = C.extent(0), n = C.extent(1);
  const long am = ta == Op::NoTrans ? A.extent(0) : A.extent(1), ak = ta == Op::NoTrans ? A.extent(1) : A.extent(0);
  const long bk = tb == Op::NoTrans ? B.extent(0) : B.extent(1), bn = tb == Op::NoTrans ? B.extent(1) : B.extent(0);
  hfisher::detail::require(am == m && bn == n && ak == bk, "hfisher::kernels::matmul", "op(A) is ", am, "x", ak,
                           ", op(B) is ", bk, "x", bn, ", C is ", m, "x", n);
  detail::matmul_nocheck(space, ta, tb, alpha, A, B, beta, C);
}

}  // namespace kernels
}  // namespace hfisher
