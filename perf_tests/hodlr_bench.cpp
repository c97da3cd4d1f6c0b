#include "hodlr_bench.hpp"
#include "studies.hpp"

#include <hfisher/hfisher.hpp>
#include <omp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "bench_common.hpp"
#include "hmat_baseline.hpp"
#include "memory_budget.hpp"

#include "lapack_decls.hpp"

namespace hfisher_perf {
namespace {

using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;
using H = hfisher::HODLR<double, Exec>;
using HS = hfisher::HSS<double, Exec>;

/// exp(-|x-y|^2 / (2 ell^2)) + nugget I, or with inv_ell > 0 the
/// exponential (Matern-1/2) kernel exp(-|x-y| / ell) + nugget I, whose
/// off-diagonal ranks grow fast as the tolerance tightens
template <class M>
struct Gauss {
  Kokkos::View<double**, Kokkos::LayoutRight, M> x;
  double inv2l2 = 0, nugget = 0, inv_ell = 0;
  KOKKOS_INLINE_FUNCTION double operator()(int i, int j) const {
    double r2 = 0;
    for (int c = 0; c < int(x.extent(1)); ++c) {
      const double d = x(i, c) - x(j, c);
      r2 += d * d;
    }
    return (inv_ell > 0 ? ::exp(-::sqrt(r2) * inv_ell) : ::exp(-r2 * inv2l2)) + (i == j ? nugget : 0.0);
  }
};

struct Row {
  std::string matrix;
  int n = 0;
  double h_build = NAN, h_factor = NAN, h_solve = NAN, h_apply = NAN, copy = NAN;
  double h_bytes = 0, h_fbytes = 0, h_resid = NAN, h_logdet = NAN;
  int kmax = 0;
  double h_est = NAN;  // the build's achieved-error estimate (build_info())
  double d_build = NAN, d_factor = NAN, d_solve = NAN, d_resid = NAN, d_logdet = NAN, d_bytes = NAN;
  double m_build = NAN, m_factor = NAN, m_solve = NAN, m_resid = NAN, m_logdet = NAN, m_bytes = NAN;
  // HSS from entries (kernel matrices): through a HODLR operator
  double s_build = NAN, s_factor = NAN, s_solve = NAN, s_resid = NAN, s_est = NAN, s_bytes = NAN;
  int s_kmax = 0;
  std::string s_ranks;  // max rank per level, root first
};

/// One busy-looping child process per requested slot; killed and reaped on
/// destruction (and by the kernel if this process dies first).
class BusyProcesses {
 public:
  explicit BusyProcesses(int count) {
    const pid_t parent = getpid();
    for (int i = 0; i < count; ++i) {
      const pid_t p = fork();
      if (p < 0) throw hfisher::Error("hodlr bench: fork of a busy process failed");
      if (p == 0) {  // only async-signal-safe calls from here on
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);
        volatile unsigned long x = 0;
        for (;;) x = x + 1;
      }
      pids_.push_back(p);
    }
  }
  ~BusyProcesses() {
    for (pid_t p : pids_) kill(p, SIGKILL);
    for (pid_t p : pids_) waitpid(p, nullptr, 0);
  }
  BusyProcesses(const BusyProcesses&) = delete;
  BusyProcesses& operator=(const BusyProcesses&) = delete;

