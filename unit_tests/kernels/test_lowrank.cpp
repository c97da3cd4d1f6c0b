#include "../test_helpers.hpp"

#include <random>

using namespace hfisher_test;

template <class C>
class LowRank : public ::testing::Test {};
TYPED_TEST_SUITE(LowRank, Configs, ConfigNames);

// spectral norm of a small dense matrix through LAPACK
static double norm2(const HostBatch& A, int b) {
  auto s = lapack_singular_values(A, b);
  return s.empty() ? 0.0 : s[0];
}

static HostBatch minus(const HostBatch& A, const HostBatch& B) {
  HostBatch C = A;
  for (size_t i = 0; i < C.a.size(); ++i) C.a[i] -= B.a[i];
  return C;
}

TYPED_TEST(LowRank, RangeFinderMeetsItsToleranceWithItsEstimate) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const double tol = std::is_same<S, double>::value ? 1e-8 : 1e-3;
  const int nb = 6, m = 60, n = 40, k = 40;
  std::vector<double> sig(k);
  for (int i = 0; i < k; ++i) sig[i] = std::exp(-0.7 * i);  // fast decay
  auto Ah = with_singular_values(nb, m, n, sig, 21);
  auto A = to_device<S, E>(Ah);
  const int kmax = 40;
  hfisher::BatchMatrix<S, E> Q("Q", nb, m, kmax);
  Kokkos::View<int*, typename E::memory_space> rank("rank", nb);
  hfisher::BatchScalar<S, E> est("est", nb);
  hfisher::kernels::range_finder(E(), A, tol, Q, rank, est);
  auto Qh = to_host(Q);
  auto rh = to_host1(rank);
  auto eh = to_host1(est);
  for (int b = 0; b < nb; ++b) {
    const int r = int(rh[b]);
    EXPECT_LE(orth_error(Qh, b, r), Tol<S>::orth * m * 10);
    HostBatch Qb(1, m, kmax), Ab(1, m, n);
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < kmax; ++j) Qb(0, i, j) = Qh(b, i, j);
      for (int j = 0; j < n; ++j) Ab(0, i, j) = Ah(b, i, j);
    }
    auto resid = minus(Ab, matmul(Qb, false, matmul(Qb, true, Ab, false), false));
    const double err = norm2(resid, 0);
    EXPECT_LE(err, tol * sig[0] + Tol<S>::rounding) << "entry " << b << " rank " << r;
    EXPECT_LE(err, eh[b] + Tol<S>::rounding) << "estimate is not an upper bound, entry " << b;
    // not wastefully large: the optimal rank for tol*sigma_0 plus a block
    int opt = 0;
    while (opt < k && sig[opt] > tol * sig[0] / std::sqrt(double(n))) ++opt;
    EXPECT_LE(r, opt + 12) << "entry " << b;
  }
}

