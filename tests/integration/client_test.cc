// The client commands (`gearrun submit`, `stop`, `describe`, `status`, `cancel`), the
// embedded gearmand, and `serve --once` as PID 1: real binaries against a real gearmand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/support/command.h"
#include "tests/support/gearman.h"

namespace gearrun {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunCommand;
using testing::WaitFor;
using namespace std::chrono_literals;

const std::string kGearrun = GEARRUN_BINARY;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("GEARMAN_SERVERS");
    ::unsetenv("GEARRUN_SERVERS");
    ASSERT_TRUE(gearmand_.ready()) << gearmand_.log();
  }
  void TearDown() override {
    for (auto& s : serves_) testing::StopServe(*s);
  }

  void WriteJob(const std::string& name, const std::string& body) {
    dir_.Write("jobs/" + name + ".yaml", "name: " + name + "\n" + body);
  }

  // A node serving dir_/jobs, registered before this returns.
  void Serve(const std::string& node, const std::string& function, int executors = 1) {
    serves_.push_back(std::make_unique<testing::BackgroundCommand>(std::vector<std::string>{
        kGearrun, "serve", "--server", gearmand_.address(), "--node", node, "--jobs",
        (dir_ / "jobs").string(), "--state-dir", (dir_ / ("state-" + node)).string(), "--executors",
        std::to_string(executors), "--kill-grace", "1s"}));
    ASSERT_TRUE(WaitFor(
        [&] {
          // Each connection comes up on its own: wait for the manager too.
          return testing::WorkersFor(gearmand_.port(), function) >= executors &&
                 testing::WorkersFor(gearmand_.port(), "stop:" + node) == 1;
        },
        10s))
        << serves_.back()->err();
  }

  // Runs a client command against gearmand_ (through the environment variable).
  testing::CommandResult Client(std::vector<std::string> args) {
    args.insert(args.begin(), kGearrun);
    return RunCommand(args, {.timeout = 60s, .env = {{"GEARRUN_SERVERS", gearmand_.address()}}});
  }

  testing::TempDir dir_;
  testing::Gearmand gearmand_;
  std::vector<std::unique_ptr<testing::BackgroundCommand>> serves_;
};

