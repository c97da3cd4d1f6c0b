#pragma once
/// \file train.hpp
/// \brief Data-parallel training: every rank shuffles with the same
/// generator, takes its contiguous share of each global batch, and the
/// shard gradients (weighted by their share of the batch) are summed over
/// the ranks before the hook (a penalty) and the optimizer step, which run
/// identically on every rank: the parameters stay equal on all ranks and
/// equal (to rounding) to a one-process run with the same global batch.

#include <hfisher/dist/comm.hpp>
#include <hfisher/nn/train.hpp>

namespace hfisher {
namespace dist {

/// nn::train_epoch over the ranks of comm; returns the mean data loss of the
/// epoch (the same on every rank).
template <class Scalar, class ExecSpace, class Opt, class Hook>
double train_epoch(nn::MLP<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data, int batch,
                   Opt& opt, std::mt19937_64& rng, Hook&& hook, const typename nn::MLP<Scalar, ExecSpace>::Labels& mask,
                   const Communicator& comm) {
  return nn::detail::train_epoch_shards(model, data, batch, opt, rng, hook, mask, comm.rank(), comm.size(),
                                        [&](const auto& grad, double loss) {
                                          comm.allreduce_sum(grad);
                                          return comm.sum(loss);
                                        });
}

}  // namespace dist
}  // namespace hfisher
