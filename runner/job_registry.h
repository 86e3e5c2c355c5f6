// JobRegistry: the job definitions a node serves, reloaded atomically (SIGHUP, or a new
// commit of a jobs repository later). A reload that finds any error changes nothing: the
// previous definitions stay in force and every error is returned (file, line, column).
// A successful reload says which Gearman functions to add and which to remove, so that
// registrations change as a delta (shared/protocol.md).
//
//   JobRegistry registry({"/etc/gearrun/jobs"}, MakeNodeLabels("build-01", {"ubuntu"}));
//   auto result = registry.Reload();
//   for (const auto& e : result.errors) Log(e.ToString());
//   Send(result.delta.added, result.delta.removed);
//   auto jobs = registry.current();                  // a snapshot: jobs, functions, commit
//   auto job = jobs->FindByFunction("build:guava:ubuntu");   // shared_ptr, may be null
//
// Thread-safe: Reload() and readers may run concurrently; readers get a consistent
// snapshot (a shared_ptr that stays valid while they use it).
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "jobs/error.h"
#include "jobs/job_spec.h"
#include "jobs/labels.h"
#include "jobs/loader.h"

namespace gearrun::runner {

struct FunctionDelta {
  std::vector<std::string> added;    // sorted
  std::vector<std::string> removed;  // sorted

  [[nodiscard]] bool empty() const { return added.empty() && removed.empty(); }
};

// What changes from `before` to `after` (both sorted, unique).
[[nodiscard]] FunctionDelta DiffFunctions(const std::vector<std::string>& before,
                                          const std::vector<std::string>& after);

// The job name in "build:<job>" or "build:<job>:<label>"; empty for other names.
[[nodiscard]] std::string_view JobOfFunction(std::string_view function);

struct JobSet {
  std::vector<std::shared_ptr<const jobs::JobSpec>> jobs;
  std::vector<std::string> functions;  // on this node, sorted, unique
  std::string commit;  // the jobs repository's commit they came from; empty: local files

  // The job behind a function of this set; null when it has none.
  [[nodiscard]] std::shared_ptr<const jobs::JobSpec> FindByFunction(
      std::string_view function) const;
};

class JobRegistry {
 public:
  JobRegistry(std::vector<std::filesystem::path> paths, jobs::LabelSet node_labels,
              jobs::LoadOptions options = {});

  struct ReloadResult {
    bool ok = false;                  // the new definitions are in force
    std::vector<jobs::Error> errors;  // every error found; nothing changed when any
    FunctionDelta delta;              // registrations to change (empty when !ok)
    int jobs = 0;                     // jobs in force afterwards
  };
  // From the paths given at construction.
  ReloadResult Reload();
  // From `paths` instead (a jobs repository's export), recording `commit` in the JobSet.
  ReloadResult Reload(const std::vector<std::filesystem::path>& paths, std::string commit);

  [[nodiscard]] std::shared_ptr<const JobSet> current() const;

 private:
  const std::vector<std::filesystem::path> paths_;
  const jobs::LabelSet node_labels_;
  const jobs::LoadOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<const JobSet> current_;
};

}  // namespace gearrun::runner
