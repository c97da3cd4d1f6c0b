#pragma once
// Named test tolerances, keyed by operation and precision. Each bound is
// multiplied by the norm scale stated at its use (e.g. |A| |B| k for GEMM).

namespace hfisher_test {

template <class T>
struct Tol;

template <>
struct Tol<double> {
  static constexpr double gemm = 1e-14;        // x k * max|A| * max|B|
  static constexpr double trsm = 1e-12;        // residual, x cond-free scale
  static constexpr double potrf = 1e-13;       // |L L^T - A| / |A|, x n
  static constexpr double potrs = 1e-12;       // residual / (|A||X| + |B|), x n
  static constexpr double logdet = 1e-12;      // relative, x n
  static constexpr double qr = 1e-14;          // |QR - A| / |A|, x max(m, n)
  static constexpr double orth = 1e-14;        // |Q^T Q - I|, x max(m, n)
  static constexpr double svd_values = 1e-12;  // relative to LAPACK (the bar)
  static constexpr double svd_recon = 1e-14;   // |U S V^T - A| / |A|, x max(m, n)
  static constexpr double eig_values = 1e-13;  // |w - w_lapack| / |A|_2, x n
  static constexpr double lowrank = 1.0;       // error / (tol |A|_2): must be <= this (+ rounding)
  static constexpr double rounding = 1e-13;    // absolute slack added to tolerance-based bounds
  static constexpr double ranks = 1e-10;       // P ranks vs one process: |d theta| / max|theta| (sum order only)
};

template <>
struct Tol<float> {
  static constexpr double gemm = 2e-6;
  static constexpr double trsm = 5e-5;
  static constexpr double potrf = 2e-6;
  static constexpr double potrs = 5e-5;
  static constexpr double logdet = 5e-6;
  static constexpr double qr = 2e-6;
  static constexpr double orth = 2e-6;
  static constexpr double svd_values = 5e-5;
  static constexpr double svd_recon = 2e-6;
  static constexpr double eig_values = 5e-6;
  static constexpr double lowrank = 1.0;
  static constexpr double rounding = 5e-5;
  static constexpr double ranks = 1e-4;
};

}  // namespace hfisher_test
