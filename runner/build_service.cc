#include "runner/build_service.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>

#include "jobs/request.h"
#include "runner/git.h"
#include "runner/recovery.h"

namespace gearrun::runner {

namespace {

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : std::string(sep)) + i;
  return out;
}

// cgroup directory names: [A-Za-z0-9_.-], at most 100 characters, not starting with '.'.
// A name cut short gets a hash of the whole job name, so that two long job names sharing a
// prefix never give two concurrent builds the same cgroup.
std::string ContainerName(const std::string& job, std::int64_t number) {
  std::string name = "build-" + std::to_string(number) + "-" + job;
  if (name.size() <= 100) return name;
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016zx", std::hash<std::string>{}(job));
  return name.substr(0, 100 - 17) + "-" + hash;
}

// The job's checkout, with its ${NAME}s replaced: a few attempts, since a remote that
// fails once often answers the next time; after the last one the build cannot start (and
// the client runs it elsewhere). Returns the commit checked out.
tl::expected<std::string, std::string> CheckOut(const jobs::CheckoutSpec& checkout,
                                                const jobs::EnvMap& parameters,
                                                const std::filesystem::path& state_dir,
                                                const std::filesystem::path& workspace,
                                                const std::vector<std::string>& secrets,
                                                BuildLog& log, Clock& clock, int cancel_fd) {
  auto url = jobs::SubstituteParameters(checkout.url, parameters);
  if (!url) return tl::unexpected("checkout url: " + url.error());
  auto ref = jobs::SubstituteParameters(checkout.ref, parameters);
  if (!ref) return tl::unexpected("checkout ref: " + ref.error());
  std::string what = RedactUrl(*url) + (ref->empty() ? "" : " " + *ref) + " into " +
                     (workspace / checkout.path).string();
  constexpr int kAttempts = 3;
  std::chrono::milliseconds delay(1000);
  std::string error;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    log.Line("checkout " + what +
             (attempt > 1 ? " (attempt " + std::to_string(attempt) + ")" : ""));
    auto result = CheckoutFromMirror(state_dir / "git", {.url = *url,
                                                         .ref = *ref,
                                                         .dest = workspace / checkout.path,
                                                         .depth = checkout.depth,
                                                         .submodules = checkout.submodules,
                                                         .secrets = secrets});
    if (result) {
      log.Line("checked out " + result->commit + " (" + std::to_string(result->received_objects) +
               " new objects fetched)");
      return result->commit;
    }
    error = result.error();
    log.Line("checkout failed: " + error);
    if (attempt < kAttempts) {
      if (!clock.SleepUntil(clock.Now() + delay, cancel_fd)) {
        return tl::unexpected("stopped during the checkout: " + error);
      }
      delay *= 2;
    }
  }
  return tl::unexpected("checkout failed after " + std::to_string(kAttempts) +
                        " attempts: " + error);
}

}  // namespace

