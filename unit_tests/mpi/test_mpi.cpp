// hfisher::dist under mpirun (1, 2 and 4 ranks): collectives, and every
// distributed path against the same computation in one process, run on each
// rank with a one-process communicator.
#include <gtest/gtest.h>
#include <hfisher/hfisher.hpp>

#include <cstdlib>

#include "../test_helpers.hpp"

using namespace hfisher_test;

namespace {

hfisher::dist::Communicator& world() {
  static hfisher::dist::Communicator w = hfisher::dist::Communicator::world();
  return w;
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  return max_abs_diff(a, b) / std::max(max_abs(b), 1e-300);
}

// grad += c theta |theta| entry by entry (the gradient of c |theta|^3 / 3: a hook that
// adds a term computed from the parameters, as a penalty does)
template <class E, class V>
void add_cubic_term(const V& grad, const V& theta, typename V::non_const_value_type c) {
  Kokkos::parallel_for(
      "test::add_cubic_term", Kokkos::RangePolicy<E>(0, grad.extent(0)),
      KOKKOS_LAMBDA(const long i) { grad(i) += c * theta(i) * (theta(i) < 0 ? -theta(i) : theta(i)); });
}

}  // namespace

template <class C>
class DistTest : public ::testing::Test {};
TYPED_TEST_SUITE(DistTest, Configs, ConfigNames);

TEST(Dist, ShardCoversRowsInOrder) {
  for (long n : {0L, 1L, 3L, 7L, 100L})
    for (int P : {1, 2, 3, 4}) {
      long next = 0;
      for (int r = 0; r < P; ++r) {
        const auto s = hfisher::dist::shard(n, r, P);
        EXPECT_EQ(s.first, next);
        EXPECT_LE(s.second - s.first, n / P + 1);
        EXPECT_GE(s.second - s.first, n / P);
        next = s.second;
      }
      EXPECT_EQ(next, n);
    }
}

TYPED_TEST(DistTest, Collectives) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const auto& c = world();
  const int P = c.size(), r = c.rank();
  Kokkos::View<S*, typename E::memory_space> v("v", 5);
  Kokkos::deep_copy(v, S(r + 1));
  c.allreduce_sum(v);
  for (double x : to_host1(v)) EXPECT_EQ(x, P * (P + 1) / 2.0);
  Kokkos::deep_copy(v, S(r == P - 1 ? 7 : -1));
  c.broadcast(v, P - 1);
  for (double x : to_host1(v)) EXPECT_EQ(x, 7.0);
  // 7 rows of 3: rank r fills its shard with its rank
  Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space> m("m", 7, 3);
  const auto s = hfisher::dist::shard(7, r, P);
  Kokkos::deep_copy(Kokkos::subview(m, Kokkos::make_pair(s.first, s.second), Kokkos::ALL()), S(r));
  c.allgather_rows(m, 7, 3);
  auto mh = to_host2(m);
  for (int q = 0; q < P; ++q) {
    const auto sq = hfisher::dist::shard(7, q, P);
    for (long i = sq.first; i < sq.second; ++i)
      for (int j = 0; j < 3; ++j) EXPECT_EQ(mh[i][j], double(q));
  }
  // reduce-scatter: entry (i, j) of rank q is q + 10 i + 100 j; rank r's rows get the sums
  Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space> w("w", 7, 3);
  {
    auto wh = Kokkos::create_mirror_view(w);
    for (int i = 0; i < 7; ++i)
      for (int j = 0; j < 3; ++j) wh(i, j) = S(r + 10 * i + 100 * j);
    Kokkos::deep_copy(w, wh);
  }
  c.reduce_scatter_rows(w, 7, 3);
  auto wh = to_host2(w);
  for (long i = s.first; i < s.second; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(wh[i][j], P * (P - 1) / 2.0 + P * (10.0 * i + 100.0 * j)) << i << " " << j;
  EXPECT_THROW(c.reduce_scatter_rows(w, 6, 3), hfisher::Error);  // wrong shape
  EXPECT_EQ(c.sum(1.0), double(P));
  EXPECT_EQ(c.max(double(r)), double(P - 1));
  std::string bytes = r == 0 ? std::string("hfisher\0bytes", 13) : std::string();
  c.broadcast(bytes, 0);
  EXPECT_EQ(bytes, std::string("hfisher\0bytes", 13));
  EXPECT_THROW(c.allgather_rows(m, 6, 3), hfisher::Error);  // wrong shape
}

