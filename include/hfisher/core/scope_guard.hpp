#pragma once
/// \file scope_guard.hpp
/// \brief hfisher::ScopeGuard: initializes Kokkos (and MPI when hfisher was
/// built with HFISHER_ENABLE_MPI) for its lifetime.

namespace hfisher {

/// Initializes Kokkos (and MPI, when enabled and not yet initialized) on
/// construction and finalizes what it initialized on destruction. One per
/// program, constructed before any hfisher call:
/// \code
///   int main(int argc, char** argv) { hfisher::ScopeGuard guard(argc, argv); ... }
/// \endcode
class ScopeGuard {
 public:
  ScopeGuard(int& argc, char** argv);
  ScopeGuard();
  ~ScopeGuard();
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;

 private:
  bool owns_kokkos_ = false;
  bool owns_mpi_ = false;
};

/// Library version string ("major.minor.patch").
const char* version();
/// The Kokkos execution spaces this build enabled, e.g. "Serial OpenMP".
const char* enabled_backends();

}  // namespace hfisher
