#pragma once
/// \file hodlr.hpp
/// \brief hfisher::HODLR: symmetric hierarchically off-diagonal low-rank
/// matrices, stored per tree level (one View per level, batch dimension
/// first), built, applied and factored with one batched launch per level.
///
/// Storage for a tree with L levels, N = leaf * 2^L tree positions:
///  - D: (2^L, leaf, leaf), the dense diagonal leaf blocks;
///  - for each level l = 1..L and each pair of sibling nodes (2p, 2p+1):
///    A(I_2p, I_2p+1) = U_l[p] V_l[p]^T with U_l, V_l: (2^(l-1), N/2^l, k_l),
///    k_l the level's padded rank (zero columns beyond each block's rank);
///    A(I_2p+1, I_2p) = V_l[p] U_l[p]^T by symmetry.
/// Padded positions are decoupled identity rows.

#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/hmatrix/cluster_tree.hpp>
#include <hfisher/hmatrix/compression.hpp>
#include <hfisher/hmatrix/aca.hpp>
#include <hfisher/hmatrix/impl/matvec.hpp>
#include <hfisher/hmatrix/impl/tree_ops.hpp>
#include <hfisher/hmatrix/impl/views.hpp>
#include <hfisher/kernels/cholesky.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/lowrank.hpp>
#include <hfisher/kernels/randomized.hpp>
#include <hfisher/kernels/syev.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace hfisher {

template <class Scalar, class ExecSpace>
class HODLRFactorization;

namespace detail {
/// Compresses the batch of blocks B (pairs, m, m) with the batched
/// randomized SVD into U = U_svd S (singular values folded in) and V.
template <class Exec, class BView, class Batch, class RankView>
void compress_rsvd(const Exec& space, const BView& B, double tol, std::uint64_t seed, const Batch& U, const Batch& V,
                   const RankView& rank) {
  using T = typename Batch::non_const_value_type;
  const int pairs = U.extent(0), m = U.extent(1), kmax = U.extent(2);
  BatchVector<T, Exec> S("hfisher::HODLR::S", pairs, kmax);
  kernels::RangeFinderOptions ro;
  ro.seed = seed;
  kernels::rsvd(space, B, tol, U, S, V, rank, ro);
  Kokkos::parallel_for(
      "hfisher::HODLR::fold_S", Kokkos::RangePolicy<Exec>(space, 0, pairs), KOKKOS_LAMBDA(const int p) {
        for (int i = 0; i < m; ++i)
          for (int c = 0; c < kmax; ++c) U(p, i, c) *= S(p, c);
      });
}

/// Capped flags of a randomized-SVD level: the range finder stops at kmax
/// columns, so a block that kept all kmax (below its exact bound) may have
/// needed more.
template <class Exec, class RankView>
Kokkos::View<int*, typename Exec::memory_space> rsvd_capped(const Exec& space, const RankView& rank, int kmax,
                                                            int bound) {
  const int pairs = rank.extent(0);
  Kokkos::View<int*, typename Exec::memory_space> c("hfisher::HODLR::capped", pairs);
  Kokkos::parallel_for(
      "hfisher::HODLR::rsvd_capped", Kokkos::RangePolicy<Exec>(space, 0, pairs),
      KOKKOS_LAMBDA(const int p) { c(p) = (rank(p) >= kmax && kmax < bound) ? 1 : 0; });
  return c;
}

/// A device flag per block (nonzero: capped) as host flags.
template <class FlagView>
std::vector<char> host_flags(const FlagView& flags) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), flags);
  std::vector<char> out(h.extent(0));
  for (std::size_t p = 0; p < out.size(); ++p) out[p] = h(p) != 0;
  return out;
}

/// SPD-preserving compensation of one level (see CompressionOptions): adds
/// delta(p) >= |E_p|_2, the norm of pair p's truncation error, to the diagonal
/// of the pair's 2m tree indices in D; then [delta I, -E; -E^T, delta I] >= 0
/// keeps the compressed matrix >= the exact one.
template <class Exec, class DView, class TailView>
void compensate_level(const Exec& space, const DView& D, const TailView& delta, int m) {
  const int pairs = delta.extent(0), leaf = D.extent(1);
  Kokkos::parallel_for(
      "hfisher::HODLR::compensate", Kokkos::RangePolicy<Exec>(space, 0, pairs), KOKKOS_LAMBDA(const int p) {
        const auto d = delta(p);
        for (int q = p * 2 * m; q < (p + 1) * 2 * m; ++q) D(q / leaf, q % leaf, q % leaf) += d;
      });
}

/// |B_p - U_p V_p^T|_F per pair (an upper bound of the 2-norm of the
/// truncation error when B was compressed by a randomized SVD).
template <class Exec, class BView, class Batch, class TailView>
void residual_fro(const Exec& space, const BView& B, const Batch& U, const Batch& V, const TailView& out) {
  using T = typename Batch::non_const_value_type;
  const int pairs = B.extent(0), m = B.extent(1), n = B.extent(2);
  Batch R(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::R"), pairs, m, n);
  Kokkos::deep_copy(space, R, B);
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, T(-1), U, V, T(1), R);
  Kokkos::parallel_for(
      "hfisher::HODLR::residual", Kokkos::RangePolicy<Exec>(space, 0, pairs), KOKKOS_LAMBDA(const int p) {
        T s = 0;
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) s += R(p, i, j) * R(p, i, j);
        out(p) = math::sqrt(s);
      });
}
}  // namespace detail

template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
class HODLR {
 public:
  using scalar_type = Scalar;
  using exec_space = ExecSpace;
  using mem_space = typename ExecSpace::memory_space;
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, mem_space>;  ///< (rows, cols)
  using Vector = Kokkos::View<Scalar*, mem_space>;
  using Batch = BatchMatrix<Scalar, ExecSpace>;

  HODLR() = default;

  /// Compresses a dense symmetric n x n matrix (View in ExecSpace's memory)
  /// level by level with the batched randomized SVD. Throws on non-square,
  /// non-symmetric (beyond 1000 eps max|A|) or non-finite input.
  template <class AView>
  static HODLR from_dense(const AView& A, const ClusterTree& tree, const CompressionOptions& opts = {});

  /// A = diag(d) + G G^T with d: (n), G: (n, m) (per-example gradients as
  /// columns), never formed as a whole: at levels whose blocks have at least
  /// 2m rows, each off-diagonal block G_I G_J^T is recompressed from thin QRs
  /// of G_I, G_J and an SVD of the small m x m core (O(b m^2) per b x b block);
  /// where m > b/2 the core would be as large as the block, so the block is
  /// formed by one batched GEMM and compressed by the batched randomized SVD
  /// (O(b^2 m)).
  template <class DView, class GView>
  static HODLR from_factors(const DView& d, const GView& G, const ClusterTree& tree,
                            const CompressionOptions& opts = {});

  /// Compresses the symmetric matrix A(i, j) = fn(i, j) (user indices; fn a
  /// copyable functor callable on ExecSpace, `Scalar operator()(int, int)
  /// const`) without forming it: leaf blocks are evaluated, each off-diagonal
  /// block is approximated by batched ACA (O(m k) entries) and recompressed to
  /// opts.tol. A non-finite entry is an error.
  template <class EntryFn>
  static HODLR from_entries(const EntryFn& fn, const ClusterTree& tree, const CompressionOptions& opts = {});

  /// op(Omega, Y) writes Y = A Omega (see MatvecOperator).
  using Operator = MatvecOperator<Scalar, ExecSpace>;

