// hfisher-continual: continual learning on task streams over Fashion-MNIST
// (or any MNIST-format files), comparing fine-tuning with Fisher penalties
// (EWC, online EWC, K-FAC Laplace, hierarchical) and experience replay.
// Prints progress per task
// and a results table; writes JSON, CSV, accuracy-matrix heatmaps and ACC
// curves (gnuplot), and a checkpoint after every task: a run interrupted and
// restarted with the same arguments and --resume finishes with the same
// table. A folder that already holds a run is refused unless --resume (same
// arguments and code: checkpoints carry the commit) or --overwrite (the
// earlier run's files are removed first) is given.
//
// Under MPI (mpirun -np P hfisher-continual ...) the ranks split every batch,
// every Fisher estimate and every test set (hfisher::dist); rank 0 prints and
// writes the files; all ranks read a checkpoint to resume; an error on any
// rank ends all of them with that rank's message.
#include <CLI/CLI.hpp>
#include <hfisher/core/version.hpp>
#include <hfisher/hfisher.hpp>

#include "cli_checks.hpp"

#ifdef HFISHER_HAVE_MPI
#include <mpi.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>
#include <type_traits>

namespace {

using S = float;
using E = Kokkos::DefaultExecutionSpace;
using Data = hfisher::nn::DeviceData<S, E>;
// the flat parameter vector and the label vector of every model type
using Vector = hfisher::nn::MLP<S, E>::Vector;
using Labels = hfisher::nn::MLP<S, E>::Labels;
static_assert(std::is_same_v<Vector, hfisher::nn::Sequential<S, E>::Vector> &&
              std::is_same_v<Labels, hfisher::nn::Sequential<S, E>::Labels>);

/// The library's options of the ngd and kfac optimizers.
hfisher::NaturalGradientOptions ngd_options(const std::string& optimizer) {
  return optimizer == "kfac" ? hfisher::NaturalGradientOptions::kfac() : hfisher::NaturalGradientOptions{};
}
/// The library's default learning rate and damping of each optimizer.
double default_lr(const std::string& optimizer) {
  if (optimizer == "sgd") return hfisher::nn::SGD<S, E>{}.lr;
  if (optimizer == "adam") return hfisher::nn::Adam<S, E>{}.lr;
  return ngd_options(optimizer).lr;
}
double default_damping(const std::string& optimizer) { return ngd_options(optimizer).damping; }
std::string fmt_default(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}
std::string fixed4(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", v);
  return b;
}
/// Mean and sample standard deviation (0 for fewer than two values).
std::pair<double, double> mean_std(const std::vector<double>& v) {
  double mean = 0, var = 0;
  for (double x : v) mean += x / v.size();
  for (double x : v) var += (x - mean) * (x - mean);
  return {mean, v.size() > 1 ? std::sqrt(var / (v.size() - 1)) : 0.0};
}

using hfisher::continual::is_penalty;
using hfisher::continual::Method;
/// The name a method prints as (results, tables, checkpoint keys).
const char* name(Method m) { return hfisher::continual::to_string(m); }

struct Options {
  std::string model = "mlp";  ///< mlp (--hidden), cnn (nn::small_cnn) or vit (nn::small_vit)
  std::string stream = "permuted", scenario = "task", optimizer = "adam", output = "results/continual", data;
  std::vector<Method> methods = {Method::Finetune, Method::EWC, Method::OnlineEWC, Method::KFACLaplace,
                                 Method::Hierarchical};
  int tasks = 10, epochs = 1, batch = 128, train_examples = 10000, test_examples = 2000, fisher_examples = 200;
  std::vector<int> hidden = {100, 100};
  double lr = 1e-3, lambda = 10.0, gamma = 0.9, tol = 1e-4, damping = 1e-3;
  std::string fisher_kind = "mc";  ///< labels sampled from the model: the Fisher EWC and K-FAC define
  std::uint64_t seed = 1;
  bool spd = true;                      ///< SPD compensation of HODLR hierarchical Fishers
  int seeds = 1;                        ///< runs with seeds seed, seed + 1, ... (mean +- std in the table)
  std::vector<std::string> lambda_for;  ///< per-method overrides of lambda
  int leaf = 32, rank = 32, max_rank = 32;
  std::string hstructure =
      "multilevel";                   ///< structure of the hierarchical penalty: multilevel or hodlr (cnn, vit: hodlr)
  int levels = 2, branching = 100;    ///< multilevel layout: the layer, then each output unit
  std::vector<int> level_rank = {8};  ///< multilevel: one rank for every level, or one per level
  int power_steps = 1, oversampling = 8;  ///< multilevel: randomized eigensolver (-1: the rank + 8)
  int replay_examples = 100;              ///< replay: examples kept of every finished task
  double memory_budget_gib = 0;           ///< --memory-budget (0: 80% of the memory available at start)
  std::size_t memory_budget = 0;          ///< the budget in bytes, resolved once in main
  bool resume = false;                    ///< continue the run in --output from its checkpoints
  bool overwrite = false;                 ///< remove the earlier run's files in --output first
  int validation = 0;                     ///< examples per task held out of training for selecting lambda (0: none)
  std::vector<double> lambda_grid;        ///< candidate lambdas, each method's chosen on validation data
  std::vector<double> gamma_grid;         ///< candidate online-EWC decays, chosen with lambda
  std::vector<double> lr_grid;            ///< candidate learning rates (every method), chosen with lambda and gamma
  bool keep_optimizer_state = false;      ///< sgd/adam: one optimizer for the whole stream, not one per task
  bool probe_anchors = false;   ///< ewc: after each task, accuracy at the penalty's minimiser (docs/continual.md)
  std::vector<double> targets;  ///< --target-accuracy: validation accuracies whose training time is reported
};

hfisher::dist::Communicator comm;  // the ranks of the run (one process without MPI)

// printf on rank 0 only
template <class... A>
void say(const char* fmt, A... a) {
  if (comm.root()) std::printf(fmt, a...);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// everything that changes results: a checkpoint is only resumed under the same key
std::string run_key(const Options& o, Method method, std::uint64_t seed) {
  std::ostringstream k;
  k << "code=" << hfisher::commit() << "|v1|" << name(method) << "|" << o.stream << "|" << o.scenario << "|"
    << o.optimizer << "|" << o.tasks << "|" << o.epochs << "|" << o.batch << "|" << o.train_examples << "|"
    << o.test_examples << "|" << o.fisher_examples << "|" << o.lr << "|" << o.lambda << "|" << o.gamma << "|" << o.tol
    << "|" << o.damping << "|" << o.fisher_kind << "|" << seed << "|" << o.leaf << "|" << o.rank << "|" << o.max_rank
    << "|" << o.data;
  if (o.model == "mlp")
    for (int h : o.hidden) k << "|h" << h;
  else
    k << "|model=" << o.model;
  for (const auto& l : o.lambda_for) k << "|l" << l;
  if (!o.spd) k << "|nospd";
  if (o.keep_optimizer_state) k << "|keepopt";
  if (o.validation > 0) k << "|val" << o.validation;
  if (method == Method::Replay) k << "|replay" << o.replay_examples;
  if (method == Method::Hierarchical)  // v1 keys (HODLR only) stay readable for --hierarchical-structure hodlr
    if (o.hstructure != "hodlr") {
      k << "|" << o.hstructure << "|" << o.levels << "|" << o.branching;
      for (int r : o.level_rank) k << "|r" << r;
      k << "|q" << o.power_steps << "|p" << o.oversampling;  // keys without these held 2 steps, r + 8
    }
  return k.str();
}

double lambda_of(const Options& o, Method method) {
  double l = o.lambda;
  for (const auto& kv : o.lambda_for) {
    const auto eq = kv.find('=');
    hfisher::detail::require(eq != std::string::npos, "hfisher-continual", "--lambda-for expects METHOD=VALUE, got '",
                             kv, "'");
    if (kv.substr(0, eq) != name(method)) continue;
    char* end = nullptr;
    const std::string v = kv.substr(eq + 1);
    l = std::strtod(v.c_str(), &end);
    hfisher::detail::require(end && *end == '\0' && !v.empty() && l >= 0 && std::isfinite(l), "hfisher-continual",
                             "--lambda-for ", kv, ": the value is not a finite number >= 0");
  }
  return l;
}

bool any_grid(const Options& o) { return !o.lambda_grid.empty() || !o.gamma_grid.empty() || !o.lr_grid.empty(); }

/// Whether a method's candidates differ in gamma (online EWC with --gamma-grid).
bool grid_varies_gamma(const Options& o, Method method) { return method == Method::OnlineEWC && !o.gamma_grid.empty(); }
/// Whether a method's candidates are named by lambda: a penalty method with
/// --lambda-grid, or with --gamma-grid (the pair is named).
bool grid_names_lambda(const Options& o, Method method) {
  return is_penalty(method) && (!o.lambda_grid.empty() || grid_varies_gamma(o, method));
}
/// Whether --lambda-grid / --gamma-grid / --lr-grid give a method candidates to choose from.
bool method_has_grid(const Options& o, Method method) { return !o.lr_grid.empty() || grid_names_lambda(o, method); }

/// One setting a method runs at.
struct Candidate {
  double lambda = 0, gamma = 1, lr = 0;
  bool operator==(const Candidate& c) const { return lambda == c.lambda && gamma == c.gamma && lr == c.lr; }
};

/// The candidates a method runs: the grids' product, or the values given.
std::vector<Candidate> candidates(const Options& o, Method method) {
  const std::vector<double> rs = o.lr_grid.empty() ? std::vector<double>{o.lr} : o.lr_grid;
  const std::vector<double> ls = !is_penalty(method)     ? std::vector<double>{0.0}
                                 : o.lambda_grid.empty() ? std::vector<double>{lambda_of(o, method)}
                                                         : o.lambda_grid;
  const std::vector<double> gs = grid_varies_gamma(o, method) ? o.gamma_grid : std::vector<double>{o.gamma};
  std::vector<Candidate> c;
  for (double l : ls)
    for (double g : gs)
      for (double r : rs) c.push_back({l, g, r});
  return c;
}

/// How a candidate is named: in the log (method@lambda[/gamma][/lr<lr>]) and,
/// with file set, in checkpoint names (method-lambda<l>[-gamma<g>][-lr<r>]).
/// Only what a grid varies is named.
std::string candidate_name(const Options& o, Method method, const Candidate& c, bool file) {
  if (!method_has_grid(o, method)) return name(method);
  const bool gl = grid_names_lambda(o, method), gg = grid_varies_gamma(o, method), gr = !o.lr_grid.empty();
  std::string n = name(method);
  if (file) {
    if (gl) n += "-lambda" + fmt_default(c.lambda);
    if (gg) n += "-gamma" + fmt_default(c.gamma);
    if (gr) n += "-lr" + fmt_default(c.lr);
    return n;
  }
  std::string v;
  if (gl) v += fmt_default(c.lambda);
  if (gg) v += "/" + fmt_default(c.gamma);
  if (gr) v += (v.empty() ? "lr" : "/lr") + fmt_default(c.lr);
  return n + "@" + v;
}

/// A run whose weights, or whose loss, became NaN or infinite.
struct Diverged : hfisher::Error {
  using hfisher::Error::Error;
};

/// The libraries a run was built with, as a JSON object (results.json).
std::string libraries_json() {
  std::ostringstream j;
  j << "{\"kokkos\": \"" << KOKKOS_VERSION / 10000 << "." << KOKKOS_VERSION / 100 % 100 << "." << KOKKOS_VERSION % 100
    << "\", \"compiler\": \""
#if defined(__clang__)
    << "clang " << __clang_version__
#elif defined(__GNUC__)
    << "GCC " << __VERSION__
#else
    << "unknown"
#endif
    << "\", \"mpi\": ";
#ifdef HFISHER_HAVE_MPI
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(v, &len);  // callable before MPI_Init
  std::string mpi(v, std::size_t(len));
  mpi = mpi.substr(0, mpi.find_first_of(",\n"));  // "Open MPI v4.1.4" (the first field)
  std::string esc;
  for (char c : mpi)
    if (c != '"' && c != '\\' && (unsigned char)c >= 32) esc += c;
  j << "\"" << esc << "\"";
#else
  j << "null";
#endif
  j << "}";
  return j.str();
}

struct MethodResult {
  Method method = Method::Finetune;
  std::uint64_t seed = 1;
  hfisher::continual::AccuracyMatrix R;
  std::vector<double> train_seconds, consolidate_seconds, fisher_bytes;
  double train_examples = 0;  ///< examples processed by the optimizer (all tasks so far)
  int done = 0;
  double lambda = 0;      ///< the penalty's strength in this run
  double gamma = 1;       ///< online EWC's decay in this run
  double lr = 0;          ///< the optimizer's learning rate in this run
  bool diverged = false;  ///< a grid candidate whose training diverged (never selected)
  /// accuracy on each task's validation examples (--validation; rows 0..done-1)
  hfisher::continual::AccuracyMatrix V{1};
  /// --validation: the learning curve, for every finished task and epoch
  /// (task-major) three values: seconds of training into the task (the
  /// validation passes not counted), the epoch's training loss, and the
  /// accuracy on the task's validation examples after the epoch
  std::vector<double> curve{};
  static constexpr int curve_fields = 3;
  double curve_at(int task, int epoch, int epochs, int field) const {
    return curve[(std::size_t(task) * epochs + epoch) * curve_fields + field];
  }
  /// seconds of training into `task` until its validation accuracy first
  /// reached `target` (NaN: not within the task's epochs)
  double seconds_to(int task, int epochs, double target) const {
    for (int e = 0; e < epochs; ++e)
      if (curve_at(task, e, epochs, 2) >= target) return curve_at(task, e, epochs, 0);
    return std::numeric_limits<double>::quiet_NaN();
  }
};

template <class Model>
void save_checkpoint(const std::string& path, const std::string& key, const MethodResult& r, const Model& model,
                     const hfisher::FisherPenalty<S, E>* pen) {
  hfisher::io::atomic_write_sealed(path, "hfisher-continual: checkpoint", [&](std::ostream& o) {
    o.write("HFCKPT01", 8);
    hfisher::io::put(o, std::uint64_t(key.size()));
    o.write(key.data(), std::streamsize(key.size()));
    hfisher::io::put(o, std::int32_t(r.done));
    for (double v : r.R.data()) hfisher::io::put(o, v);
    if (r.V.tasks() == r.R.tasks()) {  // with --validation (the key says so)
      for (double v : r.V.data()) hfisher::io::put(o, v);
      hfisher::io::put(o, std::uint64_t(r.curve.size()));
      for (double v : r.curve) hfisher::io::put(o, v);
    }
    for (int t = 0; t < r.done; ++t) {
      hfisher::io::put(o, r.train_seconds[t]);
      hfisher::io::put(o, r.consolidate_seconds[t]);
      hfisher::io::put(o, r.fisher_bytes[t]);
    }
    hfisher::io::put(o, r.train_examples);
    model.write(o);
    hfisher::io::put(o, std::int32_t(pen != nullptr));
    if (pen) pen->write(o);
    o.write("HFCKPT01", 8);
  });
}

// returns false when there is no checkpoint; throws on a foreign or corrupt one
template <class Model>
bool load_checkpoint(const std::string& path, const std::string& key, int epochs, MethodResult& r, Model& model,
                     hfisher::FisherPenalty<S, E>* pen) {
  if (!std::filesystem::exists(path)) return false;
  constexpr const char* where = "hfisher-continual: checkpoint";
  hfisher::io::SealedFile file(path, where);  // checksum verified first: a flipped bit is refused
  std::istream& i = file.stream();
  char m[8];
  i.read(m, 8);
  hfisher::detail::require(bool(i) && std::string(m, 8) == "HFCKPT01", where, path, " is not an hfisher checkpoint");
  const auto klen = hfisher::io::get<std::uint64_t>(i, path, where);
  hfisher::detail::require(klen < 100000, where, path, ": corrupt header");
  std::string k(klen, '\0');
  i.read(k.data(), std::streamsize(klen));
  // the code version first (the key's first field), then the arguments
  const auto code = [](const std::string& s) {
    return s.compare(0, 5, "code=") == 0 ? s.substr(5, s.find('|') - 5) : std::string("before commits were recorded");
  };
  hfisher::detail::require(code(k) == code(key), where, path, " was written by code version ", code(k),
                           ", this build is ", code(key), ": results would mix two versions; rerun with --overwrite");
  hfisher::detail::require(k == key, where, path,
                           " was written by a run with different arguments; use another --output, or --overwrite");
  r.done = hfisher::io::get<std::int32_t>(i, path, where);
  const int T = r.R.tasks();
  hfisher::detail::require(r.done >= 1 && r.done <= T, where, path, ": corrupt task count");
  for (int a = 0; a < T; ++a)
    for (int b = 0; b < T; ++b) {
      const double v = hfisher::io::get<double>(i, path, where);
      if (v >= 0) r.R.set(a, b, v);
    }
  if (r.V.tasks() == T) {
    for (int a = 0; a < T; ++a)
      for (int b = 0; b < T; ++b) {
        const double v = hfisher::io::get<double>(i, path, where);
        if (v >= 0) r.V.set(a, b, v);
      }
    const auto nc = hfisher::io::get<std::uint64_t>(i, path, where);
    hfisher::detail::require(nc == std::uint64_t(r.done) * epochs * MethodResult::curve_fields, where, path,
                             ": corrupt learning curve (", nc, " values for ", r.done, " task(s) of ", epochs,
                             " epoch(s))");
    r.curve.resize(nc);
    for (auto& v : r.curve) v = hfisher::io::get<double>(i, path, where);
  }
  for (int t = 0; t < r.done; ++t) {
    r.train_seconds.push_back(hfisher::io::get<double>(i, path, where));
    r.consolidate_seconds.push_back(hfisher::io::get<double>(i, path, where));
    r.fisher_bytes.push_back(hfisher::io::get<double>(i, path, where));
  }
  r.train_examples = hfisher::io::get<double>(i, path, where);
  model = Model::read(i, path);
  const int has_pen = hfisher::io::get<std::int32_t>(i, path, where);
  hfisher::detail::require((has_pen != 0) == (pen != nullptr), where, path,
                           ": penalty state does not match the method");
  if (pen) pen->read(i, path);
  i.read(m, 8);
  hfisher::detail::require(bool(i) && std::string(m, 8) == "HFCKPT01", where, path, ": file is truncated");
  file.expect_end();
  return true;
}

// The files a run writes into --output (and checkpoints/): a folder holding
// any of them holds an earlier run.
bool is_run_file(const std::filesystem::path& p, bool checkpoint) {
  const std::string f = p.filename().string();
  auto ends = [&](const char* s) {
    return f.size() >= std::strlen(s) && f.compare(f.size() - std::strlen(s), std::string::npos, s) == 0;
  };
  if (checkpoint) return ends(".ckpt");
  return f == "results.json" || f == "results.csv" || f == "curve.csv" || f == "plots.gp" || f == "heatmaps.png" ||
         f == "acc.png" || f == "acc_memory.dat" || f == "acc_memory.png" ||
         ((f.rfind("R_", 0) == 0 || f.rfind("ACC_", 0) == 0) && ends(".dat"));
}

// Refuses a folder holding an earlier run unless --resume or --overwrite;
// --overwrite removes that run's files (and only those), so no file of a
// method not run this time is left beside the new results.
void claim_output(const Options& o) {
  namespace fs = std::filesystem;
  std::vector<fs::path> earlier;
  for (const auto& [dir, ckpt] :
       {std::make_pair(fs::path(o.output), false), std::make_pair(fs::path(o.output) / "checkpoints", true)})
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && is_run_file(e.path(), ckpt)) earlier.push_back(e.path());
  if (earlier.empty()) return;
  if (o.overwrite) {
    for (const auto& p : earlier) fs::remove(p);
    say("--overwrite: removed %zu file(s) of an earlier run from %s\n", earlier.size(), o.output.c_str());
    return;
  }
  hfisher::detail::require(o.resume, "hfisher-continual: --output", o.output, " already holds a run (",
                           earlier.front().filename().string(), ", ...): pass --resume to continue it (same ",
                           "arguments and code version) or --overwrite to replace it");
}

/// ||x - y||_2 (same length).
double l2_distance(const Vector& x, const Vector& y) {
  double d = 0;
  Kokkos::parallel_reduce(
      "hfisher-continual::l2_distance", Kokkos::RangePolicy<E>(0, x.extent(0)),
      KOKKOS_LAMBDA(const long i, double& acc) { acc += double(x(i) - y(i)) * double(x(i) - y(i)); }, d);
  return std::sqrt(d);
}

/// --probe-anchors (EWC, sgd/adam; docs/continual.md, "Why EWC forgets more as
/// lambda grows"): after task t, the accuracy on tasks 1..t at
///   theta_t:   the trained parameters;
///   theta_bar: the minimiser of EWC's penalty, sum_s F_s theta_s / sum_s F_s
///              (diagonal Fishers: entry by entry; theta_t where sum F = 0);
///   drift:     theta_t after one epoch's worth of steps of a fresh optimizer
///              on the penalty alone (what the next task starts with).
/// The model is restored afterwards; nothing is stored in the results.
template <class Model>
void probe_anchors(const Options& o, const std::string& label, int t, Model& model,
                   const hfisher::FisherPenalty<S, E>& pen, const std::vector<Data>& test,
                   const std::vector<Labels>& masks, int steps) {
  const long P = model.num_params();
  Vector theta("theta", P), num("num", P), den("den", P);
  Kokkos::deep_copy(theta, model.params());
  for (int s = 0; s < pen.terms(); ++s) {
    const auto d = pen.fisher(s).diag();
    const auto a = pen.anchor(s);
    Kokkos::parallel_for(
        "hfisher-continual::probe", Kokkos::RangePolicy<E>(0, P), KOKKOS_LAMBDA(const long i) {
          num(i) += d(i) * a(i);
          den(i) += d(i);
        });
  }
  Kokkos::parallel_for(
      "hfisher-continual::probe_bar", Kokkos::RangePolicy<E>(0, P),
      KOKKOS_LAMBDA(const long i) { num(i) = den(i) > 0 ? num(i) / den(i) : theta(i); });
  auto row = [&] {
    std::string r;
    for (int j = 0; j <= t; ++j) {
      char b[16];
      std::snprintf(b, sizeof b, " %.3f", hfisher::dist::accuracy(model, test[j], masks[j], comm));
      r += b;
    }
    return r;
  };
  const std::string at_t = row();
  Kokkos::deep_copy(model.params(), num);
  const std::string at_bar = row();
  Kokkos::deep_copy(model.params(), theta);
  hfisher::nn::SGD<S, E> sgd;
  sgd.lr = o.lr;
  hfisher::nn::Adam<S, E> adam;
  adam.lr = o.lr;
  Vector grad("grad", P);
  for (int k = 0; k < steps; ++k) {
    Kokkos::deep_copy(grad, S(0));
    pen.add_gradient(model.params(), grad);
    if (o.optimizer == "sgd")
      sgd.step(model.params(), grad);
    else
      adam.step(model.params(), grad);
  }
  const double moved = l2_distance(model.params(), theta);
  const std::string at_drift = row();
  Kokkos::deep_copy(model.params(), theta);
  say("[%-12s] task %2d/%d probe: accuracy on tasks 1..%d at theta_t:%s | at the penalty's minimiser (%.3g away):%s | "
      "after %d %s steps on the penalty alone (moved %.3g):%s\n",
      label.c_str(), t + 1, o.tasks, t + 1, at_t.c_str(), l2_distance(num, theta), at_bar.c_str(), steps,
      o.optimizer.c_str(), moved, at_drift.c_str());
}

/// The layers of --model cnn or vit for images of shape `in`.
hfisher::nn::Preset preset(const std::string& model, hfisher::nn::ImageShape in, int classes) {
  return model == "cnn" ? hfisher::nn::small_cnn(in, classes) : hfisher::nn::small_vit(in, classes);
}

/// Bytes a run needs at its peak, estimated from the options: Fashion-MNIST
/// as loaded (70 000 images of 784 floats) and the chosen examples on the
/// device, the per-sample factors of one consolidation, and the largest
/// penalty of the chosen methods after the last task (EWC keeps every
/// task's anchor and diagonal, K-FAC Laplace every task's factors, the
/// hierarchical penalty its structure at the chosen ranks, replay its memory).
double estimate_run_bytes(const Options& o) {
  // P, the entries of the K-FAC factors, and the values one example's
  // capture holds (a convolution's at each of its output positions)
  double P = 0, kron = 0, rows_cols = 0;
  if (o.model == "mlp") {
    std::vector<int> w = {784};
    for (int h : o.hidden) w.push_back(h);
    w.push_back(10);
    for (std::size_t l = 0; l + 1 < w.size(); ++l) {
      P += double(w[l + 1]) * (w[l] + 1);
      kron += double(w[l] + 1) * (w[l] + 1) + double(w[l + 1]) * w[l + 1];
      rows_cols += w[l] + 1 + w[l + 1];
    }
  } else {  // the preset at Fashion-MNIST's 28 x 28 (the data are not read yet)
    const hfisher::nn::Sequential<S, E> net({1, 28, 28}, preset(o.model, {1, 28, 28}, 10).layers);
    for (int p = 0; p < net.num_layers(); ++p) {
      const auto& l = net.layers()[std::size_t(p)];
      P += double(l.size());
      kron += double(l.cols()) * l.cols() + double(l.out) * l.out;
      rows_cols += double(net.geometry(p).positions()) * (l.cols() + l.out);
    }
  }
  const double Sz = sizeof(S);
  const double data = 70000.0 * 784 * 4 + (o.train_examples + double(o.tasks) * o.test_examples) * 784 * Sz;
  const double R = o.fisher_kind == "ggn" ? 10 : 1;
  const double samples = double(o.fisher_examples) * R * rows_cols * Sz;
  double penalty = 0;
  for (const auto& m : o.methods) {
    double b = 0;
    if (m == Method::EWC)
      b = 2.0 * o.tasks * P * Sz;
    else if (m == Method::OnlineEWC)
      b = 2.0 * P * Sz;
    else if (m == Method::KFACLaplace)
      b = o.tasks * (kron + P) * Sz;
    else if (m == Method::Hierarchical) {
      double r = 0;
      for (int x : o.level_rank) r += x;
      if (o.level_rank.size() == 1) r *= o.levels;
      b = o.hstructure == "hodlr" ? 2.0 * P * (o.leaf + 2 * 12.0 * o.max_rank) * Sz : 3.0 * P * (1 + r) * Sz;
    } else if (m == Method::Replay)
      b = double(o.tasks) * o.replay_examples * (784 * Sz + 4);
    penalty = std::max(penalty, b);
  }
  return data + samples + penalty + 8 * P * Sz;  // + model, gradients and optimizer state
}

/// Net: nn::MLP (--model mlp) or nn::Sequential (cnn, vit).
template <template <class, class> class Net>
int run(const Options& o) {
  using Model = Net<S, E>;
  constexpr bool is_mlp = std::is_same_v<Model, hfisher::nn::MLP<S, E>>;
  const auto t_all = std::chrono::steady_clock::now();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // the output folder is checked (non-empty, not "/", creatable, writable)
  // before any data is read or any network trained
  if (comm.root()) {
    hfisher::io::prepare_output_dir(o.output, "hfisher-continual: --output");
    hfisher::io::prepare_output_dir(o.output + "/checkpoints", "hfisher-continual: --output");
    claim_output(o);
  }
  hfisher_cli::check_memory(estimate_run_bytes(o), o.memory_budget, "hfisher-continual",
                            "this run (the data, one consolidation's per-sample factors and the largest penalty)");
  comm.barrier();
  auto train_all = hfisher::nn::load_mnist_dir(o.data, true);
  auto test_all = hfisher::nn::load_mnist_dir(o.data, false);
  train_all = hfisher::nn::slice(train_all, 0, std::min(o.train_examples, train_all.n));
  test_all = hfisher::nn::slice(test_all, 0, std::min(o.test_examples, test_all.n));
  const auto kind =
      o.stream == "permuted" ? hfisher::continual::StreamKind::Permuted : hfisher::continual::StreamKind::Split;
  const auto scen = o.scenario == "task" ? hfisher::continual::Scenario::TaskIncremental
                                         : hfisher::continual::Scenario::ClassIncremental;
  const int T = o.tasks, C = train_all.classes;
  std::vector<int> widths = {train_all.features};
  widths.insert(widths.end(), o.hidden.begin(), o.hidden.end());
  widths.push_back(C);
  // cnn, vit: the images' shape (an IDX file of (n, rows, cols) gives it)
  const hfisher::nn::ImageShape shape{1, train_all.height, train_all.width};
  hfisher::detail::require(is_mlp || (shape.height > 0 && shape.width > 0), "hfisher-continual", "--model ", o.model,
                           " takes images, but the training set in ", o.data.empty() ? "the default folder" : o.data,
                           " holds flat vectors of ", train_all.features, " values (no rows x cols)");
  const auto make_model = [&](std::uint64_t seed) {
    if constexpr (is_mlp)
      return Model(widths, hfisher::nn::Activation::ReLU, seed);
    else
      return Model(shape, preset(o.model, shape, C).layers, seed);
  };
  std::string model_text;  // in the log and results.json
  if constexpr (is_mlp) {
    model_text = "MLP";
    for (int w : widths) model_text += " " + std::to_string(w);
  } else {
    model_text = (o.model == "cnn" ? "CNN (" : "vision transformer (") + preset(o.model, shape, C).text + ")";
  }
  const long num_params = make_model(o.seed).num_params();
  const auto fkind = hfisher::fisher_kind_from_string(o.fisher_kind, "hfisher-continual --fisher-kind");
  std::vector<MethodResult> results;
  for (int si = 0; si < o.seeds; ++si) {
    const std::uint64_t seed = o.seed + std::uint64_t(si);
    auto stream = hfisher::continual::make_stream(train_all, test_all, kind, o.tasks, scen, seed);
    std::vector<Data> train, test, val;
    std::vector<Labels> masks;
    for (const auto& t : stream) {
      // --validation: the last examples of each task's training set, never trained on
      const int nv = o.validation, nt = t.train.n - nv;
      hfisher::detail::require(nt >= 1, "hfisher-continual", "--validation ", nv,
                               " leaves no training examples (a task has ", t.train.n, ")");
      hfisher::detail::require(o.fisher_examples <= nt, "hfisher-continual", "--fisher-examples ", o.fisher_examples,
                               " exceeds the ", nt, " training examples of task ", train.size() + 1,
                               " (the Fisher is estimated on a task's training examples)");
      if (std::find(o.methods.begin(), o.methods.end(), Method::Replay) != o.methods.end())
        hfisher::detail::require(o.replay_examples <= nt, "hfisher-continual", "--replay-examples ", o.replay_examples,
                                 " exceeds the ", nt, " training examples of task ", train.size() + 1,
                                 " (replay keeps that many of every task)");
      train.push_back(hfisher::nn::to_device<S, E>(nv > 0 ? hfisher::nn::slice(t.train, 0, nt) : t.train));
      if (nv > 0) val.push_back(hfisher::nn::to_device<S, E>(hfisher::nn::slice(t.train, nt, nv)));
      test.push_back(hfisher::nn::to_device<S, E>(t.test));
      Labels m("mask", C);
      auto mh = Kokkos::create_mirror_view(m);
      for (int c : t.classes) mh(c) = 1;
      Kokkos::deep_copy(m, mh);
      // permuted / class-incremental tasks use every class: no mask
      masks.push_back(int(t.classes.size()) == C ? Labels() : m);
    }
    say("hfisher-continual: seed %llu, %s stream (%s), %d tasks x %d train / %d test examples; %s, %ld parameters",
        (unsigned long long)seed, o.stream.c_str(),
        o.stream == "split" ? (o.scenario == "task" ? "task-incremental" : "class-incremental") : "permuted pixels", T,
        train[0].size(), test[0].size(), model_text.c_str(), num_params);
    std::string lambdas = fmt_default(o.lambda);
    if (!o.lambda_grid.empty()) {
      lambdas = "chosen on " + std::to_string(o.validation) + " validation examples per task from";
      for (double l : o.lambda_grid) lambdas += " " + fmt_default(l);
    }
    if (!o.gamma_grid.empty()) {
      lambdas += "; online-ewc gamma chosen from";
      for (double g : o.gamma_grid) lambdas += " " + fmt_default(g);
    }
    std::string lrs = fmt_default(o.lr);
    if (!o.lr_grid.empty()) {
      lrs = "chosen from";
      for (double r : o.lr_grid) lrs += " " + fmt_default(r);
    }
    say("; optimizer %s (lr %s%s), %d epoch(s), batch %d; lambda %s; Fisher: %s from %d examples; backend %s, %d "
        "rank(s) x %d thread(s)\n",
        o.optimizer.c_str(), lrs.c_str(),
        o.optimizer == "ngd" || o.optimizer == "kfac" ? (", damping " + fmt_default(o.damping)).c_str() : "", o.epochs,
        o.batch, lambdas.c_str(), o.fisher_kind.c_str(), o.fisher_examples, E::name(), comm.size(), E().concurrency());
    hfisher::FisherOptions fo;
    fo.examples = o.fisher_examples;
    fo.memory_budget = o.memory_budget;
    fo.tol = o.tol;
    fo.leaf = o.leaf;
    fo.rank = o.rank;
    fo.hodlr_max_rank = o.max_rank;
    fo.seed = seed;
    fo.spd_compensation = o.spd;  // HODLR: a penalty stays convex, compressed Fishers stay PSD
    fo.multilevel_levels = o.levels;
    if (o.level_rank.size() == 1)
      fo.multilevel_rank = o.level_rank[0];
    else
      fo.multilevel_ranks = o.level_rank;
    fo.multilevel_branching = o.branching;
    fo.multilevel_power_steps = o.power_steps;
    fo.multilevel_oversampling = o.oversampling;
    for (std::size_t mi = 0; mi < o.methods.size(); ++mi) {
      const Method method = o.methods[mi];
      // the (lambda, gamma, lr) candidates to run: the grids (each method's
      // choice is made on validation data after all seeds), or the values given
      const auto cands = candidates(o, method);
      const bool grid = method_has_grid(o, method);
      for (const auto& cand : cands) {
        const double lam = cand.lambda, gam = cand.gamma;
        Options oc = o;  // this run's options: its lambda, gamma and lr enter the checkpoint key
        const std::string label = candidate_name(o, method, cand, false);  // in the log
        if (grid) {
          oc.lambda = lam;
          oc.lambda_for.clear();
          oc.gamma = gam;
          oc.lr = cand.lr;
        }
        MethodResult r{method, seed, hfisher::continual::AccuracyMatrix(T), {}, {}, {}, 0};
        r.lambda = lam;  // 0 for fine-tuning (its only candidate lambda)
        r.gamma = gam;
        r.lr = oc.lr;
        if (o.validation > 0) r.V = hfisher::continual::AccuracyMatrix(T);
        Model model = make_model(seed);
        std::unique_ptr<hfisher::FisherPenalty<S, E>> pen;
        if (is_penalty(method))
          pen = std::make_unique<hfisher::FisherPenalty<S, E>>(hfisher::continual::penalty_method(method), lam, gam,
                                                               fkind, fo);
        if (pen && method == Method::Hierarchical)
          pen->set_structure(
              hfisher::structure_from_string(o.hstructure, "hfisher-continual --hierarchical-structure"));
        // replay: the memory of the finished tasks (rebuilt on resume: its
        // examples depend only on the seed and the tasks)
        std::unique_ptr<hfisher::continual::ReplayMemory<S, E, Net>> replay;
        if (method == Method::Replay)
          replay = std::make_unique<hfisher::continual::ReplayMemory<S, E, Net>>(o.replay_examples, seed);
        const std::string ckpt = o.output + "/checkpoints/" + candidate_name(o, method, cand, true) +
                                 (o.seeds > 1 ? "-seed" + std::to_string(seed) : std::string()) + ".ckpt";
        const std::string key = run_key(oc, method, seed);
        if (o.resume && load_checkpoint(ckpt, key, o.epochs, r, model, pen.get()))
          say("[%s] resuming from %s after task %d\n", label.c_str(), ckpt.c_str(), r.done);
        hfisher::nn::SGD<S, E> sgd;
        hfisher::nn::Adam<S, E> adam;
        const int first_task = r.done;  // 0 unless resumed
        if (replay)
          for (int t = 0; t < first_task; ++t) replay->add_task(train[t], masks[t]);
        try {  // a grid candidate that diverges is reported and left out of the selection
          for (int t = first_task; t < T; ++t) {
            const auto t0 = std::chrono::steady_clock::now();
            // the same draws on every rank (and after a resume): one generator per task
            std::mt19937_64 replay_rng(seed * 1000003ULL + std::uint64_t(t) * 7919ULL + 0x5bd1e995ULL);
            auto hook = [&](const Vector& grad) {
              if (pen) pen->add_gradient(model.params(), grad);
              if (replay) replay->add_gradient(model, grad, o.batch, replay_rng);
            };
            double loss = 0;
            std::mt19937_64 rng(seed * 1000003ULL + std::uint64_t(t) * 7919ULL);  // same shuffles for every method
            if (!o.keep_optimizer_state || t == first_task) {  // a fresh optimizer (Adam's moments at zero)
              sgd = hfisher::nn::SGD<S, E>{};
              sgd.lr = oc.lr;
              adam = hfisher::nn::Adam<S, E>{};
              adam.lr = oc.lr;
            }
            std::unique_ptr<hfisher::NaturalGradient<S, E, Net>> ngd;
            if (o.optimizer == "ngd" || o.optimizer == "kfac") {
              auto no = ngd_options(o.optimizer);
              no.lr = oc.lr;
              no.damping = o.damping;
              no.fisher.rank = o.rank;
              ngd = std::make_unique<hfisher::NaturalGradient<S, E, Net>>(model, train[t], no, comm);
            }
            // weights that are NaN or infinite (a diverged model)
            auto nonfinite = [&] {
              auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.params());
              long bad = 0;
              for (std::size_t i = 0; i < h.extent(0); ++i) bad += std::isfinite(h(i)) ? 0 : 1;
              return bad;
            };
            auto diverged = [&](long bad, const std::string& when, const std::string& check) {
              return Diverged(hfisher::detail::concat(
                  "hfisher-continual: ", label, ", task ", t + 1, ": training diverged (",
                  bad > 0 ? hfisher::detail::concat(bad, " of ", model.num_params(), " weights are NaN or infinite")
                          : std::string("the weights stayed finite, but the loss became NaN or infinite"),
                  " ", when, ", with ", o.optimizer, " at --lr ", oc.lr, " and lambda ", pen ? pen->lambda() : 0.0,
                  "); lower --lr or --lambda", check.empty() ? "" : ". The check that stopped it: ", check));
            };
            double eval_s = 0;  // the validation passes of the learning curve, not counted as training
            try {
              for (int e = 0; e < o.epochs; ++e) {
                if (o.optimizer == "sgd")
                  loss = hfisher::dist::train_epoch(model, train[t], o.batch, sgd, rng, hook, masks[t], comm);
                else if (o.optimizer == "adam")
                  loss = hfisher::dist::train_epoch(model, train[t], o.batch, adam, rng, hook, masks[t], comm);
                else
                  loss = hfisher::dist::train_epoch(model, train[t], o.batch, *ngd, rng, hook, masks[t], comm);
                const double el = comm.max(seconds_since(t0) - eval_s);
                double va = std::numeric_limits<double>::quiet_NaN();
                if (o.validation > 0) {
                  const auto te = std::chrono::steady_clock::now();
                  va = hfisher::dist::accuracy(model, val[t], masks[t], comm);
                  r.curve.insert(r.curve.end(), {el, loss, va});
                  eval_s += seconds_since(te);
                }
                if (o.epochs > 1 && e + 1 < o.epochs)  // progress within a task
                  say("[%-12s] task %2d/%d epoch %d/%d: loss %.4f%s, %.0f ex/s, task ETA %.0f s\n", label.c_str(),
                      t + 1, T, e + 1, o.epochs, loss,
                      o.validation > 0 ? hfisher::detail::concat(", validation accuracy ", fixed4(va)).c_str() : "",
                      (e + 1) * double(train[t].size()) / el, el / (e + 1) * (o.epochs - e - 1));
              }
            } catch (const hfisher::NonFiniteError& err) {
              // a check inside a step (the penalty's apply, the loss) met the
              // diverged weights first: say so, with the check's own words.
              // Weights can also stay finite while the logits overflow: the
              // loss check reports that as a non-finite loss
              throw diverged(nonfinite(), "during the task", err.what());
            } catch (const hfisher::Error& err) {
              const long bad = nonfinite();  // another check, but on diverged weights
              if (bad == 0) throw;
              throw diverged(bad, "during the task", err.what());
            }
            // a diverged model is never evaluated and reported as a result
            if (const long bad = nonfinite(); bad > 0)
              throw diverged(bad, "after " + std::to_string(o.epochs) + " epoch(s)", "");
            r.train_seconds.push_back(comm.max(seconds_since(t0) - eval_s));
            r.train_examples += double(o.epochs) * train[t].size();
            double cons = 0;
            if (pen) {
              // a consolidation that took a while before gets a line first
              if (!r.consolidate_seconds.empty() && r.consolidate_seconds.back() >= 5)
                say("[%-12s] task %2d/%d: consolidating (%s Fisher, last took %.0f s)\n", label.c_str(), t + 1, T,
                    o.fisher_kind.c_str(), r.consolidate_seconds.back());
              pen->consolidate(model, train[t], comm);
              cons = pen->last_consolidation_seconds();
              if (o.probe_anchors && method == Method::EWC && t > 0)
                probe_anchors(oc, label, t, model, *pen, test, masks, (train[t].size() + o.batch - 1) / o.batch);
            }
            if (replay) replay->add_task(train[t], masks[t]);
            r.consolidate_seconds.push_back(cons);
            // the memory a method keeps across tasks: the penalty's Fisher, or replay's examples
            r.fisher_bytes.push_back(pen ? double(pen->bytes()) : replay ? double(replay->bytes()) : 0.0);
            for (int j = 0; j < T; ++j) r.R.set(t, j, hfisher::dist::accuracy(model, test[j], masks[j], comm));
            // V(t, t) is the curve's last point: consolidation, replay and the
            // anchor probe leave the weights as the last epoch left them
            if (o.validation > 0)
              for (int j = 0; j < T; ++j)
                r.V.set(t, j, j == t ? r.curve.back() : hfisher::dist::accuracy(model, val[j], masks[j], comm));
            r.done = t + 1;
            double spent = 0;  // this run's seconds so far (tasks resumed from a checkpoint included)
            for (int q = 0; q <= t; ++q) spent += r.train_seconds[q] + r.consolidate_seconds[q];
            say("[%-12s] task %2d/%d: loss %.4f, learned (acc on it) %.4f, ACC %.4f, BWT %+.4f | train %.1f s "
                "(%.0f ex/s), consolidate %.2f s, Fisher %.2f MB, ETA %.0f s\n",
                label.c_str(), t + 1, T, loss, r.R(t, t), r.R.acc(t), r.R.bwt(t), r.train_seconds.back(),
                o.epochs * train[t].size() / r.train_seconds.back(), cons, r.fisher_bytes.back() / 1e6,
                spent / (t + 1) * (T - t - 1));
            if (comm.root()) save_checkpoint(ckpt, key, r, model, pen.get());
            comm.barrier();  // the checkpoint is on disk before any rank goes on (or stops)
            // testing hook: simulate an interruption after N finished tasks of this method
            if (const char* stop = std::getenv("HFISHER_CONTINUAL_STOP_AFTER"); stop && std::atoi(stop) == t + 1) {
              say("HFISHER_CONTINUAL_STOP_AFTER=%s: stopping as if interrupted\n", stop);
              std::exit(3);
            }
          }
        } catch (const Diverged& d) {
          if (!grid) throw;
          say("%s\n[%-12s] diverged: left out of the selection\n", d.what(), label.c_str());
          r.diverged = true;
        }
        results.push_back(std::move(r));
      }
    }
  }
  if (!comm.root()) return 0;  // rank 0 reports and writes the files
  // --lambda-grid / --gamma-grid / --lr-grid: each method's (lambda, gamma,
  // lr) is the candidate with the best final ACC on the validation examples,
  // averaged over the seeds (the first on a tie; a candidate that diverged
  // on any seed is never chosen); only the chosen runs enter the table, the
  // summary and the plots
  struct Selection {
    Method method;
    std::vector<Candidate> cands;
    std::vector<double> val_acc;  ///< per candidate (NaN: diverged)
    Candidate chosen;
  };
  std::vector<Selection> selections;
  auto same = [](const MethodResult& r, const Candidate& c) {
    return r.lambda == c.lambda && r.gamma == c.gamma && r.lr == c.lr;
  };
  if (any_grid(o)) {
    std::vector<MethodResult> kept;
    for (const auto& m : o.methods) {
      Selection sel{m, candidates(o, m), {}, candidates(o, m)[0]};
      if (method_has_grid(o, m)) {
        double best = -1;
        for (const auto& c : sel.cands) {
          double acc = 0;
          int n = 0;
          bool bad = false;
          for (const auto& r : results)
            if (r.method == m && same(r, c)) {
              ++n;
              if (r.diverged)
                bad = true;  // its matrices are incomplete
              else
                acc += r.V.acc(T - 1);
            }
          sel.val_acc.push_back(bad ? std::nan("") : acc / n);
          if (!bad && acc / n > best) best = acc / n, sel.chosen = c;
        }
        hfisher::detail::require(best >= 0, "hfisher-continual", name(m),
                                 ": every candidate diverged (lower --lr-grid or --lambda-grid)");
        selections.push_back(sel);
      }
      for (const auto& r : results)
        if (r.method == m && (!method_has_grid(o, m) || same(r, sel.chosen))) kept.push_back(r);
    }
    std::printf(
        "\n(lambda[, gamma][, lr]) chosen on %d validation examples per task (final validation ACC, mean "
        "over %d seed(s)):\n",
        o.validation, o.seeds);
    for (const auto& sel : selections) {
      std::printf("  %-14s", name(sel.method));
      for (std::size_t c = 0; c < sel.cands.size(); ++c) {
        const std::string cname = candidate_name(o, sel.method, sel.cands[c], false);
        const std::string v = std::isfinite(sel.val_acc[c]) ? fixed4(sel.val_acc[c]) : "diverged";
        std::printf("  %s: %s%s", cname.substr(cname.find('@') + 1).c_str(), v.c_str(),
                    sel.cands[c] == sel.chosen ? " <" : "");
      }
      std::printf("\n");
    }
    results = std::move(kept);
  }
  auto lambda_in_results = [&](Method m) {  // the lambda a method's reported runs used
    for (const auto& r : results)
      if (r.method == m) return r.lambda;
    return 0.0;
  };
  // methods in order, and the runs (one per seed) of each
  std::vector<Method> names;
  for (const auto& r : results)
    if (std::find(names.begin(), names.end(), r.method) == names.end()) names.push_back(r.method);
  auto runs_of = [&](Method m) {
    std::vector<const MethodResult*> v;
    for (const auto& r : results)
      if (r.method == m) v.push_back(&r);
    return v;
  };
  auto total = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); };
  // mean and sample standard deviation of f over the runs of a method
  auto stats = [&](Method m, auto&& f) {
    std::vector<double> v;
    for (const auto* r : runs_of(m)) v.push_back(f(*r));
    return mean_std(v);
  };
  // intransigence: against the fine-tuning run of the same seed (NaN without one)
  auto intrans = [&](const MethodResult& r, int t) {
    for (const auto& q : results)
      if (q.method == Method::Finetune && q.seed == r.seed) return r.R.intransigence(t, q.R);
    return std::numeric_limits<double>::quiet_NaN();
  };
  const bool has_ref = std::find(names.begin(), names.end(), Method::Finetune) != names.end();
  auto num = [](double v) {  // JSON number or null
    std::ostringstream x;
    if (std::isfinite(v))
      x << v;
    else
      x << "null";
    return x.str();
  };
  // table: one row per run, then mean +- std per method when there are several seeds
  std::printf(
      "\nLA: learning accuracy, mean of R(j, j) (how well each task was learned when it was new);\n"
      "intrans.: mean of R_finetune(j, j) - R(j, j)%s\n",
      has_ref ? "" : " (needs --method finetune in the run)");
  std::printf("\n%-14s %5s %7s %8s %8s %11s %8s %9s %12s %15s %10s %10s\n", "method", "seed", "lambda", "ACC", "BWT",
              "forgetting", "LA", "intrans.", "Fisher MB", "consolidate s", "train s", "train ex/s");
  for (const auto& r : results) {
    const double cs = total(r.consolidate_seconds), ts = total(r.train_seconds);
    std::printf("%-14s %5llu %7g %8.4f %+8.4f %11.4f %8.4f %+9.4f %12.2f %15.2f %10.1f %10.0f\n", name(r.method),
                (unsigned long long)r.seed, r.lambda, r.R.acc(T - 1), r.R.bwt(T - 1), r.R.forgetting(T - 1),
                r.R.learning_accuracy(T - 1), intrans(r, T - 1), r.fisher_bytes.back() / 1e6, cs / T, ts,
                r.train_examples / ts);
  }
  if (o.seeds > 1) {
    std::printf("\nmean +- std over %d seeds\n%-14s %17s %17s %17s %17s %18s %12s %15s\n", o.seeds, "method", "ACC",
                "BWT", "forgetting", "LA", "intrans.", "Fisher MB", "consolidate s");
    for (const auto& m : names) {
      const auto acc = stats(m, [&](const MethodResult& r) { return r.R.acc(T - 1); });
      const auto bwt = stats(m, [&](const MethodResult& r) { return r.R.bwt(T - 1); });
      const auto fgt = stats(m, [&](const MethodResult& r) { return r.R.forgetting(T - 1); });
      const auto la = stats(m, [&](const MethodResult& r) { return r.R.learning_accuracy(T - 1); });
      const auto in = stats(m, [&](const MethodResult& r) { return intrans(r, T - 1); });
      const auto mb = stats(m, [&](const MethodResult& r) { return r.fisher_bytes.back() / 1e6; });
      const auto cs = stats(m, [&](const MethodResult& r) { return total(r.consolidate_seconds) / T; });
      std::printf("%-14s %8.4f +- %.4f %+8.4f +- %.4f %8.4f +- %.4f %8.4f +- %.4f %+8.4f +- %.4f %12.2f %15.2f\n",
                  name(m), acc.first, acc.second, bwt.first, bwt.second, fgt.first, fgt.second, la.first, la.second,
                  in.first, in.second, mb.first, cs.first);
    }
  }
  // --validation with several epochs: the learning curve (validation
  // accuracy of each task after each epoch, against seconds of training
  // into the task), and with --target-accuracy the training time each
  // method needed to reach those accuracies
  if (o.validation > 0 && o.epochs > 1) {
    std::printf(
        "\nlearning curve: validation accuracy on the task being learned after each epoch, and seconds of "
        "training into the task (mean over %d task(s) and %d seed(s))\n%-14s",
        T, o.seeds, "method");
    for (int e = 0; e < o.epochs; ++e) std::printf(" %15s", ("epoch " + std::to_string(e + 1)).c_str());
    std::printf("\n");
    for (const auto& m : names) {
      std::printf("%-14s", name(m));
      for (int e = 0; e < o.epochs; ++e) {
        double acc = 0, sec = 0;
        int n = 0;
        for (const auto* r : runs_of(m))
          for (int t = 0; t < T; ++t, ++n) {
            acc += r->curve_at(t, e, o.epochs, 2);
            sec += r->curve_at(t, e, o.epochs, 0);
          }
        std::printf(" %7.4f %6.2fs", acc / n, sec / n);
      }
      std::printf("\n");
    }
  }
  // a run's time to a target: its seconds to reach it, summed over the
  // tasks (NaN when a task never reached it)
  auto time_to = [&](const MethodResult& r, double target) {
    double s = 0;
    for (int t = 0; t < T; ++t) s += r.seconds_to(t, o.epochs, target);
    return s;
  };
  if (!o.targets.empty()) {
    std::printf(
        "\nseconds of training until the validation accuracy of every task first reached the target "
        "(summed over the %d task(s); mean +- std over the seeds that reached it; checked after each epoch)\n"
        "%-14s",
        T, "method");
    for (double g : o.targets) std::printf(" %24s", ("target " + fixed4(g)).c_str());
    std::printf("\n");
    for (const auto& m : names) {
      std::printf("%-14s", name(m));
      for (double g : o.targets) {
        std::vector<double> v;
        const auto runs = runs_of(m);
        for (const auto* r : runs)
          if (const double x = time_to(*r, g); std::isfinite(x)) v.push_back(x);
        const auto [mean, sd] = mean_std(v);
        char cell[64];
        if (v.empty())
          std::snprintf(cell, sizeof cell, "not reached");
        else
          std::snprintf(
              cell, sizeof cell, "%.2f +- %.2f%s", mean, sd,
              v.size() < runs.size() ? hfisher::detail::concat(" (", v.size(), "/", runs.size(), ")").c_str() : "");
        std::printf(" %24s", cell);
      }
      std::printf("\n");
    }
  }
  // files
  std::ostringstream csv, js, gp, ccsv;
  ccsv << "method,seed,task,epoch,train_s,loss,validation_accuracy\n";
  csv << "method,seed,after_task,ACC,BWT,forgetting,LA,intransigence,fisher_bytes,consolidate_s,train_s\n";
  char date[64];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  js << "{\n  \"date\": \"" << date << "\",\n  \"libraries\": " << libraries_json() << ",\n  \"backend\": \""
     << E::name() << "\",\n  \"threads\": " << E().concurrency() << ",\n  \"ranks\": " << comm.size()
     << ",\n  \"stream\": \"" << o.stream << "\",\n  \"scenario\": \"" << o.scenario << "\",\n  \"tasks\": " << T
     << ",\n  \"seeds\": " << o.seeds << ",\n";
  // every setting that changes the results, so a run can be repeated from this file alone
  js << "  \"settings\": {\"hfisher_version\": \"" << hfisher::version() << "\", \"commit\": \"" << hfisher::commit()
     << "\", \"seed\": " << o.seed << ", \"optimizer\": \"" << o.optimizer << "\", \"lr\": " << o.lr
     << ", \"epochs\": " << o.epochs << ", \"batch\": " << o.batch
     << ", \"keep_optimizer_state\": " << (o.keep_optimizer_state ? "true" : "false") << ", \"model\": \"" << o.model
     << "\", \"model_layers\": " << hfisher::io::json_string(model_text) << ", \"parameters\": " << num_params
     << ", \"widths\": [";
  if (is_mlp)
    for (std::size_t l = 0; l < widths.size(); ++l) js << (l ? ", " : "") << widths[l];
  js << "], \"train_examples\": " << o.train_examples << ", \"test_examples\": " << o.test_examples
     << ", \"fisher_examples\": " << o.fisher_examples << ", \"fisher_kind\": \"" << o.fisher_kind
     << "\", \"lambda\": {";
  for (std::size_t k = 0; k < names.size(); ++k)
    js << (k ? ", " : "") << "\"" << name(names[k]) << "\": " << lambda_in_results(names[k]);
  js << "}, \"gamma\": " << o.gamma << ", \"damping\": " << o.damping << ", \"hierarchical_structure\": \""
     << o.hstructure << "\", \"levels\": " << o.levels << ", \"level_rank\": [";
  for (std::size_t l = 0; l < o.level_rank.size(); ++l) js << (l ? ", " : "") << o.level_rank[l];
  js << "], \"branching\": " << o.branching << ", \"tol\": " << o.tol << ", \"leaf\": " << o.leaf
     << ", \"max_rank\": " << o.max_rank << ", \"spd_compensation\": " << (o.spd ? "true" : "false")
     << ", \"rank\": " << o.rank << ", \"power_steps\": " << o.power_steps << ", \"oversampling\": " << o.oversampling
     << ", \"data\": " << hfisher::io::json_string(o.data)
     << ", \"probe_anchors\": " << (o.probe_anchors ? "true" : "false")
     << ", \"replay_examples\": " << o.replay_examples << ", \"memory_budget_bytes\": " << o.memory_budget
     << ", \"validation_examples\": " << o.validation << ", \"lambda_grid\": [";
  for (std::size_t c = 0; c < o.lambda_grid.size(); ++c) js << (c ? ", " : "") << o.lambda_grid[c];
  js << "], \"gamma_grid\": [";
  for (std::size_t c = 0; c < o.gamma_grid.size(); ++c) js << (c ? ", " : "") << o.gamma_grid[c];
  js << "], \"lr_grid\": [";
  for (std::size_t c = 0; c < o.lr_grid.size(); ++c) js << (c ? ", " : "") << o.lr_grid[c];
  js << "], \"target_accuracy\": [";
  for (std::size_t c = 0; c < o.targets.size(); ++c) js << (c ? ", " : "") << o.targets[c];
  js << "]},\n  \"selection\": [";
  for (std::size_t k = 0; k < selections.size(); ++k) {
    const auto& sel = selections[k];
    js << (k ? ", " : "") << "{\"method\": \"" << name(sel.method) << "\", \"validation_ACC\": [";
    for (std::size_t c = 0; c < sel.val_acc.size(); ++c)
      js << (c ? ", " : "") << num(sel.val_acc[c]);  // null: diverged
    js << "], \"lambda\": [";
    for (std::size_t c = 0; c < sel.cands.size(); ++c) js << (c ? ", " : "") << sel.cands[c].lambda;
    js << "]";
    if (sel.method == Method::OnlineEWC) {  // the only penalty with a decay
      js << ", \"gamma\": [";
      for (std::size_t c = 0; c < sel.cands.size(); ++c) js << (c ? ", " : "") << sel.cands[c].gamma;
      js << "]";
    }
    js << ", \"lr\": [";
    for (std::size_t c = 0; c < sel.cands.size(); ++c) js << (c ? ", " : "") << sel.cands[c].lr;
    js << "], \"chosen_lambda\": " << sel.chosen.lambda;
    if (sel.method == Method::OnlineEWC) js << ", \"chosen_gamma\": " << sel.chosen.gamma;
    js << ", \"chosen_lr\": " << sel.chosen.lr << "}";
  }
  js << "],\n  \"summary\": [\n";
  for (std::size_t k = 0; k < names.size(); ++k) {
    const auto acc = stats(names[k], [&](const MethodResult& r) { return r.R.acc(T - 1); });
    const auto fgt = stats(names[k], [&](const MethodResult& r) { return r.R.forgetting(T - 1); });
    const auto bwt = stats(names[k], [&](const MethodResult& r) { return r.R.bwt(T - 1); });
    const auto la = stats(names[k], [&](const MethodResult& r) { return r.R.learning_accuracy(T - 1); });
    const auto in = stats(names[k], [&](const MethodResult& r) { return intrans(r, T - 1); });
    js << "    {\"method\": \"" << name(names[k]) << "\", \"ACC_mean\": " << acc.first
       << ", \"ACC_std\": " << acc.second << ", \"BWT_mean\": " << bwt.first << ", \"BWT_std\": " << bwt.second
       << ", \"forgetting_mean\": " << fgt.first << ", \"forgetting_std\": " << fgt.second
       << ", \"LA_mean\": " << la.first << ", \"LA_std\": " << la.second
       << ", \"intransigence_mean\": " << num(in.first) << ", \"intransigence_std\": " << num(in.second) << "}"
       << (k + 1 < names.size() ? "," : "") << "\n";
  }
  js << "  ],\n  \"methods\": [\n";
  for (std::size_t k = 0; k < results.size(); ++k) {
    const auto& r = results[k];
    std::ostringstream mcsv;
    for (int i = 0; i < T; ++i) {
      const double in = intrans(r, i);
      csv << name(r.method) << "," << r.seed << "," << i + 1 << "," << r.R.acc(i) << "," << r.R.bwt(i) << ","
          << r.R.forgetting(i) << "," << r.R.learning_accuracy(i) << "," << (std::isfinite(in) ? num(in) : "") << ","
          << r.fisher_bytes[i] << "," << r.consolidate_seconds[i] << "," << r.train_seconds[i] << "\n";
      for (int j = 0; j < T; ++j) mcsv << r.R(i, j) << (j + 1 < T ? " " : "\n");
    }
    if (r.seed == o.seed)  // heatmaps of the first seed
      hfisher::io::atomic_write(o.output + "/R_" + name(r.method) + ".dat", "hfisher-continual",
                                [&](std::ostream& f) { f << mcsv.str(); });
    js << "    {\"method\": \"" << name(r.method) << "\", \"seed\": " << r.seed << ", \"lambda\": " << r.lambda;
    if (r.method == Method::OnlineEWC) js << ", \"gamma\": " << r.gamma;
    js << ", \"ACC\": " << r.R.acc(T - 1) << ", \"BWT\": " << r.R.bwt(T - 1)
       << ", \"forgetting\": " << r.R.forgetting(T - 1) << ", \"LA\": " << r.R.learning_accuracy(T - 1)
       << ", \"intransigence\": " << num(intrans(r, T - 1)) << ", \"lr\": " << r.lr
       << ", \"fisher_bytes\": " << r.fisher_bytes.back()
       << ", \"train_examples_per_s\": " << r.train_examples / total(r.train_seconds)
       << ", \"validation_ACC\": " << (o.validation > 0 ? num(r.V.acc(T - 1)) : "null");
    if (!o.targets.empty()) {
      js << ", \"seconds_to_target\": [";
      for (std::size_t c = 0; c < o.targets.size(); ++c) js << (c ? ", " : "") << num(time_to(r, o.targets[c]));
      js << "]";
    }
    // the learning curve: per task, per epoch [train_s, loss, validation accuracy]
    js << ", \"curve\": ";
    if (o.validation > 0) {
      js << "[";
      for (int t = 0; t < T; ++t) {
        js << (t ? ", " : "") << "[";
        for (int e = 0; e < o.epochs; ++e) {
          js << (e ? ", " : "") << "[";
          for (int f = 0; f < MethodResult::curve_fields; ++f)
            js << (f ? ", " : "") << num(r.curve_at(t, e, o.epochs, f));
          js << "]";
          ccsv << name(r.method) << "," << r.seed << "," << t + 1 << "," << e + 1 << ","
               << r.curve_at(t, e, o.epochs, 0) << "," << r.curve_at(t, e, o.epochs, 1) << ","
               << r.curve_at(t, e, o.epochs, 2) << "\n";
        }
        js << "]";
      }
      js << "]";
    } else {
      js << "null";
    }
    js << ", \"R\": [";
    for (int i = 0; i < T; ++i) {
      js << "[";
      for (int j = 0; j < T; ++j) js << r.R(i, j) << (j + 1 < T ? ", " : "");
      js << "]" << (i + 1 < T ? ", " : "");
    }
    js << "]}" << (k + 1 < results.size() ? "," : "") << "\n";
  }
  js << "  ]\n}\n";
  // ACC after each task: mean and std over the seeds, one file per method
  for (const auto& m : names) {
    std::ostringstream a;
    for (int i = 0; i < T; ++i) {
      const auto st = stats(m, [&](const MethodResult& r) { return r.R.acc(i); });
      a << i + 1 << " " << st.first << " " << st.second << "\n";
    }
    hfisher::io::atomic_write(o.output + "/ACC_" + name(m) + ".dat", "hfisher-continual",
                              [&](std::ostream& f) { f << a.str(); });
  }
  // final ACC against the Fisher memory each method keeps (mean and std over
  // the seeds): the trade-off the penalties are compared on
  {
    std::ostringstream a;
    a << "# method Fisher_MB_mean Fisher_MB_std final_ACC_mean final_ACC_std (" << o.seeds << " seeds)\n";
    for (const auto& m : names) {
      const auto mb = stats(m, [&](const MethodResult& r) { return r.fisher_bytes.back() / 1e6; });
      const auto acc = stats(m, [&](const MethodResult& r) { return r.R.acc(T - 1); });
      a << name(m) << " " << mb.first << " " << mb.second << " " << acc.first << " " << acc.second << "\n";
    }
    hfisher::io::atomic_write(o.output + "/acc_memory.dat", "hfisher-continual",
                              [&](std::ostream& f) { f << a.str(); });
  }
  hfisher::io::atomic_write(o.output + "/results.csv", "hfisher-continual", [&](std::ostream& f) { f << csv.str(); });
  if (o.validation > 0)
    hfisher::io::atomic_write(o.output + "/curve.csv", "hfisher-continual", [&](std::ostream& f) { f << ccsv.str(); });
  hfisher::io::atomic_write(o.output + "/results.json", "hfisher-continual", [&](std::ostream& f) { f << js.str(); });
  const int n = int(names.size());
  gp << "# file names are relative: run gnuplot in this folder\n"
     << "set terminal pngcairo size " << 380 * n << ",420\nset output 'heatmaps.png'\n"
     << "set multiplot layout 1," << n << " title 'accuracy R[i,j] after task i (rows) on task j (" << o.stream
     << ", seed " << o.seed << ", " << date << ")'\nset cbrange [0:1]\nset palette rgbformulae 33,13,10\nunset key\n"
     << "set xlabel 'task j'\nset ylabel 'after task i'\nset yrange [" << T + 0.5
     << ":0.5]\nset xrange [0.5:" << T + 0.5 << "]\nset xtics 1\nset ytics 1\n";
  // tasks numbered from 1, as in the log and results.csv
  for (const auto& m : names)
    gp << "set title '" << name(m) << "'\nplot 'R_" << name(m) << ".dat' matrix using ($1+1):($2+1):3 with image\n";
  gp << "unset multiplot\nset terminal pngcairo size 700,450\nset output 'acc.png'\n"
     << "set title 'average accuracy over the tasks seen so far"
     << (o.seeds > 1 ? " (mean +- std, " + std::to_string(o.seeds) + " seeds)" : std::string()) << "'\n"
     << "set xlabel 'after task'\nset ylabel 'ACC'\nset key bottom left\nset autoscale\nset yrange [0:1]\n"
     << "set xrange [0.5:" << T + 0.5 << "]\nset xtics 1\nset ytics autofreq\nplot ";
  // one colour (Okabe-Ito, told apart also with colour-vision deficiencies) and one marker per method
  static const char* colours[] = {"#000000", "#E69F00", "#56B4E9", "#009E73",
                                  "#D55E00", "#0072B2", "#CC79A7", "#999999"};
  static const int markers[] = {1, 2, 4, 6, 8, 10, 12, 3};
  for (int k = 0; k < n; ++k)
    gp << "'ACC_" << name(names[k]) << ".dat' using 1:2:3 with yerrorlines lw 2 lc rgb '" << colours[k % 8] << "' pt "
       << markers[k % 8] << " title '" << name(names[k]) << "'" << (k + 1 < n ? ", " : "\n");
  gp << "set terminal pngcairo size 700,450\nset output 'acc_memory.png'\n"
     << "set title 'final ACC against Fisher memory after " << T << " tasks"
     << (o.seeds > 1 ? " (mean +- std, " + std::to_string(o.seeds) + " seeds)" : std::string()) << "'\n"
     << "set xlabel 'Fisher memory kept (MB)'\nset ylabel 'final ACC'\nset key bottom right\nset autoscale\n"
     << "set xrange [0:*]\nset offsets graph 0.02, graph 0.05, graph 0.1, graph 0.1\nset xtics autofreq\n"
     << "set ytics autofreq\nplot ";
  for (int k = 0; k < n; ++k)
    gp << "'acc_memory.dat' every ::" << k << "::" << k << " using 2:4:3:5 with xyerrorbars lw 2 ps 2 lc rgb '"
       << colours[k % 8] << "' pt " << markers[k % 8] << " title '" << name(names[k]) << "'"
       << (k + 1 < n ? ", " : "\n");
  hfisher::io::atomic_write(o.output + "/plots.gp", "hfisher-continual", [&](std::ostream& f) { f << gp.str(); });
  const bool plotted = hfisher::io::run_gnuplot(o.output, "plots.gp");
  std::printf(
      "\nwrote %s/results.json, results.csv%s, R_*.dat, ACC_*.dat, acc_memory.dat, plots.gp%s (%.1f s in all)\n",
      o.output.c_str(), o.validation > 0 ? ", curve.csv" : "", plotted ? ", heatmaps.png, acc.png, acc_memory.png" : "",
      seconds_since(t_all));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  hfisher_cli::openmp_defaults(argv);  // OMP_WAIT_POLICY=passive, OMP_PROC_BIND=false unless set
  hfisher::dist::Environment mpi(argc, argv);
  const auto guard = hfisher_cli::start_runtime(argc, argv, "hfisher-continual");  // bad Kokkos arguments: a message
  if (!guard) return 2;
  comm = hfisher::dist::Communicator::world();
  CLI::App app{"hfisher-continual: continual learning with Fisher penalties on Fashion-MNIST task streams"};
  hfisher_cli::show_defaults(app);
  Options o;
  app.add_option("--stream", o.stream, "permuted (pixel permutations) or split (class pairs)")
      ->check(CLI::IsMember({"permuted", "split"}));
  app.add_option("--scenario", o.scenario, "split streams: task (per-task heads) or class (class-incremental)")
      ->check(CLI::IsMember({"task", "class"}));
  app.add_option("--tasks", o.tasks, "number of tasks (split: at most 5)")->check(CLI::Range(1, 100));
  // parsed into Methods once, after the command line is read
  std::vector<std::string> method_args;
  for (Method m : o.methods) method_args.push_back(name(m));
  std::vector<std::string> all_methods;
  for (const auto& nm : hfisher::continual::method_names()) all_methods.push_back(nm.first);
  app.add_option("--method", method_args,
                 "repeatable: finetune, ewc, online-ewc, kfac-laplace, hierarchical, replay (experience replay: "
                 "--replay-examples of every finished task, a memory batch beside each batch)")
      ->check(CLI::IsMember(all_methods));
  app.add_option("--optimizer", o.optimizer, "sgd, adam, ngd (natural gradient, low-rank Fisher) or kfac")
      ->check(CLI::IsMember({"sgd", "adam", "ngd", "kfac"}));
  app.add_option("--output", o.output, "directory for JSON, CSV, plots and checkpoints")->check(hfisher_cli::NonEmpty);
  app.add_option("--epochs", o.epochs, "epochs per task")->check(CLI::Range(1, 1000));
  app.add_option("--batch", o.batch, "minibatch size")->check(CLI::Range(1, 1 << 16));
  app.add_option("--lr", o.lr,
                 "learning rate (default per optimizer: sgd " + fmt_default(default_lr("sgd")) + ", adam " +
                     fmt_default(default_lr("adam")) + ", ngd " + fmt_default(default_lr("ngd")) + ", kfac " +
                     fmt_default(default_lr("kfac")) + ")")
      ->check(hfisher_cli::FinitePositive)
      ->default_str("per optimizer");
  app.add_option("--lambda", o.lambda, "penalty strength lambda")->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--lambda-for", o.lambda_for, "repeatable METHOD=VALUE: lambda of one method (default: all --lambda)");
  app.add_option("--gamma", o.gamma, "online EWC decay in (0, 1]")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-6, 1.0));
  app.add_option("--model", o.model,
                 "mlp (ReLU layers of --hidden widths), cnn (two 5x5 convolution + max-pool blocks, linear 128, "
                 "linear; nn::small_cnn) or vit (a vision transformer: a 4 x 4 grid of patches as 16 tokens, 2 "
                 "attention blocks; nn::small_vit); cnn and vit take images whose sides are multiples of 4")
      ->check(CLI::IsMember({"mlp", "cnn", "vit"}));
  app.add_option("--hidden", o.hidden, "mlp: hidden layer widths")->check(CLI::Range(1, 1 << 14));
  app.add_option("--train-examples", o.train_examples, "training examples per task (split: of the whole set)")
      ->check(CLI::Range(1, 60000));
  app.add_option("--test-examples", o.test_examples, "test examples (split: of the whole set)")
      ->check(CLI::Range(1, 10000));
  app.add_option("--fisher-examples", o.fisher_examples, "examples per consolidation")->check(CLI::Range(1, 60000));
  app.add_option("--fisher-kind", o.fisher_kind,
                 "mc (one label per example sampled from the model: the Fisher of EWC and K-FAC; default), ggn "
                 "(exact expectation over the classes: R = classes samples per example) or empirical (the data's "
                 "labels)")
      ->check(CLI::IsMember(hfisher::fisher_kind_name_list()));
  app.add_option("--hierarchical-structure", o.hstructure,
                 "Fisher of the hierarchical penalty: multilevel (diag + nested low-rank terms, PSD by construction) "
                 "or hodlr (dense leaves, low-rank off-diagonal blocks)")
      ->check(CLI::IsMember({"multilevel", "hodlr"}))
      ->default_str("multilevel; cnn, vit: hodlr");
  app.add_option("--levels", o.levels, "multilevel: levels of nested low-rank terms per layer")
      ->check(CLI::Range(1, 16));
  app.add_option("--level-rank", o.level_rank, "multilevel: rank of each node's term (one value, or one per level)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--branching", o.branching, "multilevel: children per node (nodes split output units)")
      ->check(CLI::Range(2, 1024));
  app.add_option("--power-steps", o.power_steps,
                 "multilevel: power steps of the randomized eigensolver of each node (more: closer to the exact "
                 "directions, one more Gram product and QR each)")
      ->check(CLI::Range(0, 16));
  app.add_option("--oversampling", o.oversampling,
                 "multilevel: columns beyond the rank in the randomized eigensolver's block (-1: the rank + 8)")
      ->check(CLI::Range(-1, 4096));
  app.add_option("--tol", o.tol, "hierarchical compression tolerance (relative)")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-12, 0.9));
  app.add_option("--leaf", o.leaf, "hodlr: leaf size")->check(CLI::Range(2, 4096));
  app.add_option("--max-rank", o.max_rank, "hodlr: rank cap of off-diagonal blocks (a memory budget; 0: none)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--replay-examples", o.replay_examples,
                 "replay: training examples kept of every finished task (each step adds the mean loss gradient of "
                 "--batch of them, drawn uniformly, to the current batch's)")
      ->check(CLI::Range(1, 60000));
  app.add_option("--rank", o.rank, "rank of the ngd optimizer's low-rank Fisher")->check(CLI::Range(1, 4096));
  app.add_option("--damping", o.damping,
                 "damping of the ngd/kfac optimizers (default: ngd " + fmt_default(default_damping("ngd")) + ", kfac " +
                     fmt_default(default_damping("kfac")) + ")")
      ->check(hfisher_cli::FinitePositive);
  app.add_option("--seed", o.seed, "seed of initialization, permutations, shuffles")->check(hfisher_cli::Unsigned);
  app.add_option("--seeds", o.seeds, "number of seeds (seed, seed + 1, ...): the table adds mean +- std")
      ->check(CLI::Range(1, 100));
  app.add_flag("!--no-spd-compensation", o.spd,
               "hodlr: do not add the truncation error to the diagonal (the compressed Fisher may then be "
               "slightly indefinite, but is not stiffened)");
  app.add_option("--data", o.data, "directory of MNIST-format files (default: Debian's Fashion-MNIST)");
  hfisher_cli::add_memory_budget_option(app, o.memory_budget_gib);
  auto* resume = app.add_flag("--resume", o.resume,
                              "continue the run in --output from its checkpoints (same arguments and code version)");
  app.add_flag("--overwrite", o.overwrite, "remove the files of an earlier run in --output, then run")
      ->excludes(resume);
  app.add_option("--validation", o.validation,
                 "examples per task held out of its training set (the last ones) as validation data; 0: none")
      ->check(CLI::Range(0, 60000));
  app.add_option("--lambda-grid", o.lambda_grid,
                 "candidate lambdas: every penalty method runs each, and the one with the best final validation "
                 "ACC (mean over the seeds) is reported; needs --validation")
      ->check(hfisher_cli::FiniteNonNegative);
  app.add_option("--gamma-grid", o.gamma_grid,
                 "candidate online-EWC decays, chosen with lambda on validation data; needs --validation")
      ->check(CLI::Range(1e-6, 1.0));
  app.add_option("--lr-grid", o.lr_grid,
                 "candidate learning rates: every method (fine-tuning too) runs each, chosen with lambda and gamma "
                 "on validation data; a candidate whose training diverges is left out; needs --validation")
      ->check(hfisher_cli::FinitePositive);
  app.add_flag("--keep-optimizer-state", o.keep_optimizer_state,
               "sgd/adam: keep the optimizer's state (momentum, Adam's moments) from task to task instead of "
               "starting each task with a fresh optimizer");
  app.add_flag("--probe-anchors", o.probe_anchors,
               "ewc with sgd or adam: after each task also print the accuracy on the learned tasks at the "
               "penalty's minimiser and after one epoch of steps on the penalty alone (a diagnostic; "
               "docs/continual.md)");
  app.add_option("--target-accuracy", o.targets,
                 "validation accuracies: the table adds the seconds of training each method needed until every "
                 "task's validation accuracy reached each (time to accuracy; checked after each epoch); needs "
                 "--validation")
      ->check(CLI::Range(0.0, 1.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // every rank parses the same arguments: rank 0 prints help or the error
    if (comm.root()) return app.exit(e);
    return e.get_exit_code();
  }
  return hfisher::dist::guarded(comm, "hfisher-continual", [&] {
    o.methods.clear();
    for (const auto& m : method_args) o.methods.push_back(hfisher::continual::parse_method(m));
    // per-optimizer defaults: the library's (nn::SGD, nn::Adam,
    // NaturalGradientOptions and its kfac() preset)
    if (app.count("--lr") == 0) o.lr = default_lr(o.optimizer);
    if (app.count("--damping") == 0) o.damping = default_damping(o.optimizer);
    o.memory_budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
    for (const auto& kv : o.lambda_for) {
      const auto eq = kv.find('=');
      hfisher::detail::require(eq != std::string::npos, "hfisher-continual", "--lambda-for expects METHOD=VALUE, got '",
                               kv, "'");
      Method m = Method::Finetune;
      try {
        m = hfisher::continual::parse_method(kv.substr(0, eq));
      } catch (const hfisher::Error& e) {
        throw hfisher::Error(std::string("hfisher-continual: --lambda-for ") + kv + ": " + e.what());
      }
      hfisher::detail::require(is_penalty(m), "hfisher-continual", "--lambda-for ", kv, ": ", name(m),
                               " has no lambda (only the penalties ewc, online-ewc, kfac-laplace and hierarchical "
                               "do)");
      hfisher::detail::require(std::find(o.methods.begin(), o.methods.end(), m) != o.methods.end(), "hfisher-continual",
                               "--lambda-for ", kv, ": method '", name(m), "' is not run (add --method ", name(m), ")");
      (void)lambda_of(o, m);  // the value is checked there
    }
    if (o.model != "mlp") {
      hfisher::detail::require(app.count("--hidden") == 0, "hfisher-continual", "--hidden sets the widths of --model ",
                               "mlp; --model ", o.model, " has fixed layers (nn::small_", o.model, ")");
      // the multilevel structure takes linear layers (one position); a
      // convolution, and a transformer's token-wise projections, need HODLR
      if (app.count("--hierarchical-structure") == 0) o.hstructure = "hodlr";
      hfisher::detail::require(o.hstructure == "hodlr", "hfisher-continual", "--hierarchical-structure ", o.hstructure,
                               " takes linear layers only; the ",
                               o.model == "cnn" ? "convolutions of --model cnn" : "token-wise layers of --model vit",
                               " need --hierarchical-structure hodlr (the default "
                               "for cnn and vit)");
    }
    hfisher::detail::require(o.level_rank.size() == 1 || int(o.level_rank.size()) == o.levels, "hfisher-continual",
                             "--level-rank has ", o.level_rank.size(), " values for --levels ", o.levels,
                             " (give one, or one per level)");
    if (o.stream == "split")
      hfisher::detail::require(o.tasks <= 5, "hfisher-continual", "--tasks ", o.tasks,
                               " > 5: a split stream of 10 classes has at most 5 tasks");
    if (any_grid(o)) {
      hfisher::detail::require(o.validation > 0, "hfisher-continual",
                               "--lambda-grid, --gamma-grid and --lr-grid choose on validation data, never on the test "
                               "set: add --validation N (examples per task held out of training)");
      hfisher::detail::require(o.lambda_grid.empty() || o.lambda_for.empty(), "hfisher-continual",
                               "--lambda-grid and --lambda-for both set lambda: give one");
    }
    hfisher::detail::require(o.targets.empty() || o.validation > 0, "hfisher-continual",
                             "--target-accuracy is measured on validation data, never on the test set: add "
                             "--validation N (examples per task held out of training)");
    if (o.keep_optimizer_state) {
      hfisher::detail::require(o.optimizer == "sgd" || o.optimizer == "adam", "hfisher-continual",
                               "--keep-optimizer-state keeps sgd's or adam's state, not --optimizer ", o.optimizer);
      hfisher::detail::require(!o.resume, "hfisher-continual",
                               "--keep-optimizer-state with --resume: checkpoints do not hold the optimizer's state, "
                               "so the resumed run would differ from an uninterrupted one");
    }
    if (o.probe_anchors) {
      hfisher::detail::require(std::find(o.methods.begin(), o.methods.end(), Method::EWC) != o.methods.end(),
                               "hfisher-continual", "--probe-anchors probes EWC's per-task anchors: add --method ewc");
      hfisher::detail::require(o.optimizer == "sgd" || o.optimizer == "adam", "hfisher-continual",
                               "--probe-anchors steps with sgd or adam, not --optimizer ", o.optimizer);
    }
    return o.model == "mlp" ? run<hfisher::nn::MLP>(o) : run<hfisher::nn::Sequential>(o);
  });
}
