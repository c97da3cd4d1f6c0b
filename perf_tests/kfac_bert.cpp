#include "kfac_bert.hpp"
#include "studies.hpp"

#include <hfisher/hfisher.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "bench_common.hpp"
#include "memory_budget.hpp"

namespace hfisher_perf {
// a named namespace: CUDA extended lambdas need enclosing functions with external linkage
namespace {

using S = float;
using E = Kokkos::DefaultExecutionSpace;
using Batch = hfisher::BatchMatrix<S, E>;
using Mat = Kokkos::View<S**, Kokkos::LayoutRight, E::memory_space>;

/// Factors of one size, batched: `count` factors of dim x dim.
struct Group {
  std::string name;
  int dim = 0, count = 0;
  bool input = true;  ///< an input factor A (homogeneous: last activation column is 1) or an output factor G
  std::uint64_t stream = 0;
};

/// Activations of the group's layers for global tokens [t0, t0 + X.extent(1)):
/// an AR(1) process along the features (neighbouring features correlate with
/// rho), unit variance; input factors get the bias column of ones.
void fill_activations(const Batch& X, const Group& g, long t0, std::uint64_t seed, double rho) {
  const int nf = X.extent(0), nt = X.extent(1), d = X.extent(2);
  const bool bias = g.input;
  const std::uint64_t st = g.stream;
  const double c = std::sqrt(1 - rho * rho);
  Kokkos::parallel_for(
      "hfisher::bench::bert_activations", Kokkos::RangePolicy<E>(0, long(nf) * nt), KOKKOS_LAMBDA(const long p) {
        const int f = int(p / nt), t = int(p % nt);
        const std::uint64_t stream = st * 1000003ULL + std::uint64_t(f),
                            idx0 = std::uint64_t(t0 + t) * std::uint64_t(d);
        double x = hfisher::random::normal(seed, stream, idx0);
        const int last = bias ? d - 1 : d;
        for (int j = 0; j < last; ++j) {
          if (j > 0) x = rho * x + c * hfisher::random::normal(seed, stream, idx0 + std::uint64_t(j));
          X(f, t, j) = S(x);
        }
        if (bias) X(f, t, d - 1) = S(1);
      });
}

/// (F + eps I)^-1 for this rank's share of the batch F, gathered on every rank into Inv.
void invert_sharded(const Batch& F, const Batch& Inv, double eps, const hfisher::dist::Communicator& comm) {
  E space;
  const int nf = F.extent(0), d = F.extent(1);
  const auto sh = hfisher::dist::shard(nf, comm.rank(), comm.size());
  const int m = int(sh.second - sh.first);
  if (m > 0) {
    Batch W("hfisher::bench::bert_W", m, d, d);
    auto Fs = Kokkos::subview(F, Kokkos::make_pair(sh.first, sh.second), Kokkos::ALL(), Kokkos::ALL());
    Kokkos::deep_copy(W, Fs);
    auto X = Kokkos::subview(Inv, Kokkos::make_pair(sh.first, sh.second), Kokkos::ALL(), Kokkos::ALL());
    const S e = S(eps);
    Kokkos::parallel_for(
        "hfisher::bench::bert_damp", Kokkos::RangePolicy<E>(space, 0, long(m) * d), KOKKOS_LAMBDA(const long p) {
          const int b = int(p / d), i = int(p % d);
          W(b, i, i) += e;
          for (int j = 0; j < d; ++j) X(b, i, j) = i == j ? S(1) : S(0);
        });
    hfisher::kernels::potrf(space, W);
    hfisher::kernels::potrs(space, W, X);
  }
  space.fence();
  comm.allgather_rows(Inv, nf, long(d) * d);
}

struct Timing {
  double stats = 0, invert = 0;
};

/// One curvature refresh over `comm`: statistics of the rank's tokens
/// (batched GEMMs X^T X / T, then allreduce), then the sharded inversions.
Timing refresh(const std::vector<Group>& groups, const std::vector<Batch>& acts, std::vector<Batch>& F,
               std::vector<Batch>& Inv, long tokens, double damping, const hfisher::dist::Communicator& comm) {
  E space;
  Timing t;
  comm.barrier();
  double t0 = now();
  for (std::size_t k = 0; k < groups.size(); ++k) {
    hfisher::kernels::gemm(space, hfisher::Op::Trans, hfisher::Op::NoTrans, S(1.0 / tokens), acts[k], acts[k], S(0),
                           F[k]);
    space.fence();
    comm.allreduce_sum(F[k]);
  }
  t.stats = comm.max(now() - t0);
  comm.barrier();
  t0 = now();
  for (std::size_t k = 0; k < groups.size(); ++k) invert_sharded(F[k], Inv[k], std::sqrt(damping), comm);
  t.invert = comm.max(now() - t0);
  return t;
}

double max_rel_diff(const Batch& a, const Batch& b) {
  auto ah = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), a);
  auto bh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), b);
  double d = 0, m = 0;
  for (std::size_t i = 0; i < ah.span(); ++i) {
    d = std::max(d, std::abs(double(ah.data()[i]) - double(bh.data()[i])));
    m = std::max(m, std::abs(double(bh.data()[i])));
  }
  return d / std::max(m, 1e-300);
}

}  // namespace

