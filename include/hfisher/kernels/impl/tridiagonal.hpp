#pragma once
/// \file impl/tridiagonal.hpp
/// \brief Team-level symmetric eigensolver by Householder reduction to
/// tridiagonal form and the implicitly shifted QL iteration, on raw pointers
/// with strides.
///
/// Cost O(n^3) with a small constant (about 4/3 n^3 for the reduction, 2/3 n^3
/// for forming Q, ~3 n^3 for the QL rotations applied to Q), and O(n) team
/// barriers in all: every O(n^2) step is one team-parallel loop over rows.
/// This is what makes K-FAC's factor eigendecompositions O(N^1.5) in the
/// layer size N = rows x cols; the cyclic Jacobi solver (impl/jacobi.hpp)
/// needs ~10 sweeps of n^2/2 rotations, each a team barrier, and stays the
/// choice for small blocks, where its high relative accuracy is cheap.
///
/// The QL iteration itself (d, e updates) is O(n) per step and runs on one
/// thread of the team; the rotations it produces are recorded and applied to
/// the rows of Q in parallel (each row takes the whole sequence; with unit
/// column stride Q is transposed for it, so that the rotations vectorize
/// across rows).

#include <hfisher/core/math.hpp>
#include <hfisher/kernels/impl/householder.hpp>

