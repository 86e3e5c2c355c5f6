// Node configuration for `gearrun serve` (and the build settings of `gearrun run`):
// defaults, then a YAML file (--config), then command-line flags; later ones win. Every setting is
// validated before anything starts; an error names the setting (and, for the file, its line and
// column).
//
//   ServeFlags flags = ...;                       // what the command line gave
//   auto config = LoadServeConfig(flags);         // reads flags.config_file if set
//   if (!config) { std::cerr << config.error(); return 2; }
//
// Pure apart from reading the file; thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "jobs/job_spec.h"
#include "jobs/request.h"
#include "runner/build_service.h"

namespace gearrun::runner {

struct ServerAddress {
  std::string host;
  int port = 4730;

  [[nodiscard]] std::string ToString() const;
  friend bool operator==(const ServerAddress&, const ServerAddress&) = default;
};

// "host", "host:port", "[v6]:port"; the default port is 4730.
[[nodiscard]] tl::expected<ServerAddress, std::string> ParseServerAddress(std::string_view text);

enum class LogFormat { kText, kJson };

// Job definitions from a git repository (`jobs: {git: URL, ref: main, path: jobs/, poll: 60s}`),
// followed by runner/git_jobs.h.
struct JobsFromGit {
  std::string url;             // anything libgit2 fetches from; may hold credentials
  std::string ref;             // branch, tag, ref or commit id; empty: the remote's HEAD
  std::filesystem::path path;  // the folder inside the repository, no trailing '/'; empty: all
  std::chrono::milliseconds poll{std::chrono::seconds(60)};  // 0: only on SIGHUP
};

struct ServeConfig {
  std::vector<ServerAddress> servers;  // never empty once loaded
  bool servers_configured = false;     // false: the default 127.0.0.1:4730 was used
  NodeSettings node;                   // name, labels, state dir, limits, log cap ...
  int executors = 1;
  std::filesystem::path jobs;           // a local file or folder, unless jobs_git
  std::optional<JobsFromGit> jobs_git;  // set: the jobs come from this repository
  jobs::RequestPolicy request_policy;
  jobs::KillSpec kill;                                     // for jobs that do not set `kill`
  std::optional<std::chrono::milliseconds> drain_timeout;  // nullopt: wait for builds
  bool once = false;
  std::string log_level = "info";  // trace, debug, info, warn, error
  LogFormat log_format = LogFormat::kText;
};

// What the command line said; unset fields leave the file's value or the default.
struct ServeFlags {
  std::optional<std::filesystem::path> config_file;
  std::vector<std::string> servers;
  std::optional<std::string> node;
  std::vector<std::string> labels;  // each may hold several, comma or space separated
  std::optional<std::string> executors;
  std::optional<std::string> jobs;
  std::optional<std::string> jobs_git;  // --jobs-git URL, --jobs-ref, --jobs-path, --jobs-poll
  std::optional<std::string> jobs_ref;
  std::optional<std::string> jobs_path;
  std::optional<std::string> jobs_poll;
  std::optional<std::string> state_dir;
  std::optional<std::string> workspace_root;
  std::vector<std::string> pass_through;
  std::optional<std::string> log_cap;
  std::vector<std::string> limits;  // "core=0", "nofile=4096", ...
  std::optional<std::string> memory_max;
  std::optional<std::string> pids_max;
  std::optional<std::string> containment;
  std::optional<std::string> kill_signal;
  std::optional<std::string> kill_grace;
  std::optional<std::string> drain_timeout;
  bool once = false;
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
};

// The default for --node: this host's name.
[[nodiscard]] std::string HostName();

// The default state directory: /var/lib/gearrun for root; otherwise $XDG_STATE_HOME/gearrun
// or ~/.local/state/gearrun.
[[nodiscard]] std::filesystem::path DefaultStateDir();

// "1024", "64K", "256M", "1G" (powers of 1024); nullopt when malformed.
[[nodiscard]] std::optional<std::uint64_t> ParseSize(std::string_view text);

// Errors are one line: "<file>:<line>:<column>: <setting>: <what is wrong>" or
// "--<flag>: <what is wrong>". Whether this process can apply the limits is for the
// commands to check (sandbox::CheckLimits): a file is valid for the machine it is meant for.
[[nodiscard]] tl::expected<ServeConfig, std::string> LoadServeConfig(const ServeFlags& flags);

}  // namespace gearrun::runner
