#pragma once
/// \file comm.hpp
/// \brief hfisher::dist — MPI data parallelism.
///
/// `Communicator` is the only place hfisher calls MPI. A default-constructed
/// one is a single process (every collective is a no-op), so every function
/// that takes a communicator works unchanged without MPI; `world()` spans the
/// ranks of an MPI run (builds with HFISHER_HAVE_MPI). Collectives act on
/// contiguous Kokkos Views in any memory space: device data goes through a
/// host mirror (no CUDA-aware MPI is assumed).
///
/// Failure: `guarded(comm, program, fn)` runs fn and, when it throws on any
/// rank, prints the error with the rank and calls MPI_Abort, so every rank
/// exits (mpirun ends the others) instead of waiting in a collective.

#include <hfisher/core/error.hpp>
#include <hfisher/core/types.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef HFISHER_HAVE_MPI
#include <mpi.h>
#endif

namespace hfisher {
namespace dist {

/// Rows [lo, hi) of n owned by `rank` of `size` (balanced, contiguous, in rank order).
inline std::pair<long, long> shard(long n, int rank, int size) {
  const long base = n / size, extra = n % size;
  const long lo = rank * base + std::min<long>(rank, extra);
  return {lo, lo + base + (rank < extra ? 1 : 0)};
}

namespace detail {
#ifdef HFISHER_HAVE_MPI
template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>)
    return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, int>)
    return MPI_INT;
  else if constexpr (std::is_same_v<T, long>)
    return MPI_LONG;
  else if constexpr (std::is_same_v<T, char>)
    return MPI_CHAR;
  else
    static_assert(sizeof(T) == 0, "hfisher::dist: no MPI datatype for this scalar");
}
#endif

/// Runs f(host pointer) on a host copy of the contiguous view v; copies back when `write`.
template <class View, class F>
void on_host(const View& v, bool write, F&& f) {
  hfisher::detail::require(v.span_is_contiguous(), "hfisher::dist", "collectives need a contiguous view");
  auto h = Kokkos::create_mirror_view(v);
  Kokkos::deep_copy(h, v);
  f(h.data());
  if (write) Kokkos::deep_copy(v, h);
}
}  // namespace detail

class Communicator {
 public:
  /// A single process: rank 0 of 1; collectives do nothing.
  Communicator() = default;

#ifdef HFISHER_HAVE_MPI
  explicit Communicator(MPI_Comm c) : comm_(c), mpi_(true) {
    MPI_Comm_rank(c, &rank_);
    MPI_Comm_size(c, &size_);
  }
#endif

