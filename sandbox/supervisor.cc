#include "sandbox/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>

#include "sandbox/container.h"
#include "sandbox/proc.h"
#include "sandbox/unique_fd.h"

extern char** environ;

namespace gearrun::sandbox {
namespace {

// The runner's side, process-wide.
struct State {
  std::mutex mutex;
  std::string program;  // how to start it again
  std::vector<std::string> argv;
  UniqueFd pipe;                        // write end, non-blocking
  UniqueFd pidfd;                       // the supervisor's, to end it for good before replacing it
  std::vector<SupervisedBuild> builds;  // reported and not yet gone: told to a new one
};

State& TheState() {
  static State* state = new State();  // never destroyed: Containers may outlive statics
  return *state;
}

tl::expected<void, Error> StartLocked(State& s) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    int err = errno;
    return Fail(err, "cannot create the supervisor's pipe");
  }
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attr);
  // The read end becomes its standard input (dup2 clears close-on-exec).
  ::posix_spawn_file_actions_adddup2(&actions, read_end.get(), STDIN_FILENO);
  sigset_t none;
  sigset_t all;
  ::sigemptyset(&none);
  ::sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  // Its own session: a terminal's signals (Ctrl-C) go to the runner's group, not to it.
  ::posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  std::vector<char*> argv;
  std::vector<std::string> copies = s.argv;
  for (auto& a : copies) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, s.program.c_str(), &actions, &attr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  if (rc != 0) return Fail(rc, "cannot start the supervisor " + s.program);

  int flags = ::fcntl(write_end.get(), F_GETFL);
  if (flags >= 0) (void)::fcntl(write_end.get(), F_SETFL, flags | O_NONBLOCK);
  s.pipe = std::move(write_end);
  s.pidfd.reset(PidfdOpen(pid));  // it is our child and unreaped: the pid is still its own
  return {};
}

// One report, whole or not at all (a report is small: a pipe write of it is atomic).
bool WriteReport(int fd, const std::string& report) {
  ssize_t n;
  do {
    n = ::write(fd, report.data(), report.size());
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(report.size());
}

// Ends the current supervisor (if any) and starts a new one that is told about every build.
// The old one is killed first: left alone, it would see the end of its pipe and end builds
// that still run.
tl::expected<void, Error> ReplaceLocked(State& s) {
  if (s.pidfd) (void)PidfdSendSignal(s.pidfd.get(), SIGKILL);
  s.pidfd.reset();
  s.pipe.reset();
  auto started = StartLocked(s);
  if (!started) return started;
  for (const auto& b : s.builds) {
    if (!WriteReport(s.pipe.get(), EncodeReport('+', b))) break;
  }
  return {};
}

// Sends one report. A supervisor that is gone (EPIPE) or does not read (EAGAIN: stopped or
// stuck) is replaced, so that every running build stays supervised; nothing here blocks.
void SendLocked(State& s, const std::string& report) {
  if (!s.pipe) return;
  if (WriteReport(s.pipe.get(), report)) return;
  (void)ReplaceLocked(s);  // s.builds already says what `report` said
}

// Fields of one report, or nullopt when `text` holds no complete report yet; `used` is its
// length.
std::optional<std::vector<std::string>> ParseReport(std::string_view text, std::size_t& used) {
  std::vector<std::string> fields;
  std::size_t at = 1;
  while (at < text.size()) {
    std::size_t nul = text.find('\0', at);
    if (nul == std::string_view::npos) return std::nullopt;
    if (nul == at) {
      used = at + 1;
      return fields;
    }
    fields.emplace_back(text.substr(at, nul - at));
    at = nul + 1;
  }
  return std::nullopt;
}

}  // namespace

std::string EncodeReport(char type, const SupervisedBuild& build) {
  std::string out(1, type);
  out += build.cookie_variable;
  out.push_back('\0');
  if (type == '+') {
    auto add = [&out](std::string_view prefix, const std::string& dir) {
      if (dir.empty()) return;
      out += prefix;
      out += dir;
      out.push_back('\0');
    };
    add("2:", build.cgroup_v2);
    for (const auto& dir : build.cgroup_v1) add("1:", dir);
  }
  out.push_back('\0');
  return out;
}

void ApplyReports(std::string& buffer, std::vector<SupervisedBuild>& builds) {
  std::size_t start = 0;
  while (start < buffer.size()) {
    std::size_t used = 0;
    auto fields = ParseReport(std::string_view(buffer).substr(start), used);
    if (!fields) break;
    char type = buffer[start];
    start += used;
    if (fields->empty()) continue;
    std::string cookie = (*fields)[0];
    std::erase_if(builds, [&](const SupervisedBuild& b) { return b.cookie_variable == cookie; });
    if (type != '+') continue;
    SupervisedBuild build{.cookie_variable = cookie};
    for (std::size_t i = 1; i < fields->size(); ++i) {
      std::string_view field = (*fields)[i];
      if (field.starts_with("2:")) build.cgroup_v2 = field.substr(2);
      if (field.starts_with("1:")) build.cgroup_v1.emplace_back(field.substr(2));
    }
    builds.push_back(std::move(build));
  }
  buffer.erase(0, start);
}

tl::expected<void, Error> StartSupervisor(std::string program, std::vector<std::string> argv) {
  if (argv.empty()) return Fail(EINVAL, "the supervisor needs an argv[0]");
  State& s = TheState();
  std::lock_guard lock(s.mutex);
  s.program = std::move(program);
  s.argv = std::move(argv);
  return ReplaceLocked(s);
}

bool SupervisorRunning() {
  State& s = TheState();
  std::lock_guard lock(s.mutex);
  return static_cast<bool>(s.pipe);
}

void SuperviseBuild(const SupervisedBuild& build) {
  State& s = TheState();
  std::lock_guard lock(s.mutex);
  std::erase_if(s.builds, [&](const SupervisedBuild& b) {
    return b.cookie_variable == build.cookie_variable;
  });
  s.builds.push_back(build);
  SendLocked(s, EncodeReport('+', build));
}

void ForgetBuild(std::string_view cookie_variable) {
  State& s = TheState();
  std::lock_guard lock(s.mutex);
  std::erase_if(s.builds,
                [&](const SupervisedBuild& b) { return b.cookie_variable == cookie_variable; });
  SendLocked(s, EncodeReport('-', {.cookie_variable = std::string(cookie_variable)}));
}

int RunSupervisor(int fd) {
  // Only the end of the runner ends it: not a terminal's Ctrl-C, not systemd's SIGTERM to
  // every process of the unit (the runner drains first; this must still be there after).
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) ::signal(sig, SIG_IGN);
  std::vector<SupervisedBuild> builds;
  std::string buffer;
  char chunk[4096];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // end of file: the runner is gone
    buffer.append(chunk, static_cast<std::size_t>(n));
    ApplyReports(buffer, builds);
  }
  int code = 0;
  for (const auto& build : builds) {
    std::vector<std::filesystem::path> v1(build.cgroup_v1.begin(), build.cgroup_v1.end());
    auto killed = KillOrphanedBuild(build.cookie_variable, build.cgroup_v2, v1);
    if (!killed) {
      std::fprintf(stderr, "gearrun supervise: %s\n", killed.error().ToString().c_str());
      code = 1;
    } else if (*killed > 0) {
      std::fprintf(stderr,
                   "gearrun supervise: the runner died while a build ran; killed %d of its "
                   "processes\n",
                   *killed);
    }
  }
  return code;
}

}  // namespace gearrun::sandbox
