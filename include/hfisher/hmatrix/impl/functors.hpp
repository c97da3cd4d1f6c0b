#pragma once
/// \file hmatrix/impl/functors.hpp
/// \brief The per-node and per-pair kernels of the HSS construction and of
/// the HODLR and HSS factorizations, as named functors.
///
/// nvcc allows no extended device lambda in a private member function or a
/// constructor, so a member that launched a lambda had to be public. With
/// these functors the construction and factorization steps are private
/// members again. Each functor holds the views it reads and writes (by
/// value, as a lambda's capture would) and the sizes it loops over.

#include <hfisher/core/math.hpp>
#include <hfisher/core/random.hpp>
#include <hfisher/core/types.hpp>
#include <hfisher/kernels/gemm.hpp>

#include <cstdint>

namespace hfisher {
namespace detail {

/// Sum over rows p of sum_c Y(p, c)^2, c < cols (a reduction).
template <class M>
struct RowSquaresSum {
  using value_type = typename M::non_const_value_type;
  M Y;
  int cols;
  KOKKOS_INLINE_FUNCTION void operator()(const int p, value_type& v) const {
    for (int c = 0; c < cols; ++c) v += Y(p, c) * Y(p, c);
  }
};

/// Sum of the entries x(b) (a reduction).
template <class V>
struct EntrySum {
  using value_type = typename V::non_const_value_type;
  V x;
  KOKKOS_INLINE_FUNCTION void operator()(const int b, value_type& v) const { v += x(b); }
};

/// Per node b: To(b, c, i) = From(b, i, c), i < m, c < s.
template <class B>
struct NodeTranspose {
  B From, To;
  int m, s;
  KOKKOS_INLINE_FUNCTION void operator()(const int b) const {
    for (int i = 0; i < m; ++i)
      for (int c = 0; c < s; ++c) To(b, c, i) = From(b, i, c);
  }
};

/// Per node b: tail(b, i) = |R(i:, :)|_F^2 of the upper triangle R of a
/// pivoted QR held in Z (q0 rows, w columns); tail(b, q0) = 0.
template <class B, class T>
struct TrailingRowNorms {
  B Z;
  T tail;
  int q0, w;
  KOKKOS_INLINE_FUNCTION void operator()(const int b) const {
    double acc = 0;
    tail(b, q0) = 0;
    for (int i = q0 - 1; i >= 0; --i) {
      for (int j = i; j < w; ++j) acc += double(Z(b, i, j)) * double(Z(b, i, j));
      tail(b, i) = acc;
    }
  }
};

/// Per node b: Rt(b, :q, :w) = the first kept(b) rows of the upper triangle
/// held in Z, zero elsewhere.
template <class B, class IV>
struct KeptUpperRows {
  B Z, Rt;
  IV kept;
  int q, w;
  KOKKOS_INLINE_FUNCTION void operator()(const int b) const {
    using T = typename B::non_const_value_type;
    for (int i = 0; i < q; ++i)
      for (int j = 0; j < w; ++j) Rt(b, i, j) = i < kept(b) && j >= i ? Z(b, i, j) : T(0);
  }
};

/// Per node b: W(b, :, c) = Us(b, :, c) where that column is a unit vector of
/// a singular value above rounding (relative to S(b, 0)), else Gaussian
/// entries (counter-based, from seed, node, column and row), c < k.
template <class B, class SV>
struct BasisOrRandom {
  B Us, W;
  SV S;
  int m, k;
  std::uint64_t seed;
  KOKKOS_INLINE_FUNCTION void operator()(const int b) const {
    using T = typename B::non_const_value_type;
    for (int c = 0; c < k; ++c) {
      T nrm = 0;
      for (int i = 0; i < m; ++i) nrm += Us(b, i, c) * Us(b, i, c);
      const bool good = nrm > T(0.5) && S(b, c) > S(b, 0) * T(1e-3) * math::limits<T>::eps();
      for (int i = 0; i < m; ++i)
        W(b, i, c) = good ? Us(b, i, c) : T(random::normal(seed, std::uint64_t(b) * 4096u + c, std::uint64_t(i)));
    }
  }
};

/// Per child node b of a level: its k x k diagonal block of the parent,
/// Parent(b / 2, off + i, off + j) with off = (b % 2) k. Copies it into
/// Child(b) (add = false) or adds Child(b) to it (add = true; the two
/// siblings write disjoint blocks).
template <class B>
struct ChildDiagonalBlock {
  B Parent, Child;
  int k;
  bool add;
  KOKKOS_INLINE_FUNCTION void operator()(const int b) const {
    const int par = b / 2, off = (b % 2) * k;
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < k; ++j) {
        if (add)
          Parent(par, off + i, off + j) += Child(b, i, j);
        else
          Child(b, i, j) = Parent(par, off + i, off + j);
      }
  }
};

/// Per node of a HODLR factorization level, after the pivoted QR of
/// S_l^-1 W_l: Rn(node) = R P^T (columns back in their original order, rows
/// at or past the rank rk(node) dropped) from the R held in Rs, and Qn's
/// columns past the rank and its padded rows (perm < 0) zeroed.
template <class B, class IV2, class RV, class PV>
struct PivotedFactorR {
  B Rs, Rn, Qn;
  IV2 piv;
  RV rk;
  PV perm;
  int k, m;
  KOKKOS_INLINE_FUNCTION void operator()(const int node) const {
    using T = typename B::non_const_value_type;
    const int r = rk(node);
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < k; ++j) Rn(node, i, piv(node, j)) = (i < r && j >= i) ? Rs(node, i, j) : T(0);
    for (int row = 0; row < m; ++row) {
      const bool pad = perm(node * m + row) < 0;
      for (int c = 0; c < k; ++c)
        if (pad || c >= r) Qn(node, row, c) = T(0);
    }
  }
};

