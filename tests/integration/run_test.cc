// `gearrun run` as a user runs it: the real binary, real /bin/sh, real processes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/support/command.h"

namespace gearrun {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunCommand;
using namespace std::chrono_literals;

const std::string kGearrun = GEARRUN_BINARY;
const std::string kExamples = std::string(GEARRUN_SOURCE_DIR) + "/examples/jobs";

class RunTest : public ::testing::Test {
 protected:
  std::filesystem::path Job(const std::string& yaml) { return dir_.Write("job.yaml", yaml); }

  std::vector<std::string> Run(const std::string& target, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        kGearrun, "run",      target, "--state-dir", (dir_.path() / "state").string(),
        "--node", "test-node"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  std::string Read(const std::string& relative) { return testing::ReadFile(dir_ / relative); }

  testing::TempDir dir_;
};

TEST_F(RunTest, SuccessfulBuildStreamsTheLogAndExitsZero) {
  auto job = Job(R"(
name: hello
parameters: {WHO: {default: world}}
steps:
  - name: greet
    run: echo "hello $WHO from build $BUILD_NUMBER of $JOB_NAME on $NODE_NAME"
  - run: pwd
)");
  auto r = RunCommand(Run(job.string(), {"-p", "WHO=tester"}));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("[gearrun] step 1 of 2 'greet'\n"
                               "hello tester from build 1 of hello on test-node\n"));
  EXPECT_THAT(r.out, HasSubstr((dir_.path() / "state/workspace/hello").string()));
  EXPECT_THAT(r.out, HasSubstr("hello #1: SUCCESS"));
  EXPECT_THAT(Read("state/builds/hello/1/build.json"), HasSubstr("\"result\": \"SUCCESS\""));
  EXPECT_THAT(Read("state/builds/hello/1/log"), HasSubstr("hello tester from build 1"));
}

TEST_F(RunTest, ALimitAboveWhatGearrunMayGiveIsRefusedBeforeAnyBuild) {
  auto job = Job("name: limited\nsteps: [{run: 'ulimit -n'}]\n");
  auto argv = testing::UnderNofileLimit(1024, Run(job.string(), {"--limit", "nofile=4096"}));
  auto refused = RunCommand(argv);
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("limits: nofile=4096 is above gearrun's own hard limit "
                                     "(1024), which it may not raise (no CAP_SYS_RESOURCE)"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state/builds/limited"));
  // Within it, the build runs with the limit.
  argv.back() = "nofile=512";
  auto within = RunCommand(argv);
  EXPECT_EQ(within.exit_code, 0) << within.err;
  EXPECT_THAT(within.out, HasSubstr("\n512\n"));
}

TEST_F(RunTest, NumbersIncreaseAcrossRuns) {
  auto job = Job("name: counter\nsteps: [{run: 'echo number $BUILD_NUMBER'}]\n");
  EXPECT_THAT(RunCommand(Run(job.string())).out, HasSubstr("number 1"));
  EXPECT_THAT(RunCommand(Run(job.string())).out, HasSubstr("number 2"));
  EXPECT_THAT(RunCommand(Run(job.string())).out, HasSubstr("counter #3: SUCCESS"));
}

TEST_F(RunTest, FailureExitsOneAndUnstableToo) {
  auto fail = Job("name: f\nsteps: [{name: boom, run: 'exit 7'}]\n");
  auto r = RunCommand(Run(fail.string()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("f #1: FAILURE - step 'boom' failed: exit code 7"));
  auto unstable = Job("name: u\nsteps: [{run: 'exit 1', continue_on_error: true}]\n");
  auto u = RunCommand(Run(unstable.string()));
  EXPECT_EQ(u.exit_code, 1);
  EXPECT_THAT(u.out, HasSubstr("u #1: UNSTABLE"));
}

TEST_F(RunTest, TimeoutExitsThreeAndLeavesNothingRunning) {
  auto job = Job(R"yaml(
name: slow
steps:
  - name: hang
    run: |
      sleep 300 & echo $! > "$WORKSPACE/child.pid"
      echo $$ > "$WORKSPACE/main.pid"
      wait
    timeout: 1s
    kill: {grace: 1s}
finally:
  # Runs before the end-of-build cleanup: the step's own kill ladder must have ended its
  # background child already.
  - run: kill -0 "$(cat "$WORKSPACE/child.pid")" 2>/dev/null && echo CHILD ALIVE || echo CHILD GONE
)yaml");
  auto r = RunCommand(Run(job.string()));
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("ABORTED - step 'hang' timed out: its timeout of 1.0s expired"));
  EXPECT_THAT(r.out, HasSubstr("CHILD GONE"));
  for (const char* f : {"state/workspace/slow/child.pid", "state/workspace/slow/main.pid"}) {
    int pid = std::stoi(Read(f));
    EXPECT_FALSE(testing::ProcessAlive(pid)) << f;
  }
}

TEST_F(RunTest, CtrlCStopsTheBuildRunsFinallyAndLeavesNothing) {
  auto job = Job(R"(
name: interrupted
steps:
  - name: long
    run: |
      setsid sleep 300 & echo $! > "$WORKSPACE/daemon.pid"
      echo started
      sleep 300
finally:
  - name: cleanup
    run: echo "finally ran"
)");
  testing::BackgroundCommand gearrun(Run(job.string()));
  ASSERT_TRUE(
      testing::WaitFor([&] { return gearrun.out().find("started") != std::string::npos; }, 30s))
      << gearrun.out();
  gearrun.Signal(SIGINT);
  auto r = gearrun.Wait(60s);
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("finally ran"));
  EXPECT_THAT(r.out, HasSubstr("ABORTED - stopped by signal SIGINT"));
  int daemon = std::stoi(Read("state/workspace/interrupted/daemon.pid"));
  EXPECT_FALSE(testing::ProcessAlive(daemon));
}

TEST_F(RunTest, AReaderThatGoesAwayDoesNotKillTheBuild) {
  // `gearrun run | head -1`: after head exits, writes to the pipe fail. The build must still
  // run to its end, run its finally step and leave a final record, with nothing left over.
  auto job = Job(R"(
name: piped
steps:
  - run: |
      for i in $(seq 1 2000); do echo "line $i of output"; done
      sleep 1 & echo $! > "$WORKSPACE/child.pid"
finally:
  - run: echo done > "$WORKSPACE/finally.txt"
)");
  std::string command;
  for (const auto& arg : Run(job.string())) command += "'" + arg + "' ";
  auto r = RunCommand({"/bin/sh", "-c", command + "| head -1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("[gearrun] build piped #1 on node test-node"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return Read("state/builds/piped/1/build.json").find("\"result\": \"SUCCESS\"") !=
               std::string::npos;
      },
      30s))
      << Read("state/builds/piped/1/build.json");
  EXPECT_EQ(Read("state/workspace/piped/finally.txt"), "done\n");
  EXPECT_THAT(Read("state/builds/piped/1/log"), HasSubstr("line 2000 of output"));
  EXPECT_FALSE(testing::ProcessAlive(std::stoi(Read("state/workspace/piped/child.pid"))));
}

