#pragma once
// The tests every H-matrix format (HODLR, HSS) must pass, written once as a
// type-parameterized suite (gtest's TYPED_TEST_SUITE_P) over (format,
// precision, backend): test_hodlr.cpp and test_hss.cpp instantiate it for
// their format with every Config of the build, next to the tests only
// their format has. What differs between the formats (the contract's
// slack, the factor's width, how much rank a block can hold, the
// version-1 fixture) is in FormatTraits.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "hmatrix_helpers.hpp"

namespace hfisher_test {

/// The format F over one Config (scalar, backend); ConfigNames names it.
template <template <class, class> class F, class C>
struct FormatCase {
  using scalar = typename C::scalar;
  using exec = typename C::exec;
  using matrix = F<scalar, exec>;
  template <class S2>
  using with_scalar = F<S2, exec>;
};

template <template <class, class> class F, class Tuple>
struct FormatCasesOf;
template <template <class, class> class F, class... Cs>
struct FormatCasesOf<F, std::tuple<Cs...>> {
  using type = ::testing::Types<FormatCase<F, Cs>...>;
};

/// Format F in both precisions on every backend of the build.
template <template <class, class> class F>
using FormatCases =
    typename FormatCasesOf<F, decltype(std::tuple_cat(std::declval<SerialConfigs>(), std::declval<OpenMPConfigs>(),
                                                      std::declval<CudaConfigs>()))>::type;

template <class HM>
struct FormatTraits;

template <class S, class E>
struct FormatTraits<hfisher::HODLR<S, E>> {
  using other = hfisher::HSS<S, E>;  ///< whose files this format must refuse
  /// |H - A|_2 <= slack(levels) tol |A|_2: one truncation per level and block row
  static double slack(int levels) { return 2 * levels + 1; }
  /// from exact factors: one QR-SVD truncation per level, at tol 1e-12 (double)
  static double factors_slack(int levels) { return levels + 1; }
  static constexpr double factors_tol = 1e-12;
  /// columns of the factor W (A = W W^T): W is square
  static int w_cols(const hfisher::HODLR<S, E>& H) { return H.tree().size(); }
  /// the most rank a block of the level can hold: its size
  static int rank_room(const hfisher::HODLR<S, E>& H, int level) { return H.tree().block_size(level); }
  /// the version-1 file in unit_tests/hmatrix/data (see check_format_versions)
  static constexpr const char* v1_file = "hodlr_v1.bin";
  static constexpr double v1_error = 0.02;
  static constexpr bool v1_spd_compensation = true;
  static std::vector<int> v1_capped() { return {1, 2, 4}; }
};

template <class S, class E>
struct FormatTraits<hfisher::HSS<S, E>> {
  using other = hfisher::HODLR<S, E>;
  /// nested bases: a node's error enters every ancestor's basis
  static double slack(int levels) { return 10.0 * (levels + 1); }
  static double factors_slack(int levels) { return slack(levels); }
  static constexpr double factors_tol = 1e-11;
  /// W is n x N (N the padded size)
  static int w_cols(const hfisher::HSS<S, E>& H) { return H.tree().padded_size(); }
  /// a node's rank is at most its row count at that level, k_l <= m_l
  static int rank_room(const hfisher::HSS<S, E>& H, int level) { return int(H.D(level).extent(1)); }
  static constexpr const char* v1_file = "hss_v1.bin";
  static constexpr double v1_error = 0.1;
  static constexpr bool v1_spd_compensation = false;
  static std::vector<int> v1_capped() { return {2, 4, 8}; }
};

/// The shared contract (hmatrix_helpers.hpp) plus the format's rank room.
template <class HM>
void check_format_contract(const HM& H, const HostBatch& Aref, double approx_tol, const std::string& what) {
  using T = FormatTraits<HM>;
  check_contract(H, Aref, approx_tol, what.c_str(), T::w_cols(H));
  for (const auto& r : H.ranks()) EXPECT_LE(r.padded, T::rank_room(H, r.level)) << what << ": level " << r.level;
}

template <class C>
class HMatrixFormat : public ::testing::Test {};
TYPED_TEST_SUITE_P(HMatrixFormat);

// Kernel matrices in 1-3 dimensions, geometric and index-order trees, a
// matrix smaller than a leaf: the contract at tol; the 1-D geometric case
// compresses below dense storage.
TYPED_TEST_P(HMatrixFormat, FromDenseKernelMatrices) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using HM = typename TypeParam::matrix;
  const double tol = HMatrixTol<S>::tol_kernel;
  for_each_kernel_case([&](const std::vector<double>& A, const hfisher::ClusterTree& tree, const std::string& what) {
    const int n = tree.size();
    hfisher::CompressionOptions o;
    o.tol = tol;
    o.max_rank = 200;
    auto H = HM::from_dense(dev2<S, E>(A, n, n), tree, o);
    check_format_contract(H, as_batch(A, n), FormatTraits<HM>::slack(tree.levels()) * tol, what);
    if (n == 128) {
      EXPECT_LT(H.bytes(), size_t(n) * n * sizeof(S)) << what;
    }
  });
}

