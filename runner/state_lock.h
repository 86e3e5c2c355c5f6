// StateLock: one gearrun process per state directory. Two runners sharing one would hand out
// the same build numbers' folders and fight over workspaces and crash recovery.
//
// Held (an flock on <state_dir>/gearrun.lock, which also records the holder's pid) for as
// long as the object lives; the kernel drops it if the process dies, so a crash never leaves
// a stale lock behind. Not thread-safe; one per process.
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

 private:
  explicit StateLock(sandbox::UniqueFd fd) : fd_(std::move(fd)) {}
  sandbox::UniqueFd fd_;
};

}  // namespace gearrun::runner
