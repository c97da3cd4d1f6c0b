#pragma once
// The batched-kernel comparison: hfisher's batched GEMM, Cholesky, QR and SVD
// against loops of OpenBLAS/LAPACK calls on the same cores in the same run.

#include <string>
#include <vector>

namespace hfisher_perf {

struct KernelsBenchOptions {
  std::vector<std::string> ops = {"gemm", "potrf", "qr", "svd"};
  std::vector<int> blocks = {16, 32, 64, 128, 256};
  std::vector<int> batches = {10, 100, 1000, 10000};
  std::string precision = "double";  ///< double | float
  long max_elements = 1L << 23;      ///< skip cases with batch * n^2 above this
  double max_svd_flops = 2e10;       ///< skip SVD cases above this nominal work
  int reps = 3;
  std::string output;  ///< directory for kernels.csv (empty: none)
};

/// Runs the comparison, prints a table, writes <output>/kernels.csv.
/// Returns 0.
int run_kernels_bench(const KernelsBenchOptions& opts);

}  // namespace hfisher_perf
