#include "sandbox/container.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/proc.h"
#include "sandbox/reaper.h"
#include "sandbox/spawn.h"
#include "sandbox/supervisor.h"
#include "sandbox/unique_fd.h"

namespace gearrun::sandbox {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr std::string_view kCookieName = "GEARRUN_BUILD_COOKIE";
constexpr std::size_t kChunkBytes = 64 * 1024;
// Bigger than the default 64 KiB so that a chatty step blocks less often on a full pipe.
constexpr int kPipeBytes = 1024 * 1024;
// How often a kill ladder looks whether the processes are gone (between reads of output).
constexpr milliseconds kTick{20};
// How long SIGKILLed processes get to disappear before KillAll() reports them stuck.
constexpr milliseconds kKillWait{10000};
constexpr std::size_t kMaxNameLength = 100;

// Serializes creating and removing the per-runner gearrun-<pid> directories that all
// Containers of this process share (in the v2 and in the v1 hierarchies).
std::mutex& CgroupParentMutex() {
  static std::mutex mutex;
  return mutex;
}

std::string ProcessDirName() { return "gearrun-" + std::to_string(::getpid()); }

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

tl::expected<std::string, Error> RandomHex(std::size_t bytes) {
  std::vector<unsigned char> random(bytes);
  std::size_t filled = 0;
  while (filled < bytes) {
    ssize_t n = ::getrandom(random.data() + filled, bytes - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      return Fail(err, "cannot get random bytes for the build cookie (getrandom)");
    }
    filled += static_cast<std::size_t>(n);
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char byte : random) {
    hex.push_back(kDigits[byte >> 4]);
    hex.push_back(kDigits[byte & 0xf]);
  }
  return hex;
}

bool MakeDirectory(const std::string& path, bool exist_ok) {
  if (::mkdir(path.c_str(), 0755) == 0) return true;
  return exist_ok && errno == EEXIST;
}

// rmdir for a cgroup, children first. A cgroup whose last process has just been reaped can
// report EBUSY for a moment, so that is retried for up to a second.
void RemoveCgroupTree(const std::string& path) {
  if (DIR* dir = ::opendir(path.c_str())) {
    std::vector<std::string> children;
    while (dirent* entry = ::readdir(dir)) {
      std::string_view name = entry->d_name;
      if (entry->d_type == DT_DIR && name != "." && name != "..") {
        children.push_back(path + "/" + std::string(name));
      }
    }
    ::closedir(dir);
    for (const std::string& child : children) RemoveCgroupTree(child);
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) return;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

// The pids in `dir`/cgroup.procs and in every cgroup below it.
void ReadCgroupProcs(const std::string& dir, std::vector<pid_t>& pids) {
  if (auto text = ReadWholeFile(dir + "/cgroup.procs")) {
    std::string_view rest = *text;
    while (!rest.empty()) {
      std::size_t newline = rest.find('\n');
      std::string_view line = rest.substr(0, newline);
      pid_t pid = 0;
      auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), pid);
      if (ec == std::errc() && pid > 0) pids.push_back(pid);
      if (newline == std::string_view::npos) break;
      rest.remove_prefix(newline + 1);
    }
  }
  if (DIR* handle = ::opendir(dir.c_str())) {
    std::vector<std::string> children;
    while (dirent* entry = ::readdir(handle)) {
      std::string_view name = entry->d_name;
      if (entry->d_type == DT_DIR && name != "." && name != "..") {
        children.push_back(dir + "/" + std::string(name));
      }
    }
    ::closedir(handle);
    for (const std::string& child : children) ReadCgroupProcs(child, pids);
  }
}

bool CgroupPopulated(const std::string& dir) {
  auto events = ReadWholeFile(dir + "/cgroup.events");
  if (!events) return false;
  return events->find("populated 1") != std::string::npos;
}

bool ListHasWord(std::string_view list, std::string_view word) {
  while (!list.empty()) {
    std::size_t start = list.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    list.remove_prefix(start);
    std::size_t end = list.find_first_of(" \n");
    if (list.substr(0, end) == word) return true;
    if (end == std::string_view::npos) break;
    list.remove_prefix(end);
  }
  return false;
}

bool IsCgroup2(const std::string& path) {
  struct statfs info {};
  return ::statfs(path.c_str(), &info) == 0 &&
         static_cast<unsigned long>(info.f_type) == static_cast<unsigned long>(CGROUP2_SUPER_MAGIC);
}

// Milliseconds until `deadline`, rounded up so that poll() does not wake early and spin;
// -1 (forever) without a deadline.
int PollTimeout(std::optional<Clock::time_point> deadline) {
  if (!deadline) return -1;
  auto left = *deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<milliseconds>(left).count();
  return static_cast<int>(std::min<decltype(ms)>(ms, INT_MAX));
}