  /// Matrix-free construction by randomized peeling (Lin, Lu & Ying 2011;
  /// Martinsson 2016), coarsest level first. At level l, test vectors that
  /// are Gaussian on the right child of every sibling pair and zero on the
  /// left give, on the left children's rows and after subtracting the coarser
  /// levels already built, samples of every block A(I_2p, I_2p+1) at once:
  /// their leading singular vectors Q_p (the sample grows until it is wider
  /// than the rank by opts.oversampling); test vectors Q_p on the left
  /// children then give A(I_2p+1, I_2p) Q_p on the right, so
  /// A(I_2p, I_2p+1) ~ Q_p (A(I_2p+1, I_2p) Q_p)^T, truncated to opts.tol.
  /// Leaves: leaf more products with stacked identities. In all
  /// O(k log N) + leaf products; opts.probes more estimate the error
  /// (build_info()). Errors of the coarse levels land in the finer ones and
  /// the leaves, so the first pass truncates at opts.tol / 10; while the
  /// estimate still exceeds opts.tol, and the last pass halved it and no
  /// rank cap (opts.max_rank, or the block size) limited it, the matrix is
  /// peeled again ten times tighter, at most twice more. The most accurate
  /// pass is kept; build_info() counts every pass's products (rebuilds:
  /// passes after the first). A cap can leave the estimate above opts.tol:
  /// it is reported, not hidden.
  template <class Op>
  static HODLR from_matvec(Op&& op, int n, const ClusterTree& tree, const CompressionOptions& opts = {}) {
    Operator f = [&op](const Matrix& Omega, Matrix& Y) { op(Omega, Y); };
    return from_operator(f, n, tree, opts);
  }
  static HODLR from_operator(const Operator& op, int n, const ClusterTree& tree, const CompressionOptions& opts = {});
  /// How the construction went: the achieved-error estimate of every
  /// construction (see BuildInfo), and for from_matvec the products spent.
  const BuildInfo& build_info() const { return info_; }
  /// The same report under its former name.
  const BuildInfo& matvec_info() const { return info_; }

  int size() const { return tree_.size(); }
  const ClusterTree& tree() const { return tree_; }
  const CompressionOptions& options() const { return opts_; }

  /// Y = A X for X, Y: (n, r) in the user's index order.
  void apply(const Matrix& X, const Matrix& Y) const;
  /// Tree-order product Yp = A_part Xp ((N, r) blocks) with the off-diagonal
  /// blocks of levels 1..max_level only, plus the leaf blocks if `leaves`.
  void apply_tree(const Matrix& Xp, const Matrix& Yp, int max_level, bool leaves) const;
  /// The diagonal of A (n), user order.
  Vector diag() const;
  /// The dense n x n matrix (small n only).
  Matrix to_dense() const;
  /// A <- A + lambda I (the padded identity rows are left alone).
  void add_diagonal(Scalar lambda);
  /// *this += alpha * B on the same cluster tree (same n, leaf, levels and
  /// permutation): diagonal blocks add; each off-diagonal pair [U_A, a U_B]
  /// [V_A, V_B]^T is recompressed by a batched QR/QR/SVD to the tolerance of
  /// *this (relative to the block's largest singular value) and its rank cap,
  /// so a running sum stays O(n k) in memory. A cap that stops a block
  /// short of tol is an error (unless allow_capped) that leaves *this as it was.
  void add(const HODLR& B, Scalar alpha = Scalar(1));
  /// A deep copy (copies of an HODLR share storage, like Kokkos Views).
  HODLR clone() const;
  /// Multiplies every entry by alpha (finite).
  void scale(Scalar alpha);
  /// Re-truncates every off-diagonal block to tol (relative per block);
  /// ranks only shrink. tol must lie in (0, 1).
  void recompress(double tol);
  /// Bytes of the numerical data (leaf blocks, bases, permutation).
  std::size_t bytes() const;
  /// Per level (1..L): min, mean, max of the true block ranks and the padded rank.
  std::vector<RankStats> ranks() const;
  /// Versioned binary file; written to a temporary and renamed (nothing
  /// half-written on failure).
  void save(const std::string& path) const;
  /// Loads what save wrote; a missing, truncated or foreign file, or one of
  /// another scalar type, is an hfisher::Error.
  static HODLR load(const std::string& path);
  /// The same format on an open stream (for containers that embed HODLRs);
  /// `what` names the source in error messages.
  void write(std::ostream& o) const;
  static HODLR read(std::istream& i, const std::string& what);

  /// Factorization for solve, logdet (see HODLRFactorization).
  HODLRFactorization<Scalar, ExecSpace> factor() const;

  // level data (read-only access for factorizations and tests)
  const Batch& leaf_blocks() const { return D_; }
  const Batch& U(int level) const { return U_.at(level - 1); }
  const Batch& V(int level) const { return V_.at(level - 1); }
  const std::vector<int>& block_ranks(int level) const { return ranks_.at(level - 1); }
  Kokkos::View<int*, mem_space> perm_device() const { return perm_d_; }
  Kokkos::View<int*, mem_space> iperm_device() const { return iperm_d_; }

  /// user (n, r) -> tree order (N, r), zero on padding
  Matrix to_tree(const Matrix& X) const;
  /// tree order (N, r) -> user (n, r)
  void from_tree(const Matrix& Xp, const Matrix& Y) const;

 private:
  ClusterTree tree_;
  CompressionOptions opts_;
  BuildInfo info_;
  Batch D_;
  std::vector<Batch> U_, V_;
  std::vector<std::vector<int>> ranks_;
  std::vector<std::vector<char>> capped_;  // per level and block: max_rank stopped it short of tol
  Kokkos::View<int*, mem_space> perm_d_, iperm_d_;

  void init_structure(const ClusterTree& tree, const CompressionOptions& opts);
  // the a-posteriori estimate of BuildInfo against products with A in tree
  // order (multiply_A(P, AP)); from_entries samples entries instead
  // (detail::sampled_entry_error, a free function: nvcc allows no
  // device lambda in a private member)
  template <class MultiplyA>
  void estimate_error_products(const MultiplyA& multiply_A);
  // keeps the first k = max(1, max rank) columns of the kmax-wide U, V;
  // capped (one flag per pair, or empty): blocks the rank cap stopped short
  // of tol, an error naming the block unless opts_.allow_capped (flags are
  // OR'ed with `keep`, the level's earlier flags, when given)
  void store_level(int level, const Batch& Uw, const Batch& Vw, const Kokkos::View<int*, mem_space>& rank,
                   const char* where, std::vector<char> capped = {}, const std::vector<char>& keep = {});
  /// One peeling pass of from_operator, truncating at trunc_tol (relative,
  /// as opts.tol); caps are judged at opts.tol (an error unless
  /// opts.allow_capped). Sets limited when the rank cap stopped a block
  /// short of trunc_tol.
  static HODLR peel(const Operator& op, int n, const ClusterTree& tree, const CompressionOptions& opts,
                    double trunc_tol, bool& limited);
};

