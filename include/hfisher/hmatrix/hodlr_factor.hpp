#pragma once
/// \file hodlr_factor.hpp
/// \brief hfisher::HODLRFactorization: level-batched symmetric factorization
/// A = W W^T of a symmetric positive definite HODLR matrix (Ambikasaran,
/// O'Neil & Singh 2016), used for solve, logdet and sampling.
///
/// With K_L = blockdiag(leaf blocks) = S_L S_L^T (batched Cholesky) and
/// K_(l-1) = K_l + W_l J W_l^T (per sibling pair W_l = diag(U_p, V_p),
/// J = [[0, I], [I, 0]]): if K_l = S_l S_l^T, then with Y = S_l^-1 W_l = Q R
/// (Q = diag(QL, QR) orthonormal, from pivoted QRs) and C = R J R^T,
///   K_(l-1) = S_l (I + Q C Q^T) S_l^T = S_l G G^T S_l^T,
///   G = I + Q X Q^T,  X = (I + C)^(1/2) - I  (2k x 2k, from a batched k x k
///   Jacobi SVD of the coupling R_L R_R^T: the eigenvalues of I + C are 1 +- sigma),
/// so S_(l-1) = S_l G_l and W = S_0 = S_L G_L ... G_1. G^-1 = I + Q X' Q^T
/// with X' = (I + C)^(-1/2) - I. Every step is one batched launch per level;
/// the factorization costs O(N k^2 log^2 N), a solve
/// A^-1 = W^-T W^-1 or a product with W costs O(N k log N).
/// I + C is SPD iff K_(l-1) is (given K_l is), i.e. iff every coupling
/// singular value sigma < 1: this certifies positive definiteness level by
/// level, and log det A = 2 sum log diag(S_L) + sum_l sum_p sum_i log(1 - sigma_i^2).
/// (A recursive-Woodbury solve, A^-1 = D^-1 - sum_l Z_l M_l^-1 Z_l^T, was
/// tried first: it loses the inertia of M_l to cancellation on kernel
/// matrices with condition numbers near 1e4, so the orthogonal form is used.)

#include <hfisher/core/instantiate.hpp>
#include <hfisher/hmatrix/hodlr.hpp>
#include <hfisher/hmatrix/impl/functors.hpp>
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

  /// Writes the factorization (leaf Cholesky factors, the per-level factors
  /// of W, log det) so that a process holding the same matrix can install it
  /// instead of factoring (prepare_sharded ships per-layer factorizations
  /// this way). The matrix itself is not written.
  void write(std::ostream& o) const;
  /// Reads what write() wrote, for the matrix A it was computed from (the
  /// caller guarantees the same contents; shapes are checked).
  static HODLRFactorization read(std::istream& i, const H& A, const std::string& what);

 private:
  // implementation steps (their kernels are the named functors of
  // hmatrix/impl/functors.hpp: nvcc allows no device lambda here)
  void factorize();
  void build_symmetric_factor();
  /// Yp (tree order, (N, r)) <- G_level Yp, or G_level^-1 Yp.
  void apply_G(const Matrix& Yp, int level, bool inverse) const;

  // symmetric factor: A = S_L G_L ... G_1 (S_L G_L ... G_1)^T with S_L the
  // leaf Cholesky factors and G_l = I + Q_l X_l Q_l^T per sibling pair,
  // Q_l = diag(QL, QR) orthonormal (Ambikasaran, O'Neil & Singh 2016)
  std::vector<Batch> WQL_, WQR_, WX_, WXinv_;
  // in, out: (n, r) with the same r
  void check_pair(const char* where, const char* in_name, const Matrix& in, const char* out_name,
                  const Matrix& out) const {
    detail::require(
        long(in.extent(0)) == A_.size() && long(out.extent(0)) == A_.size() && in.extent(1) == out.extent(1), where,
        in_name, " is ", in.extent(0), "x", in.extent(1), ", ", out_name, " is ", out.extent(0), "x", out.extent(1),
        ", the matrix has n = ", A_.size());
  }

  HODLRFactorization() = default;  // for read()
  H A_;
  Batch LD_;  // leaf Cholesky factors S_L
  double logdet_ = 0;
};