 private:
  std::vector<pid_t> pids_;
};

/// Build + factor of hfisher (from_entries) and hmat-oss on gauss2d at n,
/// alone and beside `busy` busy processes; prints medians and slowdowns.
void oversubscribed_run(const HodlrBenchOptions& o, int n) {
  const int dim = 2;
  std::mt19937_64 g(o.seed * 1000003u + n + dim);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> pts(size_t(n) * dim), b(n);
  for (auto& v : pts) v = u(g);
  for (auto& v : b) v = u(g) - 0.5;
  Gauss<Mem> fd;
  fd.inv2l2 = 1.0 / (2 * o.ell * o.ell);
  fd.nugget = o.nugget;
  fd.x = Kokkos::View<double**, Kokkos::LayoutRight, Mem>("x", n, dim);
  {
    auto h = Kokkos::create_mirror_view(fd.x);
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < dim; ++c) h(i, c) = pts[size_t(i) * dim + c];
    Kokkos::deep_copy(fd.x, h);
  }
  const auto tree = hfisher::ClusterTree::from_points(pts, n, dim, o.leaf);
  hfisher::CompressionOptions co;
  co.tol = o.tol;
  co.max_rank = o.max_rank;
  auto hf = [&] {
    const double t0 = now();
    H A = H::from_entries(fd, tree, co);
    auto F = A.factor();
    Exec().fence();
    return now() - t0;
  };
  auto hm = [&] {
    const HmatResult r = run_hmat(pts, dim, n, fd.inv2l2, o.nugget, o.tol, o.leaf, b);
    return r.available && r.error.empty() ? r.build_s + r.factor_s : NAN;
  };
  const long cores = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
  std::vector<double> hq, mq, hb, mb;
  hf();  // warm-up (first-touch allocations, thread start-up)
  for (int r = 0; r < o.busy_reps; ++r) {
    hq.push_back(hf());
    if (o.hmat) mq.push_back(hm());
  }
  {
    BusyProcesses busy(static_cast<int>(cores));
    for (int r = 0; r < o.busy_reps; ++r) {
      hb.push_back(hf());
      if (o.hmat) mb.push_back(hm());
    }
  }
  std::printf(
      "\noversubscribed: gauss2d n=%d, build + factor alone and beside %ld busy processes (one per core; a "
      "fair share of the cores gives 2x), medians of %d:\n",
      n, cores, o.busy_reps);
  const double h0 = median(hq), h1 = median(hb);
  std::printf("  hfisher   alone %.3f s, busy %.3f s, slowdown %.2f\n", h0, h1, h1 / h0);
  if (o.hmat && !mq.empty() && std::isfinite(median(mq))) {
    const double m0 = median(mq), m1 = median(mb);
    std::printf("  hmat-oss  alone %.3f s, busy %.3f s, slowdown %.2f\n", m0, m1, m1 / m0);
  }
  std::fflush(stdout);
}

}  // namespace

