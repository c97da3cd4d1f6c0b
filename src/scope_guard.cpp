#include <hfisher/core/scope_guard.hpp>

#include <Kokkos_Core.hpp>

#ifdef HFISHER_HAVE_MPI
#include <mpi.h>
#endif

#include "hfisher_config.hpp"

namespace hfisher {

namespace {
int dummy_argc = 0;
}

ScopeGuard::ScopeGuard() : ScopeGuard(dummy_argc, nullptr) {}

ScopeGuard::ScopeGuard(int& argc, char** argv) {
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
