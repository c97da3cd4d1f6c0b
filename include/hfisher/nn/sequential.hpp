#pragma once
/// \file sequential.hpp
/// \brief Sequential: a network of convolution, pooling, activation, layer
/// normalization, linear, token- and position-embedding and self-attention
/// layers with residual blocks, on channels-last images or token sequences
/// (nn/conv.hpp, nn/attention.hpp, nn/embedding.hpp), forward and backward
/// on any backend, with per-example capture of what the Fisher needs.
///
/// The conventions are the MLP's: parameters live in one flat vector theta,
/// layer l's block W~_l = [W_l | b_l] (rows, cols) row-major at
/// layers()[l].offset. A convolution's block is (out_channels, K + 1) for K
/// inputs per patch; a linear layer is a 1 x 1 convolution of the flattened
/// (channels-last) input, one position. The per-example gradient of a
/// parameterized layer is sum_t g_t a~_t^T over its T output positions, with
/// a~_t the homogeneous patch (Cache::patches) and g_t the gradient of the
/// loss with respect to the layer's output at t (output_grads): T = 1 makes
/// it the MLP's rank-one g a~^T.

#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/math.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/kernels/matmul.hpp>
#include <hfisher/nn/attention.hpp>
#include <hfisher/nn/conv.hpp>
#include <hfisher/nn/embedding.hpp>
#include <hfisher/nn/mlp.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace hfisher {
namespace nn {

/// One layer of a Sequential, as the user describes it (the input shape of
/// each layer follows from the one before).
struct LayerSpec {
  // appended only: the integers are stored in saved models
  enum class Kind {
    Conv2D,
    Linear,
    MaxPool,
    AvgPool,
    ReLU,
    Tanh,
    GELU,
    LayerNorm,
    ResidualBegin,
    ResidualEnd,
    PositionEmbedding,
    Attention,
    CausalAttention,
    TokenEmbedding
  };
  Kind kind = Kind::ReLU;
  int out = 0;      ///< Conv2D, token embedding: output channels; Linear: output features; attention: heads
  int kernel = 1;   ///< Conv2D, pooling: window size (square); token embedding: vocabulary size
  int stride = 1;   ///< Conv2D, pooling
  int padding = 0;  ///< Conv2D: zeros on every side

