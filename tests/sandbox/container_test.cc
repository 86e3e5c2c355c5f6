// Container::Run() and KillAll() with real /bin/sh commands, in both containment modes.
// Every test ends with no process of its build alive (checked by the build cookie in
// /proc/*/environ) and, in cgroup mode, with the build's cgroup directory removed.
#include "sandbox/container.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "sandbox/reaper.h"
#include "tests/sandbox/test_util.h"

namespace gearrun::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::CountingSink;
using testing::ProcessesWithCookie;
using testing::ReadFileOrEmpty;
using testing::ReadPid;
using testing::Running;
using testing::Shell;
using testing::StringSink;
using testing::TempDir;
using testing::WaitFor;
using Ending = Outcome::Ending;

std::string UniqueName() {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->name());
  for (char& c : name) {
    if (c == '/') c = '-';
  }
  return name + "-" + std::to_string(++counter);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

// Readable parameter values in test names ("GetParam() = cgroup").
void PrintTo(ContainmentMode mode, std::ostream* out) { *out << ToString(mode); }

namespace {

class ContainerTest : public ::testing::TestWithParam<ContainmentMode> {
 public:  // for helpers shared by several tests
  void SetUp() override {
    ASSERT_TRUE(BecomeSubreaper());
    if (GetParam() == ContainmentMode::kCgroup && !testing::MachineHasCgroup2()) {
      GTEST_SKIP() << "no cgroup2 mount in /proc/self/mountinfo";
    }
    auto container = Container::Create({.mode = GetParam(), .name = UniqueName()});
    ASSERT_TRUE(container) << container.error().ToString();
    ASSERT_EQ(container->mode(), GetParam());
    container_.emplace(std::move(*container));
    cookie_ = std::string(container_->cookie_variable());
    auto token = CancelToken::Create();
    ASSERT_TRUE(token);
    token_.emplace(std::move(*token));
  }

  void TearDown() override {
    if (!container_) return;
    std::filesystem::path cgroup_dir = container_->cgroup_directory();
    DiscardSink discard;
    auto killed = container_->KillAll({.signal = SIGKILL, .grace = 0ms}, discard);
    EXPECT_TRUE(killed) << killed.error().ToString();
    container_.reset();
    EXPECT_EQ(ProcessesWithCookie(cookie_), std::vector<pid_t>{}) << "processes of the build";
    if (!cgroup_dir.empty()) {
      EXPECT_FALSE(std::filesystem::exists(cgroup_dir)) << cgroup_dir;
    }
    EXPECT_EQ(testing::OurZombies(), std::vector<pid_t>{}) << "zombies left";
  }

  Outcome Run(const Command& command, OutputSink& sink) {
    auto outcome = container_->Run(command, sink, *token_);
    EXPECT_TRUE(outcome) << outcome.error().ToString();
    return outcome ? *outcome : Outcome{};
  }

  Outcome Run(const Command& command) {
    StringSink sink;
    return Run(command, sink);
  }

