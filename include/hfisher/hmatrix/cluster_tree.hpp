#pragma once
/// \file cluster_tree.hpp
/// \brief hfisher::ClusterTree: a complete binary partition of [0, n) padded
/// to N = leaf_size * 2^L positions, and the permutation between the user's
/// index order and tree order. Structure only (no values); host-side, with a
/// device copy of the permutation for the kernels.
///
/// Tree position p at level l belongs to node p / (N / 2^l). Every node of
/// level l has exactly N / 2^l positions; a node with fewer real indices is
/// filled with padding positions (perm == -1), which formats treat as
/// decoupled identity rows, invisible to the user.

#include <hfisher/core/error.hpp>
#include <hfisher/core/types.hpp>

#include <functional>
#include <vector>

namespace hfisher {

class ClusterTree {
 public:
  ClusterTree() = default;

  /// Index order kept: [0, n) split evenly, leaves of leaf_size positions.
  /// (Every constructor: a leaf_size above n becomes n, one dense leaf
  /// without padding.)
  static ClusterTree balanced(int n, int leaf_size);

  /// Recursive bisection of n points (host array, row-major n x d) along the
  /// widest coordinate of each node, split at the median.
  static ClusterTree from_points(const std::vector<double>& points, int n, int d, int leaf_size);

  /// Same from a host- or device-resident Kokkos View (n, d).
  template <class PointsView>
  static ClusterTree from_points(const PointsView& pts, int leaf_size) {
    static_assert(PointsView::rank == 2, "ClusterTree::from_points: points must be a rank-2 view (n, d)");
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), pts);
    const int n = pts.extent(0), d = pts.extent(1);
    std::vector<double> p(size_t(n) * d);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < d; ++j) p[size_t(i) * d + j] = double(h(i, j));
    return from_points(p, n, d, leaf_size);
  }

  /// Geometry-oblivious ordering for matrices without coordinates (GOFMM:
  /// Yu, Levitt, Reiz & Biros, SC17): indices are split recursively by the
  /// Gram distance d(i, j)^2 = A_ii + A_jj - 2 A_ij of a symmetric positive
  /// semi-definite A (the distance between the vectors whose inner products
  /// A holds). Per node: the index p farthest from a first index, q farthest
  /// from p, and a split at the median of d(i, p)^2 - d(i, q)^2 (projection
  /// on the p-q axis); O(n log n) entries in all. `entry(i, j)` returns A_ij
  /// (host; user indices); a non-finite entry is an error.
  static ClusterTree from_gram(const std::function<double(int, int)>& entry, int n, int leaf_size);
  /// Same for A = G G^T (+ a diagonal, which does not change the split):
  /// G host row-major n x m, so d(i, j) = |g_i - g_j|.
  static ClusterTree from_gram_factors(const std::vector<double>& G, int n, int m, int leaf_size);
  /// Same from a host- or device-resident Kokkos View G (n, m).
  template <class GView>
  static ClusterTree from_gram_factors(const GView& G, int leaf_size) {
    static_assert(GView::rank == 2, "ClusterTree::from_gram_factors: G must be a rank-2 view (n, m)");
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), G);
    const int n = G.extent(0), m = G.extent(1);
    std::vector<double> g(size_t(n) * m);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < m; ++j) g[size_t(i) * m + j] = double(h(i, j));
    return from_gram_factors(g, n, m, leaf_size);
  }

  int size() const { return n_; }         ///< n, the user's size
  int padded_size() const { return N_; }  ///< N = leaf_size * 2^levels
  int leaf_size() const { return leaf_; }
  int levels() const { return L_; }  ///< L: leaves are at level L
  int block_size(int level) const { return N_ >> level; }
  /// perm[p] = user index at tree position p, or -1 for padding (size N).
  const std::vector<int>& perm() const { return perm_; }
  /// iperm[i] = tree position of user index i (size n).
  const std::vector<int>& iperm() const { return iperm_; }

  bool operator==(const ClusterTree& o) const {
    return n_ == o.n_ && N_ == o.N_ && leaf_ == o.leaf_ && L_ == o.L_ && perm_ == o.perm_;
  }

  /// Rebuilds a tree from a stored permutation (used by load); validates it.
  static ClusterTree from_permutation(int n, int leaf_size, int levels, const std::vector<int>& perm);

 private:
  int n_ = 0, N_ = 0, leaf_ = 0, L_ = 0;
  std::vector<int> perm_, iperm_;
  static int levels_for(int n, int leaf_size);
  template <class Split>
  static ClusterTree build(int n, int leaf_size, Split&& split);
  void finish();
};

}  // namespace hfisher
