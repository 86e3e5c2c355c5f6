#include "runner/worker.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "jobs/request.h"
#include "sandbox/reaper.h"

namespace gearrun::runner {
namespace {

using SteadyClock = std::chrono::steady_clock;

// How long a GRAB may stay unanswered before its connection is given up: servers answer at
// once, so a longer silence is a hung server, which must not keep the node's single right
// to grab (and its other servers' builds) for itself. Also bounds the wait at exit.
constexpr std::chrono::seconds kGrabReplyWait{10};
// How often a state directory that could not be written is tried again.
constexpr std::chrono::seconds kStateProbeInterval{5};
// The longest wait between two questions to a server that has stopped answering.
constexpr std::chrono::milliseconds kMaxProbeInterval{60'000};
// How long results waiting in send buffers may take to leave at exit.
constexpr std::chrono::seconds kFlushAtExit{5};

std::string ExecutorId(const std::string& node, int i) {
  return node + "_exec-" + std::to_string(i);
}

std::int64_t MillisUntil(SteadyClock::time_point when, SteadyClock::time_point now) {
  return std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(when - now).count());
}

}  // namespace

struct Worker::RunningBuild {
  std::unique_ptr<BuildStopper> stopper;  // made before the thread: stops work at any time
  // Set by the build thread before it posts kBuildStarted (build) or kStartFailed (the
  // rest); read by the loop only after that event.
  std::unique_ptr<Build> build;
  std::string start_error;
  std::optional<std::int64_t> failed_number;
  StartFailure::Kind start_failure_kind = StartFailure::Kind::kBuild;
  std::promise<void> announced;  // the loop has sent WORK_DATA: steps may start
  bool announced_set = false;
  std::string job;  // for logs
  Link* link = nullptr;
  std::uint64_t generation = 0;
  std::string handle;
  int executor = 0;
  bool exclusive = false;
  PayloadContext context;
  std::atomic<bool> finished{false};
  std::thread thread;
};

// Runs on the build's thread; hands progress to the loop.
class Worker::Observer : public BuildObserver {
 public:
  Observer(Worker& worker, RunningBuild& build) : worker_(worker), build_(build) {}
  void StepFinished(int finished, int total) override {
    worker_.Post({.kind = Event::Kind::kStepFinished,
                  .build = &build_,
                  .finished = finished,
                  .total = total});
  }

