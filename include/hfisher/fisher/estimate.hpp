#pragma once
/// \file estimate.hpp
/// \brief Fisher / GGN estimation from a model and data into any structure.
///
/// Every kind is written as F = sum_s psi_s psi_s^T, one psi per (example,
/// sample) pair, with psi_s = vec(g_s a~_n^T) per layer (g_s the backward
/// vector at the layer output, a~_n the example's homogeneous input):
///  - Empirical: one sample per example, backward from p - onehot(y) / sqrt(N);
///  - MonteCarlo: R samples yhat ~ p(. | x), backward from (p - onehot(yhat)) / sqrt(N R);
///  - GGN: C samples, backward from sqrt(p_c) (e_c - p) / sqrt(N), the columns
///    of a square root of diag(p) - p p^T, so F = J^T (diag p - p p^T) J exactly.
/// collect_samples() runs the passes once and keeps a~ (N rows per layer) and
/// g (N R rows per layer); build_curvature() turns them into any structure,
/// so one pass serves several structures.

#include <hfisher/core/random.hpp>
#include <hfisher/core/region.hpp>
#include <hfisher/core/comm.hpp>
#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/dense.hpp>
#include <hfisher/fisher/diagonal.hpp>
#include <hfisher/fisher/hierarchical.hpp>
#include <hfisher/fisher/io.hpp>
#include <hfisher/fisher/lowrank.hpp>
#include <hfisher/fisher/multilevel.hpp>
#include <hfisher/kernels/gemm.hpp>
#include <hfisher/kernels/qr.hpp>
#include <hfisher/kernels/randomized.hpp>
#include <hfisher/kernels/syev.hpp>
#include <hfisher/fisher/kfac.hpp>
#include <hfisher/nn/mlp.hpp>

#include <algorithm>
#include <sstream>

namespace hfisher {

struct FisherOptions {
  /// Examples of the data used: the first `examples` ones, or all of them
  /// when 0 (the default: the Fisher of the data given, never a silent cap).
  int examples = 0;
  int batch = 256;                ///< examples per forward/backward pass
  int mc_samples = 1;             ///< labels sampled per example (MonteCarlo)
  std::uint64_t seed = 1;         ///< seed of the label sampler (MonteCarlo)
  std::vector<int> layers;        ///< model layers covered (empty: all), in increasing order
  KFACDamping kfac_damping = KFACDamping::Eigen;
  int rank = 64;                  ///< LowRank: largest rank kept
  double tol = 1e-6;              ///< LowRank and Hierarchical: relative truncation tolerance
  int leaf = 64;                  ///< Hierarchical: leaf size of the balanced cluster tree
  /// Hierarchical: rank cap of off-diagonal blocks, a memory budget: blocks
  /// it stops short of tol are kept and counted in ranks()[level].capped
  /// (0: no cap; the rank is then bounded by the samples)
  int hodlr_max_rank = 256;
  /// Hierarchical: add a bound of each truncation error to the diagonal so the
  /// compressed Fisher stays positive semi-definite at any tolerance (costs
  /// accuracy on the diagonal; see CompressionOptions::spd_compensation).
  /// Without it, a loose tolerance may need damping above the truncation error.
  bool spd_compensation = false;
  int multilevel_levels = 2;      ///< Multilevel: levels of nested low-rank terms per layer
  int multilevel_rank = 8;        ///< Multilevel: rank of each node's term
  std::vector<int> multilevel_ranks;  ///< Multilevel: rank per level (overrides multilevel_rank when not empty)
  /// Multilevel: children per node; nodes split a layer's output units (the
  /// default makes level 1 one node per unit for layers of up to 256 units)
  int multilevel_branching = 256;
  /// Multilevel: power steps of the randomized eigensolver that finds each
  /// node's directions (Halko, Martinsson & Tropp 2011, Alg. 4.4: q); 0 is
  /// one pass. Each step costs one product with every node's Gram matrix and
  /// one batched QR. The default (1 step, oversampling 8) reached the same
  /// continual-learning accuracy as 2 steps with 2r + 8 columns at about
  /// half the construction time (docs/continual.md).
  int multilevel_power_steps = 1;
  /// Multilevel: columns beyond a node's rank in the randomized eigensolver's
  /// block (Halko et al.'s p): a block of min(S, r + p) columns for S
  /// samples; -1: p = r + 8.
  int multilevel_oversampling = 8;
  Structure block = Structure::Dense;  ///< BlockDiagonal: structure of each layer's block
  std::size_t memory_budget = std::size_t(4) << 30;  ///< bytes an estimate may allocate

