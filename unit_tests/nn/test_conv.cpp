// Convolution, pooling and the Sequential model (nn/conv.hpp,
// nn/sequential.hpp) against direct loops on the host, gradients against
// central differences, the per-position capture against the gradient.

#include <hfisher/nn/optimizers.hpp>
#include <hfisher/nn/sequential.hpp>
#include <hfisher/nn/train.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include <fstream>
#include <sstream>

#include "../fuzz_helpers.hpp"
#include "../test_helpers.hpp"

using namespace hfisher_test;
using hfisher::nn::ImageShape;
using hfisher::nn::LayerSpec;

template <class C>
class ConvTest : public ::testing::Test {};
TYPED_TEST_SUITE(ConvTest, Configs, ConfigNames);

namespace {

template <class S, class E>
typename hfisher::nn::Sequential<S, E>::Matrix random_images(int B, long F, unsigned seed) {
  typename hfisher::nn::Sequential<S, E>::Matrix X("X", B, F);
  auto h = Kokkos::create_mirror_view(X);
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0, 1);
  for (int b = 0; b < B; ++b)
    for (long j = 0; j < F; ++j) h(b, j) = S(nd(g));
  Kokkos::deep_copy(X, h);
  return X;
}

// parameters drawn N(0, 1) (biases included, so the bias path is tested)
template <class Model>
void randomize(Model& m, unsigned seed) {
  typename Model::Vector t("t", m.num_params());
  auto h = Kokkos::create_mirror_view(t);
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0, 1);
  for (long i = 0; i < m.num_params(); ++i) h(i) = typename Model::Vector::non_const_value_type(nd(g));
  Kokkos::deep_copy(t, h);
  m.set_params(t);
}

}  // namespace

// one convolution layer against the direct sum over channels and kernel
// offsets (zero padding), at several strides and paddings
TYPED_TEST(ConvTest, ConvolutionMatchesDirectLoops) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  struct Case {
    ImageShape in;
    int out, k, stride, pad;
  };
  for (const Case& cs : {Case{{2, 7, 6}, 3, 3, 2, 1}, Case{{3, 5, 5}, 2, 2, 1, 0}, Case{{1, 4, 9}, 4, 3, 3, 2},
                         Case{{5, 1, 1}, 3, 1, 1, 0}}) {
    hfisher::nn::Sequential<S, E> m(cs.in, {LayerSpec::conv(cs.out, cs.k, cs.stride, cs.pad)}, 1);
    randomize(m, 2);
    const int B = 3;
    auto X = random_images<S, E>(B, cs.in.features(), 3);
    typename hfisher::nn::Sequential<S, E>::Cache c;
    auto Y = to_host2(m.forward(X, c));
    auto xh = to_host2(X);
    auto th = to_host1(m.params());
    const auto& g = m.geometry(0);
    const int C = cs.in.channels, H = cs.in.height, W = cs.in.width, OH = g.out_height(), OW = g.out_width();
    ASSERT_EQ(int(Y[0].size()), OH * OW * cs.out);
    const int cols = g.cols();
    double worst = 0;
    for (int b = 0; b < B; ++b)
      for (int oy = 0; oy < OH; ++oy)
        for (int ox = 0; ox < OW; ++ox)
          for (int f = 0; f < cs.out; ++f) {
            double s = th[long(f) * cols + cols - 1];
            for (int i = 0; i < cs.k; ++i)
              for (int j = 0; j < cs.k; ++j)
                for (int ch = 0; ch < C; ++ch) {
                  const int y = oy * cs.stride - cs.pad + i, x = ox * cs.stride - cs.pad + j;
                  if (y < 0 || y >= H || x < 0 || x >= W) continue;
                  s += th[long(f) * cols + (i * cs.k + j) * C + ch] * xh[b][(y * W + x) * C + ch];
                }
            worst = std::max(worst, std::abs(Y[b][(oy * OW + ox) * cs.out + f] - s));
          }
    // |x|, |w| below about 5 for these draws; K + 1 terms per output
    EXPECT_LE(worst, Tol<S>::gemm * 25 * cols) << "conv " << C << "x" << H << "x" << W << " k " << cs.k;
  }
}

