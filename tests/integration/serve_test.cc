// `gearrun serve` as Zuul and the Jenkins plugin's clients see it: the real binary, a real
// gearmand on a free loopback port, and a real libgearman client (tests/support/gearman.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/integration/serve_fixture.h"
#include "tests/support/command.h"
#include "tests/support/gearman.h"

namespace gearrun {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using testing::WaitFor;

TEST_F(ServeTest, RegistersFunctionsPerLabelAndClientIdsPerConnection) {
  WriteJob("p", "node: ubuntu && gcc\nsteps: [{run: 'true'}]\n");
  WriteJob("q", "node: ubuntu || arm\nsteps: [{run: 'true'}]\n");
  WriteJob("r", "node: arm\nsteps: [{run: 'true'}]\n");
  WriteJob("s", "steps: [{run: 'true'}]\n");
  Serve("build:s", 2, {"--executors", "2"});

  std::map<std::string, int> workers;
  for (const auto& f : testing::AdminStatus(gearmand_.port())) workers[f.function] = f.workers;
  EXPECT_EQ(workers, (std::map<std::string, int>{{"build:p", 2},
                                                 {"build:p:gcc", 2},
                                                 {"build:p:ubuntu", 2},
                                                 {"build:q", 2},
                                                 {"build:q:ubuntu", 2},
                                                 {"build:s", 2},
                                                 {"set_description:n1", 1},
                                                 {"stop:n1", 1}}));
  std::map<std::string, std::vector<std::string>> by_id;
  for (const auto& w : testing::AdminWorkers(gearmand_.port())) {
    if (w.client_id != "-") by_id[w.client_id] = w.functions;
  }
  EXPECT_THAT(by_id, ::testing::SizeIs(3));
  EXPECT_THAT(by_id["n1_exec-0"], UnorderedElementsAre("build:p", "build:p:gcc", "build:p:ubuntu",
                                                       "build:q", "build:q:ubuntu", "build:s"));
  EXPECT_EQ(by_id["n1_exec-1"], by_id["n1_exec-0"]);
  EXPECT_THAT(by_id["n1_manager"], UnorderedElementsAre("stop:n1", "set_description:n1"));
}

TEST_F(ServeTest, SuccessfulBuildSendsDataStatusThenCompleteWithTheContractsKeys) {
  WriteJob("guava", R"(node: ubuntu
parameters: {WHO: {default: nobody}, TOKEN: {secret: true}}
steps:
  - {name: greet, run: 'echo "who=$WHO undeclared=${UNDECLARED-unset} zuul=$ZUUL_UUID"'}
  - {name: second, run: 'true'}
)");
  Serve("build:guava:ubuntu", 1, {"--executors", "1"});

  auto trace = client_.Submit(
      "build:guava:ubuntu",
      R"({"WHO": "tester", "UNDECLARED": "x", "ZUUL_UUID": "u-1", "TOKEN": "s3cr3t"})", "u-1");
  ASSERT_EQ(trace.Kinds(), "DATA STATUS STATUS STATUS COMPLETE") << trace.Describe() << Stderr();
  auto status = trace.Of(Kind::kStatus);
  EXPECT_EQ(status[0].numerator, 0u);
  EXPECT_EQ(status[0].denominator, 2u);
  EXPECT_EQ(status[2].numerator, 2u);

  auto start = Json(&trace.Of(Kind::kData)[0]);
  EXPECT_EQ(start["name"], "guava");
  EXPECT_EQ(start["number"], 1);
  EXPECT_EQ(start["manager"], "n1");
  EXPECT_EQ(start["worker"], "n1_exec-0");
  EXPECT_EQ(start["node_name"], "n1");
  EXPECT_EQ(start["node_labels"], nlohmann::json({"gcc", "n1", "ubuntu"}));
  EXPECT_FALSE(start.contains("result"));

  auto final = Json(trace.Last());
  EXPECT_EQ(final["result"], "SUCCESS");
  EXPECT_EQ(final["number"], 1);
  EXPECT_EQ(final["unique"], "u-1");
  EXPECT_TRUE(final["duration_ms"].is_number_integer());
  EXPECT_TRUE(final["reason"].is_string());
  EXPECT_EQ(final["steps"].size(), 2u);
  EXPECT_EQ(trace.Last()->data.find("s3cr3t"), std::string::npos);

  EXPECT_THAT(Log("guava", 1), HasSubstr("who=tester undeclared=unset zuul=u-1"));
  EXPECT_EQ(Log("guava", 1).find("s3cr3t"), std::string::npos);
  // Numbers keep increasing.
  auto second = client_.Submit("build:guava", "{}");
  EXPECT_EQ(Json(second.Last())["number"], 2) << second.Describe();
}

TEST_F(ServeTest, FailureAndTimeoutEndInCompleteWithTheirResults) {
  WriteJob("fails", "steps: [{name: boom, run: 'exit 3'}]\n");
  WriteJob("slow",
           "timeout: 1s\nsteps: [{run: 'sleep 300 & echo $! > \"$WORKSPACE/pid\"; wait'}]\n");
  Serve("build:slow", 1, {"--executors", "1", "--kill-grace", "1s"});

  auto fails = client_.Submit("build:fails", "{}");
  ASSERT_TRUE(fails.Completed()) << fails.Describe();
  EXPECT_EQ(Json(fails.Last())["result"], "FAILURE");
  EXPECT_THAT(Json(fails.Last())["reason"].get<std::string>(), HasSubstr("exit code 3"));

  auto slow = client_.Submit("build:slow", "{}");
  ASSERT_TRUE(slow.Completed()) << slow.Describe();
  EXPECT_EQ(Json(slow.Last())["result"], "ABORTED");
  int pid = std::stoi(testing::ReadFile(dir_ / "state/workspace/slow/pid"));
  EXPECT_TRUE(WaitFor([&] { return !testing::ProcessAlive(pid); }, 5s));
}

TEST_F(ServeTest, BadRequestsAreAnsweredAndTheRunnerStaysHealthy) {
  WriteJob("guava", R"(parameters: {LEVEL: {choices: [low, high]}, NEEDED: {required: false}}
steps: [{run: 'true'}]
)");
  Serve("build:guava", 1, {"--executors", "1"});
  for (std::string bad : {"[]", "not json", R"({"a": {"b": 1}})", R"({"a": 1, "a": 2})",
                          R"({"LEVEL": "medium"})", R"({"PATH": "/tmp"})", "\"text\""}) {
    auto trace = client_.Submit("build:guava", bad);
    EXPECT_EQ(trace.Kinds(), "EXCEPTION") << "workload: " << bad << "\n" << trace.Describe();
  }
  auto good = client_.Submit("build:guava", R"({"LEVEL": "high"})");
  EXPECT_EQ(Json(good.Last())["result"], "SUCCESS") << good.Describe() << Stderr();
}

TEST_F(ServeTest, StopAndSetDescriptionAnswerEveryCase) {
  WriteJob("slow", R"(steps: [{run: 'sleep 300 & echo $! > "$WORKSPACE/pid"; wait'}]
finally: [{name: cleanup, run: 'sleep 1; echo cleaned up'}]
)");
  Serve("build:slow", 1, {"--executors", "1", "--kill-grace", "1s"});
  auto build = client_.Start("build:slow", "{}");
  ASSERT_TRUE(build->WaitForEvent(Kind::kData, 10s)) << Stderr();
  // The shell creates the file before it writes the pid: wait for the whole line.
  ASSERT_TRUE(WaitFor(
      [&] { return testing::ReadFile(dir_ / "state/workspace/slow/pid").ends_with("\n"); }));
  int pid = std::stoi(testing::ReadFile(dir_ / "state/workspace/slow/pid"));

  auto described = client_.Submit(
      "set_description:n1", R"({"name": "slow", "number": 1, "html_description": "<b>x</b>"})");
  EXPECT_EQ(described.Kinds(), "COMPLETE") << described.Describe();

  auto stop = client_.Submit("stop:n1", R"({"name": "slow", "number": "1"})");
  EXPECT_EQ(stop.Kinds(), "COMPLETE") << stop.Describe();
  // A second stop while the finally step runs fails, and does not cut the cleanup short.
  EXPECT_EQ(client_.Submit("stop:n1", R"({"name": "slow", "number": 1})").Kinds(), "FAIL");
  auto trace = build->Wait(30s);
  ASSERT_TRUE(trace.Completed()) << trace.Describe();
  auto final = Json(trace.Last());
  EXPECT_EQ(final["result"], "ABORTED");
  EXPECT_THAT(final["reason"].get<std::string>(), HasSubstr("stop:n1"));
  EXPECT_TRUE(WaitFor([&] { return !testing::ProcessAlive(pid); }, 5s));
  EXPECT_THAT(Log("slow", 1), HasSubstr("cleaned up"));
  EXPECT_EQ(Record("slow", 1)["description"], "<b>x</b>");

  // Finished: stop fails; a description is still stored.
  EXPECT_EQ(client_.Submit("stop:n1", R"({"name": "slow", "number": 1})").Kinds(), "FAIL");
  EXPECT_EQ(client_
                .Submit("set_description:n1",
                        R"({"name": "slow", "number": 1, "html_description": "later"})")
                .Kinds(),
            "COMPLETE");
  EXPECT_EQ(Record("slow", 1)["description"], "later");
  // Unknown builds and malformed requests: exception, then fail.
  auto unknown = client_.Submit("stop:n1", R"({"name": "slow", "number": 99})");
  EXPECT_EQ(unknown.Kinds(), "EXCEPTION") << unknown.Describe();
  EXPECT_EQ(unknown.Last()->data, "Cannot find build slow: 99");
  auto nodesc = client_.Submit("set_description:n1",
                               R"({"name": "nope", "number": 1, "html_description": "x"})");
  EXPECT_EQ(nodesc.Last()->data, "Cannot find build nope: 1");
  EXPECT_EQ(client_.Submit("stop:n1", R"({"number": 1})").Kinds(), "EXCEPTION");
}

TEST_F(ServeTest, OfflineNodeWhenCompleteRunsExactlyOneBuild) {
  WriteJob("one", "steps: [{run: 'sleep 1'}]\n");
  Serve("build:one", 2, {"--executors", "2"});
  auto first = client_.Start("build:one", R"({"OFFLINE_NODE_WHEN_COMPLETE": "true"})");
  ASSERT_TRUE(first->WaitForEvent(Kind::kData, 10s)) << Stderr();
  std::vector<std::unique_ptr<testing::PendingJob>> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(client_.Start("build:one", "{}"));
  auto trace = first->Wait(30s);
  ASSERT_TRUE(trace.Completed()) << trace.Describe();
  EXPECT_EQ(Json(trace.Last())["result"], "SUCCESS");
  EXPECT_TRUE(WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "build:one") == 0; }));
  std::this_thread::sleep_for(500ms);
  for (auto& q : queued) EXPECT_EQ(q->Snapshot().Kinds(), "") << q->Snapshot().Describe();
  EXPECT_EQ(testing::QueuedFor(gearmand_.port(), "build:one"), 3);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state/builds/one/2"));
  // The manager keeps answering.
  EXPECT_EQ(client_.Submit("stop:n1", R"({"name": "one", "number": 1})").Kinds(), "FAIL");
  EXPECT_EQ(testing::WorkersFor(gearmand_.port(), "stop:n1"), 1);
}

