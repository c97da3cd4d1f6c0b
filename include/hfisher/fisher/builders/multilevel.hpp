#pragma once
/// \file multilevel.hpp
/// \brief The multilevel builder: diagonal plus nested low-rank terms per
/// layer, from randomized eigensolves of per-node Gram matrices.

#include <hfisher/fisher/builders/common.hpp>
#include <hfisher/fisher/lowrank.hpp>
#include <hfisher/fisher/multilevel.hpp>

namespace hfisher {
namespace fisher {
namespace detail {

/// B_b = (B_b + B_b^T) / 2 (rounding, before an eigensolver's symmetry check).
template <class Exec, class Batch>
void multilevel_symmetrize(const Exec& space, const Batch& B) {
  using Scalar = typename Batch::non_const_value_type;
  const long M = long(B.extent(0));
  const int n = int(B.extent(1));
  Kokkos::parallel_for(
      "hfisher::multilevel::sym", Kokkos::RangePolicy<Exec>(space, 0, M * n * n), KOKKOS_LAMBDA(const long e) {
        const long i = e / (long(n) * n);
        const int a = int(e / n % n), b = int(e % n);
        if (b <= a) return;
        const Scalar m = Scalar(0.5) * (B(i, a, b) + B(i, b, a));
        B(i, a, b) = m;
        B(i, b, a) = m;
      });
}

/// Vt_b = Q_b U_b(:, the r last columns, last first), wt_b = w_b(the r last
/// entries, last first): the leading Ritz pairs of an ascending eigensolve.
/// An empty Q stands for the identity (U's own columns).
template <class Exec, class Batch, class Vec2>
void multilevel_top(const Exec& space, const Batch& Q, const Batch& U, const Vec2& w, int r, const Batch& Vt,
                    const Vec2& wt) {
  using Scalar = typename Batch::non_const_value_type;
  const long M = long(Vt.extent(0));
  const int n = int(U.extent(1));
  const bool identity = Q.extent(0) == 0;
  // Ur_b = U_b's r last columns, last first; then Vt = Q Ur (one batched GEMM)
  Batch Ur(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hfisher::multilevel::Ur"), M, n, r);
  Kokkos::parallel_for(
      "hfisher::multilevel::top", Kokkos::RangePolicy<Exec>(space, 0, M * n), KOKKOS_LAMBDA(const long e) {
        const long i = e / n;
        const int c = int(e % n);
        for (int q = 0; q < r; ++q) Ur(i, c, q) = U(i, c, n - 1 - q);
        if (c == 0)
          for (int q = 0; q < r; ++q) wt(i, q) = w(i, n - 1 - q);
      });
  // Vt may have more columns than r (directions beyond the samples stay 0)
  const auto Vr = Kokkos::subview(Vt, Kokkos::ALL, Kokkos::ALL, Kokkos::make_pair(0, r));
  if (identity)
    Kokkos::deep_copy(space, Vr, Ur);
  else
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), Q, Ur, Scalar(0), Vr);
}

/// out_b = in_b - P_b (Q_b^T in_b): the projector T_b = I - P_b Q_b^T (or
/// T_b^T, with P and Q swapped) of a node, in product form: O(S rho k) per
/// node instead of O(S^2 k). tmp is (batch, rho, k); rho = 0 copies.
template <class Exec, class Batch>
void multilevel_project(const Exec& space, const Batch& P, const Batch& Q, const Batch& in, const Batch& tmp,
                        const Batch& out) {
  using Scalar = typename Batch::non_const_value_type;
  Kokkos::deep_copy(space, out, in);
  if (P.extent(2) == 0) return;
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), Q, in, Scalar(0), tmp);
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(-1), P, tmp, Scalar(1), out);
}

