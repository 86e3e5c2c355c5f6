// Container::Create(): choosing the containment, falling back, naming, cgroup directories and
// build-wide limits, and what happens to a build when its Container goes away.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "sandbox/container.h"
#include "sandbox/reaper.h"
#include "tests/sandbox/test_util.h"

namespace gearrun::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::ReadFileOrEmpty;
using testing::ReadPid;
using testing::Running;
using testing::Shell;
using testing::StringSink;
using testing::TempDir;
using testing::WaitFor;

std::string ProcessDirName() { return "gearrun-" + std::to_string(::getpid()); }

#define SKIP_WITHOUT_CGROUP2()                                  \
  if (!testing::MachineHasCgroup2()) {                          \
    GTEST_SKIP() << "no cgroup2 mount in /proc/self/mountinfo"; \
  }

TEST(ContainerCreateTest, AutoUsesCgroupWhenAvailable) {
  SKIP_WITHOUT_CGROUP2();
  std::filesystem::path dir;
  {
    auto container = Container::Create({.name = "auto"});
    ASSERT_TRUE(container) << container.error().ToString();
    EXPECT_EQ(container->mode(), ContainmentMode::kCgroup);
    dir = container->cgroup_directory();
    EXPECT_EQ(dir.filename(), "auto");
    EXPECT_EQ(dir.parent_path().filename(), ProcessDirName());
    EXPECT_TRUE(std::filesystem::exists(dir / "cgroup.kill"));
    std::string mount = testing::MachineCgroupMounts().v2->mount_point;
    EXPECT_EQ(dir.string().rfind(mount, 0), 0u) << dir << " under " << mount;
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(std::filesystem::exists(dir.parent_path())) << "last Container of the runner";
}

TEST(ContainerCreateTest, AutoFallsBackWhenNoCgroupCanBeMade) {
  TempDir not_a_cgroup;
  auto container = Container::Create({.name = "fallback", .cgroup_parent = not_a_cgroup.path()});
  ASSERT_TRUE(container) << container.error().ToString();
  EXPECT_EQ(container->mode(), ContainmentMode::kProcessGroup);
  EXPECT_TRUE(container->cgroup_directory().empty());
  EXPECT_TRUE(std::filesystem::is_empty(not_a_cgroup.path())) << "nothing created there";
  // And it works.
  auto token = CancelToken::Create();
  ASSERT_TRUE(token);
  StringSink sink;
  auto outcome = container->Run(Shell("echo ok"), sink, *token);
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  EXPECT_EQ(sink.data, "ok\n");
}

TEST(ContainerCreateTest, CgroupModeFailsWhenNoCgroupCanBeMade) {
  TempDir not_a_cgroup;
  auto container = Container::Create(
      {.mode = ContainmentMode::kCgroup, .name = "strict", .cgroup_parent = not_a_cgroup.path()});
  ASSERT_FALSE(container);
  EXPECT_NE(container.error().message.find("kProcessGroup"), std::string::npos)
      << container.error().message;
}

TEST(ContainerCreateTest, ProcessGroupModeMakesNoCgroup) {
  auto container = Container::Create({.mode = ContainmentMode::kProcessGroup, .name = "pg"});
  ASSERT_TRUE(container) << container.error().ToString();
  EXPECT_EQ(container->mode(), ContainmentMode::kProcessGroup);
  EXPECT_TRUE(container->cgroup_directory().empty());
  std::string_view cookie = container->cookie_variable();
  EXPECT_EQ(cookie.substr(0, 21), "GEARRUN_BUILD_COOKIE=");
  EXPECT_EQ(cookie.size(), 21u + 32u);
}

TEST(ContainerCreateTest, RejectsInvalidNames) {
  for (const std::string& name :
       std::vector<std::string>{"a/b", "..", ".hidden", "with space", std::string(101, 'x')}) {
    auto container = Container::Create({.mode = ContainmentMode::kProcessGroup, .name = name});
    ASSERT_FALSE(container) << name;
    EXPECT_EQ(container.error().code, EINVAL);
  }
  auto unnamed = Container::Create({.mode = ContainmentMode::kProcessGroup});
  EXPECT_TRUE(unnamed) << "an empty name gets a default";
}

TEST(ContainerCreateTest, DuplicateNameIsAnErrorInCgroupMode) {
  SKIP_WITHOUT_CGROUP2();
  auto first = Container::Create({.mode = ContainmentMode::kCgroup, .name = "twice"});
  ASSERT_TRUE(first) << first.error().ToString();
  auto second = Container::Create({.mode = ContainmentMode::kCgroup, .name = "twice"});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, EEXIST);
  EXPECT_TRUE(std::filesystem::exists(first->cgroup_directory())) << "the first is untouched";
}

