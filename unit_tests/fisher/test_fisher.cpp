// Every Fisher kind and structure against a brute-force reference: the dense
// Fisher accumulated from per-example gradients, one example at a time.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <sstream>

#include "../fuzz_helpers.hpp"
#include "../test_helpers.hpp"

using namespace hfisher_test;

template <class C>
class FisherTest : public ::testing::Test {};
TYPED_TEST_SUITE(FisherTest, Configs, ConfigNames);

namespace {

struct Reference {
  HostBatch F;                  // (1, P, P)
  std::vector<HostBatch> A, G;  // K-FAC factors per layer
};

// F = sum_n sum_r w psi psi^T with psi the per-example gradient from a
// backward pass of one example.
template <class S, class E>
Reference brute_force(const hfisher::nn::MLP<S, E>& model, const hfisher::nn::DeviceData<S, E>& data, int N,
                      hfisher::FisherKind kind, int mc, std::uint64_t seed) {
  using M = hfisher::nn::MLP<S, E>;
  const long P = model.num_params();
  const int C = model.outputs(), L = model.num_layers();
  Reference ref;
  ref.F = HostBatch(1, P, P);
  for (int l = 0; l < L; ++l) {
    ref.A.emplace_back(1, model.layers()[l].cols(), model.layers()[l].cols());
    ref.G.emplace_back(1, model.layers()[l].out, model.layers()[l].out);
  }
  typename M::Cache c;
  const int R = kind == hfisher::FisherKind::Empirical ? 1 : kind == hfisher::FisherKind::MonteCarlo ? mc : C;
  const double w = kind == hfisher::FisherKind::MonteCarlo ? 1.0 / (double(N) * R) : 1.0 / N;
  for (int n = 0; n < N; ++n) {
    typename M::Matrix X("X", 1, data.features());
    Kokkos::deep_copy(X, Kokkos::subview(data.x, Kokkos::make_pair(n, n + 1), Kokkos::ALL()));
    auto logits = model.forward(X, c);
    typename M::Matrix Pd("P", 1, C), Ed("E", 1, C);
    auto y = Kokkos::subview(data.y, Kokkos::make_pair(n, n + 1));
    hfisher::nn::softmax_xent(E(), logits, y, Pd, Ed, S(1));
    auto p = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), Pd);
    const int label = to_host1(y)[0];
    for (int l = 0; l < L; ++l) {
      auto a = to_host2(c.a[l]);
      const int cc = model.layers()[l].cols();
      for (int i = 0; i < cc; ++i)
        for (int j = 0; j < cc; ++j) ref.A[l](0, i, j) += a[0][i] * a[0][j] / N;
    }
    for (int r = 0; r < R; ++r) {
      auto eh = Kokkos::create_mirror_view(Ed);
      auto prow = Kokkos::subview(p, 0, Kokkos::ALL());
      const int t = kind == hfisher::FisherKind::Empirical    ? label
                    : kind == hfisher::FisherKind::MonteCarlo ? hfisher::fisher::sample_label(prow, C, seed, n, r)
                                                              : -1;
      for (int k = 0; k < C; ++k) {
        const double pk = double(p(0, k));
        eh(0, k) =
            kind == hfisher::FisherKind::GGN ? S(std::sqrt(double(p(0, r))) * ((k == r) - pk)) : S(pk - (k == t));
      }
      Kokkos::deep_copy(Ed, eh);
      typename M::Vector grad("grad", P);
      model.backward(c, Ed, grad, S(1));
      auto psi = to_host1(grad);
      for (long i = 0; i < P; ++i)
        for (long j = 0; j < P; ++j) ref.F(0, i, j) += w * psi[i] * psi[j];
      for (int l = 0; l < L; ++l) {
        auto g = to_host2(c.g[l]);
        const int o = model.layers()[l].out;
        for (int i = 0; i < o; ++i)
          for (int j = 0; j < o; ++j) ref.G[l](0, i, j) += w * g[0][i] * g[0][j];
      }
    }
  }
  return ref;
}

// the block-diagonal part of F (layers' blocks), the rest zero
HostBatch block_diag_of(const HostBatch& F, const std::vector<hfisher::nn::LayerShape>& ls) {
  HostBatch B(1, F.m, F.n);
  for (const auto& s : ls)
    for (long i = s.offset; i < s.offset + s.size(); ++i)
      for (long j = s.offset; j < s.offset + s.size(); ++j) B(0, i, j) = F(0, i, j);
  return B;
}