namespace hfisher {
namespace kernels {
namespace detail {

/// Entries of a row that one thread of a team rotates at a time when a
/// sequence of plane rotations is applied across rows (the chunk's rows stay
/// in cache for the whole sequence).
constexpr int rotation_chunk = 64;

/// Rotates entries [r0, r1) of the rows xp and xq:
/// xp <- c xp + s xq, xq <- c xq - s xp.
template <class T>
KOKKOS_INLINE_FUNCTION void rotate_rows(T* xp, T* xq, T c, T s, int r0, int r1) {
  for (int r = r0; r < r1; ++r) {
    const T a = xp[r], b = xq[r];
    xp[r] = c * a + s * b;
    xq[r] = c * b - s * a;
  }
}

/// sqrt(a^2 + b^2) without overflow or harmful underflow.
template <class T>
KOKKOS_INLINE_FUNCTION T safe_hypot(T a, T b) {
  a = math::abs(a);
  b = math::abs(b);
  const T big = a > b ? a : b, small = a > b ? b : a;
  if (big == T(0)) return T(0);
  const T r = small / big;
  return big * math::sqrt(T(1) + r * r);
}

/// Dot product of n contiguous entries. On the host, L = two 64-byte
/// vectors of lanes each keep their own partial sum, so that the loop
/// vectorizes into independent fused multiply-adds without reassociation
/// flags (with four scalar partial sums, GCC packed the loads but then
/// summed the lanes one by one, in order); on a GPU thread four partial
/// sums.
template <class T>
KOKKOS_INLINE_FUNCTION T dot_contiguous(int n, const T* x, const T* y) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  constexpr int L = 4;
#else
  constexpr int L = 128 / int(sizeof(T));
#endif
  T s[L];
  for (int l = 0; l < L; ++l) s[l] = T(0);
  int j = 0;
  for (; j + L <= n; j += L)
    for (int l = 0; l < L; ++l) s[l] += x[j + l] * y[j + l];
  for (int l = 0; j < n; ++j, ++l) s[l] += x[j] * y[j];
  for (int w = L / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) s[l] += s[l + w];
  return s[0];
}

/// Coefficients of the reflector I - tau v v^T that maps (alpha, x) to
/// (beta, 0), with xnorm2 = |x|^2 and v = (1, scale x); xnorm2 = 0 gives
/// the identity (tau = 0, beta = alpha, scale 1).
template <class T>
struct TridiagonalReflector {
  T beta, tau, scale;
};
template <class T>
KOKKOS_INLINE_FUNCTION TridiagonalReflector<T> tridiagonal_reflector(T alpha, T xnorm2) {
  if (xnorm2 == T(0)) return {alpha, T(0), T(1)};
  const T beta = -math::sign(math::sqrt(alpha * alpha + xnorm2), alpha);
  return {beta, (beta - alpha) / beta, T(1) / (alpha - beta)};
}

/// Reduces the symmetric n x n block A (both triangles stored; overwritten)
/// to tridiagonal form Q^T A Q = T by n - 2 Householder reflectors
/// H_k = I - tau_k v_k v_k^T acting on rows k+1..n-1 (v_k(k+1) = 1, the rest
/// kept below the subdiagonal of column k of A). Diagonal to d, subdiagonal to
/// e (e[n-1] = 0), the tau_k to tau; p and v are n scratch each (v holds the
/// current reflector contiguously: column k of A is strided). With k_begin >
/// 0, columns before k_begin are taken as reduced already (d, e, tau and
/// their reflectors written) and the trailing block as updated.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void householder_tridiagonalize(const Member& t, int n, T* A, int a0, int a1, T* d, T* e, T* tau,
                                                       T* p, T* v, int k_begin = 0) {
  auto at = [&](int i, int j) -> T& { return A[long(i) * a0 + long(j) * a1]; };
  for (int k = k_begin; k + 2 < n; ++k) {
    T xnorm2 = T(0);
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(t, k + 2, n), [&](const int i, T& s) { s += at(i, k) * at(i, k); }, xnorm2);
    const T alpha = at(k + 1, k);
    if (xnorm2 == T(0)) {  // already reduced in this column: H_k = I
      t.team_barrier();
      Kokkos::single(Kokkos::PerTeam(t), [&]() {
        d[k] = at(k, k);
        e[k] = alpha;
        tau[k] = T(0);
      });
      t.team_barrier();
      continue;
    }
    const auto h = tridiagonal_reflector(alpha, xnorm2);
    const T beta = h.beta, tk = h.tau, scal = h.scale;
    t.team_barrier();
    // v = (1, A[k+2.., k] / (alpha - beta)), kept in A's column k and in v
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, k + 1, n), [&](const int i) {
      if (i == k + 1) {
        v[i] = T(1);
      } else {
        const T vi = at(i, k) * scal;
        at(i, k) = vi;
        v[i] = vi;
      }
    });
    t.team_barrier();
    const int lo = k + 1, len = n - lo;
    // p = tau A22 v over rows k+1..n-1
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, lo, n), [&](const int i) {
      T s;
      if (a1 == 1) {
        s = dot_contiguous(len, &at(i, lo), v + lo);
      } else {
        s = T(0);
        for (int j = lo; j < n; ++j) s += at(i, j) * v[j];
      }
      p[i] = tk * s;
    });
    t.team_barrier();
    T pv = T(0);
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(t, lo, n), [&](const int i, T& s) { s += p[i] * v[i]; }, pv);
    const T K = T(0.5) * tk * pv;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, lo, n), [&](const int i) { p[i] -= K * v[i]; });
    t.team_barrier();
    // A22 <- A22 - v w^T - w v^T with w = p
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, lo, n), [&](const int i) {
      const T vi = v[i], wi = p[i];
      if (a1 == 1) {
        T* row = &at(i, 0);
        for (int j = lo; j < n; ++j) row[j] -= vi * p[j] + wi * v[j];
      } else {
        for (int j = lo; j < n; ++j) at(i, j) -= vi * p[j] + wi * v[j];
      }
    });
    t.team_barrier();
    Kokkos::single(Kokkos::PerTeam(t), [&]() {
      d[k] = at(k, k);
      e[k] = beta;
      tau[k] = tk;
    });
    t.team_barrier();
  }
  Kokkos::single(Kokkos::PerTeam(t), [&]() {
    if (n >= 2) {
      d[n - 2] = at(n - 2, n - 2);
      e[n - 2] = at(n - 1, n - 2);
      tau[n - 2] = T(0);
    }
    d[n - 1] = at(n - 1, n - 1);
    e[n - 1] = T(0);
    tau[n - 1] = T(0);
  });
  t.team_barrier();
}

