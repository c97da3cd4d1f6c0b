#include "kernels_bench.hpp"
#include "studies.hpp"

#include <hfisher/hfisher.hpp>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>

#include "bench_common.hpp"

#include "lapack_decls.hpp"

namespace hfisher_perf {
namespace {

template <class T>
struct Lapack;
template <>
struct Lapack<double> {
  static void gemm(int n, const double* a, const double* b, double* c) {
    const double one = 1, zero = 0;
    dgemm_("N", "N", &n, &n, &n, &one, a, &n, b, &n, &zero, c, &n);
  }
  static void potrf(int n, double* a) {
    int info;
    dpotrf_("L", &n, a, &n, &info);
  }
  // the row-major L X = B of the hfisher call is X^T L^T = B^T column-major
  static void trsm(int n, const double* l, double* b) {
    const double one = 1;
    dtrsm_("R", "U", "N", "N", &n, &n, &one, l, &n, b, &n);
  }
  static void geqrf(int n, double* a, double* tau, double* w, int lw) {
    int info;
    dgeqrf_(&n, &n, a, &n, tau, w, &lw, &info);
  }
  static void gesdd(int n, double* a, double* s, double* u, double* vt, double* w, int lw, int* iw) {
    int info;
    dgesdd_("S", &n, &n, a, &n, s, u, &n, vt, &n, w, &lw, iw, &info);
  }
  static void syev(int n, double* a, double* w, double* work, int lw) {
    int info;
    dsyev_("V", "L", &n, a, &n, w, work, &lw, &info);
  }
};
template <>
struct Lapack<float> {
  static void gemm(int n, const float* a, const float* b, float* c) {
    const float one = 1, zero = 0;
    sgemm_("N", "N", &n, &n, &n, &one, a, &n, b, &n, &zero, c, &n);
  }
  static void potrf(int n, float* a) {
    int info;
    spotrf_("L", &n, a, &n, &info);
  }
  static void trsm(int n, const float* l, float* b) {
    const float one = 1;
    strsm_("R", "U", "N", "N", &n, &n, &one, l, &n, b, &n);
  }
  static void geqrf(int n, float* a, float* tau, float* w, int lw) {
    int info;
    sgeqrf_(&n, &n, a, &n, tau, w, &lw, &info);
  }
  static void gesdd(int n, float* a, float* s, float* u, float* vt, float* w, int lw, int* iw) {
    int info;
    sgesdd_("S", &n, &n, a, &n, s, u, &n, vt, &n, w, &lw, iw, &info);
  }
  static void syev(int n, float* a, float* w, float* work, int lw) {
    int info;
    ssyev_("V", "L", &n, a, &n, w, work, &lw, &info);
  }
};

double nominal_flops(const std::string& op, double n) {
  if (op == "gemm") return 2 * n * n * n;
  if (op == "potrf") return n * n * n / 3;
  if (op == "trsm") return n * n * n;  // n right-hand sides
  if (op == "qr") return 4.0 / 3.0 * n * n * n;
  if (op == "syev" || op == "syev-jacobi") return 9 * n * n * n;  // eigenvalues and vectors (Golub & Van Loan)
  return 22 * n * n * n;  // svd with thin U, V (Golub & Van Loan's count for m = n)
}

struct Row {
  std::string op;
  int n, batch;
  double t_hf, t_loop, t_omp;
};

template <class T>
Row run_case(const std::string& op, int n, int nb, int reps) {
  using E = Kokkos::DefaultExecutionSpace;
  const size_t sz = size_t(n) * n, total = sz * nb;
  std::vector<T> h0(total);
  std::mt19937_64 g(1234 + n + nb);
  std::normal_distribution<double> d;
  for (auto& x : h0) x = T(d(g));
  if (op == "syev" || op == "syev-jacobi")  // symmetric entries
    for (int b = 0; b < nb; ++b) {
      T* a = h0.data() + b * sz;
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < i; ++j) a[i * n + j] = a[j * n + i] = T(0.5) * (a[i * n + j] + a[j * n + i]);
    }
  if (op == "potrf" || op == "trsm") {  // diagonally dominant SPD entries: symmetric + n I (trsm: lower triangle)
    for (int b = 0; b < nb; ++b) {
      T* a = h0.data() + b * sz;
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < i; ++j) a[i * n + j] = a[j * n + i] = T(0.5) * (a[i * n + j] + a[j * n + i]);
      for (int i = 0; i < n; ++i) a[i * n + i] = T(2 * n) + std::abs(a[i * n + i]);
    }
  }
  Row row{op, n, nb, 0, 0, 0};
  // ---------------- hfisher
  {
    hfisher::BatchMatrix<T, E> A0("A0", nb, n, n), A("A", nb, n, n);
    auto hm = Kokkos::create_mirror_view(A0);
    std::memcpy(hm.data(), h0.data(), total * sizeof(T));
    Kokkos::deep_copy(A0, hm);
    Kokkos::deep_copy(A, A0);
    E space;
    auto restore = [&] {
      Kokkos::deep_copy(space, A, A0);
      space.fence();
    };
    if (op == "gemm") {
      hfisher::BatchMatrix<T, E> C("C", nb, n, n);
      row.t_hf = best_time(
          reps, [] {},
          [&] {
            hfisher::kernels::gemm(space, hfisher::Op::NoTrans, hfisher::Op::NoTrans, T(1), A0, A, T(0), C);
            space.fence();
          });
    } else if (op == "potrf") {
      row.t_hf = best_time(reps, restore, [&] {
        hfisher::kernels::potrf(space, A);
        space.fence();
      });
    } else if (op == "trsm") {  // L X = B, L the lower triangle of A0, n right-hand sides
      row.t_hf = best_time(reps, restore, [&] {
        hfisher::kernels::trsm(space, hfisher::Side::Left, hfisher::Uplo::Lower, hfisher::Op::NoTrans,
                               hfisher::Diag::NonUnit, T(1), A0, A);
        space.fence();
      });
    } else if (op == "qr") {
      hfisher::BatchVector<T, E> tau("tau", nb, n);
      row.t_hf = best_time(reps, restore, [&] {
        hfisher::kernels::qr(space, A, tau);
        space.fence();
      });
    } else if (op == "syev" || op == "syev-jacobi") {
      hfisher::BatchMatrix<T, E> V("V", nb, n, n);
      hfisher::BatchVector<T, E> W("W", nb, n);
      const auto method = op == "syev" ? hfisher::kernels::SyevMethod::Auto : hfisher::kernels::SyevMethod::Jacobi;
      row.t_hf = best_time(
          reps, [] {},
          [&] {
            hfisher::kernels::syev(space, A, W, V, method);
            space.fence();
          });
    } else {
      hfisher::BatchMatrix<T, E> U("U", nb, n, n), V("V", nb, n, n);
      hfisher::BatchVector<T, E> S("S", nb, n);
      row.t_hf = best_time(
          reps, [] {},
          [&] {
            hfisher::kernels::svd(space, A, U, S, V);
            space.fence();
          });
    }
  }
  // ---------------- OpenBLAS / LAPACK loops
  std::vector<T> a(total), c(op == "gemm" || op == "svd" ? total : 0);
  // gemm multiplies h0 by a copy of it: two operands read from memory, as
  // hfisher's A0 and A (one buffer for both would halve the loop's reads)
  if (op == "gemm") std::memcpy(a.data(), h0.data(), total * sizeof(T));
  const int nthreads = omp_get_max_threads();
  auto run_loop = [&](bool parallel) {
    const int saved = openblas_get_num_threads ? openblas_get_num_threads() : 1;
    if (parallel && openblas_set_num_threads) openblas_set_num_threads(1);
    auto restore = [&] {
      if (op != "gemm") std::memcpy(a.data(), h0.data(), total * sizeof(T));
    };
    auto body = [&](int b, T* w, int lw, int* iw, T* s, T* vt) {
      T* ab = a.data() + b * sz;
      if (op == "gemm")
        Lapack<T>::gemm(n, h0.data() + b * sz, ab, c.data() + b * sz);
      else if (op == "potrf")
        Lapack<T>::potrf(n, ab);
      else if (op == "trsm")
        Lapack<T>::trsm(n, h0.data() + b * sz, ab);
      else if (op == "qr")
        Lapack<T>::geqrf(n, ab, s, w, lw);
      else if (op == "syev" || op == "syev-jacobi")
        Lapack<T>::syev(n, ab, s, w, lw);
      else
        Lapack<T>::gesdd(n, ab, s, c.data() + b * sz, vt, w, lw, iw);
    };
    // workspace query
    int lw = 1;
    if (op == "qr" || op == "svd" || op == "syev" || op == "syev-jacobi") {
      std::vector<T> tmp(sz, T(1)), s(n), vt(sz);
      std::vector<int> iw(8 * n);
      T q = 0;
      int m1 = -1, info;
      if (op == "syev" || op == "syev-jacobi") {
        if constexpr (std::is_same<T, double>::value)
          dsyev_("V", "L", &n, tmp.data(), &n, s.data(), &q, &m1, &info);
        else
          ssyev_("V", "L", &n, tmp.data(), &n, s.data(), &q, &m1, &info);
      } else if (op == "qr") {
        if constexpr (std::is_same<T, double>::value)
          dgeqrf_(&n, &n, tmp.data(), &n, s.data(), &q, &m1, &info);
        else
          sgeqrf_(&n, &n, tmp.data(), &n, s.data(), &q, &m1, &info);
      } else {
        if constexpr (std::is_same<T, double>::value)
          dgesdd_("S", &n, &n, tmp.data(), &n, s.data(), tmp.data(), &n, vt.data(), &n, &q, &m1, iw.data(), &info);
        else
          sgesdd_("S", &n, &n, tmp.data(), &n, s.data(), tmp.data(), &n, vt.data(), &n, &q, &m1, iw.data(), &info);
      }
      lw = int(q) + 1;
    }
    const double t = best_time(reps, restore, [&] {
      if (parallel) {
#pragma omp parallel
        {
          std::vector<T> w(lw), s(n), vt(sz);
          std::vector<int> iw(8 * n);
#pragma omp for schedule(static)
          for (int b = 0; b < nb; ++b) body(b, w.data(), lw, iw.data(), s.data(), vt.data());
        }
      } else {
        std::vector<T> w(lw), s(n), vt(sz);
        std::vector<int> iw(8 * n);
        for (int b = 0; b < nb; ++b) body(b, w.data(), lw, iw.data(), s.data(), vt.data());
      }
    });
    if (parallel && openblas_set_num_threads) openblas_set_num_threads(saved);
    return t;
  };
  row.t_loop = run_loop(false);
  row.t_omp = nthreads > 1 ? run_loop(true) : row.t_loop;
  return row;
}

}  // namespace

