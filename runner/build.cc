#include "runner/build.h"

#include <algorithm>
#include <system_error>

namespace gearrun::runner {
namespace {

using Ms = std::chrono::milliseconds;
using TimePoint = Clock::TimePoint;

Ms Since(Clock& clock, TimePoint start) {
  return std::chrono::duration_cast<Ms>(clock.Now() - start);
}

std::optional<TimePoint> Earliest(std::optional<TimePoint> a, std::optional<TimePoint> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

std::string Plural(int n, std::string_view word) {
  std::string w(word);
  if (n != 1) w += w.ends_with("s") ? "es" : "s";
  return std::to_string(n) + " " + w;
}

// How one step (all its attempts) ended.
enum class StepEnd { kSuccess, kFailure, kStepTimeout, kJobTimeout, kStopped, kNotStarted };

struct StepRun {
  StepRecord record;
  StepEnd end = StepEnd::kSuccess;
  std::string detail;  // "exit code 2", "killed by signal KILL", "timed out after 10s", ...
};

std::string Describe(const sandbox::Outcome& o) {
  if (o.signal != 0) return "killed by signal " + jobs::SignalName(o.signal);
  return "exit code " + std::to_string(o.exit_code);
}

class BuildRun {
 public:
  BuildRun(const BuildPlan& plan, StepExecutor& executor, Clock& clock, BuildLog& log,
           BuildStopper& stopper)
      : plan_(plan),
        job_(*plan.job),
        executor_(executor),
        clock_(clock),
        log_(log),
        stopper_(stopper) {}

  BuildOutcome Run(BuildObserver* observer) {
    TimePoint start = clock_.Now();
    std::optional<TimePoint> build_deadline;
    if (job_.timeout) build_deadline = start + *job_.timeout;
    int total = static_cast<int>(job_.steps.size());
    bool ended = false;
    bool any_ran = false;

    for (int i = 0; i < total; ++i) {
      const jobs::StepSpec& step = job_.steps[static_cast<size_t>(i)];
      if (!ended && stopper_.stopping()) {
        Abort("stopped by " + stopper_.who());
        ended = true;
      }
      if (ended) {
        outcome_.steps.push_back(NotRun(step, false));
        continue;
      }
      StepRun run = RunStep(step, i, total, false, build_deadline, stopper_.steps_token());
      any_ran = any_ran || run.end != StepEnd::kNotStarted || run.record.attempts > 1;
      ended = Judge(step, run, any_ran);
      outcome_.steps.push_back(std::move(run.record));
      if (observer != nullptr) observer->StepFinished(i + 1, total);
    }

    int finally_total = static_cast<int>(job_.finally.size());
    // A build that could not start is run again elsewhere by the client: no cleanup with
    // side effects (uploads, notifications) may happen here for it.
    bool skip_finally = outcome_.result == Result::kNotBuilt;
    if (skip_finally && finally_total > 0) {
      log_.Line("finally steps skipped: the build could not start");
    }
    for (int i = 0; i < finally_total; ++i) {
      const jobs::StepSpec& step = job_.finally[static_cast<size_t>(i)];
      if (skip_finally || stopper_.finally_token().cancelled()) {
        outcome_.steps.push_back(NotRun(step, true));
        continue;
      }
      StepRun run = RunStep(step, i, finally_total, true, std::nullopt, stopper_.finally_token());
      JudgeFinally(step, run);
      outcome_.steps.push_back(std::move(run.record));
    }

    // A stop that came while the last steps or the finally steps ran still aborts.
    if (stopper_.stopping() && outcome_.result != Result::kNotBuilt) {
      Abort("stopped by " + stopper_.who());
    }

    auto killed = executor_.KillAll({.signal = job_.kill.signal, .grace = job_.kill.grace}, log_);
    if (!killed) {
      log_.Line("could not stop every process of the build: " + killed.error());
    } else if (*killed > 0) {
      outcome_.leftovers_killed = *killed;
      log_.Line("stopped " + Plural(*killed, "process") + " the build left running");
    }
    log_.Flush();
    log_.Line("build " + std::string(ToString(outcome_.result)) +
              (outcome_.reason.empty() ? "" : ": " + outcome_.reason) + " (" +
              HumanDuration(Since(clock_, start)) + ")");
    return std::move(outcome_);
  }

 private:
  StepRecord NotRun(const jobs::StepSpec& step, bool is_finally) {
    StepRecord r;
    r.name = step.name;
    r.is_finally = is_finally;
    r.result = StepResult::kNotRun;
    return r;
  }

  // Sets ABORTED unless the build already could not start; keeps the first reason.
  void Abort(std::string reason) {
    if (outcome_.result == Result::kAborted || outcome_.result == Result::kNotBuilt) return;
    outcome_.result = Result::kAborted;
    outcome_.reason = std::move(reason);
  }

  void Fail(std::string reason) {
    if (outcome_.result == Result::kSuccess || outcome_.result == Result::kUnstable) {
      outcome_.result = Result::kFailure;
      outcome_.reason = std::move(reason);
    }
  }

  void Unstable(std::string reason) {
    if (outcome_.result == Result::kSuccess) {
      outcome_.result = Result::kUnstable;
      outcome_.reason = std::move(reason);
    }
  }

  std::string StepName(const jobs::StepSpec& step, bool is_finally) {
    return std::string(is_finally ? "finally step '" : "step '") + step.name + "'";
  }

  // Applies a step's end to the build; returns whether the remaining steps are skipped.
  bool Judge(const jobs::StepSpec& step, const StepRun& run, bool any_ran) {
    std::string name = StepName(step, false);
    switch (run.end) {
      case StepEnd::kSuccess:
        return false;
      case StepEnd::kFailure:
        if (step.continue_on_error) {
          Unstable(name + " failed (" + run.detail + "); continue_on_error let the build go on");
          return false;
        }
        Fail(name + " failed: " + run.detail +
             (run.record.attempts > 1 ? " (" + Plural(run.record.attempts, "attempt") + ")" : ""));
        return true;
      case StepEnd::kStepTimeout:
        Abort(name + " timed out: " + run.detail);
        return true;
      case StepEnd::kJobTimeout:
        Abort("the job's timeout of " + HumanDuration(*job_.timeout) + " expired during " + name);
        return true;
      case StepEnd::kStopped:
        Abort("stopped by " + stopper_.who());
        return true;
      case StepEnd::kNotStarted:
        if (!any_ran) {
          outcome_.result = Result::kNotBuilt;
          outcome_.reason = name + " could not be started: " + run.record.error;
        } else {
          Fail(name + " could not be started: " + run.record.error);
        }
        return true;
    }
    return true;
  }

  void JudgeFinally(const jobs::StepSpec& step, const StepRun& run) {
    std::string name = StepName(step, true);
    switch (run.end) {
      case StepEnd::kSuccess:
        return;
      case StepEnd::kFailure:
        if (step.continue_on_error) {
          Unstable(name + " failed (" + run.detail + "); continue_on_error is set");
        } else {
          Fail(name + " failed: " + run.detail);
        }
        return;
      case StepEnd::kStepTimeout:
      case StepEnd::kJobTimeout:
        if (outcome_.result == Result::kSuccess || outcome_.result == Result::kUnstable) {
          Abort(name + " timed out: " + run.detail);
        }
        return;
      case StepEnd::kStopped:
        Abort("stopped by " + stopper_.who());
        return;
      case StepEnd::kNotStarted:
        Fail(name + " could not be started: " + run.record.error);
        return;
    }
  }

  StepRun RunStep(const jobs::StepSpec& step, int index, int total, bool is_finally,
                  std::optional<TimePoint> build_deadline, const sandbox::CancelToken& token) {
    StepRun run;
    run.record.name = step.name;
    run.record.is_finally = is_finally;
    TimePoint start = clock_.Now();
    Ms delay = step.retry_delay;
    int max_attempts = 1 + step.retries;
    std::string label = std::string(is_finally ? "finally step " : "step ") +
                        std::to_string(index + 1) + " of " + std::to_string(total) + " '" +
                        step.name + "'";

    Attempt attempt{.argv = step.shell,
                    .env = StepEnvironment(plan_, step),
                    .dir = step.dir.empty() ? plan_.workspace : plan_.workspace / step.dir,
                    .kill = {.signal = step.kill.signal, .grace = step.kill.grace}};
    attempt.argv.push_back(step.run);
    if (!step.dir.empty()) {
      // As Jenkins' dir(): a step's directory is made when it does not exist yet.
      std::error_code ec;
      std::filesystem::create_directories(attempt.dir, ec);
      if (ec) {
        run.end = StepEnd::kNotStarted;
        run.record.result = StepResult::kFailure;
        run.record.error =
            "cannot create its directory " + attempt.dir.string() + ": " + ec.message();
        run.detail = "could not be started: " + run.record.error;
        log_.Line(StepName(step, is_finally) + " FAILURE (" + run.detail + ")");
        return run;
      }
    }

    for (int n = 1; n <= max_attempts; ++n) {
      run.record.attempts = n;
      // The record describes the last attempt.
      run.record.exit_code = -1;
      run.record.signal = 0;
      run.record.timed_out = false;
      log_.Line(label + (max_attempts > 1 ? ", attempt " + std::to_string(n) + " of " +
                                                std::to_string(max_attempts)
                                          : ""));
      std::optional<TimePoint> step_deadline;
      if (step.timeout) step_deadline = clock_.Now() + *step.timeout;
      attempt.deadline = Earliest(step_deadline, build_deadline);

      auto outcome = executor_.Run(attempt, log_, token);
      if (!outcome) {
        run.end = StepEnd::kNotStarted;
        run.record.error = outcome.error();
        run.detail = "could not be started: " + outcome.error();
        break;
      }
      Account(run.record, *outcome);

      bool retryable = false;
      using Ending = sandbox::Outcome::Ending;
      switch (outcome->ending) {
        case Ending::kExited:
          if (outcome->exit_code == 0) {
            run.end = StepEnd::kSuccess;
          } else {
            run.end = StepEnd::kFailure;
            run.detail = Describe(*outcome);
            retryable = step.retry_on.empty() ||
                        std::find(step.retry_on.begin(), step.retry_on.end(), outcome->exit_code) !=
                            step.retry_on.end();
          }
          break;
        case Ending::kSignaled:
          run.end = StepEnd::kFailure;
          run.detail = Describe(*outcome);
          retryable = step.retry_on.empty();
          break;
        case Ending::kTimedOut:
          run.record.timed_out = true;
          if (build_deadline && (!step_deadline || *build_deadline <= *step_deadline)) {
            run.end = StepEnd::kJobTimeout;
            run.detail = "the job's timeout expired";
          } else {
            run.end = StepEnd::kStepTimeout;
            run.detail = "its timeout of " + HumanDuration(*step.timeout) + " expired" +
                         (n > 1 ? " on attempt " + std::to_string(n) : "");
            retryable = step.retry_on_timeout;
          }
          break;
        case Ending::kCancelled:
          run.end = StepEnd::kStopped;
          run.detail = "stopped by " + stopper_.who();
          break;
      }
      if (run.end == StepEnd::kSuccess || !retryable || n == max_attempts) break;

      log_.Line(label + " attempt " + std::to_string(n) + " failed (" + run.detail +
                "); retrying in " + HumanDuration(delay));
      TimePoint wake = clock_.Now() + delay;
      if (build_deadline && *build_deadline <= wake) {
        if (clock_.SleepUntil(*build_deadline, token.fd())) {
          run.end = StepEnd::kJobTimeout;
          run.detail = "the job's timeout expired";
          run.record.timed_out = true;
          break;
        }
        run.end = StepEnd::kStopped;
        run.detail = "stopped by " + stopper_.who();
        break;
      }
      if (!clock_.SleepUntil(wake, token.fd())) {
        run.end = StepEnd::kStopped;
        run.detail = "stopped by " + stopper_.who();
        break;
      }
      delay = std::min<Ms>(delay * 2, jobs::kMaxDuration);
    }

    run.record.duration_ms = Since(clock_, start).count();
    switch (run.end) {
      case StepEnd::kSuccess:
        run.record.result = StepResult::kSuccess;
        break;
      case StepEnd::kFailure:
      case StepEnd::kNotStarted:
        run.record.result = StepResult::kFailure;
        break;
      case StepEnd::kStepTimeout:
      case StepEnd::kJobTimeout:
      case StepEnd::kStopped:
        run.record.result = StepResult::kAborted;
        break;
    }
    std::string summary = std::string(ToString(run.record.result));
    if (run.end != StepEnd::kSuccess) summary += " (" + run.detail + ")";
    log_.Line(StepName(step, is_finally) + " " + summary + ", " +
              Plural(run.record.attempts, "attempt") + ", " +
              HumanDuration(Ms(run.record.duration_ms)));
    return run;
  }

  static void Account(StepRecord& record, const sandbox::Outcome& o) {
    record.exit_code = o.exit_code;
    record.signal = o.signal;
    record.cpu_ms += std::chrono::duration_cast<Ms>(o.cpu_time).count();
    record.peak_rss_bytes = std::max(record.peak_rss_bytes, o.peak_rss_bytes);
    record.leftovers_killed += o.leftovers_killed;
  }

  const BuildPlan& plan_;
  const jobs::JobSpec& job_;
  StepExecutor& executor_;
  Clock& clock_;
  BuildLog& log_;
  BuildStopper& stopper_;
  BuildOutcome outcome_;
};

}  // namespace

tl::expected<std::unique_ptr<BuildStopper>, std::string> BuildStopper::Create() {
  auto steps = sandbox::CancelToken::Create();
  auto finally = sandbox::CancelToken::Create();
  if (!steps || !finally) {
    return tl::unexpected("cannot create a stop signal: " +
                          (!steps ? steps.error() : finally.error()).ToString());
  }
  return std::unique_ptr<BuildStopper>(new BuildStopper(std::move(*steps), std::move(*finally)));
}

bool BuildStopper::Stop(const std::string& who) {
  int before = stops_.fetch_add(1);
  if (before == 0) {
    {
      std::lock_guard lock(mu_);
      who_ = who;  // only the first stop is who stopped the build
    }
    steps_.Cancel();
    return true;
  }
  finally_.Cancel();
  return false;
}

bool BuildStopper::StopSteps(const std::string& who) {
  int expected = 0;
  if (!stops_.compare_exchange_strong(expected, 1)) return false;
  {
    std::lock_guard lock(mu_);
    who_ = who;
  }
  steps_.Cancel();
  return true;
}

void BuildStopper::StopFromSignal(int signo) noexcept {
  int expected = 0;
  signal_.compare_exchange_strong(expected, signo);
  int before = stops_.fetch_add(1);
  if (before == 0) {
    steps_.Cancel();
  } else {
    finally_.Cancel();
  }
}

std::string BuildStopper::who() const {
  {
    std::lock_guard lock(mu_);
    if (!who_.empty()) return who_;
  }
  int sig = signal_.load();
  return sig != 0 ? "signal SIG" + jobs::SignalName(sig) : "request";
}

std::vector<std::string> StepEnvironment(const BuildPlan& plan, const jobs::StepSpec& step) {
  std::map<std::string, std::string, std::less<>> env(plan.base_env.begin(), plan.base_env.end());
  for (const auto& [k, v] : step.env) env[k] = v;
  for (const auto& [k, v] : plan.parameters) env[k] = v;
  for (const auto& [k, v] : plan.runner_env) env[k] = v;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

BuildOutcome RunBuild(const BuildPlan& plan, StepExecutor& executor, Clock& clock, BuildLog& log,
                      BuildStopper& stopper, BuildObserver* observer) {
  return BuildRun(plan, executor, clock, log, stopper).Run(observer);
}

std::string HumanDuration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (int64_t tenths = (ms + 50) / 100; tenths < 600) {
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + "s";
  }
  int64_t s = (ms + 500) / 1000;
  if (s < 3600) {
    return std::to_string(s / 60) + "m" + (s % 60 ? std::to_string(s % 60) + "s" : "");
  }
  int64_t m = s / 60;
  return std::to_string(m / 60) + "h" + (m % 60 ? std::to_string(m % 60) + "m" : "");
}

}  // namespace gearrun::runner
