#include "runner/run_command.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>

#include "jobs/loader.h"
#include "jobs/request.h"
#include "runner/build_service.h"
#include "runner/check_command.h"
#include "runner/cli.h"
#include "runner/git.h"
#include "runner/git_jobs.h"
#include "runner/recovery.h"
#include "runner/summary.h"
#include "sandbox/process.h"
#include "sandbox/reaper.h"
#include "sandbox/supervisor.h"

namespace gearrun::runner {
namespace {

std::atomic<BuildStopper*> g_stopper{nullptr};

void OnStopSignal(int signo) {
  if (BuildStopper* s = g_stopper.load()) s->StopFromSignal(signo);
}

// Routes SIGINT, SIGTERM and SIGHUP (the terminal went away) to the build while it runs;
// restores the old handlers after. A signal the caller left ignored (a build started in the
// background by a script) stays ignored.
class StopSignals {
 public:
  explicit StopSignals(BuildStopper& stopper) {
    g_stopper.store(&stopper);
    struct sigaction sa {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    // Nothing of the build blocks on the terminal (BuildLog's copy never waits), so calls may
    // simply restart after the handler.
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < kSignals.size(); ++i) {
      ::sigaction(kSignals[i], nullptr, &old_[i]);
      if (old_[i].sa_handler != SIG_IGN) ::sigaction(kSignals[i], &sa, nullptr);
    }
  }
  ~StopSignals() {
    for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
    g_stopper.store(nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> old_{};
};

// Finds the job to run; prints why not and returns null when it cannot.
std::shared_ptr<const jobs::JobSpec> FindJob(const RunOptions& options,
                                             const std::filesystem::path& jobs_dir,
                                             const jobs::LoadOptions& load_options,
                                             std::ostream& err) {
  namespace fs = std::filesystem;
  std::error_code ec;
  bool is_file = fs::is_regular_file(options.target, ec);
  fs::path source = is_file ? fs::path(options.target) : jobs_dir;
  jobs::LoadReport report = jobs::LoadJobs({source}, load_options);

  const jobs::JobSpec* found = nullptr;
  if (is_file) {
    if (report.jobs.size() == 1 && report.ok()) found = &report.jobs.front();
  } else {
    for (const auto& j : report.jobs) {
      if (j.name == options.target) found = &j;
    }
  }
  // The chosen job itself is valid (the loader keeps only valid jobs); errors elsewhere in a
  // directory do not stop it, unless they are about a second job of the same name.
  bool ambiguous = std::any_of(report.errors.begin(), report.errors.end(), [&](const auto& e) {
    return e.code == jobs::ErrorCode::kDuplicate && found != nullptr &&
           e.message.find("'" + found->name + "'") != std::string::npos;
  });
  if (found != nullptr && !ambiguous) {
    for (const auto& e : report.errors) err << e.ToString() << " (warning: ignored)\n";
    return std::make_shared<const jobs::JobSpec>(*found);
  }
  for (const auto& e : report.errors) err << e.ToString() << "\n";
  if (is_file && report.ok() && report.jobs.size() > 1) {
    err << "gearrun run: " << options.target << " defines " << report.jobs.size()
        << " jobs; name one: gearrun run NAME --jobs " << options.target << "\n  jobs:";
    for (const auto& j : report.jobs) err << " " << j.name;
    err << "\n";
  } else if (is_file && report.ok()) {
    err << "gearrun run: " << options.target << " defines no job\n";
  } else if (!is_file && !ambiguous && found == nullptr) {
    err << "gearrun run: no job named '" << options.target << "' in " << source.string();
    if (!report.jobs.empty()) {
      err << " (jobs there:";
      for (const auto& j : report.jobs) err << " " << j.name;
      err << ")";
    }
    err << "\n";
  }
  return nullptr;
}

}  // namespace

int RunRun(const RunOptions& options, std::ostream& out, std::ostream& err) {
  auto config = LoadServeConfig(options.node);
  if (!config) {
    err << "gearrun run: " << config.error() << "\n";
    return kExitUsage;
  }
  if (auto ok = sandbox::CheckLimits(config->node.limits, sandbox::ReadOwnLimits()); !ok) {
    err << "gearrun run: limits: " << ok.error() << "\n";
    return kExitUsage;
  }
  std::filesystem::path jobs_dir = config->jobs;
  std::string jobs_commit;
  if (options.jobs) {
    jobs_dir = *options.jobs;
  } else if (config->jobs_git) {
    // The definitions the node's `gearrun serve` last loaded from the repository.
    auto last = GitJobs::LastGoodJobs(*config->jobs_git, config->node.state_dir);
    if (!last) {
      err << "gearrun run: the configuration takes its jobs from "
          << RedactUrl(config->jobs_git->url) << ", and gearrun serve has not loaded them into "
          << config->node.state_dir.string() << " yet; give --jobs, or start gearrun serve once\n";
      return kExitUsage;
    }
    jobs_dir = last->dir;
    jobs_commit = last->commit;
  }
  auto job = FindJob(options, jobs_dir, {.default_kill = config->kill}, err);
  if (!job) return kExitUsage;

  jobs::RequestParameters params;
  for (const auto& p : options.parameters) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      // Not echoed: the value may be a secret.
      err << "gearrun run: -p takes KEY=VALUE (a name, '=', then the value)\n";
      return kExitUsage;
    }
    params.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  auto bound = jobs::BindParameters(*job, params, config->request_policy);
  if (!bound) {
    err << "gearrun run: " << bound.error().message << "\n";
    return kExitUsage;
  }
  for (const auto& d : bound->dropped) {
    err << "gearrun run: warning: job '" << job->name << "' does not declare parameter '" << d
        << "'; it is not passed on\n";
  }
  const NodeSettings& settings = config->node;

