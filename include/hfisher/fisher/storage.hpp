#pragma once
/// \file storage.hpp
/// \brief Files of curvature operators, apart from their algebra:
/// fisher::Storable (what a structure implements: its tag and the body of
/// its format) and the free functions fisher::save_curvature,
/// fisher::write_curvature, fisher::load_curvature and
/// fisher::read_curvature (the last two read any structure; fisher/io.hpp
/// defines them).
///
/// A file is the header (magic "HFCURV\0\1", version 1, scalar size), the
/// structure's tag (16 bytes), its body and the magic again; save_curvature
/// writes it atomically and sealed (io::atomic_write_sealed: a checksum that
/// load_curvature verifies before parsing).

#include <hfisher/core/error.hpp>
#include <hfisher/core/instantiate.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/fisher/curvature.hpp>

#include <istream>
#include <memory>
#include <ostream>
#include <string>

namespace hfisher {
namespace fisher {

/// What a structure implements to be saved and loaded.
template <class Scalar, class ExecSpace = DefaultExec>
class Storable {
 public:
  virtual ~Storable() = default;
  /// Tag used in files ("diagonal", "kfac", "lowrank", "dense", "hodlr", "hss", "multilevel", "blockdiag").
  virtual const char* tag() const = 0;
  /// Writes the body of the file format.
  virtual void write(std::ostream& o) const = 0;
};

/// The magic at both ends of a curvature file or stream record.
inline const char (&curvature_magic())[8] {
  static const char m[8] = {'H', 'F', 'C', 'U', 'R', 'V', '\0', '\1'};
  return m;
}

/// Writes op as one tagged record (header, tag, body, magic): what
/// save_curvature puts in a file and containers (block-diagonal operators,
/// penalties, optimizer states) put in theirs. Throws where op's structure
/// cannot be stored.
template <class Scalar, class ExecSpace>
void write_curvature(const CurvatureOperator<Scalar, ExecSpace>& op, std::ostream& o) {
  const auto* s = dynamic_cast<const Storable<Scalar, ExecSpace>*>(&op);
  hfisher::detail::require(s != nullptr, "hfisher::fisher::write_curvature", "a ", to_string(op.structure()),
                           " operator cannot be stored");
  io::put_header(o, curvature_magic(), 1, sizeof(Scalar));
  char t[16] = {};
  for (int k = 0; k < 15 && s->tag()[k]; ++k) t[k] = s->tag()[k];
  o.write(t, 16);
  s->write(o);
  o.write(curvature_magic(), 8);
}

/// Saves op to `path` as a versioned binary file, written atomically and sealed.
template <class Scalar, class ExecSpace>
void save_curvature(const CurvatureOperator<Scalar, ExecSpace>& op, const std::string& path) {
  io::atomic_write_sealed(path, "hfisher::fisher::save_curvature", [&](std::ostream& o) { write_curvature(op, o); });
}

/// Reads one record that write_curvature wrote, of any structure (`what`
/// names the source in errors).
template <class Scalar, class ExecSpace = DefaultExec>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> read_curvature(std::istream& i, const std::string& what);

/// Loads what save_curvature wrote, of any structure (its checksum verified first).
template <class Scalar, class ExecSpace = DefaultExec>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> load_curvature(const std::string& path);

// compiled once in src/instantiate_fisher.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_CURVATURE_IO_(S, E)                                                                          \
  extern template std::unique_ptr<CurvatureOperator<S, E>> read_curvature<S, E>(std::istream&, const std::string&); \
  extern template std::unique_ptr<CurvatureOperator<S, E>> load_curvature<S, E>(const std::string&);
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_CURVATURE_IO_)
#undef HFISHER_EXTERN_CURVATURE_IO_

}  // namespace fisher
}  // namespace hfisher