/// Panel width of householder_tridiagonalize_blocked; it hands the last
/// 2 x tridiagonal_panel columns or fewer to the unblocked loop.
constexpr int tridiagonal_panel = 32;

/// Scalars of workspace householder_tridiagonalize_blocked needs for n x n.
KOKKOS_INLINE_FUNCTION long tridiagonal_reduce_blocked_work(int n) {
  return 4L * tridiagonal_panel * n + 2 * tridiagonal_panel;
}

/// householder_tridiagonalize blocked as LAPACK's dsytrd/dlatrd, for host
/// teams and A with unit column stride; same output. Columns are reduced in
/// panels of NB = tridiagonal_panel: within a panel the trailing block is
/// left as it was at the panel's start and each new reflector v_i and its
/// w_i (A22 <- A22 - v w^T - w v^T) are kept aside; a column is brought up
/// to date just before it is reduced, and A22 v is corrected by the panel's
/// earlier pairs. After the panel, the trailing block takes all of its
/// updates at once, A22 -= [V W] [W V]^T, as one GEMM of inner size 2 NB
/// (columns split among the team's threads). That replaces the unblocked
/// loop's rank-2 pass over the trailing block per column, leaving one
/// matrix-vector pass per column. p and v: n scratch each; work:
/// tridiagonal_reduce_blocked_work(n).
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void householder_tridiagonalize_blocked(const Member& t, int n, T* A, int a0, T* d, T* e, T* tau,
                                                               T* p, T* v, T* work) {
  constexpr int NB = tridiagonal_panel;
  auto at = [&](int i, int j) -> T& { return A[long(i) * a0 + j]; };
  const int nth = t.team_size();
  // rows [lo, hi) split evenly among the team's threads: thread w's share
  auto share = [&](int w, int lo, int hi, int& r0, int& r1) {
    const int per = (hi - lo + nth - 1) / nth;
    r0 = lo + w * per;
    r1 = r0 + per < hi ? r0 + per : hi;
  };
  int k0 = 0;
  for (; n - k0 > 2 * NB; k0 += NB) {
    const int m = n - k0;
    // Y = [V; W] and Z = [W; V], 2 NB x m each, row c holding v_c (or w_c)
    // at the panel's rows k0..n-1 (index r - k0); y: the 2 NB products with
    // the current reflector
    T* Y = work;
    T* Z = work + 2L * NB * m;
    T* y = work + 4L * NB * m;
    auto vc = [&](int c) { return Y + long(c) * m; };
    auto wc = [&](int c) { return Y + long(NB + c) * m; };
    for (int i = 0; i < NB; ++i) {
      const int j = k0 + i, jr = j - k0;
      // column j (rows j..n-1) takes the panel's earlier updates
      if (i > 0) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, nth), [&](const int w) {
          int r0, r1;
          share(w, j, n, r0, r1);
          // summed in p over the thread's rows (contiguous in the panel:
          // vectorizes), then one strided pass down A's column
          for (int r = r0; r < r1; ++r) p[r] = T(0);
          for (int c = 0; c < i; ++c) {
            const T* vcc = vc(c);
            const T* wcc = wc(c);
            const T wj = wcc[jr], vj = vcc[jr];
            for (int r = r0; r < r1; ++r) p[r] += vcc[r - k0] * wj + wcc[r - k0] * vj;
          }
          for (int r = r0; r < r1; ++r) at(r, j) -= p[r];
        });
        t.team_barrier();
      }
      T xnorm2 = T(0);
      Kokkos::parallel_reduce(
          Kokkos::TeamThreadRange(t, j + 2, n), [&](const int r, T& s) { s += at(r, j) * at(r, j); }, xnorm2);
      const T alpha = at(j + 1, j);
      const auto h = tridiagonal_reflector(alpha, xnorm2);
      const T beta = h.beta, tk = h.tau, scal = h.scale;
      t.team_barrier();
      T* vi = vc(i);
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, j + 1, n), [&](const int r) {
        if (r == j + 1) {
          vi[r - k0] = T(1);
        } else {
          const T x = at(r, j) * scal;
          at(r, j) = x;
          vi[r - k0] = x;
        }
      });
      t.team_barrier();
      const int lo = j + 1, len = n - lo;
      const T* vlo = vi + (lo - k0);
      // the earlier pairs' products with v: y_c = w_c . v, y_{NB+c} = v_c . v
      if (i > 0) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, 2 * i), [&](const int q) {
          const T* src = q < i ? wc(q) : vc(q - i);
          y[q < i ? q : NB + q - i] = dot_contiguous(len, src + (lo - k0), vlo);
        });
        t.team_barrier();
      }
      // w = tau (A22 v - V (W^T v) - W (V^T v)) over rows lo..n-1
      T* wi = wc(i);
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, nth), [&](const int w) {
        int r0, r1;
        share(w, lo, n, r0, r1);
        if (tk == T(0)) {
          for (int r = r0; r < r1; ++r) wi[r - k0] = T(0);
          return;
        }
        for (int r = r0; r < r1; ++r) wi[r - k0] = dot_contiguous(len, &at(r, lo), vlo);
        for (int c = 0; c < i; ++c) {
          const T* vcc = vc(c);
          const T* wcc = wc(c);
          const T yw = y[c], yv = y[NB + c];
          for (int r = r0; r < r1; ++r) wi[r - k0] -= vcc[r - k0] * yw + wcc[r - k0] * yv;
        }
        for (int r = r0; r < r1; ++r) wi[r - k0] *= tk;
      });
      t.team_barrier();
      T pv = T(0);
      Kokkos::parallel_reduce(
          Kokkos::TeamThreadRange(t, lo, n), [&](const int r, T& s) { s += wi[r - k0] * vi[r - k0]; }, pv);
      const T K = T(0.5) * tk * pv;
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, lo, n), [&](const int r) { wi[r - k0] -= K * vi[r - k0]; });
      Kokkos::single(Kokkos::PerTeam(t), [&]() {
        d[j] = at(j, j);
        e[j] = beta;
        tau[j] = tk;
      });
      t.team_barrier();
    }
    // Z = [W; V] for the trailing update's right operand
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, 2 * NB), [&](const int q) {
      const T* src = Y + long(q < NB ? NB + q : q - NB) * m;
      T* dst = Z + long(q) * m;
      for (int r = NB; r < m; ++r) dst[r] = src[r];
    });
    t.team_barrier();
    // A22 -= [V W] [W V]^T on rows and columns k0+NB..n-1, each thread a
    // slice of columns (a multiple of 16 wide)
    const int s0 = k0 + NB, mt = n - s0, per = ((mt + nth - 1) / nth + 15) / 16 * 16;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, nth), [&](const int w) {
      const int c0 = w * per, c1 = c0 + per < mt ? c0 + per : mt;
      if (c0 >= c1) return;
      gemm_serial_blocked<T>(mt, c1 - c0, 2 * NB, T(-1), Y + NB, 1, m, Z + NB + c0, m, 1, T(1), &at(s0, s0 + c0), a0,
                             1);
    });
    t.team_barrier();
  }
  householder_tridiagonalize(t, n, A, a0, 1, d, e, tau, p, v, k0);
}

