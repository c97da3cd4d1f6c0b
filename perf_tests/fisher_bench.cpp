#include "fisher_bench.hpp"
#include "studies.hpp"

#include <hfisher/hfisher.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <sstream>

#include "bench_common.hpp"
#include "layers_bench.hpp"
#include "memory_budget.hpp"

namespace hfisher_perf {
namespace {

using S = double;
using E = Kokkos::DefaultExecutionSpace;
using COp = hfisher::CurvatureOperator<S, E>;
using Vec = COp::Vector;

std::vector<double> host(const Vec& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<double>(h.data(), h.data() + h.extent(0));
}

double angle_deg(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  const double c = std::max(-1.0, std::min(1.0, ab / std::sqrt(aa * bb)));
  return std::acos(c) * 180.0 / M_PI;
}

double rel_fro(const COp::Matrix& A, const COp::Matrix& F) {
  auto a = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), A);
  auto f = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), F);
  double num = 0, den = 0;
  for (size_t i = 0; i < a.span(); ++i) {
    num += (a.data()[i] - f.data()[i]) * (a.data()[i] - f.data()[i]);
    den += f.data()[i] * f.data()[i];
  }
  return std::sqrt(num / den);
}

struct Row {
  std::string structure, setting;
  double build = 0, factor_solve = 0, solve = 0, err = 0, angle = 0;
  std::size_t bytes = 0;
};

// The gradient of the mean loss over the first N training examples (every
// parameter): the right-hand side of the natural-gradient solves.
template <class Model>
Vec mean_gradient(const Model& model, const hfisher::nn::DeviceData<S, E>& train, int N) {
  typename Model::Cache c;
  Vec g("g", model.num_params());
  typename Model::Matrix Xc("Xc", N, train.features());
  Kokkos::deep_copy(Xc, Kokkos::subview(train.x, Kokkos::make_pair(0, N), Kokkos::ALL()));
  typename Model::Labels yc("yc", N);
  Kokkos::deep_copy(yc, Kokkos::subview(train.y, Kokkos::make_pair(0, N)));
  model.loss_grad(Xc, yc, g, c);
  return g;
}

// Y = (F + lambda I) X with exact Fisher-vector products
void damped_products(const hfisher::FisherProduct<S, E>& fp, double lambda, const COp::Matrix& X,
                     const COp::Matrix& Y) {
  fp.apply(X, Y);
  Kokkos::parallel_for(
      "fisher_bench::damp", Kokkos::RangePolicy<E>(0, long(X.extent(0))), KOKKOS_LAMBDA(const long i) {
        for (int j = 0; j < int(X.extent(1)); ++j) Y(i, j) += S(lambda) * X(i, j);
      });
  Kokkos::fence();
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  Kokkos::parallel_reduce(
      "fisher_bench::dot", Kokkos::RangePolicy<E>(0, long(a.extent(0))),
      KOKKOS_LAMBDA(const long i, double& acc) { acc += double(a(i)) * double(b(i)); }, s);
  return s;
}

// x = y + alpha z (x may alias y)
void axpy_to(const Vec& x, const Vec& y, double alpha, const Vec& z) {
  Kokkos::parallel_for(
      "fisher_bench::axpy", Kokkos::RangePolicy<E>(0, long(x.extent(0))),
      KOKKOS_LAMBDA(const long i) { x(i) = y(i) + S(alpha) * z(i); });
  Kokkos::fence();
}

