// One NaturalGradient step against a dense natural-gradient step computed
// with LAPACK from the same Fisher estimate.
#include <filesystem>
#include <fstream>

#include "../fuzz_helpers.hpp"
#include "../test_helpers.hpp"

using namespace hfisher_test;

template <class C>
class NaturalGradientTest : public ::testing::Test {};
TYPED_TEST_SUITE(NaturalGradientTest, Configs, ConfigNames);

namespace {
/// The options of a plain step (no momentum, no clipping) with the Fisher
/// estimated on the first 30 examples.
hfisher::NaturalGradientOptions plain_step(hfisher::Structure structure, hfisher::FisherKind kind) {
  hfisher::NaturalGradientOptions o;
  o.lr = 0.1;
  o.damping = 0.05;
  o.momentum = 0;
  o.kl_clip = 0;
  o.curvature_examples = 30;
  o.structure = structure;
  o.kind = kind;
  return o;
}

/// d = (F_sym + damping I)^-1 g by LAPACK Cholesky (F_sym: F's symmetric part).
std::vector<double> dense_direction(const HostBatch& F, const std::vector<double>& g, double damping) {
  const long P = long(g.size());
  HostBatch A = F, L(1, P, P);
  for (long i = 0; i < P; ++i)
    for (long j = 0; j < P; ++j) A(0, i, j) = 0.5 * (F(0, i, j) + F(0, j, i)) + (i == j ? damping : 0.0);
  EXPECT_EQ(lapack_cholesky(A, 0, L), 0);
  std::vector<double> d(g);
  for (long i = 0; i < P; ++i) {
    for (long k = 0; k < i; ++k) d[i] -= L(0, i, k) * d[k];
    d[i] /= L(0, i, i);
  }
  for (long i = P - 1; i >= 0; --i) {
    for (long k = i + 1; k < P; ++k) d[i] -= L(0, k, i) * d[k];
    d[i] /= L(0, i, i);
  }
  return d;
}

/// theta1 = theta0 - lr d entry by entry, to tol (1 + lr max |d|).
void expect_step(const std::vector<double>& theta0, const std::vector<double>& theta1, const std::vector<double>& d,
                 double lr, double tol) {
  double dmax = 0;
  for (double x : d) dmax = std::max(dmax, std::abs(x));
  for (std::size_t i = 0; i < d.size(); ++i)
    EXPECT_NEAR(theta1[i], theta0[i] - lr * d[i], tol * (1 + lr * dmax)) << "parameter " << i;
}
}  // namespace

TYPED_TEST(NaturalGradientTest, StepEqualsDenseNaturalGradient) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::MLP<S, E> model({4, 5, 3}, hfisher::nn::Activation::Tanh, 3);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(30, 4, 3, 7));
  const long P = model.num_params();
  auto o = plain_step(hfisher::Structure::BlockDiagonal, hfisher::FisherKind::MonteCarlo);
  o.refresh = 10;
  o.fisher.seed = 4;
  // the Fisher the optimizer will estimate at its first refresh (window 0, seed + 1)
  hfisher::FisherOptions f = o.fisher;
  f.examples = 30;
  f.seed = o.fisher.seed + 1;
  auto F = host_matrix(hfisher::estimate_fisher(model, data, o.kind, o.structure, f)->to_dense());
  typename hfisher::nn::MLP<S, E>::Cache c;
  typename hfisher::nn::MLP<S, E>::Vector grad("grad", P);
  model.loss_grad(data.x, data.y, grad, c);
  auto g = to_host1(grad);
  auto theta0 = to_host1(model.params());
  // dense: (F + damping I) d = g by LAPACK Cholesky
  const auto d = dense_direction(F, g, o.damping);
  hfisher::NaturalGradient<S, E> ngd(model, data, o);
  ngd.step(model.params(), grad);
  expect_step(theta0, to_host1(model.params()), d, o.lr, TrainTol<S>::step);
  // KL clipping: the step shrinks so that lr^2 d^T (F + damping) d <= kl_clip
  auto o2 = o;
  o2.kl_clip = 1e-6;
  hfisher::NaturalGradient<S, E> clipped(model, data, o2);
  clipped.step(model.params(), grad);
  EXPECT_LT(clipped.last_clip(), 1.0);
  // bad options
  auto bad = o;
  bad.lr = -1;
  using NG = hfisher::NaturalGradient<S, E>;
  EXPECT_THROW(NG(model, data, bad), hfisher::Error);
  typename hfisher::nn::MLP<S, E>::Vector short_grad("g", 3);
  EXPECT_THROW(ngd.step(model.params(), short_grad), hfisher::Error);
}