  void validate(const char* where) const {
    hfisher::detail::require(examples >= 0, where, "examples = ", examples, " (must be >= 0; 0 uses all)");
    hfisher::detail::require(batch >= 1, where, "batch = ", batch, " (must be >= 1)");
    hfisher::detail::require(mc_samples >= 1, where, "mc_samples = ", mc_samples, " (must be >= 1)");
    hfisher::detail::require(rank >= 1, where, "rank = ", rank, " (must be >= 1)");
    hfisher::detail::require(tol > 0 && tol < 1, where, "tol = ", tol, " (must lie in (0, 1))");
    hfisher::detail::require(leaf >= 2, where, "leaf = ", leaf, " (must be >= 2)");
    hfisher::detail::require(hodlr_max_rank >= 0, where, "hodlr_max_rank = ", hodlr_max_rank,
                             " (must be >= 0; 0: no cap)");
    hfisher::detail::require(multilevel_levels >= 1 && multilevel_levels <= 16, where, "multilevel_levels = ",
                             multilevel_levels, " (must lie in [1, 16])");
    hfisher::detail::require(multilevel_rank >= 1, where, "multilevel_rank = ", multilevel_rank, " (must be >= 1)");
    hfisher::detail::require(multilevel_ranks.empty() || int(multilevel_ranks.size()) == multilevel_levels, where,
                             "multilevel_ranks has ", multilevel_ranks.size(), " entries for ", multilevel_levels,
                             " levels");
    for (int r : multilevel_ranks)
      hfisher::detail::require(r >= 1, where, "a multilevel rank is ", r, " (must be >= 1)");
    hfisher::detail::require(multilevel_branching >= 2, where, "multilevel_branching = ", multilevel_branching,
                             " (must be >= 2)");
    hfisher::detail::require(multilevel_power_steps >= 0 && multilevel_power_steps <= 16, where,
                             "multilevel_power_steps = ", multilevel_power_steps, " (must lie in [0, 16])");
    hfisher::detail::require(multilevel_oversampling >= -1, where, "multilevel_oversampling = ",
                             multilevel_oversampling, " (must be >= 0, or -1 for the rank + 8)");
    hfisher::detail::require(block != Structure::BlockDiagonal, where, "block = BlockDiagonal would nest block-diagonals");
    hfisher::detail::require(memory_budget > 0, where, "memory_budget is 0");
  }
};

namespace fisher {

/// Per-sample factors of F for the chosen layers (see the file comment).
template <class Scalar, class ExecSpace = DefaultExec>
struct FisherSamples {
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space>;
  FisherKind kind = FisherKind::Empirical;
  int examples = 0;     ///< N
  int per_example = 1;  ///< R (samples per example)
  std::vector<int> layers;               ///< model layer index of each entry below
  std::vector<nn::LayerShape> shapes;    ///< shapes, offsets renumbered in the operator's vector
  std::vector<Matrix> a;                 ///< (N, cols_l)
  std::vector<Matrix> g;                 ///< (N R, rows_l), scaled so that F = sum psi psi^T
  long size() const { return shapes.empty() ? 0 : shapes.back().offset + shapes.back().size(); }
  int samples() const { return examples * per_example; }
  std::size_t bytes() const {
    std::size_t b = 0;
    for (std::size_t l = 0; l < a.size(); ++l) b += (a[l].span() + g[l].span()) * sizeof(Scalar);
    return b;
  }
};

/// Label r of example i for Monte-Carlo sampling from probabilities p (one
/// counter-based uniform per (seed, i, r): the same on every backend).
template <class PRow>
KOKKOS_INLINE_FUNCTION int sample_label(const PRow& p, int C, std::uint64_t seed, long i, int r) {
  const double u = random::uniform(seed, std::uint64_t(i), std::uint64_t(r));
  double c = 0;
  for (int k = 0; k < C; ++k) {
    c += double(p(k));
    if (u < c) return k;
  }
  return C - 1;
}

inline std::string mib(double bytes) {
  char b[64];
  std::snprintf(b, sizeof b, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return b;
}

inline void check_budget(double need, std::size_t budget, const char* where, const std::string& what) {
  hfisher::detail::require(need <= double(budget), where, what, " needs about ", mib(need), ", over the memory budget of ",
                  mib(double(budget)), " (FisherOptions::memory_budget); use fewer examples, another structure or "
                  "a larger budget");
}

/// Runs the forward/backward passes over the first opts.examples examples
/// and returns the per-sample factors of the chosen layers. Under a
/// distributed communicator each rank runs the passes of its contiguous
/// share of the examples (same labels and scaling as one process: they
/// depend on the global example index) and the rows are gathered, so every
/// rank returns the full samples.
template <class Scalar, class ExecSpace>
FisherSamples<Scalar, ExecSpace> collect_samples(const nn::MLP<Scalar, ExecSpace>& model,
                                                 const nn::DeviceData<Scalar, ExecSpace>& data, FisherKind kind,
                                                 const FisherOptions& opts, const dist::Communicator& comm = {}) {
  constexpr const char* where = "hfisher::estimate_fisher";
  using Matrix = typename nn::MLP<Scalar, ExecSpace>::Matrix;
  opts.validate(where);
  hfisher::detail::require(model.num_layers() > 0, where, "the model has no layers");
  hfisher::detail::require(data.features() == model.inputs(), where, "data of the wrong width: ", data.features(),
                  " features, the model takes ", model.inputs(), " inputs");
  hfisher::detail::require(data.classes == model.outputs(), where, "the data has ", data.classes, " classes, the model ",
                  model.outputs(), " outputs");
  const int N = opts.examples == 0 ? data.size() : std::min(opts.examples, data.size());
  hfisher::detail::require(N >= 1, where, "no examples");
  hfisher::detail::Region region("hfisher::collect_samples");
  const int C = model.outputs();
  const int R = kind == FisherKind::Empirical ? 1 : kind == FisherKind::MonteCarlo ? opts.mc_samples : C;
  FisherSamples<Scalar, ExecSpace> s;
  s.kind = kind;
  s.examples = N;
  s.per_example = R;
  s.layers = opts.layers;
  if (s.layers.empty())
    for (int l = 0; l < model.num_layers(); ++l) s.layers.push_back(l);
  long off = 0;
  double need = 0;
  for (std::size_t k = 0; k < s.layers.size(); ++k) {
    const int l = s.layers[k];
    hfisher::detail::require(l >= 0 && l < model.num_layers() && (k == 0 || l > s.layers[k - 1]), where, "layer index ", l,
                    " is not a layer of the model (0..", model.num_layers() - 1, ") in increasing order");
    auto sh = model.layers()[l];
    sh.offset = off;
    off += sh.size();
    s.shapes.push_back(sh);
    need += (double(N) * sh.cols() + double(N) * R * sh.out) * sizeof(Scalar);
  }
  check_budget(need, opts.memory_budget, where, "keeping the per-sample factors");
  for (const auto& sh : s.shapes) {
    s.a.push_back(Matrix("hfisher::fisher::a", N, sh.cols()));
    s.g.push_back(Matrix("hfisher::fisher::g", long(N) * R, sh.out));
  }
  ExecSpace space;
  typename nn::MLP<Scalar, ExecSpace>::Cache cache;
  typename nn::MLP<Scalar, ExecSpace>::Vector nograd;
  const Scalar wscale = Scalar(1.0 / std::sqrt(double(N) * (kind == FisherKind::MonteCarlo ? R : 1)));
  const std::uint64_t seed = opts.seed;
  const auto mine = dist::shard(N, comm.rank(), comm.size());
  const int hi = int(mine.second);
  for (int first = int(mine.first); first < hi; first += opts.batch) {
    const int B = std::min(opts.batch, hi - first);
    const Matrix X = Kokkos::subview(data.x, Kokkos::make_pair(first, first + B), Kokkos::ALL());  // a view, no copy
    auto logits = model.forward(X, cache);
    Matrix P("hfisher::fisher::P", B, C), E("hfisher::fisher::E", B, C);
    auto y = Kokkos::subview(data.y, Kokkos::make_pair(first, first + B));
    nn::softmax_xent(space, logits, y, P, E, Scalar(1));
    for (std::size_t k = 0; k < s.layers.size(); ++k)
      Kokkos::deep_copy(Kokkos::subview(s.a[k], Kokkos::make_pair(first, first + B), Kokkos::ALL()),
                        cache.a[s.layers[k]]);
    for (int r = 0; r < R; ++r) {
      Matrix Er("hfisher::fisher::Er", B, C);
      Kokkos::parallel_for(
          "hfisher::fisher::backward_vector", Kokkos::RangePolicy<ExecSpace>(space, 0, B), KOKKOS_LAMBDA(const int b) {
            auto p = Kokkos::subview(P, b, Kokkos::ALL());
            if (kind == FisherKind::GGN) {
              const Scalar sq = math::sqrt(P(b, r));
              for (int c = 0; c < C; ++c) Er(b, c) = wscale * sq * ((c == r ? Scalar(1) : Scalar(0)) - P(b, c));
            } else {
              const int t = kind == FisherKind::Empirical ? y(b) : sample_label(p, C, seed, long(first) + b, r);
              for (int c = 0; c < C; ++c) Er(b, c) = wscale * (P(b, c) - (c == t ? Scalar(1) : Scalar(0)));
            }
          });
      model.backward(cache, Er, nograd, Scalar(0));
      for (std::size_t k = 0; k < s.layers.size(); ++k) {
        auto gs = s.g[k];
        auto gl = cache.g[s.layers[k]];
        const int o = gl.extent(1);
        Kokkos::parallel_for(
            "hfisher::fisher::keep_g", Kokkos::RangePolicy<ExecSpace>(space, 0, B), KOKKOS_LAMBDA(const int b) {
              for (int i = 0; i < o; ++i) gs((long(first) + b) * R + r, i) = gl(b, i);
            });
      }
    }
  }
  for (std::size_t k = 0; k < s.layers.size(); ++k) {
    comm.allgather_rows(s.a[k], N, long(s.a[k].extent(1)));
    comm.allgather_rows(s.g[k], N, long(R) * long(s.g[k].extent(1)));
  }
  for (std::size_t k = 0; k < s.layers.size(); ++k) {
    const std::string what = "the output gradients of layer " + std::to_string(s.layers[k]) + " (NaN gradients)";
    hfisher::detail::check_finite_matrix(space, s.g[k], where, what.c_str());
  }
  return s;
}

namespace build_detail {

template <class Scalar, class ExecSpace>
using Mat = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space>;
template <class Scalar, class ExecSpace>
using Vec = Kokkos::View<Scalar*, typename ExecSpace::memory_space>;

/// diag(F) of layer k into d (rows x cols, row-major)
template <class Scalar, class ExecSpace>
void layer_diag(const FisherSamples<Scalar, ExecSpace>& s, int k, const Mat<Scalar, ExecSpace>& d) {
  const int N = s.examples, R = s.per_example, o = s.shapes[k].out, c = s.shapes[k].cols();
  Mat<Scalar, ExecSpace> gsq("hfisher::fisher::gsq", N, o), asq("hfisher::fisher::asq", N, c);
  auto g = s.g[k];
  auto a = s.a[k];
  Kokkos::parallel_for(
      "hfisher::fisher::squares", Kokkos::RangePolicy<ExecSpace>(0, N), KOKKOS_LAMBDA(const int n) {
        for (int i = 0; i < o; ++i) {
          Scalar t = 0;
          for (int r = 0; r < R; ++r) t += g(long(n) * R + r, i) * g(long(n) * R + r, i);
          gsq(n, i) = t;
        }
        for (int j = 0; j < c; ++j) asq(n, j) = a(n, j) * a(n, j);
      });
  kernels::detail::matmul_nocheck(ExecSpace(), Op::Trans, Op::NoTrans, Scalar(1), gsq, asq, Scalar(0), d);
}

template <class Scalar, class ExecSpace>
Vec<Scalar, ExecSpace> diagonal_of(const FisherSamples<Scalar, ExecSpace>& s, const std::vector<int>& ks, long n) {
  Vec<Scalar, ExecSpace> d("hfisher::fisher::d", n);
  long off = 0;
  for (int k : ks) {
    layer_diag(s, k, Mat<Scalar, ExecSpace>(d.data() + off, s.shapes[k].out, s.shapes[k].cols()));
    off += s.shapes[k].size();
  }
  return d;
}

/// Psi of layer k for samples [s0, s1): (P_l, s1 - s0), column s = vec(g_s a~_n^T)
template <class Scalar, class ExecSpace>
void layer_psi(const FisherSamples<Scalar, ExecSpace>& s, int k, int s0, int s1, const Mat<Scalar, ExecSpace>& Psi) {
  const int R = s.per_example, c = s.shapes[k].cols(), ns = s1 - s0;
  auto g = s.g[k];
  auto a = s.a[k];
  Kokkos::parallel_for(
      "hfisher::fisher::psi", Kokkos::RangePolicy<ExecSpace>(0, long(Psi.extent(0))), KOKKOS_LAMBDA(const long p) {
        const int i = int(p / c), j = int(p % c);
        for (int t = 0; t < ns; ++t) Psi(p, t) = g(s0 + t, i) * a((s0 + t) / R, j);
      });
}

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> dense_layer(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                  const FisherOptions& o, const char* where) {
  const long P = s.shapes[k].size();
  const int S = s.samples(), chunk = int(std::max<long>(1, std::min<long>(S, (1L << 24) / std::max(1L, P))));
  check_budget(double(P) * P * sizeof(Scalar) + double(P) * chunk * sizeof(Scalar), o.memory_budget, where,
               "a dense Fisher block of " + std::to_string(P) + " parameters");
  Mat<Scalar, ExecSpace> F("hfisher::fisher::dense", P, P), Psi("hfisher::fisher::psi", P, chunk);
  for (int s0 = 0; s0 < S; s0 += chunk) {
    const int s1 = std::min(S, s0 + chunk);
    auto Pc = Kokkos::subview(Psi, Kokkos::ALL(), Kokkos::make_pair(0, s1 - s0));
    layer_psi(s, k, s0, s1, Psi);
    kernels::detail::matmul_nocheck(ExecSpace(), Op::NoTrans, Op::Trans, Scalar(1), Pc, Pc, Scalar(1), F);
  }
  return std::make_unique<DenseOperator<Scalar, ExecSpace>>(F);
}

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> kfac_layer(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                 const FisherOptions& o) {
  const int N = s.examples, o_ = s.shapes[k].out, c = s.shapes[k].cols();
  Mat<Scalar, ExecSpace> A("hfisher::kfac::A", c, c), G("hfisher::kfac::G", o_, o_);
  kernels::detail::matmul_nocheck(ExecSpace(), Op::Trans, Op::NoTrans, Scalar(1.0 / N), s.a[k], s.a[k], Scalar(0), A);
  kernels::detail::matmul_nocheck(ExecSpace(), Op::Trans, Op::NoTrans, Scalar(1), s.g[k], s.g[k], Scalar(0), G);
  return std::make_unique<KFACOperator<Scalar, ExecSpace>>(A, G, o.kfac_damping);
}

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> hodlr_layer(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                  const FisherOptions& o, const char* where) {
  const long P = s.shapes[k].size();
  const int S = s.samples();
  hfisher::detail::require(P >= 2, where, "layer ", s.layers[k], " has ", P, " parameter(s): too small for a hierarchical block");
  const int leaf = int(std::min<long>(o.leaf, std::max<long>(1, P / 2)));
  const int kcap = o.hodlr_max_rank > 0 ? std::min(o.hodlr_max_rank, S) : S;  // 0: no cap, the samples bound it
  check_budget(double(P) * S * sizeof(Scalar) * 2.0 + double(P) * (leaf + 2.0 * kcap * 16) *
                                                          sizeof(Scalar),
               o.memory_budget, where,
               "a hierarchical Fisher of layer " + std::to_string(s.layers[k]) + " from its " + std::to_string(S) +
                   " per-sample gradients");
  Mat<Scalar, ExecSpace> Psi("hfisher::fisher::psi", P, S);
  layer_psi(s, k, 0, S, Psi);
  Vec<Scalar, ExecSpace> zero("hfisher::fisher::zero", P);
  CompressionOptions co;
  co.tol = o.tol;
  co.max_rank = o.hodlr_max_rank;
  co.allow_capped = true;  // the cap is the Fisher's memory budget: capped blocks are reported by ranks()
  co.spd_compensation = o.spd_compensation;
  auto tree = ClusterTree::balanced(int(P), leaf);
  return std::make_unique<HODLROperator<Scalar, ExecSpace>>(
      HODLR<Scalar, ExecSpace>::from_factors(zero, Psi, tree, co));
}

/// diag + W W^T over layers ks: W = Psi Z from the top eigenvectors Z of the
/// sample Gram matrix K = Psi^T Psi = sum_l (g g^T) o (a a^T)[n(s), n(t)].
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> lowrank_of(const FisherSamples<Scalar, ExecSpace>& s,
                                                                 const std::vector<int>& ks, const FisherOptions& o,
                                                                 const char* where) {
  const int N = s.examples, R = s.per_example, S = s.samples();
  long n = 0;
  for (int k : ks) n += s.shapes[k].size();
  const int kmax = std::min<long>({long(o.rank), long(S), n});
  check_budget((double(S) * S * 2 + double(N) * N + double(S) * kmax * 3 + double(n) * (kmax + 2)) * sizeof(Scalar),
               o.memory_budget, where, "a rank-" + std::to_string(kmax) + " Fisher from " + std::to_string(S) + " samples");
  ExecSpace space;
  BatchMatrix<Scalar, ExecSpace> K("hfisher::lowrank::K", 1, S, S);
  Mat<Scalar, ExecSpace> K2(K.data(), S, S), KG("hfisher::lowrank::KG", S, S), KA("hfisher::lowrank::KA", N, N);
  for (int k : ks) {
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), s.g[k], s.g[k], Scalar(0), KG);
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), s.a[k], s.a[k], Scalar(0), KA);
    Kokkos::parallel_for(
        "hfisher::lowrank::gram", Kokkos::RangePolicy<ExecSpace>(space, 0, S), KOKKOS_LAMBDA(const int i) {
          for (int j = 0; j < S; ++j) K2(i, j) += KG(i, j) * KA(i / R, j / R);
        });
  }
  BatchMatrix<Scalar, ExecSpace> U("hfisher::lowrank::U", 1, S, kmax), V("hfisher::lowrank::V", 1, S, kmax);
  BatchVector<Scalar, ExecSpace> sv("hfisher::lowrank::s", 1, kmax);
  Kokkos::View<int*, typename ExecSpace::memory_space> rk("hfisher::lowrank::rank", 1);
  kernels::RangeFinderOptions ro;
  ro.seed = o.seed;
  kernels::rsvd(space, K, o.tol, U, sv, V, rk, ro);  // the tolerance asked for (no floor); at most kmax kept
  const int r = std::max(1, int(hfisher::detail::read_entry(rk, 0)));
  Mat<Scalar, ExecSpace> W("hfisher::lowrank::W", n, r);
  long off = 0;
  for (int k : ks) {
    const int rows = s.shapes[k].out, c = s.shapes[k].cols();
    Mat<Scalar, ExecSpace> Gz("hfisher::lowrank::Gz", N, rows), Wj("hfisher::lowrank::Wj", rows, c);
    auto g = s.g[k];
    for (int j = 0; j < r; ++j) {
      Kokkos::parallel_for(
          "hfisher::lowrank::Gz", Kokkos::RangePolicy<ExecSpace>(space, 0, N), KOKKOS_LAMBDA(const int e) {
            for (int i = 0; i < rows; ++i) {
              Scalar t = 0;
              for (int q = 0; q < R; ++q) t += V(0, long(e) * R + q, j) * g(long(e) * R + q, i);
              Gz(e, i) = t;
            }
          });
      kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), Gz, s.a[k], Scalar(0), Wj);
      const long base = off;
      Kokkos::parallel_for(
          "hfisher::lowrank::Wcol", Kokkos::RangePolicy<ExecSpace>(space, 0, long(rows) * c),
          KOKKOS_LAMBDA(const long p) { W(base + p, j) = Wj(p / c, p % c); });
    }
    off += s.shapes[k].size();
  }
  // the diagonal part keeps diag(F) exact: d = diag(F) - rowsum(W^2), clamped at 0
  auto d = diagonal_of(s, ks, n);
  detail::subtract_squares_clamped<ExecSpace>(d, W);
  return std::make_unique<LowRankOperator<Scalar, ExecSpace>>(d, W, o.rank, o.tol);
}

