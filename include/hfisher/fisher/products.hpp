#pragma once
/// \file products.hpp
/// \brief FisherProduct: Y = F V for a block of vectors, matrix-free, through
/// Jacobian-vector and vector-Jacobian products of the network (no
/// per-sample gradient is ever formed).
///
/// For every example n, F = (1/N) sum_n J_n^T H_n J_n with J_n the Jacobian
/// of the logits with respect to the chosen parameters and H_n (C x C):
///  - GGN:        diag(p) - p p^T (the exact Fisher of the softmax);
///  - Empirical:  e e^T, e = p - onehot(y_n);
///  - MonteCarlo: (1/R) sum_r e_r e_r^T, e_r = p - onehot(yhat_r), the labels
///    sampled exactly as collect_samples() samples them (same seed, same
///    counter-based draw per (example, r)).
/// So F V is: a forward pass; a tangent (R-op) pass carrying J_n V for all k
/// vectors at once; U = H_n (J_n V) per example; a backward pass of U summed
/// over the examples. Each layer's work is four GEMMs over the whole batch
/// and all k vectors (the weights are shared by the vectors, the inputs by
/// the examples), so a block of k vectors costs O(N k P) flops and O(B k w)
/// memory, w the widest layer, never O(N P).
///
/// The operator acts on the flat vector of the chosen layers (opts.layers,
/// all by default), each layer block W~ = [W | b] row-major, in layer order:
/// the layout of every structure in hfisher::fisher. With all layers it is the
/// whole network's Fisher, cross-layer blocks included; with one layer, that
/// layer's block. Under a distributed communicator each rank runs its share
/// of the examples and the result is summed over ranks: every rank gets F V.

#include <hfisher/core/comm.hpp>
#include <hfisher/core/region.hpp>
#include <hfisher/fisher/options.hpp>
#include <hfisher/fisher/samples.hpp>
#include <hfisher/kernels/matmul.hpp>
#include <hfisher/nn/mlp.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace hfisher {
namespace fisher {

template <class Scalar, class ExecSpace = DefaultExec>
class FisherProduct {
 public:
  using exec_space = ExecSpace;
  using mem_space = typename ExecSpace::memory_space;
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, mem_space>;
  using Model = nn::MLP<Scalar, ExecSpace>;
  using Data = nn::DeviceData<Scalar, ExecSpace>;

  /// The Fisher (kind) of `model` on the first opts.examples examples of
  /// `data` (0: all), restricted to opts.layers. Reads opts.examples,
  /// batch, mc_samples, seed, layers and memory_budget. The model and data
  /// are shared, not copied: change the model's parameters and the products
  /// follow.
  FisherProduct(const Model& model, const Data& data, FisherKind kind, const FisherOptions& opts = {},
                const dist::Communicator& comm = {})
      : model_(model), data_(data), kind_(kind), opts_(opts), comm_(comm) {
    constexpr const char* where = "hfisher::fisher::FisherProduct";
    opts.validate(where);
    examples_ = detail::checked_examples(model, data, opts, where);
    layers_ = opts.layers;
    shapes_ = detail::chosen_layers(model, layers_, where);
    in_set_.assign(model.num_layers(), -1);
    for (std::size_t k = 0; k < layers_.size(); ++k) in_set_[layers_[k]] = int(k);
    size_ = shapes_.back().offset + shapes_.back().size();
  }

  FisherKind kind() const { return kind_; }
  /// Rows of V and Y: the parameters of the chosen layers.
  long size() const { return size_; }
  int examples() const { return examples_; }
  const std::vector<int>& layers() const { return layers_; }
  /// The chosen layers' shapes, offsets renumbered in the operator's vector.
  const std::vector<nn::LayerShape>& shapes() const { return shapes_; }
  /// Vectors multiplied so far (each column of each apply counts one).
  long products() const { return products_; }

  /// Y = F V for V, Y (size(), k), k >= 1.
  void apply(const Matrix& V, const Matrix& Y) const;
  /// The same, in the form HODLR/HSS::from_matvec take.
  void operator()(const Matrix& V, Matrix& Y) const { apply(V, Y); }

