#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>

#include <hfisher/continual/experiment.hpp>
#include <hfisher/continual/metrics.hpp>
#include <hfisher/continual/penalty.hpp>
#include <hfisher/continual/replay.hpp>
#include <hfisher/continual/report.hpp>
#include <hfisher/continual/streams.hpp>

#include "../fuzz_helpers.hpp"
#include "../test_helpers.hpp"
#include "../tiny_mnist.hpp"

using namespace hfisher_test;

template <class C>
class PenaltyTest : public ::testing::Test {};
TYPED_TEST_SUITE(PenaltyTest, Configs, ConfigNames);
template <class C>
class ReplayTest : public ::testing::Test {};
TYPED_TEST_SUITE(ReplayTest, Configs, ConfigNames);

TEST(Metrics, AgainstHandComputedMatrix) {
  // R(i, j): accuracy on task j after task i (3 tasks)
  hfisher::continual::AccuracyMatrix R(3);
  const double v[3][3] = {{0.9, 0.1, 0.1}, {0.7, 0.8, 0.1}, {0.6, 0.75, 0.95}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) R.set(i, j, v[i][j]);
  EXPECT_NEAR(R.acc(0), 0.9, 1e-15);
  EXPECT_NEAR(R.acc(1), 0.75, 1e-15);
  EXPECT_NEAR(R.acc(2), (0.6 + 0.75 + 0.95) / 3, 1e-15);
  EXPECT_NEAR(R.bwt(2), ((0.6 - 0.9) + (0.75 - 0.8)) / 2, 1e-15);
  // forgetting: task 0 best before 2 is 0.9 -> 0.6; task 1 best 0.8 -> 0.75
  EXPECT_NEAR(R.forgetting(2), (0.3 + 0.05) / 2, 1e-15);
  EXPECT_NEAR(R.bwt(0), 0.0, 0);
  EXPECT_NEAR(R.learning_accuracy(2), (0.9 + 0.8 + 0.95) / 3, 1e-15);
  EXPECT_NEAR(R.learning_accuracy(0), 0.9, 1e-15);
  // intransigence against a reference that learned every task to 0.97
  hfisher::continual::AccuracyMatrix ref(3);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) ref.set(i, j, i == j ? 0.97 : 0.5);
  EXPECT_NEAR(R.intransigence(2, ref), (0.07 + 0.17 + 0.02) / 3, 1e-15);
  EXPECT_NEAR(R.intransigence(2, R), 0.0, 0);
  EXPECT_THROW(R.intransigence(2, hfisher::continual::AccuracyMatrix(2)), hfisher::Error);
  EXPECT_EQ(R.completed_rows(), 3);
  EXPECT_THROW(R.set(3, 0, 0.5), hfisher::Error);
  EXPECT_THROW(R.set(0, 0, 1.5), hfisher::Error);
  hfisher::continual::AccuracyMatrix P(2);
  P.set(0, 0, 0.5);
  EXPECT_THROW(P.acc(1), hfisher::Error);  // row 1 not measured
}

// every method's name parses back to it; penalties map to their
// PenaltyMethod, whose name is the same; unknown names list the valid ones
TEST(Methods, NamesRoundTripAndPenalties) {
  using hfisher::continual::Method;
  EXPECT_EQ(hfisher::continual::method_names().size(), 6u);
  for (const auto& [n, m] : hfisher::continual::method_names()) {
    EXPECT_EQ(hfisher::continual::parse_method(n), m) << n;
    EXPECT_EQ(std::string(hfisher::continual::to_string(m)), n);
    if (hfisher::continual::is_penalty(m)) {
      EXPECT_EQ(std::string(hfisher::to_string(hfisher::continual::penalty_method(m))), n);
    } else {
      EXPECT_THROW(hfisher::continual::penalty_method(m), hfisher::Error) << n;
    }
  }
  EXPECT_FALSE(hfisher::continual::is_penalty(Method::Finetune));
  EXPECT_FALSE(hfisher::continual::is_penalty(Method::Replay));
  try {
    hfisher::continual::parse_method("EWC");
    FAIL() << "names are case-sensitive";
  } catch (const hfisher::Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("no method 'EWC'"), std::string::npos) << w;
    EXPECT_NE(w.find("online-ewc"), std::string::npos) << w;
  }
}

