#pragma once
/// \file block_diagonal.hpp
/// \brief Block-diagonal curvature across layers: one operator per layer
/// (K-FAC, hierarchical, dense, diagonal or low-rank), the flat vector cut
/// into the layers' consecutive blocks. Structure::KFAC and
/// Structure::HODLR are stored this way, as is Structure::BlockDiagonal
/// with any inner structure, and Structure::Network (one HODLR block over
/// every chosen parameter).

#include <hfisher/core/instantiate.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/sums.hpp>
#include <hfisher/fisher/prepare.hpp>
#include <hfisher/fisher/storage.hpp>

namespace hfisher {
namespace fisher {

template <class Scalar, class ExecSpace = DefaultExec>
class BlockDiagonalOperator : public CurvatureOperator<Scalar, ExecSpace>,
                              public Summable<Scalar, ExecSpace>,
                              public Preparable<Scalar, ExecSpace>,
                              public Storable<Scalar, ExecSpace> {
 public:
  using Base = CurvatureOperator<Scalar, ExecSpace>;
  using typename Base::Matrix;
  using typename Base::Vector;

  /// outer: the structure reported by structure() (KFAC, HODLR,
  /// BlockDiagonal or Network); blocks: the operators, in parameter order.
  BlockDiagonalOperator(Structure outer, std::vector<std::unique_ptr<Base>> blocks)
      : outer_(outer), blocks_(std::move(blocks)) {
    hfisher::detail::require(!blocks_.empty(), "hfisher::fisher::BlockDiagonalOperator",
                             "no blocks (a model with no layers?)");
    long off = 0;
    for (const auto& b : blocks_) {
      hfisher::detail::require(b != nullptr, "hfisher::fisher::BlockDiagonalOperator", "a null block");
      offsets_.push_back(off);
      off += b->size();
    }
    n_ = off;
  }

  Structure structure() const override { return outer_; }
  const char* tag() const override { return "blockdiag"; }
  long size() const override { return n_; }
  int num_blocks() const { return int(blocks_.size()); }
  const Base& block(int i) const { return *blocks_.at(i); }
  Base& block(int i) { return *blocks_.at(i); }
  long offset(int i) const { return offsets_.at(i); }

  /// The dense matrix: each block's own to_dense() on the diagonal, zeros
  /// elsewhere (not n products with unit vectors, which cost 2 n^3 for dense
  /// blocks). Small models only, as CurvatureOperator::to_dense.
  typename Base::Matrix to_dense() const override {
    this->check_dense_size(n_);
    typename Base::Matrix F("hfisher::fisher::blockdiag::dense", n_, n_);
    for (int i = 0; i < num_blocks(); ++i) {
      const auto r = Kokkos::make_pair(offsets_[i], offsets_[i] + blocks_[i]->size());
      Kokkos::deep_copy(Kokkos::subview(F, r, r), blocks_[i]->to_dense());
    }
    return F;
  }

  void apply(const Vector& v, const Vector& y) const override {
    this->check_vec(v, "hfisher::fisher::BlockDiagonalOperator::apply", "v");
    this->check_vec(y, "hfisher::fisher::BlockDiagonalOperator::apply", "y", false);
    for (int i = 0; i < num_blocks(); ++i) blocks_[i]->apply(part(v, i), part(y, i));
  }
  void solve(const Vector& b, const Vector& x, double damping) const override {
    constexpr const char* where = "hfisher::fisher::BlockDiagonalOperator::solve";
    detail::check_damping(damping, where);
    this->check_vec(b, where, "b");
    this->check_vec(x, where, "x", false);
    for (int i = 0; i < num_blocks(); ++i) blocks_[i]->solve(part(b, i), part(x, i), damping);
  }
  double logdet(double damping) const override {
    double s = 0;
    for (const auto& b : blocks_) s += b->logdet(damping);
    return s;
  }
  double quad(const Vector& v) const override {
    this->check_vec(v, "hfisher::fisher::BlockDiagonalOperator::quad", "v");
    double s = 0;
    for (int i = 0; i < num_blocks(); ++i) s += blocks_[i]->quad(part(v, i));
    return s;
  }
  Vector diag() const override {
    Vector d("hfisher::fisher::diag", n_);
    for (int i = 0; i < num_blocks(); ++i) Kokkos::deep_copy(part(d, i), blocks_[i]->diag());
    return d;
  }
  void add(const Base& other, double alpha) override {
    constexpr const char* where = "hfisher::fisher::BlockDiagonalOperator::add";
    const auto* p = dynamic_cast<const BlockDiagonalOperator*>(&other);
    hfisher::detail::require(p != nullptr && p->num_blocks() == num_blocks(), where, "cannot add a ",
                             to_string(other.structure()), " operator", (p ? " with a different number of blocks" : ""),
                             " to this block-diagonal one");
    for (int i = 0; i < num_blocks(); ++i) fisher::add(*blocks_[i], *p->blocks_[i], alpha);
  }
  void scale(double alpha) override {
    for (auto& b : blocks_) fisher::scale(*b, alpha);
  }
  void decay_average(const Base& fresh, double decay) override {
    const auto* p = dynamic_cast<const BlockDiagonalOperator*>(&fresh);
    hfisher::detail::require(p != nullptr && p->num_blocks() == num_blocks(),
                             "hfisher::fisher::BlockDiagonalOperator::decay_average", "cannot average with a ",
                             to_string(fresh.structure()), " operator",
                             (p ? " with a different number of blocks" : ""));
    for (int i = 0; i < num_blocks(); ++i) fisher::decay_average(*blocks_[i], *p->blocks_[i], decay);
  }
  void prepare(double damping) const override {
    for (const auto& b : blocks_) fisher::prepare(*b, damping);
  }
  bool prepared(double damping) const override {
    for (const auto& b : blocks_)
      if (!fisher::prepared(*b, damping)) return false;
    return true;
  }
  std::size_t bytes() const override {
    std::size_t s = 0;
    for (const auto& b : blocks_) s += b->bytes();
    return s;
  }
  std::unique_ptr<Base> clone() const override {
    std::vector<std::unique_ptr<Base>> c;
    for (const auto& b : blocks_) c.push_back(b->clone());
    return std::make_unique<BlockDiagonalOperator>(outer_, std::move(c));
  }
  void write(std::ostream& o) const override {
    io::put(o, std::int32_t(outer_));
    io::put(o, std::int32_t(blocks_.size()));
    for (const auto& b : blocks_) write_curvature(*b, o);
  }
  static std::unique_ptr<Base> read_body(std::istream& i, const std::string& what) {
    constexpr const char* where = "hfisher::fisher::load_curvature";
    const int outer = io::get<std::int32_t>(i, what, where), nb = io::get<std::int32_t>(i, what, where);
    hfisher::detail::require(is_structure(outer) && nb >= 1 && nb <= 100000, where, what,
                             ": corrupt block-diagonal header");
    std::vector<std::unique_ptr<Base>> blocks;
    for (int b = 0; b < nb; ++b) blocks.push_back(read_curvature<Scalar, ExecSpace>(i, what));
    return std::make_unique<BlockDiagonalOperator>(Structure(outer), std::move(blocks));
  }

  /// The part of a flat vector that belongs to block i (a view, no copy).
  Vector part(const Vector& v, int i) const { return Vector(v.data() + offsets_[i], blocks_[i]->size()); }

 private:
  Structure outer_;
  std::vector<std::unique_ptr<Base>> blocks_;
  std::vector<long> offsets_;
  long n_ = 0;
};

// compiled once in src/instantiate_fisher.cpp (core/instantiate.hpp)
#define HFISHER_EXTERN_BLOCK_DIAGONAL_(S, E) extern template class BlockDiagonalOperator<S, E>;
HFISHER_FOR_EACH_INSTANCE(HFISHER_EXTERN_BLOCK_DIAGONAL_)
#undef HFISHER_EXTERN_BLOCK_DIAGONAL_

}  // namespace fisher
}  // namespace hfisher
