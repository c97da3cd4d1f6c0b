#pragma once
/// \file options.hpp
/// \brief FisherOptions: what estimate_fisher reads (examples, layers,
/// rank, tolerances, per-structure settings, memory budget), validated.

#include <hfisher/core/error.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/kfac.hpp>  // KFACDamping

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hfisher {

/// LowRank: diagonal + the leading eigen-directions of the sampled Fisher.
struct LowRankFisherOptions {
  int rank = 64;      ///< largest rank kept
  double tol = 1e-6;  ///< relative truncation tolerance of the randomized SVD (eigenvalue <= tol * largest: dropped)

  void validate(const char* where) const {
    hfisher::detail::require(rank >= 1, where, "lowrank.rank = ", rank, " (must be >= 1)");
    hfisher::detail::require(tol > 0 && tol < 1, where, "lowrank.tol = ", tol, " (must lie in (0, 1))");
  }
};

/// K-FAC: how the Kronecker factors are damped, and the variant for layers
/// applied at several positions (convolutions, tokens).
struct KFACFisherOptions {
  KFACDamping damping = KFACDamping::Eigen;
  KFACVariant variant = KFACVariant::Expand;  ///< K-FAC of layers at T > 1 positions
};

/// HODLR and HSS blocks: the compression of their off-diagonal blocks.
struct CompressionFisherOptions {
  double tol = 1e-6;  ///< relative truncation tolerance
  int leaf = 64;      ///< leaf size of the balanced cluster tree
  /// rank cap of off-diagonal blocks (HSS: of every node's basis), a memory
  /// budget: blocks it stops short of tol are kept and counted in
  /// ranks()[level].capped (0: no cap; the rank is then bounded by the samples)
  int max_rank = 256;
  /// HODLR only: add a bound of each truncation error to the diagonal so the
  /// compressed Fisher stays positive semi-definite at any tolerance (costs
  /// accuracy on the diagonal; see CompressionOptions::spd_compensation).
  /// Without it, a loose tolerance may need damping above the truncation error.
  bool spd_compensation = false;

  void validate(const char* where) const {
    hfisher::detail::require(tol > 0 && tol < 1, where, "compression.tol = ", tol, " (must lie in (0, 1))");
    hfisher::detail::require(leaf >= 2, where, "compression.leaf = ", leaf, " (must be >= 2)");
    hfisher::detail::require(max_rank >= 0, where, "compression.max_rank = ", max_rank, " (must be >= 0; 0: no cap)");
  }
};

/// Multilevel: a diagonal plus nested low-rank terms per layer (nodes split
/// a layer's output units).
struct MultilevelFisherOptions {
  int levels = 2;          ///< levels of nested low-rank terms per layer
  int rank = 8;            ///< rank of each node's term
  std::vector<int> ranks;  ///< rank per level (overrides rank when not empty)
  /// children per node; nodes split a layer's output units (the default
  /// makes level 1 one node per unit for layers of up to 256 units)
  int branching = 256;
  /// power steps of the randomized eigensolver that finds each node's
  /// directions (Halko, Martinsson & Tropp 2011, Alg. 4.4: q); 0 is one
  /// pass. Each step costs one product with every node's Gram matrix and one
  /// batched QR. The default (1 step, oversampling 8) reached the same
  /// continual-learning accuracy as 2 steps with 2r + 8 columns at about
  /// half the construction time (docs/continual.md).
  int power_steps = 1;
  /// columns beyond a node's rank in the randomized eigensolver's block
  /// (Halko et al.'s p): a block of min(S, r + p) columns for S samples;
  /// -1: p = r + 8.
  int oversampling = 8;
  double tol = 1e-6;  ///< a node's direction with eigenvalue <= tol * the node's largest is not kept

  void validate(const char* where) const {
    hfisher::detail::require(levels >= 1 && levels <= 16, where, "multilevel.levels = ", levels,
                             " (must lie in [1, 16])");
    hfisher::detail::require(rank >= 1, where, "multilevel.rank = ", rank, " (must be >= 1)");
    hfisher::detail::require(ranks.empty() || int(ranks.size()) == levels, where, "multilevel.ranks has ", ranks.size(),
                             " entries for ", levels, " levels");
    for (int r : ranks) hfisher::detail::require(r >= 1, where, "a multilevel rank is ", r, " (must be >= 1)");
    hfisher::detail::require(branching >= 2, where, "multilevel.branching = ", branching, " (must be >= 2)");
    hfisher::detail::require(power_steps >= 0 && power_steps <= 16, where, "multilevel.power_steps = ", power_steps,
                             " (must lie in [0, 16])");
    hfisher::detail::require(oversampling >= -1, where, "multilevel.oversampling = ", oversampling,
                             " (must be >= 0, or -1 for the rank + 8)");
    hfisher::detail::require(tol >= 0 && tol < 1, where, "multilevel.tol = ", tol, " (must lie in [0, 1))");
  }
};

/// What estimate_fisher reads: the sampling (examples, batch, labels,
/// layers) at the top, then one group per structure, each validating itself.
struct FisherOptions {
  /// Examples of the data used: the first `examples` ones, or all of them
  /// when 0 (the default: the Fisher of the data given, never a silent cap).
  int examples = 0;
  int batch = 256;                       ///< examples per forward/backward pass
  int mc_samples = 1;                    ///< labels sampled per example (MonteCarlo)
  std::uint64_t seed = 1;                ///< seed of the label sampler (MonteCarlo)
  std::vector<int> layers;               ///< model layers covered (empty: all), in increasing order
  LowRankFisherOptions lowrank;          ///< Structure::LowRank
  KFACFisherOptions kfac;                ///< Structure::KFAC
  CompressionFisherOptions compression;  ///< Structure::HODLR, Structure::HSS
  MultilevelFisherOptions multilevel;    ///< Structure::Multilevel
  Structure block = Structure::Dense;    ///< BlockDiagonal: structure of each layer's block
  /// Build from Fisher-vector products (FisherProduct: forward-mode and
  /// backward passes, no per-sample factors kept) instead of from
  /// collect_samples(): HODLR and HSS blocks and the network structure
  /// (HODLR/HSS::from_matvec, compression.tol and compression.max_rank as
  /// above; each block's build_info() reports the products and the
  /// estimated error). Memory no longer grows with the examples.
  bool matrix_free = false;
  std::size_t memory_budget = std::size_t(4) << 30;  ///< bytes an estimate may allocate

  /// The tolerance of every structure that has one (low-rank, HODLR / HSS,
  /// multilevel) set to `t`.
  FisherOptions& set_tol(double t) {
    lowrank.tol = compression.tol = multilevel.tol = t;
    return *this;
  }

  void validate(const char* where) const {
    hfisher::detail::require(examples >= 0, where, "examples = ", examples, " (must be >= 0; 0 uses all)");
    hfisher::detail::require(batch >= 1, where, "batch = ", batch, " (must be >= 1)");
    hfisher::detail::require(mc_samples >= 1, where, "mc_samples = ", mc_samples, " (must be >= 1)");
    lowrank.validate(where);
    compression.validate(where);
    multilevel.validate(where);
    hfisher::detail::require(block != Structure::BlockDiagonal, where,
                             "block = BlockDiagonal would nest block-diagonals");
    hfisher::detail::require(block != Structure::Network, where,
                             "block = Network: the network structure spans every layer, it is not a layer block");
    hfisher::detail::require(memory_budget > 0, where, "memory_budget is 0");
  }
};

}  // namespace hfisher
