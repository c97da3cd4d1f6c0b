#pragma once
// Distributed K-FAC at BERT-Large shapes: the Kronecker factors of every
// weight layer (24 encoder layers: Q, K, V, O 1024x1024, FFN 1024x4096 and
// 4096x1024; pooler; word/position/type embeddings, whose input factor is
// diagonal) from synthetic activations of the right shapes; one curvature
// refresh = factor statistics (data parallel over tokens, allreduced) +
// damped inversion of every factor, batched over factors of equal size and
// sharded over the MPI ranks (each rank inverts its share, then all gather:
// Osawa et al. 2019, Pauloski et al. 2020). Times one rank against all ranks
// in the same run, and what HODLR compression of the large factors saves.
// With --encoder (kfac_bert_encoder.cpp) the factors come instead from
// BERT-shaped encoder blocks run through the engine's own forward and
// backward on random token ids, and the study times whole K-FAC steps.

#include <string>

namespace hfisher_perf {

struct KfacBertOptions {
  int layers = 24, hidden = 1024, ffn = 4096, vocab = 30522, positions = 512;
  int scale = 8;     ///< divide hidden/ffn/vocab/positions by this (1: full BERT-Large)
  int tokens = 512;  ///< tokens per refresh (global, split over the ranks)
  double damping = 1e-3;
  double rho = 0.9;   ///< AR(1) correlation of neighbouring features in the synthetic activations
  double tol = 1e-3;  ///< HODLR tolerance for the large factors
  int reps = 2;
  unsigned seed = 1;
  std::string output;
  double memory_budget_gib = 0;  ///< --memory-budget (0: 80% of the memory available at start)
  // --encoder: real encoder blocks (layers = blocks; hidden, ffn, vocab scaled as above)
  bool encoder = false;
  int heads = 16;    ///< attention heads (scaled by `scale` too: the head width stays 64)
  int seq = 128;     ///< tokens per sequence (2 s^2: 128, 512, ...)
  int batch = 8;     ///< sequences per step (and per curvature refresh)
  int refresh = 10;  ///< steps between curvature refreshes (the amortization of K-FAC's statistics and inverses)
  std::string damping_mode = "eigen";  ///< --encoder: KFACDamping::Eigen or Factored (damped inverses)
};

int run_kfac_bert(const KfacBertOptions& o);
/// The --encoder study (kfac_bert_encoder.cpp).
int run_kfac_bert_encoder(const KfacBertOptions& o);

}  // namespace hfisher_perf
