#pragma once
/// \file attention.hpp
/// \brief The parameter-free core of multi-head self-attention and the
/// learned position embedding, on token sequences stored as channels-last
/// images (nn/conv.hpp): token t of example b is the run of channels at
/// columns [t C, (t + 1) C) of row b, the tokens being the height x width
/// positions in order. The Q, K, V and output projections are 1 x 1
/// convolutions (nn/sequential.hpp), so every parameter of a transformer
/// block stays in a W~ block of the Fisher structures.
///
/// Attention input: 3 d channels per token, [q | k | v], head h reading
/// channels [h dh, (h + 1) dh) of each (dh = d / heads). Output: d channels
/// per token, head h's output in channels [h dh, (h + 1) dh). For head h,
/// S = q k^T / sqrt(dh), P = softmax over each row (entries j > i masked out
/// when causal), O = P v.

#include <hfisher/core/math.hpp>

#include <Kokkos_Core.hpp>

namespace hfisher {
namespace nn {

/// Geometry of the attention core: T tokens of 3 d input channels, heads
/// heads of d / heads channels each.
struct AttentionShape {
  int tokens = 1;
  int d = 1;      ///< model width: output channels per token
  int heads = 1;
  bool causal = false;
  int head_dim() const { return d / heads; }
};

namespace detail {

/// Y (B, T d) = attention of X (B, T 3 d); P (B heads T, T) receives the
/// attention weights, row (b heads + h) T + i (zeros above the diagonal when
/// causal), for the backward pass.
template <class Exec, class XV, class YV, class PV>
void attention_forward(const Exec& space, const AttentionShape& s, const XV& x, const YV& y, const PV& P) {
  using Scalar = typename YV::non_const_value_type;
  const int T = s.tokens, d = s.d, H = s.heads, dh = s.head_dim();
  const bool causal = s.causal;
  const long rows = long(x.extent(0)) * H * T;
  const Scalar scale = Scalar(1) / math::sqrt(Scalar(dh));
  Kokkos::parallel_for(
      "hfisher::nn::attention_forward", Kokkos::RangePolicy<Exec>(space, 0, rows), KOKKOS_LAMBDA(const long r) {
        const long b = r / (long(H) * T);
        const int h = int((r / T) % H), i = int(r % T);
        const int n = causal ? i + 1 : T;
        const long q = long(i) * 3 * d + long(h) * dh;  // q_i in row b of x
        Scalar mx = Scalar(0);
        for (int j = 0; j < n; ++j) {
          const long k = long(j) * 3 * d + d + long(h) * dh;
          Scalar v = Scalar(0);
          for (int e = 0; e < dh; ++e) v += x(b, q + e) * x(b, k + e);
          v *= scale;
          P(r, j) = v;
          mx = j == 0 || v > mx ? v : mx;
        }
        Scalar z = Scalar(0);
        for (int j = 0; j < n; ++j) {
          const Scalar e = math::exp(P(r, j) - mx);
          P(r, j) = e;
          z += e;
        }
        const Scalar inv = Scalar(1) / z;
        for (int j = 0; j < n; ++j) P(r, j) *= inv;
        for (int j = n; j < T; ++j) P(r, j) = Scalar(0);
        const long o = long(i) * d + long(h) * dh;
        for (int e = 0; e < dh; ++e) {
          Scalar acc = Scalar(0);
          for (int j = 0; j < n; ++j) acc += P(r, j) * x(b, long(j) * 3 * d + 2 * d + long(h) * dh + e);
          y(b, o + e) = acc;
        }
      });
}

/// dX (B, T 3 d) from dY (B, T d), given the forward's X and P; dS (B heads
/// T, T) is scratch. Two gathering passes, no atomics: over query rows i
/// (dS_i = P_i (dP_i - P_i . dP_i), dP_ij = dO_i . v_j; dq_i = scale dS_i k),
/// then over key rows j (dk_j = scale sum_i dS_ij q_i, dv_j = sum_i P_ij
/// dO_i).
template <class Exec, class XV, class PV, class DYV, class DXV, class SV>
void attention_backward(const Exec& space, const AttentionShape& s, const XV& x, const PV& P, const DYV& dy,
                        const DXV& dx, const SV& dS) {
  using Scalar = typename DXV::non_const_value_type;
  const int T = s.tokens, d = s.d, H = s.heads, dh = s.head_dim();
  const bool causal = s.causal;
  const long rows = long(x.extent(0)) * H * T;
  const Scalar scale = Scalar(1) / math::sqrt(Scalar(dh));
  Kokkos::parallel_for(
      "hfisher::nn::attention_backward_q", Kokkos::RangePolicy<Exec>(space, 0, rows), KOKKOS_LAMBDA(const long r) {
        const long b = r / (long(H) * T);
        const int h = int((r / T) % H), i = int(r % T);
        const int n = causal ? i + 1 : T;
        const long o = long(i) * d + long(h) * dh;
        Scalar c = Scalar(0);
        for (int j = 0; j < n; ++j) {
          const long v = long(j) * 3 * d + 2 * d + long(h) * dh;
          Scalar dp = Scalar(0);
          for (int e = 0; e < dh; ++e) dp += dy(b, o + e) * x(b, v + e);
          dS(r, j) = dp;
          c += P(r, j) * dp;
        }
        for (int j = 0; j < n; ++j) dS(r, j) = P(r, j) * (dS(r, j) - c);
        for (int j = n; j < T; ++j) dS(r, j) = Scalar(0);
        const long q = long(i) * 3 * d + long(h) * dh;
        for (int e = 0; e < dh; ++e) {
          Scalar acc = Scalar(0);
          for (int j = 0; j < n; ++j) acc += dS(r, j) * x(b, long(j) * 3 * d + d + long(h) * dh + e);
          dx(b, q + e) = scale * acc;
        }
      });
  Kokkos::parallel_for(
      "hfisher::nn::attention_backward_kv", Kokkos::RangePolicy<Exec>(space, 0, rows), KOKKOS_LAMBDA(const long r) {
        const long b = r / (long(H) * T), base = r - r % T;  // row of query 0 in this (b, h)
        const int h = int((r / T) % H), j = int(r % T);
        const int i0 = causal ? j : 0;  // the queries that see key j
        const long k = long(j) * 3 * d + d + long(h) * dh, v = k + d;
        for (int e = 0; e < dh; ++e) {
          Scalar dk = Scalar(0), dv = Scalar(0);
          for (int i = i0; i < T; ++i) {
            dk += dS(base + i, j) * x(b, long(i) * 3 * d + long(h) * dh + e);
            dv += P(base + i, j) * dy(b, long(i) * d + long(h) * dh + e);
          }
          dx(b, k + e) = scale * dk;
          dx(b, v + e) = dv;
        }
      });
}

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

}  // namespace detail
}  // namespace nn
}  // namespace hfisher
