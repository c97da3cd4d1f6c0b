#pragma once
/// \file kfac.hpp
/// \brief The K-FAC builder: a layer's Kronecker factors A and G. For a
/// layer applied at T positions (a convolution, a token-wise projection)
/// two variants, FisherOptions::kfac.variant:
/// - Expand, KFC (Grosse & Martens 2016) / K-FAC-expand (Eschenhagen et al.
///   2023): A = (1 / (N T)) sum_n sum_t a~ a~^T, G = sum_s sum_t g g^T, so
///   F ~ G (x) A is exact for T = 1 and, for T > 1, under KFC's assumptions
///   (derivatives uncorrelated across positions, statistics the same at
///   every position);
/// - Reduce, K-FAC-reduce (Eschenhagen et al. 2023): with a_n = (1 / T)
///   sum_t a~_{n,t} and g_s = sum_t g_{s,t}, A = (1 / N) sum_n a_n a_n^T and
///   G = sum_s g_s g_s^T, exact for a linear layer whose T outputs the
///   network reduces (sums) before the loss acting on them linearly, as a
///   mean over tokens before a classifier does.
/// Both are K-FAC for T = 1.

#include <hfisher/fisher/builders/common.hpp>
#include <hfisher/fisher/kfac.hpp>

namespace hfisher {
namespace fisher {
namespace detail {

/// out (rows / T, cols): row r = scale * the sum of in's rows r T .. r T + T - 1.
template <class ExecSpace, class In, class Out>
void sum_row_groups(const ExecSpace& space, const In& in, int T, typename Out::non_const_value_type scale,
                    const Out& out) {
  using Scalar = typename Out::non_const_value_type;
  const long cols = out.extent(1);
  Kokkos::parallel_for(
      "hfisher::kfac::reduce_positions", Kokkos::RangePolicy<ExecSpace>(space, 0, long(out.extent(0)) * cols),
      KOKKOS_LAMBDA(const long i) {
        const long r = i / cols, j = i % cols;
        Scalar acc = Scalar(0);
        for (int t = 0; t < T; ++t) acc += in(r * T + t, j);
        out(r, j) = scale * acc;
      });
}

template <class Scalar, class ExecSpace>
std::unique_ptr<CurvatureOperator<Scalar, ExecSpace>> kfac_layer(const FisherSamples<Scalar, ExecSpace>& s, int k,
                                                                 const FisherOptions& o) {
  const int N = s.examples, o_ = s.shapes[k].out, c = s.shapes[k].cols(), T = s.positions_of(k);
  Mat<Scalar, ExecSpace> A("hfisher::kfac::A", c, c), G("hfisher::kfac::G", o_, o_);
  const ExecSpace space;
  // expand: every position a sample, A = a^T a / (N T); reduce: positions
  // averaged (a) and summed (g) first, A = a^T a / N
  Mat<Scalar, ExecSpace> a = s.a[k], g = s.g[k];
  Scalar ascale = Scalar(1.0 / (double(N) * T));
  if (T > 1 && o.kfac.variant == KFACVariant::Reduce) {
    a = Mat<Scalar, ExecSpace>("hfisher::kfac::a_reduced", N, c);
    g = Mat<Scalar, ExecSpace>("hfisher::kfac::g_reduced", s.g[k].extent(0) / T, o_);
    sum_row_groups(space, s.a[k], T, Scalar(1.0 / T), a);
    sum_row_groups(space, s.g[k], T, Scalar(1), g);
    ascale = Scalar(1.0 / N);
  }
  kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, ascale, a, a, Scalar(0), A);
  kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), g, g, Scalar(0), G);
  return std::make_unique<KFACOperator<Scalar, ExecSpace>>(A, G, o.kfac.damping);
}

}  // namespace detail
}  // namespace fisher
}  // namespace hfisher