TEST(Streams, PermutedAndSplit) {
  hfisher::nn::Dataset d;
  d.n = 40;
  d.features = 6;
  d.classes = 10;
  for (int i = 0; i < d.n; ++i) {
    for (int f = 0; f < d.features; ++f) d.x.push_back(float(i * 10 + f));
    d.y.push_back(i % 10);
  }
  auto s = hfisher::continual::make_stream(d, d, hfisher::continual::StreamKind::Permuted, 3,
                                           hfisher::continual::Scenario::ClassIncremental, 5);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].train.x, d.x);  // task 0: identity
  EXPECT_NE(s[1].train.x, d.x);
  auto a = s[1].train.x, b = d.x;  // a permutation of each row
  std::sort(a.begin(), a.begin() + 6);
  std::sort(b.begin(), b.begin() + 6);
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + 6, b.begin()));
  auto sp = hfisher::continual::make_stream(d, d, hfisher::continual::StreamKind::Split, 5,
                                            hfisher::continual::Scenario::TaskIncremental, 5);
  ASSERT_EQ(sp.size(), 5u);
  for (int t = 0; t < 5; ++t) {
    EXPECT_EQ(sp[t].classes, (std::vector<int>{2 * t, 2 * t + 1}));
    EXPECT_EQ(sp[t].train.n, 8);
    for (int y : sp[t].train.y) EXPECT_EQ(y / 2, t);
  }
  EXPECT_THROW(hfisher::continual::make_stream(d, d, hfisher::continual::StreamKind::Split, 6,
                                               hfisher::continual::Scenario::TaskIncremental, 5),
               hfisher::Error);
}

// value and gradient of every penalty against dense Fishers and anchors
TYPED_TEST(PenaltyTest, ValueAndGradientAgainstDense) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::MLP<S, E> model({5, 4, 3}, hfisher::nn::Activation::Tanh, 4);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(20, 5, 3, 2));
  std::mt19937 g(2);
  std::normal_distribution<double> nd(0, 1);
  const long P = model.num_params();
  for (auto m : {hfisher::PenaltyMethod::EWC, hfisher::PenaltyMethod::OnlineEWC, hfisher::PenaltyMethod::KFACLaplace,
                 hfisher::PenaltyMethod::Hierarchical}) {
    hfisher::FisherOptions o;
    o.examples = 20;
    o.compression.leaf = 8;
    o.set_tol(FisherTol<S>::compress);
    o.multilevel.rank = 64;  // capped at each layer's size: the multilevel sums stay exact
    const double lambda = 3.0, gamma = 0.7;
    hfisher::FisherPenalty<S, E> pen(m, lambda, gamma, hfisher::FisherKind::Empirical, o);
    // dense references: per task F_t (dense of a fresh estimate) and anchors
    std::vector<HostBatch> Fs;
    std::vector<std::vector<double>> anchors;
    auto th = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.params());
    for (int t = 0; t < 3; ++t) {
      for (long i = 0; i < P; ++i) th(i) += S(0.1 * nd(g));
      Kokkos::deep_copy(model.params(), th);
      auto Ft = hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::default_structure(m), o);
      auto Fh = to_host2(Ft->to_dense());
      HostBatch F(1, P, P);
      for (long i = 0; i < P; ++i)
        for (long j = 0; j < P; ++j) F(0, i, j) = Fh[i][j];
      Fs.push_back(F);
      anchors.push_back(to_host1(model.params()));
      pen.consolidate(model, data);
    }
    // the dense penalty's terms
    std::vector<std::pair<HostBatch, std::vector<double>>> terms;
    if (m == hfisher::PenaltyMethod::EWC) {
      for (int t = 0; t < 3; ++t) terms.push_back({Fs[t], anchors[t]});
    } else {
      HostBatch F(1, P, P);
      for (int t = 0; t < 3; ++t)
        for (size_t k = 0; k < F.a.size(); ++k)
          F.a[k] = (m == hfisher::PenaltyMethod::OnlineEWC ? gamma * F.a[k] : F.a[k]) + Fs[t].a[k];
      terms.push_back({F, anchors[2]});
    }
    for (long i = 0; i < P; ++i) th(i) += S(0.2 * nd(g));
    Kokkos::deep_copy(model.params(), th);
    auto theta = to_host1(model.params());
    double ref = 0;
    std::vector<double> gref(P, 0.0);
    for (const auto& [F, a] : terms)
      for (long i = 0; i < P; ++i)
        for (long j = 0; j < P; ++j) {
          ref += 0.5 * lambda * (theta[i] - a[i]) * F(0, i, j) * (theta[j] - a[j]);
          gref[i] += lambda * F(0, i, j) * (theta[j] - a[j]);
        }
    const double tol = TrainTol<S>::penalty;
    EXPECT_NEAR(pen.value(model.params()), ref, tol * (1 + std::abs(ref))) << hfisher::to_string(m);
    typename hfisher::FisherPenalty<S, E>::Vector grad("grad", P);
    Kokkos::deep_copy(grad, S(1));
    pen.add_gradient(model.params(), grad);
    auto gh = to_host1(grad);
    double gmax = 0;
    for (double x : gref) gmax = std::max(gmax, std::abs(x));
    for (long i = 0; i < P; ++i)
      EXPECT_NEAR(gh[i], 1.0 + gref[i], tol * (1 + gmax)) << hfisher::to_string(m) << " " << i;
    EXPECT_EQ(pen.tasks(), 3);
    EXPECT_EQ(pen.terms(), m == hfisher::PenaltyMethod::EWC ? 3 : 1);
    EXPECT_GT(pen.bytes(), 0u);
    // write / read: the same value
    std::stringstream ss;
    pen.write(ss);
    hfisher::FisherPenalty<S, E> back(m, 1.0);
    back.read(ss, "stream");
    EXPECT_NEAR(back.value(model.params()), pen.value(model.params()), 1e-12 * (1 + std::abs(ref)));
    // a version-1 record (no header, no end magic) is still read
    {
      const std::string v2 = ss.str();
      ASSERT_EQ(v2.substr(0, 8), std::string(hfisher::FisherPenalty<S, E>::record_magic(), 8));
      std::istringstream v1(v2.substr(16, v2.size() - 24));
      hfisher::FisherPenalty<S, E> old(m, 1.0);
      old.read(v1, "version 1");
      EXPECT_NEAR(old.value(model.params()), pen.value(model.params()), 1e-12 * (1 + std::abs(ref)));
    }
    // mutated records (what a checkpoint holds behind its seal): read or
    // refused with an hfisher::Error, never a crash; a read penalty has a
    // finite lambda >= 0 and gamma in (0, 1]
    const std::string path = unique_temp(std::string("penalty_") + hfisher::to_string(m) + ".bin");
    hfisher::io::atomic_write_sealed(path, "test", [&](std::ostream& o) { pen.write(o); });
    fuzz_loader(
        path,
        [m](const std::string& p) {
          std::ifstream i(p, std::ios::binary);
          hfisher::FisherPenalty<S, E> f(m, 1.0);
          f.read(i, p);
          EXPECT_TRUE(std::isfinite(f.lambda()) && f.lambda() >= 0) << f.lambda();
          EXPECT_TRUE(f.gamma() > 0 && f.gamma() <= 1) << f.gamma();
        },
        40);
    std::filesystem::remove(path);
  }
  using Pen = hfisher::FisherPenalty<S, E>;
  EXPECT_THROW(Pen(hfisher::PenaltyMethod::EWC, -1.0), hfisher::Error);
  EXPECT_THROW(Pen(hfisher::PenaltyMethod::OnlineEWC, 1.0, 0.0), hfisher::Error);
}