TEST(ContainerCreateTest, RunnerDirectoryIsRemovedWithTheLastContainer) {
  SKIP_WITHOUT_CGROUP2();
  std::optional<Container> a;
  std::optional<Container> b;
  {
    auto made_a = Container::Create({.mode = ContainmentMode::kCgroup, .name = "a"});
    auto made_b = Container::Create({.mode = ContainmentMode::kCgroup, .name = "b"});
    ASSERT_TRUE(made_a && made_b);
    a.emplace(std::move(*made_a));
    b.emplace(std::move(*made_b));
  }
  std::filesystem::path runner_dir = a->cgroup_directory().parent_path();
  a.reset();
  EXPECT_TRUE(std::filesystem::exists(runner_dir));
  b.reset();
  EXPECT_FALSE(std::filesystem::exists(runner_dir));
}

TEST(ContainerCreateTest, DestroyingAContainerKillsItsBuild) {
  for (ContainmentMode mode : {ContainmentMode::kCgroup, ContainmentMode::kProcessGroup}) {
    if (mode == ContainmentMode::kCgroup && !testing::MachineHasCgroup2()) continue;
    ASSERT_TRUE(BecomeSubreaper());
    TempDir dir;
    std::string cookie;
    {
      auto container = Container::Create({.mode = mode, .name = "doomed"});
      ASSERT_TRUE(container) << container.error().ToString();
      cookie = std::string(container->cookie_variable());
      auto token = CancelToken::Create();
      ASSERT_TRUE(token);
      StringSink sink;
      auto outcome = container->Run(
          Shell("setsid sleep 1000 & echo $! > " + (dir / "pid").string()), sink, *token);
      ASSERT_TRUE(outcome) << outcome.error().ToString();
      ASSERT_TRUE(Running(ReadPid(dir / "pid")));
    }
    EXPECT_FALSE(Running(ReadPid(dir / "pid"))) << ToString(mode);
    EXPECT_EQ(testing::ProcessesWithCookie(cookie), std::vector<pid_t>{});
  }
}

// A step that wrote its pid into the runner's cgroups (the parent of its build's) survived
// the build and kept the runner's gearrun-<pid> folder from being removed.
TEST(ContainerCreateTest, AStepThatMovesItselfOutOfItsBuildDoesNotOutliveIt) {
  SKIP_WITHOUT_CGROUP2();
  ASSERT_TRUE(BecomeSubreaper());
  TempDir dir;
  std::filesystem::path runner_dir;
  std::vector<pid_t> escaped;
  {
    auto container = Container::Create({.mode = ContainmentMode::kCgroup, .name = "escape"});
    ASSERT_TRUE(container) << container.error().ToString();
    runner_dir = container->cgroup_directory().parent_path();
    auto token = CancelToken::Create();
    ASSERT_TRUE(token);
    StringSink sink;
    int n = 0;
    // Into gearrun-<pid> (the build's parent), and into the runner's own cgroup.
    for (const auto& target : {runner_dir, runner_dir.parent_path()}) {
      std::string pid_file = (dir / ("pid" + std::to_string(++n))).string();
      auto outcome = container->Run(Shell("sh -c 'echo $$ > " + (target / "cgroup.procs").string() +
                                          " && echo $$ > " + pid_file +
                                          " && exec sleep 1000' &\n"
                                          "while [ ! -s " +
                                          pid_file + " ]; do sleep 0.01; done"),
                                    sink, *token);
      ASSERT_TRUE(outcome) << outcome.error().ToString();
      pid_t pid = ReadPid(pid_file);
      ASSERT_TRUE(Running(pid)) << sink.data;
      escaped.push_back(pid);
    }
    auto killed = container->KillAll(KillPolicy{.signal = SIGTERM, .grace = 2s}, sink);
    ASSERT_TRUE(killed) << killed.error().ToString();
    EXPECT_EQ(*killed, 2);
    for (pid_t pid : escaped) EXPECT_FALSE(Running(pid)) << pid;
  }
  EXPECT_FALSE(std::filesystem::exists(runner_dir)) << "nothing of the runner is left";
}

