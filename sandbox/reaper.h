// Reaper: process-wide bookkeeping of child processes, so that the runner can be a child
// subreaper (inheriting every orphan of every build) without ever stealing the exit status
// of a child that some Container::Run() is waiting for.
//
// The scheme:
//  - Code that forks takes a SpawnGuard (a shared lock) before fork and registers the new
//    pid (ChildRegistration) before releasing the guard. The owner of a registration waits
//    for that pid itself (pidfd + waitid) and destroys the registration only after it has
//    reaped the pid.
//  - ReapOrphans() takes the same lock exclusively, so no child can exist that is neither
//    registered nor an orphan. It asks the kernel whether any child is a zombie
//    (waitid(P_ALL, WNOHANG | WNOWAIT)); if that zombie is unregistered it reaps exactly that
//    pid. If it is registered (WNOWAIT would report it again and again), it lists our
//    zombie children from /proc/<pid>/stat (state Z, ppid = us) and reaps the unregistered
//    ones by pid. A registered pid is never passed to any wait call here.
//
//   if (auto ok = BecomeSubreaper(); !ok) Log(ok.error().ToString());  // once, in main()
//   ...
//   ReapOrphans();  // after each step, after KillAll, or from a timer; cheap when idle
//
// Contract for the rest of the process: any code that forks a child and waits for it by pid
// must hold a SpawnGuard across the fork and register the child, or ReapOrphans() may reap it
// first. (Code that never waits for its children is fine: they are reaped as orphans.)
//
// Thread safety: everything here is thread-safe; the state is process-wide.
#pragma once

#include <sys/types.h>

#include <shared_mutex>
#include <tl/expected.hpp>

#include "sandbox/error.h"

namespace gearrun::sandbox {

// Marks this process as a child subreaper (prctl PR_SET_CHILD_SUBREAPER): orphaned
// descendants are re-parented to it instead of to init, so that nothing a build starts
// escapes the runner's view and every zombie gets reaped here.
[[nodiscard]] tl::expected<void, Error> BecomeSubreaper();

// Whether this process is a child subreaper.
[[nodiscard]] bool IsSubreaper();

// Held from before fork() until the child is registered. Shared: spawns run concurrently;
// only ReapOrphans() excludes them (briefly).
class SpawnGuard {
 public:
  SpawnGuard();
  SpawnGuard(const SpawnGuard&) = delete;
  SpawnGuard& operator=(const SpawnGuard&) = delete;
  ~SpawnGuard() = default;

 private:
  std::shared_lock<std::shared_mutex> lock_;
};

// Keeps ReapOrphans() away from one child pid while it exists. Move-only. Destroy it only
// after the pid has been reaped by its owner.
class ChildRegistration {
 public:
  ChildRegistration() = default;
  // Registers `pid`. Requires a SpawnGuard held since before the fork of `pid`.
  ChildRegistration(const SpawnGuard& guard, pid_t pid);
  ChildRegistration(ChildRegistration&& other) noexcept;
  ChildRegistration& operator=(ChildRegistration&& other) noexcept;
  ChildRegistration(const ChildRegistration&) = delete;
  ChildRegistration& operator=(const ChildRegistration&) = delete;
  ~ChildRegistration();

  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  void Release();

  pid_t pid_ = 0;
};

// Reaps every zombie child of this process that is not registered. Returns how many it
// reaped. Never blocks on a living process; cheap (one waitid) when there is no zombie.
int ReapOrphans();

}  // namespace gearrun::sandbox
