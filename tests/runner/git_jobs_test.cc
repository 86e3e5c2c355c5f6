// GitJobs against real repositories made in temporary folders (file:// URLs): what is loaded,
// what is kept on disk, the fallbacks, and a stop while a fetch hangs.
#include "runner/git_jobs.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>

#include "jobs/labels.h"
#include "runner/git.h"
#include "tests/support/command.h"
#include "tests/support/git_repo.h"

namespace gearrun::runner {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

std::string Job(const std::string& name) { return "name: " + name + "\nsteps: [{run: 'true'}]\n"; }

// What the default logger writes while it lives.
class LogCapture {
 public:
  LogCapture()
      : previous_(spdlog::default_logger()),
        sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(text_)) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink_));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  [[nodiscard]] std::string text() const { return text_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream text_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

class GitJobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_.Commit("jobs/a.yaml", Job("a"), "a");
    repo_.Commit("other/b.yaml", Job("b"), "b, outside jobs/");
  }

  JobsFromGit Settings(std::string ref = "main") const {
    return {.url = repo_.url(), .ref = std::move(ref), .path = "jobs", .poll = 0ms};
  }

  std::vector<std::string> Functions() const { return registry_.current()->functions; }

  std::set<std::string> OnDisk() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_ / "state/jobs-git")) {
      names.insert(e.path().filename().string());
    }
    return names;
  }

  testing::TempDir dir_;
  testing::GitRepo repo_{dir_ / "origin/jobs"};
  JobRegistry registry_{{}, jobs::MakeNodeLabels("n1", {})};
};

TEST_F(GitJobsTest, LoadsOnlyThePathOfTheRefsCommit) {
  GitJobs source(Settings(), dir_ / "state", registry_);
  auto loaded = source.Load();
  ASSERT_TRUE(loaded) << loaded.error();
  EXPECT_EQ(loaded->commit, repo_.Head());
  EXPECT_FALSE(loaded->offline);
  EXPECT_THAT(Functions(), ElementsAre("build:a"));
  EXPECT_EQ(registry_.current()->commit, repo_.Head());
  // Only jobs/ was written out, and `good` names the commit with where it came from.
  EXPECT_EQ(OnDisk(), (std::set<std::string>{"good", repo_.Head()}));
  EXPECT_TRUE(fs::exists(dir_ / "state/jobs-git" / repo_.Head() / "a.yaml"));
  EXPECT_FALSE(fs::exists(dir_ / "state/jobs-git" / repo_.Head() / "b.yaml"));
  EXPECT_THAT(testing::ReadFile(dir_ / "state/jobs-git/good"), HasSubstr(repo_.Head()));
  auto last = GitJobs::LastGoodJobs(Settings(), dir_ / "state");
  ASSERT_TRUE(last);
  EXPECT_EQ(last->commit, repo_.Head());
  // Another ref (or URL, or path) is not the same repository's last good commit.
  EXPECT_FALSE(GitJobs::LastGoodJobs(Settings("stable"), dir_ / "state"));
}

TEST_F(GitJobsTest, RefMayBeATagOrACommitId) {
  const std::string first = repo_.Head();
  repo_.Git({"tag", "-a", "-m", "release", "v1"});
  repo_.Commit("jobs/c.yaml", Job("c"), "c");
  {
    JobRegistry registry({}, jobs::MakeNodeLabels("n1", {}));
    GitJobs tag(Settings("v1"), dir_ / "tag", registry);
    auto loaded = tag.Load();
    ASSERT_TRUE(loaded) << loaded.error();
    EXPECT_EQ(loaded->commit, first);
    EXPECT_THAT(registry.current()->functions, ElementsAre("build:a"));
  }
  JobRegistry registry({}, jobs::MakeNodeLabels("n1", {}));
  GitJobs id(Settings(first), dir_ / "id", registry);
  auto loaded = id.Load();
  ASSERT_TRUE(loaded) << loaded.error();
  EXPECT_EQ(loaded->commit, first);
}

TEST_F(GitJobsTest, ABrokenNewestCommitAtStartFallsBackToTheLastGoodOne) {
  const std::string good = repo_.Head();
  ASSERT_TRUE(GitJobs(Settings(), dir_ / "state", registry_).Load());
  repo_.Commit("jobs/a.yaml", "name: a\n", "broken: no steps");
  JobRegistry fresh({}, jobs::MakeNodeLabels("n1", {}));
  GitJobs source(Settings(), dir_ / "state", fresh);
  auto loaded = source.Load();
  ASSERT_TRUE(loaded) << loaded.error();
  EXPECT_EQ(loaded->commit, good);
  EXPECT_THAT(fresh.current()->functions, ElementsAre("build:a"));
  EXPECT_EQ(OnDisk(), (std::set<std::string>{"good", good}));
}

// One commit of 37 bytes once crashed every node following the repository at its next
// poll, and again at every restart.
TEST_F(GitJobsTest, AHostileCommitIsAnErrorLikeAnyOther) {
  const std::string good = repo_.Head();
  GitJobs source(Settings(), dir_ / "state", registry_);
  ASSERT_TRUE(source.Load());
  repo_.Commit("jobs/bomb.yaml", "a: &a [*a]\n", "self-referencing alias");
  const std::string head = repo_.Head().substr(0, 12);
  LogCapture log;
  JobRegistry fresh({}, jobs::MakeNodeLabels("n1", {}));
  auto loaded = GitJobs(Settings(), dir_ / "state", fresh).Load();  // a restart
  ASSERT_TRUE(loaded) << loaded.error();
  EXPECT_EQ(loaded->commit, good);
  EXPECT_THAT(log.text(), HasSubstr(head + ":jobs/bomb.yaml:1:8: alias *a refers to a node "
                                           "that contains it"));
  EXPECT_THAT(fresh.current()->functions, ElementsAre("build:a"));
}