double rel_fro(const HostBatch& A, const HostBatch& B) {
  double num = 0, den = 0;
  for (size_t i = 0; i < A.a.size(); ++i) {
    num += (A.a[i] - B.a[i]) * (A.a[i] - B.a[i]);
    den += B.a[i] * B.a[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

template <class S, class E>
typename hfisher::CurvatureOperator<S, E>::Vector dev_vec(const std::vector<double>& v) {
  typename hfisher::CurvatureOperator<S, E>::Vector d("v", v.size());
  auto h = Kokkos::create_mirror_view(d);
  for (size_t i = 0; i < v.size(); ++i) h(i) = S(v[i]);
  Kokkos::deep_copy(d, h);
  return d;
}

// the CurvatureOperator contract, against the operator's own dense matrix:
// apply, quad, diag, solve and logdet with damping, save/load, clone + add/scale
template <class S, class E>
void check_operator(const hfisher::CurvatureOperator<S, E>& op, double damping, const std::string& what) {
  const long n = op.size();
  using FT = hfisher_test::FisherTol<S>;
  const auto F = host_matrix(op.to_dense());
  const double nF = std::max(1e-300, max_abs(F, 0));
  std::mt19937 g(3);
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> v(n);
  for (auto& x : v) x = nd(g);
  auto vd = dev_vec<S, E>(v);
  // apply and quad
  typename hfisher::CurvatureOperator<S, E>::Vector y("y", n);
  op.apply(vd, y);
  auto yh = to_host1(y);
  double q = 0, vn = 0;
  const double tol = FT::apply;
  for (long i = 0; i < n; ++i) {
    double s = 0;
    for (long j = 0; j < n; ++j) s += F(0, i, j) * v[j];
    EXPECT_NEAR(yh[i], s, tol * nF * std::sqrt(double(n)) * 4) << what << ": apply row " << i;
    q += v[i] * s;
    vn += v[i] * v[i];
  }
  EXPECT_NEAR(op.quad(vd), q, tol * nF * vn * n) << what << ": quad";
  // diag
  auto dg = to_host1(op.diag());
  for (long i = 0; i < n; ++i) EXPECT_NEAR(dg[i], F(0, i, i), tol * nF * 4) << what << ": diag " << i;
  // solve and logdet of F + damping I against LAPACK
  HostBatch Fd = F, Lc(1, n, n);
  for (long i = 0; i < n; ++i) Fd(0, i, i) += damping;
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < i; ++j) Fd(0, i, j) = Fd(0, j, i) = 0.5 * (Fd(0, i, j) + Fd(0, j, i));
  ASSERT_EQ(lapack_cholesky(Fd, 0, Lc), 0) << what;
  double ld = 0;
  for (long i = 0; i < n; ++i) ld += 2 * std::log(Lc(0, i, i));
  const double cond = (nF * n + damping) / damping;
  EXPECT_NEAR(op.logdet(damping), ld, FT::logdet * (n + std::abs(ld))) << what << ": logdet";
  typename hfisher::CurvatureOperator<S, E>::Vector x("x", n), Fx("Fx", n);
  op.solve(vd, x, damping);
  auto xh = to_host1(x);
  double res = 0;
  for (long i = 0; i < n; ++i) {
    double s = damping * xh[i];
    for (long j = 0; j < n; ++j) s += F(0, i, j) * xh[j];
    res = std::max(res, std::abs(s - v[i]));
  }
  EXPECT_LE(res, FT::solve * cond * std::sqrt(vn)) << what << ": solve residual";
  // save / load
  const std::string tag = dynamic_cast<const hfisher::fisher::Storable<S, E>&>(op).tag();
  const std::string path = unique_temp("curv_" + tag + ".bin");
  hfisher::fisher::save_curvature(op, path);
  auto back = hfisher::fisher::load_curvature<S, E>(path);
  EXPECT_EQ(back->size(), n);
  EXPECT_EQ(back->structure(), op.structure());
  EXPECT_EQ(back->bytes(), op.bytes());
  EXPECT_LE(rel_fro(host_matrix(back->to_dense()), F), FT::roundtrip) << what << ": load(save(F))";
  {
    std::ifstream in(path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(path + ".cut", std::ios::binary) << all.substr(0, all.size() - 9);
  }
  EXPECT_THROW((hfisher::fisher::load_curvature<S, E>(path + ".cut")), hfisher::Error) << what;
  EXPECT_THROW((hfisher::fisher::load_curvature<S, E>(path + ".none")), hfisher::Error) << what;
  // mutated payloads behind no seal: loaded or refused, never a crash (once
  // per structure and scalar type: the format does not depend on the kind)
  static std::set<std::string> fuzzed;
  if (fuzzed.insert(tag + std::to_string(sizeof(S))).second) {
    fuzz_loader(
        path, [](const std::string& p) { hfisher::fisher::load_curvature<S, E>(p); }, 60);
    // a tag no class reads: a structure stored under another class's tag, or no structure
    std::ostringstream os(std::ios::binary);
    hfisher::fisher::write_curvature(op, os);
    const std::string good = os.str();
    const auto at = good.find(tag);
    ASSERT_NE(at, std::string::npos) << what;
    for (const char* bad : {"network", "nonsense"}) {
      std::string b = good;
      for (int k = 0; k < 16; ++k) b[at + k] = k < int(std::strlen(bad)) ? bad[k] : '\0';
      std::istringstream is(b, std::ios::binary);
      try {
        hfisher::fisher::read_curvature<S, E>(is, "forged");
        ADD_FAILURE() << what << ": tag " << bad << " read";
      } catch (const hfisher::Error& e) {
        EXPECT_NE(std::string(e.what()).find("unknown structure tag '" + std::string(bad) + "'"), std::string::npos)
            << e.what();
      }
    }
  }
  std::remove(path.c_str());
  std::remove((path + ".cut").c_str());
  // online sum: F + 0.5 F = 1.5 F; scale
  auto sum = op.clone();
  hfisher::fisher::add(*sum, op, 0.5);
  EXPECT_LE(rel_fro(host_matrix(sum->to_dense()),
                    [&] {
                      HostBatch t = F;
                      for (auto& z : t.a) z *= 1.5;
                      return t;
                    }()),
            FT::sum)
      << what << ": add";
  hfisher::fisher::scale(*sum, 2.0);
  EXPECT_NEAR(to_host1(sum->diag())[0], 3.0 * F(0, 0, 0), FT::sum * nF) << what << ": scale";
  // bad input
  typename hfisher::CurvatureOperator<S, E>::Vector wrong("w", n + 1);
  EXPECT_THROW(op.apply(wrong, y), hfisher::Error) << what;
  EXPECT_THROW(op.solve(vd, x, -1.0), hfisher::Error) << what;
  auto vnan = dev_vec<S, E>(std::vector<double>(n, NAN));
  EXPECT_THROW(op.apply(vnan, y), hfisher::Error) << what;
}

}  // namespace

namespace {

// One (Fisher kind, structure) pair against the brute-force per-example
// Fisher of a small tanh MLP: the case below holds the model, the samples,
// the reference and its layer blocks; check_<structure> tests one structure.
template <class S, class E>
struct BruteForceCase {
  using FT = hfisher_test::FisherTol<S>;
  hfisher::nn::MLP<S, E> model{{6, 5, 4}, hfisher::nn::Activation::Tanh, 11};
  hfisher::FisherOptions o;
  Reference ref;
  HostBatch Fb;
  std::string k;
  hfisher::FisherSamples<S, E> samples;

  explicit BruteForceCase(hfisher::FisherKind kind) {
    const int N = 24;
    auto data = hfisher::nn::to_device<S, E>(random_dataset(N + 8, 6, 4, 5));
    o.examples = N;
    o.batch = 7;  // several passes, a short last one
    o.mc_samples = 3;
    o.seed = 9;
    o.set_tol(FT::compress);
    o.compression.leaf = 8;
    o.lowrank.rank = 200;
    ref = brute_force(model, data, N, kind, o.mc_samples, o.seed);
    Fb = block_diag_of(ref.F, model.layers());
    k = hfisher::to_string(kind);
    samples = hfisher::collect_samples(model, data, kind, o);
  }
};

// diagonal: exact (1e-10 in double)
template <class S, class E>
void check_diagonal(const BruteForceCase<S, E>& c) {
  using FT = hfisher_test::FisherTol<S>;
  auto op = hfisher::build_curvature(c.samples, hfisher::Structure::Diagonal, c.o);
  auto d = to_host1(op->diag());
  for (long i = 0; i < c.model.num_params(); ++i)
    EXPECT_NEAR(d[i], c.ref.F(0, i, i), FT::factors * (1 + std::abs(c.ref.F(0, i, i)))) << c.k << " diag " << i;
  check_operator(*op, 0.1, c.k + "/diagonal");
}

// block-diagonal dense: the exact layer blocks
template <class S, class E>
void check_blockdiagonal(const BruteForceCase<S, E>& c) {
  using FT = hfisher_test::FisherTol<S>;
  auto op = hfisher::build_curvature(c.samples, hfisher::Structure::BlockDiagonal, c.o);
  EXPECT_LE(rel_fro(host_matrix(op->to_dense()), c.Fb), FT::exact) << c.k << " block-diagonal";
  check_operator(*op, 0.05, c.k + "/blockdiag");
}

// K-FAC: factors equal the brute-force Kronecker factors
template <class S, class E>
void check_kfac(const BruteForceCase<S, E>& c) {
  using FT = hfisher_test::FisherTol<S>;
  auto op = hfisher::build_curvature(c.samples, hfisher::Structure::KFAC, c.o);
  auto* bd = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>*>(op.get());
  ASSERT_NE(bd, nullptr);
  for (int l = 0; l < c.model.num_layers(); ++l) {
    auto* kf = dynamic_cast<const hfisher::fisher::KFACOperator<S, E>*>(&bd->block(l));
    ASSERT_NE(kf, nullptr);
    EXPECT_TRUE(near(host_matrix(kf->terms()[0].A), c.ref.A[l], FT::factors, 1 + max_abs(c.ref.A[l], 0), "A"))
        << c.k << " layer " << l;
    EXPECT_TRUE(near(host_matrix(kf->terms()[0].G), c.ref.G[l], FT::factors, 1 + max_abs(c.ref.G[l], 0), "G"))
        << c.k << " layer " << l;
  }
  check_operator(*op, 0.05, c.k + "/kfac");
}

// low rank at full rank: equal to F over all parameters; diag always exact
template <class S, class E>
void check_lowrank(const BruteForceCase<S, E>& c) {
  using FT = hfisher_test::FisherTol<S>;
  auto op = hfisher::build_curvature(c.samples, hfisher::Structure::LowRank, c.o);
  EXPECT_LE(rel_fro(host_matrix(op->to_dense()), c.ref.F), FT::lowrank) << c.k << " low rank";
  auto o2 = c.o;
  o2.lowrank.rank = 3;
  auto small = hfisher::build_curvature(c.samples, hfisher::Structure::LowRank, o2);
  auto d = to_host1(small->diag());
  for (long i = 0; i < c.model.num_params(); ++i)
    EXPECT_NEAR(d[i], c.ref.F(0, i, i), FT::lowrank_diag * (1 + std::abs(c.ref.F(0, i, i)))) << c.k << " lr diag";
  check_operator(*small, 0.05, c.k + "/lowrank");
}

// multilevel: exact layer blocks when the root rank covers the samples;
// always PSD with an exact diagonal
template <class S, class E>
void check_multilevel(const BruteForceCase<S, E>& c) {
  using FT = hfisher_test::FisherTol<S>;
  auto full = c.o;
  full.multilevel.rank = 200;
  full.multilevel.levels = 2;
  auto op = hfisher::build_curvature(c.samples, hfisher::Structure::Multilevel, full);
  EXPECT_LE(rel_fro(host_matrix(op->to_dense()), c.Fb), FT::lowrank) << c.k << " multilevel (full rank)";
  auto lossy = c.o;
  lossy.multilevel.rank = 2;
  lossy.multilevel.levels = 3;
  lossy.multilevel.branching = 2;
  auto lop = hfisher::build_curvature(c.samples, hfisher::Structure::Multilevel, lossy);
  const auto D = host_matrix(lop->to_dense());
  const double nF = max_abs(c.Fb, 0);
  for (long i = 0; i < c.model.num_params(); ++i)
    EXPECT_NEAR(D(0, i, i), c.Fb(0, i, i), FT::lowrank_diag * (nF + 1)) << c.k << " multilevel diag " << i;
  const auto ev = lapack_eigenvalues(D, 0);
  EXPECT_GE(*std::min_element(ev.begin(), ev.end()), -FT::psd * nF) << c.k << " multilevel PSD";
  EXPECT_GT(rel_fro(D, c.Fb), FT::not_exact) << c.k << " rank 2 should not reproduce the blocks exactly";
  check_operator(*lop, 0.05, c.k + "/multilevel");
}

// HODLR: the layer blocks within the compression tolerance
template <class S, class E>
void check_hodlr(const BruteForceCase<S, E>& c) {
  using FT = hfisher_test::FisherTol<S>;
  auto op = hfisher::build_curvature(c.samples, hfisher::Structure::HODLR, c.o);
  EXPECT_LE(rel_fro(host_matrix(op->to_dense()), c.Fb), FT::hodlr) << c.k << " hierarchical";
  // a loose tolerance stays positive semi-definite (SPD-preserving compensation): damping 1e-8 factors
  auto loose = c.o;
  loose.set_tol(0.3);
  loose.compression.spd_compensation = true;
  auto lop = hfisher::build_curvature(c.samples, hfisher::Structure::HODLR, loose);
  typename hfisher::CurvatureOperator<S, E>::Vector bb("bb", lop->size()), xx("xx", lop->size());
  Kokkos::deep_copy(bb, S(1));
  EXPECT_NO_THROW(lop->solve(bb, xx, FT::solve_tol)) << c.k;
  check_operator(*op, 0.05, c.k + "/hierarchical");
}

// HSS: the layer blocks within the compression tolerance, and its report
template <class S, class E>
void check_hss(const BruteForceCase<S, E>& c) {
  using FT = hfisher_test::FisherTol<S>;
  auto op = hfisher::build_curvature(c.samples, hfisher::Structure::HSS, c.o);
  EXPECT_EQ(op->structure(), hfisher::Structure::HSS);
  EXPECT_LE(rel_fro(host_matrix(op->to_dense()), c.Fb), FT::hss) << c.k << " hss";
  const auto& bd = dynamic_cast<const hfisher::fisher::BlockDiagonalOperator<S, E>&>(*op);
  for (int l = 0; l < bd.num_blocks(); ++l) {
    const auto& h = dynamic_cast<const hfisher::fisher::HSSOperator<S, E>&>(bd.block(l)).matrix();
    EXPECT_GT(h.build_info().products, 0) << c.k << " layer " << l;
    EXPECT_LE(h.build_info().error_estimate, FT::hss) << c.k << " layer " << l;
  }
  // the SPD compensation is HODLR's; an HSS block says so
  auto spd = c.o;
  spd.compression.spd_compensation = true;
  hfisher_test::expect_throw_with([&] { hfisher::build_curvature(c.samples, hfisher::Structure::HSS, spd); },
                                  {"spd_compensation applies to HODLR blocks"}, c.k);
  check_operator(*op, 0.05, c.k + "/hss");
}

}  // namespace

// one test per (Fisher kind, structure) pair
#define HFISHER_KIND_STRUCTURE_TEST(KIND, STRUCTURE)                          \
  TYPED_TEST(FisherTest, KIND##_##STRUCTURE##_AgainstBruteForce) {            \
    using S = typename TypeParam::scalar;                                     \
    using E = typename TypeParam::exec;                                       \
    check_##STRUCTURE<S, E>(BruteForceCase<S, E>(hfisher::FisherKind::KIND)); \
  }
#define HFISHER_KIND_TESTS(KIND)                   \
  HFISHER_KIND_STRUCTURE_TEST(KIND, diagonal)      \
  HFISHER_KIND_STRUCTURE_TEST(KIND, blockdiagonal) \
  HFISHER_KIND_STRUCTURE_TEST(KIND, kfac)          \
  HFISHER_KIND_STRUCTURE_TEST(KIND, lowrank)       \
  HFISHER_KIND_STRUCTURE_TEST(KIND, multilevel)    \
  HFISHER_KIND_STRUCTURE_TEST(KIND, hodlr)         \
  HFISHER_KIND_STRUCTURE_TEST(KIND, hss)
HFISHER_KIND_TESTS(Empirical)
HFISHER_KIND_TESTS(MonteCarlo)
HFISHER_KIND_TESTS(GGN)
#undef HFISHER_KIND_TESTS
#undef HFISHER_KIND_STRUCTURE_TEST

// What an outside program needs without casts: per-example gradients
// (against loss_grad on one-row views), the K-FAC factors of an estimate
// (against the brute-force factors), and setting a model's parameters.
// Fisher-vector products, matrix-free (FisherProduct), against the
// brute-force Fisher: every kind, both activations, all layers (the
// cross-layer blocks included), one layer and two layers apart; several
// passes with a short last one, and fewer examples than the data holds.
TYPED_TEST(FisherTest, FisherProductsAgainstBruteForce) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using FP = hfisher::FisherProduct<S, E>;
  using FT = hfisher_test::FisherTol<S>;
  const double tol = FT::product;  // relative to the largest entry of F V
  const int N = 19, k = 3;
  auto data = hfisher::nn::to_device<S, E>(random_dataset(N + 5, 6, 4, 7));
  for (auto act : {hfisher::nn::Activation::Tanh, hfisher::nn::Activation::ReLU}) {
    hfisher::nn::MLP<S, E> model({6, 5, 4, 4}, act, 13);
    for (auto kind : {hfisher::FisherKind::Empirical, hfisher::FisherKind::MonteCarlo, hfisher::FisherKind::GGN}) {
      hfisher::FisherOptions o;
      o.examples = N;
      o.batch = 5;
      o.mc_samples = 3;
      o.seed = 4;
      const auto ref = brute_force(model, data, N, kind, o.mc_samples, o.seed);
      for (const auto& layers : {std::vector<int>{}, std::vector<int>{1}, std::vector<int>{0, 2}}) {
        const std::string what = std::string(hfisher::to_string(kind)) +
                                 (act == hfisher::nn::Activation::ReLU ? "/relu" : "/tanh") + " layers " +
                                 std::to_string(layers.size());
        o.layers = layers;
        FP fp(model, data, kind, o);
        std::vector<long> idx;  // the operator's rows in the model's parameter vector
        for (int l = 0; l < model.num_layers(); ++l)
          if (layers.empty() || std::find(layers.begin(), layers.end(), l) != layers.end())
            for (long i = 0; i < model.layers()[l].size(); ++i) idx.push_back(model.layers()[l].offset + i);
        const long n = long(idx.size());
        ASSERT_EQ(fp.size(), n) << what;
        const HostBatch Vh = random_batch(1, int(n), k, 21);
        typename FP::Matrix V("V", n, k), Y("Y", n, k);
        {
          auto h = Kokkos::create_mirror_view(V);
          for (long i = 0; i < n; ++i)
            for (int j = 0; j < k; ++j) h(i, j) = S(Vh(0, int(i), j));
          Kokkos::deep_copy(V, h);
        }
        fp.apply(V, Y);
        const HostBatch Yh = host_matrix(Y);
        double err = 0, scale = 0;
        for (long i = 0; i < n; ++i)
          for (int j = 0; j < k; ++j) {
            double e = 0;
            for (long m = 0; m < n; ++m) e += ref.F(0, int(idx[i]), int(idx[m])) * Vh(0, int(m), j);
            err = std::max(err, std::abs(Yh(0, int(i), j) - e));
            scale = std::max(scale, std::abs(e));
          }
        EXPECT_GT(scale, 0.0) << what;
        EXPECT_LE(err, tol * scale) << what;
        EXPECT_EQ(fp.products(), k) << what;
        // one vector at a time gives the same columns
        typename FP::Matrix V1("V1", n, 1), Y1("Y1", n, 1);
        Kokkos::deep_copy(V1, Kokkos::subview(V, Kokkos::ALL(), Kokkos::make_pair(0, 1)));
        fp(V1, Y1);
        const HostBatch Y1h = host_matrix(Y1);
        for (long i = 0; i < n; ++i)
          EXPECT_NEAR(Y1h(0, int(i), 0), Yh(0, int(i), 0), tol * scale) << what << " row " << i;
        EXPECT_EQ(fp.products(), k + 1) << what;
      }
    }
  }
  // bad input, each named
  hfisher::nn::MLP<S, E> model({6, 5, 4}, hfisher::nn::Activation::Tanh, 1);
  auto expect_error = [](auto&& f, const std::string& text) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << text;
    } catch (const hfisher::Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  hfisher::FisherOptions o;
  o.layers = {1, 0};
  expect_error([&] { FP(model, data, hfisher::FisherKind::GGN, o); }, "increasing order");
  o.layers = {};
  o.examples = N + 6;
  expect_error([&] { FP(model, data, hfisher::FisherKind::GGN, o); }, "examples");
  o.examples = 0;
  FP fp(model, data, hfisher::FisherKind::Empirical, o);
  typename FP::Matrix V("V", fp.size() + 1, 2), Y("Y", fp.size(), 2), Yk("Yk", fp.size(), 3), Vk("Vk", fp.size(), 2);
  expect_error([&] { fp.apply(V, Y); }, "rows");
  expect_error([&] { fp.apply(Vk, Yk); }, "Y is");
  auto wide = hfisher::nn::to_device<S, E>(random_dataset(4, 6, 5, 7));
  expect_error([&] { FP(model, wide, hfisher::FisherKind::GGN, o); }, "classes");
}

// The matrix-free HODLR Fisher (FisherOptions::matrix_free): each layer's
// block from Fisher-vector products against the brute-force block, with the
// products and the error estimate reported; what it does not build is refused.
TYPED_TEST(FisherTest, MatrixFreeHODLRAndHSSAgainstBruteForce) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using FT = hfisher_test::FisherTol<S>;
  hfisher::nn::MLP<S, E> model({6, 7, 4}, hfisher::nn::Activation::Tanh, 3);  // blocks of 49 and 32 parameters
  const int N = 30;
  auto data = hfisher::nn::to_device<S, E>(random_dataset(N, 6, 4, 9));
  for (auto kind : {hfisher::FisherKind::GGN, hfisher::FisherKind::MonteCarlo}) {
    const std::string k = hfisher::to_string(kind);
    hfisher::FisherOptions o;
    o.compression.leaf = 8;
    o.set_tol(FT::compress_matvec);
    o.mc_samples = 2;
    o.batch = 8;
    o.matrix_free = true;
    const auto ref = brute_force(model, data, N, kind, o.mc_samples, o.seed);
    const auto Fb = block_diag_of(ref.F, model.layers());
    auto op = hfisher::estimate_fisher(model, data, kind, hfisher::Structure::HODLR, o);
    EXPECT_EQ(op->structure(), hfisher::Structure::HODLR);
    EXPECT_LE(rel_fro(host_matrix(op->to_dense()), Fb), FT::hodlr_matvec) << k;
    auto* bd = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>*>(op.get());
    ASSERT_NE(bd, nullptr);
    for (int l = 0; l < model.num_layers(); ++l) {
      const auto& h = dynamic_cast<const hfisher::fisher::HODLROperator<S, E>&>(bd->block(l)).hodlr();
      EXPECT_GT(h.build_info().products, 0) << k << " layer " << l;
      EXPECT_LE(h.build_info().error_estimate, FT::hodlr_matvec) << k << " layer " << l;
    }
    check_operator(*op, 0.05, k + "/hodlr matrix-free");
    // HSS from the same products: one block of test vectors per layer
    auto hss = hfisher::estimate_fisher(model, data, kind, hfisher::Structure::HSS, o);
    EXPECT_EQ(hss->structure(), hfisher::Structure::HSS);
    EXPECT_LE(rel_fro(host_matrix(hss->to_dense()), Fb), FT::hss_matvec) << k << " hss";
    const auto& hbd = dynamic_cast<const hfisher::fisher::BlockDiagonalOperator<S, E>&>(*hss);
    for (int l = 0; l < model.num_layers(); ++l) {
      const auto& h = dynamic_cast<const hfisher::fisher::HSSOperator<S, E>&>(hbd.block(l)).matrix();
      EXPECT_GT(h.build_info().products, 0) << k << " hss layer " << l;
      EXPECT_LE(h.build_info().error_estimate, FT::hss_matvec) << k << " hss layer " << l;
    }
    check_operator(*hss, 0.05, k + "/hss matrix-free");
    // the whole network in one HODLR: the cross-layer blocks are kept
    auto net = hfisher::estimate_fisher(model, data, kind, hfisher::Structure::Network, o);
    EXPECT_EQ(net->structure(), hfisher::Structure::Network);
    EXPECT_EQ(net->size(), model.num_params());
    EXPECT_LE(rel_fro(host_matrix(net->to_dense()), ref.F), FT::hodlr_matvec) << k << " network";
    EXPECT_GT(rel_fro(Fb, ref.F), 1e-2) << k << ": the test needs cross-layer blocks that matter";
    check_operator(*net, 0.05, k + "/network");
  }
  hfisher::FisherOptions o;
  o.matrix_free = true;
  EXPECT_THROW(hfisher::estimate_fisher(model, data, hfisher::FisherKind::GGN, hfisher::Structure::KFAC, o),
               hfisher::Error);
  o.compression.spd_compensation = true;
  EXPECT_THROW(hfisher::estimate_fisher(model, data, hfisher::FisherKind::GGN, hfisher::Structure::HODLR, o),
               hfisher::Error);
  // the network structure is built from products, never from samples
  hfisher::FisherOptions so;
  auto samples = hfisher::collect_samples(model, data, hfisher::FisherKind::GGN, so);
  EXPECT_THROW(hfisher::build_curvature(samples, hfisher::Structure::Network, so), hfisher::Error);
  so.block = hfisher::Structure::Network;
  EXPECT_THROW(so.validate("test"), hfisher::Error);
}

