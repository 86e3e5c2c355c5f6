// JobSpec: one job definition as loaded from a job file, fully validated and with every
// default applied, so that the code running builds never re-checks or re-defaults anything.
//
// Plain value types; thread-compatible. A loaded JobSpec is immutable by convention and is
// shared read-only between builds.
#pragma once

#include <chrono>
#include <csignal>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "jobs/duration.h"
#include "jobs/labels.h"

namespace gearrun::jobs {

// Ordered so that a step's environment and the build log list variables stably.
using EnvMap = std::map<std::string, std::string, std::less<>>;

// Where something was defined, for messages ("guava.yaml:12").
struct SourceLocation {
  std::string file;
  int line = 0;  // 1-based
};

struct KillSpec {
  int signal = SIGTERM;
  Duration grace = std::chrono::seconds(10);
};

struct ParameterSpec {
  std::string name;
  std::optional<std::string> default_value;
  std::string description;
  bool required = false;             // must be given with a non-empty value
  std::vector<std::string> choices;  // empty: any value
  bool secret = false;               // masked in logs, never put in payloads
};

struct StepSpec {
  std::string name;                 // "step N" / "finally N" when the file gives none (N from 1)
  std::string run;                  // the script, passed as the last argument of `shell`
  std::optional<Duration> timeout;  // per attempt
  int retries = 0;                  // extra attempts after a failed one
  Duration retry_delay{0};          // before the first retry; doubled for each further one
  std::vector<int> retry_on;        // exit codes that are retried; empty: any failure
  bool retry_on_timeout = false;
  bool continue_on_error = false;  // a failure makes the build UNSTABLE and the build goes on
  EnvMap env;                      // the job's env with the step's merged over it
  std::string dir;                 // relative to the workspace, normalised; "" = the workspace
  std::vector<std::string> shell;  // the step's own, else the job's
  KillSpec kill;                   // the step's own, else the job's
  SourceLocation location;
};

inline const std::vector<std::string>& DefaultShell() {
  static const std::vector<std::string> shell = {"bash", "-e", "-o", "pipefail", "-c"};
  return shell;
}

// What a build checks out into its workspace before its first step (`checkout:`).
struct CheckoutSpec {
  std::string url;           // may use ${NAME} of the build's parameters
  std::string ref;           // branch, tag, full ref or commit id; ${NAME} too; "" = HEAD
  std::string path = "src";  // relative to the workspace, normalised
  int depth = 0;             // 0: full history
  bool submodules = false;
  SourceLocation location;
};

struct JobSpec {
  std::string name;
  std::string description;
  std::optional<LabelExpr> node;          // absent: any node
  std::vector<ParameterSpec> parameters;  // in file order
  EnvMap env;
  std::optional<Duration> timeout;  // whole build, finally steps excluded
  bool clean_workspace = false;
  std::optional<CheckoutSpec> checkout;
  std::vector<std::string> shell = DefaultShell();
  KillSpec kill;
  std::vector<StepSpec> steps;    // never empty
  std::vector<StepSpec> finally;  // may be empty
  SourceLocation location;        // where the job's document starts

  [[nodiscard]] const ParameterSpec* FindParameter(std::string_view parameter) const;
};

// Environment names that only the runner sets ("BUILD_NUMBER", "WORKSPACE", ...).
[[nodiscard]] const std::vector<std::string>& RunnerVariables();

// Whether a build request may never set `name` (PATH, IFS, LD_*, the runner's own
// variables, ...). Such names may not be declared as parameters either.
[[nodiscard]] bool IsForbiddenRequestName(std::string_view name);

// [A-Za-z_][A-Za-z0-9_]*
[[nodiscard]] bool IsValidVariableName(std::string_view name);

inline constexpr std::size_t kMaxJobNameLength = 100;

// The longest string one argument or one NAME=value of a step can be: Linux's MAX_ARG_STRLEN
// (32 pages) less the terminating NUL; execve() fails with E2BIG for a longer one. The loader
// refuses longer scripts, env values and defaults, and a request longer values.
inline constexpr std::size_t kMaxVariableBytes = 32 * 4096 - 1;

// Why `name` cannot be a job name, or empty when it can: 1 to kMaxJobNameLength letters,
// digits, '.', '_' and '-', not "." or "..". A job name becomes a Gearman function name and a
// directory name, so a name from outside (a stop: request) is checked with this before any
// file is touched.
[[nodiscard]] std::string JobNameProblem(std::string_view name);

// Signal names as job files write them ("TERM", "SIGTERM", "9"); nullopt when unknown.
[[nodiscard]] std::optional<int> ParseSignal(std::string_view text);
// "TERM" for SIGTERM; the number as text for a signal without a name here.
[[nodiscard]] std::string SignalName(int signal);

}  // namespace gearrun::jobs
