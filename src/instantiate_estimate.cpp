// The Fisher estimators (sample collection, every structure's builder) for
// the pairs of core/instantiate.hpp.
#include <hfisher/fisher/estimate.hpp>

namespace hfisher {
namespace fisher {
#define HFISHER_INSTANTIATE_ESTIMATE_(S, E)                                                                            \
  template FisherSamples<S, E> collect_samples(const nn::MLP<S, E>&, const nn::DeviceData<S, E>&, FisherKind,          \
                                               const FisherOptions&, const dist::Communicator&);                       \
  template FisherSamples<S, E> collect_samples(const nn::Sequential<S, E>&, const nn::DeviceData<S, E>&, FisherKind,   \
                                               const FisherOptions&, const dist::Communicator&);                       \
  template std::unique_ptr<CurvatureOperator<S, E>> build_curvature(const FisherSamples<S, E>&, Structure,             \
                                                                    const FisherOptions&, const dist::Communicator&);  \
  template std::unique_ptr<CurvatureOperator<S, E>> estimate_fisher(const nn::MLP<S, E>&, const nn::DeviceData<S, E>&, \
                                                                    FisherKind, Structure, const FisherOptions&,       \
                                                                    const dist::Communicator&);                        \
  template std::unique_ptr<CurvatureOperator<S, E>> estimate_fisher(                                                   \
      const nn::Sequential<S, E>&, const nn::DeviceData<S, E>&, FisherKind, Structure, const FisherOptions&,           \
      const dist::Communicator&);
HFISHER_FOR_EACH_INSTANCE(HFISHER_INSTANTIATE_ESTIMATE_)
}  // namespace fisher
}  // namespace hfisher
