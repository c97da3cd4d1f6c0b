#pragma once
/// \file impl/jacobi.hpp
/// \brief Team-level one-sided (Hestenes) Jacobi SVD and two-sided cyclic
/// Jacobi symmetric eigensolver on raw pointers with strides.
/// Jacobi methods are accurate (small singular values to high relative
/// accuracy for well-scaled columns), simple and batch well; with a team of
/// size 1 they run serially.

#include <hfisher/core/math.hpp>

namespace hfisher {
namespace kernels {
namespace detail {

/// A power of 2 that brings amax (the largest |entry| of a block) into
/// [1/2, 2); 1 for zero or a non-finite amax. Scaling by it is exact, and it
/// keeps sums of squares of the block clear of denormals and overflow.
template <class T>
KOKKOS_INLINE_FUNCTION T pow2_scale(T amax) {
  T scale = T(1);
  if (amax > T(0) && math::isfinite(amax)) {
    const T top = T(1) / math::limits<T>::tiny();
    while (amax * scale >= T(2)) scale *= T(0.5);
    while (amax * scale < T(0.5) && scale < top) scale *= T(2);
  }
  return scale;
}

/// Column dot products alpha = |x|^2, beta = |y|^2, gamma = x.y over m rows.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void dot3(const Member& t, int m, const T* x, const T* y, int s, T& a, T& b, T& g) {
  if (t.team_size() == 1) {
    // VL independent partial sums: vectorizes without reassociating
    constexpr int VL = 8;
    T pa[VL], pb[VL], pg[VL];
    for (int v = 0; v < VL; ++v) pa[v] = pb[v] = pg[v] = T(0);
    const int mv = s == 1 ? m - m % VL : 0;
    for (int r = 0; r < mv; r += VL)
      for (int v = 0; v < VL; ++v) {
        const T xr = x[r + v], yr = y[r + v];
        pa[v] += xr * xr;
        pb[v] += yr * yr;
        pg[v] += xr * yr;
      }
    T sa = T(0), sb = T(0), sg = T(0);
    for (int v = 0; v < VL; ++v) {
      sa += pa[v];
      sb += pb[v];
      sg += pg[v];
    }
    for (int r = mv; r < m; ++r) {
      const T xr = x[r * s], yr = y[r * s];
      sa += xr * xr;
      sb += yr * yr;
      sg += xr * yr;
    }
    a = sa;
    b = sb;
    g = sg;
  } else {
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(t, 0, m), [&](const int r, T& v) { v += x[r * s] * x[r * s]; }, a);
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(t, 0, m), [&](const int r, T& v) { v += y[r * s] * y[r * s]; }, b);
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(t, 0, m), [&](const int r, T& v) { v += x[r * s] * y[r * s]; }, g);
  }
}

/// Plane rotation of two columns: x <- c x - s y, y <- s x + c y.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void rotate_cols(const Member& t, int m, T* x, T* y, int stride, T c, T s) {
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int r) {
    const T xr = x[r * stride], yr = y[r * stride];
    x[r * stride] = c * xr - s * yr;
    y[r * stride] = s * xr + c * yr;
  });
}

/// Sorts the n values d (and the matching columns of X (mx rows) and Y
/// (my rows), either may be null) descending (desc) or ascending.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void sort_with_columns(const Member& t, int n, T* d, bool desc, T* X, int mx, int x0, int x1,
                                              T* Y, int my, int y0, int y1) {
  for (int i = 0; i < n - 1; ++i) {
    int best = i;
    for (int j = i + 1; j < n; ++j)
      if (desc ? d[j] > d[best] : d[j] < d[best]) best = j;
    if (best == i) continue;
    t.team_barrier();
    if (X)
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, mx), [&](const int r) {
        const T a = X[r * x0 + i * x1];
        X[r * x0 + i * x1] = X[r * x0 + best * x1];
        X[r * x0 + best * x1] = a;
      });
    if (Y)
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, my), [&](const int r) {
        const T a = Y[r * y0 + i * y1];
        Y[r * y0 + i * y1] = Y[r * y0 + best * y1];
        Y[r * y0 + best * y1] = a;
      });
    t.team_barrier();
    Kokkos::single(Kokkos::PerTeam(t), [&]() {
      const T a = d[i];
      d[i] = d[best];
      d[best] = a;
    });
    t.team_barrier();
  }
}

