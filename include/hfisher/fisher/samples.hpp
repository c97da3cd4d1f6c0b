#pragma once
/// \file samples.hpp
/// \brief The per-sample factors of a Fisher: collect_samples() runs the
/// forward and backward passes once, for any kind.
///
///
/// Every kind is written as F = sum_s psi_s psi_s^T, one psi per (example,
/// sample) pair, with psi_s = vec(g_s a~_n^T) per layer (g_s the backward
/// vector at the layer output, a~_n the example's homogeneous input):
///  - Empirical: one sample per example, backward from p - onehot(y) / sqrt(N);
///  - MonteCarlo: R samples yhat ~ p(. | x), backward from (p - onehot(yhat)) / sqrt(N R);
///  - GGN: C samples, backward from sqrt(p_c) (e_c - p) / sqrt(N), the columns
///    of a square root of diag(p) - p p^T, so F = J^T (diag p - p p^T) J exactly.
/// collect_samples() runs the passes once and keeps a~ (N rows per layer) and
/// g (N R rows per layer); build_curvature() turns them into any structure,
/// so one pass serves several structures.
///
/// A layer applied at T positions (a convolution of an nn::Sequential, T
/// output pixels) keeps T rows per example and per sample: a~ (N T rows,
/// row n T + t) and g (N R T rows, row (n R + r) T + t), and
/// psi_s = vec(sum_t g_{s,t} a~_{n,t}^T). positions[k] holds T (1 for a
/// linear layer, whose psi is the rank-one g (x) a~ above).