// max and average pooling (overlapping windows too) against direct loops
TYPED_TEST(ConvTest, PoolingMatchesDirectLoops) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const ImageShape in{3, 7, 8};
  for (const bool mx : {true, false})
    for (const auto& ks : {std::pair<int, int>{2, 2}, {3, 2}, {2, 1}}) {
      const LayerSpec pool = mx ? LayerSpec::max_pool(ks.first, ks.second) : LayerSpec::avg_pool(ks.first, ks.second);
      hfisher::nn::Sequential<S, E> m(in, {pool, LayerSpec::linear(2)}, 1);
      const int B = 2;
      auto X = random_images<S, E>(B, in.features(), 5);
      typename hfisher::nn::Sequential<S, E>::Cache c;
      m.forward(X, c);
      auto P = to_host2(c.x[1]);
      auto xh = to_host2(X);
      const int k = ks.first, st = ks.second, OH = (in.height - k) / st + 1, OW = (in.width - k) / st + 1;
      ASSERT_EQ(long(P[0].size()), long(OH) * OW * in.channels);
      for (int b = 0; b < B; ++b)
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox)
            for (int ch = 0; ch < in.channels; ++ch) {
              double r = mx ? -1e300 : 0;
              for (int i = 0; i < k; ++i)
                for (int j = 0; j < k; ++j) {
                  const double v = xh[b][((oy * st + i) * in.width + ox * st + j) * in.channels + ch];
                  r = mx ? std::max(r, v) : r + v / (k * k);
                }
              EXPECT_NEAR(P[b][(oy * OW + ox) * in.channels + ch], r, mx ? 0.0 : Tol<S>::gemm * 10 * k * k)
                  << (mx ? "max" : "avg") << " pool " << k << "/" << st;
            }
    }
}

namespace {
// padded convolution, ReLU, overlapping max pooling, strided convolution,
// tanh, average pooling, flattening linear layers
std::vector<LayerSpec> small_cnn() {
  return {LayerSpec::conv(3, 3, 1, 1), LayerSpec::relu(), LayerSpec::max_pool(3, 2),
          LayerSpec::conv(4, 2, 2, 1), LayerSpec::tanh(), LayerSpec::avg_pool(2, 1),
          LayerSpec::linear(5),        LayerSpec::relu(), LayerSpec::linear(3)};
}

// every layer kind with layer normalization and GELU in place of ReLU and
// tanh: normalized over 3 channels at 64 positions, then over 5 features
std::vector<LayerSpec> normalized_cnn() {
  return {LayerSpec::conv(3, 3, 1, 1), LayerSpec::layer_norm(), LayerSpec::gelu(),    LayerSpec::avg_pool(2, 2),
          LayerSpec::conv(4, 2, 2, 1), LayerSpec::gelu(),       LayerSpec::linear(5), LayerSpec::layer_norm(),
          LayerSpec::gelu(),           LayerSpec::linear(3)};
}

// the gradient of the mean loss against central differences (double); in
// float against the double model at the same parameters; and the captured
// patches and output gradients sum to each layer's gradient
template <class S, class E>
void check_gradient(const ImageShape& in, const std::vector<LayerSpec>& specs, int vocab = 0) {
  using Model = hfisher::nn::Sequential<S, E>;
  Model m(in, specs, 7);
  // token ids in [0, vocab) where the model starts with a token embedding
  const auto examples = [&] {
    return vocab > 0 ? random_tokens(6, int(in.features()), vocab, 3, 8) : random_dataset(6, int(in.features()), 3, 8);
  };
  auto data = hfisher::nn::to_device<S, E>(examples());
  typename Model::Cache c;
  typename Model::Vector grad("g", m.num_params());
  const double loss = m.loss_grad(data.x, data.y, grad, c);
  ASSERT_TRUE(std::isfinite(loss));
  auto gh = to_host1(grad);
  if (std::is_same<S, double>::value) {
    auto theta = m.params();
    auto th = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), theta);
    const double h = 1e-6;
    typename Model::Vector scratch("s", m.num_params());
    for (long p = 0; p < m.num_params(); p += 2) {
      const S keep = th(p);
      th(p) = keep + S(h);
      Kokkos::deep_copy(theta, th);
      const double lp = m.loss_grad(data.x, data.y, scratch, c);
      th(p) = keep - S(h);
      Kokkos::deep_copy(theta, th);
      const double lm = m.loss_grad(data.x, data.y, scratch, c);
      th(p) = keep;
      Kokkos::deep_copy(theta, th);
      EXPECT_NEAR(gh[p], (lp - lm) / (2 * h), 1e-7 * (1 + std::abs(gh[p]))) << "parameter " << p;
    }
    m.loss_grad(data.x, data.y, grad, c);  // the cache of the unperturbed model again
  } else {
    hfisher::nn::Sequential<double, E> md(in, specs, 7);
    typename hfisher::nn::Sequential<double, E>::Vector td("td", m.num_params());
    auto tdh = Kokkos::create_mirror_view(td);
    auto tf = to_host1(m.params());
    for (long i = 0; i < m.num_params(); ++i) tdh(i) = tf[i];
    Kokkos::deep_copy(td, tdh);
    md.set_params(td);
    auto dd = hfisher::nn::to_device<double, E>(examples());
    typename hfisher::nn::Sequential<double, E>::Cache cd;
    typename hfisher::nn::Sequential<double, E>::Vector gd("gd", md.num_params());
    EXPECT_NEAR(md.loss_grad(dd.x, dd.y, gd, cd), loss, 1e-5 * (1 + loss));
    auto gdh = to_host1(gd);
    double scale = 0;
    for (double v : gdh) scale = std::max(scale, std::abs(v));
    for (long p = 0; p < m.num_params(); ++p) EXPECT_NEAR(gh[p], gdh[p], 1e-4 * scale) << "parameter " << p;
  }
  // sum over examples and positions of g a~^T = the layer's gradient
  for (int p = 0; p < m.num_layers(); ++p) {
    auto A = to_host2(m.patches(c, p));
    auto G = to_host2(m.output_grads(c, p));
    const auto& s = m.layers()[p];
    ASSERT_EQ(long(A.size()), 6L * m.geometry(p).positions());
    ASSERT_EQ(long(G.size()), long(A.size()));
    double worst = 0, scale = 0;
    for (int r = 0; r < s.out; ++r)
      for (int j = 0; j < s.cols(); ++j) {
        double v = 0;
        for (std::size_t t = 0; t < A.size(); ++t) v += G[t][r] * A[t][j];
        const double got = gh[s.offset + long(r) * s.cols() + j];
        worst = std::max(worst, std::abs(got - v));
        scale = std::max(scale, std::abs(v));
      }
    EXPECT_LE(worst, Tol<S>::gemm * 100 * A.size() * (1 + scale)) << "layer " << p;
  }
}
}  // namespace

