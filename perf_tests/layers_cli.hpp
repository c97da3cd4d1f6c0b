#pragma once
// CLI11 options of hfisher-bench layers.
#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

#include "layers_bench.hpp"

namespace hfisher_perf {

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
