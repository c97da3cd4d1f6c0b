#include "scaling_bench.hpp"
#include "studies.hpp"

#include <hfisher/hfisher.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include "bench_common.hpp"
#include "memory_budget.hpp"

namespace hfisher_perf {
// a named namespace: CUDA extended lambdas need enclosing functions with external linkage
namespace {

using S = double;
using E = Kokkos::DefaultExecutionSpace;
using Mat = Kokkos::View<S**, Kokkos::LayoutRight, E::memory_space>;
using Vec = Kokkos::View<S*, E::memory_space>;
using Samples = hfisher::FisherSamples<S, E>;

hfisher::Structure structure_of(const std::string& s) {
  return hfisher::structure_from_string(s, "hfisher-bench scaling");
}

/// `layers` layers of N = rows x cols parameters (rows = 2^floor(p/2)), S
/// empirical samples each: a (S, cols) with a bias column of ones, g (S, rows),
/// Gaussian with column scales decaying like (1 + j)^-1/2.
Samples synthetic(int p, int layers, int S_, unsigned seed) {
  const int rows = 1 << (p / 2), cols = 1 << (p - p / 2);
  Samples s;
  s.kind = hfisher::FisherKind::Empirical;
  s.examples = S_;
  s.per_example = 1;
  std::mt19937_64 gen(seed + 977ULL * p);
  std::normal_distribution<double> nd(0, 1);
  long off = 0;
  for (int l = 0; l < layers; ++l) {
    hfisher::nn::LayerShape sh;
    sh.in = cols - 1;
    sh.out = rows;
    sh.offset = off;
    off += sh.size();
    s.layers.push_back(l);
    s.shapes.push_back(sh);
    Mat a("a", S_, cols), g("g", S_, rows);
    auto ah = Kokkos::create_mirror_view(a);
    auto gh = Kokkos::create_mirror_view(g);
    for (int i = 0; i < S_; ++i) {
      for (int j = 0; j < cols; ++j) ah(i, j) = j == cols - 1 ? 1.0 : nd(gen) / std::sqrt(1.0 + j);
      for (int j = 0; j < rows; ++j) gh(i, j) = nd(gen) / std::sqrt((1.0 + j) * S_);
    }
    Kokkos::deep_copy(a, ah);
    Kokkos::deep_copy(g, gh);
    s.a.push_back(a);
    s.g.push_back(g);
  }
  return s;
}

/// y = F v exactly, matrix-free: per layer, c_s = g_s^T V a_s and Y = G^T diag(c) A.
void exact_apply(const Samples& s, const Vec& v, const Vec& y) {
  E space;
  for (std::size_t k = 0; k < s.shapes.size(); ++k) {
    const int rows = s.shapes[k].out, cols = s.shapes[k].cols(), n = s.samples();
    const Mat V(v.data() + s.shapes[k].offset, rows, cols), Y(y.data() + s.shapes[k].offset, rows, cols);
    Mat M("M", n, cols), Ac("Ac", n, cols);
    hfisher::kernels::detail::matmul_nocheck(space, hfisher::Op::NoTrans, hfisher::Op::NoTrans, S(1), s.g[k], V, S(0),
                                             M);
    auto a = s.a[k];
    Kokkos::parallel_for(
        "hfisher::bench::exact_c", Kokkos::RangePolicy<E>(space, 0, n), KOKKOS_LAMBDA(const int i) {
          S c = 0;
          for (int j = 0; j < cols; ++j) c += M(i, j) * a(i, j);
          for (int j = 0; j < cols; ++j) Ac(i, j) = c * a(i, j);
        });
    hfisher::kernels::detail::matmul_nocheck(space, hfisher::Op::Trans, hfisher::Op::NoTrans, S(1), s.g[k], Ac, S(0),
                                             Y);
  }
}

double trace(const Samples& s) {
  double t = 0;
  for (std::size_t k = 0; k < s.shapes.size(); ++k) {
    auto a = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), s.a[k]);
    auto g = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), s.g[k]);
    for (int i = 0; i < s.samples(); ++i) {
      double na = 0, ng = 0;
      for (std::size_t j = 0; j < a.extent(1); ++j) na += a(i, j) * a(i, j);
      for (std::size_t j = 0; j < g.extent(1); ++j) ng += g(i, j) * g(i, j);
      t += na * ng;
    }
  }
  return t;
}

