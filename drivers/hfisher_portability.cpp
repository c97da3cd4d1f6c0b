// hfisher-portability: runs the kernel, HODLR, HSS and Fisher test problems on
// every execution space this build enabled (Serial, OpenMP, CUDA; and the
// host spaces again with teams of 2 threads, the code path a GPU takes),
// from the same inputs, and reports per operation the largest difference
// between each backend and the first one, against named tolerances. Exits
// non-zero when any difference exceeds its tolerance.
#include <CLI/CLI.hpp>
#include <hfisher/hfisher.hpp>

#include "cli_checks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <sstream>

namespace {

using Outputs = std::map<std::string, std::vector<double>>;  // operation -> flattened result

struct Options {
  std::vector<std::string> backends, groups = {"kernels", "hodlr", "hss", "fisher"};
  std::string precision = "both", output;
  std::uint64_t seed = 7;
  int batch = 6, n = 40, hodlr_n = 512;
  double tol_scale = 1.0;
  bool team2 = true;
};

// Tolerances: largest relative difference max|x_b - x_ref| / max|x_ref| allowed
// between two backends. Direct kernels differ only by summation order;
// iterative ones (Jacobi) and compressed ones (rank decisions at the
// truncation threshold) get the tolerance of their stopping rule.
struct Tolerance {
  double dbl, flt;
};
const std::map<std::string, Tolerance>& tolerances() {
  static const std::map<std::string, Tolerance> t = {{"gemm", {1e-13, 1e-5}},
                                                     {"potrf", {1e-12, 1e-4}},
                                                     {"potrs", {1e-11, 1e-3}},
                                                     {"trsm", {1e-11, 1e-3}},
                                                     {"qr.R", {1e-12, 1e-4}},
                                                     {"svd.S", {1e-11, 1e-4}},
                                                     {"syev.W", {1e-11, 1e-4}},
                                                     {"hodlr.apply", {1e-7, 1e-3}},
                                                     {"hodlr.solve", {1e-6, 1e-2}},
                                                     {"hodlr.logdet", {1e-8, 1e-3}},
                                                     {"hss.apply", {1e-7, 1e-3}},
                                                     {"hss.solve", {1e-6, 1e-2}},
                                                     {"hss.logdet", {1e-8, 1e-3}},
                                                     {"mlp.loss_grad", {1e-12, 1e-4}},
                                                     {"fisher.diagonal", {1e-12, 1e-4}},
                                                     {"fisher.kfac", {1e-11, 1e-4}},
                                                     {"fisher.lowrank", {1e-7, 1e-3}},
                                                     {"fisher.hodlr", {1e-6, 1e-2}},
                                                     {"fisher.hss", {1e-6, 1e-2}},
                                                     {"fisher.kfac.solve", {1e-9, 1e-3}},
                                                     {"fisher.multilevel", {1e-7, 1e-3}},
                                                     {"fisher.multilevel.solve", {1e-7, 1e-3}},
                                                     {"cnn.loss_grad", {1e-12, 1e-4}},
                                                     {"cnn.fisher.diagonal", {1e-12, 1e-4}},
                                                     {"cnn.fisher.kfac", {1e-11, 1e-4}},
                                                     {"cnn.fisher.lowrank", {1e-7, 1e-3}}};
  return t;
}

std::vector<double> random_vec(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> v(n);
  for (auto& x : v) x = nd(g);
  return v;
}

template <class V>
void fill(const V& d, const std::vector<double>& h) {
  auto m = Kokkos::create_mirror_view(d);
  auto* p = m.data();
  for (std::size_t i = 0; i < m.span(); ++i) p[i] = typename V::non_const_value_type(h[i]);
  Kokkos::deep_copy(d, m);
}

template <class V>
std::vector<double> flat(const V& d) {
  auto m = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d);
  std::vector<double> v(m.span());
  for (std::size_t i = 0; i < m.span(); ++i) v[i] = double(m.data()[i]);
  return v;
}

