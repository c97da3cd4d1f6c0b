#pragma once
// Shared pieces of the performance executables and drivers: machine
// description, timers, CSV writing (atomic: written to a temporary file and
// renamed, so a failed run leaves nothing half-written).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

namespace hfisher_perf {

struct Machine {
  std::string cpu, backend, date, host_threads;  ///< cpu ends with the BLAS the baselines ran on (blas_core)
  std::string omp_wait;                          ///< OMP_WAIT_POLICY as the program saw it ("unset" when unset)
};
Machine describe_machine();

/// The kernels the baselines' BLAS runs: "OpenBLAS core <name>" (as
/// openblas_get_corename reports it), or "a BLAS that is not OpenBLAS".
std::string blas_core();

/// OpenBLAS 0.3.21 (Debian 12) does not recognise every recent CPU (an Intel
/// Xeon of family 6 model 207, for one) and falls back to its SSE3 kernels
/// ("Prescott"), about 4x below the AVX-512 ones on the same CPU, which made
/// every "ratio to OpenBLAS" flatter hfisher. Where OpenBLAS
/// chose such a pre-AVX core on a CPU with AVX2 and FMA, and the user did not
/// set OPENBLAS_CORETYPE, this sets it (SkylakeX with AVX-512, else Haswell),
/// says so on stderr and returns true: the caller must then execute the
/// program again (OpenBLAS reads the variable when it loads), e.g. through
/// hfisher_cli::openmp_defaults(argv, true).
bool blas_defaults();

/// Seconds on a monotonic clock (differences are wall times).
inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// The median of v (the mean of the middle two for an even count; NaN of
/// none).
inline double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

/// Least-squares slope of log t against log n (the growth exponent), over
/// the points with t > 0; NaN with fewer than two.
double slope(const std::vector<double>& n, const std::vector<double>& t);

/// Best (minimum) wall time in seconds of `reps` runs of op, after one
/// warm-up; setup() runs before each and is not timed.
template <class Setup, class Op>
double best_time(int reps, Setup&& setup, Op&& op) {
  setup();
  op();
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    setup();
    const auto t0 = std::chrono::steady_clock::now();
    op();
    const auto t1 = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(t1 - t0).count();
    if (s < best) best = s;
  }
  return best;
}

/// Writes text to path atomically (hfisher::io::atomic_write: a uniquely named
/// temporary renamed into place); creates the
/// parent directory. Throws hfisher::Error on failure.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace hfisher_perf
