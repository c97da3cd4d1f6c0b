#pragma once
/// \file mlp.hpp
/// \brief A multilayer perceptron on Kokkos: Linear layers (tiled GEMMs),
/// ReLU/tanh, forward and backward on any backend, with per-example capture
/// of each layer's inputs a and output gradients g.
///
/// Parameters live in one flat vector theta. Layer l owns the row-major block
/// W~_l = [W_l | b_l] of shape (out_l, in_l + 1) at offset(l); its inputs are
/// stored homogeneously, a~ = [a; 1], so the per-example gradient of the layer
/// is the outer product g a~^T and, flattened row-major, g (x) a~ (Kronecker).
/// This is the convention of every curvature structure in hfisher::fisher.

#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/math.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/matmul.hpp>
#include <hfisher/nn/dataset.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace hfisher {
namespace nn {

enum class Activation { ReLU, Tanh };

/// Shape of one Linear layer inside the flat parameter vector.
struct LayerShape {
  int in = 0;       ///< input width (without the bias column)
  int out = 0;      ///< output width
  long offset = 0;  ///< first index of W~ in theta
  int cols() const { return in + 1; }
  long size() const { return long(out) * (in + 1); }
};

/// The derivative of the activation at z (ReLU: the step, z > 0; tanh:
/// 1 - tanh(z)^2): what MLP::backward and the Fisher-vector products'
/// tangent pass multiply by.
template <class Scalar>
KOKKOS_INLINE_FUNCTION Scalar activation_slope(bool relu, Scalar z) {
  if (relu) return z > Scalar(0) ? Scalar(1) : Scalar(0);
  const Scalar t = math::tanh(z);
  return Scalar(1) - t * t;
}

/// Labelled examples on a device: x (n, features), y (n).
template <class Scalar, class ExecSpace = DefaultExec>
struct DeviceData {
  Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space> x;
  Kokkos::View<int*, typename ExecSpace::memory_space> y;
  int classes = 10;
  int size() const { return int(x.extent(0)); }
  int features() const { return int(x.extent(1)); }
};

/// Examples [first, first + count) of `data` as views (rows of a LayoutRight
/// matrix are contiguous: no copy).
template <class Scalar, class ExecSpace>
DeviceData<Scalar, ExecSpace> rows(const DeviceData<Scalar, ExecSpace>& data, long first, long count) {
  hfisher::detail::require(first >= 0 && count >= 0 && first + count <= data.size(), "hfisher::nn::rows", "examples [",
                           first, ", ", first + count, ") of ", data.size());
  DeviceData<Scalar, ExecSpace> r;
  r.classes = data.classes;
  r.x = Kokkos::subview(data.x, Kokkos::make_pair(first, first + count), Kokkos::ALL());
  r.y = Kokkos::subview(data.y, Kokkos::make_pair(first, first + count));
  return r;
}

/// Copies a host Dataset to the device.
template <class Scalar, class ExecSpace = DefaultExec>
DeviceData<Scalar, ExecSpace> to_device(const Dataset& d) {
  hfisher::detail::require(
      d.n >= 1 && d.features >= 1 && d.x.size() == std::size_t(d.n) * d.features && d.y.size() == std::size_t(d.n),
      "hfisher::nn::to_device", "inconsistent dataset (n = ", d.n, ", features = ", d.features, ", ", d.x.size(),
      " values, ", d.y.size(), " labels)");
  DeviceData<Scalar, ExecSpace> o;
  o.classes = d.classes;
  o.x = decltype(o.x)("hfisher::nn::x", d.n, d.features);
  o.y = decltype(o.y)("hfisher::nn::y", d.n);
  auto xh = Kokkos::create_mirror_view(o.x);
  auto yh = Kokkos::create_mirror_view(o.y);
  for (int i = 0; i < d.n; ++i) {
    for (int j = 0; j < d.features; ++j) xh(i, j) = Scalar(d.x[std::size_t(i) * d.features + j]);
    yh(i) = d.y[i];
  }
  Kokkos::deep_copy(o.x, xh);
  Kokkos::deep_copy(o.y, yh);
  return o;
}

/// Rows idx[0..count) of data into X (count, features) and y (count).
template <class Scalar, class ExecSpace, class IdxView, class XV, class YV>
void gather(const DeviceData<Scalar, ExecSpace>& data, const IdxView& idx, int first, int count, const XV& X,
            const YV& y) {
  auto dx = data.x;
  auto dy = data.y;
  const int f = data.features();
  Kokkos::parallel_for(
      "hfisher::nn::gather", Kokkos::RangePolicy<ExecSpace>(0, count), KOKKOS_LAMBDA(const int b) {
        const int r = idx(first + b);
        for (int j = 0; j < f; ++j) X(b, j) = dx(r, j);
        y(b) = dy(r);
      });
}

/// Softmax cross-entropy on logits (B, C) with labels y (B): P receives the
/// probabilities, E = scale (P - onehot(y)) (dL/dlogits of scale * sum of
/// losses); returns the sum of -log p(y_b | x_b). Throws on a label outside
/// [0, C) or a non-finite loss.
/// mask (C), when not empty, restricts the softmax to classes with mask(c) != 0
/// (a per-task head); P and E are 0 on the other classes.
template <class ExecSpace, class LV, class YV, class PV, class EV, class MV>
double softmax_xent(const ExecSpace& space, const LV& logits, const YV& y, const PV& P, const EV& E,
                    typename PV::non_const_value_type scale, const MV& mask) {
  using S = typename PV::non_const_value_type;
  const int B = logits.extent(0), C = logits.extent(1);
  const bool masked = mask.extent(0) > 0;
  hfisher::detail::require(!masked || int(mask.extent(0)) == C, "hfisher::nn::softmax_xent", "class mask has ",
                           mask.extent(0), " entries for ", C, " classes");
  double loss = 0;
  int bad = 0;
  Kokkos::parallel_reduce(
      "hfisher::nn::softmax_xent", Kokkos::RangePolicy<ExecSpace>(space, 0, B),
      KOKKOS_LAMBDA(const int b, double& acc, int& nbad) {
        const int t = y(b);
        if (t < 0 || t >= C || (masked && mask(t) == 0)) {
          ++nbad;
          return;
        }
        S mx = logits(b, t);
        for (int c = 0; c < C; ++c)
          if (!masked || mask(c)) mx = logits(b, c) > mx ? logits(b, c) : mx;
        S sum = 0;
        for (int c = 0; c < C; ++c)
          if (!masked || mask(c)) sum += math::exp(logits(b, c) - mx);
        for (int c = 0; c < C; ++c) {
          P(b, c) = (!masked || mask(c)) ? math::exp(logits(b, c) - mx) / sum : S(0);
          E(b, c) = scale * (P(b, c) - (c == t ? S(1) : S(0)));
        }
        acc += double(math::log(sum) + mx - logits(b, t));
      },
      loss, Kokkos::Sum<int>(bad));
  hfisher::detail::require(bad == 0, "hfisher::nn::softmax_xent", bad, " label(s) outside [0, ", C, ")",
                           masked ? " or outside the class mask" : "");
  if (!std::isfinite(loss))
    throw NonFiniteError(
        "hfisher::nn::softmax_xent: the loss is not finite (NaN/Inf in the logits: training "
        "diverged?)");
  return loss;
}

template <class ExecSpace, class LV, class YV, class PV, class EV>
double softmax_xent(const ExecSpace& space, const LV& logits, const YV& y, const PV& P, const EV& E,
                    typename PV::non_const_value_type scale) {
  return softmax_xent(space, logits, y, P, E, scale, Kokkos::View<int*, typename PV::memory_space>());
}

namespace detail {

/// Fraction of `data` a model (MLP or Sequential) classifies correctly:
/// forward passes of `chunk` examples (views, no copies), the arg-max over
/// the classes with mask(c) != 0 (all when mask is empty).
template <class Model, class Scalar, class ExecSpace>
double accuracy_of(const Model& model, const DeviceData<Scalar, ExecSpace>& data, int chunk,
                   const Kokkos::View<int*, typename ExecSpace::memory_space>& mask) {
  using Matrix = typename Model::Matrix;
  hfisher::detail::require(chunk >= 1, "hfisher::nn::accuracy", "chunk = ", chunk, " (must be >= 1)");
  const bool masked = mask.extent(0) > 0;
  typename Model::Cache c;
  const int n = data.size();
  long correct = 0;
  for (int first = 0; first < n; first += chunk) {
    const int cnt = std::min(chunk, n - first);
    // rows of a LayoutRight view are contiguous: a view, no copy
    const Matrix X = Kokkos::subview(data.x, Kokkos::make_pair(first, first + cnt), Kokkos::ALL());
    auto logits = model.forward(X, c);
    auto y = data.y;
    const int C = model.outputs();
    long part = 0;
    Kokkos::parallel_reduce(
        "hfisher::nn::accuracy", Kokkos::RangePolicy<ExecSpace>(0, cnt),
        KOKKOS_LAMBDA(const int b, long& acc) {
          int best = -1;
          for (int k = 0; k < C; ++k)
            if ((!masked || mask(k)) && (best < 0 || logits(b, k) > logits(b, best))) best = k;
          if (best == y(first + b)) ++acc;
        },
        part);
    correct += part;
  }
  return n > 0 ? double(correct) / n : 0.0;
}

}  // namespace detail

template <class Scalar, class ExecSpace = DefaultExec>
class MLP {
 public:
  using exec_space = ExecSpace;
  using mem_space = typename ExecSpace::memory_space;
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, mem_space>;  ///< (rows, cols)
  using Vector = Kokkos::View<Scalar*, mem_space>;
  using Labels = Kokkos::View<int*, mem_space>;

