#pragma once
/// \file hfisher.hpp
/// \brief The public API of hfisher.

#include <hfisher/core/comm.hpp>
#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/math.hpp>
#include <hfisher/core/output.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/core/scope_guard.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/kernels/cholesky.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/lowrank.hpp>
#include <hfisher/kernels/matmul.hpp>
#include <hfisher/kernels/padding.hpp>
#include <hfisher/kernels/qr.hpp>
#include <hfisher/kernels/randomized.hpp>
#include <hfisher/kernels/svd.hpp>
#include <hfisher/kernels/syev.hpp>
#include <hfisher/kernels/trsm.hpp>
#include <hfisher/hmatrix/cluster_tree.hpp>
#include <hfisher/hmatrix/compression.hpp>
#include <hfisher/hmatrix/hodlr.hpp>
#include <hfisher/hmatrix/hss.hpp>
#include <hfisher/nn/data_parallel.hpp>
#include <hfisher/nn/dataset.hpp>
#include <hfisher/nn/idx.hpp>
#include <hfisher/nn/mlp.hpp>
#include <hfisher/nn/optimizers.hpp>
#include <hfisher/nn/train.hpp>
#include <hfisher/fisher/fisher.hpp>
#include <hfisher/optim/natural_gradient.hpp>
#include <hfisher/continual/metrics.hpp>
#include <hfisher/continual/penalty.hpp>
#include <hfisher/continual/streams.hpp>