TYPED_TEST(LowRank, RandomizedSVDAndTruncation) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const double tol = std::is_same<S, double>::value ? 1e-6 : 2e-3;
  const int nb = 5, m = 50, n = 30, r = 30;
  std::vector<double> sig(r, 0.0);
  for (int i = 0; i < 12; ++i) sig[i] = std::pow(10.0, -0.5 * i);  // 1 .. 3e-6, then exact zeros
  auto Ah = with_singular_values(nb, m, n, sig, 31);
  int expect_rank = 0;
  while (expect_rank < r && sig[expect_rank] > tol) ++expect_rank;
  {
    auto A = to_device<S, E>(Ah);
    const int kmax = 20;
    hfisher::BatchMatrix<S, E> U("U", nb, m, kmax), V("V", nb, n, kmax);
    hfisher::BatchVector<S, E> Sv("S", nb, kmax);
    Kokkos::View<int*, typename E::memory_space> rank("rank", nb);
    hfisher::kernels::rsvd(E(), A, tol, U, Sv, V, rank);
    auto Uh = to_host(U), Vh = to_host(V);
    auto sh = to_host2(Sv);
    auto rh = to_host1(rank);
    for (int b = 0; b < nb; ++b) {
      EXPECT_EQ(int(rh[b]), expect_rank) << "rsvd rank, entry " << b;
      for (int i = 0; i < kmax; ++i)
        for (int j = 0; j < m; ++j) Uh(b, j, i) *= sh[b][i];
    }
    auto err = minus(Ah, matmul(Uh, false, Vh, true));
    for (int b = 0; b < nb; ++b) EXPECT_LE(norm2(err, b), 2 * tol * sig[0] + Tol<S>::rounding) << "rsvd entry " << b;
  }
  {
    // A = U0 V0^T with r = 30 columns each but true rank 12 -> truncate
    HostBatch U0(nb, m, r), V0(nb, n, r);
    auto G = random_batch(nb, r, r, 5);
    // U0 = A * pinv-free trick: U0 = A[:, :] padded, V0 = I (n x r): A = U0 V0^T
    for (int b = 0; b < nb; ++b) {
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < r; ++j) U0(b, i, j) = j < n ? Ah(b, i, j) : 0.0;
      for (int i = 0; i < n; ++i) V0(b, i, i) = 1.0;
    }
    (void)G;
    auto U = to_device<S, E>(U0);
    auto V = to_device<S, E>(V0);
    const int kmax = 15;
    hfisher::BatchMatrix<S, E> Uo("Uo", nb, m, kmax), Vo("Vo", nb, n, kmax);
    Kokkos::View<int*, typename E::memory_space> rank("rank", nb);
    hfisher::kernels::truncate_lowrank(E(), U, V, tol, Uo, Vo, rank);
    auto rh = to_host1(rank);
    auto Uoh = to_host(Uo), Voh = to_host(Vo);
    auto err = minus(Ah, matmul(Uoh, false, Voh, true));
    for (int b = 0; b < nb; ++b) {
      EXPECT_EQ(int(rh[b]), expect_rank) << "truncate rank, entry " << b;
      EXPECT_LE(norm2(err, b), tol * sig[0] + Tol<S>::rounding) << "truncate entry " << b;
      EXPECT_LE(orth_error(Voh, b, int(rh[b])), Tol<S>::orth * m * 10);
    }
    // the capped flags: none at kmax = 15 (rank 12 fits), all at kmax = 5
    Kokkos::View<S*, typename E::memory_space> tail("tail", nb);
    Kokkos::View<int*, typename E::memory_space> capped("capped", nb);
    hfisher::kernels::truncate_lowrank(E(), U, V, tol, Uo, Vo, rank, tail, capped);
    for (int b = 0; b < nb; ++b) EXPECT_EQ(to_host1(capped)[b], 0) << "entry " << b;
    hfisher::BatchMatrix<S, E> U5("U5", nb, m, 5), V5("V5", nb, n, 5);
    hfisher::kernels::truncate_lowrank(E(), U, V, tol, U5, V5, rank, tail, capped);
    for (int b = 0; b < nb; ++b) {
      EXPECT_EQ(to_host1(capped)[b], 1) << "entry " << b;
      EXPECT_EQ(to_host1(rank)[b], 5) << "entry " << b;
    }
    hfisher::BatchMatrix<S, E> Ubig("Ubig", nb, m, 31);
    EXPECT_THROW(hfisher::kernels::truncate_lowrank(E(), U, V, tol, Ubig, Vo, rank), hfisher::Error);
    EXPECT_THROW(hfisher::kernels::truncate_lowrank(E(), U, V, 0.0, Uo, Vo, rank), hfisher::Error);
  }
}

