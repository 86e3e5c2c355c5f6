#include "sandbox/reaper.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/container.h"
#include "tests/sandbox/test_util.h"

namespace gearrun::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::Running;
using testing::Shell;
using testing::StringSink;
using testing::WaitFor;

bool IsOurZombie(pid_t pid) {
  auto stat = ReadProcStat(pid);
  return stat && stat->state == 'Z' && stat->ppid == ::getpid();
}

void SleepInChild(long nanoseconds) {
  timespec delay{0, nanoseconds};
  while (::nanosleep(&delay, &delay) != 0) {
  }
}

TEST(ReaperTest, BecomesSubreaper) {
  ASSERT_TRUE(BecomeSubreaper());
  EXPECT_TRUE(IsSubreaper());
}

TEST(ReaperTest, ReapsAnOrphanedGrandchild) {
  ASSERT_TRUE(BecomeSubreaper());
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls in the forked test process.
    pid_t grandchild = ::fork();
    if (grandchild == 0) {
      SleepInChild(200'000'000);
      ::_exit(0);
    }
    (void)::write(fds[1], &grandchild, sizeof grandchild);
    ::_exit(0);  // orphans the grandchild: it is re-parented to us, the subreaper
  }
  ::close(fds[1]);
  pid_t grandchild = -1;
  ASSERT_EQ(::read(fds[0], &grandchild, sizeof grandchild),
            static_cast<ssize_t>(sizeof grandchild));
  ::close(fds[0]);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);

  ASSERT_TRUE(WaitFor([&] { return IsOurZombie(grandchild); })) << "orphan re-parented to us";
  EXPECT_EQ(ReapOrphans(), 1);
  EXPECT_FALSE(ReadProcStat(grandchild).has_value()) << "no zombie left";
}

TEST(ReaperTest, NeverReapsARegisteredChild) {
  // The registered child is forked first, so waitid(P_ALL, WNOWAIT) names it first: the
  // reaper has to look past it.
  ChildRegistration registration;
  pid_t registered;
  {
    SpawnGuard guard;
    registered = ::fork();
    ASSERT_GE(registered, 0);
    if (registered == 0) ::_exit(7);
    registration = ChildRegistration(guard, registered);
  }
  pid_t unregistered = ::fork();
  ASSERT_GE(unregistered, 0);
  if (unregistered == 0) ::_exit(0);
  ASSERT_TRUE(WaitFor([&] { return IsOurZombie(registered) && IsOurZombie(unregistered); }));

  EXPECT_EQ(ReapOrphans(), 1);
  EXPECT_FALSE(ReadProcStat(unregistered).has_value());
  EXPECT_TRUE(IsOurZombie(registered)) << "left for its owner";
  EXPECT_EQ(ReapOrphans(), 0);

  int status = 0;
  ASSERT_EQ(::waitpid(registered, &status, 0), registered);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7) << "the owner still gets the exit status";
}

TEST(ReaperTest, ConcurrentBuildsKeepTheirOwnExitStatuses) {
  ASSERT_TRUE(BecomeSubreaper());
  constexpr int kBuilds = 4;
  constexpr int kSteps = 25;
  std::atomic<bool> done{false};
  std::atomic<int> reaped{0};
  // Orphans (the background sleeps) are reaped concurrently with the steps' own waits.
  std::thread reaper([&] {
    while (!done) {
      reaped += ReapOrphans();
      std::this_thread::sleep_for(1ms);
    }
  });
  std::vector<std::thread> builds;
  std::vector<std::string> failures(kBuilds);
  for (int b = 0; b < kBuilds; ++b) {
    builds.emplace_back([&, b] {
      ContainmentMode mode = b % 2 == 0 && testing::MachineHasCgroup2()
                                 ? ContainmentMode::kCgroup
                                 : ContainmentMode::kProcessGroup;
      auto container = Container::Create({.mode = mode});
      auto token = CancelToken::Create();
      if (!container || !token) {
        failures[static_cast<std::size_t>(b)] = "setup failed";
        return;
      }
      for (int i = 0; i < kSteps; ++i) {
        StringSink sink;
        int code = (b * kSteps + i) % 250;
        auto outcome = container->Run(Shell("(sleep 0.01; exit 0) & exit " + std::to_string(code)),
                                      sink, *token);
        if (!outcome || outcome->ending != Outcome::Ending::kExited || outcome->exit_code != code) {
          failures[static_cast<std::size_t>(b)] += "step " + std::to_string(i) + " wrong outcome; ";
        }
      }
      DiscardSink discard;
      (void)container->KillAll({.signal = SIGKILL, .grace = 0ms}, discard);
    });
  }
  for (std::thread& build : builds) build.join();
  done = true;
  reaper.join();
  for (int b = 0; b < kBuilds; ++b) EXPECT_EQ(failures[static_cast<std::size_t>(b)], "");
  reaped += ReapOrphans();
  EXPECT_TRUE(WaitFor([] {
    ReapOrphans();
    return testing::OurZombies().empty();
  }));
}

}  // namespace
}  // namespace gearrun::sandbox
