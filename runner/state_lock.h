// StateLock: one gearrun process per state directory. Two runners sharing one would hand out
// the same build numbers' folders and fight over workspaces and crash recovery.
//
// Two locks, both dropped by the kernel when the process dies (a crash never leaves a stale
// lock behind), both files holding the holder's pid:
//   - an flock on <state_dir>/gearrun.lock;
//   - an flock on a file named after the state directory's canonical path in a runtime
//     folder only its user may write (/run/gearrun for root, $XDG_RUNTIME_DIR/gearrun
//     otherwise), which deleting the state directory does not release (a second gearrun
//     would otherwise make a new directory and a new lock file). Without such a folder (no
//     /run, no XDG_RUNTIME_DIR), the first lock alone is taken. Each container has its own
//     /run: containers sharing one state volume rely on the first lock.
// Check() tells the holder whether the directory is still the one it locked (not deleted
// or replaced), so that it can stop instead of writing where no one looks.
//
// Check() may be called from any thread; the rest is not thread-safe. One per process.
#pragma once

#include <filesystem>
#include <string>
#include <tl/expected.hpp>

#include "sandbox/unique_fd.h"

namespace gearrun::runner {

class StateLock {
 public:
  // Creates the state directory if needed. Fails when another process holds it, naming that
  // process's pid, or when the directory cannot be created or written.
  [[nodiscard]] static tl::expected<StateLock, std::string> Acquire(
      const std::filesystem::path& state_dir);

  // An error when <state_dir>/gearrun.lock is gone or is no longer the file this lock holds
  // (the directory was deleted, moved or replaced). Other failures to look (EIO, ...) are
  // not taken as that.
  [[nodiscard]] tl::expected<void, std::string> Check() const;

  // The runtime lock file (empty when there is none), for messages and tests.
  [[nodiscard]] const std::filesystem::path& runtime_lock() const { return runtime_path_; }

 private:
  StateLock(std::filesystem::path state_dir, sandbox::UniqueFd fd,
            std::filesystem::path runtime_path, sandbox::UniqueFd runtime_fd)
      : state_dir_(std::move(state_dir)),
        fd_(std::move(fd)),
        runtime_path_(std::move(runtime_path)),
        runtime_fd_(std::move(runtime_fd)) {}
  std::filesystem::path state_dir_;
  sandbox::UniqueFd fd_;
  std::filesystem::path runtime_path_;
  sandbox::UniqueFd runtime_fd_;
};

// The runtime lock file for a state directory (canonical path): <runtime dir>/state<path with
// '%' and '/' written as %25 and %2f>.lock; a hash of the path instead when that name is too
// long. Empty when this user has no runtime folder.
[[nodiscard]] std::filesystem::path RuntimeLockPath(const std::filesystem::path& canonical);

}  // namespace gearrun::runner
