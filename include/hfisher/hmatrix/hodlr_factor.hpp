#pragma once
/// \file hodlr_factor.hpp
/// \brief hfisher::HODLRFactorization: level-batched recursive Woodbury
/// factorization of a symmetric positive definite HODLR matrix.
///
/// With K_L = blockdiag(leaf blocks) and K_(l-1) = K_l + W_l J W_l^T, where
/// per sibling pair W_l = diag(U_p, V_p) and J = [[0, I], [I, 0]],
///   K_(l-1)^-1 = K_l^-1 - Z_l M_l^-1 Z_l^T,  Z_l = K_l^-1 W_l,
///   M_l = J + W_l^T Z_l = [[U^T Z_L, I], [I, V^T Z_R]]   (2k x 2k per pair),
/// so A^-1 = D^-1 - sum_l Z_l M_l^-1 Z_l^T: a solve is one leaf Cholesky
/// solve plus, per level, four batched GEMMs; every level's term is
/// independent. The factorization computes Z_l = K_l^-1 W_l bottom-up with
/// the levels below l (O(N k^2 log^2 N) work) and M_l^-1 by batched Jacobi
/// eigendecomposition, which also certifies positive definiteness exactly
/// (Haynsworth inertia: K_(l-1) is SPD iff K_l is and M_l has exactly k
/// negative eigenvalues) and gives log det A = sum log det D_i +
/// sum_l sum_p log |det M_p|. (Ambikasaran & Darve 2013 factor the same
/// structure as a product of block-diagonal-plus-low-rank matrices; this is
/// the additive form of that recursion.)

#include <hfisher/hmatrix/hodlr.hpp>

#include <cmath>

namespace hfisher {

template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
class HODLRFactorization {
 public:
  using H = HODLR<Scalar, ExecSpace>;
  using Matrix = typename H::Matrix;
  using Batch = typename H::Batch;
  using mem_space = typename ExecSpace::memory_space;

  explicit HODLRFactorization(const H& A);

  /// X = A^-1 B for B, X: (n, r), user order (X may alias B).
  void solve(const Matrix& B, const Matrix& X) const;
  /// log det A.
  double logdet() const { return logdet_; }
  std::size_t bytes() const;

 private:
  H A_;
  Batch LD_;                          // leaf Cholesky factors
  std::vector<Batch> ZL_, ZR_, Minv_;  // per level: (pairs, m, k), (pairs, m, k), (pairs, 2k, 2k)
  double logdet_ = 0;

