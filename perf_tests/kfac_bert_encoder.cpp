// hfisher-bench kfac-bert --encoder: K-FAC on BERT-Large-shaped encoder
// blocks run through the engine's own forward and backward (nn::Sequential),
// so the Kronecker factors come from real activations and back-propagated
// gradients rather than from synthetic ones.
//
// Each block is BERT's post-normalization encoder layer: x = LN(x + O(attn(
// QKV(x)))), x = LN(x + W2 gelu(W1 x)), with the Q, K, V projections fused
// into one token-wise layer of 3 H outputs. The input is a batch of random
// token ids looked up in a fixed random word-embedding table, then a learned
// position embedding and a layer norm, as BERT's embedding layer. The table
// is fixed rather than a LayerSpec::token_embedding because K-FAC
// implementations leave the word embeddings out (their A factor would be
// (vocab + 1)^2) and the plain step would then also update vocab x H
// parameters the K-FAC step does not precondition: the study compares the
// encoder blocks.
// The head averages the tokens over a few windows and classifies them into
// two random labels: the study times steps, it does not train to accuracy.
//
// What one step costs: the plain step (forward + backward + Adam) against the
// K-FAC step (forward + backward, preconditioning with the factors'
// eigendecompositions, momentum update) plus, every `refresh` steps, a
// curvature refresh: the factor statistics (collect_samples, sharded over the
// ranks by examples, and the K-FAC build) and the eigendecompositions
// (prepare_sharded: one layer per rank, then broadcast), one rank against all.

#include <hfisher/hfisher.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <vector>

#include "bench_common.hpp"
#include "kfac_bert.hpp"
#include "memory_budget.hpp"

