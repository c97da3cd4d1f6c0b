#pragma once
// Fisher structures on a trained MLP or CNN: build time, memory, error against the
// exact layer Fisher, natural-gradient angle, solve time; and the cost of a
// hierarchical factorization against K-FAC's inversion on a large layer.

#include <CLI/CLI.hpp>
#include <hfisher/fisher/kind.hpp>

#include "cli_checks.hpp"

#include <string>
#include <vector>

namespace hfisher_perf {

struct FisherBenchOptions {
  std::string data;           ///< MNIST-format directory (empty: Debian's Fashion-MNIST)
  std::string model = "mlp";  ///< mlp (--widths) | cnn | vit (the small CNN / ViT of hfisher-bench layers)
  std::vector<int> widths = {784, 256, 256, 10};
  int train_examples = 60000;
  int epochs = 2;
  int batch = 128;
  double lr = 1e-3;          ///< Adam
  std::string kind = "ggn";  ///< empirical | mc | ggn
  int mc_samples = 1;
  int fisher_examples = 500;
  int layer = -1;            ///< layer whose exact Fisher is formed (-1: the last)
  bool matrix_free = false;  ///< also hierarchical rows built from Fisher-vector products
  /// whole-model study: structures over every layer (the network structure
  /// among them) against CG on exact Fisher-vector products (--network)
  bool network = false;
  std::vector<double> network_tols = {1e-2, 1e-3};      ///< HODLR / network tolerances of that study
  bool spd_rows = false;                                ///< also run hierarchical with SPD-preserving compensation
  double damping = 1e-2;                                ///< relative to trace(F) / n
  std::vector<int> ranks = {4, 16, 64, 256};            ///< low-rank ranks
  std::vector<double> tols = {1e-1, 3e-2, 1e-2, 1e-3};  ///< hierarchical tolerances
  std::vector<int> level_ranks = {4, 8, 32};            ///< multilevel (layer + units) ranks per level
  int leaf = 64;
  int big_layer = 1;  ///< layer of the factorization-vs-K-FAC test (-1: skip)
  int big_examples = 256;
  double big_tol = 1e-2;  ///< hierarchical tolerance of the big-layer test
  unsigned seed = 1;
  std::string output;
  double memory_budget_gib = 0;  ///< --memory-budget (0: 80% of the memory available at start)
};

int run_fisher_bench(const FisherBenchOptions& opts);

/// Binds the options to `app` (hfisher-bench's subcommand and the single-study program).
inline void add_fisher_options(CLI::App& app, FisherBenchOptions& o) {
  app.add_option("--data", o.data,
                 "directory of MNIST-format files (default: $HFISHER_DATA_DIR or Debian's "
                 "/usr/share/datasets/fashion-mnist)");
  app.add_option("--model", o.model,
                 "mlp (widths from --widths), cnn (conv 5x5x16, pool, conv 5x5x32, pool, "
                 "linear 128, linear 10; its --layer 0 and 1 are convolutions) or vit (the small "
                 "vision transformer of hfisher-bench layers; layers: 0 patches, 1 position, then "
                 "per block q/k/v, output, feed-forward 1 and 2, 10 the classifier)")
      ->check(CLI::IsMember({"mlp", "cnn", "vit"}));
  app.add_option("--widths", o.widths, "MLP widths, inputs first, classes last")->check(CLI::Range(1, 1 << 16));
  app.add_option("--train-examples", o.train_examples, "training examples used")->check(CLI::Range(1, 60000));
  app.add_option("--epochs", o.epochs, "training epochs (Adam) before the Fisher is estimated")
      ->check(CLI::Range(0, 1000));
  app.add_option("--batch", o.batch, "training batch size")->check(CLI::Range(1, 1 << 16));
  app.add_option("--lr", o.lr, "Adam learning rate")->check(hfisher_cli::FinitePositive);
  app.add_option("--kind", o.kind, "Fisher kind")->check(CLI::IsMember(hfisher::fisher_kind_name_list()));
  app.add_option("--mc-samples", o.mc_samples, "labels sampled per example (--kind mc)")->check(CLI::Range(1, 1000));
  app.add_option("--fisher-examples", o.fisher_examples, "examples the Fisher is estimated from")
      ->check(CLI::Range(1, 60000));
  app.add_option("--layer", o.layer, "layer whose exact Fisher is formed and compared (-1: the last)")
      ->check(CLI::Range(-1, 64));
  app.add_option("--damping", o.damping, "damping lambda relative to trace(F)/n (natural-gradient solves)")
      ->check(hfisher_cli::FinitePositive);
  app.add_option("--ranks", o.ranks, "ranks of the low-rank + diagonal structure")->check(CLI::Range(1, 1 << 16));
  app.add_option("--level-ranks", o.level_ranks,
                 "ranks per level of the multilevel structure (two levels: the layer, then each output unit)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--tols", o.tols, "compression tolerances of the hierarchical structure")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-14, 0.9));
  app.add_flag("--matrix-free", o.matrix_free,
               "also build each hierarchical tolerance from Fisher-vector products (rows hodlr-mf and hss-mf: no "
               "per-sample factors; build time includes every product)");
  app.add_flag(
      "--network", o.network,
      "whole-model study: diagonal, K-FAC, low-rank, per-layer HODLR and HSS and the network structure (one HODLR "
      "over every parameter, cross-layer blocks kept) against CG on exact Fisher-vector products: error "
      "estimated with products, natural-gradient angle, memory, time");
  app.add_option("--network-tols", o.network_tols,
                 "tolerances of the per-layer HODLR, HSS and network rows of --network")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-14, 0.9));
  app.add_flag("--spd-rows", o.spd_rows, "also run the hierarchical structure with SPD-preserving compensation");
  app.add_option("--leaf", o.leaf, "leaf size of the hierarchical structure")->check(CLI::Range(2, 4096));
  app.add_option("--big-layer", o.big_layer, "layer for hierarchical factorization vs K-FAC inversion (-1: skip)")
      ->check(CLI::Range(-1, 64));
  app.add_option("--big-examples", o.big_examples, "examples for the big-layer test")->check(CLI::Range(1, 60000));
  app.add_option("--big-tol", o.big_tol, "hierarchical tolerance of the big-layer test")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-14, 0.9));
  app.add_option("--seed", o.seed, "seed of initialization and shuffling")->check(hfisher_cli::Unsigned);
  hfisher_cli::add_memory_budget_option(app, o.memory_budget_gib);
  app.add_option("--output", o.output, "directory for fisher.csv, fisher.json, fisher.gp/.png")
      ->check(hfisher_cli::NonEmpty);
}

}  // namespace hfisher_perf