/// The Gram matrices K_i = sum over node i's units u of D_u KAx D_u of one
/// level (D_u = diag of unit u's output gradients g(:, u) over the S = N R
/// samples; KAx(s, t) = KA(s / R, t / R), KA = A A^T the N x N input Gram
/// matrix), applied to a block of k columns per node. Two forms, the same
/// product: explicit S x S matrices per node (batched GEMM; cheap when a
/// level has few nodes), or factored, every unit's columns through one
/// N x N by N x (units k) GEMM with KA, which never stores an S x S matrix
/// per node (O(N^2 units k) instead of O(M S^2 k); the only form that fits
/// when R > 1 makes S large).
template <class Scalar, class ExecSpace>
struct MultilevelGram {
  using Batch = BatchMatrix<Scalar, ExecSpace>;
  using IView = Kokkos::View<int*, typename ExecSpace::memory_space>;
  Mat<Scalar, ExecSpace> g, KA;
  IView units, unode;  // node bounds in units (M + 1), node of each unit
  int M = 0, S = 0, N = 0, R = 1, out = 0;
  bool factored = false;
  Batch K;                        // explicit: (M, S, S)
  Mat<Scalar, ExecSpace> Yb, Zb;  // factored: (N, out k)

  /// Whether the factored form is the cheaper one for M nodes (its GEMM
  /// runs at several times the batched GEMM's rate on small matrices).
  static bool prefer_factored(long M, long S, long N, long out) { return 4.0 * M * S * S >= double(out) * N * N; }

  /// The Gram matrices of the nodes with unit bounds ub (ub[0] = 0 <
  /// ... < ub[M] = units) from output gradients g (N R x units, R samples
  /// per example) and KA (N x N); factored as prefer_factored says unless
  /// `form` forces one (0: explicit, 1: factored).
  static MultilevelGram make(const Mat<Scalar, ExecSpace>& g, const Mat<Scalar, ExecSpace>& KA,
                             const std::vector<int>& ub, int form = -1) {
    MultilevelGram gr;
    gr.g = g;
    gr.KA = KA;
    gr.M = int(ub.size()) - 1;
    gr.N = int(KA.extent(0));
    gr.S = int(g.extent(0));
    gr.R = gr.S / gr.N;
    gr.out = int(g.extent(1));
    std::vector<int> node(gr.out);
    for (int i = 0; i < gr.M; ++i)
      for (int u = ub[i]; u < ub[i + 1]; ++u) node[u] = i;
    gr.units = IView("hfisher::multilevel::units", gr.M + 1);
    gr.unode = IView("hfisher::multilevel::unode", gr.out);
    detail::copy_to(ub, gr.units);
    detail::copy_to(node, gr.unode);
    gr.factored = form < 0 ? prefer_factored(gr.M, gr.S, gr.N, gr.out) : form == 1;
    return gr;
  }

  /// Explicit Gram matrices (for the full eigensolve path or the explicit form).
  Batch form() const {
    Batch Kx("hfisher::multilevel::K", M, S, S);
    auto gg = g;
    auto ka = KA;
    auto ub = units;
    const int SS = S, RR = R;
    if (M == 1) {  // one node (a layer's top level): g g^T through the GEMM, then times KAx entry by entry
      ExecSpace space;
      auto K0 = Kokkos::subview(Kx, 0, Kokkos::ALL, Kokkos::ALL);
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), g, g, Scalar(0), K0);
      Kokkos::parallel_for(
          "hfisher::multilevel::gram_ka", Kokkos::RangePolicy<ExecSpace>(space, 0, S), KOKKOS_LAMBDA(const int a) {
            for (int b = 0; b < SS; ++b) K0(a, b) *= ka(a / RR, b / RR);
          });
      return Kx;
    }
    Kokkos::parallel_for(
        "hfisher::multilevel::gram", Kokkos::RangePolicy<ExecSpace>(0, long(M) * S * S), KOKKOS_LAMBDA(const long e) {
          const int i = int(e / (long(SS) * SS)), a = int(e / SS % SS), b = int(e % SS);
          if (b < a) return;
          Scalar t = 0;
          for (int u = ub(i); u < ub(i + 1); ++u) t += gg(a, u) * gg(b, u);
          t *= ka(a / RR, b / RR);
          Kx(i, a, b) = t;
          Kx(i, b, a) = t;
        });
    return Kx;
  }

  void prepare(int k) {
    if (!factored) {
      K = form();
      return;
    }
    Yb = Mat<Scalar, ExecSpace>("hfisher::multilevel::Yb", N, long(out) * k);
    Zb = Mat<Scalar, ExecSpace>("hfisher::multilevel::Zb", N, long(out) * k);
  }

  /// out_i = K_i in_i for in, out of shape (M, S, k).
  void apply(const ExecSpace& space, const Batch& in, const Batch& res) const {
    if (!factored) {
      kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), K, in, Scalar(0), res);
      return;
    }
    const int k = int(in.extent(2)), RR = R, SS = S, O = out;
    auto gg = g;
    auto un = unode;
    auto ub = units;
    auto Y = Yb;
    auto Z = Zb;
    // one (example, unit) pair per iteration, its k contiguous columns inside
    Kokkos::parallel_for(
        "hfisher::multilevel::gram_in", Kokkos::RangePolicy<ExecSpace>(space, 0, long(N) * O),
        KOKKOS_LAMBDA(const long e) {
          const int n = int(e / O), u = int(e % O), i = un(u);
          Scalar* y = &Y(n, long(u) * k);
          for (int j = 0; j < k; ++j) y[j] = Scalar(0);
          for (int r = 0; r < RR; ++r) {
            const Scalar gv = gg(n * RR + r, u);
            for (int j = 0; j < k; ++j) y[j] += gv * in(i, n * RR + r, j);
          }
        });
    kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), KA, Y, Scalar(0), Z);
    Kokkos::parallel_for(
        "hfisher::multilevel::gram_out", Kokkos::RangePolicy<ExecSpace>(space, 0, long(M) * SS),
        KOKKOS_LAMBDA(const long e) {
          const int i = int(e / SS), s = int(e % SS);
          for (int j = 0; j < k; ++j) res(i, s, j) = Scalar(0);
          for (int u = ub(i); u < ub(i + 1); ++u) {
            const Scalar gv = gg(s, u);
            const Scalar* z = &Z(s / RR, long(u) * k);
            for (int j = 0; j < k; ++j) res(i, s, j) += gv * z[j];
          }
        });
  }
};