// NaturalGradient on a Sequential (a convolution of 2 x 2 patches into 4
// tokens, a position embedding, causal self-attention in a residual block,
// the mean over tokens, a classifier): one step, with the block-diagonal and
// the K-FAC (KFC, eigen-damped) curvature, equals the dense natural-gradient
// step of the same estimate
TYPED_TEST(NaturalGradientTest, StepOnATransformerEqualsDenseNaturalGradient) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using hfisher::nn::LayerSpec;
  using Model = hfisher::nn::Sequential<S, E>;
  std::vector<LayerSpec> specs = {LayerSpec::conv(4, 2, 2), LayerSpec::position_embedding(),
                                  LayerSpec::residual_begin(), LayerSpec::layer_norm()};
  for (const auto& l : hfisher::nn::multi_head_attention(4, 2, true)) specs.push_back(l);
  for (const auto& l : {LayerSpec::residual_end(), LayerSpec::avg_pool(2), LayerSpec::linear(3)}) specs.push_back(l);
  for (auto structure : {hfisher::Structure::BlockDiagonal, hfisher::Structure::KFAC}) {
    Model model({1, 4, 4}, specs, 3);
    auto data = hfisher::nn::to_device<S, E>(random_dataset(30, 16, 3, 7));
    const long P = model.num_params();
    auto o = plain_step(structure, hfisher::FisherKind::MonteCarlo);
    o.fisher.seed = 4;
    hfisher::FisherOptions f = o.fisher;
    f.examples = 30;
    f.seed = o.fisher.seed + 1;
    auto F = host_matrix(hfisher::estimate_fisher(model, data, o.kind, o.structure, f)->to_dense());
    typename Model::Cache c;
    typename Model::Vector grad("grad", P);
    model.loss_grad(data.x, data.y, grad, c);
    const auto d = dense_direction(F, to_host1(grad), o.damping);
    auto theta0 = to_host1(model.params());
    hfisher::NaturalGradient<S, E, hfisher::nn::Sequential> ngd(model, data, o);
    ngd.step(model.params(), grad);
    SCOPED_TRACE(hfisher::to_string(structure));
    expect_step(theta0, to_host1(model.params()), d, o.lr, TrainTol<S>::step);
  }
}

// The Fisher of the whole model, cross-layer blocks included, through
// NaturalGradient: Structure::Network (one HODLR over every parameter, from
// Fisher-vector products) at a tight tolerance gives the step of the dense
// whole-model natural gradient, whose Fisher is formed here column by column
// from FisherProduct (itself tested against the brute-force Fisher)
TYPED_TEST(NaturalGradientTest, WholeModelFisherThroughNetworkStructure) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::MLP<S, E> model({4, 5, 3}, hfisher::nn::Activation::Tanh, 3);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(30, 4, 3, 7));
  const long P = model.num_params();
  auto o = plain_step(hfisher::Structure::Network, hfisher::FisherKind::GGN);
  o.fisher.compression.leaf = 8;
  o.fisher.set_tol(FisherTol<S>::compress);
  // the dense whole-model Fisher on the optimizer's first window
  hfisher::FisherOptions f = o.fisher;
  f.examples = 30;
  hfisher::fisher::FisherProduct<S, E> Fv(model, data, o.kind, f);
  typename hfisher::fisher::FisherProduct<S, E>::Matrix I("I", P, P), FI("FI", P, P);
  auto Ih = Kokkos::create_mirror_view(I);
  for (long i = 0; i < P; ++i) Ih(i, i) = S(1);
  Kokkos::deep_copy(I, Ih);
  Fv.apply(I, FI);
  auto F = host_matrix(FI);
  // its cross-layer blocks matter: they hold a real share of F
  const long P0 = model.layers()[0].size();
  double cross = 0, all = 0;
  for (long i = 0; i < P; ++i)
    for (long j = 0; j < P; ++j) {
      all += F(0, i, j) * F(0, i, j);
      if ((i < P0) != (j < P0)) cross += F(0, i, j) * F(0, i, j);
    }
  ASSERT_GT(cross, 1e-4 * all);
  typename hfisher::nn::MLP<S, E>::Cache c;
  typename hfisher::nn::MLP<S, E>::Vector grad("grad", P);
  model.loss_grad(data.x, data.y, grad, c);
  auto g = to_host1(grad);
  auto theta0 = to_host1(model.params());
  const auto d = dense_direction(F, g, o.damping);
  hfisher::NaturalGradient<S, E> ngd(model, data, o);
  ngd.step(model.params(), grad);
  EXPECT_EQ(ngd.curvature().structure(), hfisher::Structure::Network);
  EXPECT_EQ(ngd.curvature().size(), P);
  {
    auto Fn = host_matrix(ngd.curvature().to_dense());
    double e = 0, n = 0;
    for (long i = 0; i < P; ++i)
      for (long j = 0; j < P; ++j)
        e += (Fn(0, i, j) - F(0, i, j)) * (Fn(0, i, j) - F(0, i, j)), n += F(0, i, j) * F(0, i, j);
    EXPECT_LE(std::sqrt(e / n), TrainTol<S>::network_fisher) << "the optimizer's Fisher against the dense one";
  }
  expect_step(theta0, to_host1(model.params()), d, o.lr, TrainTol<S>::network_step);
}

