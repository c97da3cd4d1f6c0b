#pragma once
/// \file conv.hpp
/// \brief 2-D convolution and pooling on channels-last images: the geometry
/// types and the data-movement kernels (im2col, its adjoint col2im, max and
/// average pooling with their backward passes). The arithmetic of a
/// convolution is a GEMM on the patch matrix (nn/sequential.hpp).
///
/// An image batch is a matrix (B, height * width * channels) whose row b is
/// image b stored channels-last (NHWC): pixel (y, x), channel c at column
/// (y * width + x) * channels + c. A patch matrix A (B * T, K + 1) holds, in
/// row b * T + t, the K = channels * kh * kw inputs under the kernel at
/// output position t = oy * out_width + ox, ordered (kernel row, kernel
/// column, channel), then a 1 (the bias column): the homogeneous layer input
/// a~ of the MLP convention, once per position. Padding reads zeros.

#include <hfisher/core/error.hpp>
#include <hfisher/core/types.hpp>

#include <Kokkos_Core.hpp>

namespace hfisher {
namespace nn {

/// Shape of one image (or of a feature vector: channels = features, 1 x 1).
struct ImageShape {
  int channels = 1;
  int height = 1;
  int width = 1;
  long features() const { return long(channels) * height * width; }
};

/// Geometry of a 2-D convolution: `in` images, out_channels filters of
/// kernel_h x kernel_w, stride and zero padding on every side.
struct Conv2DShape {
  ImageShape in;
  int out_channels = 1;
  int kernel_h = 1;
  int kernel_w = 1;
  int stride = 1;
  int padding = 0;

  int out_height() const { return (in.height + 2 * padding - kernel_h) / stride + 1; }
  int out_width() const { return (in.width + 2 * padding - kernel_w) / stride + 1; }
  ImageShape out() const { return {out_channels, out_height(), out_width()}; }
  /// Output positions T per image.
  int positions() const { return out_height() * out_width(); }
  /// Inputs under the kernel, K.
  int patch() const { return in.channels * kernel_h * kernel_w; }
  /// Columns of the layer block [W | b] (K + 1).
  int cols() const { return patch() + 1; }
  long size() const { return long(out_channels) * cols(); }

  void validate(const char* where) const {
    hfisher::detail::require(in.channels >= 1 && in.height >= 1 && in.width >= 1, where, "input image ", in.channels,
                             " x ", in.height, " x ", in.width, " (channels x height x width must be positive)");
    hfisher::detail::require(out_channels >= 1, where, "out_channels = ", out_channels, " (must be >= 1)");
    hfisher::detail::require(kernel_h >= 1 && kernel_w >= 1, where, "kernel ", kernel_h, " x ", kernel_w,
                             " (must be >= 1)");
    hfisher::detail::require(stride >= 1, where, "stride = ", stride, " (must be >= 1)");
    hfisher::detail::require(padding >= 0 && padding < kernel_h && padding < kernel_w, where, "padding = ", padding,
                             " (must lie in [0, kernel size))");
    // sizes in long first: patch() and positions() are ints
    const long ph = long(in.height) + 2L * padding, pw = long(in.width) + 2L * padding;
    hfisher::detail::require(kernel_h <= ph && kernel_w <= pw, where, "kernel ", kernel_h, " x ", kernel_w,
                             " is larger than the padded input ", ph, " x ", pw);
    const long K = long(in.channels) * kernel_h * kernel_w;
    const long T = ((ph - kernel_h) / stride + 1) * ((pw - kernel_w) / stride + 1);
    hfisher::detail::require(double(K) + 1 < double(1 << 30) && double(T) * out_channels < double(1 << 30), where,
                             "the layer is too large (", K, " inputs per patch, ", T, " positions)");
  }
};

/// Geometry of a pooling layer: windows of kernel x kernel, stride, no padding
/// (every window lies inside the image, so an average divides by kernel^2).
struct PoolShape {
  ImageShape in;
  int kernel = 2;
  int stride = 2;

  int out_height() const { return (in.height - kernel) / stride + 1; }
  int out_width() const { return (in.width - kernel) / stride + 1; }
  ImageShape out() const { return {in.channels, out_height(), out_width()}; }

