#include "hss_bench.hpp"
#include "studies.hpp"

#include <hfisher/hfisher.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "bench_common.hpp"
#include "memory_budget.hpp"

#include "lapack_decls.hpp"

namespace hfisher_perf {
namespace {

using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;
using HS = hfisher::HSS<double, Exec>;
using HO = hfisher::HODLR<double, Exec>;
using M = HS::Matrix;

M to_dev(const std::vector<double>& a, int rows, int cols) {
  M d(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hss_bench::m"), rows, cols);
  auto h = Kokkos::create_mirror_view(d);
  std::copy(a.begin(), a.end(), h.data());
  Kokkos::deep_copy(d, h);
  return d;
}

std::vector<double> to_host(const M& d) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d);
  return std::vector<double>(h.data(), h.data() + h.size());
}

/// Random Fourier features of exp(-|x-y|^2 / (2 ell^2)) on points x (n x dim):
/// G (n x m), G G^T approximates the kernel.
std::vector<double> rff(const std::vector<double>& x, int n, int dim, int m, double ell, std::mt19937_64& g) {
  std::normal_distribution<double> nd(0, 1.0 / ell);
  std::uniform_real_distribution<double> ub(0, 6.283185307179586);
  std::vector<double> w(size_t(m) * dim), b(m), G(size_t(n) * m);
  for (auto& v : w) v = nd(g);
  for (auto& v : b) v = ub(g);
  const double s = std::sqrt(2.0 / m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) {
      double a = b[j];
      for (int c = 0; c < dim; ++c) a += w[size_t(j) * dim + c] * x[size_t(i) * dim + c];
      G[size_t(i) * m + j] = s * std::cos(a);
    }
  return G;
}

/// The Gaussian kernel matrix (+ nugget I) on points x (n x dim), row-major.
std::vector<double> kernel(const std::vector<double>& x, int n, int dim, double ell, double nugget) {
  std::vector<double> A(size_t(n) * n);
  const double inv = 1.0 / (2 * ell * ell);
#pragma omp parallel for schedule(dynamic, 64)
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double r2 = 0;
      for (int c = 0; c < dim; ++c) r2 += std::pow(x[size_t(i) * dim + c] - x[size_t(j) * dim + c], 2);
      A[size_t(i) * n + j] = std::exp(-r2 * inv) + (i == j ? nugget : 0.0);
    }
  return A;
}

/// Y = A X for a dense device matrix A (the exact operator of the matrix-free rows).
struct DenseOp {
  M A;
  void operator()(const M& X, M& Y) const {
    using U3 = Kokkos::View<double***, Kokkos::LayoutRight, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    hfisher::kernels::detail::gemm_nocheck(
        Exec(), hfisher::Op::NoTrans, hfisher::Op::NoTrans, 1.0, U3(A.data(), 1, A.extent(0), A.extent(1)),
        U3(X.data(), 1, X.extent(0), X.extent(1)), 0.0, U3(Y.data(), 1, Y.extent(0), Y.extent(1)));
  }
};

double rel_fro(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return std::sqrt(num / den);
}

struct Row {
  int n = 0;
  double s_build = NAN, s_factor = NAN, s_solve = NAN, s_resid = NAN, s_logdet = NAN, s_bytes = 0, s_fbytes = 0;
  int s_k = 0, s_products = 0;
  double h_build = NAN, h_factor = NAN, h_solve = NAN, h_resid = NAN, h_logdet = NAN, h_bytes = 0, h_fbytes = 0;
  int h_k = 0;
  double d_factor = NAN, d_solve = NAN, d_logdet = NAN;
};

struct MatvecRow {
  int n = 0;
  int s_products = 0, s_k = 0, h_products = 0, h_k = 0;
  double s_err = NAN, s_est = NAN, h_err = NAN, h_est = NAN, s_build = NAN, h_build = NAN;
};

template <class F>
int max_rank_of(const F& A) {
  int k = 0;
  for (const auto& r : A.ranks()) k = std::max(k, r.max);
  return k;
}