// a penalty consolidated on a Sequential (a convolution among its layers):
// the value is 1/2 lambda d^T F d with F the estimate of the same structure
// (K-FAC Laplace: KFC; the hierarchical penalty as HODLR)
TYPED_TEST(PenaltyTest, ConsolidatesASequential) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using hfisher::nn::LayerSpec;
  hfisher::nn::Sequential<S, E> model(
      {1, 4, 4}, {LayerSpec::conv(2, 3, 1, 1), LayerSpec::relu(), LayerSpec::max_pool(2), LayerSpec::linear(3)}, 5);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(12, 16, 3, 6));
  const long P = model.num_params();
  std::mt19937 g(3);
  std::normal_distribution<double> nd(0, 1);
  for (auto m :
       {hfisher::PenaltyMethod::EWC, hfisher::PenaltyMethod::KFACLaplace, hfisher::PenaltyMethod::Hierarchical}) {
    hfisher::FisherOptions o;
    o.compression.leaf = 8;
    o.set_tol(FisherTol<S>::compress);
    const double lambda = 2.0;
    hfisher::FisherPenalty<S, E> pen(m, lambda, 1.0, hfisher::FisherKind::Empirical, o);
    const auto st =
        m == hfisher::PenaltyMethod::Hierarchical ? hfisher::Structure::HODLR : hfisher::default_structure(m);
    if (m == hfisher::PenaltyMethod::Hierarchical) pen.set_structure(st);
    const auto F = to_host2(hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, st, o)->to_dense());
    const auto anchor = to_host1(model.params());
    pen.consolidate(model, data);
    typename hfisher::nn::Sequential<S, E>::Vector theta("theta", P);
    auto th = Kokkos::create_mirror_view(theta);
    for (long i = 0; i < P; ++i) th(i) = S(anchor[i] + 0.1 * nd(g));
    Kokkos::deep_copy(theta, th);
    double ref = 0;
    for (long i = 0; i < P; ++i)
      for (long j = 0; j < P; ++j) ref += 0.5 * lambda * (th(i) - anchor[i]) * F[i][j] * (th(j) - anchor[j]);
    EXPECT_GT(ref, 0.0) << hfisher::to_string(m);
    EXPECT_NEAR(pen.value(theta), ref, TrainTol<S>::penalty_value * (1 + ref)) << hfisher::to_string(m);
  }
  // the multilevel default of the hierarchical penalty takes linear layers only
  hfisher::FisherPenalty<S, E> ml(hfisher::PenaltyMethod::Hierarchical, 1.0);
  EXPECT_THROW(ml.consolidate(model, data), hfisher::Error);
}

