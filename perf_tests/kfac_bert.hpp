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

#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

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

/// Binds the options to `app` (hfisher-bench's subcommand and the single-study program).
inline void add_kfac_bert_options(CLI::App& app, KfacBertOptions& o) {
  app.add_flag("--encoder", o.encoder,
               "run BERT-shaped encoder blocks through the engine's forward and backward on random token ids "
               "(factors from real activations and gradients; times whole K-FAC steps against Adam)");
  app.add_option("--layers", o.layers, "encoder layers (BERT-Large: 24)")->check(CLI::Range(1, 96));
  app.add_option("--hidden", o.hidden, "hidden width (BERT-Large: 1024)")->check(CLI::Range(8, 1 << 14));
  app.add_option("--ffn", o.ffn, "feed-forward width (BERT-Large: 4096)")->check(CLI::Range(8, 1 << 16));
  app.add_option("--vocab", o.vocab, "vocabulary size (word embedding rows)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--positions", o.positions, "position embedding rows")->check(CLI::Range(1, 1 << 16));
  app.add_option("--scale", o.scale, "divide every width by this (1: full shapes; default 8 fits this 2-core machine)")
      ->check(CLI::Range(1, 64));
  app.add_option("--tokens", o.tokens, "tokens per curvature refresh, split over the ranks")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--damping", o.damping, "Tikhonov damping of the factors (split by pi)")
      ->check(hfisher_cli::FinitePositive);
  app.add_option("--rho", o.rho, "correlation of neighbouring features in the synthetic activations")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(0.0, 0.999));
  app.add_option("--tol", o.tol, "HODLR tolerance for the compression of the large factors")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-12, 0.9));
  app.add_option("--reps", o.reps, "refreshes timed (best; --encoder: median of the steps and refreshes)")
      ->check(CLI::Range(1, 100));
  app.add_option("--heads", o.heads, "--encoder: attention heads before --scale (BERT-Large: 16)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--seq", o.seq, "--encoder: tokens per sequence, 2 s^2 (128, 512, ...)")
      ->check(CLI::Range(2, 1 << 14));
  app.add_option("--batch", o.batch, "--encoder: sequences per step and per refresh")->check(CLI::Range(1, 1 << 16));
  app.add_option("--damping-mode", o.damping_mode,
                 "--encoder: eigen ((G (x) A + damping I)^-1 in the factors' eigenbases, four products per layer and "
                 "step) or factored (damping split by pi over the factors, two products with the damped inverses "
                 "formed at each refresh)")
      ->check(CLI::IsMember({"eigen", "factored"}));
  app.add_option("--refresh", o.refresh, "--encoder: steps between curvature refreshes")->check(CLI::Range(1, 100000));
  app.add_option("--seed", o.seed, "seed of the synthetic activations")->check(hfisher_cli::Unsigned);
  hfisher_cli::add_memory_budget_option(app, o.memory_budget_gib);
  app.add_option("--output", o.output, "directory for kfac_bert.json / .csv")->check(hfisher_cli::NonEmpty);
}

}  // namespace hfisher_perf
