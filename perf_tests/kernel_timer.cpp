/// \file kernel_timer.cpp
/// \brief hfisher-kernel-timer: a Kokkos Tools library that times every
/// Kokkos launch and deep copy by name, to see where a driver's time goes.
///
/// Load it into any hfisher program (no rebuild):
///
///   export KOKKOS_PROFILE_LIBRARY=build/perf_tests/libhfisher-kernel-timer.so
///   build/drivers/hfisher-bench hodlr --sizes 32768 --no-hss
///
/// At Kokkos::finalize it prints to stderr, for the 40 names with the most
/// time: seconds, launches and name (Kokkos labels deep copies "deep_copy
/// <source> -> <destination>"; a deep copy that launches a kernel is also
/// counted under that kernel's name). With HFISHER_KT_TRACE=<substring> it
/// also prints every launch whose name contains the substring, with its
/// seconds, as it ends ("KTT <name> <s>"), e.g. one line per tree level.
///
/// Times are wall time from launch to return, which on the host includes
/// the whole parallel region; on a GPU, launches are asynchronous, so set
/// CUDA_LAUNCH_BLOCKING=1 for per-kernel times there. A profiling aid, not
/// a benchmark of record: the drivers' tables are.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

struct SpaceHandle {
  char name[64];
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Totals {
  double seconds = 0;
  long count = 0;
};

std::map<std::string, Totals>& totals() {
  static std::map<std::string, Totals> t;
  return t;
}

// open launches by id (Kokkos may nest a deep copy's kernel in a deep copy)
std::map<std::uint64_t, std::pair<std::string, double>>& open_launches() {
  static std::map<std::uint64_t, std::pair<std::string, double>> o;
  return o;
}

std::vector<std::pair<std::string, double>>& open_copies() {
  static std::vector<std::pair<std::string, double>> c;
  return c;
}

std::uint64_t next_id = 0;

void close(const std::string& name, double start) {
  const double s = now() - start;
  auto& t = totals()[name];
  t.seconds += s;
  ++t.count;
  const char* trace = std::getenv("HFISHER_KT_TRACE");
  if (trace != nullptr && name.find(trace) != std::string::npos) std::fprintf(stderr, "KTT %s %.6f\n", name.c_str(), s);
}

void begin(const char* name, std::uint64_t* id) {
  *id = next_id++;
  open_launches()[*id] = {name, now()};
}

void end(std::uint64_t id) {
  auto it = open_launches().find(id);
  if (it == open_launches().end()) return;
  close(it->second.first, it->second.second);
  open_launches().erase(it);
}

}  // namespace

extern "C" {

void kokkosp_init_library(const int, const std::uint64_t, const std::uint32_t, void*) {}

void kokkosp_finalize_library() {
  std::vector<std::pair<double, std::string>> rows;
  double all = 0;
  for (const auto& [name, t] : totals()) {
    rows.emplace_back(t.seconds, name);
    all += t.seconds;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::fprintf(stderr, "hfisher-kernel-timer: %zu names, %.4f s in all (nested deep copies count twice)\n", rows.size(),
               all);
  std::fprintf(stderr, "%10s %8s  %s\n", "seconds", "launches", "name");
  for (std::size_t i = 0; i < rows.size() && i < 40; ++i)
    std::fprintf(stderr, "%10.4f %8ld  %s\n", rows[i].first, totals()[rows[i].second].count, rows[i].second.c_str());
}

void kokkosp_begin_parallel_for(const char* name, const std::uint32_t, std::uint64_t* id) { begin(name, id); }
void kokkosp_end_parallel_for(const std::uint64_t id) { end(id); }
void kokkosp_begin_parallel_reduce(const char* name, const std::uint32_t, std::uint64_t* id) { begin(name, id); }
void kokkosp_end_parallel_reduce(const std::uint64_t id) { end(id); }
void kokkosp_begin_parallel_scan(const char* name, const std::uint32_t, std::uint64_t* id) { begin(name, id); }
void kokkosp_end_parallel_scan(const std::uint64_t id) { end(id); }

void kokkosp_begin_deep_copy(SpaceHandle, const char* dst_name, const void*, SpaceHandle, const char* src_name,
                             const void*, std::uint64_t) {
  open_copies().emplace_back(std::string("deep_copy ") + src_name + " -> " + dst_name, now());
}

void kokkosp_end_deep_copy() {
  if (open_copies().empty()) return;
  const auto c = open_copies().back();
  open_copies().pop_back();
  close(c.first, c.second);
}

}  // extern "C"
