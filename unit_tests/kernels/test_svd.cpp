#include "../test_helpers.hpp"

using namespace hfisher_test;

template <class C>
class SVD : public ::testing::Test {};
TYPED_TEST_SUITE(SVD, Configs, ConfigNames);

template <class S, class E>
static void check_svd(const HostBatch& Ah, const std::string& name, bool relative_values,
                      hfisher::kernels::SvdMethod method = hfisher::kernels::SvdMethod::Auto) {
  const std::string tag = name + (method == hfisher::kernels::SvdMethod::Auto     ? " (auto)"
                                  : method == hfisher::kernels::SvdMethod::Jacobi ? " (jacobi)"
                                                                                  : " (bidiagonal)");
  const char* what = tag.c_str();
  const int nb = Ah.nb, m = Ah.m, n = Ah.n, k = std::min(m, n);
  auto A = to_device<S, E>(Ah);
  hfisher::BatchMatrix<S, E> U("U", nb, m, k), V("V", nb, n, k);
  hfisher::BatchVector<S, E> Sv("S", nb, k);
  hfisher::kernels::svd(E(), A, U, Sv, V, method);
  auto Uh = to_host(U), Vh = to_host(V);
  auto sh = to_host2(Sv);
  HostBatch US(nb, m, k);
  std::vector<double> scale(nb);
  for (int b = 0; b < nb; ++b) {
    auto ref = lapack_singular_values(Ah, b);
    const double s0 = ref.empty() ? 0.0 : ref[0];
    for (int i = 0; i < k; ++i) {
      const double bound = relative_values ? Tol<S>::svd_values * ref[i] : Tol<S>::svd_values * s0 * k;
      EXPECT_LE(std::abs(sh[b][i] - ref[i]), bound) << what << ": value " << i << " of entry " << b;
      if (i > 0) {
        EXPECT_GE(sh[b][i - 1], sh[b][i]) << "not descending";
      }
      for (int r = 0; r < m; ++r) US(b, r, i) = Uh(b, r, i) * sh[b][i];
    }
    scale[b] = std::max(m, n) * (s0 + 1e-300);
    // orthonormal columns for the nonzero singular values (all of them
    // from the bidiagonal method)
    int nz = 0;
    while (nz < k && sh[b][nz] > 1e-3 * s0) ++nz;
    if (method == hfisher::kernels::SvdMethod::Bidiagonal) nz = k;
    EXPECT_LE(orth_error(Uh, b, nz), Tol<S>::orth * std::max(m, n) * 10) << what << " U entry " << b;
    EXPECT_LE(orth_error(Vh, b, nz), Tol<S>::orth * std::max(m, n) * 10) << what << " V entry " << b;
  }
  EXPECT_TRUE(near(matmul(US, false, Vh, true), Ah, Tol<S>::svd_recon, scale, what));
}

TYPED_TEST(SVD, ValuesAndVectorsAgainstLapack) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  struct Case {
    int nb, m, n;
  };
  using hfisher::kernels::SvdMethod;
  // {2, 100, 40} and {2, 40, 100}: the bidiagonal method's QR-first path
  // (twice as many rows as columns); {3, 70, 50}: bidiagonalization of a
  // tall block directly
  const std::vector<Case> cases = {{1, 1, 1},    {3, 2, 2},    {1000, 4, 4}, {6, 9, 5},     {6, 5, 9},  {2, 100, 20},
                                   {2, 20, 100}, {2, 100, 40}, {2, 40, 100}, {1, 130, 130}, {3, 70, 50}};
  for (auto method : {SvdMethod::Auto, SvdMethod::Jacobi, SvdMethod::Bidiagonal}) {
    unsigned seed = 500;
    for (const auto& c : cases)
      check_svd<S, E>(random_batch(c.nb, c.m, c.n, seed++),
                      "svd random " + std::to_string(c.m) + "x" + std::to_string(c.n), false, method);
  }
}

// 64 x 64 blocks, singular values within 1e-12 relative of
// LAPACK's (double).
TYPED_TEST(SVD, Blocks64x64WithinBarOfLapack) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  for (auto method : {hfisher::kernels::SvdMethod::Jacobi, hfisher::kernels::SvdMethod::Bidiagonal})
    check_svd<S, E>(random_batch(8, 64, 64, 77), "svd 64x64", std::is_same<S, double>::value, method);
}