/// B_b = (B_b + B_b^T) / 2 (rounding, before an eigensolver's symmetry check).
template <class Exec, class Batch>
void multilevel_symmetrize(const Exec& space, const Batch& B) {
  using Scalar = typename Batch::non_const_value_type;
  const long M = long(B.extent(0));
  const int n = int(B.extent(1));
  Kokkos::parallel_for(
      "hfisher::multilevel::sym", Kokkos::RangePolicy<Exec>(space, 0, M * n * n), KOKKOS_LAMBDA(const long e) {
        const long i = e / (long(n) * n);
        const int a = int(e / n % n), b = int(e % n);
        if (b <= a) return;
        const Scalar m = Scalar(0.5) * (B(i, a, b) + B(i, b, a));
        B(i, a, b) = m;
        B(i, b, a) = m;
      });
}

/// Vt_b = Q_b U_b(:, the r last columns, last first), wt_b = w_b(the r last
/// entries, last first): the leading Ritz pairs of an ascending eigensolve.
/// An empty Q stands for the identity (U's own columns).
template <class Exec, class Batch, class Vec2>
void multilevel_top(const Exec& space, const Batch& Q, const Batch& U, const Vec2& w, int r, const Batch& Vt,
                    const Vec2& wt) {
  using Scalar = typename Batch::non_const_value_type;
  const long M = long(Vt.extent(0));
  const int S = int(Vt.extent(1)), n = int(U.extent(1));
  const bool identity = Q.extent(0) == 0;
  // Ur_b = U_b's r last columns, last first; then Vt = Q Ur (one batched GEMM)
  Batch Ur(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::multilevel::Ur"), M, n, r);
  Kokkos::parallel_for(
      "hfisher::multilevel::top", Kokkos::RangePolicy<Exec>(space, 0, M * n), KOKKOS_LAMBDA(const long e) {
        const long i = e / n;
        const int c = int(e % n);
        for (int q = 0; q < r; ++q) Ur(i, c, q) = U(i, c, n - 1 - q);
        if (c == 0)
          for (int q = 0; q < r; ++q) wt(i, q) = w(i, n - 1 - q);
      });
  // Vt may have more columns than r (directions beyond the samples stay 0)
  const auto Vr = Kokkos::subview(Vt, Kokkos::ALL, Kokkos::ALL, Kokkos::make_pair(0, r));
  if (identity) Kokkos::deep_copy(space, Vr, Ur);
  else kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), Q, Ur, Scalar(0), Vr);
}