// waitid(2) on a pidfd with rusage (glibc's waitid has no rusage argument).
int WaitIdWithUsage(int pidfd, siginfo_t* info, int options, rusage* usage) {
  return static_cast<int>(::syscall(SYS_waitid, P_PIDFD, pidfd, info, options, usage));
}

// Reaps the child behind `pidfd` (blocking until it has exited).
void ReapChild(int pidfd) {
  siginfo_t info{};
  while (WaitIdWithUsage(pidfd, &info, WEXITED, nullptr) < 0 && errno == EINTR) {
  }
}

// What a kill ladder works on: "every process of X".
struct KillTarget {
  // The processes of X that are still running code (zombies excluded).
  std::function<std::vector<pid_t>()> live;
  // Sends a signal to all of them, each checked to be ours (see SignalIfOurs).
  std::function<void(int)> signal;
  // SIGKILL to all of them; atomic with respect to fork where the kernel allows it.
  std::function<void()> kill;
};

struct LadderResult {
  int stopped = 0;       // distinct processes seen alive while the ladder ran
  bool all_gone = true;  // false when some survived SIGKILL for kKillWait
};

}  // namespace

std::string_view ToString(ContainmentMode mode) {
  switch (mode) {
    case ContainmentMode::kAuto:
      return "auto";
    case ContainmentMode::kCgroup:
      return "cgroup";
    case ContainmentMode::kProcessGroup:
      return "process-group";
  }
  return "unknown";
}

std::string_view ToString(LimitMechanism mechanism) {
  switch (mechanism) {
    case LimitMechanism::kNone:
      return "none";
    case LimitMechanism::kCgroupV2:
      return "cgroup v2";
    case LimitMechanism::kCgroupV1:
      return "cgroup v1";
  }
  return "unknown";
}

struct Container::State {
  ContainmentMode mode = ContainmentMode::kProcessGroup;
  std::string name;
  std::string cookie;  // "GEARRUN_BUILD_COOKIE=<hex>"
  LimitsInForce limits;
  UniqueFd out_read;   // non-blocking
  UniqueFd out_write;  // blocking (children write to it); kept so every step can get it
  std::vector<char> buffer = std::vector<char>(kChunkBytes);

  // Cgroup v2 (cgroup mode).
  std::string v2_process_dir;  // <parent>/gearrun-<pid>, shared with other Containers
  std::filesystem::path v2_build_dir;
  std::string v2_build_path;  // the build cgroup as /proc/<pid>/cgroup names it
  struct StepCgroup {
    std::string dir;
    std::string path;
  };
  std::vector<StepCgroup> step_cgroups;  // not yet removed
  int steps_started = 0;

  // Cgroup v1 groups that enforce limits (either mode); the child joins each.
  struct V1Group {
    std::string process_dir;
    std::string build_dir;
    UniqueFd procs;
  };
  std::vector<V1Group> v1_groups;

  // Process-group mode: leaders of steps that left processes behind, kept as unreaped
  // zombies so that their session/group id cannot be given to an unrelated process before
  // KillAll() signals it.
  struct Pinned {
    pid_t pid = -1;
    UniqueFd pidfd;
    ChildRegistration registration;
  };
  std::vector<Pinned> pinned;

  // Output ------------------------------------------------------------------------------

  std::size_t Buffered() const {
    int bytes = 0;
    if (::ioctl(out_read.get(), FIONREAD, &bytes) != 0 || bytes < 0) return 0;
    return static_cast<std::size_t>(bytes);
  }

  // Delivers up to `limit` bytes that are in the pipe now, in chunks; never blocks.
  void ReadPipe(OutputSink& sink, std::size_t limit) {
    while (limit > 0) {
      std::size_t want = std::min(limit, buffer.size());
      ssize_t n = ::read(out_read.get(), buffer.data(), want);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;  // EAGAIN: nothing more right now
      }
      if (n == 0) return;  // cannot happen while we hold a write end
      sink.Write(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
      limit -= static_cast<std::size_t>(n);
    }
  }

  // What is in the pipe at this moment, and no more: a grandchild that keeps writing must
  // not keep us here.
  void DrainBuffered(OutputSink& sink) { ReadPipe(sink, Buffered()); }

  // Waits up to `timeout` for output and delivers it.
  void PumpOutput(OutputSink& sink, milliseconds timeout) {
    pollfd fd{out_read.get(), POLLIN, 0};
    int n = ::poll(&fd, 1, static_cast<int>(timeout.count()));
    if (n > 0 && (fd.revents & POLLIN) != 0) DrainBuffered(sink);
  }

  // Kill ladder ---------------------------------------------------------------------------

