// perf_tests/fisher: Fisher structures on a trained MLP. Same code and options as
// `hfisher-bench fisher`.
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include "bench_common.hpp"
#include "cli_checks.hpp"

#include <cstdio>

#include "fisher_bench.hpp"
#include "fisher_cli.hpp"

int main(int argc, char** argv) {
  hfisher_cli::openmp_defaults(argv, hfisher_perf::blas_defaults());  // OpenMP defaults; OpenBLAS AVX kernels
  const auto guard = hfisher_cli::start_runtime(argc, argv, "hfisher-perf-fisher");  // bad Kokkos arguments: a message
  if (!guard) return 2;
  hfisher_perf::FisherBenchOptions o;
  CLI::App app{"hfisher perf: Fisher structures on a trained MLP"};
  hfisher_cli::show_defaults(app);
  hfisher_perf::add_fisher_options(app, o);
  CLI11_PARSE(app, argc, argv);
  try {
    return hfisher_perf::run_fisher_bench(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
