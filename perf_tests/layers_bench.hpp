#pragma once
// The layers beyond the MLP (nn/conv.hpp, nn/sequential.hpp): convolution
// forward + backward throughput against im2col + OpenBLAS GEMM (the same
// FLOPs in the same run, results compared), and a small CNN trained on
// Fashion-MNIST (test accuracy and seconds per epoch).

#include <hfisher/nn/sequential.hpp>

#include <string>
#include <vector>

namespace hfisher_perf {

/// The small CNN both studies train on Fashion-MNIST ({1, 28, 28} images):
/// conv 5x5x16 pad 2, relu, maxpool 2, conv 5x5x32 pad 2, relu, maxpool 2,
/// linear 128, relu, linear 10.
std::vector<hfisher::nn::LayerSpec> fashion_cnn_layers();
/// Those layers in words (for the tables).
std::string fashion_cnn_text();

struct LayersBenchOptions {
  int batch = 64;          ///< images per timed forward + backward
  int reps = 5;            ///< timed repetitions (median)
  int train_epochs = 0;    ///< epochs of the Fashion-MNIST CNN (0: no training)
  int train_examples = 0;  ///< training examples used (0: all 60 000)
  int train_batch = 128;
  double lr = 1e-3;        ///< Adam's learning rate
  unsigned seed = 1;
  std::string data_dir;    ///< empty: the default (Debian's dataset-fashion-mnist)
  std::string output;      ///< directory for layers.csv (empty: none)
};

int run_layers_bench(const LayersBenchOptions& o);

}  // namespace hfisher_perf
