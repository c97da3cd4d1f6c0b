#pragma once
/// \file sums.hpp
/// \brief Online sums of curvature operators, apart from their algebra:
/// fisher::Summable (what a structure implements) and the free functions
/// fisher::add, fisher::scale and fisher::decay_average (what callers use,
/// on any CurvatureOperator; an operator without sums is a clear error).

#include <hfisher/core/error.hpp>
#include <hfisher/fisher/curvature.hpp>

namespace hfisher {
namespace fisher {

/// The online sum across tasks, scaling and the running average of a
/// structure. Every structure of the library implements it, each against an
/// operator of its own structure and shape.
template <class Scalar, class ExecSpace = DefaultExec>
class Summable {
 public:
  using Operator = CurvatureOperator<Scalar, ExecSpace>;
  virtual ~Summable() = default;
  /// *this += alpha * other (same structure and shape). Compressed
  /// structures recompress.
  virtual void add(const Operator& other, double alpha) = 0;
  /// *this *= alpha.
  virtual void scale(double alpha) = 0;
  /// *this = decay * (*this) + (1 - decay) * fresh, decay in [0, 1]. The
  /// default scales and adds; K-FAC averages its factors instead (A and G
  /// each, the usual K-FAC running statistics), so the result stays one
  /// Kronecker term.
  virtual void decay_average(const Operator& fresh, double decay) {
    hfisher::detail::require(decay >= 0 && decay <= 1, "hfisher::fisher::decay_average", "decay = ", decay,
                             " (must lie in [0, 1])");
    scale(decay);
    add(fresh, 1.0 - decay);
  }
};

namespace detail {
template <class Scalar, class ExecSpace>
Summable<Scalar, ExecSpace>& summable(CurvatureOperator<Scalar, ExecSpace>& op, const char* where) {
  auto* s = dynamic_cast<Summable<Scalar, ExecSpace>*>(&op);
  hfisher::detail::require(s != nullptr, where, "a ", to_string(op.structure()), " operator does not support sums");
  return *s;
}
}  // namespace detail

/// into += alpha * other (same structure and shape; the online sum across tasks).
template <class Scalar, class ExecSpace>
void add(CurvatureOperator<Scalar, ExecSpace>& into, const CurvatureOperator<Scalar, ExecSpace>& other,
         double alpha = 1.0) {
  detail::summable(into, "hfisher::fisher::add").add(other, alpha);
}

/// op *= alpha.
template <class Scalar, class ExecSpace>
void scale(CurvatureOperator<Scalar, ExecSpace>& op, double alpha) {
  detail::summable(op, "hfisher::fisher::scale").scale(alpha);
}

/// op = decay * op + (1 - decay) * fresh, decay in [0, 1] (Summable::decay_average).
template <class Scalar, class ExecSpace>
void decay_average(CurvatureOperator<Scalar, ExecSpace>& op, const CurvatureOperator<Scalar, ExecSpace>& fresh,
                   double decay) {
  detail::summable(op, "hfisher::fisher::decay_average").decay_average(fresh, decay);
}

}  // namespace fisher
}  // namespace hfisher
