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

#include "runner/build_record.h"
#include "runner/config.h"

namespace gearrun::runner {

inline constexpr int kExitAborted = 3;

struct RunOptions {
  std::string target;                   // a job file, or a job name looked up in `jobs`
  std::optional<std::string> jobs;      // job file or directory for names; default: config
  std::vector<std::string> parameters;  // "KEY=VALUE"
  // Node and build settings, as for `gearrun serve` (node, labels, state dir, workspace
  // root, limits, log cap, containment, pass-through patterns, --config ...).
  ServeFlags node;
};

// The exit code for a build's result: 0 SUCCESS, 3 ABORTED, 1 anything else (shared with
// `gearrun submit`).
[[nodiscard]] int BuildExitCode(Result result);

// Runs the build; installs SIGINT/SIGTERM handlers for its duration (first: stop the steps,
// finally steps still run; second: stop those too).
int RunRun(const RunOptions& options, std::ostream& out, std::ostream& err);

}  // namespace gearrun::runner
