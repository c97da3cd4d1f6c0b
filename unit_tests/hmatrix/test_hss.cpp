#include <cstdio>
#include <cstring>
#include <fstream>

#include "format_suite.hpp"
#include "hmatrix_helpers.hpp"

using namespace hfisher_test;

template <class C>
class HSSTest : public ::testing::Test {};
TYPED_TEST_SUITE(HSSTest, Configs, ConfigNames);
// the tests every H-matrix format passes (format_suite.hpp), for HSS
INSTANTIATE_TYPED_TEST_SUITE_P(HSS, HMatrixFormat, FormatCases<hfisher::HSS>, ConfigNames);

namespace {

template <class S, class E>
Kokkos::View<S*, typename E::memory_space> dev1(const std::vector<double>& a) {
  Kokkos::View<S*, typename E::memory_space> d("d", a.size());
  auto h = Kokkos::create_mirror_view(d);
  for (size_t i = 0; i < a.size(); ++i) h(i) = S(a[i]);
  Kokkos::deep_copy(d, h);
  return d;
}

// the shared contract (hmatrix_helpers.hpp) with W n x N, plus HSS's
// storage bound k_l <= m_l
template <class S, class E>
void check_contract(const hfisher::HSS<S, E>& H, const HostBatch& Aref, double approx_tol, const char* what) {
  hfisher_test::check_contract(H, Aref, approx_tol, what, H.tree().padded_size());
  for (const auto& r : H.ranks()) EXPECT_LE(r.padded, H.D(r.level).extent(1)) << what << ": k_l <= m_l";
}

}  // namespace

// No silent truncation: the default (no cap) meets tol; a cap
// below the node ranks is an error naming level and block unless
// allow_capped, which reports the capped nodes, also after save and load.
TYPED_TEST(HSSTest, NoSilentTruncation) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using HM = hfisher::HSS<S, E>;
  const double tol = HMatrixTol<S>::tol_moderate;
  const int n = 300;
  std::vector<double> pts;
  auto A = kernel_matrix(n, 2, 0.5, 61, &pts);
  auto tree = hfisher::ClusterTree::from_points(pts, n, 2, 32);
  auto Ad = dev2<S, E>(A, n, n);
  hfisher::CompressionOptions o;
  o.tol = tol;
  auto H = HM::from_dense(Ad, tree, o);
  for (const auto& r : H.ranks()) EXPECT_EQ(r.capped, 0) << "level " << r.level;
  check_contract(H, as_batch(A, n), 10 * (tree.levels() + 1) * tol, "HSS, no cap");
  hfisher::CompressionOptions c = o;
  c.max_rank = 3;
  std::string msg = "no error";
  try {
    HM::from_dense(Ad, tree, c);
  } catch (const hfisher::Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("max_rank = 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("of level "), std::string::npos) << msg;
  c.allow_capped = true;
  auto Hc = HM::from_dense(Ad, tree, c);
  int capped = 0;
  for (const auto& r : Hc.ranks()) {
    capped += r.capped;
    EXPECT_LE(r.max, 3) << "level " << r.level;
  }
  EXPECT_GT(capped, 0);
  const std::string path = unique_temp("capped.hss");
  Hc.save(path);
  auto H2 = HM::load(path);
  std::remove(path.c_str());
  EXPECT_TRUE(H2.options().allow_capped);
  int capped2 = 0;
  for (const auto& r : H2.ranks()) capped2 += r.capped;
  EXPECT_EQ(capped2, capped);
}

// Matrix-free: products counted by the operator itself; a 1-D kernel matrix
// of rank-structured off-diagonal blocks is recovered to the tolerance with
// at most 6 k + 64 products (k the largest rank).
TYPED_TEST(HSSTest, FromMatvecCountsProducts) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const double tol = HMatrixTol<S>::tol_moderate;
  const int n = 400;
  std::vector<double> pts;
  auto A = kernel_matrix(n, 1, 0.5, 31, &pts);
  auto Ad = dev2<S, E>(A, n, n);
  auto tree = hfisher::ClusterTree::from_points(pts, n, 1, 16);
  int counted = 0;
  auto op = dense_product_op<S, E>(Ad, n, &counted);
  hfisher::CompressionOptions o;
  o.tol = tol;
  o.max_rank = 64;
  auto H = hfisher::HSS<S, E>::from_matvec(op, n, tree, o);
  EXPECT_EQ(H.matvec_info().products, counted);
  int k = 0;
  for (const auto& r : H.ranks()) k = std::max(k, r.max);
  EXPECT_LE(counted, 6 * k + 64) << "k = " << k;
  check_contract(H, as_batch(A, n), 10 * (tree.levels() + 1) * tol, "from_matvec");
  // balanced trees of odd sizes, blocks of full rank (a dense SPD matrix):
  // the matrix is recovered to rounding
  for (int m : {43, 81}) {
    const auto B = random_spd(m, unsigned(m));
    auto Bd = dev2<S, E>(B, m, m);
    auto opB = dense_product_op<S, E>(Bd, m);
    hfisher::CompressionOptions ob;
    ob.tol = HMatrixTol<S>::tol_tight;
    auto HB = hfisher::HSS<S, E>::from_matvec(opB, m, hfisher::ClusterTree::balanced(m, 8), ob);
    const auto Bb = as_batch(B, m);
    EXPECT_LE(fro(diff(host_matrix(HB.to_dense()), Bb), 0) / fro(Bb, 0), HMatrixTol<S>::recovered) << "n = " << m;
  }
}