// Conjugate gradients on (F + lambda I) x = b with exact products: the
// reference natural-gradient direction of the whole model.
int cg_solve(const hfisher::FisherProduct<S, E>& fp, double lambda, const Vec& b, const Vec& x, double rtol,
             int max_iter) {
  const long n = long(b.extent(0));
  Vec r("r", n), p("p", n), Ap("Ap", n);
  Kokkos::deep_copy(x, 0.0);
  Kokkos::deep_copy(r, b);
  Kokkos::deep_copy(p, b);
  double rr = dot(r, r);
  const double stop = rtol * rtol * rr;
  int it = 0;
  while (it < max_iter && rr > stop) {
    damped_products(fp, lambda, COp::Matrix(p.data(), n, 1), COp::Matrix(Ap.data(), n, 1));
    const double alpha = rr / dot(p, Ap);
    axpy_to(x, x, alpha, p);
    axpy_to(r, r, -alpha, Ap);
    const double rr_new = dot(r, r);
    axpy_to(p, r, rr_new / rr, p);
    rr = rr_new;
    ++it;
  }
  return it;
}

// |(F~ - F) Omega|_F / |F Omega|_F over Gaussian probes Omega
double product_error(const COp& op, const hfisher::FisherProduct<S, E>& fp, int probes, unsigned seed) {
  const long n = fp.size();
  COp::Matrix Om("Om", n, probes), FO("FO", n, probes);
  {
    auto h = Kokkos::create_mirror_view(Om);
    std::mt19937_64 g(seed);
    std::normal_distribution<double> nd;
    for (long i = 0; i < n; ++i)
      for (int j = 0; j < probes; ++j) h(i, j) = nd(g);
    Kokkos::deep_copy(Om, h);
  }
  fp.apply(Om, FO);
  auto fo = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), FO);
  auto om = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), Om);
  double num = 0, den = 0;
  Vec v("v", n), y("y", n);
  auto vh = Kokkos::create_mirror_view(v);
  for (int j = 0; j < probes; ++j) {
    for (long i = 0; i < n; ++i) vh(i) = om(i, j);
    Kokkos::deep_copy(v, vh);
    op.apply(v, y);
    auto yh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), y);
    for (long i = 0; i < n; ++i) {
      num += (yh(i) - fo(i, j)) * (yh(i) - fo(i, j));
      den += fo(i, j) * fo(i, j);
    }
  }
  return std::sqrt(num / den);
}

// One row of the whole-model study; angle < 0: the solve failed (error says why)
struct NetRow {
  std::string structure, setting, error;
  double build = 0, err = -1, angle = -1, solve = 0;
  std::size_t bytes = 0;
};
struct NetStudy {
  long parameters = 0;
  int examples = 0, cg_iterations = 0;
  double damping = 0, cg_s = 0;
  std::vector<NetRow> rows;
};

