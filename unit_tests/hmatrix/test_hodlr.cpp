#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include "format_suite.hpp"
#include "hmatrix_helpers.hpp"

using namespace hfisher_test;

template <class C>
class HODLRTest : public ::testing::Test {};
TYPED_TEST_SUITE(HODLRTest, Configs, ConfigNames);
// the tests every H-matrix format passes (format_suite.hpp), for HODLR
INSTANTIATE_TYPED_TEST_SUITE_P(HODLR, HMatrixFormat, FormatCases<hfisher::HODLR>, ConfigNames);

namespace {

// the shared contract (hmatrix_helpers.hpp) with W square, plus HODLR's
// rank bound: a block's padded rank never exceeds its size
template <class S, class E>
void check_contract(const hfisher::HODLR<S, E>& H, const HostBatch& Aref, double approx_tol, const char* what) {
  hfisher_test::check_contract(H, Aref, approx_tol, what, Aref.n);
  for (const auto& r : H.ranks()) EXPECT_LE(r.padded, H.tree().block_size(r.level)) << what;
}

}  // namespace

TEST(ClusterTree, BalancedAndFromPoints) {
  auto t = hfisher::ClusterTree::balanced(100, 16);
  EXPECT_EQ(t.levels(), 3);
  EXPECT_EQ(t.padded_size(), 128);
  std::vector<int> seen(100, 0);
  for (int p : t.perm())
    if (p >= 0) seen[p]++;
  for (int s : seen) EXPECT_EQ(s, 1);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(t.perm()[t.iperm()[i]], i);
  // every leaf holds at least one real index (padding spread evenly)
  for (int leaf = 0; leaf < 8; ++leaf) {
    int real = 0;
    for (int q = 0; q < 16; ++q) real += t.perm()[leaf * 16 + q] >= 0;
    EXPECT_GE(real, 12);
  }
  auto one = hfisher::ClusterTree::balanced(5, 16);
  EXPECT_EQ(one.levels(), 0);
  EXPECT_EQ(one.padded_size(), 5);
  // a huge leaf is one leaf of n, not a 2^30-entry permutation
  auto huge = hfisher::ClusterTree::balanced(256, 1 << 30);
  EXPECT_EQ(huge.padded_size(), 256);
  EXPECT_EQ(huge.leaf_size(), 256);
  std::vector<double> pts;
  kernel_matrix(200, 2, 0, 3, &pts);
  auto tp = hfisher::ClusterTree::from_points(pts, 200, 2, 16);
  EXPECT_EQ(tp.size(), 200);
  // the two halves of the root are separated along one axis
  double lo[2][2] = {{1e9, 1e9}, {1e9, 1e9}}, hi[2][2] = {{-1e9, -1e9}, {-1e9, -1e9}};  // [half][axis]
  for (int p = 0; p < tp.padded_size(); ++p) {
    const int i = tp.perm()[p];
    if (i < 0) continue;
    const int half = p < tp.padded_size() / 2 ? 0 : 1;
    for (int a = 0; a < 2; ++a) {
      lo[half][a] = std::min(lo[half][a], pts[2 * i + a]);
      hi[half][a] = std::max(hi[half][a], pts[2 * i + a]);
    }
  }
  bool separated = false;
  for (int a = 0; a < 2; ++a) separated = separated || hi[0][a] <= lo[1][a] || hi[1][a] <= lo[0][a];
  EXPECT_TRUE(separated) << "from_points did not split the root along a coordinate";
  EXPECT_THROW(hfisher::ClusterTree::balanced(0, 16), hfisher::Error);
  EXPECT_THROW(hfisher::ClusterTree::balanced(10, 0), hfisher::Error);
  pts[3] = std::nan("");
  EXPECT_THROW(hfisher::ClusterTree::from_points(pts, 200, 2, 16), hfisher::Error);
}

