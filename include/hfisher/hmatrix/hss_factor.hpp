#pragma once
/// \file hss_factor.hpp
/// \brief hfisher::HSSFactorization: ULV-type symmetric factorization
/// A = W W^T of a symmetric positive definite HSS matrix in telescoping
/// form, one batched launch per step and level, O(N k^2) time and O(N k)
/// memory (Chandrasekaran, Gu & Pals 2006; Xia, Chandrasekaran, Gu & Li 2010;
/// in the telescoping form of Gillman, Young & Martinsson 2012).
///
/// At level l the matrix is M_l = blockdiag(Dw_t) + U_l M_(l-1) U_l^T with
/// Dw = D_l plus the Schur complements passed up from level l + 1. Per node,
/// Q = [U, U_perp] (orthogonal m x m; the k Householder reflectors of a QR of
/// U, applied in O(k m^2) without forming Q) rotates the node's rows so that
/// only its first k rows couple to the rest: with "1" the last c = m - k
/// rotated coordinates and "2" the first k, Q^T Dw Q = [[D22, D21^T],
/// [D21, D11]] and D11 (c x c) is eliminated by Cholesky, D11 = L11 L11^T,
/// L21 = D21 L11^-T, and the Schur complement S = D22 - L21 L21^T is added to
/// the node's k x k diagonal block of the parent level; at the root a dense
/// Cholesky finishes. Then, in the order (1, 2),
///   M_l = Q L diag(I_c, M_(l-1) + blockdiag(S)) L^T Q^T,  L = [[L11, 0], [L21, I]],
/// which gives solve (two sweeps), logdet = 2 sum log diag(L11) + logdet(root)
/// and a square factor W with W W^T = A for sampling. Every D11 is a
/// principal block of an orthogonal rotation of an SPD matrix, so the
/// factorization exists exactly when A is positive definite: a failing pivot
/// is reported with its level and node.

#include <hfisher/core/instantiate.hpp>
#include <hfisher/hmatrix/hss.hpp>
#include <hfisher/hmatrix/impl/functors.hpp>
#include <hfisher/kernels/cholesky.hpp>
#include <hfisher/kernels/qr.hpp>
#include <hfisher/kernels/trsm.hpp>

#include <cmath>

namespace hfisher {

template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
class HSSFactorization {
 public:
  using H = HSS<Scalar, ExecSpace>;
  using Matrix = typename H::Matrix;
  using Batch = typename H::Batch;
  using mem_space = typename ExecSpace::memory_space;

  explicit HSSFactorization(const H& A);

  /// X = A^-1 B for B, X: (n, r), user order (X may alias B). O(N k r).
  void solve(const Matrix& B, const Matrix& X) const;
  /// log det A.
  double logdet() const { return logdet_; }
  /// Y = W X and Y = W^T X with A = W W^T, W: n x N (N the tree's padded
  /// size: the rotations of the factorization mix real and padded tree
  /// positions, so W has N columns; X: (N, r) for apply_W, (n, r) for
  /// apply_Wt). W z with z ~ N(0, I_N) samples N(0, A); solve(W z) samples
  /// N(0, A^-1).
  void apply_W(const Matrix& X, const Matrix& Y) const;
  void apply_Wt(const Matrix& X, const Matrix& Y) const;
  std::size_t bytes() const;

  /// Writes the factorization (per level the reflectors, R's signs, L11 and
  /// L21; the root Cholesky factor; log det) so that a process holding the
  /// same matrix can install it instead of factoring (prepare_sharded ships
  /// per-layer factorizations this way). The matrix itself is not written.
  void write(std::ostream& o) const;
  /// Reads what write() wrote, for the matrix A it was computed from (the
  /// caller guarantees the same contents; every extent is checked against
  /// A's levels and ranks).
  static HSSFactorization read(std::istream& i, const H& A, const std::string& what);

