#pragma once
/// \file idx.hpp
/// \brief Reader for the IDX format of MNIST and Fashion-MNIST (gzip-compressed
/// or not), and the default location of Debian's `dataset-fashion-mnist`.

#include <hfisher/nn/dataset.hpp>

#include <string>
#include <vector>

namespace hfisher {
namespace nn {

/// An IDX array of unsigned bytes: dims (outermost first), row-major data.
struct IdxArray {
  std::vector<int> dims;
  std::vector<unsigned char> data;
};

/// Reads an IDX file of unsigned bytes (type code 0x08), gzip-compressed or
/// plain. Throws hfisher::Error naming the path on a missing, truncated or
/// malformed file (wrong magic, other element type, absurd dimensions,
/// trailing bytes).
IdxArray read_idx(const std::string& path);

/// Reads an image file (n, rows, cols) and a label file (n) in IDX format.
/// Throws when counts disagree or a label is >= classes.
Dataset read_mnist(const std::string& images, const std::string& labels, int classes = 10);

/// $HFISHER_DATA_DIR when set, else /usr/share/datasets/fashion-mnist (the
/// Debian package dataset-fashion-mnist).
std::string default_data_dir();

/// Fashion-MNIST (or any MNIST-format set under the same file names) from
/// `dir` (empty: default_data_dir()): train-{images-idx3,labels-idx1}-ubyte[.gz]
/// or t10k-... for the test split. The error names the files it looked for.
Dataset load_mnist_dir(const std::string& dir, bool train);

/// Examples [first, first + count) of d.
Dataset slice(const Dataset& d, int first, int count);

}  // namespace nn
}  // namespace hfisher
