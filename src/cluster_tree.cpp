#include <hfisher/hmatrix/cluster_tree.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace hfisher {

int ClusterTree::levels_for(int n, int leaf) {
  detail::require(n >= 1, "hfisher::ClusterTree", "size n must be >= 1, got ", n);
  detail::require(leaf >= 1, "hfisher::ClusterTree", "leaf_size must be >= 1, got ", leaf);
  int L = 0;
  while ((long(leaf) << L) < n) ++L;
  detail::require(L <= 24, "hfisher::ClusterTree", "n = ", n, " with leaf_size ", leaf, " needs more than 24 levels");
  return L;
}

void ClusterTree::finish() {
  iperm_.assign(n_, -1);
  for (int p = 0; p < N_; ++p)
    if (perm_[p] >= 0) iperm_[perm_[p]] = p;
}

namespace {
// Places the indices idx (real) into positions [start, start + cap) of perm,
// splitting into halves of capacity cap/2 down to leaves. split(idx) orders
// idx so that its first half should go left.
template <class Split>
void place(std::vector<int>& idx, int start, int cap, int leaf, std::vector<int>& perm, Split&& split) {
  if (cap == leaf) {
    for (size_t i = 0; i < idx.size(); ++i) perm[start + i] = idx[i];
    return;
  }
  split(idx);
  const int half = cap / 2;
  const int nl = std::min<int>(int((idx.size() + 1) / 2), half);
  std::vector<int> left(idx.begin(), idx.begin() + nl), right(idx.begin() + nl, idx.end());
  place(left, start, half, leaf, perm, split);
  place(right, start + half, half, leaf, perm, split);
}
}  // namespace

template <class Split>
ClusterTree ClusterTree::build(int n, int leaf_size, Split&& split) {
  ClusterTree t;
  t.L_ = levels_for(n, leaf_size);
  // a leaf wider than n is one dense block of n: padding it to leaf_size
  // would only allocate (balanced(256, 2^30) asked for 4 GiB)
  leaf_size = std::min(leaf_size, n);
  t.n_ = n;
  t.leaf_ = leaf_size;
  t.N_ = leaf_size << t.L_;
  t.perm_.assign(t.N_, -1);
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  place(idx, 0, t.N_, leaf_size, t.perm_, split);
  t.finish();
  return t;
}

ClusterTree ClusterTree::from_gram(const std::function<double(int, int)>& entry, int n, int leaf_size) {
  constexpr const char* where = "hfisher::ClusterTree::from_gram";
  detail::require(bool(entry), where, "the entry function is empty");
  levels_for(n, leaf_size);  // validates n and leaf_size
  auto A = [&](int i, int j) {
    const double v = entry(i, j);
    detail::require(std::isfinite(v), where, "entry(", i, ", ", j, ") is not finite");
    return v;
  };
  std::vector<double> diag(n);
  for (int i = 0; i < n; ++i) diag[i] = A(i, i);
  // squared Gram distance (clamped: rounding can make it slightly negative)
  auto d2 = [&](int i, int j) { return std::max(0.0, diag[i] + diag[j] - 2 * A(i, j)); };
  auto split = [&](std::vector<int>& v) {
    if (v.size() < 2) return;
    auto farthest = [&](int from) {
      int best = v[0];
      double bd = -1;
      for (int i : v) {
        const double d = i == from ? 0.0 : d2(i, from);
        if (d > bd) {
          bd = d;
          best = i;
        }
      }
      return best;
    };
    const int p = farthest(v[0]);
    const int q = farthest(p);
    std::vector<std::pair<double, int>> key;
    key.reserve(v.size());
    // d(i, p)^2 - d(i, q)^2 = diag_p - diag_q - 2 A_ip + 2 A_iq
    for (int i : v) key.emplace_back(diag[p] - diag[q] - 2 * A(i, p) + 2 * A(i, q), i);
    std::sort(key.begin(), key.end());
    for (size_t t = 0; t < v.size(); ++t) v[t] = key[t].second;
  };
  return build(n, leaf_size, split);
}

ClusterTree ClusterTree::from_gram_factors(const std::vector<double>& G, int n, int m, int leaf_size) {
  constexpr const char* where = "hfisher::ClusterTree::from_gram_factors";
  detail::require(m >= 1, where, "G needs at least one column");
  detail::require(G.size() == size_t(n) * size_t(m), where, "G has ", G.size(),
                  " values, expected n*m = ", long(n) * m);
  for (size_t i = 0; i < G.size(); ++i)
    detail::require(std::isfinite(G[i]), where, "G(", i / m, ", ", i % m, ") is not finite");
  auto entry = [&](int i, int j) {
    double s = 0;
    for (int c = 0; c < m; ++c) s += G[size_t(i) * m + c] * G[size_t(j) * m + c];
    return s;
  };
  return from_gram(entry, n, leaf_size);
}

ClusterTree ClusterTree::balanced(int n, int leaf_size) {
  return build(n, leaf_size, [](std::vector<int>&) {});
}

ClusterTree ClusterTree::from_points(const std::vector<double>& pts, int n, int d, int leaf_size) {
  detail::require(d >= 1, "hfisher::ClusterTree::from_points", "points need at least one coordinate");
  detail::require(pts.size() == size_t(n) * size_t(d), "hfisher::ClusterTree::from_points", "points has ", pts.size(),
                  " values, expected n*d = ", long(n) * d);
  for (size_t i = 0; i < pts.size(); ++i)
    detail::require(std::isfinite(pts[i]), "hfisher::ClusterTree::from_points", "point ", i / d, " coordinate ", i % d,
                    " is not finite");
  auto split = [&](std::vector<int>& v) {
    if (v.size() < 2) return;
    int best = 0;
    double width = -1;
    for (int j = 0; j < d; ++j) {
      double lo = pts[size_t(v[0]) * d + j], hi = lo;
      for (int i : v) {
        lo = std::min(lo, pts[size_t(i) * d + j]);
        hi = std::max(hi, pts[size_t(i) * d + j]);
      }
      if (hi - lo > width) {
        width = hi - lo;
        best = j;
      }
    }
    std::stable_sort(v.begin(), v.end(),
                     [&](int a, int b) { return pts[size_t(a) * d + best] < pts[size_t(b) * d + best]; });
  };
  return build(n, leaf_size, split);
}

ClusterTree ClusterTree::from_permutation(int n, int leaf_size, int levels, const std::vector<int>& perm) {
  constexpr const char* where = "hfisher::ClusterTree::from_permutation";
  detail::require(levels >= 0 && levels <= 24 && leaf_size >= 1, where, "bad levels ", levels, " or leaf size ",
                  leaf_size);
  ClusterTree t;
  t.n_ = n;
  t.leaf_ = leaf_size;
  t.L_ = levels;
  t.N_ = leaf_size << levels;
  detail::require(long(perm.size()) == t.N_ && n >= 1 && n <= t.N_, where, "permutation of length ", perm.size(),
                  " does not fit n = ", n, ", N = ", t.N_);
  std::vector<char> seen(n, 0);
  for (int p : perm) {
    if (p < 0) continue;
    detail::require(p < n && !seen[p], where, "permutation is not a bijection onto [0, n)");
    seen[p] = 1;
  }
  detail::require(std::count(seen.begin(), seen.end(), 1) == n, where, "permutation misses indices");
  t.perm_ = perm;
  t.finish();
  return t;
}

}  // namespace hfisher
