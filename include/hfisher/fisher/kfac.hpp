#pragma once
/// \file kfac.hpp
/// \brief Kronecker-factored curvature of one Linear layer (K-FAC, Martens &
/// Grosse 2015): F ~ G (x) A on the row-major vector of W~ = [W | b], with
/// A = E[a~ a~^T] (cols x cols) and G = E[g g^T] (rows x rows), so that
/// F vec(V) = vec(G V A).
///
/// Damped inverses use the eigendecompositions of A and G (computed once per
/// factor pair and reused for every damping value):
///  - KFACDamping::Eigen: (G (x) A + lambda I)^-1 exactly, eigenvalues
///    g_i a_j + lambda;
///  - KFACDamping::Factored: (G + sqrt(lambda)/pi I) (x) (A + pi sqrt(lambda) I),
///    pi = sqrt((tr A / cols) / (tr G / rows)) (Martens & Grosse, sec. 6.3);
///    solve forms the two damped inverses once per damping value and then
///    costs two products, half the eigenbasis form's four.
/// A sum of Kronecker terms (the online sum across tasks) is kept exactly for
/// apply/quad/diag; solve/logdet need a single term (merge_terms() folds the
/// sum into one term by summing factors, an approximation).

#include <hfisher/core/instantiate.hpp>
#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/sums.hpp>
#include <hfisher/fisher/prepare.hpp>
#include <hfisher/fisher/storage.hpp>
#include <hfisher/kernels/matmul.hpp>
#include <hfisher/kernels/syev.hpp>

