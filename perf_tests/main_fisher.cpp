// perf_tests/fisher: Fisher structures on a trained MLP. Same code and options as
// `hfisher-bench fisher`.
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include <cstdio>
#include <memory>

#include "fisher_bench.hpp"
#include "fisher_cli.hpp"

int main(int argc, char** argv) {
  std::unique_ptr<hfisher::ScopeGuard> guard;  // refuses bad Kokkos arguments with a message
  try {
    guard = std::make_unique<hfisher::ScopeGuard>(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hfisher-perf-fisher: error: %s\n", e.what());
    return 2;
  }
  hfisher_perf::FisherBenchOptions o;
  CLI::App app{"hfisher perf: Fisher structures on a trained MLP"};
  hfisher_perf::add_fisher_options(app, o);
  CLI11_PARSE(app, argc, argv);
  try {
    return hfisher_perf::run_fisher_bench(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
