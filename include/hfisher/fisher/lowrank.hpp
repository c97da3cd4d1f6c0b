#pragma once
/// \file lowrank.hpp
/// \brief Low-rank plus diagonal curvature over all chosen parameters:
/// F ~ diag(d) + W W^T, W (n, k). Solves by the Woodbury identity with a
/// k x k Cholesky of the capacitance I + W^T (D + lambda I)^-1 W; log det by
/// the matrix determinant lemma. Sums recompress [W1, W2] through the
/// eigendecomposition of its k x k Gram matrix and move the discarded part's
/// diagonal into d, so diag(F) stays exact.

#include <hfisher/core/instantiate.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/sums.hpp>
#include <hfisher/fisher/prepare.hpp>
#include <hfisher/fisher/storage.hpp>
#include <hfisher/fisher/diag_factor.hpp>
#include <hfisher/kernels/cholesky.hpp>
#include <hfisher/kernels/matmul.hpp>
#include <hfisher/kernels/syev.hpp>

namespace hfisher {
namespace fisher {

template <class Scalar, class ExecSpace = DefaultExec>
class LowRankOperator : public CurvatureOperator<Scalar, ExecSpace>,
                        public Summable<Scalar, ExecSpace>,
                        public Preparable<Scalar, ExecSpace>,
                        public Storable<Scalar, ExecSpace> {
 public:
  using Base = CurvatureOperator<Scalar, ExecSpace>;
  using typename Base::Matrix;
  using typename Base::Vector;
  using Batch = BatchMatrix<Scalar, ExecSpace>;

  /// d: (n) >= 0; W: (n, k); sums keep at most max_rank columns and drop
  /// directions with eigenvalue <= tol * largest.
  LowRankOperator(const Vector& d, const Matrix& W, int max_rank, double tol)
      : d_(d), W_(W), max_rank_(max_rank), tol_(tol) {
    constexpr const char* where = "hfisher::fisher::LowRankOperator";
    hfisher::detail::require(d.extent(0) >= 1 && W.extent(0) == d.extent(0), where, "d has ", d.extent(0),
                             " entries but W has ", W.extent(0), " rows");
    hfisher::detail::require(max_rank >= 1, where, "max_rank = ", max_rank, " (must be >= 1)");
    hfisher::detail::require(std::isfinite(tol) && tol >= 0 && tol < 1, where, "tol = ", tol, " (must lie in [0, 1))");
    this->check_vec(d, where, "d");
    hfisher::detail::check_finite_matrix(ExecSpace(), W, where, "W");
  }

  Structure structure() const override { return Structure::LowRank; }
  const char* tag() const override { return "lowrank"; }
  long size() const override { return long(d_.extent(0)); }
  int rank() const { return int(W_.extent(1)); }
  const Vector& diagonal_part() const { return d_; }
  const Matrix& factor_matrix() const { return W_; }

  void apply(const Vector& v, const Vector& y) const override {
    this->check_vec(v, "hfisher::fisher::LowRankOperator::apply", "v");
    this->check_vec(y, "hfisher::fisher::LowRankOperator::apply", "y", false);
    const long n = size();
    const int k = rank();
    Matrix t("hfisher::lowrank::t", k, 1);
    ExecSpace space;
    auto d = d_;
    Kokkos::parallel_for(
        "hfisher::lowrank::diag_apply", Kokkos::RangePolicy<ExecSpace>(space, 0, n),
        KOKKOS_LAMBDA(const long i) { y(i) = d(i) * v(i); });
    if (k == 0) return;
    kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), W_, Matrix(v.data(), n, 1), Scalar(0), t);
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), W_, t, Scalar(1),
                                    Matrix(y.data(), n, 1));
  }

  void solve(const Vector& b, const Vector& x, double damping) const override {
    constexpr const char* where = "hfisher::fisher::LowRankOperator::solve";
    detail::check_damping(damping, where);
    this->check_vec(b, where, "b");
    this->check_vec(x, where, "x", false);
    factor(damping, where);
    const long n = size();
    const int k = rank();
    ExecSpace space;
    auto d = d_;
    const Scalar lam = Scalar(damping);
    Kokkos::parallel_for(
        "hfisher::lowrank::dinv", Kokkos::RangePolicy<ExecSpace>(space, 0, n),
        KOKKOS_LAMBDA(const long i) { x(i) = b(i) / (d(i) + lam); });
    if (k == 0) return;
    Batch t("hfisher::lowrank::t", 1, k, 1);
    Matrix t2(t.data(), k, 1);
    kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), W_, Matrix(x.data(), n, 1), Scalar(0),
                                    t2);
    kernels::potrs(space, cap_, t);
    auto W = W_;
    Kokkos::parallel_for(
        "hfisher::lowrank::correct", Kokkos::RangePolicy<ExecSpace>(space, 0, n), KOKKOS_LAMBDA(const long i) {
          Scalar s = 0;
          for (int c = 0; c < k; ++c) s += W(i, c) * t2(c, 0);
          x(i) -= s / (d(i) + lam);
        });
  }

  double logdet(double damping) const override {
    constexpr const char* where = "hfisher::fisher::LowRankOperator::logdet";
    detail::check_damping(damping, where);
    factor(damping, where);
    auto d = d_;
    double s = 0;
    Kokkos::parallel_reduce(
        "hfisher::lowrank::logdet", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i, double& acc) { acc += math::log(double(d(i)) + damping); }, s);
    if (rank() == 0) return s;
    Kokkos::View<Scalar*, typename Base::mem_space> out("ld", 1);
    kernels::logdet_cholesky(ExecSpace(), cap_, out);
    return s + double(hfisher::detail::read_entry(out, 0));
  }

  Vector diag() const override { return detail::diag_plus_squares<ExecSpace>(d_, W_); }

  void add(const Base& other, double alpha) override {
    constexpr const char* where = "hfisher::fisher::LowRankOperator::add";
    const auto* p = dynamic_cast<const LowRankOperator*>(&other);
    hfisher::detail::require(p != nullptr, where, "cannot add a ", to_string(other.structure()),
                             " operator to a low-rank one");
    hfisher::detail::require(p->size() == size(), where, "sizes differ (", size(), " vs ", p->size(), ")");
    hfisher::detail::require(std::isfinite(alpha) && alpha >= 0, where, "alpha = ", alpha,
                             " (a low-rank + diagonal sum needs alpha >= 0 to stay positive semi-definite)");
    const long n = size();
    const int k1 = rank(), k2 = p->rank(), kk = k1 + k2;
    Matrix Wc("hfisher::lowrank::W", n, kk);
    auto W1 = W_;
    auto W2 = p->W_;
    auto d = d_;
    auto d2 = p->d_;
    const Scalar a = Scalar(alpha), sa = Scalar(std::sqrt(alpha));
    Kokkos::parallel_for(
        "hfisher::lowrank::concat", Kokkos::RangePolicy<ExecSpace>(0, n), KOKKOS_LAMBDA(const long i) {
          for (int c = 0; c < k1; ++c) Wc(i, c) = W1(i, c);
          for (int c = 0; c < k2; ++c) Wc(i, k1 + c) = sa * W2(i, c);
          d(i) += a * d2(i);
        });
    W_ = Wc;
    recompress(tol_, max_rank_);
  }

  void scale(double alpha) override {
    detail::scale_diag_and_factor<ExecSpace>(d_, W_, alpha, "hfisher::fisher::LowRankOperator::scale");
    cached_ = -1;
  }

  /// Keeps the leading eigen-directions of W W^T (eigenvalue > tol * largest,
  /// at most max_rank); the discarded part's diagonal moves into d.
  void recompress(double tol, int max_rank) {
    const long n = size();
    const int kk = rank();
    cached_ = -1;
    if (kk == 0) return;
    ExecSpace space;
    Batch M("hfisher::lowrank::gram", 1, kk, kk), Z("hfisher::lowrank::Z", 1, kk, kk);
    BatchVector<Scalar, ExecSpace> w("hfisher::lowrank::w", 1, kk);
    Matrix M2(M.data(), kk, kk);
    kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), W_, W_, Scalar(0), M2);
    kernels::syev(space, M, w, Z);
    auto wh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), w);
    // ascending eigenvalues: keep the top ones
    const double top = double(wh(0, kk - 1));
    int keep = 0;
    for (int c = kk - 1; c >= 0 && keep < max_rank; --c)
      if (double(wh(0, c)) > tol * top && double(wh(0, c)) > 0) ++keep;
    Matrix Z2(Z.data(), kk, kk);
    Matrix Wn("hfisher::lowrank::W", n, keep), Wd("hfisher::lowrank::Wdrop", n, kk - keep);
    if (keep > 0)
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), W_,
                                      Kokkos::subview(Z2, Kokkos::ALL(), Kokkos::make_pair(kk - keep, kk)), Scalar(0),
                                      Wn);
    if (kk - keep > 0) {
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), W_,
                                      Kokkos::subview(Z2, Kokkos::ALL(), Kokkos::make_pair(0, kk - keep)), Scalar(0),
                                      Wd);
      auto d = d_;
      const int nd = kk - keep;
      Kokkos::parallel_for(
          "hfisher::lowrank::fold", Kokkos::RangePolicy<ExecSpace>(space, 0, n), KOKKOS_LAMBDA(const long i) {
            Scalar s = 0;
            for (int c = 0; c < nd; ++c) s += Wd(i, c) * Wd(i, c);
            d(i) += s;
          });
    }
    W_ = Wn;
  }

  std::size_t bytes() const override { return (d_.span() + W_.span()) * sizeof(Scalar); }

  std::unique_ptr<Base> clone() const override {
    Vector d("hfisher::lowrank::d", size());
    Matrix W("hfisher::lowrank::W", size(), rank());
    Kokkos::deep_copy(d, d_);
    Kokkos::deep_copy(W, W_);
    return std::make_unique<LowRankOperator>(d, W, max_rank_, tol_);
  }

  void write(std::ostream& o) const override {
    io::put(o, std::int64_t(size()));
    io::put(o, std::int32_t(rank()));
    io::put(o, std::int32_t(max_rank_));
    io::put(o, tol_);
    io::put_view(o, d_);
    io::put_view(o, W_);
  }
  static std::unique_ptr<Base> read_body(std::istream& i, const std::string& what) {
    constexpr const char* where = "hfisher::fisher::load_curvature";
    const auto n = io::get<std::int64_t>(i, what, where);
    const int k = io::get<std::int32_t>(i, what, where), mr = io::get<std::int32_t>(i, what, where);
    const double tol = io::get<double>(i, what, where);
    hfisher::detail::require(n >= 1 && n < (1L << 40) && k >= 0 && k <= n && mr >= 1, where, what,
                             ": corrupt low-rank header");
    io::require_available(
        i, static_cast<unsigned long long>(n) * (1ULL + static_cast<unsigned long long>(k)) * sizeof(Scalar), what,
        where);  // before allocating
    Vector d("hfisher::lowrank::d", n);
    Matrix W("hfisher::lowrank::W", n, k);
    io::get_view(i, d, what, where);
    io::get_view(i, W, what, where);
    return std::make_unique<LowRankOperator>(d, W, mr, tol);
  }

  void prepare(double damping) const override { factor(damping, "hfisher::fisher::LowRankOperator::prepare"); }
  bool prepared(double damping) const override { return cached_ == damping; }

  /// Cholesky of the capacitance matrix for this damping (public: launches kernels).
  void factor(double damping, const char* where) const {
    if (cached_ == damping) return;
    const long n = size();
    const int k = rank();
    auto d = d_;
    detail::require_positive_shift<ExecSpace>(d_, damping, where);
    if (k == 0) {
      cached_ = damping;
      return;
    }
    ExecSpace space;
    Matrix Ws("hfisher::lowrank::Ws", n, k);
    auto W = W_;
    const Scalar lam = Scalar(damping);
    Kokkos::parallel_for(
        "hfisher::lowrank::scaleW", Kokkos::RangePolicy<ExecSpace>(space, 0, n), KOKKOS_LAMBDA(const long i) {
          for (int c = 0; c < k; ++c) Ws(i, c) = W(i, c) / (d(i) + lam);
        });
    cap_ = Batch("hfisher::lowrank::cap", 1, k, k);
    Matrix C(cap_.data(), k, k);
    kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), W_, Ws, Scalar(0), C);
    Kokkos::parallel_for(
        "hfisher::lowrank::eye", Kokkos::RangePolicy<ExecSpace>(space, 0, k),
        KOKKOS_LAMBDA(const int c) { C(c, c) += Scalar(1); });
    kernels::potrf(space, cap_);
    cached_ = damping;
  }

 private:
  Vector d_;
  Matrix W_;
  int max_rank_ = 64;
  double tol_ = 0;
  mutable Batch cap_;
  mutable double cached_ = -1;
};

// compiled once in src/instantiate_fisher.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_LOWRANK_(S, E) extern template class LowRankOperator<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_LOWRANK_)
#undef HFISHER_EXTERN_LOWRANK_

}  // namespace fisher
}  // namespace hfisher