 private:
  // implementation steps (their kernels are named functors or the free
  // functions below: nvcc allows no device lambda here)
  void factorize();
  void solve_tree(const Matrix& Bp) const;
  void W_tree(const Matrix& Xp, const Matrix& Yp, bool transpose) const;
  /// X <- Q^T X (transpose) or Q X per node, X: (nodes, m, r) at `level`.
  void rotate(int level, const Batch& X, bool transpose) const;

  H A_;
  // per level 1..L: Householder vectors of U's QR (nodes, m, k) with tau
  // (nodes, k) and the signs of R's diagonal (nodes, k); L11 (nodes, c, c),
  // L21 (nodes, k, c)
  std::vector<Batch> V_, L11_, L21_;
  std::vector<BatchVector<Scalar, ExecSpace>> tau_, sig_;
  Batch L0_;  // root Cholesky factor
  double logdet_ = 0;
  HSSFactorization() = default;  // for read()
  void check_pair(const char* where, const Matrix& in, const Matrix& out) const {
    detail::require(
        long(in.extent(0)) == A_.size() && long(out.extent(0)) == A_.size() && in.extent(1) == out.extent(1), where,
        "input is ", in.extent(0), "x", in.extent(1), ", output is ", out.extent(0), "x", out.extent(1),
        ", the matrix has n = ", A_.size());
  }
};

template <class Scalar, class ExecSpace>
HSSFactorization<Scalar, ExecSpace> HSS<Scalar, ExecSpace>::factor() const try {
  return HSSFactorization<Scalar, ExecSpace>(*this);
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HSS::factor");
}

template <class Scalar, class ExecSpace>
HSSFactorization<Scalar, ExecSpace>::HSSFactorization(const H& A) : A_(A) {
  factorize();
}

namespace detail {

/// Cholesky of a batch; a failure names the level and node.
template <class Exec, class B>
double cholesky_logdet(const Exec& space, const B& A, const char* where, int level) {
  using T = typename B::non_const_value_type;
  const int nb = A.extent(0);
  if (nb == 0 || A.extent(1) == 0) return 0.0;
  Kokkos::View<int*, typename Exec::memory_space> info("info", nb);
  Kokkos::View<T*, typename Exec::memory_space> piv("piv", nb);
  kernels::detail::potrf_nocheck(space, A, info, piv);
  const long bad = detail::first_failure(space, info);
  if (bad >= 0)
    throw Error(detail::concat(where, ": the matrix is not positive definite: the eliminated block of level ", level,
                               ", node ", bad, " fails Cholesky at pivot ", detail::read_entry(info, bad) - 1,
                               " (value ", double(detail::read_entry(piv, bad)),
                               "); add_diagonal(lambda) with lambda > 0 regularizes it"));
  Kokkos::View<T*, typename Exec::memory_space> ld("ld", nb);
  kernels::logdet_cholesky(space, A, ld);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), ld);
  double s = 0;
  for (int b = 0; b < nb; ++b) s += double(h(b));
  return s;
}