std::string FormatTimestamp(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

tl::expected<std::unique_ptr<Build>, StartFailure> Build::Start(const NodeSettings& settings,
                                                                BuildRequest request, Clock& clock,
                                                                BuildStore& store) {
  const jobs::JobSpec& job = *request.job;
  auto number = store.NextNumber(job.name);
  if (!number) {
    return tl::unexpected(StartFailure{.reason = "cannot number the build: " + number.error(),
                                       .kind = StartFailure::Kind::kState});
  }

  BuildRecord record;
  record.job = job.name;
  record.number = *number;
  record.node = settings.name;
  record.node_labels = {};
  for (const auto& l : jobs::MakeNodeLabels(settings.name, settings.labels)) {
    record.node_labels.push_back(l);
  }
  record.executor = request.executor;
  const std::vector<std::string>& secrets = request.params.secret_values;
  for (const auto& [k, v] : request.params.parameters) {
    bool secret = std::find(request.params.secret_names.begin(), request.params.secret_names.end(),
                            k) != request.params.secret_names.end();
    // A secret may also be part of another value (a URL with a token in it).
    record.parameters[k] = secret ? std::string(kMask) : MaskSecrets(v, secrets);
  }
  for (const auto& d : request.params.dropped) {
    record.dropped_parameters.push_back(MaskSecrets(d, secrets));
  }
  record.unique = request.unique;  // the client's name for the request, never rewritten
  record.jobs_commit = request.jobs_commit;
  record.started_at = FormatTimestamp(clock.WallNow());
  record.runner_pid = ::getpid();
  record.runner_start = ProcessStartId(record.runner_pid);

  // From here on the number exists: every failure leaves a NOT_BUILT record saying why.
  // Reasons may quote a parameter (a checkout URL, a ref): masked before they go anywhere.
  auto not_built = [&](const std::string& reason,
                       StartFailure::Kind kind = StartFailure::Kind::kBuild) {
    std::string masked = MaskSecrets(reason, secrets);
    record.result = Result::kNotBuilt;
    record.reason = masked;
    record.finished_at = FormatTimestamp(clock.WallNow());
    (void)store.Write(record);  // kept for a later retry when it fails (BuildStore)
    return tl::unexpected(StartFailure{std::move(masked), record.number, kind});
  };
  auto unwritable = [&](const std::string& error) {
    return not_built("cannot write build record: " + error, StartFailure::Kind::kState);
  };
  if (auto ok = store.Write(record); !ok) return unwritable(ok.error());

  auto log = BuildLog::Open(store.LogPath(job.name, record.number),
                            {.cap_bytes = settings.log_cap_bytes,
                             .secrets = request.params.secret_values,
                             .tee_fd = request.tee_fd});
  if (!log) return not_built(log.error(), StartFailure::Kind::kState);

  std::filesystem::path root =
      settings.workspace_root.empty() ? settings.state_dir / "workspace" : settings.workspace_root;
  auto workspace = Workspace::Acquire(
      root, job.name, job.clean_workspace ? WorkspaceClean::kEmpty : WorkspaceClean::kKeep);
  if (!workspace) {
    log->Line("the build could not start: " + workspace.error());
    return not_built(workspace.error());
  }
  record.workspace = workspace->path().string();

  if (job.checkout) {
    auto checked_out =
        CheckOut(*job.checkout, request.params.parameters, settings.state_dir, workspace->path(),
                 request.params.secret_values, *log, clock,
                 request.stopper != nullptr ? request.stopper->steps_token().fd() : -1);
    if (!checked_out) {
      log->Line("the build could not start: " + checked_out.error());
      return not_built(checked_out.error());
    }
    record.checkout_commit = *checked_out;
    if (auto ok = store.Write(record); !ok) return unwritable(ok.error());
  }

  auto executor = ContainerExecutor::Create({.mode = settings.containment,
                                             .name = ContainerName(job.name, record.number),
                                             .memory_max_bytes = settings.memory_max_bytes,
                                             .pids_max = settings.pids_max},
                                            settings.limits);
  if (!executor) {
    log->Line("the build could not start: " + executor.error());
    return not_built("cannot set up the sandbox: " + executor.error());
  }
  record.containment = (*executor)->containment();
  record.cookie = (*executor)->cookie();
  record.cgroup = (*executor)->cgroup();
  // Written before any step runs, so that after a crash the next start can find what is
  // left of this build (runner/recovery.h).
  if (auto ok = store.Write(record); !ok) return unwritable(ok.error());
  std::string limits = (*executor)->DescribeLimits(settings.memory_max_bytes, settings.pids_max);

  std::unique_ptr<BuildStopper> own_stopper;
  BuildStopper* stopper = request.stopper;
  if (stopper == nullptr) {
    auto created = BuildStopper::Create();
    if (!created) return not_built(created.error());
    own_stopper = std::move(*created);
    stopper = own_stopper.get();
  }

  auto build = std::unique_ptr<Build>(
      new Build(settings, std::move(request), clock, store, std::move(record), std::move(*log),
                std::move(*workspace), std::move(*executor), std::move(own_stopper), stopper));
  build->limits_ = std::move(limits);
  return build;
}

Build::Build(const NodeSettings& settings, BuildRequest request, Clock& clock, BuildStore& store,
             BuildRecord record, BuildLog log, Workspace workspace,
             std::unique_ptr<StepExecutor> executor, std::unique_ptr<BuildStopper> own_stopper,
             BuildStopper* stopper)
    : settings_(settings),
      request_(std::move(request)),
      clock_(clock),
      store_(store),
      record_(std::move(record)),
      log_(std::move(log)),
      workspace_(std::move(workspace)),
      executor_(std::move(executor)),
      own_stopper_(std::move(own_stopper)),
      stopper_(stopper),
      started_(clock.Now()) {}

Build::~Build() {
  if (record_.result != Result::kRunning) return;
  record_.result = Result::kNotBuilt;
  record_.reason = "the build was dropped before it ran";
  record_.finished_at = FormatTimestamp(clock_.WallNow());
  (void)store_.Write(record_);
}

const BuildRecord& Build::Run(BuildObserver* observer) {
  const jobs::JobSpec& job = *request_.job;
  BuildPlan plan{.job = &job, .workspace = workspace_.path()};
  plan.parameters.insert(request_.params.parameters.begin(), request_.params.parameters.end());
  for (const auto& name : settings_.env_allowlist) {
    if (const char* value = std::getenv(name.c_str())) plan.base_env[name] = value;
  }
  plan.runner_env = {{"BUILD_NUMBER", std::to_string(record_.number)},
                     {"JOB_NAME", job.name},
                     {"WORKSPACE", workspace_.path().string()},
                     {"NODE_NAME", settings_.name},
                     {"NODE_LABELS", Join(record_.node_labels, " ")},
                     {"EXECUTOR_NUMBER", std::to_string(request_.executor)},
                     {"BUILD_TAG", "gearrun-" + job.name + "-" + std::to_string(record_.number)},
                     {"GEARMAN_UNIQUE", request_.unique}};

  log_.Line("build " + job.name + " #" + std::to_string(record_.number) + " on node " +
            settings_.name + ", executor " + std::to_string(request_.executor) + ", workspace " +
            workspace_.path().string() + ", containment " + record_.containment);
  if (!limits_.empty()) log_.Line("build limits: " + limits_);
  if (!request_.params.dropped.empty()) {
    log_.Line("parameters dropped (not declared by the job, not passed through): " +
              Join(request_.params.dropped, ", "));
  }

  BuildOutcome outcome = RunBuild(plan, *executor_, clock_, log_, *stopper_, observer);
  std::lock_guard lock(record_mu_);
  record_.result = outcome.result;
  record_.reason = MaskSecrets(outcome.reason, request_.params.secret_values);
  record_.steps = std::move(outcome.steps);
  record_.leftovers_killed = outcome.leftovers_killed;
  record_.log_capped = log_.capped();
  record_.finished_at = FormatTimestamp(clock_.WallNow());
  record_.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now() - started_).count();
  if (!log_.write_error().empty()) {
    record_.state_error =
        "its log lost " + std::to_string(log_.lost_bytes()) + " bytes: " + log_.write_error();
  }
  auto written = store_.Write(record_);
  recorded_ = written.has_value();
  if (!written) {
    std::string error = "its record could not be written: " + written.error();
    log_.Line("cannot write the build record: " + written.error());
    record_.state_error = record_.state_error.empty() ? error : record_.state_error + "; " + error;
    // The version the store keeps for later says so too (and lands now if the disk is back).
    recorded_ = store_.Write(record_).has_value();
  }
  return record_;
}

tl::expected<void, std::string> Build::SetDescription(std::string html) {
  std::lock_guard lock(record_mu_);
  record_.description = std::move(html);
  return store_.Write(record_);
}

}  // namespace gearrun::runner
