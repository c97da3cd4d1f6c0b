// hfisher-continual end to end on a tiny synthetic stream: it finishes,
// writes its files, and a run interrupted after a task and restarted with the
// same arguments ends with the same results as an uninterrupted run.
#include <gtest/gtest.h>
#include <hfisher/core/io.hpp>
#include <zlib.h>

#include <sys/wait.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../tiny_mnist.hpp"

namespace {

void write_gz(const std::string& path, const std::vector<unsigned char>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, b.data(), unsigned(b.size()));
  gzclose(f);
}

// the tiny set of tiny_mnist.hpp, gzipped as Debian ships Fashion-MNIST
void make_set(const std::string& dir, const std::string& stem, int n, unsigned seed) {
  const auto f = hfisher_test::tiny_mnist(n, seed);
  write_gz(dir + "/" + stem + "-images-idx3-ubyte.gz", f.images);
  write_gz(dir + "/" + stem + "-labels-idx1-ubyte.gz", f.labels);
}

std::string slurp(const std::string& p) {
  std::ifstream i(p);
  std::stringstream s;
  s << i.rdbuf();
  return s.str();
}

// the accuracy matrices of results.json (the "R" entries of the methods)
std::string matrices(const std::string& json) {
  std::string r;
  for (std::size_t p = json.find("\"R\": "); p != std::string::npos; p = json.find("\"R\": ", p + 1))
    r += json.substr(p, json.find("]]", p) - p) + "\n";
  return r;
}

// every number of a text
std::vector<double> numbers(const std::string& s) {
  std::vector<double> v;
  const char* p = s.c_str();
  while (*p) {
    char* end = nullptr;
    const double x = std::strtod(p, &end);
    if (end != p && (std::isdigit((unsigned char)*p) || *p == '-' || *p == '.')) {
      v.push_back(x);
      p = end;
    } else {
      ++p;
    }
  }
  return v;
}

// an empty scratch directory with a tiny MNIST-format stream in <root>/data
std::string fresh_root(const std::string& name) {
  const std::string root = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root + "/data");
  make_set(root + "/data", "train", 600, 1);
  make_set(root + "/data", "t10k", 200, 2);
  return root;
}

// driver options for that stream (3 tasks, a tiny network)
std::string tiny_stream_args(const std::string& root) {
  return " --data " + root + "/data --tasks 3 --hidden 12 --train-examples 600 --test-examples 200 " +
         "--fisher-examples 40 --leaf 8 --batch 32";
}

}  // namespace

