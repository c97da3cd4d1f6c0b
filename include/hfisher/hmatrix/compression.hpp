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
  /// Matrix-free construction (from_matvec): extra test vectors beyond a
  /// level's rank (the sample of a block must be wider than its rank by this
  /// much before the rank is trusted).
  int oversampling = 10;
  /// Matrix-free construction: products spent on the a-posteriori error
  /// estimate (fresh Gaussian probes).
  int probes = 8;
  /// Matrix-free construction: cap on the products (test vectors plus
  /// probes); 0 lets the construction take what the rank cap needs.
  int max_products = 0;
  void validate(const char* where) const {
    detail::require(tol > 0.0 && tol < 1.0, where, "CompressionOptions.tol must lie in (0, 1), got ", tol);
    detail::require(max_rank >= 1, where, "CompressionOptions.max_rank must be >= 1, got ", max_rank);
  }
};

/// How a matrix-free construction went.
struct MatvecInfo {
  int products = 0;          ///< columns multiplied by the operator in all
  int samples = 0;           ///< test vectors the representation was built from
  int probes = 0;            ///< products spent on the error estimate
  int rebuilds = 0;          ///< passes repeated with more test vectors
  bool saturated = false;    ///< the product budget ran out before every rank was resolved
  double error_estimate = 0; ///< |A - H|_F / |A|_F estimated from the probes (|A P - H P|_F / |A P|_F)
};

/// Ranks of the off-diagonal blocks of one tree level.
struct RankStats {
  int level = 0;
  int min = 0, max = 0;
  double mean = 0;
  int padded = 0;  ///< the level's storage rank
};

}  // namespace hfisher
