#pragma once
/// \file trsm.hpp
/// \brief Batched triangular solve with multiple right-hand sides:
/// op(A_b) X_b = alpha B_b (Side::Left) or X_b op(A_b) = alpha B_b
/// (Side::Right), X overwriting B. On the host, one-thread teams with B
/// contiguous along its rows run our blocked serial solves (substitution on
/// panels, the rest at GEMM speed), left and right. Elsewhere right-side
/// solves are run as left-side KokkosBatched TRSMs on the transposed view of
/// B (X op(A) = B  <=>  op(A)^T X^T = B^T), so all eight side/uplo/op
/// combinations share the four left-side KokkosBatched kernels.

#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/impl/batched_tags.hpp>
#include <hfisher/kernels/impl/gemm_serial.hpp>

#include <KokkosBatched_Trsm_Decl.hpp>

namespace hfisher {
namespace kernels {
namespace detail {

/// Left-side KokkosBatched TRSM op(A) X = alpha B on one entry, in the
/// member's mode (batched_tags.hpp).
template <class Exec, class Member, class AV, class BV, class S>
KOKKOS_INLINE_FUNCTION void trsm_left_kb(const Member& member, Uplo uplo, Op op, Diag diag, S alpha, const AV& A,
                                         const BV& B) {
  // Unblocked: Kokkos Kernels 3.4.1's Blocked serial TRSM returns wrong
  // results for upper (backward) solves once both sides of B exceed about
  // 64 (unit_tests/kernels/test_trsm.cpp, case 70 x 66, caught it)
  using algo = KokkosBatched::Algo::Trsm::Unblocked;
  using left = KokkosBatched::Side::Left;
  with_mode_tag<Exec>(member, [&](auto mode) {
    with_uplo_tag(uplo, [&](auto ku) {
      with_trans_tag(op, [&](auto kt) {
        with_diag_tag(diag, [&](auto kd) {
          KokkosBatched::Trsm<Member, left, decltype(ku), decltype(kt), decltype(kd), decltype(mode), algo>::invoke(
              member, alpha, A, B);
        });
      });
    });
  });
}

/// Left-side solve op(A) X = alpha B by one thread, blocked: panels of NBK
/// rows are solved by substitution (row axpys, vectorized along the
/// right-hand sides) and the rest of B is updated by the register-blocked
/// GEMM, so most of the work runs at GEMM speed (KokkosBatched 3.4.1's serial
/// TRSM is unblocked; its blocked variant is wrong for upper solves).
/// Needs B contiguous along its columns (stride_1 == 1).
template <class T>
KOKKOS_INLINE_FUNCTION void trsm_left_serial_blocked(bool lower, bool trans, bool unit, T alpha, int m, int n,
                                                     const T* A, int s0, int s1, T* B, int b0) {
  constexpr int NBK = 32;
  // op(A)(i, l) = A[i * ai + l * al]; op(A) lower <=> forward substitution
  const int ai = trans ? s1 : s0, al = trans ? s0 : s1;
  const bool forward = lower != trans;
  if (alpha != T(1))
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) B[long(i) * b0 + j] *= alpha;
  // B(i, :) = (B(i, :) - sum over l in [l0, l1) of op(A)(i, l) B(l, :)) / op(A)(i, i)
  auto row = [&](int i, int l0, int l1) {
    T* bi = B + long(i) * b0;
    for (int l = l0; l < l1; ++l) {
      const T a = A[long(i) * ai + long(l) * al];
      const T* bl = B + long(l) * b0;
      for (int j = 0; j < n; ++j) bi[j] -= a * bl[j];
    }
    if (!unit) {
      const T d = T(1) / A[long(i) * ai + long(i) * al];
      for (int j = 0; j < n; ++j) bi[j] *= d;
    }
  };
  auto solve_panel = [&](int i0, int i1) {
    if (forward)
      for (int i = i0; i < i1; ++i) row(i, i0, i);
    else
      for (int i = i1 - 1; i >= i0; --i) row(i, i + 1, i1);
  };
  if (forward) {
    for (int i0 = 0; i0 < m; i0 += NBK) {
      const int i1 = i0 + NBK < m ? i0 + NBK : m;
      solve_panel(i0, i1);
      if (i1 < m)  // B(i1:, :) -= op(A)(i1:, i0:i1) X(i0:i1, :)
        detail::gemm_serial_blocked<T>(m - i1, n, i1 - i0, T(-1), A + long(i1) * ai + long(i0) * al, ai, al,
                                       B + long(i0) * b0, b0, 1, T(1), B + long(i1) * b0, b0, 1);
    }
  } else {
    for (int i1 = m; i1 > 0; i1 -= NBK) {
      const int i0 = i1 - NBK > 0 ? i1 - NBK : 0;
      solve_panel(i0, i1);
      if (i0 > 0)  // B(:i0, :) -= op(A)(:i0, i0:i1) X(i0:i1, :)
        detail::gemm_serial_blocked<T>(i0, n, i1 - i0, T(-1), A + long(i0) * al, ai, al, B + long(i0) * b0, b0, 1, T(1),
                                       B, b0, 1);
    }
  }
}

/// Substitution of columns [j0, j1) (at most W) of R rows of B (row stride
/// b0) at once, for trsm_right_serial_blocked. Each row's sum is a chain of
/// dependent multiply-adds; the R rows are copied into a tile, column-major,
/// so the R chains run side by side in one vector. Each row's operations,
/// and so its result, are those of the row-by-row substitution.
template <class T, int R, int W>
KOKKOS_INLINE_FUNCTION void trsm_right_panel_rows(bool forward, bool unit, int j0, int j1, const T* A, int cl, int cj,
                                                  T* B, int b0) {
  T tile[W * R];  // tile[j * R + q] = B(q, j0 + j)
  const int w = j1 - j0;
  for (int q = 0; q < R; ++q)
    for (int j = 0; j < w; ++j) tile[j * R + q] = B[long(q) * b0 + j0 + j];
  const T* Ap = A + long(j0) * cl + long(j0) * cj;
  auto column = [&](int j, int l0, int l1) {
#if HFISHER_GEMM_AVX2
    // the same operations in explicit vectors, R / X::W independent chains
    // (compilers vectorize the sum over l instead, in order, with a shuffle
    // per term)
    if constexpr (R % Avx2<T>::W == 0) {
      using X = Avx2<T>;
      constexpr int NV = R / X::W;
      typename X::V s[NV];
      for (int v = 0; v < NV; ++v) s[v] = X::load(tile + j * R + v * X::W);
      for (int l = l0; l < l1; ++l) {
        const typename X::V a = X::set1(-Ap[long(l) * cl + long(j) * cj]);
        for (int v = 0; v < NV; ++v) s[v] = X::fma(a, X::load(tile + l * R + v * X::W), s[v]);
      }
      const typename X::V d = X::set1(Ap[long(j) * cl + long(j) * cj]);
      for (int v = 0; v < NV; ++v) X::store(tile + j * R + v * X::W, unit ? s[v] : X::div(s[v], d));
      return;
    }
#endif
    T s[R];
    for (int q = 0; q < R; ++q) s[q] = tile[j * R + q];
    for (int l = l0; l < l1; ++l) {
      const T a = Ap[long(l) * cl + long(j) * cj];
      for (int q = 0; q < R; ++q) s[q] -= tile[l * R + q] * a;
    }
    const T d = Ap[long(j) * cl + long(j) * cj];
    for (int q = 0; q < R; ++q) tile[j * R + q] = unit ? s[q] : s[q] / d;
  };
  if (forward)
    for (int j = 0; j < w; ++j) column(j, 0, j);
  else
    for (int j = w - 1; j >= 0; --j) column(j, j + 1, w);
  for (int q = 0; q < R; ++q)
    for (int j = 0; j < w; ++j) B[long(q) * b0 + j0 + j] = tile[j * R + q];
}

/// Right-side solve X op(A) = alpha B by one thread, blocked like
/// trsm_left_serial_blocked: panels of NBK columns are solved by
/// substitution, up to four vectors' width of rows at a time, and the
/// columns not yet solved are updated by the register-blocked GEMM. Needs B contiguous
/// along its columns (stride_1 == 1); op(A) as a full (n x n) operator of
/// strides s0, s1.
template <class T>
KOKKOS_INLINE_FUNCTION void trsm_right_serial_blocked(bool lower, bool trans, bool unit, T alpha, int m, int n,
                                                      const T* A, int s0, int s1, T* B, int b0) {
#if HFISHER_GEMM_AVX2
  constexpr int NBK = 32, R = Avx2<T>::W;
#else
  constexpr int NBK = 32, R = 8;
#endif
  constexpr int R4 = 4 * R;  // four vectors of rows: four independent chains
  // op(A)(l, j) = A[l * cl + j * cj]; X op(A) = B runs forward over the
  // columns when op(A) is upper triangular
  const int cl = trans ? s1 : s0, cj = trans ? s0 : s1;
  const bool forward = lower == trans;
  if (alpha != T(1))
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) B[long(i) * b0 + j] *= alpha;
  // columns [j0, j1) of every row, by substitution within the panel
  auto solve_panel = [&](int j0, int j1) {
    int i = 0;
    for (; i + R4 <= m; i += R4)
      trsm_right_panel_rows<T, R4, NBK>(forward, unit, j0, j1, A, cl, cj, B + long(i) * b0, b0);
    for (; i + R <= m; i += R) trsm_right_panel_rows<T, R, NBK>(forward, unit, j0, j1, A, cl, cj, B + long(i) * b0, b0);
    for (; i < m; ++i) trsm_right_panel_rows<T, 1, NBK>(forward, unit, j0, j1, A, cl, cj, B + long(i) * b0, b0);
  };
  // B(:, c0:c1) -= X(:, j0:j1) op(A)(j0:j1, c0:c1)
  auto update = [&](int j0, int j1, int c0, int c1) {
    if (c1 <= c0) return;
    const T* Xp = B + j0;
    const T* Ap = A + long(j0) * cl + long(c0) * cj;
    if (!detail::gemm_serial_blocked<T>(m, c1 - c0, j1 - j0, T(-1), Xp, b0, 1, Ap, cl, cj, T(1), B + c0, b0, 1)) {
      for (int i = 0; i < m; ++i)
        for (int c = c0; c < c1; ++c) {
          T s = T(0);
          for (int l = j0; l < j1; ++l) s += B[long(i) * b0 + l] * A[long(l) * cl + long(c) * cj];
          B[long(i) * b0 + c] -= s;
        }
    }
  };
  if (forward) {
    for (int j0 = 0; j0 < n; j0 += NBK) {
      const int j1 = j0 + NBK < n ? j0 + NBK : n;
      solve_panel(j0, j1);
      update(j0, j1, j1, n);
    }
  } else {
    for (int j1 = n; j1 > 0; j1 -= NBK) {
      const int j0 = j1 - NBK > 0 ? j1 - NBK : 0;
      solve_panel(j0, j1);
      update(j0, j1, 0, j0);
    }
  }
}

/// Right-side solve X op(A) = alpha B on a host team of several threads:
/// one slice of B's rows per thread (the rows of X are independent), each by
/// trsm_right_serial_blocked. Needs B contiguous along its rows. The
/// caller's team barrier follows.
template <class Member, class AV, class BV, class S>
KOKKOS_INLINE_FUNCTION void trsm_right_team_rows(const Member& member, Uplo uplo, Op op, Diag diag, S alpha,
                                                 const AV& A, const BV& B) {
  using T = typename BV::non_const_value_type;
  for_each_team_slice(member, int(B.extent(0)), 6, [&](const int r0, const int r1) {
    trsm_right_serial_blocked<T>(uplo == Uplo::Lower, op != Op::NoTrans, diag == Diag::Unit, T(alpha), r1 - r0,
                                 int(B.extent(1)), A.data(), int(A.stride_0()), int(A.stride_1()),
                                 B.data() + long(r0) * B.stride_0(), int(B.stride_0()));
  });
}

/// Left-side solve op(A) X = alpha B on a host team of several threads: one
/// slice of B's columns per thread (the columns of X are independent), each
/// by trsm_left_serial_blocked. Needs B contiguous along its rows. The
/// caller's team barrier follows.
template <class Member, class AV, class BV, class S>
KOKKOS_INLINE_FUNCTION void trsm_left_team_columns(const Member& member, Uplo uplo, Op op, Diag diag, S alpha,
                                                   const AV& A, const BV& B) {
  using T = typename BV::non_const_value_type;
  for_each_team_slice(member, int(B.extent(1)), 8, [&](const int c0, const int c1) {
    trsm_left_serial_blocked<T>(uplo == Uplo::Lower, op != Op::NoTrans, diag == Diag::Unit, T(alpha), int(B.extent(0)),
                                c1 - c0, A.data(), int(A.stride_0()), int(A.stride_1()), B.data() + c0,
                                int(B.stride_0()));
  });
}

/// Left-side solve op(A) X = alpha B on one entry (no checks).
template <class Exec, class Member, class AV, class BV, class S>
KOKKOS_INLINE_FUNCTION void trsm_left_entry(const Member& member, Uplo uplo, Op op, Diag diag, S alpha, const AV& A,
                                            const BV& B) {
  if constexpr (ExecTraits<Exec>::on_host) {
    // a host team and many right-hand sides: one slice of B's columns per
    // thread (the columns of X are independent)
    if (member.team_size() > 1 && B.stride_1() == 1 && int(B.extent(1)) >= 8 * member.team_size() &&
        long(B.extent(0)) * B.extent(0) * B.extent(1) >= host_split_work) {
      trsm_left_team_columns(member, uplo, op, diag, alpha, A, B);
      return;
    }
    if (member.team_size() == 1 && (B.stride_1() == 1 || B.extent(1) <= 1) && B.extent(0) > 0) {
      trsm_left_serial_blocked<typename BV::non_const_value_type>(
          uplo == Uplo::Lower, op != Op::NoTrans, diag == Diag::Unit, alpha, int(B.extent(0)), int(B.extent(1)),
          A.data(), int(A.stride_0()), int(A.stride_1()), B.data(), int(B.stride_0()));
      return;
    }
  }
  trsm_left_kb<Exec>(member, uplo, op, diag, alpha, A, B);
}

/// Any side, one entry (no checks).
template <class Exec, class Member, class AV, class BV, class S>
KOKKOS_INLINE_FUNCTION void trsm_entry(const Member& member, Side side, Uplo uplo, Op op, Diag diag, S alpha,
                                       const AV& A, const BV& B) {
  if (side == Side::Left) {
    trsm_left_entry<Exec>(member, uplo, op, diag, alpha, A, B);
  } else {
    if constexpr (ExecTraits<Exec>::on_host) {
      if (member.team_size() > 1 && B.stride_1() == 1 && int(B.extent(0)) >= 6 * member.team_size() &&
          long(B.extent(0)) * B.extent(1) * B.extent(1) >= host_split_work) {
        trsm_right_team_rows(member, uplo, op, diag, alpha, A, B);
        return;
      }
      if (member.team_size() == 1 && (B.stride_1() == 1 || B.extent(1) <= 1) && B.extent(0) > 0) {
        trsm_right_serial_blocked<typename BV::non_const_value_type>(
            uplo == Uplo::Lower, op != Op::NoTrans, diag == Diag::Unit, alpha, int(B.extent(0)), int(B.extent(1)),
            A.data(), int(A.stride_0()), int(A.stride_1()), B.data(), int(B.stride_0()));
        return;
      }
    }
    using T = typename BV::value_type;
    auto Bt = hfisher::detail::strided<typename Exec::memory_space, T>(B.data(), int(B.extent(1)), int(B.extent(0)),
                                                                       int(B.stride_1()), int(B.stride_0()));
    trsm_left_entry<Exec>(member, uplo, op == Op::NoTrans ? Op::Trans : Op::NoTrans, diag, alpha, A, Bt);
  }
}

/// The launch policy of a batched TRSM: one team per entry, or, for fewer
/// large entries than host threads, teams spanning the threads.
template <class Exec, class BV>
Kokkos::TeamPolicy<Exec> trsm_policy(const Exec& space, Side side, const BV& B) {
  const int nb = B.extent(0);
  const long k = side == Side::Left ? B.extent(1) : B.extent(2);
  const long work = long(B.extent(1)) * B.extent(2) * k;
  return nb < Exec::concurrency() && work >= host_split_work ? hfisher::detail::wide_batch_policy(space, nb)
                                                             : hfisher::detail::batch_policy(space, nb);
}

template <class Exec, class AV, class BV>
void trsm_nocheck(const Exec& space, Side side, Uplo uplo, Op op, Diag diag, typename BV::non_const_value_type alpha,
                  const AV& A, const BV& B) {
  using S = typename BV::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  if (B.extent(0) == 0) return;
  Kokkos::parallel_for(
      "hfisher::trsm", trsm_policy(space, side, B), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        trsm_entry<Exec>(t, side, uplo, op, diag, S(alpha), hfisher::detail::entry(A, b), hfisher::detail::entry(B, b));
      });
}

