#pragma once
/// \file natural_gradient.hpp
/// \brief Natural-gradient descent with any curvature structure:
/// theta <- theta - lr * clip * (F + damping I)^-1 (grad + weight_decay theta),
/// with momentum. The curvature is re-estimated every `refresh` steps from a
/// rotating window of `curvature_examples` training examples (Monte-Carlo
/// labels by default, so it is the true Fisher, not the empirical one) and
/// its factorization is reused in between; with `decay` > 0 each estimate is
/// folded into a running average (K-FAC: of the factors). KL-clipping (Ba, Grosse & Martens
/// 2017) scales the step so that lr^2 d^T F d <= kl_clip. The KFAC preset
/// stores per-layer Kronecker factors (Martens & Grosse 2015).
///
/// Levenberg-Marquardt damping (Martens 2010; Martens & Grosse 2015, sec.
/// 6.5): every `lm_interval` steps the optimizer measures, on its current
/// curvature window, the reduction ratio rho = (L(theta + delta) - L(theta)) /
/// (g^T delta + delta^T (F + damping) delta / 2) of the step delta it would
/// take, and multiplies the damping by lm_factor when rho > 3/4 or divides it
/// when rho < 1/4 (within [min_damping, max_damping]). The probe restores the
/// parameters; it does not move the trajectory.
///
/// write()/read() save the whole state (step counters, damping, momentum,
/// the current curvature estimate), so a run resumed from them continues bit
/// for bit. With a
/// distributed communicator every rank keeps the same state; curvature
/// estimates are sharded over the ranks (see estimate_fisher), so are the
/// per-layer factorizations after each refresh or damping change
/// (prepare_sharded: each rank factors its share of the layers, then
/// broadcasts them), and the
/// gradients passed to step() must already be summed over ranks (as
/// dist::train_epoch does).

#include <hfisher/fisher/fisher.hpp>
#include <hfisher/nn/train.hpp>

#include <cmath>
#include <limits>
#include <sstream>

namespace hfisher {

/// Defaults are the low-rank natural gradient's, chosen by the final
/// training loss (mean of seeds 1-3) on Fashion-MNIST, MLP 784-100-100-10,
/// 10 000 examples, 3 epochs, batch 128 (docs/continual.md): lr 0.05 (KL
/// clipping bounds the step) and damping 1 from {1e-3, 1e-2, 0.1, 1}. The
/// low-rank Fisher has no curvature outside its rank-r span, so there the
/// damping is the whole curvature: at 1e-3 those directions took 1000x
/// steps and 2 of 3 seeds diverged. kfac() has its own lr and damping.
struct NaturalGradientOptions {
  double lr = 0.05;
  double damping = 1.0;  ///< initial damping (fixed unless lm_interval > 0)
  double momentum = 0.9;
  double weight_decay = 0.0;
  double kl_clip = 1e-3;  ///< 0 disables clipping
  int refresh = 50;       ///< steps between curvature estimates
  int curvature_examples = 256;
  double decay = 0.0;       ///< running-average decay of curvature estimates (0: each estimate replaces the last)
  int lm_interval = 0;      ///< steps between Levenberg-Marquardt damping updates (0: fixed damping)
  double lm_factor = 0.95;  ///< damping *= lm_factor (rho > 3/4) or /= lm_factor (rho < 1/4)
  double min_damping = 1e-8, max_damping = 1e4;
  Structure structure = Structure::LowRank;
  FisherKind kind = FisherKind::MonteCarlo;
  FisherOptions fisher;  ///< rank, tolerances, budget of the curvature structure

