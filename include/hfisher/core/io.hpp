#pragma once
/// \file io.hpp
/// \brief Binary file helpers shared by every saved object: typed put/get of
/// scalars and Views, and an atomic write (a temporary renamed into place, so
/// a failure never leaves a half-written file under the requested name).

#include <hfisher/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <istream>
#include <ostream>
#include <string>
#include <system_error>

namespace hfisher {
namespace io {

template <class T>
void put(std::ostream& o, const T& v) {
  o.write(reinterpret_cast<const char*>(&v), sizeof(T));
}

/// Reads one value; throws naming `what` (a path) when the stream ends.
template <class T>
T get(std::istream& i, const std::string& what, const char* where) {
  T v{};
  i.read(reinterpret_cast<char*>(&v), sizeof(T));
  detail::require(bool(i), where, what, ": file is truncated");
  return v;
}

template <class V>
void put_view(std::ostream& o, const V& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  o.write(reinterpret_cast<const char*>(h.data()), std::streamsize(h.span() * sizeof(typename V::value_type)));
}

template <class V>
void get_view(std::istream& i, const V& v, const std::string& what, const char* where) {
  auto h = Kokkos::create_mirror_view(v);
  i.read(reinterpret_cast<char*>(h.data()), std::streamsize(h.span() * sizeof(typename V::value_type)));
  detail::require(bool(i), where, what, ": file is truncated");
  Kokkos::deep_copy(v, h);
}

/// Checks an 8-byte tag; `role` says what kind of file was expected.
inline void expect_magic(std::istream& i, const char (&magic)[8], const std::string& what, const char* where,
                         const char* role) {
  char m[8] = {};
  i.read(m, 8);
  bool ok = bool(i);
  for (int k = 0; ok && k < 8; ++k) ok = m[k] == magic[k];
  detail::require(ok, where, what, " is not ", role);
}

/// Writes `path` through `body(std::ostream&)` into `path.tmp` and renames it
/// into place; on any failure the temporary is removed and nothing is left
/// under `path` that was not there before.
template <class Body>
void atomic_write(const std::string& path, const char* where, Body&& body) {
  const std::string tmp = path + ".tmp";
  try {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    detail::require(bool(o), where, "cannot open ", tmp, " for writing");
    body(o);
    o.flush();
    detail::require(bool(o), where, "write to ", tmp, " failed");
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(detail::concat(where, ": cannot rename ", tmp, " to ", path, ": ", ec.message()));
  }
}

}  // namespace io
}  // namespace hfisher
