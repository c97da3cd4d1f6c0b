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

namespace hfisher_test {

/// Named tolerances of the H-matrix tests (unit_tests/hmatrix), by
/// precision: the compression tolerances the tests ask of a build (tol_*)
/// and the bounds on what a build or factorization gives. A bound on a
/// compressed matrix is stated at its use as a multiple of the tol_* asked.
template <class T>
struct HMatrixTol;

template <>
struct HMatrixTol<double> {
  // compression tolerances asked of a build (CompressionOptions::tol)
  static constexpr double tol_kernel = 1e-9;       // kernel matrices from dense, entries (ACA) or 1-D products
  static constexpr double tol_peel_2d = 1e-6;      // 2-D kernels from products (larger ranks stay below the cap)
  static constexpr double tol_tight = 1e-10;       // full-rank blocks recovered to rounding; slowly decaying kernels
  static constexpr double tol_moderate = 1e-8;     // HSS from products, online sums, truncation checks
  static constexpr double tol_hss_entries = 1e-9;  // HSS from entries on a 2-D Gaussian kernel
  static constexpr double tol_factors =
      1e-12;  // from d + G G^T (the format suite takes the larger of this and FormatTraits::factors_tol)
  static constexpr double tol_fixture = 1e-10;  // matrices that only carry a test (save/load, errors)
  // bounds
  static constexpr double recovered = 1e-9;      // |H - A|_F / |A|_F of full-rank blocks built at tol_tight
  static constexpr double solve = 1e-9;          // solve(H X) - X, x (1 + max|X|)
  static constexpr double factor_w = 1e-10;      // W W^T - H and apply_Wt vs W^T, x |H|_2 (or 1 + max|H X|)
  static constexpr double logdet = 1e-9;         // vs LAPACK's Cholesky of to_dense(), x (n + |logdet|)
  static constexpr double eps = 1e-15;           // rounding unit of the norm-2 slack (x 50 n |A|_2)
  static constexpr double sum_rounding = 1e-13;  // slack beside 10 tol of a recompressed sum, relative
};

template <>
struct HMatrixTol<float> {
  static constexpr double tol_kernel = 1e-4;
  static constexpr double tol_peel_2d = 1e-4;
  static constexpr double tol_tight = 1e-5;
  static constexpr double tol_moderate = 1e-4;
  // at 1e-4 the rounding floor of the truncation (100 eps |A|) is already of the size of tol
  static constexpr double tol_hss_entries = 1e-3;
  static constexpr double tol_factors = 1e-5;
  static constexpr double tol_fixture = 1e-4;
  static constexpr double recovered = 1e-4;
  static constexpr double solve = 2e-3;
  static constexpr double factor_w = 2e-4;
  static constexpr double logdet = 1e-3;
  static constexpr double eps = 1e-6;
  static constexpr double sum_rounding = 2e-6;
};

}  // namespace hfisher_test

namespace hfisher_test {

/// Named tolerances of the optimizer and continual-learning tests
/// (unit_tests/optim, unit_tests/continual), by precision. Their Fisher
/// estimates ask for FisherTol<T>::compress.
template <class T>
struct TrainTol;

template <>
struct TrainTol<double> {
  static constexpr double step = 1e-10;  // a natural-gradient step vs the dense LAPACK direction, relative
  static constexpr double network_fisher =
      1e-8;                                     // the optimizer's network HODLR vs the dense Fisher, relative Frobenius
  static constexpr double network_step = 1e-7;  // its step vs the dense direction, relative
  static constexpr double averages = 1e-12;     // running averages of factors and operators; replay gradients
  static constexpr double penalty = 1e-8;       // a penalty's value and gradient vs the dense quadratic, x (1 + |ref|)
  static constexpr double penalty_value = 1e-10;  // a consolidated penalty's value vs the dense sum, x (1 + ref)
  static constexpr double optimum = 1e-9;         // the minimiser of quadratic tasks with the penalty, relative on x
};

template <>
struct TrainTol<float> {
  static constexpr double step = 1e-3;
  static constexpr double network_fisher = 1e-4;
  static constexpr double network_step = 2e-3;
  static constexpr double averages = 2e-5;
  static constexpr double penalty = 2e-3;
  static constexpr double penalty_value = 1e-4;
  static constexpr double optimum = 2e-3;
};

}  // namespace hfisher_test