TYPED_TEST(ConvTest, GradientMatchesFiniteDifferences) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const ImageShape in{2, 8, 8};
  hfisher::nn::Sequential<S, E> m(in, small_cnn(), 7);
  ASSERT_EQ(m.num_layers(), 4);
  EXPECT_EQ(m.geometry(0).positions(), 64);
  EXPECT_EQ(m.geometry(1).positions(), 4);
  EXPECT_EQ(m.geometry(2).positions(), 1);
  EXPECT_EQ(m.outputs(), 3);
  check_gradient<S, E>(in, small_cnn());
}

TYPED_TEST(ConvTest, LayerNormAndGeluGradientsMatchFiniteDifferences) {
  check_gradient<typename TypeParam::scalar, typename TypeParam::exec>({2, 8, 8}, normalized_cnn());
}

namespace {
// nested residual blocks around convolutions, layer normalization and GELU
std::vector<LayerSpec> residual_cnn() {
  return {LayerSpec::conv(3, 3, 1, 1), LayerSpec::relu(),      LayerSpec::residual_begin(),
          LayerSpec::conv(3, 3, 1, 1), LayerSpec::gelu(),      LayerSpec::residual_begin(),
          LayerSpec::layer_norm(),     LayerSpec::conv(3, 1),  LayerSpec::residual_end(),
          LayerSpec::residual_end(),   LayerSpec::avg_pool(2), LayerSpec::linear(3)};
}
}  // namespace

TYPED_TEST(ConvTest, ResidualBlocksGradientsMatchFiniteDifferences) {
  check_gradient<typename TypeParam::scalar, typename TypeParam::exec>({2, 6, 6}, residual_cnn());
}