// decay_average: K-FAC averages its factors; other structures scale and add
TYPED_TEST(NaturalGradientTest, RunningAverages) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const double tol = TrainTol<S>::averages;
  using Mat = typename hfisher::fisher::KFACOperator<S, E>::Matrix;
  auto spd = [](int n, unsigned seed) {
    auto h = spd_batch(1, n, seed);
    Mat M("M", n, n);
    auto mh = Kokkos::create_mirror_view(M);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) mh(i, j) = S(h(0, i, j));
    Kokkos::deep_copy(M, mh);
    return M;
  };
  auto A0 = spd(3, 1), A1 = spd(3, 2), G0 = spd(2, 3), G1 = spd(2, 4);
  auto hA0 = host_matrix(A0), hA1 = host_matrix(A1), hG0 = host_matrix(G0), hG1 = host_matrix(G1);
  hfisher::fisher::KFACOperator<S, E> K(A0, G0), K1(A1, G1);
  const double d = 0.7;
  K.decay_average(K1, d);
  auto got = host_matrix(K.to_dense());
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k)
        for (int l = 0; l < 3; ++l) {
          const double g = d * hG0(0, i, k) + (1 - d) * hG1(0, i, k), a = d * hA0(0, j, l) + (1 - d) * hA1(0, j, l);
          EXPECT_NEAR(got(0, i * 3 + j, k * 3 + l), g * a, tol * 100);
        }
  EXPECT_THROW(K.decay_average(K1, 1.5), hfisher::Error);
  // the optimizer with a dense curvature, refresh every step, decay 0.5:
  // after two steps the curvature is 0.5 F(theta_0, window 0) + 0.5 F(theta_1, window 1)
  hfisher::nn::MLP<S, E> model({4, 3, 3}, hfisher::nn::Activation::Tanh, 3);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(20, 4, 3, 7));
  hfisher::NaturalGradientOptions o;
  o.structure = hfisher::Structure::Dense;
  o.refresh = 1;
  o.decay = 0.5;
  o.curvature_examples = 8;
  o.kl_clip = 0;
  hfisher::NaturalGradient<S, E> ngd(model, data, o);
  auto estimate = [&](int window) {
    hfisher::FisherOptions f = o.fisher;
    f.examples = 8;
    f.seed = o.fisher.seed + window + 1;
    const auto w = hfisher::nn::rows(data, 8 * window, 8);
    return host_matrix(hfisher::estimate_fisher(model, w, o.kind, o.structure, f)->to_dense());
  };
  typename hfisher::nn::MLP<S, E>::Cache c;
  typename hfisher::nn::MLP<S, E>::Vector grad("grad", model.num_params());
  model.loss_grad(data.x, data.y, grad, c);
  auto F0 = estimate(0);
  ngd.step(model.params(), grad);
  auto F1 = estimate(1);
  ngd.step(model.params(), grad);
  auto F = host_matrix(ngd.curvature().to_dense());
  double fmax = 0;
  for (double x : F0.a) fmax = std::max(fmax, std::abs(x));
  for (size_t k = 0; k < F.a.size(); ++k) EXPECT_NEAR(F.a[k], 0.5 * F0.a[k] + 0.5 * F1.a[k], tol * 10 * fmax) << k;
}

