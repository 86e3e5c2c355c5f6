// Build (build_service.h) with the real sandbox and real /bin/sh: what a step sees, what the
// record says, and the paths that end before any step runs.
#include "runner/build_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <sstream>

#include "jobs/loader.h"
#include "tests/runner/fake_clock.h"
#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class BuildServiceTest : public ::testing::Test {
 protected:
  std::shared_ptr<const jobs::JobSpec> Job(const std::string& yaml) {
    auto report = jobs::LoadJobText(yaml, "test.yaml");
    EXPECT_TRUE(report.ok()) << report.errors.front().ToString();
    return std::make_shared<const jobs::JobSpec>(report.jobs.at(0));
  }

  jobs::BoundRequest Bind(const jobs::JobSpec& job, jobs::RequestParameters params) {
    auto bound = jobs::BindParameters(job, params, jobs::RequestPolicy{});
    EXPECT_TRUE(bound) << bound.error().message;
    return *bound;
  }

  testing::TempDir dir_;  // first: the members below use it
  NodeSettings settings_{.name = "node-7",
                         .labels = {"linux", "x86"},
                         .state_dir = dir_.path() / "state",
                         .containment = sandbox::ContainmentMode::kProcessGroup};
  SystemClock clock_;
  BuildStore store_{dir_.path() / "state"};
};

TEST_F(BuildServiceTest, StepsSeeTheRunnerVariablesAndOnlyTheAllowlist) {
  ::setenv("GEARRUN_TEST_NOT_ALLOWED", "leak", 1);
  auto job = Job("name: envjob\nsteps: [{run: 'env | sort > \"$WORKSPACE/env.txt\"'}]\n");
  auto build = Build::Start(settings_, {.job = job, .params = {}, .unique = "u-42", .executor = 3},
                            clock_, store_);
  ASSERT_TRUE(build) << build.error().reason;
  EXPECT_EQ((*build)->number(), 1);
  // The record exists, RUNNING, before any step runs.
  auto running = store_.Read("envjob", 1);
  ASSERT_TRUE(running);
  EXPECT_EQ(running->result, Result::kRunning);
  const BuildRecord& record = (*build)->Run(nullptr);
  EXPECT_EQ(record.result, Result::kSuccess);
  ::unsetenv("GEARRUN_TEST_NOT_ALLOWED");

  std::string env = testing::ReadFile(dir_.path() / "state/workspace/envjob/env.txt");
  EXPECT_THAT(env, HasSubstr("BUILD_NUMBER=1\n"));
  EXPECT_THAT(env, HasSubstr("JOB_NAME=envjob\n"));
  EXPECT_THAT(env, HasSubstr("WORKSPACE=" + (dir_.path() / "state/workspace/envjob").string()));
  EXPECT_THAT(env, HasSubstr("NODE_NAME=node-7\n"));
  EXPECT_THAT(env, HasSubstr("NODE_LABELS=linux node-7 x86\n"));
  EXPECT_THAT(env, HasSubstr("EXECUTOR_NUMBER=3\n"));
  EXPECT_THAT(env, HasSubstr("BUILD_TAG=gearrun-envjob-1\n"));
  EXPECT_THAT(env, HasSubstr("GEARMAN_UNIQUE=u-42\n"));
  EXPECT_THAT(env, HasSubstr("GEARRUN_BUILD_COOKIE="));
  if (const char* path = std::getenv("PATH")) {
    EXPECT_THAT(env, HasSubstr(std::string("PATH=") + path));
  }
  EXPECT_THAT(env, Not(HasSubstr("GEARRUN_TEST_NOT_ALLOWED")));

  auto final_record = store_.Read("envjob", 1);
  ASSERT_TRUE(final_record);
  EXPECT_EQ(final_record->result, Result::kSuccess);
  EXPECT_EQ(final_record->unique, "u-42");
  EXPECT_EQ(final_record->executor, 3);
  ASSERT_EQ(final_record->steps.size(), 1u);
  EXPECT_EQ(final_record->steps[0].exit_code, 0);
  EXPECT_EQ(final_record->steps[0].attempts, 1);
  EXPECT_EQ(final_record->containment, "process-group");
  EXPECT_FALSE(final_record->started_at.empty());
  EXPECT_FALSE(final_record->finished_at.empty());
}

TEST_F(BuildServiceTest, SecretsAreMaskedInsideOtherValuesOfTheRecord) {
  auto job = Job(R"(
name: masked
parameters: {TOKEN: {secret: true}, URL: {}}
steps: [{run: 'true'}]
)");
  auto build = Build::Start(settings_,
                            {.job = job,
                             .params = Bind(*job, {{"TOKEN", "hunter2"},
                                                   {"URL", "https://bot:hunter2@example.com"},
                                                   {"ZUUL_X", "hunter2"}})},
                            clock_, store_);
  ASSERT_TRUE(build);
  (*build)->Run(nullptr);
  std::string json = testing::ReadFile(store_.BuildDir("masked", 1) / "build.json");
  EXPECT_THAT(json, Not(HasSubstr("hunter2")));
  EXPECT_THAT(json, HasSubstr("https://bot:****@example.com"));
}

// Every file under a folder (names and contents), for "is this secret written anywhere?".
std::string EverythingUnder(const std::filesystem::path& root) {
  std::string all;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    all += entry.path().string() + "\n";
    if (entry.is_regular_file()) all += testing::ReadFile(entry.path()) + "\n";
  }
  return all;
}

