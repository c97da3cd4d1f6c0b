#pragma once
/// \file hss.hpp
/// \brief hfisher::HSS: symmetric hierarchically semi-separable matrices
/// (nested bases) in telescoping form, built from products with the matrix
/// (matrix-free), applied in O(N k) and factored in O(N k^2) with one batched
/// launch per level.
///
/// Telescoping form (Gillman, Young & Martinsson 2012; Levitt & Martinsson
/// 2022). For a tree with L levels, N = leaf * 2^L positions:
///   A = D_L + U_L A_(L-1) U_L^T,   A_l = D_l + U_l A_(l-1) U_l^T,  A_0 = D_0,
/// where, per level l, D_l: (2^l, m_l, m_l) block diagonal and U_l:
/// (2^l, m_l, k_l) block diagonal with orthonormal columns, m_L = leaf and
/// m_l = 2 k_(l+1) (the bases of two siblings stacked: the nested basis of
/// their parent is diag(U_(l+1)[2p], U_(l+1)[2p+1]) U_l[p]). Each off-diagonal
/// sibling block is A(I_a, I_b) = U_a (block of A_(l-1)) U_b^T: its rank is at
/// most k_l. Storage is one View per level, O(N k) in all; padded positions
/// are decoupled identity rows.
///
/// Construction (from_matvec) is the black-box randomized algorithm of
/// Levitt & Martinsson (2022) for symmetric A: one block of s Gaussian test
/// vectors Omega and Y = A Omega. At a node with test rows Omega_t (m x s) and
/// sample rows Y_t, the columns P of a null-space basis of Omega_t make
/// Y_t P = A(I_t, I_t^c) Omega(I_t^c) P a sample of the off-diagonal block
/// row only; its leading left singular vectors are U_t. (Where s >= 2 m, P
/// is not formed: Y_t (I - Q1 Q1^T), Q1 the thin Q of Omega_t^T, has the
/// same left singular vectors and values, at O(m^2 s) work instead of
/// O(m s^2).) With Q = I - U U^T,
/// X = Q Y_t Omega_t^+ = Q D_t, so D_t - U U^T D_t U U^T = X + U U^T X^T is
/// known; the remainder U^T D_t U moves one level up, where the node's
/// reduced test and sample rows are U^T Omega_t and U^T (Y_t - D_l Omega_t).
/// s products serve every level at once: s >= m_l + k_l + oversampling.
///
/// The truncation threshold is relative to each level's largest sampled
/// block, and the errors of all nodes and levels add up: the first pass
/// truncates at tol / 10, and after a pass whose a-posteriori estimate
/// |A - H|_F / |A|_F (fresh probes) still exceeds opts.tol the threshold is
/// lowered and the matrix rebuilt from the same products (more are drawn
/// only when a level's sample becomes too narrow), up to three times: the
/// estimate then meets tol unless the samples cannot resolve more
/// (rounding, a rank cap, max_products), which the estimate in
/// build_info() shows. A rank cap is judged at the per-block threshold
/// tol: the tighter passes never turn a construction that met it into an
/// error.
///
/// From entries (from_entries), where a product with A would cost O(n^2):
/// a HODLR matrix is built from entries by ACA at tol / 10, and its O(n k
/// log n) products serve as the operator.

#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/hmatrix/cluster_tree.hpp>
#include <hfisher/hmatrix/compression.hpp>
#include <hfisher/hmatrix/hodlr.hpp>
#include <hfisher/hmatrix/impl/functors.hpp>
#include <hfisher/hmatrix/impl/matvec.hpp>
#include <hfisher/hmatrix/impl/tree_ops.hpp>
#include <hfisher/hmatrix/impl/views.hpp>
#include <hfisher/kernels/cholesky.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/qr.hpp>
#include <hfisher/kernels/svd.hpp>
#include <hfisher/kernels/trsm.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace hfisher {

template <class Scalar, class ExecSpace>
class HSSFactorization;

template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
class HSS {
 public:
  using scalar_type = Scalar;
  using exec_space = ExecSpace;
  using mem_space = typename ExecSpace::memory_space;
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, mem_space>;  ///< (rows, cols)
  using Vector = Kokkos::View<Scalar*, mem_space>;
  using Batch = BatchMatrix<Scalar, ExecSpace>;
  /// op(Omega, Y) writes Y = A Omega (see MatvecOperator).
  using Operator = MatvecOperator<Scalar, ExecSpace>;

  HSS() = default;

  /// Matrix-free construction from products Y = A Omega (see the file
  /// comment). The number of test vectors s grows (by half, reusing the
  /// products already made) until every level's sample is wider than its
  /// rank plus opts.oversampling, or opts.max_products is reached; ranks are
  /// truncated where singular values of the samples fall below
  /// opts.tol * |A|_F (estimated from the samples), capped at opts.max_rank.
  /// opts.probes more products then estimate |A - H|_F / |A|_F; both are in
  /// matvec_info().
  template <class Op>
  static HSS from_matvec(Op&& op, int n, const ClusterTree& tree, const CompressionOptions& opts = {}) {
    Operator f = [&op](const Matrix& Omega, Matrix& Y) { op(Omega, Y); };
    return from_operator(f, n, tree, opts);
  }
  /// rank_bound > 0: a known bound on every block rank (from_factors passes
  /// the columns of G), which sizes the first pass so that it is the only one.
  static HSS from_operator(const Operator& op, int n, const ClusterTree& tree, const CompressionOptions& opts = {},
                           int rank_bound = 0);

  /// From a dense symmetric n x n matrix (View in ExecSpace's memory): the
  /// matrix-free construction with products by batched GEMM (O(n^2 s)).
  /// Throws on non-square, non-symmetric or non-finite input.
  template <class AView>
  static HSS from_dense(const AView& A, const ClusterTree& tree, const CompressionOptions& opts = {});

  /// A = diag(d) + G G^T (d: (n), G: (n, m)), never formed: products cost
  /// O(n m) per test vector.
  template <class DView, class GView>
  static HSS from_factors(const DView& d, const GView& G, const ClusterTree& tree, const CompressionOptions& opts = {});