// From entries without O(n^2) work (a HODLR matrix from entries as the
// operator), and the tolerance honoured: the a-posteriori estimate of the
// whole matrix meets tol, for from_entries and for from_dense on the same
// Gaussian kernel matrix, and the true error is within a small factor of it.
// A non-finite entry is an error naming HSS::from_entries.
TYPED_TEST(HSSTest, FromEntriesHonoursTolerance) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using Mem = typename E::memory_space;
  using HM = hfisher::HSS<S, E>;
  const double tol = HMatrixTol<S>::tol_hss_entries;
  const int n = 400, dim = 2;
  std::vector<double> pts, A;
  auto fn = gauss_entries_case<S, E>(n, dim, 77, pts, A);
  auto tree = hfisher::ClusterTree::from_points(pts, n, dim, 25);
  hfisher::CompressionOptions o;
  o.tol = tol;
  const auto Aref = as_batch(A, n);
  auto He = HM::from_entries(fn, tree, o);
  auto Hd = HM::from_dense(dev2<S, E>(A, n, n), tree, o);
  for (const auto* H : {&He, &Hd}) {
    const char* what = H == &He ? "HSS from_entries" : "HSS from_dense";
    const auto& info = H->build_info();
    EXPECT_LE(info.error_estimate, tol) << what;
    const double true_fro = fro(diff(host_matrix(H->to_dense()), Aref), 0) / fro(Aref, 0);
    EXPECT_LE(true_fro, 3 * tol) << what;
    check_contract(*H, Aref, 10 * tol, what);
    ASSERT_FALSE(H->ranks().empty()) << what;
  }
  EXPECT_GT(He.build_info().entries, 0) << "the HODLR operator's sampled-entry estimate";
  EXPECT_DOUBLE_EQ(He.options().tol, tol);
  GaussEntries<S, Mem> bad = fn;
  bad.nugget = NAN;
  std::string msg = "no error";
  try {
    HM::from_entries(bad, tree, o);
  } catch (const hfisher::Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("hfisher::HSS::from_entries"), std::string::npos) << msg;
  EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
}