TEST_F(ServeTest, OnceTakesOneBuildAndExitsWithItsResult) {
  WriteJob("ok", "steps: [{run: 'sleep 1'}]\n");
  WriteJob("bad", "steps: [{run: 'exit 1'}]\n");
  Serve("build:ok", 2, {"--executors", "2", "--once"});
  auto first = client_.Start("build:ok", "{}");
  ASSERT_TRUE(first->WaitForEvent(Kind::kData, 10s)) << Stderr();
  auto second = client_.Start("build:ok", "{}");
  EXPECT_TRUE(first->Wait(30s).Completed());
  auto r = serve_->Wait(15s);
  serve_.reset();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(second->Snapshot().Kinds(), "");
  EXPECT_EQ(testing::QueuedFor(gearmand_.port(), "build:ok"), 1);
  second.reset();

  Serve("build:bad", 2, {"--executors", "2", "--once"});
  EXPECT_EQ(Json(client_.Submit("build:bad", "{}").Last())["result"], "FAILURE");
  r = serve_->Wait(15s);
  serve_.reset();
  EXPECT_EQ(r.exit_code, 1) << r.err;
}

TEST_F(ServeTest, ThreeExecutorsRunThreeBuildsAtOnce) {
  // Each build waits until all three have started: they only succeed together.
  dir_.Write("started/.keep", "");
  WriteJob("together", "steps: [{run: 'touch " + (dir_ / "started").string() +
                           "/$BUILD_NUMBER; for i in $(seq 200); do [ $(ls " +
                           (dir_ / "started").string() +
                           " | wc -l) -ge 3 ] && exit 0; sleep 0.1; done; exit 1'}]\n");
  Serve("build:together", 3, {"--executors", "3"});
  std::vector<std::unique_ptr<testing::PendingJob>> builds;
  for (int i = 0; i < 3; ++i) builds.push_back(client_.Start("build:together", "{}"));
  std::set<std::string> workers;
  for (auto& b : builds) {
    auto t = b->Wait(60s);
    EXPECT_EQ(Json(t.Last())["result"], "SUCCESS") << t.Describe();
    workers.insert(Json(t.Last())["worker"].get<std::string>());
  }
  EXPECT_EQ(workers, (std::set<std::string>{"n1_exec-0", "n1_exec-1", "n1_exec-2"}));
}