namespace {
/// Solves K x = b (K small, SPD) by Gaussian elimination: a test oracle.
std::vector<double> solve_small(std::vector<std::vector<double>> K, std::vector<double> b) {
  const int n = int(b.size());
  for (int c = 0; c < n; ++c) {
    for (int r = c + 1; r < n; ++r) {
      const double f = K[r][c] / K[c][c];
      for (int k = c; k < n; ++k) K[r][k] -= f * K[c][k];
      b[r] -= f * b[c];
    }
  }
  for (int r = n - 1; r >= 0; --r) {
    for (int k = r + 1; k < n; ++k) b[r] -= K[r][k] * b[k];
    b[r] /= K[r][r];
  }
  return b;
}
}  // namespace

// Quadratic tasks L_t = 1/2 (x - a_t)^T H_t (x - a_t), each minimised in turn
// with the penalty, whose Fisher of task t is H_t exactly (folded in with
// the public consolidate(F, anchor)). Pins the behaviour docs/continual.md
// explains: online EWC (gamma 1, lambda 1: the recursive Laplace
// approximation) lands on the joint optimum of all tasks; EWC's per-task
// anchors do not (its penalty's minimiser is the Fisher-weighted mean of the
// anchors, a point no task was trained at); with two tasks the methods agree
// and the forgetting of task 1 falls as lambda grows.
TYPED_TEST(PenaltyTest, QuadraticTasksOnlineEwcRecoversJointOptimum) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using Pen = hfisher::FisherPenalty<S, E>;
  using Dense = hfisher::fisher::DenseOperator<S, E>;
  const double tol = TrainTol<S>::optimum;  // relative, on x
  const int P = 6, T = 3;
  std::mt19937 g(11);
  std::normal_distribution<double> nd(0, 1);
  std::vector<std::vector<std::vector<double>>> H(T, std::vector<std::vector<double>>(P, std::vector<double>(P)));
  std::vector<std::vector<double>> a(T, std::vector<double>(P));
  for (int t = 0; t < T; ++t) {
    std::vector<std::vector<double>> B(P, std::vector<double>(P));
    for (auto& r : B)
      for (auto& x : r) x = nd(g);
    for (int i = 0; i < P; ++i)
      for (int j = 0; j < P; ++j) {
        double s = i == j ? 0.3 : 0.0;
        for (int k = 0; k < P; ++k) s += B[i][k] * B[j][k] / P;
        H[t][i][j] = s;
      }
    for (auto& x : a[t]) x = 2 * nd(g);
  }
  auto dense = [&](const std::vector<std::vector<double>>& M) {
    typename Dense::Matrix F("H", P, P);
    auto Fh = Kokkos::create_mirror_view(F);
    for (int i = 0; i < P; ++i)
      for (int j = 0; j < P; ++j) Fh(i, j) = S(M[i][j]);
    Kokkos::deep_copy(F, Fh);
    return std::make_unique<Dense>(F);
  };
  // tasks 0..last in turn; returns x after each task
  auto run = [&](hfisher::PenaltyMethod m, double lambda, int tasks) {
    Pen pen(m, lambda, 1.0);
    typename Pen::Vector x("x", P), grad("grad", P);
    std::vector<std::vector<double>> xs;
    for (int t = 0; t < tasks; ++t) {
      // Newton steps on L_t + penalty; its Hessian is H_t + lambda sum_{s<t} H_s
      std::vector<std::vector<double>> K = H[t];
      for (int s = 0; s < t; ++s)
        for (int i = 0; i < P; ++i)
          for (int j = 0; j < P; ++j) K[i][j] += lambda * H[s][i][j];
      for (int it = 0; it < 2; ++it) {
        auto xh = to_host1(x);
        auto gh = Kokkos::create_mirror_view(grad);
        for (int i = 0; i < P; ++i) {
          double s = 0;
          for (int j = 0; j < P; ++j) s += H[t][i][j] * (xh[j] - a[t][j]);
          gh(i) = S(s);
        }
        Kokkos::deep_copy(grad, gh);
        pen.add_gradient(x, grad);
        auto step = solve_small(K, to_host1(grad));
        auto xn = Kokkos::create_mirror_view(x);
        for (int i = 0; i < P; ++i) xn(i) = S(xh[i] - step[i]);
        Kokkos::deep_copy(x, xn);
      }
      xs.push_back(to_host1(x));
      pen.consolidate(dense(H[t]), x);
    }
    return xs;
  };
  auto rel = [](const std::vector<double>& u, const std::vector<double>& v) {
    double d = 0, n = 0;
    for (size_t i = 0; i < u.size(); ++i) d += (u[i] - v[i]) * (u[i] - v[i]), n += v[i] * v[i];
    return std::sqrt(d / n);
  };
  // the joint optimum (sum H_t)^-1 sum H_t a_t
  std::vector<std::vector<double>> Hs(P, std::vector<double>(P, 0.0));
  std::vector<double> rhs(P, 0.0);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < P; ++i)
      for (int j = 0; j < P; ++j) Hs[i][j] += H[t][i][j], rhs[i] += H[t][i][j] * a[t][j];
  const auto joint = solve_small(Hs, rhs);
  const auto online = run(hfisher::PenaltyMethod::OnlineEWC, 1.0, T);
  EXPECT_LT(rel(online.back(), joint), tol);
  const auto ewc = run(hfisher::PenaltyMethod::EWC, 1.0, T);
  EXPECT_LT(rel(ewc[1], online[1]), tol);   // two tasks: the same penalty
  EXPECT_GT(rel(ewc.back(), joint), 1e-2);  // three: per-task anchors miss it
  // two tasks, lambda growing: task 1's excess loss falls, and task 2 is still learned
  auto loss = [&](int t, const std::vector<double>& x) {
    double s = 0;
    for (int i = 0; i < P; ++i)
      for (int j = 0; j < P; ++j) s += 0.5 * (x[i] - a[t][i]) * H[t][i][j] * (x[j] - a[t][j]);
    return s;
  };
  double prev = std::numeric_limits<double>::infinity();
  for (double lambda : {0.0, 0.1, 1.0, 10.0, 100.0}) {
    const auto x = run(hfisher::PenaltyMethod::EWC, lambda, 2);
    const double forget = loss(0, x[1]);
    EXPECT_LE(forget, prev * (1 + tol)) << "lambda " << lambda;
    EXPECT_LT(loss(1, x[1]), loss(1, x[0])) << "lambda " << lambda;
    prev = forget;
  }
  // the caller's Fisher is checked
  Pen pen(hfisher::PenaltyMethod::OnlineEWC, 1.0);
  typename Pen::Vector x("x", P), y("y", P + 1);
  EXPECT_THROW(pen.consolidate(nullptr, x), hfisher::Error);
  EXPECT_THROW(pen.consolidate(dense(H[0]), y), hfisher::Error);
  Kokkos::deep_copy(x, std::numeric_limits<S>::quiet_NaN());
  EXPECT_THROW(pen.consolidate(dense(H[0]), x), hfisher::Error);
}

