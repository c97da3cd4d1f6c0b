// perf_tests/kernels: batched Cholesky, QR, SVD and GEMM against loops of
// OpenBLAS/LAPACK calls. Same code as `hfisher-bench kernels`.
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include "bench_common.hpp"
#include "cli_checks.hpp"

#include <cstdio>

#include "kernels_bench.hpp"
#include "kernels_cli.hpp"

int main(int argc, char** argv) {
  hfisher_cli::openmp_defaults(argv, hfisher_perf::blas_defaults());  // OpenMP defaults; OpenBLAS AVX kernels
  const auto guard = hfisher_cli::start_runtime(argc, argv, "hfisher-perf-kernels");  // bad Kokkos arguments: a message
  if (!guard) return 2;
  hfisher_perf::KernelsBenchOptions o;
  CLI::App app{"hfisher perf: batched kernels vs OpenBLAS/LAPACK loops"};
  hfisher_cli::show_defaults(app);
  hfisher_perf::add_kernels_options(app, o);
  CLI11_PARSE(app, argc, argv);
  try {
    return hfisher_perf::run_kernels_bench(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
