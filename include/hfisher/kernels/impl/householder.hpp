#pragma once
/// \file impl/householder.hpp
/// \brief Team-level Householder QR (optionally with column pivoting) and
/// formation of Q, on raw pointers with strides (LAPACK conventions:
/// H_i = I - tau_i v_i v_i^T, v_i(i) = 1, R on and above the diagonal,
/// v_i below it). Written once; a team of size 1 runs it serially.

#include <hfisher/core/math.hpp>
#include <hfisher/kernels/impl/gemm_serial.hpp>

namespace hfisher {
namespace kernels {
namespace detail {

/// Householder QR of the m x n block A (strides s0, s1) in a team.
/// tau: min(m, n) entries. With perm != nullptr, columns are pivoted by
/// largest remaining norm (Businger-Golub, LAPACK dlaqp2 norm downdating with
/// recomputation on cancellation): perm[j] = original index of column j, and
/// work holds 2n scalars.
/// rowbuf (n scalars, optional) enables the row-oriented update used by
/// teams of one thread.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void householder_qr(const Member& t, int m, int n, T* A, int s0, int s1, T* tau, int* perm,
                                           T* work, T* rowbuf = nullptr) {
  const int k = m < n ? m : n;
  const bool pivoting = perm != nullptr;
  T* vn1 = work;
  T* vn2 = pivoting ? work + n : nullptr;
  const T tol3z = math::sqrt(math::limits<T>::eps());
  if (pivoting) {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int j) {
      T s = T(0);
      for (int r = 0; r < m; ++r) s += A[r * s0 + j * s1] * A[r * s0 + j * s1];
      vn1[j] = math::sqrt(s);
      vn2[j] = vn1[j];
      perm[j] = j;
    });
    t.team_barrier();
  }
  for (int i = 0; i < k; ++i) {
    if (pivoting) {
      using reducer = Kokkos::MaxLoc<T, int>;
      typename reducer::value_type best;
      Kokkos::parallel_reduce(
          Kokkos::TeamThreadRange(t, i, n),
          [&](const int j, typename reducer::value_type& v) {
            if (vn1[j] > v.val || (vn1[j] == v.val && j < v.loc)) {
              v.val = vn1[j];
              v.loc = j;
            }
          },
          reducer(best));
      const int p = best.loc;
      if (p != i && p >= i && p < n) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int r) {
          const T x = A[r * s0 + i * s1];
          A[r * s0 + i * s1] = A[r * s0 + p * s1];
          A[r * s0 + p * s1] = x;
        });
        Kokkos::single(Kokkos::PerTeam(t), [&]() {
          const int q = perm[i];
          perm[i] = perm[p];
          perm[p] = q;
          vn1[p] = vn1[i];
          vn2[p] = vn2[i];
        });
      }
      t.team_barrier();
    }
    // reflector for column i, rows i..m-1
    T xnorm2 = T(0);
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(t, i + 1, m), [&](const int r, T& s) { s += A[r * s0 + i * s1] * A[r * s0 + i * s1]; },
        xnorm2);
    const T alpha = A[i * s0 + i * s1];
    t.team_barrier();
    T ti = T(0);
    if (xnorm2 > T(0)) {
      const T beta = -math::sign(math::hypot(alpha, math::sqrt(xnorm2)), alpha);
      ti = (beta - alpha) / beta;
      const T scale = T(1) / (alpha - beta);
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, i, m),
                           [&](const int r) { A[r * s0 + i * s1] = r == i ? beta : A[r * s0 + i * s1] * scale; });
    }
    Kokkos::single(Kokkos::PerTeam(t), [&]() { tau[i] = ti; });
    t.team_barrier();
    // apply H_i to the trailing columns
    if (ti != T(0) && rowbuf != nullptr && t.team_size() == 1) {
      // one thread: row-oriented (contiguous along j for row-major blocks)
      T* w = rowbuf;
      for (int j = i + 1; j < n; ++j) w[j] = A[i * s0 + j * s1];
      for (int r = i + 1; r < m; ++r) {
        const T v = A[r * s0 + i * s1];
        const T* ar = A + r * s0;
        for (int j = i + 1; j < n; ++j) w[j] += v * ar[j * s1];
      }
      for (int j = i + 1; j < n; ++j) {
        w[j] *= ti;
        A[i * s0 + j * s1] -= w[j];
      }
      for (int r = i + 1; r < m; ++r) {
        const T v = A[r * s0 + i * s1];
        T* ar = A + r * s0;
        for (int j = i + 1; j < n; ++j) ar[j * s1] -= v * w[j];
      }
    } else if (ti != T(0)) {
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, i + 1, n), [&](const int j) {
        T w = A[i * s0 + j * s1];
        for (int r = i + 1; r < m; ++r) w += A[r * s0 + i * s1] * A[r * s0 + j * s1];
        w *= ti;
        A[i * s0 + j * s1] -= w;
        for (int r = i + 1; r < m; ++r) A[r * s0 + j * s1] -= w * A[r * s0 + i * s1];
      });
      t.team_barrier();
    }
    if (pivoting) {
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, i + 1, n), [&](const int j) {
        if (vn1[j] != T(0)) {
          const T ratio = math::abs(A[i * s0 + j * s1]) / vn1[j];
          T temp = T(1) - ratio * ratio;
          temp = temp < T(0) ? T(0) : temp;
          const T q = vn1[j] / vn2[j];
          if (temp * q * q <= tol3z) {
            T s = T(0);
            for (int r = i + 1; r < m; ++r) s += A[r * s0 + j * s1] * A[r * s0 + j * s1];
            vn1[j] = math::sqrt(s);
            vn2[j] = vn1[j];
          } else {
            vn1[j] *= math::sqrt(temp);
          }
        }
      });
      t.team_barrier();
    }
  }
}

