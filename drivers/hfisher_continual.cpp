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
// The experiment is the library's (hfisher/continual/experiment.hpp), and so
// are its tables and files (hfisher/continual/report.hpp): this program is
// their command line.
//
// Under MPI (mpirun -np P hfisher-continual ...) the ranks split every batch,
// every Fisher estimate and every test set (hfisher::dist); rank 0 prints and
// writes the files; all ranks read a checkpoint to resume; an error on any
// rank ends all of them with that rank's message.
#include <CLI/CLI.hpp>
#include <hfisher/continual/experiment.hpp>
#include <hfisher/continual/report.hpp>
#include <hfisher/hfisher.hpp>

#include "cli_checks.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using S = float;
using E = Kokkos::DefaultExecutionSpace;
using hfisher::continual::ExperimentOptions;
using hfisher::continual::format_default;
using hfisher::continual::Method;

/// The library's default learning rate and damping of each optimizer.
double default_lr(const std::string& optimizer) {
  if (optimizer == "sgd") return hfisher::nn::SGD<S, E>{}.lr;
  if (optimizer == "adam") return hfisher::nn::Adam<S, E>{}.lr;
  return hfisher::continual::natural_gradient_options(optimizer).lr;
}
double default_damping(const std::string& optimizer) {
  return hfisher::continual::natural_gradient_options(optimizer).damping;
}

/// The name a method prints as (results, tables, checkpoint keys).
const char* name(Method m) { return hfisher::continual::to_string(m); }