int run_kfac_bert(const KfacBertOptions& o) {
  if (o.encoder) return run_kfac_bert_encoder(o);
  const auto comm = hfisher::dist::Communicator::world();
  const bool root = comm.root();
  // every rank checks (an exception on the root alone would leave the others in a collective)
  if (!o.output.empty()) hfisher::io::prepare_output_dir(o.output, "hfisher-bench kfac-bert");
  const int L = o.layers, H = std::max(2, o.hidden / o.scale), FF = std::max(2, o.ffn / o.scale);
  const int V = std::max(1, o.vocab / o.scale), P = std::max(1, o.positions / o.scale);
  // factor groups by size: encoder Q, K, V, O and the pooler are H -> H; FFN in H -> FF, out FF -> H;
  // the embeddings' input factors are diagonal (one-hot inputs), their output factors H x H
  const std::vector<Group> groups = {{"A (H+1)", H + 1, 5 * L + 1, true, 1},
                                     {"A (FF+1)", FF + 1, L, true, 2},
                                     {"G (H)", H, 5 * L + 4, false, 3},
                                     {"G (FF)", FF, L, false, 4}};
  const Machine mach = describe_machine();
  double dense_bytes = 0;
  for (const auto& g : groups) dense_bytes += double(g.count) * g.dim * g.dim * sizeof(S);
  if (root) {
    std::printf("hfisher-bench kfac-bert: %s, %s backend, %s host threads, %d rank(s), %s\n", mach.cpu.c_str(),
                mach.backend.c_str(), mach.host_threads.c_str(), comm.size(), mach.date.c_str());
    std::printf(
        "BERT-Large shapes / %d: %d encoder layers, hidden %d, FFN %d, embeddings %d + %d + 2 rows (their input "
        "factors are diagonal, O(rows), not timed); %d tokens per refresh; float\n",
        o.scale, L, H, FF, V, P, o.tokens);
    for (const auto& g : groups)
      std::printf("  %-9s %4d factors of %5d x %-5d\n", g.name.c_str(), g.count, g.dim, g.dim);
    std::printf("  Kronecker factors: %.1f MB (dense), the same again for their inverses\n\n", dense_bytes / 1e6);
  }
  {  // the memory budget, before anything is allocated: on the root the
     // activations of all tokens and of its share, and four sets of factors
     // (statistics and inverses, one-rank and sharded runs)
    double need = 0;
    for (const auto& g : groups) need += double(g.count) * (2.0 * o.tokens * g.dim + 4.0 * g.dim * g.dim) * sizeof(S);
    hfisher_cli::check_memory(need, hfisher_cli::memory_budget_bytes(o.memory_budget_gib), "hfisher-bench kfac-bert",
                              "the activations and Kronecker factors at scale 1/" + std::to_string(o.scale));
  }
  // activations: all tokens (for the one-rank run on rank 0) and this rank's share
  const auto mine = hfisher::dist::shard(o.tokens, comm.rank(), comm.size());
  std::vector<Batch> all, part, F1, I1, Fp, Ip;
  for (const auto& g : groups) {
    if (root) {
      all.emplace_back("acts_all", g.count, o.tokens, g.dim);
      fill_activations(all.back(), g, 0, o.seed, o.rho);
      F1.emplace_back("F1", g.count, g.dim, g.dim);
      I1.emplace_back("I1", g.count, g.dim, g.dim);
    }
    part.emplace_back("acts", g.count, int(mine.second - mine.first), g.dim);
    fill_activations(part.back(), g, mine.first, o.seed, o.rho);
    Fp.emplace_back("F", g.count, g.dim, g.dim);
    Ip.emplace_back("I", g.count, g.dim, g.dim);
  }
  const hfisher::dist::Communicator one;
  Timing best1{1e300, 1e300}, bestp{1e300, 1e300};
  for (int r = 0; r < o.reps; ++r) {
    comm.barrier();
    if (root) {
      const auto t = refresh(groups, all, F1, I1, o.tokens, o.damping, one);
      best1.stats = std::min(best1.stats, t.stats);
      best1.invert = std::min(best1.invert, t.invert);
    }
    comm.barrier();
    const auto t = refresh(groups, part, Fp, Ip, o.tokens, o.damping, comm);
    bestp.stats = std::min(bestp.stats, t.stats);
    bestp.invert = std::min(bestp.invert, t.invert);
  }
  double diff = 0;
  if (root)
    for (std::size_t k = 0; k < groups.size(); ++k) diff = std::max(diff, max_rel_diff(Ip[k], I1[k]));
  // hierarchical compression of the large factors (the FF-sized ones)
  double h_bytes = 0, d_bytes = 0, h_err = 0;
  if (root) {
    for (int k : {1, 3}) {
      const int d = groups[k].dim;
      Mat Fk = Kokkos::subview(Fp[k], 0, Kokkos::ALL(), Kokkos::ALL());
      Mat Fc("Fc", d, d);
      Kokkos::deep_copy(Fc, Fk);
      hfisher::CompressionOptions co;
      co.tol = o.tol;
      co.max_rank = std::max(8, d / 8);
      co.allow_capped = true;  // a memory budget: the study reports the error it costs
      auto h = hfisher::HODLR<S, E>::from_dense(Fc, hfisher::ClusterTree::balanced(d, 32), co);
      h_bytes += double(h.bytes()) * groups[k].count;
      d_bytes += double(d) * d * sizeof(S) * groups[k].count;
      Mat x("x", d, 1), y("y", d, 1), z("z", d, 1);
      auto xh = Kokkos::create_mirror_view(x);
      for (int i = 0; i < d; ++i) xh(i, 0) = S(std::sin(0.37 * i + 1.0));
      Kokkos::deep_copy(x, xh);
      h.apply(x, y);
      hfisher::kernels::matmul(E(), hfisher::Op::NoTrans, hfisher::Op::NoTrans, S(1), Fc, x, S(0), z);
      auto yh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), y);
      auto zh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), z);
      double num = 0, den = 0;
      for (int i = 0; i < d; ++i) {
        num += (double(yh(i, 0)) - zh(i, 0)) * (double(yh(i, 0)) - zh(i, 0));
        den += double(zh(i, 0)) * zh(i, 0);
      }
      h_err = std::max(h_err, std::sqrt(num / den));
    }
  }
  if (root) {
    const double t1 = best1.stats + best1.invert, tp = bestp.stats + bestp.invert;
    std::printf("%-28s %12s %12s %12s\n", "time per curvature refresh", "stats s", "invert s", "total s");
    std::printf("%-28s %12.4f %12.4f %12.4f\n", "1 rank", best1.stats, best1.invert, t1);
    std::printf("%-28s %12.4f %12.4f %12.4f\n", (std::to_string(comm.size()) + " rank(s), sharded").c_str(),
                bestp.stats, bestp.invert, tp);
    std::printf("speed-up %.2f (efficiency %.2f); inverses on %d rank(s) vs 1: max rel diff %.2e\n", t1 / tp,
                t1 / (tp * comm.size()), comm.size(), diff);
    std::printf(
        "HODLR compression of the FF-sized factors (tol %g, leaf 32): %.1f MB -> %.1f MB (%.1fx), rel apply "
        "error %.2e\n",
        o.tol, d_bytes / 1e6, h_bytes / 1e6, d_bytes / std::max(h_bytes, 1.0), h_err);
    if (!o.output.empty()) {
      std::ostringstream js;
      js << "{\n  \"machine\": \"" << mach.cpu << "\",\n  \"backend\": \"" << mach.backend
         << "\",\n  \"threads\": " << mach.host_threads << ",\n  \"ranks\": " << comm.size() << ",\n  \"date\": \""
         << mach.date << "\",\n  \"scale\": " << o.scale << ",\n  \"tokens\": " << o.tokens
         << ",\n  \"one_rank\": {\"stats_s\": " << best1.stats << ", \"invert_s\": " << best1.invert
         << "},\n  \"ranks_sharded\": {\"stats_s\": " << bestp.stats << ", \"invert_s\": " << bestp.invert
         << "},\n  \"speedup\": " << t1 / tp << ",\n  \"max_rel_diff\": " << diff
         << ",\n  \"hodlr\": {\"dense_bytes\": " << d_bytes << ", \"hodlr_bytes\": " << h_bytes
         << ", \"rel_error\": " << h_err << "}\n}\n";
      std::ostringstream csv;
      csv << "ranks,stats_s,invert_s,total_s\n1," << best1.stats << "," << best1.invert << "," << t1 << "\n"
          << comm.size() << "," << bestp.stats << "," << bestp.invert << "," << tp << "\n";
      write_file_atomic(o.output + "/kfac_bert.json", js.str());
      write_file_atomic(o.output + "/kfac_bert.csv", csv.str());
      std::printf("wrote %s/kfac_bert.json, kfac_bert.csv\n", o.output.c_str());
    }
  }
  return 0;
}

Study kfac_bert_study() {
  return make_study<KfacBertOptions>("kfac-bert",
                                     "K-FAC factors of every BERT-Large weight layer: statistics and damped "
                                     "inversions batched by shape and sharded over MPI ranks, 1 rank vs all",
                                     add_kfac_bert_options, run_kfac_bert);
}

}  // namespace hfisher_perf