  // Polls `target` every tick (delivering output meanwhile) until nothing is alive or
  // `until`; records every pid seen alive in `seen`. A process seen before that is still
  // inside exit() counts as alive: the cookie scan stops finding it as soon as its memory
  // is gone, before it has let go of everything else.
  bool WaitUntilGone(const KillTarget& target, Clock::time_point until, OutputSink& sink,
                     std::unordered_set<pid_t>& seen) {
    for (;;) {
      std::vector<pid_t> live = target.live();
      seen.insert(live.begin(), live.end());
      if (live.empty() && std::none_of(seen.begin(), seen.end(), [](pid_t pid) {
            auto stat = ReadProcStat(pid);
            return stat && stat->exiting();
          })) {
        return true;
      }
      auto now = Clock::now();
      if (now >= until) return false;
      auto left = std::chrono::ceil<milliseconds>(until - now);
      PumpOutput(sink, std::min(left, kTick));
    }
  }

  // `policy.signal`, grace, then SIGKILL until nothing is left (or kKillWait passes).
  LadderResult Ladder(const KillTarget& target, const KillPolicy& policy, OutputSink& sink) {
    std::unordered_set<pid_t> seen;
    LadderResult result;
    std::vector<pid_t> live = target.live();
    seen.insert(live.begin(), live.end());
    if (live.empty()) return result;
    bool gone = false;
    bool gentle = policy.signal > 0 && policy.signal < NSIG && policy.signal != SIGKILL;
    if (gentle) {
      target.signal(policy.signal);
      auto grace = std::max(policy.grace, milliseconds(0));
      gone = WaitUntilGone(target, Clock::now() + grace, sink, seen);
    }
    auto give_up = Clock::now() + kKillWait;
    while (!gone) {
      target.kill();
      // Re-sent every few ticks: a forking process may have made new ones since.
      gone = WaitUntilGone(target, std::min(give_up, Clock::now() + kTick * 5), sink, seen);
      if (!gone && Clock::now() >= give_up) break;
    }
    result.stopped = static_cast<int>(seen.size());
    result.all_gone = gone;
    return result;
  }

  KillTarget StepTarget(pid_t leader, const StepCgroup* step) const {
    KillTarget target;
    if (step != nullptr) {
      std::string dir = step->dir;
      std::string path = step->path;
      auto in_step = [path](pid_t pid) {
        auto cgroup = ReadProcCgroup(pid);
        return cgroup && cgroup->v2_path && PathIsUnder(*cgroup->v2_path, path);
      };
      target.live = [dir] {
        std::vector<pid_t> pids;
        ReadCgroupProcs(dir, pids);
        return pids;
      };
      target.signal = [leader, dir, in_step](int sig) {
        // The leader is not reaped before the ladder ends, so its group id is still ours.
        ::kill(-leader, sig);
        std::vector<pid_t> pids;
        ReadCgroupProcs(dir, pids);
        for (pid_t pid : pids) (void)SignalIfOurs(pid, sig, in_step);
      };
      target.kill = [leader, dir] {
        (void)WriteExistingFile(dir + "/cgroup.kill", "1");
        ::kill(-leader, SIGKILL);
      };
      return target;
    }
    // Process-group mode: the step's session, i.e. its process group and any group a
    // job-control shell made inside it. setsid'd processes are out of reach until KillAll.
    auto in_session = [leader](pid_t pid) {
      auto stat = ReadProcStat(pid);
      return stat && stat->session == leader && !stat->exited();
    };
    auto members = [leader] {
      std::vector<pid_t> pids;
      for (const ProcStat& stat : ListProcesses()) {
        if (stat.session == leader && !stat.exited()) pids.push_back(stat.pid);
      }
      return pids;
    };
    target.live = members;
    target.signal = [leader, members, in_session](int sig) {
      ::kill(-leader, sig);
      for (pid_t pid : members()) (void)SignalIfOurs(pid, sig, in_session);
    };
    target.kill = [signal = target.signal] { signal(SIGKILL); };
    return target;
  }