TEST_F(ClientTest, SubmitFollowsABuildToItsResultAndExitCode) {
  WriteJob("hello", R"(parameters: {WHO: {default: nobody}}
steps:
  - {name: greet, run: 'echo "hello $WHO"'}
  - {name: second, run: 'true'}
)");
  WriteJob("broken", "steps: [{name: boom, run: 'exit 3'}]\n");
  Serve("n1", "build:hello");

  auto ok = Client({"submit", "hello", "-p", "WHO=tester"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("started: hello #1 on node n1 (n1_exec-0)"));
  EXPECT_THAT(ok.out, HasSubstr("hello #1: SUCCESS"));
  EXPECT_THAT(ok.out, HasSubstr("greet "));
  EXPECT_THAT(testing::ReadFile(dir_ / "state-n1/builds/hello/1/log"), HasSubstr("hello tester"));

  auto failed = Client({"submit", "broken"});
  EXPECT_EQ(failed.exit_code, 1) << failed.out << failed.err;
  EXPECT_THAT(failed.out, HasSubstr("broken #1: FAILURE - step 'boom' failed: exit code 3"));

  auto json = Client({"submit", "hello", "--json"});
  EXPECT_EQ(json.exit_code, 0);
  auto payload = nlohmann::json::parse(json.out, nullptr, false);
  EXPECT_EQ(payload["result"], "SUCCESS") << json.out;
  EXPECT_EQ(payload["number"], 2);
}

TEST_F(ClientTest, SubmitRefusesUnknownFunctionsAndBadParameters) {
  WriteJob("hello", "parameters: {LEVEL: {choices: [low, high]}}\nsteps: [{run: 'true'}]\n");
  Serve("n1", "build:hello");
  auto unknown = Client({"submit", "helo"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("no server knows build:helo"));
  EXPECT_THAT(unknown.err, HasSubstr("known functions like it: build:hello"));
  EXPECT_EQ(testing::QueuedFor(gearmand_.port(), "build:helo"), 0);

  auto bad = Client({"submit", "hello", "-p", "LEVEL=medium"});
  EXPECT_EQ(bad.exit_code, 4) << bad.out << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("LEVEL"));
  EXPECT_EQ(Client({"submit", "hello", "-p", "novalue"}).exit_code, 2);
}

TEST_F(ClientTest, ServerDownIsAClearErrorNotAHang) {
  int port = testing::FreeLoopbackPort();
  auto start = std::chrono::steady_clock::now();
  auto r =
      RunCommand({kGearrun, "submit", "hello", "--server", "127.0.0.1:" + std::to_string(port)},
                 {.timeout = 30s});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_THAT(r.err, HasSubstr("no Gearman server answered"));
  auto status = RunCommand({kGearrun, "status", "--server", "127.0.0.1:" + std::to_string(port)},
                           {.timeout = 30s});
  EXPECT_EQ(status.exit_code, 4);
  EXPECT_THAT(status.err, HasSubstr("Connection refused"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
}

TEST_F(ClientTest, StopAndDescribeReportTheOutcome) {
  WriteJob("slow", "steps: [{run: 'sleep 300'}]\n");
  Serve("n1", "build:slow");
  testing::BackgroundCommand submit({kGearrun, "submit", "slow", "--server", gearmand_.address()});
  ASSERT_TRUE(WaitFor(
      [&] { return std::filesystem::exists(dir_ / "state-n1/builds/slow/1/build.json"); }, 10s));
  auto described = Client({"describe", "n1", "slow", "1", "<b>flaky</b>"});
  EXPECT_EQ(described.exit_code, 0) << described.err;
  EXPECT_THAT(described.out, HasSubstr("Description set for slow #1"));
  auto stopped = Client({"stop", "n1", "slow", "1"});
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  auto result = submit.Wait(30s);
  EXPECT_EQ(result.exit_code, 3) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("slow #1: ABORTED - stopped by a stop:n1 request"));

  auto again = Client({"stop", "n1", "slow", "1"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("is not running"));
  auto unknown = Client({"describe", "n1", "slow", "9", "x"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("Cannot find build slow: 9"));
  auto no_node = Client({"stop", "n2", "slow", "1"});
  EXPECT_EQ(no_node.exit_code, 2);
  EXPECT_THAT(no_node.err, HasSubstr("Is node n2 running gearrun serve?"));
}

TEST_F(ClientTest, SubmitTimeoutGivesUpWaitingButNotTheBuild) {
  WriteJob("slow", "steps: [{run: 'sleep 2'}]\n");
  Serve("n1", "build:slow");
  auto r = Client({"submit", "slow", "--timeout", "500ms"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("no result within the timeout"));
  EXPECT_TRUE(WaitFor(
      [&] {
        return testing::ReadFile(dir_ / "state-n1/builds/slow/1/build.json").find("\"SUCCESS\"") !=
               std::string::npos;
      },
      10s));
}

TEST_F(ClientTest, StatusShowsFunctionsAndNodes) {
  WriteJob("hello", "steps: [{run: 'true'}]\n");
  Serve("n1", "build:hello", 2);
  Serve("n2", "build:hello", 3);
  auto r = Client({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(gearmand_.address()));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("build:hello +0 +0 +5"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("n1 +2  yes"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("n2 +3  yes"));
  auto json = nlohmann::json::parse(Client({"status", "--json"}).out, nullptr, false);
  auto nodes = json["servers"][0]["nodes"];
  ASSERT_EQ(nodes.size(), 2u) << json;
  EXPECT_EQ(nodes[0], nlohmann::json({{"node", "n1"}, {"executors", 2}, {"manager", true}}));
  EXPECT_EQ(nodes[1]["executors"], 3);
}

TEST_F(ClientTest, CancelRemovesAQueuedRequest) {
  auto queued = Client({"submit", "later", "--background", "--queue-anyway"});
  ASSERT_EQ(queued.exit_code, 0) << queued.err;
  auto at = queued.out.find("as H:");
  ASSERT_NE(at, std::string::npos) << queued.out;
  std::string handle = queued.out.substr(at + 3, queued.out.find(' ', at + 3) - at - 3);
  EXPECT_EQ(testing::QueuedFor(gearmand_.port(), "build:later"), 1);
  auto cancelled = Client({"cancel", handle});
  EXPECT_EQ(cancelled.exit_code, 0) << cancelled.err;
  auto unknown = Client({"cancel", "H:nowhere:1"});
  EXPECT_EQ(unknown.exit_code, 4);
  EXPECT_THAT(unknown.err, HasSubstr("H:nowhere:1 was not cancelled"));
  // gearmand drops a cancelled request when a worker next asks for the function: the node
  // that comes up never runs it.
  WriteJob("later", "steps: [{run: 'true'}]\n");
  Serve("n1", "build:later");
  EXPECT_TRUE(WaitFor([&] { return testing::QueuedFor(gearmand_.port(), "build:later") == 0; }));
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state-n1/builds/later/1"));
}

// Runs `script` with /bin/sh in a network namespace of its own (loopback only), so that the
// embedded default's 127.0.0.1:4730 is free whatever this machine runs, and in a PID
// namespace of its own, so that its `pgrep` sees only its processes.
testing::CommandResult InOwnNetwork(const std::string& script) {
  std::vector<std::string> unshare = {"/usr/bin/unshare", "--net", "--pid", "--fork",
                                      "--mount-proc"};
  if (::geteuid() != 0) unshare.insert(unshare.begin() + 1, {"--user", "--map-root-user"});
  unshare.insert(unshare.end(), {"/bin/sh", "-c", "ip link set lo up && " + script});
  return RunCommand(unshare, {.timeout = 60s});
}

TEST_F(ClientTest, ServeStartsAndStopsAnEmbeddedGearmandWhenNoServerIsConfigured) {
  auto probe = InOwnNetwork("true");
  if (probe.exit_code != 0) GTEST_SKIP() << "no network namespace here: " << probe.err;
  WriteJob("hello", "steps: [{run: 'echo embedded'}]\n");
  std::string state = (dir_ / "state").string();
  auto r = InOwnNetwork(
      kGearrun + " serve --node solo --jobs " + (dir_ / "jobs").string() + " --state-dir " + state +
      " 2>" + state + ".log & serve=$!; " + "for i in $(seq 100); do " + kGearrun +
      " status 2>/dev/null | grep -q 'solo.*yes' && break; sleep 0.1; done; " + kGearrun +
      " submit hello; code=$?; kill -TERM $serve; wait $serve; echo serve=$?; " +
      "sleep 0.5; pgrep gearmand && echo LEFT; exit $code");
  std::string log = testing::ReadFile(state + ".log");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << log;
  EXPECT_THAT(r.out, HasSubstr("hello #1: SUCCESS"));
  EXPECT_THAT(r.out, HasSubstr("serve=0"));
  EXPECT_THAT(r.out, Not(HasSubstr("LEFT")));
  EXPECT_THAT(log, HasSubstr("no server configured and none on 127.0.0.1:4730: started"));
  EXPECT_THAT(log, HasSubstr("embedded gearmand stopped"));
}

TEST_F(ClientTest, TheReadmesFirstCommandRunsABuildAndLeavesNothingRunning) {
  auto probe = InOwnNetwork("true");
  if (probe.exit_code != 0) GTEST_SKIP() << "no network namespace here: " << probe.err;
  auto r = InOwnNetwork("cd " + std::string(GEARRUN_SOURCE_DIR) + " && GEARRUN_BINARY=" + kGearrun +
                        " scripts/demo; echo demo=$?; sleep 0.5; pgrep -x gearmand && echo LEFT; "
                        "pgrep -x gearrun && echo LEFT; true");
  EXPECT_THAT(r.out, HasSubstr("demo=0")) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("hello #1: SUCCESS"));
  EXPECT_THAT(r.out, HasSubstr("Hello, newcomer!"));
  EXPECT_THAT(r.out, Not(HasSubstr("LEFT")));
}

TEST_F(ClientTest, ServeSaysHowToGetGearmandWhenItIsMissing) {
  auto probe = InOwnNetwork("true");
  if (probe.exit_code != 0) GTEST_SKIP() << "no network namespace here: " << probe.err;
  WriteJob("hello", "steps: [{run: 'true'}]\n");
  // A PATH without gearmand, and /usr/sbin hidden: gearrun finds no gearmand.
  auto r = InOwnNetwork("unshare --mount sh -c 'mount -t tmpfs none /usr/sbin && PATH=/bin " +
                        kGearrun + " serve --jobs " + (dir_ / "jobs").string() + " --state-dir " +
                        (dir_ / "state").string() + "'");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("apt install gearman-job-server"));
  EXPECT_THAT(r.err, HasSubstr("--server HOST:PORT"));
}

TEST_F(ClientTest, OnceAsPidOneReapsOrphansAndExitsWithTheBuildsStatus) {
  WriteJob("orphans", R"(steps:
  - name: leave an orphan, then look for zombies
    run: |
      sh -c 'sleep 0.2 &'
      for i in $(seq 50); do
        ps -eo stat= | grep -q '^Z' || { echo "pid $$, no zombie"; exit 0; }
        sleep 0.1
      done
      ps -eo pid,ppid,stat,args; exit 1
)");
  WriteJob("fails", "steps: [{run: 'exit 1'}]\n");
  for (auto [job, code] : {std::pair<std::string, int>{"orphans", 0}, {"fails", 1}}) {
    std::vector<std::string> unshare = {"/usr/bin/unshare", "--pid", "--fork", "--mount-proc"};
    if (::geteuid() != 0) unshare.insert(unshare.begin() + 1, {"--user", "--map-root-user"});
    unshare.insert(unshare.end(), {kGearrun, "serve", "--once", "--server", gearmand_.address(),
                                   "--node", "pid1", "--jobs", (dir_ / "jobs").string(),
                                   "--state-dir", (dir_ / "state").string(), "--executors", "2"});
    testing::BackgroundCommand node(unshare);
    ASSERT_TRUE(
        WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "build:" + job) == 2; }, 10s))
        << node.err();
    auto submitted = Client({"submit", job});
    auto r = node.Wait(30s);
    EXPECT_EQ(r.exit_code, code) << job << "\n" << r.err << submitted.out << submitted.err;
    if (code == 0) {
      EXPECT_THAT(submitted.out, HasSubstr("SUCCESS")) << submitted.err;
      EXPECT_THAT(testing::ReadFile(dir_ / "state/builds/orphans/1/log"), HasSubstr("no zombie"));
      auto record = nlohmann::json::parse(
          testing::ReadFile(dir_ / "state/builds/orphans/1/build.json"), nullptr, false);
      EXPECT_EQ(record["runner_pid"], 1) << "gearrun was not PID 1";
    }
  }
}

}  // namespace
}  // namespace gearrun
