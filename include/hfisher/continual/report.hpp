#pragma once
/// \file report.hpp
/// \brief What a continual-learning experiment (continual/experiment.hpp)
/// reports: each method's candidate chosen on validation data, the results
/// table (one row per run, mean +- std per method over the seeds, the
/// learning curve and time to accuracy), and the files in o.output:
/// results.json (every setting, so a run can be repeated from it alone),
/// results.csv, curve.csv, R_<method>.dat, ACC_<method>.dat,
/// acc_memory.dat, plots.gp and, where gnuplot is installed, its PNGs.
/// Tables go to standard output; call these on one rank.

#include <hfisher/continual/experiment.hpp>
#include <hfisher/core/io.hpp>
#include <hfisher/core/output.hpp>
#include <hfisher/core/scope_guard.hpp>
#include <hfisher/core/version.hpp>

#ifdef HFISHER_HAVE_MPI
#include <mpi.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace hfisher {
namespace continual {

/// A method's choice among its candidates.
struct Selection {
  Method method;
  std::vector<Candidate> cands;
  std::vector<double> val_acc;  ///< per candidate (NaN: diverged)
  Candidate chosen;
};

/// Where and how an experiment ran (results.json, the log).
struct ReportContext {
  std::string backend;  ///< the execution space's name
  int threads = 1;      ///< its concurrency
  int ranks = 1;        ///< MPI ranks
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

namespace detail {

/// The libraries a run was built with, as a JSON object (results.json).
inline std::string libraries_json() {
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

}  // namespace detail

/// The files a run writes into o.output (and checkpoints/, with checkpoint
/// set): a folder holding any of them holds an earlier run.
inline bool is_run_file(const std::filesystem::path& p, bool checkpoint) {
  const std::string f = p.filename().string();
  auto ends = [&](const char* s) {
    return f.size() >= std::strlen(s) && f.compare(f.size() - std::strlen(s), std::string::npos, s) == 0;
  };
  if (checkpoint) return ends(".ckpt");
  return f == "results.json" || f == "results.csv" || f == "curve.csv" || f == "plots.gp" || f == "heatmaps.png" ||
         f == "acc.png" || f == "acc_memory.dat" || f == "acc_memory.png" ||
         ((f.rfind("R_", 0) == 0 || f.rfind("ACC_", 0) == 0) && ends(".dat"));
}

/// Refuses a folder (o.output, which exists) holding an earlier run unless
/// o.resume or o.overwrite; o.overwrite removes that run's files (and only
/// those), so no file of a method not run this time is left beside the new
/// results.
inline void claim_output(const ExperimentOptions& o) {
  namespace fs = std::filesystem;
  std::vector<fs::path> earlier;
  for (const auto& [dir, ckpt] :
       {std::make_pair(fs::path(o.output), false), std::make_pair(fs::path(o.output) / "checkpoints", true)})
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && is_run_file(e.path(), ckpt)) earlier.push_back(e.path());
  if (earlier.empty()) return;
  if (o.overwrite) {
    for (const auto& p : earlier) fs::remove(p);
    std::printf("--overwrite: removed %zu file(s) of an earlier run from %s\n", earlier.size(), o.output.c_str());
    return;
  }
  hfisher::detail::require(o.resume, "hfisher::continual::claim_output: --output", o.output, " already holds a run (",
                           earlier.front().filename().string(), ", ...): pass --resume to continue it (same ",
                           "arguments and code version) or --overwrite to replace it");
}

/// With a lambda, gamma or learning-rate grid (any_grid(o)), each method's
/// (lambda, gamma, lr) is the candidate with the best final ACC on the
/// validation examples, averaged over the seeds (the first on a tie; a
/// candidate that diverged on any seed is never chosen); only the chosen
/// runs stay in ex.runs (the table, the summary and the plots). Prints the
/// choice with every candidate's validation ACC. Without a grid, changes
/// nothing and returns no selections.
inline std::vector<Selection> select_candidates(const ExperimentOptions& o, ExperimentResults& ex) {
  const int T = o.tasks;
  std::vector<RunResult>& results = ex.runs;
  std::vector<Selection> selections;
  auto same = [](const RunResult& r, const Candidate& c) {
    return r.lambda == c.lambda && r.gamma == c.gamma && r.lr == c.lr;
  };
  if (any_grid(o)) {
    std::vector<RunResult> kept;
    for (const auto& m : o.methods) {
      Selection sel{m, candidates(o, m), {}, {}};
      sel.chosen = sel.cands[0];
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
        hfisher::detail::require(best >= 0, "hfisher::continual::select_candidates", to_string(m),
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
      std::printf("  %-14s", to_string(sel.method));
      for (std::size_t c = 0; c < sel.cands.size(); ++c) {
        const std::string cname = candidate_name(o, sel.method, sel.cands[c], false);
        const std::string v = std::isfinite(sel.val_acc[c]) ? format_fixed4(sel.val_acc[c]) : "diverged";
        std::printf("  %s: %s%s", cname.substr(cname.find('@') + 1).c_str(), v.c_str(),
                    sel.cands[c] == sel.chosen ? " <" : "");
      }
      std::printf("\n");
    }
    results = std::move(kept);
  }
  return selections;
}

/// Prints the results table (and the learning curve and time to accuracy
/// where asked) and writes the files into o.output. Every run must be
/// complete (all o.tasks tasks, not diverged): after a grid, pass what
/// select_candidates kept.
inline void report_experiment(const ExperimentOptions& o, const ExperimentResults& ex,
                              const std::vector<Selection>& selections, const ReportContext& ctx) {
  const int T = o.tasks;
  const std::vector<RunResult>& results = ex.runs;
  for (const auto& r : results)  // a diverged grid candidate stops early: select_candidates leaves it out
    hfisher::detail::require(r.done == T && !r.diverged && int(r.fisher_bytes.size()) == T,
                             "hfisher::continual::report_experiment", to_string(r.method), " (seed ", r.seed,
                             ", lambda ", r.lambda, ") finished ", r.done, " of ", T, " tasks",
                             r.diverged ? " and diverged" : "", ": report complete runs (select_candidates first)");
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
    std::vector<const RunResult*> v;
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
  auto intrans = [&](const RunResult& r, int t) {
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
    std::printf("%-14s %5llu %7g %8.4f %+8.4f %11.4f %8.4f %+9.4f %12.2f %15.2f %10.1f %10.0f\n", to_string(r.method),
                (unsigned long long)r.seed, r.lambda, r.R.acc(T - 1), r.R.bwt(T - 1), r.R.forgetting(T - 1),
                r.R.learning_accuracy(T - 1), intrans(r, T - 1), r.fisher_bytes.back() / 1e6, cs / T, ts,
                r.train_examples / ts);
  }
  if (o.seeds > 1) {
    std::printf("\nmean +- std over %d seeds\n%-14s %17s %17s %17s %17s %18s %12s %15s\n", o.seeds, "method", "ACC",
                "BWT", "forgetting", "LA", "intrans.", "Fisher MB", "consolidate s");
    for (const auto& m : names) {
      const auto acc = stats(m, [&](const RunResult& r) { return r.R.acc(T - 1); });
      const auto bwt = stats(m, [&](const RunResult& r) { return r.R.bwt(T - 1); });
      const auto fgt = stats(m, [&](const RunResult& r) { return r.R.forgetting(T - 1); });
      const auto la = stats(m, [&](const RunResult& r) { return r.R.learning_accuracy(T - 1); });
      const auto in = stats(m, [&](const RunResult& r) { return intrans(r, T - 1); });
      const auto mb = stats(m, [&](const RunResult& r) { return r.fisher_bytes.back() / 1e6; });
      const auto cs = stats(m, [&](const RunResult& r) { return total(r.consolidate_seconds) / T; });
      std::printf("%-14s %8.4f +- %.4f %+8.4f +- %.4f %8.4f +- %.4f %8.4f +- %.4f %+8.4f +- %.4f %12.2f %15.2f\n",
                  to_string(m), acc.first, acc.second, bwt.first, bwt.second, fgt.first, fgt.second, la.first,
                  la.second, in.first, in.second, mb.first, cs.first);
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
      std::printf("%-14s", to_string(m));
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
  auto time_to = [&](const RunResult& r, double target) {
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
    for (double g : o.targets) std::printf(" %24s", ("target " + format_fixed4(g)).c_str());
    std::printf("\n");
    for (const auto& m : names) {
      std::printf("%-14s", to_string(m));
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
  js << "{\n  \"date\": \"" << date << "\",\n  \"libraries\": " << detail::libraries_json() << ",\n  \"backend\": \""
     << ctx.backend << "\",\n  \"threads\": " << ctx.threads << ",\n  \"ranks\": " << ctx.ranks << ",\n  \"stream\": \""
     << o.stream << "\",\n  \"scenario\": \"" << o.scenario << "\",\n  \"tasks\": " << T
     << ",\n  \"seeds\": " << o.seeds << ",\n";
  // every setting that changes the results, so a run can be repeated from this file alone
  const auto& ml = o.fisher.multilevel;
  const auto& fc = o.fisher.compression;
  js << "  \"settings\": {\"hfisher_version\": \"" << hfisher::version() << "\", \"commit\": \"" << hfisher::commit()
     << "\", \"seed\": " << o.seed << ", \"optimizer\": \"" << o.optimizer << "\", \"lr\": " << o.lr
     << ", \"epochs\": " << o.epochs << ", \"batch\": " << o.batch
     << ", \"keep_optimizer_state\": " << (o.keep_optimizer_state ? "true" : "false") << ", \"model\": \"" << o.model
     << "\", \"model_layers\": " << hfisher::io::json_string(ex.model_text) << ", \"parameters\": " << ex.parameters
     << ", \"widths\": [";
  for (std::size_t l = 0; l < ex.widths.size(); ++l) js << (l ? ", " : "") << ex.widths[l];
  js << "], \"train_examples\": " << o.train_examples << ", \"test_examples\": " << o.test_examples
     << ", \"fisher_examples\": " << o.fisher.examples << ", \"fisher_kind\": \"" << o.fisher_kind
     << "\", \"lambda\": {";
  for (std::size_t k = 0; k < names.size(); ++k)
    js << (k ? ", " : "") << "\"" << to_string(names[k]) << "\": " << lambda_in_results(names[k]);
  js << "}, \"gamma\": " << o.gamma << ", \"damping\": " << o.damping << ", \"hierarchical_structure\": \""
     << o.hstructure << "\", \"levels\": " << ml.levels << ", \"level_rank\": [";
  const auto lr = level_ranks(ml);
  for (std::size_t l = 0; l < lr.size(); ++l) js << (l ? ", " : "") << lr[l];
  js << "], \"branching\": " << ml.branching << ", \"tol\": " << fc.tol << ", \"leaf\": " << fc.leaf
     << ", \"max_rank\": " << fc.max_rank << ", \"spd_compensation\": " << (fc.spd_compensation ? "true" : "false")
     << ", \"rank\": " << o.fisher.lowrank.rank << ", \"power_steps\": " << ml.power_steps
     << ", \"oversampling\": " << ml.oversampling << ", \"data\": " << hfisher::io::json_string(o.data)
     << ", \"probe_anchors\": " << (o.probe_anchors ? "true" : "false")
     << ", \"replay_examples\": " << o.replay_examples << ", \"memory_budget_bytes\": " << o.fisher.memory_budget
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
    js << (k ? ", " : "") << "{\"method\": \"" << to_string(sel.method) << "\", \"validation_ACC\": [";
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
    const auto acc = stats(names[k], [&](const RunResult& r) { return r.R.acc(T - 1); });
    const auto fgt = stats(names[k], [&](const RunResult& r) { return r.R.forgetting(T - 1); });
    const auto bwt = stats(names[k], [&](const RunResult& r) { return r.R.bwt(T - 1); });
    const auto la = stats(names[k], [&](const RunResult& r) { return r.R.learning_accuracy(T - 1); });
    const auto in = stats(names[k], [&](const RunResult& r) { return intrans(r, T - 1); });
    js << "    {\"method\": \"" << to_string(names[k]) << "\", \"ACC_mean\": " << acc.first
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
      csv << to_string(r.method) << "," << r.seed << "," << i + 1 << "," << r.R.acc(i) << "," << r.R.bwt(i) << ","
          << r.R.forgetting(i) << "," << r.R.learning_accuracy(i) << "," << (std::isfinite(in) ? num(in) : "") << ","
          << r.fisher_bytes[i] << "," << r.consolidate_seconds[i] << "," << r.train_seconds[i] << "\n";
      for (int j = 0; j < T; ++j) mcsv << r.R(i, j) << (j + 1 < T ? " " : "\n");
    }
    if (r.seed == o.seed)  // heatmaps of the first seed
      hfisher::io::atomic_write(o.output + "/R_" + to_string(r.method) + ".dat",
                                "hfisher::continual::report_experiment", [&](std::ostream& f) { f << mcsv.str(); });
    js << "    {\"method\": \"" << to_string(r.method) << "\", \"seed\": " << r.seed << ", \"lambda\": " << r.lambda;
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
          for (int f = 0; f < RunResult::curve_fields; ++f) js << (f ? ", " : "") << num(r.curve_at(t, e, o.epochs, f));
          js << "]";
          ccsv << to_string(r.method) << "," << r.seed << "," << t + 1 << "," << e + 1 << ","
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
      const auto st = stats(m, [&](const RunResult& r) { return r.R.acc(i); });
      a << i + 1 << " " << st.first << " " << st.second << "\n";
    }
    hfisher::io::atomic_write(o.output + "/ACC_" + to_string(m) + ".dat", "hfisher::continual::report_experiment",
                              [&](std::ostream& f) { f << a.str(); });
  }
  // final ACC against the Fisher memory each method keeps (mean and std over
  // the seeds): the trade-off the penalties are compared on
  {
    std::ostringstream a;
    a << "# method Fisher_MB_mean Fisher_MB_std final_ACC_mean final_ACC_std (" << o.seeds << " seeds)\n";
    for (const auto& m : names) {
      const auto mb = stats(m, [&](const RunResult& r) { return r.fisher_bytes.back() / 1e6; });
      const auto acc = stats(m, [&](const RunResult& r) { return r.R.acc(T - 1); });
      a << to_string(m) << " " << mb.first << " " << mb.second << " " << acc.first << " " << acc.second << "\n";
    }
    hfisher::io::atomic_write(o.output + "/acc_memory.dat", "hfisher::continual::report_experiment",
                              [&](std::ostream& f) { f << a.str(); });
  }
  hfisher::io::atomic_write(o.output + "/results.csv", "hfisher::continual::report_experiment",
                            [&](std::ostream& f) { f << csv.str(); });
  if (o.validation > 0)
    hfisher::io::atomic_write(o.output + "/curve.csv", "hfisher::continual::report_experiment",
                              [&](std::ostream& f) { f << ccsv.str(); });
  hfisher::io::atomic_write(o.output + "/results.json", "hfisher::continual::report_experiment",
                            [&](std::ostream& f) { f << js.str(); });
  const int n = int(names.size());
  gp << "# file names are relative: run gnuplot in this folder\n"
     << "set terminal pngcairo size " << 380 * n << ",420\nset output 'heatmaps.png'\n"
     << "set multiplot layout 1," << n << " title 'accuracy R[i,j] after task i (rows) on task j (" << o.stream
     << ", seed " << o.seed << ", " << date << ")'\nset cbrange [0:1]\nset palette rgbformulae 33,13,10\nunset key\n"
     << "set xlabel 'task j'\nset ylabel 'after task i'\nset yrange [" << T + 0.5
     << ":0.5]\nset xrange [0.5:" << T + 0.5 << "]\nset xtics 1\nset ytics 1\n";
  // tasks numbered from 1, as in the log and results.csv
  for (const auto& m : names)
    gp << "set title '" << to_string(m) << "'\nplot 'R_" << to_string(m)
       << ".dat' matrix using ($1+1):($2+1):3 with image\n";
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
    gp << "'ACC_" << to_string(names[k]) << ".dat' using 1:2:3 with yerrorlines lw 2 lc rgb '" << colours[k % 8]
       << "' pt " << markers[k % 8] << " title '" << to_string(names[k]) << "'" << (k + 1 < n ? ", " : "\n");
  gp << "set terminal pngcairo size 700,450\nset output 'acc_memory.png'\n"
     << "set title 'final ACC against Fisher memory after " << T << " tasks"
     << (o.seeds > 1 ? " (mean +- std, " + std::to_string(o.seeds) + " seeds)" : std::string()) << "'\n"
     << "set xlabel 'Fisher memory kept (MB)'\nset ylabel 'final ACC'\nset key bottom right\nset autoscale\n"
     << "set xrange [0:*]\nset offsets graph 0.02, graph 0.05, graph 0.1, graph 0.1\nset xtics autofreq\n"
     << "set ytics autofreq\nplot ";
  for (int k = 0; k < n; ++k)
    gp << "'acc_memory.dat' every ::" << k << "::" << k << " using 2:4:3:5 with xyerrorbars lw 2 ps 2 lc rgb '"
       << colours[k % 8] << "' pt " << markers[k % 8] << " title '" << to_string(names[k]) << "'"
       << (k + 1 < n ? ", " : "\n");
  hfisher::io::atomic_write(o.output + "/plots.gp", "hfisher::continual::report_experiment",
                            [&](std::ostream& f) { f << gp.str(); });
  const bool plotted = hfisher::io::run_gnuplot(o.output, "plots.gp");
  std::printf(
      "\nwrote %s/results.json, results.csv%s, R_*.dat, ACC_*.dat, acc_memory.dat, plots.gp%s (%.1f s in all)\n",
      o.output.c_str(), o.validation > 0 ? ", curve.csv" : "", plotted ? ", heatmaps.png, acc.png, acc_memory.png" : "",
      detail::seconds_since(ctx.started));
}

}  // namespace continual
}  // namespace hfisher
