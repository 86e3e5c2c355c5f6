// Workspaces: the folder a build runs in, `<root>/<job>`, reused from build to build as in
// Jenkins. A second build of the same job running at the same time on the node gets
// `<job>@2`, a third `<job>@3`, and so on.
//
// A Workspace holds an flock on its folder for as long as it lives, so builds in other
// threads and other gearrun processes on the same root never share one.
// Thread-safe to acquire concurrently; a Workspace itself is used by one build.
#pragma once

#include <filesystem>
#include <string>
#include <tl/expected.hpp>

#include "sandbox/unique_fd.h"

namespace gearrun::runner {

enum class WorkspaceClean { kKeep, kEmpty };

class Workspace {
 public:
  // Takes the first free folder of `job` under `root` (created if needed). With kEmpty,
  // everything inside it is removed first.
  [[nodiscard]] static tl::expected<Workspace, std::string> Acquire(
      const std::filesystem::path& root, const std::string& job, WorkspaceClean clean);

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  Workspace(std::filesystem::path path, sandbox::UniqueFd lock)
      : path_(std::move(path)), lock_(std::move(lock)) {}

  std::filesystem::path path_;
  sandbox::UniqueFd lock_;  // the folder itself, flock'ed
};

}  // namespace gearrun::runner
