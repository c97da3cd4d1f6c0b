#pragma once
/// \file streams.hpp
/// \brief Task streams over an MNIST-format dataset: permuted (each task a
/// fixed random pixel permutation; task 0 the identity) and split (tasks of
/// disjoint class pairs), task-incremental (each task evaluated and trained
/// only over its own classes: a per-task head) or class-incremental (all
/// classes compete).

#include <hfisher/core/error.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/nn/dataset.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace hfisher {
namespace continual {

enum class StreamKind { Permuted, Split };
enum class Scenario { TaskIncremental, ClassIncremental };

/// One task: train and test sets on the host, and the classes its head uses
/// (all classes for permuted and class-incremental streams).
struct Task {
  nn::Dataset train, test;
  std::vector<int> classes;
};

/// Builds `tasks` tasks from (train, test). Permuted: pixel permutation from
/// a generator seeded by (seed, task). Split: classes {2t, 2t + 1}; needs
/// 2 tasks <= classes.
inline std::vector<Task> make_stream(const nn::Dataset& train, const nn::Dataset& test, StreamKind kind, int tasks,
                                     Scenario scenario, std::uint64_t seed) {
  constexpr const char* where = "hfisher::continual::make_stream";
  detail::require(tasks >= 1, where, "tasks = ", tasks, " (must be >= 1)");
  detail::require(train.features == test.features && train.classes == test.classes, where,
                  "train and test sets differ in width or classes");
  std::vector<Task> out;
  std::vector<int> all(train.classes);
  std::iota(all.begin(), all.end(), 0);
  if (kind == StreamKind::Permuted) {
    for (int t = 0; t < tasks; ++t) {
      std::vector<int> perm(train.features);
      std::iota(perm.begin(), perm.end(), 0);
      if (t > 0) {
        std::mt19937_64 g(seed * 1000003ULL + std::uint64_t(t));
        random::shuffle(perm.begin(), perm.end(), g);
      }
      auto permute = [&](const nn::Dataset& d) {
        nn::Dataset p = d;
        for (int i = 0; i < d.n; ++i)
          for (int f = 0; f < d.features; ++f)
            p.x[std::size_t(i) * d.features + f] = d.x[std::size_t(i) * d.features + perm[f]];
        return p;
      };
      out.push_back({permute(train), permute(test), all});
    }
    return out;
  }
  detail::require(2 * tasks <= train.classes, where, "a split stream of ", tasks, " tasks needs ", 2 * tasks,
                  " classes, the data has ", train.classes);
  for (int t = 0; t < tasks; ++t) {
    auto pick = [&](const nn::Dataset& d) {
      nn::Dataset p;
      p.features = d.features;
      p.classes = d.classes;
      p.height = d.height;
      p.width = d.width;
      for (int i = 0; i < d.n; ++i)
        if (d.y[i] / 2 == t) {
          p.x.insert(p.x.end(), d.x.begin() + std::size_t(i) * d.features,
                     d.x.begin() + std::size_t(i + 1) * d.features);
          p.y.push_back(d.y[i]);
          ++p.n;
        }
      return p;
    };
    Task task{pick(train), pick(test), {}};
    task.classes = scenario == Scenario::TaskIncremental ? std::vector<int>{2 * t, 2 * t + 1} : all;
    detail::require(task.train.n > 0 && task.test.n > 0, where, "task ", t, " has no examples of classes ", 2 * t,
                    " and ", 2 * t + 1);
    out.push_back(std::move(task));
  }
  return out;
}

}  // namespace continual
}  // namespace hfisher