  KillTarget BuildTarget() const {
    KillTarget target;
    // Where to look for processes carrying the cookie: as a subreaper, the runner is an
    // ancestor of every process its builds started, so its descendants are enough.
    const ProcessScope scope = IsSubreaper() ? ProcessScope::kDescendants : ProcessScope::kAll;
    if (mode == ContainmentMode::kCgroup) {
      std::string dir = v2_build_dir.string();
      std::string path = v2_build_path;
      std::string cookie_entry = cookie;
      auto in_build = [path](pid_t pid) {
        auto cgroup = ReadProcCgroup(pid);
        return cgroup && cgroup->v2_path && PathIsUnder(*cgroup->v2_path, path);
      };
      auto has_cookie = [cookie_entry](pid_t pid) {
        return MatchEnviron(pid, cookie_entry) == EnvironMatch::kYes;
      };
      // A process that moved itself out of the build's cgroup (it wrote its pid into another
      // cgroup.procs: the runner's, or its gearrun-<pid> folder) still carries the cookie.
      auto escaped = [cookie_entry, scope, in_build] {
        std::vector<pid_t> pids = FindProcesses(cookie_entry, {}, scope);
        std::erase_if(pids, in_build);
        return pids;
      };
      target.live = [dir, escaped] {
        std::vector<pid_t> pids;
        ReadCgroupProcs(dir, pids);
        std::vector<pid_t> out = escaped();
        pids.insert(pids.end(), out.begin(), out.end());
        return pids;
      };
      target.signal = [dir, in_build, escaped, has_cookie](int sig) {
        std::vector<pid_t> pids;
        ReadCgroupProcs(dir, pids);
        for (pid_t pid : pids) (void)SignalIfOurs(pid, sig, in_build);
        for (pid_t pid : escaped()) (void)SignalIfOurs(pid, sig, has_cookie);
      };
      // cgroup.kill is recursive and race-free against fork; one by one only if it fails.
      target.kill = [dir, signal = target.signal, escaped, has_cookie] {
        if (!WriteExistingFile(dir + "/cgroup.kill", "1")) {
          signal(SIGKILL);
          return;
        }
        for (pid_t pid : escaped()) (void)SignalIfOurs(pid, SIGKILL, has_cookie);
      };
      return target;
    }
    std::unordered_set<pid_t> sessions;
    for (const Pinned& leader : pinned) sessions.insert(leader.pid);
    std::string cookie_entry = cookie;
    auto in_session = [sessions](const ProcStat& stat) {
      return sessions.count(stat.session) != 0;
    };
    auto members = [cookie_entry, in_session, scope] {
      return FindProcesses(cookie_entry, in_session, scope);
    };
    auto check = [cookie_entry, in_session](pid_t pid) {
      for (int attempt = 0; attempt < 5; ++attempt) {
        auto stat = ReadProcStat(pid);
        if (!stat || stat->exited()) return false;
        if (in_session(*stat)) return true;
        switch (MatchEnviron(pid, cookie_entry)) {
          case EnvironMatch::kYes:
            return true;
          case EnvironMatch::kNo:
            return false;
          case EnvironMatch::kEmpty:  // caught mid-exec? ask again
            std::this_thread::sleep_for(milliseconds(1));
        }
      }
      return false;
    };
    target.live = members;
    target.signal = [sessions, members, check](int sig) {
      // Pinned leaders keep these group ids from being reused.
      for (pid_t leader : sessions) ::kill(-leader, sig);
      for (pid_t pid : members()) (void)SignalIfOurs(pid, sig, check);
    };
    target.kill = [signal = target.signal] { signal(SIGKILL); };
    return target;
  }

  // Step cgroups ------------------------------------------------------------------------

  tl::expected<StepCgroup, Error> MakeStepCgroup() {
    std::string step_name = "step-" + std::to_string(++steps_started);
    StepCgroup step{(v2_build_dir / step_name).string(), JoinCgroupPath(v2_build_path, step_name)};
    if (!MakeDirectory(step.dir, false)) {
      int err = errno;
      return Fail(err, "cannot create the step cgroup " + step.dir);
    }
    return step;
  }

  void ForgetEmptyStepCgroups() {
    std::vector<StepCgroup> kept;
    for (StepCgroup& step : step_cgroups) {
      if (CgroupPopulated(step.dir)) {
        kept.push_back(std::move(step));
      } else {
        RemoveCgroupTree(step.dir);
      }
    }
    step_cgroups = std::move(kept);
  }

  // Whole-build kill --------------------------------------------------------------------

  tl::expected<int, Error> KillEverything(const KillPolicy& policy, OutputSink& sink) {
    DrainBuffered(sink);
    LadderResult result = Ladder(BuildTarget(), policy, sink);
    DrainBuffered(sink);
    if (result.all_gone) {
      // The pinned leaders are zombies and their sessions are empty now.
      for (Pinned& leader : pinned) ReapChild(leader.pidfd.get());
      pinned.clear();
    }
    ReapOrphans();
    if (mode == ContainmentMode::kCgroup) ForgetEmptyStepCgroups();
    if (!result.all_gone) {
      return Fail(EBUSY, "processes of build '" + name + "' survived SIGKILL for " +
                             std::to_string(kKillWait.count() / 1000) +
                             " s (uninterruptible sleep, e.g. a hung NFS mount?)");
    }
    return result.stopped;
  }

  void RemoveCgroups() {
    for (const StepCgroup& step : step_cgroups) RemoveCgroupTree(step.dir);
    step_cgroups.clear();
    std::lock_guard lock(CgroupParentMutex());
    if (!v2_build_dir.empty()) {
      RemoveCgroupTree(v2_build_dir.string());
      ::rmdir(v2_process_dir.c_str());  // fails while other Containers use it: fine
    }
    for (V1Group& group : v1_groups) {
      group.procs.reset();
      RemoveCgroupTree(group.build_dir);
      ::rmdir(group.process_dir.c_str());
    }
    v1_groups.clear();
  }

