#pragma once
// HSS against HODLR against dense LAPACK on the same matrices: a Fisher-like
// diag + G G^T at fixed rank (random Fourier features of a 1-D Gaussian
// kernel), built from factors; the 1-D Gaussian kernel matrix built
// matrix-free (products counted, error against the exact matrix); the
// geometry-oblivious ordering on shuffled 2-D points; online sums of ten
// Fisher-like terms. Build, factor, solve, memory, errors, fitted exponents.

#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

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

/// Binds the options to `app` (hfisher-bench's subcommand and the single-study program).
inline void add_hss_options(CLI::App& app, HssBenchOptions& o) {
  app.add_option("--sizes", o.sizes, "matrix sizes n of the diag + G G^T scaling rows")->check(CLI::Range(64, 1 << 22));
  app.add_option("--tol", o.tol, "compression tolerance, in (0, 1)")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-15, 0.5));
  app.add_option("--leaf", o.leaf, "leaf size of the cluster tree")->check(CLI::Range(8, 4096));
  app.add_option("--max-rank", o.max_rank,
                 "rank cap of any block / node basis (0: none; a cap that stops a block short of --tol is an error)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--features", o.features, "columns of G in diag + G G^T (its rank)")->check(CLI::Range(1, 4096));
  app.add_option("--ell", o.ell, "Gaussian kernel length scale (points in [0, 1])")->check(hfisher_cli::FinitePositive);
  app.add_option("--nugget", o.nugget, "diagonal added to both matrices")->check(hfisher_cli::FinitePositive);
  app.add_option("--dense-max", o.dense_max, "largest n run with dense LAPACK (needs 8 n^2 bytes)")
      ->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--matvec-max", o.matvec_max, "largest n of the matrix-free kernel rows (dense products, O(n^2))")
      ->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--gram-n", o.gram_n, "size of the geometry-oblivious ordering study, 0 to skip")
      ->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--sum-n", o.sum_n, "size of the online-sum study (ten terms, checked densely), 0 to skip")
      ->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--seed", o.seed, "seed of points, features and right-hand sides")->check(hfisher_cli::Unsigned);
  hfisher_cli::add_memory_budget_option(app, o.memory_budget_gib);
  app.add_option("--output", o.output, "directory for hss.csv, hss.json, hss.gp/.png")->check(hfisher_cli::NonEmpty);
}

}  // namespace hfisher_perf