TEST(ContinualDriver, EndToEndAndResume) {
  namespace fs = std::filesystem;
  const std::string root = fresh_root("hfisher_driver_test");
  const std::string base = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) +
                           " --method finetune --method ewc --method kfac-laplace --method hierarchical";
  ASSERT_EQ(std::system((base + " --output " + root + "/full > " + root + "/full.log 2>&1").c_str()), 0)
      << slurp(root + "/full.log");
  for (const char* f : {"results.json", "results.csv", "plots.gp", "R_ewc.dat", "checkpoints/hierarchical.ckpt"})
    EXPECT_TRUE(fs::exists(root + "/full/" + f)) << f;
  // results.json holds the settings a rerun needs
  const std::string js = slurp(root + "/full/results.json");
  for (const char* field :
       {"\"settings\"", "\"optimizer\": \"adam\"", "\"lr\": 0.001", "\"keep_optimizer_state\": false",
        "\"widths\": [16, 12, 10]", "\"fisher_examples\": 40", "\"fisher_kind\": \"mc\"", "\"ewc\": 10"})
    EXPECT_NE(js.find(field), std::string::npos) << field << " missing from\n" << js;
  EXPECT_NE(js.find("\"commit\": \""), std::string::npos) << js;
  // every option, defaults included (the memory budget resolved to bytes)
  for (const std::string& field :
       {std::string("\"rank\": 32"), std::string("\"power_steps\": 1"), std::string("\"probe_anchors\": false"),
        std::string("\"memory_budget_bytes\": "), "\"data\": \"" + root + "/data\""})
    EXPECT_NE(js.find(field), std::string::npos) << field << " missing from\n" << js;
  EXPECT_NE(js.find("\"libraries\": {\"kokkos\": \""), std::string::npos) << js;
  // plasticity next to ACC: learning accuracy, and intransigence against
  // fine-tuning (exactly 0 for fine-tuning itself)
  EXPECT_NE(js.find("\"LA\": "), std::string::npos) << js;
  EXPECT_NE(js.find("\"method\": \"finetune\", \"seed\": 1, \"lambda\": 0, \"ACC\""), std::string::npos) << js;
  EXPECT_NE(js.find("\"intransigence\": 0, "), std::string::npos) << js;
  EXPECT_EQ(js.find("\"intransigence\": null"), std::string::npos) << js;
  EXPECT_NE(slurp(root + "/full/results.csv").find(",LA,intransigence,"), std::string::npos);
  // heatmaps number tasks from 1 as the log does; every method has its own colour
  const std::string gp = slurp(root + "/full/plots.gp");
  EXPECT_NE(gp.find("using ($1+1):($2+1):3"), std::string::npos) << gp;
  EXPECT_NE(gp.find("lc rgb '#E69F00'"), std::string::npos) << gp;
  {  // and its own marker: the ACC curves' colours and point types all differ
    const auto from = gp.find("set output 'acc.png'"), to = gp.find("set output 'acc_memory.png'");
    ASSERT_NE(from, std::string::npos);
    const std::string acc_plot = gp.substr(from, to - from);
    std::vector<std::string> colours, points;
    for (auto p = acc_plot.find("lc rgb '"); p != std::string::npos; p = acc_plot.find("lc rgb '", p + 1))
      colours.push_back(acc_plot.substr(p + 8, 7));
    for (auto p = acc_plot.find(" pt "); p != std::string::npos; p = acc_plot.find(" pt ", p + 1))
      points.push_back(acc_plot.substr(p + 4, acc_plot.find(' ', p + 4) - p - 4));
    EXPECT_EQ(colours.size(), 4u) << acc_plot;
    EXPECT_EQ(points.size(), 4u) << acc_plot;
    for (std::size_t i = 0; i < points.size(); ++i)
      for (std::size_t j = i + 1; j < points.size(); ++j) {
        EXPECT_NE(colours[i], colours[j]) << acc_plot;
        EXPECT_NE(points[i], points[j]) << acc_plot;
      }
  }
  // final ACC against Fisher memory, one row per method in the order run
  EXPECT_NE(gp.find("set output 'acc_memory.png'"), std::string::npos) << gp;
  {
    std::istringstream am(slurp(root + "/full/acc_memory.dat"));
    std::string line, m;
    std::vector<std::string> methods;
    double mb = 0, mb_std = 0, acc = 0, acc_std = 0;
    while (std::getline(am, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream row(line);
      ASSERT_TRUE(bool(row >> m >> mb >> mb_std >> acc >> acc_std)) << line;
      methods.push_back(m);
      EXPECT_EQ(mb == 0.0, m == "finetune") << line;  // only fine-tuning keeps no Fisher
      EXPECT_EQ(mb_std, 0.0) << line;                 // one seed
      EXPECT_EQ(acc_std, 0.0) << line;
      EXPECT_GT(acc, 0.0) << line;
      EXPECT_LE(acc, 1.0) << line;
      // the same final ACC as results.json reports for that run
      const auto at = js.find("\"method\": \"" + m + "\", \"seed\": 1");
      ASSERT_NE(at, std::string::npos) << m;
      EXPECT_NEAR(std::stod(js.substr(js.find("\"ACC\": ", at) + 7)), acc, 1e-5) << m;
    }
    EXPECT_EQ(methods, (std::vector<std::string>{"finetune", "ewc", "kfac-laplace", "hierarchical"}));
  }
  // interrupted after task 2 of the first method; a plain rerun into the
  // folder is refused (it holds a run); --resume finishes it
  const std::string cut = base + " --output " + root + "/cut";
  const int rc = std::system(("HFISHER_CONTINUAL_STOP_AFTER=2 " + cut + " > " + root + "/cut.log 2>&1").c_str());
  EXPECT_NE(rc, 0);
  EXPECT_FALSE(fs::exists(root + "/cut/results.json"));
  EXPECT_NE(std::system((cut + " > " + root + "/again.log 2>&1").c_str()), 0);
  EXPECT_NE(slurp(root + "/again.log").find("--resume"), std::string::npos) << slurp(root + "/again.log");
  EXPECT_EQ(slurp(root + "/again.log").find("] task"), std::string::npos) << "trained before refusing";
  ASSERT_EQ(std::system((cut + " --resume > " + root + "/cut.log 2>&1").c_str()), 0) << slurp(root + "/cut.log");
  EXPECT_NE(slurp(root + "/cut.log").find("resuming"), std::string::npos);
  EXPECT_EQ(matrices(slurp(root + "/cut/results.json")), matrices(slurp(root + "/full/results.json")));
  // a checkpoint from other arguments is refused, not silently reused
  EXPECT_NE(
      std::system((base + " --lambda 3 --resume --output " + root + "/cut > " + root + "/other.log 2>&1").c_str()), 0);
  EXPECT_NE(slurp(root + "/other.log").find("different arguments"), std::string::npos);
  // a checkpoint from another code version is refused by name: the code
  // field of its key rewritten (same length) and the file sealed again
  {
    const std::string ck = root + "/cut/checkpoints/ewc.ckpt";
    std::string payload;
    {
      hfisher::io::SealedFile f(ck, "test");
      payload.assign(std::istreambuf_iterator<char>(f.stream()), std::istreambuf_iterator<char>());
    }
    const auto at = payload.find("code=");
    ASSERT_NE(at, std::string::npos);
    const auto bar = payload.find('|', at);
    for (auto i = at + 5; i < bar; ++i) payload[i] = 'z';
    hfisher::io::atomic_write_sealed(ck, "test", [&](std::ostream& o) { o << payload; });
    EXPECT_NE(std::system((base + " --resume --output " + root + "/cut > " + root + "/code.log 2>&1").c_str()), 0);
    EXPECT_NE(slurp(root + "/code.log").find("code version zzz"), std::string::npos) << slurp(root + "/code.log");
  }
  // --overwrite with fewer methods: the earlier run's files are gone, the new ones written
  ASSERT_EQ(std::system((std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) + " --method ewc --overwrite" +
                         " --output " + root + "/cut > " + root + "/over.log 2>&1")
                            .c_str()),
            0)
      << slurp(root + "/over.log");
  EXPECT_NE(slurp(root + "/over.log").find("removed"), std::string::npos);
  EXPECT_FALSE(fs::exists(root + "/cut/R_hierarchical.dat"));
  EXPECT_FALSE(fs::exists(root + "/cut/checkpoints/hierarchical.ckpt"));
  EXPECT_TRUE(fs::exists(root + "/cut/R_ewc.dat"));
  EXPECT_NE(std::system((base + " --resume --overwrite --output " + root + "/x > /dev/null 2>&1").c_str()), 0);
  // --help is the driver's own page, not Kokkos's (whose options still work)
  ASSERT_EQ(
      std::system(
          (std::string(HFISHER_CONTINUAL_EXE) + " --kokkos-threads=1 --help > " + root + "/help.log 2>&1").c_str()),
      0);
  const std::string help = slurp(root + "/help.log");
  EXPECT_EQ(help.find("Kokkos command line arguments"), std::string::npos) << help;
  EXPECT_EQ(help.rfind("hfisher-continual", 0), 0u) << help;
  EXPECT_NE(help.find("--resume"), std::string::npos) << help;
  // bad options and a missing data directory fail with a message
  EXPECT_NE(std::system((std::string(HFISHER_CONTINUAL_EXE) + " --stream rotated > /dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((std::string(HFISHER_CONTINUAL_EXE) + " --data " + root + "/nothing --output " + root +
                         "/x > " + root + "/missing.log 2>&1")
                            .c_str()),
            0);
  EXPECT_NE(slurp(root + "/missing.log").find("nothing"), std::string::npos);
  fs::remove_all(root);
}

