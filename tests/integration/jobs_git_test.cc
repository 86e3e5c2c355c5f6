// Job definitions from a git repository (`jobs: {git, ref, path, poll}`), as a node runs them:
// the real gearrun binary serving a real gearmand, following a real repository made in a
// temporary folder, served as file:// and through git-daemon.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "tests/support/command.h"
#include "tests/support/gearman.h"
#include "tests/support/git_repo.h"

namespace gearrun {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::WaitFor;
using namespace std::chrono_literals;

const std::string kGearrun = GEARRUN_BINARY;

enum class Transport { kFile, kGitDaemon };

class JobsFromGitTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    ::unsetenv("GEARMAN_SERVERS");
    ASSERT_TRUE(gearmand_.ready()) << gearmand_.log();
    repo_.Commit("jobs/hello.yaml", "name: hello\nsteps: [{run: 'echo hello'}]\n", "hello");
    repo_.Commit("README", "not a job\n", "a file outside the jobs folder");
    if (GetParam() == Transport::kGitDaemon) StartDaemon();
  }

  void TearDown() override {
    if (serve_) testing::StopServe(*serve_);
  }

  void StartDaemon(int port = 0) {
    daemon_ = std::make_unique<testing::GitDaemon>(dir_ / "origin", port);
    ASSERT_TRUE(daemon_->WaitUntilListening());
  }

  std::string Url() const {
    return GetParam() == Transport::kFile ? repo_.url() : daemon_->url("jobs");
  }

  std::vector<std::string> ServeArgs(const std::string& poll) const {
    return {kGearrun,      "serve",
            "--server",    gearmand_.address(),
            "--node",      "n1",
            "--executors", "1",
            "--state-dir", (dir_ / "state").string(),
            "--jobs-git",  Url(),
            "--jobs-ref",  "main",
            "--jobs-path", "jobs",
            "--jobs-poll", poll};
  }

  void Serve(const std::string& poll = "1s") {
    serve_ = std::make_unique<testing::BackgroundCommand>(ServeArgs(poll));
    ASSERT_TRUE(WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "stop:n1") == 1; }, 20s))
        << serve_->err();
  }

  // Whether the node registers `function` (waits up to 20 s for it to become so).
  bool Registers(const std::string& function, bool expected = true) {
    return WaitFor(
        [&] { return (testing::WorkersFor(gearmand_.port(), function) == 1) == expected; }, 20s);
  }

  bool LogSays(const std::string& text) {
    return WaitFor([&] { return serve_->err().find(text) != std::string::npos; }, 20s);
  }

  // Runs `function` and returns its final payload.
  nlohmann::json Build(const std::string& function) {
    testing::GearmanClient client(gearmand_.port());
    auto trace = client.Submit(function, "{}");
    EXPECT_TRUE(trace.Completed()) << trace.Describe();
    return trace.Completed() ? nlohmann::json::parse(trace.Last()->data, nullptr, false)
                             : nlohmann::json();
  }

  nlohmann::json Record(const std::string& job, int number) {
    return nlohmann::json::parse(
        testing::ReadFile(dir_ / "state/builds" / job / std::to_string(number) / "build.json"),
        nullptr, false);
  }

  testing::TempDir dir_;
  testing::Gearmand gearmand_;
  testing::GitRepo repo_{dir_ / "origin/jobs"};
  std::unique_ptr<testing::GitDaemon> daemon_;
  std::unique_ptr<testing::BackgroundCommand> serve_;
};

TEST_P(JobsFromGitTest, FollowsTheRepositoryAndKeepsTheLastGoodCommit) {
  const std::string first = repo_.Head();
  Serve();
  ASSERT_TRUE(Registers("build:hello")) << serve_->err();
  EXPECT_THAT(serve_->err(), HasSubstr("commit: " + first));
  auto payload = Build("build:hello");
  EXPECT_EQ(payload["result"], "SUCCESS");
  EXPECT_EQ(payload["jobs_commit"], first);
  EXPECT_EQ(Record("hello", 1)["jobs_commit"], first);

  // A new commit adds a job and removes one: the registrations follow.
  repo_.Commit("jobs/world.yaml", "name: world\nsteps: [{run: 'echo world'}]\n", "world");
  repo_.Remove("jobs/hello.yaml", "no more hello");
  const std::string second = repo_.Head();
  ASSERT_TRUE(Registers("build:world")) << serve_->err();
  EXPECT_TRUE(Registers("build:hello", false)) << serve_->err();
  EXPECT_TRUE(LogSays("jobs updated to commit " + second)) << serve_->err();

  // A broken commit changes nothing, and says where each error is, with the commit.
  repo_.Commit("jobs/new.yaml", "name: new\nsteps: [{run: 'true'}]\n", "new");
  repo_.Commit("jobs/world.yaml", "name: world\nstepz: []\n", "broken");
  const std::string broken = repo_.Head();
  ASSERT_TRUE(LogSays("commit " + broken +
                      " of the jobs repository has errors; the jobs of "
                      "commit " +
                      second + " stay in force"))
      << serve_->err();
  EXPECT_THAT(serve_->err(), HasSubstr(broken.substr(0, 12) + ":jobs/world.yaml:2:1: "));
  EXPECT_EQ(testing::WorkersFor(gearmand_.port(), "build:new"), 0);
  EXPECT_EQ(testing::WorkersFor(gearmand_.port(), "build:world"), 1);
  EXPECT_EQ(Build("build:world")["jobs_commit"], second);
  // Reported once, not at every poll.
  std::this_thread::sleep_for(2500ms);
  std::string log = serve_->err();
  EXPECT_EQ(log.find("commit " + broken + " of"), log.rfind("commit " + broken + " of"));

  // Fixed: the next commit comes into force, with everything since the good one.
  repo_.Commit("jobs/world.yaml", "name: world\nsteps: [{run: 'echo fixed'}]\n", "fixed");
  ASSERT_TRUE(Registers("build:new")) << serve_->err();
  EXPECT_EQ(Build("build:world")["jobs_commit"], repo_.Head());
}

