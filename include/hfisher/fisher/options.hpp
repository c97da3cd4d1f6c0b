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

struct FisherOptions {
  /// Examples of the data used: the first `examples` ones, or all of them
  /// when 0 (the default: the Fisher of the data given, never a silent cap).
  int examples = 0;
  int batch = 256;          ///< examples per forward/backward pass
  int mc_samples = 1;       ///< labels sampled per example (MonteCarlo)
  std::uint64_t seed = 1;   ///< seed of the label sampler (MonteCarlo)
  std::vector<int> layers;  ///< model layers covered (empty: all), in increasing order
  KFACDamping kfac_damping = KFACDamping::Eigen;
  KFACVariant kfac_variant = KFACVariant::Expand;  ///< K-FAC of layers at T > 1 positions
  int rank = 64;                                   ///< LowRank: largest rank kept
  double tol = 1e-6;                               ///< LowRank, HODLR, HSS: relative truncation tolerance
  int leaf = 64;                                   ///< HODLR, HSS: leaf size of the balanced cluster tree
  /// HODLR, HSS: rank cap of off-diagonal blocks (HSS: of every node's basis), a memory budget: blocks
  /// it stops short of tol are kept and counted in ranks()[level].capped
  /// (0: no cap; the rank is then bounded by the samples)
  int hodlr_max_rank = 256;
  /// HODLR only: add a bound of each truncation error to the diagonal so the
  /// compressed Fisher stays positive semi-definite at any tolerance (costs
  /// accuracy on the diagonal; see CompressionOptions::spd_compensation).
  /// Without it, a loose tolerance may need damping above the truncation error.
  bool spd_compensation = false;
  int multilevel_levels = 2;          ///< Multilevel: levels of nested low-rank terms per layer
  int multilevel_rank = 8;            ///< Multilevel: rank of each node's term
  std::vector<int> multilevel_ranks;  ///< Multilevel: rank per level (overrides multilevel_rank when not empty)
  /// Multilevel: children per node; nodes split a layer's output units (the
  /// default makes level 1 one node per unit for layers of up to 256 units)
  int multilevel_branching = 256;
  /// Multilevel: power steps of the randomized eigensolver that finds each
  /// node's directions (Halko, Martinsson & Tropp 2011, Alg. 4.4: q); 0 is
  /// one pass. Each step costs one product with every node's Gram matrix and
  /// one batched QR. The default (1 step, oversampling 8) reached the same
  /// continual-learning accuracy as 2 steps with 2r + 8 columns at about
  /// half the construction time (docs/continual.md).
  int multilevel_power_steps = 1;
  /// Multilevel: columns beyond a node's rank in the randomized eigensolver's
  /// block (Halko et al.'s p): a block of min(S, r + p) columns for S
  /// samples; -1: p = r + 8.
  int multilevel_oversampling = 8;
  Structure block = Structure::Dense;  ///< BlockDiagonal: structure of each layer's block
  /// Build from Fisher-vector products (FisherProduct: forward-mode and
  /// backward passes, no per-sample factors kept) instead of from
  /// collect_samples(): HODLR and HSS blocks and the network structure
  /// (HODLR/HSS::from_matvec, tol and hodlr_max_rank as above; each block's
  /// build_info() reports the products and the estimated error). Memory no
  /// longer grows with the examples.
  bool matrix_free = false;
  std::size_t memory_budget = std::size_t(4) << 30;  ///< bytes an estimate may allocate

  void validate(const char* where) const {
    hfisher::detail::require(examples >= 0, where, "examples = ", examples, " (must be >= 0; 0 uses all)");
    hfisher::detail::require(batch >= 1, where, "batch = ", batch, " (must be >= 1)");
    hfisher::detail::require(mc_samples >= 1, where, "mc_samples = ", mc_samples, " (must be >= 1)");
    hfisher::detail::require(rank >= 1, where, "rank = ", rank, " (must be >= 1)");
    hfisher::detail::require(tol > 0 && tol < 1, where, "tol = ", tol, " (must lie in (0, 1))");
    hfisher::detail::require(leaf >= 2, where, "leaf = ", leaf, " (must be >= 2)");
    hfisher::detail::require(hodlr_max_rank >= 0, where, "hodlr_max_rank = ", hodlr_max_rank,
                             " (must be >= 0; 0: no cap)");
    hfisher::detail::require(multilevel_levels >= 1 && multilevel_levels <= 16, where,
                             "multilevel_levels = ", multilevel_levels, " (must lie in [1, 16])");
    hfisher::detail::require(multilevel_rank >= 1, where, "multilevel_rank = ", multilevel_rank, " (must be >= 1)");
    hfisher::detail::require(multilevel_ranks.empty() || int(multilevel_ranks.size()) == multilevel_levels, where,
                             "multilevel_ranks has ", multilevel_ranks.size(), " entries for ", multilevel_levels,
                             " levels");
    for (int r : multilevel_ranks)
      hfisher::detail::require(r >= 1, where, "a multilevel rank is ", r, " (must be >= 1)");
    hfisher::detail::require(multilevel_branching >= 2, where, "multilevel_branching = ", multilevel_branching,
                             " (must be >= 2)");
    hfisher::detail::require(multilevel_power_steps >= 0 && multilevel_power_steps <= 16, where,
                             "multilevel_power_steps = ", multilevel_power_steps, " (must lie in [0, 16])");
    hfisher::detail::require(multilevel_oversampling >= -1, where,
                             "multilevel_oversampling = ", multilevel_oversampling,
                             " (must be >= 0, or -1 for the rank + 8)");
    hfisher::detail::require(block != Structure::BlockDiagonal, where,
                             "block = BlockDiagonal would nest block-diagonals");
    hfisher::detail::require(block != Structure::Network, where,
                             "block = Network: the network structure spans every layer, it is not a layer block");
    hfisher::detail::require(memory_budget > 0, where, "memory_budget is 0");
  }
};

}  // namespace hfisher