  /// The K-FAC preset: per-layer Kronecker factors, eigen-damping, running
  /// averages of the factors (decay 0.95), lr 1e-3 and damping 1e-3 (the
  /// lowest training loss of (lr, damping) in {(1e-3, 1e-3), (0.05, 0.1),
  /// (0.05, 1e-3)} in the setting above: 0.27 against 0.37 and 0.61).
  static NaturalGradientOptions kfac() {
    NaturalGradientOptions o;
    o.structure = Structure::KFAC;
    o.decay = 0.95;
    o.lr = 1e-3;
    o.damping = 1e-3;
    return o;
  }
  void validate(const char* where) const {
    detail::require(std::isfinite(lr) && lr > 0, where, "lr = ", lr, " (must be > 0)");
    detail::require(std::isfinite(damping) && damping > 0, where, "damping = ", damping, " (must be > 0)");
    detail::require(momentum >= 0 && momentum < 1, where, "momentum = ", momentum, " (must lie in [0, 1))");
    detail::require(weight_decay >= 0 && kl_clip >= 0, where, "weight_decay and kl_clip must be >= 0");
    detail::require(refresh >= 1 && curvature_examples >= 1, where, "refresh and curvature_examples must be >= 1");
    detail::require(decay >= 0 && decay < 1, where, "decay = ", decay, " (must lie in [0, 1))");
    detail::require(lm_interval >= 0, where, "lm_interval = ", lm_interval, " (must be >= 0)");
    detail::require(lm_factor > 0 && lm_factor < 1, where, "lm_factor = ", lm_factor, " (must lie in (0, 1))");
    detail::require(min_damping > 0 && min_damping <= damping && damping <= max_damping, where,
                    "need 0 < min_damping <= damping <= max_damping (got ", min_damping, ", ", damping, ", ",
                    max_damping, ")");
  }
};

/// Net is nn::MLP (the default) or nn::Sequential: the curvature is
/// estimate_fisher's for either (K-FAC of a convolution or of a token-wise
/// projection is KFC).
template <class Scalar, class ExecSpace = DefaultExec, template <class, class> class Net = nn::MLP>
class NaturalGradient {
 public:
  using Vector = Kokkos::View<Scalar*, typename ExecSpace::memory_space>;
  using Model = Net<Scalar, ExecSpace>;

  NaturalGradient(const Model& model, const nn::DeviceData<Scalar, ExecSpace>& data, NaturalGradientOptions o = {},
                  dist::Communicator comm = {})
      : model_(&model), data_(data), o_(std::move(o)), comm_(comm) {
    o_.validate("hfisher::NaturalGradient");
    detail::require(data.size() >= 1, "hfisher::NaturalGradient", "no training examples");
    damping_ = o_.damping;
  }

