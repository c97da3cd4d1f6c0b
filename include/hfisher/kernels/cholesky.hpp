#pragma once
/// \file cholesky.hpp
/// \brief Batched Cholesky factorization A_b = L_b L_b^T (lower), solve and
/// log-determinant. Blocked left-looking: per panel of 32 columns one
/// KokkosBatched GEMM update, an unblocked team Cholesky of the diagonal
/// block and one KokkosBatched TRSM; one launch for the whole batch.

#include <hfisher/core/math.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/trsm.hpp>

namespace hfisher {
namespace kernels {
namespace detail {

constexpr int cholesky_panel = 32;

/// Unblocked Cholesky of the n x n block at A (strides s0, s1), in a team;
/// the strict upper triangle receives L^T (workspace).
/// Returns 0, or k+1 when pivot k is not positive (its value in *bad).
template <class Member, class T>
KOKKOS_INLINE_FUNCTION int potrf_unblocked(const Member& t, int n, T* A, int s0, int s1, T* bad) {
  for (int k = 0; k < n; ++k) {
    const T d = A[k * s0 + k * s1];
    if (!(d > T(0)) || !math::isfinite(d)) {
      *bad = d;
      return k + 1;
    }
    const T l = math::sqrt(d);
    t.team_barrier();
    // scale column k and mirror it into row k (the upper triangle is
    // workspace), so the update below reads row k contiguously
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, k, n), [&](const int i) {
      const T v = i == k ? l : A[i * s0 + k * s1] / l;
      A[i * s0 + k * s1] = v;
      A[k * s0 + i * s1] = v;
    });
    t.team_barrier();
    const T* rowk = A + k * s0;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, k + 1, n), [&](const int i) {
      T* rowi = A + i * s0;
      const T aik = rowi[k * s1];
      for (int j = k + 1; j <= i; ++j) rowi[j * s1] -= aik * rowk[j * s1];
    });
    t.team_barrier();
  }
  return 0;
}

/// potrf_unblocked by one thread, with no team barriers per column: the
/// diagonal blocks of potrf_entry_host_team and of one-thread host teams.
/// Rows = true: contiguous rows (s1 == 1), so the update loops vectorize.
template <class T, bool Rows>
KOKKOS_INLINE_FUNCTION int potrf_unblocked_serial_impl(int n, T* A, int s0, int s1_, T* bad) {
  const int s1 = Rows ? 1 : s1_;
  for (int k = 0; k < n; ++k) {
    const T d = A[k * s0 + k * s1];
    if (!(d > T(0)) || !math::isfinite(d)) {
      *bad = d;
      return k + 1;
    }
    const T l = math::sqrt(d), rl = T(1) / l;
    T* rowk = A + k * s0;
    rowk[k * s1] = l;
    for (int i = k + 1; i < n; ++i) {
      const T v = A[i * s0 + k * s1] * rl;
      A[i * s0 + k * s1] = v;
      rowk[i * s1] = v;
    }
    for (int i = k + 1; i < n; ++i) {
      T* rowi = A + i * s0;
      const T aik = rowi[k * s1];
      for (int j = k + 1; j <= i; ++j) rowi[j * s1] -= aik * rowk[j * s1];
    }
  }
  return 0;
}

template <class T>
KOKKOS_INLINE_FUNCTION int potrf_unblocked_serial(int n, T* A, int s0, int s1, T* bad) {
  return s1 == 1 ? potrf_unblocked_serial_impl<T, true>(n, A, s0, 1, bad)
                 : potrf_unblocked_serial_impl<T, false>(n, A, s0, s1, bad);
}

