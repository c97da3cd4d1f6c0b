#pragma once
/// \file lowrank.hpp
/// \brief The low-rank + diagonal builder, over one layer or several.

#include <hfisher/fisher/builders/common.hpp>
#include <hfisher/fisher/lowrank.hpp>

namespace hfisher {
namespace fisher {
namespace detail {

/// diag + W W^T over layers ks: W = Psi Z from the top eigenvectors Z of the
/// sample Gram matrix K = Psi^T Psi = sum_l (g g^T) o (a a^T)[n(s), n(t)].
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> lowrank_of(const FisherSamples<Scalar, ExecSpace>& s,
                                                                 const std::vector<int>& ks, const FisherOptions& o,
                                                                 const char* where) {
  const int N = s.examples, R = s.per_example, S = s.samples();
  long n = 0;
  for (int k : ks) n += s.shapes[k].size();
  const int kmax = std::min<long>({long(o.lowrank.rank), long(S), n});
  check_budget((double(S) * S * 2 + double(N) * N + double(S) * kmax * 3 + double(n) * (kmax + 2)) * sizeof(Scalar),
               o.memory_budget, where,
               "a rank-" + std::to_string(kmax) + " Fisher from " + std::to_string(S) + " samples");
  ExecSpace space;
  BatchMatrix<Scalar, ExecSpace> K("hfisher::lowrank::K", 1, S, S);
  Mat<Scalar, ExecSpace> K2(K.data(), S, S), KG("hfisher::lowrank::KG", S, S), KA("hfisher::lowrank::KA", N, N);
  for (int k : ks) {
    if (s.positions_of(k) > 1) {  // psi is not rank one: K += Psi^T Psi from the columns themselves
      const long P = s.shapes[k].size();
      check_budget(double(P) * S * sizeof(Scalar), o.memory_budget, where,
                   "the per-sample gradients of layer " + std::to_string(s.layers[k]));
      Mat<Scalar, ExecSpace> Psi("hfisher::lowrank::psi", P, S);
      layer_psi(s, k, 0, S, Psi);
      kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), Psi, Psi, Scalar(1), K2);
      continue;
    }
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), s.g[k], s.g[k], Scalar(0), KG);
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), s.a[k], s.a[k], Scalar(0), KA);
    Kokkos::parallel_for(
        "hfisher::lowrank::gram", Kokkos::RangePolicy<ExecSpace>(space, 0, S), KOKKOS_LAMBDA(const int i) {
          for (int j = 0; j < S; ++j) K2(i, j) += KG(i, j) * KA(i / R, j / R);
        });
  }
  BatchMatrix<Scalar, ExecSpace> U("hfisher::lowrank::U", 1, S, kmax), V("hfisher::lowrank::V", 1, S, kmax);
  BatchVector<Scalar, ExecSpace> sv("hfisher::lowrank::s", 1, kmax);
  Kokkos::View<int*, typename ExecSpace::memory_space> rk("hfisher::lowrank::rank", 1);
  kernels::RangeFinderOptions ro;
  ro.seed = o.seed;
  kernels::rsvd(space, K, o.lowrank.tol, U, sv, V, rk, ro);  // the tolerance asked for (no floor); at most kmax kept
  const int r = std::max(1, int(hfisher::detail::read_entry(rk, 0)));
  Mat<Scalar, ExecSpace> W("hfisher::lowrank::W", n, r);
  long off = 0;
  for (int k : ks) {
    const int rows = s.shapes[k].out, c = s.shapes[k].cols();
    if (s.positions_of(k) > 1) {  // W's rows of this layer = Psi V(:, 0..r)
      const long P = s.shapes[k].size();
      Mat<Scalar, ExecSpace> Psi("hfisher::lowrank::psi", P, S);
      layer_psi(s, k, 0, S, Psi);
      Mat<Scalar, ExecSpace> V2(V.data(), S, kmax);
      auto Vr = Kokkos::subview(V2, Kokkos::ALL(), Kokkos::make_pair(0, r));
      auto Wk = Kokkos::subview(W, Kokkos::make_pair(off, off + P), Kokkos::ALL());
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), Psi, Vr, Scalar(0), Wk);
      off += P;
      continue;
    }
    Mat<Scalar, ExecSpace> Gz("hfisher::lowrank::Gz", N, rows), Wj("hfisher::lowrank::Wj", rows, c);
    auto g = s.g[k];
    for (int j = 0; j < r; ++j) {
      Kokkos::parallel_for(
          "hfisher::lowrank::Gz", Kokkos::RangePolicy<ExecSpace>(space, 0, N), KOKKOS_LAMBDA(const int e) {
            for (int i = 0; i < rows; ++i) {
              Scalar t = 0;
              for (int q = 0; q < R; ++q) t += V(0, long(e) * R + q, j) * g(long(e) * R + q, i);
              Gz(e, i) = t;
            }
          });
      kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), Gz, s.a[k], Scalar(0), Wj);
      const long base = off;
      Kokkos::parallel_for(
          "hfisher::lowrank::Wcol", Kokkos::RangePolicy<ExecSpace>(space, 0, long(rows) * c),
          KOKKOS_LAMBDA(const long p) { W(base + p, j) = Wj(p / c, p % c); });
    }
    off += s.shapes[k].size();
  }
  // the diagonal part keeps diag(F) exact: d = diag(F) - rowsum(W^2), clamped at 0
  auto d = diagonal_of(s, ks, n);
  detail::subtract_squares_clamped<ExecSpace>(d, W);
  return std::make_unique<LowRankOperator<Scalar, ExecSpace>>(d, W, o.lowrank.rank, o.lowrank.tol);
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