  /// Compresses the symmetric matrix A(i, j) = fn(i, j) (user indices; fn as
  /// for HODLR::from_entries: a copyable functor callable on ExecSpace)
  /// without O(n^2) work: HODLR::from_entries at opts.tol / 10 (ACA on
  /// O(n k log n) entries), then the matrix-free construction with products
  /// by that HODLR matrix (O(n k log n) each). build_info() reports the HSS
  /// pass (samples, probes, products with the HODLR matrix) and, as
  /// error_estimate, the sum of the HODLR matrix's sampled-entry estimate
  /// against fn (in `entries`) and the probe estimate of the HSS matrix
  /// against the HODLR one: a bound on |A - H|_F / |A|_F by the triangle
  /// inequality, up to the sampling of both estimates.
  template <class EntryFn>
  static HSS from_entries(const EntryFn& fn, const ClusterTree& tree, const CompressionOptions& opts = {});

  int size() const { return tree_.size(); }
  const ClusterTree& tree() const { return tree_; }
  const CompressionOptions& options() const { return opts_; }
  /// How the matrix was built (products, samples, error estimate).
  const BuildInfo& build_info() const { return info_; }
  /// The same report under its former name.
  const BuildInfo& matvec_info() const { return info_; }

  /// Y = A X for X, Y: (n, r), user order. O(N k r).
  void apply(const Matrix& X, const Matrix& Y) const;
  /// The diagonal of A (n), user order.
  Vector diag() const;
  /// The dense n x n matrix (small n only).
  Matrix to_dense() const;
  /// A <- A + lambda I (exact: the leaf blocks change).
  void add_diagonal(Scalar lambda);
  /// *this <- *this + alpha B (same tree), recompressed to this matrix's
  /// tolerance by the matrix-free construction on x -> A x + alpha B x
  /// (O(N k s) work): a running sum stays O(N k) in memory.
  void add(const HSS& B, Scalar alpha = Scalar(1));
  /// Multiplies every entry by alpha (exact: the D blocks scale).
  void scale(Scalar alpha);
  /// Rebuilds at tolerance tol in (0, 1) from products with the current matrix.
  void recompress(double tol);
  /// A deep copy (copies share storage, like Kokkos Views).
  HSS clone() const;
  /// Bytes of the numerical data (D and U blocks of every level, permutation).
  std::size_t bytes() const;
  /// Per level (1..L): min, mean, max of the node ranks kept (singular
  /// values of the samples above the threshold, capped at max_rank) and the
  /// level's storage rank k_l.
  std::vector<RankStats> ranks() const;
  /// Versioned binary file, written to a temporary and renamed.
  void save(const std::string& path) const;
  static HSS load(const std::string& path);
  void write(std::ostream& o) const;
  static HSS read(std::istream& i, const std::string& what);

  /// ULV-type factorization A = W W^T (solve, logdet, apply_W): see
  /// HSSFactorization.
  HSSFactorization<Scalar, ExecSpace> factor() const;

  // level data (read-only access for the factorization and tests)
  int levels() const { return tree_.levels(); }
  const Batch& D(int level) const { return D_.at(level); }  ///< level 0..L
  const Batch& U(int level) const { return U_.at(level); }  ///< level 1..L (U(0) is empty)
  const std::vector<int>& node_ranks(int level) const { return ranks_.at(level); }

  /// user (n, r) -> tree order (N, r), zero on padding
  Matrix to_tree(const Matrix& X) const;
  /// tree order (N, r) -> user (n, r)
  void from_tree(const Matrix& Xp, const Matrix& Y) const;
  /// Tree-order product (N, r) -> (N, r).
  void apply_tree(const Matrix& Xp, const Matrix& Yp) const;

 private:
  // construction steps (their kernels are the named functors of
  // hmatrix/impl/functors.hpp: nvcc allows no device lambda here)
  void init_structure(const ClusterTree& tree, const CompressionOptions& opts);
  /// One pass of the construction with the s test vectors in Om, samples in
  /// Y (tree order (N, s)); returns false if some level's sample was too
  /// narrow for its rank (and allow_saturated is false).
  bool build_from_samples(const Matrix& Om, const Matrix& Y, bool allow_saturated);
  void compute_diag_blocks(std::vector<Batch>& F) const;

  ClusterTree tree_;
  CompressionOptions opts_;
  BuildInfo info_;
  std::vector<Batch> D_, U_;  // index = level; U_[0] empty
  std::vector<std::vector<int>> ranks_;
  std::vector<std::vector<char>> capped_;  // per level and node: max_rank stopped it short of tol
  Kokkos::View<int*, mem_space> perm_d_, iperm_d_;
  // construction only: the truncation threshold is trunc_scale_ * tol
  // (see from_operator; lowered when a pass misses tol)
  double trunc_scale_ = 0.1;
};

namespace detail {

/// Batch (nodes, rows, cols) viewed on a contiguous buffer (no ownership:
/// the caller keeps the buffer alive).
template <class Batch, class Buf>
Batch reshape(const Buf& buf, long nodes, long rows, long cols) {
  return Batch(buf.data(), nodes, rows, cols);
}

/// Y += alpha X (same shape).
template <class Exec, class M>
void axpy(const Exec& space, typename M::non_const_value_type alpha, const M& X, const M& Y) {
  const int N = Y.extent(0), r = Y.extent(1);
  Kokkos::parallel_for(
      "hfisher::HSS::axpy", Kokkos::RangePolicy<Exec>(space, 0, N), KOKKOS_LAMBDA(const int p) {
        for (int c = 0; c < r; ++c) Y(p, c) += alpha * X(p, c);
      });
}

}  // namespace detail

// ============================================================ implementation

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::init_structure(const ClusterTree& tree, const CompressionOptions& opts) {
  tree_ = tree;
  opts_ = opts;
  const int L = tree.levels();
  detail::device_permutations(tree, perm_d_, iperm_d_);
  D_.assign(L + 1, Batch());
  U_.assign(L + 1, Batch());
  ranks_.assign(L + 1, {});
  capped_.assign(L + 1, {});
}

