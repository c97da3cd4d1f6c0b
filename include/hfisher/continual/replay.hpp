#pragma once
/// \file replay.hpp
/// \brief Experience replay, the reference baseline of class-incremental
/// continual learning (Chaudhry et al. 2019, "On tiny episodic memories in
/// continual learning"): a small memory of every finished task's training
/// examples, replayed beside the current task's batches.

#include <hfisher/core/error.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/nn/mlp.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace hfisher {
namespace continual {

/// A memory of `per_task` training examples of every finished task (drawn
/// uniformly without replacement, from a generator seeded by (seed, task):
/// the same examples on every rank and after a resume), each with its task's
/// class mask. add_gradient adds the mean loss gradient of a memory batch to
/// an optimizer step's gradient: used as the hook of nn::train_epoch, each
/// step then descends on the current batch's loss plus the memory batch's.
/// Net is the model type: nn::MLP (the default) or nn::Sequential.
template <class Scalar, class ExecSpace = DefaultExec, template <class, class> class Net = nn::MLP>
class ReplayMemory {
 public:
  using Model = Net<Scalar, ExecSpace>;
  using Data = nn::DeviceData<Scalar, ExecSpace>;
  using Labels = typename Model::Labels;
  using Vector = typename Model::Vector;

  ReplayMemory(int per_task, std::uint64_t seed) : per_task_(per_task), seed_(seed) {
    detail::require(per_task >= 1, "hfisher::continual::ReplayMemory", "per_task = ", per_task, " (must be >= 1)");
  }