TYPED_TEST(FisherTest, OutsideProgramAPI) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using M = hfisher::nn::MLP<S, E>;
  using FT = hfisher_test::FisherTol<S>;
  M model({5, 4, 3}, hfisher::nn::Activation::ReLU, 4);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(9, 5, 3, 12));
  const int N = 7;
  const long P = model.num_params();
  auto Gd = hfisher::fisher::per_example_gradients(model, data, N, 3);
  ASSERT_EQ(long(Gd.extent(0)), N);
  ASSERT_EQ(long(Gd.extent(1)), P);
  auto G = to_host2(Gd);
  typename M::Cache c;
  typename M::Vector grad("grad", P);
  for (int n = 0; n < N; ++n) {
    auto X = Kokkos::subview(data.x, Kokkos::make_pair(n, n + 1), Kokkos::ALL());
    auto y = Kokkos::subview(data.y, Kokkos::make_pair(n, n + 1));
    typename M::Matrix Xn("Xn", 1, data.features());
    typename M::Labels yn("yn", 1);
    Kokkos::deep_copy(Xn, X);
    Kokkos::deep_copy(yn, y);
    model.loss_grad(Xn, yn, grad, c);
    const auto g = to_host1(grad);
    for (long p = 0; p < P; ++p)
      EXPECT_NEAR(G[n][p], g[p], FT::exact * (1 + std::abs(g[p]))) << "example " << n << " param " << p;
  }
  EXPECT_THROW(hfisher::fisher::per_example_gradients(model, data, 10), hfisher::Error);
  // K-FAC factors, no casts
  hfisher::FisherOptions o;
  o.examples = N;
  auto op = hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::KFAC, o);
  const auto ref = brute_force(model, data, N, hfisher::FisherKind::Empirical, 1, o.seed);
  const auto f = hfisher::fisher::kfac_factors(*op);
  ASSERT_EQ(int(f.size()), model.num_layers());
  for (int l = 0; l < model.num_layers(); ++l) {
    EXPECT_EQ(f[l].block, l);
    EXPECT_EQ(f[l].offset, model.layers()[l].offset);
    EXPECT_TRUE(near(host_matrix(f[l].A), ref.A[l], FT::factors, 1 + max_abs(ref.A[l], 0), "A")) << l;
    EXPECT_TRUE(near(host_matrix(f[l].G), ref.G[l], FT::factors, 1 + max_abs(ref.G[l], 0), "G")) << l;
  }
  auto diag = hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::Diagonal, o);
  std::string msg = "no error";
  try {
    hfisher::fisher::kfac_factors(*diag);
  } catch (const hfisher::Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("not K-FAC"), std::string::npos) << msg;
  // the labels of a Monte-Carlo estimate: its diagonal is the mean of the
  // squared per-example gradients at those labels
  {
    hfisher::FisherOptions m;
    m.examples = N;
    m.seed = 17;
    const auto lab = hfisher::fisher::monte_carlo_labels(model, data, m);
    ASSERT_EQ(int(lab.extent(0)), N);
    ASSERT_EQ(int(lab.extent(1)), 1);
    auto labh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lab);
    auto relabel = data;
    relabel.y = typename M::Labels("y", data.size());
    Kokkos::deep_copy(relabel.y, data.y);
    auto yh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), relabel.y);
    int changed = 0;
    for (int n = 0; n < N; ++n) {
      ASSERT_TRUE(labh(n, 0) >= 0 && labh(n, 0) < model.outputs()) << n;
      changed += yh(n) != labh(n, 0);
      yh(n) = labh(n, 0);
    }
    Kokkos::deep_copy(relabel.y, yh);
    const auto Gm = to_host2(hfisher::fisher::per_example_gradients(model, relabel, N));
    auto dmc = hfisher::estimate_fisher(model, data, hfisher::FisherKind::MonteCarlo, hfisher::Structure::Diagonal, m);
    const auto d = to_host1(dmc->diag());
    for (long p = 0; p < P; ++p) {
      double s = 0;
      for (int n = 0; n < N; ++n) s += Gm[n][p] * Gm[n][p] / N;
      EXPECT_NEAR(d[p], s, FT::exact * (1 + s)) << "param " << p;
    }
    EXPECT_GT(changed, 0) << "sampled labels equal the data's: the check would not tell them apart";
    m.examples = data.size() + 1;
    EXPECT_THROW(hfisher::fisher::monte_carlo_labels(model, data, m), hfisher::Error);
  }
  // set_params: copied in, checked
  typename M::Vector theta("theta", P);
  Kokkos::deep_copy(theta, S(0.25));
  model.set_params(theta);
  Kokkos::deep_copy(theta, S(1));
  for (double v : to_host1(model.params())) EXPECT_EQ(v, 0.25);
  EXPECT_THROW(model.set_params(typename M::Vector("short", P - 1)), hfisher::Error);
  Kokkos::deep_copy(theta, S(NAN));
  EXPECT_THROW(model.set_params(theta), hfisher::Error);
  for (double v : to_host1(model.params())) EXPECT_EQ(v, 0.25) << "unchanged after a refused set_params";
}