TEST_F(ServeTest, SighupAddsAndRemovesFunctionsAndABrokenFileChangesNothing) {
  WriteJob("a", "steps: [{run: 'true'}]\n");
  Serve("build:a", 1, {"--executors", "1"});
  WriteJob("b", "steps: [{run: 'true'}]\n");
  std::filesystem::remove(dir_ / "jobs/a.yaml");
  serve_->Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "build:b") == 1; }));
  EXPECT_EQ(testing::WorkersFor(gearmand_.port(), "build:a"), 0);
  EXPECT_EQ(Json(client_.Submit("build:b", "{}").Last())["result"], "SUCCESS");

  WriteJob("c", "steps: [{run: 'true', retries: lots}]\n");
  serve_->Signal(SIGHUP);
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(testing::WorkersFor(gearmand_.port(), "build:b"), 1);
  EXPECT_EQ(testing::WorkersFor(gearmand_.port(), "build:c"), 0);
  serve_->Signal(SIGTERM);
  auto r = serve_->Wait(15s);
  serve_.reset();
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("c.yaml:2:"));
  EXPECT_THAT(r.err, HasSubstr("reload failed, the previous job definitions stay in force"));
}

TEST_F(ServeTest, ReloadDuringABuildDoesNotRequeueIt) {
  WriteJob("slow", "steps: [{run: 'sleep 2'}]\n");
  Serve("build:slow", 2, {"--executors", "2"});
  auto build = client_.Start("build:slow", "{}");
  ASSERT_TRUE(build->WaitForEvent(Kind::kData, 10s));
  std::filesystem::remove(dir_ / "jobs/slow.yaml");
  serve_->Signal(SIGHUP);
  // The idle executor drops the function now; the busy one keeps it until its build ends
  // (gearmand would otherwise hand the running job to another worker).
  EXPECT_TRUE(WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "build:slow") == 1; }));
  auto trace = build->Wait(30s);
  ASSERT_TRUE(trace.Completed()) << trace.Describe() << Stderr();
  EXPECT_EQ(Json(trace.Last())["result"], "SUCCESS");
  EXPECT_TRUE(WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "build:slow") == 0; }));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state/builds/slow/2"));
  EXPECT_EQ(testing::QueuedFor(gearmand_.port(), "build:slow"), 0);
}