// data-parallel epochs (uneven shards; a batch smaller than the ranks) equal
// one process: SGD and Adam, their step sharded over the ranks or not, with a
// hook that adds a term computed from the parameters (as a penalty does)
TYPED_TEST(DistTest, TrainEpochEqualsOneProcess) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using M = hfisher::nn::MLP<S, E>;
  auto data = hfisher::nn::to_device<S, E>(random_dataset(37, 6, 4, 3));
  auto run = [&](auto make_opt, bool with_hook, bool shard_step) {
    for (int batch : {10, 3, 37}) {
      M ref({6, 5, 4}, hfisher::nn::Activation::Tanh, 9), par({6, 5, 4}, hfisher::nn::Activation::Tanh, 9);
      auto o1 = make_opt();
      auto o2 = make_opt();
      auto hook_of = [&](const M& model) {
        return [&model, with_hook](const typename M::Vector& grad) {
          if (with_hook) add_cubic_term<E>(grad, model.params(), S(0.3));
        };
      };
      std::mt19937_64 g1(5), g2(5);
      double l1 = 0, l2 = 0;
      for (int e = 0; e < 3; ++e) {
        l1 = hfisher::nn::train_epoch(ref, data, batch, o1, g1, hook_of(ref));
        l2 = hfisher::dist::train_epoch(par, data, batch, o2, g2, hook_of(par), {}, world(), shard_step);
      }
      EXPECT_LE(max_rel_diff(to_host1(par.params()), to_host1(ref.params())), Tol<S>::ranks)
          << "batch " << batch << ", hook " << with_hook << ", sharded step " << shard_step;
      EXPECT_NEAR(l2, l1, Tol<S>::ranks * 10 * std::abs(l1)) << "batch " << batch;
    }
  };
  auto sgd = [] {
    hfisher::nn::SGD<S, E> o;
    o.lr = 0.1;
    o.weight_decay = 1e-2;
    return o;
  };
  auto adam = [] {
    hfisher::nn::Adam<S, E> o;
    o.lr = 0.01;
    o.weight_decay = 1e-2;
    return o;
  };
  for (bool hook : {false, true})
    for (bool shard : {true, false}) {
      run(sgd, hook, shard);
      run(adam, hook, shard);
    }
}

// penalties (every method; Monte-Carlo labels) consolidated over the ranks equal one process
TYPED_TEST(DistTest, ConsolidationEqualsOneProcess) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::MLP<S, E> model({5, 6, 3}, hfisher::nn::Activation::ReLU, 4);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(23, 5, 3, 2));
  for (auto m : {hfisher::PenaltyMethod::EWC, hfisher::PenaltyMethod::OnlineEWC, hfisher::PenaltyMethod::KFACLaplace,
                 hfisher::PenaltyMethod::Hierarchical}) {
    hfisher::FisherOptions o;
    o.examples = 23;
    o.batch = 4;  // several passes per rank
    o.compression.leaf = 8;
    o.set_tol(FisherTol<S>::compress);
    hfisher::FisherPenalty<S, E> one(m, 2.0, 0.8, hfisher::FisherKind::MonteCarlo, o),
        par(m, 2.0, 0.8, hfisher::FisherKind::MonteCarlo, o);
    auto th = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.params());
    for (int t = 0; t < 2; ++t) {
      for (long i = 0; i < model.num_params(); ++i) th(i) += S(0.05 * ((i * 7 + t) % 5 - 2));
      Kokkos::deep_copy(model.params(), th);
      one.consolidate(model, data);
      par.consolidate(model, data, world());
    }
    for (long i = 0; i < model.num_params(); ++i) th(i) += S(0.1 * ((i * 3) % 7 - 3));
    Kokkos::deep_copy(model.params(), th);
    const double v1 = one.value(model.params()), v2 = par.value(model.params());
    EXPECT_NEAR(v2, v1, Tol<S>::ranks * 100 * (1 + std::abs(v1))) << hfisher::to_string(m);
    typename hfisher::FisherPenalty<S, E>::Vector g1("g1", model.num_params()), g2("g2", model.num_params());
    one.add_gradient(model.params(), g1);
    par.add_gradient(model.params(), g2);
    EXPECT_LE(max_rel_diff(to_host1(g2), to_host1(g1)), Tol<S>::ranks * 100) << hfisher::to_string(m);
    EXPECT_EQ(par.bytes(), one.bytes());
  }
}