/// out_b = in_b - P_b (Q_b^T in_b): the projector T_b = I - P_b Q_b^T (or
/// T_b^T, with P and Q swapped) of a node, in product form: O(S rho k) per
/// node instead of O(S^2 k). tmp is (batch, rho, k); rho = 0 copies.
template <class Exec, class Batch>
void multilevel_project(const Exec& space, const Batch& P, const Batch& Q, const Batch& in, const Batch& tmp,
                        const Batch& out) {
  using Scalar = typename Batch::non_const_value_type;
  Kokkos::deep_copy(space, out, in);
  if (P.extent(2) == 0) return;
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), Q, in, Scalar(0), tmp);
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(-1), P, tmp, Scalar(1), out);
}

/// The Gram matrices K_i = sum over node i's units u of D_u KAx D_u of one
/// level (D_u = diag of unit u's output gradients g(:, u) over the S = N R
/// samples; KAx(s, t) = KA(s / R, t / R), KA = A A^T the N x N input Gram
/// matrix), applied to a block of k columns per node. Two forms, the same
/// product: explicit S x S matrices per node (batched GEMM; cheap when a
/// level has few nodes), or factored, every unit's columns through one
/// N x N by N x (units k) GEMM with KA, which never stores an S x S matrix
/// per node (O(N^2 units k) instead of O(M S^2 k); the only form that fits
/// when R > 1 makes S large).
template <class Scalar, class ExecSpace>
struct MultilevelGram {
  using Batch = BatchMatrix<Scalar, ExecSpace>;
  using IView = Kokkos::View<int*, typename ExecSpace::memory_space>;
  Mat<Scalar, ExecSpace> g, KA;
  IView units, unode;  // node bounds in units (M + 1), node of each unit
  int M = 0, S = 0, N = 0, R = 1, out = 0;
  bool factored = false;
  Batch K;                           // explicit: (M, S, S)
  Mat<Scalar, ExecSpace> Yb, Zb;     // factored: (N, out k)