// diag + G G^T from its factors, G of m columns: no block's rank exceeds m
// (nor the room of its block), and the contract holds at tol.
TYPED_TEST_P(HMatrixFormat, FromFactorsDiagonalPlusGramian) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using HM = typename TypeParam::matrix;
  // double: the format's own (FormatTraits); float: tol_factors, above both
  const double tol = std::max(FormatTraits<HM>::factors_tol, HMatrixTol<S>::tol_factors);
  for (int m : {5, 40, 400}) {
    const int n = 130;
    auto G = random_batch(1, n, m, 100 + m);
    for (auto& x : G.a) x /= std::sqrt(double(m));
    std::vector<double> d(n), A(size_t(n) * n);
    for (int i = 0; i < n; ++i) d[i] = 1.0 + 0.1 * i / n;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int c = 0; c < m; ++c) s += G(0, i, c) * G(0, j, c);
        A[size_t(i) * n + j] = s + (i == j ? d[i] : 0.0);
      }
    Kokkos::View<S*, typename E::memory_space> dd("d", n);
    auto dh = Kokkos::create_mirror_view(dd);
    for (int i = 0; i < n; ++i) dh(i) = S(d[i]);
    Kokkos::deep_copy(dd, dh);
    auto tree = hfisher::ClusterTree::balanced(n, 16);
    hfisher::CompressionOptions o;
    o.tol = tol;
    o.max_rank = 128;
    auto H = HM::from_factors(dd, dev2<S, E>(G.a, n, m), tree, o);
    const std::string what = "from_factors m=" + std::to_string(m);
    check_format_contract(H, as_batch(A, n), FormatTraits<HM>::factors_slack(tree.levels()) * tol, what);
    for (const auto& r : H.ranks()) EXPECT_LE(r.max, m) << what << ": level " << r.level;
  }
}

