// Worker: the Gearman side of `gearrun serve`. The node's executors and its manager, all
// on one event-loop thread, with each build on a thread of its own.
//
// What it does (shared/protocol.md has the contract; docs/zuul.md what clients see):
//   - one connection per executor per server (client id <node>_exec-<i>) registering the
//     node's build functions, and one manager connection per server (<node>_manager)
//     registering stop:<node> and set_description:<node>;
//   - the node's single right to grab: at most one GRAB_JOB_UNIQ outstanding for all its
//     executors, sent only while an executor is idle and the node is online and not
//     draining; an OFFLINE_NODE_WHEN_COMPLETE build (and with `once`, the first build)
//     keeps it for its whole run, so nothing else starts on the node;
//   - builds: WORK_DATA (start payload), WORK_STATUS after it and after each step, then
//     WORK_COMPLETE (final payload) on the connection the request came from;
//     WORK_EXCEPTION + WORK_FAIL when a request is bad or the build cannot start; WORK_FAIL
//     for a function the node no longer has;
//   - signals (a signalfd given to Run()): SIGHUP re-reads the jobs off the loop thread (or
//     does what OnReload says: fetch the jobs repository) and sends the registration delta;
//     JobsChanged() does the same for definitions reloaded on another thread; SIGTERM/SIGINT drains
//     (first), aborts running builds (second), also stops their finally steps (third).
//
//   Worker worker(config, registry, store, clock);
//   int code = worker.Run(signal_fd);   // returns when drained, or after the --once build
//
// The registry, store and clock must outlive the Worker.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runner/build_service.h"
#include "runner/config.h"
#include "runner/gearman_connection.h"
#include "runner/job_registry.h"
#include "runner/payload.h"
#include "sandbox/unique_fd.h"

namespace gearrun::runner {

class Worker {
 public:
  [[nodiscard]] static tl::expected<std::unique_ptr<Worker>, std::string> Create(
      const ServeConfig& config, JobRegistry& registry, BuildStore& store, Clock& clock);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs until the node has drained after Shutdown(), or, with `once`, until its one build
  // has ended and its result was sent. `signal_fd`: a signalfd for SIGHUP (reload) and
  // SIGTERM/SIGINT (shutdown), or -1. Returns the exit code: 0, or with `once` 0 when the
  // build succeeded and 1 otherwise.
  int Run(int signal_fd);

  // What SIGHUP does instead of re-reading the job files (jobs from git: fetch now). Call
  // before Run(); runs on the loop thread, so it must not block.
  void OnReload(std::function<void()> reload);
  // The registry's definitions changed (reloaded on another thread): registrations follow.
  // Thread-safe.
  void JobsChanged();
  // Called about once a second on a thread of its own (a hung file system must not stall
  // the loop): an error means the state directory is no longer this node's (deleted or
  // replaced: another gearrun could now take it). The node then stops taking builds, drains
  // and exits with 1. Call before Run().
  void WatchState(std::function<tl::expected<void, std::string>()> check);

 private:
  enum class GrabState { kAwake, kGrabbing, kSleeping };
  struct Link {
    GearmanConnection conn;
    int executor;        // -1: the manager
    std::size_t server;  // index into config_.servers and servers_
    GrabState grab = GrabState::kAwake;
    std::chrono::steady_clock::time_point grab_sent{};
    bool logged_down = false;  // the current outage has been logged
  };
  // What the node knows of a server's health. A server must show it answers (any packet on
  // any connection to it) before its executor connections get the node's right to grab, and
  // again after a GRAB it left unanswered: a hung server still accepts connections, and each
  // GRAB sent to it would hold the right (and the builds of every other server) for the
  // reply wait. While it is not answering, its manager connection asks it (a GRAB, which
  // never assigns a build) at growing intervals.
  struct ServerHealth {
    bool answering = false;
    std::chrono::steady_clock::time_point next_probe{};
    std::chrono::milliseconds probe_interval{1000};
  };
  struct RunningBuild;
  struct Event {
    enum class Kind {
      kBuildStarted,
      kStartFailed,
      kStepFinished,
      kBuildFinished,
      kJobsChanged,
      kStateProbed,
      kStateLost,
      kReloaded
    } kind;
    RunningBuild* build = nullptr;
    int finished = 0;
    int total = 0;
    // kStateProbed: why the state directory still cannot be written, and why records kept
    // for later still cannot be; kStateLost: why the directory is not ours any more.
    std::string error;
    std::string records_error;
    std::shared_ptr<const JobRegistry::ReloadResult> reload;  // kReloaded
  };
  class Observer;

  Worker(const ServeConfig& config, JobRegistry& registry, BuildStore& store, Clock& clock,
         sandbox::UniqueFd wake);

