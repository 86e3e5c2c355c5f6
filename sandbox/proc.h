// Reading /proc and small file helpers: process snapshots, environ and cgroup membership,
// and signalling a process only after checking (through a pidfd) that it is still ours.
//
// Internal to sandbox/ (container.cc, reaper.cc); not for use by other folders.
// Thread safety: every function is thread-safe (they share nothing). Snapshots of /proc are
// racy by nature: a process may exit or be created while a listing is read; callers loop.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/error.h"

namespace gearrun::sandbox {

// The fields of /proc/<pid>/stat that the sandbox uses.
struct ProcStat {
  pid_t pid = 0;
  char state = '?';  // R, S, D, Z (zombie), X (dead), T, t, I, ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  unsigned flags = 0;  // PF_* flags

  // A kernel thread: no environment, no user space, never ours.
  [[nodiscard]] bool kernel_thread() const { return (flags & 0x00200000U) != 0; }  // PF_KTHREAD

  // A zombie or dead task: it runs no code any more, only its parent can make it go away.
  [[nodiscard]] bool exited() const { return state == 'Z' || state == 'X'; }
  // Inside exit(), not yet a zombie: its memory (and with it its environment) may already be
  // gone while it still holds files and sockets.
  [[nodiscard]] bool exiting() const {
    return (flags & 0x00000004U) != 0 && !exited();
  }  // PF_EXITING
};

// Parses the text of /proc/<pid>/stat. The command name may contain spaces and ')', so the
// fields after it are found from the last ')'. Pure; nullopt for malformed text.
[[nodiscard]] std::optional<ProcStat> ParseProcStat(std::string_view text);

// nullopt when the process is gone (or /proc is not mounted).
[[nodiscard]] std::optional<ProcStat> ReadProcStat(pid_t pid);

// Every process visible in /proc, in no particular order.
[[nodiscard]] std::vector<ProcStat> ListProcesses();

enum class EnvironMatch {
  kYes,
  kNo,
  // Read nothing: an exec'ing process between switching to its new address space and
  // setting up its environment, a zombie, or a process that really has an empty
  // environment. Worth asking again.
  kEmpty,
};

// Whether `entry` ("NAME=value") is one of the strings in /proc/<pid>/environ, i.e. in the
// environment the process was exec'd with. kNo also when unreadable (gone, another user, not
// dumpable).
[[nodiscard]] EnvironMatch MatchEnviron(pid_t pid, std::string_view entry);

// Which processes a scan looks at: every one, or only the caller's descendants (children,
// their children, ...). When the caller is a child subreaper, every process it ever started
// stays its descendant until it exits (orphans are re-parented to it), so kDescendants finds
// them all while reading the environment of far fewer processes.
enum class ProcessScope { kAll, kDescendants };

// Live (not zombie, not kernel-thread) processes other than the caller whose environment
// holds `entry`, or for which `also(stat)` holds. Processes whose environ reads empty are
// asked again a few times over some milliseconds, so that one caught in the middle of an
// exec is not missed.
[[nodiscard]] std::vector<pid_t> FindProcesses(
    std::string_view entry, const std::function<bool(const ProcStat&)>& also = {},
    ProcessScope scope = ProcessScope::kAll);

// The pids of `stats` that descend from `ancestor` (not `ancestor` itself).
[[nodiscard]] std::vector<pid_t> Descendants(const std::vector<ProcStat>& stats, pid_t ancestor);

// What /proc/<pid>/cgroup says (see sandbox/cgroup.h); nullopt when the process is gone.
[[nodiscard]] std::optional<ProcCgroup> ReadProcCgroup(pid_t pid);

// True if `path` is `dir` or below it ("/a/b" is under "/a", "/ab" is not).
[[nodiscard]] bool PathIsUnder(std::string_view path, std::string_view dir);

// Sends `sig` to `pid` if `still_ours(pid)` holds once a pidfd pins the process: the pid
// cannot then be recycled between the check and the signal. Returns true if delivered.
[[nodiscard]] bool SignalIfOurs(pid_t pid, int sig, const std::function<bool(pid_t)>& still_ours);

// pidfd_open(2) and pidfd_send_signal(2) as raw system calls (glibc 2.36's <sys/pidfd.h>
// lacks extern "C", so its wrappers do not link from C++). -1 with errno on failure.
[[nodiscard]] int PidfdOpen(pid_t pid);
[[nodiscard]] int PidfdSendSignal(int pidfd, int sig);

// Reads a whole (small) file; EINTR handled. nullopt on failure.
[[nodiscard]] std::optional<std::string> ReadWholeFile(const std::string& path);

// Writes `contents` with one write(2) (cgroup files need that). No O_CREAT.
[[nodiscard]] tl::expected<void, Error> WriteExistingFile(const std::string& path,
                                                          std::string_view contents);

}  // namespace gearrun::sandbox