namespace hfisher {

enum class KFACDamping { Eigen, Factored };

/// K-FAC of a layer applied at T > 1 positions (a convolution, a token-wise
/// projection): Expand (KFC, K-FAC-expand) takes A and G over every
/// position; Reduce (K-FAC-reduce, Eschenhagen et al. 2023) first averages
/// each example's patches and sums each sample's output gradients over the
/// positions. The two agree for T = 1.
enum class KFACVariant { Expand, Reduce };

namespace fisher {

namespace detail {
/// out (n x m) = in^T for in (m x n), both LayoutRight.
template <class E, class M>
void transpose_into(const M& in, const M& out) {
  const int m = in.extent(0), n = in.extent(1);
  Kokkos::parallel_for(
      "hfisher::fisher::transpose", Kokkos::RangePolicy<E>(0, n), KOKKOS_LAMBDA(const int j) {
        for (int i = 0; i < m; ++i) out(j, i) = in(i, j);
      });
}
}  // namespace detail

template <class Scalar, class ExecSpace = DefaultExec>
class KFACOperator : public CurvatureOperator<Scalar, ExecSpace>,
                     public Summable<Scalar, ExecSpace>,
                     public Preparable<Scalar, ExecSpace>,
                     public Storable<Scalar, ExecSpace> {
 public:
  using Base = CurvatureOperator<Scalar, ExecSpace>;
  using typename Base::Matrix;
  using typename Base::Vector;
  using Batch = BatchMatrix<Scalar, ExecSpace>;
  struct Term {
    Matrix A, G;
  };

  /// A: (cols, cols), G: (rows, rows), both symmetric positive semi-definite.
  KFACOperator(const Matrix& A, const Matrix& G, KFACDamping damping = KFACDamping::Eigen) : mode_(damping) {
    constexpr const char* where = "hfisher::fisher::KFACOperator";
    hfisher::detail::require(A.extent(0) >= 1 && A.extent(0) == A.extent(1), where, "A must be square, got ",
                             A.extent(0), "x", A.extent(1));
    hfisher::detail::require(G.extent(0) >= 1 && G.extent(0) == G.extent(1), where, "G must be square, got ",
                             G.extent(0), "x", G.extent(1));
    hfisher::detail::check_finite_matrix(ExecSpace(), A, where, "A");
    hfisher::detail::check_finite_matrix(ExecSpace(), G, where, "G");
    terms_.push_back({A, G});
  }

  Structure structure() const override { return Structure::KFAC; }
  const char* tag() const override { return "kfac"; }
  long size() const override { return long(rows()) * cols(); }
  int rows() const { return int(terms_[0].G.extent(0)); }
  int cols() const { return int(terms_[0].A.extent(0)); }
  const std::vector<Term>& terms() const { return terms_; }
  KFACDamping damping_mode() const { return mode_; }

  void apply(const Vector& v, const Vector& y) const override {
    this->check_vec(v, "hfisher::fisher::KFACOperator::apply", "v");
    this->check_vec(y, "hfisher::fisher::KFACOperator::apply", "y", false);
    const int r = rows(), c = cols();
    Matrix V(v.data(), r, c), Y(y.data(), r, c), T("hfisher::kfac::T", r, c);
    ExecSpace space;
    for (std::size_t t = 0; t < terms_.size(); ++t) {
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), terms_[t].G, V, Scalar(0), T);
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), T, terms_[t].A,
                                      Scalar(t == 0 ? 0 : 1), Y);
    }
  }

  void solve(const Vector& b, const Vector& x, double damping) const override {
    constexpr const char* where = "hfisher::fisher::KFACOperator::solve";
    detail::check_damping(damping, where);
    this->check_vec(b, where, "b");
    this->check_vec(x, where, "x", false);
    eigen(where);
    const int r = rows(), c = cols();
    Matrix B(b.data(), r, c), X(x.data(), r, c), T("hfisher::kfac::T", r, c);
    ExecSpace space;
    if (mode_ == KFACDamping::Factored && damped_inverses(damping)) {
      // X = (G + a I)^-1 B (A + b I)^-1: two products instead of four
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), IG_, B, Scalar(0), T);
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), T, IA_, Scalar(0), X);
      return;
    }
    kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), QG_, B, Scalar(0), T);
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), T, QA_, Scalar(0), X);
    auto wa = wA_;
    auto wg = wG_;
    const double pi = pi_, lam = damping;
    const bool eig = mode_ == KFACDamping::Eigen;
    long bad = -1;
    Kokkos::parallel_reduce(
        "hfisher::kfac::scale", Kokkos::RangePolicy<ExecSpace>(space, 0, r),
        KOKKOS_LAMBDA(const int i, long& f) {
          for (int j = 0; j < c; ++j) {
            const double e = eig ? double(wg(i)) * double(wa(j)) + lam
                                 : (double(wg(i)) + math::sqrt(lam) / pi) * (double(wa(j)) + pi * math::sqrt(lam));
            if (!(e > 0)) f = long(i) * c + j;
            X(i, j) = Scalar(double(X(i, j)) / e);
          }
        },
        Kokkos::Max<long>(bad));
    hfisher::detail::require(bad < 0, where, "G (x) A + damping I is singular (damping = ", damping,
                             "): increase the damping");
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), QG_, X, Scalar(0), T);
    // X = T QA^T computed as (QA T^T)^T: with QA untransposed the GEMM runs
    // its broadcast (axpy) form instead of packing QA^T for every tile; the
    // two transposes are O(r c) against the product's O(r c^2)
    Matrix Tt(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::kfac::Tt"), c, r);
    Matrix Y(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::kfac::Y"), c, r);
    detail::transpose_into<ExecSpace>(T, Tt);
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), QA_, Tt, Scalar(0), Y);
    detail::transpose_into<ExecSpace>(Y, X);
  }

  double logdet(double damping) const override {
    constexpr const char* where = "hfisher::fisher::KFACOperator::logdet";
    detail::check_damping(damping, where);
    eigen(where);
    auto wa = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), wA_);
    auto wg = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), wG_);
    double s = 0;
    for (int i = 0; i < rows(); ++i)
      for (int j = 0; j < cols(); ++j) {
        const double e = mode_ == KFACDamping::Eigen
                             ? double(wg(i)) * double(wa(j)) + damping
                             : (double(wg(i)) + std::sqrt(damping) / pi_) * (double(wa(j)) + pi_ * std::sqrt(damping));
        hfisher::detail::require(e > 0, where, "G (x) A + damping I is singular (damping = ", damping, ")");
        s += std::log(e);
      }
    return s;
  }

  /// The eigendecompositions of A and G (damping-independent); with
  /// KFACDamping::Factored also the two damped inverses for this damping.
  void prepare(double damping) const override {
    eigen("hfisher::fisher::KFACOperator::prepare");
    if (mode_ == KFACDamping::Factored && damping > 0) damped_inverses(damping);
  }
  bool prepared(double) const override { return QA_.extent(0) > 0; }
  /// The eigendecompositions; with KFACDamping::Factored also the damped
  /// inverses of this damping when prepare formed them, so that a rank
  /// receiving the block (prepare_sharded) installs them instead of forming
  /// them again (two products of the factors' sizes per layer).
  bool write_prepared(std::ostream& o, double damping) const override {
    hfisher::detail::require(prepared(0), "hfisher::fisher::KFACOperator::write_prepared", "call prepare() first");
    io::put(o, std::int32_t(rows()));
    io::put(o, std::int32_t(cols()));
    io::put(o, pi_);
    io::put_view(o, wA_);
    io::put_view(o, QA_);
    io::put_view(o, wG_);
    io::put_view(o, QG_);
    const bool inverses = mode_ == KFACDamping::Factored && IA_.extent(0) > 0 && inv_damping_ == damping;
    io::put(o, std::int32_t(inverses));
    if (inverses) {
      io::put_view(o, IA_);
      io::put_view(o, IG_);
    }
    return true;
  }
  void read_prepared(std::istream& i, double damping, const std::string& what) const override {
    constexpr const char* where = "hfisher::fisher::KFACOperator::read_prepared";
    const int r = io::get<std::int32_t>(i, what, where), c = io::get<std::int32_t>(i, what, where);
    hfisher::detail::require(r == rows() && c == cols(), where, what, ": eigendecompositions of a ", r, "x", c,
                             " layer, this one is ", rows(), "x", cols());
    const double pi = io::get<double>(i, what, where);
    Vector wa("hfisher::kfac::w", c), wg("hfisher::kfac::w", r);
    Matrix qa("hfisher::kfac::Q", c, c), qg("hfisher::kfac::Q", r, r);
    io::get_view(i, wa, what, where);
    io::get_view(i, qa, what, where);
    io::get_view(i, wg, what, where);
    io::get_view(i, qg, what, where);
    const int inverses = io::get<std::int32_t>(i, what, where);
    hfisher::detail::require(inverses == 0 || (inverses == 1 && mode_ == KFACDamping::Factored), where, what,
                             ": corrupt record (damped-inverse flag ", inverses, " for a layer with ",
                             mode_ == KFACDamping::Factored ? "factored" : "eigenbasis", " damping)");
    Matrix ia, ig;
    if (inverses) {
      ia = Matrix(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::kfac::inverse"), c, c);
      ig = Matrix(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::kfac::inverse"), r, r);
      io::get_view(i, ia, what, where);
      io::get_view(i, ig, what, where);
    }
    Qkeep_.clear();
    wkeep_.clear();
    wA_ = wa;
    QA_ = qa;
    wG_ = wg;
    QG_ = qg;
    pi_ = pi;
    IA_ = ia;
    IG_ = ig;
    inv_damping_ = damping;
    // Factored, the owner had not formed them: form them from the shipped
    // eigendecompositions (two products of the factors' sizes)
    if (!inverses && mode_ == KFACDamping::Factored && damping > 0) damped_inverses(damping);
  }

  Vector diag() const override {
    Vector d("hfisher::fisher::diag", size());
    const int c = cols();
    for (const auto& t : terms_) {
      auto A = t.A;
      auto G = t.G;
      Kokkos::parallel_for(
          "hfisher::kfac::diag", Kokkos::RangePolicy<ExecSpace>(0, size()),
          KOKKOS_LAMBDA(const long p) { d(p) += G(p / c, p / c) * A(p % c, p % c); });
    }
    return d;
  }

  void add(const Base& other, double alpha) override {
    constexpr const char* where = "hfisher::fisher::KFACOperator::add";
    const auto* p = dynamic_cast<const KFACOperator*>(&other);
    hfisher::detail::require(p != nullptr, where, "cannot add a ", to_string(other.structure()),
                             " operator to a K-FAC one");
    hfisher::detail::require(p->rows() == rows() && p->cols() == cols(), where, "factor shapes differ (", rows(), "x",
                             cols(), " vs ", p->rows(), "x", p->cols(), ")");
    hfisher::detail::require(std::isfinite(alpha), where, "alpha is not finite");
    for (const auto& t : p->terms_) {
      Matrix A = copy(t.A), G = copy(t.G);
      scale_matrix(G, alpha);
      terms_.push_back({A, G});
    }
    invalidate();
  }

  void scale(double alpha) override {
    hfisher::detail::require(std::isfinite(alpha), "hfisher::fisher::KFACOperator::scale", "alpha is not finite");
    for (auto& t : terms_) scale_matrix(t.G, alpha);
    invalidate();
  }

  /// Factor-wise running average A = decay A + (1 - decay) A', G likewise
  /// (both operators single Kronecker terms).
  void decay_average(const Base& fresh, double decay) override {
    constexpr const char* where = "hfisher::fisher::KFACOperator::decay_average";
    const auto* p = dynamic_cast<const KFACOperator*>(&fresh);
    hfisher::detail::require(p != nullptr, where, "cannot average a K-FAC operator with a ",
                             to_string(fresh.structure()), " one");
    hfisher::detail::require(p->rows() == rows() && p->cols() == cols(), where, "factor shapes differ");
    hfisher::detail::require(terms_.size() == 1 && p->terms_.size() == 1, where,
                             "both operators must be one Kronecker term (call merge_terms())");
    hfisher::detail::require(decay >= 0 && decay <= 1, where, "decay = ", decay, " (must lie in [0, 1])");
    scale_matrix(terms_[0].A, decay);
    add_matrix(terms_[0].A, p->terms_[0].A, 1.0 - decay);
    scale_matrix(terms_[0].G, decay);
    add_matrix(terms_[0].G, p->terms_[0].G, 1.0 - decay);
    invalidate();
  }

  /// Folds a sum of terms into one: (sum_t A_t / T) (x) (sum_t G_t), exact
  /// when all A_t are equal; the approximation K-FAC Laplace uses across tasks.
  void merge_terms() {
    if (terms_.size() == 1) return;
    Matrix A = copy(terms_[0].A), G = copy(terms_[0].G);
    for (std::size_t t = 1; t < terms_.size(); ++t) {
      add_matrix(A, terms_[t].A, 1.0);
      add_matrix(G, terms_[t].G, 1.0);
    }
    scale_matrix(A, 1.0 / terms_.size());
    terms_.assign(1, Term{A, G});
    invalidate();
  }

  std::size_t bytes() const override {
    return terms_.size() * (std::size_t(rows()) * rows() + std::size_t(cols()) * cols()) * sizeof(Scalar);
  }

  std::unique_ptr<Base> clone() const override {
    auto o = std::make_unique<KFACOperator>(copy(terms_[0].A), copy(terms_[0].G), mode_);
    for (std::size_t t = 1; t < terms_.size(); ++t) o->terms_.push_back({copy(terms_[t].A), copy(terms_[t].G)});
    return o;
  }

  void write(std::ostream& o) const override {
    io::put(o, std::int32_t(rows()));
    io::put(o, std::int32_t(cols()));
    io::put(o, std::int32_t(mode_ == KFACDamping::Eigen ? 0 : 1));
    io::put(o, std::int32_t(terms_.size()));
    for (const auto& t : terms_) {
      io::put_view(o, t.A);
      io::put_view(o, t.G);
    }
  }
  static std::unique_ptr<Base> read_body(std::istream& i, const std::string& what) {
    constexpr const char* where = "hfisher::fisher::load_curvature";
    const int r = io::get<std::int32_t>(i, what, where), c = io::get<std::int32_t>(i, what, where);
    const int mode = io::get<std::int32_t>(i, what, where), nt = io::get<std::int32_t>(i, what, where);
    hfisher::detail::require(
        r >= 1 && c >= 1 && r <= (1 << 16) && c <= (1 << 16) && (mode == 0 || mode == 1) && nt >= 1 && nt <= 100000,
        where, what, ": corrupt K-FAC header");
    std::unique_ptr<KFACOperator> op;
    for (int t = 0; t < nt; ++t) {
      io::require_available(i, (1ULL * c * c + 1ULL * r * r) * sizeof(Scalar), what, where);  // before allocating
      Matrix A("hfisher::kfac::A", c, c), G("hfisher::kfac::G", r, r);
      io::get_view(i, A, what, where);
      io::get_view(i, G, what, where);
      if (!op)
        op = std::make_unique<KFACOperator>(A, G, mode == 0 ? KFACDamping::Eigen : KFACDamping::Factored);
      else
        op->terms_.push_back({A, G});
    }
    return op;
  }

  /// Eigendecompositions of A and G into the cache (public: launches kernels).
  void eigen(const char* where) const {
    hfisher::detail::require(terms_.size() == 1, where, "this K-FAC operator is a sum of ", terms_.size(),
                             " Kronecker terms; solve and logdet need one (call merge_terms())");
    if (QA_.extent(0) > 0) return;
    auto decompose = [this](const Matrix& M, Vector& w, Matrix& Q) {
      const int n = M.extent(0);
      Batch M3(M.data(), 1, n, n);
      Batch Q3("hfisher::kfac::Q", 1, n, n);
      BatchVector<Scalar, ExecSpace> w2("hfisher::kfac::w", 1, n);
      kernels::syev(ExecSpace(), M3, w2, Q3);
      Q = Matrix(Q3.data(), n, n);
      Qkeep_.push_back(Q3);
      w = Vector(w2.data(), n);
      wkeep_.push_back(w2);
    };
    decompose(terms_[0].A, wA_, QA_);
    decompose(terms_[0].G, wG_, QG_);
    // clamp rounding negatives: the factors are PSD
    for (auto* w : {&wA_, &wG_}) {
      auto ww = *w;
      Kokkos::parallel_for(
          "hfisher::kfac::clamp", Kokkos::RangePolicy<ExecSpace>(0, ww.extent(0)),
          KOKKOS_LAMBDA(const int i) { ww(i) = ww(i) > Scalar(0) ? ww(i) : Scalar(0); });
    }
    double ta = 0, tg = 0;
    auto wa = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), wA_);
    auto wg = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), wG_);
    for (int j = 0; j < cols(); ++j) ta += wa(j);
    for (int i = 0; i < rows(); ++i) tg += wg(i);
    pi_ = (ta > 0 && tg > 0) ? std::sqrt((ta / cols()) / (tg / rows())) : 1.0;
  }

  /// For KFACDamping::Factored: the damped inverses (G + sqrt(lambda)/pi I)^-1
  /// and (A + pi sqrt(lambda) I)^-1 from the eigendecompositions, cached for
  /// the last damping value (kfac-pytorch's "inverse" method; the eigenbasis
  /// form costs twice the products per solve). False, and nothing cached,
  /// when a shifted eigenvalue is not positive: the caller then takes the
  /// eigenbasis path, which reports a singular operator.
  bool damped_inverses(double damping) const {
    if (IA_.extent(0) > 0 && inv_damping_ == damping) return true;
    const double a = std::sqrt(damping) / pi_, bshift = pi_ * std::sqrt(damping);
    Matrix ia, ig;
    if (!damped_inverse(QA_, wA_, bshift, ia) || !damped_inverse(QG_, wG_, a, ig)) return false;
    IA_ = ia;
    IG_ = ig;
    inv_damping_ = damping;
    return true;
  }

  /// out = Q diag(1 / (w + shift)) Q^T; false when a w(i) + shift is not
  /// positive (public: launches kernels).
  static bool damped_inverse(const Matrix& Q, const Vector& w, double shift, Matrix& out) {
    const int n = Q.extent(0);
    auto wh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), w);
    for (int i = 0; i < n; ++i)
      if (!(double(wh(i)) + shift > 0)) return false;
    Matrix S(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::kfac::QD"), n, n);
    Kokkos::parallel_for(
        "hfisher::kfac::scale_columns", Kokkos::RangePolicy<ExecSpace>(0, n), KOKKOS_LAMBDA(const int i) {
          for (int j = 0; j < n; ++j) S(i, j) = Scalar(double(Q(i, j)) / (double(w(j)) + shift));
        });
    Matrix M(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::kfac::inverse"), n, n);
    kernels::detail::matmul_nocheck(ExecSpace(), Op::NoTrans, Op::Trans, Scalar(1), S, Q, Scalar(0), M);
    out = M;
    return true;
  }

  static Matrix copy(const Matrix& M) {
    Matrix c(Kokkos::view_alloc(Kokkos::WithoutInitializing, M.label()), M.extent(0), M.extent(1));
    Kokkos::deep_copy(c, M);
    return c;
  }
  static void scale_matrix(const Matrix& M, double alpha) {
    const Scalar a = Scalar(alpha);
    Kokkos::parallel_for(
        "hfisher::kfac::scale_matrix", Kokkos::RangePolicy<ExecSpace>(0, long(M.span())),
        KOKKOS_LAMBDA(const long i) { M.data()[i] *= a; });
  }
  static void add_matrix(const Matrix& M, const Matrix& N, double alpha) {
    const Scalar a = Scalar(alpha);
    Kokkos::parallel_for(
        "hfisher::kfac::add_matrix", Kokkos::RangePolicy<ExecSpace>(0, long(M.span())),
        KOKKOS_LAMBDA(const long i) { M.data()[i] += a * N.data()[i]; });
  }

 private:
  void invalidate() {
    QA_ = Matrix();
    QG_ = Matrix();
    IA_ = Matrix();
    IG_ = Matrix();
    Qkeep_.clear();
    wkeep_.clear();
  }

  std::vector<Term> terms_;
  KFACDamping mode_ = KFACDamping::Eigen;
  mutable Matrix QA_, QG_;
  mutable Vector wA_, wG_;
  mutable Matrix IA_, IG_;  ///< damped inverses (Factored), for inv_damping_
  mutable double inv_damping_ = -1;
  mutable std::vector<Batch> Qkeep_;
  mutable std::vector<BatchVector<Scalar, ExecSpace>> wkeep_;
  mutable double pi_ = 1.0;
};

