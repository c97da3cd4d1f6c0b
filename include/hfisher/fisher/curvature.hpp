#pragma once
/// \file curvature.hpp
/// \brief The structures' names (Structure) and the algebra every curvature
/// structure implements: CurvatureOperator over a flat parameter vector (the
/// chosen layers of a model, each layer's block W~ = [W | b] flattened
/// row-major).
///
/// F v, (F + damping I)^-1 b, log det(F + damping I), v^T F v, diag(F) and
/// memory. Damping is always an explicit argument. Sums, preparation and
/// files are the separate interfaces of fisher/sums.hpp, fisher/prepare.hpp
/// and fisher/storage.hpp.

#include <hfisher/core/error.hpp>
#include <hfisher/core/instantiate.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/math.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/fisher/kind.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace hfisher {

/// How the curvature matrix is stored.
enum class Structure {
  Diagonal,  ///< diag(F): mean of per-example squared gradients
  KFAC,      ///< per layer G (x) A (Martens & Grosse 2015)
  LowRank,   ///< diag + W W^T over all chosen parameters (Woodbury solves)
  HODLR,     ///< per layer HODLR: dense leaves, low-rank off-diagonal blocks
  /// The former name of HODLR (same stored integer, 3).
  Hierarchical [[deprecated("Structure::Hierarchical is now Structure::HODLR")]] = HODLR,
  BlockDiagonal,  ///< per layer a block of FisherOptions::block structure (Dense by default)
  Dense,          ///< one dense matrix per layer (the inner structure of BlockDiagonal)
  Multilevel,     ///< per layer diag + nested local low-rank terms (PSD by construction; multilevel.hpp)
  /// one HODLR over every chosen parameter, cross-layer blocks included,
  /// built from Fisher-vector products of the whole network (builders/matrix_free.hpp)
  Network,
  /// per layer HSS: nested bases, O(N k) memory and factorization (hss.hpp);
  /// from per-sample factors or, with FisherOptions::matrix_free, from products
  HSS
  // a new structure goes last (stored integers stay stable) and gets its row in structure_names
};

/// The registration point of the structures' names: one row per Structure,
/// the name the CLIs, the tables and the files use. to_string,
/// structure_from_string and is_structure all read this table and nothing else.
struct StructureName {
  Structure value;
  const char* name;
};
inline constexpr StructureName structure_names[] = {{Structure::Diagonal, "diagonal"},
                                                    {Structure::KFAC, "kfac"},
                                                    {Structure::LowRank, "lowrank"},
                                                    {Structure::HODLR, "hodlr"},
                                                    {Structure::BlockDiagonal, "blockdiag"},
                                                    {Structure::Dense, "dense"},
                                                    {Structure::Multilevel, "multilevel"},
                                                    {Structure::Network, "network"},
                                                    {Structure::HSS, "hss"}};

const char* to_string(Structure s);

/// Whether s is the value of a Structure (for files that store one as an integer).
inline bool is_structure(int s) {
  for (const auto& r : structure_names)
    if (int(r.value) == s) return true;
  return false;
}

/// The Structure named `name` (a name of structure_names, or "hierarchical",
/// the former name of "hodlr"). Throws Error naming the known names.
inline Structure structure_from_string(const std::string& name, const char* where = "hfisher::structure_from_string") {
  for (const auto& r : structure_names)
    if (name == r.name) return r.value;
  if (name == "hierarchical") return Structure::HODLR;
  std::string known;
  for (const auto& r : structure_names) known += std::string(known.empty() ? "" : ", ") + r.name;
  throw Error(hfisher::detail::concat(where, ": unknown structure '", name, "' (known: ", known, ")"));
}

namespace fisher {

/// Parameters of one layer as the operator sees them: rows (out) x cols
/// (in + 1), starting at `offset` of the operator's vector.
struct Block {
  int rows = 0;
  int cols = 0;
  long offset = 0;
  long size() const { return long(rows) * cols; }
};

namespace detail {
template <class E, class V>
double dot(const V& a, const V& b) {
  double s = 0;
  Kokkos::parallel_reduce(
      "hfisher::fisher::dot", Kokkos::RangePolicy<E>(0, a.extent(0)),
      KOKKOS_LAMBDA(const long i, double& acc) { acc += double(a(i)) * double(b(i)); }, s);
  return s;
}

inline void check_damping(double damping, const char* where) {
  hfisher::detail::require(std::isfinite(damping) && damping >= 0, where, "damping = ", damping,
                           " (must be finite and >= 0)");
}
}  // namespace detail

}  // namespace fisher

