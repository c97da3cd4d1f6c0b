#include "bench_common.hpp"

#include "lapack_decls.hpp"

#include <hfisher/hfisher.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace hfisher_perf {

Machine describe_machine() {
  Machine m;
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  int cores = 0;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0 && m.cpu.empty()) m.cpu = line.substr(line.find(':') + 2);
    if (line.rfind("processor", 0) == 0) ++cores;
  }
  m.cpu += " (" + std::to_string(cores) + " logical cores); baselines on " + blas_core();
  m.backend = Kokkos::DefaultExecutionSpace::name();
#ifdef KOKKOS_ENABLE_CUDA
  // which GPU: "Cuda (NVIDIA H100 80GB HBM3, sm_90)"
  const auto& prop = Kokkos::Cuda().cuda_device_prop();
  m.backend += " (" + std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
#endif
  m.host_threads = std::to_string(Kokkos::DefaultHostExecutionSpace().concurrency());
  // the OpenMP wait policy changes timings on shared cores (README, "OpenMP settings")
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  m.omp_wait = wait != nullptr ? wait : "unset";
  char buf[64];
  std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  m.date = buf;
  return m;
}

std::string blas_core() {
  if (openblas_get_corename == nullptr) return "a BLAS that is not OpenBLAS";
  const char* c = openblas_get_corename();
  return "OpenBLAS core " + std::string(c != nullptr ? c : "unknown");
}

bool blas_defaults() {
  if (openblas_get_corename == nullptr || std::getenv("OPENBLAS_CORETYPE") != nullptr) return false;
  const char* c = openblas_get_corename();
  std::string core = c != nullptr ? c : "";
  std::transform(core.begin(), core.end(), core.begin(), [](unsigned char x) { return char(std::tolower(x)); });
  // OpenBLAS's cores without AVX
  static const char* const sse_only[] = {"prescott", "core2",      "penryn",    "dunnington", "nehalem", "atom",
                                         "katmai",   "coppermine", "northwood", "banias",     "opteron", "barcelona"};
  if (std::find(std::begin(sse_only), std::end(sse_only), core) == std::end(sse_only)) return false;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
  const char* want = __builtin_cpu_supports("avx512f") ? "SkylakeX" : "Haswell";
  std::fprintf(stderr,
               "hfisher-bench: OpenBLAS runs its SSE3 kernels (core %s) on this CPU, which it does not recognise; "
               "starting again with OPENBLAS_CORETYPE=%s so that the baselines use the CPU's vector units (set "
               "OPENBLAS_CORETYPE yourself to choose)\n",
               c, want);
  ::setenv("OPENBLAS_CORETYPE", want, 1);
  return true;
}

double slope(const std::vector<double>& n, const std::vector<double>& t) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int c = 0;
  for (size_t i = 0; i < n.size(); ++i) {
    if (!(t[i] > 0)) continue;
    const double x = std::log(n[i]), y = std::log(t[i]);
    sx += x, sy += y, sxx += x * x, sxy += x * y;
    ++c;
  }
  if (c < 2) return NAN;
  return (c * sxy - sx * sy) / (c * sxx - sx * sx);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  if (ec) throw hfisher::Error("cannot create directory " + p.parent_path().string() + ": " + ec.message());
  hfisher::io::atomic_write(path, "hfisher-bench", [&](std::ostream& o) { o << text; });
}

}  // namespace hfisher_perf
