#pragma once
/// \file attention.hpp
/// \brief The parameter-free core of multi-head self-attention, on token
/// sequences stored as channels-last images (nn/conv.hpp): token t of
/// example b is the run of channels at columns [t C, (t + 1) C) of row b,
/// the tokens being the height x width positions in order. The Q, K, V and output projections are 1 x 1
/// convolutions (nn/sequential.hpp), so every parameter of a transformer
/// block stays in a W~ block of the Fisher structures.
///
/// Attention input: 3 d channels per token, [q | k | v], head h reading
/// channels [h dh, (h + 1) dh) of each (dh = d / heads). Output: d channels
/// per token, head h's output in channels [h dh, (h + 1) dh). For head h,
/// S = q k^T / sqrt(dh), P = softmax over each row (entries j > i masked out
/// when causal), O = P v.

#include <hfisher/core/math.hpp>
#include <hfisher/kernels/gemm.hpp>

#include <Kokkos_Core.hpp>

namespace hfisher {
namespace nn {

/// Geometry of the attention core: T tokens of 3 d input channels, heads
/// heads of d / heads channels each.
struct AttentionShape {
  int tokens = 1;
  int d = 1;  ///< model width: output channels per token
  int heads = 1;
  bool causal = false;
  int head_dim() const { return d / heads; }
};

/// Scratch entries attention_forward and attention_backward need for a batch
/// of B: five (B heads, T, d / heads) blocks.
inline long attention_work_size(const AttentionShape& s, long B) { return 5 * B * s.tokens * long(s.d); }

namespace detail {

template <class Scalar, class Mem>
using HeadBlocks = Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

/// Copies between a token-layout matrix M (B, T ld) and per-head blocks
/// buf (B heads, T, dh): buf(b heads + h, t, e) <-> M(b, t ld + part d +
/// h dh + e), into the blocks when Gather (one of q, k, v: ld = 3 d, part
/// 0, 1, 2; an output gradient: ld = d, part 0), else back into M. One
/// (pair, token) row of dh contiguous entries per iteration: the index
/// arithmetic once per row, not per entry.
template <bool Gather, class Exec, class MV, class BV>
void heads_copy(const Exec& space, const AttentionShape& s, const MV& M, int ld, int part, const BV& buf) {
  const int T = s.tokens, H = s.heads, dh = s.head_dim(), d = s.d;
  Kokkos::parallel_for(
      "hfisher::nn::heads_copy", Kokkos::RangePolicy<Exec>(space, 0, long(buf.extent(0)) * T),
      KOKKOS_LAMBDA(const long r) {
        const long bh = r / T, b = bh / H;
        const int t = int(r - bh * T), h = int(bh - b * H);
        const long o = long(t) * ld + long(part) * d + long(h) * dh;
        if (Gather)  // not `if constexpr`: nvcc refuses a lambda's first capture inside one
          for (int e = 0; e < dh; ++e) buf(bh, t, e) = M(b, o + e);
        else
          for (int e = 0; e < dh; ++e) M(b, o + e) = buf(bh, t, e);
      });
}

/// Y (B, T d) = attention of X (B, T 3 d); P (B heads T, T) receives the
/// attention weights, row (b heads + h) T + i (zeros above the diagonal when
/// causal). work (attention_work_size entries) receives q, k, v as per-head
/// blocks, which attention_backward reads: S = q k^T / sqrt(dh) and O = P v
/// are batched GEMMs over the B heads (example, head) pairs
/// (kernels::detail::gemm_nocheck), the masked row softmax a flat loop.
template <class Exec, class XV, class YV, class PV, class WV>
void attention_forward(const Exec& space, const AttentionShape& s, const XV& x, const YV& y, const PV& P,
                       const WV& work) {
  using Scalar = typename YV::non_const_value_type;
  using Blocks = HeadBlocks<Scalar, typename YV::memory_space>;
  const int T = s.tokens, d = s.d, H = s.heads, dh = s.head_dim();
  const bool causal = s.causal;
  const long BH = long(x.extent(0)) * H, n = BH * T * dh;
  const Blocks q(work.data(), BH, T, dh), k(work.data() + n, BH, T, dh), v(work.data() + 2 * n, BH, T, dh),
      o(work.data() + 3 * n, BH, T, dh), S(P.data(), BH, T, T);
  heads_copy<true>(space, s, x, 3 * d, 0, q);
  heads_copy<true>(space, s, x, 3 * d, 1, k);
  heads_copy<true>(space, s, x, 3 * d, 2, v);
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1) / math::sqrt(Scalar(dh)), q, k, Scalar(0), S);
  Kokkos::parallel_for(
      "hfisher::nn::attention_softmax", Kokkos::RangePolicy<Exec>(space, 0, BH * T), KOKKOS_LAMBDA(const long r) {
        const int i = int(r % T), n_ = causal ? i + 1 : T;
        Scalar mx = P(r, 0);
        for (int j = 1; j < n_; ++j) mx = P(r, j) > mx ? P(r, j) : mx;
        Scalar z = Scalar(0);
        for (int j = 0; j < n_; ++j) {
          const Scalar e = math::exp(P(r, j) - mx);
          P(r, j) = e;
          z += e;
        }
        const Scalar inv = Scalar(1) / z;
        for (int j = 0; j < n_; ++j) P(r, j) *= inv;
        for (int j = n_; j < T; ++j) P(r, j) = Scalar(0);
      });
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), S, v, Scalar(0), o);
  heads_copy<false>(space, s, y, d, 0, o);
}