  // Orphans of the build are re-parented to us, so that nothing escapes and all is reaped.
  if (auto ok = sandbox::BecomeSubreaper(); !ok) {
    err << "gearrun run: warning: " << ok.error().ToString() << "\n";
  }
  // Ends the build should this process die without ending it (kill -9, a crash).
  if (auto ok = sandbox::StartSupervisor("/proc/self/exe", {"gearrun", "supervise"}); !ok) {
    err << "gearrun run: warning: no supervisor: " << ok.error().ToString() << "\n";
  }
  out.flush();

  // Builds that an earlier gearrun left running when it died: end what is left of them.
  {
    SystemClock recovery_clock;
    BuildStore recovery_store(settings.state_dir);
    for (const auto& l : RecoverLostBuilds(recovery_store, recovery_clock)) {
      err << "gearrun run: build " << l.record.job << " #" << l.record.number
          << " was lost: " << l.record.reason << (l.error.empty() ? "" : " (" + l.error + ")")
          << "\n";
    }
  }

  // Handlers first, so that a stop during Start() still ends in a final record.
  auto stopper = BuildStopper::Create();
  if (!stopper) {
    err << "gearrun run: " << stopper.error() << "\n";
    return kExitFailed;
  }
  StopSignals signals(**stopper);
  SystemClock clock;
  BuildStore store(settings.state_dir);
  auto build = Build::Start(settings,
                            {.job = job,
                             .params = std::move(*bound),
                             .jobs_commit = jobs_commit,
                             .tee_fd = STDOUT_FILENO,
                             .stopper = stopper->get()},
                            clock, store);
  if (!build) {
    err << "gearrun run: the build could not start: " << build.error().reason << "\n";
    return kExitFailed;
  }
  const BuildRecord* record = &(*build)->Run(nullptr);
  PrintSummary(*record, out);
  out << "log: " << (*build)->log_path().string() << "\n";
  if (!record->state_error.empty()) {
    // The result is not on disk (or its log is incomplete): not a clean success.
    err << "gearrun run: the build was not recorded whole: " << record->state_error << "\n";
    return kExitFailed;
  }
  return BuildExitCode(record->result);
}

int BuildExitCode(Result result) {
  switch (result) {
    case Result::kSuccess:
      return kExitOk;
    case Result::kAborted:
      return kExitAborted;
    default:
      return kExitFailed;
  }
}

}  // namespace gearrun::runner
