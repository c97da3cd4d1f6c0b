#pragma once
/// \file hmatrix/impl/tree_ops.hpp
/// \brief Pieces every H-matrix format shares: the device copies of a
/// cluster tree's permutation, moving vector blocks between the user's order
/// and tree order, the symmetry check of dense input, and per-level rank
/// statistics.

#include <hfisher/core/error.hpp>
#include <hfisher/core/math.hpp>
#include <hfisher/core/validate.hpp>
#include <hfisher/hmatrix/cluster_tree.hpp>
#include <hfisher/hmatrix/compression.hpp>

#include <string>
#include <vector>

namespace hfisher {
namespace detail {

/// perm (N) and iperm (n) of a tree on the device.
template <class Mem>
void device_permutations(const ClusterTree& tree, Kokkos::View<int*, Mem>& perm, Kokkos::View<int*, Mem>& iperm) {
  const int N = tree.padded_size(), n = tree.size();
  perm = Kokkos::View<int*, Mem>("hfisher::hmatrix::perm", N);
  iperm = Kokkos::View<int*, Mem>("hfisher::hmatrix::iperm", n);
  auto ph = Kokkos::create_mirror_view(perm);
  auto ih = Kokkos::create_mirror_view(iperm);
  for (int p = 0; p < N; ++p) ph(p) = tree.perm()[p];
  for (int i = 0; i < n; ++i) ih(i) = tree.iperm()[i];
  Kokkos::deep_copy(perm, ph);
  Kokkos::deep_copy(iperm, ih);
}

/// user (n, r) -> tree order (N, r), zero on padding.
template <class Exec, class M, class IV>
M to_tree(const M& X, const IV& perm, long n, const char* where) {
  using T = typename M::non_const_value_type;
  const int N = perm.extent(0), r = X.extent(1);
  detail::require(long(X.extent(0)) == n, where, "vector block has ", X.extent(0), " rows, the matrix has n = ", n);
  M Xp(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::hmatrix::Xp"), N, r);
  Kokkos::parallel_for(
      "hfisher::hmatrix::to_tree", Kokkos::RangePolicy<Exec>(0, N), KOKKOS_LAMBDA(const int p) {
        const int i = perm(p);
        for (int c = 0; c < r; ++c) Xp(p, c) = i >= 0 ? X(i, c) : T(0);
      });
  return Xp;
}

/// tree order (N, r) -> user (n, r).
template <class Exec, class M, class IV>
void from_tree(const M& Xp, const M& Y, const IV& iperm, const char* where) {
  const int n = iperm.extent(0), r = Xp.extent(1);
  detail::require(long(Y.extent(0)) == n && Y.extent(1) == Xp.extent(1), where, "output block is ", Y.extent(0), "x",
                  Y.extent(1), ", expected ", n, "x", r);
  Kokkos::parallel_for(
      "hfisher::hmatrix::from_tree", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) {
        const int p = iperm(i);
        for (int c = 0; c < r; ++c) Y(i, c) = Xp(p, c);
      });
}

/// Throws unless the dense n x n A is symmetric to 1000 eps max|A|.
template <class Scalar, class Exec, class AView>
void check_symmetric(const Exec& space, const AView& A, const char* where) {
  const int n = A.extent(0);
  Scalar amax = 0, dmax = 0;
  Kokkos::parallel_reduce(
      "hfisher::hmatrix::amax", Kokkos::RangePolicy<Exec>(space, 0, n),
      KOKKOS_LAMBDA(const int i, Scalar& v) {
        for (int j = 0; j < n; ++j) v = math::max(v, Scalar(math::abs(Scalar(A(i, j)))));
      },
      Kokkos::Max<Scalar>(amax));
  Kokkos::parallel_reduce(
      "hfisher::hmatrix::asym", Kokkos::RangePolicy<Exec>(space, 0, n),
      KOKKOS_LAMBDA(const int i, Scalar& v) {
        for (int j = 0; j < i; ++j) v = math::max(v, Scalar(math::abs(Scalar(A(i, j) - A(j, i)))));
      },
      Kokkos::Max<Scalar>(dmax));
  detail::require(dmax <= Scalar(1000) * math::limits<Scalar>::eps() * amax, where,
                  "A is not symmetric: max |A(i,j) - A(j,i)| = ", double(dmax), " with max |A| = ", double(amax));
}

/// Symmetrizes every entry of a batch of square blocks in place.
template <class Exec, class B>
void symmetrize(const Exec& space, const B& A) {
  const int nb = A.extent(0), m = A.extent(1);
  Kokkos::parallel_for(
      "hfisher::hmatrix::symmetrize", Kokkos::RangePolicy<Exec>(space, 0, nb), KOKKOS_LAMBDA(const int b) {
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < i; ++j) {
            const auto v = (A(b, i, j) + A(b, j, i)) / 2;
            A(b, i, j) = v;
            A(b, j, i) = v;
          }
      });
}

/// out(i) = the diagonal entry of user index i in the leaf blocks
/// DL (N / leaf, leaf, leaf), tree order.
template <class Exec, class V, class B, class IV>
V leaf_diagonal(const B& DL, const IV& iperm, const char* label) {
  const int n = iperm.extent(0), leaf = DL.extent(1);
  V out(std::string(label), n);
  Kokkos::parallel_for(
      "hfisher::hmatrix::leaf_diagonal", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) {
        const int p = iperm(i);
        out(i) = DL(p / leaf, p % leaf, p % leaf);
      });
  return out;
}

/// The dense n x n matrix of a format, by applying it to the identity
/// (small n only).
template <class Exec, class M, class Fmt>
M dense_by_apply(const Fmt& H, int n, const char* where) {
  detail::require(n <= 16384, where, "n = ", n, " is too large to form densely");
  M I("hfisher::hmatrix::I", n, n), A("hfisher::hmatrix::dense", n, n);
  Kokkos::parallel_for(
      "hfisher::hmatrix::eye", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) { I(i, i) = 1; });
  H.apply(I, A);
  return A;
}

/// min, mean, max of one level's block ranks, with the level's storage rank.
inline RankStats rank_stats(int level, const std::vector<int>& ranks, int padded,
                            const std::vector<char>& capped = {}) {
  RankStats s;
  for (char c : capped) s.capped += c ? 1 : 0;
  s.level = level;
  s.padded = padded;
  s.min = ranks.empty() ? 0 : ranks[0];
  double sum = 0;
  for (int r : ranks) {
    s.min = std::min(s.min, r);
    s.max = std::max(s.max, r);
    sum += r;
  }
  s.mean = ranks.empty() ? 0 : sum / ranks.size();
  return s;
}

}  // namespace detail
}  // namespace hfisher