template <class Fac>
double solve_time(const Fac& F, const M& B, const M& X) {
  const double t0 = now();
  F.solve(B, X);
  Exec().fence();
  return now() - t0;
}

}  // namespace

int run_hss_bench(const HssBenchOptions& o) {
  if (!o.output.empty()) hfisher::io::prepare_output_dir(o.output, "hfisher-bench hss");  // before any work
  const Machine mc = describe_machine();
  std::printf("hfisher-bench hss: HSS vs HODLR vs dense LAPACK Cholesky (double)\n");
  std::printf("machine: %s | backend: %s | host threads: %s | OpenBLAS threads: %d | %s\n", mc.cpu.c_str(),
              mc.backend.c_str(), mc.host_threads.c_str(), omp_get_max_threads(), mc.date.c_str());
  std::printf(
      "tol %.1e, leaf %d, max rank %s. rff: %.2g I + G G^T, G n x %d random Fourier features of "
      "exp(-|x-y|^2 / (2 * %.2f^2)) on uniform points in [0, 1] (rank %d: fixed); both formats built "
      "from the factors\n\n",
      o.tol, o.leaf, o.max_rank > 0 ? std::to_string(o.max_rank).c_str() : "none", o.nugget, o.features, o.ell,
      o.features);
  {  // the memory budget, for every size before any work: dense LAPACK and
     // the dense kernel matrix of the matrix-free rows (8 n^2 each), G (n x
     // features, host and device) and HSS + HODLR with factorizations at
     // rank <= features per block
    const std::size_t budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
    for (int n : o.sizes) {
      int L = 0;
      while ((long(o.leaf) << (L + 1)) <= long(n)) ++L;
      const double k = o.max_rank > 0 ? std::min(o.max_rank, o.features) : o.features;
      const double dense = (n <= o.dense_max ? 8.0 * n * n : 0) + (n <= o.matvec_max ? 8.0 * n * n : 0);
      const double hm = 2 * 2.0 * 8 * double(n) * (o.leaf + 2 * L * k) + 16.0 * n * o.features;
      hfisher_cli::check_memory(dense + hm, budget, "hfisher-bench hss",
                                "n = " + std::to_string(n) + " (dense matrices " + hfisher_cli::mib_text(dense) +
                                    ", factors and H-matrices about " + hfisher_cli::mib_text(hm) + ")");
    }
    const double side = double(std::max(o.gram_n, o.sum_n));
    hfisher_cli::check_memory(
        3 * 8.0 * side * side, budget, "hfisher-bench hss",
        "the ordering and online-sum studies at n = " + std::to_string(int(side)) + " (dense references)");
  }
  hfisher::CompressionOptions co;
  co.tol = o.tol;
  co.max_rank = o.max_rank;
  std::printf("%7s | %8s %8s %8s %5s %6s %9s %7s | %8s %8s %8s %5s %9s %7s | %8s %8s | %9s %9s\n", "n", "hss_bl",
              "hss_fac", "hss_sol", "k", "prods", "resid", "MB", "hodlr_bl", "hodlr_fc", "hodlr_sl", "k", "resid", "MB",
              "potrf_s", "potrs_s", "ld_err_hss", "ld_err_hod");
  std::vector<Row> rows;
  for (int n : o.sizes) {
    Row r;
    r.n = n;
    std::mt19937_64 g(o.seed * 1000003u + n);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<double> x(n);
    for (auto& v : x) v = u(g);
    const int m = o.features;
    const auto G = rff(x, n, 1, m, o.ell, g);
    auto tree = hfisher::ClusterTree::from_points(x, n, 1, o.leaf);
    M Gd = to_dev(G, n, m);
    Kokkos::View<double*, Mem> dd("d", n);
    Kokkos::deep_copy(dd, o.nugget);
    std::vector<double> bh(n);
    for (auto& v : bh) v = u(g) - 0.5;
    M B = to_dev(bh, n, 1), X("x", n, 1);
    auto resid = [&](const M& Xd) {
      const auto xs = to_host(Xd);
      std::vector<double> t(m, 0.0);
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) t[j] += G[size_t(i) * m + j] * xs[i];
      double num = 0, den = 0;
      for (int i = 0; i < n; ++i) {
        double y = o.nugget * xs[i];
        for (int j = 0; j < m; ++j) y += G[size_t(i) * m + j] * t[j];
        num += (y - bh[i]) * (y - bh[i]);
        den += bh[i] * bh[i];
      }
      return std::sqrt(num / den);
    };
    {  // HSS
      double t0 = now();
      auto A = HS::from_factors(dd, Gd, tree, co);
      Exec().fence();
      r.s_build = now() - t0;
      r.s_k = max_rank_of(A);
      r.s_products = A.build_info().products;
      r.s_bytes = double(A.bytes());
      // best of 3 (the factorization is milliseconds at the small sizes)
      auto F = A.factor();
      r.s_factor = best_time(
          3, [] {},
          [&] {
            F = A.factor();
            Exec().fence();
          });
      r.s_fbytes = double(F.bytes());
      r.s_logdet = F.logdet();
      r.s_solve = best_time(
          3, [] {}, [&] { solve_time(F, B, X); });
      r.s_resid = resid(X);
    }
    {  // HODLR
      double t0 = now();
      auto A = HO::from_factors(dd, Gd, tree, co);
      Exec().fence();
      r.h_build = now() - t0;
      r.h_k = max_rank_of(A);
      r.h_bytes = double(A.bytes());
      auto F = A.factor();
      r.h_factor = best_time(
          3, [] {},
          [&] {
            F = A.factor();
            Exec().fence();
          });
      r.h_fbytes = double(F.bytes());
      r.h_logdet = F.logdet();
      r.h_solve = best_time(
          3, [] {}, [&] { solve_time(F, B, X); });
      r.h_resid = resid(X);
    }
    if (n <= o.dense_max) {  // dense LAPACK
      std::vector<double> Ad(size_t(n) * n);
      const double one = 1, zero = 0;
      dgemm_("T", "N", &n, &n, &m, &one, G.data(), &m, G.data(), &m, &zero, Ad.data(), &n);
      for (int i = 0; i < n; ++i) Ad[size_t(i) * n + i] += o.nugget;
      int info = 0;
      const double t0 = now();
      dpotrf_("L", &n, Ad.data(), &n, &info);
      r.d_factor = now() - t0;
      if (info != 0) throw hfisher::Error("dense dpotrf failed (info " + std::to_string(info) + ")");
      std::vector<double> xs = bh;
      const int nrhs = 1;
      const double t1 = now();
      dpotrs_("L", &n, &nrhs, Ad.data(), &n, xs.data(), &n, &info);
      r.d_solve = now() - t1;
      double ld = 0;
      for (int i = 0; i < n; ++i) ld += 2 * std::log(Ad[size_t(i) * n + i]);
      r.d_logdet = ld;
    }
    std::printf(
        "%7d | %8.3f %8.4f %8.4f %5d %6d %9.2e %7.1f | %8.3f %8.4f %8.4f %5d %9.2e %7.1f | %8.3f %8.4f | "
        "%9.2e %9.2e\n",
        n, r.s_build, r.s_factor, r.s_solve, r.s_k, r.s_products, r.s_resid, (r.s_bytes + r.s_fbytes) / 1e6, r.h_build,
        r.h_factor, r.h_solve, r.h_k, r.h_resid, (r.h_bytes + r.h_fbytes) / 1e6, r.d_factor, r.d_solve,
        std::abs(r.s_logdet - r.d_logdet) / std::abs(r.d_logdet),
        std::abs(r.h_logdet - r.d_logdet) / std::abs(r.d_logdet));
    std::fflush(stdout);
    rows.push_back(r);
  }
  // fitted exponents over n >= 4096 and over all sizes
  std::ostringstream fits;
  std::printf("\nfitted growth exponents (least squares of log t on log n):\n");
  for (int lo : {0, 4096}) {
    std::vector<double> ns, sb, sfs, hb, hfs, dfs;
    for (const auto& r : rows)
      if (r.n >= lo) {
        ns.push_back(r.n);
        sb.push_back(r.s_build);
        sfs.push_back(r.s_factor + r.s_solve);
        hb.push_back(r.h_build);
        hfs.push_back(r.h_factor + r.h_solve);
        dfs.push_back(r.d_factor + r.d_solve);
      }
    if (ns.size() < 2) continue;
    std::printf(
        "  n >= %-5d HSS build %.2f, factor+solve %.2f | HODLR build %.2f, factor+solve %.2f | dense "
        "factor+solve %.2f\n",
        lo, slope(ns, sb), slope(ns, sfs), slope(ns, hb), slope(ns, hfs), slope(ns, dfs));
    fits << "    {\"from_n\": " << lo << ", \"hss_build\": " << slope(ns, sb)
         << ", \"hss_factor_solve\": " << slope(ns, sfs) << ", \"hodlr_build\": " << slope(ns, hb)
         << ", \"hodlr_factor_solve\": " << slope(ns, hfs) << ", \"dense_factor_solve\": " << slope(ns, dfs) << "},\n";
  }
  std::printf("\nHSS vs HODLR, factor + solve (same matrix, tree, tolerance):\n");
  for (const auto& r : rows)
    std::printf("  n=%7d  HSS %.4f s  HODLR %.4f s  ratio HODLR/HSS %.2f  memory HSS %.1f MB, HODLR %.1f MB\n", r.n,
                r.s_factor + r.s_solve, r.h_factor + r.h_solve, (r.h_factor + r.h_solve) / (r.s_factor + r.s_solve),
                (r.s_bytes + r.s_fbytes) / 1e6, (r.h_bytes + r.h_fbytes) / 1e6);

  // ------------------------------------------------ matrix-free kernel rows
  std::vector<MatvecRow> mrows;
  bool header = false;
  for (int n : o.sizes) {
    if (n > o.matvec_max) continue;
    if (!header) {
      std::printf(
          "\nmatrix-free construction of the 1-D Gaussian kernel matrix (ell %.2f, + %.2g I); products "
          "with the exact dense matrix; error = |H - A|_F / |A|_F against the exact matrix, estimate = "
          "the construction's own (probes):\n",
          o.ell, o.nugget);
      std::printf("%7s | %6s %5s %8s %9s %9s %8s | %6s %5s %8s %9s %9s\n", "n", "prods", "k", "6k+64", "error",
                  "estimate", "build_s", "peel", "k", "error", "estimate", "build_s");
      header = true;
    }
    MatvecRow r;
    r.n = n;
    std::mt19937_64 g(o.seed * 7919u + n);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<double> x(n);
    for (auto& v : x) v = u(g);
    const auto A = kernel(x, n, 1, o.ell, o.nugget);
    DenseOp op{to_dev(A, n, n)};
    auto tree = hfisher::ClusterTree::from_points(x, n, 1, o.leaf);
    double t0 = now();
    auto Hs = HS::from_matvec(op, n, tree, co);
    r.s_build = now() - t0;
    r.s_products = Hs.build_info().products;
    r.s_est = Hs.build_info().error_estimate;
    r.s_k = max_rank_of(Hs);
    r.s_err = rel_fro(to_host(Hs.to_dense()), A);
    t0 = now();
    auto Hh = HO::from_matvec(op, n, tree, co);
    r.h_build = now() - t0;
    r.h_products = Hh.build_info().products;
    r.h_est = Hh.build_info().error_estimate;
    r.h_k = max_rank_of(Hh);
    r.h_err = rel_fro(to_host(Hh.to_dense()), A);
    std::printf("%7d | %6d %5d %8d %9.2e %9.2e %8.3f | %6d %5d %9.2e %9.2e %8.3f\n", n, r.s_products, r.s_k,
                6 * r.s_k + 64, r.s_err, r.s_est, r.s_build, r.h_products, r.h_k, r.h_err, r.h_est, r.h_build);
    std::fflush(stdout);
    mrows.push_back(r);
  }

  // ------------------------------------------------ geometry-oblivious ordering
  std::ostringstream gram_js;
  if (o.gram_n > 0) {
    const int n = o.gram_n;
    std::printf(
        "\ngeometry-oblivious ordering: 2-D Gaussian kernel (ell %.2f, + %.2g I) on %d random points, "
        "index order shuffled (it carries no geometry); tol %.1e:\n",
        o.ell * 2, o.nugget, n, o.tol);
    std::mt19937_64 g(o.seed * 31u + 5u);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<double> x(size_t(n) * 2);
    for (auto& v : x) v = u(g);
    const auto A = kernel(x, n, 2, o.ell * 2, o.nugget);
    M Ad = to_dev(A, n, n);
    const double t0 = now();
    auto tg = hfisher::ClusterTree::from_gram([&](int i, int j) { return A[size_t(i) * n + j]; }, n, o.leaf);
    const double t_gram = now() - t0;
    struct T {
      const char* name;
      hfisher::ClusterTree tree;
    };
    const T trees[] = {{"index order", hfisher::ClusterTree::balanced(n, o.leaf)},
                       {"from_gram", tg},
                       {"from_points", hfisher::ClusterTree::from_points(x, n, 2, o.leaf)}};
    std::printf("  %-12s | %9s %6s | %9s %6s %9s\n", "tree", "HODLR MB", "k", "HSS MB", "k", "HSS est");
    gram_js << "  \"ordering\": {\"n\": " << n << ", \"from_gram_s\": " << t_gram << ", \"trees\": [";
    bool first = true;
    for (const auto& t : trees) {
      auto Ho = HO::from_dense(Ad, t.tree, co);
      auto Hs = HS::from_dense(Ad, t.tree, co);
      std::printf("  %-12s | %9.2f %6d | %9.2f %6d %9.2e\n", t.name, Ho.bytes() / 1e6, max_rank_of(Ho),
                  Hs.bytes() / 1e6, max_rank_of(Hs), Hs.build_info().error_estimate);
      gram_js << (first ? "" : ", ") << "{\"tree\": \"" << t.name << "\", \"hodlr_bytes\": " << Ho.bytes()
              << ", \"hodlr_k\": " << max_rank_of(Ho) << ", \"hss_bytes\": " << Hs.bytes()
              << ", \"hss_k\": " << max_rank_of(Hs) << "}";
      first = false;
    }
    gram_js << "]},\n";
    std::printf("  (from_gram took %.3f s)\n", t_gram);
  }

  // ------------------------------------------------ online sums
  std::ostringstream sum_js;
  if (o.sum_n > 0) {
    const int n = o.sum_n, m = std::max(1, o.features / 4), T = 10;
    std::printf(
        "\nonline sums of %d terms d_t I + G_t G_t^T (n %d, G_t n x %d), recompressed after each add; "
        "error |sum - exact|_F / |exact|_F, memory vs one term:\n",
        T, n, m);
    std::mt19937_64 g(o.seed * 131u + 7u);
    std::uniform_real_distribution<double> u(0, 1);
    std::normal_distribution<double> nd(0, 1);
    std::vector<double> x(n);
    for (auto& v : x) v = u(g);
    auto tree = hfisher::ClusterTree::from_points(x, n, 1, o.leaf);
    const auto G0 = rff(x, n, 1, m, o.ell, g);
    sum_js << "  \"online_sums\": [";
    for (int shared = 1; shared >= 0; --shared) {
      std::vector<double> exact(size_t(n) * n, 0.0);
      HS Hs;
      HO Ho;
      double one_s = 0, one_h = 0;
      for (int t = 0; t < T; ++t) {
        // shared: every task's gradients in the span of G0 (G_t = G0 C_t);
        // independent: fresh features per task
        std::vector<double> G(size_t(n) * m);
        if (shared) {
          std::vector<double> C(size_t(m) * m);
          for (auto& v : C) v = nd(g) / std::sqrt(double(m));
          for (int i = 0; i < n; ++i)
            for (int j = 0; j < m; ++j) {
              double s = 0;
              for (int c = 0; c < m; ++c) s += G0[size_t(i) * m + c] * C[size_t(c) * m + j];
              G[size_t(i) * m + j] = s;
            }
        } else {
          G = rff(x, n, 1, m, o.ell, g);
        }
        const double d = o.nugget * (1 + 0.1 * t);
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < n; ++j) {
            double s = i == j ? d : 0.0;
            for (int c = 0; c < m; ++c) s += G[size_t(i) * m + c] * G[size_t(j) * m + c];
            exact[size_t(i) * n + j] += s;
          }
        Kokkos::View<double*, Mem> dd("d", n);
        Kokkos::deep_copy(dd, d);
        M Gd = to_dev(G, n, m);
        auto ts = HS::from_factors(dd, Gd, tree, co);
        auto th = HO::from_factors(dd, Gd, tree, co);
        if (t == 0) {
          Hs = ts;
          Ho = th;
          one_s = double(ts.bytes());
          one_h = double(th.bytes());
        } else {
          Hs.add(ts);
          Ho.add(th);
        }
      }
      const double es = rel_fro(to_host(Hs.to_dense()), exact), eh = rel_fro(to_host(Ho.to_dense()), exact);
      const char* kind = shared ? "shared subspace" : "independent";
      std::printf(
          "  %-16s HSS error %.2e (%.1f x tol), memory %.2f x one term (k %d) | HODLR error %.2e, memory "
          "%.2f x one term (k %d)\n",
          kind, es, es / o.tol, Hs.bytes() / one_s, max_rank_of(Hs), eh, Ho.bytes() / one_h, max_rank_of(Ho));
      sum_js << (shared ? "" : ", ") << "{\"terms\": \"" << kind << "\", \"hss_error\": " << es
             << ", \"hss_memory_ratio\": " << Hs.bytes() / one_s << ", \"hodlr_error\": " << eh
             << ", \"hodlr_memory_ratio\": " << Ho.bytes() / one_h << "}";
    }
    sum_js << "],\n";
  }

  if (!o.output.empty()) {
    std::ostringstream csv, js;
    csv << "# machine: " << mc.cpu << "; backend: " << mc.backend << "; threads: " << mc.host_threads
        << "; date: " << mc.date << "; tol: " << o.tol << "; leaf: " << o.leaf << "; features: " << o.features << "\n";
    csv << "n,hss_build_s,hss_factor_s,hss_solve_s,hss_k,hss_products,hss_resid,hss_bytes,hss_factor_bytes,"
           "hodlr_build_s,hodlr_factor_s,hodlr_solve_s,hodlr_k,hodlr_resid,hodlr_bytes,hodlr_factor_bytes,"
           "dense_potrf_s,dense_potrs_s,hss_logdet,hodlr_logdet,dense_logdet\n";
    auto num = [](double v) { return std::isfinite(v) ? std::to_string(v) : std::string("null"); };
    js << "{\n  \"machine\": \"" << mc.cpu << "\", \"backend\": \"" << mc.backend
       << "\", \"threads\": " << mc.host_threads << ", \"date\": \"" << mc.date << "\", \"tol\": " << o.tol
       << ", \"leaf\": " << o.leaf << ", \"features\": " << o.features << ",\n  \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      csv << r.n << "," << r.s_build << "," << r.s_factor << "," << r.s_solve << "," << r.s_k << "," << r.s_products
          << "," << r.s_resid << "," << r.s_bytes << "," << r.s_fbytes << "," << r.h_build << "," << r.h_factor << ","
          << r.h_solve << "," << r.h_k << "," << r.h_resid << "," << r.h_bytes << "," << r.h_fbytes << "," << r.d_factor
          << "," << r.d_solve << "," << r.s_logdet << "," << r.h_logdet << "," << r.d_logdet << "\n";
      js << "    {\"n\": " << r.n << ", \"hss_build_s\": " << num(r.s_build)
         << ", \"hss_factor_s\": " << num(r.s_factor) << ", \"hss_solve_s\": " << num(r.s_solve)
         << ", \"hss_k\": " << r.s_k << ", \"hss_products\": " << r.s_products << ", \"hss_resid\": " << num(r.s_resid)
         << ", \"hss_bytes\": " << r.s_bytes << ", \"hodlr_build_s\": " << num(r.h_build)
         << ", \"hodlr_factor_s\": " << num(r.h_factor) << ", \"hodlr_solve_s\": " << num(r.h_solve)
         << ", \"hodlr_resid\": " << num(r.h_resid) << ", \"hodlr_bytes\": " << r.h_bytes
         << ", \"dense_potrf_s\": " << num(r.d_factor) << ", \"dense_potrs_s\": " << num(r.d_solve) << "}"
         << (i + 1 < rows.size() ? ",\n" : "\n");
    }
    js << "  ],\n  \"matrix_free\": [";
    for (size_t i = 0; i < mrows.size(); ++i) {
      const auto& r = mrows[i];
      js << (i ? ", " : "") << "{\"n\": " << r.n << ", \"hss_products\": " << r.s_products << ", \"hss_k\": " << r.s_k
         << ", \"hss_error\": " << num(r.s_err) << ", \"hss_estimate\": " << num(r.s_est)
         << ", \"hodlr_products\": " << r.h_products << ", \"hodlr_k\": " << r.h_k
         << ", \"hodlr_error\": " << num(r.h_err) << ", \"hodlr_estimate\": " << num(r.h_est) << "}";
    }
    js << "],\n" << gram_js.str() << sum_js.str();
    std::string f = fits.str();
    if (!f.empty()) f.erase(f.size() - 2);
    js << "  \"fitted_exponents\": [\n" << f << "\n  ]\n}\n";
    write_file_atomic(o.output + "/hss.csv", csv.str());
    write_file_atomic(o.output + "/hss.json", js.str());
    std::ostringstream gp;
    gp << "# file names are relative: run gnuplot in this folder\n"
       << "set terminal pngcairo size 900,600\nset output 'hss.png'\n"
       << "set logscale xy\nset xlabel 'n'\nset ylabel 'factor + solve [s]'\nset key left top\n"
       << "set title 'diag + G G^T (rank " << o.features << "): HSS vs HODLR vs dense (" << mc.backend << ", "
       << mc.host_threads << " threads, " << mc.date << ")'\nset datafile separator ','\n"
       << "plot 'hss.csv' every ::1 using 1:($3+$4) with linespoints title 'hfisher HSS', 'hss.csv' every ::1 using "
          "1:($11+$12) with linespoints title 'hfisher HODLR', 'hss.csv' every ::1 using 1:($17+$18) with linespoints "
          "title 'dense LAPACK'\n";
    write_file_atomic(o.output + "/hss.gp", gp.str());
    const bool plotted = hfisher::io::run_gnuplot(o.output, "hss.gp");
    std::printf("\nwrote %s/hss.csv, hss.json, hss.gp%s\n", o.output.c_str(), plotted ? ", hss.png" : "");
  }
  return 0;
}

Study hss_study() {
  return make_study<HssBenchOptions>("hss",
                                     "HSS against HODLR against dense LAPACK: diag + G G^T at fixed rank from "
                                     "factors, the kernel matrix matrix-free (products counted), geometry-oblivious "
                                     "ordering, online sums; build, factor, solve, memory, errors, exponents",
                                     add_hss_options, run_hss_bench);
}

}  // namespace hfisher_perf
