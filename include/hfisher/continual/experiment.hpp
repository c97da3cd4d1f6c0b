#pragma once
/// \file experiment.hpp
/// \brief A continual-learning experiment: every chosen method (fine-tuning,
/// the Fisher penalties, experience replay) trained on the same task stream
/// over Fashion-MNIST (or any MNIST-format files), at each candidate of the
/// lambda / gamma / learning-rate grids and each seed, with a checkpoint
/// after every task so that an interrupted run resumes to the same results.
/// Under MPI the ranks of `comm` split every batch, every Fisher estimate
/// and every test set; rank 0 writes the checkpoints and logs.
///
/// hfisher-continual is this loop behind a command line
/// (drivers/hfisher_continual.cpp); continual/report.hpp turns its results
/// into the selection, the tables and the files (JSON, CSV, plots).

#include <hfisher/continual/method.hpp>
#include <hfisher/continual/metrics.hpp>
#include <hfisher/continual/penalty.hpp>
#include <hfisher/continual/replay.hpp>
#include <hfisher/continual/streams.hpp>
#include <hfisher/core/comm.hpp>
#include <hfisher/core/error.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/version.hpp>
#include <hfisher/nn/data_parallel.hpp>
#include <hfisher/nn/idx.hpp>
#include <hfisher/nn/mlp.hpp>
#include <hfisher/nn/optimizers.hpp>
#include <hfisher/nn/presets.hpp>
#include <hfisher/nn/sequential.hpp>
#include <hfisher/optim/natural_gradient.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace hfisher {
namespace continual {

/// The Fisher options of the experiment's defaults (a default
/// FisherOptions with these): 200 examples, tolerance 1e-4, HODLR leaf 32
/// and rank cap 32 with SPD compensation, low-rank rank 32, multilevel of 2
/// levels of rank 8 with 100 children per node, 1 power step and
/// oversampling 8, a 4 GiB budget.
inline FisherOptions experiment_fisher_options() {
  FisherOptions f;
  f.examples = 200;
  f.set_tol(1e-4);
  f.compression.leaf = 32;
  f.compression.max_rank = 32;
  f.compression.spd_compensation = true;  // HODLR: a penalty stays convex, compressed Fishers stay PSD
  f.lowrank.rank = 32;
  f.multilevel.levels = 2;
  f.multilevel.rank = 8;
  f.multilevel.branching = 100;
  f.multilevel.power_steps = 1;
  f.multilevel.oversampling = 8;
  f.memory_budget = std::size_t(4) << 30;
  return f;
}

/// The rank of each multilevel level as --level-rank gives it: one value
/// (every level) or one per level.
inline std::vector<int> level_ranks(const MultilevelFisherOptions& m) {
  return m.ranks.empty() ? std::vector<int>{m.rank} : m.ranks;
}

/// Sets the multilevel ranks from --level-rank's values (one: every level).
inline void set_level_ranks(MultilevelFisherOptions& m, const std::vector<int>& r) {
  if (r.size() == 1) {
    m.rank = r[0];
    m.ranks.clear();
  } else {
    m.ranks = r;
  }
}

/// Everything that defines an experiment (hfisher-continual's options; the
/// command-line flag of each field is named beside it in the driver's help).
struct ExperimentOptions {
  std::string model = "mlp";  ///< mlp (--hidden), cnn (nn::small_cnn) or vit (nn::small_vit)
  std::string stream = "permuted", scenario = "task", optimizer = "adam", output = "results/continual", data;
  std::vector<Method> methods = {Method::Finetune, Method::EWC, Method::OnlineEWC, Method::KFACLaplace,
                                 Method::Hierarchical};
  int tasks = 10, epochs = 1, batch = 128, train_examples = 10000, test_examples = 2000;
  std::vector<int> hidden = {100, 100};
  double lr = 1e-3, lambda = 10.0, gamma = 0.9, damping = 1e-3;
  std::string fisher_kind = "mc";  ///< labels sampled from the model: the Fisher EWC and K-FAC define
  std::uint64_t seed = 1;
  int seeds = 1;                        ///< runs with seeds seed, seed + 1, ... (mean +- std in the table)
  std::vector<std::string> lambda_for;  ///< per-method overrides of lambda
  std::string hstructure =
      "multilevel";  ///< structure of the hierarchical penalty: multilevel or hodlr (cnn, vit: hodlr)
  /// How each consolidation estimates its Fisher, the flags bound to these
  /// fields directly: --fisher-examples (examples), --tol (set_tol),
  /// --leaf, --max-rank, --no-spd-compensation (compression), --rank
  /// (lowrank: the ngd optimizer's), --levels, --level-rank, --branching,
  /// --power-steps, --oversampling (multilevel), --memory-budget (also the
  /// whole run's budget). The seed of each run is its own.
  FisherOptions fisher = experiment_fisher_options();
  int replay_examples = 100;          ///< replay: examples kept of every finished task
  bool resume = false;                ///< continue the run in --output from its checkpoints
  bool overwrite = false;             ///< remove the earlier run's files in --output first
  int validation = 0;                 ///< examples per task held out of training for selecting lambda (0: none)
  std::vector<double> lambda_grid;    ///< candidate lambdas, each method's chosen on validation data
  std::vector<double> gamma_grid;     ///< candidate online-EWC decays, chosen with lambda
  std::vector<double> lr_grid;        ///< candidate learning rates (every method), chosen with lambda and gamma
  bool keep_optimizer_state = false;  ///< sgd/adam: one optimizer for the whole stream, not one per task
  bool probe_anchors = false;         ///< ewc: after each task, accuracy at the penalty's minimiser (docs/continual.md)
  std::vector<double> targets;        ///< --target-accuracy: validation accuracies whose training time is reported
};

/// The options of the natural-gradient optimizers by name: "kfac" (the
/// kfac() preset) or "ngd" (the default options).
inline NaturalGradientOptions natural_gradient_options(const std::string& optimizer) {
  return optimizer == "kfac" ? NaturalGradientOptions::kfac() : NaturalGradientOptions{};
}

/// `v` as `<<` prints it (6 significant digits): how lambdas, gammas and
/// learning rates are named in logs, checkpoint names and keys.
inline std::string format_default(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}
/// `v` with four decimals.
inline std::string format_fixed4(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", v);
  return b;
}
/// Mean and sample standard deviation (0 for fewer than two values).
inline std::pair<double, double> mean_std(const std::vector<double>& v) {
  double mean = 0, var = 0;
  for (double x : v) mean += x / v.size();
  for (double x : v) var += (x - mean) * (x - mean);
  return {mean, v.size() > 1 ? std::sqrt(var / (v.size() - 1)) : 0.0};
}

/// Everything that changes a run's results: a checkpoint is only resumed
/// under the same key (the code version first).
inline std::string run_key(const ExperimentOptions& o, Method method, std::uint64_t seed) {
  const FisherOptions& f = o.fisher;
  std::ostringstream k;
  k << "code=" << hfisher::commit() << "|v1|" << to_string(method) << "|" << o.stream << "|" << o.scenario << "|"
    << o.optimizer << "|" << o.tasks << "|" << o.epochs << "|" << o.batch << "|" << o.train_examples << "|"
    << o.test_examples << "|" << f.examples << "|" << o.lr << "|" << o.lambda << "|" << o.gamma << "|"
    << f.compression.tol << "|" << o.damping << "|" << o.fisher_kind << "|" << seed << "|" << f.compression.leaf << "|"
    << f.lowrank.rank << "|" << f.compression.max_rank << "|" << o.data;
  if (o.model == "mlp")
    for (int h : o.hidden) k << "|h" << h;
  else
    k << "|model=" << o.model;
  for (const auto& l : o.lambda_for) k << "|l" << l;
  if (!f.compression.spd_compensation) k << "|nospd";
  // FisherOptions fields no flag of the driver sets (a library caller may):
  // in the key when they differ from experiment_fisher_options()
  const FisherOptions d = experiment_fisher_options();
  if (f.batch != d.batch) k << "|fbatch" << f.batch;
  if (f.mc_samples != d.mc_samples) k << "|mc" << f.mc_samples;
  if (!f.layers.empty()) {
    k << "|layers";
    for (int l : f.layers) k << "," << l;
  }
  if (f.kfac.damping != d.kfac.damping) k << "|kfacdamping" << int(f.kfac.damping);
  if (f.kfac.variant != d.kfac.variant) k << "|kfacvariant" << int(f.kfac.variant);
  if (f.block != d.block) k << "|block" << int(f.block);
  if (f.matrix_free) k << "|matrixfree";
  // tolerances set apart (not through set_tol, as the driver does)
  if (f.lowrank.tol != f.compression.tol || f.multilevel.tol != f.compression.tol)
    k << "|tols" << f.lowrank.tol << "," << f.multilevel.tol;
  if (o.keep_optimizer_state) k << "|keepopt";
  if (o.validation > 0) k << "|val" << o.validation;
  if (method == Method::Replay) k << "|replay" << o.replay_examples;
  if (method == Method::Hierarchical)  // v1 keys (HODLR only) stay readable for --hierarchical-structure hodlr
    if (o.hstructure != "hodlr") {
      k << "|" << o.hstructure << "|" << f.multilevel.levels << "|" << f.multilevel.branching;
      for (int r : level_ranks(f.multilevel)) k << "|r" << r;
      k << "|q" << f.multilevel.power_steps << "|p"
        << f.multilevel.oversampling;  // keys without these held 2 steps, r + 8
    }
  return k.str();
}

/// The lambda of a penalty method: --lambda, or its --lambda-for override
/// (checked: METHOD=VALUE with a finite value >= 0).
inline double lambda_of(const ExperimentOptions& o, Method method) {
  double l = o.lambda;
  for (const auto& kv : o.lambda_for) {
    const auto eq = kv.find('=');
    hfisher::detail::require(eq != std::string::npos, "hfisher::continual::lambda_of",
                             "--lambda-for expects METHOD=VALUE, got '", kv, "'");
    if (kv.substr(0, eq) != to_string(method)) continue;
    char* end = nullptr;
    const std::string v = kv.substr(eq + 1);
    l = std::strtod(v.c_str(), &end);
    hfisher::detail::require(end && *end == '\0' && !v.empty() && l >= 0 && std::isfinite(l),
                             "hfisher::continual::lambda_of", "--lambda-for ", kv,
                             ": the value is not a finite number >= 0");
  }
  return l;
}

/// Whether any of the lambda / gamma / learning-rate grids is given.
inline bool any_grid(const ExperimentOptions& o) {
  return !o.lambda_grid.empty() || !o.gamma_grid.empty() || !o.lr_grid.empty();
}

/// Whether a method's candidates differ in gamma (online EWC with a gamma grid).
inline bool grid_varies_gamma(const ExperimentOptions& o, Method method) {
  return method == Method::OnlineEWC && !o.gamma_grid.empty();
}
/// Whether a method's candidates are named by lambda: a penalty method with
/// a lambda grid, or with a gamma grid (the pair is named).
inline bool grid_names_lambda(const ExperimentOptions& o, Method method) {
  return is_penalty(method) && (!o.lambda_grid.empty() || grid_varies_gamma(o, method));
}
/// Whether the grids give a method candidates to choose from.
inline bool method_has_grid(const ExperimentOptions& o, Method method) {
  return !o.lr_grid.empty() || grid_names_lambda(o, method);
}

/// One setting a method runs at.
struct Candidate {
  double lambda = 0, gamma = 1, lr = 0;
  bool operator==(const Candidate& c) const { return lambda == c.lambda && gamma == c.gamma && lr == c.lr; }
};

/// The candidates a method runs: the grids' product, or the values given.
inline std::vector<Candidate> candidates(const ExperimentOptions& o, Method method) {
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
inline std::string candidate_name(const ExperimentOptions& o, Method method, const Candidate& c, bool file) {
  if (!method_has_grid(o, method)) return to_string(method);
  const bool gl = grid_names_lambda(o, method), gg = grid_varies_gamma(o, method), gr = !o.lr_grid.empty();
  std::string n = to_string(method);
  if (file) {
    if (gl) n += "-lambda" + format_default(c.lambda);
    if (gg) n += "-gamma" + format_default(c.gamma);
    if (gr) n += "-lr" + format_default(c.lr);
    return n;
  }
  std::string v;
  if (gl) v += format_default(c.lambda);
  if (gg) v += "/" + format_default(c.gamma);
  if (gr) v += (v.empty() ? "lr" : "/lr") + format_default(c.lr);
  return n + "@" + v;
}

/// Checks the options as a whole before anything is read or trained, and
/// throws hfisher::Error naming the first problem (`where` starts the
/// message; options are named by their hfisher-continual flags): each value
/// in its range, the names known, and the combinations that cannot run (a
/// grid or a target accuracy without validation data, a split stream of
/// more than 5 tasks, --level-rank against --levels, --lambda-for of a
/// method that is not run or has no lambda, the multilevel structure on a
/// cnn or vit, --keep-optimizer-state with resume or a natural-gradient
/// optimizer, --probe-anchors without EWC or with a natural-gradient
/// optimizer). run_experiment calls it.
inline void validate(const ExperimentOptions& o, const char* where = "hfisher::continual::run_experiment") {
  using hfisher::detail::require;
  auto member = [&](const std::string& v, std::initializer_list<const char*> names, const char* flag) {
    std::string all;
    for (const char* n : names) {
      if (v == n) return;
      all += all.empty() ? n : std::string(", ") + n;
    }
    throw Error(hfisher::detail::concat(where, ": ", flag, " '", v, "' is not one of ", all));
  };
  member(o.model, {"mlp", "cnn", "vit"}, "--model");
  member(o.stream, {"permuted", "split"}, "--stream");
  member(o.scenario, {"task", "class"}, "--scenario");
  member(o.optimizer, {"sgd", "adam", "ngd", "kfac"}, "--optimizer");
  member(o.hstructure, {"multilevel", "hodlr"}, "--hierarchical-structure");
  (void)fisher_kind_from_string(o.fisher_kind, where);
  require(!o.methods.empty(), where, "no --method to run");
  require(!o.output.empty(), where, "--output is empty");
  require(o.fisher.memory_budget > 0, where, "memory_budget is 0");
  auto in = [&](long v, long lo, long hi, const char* flag) {
    require(v >= lo && v <= hi, where, flag, " ", v, " is outside [", lo, ", ", hi, "]");
  };
  in(o.tasks, 1, 100, "--tasks");
  in(o.epochs, 1, 1000, "--epochs");
  in(o.batch, 1, 1 << 16, "--batch");
  in(o.train_examples, 1, 60000, "--train-examples");
  in(o.test_examples, 1, 10000, "--test-examples");
  in(o.fisher.examples, 1, 60000, "--fisher-examples");
  in(o.seeds, 1, 100, "--seeds");
  in(o.validation, 0, 60000, "--validation");
  in(o.replay_examples, 1, 60000, "--replay-examples");
  const auto& ml = o.fisher.multilevel;
  in(o.fisher.compression.leaf, 2, 4096, "--leaf");
  in(o.fisher.lowrank.rank, 1, 4096, "--rank");
  in(o.fisher.compression.max_rank, 0, 4096, "--max-rank");
  in(ml.levels, 1, 16, "--levels");
  in(ml.branching, 2, 1024, "--branching");
  in(ml.power_steps, 0, 16, "--power-steps");
  in(ml.oversampling, -1, 4096, "--oversampling");
  for (int r : level_ranks(ml)) in(r, 1, 4096, "--level-rank");
  if (o.model == "mlp") {
    require(!o.hidden.empty(), where, "--hidden is empty (an MLP needs a hidden layer)");
    for (int h : o.hidden) in(h, 1, 1 << 14, "--hidden");
  }
  auto positive = [&](double v, const char* flag) {
    require(std::isfinite(v) && v > 0, where, flag, " ", v, " is not a finite number > 0");
  };
  auto non_negative = [&](double v, const char* flag) {
    require(std::isfinite(v) && v >= 0, where, flag, " ", v, " is not a finite number >= 0");
  };
  auto decay = [&](double v, const char* flag) {
    require(std::isfinite(v) && v >= 1e-6 && v <= 1, where, flag, " ", v, " is outside [1e-6, 1]");
  };
  positive(o.lr, "--lr");
  positive(o.damping, "--damping");
  non_negative(o.lambda, "--lambda");
  decay(o.gamma, "--gamma");
  for (double t : {o.fisher.compression.tol, o.fisher.lowrank.tol, ml.tol})
    require(std::isfinite(t) && t >= 1e-12 && t <= 0.9, where, "--tol ", t, " is outside [1e-12, 0.9]");
  for (double l : o.lambda_grid) non_negative(l, "--lambda-grid");
  for (double g : o.gamma_grid) decay(g, "--gamma-grid");
  for (double r : o.lr_grid) positive(r, "--lr-grid");
  for (double t : o.targets) require(t >= 0 && t <= 1, where, "--target-accuracy ", t, " is outside [0, 1]");
  for (const auto& kv : o.lambda_for) {
    const auto eq = kv.find('=');
    require(eq != std::string::npos, where, "--lambda-for expects METHOD=VALUE, got '", kv, "'");
    Method m = Method::Finetune;
    try {
      m = parse_method(kv.substr(0, eq));
    } catch (const Error& e) {
      throw Error(std::string(where) + ": --lambda-for " + kv + ": " + e.what());
    }
    require(is_penalty(m), where, "--lambda-for ", kv, ": ", to_string(m),
            " has no lambda (only the penalties ewc, online-ewc, kfac-laplace and hierarchical do)");
    require(std::find(o.methods.begin(), o.methods.end(), m) != o.methods.end(), where, "--lambda-for ", kv,
            ": method '", to_string(m), "' is not run (add --method ", to_string(m), ")");
    (void)lambda_of(o, m);  // the value is checked there
  }
  // the multilevel structure takes linear layers (one position); a
  // convolution, and a transformer's token-wise projections, need HODLR
  require(o.model == "mlp" || o.hstructure == "hodlr", where, "--hierarchical-structure ", o.hstructure,
          " takes linear layers only; the ",
          o.model == "cnn" ? "convolutions of --model cnn" : "token-wise layers of --model vit",
          " need --hierarchical-structure hodlr (the default for cnn and vit)");
  require(ml.ranks.empty() || int(ml.ranks.size()) == ml.levels, where, "--level-rank has ", ml.ranks.size(),
          " values for --levels ", ml.levels, " (give one, or one per level)");
  if (o.stream == "split")
    require(o.tasks <= 5, where, "--tasks ", o.tasks, " > 5: a split stream of 10 classes has at most 5 tasks");
  if (any_grid(o)) {
    require(o.validation > 0, where,
            "--lambda-grid, --gamma-grid and --lr-grid choose on validation data, never on the test set: add "
            "--validation N (examples per task held out of training)");
    require(o.lambda_grid.empty() || o.lambda_for.empty(), where,
            "--lambda-grid and --lambda-for both set lambda: give one");
  }
  require(o.targets.empty() || o.validation > 0, where,
          "--target-accuracy is measured on validation data, never on the test set: add --validation N (examples "
          "per task held out of training)");
  if (o.keep_optimizer_state) {
    require(o.optimizer == "sgd" || o.optimizer == "adam", where,
            "--keep-optimizer-state keeps sgd's or adam's state, not --optimizer ", o.optimizer);
    require(!o.resume, where,
            "--keep-optimizer-state with --resume: checkpoints do not hold the optimizer's state, so the resumed run "
            "would differ from an uninterrupted one");
  }
  if (o.probe_anchors) {
    require(std::find(o.methods.begin(), o.methods.end(), Method::EWC) != o.methods.end(), where,
            "--probe-anchors probes EWC's per-task anchors: add --method ewc");
    require(o.optimizer == "sgd" || o.optimizer == "adam", where,
            "--probe-anchors steps with sgd or adam, not --optimizer ", o.optimizer);
  }
}

/// A run whose weights, or whose loss, became NaN or infinite.
struct Diverged : Error {
  using Error::Error;
};

/// The results of one run: one method at one candidate and one seed.
struct RunResult {
  Method method = Method::Finetune;
  std::uint64_t seed = 1;
  AccuracyMatrix R;
  std::vector<double> train_seconds, consolidate_seconds, fisher_bytes;
  double train_examples = 0;  ///< examples processed by the optimizer (all tasks so far)
  int done = 0;
  double lambda = 0;      ///< the penalty's strength in this run
  double gamma = 1;       ///< online EWC's decay in this run
  double lr = 0;          ///< the optimizer's learning rate in this run
  bool diverged = false;  ///< a grid candidate whose training diverged (never selected)
  /// accuracy on each task's validation examples (--validation; rows 0..done-1)
  AccuracyMatrix V{1};
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

/// What an experiment gives back: every run (each method, candidate and
/// seed, in that order within each seed), and the model they trained.
struct ExperimentResults {
  std::vector<RunResult> runs;
  std::string model_text;   ///< e.g. "MLP 784 100 100 10" (log, results.json)
  std::vector<int> widths;  ///< the MLP's layer widths (empty for cnn and vit)
  long parameters = 0;
};

/// What the experiment reports while it runs (on rank 0 only).
struct ExperimentHooks {
  /// progress lines (empty: none)
  std::function<void(const std::string&)> log;
  /// called on every rank after a run's checkpoint of `tasks_done` tasks is
  /// on disk (hfisher-continual's interruption test stops there)
  std::function<void(int tasks_done)> after_checkpoint;
};

namespace detail {

/// printf into a string.
template <class... A>
std::string printf_string(const char* fmt, A... a) {
  const int n = std::snprintf(nullptr, 0, fmt, a...);
  std::string s(std::size_t(n > 0 ? n : 0) + 1, '\0');
  std::snprintf(s.data(), s.size(), fmt, a...);
  s.resize(std::size_t(n > 0 ? n : 0));
  return s;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The magic of a checkpoint (io::put_header: then the format version and
/// the scalar size; the same magic ends the file).
inline const char (&checkpoint_magic())[8] {
  static const char m[8] = {'H', 'F', 'C', 'K', 'P', 'T', '\0', '\1'};
  return m;
}
/// Version 2: the common header of core/io.hpp. Version 1 was the bare tag
/// "HFCKPT01" (refused by name: its key's code version could not match).
inline constexpr std::uint32_t checkpoint_version = 2;

/// Writes run r's state after r.done tasks (sealed, atomically).
template <class S, class E, class Model>
void save_checkpoint(const std::string& path, const std::string& key, const RunResult& r, const Model& model,
                     const FisherPenalty<S, E>* pen) {
  hfisher::io::atomic_write_sealed(path, "hfisher::continual: checkpoint", [&](std::ostream& o) {
    hfisher::io::put_header(o, checkpoint_magic(), checkpoint_version, sizeof(S));
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
    o.write(checkpoint_magic(), 8);
  });
}

// returns false when there is no checkpoint; throws on a foreign or corrupt one
template <class S, class E, class Model>
bool load_checkpoint(const std::string& path, const std::string& key, int epochs, RunResult& r, Model& model,
                     FisherPenalty<S, E>* pen) {
  if (!std::filesystem::exists(path)) return false;
  constexpr const char* where = "hfisher::continual: checkpoint";
  hfisher::io::SealedFile file(path, where);  // checksum verified first: a flipped bit is refused
  std::istream& i = file.stream();
  const auto version =
      hfisher::io::expect_header_or_legacy(i, checkpoint_magic(), "HFCKPT01", checkpoint_version, checkpoint_version,
                                           sizeof(S), path, where, "an hfisher checkpoint");
  hfisher::detail::require(version != 0, where, path,
                           " is a checkpoint of an earlier hfisher (format 1): rerun with --overwrite");
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
    hfisher::detail::require(nc == std::uint64_t(r.done) * epochs * RunResult::curve_fields, where, path,
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
  hfisher::io::expect_magic(i, checkpoint_magic(), path, where, "complete (the file is truncated)");
  file.expect_end();
  return true;
}

/// ||x - y||_2 (same length).
template <class Vector>
double l2_distance(const Vector& x, const Vector& y) {
  using E = typename Vector::execution_space;
  double d = 0;
  Kokkos::parallel_reduce(
      "hfisher::continual::l2_distance", Kokkos::RangePolicy<E>(0, x.extent(0)),
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
/// (The log is reached through hooks, not a lambda of the caller: a local
/// type may not be a template argument of a function with device lambdas.)
template <class S, class E, class Model>
void probe_anchors(const ExperimentOptions& o, const std::string& label, int t, Model& model,
                   const FisherPenalty<S, E>& pen, const std::vector<nn::DeviceData<S, E>>& test,
                   const std::vector<typename Model::Labels>& masks, int steps, const dist::Communicator& comm,
                   const ExperimentHooks& hooks) {
  using Vector = typename Model::Vector;
  const long P = model.num_params();
  Vector theta("theta", P), num("num", P), den("den", P);
  Kokkos::deep_copy(theta, model.params());
  for (int s = 0; s < pen.terms(); ++s) {
    const auto d = pen.fisher(s).diag();
    const auto a = pen.anchor(s);
    Kokkos::parallel_for(
        "hfisher::continual::probe", Kokkos::RangePolicy<E>(0, P), KOKKOS_LAMBDA(const long i) {
          num(i) += d(i) * a(i);
          den(i) += d(i);
        });
  }
  Kokkos::parallel_for(
      "hfisher::continual::probe_bar", Kokkos::RangePolicy<E>(0, P),
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
  if (comm.root() && hooks.log)
    hooks.log(
        printf_string("[%-12s] task %2d/%d probe: accuracy on tasks 1..%d at theta_t:%s | at the penalty's minimiser "
                      "(%.3g away):%s | "
                      "after %d %s steps on the penalty alone (moved %.3g):%s\n",
                      label.c_str(), t + 1, o.tasks, t + 1, at_t.c_str(), l2_distance(num, theta), at_bar.c_str(),
                      steps, o.optimizer.c_str(), moved, at_drift.c_str()));
}

}  // namespace detail

/// The layers of --model cnn or vit for images of shape `in`.
inline nn::Preset preset(const std::string& model, nn::ImageShape in, int classes) {
  return model == "cnn" ? hfisher::nn::small_cnn(in, classes) : hfisher::nn::small_vit(in, classes);
}

/// Bytes a run needs at its peak, estimated from the options: Fashion-MNIST
/// as loaded (70 000 images of 784 floats) and the chosen examples on the
/// device, the per-sample factors of one consolidation, and the largest
/// penalty of the chosen methods after the last task (EWC keeps every
/// task's anchor and diagonal, K-FAC Laplace every task's factors, the
/// hierarchical penalty its structure at the chosen ranks, replay its memory).
template <class S = float, class E = Kokkos::DefaultExecutionSpace>
double estimate_experiment_bytes(const ExperimentOptions& o) {
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
  const double samples = double(o.fisher.examples) * R * rows_cols * Sz;
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
      const auto& ml = o.fisher.multilevel;
      double r = 0;
      for (int x : level_ranks(ml)) r += x;
      if (ml.ranks.empty()) r *= ml.levels;
      const auto& c = o.fisher.compression;
      b = o.hstructure == "hodlr" ? 2.0 * P * (c.leaf + 2 * 12.0 * c.max_rank) * Sz : 3.0 * P * (1 + r) * Sz;
    } else if (m == Method::Replay)
      b = double(o.tasks) * o.replay_examples * (784 * Sz + 4);
    penalty = std::max(penalty, b);
  }
  return data + samples + penalty + 8 * P * Sz;  // + model, gradients and optimizer state
}

/// Runs the experiment: for each seed, each method and each of its
/// candidates, the tasks of the stream in turn (train, consolidate the
/// penalty or fill the replay memory, test on every task, checkpoint). With
/// o.resume, a run continues from its checkpoint in o.output/checkpoints
/// (which must exist) when that holds the same key. A grid candidate that
/// diverges is kept, marked diverged; a run without a grid that diverges
/// throws Diverged. Net: nn::MLP (o.model "mlp") or nn::Sequential (cnn, vit).
template <template <class, class> class Net, class S = float, class E = Kokkos::DefaultExecutionSpace>
ExperimentResults run_experiment(const ExperimentOptions& o, const dist::Communicator& comm,
                                 const ExperimentHooks& hooks = {}) {
  using Model = Net<S, E>;
  using Data = nn::DeviceData<S, E>;
  using Vector = typename Model::Vector;
  using Labels = typename Model::Labels;
  using detail::seconds_since;
  constexpr bool is_mlp = std::is_same_v<Model, nn::MLP<S, E>>;
  validate(o);
  hfisher::detail::require(is_mlp == (o.model == "mlp"), "hfisher::continual::run_experiment", "model '", o.model,
                           "' runs on ", o.model == "mlp" ? "nn::MLP" : "nn::Sequential", ", not on this Net");
  const auto say = [&](const char* fmt, auto... a) {
    if (comm.root() && hooks.log) hooks.log(detail::printf_string(fmt, a...));
  };
  auto train_all = hfisher::nn::load_mnist_dir(o.data, true);
  auto test_all = hfisher::nn::load_mnist_dir(o.data, false);
  train_all = hfisher::nn::slice(train_all, 0, std::min(o.train_examples, train_all.n));
  test_all = hfisher::nn::slice(test_all, 0, std::min(o.test_examples, test_all.n));
  const auto kind = o.stream == "permuted" ? StreamKind::Permuted : StreamKind::Split;
  const auto scen = o.scenario == "task" ? Scenario::TaskIncremental : Scenario::ClassIncremental;
  const int T = o.tasks, C = train_all.classes;
  std::vector<int> widths = {train_all.features};
  widths.insert(widths.end(), o.hidden.begin(), o.hidden.end());
  widths.push_back(C);
  // cnn, vit: the images' shape (an IDX file of (n, rows, cols) gives it)
  const hfisher::nn::ImageShape shape{1, train_all.height, train_all.width};
  hfisher::detail::require(is_mlp || (shape.height > 0 && shape.width > 0), "hfisher::continual::run_experiment",
                           "--model ", o.model, " takes images, but the training set in ",
                           o.data.empty() ? "the default folder" : o.data, " holds flat vectors of ",
                           train_all.features, " values (no rows x cols)");
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
  const auto fkind =
      hfisher::fisher_kind_from_string(o.fisher_kind, "hfisher::continual::run_experiment: --fisher-kind");
  ExperimentResults out;
  out.model_text = model_text;
  if constexpr (is_mlp) out.widths = widths;
  out.parameters = num_params;
  std::vector<RunResult>& results = out.runs;
  for (int si = 0; si < o.seeds; ++si) {
    const std::uint64_t seed = o.seed + std::uint64_t(si);
    auto stream = make_stream(train_all, test_all, kind, o.tasks, scen, seed);
    std::vector<Data> train, test, val;
    std::vector<Labels> masks;
    for (const auto& t : stream) {
      // --validation: the last examples of each task's training set, never trained on
      const int nv = o.validation, nt = t.train.n - nv;
      hfisher::detail::require(nt >= 1, "hfisher::continual::run_experiment", "--validation ", nv,
                               " leaves no training examples (a task has ", t.train.n, ")");
      hfisher::detail::require(o.fisher.examples <= nt, "hfisher::continual::run_experiment", "--fisher-examples ",
                               o.fisher.examples, " exceeds the ", nt, " training examples of task ", train.size() + 1,
                               " (the Fisher is estimated on a task's training examples)");
      if (std::find(o.methods.begin(), o.methods.end(), Method::Replay) != o.methods.end())
        hfisher::detail::require(o.replay_examples <= nt, "hfisher::continual::run_experiment", "--replay-examples ",
                                 o.replay_examples, " exceeds the ", nt, " training examples of task ",
                                 train.size() + 1, " (replay keeps that many of every task)");
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
    std::string lambdas = format_default(o.lambda);
    if (!o.lambda_grid.empty()) {
      lambdas = "chosen on " + std::to_string(o.validation) + " validation examples per task from";
      for (double l : o.lambda_grid) lambdas += " " + format_default(l);
    }
    if (!o.gamma_grid.empty()) {
      lambdas += "; online-ewc gamma chosen from";
      for (double g : o.gamma_grid) lambdas += " " + format_default(g);
    }
    std::string lrs = format_default(o.lr);
    if (!o.lr_grid.empty()) {
      lrs = "chosen from";
      for (double r : o.lr_grid) lrs += " " + format_default(r);
    }
    say("; optimizer %s (lr %s%s), %d epoch(s), batch %d; lambda %s; Fisher: %s from %d examples; backend %s, %d "
        "rank(s) x %d thread(s)\n",
        o.optimizer.c_str(), lrs.c_str(),
        o.optimizer == "ngd" || o.optimizer == "kfac" ? (", damping " + format_default(o.damping)).c_str() : "",
        o.epochs, o.batch, lambdas.c_str(), o.fisher_kind.c_str(), o.fisher.examples, E::name(), comm.size(),
        E().concurrency());
    hfisher::FisherOptions fo = o.fisher;
    fo.seed = seed;
    for (std::size_t mi = 0; mi < o.methods.size(); ++mi) {
      const Method method = o.methods[mi];
      // the (lambda, gamma, lr) candidates to run: the grids (each method's
      // choice is made on validation data after all seeds), or the values given
      const auto cands = candidates(o, method);
      const bool grid = method_has_grid(o, method);
      for (const auto& cand : cands) {
        const double lam = cand.lambda, gam = cand.gamma;
        ExperimentOptions oc = o;  // this run's options: its lambda, gamma and lr enter the checkpoint key
        const std::string label = candidate_name(o, method, cand, false);  // in the log
        if (grid) {
          oc.lambda = lam;
          oc.lambda_for.clear();
          oc.gamma = gam;
          oc.lr = cand.lr;
        }
        RunResult r{method, seed, AccuracyMatrix(T), {}, {}, {}, 0};
        r.lambda = lam;  // 0 for fine-tuning (its only candidate lambda)
        r.gamma = gam;
        r.lr = oc.lr;
        if (o.validation > 0) r.V = AccuracyMatrix(T);
        Model model = make_model(seed);
        std::unique_ptr<hfisher::FisherPenalty<S, E>> pen;
        if (is_penalty(method))
          pen = std::make_unique<hfisher::FisherPenalty<S, E>>(penalty_method(method), lam, gam, fkind, fo);
        if (pen && method == Method::Hierarchical)
          pen->set_structure(hfisher::structure_from_string(
              o.hstructure, "hfisher::continual::run_experiment: --hierarchical-structure"));
        // replay: the memory of the finished tasks (rebuilt on resume: its
        // examples depend only on the seed and the tasks)
        std::unique_ptr<ReplayMemory<S, E, Net>> replay;
        if (method == Method::Replay) replay = std::make_unique<ReplayMemory<S, E, Net>>(o.replay_examples, seed);
        const std::string ckpt = o.output + "/checkpoints/" + candidate_name(o, method, cand, true) +
                                 (o.seeds > 1 ? "-seed" + std::to_string(seed) : std::string()) + ".ckpt";
        const std::string key = run_key(oc, method, seed);
        if (o.resume && detail::load_checkpoint(ckpt, key, o.epochs, r, model, pen.get()))
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
              auto no = natural_gradient_options(o.optimizer);
              no.lr = oc.lr;
              no.damping = o.damping;
              no.fisher.lowrank.rank = o.fisher.lowrank.rank;
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
                  "hfisher::continual::run_experiment: ", label, ", task ", t + 1, ": training diverged (",
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
                      o.validation > 0 ? hfisher::detail::concat(", validation accuracy ", format_fixed4(va)).c_str()
                                       : "",
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
                detail::probe_anchors(oc, label, t, model, *pen, test, masks, (train[t].size() + o.batch - 1) / o.batch,
                                      comm, hooks);
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
            if (comm.root()) detail::save_checkpoint(ckpt, key, r, model, pen.get());
            comm.barrier();  // the checkpoint is on disk before any rank goes on (or stops)
            if (hooks.after_checkpoint) hooks.after_checkpoint(t + 1);
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
  return out;
}

}  // namespace continual
}  // namespace hfisher