/// D <- Q^T D Q per node for symmetric D (nodes, m, m), Q = H_0 ... H_(k-1)
/// (reflectors H_i = I - tau_i v_i v_i^T stored as by kernels::qr in V), then
/// rows and columns [0, k) scaled by sig (Q(:, 0:k) = U diag(sig)): each
/// reflector is the symmetric rank-2 update D - v z^T - z v^T with
/// w = tau D v, z = w - (tau / 2)(v^T w) v (LAPACK dsytd2's form), O(m^2).
template <class Exec, class B, class TV>
void rotate_symmetric(const Exec& space, const B& V, const TV& tau, const TV& sig, const B& D) {
  using T = typename B::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  const int nodes = D.extent(0), m = D.extent(1), k = V.extent(2);
  BatchVector<T, Exec> w("hfisher::HSS::rot_w", nodes, m);
  Kokkos::parallel_for(
      "hfisher::HSS::rotate_symmetric", detail::batch_policy(space, nodes), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        for (int i = 0; i < k; ++i) {
          const T ti = tau(b, i);
          auto v = [&](int j) { return j < i ? T(0) : (j == i ? T(1) : V(b, j, i)); };
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int r) {
            T s = 0;
            for (int j = i; j < m; ++j) s += D(b, r, j) * v(j);
            w(b, r) = ti * s;
          });
          t.team_barrier();
          T vw = 0;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(t, i, m), [&](const int r, T& acc) { acc += v(r) * w(b, r); }, vw);
          const T alpha = ti * vw / 2;
          t.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int r) {
            const T zr = w(b, r) - alpha * v(r), vr = v(r);
            for (int c = 0; c < m; ++c) {
              const T zc = w(b, c) - alpha * v(c);
              D(b, r, c) -= vr * zc + zr * v(c);
            }
          });
          t.team_barrier();
        }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, m), [&](const int r) {
          const T sr = r < k ? sig(b, r) : T(1);
          for (int c = 0; c < m; ++c) D(b, r, c) *= sr * (c < k ? sig(b, c) : T(1));
        });
      });
}

/// X <- Q^T X or Q X per node (X: (nodes, m, r)), Q = H_0 ... H_(k-1) diag(sig, I).
template <class Exec, class B, class TV, class XV>
void rotate_vectors(const Exec& space, const B& V, const TV& tau, const TV& sig, const XV& X, bool transpose) {
  using T = typename B::non_const_value_type;
  using member = typename ExecTraits<Exec>::member_type;
  const int nodes = X.extent(0), m = X.extent(1), r = X.extent(2), k = V.extent(2);
  Kokkos::parallel_for(
      "hfisher::HSS::rotate_vectors", detail::batch_policy(space, nodes), KOKKOS_LAMBDA(const member& t) {
        const int b = t.league_rank();
        auto scale = [&]() {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, k), [&](const int i) {
            for (int c = 0; c < r; ++c) X(b, i, c) *= sig(b, i);
          });
          t.team_barrier();
        };
        if (!transpose) scale();
        for (int q = 0; q < k; ++q) {
          const int i = transpose ? q : k - 1 - q;  // Q^T = H_(k-1) ... H_0: H_0 first
          const T ti = tau(b, i);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, 0, r), [&](const int c) {
            T s = X(b, i, c);
            for (int j = i + 1; j < m; ++j) s += V(b, j, i) * X(b, j, c);
            s *= ti;
            X(b, i, c) -= s;
            for (int j = i + 1; j < m; ++j) X(b, j, c) -= s * V(b, j, i);
          });
          t.team_barrier();
        }
        if (transpose) scale();
      });
}

/// sig(b, i) = sign of R(i, i) (the diagonal of the QR in V): Q(:, 0:k) = U diag(sig).
template <class Exec, class B, class TV>
void r_signs(const Exec& space, const B& V, const TV& sig) {
  using T = typename B::non_const_value_type;
  const int nodes = V.extent(0), k = V.extent(2);
  Kokkos::parallel_for(
      "hfisher::HSS::r_signs", Kokkos::RangePolicy<Exec>(space, 0, nodes), KOKKOS_LAMBDA(const int b) {
        for (int i = 0; i < k; ++i) sig(b, i) = V(b, i, i) < T(0) ? T(-1) : T(1);
      });
}

}  // namespace detail

template <class Scalar, class ExecSpace>
void HSSFactorization<Scalar, ExecSpace>::rotate(int level, const Batch& X, bool transpose) const {
  detail::rotate_vectors(ExecSpace(), V_[level], tau_[level], sig_[level], X, transpose);
}

