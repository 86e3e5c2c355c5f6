// The build logic against a scripted executor and a fake clock: no process runs, no test
// sleeps.
#include "runner/build.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "jobs/loader.h"
#include "tests/runner/fake_executor.h"
#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class BuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stopper = BuildStopper::Create();
    ASSERT_TRUE(stopper);
    stopper_ = std::move(*stopper);
  }

  void Job(const std::string& yaml) {
    auto report = jobs::LoadJobText(yaml, "test.yaml");
    ASSERT_TRUE(report.ok()) << report.errors.front().ToString();
    job_ = report.jobs.at(0);
  }

  BuildOutcome Run(BuildObserver* observer = nullptr) {
    auto log = BuildLog::Open(dir_.path() / "log", {.secrets = {"Z3cret"}});
    EXPECT_TRUE(log);
    BuildPlan plan{.job = &job_, .workspace = dir_.path()};
    plan.parameters = parameters_;
    plan.base_env = {{"PATH", "/usr/bin:/bin"}, {"HOME", "/home/x"}};
    plan.runner_env = {{"BUILD_NUMBER", "7"}, {"JOB_NAME", job_.name}};
    return RunBuild(plan, executor_, clock_, *log, *stopper_, observer);
  }

  std::string LogText() { return testing::ReadFile(dir_.path() / "log"); }

  testing::TempDir dir_;
  FakeClock clock_;
  FakeExecutor executor_{clock_};
  std::unique_ptr<BuildStopper> stopper_;
  jobs::JobSpec job_;
  std::map<std::string, std::string> parameters_;
};

TEST_F(BuildTest, AllStepsSucceed) {
  Job("name: j\nsteps: [{run: a}, {run: b}]\nfinally: [{run: c}]\n");
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kSuccess);
  EXPECT_EQ(outcome.reason, "");
  ASSERT_EQ(outcome.steps.size(), 3u);
  EXPECT_EQ(outcome.steps[0].result, StepResult::kSuccess);
  EXPECT_EQ(outcome.steps[0].exit_code, 0);
  EXPECT_TRUE(outcome.steps[2].is_finally);
  ASSERT_EQ(executor_.attempts.size(), 3u);
  EXPECT_THAT(executor_.attempts[0].argv, ElementsAre("bash", "-e", "-o", "pipefail", "-c", "a"));
  EXPECT_EQ(executor_.attempts[0].dir, dir_.path());
}

TEST_F(BuildTest, FailingStepEndsTheBuildAndLaterStepsDoNotRun) {
  Job("name: j\nsteps: [{run: a, name: compile}, {run: b}]\nfinally: [{run: c}]\n");
  executor_.Script({.exit_code = 2});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kFailure);
  EXPECT_EQ(outcome.reason, "step 'compile' failed: exit code 2");
  EXPECT_EQ(outcome.steps[0].result, StepResult::kFailure);
  EXPECT_EQ(outcome.steps[0].exit_code, 2);
  EXPECT_EQ(outcome.steps[1].result, StepResult::kNotRun);
  EXPECT_EQ(outcome.steps[2].result, StepResult::kSuccess);  // finally ran after the failure
  EXPECT_EQ(executor_.attempts.size(), 2u);
}

TEST_F(BuildTest, SignalDeathIsAFailure) {
  Job("name: j\nsteps: [{run: a}]\n");
  executor_.Script({.signal = SIGSEGV});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kFailure);
  EXPECT_THAT(outcome.reason, HasSubstr("killed by signal SEGV"));
  EXPECT_EQ(outcome.steps[0].signal, SIGSEGV);
}

TEST_F(BuildTest, RetriesWithDoublingDelay) {
  Job("name: j\nsteps: [{run: a, retries: 3, retry_delay: 5s}]\n");
  executor_.Script({.exit_code = 1});
  executor_.Script({.exit_code = 1});
  executor_.Script({.exit_code = 1});
  executor_.Script({.exit_code = 0});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kSuccess);
  EXPECT_EQ(outcome.steps[0].attempts, 4);
  EXPECT_EQ(executor_.attempts.size(), 4u);
  EXPECT_THAT(clock_.sleeps(), ElementsAre(seconds(5), seconds(10), seconds(20)));
  EXPECT_THAT(LogText(), HasSubstr("attempt 1 failed (exit code 1); retrying in 5.0s"));
  EXPECT_THAT(LogText(), HasSubstr("step 1 of 1 'step 1', attempt 4 of 4"));
}

