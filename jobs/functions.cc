#include "jobs/functions.h"

#include <algorithm>

namespace gearrun::jobs {

bool CanRun(const JobSpec& job, const LabelSet& node_labels) {
  return !job.node || job.node->Matches(node_labels);
}

std::vector<std::string> FunctionNames(const JobSpec& job, const LabelSet& node_labels) {
  std::vector<std::string> names;
  if (!CanRun(job, node_labels)) return names;
  names.push_back("build:" + job.name);
  if (job.node) {
    for (const auto& atom : job.node->atoms()) {
      if (node_labels.contains(atom)) names.push_back("build:" + job.name + ":" + atom);
    }
  }
  return names;
}

std::vector<std::string> FunctionNames(const std::vector<JobSpec>& jobs,
                                       const LabelSet& node_labels) {
  std::vector<std::string> all;
  for (const auto& job : jobs) {
    auto names = FunctionNames(job, node_labels);
    all.insert(all.end(), names.begin(), names.end());
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return all;
}

}  // namespace gearrun::jobs