// per-layer factorizations sharded over the ranks (dealt largest first to the
// least-loaded rank) and broadcast: each rank computes only its share,
// receives the rest, and solves exactly as one process that factored
// everything itself (K-FAC with factored damping: the damped inverses
// shipped with the eigendecompositions)
TYPED_TEST(DistTest, FactorizationsShardedOverRanks) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::MLP<S, E> model({6, 5, 5, 4, 3}, hfisher::nn::Activation::Tanh, 5);  // 4 layers
  auto data = hfisher::nn::to_device<S, E>(random_dataset(30, 6, 3, 12));
  hfisher::FisherOptions o;
  o.examples = 30;
  o.compression.leaf = 4;
  const int P = world().size(), r = world().rank();
  for (int c = 0; c < 5; ++c) {
    const auto st = c == 1   ? hfisher::Structure::BlockDiagonal
                    : c == 2 ? hfisher::Structure::HODLR
                    : c == 4 ? hfisher::Structure::HSS
                             : hfisher::Structure::KFAC;
    o.kfac.damping = c == 3 ? hfisher::KFACDamping::Factored : hfisher::KFACDamping::Eigen;
    auto one = hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, st, o);
    auto par = one->clone();  // every rank holds the same operator
    const double lam = 0.05;
    const auto rep = hfisher::prepare_sharded(*par, lam, world());
    const int L = 4;
    EXPECT_EQ(rep.blocks, L);
    if (P <= L) {
      EXPECT_GE(rep.computed, 1) << hfisher::to_string(st) << ": rank " << r << " did none of the work";
    }
    if (P > 1) {
      EXPECT_LT(rep.computed, L) << hfisher::to_string(st) << ": rank " << r << " did all of the work";
    }
    EXPECT_EQ(rep.received, L - rep.computed) << hfisher::to_string(st);
    EXPECT_EQ(world().sum(double(rep.computed)), double(L));
    EXPECT_TRUE(hfisher::fisher::prepared(*par, lam));
    typename hfisher::CurvatureOperator<S, E>::Vector b("b", one->size()), x1("x1", one->size()), x2("x2", one->size());
    Kokkos::deep_copy(b, S(1));
    one->solve(b, x1, lam);  // factored here, as one process would
    par->solve(b, x2, lam);
    EXPECT_LE(max_rel_diff(to_host1(x2), to_host1(x1)), Tol<S>::ranks) << hfisher::to_string(st);
  }
}

// a layer whose build fails on its owner (over the memory budget): every
// rank gets the owner's error, naming the layer and the owner, and none is
// left waiting in a broadcast
TYPED_TEST(DistTest, AnOwnersErrorReachesEveryRank) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  // layer 0: 3 x 21 = 63 parameters, layer 1: 2 x 4 = 8; with 30 examples a
  // HODLR block asks about 8 KiB per parameter (516 KB and 66 KB)
  hfisher::nn::MLP<S, E> model({20, 3, 2}, hfisher::nn::Activation::Tanh, 5);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(30, 20, 2, 12));
  hfisher::FisherOptions o;
  o.examples = 30;
  o.compression.leaf = 4;
  o.memory_budget = 200000;
  hfisher_test::expect_throw_with(
      [&] {
        hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::HODLR, o, world());
      },
      {"layer 0", "over the memory budget"}, "rank " + std::to_string(world().rank()));
  // the ranks still agree afterwards
  EXPECT_EQ(world().sum(1.0), double(world().size()));
}

