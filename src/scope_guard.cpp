#include <hfisher/core/error.hpp>
#include <hfisher/core/scope_guard.hpp>

#include <cstdlib>
#include <string>

#include <Kokkos_Core.hpp>

#ifdef HFISHER_HAVE_MPI
#include <mpi.h>
#endif

#include "hfisher_config.hpp"

namespace hfisher {

namespace {
int dummy_argc = 0;

// Kokkos 3.4 aborts (SIGABRT) on --kokkos-threads=0 and takes "abc" or "-3"
// in unpredictable ways: thread counts are checked here first, before MPI
// or Kokkos start, and refused with an hfisher::Error.
void check_kokkos_arguments(int argc, char** argv) {
  if (!argv) return;
  for (int i = 1; i < argc && argv[i]; ++i) {
    const std::string a = argv[i];
    for (const char* key : {"--kokkos-threads=", "--threads=", "--kokkos-num-threads="}) {
      const std::string k = key;
      if (a.compare(0, k.size(), k) != 0) continue;
      const std::string v = a.substr(k.size());
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      detail::require(!v.empty() && end && *end == '\0' && n >= 1 && n <= 1 << 20, "hfisher::ScopeGuard", a,
                      ": the number of threads must be an integer >= 1");
    }
  }
}

}  // namespace

ScopeGuard::ScopeGuard() : ScopeGuard(dummy_argc, nullptr) {}

ScopeGuard::ScopeGuard(int& argc, char** argv) {
  check_kokkos_arguments(argc, argv);
#ifdef HFISHER_HAVE_MPI
  int mpi_up = 0;
  MPI_Initialized(&mpi_up);
  if (!mpi_up) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    owns_mpi_ = true;
  }
#endif
  if (!Kokkos::is_initialized()) {
    Kokkos::initialize(argc, argv);
    owns_kokkos_ = true;
  }
}

ScopeGuard::~ScopeGuard() {
  if (owns_kokkos_) Kokkos::finalize();
#ifdef HFISHER_HAVE_MPI
  if (owns_mpi_) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
  }
#endif
}

const char* version() { return HFISHER_VERSION; }

const char* enabled_backends() {
  return ""
#ifdef KOKKOS_ENABLE_SERIAL
         "Serial "
#endif
#ifdef KOKKOS_ENABLE_OPENMP
         "OpenMP "
#endif
#ifdef KOKKOS_ENABLE_CUDA
         "Cuda "
#endif
      ;
}

}  // namespace hfisher
