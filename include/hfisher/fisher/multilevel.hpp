#pragma once
/// \file multilevel.hpp
/// \brief Multilevel low-rank curvature block (a hierarchical matrix that is
/// positive semi-definite by construction):
///
///   F ~ diag(d) + sum_levels sum_nodes W_i W_i^T,
///
/// where the nodes of each level partition the parameters into contiguous
/// ranges, each level refines the one above (a cluster tree read level by
/// level), and W_i (|i| x r_level) is supported on node i. The root level is
/// one low-rank term over the whole block; deeper levels add local low-rank
/// terms; d >= 0 carries the rest of the diagonal, so diag(F) is kept exact.
/// (Multilevel low-rank matrices: Parshakova, Hu, Darve & Boyd 2023.)
///
/// Every term is a Gram matrix, so the operator is PSD whatever the ranks:
/// a Fisher penalty built from it never has negative directions and needs no
/// compensating diagonal. Off-diagonal blocks between sibling nodes at depth
/// l have rank <= sum of the ranks above l, the HODLR property.
///
/// Storage: d (P) and all levels' W side by side in one P x (sum r_l) matrix
/// (rows of a node at level l hold W_i in the level's columns). Sums
/// (online consolidation) merge node by node, top-down: [W_i, sqrt(a) W'_i,
/// what the parent level dropped] is recompressed to the r_l leading
/// directions through a batched eigensolve of its Gram matrices; the rest is
/// offered to the children, and at the last level its diagonal moves into d.
/// Solves use the Woodbury identity with the capacitance
/// I + B^T (D + lambda I)^-1 B over every level's columns (nested supports:
/// block (i, j) is non-zero only when one node contains the other).

#include <hfisher/core/instantiate.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/sums.hpp>
#include <hfisher/fisher/prepare.hpp>
#include <hfisher/fisher/storage.hpp>
#include <hfisher/fisher/diag_factor.hpp>
#include <hfisher/kernels/cholesky.hpp>
#include <hfisher/kernels/matmul.hpp>
#include <hfisher/kernels/syev.hpp>

#include <algorithm>

namespace hfisher {
namespace fisher {

/// Node layout of a multilevel operator: for each level, the node bounds
/// (0 = b_0 < b_1 < ... < b_M = n) and the rank of its terms.
struct MultilevelLayout {
  std::vector<std::vector<long>> bounds;
  std::vector<int> ranks;

