#pragma once
/// \file matrix_free.hpp
/// \brief Structures built from Fisher-vector products (FisherProduct)
/// instead of per-sample factors: FisherOptions::matrix_free.
///
/// No per-sample gradient and no (a, g) factor is kept: memory is the
/// structure plus the products' O(batch k w) buffers, and the time is the
/// number of products times O(N P). HODLR::from_matvec draws the products
/// (randomized peeling, ranks found adaptively to FisherOptions::compression.tol: O(k log
/// P) products); HSS::from_matvec draws one block of s >= leaf + k +
/// oversampling test vectors that serves every level at once (Levitt &
/// Martinsson 2022), widened until the ranks fit. Both estimate the achieved
/// error with probes: build_info() of each block.

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
/// cross-layer blocks included) as the H-matrix HM (HODLR<S, E> or
/// HSS<S, E>) from products with it (FisherProduct restricted to those
/// layers), in parameter order.
template <class HM, class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> hmatrix_matrix_free(
    const nn::MLP<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data, FisherKind kind,
    const std::vector<int>& layers, const FisherOptions& o, const dist::Communicator& comm, const char* where) {
  using Format = HMatrixFormat<HM>;
  FisherOptions lo = o;
  lo.layers = layers;
  FisherProduct<Scalar, ExecSpace> fp(model, data, kind, lo, comm);
  const long P = fp.size();
  const std::string what = layers.size() == 1 ? "layer " + std::to_string(layers[0]) : "the chosen layers";
  const char* have = layers.size() == 1 ? " has " : " have ";
  hfisher::detail::require(P >= 2, where, what, have, P, " parameter(s): too small for a hierarchical matrix");
  hfisher::detail::require(P <= (long(1) << 30), where, what, have, P,
                           " parameters, more than a hierarchical matrix indexes (2^30)");
  const int leaf = int(std::min<long>(o.compression.leaf, std::max<long>(1, P / 2)));
  const int kcap = o.compression.max_rank > 0 ? o.compression.max_rank : 0;
  // HODLR peels about (2 cap + leaf) columns of P rows at a time, HSS draws
  // its test vectors; both keep the blocks they build
  const int k = kcap > 0 ? kcap : 256;
  const double bytes = Format::structure == Structure::HSS
                           ? hierarchical_build_bytes<HM>(P, leaf, k)
                           : double(P) * (double(o.compression.leaf) + 4.0 * k + 32) * sizeof(Scalar);
  check_budget(bytes, o.memory_budget, where, std::string("a matrix-free ") + Format::tag + " Fisher of " + what);
  const CompressionOptions co = hierarchical_compression(o);
  auto tree = ClusterTree::balanced(int(P), leaf);
  return std::make_unique<HMatrixOperator<HM>>(HM::from_matvec(fp, int(P), tree, co));
}

/// estimate_fisher with FisherOptions::matrix_free: HODLR and HSS (and
/// BlockDiagonal of either), one block per chosen layer, each from its
/// products; and
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
      inner == Structure::HODLR || inner == Structure::HSS || inner == Structure::Network, where,
      "FisherOptions::matrix_free builds HODLR and HSS blocks and the network structure; ", to_string(structure),
      structure == Structure::BlockDiagonal ? std::string(" of ") + to_string(inner) : std::string(),
      " is built from per-sample factors (matrix_free = false)");
  hfisher::detail::require(!opts.compression.spd_compensation, where,
                           "FisherOptions::spd_compensation needs the per-sample factors (the truncation error of "
                           "each block); a matrix-free Fisher takes damping above its error estimate instead");
  detail::checked_examples(model, data, opts, where);
  std::vector<int> layers = opts.layers;
  detail::chosen_layers(model, layers, where);
  using COp = CurvatureOperator<Scalar, ExecSpace>;
  std::vector<std::unique_ptr<COp>> blocks;
  if (structure == Structure::Network) {
    hfisher::detail::Region region("hfisher::estimate_fisher::network");
    blocks.push_back(hmatrix_matrix_free<HODLR<Scalar, ExecSpace>>(model, data, kind, layers, opts, comm, where));
  } else {
    for (int l : layers) {
      hfisher::detail::Region region("hfisher::estimate_fisher::matrix_free layer " + std::to_string(l));
      const std::vector<int> one{l};
      blocks.push_back(inner == Structure::HSS
                           ? hmatrix_matrix_free<HSS<Scalar, ExecSpace>>(model, data, kind, one, opts, comm, where)
                           : hmatrix_matrix_free<HODLR<Scalar, ExecSpace>>(model, data, kind, one, opts, comm, where));
    }
  }
  return std::make_unique<BlockDiagonalOperator<Scalar, ExecSpace>>(structure, std::move(blocks));
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::estimate_fisher");
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