template <class S, class E>
void kernels_problems(const Options& o, Outputs& out) {
  using B = hfisher::BatchMatrix<S, E>;
  E space;
  const int nb = o.batch, n = o.n, m = n + 7, k = n - 5;
  // gemm: (m x k) (k x n)
  B A("A", nb, m, k), Bm("B", nb, k, n), C("C", nb, m, n);
  fill(A, random_vec(A.span(), o.seed));
  fill(Bm, random_vec(Bm.span(), o.seed + 1));
  hfisher::kernels::gemm(space, hfisher::Op::NoTrans, hfisher::Op::NoTrans, S(1), A, Bm, S(0), C);
  out["gemm"] = flat(C);
  // SPD: M M^T / n + I
  auto r = random_vec(std::size_t(nb) * n * n, o.seed + 2);
  std::vector<double> spd(std::size_t(nb) * n * n, 0.0);
  for (int b = 0; b < nb; ++b)
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double s = i == j ? 1.0 : 0.0;
        for (int q = 0; q < n; ++q) s += r[(std::size_t(b) * n + i) * n + q] * r[(std::size_t(b) * n + j) * n + q] / n;
        spd[(std::size_t(b) * n + i) * n + j] = s;
      }
  B L("L", nb, n, n), rhs("rhs", nb, n, 3), X("X", nb, n, 3);
  fill(L, spd);
  hfisher::kernels::potrf(space, L);
  out["potrf"] = flat(L);
  fill(rhs, random_vec(rhs.span(), o.seed + 3));
  Kokkos::deep_copy(X, rhs);
  hfisher::kernels::potrs(space, L, X);
  out["potrs"] = flat(X);
  Kokkos::deep_copy(X, rhs);
  hfisher::kernels::trsm(space, hfisher::Side::Left, hfisher::Uplo::Lower, hfisher::Op::NoTrans, hfisher::Diag::NonUnit,
                         S(1), L, X);
  out["trsm"] = flat(X);
  // QR of (m x k): R with rows scaled to a positive diagonal
  B Q("Q", nb, m, k);
  Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space> tau("tau", nb, k);
  Kokkos::deep_copy(Q, A);
  hfisher::kernels::qr(space, Q, tau);
  auto qh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), Q);
  std::vector<double> R;
  for (int b = 0; b < nb; ++b)
    for (int i = 0; i < k; ++i) {
      const double sg = qh(b, i, i) < 0 ? -1.0 : 1.0;
      for (int j = i; j < k; ++j) R.push_back(sg * double(qh(b, i, j)));
    }
  out["qr.R"] = R;
  // SVD of (m x k) and eigenvalues of the SPD matrices
  B U("U", nb, m, k), V("V", nb, k, k), Vs("Vs", nb, n, n), Sp("Sp", nb, n, n);
  Kokkos::View<S**, Kokkos::LayoutRight, typename E::memory_space> sv("sv", nb, k), w("w", nb, n);
  hfisher::kernels::svd(space, A, U, sv, V);
  out["svd.S"] = flat(sv);
  fill(Sp, spd);
  hfisher::kernels::syev(space, Sp, w, Vs);
  out["syev.W"] = flat(w);
}