/// Forms the first q columns of Q = H_0 H_1 ... H_{kr-1} (m x q, q <= m,
/// kr = min(q, number of reflectors stored)) from the reflectors below the
/// diagonal of the m x * block A into Q (strides q0, q1).
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void form_q(const Member& t, int m, int q, int kr, const T* A, int s0, int s1, const T* tau,
                                   T* Q, int q0, int q1, T* rowbuf = nullptr) {
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, q), [&](const int j) {
    for (int r = 0; r < m; ++r) Q[r * q0 + j * q1] = r == j ? T(1) : T(0);
  });
  t.team_barrier();
  for (int i = kr - 1; i >= 0; --i) {
    const T ti = tau[i];
    if (ti == T(0)) continue;
    if (rowbuf != nullptr && t.team_size() == 1) {
      T* w = rowbuf;
      for (int j = i; j < q; ++j) w[j] = Q[i * q0 + j * q1];
      for (int r = i + 1; r < m; ++r) {
        const T v = A[r * s0 + i * s1];
        const T* qr = Q + r * q0;
        for (int j = i; j < q; ++j) w[j] += v * qr[j * q1];
      }
      for (int j = i; j < q; ++j) {
        w[j] *= ti;
        Q[i * q0 + j * q1] -= w[j];
      }
      for (int r = i + 1; r < m; ++r) {
        const T v = A[r * s0 + i * s1];
        T* qr = Q + r * q0;
        for (int j = i; j < q; ++j) qr[j * q1] -= v * w[j];
      }
      continue;
    }
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, i, q), [&](const int j) {
      T w = Q[i * q0 + j * q1];
      for (int r = i + 1; r < m; ++r) w += A[r * s0 + i * s1] * Q[r * q0 + j * q1];
      w *= ti;
      Q[i * q0 + j * q1] -= w;
      for (int r = i + 1; r < m; ++r) Q[r * q0 + j * q1] -= w * A[r * s0 + i * s1];
    });
    t.team_barrier();
  }
}

/// Panel width of the blocked (compact WY) forms below.
constexpr int qr_panel = 16;

/// Scalars of workspace the blocked forms need for an m x n block (QR) or
/// an m x q Q (formation): the panel's reflectors (m x qr_panel), the
/// product with the trailing columns (qr_panel x n), the triangular factor
/// T and the reflectors' Gram matrix (qr_panel x qr_panel each), a row.
KOKKOS_INLINE_FUNCTION long qr_blocked_work(int m, int n) {
  return long(qr_panel) * (long(m) + n + 2 * qr_panel) + n + 1;
}

/// The reflectors of columns p0 .. p0+pb-1 (rows p0 .. m-1 of A) as an
/// explicit unit lower trapezoidal (m - p0) x pb matrix V (row stride
/// qr_panel), and the upper triangular T with H_p0 ... H_p0+pb-1 =
/// I - V T V^T (LAPACK dlarft, forward, columnwise; T row stride qr_panel).
template <class T>
KOKKOS_INLINE_FUNCTION void panel_wy(int m, int p0, int pb, const T* A, int s0, int s1, const T* tau, T* V, T* Tm,
                                     T* G) {
  constexpr int P = qr_panel;
  const int mv = m - p0;
  for (int r = 0; r < mv; ++r)
    for (int c = 0; c < pb; ++c) V[r * P + c] = r > c ? A[(p0 + r) * s0 + (p0 + c) * s1] : (r == c ? T(1) : T(0));
  // G = V^T V (pb x pb): the inner products of the reflectors
  gemm_serial_blocked<T>(pb, pb, mv, T(1), V, 1, P, V, P, 1, T(0), G, P, 1);
  for (int i = 0; i < pb; ++i) {
    const T ti = tau[p0 + i];
    for (int j = 0; j < i; ++j) Tm[j * P + i] = -ti * G[j * P + i];
    // T(0:i, i) = T(0:i, 0:i) T(0:i, i), in place (row j reads entries >= j)
    for (int j = 0; j < i; ++j) {
      T s = T(0);
      for (int l = j; l < i; ++l) s += Tm[j * P + l] * Tm[l * P + i];
      Tm[j * P + i] = s;
    }
    Tm[i * P + i] = ti;
    for (int j = i + 1; j < pb; ++j) Tm[j * P + i] = T(0);
  }
}

