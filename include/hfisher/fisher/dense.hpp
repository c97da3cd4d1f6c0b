#pragma once
/// \file dense.hpp
/// \brief A dense symmetric positive semi-definite curvature block (the exact
/// Fisher of a small layer, and the inner block of Structure::BlockDiagonal).
/// Solves and log-determinants use a batched Cholesky of F + damping I,
/// cached for the last damping value.

#include <hfisher/core/instantiate.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/sums.hpp>
#include <hfisher/fisher/prepare.hpp>
#include <hfisher/fisher/storage.hpp>
#include <hfisher/hmatrix/impl/tree_ops.hpp>
#include <hfisher/kernels/cholesky.hpp>
#include <hfisher/kernels/matmul.hpp>

namespace hfisher {
namespace fisher {

template <class Scalar, class ExecSpace = DefaultExec>
class DenseOperator : public CurvatureOperator<Scalar, ExecSpace>,
                      public Summable<Scalar, ExecSpace>,
                      public Preparable<Scalar, ExecSpace>,
                      public Storable<Scalar, ExecSpace> {
 public:
  using Base = CurvatureOperator<Scalar, ExecSpace>;
  using typename Base::Matrix;
  using typename Base::Vector;
  using Batch = BatchMatrix<Scalar, ExecSpace>;

  /// F: (n, n) symmetric (to 1000 eps max|F|, as HODLR and HSS require),
  /// finite; anything else is refused with an hfisher::Error.
  explicit DenseOperator(const Matrix& F) : F_(F) {
    constexpr const char* where = "hfisher::fisher::DenseOperator";
    hfisher::detail::require(F.extent(0) >= 1 && F.extent(0) == F.extent(1), where,
                             "F must be square and non-empty, got ", F.extent(0), "x", F.extent(1));
    hfisher::detail::check_finite_matrix(ExecSpace(), F, where, "F");
    // apply uses all of F, the Cholesky factor one triangle: both must agree
    hfisher::detail::check_symmetric<Scalar>(ExecSpace(), F, where);
  }

  Structure structure() const override { return Structure::Dense; }
  const char* tag() const override { return "dense"; }
  long size() const override { return long(F_.extent(0)); }
  const Matrix& matrix() const { return F_; }

  void apply(const Vector& v, const Vector& y) const override {
    this->check_vec(v, "hfisher::fisher::DenseOperator::apply", "v");
    this->check_vec(y, "hfisher::fisher::DenseOperator::apply", "y", false);
    const long n = size();
    Matrix vm(v.data(), n, 1), ym(y.data(), n, 1);
    kernels::detail::matmul_nocheck(ExecSpace(), Op::NoTrans, Op::NoTrans, Scalar(1), F_, vm, Scalar(0), ym);
  }

  void solve(const Vector& b, const Vector& x, double damping) const override {
    constexpr const char* where = "hfisher::fisher::DenseOperator::solve";
    detail::check_damping(damping, where);
    this->check_vec(b, where, "b");
    this->check_vec(x, where, "x", false);
    factor(damping, where);
    const long n = size();
    Kokkos::deep_copy(x, b);
    Batch X(x.data(), 1, n, 1);
    kernels::potrs(ExecSpace(), L_, X);
  }

  double logdet(double damping) const override {
    constexpr const char* where = "hfisher::fisher::DenseOperator::logdet";
    detail::check_damping(damping, where);
    factor(damping, where);
    Kokkos::View<Scalar*, typename Base::mem_space> out("ld", 1);
    kernels::logdet_cholesky(ExecSpace(), L_, out);
    return double(hfisher::detail::read_entry(out, 0));
  }

  Vector diag() const override {
    Vector d("hfisher::fisher::diag", size());
    auto F = F_;
    Kokkos::parallel_for(
        "hfisher::fisher::dense_diag", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i) { d(i) = F(i, i); });
    return d;
  }

  void add(const Base& other, double alpha) override {
    constexpr const char* where = "hfisher::fisher::DenseOperator::add";
    const auto* p = dynamic_cast<const DenseOperator*>(&other);
    hfisher::detail::require(p != nullptr, where, "cannot add a ", to_string(other.structure()),
                             " operator to a dense one");
    hfisher::detail::require(p->size() == size(), where, "sizes differ (", size(), " vs ", p->size(), ")");
    hfisher::detail::require(std::isfinite(alpha), where, "alpha is not finite");
    axpy(p->F_, alpha);
  }

