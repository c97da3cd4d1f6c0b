#pragma once
// A tiny synthetic MNIST-format data set for the continual-learning tests
// (the library's experiment and the hfisher-continual driver): 4 x 4 images
// whose label is the position of a bright pixel, learnable in a few steps.
#include <random>
#include <vector>

namespace hfisher_test {

/// The header of an IDX file of unsigned bytes with the given dimensions.
inline std::vector<unsigned char> idx_header(int type_dims, const std::vector<int>& dims) {
  std::vector<unsigned char> h = {0, 0, 8, (unsigned char)type_dims};
  for (int d : dims)
    for (int s = 24; s >= 0; s -= 8) h.push_back((unsigned char)((d >> s) & 255));
  return h;
}

/// The bytes of an images file and a labels file of n examples.
struct IdxPair {
  std::vector<unsigned char> images, labels;
};

inline IdxPair tiny_mnist(int n, unsigned seed) {
  std::mt19937 g(seed);
  IdxPair f{idx_header(3, {n, 4, 4}), idx_header(1, {n})};
  for (int i = 0; i < n; ++i) {
    const int y = int(g() % 10);
    for (int p = 0; p < 16; ++p) f.images.push_back((unsigned char)((g() % 60) + ((p % 10) == y ? 180 : 0)));
    f.labels.push_back((unsigned char)y);
  }
  return f;
}

}  // namespace hfisher_test
