#include "sandbox/cgroup.h"

#include <gtest/gtest.h>

namespace gearrun::sandbox {
namespace {

// This machine's layout: cgroup v1 controllers plus an empty v2 hierarchy at .../unified.
constexpr std::string_view kHybrid =
    "21 26 0:20 / /proc rw,relatime - proc proc rw\n"
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

// A systemd machine: pure v2, with optional fields (shared:N) before the separator.
constexpr std::string_view kPureV2 =
    "24 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

TEST(CgroupTest, FindsHybridLayout) {
  CgroupMounts mounts = FindCgroupMounts(ParseMountInfo(kHybrid));
  ASSERT_TRUE(mounts.v2);
  EXPECT_EQ(mounts.v2->mount_point, "/sys/fs/cgroup/unified");
  EXPECT_EQ(mounts.v2->root, "/");
  ASSERT_TRUE(mounts.v1_memory);
  EXPECT_EQ(mounts.v1_memory->mount_point, "/sys/fs/cgroup/memory");
  ASSERT_TRUE(mounts.v1_pids);
  EXPECT_EQ(mounts.v1_pids->mount_point, "/sys/fs/cgroup/pids");
}

TEST(CgroupTest, FindsPureV2WithOptionalFields) {
  std::vector<MountInfo> parsed = ParseMountInfo(kPureV2);
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[1].fs_type, "cgroup2");
  EXPECT_EQ(parsed[1].super_options, "rw,nsdelegate,memory_recursiveprot");
  CgroupMounts mounts = FindCgroupMounts(parsed);
  ASSERT_TRUE(mounts.v2);
  EXPECT_EQ(mounts.v2->mount_point, "/sys/fs/cgroup");
  EXPECT_FALSE(mounts.v1_memory);
  EXPECT_FALSE(mounts.v1_pids);
}

TEST(CgroupTest, NoCgroupMounted) {
  CgroupMounts mounts =
      FindCgroupMounts(ParseMountInfo("21 26 0:20 / /proc rw,relatime - proc proc rw\n"));
  EXPECT_FALSE(mounts.v2);
  EXPECT_FALSE(mounts.v1_memory);
  EXPECT_TRUE(ParseMountInfo("").empty());
}

TEST(CgroupTest, CoMountedV1ControllersAndMalformedLines) {
  CgroupMounts mounts = FindCgroupMounts(ParseMountInfo(
      "garbage\n"
      "1 2 3 4\n"
      "50 30 0:40 / /sys/fs/cgroup/memory,pids rw - cgroup cgroup rw,memory,pids\n"));
  ASSERT_TRUE(mounts.v1_memory);
  ASSERT_TRUE(mounts.v1_pids);
  EXPECT_EQ(mounts.v1_memory->mount_point, mounts.v1_pids->mount_point);
  EXPECT_FALSE(mounts.v2);
}

TEST(CgroupTest, UnescapesMountPoints) {
  std::vector<MountInfo> parsed =
      ParseMountInfo("60 30 0:41 /a\\040b /mnt/my\\040cgroup\\134x rw - cgroup2 none rw\n");
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0].root, "/a b");
  EXPECT_EQ(parsed[0].mount_point, "/mnt/my cgroup\\x");
}

TEST(CgroupTest, ParsesProcCgroup) {
  ProcCgroup own = ParseProcCgroup(
      "9:name=systemd:/\n"
      "8:pids:/\n"
      "4:memory:/process_api/b32d\n"
      "2:cpu,cpuacct:/a\n"
      "0::/user.slice/session-1.scope\n");
  ASSERT_TRUE(own.v2_path);
  EXPECT_EQ(*own.v2_path, "/user.slice/session-1.scope");
  EXPECT_EQ(own.v1_paths.at("memory"), "/process_api/b32d");
  EXPECT_EQ(own.v1_paths.at("pids"), "/");
  EXPECT_EQ(own.v1_paths.at("cpu"), "/a");
  EXPECT_EQ(own.v1_paths.at("cpuacct"), "/a");
  EXPECT_EQ(own.v1_paths.at("name=systemd"), "/");
  EXPECT_FALSE(ParseProcCgroup("4:memory:/x\n").v2_path);
}

TEST(CgroupTest, DirectoryOfOwnCgroup) {
  MountInfo mount{.root = "/", .mount_point = "/sys/fs/cgroup/unified", .fs_type = "cgroup2"};
  EXPECT_EQ(CgroupDirectory(mount, "/"), "/sys/fs/cgroup/unified");
  EXPECT_EQ(CgroupDirectory(mount, "/user.slice/x.scope"),
            "/sys/fs/cgroup/unified/user.slice/x.scope");
}

TEST(CgroupTest, DirectoryInsideABindMountedSubtree) {
  // A container that sees only /docker/abc of the hierarchy, mounted at /sys/fs/cgroup.
  MountInfo mount{.root = "/docker/abc", .mount_point = "/sys/fs/cgroup", .fs_type = "cgroup2"};
  EXPECT_EQ(CgroupDirectory(mount, "/docker/abc"), "/sys/fs/cgroup");
  EXPECT_EQ(CgroupDirectory(mount, "/docker/abc/sub"), "/sys/fs/cgroup/sub");
  EXPECT_EQ(CgroupDirectory(mount, "/docker/abcd"), std::nullopt);
  EXPECT_EQ(CgroupDirectory(mount, "/other"), std::nullopt);
}

TEST(CgroupTest, JoinsPaths) {
  EXPECT_EQ(JoinCgroupPath("/", "a"), "/a");
  EXPECT_EQ(JoinCgroupPath("/a/", "/b"), "/a/b");
  EXPECT_EQ(JoinCgroupPath("/sys/fs/cgroup", "gearrun-1"), "/sys/fs/cgroup/gearrun-1");
  EXPECT_EQ(JoinCgroupPath("/a", ""), "/a");
}

}  // namespace
}  // namespace gearrun::sandbox
