#include "runner/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner/state_lock.h"
#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ServerAddressTest, Forms) {
  EXPECT_EQ(ParseServerAddress("gear1")->ToString(), "gear1:4730");
  EXPECT_EQ(ParseServerAddress("gear1:4731")->port, 4731);
  EXPECT_EQ(ParseServerAddress("[::1]:4732")->host, "::1");
  EXPECT_EQ(ParseServerAddress("[::1]:4732")->ToString(), "[::1]:4732");
  EXPECT_THAT(ParseServerAddress("gear1:0").error(), HasSubstr("port must be 1 to 65535"));
  EXPECT_THAT(ParseServerAddress("gear1:").error(), HasSubstr("port must be 1 to 65535"));
  EXPECT_THAT(ParseServerAddress(":4730").error(), HasSubstr("host is missing"));
  EXPECT_THAT(ParseServerAddress("::1:4730").error(), HasSubstr("[addr]:port"));
}

TEST(ServeConfigTest, Defaults) {
  auto c = LoadServeConfig({});
  ASSERT_TRUE(c) << c.error();
  EXPECT_THAT(c->servers, ElementsAre(ServerAddress{"127.0.0.1", 4730}));
  EXPECT_FALSE(c->servers_configured);
  EXPECT_EQ(c->node.name, HostName());
  EXPECT_EQ(c->node.state_dir, "/var/lib/gearrun");
  EXPECT_EQ(c->jobs, "/etc/gearrun/jobs");
  EXPECT_GE(c->executors, 1);
  EXPECT_FALSE(c->once);
  EXPECT_FALSE(c->drain_timeout);
}

TEST(ServeConfigTest, FileThenFlagsWin) {
  testing::TempDir dir;
  auto file = dir.Write("node.yaml", R"(
servers: [gear1:4730, "gear2"]
node: build-01
labels: [ubuntu, gcc]
executors: 4
jobs: /srv/jobs
state_dir: /srv/state
workspace_root: /srv/ws
pass_through: ["ZUUL_*", "CI_*"]
env_allowlist: [PATH, HOME]
log_cap: 64M
limits: {core: 0, nofile: 4096, nproc: 2048, as: 8G}
memory_max: 4G
pids_max: 1000
containment: process-group
kill: {signal: INT, grace: 30s}
drain_timeout: 1h
once: false
log_level: debug
log_format: json
)");
  ServeFlags flags{.config_file = file, .node = "build-02", .executors = "2"};
  auto c = LoadServeConfig(flags);
  ASSERT_TRUE(c) << c.error();
  EXPECT_THAT(c->servers, ElementsAre(ServerAddress{"gear1", 4730}, ServerAddress{"gear2", 4730}));
  EXPECT_TRUE(c->servers_configured);
  EXPECT_EQ(c->node.name, "build-02");  // the flag wins
  EXPECT_EQ(c->executors, 2);
  EXPECT_THAT(c->node.labels, ElementsAre("ubuntu", "gcc"));
  EXPECT_EQ(c->jobs, "/srv/jobs");
  EXPECT_EQ(c->node.state_dir, "/srv/state");
  EXPECT_EQ(c->node.workspace_root, "/srv/ws");
  EXPECT_THAT(c->request_policy.pass_through, ElementsAre("ZUUL_*", "CI_*"));
  EXPECT_THAT(c->node.env_allowlist, ElementsAre("PATH", "HOME"));
  EXPECT_EQ(c->node.log_cap_bytes, 64u << 20);
  EXPECT_EQ(c->node.limits.core_bytes, 0u);
  EXPECT_EQ(c->node.limits.open_files, 4096u);
  EXPECT_EQ(c->node.limits.processes, 2048u);
  EXPECT_EQ(c->node.limits.address_space_bytes, std::uint64_t{8} << 30);
  EXPECT_EQ(c->node.memory_max_bytes, std::uint64_t{4} << 30);
  EXPECT_EQ(c->node.pids_max, 1000u);
  EXPECT_EQ(c->node.containment, sandbox::ContainmentMode::kProcessGroup);
  EXPECT_EQ(c->kill.signal, SIGINT);
  EXPECT_EQ(c->kill.grace, std::chrono::seconds(30));
  EXPECT_EQ(c->drain_timeout, std::chrono::hours(1));
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->log_format, LogFormat::kJson);
}

