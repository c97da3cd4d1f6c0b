#pragma once
/// \file error.hpp
/// \brief hfisher::Error and the argument checks used at the public boundary.

#include <sstream>
#include <stdexcept>
#include <string>

namespace hfisher {

/// Every error hfisher reports: bad sizes, NaN/Inf, non-SPD blocks,
/// impossible ranks or tolerances, missing or malformed files.
/// The message names the function, the argument and, for batched kernels,
/// the batch entry.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  os.precision(6);
  (os << ... << args);
  return os.str();
}

/// Throws hfisher::Error("<where>: <message>") when cond is false.
template <class... Args>
inline void require(bool cond, const char* where, const Args&... msg) {
  if (!cond) throw Error(concat(where, ": ", msg...));
}

}  // namespace detail
}  // namespace hfisher
