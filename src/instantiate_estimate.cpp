// The Fisher estimators (sample collection, every structure's builder) for
// the pairs of core/instantiate.hpp; the list is estimate.hpp's.
#include <hfisher/fisher/estimate.hpp>

namespace hfisher {
namespace fisher {
#define HFISHER_INSTANTIATE_ESTIMATE_(S, E) HFISHER_ESTIMATE_INSTANCES(template, S, E)
HFISHER_FOR_EACH_INSTANCE(HFISHER_INSTANTIATE_ESTIMATE_)
}  // namespace fisher
}  // namespace hfisher