// ============================================================ implementation

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::init_structure(const ClusterTree& tree, const CompressionOptions& opts) {
  tree_ = tree;
  opts_ = opts;
  detail::device_permutations(tree, perm_d_, iperm_d_);
  U_.assign(tree.levels(), Batch());
  V_.assign(tree.levels(), Batch());
  ranks_.assign(tree.levels(), {});
  capped_.assign(tree.levels(), {});
}

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::store_level(int level, const Batch& Uw, const Batch& Vw,
                                           const Kokkos::View<int*, mem_space>& rank, const char* where,
                                           std::vector<char> cap, const std::vector<char>& keep) {
  const int pairs = Uw.extent(0), m = Uw.extent(1);
  cap.resize(pairs, 0);
  detail::check_capped(opts_, where, level, cap);
  for (std::size_t p = 0; p < keep.size() && p < cap.size(); ++p) cap[p] = cap[p] || keep[p];
  capped_[level - 1] = std::move(cap);
  auto rh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rank);
  std::vector<int> r(pairs);
  int k = 1;
  for (int p = 0; p < pairs; ++p) {
    r[p] = rh(p);
    k = std::max(k, r[p]);
  }
  Batch U(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::U"), pairs, m, k);
  Batch V(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::V"), pairs, m, k);
  Kokkos::deep_copy(U, detail::cols(Uw, 0, k));
  Kokkos::deep_copy(V, detail::cols(Vw, 0, k));
  U_[level - 1] = U;
  V_[level - 1] = V;
  ranks_[level - 1] = r;
}

template <class Scalar, class ExecSpace>
template <class AView>
HODLR<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::from_dense(const AView& A, const ClusterTree& tree,
                                                              const CompressionOptions& opts) try {
  constexpr const char* where = "hfisher::HODLR::from_dense";
  static_assert(AView::rank == 2, "HODLR::from_dense: A must be a rank-2 view (n, n)");
  opts.validate(where);
  detail::require(A.extent(0) == A.extent(1), where, "A must be square, got ", A.extent(0), "x", A.extent(1));
  detail::require(long(A.extent(0)) == tree.size(), where, "A is ", A.extent(0), "x", A.extent(1),
                  " but the tree has n = ", tree.size());
  ExecSpace space;
  const int N = tree.padded_size(), leaf = tree.leaf_size(), L = tree.levels();
  detail::check_finite_matrix(space, A, where, "A");
  // symmetry
  detail::check_symmetric<Scalar>(space, A, where);
  HODLR H;
  H.init_structure(tree, opts);
  // permuted, padded copy P (N x N)
  Matrix P(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::P"), N, N);
  auto perm = H.perm_d_;
  Kokkos::parallel_for(
      "hfisher::HODLR::permute", Kokkos::RangePolicy<ExecSpace>(space, 0, N), KOKKOS_LAMBDA(const int p) {
        const int i = perm(p);
        for (int q = 0; q < N; ++q) {
          const int j = perm(q);
          P(p, q) = (i >= 0 && j >= 0) ? Scalar(A(i, j)) : (p == q ? Scalar(1) : Scalar(0));
        }
      });
  H.D_ = Batch("hfisher::HODLR::D", N / leaf, leaf, leaf);
  Kokkos::deep_copy(H.D_, detail::diag_blocks(P, leaf));
  for (int l = 1; l <= L; ++l) {
    const int m = N >> l, pairs = 1 << (l - 1);
    const int kmax = opts.rank_cap(m);
    auto B = detail::offdiag_blocks(P, l);
    Batch Uw("hfisher::HODLR::Uw", pairs, m, kmax), Vw("hfisher::HODLR::Vw", pairs, m, kmax);
    Kokkos::View<int*, mem_space> rank("hfisher::HODLR::rank", pairs);
    detail::compress_rsvd(space, B, opts.tol, opts.seed + std::uint64_t(l) * 7919u, Uw, Vw, rank);
    H.store_level(l, Uw, Vw, rank, where, detail::host_flags(detail::rsvd_capped(space, rank, kmax, m)));
  }
  H.estimate_error_products([P](const Matrix& X, const Matrix& Y) {
    using A3 = Kokkos::View<Scalar***, Kokkos::LayoutRight, mem_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    A3 a(P.data(), 1, P.extent(0), P.extent(1)), x(X.data(), 1, X.extent(0), X.extent(1)),
        y(Y.data(), 1, Y.extent(0), Y.extent(1));
    kernels::detail::gemm_nocheck(ExecSpace(), Op::NoTrans, Op::NoTrans, Scalar(1), a, x, Scalar(0), y);
  });
  return H;
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HODLR::from_dense");
}

namespace detail {
/// sqrt(sum (a_ij - h_ij)^2 / sum a_ij^2) over s entries (i, j) of fn drawn
/// uniformly (counter-based, from seed): the BuildInfo estimate of
/// HODLR::from_entries.
template <class H, class EntryFn>
double sampled_entry_error(const H& Hm, const EntryFn& fn, int s, std::uint64_t seed0) {
  using Scalar = typename H::scalar_type;
  using ExecSpace = typename H::exec_space;
  using mem_space = typename ExecSpace::memory_space;
  constexpr const char* where = "hfisher::HODLR::from_entries";
  ExecSpace space;
  const auto& tree = Hm.tree();
  const int n = tree.size(), leaf = tree.leaf_size(), L = tree.levels(), N = tree.padded_size();
  const std::uint64_t seed = seed0 ^ 0x2545f4914f6cdd1dull;
  auto iperm = Hm.iperm_device();
  auto D = Hm.leaf_blocks();
  // entry t: user indices (i, j) uniform, its tree positions, its level (0:
  // a leaf block), a_ij and, for leaf blocks, h_ij
  Kokkos::View<double*, mem_space> a("hfisher::HODLR::sample_a", s), h("hfisher::HODLR::sample_h", s);
  Kokkos::View<int*, mem_space> qa("hfisher::HODLR::sample_qa", s), qb("hfisher::HODLR::sample_qb", s),
      lev("hfisher::HODLR::sample_level", s);
  Kokkos::parallel_for(
      "hfisher::HODLR::sample_entries", Kokkos::RangePolicy<ExecSpace>(space, 0, s), KOKKOS_LAMBDA(const int t) {
        int i = int(random::uniform(seed, 1, std::uint64_t(t)) * n),
            j = int(random::uniform(seed, 2, std::uint64_t(t)) * n);
        i = i < n ? i : n - 1;
        j = j < n ? j : n - 1;
        a(t) = double(Scalar(fn(i, j)));
        const int p = iperm(i), q = iperm(j), bp = p / leaf, bq = q / leaf;
        qa(t) = p;
        qb(t) = q;
        if (bp == bq) {
          lev(t) = 0;
          h(t) = double(D(bp, p % leaf, q % leaf));
        } else {  // siblings below the highest differing bit of the leaf indices
          int x = bp ^ bq, hb = 0;
          while (x >>= 1) ++hb;
          lev(t) = L - hb;
          h(t) = 0;
        }
      });
  for (int l = 1; l <= L; ++l) {
    const auto U = Hm.U(l), V = Hm.V(l);
    const int m = N >> l, k = U.extent(2);
    Kokkos::parallel_for(
        "hfisher::HODLR::sample_offdiag", Kokkos::RangePolicy<ExecSpace>(space, 0, s), KOKKOS_LAMBDA(const int t) {
          if (lev(t) != l) return;
          const int na = qa(t) / m, nb = qb(t) / m, pr = na / 2, ra = qa(t) - na * m, rb = qb(t) - nb * m;
          // A(I_2p, I_2p+1) = U V^T; its transpose below the diagonal
          const bool upper = na % 2 == 0;
          Scalar v = 0;
          for (int c = 0; c < k; ++c) v += upper ? U(pr, ra, c) * V(pr, rb, c) : V(pr, ra, c) * U(pr, rb, c);
          h(t) = double(v);
        });
  }
  double num = 0, den = 0;
  Kokkos::parallel_reduce(
      "hfisher::HODLR::sample_error", Kokkos::RangePolicy<ExecSpace>(space, 0, s),
      KOKKOS_LAMBDA(const int t, double& e, double& f) {
        e += (a(t) - h(t)) * (a(t) - h(t));
        f += a(t) * a(t);
      },
      num, den);
  detail::require(std::isfinite(num) && std::isfinite(den), where,
                  "a sampled entry is not finite (fn returned NaN/Inf)");
  return den > 0 ? std::sqrt(num / den) : 0.0;
}
}  // namespace detail

template <class Scalar, class ExecSpace>
template <class EntryFn>
HODLR<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::from_entries(const EntryFn& fn, const ClusterTree& tree,
                                                                const CompressionOptions& opts) try {
  constexpr const char* where = "hfisher::HODLR::from_entries";
  opts.validate(where);
  ExecSpace space;
  const int N = tree.padded_size(), leaf = tree.leaf_size(), L = tree.levels();
  HODLR H;
  H.init_structure(tree, opts);
  H.D_ = Batch(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::HODLR::D"), N / leaf, leaf, leaf);
  auto D = H.D_;
  auto perm = H.perm_d_;
  Kokkos::parallel_for(  // every entry of D
      "hfisher::HODLR::leaf_entries", Kokkos::RangePolicy<ExecSpace>(space, 0, N), KOKKOS_LAMBDA(const int p) {
        const int b = p / leaf, i = p % leaf, gi = perm(p);
        for (int j = 0; j < leaf; ++j) {
          const int gj = perm(b * leaf + j);
          D(b, i, j) = (gi >= 0 && gj >= 0) ? Scalar(fn(gi, gj)) : Scalar(i == j ? 1 : 0);
        }
      });
  detail::check_finite3(space, D, where, "entries of a diagonal block (fn returned NaN/Inf)");
  int ra_prev = 0;
  for (int l = 1; l <= L; ++l) {
    const int m = N >> l, pairs = 1 << (l - 1);
    const int cap = opts.rank_cap(m);
    // ACA terms: with a cap, the cap plus room for the recompression; without
    // one, a guess from the coarser level, doubled (and the level redone)
    // while a block has not converged, up to the block size
    const int kaca_lim = opts.max_rank > 0 ? std::min(m, cap + std::max(8, cap / 2)) : m;
    int kaca = opts.max_rank > 0 ? kaca_lim : std::min(m, std::max(128, ra_prev + ra_prev / 2 + 16));
    const int kmax = std::min(cap, kaca_lim);
    Kokkos::View<int*, mem_space> rank_aca("hfisher::HODLR::rank_aca", pairs), rank("hfisher::HODLR::rank", pairs);
    Kokkos::View<int*, mem_space> open("hfisher::HODLR::aca_open", pairs);
    Kokkos::View<int**, Kokkos::LayoutRight, mem_space> used(
        Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::HODLR::used"), pairs, m);
    Batch Ua, Va;
    int ra = 0;
    for (;;) {
      // cross vectors one per row (see aca.hpp); only the rows ACA writes are touched
      Ua = Batch(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::HODLR::Ua"), pairs, kaca, m);
      Va = Batch(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::HODLR::Va"), pairs, kaca, m);
      detail::aca_level(space, fn, perm, l, N, 0.1 * opts.tol, Ua, Va, rank_aca, open, used);
      int any_open = 0;
      ra = 0;
      Kokkos::parallel_reduce(
          "hfisher::HODLR::aca_rank", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs),
          KOKKOS_LAMBDA(const int p, int& v, int& o) {
            v = rank_aca(p) > v ? rank_aca(p) : v;
            o = open(p) > o ? open(p) : o;
          },
          Kokkos::Max<int>(ra), Kokkos::Max<int>(any_open));
      if (any_open <= 0 || kaca >= kaca_lim) break;
      kaca = std::min(kaca_lim, 2 * kaca);
    }
    ra = std::max(ra, 1);
    ra_prev = ra;
    detail::aca_zero_tail(space, Ua, Va, rank_aca, ra);
    // the first ra cross vectors as (pairs, m, ra) column blocks, without a copy
    const auto tr = Kokkos::LayoutStride(pairs, long(kaca) * m, m, 1, ra, m);
    detail::Strided3<Scalar, mem_space> Ut(Ua.data(), tr), Vt(Va.data(), tr);
    detail::check_finite3(space, Ut, where, "entries of an off-diagonal block (fn returned NaN/Inf)");
    detail::check_finite3(space, Vt, where, "entries of an off-diagonal block (fn returned NaN/Inf)");
    const int kt = std::min(kmax, ra);
    // written in full by the truncation's last GEMMs (beta = 0)
    Batch Uw(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::HODLR::Uw"), pairs, m, kt);
    Batch Vw(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::HODLR::Vw"), pairs, m, kt);
    Kokkos::View<Scalar*, mem_space> no_tail;
    Kokkos::View<int*, mem_space> capped("hfisher::HODLR::capped", pairs);
    // Ut and Vt were checked above; 1 <= kt <= ra
    kernels::detail::truncate_lowrank_nocheck(space, Ut, Vt, opts.tol, Uw, Vw, rank, no_tail, capped);
    // capped: the cross approximation ran out of terms, or the cap cut it
    Kokkos::parallel_for(
        "hfisher::HODLR::aca_capped", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs),
        KOKKOS_LAMBDA(const int p) { capped(p) = (capped(p) || open(p)) ? 1 : 0; });
    H.store_level(l, Uw, Vw, rank, where, detail::host_flags(capped));
  }
  if (opts.probes > 0) {
    H.info_.entries = 1024 * opts.probes;
    H.info_.error_estimate = detail::sampled_entry_error(H, fn, H.info_.entries, opts.seed);
  }
  return H;
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HODLR::from_entries");
}

template <class Scalar, class ExecSpace>
template <class DView, class GView>
HODLR<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::from_factors(const DView& d, const GView& G, const ClusterTree& tree,
                                                                const CompressionOptions& opts) try {
  constexpr const char* where = "hfisher::HODLR::from_factors";
  static_assert(DView::rank == 1 && GView::rank == 2, "HODLR::from_factors: d must be (n), G (n, m)");
  opts.validate(where);
  const int n = tree.size(), N = tree.padded_size(), leaf = tree.leaf_size(), L = tree.levels();
  detail::require(long(d.extent(0)) == n, where, "d has length ", d.extent(0), " but the tree has n = ", n);
  detail::require(long(G.extent(0)) == n, where, "G has ", G.extent(0), " rows but the tree has n = ", n);
  const int mc = G.extent(1);
  detail::require(mc >= 1, where, "G needs at least one column");
  ExecSpace space;
  detail::check_finite_matrix(space, G, where, "G");
  {
    auto d2 =
        Kokkos::View<const typename DView::value_type**, Kokkos::LayoutStride, mem_space,
                     Kokkos::MemoryTraits<Kokkos::Unmanaged>>(d.data(), Kokkos::LayoutStride(1, 0, n, d.stride_0()));
    detail::check_finite2(space, d2, where, "d");
  }
  HODLR H;
  H.init_structure(tree, opts);
  Matrix Gp("hfisher::HODLR::Gp", N, mc);
  Vector dp("hfisher::HODLR::dp", N);
  auto perm = H.perm_d_;
  Kokkos::parallel_for(
      "hfisher::HODLR::permute_G", Kokkos::RangePolicy<ExecSpace>(space, 0, N), KOKKOS_LAMBDA(const int p) {
        const int i = perm(p);
        dp(p) = i >= 0 ? Scalar(d(i)) : Scalar(1);
        for (int c = 0; c < mc; ++c) Gp(p, c) = i >= 0 ? Scalar(G(i, c)) : Scalar(0);
      });
  // leaves: D = diag(d) + G_I G_I^T
  H.D_ = Batch("hfisher::HODLR::D", N / leaf, leaf, leaf);
  auto Gleaf = detail::level_nodes(Gp, L, detail::Nodes::All);
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), Gleaf, Gleaf, Scalar(0), H.D_);
  auto D = H.D_;
  Kokkos::parallel_for(
      "hfisher::HODLR::add_d", Kokkos::RangePolicy<ExecSpace>(space, 0, N),
      KOKKOS_LAMBDA(const int p) { D(p / leaf, p % leaf, p % leaf) += dp(p); });
  for (int l = 1; l <= L; ++l) {
    const int m = N >> l, pairs = 1 << (l - 1);
    const int kmax = std::min(opts.rank_cap(m), mc);
    auto GL = detail::level_nodes(Gp, l, detail::Nodes::Left);
    auto GR = detail::level_nodes(Gp, l, detail::Nodes::Right);
    Batch Uw("hfisher::HODLR::Uw", pairs, m, kmax), Vw("hfisher::HODLR::Vw", pairs, m, kmax);
    Kokkos::View<int*, mem_space> rank("hfisher::HODLR::rank", pairs);
    Kokkos::View<Scalar*, mem_space> tail("hfisher::HODLR::tail", opts.spd_compensation ? pairs : 0);
    Kokkos::View<int*, mem_space> capped("hfisher::HODLR::capped", pairs);
    if (2 * mc <= m) {
      // few columns: QRs of the row blocks and an SVD of the small mc x mc core
      kernels::truncate_lowrank(space, GL, GR, opts.tol, Uw, Vw, rank, tail, capped);
    } else {
      // the core would be as large as the block: form G_I G_J^T (one batched
      // GEMM) and compress it with the batched randomized SVD
      Batch B(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::B"), pairs, m, m);
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), GL, GR, Scalar(0), B);
      detail::compress_rsvd(space, B, opts.tol, opts.seed + std::uint64_t(l) * 7919u, Uw, Vw, rank);
      if (opts.spd_compensation) detail::residual_fro(space, B, Uw, Vw, tail);
      capped = detail::rsvd_capped(space, rank, kmax, std::min(m, mc));
    }
    if (opts.spd_compensation) detail::compensate_level(space, H.D_, tail, m);
    H.store_level(l, Uw, Vw, rank, where, detail::host_flags(capped));
  }
  // padded rows: dp = 1, Gp = 0, like the identity rows of H
  H.estimate_error_products(
      [dp, Gp](const Matrix& X, const Matrix& Y) { detail::factors_product<ExecSpace>(dp, Gp, X, Y); });
  return H;
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HODLR::from_factors");
}

template <class Scalar, class ExecSpace>
typename HODLR<Scalar, ExecSpace>::Matrix HODLR<Scalar, ExecSpace>::to_tree(const Matrix& X) const {
  return detail::to_tree<ExecSpace>(X, perm_d_, tree_.size(), "hfisher::HODLR");
}

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::from_tree(const Matrix& Xp, const Matrix& Y) const {
  detail::from_tree<ExecSpace>(Xp, Y, iperm_d_, "hfisher::HODLR");
}

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::apply_tree(const Matrix& Xp, const Matrix& Yp, int max_level, bool leaves) const {
  ExecSpace space;
  const int r = Xp.extent(1), L = tree_.levels();
  using namespace detail;
  if (leaves)
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), D_, level_nodes(Xp, L, Nodes::All),
                                  Scalar(0), level_nodes(Yp, L, Nodes::All));
  else
    Kokkos::deep_copy(space, Yp, Scalar(0));
  for (int l = 1; l <= std::min(L, max_level); ++l) {
    const auto& U = U_[l - 1];
    const auto& V = V_[l - 1];
    const int pairs = U.extent(0), k = U.extent(2);
    Batch T("hfisher::HODLR::T", pairs, k, r);
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), V, level_nodes(Xp, l, Nodes::Right),
                                  Scalar(0), T);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), U, T, Scalar(1),
                                  level_nodes(Yp, l, Nodes::Left));
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), U, level_nodes(Xp, l, Nodes::Left),
                                  Scalar(0), T);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), V, T, Scalar(1),
                                  level_nodes(Yp, l, Nodes::Right));
  }
}

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::apply(const Matrix& X, const Matrix& Y) const {
  constexpr const char* where = "hfisher::HODLR::apply";
  detail::require(D_.extent(0) > 0, where, "the matrix is empty (not built)");
  detail::require(X.extent(1) == Y.extent(1), where, "X has ", X.extent(1), " columns, Y has ", Y.extent(1));
  ExecSpace space;
  detail::check_finite_matrix(space, X, where, "X");
  const int N = tree_.padded_size(), r = X.extent(1);
  Matrix Xp = to_tree(X);
  Matrix Yp("hfisher::HODLR::Yp", N, r);
  apply_tree(Xp, Yp, tree_.levels(), true);
  from_tree(Yp, Y);
}

