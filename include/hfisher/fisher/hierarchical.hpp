#pragma once
/// \file hierarchical.hpp
/// \brief Hierarchical (HODLR) curvature block: dense leaf blocks and
/// low-rank off-diagonal blocks of F on a cluster tree of the parameters.
/// Solves and log-determinants factor H + damping I with the level-batched
/// symmetric factorization (hodlr_factor.hpp), cached for the last damping.

#include <hfisher/fisher/curvature.hpp>
#include <hfisher/hmatrix/hodlr.hpp>

namespace hfisher {
namespace fisher {

template <class Scalar, class ExecSpace = DefaultExec>
class HODLROperator : public CurvatureOperator<Scalar, ExecSpace> {
 public:
  using Base = CurvatureOperator<Scalar, ExecSpace>;
  using typename Base::Matrix;
  using typename Base::Vector;
  using H = HODLR<Scalar, ExecSpace>;

  explicit HODLROperator(const H& h) : h_(h) {
    hfisher::detail::require(h.size() >= 1 && h.leaf_blocks().extent(0) > 0, "hfisher::fisher::HODLROperator",
                             "the HODLR matrix is empty (not built)");
  }

  Structure structure() const override { return Structure::HODLR; }
  const char* tag() const override { return "hodlr"; }
  long size() const override { return h_.size(); }
  const H& hodlr() const { return h_; }

  void apply(const Vector& v, const Vector& y) const override {
    this->check_vec(v, "hfisher::fisher::HODLROperator::apply", "v");
    this->check_vec(y, "hfisher::fisher::HODLROperator::apply", "y", false);
    h_.apply(Matrix(v.data(), size(), 1), Matrix(y.data(), size(), 1));
  }

  void solve(const Vector& b, const Vector& x, double damping) const override {
    constexpr const char* where = "hfisher::fisher::HODLROperator::solve";
    detail::check_damping(damping, where);
    this->check_vec(b, where, "b");
    this->check_vec(x, where, "x", false);
    factor(damping);
    f_->solve(Matrix(b.data(), size(), 1), Matrix(x.data(), size(), 1));
  }

  double logdet(double damping) const override {
    detail::check_damping(damping, "hfisher::fisher::HODLROperator::logdet");
    factor(damping);
    return f_->logdet();
  }

  Vector diag() const override { return h_.diag(); }
  Matrix to_dense() const override { return h_.to_dense(); }

  void add(const Base& other, double alpha) override {
    constexpr const char* where = "hfisher::fisher::HODLROperator::add";
    const auto* p = dynamic_cast<const HODLROperator*>(&other);
    hfisher::detail::require(p != nullptr, where, "cannot add a ", other.tag(), " operator to a hierarchical one");
    hfisher::detail::require(p->size() == size(), where, "sizes differ (", size(), " vs ", p->size(), ")");
    h_.add(p->h_, Scalar(alpha));
    f_.reset();
  }

  void scale(double alpha) override {
    h_.scale(Scalar(alpha));
    f_.reset();
  }

  /// Re-truncates the off-diagonal blocks to tol (ranks only shrink).
  void recompress(double tol) {
    h_.recompress(tol);
    f_.reset();
  }

  std::size_t bytes() const override { return h_.bytes(); }
  std::unique_ptr<Base> clone() const override { return std::make_unique<HODLROperator>(h_.clone()); }
  void write(std::ostream& o) const override { h_.write(o); }
  static std::unique_ptr<Base> read_body(std::istream& i, const std::string& what) {
    return std::make_unique<HODLROperator>(H::read(i, what));
  }

  void prepare(double damping) const override { factor(damping); }
  bool prepared(double damping) const override { return f_ && cached_ == damping; }
  bool write_prepared(std::ostream& o, double damping) const override {
    this->put_prepared_header(o, damping, "hfisher::fisher::HODLROperator::write_prepared");
    f_->write(o);
    return true;
  }
  /// Installs a shipped factorization of H + damping I (the shifted matrix
  /// is rebuilt here: O(N leaf), no factoring).
  void read_prepared(std::istream& i, double damping, const std::string& what) const override {
    this->get_prepared_header(i, damping, what, "hfisher::fisher::HODLROperator::read_prepared", "a factorization");
    H shifted = h_.clone();
    shifted.add_diagonal(Scalar(damping));
    f_ = std::make_shared<HODLRFactorization<Scalar, ExecSpace>>(
        HODLRFactorization<Scalar, ExecSpace>::read(i, shifted, what));
    cached_ = damping;
  }

  /// Factorization of H + damping I into the cache.
  void factor(double damping) const {
    if (f_ && cached_ == damping) return;
    f_.reset();
    H shifted = h_.clone();
    shifted.add_diagonal(Scalar(damping));
    f_ = std::make_shared<HODLRFactorization<Scalar, ExecSpace>>(shifted.factor());
    cached_ = damping;
  }

 private:
  H h_;
  mutable std::shared_ptr<HODLRFactorization<Scalar, ExecSpace>> f_;
  mutable double cached_ = -1;
};

}  // namespace fisher
}  // namespace hfisher
