// Fuzzing the jobs layer with hostile input, bounded and deterministic by seed
// (tests/support/fuzz.h): job files through the loader, label expressions, and request
// workloads through binding. Whatever the input, the code returns: a value or an error
// (with a position, for job files), never a crash, a hang or an unbounded allocation. Run
// under the ASan/UBSan build, which turns any memory error into a failure.
#include "tests/support/fuzz.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "jobs/labels.h"
#include "jobs/loader.h"
#include "jobs/request.h"

namespace gearrun::jobs {
namespace {

std::vector<std::string> Corpus() {
  std::vector<std::string> corpus = testing::ExampleJobFiles();
  corpus.push_back("a: &a [b, *a]\n");
  corpus.push_back("x: &x [1, 2]\ny: &y [*x, *x, *x]\nz: [*y, *y, *y]\n");
  corpus.push_back("name: n\nnode: '(a || b) && !c -> d <-> e'\nsteps: [{run: x}]\n");
  return corpus;
}

const std::vector<std::string> kYamlWords = {"&a ",
                                             "*a",
                                             "&b ",
                                             "*b",
                                             "[",
                                             "]",
                                             "{",
                                             "}",
                                             ": ",
                                             "- ",
                                             "? ",
                                             "!tag ",
                                             "!!str ",
                                             "\n",
                                             "---\n",
                                             "...\n",
                                             "'",
                                             "\"",
                                             "\t",
                                             std::string(1, '\0'),
                                             "|\n",
                                             ">-\n",
                                             "%YAML 1.2\n",
                                             "<<: *a\n",
                                             "  ",
                                             "#",
                                             "\\u0000",
                                             "\xff\xfe",
                                             "${X}",
                                             "${",
                                             "name: ",
                                             "steps: ",
                                             "run: ",
                                             "node: ",
                                             "((",
                                             "!!",
                                             " && ",
                                             " || ",
                                             "retries: 99999999999",
                                             "timeout: -1s"};

TEST(LoaderFuzzTest, AnyMutationOfAJobFileLoadsOrFailsWithAPosition) {
  auto corpus = Corpus();
  testing::Mutator m(testing::FuzzSeed());
  auto start = std::chrono::steady_clock::now();
  int iterations = testing::FuzzIterations(1500);
  int rejected = 0;
  for (int i = 0; i < iterations; ++i) {
    std::string text = m.Mutate(corpus[m.Below(corpus.size())], kYamlWords);
    auto report = LoadJobText(text, "fuzz.yaml");
    for (const auto& e : report.errors) {
      ASSERT_FALSE(e.message.empty()) << "iteration " << i;
      ASSERT_EQ(e.file, "fuzz.yaml");
      ASSERT_GE(e.line, 0);
      ASSERT_GE(e.column, 0);
    }
    rejected += report.ok() ? 0 : 1;
    // Feed interesting results back, as a coverage-guided fuzzer would with its corpus.
    if (report.ok() && !report.jobs.empty() && corpus.size() < 200) corpus.push_back(text);
    if (std::chrono::steady_clock::now() - start > testing::FuzzTimeBudget()) break;
  }
  EXPECT_GT(rejected, 0);  // the mutations do reach the error paths
}

TEST(LoaderFuzzTest, RandomStructuresOfAnchorsAndAliasesStayBounded) {
  testing::Mutator m(testing::FuzzSeed() + 1);
  auto start = std::chrono::steady_clock::now();
  int iterations = testing::FuzzIterations(400);
  for (int i = 0; i < iterations; ++i) {
    // Levels of anchored lists, each made of aliases to earlier ones, some to itself.
    std::string text;
    std::size_t levels = 1 + m.Below(12);
    for (std::size_t level = 0; level < levels; ++level) {
      text += "l" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
      std::size_t items = 1 + m.Below(12);
      for (std::size_t k = 0; k < items; ++k) {
        if (k) text += ", ";
        std::size_t target = m.Below(level + 1);
        text += level == 0 || m.OneIn(6) ? "x" : "*a" + std::to_string(target);
      }
      text += "]\n";
    }
    auto report = LoadJobText(text, "aliases.yaml");
    ASSERT_FALSE(report.ok()) << text;  // never a job, often over a limit
    if (std::chrono::steady_clock::now() - start > testing::FuzzTimeBudget()) break;
  }
}

TEST(LabelFuzzTest, AnyExpressionParsesOrFailsAndEvaluates) {
  const std::vector<std::string> words = {"a",   "b", "\"x y\"", "(", ")", "!", "&&", "||", "->",
                                          "<->", " ", "&",       "|", "<", ">", "\"", "-"};
  testing::Mutator m(testing::FuzzSeed() + 2);
  LabelSet labels{"a", "x y"};
  auto start = std::chrono::steady_clock::now();
  int iterations = testing::FuzzIterations(20000);
  for (int i = 0; i < iterations; ++i) {
    std::string text;
    std::size_t length = m.OneIn(20) ? m.Below(5000) : m.Below(40);
    for (std::size_t k = 0; k < length; ++k) text += words[m.Below(words.size())];
    if (m.OneIn(4)) text = m.Mutate(text, words);
    auto expr = LabelExpr::Parse(text);
    if (expr) {
      (void)expr->Matches(labels);
    } else {
      ASSERT_GE(expr.error().offset, 0);
      ASSERT_LE(static_cast<std::size_t>(expr.error().offset), text.size());
    }
    if (std::chrono::steady_clock::now() - start > testing::FuzzTimeBudget()) break;
  }
}

TEST(RequestFuzzTest, AnyWorkloadBindsOrIsABadRequestOnOneLine) {
  auto report = LoadJobText(R"(
name: fuzz
parameters:
  A: {default: x}
  B: {choices: [one, two]}
  S: {secret: true}
  R: {required: true}
steps: [{run: 'true'}]
)",
                            "fuzz.yaml");
  ASSERT_TRUE(report.ok());
  const JobSpec& job = report.jobs.at(0);
  const std::vector<std::string> corpus = {
      R"({"R": "1"})", R"({"R": "1", "A": "y", "B": "two", "S": "s3cret"})",
      R"({"R": 1, "ZUUL_UUID": "u", "OFFLINE_NODE_WHEN_COMPLETE": true, "X": null})",
      R"({"R": "\u00e9\ud83d\ude00", "B": "one"})"};
  const std::vector<std::string> words = {"{",
                                          "}",
                                          "[",
                                          "]",
                                          ",",
                                          ":",
                                          "\"",
                                          "\\",
                                          "\\u0000",
                                          "null",
                                          "true",
                                          "1e999",
                                          "-0",
                                          "\xc3\x28",
                                          std::string(1, '\0'),
                                          "\"PATH\": \"/\"",
                                          "\"R\":",
                                          " ",
                                          "\n"};
  testing::Mutator m(testing::FuzzSeed() + 3);
  auto start = std::chrono::steady_clock::now();
  int iterations = testing::FuzzIterations(20000);
  for (int i = 0; i < iterations; ++i) {
    std::string workload = m.Mutate(corpus[m.Below(corpus.size())], words);
    auto bound = BindRequest(job, workload, RequestPolicy{});
    if (!bound) {
      ASSERT_EQ(bound.error().code, ErrorCode::kBadRequest);
      for (char c : bound.error().message) {
        ASSERT_TRUE(c >= 0x20 && c < 0x7f) << "unprintable byte in: " << bound.error().message;
      }
      continue;
    }
    // What binds can start a build: every value fits an environment variable.
    for (const auto& [name, value] : bound->parameters) {
      ASSERT_TRUE(IsValidVariableName(name)) << name;
      ASSERT_EQ(value.find('\0'), std::string::npos);
      ASSERT_LE(name.size() + 1 + value.size(), kMaxVariableBytes);
    }
    if (std::chrono::steady_clock::now() - start > testing::FuzzTimeBudget()) break;
  }
}

}  // namespace
}  // namespace gearrun::jobs
