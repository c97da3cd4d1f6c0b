#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <zlib.h>

#include "../fuzz_helpers.hpp"
#include "../test_helpers.hpp"

using namespace hfisher_test;

template <class C>
class MLPTest : public ::testing::Test {};
TYPED_TEST_SUITE(MLPTest, Configs, ConfigNames);

// the gradient of the mean loss against central differences (double), and
// against the same model in float at float tolerance
TYPED_TEST(MLPTest, GradientMatchesFiniteDifferences) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  for (auto act : {hfisher::nn::Activation::Tanh, hfisher::nn::Activation::ReLU}) {
    hfisher::nn::MLP<S, E> model({5, 7, 6, 3}, act, 3);
    auto data = hfisher::nn::to_device<S, E>(random_dataset(9, 5, 3, 4));
    typename hfisher::nn::MLP<S, E>::Cache c;
    typename hfisher::nn::MLP<S, E>::Vector grad("g", model.num_params());
    model.loss_grad(data.x, data.y, grad, c);
    auto gh = to_host1(grad);
    auto theta = model.params();
    auto th = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), theta);
    const double h = std::is_same<S, double>::value ? 1e-6 : 1e-2;
    const double tol = std::is_same<S, double>::value ? 1e-7 : 2e-2;
    for (long p = 0; p < model.num_params(); p += 3) {
      const S keep = th(p);
      th(p) = keep + S(h);
      Kokkos::deep_copy(theta, th);
      const double lp = model.loss_grad(data.x, data.y, grad, c);
      th(p) = keep - S(h);
      Kokkos::deep_copy(theta, th);
      const double lm = model.loss_grad(data.x, data.y, grad, c);
      th(p) = keep;
      Kokkos::deep_copy(theta, th);
      EXPECT_NEAR(gh[p], (lp - lm) / (2 * h), tol * (1 + std::abs(gh[p]))) << "parameter " << p;
    }
  }
}

TYPED_TEST(MLPTest, TrainsSaveLoadAndErrors) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using M = hfisher::nn::MLP<S, E>;
  // a separable problem: the label is the sign pattern of two features
  hfisher::nn::Dataset d;
  d.n = 256;
  d.features = 4;
  d.classes = 4;
  std::mt19937 g(1);
  std::normal_distribution<double> nd(0, 1);
  for (int i = 0; i < d.n; ++i) {
    float f[4];
    for (auto& v : f) v = float(nd(g));
    d.x.insert(d.x.end(), f, f + 4);
    d.y.push_back((f[0] > 0) + 2 * (f[1] > 0));
  }
  auto data = hfisher::nn::to_device<S, E>(d);
  M model({4, 16, 4}, hfisher::nn::Activation::ReLU, 7);
  const double acc0 = model.accuracy(data);
  hfisher::nn::Adam<S, E> opt;
  opt.lr = 0.02;
  typename M::Cache c;
  typename M::Vector grad("g", model.num_params());
  for (int it = 0; it < 300; ++it) {
    model.loss_grad(data.x, data.y, grad, c);
    opt.step(model.params(), grad);
  }
  const double acc = model.accuracy(data);
  EXPECT_GT(acc, 0.9) << "from " << acc0;
  // save / load: identical predictions
  const std::string path = unique_temp("mlp.bin");
  model.save(path);
  auto back = M::load(path);
  EXPECT_EQ(back.widths(), model.widths());
  EXPECT_DOUBLE_EQ(back.accuracy(data), acc);
  // truncated file, wrong precision, missing file
  {
    std::ifstream in(path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // (cutting exactly the 20-byte checksum trailer leaves a valid unsealed
    // file, which loads: docs/files.md)
    std::ofstream(path + ".cut", std::ios::binary) << all.substr(0, all.size() - 28);
  }
  EXPECT_THROW(M::load(path + ".cut"), hfisher::Error);
  EXPECT_THROW(M::load(path + ".missing"), hfisher::Error);
  // mutated payloads behind no seal: loaded or refused, never a crash
  fuzz_loader(path, [](const std::string& p) { M::load(p); });
  using Other = hfisher::nn::MLP<std::conditional_t<std::is_same<S, double>::value, float, double>, E>;
  EXPECT_THROW(Other::load(path), hfisher::Error);
  // bad input
  EXPECT_THROW(M({5}), hfisher::Error);        // no layers
  EXPECT_THROW(M({5, 0, 3}), hfisher::Error);  // zero width
  typename M::Matrix wrong("X", 3, 5);
  EXPECT_THROW(model.forward(wrong, c), hfisher::Error);  // data of the wrong width
  typename M::Vector short_grad("g", 3);
  EXPECT_THROW(model.loss_grad(data.x, data.y, short_grad, c), hfisher::Error);
  std::remove(path.c_str());
  std::remove((path + ".cut").c_str());
}

