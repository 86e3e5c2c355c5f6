#include "jobs/functions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "jobs/loader.h"

namespace gearrun::jobs {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

JobSpec Job(std::string name, std::string node_expr) {
  std::string yaml = "name: " + name + "\n";
  if (!node_expr.empty()) yaml += "node: \"" + node_expr + "\"\n";
  yaml += "steps: [{run: 'true'}]\n";
  auto report = LoadJobText(yaml, "test.yaml");
  EXPECT_TRUE(report.ok()) << report.errors.front().ToString();
  return report.jobs.front();
}

const LabelSet kNode = MakeNodeLabels("build-01", {"ubuntu", "gcc"});

TEST(FunctionNamesTest, ContractExampleAnd) {
  EXPECT_THAT(FunctionNames(Job("P", "ubuntu && gcc"), kNode),
              ElementsAre("build:P", "build:P:ubuntu", "build:P:gcc"));
}

TEST(FunctionNamesTest, ContractExampleOr) {
  EXPECT_THAT(FunctionNames(Job("P", "ubuntu || arm"), kNode),
              ElementsAre("build:P", "build:P:ubuntu"));
}

TEST(FunctionNamesTest, NoExpressionRegistersOnlyThePlainName) {
  EXPECT_THAT(FunctionNames(Job("P", ""), kNode), ElementsAre("build:P"));
}

TEST(FunctionNamesTest, NonMatchingExpressionRegistersNothing) {
  EXPECT_THAT(FunctionNames(Job("P", "arm"), kNode), IsEmpty());
  EXPECT_THAT(FunctionNames(Job("P", "ubuntu && !gcc"), kNode), IsEmpty());
}

TEST(FunctionNamesTest, NodeNameCountsAsALabel) {
  EXPECT_THAT(FunctionNames(Job("P", "build-01"), kNode),
              ElementsAre("build:P", "build:P:build-01"));
}

TEST(FunctionNamesTest, NegatedAtomsOnTheNodeAreListedAsJenkinsDoes) {
  // Jenkins' plugin intersects Label.listAtoms() (negated atoms included) with the node's
  // labels; the expression matches through `ubuntu`.
  EXPECT_THAT(FunctionNames(Job("P", "!gcc || ubuntu"), kNode),
              ElementsAre("build:P", "build:P:gcc", "build:P:ubuntu"));
}

TEST(FunctionNamesTest, AllJobsSortedAndUnique) {
  std::vector<JobSpec> jobs = {Job("b", ""), Job("a", "gcc"), Job("c", "arm")};
  EXPECT_THAT(FunctionNames(jobs, kNode), ElementsAre("build:a", "build:a:gcc", "build:b"));
}

}  // namespace
}  // namespace gearrun::jobs