  static LayerSpec conv(int out_channels, int kernel, int stride = 1, int padding = 0) {
    return {Kind::Conv2D, out_channels, kernel, stride, padding};
  }
  /// A dense layer of the flattened input.
  static LayerSpec linear(int out) { return {Kind::Linear, out, 1, 1, 0}; }
  /// Pooling windows of kernel x kernel; stride 0 means stride = kernel.
  static LayerSpec max_pool(int kernel, int stride = 0) {
    return {Kind::MaxPool, 0, kernel, stride ? stride : kernel, 0};
  }
  static LayerSpec avg_pool(int kernel, int stride = 0) {
    return {Kind::AvgPool, 0, kernel, stride ? stride : kernel, 0};
  }
  static LayerSpec relu() { return {Kind::ReLU, 0, 1, 1, 0}; }
  static LayerSpec tanh() { return {Kind::Tanh, 0, 1, 1, 0}; }
  /// GELU, x Phi(x) with Phi the standard normal CDF (the erf form, not the
  /// tanh approximation).
  static LayerSpec gelu() { return {Kind::GELU, 0, 1, 1, 0}; }
  /// Layer normalization over the channels at every position (over all
  /// features of a flat input): (x - mean) / sqrt(var + layer_norm_eps),
  /// the variance the biased one, as PyTorch's. It has no gain and bias of
  /// its own: a linear layer after it absorbs them exactly (W (g * y + c) + b
  /// = (W diag(g)) y + (W c + b)), so every parameter stays in a K-FAC
  /// block. Needs at least 2 channels.
  static LayerSpec layer_norm() { return {Kind::LayerNorm, 0, 1, 1, 0}; }
  /// A residual block: the layers between residual_begin() and the matching
  /// residual_end() compute f(x) and the block outputs x + f(x). Blocks nest;
  /// f must keep the shape of x.
  static LayerSpec residual_begin() { return {Kind::ResidualBegin, 0, 1, 1, 0}; }
  static LayerSpec residual_end() { return {Kind::ResidualEnd, 0, 1, 1, 0}; }
  /// A learned embedding per position (token) and channel, added to the
  /// input: y_t = x_t + W~ [e_t; 1], a 1 x 1 convolution of the one-hot
  /// position, so its block is (channels, positions + 1) and its patches are
  /// the one-hot rows. Weights ~ N(0, 0.02^2), bias 0.
  static LayerSpec position_embedding() { return {Kind::PositionEmbedding, 0, 1, 1, 0}; }
  /// The lookup of integer token ids: the input holds one id per position
  /// (1 channel; ids 0..vocab-1 stored as exact integers), and token t
  /// becomes y_t = W~ [e_id; 1], `width` channels: a 1 x 1 convolution of
  /// the one-hot id, so its block is (width, vocab + 1) and its patches are
  /// the one-hot rows. It must be the first layer (ids carry no gradient);
  /// forward refuses an entry that is not an id, naming it. Weights ~ N(0,
  /// 0.02^2), bias 0. The patches take B T (vocab + 1) scalars per batch.
  static LayerSpec token_embedding(int vocab, int width) { return {Kind::TokenEmbedding, width, vocab, 1, 0}; }
  /// The core of multi-head self-attention over the height x width
  /// positions as tokens: 3 d input channels per token [q | k | v], d output
  /// channels, softmax(q k^T / sqrt(d / heads)) v per head; causal masks
  /// keys after the query. No parameters: the projections are the 1 x 1
  /// convolutions around it (multi_head_attention).
  static LayerSpec attention(int heads, bool causal = false) {
    return {causal ? Kind::CausalAttention : Kind::Attention, heads, 1, 1, 0};
  }
};

/// Multi-head self-attention of d_model channels per token: the Q, K, V
/// projection (a 1 x 1 convolution to 3 d_model channels), the attention
/// core, the output projection (1 x 1 to d_model). Append it to a layer list.
inline std::vector<LayerSpec> multi_head_attention(int d_model, int heads, bool causal = false) {
  return {LayerSpec::conv(3 * d_model, 1), LayerSpec::attention(heads, causal), LayerSpec::conv(d_model, 1)};
}

/// The epsilon of LayerSpec::layer_norm, PyTorch's default.
constexpr double layer_norm_eps = 1e-5;

namespace detail {

/// The activation `k` (ReLU, Tanh or GELU) at x.
template <class Scalar>
KOKKOS_INLINE_FUNCTION Scalar activation_value(LayerSpec::Kind k, Scalar x) {
  if (k == LayerSpec::Kind::ReLU) return x > Scalar(0) ? x : Scalar(0);
  if (k == LayerSpec::Kind::Tanh) return math::tanh(x);
  return Scalar(0.5) * x * (Scalar(1) + math::erf(x * Scalar(0.70710678118654752440)));  // x Phi(x)
}

/// Its derivative at x: GELU's is Phi(x) + x phi(x).
template <class Scalar>
KOKKOS_INLINE_FUNCTION Scalar activation_derivative(LayerSpec::Kind k, Scalar x) {
  if (k != LayerSpec::Kind::GELU) return activation_slope(k == LayerSpec::Kind::ReLU, x);
  const Scalar Phi = Scalar(0.5) * (Scalar(1) + math::erf(x * Scalar(0.70710678118654752440)));
  return Phi + x * Scalar(0.39894228040143267794) * math::exp(Scalar(-0.5) * x * x);
}

/// y = activation k of x, elementwise on (B, F) matrices.
template <class Exec, class XV, class YV>
void activate(const Exec& space, LayerSpec::Kind k, const XV& x, const YV& y) {
  const long F = x.extent(1);
  Kokkos::parallel_for(
      "hfisher::nn::activate", Kokkos::RangePolicy<Exec>(space, 0, long(x.extent(0)) * F), KOKKOS_LAMBDA(const long r) {
        const long b = r / F, j = r % F;
        y(b, j) = activation_value(k, x(b, j));
      });
}

/// dx = dy * slope(x), elementwise.
template <class Exec, class XV, class YV, class DV>
void activate_backward(const Exec& space, LayerSpec::Kind k, const XV& x, const YV& dy, const DV& dx) {
  const long F = x.extent(1);
  Kokkos::parallel_for(
      "hfisher::nn::activate_backward", Kokkos::RangePolicy<Exec>(space, 0, long(x.extent(0)) * F),
      KOKKOS_LAMBDA(const long r) {
        const long b = r / F, j = r % F;
        dx(b, j) = dy(b, j) * activation_derivative(k, x(b, j));
      });
}

/// z = x + y, elementwise on (B, F) matrices.
template <class Exec, class XV, class YV, class ZV>
void add(const Exec& space, const XV& x, const YV& y, const ZV& z) {
  const long F = x.extent(1);
  Kokkos::parallel_for(
      "hfisher::nn::add", Kokkos::RangePolicy<Exec>(space, 0, long(x.extent(0)) * F), KOKKOS_LAMBDA(const long r) {
        const long b = r / F, j = r % F;
        z(b, j) = x(b, j) + y(b, j);
      });
}

/// Mean and 1 / sqrt(var + layer_norm_eps) of the C entries from x[0] (two
/// passes: the mean, then the squared deviations).
template <class Scalar, class Read>
KOKKOS_INLINE_FUNCTION void layer_norm_moments(int C, const Read& x, Scalar& mean, Scalar& inv) {
  Scalar s = Scalar(0);
  for (int c = 0; c < C; ++c) s += x(c);
  mean = s / Scalar(C);
  Scalar v = Scalar(0);
  for (int c = 0; c < C; ++c) v += (x(c) - mean) * (x(c) - mean);
  inv = Scalar(1) / math::sqrt(v / Scalar(C) + Scalar(layer_norm_eps));
}

/// y = layer_norm(x) over each run of C contiguous channels of (B, F).
template <class Exec, class XV, class YV>
void layer_norm(const Exec& space, int C, const XV& x, const YV& y) {
  using Scalar = typename YV::non_const_value_type;
  const long P = long(x.extent(1)) / C;
  Kokkos::parallel_for(
      "hfisher::nn::layer_norm", Kokkos::RangePolicy<Exec>(space, 0, long(x.extent(0)) * P),
      KOKKOS_LAMBDA(const long r) {
        const long b = r / P, o = (r % P) * C;
        Scalar mean, inv;
        layer_norm_moments(
            C, [&](int c) { return x(b, o + c); }, mean, inv);
        for (int c = 0; c < C; ++c) y(b, o + c) = (x(b, o + c) - mean) * inv;
      });
}

/// dx = inv (dy - mean(dy) - y mean(dy y)) for y = layer_norm(x) over each
/// run of C channels (inv recomputed from x).
template <class Exec, class XV, class YV, class DYV, class DXV>
void layer_norm_backward(const Exec& space, int C, const XV& x, const YV& y, const DYV& dy, const DXV& dx) {
  using Scalar = typename DXV::non_const_value_type;
  const long P = long(x.extent(1)) / C;
  Kokkos::parallel_for(
      "hfisher::nn::layer_norm_backward", Kokkos::RangePolicy<Exec>(space, 0, long(x.extent(0)) * P),
      KOKKOS_LAMBDA(const long r) {
        const long b = r / P, o = (r % P) * C;
        Scalar mean, inv;
        layer_norm_moments(
            C, [&](int c) { return x(b, o + c); }, mean, inv);
        Scalar m1 = Scalar(0), m2 = Scalar(0);
        for (int c = 0; c < C; ++c) {
          m1 += dy(b, o + c);
          m2 += dy(b, o + c) * y(b, o + c);
        }
        m1 /= Scalar(C);
        m2 /= Scalar(C);
        for (int c = 0; c < C; ++c) dx(b, o + c) = inv * (dy(b, o + c) - m1 - y(b, o + c) * m2);
      });
}

}  // namespace detail

template <class Scalar, class ExecSpace = DefaultExec>
class Sequential {
 public:
  using exec_space = ExecSpace;
  using mem_space = typename ExecSpace::memory_space;
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, mem_space>;
  using Vector = Kokkos::View<Scalar*, mem_space>;
  using Labels = Kokkos::View<int*, mem_space>;
  using Index = Kokkos::View<int**, Kokkos::LayoutRight, mem_space>;

