# hfisher — two commands on a fresh Debian 12 machine:
#   make demo    runs the main job: continual learning on permuted Fashion-MNIST
#                (fine-tuning, EWC, online EWC, K-FAC Laplace, hierarchical)
#   make test    builds and runs the unit tests with ctest
# Both install the Debian packages they need and build Kokkos + Kokkos Kernels
# 3.4.1 (OpenMP + Serial) from Debian's trilinos source package into .deps/
# (reused by later runs). To use your own Kokkos / Kokkos Kernels instead:
#   make test Kokkos_ROOT=/path KokkosKernels_ROOT=/path
# Other targets: make install PREFIX=<dir>, make cuda-build (compile + link
# with CUDA, no GPU needed; CUDA_TARGETS=all for every test), make perf,
# make sanitize (AddressSanitizer + UndefinedBehaviorSanitizer on a subset:
# what .ci/run also runs), make format-check (clang-format), make clean.

SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
DEPS ?= $(ROOT)/.deps
BUILD ?= $(ROOT)/build
BUILD_CUDA ?= $(ROOT)/build-cuda
BUILD_SAN ?= $(ROOT)/build-sanitize
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
CMAKE_EXTRA ?=
export HFISHER_DEPS_DIR := $(DEPS)

ifdef Kokkos_ROOT
  KOKKOS_PREFIX := $(Kokkos_ROOT)
  KK_PREFIX := $(if $(KokkosKernels_ROOT),$(KokkosKernels_ROOT),$(Kokkos_ROOT))
  DEPS_STEP := true
else
  KOKKOS_PREFIX := $(DEPS)/kokkos-openmp
  KK_PREFIX := $(DEPS)/kokkos-openmp
  DEPS_STEP := $(ROOT)/cmake/setup-deps.sh openmp
endif

.PHONY: all deps build test demo perf install cuda-deps cuda-build sanitize format-check clean

all: build

deps:
	@$(DEPS_STEP)

$(BUILD)/CMakeCache.txt:
	@$(DEPS_STEP)
	cmake -S $(ROOT) -B $(BUILD) -DCMAKE_BUILD_TYPE=Release \
	  -DKokkos_ROOT=$(KOKKOS_PREFIX) -DKokkosKernels_ROOT=$(KK_PREFIX) $(CMAKE_EXTRA)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && OMP_PROC_BIND=false ctest --output-on-failure

demo: build
	OMP_PROC_BIND=false $(BUILD)/drivers/hfisher-continual --overwrite --output $(ROOT)/results/continual

perf: build
	OMP_PROC_BIND=false $(BUILD)/drivers/hfisher-bench kernels --output $(ROOT)/results/kernels

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

cuda-deps:
	@$(ROOT)/cmake/setup-deps.sh cuda

# Compile and link for CUDA (sm_90 code and PTX: H100 / H200;
# HFISHER_CUDA_SM=80 for an A100). Runs nothing.
# CUDA_TARGETS chooses what is compiled. The default, hfisher_build_proof
# (CMakeLists.txt), proves the build (what CI compiles): the library,
# hfisher-portability (every kernel, HODLR, HSS
# and Fisher problem instantiated on Cuda), the batched-kernel benchmark, and
# the MPI continual-learning driver. CUDA_TARGETS=all adds every unit test
# and perf test: that is what perf_tests/run_cuda_checks.sh runs on a GPU
# machine (about an hour of nvcc on 2 cores).
CUDA_TARGETS ?= hfisher_build_proof
cuda-build: cuda-deps
	cmake -S $(ROOT) -B $(BUILD_CUDA) -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_COMPILER=$(DEPS)/src/kokkos-cuda-src/bin/nvcc_wrapper \
	  -DKokkos_ROOT=$(DEPS)/kokkos-cuda -DKokkosKernels_ROOT=$(DEPS)/kokkos-cuda \
	  -DHFISHER_ENABLE_CUDA=ON $(CMAKE_EXTRA)
	cmake --build $(BUILD_CUDA) -j $(JOBS) $(if $(filter all,$(CUDA_TARGETS)),,--target $(CUDA_TARGETS))

# AddressSanitizer + UndefinedBehaviorSanitizer (any report fails) at -O1
# on a subset chosen to fit CI's time: the core (I/O, checksums, atomic
# writes), the MLP and IDX loaders, HODLR (its loader and the batched
# kernels under it), each with its fuzz-style loader test, and the
# continual driver end to end (train, consolidate, checkpoint, resume,
# refusals). Open MPI's allocations left at exit are suppressed
# (cmake/sanitizer-suppressions.txt); leak stacks are unwound the slow way,
# as Open MPI's libraries keep no frame pointers and the fast unwinder
# stops in them before the frame a suppression names. Explicit
# instantiation is off there: the subset needs few of the library's
# instantiations, which would otherwise all be compiled at -O1 first.
SAN_TESTS ?= core_test_core nn_test_mlp hmatrix_test_hodlr
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
  LSAN_OPTIONS=suppressions=$(ROOT)/cmake/sanitizer-suppressions.txt:print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
sanitize: deps
	cmake -S $(ROOT) -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 \
	  -DHFISHER_SANITIZE=ON -DHFISHER_NATIVE=OFF -DHFISHER_EXPLICIT_INSTANTIATION=OFF \
	  -DKokkos_ROOT=$(KOKKOS_PREFIX) -DKokkosKernels_ROOT=$(KK_PREFIX) $(CMAKE_EXTRA)
	cmake --build $(BUILD_SAN) -j $(JOBS) --target $(SAN_TESTS) drivers_test_continual
	cd $(BUILD_SAN) && $(SAN_ENV) OMP_PROC_BIND=false ctest --output-on-failure \
	  -R '^($(subst $(eval) ,|,$(foreach t,$(SAN_TESTS),$(subst _test_,.test_,$(t)))))$$'
	cd $(BUILD_SAN) && $(SAN_ENV) OMP_PROC_BIND=false OMP_NUM_THREADS=2 drivers/drivers_test_continual \
	  --gtest_filter='ContinualDriver.EndToEndAndResume:ContinualDriver.BadValuesFailWithAMessage:ContinualDriver.CorruptCheckpointIsRefused'

# every tracked *.hpp / *.cpp formatted by .clang-format (clang-format 14,
# installed when missing); cmake/check-format.sh --fix rewrites them
format-check:
	@$(ROOT)/cmake/check-format.sh

clean:
	rm -rf $(BUILD) $(BUILD_CUDA) $(BUILD_SAN)