/// The H-matrix problem: an exponential kernel on sorted 1-D points plus a
/// shift (SPD, low-rank off-diagonal blocks), as HODLR (tag "hodlr") or HSS
/// ("hss"): apply, solve, logdet.
template <class Fmt>
void hmatrix_problems(const Options& o, Outputs& out, const std::string& tag) {
  using S = typename Fmt::scalar_type;
  using Mat = typename Fmt::Matrix;
  const int n = o.hodlr_n;
  auto u = random_vec(n, o.seed + 10);
  std::vector<double> pts(n);
  for (int i = 0; i < n; ++i) pts[i] = 0.5 + 0.5 * std::erf(u[i] / std::sqrt(2.0));
  std::sort(pts.begin(), pts.end());
  std::vector<double> a(std::size_t(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      a[std::size_t(i) * n + j] = std::exp(-std::abs(pts[i] - pts[j]) / 0.3) + (i == j ? 0.5 : 0.0);
  Mat A("A", n, n), X("X", n, 4), Y("Y", n, 4);
  fill(A, a);
  fill(X, random_vec(X.span(), o.seed + 11));
  hfisher::CompressionOptions co;
  co.tol = std::is_same<S, double>::value ? 1e-9 : 1e-5;
  co.max_rank = 48;
  const auto tree = hfisher::ClusterTree::balanced(n, 32);
  auto h = Fmt::from_dense(A, tree, co);
  h.apply(X, Y);
  out[tag + ".apply"] = flat(Y);
  auto f = h.factor();
  f.solve(X, Y);
  out[tag + ".solve"] = flat(Y);
  out[tag + ".logdet"] = {f.logdet()};
}

template <class S, class E>
void fisher_problems(const Options& o, Outputs& out) {
  using Model = hfisher::nn::MLP<S, E>;
  hfisher::nn::Dataset d;
  d.n = 64;
  d.features = 12;
  d.classes = 5;
  auto x = random_vec(std::size_t(d.n) * d.features, o.seed + 20);
  d.x.assign(x.begin(), x.end());
  std::mt19937 g(unsigned(o.seed));
  for (int i = 0; i < d.n; ++i) d.y.push_back(int(g() % d.classes));
  auto data = hfisher::nn::to_device<S, E>(d);
  Model model({12, 16, 5}, hfisher::nn::Activation::Tanh, o.seed);
  typename Model::Cache c;
  typename Model::Vector grad("grad", model.num_params()), v("v", model.num_params()), y("y", model.num_params());
  model.loss_grad(data.x, data.y, grad, c);
  out["mlp.loss_grad"] = flat(grad);
  fill(v, random_vec(v.span(), o.seed + 21));
  hfisher::FisherOptions fo;
  fo.examples = 64;
  fo.lowrank.rank = 24;
  fo.set_tol(std::is_same<S, double>::value ? 1e-9 : 1e-5);
  fo.compression.leaf = 16;
  const auto samples = hfisher::collect_samples(model, data, hfisher::FisherKind::MonteCarlo, fo);
  const std::pair<const char*, hfisher::Structure> st[] = {
      {"fisher.diagonal", hfisher::Structure::Diagonal}, {"fisher.kfac", hfisher::Structure::KFAC},
      {"fisher.lowrank", hfisher::Structure::LowRank},   {"fisher.hodlr", hfisher::Structure::HODLR},
      {"fisher.hss", hfisher::Structure::HSS},           {"fisher.multilevel", hfisher::Structure::Multilevel}};
  for (const auto& [name, s] : st) {
    auto F = hfisher::build_curvature(samples, s, fo);
    F->apply(v, y);
    out[name] = flat(y);
    if (s == hfisher::Structure::KFAC || s == hfisher::Structure::Multilevel) {
      F->solve(v, y, 1e-2);
      out[std::string(name) + ".solve"] = flat(y);
    }
  }
  // a small CNN on the same data as 3 x 2 x 2 images: padded convolution,
  // overlapping max pooling, a linear layer; its gradient and its Fisher
  // (KFC for the convolution, the diagonal, low-rank)
  using Net = hfisher::nn::Sequential<S, E>;
  using hfisher::nn::LayerSpec;
  Net cnn({3, 2, 2}, {LayerSpec::conv(4, 2, 1, 1), LayerSpec::relu(), LayerSpec::max_pool(2, 1), LayerSpec::linear(5)},
          o.seed);
  typename Net::Cache cc;
  typename Net::Vector cg("cnn_grad", cnn.num_params()), cv("cnn_v", cnn.num_params()), cy("cnn_y", cnn.num_params());
  cnn.loss_grad(data.x, data.y, cg, cc);
  out["cnn.loss_grad"] = flat(cg);
  fill(cv, random_vec(cv.span(), o.seed + 22));
  const auto cs = hfisher::collect_samples(cnn, data, hfisher::FisherKind::GGN, fo);
  const std::pair<const char*, hfisher::Structure> cst[] = {{"cnn.fisher.diagonal", hfisher::Structure::Diagonal},
                                                            {"cnn.fisher.kfac", hfisher::Structure::KFAC},
                                                            {"cnn.fisher.lowrank", hfisher::Structure::LowRank}};
  for (const auto& [name, s] : cst) {
    auto F = hfisher::build_curvature(cs, s, fo);
    F->apply(cv, cy);
    out[name] = flat(cy);
  }
}

template <class S, class E>
Outputs run_all(const Options& o) {
  Outputs out;
  for (const auto& g : o.groups) {
    if (g == "kernels") kernels_problems<S, E>(o, out);
    if (g == "hodlr") hmatrix_problems<hfisher::HODLR<S, E>>(o, out, "hodlr");
    if (g == "hss") hmatrix_problems<hfisher::HSS<S, E>>(o, out, "hss");
    if (g == "fisher") fisher_problems<S, E>(o, out);
  }
  return out;
}

struct Backend {
  std::string name;
  int team_size;                                     // host team size (0: the backend's default)
  std::function<Outputs(const Options&, bool)> run;  // (options, double precision)
};

template <class E>
Backend backend(const std::string& name, int team = 0) {
  return {name, team, [](const Options& o, bool dbl) { return dbl ? run_all<double, E>(o) : run_all<float, E>(o); }};
}

std::vector<Backend> available() {
  std::vector<Backend> b;
#ifdef KOKKOS_ENABLE_SERIAL
  b.push_back(backend<Kokkos::Serial>("Serial"));
#endif
#ifdef KOKKOS_ENABLE_OPENMP
  b.push_back(backend<Kokkos::OpenMP>("OpenMP"));
  b.push_back(backend<Kokkos::OpenMP>("OpenMP-team2", 2));
#endif
#ifdef KOKKOS_ENABLE_CUDA
  b.push_back(backend<Kokkos::Cuda>("Cuda"));
#endif
  return b;
}

int run(const Options& o) {
  if (!o.output.empty()) hfisher::io::prepare_output_dir(o.output, "hfisher-portability");  // before any work
  auto all = available();
  std::vector<Backend> use;
  if (o.backends.empty()) {
    for (auto& b : all)
      if (o.team2 || b.team_size == 0) use.push_back(b);
  } else {
    for (const auto& name : o.backends) {
      auto it = std::find_if(all.begin(), all.end(), [&](const Backend& b) { return b.name == name; });
      if (it == all.end()) {
        std::string have;
        for (auto& b : all) have += " " + b.name;
        throw hfisher::Error("hfisher-portability: backend '" + name +
                             "' is not enabled in this build (enabled:" + have + ")");
      }
      use.push_back(*it);
    }
  }
  hfisher::detail::require(use.size() >= 2, "hfisher-portability", "need at least two backends to compare, have ",
                           use.size());
  std::vector<bool> precisions;
  if (o.precision != "float") precisions.push_back(true);
  if (o.precision != "double") precisions.push_back(false);
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::printf("hfisher-portability: %s; backends", date);
  for (auto& b : use) std::printf(" %s", b.name.c_str());
  std::printf(" (reference %s); host threads %d\n\n", use[0].name.c_str(),
              Kokkos::DefaultHostExecutionSpace().concurrency());
  std::printf("%-22s %-7s %-14s %12s %10s %s\n", "operation", "scalar", "backend", "max rel diff", "tolerance", "");
  std::ostringstream csv, js;
  csv << "operation,scalar,backend,reference,max_rel_diff,tolerance,pass\n";
  js << "{\n  \"date\": \"" << date << "\",\n  \"reference\": \"" << use[0].name
     << "\",\n  \"host_threads\": " << Kokkos::DefaultHostExecutionSpace().concurrency()
     << ",\n  \"ranks\": 1,\n  \"results\": [\n";
  int failures = 0, rows = 0;
  const int saved_team = hfisher::detail::host_team_size();
  for (bool dbl : precisions) {
    std::vector<Outputs> res;
    for (auto& b : use) {
      hfisher::detail::host_team_size() = b.team_size > 0 ? b.team_size : saved_team;
      res.push_back(b.run(o, dbl));
    }
    hfisher::detail::host_team_size() = saved_team;
    for (const auto& [op, ref] : res[0]) {
      const auto it = tolerances().find(op);
      hfisher::detail::require(it != tolerances().end(), "hfisher-portability", "no tolerance is named for ", op);
      const auto t = it->second;
      const double tol = (dbl ? t.dbl : t.flt) * o.tol_scale;
      double scale = 0;
      for (double x : ref) scale = std::max(scale, std::abs(x));
      for (std::size_t b = 1; b < use.size(); ++b) {
        const auto& got = res[b].at(op);
        double diff = got.size() == ref.size() ? 0.0 : INFINITY;
        for (std::size_t i = 0; i < ref.size() && i < got.size(); ++i) {
          const double d = std::abs(got[i] - ref[i]);
          diff = std::max(diff, std::isfinite(d) ? d : INFINITY);
        }
        const double rel = diff / std::max(scale, 1e-300);
        const bool pass = rel <= tol;
        failures += pass ? 0 : 1;
        std::printf("%-22s %-7s %-14s %12.3e %10.1e %s\n", op.c_str(), dbl ? "double" : "float", use[b].name.c_str(),
                    rel, tol, pass ? "ok" : "MISMATCH");
        csv << op << "," << (dbl ? "double" : "float") << "," << use[b].name << "," << use[0].name << "," << rel << ","
            << tol << "," << (pass ? 1 : 0) << "\n";
        js << (rows++ ? ",\n" : "") << "    {\"operation\": \"" << op << "\", \"scalar\": \""
           << (dbl ? "double" : "float") << "\", \"backend\": \"" << use[b].name << "\", \"max_rel_diff\": " << rel
           << ", \"tolerance\": " << tol << ", \"pass\": " << (pass ? "true" : "false") << "}";
      }
    }
  }
  js << "\n  ],\n  \"failures\": " << failures << "\n}\n";
  if (!o.output.empty()) {
    hfisher::io::atomic_write(o.output + "/portability.csv", "hfisher-portability",
                              [&](std::ostream& f) { f << csv.str(); });
    hfisher::io::atomic_write(o.output + "/portability.json", "hfisher-portability",
                              [&](std::ostream& f) { f << js.str(); });
    std::ostringstream gp;
    gp << "# file names are relative: run gnuplot in this folder\n"
       << "set terminal pngcairo size 1500,650 font ',9'\nset output 'portability.png'\n"
       << "set datafile separator ','\nset style data histograms\nset style fill solid 0.8\nset logscale y\n"
       << "set format y '1e%L'\nset yrange [1e-18:1]\nset bmargin 12\nset xtics rotate by -60 font ',8'\n"
       << "set key top left\nset ylabel 'max |x - x_{" << use[0].name << "}| / max |x_{" << use[0].name << "}|'\n"
       << "set title 'backend differences per operation: bars, tolerances: dots (" << date << ")'\n"
       << "plot 'portability.csv' every ::1 using ($5 > 1e-18 ? $5 : 1e-18):xtic(stringcolumn(1).' '"
       << ".substr(stringcolumn(2),1,1).' '.stringcolumn(3)) title 'difference', '' every ::1 using 0:6 title "
       << "'tolerance' with points pt 7\n";
    hfisher::io::atomic_write(o.output + "/portability.gp", "hfisher-portability",
                              [&](std::ostream& f) { f << gp.str(); });
    const bool plotted = hfisher::io::run_gnuplot(o.output, "portability.gp");
    std::printf("\nwrote %s/portability.json, portability.csv, portability.gp%s\n", o.output.c_str(),
                plotted ? ", portability.png" : "");
  }
  std::printf("\n%d comparison(s), %d mismatch(es)\n", rows, failures);
  return failures == 0 ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  hfisher_cli::openmp_defaults(argv);  // OMP_WAIT_POLICY=passive, OMP_PROC_BIND=false unless set
  const auto guard = hfisher_cli::start_runtime(argc, argv, "hfisher-portability");  // bad Kokkos arguments: a message
  if (!guard) return 2;
  CLI::App app{
      "hfisher-portability: the same kernel, HODLR, HSS and Fisher problems on every enabled backend, compared"};
  hfisher_cli::show_defaults(app);
  Options o;
  std::string enabled;
  for (auto& b : available()) enabled += (enabled.empty() ? "" : ", ") + b.name;
  app.add_option("--backend", o.backends,
                 "repeatable: backends to compare, the first is the reference (default: all enabled: " + enabled + ")");
  app.add_option("--group", o.groups, "repeatable: kernels, hodlr, hss, fisher (default: all)")
      ->check(CLI::IsMember({"kernels", "hodlr", "hss", "fisher"}));
  app.add_option("--precision", o.precision, "double, float or both")
      ->check(CLI::IsMember({"double", "float", "both"}));
  app.add_option("--batch", o.batch, "batch entries of the kernel problems")->check(CLI::Range(1, 4096));
  app.add_option("--n", o.n, "matrix size of the kernel problems")->check(CLI::Range(8, 512));
  app.add_option("--hodlr-n", o.hodlr_n, "matrix size of the HODLR and HSS problem")->check(CLI::Range(64, 1 << 14));
  app.add_option("--tolerance-scale", o.tol_scale, "multiply every tolerance by this")
      ->check(hfisher_cli::FinitePositive);
  app.add_flag("--team2,!--no-team2", o.team2, "also run the host backends with teams of 2 threads (default on)");
  app.add_option("--seed", o.seed, "seed of the inputs")->check(hfisher_cli::Unsigned);
  app.add_option("--output", o.output, "directory for portability.json/.csv/.gp/.png (default: none)")
      ->check(hfisher_cli::NonEmpty);
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hfisher-portability: error: %s\n", e.what());
    return 1;
  }
}