/// Blocked left-looking Cholesky of one large entry on a host team of
/// several threads (rows contiguous, s1 == 1): the panel's GEMM update and
/// its triangular solve split into one slice of rows per thread (the
/// one-thread register-blocked kernels), the diagonal block is factored by
/// one thread. Same layout contract as potrf_entry.
template <class Exec, class Member, class AV>
KOKKOS_INLINE_FUNCTION int potrf_entry_host_team(const Member& t, const AV& A, typename AV::non_const_value_type* bad) {
  using T = typename AV::non_const_value_type;
  using mem = typename Exec::memory_space;
  const int n = A.extent(0);
  const int s0 = A.stride_0(), s1 = A.stride_1();
  const int panel = 2 * cholesky_panel;
  T* a = A.data();
  for (int j0 = 0; j0 < n; j0 += panel) {
    const int jb = n - j0 < panel ? n - j0 : panel;
    if (j0 > 0) {  // C -= L1 L2^T, L2^T read from the mirrored upper triangle
      auto C = hfisher::detail::strided<mem>(a + long(j0) * s0 + j0 * s1, n - j0, jb, s0, s1);
      auto L1 = hfisher::detail::strided<mem>(a + long(j0) * s0, n - j0, j0, s0, s1);
      auto L2t = hfisher::detail::strided<mem>(a + j0 * s1, j0, jb, s0, s1);
      gemm_team_rows(t, Op::NoTrans, Op::NoTrans, T(-1), L1, L2t, T(1), C);
      t.team_barrier();
    }
    int info = 0;
    Kokkos::single(
        Kokkos::PerTeam(t),
        [&](int& r) {
          T b = T(0);
          r = potrf_unblocked_serial(jb, a + long(j0) * s0 + j0 * s1, s0, s1, &b);
        },
        info);
    t.team_barrier();
    if (info != 0) {  // the failing pivot was left in place
      *bad = a[long(j0 + info - 1) * (s0 + s1)];
      return j0 + info;
    }
    if (j0 + jb < n) {
      auto D = hfisher::detail::strided<mem>(a + long(j0) * s0 + j0 * s1, jb, jb, s0, s1);
      auto P = hfisher::detail::strided<mem>(a + long(j0 + jb) * s0 + j0 * s1, n - j0 - jb, jb, s0, s1);
      trsm_right_team_rows(t, Uplo::Lower, Op::Trans, Diag::NonUnit, T(1), D, P);
      t.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j0, j0 + jb), [&](const int l) {
        for (int i = l + 1; i < n; ++i) a[long(l) * s0 + i * s1] = a[long(i) * s0 + l * s1];
      });
      t.team_barrier();
    }
  }
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int i) {
    for (int j = i + 1; j < n; ++j) a[long(i) * s0 + j * s1] = T(0);
  });
  t.team_barrier();
  return 0;
}

/// Blocked Cholesky of one entry (lower). The strict upper triangle is used
/// as workspace (it holds L^T of finished panels) and zeroed at the end.
template <class Exec, class Member, class AV>
KOKKOS_INLINE_FUNCTION int potrf_entry(const Member& t, const AV& A, typename AV::non_const_value_type* bad) {
  using T = typename AV::non_const_value_type;
  using mem = typename Exec::memory_space;
  const int n = A.extent(0);
  const int s0 = A.stride_0(), s1 = A.stride_1();
  if constexpr (ExecTraits<Exec>::on_host) {
    // large entries on host teams of several threads; smaller ones run the
    // team code below, as on the device (the `.team2` tests exercise it)
    if (t.team_size() > 1 && s1 == 1 && long(n) * n * n >= host_split_work)
      return potrf_entry_host_team<Exec>(t, A, bad);
  }
  T* a = A.data();
  for (int j0 = 0; j0 < n; j0 += cholesky_panel) {
    const int jb = n - j0 < cholesky_panel ? n - j0 : cholesky_panel;
    if (j0 > 0) {
      // C -= L1 L2^T, with L2^T read from the upper triangle, where the
      // finished panels were mirrored (row-contiguous: the fast GEMM form)
      auto C = hfisher::detail::strided<mem>(a + j0 * s0 + j0 * s1, n - j0, jb, s0, s1);
      auto L1 = hfisher::detail::strided<mem>(a + j0 * s0, n - j0, j0, s0, s1);
      auto L2t = hfisher::detail::strided<mem>(a + j0 * s1, j0, jb, s0, s1);
      gemm_entry<Exec>(t, Op::NoTrans, Op::NoTrans, T(-1), L1, L2t, T(1), C);
      t.team_barrier();
    }
    // one-thread host teams: the diagonal block without team constructs
    const int info = ExecTraits<Exec>::on_host && t.team_size() == 1
                         ? potrf_unblocked_serial(jb, a + j0 * s0 + j0 * s1, s0, s1, bad)
                         : potrf_unblocked(t, jb, a + j0 * s0 + j0 * s1, s0, s1, bad);
    if (info != 0) return j0 + info;
    if (j0 + jb < n) {
      auto D = hfisher::detail::strided<mem>(a + j0 * s0 + j0 * s1, jb, jb, s0, s1);
      auto P = hfisher::detail::strided<mem>(a + (j0 + jb) * s0 + j0 * s1, n - j0 - jb, jb, s0, s1);
      trsm_entry<Exec>(t, Side::Right, Uplo::Lower, Op::Trans, Diag::NonUnit, T(1), D, P);
      t.team_barrier();
      // mirror the finished panel into the upper triangle (L^T)
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j0, j0 + jb), [&](const int l) {
        for (int i = l + 1; i < n; ++i) a[l * s0 + i * s1] = a[i * s0 + l * s1];
      });
      t.team_barrier();
    }
  }
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int i) {
    for (int j = i + 1; j < n; ++j) a[i * s0 + j * s1] = T(0);
  });
  t.team_barrier();
  return 0;
}

