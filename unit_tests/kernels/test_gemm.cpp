#include "../test_helpers.hpp"

using namespace hfisher_test;

template <class C>
class Gemm : public ::testing::Test {};
TYPED_TEST_SUITE(Gemm, Configs, ConfigNames);

TYPED_TEST(Gemm, AllTransposesAgainstNaiveLoops) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  struct Case {
    int nb, m, n, k;
  };
  const std::vector<Case> cases = {{1, 1, 1, 1},
                                   {3, 5, 7, 4},
                                   {1000, 8, 8, 8},
                                   {10, 33, 17, 65},
                                   {2, 64, 64, 64},
                                   {1, 130, 70, 129},
                                   {1, 512, 16, 512},
                                   // narrow outputs: column blocks of NR, NR/2, NR/4 and single columns, row fringes
                                   // (AVX2 kernel: 2 and 1 vectors of columns; 6, 4, 2, 1 rows; dot form in l
                                   // panels of 256: the 512 case)
                                   {5, 7, 24, 33},
                                   {3, 9, 44, 20},
                                   {2, 6, 56, 17},
                                   {4, 13, 14, 9},
                                   {2, 3, 12, 40},
                                   {3, 4, 5, 300},
                                   {2, 11, 3, 257},
                                   // cache blocks of the axpy form (256 values of l by 256 columns) with
                                   // fringes; large enough that host teams split rows between threads
                                   {1, 300, 270, 280},
                                   {3, 40, 520, 300}};
  unsigned seed = 1;
  for (const auto& c : cases)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        auto Ah = random_batch(c.nb, ta ? c.k : c.m, ta ? c.m : c.k, seed++);
        auto Bh = random_batch(c.nb, tb ? c.n : c.k, tb ? c.k : c.n, seed++);
        auto Ch = random_batch(c.nb, c.m, c.n, seed++);
        auto A = to_device<S, E>(Ah);
        auto B = to_device<S, E>(Bh);
        auto Cd = to_device<S, E>(Ch);
        const double alpha = 1.5, beta = -0.5;
        hfisher::kernels::gemm(E(), ta ? hfisher::Op::Trans : hfisher::Op::NoTrans,
                               tb ? hfisher::Op::Trans : hfisher::Op::NoTrans, S(alpha), A, B, S(beta), Cd);
        auto ref = matmul(Ah, ta, Bh, tb);
        std::vector<double> scale(c.nb);
        for (int b = 0; b < c.nb; ++b) {
          for (int i = 0; i < c.m; ++i)
            for (int j = 0; j < c.n; ++j) ref(b, i, j) = alpha * ref(b, i, j) + beta * Ch(b, i, j);
          scale[b] = (c.k + 2) * (max_abs(Ah, b) * max_abs(Bh, b) + max_abs(Ch, b));
        }
        EXPECT_TRUE(near(to_host(Cd), ref, Tol<S>::gemm, scale, "gemm"))
            << "case nb=" << c.nb << " m=" << c.m << " n=" << c.n << " k=" << c.k << " ta=" << ta << " tb=" << tb;
      }
}

// kernels::matmul (one large product cut into tiles of 96 (host) / 64, the
// inner dimension in panels of 256 on the host): shapes that cross tile and
// panel edges, every transpose, beta != 0 (only the first panel scales C)
TYPED_TEST(Gemm, MatmulTilesAndPanelsAgainstNaiveLoops) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using M = Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space>;
  struct Case {
    int m, n, k;
  };
  const std::vector<Case> cases = {{200, 150, 600}, {97, 1, 257}, {1, 300, 513}, {5, 7, 0}};
  unsigned seed = 90;
  for (const auto& c : cases)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        auto Ah = random_batch(1, ta ? c.k : c.m, ta ? c.m : c.k, seed++);
        auto Bh = random_batch(1, tb ? c.n : c.k, tb ? c.k : c.n, seed++);
        auto Ch = random_batch(1, c.m, c.n, seed++);
        auto A3 = to_device<S, E>(Ah);
        auto B3 = to_device<S, E>(Bh);
        auto C3 = to_device<S, E>(Ch);
        M A(A3.data(), Ah.m, Ah.n), B(B3.data(), Bh.m, Bh.n), C(C3.data(), c.m, c.n);
        const double alpha = 0.75, beta = -1.25;
        hfisher::kernels::matmul(E(), ta ? hfisher::Op::Trans : hfisher::Op::NoTrans,
                                 tb ? hfisher::Op::Trans : hfisher::Op::NoTrans, S(alpha), A, B, S(beta), C);
        auto ref = matmul(Ah, ta, Bh, tb);
        for (int i = 0; i < c.m; ++i)
          for (int j = 0; j < c.n; ++j) ref(0, i, j) = alpha * ref(0, i, j) + beta * Ch(0, i, j);
        const double scale = (c.k + 2) * (max_abs(Ah, 0) * max_abs(Bh, 0) + max_abs(Ch, 0));
        EXPECT_TRUE(near(to_host(C3), ref, Tol<S>::gemm, scale, "matmul"))
            << "m=" << c.m << " n=" << c.n << " k=" << c.k << " ta=" << ta << " tb=" << tb;
      }
}

