#include "sandbox/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <exception>
#include <system_error>

// Boost.Process v1 (1.74). We use its fork/exec executor, its exec-error pipe (the parent
// learns about a failed exec or setup step) and bp::std_in < bp::null. We set exe, argv and
// envp ourselves in on_setup instead of using bp::exe / bp::args / bp::env: bp::exe+args make
// argv[0] the resolved path (multi-call binaries and ccache-style wrappers look at argv[0]),
// and bp::environment merges rather than replaces. bp::start_dir ignores a failing chdir()
// and would run the step in the wrong directory, so chdir is done in our hook. We never let
// Boost wait for or reap the child (child::wait_for is broken in 1.74, and a bp::child that
// is destroyed while attached would terminate the process): the child is detached at once
// and waited for through a pidfd by the caller.
#include <boost/process/child.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>

#include "sandbox/proc.h"

namespace gearrun::sandbox {
namespace {

namespace bp = boost::process;

// Which setup step failed in the child; 0 means none did (so it was execve).
enum ChildStage : int {
  kStageNone = 0,
  kStageSignalMask,
  kStageCgroup,
  kStageSetsid,
  kStageRlimit,
  kStageStdio,
  kStageChdir,
  kStageCloseOnExec,
};

// Written by the child when a setup step fails, read by the parent after Boost reports the
// error. Lives in a MAP_SHARED page: the child cannot allocate or talk any other way.
struct ChildReport {
  int stage;
  int error;
  int detail;  // for kStageRlimit: the index into ChildPlan::limits
};

struct ChildLimit {
  int resource;
  rlimit value;
  const char* name;
};

// Everything the child needs, built before fork so that the child only reads memory.
struct ChildPlan {
  const char* program = nullptr;
  std::vector<char*> argv;
  std::vector<char*> envp;
  const char* dir = nullptr;
  std::array<ChildLimit, 4> limits{};
  int limit_count = 0;
  int output_fd = -1;
  const std::vector<int>* cgroup_procs_fds = nullptr;
  ChildReport* report = nullptr;
};

// Writes all of `data` (cgroup.procs wants the whole number in one write). Async-signal-safe.
bool WriteAll(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Decimal digits of `value` into `buffer` (no allocation, no locale). Returns the length.
std::size_t FormatPid(pid_t value, char (&buffer)[24]) {
  char reversed[24];
  std::size_t n = 0;
  auto v = static_cast<std::uint64_t>(value);
  do {
    reversed[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < sizeof reversed);
  for (std::size_t i = 0; i < n; ++i) buffer[i] = reversed[n - 1 - i];
  return n;
}

// Marks every fd >= 3 close-on-exec. Async-signal-safe.
bool MarkCloseOnExecFrom3() {
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return true;
  if (errno != ENOSYS && errno != EINVAL) return false;
  // Kernels before 5.11: one fcntl per possible fd.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) != 0) return false;
  rlim_t end = nofile.rlim_cur == RLIM_INFINITY ? 1 << 20 : nofile.rlim_cur;
  for (rlim_t fd = 3; fd < end; ++fd) {
    int flags = ::fcntl(static_cast<int>(fd), F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC) == 0) {
      ::fcntl(static_cast<int>(fd), F_SETFD, flags | FD_CLOEXEC);
    }
  }
  return true;
}

// The hook Boost calls in the parent (on_setup, on_error) and in the child between fork and
// exec (on_exec_setup).
struct ChildSetup : bp::extend::handler {
  ChildPlan* plan;
  pid_t* forked_pid;

  template <class Executor>
  void on_setup(Executor& exec) const {
    exec.exe = plan->program;
    exec.cmd_line = plan->argv.data();
    exec.env = plan->envp.data();
  }

  // Called in the parent when anything failed; exec.pid is the forked child (or -1), which
  // exited or is about to, and which we must reap.
  template <class Executor>
  void on_error(Executor& exec, const std::error_code& /*error*/) const {
    *forked_pid = exec.pid;
  }

  template <class Executor>
  void on_exec_setup(Executor& exec) const {
    // Only async-signal-safe calls from here on: the parent may be multi-threaded, and
    // another thread may have held the malloc lock at the fork.
    const ChildPlan& p = *plan;
    auto fail = [&](int stage, int detail) {
      int err = errno;
      p.report->stage = stage;
      p.report->error = err;
      p.report->detail = detail;
      exec.set_error(std::error_code(err, std::system_category()), "gearrun: child setup");
      ::_exit(127);
    };

    // No handler inherited from the runner may run in the child, so block everything until
    // the dispositions are reset.
    sigset_t all;
    ::sigfillset(&all);
    if (::sigprocmask(SIG_SETMASK, &all, nullptr) != 0) fail(kStageSignalMask, 0);

    if (!p.cgroup_procs_fds->empty()) {
      char pid_text[24];
      std::size_t length = FormatPid(::getpid(), pid_text);
      for (int fd : *p.cgroup_procs_fds) {
        if (!WriteAll(fd, pid_text, length)) fail(kStageCgroup, 0);
      }
    }

    if (::setsid() < 0) fail(kStageSetsid, 0);

    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction action {};
      action.sa_handler = SIG_DFL;
      ::sigemptyset(&action.sa_mask);
      ::sigaction(sig, &action, nullptr);  // fails for SIGKILL, SIGSTOP, glibc's own: fine
    }

    for (int i = 0; i < p.limit_count; ++i) {
      if (::setrlimit(p.limits[static_cast<std::size_t>(i)].resource,
                      &p.limits[static_cast<std::size_t>(i)].value) != 0) {
        fail(kStageRlimit, i);
      }
    }

    if (::dup2(p.output_fd, STDOUT_FILENO) < 0 || ::dup2(p.output_fd, STDERR_FILENO) < 0) {
      fail(kStageStdio, 0);
    }

    if (p.dir != nullptr && ::chdir(p.dir) != 0) fail(kStageChdir, 0);

    if (!MarkCloseOnExecFrom3()) fail(kStageCloseOnExec, 0);

    sigset_t none;
    ::sigemptyset(&none);
    if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail(kStageSignalMask, 0);
  }
};

// One shared page for the child's report, unmapped when done.
class SharedPage {
 public:
  SharedPage()
      : address_(::mmap(nullptr, sizeof(ChildReport), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0)) {}
  SharedPage(const SharedPage&) = delete;
  SharedPage& operator=(const SharedPage&) = delete;
  ~SharedPage() {
    if (valid()) ::munmap(address_, sizeof(ChildReport));
  }
  [[nodiscard]] bool valid() const { return address_ != MAP_FAILED; }
  [[nodiscard]] ChildReport* report() const { return static_cast<ChildReport*>(address_); }