  /// Whether the factored form is the cheaper one for M nodes (its GEMM
  /// runs at several times the batched GEMM's rate on small matrices).
  static bool prefer_factored(long M, long S, long N, long out) { return 4.0 * M * S * S >= double(out) * N * N; }

  /// The Gram matrices of the nodes with unit bounds ub (ub[0] = 0 <
  /// ... < ub[M] = units) from output gradients g (N R x units, R samples
  /// per example) and KA (N x N); factored as prefer_factored says unless
  /// `form` forces one (0: explicit, 1: factored).
  static MultilevelGram make(const Mat<Scalar, ExecSpace>& g, const Mat<Scalar, ExecSpace>& KA,
                             const std::vector<int>& ub, int form = -1) {
    MultilevelGram gr;
    gr.g = g;
    gr.KA = KA;
    gr.M = int(ub.size()) - 1;
    gr.N = int(KA.extent(0));
    gr.S = int(g.extent(0));
    gr.R = gr.S / gr.N;
    gr.out = int(g.extent(1));
    std::vector<int> node(gr.out);
    for (int i = 0; i < gr.M; ++i)
      for (int u = ub[i]; u < ub[i + 1]; ++u) node[u] = i;
    gr.units = IView("hfisher::multilevel::units", gr.M + 1);
    gr.unode = IView("hfisher::multilevel::unode", gr.out);
    multilevel_detail::copy_to(ub, gr.units);
    multilevel_detail::copy_to(node, gr.unode);
    gr.factored = form < 0 ? prefer_factored(gr.M, gr.S, gr.N, gr.out) : form == 1;
    return gr;
  }

  /// Explicit Gram matrices (for the full eigensolve path or the explicit form).
  Batch form() const {
    Batch Kx("hfisher::multilevel::K", M, S, S);
    auto gg = g;
    auto ka = KA;
    auto ub = units;
    const int SS = S, RR = R;
    if (M == 1) {  // one node (a layer's top level): g g^T through the GEMM, then times KAx entry by entry
      ExecSpace space;
      auto K0 = Kokkos::subview(Kx, 0, Kokkos::ALL, Kokkos::ALL);
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), g, g, Scalar(0), K0);
      Kokkos::parallel_for(
          "hfisher::multilevel::gram_ka", Kokkos::RangePolicy<ExecSpace>(space, 0, S), KOKKOS_LAMBDA(const int a) {
            for (int b = 0; b < SS; ++b) K0(a, b) *= ka(a / RR, b / RR);
          });
      return Kx;
    }
    Kokkos::parallel_for(
        "hfisher::multilevel::gram", Kokkos::RangePolicy<ExecSpace>(0, long(M) * S * S), KOKKOS_LAMBDA(const long e) {
          const int i = int(e / (long(SS) * SS)), a = int(e / SS % SS), b = int(e % SS);
          if (b < a) return;
          Scalar t = 0;
          for (int u = ub(i); u < ub(i + 1); ++u) t += gg(a, u) * gg(b, u);
          t *= ka(a / RR, b / RR);
          Kx(i, a, b) = t;
          Kx(i, b, a) = t;
        });
    return Kx;
  }

  void prepare(int k) {
    if (!factored) {
      K = form();
      return;
    }
    Yb = Mat<Scalar, ExecSpace>("hfisher::multilevel::Yb", N, long(out) * k);
    Zb = Mat<Scalar, ExecSpace>("hfisher::multilevel::Zb", N, long(out) * k);
  }

  /// out_i = K_i in_i for in, out of shape (M, S, k).
  void apply(const ExecSpace& space, const Batch& in, const Batch& res) const {
    if (!factored) {
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), K, in, Scalar(0), res);
      return;
    }
    const int k = int(in.extent(2)), RR = R, SS = S, O = out;
    auto gg = g;
    auto un = unode;
    auto ub = units;
    auto Y = Yb;
    auto Z = Zb;
    // one (example, unit) pair per iteration, its k contiguous columns inside
    Kokkos::parallel_for(
        "hfisher::multilevel::gram_in", Kokkos::RangePolicy<ExecSpace>(space, 0, long(N) * O), KOKKOS_LAMBDA(const long e) {
          const int n = int(e / O), u = int(e % O), i = un(u);
          Scalar* y = &Y(n, long(u) * k);
          for (int j = 0; j < k; ++j) y[j] = Scalar(0);
          for (int r = 0; r < RR; ++r) {
            const Scalar gv = gg(n * RR + r, u);
            for (int j = 0; j < k; ++j) y[j] += gv * in(i, n * RR + r, j);
          }
        });
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), KA, Y, Scalar(0), Z);
    Kokkos::parallel_for(
        "hfisher::multilevel::gram_out", Kokkos::RangePolicy<ExecSpace>(space, 0, long(M) * SS), KOKKOS_LAMBDA(const long e) {
          const int i = int(e / SS), s = int(e % SS);
          for (int j = 0; j < k; ++j) res(i, s, j) = Scalar(0);
          for (int u = ub(i); u < ub(i + 1); ++u) {
            const Scalar gv = gg(s, u);
            const Scalar* z = &Z(s / RR, long(u) * k);
            for (int j = 0; j < k; ++j) res(i, s, j) += gv * z[j];
          }
        });
  }
};

/// Columns of the randomized eigensolver's block for rank r, S samples and
/// oversampling `over` (-1: r + 8): min(S, min(r, S) + over).
inline int multilevel_block_width(int r, int S, int over) {
  const int re = std::min(r, S);
  return std::min(S, re + (over < 0 ? re + 8 : over));
}

