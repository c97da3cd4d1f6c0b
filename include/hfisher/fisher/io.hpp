#pragma once
/// \file io.hpp
/// \brief fisher::read_curvature and fisher::load_curvature (declared in
/// fisher/storage.hpp): dispatch on the tag in the file.

#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/dense.hpp>
#include <hfisher/fisher/diagonal.hpp>
#include <hfisher/fisher/hierarchical.hpp>
#include <hfisher/fisher/lowrank.hpp>
#include <hfisher/fisher/kfac.hpp>
#include <hfisher/fisher/multilevel.hpp>
#include <hfisher/fisher/storage.hpp>

#include <cstring>

namespace hfisher {
namespace fisher {

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> read_curvature(std::istream& i, const std::string& what) {
  constexpr const char* where = "hfisher::fisher::load_curvature";
  io::expect_header(i, curvature_magic(), 1, sizeof(Scalar), what, where, "an hfisher curvature file");
  char t[16] = {};
  i.read(t, 16);
  hfisher::detail::require(bool(i), where, what, ": file is truncated");
  t[15] = 0;
  const std::string tag(t);
  // a file's tag is the name of the structure its class stores (structure_names)
  bool known = false;
  Structure st{};
  for (const auto& r : structure_names)
    if (tag == r.name) known = true, st = r.value;
  std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> op;
  if (known) switch (st) {  // no default: -Wswitch names a structure added without its reader
      case Structure::Diagonal:
        op = DiagonalOperator<Scalar, ExecSpace>::read_body(i, what);
        break;
      case Structure::Dense:
        op = DenseOperator<Scalar, ExecSpace>::read_body(i, what);
        break;
      case Structure::KFAC:
        op = KFACOperator<Scalar, ExecSpace>::read_body(i, what);
        break;
      case Structure::LowRank:
        op = LowRankOperator<Scalar, ExecSpace>::read_body(i, what);
        break;
      case Structure::HODLR:
        op = HODLROperator<Scalar, ExecSpace>::read_body(i, what);
        break;
      case Structure::HSS:
        op = HSSOperator<Scalar, ExecSpace>::read_body(i, what);
        break;
      case Structure::Multilevel:
        op = MultilevelOperator<Scalar, ExecSpace>::read_body(i, what);
        break;
      case Structure::BlockDiagonal:
        op = BlockDiagonalOperator<Scalar, ExecSpace>::read_body(i, what);
        break;
      case Structure::Network:
        known = false;
        break;  // stored as a blockdiag of one hodlr block
    }
  if (!known) throw Error(hfisher::detail::concat(where, ": ", what, ": unknown structure tag '", tag, "'"));
  io::expect_magic(i, curvature_magic(), what, where, "complete (the file is truncated)");
  return op;
}

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> load_curvature(const std::string& path) {
  io::SealedFile f(path, "hfisher::fisher::load_curvature");  // checksum verified first
  auto op = read_curvature<Scalar, ExecSpace>(f.stream(), path);
  f.expect_end();
  return op;
}

}  // namespace fisher
}  // namespace hfisher
