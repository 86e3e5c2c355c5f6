// A git repository made for a test with the git program (gearrun itself uses libgit2), and
// git-daemon serving a folder of them on 127.0.0.1.
//
//   GitRepo repo(dir / "origin/project");      // git init -b main
//   repo.Commit("README", "text\n", "first");  // writes, adds, commits
//   std::string id = repo.Head();
//   GitDaemon daemon(dir / "origin");          // git://127.0.0.1:<port>/project
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/command.h"

namespace gearrun::testing {

class GitRepo {
 public:
  explicit GitRepo(std::filesystem::path path);  // creates it, on branch main
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string url() const { return "file://" + path_.string(); }
  // Runs git -C <path> with `args`; fails the test when git fails.
  void Git(std::vector<std::string> args) const;
  // Writes `text` to `file` (relative; folders made), adds and commits it.
  void Commit(const std::string& file, const std::string& text, const std::string& message) const;
  // Removes `file` and commits that.
  void Remove(const std::string& file, const std::string& message) const;
  // The commit HEAD points at: 40 hex digits.
  [[nodiscard]] std::string Head() const;

 private:
  // Runs git with `args` (and a configuration of its own); fails the test when git fails.
  void Run(std::vector<std::string> args) const;
  std::filesystem::path path_;
  std::filesystem::path home_;  // HOME for git: no user configuration is read
};

// /usr/lib/git-core/git-daemon serving every repository under `base` (not `git daemon`,
// whose child would outlive the test), stopped when destroyed.
class GitDaemon {
 public:
  // port 0: a free one.
  explicit GitDaemon(const std::filesystem::path& base, int port = 0);
  ~GitDaemon();
  GitDaemon(const GitDaemon&) = delete;
  GitDaemon& operator=(const GitDaemon&) = delete;
  [[nodiscard]] int port() const { return port_; }
  // git://127.0.0.1:<port>/<name>
  [[nodiscard]] std::string url(const std::string& name) const;
  // Whether it accepts connections (it takes a moment after start).
  [[nodiscard]] bool WaitUntilListening() const;
  void Stop();

 private:
  int port_;
  std::unique_ptr<BackgroundCommand> process_;
};

}  // namespace gearrun::testing