// experience replay: the kept examples are distinct rows of each task, and
// the replayed gradient is the memory batch's mean loss gradient, each
// example under its own task's class mask (tasks 1 and 2 share the empty
// mask: one loss for both)
TYPED_TEST(ReplayTest, KeepsTasksAndAddsTheMemoryGradient) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using Mem = hfisher::continual::ReplayMemory<S, E>;
  const double tol = TrainTol<S>::averages;
  hfisher::nn::MLP<S, E> model({5, 4, 3}, hfisher::nn::Activation::Tanh, 4);
  const auto h0 = random_dataset(20, 5, 3, 2), h1 = random_dataset(15, 5, 3, 3), h2 = random_dataset(12, 5, 3, 4);
  const auto d1 = hfisher::nn::to_device<S, E>(h1), d2 = hfisher::nn::to_device<S, E>(h2);
  typename Mem::Labels m0("m0", 3), none;
  auto m0h = Kokkos::create_mirror_view(m0);
  m0h(0) = 1, m0h(1) = 1, m0h(2) = 0;  // task 0 sees classes 0 and 1 only
  Kokkos::deep_copy(m0, m0h);
  hfisher::nn::Dataset h0m = h0;  // task 0's labels within its mask
  for (auto& y : h0m.y) y %= 2;
  const auto d0m = hfisher::nn::to_device<S, E>(h0m);
  Mem mem(6, 7);
  EXPECT_TRUE(mem.empty());
  const long P = model.num_params();
  typename Mem::Vector grad("grad", P);
  std::mt19937_64 rng(1);
  Kokkos::deep_copy(grad, S(1));
  EXPECT_EQ(mem.add_gradient(model, grad, 8, rng), 0.0);  // empty: nothing added
  for (double v : to_host1(grad)) EXPECT_EQ(v, 1.0);
  mem.add_task(d0m, m0);
  mem.add_task(d1, none);
  mem.add_task(d2, typename Mem::Labels());
  ASSERT_EQ(mem.tasks(), 3);
  EXPECT_EQ(mem.size(), 18);
  EXPECT_EQ(mem.bytes(), 18 * (5 * sizeof(S) + sizeof(int)) + 3 * sizeof(int));
  // each kept example is a distinct row of its task, with its label
  const hfisher::nn::Dataset* src[3] = {&h0m, &h1, &h2};
  for (int t = 0; t < 3; ++t) {
    auto x = to_host2(mem.task_data(t).x);
    auto y = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mem.task_data(t).y);
    std::vector<int> found;
    for (int i = 0; i < 6; ++i) {
      int row = -1;
      for (int r = 0; r < src[t]->n && row < 0; ++r) {
        bool same = src[t]->y[r] == y(i);
        for (int f = 0; f < 5 && same; ++f) same = double(S(src[t]->x[r * 5 + f])) == x[i][f];
        if (same) row = r;
      }
      ASSERT_GE(row, 0) << "task " << t << " example " << i;
      found.push_back(row);
    }
    std::sort(found.begin(), found.end());
    EXPECT_EQ(std::unique(found.begin(), found.end()), found.end()) << "task " << t;
  }
  // a batch no smaller than the memory: every kept example, each task
  // weighted by its share (6 of 18) and under its own mask
  typename hfisher::nn::MLP<S, E>::Cache c;
  typename Mem::Vector g0("g0", P), g1("g1", P), g2("g2", P);
  const double l0 = model.loss_grad(mem.task_data(0).x, mem.task_data(0).y, g0, c, m0);
  const double l1 = model.loss_grad(mem.task_data(1).x, mem.task_data(1).y, g1, c);
  const double l2 = model.loss_grad(mem.task_data(2).x, mem.task_data(2).y, g2, c);
  std::vector<double> full(P);
  {
    const auto a = to_host1(g0), b = to_host1(g1), e = to_host1(g2);
    for (long i = 0; i < P; ++i) full[i] = (a[i] + b[i] + e[i]) / 3;
  }
  Kokkos::deep_copy(grad, S(1));
  const double loss = mem.add_gradient(model, grad, 18, rng);
  EXPECT_NEAR(loss, (l0 + l1 + l2) / 3, tol * (1 + loss));
  {
    const auto g = to_host1(grad);
    for (long i = 0; i < P; ++i) EXPECT_NEAR(g[i], 1 + full[i], tol) << i;
  }
  // smaller batches: drawn from rng (the same state, the same gradient), and
  // unbiased: their mean over many draws approaches the whole memory's
  std::mt19937_64 r1(5), r2(5);
  typename Mem::Vector ga("ga", P), gb("gb", P), sum("sum", P);
  mem.add_gradient(model, ga, 4, r1);
  mem.add_gradient(model, gb, 4, r2);
  EXPECT_EQ(to_host1(ga), to_host1(gb));
  const int draws = 300;
  for (int k = 0; k < draws; ++k) mem.add_gradient(model, sum, 4, r1);
  {
    const auto s = to_host1(sum);
    double gmax = 0, err = 0;
    for (long i = 0; i < P; ++i) {
      gmax = std::max(gmax, std::abs(full[i]));
      err = std::max(err, std::abs(s[i] / draws - full[i]));
    }
    EXPECT_LT(err, 0.1 * gmax);
  }
  // bad input, named
  EXPECT_THROW(Mem(0, 1), hfisher::Error);
  Mem big(16, 1);
  EXPECT_THROW(big.add_task(d1, none), hfisher::Error);  // 15 examples < 16
  EXPECT_THROW(mem.add_task(hfisher::nn::to_device<S, E>(random_dataset(20, 4, 3, 2)), none), hfisher::Error);
  EXPECT_THROW(mem.add_gradient(model, grad, 0, rng), hfisher::Error);
  typename Mem::Vector short_grad("short", P - 1);
  EXPECT_THROW(mem.add_gradient(model, short_grad, 4, rng), hfisher::Error);
  EXPECT_THROW(mem.task_data(3), hfisher::Error);
}

