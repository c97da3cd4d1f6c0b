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
#include <hfisher/kernels/qr.hpp>
#include <hfisher/kernels/trsm.hpp>

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
  /// Y = W X and Y = W^T X with A = W W^T (W square, n x n, user order):
  /// W z with z ~ N(0, I) samples N(0, A); solve(W z) samples N(0, A^-1).
  void apply_W(const Matrix& X, const Matrix& Y) const;
  void apply_Wt(const Matrix& X, const Matrix& Y) const;
  std::size_t bytes() const;

  // implementation steps; public only because CUDA extended lambdas may not
  // live in constructors or in private member functions
  void factorize();
  void build_symmetric_factor();

 private:
  // symmetric factor: A = S_L G_L ... G_1 (S_L G_L ... G_1)^T with S_L the
  // leaf Cholesky factors and G_l = I + Q_l X_l Q_l^T per sibling pair,
  // Q_l = diag(QL, QR) orthonormal (Ambikasaran, O'Neil & Singh 2016)
  std::vector<Batch> WQL_, WQR_, WX_, WXinv_;
  void apply_G(const Matrix& Yp, int level, bool inverse) const;

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
  factorize();
  build_symmetric_factor();
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::factorize() {
  constexpr const char* where = "hfisher::HODLR::factor";
  const H& A = A_;
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
    Kokkos::parallel_reduce(
        "hfisher::HODLR::factor::inertia", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs),
        KOKKOS_LAMBDA(const int p, Scalar& acc) {
          int neg = 0;
          for (int i = 0; i < 2 * k; ++i) {
            const Scalar li = lam(p, i);
            if (li < 0) ++neg;
            if (!(math::abs(li) > Scalar(0)) || !math::isfinite(li)) neg = -1 - 2 * k;  // singular
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
void HODLRFactorization<Scalar, ExecSpace>::build_symmetric_factor() {
  constexpr const char* where = "hfisher::HODLR::factor";
  using namespace hmatrix_impl;
  ExecSpace space;
  const auto& tree = A_.tree();
  const int N = tree.padded_size(), L = tree.levels();
  WQL_.assign(L, Batch());
  WQR_.assign(L, Batch());
  WX_.assign(L, Batch());
  WXinv_.assign(L, Batch());
  auto perm = A_.perm_device();
  const Scalar rank_tol = Scalar(10) * math::limits<Scalar>::eps();
  for (int l = L; l >= 1; --l) {
    const Batch& U = A_.U(l);
    const Batch& V = A_.V(l);
    const int pairs = U.extent(0), m = U.extent(1), k = U.extent(2);
    // Y = S_l^-1 W_l = G_(l+1)^-1 ... G_L^-1 S_L^-1 W_l
    Matrix Yp("hfisher::HODLRFactorization::Y", N, k);
    Kokkos::deep_copy(level_nodes(Yp, l, Nodes::Left), U);
    Kokkos::deep_copy(level_nodes(Yp, l, Nodes::Right), V);
    kernels::detail::trsm_nocheck(space, Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, Scalar(1), LD_,
                                  level_nodes(Yp, L, Nodes::All));
    for (int lp = L; lp > l; --lp) apply_G(Yp, lp, true);
    Batch Rt[2], Q[2];
    for (int side = 0; side < 2; ++side) {
      Batch Yc(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::Yc"), pairs, m, k);
      Kokkos::deep_copy(Yc, level_nodes(Yp, l, side == 0 ? Nodes::Left : Nodes::Right));
      BatchVector<Scalar, ExecSpace> tau("tau", pairs, k);
      Kokkos::View<int**, Kokkos::LayoutRight, mem_space> piv("piv", pairs, k);
      Kokkos::View<int*, mem_space> rk("rank", pairs);
      kernels::cpqr(space, Yc, tau, piv, rk, double(rank_tol));
      Q[side] = Batch("hfisher::HODLRFactorization::WQ", pairs, m, k);
      kernels::qr_form_q(space, Yc, tau, Q[side]);
      Rt[side] = Batch("hfisher::HODLRFactorization::Rt", pairs, k, k);
      auto R = Rt[side];
      auto Qs = Q[side];
      const int node_off = side;
      Kokkos::parallel_for(
          "hfisher::HODLR::factor::W::R", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs), KOKKOS_LAMBDA(const int p) {
            const int r = rk(p);
            // R~ = R P^T (columns back in the original order), rows >= rank dropped
            for (int i = 0; i < k; ++i)
              for (int j = 0; j < k; ++j) R(p, i, piv(p, j)) = (i < r && j >= i) ? Yc(p, i, j) : Scalar(0);
            // Q: columns >= rank dropped, padded rows zeroed (decoupled identity rows)
            const int node = 2 * p + node_off;
            for (int row = 0; row < m; ++row) {
              const bool pad = perm(node * m + row) < 0;
              for (int c = 0; c < k; ++c)
                if (pad || c >= r) Qs(p, row, c) = Scalar(0);
            }
          });
    }
    // I + C, C = [[0, RL RR^T], [RR RL^T, 0]]
    Batch C("hfisher::HODLRFactorization::C", pairs, 2 * k, 2 * k);
    auto Ctr = Kokkos::subview(C, Kokkos::ALL(), Kokkos::make_pair(0, k), Kokkos::make_pair(k, 2 * k));
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), Rt[0], Rt[1], Scalar(0), Ctr);
    Kokkos::parallel_for(
        "hfisher::HODLR::factor::W::C", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs), KOKKOS_LAMBDA(const int p) {
          for (int i = 0; i < k; ++i)
            for (int j = 0; j < k; ++j) C(p, k + j, i) = C(p, i, k + j);
          for (int i = 0; i < 2 * k; ++i) C(p, i, i) = Scalar(1);
        });
    BatchVector<Scalar, ExecSpace> mu("mu", pairs, 2 * k);
    Batch Ev("hfisher::HODLRFactorization::Ev", pairs, 2 * k, 2 * k);
    kernels::syev(space, C, mu, Ev);
    Kokkos::View<int*, mem_space> bad("bad", pairs);
    Batch E1("E1", pairs, 2 * k, 2 * k), E2("E2", pairs, 2 * k, 2 * k);
    Kokkos::parallel_for(
        "hfisher::HODLR::factor::W::sqrt", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs), KOKKOS_LAMBDA(const int p) {
          bad(p) = mu(p, 0) > Scalar(0) ? 0 : 1;
          for (int j = 0; j < 2 * k; ++j) {
            const Scalar s = mu(p, j) > Scalar(0) ? math::sqrt(mu(p, j)) : Scalar(1);
            for (int i = 0; i < 2 * k; ++i) {
              E1(p, i, j) = Ev(p, i, j) * (s - Scalar(1));
              E2(p, i, j) = Ev(p, i, j) * (Scalar(1) / s - Scalar(1));
            }
          }
        });
    const long b = detail::first_failure(space, bad);
    detail::require(b < 0, where, "the matrix is not positive definite: level ", l, ", node pair ", b,
                    " (symmetric factor); add_diagonal(lambda) with lambda > 0 regularizes it");
    Batch X("hfisher::HODLRFactorization::WX", pairs, 2 * k, 2 * k);
    Batch Xi("hfisher::HODLRFactorization::WXinv", pairs, 2 * k, 2 * k);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), E1, Ev, Scalar(0), X);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), E2, Ev, Scalar(0), Xi);
    WQL_[l - 1] = Q[0];
    WQR_[l - 1] = Q[1];
    WX_[l - 1] = X;
    WXinv_[l - 1] = Xi;
  }
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::apply_G(const Matrix& Yp, int l, bool inverse) const {
  using namespace hmatrix_impl;
  ExecSpace space;
  const Batch& QL = WQL_[l - 1];
  const Batch& QR = WQR_[l - 1];
  const int pairs = QL.extent(0), k = QL.extent(2), r = Yp.extent(1);
  Batch T("hfisher::HODLRFactorization::GT", pairs, 2 * k, r), T2("hfisher::HODLRFactorization::GT2", pairs, 2 * k, r);
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), QL, level_nodes(Yp, l, Nodes::Left),
                                Scalar(0), rows(T, 0, k));
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), QR, level_nodes(Yp, l, Nodes::Right),
                                Scalar(0), rows(T, k, k));
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), inverse ? WXinv_[l - 1] : WX_[l - 1], T,
                                Scalar(0), T2);
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), QL, rows(T2, 0, k), Scalar(1),
                                level_nodes(Yp, l, Nodes::Left));
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), QR, rows(T2, k, k), Scalar(1),
                                level_nodes(Yp, l, Nodes::Right));
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::apply_W(const Matrix& X, const Matrix& Y) const {
  using namespace hmatrix_impl;
  detail::require(long(X.extent(0)) == A_.size() && long(Y.extent(0)) == A_.size() && X.extent(1) == Y.extent(1),
                  "hfisher::HODLRFactorization::apply_W", "X is ", X.extent(0), "x", X.extent(1), ", Y is ",
                  Y.extent(0), "x", Y.extent(1), ", the matrix has n = ", A_.size());
  ExecSpace space;
  const int L = A_.tree().levels();
  Matrix Xp = A_.to_tree(X);
  for (int l = 1; l <= L; ++l) apply_G(Xp, l, false);  // G_L ... G_1 X
  Matrix Yp("hfisher::HODLRFactorization::WY", Xp.extent(0), Xp.extent(1));
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), LD_, level_nodes(Xp, L, Nodes::All),
                                Scalar(0), level_nodes(Yp, L, Nodes::All));
  A_.from_tree(Yp, Y);
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::apply_Wt(const Matrix& X, const Matrix& Y) const {
  using namespace hmatrix_impl;
  detail::require(long(X.extent(0)) == A_.size() && long(Y.extent(0)) == A_.size() && X.extent(1) == Y.extent(1),
                  "hfisher::HODLRFactorization::apply_Wt", "X is ", X.extent(0), "x", X.extent(1), ", Y is ",
                  Y.extent(0), "x", Y.extent(1), ", the matrix has n = ", A_.size());
  ExecSpace space;
  const int L = A_.tree().levels();
  Matrix Xp = A_.to_tree(X);
  Matrix Yp("hfisher::HODLRFactorization::WtY", Xp.extent(0), Xp.extent(1));
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), LD_, level_nodes(Xp, L, Nodes::All),
                                Scalar(0), level_nodes(Yp, L, Nodes::All));
  for (int l = L; l >= 1; --l) apply_G(Yp, l, false);  // G_1 ... G_L S_L^T X
  A_.from_tree(Yp, Y);
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
  for (std::size_t l = 0; l < WQL_.size(); ++l)
    b += (WQL_[l].size() + WQR_[l].size() + WX_[l].size() + WXinv_[l].size()) * sizeof(Scalar);
  return b;
}

}  // namespace hfisher
