#pragma once
// The registry of hfisher-bench's studies: one entry per subcommand, with
// its name, its one-line help and how it binds its options. Each study is
// one header (`<study>_bench.hpp`: its options struct, add_<study>_options
// and run_<study>) and the source that runs it, which also defines the
// study's entry (`<study>_study()`, with its help line). hfisher-bench lists
// every entry (studies.cpp); a single-study program (main_study.cpp) links
// its study's library only. A new study adds its header and source, one
// declaration below and one line in studies.cpp.
#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace hfisher_perf {

struct Study {
  std::string name;  ///< the subcommand
  std::string help;  ///< one line for --help
  /// Adds the study's options to `app`, bound to an options object the
  /// returned function owns, and returns the function that runs the study
  /// with what was parsed.
  std::function<std::function<int()>(CLI::App&)> bind;
};

/// A study from its options' binder and its run function.
template <class Options>
Study make_study(std::string name, std::string help, void (*add)(CLI::App&, Options&), int (*run)(const Options&)) {
  return {std::move(name), std::move(help), [add, run](CLI::App& app) {
            auto o = std::make_shared<Options>();
            add(app, *o);
            return std::function<int()>([o, run] { return run(*o); });
          }};
}

// Each study's entry, defined beside its run function.
Study kernels_study();    // kernels_bench.cpp
Study hodlr_study();      // hodlr_bench.cpp
Study hss_study();        // hss_bench.cpp
Study fisher_study();     // fisher_bench.cpp
Study scaling_study();    // scaling_bench.cpp
Study kfac_bert_study();  // kfac_bert.cpp
Study layers_study();     // layers_bench.cpp

/// Every study, in the order hfisher-bench lists them.
const std::vector<Study>& studies();

/// The study called `name`; throws std::invalid_argument for another name.
const Study& study(const std::string& name);

}  // namespace hfisher_perf