  void validate(const char* where) const {
    hfisher::detail::require(in.channels >= 1 && in.height >= 1 && in.width >= 1, where, "input image ", in.channels,
                             " x ", in.height, " x ", in.width, " (channels x height x width must be positive)");
    hfisher::detail::require(kernel >= 1 && stride >= 1, where, "pooling kernel ", kernel, ", stride ", stride,
                             " (both must be >= 1)");
    hfisher::detail::require(kernel <= in.height && kernel <= in.width, where, "pooling window ", kernel,
                             " is larger than the input ", in.height, " x ", in.width);
  }
};

namespace detail {

/// The windows o (of a pooling with window k and stride st, n of them) that
/// cover input coordinate y: o * st <= y < o * st + k, as [lo, hi].
KOKKOS_INLINE_FUNCTION void covering_windows(int y, int k, int st, int n, int& lo, int& hi) {
  lo = y >= k ? (y - k) / st + 1 : 0;
  hi = y / st < n - 1 ? y / st : n - 1;
}

/// A (B * T, K + 1) from X (B, H * W * C): the patch matrix of the header.
template <class Exec, class XV, class AV>
void im2col(const Exec& space, const Conv2DShape& s, const XV& X, const AV& A) {
  using Scalar = typename AV::non_const_value_type;
  const int B = X.extent(0), T = s.positions(), OW = s.out_width(), C = s.in.channels, H = s.in.height, W = s.in.width,
            kh = s.kernel_h, kw = s.kernel_w, st = s.stride, p = s.padding, K = s.patch();
  Kokkos::parallel_for(
      "hfisher::nn::im2col", Kokkos::RangePolicy<Exec>(space, 0, long(B) * T), KOKKOS_LAMBDA(const long r) {
        const int b = int(r / T), t = int(r % T), oy = t / OW, ox = t % OW;
        for (int i = 0; i < kh; ++i) {
          const int y = oy * st - p + i;
          for (int j = 0; j < kw; ++j) {
            const int x = ox * st - p + j;
            const int dst = (i * kw + j) * C;
            if (y >= 0 && y < H && x >= 0 && x < W) {
              const long src = (long(y) * W + x) * C;
              for (int c = 0; c < C; ++c) A(r, dst + c) = X(b, src + c);
            } else {
              for (int c = 0; c < C; ++c) A(r, dst + c) = Scalar(0);
            }
          }
        }
        A(r, K) = Scalar(1);
      });
}

/// dX (B, H * W * C) = the adjoint of im2col applied to dA (B * T, K + 1)
/// (its bias column ignored): each input pixel gathers the entries of every
/// patch that read it (no atomics).
template <class Exec, class AV, class XV>
void col2im(const Exec& space, const Conv2DShape& s, const AV& dA, const XV& dX) {
  using Scalar = typename XV::non_const_value_type;
  const int B = dX.extent(0), T = s.positions(), OH = s.out_height(), OW = s.out_width(), C = s.in.channels,
            H = s.in.height, W = s.in.width, kh = s.kernel_h, kw = s.kernel_w, st = s.stride, p = s.padding;
  Kokkos::parallel_for(
      "hfisher::nn::col2im", Kokkos::RangePolicy<Exec>(space, 0, long(B) * H * W), KOKKOS_LAMBDA(const long r) {
        const int b = int(r / (long(H) * W)), yx = int(r % (long(H) * W)), y = yx / W, x = yx % W;
        for (int c = 0; c < C; ++c) dX(b, long(yx) * C + c) = Scalar(0);
        for (int i = 0; i < kh; ++i) {
          const int ty = y + p - i;  // oy * stride
          if (ty < 0 || ty % st != 0 || ty / st >= OH) continue;
          for (int j = 0; j < kw; ++j) {
            const int tx = x + p - j;
            if (tx < 0 || tx % st != 0 || tx / st >= OW) continue;
            const long row = long(b) * T + (ty / st) * OW + tx / st;
            const int col = (i * kw + j) * C;
            for (int c = 0; c < C; ++c) dX(b, long(yx) * C + c) += dA(row, col + c);
          }
        }
      });
}

/// Y (B, OH * OW * C) = window maxima of X; arg (B, OH * OW * C) the input
/// column of each maximum (the first one on ties), for the backward pass.
template <class Exec, class XV, class YV, class IV>
void max_pool(const Exec& space, const PoolShape& s, const XV& X, const YV& Y, const IV& arg) {
  const int B = X.extent(0), OH = s.out_height(), OW = s.out_width(), C = s.in.channels, W = s.in.width, k = s.kernel,
            st = s.stride;
  Kokkos::parallel_for(
      "hfisher::nn::max_pool", Kokkos::RangePolicy<Exec>(space, 0, long(B) * OH * OW), KOKKOS_LAMBDA(const long r) {
        const int b = int(r / (long(OH) * OW)), t = int(r % (long(OH) * OW)), oy = t / OW, ox = t % OW;
        for (int c = 0; c < C; ++c) {
          long best = (long(oy * st) * W + ox * st) * C + c;
          for (int i = 0; i < k; ++i)
            for (int j = 0; j < k; ++j) {
              const long at = (long(oy * st + i) * W + ox * st + j) * C + c;
              if (X(b, at) > X(b, best)) best = at;
            }
          Y(b, long(t) * C + c) = X(b, best);
          arg(b, long(t) * C + c) = int(best);
        }
      });
}

/// dX = the gradient of max_pool: each input gathers dY of the windows whose
/// maximum it was.
template <class Exec, class YV, class IV, class XV>
void max_pool_backward(const Exec& space, const PoolShape& s, const YV& dY, const IV& arg, const XV& dX) {
  using Scalar = typename XV::non_const_value_type;
  const int B = dX.extent(0), OH = s.out_height(), OW = s.out_width(), C = s.in.channels, H = s.in.height,
            W = s.in.width, k = s.kernel, st = s.stride;
  Kokkos::parallel_for(
      "hfisher::nn::max_pool_backward", Kokkos::RangePolicy<Exec>(space, 0, long(B) * H * W),
      KOKKOS_LAMBDA(const long r) {
        const int b = int(r / (long(H) * W)), yx = int(r % (long(H) * W)), y = yx / W, x = yx % W;
        int oy0, oy1, ox0, ox1;
        covering_windows(y, k, st, OH, oy0, oy1);
        covering_windows(x, k, st, OW, ox0, ox1);
        for (int c = 0; c < C; ++c) {
          const long me = long(yx) * C + c;
          Scalar acc = 0;
          for (int oy = oy0; oy <= oy1; ++oy)
            for (int ox = ox0; ox <= ox1; ++ox) {
              const long o = (long(oy) * OW + ox) * C + c;
              if (arg(b, o) == me) acc += dY(b, o);
            }
          dX(b, me) = acc;
        }
      });
}

/// Y (B, OH * OW * C) = window means of X.
template <class Exec, class XV, class YV>
void avg_pool(const Exec& space, const PoolShape& s, const XV& X, const YV& Y) {
  using Scalar = typename YV::non_const_value_type;
  const int B = X.extent(0), OH = s.out_height(), OW = s.out_width(), C = s.in.channels, W = s.in.width, k = s.kernel,
            st = s.stride;
  const Scalar inv = Scalar(1) / Scalar(k * k);
  Kokkos::parallel_for(
      "hfisher::nn::avg_pool", Kokkos::RangePolicy<Exec>(space, 0, long(B) * OH * OW), KOKKOS_LAMBDA(const long r) {
        const int b = int(r / (long(OH) * OW)), t = int(r % (long(OH) * OW)), oy = t / OW, ox = t % OW;
        for (int c = 0; c < C; ++c) {
          Scalar acc = 0;
          for (int i = 0; i < k; ++i)
            for (int j = 0; j < k; ++j) acc += X(b, (long(oy * st + i) * W + ox * st + j) * C + c);
          Y(b, long(t) * C + c) = acc * inv;
        }
      });
}

/// dX = the gradient of avg_pool.
template <class Exec, class YV, class XV>
void avg_pool_backward(const Exec& space, const PoolShape& s, const YV& dY, const XV& dX) {
  using Scalar = typename XV::non_const_value_type;
  const int B = dX.extent(0), OH = s.out_height(), OW = s.out_width(), C = s.in.channels, H = s.in.height,
            W = s.in.width, k = s.kernel, st = s.stride;
  const Scalar inv = Scalar(1) / Scalar(k * k);
  Kokkos::parallel_for(
      "hfisher::nn::avg_pool_backward", Kokkos::RangePolicy<Exec>(space, 0, long(B) * H * W),
      KOKKOS_LAMBDA(const long r) {
        const int b = int(r / (long(H) * W)), yx = int(r % (long(H) * W)), y = yx / W, x = yx % W;
        int oy0, oy1, ox0, ox1;
        covering_windows(y, k, st, OH, oy0, oy1);
        covering_windows(x, k, st, OW, ox0, ox1);
        for (int c = 0; c < C; ++c) {
          Scalar acc = 0;
          for (int oy = oy0; oy <= oy1; ++oy)
            for (int ox = ox0; ox <= ox1; ++ox) acc += dY(b, (long(oy) * OW + ox) * C + c);
          dX(b, long(yx) * C + c) = acc * inv;
        }
      });
}

}  // namespace detail
}  // namespace nn
}  // namespace hfisher