  // Creation ----------------------------------------------------------------------------

  tl::expected<void, Error> MakeCgroupV2(const ContainerOptions& options,
                                         const CgroupMounts& mounts, const ProcCgroup& own) {
    const char* advice =
        "; use ContainmentMode::kProcessGroup or give the runner a writable "
        "(delegated) cgroup";
    if (!mounts.v2) {
      return Fail(ENOENT, std::string("cgroup2 is not mounted (no cgroup2 line in "
                                      "/proc/self/mountinfo)") +
                              advice);
    }
    std::string parent_dir;
    std::string parent_path;
    if (options.cgroup_parent.empty()) {
      if (!own.v2_path) {
        return Fail(ENOENT, std::string("/proc/self/cgroup has no cgroup v2 line (0::)") + advice);
      }
      auto dir = CgroupDirectory(*mounts.v2, *own.v2_path);
      if (!dir) {
        return Fail(ENOENT, "the runner's cgroup " + *own.v2_path + " is not visible under " +
                                mounts.v2->mount_point + advice);
      }
      parent_dir = *dir;
      parent_path = *own.v2_path;
    } else {
      parent_dir = options.cgroup_parent.lexically_normal().string();
      while (parent_dir.size() > 1 && parent_dir.back() == '/') parent_dir.pop_back();
      if (!PathIsUnder(parent_dir, mounts.v2->mount_point)) {
        return Fail(EINVAL, "cgroup parent " + parent_dir + " is not under the cgroup2 mount " +
                                mounts.v2->mount_point + advice);
      }
      parent_path = JoinCgroupPath(
          mounts.v2->root, std::string_view(parent_dir)
                               .substr(std::min(parent_dir.size(), mounts.v2->mount_point.size())));
    }
    if (!IsCgroup2(parent_dir)) {
      return Fail(ENOTSUP, parent_dir + " is not a cgroup2 directory" + advice);
    }
    // Moving a process between cgroups needs write access to cgroup.procs of the common
    // ancestor, which is our own cgroup (or the given parent).
    if (::access((parent_dir + "/cgroup.procs").c_str(), W_OK) != 0) {
      int err = errno;
      return Fail(err, "cannot write " + parent_dir + "/cgroup.procs" + advice);
    }

    std::lock_guard lock(CgroupParentMutex());
    std::string process_dir = JoinCgroupPath(parent_dir, ProcessDirName());
    if (!MakeDirectory(process_dir, true)) {
      int err = errno;
      return Fail(err, "cannot create cgroup " + process_dir + advice);
    }
    std::string build_dir = JoinCgroupPath(process_dir, name);
    if (!MakeDirectory(build_dir, false)) {
      int err = errno;
      ::rmdir(process_dir.c_str());
      if (err == EEXIST) {
        return Fail(err, "cgroup " + build_dir +
                             " exists: another Container of this runner "
                             "uses the name '" +
                             name + "'");
      }
      return Fail(err, "cannot create cgroup " + build_dir + advice);
    }
    if (::access((build_dir + "/cgroup.kill").c_str(), F_OK) != 0) {
      int err = errno;
      ::rmdir(build_dir.c_str());
      ::rmdir(process_dir.c_str());
      return Fail(err, "no cgroup.kill in " + build_dir + " (needs Linux 5.14 or later)" + advice);
    }
    v2_process_dir = process_dir;
    v2_build_dir = build_dir;
    v2_build_path = JoinCgroupPath(JoinCgroupPath(parent_path, ProcessDirName()), name);
    return {};
  }

  // Through cgroup v2 controllers, when our cgroup hands them down to gearrun-<pid>.
  bool LimitV2(std::string_view controller, const std::string& file, std::uint64_t value) {
    if (mode != ContainmentMode::kCgroup) return false;
    auto available = ReadWholeFile(v2_process_dir + "/cgroup.controllers");
    if (!available || !ListHasWord(*available, controller)) return false;
    std::lock_guard lock(CgroupParentMutex());
    // gearrun-<pid> holds no process itself, so enabling controllers for its children is
    // allowed ("no internal processes").
    if (!WriteExistingFile(v2_process_dir + "/cgroup.subtree_control",
                           "+" + std::string(controller))) {
      return false;
    }
    return WriteExistingFile(v2_build_dir.string() + "/" + file, std::to_string(value)).has_value();
  }