// experience replay on a class-incremental split stream (where fine-tuning
// forgets; the per-task masks are tested in ReplayTest): it reports the memory it keeps, a resumed run rebuilds that
// memory and ends as the uninterrupted run, and a memory larger than a task is refused first
TEST(ContinualDriver, ReplayRunsResumesAndReportsItsMemory) {
  namespace fs = std::filesystem;
  const std::string root = fresh_root("hfisher_driver_replay");
  const std::string base = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) +
                           " --stream split --scenario class --method finetune --method replay --lr 0.01";
  // (at Adam's default 1e-3 this tiny stream is not learned in one epoch)
  const std::string memory = " --replay-examples 20";
  ASSERT_EQ(std::system((base + memory + " --output " + root + "/full > " + root + "/full.log 2>&1").c_str()), 0)
      << slurp(root + "/full.log");
  const std::string js = slurp(root + "/full/results.json");
  EXPECT_NE(js.find("\"replay_examples\": 20"), std::string::npos) << js;
  // 3 tasks x 20 examples of 16 floats and a label (class-incremental: no masks)
  const auto at = js.find("\"method\": \"replay\", \"seed\": 1");
  ASSERT_NE(at, std::string::npos) << js;
  EXPECT_EQ(std::stod(js.substr(js.find("\"fisher_bytes\": ", at) + 16)), 3 * 20 * (16 * 4 + 4)) << js;
  EXPECT_NE(js.find("\"lambda\": {\"finetune\": 0, \"replay\": 0}"), std::string::npos) << js;
  // replay changes training: its accuracy matrix is not fine-tuning's
  const std::string R = matrices(js);
  const auto cut = R.find('\n');
  ASSERT_NE(cut, std::string::npos);
  EXPECT_NE(R.substr(0, cut), R.substr(cut + 1, R.size() - cut - 2)) << R;
  // replay alone, interrupted after task 2 and resumed: the memory of tasks
  // 1 and 2 is rebuilt, and task 3 ends as in the uninterrupted run
  const std::string alone = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) +
                            " --stream split --scenario class --method replay --lr 0.01" + memory + " --output " +
                            root + "/cut";
  EXPECT_NE(std::system(("HFISHER_CONTINUAL_STOP_AFTER=2 " + alone + " > " + root + "/cut.log 2>&1").c_str()), 0);
  ASSERT_EQ(std::system((alone + " --resume > " + root + "/cut.log 2>&1").c_str()), 0) << slurp(root + "/cut.log");
  EXPECT_NE(slurp(root + "/cut.log").find("resuming"), std::string::npos) << slurp(root + "/cut.log");
  EXPECT_EQ(matrices(slurp(root + "/cut/results.json")), R.substr(cut + 1));
  // a memory larger than a task's training set: refused before any training
  EXPECT_NE(
      std::system((base + " --replay-examples 500 --output " + root + "/big > " + root + "/big.log 2>&1").c_str()), 0);
  EXPECT_NE(slurp(root + "/big.log").find("--replay-examples 500 exceeds"), std::string::npos)
      << slurp(root + "/big.log");
  EXPECT_EQ(slurp(root + "/big.log").find("] task"), std::string::npos) << "trained before refusing";
  fs::remove_all(root);
}

TEST(ContinualDriver, PerOptimizerDefaults) {
  // without --lr / --damping each optimizer runs at the library's defaults,
  // and results.json records the values used
  const std::string root = fresh_root("hfisher_driver_defaults");
  const std::string base = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) + " --method finetune";
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"sgd", {"\"lr\": 0.05,"}},
      {"ngd", {"\"lr\": 0.05,", "\"damping\": 1,"}},
      {"kfac", {"\"lr\": 0.001,", "\"damping\": 0.001,"}}};
  for (const auto& [opt, fields] : cases) {
    const std::string out = root + "/" + opt;
    ASSERT_EQ(std::system((base + " --optimizer " + opt + " --output " + out + " > " + out + ".log 2>&1").c_str()), 0)
        << slurp(out + ".log");
    const std::string js = slurp(out + "/results.json");
    for (const auto& f : fields)
      EXPECT_NE(js.find(f), std::string::npos) << opt << ": " << f << " missing from\n" << js;
  }
  // an explicit value wins
  const std::string out = root + "/ngd_lr";
  ASSERT_EQ(
      std::system(
          (base + " --optimizer ngd --lr 0.01 --damping 0.5 --output " + out + " > " + out + ".log 2>&1").c_str()),
      0)
      << slurp(out + ".log");
  const std::string js = slurp(out + "/results.json");
  EXPECT_NE(js.find("\"lr\": 0.01,"), std::string::npos) << js;
  EXPECT_NE(js.find("\"damping\": 0.5,"), std::string::npos) << js;
  std::filesystem::remove_all(root);
}