double norm(const Vec& v) { return std::sqrt(hfisher::fisher::detail::dot<E>(v, v)); }

/// Layer k's per-sample gradients as the columns of G (N_k x S):
/// G(i * cols + j, s) = g(s, i) a(s, j), so F_k = G G^T.
Mat per_sample_gradients(const Samples& s, std::size_t k) {
  const int rows = s.shapes[k].out, cols = s.shapes[k].cols(), n = s.samples();
  Mat G(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::bench::G"), long(rows) * cols, n);
  auto a = s.a[k];
  auto g = s.g[k];
  Kokkos::parallel_for(
      "hfisher::bench::per_sample", Kokkos::RangePolicy<E>(0, long(rows) * cols), KOKKOS_LAMBDA(const long q) {
        const int i = int(q / cols), j = int(q % cols);
        for (int t = 0; t < n; ++t) G(q, t) = g(t, i) * a(t, j);
      });
  return G;
}

/// The "hss" column: per layer, HSS::from_factors(0, G) on the parameters'
/// index order (as the hierarchical structure), damped and factored (ULV).
struct HssTiming {
  double build = 0, factor = 0, solve = 0, bytes = 0, err = 0;
};
HssTiming run_hss(const Samples& s, const Vec& v, const Vec& ye, const Vec& b, const Vec& x, double lambda,
                  const ScalingBenchOptions& o) {
  using HS = hfisher::HSS<S, E>;
  HssTiming r;
  hfisher::CompressionOptions co;
  co.tol = o.tol;
  co.max_rank = o.max_rank;
  co.allow_capped = true;  // a memory budget, as for the Fisher estimator's HODLR blocks
  Vec y("y", s.size());
  std::vector<HS> H;
  std::vector<hfisher::HSSFactorization<S, E>> F;
  double t = now();
  for (std::size_t k = 0; k < s.shapes.size(); ++k) {
    const Mat G = per_sample_gradients(s, k);
    Vec d("d", G.extent(0));
    H.push_back(HS::from_factors(d, G, hfisher::ClusterTree::balanced(int(G.extent(0)), o.leaf), co));
  }
  Kokkos::fence();
  r.build = now() - t;
  auto solve_all = [&]() {
    for (std::size_t k = 0; k < H.size(); ++k) {
      const long off = s.shapes[k].offset, nk = s.shapes[k].size();
      F[k].solve(Mat(b.data() + off, nk, 1), Mat(x.data() + off, nk, 1));
    }
    Kokkos::fence();
  };
  for (std::size_t k = 0; k < H.size(); ++k) {
    const long off = s.shapes[k].offset, nk = s.shapes[k].size();
    H[k].apply(Mat(v.data() + off, nk, 1), Mat(y.data() + off, nk, 1));
    r.bytes += double(H[k].bytes());
  }
  t = now();
  for (auto& h : H) {
    auto shifted = h.clone();
    shifted.add_diagonal(S(lambda));
    F.push_back(shifted.factor());
  }
  solve_all();
  r.factor = now() - t;
  t = now();
  solve_all();
  r.solve = now() - t;
  Kokkos::parallel_for(
      "hfisher::bench::hss_diff", Kokkos::RangePolicy<E>(0, s.size()), KOKKOS_LAMBDA(const long i) { y(i) -= ye(i); });
  r.err = norm(y) / norm(ye);
  return r;
}

struct Row {
  std::string structure;
  int log2n = 0;
  long n = 0;
  double build = 0, factor = 0, solve = 0, bytes = 0, err = 0;
  int products = 0;      ///< Fisher-vector products of a matrix-free build (0: none)
  double estimate = -1;  ///< its estimated relative error (-1: none)
  int max_rank = -1;     ///< largest off-diagonal rank of a hierarchical block (-1: none)
};

/// Products, error estimate and largest rank of the hierarchical block of a
/// one-layer operator (nothing for the other structures).
void hierarchical_report(const hfisher::CurvatureOperator<S, E>& op, Row& r) {
  const auto* bd = dynamic_cast<const hfisher::fisher::BlockDiagonalOperator<S, E>*>(&op);
  if (!bd) return;
  auto fill = [&r](const auto& h) {
    const auto& info = h.build_info();
    r.products = info.samples > 0 ? info.products : 0;  // matrix-free builds only
    r.estimate = info.probes > 0 || info.entries > 0 ? info.error_estimate : -1;
    r.max_rank = 0;
    for (const auto& rs : h.ranks()) r.max_rank = std::max(r.max_rank, rs.max);
  };
  if (const auto* h = dynamic_cast<const hfisher::fisher::HODLROperator<S, E>*>(&bd->block(0)))
    fill(h->matrix());
  else if (const auto* q = dynamic_cast<const hfisher::fisher::HSSOperator<S, E>*>(&bd->block(0)))
    fill(q->matrix());
}

/// Growth exponent of build + factor + solve time of one structure: over
/// all sizes run, or (upper) over the largest half of them (at least 3),
/// where fixed costs no longer hide the asymptotic growth.
double fit_exponent(const std::vector<Row>& rows, const std::string& st, bool upper = false) {
  std::vector<double> n, t;
  for (const auto& r : rows)
    if (r.structure == st) {
      n.push_back(double(r.n));
      t.push_back(r.build + r.factor + r.solve);
    }
  if (upper) {
    const std::size_t keep = std::max<std::size_t>(3, (n.size() + 1) / 2);
    if (n.size() < keep) return std::nan("");
    n.erase(n.begin(), n.end() - long(keep));
    t.erase(t.begin(), t.end() - long(keep));
  }
  return slope(n, t);
}

/// Largest N of a structure.
int max_log2_of(const ScalingBenchOptions& o, const std::string& st) {
  if (st == "dense") return o.dense_max_log2;
  if (st == "kfac") return o.kfac_max_log2;
  if (st == "lowrank") return o.lowrank_max_log2;
  if (st == "hodlr") return o.hierarchical_max_log2;
  return o.hss_max_log2;
}

/// Range of N = 2^lo..2^hi a structure ran over.
std::string size_range(const std::vector<Row>& rows, const std::string& st, bool upper) {
  std::vector<int> p;
  for (const auto& r : rows)
    if (r.structure == st) p.push_back(r.log2n);
  if (upper) {
    const std::size_t keep = std::max<std::size_t>(3, (p.size() + 1) / 2);
    if (p.size() < keep) return "-";
    p.erase(p.begin(), p.end() - long(keep));
  }
  if (p.empty()) return "-";
  return "2^" + std::to_string(p.front()) + "..2^" + std::to_string(p.back());
}

/// A hierarchical row's report: products (matrix-free), error estimate,
/// largest rank.
void print_report(const Row& r) {
  if (r.products > 0) std::printf("   %d products,", r.products);
  if (r.estimate >= 0) std::printf("%sestimate %.2e", r.products > 0 ? " " : "   ", r.estimate);
  if (r.max_rank >= 0) std::printf("   max rank %d", r.max_rank);
}

/// One table row; a hierarchical row adds its report.
void print_row(const Row& r) {
  std::printf("%-13s %4d %10ld %10.4f %12.4f %10.5f %11.2f %12.3e", r.structure.c_str(), r.log2n, r.n, r.build,
              r.factor, r.solve, r.bytes / 1e6, r.err);
  print_report(r);
  std::printf("\n");
  std::fflush(stdout);
}

/// The vectors a row is measured with: v (the error probe) and ye = F v
/// exact, b the right-hand side, y and x work space.
struct Probe {
  Vec v, y, ye, b, x;
  double fnorm = 0;  ///< |F v|
};

/// Measures row r `reps` times (best times): build() timed, the error
/// |F~ v - F v| / |F v|, memory and the hierarchical report, then the first
/// damped solve (factorization or eigendecompositions + solve) and a second
/// one. Under MPI every time is the slowest rank's. On failure the root
/// prints what the build achieved and why it failed; returns false.
bool measure(Row& r, const std::function<std::unique_ptr<hfisher::CurvatureOperator<S, E>>()>& build, const Probe& pr,
             double lambda, int reps, const hfisher::dist::Communicator& comm) {
  r.build = r.factor = r.solve = 1e300;
  bool built = false;
  try {
    for (int rep = 0; rep < reps; ++rep) {
      comm.barrier();
      double t = now();
      auto F = build();
      Kokkos::fence();
      r.build = std::min(r.build, comm.max(now() - t));
      F->apply(pr.v, pr.y);
      const Vec y = pr.y, ye = pr.ye;
      Kokkos::parallel_for(
          "hfisher::bench::diff", Kokkos::RangePolicy<E>(0, long(y.extent(0))),
          KOKKOS_LAMBDA(const long i) { y(i) -= ye(i); });
      r.err = norm(y) / pr.fnorm;
      r.bytes = double(F->bytes());
      hierarchical_report(*F, r);
      built = true;
      t = now();
      F->solve(pr.b, pr.x, lambda);  // first solve: factorization (or eigendecompositions) + solve
      Kokkos::fence();
      r.factor = std::min(r.factor, comm.max(now() - t));
      t = now();
      F->solve(pr.b, pr.x, lambda);
      Kokkos::fence();
      r.solve = std::min(r.solve, comm.max(now() - t));
    }
  } catch (const std::exception& e) {
    if (comm.root() && built) {  // what the build achieved, then why the damped solve failed
      std::printf("%-13s %4d %10ld %10.4f %12s %10s %11.2f %12.3e", r.structure.c_str(), r.log2n, r.n, r.build, "-",
                  "-", r.bytes / 1e6, r.err);
      print_report(r);
      std::printf("\n%-13s solve failed: %s\n", "", e.what());
    } else if (comm.root()) {
      std::printf("%-13s %4d %10ld   failed: %s\n", r.structure.c_str(), r.log2n, r.n, e.what());
    }
    return false;
  }
  return true;
}

/// A Probe of n parameters: v and b Gaussian (seeded), ye = F v by `apply`.
template <class Apply>
Probe make_probe(long n, unsigned seed, Apply&& apply) {
  Probe pr{Vec("v", n), Vec("y", n), Vec("ye", n), Vec("b", n), Vec("x", n)};
  auto vh = Kokkos::create_mirror_view(pr.v);
  std::mt19937_64 gen(seed + 5);
  std::normal_distribution<double> nd(0, 1);
  for (long i = 0; i < n; ++i) vh(i) = nd(gen);
  Kokkos::deep_copy(pr.v, vh);
  Kokkos::deep_copy(pr.b, vh);
  apply(pr.v, pr.ye);
  pr.fnorm = norm(pr.ye);
  return pr;
}

/// The rows of --model mlp: per size, an MLP inputs-w-w-classes trained on
/// the data, and its hidden layer's Fisher in every structure (the
/// hierarchical ones from products with --matrix-free), against exact
/// Fisher-vector products. `names` receives the row names, in order.
std::vector<Row> model_rows(const ScalingBenchOptions& o, const hfisher::dist::Communicator& comm,
                            std::vector<std::string>& names) {
  constexpr const char* where = "hfisher-bench scaling";
  const bool root = comm.root();
  auto train_h = hfisher::nn::load_mnist_dir(o.data, true);
  train_h = hfisher::nn::slice(train_h, 0, std::min(o.train_examples, train_h.n));
  hfisher::detail::require(o.samples <= train_h.n, where, "--samples ", o.samples, " exceeds the ", train_h.n,
                           " training examples (--train-examples)");
  const auto train = hfisher::nn::to_device<S, E>(train_h);
  const auto kind = hfisher::fisher_kind_from_string(o.kind, where);
  auto mf = [&o](const std::string& st) { return o.matrix_free && (st == "hodlr" || st == "hss"); };
  names.clear();
  for (const auto& st : o.structures) names.push_back(mf(st) ? st + "-mf" : st);
  std::vector<Row> rows;
  for (int p = o.min_log2; p <= o.max_log2; ++p) {
    const int w = int(std::lround(std::sqrt(std::ldexp(1.0, p))));
    hfisher::nn::MLP<S, E> model({train_h.features, w, w, train_h.classes}, hfisher::nn::Activation::ReLU, o.seed);
    hfisher::nn::Adam<S, E> adam;
    adam.lr = 1e-3;
    std::mt19937_64 rng(o.seed);
    double t = now();
    double loss = 0;
    for (int e = 0; e < o.epochs; ++e) loss = hfisher::nn::train_epoch(model, train, 128, adam, rng);
    const double t_train = now() - t;
    hfisher::FisherOptions fo;
    fo.examples = o.samples;
    fo.layers = {1};
    fo.lowrank.rank = o.max_rank;
    fo.set_tol(o.tol);
    fo.compression.leaf = o.leaf;
    fo.compression.max_rank = o.max_rank;
    fo.seed = o.seed;
    fo.memory_budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
    // the exact products (the reference), the per-sample factors (the other
    // structures, and the trace that sets the damping)
    const hfisher::FisherProduct<S, E> fp(model, train, kind, fo, comm);
    const long n = fp.size();
    const Probe pr = make_probe(
        n, o.seed, [&fp, n](const Vec& v, const Vec& ye) { fp.apply(Mat(v.data(), n, 1), Mat(ye.data(), n, 1)); });
    t = now();
    const auto samples = hfisher::collect_samples(model, train, kind, fo, comm);
    const double t_samples = comm.max(now() - t);
    double tr = 0;
    {
      const auto d = Kokkos::create_mirror_view_and_copy(
          Kokkos::HostSpace(), hfisher::build_curvature(samples, hfisher::Structure::Diagonal, fo, comm)->diag());
      for (long i = 0; i < n; ++i) tr += d(i);
    }
    const double lambda = o.damping * tr / double(n);
    if (root)
      std::printf(
          "p = %d: MLP %d-%d-%d-%d, train loss %.4f after %d epoch(s) (%.1f s); layer 1: %ld parameters, %s "
          "Fisher of %d examples (passes %.2f s), damping %.3g\n",
          p, train_h.features, w, w, train_h.classes, loss, o.epochs, t_train, n, hfisher::to_string(kind),
          samples.examples, t_samples, lambda);
    for (std::size_t k = 0; k < o.structures.size(); ++k) {
      const auto& st = o.structures[k];
      if (p > max_log2_of(o, st)) continue;
      Row r;
      r.structure = names[k];
      r.log2n = p;
      r.n = n;
      const bool free = mf(st);
      auto f2 = fo;
      f2.matrix_free = free;
      f2.compression.spd_compensation = st == "hodlr" && !free;  // as the synthetic rows
      if (!measure(
              r,
              [&] {
                return free ? hfisher::estimate_fisher(model, train, kind, structure_of(st), f2, comm)
                            : hfisher::build_curvature(samples, structure_of(st), f2, comm);
              },
              pr, lambda, o.reps, comm))
        continue;
      rows.push_back(r);
      if (root) print_row(r);
    }
  }
  return rows;
}

}  // namespace

