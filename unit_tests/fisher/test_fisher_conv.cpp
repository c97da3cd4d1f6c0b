// The Fisher of an nn::Sequential (convolutions, pooling, linear layers)
// against the brute-force Fisher of per-example gradients, in every structure
// built from samples; K-FAC for convolutions (KFC) against factors summed
// from single-example passes; an all-linear Sequential against the MLP.

#include <hfisher/hfisher.hpp>

#include <cmath>
#include <random>
#include <string>

#include "../test_helpers.hpp"

using namespace hfisher_test;
using hfisher::nn::ImageShape;
using hfisher::nn::LayerSpec;

template <class C>
class ConvFisherTest : public ::testing::Test {};
TYPED_TEST_SUITE(ConvFisherTest, Configs, ConfigNames);

namespace {

double rel_fro(const HostBatch& A, const HostBatch& B) {
  double num = 0, den = 0;
  for (size_t i = 0; i < A.a.size(); ++i) {
    num += (A.a[i] - B.a[i]) * (A.a[i] - B.a[i]);
    den += B.a[i] * B.a[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// padded convolution (25 positions), ReLU, average pooling, layer
// normalization over 3 channels, strided convolution (4 positions), GELU, a
// linear layer (1 position): 57 + 26 + 27 parameters
std::vector<LayerSpec> small_cnn() {
  return {LayerSpec::conv(3, 3, 1, 1), LayerSpec::relu(), LayerSpec::avg_pool(2, 1), LayerSpec::layer_norm(),
          LayerSpec::conv(2, 2, 2, 0), LayerSpec::gelu(), LayerSpec::linear(3)};
}

// the brute-force Fisher (all parameters) from single-example passes, and
// per layer the KFC factors: A = mean over examples and positions of a~ a~^T,
// G = sum over samples and positions of g g^T (samples weighted as the kind
// weights them: empirical 1 / N at the label, GGN p_c / N at every class c)
template <class S, class E>
struct Reference {
  HostBatch F;
  std::vector<HostBatch> A, G;
  std::vector<HostBatch> Ar, Gr;  // K-FAC-reduce: from each example's mean patch and each sample's summed g
};

template <class S, class E>
Reference<S, E> brute_force(const hfisher::nn::Sequential<S, E>& m, const hfisher::nn::DeviceData<S, E>& data,
                            hfisher::FisherKind kind) {
  using Model = hfisher::nn::Sequential<S, E>;
  const int N = data.size(), C = m.outputs(), P = int(m.num_params());
  Reference<S, E> r;
  r.F = HostBatch(1, P, P);
  for (const auto& s : m.layers()) {
    r.A.emplace_back(1, s.cols(), s.cols());
    r.G.emplace_back(1, s.out, s.out);
    r.Ar.emplace_back(1, s.cols(), s.cols());
    r.Gr.emplace_back(1, s.out, s.out);
  }
  typename Model::Cache c;
  typename Model::Vector grad("g", P);
  typename Model::Labels y1("y1", 1);
  auto yh = Kokkos::create_mirror_view(y1);
  const auto labels = to_host1(data.y);
  for (int n = 0; n < N; ++n) {
    const typename Model::Matrix X = Kokkos::subview(data.x, Kokkos::make_pair(n, n + 1), Kokkos::ALL());
    auto p = to_host2(m.forward(X, c));  // logits
    double mx = -1e300, z = 0;
    for (int k = 0; k < C; ++k) mx = std::max(mx, p[0][k]);
    for (int k = 0; k < C; ++k) z += std::exp(p[0][k] - mx);
    std::vector<double> prob(C);
    for (int k = 0; k < C; ++k) prob[k] = std::exp(p[0][k] - mx) / z;
    for (int cls = 0; cls < C; ++cls) {
      const double w = kind == hfisher::FisherKind::Empirical ? (cls == int(labels[n]) ? 1.0 / N : 0.0) : prob[cls] / N;
      if (w == 0) continue;
      yh(0) = cls;
      Kokkos::deep_copy(y1, yh);
      m.loss_grad(X, y1, grad, c);  // the gradient of -log p(cls | x_n)
      const auto gv = to_host1(grad);
      for (int i = 0; i < P; ++i)
        for (int j = 0; j < P; ++j) r.F(0, i, j) += w * gv[i] * gv[j];
      for (int l = 0; l < m.num_layers(); ++l) {
        const auto G = to_host2(m.output_grads(c, l));
        std::vector<double> sum(G[0].size(), 0.0);
        for (const auto& row : G)
          for (int i = 0; i < int(row.size()); ++i) {
            sum[i] += row[i];
            for (int j = 0; j < int(row.size()); ++j) r.G[l](0, i, j) += w * row[i] * row[j];
          }
        for (int i = 0; i < int(sum.size()); ++i)
          for (int j = 0; j < int(sum.size()); ++j) r.Gr[l](0, i, j) += w * sum[i] * sum[j];
      }
    }
    for (int l = 0; l < m.num_layers(); ++l) {
      const auto A = to_host2(m.patches(c, l));
      const double w = 1.0 / (double(N) * A.size());
      std::vector<double> mean(A[0].size(), 0.0);
      for (const auto& row : A)
        for (int i = 0; i < int(row.size()); ++i) {
          mean[i] += row[i] / double(A.size());
          for (int j = 0; j < int(row.size()); ++j) r.A[l](0, i, j) += w * row[i] * row[j];
        }
      for (int i = 0; i < int(mean.size()); ++i)
        for (int j = 0; j < int(mean.size()); ++j) r.Ar[l](0, i, j) += mean[i] * mean[j] / N;
    }
  }
  return r;
}

HostBatch block_diag_of(const HostBatch& F, const std::vector<hfisher::nn::LayerShape>& layers) {
  HostBatch B(1, F.m, F.n);
  for (const auto& s : layers)
    for (long i = s.offset; i < s.offset + s.size(); ++i)
      for (long j = s.offset; j < s.offset + s.size(); ++j) B(0, int(i), int(j)) = F(0, int(i), int(j));
  return B;
}

// every structure built from samples against the brute-force Fisher
// (empirical and GGN); KFC's factors against the reference ones
template <class S, class E>
void every_structure(const hfisher::nn::Sequential<S, E>& m, const hfisher::nn::DeviceData<S, E>& data,
                     const std::string& model) {
  using FT = hfisher_test::FisherTol<S>;
  for (auto kind : {hfisher::FisherKind::Empirical, hfisher::FisherKind::GGN}) {
    const std::string k = model + " " + hfisher::to_string(kind);
    const auto ref = brute_force(m, data, kind);
    const auto Fb = block_diag_of(ref.F, m.layers());
    hfisher::FisherOptions o;
    o.batch = 4;  // several passes, a short last one
    o.set_tol(FT::compress_tight);
    o.compression.leaf = 8;
    o.lowrank.rank = 200;
    const double tight = FT::conv_exact;
    {
      auto op = hfisher::estimate_fisher(m, data, kind, hfisher::Structure::Diagonal, o);
      const auto d = to_host1(op->diag());
      double worst = 0;
      for (long i = 0; i < m.num_params(); ++i)
        worst = std::max(worst, std::abs(d[i] - ref.F(0, int(i), int(i))) / (1 + std::abs(ref.F(0, int(i), int(i)))));
      EXPECT_LE(worst, tight) << k << " diagonal";
    }
    {
      auto op = hfisher::estimate_fisher(m, data, kind, hfisher::Structure::BlockDiagonal, o);
      EXPECT_LE(rel_fro(host_matrix(op->to_dense()), Fb), tight) << k << " block-diagonal dense";
    }
    {
      auto op = hfisher::estimate_fisher(m, data, kind, hfisher::Structure::HODLR, o);
      EXPECT_LE(rel_fro(host_matrix(op->to_dense()), Fb), FT::conv_compressed) << k << " HODLR";
    }
    {
      auto op = hfisher::estimate_fisher(m, data, kind, hfisher::Structure::HSS, o);
      EXPECT_LE(rel_fro(host_matrix(op->to_dense()), Fb), FT::conv_compressed) << k << " HSS";
    }
    {  // at full rank: F over all parameters, cross-layer blocks included
      auto op = hfisher::estimate_fisher(m, data, kind, hfisher::Structure::LowRank, o);
      EXPECT_LE(rel_fro(host_matrix(op->to_dense()), ref.F), FT::conv_compressed) << k << " low-rank";
    }
    {  // KFC: G (x) A from the reference factors
      auto op = hfisher::estimate_fisher(m, data, kind, hfisher::Structure::KFAC, o);
      auto* bd = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>*>(op.get());
      ASSERT_NE(bd, nullptr);
      for (int l = 0; l < m.num_layers(); ++l) {
        auto* kf = dynamic_cast<const hfisher::fisher::KFACOperator<S, E>*>(&bd->block(l));
        ASSERT_NE(kf, nullptr);
        EXPECT_LE(rel_fro(host_matrix(kf->terms()[0].A), ref.A[l]), tight) << k << " layer " << l << " A";
        EXPECT_LE(rel_fro(host_matrix(kf->terms()[0].G), ref.G[l]), tight) << k << " layer " << l << " G";
      }
    }
    {  // K-FAC-reduce: the factors of the reduced patches and gradients
      auto o2 = o;
      o2.kfac.variant = hfisher::KFACVariant::Reduce;
      auto op = hfisher::estimate_fisher(m, data, kind, hfisher::Structure::KFAC, o2);
      auto* bd = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>*>(op.get());
      ASSERT_NE(bd, nullptr);
      for (int l = 0; l < m.num_layers(); ++l) {
        auto* kf = dynamic_cast<const hfisher::fisher::KFACOperator<S, E>*>(&bd->block(l));
        ASSERT_NE(kf, nullptr);
        EXPECT_LE(rel_fro(host_matrix(kf->terms()[0].A), ref.Ar[l]), tight) << k << " layer " << l << " reduce A";
        EXPECT_LE(rel_fro(host_matrix(kf->terms()[0].G), ref.Gr[l]), tight) << k << " layer " << l << " reduce G";
      }
    }
  }
}

}  // namespace

TYPED_TEST(ConvFisherTest, EveryStructureAgainstPerExampleGradients) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::Sequential<S, E> m({2, 5, 5}, small_cnn(), 3);
  ASSERT_EQ(m.num_params(), 57 + 26 + 27);
  const int N = 9;
  auto data = hfisher::nn::to_device<S, E>(random_dataset(N, 50, 3, 4));
  every_structure(m, data, "cnn");
  for (auto kind : {hfisher::FisherKind::Empirical, hfisher::FisherKind::GGN}) {
    hfisher::FisherOptions o;
    o.batch = 4;
    // the multilevel structure needs rank-one per-example gradients
    try {
      hfisher::estimate_fisher(m, data, kind, hfisher::Structure::Multilevel, o);
      ADD_FAILURE() << "multilevel accepted a convolution";
    } catch (const hfisher::Error& e) {
      EXPECT_NE(std::string(e.what()).find("applied at 25 positions"), std::string::npos) << e.what();
    }
  }
  // only the linear layer: multilevel works there
  hfisher::FisherOptions o;
  o.layers = {2};
  auto ml = hfisher::estimate_fisher(m, data, hfisher::FisherKind::Empirical, hfisher::Structure::Multilevel, o);
  EXPECT_EQ(ml->size(), 27);
  o.layers = {};
  o.matrix_free = true;
  EXPECT_THROW(hfisher::estimate_fisher(m, data, hfisher::FisherKind::Empirical, hfisher::Structure::HODLR, o),
               hfisher::Error);
}

// a transformer in miniature (2 x 2 patches of a 1 x 4 x 4 image as 4 tokens
// of width 4, a position embedding, one pre-normalization block with causal
// attention of 2 heads and a ReLU feed-forward, the mean over tokens, a
// linear classifier): every structure, with K-FAC of the token-wise
// projections as KFC (A averaged over tokens, G summed over them)
TYPED_TEST(ConvFisherTest, TransformerEveryStructureAgainstPerExampleGradients) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  std::vector<LayerSpec> specs = {LayerSpec::conv(4, 2, 2), LayerSpec::position_embedding(),
                                  LayerSpec::residual_begin(), LayerSpec::layer_norm()};
  for (const auto& l : hfisher::nn::multi_head_attention(4, 2, true)) specs.push_back(l);
  for (const auto& l : {LayerSpec::residual_end(), LayerSpec::residual_begin(), LayerSpec::layer_norm(),
                        LayerSpec::conv(6, 1), LayerSpec::relu(), LayerSpec::conv(4, 1), LayerSpec::residual_end(),
                        LayerSpec::avg_pool(2), LayerSpec::linear(3)})
    specs.push_back(l);
  hfisher::nn::Sequential<S, E> m({1, 4, 4}, specs, 5);
  ASSERT_EQ(m.num_params(), 20 + 20 + 60 + 20 + 30 + 28 + 15);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(7, 16, 3, 6));
  every_structure(m, data, "transformer");
}

