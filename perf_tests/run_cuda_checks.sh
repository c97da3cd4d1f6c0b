#!/usr/bin/env bash
# Runs the checks of a CUDA build (make cuda-build) on a machine with a GPU:
#  1. every unit-test binary except the MPI one, on the CUDA configurations
#     and the tests that run on the default execution space (Cuda in such a
#     build); the Serial and OpenMP configurations are what `make test` runs;
#  2. hfisher-portability: every kernel, HODLR, HSS and Fisher problem on
#     Serial, OpenMP and Cuda, compared with the first;
#  3. the batched-kernel benchmark (hfisher on Cuda against loops of OpenBLAS
#     / LAPACK calls on the host's cores), the HODLR benchmark, and, when
#     HFISHER_DATA_DIR holds MNIST-format files (10 000 training examples
#     or more), the Fisher-structure benchmark on them.
# Each step has a time cap (TEST_TIMEOUT, PORT_TIMEOUT, BENCH_TIMEOUT s).
# Usage: perf_tests/run_cuda_checks.sh BUILD_DIR OUT_DIR
# BUILD_DIR must hold every target: make cuda-build CUDA_TARGETS=all (the
# default cuda-build compiles only what proves the build).
# Logs, CSV and JSON go to OUT_DIR; the summary is printed; exit status 1 if
# a test binary or the portability driver failed.
set -u
if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
B=$1
O=$2
mkdir -p "$O"
missing=()
for t in unit_tests/kernels_test_gemm drivers/hfisher-portability perf_tests/hfisher-perf-kernels perf_tests/hfisher-perf-hodlr; do
  [ -x "$B/$t" ] || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "$0: $B lacks ${missing[*]}: build it with 'make cuda-build CUDA_TARGETS=all'" >&2
  exit 2
fi
export OMP_PROC_BIND=false
cores=$(nproc)
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
failed=0

# 1. unit tests, all binaries at once (one host thread each: the host
# backends are not what is tested here)
echo "== unit tests (CUDA configurations and default-space tests) =="
start=$(date +%s)
pids=()
names=()
for t in "$B"/unit_tests/*_test_*; do
  name=$(basename "$t")
  [ -f "$t" ] && [ -x "$t" ] && [ "$name" != mpi_test_mpi ] || continue
  OMP_NUM_THREADS=1 timeout "${TEST_TIMEOUT:-240}" "$t" --gtest_filter='-*Serial*:*OpenMP*' --gtest_brief=1 \
    >"$O/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  rc=$?
  summary=$(grep -E '^\[  PASSED  \]|^\[  FAILED  \]|tests? ran' "$O/${names[$i]}.log" | tr '\n' ' ')
  printf '%-32s rc=%-3s %s\n' "${names[$i]}" "$rc" "$summary"
  if [ "$rc" -ne 0 ]; then
    failed=1
    grep -E '^\[  FAILED  \]|Failure|error' "$O/${names[$i]}.log" | head -20
    tail -5 "$O/${names[$i]}.log"
  fi
done
echo "unit tests: $(($(date +%s) - start)) s"

# 2. portability: Serial, OpenMP, Cuda
echo "== hfisher-portability =="
OMP_NUM_THREADS=$cores timeout "${PORT_TIMEOUT:-120}" "$B"/drivers/hfisher-portability --output "$O/portability" \
  >"$O/portability.log" 2>&1
rc=$?
tail -4 "$O/portability.log"
[ "$rc" -ne 0 ] && failed=1 && grep -iE 'mismatch|FAIL|error' "$O/portability.log" | head -20
echo "portability rc=$rc"

# 3. benchmarks (timed alone: nothing else runs)
echo "== batched kernels (double) =="
OMP_NUM_THREADS=$cores timeout "${BENCH_TIMEOUT:-120}" "$B"/perf_tests/hfisher-perf-kernels \
  --max-svd-flops 5e9 --output "$O/kernels" 2>&1 | tee "$O/kernels.log"
echo "== batched kernels (float) =="
OMP_NUM_THREADS=$cores timeout "${BENCH_TIMEOUT:-120}" "$B"/perf_tests/hfisher-perf-kernels --precision float \
  --max-svd-flops 5e9 --output "$O/kernels-float" 2>&1 | tee "$O/kernels-float.log"
echo "== HODLR =="
OMP_NUM_THREADS=$cores timeout "${BENCH_TIMEOUT:-120}" "$B"/perf_tests/hfisher-perf-hodlr --no-hmat \
  --sizes 4096 16384 65536 --matrices gauss2d gauss3d --dense-max 8192 --residual-max 16384 --output "$O/hodlr" 2>&1 | tee "$O/hodlr.log"
if [ -n "${HFISHER_DATA_DIR:-}" ] && [ -f "$HFISHER_DATA_DIR/train-images-idx3-ubyte.gz" ]; then
  echo "== Fisher structures (10 000 training examples, 1 epoch) =="
  OMP_NUM_THREADS=$cores timeout "${BENCH_TIMEOUT:-120}" "$B"/perf_tests/hfisher-perf-fisher --data "$HFISHER_DATA_DIR" \
    --train-examples 10000 --epochs 1 --output "$O/fisher" 2>&1 | tee "$O/fisher.log"
fi
exit $failed
