#pragma once
/// \file impl/batched_tags.hpp
/// \brief The one place where hfisher's runtime Op / Uplo / Diag values and
/// the team shape become the tag types KokkosBatched's kernels are
/// templated on. Each helper calls f with a value of the matching tag type
/// (f is a generic lambda; decltype of its argument names the tag), so a
/// kernel writes its KokkosBatched call once instead of once per
/// combination.

#include <hfisher/core/types.hpp>

#include <KokkosBatched_Util.hpp>

namespace hfisher {
namespace kernels {
namespace detail {

/// f(KokkosBatched::Trans::NoTranspose) or f(KokkosBatched::Trans::Transpose).
template <class F>
KOKKOS_INLINE_FUNCTION void with_trans_tag(Op op, const F& f) {
  if (op == Op::NoTrans)
    f(KokkosBatched::Trans::NoTranspose());
  else
    f(KokkosBatched::Trans::Transpose());
}

/// f(KokkosBatched::Uplo::Lower) or f(KokkosBatched::Uplo::Upper).
template <class F>
KOKKOS_INLINE_FUNCTION void with_uplo_tag(Uplo uplo, const F& f) {
  if (uplo == Uplo::Lower)
    f(KokkosBatched::Uplo::Lower());
  else
    f(KokkosBatched::Uplo::Upper());
}

/// f(KokkosBatched::Diag::Unit) or f(KokkosBatched::Diag::NonUnit).
template <class F>
KOKKOS_INLINE_FUNCTION void with_diag_tag(Diag diag, const F& f) {
  if (diag == Diag::Unit)
    f(KokkosBatched::Diag::Unit());
  else
    f(KokkosBatched::Diag::NonUnit());
}

/// The KokkosBatched mode of one entry's kernel run by `member`: Team on a
/// host team of several threads (the unit tests' `.team2` runs, which take
/// the device code path on the CPU), else the execution space's own mode
/// (Serial on host spaces, Team on devices).
template <class Exec, class Member, class F>
KOKKOS_INLINE_FUNCTION void with_mode_tag(const Member& member, const F& f) {
  if constexpr (ExecTraits<Exec>::on_host) {
    if (member.team_size() > 1) {
      f(KokkosBatched::Mode::Team());
      return;
    }
  }
  f(typename ExecTraits<Exec>::mode());
}

}  // namespace detail
}  // namespace kernels
}  // namespace hfisher