TYPED_TEST(FisherTest, KFACDampingModesAndSums) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using FT = hfisher_test::FisherTol<S>;
  hfisher::nn::MLP<S, E> model({5, 4, 3}, hfisher::nn::Activation::ReLU, 2);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(30, 5, 3, 8));
  hfisher::FisherOptions o;
  o.examples = 30;
  o.kfac.damping = hfisher::KFACDamping::Factored;
  auto op = hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::KFAC, o);
  auto* bd = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>*>(op.get());
  ASSERT_NE(bd, nullptr);
  // factored damping: (G + sqrt(l)/pi I) (x) (A + pi sqrt(l) I), checked densely
  auto* kf = dynamic_cast<const hfisher::fisher::KFACOperator<S, E>*>(&bd->block(0));
  const double lam = 0.3;
  auto A = host_matrix(kf->terms()[0].A), G = host_matrix(kf->terms()[0].G);
  double ta = 0, tg = 0;
  for (int i = 0; i < A.m; ++i) ta += A(0, i, i);
  for (int i = 0; i < G.m; ++i) tg += G(0, i, i);
  const double pi = std::sqrt((ta / A.m) / (tg / G.m));
  for (int i = 0; i < A.m; ++i) A(0, i, i) += pi * std::sqrt(lam);
  for (int i = 0; i < G.m; ++i) G(0, i, i) += std::sqrt(lam) / pi;
  const int n = A.m * G.m;
  HostBatch K(1, n, n), Lk(1, n, n);
  for (int i = 0; i < G.m; ++i)
    for (int j = 0; j < A.m; ++j)
      for (int k = 0; k < G.m; ++k)
        for (int l = 0; l < A.m; ++l) K(0, i * A.m + j, k * A.m + l) = G(0, i, k) * A(0, j, l);
  ASSERT_EQ(lapack_cholesky(K, 0, Lk), 0);
  double ld = 0;
  for (int i = 0; i < n; ++i) ld += 2 * std::log(Lk(0, i, i));
  EXPECT_NEAR(kf->logdet(lam), ld, FT::kfac_logdet * (n + std::abs(ld)));
  // solve: K x = v through the cached damped inverses, again after another
  // damping value (the cache is rebuilt for each)
  {
    std::vector<double> v(n);
    for (int i = 0; i < n; ++i) v[i] = std::sin(1.0 + i);
    typename hfisher::CurvatureOperator<S, E>::Vector vd("v", n), x("x", n);
    auto vh = Kokkos::create_mirror_view(vd);
    for (int i = 0; i < n; ++i) vh(i) = S(v[i]);
    Kokkos::deep_copy(vd, vh);
    double kmax = 0, kmin = 1e300;
    for (int i = 0; i < n; ++i) kmax = std::max(kmax, std::abs(K(0, i, i)));
    for (int i = 0; i < n; ++i) kmin = std::min(kmin, Lk(0, i, i) * Lk(0, i, i));
    const double cond = n * kmax / kmin;
    for (double l2 : {lam, 0.05, lam}) {
      kf->solve(vd, x, l2);
      if (l2 != lam) continue;
      auto xh = to_host1(x);
      double res = 0;
      for (int i = 0; i < n; ++i) {
        double s = 0;
        for (int j = 0; j < n; ++j) s += K(0, i, j) * xh[j];
        res = std::max(res, std::abs(s - v[i]));
      }
      EXPECT_LE(res, FT::solve * cond * std::sqrt(double(n))) << "factored solve residual";
    }
  }
  // a sum of two K-FAC operators is exact for apply; solve asks for merge_terms
  auto sum = op->clone();
  hfisher::fisher::add(*sum, *op, 1.0);
  EXPECT_LE(rel_fro(host_matrix(sum->to_dense()),
                    [&] {
                      auto t = host_matrix(op->to_dense());
                      for (auto& z : t.a) z *= 2;
                      return t;
                    }()),
            FT::exact);
  typename hfisher::CurvatureOperator<S, E>::Vector b("b", sum->size()), x("x", sum->size());
  Kokkos::deep_copy(b, S(1));
  EXPECT_THROW(sum->solve(b, x, 0.1), hfisher::Error);
  auto* sb = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>*>(sum.get());
  for (int l = 0; l < sb->num_blocks(); ++l)
    dynamic_cast<hfisher::fisher::KFACOperator<S, E>&>(sb->block(l)).merge_terms();
  EXPECT_NO_THROW(sum->solve(b, x, 0.1));
}

