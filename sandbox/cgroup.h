// Finding cgroup hierarchies: pure parsers of /proc/self/mountinfo and /proc/self/cgroup
// text, and the path arithmetic that turns "my cgroup" into a directory to create builds in.
//
// Pure functions on text so that every layout (pure v2, hybrid v1 + v2 at .../unified,
// none, bind-mounted subtrees, escaped spaces) is testable without the machine having it.
// Used by container.cc. Thread-safe (no state).
//
//   auto mounts = FindCgroupMounts(ParseMountInfo(ReadWholeFile("/proc/self/mountinfo")));
//   auto own = ParseProcCgroup(ReadWholeFile("/proc/self/cgroup"));
//   if (mounts.v2 && own.v2_path) {
//     std::optional<std::string> dir = CgroupDirectory(*mounts.v2, *own.v2_path);
//     // e.g. "/sys/fs/cgroup/unified" + "/user.slice/..."
//   }
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gearrun::sandbox {

// One line of /proc/<pid>/mountinfo (only the fields the sandbox needs), unescaped.
struct MountInfo {
  std::string root;           // field 4: the directory of the filesystem that is mounted
  std::string mount_point;    // field 5
  std::string fs_type;        // after " - "
  std::string super_options;  // last field, e.g. "rw,memory" for a cgroup v1 hierarchy
};

// Parses mountinfo text. Lines that do not parse are skipped. Octal escapes (\040 for a
// space, \011, \012, \134) in root and mount point are decoded.
[[nodiscard]] std::vector<MountInfo> ParseMountInfo(std::string_view text);

struct CgroupMounts {
  std::optional<MountInfo> v2;         // the first cgroup2 mount
  std::optional<MountInfo> v1_memory;  // the first cgroup (v1) mount with the memory controller
  std::optional<MountInfo> v1_pids;    // ... with the pids controller
};

[[nodiscard]] CgroupMounts FindCgroupMounts(const std::vector<MountInfo>& mounts);

// What /proc/<pid>/cgroup says about a process.
struct ProcCgroup {
  std::optional<std::string> v2_path;           // from the "0::<path>" line
  std::map<std::string, std::string> v1_paths;  // controller -> path, from "N:ctl,ctl:<path>"
};

[[nodiscard]] ProcCgroup ParseProcCgroup(std::string_view text);

// The directory of cgroup `path` (as /proc/<pid>/cgroup shows it) inside `mount`: the
// mount point plus `path` with the mount's root taken off. nullopt when `path` is not
// inside what is mounted (e.g. a bind mount of a sibling subtree).
[[nodiscard]] std::optional<std::string> CgroupDirectory(const MountInfo& mount,
                                                         std::string_view path);

// Joins cgroup paths without doubling slashes: JoinCgroupPath("/", "a") == "/a".
[[nodiscard]] std::string JoinCgroupPath(std::string_view base, std::string_view name);

}  // namespace gearrun::sandbox
