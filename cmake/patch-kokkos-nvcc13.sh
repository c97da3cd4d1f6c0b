#!/usr/bin/env bash
# Patches a Kokkos 3.4.1 source tree so that it builds with nvcc 13 (CUDA 13)
# and runs on Hopper GPUs.
#   cmake/patch-kokkos-nvcc13.sh <kokkos-source-dir> [SM]   (SM: default 90)
# 1. bin/nvcc_wrapper: default_arch="sm_35" (rejected by nvcc 13) -> sm_90;
#    Kokkos passes its own -arch anyway, this only matters for bare use.
# 2. core/src/Cuda/Kokkos_Cuda_Half.hpp: the CUDA half_t no longer compiles
#    against CUDA 13's cuda_fp16.h; the block is disabled, so Kokkos falls
#    back to its portable half type (hfisher never uses half precision).
# 3. core/src/Cuda/Kokkos_CudaSpace.cpp: cudaMemPrefetchAsync takes a
#    cudaMemLocation and a flags argument from CUDA 13 on.
# 4. cmake/kokkos_arch.cmake: Kokkos 3.4 predates Hopper (CC 9.0) and its
#    Cuda::initialize aborts when the code it runs was compiled for another
#    major compute capability (sm_80 code JIT-compiled from PTX on an H100
#    reports 8.0: "not supported by CUDA!"). The Kokkos_ARCH_AMPERE80 option
#    (the newest with the features hfisher uses) is made to compile for
#    sm_<SM> instead of sm_80: SM = 90 for H100 / H200, 80 for A100.
# Idempotent: a tree that is already patched is left as it is.
set -euo pipefail
k="${1:?usage: $0 <kokkos-source-dir> [SM]}"
sm="${2:-90}"
[[ "$sm" =~ ^[0-9]{2,3}$ ]] || { echo "patch-kokkos-nvcc13: SM must be a compute capability like 90, got '$sm'" >&2; exit 1; }
a="$k/cmake/kokkos_arch.cmake"
w="$k/bin/nvcc_wrapper"; h="$k/core/src/Cuda/Kokkos_Cuda_Half.hpp"; s="$k/core/src/Cuda/Kokkos_CudaSpace.cpp"
for f in "$w" "$h" "$s" "$a"; do [ -f "$f" ] || { echo "patch-kokkos-nvcc13: missing $f" >&2; exit 1; }; done

sed -i 's/^default_arch="sm_35"/default_arch="sm_90"/' "$w"
grep -q '^default_arch="sm_90"' "$w" || { echo "patch 1 (nvcc_wrapper) failed" >&2; exit 1; }

if ! grep -q HFISHER_PATCH_CUDA13_HALF "$h"; then
  # the first '#ifdef KOKKOS_ENABLE_CUDA' guards the whole CUDA half_t block
  sed -i '0,/^#ifdef KOKKOS_ENABLE_CUDA$/s//#if defined(KOKKOS_ENABLE_CUDA) \&\& defined(HFISHER_PATCH_CUDA13_HALF_NEVER_DEFINED)/' "$h"
  grep -q HFISHER_PATCH_CUDA13_HALF "$h" || { echo "patch 2 (half) failed" >&2; exit 1; }
fi

if ! grep -q HFISHER_PATCH_CUDA13_PREFETCH "$s"; then
  python3 - "$s" <<'PY'
import sys
p = sys.argv[1]
src = open(p).read()
old = """    CUDA_SAFE_CALL(cudaMemPrefetchAsync(ptr, bytes, space.cuda_device(),
                                        space.cuda_stream()));"""
new = """#if defined(CUDART_VERSION) && CUDART_VERSION >= 13000  // HFISHER_PATCH_CUDA13_PREFETCH
    cudaMemLocation hfisher_loc;
    hfisher_loc.type = cudaMemLocationTypeDevice;
    hfisher_loc.id   = space.cuda_device();
    CUDA_SAFE_CALL(cudaMemPrefetchAsync(ptr, bytes, hfisher_loc, 0,
                                        space.cuda_stream()));
#else
    CUDA_SAFE_CALL(cudaMemPrefetchAsync(ptr, bytes, space.cuda_device(),
                                        space.cuda_stream()));
#endif"""
if old not in src:
    sys.exit("patch 3 (cudaMemPrefetchAsync) failed: pattern not found")
open(p, "w").write(src.replace(old, new))
PY
fi
sed -i -E "s/^CHECK_CUDA_ARCH\(AMPERE80 +sm_[0-9]+\)/CHECK_CUDA_ARCH(AMPERE80  sm_$sm)/" "$a"
grep -q "^CHECK_CUDA_ARCH(AMPERE80  sm_$sm)" "$a" || { echo "patch 4 (arch sm_$sm) failed" >&2; exit 1; }

echo "patch-kokkos-nvcc13: patched $k (device code for sm_$sm)"