template <class Scalar, class ExecSpace>
bool HSS<Scalar, ExecSpace>::build_from_samples(const Matrix& Om, const Matrix& Y, bool allow_saturated) {
  using detail::cols;
  using detail::rows;
  ExecSpace space;
  const int N = tree_.padded_size(), L = tree_.levels(), s = Om.extent(1);
  const int p_over = opts_.oversampling;
  // |A|_F estimate: E |A w|^2 = |A|_F^2 for a Gaussian w
  double ref = 0;
  {
    Scalar ss = 0;
    Kokkos::parallel_reduce("hfisher::HSS::ynorm", Kokkos::RangePolicy<ExecSpace>(space, 0, N),
                            detail::RowSquaresSum<Matrix>{Y, s}, ss);
    ref = std::sqrt(double(ss) / s);
  }
  // level-L test and sample rows: (2^L, leaf, s) views on the (N, s) blocks
  Batch OmL(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Om"), N / tree_.leaf_size(),
            tree_.leaf_size(), s);
  Batch YL(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Y"), N / tree_.leaf_size(), tree_.leaf_size(),
           s);
  Kokkos::deep_copy(OmL, detail::reshape<Batch>(Om, N / tree_.leaf_size(), tree_.leaf_size(), s));
  Kokkos::deep_copy(YL, detail::reshape<Batch>(Y, N / tree_.leaf_size(), tree_.leaf_size(), s));
  Batch Oml = OmL, Yl = YL;
  bool saturated = false;
  for (int l = L; l >= 0; --l) {
    const int nodes = 1 << l, m = Oml.extent(1);
    if (s < m) return false;  // not even the pseudo-inverse exists
    // QR of Omega_t^T (s x m): Q = [Q1 P] with Q1 (s x m) spanning
    // range(Omega_t^T) and P (s x (s - m)) null(Omega_t)
    Batch OmT(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::OmT"), nodes, s, m);
    Kokkos::parallel_for("hfisher::HSS::transpose", Kokkos::RangePolicy<ExecSpace>(space, 0, nodes),
                         detail::NodeTranspose<Batch>{Oml, OmT, m, s});
    BatchVector<Scalar, ExecSpace> tau("hfisher::HSS::tau", nodes, m);
    kernels::qr(space, OmT, tau);
    // The off-diagonal sample (the block row A(I_t, I_t^c) alone) is Y_t P,
    // m x (s - m), or Y_t (I - Q1 Q1^T) = (Y_t P) P^T, m x s, with the same
    // left singular vectors and values. The first needs the full s x s Q
    // (O(m s^2) per node), the second only Q1 (O(m^2 s)) but gives the
    // pivoted QR below s columns instead of s - m: it is used where s >= 2 m
    // (many test vectors against small nodes, as for a Fisher's leaves).
    const bool project = s >= 2 * m;
    Batch Qf(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Q"), nodes, s, project ? m : s);
    kernels::qr_form_q(space, OmT, tau, Qf);
    // Dl = Y_t Q1 (m x m): the start of D below
    Batch Dl(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::D"), nodes, m, m);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), Yl, cols(Qf, 0, m), Scalar(0), Dl);
    const int a = s - m;  // rank of the off-diagonal sample
    int k = 0;
    Batch Ub;
    if (l > 0) {
      if (a < 1) return false;
      const int w = project ? s : a;
      Batch Z(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Z"), nodes, m, w);
      if (project) {
        Kokkos::deep_copy(space, Z, Yl);
        kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(-1), Dl, cols(Qf, 0, m), Scalar(1), Z);
      } else {
        kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), Yl, cols(Qf, m, a), Scalar(0), Z);
      }
      // relative to the level's largest sampled block (as HODLR's per-block
      // tolerance), with a floor at rounding level of |A|
      const double floor = 100 * double(math::limits<Scalar>::eps()) * ref * std::sqrt(double(a));
      // The leading singular triplets of Z, without a full SVD of Z (m x a):
      // a column-pivoted QR, Z P = Q R, then the SVD of R's leading rows
      // only. Rows are kept until the rest of R has Frobenius norm <= a
      // tenth of the lowest threshold this level can have (its largest
      // column norm |R_00| <= the largest singular value), so the dropped
      // rows move no singular value by more than that.
      const int q0 = std::min(m, w);
      BatchVector<Scalar, ExecSpace> tz("hfisher::HSS::tau_Z", nodes, q0);
      Kokkos::View<int**, Kokkos::LayoutRight, mem_space> pz("hfisher::HSS::perm_Z", nodes, w);
      Kokkos::View<int*, mem_space> rz("hfisher::HSS::rank_Z", nodes);
      kernels::cpqr(space, Z, tz, pz, rz, 0.5);
      Kokkos::View<double**, mem_space> tail("hfisher::HSS::tail", nodes, q0 + 1);  // |R(i:, :)|_F^2; 0 at q0
      Kokkos::parallel_for("hfisher::HSS::r_tail", Kokkos::RangePolicy<ExecSpace>(space, 0, nodes),
                           detail::TrailingRowNorms<Batch, decltype(tail)>{Z, tail, q0, w});
      auto tailh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), tail);
      auto Zh00 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), Kokkos::subview(Z, Kokkos::ALL(), 0, 0));
      double r00 = 0;
      for (int b = 0; b < nodes; ++b) r00 = std::max(r00, std::abs(double(Zh00(b))));
      const double keep_thr = 0.1 * std::max(trunc_scale_ * opts_.tol * r00, floor);
      Kokkos::View<int*, mem_space> rk("hfisher::HSS::rows_kept", nodes);
      auto rkh = Kokkos::create_mirror_view(rk);
      int q = 1;
      for (int b = 0; b < nodes; ++b) {
        int r = 0;
        while (r < q0 && std::sqrt(tailh(b, r)) > keep_thr) ++r;
        rkh(b) = r;
        q = std::max(q, r);
      }
      Kokkos::deep_copy(rk, rkh);
      Batch Rt(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::R_Z"), nodes, q, w);
      Kokkos::parallel_for("hfisher::HSS::r_rows", Kokkos::RangePolicy<ExecSpace>(space, 0, nodes),
                           detail::KeptUpperRows<Batch, decltype(rk)>{Z, Rt, rk, q, w});
      Batch Ur("hfisher::HSS::Ur", nodes, q, q), Vs("hfisher::HSS::Vs", nodes, w, q);
      BatchVector<Scalar, ExecSpace> S("hfisher::HSS::S", nodes, q);
      kernels::svd(space, Rt, Ur, S, Vs);
      Batch Qz(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Q_Z"), nodes, m, q);
      kernels::qr_form_q(space, Z, tz, Qz);
      Batch Us(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Us"), nodes, m, q);
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), Qz, Ur, Scalar(0), Us);
      auto Sh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), S);
      double smax = 0;
      for (int b = 0; b < nodes; ++b) smax = std::max(smax, double(Sh(b, 0)));
      // thr: this pass's threshold; the cap is judged at the nominal one
      // (a lowered threshold only tightens a matrix that met tol per block)
      const double thr = std::max(trunc_scale_ * opts_.tol * smax, floor);
      const double thr_nominal = std::max(opts_.tol * smax, floor);
      std::vector<int> r(nodes, 0), r_nominal(nodes, 0);
      int rmax = 0;
      for (int b = 0; b < nodes; ++b) {
        while (r[b]<q&& double(Sh(b, r[b]))> thr) ++r[b];
        while (r_nominal[b]<q&& double(Sh(b, r_nominal[b]))> thr_nominal) ++r_nominal[b];
        rmax = std::max(rmax, r[b]);
      }
      const int cap = opts_.rank_cap(m);
      k = std::max(1, std::min(rmax, cap));
      const bool sat = k < m && k + p_over > a;
      if (sat && !allow_saturated) return false;
      saturated = saturated || sat;
      k = std::min(k, q);
      // U: the k leading singular vectors; columns of (numerically) zero
      // singular values are replaced by Gaussian vectors, and a QR makes the
      // whole set orthonormal (its leading columns are unchanged).
      Batch W(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::W"), nodes, m, k);
      {
        const std::uint64_t seed = opts_.seed * 31u + std::uint64_t(l) * 977u + 5u;
        Kokkos::parallel_for("hfisher::HSS::basis", Kokkos::RangePolicy<ExecSpace>(space, 0, nodes),
                             detail::BasisOrRandom<Batch, decltype(S)>{Us, W, S, m, k, seed});
      }
      Ub = Batch(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::U"), nodes, m, k);
      Batch R(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::R"), nodes, k, k);
      kernels::qr_thin(space, W, Ub, R);
      U_[l] = Ub;
      capped_[l].assign(nodes, 0);
      for (int b = 0; b < nodes; ++b) capped_[l][b] = r_nominal[b] > cap;  // more singular values above tol than kept
      for (auto& rb : r) rb = std::min(rb, k);                             // the ranks kept
      ranks_[l] = r;
    }
    // D: X' = Y_t Q1 R^-T = Y_t Omega_t^+ (Dl holds Y_t Q1), X = (I - U U^T) X',
    // D = X + U (X U)^T
    kernels::detail::trsm_nocheck(space, Side::Right, Uplo::Upper, Op::Trans, Diag::NonUnit, Scalar(1), rows(OmT, 0, m),
                                  Dl);
    if (l > 0) {
      Batch C(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::C"), nodes, k, m);
      kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), Ub, Dl, Scalar(0), C);
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(-1), Ub, C, Scalar(1), Dl);
      Batch C2(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::C2"), nodes, m, k);
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), Dl, Ub, Scalar(0), C2);
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), Ub, C2, Scalar(1), Dl);
    }
    detail::symmetrize(space, Dl);
    D_[l] = Dl;
    if (l == 0) break;
    // reduced rows for the parents: U^T Omega_t and U^T (Y_t - D Omega_t),
    // stored (nodes, k, s) = (nodes / 2, 2k, s)
    Batch Omn(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Om"), nodes / 2, 2 * k, s);
    Batch Yn(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Y"), nodes / 2, 2 * k, s);
    auto Omk = detail::reshape<Batch>(Omn, nodes, k, s);
    auto Ynk = detail::reshape<Batch>(Yn, nodes, k, s);
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), Ub, Oml, Scalar(0), Omk);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(-1), Dl, Oml, Scalar(1), Yl);
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), Ub, Yl, Scalar(0), Ynk);
    Oml = Omn;
    Yl = Yn;
  }
  info_.saturated = saturated;
  return true;
}

