// The node examples ship with gearrun and are what operators copy: the node configurations
// under examples/nodes must load, and the systemd unit, the cloud-init user data and the
// Dockerfile must keep the settings that make draining, reloading, containment and --once
// work (examples/jobs is checked by tests/jobs/examples_test.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "jobs/duration.h"
#include "jobs/functions.h"
#include "jobs/labels.h"
#include "jobs/loader.h"
#include "runner/config.h"
#include "tests/support/command.h"

namespace gearrun::runner {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const fs::path kExamples = fs::path(GEARRUN_SOURCE_DIR) / "examples";

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::size_t Indent(std::string_view line) {
  return std::min(line.find_first_not_of(' '), line.size());
}

bool IsBlank(std::string_view line) { return Indent(line) == line.size(); }

// The value of `key=` in a unit file (the last one given, as systemd reads it), or
// "(not set)". Comment lines do not count.
std::string UnitValue(const std::string& unit, std::string_view key) {
  std::string value = "(not set)";
  for (const auto& line : Lines(unit)) {
    std::string_view l(line);
    l.remove_prefix(Indent(l));
    if (l.starts_with(key) && l.substr(key.size()).starts_with("=")) {
      value = std::string(l.substr(key.size() + 1));
    }
  }
  return value;
}

// The content of the cloud-init write_files entry for `path`, written as a literal block
// (`content: |`), with the block's indentation removed; nullopt when there is none.
std::optional<std::string> WriteFilesContent(const std::string& user_data, std::string_view path) {
  auto lines = Lines(user_data);
  const std::string path_line = "path: " + std::string(path);
  auto entry = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) {
    std::string_view s(l);
    s.remove_prefix(Indent(s));
    if (s.starts_with("- ")) s.remove_prefix(2);
    return s == path_line;
  });
  if (entry == lines.end()) return std::nullopt;
  // The entry's other keys are indented like `path:` (past the list item's "- ").
  std::size_t key_indent = Indent(*entry) + (entry->find("- ") == Indent(*entry) ? 2 : 0);
  auto content = std::find_if(entry + 1, lines.end(), [&](const std::string& l) {
    return !IsBlank(l) && (Indent(l) < key_indent || l.substr(key_indent) == "content: |");
  });
  if (content == lines.end() || Indent(*content) != key_indent) return std::nullopt;
  std::vector<std::string> block;
  std::size_t block_indent = 0;
  for (auto it = content + 1; it != lines.end(); ++it) {
    if (IsBlank(*it)) {
      block.emplace_back();
      continue;
    }
    if (Indent(*it) <= key_indent) break;
    if (block_indent == 0) block_indent = Indent(*it);
    if (Indent(*it) < block_indent) return std::nullopt;  // not a valid literal block
    block.push_back(it->substr(block_indent));
  }
  while (!block.empty() && block.back().empty()) block.pop_back();  // `|` clips at the end
  std::string text;
  for (const auto& l : block) text += l + "\n";
  return text;
}

ServeConfig LoadExample(const std::string& name) {
  auto config = LoadServeConfig({.config_file = kExamples / "nodes" / name});
  EXPECT_TRUE(config) << config.error();
  return config.value_or(ServeConfig{});
}

jobs::Duration UnitDuration(const std::string& unit, std::string_view key) {
  std::string text = UnitValue(unit, key);
  // Written so that both systemd and gearrun read it the same ("45m", "1h").
  auto d = jobs::ParseDuration(text);
  EXPECT_TRUE(d) << key << "=" << text << ": " << d.error();
  return d.value_or(jobs::Duration{});
}

TEST(ExamplesTest, EveryNodeConfigLoads) {
  int loaded = 0;
  for (const auto& entry : fs::directory_iterator(kExamples / "nodes")) {
    SCOPED_TRACE(entry.path().string());
    auto config = LoadServeConfig({.config_file = entry.path()});
    ASSERT_TRUE(config) << config.error();
    EXPECT_TRUE(config->servers_configured) << "an example names its Gearman servers";
    ++loaded;
  }
  EXPECT_GE(loaded, 3);
}

TEST(ExamplesTest, NodeConfigsFitTheirWayOfRunning) {
  ServeConfig farm = LoadExample("farm.yaml");
  EXPECT_FALSE(farm.once);
  EXPECT_GT(farm.executors, 1);
  EXPECT_TRUE(farm.drain_timeout) << "systemctl stop must not wait forever";
  EXPECT_EQ(farm.jobs, "/etc/gearrun/jobs");

  ServeConfig from_git = LoadExample("jobs-from-git.yaml");
  ASSERT_TRUE(from_git.jobs_git);
  EXPECT_EQ(from_git.jobs_git->ref, "main");
  EXPECT_EQ(from_git.jobs_git->path, "jobs");

  ServeConfig cloud = LoadExample("cloud.yaml");
  EXPECT_TRUE(cloud.once);
  EXPECT_EQ(cloud.executors, 1);

  ServeConfig container = LoadExample("container.yaml");
  EXPECT_TRUE(container.once);
  EXPECT_EQ(container.executors, 1);
  // No cgroup can be made in an unprivileged container.
  EXPECT_EQ(container.node.containment, sandbox::ContainmentMode::kProcessGroup);
  // Limits belong to the container; one above its own would keep every step from starting.
  EXPECT_FALSE(container.node.limits.open_files);
}

