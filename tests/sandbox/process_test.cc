#include "sandbox/process.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>

#include "sandbox/proc.h"
#include "tests/sandbox/test_util.h"

namespace gearrun::sandbox {
namespace {

using testing::TempDir;

void MakeFile(const std::filesystem::path& path, std::filesystem::perms perms) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << "#!/bin/sh\n";
  std::filesystem::permissions(path, perms);
}

TEST(ProcessTest, ResolvesInThePathOfTheGivenEnvironment) {
  TempDir dir;
  MakeFile(dir / "b/tool", std::filesystem::perms::owner_all);
  std::string path = "PATH=" + (dir / "a").string() + ":" + (dir / "b").string();
  auto found = ResolveProgram("tool", {"X=1", path, "PATH=/usr/bin"}, "");
  ASSERT_TRUE(found) << found.error().ToString();
  EXPECT_EQ(*found, dir / "b/tool") << "the first PATH counts";
}

TEST(ProcessTest, DefaultPathWithoutPathVariable) {
  auto found = ResolveProgram("sh", {}, "");
  ASSERT_TRUE(found) << found.error().ToString();
  EXPECT_TRUE(*found == "/usr/bin/sh" || *found == "/bin/sh") << *found;
}

TEST(ProcessTest, RelativeProgramAndPathEntriesAreRelativeToTheDirectory) {
  TempDir dir;
  MakeFile(dir / "build.sh", std::filesystem::perms::owner_all);
  MakeFile(dir / "bin/tool", std::filesystem::perms::owner_all);
  auto script = ResolveProgram("./build.sh", {}, dir.path());
  ASSERT_TRUE(script) << script.error().ToString();
  EXPECT_EQ(*script, dir / "./build.sh");
  auto tool = ResolveProgram("tool", {"PATH=bin"}, dir.path());
  ASSERT_TRUE(tool) << tool.error().ToString();
  EXPECT_EQ(*tool, dir / "bin/tool");
}

TEST(ProcessTest, MissingProgramIsEnoentNamingThePath) {
  auto found = ResolveProgram("gearrun-no-such-tool", {"PATH=/nonexistent:/usr/bin"}, "");
  ASSERT_FALSE(found);
  EXPECT_EQ(found.error().code, ENOENT);
  EXPECT_NE(found.error().message.find("/nonexistent:/usr/bin"), std::string::npos);
  EXPECT_EQ(ResolveProgram("/nonexistent/tool", {}, "").error().code, ENOENT);
}

TEST(ProcessTest, NonExecutableIsEaccesAndDirectoriesAreSkipped) {
  TempDir dir;
  MakeFile(dir / "a/tool", std::filesystem::perms::owner_read);
  std::filesystem::create_directories(dir / "b/tool");
  std::string path = "PATH=" + (dir / "b").string() + ":" + (dir / "a").string();
  auto found = ResolveProgram("tool", {path}, "");
  ASSERT_FALSE(found);
  // Even root needs an x bit to execute a file.
  EXPECT_EQ(found.error().code, EACCES);
  EXPECT_EQ(ResolveProgram("", {}, "").error().code, EINVAL);
}

TEST(ProcessTest, ParsesProcStatWithAwkwardCommandNames) {
  auto stat = ParseProcStat("4321 (a) b (c)) S 1 4300 4200 0 -1 4194560 ...\n");
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->pid, 4321);
  EXPECT_EQ(stat->state, 'S');
  EXPECT_EQ(stat->ppid, 1);
  EXPECT_EQ(stat->pgrp, 4300);
  EXPECT_EQ(stat->session, 4200);
  EXPECT_EQ(stat->flags, 4194560u);
  EXPECT_FALSE(stat->exited());
  EXPECT_FALSE(stat->kernel_thread());
  auto zombie = ParseProcStat("7 (zombie) Z 1 7 7 0 -1 4194380 0");
  ASSERT_TRUE(zombie);
  EXPECT_TRUE(zombie->exited());
  auto kthread = ParseProcStat("2 (kthreadd) S 0 0 0 0 -1 2129984 0");
  ASSERT_TRUE(kthread);
  EXPECT_TRUE(kthread->kernel_thread());
  EXPECT_FALSE(ParseProcStat("garbage"));
  EXPECT_FALSE(ParseProcStat("7 (x) S one 7 7 0 -1 0"));
  EXPECT_FALSE(ParseProcStat("7 (x) S 1 7 7")) << "too short";
}

TEST(ProcessTest, PathIsUnderComparesWholeComponents) {
  EXPECT_TRUE(PathIsUnder("/a/b", "/a"));
  EXPECT_TRUE(PathIsUnder("/a", "/a"));
  EXPECT_TRUE(PathIsUnder("/a", "/"));
  EXPECT_FALSE(PathIsUnder("/ab", "/a"));
  EXPECT_FALSE(PathIsUnder("/", "/a"));
}

TEST(ProcessTest, EndingNames) {
  EXPECT_EQ(ToString(Outcome::Ending::kExited), "exited");
  EXPECT_EQ(ToString(Outcome::Ending::kTimedOut), "timed out");
}

TEST(CheckLimitsTest, ALimitAboveTheOwnHardLimitNeedsTheRightToRaiseIt) {
  OwnLimits own{.core_bytes = 0,
                .open_files = 1024,
                .processes = std::nullopt,
                .address_space_bytes = std::nullopt,
                .can_raise = false,
                .nr_open = 2048};
  EXPECT_TRUE(CheckLimits({}, own));
  EXPECT_TRUE(CheckLimits({.core_bytes = 0, .open_files = 1024, .processes = 1u << 20}, own));
  auto nofile = CheckLimits({.open_files = 1025}, own);
  ASSERT_FALSE(nofile);
  EXPECT_EQ(nofile.error(),
            "nofile=1025 is above gearrun's own hard limit (1024), which it may not raise (no "
            "CAP_SYS_RESOURCE): raise gearrun's hard limit (LimitNOFILE= in the unit, ulimit "
            "-Hn) or lower this one");
  EXPECT_FALSE(CheckLimits({.core_bytes = 1}, own));
  own.can_raise = true;
  EXPECT_TRUE(CheckLimits({.core_bytes = 1, .open_files = 2048}, own));
  auto ceiling = CheckLimits({.open_files = 2049}, own);
  ASSERT_FALSE(ceiling);
  EXPECT_EQ(ceiling.error(),
            "nofile=2049 is above the kernel's ceiling for open files (fs.nr_open = 2048): lower "
            "it, or raise fs.nr_open");
}

TEST(CheckLimitsTest, OwnLimitsAreThoseOfThisProcess) {
  OwnLimits own = ReadOwnLimits();
  rlimit nofile{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &nofile), 0);
  EXPECT_EQ(own.open_files, nofile.rlim_max == RLIM_INFINITY
                                ? std::nullopt
                                : std::optional<std::uint64_t>(nofile.rlim_max));
  EXPECT_GE(own.nr_open, 1024u);
}

}  // namespace
}  // namespace gearrun::sandbox