/// dX (B, T 3 d) from dY (B, T d), given the forward's P and the q, k, v
/// blocks it left in work; dS (B heads T, T) is scratch. Batched GEMMs: dP =
/// dO v^T; then, per row, dS = P (dP - P . dP) (a flat loop); dq = dS k /
/// sqrt(dh), dk = dS^T q / sqrt(dh), dv = P^T dO.
template <class Exec, class PV, class DYV, class DXV, class SV, class WV>
void attention_backward(const Exec& space, const AttentionShape& s, const PV& P, const DYV& dy, const DXV& dx,
                        const SV& dS, const WV& work) {
  using Scalar = typename DXV::non_const_value_type;
  using Blocks = HeadBlocks<Scalar, typename DXV::memory_space>;
  const int T = s.tokens, d = s.d, H = s.heads, dh = s.head_dim();
  const long BH = long(dy.extent(0)) * H, n = BH * T * dh;
  const Blocks q(work.data(), BH, T, dh), k(work.data() + n, BH, T, dh), v(work.data() + 2 * n, BH, T, dh),
      dO(work.data() + 3 * n, BH, T, dh), r(work.data() + 4 * n, BH, T, dh), Pb(P.data(), BH, T, T),
      dSb(dS.data(), BH, T, T);
  const Scalar scale = Scalar(1) / math::sqrt(Scalar(dh));
  heads_copy<true>(space, s, dy, d, 0, dO);
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), dO, v, Scalar(0), dSb);  // dP
  Kokkos::parallel_for(
      "hfisher::nn::attention_dscores", Kokkos::RangePolicy<Exec>(space, 0, BH * T), KOKKOS_LAMBDA(const long row) {
        Scalar c = Scalar(0);
        for (int j = 0; j < T; ++j) c += P(row, j) * dS(row, j);
        for (int j = 0; j < T; ++j) dS(row, j) = P(row, j) * (dS(row, j) - c);  // 0 where masked (P = 0)
      });
  kernels::detail::gemm_nocheck(space, Op::NoTrans, Op::NoTrans, scale, dSb, k, Scalar(0), r);
  heads_copy<false>(space, s, dx, 3 * d, 0, r);
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, scale, dSb, q, Scalar(0), r);
  heads_copy<false>(space, s, dx, 3 * d, 1, r);
  kernels::detail::gemm_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), Pb, dO, Scalar(0), r);
  heads_copy<false>(space, s, dx, 3 * d, 2, r);
}

}  // namespace detail
}  // namespace nn
}  // namespace hfisher