// a text transformer in miniature (4 token ids from a vocabulary of 6,
// embedded in width 4, a position embedding, one pre-normalization residual
// block with attention of 2 heads, the mean over tokens, a linear
// classifier): every structure, the token embedding's one-hot patches among
// the layers
TYPED_TEST(ConvFisherTest, TokenEmbeddingEveryStructureAgainstPerExampleGradients) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  std::vector<LayerSpec> specs = {LayerSpec::token_embedding(6, 4), LayerSpec::position_embedding(),
                                  LayerSpec::residual_begin(), LayerSpec::layer_norm()};
  for (const auto& l : hfisher::nn::multi_head_attention(4, 2)) specs.push_back(l);
  for (const auto& l : {LayerSpec::residual_end(), LayerSpec::avg_pool(2), LayerSpec::linear(3)}) specs.push_back(l);
  hfisher::nn::Sequential<S, E> m({1, 2, 2}, specs, 5);
  ASSERT_EQ(m.num_params(), 28 + 20 + 60 + 20 + 15);
  auto data = hfisher::nn::to_device<S, E>(random_tokens(16, 4, 6, 3, 6));
  every_structure(m, data, "text transformer");
}

// where the network averages a token-wise linear layer's outputs before the
// loss (1 x 1 convolution, mean over the 4 positions, linear classifier),
// the per-example gradient of that layer is rank one, (sum_t g_t) (mean_t
// a~_t)^T: for one example, K-FAC-reduce of its GGN is exact, K-FAC-expand
// is not
TYPED_TEST(ConvFisherTest, KFACReduceIsExactWhereTheModelAveragesPositions) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using FT = hfisher_test::FisherTol<S>;
  hfisher::nn::Sequential<S, E> m({2, 2, 2}, {LayerSpec::conv(3, 1), LayerSpec::avg_pool(2), LayerSpec::linear(3)}, 4);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(1, 8, 3, 2));
  const auto ref = brute_force(m, data, hfisher::FisherKind::GGN);
  const auto& l0 = m.layers()[0];  // 3 x 3 parameters at offset 0
  HostBatch exact(1, int(l0.size()), int(l0.size()));
  for (int i = 0; i < int(l0.size()); ++i)
    for (int j = 0; j < int(l0.size()); ++j) exact(0, i, j) = ref.F(0, i, j);
  hfisher::FisherOptions o;
  o.layers = {0};
  auto reduce = o;
  reduce.kfac.variant = hfisher::KFACVariant::Reduce;
  const auto Fr = host_matrix(
      hfisher::estimate_fisher(m, data, hfisher::FisherKind::GGN, hfisher::Structure::KFAC, reduce)->to_dense());
  const auto Fe =
      host_matrix(hfisher::estimate_fisher(m, data, hfisher::FisherKind::GGN, hfisher::Structure::KFAC, o)->to_dense());
  EXPECT_LE(rel_fro(Fr, exact), FT::exact) << "reduce";
  EXPECT_GE(rel_fro(Fe, exact), 1e-2) << "expand";
}