// SGD and Adam steps against the textbook formulas in double on the host
// (Adam: m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps), bias-corrected), over
// a few steps with weight decay; Tol::gemm x steps (a few roundings per entry)
TYPED_TEST(MLPTest, OptimizerStepsMatchReference) {
  using S = typename TypeParam::scalar;
  using E = typename TypeParam::exec;
  using V = Kokkos::View<S*, typename E::memory_space>;
  const int n = 257, steps = 5;
  std::mt19937 g(3);
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> th0(n);
  std::vector<std::vector<double>> grads(steps, std::vector<double>(n));
  for (auto& x : th0) x = nd(g);
  for (auto& gr : grads)
    for (auto& x : gr) x = nd(g) * 1e-2;
  auto to_dev = [](const std::vector<double>& h, V& d) {
    auto m = Kokkos::create_mirror_view(d);
    for (size_t i = 0; i < h.size(); ++i) m(i) = S(h[i]);
    Kokkos::deep_copy(d, m);
  };
  const double tol = Tol<S>::gemm * 10 * steps;
  {  // SGD with momentum
    hfisher::nn::SGD<S, E> o;
    o.lr = 0.05, o.momentum = 0.9, o.weight_decay = 1e-2;
    V th("th", n), gr("gr", n);
    to_dev(th0, th);
    std::vector<double> ref = th0, vel(n, 0.0);
    for (int t = 0; t < steps; ++t) {
      to_dev(grads[t], gr);
      o.step(th, gr);
      for (int i = 0; i < n; ++i) {
        vel[i] = o.momentum * vel[i] + double(S(grads[t][i])) + o.weight_decay * ref[i];
        ref[i] -= o.lr * vel[i];
      }
    }
    EXPECT_LE(max_abs_diff(to_host1(th), ref), tol * (1 + max_abs(ref))) << "SGD";
  }
  {  // Adam
    hfisher::nn::Adam<S, E> o;
    o.lr = 1e-2, o.weight_decay = 1e-2;
    V th("th", n), gr("gr", n);
    to_dev(th0, th);
    std::vector<double> ref = th0, m(n, 0.0), v(n, 0.0);
    for (int t = 1; t <= steps; ++t) {
      to_dev(grads[t - 1], gr);
      o.step(th, gr);
      for (int i = 0; i < n; ++i) {
        const double gi = double(S(grads[t - 1][i])) + o.weight_decay * ref[i];
        m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
        v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
        ref[i] -= o.lr * (m[i] / (1 - std::pow(o.beta1, t))) / (std::sqrt(v[i] / (1 - std::pow(o.beta2, t))) + o.eps);
      }
    }
    EXPECT_EQ(o.t, steps);
    EXPECT_LE(max_abs_diff(to_host1(th), ref), tol * (1 + max_abs(ref))) << "Adam";
    V wrong("wrong", n + 1);
    EXPECT_THROW(o.step(th, wrong), hfisher::Error);
  }
}

