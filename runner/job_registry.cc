#include "runner/job_registry.h"

#include <algorithm>

#include "jobs/functions.h"
#include "jobs/loader.h"

namespace gearrun::runner {

FunctionDelta DiffFunctions(const std::vector<std::string>& before,
                            const std::vector<std::string>& after) {
  FunctionDelta delta;
  std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                      std::back_inserter(delta.added));
  std::set_difference(before.begin(), before.end(), after.begin(), after.end(),
                      std::back_inserter(delta.removed));
  return delta;
}

std::string_view JobOfFunction(std::string_view function) {
  constexpr std::string_view kPrefix = "build:";
  if (!function.starts_with(kPrefix)) return {};
  function.remove_prefix(kPrefix.size());
  return function.substr(0, function.find(':'));  // job names never hold ':'
}

JobRegistry::JobRegistry(std::vector<std::filesystem::path> paths, jobs::LabelSet node_labels,
                         jobs::LoadOptions options)
    : paths_(std::move(paths)),
      node_labels_(std::move(node_labels)),
      options_(options),
      current_(std::make_shared<const JobSet>()) {}

JobRegistry::ReloadResult JobRegistry::Reload() { return Reload(paths_, ""); }

JobRegistry::ReloadResult JobRegistry::Reload(const std::vector<std::filesystem::path>& paths,
                                              std::string commit) {
  ReloadResult result;
  jobs::LoadReport report = jobs::LoadJobs(paths, options_);
  if (!report.ok()) {
    result.errors = std::move(report.errors);
    result.jobs = static_cast<int>(current()->jobs.size());
    return result;
  }
  auto next = std::make_shared<JobSet>();
  next->commit = std::move(commit);
  next->functions = jobs::FunctionNames(report.jobs, node_labels_);
  for (auto& job : report.jobs) {
    next->jobs.push_back(std::make_shared<const jobs::JobSpec>(std::move(job)));
  }
  std::lock_guard lock(mu_);
  result.delta = DiffFunctions(current_->functions, next->functions);
  result.jobs = static_cast<int>(next->jobs.size());
  current_ = std::move(next);
  result.ok = true;
  return result;
}

std::shared_ptr<const JobSet> JobRegistry::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

std::shared_ptr<const jobs::JobSpec> JobSet::FindByFunction(std::string_view function) const {
  if (!std::binary_search(functions.begin(), functions.end(), function)) return nullptr;
  std::string_view name = JobOfFunction(function);
  for (const auto& job : jobs) {
    if (job->name == name) return job;
  }
  return nullptr;
}

}  // namespace gearrun::runner