/// Forms Q = H_0 H_1 ... H_{n-3} from householder_tridiagonalize's reflectors
/// (vectors in A below the subdiagonal, tau) into V (n x n, strides v0, v1);
/// y is n scratch.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void form_tridiagonal_q(const Member& t, int n, const T* A, int a0, int a1, const T* tau, T* V,
                                               int v0, int v1, T* y) {
  auto vat = [&](int i, int j) -> T& { return V[long(i) * v0 + long(j) * v1]; };
  auto vec = [&](int i, int k) -> T { return i == k + 1 ? T(1) : A[long(i) * a0 + long(k) * a1]; };
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int i) {
    for (int j = 0; j < n; ++j) vat(i, j) = i == j ? T(1) : T(0);
  });
  t.team_barrier();
  for (int k = n - 3; k >= 0; --k) {
    const T tk = tau[k];
    if (tk == T(0)) continue;
    // y_j = sum_i v_i V(i, j) over the trailing block, in column blocks of CB
    // (rows are walked contiguously within a block)
    constexpr int CB = 16;
    const int lo = k + 1, nblk = (n - lo + CB - 1) / CB;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, nblk), [&](const int blk) {
      const int j0 = lo + blk * CB, j1 = j0 + CB < n ? j0 + CB : n;
      T acc[CB];
      for (int jj = 0; jj < CB; ++jj) acc[jj] = T(0);
      for (int i = lo; i < n; ++i) {
        const T vi = vec(i, k);
        for (int j = j0; j < j1; ++j) acc[j - j0] += vi * vat(i, j);
      }
      for (int j = j0; j < j1; ++j) y[j] = tk * acc[j - j0];
    });
    t.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, lo, n), [&](const int i) {
      const T vi = vec(i, k);
      for (int j = lo; j < n; ++j) vat(i, j) -= vi * y[j];
    });
    t.team_barrier();
  }
}