  // Through a cgroup v1 hierarchy: a group gearrun-<pid>/<name> beside our own v1 cgroup.
  bool LimitV1(const std::optional<MountInfo>& mount, const ProcCgroup& own,
               const std::string& controller, const std::string& file, std::uint64_t value) {
    if (!mount) return false;
    auto own_path = own.v1_paths.find(controller);
    if (own_path == own.v1_paths.end()) return false;
    auto own_dir = CgroupDirectory(*mount, own_path->second);
    if (!own_dir) return false;
    std::string process_dir = JoinCgroupPath(*own_dir, ProcessDirName());
    std::string build_dir = JoinCgroupPath(process_dir, name);
    // Co-mounted controllers (e.g. "memory,pids" in one hierarchy) share the group.
    bool exists = std::any_of(v1_groups.begin(), v1_groups.end(),
                              [&](const V1Group& group) { return group.build_dir == build_dir; });
    std::lock_guard lock(CgroupParentMutex());
    if (!exists) {
      if (!MakeDirectory(process_dir, true)) return false;
      if (!MakeDirectory(build_dir, false)) {
        ::rmdir(process_dir.c_str());
        return false;
      }
      UniqueFd procs(::open((build_dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
      if (!procs) {
        ::rmdir(build_dir.c_str());
        ::rmdir(process_dir.c_str());
        return false;
      }
      v1_groups.push_back(V1Group{process_dir, build_dir, std::move(procs)});
    }
    return WriteExistingFile(build_dir + "/" + file, std::to_string(value)).has_value();
  }

  void ApplyLimits(const ContainerOptions& options, const CgroupMounts& mounts,
                   const ProcCgroup& own) {
    if (options.memory_max_bytes) {
      if (LimitV2("memory", "memory.max", *options.memory_max_bytes)) {
        limits.memory = LimitMechanism::kCgroupV2;
      } else if (LimitV1(mounts.v1_memory, own, "memory", "memory.limit_in_bytes",
                         *options.memory_max_bytes)) {
        limits.memory = LimitMechanism::kCgroupV1;
      }
    }
    if (options.pids_max) {
      if (LimitV2("pids", "pids.max", *options.pids_max)) {
        limits.pids = LimitMechanism::kCgroupV2;
      } else if (LimitV1(mounts.v1_pids, own, "pids", "pids.max", *options.pids_max)) {
        limits.pids = LimitMechanism::kCgroupV1;
      }
    }
  }
};

tl::expected<Container, Error> Container::Create(const ContainerOptions& options) {
  static std::atomic<int> unnamed{0};
  auto state = std::make_unique<State>();
  state->name = options.name.empty() ? "build-" + std::to_string(++unnamed) : options.name;
  if (!IsValidName(state->name)) {
    return Fail(EINVAL, "invalid container name '" + state->name +
                            "': use 1-100 of [A-Za-z0-9_.-], not starting with '.'");
  }
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0) {
      return Fail(EBADF, "fd " + std::to_string(fd) +
                             " of the runner is closed; open /dev/null on fds 0-2 in main() so "
                             "that pipes cannot land there");
    }
  }
  auto cookie = RandomHex(16);
  if (!cookie) return tl::unexpected(cookie.error());
  state->cookie = std::string(kCookieName) + "=" + *cookie;

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    int err = errno;
    return Fail(err, "cannot create the build's output pipe");
  }
  state->out_read.reset(fds[0]);
  state->out_write.reset(fds[1]);
  // Only our end is non-blocking: O_NONBLOCK on the write end would be shared with every
  // process that inherits it, and programs expect a blocking stdout.
  int flags = ::fcntl(state->out_read.get(), F_GETFL);
  if (flags < 0 || ::fcntl(state->out_read.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    int err = errno;
    return Fail(err, "cannot make the output pipe non-blocking");
  }
  (void)::fcntl(state->out_read.get(), F_SETPIPE_SZ, kPipeBytes);  // best effort

  auto mountinfo = ReadWholeFile("/proc/self/mountinfo");
  CgroupMounts mounts = FindCgroupMounts(ParseMountInfo(mountinfo ? *mountinfo : ""));
  auto own_text = ReadWholeFile("/proc/self/cgroup");
  ProcCgroup own = ParseProcCgroup(own_text ? *own_text : "");

  state->mode = ContainmentMode::kProcessGroup;
  if (options.mode != ContainmentMode::kProcessGroup) {
    auto made = state->MakeCgroupV2(options, mounts, own);
    if (made) {
      state->mode = ContainmentMode::kCgroup;
    } else if (options.mode == ContainmentMode::kCgroup) {
      return tl::unexpected(made.error());
    }
  }
  state->ApplyLimits(options, mounts, own);
  SupervisedBuild supervised{.cookie_variable = state->cookie,
                             .cgroup_v2 = state->v2_build_dir.string()};
  for (const auto& group : state->v1_groups) supervised.cgroup_v1.push_back(group.build_dir);
  SuperviseBuild(supervised);
  return Container(std::move(state));
}

Container::Container(std::unique_ptr<State> state) : state_(std::move(state)) {}
Container::Container(Container&& other) noexcept = default;

Container& Container::operator=(Container&& other) noexcept {
  if (this != &other) {
    Container old(std::move(*this));  // ends our build (kills, cleans up) at scope exit
    state_ = std::move(other.state_);
  }
  return *this;
}

Container::~Container() {
  if (!state_) return;
  DiscardSink discard;
  (void)state_->KillEverything(KillPolicy{.signal = SIGKILL, .grace = milliseconds(0)}, discard);
  state_->RemoveCgroups();
  ForgetBuild(state_->cookie);
}

ContainmentMode Container::mode() const { return state_->mode; }
const LimitsInForce& Container::limits_in_force() const { return state_->limits; }
const std::filesystem::path& Container::cgroup_directory() const { return state_->v2_build_dir; }
std::string_view Container::cookie_variable() const { return state_->cookie; }

tl::expected<int, Error> Container::KillAll(const KillPolicy& policy, OutputSink& sink) {
  return state_->KillEverything(policy, sink);
}

tl::expected<Outcome, Error> Container::Run(const Command& command, OutputSink& sink,
                                            const CancelToken& cancel) {
  State& s = *state_;
  if (command.argv.empty()) return Fail(EINVAL, "the command has no argv");
  // execve() would silently cut such strings short.
  for (const std::string& arg : command.argv) {
    if (arg.find('\0') != std::string::npos) {
      return Fail(EINVAL, "an argument of '" + command.argv[0] + "' contains a NUL byte");
    }
  }
  for (const std::string& entry : command.env) {
    if (entry.find('\0') != std::string::npos) {
      return Fail(EINVAL, "an environment entry for '" + command.argv[0] + "' contains a NUL byte");
    }
  }
  if (!command.dir.empty()) {
    struct stat info {};
    if (::stat(command.dir.c_str(), &info) != 0) {
      int err = errno;
      return Fail(err, "working directory '" + command.dir.string() + "' is not accessible");
    }
    if (!S_ISDIR(info.st_mode)) {
      return Fail(ENOTDIR, "working directory '" + command.dir.string() + "' is not a directory");
    }
  }
  auto program = ResolveProgram(command.argv[0], command.env, command.dir);
  if (!program) return tl::unexpected(program.error());

  SpawnRequest request;
  request.program = *program;
  request.argv = command.argv;
  request.dir = command.dir;
  request.limits = command.limits;
  request.output_fd = s.out_write.get();
  std::string cookie_prefix = std::string(kCookieName) + "=";
  for (const std::string& entry : command.env) {
    if (entry.compare(0, cookie_prefix.size(), cookie_prefix) != 0) request.env.push_back(entry);
  }
  request.env.push_back(s.cookie);

  // What leftovers wrote since the last call comes first.
  s.DrainBuffered(sink);

  Outcome outcome;
  if (cancel.cancelled()) {
    outcome.ending = Outcome::Ending::kCancelled;
    return outcome;
  }
  if (command.deadline && Clock::now() >= *command.deadline) {
    outcome.ending = Outcome::Ending::kTimedOut;
    return outcome;
  }

  std::optional<State::StepCgroup> step;
  UniqueFd step_procs;
  if (s.mode == ContainmentMode::kCgroup) {
    auto made = s.MakeStepCgroup();
    if (!made) return tl::unexpected(made.error());
    step = *made;
    step_procs.reset(::open((step->dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    if (!step_procs) {
      int err = errno;
      RemoveCgroupTree(step->dir);
      return Fail(err, "cannot open " + step->dir + "/cgroup.procs");
    }
    request.cgroup_procs_fds.push_back(step_procs.get());
  }
  for (const State::V1Group& group : s.v1_groups) {
    request.cgroup_procs_fds.push_back(group.procs.get());
  }

  auto start = Clock::now();
  auto spawned = Spawn(request);
  step_procs.reset();
  if (!spawned) {
    if (step) RemoveCgroupTree(step->dir);
    return tl::unexpected(spawned.error());
  }

  // Wait for the main process, delivering output, until it exits, the deadline passes or
  // the token fires. Pipe EOF is never awaited: a background grandchild may hold it open.
  enum class Stop { kNone, kDeadline, kCancelled, kPollFailed };
  Stop stop = Stop::kNone;
  int poll_error = 0;
  Clock::time_point exited_at{};
  for (;;) {
    pollfd fds[3] = {
        {s.out_read.get(), POLLIN, 0}, {spawned->pidfd.get(), POLLIN, 0}, {cancel.fd(), POLLIN, 0}};
    int n = ::poll(fds, 3, PollTimeout(command.deadline));
    if (n < 0) {
      if (errno == EINTR) continue;
      poll_error = errno;
      stop = Stop::kPollFailed;
      break;
    }
    if ((fds[0].revents & POLLIN) != 0) s.DrainBuffered(sink);
    if ((fds[1].revents & POLLIN) != 0) {
      exited_at = Clock::now();
      break;
    }
    if ((fds[2].revents & POLLIN) != 0) {
      stop = Stop::kCancelled;
      break;
    }
    if (command.deadline && Clock::now() >= *command.deadline) {
      stop = Stop::kDeadline;
      break;
    }
  }

  if (stop != Stop::kNone) {
    KillPolicy policy =
        stop == Stop::kPollFailed ? KillPolicy{SIGKILL, milliseconds(0)} : command.kill;
    LadderResult ladder =
        s.Ladder(s.StepTarget(spawned->pid, step ? &*step : nullptr), policy, sink);
    outcome.leftovers_killed = ladder.stopped;
  }

  siginfo_t info{};
  rusage usage{};
  while (WaitIdWithUsage(spawned->pidfd.get(), &info, WEXITED | WNOWAIT, &usage) < 0 &&
         errno == EINTR) {
  }
  if (exited_at == Clock::time_point{}) exited_at = Clock::now();
  s.DrainBuffered(sink);

  // Reap now, unless (process-group mode) the step left processes in its session: then
  // the zombie leader keeps the session id from being reused until KillAll().
  bool pin = false;
  if (s.mode == ContainmentMode::kProcessGroup && stop == Stop::kNone) {
    for (const ProcStat& stat : ListProcesses()) {
      if (stat.session == spawned->pid && stat.pid != spawned->pid && !stat.exited()) {
        pin = true;
        break;
      }
    }
  }
  if (pin) {
    s.pinned.push_back(
        State::Pinned{spawned->pid, std::move(spawned->pidfd), std::move(spawned->registration)});
  } else {
    ReapChild(spawned->pidfd.get());
  }
  if (step) {
    s.step_cgroups.push_back(*step);
    s.ForgetEmptyStepCgroups();
  }
  ReapOrphans();

  if (stop == Stop::kPollFailed) {
    return Fail(poll_error, "waiting for '" + command.argv[0] + "' failed (poll); it was killed");
  }

  switch (stop) {
    case Stop::kDeadline:
      outcome.ending = Outcome::Ending::kTimedOut;
      break;
    case Stop::kCancelled:
      outcome.ending = Outcome::Ending::kCancelled;
      break;
    default:
      outcome.ending =
          info.si_code == CLD_EXITED ? Outcome::Ending::kExited : Outcome::Ending::kSignaled;
  }
  if (info.si_code == CLD_EXITED) {
    outcome.exit_code = info.si_status;
  } else {
    outcome.signal = info.si_status;
  }
  outcome.duration = std::chrono::duration_cast<milliseconds>(exited_at - start);
  auto micros = [](const timeval& tv) {
    return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
  };
  outcome.cpu_time = micros(usage.ru_utime) + micros(usage.ru_stime);
  outcome.peak_rss_bytes = static_cast<std::uint64_t>(std::max(usage.ru_maxrss, 0L)) * 1024;
  return outcome;
}

tl::expected<int, Error> KillOrphanedBuild(
    std::string_view cookie_variable, const std::filesystem::path& cgroup_directory,
    const std::vector<std::filesystem::path>& v1_directories) {
  std::string dir = cgroup_directory.string();
  bool has_cgroup = !dir.empty() && ::access((dir + "/cgroup.procs").c_str(), F_OK) == 0;
  std::vector<pid_t> seen;
  auto deadline = Clock::now() + kKillWait;
  while (true) {
    std::vector<pid_t> pids;
    if (has_cgroup) ReadCgroupProcs(dir, pids);
    std::vector<pid_t> marked;
    if (!cookie_variable.empty()) marked = FindProcesses(cookie_variable);
    pids.insert(pids.end(), marked.begin(), marked.end());
    if (pids.empty()) break;
    for (pid_t pid : pids) {
      if (std::find(seen.begin(), seen.end(), pid) == seen.end()) seen.push_back(pid);
    }
    if (has_cgroup) (void)WriteExistingFile(dir + "/cgroup.kill", "1");
    for (pid_t pid : marked) {
      (void)SignalIfOurs(pid, SIGKILL, [&](pid_t p) {
        return MatchEnviron(p, cookie_variable) == EnvironMatch::kYes;
      });
    }
    if (Clock::now() > deadline) {
      return Fail(EBUSY, "processes of a lost build survived SIGKILL for " +
                             std::to_string(kKillWait.count()) + " ms");
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  if (has_cgroup) {
    RemoveCgroupTree(dir);
    ::rmdir(cgroup_directory.parent_path().c_str());  // the dead runner's gearrun-<pid>
  }
  for (const auto& v1 : v1_directories) {
    RemoveCgroupTree(v1.string());
    ::rmdir(v1.parent_path().c_str());
  }
  return static_cast<int>(seen.size());
}

}  // namespace gearrun::sandbox
