// Test support: run a real program with a deadline and capture what it prints.
//
// For tests of whole binaries (`gearrun`, `gearmand`). Not for the code under test: the
// sandbox has its own launcher; this one is deliberately simple and independent of it.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gearrun::testing {

struct CommandResult {
  int exit_code = -1;  // -1 when killed at the deadline or by a signal
  bool timed_out = false;
  std::string out;
  std::string err;
};

struct CommandOptions {
  std::chrono::milliseconds timeout{30'000};
  std::filesystem::path dir;               // empty: the test's working directory
  std::map<std::string, std::string> env;  // set on top of the test's environment
};

// Runs argv[0] (a path) with the rest as arguments. Kills it at the deadline.
CommandResult RunCommand(const std::vector<std::string>& argv, const CommandOptions& options = {});

// A program running in the background, killed (SIGKILL) if still running when destroyed.
class BackgroundCommand {
 public:
  explicit BackgroundCommand(const std::vector<std::string>& argv,
                             const CommandOptions& options = {});
  ~BackgroundCommand();
  BackgroundCommand(const BackgroundCommand&) = delete;
  BackgroundCommand& operator=(const BackgroundCommand&) = delete;

  [[nodiscard]] int pid() const;
  void Signal(int signo) const;
  // Waits up to `timeout` for the program to end; then kills it.
  CommandResult Wait(std::chrono::milliseconds timeout);
  // What it has printed so far, on standard output and on standard error.
  [[nodiscard]] std::string out() const;
  [[nodiscard]] std::string err() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Ends a `gearrun serve` whatever it is doing: SIGTERM (drain), and 200 ms later a second
// one (abort running builds; two sent at once would arrive as one), then waits up to 30 s.
void StopServe(BackgroundCommand& serve);

// `argv` run with a hard limit of `open_files` open files, and without the right to raise it
// (as root: CAP_SYS_RESOURCE dropped), through prlimit(1) and setpriv(1).
std::vector<std::string> UnderNofileLimit(int open_files, const std::vector<std::string>& argv);

// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(5));

// The whole content of a file; empty when it cannot be read.
std::string ReadFile(const std::filesystem::path& path);

// Whether a process with this pid exists (and is not a zombie).
bool ProcessAlive(int pid);

// A temporary directory removed (with everything in it) when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(std::string_view name) const {
    return path_ / name;
  }
  // Writes `text` to `relative` (creating parent directories); returns the full path.
  std::filesystem::path Write(const std::string& relative, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

}  // namespace gearrun::testing