/// Net: nn::MLP (--model mlp) or nn::Sequential (cnn, vit).
template <template <class, class> class Net>
int run(const ExperimentOptions& o, const hfisher::dist::Communicator& comm) {
  const hfisher::continual::ReportContext ctx{E::name(), E().concurrency(), comm.size(),
                                              std::chrono::steady_clock::now()};
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // the output folder is checked (non-empty, not "/", creatable, writable)
  // before any data is read or any network trained
  if (comm.root()) {
    hfisher::io::prepare_output_dir(o.output, "hfisher-continual: --output");
    hfisher::io::prepare_output_dir(o.output + "/checkpoints", "hfisher-continual: --output");
    hfisher::continual::claim_output(o);
  }
  hfisher_cli::check_memory(hfisher::continual::estimate_experiment_bytes<S, E>(o), o.fisher.memory_budget,
                            "hfisher-continual",
                            "this run (the data, one consolidation's per-sample factors and the largest penalty)");
  comm.barrier();
  hfisher::continual::ExperimentHooks hooks;
  hooks.log = [](const std::string& line) { std::fputs(line.c_str(), stdout); };
  // testing hook: simulate an interruption after N finished tasks of a run
  hooks.after_checkpoint = [&](int tasks_done) {
    if (const char* stop = std::getenv("HFISHER_CONTINUAL_STOP_AFTER"); stop && std::atoi(stop) == tasks_done) {
      if (comm.root()) std::printf("HFISHER_CONTINUAL_STOP_AFTER=%s: stopping as if interrupted\n", stop);
      std::exit(3);
    }
  };
  auto ex = hfisher::continual::run_experiment<Net, S, E>(o, comm, hooks);
  if (!comm.root()) return 0;  // rank 0 reports and writes the files
  const auto selections = hfisher::continual::select_candidates(o, ex);
  hfisher::continual::report_experiment(o, ex, selections, ctx);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  hfisher_cli::openmp_defaults(argv);  // OMP_WAIT_POLICY=passive, OMP_PROC_BIND=false unless set
  hfisher::dist::Environment mpi(argc, argv);
  const auto guard = hfisher_cli::start_runtime(argc, argv, "hfisher-continual");  // bad Kokkos arguments: a message
  if (!guard) return 2;
  const auto comm = hfisher::dist::Communicator::world();
  CLI::App app{"hfisher-continual: continual learning with Fisher penalties on Fashion-MNIST task streams"};
  hfisher_cli::show_defaults(app);
  ExperimentOptions o;
  double memory_budget_gib = 0;  // --memory-budget (0: 80% of the memory available at start)
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
                 "learning rate (default per optimizer: sgd " + format_default(default_lr("sgd")) + ", adam " +
                     format_default(default_lr("adam")) + ", ngd " + format_default(default_lr("ngd")) + ", kfac " +
                     format_default(default_lr("kfac")) + ")")
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
  app.add_option("--fisher-examples", o.fisher.examples, "examples per consolidation")->check(CLI::Range(1, 60000));
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
  app.add_option("--levels", o.fisher.multilevel.levels, "multilevel: levels of nested low-rank terms per layer")
      ->check(CLI::Range(1, 16));
  app.add_option_function<std::vector<int>>(
         "--level-rank",
         [&o](const std::vector<int>& r) { hfisher::continual::set_level_ranks(o.fisher.multilevel, r); },
         "multilevel: rank of each node's term (one value, or one per level)")
      ->check(CLI::Range(1, 4096))
      ->default_str(std::to_string(o.fisher.multilevel.rank));
  app.add_option("--branching", o.fisher.multilevel.branching,
                 "multilevel: children per node (nodes split output units)")
      ->check(CLI::Range(2, 1024));
  app.add_option("--power-steps", o.fisher.multilevel.power_steps,
                 "multilevel: power steps of the randomized eigensolver of each node (more: closer to the exact "
                 "directions, one more Gram product and QR each)")
      ->check(CLI::Range(0, 16));
  app.add_option("--oversampling", o.fisher.multilevel.oversampling,
                 "multilevel: columns beyond the rank in the randomized eigensolver's block (-1: the rank + 8)")
      ->check(CLI::Range(-1, 4096));
  app.add_option_function<double>(
         "--tol", [&o](double t) { o.fisher.set_tol(t); },
         "hierarchical compression tolerance (relative; every structure's)")
      ->check(hfisher_cli::Finite)
      ->check(CLI::Range(1e-12, 0.9))
      ->default_str(format_default(o.fisher.compression.tol));
  app.add_option("--leaf", o.fisher.compression.leaf, "hodlr: leaf size")->check(CLI::Range(2, 4096));
  app.add_option("--max-rank", o.fisher.compression.max_rank,
                 "hodlr: rank cap of off-diagonal blocks (a memory budget; 0: none)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--replay-examples", o.replay_examples,
                 "replay: training examples kept of every finished task (each step adds the mean loss gradient of "
                 "--batch of them, drawn uniformly, to the current batch's)")
      ->check(CLI::Range(1, 60000));
  app.add_option("--rank", o.fisher.lowrank.rank, "rank of the ngd optimizer's low-rank Fisher")
      ->check(CLI::Range(1, 4096));
  app.add_option("--damping", o.damping,
                 "damping of the ngd/kfac optimizers (default: ngd " + format_default(default_damping("ngd")) +
                     ", kfac " + format_default(default_damping("kfac")) + ")")
      ->check(hfisher_cli::FinitePositive);
  app.add_option("--seed", o.seed, "seed of initialization, permutations, shuffles")->check(hfisher_cli::Unsigned);
  app.add_option("--seeds", o.seeds, "number of seeds (seed, seed + 1, ...): the table adds mean +- std")
      ->check(CLI::Range(1, 100));
  app.add_flag("!--no-spd-compensation", o.fisher.compression.spd_compensation,
               "hodlr: do not add the truncation error to the diagonal (the compressed Fisher may then be "
               "slightly indefinite, but is not stiffened)");
  app.add_option("--data", o.data, "directory of MNIST-format files (default: Debian's Fashion-MNIST)");
  hfisher_cli::add_memory_budget_option(app, memory_budget_gib);
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
    o.fisher.memory_budget = hfisher_cli::memory_budget_bytes(memory_budget_gib);
    if (o.model != "mlp") {
      hfisher::detail::require(app.count("--hidden") == 0, "hfisher-continual", "--hidden sets the widths of --model ",
                               "mlp; --model ", o.model, " has fixed layers (nn::small_", o.model, ")");
      if (app.count("--hierarchical-structure") == 0) o.hstructure = "hodlr";  // convolutions, tokens: HODLR
    }
    // the options as a whole (the library's checks, with this program's name)
    hfisher::continual::validate(o, "hfisher-continual");
    return o.model == "mlp" ? run<hfisher::nn::MLP>(o, comm) : run<hfisher::nn::Sequential>(o, comm);
  });
}