  std::optional<Container> container_;
  std::optional<CancelToken> token_;
  std::string cookie_;
};

TEST_P(ContainerTest, ExitCodeIsPassedThrough) {
  StringSink sink;
  Outcome outcome = Run(Shell("echo hello; exit 3"), sink);
  EXPECT_EQ(outcome.ending, Ending::kExited);
  EXPECT_EQ(outcome.exit_code, 3);
  EXPECT_EQ(outcome.signal, 0);
  EXPECT_EQ(outcome.leftovers_killed, 0);
  EXPECT_EQ(sink.data, "hello\n");
}

TEST_P(ContainerTest, DeathBySignalIsReported) {
  Outcome outcome = Run(Shell("kill -USR1 $$; sleep 10"));
  EXPECT_EQ(outcome.ending, Ending::kSignaled);
  EXPECT_EQ(outcome.signal, SIGUSR1);
  EXPECT_EQ(outcome.exit_code, -1);
}

TEST_P(ContainerTest, HundredMegabytesArriveExactly) {
  CountingSink sink('\0');
  Outcome outcome = Run(Shell("head -c 100000000 /dev/zero"), sink);
  EXPECT_EQ(outcome.ending, Ending::kExited);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(sink.total, 100000000u);
  EXPECT_EQ(sink.unexpected, 0u);
  EXPECT_LE(sink.largest_chunk, 64u * 1024) << "reads are bounded";
}

TEST_P(ContainerTest, SilentCommandTimesOut) {
  Command command = Shell("sleep 1000");
  command.deadline = std::chrono::steady_clock::now() + 300ms;
  Outcome outcome = Run(command);
  EXPECT_EQ(outcome.ending, Ending::kTimedOut);
  EXPECT_EQ(outcome.signal, SIGTERM);
  EXPECT_GE(outcome.duration, 250ms);
  EXPECT_LT(outcome.duration, 10s);
  EXPECT_GE(outcome.leftovers_killed, 1);
}

TEST_P(ContainerTest, IgnoredSigtermEscalatesToSigkillAfterGrace) {
  TempDir dir;
  // Both the shell and its sleep (which inherits the ignored disposition) ignore SIGTERM.
  Command command =
      Shell("trap '' TERM; sleep 1000 & echo $! > " + (dir / "pid").string() + "; wait");
  command.deadline = std::chrono::steady_clock::now() + 500ms;
  command.kill = {.signal = SIGTERM, .grace = 700ms};
  Outcome outcome = Run(command);
  EXPECT_EQ(outcome.ending, Ending::kTimedOut);
  EXPECT_EQ(outcome.signal, SIGKILL);
  EXPECT_GE(outcome.duration, 1100ms) << "deadline + grace";
  EXPECT_LT(outcome.duration, 15s);
  EXPECT_EQ(outcome.leftovers_killed, 2) << "the shell and its sleep";
  pid_t sleeper = ReadPid(dir / "pid");
  ASSERT_GT(sleeper, 0);
  EXPECT_FALSE(Running(sleeper));
}

TEST_P(ContainerTest, BackgroundChildOutlivesItsStepUntilKillAll) {
  TempDir dir;
  Outcome outcome =
      Run(Shell("sleep 1000 & echo $! > " + (dir / "pid").string() + "; echo started"));
  EXPECT_EQ(outcome.ending, Ending::kExited);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_LT(outcome.duration, 5s) << "the sleep keeps the pipe open; Run must not wait for EOF";
  pid_t sleeper = ReadPid(dir / "pid");
  ASSERT_GT(sleeper, 0);
  EXPECT_TRUE(Running(sleeper));

  StringSink sink;
  auto killed = container_->KillAll({.signal = SIGTERM, .grace = 5s}, sink);
  ASSERT_TRUE(killed) << killed.error().ToString();
  EXPECT_EQ(*killed, 1);
  EXPECT_FALSE(ReadProcStat(sleeper).has_value()) << "killed and reaped";
}

TEST_P(ContainerTest, OutputOfLeftoversGoesToTheNextStep) {
  StringSink first;
  // The background shell writes after its step has returned: no SIGPIPE, no lost bytes.
  Run(Shell("(sleep 0.5; echo late; sleep 0.2; echo later) & echo first"), first);
  EXPECT_EQ(first.data, "first\n");
  StringSink second;
  Run(Shell("sleep 1.5; echo second"), second);
  EXPECT_EQ(second.data, "late\nlater\nsecond\n");
}

TEST_P(ContainerTest, KillAllDeliversLastWordsOfLeftovers) {
  TempDir dir;
  std::string armed = (dir / "armed").string();
  // The step returns once the background shell has its TERM trap in place.
  Run(Shell("sh -c 'trap \"echo bye; exit 0\" TERM; touch " + armed +
            "; while :; do sleep 0.05; done' & while [ ! -e " + armed + " ]; do sleep 0.01; done"));
  StringSink sink;
  auto killed = container_->KillAll({.signal = SIGTERM, .grace = 5s}, sink);
  ASSERT_TRUE(killed) << killed.error().ToString();
  EXPECT_GE(*killed, 1);
  // dash may first report its sleep's death ("Terminated").
  EXPECT_TRUE(sink.data == "bye\n" || sink.data == "Terminated\nbye\n") << sink.data;
}

TEST_P(ContainerTest, SetsidDaemonIsKilledByKillAll) {
  TempDir dir;
  std::string pid_file = (dir / "daemon").string();
  Outcome outcome =
      Run(Shell("setsid sh -c 'echo $$ > " + pid_file + "; exec sleep 1000' & while [ ! -s " +
                pid_file + " ]; do sleep 0.01; done"));
  EXPECT_EQ(outcome.exit_code, 0);
  pid_t daemon = ReadPid(pid_file);
  ASSERT_GT(daemon, 0);
  auto stat = ReadProcStat(daemon);
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->session, daemon) << "the daemon left the step's session";
  EXPECT_TRUE(Running(daemon));

