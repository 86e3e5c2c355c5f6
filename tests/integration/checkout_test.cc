// A job's `checkout:` as users run it: the real gearrun binary checking out real git
// repositories made in temporary folders, through file:// and through `git daemon`.
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
using testing::RunCommand;
using namespace std::chrono_literals;

const std::string kGearrun = GEARRUN_BINARY;

class CheckoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("GEARMAN_SERVERS");
    repo_.Commit("README", "first\n", "first commit");
    first_ = repo_.Head();
    repo_.Git({"tag", "v1"});
    repo_.Git({"checkout", "-q", "-b", "feature"});
    repo_.Commit("feature.txt", "feature\n", "on feature");
    repo_.Git({"checkout", "-q", "main"});
    repo_.Commit("README", "second\n", "second commit");
    repo_.Git({"update-ref", "refs/changes/01/1/1", first_});
    dir_.Write("jobs/co.yaml", R"(name: co
parameters: {REPO: {required: true}, REF: {default: main}}
checkout: {url: "${REPO}", ref: "${REF}", path: src}
steps:
  - run: 'cat src/README; ls src; git -C src rev-parse HEAD'
)");
  }

  std::filesystem::path repo() const { return repo_.path(); }
  std::string Head() const { return repo_.Head(); }

  testing::CommandResult Run(const std::string& url, const std::string& ref) {
    return RunCommand({kGearrun, "run", "co", "--jobs", (dir_ / "jobs").string(), "--state-dir",
                       (dir_ / "state").string(), "-p", "REPO=" + url, "-p", "REF=" + ref},
                      {.timeout = 60s});
  }

  testing::TempDir dir_;
  testing::GitRepo repo_{dir_ / "origin/project"};
  std::string first_;
};

TEST_F(CheckoutTest, ChecksOutBranchesTagsCommitsAndRefsFromParameters) {
  std::string url = "file://" + repo().string();
  auto main = Run(url, "main");
  EXPECT_EQ(main.exit_code, 0) << main.out << main.err;
  EXPECT_THAT(main.out, HasSubstr("second"));
  EXPECT_THAT(main.out, HasSubstr("checked out " + Head()));

  auto tag = Run(url, "v1");
  EXPECT_THAT(tag.out, HasSubstr("first\n")) << tag.out << tag.err;
  auto feature = Run(url, "feature");
  EXPECT_THAT(feature.out, HasSubstr("feature.txt")) << feature.out;
  auto commit = Run(url, first_);
  EXPECT_THAT(commit.out, HasSubstr("checked out " + first_)) << commit.out;
  auto change = Run(url, "refs/changes/01/1/1");
  EXPECT_THAT(change.out, HasSubstr("checked out " + first_)) << change.out;
  auto record = nlohmann::json::parse(testing::ReadFile(dir_ / "state/builds/co/5/build.json"),
                                      nullptr, false);
  EXPECT_EQ(record["checkout_commit"], first_);
}

TEST_F(CheckoutTest, TheMirrorIsReusedAndOnlyNewObjectsAreFetched) {
  std::string url = "file://" + repo().string();
  auto first = Run(url, "main");
  EXPECT_EQ(first.exit_code, 0) << first.out << first.err;
  auto again = Run(url, "main");
  EXPECT_THAT(again.out, HasSubstr("(0 new objects fetched)")) << again.out;
  repo_.Commit("NEW", "new\n", "third commit");
  auto after = Run(url, "main");
  EXPECT_THAT(after.out, HasSubstr("checked out " + Head())) << after.out;
  EXPECT_THAT(after.out, ::testing::Not(HasSubstr("(0 new objects fetched)")));
}

TEST_F(CheckoutTest, WorksThroughGitDaemon) {
  testing::GitDaemon daemon(dir_ / "origin");
  std::string url = daemon.url("project");
  testing::CommandResult r;
  // The daemon takes a moment to listen; the checkout's own retries cover the rest.
  for (int i = 0; i < 20; ++i) {
    r = Run(url, "v1");
    if (r.exit_code == 0) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("checked out " + first_));
}

TEST_F(CheckoutTest, AnUnreachableRemoteMeansTheBuildCouldNotStart) {
  int port = testing::FreeLoopbackPort();
  auto r = Run("git://127.0.0.1:" + std::to_string(port) + "/nothing", "main");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("checkout failed after 3 attempts"));
  EXPECT_THAT(r.err, HasSubstr("git://127.0.0.1:" + std::to_string(port) + "/nothing"));
  auto record = nlohmann::json::parse(testing::ReadFile(dir_ / "state/builds/co/1/build.json"),
                                      nullptr, false);
  EXPECT_EQ(record["result"], "NOT_BUILT");
  // Credentials never show.
  auto secret = Run("https://user:s3cret@127.0.0.1:" + std::to_string(port) + "/x.git", "main");
  EXPECT_EQ(secret.out.find("s3cret"), std::string::npos);
  EXPECT_EQ(secret.err.find("s3cret"), std::string::npos);
  EXPECT_EQ(testing::ReadFile(dir_ / "state/builds/co/2/log").find("s3cret"), std::string::npos);
}

TEST_F(CheckoutTest, ServedBuildsCheckOutAndAFailedCheckoutIsHandedBack) {
  testing::Gearmand gearmand;
  ASSERT_TRUE(gearmand.ready());
  testing::BackgroundCommand serve({kGearrun, "serve", "--server", gearmand.address(), "--node",
                                    "n1", "--executors", "1", "--jobs", (dir_ / "jobs").string(),
                                    "--state-dir", (dir_ / "state").string()});
  ASSERT_TRUE(
      testing::WaitFor([&] { return testing::WorkersFor(gearmand.port(), "build:co") == 1; }, 10s))
      << serve.err();
  testing::GearmanClient client(gearmand.port());
  auto ok =
      client.Submit("build:co", R"({"REPO": "file://)" + repo().string() + R"(", "REF": "v1"})");
  ASSERT_TRUE(ok.Completed()) << ok.Describe();
  EXPECT_THAT(ok.Last()->data, HasSubstr("\"result\":\"SUCCESS\""));
  auto bad = client.Submit("build:co", R"({"REPO": "file:///nonexistent/repo"})");
  EXPECT_EQ(bad.Kinds(), "EXCEPTION") << bad.Describe();
  EXPECT_THAT(bad.Last()->data, HasSubstr("checkout failed after 3 attempts"));
  serve.Signal(SIGTERM);
  EXPECT_EQ(serve.Wait(15s).exit_code, 0);
}

TEST_F(CheckoutTest, AMissingParameterIsNamed) {
  dir_.Write("jobs/co.yaml", R"(name: co
checkout: {url: "${ZUUL_URL}/project"}
steps: [{run: 'true'}]
)");
  auto r = RunCommand({kGearrun, "run", "co", "--jobs", (dir_ / "jobs").string(), "--state-dir",
                       (dir_ / "state").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("${ZUUL_URL} is used but the build has no parameter ZUUL_URL"));
}

}  // namespace
}  // namespace gearrun
