#pragma once
/// \file impl/bidiagonal.hpp
/// \brief Team-level SVD by Householder bidiagonalization and the implicitly
/// shifted bidiagonal QR iteration (Golub and Kahan 1965; Golub and Van
/// Loan, Algorithm 8.6.2), on raw pointers with strides.
///
/// Cost O(m n^2) with a small constant: about 4 m n^2 - 4/3 n^3 for the
/// reduction, as much again to form the two orthogonal factors, and ~12 n^3
/// for the rotations of the QR iteration applied to them (about two
/// Golub-Kahan steps per singular value). One-sided Jacobi (impl/jacobi.hpp)
/// needs ~6-8 sweeps of n^2 / 2 rotations, each touching three columns, so
/// it costs 5-10x more from n ~ 64 on; it stays the choice for small blocks,
/// where its high relative accuracy is cheap.
///
/// Accuracy: singular values to O(eps |A|_2) absolute; a diagonal entry of
/// the bidiagonal at or below eps |B| is set to zero and chased out of its
/// row or column by rotations (Demmel and Kahan's deflation), so rank-
/// deficient blocks converge and both factors stay orthonormal.
///
/// As in impl/tridiagonal.hpp, the iteration's scalar recurrence runs on one
/// thread, which records its rotations; the team then applies a whole batch
/// of them to the stored transposes U^T and V^T, whose rows (the columns of
/// U and V) are contiguous, so every rotation is two vector loads and stores
/// across a chunk of entries that stays in cache for the batch.

#include <hfisher/core/math.hpp>
#include <hfisher/kernels/impl/jacobi.hpp>
#include <hfisher/kernels/impl/tridiagonal.hpp>

namespace hfisher {
namespace kernels {
namespace detail {

/// Rotations per factor the QR iteration records before the team applies
/// them (a step records at most n - 1 per factor).
KOKKOS_INLINE_FUNCTION int bidiagonal_rotation_capacity(int n) { return 8 * (n > 4 ? n : 4); }

/// Scalars of work bidiagonal_svd needs for an m x n block (m >= n): e, tauq,
/// taup (3 n), a vector of max(m, n), then the two rotation buffers.
KOKKOS_INLINE_FUNCTION long bidiagonal_svd_work(int m, int n) {
  return 3L * n + (m > n ? m : n) + 4L * bidiagonal_rotation_capacity(n);
}

/// Ints of iwork bidiagonal_svd needs: the rotations' index pairs, and state.
KOKKOS_INLINE_FUNCTION long bidiagonal_svd_iwork(int n) { return 4L * bidiagonal_rotation_capacity(n) + 4; }

/// Recorded plane rotations (p[k], q[k], cs[k], sn[k]), each acting on rows
/// of a stored transpose: X_p <- c X_p + s X_q, X_q <- -s X_p + c X_q.
template <class T>
struct RotationLog {
  T* cs;
  T* sn;
  int* p;
  int* q;
  int used;
  KOKKOS_INLINE_FUNCTION void add(int pi, int qi, T c, T s) {
    cs[used] = c;
    sn[used] = s;
    p[used] = pi;
    q[used] = qi;
    ++used;
  }
};

/// (c, s, r) with c f + s g = r >= 0 and -s f + c g = 0 (c = 1, s = 0 when
/// both are zero).
template <class T>
KOKKOS_INLINE_FUNCTION void givens(T f, T g, T& c, T& s, T& r) {
  if (g == T(0)) {
    c = T(1);
    s = T(0);
    r = f;
    return;
  }
  r = safe_hypot(f, g);
  c = f / r;
  s = g / r;
}

/// Reduces the m x n block A (m >= n; overwritten) to upper bidiagonal form
/// Q^T A P = B by Householder reflectors: H_j (tauq[j], vector (1, A(j+1:m, j)))
/// from the left zeroes column j below the diagonal, G_j (taup[j], vector
/// (1, A(j, j+2:n)) on indices j+1..n-1) from the right zeroes row j beyond
/// the superdiagonal. Diagonal to d, superdiagonal to e (e[n-1] = 0); w is
/// max(m, n) scratch.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void householder_bidiagonalize(const Member& t, int m, int n, T* A, long a0, long a1, T* d, T* e,
                                                      T* tauq, T* taup, T* w) {
  constexpr int CW = 32;  // columns per thread in the left reflector's w = v^T A
  for (int j = 0; j < n; ++j) {
    // H_j: column j, rows j..m-1
    T xn = T(0);
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(t, j + 1, m),
        [&](const int r, T& s) {
          const T x = A[r * a0 + j * a1];
          s += x * x;
        },
        xn);
    const auto h = tridiagonal_reflector(A[j * a0 + j * a1], xn);
    t.team_barrier();  // every thread has read A(j, j), which stays as it is
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j + 1, m), [&](const int r) { A[r * a0 + j * a1] *= h.scale; });
    Kokkos::single(Kokkos::PerTeam(t), [&]() {
      d[j] = h.beta;
      tauq[j] = h.tau;
    });
    t.team_barrier();
    if (h.tau != T(0) && j + 1 < n) {
      // w = v^T A(j:m, j+1:n), by chunks of columns (rows inner-parallel
      // over contiguous columns when a1 = 1)
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, (n - j - 1 + CW - 1) / CW), [&](const int g) {
        const int c0 = j + 1 + g * CW, c1 = c0 + CW < n ? c0 + CW : n;
        for (int c = c0; c < c1; ++c) w[c] = A[j * a0 + c * a1];
        for (int r = j + 1; r < m; ++r) {
          const T vr = A[r * a0 + j * a1];
          const T* Ar = A + r * a0;
          for (int c = c0; c < c1; ++c) w[c] += vr * Ar[c * a1];
        }
      });
      t.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j, m), [&](const int r) {
        const T tv = h.tau * (r == j ? T(1) : A[r * a0 + j * a1]);
        T* Ar = A + r * a0;
        for (int c = j + 1; c < n; ++c) Ar[c * a1] -= tv * w[c];
      });
      t.team_barrier();
    }
    if (j + 1 >= n) {
      Kokkos::single(Kokkos::PerTeam(t), [&]() { e[j] = T(0); });
      continue;
    }
    // G_j: row j, columns j+1..n-1
    T xr = T(0);
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(t, j + 2, n),
        [&](const int c, T& s) {
          const T x = A[j * a0 + c * a1];
          s += x * x;
        },
        xr);
    const auto g = tridiagonal_reflector(A[j * a0 + (j + 1) * a1], xr);
    t.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j + 2, n), [&](const int c) { A[j * a0 + c * a1] *= g.scale; });
    Kokkos::single(Kokkos::PerTeam(t), [&]() {
      e[j] = g.beta;
      taup[j] = g.tau;
    });
    t.team_barrier();
    if (g.tau != T(0)) {
      const T* u = A + j * a0;  // u_c = A(j, c) for c > j + 1, u_{j+1} = 1
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j + 1, m), [&](const int r) {
        T* Ar = A + r * a0;
        T s = Ar[(j + 1) * a1];
        if (a1 == 1) {
          s += dot_contiguous(n - j - 2, Ar + j + 2, u + j + 2);
        } else {
          for (int c = j + 2; c < n; ++c) s += Ar[c * a1] * u[c * a1];
        }
        s *= g.tau;
        Ar[(j + 1) * a1] -= s;
        for (int c = j + 2; c < n; ++c) Ar[c * a1] -= s * u[c * a1];
      });
      t.team_barrier();
    }
  }
}

