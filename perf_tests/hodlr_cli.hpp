#pragma once
// CLI11 options of the HODLR benchmark, shared by hfisher-bench and perf_tests.
#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

#include "hodlr_bench.hpp"

namespace hfisher_perf {

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