  DiscardSink discard;
  auto killed = container_->KillAll({.signal = SIGTERM, .grace = 5s}, discard);
  ASSERT_TRUE(killed) << killed.error().ToString();
  EXPECT_EQ(*killed, 1);
  EXPECT_FALSE(Running(daemon));
}

enum class StopBy { kDeadline, kCancel };

// A step that starts a setsid'd daemon, then is stopped (by `stop`) while running.
void ExpectStoppedStepTakesItsDaemonOnlyInCgroupMode(ContainerTest& test, StopBy stop);

TEST_P(ContainerTest, StepDeadlineKillsSetsidDaemonOnlyInCgroupMode) {
  ExpectStoppedStepTakesItsDaemonOnlyInCgroupMode(*this, StopBy::kDeadline);
}

TEST_P(ContainerTest, StepCancelKillsSetsidDaemonOnlyInCgroupMode) {
  ExpectStoppedStepTakesItsDaemonOnlyInCgroupMode(*this, StopBy::kCancel);
}

void ExpectStoppedStepTakesItsDaemonOnlyInCgroupMode(ContainerTest& test, StopBy stop) {
  bool by_deadline = stop == StopBy::kDeadline;
  TempDir dir;
  std::string pid_file = (dir / "daemon").string();
  Command command =
      Shell("setsid sh -c 'echo $$ > " + pid_file + "; exec sleep 1000' & while [ ! -s " +
            pid_file + " ]; do sleep 0.01; done; echo ready; exec sleep 1000");
  // With a deadline, 2 s is ample for the daemon to start; without, cancel once it has.
  if (by_deadline) command.deadline = std::chrono::steady_clock::now() + 2s;
  class CancelOnReady : public OutputSink {
   public:
    CancelOnReady(const CancelToken& token, StopBy stop_by)
        : token_(token), armed_(stop_by == StopBy::kCancel) {}
    void Write(std::string_view bytes) override {
      if (armed_ && bytes.find("ready") != std::string_view::npos) token_.Cancel();
    }

   private:
    const CancelToken& token_;
    bool armed_;
  } sink(*test.token_, stop);
  Outcome outcome = test.Run(command, sink);
  EXPECT_EQ(outcome.ending, by_deadline ? Ending::kTimedOut : Ending::kCancelled);
  pid_t daemon = ReadPid(pid_file);
  ASSERT_GT(daemon, 0);
  if (test.GetParam() == ContainmentMode::kCgroup) {
    EXPECT_EQ(outcome.leftovers_killed, 2) << "the step's process and the daemon";
    EXPECT_FALSE(Running(daemon)) << "cgroup.kill of the step reaches setsid'd processes";
  } else {
    EXPECT_EQ(outcome.leftovers_killed, 1) << "the step's process";
    EXPECT_TRUE(Running(daemon)) << "outside the step's session: left for KillAll";
    DiscardSink discard;
    auto killed = test.container_->KillAll({.signal = SIGTERM, .grace = 5s}, discard);
    ASSERT_TRUE(killed);
    EXPECT_EQ(*killed, 1);
    EXPECT_FALSE(Running(daemon));
  }
}