// Every structure over the whole model against CG on exact products.
NetStudy run_network_study(const FisherBenchOptions& o, const hfisher::nn::MLP<S, E>& model,
                           const hfisher::nn::DeviceData<S, E>& train, hfisher::FisherKind kind) {
  NetStudy study;
  const std::size_t budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
  hfisher::FisherOptions fo;
  fo.examples = std::min(o.fisher_examples, train.size());
  fo.mc_samples = o.mc_samples;
  fo.compression.leaf = o.leaf;
  fo.seed = o.seed;
  fo.memory_budget = budget;
  hfisher::FisherProduct<S, E> fp(model, train, kind, fo);
  const long n = fp.size();
  std::printf(
      "\nwhole model: %ld parameters, %s Fisher of %d examples; reference: CG on exact Fisher-vector "
      "products\n",
      n, hfisher::to_string(kind), fp.examples());
  double trace = 0;
  {
    auto d = hfisher::estimate_fisher(model, train, kind, hfisher::Structure::Diagonal, fo);
    for (double x : host(d->diag())) trace += x;
  }
  const double lambda = o.damping * trace / n;
  const Vec g = mean_gradient(model, train, fp.examples());
  Vec xs("x*", n);
  double t = now();
  const long p0 = fp.products();
  const int iters = cg_solve(fp, lambda, g, xs, 1e-8, 2000);
  const double t_cg = now() - t;
  const auto xstar = host(xs);
  std::printf(
      "damping lambda = %.3g (%.0e x trace/n); CG: %d iterations (%ld products, relative residual 1e-8) "
      "in %.2f s\n\n",
      lambda, o.damping, iters, fp.products() - p0, t_cg);
  study.parameters = n;
  study.examples = fp.examples();
  study.cg_iterations = iters;
  study.damping = lambda;
  study.cg_s = t_cg;
  auto row = [&](const std::string& name, const std::string& setting,
                 const std::function<std::unique_ptr<COp>()>& build) {
    double t_build = 0, err = -1;
    std::size_t bytes = 0;
    try {
      double t0 = now();
      auto op = build();
      t_build = now() - t0;
      bytes = op->bytes();
      err = product_error(*op, fp, 10, o.seed + 7);
      Vec x("x", n);
      t0 = now();
      op->solve(g, x, lambda);
      const double t_solve = now() - t0;
      const double angle = angle_deg(host(x), xstar);
      std::printf(
          "%-12s %-14s | build %8.3f s | %10.3f MB | error (10 products) %9.2e | angle %7.3f deg | "
          "factor+solve %8.4f s\n",
          name.c_str(), setting.c_str(), t_build, bytes / 1e6, err, angle, t_solve);
      study.rows.push_back({name, setting, "", t_build, err, angle, t_solve, bytes});
    } catch (const hfisher::Error& e) {
      study.rows.push_back({name, setting, e.what(), t_build, err, -1, 0, bytes});
      if (err >= 0)
        std::printf("%-12s %-14s | build %8.3f s | %10.3f MB | error (10 products) %9.2e | solve failed: %s\n",
                    name.c_str(), setting.c_str(), t_build, bytes / 1e6, err, e.what());
      else
        std::printf("%-12s %-14s | failed: %s\n", name.c_str(), setting.c_str(), e.what());
    }
    std::fflush(stdout);
  };
  row("diagonal", "-", [&] { return hfisher::estimate_fisher(model, train, kind, hfisher::Structure::Diagonal, fo); });
  row("kfac", "eigen", [&] { return hfisher::estimate_fisher(model, train, kind, hfisher::Structure::KFAC, fo); });
  for (int r : o.ranks) {
    auto f2 = fo;
    f2.lowrank.rank = r;
    f2.set_tol(1e-12);
    row("lowrank", "rank " + std::to_string(r),
        [&] { return hfisher::estimate_fisher(model, train, kind, hfisher::Structure::LowRank, f2); });
  }
  for (double tol : o.network_tols) {
    auto f2 = fo;
    f2.set_tol(tol);
    f2.matrix_free = true;
    char b[32];
    std::snprintf(b, sizeof b, "tol %.0e", tol);
    row("hodlr-mf", b, [&] { return hfisher::estimate_fisher(model, train, kind, hfisher::Structure::HODLR, f2); });
    row("hss-mf", b, [&] { return hfisher::estimate_fisher(model, train, kind, hfisher::Structure::HSS, f2); });
    row("network", b, [&] { return hfisher::estimate_fisher(model, train, kind, hfisher::Structure::Network, f2); });
  }
  return study;
}

}  // namespace