 private:
  Worker& worker_;
  RunningBuild& build_;
};

tl::expected<std::unique_ptr<Worker>, std::string> Worker::Create(const ServeConfig& config,
                                                                  JobRegistry& registry,
                                                                  BuildStore& store, Clock& clock) {
  sandbox::UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return tl::unexpected(std::string("eventfd: ") + std::strerror(errno));
  return std::unique_ptr<Worker>(new Worker(config, registry, store, clock, std::move(wake)));
}

Worker::Worker(const ServeConfig& config, JobRegistry& registry, BuildStore& store, Clock& clock,
               sandbox::UniqueFd wake)
    : config_(config),
      registry_(registry),
      store_(store),
      clock_(clock),
      servers_(config.servers.size()),
      wake_(std::move(wake)) {
  const std::string& node = config_.node.name;
  for (int i = 0; i < config_.executors; ++i) {
    for (std::size_t s = 0; s < config_.servers.size(); ++s) {
      executor_links_.push_back(std::make_unique<Link>(
          Link{.conn = GearmanConnection(config_.servers[s], ExecutorId(node, i)),
               .executor = i,
               .server = s}));
    }
  }
  for (std::size_t s = 0; s < config_.servers.size(); ++s) {
    auto link = std::make_unique<Link>(
        Link{.conn = GearmanConnection(config_.servers[s], node + "_manager"),
             .executor = -1,
             .server = s});
    link->conn.SetFunctions({"stop:" + node, "set_description:" + node});
    manager_links_.push_back(std::move(link));
  }
  ApplyFunctions();
}

Worker::~Worker() {
  StopStateWatch();
  if (state_probe_.joinable()) state_probe_.join();
  if (reload_.joinable()) reload_.join();
  // Run() returns only when no build is left; this is for a Worker destroyed otherwise.
  for (auto& b : running_) {
    b->stopper->Stop("the runner shutting down");
    if (!b->announced_set) b->announced.set_value();
    if (b->thread.joinable()) b->thread.join();
  }
}

void Worker::Post(Event event) {
  {
    std::lock_guard lock(events_mu_);
    events_.push_back(event);
  }
  std::uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

int Worker::Run(int signal_fd) {
  StartStateWatch();
  spdlog::info("serving [node: {}, executors: {}, servers: {}, functions: {}]", config_.node.name,
               config_.executors, config_.servers.size(), registry_.current()->functions.size());
  std::vector<pollfd> fds;
  std::vector<Link*> polled;
  SteadyClock::time_point last_reap{};
  for (;;) {
    auto now = SteadyClock::now();
    // A GRAB is never abandoned on a live connection (a job could be assigned to nobody):
    // its reply is awaited, and a connection that gives none is closed.
    // Bytes still arriving (the rest of a long packet before the reply) count as answering.
    for (auto* links : {&executor_links_, &manager_links_}) {
      for (auto& l : *links) {
        if (l->grab != GrabState::kGrabbing ||
            now - std::max(l->grab_sent, l->conn.last_received()) <= kGrabReplyWait) {
          continue;
        }
        std::string why =
            "no reply to GRAB_JOB_UNIQ within " + std::to_string(kGrabReplyWait.count()) + "s";
        OnServerSilent(*l, now);
        l->conn.Drop(why, now, GearmanConnection::DropKind::kUnresponsive);
        OnLinkDown(*l, /*was_up=*/true, why);
      }
    }
    if (drain_deadline_ && now >= *drain_deadline_) {
      drain_deadline_.reset();
      spdlog::warn("drain timeout reached, aborting running builds [builds: {}]", running_.size());
      for (auto& b : running_) b->stopper->StopSteps("the drain timeout of the runner");
    }
    if (Done()) break;

    std::int64_t timeout_ms = 1000;
    fds.clear();
    polled.clear();
    fds.push_back({.fd = wake_.get(), .events = POLLIN, .revents = 0});
    fds.push_back({.fd = signal_fd, .events = POLLIN, .revents = 0});
    auto add_links = [&](std::vector<std::unique_ptr<Link>>& links) {
      for (auto& l : links) {
        if (l->conn.MaybeConnect(now) && l->conn.state() == GearmanConnection::State::kDown) {
          OnLinkDown(*l, /*was_up=*/false, l->conn.last_error());
        }
        if (l->conn.state() == GearmanConnection::State::kDown) {
          timeout_ms = std::min(timeout_ms, MillisUntil(l->conn.next_attempt(), now));
          continue;
        }
        fds.push_back({.fd = l->conn.fd(), .events = l->conn.PollEvents(), .revents = 0});
        polled.push_back(l.get());
      }
    };
    add_links(executor_links_);
    add_links(manager_links_);
    if (drain_deadline_) timeout_ms = std::min(timeout_ms, MillisUntil(*drain_deadline_, now));

    int n = ::poll(fds.data(), fds.size(), static_cast<int>(timeout_ms));
    if (n < 0 && errno != EINTR) {
      spdlog::critical("poll failed: {}", std::strerror(errno));
      std::abort();
    }
    now = SteadyClock::now();
    if (fds[0].revents != 0) HandleEvents();
    if (signal_fd >= 0 && fds[1].revents != 0) HandleSignals(signal_fd);
    for (std::size_t i = 0; i < polled.size(); ++i) {
      HandleReady(*polled[i], fds[i + 2].revents, now);
    }
    ProbeSilentServers(now);
    MaybeProbeState(now);
    MaybeGrab(now);
    // Orphans of builds are ours (subreaper); each build also reaps after each step. Once
    // a second is enough, not at every packet.
    if (now - last_reap >= std::chrono::seconds(1)) {
      sandbox::ReapOrphans();
      last_reap = now;
    }
  }
  StopStateWatch();
  FlushAndClose();
  return exit_code_;
}

bool Worker::Done() const {
  // Last, the manager: no new grabs, and the outstanding ones answered (or timed out).
  return Closing() && std::none_of(manager_links_.begin(), manager_links_.end(),
                                   [](const auto& l) { return l->grab == GrabState::kGrabbing; });
}

void Worker::HandleReady(Link& link, short revents, SteadyClock::time_point now) {
  bool was_up = link.conn.up();
  auto ready = link.conn.OnReady(revents, now);
  if (ready.connected) {
    spdlog::info("connected [server: {}, client id: {}, functions: {}]",
                 link.conn.server().ToString(), link.conn.client_id(),
                 link.conn.registered().size());
    link.logged_down = false;
    link.grab = GrabState::kAwake;
  }
  if (!ready.packets.empty()) {
    ServerHealth& health = servers_[link.server];
    if (!health.answering && health.next_probe != SteadyClock::time_point{}) {
      spdlog::info("server answers again [server: {}]", link.conn.server().ToString());
    }
    health = ServerHealth{.answering = true};
  }
  for (const auto& p : ready.packets) {
    bool assignment = p.command == Command::kJobAssign || p.command == Command::kJobAssignUniq ||
                      p.command == Command::kJobAssignAll;
    if (assignment && !ready.error.empty()) {
      // The connection is gone: gearmand has re-queued the job (geard failed it). Running
      // it here would be a build nobody hears of.
      spdlog::warn(
          "assignment dropped with its connection [server: {}, client id: {}, "
          "function: {}]",
          link.conn.server().ToString(), link.conn.client_id(), p.args.at(1));
      if (grab_link_ == &link) grab_link_ = nullptr;
      continue;
    }
    HandlePacket(link, p);
  }
  if (!ready.error.empty()) OnLinkDown(link, was_up || ready.connected, ready.error);
}

void Worker::OnLinkDown(Link& link, bool was_up, const std::string& error) {
  if (was_up) {
    spdlog::warn("disconnected, will reconnect [server: {}, client id: {}, error: {}]",
                 link.conn.server().ToString(), link.conn.client_id(), error);
  } else if (!link.logged_down) {  // once per outage, not at every attempt
    spdlog::warn("cannot connect, will retry [server: {}, client id: {}, error: {}]",
                 link.conn.server().ToString(), link.conn.client_id(), error);
  }
  link.logged_down = true;
  link.grab = GrabState::kAwake;  // what it held is given back
  if (grab_link_ == &link) grab_link_ = nullptr;
}

void Worker::OnServerSilent(const Link& link, SteadyClock::time_point now) {
  ServerHealth& health = servers_[link.server];
  if (health.answering || health.next_probe == SteadyClock::time_point{}) {
    spdlog::warn(
        "server did not answer a GRAB_JOB_UNIQ in {}s: its connections get no builds until it "
        "answers again [server: {}, client id: {}]",
        kGrabReplyWait.count(), link.conn.server().ToString(), link.conn.client_id());
    health.probe_interval = std::chrono::seconds(1);
  }
  health.answering = false;
  health.next_probe = now + health.probe_interval;
}

void Worker::ProbeSilentServers(SteadyClock::time_point now) {
  for (auto& l : manager_links_) {
    ServerHealth& health = servers_[l->server];
    if (health.answering || !l->conn.up() || l->grab != GrabState::kSleeping ||
        now < health.next_probe) {
      continue;
    }
    l->grab = GrabState::kAwake;  // MaybeGrab asks it
    health.next_probe = now + health.probe_interval;
    health.probe_interval = std::min(health.probe_interval * 2, kMaxProbeInterval);
  }
}

void Worker::HandlePacket(Link& link, const Packet& packet) {
  switch (packet.command) {
    case Command::kNoop:
      if (link.grab == GrabState::kSleeping) link.grab = GrabState::kAwake;
      return;
    case Command::kNoJob:
      if (link.grab != GrabState::kGrabbing) return;
      link.grab = GrabState::kSleeping;
      link.conn.Send(Command::kPreSleep);
      if (grab_link_ == &link) grab_link_ = nullptr;
      return;
    case Command::kJobAssign:
    case Command::kJobAssignUniq:
    case Command::kJobAssignAll: {
      // JOB_ASSIGN: handle, function, workload; _UNIQ adds the unique id before the
      // workload; _ALL also a reducer after it.
      const auto& a = packet.args;
      const std::string& handle = a[0];
      const std::string& function = a[1];
      std::string unique = packet.command == Command::kJobAssign ? "" : a[2];
      const std::string& workload = a.back();
      link.grab = GrabState::kAwake;
      if (grab_link_ == &link) grab_link_ = nullptr;
      if (packet.oversized > 0 || workload.size() > kMaxWorkloadBytes) {
        std::size_t size = packet.oversized > 0 ? packet.oversized : workload.size();
        spdlog::warn("request refused, too large [function: {}, handle: {}, bytes: {}]", function,
                     handle, size);
        Refuse(link, handle,
               "the request is " + std::to_string(size) + " bytes; a workload may be at most " +
                   std::to_string(kMaxWorkloadBytes));
        return;
      }
      if (link.executor < 0) {
        HandleManagerRequest(link, handle, function, workload);
      } else {
        HandleBuildRequest(link, handle, function, unique, workload);
      }
      return;
    }
    case Command::kError:
      // gearmand answers the WORK_FAIL that follows a WORK_EXCEPTION this way.
      spdlog::debug("server error [server: {}, client id: {}, code: {}, text: {}]",
                    link.conn.server().ToString(), link.conn.client_id(), packet.args[0],
                    packet.args[1]);
      return;
    default:
      spdlog::debug("unexpected packet ignored [server: {}, client id: {}, packet: {}]",
                    link.conn.server().ToString(), link.conn.client_id(),
                    CommandName(packet.command));
      return;
  }
}

void Worker::Refuse(Link& link, const std::string& handle, const std::string& reason) {
  // Both: gearmand turns the exception into WORK_FAIL for clients that did not ask for
  // exceptions, and a client that did must still see the request end.
  link.conn.Send(Command::kWorkException, {handle, reason});
  link.conn.Send(Command::kWorkFail, {handle});
}

void Worker::HandleBuildRequest(Link& link, const std::string& handle, const std::string& function,
                                const std::string& unique, const std::string& workload) {
  const int executor = link.executor;
  const std::string& node = config_.node.name;
  if (!online_ || draining_ || once_done_ || ExecutorBusy(executor) || !state_problem_.empty()) {
    std::string why = draining_                 ? "is shutting down"
                      : !state_problem_.empty() ? "cannot write its state directory"
                                                : "is offline";
    spdlog::info("request refused, node {} [function: {}, handle: {}]", why, function, handle);
    Refuse(link, handle, "node " + node + " " + why + "; run the build elsewhere");
    return;
  }
  auto jobs = registry_.current();
  auto job = jobs->FindByFunction(function);
  if (!job || link.conn.registered().count(function) == 0) {
    spdlog::warn("request for a function this node does not have [function: {}, handle: {}]",
                 function, handle);
    link.conn.Send(Command::kWorkFail, {handle});
    return;
  }
  auto bound = jobs::BindRequest(*job, workload, config_.request_policy);
  if (!bound) {
    spdlog::warn("bad request [function: {}, handle: {}, reason: {}]", function, handle,
                 bound.error().message);
    Refuse(link, handle, bound.error().message);
    return;
  }
  const bool exclusive = bound->offline_when_complete || config_.once;
  auto stopper = BuildStopper::Create();
  if (!stopper) {
    Refuse(link, handle, "build could not start: " + stopper.error());
    return;
  }

  // The build starts on its own thread (numbering, records and the workspace touch the
  // disk; a clean workspace may take long to empty). The node keeps its right to grab
  // until the build has a number, and the steps wait until WORK_DATA is out.
  auto running = std::make_unique<RunningBuild>();
  RunningBuild& rb = *running;
  rb.stopper = std::move(*stopper);
  rb.job = job->name;
  rb.link = &link;
  rb.generation = link.conn.generation();
  rb.handle = handle;
  rb.executor = executor;
  rb.exclusive = exclusive;
  rb.context = {.manager = node, .worker = ExecutorId(node, executor), .url = ""};
  BuildRequest request{.job = job,
                       .params = std::move(*bound),
                       .unique = unique,
                       .jobs_commit = jobs->commit,
                       .executor = executor,
                       .stopper = rb.stopper.get()};
  rb.thread = std::thread(
      [this, &rb, request = std::move(request), announced = rb.announced.get_future()]() mutable {
        auto build = Build::Start(config_.node, std::move(request), clock_, store_);
        if (!build) {
          rb.start_error = build.error().reason;
          rb.failed_number = build.error().number;
          rb.start_failure_kind = build.error().kind;
          Post({.kind = Event::Kind::kStartFailed, .build = &rb});
          return;
        }
        rb.build = std::move(*build);
        Post({.kind = Event::Kind::kBuildStarted, .build = &rb});
        announced.wait();
        Observer observer(*this, rb);
        rb.build->Run(&observer);
        rb.finished.store(true);
        Post({.kind = Event::Kind::kBuildFinished, .build = &rb});
      });
  running_.push_back(std::move(running));
}

void Worker::HandleBuildStarted(RunningBuild& rb) {
  const BuildRecord& record = rb.build->record();
  spdlog::info("build started [job: {}, number: {}, executor: {}, server: {}, unique: {}{}]",
               record.job, record.number, rb.executor, rb.link->conn.server().ToString(),
               record.unique, rb.exclusive ? ", offline when complete" : "");
  Deliver(rb, Command::kWorkData, {rb.handle, StartPayload(record, rb.context)});
  Deliver(rb, Command::kWorkStatus, {rb.handle, "0", std::to_string(rb.build->total_steps())});
  rb.announced.set_value();
  rb.announced_set = true;
  by_number_[std::make_pair(record.job, record.number)] = &rb;
}

void Worker::HandleStartFailed(RunningBuild& rb) {
  rb.thread.join();
  spdlog::error("build could not start [job: {}, number: {}, reason: {}]", rb.job,
                rb.failed_number ? std::to_string(*rb.failed_number) : "-", rb.start_error);
  if (rb.start_failure_kind == StartFailure::Kind::kState) {
    records_pending_ = true;  // its NOT_BUILT record, when it has a number
    StateUnwritable(rb.start_error);
  }
  if (rb.exclusive) GoOffline("its OFFLINE_NODE_WHEN_COMPLETE build could not start");
  Deliver(rb, Command::kWorkException, {rb.handle, "build could not start: " + rb.start_error});
  Deliver(rb, Command::kWorkFail, {rb.handle});
  if (rb.exclusive && config_.once) {
    once_done_ = true;
    exit_code_ = 1;
  }
  Release(rb);
}

// The end of a build, started or not: its executor and connection are free again (and,
// for an exclusive build, the node's right to grab).
void Worker::Release(RunningBuild& rb) {
  if (rb.build) {
    by_number_.erase(std::make_pair(rb.build->record().job, rb.build->record().number));
  }
  std::erase_if(running_, [&](const auto& p) { return p.get() == &rb; });
  // Registration changes held back while the build ran (reload, drain, offline) go out now.
  ApplyFunctions();
}

bool Worker::ExecutorBusy(int executor) const {
  return std::any_of(running_.begin(), running_.end(),
                     [&](const auto& b) { return b->executor == executor; });
}

bool Worker::LinkBusy(const Link& link) const {
  return std::any_of(running_.begin(), running_.end(),
                     [&](const auto& b) { return b->link == &link; });
}

bool Worker::Starting() const {
  return std::any_of(running_.begin(), running_.end(),
                     [](const auto& b) { return !b->announced_set; });
}

bool Worker::Exclusive() const {
  return std::any_of(running_.begin(), running_.end(), [](const auto& b) { return b->exclusive; });
}

bool Worker::Closing() const {
  return running_.empty() && grab_link_ == nullptr && (draining_ || once_done_);
}

void Worker::HandleStepFinished(RunningBuild& build, int finished, int total) {
  Deliver(build, Command::kWorkStatus,
          {build.handle, std::to_string(finished), std::to_string(total)});
}

void Worker::HandleBuildFinished(RunningBuild& rb) {
  rb.thread.join();
  const BuildRecord& record = rb.build->record();
  spdlog::info("build finished [job: {}, number: {}, result: {}, ms: {}{}]", record.job,
               record.number, ToString(record.result), record.duration_ms,
               record.reason.empty() ? "" : ", reason: " + record.reason);
  const bool recorded = rb.build->recorded();
  if (!record.state_error.empty()) {
    spdlog::error("build {} [job: {}, number: {}, result: {}, error: {}]",
                  recorded ? "log incomplete" : "not recorded", record.job, record.number,
                  ToString(record.result), record.state_error);
    records_pending_ = records_pending_ || !recorded;
    StateUnwritable(record.state_error);
  }
  // The contract's order: offline, then the result, then the registrations go (Release).
  if (rb.exclusive) {
    GoOffline("build " + record.job + " #" + std::to_string(record.number) +
              " carried OFFLINE_NODE_WHEN_COMPLETE");
  }
  // A build that could not start, or whose result the node could not record, has no result
  // a client should trust: it is an exception, and the client runs it again elsewhere
  // (docs/zuul.md, "When a build fails to run"). A result that was recorded stands, also
  // when the log lost bytes (the payload's state_error says so).
  std::string exception;
  if (record.result == Result::kNotBuilt) {
    exception = "build could not start: " + record.reason;
  } else if (!recorded) {
    exception = "build " + record.job + " #" + std::to_string(record.number) + " ended " +
                std::string(ToString(record.result)) + " on node " + config_.node.name +
                ", but the node could not record it (" + record.state_error + "); run it elsewhere";
  }
  if (!exception.empty()) {
    Deliver(rb, Command::kWorkException, {rb.handle, exception});
    Deliver(rb, Command::kWorkFail, {rb.handle});
  } else if (Deliver(rb, Command::kWorkComplete, {rb.handle, FinalPayload(record, rb.context)})) {
    spdlog::debug("result sent [job: {}, number: {}]", record.job, record.number);
  }
  if (rb.exclusive && config_.once) {
    once_done_ = true;
    exit_code_ = record.result == Result::kSuccess && exception.empty() ? 0 : 1;
  }
  Release(rb);
}

void Worker::StateUnwritable(const std::string& error) {
  next_state_probe_ = SteadyClock::now() + kStateProbeInterval;
  if (!state_problem_.empty()) return;
  state_problem_ = error;
  spdlog::error(
      "the state directory cannot be written: the node takes no builds until it can (tried "
      "again every {}s) [state dir: {}, error: {}]",
      kStateProbeInterval.count(), config_.node.state_dir.string(), error);
  ApplyFunctions();
}

void Worker::MaybeProbeState(SteadyClock::time_point now) {
  if ((state_problem_.empty() && !records_pending_) || state_lost_ || state_probe_.joinable() ||
      now < next_state_probe_) {
    return;
  }
  // On a thread of its own: a hung file system must not stall the loop.
  state_probe_ = std::thread([this] {
    Event event{.kind = Event::Kind::kStateProbed};
    if (auto probe = ProbeWritable(config_.node.state_dir); !probe) event.error = probe.error();
    if (auto pending = store_.RetryPending(); !pending) event.records_error = pending.error();
    Post(std::move(event));
  });
}

void Worker::HandleStateProbed(const Event& event) {
  state_probe_.join();
  next_state_probe_ = SteadyClock::now() + kStateProbeInterval;
  // What still fails is said once per distinct error, not every few seconds.
  std::string problem = event.error.empty() ? event.records_error : event.error;
  if (!problem.empty() && problem != last_probe_error_) {
    spdlog::warn("{} still cannot be written [state dir: {}, error: {}]",
                 event.error.empty() ? "a build record" : "the state directory",
                 config_.node.state_dir.string(), problem);
  }
  last_probe_error_ = problem;
  if (records_pending_ && event.records_error.empty()) {
    records_pending_ = false;
    spdlog::info("build records kept while the state directory could not be written are written");
  }
  if (!event.error.empty() || state_problem_.empty()) return;
  spdlog::info("the state directory can be written again: taking builds again [state dir: {}]",
               config_.node.state_dir.string());
  state_problem_.clear();
  ApplyFunctions();
}

void Worker::WatchState(std::function<tl::expected<void, std::string>()> check) {
  state_check_ = std::move(check);
}

void Worker::StartStateWatch() {
  if (!state_check_ || state_watch_.joinable()) return;
  state_watch_ = std::thread([this] {
    std::unique_lock lock(state_watch_mu_);
    while (!state_watch_cv_.wait_for(lock, std::chrono::seconds(1),
                                     [this] { return state_watch_stop_; })) {
      lock.unlock();
      auto ok = state_check_();
      lock.lock();
      if (!ok) {
        Post({.kind = Event::Kind::kStateLost, .error = ok.error()});
        return;
      }
    }
  });
}

void Worker::StopStateWatch() {
  if (!state_watch_.joinable()) return;
  {
    std::lock_guard lock(state_watch_mu_);
    state_watch_stop_ = true;
  }
  state_watch_cv_.notify_all();
  state_watch_.join();
}

void Worker::HandleStateLost(const std::string& error) {
  if (state_lost_) return;
  state_lost_ = true;
  spdlog::critical("{}: stopping (exit code 1) [state dir: {}]", error,
                   config_.node.state_dir.string());
  exit_code_ = 1;
  if (state_problem_.empty()) state_problem_ = error;
  ApplyFunctions();
  if (shutdowns_ == 0) DoShutdown();
}

bool Worker::Deliver(RunningBuild& rb, Command command, std::vector<std::string> args) {
  if (rb.link->conn.up() && rb.link->conn.generation() == rb.generation) {
    rb.link->conn.Send(command, std::move(args));
    return true;
  }
  bool terminal = command == Command::kWorkComplete || command == Command::kWorkFail;
  spdlog::log(terminal ? spdlog::level::warn : spdlog::level::debug,
              "{} not delivered, the connection it came on was lost; the build record has it "
              "[job: {}, number: {}, server: {}]",
              CommandName(command), rb.job,
              rb.build ? std::to_string(rb.build->record().number) : "-",
              rb.link->conn.server().ToString());
  return false;
}

void Worker::HandleManagerRequest(Link& link, const std::string& handle,
                                  const std::string& function, const std::string& workload) {
  const std::string& node = config_.node.name;
  bool is_stop = function == "stop:" + node;
  if (!is_stop && function != "set_description:" + node) {
    link.conn.Send(Command::kWorkFail, {handle});
    return;
  }
  auto ref = ParseBuildReference(workload,
                                 is_stop ? ReferenceKind::kStop : ReferenceKind::kSetDescription);
  if (!ref) {
    spdlog::warn("bad request [function: {}, handle: {}, reason: {}]", function, handle,
                 ref.error());
    Refuse(link, handle, ref.error());
    return;
  }
  std::string id = ref->name + " #" + std::to_string(ref->number);
  auto it = by_number_.find(std::make_pair(ref->name, ref->number));
  RunningBuild* running = it == by_number_.end() ? nullptr : it->second;
  std::optional<BuildRecord> finished;
  if (running == nullptr) {
    if (auto r = store_.Read(ref->name, ref->number)) finished = std::move(*r);
  }
  if (running == nullptr && !finished) {
    spdlog::info("{} for an unknown build [build: {}]", function, id);
    Refuse(link, handle, "Cannot find build " + ref->name + ": " + std::to_string(ref->number));
    return;
  }

  if (is_stop) {
    if (running != nullptr && !running->finished.load() &&
        running->stopper->StopSteps("a stop:" + node + " request")) {
      spdlog::info("stopping build on request [build: {}]", id);
      link.conn.Send(Command::kWorkComplete, {handle, ""});
    } else {
      spdlog::info("stop request for a build that is not running [build: {}]", id);
      link.conn.Send(Command::kWorkFail, {handle});
    }
    return;
  }

  tl::expected<void, std::string> stored;
  if (running != nullptr) {
    stored = running->build->SetDescription(ref->html_description);
  } else {
    finished->description = ref->html_description;
    stored = store_.Write(*finished);
  }
  if (!stored) {
    spdlog::error("cannot store a description [build: {}, error: {}]", id, stored.error());
    records_pending_ = true;  // the store keeps it
    StateUnwritable(stored.error());
    Refuse(link, handle, "cannot store the description of " + id + ": " + stored.error());
    return;
  }
  spdlog::info("description set [build: {}]", id);
  link.conn.Send(Command::kWorkComplete, {handle, "Description set for " + id});
}

void Worker::HandleEvents() {
  std::uint64_t count = 0;
  (void)!::read(wake_.get(), &count, sizeof(count));
  std::deque<Event> events;
  {
    std::lock_guard lock(events_mu_);
    events.swap(events_);
  }
  for (const auto& e : events) {
    switch (e.kind) {
      case Event::Kind::kBuildStarted:
        HandleBuildStarted(*e.build);
        break;
      case Event::Kind::kStartFailed:
        HandleStartFailed(*e.build);
        break;
      case Event::Kind::kStepFinished:
        HandleStepFinished(*e.build, e.finished, e.total);
        break;
      case Event::Kind::kBuildFinished:
        HandleBuildFinished(*e.build);
        break;
      case Event::Kind::kJobsChanged:
        HandleJobsChanged();
        break;
      case Event::Kind::kStateProbed:
        HandleStateProbed(e);
        break;
      case Event::Kind::kStateLost:
        HandleStateLost(e.error);
        break;
      case Event::Kind::kReloaded:
        HandleReloaded(*e.reload);
        break;
    }
  }
}

void Worker::HandleSignals(int signal_fd) {
  signalfd_siginfo info{};
  while (::read(signal_fd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
    if (info.ssi_signo == SIGHUP) {
      if (on_reload_) {
        on_reload_();
      } else {
        DoReload();
      }
    } else {
      spdlog::info("signal received [signal: {}]", ::strsignal(static_cast<int>(info.ssi_signo)));
      DoShutdown();
    }
  }
}

void Worker::DoReload() {
  if (reload_.joinable()) {
    reload_again_ = true;  // the files may have changed after the running reload read them
    return;
  }
  reload_ = std::thread([this] {
    auto result = std::make_shared<JobRegistry::ReloadResult>(registry_.Reload());
    Post({.kind = Event::Kind::kReloaded, .reload = std::move(result)});
  });
}

void Worker::HandleReloaded(const JobRegistry::ReloadResult& result) {
  reload_.join();
  if (!result.ok) {
    for (const auto& e : result.errors) spdlog::error("{}", e.ToString());
    spdlog::error("reload failed, the previous job definitions stay in force [errors: {}]",
                  result.errors.size());
  } else {
    spdlog::info("jobs reloaded [jobs: {}, functions: {}, added: {}, removed: {}]", result.jobs,
                 registry_.current()->functions.size(), result.delta.added.size(),
                 result.delta.removed.size());
    HandleJobsChanged();
  }
  if (reload_again_) {
    reload_again_ = false;
    DoReload();
  }
}

void Worker::HandleJobsChanged() {
  auto busy = std::count_if(executor_links_.begin(), executor_links_.end(),
                            [&](const auto& l) { return LinkBusy(*l); });
  if (busy > 0) {
    spdlog::info("registration changes held back until their builds end [connections: {}]", busy);
  }
  ApplyFunctions();
}

void Worker::OnReload(std::function<void()> reload) { on_reload_ = std::move(reload); }

void Worker::JobsChanged() { Post({.kind = Event::Kind::kJobsChanged}); }

void Worker::DoShutdown() {
  ++shutdowns_;
  if (shutdowns_ == 1) {
    draining_ = true;
    spdlog::info("draining: no new builds; waiting for running ones [builds: {}]", running_.size());
    if (config_.drain_timeout && !running_.empty()) {
      drain_deadline_ = SteadyClock::now() + *config_.drain_timeout;
    }
    ApplyFunctions();
    return;
  }
  if (shutdowns_ == 2) {
    spdlog::warn("aborting running builds; their finally steps still run [builds: {}]",
                 running_.size());
    for (auto& b : running_) b->stopper->StopSteps("a second SIGTERM to the runner");
    return;
  }
  spdlog::warn("stopping the finally steps of running builds too [builds: {}]", running_.size());
  for (auto& b : running_) {
    b->stopper->StopSteps("a third SIGTERM to the runner");
    b->stopper->Stop("a third SIGTERM to the runner");  // already stopped: this escalates
  }
}

void Worker::GoOffline(const std::string& why) {
  if (!online_) return;
  online_ = false;
  spdlog::info("node going offline [reason: {}]", why);
}

void Worker::ApplyFunctions() {
  std::set<std::string> functions;
  if (online_ && !draining_ && state_problem_.empty()) {
    auto current = registry_.current();
    functions.insert(current->functions.begin(), current->functions.end());
  }
  for (auto& l : executor_links_) {
    if (LinkBusy(*l)) continue;  // changed when its build has ended (Release)
    bool added = std::any_of(functions.begin(), functions.end(),
                             [&](const auto& f) { return l->conn.registered().count(f) == 0; });
    l->conn.SetFunctions(functions);
    // Jobs may already wait for a new function; a sleeping connection would not hear of
    // them (NOOP comes only for new jobs).
    if (added && l->grab == GrabState::kSleeping) l->grab = GrabState::kAwake;
  }
}

void Worker::MaybeGrab(SteadyClock::time_point now) {
  for (auto& l : manager_links_) {
    if (!Closing() && l->conn.up() && l->grab == GrabState::kAwake) {
      l->conn.Send(Command::kGrabJobUniq);
      l->grab = GrabState::kGrabbing;
      l->grab_sent = now;
    }
  }
  if (grab_link_ != nullptr || Starting() || !online_ || draining_ || Exclusive() || once_done_ ||
      !state_problem_.empty()) {
    return;
  }
  const std::size_t servers = config_.servers.size();
  for (int e = 0; e < config_.executors; ++e) {
    if (ExecutorBusy(e)) continue;
    for (std::size_t k = 0; k < servers; ++k) {
      std::size_t s = (next_server_ + k) % servers;
      Link& l = *executor_links_[static_cast<std::size_t>(e) * servers + s];
      // A server that has not answered since it last left a GRAB unanswered (or ever) does
      // not get the right: its manager connection asks it first.
      if (!l.conn.up() || l.grab != GrabState::kAwake || l.conn.registered().empty() ||
          !servers_[s].answering) {
        continue;
      }
      l.conn.Send(Command::kGrabJobUniq);
      l.grab = GrabState::kGrabbing;
      l.grab_sent = now;
      grab_link_ = &l;
      next_server_ = (s + 1) % servers;
      return;
    }
  }
}

void Worker::FlushAndClose() {
  auto deadline = SteadyClock::now() + kFlushAtExit;
  std::vector<Link*> all;
  for (auto& l : executor_links_) all.push_back(l.get());
  for (auto& l : manager_links_) all.push_back(l.get());
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Link*> polled;
    for (Link* l : all) {
      if (l->conn.up() && l->conn.has_output()) {
        fds.push_back({.fd = l->conn.fd(), .events = POLLOUT, .revents = 0});
        polled.push_back(l);
      }
    }
    auto now = SteadyClock::now();
    if (fds.empty() || now >= deadline) break;
    if (::poll(fds.data(), fds.size(), static_cast<int>(MillisUntil(deadline, now))) < 0 &&
        errno != EINTR) {
      break;
    }
    for (std::size_t i = 0; i < polled.size(); ++i) {
      if ((fds[i].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
        polled[i]->conn.Close();
      } else if (fds[i].revents != 0) {
        // Only POLLOUT was asked for: what a server sends now is of no interest.
        (void)polled[i]->conn.OnReady(POLLOUT, SteadyClock::now());
      }
    }
  }
  for (Link* l : all) {
    if (l->conn.has_output()) {
      spdlog::warn("packets not sent at exit [server: {}, client id: {}]",
                   l->conn.server().ToString(), l->conn.client_id());
    }
    l->conn.Close();
  }
}

}  // namespace gearrun::runner
