#pragma once
/// \file compression.hpp
/// \brief Options of H-matrix compression and the rank report.

#include <hfisher/core/error.hpp>

namespace hfisher {

/// tol: relative tolerance of each off-diagonal block (its dropped part has
/// 2-norm <= tol times the block's 2-norm; 2 tol for the randomized dense
/// path); max_rank: absolute cap on any block's rank.
struct CompressionOptions {
  double tol = 1e-8;
  int max_rank = 64;
  unsigned long long seed = 42;  ///< for randomized compression
  /// Keep a positive semi-definite input positive semi-definite (from_factors
  /// and add): each truncated off-diagonal pair [0 E; E^T 0] is compensated by
  /// adding a bound delta >= |E|_2 to the diagonal of that node, so the
  /// compressed matrix is >= the exact one (Xing & Chow's SPD-preserving idea,
  /// applied per HODLR level). delta is the exact largest discarded singular
  /// value when a block is truncated from its factors (QR/QR/SVD), and the
  /// Frobenius norm of the residual when it was formed and compressed by the
  /// randomized SVD; the diagonal grows by the sum over levels of delta.
  bool spd_compensation = false;
  void validate(const char* where) const {
    detail::require(tol > 0.0 && tol < 1.0, where, "CompressionOptions.tol must lie in (0, 1), got ", tol);
    detail::require(max_rank >= 1, where, "CompressionOptions.max_rank must be >= 1, got ", max_rank);
  }
};

/// Ranks of the off-diagonal blocks of one tree level.
struct RankStats {
  int level = 0;
  int min = 0, max = 0;
  double mean = 0;
  int padded = 0;  ///< the level's storage rank
};

}  // namespace hfisher