template <class Scalar, class ExecSpace>
HSS<Scalar, ExecSpace> HSS<Scalar, ExecSpace>::from_operator(const Operator& op, int n, const ClusterTree& tree,
                                                             const CompressionOptions& opts, int rank_bound) try {
  constexpr const char* where = "hfisher::HSS::from_matvec";
  opts.validate(where);
  detail::require(bool(op), where, "the operator is empty");
  detail::require(n == tree.size(), where, "n = ", n, " but the tree has n = ", tree.size());
  detail::require(opts.oversampling >= 1, where, "CompressionOptions.oversampling must be >= 1, got ",
                  opts.oversampling);
  detail::require(opts.probes >= 1, where, "CompressionOptions.probes must be >= 1, got ", opts.probes);
  const int N = tree.padded_size(), leaf = tree.leaf_size(), L = tree.levels();
  const int p = opts.oversampling;
  // enough for every level at the rank cap (without a cap, at the largest
  // rank a node of N/2 rows can have); at least the leaf block itself. The
  // buffers grow with the sample, so a bound that is never reached costs nothing.
  const int kcap_leaf = opts.rank_cap(leaf);
  int s_need = L == 0 ? leaf : std::max(leaf + kcap_leaf, 3 * opts.rank_cap(std::max(1, N / 2))) + p;
  const int min_products = (L == 0 ? leaf : leaf + 1 + p) + opts.probes;
  int s_max = s_need;
  if (opts.max_products > 0) {
    detail::require(opts.max_products >= min_products, where, "CompressionOptions.max_products = ", opts.max_products,
                    " is too small: a tree with leaves of ", leaf, " needs at least ", min_products,
                    " products (leaf + 1 + oversampling + probes)");
    s_max = std::min(s_need, opts.max_products - opts.probes);
  }
  int s = L == 0 ? leaf : std::min(s_max, leaf + std::min(kcap_leaf, 16) + p);
  if (rank_bound > 0 && L > 0) {
    const int kb = opts.rank_cap(rank_bound);
    s = std::min(s_max, std::max(leaf + std::min(kb, leaf), 3 * kb) + p);
  }
  s = std::max(s, L == 0 ? leaf : 3 + 2 * p);
  s = std::min(s, s_max);
  ExecSpace space;
  HSS H;
  H.init_structure(tree, opts);
  Matrix Om, Y;  // (N, capacity >= s); the test vectors are counter-based
  int done = 0;  // columns already multiplied
  detail::TreeOperator<Scalar, ExecSpace> top{op, n, H.perm_d_, H.iperm_d_, where};
  auto grow = [&](int want) {
    if (want <= int(Om.extent(1))) return;
    const int c = std::min(s_max, std::max(want, int(Om.extent(1)) * 3 / 2));
    Matrix Om2(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Omega"), N, c);
    Matrix Y2("hfisher::HSS::Y", N, c);
    detail::gaussian_columns(space, Om2, 0, c, opts.seed);
    if (done > 0)
      Kokkos::deep_copy(space, Kokkos::subview(Y2, Kokkos::ALL(), Kokkos::make_pair(0, done)),
                        Kokkos::subview(Y, Kokkos::ALL(), Kokkos::make_pair(0, done)));
    Om = Om2;
    Y = Y2;
  };
  int rebuilds = 0;
  // one pass over the current samples, drawing more until every level's
  // sample is wide enough (or the budget is spent)
  auto build = [&]() {
    for (;;) {
      grow(s);
      top.multiply(Om, Y, done, s);
      done = std::max(done, s);
      auto Oms = Kokkos::subview(Om, Kokkos::ALL(), Kokkos::make_pair(0, s));
      auto Ys = Kokkos::subview(Y, Kokkos::ALL(), Kokkos::make_pair(0, s));
      Matrix Omc(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Omc"), N, s);
      Matrix Yc(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Yc"), N, s);
      Kokkos::deep_copy(Omc, Oms);
      Kokkos::deep_copy(Yc, Ys);
      const bool last = s >= s_max;
      if (H.build_from_samples(Omc, Yc, last)) {
        for (int l = L; l >= 1; --l) detail::check_capped(opts, where, l, H.capped_[l]);
        return;
      }
      detail::require(!last, where, "CompressionOptions.max_products = ", opts.max_products,
                      " leaves too few test vectors (", s, ") for the ranks of this matrix; raise it or max_rank");
      ++rebuilds;
      s = std::min(s_max, s + std::max(16, s / 2));
    }
  };
  // The first pass truncates at tol / 10 (trunc_scale_'s initial value):
  // the errors of all nodes and levels add up, and at the per-block
  // threshold itself the whole-matrix estimate of a 2-D Gaussian kernel
  // matrix landed about 5x above tol, which would cost a second pass every
  // time.
  build();
  // a-posteriori estimate from fresh probes (zero on the padded rows), made
  // once; a pass that misses tol lowers the threshold and rebuilds
  const int q = opts.probes;
  const auto probes = top.probes(N, q, opts.seed);
  auto estimate = [&]() { return probes.error([&H](const Matrix& X, const Matrix& Y) { H.apply_tree(X, Y); }); };
  double est = estimate();
  for (int pass = 0; pass < 3 && est > opts.tol; ++pass) {
    const auto before = H.ranks_;
    const int s_before = s;
    H.trunc_scale_ *= std::max(1e-3, 0.5 * opts.tol / est);
    build();
    ++rebuilds;
    est = estimate();
    if (H.ranks_ == before && s == s_before) break;  // the samples resolve nothing more
  }
  H.info_.samples = done;
  H.info_.probes = q;
  H.info_.products = top.products;
  H.info_.rebuilds = rebuilds;
  H.info_.error_estimate = est;
  return H;
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HSS::from_operator");
}

template <class Scalar, class ExecSpace>
template <class AView>
HSS<Scalar, ExecSpace> HSS<Scalar, ExecSpace>::from_dense(const AView& A, const ClusterTree& tree,
                                                          const CompressionOptions& opts) try {
  constexpr const char* where = "hfisher::HSS::from_dense";
  static_assert(AView::rank == 2, "HSS::from_dense: A must be a rank-2 view (n, n)");
  opts.validate(where);
  detail::require(A.extent(0) == A.extent(1), where, "A must be square, got ", A.extent(0), "x", A.extent(1));
  detail::require(long(A.extent(0)) == tree.size(), where, "A is ", A.extent(0), "x", A.extent(1),
                  " but the tree has n = ", tree.size());
  ExecSpace space;
  const int n = tree.size();
  detail::check_finite_matrix(space, A, where, "A");
  detail::check_symmetric<Scalar>(space, A, where);
  Kokkos::View<Scalar**, Kokkos::LayoutRight, mem_space> Ac(Kokkos::view_alloc(Kokkos::WithoutInitializing, "A"), n, n);
  Kokkos::deep_copy(Ac, A);
  Operator op = [Ac](const Matrix& X, Matrix& Y) {
    using A3 = Kokkos::View<Scalar***, Kokkos::LayoutRight, mem_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    A3 a(Ac.data(), 1, Ac.extent(0), Ac.extent(1)), x(X.data(), 1, X.extent(0), X.extent(1)),
        y(Y.data(), 1, Y.extent(0), Y.extent(1));
    kernels::detail::gemm_nocheck(ExecSpace(), Op::NoTrans, Op::NoTrans, Scalar(1), a, x, Scalar(0), y);
  };
  return from_operator(op, n, tree, opts);
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HSS::from_dense");
}

template <class Scalar, class ExecSpace>
template <class DView, class GView>
HSS<Scalar, ExecSpace> HSS<Scalar, ExecSpace>::from_factors(const DView& d, const GView& G, const ClusterTree& tree,
                                                            const CompressionOptions& opts) try {
  constexpr const char* where = "hfisher::HSS::from_factors";
  static_assert(DView::rank == 1 && GView::rank == 2, "HSS::from_factors: d must be (n), G (n, m)");
  opts.validate(where);
  const int n = tree.size();
  detail::require(long(d.extent(0)) == n, where, "d has length ", d.extent(0), " but the tree has n = ", n);
  detail::require(long(G.extent(0)) == n, where, "G has ", G.extent(0), " rows but the tree has n = ", n);
  const int mc = G.extent(1);
  detail::require(mc >= 1, where, "G needs at least one column");
  ExecSpace space;
  Matrix Gc(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::G"), n, mc);
  Vector dc(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::d"), n);
  Kokkos::parallel_for(
      "hfisher::HSS::copy_factors", Kokkos::RangePolicy<ExecSpace>(space, 0, n), KOKKOS_LAMBDA(const int i) {
        dc(i) = Scalar(d(i));
        for (int c = 0; c < mc; ++c) Gc(i, c) = Scalar(G(i, c));
      });
  detail::check_finite_matrix(space, Gc, where, "G");
  {
    Matrix d2(dc.data(), n, 1);
    detail::check_finite_matrix(space, d2, where, "d");
  }
  Operator op = [dc, Gc](const Matrix& X, Matrix& Y) { detail::factors_product<ExecSpace>(dc, Gc, X, Y); };
  return from_operator(op, n, tree, opts, mc);
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HSS::from_factors");
}

template <class Scalar, class ExecSpace>
template <class EntryFn>
HSS<Scalar, ExecSpace> HSS<Scalar, ExecSpace>::from_entries(const EntryFn& fn, const ClusterTree& tree,
                                                            const CompressionOptions& opts) try {
  constexpr const char* where = "hfisher::HSS::from_entries";
  opts.validate(where);
  detail::require(opts.probes >= 1, where, "CompressionOptions.probes must be >= 1, got ", opts.probes);
  // the HODLR matrix's error adds to the HSS matrix's: a tenth of the budget
  // for the first, nine tenths for the second (tol below 1e-15 would ask the
  // HODLR construction for rounding-level accuracy; it is clamped there)
  CompressionOptions ho = opts;
  ho.tol = std::max(opts.tol / 10, 1e-15);
  ho.max_products = 0;
  const auto A = [&] {
    try {
      return HODLR<Scalar, ExecSpace>::from_entries(fn, tree, ho);
    } catch (const NonFiniteError& e) {  // say whose construction it was, keeping the type
      throw NonFiniteError(detail::concat(where, ": building its HODLR operator from entries: ", e.what()));
    } catch (const Error& e) {
      throw Error(detail::concat(where, ": building its HODLR operator from entries: ", e.what()));
    }
  }();
  const BuildInfo hinfo = A.build_info();
  Operator op = [&A](const Matrix& X, Matrix& Y) { A.apply(X, Y); };
  CompressionOptions so = opts;
  so.tol = opts.tol * 0.9;
  HSS H = from_operator(op, tree.size(), tree, so);
  H.opts_.tol = opts.tol;
  H.info_.entries = hinfo.entries;
  H.info_.error_estimate += hinfo.error_estimate;
  return H;
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HSS::from_entries");
}

template <class Scalar, class ExecSpace>
typename HSS<Scalar, ExecSpace>::Matrix HSS<Scalar, ExecSpace>::to_tree(const Matrix& X) const {
  return detail::to_tree<ExecSpace>(X, perm_d_, tree_.size(), "hfisher::HSS");
}

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::from_tree(const Matrix& Xp, const Matrix& Y) const {
  detail::from_tree<ExecSpace>(Xp, Y, iperm_d_, "hfisher::HSS");
}

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::apply_tree(const Matrix& Xp, const Matrix& Yp) const {
  ExecSpace space;
  const int L = tree_.levels(), r = Xp.extent(1);
  // up: x_(l-1) = U_l^T x_l; y_l = D_l x_l
  std::vector<Matrix> xs(L + 1), ys(L + 1);
  xs[L] = Xp;
  ys[L] = Yp;
  for (int l = L; l >= 0; --l) {
    const int nodes = 1 << l, m = D_[l].extent(1);
    if (l < L) {
      ys[l] = Matrix("hfisher::HSS::y", nodes * m, r);
    }
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), D_[l],
                                  detail::reshape<Batch>(xs[l], nodes, m, r), Scalar(0),
                                  detail::reshape<Batch>(ys[l], nodes, m, r));
    if (l == 0) break;
    const int k = U_[l].extent(2);
    xs[l - 1] = Matrix(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::x"), nodes * k, r);
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), U_[l],
                                  detail::reshape<Batch>(xs[l], nodes, m, r), Scalar(0),
                                  detail::reshape<Batch>(xs[l - 1], nodes, k, r));
  }
  // down: y_l += U_l y_(l-1)
  for (int l = 1; l <= L; ++l) {
    const int nodes = 1 << l, m = D_[l].extent(1), k = U_[l].extent(2);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), U_[l],
                                  detail::reshape<Batch>(ys[l - 1], nodes, k, r), Scalar(1),
                                  detail::reshape<Batch>(ys[l], nodes, m, r));
  }
}

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::apply(const Matrix& X, const Matrix& Y) const {
  constexpr const char* where = "hfisher::HSS::apply";
  detail::require(!D_.empty() && D_[0].extent(0) > 0, where, "the matrix is empty (not built)");
  detail::require(X.extent(1) == Y.extent(1), where, "X has ", X.extent(1), " columns, Y has ", Y.extent(1));
  detail::check_finite_matrix(ExecSpace(), X, where, "X");
  Matrix Xp = to_tree(X);
  Matrix Yp("hfisher::HSS::Yp", tree_.padded_size(), X.extent(1));
  apply_tree(Xp, Yp);
  from_tree(Yp, Y);
}

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::compute_diag_blocks(std::vector<Batch>& F) const {
  // F_l = D_l + U_l (diagonal k x k block of F_(l-1) for this child) U_l^T
  ExecSpace space;
  const int L = tree_.levels();
  F.assign(L + 1, Batch());
  F[0] = D_[0];
  for (int l = 1; l <= L; ++l) {
    const int nodes = 1 << l, m = D_[l].extent(1), k = U_[l].extent(2);
    Batch Pk(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::Pk"), nodes, k, k);
    auto Fp = F[l - 1];
    Kokkos::parallel_for("hfisher::HSS::child_block", Kokkos::RangePolicy<ExecSpace>(space, 0, nodes),
                         detail::ChildDiagonalBlock<Batch>{Fp, Pk, k, false});
    Batch T1(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::T1"), nodes, m, k);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), U_[l], Pk, Scalar(0), T1);
    Batch Fl(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HSS::F"), nodes, m, m);
    Kokkos::deep_copy(space, Fl, D_[l]);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), T1, U_[l], Scalar(1), Fl);
    F[l] = Fl;
  }
}

template <class Scalar, class ExecSpace>
typename HSS<Scalar, ExecSpace>::Vector HSS<Scalar, ExecSpace>::diag() const {
  detail::require(!D_.empty() && D_[0].extent(0) > 0, "hfisher::HSS::diag", "the matrix is empty (not built)");
  std::vector<Batch> F;
  compute_diag_blocks(F);
  return detail::leaf_diagonal<ExecSpace, Vector>(F.back(), iperm_d_, "hfisher::HSS::diag");
}

template <class Scalar, class ExecSpace>
typename HSS<Scalar, ExecSpace>::Matrix HSS<Scalar, ExecSpace>::to_dense() const {
  return detail::dense_by_apply<ExecSpace, Matrix>(*this, tree_.size(), "hfisher::HSS::to_dense");
}

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::add_diagonal(Scalar lambda) {
  detail::require(math::isfinite(lambda), "hfisher::HSS::add_diagonal", "lambda is not finite");
  detail::require(!D_.empty() && D_[0].extent(0) > 0, "hfisher::HSS::add_diagonal", "the matrix is empty (not built)");
  const int N = tree_.padded_size(), leaf = tree_.leaf_size();
  auto perm = perm_d_;
  auto D = D_.back();
  Kokkos::parallel_for(
      "hfisher::HSS::add_diagonal", Kokkos::RangePolicy<ExecSpace>(0, N), KOKKOS_LAMBDA(const int p) {
        if (perm(p) >= 0) D(p / leaf, p % leaf, p % leaf) += lambda;
      });
}

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::scale(Scalar alpha) {
  detail::require(math::isfinite(alpha), "hfisher::HSS::scale", "alpha is not finite");
  ExecSpace space;
  const int N = tree_.padded_size(), leaf = tree_.leaf_size();
  for (auto& D : D_) {
    auto d = D;
    Kokkos::parallel_for(
        "hfisher::HSS::scale", Kokkos::RangePolicy<ExecSpace>(space, 0, long(d.span())),
        KOKKOS_LAMBDA(const long i) { d.data()[i] *= alpha; });
  }
  // padded positions stay identity rows
  auto perm = perm_d_;
  auto DL = D_.back();
  Kokkos::parallel_for(
      "hfisher::HSS::scale_padding", Kokkos::RangePolicy<ExecSpace>(space, 0, N), KOKKOS_LAMBDA(const int p) {
        if (perm(p) < 0) DL(p / leaf, p % leaf, p % leaf) += Scalar(1) - alpha;
      });
}

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::add(const HSS& B, Scalar alpha) {
  constexpr const char* where = "hfisher::HSS::add";
  detail::require(!D_.empty() && !B.D_.empty() && D_[0].extent(0) > 0 && B.D_[0].extent(0) > 0, where,
                  "an operand is empty (not built)");
  detail::require(math::isfinite(alpha), where, "alpha is not finite");
  detail::require(tree_ == B.tree_, where, "the operands have different cluster trees (n ", tree_.size(), " vs ",
                  B.tree_.size(), ", leaf ", tree_.leaf_size(), " vs ", B.tree_.leaf_size(), ", levels ",
                  tree_.levels(), " vs ", B.tree_.levels(), ", or a different permutation)");
  const HSS A = *this;
  Operator op = [A, B, alpha](const Matrix& X, Matrix& Y) {
    ExecSpace space;
    Matrix Xp = A.to_tree(X);
    Matrix Ya("hfisher::HSS::Ya", Xp.extent(0), Xp.extent(1)), Yb("hfisher::HSS::Yb", Xp.extent(0), Xp.extent(1));
    A.apply_tree(Xp, Ya);
    B.apply_tree(Xp, Yb);
    detail::axpy(space, alpha, Yb, Ya);
    A.from_tree(Ya, Y);
  };
  *this = from_operator(op, tree_.size(), tree_, opts_);
  // padded rows: A and B each hold identity there, so the sum holds 1 + alpha;
  // reset them to decoupled identity rows
  const int N = tree_.padded_size(), leaf = tree_.leaf_size();
  auto perm = perm_d_;
  auto DL = D_.back();
  const Scalar fix = -alpha;
  Kokkos::parallel_for(
      "hfisher::HSS::add_padding", Kokkos::RangePolicy<ExecSpace>(0, N), KOKKOS_LAMBDA(const int p) {
        if (perm(p) < 0) DL(p / leaf, p % leaf, p % leaf) += fix;
      });
}

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::recompress(double tol) {
  detail::check_tol(tol, "hfisher::HSS::recompress");
  detail::require(!D_.empty() && D_[0].extent(0) > 0, "hfisher::HSS::recompress", "the matrix is empty (not built)");
  const HSS A = *this;
  CompressionOptions o = opts_;
  o.tol = tol;
  Operator op = [A](const Matrix& X, Matrix& Y) { A.apply(X, Y); };
  *this = from_operator(op, tree_.size(), tree_, o);
}

template <class Scalar, class ExecSpace>
HSS<Scalar, ExecSpace> HSS<Scalar, ExecSpace>::clone() const {
  HSS c = *this;
  auto deep = [](const Batch& b) {
    Batch o(Kokkos::view_alloc(Kokkos::WithoutInitializing, b.label()), b.extent(0), b.extent(1), b.extent(2));
    Kokkos::deep_copy(o, b);
    return o;
  };
  for (std::size_t l = 0; l < D_.size(); ++l) {
    c.D_[l] = deep(D_[l]);
    if (l > 0) c.U_[l] = deep(U_[l]);
  }
  return c;
}

template <class Scalar, class ExecSpace>
std::size_t HSS<Scalar, ExecSpace>::bytes() const {
  std::size_t b = perm_d_.size() * sizeof(int) + iperm_d_.size() * sizeof(int);
  for (std::size_t l = 0; l < D_.size(); ++l) b += (D_[l].size() + U_[l].size()) * sizeof(Scalar);
  return b;
}

template <class Scalar, class ExecSpace>
std::vector<RankStats> HSS<Scalar, ExecSpace>::ranks() const {
  std::vector<RankStats> out;
  for (std::size_t l = 1; l < ranks_.size(); ++l)
    out.push_back(detail::rank_stats(int(l), ranks_[l], U_[l].extent(2), capped_[l]));
  return out;
}

namespace detail {
constexpr char magic[8] = {'H', 'F', 'H', 'S', 'S', '\0', '\0', '\0'};
// version 2: options as a versioned record (io::put_options), capped flags
// as bytes beside the ranks (io::put_ranks); version 1 packed the flags into
// bit 29 of max_rank and bit 30 of a node rank and still loads.
constexpr std::uint32_t version = 2;
}  // namespace detail

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::write(std::ostream& o) const {
  using io::put;
  detail::require(!D_.empty() && D_[0].extent(0) > 0, "hfisher::HSS::save", "the matrix is empty (not built)");
  io::put_header(o, detail::magic, detail::version, sizeof(Scalar));
  put(o, std::int32_t(tree_.size()));
  put(o, std::int32_t(tree_.leaf_size()));
  put(o, std::int32_t(tree_.levels()));
  io::put_options(o, opts_);
  for (int p : tree_.perm()) put(o, std::int32_t(p));
  for (int l = tree_.levels(); l >= 1; --l) {
    put(o, std::int32_t(U_[l].extent(2)));
    io::put_ranks(o, ranks_[l], capped_[l]);
  }
  for (std::size_t l = 0; l < D_.size(); ++l) {
    io::put_view(o, D_[l]);
    if (l > 0) io::put_view(o, U_[l]);
  }
  o.write(detail::magic, 8);
}

template <class Scalar, class ExecSpace>
void HSS<Scalar, ExecSpace>::save(const std::string& path) const {
  detail::require(!D_.empty() && D_[0].extent(0) > 0, "hfisher::HSS::save", "the matrix is empty (not built)");
  io::atomic_write_sealed(path, "hfisher::HSS::save", [&](std::ostream& o) { write(o); });
}

template <class Scalar, class ExecSpace>
HSS<Scalar, ExecSpace> HSS<Scalar, ExecSpace>::read(std::istream& i, const std::string& path) {
  constexpr const char* where = "hfisher::HSS::load";
  auto get32 = [&]() { return io::get<std::int32_t>(i, path, where); };
  const auto version = io::expect_header_versions(i, detail::magic, 1, detail::version, sizeof(Scalar), path, where,
                                                  "an hfisher HSS file");
  const int n = get32(), leaf = get32(), L = get32();
  detail::require(n >= 1 && leaf >= 1 && L >= 0 && L <= 24 && (long(leaf) << L) >= n && (long(leaf) << L) < (1L << 31),
                  where, path, ": corrupt header (n = ", n, ", leaf = ", leaf, ", levels = ", L, ")");
  // every header field read back is checked; sizes against the bytes the
  // file holds before anything of that size is allocated (max_rank 0: no cap)
  CompressionOptions opts;
  if (version >= 2) {
    opts = io::get_options(i, path, where);
  } else {  // version 1: tol, then max_rank with allow_capped in bit 29
    opts.tol = io::get<double>(i, path, where);
    opts.max_rank = get32();
    opts.allow_capped = (opts.max_rank & (1 << 29)) != 0;
    opts.max_rank &= ~(1 << 29);
    detail::require(opts.tol > 0 && opts.tol < 1 && opts.max_rank >= 0, where, path,
                    ": corrupt options (tol = ", opts.tol, ", max_rank = ", opts.max_rank, ")");
  }
  const int N = leaf << L;
  io::require_available(i, 4ULL * N, path, where);
  std::vector<int> perm(N);
  for (int p = 0; p < N; ++p) perm[p] = get32();
  HSS H;
  H.init_structure(ClusterTree::from_permutation(n, leaf, L, perm), opts);
  std::vector<int> m(L + 1), k(L + 1, 0);
  m[L] = leaf;
  for (int l = L; l >= 1; --l) {
    k[l] = get32();
    detail::require(k[l] >= 1 && k[l] <= m[l], where, path, ": corrupt rank ", k[l], " at level ", l,
                    " (the level's blocks have ", m[l], " rows)");
    io::get_ranks(i, version, 1 << l, m[l], H.ranks_[l], H.capped_[l], path, where, l);
    m[l - 1] = 2 * k[l];
  }
  unsigned long long payload = 0;
  for (int l = 0; l <= L; ++l)
    payload += (1ULL << l) * (1ULL * m[l] * m[l] + (l > 0 ? 1ULL * m[l] * k[l] : 0ULL)) * sizeof(Scalar);
  io::require_available(i, payload, path, where);
  for (int l = 0; l <= L; ++l) {
    H.D_[l] = Batch("hfisher::HSS::D", 1 << l, m[l], m[l]);
    io::get_view(i, H.D_[l], path, where);
    if (l > 0) {
      H.U_[l] = Batch("hfisher::HSS::U", 1 << l, m[l], k[l]);
      io::get_view(i, H.U_[l], path, where);
    }
  }
  char tail[8] = {};
  i.read(tail, 8);
  detail::require(bool(i) && std::equal(tail, tail + 8, detail::magic), where, path, ": file is truncated");
  return H;
}

template <class Scalar, class ExecSpace>
HSS<Scalar, ExecSpace> HSS<Scalar, ExecSpace>::load(const std::string& path) {
  io::SealedFile f(path, "hfisher::HSS::load");  // checksum verified first
  auto H = read(f.stream(), path);
  f.expect_end();
  return H;
}

}  // namespace hfisher

#include <hfisher/hmatrix/hss_factor.hpp>
