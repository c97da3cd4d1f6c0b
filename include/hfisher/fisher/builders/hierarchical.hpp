#pragma once
/// \file hierarchical.hpp
/// \brief The HODLR and HSS builders: a layer's Fisher block compressed from
/// its per-sample columns Psi (F = Psi Psi^T; HODLR::from_factors and
/// HSS::from_factors, which never form F).

#include <hfisher/fisher/builders/common.hpp>
#include <hfisher/fisher/hierarchical.hpp>

#include <algorithm>
#include <string>

namespace hfisher {
namespace fisher {
namespace detail {

/// The compression options of a hierarchical Fisher block: tol, the rank cap
/// (a memory budget: capped blocks are kept and reported by ranks()).
inline CompressionOptions hierarchical_compression(const FisherOptions& o) {
  CompressionOptions co;
  co.tol = o.compression.tol;
  co.max_rank = o.compression.max_rank;
  co.allow_capped = true;
  return co;
}

/// Bytes a hierarchical construction holds at a time for P parameters
/// besides the per-sample columns, at rank bound k: HODLR about leaf + 32 k
/// columns (the estimate its builder has always used: the QRs and cores of
/// every block of a level, and the blocks kept); HSS its s >= max(leaf + k,
/// 3 k) + oversampling test vectors with their products and work copies,
/// and the leaf blocks it keeps, about 4 s + leaf columns.
template <class HM>
double hierarchical_build_bytes(long P, int leaf, int k) {
  using Scalar = typename HM::scalar_type;
  constexpr bool hss = HMatrixFormat<HM>::structure == Structure::HSS;
  const double cols = hss ? 4.0 * (std::max(leaf + k, 3 * k) + 16) + leaf : leaf + 2.0 * k * 16;
  return double(P) * cols * sizeof(Scalar);
}

/// Layer k's Fisher block as the H-matrix HM (HODLR<S, E> or HSS<S, E>).
template <class HM, class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> hmatrix_layer(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                    const FisherOptions& o, const char* where) {
  using Format = HMatrixFormat<HM>;
  const long P = s.shapes[k].size();
  const int S = s.samples();
  hfisher::detail::require(P >= 2, where, "layer ", s.layers[k], " has ", P,
                           " parameter(s): too small for a hierarchical block");
  hfisher::detail::require(P <= (long(1) << 30), where, "layer ", s.layers[k], " has ", P,
                           " parameters, more than a hierarchical matrix indexes (2^30)");
  CompressionOptions co = hierarchical_compression(o);
  if constexpr (Format::structure == Structure::HSS) {
    hfisher::detail::require(!o.compression.spd_compensation, where,
                             "FisherOptions::spd_compensation applies to HODLR blocks (it adds each off-diagonal "
                             "block's truncation error to the diagonal); an HSS block takes damping above its error "
                             "estimate instead");
  } else {
    co.spd_compensation = o.compression.spd_compensation;
  }
  const int leaf = int(std::min<long>(o.compression.leaf, std::max<long>(1, P / 2)));
  const int kcap =
      o.compression.max_rank > 0 ? std::min(o.compression.max_rank, S) : S;  // 0: no cap, the samples bound it
  check_budget(double(P) * S * sizeof(Scalar) * 2.0 + hierarchical_build_bytes<HM>(P, leaf, kcap), o.memory_budget,
               where,
               std::string("a ") + Format::tag + " Fisher of layer " + std::to_string(s.layers[k]) + " from its " +
                   std::to_string(S) + " per-sample gradients");
  Mat<Scalar, ExecSpace> Psi("hfisher::fisher::psi", P, S);
  layer_psi(s, k, 0, S, Psi);
  Vec<Scalar, ExecSpace> zero("hfisher::fisher::zero", P);
  auto tree = ClusterTree::balanced(int(P), leaf);
  return std::make_unique<HMatrixOperator<HM>>(HM::from_factors(zero, Psi, tree, co));
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