  void Post(Event event);
  void HandleEvents();
  void HandleSignals(int signal_fd);
  void HandleReady(Link& link, short revents, std::chrono::steady_clock::time_point now);
  // A connection went down or failed to come up: logged once per outage; its GRAB (and
  // with it the node's right to grab) is given back.
  void OnLinkDown(Link& link, bool was_up, const std::string& error);
  // The server of `link` left a GRAB unanswered: no grab right for it until it answers.
  void OnServerSilent(const Link& link, std::chrono::steady_clock::time_point now);
  // Wakes the manager connections of silent servers (a GRAB asks them), with backoff.
  void ProbeSilentServers(std::chrono::steady_clock::time_point now);
  void HandlePacket(Link& link, const Packet& packet);
  void HandleBuildRequest(Link& link, const std::string& handle, const std::string& function,
                          const std::string& unique, const std::string& workload);
  void HandleManagerRequest(Link& link, const std::string& handle, const std::string& function,
                            const std::string& workload);
  void HandleBuildStarted(RunningBuild& build);
  void HandleStartFailed(RunningBuild& build);
  void HandleStepFinished(RunningBuild& build, int finished, int total);
  void Release(RunningBuild& build);
  void HandleBuildFinished(RunningBuild& build);
  // The state directory cannot be written (a record or log write failed): no builds are
  // taken (the functions are unregistered) until a probe finds it writable again. Records
  // the store keeps for later are retried with each probe until they are written.
  void StateUnwritable(const std::string& error);
  void MaybeProbeState(std::chrono::steady_clock::time_point now);
  void HandleStateProbed(const Event& event);
  void HandleStateLost(const std::string& error);
  void StartStateWatch();
  void StopStateWatch();
  // SIGHUP: re-reads the job files on a thread of its own (a big or hostile set of files
  // must not stall the loop); a SIGHUP during a reload asks for one more after it.
  void DoReload();
  void HandleReloaded(const JobRegistry::ReloadResult& result);
  void HandleJobsChanged();
  void DoShutdown();
  void GoOffline(const std::string& why);
  void ApplyFunctions();
  void MaybeGrab(std::chrono::steady_clock::time_point now);
  void Refuse(Link& link, const std::string& handle, const std::string& reason);
  bool Deliver(RunningBuild& build, Command command, std::vector<std::string> args);
  // Derived from running_: the node's state is what its builds are.
  [[nodiscard]] bool ExecutorBusy(int executor) const;
  // A build taken on this connection runs: its registrations must not change until the
  // build has ended, because gearmand re-queues the jobs of a function a connection drops
  // (CANT_DO, RESET_ABILITIES), and then refuses the running build's result.
  [[nodiscard]] bool LinkBusy(const Link& link) const;
  // A build taken has no number yet: the node may not grab.
  [[nodiscard]] bool Starting() const;
  // An OFFLINE_NODE_WHEN_COMPLETE (or --once) build holds the node's right to grab.
  [[nodiscard]] bool Exclusive() const;
  // No build, no executor GRAB open, and draining or done with --once: about to exit; the
  // manager grabs no more.
  [[nodiscard]] bool Closing() const;
  [[nodiscard]] bool Done() const;
  void FlushAndClose();

  const ServeConfig& config_;
  JobRegistry& registry_;
  BuildStore& store_;
  Clock& clock_;
  std::vector<std::unique_ptr<Link>> executor_links_;  // executor-major: [i * servers + s]
  std::vector<std::unique_ptr<Link>> manager_links_;
  std::vector<ServerHealth> servers_;                   // by server index
  std::vector<std::unique_ptr<RunningBuild>> running_;  // from assignment to the end
  // The started ones (with a number), for stop: and set_description:.
  std::map<std::pair<std::string, std::int64_t>, RunningBuild*> by_number_;

  Link* grab_link_ = nullptr;  // the executor link whose GRAB is outstanding
  bool online_ = true;
  bool draining_ = false;
  int shutdowns_ = 0;
  std::optional<std::chrono::steady_clock::time_point> drain_deadline_;
  bool once_done_ = false;  // --once: the build has ended and its result went out
  int exit_code_ = 0;
  std::size_t next_server_ = 0;

  std::function<void()> on_reload_;
  std::function<tl::expected<void, std::string>()> state_check_;
  std::string state_problem_;     // non-empty: the state directory cannot be written
  bool records_pending_ = false;  // the store keeps records that could not be written
  std::string last_probe_error_;  // logged once, not at every probe
  bool state_lost_ = false;       // it is not ours any more (WatchState)
  std::chrono::steady_clock::time_point next_state_probe_{};
  std::thread state_probe_;  // at most one probe at a time
  std::thread state_watch_;  // runs state_check_
  std::mutex state_watch_mu_;
  std::condition_variable state_watch_cv_;
  bool state_watch_stop_ = false;
  std::thread reload_;  // at most one reload at a time
  bool reload_again_ = false;

  sandbox::UniqueFd wake_;  // eventfd: events are waiting
  std::mutex events_mu_;
  std::deque<Event> events_;
};

}  // namespace gearrun::runner