TEST(ServeConfigTest, EveryKeyIsKnownAndAppliesFromFlagsToo) {
  ServeFlags flags{.servers = {"a:1", "b:2"},
                   .labels = {"x,y", "z"},
                   .kill_signal = "HUP",
                   .kill_grace = "5s",
                   .once = true};
  auto c = LoadServeConfig(flags);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->servers.size(), 2u);
  EXPECT_THAT(c->node.labels, ElementsAre("x", "y", "z"));
  EXPECT_EQ(c->kill.signal, SIGHUP);
  EXPECT_TRUE(c->once);
}

std::string ConfigError(const std::string& yaml) {
  testing::TempDir dir;
  auto file = dir.Write("node.yaml", yaml);
  auto c = LoadServeConfig({.config_file = file});
  EXPECT_FALSE(c) << yaml;
  if (c) return "";
  // Strip the temporary directory for stable comparisons.
  std::string e = c.error();
  return e.substr(e.find("node.yaml"));
}

TEST(ServeConfigTest, FileErrorsNameSettingLineAndColumn) {
  EXPECT_EQ(ConfigError("executor: 4\n"),
            "node.yaml:1:1: unknown setting 'executor'; did you mean 'executors'?");
  EXPECT_EQ(ConfigError("node: a\nexecutors: many\n"),
            "node.yaml:2:12: executors: expected a whole number from 1 to 256, got 'many'");
  EXPECT_EQ(ConfigError("servers: ['gear1:99999']\n"),
            "node.yaml:1:10: servers: 'gear1:99999': the port must be 1 to 65535");
  EXPECT_EQ(ConfigError("node: 'a b'\n").substr(0, 24), "node.yaml:1:7: node: 'a ");
  EXPECT_EQ(ConfigError("limits: {files: 1}\n"),
            "node.yaml:1:9: limits: unknown limit 'files' (known: core, nofile, nproc, as)");
  EXPECT_EQ(ConfigError("kill: {signal: NOPE}\n"),
            "node.yaml:1:7: kill: signal: unknown signal 'NOPE' (such as TERM, INT, KILL)");
  EXPECT_EQ(ConfigError("node: a\nnode: b\n"), "node.yaml:2:1: node: given twice");
  EXPECT_EQ(ConfigError("labels: {a: b}\n"),
            "node.yaml:1:9: labels: expected a value or a list of values");
  EXPECT_EQ(ConfigError("log_format: xml\n"),
            "node.yaml:1:13: log_format: expected text or json, got 'xml'");
  EXPECT_EQ(ConfigError("- a\n"),
            "node.yaml:1:1: expected a mapping of settings (servers, node, labels, ...)");
  EXPECT_THAT(ConfigError("node: [a\n"), HasSubstr("invalid YAML"));
}

TEST(ServeConfigTest, FlagErrorsNameTheFlag) {
  EXPECT_EQ(LoadServeConfig({.executors = "0"}).error(),
            "--executors: expected a whole number from 1 to 256, got '0'");
  EXPECT_EQ(LoadServeConfig({.labels = {"a&b"}}).error(),
            "--labels: 'a&b' is not a usable label (no spaces or & | ! ( ) < > \")");
  EXPECT_EQ(LoadServeConfig({.drain_timeout = "soon"}).error().substr(0, 27),
            "--drain-timeout: expected a");
  EXPECT_EQ(LoadServeConfig({.config_file = "/nonexistent.yaml"}).error(),
            "/nonexistent.yaml: cannot read the configuration file");
}