/// One-sided Jacobi SVD of the m x n block A (m >= n): A = U diag(S) V^T with
/// U m x n (strides u0, u1), S n values descending, V n x n (v0, v1).
/// Columns whose norm falls to sqrt(m) eps |A|_F or below are numerically zero and
/// are not rotated further (their singular values are returned as computed,
/// below sqrt(m) eps |A|_F; U columns of exactly zero ones are zero). Returns the number of
/// sweeps, or -1 if it did not converge in max_sweeps.
/// The caller scales the block first (kernels::svd: entry_scales), so that
/// no sum of squares falls into denormals or overflows.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION int jacobi_svd(const Member& t, int m, int n, const T* A, int a0, int a1, T* U, int u0, int u1,
                                      T* S, T* V, int v0, int v1, int max_sweeps) {
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int j) {
    for (int r = 0; r < m; ++r) U[r * u0 + j * u1] = A[r * a0 + j * a1];
    for (int r = 0; r < n; ++r) V[r * v0 + j * v1] = r == j ? T(1) : T(0);
  });
  t.team_barrier();
  const T tol = math::limits<T>::eps() * T(m > 1 ? m : 1);
  // columns with norm <= sqrt(m) eps |A|_F are numerically zero: rotations with
  // large columns leave absolute errors of that size in them, so rotating
  // them only shuffles rounding noise (and never converges on rank-deficient
  // or strongly graded input)
  T fro2 = T(0);
  Kokkos::parallel_reduce(
      Kokkos::TeamThreadRange(t, 0, n),
      [&](const int j, T& v) {
        for (int r = 0; r < m; ++r) v += U[r * u0 + j * u1] * U[r * u0 + j * u1];
      },
      fro2);
  const T negligible = tol * math::limits<T>::eps() * fro2;
  int sweeps = -1;
  for (int sweep = 0; sweep < max_sweeps; ++sweep) {
    bool rotated = false;
    for (int p = 0; p < n - 1; ++p) {
      for (int q = p + 1; q < n; ++q) {
        T alpha, beta, gamma;
        dot3(t, m, U + p * u1, U + q * u1, u0, alpha, beta, gamma);
        t.team_barrier();
        if (gamma == T(0) || alpha <= negligible || beta <= negligible ||
            !(math::abs(gamma) > tol * math::sqrt(alpha) * math::sqrt(beta)))
          continue;
        rotated = true;
        const T zeta = (beta - alpha) / (T(2) * gamma);
        const T tn = math::sign(T(1), zeta) / (math::abs(zeta) + math::sqrt(T(1) + zeta * zeta));
        const T c = T(1) / math::sqrt(T(1) + tn * tn);
        const T s = c * tn;
        rotate_cols(t, m, U + p * u1, U + q * u1, u0, c, s);
        rotate_cols(t, n, V + p * v1, V + q * v1, v0, c, s);
        t.team_barrier();
      }
    }
    if (!rotated) {
      sweeps = sweep + 1;
      break;
    }
  }
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int j) {
    T s = T(0);
    for (int r = 0; r < m; ++r) s += U[r * u0 + j * u1] * U[r * u0 + j * u1];
    s = math::sqrt(s);
    S[j] = s;
    const T inv = s > T(0) ? T(1) / s : T(0);
    for (int r = 0; r < m; ++r) U[r * u0 + j * u1] *= inv;
  });
  t.team_barrier();
  sort_with_columns(t, n, S, true, U, m, u0, u1, V, n, v0, v1);
  return sweeps;
}

/// Cyclic two-sided Jacobi eigensolver for the symmetric n x n block W
/// (overwritten; strides w0, w1): eigenvalues to d (ascending), orthonormal
/// eigenvectors to the columns of V. Returns sweeps or -1.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION int jacobi_syev(const Member& t, int n, T* W, int w0, int w1, T* d, T* V, int v0, int v1,
                                       int max_sweeps) {
  T fro = T(0);
  Kokkos::parallel_reduce(
      Kokkos::TeamThreadRange(t, 0, n),
      [&](const int i, T& s) {
        for (int j = 0; j < n; ++j) s += W[i * w0 + j * w1] * W[i * w0 + j * w1];
      },
      fro);
  fro = math::sqrt(fro);
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int j) {
    for (int r = 0; r < n; ++r) V[r * v0 + j * v1] = r == j ? T(1) : T(0);
  });
  t.team_barrier();
  const T eps = math::limits<T>::eps();
  const T floor_abs = eps * eps * fro;
  int sweeps = -1;
  for (int sweep = 0; sweep < max_sweeps; ++sweep) {
    bool rotated = false;
    for (int p = 0; p < n - 1; ++p) {
      for (int q = p + 1; q < n; ++q) {
        const T apq = W[p * w0 + q * w1];
        const T app = W[p * w0 + p * w1], aqq = W[q * w0 + q * w1];
        const T thr = math::max(eps * math::sqrt(math::abs(app)) * math::sqrt(math::abs(aqq)), floor_abs);
        if (!(math::abs(apq) > thr)) continue;
        rotated = true;
        const T theta = (aqq - app) / (T(2) * apq);
        const T tn = math::sign(T(1), theta) / (math::abs(theta) + math::sqrt(T(1) + theta * theta));
        const T c = T(1) / math::sqrt(T(1) + tn * tn);
        const T s = c * tn;
        t.team_barrier();
        rotate_cols(t, n, W + p * w1, W + q * w1, w0, c, s);  // W J
        t.team_barrier();
        rotate_cols(t, n, W + p * w0, W + q * w0, w1, c, s);  // J^T (W J)
        rotate_cols(t, n, V + p * v1, V + q * v1, v0, c, s);
        t.team_barrier();
        Kokkos::single(Kokkos::PerTeam(t), [&]() {
          W[p * w0 + q * w1] = T(0);
          W[q * w0 + p * w1] = T(0);
          W[p * w0 + p * w1] = app - tn * apq;
          W[q * w0 + q * w1] = aqq + tn * apq;
        });
        t.team_barrier();
      }
    }
    if (!rotated) {
      sweeps = sweep + 1;
      break;
    }
  }
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int i) { d[i] = W[i * w0 + i * w1]; });
  t.team_barrier();
  sort_with_columns(t, n, d, false, V, n, v0, v1, (T*)nullptr, 0, 0, 0);
  return sweeps;
}

}  // namespace detail
}  // namespace kernels
}  // namespace hfisher