namespace {

// the tiny set of tiny_mnist.hpp as uncompressed IDX files
void write_tiny_mnist(const std::string& dir, const std::string& stem, int n, unsigned seed) {
  const auto f = hfisher_test::tiny_mnist(n, seed);
  std::ofstream(dir + "/" + stem + "-images-idx3-ubyte", std::ios::binary)
      .write(reinterpret_cast<const char*>(f.images.data()), std::streamsize(f.images.size()));
  std::ofstream(dir + "/" + stem + "-labels-idx1-ubyte", std::ios::binary)
      .write(reinterpret_cast<const char*>(f.labels.data()), std::streamsize(f.labels.size()));
}

}  // namespace

// The experiment as a library call (what hfisher-continual runs behind its
// command line): every method x candidate runs every task, the choice on
// validation data keeps the best candidate, and a second call with resume
// reads every run back from its checkpoints without training.
TEST(ContinualExperiment, RunsSelectsAndResumesThroughTheLibrary) {
  namespace fs = std::filesystem;
  namespace hc = hfisher::continual;
  const std::string dir = unique_temp("experiment");
  fs::remove_all(dir);
  fs::create_directories(dir + "/out/checkpoints");
  write_tiny_mnist(dir, "train", 300, 1);
  write_tiny_mnist(dir, "t10k", 100, 2);
  hc::ExperimentOptions o;
  o.data = dir;
  o.output = dir + "/out";
  o.tasks = 2;
  o.train_examples = 300;
  o.test_examples = 100;
  o.fisher.examples = 20;
  o.batch = 32;
  o.hidden = {8};
  o.methods = {hc::Method::Finetune, hc::Method::EWC};
  o.validation = 30;
  o.lambda_grid = {1, 100};
  std::vector<std::string> log;
  hc::ExperimentHooks hooks;
  hooks.log = [&](const std::string& line) { log.push_back(line); };
  int checkpoints = 0;
  hooks.after_checkpoint = [&](int) { ++checkpoints; };
  const hfisher::dist::Communicator comm;
  auto ex = hc::run_experiment<hfisher::nn::MLP>(o, comm, hooks);
  ASSERT_EQ(ex.runs.size(), 3u);  // fine-tuning, then EWC at lambda 1 and 100
  EXPECT_EQ(checkpoints, 6);      // one per run and task
  EXPECT_EQ(ex.model_text, "MLP 16 8 10");
  EXPECT_EQ(ex.parameters, 8 * 17 + 10 * 9);
  EXPECT_EQ(ex.runs[1].lambda, 1.0);
  EXPECT_EQ(ex.runs[2].lambda, 100.0);
  for (const auto& r : ex.runs) {
    EXPECT_EQ(r.done, 2);
    EXPECT_FALSE(r.diverged);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) {
        EXPECT_GE(r.R(i, j), 0.0);
        EXPECT_LE(r.R(i, j), 1.0);
      }
    EXPECT_EQ(r.curve.size(), std::size_t(2 * o.epochs * hc::RunResult::curve_fields));
  }
  bool logged_last_task = false;
  for (const auto& l : log) logged_last_task |= l.find("task  2/2: loss") != std::string::npos;
  EXPECT_TRUE(logged_last_task);

  // the choice keeps EWC's candidate with the better final validation ACC
  auto chosen = ex;
  const auto sel = hc::select_candidates(o, chosen);
  ASSERT_EQ(sel.size(), 1u);
  EXPECT_EQ(sel[0].method, hc::Method::EWC);
  const std::size_t best = ex.runs[1].V.acc(1) >= ex.runs[2].V.acc(1) ? 1 : 2;
  EXPECT_EQ(sel[0].chosen.lambda, ex.runs[best].lambda);
  ASSERT_EQ(chosen.runs.size(), 2u);
  EXPECT_EQ(chosen.runs[1].lambda, ex.runs[best].lambda);

  // the report writes the chosen runs' files
  hc::report_experiment(o, chosen, sel, {"test", 1, 1});
  std::ifstream js(o.output + "/results.json");
  const std::string json((std::istreambuf_iterator<char>(js)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("\"chosen_lambda\": " + std::to_string(int(ex.runs[best].lambda))), std::string::npos) << json;
  EXPECT_TRUE(fs::exists(o.output + "/results.csv"));
  EXPECT_TRUE(fs::exists(o.output + "/R_ewc.dat"));
  // a report of an unfinished run is refused, not written with missing rows
  auto partial = chosen;
  partial.runs[0].done = 1;
  partial.runs[0].fisher_bytes.resize(1);
  expect_throw_with(
      [&] {
        hc::report_experiment(o, partial, sel, {"test", 1, 1});
      },
      {"finetune (seed 1, lambda 0) finished 1 of 2 tasks", "select_candidates first"}, "an incomplete run");

  // resume: every run is read back, nothing is trained again
  o.resume = true;
  checkpoints = 0;
  const auto again = hc::run_experiment<hfisher::nn::MLP>(o, comm, hooks);
  EXPECT_EQ(checkpoints, 0);
  ASSERT_EQ(again.runs.size(), ex.runs.size());
  for (std::size_t k = 0; k < ex.runs.size(); ++k) EXPECT_EQ(again.runs[k].R.data(), ex.runs[k].R.data());
  // options that cannot run are refused before anything is read or trained
  auto bad = o;
  bad.tasks = 0;
  expect_throw_with([&] { hc::run_experiment<hfisher::nn::MLP>(bad, comm, hooks); },
                    {"hfisher::continual::run_experiment", "--tasks 0 is outside [1, 100]"}, "no tasks");
  bad = o;
  bad.validation = 0;
  expect_throw_with([&] { hc::run_experiment<hfisher::nn::MLP>(bad, comm, hooks); },
                    {"choose on validation data, never on the test set"}, "a grid without validation data");
  bad = o;
  bad.model = "cnn";
  expect_throw_with([&] { hc::run_experiment<hfisher::nn::Sequential>(bad, comm, hooks); },
                    {"--hierarchical-structure multilevel takes linear layers only"}, "multilevel on a cnn");
  bad.hstructure = "hodlr";
  expect_throw_with([&] { hc::run_experiment<hfisher::nn::MLP>(bad, comm, hooks); },
                    {"model 'cnn' runs on nn::Sequential, not on this Net"}, "cnn on an MLP");
  // a checkpoint of other settings is refused, not mixed in
  o.epochs = 2;
  expect_throw_with([&] { hc::run_experiment<hfisher::nn::MLP>(o, comm, hooks); },
                    {"written by a run with different arguments"}, "resume with other settings");
  // Fisher settings no flag sets enter the key too: such a run is not resumed from these checkpoints
  o.epochs = 1;
  for (auto set : std::vector<std::function<void(hfisher::FisherOptions&)>>{
           [](hfisher::FisherOptions& f) { f.mc_samples = 2; },
           [](hfisher::FisherOptions& f) { f.kfac.variant = hfisher::KFACVariant::Reduce; },
           [](hfisher::FisherOptions& f) { f.layers = {0}; }}) {
    auto other = o;
    set(other.fisher);
    for (auto m : o.methods) EXPECT_NE(hc::run_key(other, m, 1), hc::run_key(o, m, 1));
  }
  // a checkpoint of format 1 (the bare tag "HFCKPT01" where the common
  // header now is) is refused by name; version 2 files start with the header
  o.epochs = 1;
  for (const auto& e : fs::directory_iterator(o.output + "/checkpoints")) {
    std::string payload;
    {
      hfisher::io::SealedFile f(e.path().string(), "test");
      payload.assign(std::istreambuf_iterator<char>(f.stream()), std::istreambuf_iterator<char>());
    }
    ASSERT_GE(payload.size(), 16u);
    EXPECT_EQ(payload.substr(0, 8), std::string(hc::detail::checkpoint_magic(), 8));
    payload = "HFCKPT01" + payload.substr(16);
    hfisher::io::atomic_write_sealed(e.path().string(), "test", [&](std::ostream& out) { out << payload; });
  }
  expect_throw_with([&] { hc::run_experiment<hfisher::nn::MLP>(o, comm, hooks); },
                    {"a checkpoint of an earlier hfisher (format 1)", "--overwrite"}, "a format-1 checkpoint");
  fs::remove_all(dir);
}
