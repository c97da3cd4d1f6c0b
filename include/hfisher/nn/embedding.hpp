#pragma once
/// \file embedding.hpp
/// \brief The learned embeddings of token sequences (channels-last images,
/// nn/attention.hpp): the position embedding, added to every token, and the
/// token embedding, the lookup of integer token ids. Both are 1 x 1
/// convolutions of one-hot images, so their blocks W~ (channels, n + 1)
/// and their patches (the one-hot rows [e, 1]) take part in every Fisher
/// structure as any other layer's; the kernels here add and sum directly,
/// without multiplying by the one-hot patches.

#include <Kokkos_Core.hpp>

#include <climits>

namespace hfisher {
namespace nn {
namespace detail {

/// The patches of a position embedding: A (B T, T + 1), row b T + t the
/// one-hot e_t, then the homogeneous 1.
template <class Exec, class AV>
void position_patches(const Exec& space, int T, const AV& A) {
  using Scalar = typename AV::non_const_value_type;
  const long n = long(A.extent(0)) * (T + 1);
  Kokkos::parallel_for(
      "hfisher::nn::position_patches", Kokkos::RangePolicy<Exec>(space, 0, n), KOKKOS_LAMBDA(const long r) {
        const long row = r / (T + 1);
        const int j = int(r % (T + 1));
        A(row, j) = j == T || j == int(row % T) ? Scalar(1) : Scalar(0);
      });
}

/// y = x + W~ a~_t at every token: y(b, t C + c) = x(b, t C + c) + W(c, t) +
/// W(c, T), W (C, T + 1).
template <class Exec, class XV, class WV, class YV>
void position_embed(const Exec& space, int T, const XV& x, const WV& W, const YV& y) {
  const int C = W.extent(0);
  const long F = long(T) * C;
  Kokkos::parallel_for(
      "hfisher::nn::position_embed", Kokkos::RangePolicy<Exec>(space, 0, long(x.extent(0)) * F),
      KOKKOS_LAMBDA(const long r) {
        const long b = r / F, f = r % F;
        const int t = int(f / C), c = int(f % C);
        y(b, f) = x(b, f) + W(c, t) + W(c, T);
      });
}

/// grad(c, t) += scale sum_b dy(b, t C + c); grad(c, T) += scale sum_b,t
/// dy(b, t C + c): the layer's gradient, sum_t g_t a~_t^T, without forming
/// the one-hot products.
template <class Exec, class DYV, class GV, class Scalar>
void position_embed_grad(const Exec& space, int T, const DYV& dy, Scalar scale, const GV& grad) {
  const int C = grad.extent(0), B = dy.extent(0);
  Kokkos::parallel_for(
      "hfisher::nn::position_embed_grad", Kokkos::RangePolicy<Exec>(space, 0, long(C) * (T + 1)),
      KOKKOS_LAMBDA(const long r) {
        const int c = int(r / (T + 1)), j = int(r % (T + 1));
        const int t0 = j == T ? 0 : j, t1 = j == T ? T : j + 1;
        Scalar s = Scalar(0);
        for (int b = 0; b < B; ++b)
          for (int t = t0; t < t1; ++t) s += dy(b, long(t) * C + c);
        grad(c, j) += scale * s;
      });
}

/// The first row-major index r of the ids x (B, T) whose entry is not a
/// token id of a vocabulary of V (an integer in [0, V); NaN is not), or -1
/// when every entry is one.
template <class Exec, class XV>
long first_non_token(const Exec& space, int V, const XV& x) {
  using Scalar = typename XV::non_const_value_type;
  const long T = x.extent(1);
  long first = LONG_MAX;
  Kokkos::parallel_reduce(
      "hfisher::nn::token_check", Kokkos::RangePolicy<Exec>(space, 0, long(x.extent(0)) * T),
      KOKKOS_LAMBDA(const long r, long& m) {
        const Scalar v = x(r / T, r % T);
        const bool id = v >= Scalar(0) && v < Scalar(V) && Scalar(long(v)) == v;
        if (!id && r < m) m = r;
      },
      Kokkos::Min<long>(first));
  return first == LONG_MAX ? -1 : first;
}

/// The patches of a token embedding: A (B T, V + 1), row b T + t the
/// one-hot e of the id x(b, t), then the homogeneous 1.
template <class Exec, class XV, class AV>
void token_patches(const Exec& space, int V, const XV& x, const AV& A) {
  using Scalar = typename AV::non_const_value_type;
  const long T = x.extent(1);
  Kokkos::parallel_for(
      "hfisher::nn::token_patches", Kokkos::RangePolicy<Exec>(space, 0, long(A.extent(0)) * (V + 1)),
      KOKKOS_LAMBDA(const long r) {
        const long row = r / (V + 1);
        const int j = int(r % (V + 1));
        A(row, j) = j == V || j == int(x(row / T, row % T)) ? Scalar(1) : Scalar(0);
      });
}

/// y(b, t C + c) = W(c, x(b, t)) + W(c, V): the embedding of each id and
/// the bias, W (C, V + 1).
template <class Exec, class XV, class WV, class YV>
void token_embed(const Exec& space, const XV& x, const WV& W, const YV& y) {
  const int C = W.extent(0), V = int(W.extent(1)) - 1;
  const long T = x.extent(1), F = T * C;
  Kokkos::parallel_for(
      "hfisher::nn::token_embed", Kokkos::RangePolicy<Exec>(space, 0, long(x.extent(0)) * F),
      KOKKOS_LAMBDA(const long r) {
        const long b = r / F, f = r % F;
        const long t = f / C;
        const int c = int(f % C);
        y(b, f) = W(c, int(x(b, t))) + W(c, V);
      });
}

/// grad(c, x(b, t)) += scale dy(b, t C + c) over every token, and grad(c, V)
/// += scale sum_b,t dy(b, t C + c): the layer's gradient, sum_t g_t a~_t^T,
/// without forming the one-hot products. One thread per channel walks the
/// tokens in order, so the sums do not depend on the backend's scheduling.
template <class Exec, class XV, class DYV, class GV, class Scalar>
void token_embed_grad(const Exec& space, const XV& x, const DYV& dy, Scalar scale, const GV& grad) {
  const int C = grad.extent(0), V = int(grad.extent(1)) - 1;
  const long B = x.extent(0), T = x.extent(1);
  Kokkos::parallel_for(
      "hfisher::nn::token_embed_grad", Kokkos::RangePolicy<Exec>(space, 0, C), KOKKOS_LAMBDA(const int c) {
        Scalar s = Scalar(0);
        for (long b = 0; b < B; ++b)
          for (long t = 0; t < T; ++t) {
            const Scalar g = dy(b, t * C + c);
            grad(c, int(x(b, t))) += scale * g;
            s += g;
          }
        grad(c, V) += scale * s;
      });
}

}  // namespace detail
}  // namespace nn
}  // namespace hfisher
