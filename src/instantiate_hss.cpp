// HSS and its factorization for the pairs of core/instantiate.hpp.
#include <hfisher/hmatrix/hss.hpp>

namespace hfisher {
#define HFISHER_INSTANTIATE_HSS_(S, E) \
  template class HSS<S, E>;            \
  template class HSSFactorization<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_INSTANTIATE_HSS_)
}  // namespace hfisher