// The `gearrun supervise` child of a gearrun process; -1 when there is none.
int SupervisorOf(int gearrun_pid) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = testing::ReadFile(entry.path() / "cmdline");
    std::string stat = testing::ReadFile(entry.path() / "stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos || cmdline != std::string("gearrun\0supervise\0", 18)) continue;
    std::istringstream fields(stat.substr(close + 2));
    std::string state;
    int ppid = 0;
    fields >> state >> ppid;
    if (ppid == gearrun_pid) return std::stoi(name);
  }
  return -1;
}

// kill -9 of gearrun: its supervisor ends the build at once; and when the supervisor is gone
// too (as after a power loss), the next start ends what is left. Both record it LOST.
TEST_F(RunTest, AfterKillNineTheBuildEndsAndTheNextStartRecordsItLost) {
  auto job = Job(R"(
name: crashy
steps:
  - run: |
      setsid sleep 300 & echo $! > "$WORKSPACE/daemon.pid"
      echo $$ > "$WORKSPACE/main.pid"
      echo started
      sleep 300
)");
  auto other = dir_.Write("other.yaml", "name: other\nsteps: [{run: 'true'}]\n");
  int number = 0;
  for (const char* mode : {"cgroup", "process-group"}) {
    for (bool supervisor_too : {false, true}) {
      SCOPED_TRACE(std::string(mode) + (supervisor_too ? ", supervisor killed too" : ""));
      ++number;
      testing::BackgroundCommand gearrun(Run(job.string(), {"--containment", mode}));
      ASSERT_TRUE(
          testing::WaitFor([&] { return gearrun.out().find("started") != std::string::npos; }, 30s))
          << gearrun.out();
      int supervisor = SupervisorOf(gearrun.pid());
      ASSERT_GT(supervisor, 0);
      if (supervisor_too) ::kill(supervisor, SIGKILL);
      gearrun.Signal(SIGKILL);
      gearrun.Wait(30s);
      int daemon = std::stoi(Read("state/workspace/crashy/daemon.pid"));
      int main_pid = std::stoi(Read("state/workspace/crashy/main.pid"));
      if (supervisor_too) {
        ASSERT_TRUE(testing::ProcessAlive(daemon));  // orphaned by the crash, still running
      } else {
        EXPECT_TRUE(testing::WaitFor([&] { return !testing::ProcessAlive(daemon); }, 1s));
        EXPECT_FALSE(testing::ProcessAlive(main_pid));
      }
      std::string record = Read("state/builds/crashy/" + std::to_string(number) + "/build.json");
      EXPECT_THAT(record, HasSubstr("\"result\": \"RUNNING\""));

      auto next = RunCommand(Run(other.string(), {"--containment", mode}));
      EXPECT_EQ(next.exit_code, 0) << next.err;
      EXPECT_THAT(next.err, HasSubstr("build crashy #" + std::to_string(number) + " was lost"));
      EXPECT_TRUE(testing::WaitFor([&] { return !testing::ProcessAlive(daemon); }, 10s));
      EXPECT_FALSE(testing::ProcessAlive(main_pid));
      record = Read("state/builds/crashy/" + std::to_string(number) + "/build.json");
      EXPECT_THAT(record, HasSubstr("\"result\": \"LOST\""));
      EXPECT_THAT(record, HasSubstr("stopped while the build ran"));
      auto cgroup_at = record.find("\"cgroup\": \"");
      ASSERT_NE(cgroup_at, std::string::npos);
      std::string cgroup =
          record.substr(cgroup_at + 11, record.find('"', cgroup_at + 11) - cgroup_at - 11);
      if (!cgroup.empty()) {
        EXPECT_FALSE(std::filesystem::exists(cgroup)) << cgroup;
      }
    }
  }
}