TEST(ContinualDriver, LambdaChosenOnValidationData) {
  // --lambda-grid runs every candidate, chooses per method on the held-out
  // validation examples, and reports the chosen runs only
  const std::string root = fresh_root("hfisher_driver_grid");
  const std::string out = root + "/grid";
  const std::string cmd = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) +
                          " --method finetune --method ewc --method online-ewc --validation 100 --lambda-grid 0.1 "
                          "1000 --seeds 2 --output " +
                          out + " > " + root + "/grid.log 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(root + "/grid.log");
  const std::string js = slurp(out + "/results.json");
  EXPECT_NE(js.find("\"validation_examples\": 100, \"lambda_grid\": [0.1, 1000]"), std::string::npos) << js;
  for (const char* m : {"ewc", "online-ewc"}) {
    // the chosen lambda is the candidate with the larger validation ACC
    const std::string tag = std::string("{\"method\": \"") + m + "\", \"validation_ACC\": [";
    const auto p = js.find(tag);
    ASSERT_NE(p, std::string::npos) << m << "\n" << js;
    auto v = numbers(js.substr(p + tag.size(), js.find(']', p) - p - tag.size()));  // validation ACCs
    ASSERT_EQ(v.size(), 2u) << m;
    const auto c = js.find("\"chosen_lambda\": ", p);
    ASSERT_NE(c, std::string::npos) << js;
    v.push_back(std::strtod(js.c_str() + c + 17, nullptr));
    EXPECT_EQ(v[2], v[0] >= v[1] ? 0.1 : 1000) << m;
    // a decay is listed for online EWC only
    EXPECT_EQ(js.find("\"chosen_gamma\"", p) < js.find('}', p), std::string(m) == "online-ewc") << m;
    // the reported runs (two seeds) are the chosen lambda's only
    const std::string run = std::string("{\"method\": \"") + m + "\", \"seed\": ";
    int runs = 0;
    for (auto q = js.find(run); q != std::string::npos; q = js.find(run, q + 1), ++runs) {
      const auto lam = js.find("\"lambda\": ", q);
      EXPECT_EQ(std::strtod(js.c_str() + lam + 10, nullptr), v[2]) << m;
      EXPECT_NE(js.find("\"validation_ACC\": 0.", q), std::string::npos) << m;
    }
    EXPECT_EQ(runs, 2) << m;
  }
  // one checkpoint per candidate and seed; the log names the candidate
  EXPECT_TRUE(std::filesystem::exists(out + "/checkpoints/ewc-lambda1000-seed2.ckpt"));
  EXPECT_TRUE(std::filesystem::exists(out + "/checkpoints/online-ewc-lambda0.1-seed1.ckpt"));
  EXPECT_NE(slurp(root + "/grid.log").find("[ewc@1000    ] task  3/3"), std::string::npos) << slurp(root + "/grid.log");
  // --gamma-grid: online EWC chooses (lambda, gamma) pairs, the others keep --lambda
  const std::string out2 = root + "/gamma";
  ASSERT_EQ(std::system((std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) +
                         " --method ewc --method online-ewc --validation 100 --gamma-grid 0.5 1 --lambda 7 --output " +
                         out2 + " > " + root + "/gamma.log 2>&1")
                            .c_str()),
            0)
      << slurp(root + "/gamma.log");
  const std::string js2 = slurp(out2 + "/results.json");
  EXPECT_NE(js2.find("{\"method\": \"online-ewc\", \"validation_ACC\": ["), std::string::npos) << js2;
  EXPECT_NE(js2.find("\"lambda\": [7, 7], \"gamma\": [0.5, 1]"), std::string::npos) << js2;
  EXPECT_NE(js2.find("{\"method\": \"online-ewc\", \"seed\": 1, \"lambda\": 7, \"gamma\": "), std::string::npos) << js2;
  EXPECT_EQ(js2.find("{\"method\": \"ewc\", \"validation_ACC\""), std::string::npos) << js2;  // nothing to choose
  EXPECT_NE(js2.find("{\"method\": \"ewc\", \"seed\": 1, \"lambda\": 7, \"ACC\""), std::string::npos) << js2;
  EXPECT_TRUE(std::filesystem::exists(out2 + "/checkpoints/online-ewc-lambda7-gamma0.5.ckpt"));
  std::filesystem::remove_all(root);
}

