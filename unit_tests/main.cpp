#include <gtest/gtest.h>
#include <hfisher/hfisher.hpp>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  hfisher::ScopeGuard guard(argc, argv);
  return RUN_ALL_TESTS();
}
