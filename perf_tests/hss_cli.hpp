#pragma once
// CLI11 options of the HSS benchmark.
#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

#include "hss_bench.hpp"

namespace hfisher_perf {

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