// x + relu(x), then a linear layer, against direct loops; a block that
// starts the model (no gradient to its input)
TYPED_TEST(ConvTest, ResidualBlockMatchesDirectLoops) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const int F = 5, B = 3;
  hfisher::nn::Sequential<S, E> m(
      {F, 1, 1}, {LayerSpec::residual_begin(), LayerSpec::relu(), LayerSpec::residual_end(), LayerSpec::linear(2)}, 1);
  randomize(m, 6);
  auto X = random_images<S, E>(B, F, 7);
  typename hfisher::nn::Sequential<S, E>::Cache c;
  auto Y = to_host2(m.forward(X, c));
  auto xh = to_host2(X);
  auto th = to_host1(m.params());
  double worst = 0;
  for (int b = 0; b < B; ++b)
    for (int f = 0; f < 2; ++f) {
      double s = th[long(f) * (F + 1) + F];
      for (int j = 0; j < F; ++j) s += th[long(f) * (F + 1) + j] * (xh[b][j] + std::max(0.0, double(xh[b][j])));
      worst = std::max(worst, std::abs(Y[b][f] - s));
    }
  EXPECT_LE(worst, Tol<S>::gemm * 200) << "x + relu(x), linear";
  typename hfisher::nn::Sequential<S, E>::Vector grad("g", m.num_params());
  typename hfisher::nn::Sequential<S, E>::Labels y("y", B);
  EXPECT_TRUE(std::isfinite(m.loss_grad(X, y, grad, c)));
}

// save / load: the same layers and parameters, identical logits; a cut
// file, a missing one and the other precision refused; mutated payloads
// loaded or refused, never a crash; a well-formed file describing a model
// that cannot be built refused with the file named
TYPED_TEST(ConvTest, SavesAndLoads) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using Model = hfisher::nn::Sequential<S, E>;
  const ImageShape in{2, 6, 6};
  Model m(in, residual_cnn(), 3);
  randomize(m, 9);
  const std::string path = unique_temp("sequential.bin");
  m.save(path);
  auto back = Model::load(path);
  ASSERT_EQ(back.num_params(), m.num_params());
  ASSERT_EQ(back.specs().size(), m.specs().size());
  for (std::size_t i = 0; i < m.specs().size(); ++i) EXPECT_EQ(int(back.specs()[i].kind), int(m.specs()[i].kind));
  EXPECT_EQ(to_host1(back.params()), to_host1(m.params()));
  auto X = random_images<S, E>(3, in.features(), 4);
  typename Model::Cache c1, c2;
  EXPECT_EQ(to_host2(back.forward(X, c2)), to_host2(m.forward(X, c1)));
  {
    std::ifstream f(path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::ofstream(path + ".cut", std::ios::binary) << all.substr(0, all.size() - 28);
  }
  EXPECT_THROW(Model::load(path + ".cut"), hfisher::Error);
  EXPECT_THROW(Model::load(path + ".missing"), hfisher::Error);
  using Other = hfisher::nn::Sequential<std::conditional_t<std::is_same<S, double>::value, float, double>, E>;
  EXPECT_THROW(Other::load(path), hfisher::Error);
  fuzz_loader(path, [](const std::string& p) { Model::load(p); });
  // the first layer's kernel (bytes 40-43) set to 60: larger than the input
  std::ostringstream o;
  m.write(o);
  std::string bytes = o.str();
  const std::int32_t k60 = 60;
  bytes.replace(40, 4, reinterpret_cast<const char*>(&k60), 4);
  std::istringstream is(bytes);
  try {
    Model::read(is, "crafted.bin");
    ADD_FAILURE() << "a model with a 60 x 60 kernel on 6 x 6 images was loaded";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("crafted.bin describes a model that cannot be built"), std::string::npos)
        << e.what();
  }
  std::remove(path.c_str());
  std::remove((path + ".cut").c_str());
  // a model that load would refuse (a 65 x 65 kernel) is not saved at all
  Model wide({1, 70, 70}, {LayerSpec::conv(1, 65)}, 1);
  try {
    wide.save(path);
    ADD_FAILURE() << "a model beyond the file format's bounds was saved";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be saved: its layer 0 (out 1, kernel 65"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::ifstream(path).good()) << "a file was left behind";
}

// layer normalization over the channels of every position, then GELU, then
// a linear layer, against direct loops (std::erf, two-pass variance)
TYPED_TEST(ConvTest, LayerNormAndGeluMatchDirectLoops) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const ImageShape in{3, 2, 2};
  hfisher::nn::Sequential<S, E> m(in, {LayerSpec::layer_norm(), LayerSpec::gelu(), LayerSpec::linear(2)}, 1);
  randomize(m, 4);
  const int B = 4, C = in.channels, P = in.height * in.width, F = int(in.features());
  auto X = random_images<S, E>(B, F, 5);
  typename hfisher::nn::Sequential<S, E>::Cache c;
  auto Y = to_host2(m.forward(X, c));
  auto xh = to_host2(X);
  auto th = to_host1(m.params());
  double worst = 0;
  for (int b = 0; b < B; ++b) {
    std::vector<double> g(F);
    for (int p = 0; p < P; ++p) {
      double mean = 0, var = 0;
      for (int ch = 0; ch < C; ++ch) mean += xh[b][p * C + ch] / C;
      for (int ch = 0; ch < C; ++ch) var += (xh[b][p * C + ch] - mean) * (xh[b][p * C + ch] - mean) / C;
      for (int ch = 0; ch < C; ++ch) {
        const double y = (xh[b][p * C + ch] - mean) / std::sqrt(var + hfisher::nn::layer_norm_eps);
        g[p * C + ch] = 0.5 * y * (1 + std::erf(y / std::sqrt(2.0)));
      }
    }
    for (int f = 0; f < 2; ++f) {
      double s = th[long(f) * (F + 1) + F];
      for (int j = 0; j < F; ++j) s += th[long(f) * (F + 1) + j] * g[j];
      worst = std::max(worst, std::abs(Y[b][f] - s));
    }
  }
  // normalized values below about 2, weights below about 5, 13 terms
  EXPECT_LE(worst, Tol<S>::gemm * 500) << "layer_norm, gelu, linear";
}