TEST_F(ServeTest, DrainTimeoutAbortsWhatIsStillRunning) {
  WriteJob("long", "steps: [{run: 'sleep 300'}]\nfinally: [{run: 'echo finally ran'}]\n");
  Serve("build:long", 1, {"--executors", "1", "--drain-timeout", "1s", "--kill-grace", "1s"});
  auto build = client_.Start("build:long", "{}");
  ASSERT_TRUE(build->WaitForEvent(Kind::kData, 10s));
  serve_->Signal(SIGTERM);
  auto trace = build->Wait(30s);
  ASSERT_TRUE(trace.Completed()) << trace.Describe() << Stderr();
  EXPECT_EQ(Json(trace.Last())["result"], "ABORTED");
  EXPECT_THAT(Json(trace.Last())["reason"].get<std::string>(), HasSubstr("drain timeout"));
  EXPECT_THAT(Log("long", 1), HasSubstr("finally ran"));
  auto r = serve_->Wait(15s);
  serve_.reset();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(ServeTest, ReconnectsAfterGearmandRestartsAndIdlesWhileItIsDown) {
  WriteJob("guava", "steps: [{run: 'true'}]\n");
  Serve("build:guava", 2, {"--executors", "2"});
  gearmand_.Kill();
  long before = CpuTicks(serve_->pid());
  std::this_thread::sleep_for(3s);
  long used = CpuTicks(serve_->pid()) - before;
  // Next to nothing: a spinning reconnect loop would use all 300 ticks of the 3 s.
  EXPECT_LT(used, 30) << "CPU ticks used while the server was down";
  ASSERT_TRUE(gearmand_.Restart()) << gearmand_.log();
  EXPECT_TRUE(
      WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "build:guava") == 2; }, 20s))
      << Stderr();
  // Each connection reconnects on its own (jittered backoff): the manager may come last.
  EXPECT_TRUE(WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "stop:n1") == 1; }, 20s));
  EXPECT_EQ(Json(client_.Submit("build:guava", "{}").Last())["result"], "SUCCESS");
}

