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

/// The small CNN both studies train on Fashion-MNIST ({1, 28, 28} images):
/// conv 5x5x16 pad 2, relu, maxpool 2, conv 5x5x32 pad 2, relu, maxpool 2,
/// linear 128, relu, linear 10.
std::vector<hfisher::nn::LayerSpec> fashion_cnn_layers();
/// Those layers in words (for the tables).
std::string fashion_cnn_text();
/// A small vision transformer for {1, 28, 28} images: 7 x 7 patches as 16
/// tokens of width 64, a position embedding, 2 pre-normalization blocks
/// (self-attention with 4 heads, a GELU feed-forward of width 128, each in a
/// residual block), a final layer normalization, the mean over tokens and a
/// linear classifier.
std::vector<hfisher::nn::LayerSpec> fashion_vit_layers();
std::string fashion_vit_text();

struct LayersBenchOptions {
  int batch = 64;          ///< images per timed forward + backward
  int reps = 5;            ///< timed repetitions (median)
  int train_epochs = 0;    ///< epochs of each model on Fashion-MNIST (0: no training)
  std::vector<std::string> models = {"cnn", "mlp"};  ///< trained: cnn, vit, mlp
  int train_examples = 0;  ///< training examples used (0: all 60 000)
  int train_batch = 128;
  std::vector<std::string> optimizers = {"adam"};  ///< each model trained with each: adam, sgd, kfac
  double lr = 1e-3;        ///< Adam's learning rate
  double sgd_lr = 0.05;    ///< SGD's (momentum 0.9)
  double kfac_lr = 1e-3, kfac_damping = 1e-3;  ///< K-FAC's (NaturalGradientOptions::kfac() otherwise)
  int kfac_refresh = 50;   ///< steps between K-FAC factor estimates
  bool kfac_reduce = false;  ///< K-FAC-reduce for layers at several positions (default: expand, KFC)
  unsigned seed = 1;
  std::string data_dir;    ///< empty: the default (Debian's dataset-fashion-mnist)
  std::string output;      ///< directory for layers.csv (empty: none)
};

int run_layers_bench(const LayersBenchOptions& o);

}  // namespace hfisher_perf