/// Forms U^T (n x m, row stride m) for U = H_0 ... H_{n-1} [I_n; 0] from
/// householder_bidiagonalize's left reflectors: starting from [I_n 0], the
/// reflectors are applied from the right, last first; row c of U^T is zero
/// in columns j.. until H_c, so each H_j touches rows j..n-1 only. w: m
/// scratch (the reflector, contiguous).
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void form_bidiagonal_ut(const Member& t, int m, int n, const T* A, long a0, long a1,
                                               const T* tauq, T* Ut, T* w) {
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int c) {
    T* u = Ut + long(c) * m;
    for (int r = 0; r < m; ++r) u[r] = r == c ? T(1) : T(0);
  });
  t.team_barrier();
  for (int j = n - 1; j >= 0; --j) {
    const T tau = tauq[j];
    if (tau == T(0)) continue;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j, m),
                         [&](const int r) { w[r] = r == j ? T(1) : A[r * a0 + j * a1]; });
    t.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j, n), [&](const int c) {
      T* u = Ut + long(c) * m;
      const T s = tau * dot_contiguous(m - j, u + j, w + j);
      for (int r = j; r < m; ++r) u[r] -= s * w[r];
    });
    t.team_barrier();
  }
}

/// Forms V^T (n x n, row stride n) for V = G_0 ... G_{n-2} from
/// householder_bidiagonalize's right reflectors (G_j acts on indices
/// j+1..n-1), as form_bidiagonal_ut does. w: n scratch.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void form_bidiagonal_vt(const Member& t, int n, const T* A, long a0, long a1, const T* taup,
                                               T* Vt, T* w) {
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int c) {
    T* v = Vt + long(c) * n;
    for (int r = 0; r < n; ++r) v[r] = r == c ? T(1) : T(0);
  });
  t.team_barrier();
  for (int j = n - 2; j >= 0; --j) {
    const T tau = taup[j];
    if (tau == T(0)) continue;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j + 1, n),
                         [&](const int c) { w[c] = c == j + 1 ? T(1) : A[j * a0 + c * a1]; });
    t.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j + 1, n), [&](const int c) {
      T* v = Vt + long(c) * n;
      const T s = tau * dot_contiguous(n - j - 1, v + j + 1, w + j + 1);
      for (int r = j + 1; r < n; ++r) v[r] -= s * w[r];
    });
    t.team_barrier();
  }
}