// the blocks of prepare_sharded dealt to ranks: largest first, each to the
// least-loaded rank; skipped blocks are not dealt
TEST(PrepareSharded, DealsLargestBlocksFirstToTheLeastLoadedRank) {
  using hfisher::fisher::detail::deal_blocks;
  // one large block and eight small ones: the large one alone on a rank
  const std::vector<double> cost = {1, 1, 8, 1, 1, 1, 1, 1, 1};
  const auto o = deal_blocks(cost, std::vector<char>(cost.size(), 0), 2);
  std::vector<double> load(2, 0);
  for (std::size_t k = 0; k < cost.size(); ++k) load.at(o[k]) += cost[k];
  EXPECT_EQ(load[0], 8);
  EXPECT_EQ(load[1], 8);
  EXPECT_EQ(o[2], 0);
  for (std::size_t k = 0; k < cost.size(); ++k) {
    if (k != 2) {
      EXPECT_EQ(o[k], 1) << "block " << k;
    }
  }
  // round robin (k mod P) would give 8 + 4 against 4: 1.5x the balanced time
  // skipped blocks carry no load; equal costs alternate from rank 0
  const auto s = deal_blocks({5, 5, 5, 5}, {1, 0, 0, 0}, 2);
  EXPECT_EQ(s[1], 0);
  EXPECT_EQ(s[2], 1);
  EXPECT_EQ(s[3], 0);
  // one rank does everything
  for (int r : deal_blocks({3, 2, 1}, {0, 0, 0}, 1)) EXPECT_EQ(r, 0);
}

// prepare / write_prepared / read_prepared: a factorization computed by one
// operator and installed in an equal one gives the same solves; structures
// that do not ship theirs say so; mismatched shapes are refused.
TYPED_TEST(FisherTest, PreparedFactorizationsShip) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using Op = hfisher::CurvatureOperator<S, E>;
  hfisher::nn::MLP<S, E> model({5, 4, 3}, hfisher::nn::Activation::ReLU, 2);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(30, 5, 3, 8));
  hfisher::FisherOptions o;
  o.examples = 30;
  o.compression.leaf = 4;
  const double lam = 0.2;
  for (auto st : {hfisher::Structure::KFAC, hfisher::Structure::BlockDiagonal, hfisher::Structure::HODLR,
                  hfisher::Structure::HSS}) {
    auto op = hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, st, o);
    auto* bd = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>*>(op.get());
    ASSERT_NE(bd, nullptr);
    auto copy = op->clone();
    auto* cd = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>*>(copy.get());
    EXPECT_FALSE(hfisher::fisher::prepared(*op, lam)) << hfisher::to_string(st);
    const auto rep = hfisher::prepare_sharded(*op, lam);  // one process: every block here
    EXPECT_EQ(rep.blocks, bd->num_blocks());
    EXPECT_EQ(rep.computed, bd->num_blocks());
    EXPECT_EQ(rep.received, 0);
    EXPECT_TRUE(hfisher::fisher::prepared(*op, lam));
    EXPECT_EQ(hfisher::prepare_sharded(*op, lam).computed, 0) << "prepared blocks are skipped";
    for (int k = 0; k < bd->num_blocks(); ++k) {
      std::ostringstream os(std::ios::binary);
      ASSERT_TRUE(hfisher::fisher::write_prepared(bd->block(k), os, lam)) << hfisher::to_string(st);
      std::istringstream is(os.str(), std::ios::binary);
      hfisher::fisher::read_prepared(cd->block(k), is, lam, "test");
      EXPECT_TRUE(hfisher::fisher::prepared(cd->block(k), lam));
      // into a block of another shape: refused, naming what arrived
      const int other = (k + 1) % bd->num_blocks();
      std::istringstream is2(os.str(), std::ios::binary);
      try {
        hfisher::fisher::read_prepared(cd->block(other), is2, lam, "block " + std::to_string(k));
        ADD_FAILURE() << "a factorization of another shape was accepted";
      } catch (const hfisher::Error& e) {
        EXPECT_NE(std::string(e.what()).find("block " + std::to_string(k)), std::string::npos) << e.what();
      }
    }
    typename Op::Vector b("b", op->size()), x1("x1", op->size()), x2("x2", op->size());
    Kokkos::deep_copy(b, S(1));
    op->solve(b, x1, lam);
    copy->solve(b, x2, lam);  // with the shipped factorizations (re-read after the refusals)
    auto h1 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x1);
    auto h2 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x2);
    for (long i = 0; i < op->size(); ++i) EXPECT_EQ(h1(i), h2(i)) << hfisher::to_string(st) << " entry " << i;
    EXPECT_NEAR(copy->logdet(lam), op->logdet(lam), 1e-12 * std::abs(op->logdet(lam)));
  }
  // low-rank (one operator over all layers) prepares where it is and ships nothing
  auto lr = hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::LowRank, o);
  const auto rep = hfisher::prepare_sharded(*lr, lam);
  EXPECT_EQ(rep.blocks, 1);
  EXPECT_EQ(rep.computed, 1);
  std::ostringstream os(std::ios::binary);
  EXPECT_FALSE(hfisher::fisher::write_prepared(*lr, os, lam));
  std::istringstream is(os.str(), std::ios::binary);
  EXPECT_THROW(hfisher::fisher::read_prepared(*lr, is, lam, "test"), hfisher::Error);
}

