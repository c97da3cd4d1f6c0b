#pragma once
// CLI11 options of hfisher-bench layers.
#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

#include "layers_bench.hpp"

namespace hfisher_perf {

inline void add_layers_options(CLI::App& app, LayersBenchOptions& o) {
  app.add_option("--batch", o.batch, "images per timed forward + backward")->check(CLI::Range(1, 4096));
  app.add_option("--reps", o.reps, "timed repetitions (the median is reported)")->check(CLI::Range(1, 100));
  app.add_option("--train-epochs", o.train_epochs, "epochs of the small CNN on Fashion-MNIST (0: no training)")
      ->check(CLI::Range(0, 100));
  app.add_option("--train-examples", o.train_examples, "training examples (0: all)")->check(CLI::Range(0, 1 << 30));
  app.add_option("--train-batch", o.train_batch, "minibatch of the CNN training")->check(CLI::Range(1, 4096));
  app.add_option("--lr", o.lr, "Adam's learning rate for the CNN")->check(hfisher_cli::FinitePositive);
  app.add_option("--seed", o.seed, "seed of the weights, the shuffles and the timed inputs")->check(hfisher_cli::Unsigned);
  app.add_option("--data-dir", o.data_dir, "Fashion-MNIST directory (default: $HFISHER_DATA_DIR or Debian's)")
      ->check(hfisher_cli::NonEmpty);
  app.add_option("--output", o.output, "directory for layers.csv")->check(hfisher_cli::NonEmpty);
}

}  // namespace hfisher_perf