namespace detail {
/// Test vectors of one peeling pass at level l: Om (N, r) keeps its rows on
/// the `keep` children (Left or Right) of every sibling pair and is zeroed
/// on the others.
template <class Exec, class M>
void keep_children(const Exec& space, const M& Om, int level, bool keep_right) {
  const int N = Om.extent(0), r = Om.extent(1), m = N >> level;
  Kokkos::parallel_for(
      "hfisher::HODLR::peel_mask", Kokkos::RangePolicy<Exec>(space, 0, N), KOKKOS_LAMBDA(const int q) {
        const bool right = (q / m) % 2 == 1;
        if (right != keep_right)
          for (int c = 0; c < r; ++c) Om(q, c) = 0;
      });
}

/// Om (N, leaf): the identity of every leaf stacked: Om(q, j) = (q % leaf == j).
template <class Exec, class M>
void stacked_identity(const Exec& space, const M& Om) {
  using T = typename M::non_const_value_type;
  const int N = Om.extent(0), leaf = Om.extent(1);
  Kokkos::parallel_for(
      "hfisher::HODLR::peel_identity", Kokkos::RangePolicy<Exec>(space, 0, N), KOKKOS_LAMBDA(const int q) {
        for (int j = 0; j < leaf; ++j) Om(q, j) = T(q % leaf == j ? 1 : 0);
      });
}

/// U(b, :, c) = 0 for every column c >= keep(b) of batch entry b.
template <class Exec, class B, class K>
void zero_columns_from(const Exec& space, const B& U, const K& keep) {
  using T = typename B::non_const_value_type;
  const int m = U.extent(1), q = U.extent(2);
  Kokkos::parallel_for(
      "hfisher::HODLR::peel_null", Kokkos::RangePolicy<Exec>(space, 0, long(U.extent(0)) * m),
      KOKKOS_LAMBDA(const long t) {
        const int b = int(t / m), i = int(t % m);
        for (int c = keep(b); c < q; ++c) U(b, i, c) = T(0);
      });
}

/// Y -= Z (same shape).
template <class Exec, class M>
void subtract(const Exec& space, const M& Y, const M& Z) {
  const int N = Y.extent(0), r = Y.extent(1);
  Kokkos::parallel_for(
      "hfisher::HODLR::peel_subtract", Kokkos::RangePolicy<Exec>(space, 0, N), KOKKOS_LAMBDA(const int q) {
        for (int c = 0; c < r; ++c) Y(q, c) -= Z(q, c);
      });
}
}  // namespace detail

