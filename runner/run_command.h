// `gearrun run`: runs one job on this machine, through the same code path as served builds,
// with the log streamed to the terminal and a summary at the end.
//
// Exit codes: 0 SUCCESS; 1 FAILURE, UNSTABLE, or the build could not start (NOT_BUILT);
// 2 usage or validation error (nothing ran); 3 ABORTED (timeout or stop).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace gearrun::runner {

inline constexpr int kExitAborted = 3;

struct RunOptions {
  std::string target;                    // a job file, or a job name looked up in `jobs`
  std::filesystem::path jobs;            // job file or directory for names; empty: kDefaultJobsDir
  std::vector<std::string> parameters;   // "KEY=VALUE"
  std::filesystem::path state_dir;       // empty: DefaultStateDir()
  std::filesystem::path workspace_root;  // empty: <state_dir>/workspace
  std::string node;
  std::vector<std::string> labels;
  std::string containment = "auto";  // auto, cgroup, process-group
  std::string log_cap;               // "256M", "1G", "0" (no cap); empty: the default
  std::vector<std::string> limits;   // "core=0", "nofile=4096", "nproc=512", "as=4G"
  std::string memory_max;            // per build, through cgroups: "2G"
  std::string pids_max;              // per build, through cgroups: "1000"
};

// "1024", "64K", "256M", "1G" (powers of 1024); nullopt when malformed.
[[nodiscard]] std::optional<std::uint64_t> ParseSize(std::string_view text);

// /var/lib/gearrun for root; otherwise $XDG_STATE_HOME/gearrun or ~/.local/state/gearrun.
[[nodiscard]] std::filesystem::path DefaultStateDir();

// Runs the build; installs SIGINT/SIGTERM handlers for its duration (first: stop the steps,
// finally steps still run; second: stop those too).
int RunRun(const RunOptions& options, std::ostream& out, std::ostream& err);

}  // namespace gearrun::runner