  /// One step on theta (the model's parameters) with the data gradient grad.
  void step(const Vector& theta, const Vector& grad) {
    constexpr const char* where = "hfisher::NaturalGradient::step";
    detail::require(theta.extent(0) == grad.extent(0) && long(theta.extent(0)) == model_->num_params(), where,
                    "theta and grad must have the model's ", model_->num_params(), " entries");
    if (!F_ || steps_ % o_.refresh == 0) refresh();
    if (o_.lm_interval > 0 && steps_ % o_.lm_interval == 0) adapt_damping(theta);
    ++steps_;
    const long n = theta.extent(0);
    Vector g("hfisher::ngd::g", n), d("hfisher::ngd::d", n);
    const Scalar wd = Scalar(o_.weight_decay);
    Kokkos::parallel_for(
        "hfisher::ngd::wd", Kokkos::RangePolicy<ExecSpace>(0, n),
        KOKKOS_LAMBDA(const long i) { g(i) = grad(i) + wd * theta(i); });
    const double nu = direction(g, d);
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

  /// Re-estimates the curvature now (called by step every `refresh` steps)
  /// and folds it into the running average.
  void refresh() {
    const auto win = window(windows_);
    ++windows_;
    auto f = o_.fisher;
    f.examples = win.size();
    f.seed = o_.fisher.seed + std::uint64_t(windows_);
    f.layers.clear();
    auto fresh = estimate_fisher(*model_, win, o_.kind, o_.structure, f, comm_);
    if (F_ && o_.decay > 0)
      fisher::decay_average(*F_, *fresh, o_.decay);
    else
      F_ = std::move(fresh);
  }

  const CurvatureOperator<Scalar, ExecSpace>& curvature() const { return *F_; }
  double last_clip() const { return last_clip_; }
  long steps() const { return steps_; }
  /// The damping in use (changes with the Levenberg-Marquardt schedule).
  double damping() const { return damping_; }
  /// The last reduction ratio measured by the schedule (NaN before the first).
  double last_rho() const { return rho_; }

  /// Saves the state (not the options, model or data) to a binary stream.
  void write(std::ostream& o) const {
    io::put_header(o, kMagic, kVersion, sizeof(Scalar));
    io::put(o, std::int64_t(steps_));
    io::put(o, std::int64_t(windows_));
    io::put(o, damping_);
    io::put(o, last_clip_);
    io::put(o, rho_);
    io::put(o, std::int64_t(v_.extent(0)));
    if (v_.extent(0) > 0) io::put_view(o, v_);
    io::put(o, std::int32_t(F_ != nullptr));
    if (F_) fisher::write_curvature(*F_, o);
  }
  /// Restores a state written by write() for the same model and options.
  void read(std::istream& i, const std::string& what) {
    constexpr const char* where = "hfisher::NaturalGradient::read";
    // version 1 began with the tag "HFNGD001" (no version or scalar size); the rest is read as before
    io::expect_header_or_legacy(i, kMagic, "HFNGD001", kVersion, kVersion, sizeof(Scalar), what, where,
                                "a NaturalGradient state");
    const long steps = long(io::get<std::int64_t>(i, what, where)),
               windows = long(io::get<std::int64_t>(i, what, where));
    const double damping = io::get<double>(i, what, where), clip = io::get<double>(i, what, where);
    const double rho = io::get<double>(i, what, where);
    const long nv = long(io::get<std::int64_t>(i, what, where));
    detail::require(
        steps >= 0 && windows >= 0 && damping > 0 && std::isfinite(damping) && (nv == 0 || nv == model_->num_params()),
        where, what, ": corrupt or written for another model (", nv, " momentum entries, the model has ",
        model_->num_params(), " parameters)");
    Vector v;
    if (nv > 0) {
      v = Vector("hfisher::ngd::v", nv);
      io::get_view(i, v, what, where);
    }
    std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> F;
    if (io::get<std::int32_t>(i, what, where) != 0) {
      F = fisher::read_curvature<Scalar, ExecSpace>(i, what);
      detail::require(F->size() == model_->num_params(), where, what, ": the curvature covers ", F->size(),
                      " parameters, the model has ", model_->num_params());
    }
    steps_ = steps;
    windows_ = windows;
    damping_ = damping;
    last_clip_ = clip;
    rho_ = rho;
    v_ = v;
    F_ = std::move(F);
  }

  /// d = (F + damping I)^-1 g; returns the KL-clipping factor of the step.
  /// (Public: it launches kernels.)
  double direction(const Vector& g, const Vector& d) const {
    // after a refresh or a damping change: the per-layer factorizations
    // (K-FAC eigendecompositions, dense Cholesky factors, HODLR factors) sharded over the
    // ranks and broadcast; a no-op while they are cached
    fisher::prepare_sharded(*F_, damping_, comm_);
    F_->solve(g, d, damping_);
    double nu = 1.0;
    if (o_.kl_clip > 0) {
      const double dg = fisher::detail::dot<ExecSpace>(d, g);  // d^T (F + damping) d
      if (dg > 0) nu = std::min(1.0, std::sqrt(o_.kl_clip / (o_.lr * o_.lr * dg)));
    }
    return nu;
  }

  /// One Levenberg-Marquardt update of the damping from the reduction ratio
  /// on the current window (see the file comment). theta must be the
  /// model's parameter view; it is restored. (Public: it launches kernels.)
  void adapt_damping(const Vector& theta) {
    constexpr const char* where = "hfisher::NaturalGradient::adapt_damping";
    detail::require(theta.data() == model_->params().data(), where,
                    "the Levenberg-Marquardt schedule needs theta to be the model's own parameter view");
    const auto win = window(windows_ > 0 ? windows_ - 1 : 0);
    const long n = theta.extent(0);
    typename Model::Cache cache;
    Vector g("hfisher::ngd::lm_g", n), d("hfisher::ngd::lm_d", n), saved("hfisher::ngd::lm_theta", n);
    const double l0 = window_loss_grad(win, g, cache);
    const double nu = direction(g, d);
    // delta = -a d: predicted change g^T delta + delta^T (F + damping) delta / 2
    const double a = o_.lr * nu, gd = fisher::detail::dot<ExecSpace>(g, d);
    const double predicted = -a * gd + 0.5 * a * a * gd;
    Kokkos::deep_copy(saved, theta);
    const Scalar as = Scalar(a);
    Kokkos::parallel_for(
        "hfisher::ngd::lm_probe", Kokkos::RangePolicy<ExecSpace>(0, n),
        KOKKOS_LAMBDA(const long i) { theta(i) -= as * d(i); });
    const double l1 = window_loss_grad(win, g, cache);
    Kokkos::deep_copy(theta, saved);
    rho_ = predicted < 0 ? (l1 - l0) / predicted : 0.0;
    if (rho_ > 0.75)
      damping_ = std::max(o_.min_damping, damping_ * o_.lm_factor);
    else if (rho_ < 0.25)
      damping_ = std::min(o_.max_damping, damping_ / o_.lm_factor);
  }

  /// Mean loss of a window of examples and its gradient (plus weight decay),
  /// sharded over the ranks. (Public: it launches kernels.)
  double window_loss_grad(const nn::DeviceData<Scalar, ExecSpace>& win, const Vector& g,
                          typename Model::Cache& c) const {
    const auto s = dist::shard(win.size(), comm_.rank(), comm_.size());
    const auto mine = nn::rows(win, s.first, s.second - s.first);
    double loss = nn::detail::shard_loss_grad(*model_, mine.x, mine.y, win.size(), g, c);
    comm_.allreduce_sum(g);
    loss = comm_.sum(loss);
    if (o_.weight_decay > 0) {
      auto theta = model_->params();
      auto gv = g;
      const Scalar wd = Scalar(o_.weight_decay);
      double sq = fisher::detail::dot<ExecSpace>(theta, theta);
      Kokkos::parallel_for(
          "hfisher::ngd::lm_wd", Kokkos::RangePolicy<ExecSpace>(0, g.extent(0)),
          KOKKOS_LAMBDA(const long i) { gv(i) += wd * theta(i); });
      loss += 0.5 * o_.weight_decay * sq;
    }
    return loss;
  }

 private:
  // the common header of core/io.hpp (version 2; version 1 was the bare tag "HFNGD001")
  static constexpr char kMagic[8] = {'H', 'F', 'N', 'G', 'D', '\0', '\0', '\1'};
  static constexpr std::uint32_t kVersion = 2;

  /// The k-th rotating window of curvature_examples training examples.
  nn::DeviceData<Scalar, ExecSpace> window(long k) const {
    const int n = data_.size(), m = std::min(o_.curvature_examples, n);
    return nn::rows(data_, (k * m) % std::max(1, n - m + 1), m);
  }

  const Model* model_;
  nn::DeviceData<Scalar, ExecSpace> data_;
  NaturalGradientOptions o_;
  dist::Communicator comm_;
  std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> F_;
  Vector v_;
  long steps_ = 0, windows_ = 0;
  double damping_ = 0, last_clip_ = 1.0, rho_ = std::numeric_limits<double>::quiet_NaN();
};

}  // namespace hfisher
