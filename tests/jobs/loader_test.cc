#include "jobs/loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "jobs/request.h"

namespace gearrun::jobs {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

LoadReport Load(const std::string& yaml) { return LoadJobText(yaml, "jobs.yaml"); }

JobSpec LoadOne(const std::string& yaml) {
  auto report = Load(yaml);
  EXPECT_TRUE(report.ok()) << (report.errors.empty() ? "" : report.errors[0].ToString());
  EXPECT_EQ(report.jobs.size(), 1u);
  return report.jobs.empty() ? JobSpec{} : report.jobs.front();
}

// Loads `yaml`, which must produce exactly one error, and checks where it points.
void ExpectError(const std::string& yaml, const std::string& message, int line, int column) {
  auto report = Load(yaml);
  std::string all;
  for (const auto& e : report.errors) all += "\n  " + e.ToString();
  ASSERT_EQ(report.errors.size(), 1u) << yaml << "\nerrors:" << all;
  const Error& e = report.errors.front();
  EXPECT_THAT(e.message, HasSubstr(message)) << yaml;
  EXPECT_EQ(e.file, "jobs.yaml");
  EXPECT_EQ(e.line, line) << e.ToString();
  EXPECT_EQ(e.column, column) << e.ToString();
  EXPECT_TRUE(report.jobs.empty());
}

TEST(LoaderTest, MinimalJobGetsEveryDefault) {
  JobSpec job = LoadOne("name: guava\nsteps:\n  - run: make\n");
  EXPECT_EQ(job.name, "guava");
  EXPECT_FALSE(job.node.has_value());
  EXPECT_FALSE(job.timeout.has_value());
  EXPECT_FALSE(job.clean_workspace);
  EXPECT_THAT(job.shell, ElementsAre("bash", "-e", "-o", "pipefail", "-c"));
  EXPECT_EQ(job.kill.signal, SIGTERM);
  EXPECT_EQ(job.kill.grace, milliseconds(10'000));
  ASSERT_EQ(job.steps.size(), 1u);
  const StepSpec& step = job.steps[0];
  EXPECT_EQ(step.name, "step 1");
  EXPECT_EQ(step.run, "make");
  EXPECT_EQ(step.retries, 0);
  EXPECT_EQ(step.retry_delay, milliseconds(0));
  EXPECT_THAT(step.retry_on, IsEmpty());
  EXPECT_FALSE(step.retry_on_timeout);
  EXPECT_FALSE(step.continue_on_error);
  EXPECT_EQ(step.dir, "");
  EXPECT_EQ(step.shell, job.shell);
  EXPECT_EQ(job.location.line, 1);
  EXPECT_EQ(step.location.line, 3);
  EXPECT_THAT(job.finally, IsEmpty());
}

TEST(LoaderTest, ReadsEveryKey) {
  JobSpec job = LoadOne(R"(
name: guava
description: Build guava
node: ubuntu && !arm
parameters:
  BRANCH: {default: main, description: Branch to build}
  TARGET: {required: true, choices: [x86_64, arm64]}
  API_KEY: {secret: true}
  PLAIN:
env: {GRADLE_OPTS: -Xmx2g, PATH: /opt/bin:/usr/bin}
timeout: 30m
workspace: {clean: true}
shell: [sh, -c]
kill: {signal: INT, grace: 3s}
steps:
  - name: compile
    run: ./gradlew assemble
    timeout: 10m
    retries: 2
    retry_delay: 5s
    retry_on: [1, 75]
    retry_on_timeout: true
    continue_on_error: true
    env: {TERM: dumb, GRADLE_OPTS: -Xmx4g}
    dir: sub/./dir/
    shell: [bash, -c]
    kill: {signal: SIGKILL, grace: 0}
  - run: echo two
finally:
  - name: collect
    run: tar czf logs.tgz logs/
    timeout: 2m
  - run: echo bye
)");
  EXPECT_EQ(job.description, "Build guava");
  ASSERT_TRUE(job.node.has_value());
  EXPECT_EQ(job.node->text(), "ubuntu && !arm");
  ASSERT_EQ(job.parameters.size(), 4u);
  EXPECT_EQ(job.parameters[0].name, "BRANCH");
  EXPECT_EQ(job.parameters[0].default_value, "main");
  EXPECT_EQ(job.parameters[0].description, "Branch to build");
  EXPECT_TRUE(job.parameters[1].required);
  EXPECT_THAT(job.parameters[1].choices, ElementsAre("x86_64", "arm64"));
  EXPECT_TRUE(job.parameters[2].secret);
  EXPECT_EQ(job.parameters[3].name, "PLAIN");
  EXPECT_FALSE(job.parameters[3].default_value.has_value());
  EXPECT_EQ(job.env.at("GRADLE_OPTS"), "-Xmx2g");
  EXPECT_EQ(job.env.at("PATH"), "/opt/bin:/usr/bin");  // the job's author may set PATH
  EXPECT_EQ(job.timeout, milliseconds(1'800'000));
  EXPECT_TRUE(job.clean_workspace);
  EXPECT_THAT(job.shell, ElementsAre("sh", "-c"));
  EXPECT_EQ(job.kill.signal, SIGINT);
  EXPECT_EQ(job.kill.grace, milliseconds(3'000));

  ASSERT_EQ(job.steps.size(), 2u);
  const StepSpec& s = job.steps[0];
  EXPECT_EQ(s.name, "compile");
  EXPECT_EQ(s.timeout, milliseconds(600'000));
  EXPECT_EQ(s.retries, 2);
  EXPECT_EQ(s.retry_delay, milliseconds(5'000));
  EXPECT_THAT(s.retry_on, ElementsAre(1, 75));
  EXPECT_TRUE(s.retry_on_timeout);
  EXPECT_TRUE(s.continue_on_error);
  EXPECT_EQ(s.env.at("TERM"), "dumb");
  EXPECT_EQ(s.env.at("GRADLE_OPTS"), "-Xmx4g");  // the step's env wins over the job's
  EXPECT_EQ(s.env.at("PATH"), "/opt/bin:/usr/bin");
  EXPECT_EQ(s.dir, "sub/dir");
  EXPECT_THAT(s.shell, ElementsAre("bash", "-c"));
  EXPECT_EQ(s.kill.signal, SIGKILL);
  EXPECT_EQ(s.kill.grace, milliseconds(0));
  // The second step inherits the job's shell and kill ladder.
  EXPECT_EQ(job.steps[1].name, "step 2");
  EXPECT_THAT(job.steps[1].shell, ElementsAre("sh", "-c"));
  EXPECT_EQ(job.steps[1].kill.signal, SIGINT);

  ASSERT_EQ(job.finally.size(), 2u);
  EXPECT_EQ(job.finally[0].name, "collect");
  EXPECT_EQ(job.finally[0].timeout, milliseconds(120'000));
  EXPECT_EQ(job.finally[1].name, "finally 2");
}

TEST(LoaderTest, SeveralDocumentsInOneFile) {
  auto report = Load("name: a\nsteps: [{run: x}]\n---\nname: b\nsteps: [{run: y}]\n---\n");
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report.jobs.size(), 2u);
  EXPECT_EQ(report.jobs[0].name, "a");
  EXPECT_EQ(report.jobs[1].name, "b");
  EXPECT_EQ(report.jobs[1].location.line, 4);
}

TEST(LoaderTest, EmptyFileHasNoJobsAndNoErrors) {
  auto report = Load("# nothing here yet\n");
  EXPECT_TRUE(report.ok());
  EXPECT_THAT(report.jobs, IsEmpty());
}

TEST(LoaderTest, YamlSyntaxErrorNamesLineAndColumn) {
  ExpectError("name: a\nsteps: [{run: x}\n", "invalid YAML", 3, 1);
  ExpectError("name: a\n  bad: indent\n", "invalid YAML", 2, 6);
}

TEST(LoaderTest, DocumentMustBeAMapping) {
  ExpectError("- name: a\n", "expected a job as a mapping", 1, 1);
}

TEST(LoaderTest, UnknownKeySuggestsTheNearMiss) {
  ExpectError("name: a\nsteps: [{run: x}]\ntimout: 5m\n",
              "unknown key 'timout' in a job; did you mean 'timeout'?", 3, 1);
  ExpectError("name: a\nsteps:\n  - run: x\n    retires: 2\n",
              "unknown key 'retires' in a step; did you mean 'retries'?", 4, 5);
  ExpectError("name: a\nsteps:\n  - run: x\n    Name: y\n", "did you mean 'name'?", 4, 5);
  ExpectError("name: a\nsteps: [{run: x}]\nkill: {signl: INT}\n", "did you mean 'signal'?", 3, 8);
  ExpectError("name: a\nsteps: [{run: x}]\nparameters:\n  A: {defualt: x}\n",
              "did you mean 'default'?", 4, 7);
  ExpectError("name: a\nsteps: [{run: x}]\nworkspace: {cleen: true}\n", "did you mean 'clean'?", 3,
              13);
}

TEST(LoaderTest, UnknownKeyWithoutNearMissListsTheKnownOnes) {
  ExpectError("name: a\nsteps: [{run: x}]\nbanana: 1\n",
              "unknown key 'banana' in a job (known keys: name description node", 3, 1);
}

TEST(LoaderTest, DuplicateKeyIsAnError) {
  ExpectError("name: a\nsteps: [{run: x}]\nname: b\n",
              "duplicate key 'name' (first given on line 1)", 3, 1);
}

TEST(LoaderTest, MissingRequiredKeys) {
  ExpectError("steps: [{run: x}]\n", "a job needs a 'name'", 1, 1);
  ExpectError("name: a\n", "a job needs 'steps'", 1, 1);
  ExpectError("name: a\nsteps:\n  - name: build\n", "build: a step needs 'run'", 3, 5);
}

TEST(LoaderTest, EmptyStepsIsAnError) {
  ExpectError("name: a\nsteps: []\n", "at least one step", 2, 8);
}

TEST(LoaderTest, WrongTypesSayWhatWasExpected) {
  ExpectError("name: [a]\nsteps: [{run: x}]\n", "name: expected text, got a list", 1, 7);
  ExpectError("name: a\nsteps: {run: x}\n", "steps: expected a list of steps", 2, 8);
  ExpectError("name: a\nsteps: [echo]\n", "steps: expected a step", 2, 9);
  ExpectError("name: a\nsteps: [{run: x}]\nenv: [A]\n", "env: expected a mapping", 3, 6);
  ExpectError("name: a\nsteps: [{run: x}]\nworkspace: {clean: yes}\n",
              "clean: expected true or false, got 'yes'", 3, 20);
  ExpectError("name: a\nsteps: [{run: x}]\nworkspace: true\n",
              "workspace: expected workspace as a mapping", 3, 12);
  ExpectError("name: a\nsteps: [{run: x}]\nshell: bash\n", "shell: expected a non-empty list", 3,
              8);
  ExpectError("name: a\nsteps: [{run: x}]\nshell: []\n", "shell: expected a non-empty list", 3, 8);
  ExpectError("name: a\nsteps: [{run: x, continue_on_error: 1}]\n",
              "continue_on_error: expected true or false, got '1'", 2, 37);
  ExpectError("name: a\nsteps: [{run: x}]\nenv: {A: [1]}\n", "A: expected a value", 3, 10);
  ExpectError("name: a\nsteps: [{run: x}]\nenv: {A: }\n", "write \"\" for an empty one", 3, 7);
  ExpectError("name: a\nsteps: [{run: {x: 1}}]\n", "run: expected text, got a mapping", 2, 15);
  ExpectError("name: a\nsteps: [{run: ''}]\n", "run: must not be empty", 2, 15);
}

TEST(LoaderTest, BadDurations) {
  ExpectError("name: a\nsteps: [{run: x}]\ntimeout: 5 minutes\n",
              "timeout: expected a duration such as", 3, 10);
  ExpectError("name: a\nsteps: [{run: x, timeout: 0}]\n", "timeout: must be longer than 0", 2, 27);
  ExpectError("name: a\nsteps: [{run: x, retry_delay: -1s}]\n", "negative", 2, 31);
  ExpectError("name: a\nsteps: [{run: x}]\nkill: {grace: 5y}\n", "grace: expected a duration", 3,
              15);
}

TEST(LoaderTest, NegativeOrHugeRetries) {
  ExpectError("name: a\nsteps: [{run: x, retries: -1}]\n",
              "retries: expected a whole number from 0 to 100, got '-1'", 2, 27);
  ExpectError("name: a\nsteps: [{run: x, retries: 1000}]\n", "from 0 to 100", 2, 27);
  ExpectError("name: a\nsteps: [{run: x, retries: two}]\n", "got 'two'", 2, 27);
}

TEST(LoaderTest, RetryOnMustListExitCodes) {
  ExpectError("name: a\nsteps: [{run: x, retry_on: [1, 300]}]\n",
              "retry_on: expected an exit code from 1 to 255, got '300'", 2, 32);
  ExpectError("name: a\nsteps: [{run: x, retry_on: []}]\n", "non-empty list of exit codes", 2, 28);
  ExpectError("name: a\nsteps: [{run: x, retry_on: 1}]\n", "non-empty list of exit codes", 2, 28);
}

TEST(LoaderTest, DirMustStayInsideTheWorkspace) {
  ExpectError("name: a\nsteps: [{run: x, dir: ../up}]\n", "leads out of the workspace", 2, 23);
  ExpectError("name: a\nsteps: [{run: x, dir: a/../../up}]\n", "leads out of the workspace", 2, 23);
  ExpectError("name: a\nsteps: [{run: x, dir: /etc}]\n", "must be relative to the workspace", 2,
              23);
  EXPECT_EQ(LoadOne("name: a\nsteps: [{run: x, dir: a/b/../c}]\n").steps[0].dir, "a/c");
  EXPECT_EQ(LoadOne("name: a\nsteps: [{run: x, dir: ./}]\n").steps[0].dir, "");
}

TEST(LoaderTest, JobNameRules) {
  ExpectError("name: 'a b'\nsteps: [{run: x}]\n", "may use only letters, digits", 1, 7);
  ExpectError("name: 'build:x'\nsteps: [{run: x}]\n", "may use only letters, digits", 1, 7);
  ExpectError("name: " + std::string(101, 'x') + "\nsteps: [{run: x}]\n", "at most 100", 1, 7);
  ExpectError("name: ..\nsteps: [{run: x}]\n", "not a usable directory name", 1, 7);
  ExpectError("name: ''\nsteps: [{run: x}]\n", "name: must not be empty", 1, 7);
  EXPECT_EQ(LoadOne("name: A.b_c-1\nsteps: [{run: x}]\n").name, "A.b_c-1");
  EXPECT_EQ(LoadOne("name: " + std::string(100, 'x') + "\nsteps: [{run: x}]\n").name.size(), 100u);
}

TEST(LoaderTest, MalformedLabelExpression) {
  ExpectError("name: a\nnode: ubuntu &&\nsteps: [{run: x}]\n",
              "node: invalid label expression 'ubuntu &&': expected a label at the end", 2, 7);
  ExpectError("name: a\nnode: (a || b\nsteps: [{run: x}]\n", "unbalanced '(' (at character 1)", 2,
              7);
}

TEST(LoaderTest, ParameterNameRules) {
  ExpectError("name: a\nsteps: [{run: x}]\nparameters:\n  1ABC: {}\n",
              "parameter name '1ABC' must be letters, digits and '_'", 4, 3);
  ExpectError("name: a\nsteps: [{run: x}]\nparameters:\n  A-B: {}\n", "parameter name 'A-B'", 4, 3);
  ExpectError("name: a\nsteps: [{run: x}]\nparameters:\n  A: {}\n  A: {}\n",
              "duplicate parameter 'A'", 5, 3);
}

TEST(LoaderTest, ParametersMayNotUseForbiddenNames) {
  for (const std::string name :
       {"PATH", "IFS", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "LD_PRELOAD",
        "LD_LIBRARY_PATH", "BUILD_NUMBER", "JOB_NAME", "WORKSPACE", "NODE_NAME", "NODE_LABELS",
        "EXECUTOR_NUMBER", "BUILD_TAG", "GEARMAN_UNIQUE"}) {
    ExpectError("name: a\nsteps: [{run: x}]\nparameters:\n  " + name + ": {}\n",
                "parameter '" + name + "' cannot be declared: a build request must never set it", 4,
                3);
  }
}

TEST(LoaderTest, EnvMayNotSetRunnerVariables) {
  for (const std::string name : {"BUILD_NUMBER", "JOB_NAME", "WORKSPACE", "NODE_NAME",
                                 "NODE_LABELS", "EXECUTOR_NUMBER", "BUILD_TAG", "GEARMAN_UNIQUE"}) {
    ExpectError("name: a\nsteps: [{run: x}]\nenv: {" + name + ": x}\n",
                "variable '" + name + "' is set by the runner", 3, 7);
  }
  ExpectError("name: a\nsteps:\n  - run: x\n    env: {WORKSPACE: /}\n", "set by the runner", 4, 11);
  ExpectError("name: a\nsteps: [{run: x}]\nenv: {A=B: x}\n", "variable name 'A=B'", 3, 7);
}

TEST(LoaderTest, ParameterDeclarationConsistency) {
  ExpectError("name: a\nsteps: [{run: x}]\nparameters:\n  T: {choices: [a, b], default: c}\n",
              "default: 'c' is not one of the choices", 4, 33);
  ExpectError("name: a\nsteps: [{run: x}]\nparameters:\n  T: {required: true, default: c}\n",
              "a required parameter has no default", 4, 32);
  ExpectError("name: a\nsteps: [{run: x}]\nparameters:\n  T: {choices: []}\n",
              "choices: expected a non-empty list", 4, 16);
  ExpectError("name: a\nsteps: [{run: x}]\nparameters:\n  T: {choices: [a, a]}\n",
              "'a' is listed twice", 4, 20);
  ExpectError("name: a\nsteps: [{run: x}]\nparameters: [A]\n", "parameters: expected a mapping", 3,
              13);
}

TEST(LoaderTest, YamlTagsAreNotSilentlyDropped) {
  // Unquoted, YAML reads "!arm" as a tag and "&" as an anchor: the expression would be "x".
  auto report = Load("name: a\nnode: !arm && x\nsteps: [{run: y}]\n");
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.errors[0].line, 2);
  EXPECT_THAT(report.errors[0].message,
              HasSubstr("'!arm' is read by YAML as a tag, not as text; put the whole value in "
                        "quotes"));
  ExpectError("name: a\nsteps:\n  - run: !true\n", "'!true' is read by YAML as a tag", 3, 10);
  EXPECT_EQ(LoadOne("name: a\nnode: \"!arm\"\nsteps: [{run: y}]\n").node->text(), "!arm");
  EXPECT_EQ(LoadOne("name: a\nsteps: [{run: !!str 5}]\n").steps[0].run, "5");
}

TEST(LoaderTest, NodeDefaultKillLadderFillsWhatTheJobLeavesOut) {
  LoadOptions options{.default_kill = {.signal = SIGINT, .grace = std::chrono::seconds(30)}};
  auto none = LoadJobText("name: a\nsteps: [{run: x}]\n", "a.yaml", options);
  EXPECT_EQ(none.jobs.at(0).kill.signal, SIGINT);
  EXPECT_EQ(none.jobs.at(0).steps.at(0).kill.grace, std::chrono::seconds(30));
  auto partial =
      LoadJobText("name: a\nkill: {signal: HUP}\nsteps: [{run: x}]\n", "a.yaml", options);
  EXPECT_EQ(partial.jobs.at(0).kill.signal, SIGHUP);
  EXPECT_EQ(partial.jobs.at(0).kill.grace, std::chrono::seconds(30));
}

TEST(LoaderTest, UnknownSignal) {
  ExpectError("name: a\nsteps: [{run: x}]\nkill: {signal: TERMINATE}\n",
              "unknown signal 'TERMINATE'", 3, 16);
  EXPECT_EQ(LoadOne("name: a\nsteps: [{run: x}]\nkill: {signal: 9}\n").kill.signal, SIGKILL);
}

TEST(LoaderTest, ReportsEveryErrorOfADocument) {
  auto report = Load("name: 'a b'\ntimout: 5\nsteps:\n  - run: x\n    retries: -1\n");
  ASSERT_EQ(report.errors.size(), 3u);
  EXPECT_EQ(report.errors[0].line, 1);
  EXPECT_EQ(report.errors[1].line, 2);
  EXPECT_EQ(report.errors[2].line, 5);
}

TEST(LoaderTest, OneBadDocumentDoesNotHideTheOthers) {
  auto report = Load("name: a\nsteps: [{run: x}]\n---\nname: b\n---\nname: c\nsteps: [{run: y}]\n");
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.errors[0].line, 4);
  ASSERT_EQ(report.jobs.size(), 2u);
  EXPECT_EQ(report.jobs[1].name, "c");
}

TEST(LoaderTest, DuplicateJobInOneFile) {
  auto report = Load("name: a\nsteps: [{run: x}]\n---\nname: a\nsteps: [{run: y}]\n");
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.errors[0].message, "job 'a' is already defined at jobs.yaml:1");
  EXPECT_EQ(report.errors[0].line, 4);
  EXPECT_EQ(report.jobs.size(), 1u);
}

class LoaderDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gearrun-loader-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& rel, const std::string& text) {
    auto path = dir_ / rel;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(LoaderDirTest, ReadsYamlFilesRecursivelySkippingHiddenAndOthers) {
  Write("a.yaml", "name: a\nsteps: [{run: x}]\n");
  Write("sub/deeper/b.yml", "name: b\nsteps: [{run: x}]\n");
  Write("notes.txt", "name: [broken\n");
  Write(".git/c.yaml", "name: [broken\n");
  Write(".hidden.yaml", "name: [broken\n");
  auto report = LoadJobs({dir_});
  EXPECT_TRUE(report.ok()) << report.errors[0].ToString();
  ASSERT_EQ(report.jobs.size(), 2u);
  EXPECT_EQ(report.jobs[0].name, "a");
  EXPECT_EQ(report.jobs[1].name, "b");
  EXPECT_EQ(report.files_read, 2);
}

TEST_F(LoaderDirTest, OneBadFileDoesNotHideTheErrorsOfOthers) {
  Write("a.yaml", "name: a\nsteps: [{run: x\n");
  Write("b.yaml", "name: b\nsteps: []\n");
  Write("c.yaml", "name: c\nsteps: [{run: x}]\n");
  auto report = LoadJobs({dir_});
  ASSERT_EQ(report.errors.size(), 2u);
  EXPECT_EQ(report.errors[0].file, (dir_ / "a.yaml").string());
  EXPECT_EQ(report.errors[0].code, ErrorCode::kSyntax);
  EXPECT_EQ(report.errors[1].file, (dir_ / "b.yaml").string());
  ASSERT_EQ(report.jobs.size(), 1u);
  EXPECT_EQ(report.jobs[0].name, "c");
}

TEST_F(LoaderDirTest, DuplicateNamesAcrossFilesNameBothFiles) {
  Write("a.yaml", "name: guava\nsteps: [{run: x}]\n");
  Write("sub/b.yaml", "# comment\nname: guava\nsteps: [{run: y}]\n");
  auto report = LoadJobs({dir_});
  ASSERT_EQ(report.errors.size(), 1u);
  const Error& e = report.errors[0];
  EXPECT_EQ(e.code, ErrorCode::kDuplicate);
  EXPECT_EQ(e.file, (dir_ / "sub/b.yaml").string());
  EXPECT_EQ(e.line, 2);
  EXPECT_THAT(e.message, HasSubstr("already defined at " + (dir_ / "a.yaml").string() + ":1"));
}

TEST_F(LoaderDirTest, MissingPathIsAnError) {
  auto report = LoadJobs({dir_ / "nope"});
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.errors[0].code, ErrorCode::kIo);
  EXPECT_THAT(report.errors[0].ToString(), HasSubstr("nope: no such file or directory"));
}

TEST_F(LoaderDirTest, SingleFileIsReadWhateverItsExtension) {
  Write("job.txt", "name: t\nsteps: [{run: x}]\n");
  auto report = LoadJobs({dir_ / "job.txt"});
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.jobs.size(), 1u);
}

TEST_F(LoaderDirTest, OnlyRegularFilesAreRead) {
  // A FIFO named like a job file, given by name: reading it would block for ever.
  ASSERT_EQ(::mkfifo((dir_ / "pipe.yaml").c_str(), 0644), 0);
  auto report = LoadJobs({dir_ / "pipe.yaml"});
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.errors[0].code, ErrorCode::kIo);
  EXPECT_THAT(report.errors[0].ToString(), HasSubstr("pipe.yaml: not a regular file"));
  // In a directory it is not a job file at all.
  Write("ok.yaml", "name: ok\nsteps: [{run: x}]\n");
  report = LoadJobs({dir_});
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.jobs.size(), 1u);
}

TEST_F(LoaderDirTest, AFileOverTheSizeLimitIsRefusedWhereTheLimitIsReached) {
  const std::string head = "name: big\nsteps: [{run: x}]\n";  // 2 lines
  std::string text = head;
  while (text.size() <= kMaxJobFileBytes) text += "# " + std::string(77, 'x') + "\n";
  Write("big.yaml", text);
  auto report = LoadJobs({dir_});
  ASSERT_EQ(report.errors.size(), 1u);
  const Error& e = report.errors[0];
  EXPECT_EQ(e.code, ErrorCode::kLimit);
  EXPECT_THAT(e.message, HasSubstr("larger than 1048576 bytes"));
  EXPECT_EQ(e.line, 2 + static_cast<int>((kMaxJobFileBytes - head.size()) / 80) + 1);
  EXPECT_EQ(e.column, static_cast<int>((kMaxJobFileBytes - head.size()) % 80) + 1);
}

// Inputs that crashed or froze the loader (found by fuzzing): each ends in one error that
// names where the file crossed the line, quickly.
TEST(LoaderLimitsTest, AnAliasInsideItsOwnNodeIsAnError) {
  ExpectError("a: &a [*a]\n", "alias *a refers to a node that contains it", 1, 8);
  ExpectError("name: x\nsteps: &s\n  - run: x\n    env: *s\n",
              "alias *s refers to a node that contains it", 4, 10);
}

TEST(LoaderLimitsTest, AnAliasBombIsStoppedAtTheNodeLimit) {
  // Nine levels of ten aliases each: a few hundred bytes that stand for 10^9 nodes.
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) text += (k ? ", " : "") + prev;
    text += "]\n";
  }
  auto start = std::chrono::steady_clock::now();
  auto report = Load(text);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.errors[0].code, ErrorCode::kLimit);
  EXPECT_THAT(report.errors[0].message, HasSubstr("aliases expand this file to more than 100000"));
  EXPECT_EQ(report.errors[0].line, 5);
  // Not a timing assertion on the happy path: only that it is not the minutes it used to be.
  EXPECT_LT(took, std::chrono::seconds(20));
}