// a Sequential of linear layers is the MLP: the same samples, so every
// structure gives the same operator
TYPED_TEST(ConvFisherTest, LinearSequentialEqualsMLP) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using FT = hfisher_test::FisherTol<S>;
  hfisher::nn::MLP<S, E> mlp({6, 5, 3}, hfisher::nn::Activation::Tanh, 2);
  hfisher::nn::Sequential<S, E> seq({6, 1, 1}, {LayerSpec::linear(5), LayerSpec::tanh(), LayerSpec::linear(3)}, 9);
  ASSERT_EQ(seq.num_params(), mlp.num_params());
  seq.set_params(mlp.params());
  auto data = hfisher::nn::to_device<S, E>(random_dataset(11, 6, 3, 5));
  hfisher::FisherOptions o;
  o.batch = 4;
  o.mc_samples = 2;
  for (auto kind : {hfisher::FisherKind::Empirical, hfisher::FisherKind::MonteCarlo, hfisher::FisherKind::GGN})
    for (auto st : {hfisher::Structure::Diagonal, hfisher::Structure::KFAC, hfisher::Structure::BlockDiagonal,
                    hfisher::Structure::LowRank, hfisher::Structure::Multilevel}) {
      auto a = host_matrix(hfisher::estimate_fisher(mlp, data, kind, st, o)->to_dense());
      auto b = host_matrix(hfisher::estimate_fisher(seq, data, kind, st, o)->to_dense());
      EXPECT_LE(rel_fro(b, a), FT::exact) << hfisher::to_string(kind) << " " << hfisher::to_string(st);
    }
}
