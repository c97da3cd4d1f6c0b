#include "../test_helpers.hpp"

using namespace hfisher_test;

template <class C>
class QR : public ::testing::Test {};
TYPED_TEST_SUITE(QR, Configs, ConfigNames);

TYPED_TEST(QR, ThinQRReconstructsAndIsOrthonormal) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  struct Case {
    int nb, m, n;
  };
  // from 64 rows and more than 16 columns (QR: 128 columns, or 8 times as
  // many rows as columns, as {2, 1000, 64}) the host runs the blocked
  // (compact WY) forms, {1, 16384, 40} on blocks that do not fit in cache
  const std::vector<Case> cases = {{1, 1, 1},     {4, 5, 3},     {3, 3, 5},     {1000, 8, 4},  {5, 64, 64},
                                   {2, 130, 20},  {1, 512, 16},  {3, 300, 45},  {2, 45, 70},   {1, 64, 17},
                                   {2, 1000, 64}, {1, 200, 150}, {1, 100, 140}, {1, 16384, 40}};
  unsigned seed = 300;
  for (const auto& c : cases) {
    auto Ah = random_batch(c.nb, c.m, c.n, seed++);
    auto A = to_device<S, E>(Ah);
    const int k = std::min(c.m, c.n);
    hfisher::BatchMatrix<S, E> Q("Q", c.nb, c.m, k), R("R", c.nb, k, c.n);
    hfisher::kernels::qr_thin(E(), A, Q, R);
    auto Qh = to_host(Q), Rh = to_host(R);
    std::vector<double> scale(c.nb);
    for (int b = 0; b < c.nb; ++b) {
      scale[b] = std::max(c.m, c.n) * max_abs(Ah, b);
      EXPECT_LE(orth_error(Qh, b, k), Tol<S>::orth * std::max(c.m, c.n)) << "entry " << b;
      for (int i = 0; i < k; ++i)
        for (int j = 0; j < i; ++j) EXPECT_EQ(Rh(b, i, j), 0.0);
    }
    EXPECT_TRUE(near(matmul(Qh, false, Rh, false), Ah, Tol<S>::qr, scale, "Q R - A")) << "m=" << c.m << " n=" << c.n;
  }
}

TYPED_TEST(QR, PivotedQRRevealsRank) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const double tol = std::is_same<S, double>::value ? 1e-10 : 1e-4;
  struct Case {
    int nb, m, n, r;
  };
  const std::vector<Case> cases = {{1, 6, 6, 0},    {1, 6, 6, 6},     {5, 40, 30, 7},
                                   {3, 30, 50, 12}, {200, 16, 16, 3}, {1, 256, 128, 20},
                                   {1, 64, 40, 0},  {2, 100, 70, 33}, {2, 64, 60, 40}};
  unsigned seed = 400;
  for (const auto& c : cases) {
    const int k = std::min(c.m, c.n);
    std::vector<double> sig(k, 0.0);
    for (int i = 0; i < c.r; ++i) sig[i] = std::pow(10.0, -2.0 * i / std::max(1, c.r));  // down to 1e-2
    auto Ah = with_singular_values(c.nb, c.m, c.n, sig, seed++);
    auto A = to_device<S, E>(Ah);
    hfisher::BatchVector<S, E> tau("tau", c.nb, k);
    Kokkos::View<int**, Kokkos::LayoutRight, typename E::memory_space> perm("perm", c.nb, c.n);
    Kokkos::View<int*, typename E::memory_space> rank("rank", c.nb);
    hfisher::kernels::cpqr(E(), A, tau, perm, rank, tol);
    auto rh = to_host1(rank);
    for (int b = 0; b < c.nb; ++b) EXPECT_EQ(int(rh[b]), c.r) << "entry " << b << " m=" << c.m << " n=" << c.n;
    // A(:, perm) = Q R
    hfisher::BatchMatrix<S, E> Q("Q", c.nb, c.m, k);
    hfisher::kernels::qr_form_q(E(), A, tau, Q);
    auto Qh = to_host(Q), Rf = to_host(A);
    auto ph = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), perm);
    HostBatch R(c.nb, k, c.n), AP(c.nb, c.m, c.n);
    std::vector<double> scale(c.nb);
    for (int b = 0; b < c.nb; ++b) {
      for (int i = 0; i < k; ++i)
        for (int j = i; j < c.n; ++j) R(b, i, j) = Rf(b, i, j);
      for (int i = 0; i < c.m; ++i)
        for (int j = 0; j < c.n; ++j) AP(b, i, j) = Ah(b, i, ph(b, j));
      scale[b] = std::max(c.m, c.n) * (max_abs(Ah, b) + 1e-30);
      // |R_ii| non-increasing (up to rounding)
      for (int i = 1; i < k; ++i) EXPECT_LE(std::abs(R(b, i, i)), std::abs(R(b, i - 1, i - 1)) * (1 + 1e-3) + 1e-6);
    }
    EXPECT_TRUE(near(matmul(Qh, false, R, false), AP, Tol<S>::qr, scale, "Q R - A P"));
  }
  hfisher::BatchMatrix<S, E> A("A", 1, 3, 3);
  hfisher::BatchVector<S, E> tau("tau", 1, 3);
  Kokkos::View<int**, Kokkos::LayoutRight, typename E::memory_space> perm("perm", 1, 3);
  Kokkos::View<int*, typename E::memory_space> rank("rank", 1);
  EXPECT_THROW(hfisher::kernels::cpqr(E(), A, tau, perm, rank, 0.0), hfisher::Error);
  EXPECT_THROW(hfisher::kernels::cpqr(E(), A, tau, perm, rank, -1.0), hfisher::Error);
}