int run_kernels_bench(const KernelsBenchOptions& o) {
  if (!o.output.empty()) hfisher::io::prepare_output_dir(o.output, "hfisher-bench kernels");  // before any work
  const Machine mc = describe_machine();
  std::printf("hfisher batched kernels vs OpenBLAS/LAPACK loops (%s)\n", o.precision.c_str());
  std::printf("machine: %s | backend: %s | host threads: %s | OMP_WAIT_POLICY: %s | %s\n", mc.cpu.c_str(),
              mc.backend.c_str(), mc.host_threads.c_str(), mc.omp_wait.c_str(), mc.date.c_str());
  std::printf(
      "loop = sequential loop of calls, OpenBLAS threaded; omp = OpenMP-parallel loop, 1 OpenBLAS thread each\n");
  std::printf(
      "GFLOP/s use nominal counts (gemm 2n^3, potrf n^3/3, trsm n^3 (n x n triangle, n right-hand sides), "
      "qr 4n^3/3, svd 22n^3, syev 9n^3); ratio = hfisher / best baseline\n\n");
  std::printf("%-11s %5s %6s | %10s %10s %10s | %9s %9s | %6s\n", "op", "n", "batch", "hfisher_s", "loop_s", "omp_s",
              "hf_GF/s", "blas_GF/s", "ratio");
  std::ostringstream csv;
  csv << "# machine: " << mc.cpu << "; backend: " << mc.backend << "; host threads: " << mc.host_threads
      << "; date: " << mc.date << "; precision: " << o.precision << "\n";
  csv << "op,precision,n,batch,hfisher_s,blas_loop_s,blas_omp_s,hfisher_gflops,blas_best_gflops,ratio\n";
  for (const auto& op : o.ops) {
    if (op != "gemm" && op != "potrf" && op != "trsm" && op != "qr" && op != "svd" && op != "syev" &&
        op != "syev-jacobi")
      throw hfisher::Error("kernels bench: unknown op '" + op + "' (gemm, potrf, trsm, qr, svd, syev, syev-jacobi)");
    for (int n : o.blocks)
      for (int nb : o.batches) {
        if (double(nb) * n * n > double(o.max_elements)) continue;
        if ((op == "svd" || op == "syev-jacobi") && double(nb) * nominal_flops(op, n) > o.max_svd_flops) continue;
        const Row r = o.precision == "float" ? run_case<float>(op, n, nb, o.reps) : run_case<double>(op, n, nb, o.reps);
        const double fl = nominal_flops(op, n) * nb;
        const double hf = fl / r.t_hf * 1e-9, bl = fl / std::min(r.t_loop, r.t_omp) * 1e-9;
        std::printf("%-11s %5d %6d | %10.3e %10.3e %10.3e | %9.2f %9.2f | %6.2f\n", op.c_str(), n, nb, r.t_hf, r.t_loop,
                    r.t_omp, hf, bl, hf / bl);
        std::fflush(stdout);
        csv << op << "," << o.precision << "," << n << "," << nb << "," << r.t_hf << "," << r.t_loop << "," << r.t_omp
            << "," << hf << "," << bl << "," << hf / bl << "\n";
      }
  }
  if (!o.output.empty()) {
    const std::string path = o.output + "/kernels.csv";
    write_file_atomic(path, csv.str());
    std::printf("\nwrote %s\n", path.c_str());
  }
  return 0;
}

Study kernels_study() {
  return make_study<KernelsBenchOptions>(
      "kernels", "batched GEMM, TRSM, Cholesky, QR, SVD, syev against loops of OpenBLAS/LAPACK calls",
      add_kernels_options, run_kernels_bench);
}

}  // namespace hfisher_perf