// A structure too large for any machine (one dense block of 8.4 M
// parameters: 2.8e14 B in float, 5.6e14 B in double, beyond a 47-bit
// address space, so the allocation fails at once even with overcommit):
// with the budget check lifted, the allocation failure arrives as an
// hfisher::Error that names the operation and the View being allocated.
TYPED_TEST(FisherTest, AllocationFailureIsAnErrorNamingTheAllocation) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::MLP<S, E> model({4096, 2048, 2}, hfisher::nn::Activation::Tanh, 1);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(2, 4096, 2, 1));
  hfisher::FisherOptions o;
  o.examples = 2;
  o.layers = {0};
  o.memory_budget = std::numeric_limits<std::size_t>::max();
  try {
    hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::Dense, o);
    ADD_FAILURE() << "no throw";
  } catch (const hfisher::Error& e) {
    const std::string w = e.what();
    EXPECT_EQ(w.rfind("hfisher::estimate_fisher: out of memory: ", 0), 0u) << w;
    EXPECT_NE(w.find("hfisher::fisher::dense"), std::string::npos) << w;  // the View's label
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an hfisher::Error: " << e.what();
  }
}

TYPED_TEST(FisherTest, BadInput) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::nn::MLP<S, E> model({6, 5, 4}, hfisher::nn::Activation::Tanh, 1);
  auto data = hfisher::nn::to_device<S, E>(random_dataset(10, 6, 4, 1));
  hfisher::FisherOptions o;
  o.examples = 10;
  // data of the wrong width
  auto wide = hfisher::nn::to_device<S, E>(random_dataset(10, 7, 4, 1));
  EXPECT_THROW(hfisher::estimate_fisher(model, wide, hfisher::FisherKind::Empirical, hfisher::Structure::Diagonal, o),
               hfisher::Error);
  // a structure over the memory budget: the error says how much it needs
  o.memory_budget = 1000;
  try {
    hfisher::estimate_fisher(model, data, hfisher::FisherKind::GGN, hfisher::Structure::BlockDiagonal, o);
    ADD_FAILURE() << "no throw";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("MiB"), std::string::npos) << e.what();
  }
  o.memory_budget = std::size_t(1) << 30;
  // more examples than the data holds: refused, naming both counts, not cut
  o.examples = 11;
  try {
    hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::Diagonal, o);
    ADD_FAILURE() << "no throw";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("examples = 11 but the data has 10"), std::string::npos) << e.what();
  }
  o.examples = 10;
  // invalid options, layers
  o.layers = {3};
  EXPECT_THROW(hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::KFAC, o),
               hfisher::Error);
  o.layers = {};
  o.batch = 0;
  EXPECT_THROW(hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::KFAC, o),
               hfisher::Error);
  o.batch = 4;
  // NaN weights: NaN logits and gradients are reported, as a NonFiniteError
  auto th = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.params());
  th(0) = S(NAN);
  Kokkos::deep_copy(model.params(), th);
  EXPECT_THROW(hfisher::estimate_fisher(model, data, hfisher::FisherKind::Empirical, hfisher::Structure::Diagonal, o),
               hfisher::NonFiniteError);
  // a non-symmetric dense F is refused (apply would use all of it, the
  // Cholesky factor one triangle), as HODLR and HSS refuse one
  {
    typename hfisher::fisher::DenseOperator<S, E>::Matrix F("F", 3, 3);
    auto h = Kokkos::create_mirror_view(F);
    for (int i = 0; i < 3; ++i) h(i, i) = S(2);
    h(0, 1) = S(1);
    Kokkos::deep_copy(F, h);
    try {
      hfisher::fisher::DenseOperator<S, E> bad(F);
      ADD_FAILURE() << "a non-symmetric F was accepted";
    } catch (const hfisher::Error& e) {
      EXPECT_NE(std::string(e.what()).find("not symmetric"), std::string::npos) << e.what();
    }
    h(1, 0) = S(1);
    Kokkos::deep_copy(F, h);
    EXPECT_NO_THROW((hfisher::fisher::DenseOperator<S, E>{F}));
    // a size field that asks for more bytes than the file holds is refused
    // before anything of that size is allocated
    const std::string path = unique_temp("dense_size.bin");
    hfisher::fisher::save_curvature(hfisher::fisher::DenseOperator<S, E>(F), path);
    std::string bytes;
    {
      std::ifstream in(path, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    bytes.resize(bytes.size() - 20);  // without the checksum trailer: read as an unsealed file
    const std::int64_t three = 3, huge = std::int64_t(1) << 17;
    const auto at = bytes.find(std::string(reinterpret_cast<const char*>(&three), 8));
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 8, std::string(reinterpret_cast<const char*>(&huge), 8));
    { std::ofstream(path, std::ios::binary) << bytes; }
    try {
      hfisher::fisher::load_curvature<S, E>(path);
      ADD_FAILURE() << "a size of 2^17 in a " << bytes.size() << "-byte file was accepted";
    } catch (const hfisher::Error& e) {
      EXPECT_NE(std::string(e.what()).find("remain"), std::string::npos) << e.what();
    }
    std::remove(path.c_str());
  }
  // by default every example given is used (no silent cap)
  {
    hfisher::nn::MLP<S, E> small({6, 5, 4}, hfisher::nn::Activation::Tanh, 1);
    auto big = hfisher::nn::to_device<S, E>(random_dataset(1100, 6, 4, 3));
    EXPECT_EQ(hfisher::FisherOptions{}.examples, 0);
    EXPECT_EQ(hfisher::collect_samples(small, big, hfisher::FisherKind::Empirical, hfisher::FisherOptions{}).examples,
              1100);
  }
  // damping 0 on a rank-deficient Fisher is refused with a clear error
  hfisher::nn::MLP<S, E> ok({6, 5, 4}, hfisher::nn::Activation::Tanh, 1);
  o.examples = 2;
  auto op = hfisher::estimate_fisher(ok, data, hfisher::FisherKind::Empirical, hfisher::Structure::BlockDiagonal, o);
  typename hfisher::CurvatureOperator<S, E>::Vector b("b", op->size()), x("x", op->size());
  Kokkos::deep_copy(b, S(1));
  EXPECT_THROW(op->solve(b, x, 0.0), hfisher::Error);
}