  /// All ranks of the MPI run (MPI must be initialized, see Environment);
  /// a single process in builds without MPI.
  static Communicator world() {
#ifdef HFISHER_HAVE_MPI
    int init = 0;
    MPI_Initialized(&init);
    hfisher::detail::require(init != 0, "hfisher::dist::Communicator::world",
                             "MPI is not initialized (create a hfisher::dist::Environment first)");
    return Communicator(MPI_COMM_WORLD);
#else
    return Communicator();
#endif
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool distributed() const { return size_ > 1; }
  bool root() const { return rank_ == 0; }

  /// In-place sum over ranks of a contiguous view.
  template <class View>
  void allreduce_sum(const View& v) const {
    if (!distributed() || v.span() == 0) return;
#ifdef HFISHER_HAVE_MPI
    using T = std::remove_const_t<typename View::value_type>;
    detail::on_host(v, true, [&](T* p) {
      // MPI counts are ints: views past 2^31 - 1 entries go in chunks
      const long n = long(v.span());
      for (long o = 0; o < n; o += kChunk)
        check(MPI_Allreduce(MPI_IN_PLACE, p + o, int(std::min(kChunk, n - o)), detail::mpi_type<T>(), MPI_SUM, comm_),
              "MPI_Allreduce");
    });
#endif
  }

  double sum(double x) const { return reduce(x, true); }
  double max(double x) const { return reduce(x, false); }

  /// Root's contents of a contiguous view on every rank.
  template <class View>
  void broadcast(const View& v, int root = 0) const {
    if (!distributed() || v.span() == 0) return;
#ifdef HFISHER_HAVE_MPI
    using T = std::remove_const_t<typename View::value_type>;
    detail::on_host(v, rank_ != root, [&](T* p) {
      const long n = long(v.span());
      for (long o = 0; o < n; o += kChunk)
        check(MPI_Bcast(p + o, int(std::min(kChunk, n - o)), detail::mpi_type<T>(), root, comm_), "MPI_Bcast");
    });
#endif
  }

  /// Root's bytes on every rank (sizes included).
  void broadcast(std::string& bytes, int root = 0) const {
    if (!distributed()) return;
#ifdef HFISHER_HAVE_MPI
    long n = long(bytes.size());
    check(MPI_Bcast(&n, 1, MPI_LONG, root, comm_), "MPI_Bcast");
    bytes.resize(std::size_t(n));
    for (long o = 0; o < n; o += kChunk)
      check(MPI_Bcast(bytes.data() + o, int(std::min(kChunk, n - o)), MPI_CHAR, root, comm_), "MPI_Bcast");
#else
    (void)root;
#endif
  }

  /// v has `rows` rows of `row_len` contiguous entries (a LayoutRight matrix
  /// or a vector); rank r has filled rows shard(rows, r, size()); afterwards
  /// every rank holds all rows.
  template <class View>
  void allgather_rows(const View& v, long rows, long row_len) const {
    hfisher::detail::require(long(v.span()) == rows * row_len, "hfisher::dist::allgather_rows", "view of ", v.span(),
                             " entries, expected ", rows, " x ", row_len);
    if (!distributed() || v.span() == 0) return;
#ifdef HFISHER_HAVE_MPI
    using T = std::remove_const_t<typename View::value_type>;
    std::vector<int> counts, displs;
    row_shards(rows, row_len, "hfisher::dist::allgather_rows", counts, displs);
    detail::on_host(v, true, [&](T* p) {
      check(MPI_Allgatherv(MPI_IN_PLACE, 0, detail::mpi_type<T>(), p, counts.data(), displs.data(),
                           detail::mpi_type<T>(), comm_),
            "MPI_Allgatherv");
    });
#endif
  }

  /// v has `rows` rows of `row_len` contiguous entries (as allgather_rows);
  /// sums v over the ranks into rank r's rows shard(rows, r, size()). The
  /// other rows of v are left unspecified (the first half of a reduce-
  /// scattered allreduce: allgather_rows completes it).
  template <class View>
  void reduce_scatter_rows(const View& v, long rows, long row_len) const {
    hfisher::detail::require(long(v.span()) == rows * row_len, "hfisher::dist::reduce_scatter_rows", "view of ",
                             v.span(), " entries, expected ", rows, " x ", row_len);
    if (!distributed() || v.span() == 0) return;
#ifdef HFISHER_HAVE_MPI
    using T = std::remove_const_t<typename View::value_type>;
    std::vector<int> counts, displs;
    row_shards(rows, row_len, "hfisher::dist::reduce_scatter_rows", counts, displs);
    const long lo = displs[rank_];
    detail::on_host(v, true, [&](T* p) {
      // in place: the sum of this rank's rows lands at the front of p
      check(MPI_Reduce_scatter(MPI_IN_PLACE, p, counts.data(), detail::mpi_type<T>(), MPI_SUM, comm_),
            "MPI_Reduce_scatter");
      if (lo > 0 && counts[rank_] > 0) std::memmove(p + lo, p, std::size_t(counts[rank_]) * sizeof(T));
    });
#endif
  }

  void barrier() const {
#ifdef HFISHER_HAVE_MPI
    if (distributed()) check(MPI_Barrier(comm_), "MPI_Barrier");
#endif
  }

  /// Ends every rank of the run with exit code `code` (after printing msg).
  [[noreturn]] void abort(const std::string& msg, int code = 1) const {
    std::fprintf(stderr, "%s\n", msg.c_str());
    std::fflush(stderr);
#ifdef HFISHER_HAVE_MPI
    if (mpi_) MPI_Abort(comm_, code);
#endif
    std::exit(code);
  }

 private:
  /// Entries per MPI call of the chunked collectives (MPI counts are ints).
  static constexpr long kChunk = 1L << 30;

  /// Entry counts and offsets of every rank's rows shard(rows, r, size())
  /// of a view of rows x row_len entries; the variable-count collectives take
  /// them as ints, so a larger view is refused.
  void row_shards(long rows, long row_len, const char* where, std::vector<int>& counts,
                  std::vector<int>& displs) const {
    hfisher::detail::require(rows * row_len <= long(std::numeric_limits<int>::max()), where, "a view of ",
                             rows * row_len, " entries: more than MPI's int counts can address (2^31 - 1); split it");
    counts.resize(std::size_t(size_));
    displs.resize(std::size_t(size_));
    for (int r = 0; r < size_; ++r) {
      const auto s = shard(rows, r, size_);
      counts[r] = int((s.second - s.first) * row_len);
      displs[r] = int(s.first * row_len);
    }
  }

  double reduce(double x, bool sum) const {
    if (!distributed()) return x;
#ifdef HFISHER_HAVE_MPI
    double y = 0;
    check(MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, sum ? MPI_SUM : MPI_MAX, comm_), "MPI_Allreduce");
    return y;
#else
    return x;
#endif
  }
  static void check(int rc, const char* call) {
#ifdef HFISHER_HAVE_MPI
    if (rc != MPI_SUCCESS) {
      char msg[MPI_MAX_ERROR_STRING];
      int len = 0;
      MPI_Error_string(rc, msg, &len);
      hfisher::detail::require(false, "hfisher::dist", call, " failed: ", std::string(msg, std::size_t(len)));
    }
#else
    (void)rc;
    (void)call;
#endif
  }

  int rank_ = 0, size_ = 1;
#ifdef HFISHER_HAVE_MPI
  MPI_Comm comm_ = MPI_COMM_SELF;
  bool mpi_ = false;
#endif
};

/// MPI for a program's lifetime (MPI_Init / MPI_Finalize; nothing without
/// MPI). Create it before hfisher::ScopeGuard.
class Environment {
 public:
  Environment(int& argc, char**& argv) {
#ifdef HFISHER_HAVE_MPI
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
      int provided = 0;
      MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
      owns_ = true;
    }
#else
    (void)argc;
    (void)argv;
#endif
  }
  ~Environment() {
#ifdef HFISHER_HAVE_MPI
    if (owns_) MPI_Finalize();
#endif
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  bool owns_ = false;
};

/// Runs fn() and returns its exit code; an exception on any rank prints
/// "<program>: error on rank r of P: <what>" and ends every rank (MPI_Abort),
/// so no rank is left waiting in a collective.
template <class F>
int guarded(const Communicator& comm, const char* program, F&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    std::string msg = std::string(program) + ": error";
    if (comm.distributed()) msg += " on rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size());
    msg += ": " + std::string(e.what());
    if (comm.distributed()) comm.abort(msg, 1);
    std::fprintf(stderr, "%s\n", msg.c_str());
    return 1;
  }
}

}  // namespace dist
}  // namespace hfisher
