#include "tests/support/git_repo.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "tests/support/gearman.h"

namespace gearrun::testing {

namespace fs = std::filesystem;

GitRepo::GitRepo(fs::path path) : path_(std::move(path)), home_(path_.parent_path()) {
  fs::create_directories(path_);
  Run({"init", "-q", "-b", "main", path_.string()});
}

void GitRepo::Run(std::vector<std::string> args) const {
  args.insert(args.begin(), {"/usr/bin/git", "-c", "user.name=t", "-c", "user.email=t@t", "-c",
                             "init.defaultBranch=main"});
  auto r = RunCommand(args, {.env = {{"HOME", home_.string()}, {"GIT_CONFIG_NOSYSTEM", "1"}}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

void GitRepo::Git(std::vector<std::string> args) const {
  args.insert(args.begin(), {"-C", path_.string()});
  Run(std::move(args));
}

void GitRepo::Commit(const std::string& file, const std::string& text,
                     const std::string& message) const {
  fs::create_directories((path_ / file).parent_path());
  {
    std::ofstream out(path_ / file, std::ios::binary | std::ios::trunc);
    out << text;
  }
  Git({"add", file});
  Git({"commit", "-q", "-m", message});
}

void GitRepo::Remove(const std::string& file, const std::string& message) const {
  Git({"rm", "-q", file});
  Git({"commit", "-q", "-m", message});
}

std::string GitRepo::Head() const {
  auto r = RunCommand({"/usr/bin/git", "-C", path_.string(), "rev-parse", "HEAD"});
  return r.out.substr(0, 40);
}

GitDaemon::GitDaemon(const fs::path& base, int port)
    : port_(port != 0 ? port : FreeLoopbackPort()) {
  process_ = std::make_unique<BackgroundCommand>(std::vector<std::string>{
      "/usr/lib/git-core/git-daemon", "--reuseaddr", "--base-path=" + base.string(), "--export-all",
      "--listen=127.0.0.1", "--port=" + std::to_string(port_), base.string()});
}

GitDaemon::~GitDaemon() { Stop(); }

std::string GitDaemon::url(const std::string& name) const {
  return "git://127.0.0.1:" + std::to_string(port_) + "/" + name;
}

bool GitDaemon::WaitUntilListening() const {
  return WaitFor(
      [&] {
        return RunCommand({"/usr/bin/git", "ls-remote", url("-"), "HEAD"})
                   .err.find("Connection refused") == std::string::npos;
      },
      std::chrono::seconds(10));
}

void GitDaemon::Stop() {
  if (!process_) return;
  process_->Signal(SIGTERM);
  process_->Wait(std::chrono::seconds(5));
  process_.reset();
}

}  // namespace gearrun::testing
