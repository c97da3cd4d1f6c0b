#pragma once
// The layers beyond the MLP (nn/conv.hpp, nn/sequential.hpp): convolution
// forward + backward throughput against im2col + OpenBLAS GEMM (the same
// FLOPs in the same run, results compared), and a small CNN, a small vision
// transformer and an MLP trained on Fashion-MNIST (test accuracy and seconds
// per epoch).

#include <hfisher/nn/sequential.hpp>

#include <string>
#include <vector>

namespace hfisher_perf {

/// The library's presets nn::small_cnn and nn::small_vit (nn/presets.hpp)
/// at Fashion-MNIST's {1, 28, 28}, and their descriptions (for the tables).
std::vector<hfisher::nn::LayerSpec> fashion_cnn_layers();
std::string fashion_cnn_text();
std::vector<hfisher::nn::LayerSpec> fashion_vit_layers();
std::string fashion_vit_text();

struct LayersBenchOptions {
  int batch = 64;                                    ///< images per timed forward + backward
  int reps = 5;                                      ///< timed repetitions (median)
  int train_epochs = 0;                              ///< epochs of each model on Fashion-MNIST (0: no training)
  std::vector<std::string> models = {"cnn", "mlp"};  ///< trained: cnn, vit, mlp
  int train_examples = 0;                            ///< training examples used (0: all 60 000)
  int train_batch = 128;
  std::vector<std::string> optimizers = {"adam"};  ///< each model trained with each: adam, sgd, kfac
  double lr = 1e-3;                                ///< Adam's learning rate
  double sgd_lr = 0.05;                            ///< SGD's (momentum 0.9)
  double kfac_lr = 1e-3, kfac_damping = 1e-3;      ///< K-FAC's (NaturalGradientOptions::kfac() otherwise)
  int kfac_refresh = 50;                           ///< steps between K-FAC factor estimates
  bool kfac_reduce = false;  ///< K-FAC-reduce for layers at several positions (default: expand, KFC)
  unsigned seed = 1;
  std::string data_dir;  ///< empty: the default (Debian's dataset-fashion-mnist)
  std::string output;    ///< directory for layers.csv (empty: none)
};

int run_layers_bench(const LayersBenchOptions& o);

}  // namespace hfisher_perf