/// potrf_entry on batch entry b of A, its status written to info(b) and
/// pivot(b) (the body of both batched launches); returns info(b).
template <class Exec, class Member, class AV, class IV, class PV>
KOKKOS_INLINE_FUNCTION int potrf_entry_status(const Member& t, const AV& A, long b, const IV& info, const PV& pivot) {
  typename AV::non_const_value_type bad(0);
  const int r = potrf_entry<Exec>(t, hfisher::detail::entry(A, b), &bad);
  Kokkos::single(Kokkos::PerTeam(t), [&]() {
    info(b) = r;
    pivot(b) = bad;
  });
  return r;
}

/// The launch policy of a batched Cholesky: one team per entry, or, for
/// fewer large entries than host threads, teams spanning the threads, whose
/// GEMM and TRSM updates split into slices run by the one-thread kernels.
template <class Exec, class AV>
Kokkos::TeamPolicy<Exec> potrf_policy(const Exec& space, const AV& A) {
  const int nb = A.extent(0);
  const long n = A.extent(1);
  return nb < Exec::concurrency() && n * n * n >= host_split_work ? hfisher::detail::wide_batch_policy(space, nb)
                                                                  : hfisher::detail::batch_policy(space, nb);
}

template <class Exec, class AV, class IV, class PV>
void potrf_nocheck(const Exec& space, const AV& A, const IV& info, const PV& pivot) {
  using member = typename ExecTraits<Exec>::member_type;
  if (A.extent(0) == 0) return;
  Kokkos::parallel_for(
      "hfisher::potrf", potrf_policy(space, A),
      KOKKOS_LAMBDA(const member& t) { potrf_entry_status<Exec>(t, A, t.league_rank(), info, pivot); });
}

/// potrf with its checks: sizes, then, per entry and in the factorization's
/// own launch, that the entry is finite. Throws hfisher::NonFiniteError
/// naming the first entry that is not (such entries, with their info and
/// pivot, are left untouched); otherwise returns the first entry whose
/// factorization failed (info != 0), or -1.
template <class Exec, class AV, class IV, class PV>
long potrf_checked(const Exec& space, const AV& A, const IV& info, const PV& pivot) {
  constexpr const char* where = "hfisher::kernels::potrf";
  static_assert(AV::rank == 3, "potrf: A must be rank-3 (batch, n, n)");
  hfisher::detail::require(A.extent(1) == A.extent(2), where, "A must be square per entry, got ", A.extent(1), "x",
                           A.extent(2));
  hfisher::detail::check_batch(info.extent(0), A.extent(0), where, "info");
  hfisher::detail::check_batch(pivot.extent(0), A.extent(0), where, "pivot");
  using member = typename ExecTraits<Exec>::member_type;
  const auto first = hfisher::detail::for_each_checked_entry(
      "hfisher::potrf", potrf_policy(space, A),
      KOKKOS_LAMBDA(const member& t, const long b) {
        return hfisher::detail::team_all_finite(t, hfisher::detail::entry(A, b));
      },
      KOKKOS_LAMBDA(const member& t, const long b) { return potrf_entry_status<Exec>(t, A, b, info, pivot) == 0; });
  if (first.refused) {
    hfisher::detail::check_finite_at(space, A, first.entry, where, "A");
    throw NonFiniteError(hfisher::detail::concat(where, ": batch entry ", first.entry, " has a non-finite input"));
  }
  return first.entry;
}

}  // namespace detail

/// Batched Cholesky, non-throwing form. A: (batch, n, n); only the lower
/// triangle is read; on return it holds L (strict upper triangle zeroed).
/// info(b) = 0 on success, or k+1 when the k-th pivot of entry b is not
/// positive; pivot(b) then holds that pivot's value. Entries that fail are
/// left partially factored. Throws hfisher::NonFiniteError naming the first
/// entry that holds a NaN or Inf (anywhere in the n x n entry); such entries,
/// and their info and pivot, are left unchanged, the others are factored.
template <class Exec, class AV, class IV, class PV>
void potrf(const Exec& space, const AV& A, const IV& info, const PV& pivot) {
  detail::potrf_checked(space, A, info, pivot);
}