/// Scalars of workspace form_tridiagonal_q_blocked needs for an n x n Q.
KOKKOS_INLINE_FUNCTION long tridiagonal_q_blocked_work(int n) { return qr_blocked_work(n, n); }

/// form_tridiagonal_q blocked, for host teams and Q with unit column stride:
/// Q = diag(1, Q') where Q' = H'_0 ... H'_{n-3} are the same reflectors in
/// QR storage one row down (A + a0: reflector k has its implicit 1 in row
/// k), so Q' is formed as qr_form_q's blocked form does, panel by panel
/// from the last, Q' -= V (T (V^T Q')) with two GEMMs, the trailing columns
/// split among the team's threads. work: tridiagonal_q_blocked_work(n).
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void form_tridiagonal_q_blocked(const Member& t, int n, const T* A, int a0, int a1, const T* tau,
                                                       T* V, int v0, T* work) {
  constexpr int P = qr_panel;
  const int m = n - 1, kr = n - 2;
  T* Vp = work;
  T* W = Vp + long(m) * P;
  T* Tm = W + long(P) * m;
  T* G = Tm + P * P;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, n), [&](const int i) {
    for (int j = 0; j < n; ++j) V[long(i) * v0 + j] = i == j ? T(1) : T(0);
  });
  t.team_barrier();
  if (kr <= 0) return;
  const T* Ar = A + a0;  // the reflectors in QR storage
  T* Q = V + v0 + 1;     // Q': rows and columns 1..n-1
  for (int p0 = ((kr - 1) / P) * P; p0 >= 0; p0 -= P) {
    const int pb = kr - p0 < P ? kr - p0 : P, mv = m - p0, nt = m - p0;
    Kokkos::single(Kokkos::PerTeam(t), [&]() { panel_wy<T>(m, p0, pb, Ar, a0, a1, tau, Vp, Tm, G); });
    t.team_barrier();
    // rows < p0 of columns >= p0 are still zero, columns < p0 still e_j:
    // only the trailing mv x nt block changes; each thread takes a slice of
    // its columns (a multiple of 16 wide)
    const int nth = t.team_size(), per = ((nt + nth - 1) / nth + 15) / 16 * 16;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, nth), [&](const int w) {
      const int j0 = w * per, j1 = j0 + per < nt ? j0 + per : nt;
      if (j0 >= j1) return;
      T* C = Q + long(p0) * v0 + p0 + j0;
      T* Wj = W + j0;  // W: pb x nt, row stride nt
      gemm_serial_blocked<T>(pb, j1 - j0, mv, T(1), Vp, 1, P, C, v0, 1, T(0), Wj, nt, 1);
      // W = T W on these columns, rows from the first (row i reads rows >= i)
      for (int i = 0; i < pb; ++i)
        for (int j = j0; j < j1; ++j) {
          T acc = T(0);
          for (int l = i; l < pb; ++l) acc += Tm[i * P + l] * W[l * nt + j];
          W[i * nt + j] = acc;
        }
      gemm_serial_blocked<T>(mv, j1 - j0, pb, T(-1), Vp, P, 1, Wj, nt, 1, T(1), C, v0, 1);
    });
    t.team_barrier();
  }
}

