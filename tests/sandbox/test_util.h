// Helpers for the sandbox tests: sinks that record output, temporary directories, and
// looking at processes through /proc.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/proc.h"
#include "sandbox/process.h"
#include "tests/support/command.h"

namespace gearrun::sandbox::testing {

// Keeps everything it is given.
class StringSink : public OutputSink {
 public:
  void Write(std::string_view bytes) override { data.append(bytes); }
  std::string data;
};

// Counts bytes and remembers whether any of them was not `expected`.
class CountingSink : public OutputSink {
 public:
  explicit CountingSink(char expected) : expected_(expected) {}
  void Write(std::string_view bytes) override {
    total += bytes.size();
    ++chunks;
    largest_chunk = std::max(largest_chunk, bytes.size());
    for (char c : bytes) {
      if (c != expected_) ++unexpected;
    }
  }
  std::uint64_t total = 0;
  std::uint64_t unexpected = 0;
  std::uint64_t chunks = 0;
  std::size_t largest_chunk = 0;

 private:
  char expected_;
};

// A fresh directory under /tmp, removed with everything in it.
using ::gearrun::testing::TempDir;
using ::gearrun::testing::WaitFor;

inline std::string ReadFileOrEmpty(const std::filesystem::path& path) {
  return ::gearrun::testing::ReadFile(path);
}

// The pid written (as text) into `path`, or -1.
inline pid_t ReadPid(const std::filesystem::path& path) {
  std::string text = ReadFileOrEmpty(path);
  if (text.empty()) return -1;
  return static_cast<pid_t>(std::stol(text));
}

// Alive and running code (not a zombie).
inline bool Running(pid_t pid) {
  auto stat = ReadProcStat(pid);
  return stat && !stat->exited();
}

// Processes still running code whose environment holds `cookie_variable`.
inline std::vector<pid_t> ProcessesWithCookie(std::string_view cookie_variable) {
  return FindProcesses(cookie_variable);
}

// Zombie children of this process.
inline std::vector<pid_t> OurZombies() {
  std::vector<pid_t> pids;
  pid_t self = ::getpid();
  for (const ProcStat& stat : ListProcesses()) {
    if (stat.ppid == self && stat.exited()) pids.push_back(stat.pid);
  }
  return pids;
}

inline CgroupMounts MachineCgroupMounts() {
  return FindCgroupMounts(ParseMountInfo(ReadFileOrEmpty("/proc/self/mountinfo")));
}

inline bool MachineHasCgroup2() { return MachineCgroupMounts().v2.has_value(); }

// /bin/sh -c `script` with a small, fixed environment and a deadline that bounds the test.
inline Command Shell(std::string script) {
  Command command;
  command.argv = {"/bin/sh", "-c", std::move(script)};
  command.env = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
  command.kill = KillPolicy{.signal = SIGTERM, .grace = std::chrono::seconds(2)};
  command.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  return command;
}

}  // namespace gearrun::sandbox::testing