/// Columns of the randomized eigensolver's block for rank r, S samples and
/// oversampling `over` (-1: r + 8): min(S, min(r, S) + over).
inline int multilevel_block_width(int r, int S, int over) {
  const int re = std::min(r, S);
  return std::min(S, re + (over < 0 ? re + 8 : over));
}

/// The r leading eigenpairs (largest first) of K'_b = T_b^T K_b T_b, T_b =
/// I - Zs_b Vs_b^T, for a level's nodes, K' never formed when S is large:
/// randomized subspace iteration with `power` power steps and Rayleigh-Ritz
/// (Halko, Martinsson & Tropp 2011, Alg. 4.4/5.1) on a block of
/// min(S, r + over) columns; below twice that width, the full
/// eigendecomposition of K'. Gaussian starts are counter-based (seed,
/// entry): the same on every backend.
template <class Scalar, class ExecSpace, class Batch, class Vec2>
void multilevel_top_eigen(const ExecSpace& space, MultilevelGram<Scalar, ExecSpace>& gram, const Batch& Zs,
                          const Batch& Vs, int r, std::uint64_t seed, const Batch& Vt, const Vec2& wt, int power = 1,
                          int over = 8) {
  // directions beyond the S samples do not exist: columns re.. of Vt and wt stay 0
  const int M = gram.M, S = gram.S, rho = int(Zs.extent(2)), re = std::min(r, S),
            kk = multilevel_block_width(r, S, over);
  if (2 * kk >= S) {
    const auto K = gram.form();
    Batch T("hfisher::multilevel::T", M, S, S), KT("hfisher::multilevel::KT", M, S, S),
        Kp("hfisher::multilevel::Kp", M, S, S), U("hfisher::multilevel::U", M, S, S);
    Vec2 w("hfisher::multilevel::w", M, S);
    Kokkos::parallel_for(
        "hfisher::multilevel::eye", Kokkos::RangePolicy<ExecSpace>(space, 0, long(M) * S),
        KOKKOS_LAMBDA(const long e) { T(e / S, e % S, e % S) = Scalar(1); });
    if (rho > 0) kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(-1), Zs, Vs, Scalar(1), T);
    kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), K, T, Scalar(0), KT);
    kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), T, KT, Scalar(0), Kp);
    multilevel_symmetrize(space, Kp);
    kernels::syev(space, Kp, w, U);
    multilevel_top(space, Batch(), U, w, re, Vt, wt);
    return;
  }
  gram.prepare(kk);
  Batch X("hfisher::multilevel::X", M, S, kk), Y("hfisher::multilevel::Y", M, S, kk),
      t1("hfisher::multilevel::t1", M, S, kk), t2("hfisher::multilevel::t2", M, S, kk),
      tmp("hfisher::multilevel::tmp", M, rho, kk), Rr("hfisher::multilevel::R", M, kk, kk),
      B("hfisher::multilevel::B", M, kk, kk), U("hfisher::multilevel::U", M, kk, kk);
  Vec2 w("hfisher::multilevel::w", M, kk);
  {  // one Gaussian start for every node of the level
    Mat<Scalar, ExecSpace> Om("hfisher::multilevel::omega", S, kk);
    Kokkos::parallel_for(
        "hfisher::multilevel::omega", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>>(space, {0, 0}, {S, kk}),
        KOKKOS_LAMBDA(const int a, const int q) {
          Om(a, q) = Scalar(random::normal(seed, 0, std::uint64_t(a) * std::uint64_t(kk) + std::uint64_t(q)));
        });
    Kokkos::parallel_for(
        "hfisher::multilevel::start", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {M, S, kk}),
        KOKKOS_LAMBDA(const int i, const int a, const int q) { X(i, a, q) = Om(a, q); });
  }
  auto applyKp = [&](const Batch& in, const Batch& res) {  // res = T^T K T in
    multilevel_project(space, Zs, Vs, in, tmp, t1);
    gram.apply(space, t1, t2);
    multilevel_project(space, Vs, Zs, t2, tmp, res);
  };
  applyKp(X, Y);
  for (int it = 0; it <= power; ++it) {  // the power steps, then the basis of the Rayleigh-Ritz step
    kernels::qr_thin(space, Y, X, Rr);
    applyKp(X, Y);
  }
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), X, Y, Scalar(0), B);
  multilevel_symmetrize(space, B);
  kernels::syev(space, B, w, U, kernels::SyevMethod::Tridiagonal);
  multilevel_top(space, X, U, w, re, Vt, wt);
}

