#pragma once
/// \file kfac.hpp
/// \brief The K-FAC builder: a layer's Kronecker factors A and G. For a
/// layer applied at T positions (a convolution) this is KFC (Grosse &
/// Martens 2016): A averages a~ a~^T over examples and positions, G sums
/// g g^T over samples and positions, so F ~ G (x) A is exact for T = 1 and,
/// for T > 1, under their assumptions (derivatives uncorrelated across
/// positions, statistics the same at every position).

#include <hfisher/fisher/builders/common.hpp>
#include <hfisher/fisher/kfac.hpp>

namespace hfisher {
namespace fisher {
namespace detail {

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> kfac_layer(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                 const FisherOptions& o) {
  const int N = s.examples, o_ = s.shapes[k].out, c = s.shapes[k].cols(), T = s.positions_of(k);
  Mat<Scalar, ExecSpace> A("hfisher::kfac::A", c, c), G("hfisher::kfac::G", o_, o_);
  kernels::detail::matmul_nocheck(ExecSpace(), Op::Trans, Op::NoTrans, Scalar(1.0 / (double(N) * T)), s.a[k], s.a[k],
                                  Scalar(0), A);
  kernels::detail::matmul_nocheck(ExecSpace(), Op::Trans, Op::NoTrans, Scalar(1), s.g[k], s.g[k], Scalar(0), G);
  return std::make_unique<KFACOperator<Scalar, ExecSpace>>(A, G, o.kfac_damping);
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