template <class Scalar, class ExecSpace>
template <class MultiplyA>
void HODLR<Scalar, ExecSpace>::estimate_error_products(const MultiplyA& multiply_A) {
  const int q = opts_.probes;
  if (q <= 0) return;
  info_.error_estimate = detail::tree_probe_error<ExecSpace, Matrix>(
      perm_d_, tree_.padded_size(), q, opts_.seed, multiply_A,
      [this](const Matrix& X, const Matrix& Y) { apply_tree(X, Y, tree_.levels(), true); });
  info_.probes = q;
  info_.products = q;
}

template <class Scalar, class ExecSpace>
HODLR<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::from_operator(const Operator& op, int n, const ClusterTree& tree,
                                                                 const CompressionOptions& opts) try {
  constexpr const char* where = "hfisher::HODLR::from_matvec";
  using namespace detail;
  opts.validate(where);
  detail::require(bool(op), where, "the operator is empty");
  detail::require(n == tree.size(), where, "n = ", n, " but the tree has n = ", tree.size());
  detail::require(opts.oversampling >= 1, where, "CompressionOptions.oversampling must be >= 1, got ",
                  opts.oversampling);
  detail::require(opts.probes >= 1, where, "CompressionOptions.probes must be >= 1, got ", opts.probes);
  // each pass peels with new products; the best one is kept, and the
  // report counts every pass's products, samples and probes
  double trunc = opts.tol / 10;
  int passes = 0, samples = 0, probes = 0;
  HODLR best;
  for (;;) {
    bool limited = false;
    HODLR H = peel(op, n, tree, opts, trunc, limited);
    ++passes;
    samples += H.info_.samples;
    probes += H.info_.probes;
    const bool better = passes == 1 || H.info_.error_estimate < best.info_.error_estimate;
    // another pass helps only when this one lowered the error and no rank
    // cap limited it (a cap binds at any tighter tolerance too)
    const bool progress = passes == 1 || H.info_.error_estimate <= 0.5 * best.info_.error_estimate;
    if (better) best = std::move(H);
    if (best.info_.error_estimate <= opts.tol || limited || !progress || passes == 3 ||
        trunc / 10 < 10 * double(math::limits<Scalar>::eps()))
      break;
    trunc /= 10;
  }
  best.info_.samples = samples;
  best.info_.probes = probes;
  best.info_.products = samples + probes;
  best.info_.rebuilds = passes - 1;
  return best;
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::HODLR::from_operator");
}