TEST_F(ServeTest, ABuildWhoseServerWentAwayRunsOnAndIsRecorded) {
  WriteJob("slow", "steps: [{run: 'sleep 2'}]\n");
  Serve("build:slow", 1, {"--executors", "1"});
  auto build = client_.Start("build:slow", "{}");
  ASSERT_TRUE(build->WaitForEvent(Kind::kData, 10s));
  gearmand_.Kill();
  ASSERT_TRUE(gearmand_.Restart()) << gearmand_.log();
  ASSERT_TRUE(WaitFor([&] { return Record("slow", 1).value("result", "") == "SUCCESS"; }, 20s))
      << Stderr();
  EXPECT_TRUE(WaitFor([&] {
    return Stderr().find("WORK_COMPLETE not delivered") != std::string::npos;
  })) << Stderr();
  // And the node takes builds again.
  EXPECT_TRUE(
      WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "build:slow") == 1; }, 20s));
}

TEST_F(ServeTest, ServesEveryConfiguredServer) {
  testing::Gearmand second;
  ASSERT_TRUE(second.ready());
  WriteJob("guava", "steps: [{run: 'true'}]\n");
  Serve("build:guava", 2, {"--executors", "2", "--server", second.address()});
  EXPECT_TRUE(WaitFor([&] { return testing::WorkersFor(second.port(), "build:guava") == 2; }));
  testing::GearmanClient other(second.port());
  auto trace = other.Submit("build:guava", "{}");
  EXPECT_EQ(Json(trace.Last())["result"], "SUCCESS") << trace.Describe();
  EXPECT_EQ(Json(client_.Submit("build:guava", "{}").Last())["number"], 2);
}

TEST_F(ServeTest, AHungServerDoesNotKeepTheNodeFromTheOthers) {
  testing::Gearmand second;
  ASSERT_TRUE(second.ready());
  WriteJob("guava", "steps: [{run: 'true'}]\n");
  ::kill(gearmand_.pid(), SIGSTOP);  // accepts connections (the kernel does), answers nothing
  serve_ = std::make_unique<testing::BackgroundCommand>(
      ServeArgs({"--executors", "1", "--server", second.address()}));
  testing::GearmanClient other(second.port());
  auto trace = other.Submit("build:guava", "{}", "", 60s);
  EXPECT_EQ(Json(trace.Last())["result"], "SUCCESS") << trace.Describe() << Stderr();
  // The hung server's unanswered GRAB costs its own connection, not the node's builds.
  EXPECT_TRUE(WaitFor(
      [&] {
        return Stderr().find("disconnected, will reconnect [server: " + gearmand_.address() +
                             ", client id: n1_manager, error: no reply to GRAB_JOB_UNIQ within "
                             "10s]") != std::string::npos;
      },
      15s))
      << Stderr();
  ::kill(gearmand_.pid(), SIGCONT);
}

TEST_F(ServeTest, OnceExitsOneWhenItsBuildCannotStart) {
  WriteJob("guava", "steps: [{run: 'true'}]\n");
  dir_.Write("not-a-directory", "");
  Serve("build:guava", 1,
        {"--executors", "1", "--once", "--workspace-root", (dir_ / "not-a-directory").string()});
  auto trace = client_.Submit("build:guava", "{}");
  EXPECT_EQ(trace.Kinds(), "EXCEPTION") << trace.Describe();
  EXPECT_THAT(trace.Last()->data, HasSubstr("build could not start"));
  auto r = serve_->Wait(15s);
  serve_.reset();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(Record("guava", 1)["result"], "NOT_BUILT");
}

