// `gearrun check` on fuzzed job files (tests/support/fuzz.h): whatever the files hold, it
// answers 0 or 1 and names every error's file, line and column. Deterministic by seed.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "runner/check_command.h"
#include "tests/support/command.h"
#include "tests/support/fuzz.h"

namespace gearrun::runner {
namespace {

using namespace std::chrono_literals;

TEST(CheckFuzzTest, AnyJobFileIsCheckedWithoutCrashing) {
  const std::vector<std::string> corpus = testing::ExampleJobFiles();
  const std::vector<std::string> words = {"&a ", "*a",    "[", "]",      "{",  "}", ": ",   "- ",
                                          "\n",  "---\n", "'", "node: ", "((", "!", " && ", "\t"};
  testing::Mutator m(testing::FuzzSeed() + 5);
  testing::TempDir dir;
  auto start = std::chrono::steady_clock::now();
  int iterations = testing::FuzzIterations(200);
  for (int i = 0;
       i < iterations && std::chrono::steady_clock::now() - start < testing::FuzzTimeBudget();
       ++i) {
    std::filesystem::remove_all(dir.path() / "jobs");
    std::size_t files = 1 + m.Below(3);
    for (std::size_t f = 0; f < files; ++f) {
      dir.Write("jobs/f" + std::to_string(f) + ".yaml",
                m.Mutate(corpus[m.Below(corpus.size())], words));
    }
    std::ostringstream out;
    std::ostringstream err;
    int code =
        RunCheck({.paths = {dir.path() / "jobs"}, .node = "n", .labels = {"linux"}}, out, err);
    ASSERT_TRUE(code == 0 || code == 1) << code;
    if (code == 1) {
      ASSERT_NE(err.str().find(dir.path().string() + "/jobs/f"), std::string::npos) << err.str();
    }
  }
}

}  // namespace
}  // namespace gearrun::runner
