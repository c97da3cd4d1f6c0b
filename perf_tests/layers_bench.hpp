#pragma once
// The layers beyond the MLP (nn/conv.hpp, nn/sequential.hpp): convolution
// forward + backward throughput against im2col + OpenBLAS GEMM (the same
// FLOPs in the same run, results compared), and a small CNN, a small vision
// transformer and an MLP trained on Fashion-MNIST (test accuracy and seconds
// per epoch).

#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

#include <hfisher/nn/sequential.hpp>

#include <string>
#include <vector>

namespace hfisher_perf {

/// The library's presets nn::small_cnn and nn::small_vit (nn/presets.hpp)
/// at Fashion-MNIST's {1, 28, 28}, and their descriptions (for the tables).
std::vector<hfisher::nn::LayerSpec> fashion_cnn_layers();
std::string fashion_cnn_text();
std::vector<hfisher::nn::LayerSpec> fashion_vit_layers();
std::string fashion_vit_text();

struct LayersBenchOptions {
  int batch = 64;                                    ///< images per timed forward + backward
  int reps = 5;                                      ///< timed repetitions (median)
  int train_epochs = 0;                              ///< epochs of each model on Fashion-MNIST (0: no training)
  std::vector<std::string> models = {"cnn", "mlp"};  ///< trained: cnn, vit, mlp
  int train_examples = 0;                            ///< training examples used (0: all 60 000)
  int train_batch = 128;
  std::vector<std::string> optimizers = {"adam"};  ///< each model trained with each: adam, sgd, kfac
  double lr = 1e-3;                                ///< Adam's learning rate
  double sgd_lr = 0.05;                            ///< SGD's (momentum 0.9)
  double kfac_lr = 1e-3, kfac_damping = 1e-3;      ///< K-FAC's (NaturalGradientOptions::kfac() otherwise)
  int kfac_refresh = 50;                           ///< steps between K-FAC factor estimates
  bool kfac_reduce = false;  ///< K-FAC-reduce for layers at several positions (default: expand, KFC)
  unsigned seed = 1;
  std::string data_dir;  ///< empty: the default (Debian's dataset-fashion-mnist)
  std::string output;    ///< directory for layers.csv (empty: none)
};

int run_layers_bench(const LayersBenchOptions& o);

/// Binds the options to `app` (hfisher-bench's subcommand and the single-study program).
inline void add_layers_options(CLI::App& app, LayersBenchOptions& o) {
  app.add_option("--batch", o.batch, "images per timed forward + backward")->check(CLI::Range(1, 4096));
  app.add_option("--reps", o.reps, "timed repetitions (the median is reported)")->check(CLI::Range(1, 100));
  app.add_option("--train-epochs", o.train_epochs, "epochs of each model on Fashion-MNIST (0: no training)")
      ->check(CLI::Range(0, 100));
  app.add_option("--models", o.models, "models trained: cnn, vit (a small vision transformer), mlp")
      ->check(CLI::IsMember({"cnn", "vit", "mlp"}));
  app.add_option("--train-examples", o.train_examples, "training examples (0: all)")->check(CLI::Range(0, 1 << 30));
  app.add_option("--train-batch", o.train_batch, "minibatch of the training")->check(CLI::Range(1, 4096));
  app.add_option("--optimizers", o.optimizers, "each model is trained with each of: adam, sgd, kfac")
      ->check(CLI::IsMember({"adam", "sgd", "kfac"}));
  app.add_option("--lr", o.lr, "Adam's learning rate")->check(hfisher_cli::FinitePositive);
  app.add_option("--sgd-lr", o.sgd_lr, "SGD's learning rate (momentum 0.9)")->check(hfisher_cli::FinitePositive);
  app.add_option("--kfac-lr", o.kfac_lr, "K-FAC's learning rate")->check(hfisher_cli::FinitePositive);
  app.add_option("--kfac-damping", o.kfac_damping, "K-FAC's damping")->check(hfisher_cli::FinitePositive);
  app.add_option("--kfac-refresh", o.kfac_refresh, "steps between K-FAC factor estimates")
      ->check(CLI::Range(1, 1 << 20));
  app.add_flag("--kfac-reduce", o.kfac_reduce,
               "K-FAC-reduce for convolutions and token-wise layers (default: K-FAC-expand, KFC)");
  app.add_option("--seed", o.seed, "seed of the weights, the shuffles and the timed inputs")
      ->check(hfisher_cli::Unsigned);
  app.add_option("--data-dir", o.data_dir, "Fashion-MNIST directory (default: $HFISHER_DATA_DIR or Debian's)")
      ->check(hfisher_cli::NonEmpty);
  app.add_option("--output", o.output, "directory for layers.csv")->check(hfisher_cli::NonEmpty);
}

}  // namespace hfisher_perf
