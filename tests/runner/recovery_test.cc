#include "runner/recovery.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "runner/clock.h"
#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

BuildRecord Running(const std::string& job, std::int64_t number, std::string start) {
  BuildRecord r;
  r.job = job;
  r.number = number;
  r.result = Result::kRunning;
  r.runner_pid = ::getpid();
  r.runner_start = std::move(start);
  return r;
}

TEST(RecoveryTest, ProcessStartIdNamesOneProcess) {
  std::string self = ProcessStartId(::getpid());
  EXPECT_NE(self.find('/'), std::string::npos) << self;
  EXPECT_EQ(ProcessStartId(::getpid()), self);
  EXPECT_NE(ProcessStartId(1), self);
  EXPECT_EQ(ProcessStartId(0), "");
}

// In a container gearrun is PID 1 at every start: a build of an earlier PID 1 is lost,
// not "still running in this process".
TEST(RecoveryTest, AReusedPidDoesNotKeepALostBuildRunning) {
  testing::TempDir dir;
  BuildStore store(dir.path());
  ASSERT_TRUE(store.NextNumber("old"));
  ASSERT_TRUE(store.Write(Running("old", 1, "another-boot/12345")));
  ASSERT_TRUE(store.NextNumber("mine"));
  ASSERT_TRUE(store.Write(Running("mine", 1, ProcessStartId(::getpid()))));
  SystemClock clock;
  auto lost = RecoverLostBuilds(store, clock);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].record.job, "old");
  EXPECT_EQ(store.Read("old", 1)->result, Result::kLost);
  EXPECT_EQ(store.Read("mine", 1)->result, Result::kRunning);
}

}  // namespace
}  // namespace gearrun::runner
