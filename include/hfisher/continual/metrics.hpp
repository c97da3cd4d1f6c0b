#pragma once
/// \file metrics.hpp
/// \brief Continual-learning metrics from the accuracy matrix R, where
/// R(i, j) is the test accuracy on task j after training on tasks 0..i
/// (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018).

#include <hfisher/core/error.hpp>

#include <algorithm>
#include <vector>

namespace hfisher {
namespace continual {

class AccuracyMatrix {
 public:
  AccuracyMatrix() = default;
  explicit AccuracyMatrix(int tasks) : T_(tasks), R_(std::size_t(tasks) * tasks, -1.0) {
    detail::require(tasks >= 1, "hfisher::continual::AccuracyMatrix", "tasks = ", tasks, " (must be >= 1)");
  }
  int tasks() const { return T_; }
  void set(int i, int j, double acc) {
    check(i, j);
    detail::require(acc >= 0 && acc <= 1, "hfisher::continual::AccuracyMatrix::set", "accuracy ", acc,
                    " is outside [0, 1]");
    R_[std::size_t(i) * T_ + j] = acc;
  }
  double operator()(int i, int j) const {
    check(i, j);
    return R_[std::size_t(i) * T_ + j];
  }
  bool has(int i, int j) const { return (*this)(i, j) >= 0; }
  /// Rows 0..i all filled on and below the diagonal?
  int completed_rows() const {
    int i = 0;
    while (i < T_ && has(i, 0)) ++i;
    return i;
  }
  /// Average accuracy after task t over tasks 0..t: (1/(t+1)) sum_j R(t, j).
  double acc(int t) const {
    double s = 0;
    for (int j = 0; j <= t; ++j) s += at(t, j);
    return s / (t + 1);
  }
  /// Backward transfer after task t: mean over j < t of R(t, j) - R(j, j) (0 when t = 0).
  double bwt(int t) const {
    if (t == 0) return 0;
    double s = 0;
    for (int j = 0; j < t; ++j) s += at(t, j) - at(j, j);
    return s / t;
  }
  /// Forgetting after task t: mean over j < t of max_{l < t} R(l, j) - R(t, j) (0 when t = 0).
  double forgetting(int t) const {
    if (t == 0) return 0;
    double s = 0;
    for (int j = 0; j < t; ++j) {
      double best = at(j, j);
      for (int l = j; l < t; ++l) best = std::max(best, at(l, j));
      s += best - at(t, j);
    }
    return s / t;
  }
  /// Learning accuracy after task t (plasticity): mean over j <= t of
  /// R(j, j), how well each task was learned when it was the newest.
  double learning_accuracy(int t) const {
    double s = 0;
    for (int j = 0; j <= t; ++j) s += at(j, j);
    return s / (t + 1);
  }
  /// Intransigence after task t against a reference run (Chaudhry et al.
  /// 2018): mean over j <= t of ref(j, j) - R(j, j), how much less well this
  /// run learned each new task than the reference did (the drivers use
  /// unconstrained fine-tuning as the reference; > 0: less plastic).
  double intransigence(int t, const AccuracyMatrix& ref) const {
    detail::require(ref.tasks() == T_, "hfisher::continual::AccuracyMatrix::intransigence", "the reference has ",
                    ref.tasks(), " tasks, this run ", T_);
    double s = 0;
    for (int j = 0; j <= t; ++j) s += ref.at(j, j) - at(j, j);
    return s / (t + 1);
  }
  const std::vector<double>& data() const { return R_; }

 private:
  void check(int i, int j) const {
    detail::require(i >= 0 && i < T_ && j >= 0 && j < T_, "hfisher::continual::AccuracyMatrix", "entry (", i, ", ", j,
                    ") is outside a ", T_, "x", T_, " matrix");
  }
  double at(int i, int j) const {
    const double v = (*this)(i, j);
    detail::require(v >= 0, "hfisher::continual::AccuracyMatrix", "entry (", i, ", ", j, ") has not been measured");
    return v;
  }
  int T_ = 0;
  std::vector<double> R_;
};

}  // namespace continual
}  // namespace hfisher
