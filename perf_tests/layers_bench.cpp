#include "layers_bench.hpp"
#include "studies.hpp"

#include <hfisher/hfisher.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <vector>

#include "bench_common.hpp"
#include "lapack_decls.hpp"

namespace hfisher_perf {
namespace {

using S = double;
using E = Kokkos::DefaultExecutionSpace;
using Net = hfisher::nn::Sequential<S, E>;
using hfisher::nn::LayerSpec;

struct ConvCase {
  const char* name;
  hfisher::nn::ImageShape in;
  int out, k, stride, pad;
};

/// The peer: ReLU, im2col, the three GEMMs of a convolution's forward and
/// backward passes as OpenBLAS dgemm calls (its own threads), col2im; host
/// arrays, row-major, the same layout and work as hfisher's.
struct Baseline {
  hfisher::nn::Conv2DShape g;
  int B = 0;
  std::vector<double> Xr, A, Z, dW, dA, dX;

  Baseline(const hfisher::nn::Conv2DShape& shape, int batch) : g(shape), B(batch) {
    const long BT = long(B) * g.positions();
    Xr.resize(std::size_t(B) * g.in.features());
    A.resize(std::size_t(BT) * g.cols());
    dA.resize(A.size());
    Z.resize(std::size_t(BT) * g.out_channels);
    dW.resize(std::size_t(g.size()));
    dX.resize(Xr.size());
  }

  void run(const double* X, const double* W, const double* dZ) {
    const int T = g.positions(), K1 = g.cols(), K = g.patch(), C = g.in.channels, H = g.in.height, Wd = g.in.width,
              OH = g.out_height(), OW = g.out_width(), kh = g.kernel_h, kw = g.kernel_w, st = g.stride, p = g.padding,
              Co = g.out_channels;
    const long F = g.in.features(), BT = long(B) * T;
#pragma omp parallel for
    for (long i = 0; i < long(B) * F; ++i) Xr[i] = X[i] > 0 ? X[i] : 0;
#pragma omp parallel for
    for (long r = 0; r < BT; ++r) {
      const long b = r / T;
      const int t = int(r % T), oy = t / OW, ox = t % OW;
      double* a = &A[std::size_t(r) * K1];
      for (int i = 0; i < kh; ++i)
        for (int j = 0; j < kw; ++j) {
          const int y = oy * st - p + i, x = ox * st - p + j, dst = (i * kw + j) * C;
          const bool in = y >= 0 && y < H && x >= 0 && x < Wd;
          for (int c = 0; c < C; ++c) a[dst + c] = in ? Xr[b * F + (long(y) * Wd + x) * C + c] : 0.0;
        }
      a[K] = 1;
    }
    const int n = int(BT);
    const double one = 1, zero = 0;
    dgemm_("T", "N", &Co, &n, &K1, &one, W, &K1, A.data(), &K1, &zero, Z.data(), &Co);    // Z = A W^T
    dgemm_("N", "T", &K1, &Co, &n, &one, A.data(), &K1, dZ, &Co, &zero, dW.data(), &K1);  // dW = dZ^T A
    dgemm_("N", "N", &K1, &n, &Co, &one, W, &K1, dZ, &Co, &zero, dA.data(), &K1);         // dA = dZ W
#pragma omp parallel for
    for (long r = 0; r < long(B) * H * Wd; ++r) {
      const long b = r / (long(H) * Wd);
      const int yx = int(r % (long(H) * Wd)), y = yx / Wd, x = yx % Wd;
      double* d = &dX[std::size_t(b * F + long(yx) * C)];
      for (int c = 0; c < C; ++c) d[c] = 0;
      for (int i = 0; i < kh; ++i) {
        const int ty = y + p - i;
        if (ty < 0 || ty % st || ty / st >= OH) continue;
        for (int j = 0; j < kw; ++j) {
          const int tx = x + p - j;
          if (tx < 0 || tx % st || tx / st >= OW) continue;
          const double* s = &dA[std::size_t((b * T + (ty / st) * OW + tx / st) * K1 + (i * kw + j) * C)];
          for (int c = 0; c < C; ++c) d[c] += s[c];
        }
      }
    }
  }
};

/// The peer of the attention core: per (example, head), OpenBLAS dgemm for
/// S = q k^T, O = P v and the four GEMMs of the backward pass (dP = dO v^T,
/// dq = s dS k, dk = s dS^T q, dv = P^T dO), softmax and dS in loops; the
/// (example, head) pairs shared by OpenMP threads, each dgemm on one thread.
/// Host arrays in hfisher's layout (rows of 3 d and d channels per token), so
/// q, k, v and dO are read in place through the leading dimension.
struct AttentionBaseline {
  hfisher::nn::AttentionShape a;
  int B = 0;
  std::vector<double> Y, dX, P, dS;