TEST_F(RunTest, TheNodesKillLadderAppliesToJobsThatSetNone) {
  auto job = Job(R"(
name: trapper
steps:
  - run: |
      trap 'echo "got INT"; exit 5' INT
      echo ready
      sleep 300 & wait
    timeout: 1s
)");
  auto r = RunCommand(Run(job.string(), {"--kill-signal", "INT", "--kill-grace", "5s"}));
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("got INT"));
}

TEST_F(RunTest, SecretsAreMaskedInTheLogAndRecord) {
  auto job = Job(R"(
name: secretive
parameters: {TOKEN: {secret: true}}
steps: [{run: 'echo "token is $TOKEN"'}]
)");
  auto r = RunCommand(Run(job.string(), {"-p", "TOKEN=hunter2"}));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("token is ****"));
  EXPECT_THAT(r.out, Not(HasSubstr("hunter2")));
  EXPECT_THAT(Read("state/builds/secretive/1/log"), Not(HasSubstr("hunter2")));
  EXPECT_THAT(Read("state/builds/secretive/1/build.json"), Not(HasSubstr("hunter2")));
}

TEST_F(RunTest, JobByNameFromAJobsDirectory) {
  auto r = RunCommand(Run("hello", {"--jobs", kExamples}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Hello, world!"));
}

TEST_F(RunTest, UsageAndValidationErrorsExitTwo) {
  auto job = Job("name: p\nparameters: {T: {required: true}}\nsteps: [{run: 'true'}]\n");
  auto missing = RunCommand(Run(job.string()));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("missing required parameter 'T'"));
  auto bad_p = RunCommand(Run(job.string(), {"-p", "novalue"}));
  EXPECT_EQ(bad_p.exit_code, 2);
  EXPECT_THAT(bad_p.err, HasSubstr("-p takes KEY=VALUE"));
  auto unknown = RunCommand(Run("nosuchjob", {"--jobs", kExamples}));
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("no job named 'nosuchjob'"));
  auto invalid = dir_.Write("bad.yaml", "name: b\nsteps: []\n");
  auto bad = RunCommand(Run(invalid.string()));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("bad.yaml:2:8"));
}

TEST_F(RunTest, SeveralJobsInOneFileMustBeNamed) {
  auto job = Job("name: a\nsteps: [{run: 'true'}]\n---\nname: b\nsteps: [{run: 'true'}]\n");
  auto r = RunCommand(Run(job.string()));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("defines 2 jobs; name one"));
  EXPECT_EQ(RunCommand(Run("b", {"--jobs", job.string()})).exit_code, 0);
}

TEST_F(RunTest, BothContainmentModesWork) {
  auto job = Job("name: m\nsteps: [{run: 'sleep 60 & echo bg'}]\n");
  for (const char* mode : {"cgroup", "process-group"}) {
    auto r = RunCommand(Run(job.string(), {"--containment", mode}));
    EXPECT_EQ(r.exit_code, 0) << mode << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr(std::string("containment ") + mode));
    EXPECT_THAT(r.out, HasSubstr("stopped 1 process the build left running"));
  }
}

TEST_F(RunTest, LimitsReachTheSteps) {
  auto job = Job("name: l\nsteps: [{run: 'echo \"nofile=$(ulimit -n) core=$(ulimit -c)\"'}]\n");
  auto r = RunCommand(Run(job.string(), {"--limit", "nofile=256", "--limit", "core=0", "--pids-max",
                                         "50", "--containment", "cgroup"}));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("nofile=256 core=0"));
  EXPECT_THAT(r.out, HasSubstr("[gearrun] build limits: pids 50"));
  auto bad = RunCommand(Run(job.string(), {"--limit", "files=1"}));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err,
              HasSubstr("--limit: unknown limit 'files' (known: core, nofile, nproc, as)"));
}

}  // namespace
}  // namespace gearrun