/// One implicitly shifted QL step on the unreduced part of the tridiagonal
/// (d, e) that starts at l (e[i] couples i and i + 1). Returns -1 when d[l]
/// has converged (nothing done), else m * (n + 1) + nrot: the rotations
/// (cs[q], sn[q]) act on columns (m-1-q, m-q), q = 0..nrot-1, of Q.
/// An off-diagonal counts as zero below eps max(|d[m]| + |d[m+1]|, tnorm),
/// tnorm = max_i |d_i| + |e_i|: absolute accuracy eps |A|, which also lets
/// the many (near-)zero eigenvalues of a low-rank factor converge.
template <class T>
KOKKOS_INLINE_FUNCTION long ql_step(int n, int l, T* d, T* e, T* cs, T* sn, T tnorm) {
  const T eps = math::limits<T>::eps();
  int m = l;
  for (; m < n - 1; ++m) {
    const T dd = math::abs(d[m]) + math::abs(d[m + 1]);
    if (math::abs(e[m]) <= eps * (dd > tnorm ? dd : tnorm)) break;
  }
  if (m == l) return -1;
  // Wilkinson-like shift from the leading 2 x 2 block
  T g = (d[l + 1] - d[l]) / (T(2) * e[l]);
  T r = safe_hypot(g, T(1));
  g = d[m] - d[l] + e[l] / (g + math::sign(r, g));
  T s = T(1), c = T(1), p = T(0);
  int nrot = 0;
  bool underflow = false;
  for (int i = m - 1; i >= l; --i) {
    const T f = s * e[i], b = c * e[i];
    r = safe_hypot(f, g);
    e[i + 1] = r;
    if (r == T(0)) {  // split: restart with the shorter chain
      d[i + 1] -= p;
      e[m] = T(0);
      underflow = true;
      break;
    }
    s = f / r;
    c = g / r;
    g = d[i + 1] - p;
    r = (d[i] - g) * s + T(2) * c * b;
    p = s * r;
    d[i + 1] = g + p;
    g = c * r - b;
    cs[nrot] = c;
    sn[nrot] = s;
    ++nrot;
  }
  if (!underflow) {
    d[l] -= p;
    e[l] = g;
    e[m] = T(0);
  }
  return long(m) * (n + 1) + nrot;
}

/// Rotations the QL iteration may record before they are applied to Q
/// (capacity of the rotation buffer, a multiple of n) and the most QL steps
/// batched into one application.
KOKKOS_INLINE_FUNCTION int ql_rotation_capacity(int n) { return 16 * (n > 4 ? n : 4); }
constexpr int ql_batch_steps = 64;

/// Runs QL steps on (d, e) from the state (state[0] = l, state[1] = steps
/// on l so far) until the rotation buffer (cs, sn; cap entries) or the
/// metadata (meta: m and rotation count per step, up to max_steps steps) is
/// full or every eigenvalue has converged. Returns the steps recorded (0:
/// done), or -1 when an eigenvalue needs more than max_it steps.
template <class T>
KOKKOS_INLINE_FUNCTION int ql_batch(int n, T* d, T* e, T* cs, T* sn, int cap, int* meta, int max_steps, int* state,
                                    T tnorm, int max_it) {
  int l = state[0], it = state[1], used = 0, ns = 0;
  while (l < n && ns < max_steps && used + n <= cap) {
    const long code = ql_step(n, l, d, e, cs + used, sn + used, tnorm);
    if (code < 0) {
      ++l;
      it = 0;
      continue;
    }
    if (it >= max_it) return -1;
    ++it;
    const int m = int(code / (n + 1)), nrot = int(code % (n + 1));
    meta[2 * ns] = m;
    meta[2 * ns + 1] = nrot;
    ++ns;
    used += nrot;
  }
  state[0] = l;
  state[1] = it;
  return ns;
}

