#include "runner/check_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct CheckOutput {
  int code;
  std::string out;
  std::string err;
};

CheckOutput Check(const CheckOptions& options) {
  std::ostringstream out, err;
  int code = RunCheck(options, out, err);
  return {code, out.str(), err.str()};
}

TEST(CheckCommandTest, ValidJobsListTheirFunctions) {
  testing::TempDir dir;
  dir.Write("a.yaml", "name: guava\nnode: ubuntu && gcc\nsteps: [{run: make}]\n");
  dir.Write("b.yaml", "name: plain\nsteps: [{run: make}]\n");
  auto r = Check({.paths = {dir.path()}, .node = "build-01", .labels = {"ubuntu", "gcc"}});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("node build-01 (labels: build-01 gcc ubuntu)"));
  EXPECT_THAT(r.out, HasSubstr("guava  (" + (dir.path() / "a.yaml").string() +
                               ":1)\n  build:guava\n  build:guava:ubuntu\n  build:guava:gcc\n"));
  EXPECT_THAT(r.out,
              HasSubstr("plain  (" + (dir.path() / "b.yaml").string() + ":1)\n  build:plain\n"));
  EXPECT_THAT(r.out, HasSubstr("2 jobs valid in 2 files; 4 functions to register"));
}

TEST(CheckCommandTest, JobThatDoesNotMatchSaysSo) {
  testing::TempDir dir;
  dir.Write("a.yaml", "name: armonly\nnode: arm\nsteps: [{run: make}]\n");
  auto r = Check({.paths = {dir.path()}, .node = "build-01", .labels = {"x86"}});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("armonly  ("));
  EXPECT_THAT(r.out, HasSubstr("registers nothing on this node: it needs 'arm'"));
  EXPECT_THAT(r.out, HasSubstr("0 functions to register"));
}

TEST(CheckCommandTest, EveryErrorIsListedWithPosition) {
  testing::TempDir dir;
  auto a = dir.Write("a.yaml", "name: a\nsteps:\n  - run: x\n    retires: 1\n");
  auto b = dir.Write("b.yaml", "name: b\nsteps: []\n");
  dir.Write("c.yaml", "name: c\nsteps: [{run: ok}]\n");
  auto r = Check({.paths = {dir.path()}, .node = "n"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(a.string() + ":4:5: error: unknown key 'retires' in a step; did "
                                            "you mean 'retries'?\n"));
  EXPECT_THAT(r.err, HasSubstr(b.string() + ":2:8: error: steps: a job needs at least one step"));
  EXPECT_THAT(r.err, HasSubstr("2 errors in 2 files"));
  // The valid job is still shown.
  EXPECT_THAT(r.out, HasSubstr("c  ("));
  EXPECT_THAT(r.out, Not(HasSubstr("build:a")));
}

TEST(CheckCommandTest, EmptyDirectorySaysNoJobFiles) {
  testing::TempDir dir;
  auto r = Check({.paths = {dir.path()}, .node = "n"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("no job files (*.yaml, *.yml) found"));
}

}  // namespace
}  // namespace gearrun::runner
