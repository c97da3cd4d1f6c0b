#pragma once
// Helpers shared by the H-matrix tests (HODLR and HSS): kernel matrices on
// random points, host <-> device matrices, dense differences and norms.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "../fuzz_helpers.hpp"
#include "../test_helpers.hpp"

namespace hfisher_test {

// exp(-|x - y| / ell) kernel on n random points in [0, 1]^dim, plus shift I
inline std::vector<double> kernel_matrix(int n, int dim, double shift, unsigned seed,
                                         std::vector<double>* pts_out = nullptr) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> pts(size_t(n) * dim), A(size_t(n) * n);
  for (auto& x : pts) x = u(g);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double r2 = 0;
      for (int c = 0; c < dim; ++c) r2 += std::pow(pts[size_t(i) * dim + c] - pts[size_t(j) * dim + c], 2);
      A[size_t(i) * n + j] = std::exp(-std::sqrt(r2) / 0.5) + (i == j ? shift : 0.0);
    }
  if (pts_out) *pts_out = pts;
  return A;
}

// Gaussian kernel exp(-r^2 inv2l2) + nugget I, entries computed on the device
// from the points x (n, dim)
template <class S, class Mem>
struct GaussEntries {
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> x;
  double inv2l2, nugget;
  KOKKOS_INLINE_FUNCTION S operator()(int i, int j) const {
    double r2 = 0;
    for (int c = 0; c < int(x.extent(1)); ++c) r2 += (x(i, c) - x(j, c)) * (x(i, c) - x(j, c));
    return S(::exp(-r2 * inv2l2) + (i == j ? nugget : 0.0));
  }
};

/// The Gaussian kernel exp(-r^2 / (2 * 0.3^2)) + 0.1 I on n uniform points in
/// [0, 1]^dim (seeded): its entry functor on E's memory, the points and
/// the dense matrix (n x n, its entries rounded to S) for reference.
template <class S, class E>
GaussEntries<S, typename E::memory_space> gauss_entries_case(int n, int dim, unsigned seed, std::vector<double>& pts,
                                                             std::vector<double>& A) {
  using Mem = typename E::memory_space;
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0, 1);
  pts.assign(size_t(n) * dim, 0.0);
  A.assign(size_t(n) * n, 0.0);
  for (auto& x : pts) x = u(g);
  GaussEntries<S, Mem> fn{{}, 1.0 / (2 * 0.3 * 0.3), 0.1};
  fn.x = Kokkos::View<double**, Kokkos::LayoutRight, Mem>("x", n, dim);
  auto xh = Kokkos::create_mirror_view(fn.x);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < dim; ++c) xh(i, c) = pts[size_t(i) * dim + c];
  Kokkos::deep_copy(fn.x, xh);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double r2 = 0;
      for (int c = 0; c < dim; ++c) r2 += std::pow(pts[size_t(i) * dim + c] - pts[size_t(j) * dim + c], 2);
      A[size_t(i) * n + j] = double(S(std::exp(-r2 * fn.inv2l2) + (i == j ? fn.nugget : 0.0)));
    }
  return fn;
}

template <class S, class E>
Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space> dev2(const std::vector<double>& a, int m, int n) {
  Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space> d("d", m, n);
  auto h = Kokkos::create_mirror_view(d);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) h(i, j) = S(a[size_t(i) * n + j]);
  Kokkos::deep_copy(d, h);
  return d;
}

/// A dense SPD matrix with blocks of full rank: I + G G^T / n, G (n, n)
/// standard normal (row-major, exactly symmetric).
inline std::vector<double> random_spd(int n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> G(std::size_t(n) * n), A(std::size_t(n) * n, 0.0);
  for (auto& x : G) x = nd(g);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double s = i == j ? 1.0 : 0.0;
      for (int k = 0; k < n; ++k) s += G[std::size_t(i) * n + k] * G[std::size_t(j) * n + k] / n;
      A[std::size_t(i) * n + j] = s;
    }
  return A;
}