  /// Keeps per_task examples of a finished task's training set, and its
  /// class mask (empty: every class). Refuses a task with fewer examples
  /// than per_task, or one whose width differs from the tasks kept.
  void add_task(const Data& train, const Labels& mask) {
    constexpr const char* where = "hfisher::continual::ReplayMemory::add_task";
    const int n = train.size(), t = int(tasks_.size());
    detail::require(n >= per_task_, where, "task ", t + 1, " has ", n, " training examples, fewer than the ", per_task_,
                    " the memory keeps per task");
    detail::require(tasks_.empty() || train.features() == tasks_[0].data.features(), where, "task ", t + 1, " has ",
                    train.features(), " features, the tasks kept have ",
                    tasks_.empty() ? 0 : tasks_[0].data.features());
    // per_task distinct indices: a partial Fisher-Yates shuffle
    std::mt19937_64 g(seed_ * 0x9E3779B97F4A7C15ULL + std::uint64_t(t) * 1000003ULL + 17);
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    random::partial_shuffle(order.begin(), order.end(), std::uint64_t(per_task_), g);
    Kokkos::View<int*, typename ExecSpace::memory_space> idx("hfisher::continual::replay_pick", per_task_);
    auto ih = Kokkos::create_mirror_view(idx);
    for (int i = 0; i < per_task_; ++i) ih(i) = order[i];
    Kokkos::deep_copy(idx, ih);
    Kept k;
    k.data.classes = train.classes;
    k.data.x = decltype(k.data.x)(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::continual::replay_x"),
                                  per_task_, train.features());
    k.data.y =
        decltype(k.data.y)(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::continual::replay_y"), per_task_);
    nn::gather(train, idx, 0, per_task_, k.data.x, k.data.y);
    k.mask = mask;
    // tasks with the same class mask share one loss in add_gradient
    k.group = t;
    for (int u = 0; u < t && k.group == t; ++u)
      if (same_mask(tasks_[std::size_t(u)].mask, mask)) k.group = tasks_[std::size_t(u)].group;
    tasks_.push_back(std::move(k));
  }

  int per_task() const { return per_task_; }
  int tasks() const { return int(tasks_.size()); }
  long size() const { return long(per_task_) * long(tasks_.size()); }
  bool empty() const { return tasks_.empty(); }
  /// The examples kept of task t (0-based) and its class mask.
  const Data& task_data(int t) const { return at(t).data; }
  const Labels& task_mask(int t) const { return at(t).mask; }
  /// Bytes of the kept examples (inputs and labels) and masks.
  std::size_t bytes() const {
    std::size_t b = 0;
    for (const auto& k : tasks_)
      b += k.data.x.span() * sizeof(Scalar) + k.data.y.span() * sizeof(int) + k.mask.span() * sizeof(int);
    return b;
  }

  /// grad += the gradient of the mean softmax cross-entropy of `batch`
  /// examples drawn uniformly without replacement from the memory (every
  /// kept example when it holds no more than `batch`), each example under
  /// its own task's class mask. Returns that mean loss; an empty memory adds
  /// nothing and returns 0. The draws come from rng: ranks that share its
  /// state add the same gradient.
  double add_gradient(const Model& model, const Vector& grad, int batch, std::mt19937_64& rng) {
    constexpr const char* where = "hfisher::continual::ReplayMemory::add_gradient";
    detail::require(batch >= 1, where, "batch = ", batch, " (must be >= 1)");
    detail::require(long(grad.extent(0)) == model.num_params(), where, "gradient has ", grad.extent(0),
                    " entries, the model ", model.num_params(), " parameters");
    if (tasks_.empty()) return 0;
    detail::require(model.inputs() == tasks_[0].data.features(), where, "the model takes ", model.inputs(),
                    " inputs, the kept examples have ", tasks_[0].data.features(), " features");
    const long total = size();
    const int m = int(std::min<long>(batch, total));
    // the drawn examples, as (task, row) counts per task: a partial shuffle
    // of all kept positions
    pool_.resize(std::size_t(total));
    std::iota(pool_.begin(), pool_.end(), 0L);
    if (m < total) random::partial_shuffle(pool_.begin(), pool_.end(), std::uint64_t(m), rng);
    std::vector<std::vector<int>> rows(tasks_.size());
    for (int i = 0; i < m; ++i)
      rows[std::size_t(pool_[std::size_t(i)] / per_task_)].push_back(int(pool_[std::size_t(i)] % per_task_));
    if (!part_.data() || part_.extent(0) != grad.extent(0))
      part_ = Vector("hfisher::continual::replay_grad", grad.extent(0));
    // tasks that share a class mask (permuted and class-incremental streams:
    // all of them) are one group: one loss and gradient per group
    std::vector<char> done(tasks_.size(), 0);
    double loss = 0;
    for (std::size_t t0 = 0; t0 < tasks_.size(); ++t0) {
      if (done[t0]) continue;
      std::vector<std::size_t> group;
      int c = 0;
      for (std::size_t t = t0; t < tasks_.size(); ++t)
        if (!done[t] && tasks_[t].group == tasks_[t0].group) {
          done[t] = 1;
          if (rows[t].empty()) continue;
          group.push_back(t);
          c += int(rows[t].size());
        }
      if (c == 0) continue;
      typename Model::Matrix X(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::continual::replay_X"), c,
                               tasks_[t0].data.features());
      Labels y(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::continual::replay_y"), c);
      int off = 0;
      for (std::size_t t : group) {
        const int ct = int(rows[t].size());
        std::sort(rows[t].begin(), rows[t].end());
        Kokkos::View<int*, typename ExecSpace::memory_space> idx("hfisher::continual::replay_rows", ct);
        auto ih = Kokkos::create_mirror_view(idx);
        for (int i = 0; i < ct; ++i) ih(i) = rows[t][std::size_t(i)];
        Kokkos::deep_copy(idx, ih);
        const auto rows_of = Kokkos::make_pair(off, off + ct);
        nn::gather(tasks_[t].data, idx, 0, ct, Kokkos::subview(X, rows_of, Kokkos::ALL()), Kokkos::subview(y, rows_of));
        off += ct;
      }
      // this group's share of the memory batch's mean: c / m of its own mean
      loss += model.loss_grad(X, y, part_, cache_, tasks_[t0].mask) * c / m;
      const Scalar w = Scalar(double(c) / m);
      auto g = grad;
      auto p = part_;
      Kokkos::parallel_for(
          "hfisher::continual::replay_add", Kokkos::RangePolicy<ExecSpace>(0, long(g.extent(0))),
          KOKKOS_LAMBDA(const long i) { g(i) += w * p(i); });
    }
    return loss;
  }

 private:
  struct Kept {
    Data data;
    Labels mask;
    int group = 0;  ///< the first task kept with the same class mask
  };
  /// Whether two class masks select the same classes (empty: every class).
  static bool same_mask(const Labels& a, const Labels& b) {
    if (a.extent(0) == 0 || b.extent(0) == 0) return a.extent(0) == b.extent(0);
    if (a.data() == b.data()) return true;
    if (a.extent(0) != b.extent(0)) return false;
    auto ah = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), a);
    auto bh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), b);
    for (std::size_t i = 0; i < ah.extent(0); ++i)
      if ((ah(i) != 0) != (bh(i) != 0)) return false;
    return true;
  }
  const Kept& at(int t) const {
    detail::require(t >= 0 && t < int(tasks_.size()), "hfisher::continual::ReplayMemory", "task ", t, " of ",
                    tasks_.size(), " kept");
    return tasks_[std::size_t(t)];
  }

  int per_task_;
  std::uint64_t seed_;
  std::vector<Kept> tasks_;
  std::vector<long> pool_;       ///< scratch: the kept positions, partly shuffled
  Vector part_;                  ///< scratch: one task's share of the gradient
  typename Model::Cache cache_;  ///< scratch of loss_grad
};

}  // namespace continual
}  // namespace hfisher