  int levels() const { return int(ranks.size()); }
  int columns() const {
    int c = 0;
    for (int r : ranks) c += r;
    return c;
  }
  /// First capacitance column of level l (levels() for the total): sum over
  /// the levels above of nodes x rank.
  long capacitance_offset(int l) const {
    long c = 0;
    for (int k = 0; k < l; ++k) c += long(bounds[k].size() - 1) * ranks[k];
    return c;
  }
  /// Columns of the Woodbury capacitance: sum over levels of nodes x rank.
  long capacitance_size() const { return capacitance_offset(levels()); }
  /// Throws unless every level partitions [0, n) and refines the one above.
  void validate(long n, const char* where) const {
    hfisher::detail::require(!ranks.empty() && bounds.size() == ranks.size(), where,
                             "a multilevel layout needs >= 1 level (", ranks.size(), " ranks, ", bounds.size(),
                             " bound lists)");
    for (int l = 0; l < levels(); ++l) {
      const auto& b = bounds[l];
      hfisher::detail::require(ranks[l] >= 1, where, "level ", l, " has rank ", ranks[l], " (must be >= 1)");
      hfisher::detail::require(b.size() >= 2 && b.front() == 0 && b.back() == n, where, "level ", l,
                               " does not cover the ", n, " parameters");
      for (std::size_t i = 1; i < b.size(); ++i)
        hfisher::detail::require(b[i] > b[i - 1], where, "level ", l, " has an empty or unordered node at ", i - 1);
      if (l > 0)
        for (long x : bounds[l - 1])
          hfisher::detail::require(std::binary_search(b.begin(), b.end(), x), where, "level ", l,
                                   " does not refine level ", l - 1, " (no node boundary at ", x, ")");
    }
  }
  bool operator==(const MultilevelLayout& o) const { return bounds == o.bounds && ranks == o.ranks; }
};

namespace detail {

/// v = h (a host vector copied to a view of the same length).
template <class T, class V>
void copy_to(const std::vector<T>& h, const V& v) {
  auto m = Kokkos::create_mirror_view(v);
  for (std::size_t i = 0; i < h.size(); ++i) m(i) = h[i];
  Kokkos::deep_copy(v, m);
}

/// Smallest entry of v (v not empty); a named function because device
/// lambdas may not live in constructors.
template <class Exec, class V>
double min_entry(const V& v) {
  double m = 0;
  Kokkos::parallel_reduce(
      "hfisher::multilevel::min", Kokkos::RangePolicy<Exec>(0, long(v.extent(0))),
      KOKKOS_LAMBDA(const long i, double& acc) { acc = double(v(i)) < acc ? double(v(i)) : acc; },
      Kokkos::Min<double>(m));
  return m;
}

}  // namespace detail

template <class Scalar, class ExecSpace = DefaultExec>
class MultilevelOperator : public CurvatureOperator<Scalar, ExecSpace>,
                           public Summable<Scalar, ExecSpace>,
                           public Preparable<Scalar, ExecSpace>,
                           public Storable<Scalar, ExecSpace> {
 public:
  using Base = CurvatureOperator<Scalar, ExecSpace>;
  using typename Base::Matrix;
  using typename Base::Vector;
  using mem = typename ExecSpace::memory_space;
  using Batch = BatchMatrix<Scalar, ExecSpace>;
  using LongView = Kokkos::View<long*, mem>;
  using IntView = Kokkos::View<int*, mem>;

  /// d: (n) >= 0; W: (n, layout.columns()), level l in columns
  /// [sum_{k<l} r_k, + r_l); row p of a level's columns holds the term of the
  /// one node of that level containing p. tol: relative eigenvalue cut of
  /// sums (a direction with eigenvalue <= tol * the node's largest is not
  /// kept at that level: it is offered to the level below, and from the last
  /// level its diagonal moves into d).
  MultilevelOperator(const Vector& d, const Matrix& W, MultilevelLayout layout, double tol)
      : d_(d), W_(W), layout_(std::move(layout)), tol_(tol) {
    constexpr const char* where = "hfisher::fisher::MultilevelOperator";
    hfisher::detail::require(d.extent(0) >= 1, where, "no parameters");
    layout_.validate(long(d.extent(0)), where);
    hfisher::detail::require(long(W.extent(0)) == long(d.extent(0)) && int(W.extent(1)) == layout_.columns(), where,
                             "W is ", W.extent(0), " x ", W.extent(1), ", expected ", d.extent(0), " x ",
                             layout_.columns());
    hfisher::detail::require(std::isfinite(tol) && tol >= 0 && tol < 1, where, "tol = ", tol, " (must lie in [0, 1))");
    this->check_vec(d, where, "d");
    hfisher::detail::check_finite_matrix(ExecSpace(), W, where, "W");
    const double dmin = detail::min_entry<ExecSpace>(d_);
    hfisher::detail::require(dmin >= 0, where, "the diagonal part has a negative entry (", dmin, ")");
    build_index();
  }

  Structure structure() const override { return Structure::Multilevel; }
  const char* tag() const override { return "multilevel"; }
  long size() const override { return long(d_.extent(0)); }
  const MultilevelLayout& layout() const { return layout_; }
  const Vector& diagonal_part() const { return d_; }
  const Matrix& factor_matrix() const { return W_; }

  void apply(const Vector& v, const Vector& y) const override {
    this->check_vec(v, "hfisher::fisher::MultilevelOperator::apply", "v");
    this->check_vec(y, "hfisher::fisher::MultilevelOperator::apply", "y", false);
    Vector one;  // no weights
    Vector t("hfisher::multilevel::t", cap_n_);
    project(v, one, t);
    auto d = d_;
    Kokkos::parallel_for(
        "hfisher::multilevel::diag_apply", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i) { y(i) = d(i) * v(i); });
    expand(t, one, Scalar(1), y);
  }