TEST(Idx, ReadsGzipAndPlainAndRejectsBadFiles) {
  const std::string dir = ::testing::TempDir();
  // 3 images of 2x2, labels 0, 1, 2
  std::vector<unsigned char> img = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
  for (int i = 0; i < 12; ++i) img.push_back(static_cast<unsigned char>(i * 20));
  std::vector<unsigned char> lab = {0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2};
  auto write_plain = [&](const std::string& p, const std::vector<unsigned char>& b) {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  };
  auto write_gz = [&](const std::string& p, const std::vector<unsigned char>& b) {
    gzFile f = gzopen(p.c_str(), "wb");
    gzwrite(f, b.data(), unsigned(b.size()));
    gzclose(f);
  };
  write_gz(dir + "/train-images-idx3-ubyte.gz", img);
  write_plain(dir + "/train-labels-idx1-ubyte", lab);
  auto d = hfisher::nn::load_mnist_dir(dir, true);
  EXPECT_EQ(d.n, 3);
  EXPECT_EQ(d.features, 4);
  EXPECT_EQ(d.y, (std::vector<int>{0, 1, 2}));
  EXPECT_FLOAT_EQ(d.x[5], 100.0f / 255.0f);
  // malformed: truncated data, bad magic, trailing bytes, count mismatch, missing
  auto cut = img;
  cut.resize(cut.size() - 1);
  write_plain(dir + "/cut.idx", cut);
  EXPECT_THROW(hfisher::nn::read_idx(dir + "/cut.idx"), hfisher::Error);
  auto bad = img;
  bad[0] = 7;
  write_plain(dir + "/bad.idx", bad);
  EXPECT_THROW(hfisher::nn::read_idx(dir + "/bad.idx"), hfisher::Error);
  auto extra = img;
  extra.push_back(1);
  write_plain(dir + "/extra.idx", extra);
  EXPECT_THROW(hfisher::nn::read_idx(dir + "/extra.idx"), hfisher::Error);
  // mutated headers and data: read or refused, never a crash
  const std::string fuzz_base = unique_temp("fuzz-base.idx");
  write_plain(fuzz_base, img);
  fuzz_loader(fuzz_base, [](const std::string& p) { hfisher::nn::read_idx(p); });
  std::remove(fuzz_base.c_str());
  auto lab2 = lab;
  lab2[7] = 2;
  lab2.pop_back();
  write_plain(dir + "/lab2.idx", lab2);
  EXPECT_THROW(hfisher::nn::read_mnist(dir + "/train-images-idx3-ubyte.gz", dir + "/lab2.idx"), hfisher::Error);
  try {
    hfisher::nn::read_idx(dir + "/nothing-here.idx");
    ADD_FAILURE() << "no throw";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nothing-here.idx"), std::string::npos) << e.what();
  }
  EXPECT_THROW(hfisher::nn::load_mnist_dir(dir + "/no-such-dir", true), hfisher::Error);
}

TEST(Idx, FashionMNISTFromDebianWhenInstalled) {
  const std::string dir = hfisher::nn::default_data_dir();
  if (!std::ifstream(dir + "/t10k-labels-idx1-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto d = hfisher::nn::load_mnist_dir(dir, false);
  EXPECT_EQ(d.n, 10000);
  EXPECT_EQ(d.features, 784);
  std::vector<int> counts(10, 0);
  for (int y : d.y) counts[y]++;
  for (int c : counts) EXPECT_EQ(c, 1000);  // Fashion-MNIST's test split is balanced
}

// A tiny file whose header declares 2^28 images of 8 x 8 is refused as
// truncated without reserving the 16 GiB it declares (the peak resident
// size grows by far less than that).
TEST(Idx, HugeDeclaredSizeIsNotAllocated) {
  const std::string p = ::testing::TempDir() + "/huge-images-idx3-ubyte.gz";
  std::vector<unsigned char> b = {0, 0, 8, 3, 16, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 8};
  for (int i = 0; i < 1000; ++i) b.push_back(static_cast<unsigned char>(i));
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, b.data(), unsigned(b.size()));
  gzclose(f);
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  try {
    hfisher::nn::read_idx(p);
    ADD_FAILURE() << "a 1 KB file declaring 16 GiB was accepted";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 256L * 1024) << "KiB of peak resident memory added";
  std::remove(p.c_str());
}
