#pragma once
/// \file train.hpp
/// \brief One epoch of minibatch training: shuffle (seeded host generator),
/// gather each batch on the device, loss and gradient, an optional hook that
/// adds to the gradient (a penalty), and an optimizer step.

#include <hfisher/nn/mlp.hpp>

#include <algorithm>
#include <numeric>
#include <random>

namespace hfisher {
namespace nn {

/// Trains one epoch; returns the mean data loss. `opt.step(theta, grad)` is
/// any optimizer; `hook(grad)` (may be a no-op) runs after the data gradient
/// and may add to it. The shuffle depends only on `rng`. `mask` (outputs)
/// restricts the softmax to a task's classes (empty: all).
template <class Scalar, class ExecSpace, class Opt, class Hook>
double train_epoch(MLP<Scalar, ExecSpace>& model, const DeviceData<Scalar, ExecSpace>& data, int batch, Opt& opt,
                   std::mt19937_64& rng, Hook&& hook,
                   const typename MLP<Scalar, ExecSpace>::Labels& mask = {}) {
  detail::require(batch >= 1, "hfisher::nn::train_epoch", "batch = ", batch, " (must be >= 1)");
  const int n = data.size();
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  Kokkos::View<int*, typename ExecSpace::memory_space> idx("hfisher::nn::order", n);
  auto ih = Kokkos::create_mirror_view(idx);
  for (int i = 0; i < n; ++i) ih(i) = order[i];
  Kokkos::deep_copy(idx, ih);
  typename MLP<Scalar, ExecSpace>::Cache cache;
  typename MLP<Scalar, ExecSpace>::Vector grad("hfisher::nn::grad", model.num_params());
  double total = 0;
  for (int first = 0; first < n; first += batch) {
    const int b = std::min(batch, n - first);
    typename MLP<Scalar, ExecSpace>::Matrix X("hfisher::nn::Xb", b, data.features());
    typename MLP<Scalar, ExecSpace>::Labels y("hfisher::nn::yb", b);
    gather(data, idx, first, b, X, y);
    total += model.loss_grad(X, y, grad, cache, mask) * b;
    hook(grad);
    opt.step(model.params(), grad);
  }
  return total / n;
}

template <class Scalar, class ExecSpace, class Opt>
double train_epoch(MLP<Scalar, ExecSpace>& model, const DeviceData<Scalar, ExecSpace>& data, int batch, Opt& opt,
                   std::mt19937_64& rng) {
  return train_epoch(model, data, batch, opt, rng, [](const auto&) {});
}

}  // namespace nn
}  // namespace hfisher
