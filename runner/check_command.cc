#include "runner/check_command.h"

#include <set>

#include "jobs/functions.h"
#include "jobs/loader.h"

namespace gearrun::runner {

int RunCheck(const CheckOptions& options, std::ostream& out, std::ostream& err) {
  std::vector<std::filesystem::path> paths = options.paths;
  if (paths.empty()) paths.emplace_back(kDefaultJobsDir);
  jobs::LoadReport report = jobs::LoadJobs(paths);
  jobs::LabelSet labels = jobs::MakeNodeLabels(options.node, options.labels);

  std::string label_text;
  for (const auto& l : labels) label_text += (label_text.empty() ? "" : " ") + l;
  out << "node " << options.node << " (labels: " << label_text << ")\n";

  std::set<std::string> all_functions;
  for (const auto& job : report.jobs) {
    out << "\n" << job.name << "  (" << job.location.file << ":" << job.location.line << ")\n";
    auto functions = jobs::FunctionNames(job, labels);
    if (functions.empty()) {
      out << "  registers nothing on this node: it needs '" << job.node->text() << "'\n";
    }
    for (const auto& f : functions) {
      out << "  " << f << "\n";
      all_functions.insert(f);
    }
  }

  std::set<std::string> bad_files;
  for (const auto& e : report.errors) {
    bad_files.insert(e.file);
    jobs::Error shown = e;
    shown.message = "error: " + e.message;
    err << shown.ToString() << "\n";
  }

  out << "\n";
  if (report.files_read == 0 && report.errors.empty()) {
    out << "no job files (*.yaml, *.yml) found\n";
  }
  out << report.jobs.size() << (report.jobs.size() == 1 ? " job" : " jobs") << " valid in "
      << report.files_read << (report.files_read == 1 ? " file" : " files") << "; "
      << all_functions.size() << (all_functions.size() == 1 ? " function" : " functions")
      << " to register\n";
  if (!report.ok()) {
    err << report.errors.size() << (report.errors.size() == 1 ? " error" : " errors") << " in "
        << bad_files.size() << (bad_files.size() == 1 ? " file" : " files") << "\n";
    return 1;
  }
  return 0;
}

}  // namespace gearrun::runner