/// The r leading eigenpairs (largest first) of K'_b = T_b^T K_b T_b, T_b =
/// I - Zs_b Vs_b^T, for a level's nodes, K' never formed when S is large:
/// randomized subspace iteration with `power` power steps and Rayleigh-Ritz
/// (Halko, Martinsson & Tropp 2011, Alg. 4.4/5.1) on a block of
/// min(S, r + over) columns; below twice that width, the full
/// eigendecomposition of K'. Gaussian starts are counter-based (seed,
/// entry): the same on every backend.
template <class Scalar, class ExecSpace, class Batch, class Vec2>
void multilevel_top_eigen(const ExecSpace& space, MultilevelGram<Scalar, ExecSpace>& gram, const Batch& Zs,
                          const Batch& Vs, int r, std::uint64_t seed, const Batch& Vt, const Vec2& wt, int power = 1,
                          int over = 8) {
  // directions beyond the S samples do not exist: columns re.. of Vt and wt stay 0
  const int M = gram.M, S = gram.S, rho = int(Zs.extent(2)), re = std::min(r, S),
            kk = multilevel_block_width(r, S, over);
  if (2 * kk >= S) {
    const auto K = gram.form();
    Batch T("hfisher::multilevel::T", M, S, S), KT("hfisher::multilevel::KT", M, S, S),
        Kp("hfisher::multilevel::Kp", M, S, S), U("hfisher::multilevel::U", M, S, S);
    Vec2 w("hfisher::multilevel::w", M, S);
    Kokkos::parallel_for(
        "hfisher::multilevel::eye", Kokkos::RangePolicy<ExecSpace>(space, 0, long(M) * S),
        KOKKOS_LAMBDA(const long e) { T(e / S, e % S, e % S) = Scalar(1); });
    if (rho > 0) kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(-1), Zs, Vs, Scalar(1), T);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), K, T, Scalar(0), KT);
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), T, KT, Scalar(0), Kp);
    multilevel_symmetrize(space, Kp);
    kernels::syev(space, Kp, w, U);
    multilevel_top(space, Batch(), U, w, re, Vt, wt);
    return;
  }
  gram.prepare(kk);
  Batch X("hfisher::multilevel::X", M, S, kk), Y("hfisher::multilevel::Y", M, S, kk), t1("hfisher::multilevel::t1", M, S, kk),
      t2("hfisher::multilevel::t2", M, S, kk), tmp("hfisher::multilevel::tmp", M, rho, kk),
      Rr("hfisher::multilevel::R", M, kk, kk), B("hfisher::multilevel::B", M, kk, kk), U("hfisher::multilevel::U", M, kk, kk);
  Vec2 w("hfisher::multilevel::w", M, kk);
  {  // one Gaussian start for every node of the level
    Mat<Scalar, ExecSpace> Om("hfisher::multilevel::omega", S, kk);
    Kokkos::parallel_for(
        "hfisher::multilevel::omega", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>>(space, {0, 0}, {S, kk}),
        KOKKOS_LAMBDA(const int a, const int q) {
          Om(a, q) = Scalar(random::normal(seed, 0, std::uint64_t(a) * std::uint64_t(kk) + std::uint64_t(q)));
        });
    Kokkos::parallel_for(
        "hfisher::multilevel::start", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {M, S, kk}),
        KOKKOS_LAMBDA(const int i, const int a, const int q) { X(i, a, q) = Om(a, q); });
  }
  auto applyKp = [&](const Batch& in, const Batch& res) {  // res = T^T K T in
    multilevel_project(space, Zs, Vs, in, tmp, t1);
    gram.apply(space, t1, t2);
    multilevel_project(space, Vs, Zs, t2, tmp, res);
  };
  applyKp(X, Y);
  for (int it = 0; it <= power; ++it) {  // the power steps, then the basis of the Rayleigh-Ritz step
    kernels::qr_thin(space, Y, X, Rr);
    applyKp(X, Y);
  }
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), X, Y, Scalar(0), B);
  multilevel_symmetrize(space, B);
  kernels::syev(space, B, w, U, kernels::SyevMethod::Tridiagonal);
  multilevel_top(space, X, U, w, re, Vt, wt);
}

/// One level's kept directions: Z_i = T_i V_i (columns whose eigenvalue is
/// not above tol * the node's largest are 0), then the children's projector
/// factors [Zs_parent, Z_parent], [Vs_parent, V_parent] (T_child = T_parent
/// (I - V V^T) = T_parent - Z V^T), and the level's columns of W:
/// W(u c + j, col0 + q) = sum_s Z_i(s, q) g_s(u) a_n(s)(j), all r columns
/// through one (r out) x N x c GEMM.
template <class Scalar, class ExecSpace>
struct MultilevelLevel {
  using Batch = BatchMatrix<Scalar, ExecSpace>;
  using IView = Kokkos::View<int*, typename ExecSpace::memory_space>;

  static Batch kept(const ExecSpace& space, const Batch& Zs, const Batch& Vs, const Batch& Vt,
                    const BatchVector<Scalar, ExecSpace>& wt, Scalar tol) {
    const int M = int(Vt.extent(0)), S = int(Vt.extent(1)), r = int(Vt.extent(2)), rho = int(Zs.extent(2));
    Batch Vm("hfisher::multilevel::Vm", M, S, r), Z("hfisher::multilevel::Z", M, S, r),
        tmp("hfisher::multilevel::tmp", M, rho, r);
    Kokkos::parallel_for(
        "hfisher::multilevel::mask", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {M, S, r}),
        KOKKOS_LAMBDA(const int i, const int a, const int q) {
          Vm(i, a, q) = wt(i, q) > tol * wt(i, 0) && wt(i, q) > Scalar(0) ? Vt(i, a, q) : Scalar(0);
        });
    multilevel_project(space, Zs, Vs, Vm, tmp, Z);
    return Z;
  }

  /// children's [Zs, Z] and [Vs, V] (parent of child j: pd(j))
  static void children(const ExecSpace& space, const IView& pd, const Batch& Zs, const Batch& Vs, const Batch& Z,
                       const Batch& V, const Batch& Zc, const Batch& Vc) {
    const int Mc = int(Zc.extent(0)), S = int(Zc.extent(1)), rho = int(Zs.extent(2)), w = int(Zc.extent(2));
    Kokkos::parallel_for(
        "hfisher::multilevel::child_T", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {Mc, S, w}),
        KOKKOS_LAMBDA(const int j, const int a, const int q) {
          const int i = pd(j);
          Zc(j, a, q) = q < rho ? Zs(i, a, q) : Z(i, a, q - rho);
          Vc(j, a, q) = q < rho ? Vs(i, a, q) : V(i, a, q - rho);
        });
  }

  static void columns(const ExecSpace& space, const Batch& Z, const Mat<Scalar, ExecSpace>& g,
                      const Mat<Scalar, ExecSpace>& A, const IView& unode, int R, int col0,
                      const Mat<Scalar, ExecSpace>& W) {
    const int N = int(A.extent(0)), c = int(A.extent(1)), out = int(g.extent(1)), r = int(Z.extent(2));
    Mat<Scalar, ExecSpace> GZ("hfisher::multilevel::GZ", N, long(r) * out), Wr("hfisher::multilevel::Wr", long(r) * out, c);
    Kokkos::parallel_for(
        "hfisher::multilevel::GZ", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {N, r, out}),
        KOKKOS_LAMBDA(const int n, const int q, const int u) {
          const int i = unode(u);
          Scalar t = 0;
          for (int rr = 0; rr < R; ++rr) t += Z(i, n * R + rr, q) * g(n * R + rr, u);
          GZ(n, long(q) * out + u) = t;
        });
    kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), GZ, A, Scalar(0), Wr);
    Kokkos::parallel_for(
        "hfisher::multilevel::Wcol", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {out, c, r}),
        KOKKOS_LAMBDA(const int u, const int j, const int q) {
          W(long(u) * c + j, col0 + q) = Wr(long(q) * out + u, j);
        });
  }
};

