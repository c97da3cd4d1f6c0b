#pragma once
/// \file lowrank.hpp
/// \brief Batched truncation of low-rank products: given A_b = U_b V_b^T
/// (U_b m x r, V_b n x r), recompress to the smallest rank k with
/// |A_b - Uo_b Vo_b^T|_2 <= tol |A_b|_2: thin QRs U = Qu Ru and V = Qv Rv,
/// an SVD of the small core Ru Rv^T = W S Z^T, and Uo = Qu W_k S_k,
/// Vo = Qv Z_k. The building block of H-matrix compression and of sums of
/// low-rank terms. Never forms A.

#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/qr.hpp>
#include <hfisher/kernels/svd.hpp>

namespace hfisher {
namespace kernels {

namespace detail {

/// truncate_lowrank without its checks, for callers that checked (or made)
/// U and V finite and sized Uo and Vo themselves.
template <class Exec, class UV, class VV, class UOV, class VOV, class RV, class TV, class CV>
void truncate_lowrank_nocheck(const Exec& space, const UV& U, const VV& V, double tol, const UOV& Uo, const VOV& Vo,
                              const RV& rank, const TV& tail, const CV& capped) {
  const long nb = U.extent(0), m = U.extent(1), r = U.extent(2), n = V.extent(1), kmax = Uo.extent(2);
  if (nb == 0) return;
  using T = typename UOV::non_const_value_type;
  const long ku = m < r ? m : r, kv = n < r ? n : r, kc = ku < kv ? ku : kv;
  // every entry of the factors and the core is written below before it is read
  const auto uninit = [&](const char* label) {
    return Kokkos::view_alloc(space, Kokkos::WithoutInitializing, std::string(label));
  };
  // Where U and V have one shape they are factored as one batch of 2 nb: one
  // launch for both QRs and both Q's, and a level with a single block keeps
  // two cores busy instead of one
  using M = BatchMatrix<T, Exec>;
  const bool stack = m == n;
  const long nq = stack ? 2 * nb : nb;
  M Qs(uninit("hfisher::trunc::Q"), nq, m, ku), Rs(uninit("hfisher::trunc::R"), nq, ku, r);
  M Qu(Qs.data(), nb, m, ku), Ru(Rs.data(), nb, ku, r), Qv, Rv;
  if (stack) {
    M Wuv(uninit("hfisher::qr_thin::W"), nq, m, r);
    Kokkos::deep_copy(space, M(Wuv.data(), nb, m, r), U);
    Kokkos::deep_copy(space, M(Wuv.data() + nb * m * r, nb, m, r), V);
    qr_thin_inplace(space, Wuv, Qs, Rs);
    Qv = M(Qs.data() + nb * m * ku, nb, n, kv);
    Rv = M(Rs.data() + nb * ku * r, nb, kv, r);
  } else {
    Qv = M(uninit("hfisher::trunc::Qv"), nb, n, kv);
    Rv = M(uninit("hfisher::trunc::Rv"), nb, kv, r);
    qr_thin_copy(space, U, Qu, Ru);
    qr_thin_copy(space, V, Qv, Rv);
  }
  BatchMatrix<T, Exec> core(uninit("hfisher::trunc::core"), nb, ku, kv);
  detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, T(1), Ru, Rv, T(0), core);
  BatchMatrix<T, Exec> W(Kokkos::view_alloc(space, "hfisher::trunc::W"), nb, ku, kc);
  BatchVector<T, Exec> S(Kokkos::view_alloc(space, "hfisher::trunc::S"), nb, kc);
  BatchMatrix<T, Exec> Z(Kokkos::view_alloc(space, "hfisher::trunc::Z"), nb, kv, kc);
  svd(space, core, W, S, Z);
  const auto cols = Kokkos::make_pair(0L, kmax);
  auto Wk = Kokkos::subview(W, Kokkos::ALL(), Kokkos::ALL(), cols);
  auto Zk = Kokkos::subview(Z, Kokkos::ALL(), Kokkos::ALL(), cols);
  const T ttol = T(tol);
  Kokkos::parallel_for(
      "hfisher::trunc::rank", Kokkos::RangePolicy<Exec>(space, 0, nb), KOKKOS_LAMBDA(const int b) {
        int k = 0;
        while (k < kmax && S(b, k) > ttol * S(b, 0)) ++k;
        rank(b) = k;
        if (tail.extent(0) > 0) tail(b) = k < kc ? S(b, k) : T(0);
        if (capped.extent(0) > 0) capped(b) = (k == kmax && k < kc && S(b, k) > ttol * S(b, 0)) ? 1 : 0;
        for (int j = 0; j < kmax; ++j) {
          const T s = j < k ? S(b, j) : T(0);
          for (int i = 0; i < ku; ++i) W(b, i, j) *= s;
          if (j >= k)
            for (int i = 0; i < kv; ++i) Z(b, i, j) = T(0);
        }
      });
  detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, T(1), Qu, Wk, T(0), Uo);
  detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, T(1), Qv, Zk, T(0), Vo);
}

}  // namespace detail