// Online sums: T Fisher-like terms diag + G_t G_t^T whose gradients share a
// subspace (G_t = G_0 C_t): the recompressed sum stays within 10 tol of the
// dense sum and within 2x the memory of one term.
TYPED_TEST(HSSTest, OnlineSumScaleRecompress) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const double tol = HMatrixTol<S>::tol_moderate;
  const int n = 200, m = 6, T = 10;
  auto tree = hfisher::ClusterTree::balanced(n, 25);
  hfisher::CompressionOptions o;
  o.tol = tol;
  o.max_rank = 64;
  auto G0 = random_batch(1, n, m, 700);
  std::vector<double> Asum(size_t(n) * n, 0.0);
  hfisher::HSS<S, E> H;
  std::size_t one_term_bytes = 0;
  for (int t = 0; t < T; ++t) {
    auto C = random_batch(1, m, m, 800 + t);
    HostBatch G = matmul(G0, false, C, false);
    for (auto& x : G.a) x /= std::sqrt(double(m));
    std::vector<double> d(n, 0.5 + 0.05 * t);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double s = i == j ? d[i] : 0.0;
        for (int c = 0; c < m; ++c) s += G(0, i, c) * G(0, j, c);
        Asum[size_t(i) * n + j] += s;
      }
    auto Ht = hfisher::HSS<S, E>::from_factors(dev1<S, E>(d), dev2<S, E>(G.a, n, m), tree, o);
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
  EXPECT_LE(H.bytes(), 2 * one_term_bytes) << "memory of the sum vs one term";
  // scale: exact
  auto H2 = H.clone();
  H2.scale(S(0.5));
  auto d1 = to_host1(H.diag()), d2 = to_host1(H2.diag());
  for (int i = 0; i < n; ++i) EXPECT_NEAR(d2[i], 0.5 * d1[i], 1e-5 * std::abs(d1[i]));
  // recompress to a looser tolerance: ranks do not grow, the error is bounded
  const auto before = host_matrix(H.to_dense());
  int kb = 0, ka = 0;
  for (const auto& r : H.ranks()) kb += r.padded;
  auto H3 = H.clone();
  H3.recompress(1e-3);
  for (const auto& r : H3.ranks()) ka += r.padded;
  EXPECT_LE(ka, kb);
  EXPECT_LE(fro(diff(host_matrix(H3.to_dense()), before), 0) / fro(before, 0), 10 * 1e-3);
  // mismatched trees, bad scalars and tolerances are rejected
  auto other = hfisher::HSS<S, E>::from_factors(dev1<S, E>(std::vector<double>(n, 1.0)),
                                                dev2<S, E>(random_batch(1, n, 3, 1).a, n, 3),
                                                hfisher::ClusterTree::balanced(n, 50), o);
  EXPECT_THROW(H.add(other), hfisher::Error);
  EXPECT_THROW(H.scale(S(NAN)), hfisher::Error);
  EXPECT_THROW(H.recompress(2.0), hfisher::Error);
}

// Operators that break the product contract (wrong size, NaN) and a
// product budget below a leaf's worth of test vectors are refused.
TYPED_TEST(HSSTest, ProductContractErrors) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using HM = hfisher::HSS<S, E>;
  using M = typename HM::Matrix;
  const int n = 70;
  auto A = kernel_matrix(n, 1, 0.1, 77);
  auto tree = hfisher::ClusterTree::balanced(n, 16);
  hfisher::CompressionOptions o;
  o.tol = HMatrixTol<S>::tol_fixture;
  auto wrong_size = [&](const M& Om, M& Y) { Y = M("Y", n + 1, Om.extent(1)); };
  expect_throw_with([&] { HM::from_matvec(wrong_size, n, tree, o); }, {"expected"}, "a wrong-size product");
  auto nan_op = [&](const M&, M& Y) { Kokkos::deep_copy(Y, S(NAN)); };
  EXPECT_THROW(HM::from_matvec(nan_op, n, tree, o), hfisher::Error);
  EXPECT_THROW(HM::from_matvec(nan_op, n + 1, tree, o), hfisher::Error);
  hfisher::CompressionOptions few = o;
  few.max_products = 10;  // below a leaf's worth of test vectors
  EXPECT_THROW(HM::from_dense(dev2<S, E>(A, n, n), tree, few), hfisher::Error);
}
