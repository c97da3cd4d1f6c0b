#pragma once
/// \file io.hpp
/// \brief Binary file helpers shared by every saved object: typed put/get of
/// scalars and Views, and an atomic write (a uniquely named temporary renamed
/// into place, so a failure never leaves a half-written file under the
/// requested name and a planted symlink is never followed).

#include <hfisher/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <istream>
#include <ostream>
#include <string>

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

/// A file written under a temporary name and renamed into place by commit().
///
/// The temporary is created in the directory of `path` with a fresh random
/// name (`<path>.tmp.<16 hex digits>`), opened with O_CREAT | O_EXCL |
/// O_NOFOLLOW: a symlink or file planted under any name is never followed or
/// reused, and two writers of one path never share a temporary. commit()
/// flushes, fsyncs and renames; the destructor of an uncommitted file removes
/// the temporary, so a failure leaves nothing new under `path`. Errors name
/// the file and the system's reason (e.g. "No space left on device").
class AtomicFile {
 public:
  AtomicFile(const std::string& path, const char* where);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// The stream writing the temporary.
  std::ostream& stream();
  /// The temporary's name (for messages and tests).
  const std::string& temporary() const;
  /// Flush, fsync, close and rename onto `path`; throws hfisher::Error naming
  /// the step that failed and the system's reason.
  void commit();

 private:
  struct Impl;
  Impl* impl_;
};

/// Writes `path` through `body(std::ostream&)` into a fresh temporary (see
/// AtomicFile) and renames it into place; on any failure the temporary is
/// removed and nothing is left under `path` that was not there before.
template <class Body>
void atomic_write(const std::string& path, const char* where, Body&& body) {
  AtomicFile f(path, where);
  body(f.stream());
  f.commit();
}

}  // namespace io
}  // namespace hfisher
