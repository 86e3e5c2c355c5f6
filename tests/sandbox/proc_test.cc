// The /proc helpers that are pure functions of a snapshot.
#include "sandbox/proc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gearrun::sandbox {
namespace {

using ::testing::UnorderedElementsAre;

ProcStat Stat(pid_t pid, pid_t ppid) { return ProcStat{.pid = pid, .ppid = ppid}; }

TEST(ProcTest, DescendantsFollowParentsAndKeepOrphansOfATornSnapshot) {
  std::vector<ProcStat> stats = {Stat(1, 0), Stat(2, 0), Stat(100, 1), Stat(200, 100),
                                 Stat(300, 200), Stat(301, 300), Stat(400, 1), Stat(401, 400),
                                 // Its parent exited while the snapshot was taken.
                                 Stat(500, 499)};
  EXPECT_THAT(Descendants(stats, 100), UnorderedElementsAre(200, 300, 301, 500));
  EXPECT_THAT(Descendants(stats, 300), UnorderedElementsAre(301, 500));
  // A container's PID 1.
  EXPECT_THAT(Descendants(stats, 1), UnorderedElementsAre(100, 200, 300, 301, 400, 401, 500));
}

}  // namespace
}  // namespace gearrun::sandbox