  /// Per-batch activations, kept between batches of the same size: x[i]
  /// (B, features) the input of layer i (x[0] the caller's X, x.back() the
  /// logits), d[i] the
  /// gradient of the loss with respect to x[i] after backward (d[0] is not
  /// computed); per parameterized layer p: A[p] (B * T, K + 1) its patches
  /// and dA[p] scratch of the same shape; per max-pooling layer the argmax;
  /// per attention layer its weights P (B heads T, T), scratch dS of the
  /// same shape, and the per-head q, k, v blocks with scratch (attw).
  struct Cache {
    std::vector<Matrix> x, d, A, dA, att, datt;
    std::vector<Vector> attw;
    std::vector<Index> arg;
    Matrix P, E;
    int batch = 0;
  };

  Sequential() = default;
  /// A network on images of shape `input` (a flat feature vector is
  /// {features, 1, 1}). Weights ~ N(0, 2 / fan_in), or N(0, 1 / fan_in) when
  /// the next activation is tanh, from a seeded host generator; biases 0.
  Sequential(ImageShape input, const std::vector<LayerSpec>& specs, std::uint64_t seed = 1) {
    const long off = plan(input, specs);
    theta_ = Vector("hfisher::nn::theta", off);
    auto h = Kokkos::create_mirror_view(theta_);
    // as MLP: the counter-based normal, one stream per parameterized layer
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      const int p = steps_[i].param;
      if (p < 0) continue;
      bool tanh_next = false;
      for (std::size_t j = i + 1; j < steps_.size() && steps_[j].param < 0; ++j)
        if (steps_[j].kind == LayerSpec::Kind::Tanh || steps_[j].kind == LayerSpec::Kind::ReLU ||
            steps_[j].kind == LayerSpec::Kind::GELU) {
          tanh_next = steps_[j].kind == LayerSpec::Kind::Tanh;
          break;
        }
      const auto& s = blocks_[p];
      const bool embedding =
          steps_[i].kind == LayerSpec::Kind::PositionEmbedding || steps_[i].kind == LayerSpec::Kind::TokenEmbedding;
      const double sd = embedding ? 0.02 : std::sqrt((tanh_next ? 1.0 : 2.0) / s.in);
      for (int r = 0; r < s.out; ++r)
        for (int j = 0; j <= s.in; ++j)
          h(s.offset + long(r) * s.cols() + j) =
              j < s.in ? Scalar(sd * random::normal(seed, random::init_stream + p, std::uint64_t(r) * s.in + j))
                       : Scalar(0);
    }
    Kokkos::deep_copy(theta_, h);
  }