/// Multilevel low-rank block of layer k (multilevel.hpp), computed in sample
/// space. Nodes split the layer's output units (level 0: all of them; each
/// node into multilevel_branching balanced children), so the Gram matrix of
/// node i's rows of Psi is K_i(s, t) = (g_s . g_t over i's units) (a_n(s) .
/// a_n(t)) (MultilevelGram: no P x S matrix). Top-down, each node keeps the
/// leading eigen-directions of what its ancestors left, Psi_i T_i with
/// T_i = prod (I - V V^T) over the ancestors' kept eigenvectors V, kept in
/// product form I - Zs Vs^T: K'_i = T_i^T K_i T_i = V diag(w) V^T,
/// W_i = Psi_i T_i V_top (eigenvalues > tol * the node's largest). Every term
/// is a Gram matrix of the data, so the result is PSD; d = diag(F) -
/// rowsum(W^2) >= 0 (clamped for rounding) keeps the diagonal exact. Cost
/// per level: O(min(M S^2, out N^2) r) for the eigen-directions (batched
/// GEMM, QR and small eigensolves; see multilevel_top_eigen) plus O(P N r)
/// to form W.
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> multilevel_layer(const FisherSamples<Scalar, ExecSpace>& s,
                                                                       int k, const FisherOptions& o,
                                                                       const char* where) {
  using Batch = BatchMatrix<Scalar, ExecSpace>;
  using IView = Kokkos::View<int*, typename ExecSpace::memory_space>;
  const int N = s.examples, R = s.per_example, S = s.samples(), out = s.shapes[k].out, c = s.shapes[k].cols();
  const long P = s.shapes[k].size();
  // layout: unit bounds per level
  MultilevelLayout lay;
  std::vector<std::vector<int>> ub{{0, out}}, parent{{0}};
  for (int l = 1; l < o.multilevel_levels; ++l) {
    std::vector<int> nb{0}, par;
    const auto& pb = ub.back();
    for (std::size_t i = 0; i + 1 < pb.size(); ++i) {
      const int u0 = pb[i], u1 = pb[i + 1], m = std::min(o.multilevel_branching, u1 - u0);
      for (int j = 1; j <= m; ++j) {
        nb.push_back(u0 + int(long(u1 - u0) * j / m));
        par.push_back(int(i));
      }
    }
    ub.push_back(nb);
    parent.push_back(par);
  }
  double need = 0;  // the largest level's working memory, in entries
  int rho = 0;
  for (std::size_t l = 0; l < ub.size(); ++l) {
    std::vector<long> rb;
    for (int u : ub[l]) rb.push_back(long(u) * c);
    lay.bounds.push_back(rb);
    // ranks above the samples leave room for sums (online consolidation); at most the layer's size
    const int r = int(std::min<long>(o.multilevel_ranks.empty() ? o.multilevel_rank : o.multilevel_ranks[l], P));
    lay.ranks.push_back(r);
    const double M = double(ub[l].size() - 1), kk = multilevel_block_width(r, S, o.multilevel_oversampling);
    double lvl = M * S * (2.0 * (rho + r) + 3.0 * r) + double(N) * r * out + double(P) * r;
    if (2 * kk >= S) lvl += M * S * S * 5;
    else if (MultilevelGram<Scalar, ExecSpace>::prefer_factored(long(M), S, N, out)) lvl += M * S * kk * 4 + 2.0 * N * out * kk;
    else lvl += M * S * kk * 4 + M * S * S;
    need = std::max(need, lvl);
    rho += r;
  }
  check_budget((need + double(N) * N + double(P) * (lay.columns() + 2)) * sizeof(Scalar), o.memory_budget, where,
               "a multilevel Fisher of layer " + std::to_string(s.layers[k]) + " from " + std::to_string(S) + " samples");
  ExecSpace space;
  Mat<Scalar, ExecSpace> KA("hfisher::multilevel::KA", N, N), W("hfisher::multilevel::W", P, lay.columns());
  kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), s.a[k], s.a[k], Scalar(0), KA);
  const Scalar tol = Scalar(o.tol);
  Batch Zs("hfisher::multilevel::Zs", 1, S, 0), Vs("hfisher::multilevel::Vs", 1, S, 0);  // level 0: T = I
  int col0 = 0;  // first W column of this level
  for (int l = 0; l < lay.levels(); ++l) {
    hfisher::detail::Region region("hfisher::multilevel_layer::level " + std::to_string(l));
    const int M = int(ub[l].size()) - 1, r = lay.ranks[l];
    auto gram = MultilevelGram<Scalar, ExecSpace>::make(s.g[k], KA, ub[l]);
    // the r leading eigenpairs of K'_i = T_i^T K_i T_i, largest first
    Batch Vt("hfisher::multilevel::Vtop", M, S, r);
    BatchVector<Scalar, ExecSpace> wt("hfisher::multilevel::wtop", M, r);
    multilevel_top_eigen(space, gram, Zs, Vs, r, o.seed + std::uint64_t(l) * 7919u, Vt, wt, o.multilevel_power_steps,
                         o.multilevel_oversampling);
    const Batch Z = MultilevelLevel<Scalar, ExecSpace>::kept(space, Zs, Vs, Vt, wt, tol);
    MultilevelLevel<Scalar, ExecSpace>::columns(space, Z, s.g[k], s.a[k], gram.unode, R, col0, W);
    col0 += r;
    if (l + 1 < lay.levels()) {  // the children's projectors
      const int Mc = int(ub[l + 1].size()) - 1, w = int(Zs.extent(2)) + r;
      IView pd("hfisher::multilevel::parent", Mc);
      multilevel_detail::copy_to(parent[l + 1], pd);
      Batch Zc("hfisher::multilevel::Zs", Mc, S, w), Vc("hfisher::multilevel::Vs", Mc, S, w);
      MultilevelLevel<Scalar, ExecSpace>::children(space, pd, Zs, Vs, Z, Vt, Zc, Vc);
      Zs = Zc;
      Vs = Vc;
    }
  }
  // d = diag(F) - rowsum(W^2) keeps diag(F) exact
  auto d = diagonal_of(s, std::vector<int>{k}, P);
  detail::subtract_squares_clamped<ExecSpace>(d, W);
  return std::make_unique<MultilevelOperator<Scalar, ExecSpace>>(d, W, lay, o.tol);
}

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> layer_block(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                  Structure st, const FisherOptions& o,
                                                                  const char* where) {
  switch (st) {
    case Structure::Dense: return dense_layer(s, k, o, where);
    case Structure::KFAC: return kfac_layer(s, k, o);
    case Structure::HODLR: return hodlr_layer(s, k, o, where);
    case Structure::Multilevel: return multilevel_layer(s, k, o, where);
    case Structure::LowRank: return lowrank_of(s, std::vector<int>{k}, o, where);
    case Structure::Diagonal:
      return std::make_unique<DiagonalOperator<Scalar, ExecSpace>>(diagonal_of(s, std::vector<int>{k}, s.shapes[k].size()));
    default: break;
  }
  throw Error(hfisher::detail::concat(where, ": structure ", to_string(st), " cannot be a layer block"));
}

}  // namespace build_detail

