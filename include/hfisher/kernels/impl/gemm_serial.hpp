#pragma once
/// \file impl/gemm_serial.hpp
/// \brief Register-blocked GEMM for one batch entry run by one thread (the
/// Serial mode of host spaces), for the two stride patterns the row-major
/// batch layout produces:
///  - "axpy" form, op(B) contiguous along j: MR x NR blocks of C accumulate
///    a(i, l) * b(l, j0:j0+NR) (vectorized over j);
///  - "dot" form, op(A) and op(B) contiguous along l (C = A B^T on row-major
///    data): MR x NR dot products with VL-wide partial sums (vectorized over l
///    without reassociation).
/// Other stride patterns return false and the caller uses KokkosBatched.

#include <Kokkos_Core.hpp>

// Host builds for AVX2 + FMA get an explicit-intrinsics micro-kernel for the
// axpy form (compilers keep a 6 x 8 double block in registers only when told
// so; GCC 12's auto-vectorized blocks ran at 7-14 GFLOP/s per core on an AVX2
// EPYC, the intrinsics block at about twice that). Never in CUDA translation
// units, whose host and device code share these functions.
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__) && !defined(HFISHER_NO_AVX2_GEMM)
#define HFISHER_GEMM_AVX2 1
#include <immintrin.h>
#else
#define HFISHER_GEMM_AVX2 0
#endif

