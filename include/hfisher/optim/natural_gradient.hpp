#pragma once
/// \file natural_gradient.hpp
/// \brief Natural-gradient descent with any curvature structure:
/// theta <- theta - lr * clip * (F + damping I)^-1 (grad + weight_decay theta),
/// with momentum. The curvature is re-estimated every `refresh` steps from a
/// rotating window of `curvature_examples` training examples (Monte-Carlo
/// labels by default, so it is the true Fisher, not the empirical one) and
/// its factorization is reused in between. KL-clipping (Ba, Grosse & Martens
/// 2017) scales the step so that lr^2 d^T F d <= kl_clip. The KFAC preset
/// stores per-layer Kronecker factors (Martens & Grosse 2015). With a
/// distributed communicator every rank keeps the same state; curvature
/// estimates are sharded over the ranks (see estimate_fisher), and the
/// gradients passed to step() must already be summed over ranks (as
/// dist::train_epoch does).

#include <hfisher/fisher/fisher.hpp>

namespace hfisher {

struct NaturalGradientOptions {
  double lr = 0.05;
  double damping = 1e-3;
  double momentum = 0.9;
  double weight_decay = 0.0;
  double kl_clip = 1e-3;  ///< 0 disables clipping
  int refresh = 50;       ///< steps between curvature estimates
  int curvature_examples = 256;
  Structure structure = Structure::LowRank;
  FisherKind kind = FisherKind::MonteCarlo;
  FisherOptions fisher;   ///< rank, tolerances, budget of the curvature structure

  /// The K-FAC preset: per-layer Kronecker factors, eigen-damping.
  static NaturalGradientOptions kfac() {
    NaturalGradientOptions o;
    o.structure = Structure::KFAC;
    return o;
  }
  void validate(const char* where) const {
    detail::require(std::isfinite(lr) && lr > 0, where, "lr = ", lr, " (must be > 0)");
    detail::require(std::isfinite(damping) && damping > 0, where, "damping = ", damping, " (must be > 0)");
    detail::require(momentum >= 0 && momentum < 1, where, "momentum = ", momentum, " (must lie in [0, 1))");
    detail::require(weight_decay >= 0 && kl_clip >= 0, where, "weight_decay and kl_clip must be >= 0");
    detail::require(refresh >= 1 && curvature_examples >= 1, where, "refresh and curvature_examples must be >= 1");
  }
};

template <class Scalar, class ExecSpace = DefaultExec>
class NaturalGradient {
 public:
  using Vector = Kokkos::View<Scalar*, typename ExecSpace::memory_space>;

  NaturalGradient(const nn::MLP<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data,
                  NaturalGradientOptions o = {}, dist::Communicator comm = {})
      : model_(&model), data_(data), o_(std::move(o)), comm_(comm) {
    o_.validate("hfisher::NaturalGradient");
  }

  /// One step on theta (the model's parameters) with the data gradient grad.
  void step(const Vector& theta, const Vector& grad) {
    constexpr const char* where = "hfisher::NaturalGradient::step";
    detail::require(theta.extent(0) == grad.extent(0) && long(theta.extent(0)) == model_->num_params(), where,
                    "theta and grad must have the model's ", model_->num_params(), " entries");
    if (!F_ || steps_ % o_.refresh == 0) refresh();
    ++steps_;
    const long n = theta.extent(0);
    Vector g("hfisher::ngd::g", n), d("hfisher::ngd::d", n);
    const Scalar wd = Scalar(o_.weight_decay);
    Kokkos::parallel_for(
        "hfisher::ngd::wd", Kokkos::RangePolicy<ExecSpace>(0, n), KOKKOS_LAMBDA(const long i) { g(i) = grad(i) + wd * theta(i); });
    F_->solve(g, d, o_.damping);
    double nu = 1.0;
    if (o_.kl_clip > 0) {
      const double dg = fisher::detail::dot<ExecSpace>(d, g);  // d^T (F + damping) d
      if (dg > 0) nu = std::min(1.0, std::sqrt(o_.kl_clip / (o_.lr * o_.lr * dg)));
    }
    last_clip_ = nu;
    if (v_.extent(0) != theta.extent(0)) v_ = Vector("hfisher::ngd::v", n);
    auto v = v_;
    const Scalar mu = Scalar(o_.momentum), a = Scalar(o_.lr), s = Scalar(nu);
    Kokkos::parallel_for(
        "hfisher::ngd::update", Kokkos::RangePolicy<ExecSpace>(0, n), KOKKOS_LAMBDA(const long i) {
          v(i) = mu * v(i) + s * d(i);
          theta(i) -= a * v(i);
        });
  }

  /// Re-estimates the curvature now (called by step every `refresh` steps).
  void refresh() {
    const int n = data_.size(), m = std::min(o_.curvature_examples, n);
    const int first = int((long(windows_) * m) % std::max(1, n - m + 1));
    ++windows_;
    nn::DeviceData<Scalar, ExecSpace> win;
    win.classes = data_.classes;
    win.x = Kokkos::subview(data_.x, Kokkos::make_pair(first, first + m), Kokkos::ALL());
    win.y = Kokkos::subview(data_.y, Kokkos::make_pair(first, first + m));
    auto f = o_.fisher;
    f.examples = m;
    f.seed = o_.fisher.seed + std::uint64_t(windows_);
    f.layers.clear();
    F_ = estimate_fisher(*model_, win, o_.kind, o_.structure, f, comm_);
  }

  const CurvatureOperator<Scalar, ExecSpace>& curvature() const { return *F_; }
  double last_clip() const { return last_clip_; }
  long steps() const { return steps_; }

 private:
  const nn::MLP<Scalar, ExecSpace>* model_;
  nn::DeviceData<Scalar, ExecSpace> data_;
  NaturalGradientOptions o_;
  dist::Communicator comm_;
  std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> F_;
  Vector v_;
  long steps_ = 0, windows_ = 0;
  double last_clip_ = 1.0;
};

}  // namespace hfisher
