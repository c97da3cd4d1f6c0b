#pragma once
/// \file sharded.hpp
/// \brief prepare_sharded(): the factorizations of a block-diagonal operator,
/// one block per rank, shipped to the others.

#include <hfisher/core/comm.hpp>
#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/io.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace hfisher {
namespace fisher {

/// What prepare_sharded did on this rank.
struct PrepareReport {
  int blocks = 0;    ///< layer blocks of the operator (1 when it is not block-diagonal)
  int computed = 0;  ///< blocks whose factorization this rank computed
  int received = 0;  ///< blocks whose factorization arrived from their owner rank
};

namespace detail {

/// The rank that prepares each block: the blocks not skipped, by decreasing
/// cost, each to the rank with the least cost so far (longest processing
/// time first; ties to the lower block index and rank). Skipped blocks get
/// rank 0. A pure function of its arguments, so every rank deals the same.
inline std::vector<int> deal_blocks(const std::vector<double>& cost, const std::vector<char>& skip, int ranks) {
  const int nb = int(cost.size());
  std::vector<int> owner(nb, 0), order;
  for (int k = 0; k < nb; ++k)
    if (!skip[k]) order.push_back(k);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return cost[a] > cost[b]; });
  std::vector<double> load(ranks, 0.0);
  for (int k : order) {
    const int r = int(std::min_element(load.begin(), load.end()) - load.begin());
    owner[k] = r;
    load[r] += cost[k];
  }
  return owner;
}

/// The owner-computes pattern of the sharded builds and factorizations.
/// First every rank runs produce(k) for each item it owns (owner[k] is its
/// rank and skip[k] is 0), all of them, so the ranks work at the same time;
/// produce returns the item's record (a non-empty string whose first byte is
/// not 'E'), and an exception it throws becomes the record 'E' + its message.
/// Then, item by item, the record is broadcast from its owner and handed to
/// consume(k, record) on every rank, the owner included; an 'E' record is an
/// Error on every rank naming the item and its owner (no rank is left
/// waiting in a broadcast). A broadcast per item between the productions
/// would make every rank wait for each owner in turn. Collective.
template <class Produce, class Consume>
void owner_computes(const std::vector<int>& owner, const std::vector<char>& skip, const dist::Communicator& comm,
                    const char* where, const char* item, Produce&& produce, Consume&& consume) {
  const int nb = int(owner.size());
  std::vector<std::string> own(nb);
  for (int k = 0; k < nb; ++k) {
    if (skip[k] || owner[k] != comm.rank()) continue;
    try {
      own[k] = produce(k);
    } catch (const std::exception& e) {
      own[k] = std::string("E") + e.what();
    }
  }
  for (int k = 0; k < nb; ++k) {
    if (skip[k]) continue;
    std::string bytes = std::move(own[k]);
    comm.broadcast(bytes, owner[k]);
    hfisher::detail::require(!bytes.empty() && bytes[0] != 'E', where, item, " ", k, " (rank ", owner[k],
                             "): ", bytes.empty() ? std::string("nothing received") : bytes.substr(1));
    consume(k, std::move(bytes));
  }
}

}  // namespace detail

/// Computes the factorizations solve() and logdet() use at `damping`, the
/// work sharded over the ranks as in distributed K-FAC (Osawa et al. 2019,
/// Pauloski et al. 2020): the blocks of a block-diagonal operator (K-FAC,
/// hierarchical, block-diagonal) are dealt to the ranks largest first, each
/// to the least-loaded rank (detail::deal_blocks; the cost of a block taken
/// as its bytes^1.5, n^3 for n^2 stored values); every rank factors its
/// blocks, then each is broadcast
/// (K-FAC: the eigendecompositions of both factors; dense blocks: the
/// Cholesky factor; HODLR and HSS blocks: their factorization W W^T), so each rank
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
    if (!fisher::prepared(op, damping)) {
      fisher::prepare(op, damping);
      rep.computed = 1;
    }
    return rep;
  }
  rep.blocks = bd->num_blocks();
  const int nb = bd->num_blocks();
  if (!comm.distributed()) {
    for (int k = 0; k < nb; ++k) {
      if (fisher::prepared(bd->block(k), damping)) continue;
      fisher::prepare(bd->block(k), damping);
      ++rep.computed;
    }
    return rep;
  }
  // blocks already prepared are the same on every rank (the operators are
  // equal): decided before this rank prepares its own
  std::vector<char> skip(nb);
  for (int k = 0; k < nb; ++k) skip[k] = fisher::prepared(bd->block(k), damping);
  std::vector<double> cost(nb);
  for (int k = 0; k < nb; ++k) cost[k] = std::pow(double(bd->block(k).bytes()), 1.5);
  const std::vector<int> owner = detail::deal_blocks(cost, skip, comm.size());
  // 'F' + factorization | 'L' (prepare locally: not shipped)
  detail::owner_computes(
      owner, skip, comm, where, "layer block",
      [&](int k) {
        const auto& b = bd->block(k);
        fisher::prepare(b, damping);
        std::ostringstream os(std::ios::binary);
        os.put('F');
        return fisher::write_prepared(b, os, damping) ? os.str() : std::string("L");
      },
      [&](int k, std::string&& bytes) {
        const auto& b = bd->block(k);
        if (comm.rank() == owner[k]) {
          ++rep.computed;
        } else if (bytes[0] == 'L') {
          fisher::prepare(b, damping);
          ++rep.computed;
        } else {
          std::istringstream is(bytes.substr(1), std::ios::binary);
          fisher::read_prepared(b, is, damping,
                                "the factorization of layer block " + std::to_string(k) + " broadcast by rank " +
                                    std::to_string(owner[k]));
          ++rep.received;
        }
      });
  return rep;
}

}  // namespace fisher
}  // namespace hfisher