namespace {
// a vision transformer in miniature: 2 x 2 patches of a 2 x 4 x 4 image as 4
// tokens of width 4, a position embedding, a pre-normalization block
// (attention with 2 heads, then a GELU feed-forward of width 8, each inside
// a residual block), a final normalization, the mean over tokens (average
// pooling) and a linear classifier
std::vector<LayerSpec> tiny_vit(bool causal) {
  std::vector<LayerSpec> s = {LayerSpec::conv(4, 2, 2), LayerSpec::position_embedding(), LayerSpec::residual_begin(),
                              LayerSpec::layer_norm()};
  for (const auto& l : hfisher::nn::multi_head_attention(4, 2, causal)) s.push_back(l);
  for (const auto& l : {LayerSpec::residual_end(), LayerSpec::residual_begin(), LayerSpec::layer_norm(),
                        LayerSpec::conv(8, 1), LayerSpec::gelu(), LayerSpec::conv(4, 1), LayerSpec::residual_end(),
                        LayerSpec::layer_norm(), LayerSpec::avg_pool(2), LayerSpec::linear(3)})
    s.push_back(l);
  return s;
}
}  // namespace

TYPED_TEST(ConvTest, TransformerGradientsMatchFiniteDifferences) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::Sequential<S, E> m({2, 4, 4}, tiny_vit(false), 7);
  // patches 4 x 9, position 4 x 5, qkv 12 x 5, output 4 x 5, ffn 8 x 5 and
  // 4 x 9, classifier 3 x 5
  ASSERT_EQ(m.num_layers(), 7);
  EXPECT_EQ(m.num_params(), 36 + 20 + 60 + 20 + 40 + 36 + 15);
  EXPECT_EQ(m.geometry(1).positions(), 4);
  EXPECT_EQ(m.geometry(1).cols(), 5);
  check_gradient<S, E>({2, 4, 4}, tiny_vit(false));
  check_gradient<S, E>({2, 4, 4}, tiny_vit(true));
}