 private:
  Model model_;
  Data data_;
  FisherKind kind_;
  FisherOptions opts_;
  dist::Communicator comm_;
  int examples_ = 0;
  std::vector<int> layers_;
  std::vector<int> in_set_;  ///< per model layer: its index in layers_, or -1
  std::vector<nn::LayerShape> shapes_;
  long size_ = 0;
  mutable long products_ = 0;
};

template <class Scalar, class ExecSpace>
void FisherProduct<Scalar, ExecSpace>::apply(const Matrix& V, const Matrix& Y) const try {
  constexpr const char* where = "hfisher::fisher::FisherProduct::apply";
  const int k = int(V.extent(1));
  hfisher::detail::require(long(V.extent(0)) == size_ && k >= 1, where, "V is ", V.extent(0), "x", V.extent(1),
                           ", expected ", size_, " rows (the chosen layers' parameters) and at least one column");
  hfisher::detail::require(Y.extent(0) == V.extent(0) && Y.extent(1) == V.extent(1), where, "Y is ", Y.extent(0), "x",
                           Y.extent(1), ", V ", V.extent(0), "x", V.extent(1));
  hfisher::detail::require(kind_ == FisherKind::GGN || model_.outputs() <= 64, where, "the ", to_string(kind_),
                           " Fisher-vector product handles up to 64 classes, the model has ", model_.outputs(),
                           " (the GGN has no limit)");
  hfisher::detail::Region region("hfisher::FisherProduct::apply");
  ExecSpace space;
  const int L = model_.num_layers(), C = model_.outputs();
  const int first = layers_.front();
  int wmax = C;
  for (int l = first; l < L; ++l) wmax = std::max(wmax, model_.layers()[l].cols());
  // examples per pass: the tangents of all k vectors take B k wmax entries
  // per buffer (three buffers), kept near 2^22 entries, at most opts.batch
  const long per_example = long(k) * wmax;
  const int B0 = int(std::max<long>(1, std::min<long>(opts_.batch, (long(1) << 22) / per_example)));
  double need = 3.0 * double(B0) * per_example * sizeof(Scalar);
  for (const auto& sh : shapes_) need += double(sh.size()) * k * sizeof(Scalar) * 2;
  check_budget(need, opts_.memory_budget, where, "Fisher-vector products of " + std::to_string(k) + " vectors");
  // per chosen layer: the vectors as (cols, k out) and the accumulated result
  std::vector<Matrix> Ws(shapes_.size()), Acc(shapes_.size());
  for (std::size_t q = 0; q < shapes_.size(); ++q) {
    const auto& sh = shapes_[q];
    const int out = sh.out, cols = sh.cols();
    const long off = sh.offset;
    Ws[q] = Matrix(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::FisherProduct::Ws"), cols, long(k) * out);
    Acc[q] = Matrix("hfisher::FisherProduct::acc", cols, long(k) * out);
    auto W = Ws[q];
    Kokkos::parallel_for(
        "hfisher::FisherProduct::stack", Kokkos::RangePolicy<ExecSpace>(space, 0, long(k) * out),
        KOKKOS_LAMBDA(const long t) {
          const int j = int(t / out), i = int(t % out);
          for (int c = 0; c < cols; ++c) W(c, t) = V(off + long(i) * cols + c, j);
        });
  }
  Kokkos::View<Scalar*, mem_space> buf0(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::FisherProduct::t0"),
                                        B0 * per_example),
      buf1(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::FisherProduct::t1"), B0 * per_example),
      buf2(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hfisher::FisherProduct::t2"), B0 * per_example);
  // a (rows, cols) LayoutRight matrix over the front of a buffer
  auto over = [](const Kokkos::View<Scalar*, mem_space>& b, long rows, long cols) {
    return Matrix(b.data(), rows, cols);
  };
  typename Model::Cache cache;
  const bool relu = model_.activation() == nn::Activation::ReLU;
  const FisherKind kind = kind_;
  const int R = kind == FisherKind::MonteCarlo ? opts_.mc_samples : 1;
  const Scalar wscale = Scalar(1.0 / (double(examples_) * R));
  const std::uint64_t seed = opts_.seed;
  const auto mine = dist::shard(examples_, comm_.rank(), comm_.size());
  for (long first_ex = mine.first; first_ex < mine.second; first_ex += B0) {
    const int B = int(std::min<long>(B0, mine.second - first_ex));
    const long f0 = first_ex;
    const Matrix X = Kokkos::subview(data_.x, Kokkos::make_pair(f0, f0 + B), Kokkos::ALL());
    auto logits = model_.forward(X, cache);
    Matrix P("hfisher::FisherProduct::P", B, C), E("hfisher::FisherProduct::E", B, C);
    auto y = Kokkos::subview(data_.y, Kokkos::make_pair(f0, f0 + B));
    nn::softmax_xent(space, logits, y, P, E, Scalar(1));
    // tangent pass: dZ_l (B k, out_l) = [A_l dW_l^T] + dA_l W_l^T
    Matrix dZ;
    for (int l = first; l < L; ++l) {
      const auto& sh = model_.layers()[l];
      const int out = sh.out, cols = sh.cols();
      Kokkos::View<Scalar*, mem_space> zb = (l - first) % 2 == 0 ? buf0 : buf1;
      Matrix dZl = over(zb, long(B) * k, out);
      const Matrix dZwide = over(zb, B, long(k) * out);  // the same entries: row b holds the k vectors' tangents
      const int q = in_set_[l];
      Scalar beta = Scalar(0);
      if (q >= 0) {
        kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), cache.a[l], Ws[q], Scalar(0),
                                        dZwide);
        beta = Scalar(1);
      }
      if (l > first) {
        // dA (B k, cols): the previous tangent through the activation, bias column 0
        Matrix dA = over(buf2, long(B) * k, cols);
        auto z = cache.z[l - 1];
        const int in = sh.in;
        const Matrix dZp = dZ;
        Kokkos::parallel_for(
            "hfisher::FisherProduct::tangent_activation", Kokkos::RangePolicy<ExecSpace>(space, 0, long(B) * k),
            KOKKOS_LAMBDA(const long t) {
              const int b = int(t / k);
              for (int c = 0; c < in; ++c) dA(t, c) = nn::activation_slope(relu, z(b, c)) * dZp(t, c);
              dA(t, in) = Scalar(0);
            });
        kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::Trans, Scalar(1), dA, model_.weight(l), beta, dZl);
      }
      dZ = dZl;
    }
    // U = H_n (J_n V) per example, scaled by 1 / (N R), written over dZ
    {
      const Matrix U = dZ;
      Kokkos::parallel_for(
          "hfisher::FisherProduct::output_curvature", Kokkos::RangePolicy<ExecSpace>(space, 0, long(B) * k),
          KOKKOS_LAMBDA(const long t) {
            const int b = int(t / k);
            if (kind == FisherKind::GGN) {
              Scalar pd = 0;
              for (int c = 0; c < C; ++c) pd += P(b, c) * U(t, c);
              for (int c = 0; c < C; ++c) U(t, c) = wscale * P(b, c) * (U(t, c) - pd);
              return;
            }
            // H = (1/R) sum_r e_r e_r^T: (e_r . d) for up to 16 labels at a time
            Scalar coef[16];
            Scalar acc[64];  // C <= 64 (checked above)
            for (int c = 0; c < C; ++c) acc[c] = 0;
            auto prow = Kokkos::subview(P, b, Kokkos::ALL());
            for (int r0 = 0; r0 < R; r0 += 16) {
              const int rn = R - r0 < 16 ? R - r0 : 16;
              int lab[16];
              for (int r = 0; r < rn; ++r) {
                lab[r] = kind == FisherKind::Empirical ? y(b) : sample_label(prow, C, seed, f0 + b, r0 + r);
                Scalar s = 0;
                for (int c = 0; c < C; ++c) s += (P(b, c) - (c == lab[r] ? Scalar(1) : Scalar(0))) * U(t, c);
                coef[r] = s;
              }
              for (int r = 0; r < rn; ++r)
                for (int c = 0; c < C; ++c) acc[c] += coef[r] * (P(b, c) - (c == lab[r] ? Scalar(1) : Scalar(0)));
            }
            for (int c = 0; c < C; ++c) U(t, c) = wscale * acc[c];
          });
    }
    // backward pass of U: Acc_l += A_l^T G_l (G_l as (B, k out)); G_{l-1} = (G_l W_l) * slope
    Matrix G = dZ;
    for (int l = L - 1; l >= first; --l) {
      const auto& sh = model_.layers()[l];
      const int out = sh.out, cols = sh.cols();
      const int q = in_set_[l];
      if (q >= 0) {
        const Matrix Gwide(G.data(), B, long(k) * out);
        kernels::detail::matmul_nocheck(space, Op::Trans, Op::NoTrans, Scalar(1), cache.a[l], Gwide, Scalar(1), Acc[q]);
      }
      if (l == first) break;
      // H (B k, cols) in a buffer G does not use
      Kokkos::View<Scalar*, mem_space> hb = G.data() == buf2.data() ? buf0 : buf2;
      Matrix H = over(hb, long(B) * k, cols);
      kernels::detail::matmul_nocheck(space, Op::NoTrans, Op::NoTrans, Scalar(1), G, model_.weight(l), Scalar(0), H);
      auto z = cache.z[l - 1];
      const int in = sh.in;
      // the next G: H's first `in` columns through the activation, packed
      // to (B k, in) in the third buffer
      Kokkos::View<Scalar*, mem_space> gb = (hb.data() != buf0.data() && G.data() != buf0.data())   ? buf0
                                            : (hb.data() != buf1.data() && G.data() != buf1.data()) ? buf1
                                                                                                    : buf2;
      Matrix Gn = over(gb, long(B) * k, in);
      Kokkos::parallel_for(
          "hfisher::FisherProduct::backward_activation", Kokkos::RangePolicy<ExecSpace>(space, 0, long(B) * k),
          KOKKOS_LAMBDA(const long t) {
            const int b = int(t / k);
            for (int c = 0; c < in; ++c) Gn(t, c) = H(t, c) * nn::activation_slope(relu, z(b, c));
          });
      G = Gn;
    }
  }
  for (std::size_t q = 0; q < shapes_.size(); ++q) {
    space.fence();
    comm_.allreduce_sum(Acc[q]);
    const auto& sh = shapes_[q];
    const int out = sh.out, cols = sh.cols();
    const long off = sh.offset;
    auto A = Acc[q];
    Kokkos::parallel_for(
        "hfisher::FisherProduct::unstack", Kokkos::RangePolicy<ExecSpace>(space, 0, long(k) * out),
        KOKKOS_LAMBDA(const long t) {
          const int j = int(t / out), i = int(t % out);
          for (int c = 0; c < cols; ++c) Y(off + long(i) * cols + c, j) = A(c, t);
        });
  }
  space.fence();
  products_ += k;
} catch (...) {
  hfisher::detail::rethrow_allocation_failure("hfisher::fisher::FisherProduct::apply");
}

}  // namespace fisher

using fisher::FisherProduct;

}  // namespace hfisher
