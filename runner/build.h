// RunBuild: one build of a job, from its first step to its last `finally` step, with
// retries, timeouts, stops and the result. It knows nothing of Gearman, numbering or where
// records go (runner/build_service.h does that); processes are started through a
// StepExecutor and time is read through a Clock, so all of it can be tested with fakes.
//
// Which result when (shared/protocol.md, "Which result when"):
//   every step and finally step succeeded .......................... SUCCESS
//   a continue_on_error step failed, nothing else did ............... UNSTABLE
//   a step failed after its last attempt, or a finally step failed .. FAILURE
//   a step's last attempt timed out, or the job's timeout expired ... ABORTED (reason: which)
//   stopped (stop request, Ctrl-C, SIGTERM) ......................... ABORTED (reason: who)
//   the first step could not be started at all ...................... NOT_BUILT
// Steps after the one that ended the build are NOT_RUN; finally steps always run (their
// own timeouts apply, the job's does not). After them everything the build left running is
// killed with the job's kill ladder.
//
// Thread safety: RunBuild runs on one thread; BuildStopper may be used from any thread
// and StopFromSignal() from a signal handler.
#pragma once

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "jobs/job_spec.h"
#include "runner/build_log.h"
#include "runner/build_record.h"
#include "runner/clock.h"
#include "runner/step_executor.h"
#include "sandbox/cancel.h"

namespace gearrun::runner {

// Stops a build. The first stop ends the running step through its kill ladder and skips the
// remaining steps; finally steps still run. A second stop ends the finally steps too.
class BuildStopper {
 public:
  // Not movable (other threads and signal handlers hold on to it): handed out on the heap.
  [[nodiscard]] static tl::expected<std::unique_ptr<BuildStopper>, std::string> Create();

  // Returns false when the build was already being stopped (then it escalates: finally
  // steps are stopped as well). `who` goes into the reason: "stopped by <who>".
  bool Stop(const std::string& who);
  // Like a first Stop(); never escalates: returns false, changing nothing, when the build
  // is already being stopped. For stops that must not cut the finally steps short (a
  // repeated stop request, a drain timeout after a stop).
  bool StopSteps(const std::string& who);
  // Async-signal-safe form of Stop() for SIGINT/SIGTERM handlers.
  void StopFromSignal(int signo) noexcept;

  [[nodiscard]] bool stopping() const { return stops_.load() > 0; }
  [[nodiscard]] std::string who() const;
  [[nodiscard]] const sandbox::CancelToken& steps_token() const { return steps_; }
  [[nodiscard]] const sandbox::CancelToken& finally_token() const { return finally_; }

 private:
  BuildStopper(sandbox::CancelToken steps, sandbox::CancelToken finally)
      : steps_(std::move(steps)), finally_(std::move(finally)) {}

  sandbox::CancelToken steps_;
  sandbox::CancelToken finally_;
  std::atomic<int> stops_{0};
  std::atomic<int> signal_{0};
  mutable std::mutex mu_;
  std::string who_;
};

// Told about progress, on the build's thread.
class BuildObserver {
 public:
  virtual ~BuildObserver() = default;
  // After each step of `steps` (not finally): how many have finished, of how many.
  virtual void StepFinished(int finished, int total) = 0;
};

struct BuildPlan {
  const jobs::JobSpec* job = nullptr;
  std::map<std::string, std::string> parameters;  // bound request parameters
  std::map<std::string, std::string> base_env;    // from the node's allowlist (PATH, HOME...)
  std::map<std::string, std::string> runner_env;  // BUILD_NUMBER, WORKSPACE, ... (win over all)
  std::filesystem::path workspace;
};

struct BuildOutcome {
  Result result = Result::kSuccess;
  std::string reason;
  std::vector<StepRecord> steps;
  int leftovers_killed = 0;
};

// The environment of one step: base_env, then the step's env (the job's merged with the
// step's own), then the parameters, then the runner's variables; later ones win.
[[nodiscard]] std::vector<std::string> StepEnvironment(const BuildPlan& plan,
                                                       const jobs::StepSpec& step);

BuildOutcome RunBuild(const BuildPlan& plan, StepExecutor& executor, Clock& clock, BuildLog& log,
                      BuildStopper& stopper, BuildObserver* observer);

// "250ms", "1.2s", "1m30s", "2h5m": for people reading logs and summaries.
[[nodiscard]] std::string HumanDuration(std::chrono::milliseconds d);

}  // namespace gearrun::runner