TYPED_TEST(SVD, RankDeficientAndIllConditioned) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const int n = 30;
  std::vector<double> graded(n), deficient(n, 0.0);
  for (int i = 0; i < n; ++i) graded[i] = std::pow(10.0, -8.0 * i / (n - 1));
  for (int i = 0; i < 5; ++i) deficient[i] = 1.0 + i;
  std::sort(deficient.rbegin(), deficient.rend());
  using hfisher::kernels::SvdMethod;
  for (auto method : {SvdMethod::Jacobi, SvdMethod::Bidiagonal}) {
    check_svd<S, E>(with_singular_values(4, 40, n, graded, 1), "svd graded 1..1e-8", false, method);
    check_svd<S, E>(with_singular_values(4, 40, n, deficient, 2), "svd rank 5", false, method);
    check_svd<S, E>(with_singular_values(2, n, 40, deficient, 3), "svd rank 5, wide", false, method);
    check_svd<S, E>(HostBatch(2, 7, 3), "svd zero matrix", false, method);
    // zero columns and rows inside: the bidiagonal gets exact zeros on its
    // diagonal, which the QR iteration chases out of their rows and columns
    auto Z = random_batch(2, 36, 36, 4);
    for (int i = 0; i < 36; ++i)
      for (int c : {0, 7, 8, 20, 35}) Z(0, i, c) = Z(1, c, i) = 0.0;
    check_svd<S, E>(Z, "svd zero rows and columns", false, method);
    // a repeated singular value (3, 36 times)
    check_svd<S, E>(with_singular_values(1, 48, 36, std::vector<double>(36, 3.0), 4), "svd repeated value", false,
                    method);
  }
}

// Entries far from 1: in float, squares of 1e-20 fall into denormals and
// squares of 1e20 overflow (double: 1e-160, 1e160). Jacobi scales the block
// first; before it did, the tiny block did not converge in 40 sweeps (a
// Fisher block of a layer whose gradients had all but vanished).
TYPED_TEST(SVD, TinyAndHugeEntries) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  const bool dbl = std::is_same<S, double>::value;
  for (const double f : {dbl ? 1e-160 : 1e-20, dbl ? 1e160 : 1e20})
    for (auto method : {hfisher::kernels::SvdMethod::Jacobi, hfisher::kernels::SvdMethod::Bidiagonal}) {
      auto A = random_batch(3, 24, 16, 91);
      for (double& x : A.a) x *= f;
      check_svd<S, E>(A, "svd entries scaled by " + std::to_string(f), false, method);
    }
}

template <class C>
class Syev : public ::testing::Test {};
TYPED_TEST_SUITE(Syev, Configs, ConfigNames);

template <class S, class E>
static void check_syev(const HostBatch& Ah, hfisher::kernels::SyevMethod method, const std::string& what) {
  const int nb = Ah.nb, n = Ah.m;
  auto A = to_device<S, E>(Ah);
  hfisher::BatchVector<S, E> W("W", nb, n);
  hfisher::BatchMatrix<S, E> V("V", nb, n, n);
  hfisher::kernels::syev(E(), A, W, V, method);
  auto wh = to_host2(W);
  auto Vh = to_host(V);
  HostBatch VD(nb, n, n);
  std::vector<double> scale(nb);
  for (int b = 0; b < nb; ++b) {
    auto ref = lapack_eigenvalues(Ah, b);
    const double nrm = std::max({std::abs(ref.front()), std::abs(ref.back()), 1e-300});
    for (int i = 0; i < n; ++i) {
      EXPECT_LE(std::abs(wh[b][i] - ref[i]), Tol<S>::eig_values * n * nrm) << what << ": value " << i << " entry " << b;
      if (i > 0) {
        EXPECT_LE(wh[b][i - 1], wh[b][i]) << what << ": not ascending";
      }
      for (int r = 0; r < n; ++r) VD(b, r, i) = Vh(b, r, i) * wh[b][i];
    }
    EXPECT_LE(orth_error(Vh, b, n), Tol<S>::orth * n * 10) << what << ": V not orthonormal, entry " << b;
    scale[b] = n * nrm;
  }
  EXPECT_TRUE(near(matmul(VD, false, Vh, true), Ah, Tol<S>::svd_recon * 10, scale, (what + ": V W V^T - A").c_str()));
}

