// hfisher-bench: scaling-study driver. Subcommands:
//   kernels   batched GEMM / Cholesky / QR / SVD vs OpenBLAS/LAPACK loops
//   hodlr     HODLR build / factor / solve / logdet vs dense LAPACK Cholesky
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include <cstdio>

#include "hodlr_bench.hpp"
#include "hodlr_cli.hpp"
#include "kernels_bench.hpp"

int main(int argc, char** argv) {
  hfisher::ScopeGuard guard(argc, argv);
  CLI::App app{"hfisher-bench: performance studies of hfisher (tables, CSV)"};
  app.require_subcommand(1);
  hfisher_perf::KernelsBenchOptions ko;
  auto* k = app.add_subcommand("kernels", "batched GEMM, Cholesky, QR, SVD against loops of OpenBLAS/LAPACK calls");
  k->add_option("--ops", ko.ops, "operations to run: gemm potrf qr svd")
      ->check(CLI::IsMember({"gemm", "potrf", "qr", "svd"}));
  k->add_option("--blocks", ko.blocks, "block sizes n of the n x n entries")->check(CLI::Range(1, 4096));
  k->add_option("--batches", ko.batches, "batch sizes (entries per batch)")->check(CLI::Range(1, 10000000));
  k->add_option("--precision", ko.precision, "double or float")->check(CLI::IsMember({"double", "float"}));
  k->add_option("--max-elements", ko.max_elements, "skip cases whose batch*n^2 exceeds this (memory cap)")
      ->check(CLI::PositiveNumber);
  k->add_option("--max-svd-flops", ko.max_svd_flops, "skip SVD cases above this nominal work (time cap)")
      ->check(CLI::PositiveNumber);
  k->add_option("--reps", ko.reps, "timed repetitions per case; the best is kept")->check(CLI::Range(1, 100));
  k->add_option("--output", ko.output, "directory where kernels.csv is written");
  hfisher_perf::HodlrBenchOptions ho;
  auto* h = app.add_subcommand("hodlr", "HODLR build, factor, solve, logdet against dense LAPACK Cholesky");
  hfisher_perf::add_hodlr_options(*h, ho);
  CLI11_PARSE(app, argc, argv);
  try {
    if (k->parsed()) return hfisher_perf::run_kernels_bench(ko);
    if (h->parsed()) return hfisher_perf::run_hodlr_bench(ho);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hfisher-bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
