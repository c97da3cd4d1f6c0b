#pragma once
/// \file penalty.hpp
/// \brief Fisher penalties against catastrophic forgetting:
/// lambda/2 sum_t (theta - theta_t)^T F_t (theta - theta_t).
///
///  - EWC (Kirkpatrick et al. 2017): one diagonal Fisher and anchor per task;
///  - online EWC (Schwarz et al. 2018): one running diagonal F <- gamma F + F_t,
///    anchored at the latest parameters;
///  - K-FAC Laplace (Ritter, Botev & Barber 2018): the running sum of
///    per-layer Kronecker-factored Fishers (kept exactly as a list of terms),
///    anchored at the latest parameters;
///  - hierarchical: the running sum of per-layer hierarchical Fishers
///    (Structure::Multilevel by default, Structure::HODLR on request),
///    recompressed after every task (bounded memory), anchored at the
///    latest parameters.
/// Any other structure can be chosen through `structure`.

#include <hfisher/core/region.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/fisher/fisher.hpp>

#include <chrono>
#include <cmath>

namespace hfisher {

enum class PenaltyMethod { EWC, OnlineEWC, KFACLaplace, Hierarchical };

inline const char* to_string(PenaltyMethod m) {
  switch (m) {
    case PenaltyMethod::EWC:
      return "ewc";
    case PenaltyMethod::OnlineEWC:
      return "online-ewc";
    case PenaltyMethod::KFACLaplace:
      return "kfac-laplace";
    case PenaltyMethod::Hierarchical:
      return "hierarchical";
  }
  return "?";
}

/// The structure each method stores by default.
inline Structure default_structure(PenaltyMethod m) {
  switch (m) {
    case PenaltyMethod::EWC:
    case PenaltyMethod::OnlineEWC:
      return Structure::Diagonal;
    case PenaltyMethod::KFACLaplace:
      return Structure::KFAC;
    case PenaltyMethod::Hierarchical:
      return Structure::Multilevel;
  }
  return Structure::Diagonal;
}

template <class Scalar, class ExecSpace = DefaultExec>
class FisherPenalty {
 public:
  using COp = CurvatureOperator<Scalar, ExecSpace>;
  using Vector = typename COp::Vector;

  /// lambda >= 0: strength; gamma in (0, 1]: decay of online EWC (ignored
  /// otherwise); kind and opts: how each task's Fisher is estimated.
  FisherPenalty(PenaltyMethod method, double lambda, double gamma = 1.0, FisherKind kind = FisherKind::Empirical,
                FisherOptions opts = {})
      : method_(method),
        structure_(default_structure(method)),
        lambda_(lambda),
        gamma_(gamma),
        kind_(kind),
        opts_(std::move(opts)) {
    constexpr const char* where = "hfisher::FisherPenalty";
    detail::require(std::isfinite(lambda) && lambda >= 0, where, "lambda = ", lambda, " (must be finite and >= 0)");
    detail::require(gamma > 0 && gamma <= 1, where, "gamma = ", gamma, " (must lie in (0, 1])");
    opts_.validate(where);
  }

  PenaltyMethod method() const { return method_; }
  Structure structure() const { return structure_; }
  /// Overrides the stored structure (before the first consolidation).
  void set_structure(Structure s) {
    detail::require(F_.empty(), "hfisher::FisherPenalty::set_structure", "already consolidated");
    structure_ = s;
  }
  double lambda() const { return lambda_; }
  /// Online EWC's decay (the constructor's gamma).
  double gamma() const { return gamma_; }
  int tasks() const { return tasks_; }
  /// Seconds spent in the last consolidate().
  double last_consolidation_seconds() const { return last_seconds_; }

