#include "../test_helpers.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
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

// Host-side draws (epoch shuffles, stream permutations, replay picks) use
// std::mt19937_64, whose output the standard fixes, with hfisher's own
// uniform_below and shuffle: the same numbers with every standard library.
TEST(Core, HostDrawsDoNotDependOnTheStandardLibrary) {
  // the engine is the standard's: its 10000th output is fixed by [rand.predef]
  std::mt19937_64 std_engine;
  std_engine.discard(9999);
  EXPECT_EQ(std_engine(), 9981545732273789042ULL);
  // rejection: with n = 3, 2^64 = 1 (mod 3), so the largest draw is refused
  struct Scripted {
    using result_type = std::uint64_t;
    static constexpr result_type min() { return 0; }
    static constexpr result_type max() { return ~result_type(0); }
    std::vector<result_type> v;
    std::size_t i = 0;
    result_type operator()() { return v.at(i++); }
  };
  Scripted g{{~std::uint64_t(0), 7, ~std::uint64_t(0) - 1, 5}};
  EXPECT_EQ(hfisher::random::uniform_below(g, 3), 1u);  // 2^64 - 1 refused, then 7 % 3
  EXPECT_EQ(g.i, 2u);
  EXPECT_EQ(hfisher::random::uniform_below(g, 3), (~std::uint64_t(0) - 1) % 3);  // the largest accepted draw
  EXPECT_EQ(hfisher::random::uniform_below(g, 1), 0u);
  // uniform: counts of 60 000 draws below 6 within 5 standard deviations
  std::mt19937_64 e(3);
  std::vector<int> count(6, 0);
  for (int i = 0; i < 60000; ++i) ++count[hfisher::random::uniform_below(e, 6)];
  for (int c : count) EXPECT_NEAR(c, 10000, 5 * std::sqrt(60000 * (1.0 / 6) * (5.0 / 6))) << c;
  // a shuffle is a permutation, and a seed's order is pinned (it must not
  // change with the compiler or the standard library)
  std::vector<int> v(10);
  std::iota(v.begin(), v.end(), 0);
  std::mt19937_64 s(42);
  hfisher::random::shuffle(v.begin(), v.end(), s);
  std::vector<int> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(v, (std::vector<int>{1, 7, 9, 0, 3, 8, 4, 2, 5, 6})) << ::testing::PrintToString(v);
  // a partial shuffle takes k draws: position i swaps with i + (draw mod n - i)
  Scripted p{{3, 4, 0}};
  std::vector<int> w{0, 1, 2, 3, 4};
  hfisher::random::partial_shuffle(w.begin(), w.end(), 2, p);
  EXPECT_EQ(w, (std::vector<int>{3, 1, 2, 0, 4})) << ::testing::PrintToString(w);  // 3 % 5 = 3, then 1 + 4 % 4 = 1
  EXPECT_EQ(p.i, 2u);
  // a model's initial weights: the counter-based normal, scaled, biases zero
  hfisher::nn::MLP<double, Kokkos::DefaultHostExecutionSpace> m({3, 2, 2}, hfisher::nn::Activation::ReLU, 5);
  auto th = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m.params());
  for (int l = 0; l < 2; ++l) {
    const auto& sh = m.layers()[l];
    for (int i = 0; i < sh.out; ++i)
      for (int j = 0; j <= sh.in; ++j) {
        const std::uint64_t index = std::uint64_t(i) * sh.in + j;
        const double z = hfisher::random::normal(5, hfisher::random::init_stream + l, index);
        const double want = std::sqrt(2.0 / sh.in) * z;
        EXPECT_EQ(th(sh.offset + i * (sh.in + 1) + j), j < sh.in ? want : 0.0)
            << "layer " << l << " (" << i << ", " << j << ")";
      }
  }
  EXPECT_NEAR(th(0), 0.77741604863113345, 1e-14);  // pinned: the first weight of seed 5
}

TEST(Core, ErrorCarriesWhereAndWhat) {
  try {
    hfisher::detail::require(false, "f", "argument x is ", 3);
    FAIL();
  } catch (const hfisher::Error& e) {
    EXPECT_STREQ(e.what(), "f: argument x is 3");
  }
}

// Allocation failures become hfisher::Error; everything else passes through
TEST(Core, AllocationFailureTranslation) {
  auto translated = [](auto thrower) -> std::string {
    try {
      try {
        thrower();
      } catch (...) {
        hfisher::detail::rethrow_allocation_failure("op");
      }
    } catch (const hfisher::Error& e) {
      return std::string("Error: ") + e.what();
    } catch (const std::exception& e) {
      return std::string("other: ") + e.what();
    }
    return "no throw";
  };
  EXPECT_EQ(translated([] { throw std::runtime_error("Kokkos failed to allocate memory for label \"x\".  (size)\n"); }),
            "Error: op: out of memory: Kokkos failed to allocate memory for label \"x\".  (size)");
  EXPECT_EQ(translated([] { throw std::bad_alloc(); }).rfind("Error: op: out of memory (", 0), 0u);
  EXPECT_EQ(translated([] { throw std::runtime_error("a kernel failed"); }), "other: a kernel failed");
  EXPECT_EQ(translated([] { throw hfisher::Error("f: bad"); }), "Error: f: bad");
}

