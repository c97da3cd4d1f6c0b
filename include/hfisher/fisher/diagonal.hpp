#pragma once
/// \file diagonal.hpp
/// \brief Diagonal curvature: F ~ diag(d), d = mean of per-example squared
/// gradients (never the square of a batch mean).

#include <hfisher/core/instantiate.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/sums.hpp>
#include <hfisher/fisher/storage.hpp>

namespace hfisher {
namespace fisher {

template <class Scalar, class ExecSpace = DefaultExec>
class DiagonalOperator : public CurvatureOperator<Scalar, ExecSpace>,
                         public Summable<Scalar, ExecSpace>,
                         public Storable<Scalar, ExecSpace> {
 public:
  using Base = CurvatureOperator<Scalar, ExecSpace>;
  using typename Base::Matrix;
  using typename Base::Vector;

  /// d: (n) nonnegative finite entries.
  explicit DiagonalOperator(const Vector& d) : d_(d) {
    hfisher::detail::require(d.extent(0) >= 1, "hfisher::fisher::DiagonalOperator", "empty diagonal");
    this->check_vec(d, "hfisher::fisher::DiagonalOperator", "d");
  }

  Structure structure() const override { return Structure::Diagonal; }
  const char* tag() const override { return "diagonal"; }
  long size() const override { return long(d_.extent(0)); }
  const Vector& values() const { return d_; }

  void apply(const Vector& v, const Vector& y) const override {
    this->check_vec(v, "hfisher::fisher::DiagonalOperator::apply", "v");
    this->check_vec(y, "hfisher::fisher::DiagonalOperator::apply", "y", false);
    auto d = d_;
    Kokkos::parallel_for(
        "hfisher::fisher::diag_apply", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i) { y(i) = d(i) * v(i); });
  }

  void solve(const Vector& b, const Vector& x, double damping) const override {
    constexpr const char* where = "hfisher::fisher::DiagonalOperator::solve";
    detail::check_damping(damping, where);
    this->check_vec(b, where, "b");
    this->check_vec(x, where, "x", false);
    const long bad = first_nonpositive(damping);
    hfisher::detail::require(bad < 0, where, "d(", bad, ") + damping is not positive: the damped Fisher is singular");
    auto d = d_;
    const Scalar lam = Scalar(damping);
    Kokkos::parallel_for(
        "hfisher::fisher::diag_solve", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i) { x(i) = b(i) / (d(i) + lam); });
  }

  double logdet(double damping) const override {
    constexpr const char* where = "hfisher::fisher::DiagonalOperator::logdet";
    detail::check_damping(damping, where);
    const long bad = first_nonpositive(damping);
    hfisher::detail::require(bad < 0, where, "d(", bad, ") + damping is not positive");
    auto d = d_;
    double s = 0;
    Kokkos::parallel_reduce(
        "hfisher::fisher::diag_logdet", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i, double& acc) { acc += math::log(double(d(i)) + damping); }, s);
    return s;
  }

  double quad(const Vector& v) const override {
    this->check_vec(v, "hfisher::fisher::DiagonalOperator::quad", "v");
    auto d = d_;
    double s = 0;
    Kokkos::parallel_reduce(
        "hfisher::fisher::diag_quad", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i, double& acc) { acc += double(d(i)) * double(v(i)) * double(v(i)); }, s);
    return s;
  }

  Vector diag() const override {
    Vector o("hfisher::fisher::diag", size());
    Kokkos::deep_copy(o, d_);
    return o;
  }

  void add(const Base& other, double alpha) override {
    constexpr const char* where = "hfisher::fisher::DiagonalOperator::add";
    const auto* p = dynamic_cast<const DiagonalOperator*>(&other);
    hfisher::detail::require(p != nullptr, where, "cannot add a ", to_string(other.structure()),
                             " operator to a diagonal one");
    hfisher::detail::require(p->size() == size(), where, "sizes differ (", size(), " vs ", p->size(), ")");
    hfisher::detail::require(std::isfinite(alpha), where, "alpha is not finite");
    auto d = d_;
    auto e = p->d_;
    const Scalar a = Scalar(alpha);
    Kokkos::parallel_for(
        "hfisher::fisher::diag_add", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i) { d(i) += a * e(i); });
  }

  void scale(double alpha) override {
    hfisher::detail::require(std::isfinite(alpha), "hfisher::fisher::DiagonalOperator::scale", "alpha is not finite");
    auto d = d_;
    const Scalar a = Scalar(alpha);
    Kokkos::parallel_for(
        "hfisher::fisher::diag_scale", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i) { d(i) *= a; });
  }

  std::size_t bytes() const override { return d_.span() * sizeof(Scalar); }

  std::unique_ptr<Base> clone() const override {
    Vector c("hfisher::fisher::diag", size());
    Kokkos::deep_copy(c, d_);
    return std::make_unique<DiagonalOperator>(c);
  }

  void write(std::ostream& o) const override {
    io::put(o, std::int64_t(size()));
    io::put_view(o, d_);
  }
  static std::unique_ptr<Base> read_body(std::istream& i, const std::string& what) {
    constexpr const char* where = "hfisher::fisher::load_curvature";
    const auto n = io::get<std::int64_t>(i, what, where);
    hfisher::detail::require(n >= 1 && n < (1L << 40), where, what, ": corrupt size ", n);
    io::require_available(i, static_cast<unsigned long long>(n) * sizeof(Scalar), what, where);  // before allocating
    Vector d("hfisher::fisher::diag", n);
    io::get_view(i, d, what, where);
    return std::make_unique<DiagonalOperator>(d);
  }

  long first_nonpositive(double damping) const {
    auto d = d_;
    long first = size();
    Kokkos::parallel_reduce(
        "hfisher::fisher::diag_check", Kokkos::RangePolicy<ExecSpace>(0, size()),
        KOKKOS_LAMBDA(const long i, long& f) {
          if (!(double(d(i)) + damping > 0) && i < f) f = i;
        },
        Kokkos::Min<long>(first));
    return first < size() ? first : -1;
  }

 private:
  Vector d_;
};

// compiled once in src/instantiate_fisher.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_DIAGONAL_(S, E) extern template class DiagonalOperator<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_DIAGONAL_)
#undef HFISHER_EXTERN_DIAGONAL_

}  // namespace fisher
}  // namespace hfisher
