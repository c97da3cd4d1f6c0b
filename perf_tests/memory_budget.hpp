#pragma once
// One memory budget for every driver: given in GiB (--memory-budget) or
// derived from the memory the system reports available when the run
// starts, and checked up front, before the run allocates, with the estimate
// in the message.

#include <hfisher/core/error.hpp>

#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace hfisher_cli {

/// Bytes the system reports available now (MemAvailable of /proc/meminfo),
/// or the physical memory where that cannot be read.
inline double available_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kib = 0;
  std::string unit;
  while (f >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024.0;
  return double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGE_SIZE));
}

/// The budget of a run in bytes: `gib` GiB when > 0, else 80% of the memory
/// available now.
inline std::size_t memory_budget_bytes(double gib) {
  const double b = gib > 0 ? gib * double(std::size_t(1) << 30) : 0.8 * available_memory_bytes();
  return std::size_t(b);
}

inline std::string mib_text(double bytes) {
  char s[64];
  std::snprintf(s, sizeof s, "%.1f MiB", bytes / double(1 << 20));
  return s;
}

/// Throws hfisher::Error("<program>: <what>: about X MiB needed, more than
/// the memory budget of Y MiB ...") when need > budget.
inline void check_memory(double need, std::size_t budget, const char* program, const std::string& what) {
  if (need <= double(budget)) return;
  throw hfisher::Error(std::string(program) + ": " + what + ": about " + mib_text(need) +
                       " needed, more than the memory budget of " + mib_text(double(budget)) +
                       " (--memory-budget GiB; by default 80% of the memory available when the run starts): " +
                       "choose smaller sizes, or raise the budget if the machine has the memory");
}

}  // namespace hfisher_cli
