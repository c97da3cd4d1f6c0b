#include "../test_helpers.hpp"

using namespace hfisher_test;

template <class C>
class Trsm : public ::testing::Test {};
TYPED_TEST_SUITE(Trsm, Configs, ConfigNames);

// well-conditioned triangular matrices: unit-ish diagonal, small off-diagonal
static HostBatch triangular(int nb, int n, bool lower, unsigned seed) {
  auto T = random_batch(nb, n, n, seed);
  for (int b = 0; b < nb; ++b)
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        if (i == j)
          T(b, i, j) = 2.0 + std::abs(T(b, i, j));
        else if ((j < i) == lower)
          T(b, i, j) *= 0.5 / std::sqrt(double(n));
        else
          T(b, i, j) = 1e30;  // never read: the other triangle
      }
  return T;
}

TYPED_TEST(Trsm, AllSidesUplosTransposesAgainstResidual) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  struct Case {
    int nb, m, n;
  };
  const std::vector<Case> cases = {{1, 1, 1},
                                   {4, 7, 3},
                                   {1000, 6, 4},
                                   {3, 40, 33},
                                   {1, 200, 5},
                                   {2, 70, 66},
                                   {1, 3, 130},
                                   // large enough that host teams split rows (right) or columns (left)
                                   {1, 300, 130}};
  unsigned seed = 11;
  for (const auto& c : cases)
    for (int side = 0; side < 2; ++side)
      for (int lower = 0; lower < 2; ++lower)
        for (int tr = 0; tr < 2; ++tr)
          for (int unit = 0; unit < 2; ++unit) {
            const int k = side == 0 ? c.m : c.n;
            auto Th = triangular(c.nb, k, lower, seed++);
            auto Bh = random_batch(c.nb, c.m, c.n, seed++);
            auto T = to_device<S, E>(Th);
            auto B = to_device<S, E>(Bh);
            const double alpha = 0.75;
            hfisher::kernels::trsm(E(), side ? hfisher::Side::Right : hfisher::Side::Left,
                                   lower ? hfisher::Uplo::Lower : hfisher::Uplo::Upper,
                                   tr ? hfisher::Op::Trans : hfisher::Op::NoTrans,
                                   unit ? hfisher::Diag::Unit : hfisher::Diag::NonUnit, S(alpha), T, B);
            auto X = to_host(B);
            // the operator op(T) as a full matrix
            HostBatch Op(c.nb, k, k);
            for (int b = 0; b < c.nb; ++b)
              for (int i = 0; i < k; ++i)
                for (int j = 0; j < k; ++j) {
                  const int r = tr ? j : i, s = tr ? i : j;
                  double v = (r == s) ? (unit ? 1.0 : Th(b, r, s)) : (((s < r) == bool(lower)) ? Th(b, r, s) : 0.0);
                  Op(b, i, j) = v;
                }
            auto R = side == 0 ? matmul(Op, false, X, false) : matmul(X, false, Op, false);
            std::vector<double> scale(c.nb);
            for (int b = 0; b < c.nb; ++b) {
              for (int i = 0; i < c.m; ++i)
                for (int j = 0; j < c.n; ++j) Bh(b, i, j) *= alpha;
              scale[b] = k * (max_abs(Bh, b) + 1.0);
            }
            EXPECT_TRUE(near(R, Bh, Tol<S>::trsm, scale, "trsm residual op(T) X - alpha B"))
                << "nb=" << c.nb << " m=" << c.m << " n=" << c.n << " side=" << side << " lower=" << lower
                << " trans=" << tr << " unit=" << unit;
          }
}

TYPED_TEST(Trsm, RejectsSingularAndMismatched) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::BatchMatrix<S, E> T("T", 3, 4, 4), B("B", 3, 4, 2), Bbad("Bbad", 3, 5, 2);
  Kokkos::deep_copy(T, S(1));
  auto h = Kokkos::create_mirror_view(T);
  Kokkos::deep_copy(h, T);
  h(2, 3, 3) = 0;
  Kokkos::deep_copy(T, h);
  try {
    hfisher::kernels::trsm(E(), hfisher::Side::Left, hfisher::Uplo::Lower, hfisher::Op::NoTrans, hfisher::Diag::NonUnit,
                           S(1), T, B);
    FAIL() << "singular triangle not detected";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch entry 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(hfisher::kernels::trsm(E(), hfisher::Side::Left, hfisher::Uplo::Lower, hfisher::Op::NoTrans,
                                      hfisher::Diag::Unit, S(1), T, Bbad),
               hfisher::Error);
  // a unit diagonal is not read: entry 2 solves
  Kokkos::deep_copy(B, S(1));
  EXPECT_NO_THROW(hfisher::kernels::trsm(E(), hfisher::Side::Left, hfisher::Uplo::Lower, hfisher::Op::NoTrans,
                                         hfisher::Diag::Unit, S(1), T, B));

  // a NaN in B of entry 1 is named before the zero diagonal of entry 2; both
  // entries are left unchanged, entry 0 is solved
  Kokkos::deep_copy(B, S(1));
  auto hb = Kokkos::create_mirror_view(B);
  Kokkos::deep_copy(hb, B);
  hb(1, 0, 1) = std::numeric_limits<S>::quiet_NaN();
  Kokkos::deep_copy(B, hb);
  expect_throw_with<hfisher::NonFiniteError>(
      [&] {
        hfisher::kernels::trsm(E(), hfisher::Side::Left, hfisher::Uplo::Lower, hfisher::Op::NoTrans,
                               hfisher::Diag::NonUnit, S(1), T, B);
      },
      {"argument B", "batch entry 1,", "(0, 1)"}, "NaN in B");
  Kokkos::deep_copy(hb, B);
  // entry 0: T is all ones (lower triangle read), so X = (1, 0, 0, 0) per column
  for (int j = 0; j < 2; ++j)
    for (int i = 0; i < 4; ++i) EXPECT_EQ(double(hb(0, i, j)), i == 0 ? 1.0 : 0.0) << i << " " << j;
  for (int b = 1; b < 3; ++b)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 2; ++j)
        if (!(b == 1 && i == 0 && j == 1)) {
          EXPECT_EQ(double(hb(b, i, j)), 1.0) << b << " " << i << " " << j;
        }
}
