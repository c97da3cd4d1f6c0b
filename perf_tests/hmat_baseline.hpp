#pragma once
// hmat-oss (Debian's libhmat-oss-dev, C API) on the same kernel matrix: its
// HODLR admissibility, ACA assembly and symmetric HODLR factorization.
// Baseline only; compiled when CMake finds the HMAT package.

#include <string>
#include <vector>

namespace hfisher_perf {

struct HmatResult {
  bool available = false;
  double build_s = 0, factor_s = 0, solve_s = 0, logdet = 0, bytes = 0;
  std::vector<double> x;  ///< solution, original numbering
  std::string error;
};

/// Gaussian kernel exp(-|xi - xj|^2 inv2l2) + nugget delta_ij on points
/// (n x dim, row-major); solves A x = b.
HmatResult run_hmat(const std::vector<double>& points, int dim, int n, double inv2l2, double nugget, double tol,
                    int leaf, const std::vector<double>& b);

}  // namespace hfisher_perf