/// Index + 1 of the first zero on the diagonal of a (k x k), or 0.
template <class View2>
KOKKOS_INLINE_FUNCTION int first_zero_diagonal(const View2& a) {
  const int k = a.extent(0);
  for (int i = 0; i < k; ++i)
    if (a(i, i) == 0) return i + 1;
  return 0;
}

/// trsm_nocheck that first checks, per entry and in the same launch, that A
/// and B are finite and (non-unit diagonal) that A's diagonal has no zero;
/// entries that fail are left untouched. Returns the first such entry, or -1.
template <class Exec, class AV, class BV>
long trsm_checked(const Exec& space, Side side, Uplo uplo, Op op, Diag diag, typename BV::non_const_value_type alpha,
                  const AV& A, const BV& B) {
  using S = typename BV::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  const bool unit = diag == Diag::Unit;
  return hfisher::detail::for_each_checked_entry(
             "hfisher::trsm", trsm_policy(space, side, B),
             KOKKOS_LAMBDA(const member& t, const long b) {
               const auto Ab = hfisher::detail::entry(A, b);
               return hfisher::detail::team_all_finite(t, Ab) &&
                      hfisher::detail::team_all_finite(t, hfisher::detail::entry(B, b)) &&
                      (unit || first_zero_diagonal(Ab) == 0);
             },
             KOKKOS_LAMBDA(const member& t, const long b) {
               trsm_entry<Exec>(t, side, uplo, op, diag, S(alpha), hfisher::detail::entry(A, b),
                                hfisher::detail::entry(B, b));
               return true;
             })
      .entry;
}

}  // namespace detail