/// Blocked Householder QR of the m x n block A (row stride s0, unit column
/// stride) by one thread: panels of qr_panel columns are factored by
/// householder_qr (team of one), and the trailing columns are updated by
/// the compact WY form C -= V (T^T (V^T C)) through the register-blocked
/// GEMM. Same output as householder_qr without pivoting (LAPACK dgeqrf).
/// work: qr_blocked_work(m, n) scalars.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void householder_qr_blocked(const Member& t, int m, int n, T* A, int s0, T* tau, T* work) {
  constexpr int P = qr_panel;
  const int k = m < n ? m : n;
  T* V = work;
  T* W = V + long(m) * P;
  T* Tm = W + long(P) * n;
  T* G = Tm + P * P;
  T* row = G + P * P;
  for (int p0 = 0; p0 < k; p0 += P) {
    const int pb = k - p0 < P ? k - p0 : P, mv = m - p0, nt = n - p0 - pb;
    T* Ap = A + long(p0) * s0 + p0;
    householder_qr<Member, T>(t, mv, pb, Ap, s0, 1, tau + p0, nullptr, nullptr, row);
    if (nt <= 0) continue;
    panel_wy<T>(m, p0, pb, A, s0, 1, tau, V, Tm, G);
    T* C = Ap + pb;
    // W = V^T C (pb x nt)
    gemm_serial_blocked<T>(pb, nt, mv, T(1), V, 1, P, C, s0, 1, T(0), W, nt, 1);
    // W = T^T W, rows from the last (row i reads rows <= i)
    for (int i = pb - 1; i >= 0; --i)
      for (int j = 0; j < nt; ++j) {
        T s = T(0);
        for (int l = 0; l <= i; ++l) s += Tm[l * P + i] * W[l * nt + j];
        W[i * nt + j] = s;
      }
    // C -= V W
    gemm_serial_blocked<T>(mv, nt, pb, T(-1), V, P, 1, W, nt, 1, T(1), C, s0, 1);
  }
}

/// Blocked formation of the first q columns of Q = H_0 ... H_{kr-1} (see
/// form_q) by one thread: Q starts as the identity and each panel's block
/// reflector, from the last, is applied as Q -= V (T (V^T Q)) to the rows
/// and columns it touches. Q has row stride q0 and unit column stride.
/// work: qr_blocked_work(m, q) scalars.
template <class T>
KOKKOS_INLINE_FUNCTION void form_q_blocked(int m, int q, int kr, const T* A, int s0, int s1, const T* tau, T* Q, int q0,
                                           T* work) {
  constexpr int P = qr_panel;
  T* V = work;
  T* W = V + long(m) * P;
  T* Tm = W + long(P) * q;
  T* G = Tm + P * P;
  for (int r = 0; r < m; ++r)
    for (int j = 0; j < q; ++j) Q[r * q0 + j] = r == j ? T(1) : T(0);
  if (kr <= 0) return;
  for (int p0 = ((kr - 1) / P) * P; p0 >= 0; p0 -= P) {
    const int pb = kr - p0 < P ? kr - p0 : P, mv = m - p0, nt = q - p0;
    panel_wy<T>(m, p0, pb, A, s0, s1, tau, V, Tm, G);
    // rows < p0 of columns >= p0 are still zero, columns < p0 still e_j
    T* C = Q + long(p0) * q0 + p0;
    gemm_serial_blocked<T>(pb, nt, mv, T(1), V, 1, P, C, q0, 1, T(0), W, nt, 1);
    // W = T W, rows from the first (row i reads rows >= i)
    for (int i = 0; i < pb; ++i)
      for (int j = 0; j < nt; ++j) {
        T s = T(0);
        for (int l = i; l < pb; ++l) s += Tm[i * P + l] * W[l * nt + j];
        W[i * nt + j] = s;
      }
    gemm_serial_blocked<T>(mv, nt, pb, T(-1), V, P, 1, W, nt, 1, T(1), C, q0, 1);
  }
}

}  // namespace detail
}  // namespace kernels
}  // namespace hfisher
