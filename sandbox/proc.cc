#include "sandbox/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "sandbox/unique_fd.h"

namespace gearrun::sandbox {
namespace {

// Parses a decimal pid; nullopt unless `text` is all digits and fits.
std::optional<pid_t> ParsePid(std::string_view text) {
  if (text.empty()) return std::nullopt;
  pid_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

std::optional<long long> ParseSigned(std::string_view text) {
  long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Splits off the next space-separated field of `rest`.
std::string_view NextField(std::string_view& rest) {
  std::size_t start = rest.find_first_not_of(' ');
  if (start == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(start);
  std::size_t end = rest.find(' ');
  std::string_view field = rest.substr(0, end);
  rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  return field;
}

}  // namespace

std::optional<ProcStat> ParseProcStat(std::string_view text) {
  // "<pid> (<comm>) <state> <ppid> <pgrp> <session> ..."
  std::size_t open = text.find(" (");
  std::size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return std::nullopt;
  }
  ProcStat stat;
  auto pid = ParsePid(text.substr(0, open));
  std::string_view rest = text.substr(close + 1);
  std::string_view state = NextField(rest);
  auto ppid = ParsePid(NextField(rest));
  auto pgrp = ParsePid(NextField(rest));
  auto session = ParsePid(NextField(rest));
  auto tty = ParseSigned(NextField(rest));
  auto tpgid = ParseSigned(NextField(rest));
  auto flags = ParseSigned(NextField(rest));
  if (!pid || state.size() != 1 || !ppid || !pgrp || !session || !tty || !tpgid || !flags) {
    return std::nullopt;
  }
  stat.flags = static_cast<unsigned>(*flags);
  stat.pid = *pid;
  stat.state = state[0];
  stat.ppid = *ppid;
  stat.pgrp = *pgrp;
  stat.session = *session;
  return stat;
}

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  auto text = ReadWholeFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return std::nullopt;
  return ParseProcStat(*text);
}

std::vector<ProcStat> ListProcesses() {
  std::vector<ProcStat> result;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return result;
  while (dirent* entry = ::readdir(dir)) {
    auto pid = ParsePid(entry->d_name);
    if (!pid) continue;
    if (auto stat = ReadProcStat(*pid)) result.push_back(*stat);
  }
  ::closedir(dir);
  return result;
}

EnvironMatch MatchEnviron(pid_t pid, std::string_view entry) {
  auto environ_text = ReadWholeFile("/proc/" + std::to_string(pid) + "/environ");
  if (!environ_text) return EnvironMatch::kNo;
  if (environ_text->empty()) return EnvironMatch::kEmpty;
  std::string_view rest = *environ_text;
  while (!rest.empty()) {
    std::size_t end = rest.find('\0');
    if (rest.substr(0, end) == entry) return EnvironMatch::kYes;
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return EnvironMatch::kNo;
}

std::vector<pid_t> Descendants(const std::vector<ProcStat>& stats, pid_t ancestor) {
  std::unordered_map<pid_t, pid_t> parent;
  for (const ProcStat& stat : stats) parent[stat.pid] = stat.ppid;
  // 1: descends, 0: does not, absent: not known yet. Each chain is walked once. A chain
  // that ends at a pid the snapshot does not have (its process exited while the listing was
  // read, and its children are being re-parented) counts as descending: better one more
  // process to look at than one missed.
  std::unordered_map<pid_t, int> known{{0, 0}, {1, 0}};
  known[ancestor] = 1;  // also when the ancestor is init (a container's PID 1)
  std::vector<pid_t> out;
  std::vector<pid_t> chain;
  for (const ProcStat& stat : stats) {
    chain.clear();
    pid_t at = stat.pid;
    int verdict = 0;
    for (;;) {
      if (auto k = known.find(at); k != known.end()) {
        verdict = k->second;
        break;
      }
      auto p = parent.find(at);
      if (p == parent.end()) {
        verdict = 1;
        break;
      }
      if (chain.size() > stats.size()) break;  // a cycle in a torn snapshot
      chain.push_back(at);
      at = p->second;
    }
    for (pid_t pid : chain) known[pid] = verdict;
    if (verdict == 1 && stat.pid != ancestor) out.push_back(stat.pid);
  }
  return out;
}

std::vector<pid_t> FindProcesses(std::string_view entry,
                                 const std::function<bool(const ProcStat&)>& also,
                                 ProcessScope scope) {
  std::vector<pid_t> found;
  std::vector<pid_t> empty;
  pid_t self = ::getpid();
  std::vector<ProcStat> stats = ListProcesses();
  if (scope == ProcessScope::kDescendants) {
    std::vector<pid_t> keep = Descendants(stats, self);
    std::unordered_set<pid_t> wanted(keep.begin(), keep.end());
    std::erase_if(stats, [&](const ProcStat& stat) { return wanted.count(stat.pid) == 0; });
  }
  for (const ProcStat& stat : stats) {
    if (stat.exited() || stat.kernel_thread() || stat.pid == self) continue;
    if (also && also(stat)) {
      found.push_back(stat.pid);
      continue;
    }
    switch (MatchEnviron(stat.pid, entry)) {
      case EnvironMatch::kYes:
        found.push_back(stat.pid);
        break;
      case EnvironMatch::kEmpty:
        empty.push_back(stat.pid);
        break;
      case EnvironMatch::kNo:
        break;
    }
  }
  // An exec takes well under a millisecond between the two moments; a process that really
  // has no environment costs this wait on every scan (rare: env -i).
  for (int round = 0; round < 5 && !empty.empty(); ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::vector<pid_t> still_empty;
    for (pid_t pid : empty) {
      auto stat = ReadProcStat(pid);
      if (!stat || stat->exited()) continue;
      switch (MatchEnviron(pid, entry)) {
        case EnvironMatch::kYes:
          found.push_back(pid);
          break;
        case EnvironMatch::kEmpty:
          still_empty.push_back(pid);
          break;
        case EnvironMatch::kNo:
          break;
      }
    }
    empty = std::move(still_empty);
  }
  return found;
}

std::optional<ProcCgroup> ReadProcCgroup(pid_t pid) {
  auto text = ReadWholeFile("/proc/" + std::to_string(pid) + "/cgroup");
  if (!text) return std::nullopt;
  return ParseProcCgroup(*text);
}

bool PathIsUnder(std::string_view path, std::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir == "/") return !path.empty() && path.front() == '/';
  if (path.substr(0, dir.size()) != dir) return false;
  return path.size() == dir.size() || path[dir.size()] == '/';
}

bool SignalIfOurs(pid_t pid, int sig, const std::function<bool(pid_t)>& still_ours) {
  UniqueFd pidfd(PidfdOpen(pid));
  if (!pidfd) return false;  // ESRCH: gone already
  // The pidfd now names one process for good. If `pid` was recycled before pidfd_open, the
  // check below sees the new process and rejects it; if it is recycled after, the signal
  // goes to the (dead) process the pidfd names and fails with ESRCH.
  if (!still_ours(pid)) return false;
  return PidfdSendSignal(pidfd.get(), sig) == 0;
}

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U)); }

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0U));
}

std::optional<std::string> ReadWholeFile(const std::string& path) {
  int fd_value;
  do {
    fd_value = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd_value < 0 && errno == EINTR);
  UniqueFd fd(fd_value);
  if (!fd) return std::nullopt;
  std::string contents;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (n == 0) break;
    contents.append(buffer, static_cast<std::size_t>(n));
  }
  return contents;
}

tl::expected<void, Error> WriteExistingFile(const std::string& path, std::string_view contents) {
  int fd_value;
  do {
    fd_value = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  } while (fd_value < 0 && errno == EINTR);
  UniqueFd fd(fd_value);
  if (!fd) {
    int err = errno;
    return Fail(err, "cannot open " + path + " for writing");
  }
  ssize_t n;
  do {
    n = ::write(fd.get(), contents.data(), contents.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    return Fail(err, "cannot write '" + std::string(contents) + "' to " + path);
  }
  if (static_cast<std::size_t>(n) != contents.size()) {
    return Fail(EIO, "short write to " + path);
  }
  return {};
}

}  // namespace gearrun::sandbox