// Geometry-oblivious ordering: a kernel matrix on shuffled points hides its
// structure from the index order; Gram-distance splitting recovers it (ranks
// and memory close to the geometric tree, far below the index-order tree).
TEST(ClusterTree, FromGramRecoversHiddenStructure) {
  const int n = 512;
  std::vector<double> pts;
  auto A = kernel_matrix(n, 2, 0.5, 5, &pts);  // points are random: the index order carries no geometry
  auto entry = [&](int i, int j) { return A[size_t(i) * n + j]; };
  auto tg = hfisher::ClusterTree::from_gram(entry, n, 32);
  auto tb = hfisher::ClusterTree::balanced(n, 32);
  auto tp = hfisher::ClusterTree::from_points(pts, n, 2, 32);
  hfisher::CompressionOptions o;
  o.tol = 1e-6;
  o.max_rank = 256;
  using HM = hfisher::HODLR<double, Kokkos::DefaultHostExecutionSpace>;
  auto Ad = dev2<double, Kokkos::DefaultHostExecutionSpace>(A, n, n);
  const auto bg = HM::from_dense(Ad, tg, o).bytes(), bb = HM::from_dense(Ad, tb, o).bytes(),
             bp = HM::from_dense(Ad, tp, o).bytes();
  EXPECT_LT(double(bg), 0.75 * double(bb)) << "gram " << bg << " vs index order " << bb;
  EXPECT_LT(double(bg), 1.5 * double(bp)) << "gram " << bg << " vs geometric " << bp;
  // every index placed once
  std::vector<int> seen(n, 0);
  for (int p : tg.perm())
    if (p >= 0) seen[p]++;
  for (int c : seen) EXPECT_EQ(c, 1);
  // from factors: rows of G are points, d(i, j) = |g_i - g_j|
  std::vector<double> G(size_t(n) * 3);
  for (size_t i = 0; i < G.size(); ++i) G[i] = std::sin(0.37 * double(i));
  auto tf = hfisher::ClusterTree::from_gram_factors(G, n, 3, 32);
  EXPECT_EQ(tf.size(), n);
  auto bad = [&](int i, int j) { return i == 7 && j == 7 ? std::nan("") : A[size_t(i) * n + j]; };
  EXPECT_THROW(hfisher::ClusterTree::from_gram(bad, n, 32), hfisher::Error);
  EXPECT_THROW(hfisher::ClusterTree::from_gram(entry, 0, 32), hfisher::Error);
  EXPECT_THROW(hfisher::ClusterTree::from_gram_factors(G, n, 4, 32), hfisher::Error);
}

// Matrix-free peeling: the products the operator saw are the ones reported,
// O(k log N) of them, and the result meets the contract.
TYPED_TEST(HODLRTest, FromMatvecPeeling) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using M = typename hfisher::HODLR<S, E>::Matrix;
  for (int dim : {1, 2}) {
    // 2-D blocks have larger ranks: a looser tolerance keeps them below the cap
    const double tol = dim == 1 ? HMatrixTol<S>::tol_kernel : HMatrixTol<S>::tol_peel_2d;
    const int n = dim == 1 ? 400 : 300;
    std::vector<double> pts;
    auto A = kernel_matrix(n, dim, 0.5, 41 + dim, &pts);
    auto Ad = dev2<S, E>(A, n, n);
    auto tree = hfisher::ClusterTree::from_points(pts, n, dim, 16);
    int counted = 0;
    auto op = dense_product_op<S, E>(Ad, n, &counted);
    hfisher::CompressionOptions o;
    o.tol = tol;
    o.max_rank = 150;
    auto H = hfisher::HODLR<S, E>::from_matvec(op, n, tree, o);
    const auto& info = H.matvec_info();
    EXPECT_EQ(info.products, counted);
    int kmax = 0;
    for (const auto& r : H.ranks()) kmax = std::max(kmax, r.max);
    // per level at most (k + oversampling) * 1.5 + 8 test vectors and k
    // more, per pass
    const int bound =
        (1 + info.rebuilds) * (tree.levels() * (3 * (kmax + o.oversampling) + 8) + tree.leaf_size() + o.probes);
    EXPECT_LE(counted, bound) << "k = " << kmax << ", levels " << tree.levels();
    EXPECT_LE(info.rebuilds, 2);
    // the tolerance is honoured where the rank cap allows (1-D: ranks far
    // below it): estimated and true relative error
    if (dim == 1) {
      EXPECT_LE(info.error_estimate, tol) << info.rebuilds << " rebuild(s)";
      const auto Ab = as_batch(A, n);
      EXPECT_LE(fro(diff(host_matrix(H.to_dense()), Ab), 0) / fro(Ab, 0), 3 * tol);
    }
    if (dim == 1) {
      EXPECT_LT(counted, n / 2) << "peeling must need far fewer products than columns";
    }
    std::string what = "from_matvec dim=" + std::to_string(dim);
    check_contract(H, as_batch(A, n), 10 * (tree.levels() + 1) * tol, what.c_str());
  }
  // balanced trees of odd sizes, blocks of full rank (a dense SPD matrix):
  // peeling recovers the matrix to rounding
  for (int n : {43, 81}) {
    const auto A = random_spd(n, unsigned(n));
    auto Ad = dev2<S, E>(A, n, n);
    auto op = dense_product_op<S, E>(Ad, n);
    hfisher::CompressionOptions o;
    o.tol = HMatrixTol<S>::tol_tight;
    auto tree = hfisher::ClusterTree::balanced(n, 8);
    auto H = hfisher::HODLR<S, E>::from_matvec(op, n, tree, o);
    const auto Ab = as_batch(A, n);
    EXPECT_LE(fro(diff(host_matrix(H.to_dense()), Ab), 0) / fro(Ab, 0), HMatrixTol<S>::recovered) << "n = " << n;
  }
  // operators that break the contract
  const int n = 50;
  auto tree = hfisher::ClusterTree::balanced(n, 16);
  auto wrong_size = [&](const M& Om, M& Y) { Y = M("Y", n, Om.extent(1) + 1); };
  using HM = hfisher::HODLR<S, E>;
  EXPECT_THROW(HM::from_matvec(wrong_size, n, tree), hfisher::Error);
  auto nan_op = [&](const M&, M& Y) { Kokkos::deep_copy(Y, S(NAN)); };
  EXPECT_THROW(HM::from_matvec(nan_op, n, tree), hfisher::Error);
  EXPECT_THROW(HM::from_matvec(nan_op, n - 1, tree), hfisher::Error);
}