 private:
  void* address_;
};

// Kills and reaps a child that failed to start. It is unregistered, so this runs under the
// SpawnGuard, which keeps ReapOrphans() from racing us for it.
void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);  // it is our unreaped child, so the pid cannot have been recycled
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

std::string Quote(const std::string& text) { return "'" + text + "'"; }

std::string DescribeFailure(const SpawnRequest& request, const ChildPlan& plan,
                            const ChildReport& report) {
  std::string program = Quote(request.program.string());
  switch (report.stage) {
    case kStageNone:
      return "cannot execute " + program;
    case kStageSignalMask:
      return "cannot reset the signal mask in the child for " + program;
    case kStageCgroup:
      return "cannot move the child for " + program +
             " into its cgroup (write to cgroup.procs); check that the runner may manage "
             "that cgroup, or use ContainmentMode::kProcessGroup";
    case kStageSetsid:
      return "setsid() failed in the child for " + program;
    case kStageRlimit: {
      const ChildLimit& limit = plan.limits[static_cast<std::size_t>(report.detail)];
      return "cannot set " + std::string(limit.name) + " to " +
             std::to_string(limit.value.rlim_cur) + " for " + program +
             "; raising a limit above the runner's hard limit needs CAP_SYS_RESOURCE, and "
             "RLIMIT_NOFILE cannot exceed fs.nr_open";
    }
    case kStageStdio:
      return "cannot connect stdout/stderr of " + program + " to the output pipe";
    case kStageChdir:
      return "cannot change to working directory " + Quote(request.dir.string()) + " for " +
             program;
    case kStageCloseOnExec:
      return "cannot mark inherited fds close-on-exec in the child for " + program;
    default:
      return "child setup failed for " + program;
  }
}

}  // namespace

