#pragma once
/// \file validate.hpp
/// \brief Checks run at the public boundary: NaN/Inf scans of batched views
/// (one parallel reduction that finds the first bad entry) and per-entry
/// status reports written by kernels.

#include <hfisher/core/error.hpp>
#include <hfisher/core/math.hpp>
#include <hfisher/core/types.hpp>

#include <string>

namespace hfisher {
namespace detail {

/// Throws if any entry of the rank-3 view A is NaN or Inf, naming the batch
/// entry and position of the first one (entries are numbered from
/// entry_offset: A may be a slice of a larger batch).
template <class ExecSpace, class View3>
void check_finite3(const ExecSpace& space, const View3& A, const char* where, const char* arg, long entry_offset = 0) {
  static_assert(View3::rank == 3, "check_finite3 needs a rank-3 view");
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2);
  if (nb * m * n == 0) return;
  // fast pass: x - x is 0 for finite x and NaN otherwise; sums with no early
  // exit, in 8 independent lanes (one sum would be a chain of dependent adds
  // that the compiler may not reorder: the check cost 40% of a batched 64 x 64
  // GEMM). The slow pass only runs to locate a hit.
  int any_bad = 0;
  Kokkos::parallel_reduce(
      "hfisher::check_finite", Kokkos::RangePolicy<ExecSpace>(space, 0, nb),
      KOKKOS_LAMBDA(const long b, int& bad) {
        using T = typename View3::non_const_value_type;
        constexpr int lanes = 8;
        T s[lanes];
        for (int v = 0; v < lanes; ++v) s[v] = T(0);
        for (long i = 0; i < m; ++i) {
          long j = 0;
          for (; j + lanes <= n; j += lanes)
            for (int v = 0; v < lanes; ++v) s[v] += A(b, i, j + v) - A(b, i, j + v);
          for (; j < n; ++j) s[0] += A(b, i, j) - A(b, i, j);
        }
        T t = T(0);
        for (int v = 0; v < lanes; ++v) t += s[v];
        if (t != T(0)) bad = 1;
      },
      Kokkos::Max<int>(any_bad));
  // Max<int> starts every partial at INT_MIN: "no hit" reads INT_MIN, not 0
  if (any_bad != 1) return;
  long first = nb * m * n;
  Kokkos::parallel_reduce(
      "hfisher::check_finite::locate", Kokkos::RangePolicy<ExecSpace>(space, 0, nb),
      KOKKOS_LAMBDA(const long b, long& f) {
        for (long i = 0; i < m; ++i)
          for (long j = 0; j < n; ++j)
            if (!math::isfinite(A(b, i, j))) {
              const long idx = (b * m + i) * n + j;
              if (idx < f) f = idx;
              return;
            }
      },
      Kokkos::Min<long>(first));
  if (first < nb * m * n) {
    const long b = first / (m * n), i = (first / n) % m, j = first % n;
    throw NonFiniteError(concat(where, ": argument ", arg, " has a non-finite value (NaN or Inf) at batch entry ",
                                b + entry_offset, ", position (", i, ", ", j, ")"));
  }
}

/// check_finite3 on batch entry b of A alone.
template <class ExecSpace, class View3>
void check_finite_at(const ExecSpace& space, const View3& A, long b, const char* where, const char* arg) {
  check_finite3(space, Kokkos::subview(A, Kokkos::make_pair(b, b + 1), Kokkos::ALL, Kokkos::ALL), where, arg, b);
}

/// True when every element of the rank-2 view a is finite. A team operation:
/// every thread of t takes part and gets the same answer. Sums x - x (0 for
/// finite x, NaN otherwise) in 8 independent lanes, over chunks of 512
/// elements when the entry is contiguous (one horizontal sum per chunk, not
/// per row: at 16 x 16 a sum per row cost as much as the scan), else by rows.
template <class Member, class View2>
KOKKOS_INLINE_FUNCTION bool team_all_finite(const Member& t, const View2& a) {
  using T = typename View2::non_const_value_type;
  const long m = a.extent(0), n = a.extent(1);
  const long s0 = a.stride(0), s1 = a.stride(1);
  const bool contiguous = s1 == 1 && (s0 == n || m <= 1);
  constexpr long chunk = 512;
  // a contiguous entry is scanned as `parts` chunks, otherwise row by row
  const long parts = contiguous ? (m * n + chunk - 1) / chunk : m;
  const auto* p = a.data();
  // the sum of x - x over part q: one chunk, or one row
  auto scan = [&](const long q, T& acc) {
    const auto* x = contiguous ? p + q * chunk : p + q * s0;
    const long len = contiguous ? (m * n - q * chunk < chunk ? m * n - q * chunk : chunk) : n;
    const long step = contiguous ? 1 : s1;
    long j = 0;
    if (step == 1) {
      constexpr int lanes = 8;
      T l[lanes];
      for (int v = 0; v < lanes; ++v) l[v] = T(0);
      for (; j + lanes <= len; j += lanes)
        for (int v = 0; v < lanes; ++v) l[v] += x[j + v] - x[j + v];
      for (int v = 0; v < lanes; ++v) acc += l[v];
    }
    for (; j < len; ++j) acc += x[j * step] - x[j * step];
  };
  T sum = T(0);
  if (t.team_size() == 1) {
    // one thread (the host's one-team-per-entry runs): the same parts without
    // the team reduction's set-up (checked 8 x 8 and 16 x 16 GEMMs in
    // batches of 1000-10000 ran 10-30% faster for it)
    for (long q = 0; q < parts; ++q) scan(q, sum);
  } else {
    Kokkos::parallel_reduce(Kokkos::TeamThreadRange(t, parts), scan, sum);
  }
  return sum == T(0);
}

/// What for_each_checked_entry found: the first entry whose input was
/// refused, else the first entry whose body failed, else none (entry -1).
struct EntryCheck {
  long entry = -1;
  bool refused = false;
};

/// One launch of the team policy `policy` (one team per batch entry): each
/// team first asks ok(t, b) whether entry b's inputs are acceptable (a team
/// operation, e.g. team_all_finite) and runs body(t, b) only when they are;
/// body returns false when the entry failed (e.g. a pivot that is not
/// positive). Both answers must be the same on every thread of the team.
/// A refused entry anywhere is reported before any failed one. The check
/// reads an entry just before the body does, from cache, where a separate
/// scan of the whole batch would read it from memory once more.
template <class Policy, class Ok, class Body>
EntryCheck for_each_checked_entry(const char* name, const Policy& policy, const Ok& ok, const Body& body) {
  using member = typename Policy::member_type;
  const long nb = policy.league_size();
  if (nb == 0) return {};
  // min over refused entries b and failed entries nb + b
  long first = 0;
  Kokkos::parallel_reduce(
      name, policy,
      KOKKOS_LAMBDA(const member& t, long& f) {
        const long b = t.league_rank();
        const long code = !ok(t, b) ? b : body(t, b) ? 2 * nb : nb + b;
        if (code < 2 * nb)
          Kokkos::single(Kokkos::PerTeam(t), [&]() {
            if (code < f) f = code;
          });
      },
      Kokkos::Min<long>(first));
  // Min<long> starts every partial at the largest long: nothing to report
  if (first < nb) return {first, true};
  if (first < 2 * nb) return {first - nb, false};
  return {};
}

/// Same for a single matrix: a rank-2 view (m, n), any layout.
template <class ExecSpace, class View2>
void check_finite_matrix(const ExecSpace& space, const View2& M, const char* where, const char* arg) {
  static_assert(View2::rank == 2, "check_finite_matrix needs a rank-2 view");
  using T = typename View2::const_value_type;
  Kokkos::View<T***, Kokkos::LayoutStride, typename View2::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>> M3(
      M.data(), Kokkos::LayoutStride(1, 0, M.extent(0), M.stride_0(), M.extent(1), M.stride_1()));
  check_finite3(space, M3, where, arg);
}

/// Same for a rank-2 view (batch, n).
template <class ExecSpace, class View2>
void check_finite2(const ExecSpace& space, const View2& v, const char* where, const char* arg) {
  static_assert(View2::rank == 2, "check_finite2 needs a rank-2 view");
  const long nb = v.extent(0), n = v.extent(1);
  if (nb * n == 0) return;
  long first = nb * n;
  Kokkos::parallel_reduce(
      "hfisher::check_finite", Kokkos::RangePolicy<ExecSpace>(space, 0, nb),
      KOKKOS_LAMBDA(const long b, long& f) {
        for (long i = 0; i < n; ++i)
          if (!math::isfinite(v(b, i))) {
            const long idx = b * n + i;
            if (idx < f) f = idx;
            return;
          }
      },
      Kokkos::Min<long>(first));
  if (first < nb * n) {
    throw NonFiniteError(concat(where, ": argument ", arg, " has a non-finite value (NaN or Inf) at batch entry ",
                                first / n, ", index ", first % n));
  }
}

/// Returns the first batch entry whose status is non-zero, or -1.
template <class ExecSpace, class IntView>
long first_failure(const ExecSpace& space, const IntView& info) {
  const long nb = info.extent(0);
  long first = nb;
  Kokkos::parallel_reduce(
      "hfisher::first_failure", Kokkos::RangePolicy<ExecSpace>(space, 0, nb),
      KOKKOS_LAMBDA(const long b, long& f) {
        if (info(b) != 0 && b < f) f = b;
      },
      Kokkos::Min<long>(first));
  return first < nb ? first : -1;
}

/// Reads one element of a device view on the host.
template <class View1>
typename View1::non_const_value_type read_entry(const View1& v, long i) {
  typename View1::non_const_value_type x{};
  Kokkos::deep_copy(Kokkos::View<typename View1::non_const_value_type, Kokkos::HostSpace>(&x), Kokkos::subview(v, i));
  return x;
}

inline void check_batch(long got, long want, const char* where, const char* arg) {
  require(got == want, where, "argument ", arg, " has batch size ", got, ", expected ", want);
}

inline void check_extent(long got, long want, const char* where, const char* arg, const char* dim) {
  require(got == want, where, "argument ", arg, " has ", dim, " = ", got, ", expected ", want);
}

inline void check_tol(double tol, const char* where) {
  require(tol > 0.0 && tol < 1.0 && tol == tol, where, "tolerance must lie in (0, 1), got ", tol);
}

}  // namespace detail
}  // namespace hfisher
