#pragma once
/// \file dense.hpp
/// \brief The dense builder: a layer's exact Fisher block Psi Psi^T.

#include <hfisher/fisher/builders/common.hpp>
#include <hfisher/fisher/dense.hpp>

namespace hfisher {
namespace fisher {
namespace detail {

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> dense_layer(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                  const FisherOptions& o, const char* where) {
  const long P = s.shapes[k].size();
  const int S = s.samples(), chunk = int(std::max<long>(1, std::min<long>(S, (1L << 24) / std::max(1L, P))));
  check_budget(double(P) * P * sizeof(Scalar) + double(P) * chunk * sizeof(Scalar), o.memory_budget, where,
               "a dense Fisher block of " + std::to_string(P) + " parameters");
  Mat<Scalar, ExecSpace> F("hfisher::fisher::dense", P, P), Psi("hfisher::fisher::psi", P, chunk);
  for (int s0 = 0; s0 < S; s0 += chunk) {
    const int s1 = std::min(S, s0 + chunk);
    auto Pc = Kokkos::subview(Psi, Kokkos::ALL(), Kokkos::make_pair(0, s1 - s0));
    layer_psi(s, k, s0, s1, Psi);
    kernels::detail::matmul_nocheck(ExecSpace(), Op::NoTrans, Op::Trans, Scalar(1), Pc, Pc, Scalar(1), F);
  }
  return std::make_unique<DenseOperator<Scalar, ExecSpace>>(F);
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
