// perf_tests/hodlr: HODLR vs dense LAPACK Cholesky. Same code and options as
// `hfisher-bench hodlr`.
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include "bench_common.hpp"
#include "cli_checks.hpp"

#include <cstdio>

#include "hodlr_bench.hpp"
#include "hodlr_cli.hpp"

int main(int argc, char** argv) {
  hfisher_cli::openmp_defaults(argv, hfisher_perf::blas_defaults());  // OpenMP defaults; OpenBLAS AVX kernels
  const auto guard = hfisher_cli::start_runtime(argc, argv, "hfisher-perf-hodlr");  // bad Kokkos arguments: a message
  if (!guard) return 2;
  hfisher_perf::HodlrBenchOptions o;
  CLI::App app{"hfisher perf: HODLR vs dense LAPACK Cholesky"};
  hfisher_cli::show_defaults(app);
  hfisher_perf::add_hodlr_options(app, o);
  CLI11_PARSE(app, argc, argv);
  try {
    return hfisher_perf::run_hodlr_bench(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