  /// Per-batch activations: a[l] (B, in_l + 1) homogeneous inputs of layer l,
  /// z[l] (B, out_l) its outputs before the activation (z.back() = logits),
  /// g[l] (B, out_l) the gradient with respect to z[l] of the last backward;
  /// P, E (B, outputs) the probabilities and dL/dlogits of loss_grad. Kept
  /// between batches of the same size (no allocation per step).
  struct Cache {
    std::vector<Matrix> a, z, g, h;
    Matrix P, E;
    int batch = 0;
  };

  MLP() = default;
  /// widths = {inputs, hidden..., outputs}; weights ~ N(0, 2/in) (ReLU) or
  /// N(0, 1/in) (tanh) from a seeded host generator, biases 0.
  explicit MLP(const std::vector<int>& widths, Activation act = Activation::ReLU, std::uint64_t seed = 1)
      : widths_(widths), act_(act) {
    constexpr const char* where = "hfisher::nn::MLP";
    hfisher::detail::require(widths.size() >= 2, where,
                             "a model needs at least one layer (widths = {inputs, ..., outputs}), got ", widths.size(),
                             " width(s)");
    long off = 0;
    for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
      hfisher::detail::require(widths[l] >= 1 && widths[l + 1] >= 1, where, "width ", (widths[l] < 1 ? l : l + 1),
                               " is not positive");
      LayerShape s;
      s.in = widths[l];
      s.out = widths[l + 1];
      s.offset = off;
      off += s.size();
      layers_.push_back(s);
    }
    theta_ = Vector("hfisher::nn::theta", off);
    auto h = Kokkos::create_mirror_view(theta_);
    // He (ReLU) or Glorot-style (tanh) normal weights, zero biases; the
    // counter-based normal gives the same weights with every standard library
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const auto& s = layers_[l];
      const double sd = std::sqrt((act == Activation::ReLU ? 2.0 : 1.0) / s.in);
      for (int i = 0; i < s.out; ++i)
        for (int j = 0; j <= s.in; ++j)
          h(s.offset + long(i) * s.cols() + j) =
              j < s.in ? Scalar(sd * random::normal(seed, random::init_stream + l, std::uint64_t(i) * s.in + j))
                       : Scalar(0);
    }
    Kokkos::deep_copy(theta_, h);
  }

  int num_layers() const { return int(layers_.size()); }
  const std::vector<LayerShape>& layers() const { return layers_; }
  const std::vector<int>& widths() const { return widths_; }
  Activation activation() const { return act_; }
  long num_params() const { return long(theta_.extent(0)); }
  int inputs() const { return widths_.front(); }
  int outputs() const { return widths_.back(); }
  /// The flat parameter vector (shared, not a copy).
  const Vector& params() const { return theta_; }
  /// Sets every parameter from theta (num_params() entries in params()
  /// layout: [W | b] row-major per layer, layers in order; copied). A wrong
  /// length or a non-finite value is an error and leaves the model unchanged.
  void set_params(const Vector& theta) {
    constexpr const char* where = "hfisher::nn::MLP::set_params";
    hfisher::detail::require(long(theta.extent(0)) == num_params(), where, "theta has ", theta.extent(0),
                             " entries, the model has ", num_params(), " parameters");
    using U2 = Kokkos::View<const Scalar**, Kokkos::LayoutRight, mem_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    hfisher::detail::check_finite_matrix(ExecSpace(), U2(theta.data(), 1, theta.extent(0)), where, "theta");
    Kokkos::deep_copy(theta_, theta);
  }
  /// W~_l (out, in + 1) as a view into params().
  Matrix weight(int l) const { return block(theta_, l); }
  /// The same block of any flat vector of num_params() entries.
  Matrix block(const Vector& flat, int l) const {
    const auto& s = layers_.at(l);
    return Matrix(flat.data() + s.offset, s.out, s.cols());
  }

  /// Forward pass of X (B, inputs); returns the logits (B, outputs), which
  /// live in the cache.
  Matrix forward(const Matrix& X, Cache& c) const {
    constexpr const char* where = "hfisher::nn::MLP::forward";
    hfisher::detail::require(num_layers() > 0, where, "the model has no layers");
    hfisher::detail::require(int(X.extent(1)) == inputs(), where, "data of the wrong width: X has ", X.extent(1),
                             " columns, the model takes ", inputs(), " inputs");
    const int B = X.extent(0);
    prepare(c, B);
    ExecSpace space;
    auto a0 = c.a[0];
    const int in0 = inputs();
    Kokkos::parallel_for(
        "hfisher::nn::input", Kokkos::RangePolicy<ExecSpace>(space, 0, B), KOKKOS_LAMBDA(const int b) {
          for (int j = 0; j < in0; ++j) a0(b, j) = X(b, j);
          a0(b, in0) = Scalar(1);
        });
    for (int l = 0; l < num_layers(); ++l) {
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), c.a[l], weight(l), Scalar(0), c.z[l]);
      if (l + 1 < num_layers()) {
        auto z = c.z[l];
        auto an = c.a[l + 1];
        const int w = layers_[l].out;
        const bool relu = act_ == Activation::ReLU;
        Kokkos::parallel_for(
            "hfisher::nn::activation", Kokkos::RangePolicy<ExecSpace>(space, 0, B), KOKKOS_LAMBDA(const int b) {
              for (int j = 0; j < w; ++j)
                an(b, j) = relu ? (z(b, j) > Scalar(0) ? z(b, j) : Scalar(0)) : math::tanh(z(b, j));
              an(b, w) = Scalar(1);
            });
      }
    }
    return c.z.back();
  }

  /// Backward pass from E = dL/dlogits (B, outputs) of the batch last passed
  /// to forward(): fills c.g; when grad has num_params() entries, adds
  /// scale * sum_b g_b a~_b^T into each layer's block of grad (beta = 1).
  void backward(Cache& c, const Matrix& E, const Vector& grad, Scalar scale) const {
    constexpr const char* where = "hfisher::nn::MLP::backward";
    const int B = c.batch;
    hfisher::detail::require(B > 0 && int(E.extent(0)) == B && int(E.extent(1)) == outputs(), where, "E is ",
                             E.extent(0), "x", E.extent(1), ", expected ", B, "x", outputs(),
                             " (the last forward batch)");
    const bool with_grad = grad.extent(0) > 0;
    hfisher::detail::require(!with_grad || long(grad.extent(0)) == num_params(), where, "grad has ", grad.extent(0),
                             " entries, the model has ", num_params(), " parameters");
    ExecSpace space;
    Kokkos::deep_copy(space, c.g.back(), E);
    for (int l = num_layers() - 1; l >= 0; --l) {
      if (with_grad)
        kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, scale, c.g[l], c.a[l], Scalar(1),
                                        block(grad, l));
      if (l == 0) break;
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), c.g[l], weight(l), Scalar(0), c.h[l]);
      auto h = c.h[l];
      auto z = c.z[l - 1];
      auto g = c.g[l - 1];
      const int w = layers_[l].in;
      const bool relu = act_ == Activation::ReLU;
      Kokkos::parallel_for(
          "hfisher::nn::activation_grad", Kokkos::RangePolicy<ExecSpace>(space, 0, B), KOKKOS_LAMBDA(const int b) {
            for (int j = 0; j < w; ++j) g(b, j) = h(b, j) * activation_slope(relu, z(b, j));
          });
    }
  }

  /// Mean softmax cross-entropy of (X, y) and its gradient (overwrites grad,
  /// num_params() entries). Returns the mean loss.
  double loss_grad(const Matrix& X, const Labels& y, const Vector& grad, Cache& c, const Labels& mask = {}) const {
    hfisher::detail::require(y.extent(0) == X.extent(0), "hfisher::nn::MLP::loss_grad", "X has ", X.extent(0),
                             " rows but y has ", y.extent(0), " labels");
    auto logits = forward(X, c);
    const int B = X.extent(0);
    ExecSpace space;
    const double loss = softmax_xent(space, logits, y, c.P, c.E, Scalar(1) / Scalar(B), mask);
    Kokkos::deep_copy(grad, Scalar(0));
    backward(c, c.E, grad, Scalar(1));
    return loss / B;
  }

  /// Fraction of correctly classified examples (forward in chunks).
  /// mask (outputs), when not empty, restricts the prediction to classes
  /// with mask(c) != 0 (a per-task head).
  double accuracy(const DeviceData<Scalar, ExecSpace>& data, int chunk = 1000, const Labels& mask = {}) const {
    return detail::accuracy_of(*this, data, chunk, mask);
  }

  /// Versioned binary file (widths, activation, theta), written atomically
  /// with a checksum trailer (io::atomic_write_sealed).
  void save(const std::string& path) const {
    hfisher::detail::require(num_layers() > 0, "hfisher::nn::MLP::save", "the model has no layers");
    io::atomic_write_sealed(path, "hfisher::nn::MLP::save", [&](std::ostream& o) { write(o); });
  }
  static MLP load(const std::string& path) {
    io::SealedFile f(path, "hfisher::nn::MLP::load");  // checksum verified first
    auto m = read(f.stream(), path);
    f.expect_end();
    return m;
  }
  /// The same format on a stream (for checkpoints that embed a model).
  void write(std::ostream& o) const {
    io::put_header(o, magic_arr(), 1, sizeof(Scalar));
    io::put(o, std::int32_t(act_ == Activation::ReLU ? 0 : 1));
    io::put(o, std::int32_t(widths_.size()));
    for (int w : widths_) io::put(o, std::int32_t(w));
    io::put_view(o, theta_);
    o.write(magic(), 8);
  }
  static MLP read(std::istream& i, const std::string& path) {
    constexpr const char* where = "hfisher::nn::MLP::load";
    io::expect_header(i, magic_arr(), 1, sizeof(Scalar), path, where, "an hfisher MLP file");
    const int act = io::get<std::int32_t>(i, path, where), nw = io::get<std::int32_t>(i, path, where);
    hfisher::detail::require((act == 0 || act == 1) && nw >= 2 && nw <= 64, where, path, ": corrupt header");
    std::vector<int> w(nw);
    for (auto& x : w) {
      x = io::get<std::int32_t>(i, path, where);
      hfisher::detail::require(x >= 1 && x <= (1 << 24), where, path, ": corrupt width ", x);
    }
    unsigned long long params = 0;
    for (int l = 0; l + 1 < nw; ++l) params += (static_cast<unsigned long long>(w[l]) + 1) * w[l + 1];
    io::require_available(i, params * sizeof(Scalar), path, where);  // before the weights are allocated
    MLP m(w, act == 0 ? Activation::ReLU : Activation::Tanh, 0);
    io::get_view(i, m.theta_, path, where);
    io::expect_magic(i, magic_arr(), path, where, "complete (the file is truncated)");
    return m;
  }

 private:
  static const char (&magic_arr())[8] {
    static const char m[8] = {'H', 'F', 'M', 'L', 'P', '\0', '\0', '\1'};
    return m;
  }
  static const char* magic() { return magic_arr(); }

  void prepare(Cache& c, int B) const {
    if (c.batch == B && int(c.a.size()) == num_layers()) return;
    const int L = num_layers();
    c.a.resize(L);
    c.z.resize(L);
    c.g.resize(L);
    c.h.resize(L);
    for (int l = 0; l < L; ++l) {
      const auto& s = layers_[l];
      c.a[l] = Matrix("hfisher::nn::a", B, s.cols());
      c.z[l] = Matrix("hfisher::nn::z", B, s.out);
      c.g[l] = Matrix("hfisher::nn::g", B, s.out);
      c.h[l] = Matrix("hfisher::nn::h", B, s.cols());
    }
    c.P = Matrix("hfisher::nn::P", B, outputs());
    c.E = Matrix("hfisher::nn::E", B, outputs());
    c.batch = B;
  }

  std::vector<int> widths_;
  std::vector<LayerShape> layers_;
  Activation act_ = Activation::ReLU;
  Vector theta_;
};

}  // namespace nn
}  // namespace hfisher