// a position embedding and the attention core (full and causal) against
// direct loops: y_t = x_t + W(:, t) + W(:, T), then per head softmax(q k^T /
// sqrt(dh)) v; and a transformer saved and loaded gives the same logits
TYPED_TEST(ConvTest, AttentionMatchesDirectLoops) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using Model = hfisher::nn::Sequential<S, E>;
  const int T = 3, H = 2, d = 4, dh = d / H, B = 2, C = 3 * d;
  for (bool causal : {false, true}) {
    Model m({C, T, 1}, {LayerSpec::position_embedding(), LayerSpec::attention(H, causal), LayerSpec::linear(2)}, 1);
    randomize(m, 3);
    auto X = random_images<S, E>(B, long(T) * C, 5);
    typename Model::Cache c;
    m.forward(X, c);
    const auto xh = to_host2(X), th = to_host1(m.params()), y = to_host2(c.x[2]);
    double worst = 0;
    for (int b = 0; b < B; ++b) {
      std::vector<double> u(T * C);  // the embedded input
      for (int t = 0; t < T; ++t)
        for (int ch = 0; ch < C; ++ch) u[t * C + ch] = xh[b][t * C + ch] + th[ch * (T + 1) + t] + th[ch * (T + 1) + T];
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < T; ++i) {
          std::vector<double> p(T, 0.0);
          double z = 0;
          for (int j = 0; j < (causal ? i + 1 : T); ++j) {
            double sc = 0;
            for (int e = 0; e < dh; ++e) sc += u[i * C + h * dh + e] * u[j * C + d + h * dh + e];
            p[j] = std::exp(sc / std::sqrt(double(dh)));
            z += p[j];
          }
          for (int e = 0; e < dh; ++e) {
            double o = 0;
            for (int j = 0; j < T; ++j) o += p[j] / z * u[j * C + 2 * d + h * dh + e];
            worst = std::max(worst, std::abs(y[b][i * d + h * dh + e] - o));
          }
        }
    }
    // inputs and embeddings N(0, 1): scores up to about 10, outputs a
    // convex combination of values below about 5
    EXPECT_LE(worst, Tol<S>::gemm * 2000) << (causal ? "causal" : "full");
  }
  Model v({2, 4, 4}, tiny_vit(true), 5);
  randomize(v, 8);
  const std::string path = unique_temp("vit.bin");
  v.save(path);
  auto back = Model::load(path);
  std::remove(path.c_str());
  auto X = random_images<S, E>(3, 32, 4);
  typename Model::Cache c1, c2;
  EXPECT_EQ(to_host2(back.forward(X, c2)), to_host2(v.forward(X, c1)));
  EXPECT_EQ(int(back.specs()[5].kind), int(LayerSpec::Kind::CausalAttention));
}

namespace {
// a text transformer in miniature: 4 token ids (on a 2 x 2 grid) from a
// vocabulary of 5 embedded in width 4, a position embedding, attention of 2
// heads inside a pre-normalization residual block, a final normalization,
// the mean over tokens and a linear classifier
std::vector<LayerSpec> tiny_text(bool causal) {
  std::vector<LayerSpec> s = {LayerSpec::token_embedding(5, 4), LayerSpec::position_embedding(),
                              LayerSpec::residual_begin(), LayerSpec::layer_norm()};
  for (const auto& l : hfisher::nn::multi_head_attention(4, 2, causal)) s.push_back(l);
  for (const auto& l :
       {LayerSpec::residual_end(), LayerSpec::layer_norm(), LayerSpec::avg_pool(2), LayerSpec::linear(3)})
    s.push_back(l);
  return s;
}
}  // namespace