// The shape of an off-diagonal Fisher block from per-example gradients:
// U V^T with both factors' columns scaled by 10^(-7 u), u uniform, so the
// 250 x 250 core's singular values span 14 decades. One-sided Jacobi on
// the core itself took 41-47 sweeps on such cores (one of 500 x 500 did not
// converge in 40); the QR-preconditioned Jacobi SVD takes about 7.
TYPED_TEST(LowRank, TruncatesGradedFactors) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const int m = 500, r = 250;
  const double tol = 1e-1;
  HostBatch U0(1, m, r), V0(1, m, r);
  std::mt19937 g(1);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> uniform(0, 1);
  for (int k = 0; k < r; ++k) {
    const double s = std::pow(10.0, -7.0 * uniform(g));
    for (int i = 0; i < m; ++i) {
      U0(0, i, k) = s * normal(g);
      V0(0, i, k) = s * normal(g);
    }
  }
  auto U = to_device<S, E>(U0);
  auto V = to_device<S, E>(V0);
  hfisher::BatchMatrix<S, E> Uo("Uo", 1, m, r), Vo("Vo", 1, m, r);
  Kokkos::View<int*, typename E::memory_space> rank("rank", 1);
  ASSERT_NO_THROW(hfisher::kernels::truncate_lowrank(E(), U, V, tol, Uo, Vo, rank));
  const auto A = matmul(U0, false, V0, true);
  auto Uoh = to_host(Uo), Voh = to_host(Vo);
  const double err = norm2(minus(A, matmul(Uoh, false, Voh, true)), 0);
  EXPECT_LE(err, tol * norm2(A, 0) * (1 + Tol<S>::svd_values)) << "rank " << to_host1(rank)[0];
  EXPECT_LE(orth_error(Voh, 0, int(to_host1(rank)[0])), Tol<S>::orth * m * 10);
  // the core Ru Rv^T (U = Qu Ru, V = Qv Rv) that truncate_lowrank hands to
  // the SVD, with the SVD's sweep count
  hfisher::BatchMatrix<S, E> Qu("Qu", 1, m, r), Ru("Ru", 1, r, r), Qv("Qv", 1, m, r), Rv("Rv", 1, r, r);
  hfisher::kernels::qr_thin(E(), U, Qu, Ru);
  hfisher::kernels::qr_thin(E(), V, Qv, Rv);
  const auto core = matmul(to_host(Ru), false, to_host(Rv), true);
  auto C = to_device<S, E>(core);
  hfisher::BatchMatrix<S, E> W("W", 1, r, r), Z("Z", 1, r, r);
  hfisher::BatchVector<S, E> sv("S", 1, r);
  Kokkos::View<int*, typename E::memory_space> sweeps("sweeps", 1);
  ASSERT_NO_THROW(hfisher::kernels::svd(E(), C, W, sv, Z, sweeps, hfisher::kernels::SvdMethod::Jacobi));
  EXPECT_LE(to_host1(sweeps)[0], 12);
  EXPECT_NEAR(to_host2(sv)[0][0], norm2(core, 0), Tol<S>::svd_values * norm2(core, 0));
  // the default (bidiagonal QR) method: about two steps per singular value
  ASSERT_NO_THROW(hfisher::kernels::svd(E(), C, W, sv, Z, sweeps));
  EXPECT_LE(to_host1(sweeps)[0], 3 * r);
  EXPECT_NEAR(to_host2(sv)[0][0], norm2(core, 0), Tol<S>::svd_values * norm2(core, 0));
}

TYPED_TEST(LowRank, PaddingConventionKeepsResults) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  // three SPD entries of sizes 3, 7, 5 padded to 7
  const int nb = 3, nmax = 7;
  const std::vector<int> sizes = {3, 7, 5};
  auto Ah = spd_batch(nb, nmax, 71);
  for (auto& x : Ah.a) x += 1e6;  // garbage in the padded part is overwritten
  for (int b = 0; b < nb; ++b)
    for (int i = 0; i < nmax; ++i)
      for (int j = 0; j < nmax; ++j) Ah(b, i, j) -= 1e6;
  auto A = to_device<S, E>(Ah);
  Kokkos::View<int*, typename E::memory_space> rows("rows", nb);
  auto rh = Kokkos::create_mirror_view(rows);
  for (int b = 0; b < nb; ++b) rh(b) = sizes[b];
  Kokkos::deep_copy(rows, rh);
  hfisher::kernels::pad(E(), A, rows, rows, S(1));
  auto Ap = to_host(A);
  hfisher::kernels::potrf(E(), A);
  hfisher::BatchScalar<S, E> ld("ld", nb);
  hfisher::kernels::logdet_cholesky(E(), A, ld);
  auto ldh = to_host1(ld);
  for (int b = 0; b < nb; ++b) {
    HostBatch T(1, sizes[b], sizes[b]), L(1, sizes[b], sizes[b]);
    for (int i = 0; i < sizes[b]; ++i)
      for (int j = 0; j < sizes[b]; ++j) T(0, i, j) = Ap(b, i, j);
    ASSERT_EQ(lapack_cholesky(T, 0, L), 0);
    double ref = 0;
    for (int i = 0; i < sizes[b]; ++i) ref += 2 * std::log(L(0, i, i));
    EXPECT_NEAR(ldh[b], ref, Tol<S>::logdet * nmax * (1 + std::abs(ref))) << "padded logdet entry " << b;
  }
  Kokkos::deep_copy(rh, 9);
  Kokkos::deep_copy(rows, rh);
  EXPECT_THROW(hfisher::kernels::pad(E(), A, rows, rows, S(1)), hfisher::Error);
}