TEST_P(ContainerTest, ThousandLeftoverChildrenAreAllKilled) {
  Outcome outcome =
      Run(Shell("i=0; while [ $i -lt 1000 ]; do sleep 1000 & i=$((i+1)); done; echo done"));
  EXPECT_EQ(outcome.ending, Ending::kExited);
  EXPECT_EQ(ProcessesWithCookie(cookie_).size(), 1000u);
  DiscardSink discard;
  auto killed = container_->KillAll({.signal = SIGTERM, .grace = 10s}, discard);
  ASSERT_TRUE(killed) << killed.error().ToString();
  EXPECT_EQ(*killed, 1000);
  EXPECT_EQ(ProcessesWithCookie(cookie_), std::vector<pid_t>{});
}

TEST_P(ContainerTest, CancelWhileForkingKillsEveryChild) {
  class CancelOnForked : public OutputSink {
   public:
    explicit CancelOnForked(const CancelToken& token) : token_(token) {}
    void Write(std::string_view bytes) override {
      if (bytes.find("forked") != std::string_view::npos) token_.Cancel();
    }

   private:
    const CancelToken& token_;
  } sink(*token_);
  Outcome outcome =
      Run(Shell("i=0; while [ $i -lt 1000 ]; do sleep 1000 & i=$((i+1)); done; echo forked; "
                "while :; do sleep 1000 & sleep 0.001; done"),
          sink);
  EXPECT_EQ(outcome.ending, Ending::kCancelled);
  EXPECT_GE(outcome.leftovers_killed, 1001) << "the shell and at least 1000 sleeps";
  EXPECT_EQ(ProcessesWithCookie(cookie_), std::vector<pid_t>{});
}

TEST_P(ContainerTest, StdinIsAtEndOfFile) {
  StringSink sink;
  Outcome outcome = Run(Shell("cat; read line; echo \"read=$?\""), sink);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(sink.data, "read=1\n");
  EXPECT_LT(outcome.duration, 5s);
}

TEST_P(ContainerTest, ClosingStdoutDoesNotEndTheWait) {
  Outcome outcome = Run(Shell("echo bye; exec >&- 2>&-; sleep 0.5; exit 4"));
  EXPECT_EQ(outcome.ending, Ending::kExited);
  EXPECT_EQ(outcome.exit_code, 4);
  EXPECT_GE(outcome.duration, 450ms);
}

TEST_P(ContainerTest, BinaryOutputArrivesUnchanged) {
  StringSink sink;
  // Octal escapes: NUL bytes, 0xff 0xfe, an invalid UTF-8 pair, a truncated sequence; then a
  // 10 MB line.
  Outcome outcome = Run(Shell("printf '\\377\\376\\000\\001\\303\\050\\000\\342\\202'; "
                              "head -c 10000000 /dev/zero | tr '\\000' a; echo"),
                        sink);
  EXPECT_EQ(outcome.exit_code, 0);
  std::string expected("\xff\xfe\x00\x01\xc3\x28\x00\xe2\x82", 9);
  expected += std::string(10000000, 'a') + "\n";
  ASSERT_EQ(sink.data.size(), expected.size());
  EXPECT_TRUE(sink.data == expected);
}

