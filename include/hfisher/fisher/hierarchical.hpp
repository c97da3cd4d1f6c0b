#pragma once
/// \file hierarchical.hpp
/// \brief Hierarchical curvature blocks: a layer's Fisher block (or the whole
/// network's) as a HODLR matrix (dense leaf blocks, low-rank off-diagonal
/// blocks) or an HSS matrix (nested bases: O(N k) memory and factorization)
/// on a cluster tree of the parameters. One class template serves both
/// formats (HMatrixOperator); solves and log-determinants factor H + damping I
/// with the format's symmetric factorization (hodlr_factor.hpp,
/// hss_factor.hpp), cached for the last damping.

#include <hfisher/core/instantiate.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/prepare.hpp>
#include <hfisher/fisher/storage.hpp>
#include <hfisher/fisher/sums.hpp>
#include <hfisher/hmatrix/hodlr.hpp>
#include <hfisher/hmatrix/hss.hpp>

#include <type_traits>

namespace hfisher {
namespace fisher {

namespace detail {
/// What differs between the formats: the structure, the file tag, the
/// factorization, and what "built" means.
template <class HM>
struct HMatrixFormat;
template <class Scalar, class ExecSpace>
struct HMatrixFormat<HODLR<Scalar, ExecSpace>> {
  static constexpr Structure structure = Structure::HODLR;
  static constexpr const char* tag = "hodlr";
  static constexpr const char* name = "hfisher::fisher::HODLROperator";
  using Factorization = HODLRFactorization<Scalar, ExecSpace>;
  static bool built(const HODLR<Scalar, ExecSpace>& h) { return h.size() >= 1 && h.leaf_blocks().extent(0) > 0; }
};
template <class Scalar, class ExecSpace>
struct HMatrixFormat<HSS<Scalar, ExecSpace>> {
  static constexpr Structure structure = Structure::HSS;
  static constexpr const char* tag = "hss";
  static constexpr const char* name = "hfisher::fisher::HSSOperator";
  using Factorization = HSSFactorization<Scalar, ExecSpace>;
  static bool built(const HSS<Scalar, ExecSpace>& h) {
    return h.size() >= 1 && h.levels() >= 0 && h.D(h.levels()).extent(0) > 0;
  }
};
}  // namespace detail

/// A curvature block stored as the H-matrix HM (HODLR<S, E> or HSS<S, E>).
template <class HM>
class HMatrixOperator : public CurvatureOperator<typename HM::scalar_type, typename HM::exec_space>,
                        public Summable<typename HM::scalar_type, typename HM::exec_space>,
                        public Preparable<typename HM::scalar_type, typename HM::exec_space>,
                        public Storable<typename HM::scalar_type, typename HM::exec_space> {
 public:
  using Scalar = typename HM::scalar_type;
  using ExecSpace = typename HM::exec_space;
  using Base = CurvatureOperator<Scalar, ExecSpace>;
  using typename Base::Matrix;
  using typename Base::Vector;
  using H = HM;
  using Format = detail::HMatrixFormat<HM>;
  using Factorization = typename Format::Factorization;

  explicit HMatrixOperator(const H& h) : h_(h) {
    hfisher::detail::require(Format::built(h), Format::name, "the ", Format::tag, " matrix is empty (not built)");
  }

  Structure structure() const override { return Format::structure; }
  const char* tag() const override { return Format::tag; }
  long size() const override { return h_.size(); }
  /// The H-matrix (its build_info() and ranks() report the construction).
  const H& matrix() const { return h_; }
  /// The HODLR matrix of a HODLR block (the name this accessor had before HSS blocks).
  template <class M = HM, class = std::enable_if_t<std::is_same_v<M, HODLR<Scalar, ExecSpace>>>>
  const M& hodlr() const {
    return h_;
  }

  void apply(const Vector& v, const Vector& y) const override {
    static const std::string where = std::string(Format::name) + "::apply";  // once, not per product
    this->check_vec(v, where.c_str(), "v");
    this->check_vec(y, where.c_str(), "y", false);
    h_.apply(Matrix(v.data(), size(), 1), Matrix(y.data(), size(), 1));
  }

  void solve(const Vector& b, const Vector& x, double damping) const override {
    static const std::string where = std::string(Format::name) + "::solve";
    detail::check_damping(damping, where.c_str());
    this->check_vec(b, where.c_str(), "b");
    this->check_vec(x, where.c_str(), "x", false);
    factor(damping);
    f_->solve(Matrix(b.data(), size(), 1), Matrix(x.data(), size(), 1));
  }

  double logdet(double damping) const override {
    static const std::string where = std::string(Format::name) + "::logdet";
    detail::check_damping(damping, where.c_str());
    factor(damping);
    return f_->logdet();
  }

  Vector diag() const override { return h_.diag(); }
  Matrix to_dense() const override { return h_.to_dense(); }

  void add(const Base& other, double alpha) override {
    const std::string where = std::string(Format::name) + "::add";
    const auto* p = dynamic_cast<const HMatrixOperator*>(&other);
    hfisher::detail::require(p != nullptr, where.c_str(), "cannot add a ", to_string(other.structure()),
                             " operator to a ", Format::tag, " one");
    hfisher::detail::require(p->size() == size(), where.c_str(), "sizes differ (", size(), " vs ", p->size(), ")");
    h_.add(p->h_, Scalar(alpha));
    f_.reset();
  }

  void scale(double alpha) override {
    h_.scale(Scalar(alpha));
    f_.reset();
  }

  /// Re-truncates to tol (HODLR: the off-diagonal blocks, ranks only shrink;
  /// HSS: rebuilt from products with the current matrix).
  void recompress(double tol) {
    h_.recompress(tol);
    f_.reset();
  }

  std::size_t bytes() const override { return h_.bytes(); }
  std::unique_ptr<Base> clone() const override { return std::make_unique<HMatrixOperator>(h_.clone()); }
  void write(std::ostream& o) const override { h_.write(o); }
  static std::unique_ptr<Base> read_body(std::istream& i, const std::string& what) {
    return std::make_unique<HMatrixOperator>(H::read(i, what));
  }

  void prepare(double damping) const override { factor(damping); }
  bool prepared(double damping) const override { return f_ && cached_ == damping; }
  bool write_prepared(std::ostream& o, double damping) const override {
    this->put_prepared_header(o, this->size(), damping, (std::string(Format::name) + "::write_prepared").c_str());
    f_->write(o);
    return true;
  }
  /// Installs a shipped factorization of H + damping I (the shifted matrix
  /// is rebuilt here: O(N leaf), no factoring).
  void read_prepared(std::istream& i, double damping, const std::string& what) const override {
    const std::string where = std::string(Format::name) + "::read_prepared";
    this->get_prepared_header(i, this->size(), damping, what, where.c_str(), "a factorization");
    H shifted = h_.clone();
    shifted.add_diagonal(Scalar(damping));
    f_ = std::make_shared<Factorization>(Factorization::read(i, shifted, what));
    cached_ = damping;
  }

  /// Factorization of H + damping I into the cache.
  void factor(double damping) const {
    if (f_ && cached_ == damping) return;
    f_.reset();
    H shifted = h_.clone();
    shifted.add_diagonal(Scalar(damping));
    f_ = std::make_shared<Factorization>(shifted.factor());
    cached_ = damping;
  }

 private:
  H h_;
  mutable std::shared_ptr<Factorization> f_;
  mutable double cached_ = -1;
};

/// A HODLR block (Structure::HODLR and the network structure).
template <class Scalar, class ExecSpace = DefaultExec>
using HODLROperator = HMatrixOperator<HODLR<Scalar, ExecSpace>>;
/// An HSS block (Structure::HSS).
template <class Scalar, class ExecSpace = DefaultExec>
using HSSOperator = HMatrixOperator<HSS<Scalar, ExecSpace>>;

// compiled once in src/instantiate_fisher.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_HIERARCHICAL_(S, E)            \
  extern template class HMatrixOperator<HODLR<S, E>>; \
  extern template class HMatrixOperator<HSS<S, E>>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_HIERARCHICAL_)
#undef HFISHER_EXTERN_HIERARCHICAL_

}  // namespace fisher
}  // namespace hfisher