TEST(ContinualDriver, LearningRateGridLeavesDivergedCandidatesOut) {
  // --lr-grid: every method, fine-tuning too, chooses its learning rate on
  // validation data; a learning rate that makes training diverge is reported,
  // never chosen, and does not stop the run
  const std::string root = fresh_root("hfisher_driver_lrgrid");
  const std::string base = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) +
                           " --method finetune --method ewc --optimizer sgd --validation 100";
  const std::string out = root + "/out";
  ASSERT_EQ(std::system((base + " --lr-grid 0.05 1e30 --output " + out + " > " + root + "/lr.log 2>&1").c_str()), 0)
      << slurp(root + "/lr.log");
  const std::string log = slurp(root + "/lr.log");
  EXPECT_NE(log.find("[ewc@lr1e+30 ] diverged: left out of the selection"), std::string::npos) << log;
  EXPECT_NE(log.find("training diverged"), std::string::npos) << log;
  const std::string js = slurp(out + "/results.json");
  EXPECT_NE(js.find("\"lr_grid\": [0.05, 1e+30]"), std::string::npos) << js;
  for (const char* m : {"finetune", "ewc"}) {
    const auto p = js.find(std::string("{\"method\": \"") + m + "\", \"validation_ACC\": [0.");
    ASSERT_NE(p, std::string::npos) << m << "\n" << js;
    const auto e = js.find('}', p);
    const std::string sel = js.substr(p, e - p);
    EXPECT_NE(sel.find(", null], "), std::string::npos) << sel;  // the diverged candidate
    EXPECT_NE(sel.find("\"lr\": [0.05, 1e+30]"), std::string::npos) << sel;
    EXPECT_NE(sel.find("\"chosen_lr\": 0.05"), std::string::npos) << sel;
    // the reported run is the chosen one
    const auto q = js.find(std::string("{\"method\": \"") + m + "\", \"seed\": 1, ");
    ASSERT_NE(q, std::string::npos) << js;
    EXPECT_NE(js.substr(q, js.find("\"R\": ", q) - q).find("\"lr\": 0.05"), std::string::npos) << js.substr(q, 200);
  }
  EXPECT_TRUE(std::filesystem::exists(out + "/checkpoints/finetune-lr0.05.ckpt"));
  EXPECT_TRUE(std::filesystem::exists(out + "/checkpoints/ewc-lr0.05.ckpt"));
  // when every candidate diverges the run fails and says so
  EXPECT_NE(std::system((base + " --lr-grid 1e30 --output " + root + "/all > " + root + "/all.log 2>&1").c_str()), 0);
  EXPECT_NE(slurp(root + "/all.log").find("every candidate diverged"), std::string::npos) << slurp(root + "/all.log");
  // a learning-rate grid chooses on validation data only
  EXPECT_NE(std::system((base.substr(0, base.find(" --validation")) + " --lr-grid 0.05 --output " + root + "/noval > " +
                         root + "/noval.log 2>&1")
                            .c_str()),
            0);
  EXPECT_NE(slurp(root + "/noval.log").find("--validation N"), std::string::npos) << slurp(root + "/noval.log");
  std::filesystem::remove_all(root);
}

TEST(ContinualDriver, ProbeAnchorsReportsAndLeavesTheRunUnchanged) {
  // --probe-anchors prints EWC's accuracies at the penalty's minimiser after
  // every task but the first, and restores the model: the same matrices
  const std::string root = fresh_root("hfisher_driver_probe");
  const std::string base = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) + " --method ewc --lambda 100";
  ASSERT_EQ(std::system((base + " --output " + root + "/plain > " + root + "/plain.log 2>&1").c_str()), 0)
      << slurp(root + "/plain.log");
  ASSERT_EQ(std::system((base + " --probe-anchors --output " + root + "/probe > " + root + "/probe.log 2>&1").c_str()),
            0)
      << slurp(root + "/probe.log");
  const std::string log = slurp(root + "/probe.log");
  EXPECT_EQ(log.find("task  1/3 probe:"), std::string::npos) << log;
  for (const char* line : {"task  2/3 probe: accuracy on tasks 1..2 at theta_t:", "task  3/3 probe:",
                           "at the penalty's minimiser", "adam steps on the penalty alone"})
    EXPECT_NE(log.find(line), std::string::npos) << line << " missing from\n" << log;
  EXPECT_EQ(matrices(slurp(root + "/plain/results.json")), matrices(slurp(root + "/probe/results.json")));
  EXPECT_NE(matrices(slurp(root + "/plain/results.json")), "");
  // Adam's moments carried from task to task: another trajectory from task 2 on
  ASSERT_EQ(
      std::system((base + " --keep-optimizer-state --output " + root + "/keep > " + root + "/keep.log 2>&1").c_str()),
      0)
      << slurp(root + "/keep.log");
  const std::string keep = slurp(root + "/keep/results.json");
  EXPECT_NE(keep.find("\"keep_optimizer_state\": true"), std::string::npos) << keep;
  auto task2 = [&](const std::string& log) {  // task 2's loss (4 decimals; the line's timings always differ)
    const auto p = log.find("task  2/3: loss");
    return p == std::string::npos ? std::string() : log.substr(p, log.find(", learned", p) - p);
  };
  EXPECT_NE(task2(slurp(root + "/plain.log")), "");
  EXPECT_NE(task2(slurp(root + "/keep.log")), task2(slurp(root + "/plain.log")));
  // without EWC there is nothing to probe
  const std::string x = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) +
                        " --method finetune --probe-anchors --output " + root + "/x > " + root + "/x.log 2>&1";
  const int rc = std::system(x.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) != 0) << rc;
  EXPECT_NE(slurp(root + "/x.log").find("add --method ewc"), std::string::npos) << slurp(root + "/x.log");
  std::filesystem::remove_all(root);
}

#ifdef HFISHER_MPIEXEC
// mpirun -np 2: the same accuracy matrices as one process (to rounding: a
// test prediction may flip), and an interrupted two-rank run resumes
TEST(ContinualDriver, TwoRanksMatchOneProcess) {
  namespace fs = std::filesystem;
  const std::string root = fresh_root("hfisher_driver_test_mpi");
  const std::string args = tiny_stream_args(root) + " --method ewc --method kfac-laplace --method hierarchical";
  const std::string one =
      std::string(HFISHER_CONTINUAL_EXE) + args + " --output " + root + "/one > " + root + "/one.log 2>&1";
  const std::string two = std::string(HFISHER_MPIEXEC) + " -np 2 " + HFISHER_CONTINUAL_EXE + args + " --output " +
                          root + "/two > " + root + "/two.log 2>&1";
  ASSERT_EQ(std::system(one.c_str()), 0) << slurp(root + "/one.log");
  ASSERT_EQ(std::system(("HFISHER_CONTINUAL_STOP_AFTER=2 " + two).c_str()) == 0, false) << slurp(root + "/two.log");
  std::string two_resume = two;
  two_resume.replace(two_resume.find(" --output "), 10, " --resume --output ");
  ASSERT_EQ(std::system(two_resume.c_str()), 0) << slurp(root + "/two.log");
  const std::string log = slurp(root + "/two.log");
  EXPECT_NE(log.find("2 rank(s)"), std::string::npos) << log;
  EXPECT_NE(log.find("resuming"), std::string::npos) << log;
  const auto a = numbers(matrices(slurp(root + "/one/results.json")));
  const auto b = numbers(matrices(slurp(root + "/two/results.json")));
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GT(a.size(), 20u);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 0.011) << i;  // at most 2 of 200 test images
  EXPECT_NE(slurp(root + "/two/results.json").find("\"ranks\": 2"), std::string::npos);
  fs::remove_all(root);
}
#endif

