#pragma once
/// \file dataset.hpp
/// \brief The host-side labelled data set every part of nn/ and continual/
/// takes (readers such as nn/idx.hpp fill it; the MLP copies it to the
/// device), kept apart from any file format.

#include <vector>

namespace hfisher {
namespace nn {

/// A labelled image set on the host: x is (n, features) row-major with pixel
/// values scaled to [0, 1]; y holds labels in [0, classes). height and
/// width are the image's shape when the data are images (one channel,
/// features = height * width, row-major: what convolution layers need);
/// 0 when unknown.
struct Dataset {
  int n = 0;
  int features = 0;
  int classes = 10;
  int height = 0;
  int width = 0;
  std::vector<float> x;
  std::vector<int> y;
};

}  // namespace nn
}  // namespace hfisher