namespace {

// the MLP-only studies (matrix-free rows, the whole-model study) are refused
// for the CNN before any work; these make both instantiations compile
const hfisher::nn::MLP<S, E>& mlp_of(const hfisher::nn::MLP<S, E>& m) { return m; }
const hfisher::nn::MLP<S, E>& mlp_of(const hfisher::nn::Sequential<S, E>&) {
  throw hfisher::Error("hfisher-bench fisher: this study takes the MLP (--model mlp)");
}

template <class Model>
int fisher_study(const FisherBenchOptions& o, const Machine& mc, Model& model, const std::string& what) {
  // the memory budget, before the data is read and the model trained: the
  // training images (float, twice: host and device) and the exact Fisher of
  // the chosen layer (dense, with its Cholesky copy); the estimates check
  // their own needs against the same budget (FisherOptions::memory_budget)
  const std::size_t budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
  {
    const int nl = model.num_layers(), l = o.layer < 0 ? nl - 1 : std::min(o.layer, nl - 1);
    const double P = double(model.layers()[l].size());
    const double data = 2.0 * o.train_examples * model.inputs() * sizeof(float);
    hfisher_cli::check_memory(data + 2 * 8.0 * P * P, budget, "hfisher-bench fisher",
                              "the training data (" + hfisher_cli::mib_text(data) + ") and the exact Fisher of layer " +
                                  std::to_string(l) + " (" + std::to_string(long(P)) +
                                  " parameters, dense: " + hfisher_cli::mib_text(2 * 8.0 * P * P) + ")");
  }
  // data and training
  auto train_h = hfisher::nn::load_mnist_dir(o.data, true);
  auto test_h = hfisher::nn::load_mnist_dir(o.data, false);
  hfisher::detail::require(train_h.features == model.inputs(), "hfisher-bench fisher", "the data has ",
                           train_h.features, " features but the model takes ", model.inputs());
  hfisher::detail::require(train_h.classes == model.outputs(), "hfisher-bench fisher", "the data has ", train_h.classes,
                           " classes but the model has ", model.outputs(), " outputs");
  train_h = hfisher::nn::slice(train_h, 0, std::min(o.train_examples, train_h.n));
  auto train = hfisher::nn::to_device<S, E>(train_h);
  auto test = hfisher::nn::to_device<S, E>(test_h);
  std::printf("data: %s (%d train, %d test examples); %s",
              o.data.empty() ? hfisher::nn::default_data_dir().c_str() : o.data.c_str(), train.size(), test.size(),
              what.c_str());
  std::printf(" (%ld parameters)\n", model.num_params());
  hfisher::nn::Adam<S, E> adam;
  adam.lr = o.lr;
  std::mt19937_64 rng(o.seed);
  for (int e = 0; e < o.epochs; ++e) {
    const double t0 = now();
    const double loss = hfisher::nn::train_epoch(model, train, o.batch, adam, rng);
    std::printf("epoch %d: loss %.4f, test accuracy %.4f (%.1f s)\n", e + 1, loss, model.accuracy(test, 256),
                now() - t0);
  }
  // Fisher of one layer, exact and in every structure
  const int layer = o.layer < 0 ? model.num_layers() - 1 : o.layer;
  hfisher::detail::require(layer < model.num_layers(), "hfisher-bench fisher", "--layer ", layer,
                           " is not a layer (the model has ", model.num_layers(), ")");
  const auto kind = hfisher::fisher_kind_from_string(o.kind, "hfisher-bench fisher --kind");
  hfisher::FisherOptions fo;
  fo.examples = o.fisher_examples;
  fo.mc_samples = o.mc_samples;
  fo.layers = {layer};
  fo.compression.leaf = o.leaf;
  fo.seed = o.seed;
  fo.memory_budget = budget;
  double t0 = now();
  auto samples = hfisher::collect_samples(model, train, kind, fo);
  const double t_collect = now() - t0;
  const long n = samples.size();
  std::printf("\nlayer %d: %d x %d (+ bias) = %ld parameters; %s Fisher from %d examples (%d samples), passes %.2f s\n",
              layer, samples.shapes[0].out, samples.shapes[0].in, n, hfisher::to_string(kind), samples.examples,
              samples.samples(), t_collect);
  t0 = now();
  auto exact = hfisher::build_curvature(samples, hfisher::Structure::BlockDiagonal, fo);
  const double t_exact = now() - t0;
  auto Fd = exact->to_dense();
  double trace = 0;
  for (double d : host(exact->diag())) trace += d;
  const double lambda = o.damping * trace / n;
  // the gradient of the mean loss over the Fisher examples, restricted to the layer
  Vec g("g", n);
  {
    const Vec full = mean_gradient(model, train, samples.examples);
    const long off = model.layers()[layer].offset;
    Kokkos::deep_copy(g, Kokkos::subview(full, Kokkos::make_pair(off, off + n)));
  }
  Vec xs("x*", n);
  t0 = now();
  exact->solve(g, xs, lambda);
  const double t_exact_solve = now() - t0;
  const auto xstar = host(xs);
  std::printf(
      "damping lambda = %.3g (%.0e x trace/n); exact (dense) block: build %.3f s, Cholesky + solve %.3f s, "
      "%.1f MB\n\n",
      lambda, o.damping, t_exact, t_exact_solve, exact->bytes() / 1e6);

  std::vector<Row> rows;
  // one row: build (from the samples, or as `build` says), then error,
  // memory and a damped natural-gradient solve against the exact block
  auto run_with = [&](const std::string& name, const std::string& setting,
                      const std::function<std::unique_ptr<COp>()>& build, const std::string& note) {
    // `note` is read after the build (a matrix-free build sets it)
    Row r;
    r.structure = name;
    r.setting = setting;
    bool built = false;
    try {
      double t = now();
      auto op = build();
      r.build = now() - t;
      r.bytes = op->bytes();
      r.err = rel_fro(op->to_dense(), Fd);
      built = true;
      Vec x("x", n);
      t = now();
      op->solve(g, x, lambda);
      r.factor_solve = now() - t;
      t = now();
      op->solve(g, x, lambda);
      r.solve = now() - t;
      r.angle = angle_deg(host(x), xstar);
    } catch (const hfisher::Error& e) {
      if (built)  // what the build achieved, then why the solve failed
        std::printf("%-12s %-14s | build %8.3f s | %10.3f MB | rel. Frobenius error %9.2e | solve failed: %s\n",
                    name.c_str(), setting.c_str(), r.build, r.bytes / 1e6, r.err, e.what());
      else
        std::printf("%-12s %-14s | failed: %s\n", name.c_str(), setting.c_str(), e.what());
      if (built && !note.empty()) std::printf("%-27s   %s\n", "", note.c_str());
      return;
    }
    rows.push_back(r);
    std::printf(
        "%-12s %-14s | build %8.3f s | %10.3f MB | rel. Frobenius error %9.2e | angle %7.3f deg | "
        "factor+solve %8.4f s, solve %8.4f s\n",
        r.structure.c_str(), r.setting.c_str(), r.build, r.bytes / 1e6, r.err, r.angle, r.factor_solve, r.solve);
    if (!note.empty()) std::printf("%-27s   %s\n", "", note.c_str());
    std::fflush(stdout);
  };
  auto run = [&](const std::string& name, const std::string& setting, hfisher::Structure st,
                 const hfisher::FisherOptions& opts) {
    run_with(
        name, setting, [&] { return hfisher::build_curvature(samples, st, opts); }, "");
  };
  // products spent, estimated error and largest rank of a hierarchical block
  auto report = [](const auto& h) {
    int kmax = 0;
    for (const auto& rs : h.ranks()) kmax = std::max(kmax, rs.max);
    char b[160];
    std::snprintf(b, sizeof b, "(%d products, estimated error %.2e, max rank %d)", h.build_info().products,
                  h.build_info().error_estimate, kmax);
    return std::string(b);
  };
  // a matrix-free HODLR or HSS (one block), its report in mf_note
  std::string mf_note;
  auto matrix_free = [&](const hfisher::FisherOptions& opts, hfisher::Structure st) {
    auto op = hfisher::estimate_fisher(mlp_of(model), train, kind, st, opts);
    auto& bd = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>&>(*op);
    if (st == hfisher::Structure::HSS)
      mf_note = "matrix-free " + report(dynamic_cast<const hfisher::fisher::HSSOperator<S, E>&>(bd.block(0)).matrix());
    else
      mf_note =
          "matrix-free " + report(dynamic_cast<const hfisher::fisher::HODLROperator<S, E>&>(bd.block(0)).matrix());
    return op;
  };
  run("diagonal", "-", hfisher::Structure::Diagonal, fo);
  {
    auto f2 = fo;
    f2.kfac.damping = hfisher::KFACDamping::Eigen;
    run("kfac", "eigen", hfisher::Structure::KFAC, f2);
    f2.kfac.damping = hfisher::KFACDamping::Factored;
    run("kfac", "factored", hfisher::Structure::KFAC, f2);
    if (samples.positions_of(0) > 1) {  // a layer at several positions: K-FAC-reduce too
      f2.kfac.variant = hfisher::KFACVariant::Reduce;
      f2.kfac.damping = hfisher::KFACDamping::Eigen;
      run("kfac", "reduce, eigen", hfisher::Structure::KFAC, f2);
    }
  }
  for (int r : o.ranks) {
    auto f2 = fo;
    f2.lowrank.rank = r;
    f2.set_tol(1e-12);
    run("lowrank", "rank " + std::to_string(r), hfisher::Structure::LowRank, f2);
  }
  for (double tol : o.tols) {
    auto f2 = fo;
    f2.set_tol(tol);
    char b[32];
    std::snprintf(b, sizeof b, "tol %.0e", tol);
    run("hodlr", b, hfisher::Structure::HODLR, f2);
    run("hss", b, hfisher::Structure::HSS, f2);
    if (o.matrix_free) {
      auto fm = f2;
      fm.matrix_free = true;
      fm.examples = samples.examples;  // the same examples as the samples
      run_with(
          "hodlr-mf", b, [&] { return matrix_free(fm, hfisher::Structure::HODLR); },
          mf_note);  // by reference: set by the build
      run_with(
          "hss-mf", b, [&] { return matrix_free(fm, hfisher::Structure::HSS); }, mf_note);
    }
    if (o.spd_rows) {
      f2.compression.spd_compensation = true;
      run("hodlr", std::string(b) + " spd", hfisher::Structure::HODLR, f2);
    }
  }
  for (int r : o.level_ranks) {
    auto f2 = fo;
    f2.multilevel.levels = 2;
    f2.multilevel.rank = r;
    f2.set_tol(1e-12);
    run("multilevel", "2 x rank " + std::to_string(r), hfisher::Structure::Multilevel, f2);
  }
  // rank profile of the hierarchical layer Fisher in natural parameter order
  try {
    auto f2 = fo;
    f2.set_tol(o.tols.empty() ? 1e-2 : o.tols.back());
    auto op = hfisher::build_curvature(samples, hfisher::Structure::HODLR, f2);
    auto& bd = dynamic_cast<hfisher::fisher::BlockDiagonalOperator<S, E>&>(*op);
    auto& h = dynamic_cast<const hfisher::fisher::HODLROperator<S, E>&>(bd.block(0)).hodlr();
    std::printf(
        "\nrank profile of the layer's Fisher (natural order, tol %.0e): level: block size, min/mean/max rank\n",
        f2.compression.tol);
    for (const auto& rs : h.ranks())
      std::printf("  level %2d: %6d  %4d / %7.1f / %4d\n", rs.level, h.tree().block_size(rs.level), rs.min, rs.mean,
                  rs.max);
  } catch (const hfisher::Error& e) {
    std::printf("rank profile failed: %s\n", e.what());
  }

  // factorization vs K-FAC inversion on a large layer
  struct Big {
    int layer = -1;
    long n = 0;
    double kfac_build = 0, kfac_inv = 0, h_build = 0, h_factor = 0;
    std::size_t kfac_bytes = 0, h_bytes = 0;
  } big;
  if (o.big_layer >= 0 && o.big_layer < model.num_layers()) try {
      auto fb = fo;
      fb.layers = {o.big_layer};
      fb.examples = o.big_examples;
      fb.set_tol(o.big_tol);
      fb.compression.spd_compensation = true;  // factorizable at any damping
      auto sb = hfisher::collect_samples(model, train, hfisher::FisherKind::Empirical, fb);
      big.layer = o.big_layer;
      big.n = sb.size();
      Vec b("b", big.n), x("x", big.n);
      Kokkos::deep_copy(b, 1.0);
      double t = now();
      auto kf = hfisher::build_curvature(sb, hfisher::Structure::KFAC, fb);
      big.kfac_build = now() - t;
      t = now();
      kf->solve(b, x, lambda);  // first solve: eigendecompositions of A and G
      big.kfac_inv = now() - t;
      big.kfac_bytes = kf->bytes();
      t = now();
      auto hh = hfisher::build_curvature(sb, hfisher::Structure::HODLR, fb);
      big.h_build = now() - t;
      t = now();
      hh->solve(b, x, lambda);  // first solve: factorization of H + lambda I
      big.h_factor = now() - t;
      big.h_bytes = hh->bytes();
      std::printf("\nlarge layer %d (%ld parameters, empirical Fisher from %d examples):\n", big.layer, big.n,
                  sb.examples);
      std::printf("  K-FAC:        build %.3f s, inversion (eigendecompositions + first solve) %.3f s, %.1f MB\n",
                  big.kfac_build, big.kfac_inv, big.kfac_bytes / 1e6);
      std::printf(
          "  hierarchical: build %.3f s, factorization (+ first solve) %.3f s, %.1f MB (tol %.0e, SPD-compensated)\n",
          big.h_build, big.h_factor, big.h_bytes / 1e6, o.big_tol);
      std::printf("  factorization / K-FAC inversion time: %.2f\n", big.h_factor / big.kfac_inv);
    } catch (const hfisher::Error& e) {
      std::printf("\nlarge layer %d: failed: %s\n", o.big_layer, e.what());
    }

  NetStudy net;
  if (o.network) net = run_network_study(o, mlp_of(model), train, kind);

  if (!o.output.empty()) {
    std::ostringstream csv, js, gp;
    csv << "structure,setting,build_s,bytes,rel_fro_error,angle_deg,factor_solve_s,solve_s\n";
    js << "{\n  \"machine\": \"" << mc.cpu << "\",\n  \"backend\": \"" << mc.backend
       << "\",\n  \"threads\": " << mc.host_threads << ",\n  \"date\": \"" << mc.date << "\",\n  \"layer\": " << layer
       << ",\n  \"parameters\": " << n << ",\n  \"kind\": \"" << o.kind << "\",\n  \"examples\": " << samples.examples
       << ",\n  \"damping\": " << lambda << ",\n  \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      csv << r.structure << "," << r.setting << "," << r.build << "," << r.bytes << "," << r.err << "," << r.angle
          << "," << r.factor_solve << "," << r.solve << "\n";
      js << "    {\"structure\": \"" << r.structure << "\", \"setting\": \"" << r.setting
         << "\", \"build_s\": " << r.build << ", \"bytes\": " << r.bytes << ", \"rel_fro_error\": " << r.err
         << ", \"angle_deg\": " << r.angle << ", \"factor_solve_s\": " << r.factor_solve << ", \"solve_s\": " << r.solve
         << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    js << "  ],\n  \"large_layer\": {\"layer\": " << big.layer << ", \"parameters\": " << big.n
       << ", \"kfac_build_s\": " << big.kfac_build << ", \"kfac_inversion_s\": " << big.kfac_inv
       << ", \"hierarchical_build_s\": " << big.h_build << ", \"hierarchical_factor_s\": " << big.h_factor << "}";
    if (o.network) {  // the whole-model study; a failed solve has "angle_deg": null and its error
      js << ",\n  \"network\": {\"parameters\": " << net.parameters << ", \"examples\": " << net.examples
         << ", \"damping\": " << net.damping << ", \"cg_iterations\": " << net.cg_iterations
         << ", \"cg_s\": " << net.cg_s << ", \"rows\": [\n";
      for (size_t i = 0; i < net.rows.size(); ++i) {
        const auto& r = net.rows[i];
        js << "    {\"structure\": \"" << r.structure << "\", \"setting\": \"" << r.setting
           << "\", \"build_s\": " << r.build << ", \"bytes\": " << r.bytes << ", \"error\": " << r.err
           << ", \"angle_deg\": ";
        if (r.angle >= 0)
          js << r.angle;
        else
          js << "null";
        js << ", \"factor_solve_s\": " << r.solve << ", \"failure\": " << hfisher::io::json_string(r.error) << "}"
           << (i + 1 < net.rows.size() ? "," : "") << "\n";
      }
      js << "  ]}";
    }
    js << "\n}\n";
    write_file_atomic(o.output + "/fisher.csv", csv.str());
    write_file_atomic(o.output + "/fisher.json", js.str());
    gp << "# file names are relative: run gnuplot in this folder\n"
       << "set terminal pngcairo size 900,600\nset output 'fisher.png'\n"
       << "set logscale xy\nset xlabel 'memory (MB)'\nset ylabel 'relative Frobenius error vs exact layer Fisher'\n"
       << "set title 'Layer " << layer << " (" << n << " parameters), " << o.kind << " Fisher: error vs memory ("
       << mc.date << ")'\nset datafile separator ','\nset key outside\n"
       << "plot for [s in 'diagonal kfac lowrank hodlr hss'] 'fisher.csv' using ((strcol(1) eq s) ? $4/1e6 : 1/0):5 "
          "with "
          "linespoints title s\n";
    write_file_atomic(o.output + "/fisher.gp", gp.str());
    const bool plotted = hfisher::io::run_gnuplot(o.output, "fisher.gp");
    std::printf("\nwrote %s/fisher.csv, fisher.json, fisher.gp%s\n", o.output.c_str(), plotted ? ", fisher.png" : "");
  }
  return 0;
}

}  // namespace

