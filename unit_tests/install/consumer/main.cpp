// A tiny application linking the installed hfisher: batched Cholesky of
// 2 I (log det = n log 2) on the default execution space, and the same
// log-determinant from a HODLR factorization (whose class, in a host build,
// comes compiled from the library: core/instantiate.hpp).
#include <hfisher/hfisher.hpp>

#include <cmath>
#include <cstdio>

int main(int argc, char** argv) {
  hfisher::ScopeGuard guard(argc, argv);
  const int nb = 4, n = 5;
  hfisher::BatchMatrix<double> A("A", nb, n, n);
  Kokkos::parallel_for(
      "fill", nb, KOKKOS_LAMBDA(const int b) {
        for (int i = 0; i < n; ++i) A(b, i, i) = 2.0;
      });
  hfisher::kernels::potrf(Kokkos::DefaultExecutionSpace(), A);
  hfisher::BatchScalar<double> ld("ld", nb);
  hfisher::kernels::logdet_cholesky(Kokkos::DefaultExecutionSpace(), A, ld);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), ld);
  const int m = 64;
  Kokkos::View<double**, Kokkos::LayoutRight> D("D", m, m);
  Kokkos::parallel_for(
      "diag", m, KOKKOS_LAMBDA(const int i) { D(i, i) = 2.0; });
  const auto H = hfisher::HODLR<double>::from_dense(D, hfisher::ClusterTree::balanced(m, 16));
  const double hld = H.factor().logdet();
  const bool ok = std::abs(h(3) - n * std::log(2.0)) < 1e-12 && std::abs(hld - m * std::log(2.0)) < 1e-10;
  std::printf("hfisher %s consumer: logdet = %.12f, HODLR logdet = %.12f (%s)\n", hfisher::version(), h(3), hld,
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