/// U: (batch, m, r), V: (batch, n, r); Uo: (batch, m, max_rank),
/// Vo: (batch, n, max_rank), 1 <= max_rank <= min(m, n, r); rank: (batch) int
/// (singular values > tol * largest, at most max_rank); columns beyond the
/// rank are zero (Uo carries the singular values, Vo is orthonormal).
/// With `tail` (batch): also the largest discarded singular value
/// sigma_{rank+1} (0 when nothing was discarded), i.e. |U V^T - Uo Vo^T|_2.
/// With `capped` (batch int): 1 where max_rank stopped the entry short of
/// tol (sigma_{max_rank+1} > tol * sigma_1), else 0.
template <class Exec, class UV, class VV, class UOV, class VOV, class RV, class TV, class CV>
void truncate_lowrank(const Exec& space, const UV& U, const VV& V, double tol, const UOV& Uo, const VOV& Vo,
                      const RV& rank, const TV& tail, const CV& capped) {
  constexpr const char* where = "hfisher::kernels::truncate_lowrank";
  static_assert(UV::rank == 3 && VV::rank == 3 && UOV::rank == 3 && VOV::rank == 3 && RV::rank == 1,
                "truncate_lowrank: argument ranks");
  const long nb = U.extent(0), m = U.extent(1), r = U.extent(2), n = V.extent(1), kmax = Uo.extent(2);
  hfisher::detail::check_tol(tol, where);
  hfisher::detail::check_batch(V.extent(0), nb, where, "V");
  hfisher::detail::check_extent(V.extent(2), r, where, "V", "columns (the rank of U V^T)");
  hfisher::detail::check_batch(Uo.extent(0), nb, where, "Uo");
  hfisher::detail::check_extent(Uo.extent(1), m, where, "Uo", "rows");
  hfisher::detail::check_batch(Vo.extent(0), nb, where, "Vo");
  hfisher::detail::check_extent(Vo.extent(1), n, where, "Vo", "rows");
  hfisher::detail::check_extent(Vo.extent(2), kmax, where, "Vo", "columns");
  hfisher::detail::check_batch(rank.extent(0), nb, where, "rank");
  if (tail.extent(0) > 0) hfisher::detail::check_batch(tail.extent(0), nb, where, "tail");
  if (capped.extent(0) > 0) hfisher::detail::check_batch(capped.extent(0), nb, where, "capped");
  const long lim = m < n ? (m < r ? m : r) : (n < r ? n : r);
  hfisher::detail::require(kmax >= 1 && kmax <= lim, where, "max_rank (columns of Uo) = ", kmax,
                           " must lie in [1, min(m, n, r) = ", lim, "]");
  hfisher::detail::check_finite3(space, U, where, "U");
  hfisher::detail::check_finite3(space, V, where, "V");
  detail::truncate_lowrank_nocheck(space, U, V, tol, Uo, Vo, rank, tail, capped);
}

template <class Exec, class UV, class VV, class UOV, class VOV, class RV, class TV>
void truncate_lowrank(const Exec& space, const UV& U, const VV& V, double tol, const UOV& Uo, const VOV& Vo,
                      const RV& rank, const TV& tail) {
  truncate_lowrank(space, U, V, tol, Uo, Vo, rank, tail, Kokkos::View<int*, typename UOV::memory_space>());
}

template <class Exec, class UV, class VV, class UOV, class VOV, class RV>
void truncate_lowrank(const Exec& space, const UV& U, const VV& V, double tol, const UOV& Uo, const VOV& Vo,
                      const RV& rank) {
  truncate_lowrank(space, U, V, tol, Uo, Vo, rank,
                   Kokkos::View<typename UOV::non_const_value_type*, typename UOV::memory_space>());
}

}  // namespace kernels
}  // namespace hfisher
