#pragma once
// The registry of hfisher-bench's studies: one entry per subcommand, with
// its name, its one-line help and how it binds its options. hfisher-bench
// and the single-study perf executables take their studies from here; a new
// study adds its options struct, its add_*_options and run_* functions and
// one line in studies.cpp.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
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

/// Every study, in the order hfisher-bench lists them.
const std::vector<Study>& studies();

/// The study called `name`; throws std::invalid_argument for another name.
const Study& study(const std::string& name);

}  // namespace hfisher_perf
