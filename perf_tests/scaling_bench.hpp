#pragma once
// Scaling study of one layer's Fisher: for N = 2^p parameters, the cost of
// building and factorizing (first damped solve) the Fisher as dense, K-FAC,
// low-rank, hierarchical (HODLR) and HSS (ULV-factored), the error of each
// against the exact Fisher (applied matrix-free), and the fitted exponent of
// the cost in N.
// - model "synthetic": the Fisher of S synthetic per-sample gradients. Under
//   MPI, the per-layer builds of `layers` identical layers are sharded over
//   the ranks: strong and weak scaling against the same work on one rank,
//   measured in the same run.
// - model "mlp": the hidden layer (w x (w + 1), w = round(2^(p/2))) of an
//   MLP inputs-w-w-classes trained on the data, its Fisher (kind) over S
//   examples; with matrix_free the HODLR and HSS rows ("hodlr-mf",
//   "hss-mf") are built from Fisher-vector products, the others from the
//   per-sample factors. Under MPI the passes and products are sharded over
//   the examples.

#include <CLI/CLI.hpp>
#include <hfisher/fisher/kind.hpp>

#include "cli_checks.hpp"

#include <string>
#include <vector>

namespace hfisher_perf {

struct ScalingBenchOptions {
  int min_log2 = 12, max_log2 = 18;  ///< N = 2^min_log2 .. 2^max_log2
  int dense_max_log2 = 12;           ///< largest N for the dense structure
  int kfac_max_log2 = 22;            ///< largest N for K-FAC (its eigendecompositions grow as N^1.5)
  int lowrank_max_log2 = 26;         ///< largest N for low-rank
  int hierarchical_max_log2 = 26;    ///< largest N for HODLR (memory ~ N log N k)
  int hss_max_log2 = 26;             ///< largest N for HSS (memory ~ N k, build workspace ~ N s)
  std::vector<std::string> structures = {"dense", "kfac", "lowrank", "hodlr", "hss"};
  int samples = 64;                 ///< S: synthetic per-sample gradients, or the examples feeding the Fisher (mlp)
  std::string model = "synthetic";  ///< synthetic | mlp
  bool matrix_free = false;         ///< mlp: HODLR and HSS built from Fisher-vector products
  std::string data;                 ///< mlp: MNIST-format directory (empty: Debian's Fashion-MNIST)
  int train_examples = 10000;       ///< mlp: training examples (Adam, lr 1e-3, batch 128)
  int epochs = 1;                   ///< mlp: training epochs before the Fisher is estimated
  std::string kind = "ggn";         ///< mlp: empirical | mc | ggn
  double tol = 1e-6;                ///< low-rank / hierarchical relative truncation tolerance
  int leaf = 64, max_rank = 64;     ///< hierarchical leaf size and rank cap
  double damping = 1e-2;            ///< relative to trace(F) / N
  int layers = 1;                   ///< identical layers per structure (block-diagonal; MPI shards them)
  int reps = 1;                     ///< repetitions (best time)
  unsigned seed = 1;
  std::string output;            ///< directory for scaling.csv/.json/.gp/.png
  double memory_budget_gib = 0;  ///< --memory-budget (0: 80% of the memory available at start)
};

int run_scaling_bench(const ScalingBenchOptions& o);

/// Binds the options to `app` (hfisher-bench's subcommand and the single-study program).
inline void add_scaling_options(CLI::App& app, ScalingBenchOptions& o) {
  app.add_option("--min-log2", o.min_log2, "smallest layer size N = 2^p parameters")->check(CLI::Range(6, 26));
  app.add_option("--max-log2", o.max_log2, "largest layer size N = 2^p parameters")->check(CLI::Range(6, 26));
  app.add_option("--dense-max-log2", o.dense_max_log2, "largest N for the dense structure (memory N^2)")
      ->check(CLI::Range(0, 16));
  app.add_option("--kfac-max-log2", o.kfac_max_log2, "largest N for K-FAC (eigendecompositions cost N^1.5)")
      ->check(CLI::Range(0, 26));
  app.add_option("--lowrank-max-log2", o.lowrank_max_log2, "largest N for the low-rank structure")
      ->check(CLI::Range(0, 26));
  app.add_option("--hierarchical-max-log2", o.hierarchical_max_log2,
                 "largest N for HODLR (memory grows as N log N x rank: ~3.8 GB at 2^19 with the defaults)")
      ->check(CLI::Range(0, 26));
  app.add_option("--hss-max-log2", o.hss_max_log2,
                 "largest N for HSS (memory grows as N x rank: ~2.2 GB at 2^19 with the defaults)")
      ->check(CLI::Range(0, 26));
  app.add_option("--structure", o.structures,
                 "repeatable: dense, kfac, lowrank, hodlr, hss (default: all; hierarchical: the former name of hodlr)")
      ->check(CLI::IsMember({"dense", "kfac", "lowrank", "hodlr", "hierarchical", "hss"}));
  app.add_option("--samples", o.samples,
                 "S: synthetic per-sample gradients (at most 4096), or with --model mlp the examples feeding the "
                 "Fisher")
      ->check(CLI::Range(1, 60000));
  app.add_option("--model", o.model,
                 "synthetic (per-sample gradients drawn at random) or mlp (the hidden layer w x (w + 1), "
                 "w = round(2^(p/2)), of an MLP inputs-w-w-classes trained on --data)")
      ->check(CLI::IsMember({"synthetic", "mlp"}));
  app.add_flag("--matrix-free", o.matrix_free,
               "with --model mlp: HODLR and HSS built from Fisher-vector products (rows hodlr-mf, hss-mf), never "
               "from per-sample gradients");
  app.add_option("--data", o.data,
                 "with --model mlp: directory of MNIST-format files (default: $HFISHER_DATA_DIR or Debian's "
                 "/usr/share/datasets/fashion-mnist)");
  app.add_option("--train-examples", o.train_examples, "with --model mlp: training examples used")
      ->check(CLI::Range(1, 60000));
  app.add_option("--epochs", o.epochs, "with --model mlp: training epochs (Adam, lr 1e-3, batch 128)")
      ->check(CLI::Range(0, 1000));
  app.add_option("--kind", o.kind, "with --model mlp: Fisher kind")
      ->check(CLI::IsMember(hfisher::fisher_kind_name_list()));
  app.add_option("--tol", o.tol, "low-rank / hierarchical relative truncation tolerance")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-14, 0.9));
  app.add_option("--leaf", o.leaf, "hierarchical leaf size")->check(CLI::Range(2, 4096));
  app.add_option("--max-rank", o.max_rank,
                 "hierarchical rank cap of off-diagonal blocks (with --model mlp also the low-rank rank)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--damping", o.damping, "damping relative to trace(F)/N")->check(hfisher_cli::FinitePositive);
  app.add_option("--layers", o.layers, "identical layers per structure; under MPI their builds are sharded over ranks")
      ->check(CLI::Range(1, 1024));
  app.add_option("--reps", o.reps, "repetitions per measurement (best time)")->check(CLI::Range(1, 100));
  app.add_option("--seed", o.seed, "seed of the synthetic gradients, or of the MLP's initialization and training")
      ->check(hfisher_cli::Unsigned);
  hfisher_cli::add_memory_budget_option(app, o.memory_budget_gib);
  app.add_option("--output", o.output, "directory for scaling.csv, scaling.json, scaling.gp/.png")
      ->check(hfisher_cli::NonEmpty);
}

}  // namespace hfisher_perf
