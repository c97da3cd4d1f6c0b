#pragma once
/// \file train.hpp
/// \brief One epoch of minibatch training: shuffle (seeded host generator),
/// gather each batch on the device, loss and gradient, an optional hook that
/// adds to the gradient (a penalty), and an optimizer step.

#include <hfisher/core/comm.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/nn/mlp.hpp>
#include <hfisher/nn/optimizers.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <type_traits>

namespace hfisher {
namespace nn {

namespace detail {

/// v *= w. (A separate function: CUDA extended lambdas may not sit in a
/// function template instantiated with lambda types, as the epoch loop is.)
template <class ExecSpace, class V>
void scale_in_place(const V& v, typename V::non_const_value_type w) {
  Kokkos::parallel_for(
      "hfisher::nn::scale", Kokkos::RangePolicy<ExecSpace>(0, v.extent(0)), KOKKOS_LAMBDA(const long i) { v(i) *= w; });
}

/// Rows X, y are one rank's share of a batch of b rows: grad = (m / b) x their
/// mean gradient and the return value (m / b) x their mean loss, so summing
/// over the ranks gives the batch's mean gradient and loss (m = 0: zeros).
template <template <class, class> class Net, class Scalar, class ExecSpace>
double shard_loss_grad(const Net<Scalar, ExecSpace>& model, const typename Net<Scalar, ExecSpace>::Matrix& X,
                       const typename Net<Scalar, ExecSpace>::Labels& y, long b,
                       const typename Net<Scalar, ExecSpace>::Vector& grad, typename Net<Scalar, ExecSpace>::Cache& c,
                       const typename Net<Scalar, ExecSpace>::Labels& mask = {}) {
  const long m = X.extent(0);
  if (m == 0) {
    Kokkos::deep_copy(grad, Scalar(0));
    return 0.0;
  }
  const double share = double(m) / double(b);
  const double loss = model.loss_grad(X, y, grad, c, mask) * share;
  if (m != b) scale_in_place<ExecSpace>(grad, Scalar(share));
  return loss;
}

/// The epoch loop shared by nn::train_epoch (one process) and
/// dist::train_epoch: rank `comm.rank()` computes rows dist::shard(b) of
/// every batch of b shuffled examples; the shard gradients (each weighted by
/// its share of b, shard_loss_grad) are summed over the ranks.
///
/// Step: with `shard_step` and an elementwise optimizer (SGD, Adam) on
/// several ranks, the sum is reduce-scattered (rank r receives the summed
/// entries dist::shard(P, r) of the P parameters), the hook runs, rank r
/// steps only its entries and the parameters are allgathered: the same
/// traffic as one allreduce, and each rank does 1 / ranks of the update (its
/// optimizer state covers its entries only). The hook then sees the summed
/// gradient in this rank's entries only, so it must act entry by entry on
/// what it adds to (a penalty's add_gradient does). Otherwise the sum is
/// allreduced and every rank runs the hook and the full step.
template <template <class, class> class Net, class Scalar, class ExecSpace, class Opt, class Hook>
double train_epoch_shards(Net<Scalar, ExecSpace>& model, const DeviceData<Scalar, ExecSpace>& data, int batch, Opt& opt,
                          std::mt19937_64& rng, Hook&& hook, const typename Net<Scalar, ExecSpace>::Labels& mask,
                          const dist::Communicator& comm, bool shard_step) {
  hfisher::detail::require(batch >= 1, "hfisher::nn::train_epoch", "batch = ", batch, " (must be >= 1)");
  const int n = data.size();
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  random::shuffle(order.begin(), order.end(), rng);
  Kokkos::View<int*, typename ExecSpace::memory_space> idx("hfisher::nn::order", n);
  auto ih = Kokkos::create_mirror_view(idx);
  for (int i = 0; i < n; ++i) ih(i) = order[i];
  Kokkos::deep_copy(idx, ih);
  using Model = Net<Scalar, ExecSpace>;
  typename Model::Cache cache;
  const long P = model.num_params();
  typename Model::Vector grad("hfisher::nn::grad", P);
  const bool sharded = shard_step && comm.distributed() && is_elementwise_optimizer<std::decay_t<Opt>>::value;
  const auto own = dist::shard(P, comm.rank(), comm.size());  // this rank's parameters when sharded
  const typename Model::Vector theta_own = Kokkos::subview(model.params(), std::make_pair(own.first, own.second));
  const typename Model::Vector grad_own = Kokkos::subview(grad, std::make_pair(own.first, own.second));
  // this rank's rows of a batch, reallocated only when their count changes
  // (the last, partial batch)
  typename Model::Matrix X;
  typename Model::Labels y;
  double total = 0;  // this rank's share of the epoch's summed loss, reduced once at the end
  for (int first = 0; first < n; first += batch) {
    const int b = std::min(batch, n - first);
    const auto mine = dist::shard(b, comm.rank(), comm.size());  // this rank's rows of the batch
    const int m = int(mine.second - mine.first);
    if (!X.data() || int(X.extent(0)) != m) {
      X = typename Model::Matrix(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::nn::Xb"), m,
                                 data.features());
      y = typename Model::Labels(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::nn::yb"), m);
    }
    gather(data, idx, first + int(mine.first), m, X, y);
    total += shard_loss_grad(model, X, y, b, grad, cache, mask) * b;
    if (sharded) {
      comm.reduce_scatter_rows(grad, P, 1);
      hook(grad);
      if (own.second > own.first) opt.step(theta_own, grad_own);
      comm.allgather_rows(model.params(), P, 1);
    } else {
      comm.allreduce_sum(grad);
      hook(grad);
      opt.step(model.params(), grad);
    }
  }
  return comm.sum(total) / n;
}

}  // namespace detail

/// Trains one epoch; returns the mean data loss. `opt.step(theta, grad)` is
/// any optimizer; `hook(grad)` (may be a no-op) runs after the data gradient
/// and may add to it. The shuffle depends only on `rng`. `mask` (outputs)
/// restricts the softmax to a task's classes (empty: all). The model is an
/// MLP or a Sequential (any network with their loss_grad and params()).
template <template <class, class> class Net, class Scalar, class ExecSpace, class Opt, class Hook>
double train_epoch(Net<Scalar, ExecSpace>& model, const DeviceData<Scalar, ExecSpace>& data, int batch, Opt& opt,
                   std::mt19937_64& rng, Hook&& hook, const typename Net<Scalar, ExecSpace>::Labels& mask = {}) {
  return detail::train_epoch_shards(model, data, batch, opt, rng, hook, mask, dist::Communicator(), false);
}

template <template <class, class> class Net, class Scalar, class ExecSpace, class Opt>
double train_epoch(Net<Scalar, ExecSpace>& model, const DeviceData<Scalar, ExecSpace>& data, int batch, Opt& opt,
                   std::mt19937_64& rng) {
  return train_epoch(model, data, batch, opt, rng, [](const auto&) {});
}

}  // namespace nn
}  // namespace hfisher
