// hfisher-bench: scaling-study driver. Subcommands:
//   kernels   batched GEMM / Cholesky / QR / SVD vs OpenBLAS/LAPACK loops
//   hodlr     HODLR build / factor / solve / logdet vs dense LAPACK Cholesky
//   hss       HSS vs HODLR vs dense: from factors, matrix-free (products
//             counted), geometry-oblivious ordering, online sums
//   fisher    Fisher structures on a trained MLP: error, angle, memory, time
//   scaling   one layer's Fisher as dense / K-FAC / low-rank / HODLR over N:
//             build, factor, solve, error, fitted exponents; MPI scaling
//   kfac-bert distributed K-FAC curvature refresh at BERT-Large shapes
//   layers    convolution forward + backward vs im2col + OpenBLAS; a small
//             CNN trained on Fashion-MNIST
// Runs under mpirun (the scaling study shards per-layer builds over ranks).
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include "bench_common.hpp"
#include "cli_checks.hpp"

#include <cstdio>

#include "fisher_bench.hpp"
#include "fisher_cli.hpp"
#include "hodlr_bench.hpp"
#include "hodlr_cli.hpp"
#include "hss_cli.hpp"
#include "kernels_bench.hpp"
#include "kernels_cli.hpp"
#include "kfac_bert_cli.hpp"
#include "layers_cli.hpp"
#include "scaling_cli.hpp"

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
  hfisher_perf::KernelsBenchOptions ko;
  auto* k = app.add_subcommand("kernels", "batched GEMM, Cholesky, QR, SVD against loops of OpenBLAS/LAPACK calls");
  hfisher_perf::add_kernels_options(*k, ko);
  hfisher_perf::HodlrBenchOptions ho;
  auto* h = app.add_subcommand("hodlr", "HODLR build, factor, solve, logdet against dense LAPACK Cholesky");
  hfisher_perf::add_hodlr_options(*h, ho);
  hfisher_perf::HssBenchOptions so4;
  auto* hs = app.add_subcommand("hss",
                                "HSS against HODLR against dense LAPACK: diag + G G^T at fixed rank from "
                                "factors, the kernel matrix matrix-free (products counted), geometry-oblivious "
                                "ordering, online sums; build, factor, solve, memory, errors, exponents");
  hfisher_perf::add_hss_options(*hs, so4);
  hfisher_perf::FisherBenchOptions fo;
  auto* f = app.add_subcommand("fisher",
                               "Fisher structures (diagonal, K-FAC, low-rank, hierarchical) on an MLP "
                               "trained on Fashion-MNIST: error, natural-gradient angle, memory, time");
  hfisher_perf::add_fisher_options(*f, fo);
  hfisher_perf::ScalingBenchOptions so;
  auto* sc = app.add_subcommand("scaling",
                                "one layer's Fisher as dense, K-FAC, low-rank and hierarchical over N = "
                                "2^p: build, factorization, solve, error, fitted exponents; under MPI, "
                                "strong and weak scaling of the sharded per-layer builds");
  hfisher_perf::add_scaling_options(*sc, so);
  hfisher_perf::KfacBertOptions bo;
  auto* kb = app.add_subcommand("kfac-bert",
                                "K-FAC factors of every BERT-Large weight layer: statistics and damped "
                                "inversions batched by shape and sharded over MPI ranks, 1 rank vs all");
  hfisher_perf::add_kfac_bert_options(*kb, bo);
  hfisher_perf::LayersBenchOptions lo;
  auto* ly = app.add_subcommand("layers",
                                "convolution forward + backward against ReLU + im2col + OpenBLAS dgemm + "
                                "col2im (same FLOPs, results compared); with --train-epochs, a small CNN "
                                "trained on Fashion-MNIST beside the MLP");
  hfisher_perf::add_layers_options(*ly, lo);
  CLI11_PARSE(app, argc, argv);
  try {
    if (kb->parsed()) return hfisher_perf::run_kfac_bert(bo);
    if (sc->parsed()) return hfisher_perf::run_scaling_bench(so);
    if (k->parsed()) return hfisher_perf::run_kernels_bench(ko);
    if (h->parsed()) return hfisher_perf::run_hodlr_bench(ho);
    if (hs->parsed()) return hfisher_perf::run_hss_bench(so4);
    if (f->parsed()) return hfisher_perf::run_fisher_bench(fo);
    if (ly->parsed()) return hfisher_perf::run_layers_bench(lo);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hfisher-bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
