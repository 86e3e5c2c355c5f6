// StateLock: one gearrun process per state directory. Two runners sharing one would hand out
// the same build numbers' folders and fight over workspaces and crash recovery.
//
// Two locks, both dropped by the kernel when the process dies (a crash never leaves a stale
// lock behind):
//   - an flock on <state_dir>/gearrun.lock, which also records the holder's pid;
//   - a listening socket in the abstract namespace named after the state directory's
//     canonical path, which survives the directory being deleted (an flock does not: a
//     second gearrun would make a new directory and a new lock file). Abstract sockets
//     belong to a network namespace, so two containers with their own networks that share
//     one state volume rely on the flock alone.
// Check() tells the holder whether the directory is still the one it locked (not deleted
// or replaced), so that it can stop instead of writing where no one looks.
//
// Not thread-safe; one per process.
#pragma once

#include <filesystem>
#include <string>
#include <tl/expected.hpp>

#include "sandbox/unique_fd.h"

namespace gearrun::runner {

class StateLock {
 public:
  // Creates the state directory if needed. Fails when another process holds it, naming that
  // process's pid where it can, or when the directory cannot be created or written.
  [[nodiscard]] static tl::expected<StateLock, std::string> Acquire(
      const std::filesystem::path& state_dir);

  // An error when <state_dir>/gearrun.lock is no longer the file this lock holds (the
  // directory was deleted, moved or replaced).
  [[nodiscard]] tl::expected<void, std::string> Check() const;

 private:
  StateLock(std::filesystem::path state_dir, sandbox::UniqueFd fd, sandbox::UniqueFd socket)
      : state_dir_(std::move(state_dir)), fd_(std::move(fd)), socket_(std::move(socket)) {}
  std::filesystem::path state_dir_;
  sandbox::UniqueFd fd_;
  sandbox::UniqueFd socket_;
};

}  // namespace gearrun::runner
