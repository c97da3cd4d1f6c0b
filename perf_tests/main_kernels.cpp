// perf_tests/kernels: batched Cholesky, QR, SVD and GEMM against loops of
// OpenBLAS/LAPACK calls. Same code as `hfisher-bench kernels`.
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include <cstdio>

#include "kernels_bench.hpp"

int main(int argc, char** argv) {
  hfisher::ScopeGuard guard(argc, argv);
  hfisher_perf::KernelsBenchOptions o;
  CLI::App app{"hfisher perf: batched kernels vs OpenBLAS/LAPACK loops"};
  app.add_option("--ops", o.ops, "operations: gemm potrf qr svd")->check(CLI::IsMember({"gemm", "potrf", "qr", "svd"}));
  app.add_option("--blocks", o.blocks, "block sizes n (n x n entries)")->check(CLI::Range(1, 4096));
  app.add_option("--batches", o.batches, "batch sizes")->check(CLI::Range(1, 10000000));
  app.add_option("--precision", o.precision, "double or float")->check(CLI::IsMember({"double", "float"}));
  app.add_option("--max-elements", o.max_elements, "skip cases with batch*n^2 above this")->check(CLI::PositiveNumber);
  app.add_option("--reps", o.reps, "timed repetitions (best is kept)")->check(CLI::Range(1, 100));
  app.add_option("--output", o.output, "directory for kernels.csv");
  CLI11_PARSE(app, argc, argv);
  try {
    return hfisher_perf::run_kernels_bench(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
