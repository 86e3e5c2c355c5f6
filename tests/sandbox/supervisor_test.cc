// The reports between the runner and its supervisor (sandbox/supervisor.h). The supervisor
// itself is the gearrun binary's `supervise` command: tests/integration/hardening_test.cc
// kills gearrun with SIGKILL and watches it end the builds.
#include "sandbox/supervisor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gearrun::sandbox {
namespace {

using ::testing::ElementsAre;

TEST(SupervisorTest, ReportsArriveInPiecesAndTheLastWordCounts) {
  SupervisedBuild a{.cookie_variable = "GEARRUN_BUILD_COOKIE=aa",
                    .cgroup_v2 = "/sys/fs/cgroup/x/gearrun-1/a",
                    .cgroup_v1 = {"/sys/fs/cgroup/memory/gearrun-1/a", "/pids/gearrun-1/a"}};
  SupervisedBuild b{.cookie_variable = "GEARRUN_BUILD_COOKIE=bb"};
  std::string stream =
      EncodeReport('+', a) + EncodeReport('+', b) + EncodeReport('-', a) + EncodeReport('+', a);
  std::vector<SupervisedBuild> builds;
  std::string buffer;
  for (char c : stream) {  // one byte at a time: a pipe may split a report anywhere
    buffer.push_back(c);
    ApplyReports(buffer, builds);
  }
  EXPECT_TRUE(buffer.empty());
  ASSERT_EQ(builds.size(), 2u);
  EXPECT_EQ(builds[0].cookie_variable, "GEARRUN_BUILD_COOKIE=bb");
  EXPECT_TRUE(builds[0].cgroup_v2.empty());
  EXPECT_EQ(builds[1].cookie_variable, a.cookie_variable);
  EXPECT_EQ(builds[1].cgroup_v2, a.cgroup_v2);
  EXPECT_THAT(builds[1].cgroup_v1, ElementsAre(a.cgroup_v1[0], a.cgroup_v1[1]));
  buffer = EncodeReport('-', b);
  ApplyReports(buffer, builds);
  ASSERT_EQ(builds.size(), 1u);
}

TEST(SupervisorTest, WithoutASupervisorReportsGoNowhere) {
  EXPECT_FALSE(SupervisorRunning());
  SuperviseBuild({.cookie_variable = "GEARRUN_BUILD_COOKIE=cc"});
  ForgetBuild("GEARRUN_BUILD_COOKIE=cc");
}

}  // namespace
}  // namespace gearrun::sandbox