/// Batched Cholesky; throws hfisher::Error naming the first batch entry that
/// is not positive definite, its failing pivot and value, and how many
/// entries failed (one launch when every entry factors).
template <class Exec, class AV>
void potrf(const Exec& space, const AV& A) {
  using T = typename AV::non_const_value_type;
  const long nb = A.extent(0);
  // every entry's info and pivot are written unless an entry is refused,
  // which throws first
  Kokkos::View<int*, typename Exec::memory_space> info(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::potrf::info"), nb);
  Kokkos::View<T*, typename Exec::memory_space> pivot(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::potrf::pivot"), nb);
  const long bad = detail::potrf_checked(space, A, info, pivot);
  if (bad >= 0) {
    long nfail = 0;
    Kokkos::parallel_reduce(
        "hfisher::potrf::count", Kokkos::RangePolicy<Exec>(space, 0, nb),
        KOKKOS_LAMBDA(const long b, long& c) { c += info(b) != 0; }, nfail);
    const int k = hfisher::detail::read_entry(info, bad) - 1;
    throw Error(hfisher::detail::concat("hfisher::kernels::potrf: batch entry ", bad,
                                        " is not positive definite: pivot ", k, " is ",
                                        double(hfisher::detail::read_entry(pivot, bad)), " (leading ", k + 1, "x",
                                        k + 1, " minor); ", nfail, " of ", nb, " entries failed"));
  }
}

template <class AV>
void potrf(const AV& A) {
  potrf(typename AV::execution_space(), A);
}

/// Solves A_b X_b = B_b given the Cholesky factor L_b from potrf.
/// L: (batch, n, n), B: (batch, n, nrhs), overwritten by X. A NaN or Inf in
/// B throws hfisher::NonFiniteError naming the first such entry; entries of
/// B that hold one are left unchanged, the others are solved.
template <class Exec, class LV, class BV>
void potrs(const Exec& space, const LV& L, const BV& B) {
  constexpr const char* where = "hfisher::kernels::potrs";
  static_assert(LV::rank == 3 && BV::rank == 3, "potrs: L and B must be rank-3");
  hfisher::detail::check_batch(B.extent(0), L.extent(0), where, "B");
  hfisher::detail::require(L.extent(1) == L.extent(2), where, "L must be square per entry");
  hfisher::detail::check_extent(B.extent(1), L.extent(1), where, "B", "rows");
  using S = typename BV::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  const auto first = hfisher::detail::for_each_checked_entry(
      "hfisher::potrs", hfisher::detail::batch_policy(space, B.extent(0)),
      KOKKOS_LAMBDA(const member& t, const long b) {
        return hfisher::detail::team_all_finite(t, hfisher::detail::entry(B, b));
      },
      KOKKOS_LAMBDA(const member& t, const long b) {
        auto Lb = hfisher::detail::entry(L, b);
        auto Bb = hfisher::detail::entry(B, b);
        detail::trsm_left_entry<Exec>(t, Uplo::Lower, Op::NoTrans, Diag::NonUnit, S(1), Lb, Bb);
        t.team_barrier();
        detail::trsm_left_entry<Exec>(t, Uplo::Lower, Op::Trans, Diag::NonUnit, S(1), Lb, Bb);
        return true;
      });
  if (first.refused) {
    hfisher::detail::check_finite_at(space, B, first.entry, where, "B");
    throw NonFiniteError(hfisher::detail::concat(where, ": batch entry ", first.entry, " has a non-finite input"));
  }
}

template <class LV, class BV>
void potrs(const LV& L, const BV& B) {
  potrs(typename BV::execution_space(), L, B);
}

/// log det(A_b) = 2 sum_i log L_b(i, i) from the Cholesky factor.
/// L: (batch, n, n), out: (batch).
template <class Exec, class LV, class OV>
void logdet_cholesky(const Exec& space, const LV& L, const OV& out) {
  constexpr const char* where = "hfisher::kernels::logdet_cholesky";
  hfisher::detail::check_batch(out.extent(0), L.extent(0), where, "out");
  hfisher::detail::require(L.extent(1) == L.extent(2), where, "L must be square per entry");
  using T = typename OV::non_const_value_type;
  const int n = L.extent(1);
  Kokkos::parallel_for(
      "hfisher::logdet_cholesky", Kokkos::RangePolicy<Exec>(space, 0, L.extent(0)), KOKKOS_LAMBDA(const int b) {
        T s = T(0);
        for (int i = 0; i < n; ++i) s += math::log(L(b, i, i));
        out(b) = T(2) * s;
      });
}

template <class LV, class OV>
void logdet_cholesky(const LV& L, const OV& out) {
  logdet_cholesky(typename OV::execution_space(), L, out);
}

}  // namespace kernels
}  // namespace hfisher
