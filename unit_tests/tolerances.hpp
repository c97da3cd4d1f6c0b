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
  static constexpr double svd_values = 1e-12;  // relative to LAPACK
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

namespace hfisher_test {

/// Named tolerances of the Fisher tests (unit_tests/fisher), by precision.
/// Each names what is compared and the scale it multiplies, as stated at its
/// use. Bounds on a compressed structure come with the compression
/// tolerance the test asks for (compress_*).
template <class T>
struct FisherTol;

template <>
struct FisherTol<double> {
  // an operator against its own dense form F
  static constexpr double apply = 1e-11;      // apply / quad / diag, x max|F| (x sqrt(n), |v|^2 n)
  static constexpr double logdet = 1e-10;     // logdet(F + damping I) vs LAPACK, x (n + |logdet|)
  static constexpr double solve = 1e-11;      // residual of (F + damping I) x = v, x cond |v|
  static constexpr double roundtrip = 1e-15;  // load(save(F)) vs F, relative Frobenius
  static constexpr double sum = 1e-6;         // add / scale of operators vs the dense sum, relative
  // an estimate against the brute-force per-example reference
  static constexpr double exact = 1e-12;       // quantities with no approximation (per-example gradients,
                                               // block-diagonal dense, diagonals, K-FAC-reduce), relative
  static constexpr double product = 1e-12;     // an operator's product F V vs the dense product, x max|F V|
  static constexpr double factors = 1e-10;     // K-FAC factors A, G and the diagonal, x (1 + max|ref|)
  static constexpr double conv_exact = 1e-10;  // conv/attention layers: the exact structures, relative
  // compressed structures: the tolerance asked of the build, and what it gives
  static constexpr double compress = 1e-10;        // o.tol of the estimators' MLP cases
  static constexpr double compress_tight = 1e-12;  // o.tol where a full-rank result is expected
  static constexpr double compress_matvec = 1e-9;  // o.tol of the matrix-free (products) builds
  static constexpr double lowrank = 1e-8;          // low-rank / multilevel at full rank, relative Frobenius
  static constexpr double lowrank_diag = 1e-9;     // their diagonals, x (1 + |F_ii|) or (max|F| + 1)
  static constexpr double psd = 1e-10;             // smallest eigenvalue >= -psd max|F|; sums' diagonals
  static constexpr double not_exact = 1e-6;        // a truncated structure differs from F by more than this
  static constexpr double hodlr = 1e-8;            // HODLR from factors, relative Frobenius
  static constexpr double hodlr_matvec = 1e-7;     // HODLR from products and its error estimate
  static constexpr double hss = 1e-8;              // HSS from factors and its error estimate, relative Frobenius
  static constexpr double hss_matvec = 1e-7;       // HSS from products and its error estimate
  static constexpr double conv_compressed = 1e-9;  // conv layers: HODLR and low-rank, relative Frobenius
  static constexpr double solve_tol = 1e-8;        // the tolerance passed to an iterative solve
  static constexpr double kfac_logdet = 1e-10;     // K-FAC logdet vs LAPACK, x (n + |logdet|)
  static constexpr double eig_values = 1e-9;       // multilevel node eigenvalues, x the largest
  static constexpr double eig_norm = 1e-10;        // their eigenvectors' norms vs 1
  static constexpr double eig_residual = 1e-8;     // |A v - w v|, x the largest eigenvalue
};

template <>
struct FisherTol<float> {
  static constexpr double apply = 2e-4;
  static constexpr double logdet = 2e-3;
  static constexpr double solve = 5e-4;
  static constexpr double roundtrip = 1e-7;
  static constexpr double sum = 1e-3;
  static constexpr double exact = 1e-5;
  static constexpr double product = 2e-5;
  static constexpr double factors = 1e-5;
  static constexpr double conv_exact = 2e-4;
  static constexpr double compress = 1e-5;
  static constexpr double compress_tight = 1e-6;
  static constexpr double compress_matvec = 1e-4;
  static constexpr double lowrank = 1e-3;
  static constexpr double lowrank_diag = 1e-4;
  static constexpr double psd = 1e-4;
  static constexpr double not_exact = 1e-3;
  static constexpr double hodlr = 2e-3;
  static constexpr double hodlr_matvec = 2e-3;
  static constexpr double hss = 2e-3;
  static constexpr double hss_matvec = 2e-3;
  static constexpr double conv_compressed = 1e-4;
  static constexpr double solve_tol = 1e-4;
  static constexpr double kfac_logdet = 1e-3;
  static constexpr double eig_values = 1e-3;
  static constexpr double eig_norm = 1e-4;
  static constexpr double eig_residual = 2e-3;
};

}  // namespace hfisher_test