TYPED_TEST(HODLRTest, FromEntriesByACA) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const double tol = HMatrixTol<S>::tol_kernel;
  for (int dim : {1, 2, 3}) {
    const int n = 200;
    std::vector<double> pts, A;
    auto fn = gauss_entries_case<S, E>(n, dim, 900 + dim, pts, A);
    auto tree = hfisher::ClusterTree::from_points(pts, n, dim, 16);
    hfisher::CompressionOptions o;
    o.tol = tol;
    o.max_rank = 100;
    auto H = hfisher::HODLR<S, E>::from_entries(fn, tree, o);
    std::string what = "from_entries dim=" + std::to_string(dim);
    check_contract(H, as_batch(A, n), 10 * (tree.levels() + 1) * tol, what.c_str());
  }
}

// Nodes of 512 rows and more are factored by row chunks (TSQR: the chunks'
// R's stacked, then a pivoted QR of the stack): a Gaussian kernel built by
// ACA, and d + G G^T with G of 3 columns (rank 3 per block), both padded
// (n = 1100 in 2048 tree indices). The factorization of the compressed H
// itself is checked: solve(H X) = X, W (W^T X) = H X, and logdet against
// LAPACK's Cholesky of to_dense(); the ACA build against the kernel.
TYPED_TEST(HODLRTest, FactorOfTallNodesByChunks) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using M = typename hfisher::HODLR<S, E>::Matrix;
  const int n = 1100;
  auto check = [&](const hfisher::HODLR<S, E>& H, const std::string& what) {
    ASSERT_GE(H.tree().block_size(1), 512) << what;
    auto Xh = random_batch(1, n, 3, 21);
    M X("X", n, 3), Y("Y", n, 3), Z("Z", n, 3), T1("T1", n, 3), T2("T2", n, 3);
    auto xh = Kokkos::create_mirror_view(X);
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < 3; ++c) xh(i, c) = S(Xh(0, i, c));
    Kokkos::deep_copy(X, xh);
    H.apply(X, Y);
    auto F = H.factor();
    F.solve(Y, Z);
    EXPECT_TRUE(near(host_matrix(Z), Xh, HMatrixTol<S>::solve, 1.0 + max_abs(Xh, 0), "solve(H X) - X")) << what;
    F.apply_Wt(X, T1);
    F.apply_W(T1, T2);
    const auto Yh = host_matrix(Y);
    EXPECT_TRUE(near(host_matrix(T2), Yh, HMatrixTol<S>::factor_w, 1.0 + max_abs(Yh, 0), "W W^T X - H X")) << what;
    auto Hd = host_matrix(H.to_dense());
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < i; ++j) Hd(0, i, j) = Hd(0, j, i) = 0.5 * (Hd(0, i, j) + Hd(0, j, i));
    HostBatch L(1, n, n);
    ASSERT_EQ(lapack_cholesky(Hd, 0, L), 0) << what;
    double ld = 0;
    for (int i = 0; i < n; ++i) ld += 2 * std::log(L(0, i, i));
    EXPECT_NEAR(F.logdet(), ld, HMatrixTol<S>::logdet * (n + std::abs(ld))) << what;
  };
  {
    std::vector<double> pts, A;
    auto fn = gauss_entries_case<S, E>(n, 2, 31, pts, A);
    auto tree = hfisher::ClusterTree::from_points(pts, n, 2, 32);
    hfisher::CompressionOptions o;
    o.tol = HMatrixTol<S>::tol_kernel;
    const auto H = hfisher::HODLR<S, E>::from_entries(fn, tree, o);
    const auto Ab = as_batch(A, n);
    EXPECT_LE(fro(diff(host_matrix(H.to_dense()), Ab), 0) / fro(Ab, 0), 10 * (tree.levels() + 1) * o.tol);
    check(H, "gauss by ACA");
  }
  {
    auto G = random_batch(1, n, 3, 32);
    Kokkos::View<S*, typename E::memory_space> dd("d", n);
    auto dh = Kokkos::create_mirror_view(dd);
    for (int i = 0; i < n; ++i) dh(i) = S(1.0 + 0.1 * i / n);
    Kokkos::deep_copy(dd, dh);
    hfisher::CompressionOptions o;
    o.tol = HMatrixTol<S>::tol_factors;
    check(hfisher::HODLR<S, E>::from_factors(dd, dev2<S, E>(G.a, n, 3), hfisher::ClusterTree::balanced(n, 32), o),
          "d + G G^T, rank 3");
  }
}

