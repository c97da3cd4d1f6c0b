#pragma once
/// \file compression.hpp
/// \brief Options of H-matrix compression and the rank report.

#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>

#include <cstdint>
#include <istream>
#include <ostream>
#include <string>

#include <vector>

namespace hfisher {

/// tol: relative tolerance of each off-diagonal block (its dropped part has
/// 2-norm <= tol times the block's 2-norm; 2 tol for the randomized dense
/// path); max_rank: cap on any block's rank, 0 (the default) for none (a
/// block's rank is then bounded by its size only).
///
/// No silent truncation: when the cap stops a block from reaching tol, the
/// construction throws an hfisher::Error naming the level and the block,
/// unless allow_capped is set; then the block keeps max_rank terms and is
/// counted in ranks()[level].capped.
struct CompressionOptions {
  double tol = 1e-8;
  int max_rank = 0;
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
  /// Products spent on the a-posteriori error estimate (fresh Gaussian
  /// probes; HODLR::from_entries samples 1024 entries per probe instead).
  /// At least 1 for the matrix-free constructions; 0 skips the estimate of
  /// the others (see BuildInfo).
  int probes = 8;
  /// Matrix-free construction: cap on the products (test vectors plus
  /// probes); 0 lets the construction take what the rank cap needs.
  int max_products = 0;
  /// Accept blocks that max_rank stops short of tol (a memory budget):
  /// they are reported in ranks()[level].capped instead of an error.
  bool allow_capped = false;
  /// The rank bound of a block of size m: min(max_rank, m), or m without a cap.
  int rank_cap(int m) const { return max_rank > 0 && max_rank < m ? max_rank : m; }
  void validate(const char* where) const {
    detail::require(tol > 0.0 && tol < 1.0, where, "CompressionOptions.tol must lie in (0, 1), got ", tol);
    detail::require(max_rank >= 0, where, "CompressionOptions.max_rank must be >= 0 (0: no cap), got ", max_rank);
    detail::require(probes >= 0 && probes <= 4096, where, "CompressionOptions.probes must lie in [0, 4096], got ",
                    probes);
  }
};

namespace io {

/// CompressionOptions as a versioned record (HODLR and HSS files from their
/// format version 2): uint32 record version (1) and payload bytes (36), then
/// tol (double), max_rank (int32), seed (uint64), oversampling, probes and
/// max_products (int32 each), and flags (uint32: bit 0 spd_compensation,
/// bit 1 allow_capped; the other bits must be 0).
inline void put_options(std::ostream& o, const CompressionOptions& c) {
  put(o, std::uint32_t(1));
  put(o, std::uint32_t(36));
  put(o, c.tol);
  put(o, std::int32_t(c.max_rank));
  put(o, std::uint64_t(c.seed));
  put(o, std::int32_t(c.oversampling));
  put(o, std::int32_t(c.probes));
  put(o, std::int32_t(c.max_products));
  put(o, std::uint32_t((c.spd_compensation ? 1u : 0u) | (c.allow_capped ? 2u : 0u)));
}

/// Reads and checks a record written by put_options.
inline CompressionOptions get_options(std::istream& i, const std::string& what, const char* where) {
  const auto version = get<std::uint32_t>(i, what, where);
  const auto bytes = get<std::uint32_t>(i, what, where);
  detail::require(version == 1 && bytes == 36, where, what, ": corrupt options record (version ", version, ", ", bytes,
                  " bytes; this build reads version 1 of 36 bytes)");
  CompressionOptions c;
  c.tol = get<double>(i, what, where);
  c.max_rank = get<std::int32_t>(i, what, where);
  c.seed = get<std::uint64_t>(i, what, where);
  c.oversampling = get<std::int32_t>(i, what, where);
  c.probes = get<std::int32_t>(i, what, where);
  c.max_products = get<std::int32_t>(i, what, where);
  const auto flags = get<std::uint32_t>(i, what, where);
  c.spd_compensation = (flags & 1u) != 0;
  c.allow_capped = (flags & 2u) != 0;
  detail::require(c.tol > 0 && c.tol < 1 && c.max_rank >= 0 && c.oversampling >= 0 && c.probes >= 0 &&
                      c.probes <= 4096 && c.max_products >= 0 && (flags & ~3u) == 0,
                  where, what, ": corrupt options (tol = ", c.tol, ", max_rank = ", c.max_rank,
                  ", oversampling = ", c.oversampling, ", probes = ", c.probes, ", max_products = ", c.max_products,
                  ", flags = ", flags, ")");
  return c;
}

/// The block ranks of one level and which of them max_rank capped (format
/// version 2 of HODLR and HSS): the ranks as int32, then one byte (0 or 1)
/// per block.
inline void put_ranks(std::ostream& o, const std::vector<int>& ranks, const std::vector<char>& capped) {
  for (int r : ranks) put(o, std::int32_t(r));
  for (std::size_t b = 0; b < ranks.size(); ++b) put(o, std::uint8_t(b < capped.size() && capped[b] ? 1 : 0));
}

/// Reads `count` ranks written by put_ranks, each in [0, bound] (version 2),
/// or, for version 1, ranks with the capped flag in bit 30.
inline void get_ranks(std::istream& i, std::uint32_t version, int count, int bound, std::vector<int>& ranks,
                      std::vector<char>& capped, const std::string& what, const char* where, int level) {
  require_available(i, (version >= 2 ? 5ULL : 4ULL) * count, what, where);
  ranks.assign(count, 0);
  capped.assign(count, 0);
  for (int b = 0; b < count; ++b) {
    int r = get<std::int32_t>(i, what, where);
    if (version < 2) {
      capped[b] = (r & (1 << 30)) != 0;
      r &= ~(1 << 30);
    }
    detail::require(r >= 0 && r <= bound, where, what, ": corrupt block rank ", r, " at level ", level);
    ranks[b] = r;
  }
  if (version < 2) return;
  for (int b = 0; b < count; ++b) {
    const auto f = get<std::uint8_t>(i, what, where);
    detail::require(f <= 1, where, what, ": corrupt capped flag ", int(f), " at level ", level);
    capped[b] = char(f);
  }
}

}  // namespace io

/// How a construction went: the achieved-error estimate of every
/// construction, and for the matrix-free ones the products spent.
/// error_estimate is |A - H|_F / |A|_F estimated a posteriori against the
/// source:
///  - products with A (from_matvec, from_dense, from_factors; HSS always):
///    |A P - H P|_F / |A P|_F for `probes` fresh Gaussian probes P;
///  - sampled entries (HODLR::from_entries, where a product with A would
///    cost O(n^2)): sqrt(sum (a_ij - h_ij)^2 / sum a_ij^2) over `entries`
///    entries (i, j) drawn uniformly, which is unbiased for both sums.
/// With opts.probes = 0 no estimate is made (probes and entries stay 0).
/// It describes the construction that made the matrix: add, scale and
/// recompress leave it as it was, and save() does not store it (a loaded
/// matrix reports zeros).
struct BuildInfo {
  int products = 0;           ///< columns multiplied by the operator in all (estimate included)
  int samples = 0;            ///< test vectors the representation was built from (matrix-free)
  int probes = 0;             ///< products spent on the error estimate
  int entries = 0;            ///< sampled entries spent on the error estimate (from_entries)
  int rebuilds = 0;           ///< passes repeated with more test vectors
  bool saturated = false;     ///< the product budget ran out before every rank was resolved
  double error_estimate = 0;  ///< |A - H|_F / |A|_F, estimated as above
};
/// The former name, from when only the matrix-free constructions reported.
using MatvecInfo = BuildInfo;

/// Ranks of the off-diagonal blocks of one tree level.
struct RankStats {
  int level = 0;
  int min = 0, max = 0;
  double mean = 0;
  int padded = 0;  ///< the level's storage rank
  /// Blocks (HODLR) or nodes (HSS) whose rank max_rank stopped short of the
  /// tolerance (only with CompressionOptions::allow_capped; else an error).
  int capped = 0;
};

namespace detail {
/// The no-silent-truncation contract: `capped` holds one flag per block of
/// `level`; without opts.allow_capped the first capped block is an error.
inline void check_capped(const CompressionOptions& opts, const char* where, int level,
                         const std::vector<char>& capped) {
  if (opts.allow_capped) return;
  for (std::size_t b = 0; b < capped.size(); ++b)
    detail::require(!capped[b], where, "max_rank = ", opts.max_rank, " stops block ", b, " of level ", level,
                    " from reaching tol = ", opts.tol, "; raise max_rank (0: no cap), or set ",
                    "CompressionOptions.allow_capped to keep capped blocks (reported in ranks())");
}
}  // namespace detail

}  // namespace hfisher