namespace hfisher {
namespace kernels {
namespace detail {

/// Size (m n k for GEMM, rows x columns x order for TRSM) from which a host
/// team of several threads splits one entry into one slice of rows (or of
/// right-hand sides) per thread, each run by the one-thread kernels of this
/// file. Below it, host teams run KokkosBatched's team code, as the device
/// does, so the `.team2` tests of small kernels still exercise that path.
constexpr long host_split_work = 1L << 22;

/// Splits [0, n) into one slice per thread of the host team `member`, each
/// a multiple of `align` long (the micro-kernel's rows or columns) except
/// the last, and calls f(begin, end) for every non-empty slice on its own
/// thread. The caller's team barrier follows.
template <class Member, class F>
KOKKOS_INLINE_FUNCTION void for_each_team_slice(const Member& member, int n, int align, const F& f) {
  const int ts = member.team_size();
  const int slice = ((n + ts - 1) / ts + align - 1) / align * align;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(member, ts), [&](const int p) {
    const int r0 = p * slice, r1 = r0 + slice < n ? r0 + slice : n;
    if (r0 < r1) f(r0, r1);
  });
}

template <class T>
struct GemmBlock;
template <>
struct GemmBlock<double> {
  static constexpr int MR = 4, NR = 16, VL = 8;
};
template <>
struct GemmBlock<float> {
  static constexpr int MR = 4, NR = 32, VL = 16;
};

/// One MB x NB block of C = alpha op(A) op(B) + beta C in the "axpy" form
/// (op(B) contiguous along j): NB accumulators per row, vectorized over j,
/// each entry summed over l in order.
template <class T, int MB, int NB>
KOKKOS_INLINE_FUNCTION void axpy_block(int i0, int j0, int k, T alpha, T beta, const T* A, int ai, int al, const T* B,
                                       int bl, T* C, int ci, int cj) {
  T acc[MB][NB];
  for (int r = 0; r < MB; ++r)
    for (int c = 0; c < NB; ++c) acc[r][c] = T(0);
  const T* a0p = A + i0 * ai;
  for (int l = 0; l < k; ++l) {
    const T* b = B + l * bl + j0;
    T a[MB];
    for (int r = 0; r < MB; ++r) a[r] = a0p[r * ai + l * al];
    for (int c = 0; c < NB; ++c) {
      const T bc = b[c];
      for (int r = 0; r < MB; ++r) acc[r][c] += a[r] * bc;
    }
  }
  for (int r = 0; r < MB; ++r)
    for (int c = 0; c < NB; ++c) {
      T& x = C[(i0 + r) * ci + (j0 + c) * cj];
      x = beta == T(0) ? alpha * acc[r][c] : alpha * acc[r][c] + beta * x;
    }
}

#if HFISHER_GEMM_AVX2
/// The vector type of the micro-kernel: 512-bit where the build targets
/// AVX-512 (with masked loads and stores for a fringe of fewer than W
/// columns), else 256-bit AVX2.
template <class T>
struct Avx2;
#if defined(__AVX512F__) && !defined(HFISHER_NO_AVX512_GEMM)
#define HFISHER_GEMM_MASKED 1
template <>
struct Avx2<double> {
  using V = __m512d;
  static constexpr int W = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static V load(const double* p, int nc) { return _mm512_maskz_loadu_pd(__mmask8((1u << nc) - 1), p); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V div(V a, V b) { return _mm512_div_pd(a, b); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static void store(double* p, V v, int nc) { _mm512_mask_storeu_pd(p, __mmask8((1u << nc) - 1), v); }
};
template <>
struct Avx2<float> {
  using V = __m512;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(const float* p, int nc) { return _mm512_maskz_loadu_ps(__mmask16((1u << nc) - 1), p); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store(float* p, V v, int nc) { _mm512_mask_storeu_ps(p, __mmask16((1u << nc) - 1), v); }
};
#else
#define HFISHER_GEMM_MASKED 0
template <>
struct Avx2<double> {
  using V = __m256d;
  static constexpr int W = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V div(V a, V b) { return _mm256_div_pd(a, b); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
};
template <>
struct Avx2<float> {
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
};
#endif

#if HFISHER_GEMM_MASKED
/// One MB x nc block (nc < W) of the axpy form in MB registers, with masked
/// loads of op(B) and masked stores of C (rows of C contiguous): the fringe
/// columns stay vectorized.
template <class T, int MB>
inline void axpy_block_masked(int i0, int j0, int k, T alpha, T beta, const T* A, int ai, int al, const T* B, int bl,
                              T* C, int ci, int nc) {
  using X = Avx2<T>;
  using V = typename X::V;
  V acc[MB];
#pragma GCC unroll 8
  for (int r = 0; r < MB; ++r) acc[r] = X::zero();
  const T* a0 = A + long(i0) * ai;
  const T* b = B + j0;
  for (int l = 0; l < k; ++l, b += bl) {
    const V bv = X::load(b, nc);
#pragma GCC unroll 8
    for (int r = 0; r < MB; ++r) acc[r] = X::fma(X::set1(a0[r * ai + l * al]), bv, acc[r]);
  }
  const V va = X::set1(alpha), vb = X::set1(beta);
#pragma GCC unroll 8
  for (int r = 0; r < MB; ++r) {
    T* c = C + long(i0 + r) * ci + j0;
    const V x = X::mul(va, acc[r]);
    X::store(c, beta == T(0) ? x : X::fma(vb, X::load(c, nc), x), nc);
  }
}
#endif

/// One MB x (NV * W) block of the axpy form in MB * NV vector registers
/// (at most 12 of AVX2's 16 (AVX-512: 32), leaving room for the row of
/// op(B) and the broadcast); each entry summed over l in order, as the portable block.
/// nc < NV * W stores only the first nc columns (B then holds a padded panel).
template <class T, int MB, int NV>
inline void axpy_block_avx2(int i0, int j0, int k, T alpha, T beta, const T* A, int ai, int al, const T* B, int bl,
                            T* C, int ci, int cj, int nc = NV * Avx2<T>::W) {
  using X = Avx2<T>;
  using V = typename X::V;
  constexpr int W = X::W;
  V acc[MB][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MB; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = X::zero();
  const T* a0 = A + long(i0) * ai;
  const T* b = B + j0;
  for (int l = 0; l < k; ++l, b += bl) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = X::load(b + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < MB; ++r) {
      const V a = X::set1(a0[r * ai + l * al]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = X::fma(a, bv[v], acc[r][v]);
    }
  }
  if (cj == 1 && nc == NV * W) {  // rows of C contiguous: vector stores
    const V va = X::set1(alpha), vb = X::set1(beta);
#pragma GCC unroll 8
    for (int r = 0; r < MB; ++r) {
      T* c = C + long(i0 + r) * ci + j0;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const V x = X::mul(va, acc[r][v]);
        X::store(c + v * W, beta == T(0) ? x : X::fma(vb, X::load(c + v * W), x));
      }
    }
    return;
  }
  T out[NV * W];
  for (int r = 0; r < MB; ++r) {
    for (int v = 0; v < NV; ++v) X::store(out + v * W, acc[r][v]);
    T* c = C + long(i0 + r) * ci + long(j0) * cj;
    for (int j = 0; j < nc; ++j) {
      T& x = c[j * cj];
      x = beta == T(0) ? alpha * out[j] : alpha * out[j] + beta * x;
    }
  }
}

/// The MB rows from i0 of the axpy form, all n columns: blocks of two
/// vectors, then one, then single columns.
template <class T, int MB>
inline void axpy_rows(int i0, int n, int k, T alpha, T beta, const T* A, int ai, int al, const T* B, int bl, T* C,
                      int ci, int cj) {
  constexpr int W = Avx2<T>::W;
  int j0 = 0;
  for (; j0 + 2 * W <= n; j0 += 2 * W) axpy_block_avx2<T, MB, 2>(i0, j0, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
  if (j0 + W <= n) {
    axpy_block_avx2<T, MB, 1>(i0, j0, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
    j0 += W;
  }
#if HFISHER_GEMM_MASKED
  if (j0 < n && cj == 1) {
    axpy_block_masked<T, MB>(i0, j0, k, alpha, beta, A, ai, al, B, bl, C, ci, n - j0);
    return;
  }
#endif
  for (; j0 < n; ++j0) axpy_block<T, MB, 1>(i0, j0, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
}

/// All rows of the axpy form: blocks of 6, then one block of 4, 2 or 1.
template <class T>
inline void axpy_all(int m, int n, int k, T alpha, T beta, const T* A, int ai, int al, const T* B, int bl, T* C, int ci,
                     int cj) {
  int i0 = 0;
  for (; i0 + 6 <= m; i0 += 6) axpy_rows<T, 6>(i0, n, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
  if (i0 + 4 <= m) {
    axpy_rows<T, 4>(i0, n, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
    i0 += 4;
  }
  if (i0 + 2 <= m) {
    axpy_rows<T, 2>(i0, n, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
    i0 += 2;
  }
  if (i0 < m) axpy_rows<T, 1>(i0, n, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
}

/// The dot form C = alpha A B^T + beta C (op(A) and op(B) contiguous along
/// l) through the axpy kernel: panels of 2W columns of op(B), KC values of l
/// at a time, packed row by row into a stack buffer; later l panels add to C.
template <class T>
inline void dot_all(int m, int n, int k, T alpha, T beta, const T* A, int ai, const T* B, int bj, T* C, int ci,
                    int cj) {
  constexpr int W = Avx2<T>::W, NB = 2 * W, KC = 256;
  alignas(64) T panel[KC * NB];
  for (int j0 = 0; j0 < n; j0 += NB) {
    const int nc = n - j0 < NB ? n - j0 : NB;
    for (int l0 = 0; l0 < k || l0 == 0; l0 += KC) {
      const int kc = k - l0 < KC ? k - l0 : KC;
      for (int l = 0; l < kc; ++l)
        for (int c = 0; c < NB; ++c) panel[l * NB + c] = c < nc ? B[long(j0 + c) * bj + l0 + l] : T(0);
      const T b = l0 == 0 ? beta : T(1);
      const T* Al = A + l0;
      T* Cj = C + long(j0) * cj;
      int i0 = 0;
      for (; i0 + 6 <= m; i0 += 6) axpy_block_avx2<T, 6, 2>(i0, 0, kc, alpha, b, Al, ai, 1, panel, NB, Cj, ci, cj, nc);
      for (; i0 < m; ++i0) axpy_block_avx2<T, 1, 2>(i0, 0, kc, alpha, b, Al, ai, 1, panel, NB, Cj, ci, cj, nc);
    }
  }
}
#else
/// The MB rows from i0 of the axpy form, all n columns: blocks of NR, then
/// NR/2 and NR/4 (narrow outputs such as the 16- or 24-column blocks of
/// randomized solvers stay vectorized), then single columns.
template <class T, int MB>
KOKKOS_INLINE_FUNCTION void axpy_rows(int i0, int n, int k, T alpha, T beta, const T* A, int ai, int al, const T* B,
                                      int bl, T* C, int ci, int cj) {
  constexpr int NR = GemmBlock<T>::NR;
  int j0 = 0;
  for (; j0 + NR <= n; j0 += NR) axpy_block<T, MB, NR>(i0, j0, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
  if (j0 + NR / 2 <= n) {
    axpy_block<T, MB, NR / 2>(i0, j0, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
    j0 += NR / 2;
  }
  if (j0 + NR / 4 <= n) {
    axpy_block<T, MB, NR / 4>(i0, j0, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
    j0 += NR / 4;
  }
  for (; j0 < n; ++j0) axpy_block<T, MB, 1>(i0, j0, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
}

/// All rows of the axpy form: MR rows at a time, then single rows.
template <class T>
KOKKOS_INLINE_FUNCTION void axpy_all(int m, int n, int k, T alpha, T beta, const T* A, int ai, int al, const T* B,
                                     int bl, T* C, int ci, int cj) {
  constexpr int MR = GemmBlock<T>::MR;
  int i0 = 0;
  for (; i0 + MR <= m; i0 += MR) axpy_rows<T, MR>(i0, n, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
  for (; i0 < m; ++i0) axpy_rows<T, 1>(i0, n, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
}
#endif

/// C(m x n) = alpha op(A) op(B) + beta C with op(A)(i, l) = A[i*ai + l*al],
/// op(B)(l, j) = B[l*bl + j*bj], C(i, j) = C[i*ci + j*cj]. Returns false if
/// the strides fit neither fast form.
template <class T>
KOKKOS_INLINE_FUNCTION bool gemm_serial_blocked(int m, int n, int k, T alpha, const T* A, int ai, int al, const T* B,
                                                int bl, int bj, T beta, T* C, int ci, int cj) {
  constexpr int VL = GemmBlock<T>::VL;
  auto store = [&](int i, int j, T v) {
    T& c = C[i * ci + j * cj];
    c = beta == T(0) ? alpha * v : alpha * v + beta * c;
  };
  if (bj == 1) {
    // cache blocking for large operands: KC values of l by NC columns of
    // op(B) (KC * NC * 8 bytes = 512 KiB for double) stay in L2 while every
    // row block of A streams past them; later l panels add to C
    constexpr int KC = 256, NC = 256;
    if (k <= KC && n <= NC) {
      axpy_all<T>(m, n, k, alpha, beta, A, ai, al, B, bl, C, ci, cj);
      return true;
    }
    for (int j0 = 0; j0 < n; j0 += NC) {
      const int nc = n - j0 < NC ? n - j0 : NC;
      for (int l0 = 0; l0 < k || l0 == 0; l0 += KC) {
        const int kc = k - l0 < KC ? k - l0 : KC;
        axpy_all<T>(m, nc, kc, alpha, l0 == 0 ? beta : T(1), A + long(l0) * al, ai, al, B + long(l0) * bl + j0, bl,
                    C + long(j0) * cj, ci, cj);
      }
    }
    return true;
  }
  if (al == 1 && bl == 1) {
#if HFISHER_GEMM_AVX2
    dot_all<T>(m, n, k, alpha, beta, A, ai, B, bj, C, ci, cj);
    return true;
#endif
    constexpr int DR = 4, DC = 4;
    const int kv = k - k % VL;
    for (int i0 = 0; i0 < m; i0 += DR) {
      const int mr = m - i0 < DR ? m - i0 : DR;
      for (int j0 = 0; j0 < n; j0 += DC) {
        const int nc = n - j0 < DC ? n - j0 : DC;
        if (mr == DR && nc == DC) {
          static_assert(DR == 4 && DC == 4, "the dot form is written for 4 x 4 blocks");
          const T* a0 = A + i0 * ai;
          const T* a1 = a0 + ai;
          const T* a2 = a1 + ai;
          const T* a3 = a2 + ai;
          const T* b0 = B + j0 * bj;
          const T* b1 = b0 + bj;
          const T* b2 = b1 + bj;
          const T* b3 = b2 + bj;
          T s[16][VL];
          for (int q = 0; q < 16; ++q)
            for (int v = 0; v < VL; ++v) s[q][v] = T(0);
          for (int l = 0; l < kv; l += VL) {
            for (int v = 0; v < VL; ++v) {
              const T x0 = a0[l + v], x1 = a1[l + v], x2 = a2[l + v], x3 = a3[l + v];
              const T y0 = b0[l + v], y1 = b1[l + v], y2 = b2[l + v], y3 = b3[l + v];
              s[0][v] += x0 * y0;
              s[1][v] += x0 * y1;
              s[2][v] += x0 * y2;
              s[3][v] += x0 * y3;
              s[4][v] += x1 * y0;
              s[5][v] += x1 * y1;
              s[6][v] += x1 * y2;
              s[7][v] += x1 * y3;
              s[8][v] += x2 * y0;
              s[9][v] += x2 * y1;
              s[10][v] += x2 * y2;
              s[11][v] += x2 * y3;
              s[12][v] += x3 * y0;
              s[13][v] += x3 * y1;
              s[14][v] += x3 * y2;
              s[15][v] += x3 * y3;
            }
          }
          for (int r = 0; r < DR; ++r)
            for (int c = 0; c < DC; ++c) {
              T sum = T(0);
              for (int v = 0; v < VL; ++v) sum += s[r * DC + c][v];
              for (int l = kv; l < k; ++l) sum += A[(i0 + r) * ai + l] * B[(j0 + c) * bj + l];
              store(i0 + r, j0 + c, sum);
            }
        } else {
          for (int r = 0; r < mr; ++r)
            for (int c = 0; c < nc; ++c) {
              T s = T(0);
              for (int l = 0; l < k; ++l) s += A[(i0 + r) * ai + l] * B[(j0 + c) * bj + l];
              store(i0 + r, j0 + c, s);
            }
        }
      }
    }
    return true;
  }
  return false;
}

}  // namespace detail
}  // namespace kernels
}  // namespace hfisher
