// The real `gearrun` binary as a user runs it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/command.h"

namespace gearrun {
namespace {

using ::testing::HasSubstr;
using testing::RunCommand;

const std::string kGearrun = GEARRUN_BINARY;
const std::string kExamples = std::string(GEARRUN_SOURCE_DIR) + "/examples/jobs";

TEST(CliTest, HelpExplainsTheCommands) {
  auto r = RunCommand({kGearrun, "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("check"));
  EXPECT_THAT(r.out, HasSubstr("Exit codes"));
  auto c = RunCommand({kGearrun, "check", "--help"});
  EXPECT_EQ(c.exit_code, 0);
  EXPECT_THAT(c.out, HasSubstr("--node"));
  EXPECT_THAT(c.out, HasSubstr("--labels"));
}

TEST(CliTest, VersionPrints) {
  auto r = RunCommand({kGearrun, "--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("gearrun "));
}

TEST(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCommand({kGearrun}).exit_code, 2);
  EXPECT_EQ(RunCommand({kGearrun, "frobnicate"}).exit_code, 2);
  auto r = RunCommand({kGearrun, "check", "--no-such-flag"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--no-such-flag"));
}

TEST(CliTest, CheckExamplesExitsZero) {
  auto r =
      RunCommand({kGearrun, "check", kExamples, "--node", "build-01", "--labels", "linux,ubuntu"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("build:library:linux"));
  EXPECT_THAT(r.out, HasSubstr("build:hello"));
}

TEST(CliTest, CheckBadFileExitsOneWithPosition) {
  testing::TempDir dir;
  auto bad = dir.Write("bad.yaml", "name: x\nsteps:\n  - run: y\n    timeout: soon\n");
  auto r = RunCommand({kGearrun, "check", bad.string(), "--node", "n"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(bad.string() + ":4:14: error: timeout: expected a duration"));
}

}  // namespace
}  // namespace gearrun