/// One level's kept directions: Z_i = T_i V_i (columns whose eigenvalue is
/// not above tol * the node's largest are 0), then the children's projector
/// factors [Zs_parent, Z_parent], [Vs_parent, V_parent] (T_child = T_parent
/// (I - V V^T) = T_parent - Z V^T), and the level's columns of W:
/// W(u c + j, col0 + q) = sum_s Z_i(s, q) g_s(u) a_n(s)(j), all r columns
/// through one (r out) x N x c GEMM.
template <class Scalar, class ExecSpace>
struct MultilevelLevel {
  using Batch = BatchMatrix<Scalar, ExecSpace>;
  using IView = Kokkos::View<int*, typename ExecSpace::memory_space>;

  static Batch kept(const ExecSpace& space, const Batch& Zs, const Batch& Vs, const Batch& Vt,
                    const BatchVector<Scalar, ExecSpace>& wt, Scalar tol) {
    const int M = int(Vt.extent(0)), S = int(Vt.extent(1)), r = int(Vt.extent(2)), rho = int(Zs.extent(2));
    Batch Vm("hfisher::multilevel::Vm", M, S, r), Z("hfisher::multilevel::Z", M, S, r),
        tmp("hfisher::multilevel::tmp", M, rho, r);
    Kokkos::parallel_for(
        "hfisher::multilevel::mask", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {M, S, r}),
        KOKKOS_LAMBDA(const int i, const int a, const int q) {
          Vm(i, a, q) = wt(i, q) > tol * wt(i, 0) && wt(i, q) > Scalar(0) ? Vt(i, a, q) : Scalar(0);
        });
    multilevel_project(space, Zs, Vs, Vm, tmp, Z);
    return Z;
  }

  /// children's [Zs, Z] and [Vs, V] (parent of child j: pd(j))
  static void children(const ExecSpace& space, const IView& pd, const Batch& Zs, const Batch& Vs, const Batch& Z,
                       const Batch& V, const Batch& Zc, const Batch& Vc) {
    const int Mc = int(Zc.extent(0)), S = int(Zc.extent(1)), rho = int(Zs.extent(2)), w = int(Zc.extent(2));
    Kokkos::parallel_for(
        "hfisher::multilevel::child_T", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {Mc, S, w}),
        KOKKOS_LAMBDA(const int j, const int a, const int q) {
          const int i = pd(j);
          Zc(j, a, q) = q < rho ? Zs(i, a, q) : Z(i, a, q - rho);
          Vc(j, a, q) = q < rho ? Vs(i, a, q) : V(i, a, q - rho);
        });
  }

  static void columns(const ExecSpace& space, const Batch& Z, const Mat<Scalar, ExecSpace>& g,
                      const Mat<Scalar, ExecSpace>& A, const IView& unode, int R, int col0,
                      const Mat<Scalar, ExecSpace>& W) {
    const int N = int(A.extent(0)), c = int(A.extent(1)), out = int(g.extent(1)), r = int(Z.extent(2));
    Mat<Scalar, ExecSpace> GZ("hfisher::multilevel::GZ", N, long(r) * out),
        Wr("hfisher::multilevel::Wr", long(r) * out, c);
    Kokkos::parallel_for(
        "hfisher::multilevel::GZ", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {N, r, out}),
        KOKKOS_LAMBDA(const int n, const int q, const int u) {
          const int i = unode(u);
          Scalar t = 0;
          for (int rr = 0; rr < R; ++rr) t += Z(i, n * R + rr, q) * g(n * R + rr, u);
          GZ(n, long(q) * out + u) = t;
        });
    kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), GZ, A, Scalar(0), Wr);
    Kokkos::parallel_for(
        "hfisher::multilevel::Wcol", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>(space, {0, 0, 0}, {out, c, r}),
        KOKKOS_LAMBDA(const int u, const int j, const int q) {
          W(long(u) * c + j, col0 + q) = Wr(long(q) * out + u, j);
        });
  }
};