TEST(ContainerCreateTest, MoveAssignmentEndsTheOverwrittenBuild) {
  ASSERT_TRUE(BecomeSubreaper());
  TempDir dir;
  auto first = Container::Create({.mode = ContainmentMode::kProcessGroup, .name = "first"});
  auto second = Container::Create({.mode = ContainmentMode::kProcessGroup, .name = "second"});
  ASSERT_TRUE(first && second);
  auto token = CancelToken::Create();
  ASSERT_TRUE(token);
  StringSink sink;
  ASSERT_TRUE(first->Run(Shell("sleep 1000 & echo $! > " + (dir / "pid").string()), sink, *token));
  pid_t sleeper = ReadPid(dir / "pid");
  ASSERT_TRUE(Running(sleeper));
  std::string second_cookie(second->cookie_variable());
  *first = std::move(*second);
  EXPECT_FALSE(Running(sleeper));
  EXPECT_EQ(first->cookie_variable(), second_cookie);
  auto outcome = first->Run(Shell("exit 5"), sink, *token);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->exit_code, 5);
}

TEST(ContainerCreateTest, BuildLimitsAreAppliedThroughCgroups) {
  constexpr std::uint64_t kMemory = 256ull << 20;
  constexpr std::uint64_t kPids = 200;
  std::string v1_memory_runner_dir;
  {
    auto container =
        Container::Create({.name = "limited", .memory_max_bytes = kMemory, .pids_max = kPids});
    ASSERT_TRUE(container) << container.error().ToString();
    LimitsInForce limits = container->limits_in_force();
    if (limits.memory == LimitMechanism::kNone && limits.pids == LimitMechanism::kNone) {
      GTEST_SKIP() << "no usable memory or pids controller on this machine";
    }
    auto token = CancelToken::Create();
    ASSERT_TRUE(token);
    StringSink sink;
    auto outcome = container->Run(Shell("cat /proc/self/cgroup"), sink, *token);
    ASSERT_TRUE(outcome) << outcome.error().ToString();
    ProcCgroup child = ParseProcCgroup(sink.data);
    CgroupMounts mounts = testing::MachineCgroupMounts();
    std::string suffix = "/" + ProcessDirName() + "/limited";

    auto check = [&](LimitMechanism mechanism, const std::string& controller,
                     const std::optional<MountInfo>& v1_mount, const std::string& v1_file,
                     const std::string& v2_file, std::uint64_t value) {
      SCOPED_TRACE(controller);
      if (mechanism == LimitMechanism::kCgroupV1) {
        ASSERT_TRUE(v1_mount);
        const std::string& path = child.v1_paths.at(controller);
        EXPECT_TRUE(path.size() >= suffix.size() &&
                    path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
            << path;
        auto dir = CgroupDirectory(*v1_mount, path);
        ASSERT_TRUE(dir);
        EXPECT_EQ(ReadFileOrEmpty(*dir + "/" + v1_file), std::to_string(value) + "\n");
        if (controller == "memory") {
          v1_memory_runner_dir = std::filesystem::path(*dir).parent_path().string();
        }
      } else if (mechanism == LimitMechanism::kCgroupV2) {
        EXPECT_EQ(ReadFileOrEmpty(container->cgroup_directory() / v2_file),
                  std::to_string(value) + "\n");
      }
    };
    check(limits.memory, "memory", mounts.v1_memory, "memory.limit_in_bytes", "memory.max",
          kMemory);
    check(limits.pids, "pids", mounts.v1_pids, "pids.max", "pids.max", kPids);
  }
  if (!v1_memory_runner_dir.empty()) {
    EXPECT_FALSE(std::filesystem::exists(v1_memory_runner_dir)) << "v1 groups removed";
  }
}

TEST(ContainerCreateTest, PidsLimitStopsAForkBomb) {
  ASSERT_TRUE(BecomeSubreaper());
  auto container = Container::Create({.name = "bomb", .pids_max = 50});
  ASSERT_TRUE(container) << container.error().ToString();
  if (container->limits_in_force().pids == LimitMechanism::kNone) {
    GTEST_SKIP() << "no usable pids controller on this machine";
  }
  auto token = CancelToken::Create();
  ASSERT_TRUE(token);
  StringSink sink;
  auto outcome = container->Run(
      Shell("n=0; i=0; while [ $i -lt 100 ]; do if sleep 1000 & then n=$((n+1)); fi; "
            "i=$((i+1)); done 2>/dev/null; echo started"),
      sink, *token);
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  EXPECT_LE(testing::ProcessesWithCookie(container->cookie_variable()).size(), 50u);
  DiscardSink discard;
  auto killed = container->KillAll({.signal = SIGKILL, .grace = 0ms}, discard);
  ASSERT_TRUE(killed);
  EXPECT_GT(*killed, 0);
  EXPECT_LE(*killed, 50);
}

}  // namespace
}  // namespace gearrun::sandbox
