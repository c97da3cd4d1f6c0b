#pragma once
/// \file optimizers.hpp
/// \brief First-order optimizers on a flat parameter vector (the baselines
/// the natural-gradient optimizer is compared with): SGD with momentum and
/// weight decay, and Adam. State is explicit and can be saved.

#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/math.hpp>
#include <hfisher/core/types.hpp>

#include <cmath>
#include <type_traits>

namespace hfisher {
namespace nn {

/// theta <- theta - lr (v), v <- momentum v + grad + weight_decay theta.
template <class Scalar, class ExecSpace = DefaultExec>
struct SGD {
  using Vector = Kokkos::View<Scalar*, typename ExecSpace::memory_space>;
  double lr = 0.05, momentum = 0.9, weight_decay = 0.0;
  Vector velocity;

  void step(const Vector& theta, const Vector& grad) {
    hfisher::detail::require(theta.extent(0) == grad.extent(0), "hfisher::nn::SGD::step", "theta has ", theta.extent(0),
                             " entries, grad ", grad.extent(0));
    hfisher::detail::require(std::isfinite(lr) && lr > 0 && momentum >= 0 && momentum < 1 && weight_decay >= 0,
                             "hfisher::nn::SGD::step", "invalid hyper-parameters (lr ", lr, ", momentum ", momentum,
                             ", weight decay ", weight_decay, ")");
    if (velocity.extent(0) != theta.extent(0)) velocity = Vector("hfisher::nn::SGD::v", theta.extent(0));
    auto v = velocity;
    const Scalar a = Scalar(lr), mu = Scalar(momentum), wd = Scalar(weight_decay);
    Kokkos::parallel_for(
        "hfisher::nn::SGD", Kokkos::RangePolicy<ExecSpace>(0, theta.extent(0)), KOKKOS_LAMBDA(const long i) {
          v(i) = mu * v(i) + grad(i) + wd * theta(i);
          theta(i) -= a * v(i);
        });
  }
};

/// Adam (Kingma & Ba 2015) with bias correction.
template <class Scalar, class ExecSpace = DefaultExec>
struct Adam {
  using Vector = Kokkos::View<Scalar*, typename ExecSpace::memory_space>;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  long t = 0;
  Vector m, v;

  void step(const Vector& theta, const Vector& grad) {
    hfisher::detail::require(theta.extent(0) == grad.extent(0), "hfisher::nn::Adam::step", "theta has ",
                             theta.extent(0), " entries, grad ", grad.extent(0));
    hfisher::detail::require(lr > 0 && beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps > 0,
                             "hfisher::nn::Adam::step", "invalid hyper-parameters");
    if (m.extent(0) != theta.extent(0)) {
      m = Vector("hfisher::nn::Adam::m", theta.extent(0));
      v = Vector("hfisher::nn::Adam::v", theta.extent(0));
      t = 0;
    }
    ++t;
    auto mm = m;
    auto vv = v;
    // lr (m / c1) / (sqrt(v / c2) + eps) = lr sqrt(c2) / c1 * m / (sqrt(v) + eps sqrt(c2)), with
    // c_k = 1 - beta_k^t: one division and one square root per entry
    const double c1 = 1 - std::pow(beta1, double(t)), sc2 = std::sqrt(1 - std::pow(beta2, double(t)));
    const Scalar b1 = Scalar(beta1), b2 = Scalar(beta2), wd = Scalar(weight_decay);
    const Scalar a = Scalar(lr * sc2 / c1), e = Scalar(eps * sc2);
    Kokkos::parallel_for(
        "hfisher::nn::Adam", Kokkos::RangePolicy<ExecSpace>(0, theta.extent(0)), KOKKOS_LAMBDA(const long i) {
          const Scalar th = theta(i);
          const Scalar g = grad(i) + wd * th;
          const Scalar mi = b1 * mm(i) + (1 - b1) * g;
          const Scalar vi = b2 * vv(i) + (1 - b2) * g * g;
          mm(i) = mi;
          vv(i) = vi;
          theta(i) = th - a * mi / (math::sqrt(vi) + e);
        });
  }
};

/// True for optimizers whose step acts entry by entry (each entry of theta
/// depends only on the same entry of grad and of the optimizer's state):
/// dist::train_epoch shards their step over the ranks.
template <class Opt>
struct is_elementwise_optimizer : std::false_type {};
template <class Scalar, class ExecSpace>
struct is_elementwise_optimizer<SGD<Scalar, ExecSpace>> : std::true_type {};
template <class Scalar, class ExecSpace>
struct is_elementwise_optimizer<Adam<Scalar, ExecSpace>> : std::true_type {};

}  // namespace nn
}  // namespace hfisher
