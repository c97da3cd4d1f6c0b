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

/// Psi of layer k for samples [s0, s1): (P_l, s1 - s0), column s =
/// vec(sum_t g_{s,t} a~_{n(s),t}^T) over the layer's T positions (T = 1: the
/// rank-one vec(g_s a~_n^T))
template <class Scalar, class ExecSpace>
void layer_psi(const FisherSamples<Scalar, ExecSpace>& s, int k, int s0, int s1, const Mat<Scalar, ExecSpace>& Psi) {
  const int R = s.per_example, c = s.shapes[k].cols(), ns = s1 - s0, T = s.positions_of(k);
  auto g = s.g[k];
  auto a = s.a[k];
  if (T == 1) {
    Kokkos::parallel_for(
        "hfisher::fisher::psi", Kokkos::RangePolicy<ExecSpace>(0, long(Psi.extent(0))), KOKKOS_LAMBDA(const long p) {
          const int i = int(p / c), j = int(p % c);
          for (int t = 0; t < ns; ++t) Psi(p, t) = g(s0 + t, i) * a((s0 + t) / R, j);
        });
    return;
  }
  // one GEMM per sample: (g rows of the sample)^T (T x rows) times the
  // example's patches (T x cols), into a (rows x cols) slice, then scattered
  // into the sample's column
  const int rows = s.shapes[k].out;
  BatchMatrix<Scalar, ExecSpace> per("hfisher::fisher::psi_per_sample", ns, rows, c);
  using member = typename ExecTraits<ExecSpace>::member_type;
  ExecSpace space;
  Kokkos::parallel_for(
      "hfisher::fisher::psi_positions", hfisher::detail::batch_policy(space, ns), KOKKOS_LAMBDA(const member& tm) {
        const int q = tm.league_rank();
        const long gs = long(s0 + q) * T, an = long((s0 + q) / R) * T;
        auto G = Kokkos::subview(g, Kokkos::make_pair(gs, gs + T), Kokkos::ALL());
        auto A = Kokkos::subview(a, Kokkos::make_pair(an, an + T), Kokkos::ALL());
        auto C = Kokkos::subview(per, q, Kokkos::ALL(), Kokkos::ALL());
        kernels::detail::gemm_entry<ExecSpace>(tm, Op::Trans, Op::NoTrans, Scalar(1), G, A, Scalar(0), C);
      });
  Kokkos::parallel_for(
      "hfisher::fisher::psi_scatter", Kokkos::RangePolicy<ExecSpace>(space, 0, long(Psi.extent(0))),
      KOKKOS_LAMBDA(const long p) {
        const int i = int(p / c), j = int(p % c);
        for (int q = 0; q < ns; ++q) Psi(p, q) = per(q, i, j);
      });
}

/// d(p) = sum of squares of row p of Psi (P x m), added to d.
template <class ExecSpace, class PV, class DV>
void add_row_squares(const PV& Psi, const DV& d) {
  const int m = Psi.extent(1);
  Kokkos::parallel_for(
      "hfisher::fisher::row_squares", Kokkos::RangePolicy<ExecSpace>(0, long(Psi.extent(0))),
      KOKKOS_LAMBDA(const long p) {
        typename DV::non_const_value_type t = 0;
        for (int q = 0; q < m; ++q) t += Psi(p, q) * Psi(p, q);
        d(p) += t;
      });
}

/// Columns of Psi formed at a time for a layer of P parameters (about 2^24
/// values of scratch).
inline int psi_chunk(long P, int S) { return int(std::max<long>(1, std::min<long>(S, (1L << 24) / std::max(1L, P)))); }

/// diag(F) of layer k into d (rows x cols, row-major)
template <class Scalar, class ExecSpace>
void layer_diag(const FisherSamples<Scalar, ExecSpace>& s, int k, const Mat<Scalar, ExecSpace>& d) {
  const int N = s.examples, R = s.per_example, o = s.shapes[k].out, c = s.shapes[k].cols();
  if (s.positions_of(k) > 1) {  // psi is no longer rank one: square its columns, a chunk at a time
    const long P = long(o) * c;
    const int S = s.samples(), chunk = psi_chunk(P, S);
    Kokkos::deep_copy(d, Scalar(0));
    Vec<Scalar, ExecSpace> dv(d.data(), P);
    Mat<Scalar, ExecSpace> Psi("hfisher::fisher::psi", P, chunk);
    for (int s0 = 0; s0 < S; s0 += chunk) {
      const int s1 = std::min(S, s0 + chunk);
      auto Pc = Kokkos::subview(Psi, Kokkos::ALL(), Kokkos::make_pair(0, s1 - s0));
      layer_psi(s, k, s0, s1, Psi);
      add_row_squares<ExecSpace>(Pc, dv);
    }
    return;
  }
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

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