template <class Scalar, class ExecSpace>
HODLRFactorization<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::factor() const try {
  return HODLRFactorization<Scalar, ExecSpace>(*this);
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HODLR::factor");
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
  using namespace detail;
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
    Kokkos::parallel_reduce("hfisher::HODLR::factor::logdet_leaves", Kokkos::RangePolicy<ExecSpace>(space, 0, nleaf),
                            detail::EntrySum<decltype(ld)>{ld}, s);
    logdet_ = double(s);
  }
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::build_symmetric_factor() {
  constexpr const char* where = "hfisher::HODLR::factor";
  using namespace detail;
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
    Matrix Yp(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::Y"), N, k);
    Kokkos::deep_copy(level_nodes(Yp, l, Nodes::Left), U);
    Kokkos::deep_copy(level_nodes(Yp, l, Nodes::Right), V);
    kernels::detail::trsm_nocheck(space, Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, Scalar(1), LD_,
                                  level_nodes(Yp, L, Nodes::All));
    for (int lp = L; lp > l; --lp) apply_G(Yp, lp, true);
    // both sides of every pair in one batch (2 * pairs entries, node order):
    // at the top levels this gives each core a QR instead of one core two
    const int nodes = 2 * pairs;
    // Yp's rows are the level's nodes in order: (nodes, m, k) without a copy
    const Batch Yc(Yp.data(), nodes, m, k);
    BatchVector<Scalar, ExecSpace> tau(Kokkos::view_alloc(Kokkos::WithoutInitializing, "tau"), nodes, k);
    Kokkos::View<int**, Kokkos::LayoutRight, mem_space> piv(Kokkos::view_alloc(Kokkos::WithoutInitializing, "piv"),
                                                            nodes, k);
    Kokkos::View<int*, mem_space> rk(Kokkos::view_alloc(Kokkos::WithoutInitializing, "rank"), nodes);
    Batch Qn(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::WQ"), nodes, m, k);
    // Y P = Q R, rank-revealing. A tall node by TSQR (kernels/qr.hpp): its
    // chunks' R's stacked, the pivoted QR (the rank) on the stack.
    const int rows = kernels::detail::tsqr_rows(m, k);
    Batch Rs = Yc;  // R on and above the diagonal of its first k rows
    if (rows < m) {
      const int c = m / rows;
      Batch Ql(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::Qchunks"), nodes * c, rows,
               k);
      Rs = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::Rstack"), nodes, c * k,
                 k);
      kernels::detail::tsqr_stack(space, Yc, rows, Ql, Rs);
      kernels::cpqr(space, Rs, tau, piv, rk, double(rank_tol));
      Batch Qs(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::Qstack"), nodes, c * k, k);
      kernels::qr_form_q(space, Rs, tau, Qs);
      kernels::detail::tsqr_form_q(space, Ql, Qs, Qn);
    } else {
      kernels::cpqr(space, Yc, tau, piv, rk, double(rank_tol));
      kernels::qr_form_q(space, Yc, tau, Qn);
    }
    Batch Rn(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::Rt"), nodes, k, k);
    // R~ = R P^T (columns back in the original order), rows >= rank dropped;
    // Q: columns >= rank dropped, padded rows zeroed (decoupled identity rows)
    Kokkos::parallel_for(
        "hfisher::HODLR::factor::W::R", Kokkos::RangePolicy<ExecSpace>(space, 0, nodes),
        detail::PivotedFactorR<Batch, decltype(piv), decltype(rk), decltype(perm)>{Rs, Rn, Qn, piv, rk, perm, k, m});
    // left (even) and right (odd) nodes as pair-indexed views
    auto sides = [pairs](const Batch& B, int side) {
      const long r = B.extent(1), c = B.extent(2);
      return Strided3<Scalar, mem_space>(B.data() + side * r * c, Kokkos::LayoutStride(pairs, 2 * r * c, r, c, c, 1));
    };
    Batch Q[2];
    for (int side = 0; side < 2; ++side) {
      Q[side] = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::WQ"), pairs, m, k);
      Kokkos::deep_copy(space, Q[side], sides(Qn, side));
    }
    const auto Rt0 = sides(Rn, 0), Rt1 = sides(Rn, 1);
    // I + C, C = [[0, B], [B^T, 0]], B = RL RR^T = P diag(sigma) Qb^T: the
    // eigenvalues of I + C are 1 +- sigma_i, so f(I + C) - I for
    // f = sqrt and 1/sqrt comes from the k x k SVD of B:
    //   [[P a P^T, P b Qb^T], [Qb b P^T, Qb a Qb^T]],
    //   a = (f(1 + s) + f(1 - s)) / 2 - 1, b = (f(1 + s) - f(1 - s)) / 2.
    Batch Bm(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::B"), pairs, k, k);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), Rt0, Rt1, Scalar(0), Bm);
    Batch P("hfisher::HODLRFactorization::P", pairs, k, k), Qb("hfisher::HODLRFactorization::Qb", pairs, k, k);
    BatchVector<Scalar, ExecSpace> sig("sigma", pairs, k);
    kernels::svd(space, Bm, P, sig, Qb);
    Kokkos::View<int*, mem_space> bad("bad", pairs);
    Batch PA[2], PB[2], QA[2], QB[2];
    for (int w = 0; w < 2; ++w) {
      // written in full by the sqrt kernel below
      PA[w] = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "PA"), pairs, k, k);
      PB[w] = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "PB"), pairs, k, k);
      QA[w] = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "QA"), pairs, k, k);
      QB[w] = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "QB"), pairs, k, k);
    }
    Scalar ldl = 0;
    Kokkos::parallel_reduce("hfisher::HODLR::factor::W::sqrt", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs),
                            detail::CouplingRoots<Batch, decltype(sig), decltype(bad)>{
                                bad, sig, P, Qb, PA[0], PB[0], QA[0], QB[0], PA[1], PB[1], QA[1], QB[1], k},
                            ldl);
    const long b = detail::first_failure(space, bad);
    detail::require(b < 0, where, "the matrix is not positive definite: level ", l, ", node pair ", b,
                    " (coupling singular value ",
                    double(b >= 0 ? detail::read_entry(Kokkos::subview(sig, Kokkos::ALL(), 0), b) : 0),
                    " >= 1); add_diagonal(lambda) with lambda > 0 regularizes it");
    logdet_ += double(ldl);
    // the four quadrants are GEMM outputs (beta = 0)
    Batch X(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::WX"), pairs, 2 * k, 2 * k);
    Batch Xi(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::WXinv"), pairs, 2 * k,
             2 * k);
    for (int w = 0; w < 2; ++w) {
      const Batch& Xw = w == 0 ? X : Xi;
      const auto top = Kokkos::make_pair(0, k), bot = Kokkos::make_pair(k, 2 * k);
      const auto all = Kokkos::ALL();
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), PA[w], P, Scalar(0),
                                    Kokkos::subview(Xw, all, top, top));
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), PB[w], Qb, Scalar(0),
                                    Kokkos::subview(Xw, all, top, bot));
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), QB[w], P, Scalar(0),
                                    Kokkos::subview(Xw, all, bot, top));
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), QA[w], Qb, Scalar(0),
                                    Kokkos::subview(Xw, all, bot, bot));
    }
    WQL_[l - 1] = Q[0];
    WQR_[l - 1] = Q[1];
    WX_[l - 1] = X;
    WXinv_[l - 1] = Xi;
  }
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::apply_G(const Matrix& Yp, int l, bool inverse) const {
  using namespace detail;
  ExecSpace space;
  const Batch QL = WQL_[l - 1], QR = WQR_[l - 1], X = inverse ? WXinv_[l - 1] : WX_[l - 1];
  const int pairs = QL.extent(0), k = QL.extent(2), r = Yp.extent(1);
  // every GEMM output below is written with beta = 0 before it is read
  Batch T(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::GT"), pairs, 2 * k, r);
  Batch T2(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLRFactorization::GT2"), pairs, 2 * k, r);
  const auto YL = level_nodes(Yp, l, Nodes::Left), YR = level_nodes(Yp, l, Nodes::Right);
  // the five products of a sibling pair in one launch (one team per pair):
  // T = [QL^T YL; QR^T YR], T2 = X T, [YL; YR] += [QL T2_top; QR T2_bot]
  Kokkos::parallel_for("hfisher::HODLR::apply_G", detail::batch_policy(space, pairs),
                       detail::ApplyGPair<ExecSpace, Batch, decltype(YL)>{QL, QR, X, T, T2, YL, YR, k});
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::apply_W(const Matrix& X, const Matrix& Y) const {
  using namespace detail;
  check_pair("hfisher::HODLRFactorization::apply_W", "X", X, "Y", Y);
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
  using namespace detail;
  check_pair("hfisher::HODLRFactorization::apply_Wt", "X", X, "Y", Y);
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
void HODLRFactorization<Scalar, ExecSpace>::solve(const Matrix& B, const Matrix& X) const {
  constexpr const char* where = "hfisher::HODLRFactorization::solve";
  check_pair(where, "B", B, "X", X);
  ExecSpace space;
  detail::check_finite_matrix(space, B, where, "B");
  using namespace detail;
  const int L = A_.tree().levels();
  Matrix Yp = A_.to_tree(B);
  auto leaves = level_nodes(Yp, L, Nodes::All);
  kernels::detail::trsm_nocheck(space, Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, Scalar(1), LD_, leaves);
  for (int l = L; l >= 1; --l) apply_G(Yp, l, true);  // W^-1 B
  for (int l = 1; l <= L; ++l) apply_G(Yp, l, true);  // W^-T W^-1 B
  kernels::detail::trsm_nocheck(space, Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, Scalar(1), LD_, leaves);
  A_.from_tree(Yp, X);
}

template <class Scalar, class ExecSpace>
void HODLRFactorization<Scalar, ExecSpace>::write(std::ostream& o) const {
  io::put(o, std::int32_t(sizeof(Scalar)));
  io::put(o, std::int64_t(A_.size()));
  io::put(o, std::int32_t(WQL_.size()));
  io::put(o, logdet_);
  io::put_block(o, LD_);
  for (std::size_t l = 0; l < WQL_.size(); ++l) {
    io::put_block(o, WQL_[l]);
    io::put_block(o, WQR_[l]);
    io::put_block(o, WX_[l]);
    io::put_block(o, WXinv_[l]);
  }
}

template <class Scalar, class ExecSpace>
HODLRFactorization<Scalar, ExecSpace> HODLRFactorization<Scalar, ExecSpace>::read(std::istream& i, const H& A,
                                                                                  const std::string& what) {
  constexpr const char* where = "hfisher::HODLRFactorization::read";
  const int sz = io::get<std::int32_t>(i, what, where);
  const long n = io::get<std::int64_t>(i, what, where);
  const int L = io::get<std::int32_t>(i, what, where);
  detail::require(sz == int(sizeof(Scalar)) && n == A.size() && L == A.tree().levels(), where, what,
                  ": a factorization of ", n, " unknowns, ", L, " levels, ", sz,
                  "-byte scalars does not fit this matrix (", A.size(), " unknowns, ", A.tree().levels(), " levels, ",
                  sizeof(Scalar), "-byte scalars)");
  HODLRFactorization f;
  f.A_ = A;
  f.logdet_ = io::get<double>(i, what, where);
  // extents must be those of this matrix's factorization: leaves (nleaf,
  // leaf, leaf); per level (pairs, m, k) for the Q's, (pairs, 2k, 2k) for X
  auto get_batch = [&](long e0, long e1, long e2) { return io::get_block<Batch>(i, e0, e1, e2, what, where); };
  const int leaf = A.tree().leaf_size(), nleaf = A.tree().padded_size() / leaf;
  f.LD_ = get_batch(nleaf, leaf, leaf);
  f.WQL_.assign(L, Batch());
  f.WQR_.assign(L, Batch());
  f.WX_.assign(L, Batch());
  f.WXinv_.assign(L, Batch());
  for (int l = 1; l <= L; ++l) {
    const long pairs = A.U(l).extent(0), m = A.U(l).extent(1), k = A.U(l).extent(2);
    f.WQL_[l - 1] = get_batch(pairs, m, k);
    f.WQR_[l - 1] = get_batch(pairs, m, k);
    f.WX_[l - 1] = get_batch(pairs, 2 * k, 2 * k);
    f.WXinv_[l - 1] = get_batch(pairs, 2 * k, 2 * k);
  }
  return f;
}

template <class Scalar, class ExecSpace>
std::size_t HODLRFactorization<Scalar, ExecSpace>::bytes() const {
  std::size_t b = LD_.size() * sizeof(Scalar);
  for (std::size_t l = 0; l < WQL_.size(); ++l)
    b += (WQL_[l].size() + WQR_[l].size() + WX_[l].size() + WXinv_[l].size()) * sizeof(Scalar);
  return b;
}

// compiled once in src/instantiate_hodlr.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_HODLR_(S, E)  \
  extern template class HODLR<S, E>; \
  extern template class HODLRFactorization<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_HODLR_)
#undef HFISHER_EXTERN_HODLR_

}  // namespace hfisher
