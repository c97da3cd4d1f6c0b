#pragma once
/// \file presets.hpp
/// \brief Ready-made Sequential architectures for small one-channel images
/// (Fashion-MNIST and the like): the CNN and the vision transformer that the
/// drivers (`hfisher-continual --model cnn|vit`, `hfisher-bench layers` and
/// `fisher --model`) train. Each is a list of LayerSpec for
/// nn::Sequential(input, layers, seed), with a one-line description.

#include <hfisher/core/error.hpp>
#include <hfisher/nn/sequential.hpp>

#include <string>
#include <vector>

namespace hfisher {
namespace nn {

/// An architecture: its layers and a description for logs and reports.
struct Preset {
  std::vector<LayerSpec> layers;
  std::string text;
};

namespace detail {
inline void check_preset_input(const char* where, ImageShape in, int classes) {
  hfisher::detail::require(
      in.channels >= 1 && in.height >= 4 && in.width >= 4 && in.height % 4 == 0 && in.width % 4 == 0, where,
      "the input is ", in.channels, " x ", in.height, " x ", in.width,
      ": needs images whose height and width are multiples of 4 (two 2 x 2 poolings, or a 4 x 4 "
      "grid of patches)");
  hfisher::detail::require(classes >= 2, where, "classes = ", classes, " (need at least 2)");
}
}  // namespace detail

/// Two convolution blocks and two linear layers: conv 5 x 5 x 16 (padding 2),
/// ReLU, max-pool 2; conv 5 x 5 x 32 (padding 2), ReLU, max-pool 2; linear
/// 128, ReLU; linear `classes`. On 28 x 28 Fashion-MNIST: 215 370 parameters,
/// above 90% test accuracy after 4 epochs of Adam (docs/layers.md).
inline Preset small_cnn(ImageShape in, int classes = 10) {
  detail::check_preset_input("hfisher::nn::small_cnn", in, classes);
  return {{LayerSpec::conv(16, 5, 1, 2), LayerSpec::relu(), LayerSpec::max_pool(2), LayerSpec::conv(32, 5, 1, 2),
           LayerSpec::relu(), LayerSpec::max_pool(2), LayerSpec::linear(128), LayerSpec::relu(),
           LayerSpec::linear(classes)},
          "conv 5x5x16 pad 2, relu, maxpool 2, conv 5x5x32 pad 2, relu, maxpool 2, linear 128, relu, linear " +
              std::to_string(classes)};
}

/// A vision transformer: the image cut into a 4 x 4 grid of patches (7 x 7
/// on 28 x 28 images) embedded as 16 tokens of width 64, a position
/// embedding, two pre-normalization blocks (layer norm, self-attention with
/// 4 heads; layer norm, a GELU feed-forward of width 128; each residual), a
/// final layer norm, the mean over the tokens and a linear classifier. On
/// 28 x 28 images: 71 370 parameters.
inline Preset small_vit(ImageShape in, int classes = 10) {
  detail::check_preset_input("hfisher::nn::small_vit", in, classes);
  const int d = 64, heads = 4, ffn = 128, ph = in.height / 4, pw = in.width / 4;
  hfisher::detail::require(ph == pw, "hfisher::nn::small_vit", "the input is ", in.height, " x ", in.width,
                           ": needs square images (square patches)");
  Preset p;
  p.layers = {LayerSpec::conv(d, ph, ph), LayerSpec::position_embedding()};
  for (int block = 0; block < 2; ++block) {
    p.layers.push_back(LayerSpec::residual_begin());
    p.layers.push_back(LayerSpec::layer_norm());
    for (const auto& l : multi_head_attention(d, heads)) p.layers.push_back(l);
    for (const auto& l : {LayerSpec::residual_end(), LayerSpec::residual_begin(), LayerSpec::layer_norm(),
                          LayerSpec::conv(ffn, 1), LayerSpec::gelu(), LayerSpec::conv(d, 1), LayerSpec::residual_end()})
      p.layers.push_back(l);
  }
  for (const auto& l : {LayerSpec::layer_norm(), LayerSpec::avg_pool(4), LayerSpec::linear(classes)})
    p.layers.push_back(l);
  const std::string patch = std::to_string(ph) + "x" + std::to_string(ph);
  p.text = patch +
           " patches -> 16 tokens x 64, position embedding, 2 x [layer norm, attention 4 heads; layer norm, "
           "1x1 128, gelu, 1x1 64] (residual), layer norm, mean over tokens, linear " +
           std::to_string(classes);
  return p;
}

}  // namespace nn
}  // namespace hfisher