// a token embedding against the direct lookup y_t = W(:, id_t) + W(:, V);
// its gradient (and the text transformer's) against finite differences; a
// model with one saved and loaded gives the same logits; entries that are
// not ids and misplaced embeddings are refused with the entry or layer named
TYPED_TEST(ConvTest, TokenEmbeddingLooksUpIds) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using Model = hfisher::nn::Sequential<S, E>;
  const int V = 5, C = 4, T = 3, B = 2;
  Model m({1, T, 1}, {LayerSpec::token_embedding(V, C), LayerSpec::linear(2)}, 1);
  ASSERT_EQ(m.num_layers(), 2);
  EXPECT_EQ(m.layers()[0].out, C);
  EXPECT_EQ(m.layers()[0].cols(), V + 1);
  EXPECT_EQ(m.geometry(0).positions(), T);
  randomize(m, 3);
  const std::vector<float> ids = {0, 4, 2, 1, 1, 3};
  typename Model::Matrix X("X", B, T);
  auto xh = Kokkos::create_mirror_view(X);
  for (int i = 0; i < B * T; ++i) xh(i / T, i % T) = S(ids[i]);
  Kokkos::deep_copy(X, xh);
  typename Model::Cache c;
  m.forward(X, c);
  const auto th = to_host1(m.params());
  const auto y = to_host2(c.x[1]);
  const auto A = to_host2(m.patches(c, 0));
  double worst = 0;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const int id = int(ids[b * T + t]);
      for (int ch = 0; ch < C; ++ch)
        worst = std::max(worst, std::abs(y[b][t * C + ch] - (th[ch * (V + 1) + id] + th[ch * (V + 1) + V])));
      for (int j = 0; j <= V; ++j) EXPECT_EQ(A[b * T + t][j], j == id || j == V ? 1.0 : 0.0) << b << " " << t;
    }
  EXPECT_LE(worst, Tol<S>::gemm * 10);  // one addition of N(0, 1) entries

  check_gradient<S, E>({1, T, 1}, {LayerSpec::token_embedding(V, C), LayerSpec::linear(3)}, V);  // 3 classes
  Model text({1, 2, 2}, tiny_text(false), 5);
  // embedding 4 x 6, position 4 x 5, qkv 12 x 5, output 4 x 5, classifier 3 x 5
  EXPECT_EQ(text.num_params(), 24 + 20 + 60 + 20 + 15);
  check_gradient<S, E>({1, 2, 2}, tiny_text(false), 5);
  check_gradient<S, E>({1, 2, 2}, tiny_text(true), 5);

  Model v({1, 2, 2}, tiny_text(true), 6);
  randomize(v, 9);
  const std::string path = unique_temp("text.bin");
  v.save(path);
  auto back = Model::load(path);
  std::remove(path.c_str());
  auto tokens = hfisher::nn::to_device<S, E>(random_tokens(3, 4, 5, 3, 2));
  typename Model::Cache c1, c2;
  EXPECT_EQ(to_host2(back.forward(tokens.x, c2)), to_host2(v.forward(tokens.x, c1)));
  EXPECT_EQ(int(back.specs()[0].kind), int(LayerSpec::Kind::TokenEmbedding));
  EXPECT_EQ(back.specs()[0].kernel, 5);

  for (S bad : {S(2.5), S(-1), S(V), std::numeric_limits<S>::quiet_NaN()})
    hfisher_test::expect_throw_with(
        [&] {
          xh(1, 2) = bad;
          Kokkos::deep_copy(X, xh);
          m.forward(X, c);
        },
        {"X(1, 2) = ", "is not a token id of layer 0 (token_embedding over a vocabulary of 5"}, "an entry not an id");
  hfisher_test::expect_throw_with(
      [] {
        Model({1, 4, 1}, {LayerSpec::conv(1, 1), LayerSpec::token_embedding(5, 4)});
      },
      {"must be the first layer"}, "after a convolution");
  hfisher_test::expect_throw_with(
      [] {
        Model({2, 4, 1}, {LayerSpec::token_embedding(5, 4), LayerSpec::linear(2)});
      },
      {"the input has 2 channels"}, "two channels");
  hfisher_test::expect_throw_with(
      [] {
        Model({1, 4, 1}, {LayerSpec::token_embedding(0, 4)});
      },
      {"vocabulary of 0"}, "empty vocabulary");
  hfisher_test::expect_throw_with(
      [] {
        Model({1, 4, 1}, {LayerSpec::token_embedding(5, 0)});
      },
      {"out_channels = 0"}, "width 0");
}

// a small CNN learns where a bright 2 x 2 blob sits (four quadrants of a
// 6 x 6 image, noise around it): Adam through nn::train_epoch, 152 steps,
// held-out accuracy >= 0.95
TYPED_TEST(ConvTest, LearnsASpatialTask) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  auto make = [](int n, unsigned seed) {
    hfisher::nn::Dataset d;
    d.n = n;
    d.features = 36;
    d.classes = 4;
    std::mt19937 g(seed);
    std::normal_distribution<double> nd(0, 0.3);
    for (int i = 0; i < n; ++i) {
      const int q = int(g() % 4), y0 = (q / 2) * 3 + int(g() % 2), x0 = (q % 2) * 3 + int(g() % 2);
      for (int y = 0; y < 6; ++y)
        for (int x = 0; x < 6; ++x)
          d.x.push_back(float(nd(g) + ((y == y0 || y == y0 + 1) && (x == x0 || x == x0 + 1) ? 1.0 : 0.0)));
      d.y.push_back(q);
    }
    return d;
  };
  auto train = hfisher::nn::to_device<S, E>(make(256, 1));
  auto test = hfisher::nn::to_device<S, E>(make(200, 2));
  hfisher::nn::Sequential<S, E> m(
      {1, 6, 6}, {LayerSpec::conv(4, 3, 1, 1), LayerSpec::relu(), LayerSpec::max_pool(3, 3), LayerSpec::linear(4)}, 3);
  const double before = m.accuracy(test);
  hfisher::nn::Adam<S, E> opt;
  opt.lr = 0.02;
  std::mt19937_64 rng(4);
  for (int epoch = 0; epoch < 19; ++epoch) hfisher::nn::train_epoch(m, train, 32, opt, rng);  // 152 steps
  const double after = m.accuracy(test, 64);
  EXPECT_GE(after, 0.95) << "before training " << before;
}

