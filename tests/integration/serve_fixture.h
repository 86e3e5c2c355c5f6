// Test support for integration tests of `gearrun serve`: a real gearmand on a free loopback
// port, the real binary in a temporary folder with its jobs and state, and a real libgearman
// client (tests/support/gearman.h). Used by serve_test.cc and hardening_test.cc.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/command.h"
#include "tests/support/gearman.h"

namespace gearrun {

using testing::ClientEvent;
using Kind = ClientEvent::Kind;
using namespace std::chrono_literals;

inline const std::string kGearrun = GEARRUN_BINARY;

// CPU time (user + system) a process has used, in clock ticks.
inline long CpuTicks(int pid) {
  std::string stat = testing::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("GEARMAN_SERVERS");
    ASSERT_TRUE(gearmand_.ready()) << gearmand_.log();
  }

  void TearDown() override {
    if (serve_) testing::StopServe(*serve_);
  }

  void WriteJob(const std::string& name, const std::string& body) {
    dir_.Write("jobs/" + name + ".yaml", "name: " + name + "\n" + body);
  }

  std::vector<std::string> ServeArgs(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {kGearrun,      "serve",
                                     "--server",    gearmand_.address(),
                                     "--node",      "n1",
                                     "--jobs",      (dir_ / "jobs").string(),
                                     "--state-dir", (dir_ / "state").string(),
                                     "--labels",    "ubuntu,gcc"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  // Starts gearrun serve and waits until `function` has `workers` workers and the manager
  // is registered too (each connection comes up on its own).
  void Serve(const std::string& function, int workers, std::vector<std::string> extra = {}) {
    serve_ = std::make_unique<testing::BackgroundCommand>(ServeArgs(std::move(extra)));
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          return testing::WorkersFor(gearmand_.port(), function) == workers &&
                 testing::WorkersFor(gearmand_.port(), "stop:n1") == 1;
        },
        10s))
        << "not registered; stderr:\n"
        << Stderr();
  }

  std::string Stderr() { return serve_ ? serve_->err() : ""; }

  nlohmann::json Record(const std::string& job, int number) {
    return nlohmann::json::parse(
        testing::ReadFile(dir_ / "state/builds" / job / std::to_string(number) / "build.json"),
        nullptr, false);
  }
  std::string Log(const std::string& job, int number) {
    return testing::ReadFile(dir_ / "state/builds" / job / std::to_string(number) / "log");
  }

  static nlohmann::json Json(const ClientEvent* e) {
    return e == nullptr ? nlohmann::json() : nlohmann::json::parse(e->data, nullptr, false);
  }

  testing::TempDir dir_;
  testing::Gearmand gearmand_;
  testing::GearmanClient client_{gearmand_.port()};
  std::unique_ptr<testing::BackgroundCommand> serve_;
};

}  // namespace gearrun