// Fisher-vector products sharded over examples and summed over the ranks
// equal one process's, for every kind; the matrix-free HODLR Fisher built
// from them too (the same products on every rank: the same matrix)
TYPED_TEST(DistTest, FisherProductsEqualOneProcess) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using FP = hfisher::FisherProduct<S, E>;
  hfisher::nn::MLP<S, E> model({6, 5, 4, 3}, hfisher::nn::Activation::Tanh, 5);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(23, 6, 3, 12));
  hfisher::FisherOptions o;
  o.batch = 4;
  o.mc_samples = 2;
  for (auto kind : {hfisher::FisherKind::Empirical, hfisher::FisherKind::MonteCarlo, hfisher::FisherKind::GGN}) {
    FP one(model, data, kind, o), par(model, data, kind, o, world());
    const long n = one.size();
    typename FP::Matrix V("V", n, 3), Y1("Y1", n, 3), Y2("Y2", n, 3);
    {
      const HostBatch r = random_batch(1, int(n), 3, 7);
      auto h = Kokkos::create_mirror_view(V);
      for (long i = 0; i < n; ++i)
        for (int j = 0; j < 3; ++j) h(i, j) = S(r(0, int(i), j));
      Kokkos::deep_copy(V, h);
    }
    one.apply(V, Y1);
    par.apply(V, Y2);
    auto a = host_matrix(Y1), b = host_matrix(Y2);
    EXPECT_LE(max_rel_diff(b.a, a.a), Tol<S>::ranks) << hfisher::to_string(kind);
  }
  o.matrix_free = true;
  o.compression.leaf = 4;
  o.set_tol(std::is_same<S, double>::value ? 1e-8 : 1e-4);
  o.layers = {1};
  auto h1 = hfisher::estimate_fisher(model, data, hfisher::FisherKind::GGN, hfisher::Structure::HODLR, o);
  auto h2 = hfisher::estimate_fisher(model, data, hfisher::FisherKind::GGN, hfisher::Structure::HODLR, o, world());
  EXPECT_LE(max_rel_diff(host_matrix(h2->to_dense()).a, host_matrix(h1->to_dense()).a), 100 * Tol<S>::ranks);
}

// natural-gradient (K-FAC and low-rank) training over the ranks equals one process
TYPED_TEST(DistTest, NaturalGradientEqualsOneProcess) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  auto data = hfisher::nn::to_device<S, E>(random_dataset(40, 6, 4, 7));
  for (bool kfac : {true, false}) {
    hfisher::nn::MLP<S, E> ref({6, 5, 4}, hfisher::nn::Activation::Tanh, 2),
        par({6, 5, 4}, hfisher::nn::Activation::Tanh, 2);
    auto no = kfac ? hfisher::NaturalGradientOptions::kfac() : hfisher::NaturalGradientOptions{};
    no.refresh = 2;
    no.curvature_examples = 15;
    no.fisher.lowrank.rank = 8;
    no.lr = 0.05;
    hfisher::NaturalGradient<S, E> o1(ref, data, no), o2(par, data, no, world());
    std::mt19937_64 g1(1), g2(1);
    hfisher::nn::train_epoch(ref, data, 8, o1, g1);
    hfisher::dist::train_epoch(
        par, data, 8, o2, g2, [](const auto&) {}, {}, world());
    // rounding differences pass through the curvature solves: a looser bound
    EXPECT_LE(max_rel_diff(to_host1(par.params()), to_host1(ref.params())), Tol<S>::ranks * 1000)
        << (kfac ? "kfac" : "lowrank");
  }
}

int main(int argc, char** argv) {
  hfisher::dist::Environment env(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  int failed = 1;
  {
    hfisher::ScopeGuard guard(argc, argv);
    if (const char* ts = std::getenv("HFISHER_TEST_HOST_TEAM_SIZE")) hfisher::detail::host_team_size() = std::atoi(ts);
    if (world().rank() != 0) {  // one report: rank 0 prints, every rank's verdict counts
      auto& l = ::testing::UnitTest::GetInstance()->listeners();
      delete l.Release(l.default_result_printer());
    }
    failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
    failed = world().max(double(failed)) > 0 ? 1 : 0;
  }
  return failed;
}
