#!/usr/bin/env bash
# hfisher dependency set-up (Debian 12).
#
#   cmake/setup-deps.sh [openmp|cuda]...
#
# 1. installs the Debian packages hfisher needs (when run as root and one is
#    missing);
# 2. fetches Debian's `trilinos` source package (through a deb-src entry
#    derived from this machine's own Debian entry: no host name is written
#    here), unpacks only packages/kokkos and packages/kokkos-kernels;
# 3. builds Kokkos 3.4.1 + Kokkos Kernels 3.4.1 into a local prefix
#    ($HFISHER_DEPS_DIR, default <repo>/.deps) that later runs reuse:
#      openmp -> $HFISHER_DEPS_DIR/kokkos-openmp  (OpenMP + Serial)
#      cuda   -> $HFISHER_DEPS_DIR/kokkos-cuda    (CUDA + OpenMP + Serial,
#                through nvcc_wrapper, with the nvcc-13 patches; device
#                code for compute capability $HFISHER_CUDA_SM, default 90:
#                H100 / H200; 80 for A100).
# A prefix is rebuilt only if its stamp file is missing (or, for cuda, was
# written for another HFISHER_CUDA_SM).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="${HFISHER_DEPS_DIR:-$here/.deps}"
jobs="${HFISHER_JOBS:-$(nproc)}"
backends=("$@")
cuda_sm="${HFISHER_CUDA_SM:-90}"
[ ${#backends[@]} -eq 0 ] && backends=(openmp)

log() { printf '[setup-deps] %s\n' "$*" >&2; }
die() { printf '[setup-deps] error: %s\n' "$*" >&2; exit 1; }

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
fi

# ---------------------------------------------------------------- packages
pkgs=(cmake g++ make xz-utils dpkg-dev libopenmpi-dev openmpi-bin openssh-client libcli11-dev
      libgtest-dev liblapack-dev libopenblas-dev zlib1g-dev
      dataset-fashion-mnist gnuplot-nox libhmat-oss-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[[ "$cuda_sm" =~ ^(80|86|89|90|100|103|120)$ ]] ||
  die "HFISHER_CUDA_SM=$cuda_sm: give the GPU's compute capability without the dot (80, 86, 89, 90, ...)"
# what a prefix's stamp file holds: the cuda one records the device code's SM
stamp_of() { if [ "$1" = cuda ]; then echo "sm_$cuda_sm"; else echo ""; fi; }
stamp_ok() { [ -f "$deps/kokkos-$1/.hfisher-stamp" ] && [ "$(stamp_of "$1")" = "$(cat "$deps/kokkos-$1/.hfisher-stamp")" ]; }

need_build=0
for b in "${backends[@]}"; do
  case "$b" in openmp|cuda) ;; *) die "unknown backend '$b' (openmp|cuda)";; esac
  stamp_ok "$b" || need_build=1
done
if [ $need_build -eq 0 ]; then
  log "reusing Kokkos prefixes in $deps (${backends[*]})"
  exit 0
fi

# ---------------------------------------------------------------- sources
src="$deps/src"
mkdir -p "$src"
if [ ! -d "$src/kokkos" ] || [ ! -d "$src/kokkos-kernels" ]; then
  orig=$(ls "$src"/trilinos_*.orig.tar.* 2>/dev/null | head -n1 || true)
  if [ -z "$orig" ]; then
    # deb-src entry derived from the machine's own deb entries
    if ! apt-get source --print-uris trilinos 2>/dev/null | grep -q "orig.tar"; then
      srcfile=/etc/apt/sources.list.d/hfisher-deb-src.sources
      log "adding deb-src entry $srcfile (derived from the existing Debian entries)"
      tmp=$(mktemp)
      if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        sed -e 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$tmp"
      elif [ -f /etc/apt/sources.list ]; then
        grep -E '^deb ' /etc/apt/sources.list | sed -e 's/^deb /deb-src /' > "$tmp"
        srcfile=/etc/apt/sources.list.d/hfisher-deb-src.list
      else
        die "no Debian apt entry to derive a deb-src entry from"
      fi
      $sudo_cmd cp "$tmp" "$srcfile"; rm -f "$tmp"
      $sudo_cmd apt-get update -qq
    fi
    log "downloading Debian source package trilinos (~166 MB)"
    (cd "$src" && apt-get source --download-only trilinos >/dev/null)
    orig=$(ls "$src"/trilinos_*.orig.tar.* | head -n1)
  fi
  log "unpacking packages/kokkos and packages/kokkos-kernels from $(basename "$orig")"
  rm -rf "$src/unpack"; mkdir -p "$src/unpack"
  tar -xf "$orig" -C "$src/unpack" --wildcards '*/packages/kokkos/*' '*/packages/kokkos-kernels/*'
  top=$(ls "$src/unpack")
  rm -rf "$src/kokkos" "$src/kokkos-kernels"
  mv "$src/unpack/$top/packages/kokkos" "$src/kokkos"
  mv "$src/unpack/$top/packages/kokkos-kernels" "$src/kokkos-kernels"
  rm -rf "$src/unpack"
fi

# ---------------------------------------------------------------- build
build_one() {
  local b="$1" prefix="$deps/kokkos-$b"
  if stamp_ok "$b"; then
    log "reusing $prefix"
    return
  fi
  rm -rf "$prefix"
  local ksrc="$src/kokkos" kksrc="$src/kokkos-kernels"
  local -a kopts=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix"
                  -DCMAKE_CXX_STANDARD=17 -DKokkos_ENABLE_SERIAL=ON
                  -DKokkos_ENABLE_OPENMP=ON -DBUILD_SHARED_LIBS=OFF
                  -DCMAKE_POSITION_INDEPENDENT_CODE=ON)
  if [ "$b" = cuda ]; then
    command -v nvcc >/dev/null || die "nvcc not found: the CUDA build needs the CUDA toolkit on PATH"
    # patched copy of the Kokkos source (nvcc 13)
    local pk="$src/kokkos-cuda-src"
    if [ "$(cat "$pk/.hfisher-patched" 2>/dev/null)" != "sm_$cuda_sm" ]; then
      rm -rf "$pk"; cp -r "$ksrc" "$pk"
      "$here/cmake/patch-kokkos-nvcc13.sh" "$pk" "$cuda_sm"
      echo "sm_$cuda_sm" > "$pk/.hfisher-patched"
    fi
    ksrc="$pk"
    kopts+=(-DKokkos_ENABLE_CUDA=ON -DKokkos_ENABLE_CUDA_LAMBDA=ON
            -DKokkos_ARCH_AMPERE80=ON
            -DCMAKE_CXX_COMPILER="$pk/bin/nvcc_wrapper")
  fi
  log "building Kokkos ($b) into $prefix"
  rm -rf "$deps/build-kokkos-$b" "$deps/build-kk-$b"
  cmake -S "$ksrc" -B "$deps/build-kokkos-$b" "${kopts[@]}" >/dev/null
  cmake --build "$deps/build-kokkos-$b" -j "$jobs" >/dev/null
  cmake --install "$deps/build-kokkos-$b" >/dev/null
  log "building Kokkos Kernels ($b, no explicit instantiations) into $prefix"
  local -a kkopts=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix"
                   -DKokkos_ROOT="$prefix" -DBUILD_SHARED_LIBS=OFF
                   -DCMAKE_POSITION_INDEPENDENT_CODE=ON
                   -DKokkosKernels_INST_DOUBLE=OFF -DKokkosKernels_INST_FLOAT=OFF
                   -DKokkosKernels_INST_COMPLEX_DOUBLE=OFF -DKokkosKernels_INST_COMPLEX_FLOAT=OFF
                   -DKokkosKernels_INST_ORDINAL_INT=OFF -DKokkosKernels_INST_OFFSET_INT=OFF
                   -DKokkosKernels_INST_OFFSET_SIZE_T=OFF
                   -DKokkosKernels_INST_EXECSPACE_OPENMP=OFF -DKokkosKernels_INST_EXECSPACE_SERIAL=OFF
                   -DKokkosKernels_INST_EXECSPACE_CUDA=OFF
                   -DKokkosKernels_INST_MEMSPACE_HOSTSPACE=OFF
                   -DKokkosKernels_INST_MEMSPACE_CUDASPACE=OFF -DKokkosKernels_INST_MEMSPACE_CUDAUVMSPACE=OFF
                   -DKokkosKernels_INST_LAYOUTLEFT=OFF -DKokkosKernels_INST_LAYOUTRIGHT=OFF
                   -DKokkosKernels_ENABLE_TESTS=OFF -DKokkosKernels_ENABLE_EXAMPLES=OFF
                   -DKokkosKernels_ENABLE_TPL_BLAS=OFF -DKokkosKernels_ENABLE_TPL_CUBLAS=OFF
                   -DKokkosKernels_ENABLE_TPL_CUSPARSE=OFF)
  [ "$b" = cuda ] && kkopts+=(-DCMAKE_CXX_COMPILER="$src/kokkos-cuda-src/bin/nvcc_wrapper")
  cmake -S "$kksrc" -B "$deps/build-kk-$b" "${kkopts[@]}" >/dev/null
  cmake --build "$deps/build-kk-$b" -j "$jobs" >/dev/null
  cmake --install "$deps/build-kk-$b" >/dev/null
  rm -rf "$deps/build-kokkos-$b" "$deps/build-kk-$b"
  stamp_of "$b" > "$prefix/.hfisher-stamp"
  log "done: $prefix"
}
for b in "${backends[@]}"; do build_one "$b"; done