/// In-place transpose of the n x n block V (row stride v0, unit column
/// stride) by the team: each thread swaps the entries left of the diagonal
/// in its rows with their mirror images.
template <class Member, class T>
KOKKOS_INLINE_FUNCTION void transpose_square(const Member& t, int n, T* V, int v0) {
  Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 1, n), [&](const int i) {
    for (int j = 0; j < i; ++j) {
      const T x = V[long(i) * v0 + j];
      V[long(i) * v0 + j] = V[long(j) * v0 + i];
      V[long(j) * v0 + i] = x;
    }
  });
}

/// Scalars of work tridiagonal_syev needs: e, tau and two vectors (4 n),
/// then the rotation buffer (2 ql_rotation_capacity(n)) followed, with
/// blocked, by form_tridiagonal_q_blocked's work; the blocked reduction,
/// which runs before either is used, takes the same space from the rotation
/// buffer on.
KOKKOS_INLINE_FUNCTION long tridiagonal_syev_work(int n, bool blocked) {
  const long ql = 2L * ql_rotation_capacity(n) + (blocked ? tridiagonal_q_blocked_work(n) : 0);
  const long reduce = blocked ? tridiagonal_reduce_blocked_work(n) : 0;
  return 4L * n + (ql > reduce ? ql : reduce);
}