  // Yp = K_lmin^-1 Xp (tree order, N x r), using the leaf factors and the
  // levels deeper than lmin (lmin = 0: A^-1).
  void apply_inverse(const Matrix& Xp, const Matrix& Yp, int lmin) const;
};

template <class Scalar, class ExecSpace>
HODLRFactorization<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::factor() const {
  return HODLRFactorization<Scalar, ExecSpace>(*this);
}

template <class Scalar, class ExecSpace>
HODLRFactorization<Scalar, ExecSpace>::HODLRFactorization(const H& A) : A_(A) {
  constexpr const char* where = "hfisher::HODLR::factor";
  using namespace hmatrix_impl;
  detail::require(A.leaf_blocks().extent(0) > 0, where, "the matrix is empty (not built)");
  ExecSpace space;
  const auto& tree = A.tree();
  const int N = tree.padded_size(), L = tree.levels(), leaf = tree.leaf_size();
  const int nleaf = N / leaf;
  LD_ = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::LD"), nleaf, leaf, leaf);
  Kokkos::deep_copy(LD_, A.leaf_blocks());
  {
    Kokkos::View<int*, mem_space> info("info", nleaf);
    Kokkos::View<Scalar*, mem_space> piv("piv", nleaf);
    kernels::detail::potrf_nocheck(space, LD_, info, piv);
    const long bad = detail::first_failure(space, info);
    if (bad >= 0)
      throw Error(detail::concat(where, ": the matrix is not positive definite: leaf block (level ", L, ", node ", bad,
                                 ") fails Cholesky at pivot ", detail::read_entry(info, bad) - 1, " (value ",
                                 double(detail::read_entry(piv, bad)),
                                 "); add_diagonal(lambda) with lambda > 0 regularizes it"));
    BatchScalar<Scalar, ExecSpace> ld("ld", nleaf);
    kernels::logdet_cholesky(space, LD_, ld);
    Scalar s = 0;
    Kokkos::parallel_reduce(
        "hfisher::HODLR::factor::logdet_leaves", Kokkos::RangePolicy<ExecSpace>(space, 0, nleaf),
        KOKKOS_LAMBDA(const int b, Scalar& v) { v += ld(b); }, s);
    logdet_ = double(s);
  }
  ZL_.assign(L, Batch());
  ZR_.assign(L, Batch());
  Minv_.assign(L, Batch());
  for (int l = L; l >= 1; --l) {
    const Batch& U = A.U(l);
    const Batch& V = A.V(l);
    const int pairs = U.extent(0), m = U.extent(1), k = U.extent(2);
    Matrix Wp("hfisher::HODLRFactorization::W", N, k), Zp("hfisher::HODLRFactorization::Z", N, k);
    Kokkos::deep_copy(level_nodes(Wp, l, Nodes::Left), U);
    Kokkos::deep_copy(level_nodes(Wp, l, Nodes::Right), V);
    apply_inverse(Wp, Zp, l);
    Batch ZL(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::ZL"), pairs, m, k);
    Batch ZR(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::ZR"), pairs, m, k);
    Kokkos::deep_copy(ZL, level_nodes(Zp, l, Nodes::Left));
    Kokkos::deep_copy(ZR, level_nodes(Zp, l, Nodes::Right));
    Batch M("hfisher::HODLRFactorization::M", pairs, 2 * k, 2 * k);
    auto Mtl = Kokkos::subview(M, Kokkos::ALL(), Kokkos::make_pair(0, k), Kokkos::make_pair(0, k));
    auto Mbr = Kokkos::subview(M, Kokkos::ALL(), Kokkos::make_pair(k, 2 * k), Kokkos::make_pair(k, 2 * k));
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), U, ZL, Scalar(0), Mtl);
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), V, ZR, Scalar(0), Mbr);
    Kokkos::parallel_for(
        "hfisher::HODLR::factor::M", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs), KOKKOS_LAMBDA(const int p) {
          for (int i = 0; i < 2 * k; ++i)
            for (int j = 0; j < i; ++j) {
              const bool cross = (i >= k) != (j >= k);
              const Scalar v = cross ? Scalar(i - j == k ? 1 : 0) : Scalar(0.5) * (M(p, i, j) + M(p, j, i));
              M(p, i, j) = v;
              M(p, j, i) = v;
            }
        });
    BatchVector<Scalar, ExecSpace> lam("hfisher::HODLRFactorization::lambda", pairs, 2 * k);
    Batch Q("hfisher::HODLRFactorization::Q", pairs, 2 * k, 2 * k);
    kernels::syev(space, M, lam, Q);
    // inertia check, log|det M|, Minv = Q diag(1/lambda) Q^T
    Kokkos::View<int*, mem_space> negs("negs", pairs);
    Scalar ldm = 0;
    const Scalar tiny = Scalar(100) * math::limits<Scalar>::eps();
    Kokkos::parallel_reduce(
        "hfisher::HODLR::factor::inertia", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs),
        KOKKOS_LAMBDA(const int p, Scalar& acc) {
          int neg = 0;
          Scalar big = 0;
          for (int i = 0; i < 2 * k; ++i) big = math::max(big, math::abs(lam(p, i)));
          for (int i = 0; i < 2 * k; ++i) {
            const Scalar li = lam(p, i);
            if (li < 0) ++neg;
            if (math::abs(li) <= tiny * big) neg = -1 - 2 * k;  // singular
            acc += math::log(math::abs(li));
          }
          negs(p) = neg == k ? 0 : (neg < 0 ? -1 : neg + 1);
        },
        ldm);
    const long bad = detail::first_failure(space, negs);
    if (bad >= 0) {
      const int code = detail::read_entry(negs, bad);
      throw Error(detail::concat(where, ": the matrix is not positive definite: level ", l, ", node pair ", bad,
                                 code < 0 ? " makes it singular"
                                          : detail::concat(" has a capacitance with ", code - 1,
                                                           " negative eigenvalues, expected ", k),
                                 "; add_diagonal(lambda) with lambda > 0 regularizes it"));
    }
    logdet_ += double(ldm);
    Batch QS(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::QS"), pairs, 2 * k, 2 * k);
    Kokkos::parallel_for(
        "hfisher::HODLR::factor::scale", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs), KOKKOS_LAMBDA(const int p) {
          for (int i = 0; i < 2 * k; ++i)
            for (int j = 0; j < 2 * k; ++j) QS(p, i, j) = Q(p, i, j) / lam(p, j);
        });
    Batch Minv("hfisher::HODLRFactorization::Minv", pairs, 2 * k, 2 * k);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), QS, Q, Scalar(0), Minv);
    ZL_[l - 1] = ZL;
    ZR_[l - 1] = ZR;
    Minv_[l - 1] = Minv;
  }
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::apply_inverse(const Matrix& Xp, const Matrix& Yp, int lmin) const {
  using namespace hmatrix_impl;
  ExecSpace space;
  const auto& tree = A_.tree();
  const int L = tree.levels(), r = Xp.extent(1);
  Kokkos::deep_copy(space, Yp, Xp);
  kernels::potrs(space, LD_, level_nodes(Yp, L, Nodes::All));
  for (int l = L; l > lmin; --l) {
    const Batch& ZL = ZL_[l - 1];
    const Batch& ZR = ZR_[l - 1];
    const int pairs = ZL.extent(0), k = ZL.extent(2);
    Batch T("hfisher::HODLRFactorization::T", pairs, 2 * k, r), T2("hfisher::HODLRFactorization::T2", pairs, 2 * k, r);
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), ZL, level_nodes(Xp, l, Nodes::Left),
                                  Scalar(0), rows(T, 0, k));
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), ZR, level_nodes(Xp, l, Nodes::Right),
                                  Scalar(0), rows(T, k, k));
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), Minv_[l - 1], T, Scalar(0), T2);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(-1), ZL, rows(T2, 0, k), Scalar(1),
                                  level_nodes(Yp, l, Nodes::Left));
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(-1), ZR, rows(T2, k, k), Scalar(1),
                                  level_nodes(Yp, l, Nodes::Right));
  }
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::solve(const Matrix& B, const Matrix& X) const {
  constexpr const char* where = "hfisher::HODLRFactorization::solve";
  detail::require(long(B.extent(0)) == A_.size() && long(X.extent(0)) == A_.size() && B.extent(1) == X.extent(1),
                  where, "B is ", B.extent(0), "x", B.extent(1), ", X is ", X.extent(0), "x", X.extent(1),
                  ", the matrix has n = ", A_.size());
  ExecSpace space;
  {
    auto B3 = Kokkos::View<const Scalar***, Kokkos::LayoutStride, mem_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>(
        B.data(), Kokkos::LayoutStride(1, 0, B.extent(0), B.stride_0(), B.extent(1), B.stride_1()));
    detail::check_finite3(space, B3, where, "B");
  }
  Matrix Bp = A_.to_tree(B);
  Matrix Yp(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::Y"), Bp.extent(0),
            Bp.extent(1));
  apply_inverse(Bp, Yp, 0);
  A_.from_tree(Yp, X);
}

template <class Scalar, class ExecSpace>
std::size_t HODLRFactorization<Scalar, ExecSpace>::bytes() const {
  std::size_t b = LD_.size() * sizeof(Scalar);
  for (std::size_t l = 0; l < ZL_.size(); ++l) b += (ZL_[l].size() + ZR_[l].size() + Minv_[l].size()) * sizeof(Scalar);
  return b;
}

}  // namespace hfisher
