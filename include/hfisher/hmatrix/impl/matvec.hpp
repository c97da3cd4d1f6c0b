#pragma once
/// \file hmatrix/impl/matvec.hpp
/// \brief The user's product operator seen in tree order, shared by the
/// matrix-free constructions of HODLR and HSS: test vectors are generated in
/// tree order, handed to the operator in the user's order, checked (size,
/// NaN/Inf) and counted; padded tree positions behave as identity rows. And
/// the a-posteriori error estimate from fresh Gaussian probes.

#include <hfisher/core/error.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/gemm.hpp>

#include <cmath>
#include <cstdint>
#include <functional>

namespace hfisher {

/// op(Omega, Y): writes Y = A Omega for Omega (n, r) in the user's order.
/// Y arrives allocated (n, r); an op that reallocates it to another size, or
/// writes NaN/Inf, is an error.
template <class Scalar, class ExecSpace>
using MatvecOperator =
    std::function<void(const Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space>&,
                       Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space>&)>;

namespace detail {

/// Gaussian test vectors: Om(p, c) for columns [c0, c1), a function of
/// (seed, column, row) only, so extending a block keeps its old columns.
template <class Exec, class M>
void gaussian_columns(const Exec& space, const M& Om, int c0, int c1, std::uint64_t seed) {
  using T = typename M::non_const_value_type;
  const int N = Om.extent(0);
  Kokkos::parallel_for(
      "hfisher::matvec::gaussian", Kokkos::RangePolicy<Exec>(space, 0, N), KOKKOS_LAMBDA(const int p) {
        for (int c = c0; c < c1; ++c) Om(p, c) = T(random::normal(seed, std::uint64_t(c), std::uint64_t(p)));
      });
}

/// Ou(i, c) = Omt(iperm(i), c0 + c): columns of a tree-order block in user order.
template <class Exec, class IV, class M>
void gather_user(const Exec& space, const IV& iperm, const M& Omt, int c0, const M& Ou) {
  const int n = Ou.extent(0), r = Ou.extent(1);
  Kokkos::parallel_for(
      "hfisher::matvec::to_user", Kokkos::RangePolicy<Exec>(space, 0, n), KOKKOS_LAMBDA(const int i) {
        const int pp = iperm(i);
        for (int c = 0; c < r; ++c) Ou(i, c) = Omt(pp, c0 + c);
      });
}

/// Yt(q, c0 + c) = Yu(perm(q), c), or the test vector itself on padded rows.
template <class Exec, class IV, class M>
void scatter_tree(const Exec& space, const IV& perm, const M& Yu, const M& Omt, int c0, const M& Yt) {
  const int N = Yt.extent(0), r = Yu.extent(1);
  Kokkos::parallel_for(
      "hfisher::matvec::from_user", Kokkos::RangePolicy<Exec>(space, 0, N), KOKKOS_LAMBDA(const int q) {
        const int i = perm(q);
        for (int c = 0; c < r; ++c) Yt(q, c0 + c) = i >= 0 ? Yu(i, c) : Omt(q, c0 + c);
      });
}

/// Zeroes the padded rows of a tree-order block.
template <class Exec, class IV, class M>
void zero_padding(const Exec& space, const IV& perm, const M& X) {
  const int N = X.extent(0), r = X.extent(1);
  Kokkos::parallel_for(
      "hfisher::matvec::zero_padding", Kokkos::RangePolicy<Exec>(space, 0, N), KOKKOS_LAMBDA(const int q) {
        if (perm(q) < 0)
          for (int c = 0; c < r; ++c) X(q, c) = 0;
      });
}

/// sqrt(sum (A - B)^2 / sum A^2) over two (N, r) blocks.
template <class Exec, class M>
double relative_fro(const Exec& space, const M& A, const M& B) {
  using T = typename M::non_const_value_type;
  const int N = A.extent(0), r = A.extent(1);
  T num = 0, den = 0;
  Kokkos::parallel_reduce(
      "hfisher::matvec::diff", Kokkos::RangePolicy<Exec>(space, 0, N),
      KOKKOS_LAMBDA(const int p, T& v) {
        for (int c = 0; c < r; ++c) v += (A(p, c) - B(p, c)) * (A(p, c) - B(p, c));
      },
      num);
  Kokkos::parallel_reduce(
      "hfisher::matvec::norm", Kokkos::RangePolicy<Exec>(space, 0, N),
      KOKKOS_LAMBDA(const int p, T& v) {
        for (int c = 0; c < r; ++c) v += A(p, c) * A(p, c);
      },
      den);
  return den > 0 ? std::sqrt(double(num) / double(den)) : 0.0;
}

/// Y = diag(d) X + G (G^T X), the product with diag(d) + G G^T.
template <class Exec, class DV, class GV, class M>
void factors_product(const DV& d, const GV& G, const M& X, const M& Y) {
  using T = typename M::non_const_value_type;
  using Mem = typename Exec::memory_space;
  using B3 = Kokkos::View<T***, Kokkos::LayoutRight, Mem>;
  using U3 = Kokkos::View<T***, Kokkos::LayoutRight, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  Exec space;
  const int n = X.extent(0), r = X.extent(1), mc = G.extent(1);
  B3 T1("hfisher::matvec::GtX", 1, mc, r);
  U3 g(G.data(), 1, n, mc), x(X.data(), 1, n, r), y(Y.data(), 1, n, r);
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, T(1), g, x, T(0), T1);
  Kokkos::parallel_for(
      "hfisher::matvec::diag_part", Kokkos::RangePolicy<Exec>(space, 0, n), KOKKOS_LAMBDA(const int i) {
        for (int c = 0; c < r; ++c) Y(i, c) = d(i) * X(i, c);
      });
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, T(1), g, T1, T(1), y);
}

