#pragma once
/// \file gemm.hpp
/// \brief Batched GEMM: C_b = alpha op(A_b) op(B_b) + beta C_b for every batch
/// entry b, one launch (KokkosBatched Serial GEMM per entry on host spaces,
/// Team GEMM per entry on devices).

#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>

#include <KokkosBatched_Gemm_Decl.hpp>
#include <hfisher/kernels/impl/batched_tags.hpp>
#include <hfisher/kernels/impl/gemm_serial.hpp>

namespace hfisher {
namespace kernels {
namespace detail {

/// Sizes and strides of C = op(A) op(B): op(A)(i, l) = A[i ai + l al],
/// op(B)(l, j) = B[l bl + j bj].
struct GemmShape {
  int m, n, k, ai, al, bl, bj;
};
template <class AV, class BV, class CV>
KOKKOS_INLINE_FUNCTION GemmShape gemm_shape(Op ta, Op tb, const AV& A, const BV& B, const CV& C) {
  GemmShape g;
  g.m = C.extent(0);
  g.n = C.extent(1);
  g.k = ta == Op::NoTrans ? A.extent(1) : A.extent(0);
  g.ai = ta == Op::NoTrans ? A.stride_0() : A.stride_1();
  g.al = ta == Op::NoTrans ? A.stride_1() : A.stride_0();
  g.bl = tb == Op::NoTrans ? B.stride_0() : B.stride_1();
  g.bj = tb == Op::NoTrans ? B.stride_1() : B.stride_0();
  return g;
}

/// On a host team of several threads: C's rows split into one slice per
/// thread (multiples of 6, the micro-kernel's row block), each slice run by
/// the register-blocked one-thread GEMM. Returns false (and does nothing)
/// when the strides fit no fast form. The caller's team barrier follows, as
/// after any team GEMM.
template <class Member, class AV, class BV, class CV, class S>
KOKKOS_INLINE_FUNCTION bool gemm_team_rows(const Member& member, Op ta, Op tb, S alpha, const AV& A, const BV& B,
                                           S beta, const CV& C) {
  const auto g = gemm_shape(ta, tb, A, B, C);
  const int m = g.m, n = g.n, k = g.k, ai = g.ai, al = g.al, bl = g.bl, bj = g.bj;
  if (!(bj == 1 || (al == 1 && bl == 1))) return false;
  if (m == 0 || n == 0) return true;
  using T = typename CV::non_const_value_type;
  const T* a = A.data();
  const T* b = B.data();
  T* c = C.data();
  const int ci = C.stride_0(), cj = C.stride_1();
  detail::for_each_team_slice(member, m, 6, [&](const int r0, const int r1) {
    detail::gemm_serial_blocked<T>(r1 - r0, n, k, T(alpha), a + long(r0) * ai, ai, al, b, bl, bj, T(beta),
                                   c + long(r0) * ci, ci, cj);
  });
  return true;
}

/// gemm_team_rows for entries of at least host_split_work (m n k) and 6 rows
/// per thread; smaller ones return false and run KokkosBatched's team GEMM.
template <class Member, class AV, class BV, class CV, class S>
KOKKOS_INLINE_FUNCTION bool gemm_team_split(const Member& member, Op ta, Op tb, S alpha, const AV& A, const BV& B,
                                            S beta, const CV& C) {
  const long m = C.extent(0), n = C.extent(1), k = ta == Op::NoTrans ? A.extent(1) : A.extent(0);
  if (m < 6 * member.team_size() || m * n * k < host_split_work) return false;
  return gemm_team_rows(member, ta, tb, alpha, A, B, beta, C);
}

/// C = alpha op(A) op(B) + beta C on one entry, inside a team (no checks).
/// On the host: a wide team splits a large entry into row slices, one
/// thread runs the register-blocked kernel where the strides allow; the rest
/// is KokkosBatched's blocked GEMM in the member's mode (batched_tags.hpp).
template <class Exec, class Member, class AV, class BV, class CV, class S>
KOKKOS_INLINE_FUNCTION void gemm_entry(const Member& member, Op ta, Op tb, S alpha, const AV& A, const BV& B, S beta,
                                       const CV& C) {
  if constexpr (ExecTraits<Exec>::on_host) {
    if (member.team_size() > 1) {
      if (gemm_team_split(member, ta, tb, alpha, A, B, beta, C)) return;
    } else {
      const auto g = gemm_shape(ta, tb, A, B, C);
      if (g.m == 0 || g.n == 0) return;
      if (detail::gemm_serial_blocked<typename CV::non_const_value_type>(g.m, g.n, g.k, alpha, A.data(), g.ai, g.al,
                                                                         B.data(), g.bl, g.bj, beta, C.data(),
                                                                         C.stride_0(), C.stride_1()))
        return;
    }
  }
  using algo = KokkosBatched::Algo::Gemm::Blocked;
  with_mode_tag<Exec>(member, [&](auto mode) {
    with_trans_tag(ta, [&](auto ka) {
      with_trans_tag(tb, [&](auto kb) {
        KokkosBatched::Gemm<Member, decltype(ka), decltype(kb), decltype(mode), algo>::invoke(member, alpha, A, B, beta,
                                                                                              C);
      });
    });
  });
}

/// The launch policy of a batched GEMM: one team per entry, or, for fewer
/// large entries than host threads, teams spanning the threads.
template <class Exec, class AV, class CV>
Kokkos::TeamPolicy<Exec> gemm_policy(const Exec& space, Op ta, const AV& A, const CV& C) {
  const int nb = C.extent(0);
  const long work = long(C.extent(1)) * C.extent(2) * (ta == Op::NoTrans ? A.extent(2) : A.extent(1));
  return nb < Exec::concurrency() && work >= host_split_work ? hfisher::detail::wide_batch_policy(space, nb)
                                                             : hfisher::detail::batch_policy(space, nb);
}

/// Batched GEMM without checks (for use by other kernels).
template <class Exec, class AV, class BV, class CV>
void gemm_nocheck(const Exec& space, Op ta, Op tb, typename CV::non_const_value_type alpha, const AV& A, const BV& B,
                  typename CV::non_const_value_type beta, const CV& C) {
  using S = typename CV::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  if (C.extent(0) == 0) return;
  Kokkos::parallel_for(
      "hfisher::gemm", gemm_policy(space, ta, A, C), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        gemm_entry<Exec>(t, ta, tb, S(alpha), hfisher::detail::entry(A, b), hfisher::detail::entry(B, b), S(beta),
                         hfisher::detail::entry(C, b));
      });
}

/// Batched GEMM that first checks, per entry and in the same launch, that
/// A, B (and C when beta != 0) are finite; entries that are not are left
/// untouched. Returns the first such entry, or -1.
template <class Exec, class AV, class BV, class CV>
long gemm_finite(const Exec& space, Op ta, Op tb, typename CV::non_const_value_type alpha, const AV& A, const BV& B,
                 typename CV::non_const_value_type beta, const CV& C) {
  using S = typename CV::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  const bool read_c = beta != S(0);
  return hfisher::detail::for_each_checked_entry(
             "hfisher::gemm", gemm_policy(space, ta, A, C),
             KOKKOS_LAMBDA(const member& t, const long b) {
               return hfisher::detail::team_all_finite(t, hfisher::detail::entry(A, b)) &&
                      hfisher::detail::team_all_finite(t, hfisher::detail::entry(B, b)) &&
                      (!read_c || hfisher::detail::team_all_finite(t, hfisher::detail::entry(C, b)));
             },
             KOKKOS_LAMBDA(const member& t, const long b) {
               gemm_entry<Exec>(t, ta, tb, S(alpha), hfisher::detail::entry(A, b), hfisher::detail::entry(B, b),
                                S(beta), hfisher::detail::entry(C, b));
               return true;
             })
      .entry;
}

}  // namespace detail

/// Batched GEMM. A: (batch, m, k) or (batch, k, m) when ta == Op::Trans;
/// B: (batch, k, n) or (batch, n, k); C: (batch, m, n), updated in place.
/// Throws hfisher::Error on mismatched sizes, and hfisher::NonFiniteError
/// naming the first batch entry whose A, B (or C when beta != 0) holds a NaN
/// or Inf; the entries with such input are then left unchanged, the others
/// hold their products. The check of an entry runs in the same launch, just
/// before its product, while its data is in cache.
template <class Exec, class AV, class BV, class CV>
void gemm(const Exec& space, Op ta, Op tb, typename CV::non_const_value_type alpha, const AV& A, const BV& B,
          typename CV::non_const_value_type beta, const CV& C) {
  constexpr const char* where = "hfisher::kernels::gemm";
  static_assert(AV::rank == 3 && BV::rank == 3 && CV::rank == 3, "gemm: A, B, C must be rank-3 (batch, rows, cols)");
  const long nb = C.extent(0);
  hfisher::detail::check_batch(A.extent(0), nb, where, "A");
  hfisher::detail::check_batch(B.extent(0), nb, where, "B");
  const long m = C.extent(1), n = C.extent(2);
  const long am = ta == Op::NoTrans ? A.extent(1) : A.extent(2);
  const long ak = ta == Op::NoTrans ? A.extent(2) : A.extent(1);
  const long bk = tb == Op::NoTrans ? B.extent(1) : B.extent(2);
  const long bn = tb == Op::NoTrans ? B.extent(2) : B.extent(1);
  hfisher::detail::require(am == m && bn == n && ak == bk, where, "size mismatch: op(A) is ", am, "x", ak,
                           ", op(B) is ", bk, "x", bn, ", C is ", m, "x", n);
  const long bad = detail::gemm_finite(space, ta, tb, alpha, A, B, beta, C);
  if (bad >= 0) {
    hfisher::detail::check_finite_at(space, A, bad, where, "A");
    hfisher::detail::check_finite_at(space, B, bad, where, "B");
    if (beta != 0) hfisher::detail::check_finite_at(space, C, bad, where, "C");
    throw NonFiniteError(hfisher::detail::concat(where, ": batch entry ", bad, " has a non-finite input"));
  }
}

/// Same, on the views' default execution space.
template <class AV, class BV, class CV>
void gemm(Op ta, Op tb, typename CV::non_const_value_type alpha, const AV& A, const BV& B,
          typename CV::non_const_value_type beta, const CV& C) {
  gemm(typename CV::execution_space(), ta, tb, alpha, A, B, beta, C);
}

}  // namespace kernels
}  // namespace hfisher
