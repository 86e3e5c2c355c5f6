// Build: one build of a job on this node, from getting its number to its final record.
// The same code path serves `gearrun run` and builds taken from Gearman.
//
//   BuildStore store(settings.state_dir);
//   auto build = Build::Start(settings, std::move(request), clock, store);
//   if (!build) Report(build.error().reason);        // NOT_BUILT; record written if numbered
//   else {
//     Announce((*build)->number());                  // e.g. WORK_DATA
//     const BuildRecord& record = (*build)->Run(&observer);
//   }
//
// `settings`, the clock and the store must outlive the Build.
// Start() gives out the build number, writes a RUNNING record, opens the log, takes a
// workspace and a sandbox container. Every text that leaves a Build (its record, the reason
// of a failed start, its log) has the request's secret values masked; the unique id is the
// client's and is kept as sent. Run() runs the steps (runner/build.h) and writes the
// final record atomically. Stop() may be called from any thread at any time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "jobs/job_spec.h"
#include "jobs/request.h"
#include "runner/build.h"
#include "runner/build_log.h"
#include "runner/build_record.h"
#include "runner/clock.h"
#include "runner/step_executor.h"
#include "runner/workspace.h"
#include "sandbox/container.h"

namespace gearrun::runner {

// Node-level settings that shape every build.
struct NodeSettings {
  std::string name;                      // the node name; also one of its labels
  std::vector<std::string> labels;       // further labels
  std::filesystem::path state_dir;       // build records, numbers, logs
  std::filesystem::path workspace_root;  // empty: <state_dir>/workspace
  // Variables a step inherits from the runner's own environment, when set there.
  std::vector<std::string> env_allowlist = {"PATH", "HOME", "LANG", "TZ"};
  std::uint64_t log_cap_bytes = std::uint64_t{256} << 20;  // step output per build; 0: none
  sandbox::ResourceLimits limits;                          // per process of a step
  sandbox::ContainmentMode containment = sandbox::ContainmentMode::kAuto;
  std::optional<std::uint64_t> memory_max_bytes;  // per build, where cgroups allow
  std::optional<std::uint64_t> pids_max;          // per build, where cgroups allow
};

struct BuildRequest {
  std::shared_ptr<const jobs::JobSpec> job;
  jobs::BoundRequest params;
  std::string unique;       // Gearman unique id; empty for local builds
  std::string jobs_commit;  // the jobs repository's commit `job` came from; empty: local files
  int executor = 0;
  int tee_fd = -1;  // copy the log here as it is written (gearrun run: the terminal)
  // The build's stop control, when the caller must be able to stop it before Start()
  // returns (signal handlers installed first). Not owned; must outlive the Build.
  // Null: the Build makes its own.
  BuildStopper* stopper = nullptr;
};

struct StartFailure {
  // kState: the state directory could not be written (a node problem, not the job's).
  enum class Kind { kBuild, kState };
  std::string reason;                  // secrets masked
  std::optional<std::int64_t> number;  // when a number (and a NOT_BUILT record) exists
  Kind kind = Kind::kBuild;
};

class Build {
 public:
  [[nodiscard]] static tl::expected<std::unique_ptr<Build>, StartFailure> Start(
      const NodeSettings& settings, BuildRequest request, Clock& clock, BuildStore& store);

  [[nodiscard]] std::int64_t number() const { return record_.number; }
  [[nodiscard]] const BuildRecord& record() const { return record_; }
  [[nodiscard]] const std::filesystem::path& log_path() const { return log_.path(); }
  [[nodiscard]] int total_steps() const { return static_cast<int>(request_.job->steps.size()); }

  // Runs every step and finally step; writes and returns the final record. When its log or
  // its record could not be written, the record's state_error says so (and the store keeps
  // the record to write it later: BuildStore::RetryPending).
  const BuildRecord& Run(BuildObserver* observer);
  // After Run(): whether the final record reached the disk (when not, the store keeps it).
  [[nodiscard]] bool recorded() const { return recorded_; }

  // Thread-safe. Returns false when the build was already being stopped.
  bool Stop(const std::string& who) { return stopper_->Stop(who); }
  // For signal handlers (async-signal-safe).
  [[nodiscard]] BuildStopper& stopper() { return *stopper_; }

  // Thread-safe: stores a description (set_description) in the record, now and in the
  // final record. Errors are those of writing the record.
  [[nodiscard]] tl::expected<void, std::string> SetDescription(std::string html);

  // A Build dropped without Run() leaves a final record saying so (never RUNNING).
  ~Build();
  Build(const Build&) = delete;
  Build& operator=(const Build&) = delete;

 private:
  Build(const NodeSettings& settings, BuildRequest request, Clock& clock, BuildStore& store,
        BuildRecord record, BuildLog log, Workspace workspace,
        std::unique_ptr<StepExecutor> executor, std::unique_ptr<BuildStopper> own_stopper,
        BuildStopper* stopper);

  const NodeSettings& settings_;
  BuildRequest request_;
  std::mutex record_mu_;  // record_ is written by Run() and by SetDescription()
  Clock& clock_;
  BuildStore& store_;
  BuildRecord record_;
  BuildLog log_;
  Workspace workspace_;
  std::unique_ptr<StepExecutor> executor_;
  std::unique_ptr<BuildStopper> own_stopper_;  // when the request brought none
  BuildStopper* stopper_;
  Clock::TimePoint started_;
  std::string limits_;  // which build-wide limits apply, for the log
  bool recorded_ = false;
};

// ISO 8601 UTC with milliseconds: "2026-11-23T02:22:58.123Z".
[[nodiscard]] std::string FormatTimestamp(std::chrono::system_clock::time_point t);

}  // namespace gearrun::runner
