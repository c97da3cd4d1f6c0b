#pragma once
// HODLR against dense LAPACK Cholesky and hmat-oss on kernel matrices and
// on diag + G G^T (random Fourier features): build, factor, solve, logdet,
// memory, residuals, fitted growth exponents, apply bandwidth, HSS from
// entries beside them, and the slowdown beside competing busy processes.

#include <string>
#include <vector>

namespace hfisher_perf {

struct HodlrBenchOptions {
  std::vector<int> sizes = {1024, 2048, 4096, 8192, 16384, 32768};
  std::vector<std::string> matrices = {"gauss2d", "gauss3d", "rff"};
  double tol = 1e-12;
  int leaf = 64;
  int max_rank = 0;          ///< 0: no cap (a cap that stops a block short of tol is an error)
  double ell = 0.3;          ///< kernel length scale
  double nugget = 0.1;       ///< diagonal added to the kernel (noise variance)
  int dense_max = 16384;     ///< largest n for dense LAPACK (memory n^2 * 8 bytes)
  int rff_max = 8192;        ///< largest n for diag + G G^T (G is n x n/2)
  int residual_max = 32768;  ///< largest n whose residual is checked against the exact matrix
  int apply_rhs = 16;
  bool hmat = true;  ///< also run hmat-oss on the kernel matrices (when built with it)
  bool hss = true;   ///< also build HSS from entries on the kernel matrices (HSS::from_entries)
  unsigned seed = 1;
  /// n of the oversubscribed run on gauss2d (0: none): build + factor of
  /// hfisher and hmat-oss alone, then beside one busy-looping process per
  /// online core (a fair share of the cores makes any code about 2x slower);
  /// medians of `busy_reps` runs each.
  int busy = 0;
  int busy_reps = 3;
  std::string output;
  double memory_budget_gib = 0;  ///< --memory-budget (0: 80% of the memory available at start)
};

int run_hodlr_bench(const HodlrBenchOptions& opts);

}  // namespace hfisher_perf
