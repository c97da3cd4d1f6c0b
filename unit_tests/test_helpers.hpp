#pragma once
// Shared helpers of the unit tests: typed-test lists over value types and
// enabled backends, host/device transfer, random matrices, the LAPACK test
// oracle, and a comparison that prints the worst entries.

#include <gtest/gtest.h>
#include <hfisher/hfisher.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tolerances.hpp"

namespace hfisher_test {

/// Runs f and expects it to throw Ex (an hfisher::Error by default) whose
/// message holds every string in parts; `what` names the case in failures.
template <class Ex = hfisher::Error, class F>
void expect_throw_with(F&& f, std::initializer_list<std::string> parts, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << what << ": nothing thrown";
  } catch (const Ex& e) {
    const std::string w = e.what();
    for (const auto& p : parts) EXPECT_NE(w.find(p), std::string::npos) << what << ": '" << p << "' not in: " << w;
  }
}

template <class S, class E>
struct Config {
  using scalar = S;
  using exec = E;
};

// (float, double) x the execution spaces this Kokkos build enabled.
template <class E>
using BothPrecisions = std::tuple<Config<double, E>, Config<float, E>>;
#ifdef KOKKOS_ENABLE_SERIAL
using SerialConfigs = BothPrecisions<Kokkos::Serial>;
#else
using SerialConfigs = std::tuple<>;
#endif
#ifdef KOKKOS_ENABLE_OPENMP
using OpenMPConfigs = BothPrecisions<Kokkos::OpenMP>;
#else
using OpenMPConfigs = std::tuple<>;
#endif
#ifdef KOKKOS_ENABLE_CUDA
using CudaConfigs = BothPrecisions<Kokkos::Cuda>;
#else
using CudaConfigs = std::tuple<>;
#endif
template <class Tuple>
struct ToTypes;
template <class... Ts>
struct ToTypes<std::tuple<Ts...>> {
  using type = ::testing::Types<Ts...>;
};
using Configs = typename ToTypes<decltype(std::tuple_cat(std::declval<SerialConfigs>(), std::declval<OpenMPConfigs>(),
                                                         std::declval<CudaConfigs>()))>::type;

struct ConfigNames {
  template <class C>
  static std::string GetName(int i) {
    std::string s = std::is_same<typename C::scalar, double>::value ? "double_" : "float_";
    return s + C::exec::name() + "_" + std::to_string(i);
  }
};

/// Host batch of matrices, row-major per entry: (batch, m, n).
struct HostBatch {
  int nb = 0, m = 0, n = 0;
  std::vector<double> a;
  HostBatch() = default;
  HostBatch(int nb_, int m_, int n_) : nb(nb_), m(m_), n(n_), a(size_t(nb_) * m_ * n_, 0.0) {}
  double& operator()(int b, int i, int j) { return a[(size_t(b) * m + i) * n + j]; }
  double operator()(int b, int i, int j) const { return a[(size_t(b) * m + i) * n + j]; }
};

inline HostBatch random_batch(int nb, int m, int n, unsigned seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d;
  HostBatch h(nb, m, n);
  for (auto& x : h.a) x = d(g);
  return h;
}

/// SPD batch: A = G G^T / n + shift I.
inline HostBatch spd_batch(int nb, int n, unsigned seed, double shift = 1.0) {
  HostBatch g = random_batch(nb, n, n, seed), h(nb, n, n);
  for (int b = 0; b < nb; ++b)
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int k = 0; k < n; ++k) s += g(b, i, k) * g(b, j, k);
        h(b, i, j) = s / n + (i == j ? shift : 0.0);
      }
  return h;
}

/// Batch of m x n matrices with prescribed singular values sigma (length
/// min(m,n)): U diag(sigma) V^T with random orthonormal U, V.
HostBatch with_singular_values(int nb, int m, int n, const std::vector<double>& sigma, unsigned seed);

template <class S, class E>
hfisher::BatchMatrix<S, E> to_device(const HostBatch& h) {
  hfisher::BatchMatrix<S, E> d("d", h.nb, h.m, h.n);
  auto hm = Kokkos::create_mirror_view(d);
  for (int b = 0; b < h.nb; ++b)
    for (int i = 0; i < h.m; ++i)
      for (int j = 0; j < h.n; ++j) hm(b, i, j) = S(h(b, i, j));
  Kokkos::deep_copy(d, hm);
  return d;
}