TEST_F(ServeTest, SigtermDrainsThenASecondOneAborts) {
  WriteJob("short", "steps: [{run: 'sleep 1'}]\n");
  WriteJob("long", "steps: [{run: 'sleep 300'}]\n");
  Serve("build:short", 2, {"--executors", "2"});
  auto running = client_.Start("build:short", "{}");
  ASSERT_TRUE(running->WaitForEvent(Kind::kData, 10s));
  serve_->Signal(SIGTERM);
  // The idle executor unregisters at once; the busy one only after its build, because
  // gearmand would re-queue a running job whose function its connection drops.
  EXPECT_TRUE(WaitFor([&] { return testing::WorkersFor(gearmand_.port(), "build:short") == 1; }));
  auto trace = running->Wait(30s);
  ASSERT_TRUE(trace.Completed()) << trace.Describe() << Stderr();
  EXPECT_EQ(Json(trace.Last())["result"], "SUCCESS") << trace.Describe();
  auto r = serve_->Wait(15s);
  serve_.reset();
  EXPECT_EQ(r.exit_code, 0) << r.err;

  Serve("build:long", 2, {"--executors", "2", "--kill-grace", "1s"});
  auto long_build = client_.Start("build:long", "{}");
  ASSERT_TRUE(long_build->WaitForEvent(Kind::kData, 10s));
  serve_->Signal(SIGTERM);
  std::this_thread::sleep_for(300ms);
  serve_->Signal(SIGTERM);
  trace = long_build->Wait(30s);
  ASSERT_TRUE(trace.Completed()) << trace.Describe() << Stderr();
  EXPECT_EQ(Json(trace.Last())["result"], "ABORTED") << trace.Describe();
  r = serve_->Wait(15s);
  serve_.reset();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(ServeTest, KillNineThenRestartLeavesNothingOfTheOldBuild) {
  WriteJob("slow", "steps: [{run: 'sleep 300 & echo $! > \"$WORKSPACE/pid\"; wait'}]\n");
  Serve("build:slow", 1, {"--executors", "1"});
  auto build = client_.Start("build:slow", "{}");
  ASSERT_TRUE(build->WaitForEvent(Kind::kData, 10s));
  // The shell creates the file before it writes the pid: wait for the whole line.
  ASSERT_TRUE(WaitFor(
      [&] { return testing::ReadFile(dir_ / "state/workspace/slow/pid").ends_with("\n"); }));
  int pid = std::stoi(testing::ReadFile(dir_ / "state/workspace/slow/pid"));
  serve_->Signal(SIGKILL);
  serve_->Wait(10s);
  serve_.reset();
  Serve("build:slow", 1, {"--executors", "1"});
  EXPECT_TRUE(WaitFor([&] { return !testing::ProcessAlive(pid); }, 5s));
  EXPECT_EQ(Record("slow", 1)["result"], "LOST");
  // gearmand re-queued the job when its worker vanished: it runs again as build 2.
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_ / "state/builds/slow/2"); }));
}

TEST_F(ServeTest, JsonDaemonLogHasOneObjectPerLine) {
  WriteJob("guava", "steps: [{run: 'true'}]\n");
  Serve("build:guava", 1, {"--executors", "1", "--log-format", "json"});
  EXPECT_EQ(Json(client_.Submit("build:guava", "{}").Last())["result"], "SUCCESS");
  testing::StopServe(*serve_);
  std::string log = Stderr();
  serve_.reset();
  std::istringstream lines(log);
  std::string line;
  int count = 0;
  bool finished = false;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_TRUE(j["time"].is_string() && j["level"].is_string() && j["message"].is_string())
        << line;
    finished =
        finished || j["message"].get<std::string>().starts_with("build finished [job: guava");
    ++count;
  }
  EXPECT_GT(count, 3);
  EXPECT_TRUE(finished) << log;
}

TEST_F(ServeTest, InvalidConfigurationAndSecondRunnerAreRefused) {
  WriteJob("guava", "steps: [{run: 'true'}]\n");
  auto bad = testing::RunCommand(ServeArgs({"--executors", "zero"}));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--executors"));
  // A limit gearrun could not give any step: refused at start, not NOT_BUILT at every build.
  auto over =
      testing::RunCommand(testing::UnderNofileLimit(1024, ServeArgs({"--limit", "nofile=4096"})));
  EXPECT_EQ(over.exit_code, 2) << over.err;
  EXPECT_THAT(over.err, HasSubstr("gearrun serve: limits: nofile=4096 is above gearrun's own"));
  Serve("build:guava", 1, {"--executors", "1"});
  auto second = testing::RunCommand(ServeArgs({"--executors", "1"}));
  EXPECT_EQ(second.exit_code, 2);
  EXPECT_THAT(second.err, HasSubstr("another gearrun (pid " + std::to_string(serve_->pid())));
}

}  // namespace
}  // namespace gearrun
