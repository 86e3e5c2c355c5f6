// The CLI11 adapter: the only file that sees CLI11 types.
#include "runner/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <climits>

#include "jobs/labels.h"
#include "runner/check_command.h"
#include "runner/config.h"
#include "runner/run_command.h"
#include "runner/serve_command.h"

namespace gearrun::runner {
namespace {

std::vector<std::string> SplitAll(const std::vector<std::string>& lists) {
  std::vector<std::string> out;
  for (const auto& l : lists) {
    auto parts = jobs::SplitLabelList(l);
    out.insert(out.end(), parts.begin(), parts.end());
  }
  return out;
}

// The node and build settings `gearrun run` and `gearrun serve` share; see runner/config.h.
void AddBuildOptions(CLI::App& cmd, ServeFlags& f) {
  cmd.add_option("--config", f.config_file, "A node configuration file (YAML); flags win");
  cmd.add_option("--node", f.node, "Node name (a label of its own); default this host's name");
  cmd.add_option("--labels", f.labels, "The node's labels, comma or space separated; repeatable")
      ->allow_extra_args(false);
  cmd.add_option("--state-dir", f.state_dir,
                 "Where build records, logs and workspaces go; default /var/lib/gearrun for "
                 "root, else ~/.local/state/gearrun");
  cmd.add_option("--workspace-root", f.workspace_root,
                 "Where workspaces go; default STATE_DIR/workspace");
  cmd.add_option("--pass-through", f.pass_through,
                 "Pattern of undeclared parameters passed on to builds (default ZUUL_*, "
                 "BASE_LOG_PATH, LOG_PATH, OFFLINE_NODE_WHEN_COMPLETE); repeatable")
      ->allow_extra_args(false);
  cmd.add_option("--containment", f.containment,
                 "How a build's processes are kept together: auto (cgroup when possible), "
                 "cgroup, process-group");
  cmd.add_option("--limit", f.limits,
                 "A limit for every process of a step: core=SIZE, nofile=N, nproc=N, as=SIZE "
                 "(address space); repeatable")
      ->allow_extra_args(false);
  cmd.add_option("--memory-max", f.memory_max,
                 "Memory limit for a whole build (cgroup memory.max, or v1 "
                 "memory.limit_in_bytes), e.g. 2G; applied where cgroups allow");
  cmd.add_option("--pids-max", f.pids_max,
                 "Process limit for a whole build (cgroup pids.max); applied where cgroups "
                 "allow");
  cmd.add_option("--kill-signal", f.kill_signal,
                 "Kill ladder signal for jobs that set no kill: (TERM, INT, ...); default TERM");
  cmd.add_option("--kill-grace", f.kill_grace,
                 "Kill ladder grace for jobs that set none, e.g. 30s; default 10s");
  cmd.add_option("--log-cap", f.log_cap,
                 "Keep at most this much step output per build log (256M, 1G; 0: no cap); "
                 "default 256M");
}

}  // namespace

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{
      "gearrun: a build-node runner that serves builds to Gearman clients (Zuul, gear) the "
      "way the Jenkins Gearman plugin does, without a Jenkins master.",
      "gearrun"};
  app.set_version_flag("--version", std::string("gearrun ") + GEARRUN_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 success, 1 the checked or built thing failed, 2 usage error.\n"
      "Run 'gearrun COMMAND --help' for a command's options.");

  CheckOptions check;
  std::vector<std::string> check_labels;
  check.node = HostName();
  auto* check_cmd = app.add_subcommand(
      "check",
      "Validate job files and print the Gearman functions each job would register on a node. "
      "Exit 0 when all are valid, 1 listing every error when not.");
  check_cmd->add_option("paths", check.paths,
                        std::string("Job files or directories (searched recursively for *.yaml "
                                    "and *.yml); default ") +
                            kDefaultJobsDir);
  check_cmd->add_option("--node", check.node, "Node name (a label of its own)")
      ->capture_default_str();
  // One argument per --labels, so that `--labels a,b jobs/` keeps jobs/ as a path.
  check_cmd
      ->add_option("--labels", check_labels,
                   "The node's labels, comma or space separated; repeatable")
      ->allow_extra_args(false);

  RunOptions run;
  auto* run_cmd = app.add_subcommand(
      "run",
      "Run one job on this machine, as a served build would run, with the log on the terminal. "
      "Ctrl-C stops it (finally steps still run; a second Ctrl-C stops them too). Exit 0 "
      "SUCCESS, 1 FAILURE, UNSTABLE or not started, 2 usage or invalid job, 3 ABORTED.");
  run_cmd->add_option("job", run.target, "A job file, or the name of a job in --jobs")->required();
  run_cmd->add_option("--jobs", run.jobs,
                      std::string("Job file or directory to find JOB in; default the "
                                  "configuration's, else ") +
                          kDefaultJobsDir);
  run_cmd->add_option("-p,--param", run.parameters, "A parameter, KEY=VALUE; repeatable")
      ->allow_extra_args(false);
  AddBuildOptions(*run_cmd, run.node);

  ServeFlags serve;
  auto* serve_cmd = app.add_subcommand(
      "serve",
      "Serve builds to Gearman clients (Zuul, gear, gearrun submit) the way a Jenkins node with "
      "the Gearman plugin does. SIGHUP reloads the job files; SIGTERM drains (a second one "
      "aborts running builds). Exit 0 when stopped; with --once 0 when the build succeeded, "
      "1 when not; 2 invalid configuration.");
  serve_cmd
      ->add_option("--server", serve.servers,
                   "A Gearman server, HOST[:PORT] (default port 4730); repeatable: every "
                   "executor connects to every server; default 127.0.0.1:4730")
      ->allow_extra_args(false);
  serve_cmd->add_option("--executors", serve.executors,
                        "How many builds may run at once; default the number of CPUs");
  serve_cmd->add_option(
      "--jobs", serve.jobs,
      std::string("Job file or directory (searched for *.yaml, *.yml); default ") +
          kDefaultJobsDir);
  serve_cmd->add_option("--drain-timeout", serve.drain_timeout,
                        "On SIGTERM, how long running builds may take before they are aborted, "
                        "e.g. 30m; default no limit");
  serve_cmd->add_flag("--once", serve.once,
                      "Take exactly one build (as if it carried OFFLINE_NODE_WHEN_COMPLETE), "
                      "send its result, and exit with 0 for SUCCESS, 1 otherwise");
  serve_cmd->add_option("--log-level", serve.log_level,
                        "Daemon log level: trace, debug, info, warn, error; default info");
  serve_cmd->add_option("--log-format", serve.log_format,
                        "Daemon log format on standard error: text or json; default text");
  AddBuildOptions(*serve_cmd, serve);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e, out, err);
    return code == 0 ? kExitOk : kExitUsage;
  }

  if (check_cmd->parsed()) {
    check.labels = SplitAll(check_labels);
    return RunCheck(check, out, err);
  }
  if (run_cmd->parsed()) return RunRun(run, out, err);
  if (serve_cmd->parsed()) return RunServe(serve, out, err);
  err << app.help();
  return kExitUsage;
}

}  // namespace gearrun::runner
