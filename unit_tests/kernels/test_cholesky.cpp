#include "../test_helpers.hpp"

using namespace hfisher_test;

template <class C>
class Cholesky : public ::testing::Test {};
TYPED_TEST_SUITE(Cholesky, Configs, ConfigNames);

TYPED_TEST(Cholesky, FactorSolveLogdetAgainstLapack) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  struct Case {
    int nb, n;
  };
  const std::vector<Case> cases = {{1, 1},
                                   {5, 2},
                                   {1000, 8},
                                   {7, 31},
                                   {3, 33},
                                   {2, 64},
                                   {1, 100},
                                   {1, 257},
                                   {1, 512},
                                   // large enough that the panel updates split between the threads of a team
                                   {1, 800}};
  unsigned seed = 100;
  for (const auto& c : cases) {
    auto Ah = spd_batch(c.nb, c.n, seed++);
    auto A = to_device<S, E>(Ah);
    hfisher::kernels::potrf(E(), A);
    HostBatch Lref(c.nb, c.n, c.n);
    std::vector<double> scale(c.nb);
    for (int b = 0; b < c.nb; ++b) {
      ASSERT_EQ(lapack_cholesky(Ah, b, Lref), 0);
      scale[b] = c.n * max_abs(Ah, b);
    }
    auto L = to_host(A);
    EXPECT_TRUE(near(L, Lref, Tol<S>::potrf, scale, "potrf vs LAPACK dpotrf")) << "nb=" << c.nb << " n=" << c.n;
    auto LLt = matmul(L, false, L, true);
    EXPECT_TRUE(near(LLt, Ah, Tol<S>::potrf, scale, "L L^T - A")) << "nb=" << c.nb << " n=" << c.n;

    // solve with 3 right-hand sides
    auto Xh = random_batch(c.nb, c.n, 3, seed++);
    auto Bh = matmul(Ah, false, Xh, false);
    auto B = to_device<S, E>(Bh);
    hfisher::kernels::potrs(E(), A, B);
    auto X = to_host(B);
    auto R = matmul(Ah, false, X, false);
    std::vector<double> rs(c.nb);
    for (int b = 0; b < c.nb; ++b) rs[b] = c.n * (max_abs(Ah, b) * max_abs(X, b) + max_abs(Bh, b));
    EXPECT_TRUE(near(R, Bh, Tol<S>::potrs, rs, "potrs residual")) << "nb=" << c.nb << " n=" << c.n;

    hfisher::BatchScalar<S, E> ld("ld", c.nb);
    hfisher::kernels::logdet_cholesky(E(), A, ld);
    auto ldh = to_host1(ld);
    for (int b = 0; b < c.nb; ++b) {
      double ref = 0;
      for (int i = 0; i < c.n; ++i) ref += 2 * std::log(Lref(b, i, i));
      EXPECT_NEAR(ldh[b], ref, Tol<S>::logdet * c.n * (1 + std::abs(ref))) << "logdet entry " << b;
    }
  }
}

TYPED_TEST(Cholesky, IllConditionedStillFactors) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const int n = 40;
  std::vector<double> sig(n);
  const double cond = std::is_same<S, double>::value ? 1e10 : 1e4;
  for (int i = 0; i < n; ++i) sig[i] = std::pow(cond, -double(i) / (n - 1));
  auto Ah = with_singular_values(3, n, n, sig, 7);
  // make it symmetric positive definite: A = Q diag(sig) Q^T
  auto Q = with_singular_values(3, n, n, std::vector<double>(n, 1.0), 8);
  HostBatch D(3, n, n);
  for (int b = 0; b < 3; ++b)
    for (int i = 0; i < n; ++i) D(b, i, i) = sig[i];
  auto Ad = matmul(matmul(Q, false, D, false), false, Q, true);
  for (int b = 0; b < 3; ++b)
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < i; ++j) Ad(b, j, i) = Ad(b, i, j) = 0.5 * (Ad(b, i, j) + Ad(b, j, i));
  auto A = to_device<S, E>(Ad);
  hfisher::kernels::potrf(E(), A);
  auto L = to_host(A);
  EXPECT_TRUE(near(matmul(L, false, L, true), Ad, Tol<S>::potrf, n, "ill-conditioned L L^T - A"));
  (void)Ah;
}