  void scale(double alpha) override {
    hfisher::detail::require(std::isfinite(alpha), "hfisher::fisher::DenseOperator::scale", "alpha is not finite");
    auto F = F_;
    const Scalar a = Scalar(alpha);
    Kokkos::parallel_for(
        "hfisher::fisher::dense_scale", Kokkos::RangePolicy<ExecSpace>(0, long(F.span())),
        KOKKOS_LAMBDA(const long i) { F.data()[i] *= a; });
    cached_ = -1;
  }

  void axpy(const Matrix& G, double alpha) {
    auto F = F_;
    const Scalar a = Scalar(alpha);
    Kokkos::parallel_for(
        "hfisher::fisher::dense_add", Kokkos::RangePolicy<ExecSpace>(0, long(F.span())),
        KOKKOS_LAMBDA(const long i) { F.data()[i] += a * G.data()[i]; });
    cached_ = -1;
  }

  std::size_t bytes() const override { return F_.span() * sizeof(Scalar); }

  std::unique_ptr<Base> clone() const override {
    Matrix c("hfisher::fisher::dense", size(), size());
    Kokkos::deep_copy(c, F_);
    return std::make_unique<DenseOperator>(c);
  }

  Matrix to_dense() const override {
    Matrix c("hfisher::fisher::dense", size(), size());
    Kokkos::deep_copy(c, F_);
    return c;
  }

  void write(std::ostream& o) const override {
    io::put(o, std::int64_t(size()));
    io::put_view(o, F_);
  }
  static std::unique_ptr<Base> read_body(std::istream& i, const std::string& what) {
    constexpr const char* where = "hfisher::fisher::load_curvature";
    const auto n = io::get<std::int64_t>(i, what, where);
    hfisher::detail::require(n >= 1 && n <= (1L << 17), where, what, ": corrupt size ", n);
    io::require_available(i, static_cast<unsigned long long>(n) * static_cast<unsigned long long>(n) * sizeof(Scalar),
                          what, where);
    Matrix F("hfisher::fisher::dense", n, n);
    io::get_view(i, F, what, where);
    return std::make_unique<DenseOperator>(F);
  }

  void prepare(double damping) const override { factor(damping, "hfisher::fisher::DenseOperator::prepare"); }
  bool prepared(double damping) const override { return cached_ == damping; }
  bool write_prepared(std::ostream& o, double damping) const override {
    this->put_prepared_header(o, this->size(), damping, "hfisher::fisher::DenseOperator::write_prepared");
    io::put_view(o, L_);
    return true;
  }
  void read_prepared(std::istream& i, double damping, const std::string& what) const override {
    constexpr const char* where = "hfisher::fisher::DenseOperator::read_prepared";
    this->get_prepared_header(i, this->size(), damping, what, where, "a Cholesky factor");
    const long n = size();
    Batch L("hfisher::fisher::dense_L", 1, n, n);
    io::get_view(i, L, what, where);
    L_ = L;
    cached_ = damping;
  }

  /// Cholesky of F + damping I into the cache (public: it launches kernels).
  void factor(double damping, const char* where) const {
    if (cached_ == damping) return;
    const long n = size();
    L_ = Batch("hfisher::fisher::dense_L", 1, n, n);
    auto L = L_;
    auto F = F_;
    const Scalar lam = Scalar(damping);
    Kokkos::parallel_for(
        "hfisher::fisher::dense_shift", Kokkos::RangePolicy<ExecSpace>(0, n), KOKKOS_LAMBDA(const long i) {
          for (long j = 0; j < n; ++j) L(0, i, j) = F(i, j) + (i == j ? lam : Scalar(0));
        });
    Kokkos::View<int*, typename Base::mem_space> info("info", 1);
    Kokkos::View<Scalar*, typename Base::mem_space> piv("pivot", 1);
    kernels::potrf(ExecSpace(), L_, info, piv);
    const int bad = hfisher::detail::read_entry(info, 0);
    cached_ = -1;
    hfisher::detail::require(bad == 0, where, "F + damping I (damping = ", damping,
                             ") is not positive definite: pivot ", bad - 1, " is ",
                             double(hfisher::detail::read_entry(piv, 0)), " (increase the damping)");
    cached_ = damping;
  }

 private:
  Matrix F_;
  mutable Batch L_;
  mutable double cached_ = -1;
};

// compiled once in src/instantiate_fisher.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_DENSE_(S, E) extern template class DenseOperator<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_DENSE_)
#undef HFISHER_EXTERN_DENSE_

}  // namespace fisher
}  // namespace hfisher