template <class Scalar, class ExecSpace>
HODLR<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::peel(const Operator& op, int n, const ClusterTree& tree,
                                                        const CompressionOptions& opts, double trunc_tol,
                                                        bool& limited) {
  constexpr const char* where = "hfisher::HODLR::from_matvec";
  using namespace detail;
  ExecSpace space;
  const int N = tree.padded_size(), leaf = tree.leaf_size(), L = tree.levels(), p = opts.oversampling;
  HODLR H;
  H.init_structure(tree, opts);
  H.D_ = Batch("hfisher::HODLR::D", N / leaf, leaf, leaf);
  for (int l = 1; l <= L; ++l) {  // zero levels until built (apply_tree reads them)
    H.U_[l - 1] = Batch("hfisher::HODLR::U", 1 << (l - 1), N >> l, 1);
    H.V_[l - 1] = Batch("hfisher::HODLR::V", 1 << (l - 1), N >> l, 1);
    H.ranks_[l - 1].assign(1 << (l - 1), 0);
    H.capped_[l - 1].assign(1 << (l - 1), 0);
  }
  TreeOperator<Scalar, ExecSpace> top{op, n, H.perm_d_, H.iperm_d_, where};
  // A Om minus the levels < l already built (tree order)
  auto peeled = [&](const Matrix& Om, int l) {
    Matrix Y("hfisher::HODLR::peel_Y", N, Om.extent(1)), Z("hfisher::HODLR::peel_Z", N, Om.extent(1));
    top.multiply(Om, Y, 0, Om.extent(1));
    H.apply_tree(Om, Z, l - 1, false);
    subtract(space, Y, Z);
    return Y;
  };
  int kprev = 8;
  for (int l = 1; l <= L; ++l) {
    const int m = N >> l, pairs = 1 << (l - 1);
    const int kcap = opts.rank_cap(m);
    const int smax = std::min(m, kcap + p);
    int s = std::min(smax, std::min(kcap, std::max(8, kprev)) + p);
    // pass 1: samples of A(I_2p, I_2p+1) on the left children's rows; the
    // test vectors are counter-based, so the sample grows without a buffer
    // sized for the largest possible rank
    int done = 0, k = 1;
    Batch Us;
    BatchVector<Scalar, ExecSpace> S;
    Matrix Ys;
    std::vector<int> rb(pairs, 0), rt(pairs, 0);
    int rmax = 0;  // the sample's largest rank at trunc_tol
    for (;;) {
      Matrix Om(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::peel_Om"), N, s);
      gaussian_columns(space, Om, done, s, opts.seed + std::uint64_t(l) * 104729u);
      keep_children(space, Om, l, true);
      Matrix Omn(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::peel_new"), N, s - done);
      Kokkos::deep_copy(space, Omn, Kokkos::subview(Om, Kokkos::ALL(), Kokkos::make_pair(done, s)));
      Matrix Yn = peeled(Omn, l);
      Matrix Yg(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::peel_Ys"), N, s);
      if (done > 0) Kokkos::deep_copy(space, Kokkos::subview(Yg, Kokkos::ALL(), Kokkos::make_pair(0, done)), Ys);
      Kokkos::deep_copy(space, Kokkos::subview(Yg, Kokkos::ALL(), Kokkos::make_pair(done, s)), Yn);
      Ys = Yg;
      done = s;
      auto Z = level_nodes(Ys, l, Nodes::Left);  // (pairs, m, s)
      const int q = std::min(m, s);
      Us = Batch("hfisher::HODLR::peel_U", pairs, m, q);
      Batch Vs("hfisher::HODLR::peel_V", pairs, s, q);
      S = BatchVector<Scalar, ExecSpace>("hfisher::HODLR::peel_S", pairs, q);
      kernels::svd(space, Z, Us, S, Vs);
      auto Sh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), S);
      double smx = 0;
      for (int b = 0; b < pairs; ++b) smx = std::max(smx, double(Sh(b, 0)));
      const double floor = 100 * double(math::limits<Scalar>::eps()) * smx;
      const double thr = std::max(trunc_tol * smx, floor), thr_nominal = std::max(opts.tol * smx, floor);
      rmax = 0;
      for (int b = 0; b < pairs; ++b) {
        int r = 0;
        while (r<q&& double(Sh(b, r))> thr) ++r;
        int rn = 0;
        while (rn<q&& double(Sh(b, rn))> thr_nominal) ++rn;
        rb[b] = rn;  // a cap is judged at the nominal tolerance
        rt[b] = r;
        rmax = std::max(rmax, r);
      }
      k = std::max(1, std::min(rmax, kcap));
      if (s >= smax || k + p <= s) break;
      s = std::min(smax, s + std::max(8, s / 2));
    }
    kprev = k;
    // a pair whose own rank r_p is below k keeps only its first r_p
    // singular vectors: the others belong to singular values at rounding
    // level, where the SVD's left vectors are not orthonormal (Q Q^T would
    // then not project onto the block's range), and the block has no range
    // there to catch
    {
      Kokkos::View<int*, mem_space> keep("hfisher::HODLR::peel_keep", pairs);
      auto kh = Kokkos::create_mirror_view(keep);
      for (int b = 0; b < pairs; ++b) kh(b) = std::min(rt[b], k);
      Kokkos::deep_copy(keep, kh);
      zero_columns_from(space, Us, keep);
    }
    // pass 2: test vectors Q_p on the left children give A(I_2p+1, I_2p) Q_p
    // on the right children's rows
    Matrix Om2("hfisher::HODLR::peel_Om2", N, k);
    {
      auto Q = level_nodes(Om2, l, Nodes::Left);
      Kokkos::deep_copy(space, Q, cols(Us, 0, k));
    }
    // the kept vectors are zero on padded rows only up to rounding (the
    // samples there are differences of earlier levels' products); the padded
    // matrix is exactly zero off the diagonal, so the stored blocks are made
    // exactly zero there too (the finer levels peel them from their samples)
    zero_padding(space, H.perm_d_, Om2);
    Matrix Y2 = peeled(Om2, l);
    Batch Qk(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::peel_Q"), pairs, m, k);
    Batch Vk(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::peel_Vk"), pairs, m, k);
    Kokkos::deep_copy(space, Qk, level_nodes(Om2, l, Nodes::Left));
    Kokkos::deep_copy(space, Vk, level_nodes(Y2, l, Nodes::Right));
    Batch Uw("hfisher::HODLR::Uw", pairs, m, k), Vw("hfisher::HODLR::Vw", pairs, m, k);
    Kokkos::View<int*, mem_space> rank("hfisher::HODLR::rank", pairs);
    kernels::truncate_lowrank(space, Qk, Vk, trunc_tol, Uw, Vw, rank);
    // capped: the sample showed more singular values above tol than the cap keeps
    std::vector<char> capped(pairs);
    for (int b = 0; b < pairs; ++b) capped[b] = rb[b] > kcap;
    limited = limited || rmax > kcap;
    H.store_level(l, Uw, Vw, rank, where, capped);
  }
  // leaves: stacked identities, minus every level
  {
    Matrix Om("hfisher::HODLR::peel_I", N, leaf);
    stacked_identity(space, Om);
    Matrix Y = peeled(Om, L + 1);
    Kokkos::deep_copy(space, H.D_, level_nodes(Y, L, Nodes::All));
    symmetrize(space, H.D_);
  }
  const int samples = top.products;
  H.info_.error_estimate =
      top.probe_error([&H](const Matrix& X, const Matrix& Y) { H.apply_tree(X, Y, H.tree().levels(), true); }, N,
                      opts.probes, opts.seed);
  H.info_.samples = samples;
  H.info_.probes = opts.probes;
  H.info_.products = top.products;
  return H;
}

template <class Scalar, class ExecSpace>
typename HODLR<Scalar, ExecSpace>::Vector HODLR<Scalar, ExecSpace>::diag() const {
  return detail::leaf_diagonal<ExecSpace, Vector>(D_, iperm_d_, "hfisher::HODLR::diag");
}

template <class Scalar, class ExecSpace>
typename HODLR<Scalar, ExecSpace>::Matrix HODLR<Scalar, ExecSpace>::to_dense() const {
  return detail::dense_by_apply<ExecSpace, Matrix>(*this, tree_.size(), "hfisher::HODLR::to_dense");
}

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::add_diagonal(Scalar lambda) {
  detail::require(math::isfinite(lambda), "hfisher::HODLR::add_diagonal", "lambda is not finite");
  const int N = tree_.padded_size(), leaf = tree_.leaf_size();
  auto perm = perm_d_;
  auto D = D_;
  Kokkos::parallel_for(
      "hfisher::HODLR::add_diagonal", Kokkos::RangePolicy<ExecSpace>(0, N), KOKKOS_LAMBDA(const int p) {
        if (perm(p) >= 0) D(p / leaf, p % leaf, p % leaf) += lambda;
      });
}

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::add(const HODLR& B, Scalar alpha) {
  constexpr const char* where = "hfisher::HODLR::add";
  detail::require(D_.extent(0) > 0 && B.D_.extent(0) > 0, where, "an operand is empty (not built)");
  detail::require(math::isfinite(alpha), where, "alpha is not finite");
  detail::require(tree_.size() == B.tree_.size() && tree_.leaf_size() == B.tree_.leaf_size() &&
                      tree_.levels() == B.tree_.levels() && tree_.perm() == B.tree_.perm(),
                  where, "the operands have different cluster trees (n ", tree_.size(), " vs ", B.tree_.size(),
                  ", leaf ", tree_.leaf_size(), " vs ", B.tree_.leaf_size(), ", levels ", tree_.levels(), " vs ",
                  B.tree_.levels(), ", or a different permutation)");
  ExecSpace space;
  // the sum is built beside *this and installed only when every level has
  // passed the rank-cap check: a refused add leaves the matrix as it was
  Batch D(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::HODLR::D"), D_.extent(0), D_.extent(1),
          D_.extent(2));
  Kokkos::deep_copy(space, D, D_);
  auto DB = B.D_;
  const int nl = D.extent(0), leaf = D.extent(1);
  Kokkos::parallel_for(
      "hfisher::HODLR::add_D", Kokkos::RangePolicy<ExecSpace>(space, 0, nl), KOKKOS_LAMBDA(const int b) {
        for (int i = 0; i < leaf; ++i)
          for (int j = 0; j < leaf; ++j) D(b, i, j) += alpha * DB(b, i, j);
      });
  // per level of the sum: bases, ranks, capped flags (new, and kept from the operands)
  std::vector<Batch> sum_U, sum_V;
  std::vector<Kokkos::View<int*, mem_space>> sum_rank;
  std::vector<std::vector<char>> sum_capped, sum_keep;
  for (int l = 1; l <= tree_.levels(); ++l) {
    const Batch UA = U_[l - 1], VA = V_[l - 1], UB = B.U_[l - 1], VB = B.V_[l - 1];
    const int pairs = UA.extent(0), m = UA.extent(1), ka = UA.extent(2), kb = UB.extent(2), kk = ka + kb;
    Batch Uc("hfisher::HODLR::Uc", pairs, m, kk), Vc("hfisher::HODLR::Vc", pairs, m, kk);
    Kokkos::parallel_for(
        "hfisher::HODLR::add_concat", Kokkos::RangePolicy<ExecSpace>(space, 0, pairs), KOKKOS_LAMBDA(const int p) {
          for (int i = 0; i < m; ++i) {
            for (int c = 0; c < ka; ++c) {
              Uc(p, i, c) = UA(p, i, c);
              Vc(p, i, c) = VA(p, i, c);
            }
            for (int c = 0; c < kb; ++c) {
              Uc(p, i, ka + c) = alpha * UB(p, i, c);
              Vc(p, i, ka + c) = VB(p, i, c);
            }
          }
        });
    const int kmax = std::min(opts_.rank_cap(m), kk);
    Batch Uw("hfisher::HODLR::Uw", pairs, m, kmax), Vw("hfisher::HODLR::Vw", pairs, m, kmax);
    Kokkos::View<int*, mem_space> rank("hfisher::HODLR::rank", pairs);
    Kokkos::View<Scalar*, mem_space> tail("hfisher::HODLR::tail", opts_.spd_compensation ? pairs : 0);
    Kokkos::View<int*, mem_space> capped("hfisher::HODLR::capped", pairs);
    kernels::truncate_lowrank(space, Uc, Vc, opts_.tol, Uw, Vw, rank, tail, capped);
    if (opts_.spd_compensation) detail::compensate_level(space, D, tail, m);
    std::vector<char> flags = detail::host_flags(capped);
    detail::check_capped(opts_, where, l, flags);  // before anything of *this changes
    std::vector<char> keep = capped_[l - 1];
    const auto& kb_flags = B.capped_[l - 1];
    for (std::size_t p = 0; p < keep.size() && p < kb_flags.size(); ++p) keep[p] = keep[p] || kb_flags[p];
    sum_U.push_back(Uw);
    sum_V.push_back(Vw);
    sum_rank.push_back(rank);
    sum_capped.push_back(flags);
    sum_keep.push_back(keep);
  }
  D_ = D;
  for (int l = 1; l <= tree_.levels(); ++l)
    store_level(l, sum_U[l - 1], sum_V[l - 1], sum_rank[l - 1], where, sum_capped[l - 1], sum_keep[l - 1]);
}

template <class Scalar, class ExecSpace>
HODLR<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::clone() const {
  HODLR c = *this;
  auto deep = [](const Batch& b) {
    Batch o(Kokkos::view_alloc(Kokkos::WithoutInitializing, b.label()), b.extent(0), b.extent(1), b.extent(2));
    Kokkos::deep_copy(o, b);
    return o;
  };
  c.D_ = deep(D_);
  for (std::size_t l = 0; l < U_.size(); ++l) {
    c.U_[l] = deep(U_[l]);
    c.V_[l] = deep(V_[l]);
  }
  return c;
}

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::scale(Scalar alpha) {
  detail::require(math::isfinite(alpha), "hfisher::HODLR::scale", "alpha is not finite");
  ExecSpace space;
  auto D = D_;
  Kokkos::parallel_for(
      "hfisher::HODLR::scale_D", Kokkos::RangePolicy<ExecSpace>(space, 0, long(D.span())),
      KOKKOS_LAMBDA(const long i) { D.data()[i] *= alpha; });
  for (auto& U : U_) {
    Kokkos::parallel_for(
        "hfisher::HODLR::scale_U", Kokkos::RangePolicy<ExecSpace>(space, 0, long(U.span())),
        KOKKOS_LAMBDA(const long i) { U.data()[i] *= alpha; });
  }
}

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::recompress(double tol) {
  detail::check_tol(tol, "hfisher::HODLR::recompress");
  detail::require(D_.extent(0) > 0, "hfisher::HODLR::recompress", "the matrix is empty (not built)");
  ExecSpace space;
  opts_.tol = tol;
  for (int l = 1; l <= tree_.levels(); ++l) {
    const Batch U = U_[l - 1], V = V_[l - 1];
    const int pairs = U.extent(0), m = U.extent(1), k = U.extent(2);
    Batch Uw("hfisher::HODLR::Uw", pairs, m, k), Vw("hfisher::HODLR::Vw", pairs, m, k);
    Kokkos::View<int*, mem_space> rank("hfisher::HODLR::rank", pairs);
    Kokkos::View<Scalar*, mem_space> tail("hfisher::HODLR::tail", opts_.spd_compensation ? pairs : 0);
    kernels::truncate_lowrank(space, U, V, tol, Uw, Vw, rank, tail);
    if (opts_.spd_compensation) detail::compensate_level(space, D_, tail, m);
    store_level(l, Uw, Vw, rank, "hfisher::HODLR::recompress", {}, capped_[l - 1]);
  }
}

template <class Scalar, class ExecSpace>
std::size_t HODLR<Scalar, ExecSpace>::bytes() const {
  std::size_t b = D_.size() * sizeof(Scalar) + perm_d_.size() * sizeof(int) + iperm_d_.size() * sizeof(int);
  for (std::size_t l = 0; l < U_.size(); ++l) b += (U_[l].size() + V_[l].size()) * sizeof(Scalar);
  return b;
}

template <class Scalar, class ExecSpace>
std::vector<RankStats> HODLR<Scalar, ExecSpace>::ranks() const {
  std::vector<RankStats> out;
  for (std::size_t l = 0; l < ranks_.size(); ++l)
    out.push_back(detail::rank_stats(int(l) + 1, ranks_[l], U_[l].extent(2), capped_[l]));
  return out;
}

namespace detail {
constexpr char hodlr_magic[8] = {'H', 'F', 'H', 'O', 'D', 'L', 'R', '\0'};
// version 2: options as a versioned record (io::put_options), capped flags
// as bytes beside the ranks (io::put_ranks); version 1 packed the flags into
// bits 29/30 of max_rank and bit 30 of a block rank and still loads.
constexpr std::uint32_t hodlr_version = 2;
}  // namespace detail

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::write(std::ostream& o) const {
  using detail::hodlr_magic;
  using io::put;
  detail::require(D_.extent(0) > 0, "hfisher::HODLR::save", "the matrix is empty (not built)");
  io::put_header(o, hodlr_magic, detail::hodlr_version, sizeof(Scalar));
  put(o, std::int32_t(tree_.size()));
  put(o, std::int32_t(tree_.leaf_size()));
  put(o, std::int32_t(tree_.levels()));
  io::put_options(o, opts_);
  for (int p : tree_.perm()) put(o, std::int32_t(p));
  io::put_view(o, D_);
  for (std::size_t l = 0; l < U_.size(); ++l) {
    put(o, std::int32_t(U_[l].extent(2)));
    io::put_ranks(o, ranks_[l], capped_[l]);
    io::put_view(o, U_[l]);
    io::put_view(o, V_[l]);
  }
  o.write(hodlr_magic, 8);  // trailer: a file cut short is detected
}

template <class Scalar, class ExecSpace>
void HODLR<Scalar, ExecSpace>::save(const std::string& path) const {
  detail::require(D_.extent(0) > 0, "hfisher::HODLR::save", "the matrix is empty (not built)");
  io::atomic_write_sealed(path, "hfisher::HODLR::save", [&](std::ostream& o) { write(o); });
}

template <class Scalar, class ExecSpace>
HODLR<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::read(std::istream& i, const std::string& path) {
  using detail::hodlr_magic;
  using detail::hodlr_version;
  constexpr const char* where = "hfisher::HODLR::load";
  auto get32 = [&]() { return io::get<std::int32_t>(i, path, where); };
  const auto version = io::expect_header_versions(i, hodlr_magic, 1, hodlr_version, sizeof(Scalar), path, where,
                                                  "an hfisher HODLR file");
  const int n = get32(), leaf = get32(), L = get32();
  detail::require(n >= 1 && leaf >= 1 && L >= 0 && L <= 24 && (long(leaf) << L) >= n && (long(leaf) << L) < (1L << 31),
                  where, path, ": corrupt header (n = ", n, ", leaf = ", leaf, ", levels = ", L, ")");
  // every header field read back is checked; sizes against the bytes the
  // file holds before anything of that size is allocated (max_rank 0: no cap)
  CompressionOptions opts;
  if (version >= 2) {
    opts = io::get_options(i, path, where);
  } else {  // version 1: tol, then max_rank with the flags in bits 30 and 29
    opts.tol = io::get<double>(i, path, where);
    opts.max_rank = get32();
    opts.spd_compensation = (opts.max_rank & (1 << 30)) != 0;
    opts.allow_capped = (opts.max_rank & (1 << 29)) != 0;
    opts.max_rank &= ~((1 << 30) | (1 << 29));
    detail::require(opts.tol > 0 && opts.tol < 1 && opts.max_rank >= 0, where, path,
                    ": corrupt options (tol = ", opts.tol, ", max_rank = ", opts.max_rank, ")");
  }
  const int N = leaf << L;
  io::require_available(i, 4ULL * N, path, where);
  std::vector<int> perm(N);
  for (int p = 0; p < N; ++p) perm[p] = get32();
  HODLR H;
  H.init_structure(ClusterTree::from_permutation(n, leaf, L, perm), opts);
  io::require_available(i, 1ULL * N * leaf * sizeof(Scalar), path, where);
  H.D_ = Batch("hfisher::HODLR::D", N / leaf, leaf, leaf);
  io::get_view(i, H.D_, path, where);
  for (int l = 1; l <= L; ++l) {
    const int m = N >> l, pairs = 1 << (l - 1);
    const int k = get32();
    detail::require(k >= 1 && k <= m, where, path, ": corrupt rank ", k, " at level ", l);
    std::vector<int> r;
    std::vector<char> capped;
    io::get_ranks(i, version, pairs, k, r, capped, path, where, l);
    io::require_available(i, 2ULL * pairs * m * k * sizeof(Scalar), path, where);
    Batch U("hfisher::HODLR::U", pairs, m, k), V("hfisher::HODLR::V", pairs, m, k);
    io::get_view(i, U, path, where);
    io::get_view(i, V, path, where);
    H.U_[l - 1] = U;
    H.V_[l - 1] = V;
    H.ranks_[l - 1] = r;
    H.capped_[l - 1] = capped;
  }
  char magic[8] = {};
  i.read(magic, 8);
  detail::require(bool(i) && std::equal(magic, magic + 8, hodlr_magic), where, path, ": file is truncated");
  return H;
}

template <class Scalar, class ExecSpace>
HODLR<Scalar, ExecSpace> HODLR<Scalar, ExecSpace>::load(const std::string& path) {
  io::SealedFile f(path, "hfisher::HODLR::load");  // checksum verified first
  auto H = read(f.stream(), path);
  f.expect_end();
  return H;
}

}  // namespace hfisher

#include <hfisher/hmatrix/hodlr_factor.hpp>