TEST(LoaderLimitsTest, DeepNestingIsAnError) {
  ExpectError(std::string(150, '[') + std::string(150, ']') + "\n", "nested more than 100 levels",
              1, 101);
  std::string block;
  for (int i = 0; i < 120; ++i) block += std::string(static_cast<size_t>(i) * 2, ' ') + "- \n";
  auto report = Load(block);
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_THAT(report.errors[0].message, HasSubstr("nested more than 100 levels"));
  // Aliases count as deep as what they stand for.
  std::string chain = "a0: &a0 " + std::string(60, '[') + "x" + std::string(60, ']') + "\n";
  chain += "a1: &a1 " + std::string(60, '[') + "*a0" + std::string(60, ']') + "\n";
  ExpectError(chain, "nested more than 100 levels deep (aliases expanded)", 2, 69);
  // Up to the limit is fine (and an error about the job, not the nesting).
  report = Load(std::string(99, '[') + "x" + std::string(99, ']') + "\n");
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.errors[0].code, ErrorCode::kInvalid);
}

TEST(LoaderLimitsTest, TooManyDocumentsIsAnErrorAtTheFirstOneOver) {
  std::string text;
  for (int i = 0; i <= kMaxJobDocuments; ++i) {
    text += "---\nname: j" + std::to_string(i) + "\nsteps: [{run: x}]\n";
  }
  ExpectError(text, "more than 1000 documents in one file", 3 * kMaxJobDocuments + 1, 1);
  // Exactly the limit loads.
  text.clear();
  for (int i = 0; i < kMaxJobDocuments; ++i) {
    text += "---\nname: j" + std::to_string(i) + "\nsteps: [{run: x}]\n";
  }
  auto report = Load(text);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.jobs.size(), static_cast<size_t>(kMaxJobDocuments));
}

