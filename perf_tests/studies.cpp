#include "studies.hpp"

#include <memory>
#include <stdexcept>

#include "fisher_cli.hpp"
#include "hodlr_cli.hpp"
#include "hss_cli.hpp"
#include "kernels_cli.hpp"
#include "kfac_bert_cli.hpp"
#include "layers_cli.hpp"
#include "scaling_cli.hpp"

namespace hfisher_perf {
namespace {

template <class Options>
Study make_study(std::string name, std::string help, void (*add)(CLI::App&, Options&), int (*run)(const Options&)) {
  return {std::move(name), std::move(help), [add, run](CLI::App& app) {
            auto o = std::make_shared<Options>();
            add(app, *o);
            return std::function<int()>([o, run] { return run(*o); });
          }};
}

}  // namespace

const std::vector<Study>& studies() {
  static const std::vector<Study> all = {
      make_study<KernelsBenchOptions>(
          "kernels", "batched GEMM, TRSM, Cholesky, QR, SVD, syev against loops of OpenBLAS/LAPACK calls",
          add_kernels_options, run_kernels_bench),
      make_study<HodlrBenchOptions>("hodlr",
                                    "HODLR (and HSS) build, factor, solve, logdet against dense LAPACK Cholesky and "
                                    "hmat-oss; growth exponents; the oversubscribed run",
                                    add_hodlr_options, run_hodlr_bench),
      make_study<HssBenchOptions>("hss",
                                  "HSS against HODLR against dense LAPACK: diag + G G^T at fixed rank from "
                                  "factors, the kernel matrix matrix-free (products counted), geometry-oblivious "
                                  "ordering, online sums; build, factor, solve, memory, errors, exponents",
                                  add_hss_options, run_hss_bench),
      make_study<FisherBenchOptions>("fisher",
                                     "Fisher structures (diagonal, K-FAC, low-rank, HODLR, HSS, multilevel; "
                                     "matrix-free rows) on a network trained on Fashion-MNIST: error, "
                                     "natural-gradient angle, memory, time",
                                     add_fisher_options, run_fisher_bench),
      make_study<ScalingBenchOptions>("scaling",
                                      "one layer's Fisher (synthetic, or a trained MLP's with --model mlp, HODLR "
                                      "and HSS from products with --matrix-free) as dense, K-FAC, low-rank, HODLR "
                                      "and HSS over N = 2^p: build, factorization, solve, error, fitted exponents; "
                                      "under MPI, strong and weak scaling of the sharded per-layer builds",
                                      add_scaling_options, run_scaling_bench),
      make_study<KfacBertOptions>("kfac-bert",
                                  "K-FAC factors of every BERT-Large weight layer: statistics and damped "
                                  "inversions batched by shape and sharded over MPI ranks, 1 rank vs all",
                                  add_kfac_bert_options, run_kfac_bert),
      make_study<LayersBenchOptions>("layers",
                                     "convolution forward + backward against ReLU + im2col + OpenBLAS dgemm + "
                                     "col2im (same FLOPs, results compared); with --train-epochs, a small CNN "
                                     "trained on Fashion-MNIST beside the MLP",
                                     add_layers_options, run_layers_bench),
  };
  return all;
}

const Study& study(const std::string& name) {
  for (const auto& s : studies())
    if (s.name == name) return s;
  throw std::invalid_argument("hfisher-bench: no study named " + name);
}

}  // namespace hfisher_perf