TEST(ServeConfigTest, JobsFromGit) {
  testing::TempDir dir;
  auto file = dir.Write("node.yaml", R"(
jobs: {git: "https://git.example.org/ci/jobs.git", ref: main, path: jobs/, poll: 5m}
)");
  auto c = LoadServeConfig({.config_file = file});
  ASSERT_TRUE(c) << c.error();
  ASSERT_TRUE(c->jobs_git);
  EXPECT_EQ(c->jobs_git->url, "https://git.example.org/ci/jobs.git");
  EXPECT_EQ(c->jobs_git->ref, "main");
  EXPECT_EQ(c->jobs_git->path, "jobs");  // written jobs/
  EXPECT_EQ(c->jobs_git->poll, std::chrono::minutes(5));

  // Flags change parts of it; --jobs (a local folder) replaces it.
  auto flags = LoadServeConfig(
      {.config_file = file, .jobs_ref = "stable", .jobs_path = "./", .jobs_poll = "0"});
  ASSERT_TRUE(flags) << flags.error();
  EXPECT_EQ(flags->jobs_git->url, "https://git.example.org/ci/jobs.git");
  EXPECT_EQ(flags->jobs_git->ref, "stable");
  EXPECT_EQ(flags->jobs_git->path, "");
  EXPECT_EQ(flags->jobs_git->poll, std::chrono::milliseconds(0));
  auto local = LoadServeConfig({.config_file = file, .jobs = "/srv/jobs"});
  ASSERT_TRUE(local) << local.error();
  EXPECT_FALSE(local->jobs_git);
  EXPECT_EQ(local->jobs, "/srv/jobs");

  // Defaults: the remote's default branch, the whole repository, every minute.
  auto defaults = LoadServeConfig({.jobs_git = "file:///srv/jobs.git"});
  ASSERT_TRUE(defaults) << defaults.error();
  EXPECT_EQ(defaults->jobs_git->ref, "");
  EXPECT_EQ(defaults->jobs_git->path, "");
  EXPECT_EQ(defaults->jobs_git->poll, std::chrono::seconds(60));
}

TEST(ServeConfigTest, JobsFromGitErrors) {
  EXPECT_EQ(ConfigError("jobs: {ref: main}\n"),
            "node.yaml:1:7: jobs: no repository: give jobs: {git: URL, ...} in the configuration "
            "file or --jobs-git URL (a plain path means a local folder)");
  EXPECT_EQ(ConfigError("jobs: {git: x, branch: main}\n"),
            "node.yaml:1:7: jobs: unknown key 'branch' (known: git, ref, path, poll)");
  EXPECT_EQ(ConfigError("jobs: {git: x, path: ../up}\n"),
            "node.yaml:1:7: jobs: path: '../up' must be relative to the repository's top folder");
  EXPECT_THAT(ConfigError("jobs: {git: x, poll: often}\n"),
              HasSubstr("node.yaml:1:7: jobs: poll: expected a duration"));
  EXPECT_EQ(ConfigError("jobs: [a, b]\n"),
            "node.yaml:1:7: jobs: expected a single value or a mapping");
  EXPECT_THAT(LoadServeConfig({.jobs_ref = "main"}).error(),
              HasSubstr("--jobs-ref: no repository"));
  EXPECT_THAT(LoadServeConfig({.jobs = "/a", .jobs_git = "file:///b"}).error(),
              HasSubstr("give one"));
}

TEST(StateLockTest, SecondHolderIsRefusedWithThePid) {
  testing::TempDir dir;
  auto first = StateLock::Acquire(dir.path() / "state");
  ASSERT_TRUE(first) << first.error();
  // Another process (flock is per open file description; a child has its own).
  pid_t child = ::fork();
  if (child == 0) {
    auto second = StateLock::Acquire(dir.path() / "state");
    bool refused = !second && second.error().find("another gearrun (pid " +
                                                  std::to_string(::getppid()) + ")") == 0;
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(StateLockTest, ReleasedWhenTheHolderGoes) {
  testing::TempDir dir;
  {
    auto first = StateLock::Acquire(dir.path());
    ASSERT_TRUE(first);
  }
  EXPECT_TRUE(StateLock::Acquire(dir.path()));
}

}  // namespace
}  // namespace gearrun::runner
