#include "hmat_baseline.hpp"

#include <chrono>
#include <cmath>

#ifdef HFISHER_HAVE_HMAT
#include <hmat/hmat.h>
#endif

namespace hfisher_perf {

#ifdef HFISHER_HAVE_HMAT
namespace {
struct Ctx {
  const double* pts;
  int dim;
  double inv2l2, nugget;
};
void entry(void* data, int i, int j, void* result) {
  const Ctx* c = static_cast<const Ctx*>(data);
  double r2 = 0;
  for (int d = 0; d < c->dim; ++d) {
    const double t = c->pts[i * c->dim + d] - c->pts[j * c->dim + d];
    r2 += t * t;
  }
  *static_cast<double*>(result) = std::exp(-r2 * c->inv2l2) + (i == j ? c->nugget : 0.0);
}
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

HmatResult run_hmat(const std::vector<double>& points, int dim, int n, double inv2l2, double nugget, double tol,
                    int leaf, const std::vector<double>& b) {
  HmatResult r;
  r.available = true;
  hmat_interface_t h;
  hmat_init_default_interface(&h, HMAT_DOUBLE_PRECISION);
  std::vector<double> coords(points);  // hmat-oss takes a non-const pointer
  Ctx ctx{points.data(), dim, inv2l2, nugget};
  double t0 = now();
  hmat_clustering_algorithm_t* median = hmat_create_clustering_median();
  hmat_clustering_algorithm_t* algo = hmat_create_clustering_max_dof(median, leaf);
  hmat_cluster_tree_t* ct = hmat_create_cluster_tree(coords.data(), dim, n, algo);
  hmat_delete_clustering(algo);
  hmat_delete_clustering(median);
  hmat_admissibility_t* adm = hmat_create_admissibility_hodlr();
  hmat_matrix_t* A = h.create_empty_hmatrix_admissibility(ct, ct, 1, adm);
  hmat_delete_admissibility(adm);
  h.set_low_rank_epsilon(A, tol);
  hmat_assemble_context_t actx;
  hmat_assemble_context_init(&actx);
  actx.compression = hmat_create_compression_aca_plus(tol);
  actx.user_context = &ctx;
  actx.simple_compute = entry;
  actx.lower_symmetric = 1;
  const int arc = h.assemble_generic(A, &actx);
  hmat_delete_compression(actx.compression);
  r.build_s = now() - t0;
  if (arc != 0) {
    r.error = "assemble failed";
    return r;
  }
  hmat_info_t info;
  h.get_info(A, &info);
  r.bytes = double(info.compressed_size) * sizeof(double);
  hmat_factorization_context_t fctx;
  hmat_factorization_context_init(&fctx);
  fctx.factorization = hmat_factorization_hodlrsym;
  t0 = now();
  const int frc = h.factorize_generic(A, &fctx);
  r.factor_s = now() - t0;
  if (frc != 0) {
    r.error = "factorization failed";
    h.destroy(A);
    hmat_delete_cluster_tree(ct);
    return r;
  }
  h.logdet(A, &r.logdet);
  r.x = b;
  t0 = now();
  h.solve_systems(A, r.x.data(), 1);  // original numbering in and out
  r.solve_s = now() - t0;
  h.destroy(A);
  hmat_delete_cluster_tree(ct);
  return r;
}
#else
HmatResult run_hmat(const std::vector<double>&, int, int, double, double, double, int, const std::vector<double>&) {
  HmatResult r;
  r.error = "hfisher was built without hmat-oss (libhmat-oss-dev)";
  return r;
}
#endif

}  // namespace hfisher_perf
