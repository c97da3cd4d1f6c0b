#pragma once
// HSS against HODLR against dense LAPACK on the same matrices: a Fisher-like
// diag + G G^T at fixed rank (random Fourier features of a 1-D Gaussian
// kernel), built from factors; the 1-D Gaussian kernel matrix built
// matrix-free (products counted, error against the exact matrix); the
// geometry-oblivious ordering on shuffled 2-D points; online sums of ten
// Fisher-like terms. Build, factor, solve, memory, errors, fitted exponents.

#include <string>
#include <vector>

namespace hfisher_perf {

struct HssBenchOptions {
  std::vector<int> sizes = {1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072};
  double tol = 1e-8;
  int leaf = 64;
  int max_rank = 0;       ///< 0: no cap (a cap that stops a node short of tol is an error)
  int features = 32;      ///< columns of G (the rank of the low-rank part)
  double ell = 0.1;       ///< kernel length scale
  double nugget = 0.1;    ///< diagonal of diag + G G^T and of the kernel matrix
  int dense_max = 8192;   ///< largest n for dense LAPACK (8 n^2 bytes)
  int matvec_max = 4096;  ///< largest n of the matrix-free kernel rows (dense products)
  int gram_n = 4096;      ///< size of the ordering study (0: skip)
  int sum_n = 2048;       ///< size of the online-sum study (0: skip)
  unsigned seed = 1;
  std::string output;
  double memory_budget_gib = 0;  ///< --memory-budget (0: 80% of the memory available at start)
};

int run_hss_bench(const HssBenchOptions& opts);

}  // namespace hfisher_perf
