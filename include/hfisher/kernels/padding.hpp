#pragma once
/// \file padding.hpp
/// \brief Batches whose entries have different sizes.
///
/// Convention: entry b of true size m_b x n_b lives in the top-left corner of
/// a (batch, max m, max n) view; padded rows and columns are zero, and for
/// square batches that are factored (Cholesky, eigen, solves) the padded
/// diagonal is one. Then
///  - Cholesky of a padded SPD entry is the true factor bordered by I, its
///    log-determinant is the true one (log 1 = 0), solves leave padded rows
///    of the right-hand side as they are (zero stays zero);
///  - SVD / QR / range finder of a zero-padded entry give the true singular
///    values followed by zeros, so the numerical rank is unchanged;
///  - eigenvalues of a padded symmetric entry are the true ones plus ones
///    for the padded diagonal (use syev on the zero-diagonal variant,
///    pad_diagonal = 0, if ones would interleave with true values).

#include <hfisher/core/types.hpp>
#include <hfisher/core/validate.hpp>

namespace hfisher {
namespace kernels {

/// Applies the padding convention in place: for every entry b, rows
/// >= rows(b) and columns >= cols(b) are set to zero, and the padded
/// diagonal positions (i >= min(rows(b), cols(b))) to pad_diagonal.
/// rows, cols: (batch) int views in the same memory space as A.
template <class Exec, class AV, class IV>
void pad(const Exec& space, const AV& A, const IV& rows, const IV& cols,
         typename AV::non_const_value_type pad_diagonal) {
  constexpr const char* where = "hfisher::kernels::pad";
  const long nb = A.extent(0), m = A.extent(1), n = A.extent(2);
  hfisher::detail::check_batch(rows.extent(0), nb, where, "rows");
  hfisher::detail::check_batch(cols.extent(0), nb, where, "cols");
  Kokkos::View<int*, typename Exec::memory_space> bad("hfisher::pad::bad", nb);
  using T = typename AV::non_const_value_type;
  Kokkos::parallel_for(
      "hfisher::pad", Kokkos::RangePolicy<Exec>(space, 0, nb), KOKKOS_LAMBDA(const int b) {
        const int mb = rows(b), nbb = cols(b);
        if (mb < 0 || mb > m || nbb < 0 || nbb > n) {
          bad(b) = 1;
          return;
        }
        const int dmin = mb < nbb ? mb : nbb;
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j)
            if (i >= mb || j >= nbb) A(b, i, j) = (i == j && i >= dmin) ? T(pad_diagonal) : T(0);
      });
  const long f = hfisher::detail::first_failure(space, bad);
  hfisher::detail::require(f < 0, where, "batch entry ", f, " has a size outside the padded ", m, "x", n, " block");
}

}  // namespace kernels
}  // namespace hfisher
