#include "../test_helpers.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

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

namespace {

std::string read_all(const std::string& p) {
  std::ifstream i(p, std::ios::binary);
  std::stringstream s;
  s << i.rdbuf();
  return s.str();
}

// a fresh empty scratch directory
std::string scratch(const std::string& name) {
  const std::string d = ::testing::TempDir() + "/hfisher_core_" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : std::filesystem::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

// A symlink planted at the old fixed temporary name (<path>.tmp) is neither
// followed nor reused: the file it points to keeps its contents.
TEST(CoreIO, AtomicWriteNeverFollowsAPlantedTemporary) {
  const std::string d = scratch("symlink");
  { std::ofstream(d + "/victim") << "keep"; }
  std::filesystem::create_symlink(d + "/victim", d + "/out.bin.tmp");
  hfisher::io::atomic_write(d + "/out.bin", "test", [](std::ostream& o) { o << "new"; });
  EXPECT_EQ(read_all(d + "/victim"), "keep");
  EXPECT_EQ(read_all(d + "/out.bin"), "new");
  EXPECT_TRUE(std::filesystem::is_symlink(d + "/out.bin.tmp"));
  EXPECT_EQ(listing(d), (std::vector<std::string>{"out.bin", "out.bin.tmp", "victim"}));
  std::filesystem::remove_all(d);
}

// Two writers of one path have temporaries of their own; a failed body
// leaves neither a temporary nor a change under the path.
TEST(CoreIO, AtomicWriteTemporariesAreUniqueAndCleanedUp) {
  const std::string d = scratch("unique");
  hfisher::io::AtomicFile a(d + "/x", "test"), b(d + "/x", "test");
  EXPECT_NE(a.temporary(), b.temporary());
  a.stream() << "first";
  b.stream() << "second";
  a.commit();
  b.commit();
  EXPECT_EQ(read_all(d + "/x"), "second");
  EXPECT_THROW(hfisher::io::atomic_write(d + "/x", "test",
                                         [](std::ostream& o) {
                                           o << "partial";
                                           throw hfisher::Error("body failed");
                                         }),
               hfisher::Error);
  EXPECT_EQ(read_all(d + "/x"), "second");
  EXPECT_EQ(listing(d), (std::vector<std::string>{"x"}));
  std::filesystem::remove_all(d);
}

// A write that cannot happen says why, in the system's words.
TEST(CoreIO, AtomicWriteErrorsCarryTheSystemReason) {
  const std::string d = scratch("reason");
  try {
    hfisher::io::atomic_write(d + "/missing/x", "test", [](std::ostream& o) { o << 1; });
    FAIL() << "no error";
  } catch (const hfisher::Error& e) {
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(d);
}

// Output directories: empty and "/" are refused, a new one is created, a path
// that cannot be written fails before any work, with the reason.
TEST(CoreIO, PrepareOutputDirRefusesEmptyRootAndUnwritable) {
  auto fails_with = [](const std::string& dir, const std::string& text) {
    try {
      hfisher::io::prepare_output_dir(dir, "test");
      ADD_FAILURE() << "accepted " << dir;
    } catch (const hfisher::Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  fails_with("", "empty");
  fails_with("/", "root");
  fails_with("/tmp/..", "root");
  fails_with("/proc/hfisher_no_such_dir", "cannot create");
  const std::string d = scratch("prepare");
  { std::ofstream(d + "/file") << "x"; }
  fails_with(d + "/file", "ot a directory");
  EXPECT_EQ(hfisher::io::prepare_output_dir(d + "/a/b", "test"), d + "/a/b");
  EXPECT_TRUE(std::filesystem::is_directory(d + "/a/b"));
  EXPECT_TRUE(listing(d + "/a/b").empty());  // the write probe is gone
  std::filesystem::remove_all(d);
}

// gnuplot runs from an argument vector in the given folder: a script name
// with shell syntax in it is only a (missing) file name, never a command.
TEST(CoreIO, RunGnuplotHandsNothingToAShell) {
  const std::string d = scratch("gnuplot");
  const std::string evil = "x'; touch " + d + "/PWNED; echo '";
  EXPECT_FALSE(hfisher::io::run_gnuplot(d, evil + ".gp"));
  EXPECT_FALSE(hfisher::io::run_gnuplot(d + "/no such dir", "plots.gp"));
  EXPECT_FALSE(std::filesystem::exists(d + "/PWNED"));
  std::filesystem::remove_all(d);
}