// Levenberg-Marquardt: small accurate steps lower the damping, overshooting
// steps raise it; the probe leaves the parameters where they were
TYPED_TEST(NaturalGradientTest, LevenbergMarquardtDamping) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::MLP<S, E> model({4, 5, 3}, hfisher::nn::Activation::Tanh, 3);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(30, 4, 3, 7));
  hfisher::NaturalGradientOptions o;
  o.structure = hfisher::Structure::BlockDiagonal;
  o.kind = hfisher::FisherKind::GGN;  // the GGN is the Hessian model of the loss
  o.momentum = 0;
  o.kl_clip = 0;
  o.curvature_examples = 30;
  o.damping = 1.0;
  o.lm_interval = 1;
  o.lr = 1e-3;  // a tiny step: the quadratic model is accurate, rho ~ 1
  hfisher::NaturalGradient<S, E> small(model, data, o);
  small.refresh();
  const auto before = to_host1(model.params());
  small.adapt_damping(model.params());
  EXPECT_EQ(to_host1(model.params()), before);
  EXPECT_GT(small.last_rho(), 0.75);
  EXPECT_NEAR(small.damping(), 1.0 * o.lm_factor, 1e-12);
  auto big = o;
  big.lr = 200;  // far past the minimum along the direction: rho < 1/4
  big.damping = 1e-3;
  hfisher::NaturalGradient<S, E> over(model, data, big);
  over.refresh();
  over.adapt_damping(model.params());
  EXPECT_LT(over.last_rho(), 0.25);
  EXPECT_NEAR(over.damping(), 1e-3 / o.lm_factor, 1e-12);
  typename hfisher::nn::MLP<S, E>::Vector other("theta", model.num_params());
  EXPECT_THROW(over.adapt_damping(other), hfisher::Error);  // not the model's parameters
  auto bad = o;
  bad.min_damping = 2.0;  // above the damping
  EXPECT_THROW((hfisher::NaturalGradient<S, E>(model, data, bad)), hfisher::Error);
}

// write / read of the state: a resumed optimizer continues bit for bit
TYPED_TEST(NaturalGradientTest, SavedStateResumesBitForBit) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  auto data = hfisher::nn::to_device<S, E>(random_dataset(40, 4, 3, 5));
  for (bool kfac : {true, false}) {
    auto o = kfac ? hfisher::NaturalGradientOptions::kfac() : hfisher::NaturalGradientOptions{};
    o.refresh = 3;
    o.lm_interval = 2;
    o.curvature_examples = 12;
    o.fisher.lowrank.rank = 6;
    using Model = hfisher::nn::MLP<S, E>;
    Model a({4, 5, 3}, hfisher::nn::Activation::ReLU, 8);
    hfisher::NaturalGradient<S, E> na(a, data, o);
    typename Model::Cache c;
    typename Model::Vector grad("grad", a.num_params());
    auto run = [&](Model& m, hfisher::NaturalGradient<S, E>& n, int from, int to) {
      for (int k = from; k < to; ++k) {
        const int r0 = (k * 8) % 32;
        const typename Model::Matrix X = Kokkos::subview(data.x, Kokkos::make_pair(r0, r0 + 8), Kokkos::ALL());
        const typename Model::Labels y = Kokkos::subview(data.y, Kokkos::make_pair(r0, r0 + 8));
        m.loss_grad(X, y, grad, c);
        n.step(m.params(), grad);
      }
    };
    run(a, na, 0, 4);
    std::stringstream model_state, opt_state;
    a.write(model_state);
    na.write(opt_state);
    run(a, na, 4, 9);
    Model b = Model::read(model_state, "model");
    hfisher::NaturalGradient<S, E> nb(b, data, o);
    nb.read(opt_state, "state");
    EXPECT_EQ(nb.steps(), 4);
    {
      // a version-1 state (the tag "HFNGD001" where the header now is) is still read
      hfisher::NaturalGradient<S, E> nv1(b, data, o);
      std::istringstream v1("HFNGD001" + opt_state.str().substr(16));
      nv1.read(v1, "version 1");
      EXPECT_EQ(nv1.steps(), 4);
      EXPECT_EQ(nv1.damping(), nb.damping());
    }
    run(b, nb, 4, 9);
    EXPECT_EQ(to_host1(b.params()), to_host1(a.params())) << (kfac ? "kfac" : "lowrank");
    EXPECT_EQ(nb.damping(), na.damping());
    // a truncated state is refused
    std::string cut = opt_state.str().substr(0, 20);
    std::istringstream is(cut);
    EXPECT_THROW(nb.read(is, "cut"), hfisher::Error);
    // mutated states (what a checkpoint would hold behind its seal): read or
    // refused with an hfisher::Error, never a crash
    const std::string path = unique_temp(std::string("ngd_state_") + (kfac ? "kfac" : "lowrank") + ".bin");
    hfisher::io::atomic_write_sealed(path, "test", [&](std::ostream& os) { na.write(os); });
    fuzz_loader(
        path,
        [&](const std::string& p) {
          std::ifstream i(p, std::ios::binary);
          hfisher::NaturalGradient<S, E> n(b, data, o);
          n.read(i, p);
        },
        40);
    std::filesystem::remove(path);
  }
}