int run_scaling_bench(const ScalingBenchOptions& opts) {
  ScalingBenchOptions o = opts;
  for (auto& s : o.structures)  // the former name of the HODLR structure
    if (s == "hierarchical") s = "hodlr";
  hfisher::detail::require(o.min_log2 <= o.max_log2, "hfisher-bench scaling", "--min-log2 ", o.min_log2,
                           " > --max-log2 ", o.max_log2);
  const bool synth = o.model == "synthetic";
  hfisher::detail::require(!synth || !o.matrix_free, "hfisher-bench scaling",
                           "--matrix-free takes --model mlp (the synthetic Fisher has no model to take products with)");
  hfisher::detail::require(!synth || o.samples <= 4096, "hfisher-bench scaling", "--samples ", o.samples,
                           ": the synthetic Fisher takes at most 4096 per-sample gradients");
  hfisher::detail::require(synth || o.samples <= o.train_examples, "hfisher-bench scaling", "--samples ", o.samples,
                           " exceeds --train-examples ", o.train_examples,
                           " (the Fisher's examples are training ones)");
  hfisher::detail::require(synth || o.layers == 1, "hfisher-bench scaling",
                           "--layers takes --model synthetic (--model mlp studies one hidden layer)");
  const auto comm = hfisher::dist::Communicator::world();
  const bool root = comm.root();
  // every rank checks (an exception on the root alone would leave the others in a collective)
  if (!o.output.empty()) hfisher::io::prepare_output_dir(o.output, "hfisher-bench scaling");
  if (synth) {  // the memory budget, for the largest N before any work: the S per-sample
                // gradients of every layer (and their copy), the dense structure up to
                // its limit (matrix and Cholesky), the H-matrices at the rank cap
    const std::size_t budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
    for (int p = o.min_log2; p <= o.max_log2; ++p) {
      const double N = std::ldexp(1.0, p);
      const double samples = 2.0 * 8 * N * o.samples * o.layers;
      const double dense = p <= o.dense_max_log2 ? 2.0 * 8 * N * N * o.layers : 0;
      const double hm = 2.0 * 8 * N * (o.leaf + 2.0 * std::max(0, p - 6) * o.max_rank) * o.layers;
      hfisher_cli::check_memory(samples + dense + hm, budget, "hfisher-bench scaling",
                                "N = 2^" + std::to_string(p) + " x " + std::to_string(o.layers) +
                                    " layer(s) (per-sample gradients " + hfisher_cli::mib_text(samples) + ", dense " +
                                    hfisher_cli::mib_text(dense) + ", H-matrices about " + hfisher_cli::mib_text(hm) +
                                    ")");
    }
  } else {  // the training images (float, host and device), the per-sample factors of the
            // largest layer (S x classes rows of w outputs and S of w + 1 inputs), the dense
            // structure up to its limit; each structure checks its own needs before it allocates
    const std::size_t budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
    const double N = std::ldexp(1.0, o.max_log2), w = std::sqrt(N);
    const double data = 2.0 * 4 * o.train_examples * 784;
    const double factors = 8.0 * o.samples * (o.kind == "ggn" ? 10 : 1) * w + 8.0 * o.samples * (w + 1);
    const double dense = o.max_log2 <= o.dense_max_log2 ? 2.0 * 8 * N * N : 0;
    hfisher_cli::check_memory(data + factors + dense, budget, "hfisher-bench scaling",
                              "the training data (" + hfisher_cli::mib_text(data) +
                                  "), the per-sample factors at N = 2^" + std::to_string(o.max_log2) + " (" +
                                  hfisher_cli::mib_text(factors) + ") and dense (" + hfisher_cli::mib_text(dense) +
                                  ")");
  }
  const Machine mach = describe_machine();
  if (root && !synth)
    std::printf(
        "hfisher-bench scaling: %s, %s backend, %s host threads, %d rank(s), %s\n"
        "the hidden layer of an MLP trained on %d examples (%d epoch(s)), %s Fisher of %d examples%s; damping %g "
        "trace(F)/N; hierarchical leaf %d, max rank %d, tol %g; low-rank rank %d\n\n",
        mach.cpu.c_str(), mach.backend.c_str(), mach.host_threads.c_str(), comm.size(), mach.date.c_str(),
        o.train_examples, o.epochs, o.kind.c_str(), o.samples,
        o.matrix_free ? ", HODLR and HSS from Fisher-vector products" : "", o.damping, o.leaf, o.max_rank, o.tol,
        o.max_rank);
  if (root && synth)
    std::printf(
        "hfisher-bench scaling: %s, %s backend, %s host threads, %d rank(s), %s\n"
        "one layer of N parameters (rows = 2^floor(p/2)), Fisher of %d synthetic per-sample gradients, "
        "x %d layer(s); damping %g trace(F)/N; hierarchical leaf %d, max rank %d, tol %g\n\n",
        mach.cpu.c_str(), mach.backend.c_str(), mach.host_threads.c_str(), comm.size(), mach.date.c_str(), o.samples,
        o.layers, o.damping, o.leaf, o.max_rank, o.tol);
  if (root)
    std::printf("%-13s %4s %10s %10s %12s %10s %11s %12s\n", "structure", "p", "N", "build s", "factor s", "solve s",
                "MB", "rel error");
  std::vector<Row> rows;
  std::vector<std::string> names = o.structures;  // row names (with --matrix-free: hodlr-mf, hss-mf)
  if (!synth) rows = model_rows(o, comm, names);
  for (int p = o.min_log2; synth && p <= o.max_log2; ++p) {
    auto s = synthetic(p, o.layers, o.samples, o.seed);
    const long n = s.size();
    const Probe pr = make_probe(n, o.seed, [&s](const Vec& v, const Vec& ye) { exact_apply(s, v, ye); });
    const double lambda = o.damping * trace(s) / double(n);
    for (const auto& st : o.structures) {
      if (p > max_log2_of(o, st)) continue;
      hfisher::FisherOptions fo;
      fo.lowrank.rank = o.samples;
      fo.set_tol(o.tol);
      fo.compression.leaf = o.leaf;
      fo.compression.max_rank = o.max_rank;
      fo.compression.spd_compensation = true;  // factorizable at any damping
      fo.memory_budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
      Row r;
      r.structure = st;
      r.log2n = p;
      r.n = 1L << p;  // parameters per layer
      r.build = r.factor = r.solve = 1e300;
      if (st == "hss") {
        if (comm.distributed() && !root) continue;  // one process: HSS builds are not sharded
        try {
          for (int rep = 0; rep < o.reps; ++rep) {
            const auto h = run_hss(s, pr.v, pr.ye, pr.b, pr.x, lambda, o);
            r.build = std::min(r.build, h.build);
            r.factor = std::min(r.factor, h.factor);
            r.solve = std::min(r.solve, h.solve);
            r.err = h.err;
            r.bytes = h.bytes;
          }
        } catch (const std::exception& e) {
          std::printf("%-13s %4d %10ld   failed: %s\n", st.c_str(), p, 1L << p, e.what());
          continue;
        }
        rows.push_back(r);
        std::printf("%-13s %4d %10ld %10.4f %12.4f %10.5f %11.2f %12.3e\n", st.c_str(), p, r.n, r.build, r.factor,
                    r.solve, r.bytes / 1e6, r.err);
        continue;
      }
      if (!measure(
              r, [&] { return hfisher::build_curvature(s, structure_of(st), fo, comm); }, pr, lambda, o.reps, comm))
        continue;
      rows.push_back(r);
      if (root) print_row(r);
    }
  }
  if (root) {
    std::printf(
        "\nfitted exponent of build + factor + solve time in N (least squares in log-log):\n"
        "  %-13s %8s %-14s %8s %-14s\n",
        "structure", "all", "(sizes)", "upper", "(largest half)");
    for (const auto& st : names)
      std::printf("  %-13s %8.2f %-14s %8.2f %-14s\n", st.c_str(), fit_exponent(rows, st),
                  size_range(rows, st, false).c_str(), fit_exponent(rows, st, true),
                  size_range(rows, st, true).c_str());
  }
  // MPI: the per-layer builds of the largest size, one rank against all ranks
  struct Scal {
    std::string structure;
    int log2n = 0;
    double t1 = 0, tp = 0, t1w = 0, tpw = 0;
  };
  std::vector<Scal> scal;
  if (comm.distributed() && synth) {
    const hfisher::dist::Communicator one;
    for (const auto& st : o.structures) {
      const int p = std::min(o.max_log2, max_log2_of(o, st));  // each structure at its largest size
      if (p < o.min_log2 || st == "lowrank" || st == "hss") continue;
      hfisher::FisherOptions fo;
      fo.set_tol(o.tol);
      fo.compression.leaf = o.leaf;
      fo.compression.max_rank = o.max_rank;
      fo.compression.spd_compensation = true;
      fo.memory_budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
      Scal sc;
      sc.structure = st;
      sc.log2n = p;
      auto time_build = [&](const Samples& s, const hfisher::dist::Communicator& c, bool only_root) {
        comm.barrier();
        double t = 0;
        if (!only_root || root) {
          const double t0 = now();
          auto F = hfisher::build_curvature(s, structure_of(st), fo, c);
          Kokkos::fence();
          t = now() - t0;
        }
        return comm.max(t);
      };
      const auto s1 = synthetic(p, o.layers, o.samples, o.seed);
      const auto sp = synthetic(p, o.layers * comm.size(), o.samples, o.seed);
      sc.t1 = time_build(s1, one, true);    // one rank, `layers` layers
      sc.tp = time_build(s1, comm, false);  // P ranks, same layers (strong)
      sc.t1w = sc.t1;                       // weak: P ranks, P x layers, against one rank with `layers`
      sc.tpw = time_build(sp, comm, false);
      scal.push_back(sc);
    }
    if (root) {
      std::printf(
          "\nMPI scaling of the per-layer builds at each structure's largest N (%d ranks; layers sharded, "
          "factorizations not):\n%-13s %4s %8s %12s %12s %10s %12s %10s\n",
          comm.size(), "structure", "p", "layers", "1 rank s", "P ranks s", "strong eff", "weak P s", "weak eff");
      for (const auto& sc : scal)
        std::printf("%-13s %4d %8d %12.4f %12.4f %10.2f %12.4f %10.2f\n", sc.structure.c_str(), sc.log2n, o.layers,
                    sc.t1, sc.tp, sc.t1 / (comm.size() * sc.tp), sc.tpw, sc.t1w / sc.tpw);
    }
  }
  if (root && !o.output.empty()) {
    std::ostringstream csv, js, gp;
    csv << "structure,log2n,n,build_s,factor_s,solve_s,bytes,rel_error,products,error_estimate\n";
    for (const auto& r : rows)
      csv << r.structure << "," << r.log2n << "," << r.n << "," << r.build << "," << r.factor << "," << r.solve << ","
          << r.bytes << "," << r.err << "," << r.products << "," << r.estimate << "\n";
    js << "{\n  \"machine\": \"" << mach.cpu << "\",\n  \"backend\": \"" << mach.backend
       << "\",\n  \"threads\": " << mach.host_threads << ",\n  \"ranks\": " << comm.size() << ",\n  \"date\": \""
       << mach.date << "\",\n  \"model\": \"" << o.model
       << "\",\n  \"matrix_free\": " << (o.matrix_free ? "true" : "false") << ",\n  \"samples\": " << o.samples
       << ",\n  \"layers\": " << o.layers << ",\n  \"exponents\": {";
    for (std::size_t k = 0; k < names.size(); ++k) {
      const double e = fit_exponent(rows, names[k]);
      js << (k ? ", " : "") << "\"" << names[k] << "\": " << (std::isfinite(e) ? std::to_string(e) : "null");
    }
    js << "},\n  \"exponents_upper_half\": {";
    for (std::size_t k = 0; k < names.size(); ++k) {
      const double e = fit_exponent(rows, names[k], true);
      js << (k ? ", " : "") << "\"" << names[k] << "\": " << (std::isfinite(e) ? std::to_string(e) : "null");
    }
    js << "},\n  \"rows\": [\n";
    for (std::size_t k = 0; k < rows.size(); ++k) {
      const auto& r = rows[k];
      js << "    {\"structure\": \"" << r.structure << "\", \"n\": " << r.n << ", \"build_s\": " << r.build
         << ", \"factor_s\": " << r.factor << ", \"solve_s\": " << r.solve << ", \"bytes\": " << r.bytes
         << ", \"rel_error\": " << r.err << ", \"products\": " << r.products << ", \"error_estimate\": " << r.estimate
         << "}" << (k + 1 < rows.size() ? "," : "") << "\n";
    }
    js << "  ],\n  \"mpi\": [";
    for (std::size_t k = 0; k < scal.size(); ++k)
      js << (k ? ", " : "") << "{\"structure\": \"" << scal[k].structure << "\", \"log2n\": " << scal[k].log2n
         << ", \"one_rank_s\": " << scal[k].t1 << ", \"ranks_s\": " << scal[k].tp
         << ", \"weak_ranks_s\": " << scal[k].tpw << "}";
    js << "]\n}\n";
    gp << "# file names are relative: run gnuplot in this folder\n"
       << "set terminal pngcairo size 800,520\nset output 'scaling.png'\n"
       << "set datafile separator ','\nset logscale xy\nset format x '2^{%L}'\nset xlabel 'N (parameters of the "
          "layer)'\n"
       << "set ylabel 'build + factor + solve (s)'\nset key top left\nset title 'Fisher of one layer, S = " << o.samples
       << " (" << mach.date << ", " << mach.backend << ")'\nset format x '%.0e'\nplot ";
    for (std::size_t k = 0; k < names.size(); ++k)
      gp << "'scaling.csv' using ((strcol(1) eq '" << names[k] << "') ? $3 : 1/0):($4+$5+$6)"
         << " with linespoints title '" << names[k] << "'" << (k + 1 < names.size() ? ", " : "\n");
    write_file_atomic(o.output + "/scaling.csv", csv.str());
    write_file_atomic(o.output + "/scaling.json", js.str());
    write_file_atomic(o.output + "/scaling.gp", gp.str());
    const bool plotted = hfisher::io::run_gnuplot(o.output, "scaling.gp");
    std::printf("\nwrote %s/scaling.csv, scaling.json, scaling.gp%s\n", o.output.c_str(),
                plotted ? ", scaling.png" : "");
  }
  return 0;
}

Study scaling_study() {
  return make_study<ScalingBenchOptions>("scaling",
                                         "one layer's Fisher (synthetic, or a trained MLP's with --model mlp, HODLR "
                                         "and HSS from products with --matrix-free) as dense, K-FAC, low-rank, HODLR "
                                         "and HSS over N = 2^p: build, factorization, solve, error, fitted exponents; "
                                         "under MPI, strong and weak scaling of the sharded per-layer builds",
                                         add_scaling_options, run_scaling_bench);
}

}  // namespace hfisher_perf