namespace {
// `s` as one word of a POSIX shell command line (this test's own std::system)
std::string shell_word(const std::string& s) {
  std::string r = "'";
  for (const char c : s) r += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}
}  // namespace

// An output directory whose name carries shell syntax is only a name: the
// run writes its files there and nothing in the name is executed. An empty
// output, "/" and an unwritable path fail before any training, with a message.
TEST(ContinualDriver, OutputPathIsNeverExecutedAndIsCheckedFirst) {
  namespace fs = std::filesystem;
  const std::string root = fresh_root("hfisher_driver_test_output");
  const std::string base = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) + " --method ewc";
  const std::string evil = root + "/x'; touch " + root + "/PWNED; echo '";
  ASSERT_EQ(std::system((base + " --output " + shell_word(evil) + " > " + root + "/evil.log 2>&1").c_str()), 0)
      << slurp(root + "/evil.log");
  EXPECT_FALSE(fs::exists(root + "/PWNED"));
  EXPECT_TRUE(fs::exists(evil + "/results.json"));
  const std::string gp = slurp(evil + "/plots.gp");
  EXPECT_EQ(gp.find(root), std::string::npos) << "a path was written into the gnuplot script";
  for (const std::string bad : {"''", "/", "/proc/hfisher_cannot_exist"}) {
    const std::string log = root + "/bad.log";
    EXPECT_NE(std::system((base + " --output " + bad + " > " + log + " 2>&1").c_str()), 0) << bad;
    const std::string text = slurp(log);
    EXPECT_NE(text.find("--output"), std::string::npos) << text;
    EXPECT_EQ(text.find("] task"), std::string::npos) << "trained before checking " << bad << ":\n" << text;
  }
  EXPECT_FALSE(fs::exists("/results.json"));
  fs::remove_all(root);
}

// --validation records each task's learning curve (validation accuracy after
// every epoch against seconds of training); --target-accuracy reports the
// time each run needed to reach given validation accuracies, computed from
// that curve. A resumed run carries the finished tasks' curves over.
TEST(ContinualDriver, LearningCurveAndTimeToAccuracy) {
  const std::string root = fresh_root("hfisher_driver_curve");
  const std::string args = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) +
                           " --method finetune --method ewc --epochs 3 --validation 100 --target-accuracy 0 0.6 1";
  ASSERT_EQ(std::system((args + " --output " + root + "/full > " + root + "/full.log 2>&1").c_str()), 0)
      << slurp(root + "/full.log");
  // interrupted after the first task, then resumed
  EXPECT_NE(
      std::system(("HFISHER_CONTINUAL_STOP_AFTER=1 " + args + " --output " + root + "/cut > " + root + "/cut.log 2>&1")
                      .c_str()),
      0);
  ASSERT_EQ(std::system((args + " --resume --output " + root + "/cut > " + root + "/cut.log 2>&1").c_str()), 0)
      << slurp(root + "/cut.log");
  // curve.csv: one row per (method, seed, task, epoch); losses and validation
  // accuracies identical after the resume (the seconds are not)
  auto rows = [&](const std::string& dir) {
    std::istringstream in(slurp(dir + "/curve.csv"));
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "method,seed,task,epoch,train_s,loss,validation_accuracy");
    std::vector<std::vector<std::string>> r;
    while (std::getline(in, line)) {
      std::vector<std::string> f;
      std::istringstream ls(line);
      for (std::string x; std::getline(ls, x, ',');) f.push_back(x);
      EXPECT_EQ(f.size(), 7u) << line;
      r.push_back(f);
    }
    return r;
  };
  const auto full = rows(root + "/full"), cut = rows(root + "/cut");
  ASSERT_EQ(full.size(), 2u * 3 * 3);
  ASSERT_EQ(cut.size(), full.size());
  for (std::size_t i = 0; i < full.size(); ++i) {
    for (int f : {0, 1, 2, 3, 5, 6}) EXPECT_EQ(full[i][f], cut[i][f]) << "row " << i << " field " << f;
    EXPECT_GT(std::stod(full[i][4]), 0.0) << "row " << i;
  }
  // seconds to each target: per run, the sum over the tasks of the seconds
  // at the first epoch whose validation accuracy reached it (null if a task
  // never did), as the driver computed them from the same curve
  const std::string js = slurp(root + "/full/results.json");
  EXPECT_NE(js.find("\"target_accuracy\": [0, 0.6, 1]"), std::string::npos) << js;
  for (const char* m : {"finetune", "ewc"}) {
    std::vector<double> want;
    for (double target : {0.0, 0.6, 1.0}) {
      double sum = 0;
      for (int t = 1; t <= 3; ++t) {
        double at = std::nan("");
        for (const auto& r : full)
          if (r[0] == m && std::stoi(r[2]) == t && std::isnan(at) && std::stod(r[6]) >= target) at = std::stod(r[4]);
        sum += at;
      }
      want.push_back(sum);
    }
    const std::string tag = std::string("{\"method\": \"") + m + "\", \"seed\": 1";
    const std::string key = "\"seconds_to_target\": [";
    const auto p = js.find(key, js.find(tag));
    ASSERT_NE(p, std::string::npos) << js;
    const std::string list = js.substr(p + key.size(), js.find(']', p) - p - key.size());
    std::istringstream ls(list);
    int k = 0;
    for (std::string x; std::getline(ls, x, ','); ++k) {
      ASSERT_LT(k, 3) << list;
      if (std::isnan(want[k]))
        EXPECT_NE(x.find("null"), std::string::npos) << m << " target " << k << ": " << list;
      else  // the file holds 6 significant digits
        EXPECT_NEAR(std::stod(x), want[k], 1e-5 * want[k]) << m << " target " << k << ": " << list;
    }
    EXPECT_EQ(k, 3) << list;
    EXPECT_TRUE(std::isfinite(want[0])) << m;  // every task reaches 0 after its first epoch
  }
  const std::string log = slurp(root + "/full.log");
  EXPECT_NE(log.find("epoch 1/3: loss "), std::string::npos) << log;
  EXPECT_NE(log.find(", validation accuracy 0."), std::string::npos) << log;
  EXPECT_NE(log.find("learning curve: validation accuracy"), std::string::npos) << log;
  EXPECT_NE(log.find("target 0.6000"), std::string::npos) << log;
  std::filesystem::remove_all(root);
}