template <class Scalar, class ExecSpace>
void HSSFactorization<Scalar, ExecSpace>::factorize() {
  constexpr const char* where = "hfisher::HSS::factor";
  using detail::cols;
  using detail::rows;
  detail::require(A_.levels() >= 0 && A_.D(0).extent(0) > 0, where, "the matrix is empty (not built)");
  ExecSpace space;
  const int L = A_.levels();
  V_.assign(L + 1, Batch());
  tau_.assign(L + 1, BatchVector<Scalar, ExecSpace>());
  sig_.assign(L + 1, BatchVector<Scalar, ExecSpace>());
  L11_.assign(L + 1, Batch());
  L21_.assign(L + 1, Batch());
  logdet_ = 0;
  Batch Dw(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Dw"), A_.D(L).extent(0), A_.D(L).extent(1),
           A_.D(L).extent(2));
  Kokkos::deep_copy(Dw, A_.D(L));
  for (int l = L; l >= 1; --l) {
    const auto& U = A_.U(l);
    const int nodes = 1 << l, m = U.extent(1), k = U.extent(2), c = m - k;
    // reflectors of U's QR; Dw <- Q^T Dw Q = [[D22, D21^T], [D21, D11]]
    Batch V(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::V"), nodes, m, k);
    Kokkos::deep_copy(V, U);
    BatchVector<Scalar, ExecSpace> tau("hfisher::HSS::tau", nodes, k), sig("hfisher::HSS::sig", nodes, k);
    kernels::qr(space, V, tau);
    detail::r_signs(space, V, sig);
    detail::rotate_symmetric(space, V, tau, sig, Dw);
    Batch L11(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::L11"), nodes, c, c);
    Batch L21(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::L21"), nodes, k, c);
    Batch S(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::S"), nodes, k, k);
    Kokkos::deep_copy(space, S, Kokkos::subview(Dw, Kokkos::ALL(), Kokkos::make_pair(0, k), Kokkos::make_pair(0, k)));
    if (c > 0) {
      Kokkos::deep_copy(space, L11,
                        Kokkos::subview(Dw, Kokkos::ALL(), Kokkos::make_pair(k, m), Kokkos::make_pair(k, m)));
      Kokkos::deep_copy(space, L21,
                        Kokkos::subview(Dw, Kokkos::ALL(), Kokkos::make_pair(0, k), Kokkos::make_pair(k, m)));
      logdet_ += detail::cholesky_logdet(space, L11, where, l);
      kernels::detail::trsm_nocheck(space, Side::Right, Uplo::Lower, Op::Trans, Diag::NonUnit, Scalar(1), L11, L21);
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(-1), L21, L21, Scalar(1), S);
    }
    V_[l] = V;
    tau_[l] = tau;
    sig_[l] = sig;
    L11_[l] = L11;
    L21_[l] = L21;
    // parent: D_(l-1) plus the children's Schur complements on its diagonal
    const auto& Dp = A_.D(l - 1);
    Batch Dn(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Dw"), Dp.extent(0), Dp.extent(1),
             Dp.extent(2));
    Kokkos::deep_copy(space, Dn, Dp);
    Kokkos::parallel_for("hfisher::HSS::factor::schur", Kokkos::RangePolicy<ExecSpace>(space, 0, nodes),
                         detail::ChildDiagonalBlock<Batch>{Dn, S, k, true});
    Dw = Dn;
  }
  L0_ = Dw;
  logdet_ += detail::cholesky_logdet(space, L0_, where, 0);
}

template <class Scalar, class ExecSpace>
void HSSFactorization<Scalar, ExecSpace>::solve_tree(const Matrix& Bp) const {
  using detail::rows;
  ExecSpace space;
  const int L = A_.levels(), r = Bp.extent(1);
  // forward: per level the rotated node vectors (nodes, m, r): rows [k, m)
  // hold L11^-1 b1, rows [0, k) b2 - L21 L11^-1 b1 (passed up)
  std::vector<Batch> bt(L + 1);
  Matrix cur = Bp;
  for (int l = L; l >= 1; --l) {
    const int nodes = 1 << l, m = V_[l].extent(1), k = V_[l].extent(2), c = m - k;
    bt[l] = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::bt"), nodes, m, r);
    Kokkos::deep_copy(space, bt[l], detail::reshape<Batch>(cur, nodes, m, r));
    rotate(l, bt[l], true);
    if (c > 0) {
      kernels::detail::trsm_nocheck(space, Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, Scalar(1), L11_[l],
                                    rows(bt[l], k, c));
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(-1), L21_[l], rows(bt[l], k, c), Scalar(1),
                                    rows(bt[l], 0, k));
    }
    Matrix up(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::up"), nodes * k, r);
    Kokkos::deep_copy(space, detail::reshape<Batch>(up, nodes, k, r), rows(bt[l], 0, k));
    cur = up;
  }
  kernels::potrs(space, L0_, detail::reshape<Batch>(cur, 1, cur.extent(0), r));
  // backward: x2 from the parent; x1 = L11^-T (y1 - L21^T x2); x = Q [x2; x1]
  for (int l = 1; l <= L; ++l) {
    const int nodes = 1 << l, m = V_[l].extent(1), k = V_[l].extent(2), c = m - k;
    Kokkos::deep_copy(space, rows(bt[l], 0, k), detail::reshape<Batch>(cur, nodes, k, r));
    if (c > 0) {
      kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(-1), L21_[l], rows(bt[l], 0, k), Scalar(1),
                                    rows(bt[l], k, c));
      kernels::detail::trsm_nocheck(space, Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, Scalar(1), L11_[l],
                                    rows(bt[l], k, c));
    }
    rotate(l, bt[l], false);
    cur = Matrix(bt[l].data(), long(nodes) * m, r);
  }
  if (L >= 1)
    Kokkos::deep_copy(space, detail::reshape<Batch>(Bp, 1 << L, bt[L].extent(1), r), bt[L]);
  else
    Kokkos::deep_copy(space, Bp, cur);
}

template <class Scalar, class ExecSpace>
void HSSFactorization<Scalar, ExecSpace>::W_tree(const Matrix& Xp, const Matrix& Yp, bool transpose) const {
  using detail::rows;
  ExecSpace space;
  const int L = A_.levels(), r = Xp.extent(1);
  // Layout of the input of W (and output of W^T): at level l, node rows
  // [k, m) are the node's own (eliminated) coordinates, rows [0, k) are
  // gathered into the parent level's vector; the root holds what is left.
  std::vector<Batch> v(L + 1);
  std::vector<Matrix> keep;  // owners of the buffers v[] points into
  Matrix cur = Xp;
  const int m0 = L0_.extent(1);
  if (!transpose) {
    for (int l = L; l >= 1; --l) {  // gather (data movement only)
      const int nodes = 1 << l, m = V_[l].extent(1), k = V_[l].extent(2);
      v[l] = detail::reshape<Batch>(cur, nodes, m, r);
      Matrix up(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::up"), nodes * k, r);
      Kokkos::deep_copy(space, detail::reshape<Batch>(up, nodes, k, r), rows(v[l], 0, k));
      keep.push_back(up);
      cur = up;
    }
    Matrix y0("hfisher::HSS::y0", m0, r);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), L0_,
                                  detail::reshape<Batch>(cur, 1, m0, r), Scalar(0),
                                  detail::reshape<Batch>(y0, 1, m0, r));
    cur = y0;
    for (int l = 1; l <= L; ++l) {  // w = [y_parent + L21 x1; L11 x1]; y = Q w
      const int nodes = 1 << l, m = V_[l].extent(1), k = V_[l].extent(2), c = m - k;
      Batch w(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::w"), nodes, m, r);
      Kokkos::deep_copy(space, rows(w, 0, k), detail::reshape<Batch>(cur, nodes, k, r));
      if (c > 0) {
        kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), L11_[l], rows(v[l], k, c), Scalar(0),
                                      rows(w, k, c));
        kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), L21_[l], rows(v[l], k, c), Scalar(1),
                                      rows(w, 0, k));
      }
      rotate(l, w, false);
      cur = Matrix(w.data(), long(nodes) * m, r);
      v[l] = w;  // keeps the buffer alive
    }
    Kokkos::deep_copy(space, Yp, cur);
    return;
  }
  // W^T: t = Q^T x; own rows: L11^T t1 + L21^T t2; t2 goes up; root L0^T
  for (int l = L; l >= 1; --l) {
    const int nodes = 1 << l, m = V_[l].extent(1), k = V_[l].extent(2), c = m - k;
    Batch t(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::t"), nodes, m, r);
    Kokkos::deep_copy(space, t, detail::reshape<Batch>(cur, nodes, m, r));
    rotate(l, t, true);
    v[l] = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::o"), nodes, m, r);
    if (c > 0) {
      kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), L11_[l], rows(t, k, c), Scalar(0),
                                    rows(v[l], k, c));
      kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), L21_[l], rows(t, 0, k), Scalar(1),
                                    rows(v[l], k, c));
    }
    Matrix up(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::up"), nodes * k, r);
    Kokkos::deep_copy(space, detail::reshape<Batch>(up, nodes, k, r), rows(t, 0, k));
    cur = up;
  }
  Matrix y0("hfisher::HSS::y0", m0, r);
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), L0_, detail::reshape<Batch>(cur, 1, m0, r),
                                Scalar(0), detail::reshape<Batch>(y0, 1, m0, r));
  cur = y0;
  for (int l = 1; l <= L; ++l) {  // scatter: rows [0, k) come from the parent's output
    const int nodes = 1 << l, m = V_[l].extent(1), k = V_[l].extent(2);
    Kokkos::deep_copy(space, rows(v[l], 0, k), detail::reshape<Batch>(cur, nodes, k, r));
    cur = Matrix(v[l].data(), long(nodes) * m, r);
  }
  Kokkos::deep_copy(space, Yp, cur);
}