TYPED_TEST(Cholesky, ReportsTheFailingEntryAndPivot) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  auto Ah = spd_batch(6, 10, 3);
  // entry 4: make pivot 6 negative by an indefinite diagonal
  for (int j = 0; j < 10; ++j) Ah(4, 6, j) = Ah(4, j, 6) = 0.0;
  Ah(4, 6, 6) = -2.0;
  auto A = to_device<S, E>(Ah);
  try {
    hfisher::kernels::potrf(E(), A);
    FAIL() << "non-SPD entry not detected";
  } catch (const hfisher::Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("batch entry 4"), std::string::npos) << w;
    EXPECT_NE(w.find("pivot 6"), std::string::npos) << w;
    EXPECT_NE(w.find("1 of 6 entries"), std::string::npos) << w;
  }
  // non-throwing form: info per entry
  A = to_device<S, E>(Ah);
  Kokkos::View<int*, typename E::memory_space> info("info", 6);
  Kokkos::View<S*, typename E::memory_space> piv("piv", 6);
  hfisher::kernels::potrf(E(), A, info, piv);
  auto ih = to_host1(info);
  for (int b = 0; b < 6; ++b) EXPECT_EQ(ih[b], b == 4 ? 7 : 0);
  EXPECT_NEAR(to_host1(piv)[4], -2.0, 1e-6);

  // one large entry (the whole-team path on the host): pivot 100 of 300,
  // in the second 64-column panel
  {
    auto Bh = spd_batch(1, 300, 4);
    for (int j = 0; j < 300; ++j) Bh(0, 100, j) = Bh(0, j, 100) = 0.0;
    Bh(0, 100, 100) = -3.0;
    auto B = to_device<S, E>(Bh);
    Kokkos::View<int*, typename E::memory_space> info1("info1", 1);
    Kokkos::View<S*, typename E::memory_space> piv1("piv1", 1);
    hfisher::kernels::potrf(E(), B, info1, piv1);
    EXPECT_EQ(to_host1(info1)[0], 101);
    EXPECT_NEAR(to_host1(piv1)[0], -3.0, 1e-5);
  }

  hfisher::BatchMatrix<S, E> R("R", 2, 3, 4);
  EXPECT_THROW(hfisher::kernels::potrf(E(), R), hfisher::Error);

  // a NaN in the (unread) upper triangle of entry 2 and an Inf in entry 5:
  // entry 2 is named; the refused entries and their info are left as they
  // were, the others are factored
  {
    auto Nh = spd_batch(6, 10, 5);
    Nh(2, 1, 8) = std::numeric_limits<double>::quiet_NaN();
    Nh(5, 9, 9) = std::numeric_limits<double>::infinity();
    auto N = to_device<S, E>(Nh);
    Kokkos::View<int*, typename E::memory_space> info2("info2", 6);
    Kokkos::deep_copy(info2, -7);
    expect_throw_with<hfisher::NonFiniteError>([&] { hfisher::kernels::potrf(E(), N, info2, piv); },
                                               {"batch entry 2,", "(1, 8)"}, "NaN in the upper triangle");
    auto i2 = to_host1(info2);
    auto got = to_host(N);
    for (int b = 0; b < 6; ++b) {
      const bool refused = b == 2 || b == 5;
      EXPECT_EQ(i2[b], refused ? -7 : 0) << b;
      // refused: the lower triangle is still A; factored: L(0, 0) = sqrt(A(0, 0)) and a zero upper triangle
      EXPECT_NEAR(got(b, 0, 0), refused ? Nh(b, 0, 0) : std::sqrt(Nh(b, 0, 0)), 1e-5 * Nh(b, 0, 0)) << b;
      EXPECT_EQ(got(b, 3, 7), refused ? S(Nh(b, 3, 7)) : S(0)) << b;
    }
    // throwing form: a NaN in a later entry is reported before an entry
    // that is not positive definite
    auto Mh = spd_batch(4, 8, 6);
    Mh(1, 2, 2) = -1.0;
    Mh(3, 5, 1) = std::numeric_limits<double>::quiet_NaN();
    auto M = to_device<S, E>(Mh);
    expect_throw_with<hfisher::NonFiniteError>([&] { hfisher::kernels::potrf(E(), M); }, {"batch entry 3,"},
                                               "NaN after a non-SPD entry");
    // potrs: a NaN in B of entry 1 is named, the other entries are solved
    auto Ph = spd_batch(3, 6, 7);
    auto P = to_device<S, E>(Ph);
    hfisher::kernels::potrf(E(), P);
    auto Rh = random_batch(3, 6, 2, 8);
    Rh(1, 4, 1) = std::numeric_limits<double>::infinity();
    auto Rd = to_device<S, E>(Rh);
    expect_throw_with<hfisher::NonFiniteError>([&] { hfisher::kernels::potrs(E(), P, Rd); },
                                               {"argument B", "batch entry 1,", "(4, 1)"}, "Inf in potrs's B");
    auto X = to_host(Rd);
    for (int b : {0, 2})  // A X = B for the solved entries
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 2; ++j) {
          double ax = 0, scale = std::abs(Rh(b, i, j));
          for (int l = 0; l < 6; ++l) {
            ax += Ph(b, i, l) * X(b, l, j);
            scale += std::abs(Ph(b, i, l) * X(b, l, j));
          }
          EXPECT_NEAR(ax, Rh(b, i, j), Tol<S>::potrs * 6 * scale) << b << " " << i;
        }
    EXPECT_EQ(X(1, 0, 0), double(S(Rh(1, 0, 0))));
  }
}
