// Loading job definitions: YAML text, files and directories -> validated JobSpecs.
//
// Every problem found is reported, not only the first: a file with a YAML syntax error
// yields that error (the parser cannot go on past it) and other files are still read; a
// file that parses yields every validation error of every job in it. Each error names the
// file, line and column and says what was expected.
//
//   LoadReport report = LoadJobs({"/etc/gearrun/jobs"});
//   for (const Error& e : report.errors) std::cerr << e.ToString() << "\n";
//   if (report.ok()) Use(report.jobs);
//
// Bounded work for any input: a job file is refused (with an error naming file, line and
// column) when it is larger than kMaxJobFileBytes, holds more than kMaxJobDocuments documents,
// nests deeper than kMaxYamlDepth, has an alias inside the node it refers to (`a: &a [*a]`),
// or holds more than kMaxYamlNodes nodes once its aliases are expanded (an "alias bomb" of a
// few hundred bytes would otherwise stand for billions). These are checked on the parser's
// events before any document is built or read, so loading takes time and memory in proportion
// to the limits, not to what the text claims. A file lists at most kMaxErrorsPerFile errors
// (each distinct one once). Only regular files are read.
//
// Functions here are thread-safe (they share nothing).
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "jobs/error.h"
#include "jobs/job_spec.h"

namespace gearrun::jobs {

// The limits (GitLab CI's are 1 MB and a depth of 100 too); far beyond any job file written
// by hand or by a generator that splits its output into files.
inline constexpr std::size_t kMaxJobFileBytes = 1 << 20;
inline constexpr int kMaxJobDocuments = 1000;
inline constexpr int kMaxYamlDepth = 100;
inline constexpr std::size_t kMaxYamlNodes = 100'000;
// Errors listed per file (each distinct error once); the rest are counted in a last one.
inline constexpr std::size_t kMaxErrorsPerFile = 100;

struct LoadReport {
  std::vector<JobSpec> jobs;  // the jobs that are valid, in load order
  std::vector<Error> errors;  // everything wrong; jobs with errors are not in `jobs`
  // Every key the loaded files used, as "<section>.<key>" ("job.timeout", "step.retry_on",
  // "parameter.secret", ...): lets a test check that a set of examples covers the format.
  std::set<std::string> keys_used;
  int files_read = 0;

  [[nodiscard]] bool ok() const { return errors.empty(); }
};

// Node-level settings that shape loaded jobs.
struct LoadOptions {
  // The kill ladder of jobs that set no `kill` (and the half a partial `kill` leaves out).
  KillSpec default_kill;
};

// Every key the job format knows, in the same "<section>.<key>" form as keys_used.
[[nodiscard]] const std::set<std::string>& AllJobKeys();

// Loads the documents of one YAML text; `file_name` is what errors call the text.
[[nodiscard]] LoadReport LoadJobText(std::string_view text, const std::string& file_name,
                                     const LoadOptions& options = {});

// Loads files and directories. A directory is read recursively for *.yaml and *.yml files,
// in name order, skipping names that start with '.' (such as .git). A job name defined
// twice anywhere is an error that names both places.
[[nodiscard]] LoadReport LoadJobs(const std::vector<std::filesystem::path>& paths,
                                  const LoadOptions& options = {});

}  // namespace gearrun::jobs
