#include "sandbox/reaper.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <unordered_map>

#include "sandbox/proc.h"

namespace gearrun::sandbox {
namespace {

// Shared by spawners, exclusive in ReapOrphans().
std::shared_mutex& SpawnMutex() {
  static std::shared_mutex mutex;
  return mutex;
}

// Registered pids (with a count, in case a pid is registered twice by mistake) under their
// own mutex, since spawners register concurrently under the shared lock.
struct Registry {
  std::mutex mutex;
  std::unordered_map<pid_t, int> pids;
};

Registry& TheRegistry() {
  static Registry registry;
  return registry;
}

bool IsRegistered(pid_t pid) {
  Registry& registry = TheRegistry();
  std::lock_guard lock(registry.mutex);
  return registry.pids.count(pid) != 0;
}

// Reaps `pid` if it is a zombie; true if it was reaped.
bool ReapIfZombie(pid_t pid) {
  pid_t result;
  do {
    result = ::waitpid(pid, nullptr, WNOHANG);
  } while (result < 0 && errno == EINTR);
  return result == pid;
}

}  // namespace

tl::expected<void, Error> BecomeSubreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    int err = errno;
    return Fail(err, "cannot become a child subreaper (prctl PR_SET_CHILD_SUBREAPER)");
  }
  return {};
}

bool IsSubreaper() {
  int value = 0;
  return ::prctl(PR_GET_CHILD_SUBREAPER, &value, 0, 0, 0) == 0 && value != 0;
}

SpawnGuard::SpawnGuard() : lock_(SpawnMutex()) {}

ChildRegistration::ChildRegistration(const SpawnGuard& /*guard*/, pid_t pid) : pid_(pid) {
  Registry& registry = TheRegistry();
  std::lock_guard lock(registry.mutex);
  ++registry.pids[pid];
}

ChildRegistration::ChildRegistration(ChildRegistration&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)) {}

ChildRegistration& ChildRegistration::operator=(ChildRegistration&& other) noexcept {
  if (this != &other) {
    Release();
    pid_ = std::exchange(other.pid_, 0);
  }
  return *this;
}

ChildRegistration::~ChildRegistration() { Release(); }

void ChildRegistration::Release() {
  if (pid_ <= 0) return;
  Registry& registry = TheRegistry();
  std::lock_guard lock(registry.mutex);
  auto it = registry.pids.find(pid_);
  if (it != registry.pids.end() && --it->second == 0) registry.pids.erase(it);
  pid_ = 0;
}

int ReapOrphans() {
  std::unique_lock exclusive(SpawnMutex());
  int reaped = 0;
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: no children at all
    }
    if (info.si_pid == 0) break;  // children, but none has exited
    if (!IsRegistered(info.si_pid)) {
      if (ReapIfZombie(info.si_pid)) ++reaped;
      continue;
    }
    // The kernel keeps naming the same (registered) zombie first; find the others by name.
    pid_t self = ::getpid();
    for (const ProcStat& stat : ListProcesses()) {
      if (stat.ppid == self && stat.exited() && !IsRegistered(stat.pid) && ReapIfZombie(stat.pid)) {
        ++reaped;
      }
    }
    break;
  }
  return reaped;
}

}  // namespace gearrun::sandbox