  /// Versioned binary file (input shape, layer specs, theta), written
  /// atomically with a checksum trailer (io::atomic_write_sealed), as
  /// MLP::save.
  void save(const std::string& path) const {
    hfisher::detail::require(!steps_.empty(), "hfisher::nn::Sequential::save", "the model has no layers");
    const std::string problem = storable_problem(input_, specs_);
    hfisher::detail::require(problem.empty(), "hfisher::nn::Sequential::save", "the model cannot be saved: its ",
                             problem,
                             " lies outside what load accepts (docs/files.md), so the file could not be "
                             "read back; nothing was written");
    io::atomic_write_sealed(path, "hfisher::nn::Sequential::save", [&](std::ostream& o) { write(o); });
  }
  static Sequential load(const std::string& path) {
    io::SealedFile f(path, "hfisher::nn::Sequential::load");  // checksum verified first
    auto m = read(f.stream(), path);
    f.expect_end();
    return m;
  }
  /// The same format on a stream (for checkpoints that embed a model).
  void write(std::ostream& o) const {
    io::put_header(o, magic_arr(), 1, sizeof(Scalar));
    io::put(o, std::int32_t(input_.channels));
    io::put(o, std::int32_t(input_.height));
    io::put(o, std::int32_t(input_.width));
    io::put(o, std::int32_t(specs_.size()));
    for (const auto& sp : specs_) {
      io::put(o, std::int32_t(sp.kind));
      io::put(o, std::int32_t(sp.out));
      io::put(o, std::int32_t(sp.kernel));
      io::put(o, std::int32_t(sp.stride));
      io::put(o, std::int32_t(sp.padding));
    }
    io::put_view(o, theta_);
    o.write(magic(), 8);
  }
  /// Reads write()'s format. Every field is range-checked before use, the
  /// model is checked as the constructor checks it (the error names the
  /// file), and the parameter count against the bytes left before theta is
  /// allocated.
  static Sequential read(std::istream& i, const std::string& path) {
    constexpr const char* where = "hfisher::nn::Sequential::load";
    io::expect_header(i, magic_arr(), 1, sizeof(Scalar), path, where, "an hfisher Sequential file");
    ImageShape in;
    in.channels = io::get<std::int32_t>(i, path, where);
    in.height = io::get<std::int32_t>(i, path, where);
    in.width = io::get<std::int32_t>(i, path, where);
    std::string problem = storable_problem(in, {});
    hfisher::detail::require(problem.empty(), where, path, ": corrupt ", problem);
    const int ns = io::get<std::int32_t>(i, path, where);
    hfisher::detail::require(ns >= 1 && ns <= max_layers, where, path, ": corrupt layer count ", ns);
    std::vector<LayerSpec> specs(ns);
    for (int l = 0; l < ns; ++l) {
      auto& sp = specs[l];
      const int kind = io::get<std::int32_t>(i, path, where);
      sp.out = io::get<std::int32_t>(i, path, where);
      sp.kernel = io::get<std::int32_t>(i, path, where);
      sp.stride = io::get<std::int32_t>(i, path, where);
      sp.padding = io::get<std::int32_t>(i, path, where);
      hfisher::detail::require(kind >= 0 && kind <= int(LayerSpec::Kind::TokenEmbedding), where, path,
                               ": corrupt layer ", l, " (unknown kind ", kind, ")");
      sp.kind = LayerSpec::Kind(kind);
      problem = spec_problem(sp, l);
      hfisher::detail::require(problem.empty(), where, path, ": corrupt ", problem);
    }
    Sequential m;
    long params = 0;
    try {
      params = m.plan(in, specs);
    } catch (const Error& e) {
      throw Error(hfisher::detail::concat(where, ": ", path, " describes a model that cannot be built: ", e.what()));
    }
    io::require_available(i, static_cast<unsigned long long>(params) * sizeof(Scalar), path, where);
    m.theta_ = Vector(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::nn::theta"), params);
    io::get_view(i, m.theta_, path, where);
    io::expect_magic(i, magic_arr(), path, where, "complete (the file is truncated)");
    return m;
  }

 private:
  static const char (&magic_arr())[8] {
    static const char mg[8] = {'H', 'F', 'S', 'E', 'Q', '\0', '\0', '\1'};
    return mg;
  }
  static const char* magic() { return magic_arr(); }

  // the file format's bounds, shared by save (which refuses a model beyond
  // them) and read: they keep every derived size (channels x kernel^2,
  // positions) inside an int
  static constexpr int max_dim = 1 << 16, max_kernel = 64, max_layers = 4096;
  static std::string spec_problem(const LayerSpec& sp, int l) {
    if (sp.kind == LayerSpec::Kind::TokenEmbedding) {
      if (sp.out >= 1 && sp.out <= max_dim && sp.kernel >= 1 && sp.kernel <= max_dim && sp.stride == 1 &&
          sp.padding == 0)
        return {};
      return hfisher::detail::concat("layer ", l, " (token embedding of width ", sp.out, " over a vocabulary of ",
                                     sp.kernel, ", stride ", sp.stride, ", padding ", sp.padding,
                                     "; the bounds are width and vocabulary 1..", max_dim, ", stride 1, padding 0)");
    }
    if (sp.out >= 0 && sp.out <= max_dim && sp.kernel >= 1 && sp.kernel <= max_kernel && sp.stride >= 1 &&
        sp.stride <= max_kernel && sp.padding >= 0 && sp.padding < max_kernel)
      return {};
    return hfisher::detail::concat("layer ", l, " (out ", sp.out, ", kernel ", sp.kernel, ", stride ", sp.stride,
                                   ", padding ", sp.padding, "; the bounds are out <= ", max_dim,
                                   ", kernel and stride 1..", max_kernel, ", padding 0..", max_kernel - 1, ")");
  }
  /// Empty when the input shape and every layer lie inside the bounds, else
  /// what does not.
  static std::string storable_problem(const ImageShape& in, const std::vector<LayerSpec>& specs) {
    if (!(in.channels >= 1 && in.channels <= max_dim && in.height >= 1 && in.height <= max_dim && in.width >= 1 &&
          in.width <= max_dim && in.features() <= (1L << 30)))
      return hfisher::detail::concat("input shape ", in.channels, " x ", in.height, " x ", in.width, " (each side 1..",
                                     max_dim, ", at most 2^30 features)");
    if (int(specs.size()) > max_layers)
      return hfisher::detail::concat("layer count ", specs.size(), " (at most ", max_layers, ")");
    for (std::size_t l = 0; l < specs.size(); ++l) {
      auto p = spec_problem(specs[l], int(l));
      if (!p.empty()) return p;
    }
    return {};
  }

  /// The shape pass of the constructor (and of read): checks every layer and
  /// fills the steps, geometries and parameter blocks; returns the number of
  /// parameters. theta is not touched.
  long plan(ImageShape input, const std::vector<LayerSpec>& specs) {
    constexpr const char* where = "hfisher::nn::Sequential";
    input_ = input;
    specs_ = specs;
    hfisher::detail::require(!specs.empty(), where, "a model needs at least one layer");
    ImageShape cur = input;
    long off = 0;
    std::vector<int> open;  // steps of the residual blocks not yet closed
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const auto& sp = specs[i];
      const std::string at = std::string(where) + ": layer " + std::to_string(i);
      Step st;
      st.in = cur;
      switch (sp.kind) {
        case LayerSpec::Kind::Conv2D:
        case LayerSpec::Kind::Linear: {
          Conv2DShape c;
          c.in = sp.kind == LayerSpec::Kind::Linear ? ImageShape{int(cur.features()), 1, 1} : cur;
          c.out_channels = sp.out;
          c.kernel_h = c.kernel_w = sp.kernel;
          c.stride = sp.stride;
          c.padding = sp.padding;
          c.validate(at.c_str());
          add_parameterized(st, c, int(i), off);
          cur = c.out();
          break;
        }
        case LayerSpec::Kind::MaxPool:
        case LayerSpec::Kind::AvgPool: {
          PoolShape p;
          p.in = cur;
          p.kernel = sp.kernel;
          p.stride = sp.stride;
          p.validate(at.c_str());
          st.pool = p;
          if (sp.kind == LayerSpec::Kind::MaxPool) st.arg = max_pools_++;
          cur = p.out();
          break;
        }
        case LayerSpec::Kind::ReLU:
        case LayerSpec::Kind::Tanh:
        case LayerSpec::Kind::GELU:
          break;
        case LayerSpec::Kind::LayerNorm:
          hfisher::detail::require(cur.channels >= 2, at.c_str(), "layer_norm over ", cur.channels,
                                   " channel would output zeros; it needs at least 2 (input ", cur.channels, " x ",
                                   cur.height, " x ", cur.width, ")");
          break;
        case LayerSpec::Kind::PositionEmbedding: {
          // a 1 x 1 convolution of the one-hot position image (T channels)
          const long T = long(cur.height) * cur.width;
          hfisher::detail::require(T <= (1 << 15), at.c_str(), "position_embedding over ", T,
                                   " positions (at most 32768)");
          Conv2DShape c;
          c.in = ImageShape{int(T), cur.height, cur.width};
          c.out_channels = cur.channels;
          c.validate(at.c_str());
          add_parameterized(st, c, int(i), off);
          break;
        }
        case LayerSpec::Kind::TokenEmbedding: {
          // a 1 x 1 convolution of the one-hot id image (vocab channels)
          hfisher::detail::require(i == 0, at.c_str(), "token_embedding reads token ids, which only the model's input ",
                                   "holds: it must be the first layer");
          hfisher::detail::require(cur.channels == 1, at.c_str(), "token_embedding takes one token id per position; ",
                                   "the input has ", cur.channels, " channels (T ids are the shape {1, T, 1})");
          hfisher::detail::require(sp.kernel >= 1 && sp.kernel <= max_dim, at.c_str(), "token_embedding over a ",
                                   "vocabulary of ", sp.kernel, " (1..", max_dim, ")");
          Conv2DShape c;
          c.in = ImageShape{sp.kernel, cur.height, cur.width};
          c.out_channels = sp.out;
          c.validate(at.c_str());
          add_parameterized(st, c, int(i), off);
          cur.channels = sp.out;
          break;
        }
        case LayerSpec::Kind::Attention:
        case LayerSpec::Kind::CausalAttention: {
          const long T = long(cur.height) * cur.width;
          hfisher::detail::require(sp.out >= 1, at.c_str(), "attention with ", sp.out, " heads (must be >= 1)");
          hfisher::detail::require(cur.channels % 3 == 0 && (cur.channels / 3) % sp.out == 0, at.c_str(),
                                   "attention takes 3 d channels per token (q, k, v) with d divisible by the ", sp.out,
                                   " heads; the input has ", cur.channels);
          hfisher::detail::require(double(T) * T * sp.out < double(1 << 30), at.c_str(), "attention over ", T,
                                   " tokens with ", sp.out, " heads is too large");
          st.attn.tokens = int(T);
          st.attn.d = cur.channels / 3;
          st.attn.heads = sp.out;
          st.attn.causal = sp.kind == LayerSpec::Kind::CausalAttention;
          st.att = attentions_++;
          cur.channels = st.attn.d;
          break;
        }
        case LayerSpec::Kind::ResidualBegin:
          open.push_back(int(i));
          break;
        case LayerSpec::Kind::ResidualEnd: {
          hfisher::detail::require(!open.empty(), at.c_str(), "residual_end without a residual_begin before it");
          const int b = open.back();
          open.pop_back();
          const ImageShape& x = steps_[b].in;
          hfisher::detail::require(cur.channels == x.channels && cur.height == x.height && cur.width == x.width,
                                   at.c_str(), "the residual block from layer ", b, " changes the shape from ",
                                   x.channels, " x ", x.height, " x ", x.width, " to ", cur.channels, " x ", cur.height,
                                   " x ", cur.width, "; x + f(x) needs f to keep it");
          st.pair = b;
          steps_[b].pair = int(i);
          break;
        }
      }
      st.kind = sp.kind;
      st.out = cur;
      steps_.push_back(st);
    }
    hfisher::detail::require(open.empty(), where, "the residual_begin of layer ", open.empty() ? 0 : open.back(),
                             " has no residual_end");
    hfisher::detail::require(!convs_.empty(), where, "the model has no layer with parameters");
    return off;
  }

