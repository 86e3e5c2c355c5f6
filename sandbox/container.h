// Container: everything one build runs, kept together so that it can be waited for, stopped
// and cleaned up. The runner makes one Container per build and runs the build's steps in it
// one after another; at the end KillAll() stops whatever the steps left running.
//
//   auto container = Container::Create({.name = "guava-7"});   // tl::expected<Container, Error>
//   if (!container) return container.error();
//   Command command{.argv = {"sh", "-c", "make test"}, .env = env, .dir = workspace};
//   command.env.emplace_back(container->cookie_variable());
//   auto token = CancelToken::Create();
//   tl::expected<Outcome, Error> outcome = container->Run(command, build_log, *token);
//   ...                                                          // more steps
//   tl::expected<int, Error> killed = container->KillAll(KillPolicy{}, build_log);
//
// What a step gets: its own session and process group (setsid), stdin from /dev/null,
// stdout and stderr into the build's output pipe, exactly the given environment plus the
// build cookie, only fds 0-2 open after exec, default signal dispositions and an empty
// signal mask, the given rlimits, and (cgroup mode) its own cgroup below the build's.
//
// Containment (how "every process of the build" is found):
//  - kCgroup: cgroup v2. The build gets <cgroup2 mount><own cgroup>/gearrun-<runner pid>/
//    <name>, each step a child step-<n> of it. A step timeout kills the step's cgroup
//    (cgroup.kill: setsid'd daemons included); KillAll() kills the build's cgroup.
//  - kProcessGroup: no cgroup. Each process of the build carries the cookie variable in its
//    environment; a step timeout kills the step's session (its process groups), KillAll()
//    scans /proc/*/environ for the cookie and kills the sessions of earlier steps. A
//    process that both leaves the session (setsid) and drops the cookie from its
//    environment (env -i) escapes; so does one whose environ is unreadable (not dumpable).
//  - kAuto: kCgroup when a cgroup can be made (cgroup2 mounted and writable, with
//    cgroup.kill: Linux 5.14+), else kProcessGroup.
//
// Output: one pipe per build (1 MiB where the kernel allows); the Container holds its read end (and
// a write end) until it is destroyed, so a background process that a step leaves running never gets
// SIGPIPE or EOF on stdout. What such processes write after their step has returned stays in the
// pipe (up to its capacity; then they block) and goes to the sink of the next Run() or
// KillAll(). Run() returns as soon as the step's main process has exited and the bytes
// already in the pipe have been delivered; it never waits for the pipe to reach EOF.
//
// Ownership: move-only (a moved-from Container may only be destroyed or assigned to); owns
// the pipe, the cgroup directories and, in process-group mode, the unreaped main process of
// each step that left processes in its session (so that its session id cannot be reused
// before KillAll() signals it). The destructor SIGKILLs whatever is left (call KillAll()
// first for a graceful stop), reaps, and removes the cgroup directories.
// Thread safety: a Container is used by one thread at a time; different Containers may run
// concurrently in one process. Cancellation comes from other threads via CancelToken.
// Reaping: children are waited for through pidfds; for orphans (which the runner inherits
// as a subreaper) see sandbox/reaper.h. Run() and KillAll() call ReapOrphans().
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "sandbox/cancel.h"
#include "sandbox/error.h"
#include "sandbox/process.h"

namespace gearrun::sandbox {

enum class ContainmentMode { kAuto, kCgroup, kProcessGroup };

[[nodiscard]] std::string_view ToString(ContainmentMode mode);

struct ContainerOptions {
  ContainmentMode mode = ContainmentMode::kAuto;
  // Names the build's cgroup directories ([A-Za-z0-9_.-], at most 100 characters, not
  // starting with '.'), e.g. "guava-7". Empty: "build-<n>". Two live Containers of one
  // runner must not share a name.
  std::string name;
  // Build-wide limits through cgroup controllers: cgroup v2 memory.max / pids.max when the
  // controllers are available below the runner's cgroup; else cgroup v1 memory/pids
  // hierarchies when mounted and writable (the build gets a cgroup there too); else not
  // applied. limits_in_force() says what happened. Unlike ResourceLimits, these count the
  // whole build, not one process.
  std::optional<std::uint64_t> memory_max_bytes;
  std::optional<std::uint64_t> pids_max;
  // Where to create gearrun-<pid>/<name> in cgroup mode. Empty: the runner's own cgroup v2
  // directory, found from /proc/self/mountinfo and /proc/self/cgroup. Set it when the
  // runner has been delegated another subtree (or, in tests, to force a fallback).
  std::filesystem::path cgroup_parent;
};

// How a build-wide limit is enforced.
enum class LimitMechanism { kNone, kCgroupV2, kCgroupV1 };

[[nodiscard]] std::string_view ToString(LimitMechanism mechanism);

struct LimitsInForce {
  LimitMechanism memory = LimitMechanism::kNone;  // kNone also when none was asked for
  LimitMechanism pids = LimitMechanism::kNone;
};

class Container {
 public:
  // Errors: invalid name (EINVAL), fds 0-2 of the runner not open (EBADF), no pipe or
  // random cookie, and with mode kCgroup anything that keeps a cgroup v2 from being made
  // (the message says what and suggests kProcessGroup). kAuto falls back instead.
  [[nodiscard]] static tl::expected<Container, Error> Create(const ContainerOptions& options);

