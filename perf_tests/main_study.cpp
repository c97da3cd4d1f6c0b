// hfisher-perf-<study>: one study of hfisher-bench as a program of its own,
// with the same code and options. HFISHER_PERF_STUDY names the study's
// entry (e.g. kernels_study, studies.hpp) at compile time
// (perf_tests/CMakeLists.txt); the program links that study's library only.
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include "bench_common.hpp"
#include "cli_checks.hpp"

#include <cstdio>
#include <string>

#include "studies.hpp"

int main(int argc, char** argv) {
  hfisher_cli::openmp_defaults(argv, hfisher_perf::blas_defaults());  // OpenMP defaults; OpenBLAS AVX kernels
  const auto st = hfisher_perf::HFISHER_PERF_STUDY();
  const std::string name = "hfisher-perf-" + st.name;
  const auto guard = hfisher_cli::start_runtime(argc, argv, name.c_str());  // bad Kokkos arguments: a message
  if (!guard) return 2;
  CLI::App app{name + ": " + st.help + " (as `hfisher-bench " + st.name + "`)"};
  hfisher_cli::show_defaults(app);
  const auto run = st.bind(app);
  CLI11_PARSE(app, argc, argv);
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name.c_str(), e.what());
    return 1;
  }
}