/// Eigendecomposition of the symmetric n x n block A (both triangles;
/// overwritten): eigenvalues to d (unsorted), eigenvectors to the columns of V.
/// work: tridiagonal_syev_work(n, blocked_q) scratch (blocked_q: host
/// teams; where A and V have unit column stride, the reduction runs
/// householder_tridiagonalize_blocked and Q is formed by
/// form_tridiagonal_q_blocked); iwork: 2 ql_batch_steps + 2.
/// Returns the number of QL steps, or -1 when an eigenvalue did not converge
/// in max_steps_per_value steps.
///
/// The QL steps run on one thread, which records their rotations; the team
/// applies a whole batch of steps (up to ql_batch_steps, or a buffer of 16 n
/// rotations) to the rows of Q in one pass, so Q streams through memory once
/// per batch rather than once per step (what keeps n = 2048, a 32 MB Q, from
/// being bound by memory bandwidth).
template <class Member, class T>
KOKKOS_INLINE_FUNCTION int tridiagonal_syev(const Member& t, int n, T* A, int a0, int a1, T* d, T* V, int v0, int v1,
                                            T* work, int* iwork, int max_steps_per_value, bool blocked_q = false) {
  if (n <= 0) return 0;
  const int cap = ql_rotation_capacity(n);
  T* e = work;
  T* tau = work + n;
  T* p = work + 2 * n;
  T* v = work + 3 * n;
  T* cs = work + 4 * n;
  T* sn = work + 4 * n + cap;
  int* state = iwork;
  int* meta = iwork + 2;
  // blocked: host teams, unit column strides (the reduction's work reuses the
  // rotation buffer, which the QL iteration fills only later)
  if (blocked_q && a1 == 1 && v1 == 1 && n > 2 * tridiagonal_panel) {
    householder_tridiagonalize_blocked(t, n, A, a0, d, e, tau, p, v, cs);
  } else {
    householder_tridiagonalize(t, n, A, a0, a1, d, e, tau, p, v);
  }
  if (blocked_q && v1 == 1 && n > 2)
    form_tridiagonal_q_blocked(t, n, A, a0, a1, tau, V, v0, sn + cap);
  else
    form_tridiagonal_q(t, n, A, a0, a1, tau, V, v0, v1, p);
  // With unit column stride, Q is transposed in place for the rotations, so
  // that entry i of consecutive rows is contiguous: a rotation of columns
  // (i, i + 1) is then two vector loads and stores across rows (each row's
  // own sequence is a dependency chain), and transposed back at the end.
  const bool by_columns = v1 == 1 && n > 1;
  if (by_columns) {
    transpose_square(t, n, V, v0);
    t.team_barrier();
  }
  T tnorm = T(0);
  for (int i = 0; i < n; ++i) tnorm = math::max(tnorm, math::abs(d[i]) + math::abs(e[i]));
  Kokkos::single(Kokkos::PerTeam(t), [&]() {
    state[0] = 0;
    state[1] = 0;
  });
  t.team_barrier();
  int steps = 0;
  while (true) {
    int ns = 0;
    Kokkos::single(
        Kokkos::PerTeam(t),
        [&](int& c) { c = ql_batch(n, d, e, cs, sn, cap, meta, ql_batch_steps, state, tnorm, max_steps_per_value); },
        ns);
    if (ns < 0) {
      if (by_columns) transpose_square(t, n, V, v0);
      return -1;
    }
    if (ns == 0) break;
    steps += ns;
    t.team_barrier();
    if (by_columns) {
      // Z(r, i) at V[i v0 + r]: each thread a chunk of CH rows, every
      // rotation applied across the chunk (vectorizes; the chunk's 2 x n
      // entries stay in cache for the batch's whole sequence)
      constexpr int CH = rotation_chunk;
      Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, (n + CH - 1) / CH), [&](const int g) {
        const int r0 = g * CH, r1 = r0 + CH <= n ? r0 + CH : n;
        int off = 0;
        for (int st = 0; st < ns; ++st) {
          const int m = meta[2 * st], nrot = meta[2 * st + 1];
          for (int q = 0; q < nrot; ++q) {
            T* zi = V + long(m - 1 - q) * v0;
            rotate_rows(zi + v0, zi, cs[off + q], sn[off + q], r0, r1);
          }
          off += nrot;
        }
      });
      t.team_barrier();
      continue;
    }
    // each row takes the whole rotation sequence of the batch; RG rows at a
    // time give independent chains (one row's sequence is a dependency chain)
    constexpr int RG = 4;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, (n + RG - 1) / RG), [&](const int g) {
      const int r0 = g * RG, nr = r0 + RG <= n ? RG : n - r0;
      int off = 0;
      for (int st = 0; st < ns; ++st) {
        const int m = meta[2 * st], nrot = meta[2 * st + 1];
        const T* c_ = cs + off;
        const T* s_ = sn + off;
        off += nrot;
        if (nr == RG && v1 == 1) {
          T* z[RG];
          for (int u = 0; u < RG; ++u) z[u] = V + long(r0 + u) * v0;
          for (int q = 0; q < nrot; ++q) {
            const int i = m - 1 - q;
            const T c = c_[q], s = s_[q];
            for (int u = 0; u < RG; ++u) {
              const T zi = z[u][i], zi1 = z[u][i + 1];
              z[u][i + 1] = s * zi + c * zi1;
              z[u][i] = c * zi - s * zi1;
            }
          }
        } else {
          for (int u = 0; u < nr; ++u) {
            T* z = V + long(r0 + u) * v0;
            for (int q = 0; q < nrot; ++q) {
              const int i = m - 1 - q;
              const T c = c_[q], s = s_[q];
              const T zi = z[long(i) * v1], zi1 = z[long(i + 1) * v1];
              z[long(i + 1) * v1] = s * zi + c * zi1;
              z[long(i) * v1] = c * zi - s * zi1;
            }
          }
        }
      }
    });
    t.team_barrier();
  }
  if (by_columns) transpose_square(t, n, V, v0);  // the caller's barrier follows
  return steps;
}

}  // namespace detail
}  // namespace kernels
}  // namespace hfisher