  Container(Container&& other) noexcept;
  Container& operator=(Container&& other) noexcept;
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;
  ~Container();

  // The containment actually used (never kAuto).
  [[nodiscard]] ContainmentMode mode() const;
  [[nodiscard]] const LimitsInForce& limits_in_force() const;
  // The build's cgroup v2 directory in cgroup mode, else empty.
  [[nodiscard]] const std::filesystem::path& cgroup_directory() const;
  // "GEARRUN_BUILD_COOKIE=<32 random hex digits>": marks every process of the build. The
  // runner puts it into every step's environment; Run() adds it when missing (and replaces
  // a GEARRUN_BUILD_COOKIE with another value).
  [[nodiscard]] std::string_view cookie_variable() const;

  // Runs one step to its end. Output (stdout and stderr) goes to `sink` as it arrives,
  // together with whatever earlier steps' leftovers write meanwhile. Returns when the main
  // process has exited; processes it started in the background stay alive (until KillAll()),
  // unless the step ends by deadline or cancellation: then the kill ladder (command.kill)
  // stops every process of the step (cgroup mode: its cgroup; process-group mode: its
  // session) and the Outcome says kTimedOut / kCancelled. A token that is already cancelled
  // or a deadline already past ends the step without starting it.
  // Errors (nothing was run, or for the last case the step was killed): empty argv or a NUL
  // byte in argv/env (EINVAL), program not found (ENOENT) or not executable (EACCES; a script
  // without "#!" fails with ENOEXEC: it is exec'd, not handed to /bin/sh), missing working
  // directory, a setup step in the child (cgroup, rlimit, ...), fork; a failing poll(). A program
  // that exits non-zero or dies from a signal is an Outcome, not an Error.
  [[nodiscard]] tl::expected<Outcome, Error> Run(const Command& command, OutputSink& sink,
                                                 const CancelToken& cancel);

  // Stops every process that belongs to the build (including ones that called setsid; see
  // the class comment for process-group mode): `policy.signal`, up to `policy.grace` for
  // them to exit, then SIGKILL, repeated until none is left (a forking process may spawn
  // more meanwhile). Reaps what it can and removes step cgroups. Output written meanwhile
  // goes to `sink`. Returns how many processes it found and stopped (0 when none was left).
  // The Container stays usable. Error (EBUSY) if processes survive SIGKILL for 10 s.
  [[nodiscard]] tl::expected<int, Error> KillAll(const KillPolicy& policy, OutputSink& sink);

 private:
  struct State;  // defined in container.cc

  explicit Container(std::unique_ptr<State> state);

  std::unique_ptr<State> state_;
};

// Ends what is left of a build whose Container no longer exists because its runner died
// (crash, kill -9): every process in `cgroup_directory` and below (through cgroup.kill) and
// every process whose environment holds `cookie_variable` (as Container::cookie_variable()
// gave it), with SIGKILL at once, since the build is lost anyway. Then removes the
// cgroup directories (and `v1_directories`, the build's cgroup v1 folders), and their
// parents (the dead runner's gearrun-<pid>) when they are empty. Either of the first two
// arguments may be empty. Returns how many processes it found.
// Error (EBUSY) when processes survive SIGKILL for 10 s.
[[nodiscard]] tl::expected<int, Error> KillOrphanedBuild(
    std::string_view cookie_variable, const std::filesystem::path& cgroup_directory,
    const std::vector<std::filesystem::path>& v1_directories = {});

}  // namespace gearrun::sandbox
