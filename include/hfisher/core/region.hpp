#pragma once
/// \file region.hpp
/// \brief hfisher::detail::Region: names a span of work for Kokkos Tools
/// (kernel timers, the NVTX connector for Nsight Systems), so a profile
/// splits, e.g., a consolidation into sample collection, construction per
/// layer and the merge. No cost when no tool is loaded.

#include <Kokkos_Core.hpp>

#include <string>

namespace hfisher {
namespace detail {

/// Kokkos::Profiling::pushRegion on construction, popRegion on destruction.
class Region {
 public:
  explicit Region(const std::string& name) { Kokkos::Profiling::pushRegion(name); }
  ~Region() { Kokkos::Profiling::popRegion(); }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
};

}  // namespace detail
}  // namespace hfisher