// The node Gram matrices of a multilevel estimate, K_i = sum over node i's
// units of D_u (A A^T expanded over the R samples of an example) D_u, applied
// in both forms (explicit per-node matrices, factored through one GEMM with
// A A^T) against naive loops; and the randomized eigensolver on the projected
// T^T K T (T = I - Z V^T in product form) against LAPACK's eigenvalues. Each
// single-unit node has rank <= the layer's 7 inputs < the 12-column block, so
// subspace iteration must find its leading eigenvalues to rounding.
TYPED_TEST(FisherTest, MultilevelGramFormsAndRandomizedEigen) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using Gram = hfisher::fisher::detail::MultilevelGram<S, E>;
  using FT = hfisher_test::FisherTol<S>;
  hfisher::nn::MLP<S, E> model({6, 5, 4}, hfisher::nn::Activation::Tanh, 5);
  const int N = 24;
  auto data = hfisher::nn::to_device<S, E>(random_dataset(N, 6, 4, 2));
  hfisher::FisherOptions o;
  o.examples = N;
  auto s = hfisher::collect_samples(model, data, hfisher::FisherKind::GGN, o);
  const int R = s.per_example, SS = s.samples();
  ASSERT_EQ(R, 4);
  const auto g = host_matrix(s.g[0]), A = host_matrix(s.a[0]);
  const int c = A.n;
  // naive K_i for nodes {0,1}, {2}, {3,4} and single units
  auto naive = [&](const std::vector<int>& ub) {
    HostBatch K(int(ub.size()) - 1, SS, SS);
    for (int i = 0; i + 1 < int(ub.size()); ++i)
      for (int a = 0; a < SS; ++a)
        for (int b = 0; b < SS; ++b) {
          double gg = 0, aa = 0;
          for (int u = ub[i]; u < ub[i + 1]; ++u) gg += g(0, a, u) * g(0, b, u);
          for (int j = 0; j < c; ++j) aa += A(0, a / R, j) * A(0, b / R, j);
          K(i, a, b) = gg * aa;
        }
    return K;
  };
  hfisher::fisher::detail::Mat<S, E> KA("KA", N, N);
  hfisher::kernels::matmul(E(), hfisher::Op::NoTrans, hfisher::Op::Trans, S(1), s.a[0], s.a[0], S(0), KA);
  auto make = [&](const std::vector<int>& ub, bool factored) { return Gram::make(s.g[0], KA, ub, factored ? 1 : 0); };
  const double tol = FT::product;
  for (const std::vector<int>& ub : {std::vector<int>{0, 2, 3, 5}, std::vector<int>{0, 1, 2, 3, 4, 5}}) {
    const int M = int(ub.size()) - 1, k = 3;
    const auto K = naive(ub);
    const auto X = random_batch(M, SS, k, 7);
    HostBatch ref(M, SS, k);
    for (int i = 0; i < M; ++i)
      for (int a = 0; a < SS; ++a)
        for (int j = 0; j < k; ++j)
          for (int b = 0; b < SS; ++b) ref(i, a, j) += K(i, a, b) * X(i, b, j);
    for (bool factored : {false, true}) {
      auto gr = make(ub, factored);
      gr.prepare(k);
      auto Xd = to_device<S, E>(X);
      hfisher::BatchMatrix<S, E> Y("Y", M, SS, k);
      gr.apply(E(), Xd, Y);
      EXPECT_TRUE(near(to_host(Y), ref, tol * SS, max_abs(K, 0) * (1 + max_abs(X, 0)), "K X"))
          << (factored ? "factored" : "explicit") << " with " << M << " nodes";
      EXPECT_TRUE(near(to_host(gr.form()), K, tol, 1 + max_abs(K, 0), "K")) << M << " nodes";
    }
  }
  // randomized leading eigenpairs of T^T K_i T, single-unit nodes, rank 2
  const std::vector<int> ub{0, 1, 2, 3, 4, 5};
  const int M = 5, r = 2;
  const auto K = naive(ub);
  // T = I - v v^T with one unit vector v per node (Z = V = v)
  auto v = random_batch(M, SS, 1, 3);
  for (int i = 0; i < M; ++i) {
    double nv = 0;
    for (int a = 0; a < SS; ++a) nv += v(i, a, 0) * v(i, a, 0);
    for (int a = 0; a < SS; ++a) v(i, a, 0) /= std::sqrt(nv);
  }
  for (bool project : {false, true}) {
    HostBatch Kp = K;
    if (project)
      for (int i = 0; i < M; ++i) {
        HostBatch T(1, SS, SS), Ki(1, SS, SS);
        for (int a = 0; a < SS; ++a)
          for (int b = 0; b < SS; ++b) {
            T(0, a, b) = (a == b) - v(i, a, 0) * v(i, b, 0);
            Ki(0, a, b) = K(i, a, b);
          }
        const auto P = matmul(matmul(T, true, Ki, false), false, T, false);
        for (int a = 0; a < SS; ++a)
          for (int b = 0; b < SS; ++b) Kp(i, a, b) = P(0, a, b);
      }
    const int rho = project ? 1 : 0;
    hfisher::BatchMatrix<S, E> Zs("Zs", M, SS, rho), Vs("Vs", M, SS, rho);
    if (project) {
      Zs = to_device<S, E>(v);
      Vs = to_device<S, E>(v);
    }
    // power steps and oversampling (-1: r + 8): every block here holds the
    // rank of K' (<= 7 inputs), so each variant finds the pairs to rounding
    for (const auto& qp : std::vector<std::pair<int, int>>{{2, -1}, {1, 8}, {0, 8}, {0, 5}})
      for (bool factored : {false, true}) {
        auto gr = make(ub, factored);
        hfisher::BatchMatrix<S, E> Vt("Vt", M, SS, r);
        hfisher::BatchVector<S, E> wt("wt", M, r);
        hfisher::fisher::detail::multilevel_top_eigen(E(), gr, Zs, Vs, r, 11, Vt, wt, qp.first, qp.second);
        const auto w = to_host2(wt);
        const auto V = to_host(Vt);
        for (int i = 0; i < M; ++i) {
          auto ev = lapack_eigenvalues(Kp, i);
          std::sort(ev.rbegin(), ev.rend());
          for (int q = 0; q < r; ++q) {
            EXPECT_NEAR(w[i][q], ev[q], FT::eig_values * ev[0])
                << (factored ? "factored" : "explicit") << (project ? " projected" : "") << " node " << i << " eig "
                << q << " power steps " << qp.first << " oversampling " << qp.second;
            // the Ritz vector: unit length and K' v = w v
            double nv = 0, res = 0;
            for (int a = 0; a < SS; ++a) nv += V(i, a, q) * V(i, a, q);
            for (int a = 0; a < SS; ++a) {
              double kv = 0;
              for (int b = 0; b < SS; ++b) kv += Kp(i, a, b) * V(i, b, q);
              res = std::max(res, std::abs(kv - w[i][q] * V(i, a, q)));
            }
            EXPECT_NEAR(nv, 1.0, FT::eig_norm) << "node " << i << " vector " << q;
            EXPECT_LT(res, FT::eig_residual * ev[0]) << "node " << i << " vector " << q << " power steps " << qp.first;
          }
        }
      }
  }
}

// A multilevel operator whose nodes span several 256-row chunks (the
// products with B and B^T and the merges run over row chunks): apply,
// diag, solve and logdet against the dense matrix formed on the host from
// d, W and the layout; a sum keeps the diagonal exact and stays PSD.
TYPED_TEST(FisherTest, MultilevelChunkedProductsAgainstDense) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using ML = hfisher::fisher::MultilevelOperator<S, E>;
  using FT = hfisher_test::FisherTol<S>;
  const long n = 700;
  const hfisher::fisher::MultilevelLayout lay{{{0, 700}, {0, 300, 700}, {0, 100, 300, 350, 700}}, {3, 2, 2}};
  auto make = [&](unsigned seed) {
    const auto Wh = random_batch(1, n, 7, seed);
    std::vector<double> dh(n);
    for (long p = 0; p < n; ++p) dh[p] = 0.5 + 0.01 * double(p % 13);
    typename ML::Matrix W("W", n, 7);
    auto Wm = Kokkos::create_mirror_view(W);
    for (long p = 0; p < n; ++p)
      for (int c = 0; c < 7; ++c) Wm(p, c) = S(Wh(0, p, c) / 10);
    Kokkos::deep_copy(W, Wm);
    // dense reference: diag(d) + sum over levels and nodes of W_i W_i^T
    HostBatch F(1, n, n);
    for (long p = 0; p < n; ++p) F(0, p, p) = dh[p];
    int col = 0;
    for (int l = 0; l < 3; ++l) {
      const auto& b = lay.bounds[l];
      for (std::size_t i = 0; i + 1 < b.size(); ++i)
        for (long p = b[i]; p < b[i + 1]; ++p)
          for (long q = b[i]; q < b[i + 1]; ++q)
            for (int c = col; c < col + lay.ranks[l]; ++c) F(0, p, q) += double(Wm(p, c)) * double(Wm(q, c));
      col += lay.ranks[l];
    }
    return std::make_pair(ML(dev_vec<S, E>(dh), W, lay, 0.0), F);
  };
  auto [op, F] = make(21);
  const double nF = max_abs(F, 0), tol = FT::product;
  EXPECT_TRUE(near(host_matrix(op.to_dense()), F, tol * 10, nF, "apply vs dense"));
  auto dg = to_host1(op.diag());
  for (long p = 0; p < n; ++p) EXPECT_NEAR(dg[p], F(0, p, p), tol * nF) << "diag " << p;
  check_operator(op, 0.1, "multilevel 700");  // solve residual, logdet vs LAPACK, quad
  // a sum: diagonal exact, PSD
  auto [op2, F2] = make(22);
  auto sum = op.clone();
  hfisher::fisher::add(*sum, op2, 0.5);
  const auto D = host_matrix(sum->to_dense());
  for (long p = 0; p < n; ++p)
    EXPECT_NEAR(D(0, p, p), F(0, p, p) + 0.5 * F2(0, p, p), tol * 10 * nF) << "sum diag " << p;
  const auto ev = lapack_eigenvalues(D, 0);
  EXPECT_GE(*std::min_element(ev.begin(), ev.end()), -tol * 10 * nF) << "sum PSD";
  check_operator(*sum, 0.1, "multilevel 700 sum");
}

