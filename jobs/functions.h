// Gearman function names a node registers for its jobs (shared/protocol.md, "Function
// names"): `build:<job>` for every job the node can run, plus `build:<job>:<label>` for each
// label that is both an atom of the job's label expression and one of the node's labels.
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "jobs/job_spec.h"
#include "jobs/labels.h"

namespace gearrun::jobs {

// Whether a node with these labels (its name included) may run the job.
[[nodiscard]] bool CanRun(const JobSpec& job, const LabelSet& node_labels);

// The job's functions on that node, `build:<job>` first, then labelled ones in the order
// the expression names them; empty when the node cannot run the job.
[[nodiscard]] std::vector<std::string> FunctionNames(const JobSpec& job,
                                                     const LabelSet& node_labels);

// Every function of every job on that node, sorted, each once.
[[nodiscard]] std::vector<std::string> FunctionNames(const std::vector<JobSpec>& jobs,
                                                     const LabelSet& node_labels);

}  // namespace gearrun::jobs
