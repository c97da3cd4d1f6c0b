#pragma once
/// \file estimate.hpp
/// \brief estimate_fisher(): a model and data -> its Fisher (any kind) in any
/// structure. The work lives in samples.hpp (the passes), builders/ (one
/// builder per structure, registered in build_curvature.hpp; the matrix-free
/// ones in builders/matrix_free.hpp), products.hpp and sharded.hpp.

#include <hfisher/core/instantiate.hpp>
#include <hfisher/fisher/build_curvature.hpp>
#include <hfisher/fisher/builders/matrix_free.hpp>
#include <hfisher/fisher/options.hpp>
#include <hfisher/fisher/samples.hpp>
#include <hfisher/fisher/sharded.hpp>

namespace hfisher {
namespace fisher {

/// Estimates the Fisher (kind) of `model` on the first opts.examples
/// examples of `data` and stores it in `structure`. The operator acts on the
/// flat vector of the chosen layers (opts.layers; all by default), each layer
/// block W~ = [W | b] row-major, in layer order. With opts.matrix_free the
/// blocks are built from Fisher-vector products (builders/matrix_free.hpp).
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> estimate_fisher(const nn::MLP<Scalar, ExecSpace>& model,
                                                                      const nn::DeviceData<Scalar, ExecSpace>& data,
                                                                      FisherKind kind, Structure structure,
                                                                      const FisherOptions& opts = {},
                                                                      const dist::Communicator& comm = {}) {
  if (opts.matrix_free || structure == Structure::Network)
    return detail::matrix_free_curvature(model, data, kind, structure, opts, comm);
  return build_curvature(collect_samples(model, data, kind, opts, comm), structure, opts, comm);
}

/// The same for an nn::Sequential (convolution, pooling and linear layers):
/// opts.layers counts its parameterized layers. Every structure built from
/// samples is available (a convolution's per-example gradient sums over its
/// output positions; K-FAC is then KFC, builders/kfac.hpp), except the
/// multilevel one for convolutions; the matrix-free builders and the network
/// structure take an MLP.
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> estimate_fisher(const nn::Sequential<Scalar, ExecSpace>& model,
                                                                      const nn::DeviceData<Scalar, ExecSpace>& data,
                                                                      FisherKind kind, Structure structure,
                                                                      const FisherOptions& opts = {},
                                                                      const dist::Communicator& comm = {}) {
  hfisher::detail::require(!opts.matrix_free && structure != Structure::Network, "hfisher::estimate_fisher",
                           "the matrix-free builders and the network structure take an MLP, not a Sequential");
  return build_curvature(collect_samples(model, data, kind, opts, comm), structure, opts, comm);
}

// The estimators' instances for one (S, E) pair, declared with KW: `extern
// template` here, `template` in src/instantiate_estimate.cpp, which compiles
// them once (core/instantiate.hpp). One list, so the two cannot drift apart.
#define HFISHER_ESTIMATE_INSTANCES(KW, S, E)                                                                      \
  KW FisherSamples<S, E> collect_samples(const nn::MLP<S, E>&, const nn::DeviceData<S, E>&, FisherKind,           \
                                         const FisherOptions&, const dist::Communicator&);                        \
  KW FisherSamples<S, E> collect_samples(const nn::Sequential<S, E>&, const nn::DeviceData<S, E>&, FisherKind,    \
                                         const FisherOptions&, const dist::Communicator&);                        \
  KW std::unique_ptr<CurvatureOperator<S, E>> build_curvature(const FisherSamples<S, E>&, Structure,              \
                                                              const FisherOptions&, const dist::Communicator&);   \
  KW std::unique_ptr<CurvatureOperator<S, E>> estimate_fisher(const nn::MLP<S, E>&, const nn::DeviceData<S, E>&,  \
                                                              FisherKind, Structure, const FisherOptions&,        \
                                                              const dist::Communicator&);                         \
  KW std::unique_ptr<CurvatureOperator<S, E>> estimate_fisher(const nn::Sequential<S, E>&,                        \
                                                              const nn::DeviceData<S, E>&, FisherKind, Structure, \
                                                              const FisherOptions&, const dist::Communicator&);
#define HFISHER_EXTERN_ESTIMATE_(S, E) HFISHER_ESTIMATE_INSTANCES(extern template, S, E)
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_ESTIMATE_)
#undef HFISHER_EXTERN_ESTIMATE_

}  // namespace fisher

using fisher::build_curvature;
using fisher::collect_samples;
using fisher::estimate_fisher;
using fisher::FisherSamples;
using fisher::prepare_sharded;
using fisher::PrepareReport;

}  // namespace hfisher