/// Multilevel low-rank block of layer k (multilevel.hpp), computed in sample
/// space. Nodes split the layer's output units (level 0: all of them; each
/// node into multilevel.branching balanced children), so the Gram matrix of
/// node i's rows of Psi is K_i(s, t) = (g_s . g_t over i's units) (a_n(s) .
/// a_n(t)) (MultilevelGram: no P x S matrix). Top-down, each node keeps the
/// leading eigen-directions of what its ancestors left, Psi_i T_i with
/// T_i = prod (I - V V^T) over the ancestors' kept eigenvectors V, kept in
/// product form I - Zs Vs^T: K'_i = T_i^T K_i T_i = V diag(w) V^T,
/// W_i = Psi_i T_i V_top (eigenvalues > tol * the node's largest). Every term
/// is a Gram matrix of the data, so the result is PSD; d = diag(F) -
/// rowsum(W^2) >= 0 (clamped for rounding) keeps the diagonal exact. Cost
/// per level: O(min(M S^2, out N^2) r) for the eigen-directions (batched
/// GEMM, QR and small eigensolves; see multilevel_top_eigen) plus O(P N r)
/// to form W.
template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> multilevel_layer(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                       const FisherOptions& o, const char* where) {
  using Batch = BatchMatrix<Scalar, ExecSpace>;
  using IView = Kokkos::View<int*, typename ExecSpace::memory_space>;
  hfisher::detail::require(s.positions_of(k) == 1, where, "the multilevel structure needs rank-one per-example ",
                           "gradients (linear layers); layer ", s.layers[k], " is applied at ", s.positions_of(k),
                           " positions (a convolution): use K-FAC, diagonal, low-rank, dense or HODLR for it");
  const int N = s.examples, R = s.per_example, S = s.samples(), out = s.shapes[k].out, c = s.shapes[k].cols();
  const long P = s.shapes[k].size();
  // layout: unit bounds per level
  MultilevelLayout lay;
  std::vector<std::vector<int>> ub{{0, out}}, parent{{0}};
  for (int l = 1; l < o.multilevel.levels; ++l) {
    std::vector<int> nb{0}, par;
    const auto& pb = ub.back();
    for (std::size_t i = 0; i + 1 < pb.size(); ++i) {
      const int u0 = pb[i], u1 = pb[i + 1], m = std::min(o.multilevel.branching, u1 - u0);
      for (int j = 1; j <= m; ++j) {
        nb.push_back(u0 + int(long(u1 - u0) * j / m));
        par.push_back(int(i));
      }
    }
    ub.push_back(nb);
    parent.push_back(par);
  }
  double need = 0;  // the largest level's working memory, in entries
  int rho = 0;
  for (std::size_t l = 0; l < ub.size(); ++l) {
    std::vector<long> rb;
    for (int u : ub[l]) rb.push_back(long(u) * c);
    lay.bounds.push_back(rb);
    // ranks above the samples leave room for sums (online consolidation); at most the layer's size
    const int r = int(std::min<long>(o.multilevel.ranks.empty() ? o.multilevel.rank : o.multilevel.ranks[l], P));
    lay.ranks.push_back(r);
    const double M = double(ub[l].size() - 1), kk = multilevel_block_width(r, S, o.multilevel.oversampling);
    double lvl = M * S * (2.0 * (rho + r) + 3.0 * r) + double(N) * r * out + double(P) * r;
    if (2 * kk >= S)
      lvl += M * S * S * 5;
    else if (MultilevelGram<Scalar, ExecSpace>::prefer_factored(long(M), S, N, out))
      lvl += M * S * kk * 4 + 2.0 * N * out * kk;
    else
      lvl += M * S * kk * 4 + M * S * S;
    need = std::max(need, lvl);
    rho += r;
  }
  check_budget(
      (need + double(N) * N + double(P) * (lay.columns() + 2)) * sizeof(Scalar), o.memory_budget, where,
      "a multilevel Fisher of layer " + std::to_string(s.layers[k]) + " from " + std::to_string(S) + " samples");
  ExecSpace space;
  Mat<Scalar, ExecSpace> KA("hfisher::multilevel::KA", N, N), W("hfisher::multilevel::W", P, lay.columns());
  kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), s.a[k], s.a[k], Scalar(0), KA);
  const Scalar tol = Scalar(o.multilevel.tol);
  Batch Zs("hfisher::multilevel::Zs", 1, S, 0), Vs("hfisher::multilevel::Vs", 1, S, 0);  // level 0: T = I
  int col0 = 0;                                                                          // first W column of this level
  for (int l = 0; l < lay.levels(); ++l) {
    hfisher::detail::Region region("hfisher::multilevel_layer::level " + std::to_string(l));
    const int M = int(ub[l].size()) - 1, r = lay.ranks[l];
    auto gram = MultilevelGram<Scalar, ExecSpace>::make(s.g[k], KA, ub[l]);
    // the r leading eigenpairs of K'_i = T_i^T K_i T_i, largest first
    Batch Vt("hfisher::multilevel::Vtop", M, S, r);
    BatchVector<Scalar, ExecSpace> wt("hfisher::multilevel::wtop", M, r);
    multilevel_top_eigen(space, gram, Zs, Vs, r, o.seed + std::uint64_t(l) * 7919u, Vt, wt, o.multilevel.power_steps,
                         o.multilevel.oversampling);
    const Batch Z = MultilevelLevel<Scalar, ExecSpace>::kept(space, Zs, Vs, Vt, wt, tol);
    MultilevelLevel<Scalar, ExecSpace>::columns(space, Z, s.g[k], s.a[k], gram.unode, R, col0, W);
    col0 += r;
    if (l + 1 < lay.levels()) {  // the children's projectors
      const int Mc = int(ub[l + 1].size()) - 1, w = int(Zs.extent(2)) + r;
      IView pd("hfisher::multilevel::parent", Mc);
      detail::copy_to(parent[l + 1], pd);
      Batch Zc("hfisher::multilevel::Zs", Mc, S, w), Vc("hfisher::multilevel::Vs", Mc, S, w);
      MultilevelLevel<Scalar, ExecSpace>::children(space, pd, Zs, Vs, Z, Vt, Zc, Vc);
      Zs = Zc;
      Vs = Vc;
    }
  }
  // d = diag(F) - rowsum(W^2) keeps diag(F) exact
  auto d = diagonal_of(s, std::vector<int>{k}, P);
  detail::subtract_squares_clamped<ExecSpace>(d, W);
  return std::make_unique<MultilevelOperator<Scalar, ExecSpace>>(d, W, lay, o.multilevel.tol);
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