/// The Kronecker factors of one layer block of a K-FAC estimate: the
/// block is F_l = A (x) G in the sense F_l vec(V) = vec(G V A) for V the
/// block's parameters viewed (out, in + 1) row-major ([W | b]); A: (in + 1)^2,
/// the mean of a~ a~^T over the examples (a~ the layer's homogeneous input),
/// G: out^2, the summed output-gradient moments. The views are the
/// operator's own (shared, not copies).
template <class Scalar, class ExecSpace = DefaultExec>
struct KFACFactors {
  int block = 0;    ///< block index (the model layer, in parameter order)
  long offset = 0;  ///< first parameter of the block in the operator's vector
  typename KFACOperator<Scalar, ExecSpace>::Matrix A, G;
};

/// The factors of every layer block of a K-FAC operator: a
/// Structure::KFAC estimate (a block-diagonal operator of K-FAC blocks, as
/// estimate_fisher returns it) or one KFACOperator. Any other structure, or a
/// block that holds a sum of several Kronecker terms (an online sum: call
/// merge_terms() first, or read terms()), is an error naming it.
template <class Scalar, class ExecSpace>
std::vector<KFACFactors<Scalar, ExecSpace>> kfac_factors(const CurvatureOperator<Scalar, ExecSpace>& op) {
  constexpr const char* where = "hfisher::fisher::kfac_factors";
  std::vector<KFACFactors<Scalar, ExecSpace>> out;
  auto take = [&](const CurvatureOperator<Scalar, ExecSpace>& b, int index, long offset) {
    const auto* k = dynamic_cast<const KFACOperator<Scalar, ExecSpace>*>(&b);
    hfisher::detail::require(k != nullptr, where, "block ", index, " is a ", to_string(b.structure()),
                             " operator, not K-FAC");
    hfisher::detail::require(k->terms().size() == 1, where, "block ", index, " is a sum of ", k->terms().size(),
                             " Kronecker terms (call merge_terms() first, or read terms())");
    out.push_back({index, offset, k->terms()[0].A, k->terms()[0].G});
  };
  if (const auto* bd = dynamic_cast<const BlockDiagonalOperator<Scalar, ExecSpace>*>(&op)) {
    for (int i = 0; i < bd->num_blocks(); ++i) take(bd->block(i), i, bd->offset(i));
  } else {
    take(op, 0, 0);
  }
  return out;
}

// compiled once in src/instantiate_fisher.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_KFAC_(S, E) extern template class KFACOperator<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_KFAC_)
#undef HFISHER_EXTERN_KFAC_

}  // namespace fisher
}  // namespace hfisher
