#pragma once
/// \file instantiate.hpp
/// \brief Which (scalar, execution space) pairs the compiled library
/// instantiates explicitly.
///
/// The heavy templates (HODLR, HSS and their factorizations; the curvature
/// operators; the Fisher estimators collect_samples, build_curvature and
/// estimate_fisher for MLP and Sequential) are instantiated once, in
/// src/instantiate_*.cpp, for float and double on each host execution space
/// Kokkos has enabled. Their headers declare those instantiations `extern
/// template`, so a program that uses, say, `HODLR<double, Kokkos::OpenMP>`
/// links the library's copy instead of compiling its out-of-line and virtual
/// members again (member templates such as from_dense, and non-virtual
/// members defined in the class body, are still compiled where they are
/// called). Other pairs (another scalar, a CUDA space) are instantiated
/// implicitly where they are used, as before.
///
/// The library defines HFISHER_EXPLICIT_INSTANTIATION for itself and for
/// every target that links hfisher::hfisher, when it was configured with
/// HFISHER_EXPLICIT_INSTANTIATION=ON (the default for host builds; CUDA
/// builds keep every instantiation implicit).

#include <Kokkos_Core.hpp>

#if defined(HFISHER_EXPLICIT_INSTANTIATION) && defined(KOKKOS_ENABLE_SERIAL)
#define HFISHER_INSTANTIATE_SERIAL_(M) M(float, Kokkos::Serial) M(double, Kokkos::Serial)
#else
#define HFISHER_INSTANTIATE_SERIAL_(M)
#endif
#if defined(HFISHER_EXPLICIT_INSTANTIATION) && defined(KOKKOS_ENABLE_OPENMP)
#define HFISHER_INSTANTIATE_OPENMP_(M) M(float, Kokkos::OpenMP) M(double, Kokkos::OpenMP)
#else
#define HFISHER_INSTANTIATE_OPENMP_(M)
#endif

/// HFISHER_FOR_EACH_INSTANCE(M) expands M(Scalar, ExecSpace) once for every
/// pair the library instantiates (nothing when explicit instantiation is off).
#define HFISHER_FOR_EACH_INSTANCE(M) HFISHER_INSTANTIATE_SERIAL_(M) HFISHER_INSTANTIATE_OPENMP_(M)
