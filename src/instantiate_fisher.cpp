// The curvature operators (with fisher::read_curvature and load_curvature,
// which fisher/io.hpp defines) for the pairs of core/instantiate.hpp.
#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/dense.hpp>
#include <hfisher/fisher/diagonal.hpp>
#include <hfisher/fisher/hierarchical.hpp>
#include <hfisher/fisher/io.hpp>  // read_curvature and load_curvature
#include <hfisher/fisher/kfac.hpp>
#include <hfisher/fisher/lowrank.hpp>
#include <hfisher/fisher/multilevel.hpp>

namespace hfisher {
#define HFISHER_INSTANTIATE_CURVATURE_(S, E) template class CurvatureOperator<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_INSTANTIATE_CURVATURE_)

namespace fisher {
#define HFISHER_INSTANTIATE_CURVATURE_IO_(S, E)                                                              \
  template std::unique_ptr<CurvatureOperator<S, E>> read_curvature<S, E>(std::istream&, const std::string&); \
  template std::unique_ptr<CurvatureOperator<S, E>> load_curvature<S, E>(const std::string&);
HFISHER_FOR_EACH_INSTANCE(HFISHER_INSTANTIATE_CURVATURE_IO_)

#define HFISHER_INSTANTIATE_FISHER_(S, E)      \
  template class DiagonalOperator<S, E>;       \
  template class DenseOperator<S, E>;          \
  template class BlockDiagonalOperator<S, E>;  \
  template class KFACOperator<S, E>;           \
  template class LowRankOperator<S, E>;        \
  template class MultilevelOperator<S, E>;     \
  template class HMatrixOperator<HODLR<S, E>>; \
  template class HMatrixOperator<HSS<S, E>>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_INSTANTIATE_FISHER_)
}  // namespace fisher
}  // namespace hfisher