  void solve(const Vector& b, const Vector& x, double damping) const override {
    constexpr const char* where = "hfisher::fisher::MultilevelOperator::solve";
    detail::check_damping(damping, where);
    this->check_vec(b, where, "b");
    this->check_vec(x, where, "x", false);
    factor(damping, where);
    // x = D'^-1 b - D'^-1 B C^-1 B^T D'^-1 b
    auto d = d_;
    const Scalar lam = Scalar(damping);
    Vector w("hfisher::multilevel::dinv", size());
    Kokkos::parallel_for(
        "hfisher::multilevel::dinv", Kokkos::RangePolicy<ExecSpace>(0, size()), KOKKOS_LAMBDA(const long i) {
          w(i) = Scalar(1) / (d(i) + lam);
          x(i) = b(i) * w(i);
        });
    Batch t("hfisher::multilevel::t", 1, cap_n_, 1);
    Vector t1(t.data(), cap_n_);
    Vector one;
    project(x, one, t1);
    kernels::potrs(ExecSpace(), cap_, t);
    expand(t1, w, Scalar(-1), x);
  }

  double logdet(double damping) const override {
    constexpr const char* where = "hfisher::fisher::MultilevelOperator::logdet";
    detail::check_damping(damping, where);
    factor(damping, where);
    auto d = d_;
    double s = 0;
    Kokkos::parallel_reduce(
        "hfisher::multilevel::logdet", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i, double& acc) { acc += math::log(double(d(i)) + damping); }, s);
    Kokkos::View<Scalar*, mem> out("hfisher::multilevel::ld", 1);
    kernels::logdet_cholesky(ExecSpace(), cap_, out);
    return s + double(hfisher::detail::read_entry(out, 0));
  }

  Vector diag() const override { return detail::diag_plus_squares<ExecSpace>(d_, W_); }

  /// *this += alpha * other (same layout): level by level from the top,
  /// node by node, the concatenated factors are recompressed to the level's
  /// rank (merge_level); what a level drops is offered to the next, and what
  /// the last drops moves into d, so the sum stays PSD and its diagonal exact.
  void add(const Base& other, double alpha) override {
    constexpr const char* where = "hfisher::fisher::MultilevelOperator::add";
    const auto* p = dynamic_cast<const MultilevelOperator*>(&other);
    hfisher::detail::require(p != nullptr, where, "cannot add a ", to_string(other.structure()),
                             " operator to a multilevel one");
    hfisher::detail::require(p->size() == size(), where, "sizes differ (", size(), " vs ", p->size(), ")");
    hfisher::detail::require(p->layout_ == layout_, where, "the node layouts (levels, bounds or ranks) differ");
    hfisher::detail::require(std::isfinite(alpha) && alpha >= 0, where, "alpha = ", alpha,
                             " (a sum of PSD terms needs alpha >= 0)");
    cached_ = -1;
    const long n = size();
    const int ncol = int(W_.extent(1));
    Matrix Wn("hfisher::multilevel::W", n, ncol);
    Vector dn("hfisher::multilevel::d", n);
    {
      auto d = d_;
      auto d2 = p->d_;
      const Scalar a = Scalar(alpha);
      Kokkos::parallel_for(
          "hfisher::multilevel::dsum", Kokkos::RangePolicy<ExecSpace>(0, n),
          KOKKOS_LAMBDA(const long i) { dn(i) = d(i) + a * d2(i); });
    }
    int col = 0;
    Matrix carry;  // what the level above could not keep, offered to this level's nodes
    for (int l = 0; l < layout_.levels(); ++l) {
      carry = merge_level(l, col, p->W_, Scalar(std::sqrt(alpha)), carry, l + 1 == layout_.levels(), Wn, dn);
      col += layout_.ranks[l];
    }
    W_ = Wn;
    d_ = dn;
  }

