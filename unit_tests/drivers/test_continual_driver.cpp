// hfisher-continual end to end on a tiny synthetic stream: it finishes,
// writes its files, and a run interrupted after a task and restarted with the
// same arguments ends with the same results as an uninterrupted run.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

void write_gz(const std::string& path, const std::vector<unsigned char>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, b.data(), unsigned(b.size()));
  gzclose(f);
}

std::vector<unsigned char> header(int type_dims, const std::vector<int>& dims) {
  std::vector<unsigned char> h = {0, 0, 8, (unsigned char)type_dims};
  for (int d : dims)
    for (int s = 24; s >= 0; s -= 8) h.push_back((unsigned char)((d >> s) & 255));
  return h;
}

// 4x4 images whose label is the brightest quadrant + 4 * (sum parity), 10 classes
void make_set(const std::string& dir, const std::string& stem, int n, unsigned seed) {
  std::mt19937 g(seed);
  auto img = header(3, {n, 4, 4}), lab = header(1, {n});
  for (int i = 0; i < n; ++i) {
    const int y = int(g() % 10);
    for (int p = 0; p < 16; ++p) img.push_back((unsigned char)((g() % 60) + ((p % 10) == y ? 180 : 0)));
    lab.push_back((unsigned char)y);
  }
  write_gz(dir + "/" + stem + "-images-idx3-ubyte.gz", img);
  write_gz(dir + "/" + stem + "-labels-idx1-ubyte.gz", lab);
}

std::string slurp(const std::string& p) {
  std::ifstream i(p);
  std::stringstream s;
  s << i.rdbuf();
  return s.str();
}

// the accuracy matrices of results.json (everything after "methods")
std::string matrices(const std::string& json) { return json.substr(json.find("\"methods\"")); }

}  // namespace

TEST(ContinualDriver, EndToEndAndResume) {
  namespace fs = std::filesystem;
  const std::string root = ::testing::TempDir() + "/hfisher_driver_test";
  fs::remove_all(root);
  fs::create_directories(root + "/data");
  make_set(root + "/data", "train", 600, 1);
  make_set(root + "/data", "t10k", 200, 2);
  const std::string base = std::string(HFISHER_CONTINUAL_EXE) + " --data " + root + "/data --tasks 3 --hidden 12 " +
                           "--train-examples 600 --test-examples 200 --fisher-examples 40 --leaf 8 --batch 32 " +
                           "--method finetune --method ewc --method kfac-laplace --method hierarchical";
  ASSERT_EQ(std::system((base + " --output " + root + "/full > " + root + "/full.log 2>&1").c_str()), 0)
      << slurp(root + "/full.log");
  for (const char* f : {"results.json", "results.csv", "plots.gp", "R_ewc.dat", "checkpoints/hierarchical.ckpt"})
    EXPECT_TRUE(fs::exists(root + "/full/" + f)) << f;
  // interrupted after task 2 of the first method, then restarted twice
  const std::string cut = base + " --output " + root + "/cut > " + root + "/cut.log 2>&1";
  const int rc = std::system(("HFISHER_CONTINUAL_STOP_AFTER=2 " + cut).c_str());
  EXPECT_NE(rc, 0);
  EXPECT_FALSE(fs::exists(root + "/cut/results.json"));
  ASSERT_EQ(std::system(cut.c_str()), 0) << slurp(root + "/cut.log");
  EXPECT_NE(slurp(root + "/cut.log").find("resuming"), std::string::npos);
  EXPECT_EQ(matrices(slurp(root + "/cut/results.json")), matrices(slurp(root + "/full/results.json")));
  // a checkpoint from other arguments is refused, not silently reused
  EXPECT_NE(std::system((base + " --lambda 3 --output " + root + "/cut > " + root + "/other.log 2>&1").c_str()), 0);
  EXPECT_NE(slurp(root + "/other.log").find("different arguments"), std::string::npos);
  // bad options and a missing data directory fail with a message
  EXPECT_NE(std::system((std::string(HFISHER_CONTINUAL_EXE) + " --stream rotated > /dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((std::string(HFISHER_CONTINUAL_EXE) + " --data " + root + "/nothing --output " + root +
                         "/x > " + root + "/missing.log 2>&1")
                            .c_str()),
            0);
  EXPECT_NE(slurp(root + "/missing.log").find("nothing"), std::string::npos);
  fs::remove_all(root);
}
