#pragma once
/// \file sharded.hpp
/// \brief prepare_sharded(): the factorizations of a block-diagonal operator,
/// one block per rank, shipped to the others.

#include <hfisher/core/comm.hpp>
#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/io.hpp>

#include <sstream>
#include <string>

namespace hfisher {
namespace fisher {

/// What prepare_sharded did on this rank.
struct PrepareReport {
  int blocks = 0;    ///< layer blocks of the operator (1 when it is not block-diagonal)
  int computed = 0;  ///< blocks whose factorization this rank computed
  int received = 0;  ///< blocks whose factorization arrived from their owner rank
};

/// Computes the factorizations solve() and logdet() use at `damping`, the
/// work sharded over the ranks as in distributed K-FAC (Osawa et al. 2019,
/// Pauloski et al. 2020): block k of a block-diagonal operator (K-FAC,
/// hierarchical, block-diagonal) is factored by rank k mod P and broadcast
/// (K-FAC: the eigendecompositions of both factors; dense blocks: the
/// Cholesky factor; HODLR blocks: their factorization W W^T), so each rank
/// does about 1/P of the work. Blocks whose structure does not ship its
/// factorization (low-rank, diagonal) and operators that are not
/// block-diagonal are prepared on every rank.
/// Every rank must hold the same operator (as estimate_fisher and
/// NaturalGradient guarantee); blocks already prepared are skipped.
/// Collective: call it on every rank.
template <class Scalar, class ExecSpace>
PrepareReport prepare_sharded(const CurvatureOperator<Scalar, ExecSpace>& op, double damping,
                              const dist::Communicator& comm = {}) {
  constexpr const char* where = "hfisher::prepare_sharded";
  detail::check_damping(damping, where);
  PrepareReport rep;
  const auto* bd = dynamic_cast<const BlockDiagonalOperator<Scalar, ExecSpace>*>(&op);
  if (!bd) {
    rep.blocks = 1;
    if (!op.prepared(damping)) {
      op.prepare(damping);
      rep.computed = 1;
    }
    return rep;
  }
  rep.blocks = bd->num_blocks();
  for (int k = 0; k < bd->num_blocks(); ++k) {
    const auto& b = bd->block(k);
    if (b.prepared(damping)) continue;  // the same on every rank: the operators are equal
    if (!comm.distributed()) {
      b.prepare(damping);
      ++rep.computed;
      continue;
    }
    const int owner = k % comm.size();
    // 'F' + factorization | 'L' (prepare locally: not shipped) | 'E' + error
    std::string bytes;
    if (comm.rank() == owner) {
      try {
        b.prepare(damping);
        std::ostringstream os(std::ios::binary);
        os.put('F');
        bytes = b.write_prepared(os, damping) ? os.str() : std::string("L");
      } catch (const std::exception& e) {
        bytes = std::string("E") + e.what();
      }
    }
    comm.broadcast(bytes, owner);
    hfisher::detail::require(!bytes.empty() && bytes[0] != 'E', where, "layer block ", k, " (rank ", owner,
                             "): ", bytes.empty() ? std::string("nothing received") : bytes.substr(1));
    if (comm.rank() == owner) {
      ++rep.computed;
    } else if (bytes[0] == 'L') {
      b.prepare(damping);
      ++rep.computed;
    } else {
      std::istringstream is(bytes.substr(1), std::ios::binary);
      b.read_prepared(
          is, damping,
          "the factorization of layer block " + std::to_string(k) + " broadcast by rank " + std::to_string(owner));
      ++rep.received;
    }
  }
  return rep;
}

}  // namespace fisher
}  // namespace hfisher