TEST_P(ContainerTest, PipeToHeadWorksWhenRunnerIgnoresSigpipe) {
  // Ignored signals survive exec; a blocked mask too. The child must get neither.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction previous {};
  ASSERT_EQ(::sigaction(SIGPIPE, &ignore, &previous), 0);
  sigset_t block;
  sigset_t previous_mask;
  ::sigemptyset(&block);
  ::sigaddset(&block, SIGUSR2);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, &previous_mask), 0);

  StringSink sink;
  Outcome outcome = Run(Shell("yes | head -1; grep -E '^(SigIgn|SigBlk)' /proc/self/status"), sink);

  ::sigaction(SIGPIPE, &previous, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_LT(outcome.duration, 10s);
  // With SIGPIPE ignored, yes would print "yes: standard output: Broken pipe".
  EXPECT_EQ(sink.data, "y\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST_P(ContainerTest, OnlyStandardFdsAreOpen) {
  // An fd the runner leaked without O_CLOEXEC.
  int leaked = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leaked, 3);
  StringSink sink;
  Outcome outcome = Run(Shell("ls /proc/$$/fd"), sink);
  ::close(leaked);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(sink.data, "0\n1\n2\n");
}

TEST_P(ContainerTest, EnvironmentIsExactlyAsGiven) {
  Command command;
  command.argv = {"env"};
  command.env = {"A=1", "B=two words", "EMPTY=", "GEARRUN_BUILD_COOKIE=forged",
                 "PATH=/usr/bin:/bin"};
  StringSink sink;
  Outcome outcome = Run(command, sink);
  EXPECT_EQ(outcome.exit_code, 0);
  std::vector<std::string> lines = Lines(sink.data);
  std::multiset<std::string> got(lines.begin(), lines.end());
  std::multiset<std::string> want = {"A=1", "B=two words", "EMPTY=", "PATH=/usr/bin:/bin", cookie_};
  EXPECT_EQ(got, want);
}

TEST_P(ContainerTest, WorkingDirectoryIsHonoured) {
  TempDir dir;
  std::filesystem::path script = dir / "build.sh";
  {
    std::ofstream out(script);
    out << "#!/bin/sh\npwd -P\n";
  }
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  Command command = Shell("");
  command.argv = {"./build.sh"};  // relative to the step's directory
  command.dir = dir.path();
  StringSink sink;
  Outcome outcome = Run(command, sink);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(sink.data, std::filesystem::canonical(dir.path()).string() + "\n");
}

TEST_P(ContainerTest, ArgvZeroIsPassedAsGiven) {
  Command command = Shell("tr '\\000' ' ' < /proc/$$/cmdline");
  command.argv[0] = "sh";  // found in PATH, but the program still sees "sh"
  StringSink sink;
  Outcome outcome = Run(command, sink);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(sink.data, "sh -c " + command.argv[2] + " ");
}

TEST_P(ContainerTest, ResourceLimitsAreVisibleInTheChild) {
  Command command = Shell(
      "ulimit -n; ulimit -c; grep -E '^Max (open files|core file size|processes|address "
      "space)' /proc/self/limits | tr -s ' '");
  command.limits = {
      .core_bytes = 0, .open_files = 77, .processes = 5000, .address_space_bytes = 8ull << 30};
  StringSink sink;
  Outcome outcome = Run(command, sink);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(sink.data,
            "77\n0\n"
            "Max core file size 0 0 bytes \n"
            "Max processes 5000 5000 processes \n"
            "Max open files 77 77 files \n"
            "Max address space 8589934592 8589934592 bytes \n");
}

TEST_P(ContainerTest, CancelFromAnotherThread) {
  std::thread canceller([this] {
    std::this_thread::sleep_for(300ms);
    token_->Cancel();
  });
  Outcome outcome = Run(Shell("sleep 1000"));
  canceller.join();
  EXPECT_EQ(outcome.ending, Ending::kCancelled);
  EXPECT_EQ(outcome.signal, SIGTERM);
  EXPECT_GE(outcome.duration, 250ms);
  EXPECT_LT(outcome.duration, 10s);
}