// bad geometry and bad arguments are refused with the problem named
TYPED_TEST(ConvTest, RejectsBadShapesAndArguments) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using Model = hfisher::nn::Sequential<S, E>;
  auto fails = [](auto&& f, const std::string& expect) {
    try {
      f();
      ADD_FAILURE() << "accepted; expected: " << expect;
    } catch (const hfisher::Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  fails([] { Model({1, 4, 4}, {LayerSpec::conv(2, 7)}); }, "larger than the padded input");
  fails([] { Model({1, 4, 4}, {LayerSpec::conv(2, 3, 1, 3)}); }, "padding = 3");
  fails([] { Model({1, 4, 4}, {LayerSpec::conv(0, 3)}); }, "out_channels = 0");
  fails([] { Model({1, 4, 4}, {LayerSpec::conv(2, 3, 0)}); }, "stride = 0");
  fails([] { Model({1, 4, 4}, {LayerSpec::max_pool(5), LayerSpec::linear(2)}); }, "larger than the input");
  fails([] { Model({1, 4, 4}, {LayerSpec::relu()}); }, "no layer with parameters");
  fails([] { Model({1, 4, 4}, {LayerSpec::layer_norm(), LayerSpec::linear(2)}); }, "needs at least 2");
  // 65536 channels x 300^2 inputs per patch: beyond an int, refused before it is formed
  fails([] { Model({1 << 16, 300, 300}, {LayerSpec::conv(1, 300)}); }, "too large (5898240000 inputs per patch");
  fails([] { Model({1, 4, 4}, {LayerSpec::residual_end(), LayerSpec::linear(2)}); }, "residual_end without");
  fails([] { Model({1, 4, 4}, {LayerSpec::residual_begin(), LayerSpec::linear(2)}); }, "has no residual_end");
  fails(
      [] {
        Model({1, 4, 4}, {LayerSpec::residual_begin(), LayerSpec::conv(2, 3), LayerSpec::residual_end()});
      },
      "changes the shape from 1 x 4 x 4 to 2 x 2 x 2");
  fails([] { Model({0, 4, 4}, {LayerSpec::linear(2)}); }, "must be positive");
  fails([] { Model({4, 2, 2}, {LayerSpec::attention(1), LayerSpec::linear(2)}); }, "3 d channels per token");
  fails([] { Model({6, 2, 2}, {LayerSpec::attention(4), LayerSpec::linear(2)}); }, "divisible by the 4 heads");
  fails([] { Model({6, 2, 2}, {LayerSpec::attention(0), LayerSpec::linear(2)}); }, "0 heads");
  fails([] { Model({6, 200, 200}, {LayerSpec::position_embedding()}); }, "40000 positions");
  fails([] { Model({1, 4, 4}, {}); }, "at least one layer");
  Model m({1, 4, 4}, {LayerSpec::conv(2, 3), LayerSpec::linear(3)});
  typename Model::Cache c;
  fails([&] { m.forward(typename Model::Matrix("X", 2, 15), c); }, "wrong width");
  auto X = random_images<S, E>(2, 16, 1);
  typename Model::Labels y("y", 2);
  typename Model::Vector g("g", m.num_params() + 1);
  fails([&] { m.loss_grad(X, y, g, c); }, "grad has");
  typename Model::Labels y3("y", 3);
  fails([&] { m.loss_grad(X, y3, typename Model::Vector("g", m.num_params()), c); }, "labels");
  fails([&] { m.set_params(typename Model::Vector("t", 3)); }, "theta has 3 entries");
}
