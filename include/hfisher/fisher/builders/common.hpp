#pragma once
/// \file common.hpp
/// \brief What every structure's builder reads from FisherSamples: the
/// diagonal of F and the per-sample columns psi of a layer.

#include <hfisher/fisher/samples.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/qr.hpp>
#include <hfisher/kernels/randomized.hpp>
#include <hfisher/kernels/syev.hpp>

namespace hfisher {
namespace fisher {
namespace detail {

template <class Scalar, class ExecSpace>
using Mat = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space>;
template <class Scalar, class ExecSpace>
using Vec = Kokkos::View<Scalar*, typename ExecSpace::memory_space>;

/// diag(F) of layer k into d (rows x cols, row-major)
template <class Scalar, class ExecSpace>
void layer_diag(const FisherSamples<Scalar, ExecSpace>& s, int k, const Mat<Scalar, ExecSpace>& d) {
  const int N = s.examples, R = s.per_example, o = s.shapes[k].out, c = s.shapes[k].cols();
  Mat<Scalar, ExecSpace> gsq("hfisher::fisher::gsq", N, o), asq("hfisher::fisher::asq", N, c);
  auto g = s.g[k];
  auto a = s.a[k];
  Kokkos::parallel_for(
      "hfisher::fisher::squares", Kokkos::RangePolicy<ExecSpace>(0, N), KOKKOS_LAMBDA(const int n) {
        for (int i = 0; i < o; ++i) {
          Scalar t = 0;
          for (int r = 0; r < R; ++r) t += g(long(n) * R + r, i) * g(long(n) * R + r, i);
          gsq(n, i) = t;
        }
        for (int j = 0; j < c; ++j) asq(n, j) = a(n, j) * a(n, j);
      });
  kernels::detail::matmul_nocheck(ExecSpace(), Op::Trans, Op::NoTrans, Scalar(1), gsq, asq, Scalar(0), d);
}

template <class Scalar, class ExecSpace>
Vec<Scalar, ExecSpace> diagonal_of(const FisherSamples<Scalar, ExecSpace>& s, const std::vector<int>& ks, long n) {
  Vec<Scalar, ExecSpace> d("hfisher::fisher::d", n);
  long off = 0;
  for (int k : ks) {
    layer_diag(s, k, Mat<Scalar, ExecSpace>(d.data() + off, s.shapes[k].out, s.shapes[k].cols()));
    off += s.shapes[k].size();
  }
  return d;
}

/// Psi of layer k for samples [s0, s1): (P_l, s1 - s0), column s = vec(g_s a~_n^T)
template <class Scalar, class ExecSpace>
void layer_psi(const FisherSamples<Scalar, ExecSpace>& s, int k, int s0, int s1, const Mat<Scalar, ExecSpace>& Psi) {
  const int R = s.per_example, c = s.shapes[k].cols(), ns = s1 - s0;
  auto g = s.g[k];
  auto a = s.a[k];
  Kokkos::parallel_for(
      "hfisher::fisher::psi", Kokkos::RangePolicy<ExecSpace>(0, long(Psi.extent(0))), KOKKOS_LAMBDA(const long p) {
        const int i = int(p / c), j = int(p % c);
        for (int t = 0; t < ns; ++t) Psi(p, t) = g(s0 + t, i) * a((s0 + t) / R, j);
      });
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
