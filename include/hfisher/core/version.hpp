#pragma once
/// \file version.hpp
/// \brief Where a build came from (hfisher::version() is in scope_guard.hpp).

namespace hfisher {

/// The git commit the library was built from (12 hex digits; "-dirty" when
/// tracked files differed from it at build time; "unknown" outside a git
/// checkout). Recorded in results and checkpoints so that a run names the
/// code that produced it.
const char* commit();

}  // namespace hfisher