// Exponential (Matern-1/2) kernel exp(-r / 0.3) + 1e-2 I on 2-D points,
// entries computed on the device: off-diagonal ranks grow slowly with tol,
// so a small max_rank cannot reach it.
template <class S, class Mem>
struct ExpEntries {
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> x;
  KOKKOS_INLINE_FUNCTION S operator()(int i, int j) const {
    double r2 = 0;
    for (int c = 0; c < int(x.extent(1)); ++c) r2 += (x(i, c) - x(j, c)) * (x(i, c) - x(j, c));
    return S(::exp(-::sqrt(r2) / 0.3) + (i == j ? 1e-2 : 0.0));
  }
};

// No silent truncation: without a cap (the default) every
// construction meets tol, the ACA growing its buffer past its first guess;
// a cap that stops a block short of tol is an error naming level and block,
// unless allow_capped, which keeps the block and reports it in ranks(), also
// after save and load.
TYPED_TEST(HODLRTest, NoSilentTruncation) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using HM = hfisher::HODLR<S, E>;
  using Mem = typename E::memory_space;
  const bool dbl = std::is_same<S, double>::value;
  const double tol = HMatrixTol<S>::tol_tight;
  const int n = 700;
  std::mt19937_64 g(77);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> pts(2 * n), A(size_t(n) * n);
  for (auto& x : pts) x = u(g);
  ExpEntries<S, Mem> fn{Kokkos::View<double**, Kokkos::LayoutRight, Mem>("x", n, 2)};
  auto xh = Kokkos::create_mirror_view(fn.x);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < 2; ++c) xh(i, c) = pts[2 * i + c];
  Kokkos::deep_copy(fn.x, xh);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const double r = std::hypot(pts[2 * i] - pts[2 * j], pts[2 * i + 1] - pts[2 * j + 1]);
      A[size_t(i) * n + j] = double(S(std::exp(-r / 0.3) + (i == j ? 1e-2 : 0.0)));
    }
  auto tree = hfisher::ClusterTree::from_points(pts, n, 2, 32);
  const auto Ad = dev2<S, E>(A, n, n);
  hfisher::CompressionOptions o;
  o.tol = tol;
  EXPECT_EQ(o.max_rank, 0) << "the default is no cap";
  // no cap: the tolerance is met, nothing is capped; the top block's ACA
  // needs more than its first 128 terms in double
  auto H = HM::from_entries(fn, tree, o);
  int top = 0;
  for (const auto& r : H.ranks()) {
    EXPECT_EQ(r.capped, 0) << "level " << r.level;
    if (r.level == 1) top = r.max;
  }
  if (dbl) {
    EXPECT_GT(top, 100) << "the test matrix must have a large top-level rank";
  }
  check_contract(H, as_batch(A, n), 10 * (tree.levels() + 1) * tol, "from_entries, no cap");
  auto Hd = HM::from_dense(Ad, tree, o);
  check_contract(Hd, as_batch(A, n), 10 * (tree.levels() + 1) * tol, "from_dense, no cap");
  // a cap below the ranks: every construction refuses, naming level and block
  hfisher::CompressionOptions c = o;
  c.max_rank = 8;
  auto message = [&](auto&& build) {
    try {
      build();
    } catch (const hfisher::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  for (const auto& msg :
       {message([&] { HM::from_entries(fn, tree, c); }), message([&] { HM::from_dense(Ad, tree, c); })}) {
    EXPECT_NE(msg.find("max_rank = 8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("of level "), std::string::npos) << msg;
    EXPECT_NE(msg.find("block "), std::string::npos) << msg;
    EXPECT_NE(msg.find("allow_capped"), std::string::npos) << msg;
  }
  using M = typename HM::Matrix;
  auto op = [&](const M& Om, M& Y) {
    using U3 = Kokkos::View<S***, Kokkos::LayoutRight, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    hfisher::kernels::gemm(E(), hfisher::Op::NoTrans, hfisher::Op::NoTrans, S(1), U3(Ad.data(), 1, n, n),
                           U3(Om.data(), 1, n, Om.extent(1)), S(0), U3(Y.data(), 1, n, Y.extent(1)));
  };
  EXPECT_THROW(HM::from_matvec(op, n, tree, c), hfisher::Error);
  // a sum whose recompression the cap stops is refused too
  {
    hfisher::CompressionOptions c2 = o;
    c2.max_rank = 8;
    c2.allow_capped = true;
    auto H1 = HM::from_entries(fn, tree, c2);  // capped, allowed
    // the achieved-error estimate sees what the cap cost: within 10x of the
    // true error, for entries (sampled) and dense (probes) alike
    const auto Aref = as_batch(A, n);
    auto est_vs_true = [&](const HM& Hx, const HostBatch& Ax, const char* what) {
      const double true_fro = fro(diff(host_matrix(Hx.to_dense()), Ax), 0) / fro(Ax, 0);
      EXPECT_GT(true_fro, 100 * tol) << what << ": the cap must cost accuracy";
      EXPECT_LE(Hx.build_info().error_estimate, 10 * true_fro) << what;
      EXPECT_GE(Hx.build_info().error_estimate, true_fro / 10) << what;
    };
    est_vs_true(H1, Aref, "from_entries, capped");
    EXPECT_EQ(H1.build_info().entries, 1024 * c2.probes);
    est_vs_true(HM::from_dense(Ad, tree, c2), Aref, "from_dense, capped");
    // probes = 0: no estimate, and none pretended
    hfisher::CompressionOptions c0 = o;
    c0.probes = 0;
    for (const auto& Hn : {HM::from_entries(fn, tree, c0), HM::from_dense(Ad, tree, c0)}) {
      EXPECT_EQ(Hn.build_info().entries, 0);
      EXPECT_EQ(Hn.build_info().probes, 0);
      EXPECT_EQ(Hn.build_info().error_estimate, 0.0);
    }
    c0.probes = -1;
    EXPECT_THROW(HM::from_entries(fn, tree, c0), hfisher::Error);
    auto Hs = HM::from_entries(fn, tree, o);
    auto Hc = Hs.clone();
    // the unlimited sum is fine; with the cap (allowed) it is reported
    EXPECT_NO_THROW(Hc.add(Hs, S(0.5)));
    int capped = 0;
    for (const auto& r : H1.ranks()) capped += r.capped;
    EXPECT_GT(capped, 0) << "allow_capped must report the capped blocks";
    for (const auto& r : H1.ranks()) EXPECT_LE(r.max, 8) << "level " << r.level;
    // save and load keep the flags and the option
    const std::string path = unique_temp("capped.hodlr");
    H1.save(path);
    auto H2 = HM::load(path);
    std::remove(path.c_str());
    EXPECT_TRUE(H2.options().allow_capped);
    EXPECT_EQ(H2.options().max_rank, 8);
    const auto r1 = H1.ranks(), r2 = H2.ranks();
    ASSERT_EQ(r1.size(), r2.size());
    for (std::size_t l = 0; l < r1.size(); ++l) {
      EXPECT_EQ(r1[l].capped, r2[l].capped) << "level " << r1[l].level;
      EXPECT_EQ(r1[l].max, r2[l].max) << "level " << r1[l].level;
    }
    // adding to a capped matrix keeps its flags
    auto H3 = H1.clone();
    H3.add(H1, S(1));
    int capped3 = 0;
    for (const auto& r : H3.ranks()) capped3 += r.capped;
    EXPECT_GE(capped3, capped);
  }
  // from_factors: G with 40 columns, cap 4
  auto G = random_batch(1, n, 40, 4040);
  Kokkos::View<S*, Mem> dd("d", n);
  Kokkos::deep_copy(dd, S(1));
  EXPECT_THROW(HM::from_factors(dd, dev2<S, E>(G.a, n, 40), tree, c), hfisher::Error);
  c.allow_capped = true;
  auto Hf = HM::from_factors(dd, dev2<S, E>(G.a, n, 40), tree, c);
  int fcapped = 0;
  for (const auto& r : Hf.ranks()) fcapped += r.capped;
  EXPECT_GT(fcapped, 0);
  {  // its estimate against I + G G^T
    auto Fref = matmul(G, false, G, true);
    for (int i = 0; i < n; ++i) Fref(0, i, i) += 1;
    const double true_fro = fro(diff(host_matrix(Hf.to_dense()), Fref), 0) / fro(Fref, 0);
    EXPECT_GT(true_fro, 100 * tol);
    EXPECT_LE(Hf.build_info().error_estimate, 10 * true_fro);
    EXPECT_GE(Hf.build_info().error_estimate, true_fro / 10);
    EXPECT_EQ(Hf.build_info().probes, c.probes);
  }
  // a sum the cap cannot hold is refused and leaves the matrix unchanged:
  // two rank-3 terms fit a cap of 4 each, their sum does not
  {
    hfisher::CompressionOptions c4 = o;
    c4.max_rank = 4;
    auto G1 = random_batch(1, n, 3, 11), G2 = random_batch(1, n, 3, 12);
    auto Ha = HM::from_factors(dd, dev2<S, E>(G1.a, n, 3), tree, c4);
    auto Hb = HM::from_factors(dd, dev2<S, E>(G2.a, n, 3), tree, c4);
    const auto before = host_matrix(Ha.to_dense());
    EXPECT_THROW(Ha.add(Hb), hfisher::Error);
    const auto after = host_matrix(Ha.to_dense());
    EXPECT_EQ(before.a, after.a) << "a refused add changed the matrix";
  }
  // a cap the ranks stay below is no error
  hfisher::CompressionOptions wide = o;
  wide.max_rank = 4096;
  EXPECT_NO_THROW(HM::from_factors(dd, dev2<S, E>(G.a, n, 40), tree, wide));
}

// A matrix indefinite only through its off-diagonal blocks (its leaves are
// SPD) is refused by the factorization.
TYPED_TEST(HODLRTest, IndefiniteThroughOffDiagonalBlocks) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const int n = 70;
  auto tree = hfisher::ClusterTree::balanced(n, 16);
  hfisher::CompressionOptions o;
  o.tol = HMatrixTol<S>::tol_fixture;
  std::vector<double> B(size_t(n) * n, 0.0);
  for (int i = 0; i < n; ++i) B[size_t(i) * n + i] = 1.0;
  int last = tree.padded_size() - 1;
  while (tree.perm()[last] < 0) --last;
  const int a = tree.perm()[0], b = tree.perm()[last];
  ASSERT_GE(a, 0);
  B[size_t(a) * n + b] = B[size_t(b) * n + a] = 1.5;  // [[1, 1.5], [1.5, 1]] is indefinite
  auto Hb = hfisher::HODLR<S, E>::from_dense(dev2<S, E>(B, n, n), tree, o);
  expect_throw_with([&] { Hb.factor(); }, {"not positive definite"}, "indefinite off-diagonal coupling");
}

// online sums: sum of T recompressed diag + G G^T terms against the dense sum
TYPED_TEST(HODLRTest, OnlineSumScaleRecompress) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const double tol = HMatrixTol<S>::tol_moderate;
  const int n = 200, m = 6, T = 10;
  auto tree = hfisher::ClusterTree::balanced(n, 25);
  hfisher::CompressionOptions o;
  o.tol = tol;
  o.max_rank = 64;
  std::vector<double> Asum(size_t(n) * n, 0.0);
  hfisher::HODLR<S, E> H;
  std::size_t one_term_bytes = 0;
  for (int t = 0; t < T; ++t) {
    auto G = random_batch(1, n, m, 700 + t);
    std::vector<double> d(n, 0.5 + 0.05 * t);
    Kokkos::View<S*, typename E::memory_space> dd("d", n);
    auto dh = Kokkos::create_mirror_view(dd);
    for (int i = 0; i < n; ++i) dh(i) = S(d[i]);
    Kokkos::deep_copy(dd, dh);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double s = i == j ? d[i] : 0.0;
        for (int c = 0; c < m; ++c) s += G(0, i, c) * G(0, j, c);
        Asum[size_t(i) * n + j] += s;
      }
    auto Ht = hfisher::HODLR<S, E>::from_factors(dd, dev2<S, E>(G.a, n, m), tree, o);
    if (t == 0) {
      H = Ht.clone();
      one_term_bytes = Ht.bytes();
    } else {
      H.add(Ht);
    }
  }
  const auto ref = as_batch(Asum, n);
  const double err = fro(diff(host_matrix(H.to_dense()), ref), 0) / fro(ref, 0);
  EXPECT_LE(err, 10 * tol + HMatrixTol<S>::sum_rounding) << "sum of " << T << " recompressed terms";
  // ranks: each off-diagonal block of the sum has rank <= T m, and the memory
  // of the sum must stay within 2x a term when ranks saturate at n/levels
  for (const auto& r : H.ranks()) EXPECT_LE(r.max, std::min(T * m, tree.block_size(r.level)));
  EXPECT_GT(H.bytes(), one_term_bytes);
  // scale: 0.5 * H
  auto H2 = H.clone();
  H2.scale(S(0.5));
  auto d1 = to_host1(H.diag()), d2 = to_host1(H2.diag());
  for (int i = 0; i < n; ++i) EXPECT_NEAR(d2[i], 0.5 * d1[i], 1e-5 * std::abs(d1[i]));
  // recompress to a looser tolerance: ranks shrink, error bounded by it
  auto H3 = hfisher::HODLR<S, E>::from_factors(
      [&] {
        Kokkos::View<S*, typename E::memory_space> z("z", n);
        Kokkos::deep_copy(z, S(1));
        return z;
      }(),
      dev2<S, E>(random_batch(1, n, 40, 9).a, n, 40), tree, o);
  const auto before = host_matrix(H3.to_dense());
  const double looser = 1e-3;  // a recompression target above both precisions' tol
  int kb = 0, ka = 0;
  for (const auto& r : H3.ranks()) kb += r.max;
  H3.recompress(looser);
  for (const auto& r : H3.ranks()) ka += r.max;
  EXPECT_LE(ka, kb);
  EXPECT_LE(fro(diff(host_matrix(H3.to_dense()), before), 0) / fro(before, 0), (tree.levels() + 1) * looser);
  // mismatched trees are rejected
  auto other = hfisher::HODLR<S, E>::from_factors(
      [&] {
        Kokkos::View<S*, typename E::memory_space> z("z", n);
        return z;
      }(),
      dev2<S, E>(random_batch(1, n, 3, 1).a, n, 3), hfisher::ClusterTree::balanced(n, 50), o);
  EXPECT_THROW(H.add(other), hfisher::Error);
  EXPECT_THROW(H.scale(S(NAN)), hfisher::Error);
  EXPECT_THROW(H.recompress(2.0), hfisher::Error);
}