TYPED_TEST(Gemm, RejectsBadInput) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  hfisher::BatchMatrix<S, E> A("A", 2, 3, 4), B("B", 2, 5, 2), C("C", 2, 3, 2), B1("B1", 3, 4, 2);
  try {
    hfisher::kernels::gemm(E(), hfisher::Op::NoTrans, hfisher::Op::NoTrans, S(1), A, B, S(0), C);
    FAIL() << "size mismatch not detected";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("size mismatch"), std::string::npos) << e.what();
  }
  EXPECT_THROW(hfisher::kernels::gemm(E(), hfisher::Op::NoTrans, hfisher::Op::NoTrans, S(1), A, B1, S(0), C),
               hfisher::Error);
  hfisher::BatchMatrix<S, E> B2("B2", 2, 4, 2);
  auto h = Kokkos::create_mirror_view(A);
  h(1, 2, 3) = std::numeric_limits<S>::quiet_NaN();
  Kokkos::deep_copy(A, h);
  try {
    hfisher::kernels::gemm(E(), hfisher::Op::NoTrans, hfisher::Op::NoTrans, S(1), A, B2, S(0), C);
    FAIL() << "NaN not detected";
  } catch (const hfisher::NonFiniteError& e) {  // an hfisher::Error that says what by its type
    const std::string w = e.what();
    EXPECT_NE(w.find("argument A"), std::string::npos) << w;
    EXPECT_NE(w.find("batch entry 1"), std::string::npos) << w;
    EXPECT_NE(w.find("(2, 3)"), std::string::npos) << w;
  }

  // the check runs per entry in the GEMM's own launch: the first entry with a
  // bad input is named (B of entry 1 before A of entry 3, C read as beta != 0
  // in entry 2); refused entries keep C, the others hold their products
  {
    const int nb = 5, m = 6, n = 7, k = 5;
    auto Ah = random_batch(nb, m, k, 11), Bh = random_batch(nb, k, n, 12), Ch = random_batch(nb, m, n, 13);
    Ah(3, 0, 4) = std::numeric_limits<double>::infinity();
    Bh(1, 4, 6) = std::numeric_limits<double>::quiet_NaN();
    Ch(2, 5, 0) = -std::numeric_limits<double>::infinity();
    auto Ad = to_device<S, E>(Ah), Bd = to_device<S, E>(Bh), Cd = to_device<S, E>(Ch);
    const auto nn = hfisher::Op::NoTrans;
    expect_throw_with<hfisher::NonFiniteError>([&] { hfisher::kernels::gemm(E(), nn, nn, S(2), Ad, Bd, S(-1), Cd); },
                                               {"argument B", "batch entry 1,", "(4, 6)"}, "NaN in B");
    auto got = to_host(Cd);
    auto ref = matmul(Ah, 0, Bh, 0);
    for (int b = 0; b < nb; ++b)
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          const bool refused = b == 1 || b == 2 || b == 3;
          const double want = refused ? Ch(b, i, j) : 2 * ref(b, i, j) - Ch(b, i, j);
          if (refused && !std::isfinite(want)) {
            EXPECT_EQ(got(b, i, j), want) << b << " " << i << " " << j;
          } else {
            EXPECT_NEAR(got(b, i, j), want, 1e-4 * (std::abs(want) + 1)) << b << " " << i << " " << j;
          }
        }
    // with B mended, C of entry 2 is named next
    Bh(1, 4, 6) = 0;
    Bd = to_device<S, E>(Bh);
    expect_throw_with<hfisher::NonFiniteError>([&] { hfisher::kernels::gemm(E(), nn, nn, S(2), Ad, Bd, S(-1), Cd); },
                                               {"argument C", "batch entry 2,", "(5, 0)"}, "Inf in C");
    // beta = 0: C is not read, so only A of entry 3 is refused
    Cd = to_device<S, E>(Ch);
    expect_throw_with<hfisher::NonFiniteError>([&] { hfisher::kernels::gemm(E(), nn, nn, S(1), Ad, Bd, S(0), Cd); },
                                               {"argument A", "batch entry 3,"}, "Inf in A");
    EXPECT_TRUE(std::isfinite(to_host(Cd)(2, 5, 0)));
  }

  // entries larger than the scan's 512-element chunks (the NaN in the last,
  // partial chunk) and a strided A (columns of a wider array: scanned by rows)
  {
    auto Ah = random_batch(2, 40, 30, 21), Bh = random_batch(2, 30, 5, 22);
    Ah(1, 39, 29) = std::numeric_limits<double>::quiet_NaN();
    auto Ad = to_device<S, E>(Ah), Bd = to_device<S, E>(Bh);
    hfisher::BatchMatrix<S, E> Cd("C", 2, 40, 5);
    const auto nn = hfisher::Op::NoTrans;
    expect_throw_with<hfisher::NonFiniteError>([&] { hfisher::kernels::gemm(E(), nn, nn, S(1), Ad, Bd, S(0), Cd); },
                                               {"batch entry 1, position (39, 29)"}, "NaN in the last chunk");
    auto Wh = random_batch(2, 40, 31, 23);
    Wh(1, 20, 7) = std::numeric_limits<double>::infinity();
    auto Wd = to_device<S, E>(Wh);
    auto As = Kokkos::subview(Wd, Kokkos::ALL, Kokkos::ALL, Kokkos::make_pair(0, 30));
    expect_throw_with<hfisher::NonFiniteError>([&] { hfisher::kernels::gemm(E(), nn, nn, S(1), As, Bd, S(0), Cd); },
                                               {"batch entry 1, position (20, 7)"}, "Inf in a strided A");
    // the column past the subview is not read
    Wh(1, 20, 7) = 0;
    Wh(0, 3, 30) = std::numeric_limits<double>::quiet_NaN();
    Wd = to_device<S, E>(Wh);
    As = Kokkos::subview(Wd, Kokkos::ALL, Kokkos::ALL, Kokkos::make_pair(0, 30));
    EXPECT_NO_THROW(hfisher::kernels::gemm(E(), nn, nn, S(1), As, Bd, S(0), Cd));
  }
}