/// Batched triangular solve. A: (batch, k, k) triangular (only the `uplo`
/// triangle is read), B: (batch, m, n) with k = m for Side::Left and k = n
/// for Side::Right; B is overwritten by X. A zero diagonal entry (non-unit)
/// is reported as an error naming the batch entry and row, a NaN or Inf in A
/// or B as hfisher::NonFiniteError; the entry named, and any other entry
/// that fails these checks, is left unchanged, the others are solved.
template <class Exec, class AV, class BV>
void trsm(const Exec& space, Side side, Uplo uplo, Op op, Diag diag, typename BV::non_const_value_type alpha,
          const AV& A, const BV& B) {
  constexpr const char* where = "hfisher::kernels::trsm";
  static_assert(AV::rank == 3 && BV::rank == 3, "trsm: A and B must be rank-3 (batch, rows, cols)");
  const long nb = B.extent(0);
  hfisher::detail::check_batch(A.extent(0), nb, where, "A");
  hfisher::detail::require(A.extent(1) == A.extent(2), where, "A must be square per entry, got ", A.extent(1), "x",
                           A.extent(2));
  const long k = side == Side::Left ? B.extent(1) : B.extent(2);
  hfisher::detail::require(long(A.extent(1)) == k, where, "size mismatch: A is ", A.extent(1), "x", A.extent(2),
                           ", B is ", B.extent(1), "x", B.extent(2), side == Side::Left ? " (left" : " (right",
                           " side)");
  const long bad = detail::trsm_checked(space, side, uplo, op, diag, alpha, A, B);
  if (bad >= 0) {
    hfisher::detail::check_finite_at(space, A, bad, where, "A");
    hfisher::detail::check_finite_at(space, B, bad, where, "B");
    const auto Ab = Kokkos::create_mirror_view_and_copy(
        Kokkos::HostSpace(), Kokkos::subview(A, Kokkos::make_pair(bad, bad + 1), Kokkos::ALL, Kokkos::ALL));
    throw Error(hfisher::detail::concat(
        where, ": A is singular at batch entry ", bad, ": diagonal entry ",
        detail::first_zero_diagonal(Kokkos::subview(Ab, 0, Kokkos::ALL, Kokkos::ALL)) - 1, " is zero"));
  }
}

template <class AV, class BV>
void trsm(Side side, Uplo uplo, Op op, Diag diag, typename BV::non_const_value_type alpha, const AV& A, const BV& B) {
  trsm(typename BV::execution_space(), side, uplo, op, diag, alpha, A, B);
}

}  // namespace kernels
}  // namespace hfisher
