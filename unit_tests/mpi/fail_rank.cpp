// One rank throws while the others wait in a collective: every rank must
// exit (non-zero) with the failing rank's message, never hang. Run by
// unit_tests/mpi/check_fail.cmake under mpirun.
#include <hfisher/hfisher.hpp>

int main(int argc, char** argv) {
  hfisher::dist::Environment env(argc, argv);
  hfisher::ScopeGuard guard(argc, argv);
  const auto comm = hfisher::dist::Communicator::world();
  return hfisher::dist::guarded(comm, "hfisher-dist-fail", [&] {
    if (comm.rank() == comm.size() - 1)
      hfisher::detail::require(false, "fail_rank", "deliberate failure on the last rank");
    Kokkos::View<double*> v("v", 4);
    comm.allreduce_sum(v);  // the other ranks wait here for the failed one
    return 0;
  });
}