int run_hodlr_bench(const HodlrBenchOptions& o) {
  if (!o.output.empty()) hfisher::io::prepare_output_dir(o.output, "hfisher-bench hodlr");  // before any work
  const Machine mc = describe_machine();
  std::printf("hfisher-bench hodlr: HODLR vs dense LAPACK Cholesky (double)\n");
  std::printf("machine: %s | backend: %s | host threads: %s | OMP_WAIT_POLICY: %s | OpenBLAS threads: %d | %s\n",
              mc.cpu.c_str(), mc.backend.c_str(), mc.host_threads.c_str(), mc.omp_wait.c_str(), omp_get_max_threads(),
              mc.date.c_str());
  std::printf(
      "tol %.1e, leaf %d, max rank %s; gauss: exp(-|x-y|^2 / (2 * %.2f^2)) + %.2g I on uniform points "
      "(exp2d: exp(-|x-y| / ell)); "
      "rff: %.2g I + G G^T, G n x n/2 random Fourier features of the same kernel in 2-D\n\n",
      o.tol, o.leaf, o.max_rank > 0 ? std::to_string(o.max_rank).c_str() : "none", o.ell, o.nugget, o.nugget);
  std::printf("%-8s %6s | %8s %8s %8s %5s %8s %9s %7s | %8s %8s %8s %9s | %8s %8s %8s %9s | %7s %9s\n", "matrix", "n",
              "build_s", "factor_s", "solve_s", "kmax", "est", "resid", "MB", "hmat_bl", "hmat_fac", "hmat_sol",
              "hmat_res", "dense_bl", "potrf_s", "potrs_s", "resid", "vsdense", "logdet_err");
  // the memory budget, checked for every size before any work: dense LAPACK
  // (8 n^2), the random Fourier factors (host and device, 8 n^2 in all) and
  // the H-matrices with their factorizations at rank <= leaf (or max_rank)
  // per block, for each format run (hfisher HODLR, hmat-oss, HSS)
  const std::size_t budget = hfisher_cli::memory_budget_bytes(o.memory_budget_gib);
  for (const auto& name : o.matrices)
    for (int n : o.sizes) {
      if (name == "rff" && n > o.rff_max) continue;
      int L = 0;
      while ((long(o.leaf) << (L + 1)) <= long(n)) ++L;
      const double k = o.max_rank > 0 ? std::min(o.max_rank, o.leaf) : o.leaf;
      const double hm = 2.0 * 8 * double(n) * (o.leaf + 2 * L * k);
      const int formats = 1 + ((o.hmat && name != "rff") ? 1 : 0) + ((o.hss && name != "rff") ? 1 : 0);
      const double dense = n <= o.dense_max ? 8.0 * n * n : 0, rff = name == "rff" ? 8.0 * n * n : 0;
      hfisher_cli::check_memory(dense + rff + formats * hm + 16.0 * n * o.apply_rhs, budget, "hfisher-bench hodlr",
                                name + " at n = " + std::to_string(n) + " (dense LAPACK " +
                                    hfisher_cli::mib_text(dense) + ", factors " + hfisher_cli::mib_text(rff) + ", " +
                                    std::to_string(formats) + " H-matrix format(s) at rank <= " +
                                    std::to_string(int(k)) + " about " + hfisher_cli::mib_text(formats * hm) + ")");
    }
  std::vector<Row> rows;
  for (const auto& name : o.matrices) {
    if (name != "gauss2d" && name != "gauss3d" && name != "rff" && name != "exp2d")
      throw hfisher::Error("hodlr bench: unknown matrix '" + name + "' (gauss2d, gauss3d, exp2d, rff)");
    for (int n : o.sizes) {
      if (name == "rff" && n > o.rff_max) continue;
      Row r;
      r.matrix = name;
      r.n = n;
      const int dim = name == "gauss3d" ? 3 : 2;
      std::mt19937_64 g(o.seed * 1000003u + n + dim);
      std::uniform_real_distribution<double> u(0, 1);
      std::vector<double> pts(size_t(n) * dim);
      for (auto& v : pts) v = u(g);
      Gauss<Mem> fd;
      fd.inv2l2 = 1.0 / (2 * o.ell * o.ell);
      fd.nugget = o.nugget;
      fd.inv_ell = name == "exp2d" ? 1.0 / o.ell : 0.0;
      fd.x = Kokkos::View<double**, Kokkos::LayoutRight, Mem>("x", n, dim);
      Gauss<Kokkos::HostSpace> fh = {Kokkos::View<double**, Kokkos::LayoutRight, Kokkos::HostSpace>("xh", n, dim),
                                     fd.inv2l2, fd.nugget, fd.inv_ell};
      for (int i = 0; i < n; ++i)
        for (int c = 0; c < dim; ++c) fh.x(i, c) = pts[size_t(i) * dim + c];
      Kokkos::deep_copy(fd.x, fh.x);
      auto tree = hfisher::ClusterTree::from_points(pts, n, dim, o.leaf);
      hfisher::CompressionOptions co;
      co.tol = o.tol;
      co.max_rank = o.max_rank;
      // random Fourier features (rff only)
      const int m = n / 2;
      std::vector<double> G;
      if (name == "rff") {
        G.resize(size_t(n) * m);
        std::normal_distribution<double> nd(0, 1.0 / o.ell);
        std::uniform_real_distribution<double> ub(0, 6.283185307179586);
        std::vector<double> w(size_t(m) * dim), b(m);
        for (auto& v : w) v = nd(g);
        for (auto& v : b) v = ub(g);
        const double s = std::sqrt(2.0 / m);
#pragma omp parallel for
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < m; ++j) {
            double a = b[j];
            for (int c = 0; c < dim; ++c) a += w[size_t(j) * dim + c] * pts[size_t(i) * dim + c];
            G[size_t(i) * m + j] = s * std::cos(a);
          }
      }
      // ------------------------------------------------ HODLR
      H A;
      double t0 = now();
      if (name == "rff") {
        Kokkos::View<double**, Kokkos::LayoutRight, Mem> Gd("G", n, m);
        Kokkos::View<double*, Mem> dd("d", n);
        auto Gh = Kokkos::create_mirror_view(Gd);
        std::copy(G.begin(), G.end(), Gh.data());
        Kokkos::deep_copy(Gd, Gh);
        Kokkos::deep_copy(dd, o.nugget);
        t0 = now();
        A = H::from_factors(dd, Gd, tree, co);
      } else {
        A = H::from_entries(fd, tree, co);
      }
      Exec().fence();
      r.h_build = now() - t0;
      for (const auto& s : A.ranks()) r.kmax = std::max(r.kmax, s.max);
      r.h_est = A.build_info().error_estimate;
      t0 = now();
      auto F = A.factor();
      Exec().fence();
      r.h_factor = now() - t0;
      r.h_logdet = F.logdet();
      r.h_bytes = double(A.bytes());
      r.h_fbytes = double(F.bytes());
      H::Matrix B("b", n, 1), X("x", n, 1);
      std::vector<double> bh(n);
      for (auto& v : bh) v = u(g) - 0.5;
      {
        auto h = Kokkos::create_mirror_view(B);
        for (int i = 0; i < n; ++i) h(i, 0) = bh[i];
        Kokkos::deep_copy(B, h);
      }
      t0 = now();
      F.solve(B, X);
      Exec().fence();
      r.h_solve = now() - t0;
      auto xh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), X);
      // apply with many right-hand sides vs a plain copy of the same bytes
      {
        H::Matrix Xa("Xa", n, o.apply_rhs), Ya("Ya", n, o.apply_rhs);
        Kokkos::deep_copy(Xa, 1.0);
        r.h_apply = best_time(
            3, [] {},
            [&] {
              A.apply(Xa, Ya);
              Exec().fence();
            });
        const size_t words = size_t(r.h_bytes / sizeof(double));
        Kokkos::View<double*, Mem> c1("c1", words), c2("c2", words);
        r.copy = best_time(
            3, [] {},
            [&] {
              Kokkos::deep_copy(c2, c1);
              Exec().fence();
            });
      }
      // residual against the exact matrix
      auto exact_matvec = [&](const std::vector<double>& x, std::vector<double>& y) {
        if (name == "rff") {
          std::vector<double> t(m, 0.0);
          for (int i = 0; i < n; ++i)
            for (int j = 0; j < m; ++j) t[j] += G[size_t(i) * m + j] * x[i];
#pragma omp parallel for
          for (int i = 0; i < n; ++i) {
            double s = o.nugget * x[i];
            for (int j = 0; j < m; ++j) s += G[size_t(i) * m + j] * t[j];
            y[i] = s;
          }
        } else {
#pragma omp parallel for schedule(dynamic, 64)
          for (int i = 0; i < n; ++i) {
            double s = 0;
            for (int j = 0; j < n; ++j) s += fh(i, j) * x[j];
            y[i] = s;
          }
        }
      };
      auto rel_resid = [&](const std::vector<double>& x) {
        std::vector<double> y(n);
        exact_matvec(x, y);
        double num = 0, den = 0;
        for (int i = 0; i < n; ++i) num += (y[i] - bh[i]) * (y[i] - bh[i]), den += bh[i] * bh[i];
        return std::sqrt(num / den);
      };
      if (n <= o.residual_max) {
        std::vector<double> x(n);
        for (int i = 0; i < n; ++i) x[i] = xh(i, 0);
        r.h_resid = rel_resid(x);
      }
      // ------------------------------------------------ HSS from entries (kernel matrices)
      if (o.hss && name != "rff") {
        t0 = now();
        HS S = HS::from_entries(fd, tree, co);
        Exec().fence();
        r.s_build = now() - t0;
        r.s_est = S.build_info().error_estimate;
        for (const auto& st : S.ranks()) {
          r.s_kmax = std::max(r.s_kmax, st.max);
          r.s_ranks += (r.s_ranks.empty() ? "" : " ") + std::to_string(st.max);
        }
        t0 = now();
        auto SF = S.factor();
        Exec().fence();
        r.s_factor = now() - t0;
        r.s_bytes = double(S.bytes() + SF.bytes());
        HS::Matrix Xs("xs", n, 1);
        t0 = now();
        SF.solve(B, Xs);
        Exec().fence();
        r.s_solve = now() - t0;
        if (n <= o.residual_max) {
          auto xsh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), Xs);
          std::vector<double> x(n);
          for (int i = 0; i < n; ++i) x[i] = xsh(i, 0);
          r.s_resid = rel_resid(x);
        }
      }
      // ------------------------------------------------ hmat-oss (kernel matrices)
      if (o.hmat && (name == "gauss2d" || name == "gauss3d")) {  // the baseline builds Gaussian kernels
        const HmatResult hr = run_hmat(pts, dim, n, fd.inv2l2, o.nugget, o.tol, o.leaf, bh);
        if (hr.available && hr.error.empty()) {
          r.m_build = hr.build_s;
          r.m_factor = hr.factor_s;
          r.m_solve = hr.solve_s;
          r.m_logdet = hr.logdet;
          r.m_bytes = hr.bytes;
          if (n <= o.residual_max) r.m_resid = rel_resid(hr.x);
        } else if (!hr.error.empty() && n == o.sizes.front()) {
          std::printf("  (hmat-oss: %s)\n", hr.error.c_str());
        }
      }
      // ------------------------------------------------ dense LAPACK
      const double dense_bytes = double(n) * n * 8;
      if (n <= o.dense_max) {  // within the budget: checked above
        std::vector<double> Ad(size_t(n) * n);
        t0 = now();
        if (name == "rff") {
          const double one = 1, zero = 0;
          dgemm_("T", "N", &n, &n, &m, &one, G.data(), &m, G.data(), &m, &zero, Ad.data(), &n);
          for (int i = 0; i < n; ++i) Ad[size_t(i) * n + i] += o.nugget;
        } else {
#pragma omp parallel for schedule(dynamic, 64)
          for (int j = 0; j < n; ++j)
            for (int i = 0; i < n; ++i) Ad[size_t(j) * n + i] = fh(i, j);
        }
        r.d_build = now() - t0;
        int info = 0;
        t0 = now();
        dpotrf_("L", &n, Ad.data(), &n, &info);
        r.d_factor = now() - t0;
        if (info != 0) throw hfisher::Error("dense dpotrf failed (info " + std::to_string(info) + ")");
        std::vector<double> x = bh;
        const int one = 1;
        t0 = now();
        dpotrs_("L", &n, &one, Ad.data(), &n, x.data(), &n, &info);
        r.d_solve = now() - t0;
        double ld = 0;
        for (int i = 0; i < n; ++i) ld += 2 * std::log(Ad[size_t(i) * n + i]);
        r.d_logdet = ld;
        r.d_bytes = dense_bytes;
        if (n <= o.residual_max) r.d_resid = rel_resid(x);
      }
      const double speed = (r.d_factor + r.d_solve) / (r.h_factor + r.h_solve);
      const double lderr = std::abs(r.h_logdet - r.d_logdet) / std::abs(r.d_logdet);
      std::printf(
          "%-8s %6d | %8.3f %8.3f %8.4f %5d %8.1e %9.2e %7.1f | %8.3f %8.3f %8.4f %9.2e | %8.3f %8.3f %8.4f %9.2e | "
          "%7.1f %9.2e\n",
          name.c_str(), n, r.h_build, r.h_factor, r.h_solve, r.kmax, r.h_est, r.h_resid, (r.h_bytes + r.h_fbytes) / 1e6,
          r.m_build, r.m_factor, r.m_solve, r.m_resid, r.d_build, r.d_factor, r.d_solve, r.d_resid, speed, lderr);
      std::fflush(stdout);
      rows.push_back(r);
    }
  }
  // fitted exponents and apply bandwidth
  std::printf("\nfitted growth exponents (least squares of log t on log n):\n");
  std::ostringstream fits;
  for (const auto& name : o.matrices) {
    std::vector<double> ns, hb, hf, hs, hfs, df, dfs, mfs;
    for (const auto& r : rows)
      if (r.matrix == name) {
        ns.push_back(r.n);
        hb.push_back(r.h_build);
        hf.push_back(r.h_factor);
        hs.push_back(r.h_solve);
        hfs.push_back(r.h_factor + r.h_solve);
        df.push_back(r.d_factor);
        dfs.push_back(r.d_factor + r.d_solve);
        mfs.push_back(r.m_factor + r.m_solve);
      }
    if (ns.size() < 2) continue;
    std::printf(
        "  %-8s HODLR build %.2f, factor %.2f, solve %.2f, factor+solve %.2f | hmat-oss factor+solve %.2f | dense "
        "factor+solve %.2f\n",
        name.c_str(), slope(ns, hb), slope(ns, hf), slope(ns, hs), slope(ns, hfs), slope(ns, mfs), slope(ns, dfs));
    fits << "    {\"matrix\": \"" << name << "\", \"hodlr_build\": " << slope(ns, hb)
         << ", \"hodlr_factor\": " << slope(ns, hf) << ", \"hodlr_solve\": " << slope(ns, hs)
         << ", \"hodlr_factor_solve\": " << slope(ns, hfs) << ", \"dense_factor_solve\": " << slope(ns, dfs) << "},\n";
  }
  std::printf("\nbuild + factor + solve, hfisher HODLR vs hmat-oss (same matrix, tolerance, leaf size):\n");
  for (const auto& r : rows)
    if (std::isfinite(r.m_factor))
      std::printf(
          "  %-8s n=%6d  hfisher %.3f s (resid %.1e, %.1f MB)  hmat-oss %.3f s (resid %.1e, %.1f MB)  ratio %.2f\n",
          r.matrix.c_str(), r.n, r.h_build + r.h_factor + r.h_solve, r.h_resid, r.h_bytes / 1e6,
          r.m_build + r.m_factor + r.m_solve, r.m_resid, r.m_bytes / 1e6,
          (r.m_build + r.m_factor + r.m_solve) / (r.h_build + r.h_factor + r.h_solve));
  if (o.hss) {
    std::printf(
        "\nHSS from entries (HSS::from_entries: a HODLR operator from ACA at tol/10, then the matrix-free "
        "construction) vs hmat-oss, build + factor + solve:\n");
    for (const auto& r : rows)
      if (std::isfinite(r.s_build))
        std::printf(
            "  %-8s n=%6d  HSS build %.3f s, factor %.4f s, solve %.4f s, est %.1e (tol %.1e), resid %.1e, "
            "%.1f MB, max rank per level (root first) %s | hmat-oss %.3f s | ratio hmat-oss/HSS %.2f, "
            "factor+solve %.2f\n",
            r.matrix.c_str(), r.n, r.s_build, r.s_factor, r.s_solve, r.s_est, o.tol, r.s_resid, r.s_bytes / 1e6,
            r.s_ranks.c_str(), r.m_build + r.m_factor + r.m_solve,
            (r.m_build + r.m_factor + r.m_solve) / (r.s_build + r.s_factor + r.s_solve),
            (r.m_factor + r.m_solve) / (r.s_factor + r.s_solve));
  }
  std::printf("\napply with %d right-hand sides vs a plain copy of the same bytes (bandwidth ratio):\n", o.apply_rhs);
  for (const auto& r : rows)
    std::printf("  %-8s n=%6d  apply %.4f s, copy %.5f s, ratio %.2f\n", r.matrix.c_str(), r.n, r.h_apply, r.copy,
                r.copy / r.h_apply);
  if (o.busy > 0) oversubscribed_run(o, o.busy);
  if (!o.output.empty()) {
    std::ostringstream csv, js;
    csv << "# machine: " << mc.cpu << "; backend: " << mc.backend << "; threads: " << mc.host_threads
        << "; date: " << mc.date << "; tol: " << o.tol << "; leaf: " << o.leaf << "\n";
    csv << "matrix,n,hodlr_build_s,hodlr_factor_s,hodlr_solve_s,hodlr_apply" << o.apply_rhs
        << "_s,copy_s,hodlr_max_rank,hodlr_bytes,factor_bytes,hodlr_resid,hodlr_logdet,dense_build_s,dense_potrf_s,"
           "dense_potrs_s,dense_resid,dense_logdet,hmat_build_s,hmat_factor_s,hmat_solve_s,hmat_resid,hmat_logdet,"
           "hmat_bytes,hodlr_error_estimate,hss_build_s,hss_factor_s,hss_solve_s,hss_resid,hss_error_estimate,hss_max_"
           "rank,"
           "hss_bytes\n";
    js << "{\n  \"machine\": \"" << mc.cpu << "\", \"backend\": \"" << mc.backend
       << "\", \"threads\": " << mc.host_threads << ", \"date\": \"" << mc.date << "\", \"tol\": " << o.tol
       << ",\n  \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      csv << r.matrix << "," << r.n << "," << r.h_build << "," << r.h_factor << "," << r.h_solve << "," << r.h_apply
          << "," << r.copy << "," << r.kmax << "," << r.h_bytes << "," << r.h_fbytes << "," << r.h_resid << ","
          << r.h_logdet << "," << r.d_build << "," << r.d_factor << "," << r.d_solve << "," << r.d_resid << ","
          << r.d_logdet << "," << r.m_build << "," << r.m_factor << "," << r.m_solve << "," << r.m_resid << ","
          << r.m_logdet << "," << r.m_bytes << "," << r.h_est << "," << r.s_build << "," << r.s_factor << ","
          << r.s_solve << "," << r.s_resid << "," << r.s_est << "," << r.s_kmax << "," << r.s_bytes << "\n";
      auto num = [](double v) { return std::isfinite(v) ? std::to_string(v) : std::string("null"); };
      js << "    {\"matrix\": \"" << r.matrix << "\", \"n\": " << r.n << ", \"hodlr_build_s\": " << num(r.h_build)
         << ", \"hodlr_factor_s\": " << num(r.h_factor) << ", \"hodlr_solve_s\": " << num(r.h_solve)
         << ", \"hodlr_resid\": " << num(r.h_resid) << ", \"hodlr_error_estimate\": " << num(r.h_est)
         << ", \"dense_potrf_s\": " << num(r.d_factor) << ", \"dense_potrs_s\": " << num(r.d_solve)
         << ", \"dense_resid\": " << num(r.d_resid) << ", \"hmat_build_s\": " << num(r.m_build)
         << ", \"hmat_factor_s\": " << num(r.m_factor) << ", \"hmat_solve_s\": " << num(r.m_solve)
         << ", \"hmat_resid\": " << num(r.m_resid) << ", \"hss_build_s\": " << num(r.s_build)
         << ", \"hss_factor_s\": " << num(r.s_factor) << ", \"hss_solve_s\": " << num(r.s_solve)
         << ", \"hss_resid\": " << num(r.s_resid) << ", \"hss_error_estimate\": " << num(r.s_est)
         << ", \"hss_max_rank_per_level\": \"" << r.s_ranks << "\"}" << (i + 1 < rows.size() ? ",\n" : "\n");
    }
    std::string f = fits.str();
    if (!f.empty()) f.erase(f.size() - 2);
    js << "  ],\n  \"fitted_exponents\": [\n" << f << "\n  ]\n}\n";
    write_file_atomic(o.output + "/hodlr.csv", csv.str());
    write_file_atomic(o.output + "/hodlr.json", js.str());
    // gnuplot script (and PNG when gnuplot is installed)
    std::ostringstream gp;
    gp << "# file names are relative: run gnuplot in this folder\n"
       << "set terminal pngcairo size 900,600\nset output 'hodlr.png'\n"
       << "set logscale xy\nset xlabel 'n'\nset ylabel 'factor + solve [s]'\nset key left top\n"
       << "set title 'HODLR vs dense Cholesky (" << mc.backend << ", " << mc.host_threads << " threads, " << mc.date
       << ")'\nset datafile separator ','\nplot ";
    bool first = true;
    for (const auto& name : o.matrices) {
      gp << (first ? "" : ", ") << "'hodlr.csv' every ::1 using (strcol(1) eq '" << name
         << "' ? $2 : 1/0):($4+$5) with linespoints title 'hfisher HODLR " << name
         << "', 'hodlr.csv' every ::1 using (strcol(1) eq '" << name
         << "' ? $2 : 1/0):($14+$15) with linespoints title 'dense LAPACK " << name << "'";
      if (o.hmat && name != "rff")
        gp << ", 'hodlr.csv' every ::1 using (strcol(1) eq '" << name
           << "' ? $2 : 1/0):($19+$20) with linespoints title 'hmat-oss HODLR " << name << "'";
      first = false;
    }
    gp << "\n";
    write_file_atomic(o.output + "/hodlr.gp", gp.str());
    const bool plotted = hfisher::io::run_gnuplot(o.output, "hodlr.gp");
    std::printf("\nwrote %s/hodlr.csv, hodlr.json, hodlr.gp%s\n", o.output.c_str(), plotted ? ", hodlr.png" : "");
  }
  return 0;
}

Study hodlr_study() {
  return make_study<HodlrBenchOptions>("hodlr",
                                       "HODLR (and HSS) build, factor, solve, logdet against dense LAPACK Cholesky and "
                                       "hmat-oss; growth exponents; the oversubscribed run",
                                       add_hodlr_options, run_hodlr_bench);
}

}  // namespace hfisher_perf
