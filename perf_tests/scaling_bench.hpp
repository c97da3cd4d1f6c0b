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

}  // namespace hfisher_perf