TEST_F(BuildTest, RetriesRunOutAndTheBuildFails) {
  Job("name: j\nsteps: [{run: a, retries: 2}]\n");
  for (int i = 0; i < 3; ++i) executor_.Script({.exit_code = 3});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kFailure);
  EXPECT_EQ(outcome.reason, "step 'step 1' failed: exit code 3 (3 attempts)");
  EXPECT_EQ(outcome.steps[0].attempts, 3);
  EXPECT_THAT(clock_.sleeps(), ElementsAre(milliseconds(0), milliseconds(0)));
}

TEST_F(BuildTest, RetryOnFiltersExitCodes) {
  Job("name: j\nsteps: [{run: a, retries: 5, retry_on: [75]}]\n");
  executor_.Script({.exit_code = 75});
  executor_.Script({.exit_code = 2});  // not in retry_on: no further attempt
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kFailure);
  EXPECT_EQ(outcome.steps[0].attempts, 2);
  EXPECT_EQ(outcome.steps[0].exit_code, 2);
}

TEST_F(BuildTest, RetryOnDoesNotRetrySignalDeaths) {
  Job("name: j\nsteps: [{run: a, retries: 5, retry_on: [1]}]\n");
  executor_.Script({.signal = SIGKILL});
  EXPECT_EQ(Run().steps[0].attempts, 1);
}

TEST_F(BuildTest, StepTimeoutAbortsWithAReasonNamingTheStepAndLimit) {
  Job("name: j\nsteps: [{name: hang, run: a, timeout: 10s, retries: 2}]\nfinally: [{run: f}]\n");
  executor_.Script({.duration = kForever});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_EQ(outcome.reason, "step 'hang' timed out: its timeout of 10.0s expired");
  EXPECT_TRUE(outcome.steps[0].timed_out);
  EXPECT_EQ(outcome.steps[0].result, StepResult::kAborted);
  EXPECT_EQ(outcome.steps[0].attempts, 1);                   // retry_on_timeout is false by default
  EXPECT_EQ(outcome.steps[1].result, StepResult::kSuccess);  // finally after a timeout
  EXPECT_EQ(executor_.attempts[0].kill.signal, SIGTERM);
}

TEST_F(BuildTest, TimeoutPerAttemptWithRetryOnTimeout) {
  Job("name: j\nsteps: [{run: a, timeout: 10s, retries: 2, retry_on_timeout: true}]\n");
  executor_.Script({.duration = kForever});
  executor_.Script({.duration = kForever});
  executor_.Script({.duration = seconds(9)});  // each attempt gets its own 10s
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kSuccess);
  EXPECT_EQ(outcome.steps[0].attempts, 3);
  EXPECT_EQ(outcome.steps[0].duration_ms, 29'000);
  // The record describes the last attempt, which did not time out.
  EXPECT_FALSE(outcome.steps[0].timed_out);
  EXPECT_EQ(outcome.steps[0].exit_code, 0);
}