// Command-line values that used to pass or crash: NaN and infinity, a
// negative seed, an unknown --lambda-for method, --kokkos-threads=0 (SIGABRT
// in Kokkos), a learning rate that makes the weights non-finite (it was
// reported as a result). Each ends with a message and a non-zero exit.
TEST(ContinualDriver, BadValuesFailWithAMessage) {
  const std::string root = fresh_root("hfisher_driver_test_values");
  const std::string base =
      std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) + " --method ewc --output " + root + "/out";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--lr nan", "finite"},
      {"--damping inf", "finite"},
      {"--lambda -nan", "finite"},
      {"--gamma nan", "finite"},
      {"--seed -1", "unsigned"},
      {"--lambda-for bogus=3", "no method 'bogus'"},
      {"--method bogus", "bogus"},
      {"--lambda-for replay=3", "replay has no lambda"},
      {"--lambda-for online-ewc=3", "not run"},
      {"--kokkos-threads=0", "threads"},
      {"--optimizer sgd --lr 1e300", "diverged"},
      {"--optimizer sgd --lr 0.5 --lambda 1e30", "training diverged"},
      {"--probe-anchors --optimizer kfac", "sgd or adam"},
      {"--keep-optimizer-state --optimizer ngd", "sgd's or adam's"},
      {"--lambda-grid 1 10", "never on the test set"},
      {"--gamma-grid 0.5 1", "never on the test set"},
      {"--gamma-grid 0 --validation 100", "not in range"},
      {"--target-accuracy 0.8", "never on the test set"},
      {"--target-accuracy 1.5 --validation 100", "not in range"},
      {"--lambda-grid 1 10 --validation 100 --lambda-for ewc=3", "give one"},
      {"--lambda-grid 1 -1 --validation 100", "not >= 0"},
      {"--validation 600 --overwrite", "leaves no training examples"},
      {"--keep-optimizer-state --resume", "do not hold the optimizer's state"}};
  for (const auto& c : cases) {
    const std::string log = root + "/bad.log";
    const int rc = std::system((base + " " + c.first + " > " + log + " 2>&1").c_str());
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) != 0) << c.first << ": status " << rc;
    const std::string text = slurp(log);
    EXPECT_NE(text.find(c.second), std::string::npos) << c.first << ":\n" << text;
    EXPECT_FALSE(std::filesystem::exists(root + "/out/results.json")) << c.first;
  }
  // more Fisher examples than a task holds: refused before any training,
  // naming the task (the Fisher was quietly cut to the task's size before)
  {
    std::string args = base;
    const std::string given = "--fisher-examples 40";
    args.replace(args.find(given), given.size(), "--fisher-examples 700");
    const int rc = std::system((args + " > " + root + "/bad.log 2>&1").c_str());
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) != 0) << "status " << rc;
    const std::string text = slurp(root + "/bad.log");
    EXPECT_NE(text.find("--fisher-examples 700 exceeds the 600 training examples of task 1"), std::string::npos)
        << text;
    EXPECT_EQ(text.find("] task"), std::string::npos) << "trained before refusing";
  }
  std::filesystem::remove_all(root);
}

// A checkpoint with one flipped bit is refused (checksum), not resumed.
TEST(ContinualDriver, CorruptCheckpointIsRefused) {
  const std::string root = fresh_root("hfisher_driver_test_ckpt");
  const std::string cmd = std::string(HFISHER_CONTINUAL_EXE) + tiny_stream_args(root) + " --method ewc --output " +
                          root + "/out > " + root + "/run.log 2>&1";
  EXPECT_NE(std::system(("HFISHER_CONTINUAL_STOP_AFTER=1 " + cmd).c_str()), 0);
  const std::string ckpt = root + "/out/checkpoints/ewc.ckpt";
  std::string bytes = slurp(ckpt);
  ASSERT_GT(bytes.size(), 200u);
  bytes[bytes.size() / 2] = char(bytes[bytes.size() / 2] ^ 0x10);
  { std::ofstream(ckpt, std::ios::binary) << bytes; }
  std::string resume = cmd;
  resume.replace(resume.find(" --output "), 10, " --resume --output ");
  EXPECT_NE(std::system(resume.c_str()), 0);
  const std::string text = slurp(root + "/run.log");
  EXPECT_NE(text.find("checksum"), std::string::npos) << text;
  std::filesystem::remove_all(root);
}