TEST(ExamplesTest, SystemdUnitDrainsReloadsAndDelegates) {
  std::string unit = testing::ReadFile(kExamples / "systemd/gearrun.service");
  ASSERT_THAT(unit, Not(IsEmpty()));
  EXPECT_EQ(UnitValue(unit, "ExecStart"),
            "/usr/local/bin/gearrun serve --config /etc/gearrun/node.yaml");
  EXPECT_EQ(UnitValue(unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
  EXPECT_EQ(UnitValue(unit, "Delegate"), "yes");
  EXPECT_EQ(UnitValue(unit, "KillMode"), "mixed");
  EXPECT_EQ(UnitValue(unit, "RestartPreventExitStatus"), "2");

  ServeConfig farm = LoadExample("farm.yaml");
  ASSERT_TRUE(farm.drain_timeout);
  EXPECT_GT(UnitDuration(unit, "TimeoutStopSec"), *farm.drain_timeout)
      << "systemd would SIGKILL builds before the drain timeout aborts them";
  auto nofile = ParseSize(UnitValue(unit, "LimitNOFILE"));
  ASSERT_TRUE(nofile) << "LimitNOFILE=" << UnitValue(unit, "LimitNOFILE");
  ASSERT_TRUE(farm.node.limits.open_files);
  EXPECT_LE(*farm.node.limits.open_files, *nofile)
      << "a step cannot get more open files than gearrun has";
}

TEST(ExamplesTest, CloudInitWritesTheCloudConfigAndPowersOffAfterOneBuild) {
  std::string user_data = testing::ReadFile(kExamples / "cloud-init/user-data.yaml");
  ASSERT_TRUE(user_data.starts_with("#cloud-config\n")) << "cloud-init ignores it otherwise";

  auto node = WriteFilesContent(user_data, "/etc/gearrun/node.yaml");
  ASSERT_TRUE(node) << "no write_files entry with `content: |` for /etc/gearrun/node.yaml";
  EXPECT_EQ(*node, testing::ReadFile(kExamples / "nodes/cloud.yaml"))
      << "keep the user data's node.yaml the same as examples/nodes/cloud.yaml";

  auto unit = WriteFilesContent(user_data, "/etc/systemd/system/gearrun-once.service");
  ASSERT_TRUE(unit);
  EXPECT_THAT(UnitValue(*unit, "ExecStart"),
              HasSubstr("gearrun serve --once --config /etc/gearrun/node.yaml"));
  EXPECT_EQ(UnitValue(*unit, "SuccessAction"), "poweroff");
  EXPECT_EQ(UnitValue(*unit, "FailureAction"), "poweroff");
  EXPECT_EQ(UnitValue(*unit, "Delegate"), "yes");
  EXPECT_EQ(UnitValue(*unit, "KillMode"), "mixed");
  ServeConfig cloud = LoadExample("cloud.yaml");
  ASSERT_TRUE(cloud.drain_timeout);
  EXPECT_GT(UnitDuration(*unit, "TimeoutStopSec"), *cloud.drain_timeout);
  EXPECT_THAT(user_data, HasSubstr("[systemctl, start, --no-block, gearrun-once.service]"));
}

TEST(ExamplesTest, CloudInitJobRunsOnTheCloudNode) {
  std::string user_data = testing::ReadFile(kExamples / "cloud-init/user-data.yaml");
  auto job = WriteFilesContent(user_data, "/etc/gearrun/jobs/unit-tests.yaml");
  ASSERT_TRUE(job);
  testing::TempDir dir;
  auto report = jobs::LoadJobs({dir.Write("unit-tests.yaml", *job)});
  for (const auto& e : report.errors) ADD_FAILURE() << e.ToString();
  ServeConfig cloud = LoadExample("cloud.yaml");
  // A --once node that registers nothing would wait forever.
  EXPECT_THAT(jobs::FunctionNames(report.jobs, jobs::MakeNodeLabels("vm-1", cloud.node.labels)),
              Not(IsEmpty()));
}

TEST(ExamplesTest, ContainerEntrypointServesOnceWithTheContainerConfig) {
  std::string dockerfile = testing::ReadFile(kExamples / "container/Dockerfile");
  auto lines = Lines(dockerfile);
  auto entrypoint = std::find_if(lines.begin(), lines.end(),
                                 [](const std::string& l) { return l.starts_with("ENTRYPOINT "); });
  ASSERT_NE(entrypoint, lines.end());
  EXPECT_EQ(*entrypoint, R"(ENTRYPOINT ["/usr/local/bin/gearrun", "serve", "--once", "--config", )"
                         R"("/etc/gearrun/node.yaml"])");
  EXPECT_THAT(dockerfile,
              HasSubstr("\nCOPY examples/nodes/container.yaml /etc/gearrun/node.yaml\n"));
  EXPECT_THAT(dockerfile, HasSubstr("\nCOPY examples/jobs /etc/gearrun/jobs\n"));

  // What the build stage and the image copy from the checkout must be in the build context.
  std::string ignore = testing::ReadFile(kExamples / "container/Dockerfile.dockerignore");
  auto kept = Lines(ignore);
  for (const auto& line : lines) {
    if (!line.starts_with("COPY ") || line.starts_with("COPY --")) continue;
    std::istringstream words(line.substr(5));
    std::vector<std::string> args{std::istream_iterator<std::string>(words), {}};
    for (std::size_t i = 0; i + 1 < args.size(); ++i) {
      EXPECT_THAT(kept, Contains("!" + args[i]))
          << args[i] << " is copied but Dockerfile.dockerignore leaves it out";
    }
  }

  // The container node registers example jobs with its labels.
  auto report = jobs::LoadJobs({kExamples / "jobs"});
  ServeConfig container = LoadExample("container.yaml");
  EXPECT_THAT(
      jobs::FunctionNames(report.jobs, jobs::MakeNodeLabels("0123456789ab", container.node.labels)),
      Not(IsEmpty()));
}

}  // namespace
}  // namespace gearrun::runner
