#pragma once
/// \file io.hpp
/// \brief Binary file helpers shared by every saved object: typed put/get of
/// scalars and Views, and an atomic write (a uniquely named temporary renamed
/// into place, so a failure never leaves a half-written file under the
/// requested name and a planted symlink is never followed).

#include <hfisher/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
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

/// Throws unless at least `bytes` bytes remain to be read from `i` (when the
/// stream can tell its size): a size field read back is checked against the
/// file before anything of that size is allocated.
inline void require_available(std::istream& i, unsigned long long bytes, const std::string& what, const char* where) {
  const auto here = i.tellg();
  if (here < 0) return;  // not seekable: the read itself reports truncation
  i.seekg(0, std::ios::end);
  const auto end = i.tellg();
  i.seekg(here);
  if (end < 0) return;
  const unsigned long long left = static_cast<unsigned long long>(end - here);
  detail::require(bytes <= left, where, what, ": file is truncated or corrupt (a size field asks for ", bytes,
                  " bytes, ", left, " remain)");
}

/// A batch of blocks with its shape: three extents (int64; 1 for the
/// dimensions a rank-2 View lacks), then the entries (put_view).
template <class V>
void put_block(std::ostream& o, const V& v) {
  static_assert(V::rank == 2 || V::rank == 3, "put_block: a rank-2 or rank-3 View");
  for (int d = 0; d < 3; ++d) put(o, std::int64_t(d < int(V::rank) ? v.extent(d) : 1));
  put_view(o, v);
}

/// Reads a block written by put_block that must have extents (e0, e1, e2)
/// (e2 = 1 for a rank-2 View): one of another shape is refused, naming both,
/// and the entries are checked to be in the file before the View is
/// allocated.
template <class V>
V get_block(std::istream& i, long e0, long e1, long e2, const std::string& what, const char* where) {
  static_assert(V::rank == 2 || V::rank == 3, "get_block: a rank-2 or rank-3 View");
  long e[3];
  for (int d = 0; d < 3; ++d) e[d] = long(get<std::int64_t>(i, what, where));
  detail::require(e[0] == e0 && e[1] == e1 && e[2] == e2, where, what, ": a block of ", e[0], "x", e[1], "x", e[2],
                  " where this matrix has ", e0, "x", e1, "x", e2);
  require_available(i, static_cast<unsigned long long>(e0) * e1 * e2 * sizeof(typename V::value_type), what, where);
  V v;
  if constexpr (V::rank == 3)
    v = V(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::io::block"), e0, e1, e2);
  else
    v = V(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::io::block"), e0, e1);
  get_view(i, v, what, where);
  return v;
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

/// The head of every hfisher record: the 8-byte magic, the format version
/// and the scalar size in bytes (uint32 each).
inline void put_header(std::ostream& o, const char (&magic)[8], std::uint32_t version, std::uint32_t scalar_size) {
  o.write(magic, 8);
  put(o, version);
  put(o, scalar_size);
}

/// The head after its magic: that this build reads the version (first..last)
/// and the record holds scalars of scalar_size bytes. Returns the version.
inline std::uint32_t expect_version_and_scalar(std::istream& i, std::uint32_t first, std::uint32_t last,
                                               std::uint32_t scalar_size, const std::string& what, const char* where) {
  const auto v = get<std::uint32_t>(i, what, where);
  if (first == last)
    detail::require(v == first, where, what, " has format version ", v, ", this build reads ", first);
  else
    detail::require(v >= first && v <= last, where, what, " has format version ", v, ", this build reads ", first,
                    " to ", last);
  const auto ss = get<std::uint32_t>(i, what, where);
  detail::require(ss == scalar_size, where, what, " holds ", ss * 8, "-bit scalars, expected ", scalar_size * 8);
  return v;
}

/// Checks a head written by put_header: the magic (`role` says what kind of
/// file was expected), then that this build reads the version (any of
/// first..last) and the file holds scalars of scalar_size bytes. Returns the
/// file's version.
inline std::uint32_t expect_header_versions(std::istream& i, const char (&magic)[8], std::uint32_t first,
                                            std::uint32_t last, std::uint32_t scalar_size, const std::string& what,
                                            const char* where, const char* role) {
  expect_magic(i, magic, what, where, role);
  return expect_version_and_scalar(i, first, last, scalar_size, what, where);
}

/// expect_header_versions for a format whose version 1 began with the 8-byte
/// tag `legacy` instead of a head (no version, no scalar size): returns 0
/// when the record starts with that tag (consumed; the caller reads or
/// refuses the old record), else the version of the checked head.
inline std::uint32_t expect_header_or_legacy(std::istream& i, const char (&magic)[8], const char (&legacy)[9],
                                             std::uint32_t first, std::uint32_t last, std::uint32_t scalar_size,
                                             const std::string& what, const char* where, const char* role) {
  char m[8] = {};
  i.read(m, 8);
  const std::string tag(m, 8);
  if (i && tag == std::string(legacy, 8)) return 0;
  detail::require(bool(i) && tag == std::string(magic, 8), where, what, " is not ", role);
  return expect_version_and_scalar(i, first, last, scalar_size, what, where);
}

/// expect_header_versions for a format with one version.
inline void expect_header(std::istream& i, const char (&magic)[8], std::uint32_t version, std::uint32_t scalar_size,
                          const std::string& what, const char* where, const char* role) {
  expect_header_versions(i, magic, version, version, scalar_size, what, where, role);
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
///
/// A sealed file (`sealed = true`, the binary formats) ends with a 20-byte
/// trailer: the tag "HFSEAL01", the payload length (uint64) and the CRC-32C
/// (Castagnoli) of the payload (uint32), all little-endian; SealedFile
/// verifies it on load.
class AtomicFile {
 public:
  AtomicFile(const std::string& path, const char* where, bool sealed = false);
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

/// atomic_write with a checksum trailer (see AtomicFile): every binary
/// object and checkpoint hfisher saves is written this way.
template <class Body>
void atomic_write_sealed(const std::string& path, const char* where, Body&& body) {
  AtomicFile f(path, where, true);
  body(f.stream());
  f.commit();
}

/// A file opened for loading, its checksum verified first. A sealed file
/// whose length or CRC-32C does not match its trailer is refused
/// ("checksum mismatch"); stream() then reads the payload only (tellg/seekg
/// see the payload's bounds, so io::require_available works). A file
/// without the trailer (written before seals existed) is read whole and
/// unverified: sealed() is false. Loaders call expect_end() after the
/// record: bytes left over are refused.
class SealedFile {
 public:
  SealedFile(const std::string& path, const char* where);
  ~SealedFile();
  SealedFile(const SealedFile&) = delete;
  SealedFile& operator=(const SealedFile&) = delete;
  std::istream& stream();
  bool sealed() const;
  /// Throws unless the whole payload has been read.
  void expect_end() const;

 private:
  struct Impl;
  Impl* impl_;
};

/// CRC-32C (Castagnoli polynomial, reflected, as iSCSI and ext4 use) of a
/// buffer, continuing from `crc` (0 to start).
std::uint32_t crc32c(const void* data, std::size_t bytes, std::uint32_t crc = 0);

}  // namespace io
}  // namespace hfisher