  /// After training on a task: estimates that task's Fisher at the current
  /// parameters on `data` and folds it into the penalty. Under a distributed
  /// communicator (every rank calling with the same model and data) the
  /// passes are sharded over the ranks and every rank ends with the same
  /// penalty (see estimate_fisher). The model is an nn::MLP or an
  /// nn::Sequential (for a Sequential with convolutions, K-FAC Laplace uses
  /// KFC, and the hierarchical penalty needs set_structure(Structure::HODLR):
  /// the multilevel structure takes linear layers only).
  template <template <class, class> class Net>
  void consolidate(const Net<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data,
                   const dist::Communicator& comm = {}) {
    const auto t0 = std::chrono::steady_clock::now();
    detail::Region region(std::string("hfisher::FisherPenalty::consolidate(") + to_string(method_) + ")");
    auto o = opts_;
    o.layers.clear();
    auto Ft = estimate_fisher(model, data, kind_, structure_, o, comm);
    fold_in(std::move(Ft), model.params());
    last_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  /// Folds a Fisher the caller estimated (or an exact Hessian: a toy problem,
  /// a model this library does not train) and its anchor into the penalty,
  /// as consolidate() does with its own estimate: EWC keeps (F, anchor) as
  /// one more term; online EWC, K-FAC Laplace and the hierarchical penalty
  /// add F to their single term (online EWC after scaling it by gamma) and
  /// move that term's anchor to `anchor`. F must cover anchor's entries and,
  /// after the first task, have the operator type of the stored term.
  void consolidate(std::unique_ptr<COp> F, const Vector& anchor) {
    constexpr const char* where = "hfisher::FisherPenalty::consolidate";
    detail::require(F != nullptr, where, "no Fisher given");
    detail::require(F->size() == long(anchor.extent(0)), where, "the Fisher covers ", F->size(),
                    " parameters, the anchor has ", anchor.extent(0));
    detail::require(F_.empty() || F->size() == F_[0]->size(), where, "the Fisher covers ", F->size(),
                    " parameters, the penalty ", F_.empty() ? 0 : F_[0]->size());
    const Kokkos::View<const Scalar**, Kokkos::LayoutRight, typename Vector::memory_space,
                       Kokkos::MemoryTraits<Kokkos::Unmanaged>>
        a2(anchor.data(), 1, anchor.extent(0));
    detail::check_finite2(ExecSpace(), a2, where, "anchor");
    fold_in(std::move(F), anchor);
    last_seconds_ = 0;
  }

  /// lambda/2 sum_t (theta - theta_t)^T F_t (theta - theta_t).
  double value(const Vector& theta) const {
    double s = 0;
    for (std::size_t t = 0; t < F_.size(); ++t) s += F_[t]->quad(diff_into(theta, t, scratch(work_d_, theta)));
    return 0.5 * lambda_ * s;
  }

  /// grad += lambda sum_t F_t (theta - theta_t).
  void add_gradient(const Vector& theta, const Vector& grad) const {
    detail::require(grad.extent(0) == theta.extent(0), "hfisher::FisherPenalty::add_gradient", "grad has ",
                    grad.extent(0), " entries, theta ", theta.extent(0));
    if (F_.empty() || lambda_ == 0) return;
    const Vector y = scratch(work_y_, theta), d = scratch(work_d_, theta);
    const Scalar l = Scalar(lambda_);
    for (std::size_t t = 0; t < F_.size(); ++t) {
      F_[t]->apply(diff_into(theta, t, d), y);
      Kokkos::parallel_for(
          "hfisher::FisherPenalty::axpy", Kokkos::RangePolicy<ExecSpace>(0, theta.extent(0)),
          KOKKOS_LAMBDA(const long i) { grad(i) += l * y(i); });
    }
  }

  /// Memory of the stored Fishers and anchors.
  std::size_t bytes() const {
    std::size_t b = 0;
    for (std::size_t t = 0; t < F_.size(); ++t) b += F_[t]->bytes() + anchor_[t].span() * sizeof(Scalar);
    return b;
  }

  const COp& fisher(int t) const { return *F_.at(t); }
  const Vector& anchor(int t) const { return anchor_.at(t); }
  int terms() const { return int(F_.size()); }

  /// The magic of a penalty record (io::put_header: then the format version
  /// and the scalar size; the same magic ends the record).
  static const char (&record_magic())[8] {
    static const char m[8] = {'H', 'F', 'P', 'E', 'N', '\0', '\0', '\1'};
    return m;
  }
  /// Version 2: the common header of core/io.hpp around the record. Version
  /// 1 (no header: the record began with the method) is still read.
  static constexpr std::uint32_t record_version = 2;

  void write(std::ostream& o) const {
    io::put_header(o, record_magic(), record_version, sizeof(Scalar));
    io::put(o, std::int32_t(method_));
    io::put(o, std::int32_t(structure_));
    io::put(o, lambda_);
    io::put(o, gamma_);
    io::put(o, std::int32_t(tasks_));
    io::put(o, std::int32_t(F_.size()));
    for (std::size_t t = 0; t < F_.size(); ++t) {
      fisher::write_curvature(*F_[t], o);
      io::put(o, std::int64_t(anchor_[t].extent(0)));
      io::put_view(o, anchor_[t]);
    }
    o.write(record_magic(), 8);
  }
  /// Restores what write() wrote into this penalty (same method).
  void read(std::istream& i, const std::string& what) {
    constexpr const char* where = "hfisher::FisherPenalty::read";
    // version 1 began with the method, a small int32: its first byte is never the magic's 'H'
    const bool headed = i.peek() == record_magic()[0];
    if (headed) io::expect_header(i, record_magic(), record_version, sizeof(Scalar), what, where, "a penalty record");
    const int m = io::get<std::int32_t>(i, what, where), st = io::get<std::int32_t>(i, what, where);
    detail::require(m == int(method_), where, what, " holds a ", to_string(PenaltyMethod(m)), " penalty, expected ",
                    to_string(method_));
    hfisher::detail::require(is_structure(st), where, what, ": unknown structure ", st);
    structure_ = Structure(st);
    const double lambda = io::get<double>(i, what, where), gamma = io::get<double>(i, what, where);
    detail::require(std::isfinite(lambda) && lambda >= 0 && gamma > 0 && gamma <= 1, where, what,
                    ": corrupt penalty header (lambda ", lambda, ", gamma ", gamma, ")");
    lambda_ = lambda;
    gamma_ = gamma;
    tasks_ = io::get<std::int32_t>(i, what, where);
    const int n = io::get<std::int32_t>(i, what, where);
    detail::require(n >= 0 && n <= 100000 && tasks_ >= n, where, what, ": corrupt penalty header");
    F_.clear();
    anchor_.clear();
    for (int t = 0; t < n; ++t) {
      F_.push_back(fisher::read_curvature<Scalar, ExecSpace>(i, what));
      const auto len = io::get<std::int64_t>(i, what, where);
      detail::require(len == F_.back()->size(), where, what, ": anchor length ", len, " does not match the Fisher");
      Vector a("hfisher::FisherPenalty::anchor", len);
      io::get_view(i, a, what, where);
      anchor_.push_back(a);
    }
    if (headed) io::expect_magic(i, record_magic(), what, where, "a complete penalty record (it is truncated)");
  }

  /// theta - theta_t (a new vector); public because it launches a kernel.
  Vector diff(const Vector& theta, std::size_t t) const {
    return diff_into(theta, t, Vector("hfisher::FisherPenalty::d", theta.extent(0)));
  }
  /// theta - theta_t into d (theta's length); returns d.
  Vector diff_into(const Vector& theta, std::size_t t, const Vector& d) const {
    detail::require(long(theta.extent(0)) == F_[t]->size() && d.extent(0) == theta.extent(0), "hfisher::FisherPenalty",
                    "theta has ", theta.extent(0), " entries, the penalty covers ", F_[t]->size());
    auto a = anchor_[t];
    Kokkos::parallel_for(
        "hfisher::FisherPenalty::diff", Kokkos::RangePolicy<ExecSpace>(0, theta.extent(0)),
        KOKKOS_LAMBDA(const long i) { d(i) = theta(i) - a(i); });
    return d;
  }

 private:
  /// A work vector of theta's length, kept between calls (value and
  /// add_gradient run every step: no allocation per step; so a penalty is
  /// not to be evaluated from two threads at once).
  static const Vector& scratch(Vector& w, const Vector& theta) {
    if (w.extent(0) != theta.extent(0))
      w = Vector(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::FisherPenalty::work"), theta.extent(0));
    return w;
  }

  /// F and a copy of the anchor into the penalty (see consolidate).
  void fold_in(std::unique_ptr<COp> Ft, const Vector& params) {
    Vector anchor("hfisher::FisherPenalty::anchor", params.extent(0));
    Kokkos::deep_copy(anchor, params);
    if (method_ == PenaltyMethod::EWC || F_.empty()) {
      F_.push_back(std::move(Ft));
      anchor_.push_back(anchor);
    } else {
      detail::Region fold("hfisher::FisherPenalty::fold_in");
      if (method_ == PenaltyMethod::OnlineEWC) fisher::scale(*F_[0], gamma_);
      fisher::add(*F_[0], *Ft, 1.0);
      anchor_[0] = anchor;
    }
    ++tasks_;
  }

  PenaltyMethod method_;
  Structure structure_;
  double lambda_, gamma_;
  FisherKind kind_;
  FisherOptions opts_;
  std::vector<std::unique_ptr<COp>> F_;
  std::vector<Vector> anchor_;
  mutable Vector work_d_, work_y_;
  int tasks_ = 0;
  double last_seconds_ = 0;
};

}  // namespace hfisher
