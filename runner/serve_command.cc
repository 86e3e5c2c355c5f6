#include "runner/serve_command.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>

#include <cstdlib>
#include <cstring>

#include "jobs/labels.h"
#include "runner/cli.h"
#include "runner/embedded_gearmand.h"
#include "runner/git.h"
#include "runner/git_jobs.h"
#include "runner/job_registry.h"
#include "runner/logging.h"
#include "runner/recovery.h"
#include "runner/state_lock.h"
#include "runner/worker.h"
#include "sandbox/process.h"
#include "sandbox/reaper.h"
#include "sandbox/supervisor.h"
#include "sandbox/unique_fd.h"

namespace gearrun::runner {

int RunServe(const ServeFlags& flags, std::ostream& /*out*/, std::ostream& err) {
  auto config = LoadServeConfig(flags);
  if (!config) {
    err << "gearrun serve: " << config.error() << "\n";
    return kExitUsage;
  }
  const NodeSettings& node = config->node;
  // Found now rather than at every step of every build (each would end NOT_BUILT).
  if (auto ok = sandbox::CheckLimits(node.limits, sandbox::ReadOwnLimits()); !ok) {
    err << "gearrun serve: limits: " << ok.error() << "\n";
    return kExitUsage;
  }

  JobRegistry registry({config->jobs}, jobs::MakeNodeLabels(node.name, node.labels),
                       {.default_kill = config->kill});
  // Local job files are checked before anything starts; a jobs repository is fetched once
  // the state directory is ours (its mirror and exports live there).
  if (!config->jobs_git) {
    auto loaded = registry.Reload();
    if (!loaded.ok) {
      for (const auto& e : loaded.errors) err << e.ToString() << "\n";
      err << "gearrun serve: " << loaded.errors.size()
          << " error(s) in the job files; nothing started (gearrun check " << config->jobs.string()
          << " shows them too)\n";
      return kExitUsage;
    }
  }

  auto lock = StateLock::Acquire(node.state_dir);
  if (!lock) {
    err << "gearrun serve: " << lock.error() << "\n";
    return kExitUsage;
  }

  ConfigureLogging(config->log_level, config->log_format);
  // Before SIGTERM and SIGINT are blocked: a fetch that hangs (libgit2 1.5 has no network
  // timeout) still ends at SIGTERM, with nothing to clean up yet. A SIGHUP waits (a fetch is
  // what it asks for).
  sigset_t hangup;
  sigemptyset(&hangup);
  sigaddset(&hangup, SIGHUP);
  if (::sigprocmask(SIG_BLOCK, &hangup, nullptr) != 0) {
    err << "gearrun serve: sigprocmask: " << std::strerror(errno) << "\n";
    return kExitFailed;
  }
  std::unique_ptr<GitJobs> git_jobs;
  if (config->jobs_git) {
    git_jobs = std::make_unique<GitJobs>(*config->jobs_git, node.state_dir, registry);
    auto first = git_jobs->Load();
    if (!first) {
      spdlog::error("cannot start: {}", first.error());
      return kExitUsage;
    }
    spdlog::info("jobs loaded [jobs: {}, functions: {}, from: {}, commit: {}{}]", first->jobs,
                 registry.current()->functions.size(), RedactUrl(config->jobs_git->url),
                 first->commit, first->offline ? ", offline" : "");
  } else {
    spdlog::info("jobs loaded [jobs: {}, functions: {}, from: {}]", registry.current()->jobs.size(),
                 registry.current()->functions.size(), config->jobs.string());
  }

  // Signals are taken through a signalfd by the event loop; blocked before any thread
  // starts, so that every thread inherits the mask (steps get a clean one: sandbox/spawn.h).
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&signals, s);
  if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
    err << "gearrun serve: sigprocmask: " << std::strerror(errno) << "\n";
    return kExitFailed;
  }
  sandbox::UniqueFd signal_fd(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd) {
    err << "gearrun serve: signalfd: " << std::strerror(errno) << "\n";
    return kExitFailed;
  }

  // Orphans of builds are re-parented to us, so that nothing escapes and all is reaped.
  if (auto ok = sandbox::BecomeSubreaper(); !ok) spdlog::warn("{}", ok.error().ToString());
  // Ends the builds should this process die without ending them (kill -9, a crash).
  if (auto ok = sandbox::StartSupervisor("/proc/self/exe", {"gearrun", "supervise"}); !ok) {
    spdlog::warn(
        "no supervisor: builds would outlive a crash of gearrun until its next start "
        "[error: {}]",
        ok.error().ToString());
  }

  SystemClock clock;
  BuildStore store(node.state_dir);
  for (const auto& l : RecoverLostBuilds(store, clock)) {
    spdlog::warn("build was lost when an earlier runner died [job: {}, number: {}, killed: {}{}]",
                 l.record.job, l.record.number, l.processes_killed,
                 l.error.empty() ? "" : ", error: " + l.error);
  }
  // The embedded default: no server configured and none on 127.0.0.1:4730.
  std::unique_ptr<EmbeddedGearmand> gearmand;
  if (!config->servers_configured) {
    if (Listening(kDefaultServer, std::chrono::seconds(1))) {
      spdlog::info("no server configured: using the Gearman server on {}",
                   kDefaultServer.ToString());
    } else {
      auto started = EmbeddedGearmand::Start(node.state_dir / "gearmand.log");
      if (!started) {
        spdlog::error("{}", started.error());
        return kExitUsage;
      }
      gearmand = std::move(*started);
      spdlog::info(
          "no server configured and none on {}: started {} there; it stops with gearrun "
          "[log: {}]",
          kDefaultServer.ToString(), gearmand->program(),
          (node.state_dir / "gearmand.log").string());
    }
  }

  auto worker = Worker::Create(*config, registry, store, clock);
  if (!worker) {
    spdlog::error("cannot start: {}", worker.error());
    return kExitFailed;
  }
  (*worker)->WatchState([&lock] { return lock->Check(); });
  if (git_jobs) {
    Worker& w = **worker;
    git_jobs->Start([&w] { w.JobsChanged(); });
    w.OnReload([&git_jobs] { git_jobs->PollNow(); });
  }
  int code = (*worker)->Run(signal_fd.get());
  // Before the worker it tells of changes goes.
  const bool fetch_left_behind = git_jobs && !git_jobs->Stop();
  worker->reset();  // every result is out: the embedded gearmand may go
  if (gearmand) {
    gearmand.reset();
    spdlog::info("embedded gearmand stopped");
  }
  spdlog::info("stopped [exit code: {}]", code);
  if (fetch_left_behind) {
    // A thread is still inside libgit2: exit handlers would tear down what it uses.
    spdlog::default_logger()->flush();
    std::_Exit(code);
  }
  return code;
}

}  // namespace gearrun::runner
