// HODLR and its factorization for the pairs of core/instantiate.hpp.
#include <hfisher/hmatrix/hodlr.hpp>

namespace hfisher {
#define HFISHER_INSTANTIATE_HODLR_(S, E) \
  template class HODLR<S, E>;            \
  template class HODLRFactorization<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_INSTANTIATE_HODLR_)
}  // namespace hfisher
