// hfisher-bench: the performance studies, one subcommand each (the registry
// in perf_tests/studies.cpp lists them with their help; `hfisher-bench
// --help` prints it). Runs under mpirun (scaling and kfac-bert shard their
// work over ranks).
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include "bench_common.hpp"
#include "cli_checks.hpp"

#include <cstdio>
#include <functional>
#include <utility>
#include <vector>

#include "studies.hpp"

int main(int argc, char** argv) {
  // OMP_WAIT_POLICY=passive, OMP_PROC_BIND=false unless set; OpenBLAS's AVX
  // kernels where it fell back to SSE3 on a CPU it does not know
  hfisher_cli::openmp_defaults(argv, hfisher_perf::blas_defaults());
  hfisher::dist::Environment mpi(argc, argv);
  const auto guard = hfisher_cli::start_runtime(argc, argv, "hfisher-bench");  // bad Kokkos arguments: a message
  if (!guard) return 2;
  CLI::App app{"hfisher-bench: performance studies of hfisher (tables, CSV)"};
  hfisher_cli::show_defaults(app);
  app.require_subcommand(1);
  // one subcommand per study of the registry (perf_tests/studies.cpp)
  std::vector<std::pair<CLI::App*, std::function<int()>>> subcommands;
  for (const auto& st : hfisher_perf::studies()) {
    auto* sub = app.add_subcommand(st.name, st.help);
    subcommands.emplace_back(sub, st.bind(*sub));
  }
  CLI11_PARSE(app, argc, argv);
  try {
    for (const auto& [sub, run] : subcommands)
      if (sub->parsed()) return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hfisher-bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