/// One step of the bidiagonal QR iteration on (d, e) (e[i] couples i and
/// i + 1): deflates converged values from the bottom (hi, the last index of
/// the active part), then either chases out a zero diagonal entry of the
/// bottom unreduced block or runs one implicitly shifted Golub-Kahan step on
/// it. Rotations from the left go to ru, from the right to rv. Returns false
/// when every value has converged.
///
/// e[i] counts as zero below eps max(|d[i]| + |d[i+1]|, tnorm), d[i] below eps tnorm
/// (tnorm = max_i |d_i| + |e_i|): the latter is set to zero and its row's
/// superdiagonal entry chased to the right by rotations from the left (or,
/// for the block's last entry, its column's chased upward from the right).
template <class T>
KOKKOS_INLINE_FUNCTION bool bidiagonal_qr_step(T* d, T* e, T tnorm, int& hi, RotationLog<T>& ru, RotationLog<T>& rv) {
  const T eps = math::limits<T>::eps();
  auto negligible = [&](int i) {
    const T dd = math::abs(d[i]) + math::abs(d[i + 1]);
    return math::abs(e[i]) <= eps * (dd > tnorm ? dd : tnorm);
  };
  while (hi > 0 && negligible(hi - 1)) {
    e[hi - 1] = T(0);
    --hi;
  }
  if (hi == 0) return false;
  int lo = hi - 1;
  while (lo > 0 && !negligible(lo - 1)) --lo;
  if (lo > 0) e[lo - 1] = T(0);
  for (int i = lo; i <= hi; ++i) {
    if (math::abs(d[i]) > eps * tnorm) continue;
    d[i] = T(0);
    T c, s, r;
    if (i < hi) {
      // rows (j, i), j = i+1..hi: the bulge x moves along row i
      T x = e[i];
      e[i] = T(0);
      for (int j = i + 1; j <= hi && x != T(0); ++j) {
        givens(d[j], x, c, s, r);
        d[j] = r;
        ru.add(j, i, c, s);
        if (j < hi) {
          x = -s * e[j];
          e[j] *= c;
        }
      }
    } else {
      // columns (j, hi), j = hi-1..lo: the bulge moves up column hi
      T x = e[hi - 1];
      e[hi - 1] = T(0);
      for (int j = hi - 1; j >= lo && x != T(0); --j) {
        givens(d[j], x, c, s, r);
        d[j] = r;
        rv.add(j, hi, c, s);
        if (j > lo) {
          x = -s * e[j - 1];
          e[j - 1] *= c;
        }
      }
    }
    return true;
  }
  // Wilkinson shift: the eigenvalue of the trailing 2 x 2 of B^T B nearer its
  // last diagonal entry, in units of sc (no overflow in the squares)
  T sc =
      math::max(math::max(math::abs(d[hi - 1]), math::abs(d[hi])), math::max(math::abs(e[hi - 1]), math::abs(d[lo])));
  sc = math::max(sc, math::abs(e[lo]));
  if (hi - 1 > lo) sc = math::max(sc, math::abs(e[hi - 2]));
  const T dm = d[hi - 1] / sc, dn = d[hi] / sc, em = e[hi - 1] / sc, el = hi - 1 > lo ? e[hi - 2] / sc : T(0);
  const T t11 = dm * dm + el * el, t12 = dm * em, t22 = dn * dn + em * em;
  const T delta = (t11 - t22) / T(2);
  const T mu = t22 - t12 * t12 / (delta + math::sign(safe_hypot(delta, t12), delta));
  const T d0 = d[lo] / sc;
  T y = d0 * d0 - mu, z = d0 * (e[lo] / sc);
  for (int k = lo; k < hi; ++k) {
    T c, s, r;
    // from the right on columns (k, k+1): zero z against y
    givens(y, z, c, s, r);
    if (k > lo) e[k - 1] = r;
    const T dk = d[k], ek = e[k];
    d[k] = c * dk + s * ek;
    e[k] = -s * dk + c * ek;
    const T bulge = s * d[k + 1];
    d[k + 1] *= c;
    rv.add(k, k + 1, c, s);
    // from the left on rows (k, k+1): zero the bulge below the diagonal
    givens(d[k], bulge, c, s, r);
    d[k] = r;
    const T ek2 = e[k], dk1 = d[k + 1];
    e[k] = c * ek2 + s * dk1;
    d[k + 1] = -s * ek2 + c * dk1;
    ru.add(k, k + 1, c, s);
    if (k + 1 < hi) {
      y = e[k];
      z = s * e[k + 1];
      e[k + 1] *= c;
    }
  }
  return true;
}

