#include "tests/support/command.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/process.hpp>
#include <fstream>
#include <sstream>
#include <thread>

namespace gearrun::testing {
namespace bp = boost::process;

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct BackgroundCommand::State {
  TempDir capture;
  bp::child child;
};

BackgroundCommand::BackgroundCommand(const std::vector<std::string>& argv,
                                     const CommandOptions& options)
    : state_(std::make_unique<State>()) {
  // Variables go through env(1): Boost 1.74's environment lookup (basic_environment::find)
  // reads past the end of shorter entries (AddressSanitizer: heap-buffer-overflow).
  std::vector<std::string> full;
  if (!options.env.empty()) {
    full.push_back("/usr/bin/env");
    for (const auto& [k, v] : options.env) full.push_back(k + "=" + v);
  }
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<std::string> args(full.begin() + 1, full.end());
  auto dir = options.dir.empty() ? std::filesystem::current_path() : options.dir;
  state_->child = bp::child(
      bp::exe = full.at(0), bp::args = args,
      bp::std_in<bp::null, bp::std_out>(state_->capture.path() / "out").string(),
      bp::std_err > (state_->capture.path() / "err").string(), bp::start_dir = dir.string());
}

BackgroundCommand::~BackgroundCommand() {
  std::error_code ec;
  if (state_->child.running(ec)) state_->child.terminate(ec);
  if (state_->child.valid()) state_->child.wait(ec);
}

int BackgroundCommand::pid() const { return state_->child.id(); }

void BackgroundCommand::Signal(int signo) const { ::kill(pid(), signo); }

std::string BackgroundCommand::out() const { return ReadFile(state_->capture.path() / "out"); }
std::string BackgroundCommand::err() const { return ReadFile(state_->capture.path() / "err"); }

CommandResult BackgroundCommand::Wait(std::chrono::milliseconds timeout) {
  CommandResult result;
  // Our own deadline loop: child::wait_for is unreliable in Boost 1.74.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (state_->child.running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      result.timed_out = true;
      state_->child.terminate();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!result.timed_out) {
    state_->child.wait();
    int native = state_->child.native_exit_code();
    result.exit_code = WIFEXITED(native) ? WEXITSTATUS(native) : -1;
  }
  result.out = ReadFile(state_->capture.path() / "out");
  result.err = ReadFile(state_->capture.path() / "err");
  return result;
}

CommandResult RunCommand(const std::vector<std::string>& argv, const CommandOptions& options) {
  BackgroundCommand command(argv, options);
  return command.Wait(options.timeout);
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

void StopServe(BackgroundCommand& serve) {
  serve.Signal(SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  serve.Signal(SIGTERM);
  serve.Wait(std::chrono::seconds(30));
}

bool ProcessAlive(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  auto close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z';
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "gearrun-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::Write(const std::string& relative, const std::string& text) const {
  auto p = path_ / relative;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::vector<std::string> UnderNofileLimit(int open_files, const std::vector<std::string>& argv) {
  std::string limit = std::to_string(open_files);
  std::vector<std::string> wrapped = {"/usr/bin/prlimit", "--nofile=" + limit + ":" + limit};
  if (::geteuid() == 0) {
    wrapped.insert(wrapped.end(), {"/usr/bin/setpriv", "--bounding-set=-sys_resource",
                                   "--inh-caps=-sys_resource", "--"});
  }
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

}  // namespace gearrun::testing