TEST(LoaderLimitsTest, StringsTooLongForExecAreErrorsNotBuildsThatCannotStart) {
  std::string big(kMaxVariableBytes, 'x');
  ExpectError("name: a\nsteps: [{run: " + big + "y}]\n", "run: the script is 131072 bytes", 2, 15);
  ExpectError("name: a\nsteps: [{run: x}]\nenv: {V: " + big + "}\n",
              "V: the value is 131071 bytes; with its name it may be at most 131071", 3, 10);
  ExpectError("name: a\nsteps: [{run: x}]\nparameters: {P: {default: " + big + "}}\n",
              "P: the value is 131071 bytes", 3, 27);
  auto report = Load("name: a\nsteps: [{run: " + big + "}]\n");
  EXPECT_TRUE(report.ok());
}

// A tag repeated through aliases gave 111,110 errors from 260 bytes; a megabyte of unknown
// keys 100,000; twenty such files 800 MB.
TEST(LoaderLimitsTest, ErrorsAreListedOnceAndAtMostAHundredPerFile) {
  std::string tags = "a0: &a0 [!x 1, !x 2]\n";
  for (int i = 1; i <= 5; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    tags += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + prev + ", " + prev +
            ", " + prev + "]\n";
  }
  auto report = Load(tags);
  ASSERT_EQ(report.errors.size(), 2u);  // each tag once
  std::string keys = "name: k\nsteps: [{run: x}]\n";
  for (int i = 0; i < 5000; ++i) keys += "unknown" + std::to_string(i) + ": 1\n";
  report = Load(keys);
  ASSERT_EQ(report.errors.size(), kMaxErrorsPerFile + 1);
  EXPECT_THAT(report.errors.back().message,
              HasSubstr("and 4900 more errors in this file (only the first 100 are listed)"));
  EXPECT_TRUE(report.jobs.empty());
}

