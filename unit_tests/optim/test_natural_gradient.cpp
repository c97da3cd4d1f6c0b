// One NaturalGradient step against a dense natural-gradient step computed
// with LAPACK from the same Fisher estimate.
#include "../test_helpers.hpp"

using namespace hfisher_test;

template <class C>
class NaturalGradientTest : public ::testing::Test {};
TYPED_TEST_SUITE(NaturalGradientTest, Configs, ConfigNames);

TYPED_TEST(NaturalGradientTest, StepEqualsDenseNaturalGradient) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const bool dbl = std::is_same<S, double>::value;
  hfisher::nn::MLP<S, E> model({4, 5, 3}, hfisher::nn::Activation::Tanh, 3);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(30, 4, 3, 7));
  const long P = model.num_params();
  hfisher::NaturalGradientOptions o;
  o.lr = 0.1;
  o.damping = 0.05;
  o.momentum = 0;
  o.kl_clip = 0;
  o.refresh = 10;
  o.curvature_examples = 30;
  o.structure = hfisher::Structure::BlockDiagonal;
  o.kind = hfisher::FisherKind::MonteCarlo;
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
  HostBatch A = F, L(1, P, P);
  for (long i = 0; i < P; ++i) A(0, i, i) += o.damping;
  ASSERT_EQ(lapack_cholesky(A, 0, L), 0);
  std::vector<double> d(g);
  for (long i = 0; i < P; ++i) {
    for (long k = 0; k < i; ++k) d[i] -= L(0, i, k) * d[k];
    d[i] /= L(0, i, i);
  }
  for (long i = P - 1; i >= 0; --i) {
    for (long k = i + 1; k < P; ++k) d[i] -= L(0, k, i) * d[k];
    d[i] /= L(0, i, i);
  }
  hfisher::NaturalGradient<S, E> ngd(model, data, o);
  ngd.step(model.params(), grad);
  auto theta1 = to_host1(model.params());
  double dmax = 0;
  for (double x : d) dmax = std::max(dmax, std::abs(x));
  for (long i = 0; i < P; ++i)
    EXPECT_NEAR(theta1[i], theta0[i] - o.lr * d[i], (dbl ? 1e-10 : 1e-3) * (1 + o.lr * dmax)) << "parameter " << i;
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
