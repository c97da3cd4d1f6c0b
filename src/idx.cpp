#include <hfisher/core/error.hpp>
#include <hfisher/nn/idx.hpp>

#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>

namespace hfisher {
namespace nn {

namespace {
constexpr const char* kWhere = "hfisher::nn::read_idx";

struct GzCloser {
  void operator()(gzFile_s* f) const {
    if (f) gzclose(f);
  }
};

// reads exactly n bytes; false at end of file
bool read_exact(gzFile f, unsigned char* out, std::size_t n, const std::string& path) {
  std::size_t got = 0;
  while (got < n) {
    const unsigned chunk = unsigned(std::min<std::size_t>(n - got, 1u << 30));
    const int r = gzread(f, out + got, chunk);
    if (r < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      throw Error(detail::concat(kWhere, ": ", path, ": read error (", msg ? msg : "unknown", ")"));
    }
    if (r == 0) return false;
    got += std::size_t(r);
  }
  return true;
}
}  // namespace

IdxArray read_idx(const std::string& path) {
  detail::require(std::filesystem::is_regular_file(path), kWhere, "cannot open ", path,
                  " (missing or not a regular file)");
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  detail::require(f != nullptr, kWhere, "cannot open ", path);
  unsigned char head[4];
  detail::require(read_exact(f.get(), head, 4, path), kWhere, path, ": file is empty or truncated (no IDX header)");
  detail::require(head[0] == 0 && head[1] == 0, kWhere, path, ": not an IDX file (bad magic)");
  detail::require(head[2] == 0x08, kWhere, path, ": element type 0x", std::hex, int(head[2]),
                  " is not unsigned byte (0x08)");
  const int nd = head[3];
  detail::require(nd >= 1 && nd <= 4, kWhere, path, ": ", nd, " dimensions (expected 1 to 4)");
  IdxArray a;
  std::size_t total = 1;
  for (int d = 0; d < nd; ++d) {
    unsigned char b[4];
    detail::require(read_exact(f.get(), b, 4, path), kWhere, path, ": truncated header");
    const std::uint32_t v =
        (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
    detail::require(v >= 1 && v <= (1u << 28), kWhere, path, ": dimension ", d, " = ", v, " is not plausible");
    a.dims.push_back(int(v));
    total *= v;
    detail::require(total <= (std::size_t(1) << 34), kWhere, path, ": array too large (", total, " bytes)");
  }
  // The data grow as they arrive (chunks that double, from 1 MiB): a short
  // file that declares a huge array fails at its real size, never after
  // reserving what its header declares.
  std::size_t got = 0;
  while (got < total) {
    const std::size_t chunk = std::min(total - got, std::max(got, std::size_t(1) << 20));
    a.data.resize(got + chunk);
    detail::require(read_exact(f.get(), a.data.data() + got, chunk, path), kWhere, path,
                    ": truncated (header promises ", total, " bytes of data)");
    got += chunk;
  }
  unsigned char extra;
  detail::require(!read_exact(f.get(), &extra, 1, path), kWhere, path, ": trailing bytes after the data");
  return a;
}

Dataset read_mnist(const std::string& images, const std::string& labels, int classes) {
  constexpr const char* where = "hfisher::nn::read_mnist";
  detail::require(classes >= 2, where, "classes = ", classes, " (need at least 2)");
  const IdxArray im = read_idx(images), lb = read_idx(labels);
  detail::require(im.dims.size() >= 2, where, images, ": expected an image array (n, rows, cols), got ", im.dims.size(),
                  " dimension(s)");
  detail::require(lb.dims.size() == 1, where, labels, ": expected a label vector, got ", lb.dims.size(), " dimensions");
  detail::require(im.dims[0] == lb.dims[0], where, images, " holds ", im.dims[0], " images but ", labels, " holds ",
                  lb.dims[0], " labels");
  Dataset d;
  d.n = im.dims[0];
  d.features = int(im.data.size() / std::size_t(d.n));
  d.classes = classes;
  if (im.dims.size() == 3) {  // (n, rows, cols): images of one channel
    d.height = im.dims[1];
    d.width = im.dims[2];
  }
  d.x.resize(im.data.size());
  for (std::size_t i = 0; i < im.data.size(); ++i) d.x[i] = float(im.data[i]) / 255.0f;
  d.y.resize(d.n);
  for (int i = 0; i < d.n; ++i) {
    d.y[i] = lb.data[i];
    detail::require(d.y[i] < classes, where, labels, ": label ", d.y[i], " of example ", i, " is not below ", classes);
  }
  return d;
}

std::string default_data_dir() {
  if (const char* e = std::getenv("HFISHER_DATA_DIR"); e && *e) return e;
  return "/usr/share/datasets/fashion-mnist";
}

Dataset load_mnist_dir(const std::string& dir_in, bool train) {
  const std::string dir = dir_in.empty() ? default_data_dir() : dir_in;
  const std::string stem = train ? "train" : "t10k";
  auto find = [&](const std::string& base) {
    for (const char* ext : {".gz", ""}) {
      const std::string p = dir + "/" + base + ext;
      if (std::filesystem::exists(p)) return p;
    }
    throw Error(detail::concat("hfisher::nn::load_mnist_dir: neither ", dir, "/", base, ".gz nor ", dir, "/", base,
                               " exists (install the Debian package dataset-fashion-mnist, or point --data / "
                               "HFISHER_DATA_DIR at a directory of MNIST-format files)"));
  };
  return read_mnist(find(stem + "-images-idx3-ubyte"), find(stem + "-labels-idx1-ubyte"));
}

Dataset slice(const Dataset& d, int first, int count) {
  detail::require(first >= 0 && count >= 0 && long(first) + count <= d.n, "hfisher::nn::slice", "examples [", first,
                  ", ", long(first) + count, ") are outside [0, ", d.n, ")");
  Dataset s;
  s.n = count;
  s.features = d.features;
  s.classes = d.classes;
  s.height = d.height;
  s.width = d.width;
  s.x.assign(d.x.begin() + std::size_t(first) * d.features, d.x.begin() + std::size_t(first + count) * d.features);
  s.y.assign(d.y.begin() + first, d.y.begin() + first + count);
  return s;
}

}  // namespace nn
}  // namespace hfisher
