// The vocabulary of running one build step: what to run (Command), where its output goes
// (OutputSink), and how it ended (Outcome). Container::Run() (sandbox/container.h) takes a
// Command and returns an Outcome.
//
//   Command command{
//       .argv = {"sh", "-c", "make -j4"},
//       .env = {"PATH=/usr/bin:/bin", "HOME=/var/lib/gearrun"},  // exactly this environment
//       .dir = workspace,
//       .limits = {.core_bytes = 0, .open_files = 4096},
//       .kill = {.signal = SIGTERM, .grace = std::chrono::seconds(10)},
//       .deadline = std::chrono::steady_clock::now() + std::chrono::minutes(30),
//   };
//
// All types here are plain values (thread-compatible), except OutputSink, an interface whose
// implementations say their own thread safety; the sandbox calls a sink from the thread that
// called Run()/KillAll() only.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "sandbox/error.h"

namespace gearrun::sandbox {

// setrlimit(2) in the child before exec, soft and hard limit both set to the value (so the
// step cannot raise it again). Unset fields inherit the runner's limits. A value above the
// runner's hard limit needs CAP_SYS_RESOURCE; without it Run() fails with an Error.
struct ResourceLimits {
  std::optional<std::uint64_t> core_bytes;           // RLIMIT_CORE; 0 = no core dumps
  std::optional<std::uint64_t> open_files;           // RLIMIT_NOFILE
  std::optional<std::uint64_t> processes;            // RLIMIT_NPROC (per user, not per step!)
  std::optional<std::uint64_t> address_space_bytes;  // RLIMIT_AS
};

// How a step (or, at the end of a build, everything left) is stopped: `signal` to every
// process, up to `grace` for them to exit, then SIGKILL. signal == SIGKILL skips the grace.
struct KillPolicy {
  int signal = SIGTERM;
  std::chrono::milliseconds grace{10000};
};

struct Command {
  // argv[0] is the program. Without a '/', it is looked up in the PATH of `env` (or in
  // /usr/bin:/bin when `env` has no PATH); relative PATH entries and relative argv[0] are
  // relative to `dir`. argv[0] is passed to the program as given.
  std::vector<std::string> argv;
  // "NAME=value" strings: exactly the environment of the step (plus the build cookie, see
  // Container::cookie_variable()). Nothing is inherited from the runner.
  std::vector<std::string> env;
  // The working directory; empty means the runner's.
  std::filesystem::path dir;
  ResourceLimits limits;
  KillPolicy kill;
  // When the step is stopped with the kill ladder and ends kTimedOut. nullopt: no deadline.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

// Receives a step's output (stdout and stderr interleaved in one stream) as it arrives, in
// chunks of at most 64 KiB, bytes unchanged (binary, invalid UTF-8 and long lines included).
// Must not throw. Keeping or capping what it is given is the sink's business.
class OutputSink {
 public:
  virtual ~OutputSink() = default;
  virtual void Write(std::string_view bytes) = 0;
};

// Drops everything (for KillAll() when nobody wants the last words of leftovers).
class DiscardSink final : public OutputSink {
 public:
  void Write(std::string_view /*bytes*/) override {}
};

// How a step ended. A non-zero exit is an Outcome, not an Error.
struct Outcome {
  enum class Ending {
    kExited,     // the main process exited by itself: see exit_code
    kSignaled,   // the main process was killed by a signal nobody in the sandbox sent
    kTimedOut,   // the deadline passed; the kill ladder stopped the step
    kCancelled,  // the CancelToken fired; the kill ladder stopped the step
  };
  Ending ending = Ending::kExited;
  // The main process's exit status when it exited (also for kTimedOut/kCancelled when it
  // exited by itself during the grace period, e.g. 143 from a shell's TERM trap); else -1.
  int exit_code = -1;
  // The signal that terminated the main process, or 0 when it exited.
  int signal = 0;
  // From the start of the process until its exit was seen.
  std::chrono::milliseconds duration{0};
  // User + system CPU time of the main process and of the descendants it waited for.
  std::chrono::microseconds cpu_time{0};
  // Largest resident set of any single one of those processes (ru_maxrss), not a sum.
  std::uint64_t peak_rss_bytes = 0;
  // How many processes of the step the kill ladder stopped (the main process included).
  // 0 when the step ended by itself: its leftovers stay alive until Container::KillAll().
  int leftovers_killed = 0;
};

[[nodiscard]] std::string_view ToString(Outcome::Ending ending);

// What this process can give its children: its own hard limits (nullopt: unlimited), whether
// it may raise them (CAP_SYS_RESOURCE), and the kernel's ceiling for open files.
struct OwnLimits {
  std::optional<std::uint64_t> core_bytes, open_files, processes, address_space_bytes;
  bool can_raise = false;
  std::uint64_t nr_open = 1048576;  // fs.nr_open
};
// Reads them from getrlimit, /proc/self/status (CapEff) and /proc/sys/fs/nr_open.
[[nodiscard]] OwnLimits ReadOwnLimits();

// Whether every limit in `limits` can be set in a child, which Run() would otherwise find out
// at every step. Errors name the limit ("nofile=1048577"), what stops it and what to change.
[[nodiscard]] tl::expected<void, std::string> CheckLimits(const ResourceLimits& limits,
                                                          const OwnLimits& own);

// Finds the file to execute for `argv0` as Command documents it. Errors: ENOENT (not
// found; the message names the PATH searched), EACCES (found but not executable).
[[nodiscard]] tl::expected<std::filesystem::path, Error> ResolveProgram(
    const std::string& argv0, const std::vector<std::string>& env,
    const std::filesystem::path& dir);

}  // namespace gearrun::sandbox
