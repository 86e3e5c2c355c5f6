#include "runner/run_command.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <iomanip>
#include <tuple>

#include "jobs/loader.h"
#include "jobs/request.h"
#include "runner/build_service.h"
#include "runner/check_command.h"
#include "runner/cli.h"
#include "sandbox/reaper.h"

namespace gearrun::runner {
namespace {

std::atomic<BuildStopper*> g_stopper{nullptr};

void OnStopSignal(int signo) {
  if (BuildStopper* s = g_stopper.load()) s->StopFromSignal(signo);
}

// Routes SIGINT and SIGTERM to the build while it runs; restores the old handlers after.
class StopSignals {
 public:
  explicit StopSignals(BuildStopper& stopper) {
    g_stopper.store(&stopper);
    struct sigaction sa {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    g_stopper.store(nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

// Finds the job to run; prints why not and returns null when it cannot.
std::shared_ptr<const jobs::JobSpec> FindJob(const RunOptions& options, std::ostream& err) {
  namespace fs = std::filesystem;
  std::error_code ec;
  bool is_file = fs::is_regular_file(options.target, ec);
  fs::path source = is_file ? fs::path(options.target)
                            : (options.jobs.empty() ? fs::path(kDefaultJobsDir) : options.jobs);
  jobs::LoadReport report = jobs::LoadJobs({source});

  const jobs::JobSpec* found = nullptr;
  if (is_file) {
    if (report.jobs.size() == 1 && report.ok()) found = &report.jobs.front();
  } else {
    for (const auto& j : report.jobs) {
      if (j.name == options.target) found = &j;
    }
  }
  // The chosen job itself is valid (the loader keeps only valid jobs); errors elsewhere in a
  // directory do not stop it, unless they are about a second job of the same name.
  bool ambiguous = std::any_of(report.errors.begin(), report.errors.end(), [&](const auto& e) {
    return e.code == jobs::ErrorCode::kDuplicate && found != nullptr &&
           e.message.find("'" + found->name + "'") != std::string::npos;
  });
  if (found != nullptr && !ambiguous) {
    for (const auto& e : report.errors) err << e.ToString() << " (warning: ignored)\n";
    return std::make_shared<const jobs::JobSpec>(*found);
  }
  for (const auto& e : report.errors) err << e.ToString() << "\n";
  if (is_file && report.ok() && report.jobs.size() > 1) {
    err << "gearrun run: " << options.target << " defines " << report.jobs.size()
        << " jobs; name one: gearrun run NAME --jobs " << options.target << "\n  jobs:";
    for (const auto& j : report.jobs) err << " " << j.name;
    err << "\n";
  } else if (is_file && report.ok()) {
    err << "gearrun run: " << options.target << " defines no job\n";
  } else if (!is_file && !ambiguous && found == nullptr) {
    err << "gearrun run: no job named '" << options.target << "' in " << source.string();
    if (!report.jobs.empty()) {
      err << " (jobs there:";
      for (const auto& j : report.jobs) err << " " << j.name;
      err << ")";
    }
    err << "\n";
  }
  return nullptr;
}

void PrintSummary(const BuildRecord& r, const std::filesystem::path& log, std::ostream& out) {
  out << "\n" << r.job << " #" << r.number << ": " << ToString(r.result);
  if (!r.reason.empty()) out << " - " << r.reason;
  out << " (" << HumanDuration(std::chrono::milliseconds(r.duration_ms)) << ")\n";
  size_t width = 4;
  for (const auto& s : r.steps) width = std::max(width, s.name.size() + (s.is_finally ? 10 : 0));
  for (const auto& s : r.steps) {
    std::string name = (s.is_finally ? "(finally) " : "") + s.name;
    out << "  " << std::left << std::setw(static_cast<int>(width)) << name << "  " << std::setw(9)
        << ToString(s.result);
    if (s.result != StepResult::kNotRun) {
      std::string how = s.signal != 0      ? "signal " + jobs::SignalName(s.signal)
                        : s.exit_code >= 0 ? "exit " + std::to_string(s.exit_code)
                                           : "not started";
      if (s.timed_out) how = "timed out";
      out << std::setw(12) << how << std::setw(11)
          << (std::to_string(s.attempts) + (s.attempts == 1 ? " attempt" : " attempts"))
          << HumanDuration(std::chrono::milliseconds(s.duration_ms));
    }
    out << "\n";
  }
  out << "log: " << log.string() << "\n";
}

}  // namespace

std::optional<std::uint64_t> ParseSize(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  int shift = 0;
  if (unit == "K" || unit == "k") {
    shift = 10;
  } else if (unit == "M") {
    shift = 20;
  } else if (unit == "G") {
    shift = 30;
  } else if (!unit.empty()) {
    return std::nullopt;
  }
  if (shift > 0 && value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

std::filesystem::path DefaultStateDir() {
  if (::geteuid() == 0) return "/var/lib/gearrun";
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return std::filesystem::path(xdg) / "gearrun";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0') {
    return std::filesystem::path(home) / ".local/state/gearrun";
  }
  return "/tmp/gearrun-" + std::to_string(::geteuid());
}

int RunRun(const RunOptions& options, std::ostream& out, std::ostream& err) {
  auto job = FindJob(options, err);
  if (!job) return kExitUsage;

  jobs::RequestParameters params;
  for (const auto& p : options.parameters) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      err << "gearrun run: -p takes KEY=VALUE, not '" << p << "'\n";
      return kExitUsage;
    }
    params.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  auto bound = jobs::BindParameters(*job, params, jobs::RequestPolicy{});
  if (!bound) {
    err << "gearrun run: " << bound.error().message << "\n";
    return kExitUsage;
  }
  for (const auto& d : bound->dropped) {
    err << "gearrun run: warning: job '" << job->name << "' does not declare parameter '" << d
        << "'; it is not passed on\n";
  }

  NodeSettings settings{
      .name = options.node,
      .labels = options.labels,
      .state_dir = options.state_dir.empty() ? DefaultStateDir() : options.state_dir,
      .workspace_root = options.workspace_root};
  if (!options.log_cap.empty()) {
    auto cap = ParseSize(options.log_cap);
    if (!cap) {
      err << "gearrun run: --log-cap takes a size such as 256M, 1G or 0, not '" << options.log_cap
          << "'\n";
      return kExitUsage;
    }
    settings.log_cap_bytes = *cap;
  }
  for (const auto& limit : options.limits) {
    auto eq = limit.find('=');
    std::string name = limit.substr(0, eq);
    auto value = eq == std::string::npos ? std::nullopt : ParseSize(limit.substr(eq + 1));
    std::optional<std::uint64_t>* field = name == "core"     ? &settings.limits.core_bytes
                                          : name == "nofile" ? &settings.limits.open_files
                                          : name == "nproc"  ? &settings.limits.processes
                                          : name == "as"     ? &settings.limits.address_space_bytes
                                                             : nullptr;
    if (field == nullptr || !value) {
      err << "gearrun run: --limit takes core=SIZE, nofile=N, nproc=N or as=SIZE, not '" << limit
          << "'\n";
      return kExitUsage;
    }
    *field = value;
  }
  for (auto [text, field, flag] :
       {std::tuple{&options.memory_max, &settings.memory_max_bytes, "--memory-max"},
        std::tuple{&options.pids_max, &settings.pids_max, "--pids-max"}}) {
    if (text->empty()) continue;
    auto value = ParseSize(*text);
    if (!value || *value == 0) {
      err << "gearrun run: " << flag << " takes a positive size or count, not '" << *text << "'\n";
      return kExitUsage;
    }
    *field = value;
  }
  if (options.containment == "cgroup") {
    settings.containment = sandbox::ContainmentMode::kCgroup;
  } else if (options.containment == "process-group") {
    settings.containment = sandbox::ContainmentMode::kProcessGroup;
  }

  // Orphans of the build are re-parented to us, so that nothing escapes and all is reaped.
  if (auto ok = sandbox::BecomeSubreaper(); !ok) {
    err << "gearrun run: warning: " << ok.error().ToString() << "\n";
  }
  out.flush();

  SystemClock clock;
  BuildStore store(settings.state_dir);
  auto build = Build::Start(
      settings, {.job = job, .params = std::move(*bound), .tee_fd = STDOUT_FILENO}, clock, store);
  if (!build) {
    err << "gearrun run: the build could not start: " << build.error().reason << "\n";
    return kExitFailed;
  }
  const BuildRecord* record = nullptr;
  {
    StopSignals signals((*build)->stopper());
    record = &(*build)->Run(nullptr);
  }
  PrintSummary(*record, (*build)->log_path(), out);
  switch (record->result) {
    case Result::kSuccess:
      return kExitOk;
    case Result::kAborted:
      return kExitAborted;
    default:
      return kExitFailed;
  }
}

}  // namespace gearrun::runner
