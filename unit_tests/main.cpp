#include <gtest/gtest.h>
#include <hfisher/hfisher.hpp>

#include <cstdlib>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  hfisher::ScopeGuard guard(argc, argv);
  // HFISHER_TEST_HOST_TEAM_SIZE=2 runs the team (device) code paths on the host
  if (const char* ts = std::getenv("HFISHER_TEST_HOST_TEAM_SIZE")) hfisher::detail::host_team_size() = std::atoi(ts);
  return RUN_ALL_TESTS();
}