template <class Scalar, class ExecSpace>
void HSSFactorization<Scalar, ExecSpace>::solve(const Matrix& B, const Matrix& X) const {
  constexpr const char* where = "hfisher::HSSFactorization::solve";
  check_pair(where, B, X);
  detail::check_finite_matrix(ExecSpace(), B, where, "B");
  Matrix Bp = A_.to_tree(B);
  solve_tree(Bp);
  A_.from_tree(Bp, X);
}

template <class Scalar, class ExecSpace>
void HSSFactorization<Scalar, ExecSpace>::apply_W(const Matrix& X, const Matrix& Y) const {
  constexpr const char* where = "hfisher::HSSFactorization::apply_W";
  const long N = A_.tree().padded_size(), n = A_.size();
  detail::require(long(X.extent(0)) == N && long(Y.extent(0)) == n && X.extent(1) == Y.extent(1), where, "X is ",
                  X.extent(0), "x", X.extent(1), ", Y is ", Y.extent(0), "x", Y.extent(1), "; W is ", n, "x", N,
                  " (n x padded size)");
  detail::check_finite_matrix(ExecSpace(), X, where, "X");
  Matrix Xp(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Xp"), N, X.extent(1));
  Kokkos::deep_copy(Xp, X);
  Matrix Yp("hfisher::HSS::Yp", N, X.extent(1));
  W_tree(Xp, Yp, false);
  A_.from_tree(Yp, Y);
}

template <class Scalar, class ExecSpace>
void HSSFactorization<Scalar, ExecSpace>::apply_Wt(const Matrix& X, const Matrix& Y) const {
  constexpr const char* where = "hfisher::HSSFactorization::apply_Wt";
  const long N = A_.tree().padded_size(), n = A_.size();
  detail::require(long(X.extent(0)) == n && long(Y.extent(0)) == N && X.extent(1) == Y.extent(1), where, "X is ",
                  X.extent(0), "x", X.extent(1), ", Y is ", Y.extent(0), "x", Y.extent(1), "; W^T is ", N, "x", n,
                  " (padded size x n)");
  detail::check_finite_matrix(ExecSpace(), X, where, "X");
  Matrix Xp = A_.to_tree(X);
  W_tree(Xp, Y, true);
}

template <class Scalar, class ExecSpace>
void HSSFactorization<Scalar, ExecSpace>::write(std::ostream& o) const {
  io::put(o, std::int32_t(sizeof(Scalar)));
  io::put(o, std::int64_t(A_.size()));
  io::put(o, std::int32_t(A_.levels()));
  io::put(o, logdet_);
  io::put_block(o, L0_);
  for (int l = 1; l <= A_.levels(); ++l) {
    io::put_block(o, V_[l]);
    io::put_block(o, tau_[l]);
    io::put_block(o, sig_[l]);
    io::put_block(o, L11_[l]);
    io::put_block(o, L21_[l]);
  }
}

template <class Scalar, class ExecSpace>
HSSFactorization<Scalar, ExecSpace> HSSFactorization<Scalar, ExecSpace>::read(std::istream& i, const H& A,
                                                                              const std::string& what) {
  constexpr const char* where = "hfisher::HSSFactorization::read";
  const int sz = io::get<std::int32_t>(i, what, where);
  const long n = io::get<std::int64_t>(i, what, where);
  const int L = io::get<std::int32_t>(i, what, where);
  detail::require(sz == int(sizeof(Scalar)) && n == A.size() && L == A.levels(), where, what, ": a factorization of ",
                  n, " unknowns, ", L, " levels, ", sz, "-byte scalars does not fit this matrix (", A.size(),
                  " unknowns, ", A.levels(), " levels, ", sizeof(Scalar), "-byte scalars)");
  HSSFactorization f;
  f.A_ = A;
  f.logdet_ = io::get<double>(i, what, where);
  // every extent must be that of this matrix's factorization (a trailing 1
  // for the per-node vectors)
  auto batch = [&](long e0, long e1, long e2) { return io::get_block<Batch>(i, e0, e1, e2, what, where); };
  auto vec = [&](long e0, long e1) { return io::get_block<BatchVector<Scalar, ExecSpace>>(i, e0, e1, 1, what, where); };
  f.L0_ = batch(A.D(0).extent(0), A.D(0).extent(1), A.D(0).extent(2));
  f.V_.assign(L + 1, Batch());
  f.tau_.assign(L + 1, BatchVector<Scalar, ExecSpace>());
  f.sig_.assign(L + 1, BatchVector<Scalar, ExecSpace>());
  f.L11_.assign(L + 1, Batch());
  f.L21_.assign(L + 1, Batch());
  for (int l = 1; l <= L; ++l) {
    const long nodes = A.U(l).extent(0), m = A.U(l).extent(1), k = A.U(l).extent(2), c = m - k;
    f.V_[l] = batch(nodes, m, k);
    f.tau_[l] = vec(nodes, k);
    f.sig_[l] = vec(nodes, k);
    f.L11_[l] = batch(nodes, c, c);
    f.L21_[l] = batch(nodes, k, c);
  }
  return f;
}

template <class Scalar, class ExecSpace>
std::size_t HSSFactorization<Scalar, ExecSpace>::bytes() const {
  std::size_t b = L0_.size() * sizeof(Scalar);
  for (std::size_t l = 1; l < V_.size(); ++l)
    b += (V_[l].size() + tau_[l].size() + sig_[l].size() + L11_[l].size() + L21_[l].size()) * sizeof(Scalar);
  return b;
}

// compiled once in src/instantiate_hss.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_HSS_(S, E)  \
  extern template class HSS<S, E>; \
  extern template class HSSFactorization<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_HSS_)
#undef HFISHER_EXTERN_HSS_

}  // namespace hfisher
