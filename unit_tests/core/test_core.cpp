#include "../test_helpers.hpp"

#include <set>

TEST(Core, VersionAndBackends) {
  EXPECT_FALSE(std::string(hfisher::version()).empty());
  const std::string b = hfisher::enabled_backends();
#ifdef KOKKOS_ENABLE_OPENMP
  EXPECT_NE(b.find("OpenMP"), std::string::npos);
#endif
#ifdef KOKKOS_ENABLE_SERIAL
  EXPECT_NE(b.find("Serial"), std::string::npos);
#endif
}

TEST(Core, CounterBasedNormalsAreReproducibleAndStandard) {
  double s = 0, s2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double x = hfisher::random::normal(7, 3, i);
    EXPECT_EQ(x, hfisher::random::normal(7, 3, i));
    s += x;
    s2 += x * x;
  }
  EXPECT_NEAR(s / n, 0.0, 0.02);
  EXPECT_NEAR(s2 / n, 1.0, 0.02);
  EXPECT_NE(hfisher::random::normal(7, 3, 0), hfisher::random::normal(7, 4, 0));
}

TEST(Core, ErrorCarriesWhereAndWhat) {
  try {
    hfisher::detail::require(false, "f", "argument x is ", 3);
    FAIL();
  } catch (const hfisher::Error& e) {
    EXPECT_STREQ(e.what(), "f: argument x is 3");
  }
}