/// The algebra of a curvature matrix F of size n = size(): products, damped
/// solves, log-determinants, quadratic forms, the diagonal and memory.
/// Vectors are Views (n). The other jobs of a structure are separate small
/// interfaces, used through free functions that take any CurvatureOperator:
/// online sums (fisher::Summable; fisher::add, fisher::scale,
/// fisher::decay_average in fisher/sums.hpp), preparing and shipping
/// factorizations (fisher::Preparable; fisher::prepare, fisher::prepared,
/// fisher::write_prepared, fisher::read_prepared in fisher/prepare.hpp) and
/// files (fisher::Storable; fisher::save_curvature, fisher::load_curvature,
/// fisher::write_curvature, fisher::read_curvature in fisher/storage.hpp).
/// Every structure of the library implements all three (diagonal has no
/// factorization to prepare); an operator written outside it needs only
/// this class.
template <class Scalar, class ExecSpace = DefaultExec>
class CurvatureOperator {
 public:
  using exec_space = ExecSpace;
  using mem_space = typename ExecSpace::memory_space;
  using Vector = Kokkos::View<Scalar*, mem_space>;
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, mem_space>;

  virtual ~CurvatureOperator() = default;

  /// Structure this operator stores.
  virtual Structure structure() const = 0;
  /// Number of parameters n.
  virtual long size() const = 0;
  /// y = F v.
  virtual void apply(const Vector& v, const Vector& y) const = 0;
  /// x = (F + damping I)^-1 b. Throws when F + damping I is not positive
  /// definite (e.g. damping 0 on a rank-deficient Fisher). A structure with
  /// a factorization caches it for the last damping (fisher::prepare).
  virtual void solve(const Vector& b, const Vector& x, double damping) const = 0;
  /// log det(F + damping I).
  virtual double logdet(double damping) const = 0;
  /// v^T F v.
  virtual double quad(const Vector& v) const {
    Vector y("hfisher::CurvatureOperator::Fv", size());
    apply(v, y);
    return fisher::detail::dot<ExecSpace>(v, y);
  }
  /// diag(F), a new vector.
  virtual Vector diag() const = 0;
  /// Bytes of the stored representation (caches of factorizations excluded).
  virtual std::size_t bytes() const = 0;
  /// A deep copy.
  virtual std::unique_ptr<CurvatureOperator> clone() const = 0;

  /// The largest n for which to_dense() forms the n x n matrix (2 GiB in double).
  static constexpr long max_dense_size = 16384;

  /// The dense n x n matrix (small models only: n <= max_dense_size).
  virtual Matrix to_dense() const {
    const long n = size();
    check_dense_size(n);
    Matrix F("hfisher::CurvatureOperator::dense", n, n);
    Vector e("e", n), y("y", n);
    auto eh = Kokkos::create_mirror_view(e);
    for (long j = 0; j < n; ++j) {
      Kokkos::deep_copy(eh, Scalar(0));
      eh(j) = Scalar(1);
      Kokkos::deep_copy(e, eh);
      apply(e, y);
      Kokkos::deep_copy(Kokkos::subview(F, Kokkos::ALL(), j), y);
    }
    return F;
  }

 protected:
  /// The size check of every to_dense().
  static void check_dense_size(long n) {
    hfisher::detail::require(n <= max_dense_size, "hfisher::CurvatureOperator::to_dense", "n = ", n,
                             " is too large to form (at most ", max_dense_size, ")");
  }
  void check_vec(const Vector& v, const char* where, const char* arg, bool finite = true) const {
    hfisher::detail::require(long(v.extent(0)) == size(), where, arg, " has ", v.extent(0),
                             " entries, the operator has ", size());
    if (finite) {
      Kokkos::View<const Scalar**, Kokkos::LayoutRight, mem_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>> m(
          v.data(), 1, v.extent(0));
      hfisher::detail::check_finite2(ExecSpace(), m, where, arg);
    }
  }
};

// compiled once in src/instantiate_fisher.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_CURVATURE_(S, E) extern template class CurvatureOperator<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_CURVATURE_)
#undef HFISHER_EXTERN_CURVATURE_

inline const char* to_string(Structure s) {
  for (const auto& r : structure_names)
    if (r.value == s) return r.name;
  return "?";
}

}  // namespace hfisher