tl::expected<SpawnedChild, Error> Spawn(const SpawnRequest& request) {
  if (request.argv.empty()) return Fail(EINVAL, "cannot spawn a command with an empty argv");

  SharedPage page;
  if (!page.valid()) {
    int err = errno;
    return Fail(err, "cannot map the child report page (mmap)");
  }
  *page.report() = ChildReport{kStageNone, 0, 0};

  // The strings the child's argv/envp point into. Copies, so that the char* can be
  // non-const as execve wants them.
  std::vector<std::string> argv = request.argv;
  std::vector<std::string> env = request.env;
  std::string program = request.program.string();
  std::string dir = request.dir.string();

  ChildPlan plan;
  plan.program = program.c_str();
  for (std::string& arg : argv) plan.argv.push_back(arg.data());
  plan.argv.push_back(nullptr);
  for (std::string& var : env) plan.envp.push_back(var.data());
  plan.envp.push_back(nullptr);
  plan.dir = dir.empty() ? nullptr : dir.c_str();
  auto add_limit = [&plan](const std::optional<std::uint64_t>& value, int resource,
                           const char* name) {
    if (!value) return;
    auto limit = static_cast<rlim_t>(*value);
    plan.limits[static_cast<std::size_t>(plan.limit_count++)] =
        ChildLimit{resource, rlimit{limit, limit}, name};
  };
  add_limit(request.limits.core_bytes, RLIMIT_CORE, "RLIMIT_CORE");
  add_limit(request.limits.open_files, RLIMIT_NOFILE, "RLIMIT_NOFILE");
  add_limit(request.limits.processes, RLIMIT_NPROC, "RLIMIT_NPROC");
  add_limit(request.limits.address_space_bytes, RLIMIT_AS, "RLIMIT_AS");
  plan.output_fd = request.output_fd;
  plan.cgroup_procs_fds = &request.cgroup_procs_fds;
  plan.report = page.report();

  // From before fork until the pid is registered: see sandbox/reaper.h.
  SpawnGuard guard;
  pid_t forked_pid = -1;
  pid_t pid = -1;
  std::error_code error;
  try {
    bp::child child(ChildSetup{{}, &plan, &forked_pid}, bp::std_in < bp::null, error);
    if (!error) pid = child.id();
    child.detach();
  } catch (const std::exception& e) {
    // Boost reports through `error`; this is for what it throws anyway (bad_alloc, or a
    // failure to open /dev/null for stdin, which happens before fork).
    if (forked_pid > 0) KillAndReap(forked_pid);
    return Fail(0, "cannot start " + Quote(program) + ": " + e.what());
  }
  if (error || pid <= 0) {
    if (forked_pid > 0) KillAndReap(forked_pid);
    if (forked_pid <= 0 && error) {
      return Fail(error.value(), "cannot fork to start " + Quote(program));
    }
    ChildReport report = *page.report();
    int code = report.stage == kStageNone ? error.value() : report.error;
    return Fail(code, DescribeFailure(request, plan, report));
  }

  SpawnedChild spawned;
  spawned.pid = pid;
  spawned.registration = ChildRegistration(guard, pid);
  spawned.pidfd.reset(PidfdOpen(pid));
  if (!spawned.pidfd) {
    int err = errno;
    KillAndReap(pid);
    return Fail(err, "cannot open a pidfd for " + Quote(program) +
                         " (pidfd_open needs Linux 5.3 or later)");
  }
  return spawned;
}

}  // namespace gearrun::sandbox