/// The operator Y = A Om of a dense device matrix A (n, n), for from_matvec;
/// counts the columns it multiplies in *counted when given.
template <class S, class E, class AV>
auto dense_product_op(const AV& Ad, int n, int* counted = nullptr) {
  using M = Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space>;
  return [Ad, n, counted](const M& Om, M& Y) {
    if (counted) *counted += int(Om.extent(1));
    using U3 =
        Kokkos::View<S***, Kokkos::LayoutRight, typename E::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    hfisher::kernels::gemm(E(), hfisher::Op::NoTrans, hfisher::Op::NoTrans, S(1), U3(Ad.data(), 1, n, n),
                           U3(Om.data(), 1, n, Om.extent(1)), S(0), U3(Y.data(), 1, n, Y.extent(1)));
  };
}

inline HostBatch as_batch(const std::vector<double>& a, int n) {
  HostBatch r(1, n, n);
  r.a = a;
  return r;
}

inline double norm2_of(const HostBatch& A) { return lapack_singular_values(A, 0)[0]; }

inline HostBatch diff(const HostBatch& A, const HostBatch& B) {
  HostBatch C = A;
  for (size_t i = 0; i < C.a.size(); ++i) C.a[i] -= B.a[i];
  return C;
}

/// The dense-construction cases both formats are tested on: kernel matrices
/// (shift 0.5) in 1-3 dimensions, geometric and index-order trees, padding,
/// and a single leaf. fn(A, tree, what) checks one.
template <class Fn>
void for_each_kernel_case(Fn&& fn) {
  struct Case {
    int n, dim, leaf;
    bool geometric;
  };
  const std::vector<Case> cases = {
      {128, 1, 16, true}, {100, 2, 16, true}, {150, 3, 32, true}, {90, 1, 16, false}, {12, 2, 16, false}};
  unsigned seed = 10;
  for (const auto& c : cases) {
    std::vector<double> pts;
    auto A = kernel_matrix(c.n, c.dim, 0.5, seed++, &pts);
    auto tree = c.geometric ? hfisher::ClusterTree::from_points(pts, c.n, c.dim, c.leaf)
                            : hfisher::ClusterTree::balanced(c.n, c.leaf);
    const std::string what = "n=" + std::to_string(c.n) + " dim=" + std::to_string(c.dim);
    fn(A, tree, what);
  }
}

template <class M>
M eye(int rows, int cols) {
  M I("I", rows, cols);
  auto h = Kokkos::create_mirror_view(I);
  for (int i = 0; i < std::min(rows, cols); ++i) h(i, i) = 1;
  Kokkos::deep_copy(I, h);
  return I;
}

