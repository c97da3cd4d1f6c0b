#pragma once
/// \file impl/householder.hpp
/// \brief Team-level Householder QR (optionally with column pivoting) and
/// formation of Q, on raw pointers with strides (LAPACK conventions:
/// H_i = I - tau_i v_i v_i^T, v_i(i) = 1, R on and above the diagonal,
/// v_i below it). Written once; a team of size 1 runs it serially.

#include <hfisher/core/math.hpp>

namespace hfisher {
namespace kernels {
namespace impl {

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
        Kokkos::TeamThreadRange(t, i + 1, m),
        [&](const int r, T& s) { s += A[r * s0 + i * s1] * A[r * s0 + i * s1]; }, xnorm2);
    const T alpha = A[i * s0 + i * s1];
    t.team_barrier();
    T ti = T(0);
    if (xnorm2 > T(0)) {
      const T beta = -math::sign(math::hypot(alpha, math::sqrt(xnorm2)), alpha);
      ti = (beta - alpha) / beta;
      const T scale = T(1) / (alpha - beta);
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, i, m), [&](const int r) {
        A[r * s0 + i * s1] = r == i ? beta : A[r * s0 + i * s1] * scale;
      });
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

}  // namespace impl
}  // namespace kernels
}  // namespace hfisher