/// Builds the curvature operator of the given structure from collected
/// samples. Under a distributed communicator (every rank holding the same
/// samples) the per-layer blocks of KFAC, Dense, Hierarchical and
/// BlockDiagonal structures are sharded: layer k is built on rank k mod P
/// and broadcast (serialized), so every rank returns the same operator.
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> build_curvature(const FisherSamples<Scalar, ExecSpace>& s,
                                                                      Structure structure, const FisherOptions& opts,
                                                                      const dist::Communicator& comm = {}) {
  constexpr const char* where = "hfisher::estimate_fisher";
  opts.validate(where);
  hfisher::detail::require(!s.shapes.empty() && s.examples >= 1, where, "no samples (collect_samples first)");
  using COp = CurvatureOperator<Scalar, ExecSpace>;
  std::vector<int> all(s.shapes.size());
  for (std::size_t k = 0; k < all.size(); ++k) all[k] = int(k);
  if (structure == Structure::Diagonal) {
    check_budget(double(s.size()) * sizeof(Scalar) * 2, opts.memory_budget, where, "a diagonal Fisher");
    return std::make_unique<DiagonalOperator<Scalar, ExecSpace>>(build_detail::diagonal_of(s, all, s.size()));
  }
  if (structure == Structure::LowRank) return build_detail::lowrank_of(s, all, opts, where);
  const Structure inner = structure == Structure::BlockDiagonal ? opts.block : structure;
  if (structure == Structure::Dense) {
    double need = 0;
    for (const auto& sh : s.shapes) need += double(sh.size()) * sh.size() * sizeof(Scalar);
    check_budget(need, opts.memory_budget, where, "dense Fisher blocks of every layer");
  }
  std::vector<std::unique_ptr<COp>> blocks;
  for (int k : all) {
    hfisher::detail::Region region("hfisher::build_curvature::layer " + std::to_string(k));
    if (!comm.distributed()) {
      blocks.push_back(build_detail::layer_block(s, k, inner, opts, where));
      continue;
    }
    const int owner = k % comm.size();
    std::string bytes;
    if (comm.rank() == owner) {
      std::ostringstream os(std::ios::binary);
      build_detail::layer_block(s, k, inner, opts, where)->write_tagged(os);
      bytes = os.str();
    }
    comm.broadcast(bytes, owner);
    std::istringstream is(bytes, std::ios::binary);
    blocks.push_back(COp::read(is, "the layer block broadcast by rank " + std::to_string(owner)));
  }
  return std::make_unique<BlockDiagonalOperator<Scalar, ExecSpace>>(structure, std::move(blocks));
}

/// What prepare_sharded did on this rank.
struct PrepareReport {
  int blocks = 0;    ///< layer blocks of the operator (1 when it is not block-diagonal)
  int computed = 0;  ///< blocks whose factorization this rank computed
  int received = 0;  ///< blocks whose factorization arrived from their owner rank
};

/// Computes the factorizations solve() and logdet() use at `damping`, the
/// work sharded over the ranks as in distributed K-FAC (Osawa et al. 2019,
/// Pauloski et al. 2020): block k of a block-diagonal operator (K-FAC,
/// hierarchical, block-diagonal) is factored by rank k mod P and broadcast
/// (K-FAC: the eigendecompositions of both factors; dense blocks: the
/// Cholesky factor; HODLR blocks: their factorization W W^T), so each rank
/// does about 1/P of the work. Blocks whose structure does not ship its
/// factorization (low-rank, diagonal) and operators that are not
/// block-diagonal are prepared on every rank.
/// Every rank must hold the same operator (as estimate_fisher and
/// NaturalGradient guarantee); blocks already prepared are skipped.
/// Collective: call it on every rank.
template <class Scalar, class ExecSpace>
PrepareReport prepare_sharded(const CurvatureOperator<Scalar, ExecSpace>& op, double damping,
                              const dist::Communicator& comm = {}) {
  constexpr const char* where = "hfisher::prepare_sharded";
  detail::check_damping(damping, where);
  PrepareReport rep;
  const auto* bd = dynamic_cast<const BlockDiagonalOperator<Scalar, ExecSpace>*>(&op);
  if (!bd) {
    rep.blocks = 1;
    if (!op.prepared(damping)) {
      op.prepare(damping);
      rep.computed = 1;
    }
    return rep;
  }
  rep.blocks = bd->num_blocks();
  for (int k = 0; k < bd->num_blocks(); ++k) {
    const auto& b = bd->block(k);
    if (b.prepared(damping)) continue;  // the same on every rank: the operators are equal
    if (!comm.distributed()) {
      b.prepare(damping);
      ++rep.computed;
      continue;
    }
    const int owner = k % comm.size();
    // 'F' + factorization | 'L' (prepare locally: not shipped) | 'E' + error
    std::string bytes;
    if (comm.rank() == owner) {
      try {
        b.prepare(damping);
        std::ostringstream os(std::ios::binary);
        os.put('F');
        bytes = b.write_prepared(os, damping) ? os.str() : std::string("L");
      } catch (const std::exception& e) {
        bytes = std::string("E") + e.what();
      }
    }
    comm.broadcast(bytes, owner);
    hfisher::detail::require(!bytes.empty() && bytes[0] != 'E', where, "layer block ", k, " (rank ", owner,
                             "): ", bytes.empty() ? std::string("nothing received") : bytes.substr(1));
    if (comm.rank() == owner) {
      ++rep.computed;
    } else if (bytes[0] == 'L') {
      b.prepare(damping);
      ++rep.computed;
    } else {
      std::istringstream is(bytes.substr(1), std::ios::binary);
      b.read_prepared(is, damping, "the factorization of layer block " + std::to_string(k) + " broadcast by rank " +
                                       std::to_string(owner));
      ++rep.received;
    }
  }
  return rep;
}

/// Estimates the Fisher (kind) of `model` on the first opts.examples
/// examples of `data` and stores it in `structure`. The operator acts on the
/// flat vector of the chosen layers (opts.layers; all by default), each layer
/// block W~ = [W | b] row-major, in layer order.
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> estimate_fisher(const nn::MLP<Scalar, ExecSpace>& model,
                                                                      const nn::DeviceData<Scalar, ExecSpace>& data,
                                                                      FisherKind kind, Structure structure,
                                                                      const FisherOptions& opts = {},
                                                                      const dist::Communicator& comm = {}) {
  return build_curvature(collect_samples(model, data, kind, opts, comm), structure, opts, comm);
}

}  // namespace fisher

using fisher::build_curvature;
using fisher::prepare_sharded;
using fisher::PrepareReport;
using fisher::collect_samples;
using fisher::estimate_fisher;
using fisher::FisherSamples;

}  // namespace hfisher