/// Per sibling pair p of a HODLR factorization level, from the SVD
/// B = P diag(sigma) Qb^T of the coupling: the factors of f(I + C) - I for
/// f = sqrt (w = 0) and f = 1/sqrt (w = 1), as P a, P b, Qb a, Qb b with
/// a = (f(1 + s) + f(1 - s)) / 2 - 1 and b = (f(1 + s) - f(1 - s)) / 2 per
/// singular value s; sums log det(I + C) = sum log(1 - s^2) (a reduction);
/// bad(p) = 1 where sigma_0 >= 1 (I + C not positive definite).
template <class B, class SV, class IV>
struct CouplingRoots {
  using value_type = typename B::non_const_value_type;
  IV bad;
  SV sig;
  B P, Qb, PA0, PB0, QA0, QB0, PA1, PB1, QA1, QB1;
  int k;
  KOKKOS_INLINE_FUNCTION void operator()(const int p, value_type& acc) const {
    using T = value_type;
    bad(p) = sig(p, 0) < T(1) ? 0 : 1;
    for (int j = 0; j < k; ++j) {
      const T s = sig(p, j) < T(1) ? sig(p, j) : T(0);
      const T rp = math::sqrt(T(1) + s), rm = math::sqrt(T(1) - s);
      const T fp = s / (rp + T(1)), fm = -s / (rm + T(1));                // sqrt(1 +- s) - 1
      const T gp = -s / ((rp + T(1)) * rp), gm = s / ((rm + T(1)) * rm);  // 1/sqrt(1 +- s) - 1
      const T a0 = T(0.5) * (fp + fm), b0 = T(0.5) * (fp - fm);
      const T a1 = T(0.5) * (gp + gm), b1 = T(0.5) * (gp - gm);
      acc += math::log((T(1) - s) * (T(1) + s));
      for (int i = 0; i < k; ++i) {
        PA0(p, i, j) = P(p, i, j) * a0;
        PB0(p, i, j) = P(p, i, j) * b0;
        QA0(p, i, j) = Qb(p, i, j) * a0;
        QB0(p, i, j) = Qb(p, i, j) * b0;
        PA1(p, i, j) = P(p, i, j) * a1;
        PB1(p, i, j) = P(p, i, j) * b1;
        QA1(p, i, j) = Qb(p, i, j) * a1;
        QB1(p, i, j) = Qb(p, i, j) * b1;
      }
    }
  }
};

/// One team per sibling pair p of a HODLR factorization level: the five
/// products of G = I + Q X Q^T (or of G^-1, with X' in X) on the pair's
/// rows of a block of vectors, [YL; YR] += [QL T2_top; QR T2_bot] with
/// T2 = X T and T = [QL^T YL; QR^T YR] (T, T2: (pairs, 2k, r) workspaces).
template <class ExecSpace, class B, class YV>
struct ApplyGPair {
  using member = typename ExecTraits<ExecSpace>::member_type;
  using T = typename B::non_const_value_type;
  B QL, QR, X, Tw, T2w;
  YV YL, YR;
  int k;
  KOKKOS_INLINE_FUNCTION void operator()(const member& t) const {
    const int p = t.league_rank();
    const auto top = Kokkos::make_pair(0, k), bot = Kokkos::make_pair(k, 2 * k);
    const auto all = Kokkos::ALL();
    const auto Tp = detail::entry(Tw, p), T2p = detail::entry(T2w, p);
    const auto QLp = detail::entry(QL, p), QRp = detail::entry(QR, p);
    const auto YLp = detail::entry(YL, p), YRp = detail::entry(YR, p);
    kernels::detail::gemm_entry<ExecSpace>(t, Op::Trans, Op::NoTrans, T(1), QLp, YLp, T(0),
                                           Kokkos::subview(Tp, top, all));
    kernels::detail::gemm_entry<ExecSpace>(t, Op::Trans, Op::NoTrans, T(1), QRp, YRp, T(0),
                                           Kokkos::subview(Tp, bot, all));
    t.team_barrier();
    kernels::detail::gemm_entry<ExecSpace>(t, Op::NoTrans, Op::NoTrans, T(1), detail::entry(X, p), Tp, T(0), T2p);
    t.team_barrier();
    kernels::detail::gemm_entry<ExecSpace>(t, Op::NoTrans, Op::NoTrans, T(1), QLp, Kokkos::subview(T2p, top, all), T(1),
                                           YLp);
    kernels::detail::gemm_entry<ExecSpace>(t, Op::NoTrans, Op::NoTrans, T(1), QRp, Kokkos::subview(T2p, bot, all), T(1),
                                           YRp);
  }
};

}  // namespace detail
}  // namespace hfisher