// Online sums of multilevel Fishers (the hierarchical penalty's consolidation):
// the diagonal stays exact and the sum PSD at any rank; with ranks that cover
// the block the sum is exact. Layouts and inputs are validated.
TYPED_TEST(FisherTest, MultilevelSumsAndLayouts) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using ML = hfisher::fisher::MultilevelOperator<S, E>;
  using FT = hfisher_test::FisherTol<S>;
  hfisher::nn::MLP<S, E> m1({6, 5, 4}, hfisher::nn::Activation::Tanh, 3),
      m2({6, 5, 4}, hfisher::nn::Activation::Tanh, 4);
  const int N = 40;  // >= the 35 parameters of the larger layer: rank N covers a block
  auto data = hfisher::nn::to_device<S, E>(random_dataset(N, 6, 4, 6));
  hfisher::FisherOptions o;
  o.examples = N;
  o.set_tol(FT::compress_tight);
  const double alpha = 0.7;
  for (int rank : {N, 2}) {
    o.multilevel.rank = rank;
    o.multilevel.levels = rank == N ? 1 : 3;
    o.multilevel.branching = 2;
    auto F1 = hfisher::estimate_fisher(m1, data, hfisher::FisherKind::Empirical, hfisher::Structure::Multilevel, o);
    auto F2 = hfisher::estimate_fisher(m2, data, hfisher::FisherKind::Empirical, hfisher::Structure::Multilevel, o);
    auto B1 = hfisher::estimate_fisher(m1, data, hfisher::FisherKind::Empirical, hfisher::Structure::BlockDiagonal, o);
    auto B2 = hfisher::estimate_fisher(m2, data, hfisher::FisherKind::Empirical, hfisher::Structure::BlockDiagonal, o);
    auto sum = F1->clone();
    hfisher::fisher::add(*sum, *F2, alpha);
    const auto D = host_matrix(sum->to_dense());
    HostBatch ref = host_matrix(B1->to_dense());
    const auto R2 = host_matrix(B2->to_dense());
    for (std::size_t i = 0; i < ref.a.size(); ++i) ref.a[i] += alpha * R2.a[i];
    const double nF = max_abs(ref, 0);
    for (long i = 0; i < sum->size(); ++i)
      EXPECT_NEAR(D(0, i, i), ref(0, i, i), FT::psd * nF) << "rank " << rank << " diag " << i;
    const auto ev = lapack_eigenvalues(D, 0);
    EXPECT_GE(*std::min_element(ev.begin(), ev.end()), -FT::psd * nF) << "rank " << rank << " PSD";
    if (rank == N)
      EXPECT_LE(rel_fro(D, ref), FT::lowrank) << "full-rank sum";
    else
      EXPECT_LE(sum->bytes(), F1->bytes()) << "a sum keeps the memory of one term";
    // layouts must match
    auto o3 = o;
    o3.multilevel.levels = 2;
    auto F3 = hfisher::estimate_fisher(m1, data, hfisher::FisherKind::Empirical, hfisher::Structure::Multilevel, o3);
    EXPECT_THROW(hfisher::fisher::add(*sum, *F3, 1.0), hfisher::Error);
    EXPECT_THROW(hfisher::fisher::add(*sum, *F2, -1.0), hfisher::Error);
    EXPECT_THROW(hfisher::fisher::add(*sum, *B1, 1.0), hfisher::Error);
  }
  // direct construction: layouts that do not cover, refine or order are refused
  typename ML::Vector d("d", 8);
  typename ML::Matrix W("W", 8, 3);
  Kokkos::deep_copy(d, S(1));
  hfisher::fisher::MultilevelLayout good{{{0, 8}, {0, 4, 8}}, {1, 2}};
  EXPECT_NO_THROW(ML(d, W, good, 0.0));
  EXPECT_THROW(ML(d, W, hfisher::fisher::MultilevelLayout{{{0, 8}, {0, 4, 7}}, {1, 2}}, 0.0), hfisher::Error);
  EXPECT_THROW(ML(d, W, hfisher::fisher::MultilevelLayout{{{0, 3, 8}, {0, 4, 8}}, {1, 2}}, 0.0), hfisher::Error);
  EXPECT_THROW(ML(d, W, hfisher::fisher::MultilevelLayout{{{0, 8}, {0, 4, 4, 8}}, {1, 2}}, 0.0), hfisher::Error);
  EXPECT_THROW(ML(d, W, hfisher::fisher::MultilevelLayout{{{0, 8}, {0, 4, 8}}, {1, 0}}, 0.0), hfisher::Error);
  EXPECT_NO_THROW(ML(d, W, hfisher::fisher::MultilevelLayout{{{0, 8}}, {3}}, 0.0));
  typename ML::Matrix W1("W1", 8, 1);
  EXPECT_NO_THROW(ML(d, W1, hfisher::fisher::MultilevelLayout{{{0, 8}}, {1}}, 0.0));
  EXPECT_THROW(ML(d, W1, good, 0.0), hfisher::Error);  // W has 1 column, the layout 3
  auto dh = Kokkos::create_mirror_view(d);
  Kokkos::deep_copy(dh, d);
  dh(2) = S(-1);
  Kokkos::deep_copy(d, dh);
  EXPECT_THROW(ML(d, W, good, 0.0), hfisher::Error);  // negative diagonal part
  // zero diagonal part and no low-rank terms: damping 0 is refused by name
  typename ML::Vector z("z", 8), b("b", 8), x("x", 8);
  Kokkos::deep_copy(b, S(1));
  ML zero(z, W, good, 0.0);
  EXPECT_THROW(zero.solve(b, x, 0.0), hfisher::Error);
  hfisher::FisherOptions bad;
  bad.multilevel.levels = 0;
  EXPECT_THROW(bad.validate("test"), hfisher::Error);
  bad.multilevel.levels = 2;
  bad.multilevel.branching = 1;
  EXPECT_THROW(bad.validate("test"), hfisher::Error);
  bad.multilevel.branching = 2;
  bad.multilevel.power_steps = -1;
  EXPECT_THROW(bad.validate("test"), hfisher::Error);
  bad.multilevel.power_steps = 17;
  EXPECT_THROW(bad.validate("test"), hfisher::Error);
  bad.multilevel.power_steps = 0;
  bad.multilevel.oversampling = -2;
  EXPECT_THROW(bad.validate("test"), hfisher::Error);
  bad.multilevel.oversampling = -1;
  EXPECT_NO_THROW(bad.validate("test"));
}

TEST(FisherStructure, NamesAndStoredValues) {
  // the integers files store: a HODLR block saved as Structure::Hierarchical loads as HODLR
  static_assert(int(hfisher::Structure::HODLR) == 3, "stored value of HODLR");
  static_assert(int(hfisher::Structure::BlockDiagonal) == 4 && int(hfisher::Structure::Dense) == 5 &&
                    int(hfisher::Structure::Multilevel) == 6 && int(hfisher::Structure::Network) == 7 &&
                    int(hfisher::Structure::HSS) == 8,
                "stored values after HODLR");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  EXPECT_EQ(hfisher::Structure::Hierarchical, hfisher::Structure::HODLR);  // the former name still compiles
#pragma GCC diagnostic pop
  EXPECT_STREQ(hfisher::to_string(hfisher::Structure::HODLR), "hodlr");
  EXPECT_STREQ(hfisher::to_string(hfisher::Structure::Network), "network");
  EXPECT_STREQ(hfisher::to_string(hfisher::Structure::HSS), "hss");
  EXPECT_TRUE(hfisher::is_structure(3));
  EXPECT_TRUE(hfisher::is_structure(7));
  EXPECT_TRUE(hfisher::is_structure(8));
  EXPECT_FALSE(hfisher::is_structure(9));
  EXPECT_FALSE(hfisher::is_structure(-1));
  // one row per enumerator, every name parsing back to its value
  EXPECT_EQ(std::size(hfisher::structure_names), std::size_t(hfisher::Structure::HSS) + 1);
  for (int v = 0; v <= int(hfisher::Structure::HSS); ++v) {
    const auto st = static_cast<hfisher::Structure>(v);
    EXPECT_NE(std::string(hfisher::to_string(st)), "?") << v;
    EXPECT_EQ(hfisher::structure_from_string(hfisher::to_string(st)), st) << v;
  }
  EXPECT_EQ(hfisher::structure_from_string("hierarchical"), hfisher::Structure::HODLR);
  try {
    hfisher::structure_from_string("h2", "hfisher-x");
    ADD_FAILURE() << "an unknown name parsed";
  } catch (const hfisher::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("hfisher-x: unknown structure 'h2'"), std::string::npos) << m;
    EXPECT_NE(m.find("multilevel"), std::string::npos) << m;
  }
  // the Fisher kinds: one row per enumerator, the command-line names and
  // to_string's parse back to their value, others are refused by name
  EXPECT_EQ(std::size(hfisher::fisher_kind_names), std::size_t(hfisher::FisherKind::GGN) + 1);
  EXPECT_EQ(hfisher::fisher_kind_name_list(), (std::vector<std::string>{"empirical", "mc", "ggn"}));
  for (const auto& r : hfisher::fisher_kind_names) {
    EXPECT_EQ(hfisher::fisher_kind_from_string(r.name), r.value) << r.name;
    EXPECT_EQ(hfisher::fisher_kind_from_string(hfisher::to_string(r.value)), r.value) << r.name;
  }
  expect_throw_with([] { hfisher::fisher_kind_from_string("kfac", "hfisher-y --kind"); },
                    {"hfisher-y --kind: unknown Fisher kind 'kfac'", "empirical, mc, ggn"}, "an unknown kind");
}