 public:
  /// Parameterized layers (convolutions, linear layers, token and position
  /// embeddings), in order: rows = out, cols = in + 1, offset into params().
  const std::vector<LayerShape>& layers() const { return blocks_; }
  int num_layers() const { return int(blocks_.size()); }
  /// Geometry of parameterized layer p (a linear layer: 1 x 1, one position;
  /// a position embedding: 1 x 1 of T one-hot channels at T positions; a
  /// token embedding: 1 x 1 of vocab one-hot channels at T positions).
  const Conv2DShape& geometry(int p) const { return convs_.at(p); }
  const std::vector<LayerSpec>& specs() const { return specs_; }
  ImageShape input_shape() const { return input_; }
  long num_params() const { return long(theta_.extent(0)); }
  int inputs() const { return int(input_.features()); }
  int outputs() const { return int(steps_.back().out.features()); }
  const Vector& params() const { return theta_; }
  /// Sets every parameter (num_params() finite entries; copied). A wrong
  /// length or a non-finite value is an error and leaves the model unchanged.
  void set_params(const Vector& theta) {
    constexpr const char* where = "hfisher::nn::Sequential::set_params";
    hfisher::detail::require(long(theta.extent(0)) == num_params(), where, "theta has ", theta.extent(0),
                             " entries, the model has ", num_params(), " parameters");
    using U2 = Kokkos::View<const Scalar**, Kokkos::LayoutRight, mem_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    hfisher::detail::check_finite_matrix(ExecSpace(), U2(theta.data(), 1, theta.extent(0)), where, "theta");
    Kokkos::deep_copy(theta_, theta);
  }
  /// W~_p (rows, cols) of parameterized layer p, a view into params().
  Matrix weight(int p) const { return block(theta_, p); }
  /// The same block of any flat vector of num_params() entries.
  Matrix block(const Vector& flat, int p) const {
    const auto& s = blocks_.at(p);
    return Matrix(flat.data() + s.offset, s.out, s.cols());
  }
  /// After forward: the patches a~ (B * T, K + 1) of parameterized layer p,
  /// row b * T + t for example b at output position t.
  Matrix patches(const Cache& c, int p) const { return c.A.at(p); }
  /// After backward: the gradient of the loss with respect to layer p's
  /// outputs (B * T, rows), rows ordered as patches().
  Matrix output_grads(const Cache& c, int p) const {
    const auto& d = c.d.at(param_step_.at(p) + 1);
    return Matrix(d.data(), long(c.batch) * convs_[p].positions(), convs_[p].out_channels);
  }