TEST_F(BuildTest, JobTimeoutAbortsAndFinallyStillRuns) {
  Job("name: j\ntimeout: 1m\nsteps: [{run: a}, {name: slow, run: b, timeout: 5m}, {run: c}]\n"
      "finally: [{run: f, timeout: 2m}]\n");
  executor_.Script({.duration = seconds(30)});
  executor_.Script({.duration = kForever});
  executor_.Script({.duration = seconds(90)});  // finally: the job's timeout does not apply
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_EQ(outcome.reason, "the job's timeout of 1m expired during step 'slow'");
  EXPECT_EQ(outcome.steps[1].result, StepResult::kAborted);
  EXPECT_EQ(outcome.steps[1].duration_ms, 30'000);  // the rest of the job's minute
  EXPECT_EQ(outcome.steps[2].result, StepResult::kNotRun);
  EXPECT_EQ(outcome.steps[3].result, StepResult::kSuccess);
}

TEST_F(BuildTest, JobTimeoutDuringRetryDelay) {
  Job("name: j\ntimeout: 1m\nsteps: [{run: a, retries: 3, retry_delay: 50s}]\n");
  executor_.Script({.exit_code = 1, .duration = seconds(20)});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_THAT(outcome.reason, HasSubstr("the job's timeout of 1m expired"));
  EXPECT_EQ(executor_.attempts.size(), 1u);
  EXPECT_THAT(clock_.sleeps(), ElementsAre(seconds(40)));
  EXPECT_TRUE(outcome.steps[0].timed_out);
}

TEST_F(BuildTest, ContinueOnErrorMakesTheBuildUnstable) {
  Job("name: j\nsteps: [{name: lint, run: a, continue_on_error: true}, {run: b}]\n");
  executor_.Script({.exit_code = 1});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kUnstable);
  EXPECT_THAT(outcome.reason, HasSubstr("step 'lint' failed (exit code 1)"));
  EXPECT_EQ(outcome.steps[1].result, StepResult::kSuccess);  // the build went on
}

TEST_F(BuildTest, FailingFinallyTurnsSuccessIntoFailure) {
  Job("name: j\nsteps: [{run: a}]\nfinally: [{name: cleanup, run: f}, {run: g}]\n");
  executor_.Script({});
  executor_.Script({.exit_code = 4});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kFailure);
  EXPECT_EQ(outcome.reason, "finally step 'cleanup' failed: exit code 4");
  EXPECT_EQ(outcome.steps[2].result, StepResult::kSuccess);  // every finally step runs
}

TEST_F(BuildTest, FailingFinallyDoesNotHideTheFirstReason) {
  Job("name: j\nsteps: [{name: compile, run: a}]\nfinally: [{run: f}]\n");
  executor_.Script({.exit_code = 2});
  executor_.Script({.exit_code = 4});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kFailure);
  EXPECT_EQ(outcome.reason, "step 'compile' failed: exit code 2");
}

TEST_F(BuildTest, StopAbortsTheStepAndFinallyStillRuns) {
  Job("name: j\nsteps: [{name: long, run: a}, {run: b}]\nfinally: [{run: f}]\n");
  executor_.Script({.during = [&] { stopper_->Stop("stop:build-01 from zuul"); }});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_EQ(outcome.reason, "stopped by stop:build-01 from zuul");
  EXPECT_EQ(outcome.steps[0].result, StepResult::kAborted);
  EXPECT_EQ(outcome.steps[1].result, StepResult::kNotRun);
  EXPECT_EQ(outcome.steps[2].result, StepResult::kSuccess);
}

TEST_F(BuildTest, SecondStopAlsoStopsFinallySteps) {
  Job("name: j\nsteps: [{run: a}]\nfinally: [{run: f}, {run: g}]\n");
  executor_.Script({.during = [&] { EXPECT_TRUE(stopper_->Stop("first")); }});
  executor_.Script({.during = [&] { EXPECT_FALSE(stopper_->Stop("second")); }});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_EQ(outcome.reason, "stopped by first");
  EXPECT_EQ(outcome.steps[1].result, StepResult::kAborted);
  EXPECT_EQ(outcome.steps[2].result, StepResult::kNotRun);
}

TEST_F(BuildTest, StopStepsNeverCutsTheFinallyStepsShort) {
  Job("name: j\nsteps: [{run: a}]\nfinally: [{run: f}, {run: g}]\n");
  executor_.Script({.during = [&] { EXPECT_TRUE(stopper_->StopSteps("a stop request")); }});
  executor_.Script({.during = [&] { EXPECT_FALSE(stopper_->StopSteps("the drain timeout")); }});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_EQ(outcome.reason, "stopped by a stop request");
  EXPECT_EQ(outcome.steps[1].result, StepResult::kSuccess);
  EXPECT_EQ(outcome.steps[2].result, StepResult::kSuccess);
}

