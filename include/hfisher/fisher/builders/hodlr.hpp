#pragma once
/// \file hodlr.hpp
/// \brief The HODLR builder: a layer's Fisher block compressed from its
/// per-sample columns (HODLR::from_factors).

#include <hfisher/fisher/builders/common.hpp>
#include <hfisher/fisher/hierarchical.hpp>

namespace hfisher {
namespace fisher {
namespace detail {

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> hodlr_layer(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                  const FisherOptions& o, const char* where) {
  const long P = s.shapes[k].size();
  const int S = s.samples();
  hfisher::detail::require(P >= 2, where, "layer ", s.layers[k], " has ", P,
                           " parameter(s): too small for a hierarchical block");
  const int leaf = int(std::min<long>(o.leaf, std::max<long>(1, P / 2)));
  const int kcap = o.hodlr_max_rank > 0 ? std::min(o.hodlr_max_rank, S) : S;  // 0: no cap, the samples bound it
  check_budget(double(P) * S * sizeof(Scalar) * 2.0 + double(P) * (leaf + 2.0 * kcap * 16) * sizeof(Scalar),
               o.memory_budget, where,
               "a hierarchical Fisher of layer " + std::to_string(s.layers[k]) + " from its " + std::to_string(S) +
                   " per-sample gradients");
  Mat<Scalar, ExecSpace> Psi("hfisher::fisher::psi", P, S);
  layer_psi(s, k, 0, S, Psi);
  Vec<Scalar, ExecSpace> zero("hfisher::fisher::zero", P);
  CompressionOptions co;
  co.tol = o.tol;
  co.max_rank = o.hodlr_max_rank;
  co.allow_capped = true;  // the cap is the Fisher's memory budget: capped blocks are reported by ranks()
  co.spd_compensation = o.spd_compensation;
  auto tree = ClusterTree::balanced(int(P), leaf);
  return std::make_unique<HODLROperator<Scalar, ExecSpace>>(
      HODLR<Scalar, ExecSpace>::from_factors(zero, Psi, tree, co));
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
