#pragma once
/// \file types.hpp
/// \brief View aliases, execution-space traits and the batch-launch policy.
///
/// Batched data is a View with a leading batch dimension: a batch of m x n
/// matrices is (batch, m, n), a batch of vectors (batch, n). Kernels accept
/// any layout; the aliases below use LayoutRight so that each batch entry is
/// one contiguous row-major block.

#include <Kokkos_Core.hpp>
#include <KokkosBatched_Util.hpp>
#include <type_traits>

namespace hfisher {

using DefaultExec = Kokkos::DefaultExecutionSpace;

/// (batch, rows, cols)
template <class Scalar, class ExecSpace = DefaultExec>
using BatchMatrix = Kokkos::View<Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space>;
/// (batch, n)
template <class Scalar, class ExecSpace = DefaultExec>
using BatchVector = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space>;
/// (batch)
template <class Scalar, class ExecSpace = DefaultExec>
using BatchScalar = Kokkos::View<Scalar*, typename ExecSpace::memory_space>;

/// BLAS-style operation on a matrix argument.
enum class Op { NoTrans, Trans };
enum class Side { Left, Right };
enum class Uplo { Lower, Upper };
enum class Diag { NonUnit, Unit };

/// Traits of an execution space: whether its memory is host-accessible, and
/// the KokkosBatched mode its kernels use (one thread per batch entry on the
/// host, a team per batch entry on a device).
template <class ExecSpace>
struct ExecTraits {
  static constexpr bool on_host =
      Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename ExecSpace::memory_space>::accessible;
  using mode = std::conditional_t<on_host, KokkosBatched::Mode::Serial, KokkosBatched::Mode::Team>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
};

namespace detail {

/// Team size used on host spaces (0 or 1: one thread per batch entry). A
/// larger value runs every kernel's team code path on the host, as on a
/// device; the unit tests use it to exercise those paths without a GPU.
inline int& host_team_size() {
  static int size = 0;
  return size;
}

/// One team per batch entry: team size 1 on host spaces (the entries are
/// the parallelism), Kokkos::AUTO on devices.
template <class ExecSpace>
Kokkos::TeamPolicy<ExecSpace> batch_policy(const ExecSpace& space, int batch) {
  if constexpr (ExecTraits<ExecSpace>::on_host) {
    int ts = host_team_size() > 1 ? host_team_size() : 1;
    ts = ts < ExecSpace::concurrency() ? ts : ExecSpace::concurrency();
    return Kokkos::TeamPolicy<ExecSpace>(space, batch, ts > 0 ? ts : 1);
  } else {
    return Kokkos::TeamPolicy<ExecSpace>(space, batch, Kokkos::AUTO);
  }
}

/// Like batch_policy, but on host spaces a batch smaller than the thread
/// count gets teams of concurrency / batch threads (at least the configured
/// host team size): for kernels whose entries are few and large (K-FAC factor
/// eigendecompositions), with O(n) team barriers per entry.
template <class ExecSpace>
Kokkos::TeamPolicy<ExecSpace> wide_batch_policy(const ExecSpace& space, int batch) {
  if constexpr (ExecTraits<ExecSpace>::on_host) {
    const int conc = ExecSpace::concurrency() > 0 ? ExecSpace::concurrency() : 1;
    int ts = batch > 0 ? conc / batch : conc;
    ts = ts > host_team_size() ? ts : host_team_size();
    ts = ts < conc ? ts : conc;
    return Kokkos::TeamPolicy<ExecSpace>(space, batch, ts > 0 ? ts : 1);
  } else {
    return Kokkos::TeamPolicy<ExecSpace>(space, batch, Kokkos::AUTO);
  }
}

/// Unmanaged strided 2-D view on raw memory (for transposed or offset
/// blocks handed to KokkosBatched operations).
template <class T, class MemSpace>
using StridedMatrix = Kokkos::View<T**, Kokkos::LayoutStride, MemSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

template <class MemSpace, class T>
KOKKOS_INLINE_FUNCTION StridedMatrix<T, MemSpace> strided(T* p, int m, int n, int s0, int s1) {
  return StridedMatrix<T, MemSpace>(p, Kokkos::LayoutStride(m, s0, n, s1));
}

/// Entry b of a batch as a 2-D subview.
template <class View3>
KOKKOS_INLINE_FUNCTION auto entry(const View3& A, int b) {
  return Kokkos::subview(A, b, Kokkos::ALL(), Kokkos::ALL());
}
template <class View2>
KOKKOS_INLINE_FUNCTION auto entry_vec(const View2& v, int b) {
  return Kokkos::subview(v, b, Kokkos::ALL());
}

}  // namespace detail
}  // namespace hfisher