TEST_P(ContainerTest, AlreadyCancelledOrPastDeadlineStartsNothing) {
  TempDir dir;
  Command command = Shell("touch " + (dir / "ran").string());
  command.deadline = std::chrono::steady_clock::now() - 1ms;
  EXPECT_EQ(Run(command).ending, Ending::kTimedOut);
  command.deadline.reset();
  token_->Cancel();
  EXPECT_EQ(Run(command).ending, Ending::kCancelled);
  EXPECT_FALSE(std::filesystem::exists(dir / "ran"));
}

TEST_P(ContainerTest, MissingProgramIsAnError) {
  Command command = Shell("");
  command.argv = {"gearrun-no-such-program"};
  StringSink sink;
  auto outcome = container_->Run(command, sink, *token_);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, ENOENT);
  EXPECT_NE(outcome.error().message.find("gearrun-no-such-program"), std::string::npos);
}

TEST_P(ContainerTest, ExecFailureIsAnErrorAndLeavesNoZombie) {
  TempDir dir;
  std::filesystem::path script = dir / "no-shebang";
  std::ofstream(script) << "echo hi\n";
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  Command command = Shell("");
  command.argv = {script.string()};
  StringSink sink;
  auto outcome = container_->Run(command, sink, *token_);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, ENOEXEC);
  EXPECT_NE(outcome.error().message.find("cannot execute"), std::string::npos)
      << outcome.error().message;
  EXPECT_EQ(testing::OurZombies(), std::vector<pid_t>{});
}

TEST_P(ContainerTest, MissingWorkingDirectoryIsAnError) {
  Command command = Shell("true");
  command.dir = "/nonexistent/gearrun";
  StringSink sink;
  auto outcome = container_->Run(command, sink, *token_);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, ENOENT);
  EXPECT_NE(outcome.error().message.find("/nonexistent/gearrun"), std::string::npos);
}

TEST_P(ContainerTest, NulBytesInArgumentsAreAnError) {
  Command command = Shell(std::string("echo a\0b", 8));
  StringSink sink;
  auto outcome = container_->Run(command, sink, *token_);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, EINVAL);
}

TEST_P(ContainerTest, FailingRlimitIsAnErrorThatNamesIt) {
  // Above fs.nr_open setrlimit(RLIMIT_NOFILE) fails even for root.
  std::string nr_open = ReadFileOrEmpty("/proc/sys/fs/nr_open");
  ASSERT_FALSE(nr_open.empty());
  Command command = Shell("true");
  command.limits.open_files = std::stoull(nr_open) + 1;
  StringSink sink;
  auto outcome = container_->Run(command, sink, *token_);
  ASSERT_FALSE(outcome);
  EXPECT_NE(outcome.error().message.find("RLIMIT_NOFILE"), std::string::npos);
}

TEST_P(ContainerTest, CpuTimeAndPeakRssAreReported) {
  Outcome outcome = Run(Shell("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"));
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_GT(outcome.cpu_time, 0us);
  EXPECT_GT(outcome.peak_rss_bytes, 100u * 1024);
}

TEST_P(ContainerTest, ManyStepsInOneBuild) {
  for (int i = 0; i < 20; ++i) {
    StringSink sink;
    Outcome outcome =
        Run(Shell("echo step " + std::to_string(i) + "; exit " + std::to_string(i)), sink);
    EXPECT_EQ(outcome.exit_code, i);
    EXPECT_EQ(sink.data, "step " + std::to_string(i) + "\n");
  }
}

INSTANTIATE_TEST_SUITE_P(ContainerModes, ContainerTest,
                         ::testing::Values(ContainmentMode::kCgroup,
                                           ContainmentMode::kProcessGroup),
                         [](const ::testing::TestParamInfo<ContainmentMode>& param_info) {
                           return param_info.param == ContainmentMode::kCgroup ? "cgroup"
                                                                               : "process_group";
                         });

}  // namespace
}  // namespace gearrun::sandbox
