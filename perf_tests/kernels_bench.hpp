#pragma once
// The batched-kernel comparison: hfisher's batched GEMM, Cholesky, QR and SVD
// against loops of OpenBLAS/LAPACK calls on the same cores in the same run.

#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

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

/// Binds the options to `app` (hfisher-bench's subcommand and the single-study program).
inline void add_kernels_options(CLI::App& app, KernelsBenchOptions& o) {
  app.add_option("--ops", o.ops,
                 "operations to run: gemm potrf trsm (lower triangle, n right-hand sides) qr svd syev "
                 "(symmetric eigendecomposition, default method) "
                 "syev-jacobi (the Jacobi method, for comparison)")
      ->check(CLI::IsMember({"gemm", "potrf", "trsm", "qr", "svd", "syev", "syev-jacobi"}));
  app.add_option("--blocks", o.blocks, "block sizes n of the n x n entries")->check(CLI::Range(1, 4096));
  app.add_option("--batches", o.batches, "batch sizes (entries per batch)")->check(CLI::Range(1, 10000000));
  app.add_option("--precision", o.precision, "double or float")->check(CLI::IsMember({"double", "float"}));
  app.add_option("--max-elements", o.max_elements, "skip cases whose batch*n^2 exceeds this (memory cap)")
      ->check(hfisher_cli::FinitePositive);
  app.add_option("--max-svd-flops", o.max_svd_flops,
                 "skip SVD and Jacobi syev cases above this nominal work (time cap)")
      ->check(hfisher_cli::FinitePositive);
  app.add_option("--reps", o.reps, "timed repetitions per case; the best is kept")->check(CLI::Range(1, 100));
  app.add_option("--output", o.output, "directory where kernels.csv is written")->check(hfisher_cli::NonEmpty);
}

}  // namespace hfisher_perf
