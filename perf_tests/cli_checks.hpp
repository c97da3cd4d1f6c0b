#pragma once
// CLI11 validators and the runtime start shared by the drivers and the
// benchmarks. CLI11's own
// PositiveNumber, NonNegativeNumber and Range let NaN through (every
// comparison with NaN is false) and an unsigned option takes "-1" as
// 2^64 - 1; these refuse both with a message that names the value.
#include <CLI/CLI.hpp>

#include "memory_budget.hpp"
#include <hfisher/core/scope_guard.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

namespace hfisher_cli {

/// --memory-budget GiB (0, the default: 80% of the memory available when the
/// run starts; see memory_budget.hpp).
inline void add_memory_budget_option(CLI::App& app, double& gib) {
  app.add_option("--memory-budget", gib,
                 "GiB the run may allocate, checked before it starts (0: 80% of the memory available at start)")
      ->check(CLI::Range(0.0, 1e6));
}

/// Every option of `app` (and of the subcommands added after this call)
/// shows its default value in --help, as `[value]`; options whose default
/// depends on other options say so with their own default_str.
inline void show_defaults(CLI::App& app) { app.option_defaults()->always_capture_default(); }

/// The OpenMP settings the drivers want, applied when the user chose none:
/// OMP_WAIT_POLICY=passive (a thread with no work sleeps at the end of a
/// parallel region instead of spinning; on shared cores the spinning threads
/// of many short launches take the time of the threads that have work, and
/// builds and factorizations slowed 5-40x beside other jobs) and
/// OMP_PROC_BIND=false (no thread pinning, and no Kokkos warning on every
/// start). The OpenMP runtime reads its environment once, when it loads
/// before main, so when either variable is unset the program sets it and
/// executes itself again (once: HFISHER_OMP_DEFAULTS marks the second
/// start). A value the user set is never changed; HFISHER_OMP_DEFAULTS set
/// to anything beforehand keeps the runtime's own defaults. Call it first in main, before MPI or
/// Kokkos start. restart: execute again even if no OpenMP variable changed
/// (the caller set another variable read at load time, such as
/// OPENBLAS_CORETYPE).
inline void openmp_defaults(char** argv, bool restart = false) {
  bool changed = restart;
  if (std::getenv("HFISHER_OMP_DEFAULTS") == nullptr) {
    if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
      ::setenv("OMP_WAIT_POLICY", "passive", 1);
      changed = true;
    }
    if (std::getenv("OMP_PROC_BIND") == nullptr) {
      ::setenv("OMP_PROC_BIND", "false", 1);
      changed = true;
    }
    ::setenv("HFISHER_OMP_DEFAULTS", "1", 1);
  }
  if (changed) ::execv("/proc/self/exe", argv);  // returns only on failure: run with the runtime's defaults
}

namespace detail {
// "" when s is a finite number, else why not
inline std::string finite(const std::string& s, double& v) {
  const char* b = s.c_str();
  char* end = nullptr;
  v = std::strtod(b, &end);
  if (s.empty() || end == b || *end != '\0') return "'" + s + "' is not a number";
  if (!std::isfinite(v)) return "'" + s + "' is not a finite number";
  return "";
}
}  // namespace detail

/// A finite number (no NaN, no infinity); chain it before a CLI::Range.
inline const CLI::Validator Finite(
    [](std::string& s) {
      double v = 0;
      return detail::finite(s, v);
    },
    "FINITE", "Finite");

/// A finite number > 0.
inline const CLI::Validator FinitePositive(
    [](std::string& s) {
      double v = 0;
      std::string e = detail::finite(s, v);
      if (e.empty() && !(v > 0)) e = "'" + s + "' is not > 0";
      return e;
    },
    "FINITE > 0", "FinitePositive");

/// A finite number >= 0.
inline const CLI::Validator FiniteNonNegative(
    [](std::string& s) {
      double v = 0;
      std::string e = detail::finite(s, v);
      if (e.empty() && !(v >= 0)) e = "'" + s + "' is not >= 0";
      return e;
    },
    "FINITE >= 0", "FiniteNonNegative");

/// An unsigned integer written without a sign (a seed): "-1" is refused
/// instead of wrapping to 2^64 - 1.
inline const CLI::Validator Unsigned(
    [](std::string& s) {
      if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
        return "'" + s + "' is not an unsigned integer";
      return std::string();
    },
    "UINT", "Unsigned");

/// A non-empty text (an output directory): an explicit `--output ""` is an
/// error, never "write nothing" or the file-system root.
inline const CLI::Validator NonEmpty(
    [](std::string& s) {
      return s.empty() ? std::string("is empty (give a directory, or leave the option out)") : std::string();
    },
    "DIR", "NonEmpty");

/// Starts Kokkos (and MPI) through hfisher::ScopeGuard. Bad Kokkos
/// arguments (--kokkos-threads=0, ...) print "<program>: error: ..." and give
/// nullptr (the caller exits 2) instead of Kokkos's SIGABRT. `--help` and
/// `-h` are kept from Kokkos (which would print its own page of options
/// first) and left in argv for the program's help; Kokkos's own options
/// (--kokkos-threads=N, ...) still reach Kokkos.
inline std::unique_ptr<hfisher::ScopeGuard> start_runtime(int& argc, char** argv, const char* program) {
  auto is_help = [](const char* a) { return std::string(a) == "--help" || std::string(a) == "-h"; };
  std::vector<char*> all(argv, argv + argc), kept;
  for (int i = 0; i < argc; ++i)
    if (i == 0 || !is_help(argv[i])) kept.push_back(argv[i]);
  int kc = int(kept.size());
  kept.push_back(nullptr);
  try {
    auto guard = std::make_unique<hfisher::ScopeGuard>(kc, kept.data());
    // back into the caller's argv in the original order: the arguments
    // Kokkos left (it removes its own) and the help flags where they were
    std::vector<char*> left(kept.begin(), kept.begin() + kc);
    argc = 0;
    std::size_t next = 0;
    for (char* a : all)
      if ((a != all.front() && is_help(a)) || (next < left.size() && left[next] == a)) {
        if (!(a != all.front() && is_help(a))) ++next;
        argv[argc++] = a;
      }
    argv[argc] = nullptr;
    return guard;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return nullptr;
  }
}

}  // namespace hfisher_cli