TEST_P(JobsFromGitTest, StartsOfflineFromTheLastGoodCommit) {
  const std::string first = repo_.Head();
  Serve();
  ASSERT_TRUE(Registers("build:hello")) << serve_->err();
  testing::StopServe(*serve_);
  serve_.reset();

  // The remote goes away.
  const auto hidden = dir_ / "hidden";
  const int port = daemon_ ? daemon_->port() : 0;
  if (daemon_) {
    daemon_->Stop();
  } else {
    std::filesystem::rename(repo_.path(), hidden);
  }
  Serve();
  ASSERT_TRUE(Registers("build:hello")) << serve_->err();
  EXPECT_THAT(serve_->err(), HasSubstr("starting from the last good commit " + first));
  EXPECT_EQ(Build("build:hello")["jobs_commit"], first);

  // Back, with a new commit: picked up at the next poll.
  if (daemon_) {
    StartDaemon(port);
  } else {
    std::filesystem::rename(hidden, repo_.path());
  }
  repo_.Commit("jobs/world.yaml", "name: world\nsteps: [{run: 'true'}]\n", "world");
  ASSERT_TRUE(Registers("build:world")) << serve_->err();
  EXPECT_TRUE(LogSays("jobs repository reachable again")) << serve_->err();
}

INSTANTIATE_TEST_SUITE_P(Transports, JobsFromGitTest,
                         ::testing::Values(Transport::kFile, Transport::kGitDaemon),
                         [](const auto& param) {
                           return param.param == Transport::kFile ? "file" : "git_daemon";
                         });

class JobsFromGitFileTest : public JobsFromGitTest {};

TEST_P(JobsFromGitFileTest, SighupFetchesAtOnce) {
  Serve("0");  // never polls by itself
  ASSERT_TRUE(Registers("build:hello")) << serve_->err();
  repo_.Commit("jobs/world.yaml", "name: world\nsteps: [{run: 'true'}]\n", "world");
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(testing::WorkersFor(gearmand_.port(), "build:world"), 0);
  serve_->Signal(SIGHUP);
  EXPECT_TRUE(Registers("build:world")) << serve_->err();
  EXPECT_THAT(serve_->err(), HasSubstr("fetching the jobs repository now"));
}

TEST_P(JobsFromGitFileTest, UnreachableRemoteWithNothingFetchedBeforeIsAClearError) {
  const std::string url = "git://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort()) + "/x";
  auto r = testing::RunCommand({kGearrun, "serve", "--server", gearmand_.address(), "--node", "n1",
                                "--state-dir", (dir_ / "state").string(), "--jobs-git", url},
                               {.timeout = 60s});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(url));
  EXPECT_THAT(r.err, HasSubstr("no job definitions from an earlier fetch are on this node"));
}

TEST_P(JobsFromGitFileTest, ABrokenFirstCommitIsRefusedWithItsErrors) {
  repo_.Commit("jobs/bad.yaml", "name: bad\nstepz: []\n", "bad");
  auto r = testing::RunCommand(ServeArgs("1s"), {.timeout = 60s});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(repo_.Head().substr(0, 12) + ":jobs/bad.yaml:2:1"));
  EXPECT_THAT(r.err, HasSubstr("no earlier commit was loaded on this node"));
}

TEST_P(JobsFromGitFileTest, RunUsesTheDefinitionsTheNodeLoaded) {
  dir_.Write("node.yaml", "state_dir: " + (dir_ / "state").string() + "\njobs: {git: \"" + Url() +
                              "\", ref: main, path: jobs}\n");
  auto before =
      testing::RunCommand({kGearrun, "run", "hello", "--config", (dir_ / "node.yaml").string()});
  EXPECT_EQ(before.exit_code, 2);
  EXPECT_THAT(before.err, HasSubstr("start gearrun serve once"));
  Serve();
  ASSERT_TRUE(Registers("build:hello")) << serve_->err();
  auto after =
      testing::RunCommand({kGearrun, "run", "hello", "--config", (dir_ / "node.yaml").string()});
  EXPECT_EQ(after.exit_code, 0) << after.err;
  EXPECT_THAT(after.out, HasSubstr("hello"));
  EXPECT_EQ(Record("hello", 1)["jobs_commit"], repo_.Head());
}

INSTANTIATE_TEST_SUITE_P(File, JobsFromGitFileTest, ::testing::Values(Transport::kFile),
                         [](const auto&) { return "file"; });

}  // namespace
}  // namespace gearrun
