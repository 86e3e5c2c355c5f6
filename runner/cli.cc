// The CLI11 adapter: the only file that sees CLI11 types.
#include "runner/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <climits>

#include "jobs/labels.h"
#include "runner/check_command.h"
#include "runner/client_commands.h"
#include "runner/config.h"
#include "runner/run_command.h"
#include "runner/serve_command.h"
#include "sandbox/supervisor.h"

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
      "the Gearman plugin does. SIGHUP reloads the job files (with --jobs-git: fetches now); "
      "SIGTERM drains (a second one "
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
  serve_cmd->add_option("--jobs-git", serve.jobs_git,
                        "Take the job files from this git repository instead (fetched into the "
                        "state directory, followed as it changes; docs/jobs-from-git.md)");
  serve_cmd->add_option("--jobs-ref", serve.jobs_ref,
                        "With --jobs-git: the branch, tag or commit to follow; default the "
                        "repository's default branch");
  serve_cmd->add_option("--jobs-path", serve.jobs_path,
                        "With --jobs-git: the folder of job files inside the repository; "
                        "default all of it");
  serve_cmd->add_option("--jobs-poll", serve.jobs_poll,
                        "With --jobs-git: how often to fetch, e.g. 60s (the default); 0 only on "
                        "SIGHUP");
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

  auto add_servers = [](CLI::App& cmd, ClientFlags& f) {
    cmd.add_option("--server", f.servers,
                   std::string("A Gearman server, HOST[:PORT]; repeatable; default $") +
                       std::string(kServersVariable) + ", else 127.0.0.1:4730")
        ->allow_extra_args(false);
  };
  SubmitOptions submit;
  auto* submit_cmd = app.add_subcommand(
      "submit",
      "Submit a build of JOB (function build:JOB, or build:JOB:LABEL) and follow it to its "
      "end. Exit 0 SUCCESS, 1 FAILURE or UNSTABLE, 2 usage or unknown function, 3 ABORTED, "
      "4 the request failed (no server, WORK_FAIL, exception, timeout).");
  submit_cmd->add_option("job", submit.job, "The job's name")->required();
  submit_cmd->add_option("-p,--param", submit.parameters, "A parameter, KEY=VALUE; repeatable")
      ->allow_extra_args(false);
  submit_cmd->add_option("--label", submit.label,
                         "Run on a node with this label (submits build:JOB:LABEL)");
  submit_cmd->add_option("--unique", submit.unique,
                         "The Gearman unique id (requests with the same one are merged)");
  submit_cmd->add_flag("--background", submit.background,
                       "Queue the build and print its job handle instead of following it");
  submit_cmd->add_option("--priority", submit.priority, "high, normal or low; default normal");
  submit_cmd->add_option("--timeout", submit.timeout,
                         "Give up waiting for the result after this long, e.g. 30m (the build "
                         "goes on); default no limit");
  submit_cmd->add_flag("--json", submit.json,
                       "Print only the final payload (JSON), or {\"error\": ...}");
  submit_cmd->add_flag("--queue-anyway", submit.queue_anyway,
                       "Submit even when no server knows the function yet");
  add_servers(*submit_cmd, submit.client);

  // NODE JOB NUMBER: which build a stop or describe is about.
  auto add_build = [&](CLI::App& cmd, BuildCommandOptions& o) {
    cmd.add_option("node", o.node, "The node that runs or ran it (the payload's manager)")
        ->required();
    cmd.add_option("job", o.job, "The job's name")->required();
    cmd.add_option("number", o.number, "The build number")->required();
    add_servers(cmd, o.client);
  };
  BuildCommandOptions stop;
  auto* stop_cmd = app.add_subcommand(
      "stop",
      "Stop a running build (stop:NODE): its kill ladder runs, then its finally steps; it ends "
      "ABORTED. Exit 0 stopping, 1 not running or not found, 2 usage or no such node, 4 no "
      "server.");
  add_build(*stop_cmd, stop);

  BuildCommandOptions describe;
  auto* describe_cmd = app.add_subcommand(
      "describe",
      "Set the description of a running or finished build (set_description:NODE). Exit 0 "
      "set, 1 not found, 2 usage or no such node, 4 no server.");
  add_build(*describe_cmd, describe);
  describe_cmd->add_option("text", describe.text, "The description (HTML)")->required();

  StatusOptions status;
  auto* status_cmd = app.add_subcommand(
      "status",
      "The cluster at a glance: per server, each function's queued, running and workers, and "
      "each node's executors and manager. Exit 0, or 4 when a server did not answer.");
  status_cmd->add_flag("--json", status.json, "Print JSON instead of tables");
  add_servers(*status_cmd, status.client);

  CancelOptions cancel;
  auto* cancel_cmd = app.add_subcommand(
      "cancel",
      "Cancel a request still waiting in a server's queue (a running build: use stop). Exit 0 "
      "cancelled, 4 no server answered.");
  cancel_cmd->add_option("handle", cancel.handle, "The job handle (submit prints it)")->required();
  add_servers(*cancel_cmd, cancel.client);

  // Internal: started by `run` and `serve` (sandbox/supervisor.h); not in --help.
  auto* supervise_cmd =
      app.add_subcommand("supervise",
                         "Ends the builds of the runner that started it, should it die")
          ->group("");

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
  if (submit_cmd->parsed()) return RunSubmit(submit, out, err);
  if (stop_cmd->parsed()) return RunStop(stop, out, err);
  if (describe_cmd->parsed()) return RunDescribe(describe, out, err);
  if (status_cmd->parsed()) return RunStatus(status, out, err);
  if (cancel_cmd->parsed()) return RunCancel(cancel, out, err);
  if (supervise_cmd->parsed()) return sandbox::RunSupervisor(STDIN_FILENO);
  err << app.help();
  return kExitUsage;
}

}  // namespace gearrun::runner