namespace hfisher_perf {
// a named namespace: CUDA extended lambdas need enclosing functions with external linkage
namespace encoder {

using S = float;
using E = Kokkos::DefaultExecutionSpace;
using Model = hfisher::nn::Sequential<S, E>;
using Vector = Model::Vector;
using hfisher::nn::LayerSpec;

/// The encoder's shape after scaling.
struct Shape {
  int layers, hidden, ffn, heads, seq, side, vocab;
  /// tokens on a grid of side x 2 side (seq = 2 side^2), pooled by side x side windows to 2 positions
  hfisher::nn::ImageShape input() const { return {hidden, side, 2 * side}; }
};

Shape scaled_shape(const KfacBertOptions& o) {
  constexpr const char* where = "hfisher-bench kfac-bert --encoder";
  Shape s;
  s.layers = o.layers;
  s.hidden = std::max(2, o.hidden / o.scale);
  s.ffn = std::max(2, o.ffn / o.scale);
  s.heads = std::max(1, o.heads / o.scale);
  s.seq = o.seq;
  s.vocab = std::max(1, o.vocab / o.scale);
  s.side = int(std::lround(std::sqrt(o.seq / 2.0)));
  hfisher::detail::require(s.side >= 1 && 2 * s.side * s.side == o.seq, where, "--seq ", o.seq,
                           " is not 2 s^2 (the tokens lie on an s x 2s grid, pooled by s x s windows): use 128 "
                           "(s = 8), 512 (s = 16), 32, 200, ...");
  hfisher::detail::require(s.hidden % s.heads == 0, where, "hidden width ", s.hidden, " (after --scale ", o.scale,
                           ") is not a multiple of the ", s.heads, " heads");
  return s;
}

/// BERT's embedding layer (position embedding, layer norm) and `layers`
/// post-normalization encoder blocks, then the mean over s x s windows and a
/// linear classifier of two classes.
std::vector<LayerSpec> encoder_layers(const Shape& s) {
  std::vector<LayerSpec> l = {LayerSpec::position_embedding(), LayerSpec::layer_norm()};
  for (int b = 0; b < s.layers; ++b) {
    l.push_back(LayerSpec::residual_begin());
    for (const auto& x : hfisher::nn::multi_head_attention(s.hidden, s.heads)) l.push_back(x);
    for (const auto& x :
         {LayerSpec::residual_end(), LayerSpec::layer_norm(), LayerSpec::residual_begin(), LayerSpec::conv(s.ffn, 1),
          LayerSpec::gelu(), LayerSpec::conv(s.hidden, 1), LayerSpec::residual_end(), LayerSpec::layer_norm()})
      l.push_back(x);
  }
  l.push_back(LayerSpec::avg_pool(s.side));
  l.push_back(LayerSpec::linear(2));
  return l;
}

/// `n` sequences of random token ids, each token's features the row of a
/// fixed N(0, 1) word-embedding table (counter-based: the same on every
/// rank and backend), channels last; labels 0 or 1 at random.
hfisher::nn::DeviceData<S, E> token_batch(const Shape& s, int n, std::uint64_t seed) {
  hfisher::nn::DeviceData<S, E> d;
  d.classes = 2;
  const int T = s.seq, H = s.hidden, V = s.vocab;
  d.x = decltype(d.x)("hfisher::bench::bert_tokens", n, long(T) * H);
  d.y = decltype(d.y)("hfisher::bench::bert_labels", n);
  auto x = d.x;
  auto y = d.y;
  Kokkos::parallel_for(
      "hfisher::bench::bert_embed", Kokkos::RangePolicy<E>(0, long(n) * T), KOKKOS_LAMBDA(const long p) {
        const long i = p / T;
        const int t = int(p % T);
        const int id = int(hfisher::random::uniform(seed, 17, std::uint64_t(p)) * V) % V;
        for (int c = 0; c < H; ++c)
          x(i, long(t) * H + c) = S(hfisher::random::normal(seed, 29, std::uint64_t(id) * H + c));
        if (t == 0) y(i) = hfisher::random::uniform(seed, 31, std::uint64_t(i)) < 0.5 ? 0 : 1;
      });
  return d;
}

/// Times of one curvature refresh (max over ranks).
struct Refresh {
  double stats = 0, invert = 0;
  std::size_t factor_bytes = 0, sample_bytes = 0;
};

Refresh refresh(const Model& model, const hfisher::nn::DeviceData<S, E>& data, double damping,
                hfisher::KFACDamping mode, const hfisher::dist::Communicator& comm,
                std::unique_ptr<hfisher::CurvatureOperator<S, E>>* keep = nullptr) {
  hfisher::FisherOptions fo;
  fo.kfac.damping = mode;
  fo.examples = data.size();
  fo.batch = std::max(1, data.size());
  fo.memory_budget = std::size_t(1) << 40;  // the study checks its own budget before allocating
  Refresh r;
  E().fence();
  comm.barrier();
  double t0 = now();
  auto samples = hfisher::collect_samples(model, data, hfisher::FisherKind::MonteCarlo, fo, comm);
  r.sample_bytes = samples.bytes();
  auto op = hfisher::build_curvature(samples, hfisher::Structure::KFAC, fo, comm);
  E().fence();
  r.stats = comm.max(now() - t0);
  comm.barrier();
  t0 = now();
  hfisher::prepare_sharded(*op, damping, comm);
  E().fence();
  r.invert = comm.max(now() - t0);
  r.factor_bytes = op->bytes();
  if (keep) *keep = std::move(op);
  return r;
}

}  // namespace encoder

int run_kfac_bert_encoder(const KfacBertOptions& o) {
  using namespace encoder;
  constexpr const char* where = "hfisher-bench kfac-bert --encoder";
  const auto comm = hfisher::dist::Communicator::world();
  const bool root = comm.root();
  if (!o.output.empty()) hfisher::io::prepare_output_dir(o.output, "hfisher-bench kfac-bert");
  const Shape s = scaled_shape(o);
  hfisher::detail::require(o.batch >= comm.size(), where, "--batch ", o.batch, " is below the ", comm.size(),
                           " ranks (each rank needs a sequence of the refresh)");
  const auto specs = encoder_layers(s);
  const Machine mach = describe_machine();
  // the memory budget before anything large is allocated: parameters, their
  // gradient and two optimizer states; activations and patches of a batch
  // (about 16 H + 4 FF values per token and block, plus the attention
  // weights); the samples of a refresh (inputs and output gradients of every
  // layer per token) and the factors with their eigenvectors
  const double H = s.hidden, FF = s.ffn, T = s.seq, B = o.batch, L = s.layers;
  const double params = L * (4 * H * H + 2 * H * FF + 6 * H + FF) + T * (H + 1) + 2 * (2 * H + 1);
  const double per_token = L * (16 * H + 4 * FF + 2 * s.heads * T) + 4 * H;
  const double samples = B * T * L * ((H + 1) + 3 * H + (H + 1) + H + (H + 1) + FF + (FF + 1) + H);
  const double factors = 2 * L *
                         ((H + 1) * (H + 1) + 9 * H * H + (H + 1) * (H + 1) + H * H + (H + 1) * (H + 1) + FF * FF +
                          (FF + 1) * (FF + 1) + H * H);
  const double need = (5 * params + 2 * B * T * per_token + samples + 2 * factors) * sizeof(S);
  hfisher_cli::check_memory(need, hfisher_cli::memory_budget_bytes(o.memory_budget_gib), where,
                            "the encoder, its activations and Kronecker factors at scale 1/" + std::to_string(o.scale));
  Model model(s.input(), specs, o.seed);
  const auto data = token_batch(s, o.batch, o.seed);
  if (root) {
    std::printf("hfisher-bench kfac-bert --encoder: %s, %s backend, %s host threads, %d rank(s), %s\n",
                mach.cpu.c_str(), mach.backend.c_str(), mach.host_threads.c_str(), comm.size(), mach.date.c_str());
    std::printf(
        "BERT-Large encoder blocks / %d through the engine's forward and backward: %d block(s), hidden %d, %d heads, "
        "FFN %d, %d tokens per sequence, batch %d sequences (%d tokens), %ld parameters; random token ids from a "
        "vocabulary of %d (fixed random word embeddings, not trained); float; K-FAC damping %g, %s\n",
        o.scale, s.layers, s.hidden, s.heads, s.ffn, s.seq, o.batch, o.batch * s.seq, model.num_params(), s.vocab,
        o.damping,
        o.damping_mode == "factored" ? "factored (two products with the damped inverses)"
                                     : "eigen (four products in the eigenbases)");
  }
  Model::Cache cache;
  Vector grad("hfisher::bench::bert_grad", model.num_params());
  Vector theta = model.params();
  // plain step: forward + backward + Adam, on every rank's copy (a data-parallel
  // step would split the batch and allreduce the gradient; both runs share that)
  hfisher::nn::Adam<S, E> adam;
  std::vector<double> plain, fwdbwd, precond;
  double loss = 0;
  for (int r = 0; r <= o.reps; ++r) {  // the first is a warm-up
    E().fence();
    const double t0 = now();
    Kokkos::deep_copy(grad, S(0));
    loss = model.loss_grad(data.x, data.y, grad, cache);
    E().fence();
    const double t1 = now();
    adam.step(theta, grad);
    E().fence();
    if (r > 0) {
      plain.push_back(now() - t0);
      fwdbwd.push_back(t1 - t0);
    }
  }
  // curvature refresh: one rank alone, then all ranks sharded
  const hfisher::dist::Communicator one;
  std::unique_ptr<hfisher::CurvatureOperator<S, E>> op, op1;
  const auto mode = o.damping_mode == "factored" ? hfisher::KFACDamping::Factored : hfisher::KFACDamping::Eigen;
  std::vector<double> s1, i1, sp, ip;
  Refresh last;
  for (int r = 0; r < o.reps; ++r) {
    comm.barrier();
    if (root && comm.size() > 1) {
      const auto t = refresh(model, data, o.damping, mode, one, &op1);
      s1.push_back(t.stats);
      i1.push_back(t.invert);
    }
    comm.barrier();
    last = refresh(model, data, o.damping, mode, comm, &op);
    sp.push_back(last.stats);
    ip.push_back(last.invert);
  }
  // (median of none is NaN: the one-rank timings exist on the root only)
  if (comm.size() == 1) {
    s1 = sp;
    i1 = ip;
  }
  // K-FAC step between refreshes: forward + backward, then d = (F + damping I)^-1 g
  // from the prepared eigendecompositions, and a momentum update
  Vector d("hfisher::bench::bert_dir", model.num_params()), v("hfisher::bench::bert_v", model.num_params());
  for (int r = 0; r <= o.reps; ++r) {
    E().fence();
    const double t0 = now();
    op->solve(grad, d, o.damping);
    const S lr = S(1e-3), mu = S(0.9);
    Kokkos::parallel_for(
        "hfisher::bench::bert_kfac_update", Kokkos::RangePolicy<E>(0, model.num_params()), KOKKOS_LAMBDA(const long i) {
          v(i) = mu * v(i) + d(i);
          theta(i) -= lr * v(i);
        });
    E().fence();
    if (r > 0) precond.push_back(now() - t0);
  }
  // the sharded refresh against the one-rank one: the same direction
  double diff = 0;
  if (root && op1) {
    Vector d1("hfisher::bench::bert_d1", model.num_params());
    op1->solve(grad, d1, o.damping);
    op->solve(grad, d, o.damping);
    auto a = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d);
    auto b = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d1);
    double num = 0, den = 0;
    for (long i = 0; i < model.num_params(); ++i) {
      num += (double(a(i)) - b(i)) * (double(a(i)) - b(i));
      den += double(b(i)) * b(i);
    }
    diff = std::sqrt(num / std::max(den, 1e-300));
  }
  const double t_plain = median(plain), t_fb = median(fwdbwd), t_pre = median(precond);
  const double st1 = median(s1), in1 = median(i1), stp = median(sp), inp = median(ip);
  const double k = o.refresh;
  const double kfac1 = t_fb + t_pre + (st1 + in1) / k, kfacp = t_fb + t_pre + (stp + inp) / k;
  if (root) {
    std::printf("loss %.4f (two random labels: log 2 = 0.693)\n\n", loss);
    std::printf("%-44s %10s\n", ("median of " + std::to_string(o.reps) + " runs").c_str(), "s");
    std::printf("%-44s %10.4f\n", "plain step (forward + backward + Adam)", t_plain);
    std::printf("%-44s %10.4f\n", "  of which forward + backward", t_fb);
    std::printf("%-44s %10.4f\n", "K-FAC preconditioning + update", t_pre);
    std::printf("%-44s %10.4f\n", "refresh statistics, 1 rank", st1);
    std::printf("%-44s %10.4f\n", "refresh eigendecompositions, 1 rank", in1);
    if (comm.size() > 1) {
      std::printf("%-44s %10.4f\n", ("refresh statistics, " + std::to_string(comm.size()) + " ranks").c_str(), stp);
      std::printf("%-44s %10.4f\n", ("refresh eigendecompositions, " + std::to_string(comm.size()) + " ranks").c_str(),
                  inp);
    }
    std::printf("K-FAC step with a refresh every %d steps: %.4f s on 1 rank (%.2fx the plain step)", o.refresh, kfac1,
                kfac1 / t_plain);
    if (comm.size() > 1)
      std::printf(
          ", %.4f s with the refresh sharded over %d ranks (%.2fx; refresh speed-up %.2f; the sharded direction "
          "against the one-rank one: rel diff %.2e)",
          kfacp, comm.size(), kfacp / t_plain, (st1 + in1) / (stp + inp), diff);
    std::printf("\nmemory: parameters %.1f MB; refresh samples %.1f MB; factors and eigendecompositions %.1f MB\n",
                model.num_params() * sizeof(S) / 1e6, last.sample_bytes / 1e6, last.factor_bytes / 1e6);
    if (!o.output.empty()) {
      std::ostringstream js;
      js << "{\n  \"mode\": \"encoder\",\n  \"machine\": \"" << mach.cpu << "\",\n  \"backend\": \"" << mach.backend
         << "\",\n  \"threads\": " << mach.host_threads << ",\n  \"ranks\": " << comm.size() << ",\n  \"date\": \""
         << mach.date << "\",\n  \"scale\": " << o.scale << ",\n  \"blocks\": " << s.layers
         << ",\n  \"hidden\": " << s.hidden << ",\n  \"heads\": " << s.heads << ",\n  \"ffn\": " << s.ffn
         << ",\n  \"seq\": " << s.seq << ",\n  \"batch\": " << o.batch << ",\n  \"parameters\": " << model.num_params()
         << ",\n  \"refresh_every\": " << o.refresh << ",\n  \"damping_mode\": \"" << o.damping_mode << "\""
         << ",\n  \"plain_step_s\": " << t_plain << ",\n  \"forward_backward_s\": " << t_fb
         << ",\n  \"precondition_s\": " << t_pre << ",\n  \"one_rank\": {\"stats_s\": " << st1
         << ", \"invert_s\": " << in1 << ", \"kfac_step_s\": " << kfac1
         << "},\n  \"ranks_sharded\": {\"stats_s\": " << stp << ", \"invert_s\": " << inp
         << ", \"kfac_step_s\": " << kfacp << "},\n  \"sharded_direction_rel_diff\": " << diff
         << ",\n  \"sample_bytes\": " << last.sample_bytes << ",\n  \"factor_bytes\": " << last.factor_bytes << "\n}\n";
      std::ostringstream csv;
      csv << "ranks,plain_step_s,forward_backward_s,precondition_s,stats_s,invert_s,kfac_step_s\n1," << t_plain << ","
          << t_fb << "," << t_pre << "," << st1 << "," << in1 << "," << kfac1 << "\n";
      if (comm.size() > 1)
        csv << comm.size() << "," << t_plain << "," << t_fb << "," << t_pre << "," << stp << "," << inp << "," << kfacp
            << "\n";
      write_file_atomic(o.output + "/kfac_bert_encoder.json", js.str());
      write_file_atomic(o.output + "/kfac_bert_encoder.csv", csv.str());
      std::printf("wrote %s/kfac_bert_encoder.json, kfac_bert_encoder.csv\n", o.output.c_str());
    }
  }
  return 0;
}

}  // namespace hfisher_perf