// Both algorithms (and Auto) against LAPACK's dsyev: random symmetric and SPD
// matrices, already-diagonal and zero matrices (no reflector needed), and
// clustered spectra (a few distinct eigenvalues, many times repeated).
TYPED_TEST(Syev, EigenpairsAgainstLapack) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using hfisher::kernels::SyevMethod;
  struct Case {
    int nb, n;
    bool spd;
  };
  const std::vector<Case> cases = {{1, 1, true},  {4, 2, false},   {1000, 6, true}, {5, 33, false},
                                   {2, 64, true}, {1, 128, false}, {1, 201, true},  {3, 3, false}};
  for (auto method : {SyevMethod::Auto, SyevMethod::Jacobi, SyevMethod::Tridiagonal}) {
    const std::string name = method == SyevMethod::Auto ? "auto" : method == SyevMethod::Jacobi ? "jacobi" : "ql";
    unsigned seed = 600;
    for (const auto& c : cases) {
      if (method == SyevMethod::Jacobi && c.n > 130) continue;  // minutes in Jacobi's float sweeps: not its job
      auto Ah = c.spd ? spd_batch(c.nb, c.n, seed++) : random_batch(c.nb, c.n, c.n, seed++);
      if (!c.spd)
        for (int b = 0; b < c.nb; ++b)
          for (int i = 0; i < c.n; ++i)
            for (int j = 0; j < i; ++j) Ah(b, j, i) = Ah(b, i, j);
      check_syev<S, E>(Ah, method, name + " n=" + std::to_string(c.n));
    }
    // diagonal (unsorted, with a repeated value) and zero matrices, and a
    // diagonal one with a dense block in rows and columns 40..79, so that
    // the blocked reduction (n > 64) meets columns with nothing to reduce
    // before, beside and after reflectors within one panel
    const int n = 100;
    HostBatch D(3, n, n);
    for (int i = 0; i < n; ++i) D(0, i, i) = D(2, i, i) = double((7 * i) % 11) - 3.0;
    auto Bl = random_batch(1, 40, 40, 55);
    for (int i = 0; i < 40; ++i)
      for (int j = 0; j <= i; ++j) D(2, 40 + i, 40 + j) = D(2, 40 + j, 40 + i) = Bl(0, i, j);
    check_syev<S, E>(D, method, name + " diagonal");
    // clustered: Q diag(1 x 20, 2 x 20, 5 x 20) Q^T with a random orthogonal Q
    const int m = 60;
    auto Q = random_batch(1, m, m, 77);
    for (int j = 0; j < m; ++j) {  // Gram-Schmidt on the columns
      for (int p = 0; p < j; ++p) {
        double dot = 0;
        for (int r = 0; r < m; ++r) dot += Q(0, r, p) * Q(0, r, j);
        for (int r = 0; r < m; ++r) Q(0, r, j) -= dot * Q(0, r, p);
      }
      double nr = 0;
      for (int r = 0; r < m; ++r) nr += Q(0, r, j) * Q(0, r, j);
      for (int r = 0; r < m; ++r) Q(0, r, j) /= std::sqrt(nr);
    }
    HostBatch C(1, m, m);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j)
        for (int p = 0; p < m; ++p) C(0, i, j) += Q(0, i, p) * (p < 20 ? 1.0 : p < 40 ? 2.0 : 5.0) * Q(0, j, p);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < i; ++j) C(0, j, i) = C(0, i, j);
    check_syev<S, E>(C, method, name + " clustered");
    // low rank PSD, like a K-FAC factor of few samples: 150 x 150 of rank 8
    // (142 eigenvalues at rounding level, which a purely relative
    // off-diagonal test never accepts)
    if (method != SyevMethod::Jacobi) {
      const int nl = 150, rk = 8;
      auto X = random_batch(1, nl, rk, 91);
      HostBatch L(1, nl, nl);
      for (int i = 0; i < nl; ++i)
        for (int j = 0; j < nl; ++j)
          for (int p = 0; p < rk; ++p) L(0, i, j) += X(0, i, p) * X(0, j, p);
      check_syev<S, E>(L, method, name + " low rank");
    }
  }
}

TYPED_TEST(Syev, RejectsNonSymmetric) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  auto Ah = random_batch(3, 5, 5, 9);
  auto A = to_device<S, E>(Ah);
  hfisher::BatchVector<S, E> W("W", 3, 5);
  hfisher::BatchMatrix<S, E> V("V", 3, 5, 5);
  try {
    hfisher::kernels::syev(E(), A, W, V);
    FAIL() << "non-symmetric input accepted";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not symmetric at batch entry 0"), std::string::npos) << e.what();
  }
}