TEST_F(BuildTest, StopFromASignalHandlerNamesTheSignal) {
  Job("name: j\nsteps: [{run: a}]\n");
  executor_.Script({.during = [&] { stopper_->StopFromSignal(SIGINT); }});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_EQ(outcome.reason, "stopped by signal SIGINT");
}

TEST_F(BuildTest, TheFirstStopperIsWhoStoppedTheBuild) {
  Job("name: j\nsteps: [{run: a}]\nfinally: [{run: f}]\n");
  executor_.Script({.during = [&] {
    stopper_->StopFromSignal(SIGINT);
    stopper_->Stop("stop:build-01");
  }});
  EXPECT_EQ(Run().reason, "stopped by signal SIGINT");
}

TEST_F(BuildTest, RetryDelayDoublingIsBounded) {
  Job("name: j\nsteps: [{run: a, retries: 100, retry_delay: 8760h}]\n");
  for (int i = 0; i < 3; ++i) executor_.Script({.exit_code = 1});
  executor_.Script({});
  Run();
  EXPECT_THAT(clock_.sleeps(),
              ElementsAre(jobs::kMaxDuration, jobs::kMaxDuration, jobs::kMaxDuration));
}

TEST_F(BuildTest, StopDuringRetryDelayAborts) {
  Job("name: j\nsteps: [{run: a, retries: 3, retry_delay: 1m}]\n");
  executor_.Script({.exit_code = 1, .during = [&] { stopper_->Stop("tester"); }});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_EQ(outcome.reason, "stopped by tester");
  EXPECT_EQ(executor_.attempts.size(), 1u);
  EXPECT_THAT(LogText(), HasSubstr("ABORTED (stopped by tester)"));
}

TEST_F(BuildTest, StopAfterTheLastStepStillAborts) {
  Job("name: j\nsteps: [{run: a}]\nfinally: [{run: f}]\n");
  executor_.Script({});
  executor_.Script({.during = [&] { stopper_->Stop("tester"); }});
  EXPECT_EQ(Run().result, Result::kAborted);
}

TEST_F(BuildTest, FirstStepThatCannotStartMeansNotBuilt) {
  Job("name: j\nsteps: [{run: a}]\nfinally: [{run: f}]\n");
  executor_.Script({.fail_to_start = true});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kNotBuilt);
  EXPECT_THAT(outcome.reason, HasSubstr("step 'step 1' could not be started: no such program"));
  EXPECT_EQ(outcome.steps[0].error, "no such program: nosuch");
  // The client runs it elsewhere: no cleanup with side effects happens here.
  EXPECT_EQ(outcome.steps[1].result, StepResult::kNotRun);
  EXPECT_EQ(executor_.attempts.size(), 1u);
}

TEST_F(BuildTest, LaterStepThatCannotStartIsAFailure) {
  Job("name: j\nsteps: [{run: a}, {run: b}]\n");
  executor_.Script({});
  executor_.Script({.fail_to_start = true});
  EXPECT_EQ(Run().result, Result::kFailure);
}

TEST_F(BuildTest, LeftoversAreKilledWithTheJobsKillLadder) {
  Job("name: j\nkill: {signal: INT, grace: 3s}\nsteps: [{run: a}]\n");
  executor_.leftovers = 2;
  auto outcome = Run();
  EXPECT_EQ(outcome.leftovers_killed, 2);
  ASSERT_EQ(executor_.kill_policies.size(), 1u);
  EXPECT_EQ(executor_.kill_policies[0].signal, SIGINT);
  EXPECT_EQ(executor_.kill_policies[0].grace, seconds(3));
  EXPECT_THAT(LogText(), HasSubstr("stopped 2 processes the build left running"));
}

TEST_F(BuildTest, EnvironmentLayersInOrder) {
  Job(R"(
name: j
parameters: {P: {}, Q: {}}
env: {A: job, B: job, P: job}
steps:
  - run: a
    env: {B: step, C: step, HOME: /step}
)");
  parameters_ = {{"P", "param"}, {"Q", "q"}};
  Run();
  EXPECT_THAT(executor_.attempts[0].env,
              ElementsAre("A=job", "B=step", "BUILD_NUMBER=7", "C=step", "HOME=/step", "JOB_NAME=j",
                          "P=param", "PATH=/usr/bin:/bin", "Q=q"));
}