/// The contract every H-matrix format (HODLR, HSS) meets against its dense
/// reference: to_dense within approx_tol |A|_2, apply and diag consistent
/// with to_dense, sane rank reports, solve and logdet against LAPACK, and a
/// factor W (n x w_cols: n for HODLR, the padded size for HSS) with
/// W W^T = H and apply_Wt = W^T. A matrix-free build also has its product
/// count checked; every build's error estimate is checked within 10x of
/// the true error.
template <class Fmt>
void check_contract(const Fmt& H, const HostBatch& Aref, double approx_tol, const char* what, int w_cols) {
  using S = typename Fmt::scalar_type;
  using M = typename Fmt::Matrix;
  using Tol = HMatrixTol<S>;
  const int n = Aref.n;
  const double nA = norm2_of(Aref);
  const double eps = Tol::eps;
  const double slack = 50 * n * eps * nA;
  auto Hd = host_matrix(H.to_dense());
  EXPECT_LE(norm2_of(diff(Hd, Aref)), approx_tol * nA + slack) << what << ": |H - A|_2";
  const auto& info = H.build_info();
  // every construction estimates its achieved error (unless probes = 0)
  if (H.options().probes > 0) {
    EXPECT_TRUE(info.probes > 0 || info.entries > 0) << what << ": no error estimate";
    const double true_fro = fro(diff(Hd, Aref), 0) / fro(Aref, 0);
    EXPECT_LE(info.error_estimate, 10 * true_fro + 100 * eps) << what << ": error estimate vs true error";
    EXPECT_LE(true_fro, 10 * info.error_estimate + 100 * eps) << what << ": true error vs error estimate";
    EXPECT_EQ(info.products, info.samples + info.probes) << what;
  }
  auto Xh = random_batch(1, n, 3, 5);
  M X("X", n, 3), Y("Y", n, 3);
  {
    auto h = Kokkos::create_mirror_view(X);
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < 3; ++c) h(i, c) = S(Xh(0, i, c));
    Kokkos::deep_copy(X, h);
  }
  H.apply(X, Y);
  EXPECT_TRUE(near(host_matrix(Y), matmul(Hd, false, Xh, false), slack * 10, 1.0, "apply vs to_dense * X")) << what;
  auto dg = to_host1(H.diag());
  for (int i = 0; i < n; ++i) EXPECT_NEAR(dg[i], Hd(0, i, i), slack) << what << ": diag " << i;
  EXPECT_GT(H.bytes(), 0u);
  for (const auto& r : H.ranks()) {
    EXPECT_LE(r.min, r.max) << what;
    EXPECT_LE(r.max, r.padded) << what;
  }
  auto F = H.factor();
  M Z("Z", n, 3);
  F.solve(Y, Z);
  EXPECT_TRUE(near(host_matrix(Z), Xh, Tol::solve, 1.0 + max_abs(Xh, 0), "solve(H X) - X")) << what;
  HostBatch L(1, n, n), Hsym = Hd;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) Hsym(0, i, j) = Hsym(0, j, i) = 0.5 * (Hd(0, i, j) + Hd(0, j, i));
  ASSERT_EQ(lapack_cholesky(Hsym, 0, L), 0) << what;
  double ld = 0;
  for (int i = 0; i < n; ++i) ld += 2 * std::log(L(0, i, i));
  EXPECT_NEAR(F.logdet(), ld, Tol::logdet * (n + std::abs(ld))) << what;
  M Wd("W", n, w_cols), Wtd("Wt", w_cols, n);
  F.apply_W(eye<M>(w_cols, w_cols), Wd);
  F.apply_Wt(eye<M>(n, n), Wtd);
  auto W = host_matrix(Wd), Wt = host_matrix(Wtd);
  const double wtol = Tol::factor_w;
  EXPECT_TRUE(near(Wt, transpose(W), wtol, 1.0 + std::sqrt(nA), "apply_Wt vs W^T")) << what;
  EXPECT_TRUE(near(matmul(W, false, W, true), Hsym, wtol, nA, "W W^T - H")) << what;
}

// The file contract of HODLR and HSS files (same header layout: magic 8,
// version 4, scalar size 4, n 4, leaf 4, levels 4): a byte appended after a
// saved record is refused ("trailing"), and an unsealed copy whose level
// count asks for 2^30 leaves is refused before anything of that size is
// allocated ("remain"). `load(path)` loads the format under test.
template <class Load>
void refuses_trailing_bytes_and_huge_levels(const std::string& path, Load&& load) {
  {
    std::ifstream i(path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(i)), std::istreambuf_iterator<char>());
    std::ofstream(path + ".tail", std::ios::binary) << all << 'x';
    all.resize(all.size() - 20);  // without the checksum trailer: read as an unsealed file
    std::int32_t leaf = 0;
    std::memcpy(&leaf, all.data() + 20, 4);
    std::int32_t levels = 0;
    while (levels < 24 && (std::int64_t(leaf) << (levels + 1)) < (std::int64_t(1) << 30)) ++levels;
    std::memcpy(&all[24], &levels, 4);
    std::ofstream(path + ".huge", std::ios::binary) << all;
  }
  for (const std::string what : {".tail", ".huge"}) {
    try {
      load(path + what);
      ADD_FAILURE() << what << " accepted";
    } catch (const hfisher::Error& e) {
      EXPECT_NE(std::string(e.what()).find(what == ".tail" ? "trailing" : "remain"), std::string::npos) << e.what();
    }
    std::remove((path + what).c_str());
  }
}