  /// Forward pass of X (B, inputs()); returns the logits (B, outputs()),
  /// which live in the cache.
  Matrix forward(const Matrix& X, Cache& c) const {
    constexpr const char* where = "hfisher::nn::Sequential::forward";
    hfisher::detail::require(int(X.extent(1)) == inputs(), where, "data of the wrong width: X has ", X.extent(1),
                             " columns, the model takes ", inputs(), " inputs (", input_.channels, " x ", input_.height,
                             " x ", input_.width, ")");
    const int B = X.extent(0);
    prepare(c, B);
    ExecSpace space;
    c.x[0] = X;  // the input is read, not copied
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      const auto& st = steps_[i];
      const auto& in = c.x[i];
      const auto& out = c.x[i + 1];
      switch (st.kind) {
        case LayerSpec::Kind::Conv2D:
        case LayerSpec::Kind::Linear: {
          const auto& g = convs_[st.param];
          detail::im2col(space, g, in, c.A[st.param]);
          const Matrix Z(out.data(), long(B) * g.positions(), g.out_channels);
          kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), c.A[st.param], weight(st.param),
                                          Scalar(0), Z);
          break;
        }
        case LayerSpec::Kind::MaxPool:
          detail::max_pool(space, st.pool, in, out, c.arg[st.arg]);
          break;
        case LayerSpec::Kind::AvgPool:
          detail::avg_pool(space, st.pool, in, out);
          break;
        case LayerSpec::Kind::ReLU:
        case LayerSpec::Kind::Tanh:
        case LayerSpec::Kind::GELU:
          detail::activate(space, st.kind, in, out);
          break;
        case LayerSpec::Kind::LayerNorm:
          detail::layer_norm(space, st.in.channels, in, out);
          break;
        case LayerSpec::Kind::ResidualBegin:
          Kokkos::deep_copy(space, out, in);
          break;
        case LayerSpec::Kind::ResidualEnd:
          detail::add(space, in, c.x[st.pair], out);
          break;
        case LayerSpec::Kind::PositionEmbedding:
          detail::position_patches(space, convs_[st.param].positions(), c.A[st.param]);
          detail::position_embed(space, convs_[st.param].positions(), in, weight(st.param), out);
          break;
        case LayerSpec::Kind::TokenEmbedding: {
          const int V = convs_[st.param].in.channels;
          const long bad = detail::first_non_token(space, V, in);
          if (bad >= 0) {
            const long T = in.extent(1);
            Scalar v{};
            Kokkos::deep_copy(v, Kokkos::subview(in, bad / T, bad % T));
            throw Error(hfisher::detail::concat(where, ": X(", bad / T, ", ", bad % T, ") = ", v,
                                                " is not a token id of layer 0 (token_embedding over a vocabulary of ",
                                                V, ": integers 0..", V - 1, ")"));
          }
          detail::token_patches(space, V, in, c.A[st.param]);
          detail::token_embed(space, in, weight(st.param), out);
          break;
        }
        case LayerSpec::Kind::Attention:
        case LayerSpec::Kind::CausalAttention:
          detail::attention_forward(space, st.attn, in, out, c.att[st.att], c.attw[st.att]);
          break;
      }
    }
    return c.x.back();
  }

  /// Backward pass from E = dL/dlogits (B, outputs()) of the batch last
  /// passed to forward(): fills c.d (and so output_grads); when grad has
  /// num_params() entries, adds scale * sum over examples and positions of
  /// g a~^T into each layer's block of grad (beta = 1).
  void backward(Cache& c, const Matrix& E, const Vector& grad, Scalar scale) const {
    constexpr const char* where = "hfisher::nn::Sequential::backward";
    const int B = c.batch;
    hfisher::detail::require(B > 0 && int(E.extent(0)) == B && int(E.extent(1)) == outputs(), where, "E is ",
                             E.extent(0), "x", E.extent(1), ", expected ", B, "x", outputs(),
                             " (the last forward batch)");
    const bool with_grad = grad.extent(0) > 0;
    hfisher::detail::require(!with_grad || long(grad.extent(0)) == num_params(), where, "grad has ", grad.extent(0),
                             " entries, the model has ", num_params(), " parameters");
    ExecSpace space;
    Kokkos::deep_copy(space, c.d.back(), E);
    for (int i = int(steps_.size()) - 1; i >= 0; --i) {
      const auto& st = steps_[i];
      const auto& dy = c.d[i + 1];
      const auto& dx = c.d[i];
      const bool need_dx = i > 0;
      switch (st.kind) {
        case LayerSpec::Kind::Conv2D:
        case LayerSpec::Kind::Linear: {
          const auto& g = convs_[st.param];
          const Matrix dZ(dy.data(), long(B) * g.positions(), g.out_channels);
          if (with_grad)
            kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, scale, dZ, c.A[st.param], Scalar(1),
                                            block(grad, st.param));
          if (need_dx) {
            kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), dZ, weight(st.param), Scalar(0),
                                            c.dA[st.param]);
            detail::col2im(space, g, c.dA[st.param], dx);
          }
          break;
        }
        case LayerSpec::Kind::MaxPool:
          if (need_dx) detail::max_pool_backward(space, st.pool, dy, c.arg[st.arg], dx);
          break;
        case LayerSpec::Kind::AvgPool:
          if (need_dx) detail::avg_pool_backward(space, st.pool, dy, dx);
          break;
        case LayerSpec::Kind::ReLU:
        case LayerSpec::Kind::Tanh:
        case LayerSpec::Kind::GELU:
          if (need_dx) detail::activate_backward(space, st.kind, c.x[i], dy, dx);
          break;
        case LayerSpec::Kind::LayerNorm:
          if (need_dx) detail::layer_norm_backward(space, st.in.channels, c.x[i], c.x[i + 1], dy, dx);
          break;
        // x + f(x): the gradient at the block's output reaches f's output
        // (here) and, through the skip, the block's input (at its begin,
        // from c.d[end + 1], which the rest of the backward pass leaves alone)
        case LayerSpec::Kind::ResidualEnd:
          Kokkos::deep_copy(space, dx, dy);
          break;
        case LayerSpec::Kind::ResidualBegin:
          if (need_dx) detail::add(space, dy, c.d[st.pair + 1], dx);
          break;
        case LayerSpec::Kind::PositionEmbedding:
          if (with_grad)
            detail::position_embed_grad(space, convs_[st.param].positions(), dy, scale, block(grad, st.param));
          if (need_dx) Kokkos::deep_copy(space, dx, dy);
          break;
        case LayerSpec::Kind::TokenEmbedding:  // the first layer: ids have no gradient
          if (with_grad) detail::token_embed_grad(space, c.x[i], dy, scale, block(grad, st.param));
          break;
        case LayerSpec::Kind::Attention:
        case LayerSpec::Kind::CausalAttention:
          if (need_dx)
            detail::attention_backward(space, st.attn, c.att[st.att], dy, dx, c.datt[st.att], c.attw[st.att]);
          break;
      }
    }
  }

  /// Mean softmax cross-entropy of (X, y) and its gradient (overwrites grad,
  /// num_params() entries). Returns the mean loss. mask as in MLP::loss_grad.
  double loss_grad(const Matrix& X, const Labels& y, const Vector& grad, Cache& c, const Labels& mask = {}) const {
    hfisher::detail::require(y.extent(0) == X.extent(0), "hfisher::nn::Sequential::loss_grad", "X has ", X.extent(0),
                             " rows but y has ", y.extent(0), " labels");
    auto logits = forward(X, c);
    const int B = X.extent(0);
    ExecSpace space;
    const double loss = softmax_xent(space, logits, y, c.P, c.E, Scalar(1) / Scalar(B), mask);
    Kokkos::deep_copy(grad, Scalar(0));
    backward(c, c.E, grad, Scalar(1));
    return loss / B;
  }

  /// Fraction of correctly classified examples (forward in chunks of `chunk`
  /// examples: the patch matrices grow with it). mask as in MLP::accuracy.
  double accuracy(const DeviceData<Scalar, ExecSpace>& data, int chunk = 256, const Labels& mask = {}) const {
    return detail::accuracy_of(*this, data, chunk, mask);
  }

 private:
  struct Step {
    LayerSpec::Kind kind = LayerSpec::Kind::ReLU;
    ImageShape in, out;
    int param = -1;  ///< index into convs_ / blocks_ (parameterized layers)
    int arg = -1;    ///< index into Cache::arg (max pooling)
    int pair = -1;   ///< the step of the matching residual_end / residual_begin
    int att = -1;    ///< index into Cache::att (attention)
    PoolShape pool;
    AttentionShape attn;
  };

  /// Registers step i as the next parameterized layer, of geometry c, its
  /// block at offset off (advanced past it).
  void add_parameterized(Step& st, const Conv2DShape& c, int i, long& off) {
    st.param = int(convs_.size());
    param_step_.push_back(i);
    convs_.push_back(c);
    LayerShape ls;
    ls.in = c.patch();
    ls.out = c.out_channels;
    ls.offset = off;
    off += ls.size();
    blocks_.push_back(ls);
  }

  void prepare(Cache& c, int B) const {
    if (c.batch == B && c.x.size() == steps_.size() + 1) return;
    c.x.assign(steps_.size() + 1, Matrix());
    c.d.assign(steps_.size() + 1, Matrix());
    c.A.assign(convs_.size(), Matrix());
    c.dA.assign(convs_.size(), Matrix());
    c.arg.assign(max_pools_, Index());
    c.att.assign(attentions_, Matrix());
    c.datt.assign(attentions_, Matrix());
    c.attw.assign(attentions_, Vector());
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      const auto& st = steps_[i];
      c.x[i + 1] = Matrix("hfisher::nn::x", B, st.out.features());
      c.d[i + 1] = Matrix("hfisher::nn::d", B, st.out.features());
      if (st.param >= 0) {
        const auto& g = convs_[st.param];
        c.A[st.param] = Matrix("hfisher::nn::patches", long(B) * g.positions(), g.cols());
        if (i > 0 && st.kind != LayerSpec::Kind::PositionEmbedding)
          c.dA[st.param] = Matrix("hfisher::nn::dpatches", long(B) * g.positions(), g.cols());
      }
      if (st.arg >= 0) c.arg[st.arg] = Index("hfisher::nn::argmax", B, st.out.features());
      if (st.att >= 0) {
        const long rows = long(B) * st.attn.heads * st.attn.tokens;
        c.att[st.att] = Matrix("hfisher::nn::attention", rows, st.attn.tokens);
        c.datt[st.att] = Matrix("hfisher::nn::dattention", rows, st.attn.tokens);
        c.attw[st.att] = Vector("hfisher::nn::attention_work", attention_work_size(st.attn, B));
      }
    }
    c.P = Matrix("hfisher::nn::P", B, outputs());
    c.E = Matrix("hfisher::nn::E", B, outputs());
    c.batch = B;
  }

  ImageShape input_;
  std::vector<LayerSpec> specs_;
  std::vector<Step> steps_;
  std::vector<Conv2DShape> convs_;
  std::vector<LayerShape> blocks_;
  std::vector<int> param_step_;
  int max_pools_ = 0;
  int attentions_ = 0;
  Vector theta_;
};

}  // namespace nn
}  // namespace hfisher