TEST_F(BuildTest, FinallyStepsHaveTheirOwnTimeoutAfterAJobTimeout) {
  Job("name: j\ntimeout: 1m\nsteps: [{run: a}]\nfinally: [{name: f, run: f, timeout: 5m}]\n");
  executor_.Script({.duration = kForever});
  executor_.Script({.duration = kForever});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_THAT(outcome.reason, HasSubstr("the job's timeout of 1m expired"));
  EXPECT_EQ(outcome.steps[1].duration_ms, 300'000);  // its own 5m, not what was left of 1m
}

TEST_F(BuildTest, FinallyTimeoutTurnsSuccessIntoAborted) {
  Job("name: j\nsteps: [{run: a}]\nfinally: [{name: f, run: f, timeout: 10s}]\n");
  executor_.Script({});
  executor_.Script({.duration = kForever});
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kAborted);
  EXPECT_EQ(outcome.reason, "finally step 'f' timed out: its timeout of 10.0s expired");
}

TEST_F(BuildTest, StepDirectoryThatCannotBeMadeFailsTheStepWithAReason) {
  Job("name: j\nsteps: [{run: a}, {run: b, dir: blocked/sub}]\n");
  dir_.Write("blocked", "a file, not a directory");
  auto outcome = Run();
  EXPECT_EQ(outcome.result, Result::kFailure);
  EXPECT_THAT(outcome.reason, HasSubstr("could not be started: cannot create its directory"));
  EXPECT_EQ(executor_.attempts.size(), 1u);
}

TEST_F(BuildTest, StepDirectoryIsInsideTheWorkspaceAndCreated) {
  Job("name: j\nsteps: [{run: a, dir: sub/dir}]\n");
  Run();
  EXPECT_EQ(executor_.attempts[0].dir, dir_.path() / "sub/dir");
  EXPECT_TRUE(std::filesystem::is_directory(dir_.path() / "sub/dir"));
}

TEST_F(BuildTest, ObserverHearsOfEachStep) {
  struct Recorder : BuildObserver {
    void StepFinished(int finished, int total) override {
      calls.push_back(std::to_string(finished) + "/" + std::to_string(total));
    }
    std::vector<std::string> calls;
  } recorder;
  Job("name: j\nsteps: [{run: a}, {run: b}, {run: c}]\nfinally: [{run: f}]\n");
  Run(&recorder);
  EXPECT_THAT(recorder.calls, ElementsAre("1/3", "2/3", "3/3"));
}

TEST_F(BuildTest, LogHasAHeaderPerAttemptAndAClosingLinePerStep) {
  Job("name: j\nsteps: [{name: compile, run: a, retries: 1}]\n");
  executor_.Script({.exit_code = 1, .output = "oops"});
  executor_.Script({.output = "fine\n"});
  Run();
  EXPECT_EQ(LogText(),
            "[gearrun] step 1 of 1 'compile', attempt 1 of 2\n"
            "oops\n"
            "[gearrun] step 1 of 1 'compile' attempt 1 failed (exit code 1); retrying in 0ms\n"
            "[gearrun] step 1 of 1 'compile', attempt 2 of 2\n"
            "fine\n"
            "[gearrun] step 'compile' SUCCESS, 2 attempts, 20ms\n"
            "[gearrun] build SUCCESS (20ms)\n");
}

TEST(HumanDurationTest, Forms) {
  EXPECT_EQ(HumanDuration(milliseconds(250)), "250ms");
  EXPECT_EQ(HumanDuration(milliseconds(1234)), "1.2s");
  EXPECT_EQ(HumanDuration(milliseconds(59'949)), "59.9s");
  EXPECT_EQ(HumanDuration(milliseconds(59'950)), "1m");
  EXPECT_EQ(HumanDuration(milliseconds(90'000)), "1m30s");
  EXPECT_EQ(HumanDuration(milliseconds(120'000)), "2m");
  EXPECT_EQ(HumanDuration(milliseconds(7'500'000)), "2h5m");
}

}  // namespace
}  // namespace gearrun::runner