#include <hfisher/core/comm.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/core/region.hpp>
#include <hfisher/fisher/options.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/nn/mlp.hpp>
#include <hfisher/nn/sequential.hpp>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace hfisher {
namespace fisher {

/// Per-sample factors of F for the chosen layers (see the file comment).
template <class Scalar, class ExecSpace = DefaultExec>
struct FisherSamples {
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space>;
  FisherKind kind = FisherKind::Empirical;
  int examples = 0;                    ///< N
  int per_example = 1;                 ///< R (samples per example)
  std::vector<int> layers;             ///< model layer index of each entry below
  std::vector<nn::LayerShape> shapes;  ///< shapes, offsets renumbered in the operator's vector
  std::vector<Matrix> a;               ///< (N T_l, cols_l)
  std::vector<Matrix> g;               ///< (N R T_l, rows_l), scaled so that F = sum psi psi^T
  std::vector<int> positions;          ///< T_l per entry (empty: 1 for every layer)
  int positions_of(std::size_t k) const { return positions.empty() ? 1 : positions[k]; }
  long size() const { return shapes.empty() ? 0 : shapes.back().offset + shapes.back().size(); }
  int samples() const { return examples * per_example; }
  std::size_t bytes() const {
    std::size_t b = 0;
    for (std::size_t l = 0; l < a.size(); ++l) b += (a[l].span() + g[l].span()) * sizeof(Scalar);
    return b;
  }
};

/// Label r of example i for Monte-Carlo sampling from probabilities p (one
/// counter-based uniform per (seed, i, r): the same on every backend).
template <class PRow>
KOKKOS_INLINE_FUNCTION int sample_label(const PRow& p, int C, std::uint64_t seed, long i, int r) {
  const double u = random::uniform(seed, std::uint64_t(i), std::uint64_t(r));
  double c = 0;
  for (int k = 0; k < C; ++k) {
    c += double(p(k));
    if (u < c) return k;
  }
  return C - 1;
}

inline std::string mib(double bytes) {
  char b[64];
  std::snprintf(b, sizeof b, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return b;
}

inline void check_budget(double need, std::size_t budget, const char* where, const std::string& what) {
  hfisher::detail::require(need <= double(budget), where, what, " needs about ", mib(need),
                           ", over the memory budget of ", mib(double(budget)),
                           " (FisherOptions::memory_budget); use fewer examples, another structure or "
                           "a larger budget");
}

namespace detail {

/// The checks every estimate from (model, data) makes at its boundary: a
/// model with layers, data of its width and classes, and no more examples
/// than the data holds (refused, never quietly cut). Returns N, the examples
/// used (opts.examples, or all of the data when 0).
template <class Model, class Scalar, class ExecSpace>
int checked_examples(const Model& model, const nn::DeviceData<Scalar, ExecSpace>& data, const FisherOptions& opts,
                     const char* where) {
  hfisher::detail::require(model.num_layers() > 0, where, "the model has no layers");
  hfisher::detail::require(data.features() == model.inputs(), where, "data of the wrong width: ", data.features(),
                           " features, the model takes ", model.inputs(), " inputs");
  hfisher::detail::require(data.classes == model.outputs(), where, "the data has ", data.classes,
                           " classes, the model ", model.outputs(), " outputs");
  hfisher::detail::require(opts.examples <= data.size(), where, "FisherOptions.examples = ", opts.examples,
                           " but the data has ", data.size(), " examples (0 uses all of them)");
  const int N = opts.examples == 0 ? data.size() : opts.examples;
  hfisher::detail::require(N >= 1, where, "no examples");
  return N;
}

/// The chosen layers (all when `layers` is empty, which it fills), checked
/// to be layers of the model in increasing order, and their shapes with
/// offsets renumbered in the operator's vector.
template <class Model>
std::vector<nn::LayerShape> chosen_layers(const Model& model, std::vector<int>& layers, const char* where) {
  if (layers.empty())
    for (int l = 0; l < model.num_layers(); ++l) layers.push_back(l);
  std::vector<nn::LayerShape> shapes;
  long off = 0;
  for (std::size_t k = 0; k < layers.size(); ++k) {
    const int l = layers[k];
    hfisher::detail::require(l >= 0 && l < model.num_layers() && (k == 0 || l > layers[k - 1]), where, "layer index ",
                             l, " is not a layer of the model (0..", model.num_layers() - 1, ") in increasing order");
    auto sh = model.layers()[l];
    sh.offset = off;
    off += sh.size();
    shapes.push_back(sh);
  }
  return shapes;
}

/// What the passes read of a model's layer l after forward / backward: its
/// homogeneous inputs (B T, cols), its output gradients (B T, rows) and T.
template <class Scalar, class ExecSpace>
typename nn::MLP<Scalar, ExecSpace>::Matrix layer_inputs(const nn::MLP<Scalar, ExecSpace>&,
                                                         const typename nn::MLP<Scalar, ExecSpace>::Cache& c, int l) {
  return c.a[l];
}
template <class Scalar, class ExecSpace>
typename nn::MLP<Scalar, ExecSpace>::Matrix layer_output_grads(const nn::MLP<Scalar, ExecSpace>&,
                                                               const typename nn::MLP<Scalar, ExecSpace>::Cache& c,
                                                               int l) {
  return c.g[l];
}
template <class Scalar, class ExecSpace>
int layer_positions(const nn::MLP<Scalar, ExecSpace>&, int) {
  return 1;
}
template <class Scalar, class ExecSpace>
typename nn::Sequential<Scalar, ExecSpace>::Matrix layer_inputs(
    const nn::Sequential<Scalar, ExecSpace>& m, const typename nn::Sequential<Scalar, ExecSpace>::Cache& c, int l) {
  return m.patches(c, l);
}
template <class Scalar, class ExecSpace>
typename nn::Sequential<Scalar, ExecSpace>::Matrix layer_output_grads(
    const nn::Sequential<Scalar, ExecSpace>& m, const typename nn::Sequential<Scalar, ExecSpace>::Cache& c, int l) {
  return m.output_grads(c, l);
}
template <class Scalar, class ExecSpace>
int layer_positions(const nn::Sequential<Scalar, ExecSpace>& m, int l) {
  return m.geometry(l).positions();
}

}  // namespace detail

/// Runs the forward/backward passes over the first opts.examples examples
/// and returns the per-sample factors of the chosen layers. Under a
/// distributed communicator each rank runs the passes of its contiguous
/// share of the examples (same labels and scaling as one process: they
/// depend on the global example index) and the rows are gathered, so every
/// rank returns the full samples. The model is an nn::MLP or an
/// nn::Sequential (whose convolutions keep one row per output position).
template <template <class, class> class Net, class Scalar, class ExecSpace>
FisherSamples<Scalar, ExecSpace> collect_samples(const Net<Scalar, ExecSpace>& model,
                                                 const nn::DeviceData<Scalar, ExecSpace>& data, FisherKind kind,
                                                 const FisherOptions& opts, const dist::Communicator& comm = {}) try {
  constexpr const char* where = "hfisher::estimate_fisher";
  using Matrix = typename Net<Scalar, ExecSpace>::Matrix;
  opts.validate(where);
  const int N = detail::checked_examples(model, data, opts, where);
  hfisher::detail::Region region("hfisher::collect_samples");
  const int C = model.outputs();
  const int R = kind == FisherKind::Empirical ? 1 : kind == FisherKind::MonteCarlo ? opts.mc_samples : C;
  FisherSamples<Scalar, ExecSpace> s;
  s.kind = kind;
  s.examples = N;
  s.per_example = R;
  s.layers = opts.layers;
  s.shapes = detail::chosen_layers(model, s.layers, where);
  bool positional = false;
  for (int l : s.layers) {
    s.positions.push_back(detail::layer_positions(model, l));
    positional = positional || s.positions.back() > 1;
  }
  if (!positional) s.positions.clear();  // rank-one samples, as an MLP's
  double need = 0;
  for (std::size_t k = 0; k < s.shapes.size(); ++k) {
    const auto& sh = s.shapes[k];
    need += (double(N) * sh.cols() + double(N) * R * sh.out) * s.positions_of(k) * sizeof(Scalar);
  }
  check_budget(need, opts.memory_budget, where, "keeping the per-sample factors");
  for (std::size_t k = 0; k < s.shapes.size(); ++k) {
    const auto& sh = s.shapes[k];
    s.a.push_back(Matrix("hfisher::fisher::a", long(N) * s.positions_of(k), sh.cols()));
    s.g.push_back(Matrix("hfisher::fisher::g", long(N) * R * s.positions_of(k), sh.out));
  }
  ExecSpace space;
  typename Net<Scalar, ExecSpace>::Cache cache;
  typename Net<Scalar, ExecSpace>::Vector nograd;
  const Scalar wscale = Scalar(1.0 / std::sqrt(double(N) * (kind == FisherKind::MonteCarlo ? R : 1)));
  const std::uint64_t seed = opts.seed;
  const auto mine = dist::shard(N, comm.rank(), comm.size());
  const int hi = int(mine.second);
  for (int first = int(mine.first); first < hi; first += opts.batch) {
    const int B = std::min(opts.batch, hi - first);
    const Matrix X = Kokkos::subview(data.x, Kokkos::make_pair(first, first + B), Kokkos::ALL());  // a view, no copy
    auto logits = model.forward(X, cache);
    Matrix P("hfisher::fisher::P", B, C), E("hfisher::fisher::E", B, C);
    auto y = Kokkos::subview(data.y, Kokkos::make_pair(first, first + B));
    nn::softmax_xent(space, logits, y, P, E, Scalar(1));
    for (std::size_t k = 0; k < s.layers.size(); ++k) {
      const long T = s.positions_of(k);
      Kokkos::deep_copy(Kokkos::subview(s.a[k], Kokkos::make_pair(first * T, (first + B) * T), Kokkos::ALL()),
                        detail::layer_inputs(model, cache, s.layers[k]));
    }
    for (int r = 0; r < R; ++r) {
      Matrix Er("hfisher::fisher::Er", B, C);
      Kokkos::parallel_for(
          "hfisher::fisher::backward_vector", Kokkos::RangePolicy<ExecSpace>(space, 0, B), KOKKOS_LAMBDA(const int b) {
            auto p = Kokkos::subview(P, b, Kokkos::ALL());
            if (kind == FisherKind::GGN) {
              const Scalar sq = math::sqrt(P(b, r));
              for (int c = 0; c < C; ++c) Er(b, c) = wscale * sq * ((c == r ? Scalar(1) : Scalar(0)) - P(b, c));
            } else {
              const int t = kind == FisherKind::Empirical ? y(b) : sample_label(p, C, seed, long(first) + b, r);
              for (int c = 0; c < C; ++c) Er(b, c) = wscale * (P(b, c) - (c == t ? Scalar(1) : Scalar(0)));
            }
          });
      model.backward(cache, Er, nograd, Scalar(0));
      for (std::size_t k = 0; k < s.layers.size(); ++k) {
        auto gs = s.g[k];
        auto gl = detail::layer_output_grads(model, cache, s.layers[k]);  // (B T, rows), row b T + t
        const int o = gl.extent(1), T = s.positions_of(k);
        Kokkos::parallel_for(
            "hfisher::fisher::keep_g", Kokkos::RangePolicy<ExecSpace>(space, 0, long(B) * T),
            KOKKOS_LAMBDA(const long bt) {
              const long b = bt / T, t = bt % T;
              for (int i = 0; i < o; ++i) gs(((long(first) + b) * R + r) * T + t, i) = gl(bt, i);
            });
      }
    }
  }
  for (std::size_t k = 0; k < s.layers.size(); ++k) {
    const long T = s.positions_of(k);
    comm.allgather_rows(s.a[k], N, T * long(s.a[k].extent(1)));
    comm.allgather_rows(s.g[k], N, long(R) * T * long(s.g[k].extent(1)));
  }
  for (std::size_t k = 0; k < s.layers.size(); ++k) {
    const std::string what = "the output gradients of layer " + std::to_string(s.layers[k]) + " (NaN gradients)";
    hfisher::detail::check_finite_matrix(space, s.g[k], where, what.c_str());
  }
  return s;
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::estimate_fisher");
}

/// The gradient of each example's own loss (softmax cross-entropy of its
/// label) with respect to every parameter: row n of the (N, num_params())
/// result is d loss(x_n, y_n) / d theta in params() layout ([W | b]
/// row-major per layer), for the first N = `examples` examples (0: all).
/// One forward and backward pass per `batch` examples: the rows are the
/// empirical Fisher's per-sample factors, scaled back by sqrt(N), so
/// (1/N) sum_n row_n row_n^T is the empirical Fisher. N x num_params()
/// values are allocated; a failed allocation is an hfisher::Error.
template <class Scalar, class ExecSpace>
Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space> per_example_gradients(
    const nn::MLP<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data, int examples = 0,
    int batch = 256) try {
  constexpr const char* where = "hfisher::fisher::per_example_gradients";
  hfisher::detail::require(examples >= 0 && examples <= data.size(), where, "examples = ", examples,
                           " must lie in [0, ", data.size(), "] (0: all of the data)");
  hfisher::detail::require(batch >= 1, where, "batch = ", batch, " must be >= 1");
  hfisher::detail::require(model.num_layers() > 0, where, "the model has no layers");
  hfisher::detail::require(data.size() >= 1, where, "no examples");
  FisherOptions o;
  o.examples = examples == 0 ? data.size() : examples;
  o.batch = batch;
  const auto s = collect_samples(model, data, FisherKind::Empirical, o);
  const int N = s.examples;
  const long P = model.num_params();
  Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space> Gr(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::per_example_gradients"), N, P);
  const Scalar sc = Scalar(std::sqrt(double(N)));
  ExecSpace space;
  for (std::size_t k = 0; k < s.layers.size(); ++k) {
    const auto& shape = model.layers()[s.layers[k]];
    const long off = shape.offset;
    const int out = shape.out, cols = shape.cols();
    const auto a = s.a[k];
    const auto g = s.g[k];
    Kokkos::parallel_for(
        "hfisher::per_example_gradients::outer", Kokkos::RangePolicy<ExecSpace>(space, 0, N),
        KOKKOS_LAMBDA(const int n) {
          for (int i = 0; i < out; ++i) {
            const Scalar gi = sc * g(n, i);
            for (int j = 0; j < cols; ++j) Gr(n, off + long(i) * cols + j) = gi * a(n, j);
          }
        });
  }
  space.fence();
  return Gr;
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::fisher::per_example_gradients");
}

/// The labels a Monte-Carlo Fisher estimate samples: (N, R) with N =
/// opts.examples (0: all of data) and R = opts.mc_samples; label (n, r) is
/// drawn from the model's predictive distribution p(. | x_n) by the same
/// counter-based generator as collect_samples (keyed by opts.seed, n and
/// r), so the MonteCarlo estimate with these options is the Fisher of the
/// per-example gradients at these labels, weighted 1 / (N R).
template <class Scalar, class ExecSpace>
Kokkos::View<int**, Kokkos::LayoutRight, typename ExecSpace::memory_space> monte_carlo_labels(
    const nn::MLP<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data, const FisherOptions& opts) {
  constexpr const char* where = "hfisher::fisher::monte_carlo_labels";
  opts.validate(where);
  hfisher::detail::require(model.num_layers() > 0, where, "the model has no layers");
  hfisher::detail::require(data.features() == model.inputs(), where, "data of the wrong width: ", data.features(),
                           " features, the model takes ", model.inputs(), " inputs");
  hfisher::detail::require(opts.examples <= data.size(), where, "FisherOptions.examples = ", opts.examples,
                           " but the data has ", data.size(), " examples");
  const int N = opts.examples == 0 ? data.size() : opts.examples, R = opts.mc_samples, C = model.outputs();
  hfisher::detail::require(N >= 1, where, "no examples");
  using Matrix = typename nn::MLP<Scalar, ExecSpace>::Matrix;
  Kokkos::View<int**, Kokkos::LayoutRight, typename ExecSpace::memory_space> labels(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::monte_carlo_labels"), N, R);
  ExecSpace space;
  typename nn::MLP<Scalar, ExecSpace>::Cache cache;
  const std::uint64_t seed = opts.seed;
  for (int first = 0; first < N; first += opts.batch) {
    const int B = std::min(opts.batch, N - first);
    const Matrix X = Kokkos::subview(data.x, Kokkos::make_pair(first, first + B), Kokkos::ALL());
    auto logits = model.forward(X, cache);
    Matrix P("hfisher::fisher::P", B, C), E("hfisher::fisher::E", B, C);
    nn::softmax_xent(space, logits, Kokkos::subview(data.y, Kokkos::make_pair(first, first + B)), P, E, Scalar(1));
    Kokkos::parallel_for(
        "hfisher::fisher::mc_labels", Kokkos::RangePolicy<ExecSpace>(space, 0, B), KOKKOS_LAMBDA(const int b) {
          auto p = Kokkos::subview(P, b, Kokkos::ALL());
          for (int r = 0; r < R; ++r) labels(first + b, r) = sample_label(p, C, seed, long(first) + b, r);
        });
  }
  space.fence();
  return labels;
}

}  // namespace fisher
}  // namespace hfisher
