#pragma once
// Helpers shared by the H-matrix tests (HODLR and HSS): kernel matrices on
// random points, host <-> device matrices, dense differences and norms.

#include "../test_helpers.hpp"

namespace hfisher_test {

// exp(-|x - y| / ell) kernel on n random points in [0, 1]^dim, plus shift I
inline std::vector<double> kernel_matrix(int n, int dim, double shift, unsigned seed, std::vector<double>* pts_out = nullptr) {
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

template <class S, class E>
Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space> dev2(const std::vector<double>& a, int m, int n) {
  Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space> d("d", m, n);
  auto h = Kokkos::create_mirror_view(d);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) h(i, j) = S(a[size_t(i) * n + j]);
  Kokkos::deep_copy(d, h);
  return d;
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

}  // namespace hfisher_test