  /// One level of add() (public: launches kernels). Node by node, the
  /// columns C_i = [W_i, sa W2_i, carry_i] (carry: the directions the level
  /// above dropped, restricted to this node) are recompressed through the
  /// eigendecomposition of C_i^T C_i: the r leading directions go to columns
  /// [col, col + r) of Wn; the others are returned as the carry of the next
  /// level, or, at the last level, their diagonal moves into d. Pushing a
  /// dropped direction down keeps its part inside each child node (a
  /// block-diagonal restriction of a Gram term: still PSD, same diagonal).
  Matrix merge_level(int l, int col, const Matrix& W2, Scalar sa, const Matrix& carry, bool last, const Matrix& Wn,
                     const Vector& d) const {
    const int r = layout_.ranks[l], kc = carry.extent(0) > 0 ? int(carry.extent(1)) : 0, m = 2 * r + kc;
    const long n = size(), M = long(layout_.bounds[l].size()) - 1;
    ExecSpace space;
    Matrix C("hfisher::multilevel::C", n, m);
    auto W1 = W_;
    Kokkos::parallel_for(
        "hfisher::multilevel::merge_cols", Kokkos::RangePolicy<ExecSpace>(space, 0, n), KOKKOS_LAMBDA(const long p) {
          for (int b = 0; b < r; ++b) C(p, b) = W1(p, col + b);
          for (int b = 0; b < r; ++b) C(p, r + b) = sa * W2(p, col + b);
          for (int b = 0; b < kc; ++b) C(p, 2 * r + b) = carry(p, b);
        });
    // the Gram matrices and the new columns are batched GEMMs over the row
    // chunks (build_index), summed per node (level 0's one node runs in
    // parallel too); the chunks of node i are those of its first
    // capacitance column
    const int nc = int(chunk_bounds_.extent(0)) - 1;
    auto chb = chunk_bounds_;
    auto cn = chunk_node_;
    auto ccb = cchunk_beg_;
    auto cce = cchunk_end_;
    const long cap0 = layout_.capacitance_offset(l);
    using member = typename ExecTraits<ExecSpace>::member_type;
    Batch Gc("hfisher::multilevel::gram_chunks", nc, m, m), G("hfisher::multilevel::gram", M, m, m),
        V("hfisher::multilevel::V", M, m, m), Vsel("hfisher::multilevel::Vsel", M, m, m);
    Kokkos::parallel_for(
        "hfisher::multilevel::merge_gram", hfisher::detail::batch_policy(space, nc), KOKKOS_LAMBDA(const member& t) {
          const int ch = t.league_rank();
          const auto rows = Kokkos::subview(C, Kokkos::make_pair(chb(ch), chb(ch + 1)), Kokkos::ALL);
          kernels::detail::gemm_entry<ExecSpace>(t, Op::Trans, Op::NoTrans, Scalar(1), rows, rows, Scalar(0),
                                                 Kokkos::subview(Gc, ch, Kokkos::ALL, Kokkos::ALL));
        });
    Kokkos::parallel_for(
        "hfisher::multilevel::merge_sum",
        Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {M, long(m), long(m)}),
        KOKKOS_LAMBDA(const long i, const long a, const long b) {
          Scalar t = 0;
          for (long ch = ccb(cap0 + i * r); ch < cce(cap0 + i * r); ++ch) t += Gc(ch, a, b);
          G(i, a, b) = t;
        });
    BatchVector<Scalar, ExecSpace> w("hfisher::multilevel::w", M, m);
    kernels::syev(space, G, w, V, kernels::SyevMethod::Tridiagonal);
    const Scalar tol = Scalar(tol_);
    // column q of the result: eigenvector m - 1 - q (eigenvalues ascend); the
    // first r kept when above tol * the node's largest, the rest when positive
    Kokkos::parallel_for(
        "hfisher::multilevel::merge_sel",
        Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {M, long(m), long(m)}),
        KOKKOS_LAMBDA(const long i, const long b, const long q) {
          const long e = m - 1 - q;
          const bool use =
              q < r ? (w(i, e) > tol * w(i, m - 1) && w(i, e) > Scalar(0)) : (!last && w(i, e) > Scalar(0));
          Vsel(i, b, q) = use ? V(i, b, e) : Scalar(0);
        });
    Matrix Out("hfisher::multilevel::merged", n, m);
    Kokkos::parallel_for(
        "hfisher::multilevel::merge_form", hfisher::detail::batch_policy(space, nc), KOKKOS_LAMBDA(const member& t) {
          const int ch = t.league_rank();
          const long i = cn(ch, l);
          const auto rows = Kokkos::make_pair(chb(ch), chb(ch + 1));
          kernels::detail::gemm_entry<ExecSpace>(
              t, Op::NoTrans, Op::NoTrans, Scalar(1), Kokkos::subview(C, rows, Kokkos::ALL),
              Kokkos::subview(Vsel, i, Kokkos::ALL, Kokkos::ALL), Scalar(0), Kokkos::subview(Out, rows, Kokkos::ALL));
        });
    const int ncarry = last ? 0 : m - r;
    Matrix next("hfisher::multilevel::carry", n, ncarry);
    Kokkos::parallel_for(
        "hfisher::multilevel::merge_out", Kokkos::RangePolicy<ExecSpace>(space, 0, n), KOKKOS_LAMBDA(const long p) {
          Scalar all = 0, kept = 0;
          for (int b = 0; b < m; ++b) all += C(p, b) * C(p, b);
          for (int q = 0; q < r + ncarry; ++q) {
            const Scalar t = Out(p, q);
            if (q < r)
              Wn(p, col + q) = t;
            else
              next(p, q - r) = t;
            kept += t * t;
          }
          const Scalar nd = d(p) + (all - kept);
          d(p) = nd > Scalar(0) ? nd : Scalar(0);
        });
    return next;
  }

  void scale(double alpha) override {
    detail::scale_diag_and_factor<ExecSpace>(d_, W_, alpha, "hfisher::fisher::MultilevelOperator::scale");
    cached_ = -1;
  }

  std::size_t bytes() const override { return (d_.span() + W_.span()) * sizeof(Scalar); }

  std::unique_ptr<Base> clone() const override {
    Vector d("hfisher::multilevel::d", size());
    Matrix W("hfisher::multilevel::W", size(), W_.extent(1));
    Kokkos::deep_copy(d, d_);
    Kokkos::deep_copy(W, W_);
    return std::make_unique<MultilevelOperator>(d, W, layout_, tol_);
  }

  void write(std::ostream& o) const override {
    io::put(o, std::int64_t(size()));
    io::put(o, std::int32_t(layout_.levels()));
    io::put(o, tol_);
    for (int l = 0; l < layout_.levels(); ++l) {
      io::put(o, std::int32_t(layout_.ranks[l]));
      io::put(o, std::int64_t(layout_.bounds[l].size()));
      for (long b : layout_.bounds[l]) io::put(o, std::int64_t(b));
    }
    io::put_view(o, d_);
    io::put_view(o, W_);
  }
  static std::unique_ptr<Base> read_body(std::istream& i, const std::string& what) {
    constexpr const char* where = "hfisher::fisher::load_curvature";
    const auto n = io::get<std::int64_t>(i, what, where);
    const int L = io::get<std::int32_t>(i, what, where);
    const double tol = io::get<double>(i, what, where);
    hfisher::detail::require(n >= 1 && n < (1L << 40) && L >= 1 && L <= 64, where, what, ": corrupt multilevel header");
    MultilevelLayout lay;
    for (int l = 0; l < L; ++l) {
      const int r = io::get<std::int32_t>(i, what, where);
      const auto nb = io::get<std::int64_t>(i, what, where);
      hfisher::detail::require(r >= 1 && r <= 1 << 20 && nb >= 2 && nb <= n + 1, where, what,
                               ": corrupt multilevel level ", l);
      io::require_available(i, static_cast<unsigned long long>(nb) * 8ULL, what, where);
      std::vector<long> b(nb);
      for (auto& x : b) x = long(io::get<std::int64_t>(i, what, where));
      lay.ranks.push_back(r);
      lay.bounds.push_back(std::move(b));
    }
    lay.validate(n, where);
    io::require_available(
        i,
        static_cast<unsigned long long>(n) * (1ULL + static_cast<unsigned long long>(lay.columns())) * sizeof(Scalar),
        what, where);  // before allocating
    Vector d("hfisher::multilevel::d", n);
    Matrix W("hfisher::multilevel::W", n, lay.columns());
    io::get_view(i, d, what, where);
    io::get_view(i, W, what, where);
    return std::make_unique<MultilevelOperator>(d, W, std::move(lay), tol);
  }

  void prepare(double damping) const override { factor(damping, "hfisher::fisher::MultilevelOperator::prepare"); }
  bool prepared(double damping) const override { return cached_ == damping; }

  /// t = B^T D_w x (w empty: D_w = I): t(c) = sum over node(c)'s rows of
  /// W(p, col(c)) w(p) x(p) for every capacitance column c. Rows go in
  /// chunks of at most 256 inside the finest nodes: one partial sum per
  /// (chunk, W column), then each column adds its node's chunks.
  void project(const Vector& x, const Vector& w, const Vector& t) const {
    auto W = W_;
    auto chb = chunk_bounds_;
    const bool weighted = w.extent(0) > 0;
    const long nc = long(chunk_bounds_.extent(0)) - 1, ncol = long(W_.extent(1));
    Matrix part(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::multilevel::partial"), nc, ncol);
    Kokkos::parallel_for(
        "hfisher::multilevel::project", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>>({0, 0}, {nc, ncol}),
        KOKKOS_LAMBDA(const long ch, const long j) {
          Scalar acc = 0;
          for (long p = chb(ch); p < chb(ch + 1); ++p) acc += W(p, j) * x(p) * (weighted ? w(p) : Scalar(1));
          part(ch, j) = acc;
        });
    auto cb = cchunk_beg_;
    auto ce = cchunk_end_;
    auto cw = cwcol_;
    Kokkos::parallel_for(
        "hfisher::multilevel::project_sum", Kokkos::RangePolicy<ExecSpace>(0, cap_n_), KOKKOS_LAMBDA(const long c) {
          Scalar acc = 0;
          for (long ch = cb(c); ch < ce(c); ++ch) acc += part(ch, cw(c));
          t(c) = acc;
        });
  }

  /// y(p) += s * w(p) * sum over levels of W(p, level columns) t(node of p):
  /// y += s D_w B t. One team per row chunk: a chunk lies in one node of
  /// every level.
  void expand(const Vector& t, const Vector& w, Scalar s, const Vector& y) const {
    auto W = W_;
    auto chb = chunk_bounds_;
    auto cn = chunk_node_;
    auto lv = lvinfo_;
    const int L = layout_.levels();
    const bool weighted = w.extent(0) > 0;
    const int nc = int(chunk_bounds_.extent(0)) - 1;
    using member = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
    Kokkos::parallel_for(
        "hfisher::multilevel::expand", Kokkos::TeamPolicy<ExecSpace>(nc, Kokkos::AUTO), KOKKOS_LAMBDA(const member& m) {
          const int ch = m.league_rank();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(m, chb(ch), chb(ch + 1)), [&](const long p) {
            Scalar acc = 0;
            for (int l = 0; l < L; ++l) {
              const long c0 = lv(l, 0), r = lv(l, 1), base = lv(l, 2) + long(cn(ch, l)) * r;
              for (long q = 0; q < r; ++q) acc += W(p, c0 + q) * t(base + q);
            }
            y(p) += s * (weighted ? w(p) : Scalar(1)) * acc;
          });
        });
  }

  /// Cholesky of the capacitance I + B^T (D + damping I)^-1 B (public:
  /// launches kernels).
  void factor(double damping, const char* where) const {
    if (cached_ == damping) return;
    const long K = cap_n_;
    auto d = d_;
    detail::require_positive_shift<ExecSpace>(d_, damping, where);
    hfisher::detail::require(K <= 16384, where, "the capacitance matrix would be ", K, " x ", K,
                             " (levels x nodes x rank too large for a dense Woodbury solve)");
    cap_ = Batch("hfisher::multilevel::cap", 1, K, K);
    auto C = cap_;
    auto W = W_;
    auto cb = cbeg_;
    auto ce = cend_;
    auto cw = cwcol_;
    const Scalar lam = Scalar(damping);
    Kokkos::parallel_for(
        "hfisher::multilevel::capacitance", Kokkos::RangePolicy<ExecSpace>(0, K * K), KOKKOS_LAMBDA(const long e) {
          const long a = e / K, b = e % K;
          if (b < a) return;
          const long p0 = cb(a) > cb(b) ? cb(a) : cb(b), p1 = ce(a) < ce(b) ? ce(a) : ce(b);
          Scalar s = a == b ? Scalar(1) : Scalar(0);
          const int ca = cw(a), cc = cw(b);
          for (long p = p0; p < p1; ++p) s += W(p, ca) * W(p, cc) / (d(p) + lam);
          C(0, a, b) = s;
          C(0, b, a) = s;
        });
    kernels::potrf(ExecSpace(), cap_);
    cached_ = damping;
  }

 private:
  /// Device tables of the layout: per capacitance column its node's rows,
  /// chunks and W column; per level its offsets; the row chunks.
  void build_index() {
    const int L = layout_.levels();
    cap_n_ = layout_.capacitance_size();
    cbeg_ = LongView("hfisher::multilevel::cbeg", cap_n_);
    cend_ = LongView("hfisher::multilevel::cend", cap_n_);
    cwcol_ = IntView("hfisher::multilevel::cwcol", cap_n_);
    lvinfo_ = Kokkos::View<long* [3], mem>("hfisher::multilevel::levels", L);
    auto cbh = Kokkos::create_mirror_view(cbeg_);
    auto ceh = Kokkos::create_mirror_view(cend_);
    auto cwh = Kokkos::create_mirror_view(cwcol_);
    auto lh = Kokkos::create_mirror_view(lvinfo_);
    long cap = 0;
    int col = 0;
    for (int l = 0; l < L; ++l) {
      const auto& b = layout_.bounds[l];
      const long M = long(b.size()) - 1;
      const int r = layout_.ranks[l];
      lh(l, 0) = col;
      lh(l, 1) = r;
      lh(l, 2) = cap;
      for (long i = 0; i < M; ++i)
        for (int q = 0; q < r; ++q) {
          cbh(cap) = b[i];
          ceh(cap) = b[i + 1];
          cwh(cap) = col + q;
          ++cap;
        }
      col += r;
    }
    // row chunks of at most 256 rows inside the finest (last) level's nodes;
    // levels refine each other, so a chunk lies in one node of every level
    constexpr long chunk = 256;
    std::vector<long> chb{0};
    for (std::size_t i = 0; i + 1 < layout_.bounds[L - 1].size(); ++i)
      for (long p = layout_.bounds[L - 1][i]; p < layout_.bounds[L - 1][i + 1];) {
        p = std::min(p + chunk, layout_.bounds[L - 1][i + 1]);
        chb.push_back(p);
      }
    const long nc = long(chb.size()) - 1;
    chunk_bounds_ = LongView("hfisher::multilevel::chunks", nc + 1);
    chunk_node_ = Kokkos::View<int**, mem>("hfisher::multilevel::chunk_node", nc, L);
    cchunk_beg_ = LongView("hfisher::multilevel::cchunk_beg", cap_n_);
    cchunk_end_ = LongView("hfisher::multilevel::cchunk_end", cap_n_);
    auto cnh = Kokkos::create_mirror_view(chunk_node_);
    auto ccb = Kokkos::create_mirror_view(cchunk_beg_);
    auto cce = Kokkos::create_mirror_view(cchunk_end_);
    for (int l = 0; l < L; ++l) {
      const auto& b = layout_.bounds[l];
      long i = 0;
      for (long ch = 0; ch < nc; ++ch) {
        while (b[i + 1] <= chb[ch]) ++i;
        cnh(ch, l) = int(i);
      }
    }
    // each capacitance column: the chunks of its node's rows
    for (long c = 0; c < cap_n_; ++c) {
      ccb(c) = long(std::lower_bound(chb.begin(), chb.end(), cbh(c)) - chb.begin());
      cce(c) = long(std::lower_bound(chb.begin(), chb.end(), ceh(c)) - chb.begin());
    }
    detail::copy_to(chb, chunk_bounds_);
    Kokkos::deep_copy(chunk_node_, cnh);
    Kokkos::deep_copy(cchunk_beg_, ccb);
    Kokkos::deep_copy(cchunk_end_, cce);
    Kokkos::deep_copy(cbeg_, cbh);
    Kokkos::deep_copy(cend_, ceh);
    Kokkos::deep_copy(cwcol_, cwh);
    Kokkos::deep_copy(lvinfo_, lh);
  }

  Vector d_;
  Matrix W_;
  MultilevelLayout layout_;
  double tol_ = 0;
  long cap_n_ = 0;
  LongView cbeg_, cend_;
  IntView cwcol_;
  LongView chunk_bounds_, cchunk_beg_, cchunk_end_;  // row chunks; per capacitance column its chunks
  Kokkos::View<int**, mem> chunk_node_;              // per chunk, its node at every level
  Kokkos::View<long* [3], mem> lvinfo_;              // per level: first W column, rank, first capacitance column
  mutable Batch cap_;
  mutable double cached_ = -1;
};

// compiled once in src/instantiate_fisher.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_MULTILEVEL_(S, E) extern template class MultilevelOperator<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_MULTILEVEL_)
#undef HFISHER_EXTERN_MULTILEVEL_

}  // namespace fisher
}  // namespace hfisher
