#pragma once
/// \file data_parallel.hpp
/// \brief Data-parallel training: every rank shuffles with the same
/// generator, takes its contiguous share of each global batch, and the
/// shard gradients (weighted by their share of the batch) are summed over
/// the ranks before the hook (a penalty) and the optimizer step, which run
/// identically on every rank: the parameters stay equal on all ranks and
/// equal (to rounding) to a one-process run with the same global batch.

#include <hfisher/core/comm.hpp>
#include <hfisher/nn/train.hpp>

#include <cmath>
#include <type_traits>

namespace hfisher {
namespace dist {

/// nn::train_epoch over the ranks of comm; returns the mean data loss of the
/// epoch (the same on every rank). With `shard_step` (the default) the step
/// of an elementwise optimizer (nn::SGD, nn::Adam) is sharded over the ranks
/// (nn::detail::train_epoch_shards): the optimizer object then holds state
/// for this rank's parameters only, and `hook` sees the summed gradient in
/// this rank's entries dist::shard(P, rank, size) only, so it must act entry
/// by entry on the gradient it adds to (FisherPenalty::add_gradient does);
/// pass shard_step = false for a hook that needs the whole summed gradient
/// (clipping by its norm, say).
template <template <class, class> class Net, class Scalar, class ExecSpace, class Opt, class Hook>
double train_epoch(Net<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data, int batch, Opt& opt,
                   std::mt19937_64& rng, Hook&& hook, const typename Net<Scalar, ExecSpace>::Labels& mask,
                   const Communicator& comm, bool shard_step = true) {
  return nn::detail::train_epoch_shards(model, data, batch, opt, rng, hook, mask, comm, shard_step);
}

/// Fraction of `data` the model classifies correctly, each rank scoring its
/// contiguous share of the examples (mask as in MLP::accuracy). Net is
/// nn::MLP or nn::Sequential (scored 256 examples at a time: a
/// convolution's patches take far more memory per example than a layer's
/// activations).
template <template <class, class> class Net, class Scalar, class ExecSpace>
double accuracy(const Net<Scalar, ExecSpace>& model, const nn::DeviceData<Scalar, ExecSpace>& data,
                const typename Net<Scalar, ExecSpace>::Labels& mask, const Communicator& comm) {
  constexpr int chunk = std::is_same_v<Net<Scalar, ExecSpace>, nn::MLP<Scalar, ExecSpace>> ? 1000 : 256;
  const long n = data.size();
  hfisher::detail::require(n >= 1, "hfisher::dist::accuracy", "no examples");
  const auto s = shard(n, comm.rank(), comm.size());
  double correct = 0;
  const long m = s.second - s.first;
  if (m > 0) correct = std::round(model.accuracy(nn::rows(data, s.first, m), chunk, mask) * double(m));
  return comm.sum(correct) / double(n);
}

}  // namespace dist
}  // namespace hfisher