int run_fisher_bench(const FisherBenchOptions& o) {
  if (!o.output.empty()) hfisher::io::prepare_output_dir(o.output, "hfisher-bench fisher");  // before any work
  const Machine mc = describe_machine();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines appear as they are printed
  const bool cnn = o.model == "cnn" || o.model == "vit";
  std::printf("hfisher-bench fisher: Fisher structures on a trained %s (double)\n", o.model == "vit"
                                                                                        ? "vision transformer"
                                                                                    : cnn ? "CNN"
                                                                                          : "MLP");
  std::printf("machine: %s | backend: %s | host threads: %s | %s\n", mc.cpu.c_str(), mc.backend.c_str(),
              mc.host_threads.c_str(), mc.date.c_str());
  hfisher::detail::require(o.widths.size() >= 2, "hfisher-bench fisher", "--widths needs at least two entries");
  hfisher::detail::require(!cnn || (!o.matrix_free && !o.network), "hfisher-bench fisher",
                           "--matrix-free and --network take the MLP (--model mlp)");
  if (o.model == "vit") {
    hfisher::nn::Sequential<S, E> model({1, 28, 28}, fashion_vit_layers(), o.seed);
    return fisher_study(o, mc, model, "vision transformer (" + fashion_vit_text() + ")");
  }
  if (cnn) {
    hfisher::nn::Sequential<S, E> model({1, 28, 28}, fashion_cnn_layers(), o.seed);
    return fisher_study(o, mc, model, "CNN (" + fashion_cnn_text() + ")");
  }
  hfisher::nn::MLP<S, E> model(o.widths, hfisher::nn::Activation::ReLU, o.seed);
  std::string what = "MLP";
  for (int w : o.widths) what += " " + std::to_string(w);
  return fisher_study(o, mc, model, what);
}

Study fisher_study() {
  return make_study<FisherBenchOptions>("fisher",
                                        "Fisher structures (diagonal, K-FAC, low-rank, HODLR, HSS, multilevel; "
                                        "matrix-free rows) on a network trained on Fashion-MNIST: error, "
                                        "natural-gradient angle, memory, time",
                                        add_fisher_options, run_fisher_bench);
}

}  // namespace hfisher_perf
