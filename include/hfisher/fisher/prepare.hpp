#pragma once
/// \file prepare.hpp
/// \brief Preparing and shipping factorizations, apart from the algebra:
/// fisher::Preparable (what a structure with a cached factorization
/// implements) and the free functions fisher::prepare, fisher::prepared,
/// fisher::write_prepared and fisher::read_prepared (what callers use, on
/// any CurvatureOperator: one without a factorization to prepare is always
/// prepared and ships nothing).

#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/fisher/curvature.hpp>

#include <cstdint>
#include <istream>
#include <ostream>
#include <string>

namespace hfisher {
namespace fisher {

/// A structure whose solve() and logdet() use a factorization cached for
/// the last damping (K-FAC: the eigendecompositions of its factors, valid
/// for every damping; dense: the Cholesky factor of F + damping I; low-rank
/// and multilevel: their capacitance Cholesky factors; HODLR, HSS: their
/// factorizations; block-diagonal: every block's). Computing it on demand is
/// what prepare() does, so that it can be computed where it is cheapest:
/// prepare_sharded() gives each layer block to one MPI rank and ships the
/// result to the others through write_prepared and read_prepared.
template <class Scalar, class ExecSpace = DefaultExec>
class Preparable {
 public:
  virtual ~Preparable() = default;
  /// Computes now the factorization for `damping`.
  virtual void prepare(double damping) const = 0;
  /// Whether the factorization for `damping` is cached.
  virtual bool prepared(double damping) const = 0;
  /// Writes the cached factorization for `damping` (after prepare) so that
  /// read_prepared can install it in an operator with the same contents;
  /// false (nothing written) when this structure does not ship its
  /// factorization (low-rank, multilevel: they prepare where they are).
  virtual bool write_prepared(std::ostream& o, double damping) const {
    (void)o;
    (void)damping;
    return false;
  }
  /// Installs a factorization written by write_prepared of an operator of
  /// the same shape (the caller guarantees the same contents).
  virtual void read_prepared(std::istream& i, double damping, const std::string& what) const {
    (void)i;
    (void)damping;
    throw Error(hfisher::detail::concat("hfisher::fisher::read_prepared: ", what,
                                        ": this structure does not read shipped factorizations"));
  }

 protected:
  /// Header of a shipped factorization made for one damping (dense, HODLR,
  /// HSS): the operator's size n and the damping; put requires the
  /// factorization to be prepared, get checks both against this operator
  /// (`kind` names what was shipped in the message).
  void put_prepared_header(std::ostream& o, long n, double damping, const char* where) const {
    hfisher::detail::require(prepared(damping), where, "call prepare(", damping, ") first");
    io::put(o, std::int64_t(n));
    io::put(o, damping);
  }
  void get_prepared_header(std::istream& i, long n, double damping, const std::string& what, const char* where,
                           const char* kind) const {
    const auto m = io::get<std::int64_t>(i, what, where);
    const double d = io::get<double>(i, what, where);
    hfisher::detail::require(m == n && d == damping, where, what, ": ", kind, " of size ", m, " at damping ", d,
                             ", expected ", n, " at ", damping);
  }
};

namespace detail {
template <class Scalar, class ExecSpace>
const Preparable<Scalar, ExecSpace>* preparable(const CurvatureOperator<Scalar, ExecSpace>& op) {
  return dynamic_cast<const Preparable<Scalar, ExecSpace>*>(&op);
}
}  // namespace detail

/// Computes now the factorization op.solve() and op.logdet() use at
/// `damping` (nothing to do for a structure without one, e.g. diagonal).
template <class Scalar, class ExecSpace>
void prepare(const CurvatureOperator<Scalar, ExecSpace>& op, double damping) {
  if (const auto* p = detail::preparable(op)) p->prepare(damping);
}

/// Whether op's factorization for `damping` is cached (always, for a
/// structure without one).
template <class Scalar, class ExecSpace>
bool prepared(const CurvatureOperator<Scalar, ExecSpace>& op, double damping) {
  const auto* p = detail::preparable(op);
  return p == nullptr || p->prepared(damping);
}

/// Writes op's factorization for `damping` (after prepare); false (nothing
/// written) where the structure does not ship one.
template <class Scalar, class ExecSpace>
bool write_prepared(const CurvatureOperator<Scalar, ExecSpace>& op, std::ostream& o, double damping) {
  const auto* p = detail::preparable(op);
  return p != nullptr && p->write_prepared(o, damping);
}

/// Installs in op a factorization that write_prepared wrote for an operator
/// with the same contents. Throws where the structure reads none.
template <class Scalar, class ExecSpace>
void read_prepared(const CurvatureOperator<Scalar, ExecSpace>& op, std::istream& i, double damping,
                   const std::string& what) {
  const auto* p = detail::preparable(op);
  if (p == nullptr)
    throw Error(hfisher::detail::concat("hfisher::fisher::read_prepared: ", what, ": a ", to_string(op.structure()),
                                        " operator does not read shipped factorizations"));
  p->read_prepared(i, damping, what);
}

}  // namespace fisher
}  // namespace hfisher