template <class V>
HostBatch to_host(const V& d) {
  auto hm = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d);
  HostBatch h(d.extent(0), d.extent(1), d.extent(2));
  for (int b = 0; b < h.nb; ++b)
    for (int i = 0; i < h.m; ++i)
      for (int j = 0; j < h.n; ++j) h(b, i, j) = double(hm(b, i, j));
  return h;
}

/// A rank-2 device view as a HostBatch with one entry (1, rows, cols).
template <class V>
HostBatch host_matrix(const V& d) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d);
  HostBatch r(1, d.extent(0), d.extent(1));
  for (size_t i = 0; i < d.extent(0); ++i)
    for (size_t j = 0; j < d.extent(1); ++j) r(0, i, j) = double(h(i, j));
  return r;
}

/// n examples of f standard-normal features with labels uniform in [0, classes).
inline hfisher::nn::Dataset random_dataset(int n, int f, int classes, unsigned seed) {
  hfisher::nn::Dataset d;
  d.n = n;
  d.features = f;
  d.classes = classes;
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0, 1);
  for (int i = 0; i < n * f; ++i) d.x.push_back(float(nd(g)));
  for (int i = 0; i < n; ++i) d.y.push_back(int(g() % classes));
  return d;
}

/// n sequences of T token ids uniform in [0, vocab) (stored as exact
/// integers, one channel per position) with labels uniform in [0, classes).
inline hfisher::nn::Dataset random_tokens(int n, int T, int vocab, int classes, unsigned seed) {
  hfisher::nn::Dataset d;
  d.n = n;
  d.features = T;
  d.classes = classes;
  std::mt19937 g(seed);
  for (int i = 0; i < n * T; ++i) d.x.push_back(float(g() % vocab));
  for (int i = 0; i < n; ++i) d.y.push_back(int(g() % classes));
  return d;
}

template <class V>
std::vector<std::vector<double>> to_host2(const V& d) {
  auto hm = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d);
  std::vector<std::vector<double>> r(d.extent(0), std::vector<double>(d.extent(1)));
  for (size_t b = 0; b < d.extent(0); ++b)
    for (size_t i = 0; i < d.extent(1); ++i) r[b][i] = double(hm(b, i));
  return r;
}

template <class V>
std::vector<double> to_host1(const V& d) {
  auto hm = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d);
  std::vector<double> r(d.extent(0));
  for (size_t b = 0; b < d.extent(0); ++b) r[b] = double(hm(b));
  return r;
}

/// Compares got with ref entry by entry: |got - ref| <= tol * scale[b]
/// (scale per batch entry). On failure returns a message with sizes, max
/// abs/rel error, NaN count and the five worst entries.
::testing::AssertionResult near(const HostBatch& got, const HostBatch& ref, double tol,
                                const std::vector<double>& scale, const char* what);
inline ::testing::AssertionResult near(const HostBatch& got, const HostBatch& ref, double tol, double scale,
                                       const char* what) {
  return near(got, ref, tol, std::vector<double>(ref.nb, scale), what);
}

// naive reference operations on one entry (double)
HostBatch matmul(const HostBatch& A, bool ta, const HostBatch& B, bool tb);
HostBatch transpose(const HostBatch& A);
double fro(const HostBatch& A, int b);
double max_abs(const HostBatch& A, int b);
/// max_i |a_i| and max_i |a_i - b_i| of host vectors (the same length).
double max_abs(const std::vector<double>& a);
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b);
/// |Q_b^T Q_b - I|_max over the first k columns.
double orth_error(const HostBatch& Q, int b, int k);

// LAPACK test oracle (double), one entry at a time, column-major inside.
std::vector<double> lapack_singular_values(const HostBatch& A, int b);
std::vector<double> lapack_eigenvalues(const HostBatch& A, int b);
/// Cholesky L (lower, upper zeroed); returns LAPACK's info.
int lapack_cholesky(const HostBatch& A, int b, HostBatch& L);

}  // namespace hfisher_test