// add_diagonal; save and load (the same matrix back); files refused with an
// error: cut short, foreign, missing, one flipped bit anywhere, trailing
// bytes, a level count asking for 2^30 leaves, the other precision, the
// other format; mutated payloads load or throw, never crash. Then input the
// constructions refuse, an indefinite matrix's factorization, and a
// product of the wrong size.
TYPED_TEST_P(HMatrixFormat, SaveLoadAddDiagonalAndErrors) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using HM = typename TypeParam::matrix;
  using M = typename HM::Matrix;
  const int n = 70;
  auto A = kernel_matrix(n, 1, 0.1, 77);
  auto tree = hfisher::ClusterTree::balanced(n, 16);
  hfisher::CompressionOptions o;
  o.tol = HMatrixTol<S>::tol_fixture;
  auto Ad = dev2<S, E>(A, n, n);
  auto H = HM::from_dense(Ad, tree, o);
  H.add_diagonal(S(2));
  auto d = to_host1(H.diag());
  for (int i = 0; i < n; ++i) EXPECT_NEAR(d[i], A[size_t(i) * n + i] + 2, 1e-4);

  const std::string path = unique_temp("hmatrix_" + std::to_string(sizeof(S)) + ".bin");
  H.save(path);
  auto H2 = HM::load(path);
  EXPECT_TRUE(H2.tree() == H.tree());
  EXPECT_TRUE(near(host_matrix(H2.to_dense()), host_matrix(H.to_dense()), 0.0, 1.0, "load(save(H)) == H"));
  {
    std::ifstream i(path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(i)), std::istreambuf_iterator<char>());
    std::ofstream o2(path + ".cut", std::ios::binary);
    o2.write(all.data(), all.size() / 2);
  }
  expect_throw_with([&] { HM::load(path + ".cut"); }, {"truncated"}, "a file cut short");
  std::ofstream(path + ".foreign") << "not a matrix at all";
  EXPECT_THROW(HM::load(path + ".foreign"), hfisher::Error);
  EXPECT_THROW(HM::load(path + ".missing"), hfisher::Error);
  // a single flipped bit anywhere (payload or checksum trailer) is refused
  {
    std::ifstream i(path, std::ios::binary);
    const std::string all((std::istreambuf_iterator<char>(i)), std::istreambuf_iterator<char>());
    std::mt19937 g(11);
    for (int trial = 0; trial < 64; ++trial) {
      std::string flipped = all;
      const std::size_t bit = (trial < 8 ? all.size() * 8 - 1 - std::size_t(trial) * 21 : g() % (all.size() * 8));
      flipped[bit / 8] = char(flipped[bit / 8] ^ (1 << (bit % 8)));
      std::ofstream(path + ".flip", std::ios::binary) << flipped;
      EXPECT_THROW(HM::load(path + ".flip"), hfisher::Error) << "bit " << bit << " of " << all.size() * 8;
    }
  }
  // trailing bytes after the record, and a header whose level count asks for
  // 2^30 leaves: refused, the second before anything of that size is allocated
  refuses_trailing_bytes_and_huge_levels(path, [](const std::string& p) { HM::load(p); });
  // mutated payloads behind no seal: loaded or refused, never a crash
  fuzz_loader(path, [](const std::string& p) { HM::load(p); });
  using Other = typename std::conditional<std::is_same<S, double>::value, float, double>::type;
  using OtherPrecision = typename TypeParam::template with_scalar<Other>;
  expect_throw_with([&] { OtherPrecision::load(path); }, {"bit scalars"}, "the other precision");
  // the other format's file
  FormatTraits<HM>::other::from_dense(Ad, tree, o).save(path + ".other");
  EXPECT_THROW(HM::load(path + ".other"), hfisher::Error);
  for (const char* ext : {"", ".cut", ".foreign", ".flip", ".other"}) std::remove((path + ext).c_str());

  // not positive definite: the factorization says so and suggests add_diagonal
  auto Hi = HM::from_dense(dev2<S, E>(kernel_matrix(n, 1, -3.0, 78), n, n), tree, o);
  expect_throw_with([&] { Hi.factor(); }, {"not positive definite", "add_diagonal"}, "an indefinite matrix");
  // bad input
  auto Ans = A;
  Ans[1] += 0.5;
  EXPECT_THROW(HM::from_dense(dev2<S, E>(Ans, n, n), tree, o), hfisher::Error);
  auto Anan = A;
  Anan[5 * n + 7] = std::nan("");
  EXPECT_THROW(HM::from_dense(dev2<S, E>(Anan, n, n), tree, o), hfisher::Error);
  EXPECT_THROW(HM::from_dense(dev2<S, E>(A, n - 1, n - 1), tree, o), hfisher::Error);
  hfisher::CompressionOptions bad = o;
  bad.tol = 0;
  EXPECT_THROW(HM::from_dense(Ad, tree, bad), hfisher::Error);
  bad = o;
  bad.max_rank = -1;
  EXPECT_THROW(HM::from_dense(Ad, tree, bad), hfisher::Error);
  M Xw("Xw", n + 1, 1), Yw("Yw", n + 1, 1);
  EXPECT_THROW(H.apply(Xw, Yw), hfisher::Error);
}

// Format version 1 (flags packed into max_rank and the block ranks) still
// loads; version 2 keeps every option field (hmatrix_helpers.hpp).
TYPED_TEST_P(HMatrixFormat, FormatVersionsLoad) {
  using HM = typename TypeParam::matrix;
  using T = FormatTraits<HM>;
  check_format_versions<HM>(T::v1_file, T::v1_error, T::v1_spd_compensation, T::v1_capped());
}

REGISTER_TYPED_TEST_SUITE_P(HMatrixFormat, FromDenseKernelMatrices, FromFactorsDiagonalPlusGramian,
                            SaveLoadAddDiagonalAndErrors, FormatVersionsLoad);

}  // namespace hfisher_test