TEST_F(GitJobsTest, AMissingPathOrRefWithoutALastGoodCommitRefusesToStart) {
  JobsFromGit no_path = Settings();
  no_path.path = "nothing/here";
  auto path = GitJobs(no_path, dir_ / "state", registry_).Load();
  ASSERT_FALSE(path);
  EXPECT_THAT(path.error(), HasSubstr("no earlier commit was loaded on this node"));
  auto ref = GitJobs(Settings("no-such-branch"), dir_ / "state", registry_).Load();
  ASSERT_FALSE(ref);
  EXPECT_THAT(ref.error(), HasSubstr("'no-such-branch' not found"));
  // An unreachable remote; its credentials never show.
  LogCapture log;
  JobsFromGit secret{.url = "https://user:s3cret@127.0.0.1:1/jobs.git", .poll = 0ms};
  auto unreachable = GitJobs(secret, dir_ / "state", registry_).Load();
  ASSERT_FALSE(unreachable);
  EXPECT_THAT(unreachable.error(), HasSubstr("https://127.0.0.1:1/jobs.git"));
  EXPECT_THAT(unreachable.error(), HasSubstr("no job definitions from an earlier fetch"));
  EXPECT_THAT(unreachable.error() + log.text(), Not(HasSubstr("s3cret")));
}

TEST_F(GitJobsTest, ErrorsNameTheCommitAndTheFilesAsInTheRepository) {
  repo_.Commit("jobs/dup.yaml", Job("a"), "a second job a");
  const std::string head = repo_.Head().substr(0, 12);
  LogCapture log;
  auto loaded = GitJobs(Settings(), dir_ / "state", registry_).Load();
  ASSERT_FALSE(loaded);
  // Both files of the duplicate, as `git show` names them; never the state directory.
  EXPECT_THAT(log.text(), HasSubstr(head + ":jobs/dup.yaml:1:1: job 'a' is already defined at " +
                                    head + ":jobs/a.yaml:1"));
  EXPECT_THAT(log.text(), Not(HasSubstr((dir_ / "state").string())));
  // Nothing of the broken commit is left on disk.
  EXPECT_EQ(OnDisk(), std::set<std::string>{});
}

TEST_F(GitJobsTest, PollsFollowNewCommitsAndReportABrokenOneOnce) {
  GitJobs source(Settings(), dir_ / "state", registry_);
  ASSERT_TRUE(source.Load());
  const std::string first = repo_.Head();
  ASSERT_EQ(OnDisk(), (std::set<std::string>{"good", first}));
  std::atomic<int> changes{0};
  LogCapture log;
  source.Start([&] { ++changes; });
  repo_.Commit("jobs/c.yaml", Job("c"), "c");
  source.PollNow();
  ASSERT_TRUE(testing::WaitFor([&] { return changes == 1; }, 20s)) << log.text();
  EXPECT_THAT(Functions(), ElementsAre("build:a", "build:c"));
  EXPECT_EQ(OnDisk(), (std::set<std::string>{"good", repo_.Head()}));  // first's export went

  repo_.Commit("jobs/c.yaml", "name: c\n", "broken");
  const std::string broken = repo_.Head();
  auto reports = [&] {
    std::string text = log.text();
    int n = 0;
    for (auto at = text.find("commit " + broken + " of"); at != std::string::npos;
         at = text.find("commit " + broken + " of", at + 1)) {
      ++n;
    }
    return n;
  };
  source.PollNow();
  ASSERT_TRUE(testing::WaitFor([&] { return reports() == 1; }, 20s)) << log.text();
  source.PollNow();  // asked again: said again
  ASSERT_TRUE(testing::WaitFor([&] { return reports() == 2; }, 20s)) << log.text();
  EXPECT_EQ(changes, 1);
  EXPECT_THAT(Functions(), ElementsAre("build:a", "build:c"));
  EXPECT_TRUE(source.Stop());
}

// A git:// server that accepts connections (in the kernel's backlog) and never answers.
class SilentServer {
 public:
  SilentServer() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&address), size), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size), 0);
    port_ = ntohs(address.sin_port);
  }
  ~SilentServer() { Close(); }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  [[nodiscard]] std::string url() const {
    return "git://127.0.0.1:" + std::to_string(port_) + "/jobs";
  }
  // Connections waiting in the backlog are reset: a fetch then fails.
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  int port_ = 0;
};

TEST_F(GitJobsTest, StopLeavesAHungFetchBehindAndItTouchesNothingAfterwards) {
  SilentServer server;
  std::atomic<int> changes{0};
  {
    JobsFromGit settings{.url = server.url(), .ref = "main", .path = "jobs", .poll = 0ms};
    GitJobs source(settings, dir_ / "state", registry_);
    source.Start([&] { ++changes; });
    source.PollNow();
    std::this_thread::sleep_for(300ms);  // the fetch is waiting for an answer
    auto started = std::chrono::steady_clock::now();
    EXPECT_FALSE(source.Stop());
    EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);
  }                // source is gone; its thread is still in the fetch
  server.Close();  // the fetch fails now, and the thread ends without touching `source`
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(changes, 0);
}

}  // namespace
}  // namespace gearrun::runner
