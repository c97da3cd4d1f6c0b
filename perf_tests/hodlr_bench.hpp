#pragma once
// HODLR against dense LAPACK Cholesky and hmat-oss on kernel matrices and
// on diag + G G^T (random Fourier features): build, factor, solve, logdet,
// memory, residuals, fitted growth exponents, apply bandwidth, HSS from
// entries beside them, and the slowdown beside competing busy processes.

#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

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

/// Binds the options to `app` (hfisher-bench's subcommand and the single-study program).
inline void add_hodlr_options(CLI::App& app, HodlrBenchOptions& o) {
  app.add_option("--sizes", o.sizes, "matrix sizes n")->check(CLI::Range(2, 1 << 22));
  app.add_option("--matrices", o.matrices, "gauss2d gauss3d exp2d (exponential kernel exp(-r / ell)) rff")
      ->check(CLI::IsMember({"gauss2d", "gauss3d", "exp2d", "rff"}));
  app.add_option("--tol", o.tol, "relative compression tolerance per block, in (0, 1)")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-16, 0.5));
  app.add_option("--leaf", o.leaf, "leaf size of the cluster tree")->check(CLI::Range(2, 4096));
  app.add_option("--max-rank", o.max_rank,
                 "rank cap of any off-diagonal block (0: none; a cap that stops a block short of --tol is an error)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--ell", o.ell, "kernel length scale")->check(hfisher_cli::FinitePositive);
  app.add_option("--nugget", o.nugget, "diagonal added to the kernel matrix")->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--dense-max", o.dense_max, "largest n run with dense LAPACK (needs 8 n^2 bytes)")
      ->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--rff-max", o.rff_max, "largest n for diag + G G^T (G holds n^2/2 doubles)")
      ->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--residual-max", o.residual_max, "largest n whose residual uses the exact matrix (O(n^2))")
      ->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--apply-rhs", o.apply_rhs, "right-hand sides of the apply bandwidth test")
      ->check(CLI::Range(1, 4096));
  app.add_flag("!--no-hmat", o.hmat, "skip the hmat-oss comparison");
  app.add_flag("!--no-hss", o.hss, "skip HSS from entries (HSS::from_entries) on the kernel matrices");
  app.add_option("--seed", o.seed, "seed of points and right-hand sides")->check(hfisher_cli::Unsigned);
  app.add_option("--busy", o.busy,
                 "n of the oversubscribed gauss2d run: build + factor alone and beside one busy process per core "
                 "(0: none)")
      ->check(CLI::Range(0, 1 << 22));
  app.add_option("--busy-reps", o.busy_reps, "runs per side of the oversubscribed comparison (median)")
      ->check(CLI::Range(1, 100));
  hfisher_cli::add_memory_budget_option(app, o.memory_budget_gib);
  app.add_option("--output", o.output, "directory for hodlr.csv, hodlr.json, hodlr.gp/.png")
      ->check(hfisher_cli::NonEmpty);
}

}  // namespace hfisher_perf
