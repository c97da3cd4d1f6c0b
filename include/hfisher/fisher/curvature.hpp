#pragma once
/// \file curvature.hpp
/// \brief The one interface every curvature structure implements:
/// CurvatureOperator over a flat parameter vector (the chosen layers of a
/// model, each layer's block W~ = [W | b] flattened row-major).
///
/// F v, (F + damping I)^-1 b, log det(F + damping I), v^T F v, diag(F), online
/// sums and scaling, memory, and versioned save/load. Damping is always an
/// explicit argument; factorizations for the last damping value are cached.

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

/// Abstract curvature operator of size n = size(). Vectors are Views (n).
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
  /// Tag used in files ("diagonal", "kfac", "lowrank", "dense", "hodlr", "hss", "multilevel", "blockdiag").
  virtual const char* tag() const = 0;
  /// Number of parameters n.
  virtual long size() const = 0;
  /// y = F v.
  virtual void apply(const Vector& v, const Vector& y) const = 0;
  /// x = (F + damping I)^-1 b. Throws when F + damping I is not positive
  /// definite (e.g. damping 0 on a rank-deficient Fisher).
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
  /// *this += alpha * other (same structure and shape; the online sum across
  /// tasks). Compressed structures recompress.
  virtual void add(const CurvatureOperator& other, double alpha = 1.0) = 0;
  /// *this *= alpha.
  virtual void scale(double alpha) = 0;
  /// Running average with a fresh estimate of the same structure:
  /// *this = decay * (*this) + (1 - decay) * fresh, decay in [0, 1]. The
  /// default scales and adds; K-FAC averages its factors instead (A and G
  /// each, the usual K-FAC running statistics), so the result stays one
  /// Kronecker term.
  virtual void decay_average(const CurvatureOperator& fresh, double decay) {
    hfisher::detail::require(decay >= 0 && decay <= 1, "hfisher::CurvatureOperator::decay_average", "decay = ", decay,
                             " (must lie in [0, 1])");
    scale(decay);
    add(fresh, 1.0 - decay);
  }
  /// Computes now the factorization solve() and logdet() use at `damping`
  /// (K-FAC: the eigendecompositions of its factors, valid for every damping;
  /// dense: the Cholesky factor of F + damping I; low-rank: the capacitance
  /// Cholesky; HODLR, HSS: their factorizations; block-diagonal: every block's), so
  /// that it can be computed where it is cheapest: prepare_sharded() gives
  /// each layer block to one MPI rank and ships the result to the others.
  virtual void prepare(double damping) const { (void)damping; }
  /// Whether the factorization for `damping` is cached.
  virtual bool prepared(double damping) const {
    (void)damping;
    return true;
  }
  /// Writes the cached factorization for `damping` (after prepare) so that
  /// read_prepared can install it in an operator with the same contents;
  /// false (nothing written) when this structure does not ship its
  /// factorization (low-rank, diagonal: they prepare where they are).
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
    throw Error(hfisher::detail::concat("hfisher::CurvatureOperator::read_prepared: ", what, ": a ", tag(),
                                        " operator does not read shipped factorizations"));
  }
  /// Bytes of the stored representation (caches of factorizations excluded).
  virtual std::size_t bytes() const = 0;
  /// A deep copy.
  virtual std::unique_ptr<CurvatureOperator> clone() const = 0;
  /// Writes the body of the file format (see save()).
  virtual void write(std::ostream& o) const = 0;

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

  /// Versioned binary file, written atomically.
  void save(const std::string& path) const {
    io::atomic_write_sealed(path, "hfisher::CurvatureOperator::save", [&](std::ostream& o) { write_tagged(o); });
  }
  /// Loads what save() wrote, of any structure (defined in fisher/io.hpp).
  static std::unique_ptr<CurvatureOperator> load(const std::string& path);
  /// Reads one tagged operator from a stream (defined in fisher/io.hpp).
  static std::unique_ptr<CurvatureOperator> read(std::istream& i, const std::string& what);

  /// Writes the tag and body (used by save and by containers).
  void write_tagged(std::ostream& o) const {
    io::put_header(o, file_magic(), 1, sizeof(Scalar));
    char t[16] = {};
    for (int k = 0; k < 15 && tag()[k]; ++k) t[k] = tag()[k];
    o.write(t, 16);
    write(o);
    o.write(file_magic(), 8);
  }
  static const char (&file_magic())[8] {
    static const char m[8] = {'H', 'F', 'C', 'U', 'R', 'V', '\0', '\1'};
    return m;
  }

 protected:
  /// The size check of every to_dense().
  static void check_dense_size(long n) {
    hfisher::detail::require(n <= max_dense_size, "hfisher::CurvatureOperator::to_dense", "n = ", n,
                             " is too large to form (at most ", max_dense_size, ")");
  }

  /// Header of a shipped factorization made for one damping (dense,
  /// HODLR): the operator's size and the damping; put requires the
  /// factorization to be prepared, get checks both against this operator
  /// (`kind` names what was shipped in the message).
  void put_prepared_header(std::ostream& o, double damping, const char* where) const {
    hfisher::detail::require(prepared(damping), where, "call prepare(", damping, ") first");
    io::put(o, std::int64_t(size()));
    io::put(o, damping);
  }
  void get_prepared_header(std::istream& i, double damping, const std::string& what, const char* where,
                           const char* kind) const {
    const auto n = io::get<std::int64_t>(i, what, where);
    const double d = io::get<double>(i, what, where);
    hfisher::detail::require(n == size() && d == damping, where, what, ": ", kind, " of size ", n, " at damping ", d,
                             ", expected ", size(), " at ", damping);
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
