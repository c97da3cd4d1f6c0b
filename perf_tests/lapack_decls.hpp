#pragma once
// Fortran LAPACK/BLAS entry points the dense baselines of the benchmarks
// call (the baseline only: no hfisher kernel uses them).

extern "C" {
void dpotrf_(const char*, const int*, double*, const int*, int*);
void dpotrs_(const char*, const int*, const int*, const double*, const int*, double*, const int*, int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*);
}