/// q fresh Gaussian probes P (N, q) in tree order, zero on the padded rows,
/// and their products A P, made once (multiply_A(P, AP), tree order):
/// error(apply_H) = |A P - H P|_F / |A P|_F for any candidate H, so several
/// passes of a construction are judged on the same products.
template <class Exec, class Matrix>
struct TreeProbes {
  Matrix P, AP;
  template <class PermView, class MultiplyA>
  TreeProbes(const PermView& perm, int N, int q, std::uint64_t seed, const MultiplyA& multiply_A)
      : P("hfisher::matvec::probe", N, q), AP("hfisher::matvec::probe_A", N, q) {
    Exec space;
    gaussian_columns(space, P, 0, q, seed ^ 0x5bd1e995ull);
    zero_padding(space, perm, P);
    multiply_A(P, AP);
  }
  /// apply_H(P, HP) writes H P (tree order).
  template <class ApplyH>
  double error(const ApplyH& apply_H) const {
    Matrix HP("hfisher::matvec::probe_H", P.extent(0), P.extent(1));
    apply_H(P, HP);
    return relative_fro(Exec(), AP, HP);
  }
};

/// |A P - H P|_F / |A P|_F for q fresh Gaussian probes (TreeProbes, once).
template <class Exec, class Matrix, class PermView, class MultiplyA, class ApplyH>
double tree_probe_error(const PermView& perm, int N, int q, std::uint64_t seed, const MultiplyA& multiply_A,
                        const ApplyH& apply_H) {
  return TreeProbes<Exec, Matrix>(perm, N, q, seed, multiply_A).error(apply_H);
}

/// The operator in tree order.
template <class Scalar, class Exec>
struct TreeOperator {
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename Exec::memory_space>;
  const MatvecOperator<Scalar, Exec>& op;
  int n;
  Kokkos::View<int*, typename Exec::memory_space> perm, iperm;
  const char* where;
  int products = 0;

  /// Yt(:, c0:c1) = A Omt(:, c0:c1), tree order.
  void multiply(const Matrix& Omt, const Matrix& Yt, int c0, int c1) {
    Exec space;
    const int r = c1 - c0;
    if (r <= 0) return;
    Matrix Ou(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::matvec::Omega_user"), n, r);
    gather_user(space, iperm, Omt, c0, Ou);
    Matrix Yu("hfisher::matvec::Y_user", n, r);
    space.fence();
    op(Ou, Yu);
    products += r;
    detail::require(long(Yu.extent(0)) == n && long(Yu.extent(1)) == r, where, "the operator returned Y of size ",
                    Yu.extent(0), "x", Yu.extent(1), ", expected ", n, "x", r);
    detail::check_finite_matrix(space, Yu, where, "Y = op(Omega) (the operator returned NaN/Inf)");
    scatter_tree(space, perm, Yu, Omt, c0, Yt);
  }

  /// |A P - H P|_F / |A P|_F for q fresh Gaussian probes P (zero on padded
  /// rows); apply_tree(X, Y) writes Y = H X in tree order.
  template <class ApplyTree>
  double probe_error(const ApplyTree& apply_tree, int N, int q, std::uint64_t seed) {
    return probes(N, q, seed).error(apply_tree);
  }
  /// The probes and their products with A, kept for several estimates.
  TreeProbes<Exec, Matrix> probes(int N, int q, std::uint64_t seed) {
    return TreeProbes<Exec, Matrix>(perm, N, q, seed,
                                    [this, q](const Matrix& P, const Matrix& AP) { multiply(P, AP, 0, q); });
  }
};

}  // namespace detail
}  // namespace hfisher
