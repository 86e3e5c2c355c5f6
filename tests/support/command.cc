#include "tests/support/command.h"

#include <stdlib.h>

#include <boost/process.hpp>
#include <fstream>
#include <sstream>
#include <thread>

namespace gearrun::testing {
namespace bp = boost::process;

namespace {

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, const CommandOptions& options) {
  TempDir capture;
  auto out_path = capture.path() / "out";
  auto err_path = capture.path() / "err";
  bp::environment env = boost::this_process::environment();
  for (const auto& [k, v] : options.env) env[k] = v;
  std::vector<std::string> args(argv.begin() + 1, argv.end());
  auto dir = options.dir.empty() ? std::filesystem::current_path() : options.dir;

  CommandResult result;
  bp::child child(bp::exe = argv.at(0), bp::args = args,
                  bp::std_in<bp::null, bp::std_out> out_path.string(),
                  bp::std_err > err_path.string(), env, bp::start_dir = dir.string());
  // Our own deadline loop: child::wait_for is unreliable in Boost 1.74.
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  while (child.running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      result.timed_out = true;
      child.terminate();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!result.timed_out) {
    child.wait();
    int native = child.native_exit_code();
    result.exit_code = WIFEXITED(native) ? WEXITSTATUS(native) : -1;
  }
  result.out = ReadFile(out_path);
  result.err = ReadFile(err_path);
  return result;
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

}  // namespace gearrun::testing
