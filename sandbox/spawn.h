// Spawn: starting one child process for a step, through Boost.Process v1, with everything
// that must happen between fork and exec done in the child with async-signal-safe calls.
//
// Internal to sandbox/ (used by container.cc); spawn.cc is the only file that includes Boost.
//
// In the child, before exec, in this order: block all signals; join the cgroups (write the
// pid, formatted by hand, to each pre-opened cgroup.procs fd); setsid(); every signal
// disposition to SIG_DFL (SIGPIPE included: an ignored SIGPIPE survives exec); setrlimit;
// stdout and stderr to `output_fd`; chdir; every fd >= 3 marked close-on-exec (close_range
// CLOSE_RANGE_CLOEXEC, not closed: Boost's exec-error pipe must stay usable until exec); an
// empty signal mask; then Boost's bp::std_in < bp::null puts /dev/null on fd 0. Any failure
// ends the child with _exit(127) and Spawn() returns an Error that says which step failed.
//
// Requires fds 0, 1 and 2 to be open in the runner (else a pipe could land on them).
// Thread-safe: concurrent Spawn() calls are fine (see sandbox/reaper.h for the locking).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "sandbox/error.h"
#include "sandbox/process.h"
#include "sandbox/reaper.h"
#include "sandbox/unique_fd.h"

namespace gearrun::sandbox {

struct SpawnRequest {
  std::filesystem::path program;  // the file to execute (already resolved)
  std::vector<std::string> argv;  // argv[0] as the program will see it
  std::vector<std::string> env;   // the complete environment
  std::filesystem::path dir;      // empty: stay in the runner's directory
  ResourceLimits limits;
  int output_fd = -1;                 // becomes the child's fds 1 and 2; caller keeps it
  std::vector<int> cgroup_procs_fds;  // the child writes its pid to each; caller keeps them
};

// A started child. The registration keeps ReapOrphans() away until the owner has reaped the
// pid (through the pidfd); destroy `registration` only after that.
struct SpawnedChild {
  pid_t pid = -1;
  UniqueFd pidfd;
  ChildRegistration registration;
};

// Errors: anything that kept the program from starting (fork, a setup step in the child,
// execve); the child, if one was forked, is killed and reaped before returning.
[[nodiscard]] tl::expected<SpawnedChild, Error> Spawn(const SpawnRequest& request);

}  // namespace gearrun::sandbox