/// Applies the nrot recorded rotations, in order, to the rows of X (rows of
/// length len, row stride ld): each thread a chunk of CH entries of every
/// row, the whole sequence across the chunk (vectorizes; the chunk stays in
/// cache for the batch).
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void apply_row_rotations(const Member& t, int len, T* X, long ld, int nrot, const T* cs,
                                                const T* sn, const int* p, const int* q) {
  constexpr int CH = rotation_chunk;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, (len + CH - 1) / CH), [&](const int g) {
    const int r0 = g * CH, r1 = r0 + CH <= len ? r0 + CH : len;
    for (int k = 0; k < nrot; ++k) rotate_rows(X + p[k] * ld, X + q[k] * ld, cs[k], sn[k], r0, r1);
  });
}

/// Thin SVD of the m x n block A (m >= n; overwritten): A = U diag(d) V^T
/// with the transposes stored, U^T to Ut (n x m, row stride m) and V^T to
/// Vt (n x n, row stride n); d descending and non-negative. work:
/// bidiagonal_svd_work(m, n), iwork: bidiagonal_svd_iwork(n). Returns the
/// number of QR steps, or -1 when a singular value needed more than
/// max_steps_per_value.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION int bidiagonal_svd(const Member& t, int m, int n, T* A, long a0, long a1, T* d, T* Ut, T* Vt,
                                          T* work, int* iwork, int max_steps_per_value) {
  if (n <= 0) return 0;
  const int cap = bidiagonal_rotation_capacity(n);
  T* e = work;
  T* tauq = work + n;
  T* taup = work + 2 * n;
  T* w = work + 3 * n;
  T* rot = w + (m > n ? m : n);
  int* state = iwork + 4 * cap;  // hi (0: converged), steps on hi, rotations of U, of V
  householder_bidiagonalize(t, m, n, A, a0, a1, d, e, tauq, taup, w);
  form_bidiagonal_ut(t, m, n, A, a0, a1, tauq, Ut, w);
  form_bidiagonal_vt(t, n, A, a0, a1, taup, Vt, w);
  T tnorm = T(0);
  for (int i = 0; i < n; ++i) tnorm = math::max(tnorm, math::abs(d[i]) + math::abs(e[i]));
  Kokkos::single(Kokkos::PerTeam(t), [&]() {
    state[0] = n - 1;
    state[1] = 0;
  });
  t.team_barrier();
  int steps = 0;
  while (true) {
    int ns = 0;
    Kokkos::single(
        Kokkos::PerTeam(t),
        [&](int& out) {
          RotationLog<T> ru{rot, rot + cap, iwork, iwork + cap, 0};
          RotationLog<T> rv{rot + 2 * cap, rot + 3 * cap, iwork + 2 * cap, iwork + 3 * cap, 0};
          int hi = state[0], it = state[1], k = 0;
          out = 0;
          while (ru.used + n <= cap && rv.used + n <= cap) {
            const int before = hi;
            if (!bidiagonal_qr_step(d, e, tnorm, hi, ru, rv)) break;  // hi == 0
            if (hi != before) it = 0;
            if (++it > max_steps_per_value) {
              out = -1;
              break;
            }
            ++k;
          }
          state[0] = hi;
          state[1] = it;
          state[2] = ru.used;
          state[3] = rv.used;
          if (out == 0) out = k;
        },
        ns);
    if (ns < 0) return -1;
    t.team_barrier();
    const int nu = state[2], nv = state[3];
    const bool done = state[0] == 0;
    if (nu > 0) apply_row_rotations(t, m, Ut, m, nu, rot, rot + cap, iwork, iwork + cap);
    if (nv > 0) apply_row_rotations(t, n, Vt, n, nv, rot + 2 * cap, rot + 3 * cap, iwork + 2 * cap, iwork + 3 * cap);
    t.team_barrier();
    steps += ns;
    if (done) break;
  }
  // non-negative values (the sign goes to V's column), then descending
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int i) {
    if (d[i] >= T(0)) return;
    d[i] = -d[i];
    T* v = Vt + long(i) * n;
    for (int r = 0; r < n; ++r) v[r] = -v[r];
  });
  t.team_barrier();
  sort_with_columns(t, n, d, true, Ut, m, 1, m, Vt, n, 1, n);
  return steps;
}

}  // namespace detail
}  // namespace kernels
}  // namespace hfisher
