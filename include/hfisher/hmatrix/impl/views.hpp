#pragma once
/// \file hmatrix/impl/views.hpp
/// \brief Per-level views on tree-ordered data: an (N, r) block of vectors
/// seen as the (2^l, N/2^l, r) batch of its level-l nodes, or the left (even)
/// or right (odd) children only; and the (2^(l-1), m, m) batch of
/// off-diagonal blocks A(I_2p, I_2p+1) of a dense (N, N) matrix.

#include <hfisher/core/types.hpp>

namespace hfisher {
namespace detail {

template <class T, class Mem>
using Strided3 = Kokkos::View<T***, Kokkos::LayoutStride, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

enum class Nodes { All, Left, Right };

/// X: (N, r) contiguous row-major; level l; which nodes.
template <class View2>
auto level_nodes(const View2& X, int level, Nodes which) {
  using T = typename View2::value_type;
  using Mem = typename View2::memory_space;
  const long N = X.extent(0), r = X.extent(1), m = N >> level, nodes = 1L << level;
  if (which == Nodes::All) return Strided3<T, Mem>(X.data(), Kokkos::LayoutStride(nodes, m * r, m, r, r, 1));
  const long off = which == Nodes::Left ? 0 : m * r;
  return Strided3<T, Mem>(X.data() + off, Kokkos::LayoutStride(nodes / 2, 2 * m * r, m, r, r, 1));
}

/// P: (N, N) contiguous row-major; the off-diagonal blocks A(I_2p, I_2p+1)
/// of level l >= 1: (2^(l-1), m, m).
template <class View2>
auto offdiag_blocks(const View2& P, int level) {
  using T = typename View2::value_type;
  using Mem = typename View2::memory_space;
  const long N = P.extent(0), m = N >> level, pairs = 1L << (level - 1);
  return Strided3<T, Mem>(P.data() + m, Kokkos::LayoutStride(pairs, 2 * m * (N + 1), m, N, m, 1));
}

/// The leaf diagonal blocks of P: (2^L, leaf, leaf).
template <class View2>
auto diag_blocks(const View2& P, int leaf) {
  using T = typename View2::value_type;
  using Mem = typename View2::memory_space;
  const long N = P.extent(0), nodes = N / leaf;
  return Strided3<T, Mem>(P.data(), Kokkos::LayoutStride(nodes, long(leaf) * (N + 1), leaf, N, leaf, 1));
}

/// Columns [c0, c0 + nc) of a rank-3 view.
template <class View3>
auto cols(const View3& A, long c0, long nc) {
  return Kokkos::subview(A, Kokkos::ALL(), Kokkos::ALL(), Kokkos::make_pair(c0, c0 + nc));
}
/// Rows [r0, r0 + nr) of a rank-3 view.
template <class View3>
auto rows(const View3& A, long r0, long nr) {
  return Kokkos::subview(A, Kokkos::ALL(), Kokkos::make_pair(r0, r0 + nr), Kokkos::ALL());
}

}  // namespace detail
}  // namespace hfisher