namespace {

std::string read_all(const std::string& p) {
  std::ifstream i(p, std::ios::binary);
  std::stringstream s;
  s << i.rdbuf();
  return s.str();
}

// a fresh empty scratch directory
// per process: ctest runs this file twice at once (plain and .team2)
std::string scratch(const std::string& name) {
  const std::string d = ::testing::TempDir() + "/hfisher_core_" + std::to_string(::getpid()) + "_" + name;
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

// Strings a user typed go into results.json escaped: quotes, backslashes and
// control characters cannot end the literal early.
TEST(CoreIO, JsonStringEscapes) {
  EXPECT_EQ(hfisher::io::json_string(""), "\"\"");
  EXPECT_EQ(hfisher::io::json_string("/data/fashion"), "\"/data/fashion\"");
  EXPECT_EQ(hfisher::io::json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(hfisher::io::json_string("x\ny\t\x01"), "\"x\\ny\\t\\u0001\"");
  EXPECT_EQ(hfisher::io::json_string("\xc3\xa9"), "\"\xc3\xa9\"");  // UTF-8 passes through
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

// CRC-32C against its published check value, and sealed files: a round trip
// reads exactly the payload (seeking inside it), every single-bit flip of
// payload, length or CRC is refused, a flip in the tag makes the file read
// as unsealed (its loader then finds the 20 bytes left over), and a file
// without a trailer reads whole and unverified.
TEST(CoreIO, SealedFilesRefuseEveryFlippedBit) {
  EXPECT_EQ(hfisher::io::crc32c("123456789", 9), 0xE3069283u);
  const std::string d = scratch("sealed");
  const std::string path = d + "/x.bin";
  std::string payload;
  for (int i = 0; i < 100; ++i) payload += char((i * 37) & 0xFF);
  hfisher::io::atomic_write_sealed(path, "test", [&](std::ostream& o) { o << payload; });
  EXPECT_EQ(read_all(path).size(), payload.size() + 20);
  {
    hfisher::io::SealedFile f(path, "test");
    EXPECT_TRUE(f.sealed());
    hfisher::io::require_available(f.stream(), payload.size(), path, "test");
    EXPECT_THROW(hfisher::io::require_available(f.stream(), payload.size() + 1, path, "test"), hfisher::Error);
    std::string got(payload.size(), '\0');
    f.stream().read(&got[0], std::streamsize(got.size()));
    EXPECT_EQ(got, payload);
    EXPECT_NO_THROW(f.expect_end());
  }
  {
    hfisher::io::SealedFile f(path, "test");
    char c;
    f.stream().read(&c, 1);
    EXPECT_THROW(f.expect_end(), hfisher::Error);  // 99 bytes left over
  }
  const std::string all = read_all(path);
  int refused = 0, unsealed = 0;
  for (std::size_t bit = 0; bit < all.size() * 8; ++bit) {
    std::string flipped = all;
    flipped[bit / 8] = char(flipped[bit / 8] ^ (1 << (bit % 8)));
    { std::ofstream(d + "/f.bin", std::ios::binary) << flipped; }
    try {
      hfisher::io::SealedFile f(d + "/f.bin", "test");
      EXPECT_FALSE(f.sealed()) << "bit " << bit;
      EXPECT_GE(bit / 8, payload.size()) << "bit " << bit;
      EXPECT_LT(bit / 8, payload.size() + 8) << "bit " << bit << " (outside the tag)";
      ++unsealed;
    } catch (const hfisher::Error&) {
      ++refused;
    }
  }
  EXPECT_EQ(unsealed, 64);
  EXPECT_EQ(refused, int(all.size() * 8) - 64);
  { std::ofstream(d + "/plain.bin", std::ios::binary) << payload; }
  hfisher::io::SealedFile plain(d + "/plain.bin", "test");
  EXPECT_FALSE(plain.sealed());
  EXPECT_THROW(hfisher::io::SealedFile(d + "/missing.bin", "test"), hfisher::Error);
  std::filesystem::remove_all(d);
}

// put_block / get_block (the factorizations' file form): shape first, a
// block of another shape or a short stream refused before any allocation
TEST(CoreIO, BlocksCarryTheirShape) {
  using B3 = Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::HostSpace>;
  using B2 = Kokkos::View<double**, Kokkos::LayoutRight, Kokkos::HostSpace>;
  B3 a("a", 2, 3, 4);
  B2 v("v", 5, 2);
  for (std::size_t i = 0; i < a.span(); ++i) a.data()[i] = 0.5 * double(i);
  for (std::size_t i = 0; i < v.span(); ++i) v.data()[i] = -double(i);
  std::stringstream s;
  hfisher::io::put_block(s, a);
  hfisher::io::put_block(s, v);
  const std::string bytes = s.str();
  EXPECT_EQ(bytes.size(), 2 * 3 * 8 + (24 + 10) * sizeof(double));
  {
    std::stringstream in(bytes);
    const auto a2 = hfisher::io::get_block<B3>(in, 2, 3, 4, "blocks", "test");
    const auto v2 = hfisher::io::get_block<B2>(in, 5, 2, 1, "blocks", "test");
    for (std::size_t i = 0; i < a.span(); ++i) EXPECT_EQ(a2.data()[i], a.data()[i]);
    for (std::size_t i = 0; i < v.span(); ++i) EXPECT_EQ(v2.data()[i], v.data()[i]);
  }
  {
    std::stringstream in(bytes);
    hfisher_test::expect_throw_with([&] { hfisher::io::get_block<B3>(in, 2, 4, 3, "blocks", "test"); },
                                    {"a block of 2x3x4 where this matrix has 2x4x3"}, "wrong shape");
  }
  {
    std::stringstream in(bytes.substr(0, 3 * 8 + 10 * sizeof(double)));
    hfisher_test::expect_throw_with([&] { hfisher::io::get_block<B3>(in, 2, 3, 4, "blocks", "test"); }, {"truncated"},
                                    "short stream");
  }
}
