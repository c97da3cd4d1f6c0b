#pragma once
/// \file matrix_free.hpp
/// \brief Structures built from Fisher-vector products (FisherProduct)
/// instead of per-sample factors: FisherOptions::matrix_free.
///
/// No per-sample gradient and no (a, g) factor is kept: memory is the
/// structure plus the products' O(batch k w) buffers, and the time is the
/// number of products times O(N P). HODLR::from_matvec draws the products
/// (randomized peeling, ranks found adaptively to FisherOptions::tol) and
/// estimates the achieved error with probes: build_info() of each block.

#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/builders/common.hpp>
#include <hfisher/fisher/hierarchical.hpp>
#include <hfisher/fisher/products.hpp>

#include <memory>
#include <string>
#include <vector>

namespace hfisher {
namespace fisher {
namespace detail {

/// The Fisher of `layers` (one layer: its block; all: the whole network,
/// cross-layer blocks included) as a HODLR matrix from products with it
/// (FisherProduct restricted to those layers), in parameter order.
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> hodlr_matrix_free(
    const nn::MLP<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data, FisherKind kind,
    const std::vector<int>& layers, const FisherOptions& o, const dist::Communicator& comm, const char* where) {
  FisherOptions lo = o;
  lo.layers = layers;
  FisherProduct<Scalar, ExecSpace> fp(model, data, kind, lo, comm);
  const long P = fp.size();
  const std::string what = layers.size() == 1 ? "layer " + std::to_string(layers[0]) : "the chosen layers";
  const char* have = layers.size() == 1 ? " has " : " have ";
  hfisher::detail::require(P >= 2, where, what, have, P, " parameter(s): too small for a hierarchical matrix");
  hfisher::detail::require(P <= (long(1) << 30), where, what, have, P,
                           " parameters, more than a HODLR matrix indexes (2^30)");
  const int leaf = int(std::min<long>(o.leaf, std::max<long>(1, P / 2)));
  const int kcap = o.hodlr_max_rank > 0 ? o.hodlr_max_rank : 0;
  // the matrix-free construction holds about (2 cap + leaf) columns of P rows
  // at a time, plus the blocks it keeps
  const double cols = double(o.leaf) + 4.0 * (kcap > 0 ? kcap : 256) + 32;
  check_budget(double(P) * cols * sizeof(Scalar), o.memory_budget, where,
               "a matrix-free hierarchical Fisher of " + what);
  CompressionOptions co;
  co.tol = o.tol;
  co.max_rank = o.hodlr_max_rank;
  co.allow_capped = true;  // the cap is the Fisher's memory budget: capped blocks are reported by ranks()
  auto tree = ClusterTree::balanced(int(P), leaf);
  return std::make_unique<HODLROperator<Scalar, ExecSpace>>(
      HODLR<Scalar, ExecSpace>::from_matvec(fp, int(P), tree, co));
}

/// estimate_fisher with FisherOptions::matrix_free: HODLR (and BlockDiagonal
/// of HODLR blocks), one block per chosen layer, each from its products; and
/// Network (always matrix-free): one HODLR over every chosen parameter,
/// stored as a block-diagonal operator of that one block.
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> matrix_free_curvature(
    const nn::MLP<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data, FisherKind kind,
    Structure structure, const FisherOptions& opts, const dist::Communicator& comm) try {
  constexpr const char* where = "hfisher::estimate_fisher";
  opts.validate(where);
  const Structure inner = structure == Structure::BlockDiagonal ? opts.block : structure;
  hfisher::detail::require(
      inner == Structure::HODLR || inner == Structure::Network, where,
      "FisherOptions::matrix_free builds HODLR blocks and the network structure; ", to_string(structure),
      structure == Structure::BlockDiagonal ? std::string(" of ") + to_string(inner) : std::string(),
      " is built from per-sample factors (matrix_free = false)");
  hfisher::detail::require(!opts.spd_compensation, where,
                           "FisherOptions::spd_compensation needs the per-sample factors (the truncation error of "
                           "each block); a matrix-free Fisher takes damping above its error estimate instead");
  detail::checked_examples(model, data, opts, where);
  std::vector<int> layers = opts.layers;
  detail::chosen_layers(model, layers, where);
  using COp = CurvatureOperator<Scalar, ExecSpace>;
  std::vector<std::unique_ptr<COp>> blocks;
  if (structure == Structure::Network) {
    hfisher::detail::Region region("hfisher::estimate_fisher::network");
    blocks.push_back(hodlr_matrix_free(model, data, kind, layers, opts, comm, where));
  } else {
    for (int l : layers) {
      hfisher::detail::Region region("hfisher::estimate_fisher::matrix_free layer " + std::to_string(l));
      blocks.push_back(hodlr_matrix_free(model, data, kind, std::vector<int>{l}, opts, comm, where));
    }
  }
  return std::make_unique<BlockDiagonalOperator<Scalar, ExecSpace>>(structure, std::move(blocks));
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::estimate_fisher");
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