// A secret in a checkout's URL or ref once leaked through the failed start's reason, the
// record, the git mirror's config and path, and a lock file's name.
TEST_F(BuildServiceTest, ASecretInACheckoutThatFailsIsMaskedEverywhere) {
  auto job = Job(R"(
name: leaky
parameters: {TOKEN: {secret: true}}
checkout: {url: "file:///nonexistent/${TOKEN}/repo-${TOKEN}.git", ref: "topic-${TOKEN}"}
steps: [{run: 'true'}]
)");
  FakeClock fake;  // the checkout's retry delays pass at once
  auto build = Build::Start(
      settings_,
      {.job = job, .params = Bind(*job, {{"TOKEN", "s3cr3tvalue"}}), .unique = "id-s3cr3tvalue-1"},
      fake, store_);
  ASSERT_FALSE(build);
  EXPECT_THAT(build.error().reason, HasSubstr("checkout failed"));
  EXPECT_THAT(build.error().reason, HasSubstr("****"));
  EXPECT_THAT(build.error().reason, Not(HasSubstr("s3cr3tvalue")));
  auto record = store_.Read("leaky", 1);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->result, Result::kNotBuilt);
  // The unique id is the client's name for the request: kept as sent.
  EXPECT_EQ(record->unique, "id-s3cr3tvalue-1");
  std::string everything = EverythingUnder(dir_.path() / "state");
  std::string without_record = everything;
  for (auto at = without_record.find("id-s3cr3tvalue-1"); at != std::string::npos;
       at = without_record.find("id-s3cr3tvalue-1")) {
    without_record.erase(at, 16);
  }
  EXPECT_THAT(without_record, Not(HasSubstr("s3cr3tvalue"))) << everything;
}

// A record that cannot be written when the build ends is not silently dropped: the record
// says so (state_error), and the store keeps it for when the disk takes it again.
TEST_F(BuildServiceTest, AFinalRecordThatCannotBeWrittenIsReportedAndKept) {
  std::string folder = (dir_.path() / "state/builds/gone/1").string();
  // A file where its folder was: the final record cannot be written.
  auto job = Job("name: gone\nsteps: [{run: 'rm -rf " + folder + " && echo > " + folder + "'}]\n");
  auto build = Build::Start(settings_, {.job = job}, clock_, store_);
  ASSERT_TRUE(build);
  const BuildRecord& record = (*build)->Run(nullptr);
  EXPECT_EQ(record.result, Result::kSuccess);
  EXPECT_THAT(record.state_error, HasSubstr("its record could not be written"));
  EXPECT_EQ(store_.pending(), 1u);
  std::filesystem::remove(store_.BuildDir("gone", 1));
  ASSERT_TRUE(store_.RetryPending());
  auto written = store_.Read("gone", 1);
  ASSERT_TRUE(written) << written.error();
  EXPECT_EQ(written->result, Result::kSuccess);
  EXPECT_THAT(written->state_error, HasSubstr("its record could not be written"));
}

TEST_F(BuildServiceTest, TheHeaderIsTheLogsFirstLine) {
  settings_.pids_max = 100;
  auto job = Job("name: first\nsteps: [{run: 'true'}]\n");
  auto build = Build::Start(settings_, {.job = job}, clock_, store_);
  ASSERT_TRUE(build);
  (*build)->Run(nullptr);
  std::string log = testing::ReadFile((*build)->log_path());
  EXPECT_THAT(log, StartsWith("[gearrun] build first #1 on node node-7"));
  EXPECT_THAT(log, HasSubstr("[gearrun] build limits: pids 100"));
}

TEST_F(BuildServiceTest, UnusableWorkspaceMeansNotBuiltWithARecord) {
  dir_.Write("file", "not a directory");
  settings_.workspace_root = dir_.path() / "file";
  auto job = Job("name: nows\nsteps: [{run: 'true'}]\n");
  auto build = Build::Start(settings_, {.job = job}, clock_, store_);
  ASSERT_FALSE(build);
  EXPECT_THAT(build.error().reason, HasSubstr("cannot create workspace"));
  ASSERT_EQ(build.error().number, 1);
  auto record = store_.Read("nows", 1);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->result, Result::kNotBuilt);
  EXPECT_THAT(record->reason, HasSubstr("cannot create workspace"));
}

TEST_F(BuildServiceTest, ABuildDroppedBeforeRunIsNotLeftRunning) {
  auto job = Job("name: dropped\nsteps: [{run: 'true'}]\n");
  { auto build = Build::Start(settings_, {.job = job}, clock_, store_); }
  auto record = store_.Read("dropped", 1);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->result, Result::kNotBuilt);
}

TEST_F(BuildServiceTest, LogCapIsRecorded) {
  settings_.log_cap_bytes = 1000;
  auto job = Job("name: chatty\nsteps: [{run: 'head -c 5000 /dev/zero | tr \"\\\\0\" x'}]\n");
  auto build = Build::Start(settings_, {.job = job}, clock_, store_);
  ASSERT_TRUE(build);
  const BuildRecord& record = (*build)->Run(nullptr);
  EXPECT_TRUE(record.log_capped);
  EXPECT_THAT(testing::ReadFile((*build)->log_path()), HasSubstr("log cap of 1000 bytes reached"));
}

}  // namespace
}  // namespace gearrun::runner