  AttentionBaseline(const hfisher::nn::AttentionShape& shape, int batch) : a(shape), B(batch) {
    const std::size_t T = a.tokens;
    Y.resize(std::size_t(B) * T * a.d);
    dX.resize(std::size_t(B) * T * 3 * a.d);
    P.resize(std::size_t(B) * a.heads * T * T);
    dS.resize(P.size());
  }

  void run(const double* X, const double* dY) {
    const int T = a.tokens, d = a.d, H = a.heads, dh = a.head_dim(), ld3 = 3 * d;
    const double sc = 1.0 / std::sqrt(double(dh)), one = 1, zero = 0;
#pragma omp parallel for schedule(dynamic)
    for (long bh = 0; bh < long(B) * H; ++bh) {
      const long b = bh / H;
      const int h = int(bh % H);
      const double *q = X + b * T * ld3 + h * dh, *k = q + d, *v = q + 2 * d, *dO = dY + b * T * d + h * dh;
      double *p = &P[std::size_t(bh) * T * T], *ds = &dS[std::size_t(bh) * T * T];
      double *dq = &dX[std::size_t(b) * T * ld3 + h * dh], *dk = dq + d, *dv = dq + 2 * d;
      double* o = &Y[std::size_t(b) * T * d + h * dh];
      // column-major views: q^T (dh x T, ld 3d); row-major P (T x T) is P^T
      dgemm_("T", "N", &T, &T, &dh, &sc, k, &ld3, q, &ld3, &zero, p, &T);  // row i of p: s q_i . k_j
      for (int i = 0; i < T; ++i) {
        double* r = p + std::size_t(i) * T;
        const int n = a.causal ? i + 1 : T;
        double mx = r[0], z = 0;
        for (int j = 1; j < n; ++j) mx = std::max(mx, r[j]);
        for (int j = 0; j < n; ++j) z += (r[j] = std::exp(r[j] - mx));
        for (int j = 0; j < n; ++j) r[j] /= z;
        for (int j = n; j < T; ++j) r[j] = 0;
      }
      dgemm_("N", "N", &dh, &T, &T, &one, v, &ld3, p, &T, &zero, o, &d);    // O = P v
      dgemm_("T", "N", &T, &T, &dh, &one, v, &ld3, dO, &d, &zero, ds, &T);  // dP = dO v^T
      for (int i = 0; i < T; ++i) {
        double *r = ds + std::size_t(i) * T, c = 0;
        const double* pr = p + std::size_t(i) * T;
        for (int j = 0; j < T; ++j) c += pr[j] * r[j];
        for (int j = 0; j < T; ++j) r[j] = pr[j] * (r[j] - c);
      }
      dgemm_("N", "N", &dh, &T, &T, &sc, k, &ld3, ds, &T, &zero, dq, &ld3);  // dq = s dS k
      dgemm_("N", "T", &dh, &T, &T, &sc, q, &ld3, ds, &T, &zero, dk, &ld3);  // dk = s dS^T q
      dgemm_("N", "T", &dh, &T, &T, &one, dO, &d, p, &T, &zero, dv, &ld3);   // dv = P^T dO
    }
  }
};

template <class V>
std::vector<double> host(const V& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<double>(h.data(), h.data() + h.span());
}

double rel_diff(const std::vector<double>& a, const double* b, std::size_t n) {
  double d = 0, s = 0;
  for (std::size_t i = 0; i < n; ++i) {
    d = std::max(d, std::abs(a[i] - b[i]));
    s = std::max(s, std::abs(b[i]));
  }
  return d / std::max(s, 1e-300);
}

/// Trains `model` with the K-FAC preset (natural_gradient.hpp) at the
/// bench's lr, damping and refresh interval.
template <template <class, class> class N, class Epochs>
void with_kfac(N<S, E>& model, const hfisher::nn::DeviceData<S, E>& train, const LayersBenchOptions& o, Epochs&& epochs,
               const std::string& label) {
  auto no = hfisher::NaturalGradientOptions::kfac();
  no.lr = o.kfac_lr;
  no.damping = o.kfac_damping;
  no.refresh = o.kfac_refresh;
  if (o.kfac_reduce) no.fisher.kfac.variant = hfisher::KFACVariant::Reduce;
  hfisher::NaturalGradient<S, E, N> opt(model, train, no);
  epochs(model, opt, label);
}

}  // namespace

// the library's presets (nn/presets.hpp) at Fashion-MNIST's 28 x 28
std::vector<LayerSpec> fashion_cnn_layers() { return hfisher::nn::small_cnn({1, 28, 28}, 10).layers; }

std::string fashion_cnn_text() { return hfisher::nn::small_cnn({1, 28, 28}, 10).text; }

std::vector<LayerSpec> fashion_vit_layers() { return hfisher::nn::small_vit({1, 28, 28}, 10).layers; }

std::string fashion_vit_text() { return hfisher::nn::small_vit({1, 28, 28}, 10).text; }

int run_layers_bench(const LayersBenchOptions& o) {
  constexpr const char* where = "hfisher-bench layers";
  if (!o.output.empty()) hfisher::io::prepare_output_dir(o.output, where);  // before any work
  hfisher::nn::Dataset train, test;
  if (o.train_epochs > 0) {  // a missing data set is reported before the timings
    train = hfisher::nn::load_mnist_dir(o.data_dir, true);
    test = hfisher::nn::load_mnist_dir(o.data_dir, false);
    hfisher::detail::require(o.train_examples <= train.n, where, "--train-examples ", o.train_examples,
                             " but the training set has ", train.n, " examples");
    if (o.train_examples > 0) train = hfisher::nn::slice(train, 0, o.train_examples);
  }
  const Machine mc = describe_machine();
  std::printf("hfisher convolution forward + backward vs ReLU + im2col + 3 OpenBLAS dgemm + col2im (double)\n");
  std::printf("machine: %s | backend: %s | host threads: %s | OMP_WAIT_POLICY: %s | %s\n", mc.cpu.c_str(),
              mc.backend.c_str(), mc.host_threads.c_str(), mc.omp_wait.c_str(), mc.date.c_str());
  std::printf(
      "batch %d, median of %d; GFLOP/s count the 3 GEMMs (6 B T C_out (K + 1)); ratio = hfisher / OpenBLAS;\n"
      "diff = max relative difference of outputs, weight and input gradients\n\n",
      o.batch, o.reps);
  std::printf("%-16s %-22s %10s %10s %9s %9s %6s %9s\n", "case", "in -> out", "hfisher_s", "blas_s", "hf_GF/s",
              "blas_GF/s", "ratio", "diff");
  std::ostringstream csv;
  csv << "# machine: " << mc.cpu << "; backend: " << mc.backend << "; host threads: " << mc.host_threads << "; "
      << mc.date << "\n";
  csv << "case,batch,hfisher_s,blas_s,hfisher_gflops,blas_gflops,ratio,diff\n";
  const ConvCase cases[] = {{"fmnist-conv1", {1, 28, 28}, 16, 5, 1, 2},
                            {"fmnist-conv2", {16, 14, 14}, 32, 5, 1, 2},
                            {"3x3-64ch", {64, 14, 14}, 64, 3, 1, 1},
                            {"3x3-stride2", {32, 28, 28}, 64, 3, 2, 1}};
  std::mt19937_64 gen(o.seed);
  std::normal_distribution<double> nd(0, 1);
  for (const auto& cs : cases) {
    // ReLU first, so the convolution computes its input gradient (col2im) as
    // a layer inside a network does
    Net net(cs.in, {LayerSpec::relu(), LayerSpec::conv(cs.out, cs.k, cs.stride, cs.pad)}, o.seed);
    const auto& g = net.geometry(0);
    const int B = o.batch;
    const long BT = long(B) * g.positions();
    Net::Matrix X("X", B, cs.in.features()), dZ("dZ", B, g.out().features());
    {
      auto xh = Kokkos::create_mirror_view(X);
      for (std::size_t i = 0; i < xh.span(); ++i) xh.data()[i] = nd(gen);
      Kokkos::deep_copy(X, xh);
      auto dh = Kokkos::create_mirror_view(dZ);
      for (std::size_t i = 0; i < dh.span(); ++i) dh.data()[i] = nd(gen);
      Kokkos::deep_copy(dZ, dh);
    }
    Net::Cache c;
    Net::Vector grad("grad", net.num_params());
    std::vector<double> th;
    for (int rep = 0; rep <= o.reps; ++rep) {  // the first run warms up
      Kokkos::deep_copy(grad, 0.0);
      Kokkos::fence();
      const double t0 = now();
      net.forward(X, c);
      net.backward(c, dZ, grad, 1.0);
      Kokkos::fence();
      if (rep > 0) th.push_back(now() - t0);
    }
    Baseline bl(g, B);
    const auto xv = host(X), wv = host(net.params()), dzv = host(dZ);
    std::vector<double> tb;
    for (int rep = 0; rep <= o.reps; ++rep) {
      const double t0 = now();
      bl.run(xv.data(), wv.data(), dzv.data());
      if (rep > 0) tb.push_back(now() - t0);
    }
    const double diff = std::max({rel_diff(host(c.x.back()), bl.Z.data(), bl.Z.size()),
                                  rel_diff(host(grad), bl.dW.data(), bl.dW.size()),
                                  rel_diff(host(c.d[1]), bl.dX.data(), bl.dX.size())});
    const double flops = 6.0 * double(BT) * g.out_channels * g.cols();
    const double mh = median(th), mb = median(tb);
    char io[64];
    std::snprintf(io, sizeof io, "%dx%dx%d -> %dx%dx%d k%d", cs.in.channels, cs.in.height, cs.in.width, g.out_channels,
                  g.out_height(), g.out_width(), cs.k);
    std::printf("%-16s %-22s %10.5f %10.5f %9.2f %9.2f %6.2f %9.1e\n", cs.name, io, mh, mb, flops / mh * 1e-9,
                flops / mb * 1e-9, mb / mh, diff);
    csv << cs.name << "," << B << "," << mh << "," << mb << "," << flops / mh * 1e-9 << "," << flops / mb * 1e-9 << ","
        << mb / mh << "," << diff << "\n";
    hfisher::detail::require(diff < 1e-10, where, cs.name, ": hfisher and the OpenBLAS baseline disagree (", diff, ")");
  }
  {
    std::printf(
        "\nhfisher attention core forward + backward vs OpenBLAS dgemm per (example, head) (double)\n"
        "GFLOP/s count 6 GEMMs of 2 T^2 dh per (example, head), the causal mask's skipped half included;\n"
        "ratio = OpenBLAS time / hfisher time; diff = max relative difference of outputs and input gradients\n\n");
    std::printf("%-16s %-26s %10s %10s %9s %9s %6s %9s\n", "case", "B x T x d, heads", "hfisher_s", "blas_s", "hf_GF/s",
                "blas_GF/s", "ratio", "diff");
    csv << "\nattention_case,batch,tokens,d,heads,causal,hfisher_s,blas_s,ratio,diff\n";
    struct AttnCase {
      const char* name;
      int B, T, d, heads;
      bool causal;
    };
    const AttnCase acases[] = {{"vit-fmnist", 128, 16, 64, 4, false},
                               {"bert-seq128", 4, 128, 1024, 16, false},
                               {"causal-seq256", 4, 256, 256, 4, true}};
    for (const auto& ac : acases) {
      hfisher::nn::AttentionShape as;
      as.tokens = ac.T;
      as.d = ac.d;
      as.heads = ac.heads;
      as.causal = ac.causal;
      const long rows = long(ac.B) * ac.heads * ac.T;
      Net::Matrix X("X", ac.B, long(ac.T) * 3 * ac.d), Y("Y", ac.B, long(ac.T) * ac.d),
          dY("dY", ac.B, long(ac.T) * ac.d), dX("dX", ac.B, long(ac.T) * 3 * ac.d), P("P", rows, ac.T),
          dS("dS", rows, ac.T);
      Net::Vector work("work", hfisher::nn::attention_work_size(as, ac.B));
      {
        auto xh = Kokkos::create_mirror_view(X);
        for (std::size_t i = 0; i < xh.span(); ++i) xh.data()[i] = nd(gen);
        Kokkos::deep_copy(X, xh);
        auto dh = Kokkos::create_mirror_view(dY);
        for (std::size_t i = 0; i < dh.span(); ++i) dh.data()[i] = nd(gen);
        Kokkos::deep_copy(dY, dh);
      }
      const E space;
      std::vector<double> th, tb;
      for (int rep = 0; rep <= o.reps; ++rep) {
        Kokkos::fence();
        const double t0 = now();
        hfisher::nn::detail::attention_forward(space, as, X, Y, P, work);
        hfisher::nn::detail::attention_backward(space, as, P, dY, dX, dS, work);
        Kokkos::fence();
        if (rep > 0) th.push_back(now() - t0);
      }
      AttentionBaseline bl(as, ac.B);
      const auto xv = host(X), dyv = host(dY);
      const int saved = openblas_get_num_threads ? openblas_get_num_threads() : 1;
      if (openblas_set_num_threads) openblas_set_num_threads(1);
      for (int rep = 0; rep <= o.reps; ++rep) {
        const double t0 = now();
        bl.run(xv.data(), dyv.data());
        if (rep > 0) tb.push_back(now() - t0);
      }
      if (openblas_set_num_threads) openblas_set_num_threads(saved);
      const double diff =
          std::max(rel_diff(host(Y), bl.Y.data(), bl.Y.size()), rel_diff(host(dX), bl.dX.data(), bl.dX.size()));
      const double flops = 6.0 * 2.0 * double(ac.T) * ac.T * (ac.d / ac.heads) * ac.B * ac.heads;
      const double mh = median(th), mb = median(tb);
      char shape[64];
      std::snprintf(shape, sizeof shape, "%dx%dx%d, %d%s", ac.B, ac.T, ac.d, ac.heads, ac.causal ? " causal" : "");
      std::printf("%-16s %-26s %10.5f %10.5f %9.2f %9.2f %6.2f %9.1e\n", ac.name, shape, mh, mb, flops / mh * 1e-9,
                  flops / mb * 1e-9, mb / mh, diff);
      csv << ac.name << "," << ac.B << "," << ac.T << "," << ac.d << "," << ac.heads << "," << ac.causal << "," << mh
          << "," << mb << "," << mb / mh << "," << diff << "\n";
      hfisher::detail::require(diff < 1e-10, where, ac.name, ": hfisher and the OpenBLAS baseline disagree (", diff,
                               ")");
    }
  }
  if (o.train_epochs > 0) {
    std::printf(
        "\nFashion-MNIST, %d training / %d test examples, batch %d, seed %u; adam lr %g, sgd lr %g "
        "(momentum 0.9), kfac lr %g damping %g refresh %d %s (the K-FAC preset otherwise)\n",
        train.n, test.n, o.train_batch, o.seed, o.lr, o.sgd_lr, o.kfac_lr, o.kfac_damping, o.kfac_refresh,
        o.kfac_reduce ? "reduce" : "expand");
    std::printf("cnn: %s\nvit: %s\nmlp: 784-256-10 relu (the engine's MLP, for comparison)\n\n",
                fashion_cnn_text().c_str(), fashion_vit_text().c_str());
    std::printf("%-10s %5s %10s %9s %9s\n", "model/opt", "epoch", "loss", "test_acc", "seconds");
    csv << "\nmodel,optimizer,epoch,loss,test_acc,seconds\n";
    const auto dtrain = hfisher::nn::to_device<S, E>(train), dtest = hfisher::nn::to_device<S, E>(test);

    auto epochs = [&](auto& model, auto& opt, const std::string& label) {
      std::mt19937_64 rng(o.seed);
      for (int ep = 1; ep <= o.train_epochs; ++ep) {
        const double t0 = now();
        const double loss = hfisher::nn::train_epoch(model, dtrain, o.train_batch, opt, rng);
        Kokkos::fence();
        const double t = now() - t0;
        const double acc = model.accuracy(dtest, 256);
        std::printf("%-10s %5d %10.4f %9.4f %9.2f\n", label.c_str(), ep, loss, acc, t);
        std::fflush(stdout);
        csv << label.substr(0, label.find('/')) << "," << label.substr(label.find('/') + 1) << "," << ep << "," << loss
            << "," << acc << "," << t << "\n";
      }
    };
    auto train_all = [&](auto make_model, const std::string& name) {
      for (const auto& opt_name : o.optimizers) {
        auto model = make_model();  // the same initial weights for every optimizer
        const std::string label = name + "/" + opt_name;
        if (opt_name == "adam") {
          hfisher::nn::Adam<S, E> opt;
          opt.lr = o.lr;
          epochs(model, opt, label);
        } else if (opt_name == "sgd") {
          hfisher::nn::SGD<S, E> opt;
          opt.lr = o.sgd_lr;
          epochs(model, opt, label);
        } else {
          with_kfac(model, dtrain, o, epochs, label);
        }
      }
    };
    for (const auto& name : o.models) {
      if (name == "mlp")
        train_all([&] { return hfisher::nn::MLP<S, E>({784, 256, 10}, hfisher::nn::Activation::ReLU, o.seed); }, name);
      else
        train_all(
            [&] {
              return Net({1, 28, 28}, name == "vit" ? fashion_vit_layers() : fashion_cnn_layers(), o.seed);
            },
            name);
    }
  }
  if (!o.output.empty()) write_file_atomic(o.output + "/layers.csv", csv.str());
  return 0;
}

Study layers_study() {
  return make_study<LayersBenchOptions>("layers",
                                        "convolution forward + backward against ReLU + im2col + OpenBLAS dgemm + "
                                        "col2im (same FLOPs, results compared); with --train-epochs, a small CNN "
                                        "trained on Fashion-MNIST beside the MLP",
                                        add_layers_options, run_layers_bench);
}

}  // namespace hfisher_perf
