#pragma once
/// \file build_curvature.hpp
/// \brief build_curvature(): samples -> the operator of any structure; the
/// one place a per-layer structure registers its builder (layer_block).

#include <hfisher/core/comm.hpp>
#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/builders/dense.hpp>
#include <hfisher/fisher/builders/hierarchical.hpp>
#include <hfisher/fisher/builders/kfac.hpp>
#include <hfisher/fisher/builders/lowrank.hpp>
#include <hfisher/fisher/builders/multilevel.hpp>
#include <hfisher/fisher/diagonal.hpp>
#include <hfisher/fisher/io.hpp>
#include <hfisher/fisher/sharded.hpp>

#include <sstream>
#include <string>
#include <vector>

namespace hfisher {
namespace fisher {

namespace detail {

/// The registration point of the per-layer structures: one case per builder.
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> layer_block(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                  Structure st, const FisherOptions& o,
                                                                  const char* where) {
  switch (st) {
    case Structure::Dense:
      return dense_layer(s, k, o, where);
    case Structure::KFAC:
      return kfac_layer(s, k, o);
    case Structure::HODLR:
      return hmatrix_layer<HODLR<Scalar, ExecSpace>>(s, k, o, where);
    case Structure::HSS:
      return hmatrix_layer<HSS<Scalar, ExecSpace>>(s, k, o, where);
    case Structure::Multilevel:
      return multilevel_layer(s, k, o, where);
    case Structure::LowRank:
      return lowrank_of(s, std::vector<int>{k}, o, where);
    case Structure::Diagonal:
      return std::make_unique<DiagonalOperator<Scalar, ExecSpace>>(
          diagonal_of(s, std::vector<int>{k}, s.shapes[k].size()));
    default:
      break;
  }
  throw Error(hfisher::detail::concat(where, ": structure ", to_string(st), " cannot be a layer block"));
}

}  // namespace detail

/// Builds the curvature operator of the given structure from collected
/// samples. Under a distributed communicator (every rank holding the same
/// samples) the per-layer blocks of KFAC, Dense, HODLR, HSS, Multilevel and
/// BlockDiagonal structures are sharded: the layers are dealt largest first
/// to the least-loaded rank (detail::deal_blocks, the cost of a layer an
/// estimate of its build's flops), every rank builds all of its layers, and
/// then each is broadcast (serialized) from its owner, so the ranks build
/// at the same time and every rank returns the same operator.
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> build_curvature(const FisherSamples<Scalar, ExecSpace>& s,
                                                                      Structure structure, const FisherOptions& opts,
                                                                      const dist::Communicator& comm = {}) try {
  constexpr const char* where = "hfisher::estimate_fisher";
  opts.validate(where);
  hfisher::detail::require(!s.shapes.empty() && s.examples >= 1, where, "no samples (collect_samples first)");
  hfisher::detail::require(structure != Structure::Network, where,
                           "the network structure is built from Fisher-vector products, not from samples: "
                           "call estimate_fisher with the model and data");
  using COp = CurvatureOperator<Scalar, ExecSpace>;
  std::vector<int> all(s.shapes.size());
  for (std::size_t k = 0; k < all.size(); ++k) all[k] = int(k);
  if (structure == Structure::Diagonal) {
    check_budget(double(s.size()) * sizeof(Scalar) * 2, opts.memory_budget, where, "a diagonal Fisher");
    return std::make_unique<DiagonalOperator<Scalar, ExecSpace>>(detail::diagonal_of(s, all, s.size()));
  }
  if (structure == Structure::LowRank) return detail::lowrank_of(s, all, opts, where);
  const Structure inner = structure == Structure::BlockDiagonal ? opts.block : structure;
  if (structure == Structure::Dense) {
    double need = 0;
    for (const auto& sh : s.shapes) need += double(sh.size()) * sh.size() * sizeof(Scalar);
    check_budget(need, opts.memory_budget, where, "dense Fisher blocks of every layer");
  }
  const int nb = int(all.size());
  std::vector<std::unique_ptr<COp>> blocks(nb);
  if (!comm.distributed()) {
    for (int k : all) {
      hfisher::detail::Region region("hfisher::build_curvature::layer " + std::to_string(k));
      blocks[k] = detail::layer_block(s, k, inner, opts, where);
    }
    return std::make_unique<BlockDiagonalOperator<Scalar, ExecSpace>>(structure, std::move(blocks));
  }
  // K-FAC: the two factor products (rows x cols^2 each); the other
  // structures grow with examples x parameters^2
  std::vector<double> cost(nb);
  for (int k : all) {
    const auto& sh = s.shapes[k];
    cost[k] = inner == Structure::KFAC
                  ? double(s.a[k].extent(0)) * sh.cols() * sh.cols() + double(s.g[k].extent(0)) * sh.out * sh.out
                  : double(s.examples) * double(sh.size()) * double(sh.size());
  }
  const std::vector<int> owner = detail::deal_blocks(cost, std::vector<char>(nb, 0), comm.size());
  // 'F' + the serialized block
  detail::owner_computes(
      owner, std::vector<char>(nb, 0), comm, where, "layer",
      [&](int k) {
        hfisher::detail::Region region("hfisher::build_curvature::layer " + std::to_string(k));
        std::ostringstream os(std::ios::binary);
        os.put('F');
        write_curvature(*detail::layer_block(s, k, inner, opts, where), os);
        return os.str();
      },
      [&](int k, std::string&& bytes) {
        std::istringstream is(std::move(bytes), std::ios::binary);
        is.get();  // the 'F'
        blocks[k] =
            read_curvature<Scalar, ExecSpace>(is, "the layer block broadcast by rank " + std::to_string(owner[k]));
      });
  return std::make_unique<BlockDiagonalOperator<Scalar, ExecSpace>>(structure, std::move(blocks));
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::estimate_fisher");
}

}  // namespace fisher
}  // namespace hfisher