// --model cnn and --model vit (nn::small_cnn, nn::small_vit on the 4 x 4
// images): every penalty and replay run, learn the tasks, report the model,
// and a run interrupted after a task resumes to the uninterrupted result
// (the checkpoint holds the Sequential); options that only fit the MLP are
// refused before any training.
TEST(ContinualDriver, ConvolutionAndTransformerModels) {
  namespace fs = std::filesystem;
  const std::string root = fresh_root("hfisher_driver_test_models");
  const std::string exe = std::string(HFISHER_CONTINUAL_EXE) + " --data " + root +
                          "/data --tasks 2 --train-examples 600 --test-examples 200 --fisher-examples 40 --leaf 32 "
                          "--batch 32 --epochs 2";
  const std::string cnn = exe +
                          " --model cnn --method finetune --method ewc --method online-ewc --method "
                          "kfac-laplace --method hierarchical --method replay --replay-examples 50";
  ASSERT_EQ(std::system((cnn + " --output " + root + "/cnn > " + root + "/cnn.log 2>&1").c_str()), 0)
      << slurp(root + "/cnn.log");
  const std::string log = slurp(root + "/cnn.log");
  EXPECT_NE(log.find("CNN (conv 5x5x16 pad 2"), std::string::npos) << log;
  const std::string js = slurp(root + "/cnn/results.json");
  for (const char* field : {"\"model\": \"cnn\"", "\"model_layers\": \"CNN (conv 5x5x16", "\"widths\": []",
                            "\"hierarchical_structure\": \"hodlr\""})
    EXPECT_NE(js.find(field), std::string::npos) << field << " missing from\n" << js;
  // each method learned each task well above chance (0.1: ten classes)
  for (const char* m : {"finetune", "ewc", "online-ewc", "kfac-laplace", "hierarchical", "replay"}) {
    const auto at = js.find("\"method\": \"" + std::string(m) + "\", \"seed\": 1");
    ASSERT_NE(at, std::string::npos) << m;
    const auto r =
        numbers(js.substr(js.find("\"R\": ", at), js.find("]]", js.find("\"R\": ", at)) - js.find("\"R\": ", at)));
    ASSERT_EQ(r.size(), 4u) << m;
    EXPECT_GT(r[0], 0.4) << m << ": task 1 after task 1";
    EXPECT_GT(r[3], 0.4) << m << ": task 2 after task 2";
  }
  // the penalties keep a Fisher of the CNN's parameters (replay: its examples)
  for (const char* m : {"ewc", "kfac-laplace", "hierarchical", "replay"})
    EXPECT_TRUE(fs::exists(root + "/cnn/R_" + std::string(m) + ".dat")) << m;
  // interrupted after task 1, resumed: the same matrices
  const std::string part = exe + " --model cnn --method kfac-laplace --method hierarchical";
  ASSERT_EQ(std::system((part + " --output " + root + "/full > " + root + "/full.log 2>&1").c_str()), 0)
      << slurp(root + "/full.log");
  EXPECT_NE(
      std::system(("HFISHER_CONTINUAL_STOP_AFTER=1 " + part + " --output " + root + "/cut > " + root + "/cut.log 2>&1")
                      .c_str()),
      0);
  ASSERT_EQ(std::system((part + " --resume --output " + root + "/cut > " + root + "/cut.log 2>&1").c_str()), 0)
      << slurp(root + "/cut.log");
  EXPECT_NE(slurp(root + "/cut.log").find("resuming"), std::string::npos);
  EXPECT_EQ(matrices(slurp(root + "/cut/results.json")), matrices(slurp(root + "/full/results.json")));
  // the vision transformer, trained by K-FAC
  const std::string vit = exe + " --model vit --optimizer kfac --method ewc --method hierarchical";
  ASSERT_EQ(std::system((vit + " --output " + root + "/vit > " + root + "/vit.log 2>&1").c_str()), 0)
      << slurp(root + "/vit.log");
  EXPECT_NE(slurp(root + "/vit.log").find("vision transformer (1x1 patches -> 16 tokens"), std::string::npos)
      << slurp(root + "/vit.log");
  EXPECT_NE(slurp(root + "/vit/results.json").find("\"model\": \"vit\""), std::string::npos);
  // options of the MLP are refused, before any training, and so are images
  // whose sides are not multiples of 4 (6 x 6 here)
  fs::create_directories(root + "/odd");
  {
    auto img = hfisher_test::idx_header(3, {8, 6, 6}), lab = hfisher_test::idx_header(1, {8});
    for (int i = 0; i < 8; ++i) {
      for (int p = 0; p < 36; ++p) img.push_back((unsigned char)(p * 7 + i));
      lab.push_back((unsigned char)i);
    }
    for (const char* stem : {"train", "t10k"}) {
      write_gz(root + "/odd/" + stem + "-images-idx3-ubyte.gz", img);
      write_gz(root + "/odd/" + stem + "-labels-idx1-ubyte.gz", lab);
    }
  }
  const std::string odd = std::string(HFISHER_CONTINUAL_EXE) + " --data " + root +
                          "/odd --tasks 2 --train-examples 8 --test-examples 8 --fisher-examples 2 --batch 4";
  for (const auto& c : std::vector<std::pair<std::string, std::string>>{
           {exe + " --model cnn --hidden 12", "--hidden sets the widths of --model mlp"},
           {exe + " --model vit --hierarchical-structure multilevel", "takes linear layers only"},
           {odd + " --model cnn", "multiples of 4"},
           {odd + " --model vit", "multiples of 4"}}) {
    const int rc =
        std::system((c.first + " --method ewc --output " + root + "/bad > " + root + "/bad.log 2>&1").c_str());
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) != 0) << c.first << ": status " << rc;
    const std::string text = slurp(root + "/bad.log");
    EXPECT_NE(text.find(c.second), std::string::npos) << c.first << ":\n" << text;
    EXPECT_EQ(text.find("] task"), std::string::npos) << c.first << ": trained before refusing";
  }
  fs::remove_all(root);
}
