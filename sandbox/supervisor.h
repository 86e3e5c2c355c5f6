// Supervisor: a small helper process that outlives the runner just long enough to end its
// builds when the runner dies without ending them itself (kill -9, a crash, the OOM killer).
// Without it, what a build left running would live on until the next start of gearrun found
// it (runner/recovery.h), which on a single-use node may be never.
//
// The runner starts it once, early (StartSupervisor: the gearrun binary's hidden `supervise`
// command, in a session of its own, with SIGTERM, SIGINT and SIGHUP ignored so that a
// terminal's Ctrl-C or systemd's stop signal cannot end it before the runner). Every
// Container tells it about its build when it is made and again when it is gone (its cookie
// variable and its cgroup folders), through a pipe whose write end only the runner holds.
// When that pipe reports end of file (the runner has exited, however it exited), the
// supervisor ends whatever is left of the builds it still knows of, as KillOrphanedBuild
// does (cgroup.kill, then every process carrying their cookies, SIGKILL), removes their
// cgroup folders (v2 and v1) and the runner's gearrun-<pid> folders, and exits. After a clean
// exit of the runner it knows of no build and exits at once.
//
//   // in main(), after BecomeSubreaper():
//   if (auto ok = StartSupervisor("/proc/self/exe", {"gearrun", "supervise"}); !ok) Log(...);
//   ...                                        // Containers report to it by themselves
//   // the `supervise` command:
//   return RunSupervisor(STDIN_FILENO);
//
// If the supervisor dies, the next report starts a new one and tells it about every build
// still running. Without StartSupervisor, reports go nowhere (tests, libraries).
// Thread safety: the reporting functions are thread-safe; the state is process-wide.
#pragma once

#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "sandbox/error.h"

namespace gearrun::sandbox {

// Starts the supervisor: `program` with `argv`, the read end of the pipe on its standard
// input. Replaces a supervisor started before.
[[nodiscard]] tl::expected<void, Error> StartSupervisor(std::string program,
                                                        std::vector<std::string> argv);

// Whether a supervisor was started and is believed alive (for logs and tests).
[[nodiscard]] bool SupervisorRunning();

// A build to end should the runner die: its cookie variable (Container::cookie_variable())
// and its cgroup folders (either may be absent).
struct SupervisedBuild {
  std::string cookie_variable;
  std::string cgroup_v2;               // the build's cgroup v2 folder (cgroup.kill)
  std::vector<std::string> cgroup_v1;  // its cgroup v1 folders (limits), removed after
};

// Reports a build made and a build gone. Best effort: without a supervisor they do nothing.
void SuperviseBuild(const SupervisedBuild& build);
void ForgetBuild(std::string_view cookie_variable);

// The supervisor's side: reads reports from `fd` until end of file, then ends what is left
// of the builds it knows of. Returns the exit code (0; 1 when a process survived SIGKILL).
[[nodiscard]] int RunSupervisor(int fd);

// The wire format between the two (internal; exposed for tests). A report is a type byte
// ('+' build made, '-' build gone), then NUL-terminated fields (the cookie, then for '+' the
// cgroup folders, each prefixed "2:" or "1:" for its version), then one more NUL.
[[nodiscard]] std::string EncodeReport(char type, const SupervisedBuild& build);
// Applies the complete reports at the front of `buffer` to `builds` and removes them from
// `buffer`; what is left is the start of a report still arriving.
void ApplyReports(std::string& buffer, std::vector<SupervisedBuild>& builds);

}  // namespace gearrun::sandbox