// Files of format version 1 (options packed into bits of max_rank, capped
// flags in bit 30 of a block rank) still load: unit_tests/hmatrix/data holds
// one of each format, written by the code of 870bf22 from the matrix below
// (Gaussian kernel, length 0.15, on 40 points x_i = frac(0.618.. (i + 1)),
// plus I; leaf 8, tol 1e-6, max_rank 2 with allow_capped, seed 7; HODLR
// also with spd_compensation). Every block was capped at rank 2. The loaded
// matrix is within the cap's error of A (HODLR 0.007, HSS 0.05 relative
// Frobenius when written), keeps its options, and a save in the current
// version loads to the same matrix; every option field survives a round
// trip, and an unknown options flag is refused.
template <class HM>
void check_format_versions(const std::string& fixture, double rel_error, bool spd_compensation,
                           const std::vector<int>& capped) {
  using S = typename HM::scalar_type;
  using E = typename HM::exec_space;
  const std::string file = std::string(HFISHER_TEST_DATA_DIR) + "/" + fixture;
  if (!std::is_same<S, double>::value) {
    expect_throw_with([&] { HM::load(file); }, {"64-bit scalars"}, "float from a double file");
    return;
  }
  const int n = 40;
  std::vector<double> x(n), A(size_t(n) * n);
  for (int i = 0; i < n; ++i) x[i] = std::fmod(0.6180339887498949 * (i + 1), 1.0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      A[size_t(i) * n + j] = std::exp(-(x[i] - x[j]) * (x[i] - x[j]) / (2 * 0.15 * 0.15)) + (i == j ? 1.0 : 0.0);
  auto H = HM::load(file);
  const auto& o = H.options();
  EXPECT_EQ(o.tol, 1e-6);
  EXPECT_EQ(o.max_rank, 2);
  EXPECT_TRUE(o.allow_capped);
  EXPECT_EQ(o.spd_compensation, spd_compensation);
  ASSERT_EQ(H.ranks().size(), capped.size()) << fixture;
  for (const auto& r : H.ranks()) {
    EXPECT_EQ(r.capped, capped[r.level - 1]) << fixture << " level " << r.level;
    EXPECT_EQ(r.max, 2) << fixture << " level " << r.level;
  }
  const HostBatch Hd = host_matrix(H.to_dense());
  double e = 0, a = 0;
  for (std::size_t k = 0; k < A.size(); ++k) {
    e += (Hd.a[k] - A[k]) * (Hd.a[k] - A[k]);
    a += A[k] * A[k];
  }
  EXPECT_LE(std::sqrt(e / a), rel_error) << fixture;
  const std::string path = unique_temp("v2_" + fixture);
  H.save(path);
  auto H2 = HM::load(path);
  EXPECT_TRUE(near(host_matrix(H2.to_dense()), Hd, 0.0, 1.0, "load(save(load(v1))) == load(v1)")) << fixture;
  const auto r1 = H.ranks(), r2 = H2.ranks();
  ASSERT_EQ(r1.size(), r2.size());
  for (std::size_t l = 0; l < r1.size(); ++l) EXPECT_EQ(r1[l].capped, r2[l].capped) << "level " << r1[l].level;

  // every field of the options record survives save and load
  hfisher::CompressionOptions c;
  c.tol = 1e-5;
  c.max_rank = 3;
  c.seed = 7;
  c.oversampling = 13;
  c.probes = 3;
  c.max_products = 500;
  c.allow_capped = true;
  auto tree = hfisher::ClusterTree::from_points(x, n, 1, 8);
  HM::from_dense(dev2<S, E>(A, n, n), tree, c).save(path);
  const auto c2 = HM::load(path).options();
  EXPECT_EQ(c2.tol, c.tol);
  EXPECT_EQ(c2.max_rank, c.max_rank);
  EXPECT_EQ(c2.seed, c.seed);
  EXPECT_EQ(c2.oversampling, c.oversampling);
  EXPECT_EQ(c2.probes, c.probes);
  EXPECT_EQ(c2.max_products, c.max_products);
  EXPECT_TRUE(c2.allow_capped);
  EXPECT_FALSE(c2.spd_compensation);
  // the flags word (offset 68: head 16, n/leaf/levels 12, record head 8,
  // tol 8, max_rank 4, seed 8, three int32 12) with an unknown bit
  {
    std::ifstream i(path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(i)), std::istreambuf_iterator<char>());
    all.resize(all.size() - 20);  // without the checksum trailer
    const std::uint32_t bad = 4;
    std::memcpy(&all[68], &bad, 4);
    std::ofstream(path + ".flags", std::ios::binary) << all;
  }
  expect_throw_with([&] { HM::load(path + ".flags"); }, {"corrupt options", "flags = 4"}, "unknown options flag");
  std::remove(path.c_str());
  std::remove((path + ".flags").c_str());
}

}  // namespace hfisher_test
