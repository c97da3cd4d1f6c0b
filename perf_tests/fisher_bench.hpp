#pragma once
// Fisher structures on a trained MLP or CNN: build time, memory, error against the
// exact layer Fisher, natural-gradient angle, solve time; and the cost of a
// hierarchical factorization against K-FAC's inversion on a large layer.

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

}  // namespace hfisher_perf
