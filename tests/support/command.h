// Test support: run a real program with a deadline and capture what it prints.
//
// For tests of whole binaries (`gearrun`, `gearmand`). Not for the code under test: the
// sandbox has its own launcher; this one is deliberately simple and independent of it.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
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

// A temporary directory removed (with everything in it) when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  // Writes `text` to `relative` (creating parent directories); returns the full path.
  std::filesystem::path Write(const std::string& relative, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

}  // namespace gearrun::testing
