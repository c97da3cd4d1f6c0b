#pragma once
/// \file error.hpp
/// \brief hfisher::Error and the argument checks used at the public boundary.

#include <new>
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

/// The Error for a NaN or Inf where a finite value is required (an input
/// checked at the boundary, or a loss that overflowed): a caller can tell a
/// diverged run from other errors by type, not by the message's words.
class NonFiniteError : public Error {
 public:
  explicit NonFiniteError(const std::string& what) : Error(what) {}
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

/// Called from a catch block: rethrows the exception being handled, with an
/// allocation failure turned into hfisher::Error("<where>: out of memory:
/// ..."). Kokkos reports a failed View allocation as a std::runtime_error
/// whose text names the View's label, its memory space and the size asked
/// for; the standard library reports one as std::bad_alloc. Every other
/// exception passes through unchanged. The public operations that allocate
/// in proportion to their input (H-matrix construction and factorization,
/// Fisher sample collection and construction) end in this.
[[noreturn]] inline void rethrow_allocation_failure(const char* where) {
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc& e) {
    throw Error(concat(where, ": out of memory (", e.what(), ")"));
  } catch (const std::runtime_error& e) {
    std::string w = e.what();
    if (w.find("Kokkos failed to allocate") == std::string::npos) throw;
    while (!w.empty() && (w.back() == '\n' || w.back() == ' ')) w.pop_back();
    throw Error(concat(where, ": out of memory: ", w));
  }
}

}  // namespace detail
}  // namespace hfisher
