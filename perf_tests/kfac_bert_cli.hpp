#pragma once
// CLI11 options of hfisher-bench kfac-bert.
#include <CLI/CLI.hpp>

#include "cli_checks.hpp"

#include "kfac_bert.hpp"

namespace hfisher_perf {

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