TEST(LoaderLimitsTest, OrdinaryAnchorsAndAliasesStillWork) {
  auto report = Load(
      "name: a\nenv: &e {A: '1'}\nsteps: [{run: x, env: *e}]\n---\nname: b\nsteps: [{run: y}]\n");
  ASSERT_TRUE(report.ok()) << report.errors[0].ToString();
  ASSERT_EQ(report.jobs.size(), 2u);
  EXPECT_EQ(report.jobs[0].steps[0].env.at("A"), "1");
}

TEST(LoaderKeysTest, AllKeysListsEverySection) {
  const auto& keys = AllJobKeys();
  for (const char* k : {"job.name", "job.finally", "parameter.secret", "workspace.clean",
                        "kill.grace", "step.retry_on_timeout", "step.dir"}) {
    EXPECT_TRUE(keys.contains(k)) << k;
  }
  auto report = Load("name: a\nsteps: [{run: x, retries: 1}]\n");
  EXPECT_EQ(report.keys_used,
            (std::set<std::string>{"job.name", "job.steps", "step.run", "step.retries"}));
}

}  // namespace
}  // namespace gearrun::jobs

namespace gearrun::jobs {
namespace {

TEST(LoaderCheckoutTest, ReadsCheckoutWithDefaultsAndReferences) {
  JobSpec job = LoadOne(R"(name: a
checkout: {url: "${ZUUL_URL}/${ZUUL_PROJECT}", ref: "${ZUUL_REF}", path: ./code/, depth: 1}
steps: [{run: x}]
)");
  ASSERT_TRUE(job.checkout);
  EXPECT_EQ(job.checkout->url, "${ZUUL_URL}/${ZUUL_PROJECT}");
  EXPECT_EQ(job.checkout->ref, "${ZUUL_REF}");
  EXPECT_EQ(job.checkout->path, "code");
  EXPECT_EQ(job.checkout->depth, 1);
  EXPECT_FALSE(job.checkout->submodules);
  EXPECT_EQ(LoadOne("name: a\ncheckout: {url: /srv/repo}\nsteps: [{run: x}]\n").checkout->path,
            "src");
}

TEST(LoaderCheckoutTest, RejectsBadCheckouts) {
  ExpectError("name: a\ncheckout: {ref: main}\nsteps: [{run: x}]\n", "needs a 'url'", 2, 11);
  ExpectError("name: a\ncheckout: {url: x, path: ../up}\nsteps: [{run: x}]\n",
              "path: '../up' leads out of the workspace", 2, 26);
  ExpectError("name: a\ncheckout: {url: '${1X}'}\nsteps: [{run: x}]\n",
              "is not a ${NAME} reference", 2, 17);
  ExpectError("name: a\ncheckout: {url: x, depht: 1}\nsteps: [{run: x}]\n", "did you mean 'depth'",
              2, 20);
}

TEST(SubstituteParametersTest, ReplacesReferencesAndNamesMissingOnes) {
  EnvMap params = {{"ZUUL_URL", "git://h"}, {"ZUUL_PROJECT", "p"}};
  EXPECT_EQ(*SubstituteParameters("${ZUUL_URL}/${ZUUL_PROJECT}.git", params), "git://h/p.git");
  EXPECT_EQ(*SubstituteParameters("plain $HOME", params), "plain $HOME");
  auto missing = SubstituteParameters("${ZUUL_REF}", params);
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error(), ::testing::HasSubstr("ZUUL_REF"));
}

}  // namespace
}  // namespace gearrun::jobs
